//! The stream consumer as Lambda runs it: the real release binary, its own `main`
//! and `lambda_runtime`, polling a loopback stand-in for the Lambda runtime API that hands it
//! each event file's bytes in turn.
//!
//! Each figure is timed by the stub, from just before it writes the event's bytes in answer to
//! `GET /invocation/next` to the moment it has read the whole `POST /invocation/{id}/response`:
//! the transfer, the runtime's own handling of the payload, the handler, the answer's
//! serialisation and its way back. Cold is from spawning the process to its first answer (the
//! first batch opens or creates the table, as a cold Lambda's does). Peak RSS is the child's
//! `VmHWM`, read after its last answer.
//!
//! With `--floor-out`, the stub puts each event but the first through the floor
//! ([`crate::floor`]) just before it hands the event out, while the function waits for it: the
//! floor and the function meet the machine in the same state, batch by batch, and their ratio is
//! taken per batch. The floor's own first batch runs before the function is spawned, so the
//! pairs are warm on both sides and the cold figures hold no floor. On a shared
//! 2-core VM two medians measured minutes apart moved by ±30% and flipped the target; paired
//! batches do not drift apart that way.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::floor::write_one;
use crate::runtime_stub::{env_args, function_command};
use crate::{Args, Error, median};
use pinpipe::Table;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION: &str = "/2018-06-01/runtime/invocation/";

/// What the stub saw, shared by its connection threads.
struct Stub {
    started: Instant,
    events: VecDeque<(String, Vec<u8>)>,
    /// Request id → when its event's bytes started on their way.
    handed: Vec<(String, Instant)>,
    answers: Vec<Answer>,
    /// Whether each event goes through the floor before it is handed out.
    floor: bool,
}

struct Answer {
    handed_to_answer_ms: f64,
    since_spawn_ms: f64,
    body: Vec<u8>,
}

/// What the stub's connection threads tell the thread that drives the run.
enum FromStub {
    /// Every event answered, and the function asked for the next.
    Drained,
    Failed(String),
    /// An event to put through the floor before it is handed out; its time and the event come
    /// back on `reply`.
    Floor {
        event: Vec<u8>,
        reply: Sender<(Result<f64, String>, Vec<u8>)>,
    },
}

/// `runtime --bin PATH --table pin --label L --env K=V ... --event F --event F ... [--cold-event F]
/// [--floor-out DIR]`.
///
/// With `--cold-event`, a second, fresh process then answers that one event against the table the
/// first one left: the cold start a deployed consumer meets (its table made long ago), beside the
/// first process' cold start, whose first batch also creates the table.
pub fn run(args: &Args) -> Result<(), Error> {
    let bin = args.req("bin")?.to_string();
    let files = args.all("event");
    if files.is_empty() {
        return Err("--event is required".into());
    }
    let mut payload = 0;
    let mut events = VecDeque::new();
    for (k, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file)?;
        payload = bytes.len();
        events.push_back((format!("bench-{k:04}-0000-0000-0000-000000000000"), bytes));
    }
    let records = serde_json::from_slice::<Value>(&events[0].1)?["Records"].as_array().map_or(0, Vec::len);
    let env = env_args(args);
    let timeout = Duration::from_secs(args.num("timeout", 300)?);
    let floor = match args.get("floor-out") {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Some((args.req("table")?.parse::<Table>()?, PathBuf::from(dir)))
        }
        None => None,
    };
    let warm_run = drive(&bin, &env, events, floor, timeout)?;
    // What the function wrote, before the cold event adds to it, to set beside the in-process
    // consumer's table: the same rows.
    let lake_uri = env.iter().find(|(k, _)| k == "PINPIPE_LAKE_URI").map(|(_, v)| v.clone());
    let (rows, quarantined) = match (lake_uri, args.get("table")) {
        (Some(uri), Some(table)) => {
            let lake = pinpipe::lake::Lake::new(&uri);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                Ok::<_, Error>((lake.count_rows(table).await?, lake.count_rows("quarantine").await?))
            })?
        }
        _ => (None, None),
    };
    let cold_existing = match args.get("cold-event") {
        Some(file) => {
            let event = ("bench-cold-0000-0000-0000-000000000000".to_string(), std::fs::read(file)?);
            let run = drive(&bin, &env, VecDeque::from([event]), None, timeout)?;
            Some(run.answers[0].since_spawn_ms)
        }
        None => None,
    };
    let ms: Vec<f64> = warm_run.answers.iter().map(|a| a.handed_to_answer_ms).collect();
    let warm = if ms.len() > 1 { median(&ms[1..]) } else { ms[0] };
    let handler_ms = &warm_run.handler_ms;
    let handler_warm = if handler_ms.len() > 1 { median(&handler_ms[1..]) } else { f64::NAN };
    // Each warm batch beside the floor's time on the same event, just before it.
    let floor_ms = &warm_run.floor_ms;
    let paired: Vec<f64> = ms.iter().skip(1).zip(floor_ms).map(|(ours, floor)| ours / floor).collect();
    let (floor_warm, ratio_to_floor) =
        if paired.is_empty() { (None, None) } else { (Some(median(floor_ms)), Some(median(&paired))) };
    println!(
        "{}",
        json!({"kind": "runtime", "label": args.get("label").unwrap_or(""), "table": args.get("table").unwrap_or(""),
            "records": records, "payload_bytes": payload, "batches": ms.len(), "ms": ms, "warm_ms": warm,
            "first_batch_ms": ms[0], "cold_ms": warm_run.answers[0].since_spawn_ms,
            "cold_existing_table_ms": cold_existing, "peak_rss": warm_run.peak_rss,
            "rows_in_table": rows, "quarantined": quarantined, "handler_ms": handler_ms,
            "handler_warm_ms": handler_warm, "floor_ms": floor_ms, "floor_warm_ms": floor_warm,
            "ratio_to_floor": ratio_to_floor,
            "binary_bytes": std::fs::metadata(&bin)?.len()})
    );
    Ok(())
}

/// What one process of the function did with the events it was handed.
struct Drive {
    answers: Vec<Answer>,
    /// Each batch's `duration_ms` from the function's own log.
    handler_ms: Vec<f64>,
    /// The floor's time on each event after the first, in the order handed out (none without a
    /// floor).
    floor_ms: Vec<f64>,
    peak_rss: u64,
}

/// Spawns the function against a fresh runtime API stub, hands it `events` in turn and returns
/// once it has answered them all and asked for the next.
fn drive(
    bin: &str,
    env: &[(String, String)],
    events: VecDeque<(String, Vec<u8>)>,
    floor: Option<(Table, PathBuf)>,
    timeout: Duration,
) -> Result<Drive, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut command = function_command(bin, &addr.to_string(), env);
    command.stderr(Stdio::piped()).stdout(Stdio::piped());
    if let (Some((table, dir)), Some((_, first))) = (&floor, events.front()) {
        // The floor's cold batch, before the function starts.
        write_one(*table, first, &dir.join("part-first.parquet"))?;
    }
    let started = Instant::now();
    let mut child = command.spawn()?;
    // The function's own log: each batch's `duration_ms` is its handler's time inside the
    // process (`kinesis_trigger::handle_batch`, after the payload is read).
    let stdout = child.stdout.take();
    let handler_log = std::thread::spawn(move || {
        let mut durations = Vec::new();
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
                if let Some(ms) = entry["fields"]["duration_ms"].as_f64() {
                    durations.push(ms);
                }
            }
        }
        durations
    });
    let stub =
        Arc::new(Mutex::new(Stub { started, events, handed: Vec::new(), answers: Vec::new(), floor: floor.is_some() }));
    let (done_tx, done_rx) = channel();
    {
        let stub = stub.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (stub, done) = (stub.clone(), done_tx.clone());
                std::thread::spawn(move || {
                    if let Err(e) = serve(stream, &stub, &done) {
                        let _ = done.send(FromStub::Failed(format!("runtime API stub: {e}")));
                    }
                });
            }
        });
    }
    // The function's stderr, drained so it never blocks on a full pipe; shown if it fails.
    let stderr = child.stderr.take();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    // The floor runs here, on the main thread as the standalone floor does: on a spawned
    // thread its allocations went to another malloc arena, which made the same floor 24 → 40 ms.
    let deadline = Instant::now() + timeout;
    let mut floor_ms = Vec::new();
    let outcome = loop {
        match done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(FromStub::Floor { event, reply }) => {
                let Some((table, dir)) = &floor else { break Ok(FromStub::Failed("an unasked floor".into())) };
                let file = dir.join(format!("part-{}.parquet", floor_ms.len()));
                let ms = write_one(*table, &event, &file).map(|one| one.ms).map_err(|e| format!("the floor: {e}"));
                if let Ok(ms) = ms {
                    floor_ms.push(ms);
                }
                let _ = reply.send((ms, event));
            }
            other => break other,
        }
    };
    let peak_rss = vm_hwm(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let stderr = log.join().unwrap_or_default();
    let handler_ms = handler_log.join().unwrap_or_default();
    let tail = |s: &str| s[s.len().saturating_sub(2000)..].to_string();
    match outcome {
        Ok(FromStub::Drained) => {}
        Ok(FromStub::Failed(why)) => return Err(format!("{bin}: {why}; stderr: {}", tail(&stderr)).into()),
        Ok(FromStub::Floor { .. }) => unreachable!("the loop above answers every floor"),
        Err(_) => return Err(format!("{bin}: no answer within {timeout:?}; stderr: {}", tail(&stderr)).into()),
    }
    let answers = std::mem::take(&mut lock(&stub).answers);
    for answer in &answers {
        let response: Value = serde_json::from_slice(&answer.body)?;
        if response["batchItemFailures"].as_array().is_some_and(|f| !f.is_empty()) {
            return Err(format!("{bin}: a batch failed: {response}").into());
        }
    }
    Ok(Drive { answers, handler_ms, floor_ms, peak_rss })
}

/// The child's peak resident set (`VmHWM` of /proc/PID/status), in bytes.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// One connection of the function's runtime client: HTTP/1.1 requests, kept alive.
fn serve(stream: TcpStream, stub: &Mutex<Stub>, done: &Sender<FromStub>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                    _ => {}
                }
            }
        }
        let body = if chunked { read_chunked(&mut reader)? } else { read_exact(&mut reader, length)? };
        let answered_at = Instant::now();
        if method == "GET" && path == NEXT {
            let next = lock(stub).events.pop_front();
            let Some((id, event)) = next else {
                // Every event is answered: the function stays parked on this request, its
                // connection held open (closing it would make the runtime exit before its peak
                // RSS is read) until the process is killed.
                let _ = done.send(FromStub::Drained);
                loop {
                    std::thread::park();
                }
            };
            let floor = {
                let stub = lock(stub);
                stub.floor && !stub.handed.is_empty()
            };
            let event = if floor {
                let (reply, back) = channel();
                done.send(FromStub::Floor { event, reply }).map_err(std::io::Error::other)?;
                let (ms, event) = back.recv().map_err(std::io::Error::other)?;
                ms.map_err(std::io::Error::other)?;
                event
            } else {
                event
            };
            let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(900);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {id}\r\n\
                 Lambda-Runtime-Deadline-Ms: {}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:pinpipe-bench\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n\
                 Content-Length: {}\r\n\r\n",
                deadline.as_millis(),
                event.len()
            );
            lock(stub).handed.push((id, Instant::now()));
            writer.write_all(head.as_bytes())?;
            writer.write_all(&event)?;
            writer.flush()?;
        } else if method == "POST" && path.starts_with(INVOCATION) {
            let rest = &path[INVOCATION.len()..];
            let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
            {
                let mut stub = lock(stub);
                let handed = stub.handed.iter().find(|(h, _)| h == id).map(|(_, at)| *at);
                match (what, handed) {
                    ("response", Some(at)) => {
                        let answer = Answer {
                            handed_to_answer_ms: answered_at.duration_since(at).as_secs_f64() * 1e3,
                            since_spawn_ms: answered_at.duration_since(stub.started).as_secs_f64() * 1e3,
                            body,
                        };
                        stub.answers.push(answer);
                    }
                    _ => {
                        let _ = done.send(FromStub::Failed(format!(
                            "{method} {path}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(2000)])
                        )));
                    }
                }
            }
            writer.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}")?;
            writer.flush()?;
        } else {
            // /init/error and anything else: the function could not start or run.
            let _ = done.send(FromStub::Failed(format!(
                "{method} {path}: {}",
                String::from_utf8_lossy(&body[..body.len().min(2000)])
            )));
            writer.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")?;
            writer.flush()?;
        }
    }
}

fn lock(stub: &Mutex<Stub>) -> std::sync::MutexGuard<'_, Stub> {
    stub.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_exact(reader: &mut impl Read, length: usize) -> std::io::Result<Vec<u8>> {
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let mut chunk = read_exact(reader, size + 2)?;
        chunk.truncate(size);
        body.extend_from_slice(&chunk);
        if size == 0 {
            return Ok(body);
        }
    }
}
