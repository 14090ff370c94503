//! pinpipe's benchmarks (issue 5). `scripts/bench.sh` runs every subcommand, each measurement in
//! a fresh process, and `report` prints the summary table. Every subcommand prints one JSON line
//! per measurement on stdout; nothing here asserts on time.
//!
//! - `gen`: deterministic emulator posts as the `KinesisEvent` JSON Lambda would deliver.
//! - `consume`: those events through `kinesis_trigger::handle_kinesis_event`, the stream consumer's
//!   own handler, into a Delta table on local disk or S3.
//! - `floor`: the same events base64-decoded, parsed and written as one Parquet file each, with
//!   the same schema, and nothing else.
//! - `coldstart`: a loopback Lambda runtime API stub; time from spawning a function binary to its
//!   first `GET /2018-06-01/runtime/invocation/next`.
//! - `runtime`: the real release `stream-consumer` against a loopback runtime API stub
//!   that hands it the event files' bytes; each batch timed from the hand-out to the posted
//!   answer, cold from the spawn to the first answer, and the child's peak RSS.
//! - `size`: a binary's size, whether it is stripped, and its Lambda zip's size.
//! - `producer`: a 500-record `PUT /streams/{name}/records` through `pinpipe::api::handle`,
//!   with the time spent inside the Kinesis adapter subtracted; `--embedded` puts to pinpipe's
//!   in-memory streams instead, with no network, for profiling the handler
//!   (`cargo build --profile profiling -p pinpipe-bench`, then `perf record`).
//! - `scale-depth`, `scale-writers`, `scale-progress`: commit cost against the table's
//!   depth, throughput of concurrent writers on one table, S3 requests per batch, and the progress
//!   state checkpoints keep; `scale-probe`, what the moto harness itself serves; see `scale`.
//! - `report`: the summary table from the JSON lines.

mod before;
mod floor;
mod report;
mod runtime_path;
mod runtime_stub;
mod scale;
mod sizes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::kinesis::KinesisEvent;
use pinpipe::Table;
use pinpipe::api::{ApiConfig, ApiRequest};
use pinpipe::kinesis_event::KinesisBatch;
use pinpipe::kinesis_trigger::handle_kinesis_payload;
use pinpipe::lake::{Lake, SourceKey, committed_position};
use pinpipe::local::emulator::Emulator;
use pinpipe::local::events::{KinesisDelivery, kinesis_event, sequence_number};
use pinpipe::sink::TableSink;
use pinpipe::stream::kinesis::KinesisStreamStore;
use pinpipe::stream::{PutAck, PutEntry, PutOutcome, StreamError, StreamInfo, StreamStore};
use serde_json::{Value, json};

/// Lambda's invoke payload limit (synchronous and event-source-mapping batches): 6 MB.
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;
pub const SHARD: &str = "shardId-000000000000";
pub const STREAM_PREFIX: &str = "0a1b2c3d4e5f";

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    flags: HashMap<String, Vec<String>>,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Self {
        let mut flags: HashMap<String, Vec<String>> = HashMap::new();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let name = arg.trim_start_matches("--").to_string();
            let value = match args.peek() {
                Some(v) if !v.starts_with("--") => args.next().unwrap_or_default(),
                _ => String::new(),
            };
            flags.entry(name).or_default().push(value);
        }
        Self { flags }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.flags.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    fn req(&self, name: &str) -> Result<&str, Error> {
        self.get(name).ok_or_else(|| format!("--{name} is required").into())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.flags.get(name).cloned().unwrap_or_default()
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, Error> {
        match self.get(name) {
            Some(v) => v.parse().map_err(|_| format!("--{name} {v}: not a number").into()),
            None => Ok(default),
        }
    }
}

/// Runs `work`, then waits for the checkpoints its appends left writing in the background.
async fn settled<T>(work: impl Future<Output = T>) -> T {
    let result = work.await;
    pinpipe::lake::settle_background_checkpoints().await;
    result
}

fn main() -> Result<(), Error> {
    // The functions' allocator settings, so the in-process handler and the floor run as the
    // functions do (the floor gets every advantage the consumer has).
    pinpipe::allocator::keep_batch_memory();
    let mut argv = std::env::args().skip(1);
    let command = argv.next().unwrap_or_default();
    let args = Args::parse(argv);
    if let Ok(directives) = std::env::var("RUST_LOG") {
        // Diagnostics on stderr (stdout carries the JSON lines), e.g. RUST_LOG=pinpipe=debug.
        let filter = tracing_subscriber::EnvFilter::try_new(directives)?;
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
    }
    let runtime = || tokio::runtime::Builder::new_multi_thread().enable_all().build();
    match command.as_str() {
        "gen" => gen_events(&args),
        "consume" => runtime()?.block_on(consume(&args)),
        "breakdown" => breakdown(&args),
        "floor" => floor::run(&args),
        "coldstart" => runtime_stub::coldstart(&args),
        "runtime" => runtime_path::run(&args),
        "size" => sizes::run(&args),
        "producer" => runtime()?.block_on(producer(&args)),
        "scale-depth" => runtime()?.block_on(settled(scale::depth(&args))),
        "scale-writers" => runtime()?.block_on(settled(scale::writers(&args))),
        "scale-progress" => runtime()?.block_on(settled(scale::progress(&args))),
        "scale-probe" => runtime()?.block_on(scale::probe(&args)),
        "report" => report::print(Path::new(args.req("results")?)),
        _ => Err("usage: pinpipe-bench gen|consume|breakdown|floor|coldstart|runtime|size|producer|scale-depth|scale-writers|scale-progress|scale-probe|report [--flags]"
            .into()),
    }
}

/// The peak resident set of this process so far, in bytes (`VmHWM`).
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The records of `table` of `n` posts, as the JSON text the producer stores in Kinesis.
fn records(table: Table, seed: u64, first_ind: i64, n: usize) -> Vec<Vec<u8>> {
    Emulator::new(seed, first_ind)
        .take(n)
        .map(|post| serde_json::to_vec(post.record(table)).expect("JSON serialises"))
        .collect()
}

/// The event for `data`, sequence numbers from `first_seq`.
fn event_bytes(table: Table, data: &[Vec<u8>], first_seq: u64) -> Vec<u8> {
    let sequences: Vec<String> = (0..data.len() as u64).map(|i| sequence_number(first_seq + i)).collect();
    let keys: Vec<String> = (0..data.len()).map(|i| format!("{i:08x}-5c1e-4b7a-9f3d-{:012x}", i * 7919)).collect();
    let deliveries: Vec<KinesisDelivery<'_>> = data
        .iter()
        .zip(&sequences)
        .zip(&keys)
        .map(|((data, seq), key)| KinesisDelivery { shard_id: SHARD, sequence_number: seq, partition_key: key, data })
        .collect();
    let event = kinesis_event("us-east-1", "123456789012", &table.stream_name(STREAM_PREFIX), &deliveries);
    serde_json::to_vec(&event).expect("an event serialises")
}

/// How many of these records fit one invoke payload.
fn max_records(table: Table, data: &[Vec<u8>]) -> usize {
    let (mut lo, mut hi) = (1, data.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if event_bytes(table, &data[..mid], 1).len() <= PAYLOAD_LIMIT { lo = mid } else { hi = mid - 1 }
    }
    lo
}

/// `gen --table pin --records 10000|max --batches 4 --out DIR`: DIR/<table>-<n>-<k>.json, the
/// batches with consecutive sequence numbers of one shard and distinct posts.
fn gen_events(args: &Args) -> Result<(), Error> {
    let table: Table = args.req("table")?.parse()?;
    let batches: usize = args.num("batches", 4)?;
    let out = PathBuf::from(args.req("out")?);
    std::fs::create_dir_all(&out)?;
    let wanted = args.req("records")?;
    // Batch k holds posts of seed 42 + k from ind k × 10,000; "max" is the most records that fit
    // the payload limit in every batch.
    let n = match wanted {
        "max" => (0..batches)
            .map(|k| max_records(table, &records(table, 42 + k as u64, (k * 10_000) as i64, 10_000)))
            .min()
            .unwrap_or(1),
        n => n.parse()?,
    };
    let mut files = Vec::new();
    for k in 0..batches {
        let data = records(table, 42 + k as u64, (k * 10_000) as i64, n);
        let bytes = event_bytes(table, &data, (k * n) as u64 + 1);
        let path = out.join(format!("{}-{wanted}-{k}.json", table.name()));
        std::fs::write(&path, &bytes)?;
        files.push(json!({"path": path, "payload_bytes": bytes.len(),
            "data_bytes": data.iter().map(Vec::len).sum::<usize>()}));
    }
    println!("{}", json!({"kind": "gen", "table": table.name(), "set": wanted, "records": n, "files": files}));
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// `consume --table pin --lake DIR|s3://b/p --label L --event F --event F ...`: each event through
/// the consumer's handler, in order, in this one process (the first batch opens or creates the
/// table, as a cold Lambda's does; the others are warm).
async fn consume(args: &Args) -> Result<(), Error> {
    let table: Table = args.req("table")?.parse()?;
    let lake_uri = args.req("lake")?;
    let files = args.all("event");
    let sink = TableSink::new(table, Lake::new(lake_uri));
    // `--sequential`: the consumer as it was before issue 5 (rows, then quarantine), for a
    // before/after figure.
    let sequential = args.get("sequential").is_some();
    let mut handles = (None, None);
    let mut ms = Vec::new();
    let (mut records, mut payload) = (0usize, 0usize);
    for file in &files {
        let bytes = std::fs::read(file)?;
        let started = Instant::now();
        if sequential {
            // What the Lambda runtime did with the invoke payload before the consumer took it raw,
            // then the handler as it was when it committed rows and quarantine one after the other.
            let event: KinesisEvent = serde_json::from_slice(&bytes)?;
            before::consume(table, sink.lake(), &mut handles, &event).await?;
            ms.push(started.elapsed().as_secs_f64() * 1e3);
            records = event.records.len();
        } else {
            // The function's handler from the invoke payload's bytes, as `main` calls it.
            let response = handle_kinesis_payload(&sink, &bytes).await?;
            ms.push(started.elapsed().as_secs_f64() * 1e3);
            if !response.batch_item_failures.is_empty() {
                return Err(format!("{file}: the batch failed: {response:?}").into());
            }
            records = KinesisBatch::parse(&bytes)?.len();
        }
        payload = bytes.len();
    }
    // What one exactly-once progress lookup (8 `txn` entries) costs on the table as it is now.
    let mut lookup_ms = Vec::new();
    if let Some(delta) = sink.lake().open(table.name()).await? {
        let key = SourceKey::Sequence(format!("kinesis/{}/{SHARD}", table.stream_name(STREAM_PREFIX)));
        for _ in 0..5 {
            let started = Instant::now();
            std::hint::black_box(committed_position(&delta, &key).await?);
            lookup_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    let rows = sink.lake().count_rows(table.name()).await?.unwrap_or(0);
    let quarantined = sink.lake().count_rows("quarantine").await?.unwrap_or(0);
    let warm = if ms.len() > 1 { median(&ms[1..]) } else { ms[0] };
    println!(
        "{}",
        json!({"kind": "consume", "label": args.get("label").unwrap_or(""), "table": table.name(),
            "lake": if lake_uri.starts_with("s3://") { "s3" } else { "local" }, "sequential": sequential,
            "records": records, "payload_bytes": payload, "batches": ms.len(), "ms": ms,
            "cold_ms": ms[0], "warm_ms": warm, "progress_lookup_ms": median(&lookup_ms), "rows_in_table": rows, "quarantined": quarantined,
            "peak_rss": peak_rss()})
    );
    Ok(())
}

/// `breakdown --table pin --event F ...`: where a batch's time goes before the Delta write, by
/// the library's own steps: the payload into records (`KinesisBatch`, data base64-decoded),
/// cleaning, the Arrow batch; and, for comparison, the payload into a typed `KinesisEvent`.
fn breakdown(args: &Args) -> Result<(), Error> {
    use pinpipe::clean::clean_bytes;
    use pinpipe::schema::{Origin, table_batch};
    let table: Table = args.req("table")?.parse()?;
    let (mut typed, mut raw, mut parse, mut clean, mut arrow) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut buffer = Vec::new();
    for file in args.all("event") {
        let bytes = std::fs::read(&file)?;
        let t = Instant::now();
        std::hint::black_box(serde_json::from_slice::<KinesisEvent>(&bytes)?);
        typed.push(t.elapsed().as_secs_f64() * 1e3);
        // What lambda_runtime's own parse costs for a handler that asks for raw JSON: a scan and
        // a copy. The stream consumer takes the payload before that parse (its src/payload.rs).
        let t = Instant::now();
        std::hint::black_box(serde_json::from_slice::<Box<serde_json::value::RawValue>>(&bytes)?);
        raw.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let batch = KinesisBatch::parse(&bytes)?;
        let data = batch.decode_data(&mut buffer);
        parse.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let rows: Vec<_> = data
            .into_iter()
            .filter_map(|d| clean_bytes(table, d.ok()?).ok())
            .map(|c| (c, Origin { source: String::new(), position: String::new() }))
            .collect();
        clean.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let batch = table_batch(table, &rows, 0)?;
        arrow.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(batch);
    }
    println!(
        "{}",
        json!({"kind": "breakdown", "label": args.get("label").unwrap_or(""), "table": table.name(),
            "event_parse_ms": median(&parse), "typed_event_ms": median(&typed), "raw_value_ms": median(&raw), "clean_ms": median(&clean), "arrow_ms": median(&arrow)})
    );
    Ok(())
}

/// A stream store that measures the time spent inside another one.
struct Timed<S> {
    inner: S,
    nanos: AtomicU64,
}

impl<S> Timed<S> {
    fn take(&self) -> Duration {
        Duration::from_nanos(self.nanos.swap(0, Ordering::Relaxed))
    }

    async fn time<T>(&self, f: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = f.await;
        self.nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }
}

#[async_trait]
impl<S: StreamStore> StreamStore for Timed<S> {
    async fn list_streams(&self) -> Result<Vec<String>, StreamError> {
        self.time(self.inner.list_streams()).await
    }
    async fn describe_stream(&self, name: &str) -> Result<StreamInfo, StreamError> {
        self.time(self.inner.describe_stream(name)).await
    }
    async fn create_stream(&self, name: &str, shard_count: Option<i32>) -> Result<(), StreamError> {
        self.time(self.inner.create_stream(name, shard_count)).await
    }
    async fn delete_stream(&self, name: &str) -> Result<(), StreamError> {
        self.time(self.inner.delete_stream(name)).await
    }
    async fn put_record(&self, stream: &str, entry: PutEntry) -> Result<PutAck, StreamError> {
        self.time(self.inner.put_record(stream, entry)).await
    }
    async fn put_records(&self, stream: &str, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
        self.time(self.inner.put_records(stream, entries)).await
    }
}

/// `producer --records 500 --iterations 200`: against the Kinesis endpoint of the environment
/// (moto). Each request's handler time minus the time inside the Kinesis adapter is the overhead.
/// `--embedded` uses pinpipe's in-memory streams instead (no network: for profiling the handler).
async fn producer(args: &Args) -> Result<(), Error> {
    if args.get("embedded").is_some() {
        return producer_on(args, pinpipe::local::embedded::EmbeddedStreams::new(4, 0)).await;
    }
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    producer_on(args, KinesisStreamStore::from_sdk_config(&sdk)).await
}

async fn producer_on<S: StreamStore>(args: &Args, inner: S) -> Result<(), Error> {
    let n: usize = args.num("records", 500)?;
    let iterations: usize = args.num("iterations", 200)?;
    let store = Arc::new(Timed { inner, nanos: AtomicU64::new(0) });
    let prefix = format!("bench{}", std::process::id());
    let config = ApiConfig::new(prefix.clone(), false, Duration::from_secs(3))?;
    let stream = Table::Pin.stream_name(&prefix);
    store.inner.create_stream(&stream, Some(4)).await?;
    let data = records(Table::Pin, 7, 0, n);
    let body = json!({"records": data.iter().enumerate().map(|(i, d)| json!({
        "data": serde_json::from_slice::<Value>(d).expect("emulator JSON"),
        "partition-key": format!("{i:08x}-5c1e-4b7a-9f3d-{:012x}", i * 7919),
    })).collect::<Vec<_>>()})
    .to_string()
    .into_bytes();
    let (mut total, mut overhead, mut kinesis) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..iterations + 5 {
        let request = ApiRequest::new(http::Method::PUT, format!("/prod/streams/{stream}/records"))
            .with_body("application/json", body.clone());
        store.take();
        let started = Instant::now();
        let response = pinpipe::api::handle(&config, store.as_ref(), request).await;
        let elapsed = started.elapsed();
        let inside = store.take();
        if response.status != http::StatusCode::OK || response.body["FailedRecordCount"] != 0 {
            return Err(format!("PutRecords answered {}: {}", response.status, response.body).into());
        }
        if i >= 5 {
            total.push(elapsed.as_secs_f64() * 1e3);
            kinesis.push(inside.as_secs_f64() * 1e3);
            overhead.push((elapsed.saturating_sub(inside)).as_secs_f64() * 1e3);
        }
    }
    store.inner.delete_stream(&stream).await.ok();
    println!(
        "{}",
        json!({"kind": "producer", "records": n, "body_bytes": body.len(), "iterations": iterations,
            "overhead_p50_ms": percentile(&overhead, 50.0), "overhead_p99_ms": percentile(&overhead, 99.0),
            "kinesis_p50_ms": percentile(&kinesis, 50.0), "total_p50_ms": percentile(&total, 50.0),
            "total_p99_ms": percentile(&total, 99.0), "peak_rss": peak_rss()})
    );
    Ok(())
}
