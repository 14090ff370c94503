//! Cold start: a loopback stand-in for the Lambda runtime API that notes when a freshly spawned
//! function binary first asks for work (`GET /2018-06-01/runtime/invocation/next`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{Args, Error, median, percentile};

const NEXT: &str = "GET /2018-06-01/runtime/invocation/next";

/// The `--env K=V` flags.
pub fn env_args(args: &Args) -> Vec<(String, String)> {
    args.all("env").iter().filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect()
}

/// A function binary as Lambda starts it: the runtime API at `api`, the function's settings
/// in `env` and nothing else of this process' environment.
pub fn function_command(bin: &str, api: &str, env: &[(String, String)]) -> Command {
    let mut command = Command::new(bin);
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "pinpipe-bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/pinpipe-bench")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// `coldstart --bin PATH --name N --runs 20 --env K=V ...`: spawns the binary `runs` times.
pub fn coldstart(args: &Args) -> Result<(), Error> {
    let bin = args.req("bin")?;
    let runs: usize = args.num("runs", 20)?;
    let env = env_args(args);
    let mut ms = Vec::new();
    for _ in 0..runs {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let mut command = function_command(bin, &addr.to_string(), &env);
        command.stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn()?;
        listener.set_nonblocking(false)?;
        // A binary that dies before polling never connects: give up after 10 s.
        let (tx, rx) = std::sync::mpsc::channel();
        let accept = std::thread::spawn(move || {
            let result = (|| -> std::io::Result<(Duration, String)> {
                let (mut stream, _) = listener.accept()?;
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let at = started.elapsed();
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
                // Never answer with an event: close so the function is left waiting/retrying.
                let _ = stream.write_all(b"");
                Ok((at, line))
            })();
            let _ = tx.send(result);
        });
        let outcome = rx.recv_timeout(Duration::from_secs(10));
        let _ = child.kill();
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let _ = child.wait();
        match outcome {
            Ok(Ok((at, line))) if line.starts_with(NEXT) => ms.push(at.as_secs_f64() * 1e3),
            Ok(Ok((_, line))) => return Err(format!("{bin}: first request was {line:?}").into()),
            Ok(Err(e)) => return Err(format!("{bin}: {e}").into()),
            Err(_) => return Err(format!("{bin} never polled the runtime API; stderr: {stderr}").into()),
        }
        let _ = accept.join();
    }
    let size = std::fs::metadata(bin)?.len();
    println!(
        "{}",
        json!({"kind": "coldstart", "name": args.get("name").unwrap_or_else(|| Path::new(bin).file_name().and_then(|n| n.to_str()).unwrap_or(bin)),
            "runs": runs, "p50_ms": median(&ms), "min_ms": ms.iter().copied().fold(f64::INFINITY, f64::min),
            "p90_ms": percentile(&ms, 90.0), "ms": ms, "binary_bytes": size})
    );
    Ok(())
}
