//! `pinpipe emulate`: the posting emulator, done properly. It sends the emulator's posts to a
//! running producer (a deployed API Gateway URL, or `cargo lambda watch`) through `/record` or
//! batched `/records`, at a given rate or as fast as it can, with bounded concurrency, and reports
//! failures per status code; or it writes the batch path's Kafka Connect files instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pinpipe::Table;
use pinpipe::local::emulator::{Emulator, Post};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

#[derive(Debug, Clone, clap::Args)]
pub struct EmulateArgs {
    /// The producer's base URL, e.g. https://<id>.execute-api.<region>.amazonaws.com/prod.
    #[arg(long, conflicts_with = "kafka_files", required_unless_present = "kafka_files")]
    pub api: Option<String>,
    /// Write Kafka Connect S3 sink files (topics/<prefix>.<table>/partition=0/...) under DIR instead.
    #[arg(long, value_name = "DIR")]
    pub kafka_files: Option<PathBuf>,
    /// The deployment prefix (user id) the streams and topics are named after.
    #[arg(long, default_value = "0a1b2c3d4e5f")]
    pub prefix: String,
    /// How many posts to send; 0 sends until interrupted.
    #[arg(long, default_value_t = 1_000)]
    pub posts: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Posts per second; 0 is as fast as the API takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Posts per `/records` request; 1 sends each record through `/record` as the seeds did.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// An `x-api-key` header value, for an API with a usage plan.
    #[arg(long, env = "PINPIPE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// What the emulator sent and what came back.
#[derive(Debug, Default, Clone)]
pub struct EmulateReport {
    pub posts: usize,
    pub requests: usize,
    pub records_ok: usize,
    pub records_failed: usize,
    /// Responses by HTTP status (`0` for a request that got no answer).
    pub statuses: BTreeMap<u16, usize>,
    pub elapsed: Duration,
}

impl EmulateReport {
    pub fn print(&self) {
        println!(
            "pinpipe emulate: {} posts, {} requests in {:.1} s ({:.0} records/s): {} records accepted, {} failed",
            self.posts,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.records_ok as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.records_ok,
            self.records_failed
        );
        for (status, n) in &self.statuses {
            let label = if *status == 0 { "no answer".to_string() } else { format!("HTTP {status}") };
            println!("  {n:>8}  {label}");
        }
    }
}

/// One request's worth of records of one table.
struct Send {
    table: Table,
    posts: Vec<Post>,
}

pub async fn run(args: &EmulateArgs) -> anyhow::Result<EmulateReport> {
    if let Some(dir) = &args.kafka_files {
        return write_kafka_files(args, dir);
    }
    let api = args.api.as_deref().context("--api or --kafka-files is required")?.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let started = Instant::now();
    let mut report = EmulateReport::default();
    let bar = ProgressBar::new(args.posts as u64);
    bar.set_style(ProgressStyle::with_template("{spinner} {pos} posts  {per_sec}  {msg}").expect("a valid template"));
    let batch = args.batch.clamp(1, 500);
    let limit = if args.posts == 0 { usize::MAX } else { args.posts };
    let mut posts = Emulator::new(args.seed, 0).take(limit).peekable();
    let mut ticker =
        (args.rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(batch as f64 / args.rate)));
    let in_flight = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks: JoinSet<(Table, usize, Outcome)> = JoinSet::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut stopping = false;
    while !stopping && posts.peek().is_some() {
        let chunk: Vec<Post> = posts.by_ref().take(batch).collect();
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        for table in Table::ALL {
            let permit = tokio::select! {
                permit = in_flight.clone().acquire_owned() => permit?,
                _ = &mut interrupted => {
                    // Stop making requests; the ones in flight still finish and are reported.
                    stopping = true;
                    break;
                }
            };
            let send = Send { table, posts: chunk.clone() };
            let (client, api, prefix, key) = (client.clone(), api.clone(), args.prefix.clone(), args.api_key.clone());
            tasks.spawn(async move {
                let outcome = send_one(&client, &api, &prefix, key.as_deref(), &send).await;
                drop(permit);
                (send.table, send.posts.len(), outcome)
            });
        }
        while let Some(done) = tasks.try_join_next() {
            tally(&mut report, &bar, done?);
        }
    }
    while let Some(done) = tasks.join_next().await {
        tally(&mut report, &bar, done?);
    }
    bar.finish_and_clear();
    report.elapsed = started.elapsed();
    Ok(report)
}

fn tally(report: &mut EmulateReport, bar: &ProgressBar, (table, n, outcome): (Table, usize, Outcome)) {
    report.requests += 1;
    *report.statuses.entry(outcome.status).or_default() += 1;
    report.records_ok += outcome.ok;
    report.records_failed += n - outcome.ok;
    if table == Table::User {
        report.posts += n;
        bar.inc(n as u64);
    }
    bar.set_message(format!("{} records failed", report.records_failed));
}

struct Outcome {
    status: u16,
    ok: usize,
}

async fn send_one(client: &reqwest::Client, api: &str, prefix: &str, api_key: Option<&str>, send: &Send) -> Outcome {
    let stream = send.table.stream_name(prefix);
    let (url, body) = if send.posts.len() == 1 {
        let post = &send.posts[0];
        let body = json!({"StreamName": stream, "Data": post.record(send.table), "PartitionKey": format!("post-{}", post.ind)});
        (format!("{api}/streams/{stream}/record"), body)
    } else {
        let records: Vec<Value> = send
            .posts
            .iter()
            .map(|p| json!({"data": p.record(send.table), "partition-key": format!("post-{}", p.ind)}))
            .collect();
        (format!("{api}/streams/{stream}/records"), json!({"records": records}))
    };
    let mut request = client.put(url).header("content-type", "application/json").body(body.to_string());
    if let Some(key) = api_key {
        request = request.header("x-api-key", key);
    }
    let Ok(response) = request.send().await else { return Outcome { status: 0, ok: 0 } };
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let ok = match (status, send.posts.len()) {
        (200, 1) => 1,
        (200, n) => n.saturating_sub(answer["FailedRecordCount"].as_u64().unwrap_or(n as u64) as usize),
        _ => 0,
    };
    Outcome { status, ok }
}

/// Writes each record as the Kafka Connect S3 sink does with `flush.size=1`: one file per record,
/// `topics/<topic>/partition=0/<topic>+0+<offset>.json`, holding the compact JSON value and a newline.
fn write_kafka_files(args: &EmulateArgs, dir: &Path) -> anyhow::Result<EmulateReport> {
    let started = Instant::now();
    if args.posts == 0 {
        bail!("--kafka-files needs a number of --posts");
    }
    let posts: Vec<Post> = Emulator::new(args.seed, 0).take(args.posts).collect();
    let keys = write_connect_objects(dir, &args.prefix, &posts, 0, 1)?;
    Ok(EmulateReport {
        posts: posts.len(),
        records_ok: keys.len(),
        elapsed: started.elapsed(),
        ..EmulateReport::default()
    })
}

/// Writes the records of `posts` as a Kafka Connect S3 sink with JsonFormat and `flush.size`
/// = `flush_size` does, into `dir` standing for the bucket: per table, objects
/// `topics/<prefix>.<table>/partition=0/<topic>+0+<offset, 10 digits>.json` of up to `flush_size`
/// compact JSON values, each followed by a newline, offsets counting from `first_offset`.
/// Returns the keys written.
pub fn write_connect_objects(
    dir: &Path,
    prefix: &str,
    posts: &[Post],
    first_offset: u64,
    flush_size: usize,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for table in Table::ALL {
        let topic = table.topic(prefix);
        let folder = format!("topics/{topic}/partition=0");
        std::fs::create_dir_all(dir.join(&folder))
            .with_context(|| format!("creating {folder} in {}", dir.display()))?;
        for (i, chunk) in posts.chunks(flush_size.max(1)).enumerate() {
            let offset = first_offset + (i * flush_size.max(1)) as u64;
            let key = format!("{folder}/{topic}+0+{offset:010}.json");
            let body: String = chunk.iter().map(|post| format!("{}\n", post.record(table))).collect();
            std::fs::write(dir.join(&key), body).with_context(|| format!("writing {key} in {}", dir.display()))?;
            keys.push(key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use pinpipe::api::{ApiConfig, ApiRequest, handle};
    use pinpipe::local::embedded::EmbeddedStreams;
    use pinpipe::stream::StreamStore;

    use super::*;

    /// The producer's request handling served over HTTP on loopback, as `cargo lambda watch` or
    /// API Gateway would, over embedded streams.
    async fn serve_producer(streams: Arc<EmbeddedStreams>) -> String {
        let config = Arc::new(ApiConfig::new("abc", false, Duration::from_secs(1)).unwrap());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (streams, config) = (streams.clone(), config.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (streams, config) = (streams.clone(), config.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes().to_vec();
                            let request = ApiRequest::from(http::Request::from_parts(parts, body));
                            let response = handle(&config, streams.as_ref(), request).await.into_http();
                            Ok::<_, hyper::Error>(response.map(|b| Full::new(Bytes::from(b))))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        url
    }

    fn api_args(url: String, batch: usize) -> EmulateArgs {
        EmulateArgs {
            api: Some(url),
            kafka_files: None,
            prefix: "abc".into(),
            posts: 40,
            seed: 3,
            rate: 0.0,
            concurrency: 4,
            batch,
            api_key: None,
        }
    }

    #[tokio::test]
    async fn posts_reach_the_producer_through_record_and_records() {
        let streams = Arc::new(EmbeddedStreams::new(2, 0));
        for table in Table::ALL {
            streams.create_stream(&table.stream_name("abc"), None).await.unwrap();
        }
        let url = serve_producer(streams.clone()).await;
        let one_by_one = run(&api_args(url.clone(), 1)).await.unwrap();
        assert_eq!(
            (one_by_one.posts, one_by_one.requests, one_by_one.records_ok, one_by_one.records_failed),
            (40, 120, 120, 0)
        );
        let batched = run(&api_args(url.clone(), 16)).await.unwrap();
        assert_eq!((batched.posts, batched.requests, batched.records_ok), (40, 9, 120));
        assert_eq!(batched.statuses, BTreeMap::from([(200, 9)]));
        for table in Table::ALL {
            let stream = table.stream_name("abc");
            let stored: usize = (0..2).map(|s| streams.read(&stream, s, 0, 1_000).len()).sum();
            assert_eq!(stored, 80, "{stream}");
        }
        // A deployment that is not there: every request fails and is counted by status.
        let mut wrong = api_args(url, 1);
        wrong.prefix = "other".into();
        wrong.posts = 2;
        let refused = run(&wrong).await.unwrap();
        assert_eq!((refused.records_ok, refused.records_failed), (0, 6));
        assert_eq!(refused.statuses, BTreeMap::from([(404, 6)]));
    }

    #[test]
    fn kafka_files_follow_the_sink_layout_with_one_record_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let args = EmulateArgs {
            api: None,
            kafka_files: Some(dir.path().to_path_buf()),
            prefix: "abc".into(),
            posts: 3,
            seed: 1,
            rate: 0.0,
            concurrency: 1,
            batch: 1,
            api_key: None,
        };
        let report = write_kafka_files(&args, dir.path()).unwrap();
        assert_eq!((report.posts, report.records_ok), (3, 9));
        let file = dir.path().join("topics/abc.geo/partition=0/abc.geo+0+0000000002.json");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{text:?}");
        let value: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["ind"].as_i64().or_else(|| value["ind"].as_str().and_then(|s| s.parse().ok())), Some(2));
    }
}
