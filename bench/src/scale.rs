//! How pinpipe's appends scale: with the depth of the table, with concurrent writers,
//! in S3 requests, and in the progress state the log keeps. Each subcommand prints one JSON line
//! that `report` turns into rows; nothing here asserts on time.
//!
//! - `scale-depth --lake DIR|s3://b/p --versions 5000`: one writer (one `TableSink`, one shard)
//!   appends 100-record batches through `kinesis_trigger::consume_kinesis` until the table is at
//!   version N, with no maintenance. Per batch: wall time and CPU time of this process (the
//!   fault proxy's own thread excluded). Cold opens (a fresh `Lake::open`) mid-run, and a fresh
//!   `TableSink`'s first batch at the end.
//! - `scale-writers --lake s3://b/p --writers W --seconds 20`: W sinks (W Lambda containers, one
//!   shard each) append back to back to one table for a fixed time; then every row is checked to
//!   have landed exactly once.
//! - `scale-progress --lake DIR`: a month of progress (`txn`) state, written with old
//!   `lastUpdated` stamps, then checkpointed: what the table's `txn` retention leaves.
//!
//! S3 means moto, through `pinpipe_tests::fault_proxy` (no faults; conditional PUTs serialised,
//! as S3 makes them atomic; `--latency-ms` added to every request; requests counted by kind).
//! `AWS_ENDPOINT_URL` must be a loopback moto: nothing here talks to AWS.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitData;
use deltalake::logstore::CommitOrBytes;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, Path};
use object_store::ObjectStoreExt as _;
use pinpipe::Table;
use pinpipe::kinesis_trigger::consume_kinesis;
use pinpipe::lake::{CHUNKS, Lake, Position, SourceKey, TXN_RETENTION, committed_position};
use pinpipe::local::emulator::Emulator;
use pinpipe::local::events::{KinesisDelivery, kinesis_event, sequence_number};
use pinpipe::sink::{BatchSummary, TableSink};
use pinpipe::table::QUARANTINE_TABLE;
use pinpipe_tests::fault_proxy::{FaultPlan, FaultProxy};
use serde_json::{Value, json};

use crate::report::{Row, cost_per_million, f, s3_request_cost, verdict};
use crate::{Args, Error, STREAM_PREFIX, median, peak_rss, percentile};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() { f64::NAN } else { values.iter().sum::<f64>() / values.len() as f64 }
}

// ---------------------------------------------------------------------------------------------
// CPU time

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; an unknown clock only returns an error.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of this process, all threads (user + system).
fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time of the thread `tid` of this process: Linux's per-thread CPU clock
/// (`MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`), precise to the nanosecond.
fn thread_cpu(tid: i32) -> Duration {
    clock(((!tid) << 3) | 6)
}

/// The id of this process's thread named `name`.
fn thread_named(name: &str) -> Option<i32> {
    std::fs::read_dir("/proc/self/task").ok()?.flatten().find_map(|task| {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        (comm.trim_end() == name).then(|| task.file_name().to_str()?.parse().ok()).flatten()
    })
}

// ---------------------------------------------------------------------------------------------
// Where the tables are: a local directory, or moto S3 through the proxy

/// Requests the proxy forwarded, by kind.
#[derive(Clone, Default)]
struct Counts {
    total: u64,
    by_kind: BTreeMap<String, u64>,
    /// By kind and object (`GET commit`, `PUT data`, `LIST intents`, ...).
    by_object: BTreeMap<String, u64>,
}

/// `now - before`, key by key, without the zeros.
fn difference(now: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

impl Counts {
    fn since(&self, before: &Counts) -> Counts {
        Counts {
            total: self.total - before.total,
            by_kind: difference(&self.by_kind, &before.by_kind),
            by_object: difference(&self.by_object, &before.by_object),
        }
    }

    fn minus(&self, other: &Counts) -> Counts {
        Counts {
            total: self.total.saturating_sub(other.total),
            by_kind: difference(&self.by_kind, &other.by_kind),
            by_object: difference(&self.by_object, &other.by_object),
        }
    }

    fn add(&mut self, other: &Counts) {
        self.total += other.total;
        for (k, v) in &other.by_kind {
            *self.by_kind.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.by_object {
            *self.by_object.entry(k.clone()).or_default() += v;
        }
    }

    fn json(&self) -> Value {
        json!({"total": self.total, "by_kind": self.by_kind, "by_object": self.by_object})
    }
}

struct Env {
    uri: String,
    proxy: Option<(FaultProxy, Option<i32>)>,
    latency_ms: f64,
}

impl Env {
    /// `uri` is a local directory or `s3://bucket/prefix` on the moto of `AWS_ENDPOINT_URL`,
    /// reached through a fault proxy (no faults) adding `latency_ms` to every request.
    async fn new(uri: &str, latency_ms: f64) -> Result<Env, Error> {
        if !uri.starts_with("s3://") {
            return Ok(Env { uri: uri.to_string(), proxy: None, latency_ms: 0.0 });
        }
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
        if !endpoint.starts_with("http://127.0.0.1:") {
            return Err(format!(
                "AWS_ENDPOINT_URL={endpoint:?} is not a loopback moto (source scripts/lib.sh; start_moto)"
            )
            .into());
        }
        let proxy = FaultProxy::start(&endpoint, FaultPlan::none(), 0).await;
        proxy.set_latency(Duration::from_secs_f64(latency_ms / 1e3));
        let tid = thread_named("fault-proxy");
        if tid.is_none() {
            eprintln!("warning: the proxy's thread was not found; its CPU time counts as the writers'");
        }
        Ok(Env { uri: uri.to_string(), proxy: Some((proxy, tid)), latency_ms })
    }

    fn is_s3(&self) -> bool {
        self.proxy.is_some()
    }

    /// A fresh lake handle (its own object store and HTTP connections), as a new Lambda has.
    fn lake(&self) -> Lake {
        let lake = Lake::new(&self.uri);
        match &self.proxy {
            None => lake,
            Some((proxy, _)) => lake.with_storage_options(HashMap::from([
                ("AWS_ENDPOINT_URL".to_string(), proxy.endpoint.clone()),
                ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
            ])),
        }
    }

    fn counts(&self) -> Counts {
        match &self.proxy {
            None => Counts::default(),
            Some((proxy, _)) => Counts {
                total: proxy.stats.requests.load(std::sync::atomic::Ordering::Relaxed),
                by_kind: proxy.stats.requests_by_kind().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                by_object: proxy.stats.requests_by_object(),
            },
        }
    }

    /// CPU time of this process but the proxy's thread: what the writers spent.
    fn own_cpu(&self) -> Duration {
        let proxy = match &self.proxy {
            Some((_, Some(tid))) => thread_cpu(*tid),
            _ => Duration::ZERO,
        };
        process_cpu().saturating_sub(proxy)
    }

    fn set_latency(&self, latency: Duration) {
        if let Some((proxy, _)) = &self.proxy {
            proxy.set_latency(latency);
        }
    }

    fn kind(&self) -> &'static str {
        if self.is_s3() { "s3" } else { "local" }
    }
}

// ---------------------------------------------------------------------------------------------
// What the writers send

/// One shard's records: emulator posts of one table, as the Kinesis events Lambda would deliver.
struct Source {
    table: Table,
    shard: String,
    emulator: Emulator,
    next_seq: u64,
    records: usize,
    sent: u64,
}

impl Source {
    /// The shard of writer `writer`: its own posts (`ind`s from `writer` × 10⁹) and sequence numbers.
    fn new(table: Table, writer: usize, records: usize, poison_rate: f64) -> Self {
        let mut emulator = Emulator::new(1_000 + writer as u64, writer as i64 * 1_000_000_000);
        emulator.poison_rate = poison_rate;
        Self { table, shard: format!("shardId-{writer:012}"), emulator, next_seq: 1, records, sent: 0 }
    }

    fn next_event(&mut self) -> KinesisEvent {
        let n = self.records as u64;
        let data: Vec<Vec<u8>> = (0..n)
            .map(|_| serde_json::to_vec(self.emulator.next_post().record(self.table)).expect("JSON serialises"))
            .collect();
        let sequences: Vec<String> = (0..n).map(|i| sequence_number(self.next_seq + i)).collect();
        let keys: Vec<String> =
            (0..n).map(|i| format!("{:08x}-5c1e-4b7a-9f3d-{:012x}", self.next_seq + i, i * 7919)).collect();
        self.next_seq += n;
        self.sent += n;
        let deliveries: Vec<KinesisDelivery<'_>> = data
            .iter()
            .zip(&sequences)
            .zip(&keys)
            .map(|((data, seq), key)| KinesisDelivery {
                shard_id: &self.shard,
                sequence_number: seq,
                partition_key: key,
                data,
            })
            .collect();
        kinesis_event("us-east-1", "123456789012", &self.table.stream_name(STREAM_PREFIX), &deliveries)
    }
}

/// Lost commit races of a batch: its commits' attempts beyond the first.
fn collisions(summary: &BatchSummary) -> u64 {
    [&summary.rows, &summary.quarantined].iter().map(|o| u64::from(o.attempts.saturating_sub(1))).sum()
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/// The table's `_last_checkpoint` and the size of the checkpoint it names.
async fn last_checkpoint(table: &DeltaTable) -> Result<Option<(u64, u64, Value)>, Error> {
    let store = table.object_store();
    let hint = match store.get(&Path::from("_delta_log/_last_checkpoint")).await {
        Ok(found) => found.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let hint: Value = serde_json::from_slice(&hint)?;
    let version = hint["version"].as_u64().ok_or("_last_checkpoint has no version")?;
    let bytes = match hint["parts"].as_u64() {
        Some(parts) if parts > 1 => {
            let mut total = 0;
            for part in 1..=parts {
                let path = format!("_delta_log/{version:020}.checkpoint.{part:010}.{parts:010}.parquet");
                total += store.head(&Path::from(path)).await?.size;
            }
            total
        }
        _ => store.head(&Path::from(format!("_delta_log/{version:020}.checkpoint.parquet"))).await?.size,
    };
    Ok(Some((version, bytes, hint)))
}

/// Rows of each action kind in a single-part checkpoint (`txn`, `add`, `metaData`, ...).
async fn checkpoint_actions(table: &DeltaTable, version: u64) -> Result<BTreeMap<String, usize>, Error> {
    use deltalake::arrow::array::Array;
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let path = Path::from(format!("_delta_log/{version:020}.checkpoint.parquet"));
    let bytes = table.object_store().get(&path).await?.bytes().await?;
    let mut counts = BTreeMap::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()? {
        let batch = batch?;
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            *counts.entry(field.name().clone()).or_default() += column.len() - column.null_count();
        }
    }
    Ok(counts)
}

/// A fresh open of the table (what a cold Lambda does before its first append), timed, with
/// the requests it took and what it read: the last checkpoint and the commits after it. Adds
/// every request it made, reading the checkpoint's size included, to `spent`.
async fn measure_open(env: &Env, table: Table, spent: &mut Counts) -> Result<Value, Error> {
    let before = env.counts();
    let started = Instant::now();
    let delta = env.lake().open(table.name()).await?.ok_or("the table is gone")?;
    let open_ms = ms(started.elapsed());
    let requests = env.counts().since(&before);
    let version = delta.version().unwrap_or(0) as u64;
    let (checkpoint, bytes) = last_checkpoint(&delta).await?.map_or((None, 0), |(v, b, _)| (Some(v), b));
    spent.add(&env.counts().since(&before));
    Ok(json!({"version": version, "open_ms": open_ms, "checkpoint_version": checkpoint, "checkpoint_bytes": bytes,
        "tail": version - checkpoint.unwrap_or(0), "requests": requests.json()}))
}

// ---------------------------------------------------------------------------------------------
// scale-depth

struct Landed {
    version: u64,
    ms: f64,
    cpu_ms: f64,
    /// Requests to S3 (0 on local disk).
    requests: u64,
}

/// Figures of a window of consecutive batches.
fn window(w: &[Landed]) -> Value {
    let (from, to) = (w.first().map(|l| l.version), w.last().map(|l| l.version));
    let wall: Vec<f64> = w.iter().map(|l| l.ms).collect();
    let cpu: Vec<f64> = w.iter().map(|l| l.cpu_ms).collect();
    let requests: Vec<f64> = w.iter().map(|l| l.requests as f64).collect();
    // The batch that landed on a checkpoint version (one in each window of 100) also rebases the
    // appender and writes the checkpoint, the one append in a hundred that reads the whole state.
    let checkpoint = w.iter().find(|l| l.version % 100 == 0);
    let mut slowest: Vec<&Landed> = w.iter().collect();
    slowest.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    let slowest: Vec<Value> = slowest
        .iter()
        .take(3)
        .map(|l| json!({"version": l.version, "ms": l.ms, "cpu_ms": l.cpu_ms, "requests": l.requests}))
        .collect();
    json!({"from": from, "to": to, "batches": w.len(), "median_ms": median(&wall), "mean_ms": mean(&wall),
        "p99_ms": percentile(&wall, 99.0), "cpu_median_ms": median(&cpu), "cpu_mean_ms": mean(&cpu),
        "requests_median": median(&requests), "requests_mean": mean(&requests), "slowest": slowest,
        "checkpoint_batch": checkpoint.map(|l| json!({"version": l.version, "ms": l.ms, "cpu_ms": l.cpu_ms, "requests": l.requests}))})
}

/// The resident set of this process now, in bytes (`VmRSS`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `scale-depth --lake DIR|s3://b/p [--versions 5000] [--records 100] [--table geo]
/// [--latency-ms 20] [--max-seconds 1800] [--shard 0] [--batches-csv F] [--label L]`: appends
/// until the table is at version `--versions`. On an existing table (with another `--shard`, so
/// its records are new), it measures a fresh process continuing at that depth.
pub async fn depth(args: &Args) -> Result<(), Error> {
    let table: Table = args.get("table").unwrap_or("geo").parse()?;
    let target: u64 = args.num("versions", 5_000)?;
    let records: usize = args.num("records", 100)?;
    let max_seconds: f64 = args.num("max-seconds", 1_800.0)?;
    let poison_rate: f64 = args.num("poison-rate", 0.005)?;
    let env = Env::new(args.req("lake")?, args.num("latency-ms", 0.0)?).await?;
    let started = Instant::now();
    let mut source = Source::new(table, args.num("shard", 0)?, records, poison_rate);
    let sink = TableSink::new(table, env.lake());
    // Fresh opens along the way, each 50 or 99 commits past a checkpoint.
    let open_at: Vec<u64> = [150, target / 2 / 100 * 100 + 50, target - 50, target - 1].into_iter().collect();
    let (mut landed, mut opens, mut collided) = (Vec::new(), Vec::new(), 0);
    let mut steady_from: Option<(Counts, Duration)> = None;
    let mut open_time = Duration::ZERO;
    let mut open_requests = Counts::default();
    loop {
        let event = source.next_event();
        let (requests, cpu, t) = (env.counts().total, env.own_cpu(), Instant::now());
        let summary = consume_kinesis(&sink, &event).await?;
        let (wall, cpu) = (t.elapsed(), env.own_cpu().saturating_sub(cpu));
        let requests = env.counts().total - requests;
        let version = summary.rows.version.ok_or("a batch committed no rows")?;
        collided += collisions(&summary);
        landed.push(Landed { version, ms: ms(wall), cpu_ms: ms(cpu), requests });
        if landed.len() == 1 {
            // Requests from here on are the steady state (the first batch created the table).
            steady_from = Some((env.counts(), started.elapsed()));
        }
        if open_at.contains(&version) {
            let t = Instant::now();
            opens.push(measure_open(&env, table, &mut open_requests).await?);
            open_time += t.elapsed();
        }
        if version >= target || started.elapsed().as_secs_f64() > max_seconds {
            break;
        }
    }
    let (steady_counts, steady_started) = steady_from.expect("one batch landed");
    // The fresh opens along the way are not the writer's requests.
    let steady = env.counts().since(&steady_counts).minus(&open_requests);
    let steady_batches = landed.len() as u64 - 1;
    let run_s = started.elapsed().as_secs_f64();
    let reached = landed.last().map_or(0, |l| l.version);

    // A new container at the final version: a fresh sink's first batch, the shard continuing.
    let before = env.counts();
    let cold_sink = TableSink::new(table, env.lake());
    let event = source.next_event();
    let t = Instant::now();
    let cold = consume_kinesis(&cold_sink, &event).await?;
    let cold_ms = ms(t.elapsed());
    let cold_requests = env.counts().since(&before);
    let final_open = measure_open(&env, table, &mut Counts::default()).await?;

    if let Some(path) = args.get("batches-csv") {
        // Every batch, for a closer look: version, wall ms, CPU ms, S3 requests.
        let lines: Vec<String> =
            landed.iter().map(|l| format!("{},{:.3},{:.3},{}", l.version, l.ms, l.cpu_ms, l.requests)).collect();
        std::fs::write(path, format!("version,ms,cpu_ms,requests\n{}\n", lines.join("\n")))?;
    }
    // The first 100 warm batches (the first batch opened or created the table) and the 100 before
    // the last (when there were 200 warm batches or more): on a new table, v2–101 and
    // v(N-100)–(N-1), each with one checkpoint batch and the batch after it.
    let n = landed.len();
    let first = window(&landed[1.min(n)..101.min(n)]);
    let last = window(&landed[101.max(n.saturating_sub(101)).min(n)..n.saturating_sub(1).max(101.min(n))]);
    let start_version = landed[0].version - 1;
    // Medians of 100 batches at ten points along the run: how the cost moved between the windows.
    let step = ((n.saturating_sub(1)) / 10 / 100 * 100).max(100);
    let trend: Vec<Value> = (1..n.saturating_sub(99))
        .step_by(step)
        .map(|i| {
            let w = &landed[i..i + 100];
            let wall: Vec<f64> = w.iter().map(|l| l.ms).collect();
            let cpu: Vec<f64> = w.iter().map(|l| l.cpu_ms).collect();
            json!({"from": w[0].version, "median_ms": median(&wall), "cpu_median_ms": median(&cpu)})
        })
        .collect();
    let ratio = |key: &str| last[key].as_f64().unwrap_or(f64::NAN) / first[key].as_f64().unwrap_or(f64::NAN);
    let warm: Vec<f64> = landed[1..].iter().map(|l| l.ms).collect();
    println!(
        "{}",
        json!({"kind": "scale-depth", "label": args.get("label").unwrap_or(""), "lake": env.kind(), "table": table.name(),
            "records_per_batch": records, "poison_rate": poison_rate, "latency_ms": env.latency_ms,
            "versions_target": target, "start_version": start_version, "versions_reached": reached, "batches": landed.len(),
            "collisions": collided, "first": first, "last": last,
            "latency_ratio": ratio("median_ms"), "cpu_ratio": ratio("cpu_median_ms"),
            "mean_ratio": ratio("mean_ms"), "cpu_mean_ratio": ratio("cpu_mean_ms"),
            "warm_median_ms": median(&warm), "trend": trend, "opens": opens,
            "cold": {"first_batch_ms": cold_ms, "version": cold.rows.version, "requests": cold_requests.json(),
                "open": final_open},
            "steady": {"batches": steady_batches, "seconds": run_s - steady_started.as_secs_f64() - open_time.as_secs_f64(),
                "requests": steady.json(), "requests_per_batch": steady.total as f64 / steady_batches as f64},
            "run_s": run_s, "elapsed_s": started.elapsed().as_secs_f64(), "peak_rss": peak_rss(), "rss_end": rss()})
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// scale-writers

#[derive(Default)]
struct WriterStats {
    batches: u64,
    latencies_ms: Vec<f64>,
    failed: u64,
    collisions: u64,
    attempts: u64,
    /// Batches that another writer's commit carried (group commits), and the other writers'
    /// batches this writer's commits carried.
    landed_by_another: u64,
    carried: u64,
    errors: Vec<String>,
}

/// Delivers `event` as Lambda does: again until it succeeds (at most 20 times). Returns the
/// time to success; failed deliveries are counted.
async fn deliver(sink: &TableSink, event: &KinesisEvent, stats: &mut WriterStats) -> Result<f64, Error> {
    let started = Instant::now();
    for _ in 0..20 {
        match consume_kinesis(sink, event).await {
            Ok(summary) => {
                stats.collisions += collisions(&summary);
                stats.attempts += u64::from(summary.rows.attempts) + u64::from(summary.quarantined.attempts);
                stats.landed_by_another += u64::from(summary.rows.landed_by_another);
                stats.carried += summary.rows.carried as u64;
                return Ok(ms(started.elapsed()));
            }
            Err(error) => {
                stats.failed += 1;
                if stats.errors.len() < 5 {
                    stats.errors.push(error.to_string());
                }
            }
        }
    }
    Err(format!("a batch failed 20 deliveries: {:?}", stats.errors).into())
}

/// `scale-writers --lake s3://b/p --writers W [--seconds 20] [--records 100] [--latency-ms 20]
/// [--table geo] [--memory-mb 1024] [--label L]`
pub async fn writers(args: &Args) -> Result<(), Error> {
    let table: Table = args.get("table").unwrap_or("geo").parse()?;
    let w: usize = args.num("writers", 1)?;
    let seconds: f64 = args.num("seconds", 20.0)?;
    let records: usize = args.num("records", 100)?;
    let poison_rate: f64 = args.num("poison-rate", 0.005)?;
    let env = Arc::new(Env::new(args.req("lake")?, args.num("latency-ms", 20.0)?).await?);
    let started = Instant::now();
    // All writers cold-start together (creating the table races), then run in step.
    let cold_done = Arc::new(tokio::sync::Barrier::new(w + 1));
    let go = Arc::new(tokio::sync::Barrier::new(w + 1));
    let deadline: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let mut tasks = Vec::new();
    for i in 0..w {
        let (env, cold_done, go, deadline) = (env.clone(), cold_done.clone(), go.clone(), deadline.clone());
        tasks.push(tokio::spawn(async move {
            let sink = TableSink::new(table, env.lake());
            let mut source = Source::new(table, i, records, poison_rate);
            let mut stats = WriterStats::default();
            let cold = deliver(&sink, &source.next_event(), &mut stats).await;
            cold_done.wait().await;
            go.wait().await;
            let cold = cold?;
            let mut steady = WriterStats { failed: stats.failed, errors: stats.errors, ..Default::default() };
            let deadline = *deadline.get().expect("set before go");
            while Instant::now() < deadline {
                let event = source.next_event();
                let ms = deliver(&sink, &event, &mut steady).await?;
                steady.latencies_ms.push(ms);
                steady.batches += 1;
            }
            Ok::<_, Error>((cold, steady, source.sent, Instant::now()))
        }));
    }
    cold_done.wait().await;
    let (counts, cpu, window_started) = (env.counts(), env.own_cpu(), Instant::now());
    deadline.set(window_started + Duration::from_secs_f64(seconds)).expect("set once");
    go.wait().await;
    let (mut all, mut cold_ms, mut sent, mut ended) = (WriterStats::default(), Vec::new(), 0u64, window_started);
    for task in tasks {
        let (cold, stats, s, end) = task.await??;
        cold_ms.push(cold);
        sent += s;
        ended = ended.max(end);
        all.batches += stats.batches;
        all.latencies_ms.extend(stats.latencies_ms);
        all.failed += stats.failed;
        all.collisions += stats.collisions;
        all.attempts += stats.attempts;
        all.landed_by_another += stats.landed_by_another;
        all.carried += stats.carried;
        all.errors.extend(stats.errors);
    }
    let window_s = ended.duration_since(window_started).as_secs_f64();
    let requests = env.counts().since(&counts);
    let cpu_ms = ms(env.own_cpu().saturating_sub(cpu));
    let run_s = started.elapsed().as_secs_f64();

    // Every record landed exactly once: rows + quarantined = records sent, no `ind` twice.
    env.set_latency(Duration::ZERO);
    let t = Instant::now();
    let lake = env.lake();
    let rows = lake.count_rows(table.name()).await?.unwrap_or(0);
    let quarantined = lake.count_rows(QUARANTINE_TABLE).await?.unwrap_or(0);
    let batch = lake.read_all(table.name()).await?.ok_or("no table")?;
    let inds: Vec<i64> = pinpipe_tests::int_column(&batch, "ind").into_iter().flatten().collect();
    let distinct: HashSet<i64> = inds.iter().copied().collect();
    let duplicates = inds.len() - distinct.len();
    let exactly_once = rows + quarantined == sent && duplicates == 0 && batch.num_rows() as u64 == rows;
    let verify_s = t.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"kind": "scale-writers", "label": args.get("label").unwrap_or(""), "lake": env.kind(), "table": table.name(),
            "writers": w, "records_per_batch": records, "poison_rate": poison_rate, "latency_ms": env.latency_ms,
            "seconds": seconds, "window_s": window_s, "batches": all.batches,
            "batches_per_s": all.batches as f64 / window_s,
            "p50_ms": percentile(&all.latencies_ms, 50.0), "p99_ms": percentile(&all.latencies_ms, 99.0),
            "max_ms": percentile(&all.latencies_ms, 100.0), "mean_ms": mean(&all.latencies_ms),
            "cold_ms": {"median": median(&cold_ms), "max": percentile(&cold_ms, 100.0)},
            "failed": all.failed, "errors": all.errors, "collisions": all.collisions, "commit_attempts": all.attempts,
            "landed_by_another": all.landed_by_another, "carried": all.carried,
            "cpu_ms_per_batch": cpu_ms / all.batches as f64,
            "requests": requests.json(), "requests_per_batch": requests.total as f64 / all.batches as f64,
            "records_sent": sent, "rows": rows, "quarantined": quarantined, "duplicates": duplicates,
            "exactly_once": exactly_once, "memory_mb": args.num("memory-mb", 1024.0)?,
            "verify_s": verify_s, "run_s": run_s, "elapsed_s": started.elapsed().as_secs_f64(), "peak_rss": peak_rss()})
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// scale-probe

/// `scale-probe --lake s3://b/p [--seconds 3] [--concurrency 16]`: what the harness itself can
/// serve, moto through the proxy with no added latency: small GETs and conditional PUTs (the
/// proxy serialises those) per second, and the time of one LIST of the lake's prefix.
pub async fn probe(args: &Args) -> Result<(), Error> {
    use object_store::aws::AmazonS3Builder;
    use object_store::{ObjectStore, PutMode};
    use std::sync::atomic::{AtomicU64, Ordering};
    let started = Instant::now();
    let uri = args.req("lake")?;
    let env = Env::new(uri, 0.0).await?;
    let Some((proxy, _)) = &env.proxy else { return Err("scale-probe is for an s3:// lake".into()) };
    let (bucket, prefix) = uri.trim_start_matches("s3://").split_once('/').unwrap_or((uri, ""));
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_endpoint(&proxy.endpoint)
            .with_allow_http(true)
            .build()?,
    );
    let seconds: f64 = args.num("seconds", 3.0)?;
    let concurrency: usize = args.num("concurrency", 16)?;
    let object = Path::from(format!("{prefix}/probe/object.json"));
    store.put(&object, vec![b'x'; 2_000].into()).await?;
    let mut rates = serde_json::Map::new();
    for what in ["get", "conditional_put"] {
        let count = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let t = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|task| {
                let (store, object, count) = (store.clone(), object.clone(), count.clone());
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        if what == "get" {
                            store.get(&object).await?.bytes().await?;
                        } else {
                            let path = Path::from(format!("{prefix}/probe/{task}-{n}.json"));
                            store.put_opts(&path, vec![b'x'; 2_000].into(), PutMode::Create.into()).await?;
                        }
                        n += 1;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<_, object_store::Error>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        rates
            .insert(format!("{what}_per_s"), (count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()).into());
    }
    let mut list_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        store.list_with_delimiter(Some(&Path::from(prefix))).await?;
        list_ms.push(ms(t.elapsed()));
    }
    println!(
        "{}",
        json!({"kind": "scale-probe", "label": args.get("label").unwrap_or(""), "concurrency": concurrency,
            "get_per_s": rates["get_per_s"], "conditional_put_per_s": rates["conditional_put_per_s"],
            "list_ms": median(&list_ms), "elapsed_s": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// scale-progress

/// A source's last progress in the simulated month.
struct Progress {
    key: SourceKey,
    position: Position,
    last_updated_ms: i64,
}

impl Progress {
    /// The `txn` actions of this progress, as `lake::progress` writes them (an offset: one entry;
    /// a sequence number: 8 entries of 16 digits, most significant first).
    fn txns(&self, last_updated_ms: i64) -> Vec<Transaction> {
        let txn = |app_id: String, v: i64| Transaction::new_with_last_update(app_id, v, Some(last_updated_ms));
        match &self.key {
            SourceKey::Offset(id) => vec![txn(id.clone(), self.position.as_str().parse().expect("an offset"))],
            SourceKey::Sequence(id) => {
                let padded = format!("{:0>128}", self.position.as_str());
                (0..CHUNKS)
                    .map(|i| txn(format!("{id}#{i}"), padded[i * 16..(i + 1) * 16].parse().expect("16 digits")))
                    .collect()
            }
        }
    }

    fn entries(&self) -> usize {
        match self.key {
            SourceKey::Offset(_) => 1,
            SourceKey::Sequence(_) => CHUNKS,
        }
    }
}

/// `TXN_RETENTION` ("interval 7 days") in milliseconds.
fn retention_ms() -> Result<i64, Error> {
    let words: Vec<&str> = TXN_RETENTION.split_whitespace().collect();
    let n: i64 = words.get(1).and_then(|n| n.parse().ok()).ok_or("unreadable TXN_RETENTION")?;
    let unit = match words.get(2).map(|u| u.trim_end_matches('s')) {
        Some("day") => 86_400_000,
        Some("hour") => 3_600_000,
        Some("minute") => 60_000,
        _ => return Err(format!("unreadable TXN_RETENTION {TXN_RETENTION:?}").into()),
    };
    Ok(n * unit)
}

/// A month of progress, oldest first: `objects` Kafka Connect objects arriving evenly over
/// `days` (each its own source key), and a stream of `shards` shards resharded `reshards` times
/// at even intervals (each generation's shards are new keys; a closed shard's last progress is
/// at its close). No stamp falls within an hour of the retention boundary.
fn month(now_ms: i64, days: f64, objects: usize, shards: usize, reshards: usize, retention: i64) -> Vec<Progress> {
    let span = (days * 86_400_000.0) as i64;
    let boundary = now_ms - retention;
    let clear = |t: i64| if (t - boundary).abs() < 3_600_000 { boundary + 3_600_000 } else { t };
    let mut all = Vec::new();
    let topic = Table::Pin.topic(STREAM_PREFIX);
    for i in 0..objects {
        let partition = i % 4;
        let start = (i / 4) as i64 * 500;
        let t = clear(now_ms - span + (i as i64 * span) / objects as i64);
        all.push(Progress {
            key: SourceKey::Offset(format!("kafka/{topic}/{partition}/{start}")),
            position: Position::parse(&(start + 499).to_string()).expect("digits"),
            last_updated_ms: t,
        });
    }
    let stream = Table::Pin.stream_name(STREAM_PREFIX);
    for generation in 0..=reshards {
        let closed = now_ms - span + ((generation as i64 + 1) * span) / (reshards as i64 + 1);
        let t = if generation == reshards { now_ms - 60_000 } else { clear(closed) };
        for s in 0..shards {
            let shard = format!("shardId-{:012}", generation * shards + s);
            all.push(Progress {
                key: SourceKey::Sequence(format!("kinesis/{stream}/{shard}")),
                position: Position::parse(&sequence_number((generation * 1_000_000 + s * 1_000) as u64 + 999))
                    .expect("digits"),
                last_updated_ms: t,
            });
        }
    }
    all.sort_by_key(|p| p.last_updated_ms);
    all
}

/// Writes `history` to the table in commits of about `per_commit` `txn` entries (commitInfo and
/// `txn` actions, as `TableAppender` writes them), stamped `lastUpdated` as `stamp` says.
async fn write_history(
    table: &DeltaTable,
    history: &[Progress],
    per_commit: usize,
    stamp: impl Fn(&Progress) -> i64,
) -> Result<u64, Error> {
    let mut version = table.version().unwrap_or(0);
    let (mut txns, mut commits) = (Vec::new(), 0);
    for (i, p) in history.iter().enumerate() {
        txns.extend(p.txns(stamp(p)));
        if txns.len() >= per_commit || i + 1 == history.len() {
            let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
            let bytes = CommitData::new(vec![], operation, HashMap::new(), std::mem::take(&mut txns)).get_bytes()?;
            version += 1;
            table.log_store().write_commit_entry(version, CommitOrBytes::LogBytes(bytes), uuid::Uuid::new_v4()).await?;
            commits += 1;
        }
    }
    Ok(commits)
}

/// `scale-progress --lake DIR [--objects 100000] [--shards 4] [--reshards 10] [--days 30]
/// [--txns-per-commit 1000]`: the same month of progress written to three tables, stamped three
/// ways, each then checkpointed once:
/// - `fresh`: every stamp now, nothing due to expire (the checkpoint as it would be without
///   retention);
/// - `month`: stamped as the month went (the steady state: the last 7 days' sources are live);
/// - `expired`: the whole month a month older, all but the live shards due to expire.
pub async fn progress(args: &Args) -> Result<(), Error> {
    let started = Instant::now();
    let lake_uri = args.req("lake")?;
    let objects: usize = args.num("objects", 100_000)?;
    let shards: usize = args.num("shards", 4)?;
    let reshards: usize = args.num("reshards", 10)?;
    let days: f64 = args.num("days", 30.0)?;
    let per_commit: usize = args.num("txns-per-commit", 1_000)?;
    let retention = retention_ms()?;
    let now = chrono::Utc::now().timestamp_millis();
    let span = (days * 86_400_000.0) as i64;
    let history = month(now, days, objects, shards, reshards, retention);
    let entries: usize = history.iter().map(Progress::entries).sum();
    // Sources to look up after the checkpoint: the oldest and newest object, the first and a
    // live shard.
    let offsets = || history.iter().filter(|p| matches!(p.key, SourceKey::Offset(_)));
    let sequences = || history.iter().filter(|p| matches!(p.key, SourceKey::Sequence(_)));
    let samples = [
        ("oldest_object", offsets().next().ok_or("no objects")?),
        ("newest_object", offsets().next_back().ok_or("no objects")?),
        ("first_shard", sequences().next().ok_or("no shards")?),
        ("live_shard", sequences().next_back().ok_or("no shards")?),
    ];

    let lake = Lake::new(lake_uri);
    let schema = pinpipe::schema::table_schema(Table::Pin);
    let mut variants = serde_json::Map::new();
    type Stamp<'a> = &'a dyn Fn(&Progress) -> i64;
    let stamps: [(&str, Stamp); 3] = [
        ("fresh", &|_| now - 60_000),
        ("month", &|p| p.last_updated_ms),
        ("expired", &|p| if p.last_updated_ms > now - 120_000 { p.last_updated_ms } else { p.last_updated_ms - span }),
    ];
    for (name, stamp) in stamps {
        let live = |p: &Progress| stamp(p) > now - retention;
        let live_sources = history.iter().filter(|p| live(p)).count();
        let live_txns: usize = history.iter().filter(|p| live(p)).map(Progress::entries).sum();
        let table_name = format!("progress_{name}");
        let t = Instant::now();
        let table = lake.open_or_create(&table_name, &schema).await?;
        let commits = write_history(&table, &history, per_commit, stamp).await?;
        let write_s = t.elapsed().as_secs_f64();
        // A cold open replaying the JSON commits, before any checkpoint.
        let t = Instant::now();
        let table = lake.open(&table_name).await?.ok_or("table gone")?;
        let open_replay_ms = ms(t.elapsed());
        let t = Instant::now();
        deltalake::checkpoints::create_checkpoint(&table, None).await?;
        let checkpoint_ms = ms(t.elapsed());
        let (version, bytes, hint) = last_checkpoint(&table).await?.ok_or("no checkpoint written")?;
        let actions = checkpoint_actions(&table, version).await?;
        let txns = actions.get("txn").copied().unwrap_or(0);
        // A cold open from the checkpoint, and the sample lookups on it.
        let t = Instant::now();
        let table = lake.open(&table_name).await?.ok_or("table gone")?;
        let open_ms = ms(t.elapsed());
        let (mut lookups, mut lookup_ms, mut as_expected) = (serde_json::Map::new(), Vec::new(), true);
        for (what, p) in samples {
            let t = Instant::now();
            let found = committed_position(&table, &p.key).await?;
            lookup_ms.push(ms(t.elapsed()));
            let expected = live(p).then_some(&p.position);
            as_expected &= found.as_ref() == expected;
            lookups.insert(
                what.into(),
                json!({"key": p.key.id(), "expected": expected.map(Position::as_str),
                    "found": found.as_ref().map(Position::as_str)}),
            );
        }
        variants.insert(
            name.into(),
            json!({"commits": commits, "write_s": write_s, "live_sources": live_sources, "live_txns_expected": live_txns,
                "open_replay_ms": open_replay_ms, "checkpoint_version": version, "checkpoint_ms": checkpoint_ms,
                "checkpoint_bytes": bytes, "last_checkpoint": hint, "checkpoint_rows": actions, "txns_in_checkpoint": txns,
                "open_ms": open_ms, "lookup_ms": median(&lookup_ms), "lookups": lookups,
                "as_expected": as_expected && txns == live_txns}),
        );
    }
    println!(
        "{}",
        json!({"kind": "scale-progress", "label": args.get("label").unwrap_or(""), "retention": TXN_RETENTION,
            "days": days, "objects": objects, "shards": shards, "reshards": reshards,
            "stream_keys": shards * (reshards + 1), "sources": history.len(), "txns_written": entries,
            "variants": variants, "elapsed_s": started.elapsed().as_secs_f64(), "peak_rss": peak_rss()})
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report rows

/// `requests.by_kind` per batch, e.g. "PUT 2.1 · GET 0.4 · LIST 0.01".
fn per_batch(requests: &Value, batches: f64) -> String {
    let Some(by_kind) = requests["by_kind"].as_object() else { return String::new() };
    let mut kinds: Vec<(&String, f64)> =
        by_kind.iter().map(|(k, v)| (k, v.as_f64().unwrap_or(0.0) / batches)).collect();
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    kinds.iter().map(|(k, n)| format!("{k} {n:.2}")).collect::<Vec<_>>().join(" · ")
}

fn requests_of(open: &Value) -> String {
    let total = open["requests"]["total"].as_u64().unwrap_or(0);
    if total == 0 { String::new() } else { format!(", {total} requests") }
}

/// The scale section's rows of the summary table.
pub fn report_rows(lines: &[Value], rows: &mut Vec<Row>) {
    let of = |kind: &'static str| lines.iter().filter(move |v| v["kind"] == kind);
    let row = |figure: String, measured: String, target: &'static str, result: String| Row {
        figure,
        measured,
        target,
        result,
    };
    for d in of("scale-depth") {
        let (first, last) = (&d["first"], &d["last"]);
        let lake = d["lake"].as_str().unwrap_or("");
        if d["start_version"].as_u64().unwrap_or(0) > 0 {
            // A fresh process continuing a deep table: is the cost the table's or the process's?
            let long = of("scale-depth").find(|l| l["lake"] == d["lake"] && l["start_version"] == 0);
            let compare = long.map_or(String::new(), |l| {
                format!(
                    " (the process that wrote it, at its last 100: {:.2} ms, CPU {:.2} ms, RSS {:.0} MB)",
                    f(&l["last"], "median_ms"),
                    f(&l["last"], "cpu_median_ms"),
                    f(l, "rss_end") / 1048576.0
                )
            });
            rows.push(row(
                format!(
                    "  a fresh process continuing the same table at v{} ({lake}, another shard)",
                    d["start_version"]
                ),
                format!(
                    "median batch {:.2} ms, CPU {:.2} ms over v{}–{}, RSS {:.0} MB{compare}",
                    f(first, "median_ms"),
                    f(first, "cpu_median_ms"),
                    first["from"],
                    first["to"],
                    f(d, "rss_end") / 1048576.0
                ),
                "—",
                "info".into(),
            ));
            continue;
        }
        let latency =
            if f(d, "latency_ms") > 0.0 { format!(", +{} ms/request", f(d, "latency_ms")) } else { String::new() };
        let reached = d["versions_reached"].as_u64().unwrap_or(0);
        rows.push(row(
            format!(
                "scale: commit cost vs depth, 1 writer to v{reached} on {lake} ({} {}-record batches{latency}, no maintenance; took {:.0} s)",
                d["table"].as_str().unwrap_or(""),
                d["records_per_batch"],
                f(d, "elapsed_s")
            ),
            format!(
                "median batch v{}–{} {:.2} ms → v{}–{} {:.2} ms = {:.2}× (means incl. the checkpoint batch {:.1} → {:.1} ms = {:.1}×)",
                first["from"], first["to"], f(first, "median_ms"), last["from"], last["to"], f(last, "median_ms"),
                f(d, "latency_ratio"), f(first, "mean_ms"), f(last, "mean_ms"), f(d, "mean_ratio")
            ),
            "≤ 1.5×",
            verdict(f(d, "latency_ratio") <= 1.5),
        ));
        let trend: Vec<String> = d["trend"]
            .as_array()
            .map(|t| t.iter().map(|p| format!("v{} {:.2}", p["from"], f(p, "cpu_median_ms"))).collect())
            .unwrap_or_default();
        rows.push(row(
            format!("  CPU per commit, same windows ({lake})"),
            format!(
                "median {:.2} → {:.2} ms = {:.2}× (means incl. the checkpoint batch {:.2} → {:.2} ms = {:.1}×); RSS at the end {:.0} MB; median CPU of 100 batches from {}",
                f(first, "cpu_median_ms"), f(last, "cpu_median_ms"), f(d, "cpu_ratio"),
                f(first, "cpu_mean_ms"), f(last, "cpu_mean_ms"), f(d, "cpu_mean_ratio"), f(d, "rss_end") / 1048576.0,
                trend.join(", ")
            ),
            "≤ 1.5× (flat)",
            verdict(f(d, "cpu_ratio") <= 1.5),
        ));
        let (c1, c2) = (&first["checkpoint_batch"], &last["checkpoint_batch"]);
        let reqs = |c: &Value| if lake == "s3" { format!(", {} requests", c["requests"]) } else { String::new() };
        // The batch after it, if among the window's slowest: it reads its own source's position
        // back from the log (the rebase forgot it).
        let next = |w: &Value, c: &Value| {
            let after = c["version"].as_u64().map(|v| v + 1);
            w["slowest"]
                .as_array()
                .and_then(|s| s.iter().find(|l| l["version"].as_u64() == after))
                .map_or(String::new(), |l| format!(" (and v{}: {:.0} ms{})", l["version"], f(l, "ms"), reqs(l)))
        };
        rows.push(row(
            format!("  the 1-in-100 batch that rebases the appender and writes the checkpoint ({lake})"),
            format!(
                "v{}: {:.0} ms, CPU {:.0} ms{}{} → v{}: {:.0} ms, CPU {:.0} ms{}{}",
                c1["version"],
                f(c1, "ms"),
                f(c1, "cpu_ms"),
                reqs(c1),
                next(first, c1),
                c2["version"],
                f(c2, "ms"),
                f(c2, "cpu_ms"),
                reqs(c2),
                next(last, c2)
            ),
            "—",
            "info".into(),
        ));
        let cold = &d["cold"];
        let opens = d["opens"].as_array().cloned().unwrap_or_default();
        let mut bounded = true;
        let described: Vec<String> = opens
            .iter()
            .chain(std::iter::once(&cold["open"]))
            .map(|o| {
                let tail = o["tail"].as_u64().unwrap_or(u64::MAX);
                let requests = o["requests"]["total"].as_u64().unwrap_or(0);
                // A cold open reads `_last_checkpoint`, the checkpoint and the commits after it.
                bounded &= tail < 100 && (lake != "s3" || requests <= 2 * tail + 20);
                format!(
                    "v{} = ckpt {} ({:.1} MB) + {tail}: {:.0} ms{}",
                    o["version"],
                    o["checkpoint_version"],
                    f(o, "checkpoint_bytes") / 1048576.0,
                    f(o, "open_ms"),
                    requests_of(o)
                )
            })
            .collect();
        rows.push(row(
            format!("  cold start at v{reached} ({lake}): a fresh TableSink's first batch; fresh opens along the way"),
            format!(
                "first batch {:.0} ms (warm median {:.1} ms{}); opens: {}",
                f(cold, "first_batch_ms"),
                f(d, "warm_median_ms"),
                requests_of(cold),
                described.join("; ")
            ),
            "last checkpoint + short tail",
            verdict(bounded),
        ));
        if lake == "s3" {
            let steady = &d["steady"];
            let batches = f(steady, "batches");
            rows.push(row(
                format!("  S3 requests per landed batch, 1 writer, v2–v{reached}"),
                format!(
                    "{:.1} ({}); per batch: median {:.0} at v2–101, {:.0} at the last 100",
                    f(steady, "requests_per_batch"),
                    per_batch(&steady["requests"], batches),
                    f(first, "requests_median"),
                    f(last, "requests_median")
                ),
                "≤ 6",
                verdict(f(steady, "requests_per_batch") <= 6.0),
            ));
        }
    }
    for p in of("scale-probe") {
        rows.push(row(
            format!("scale: the harness, moto through the fault proxy, {} concurrent clients", p["concurrency"]),
            format!(
                "{:.0} GET/s · {:.0} conditional PUT/s (serialised) · LIST of the lake prefix {:.0} ms",
                f(p, "get_per_s"),
                f(p, "conditional_put_per_s"),
                f(p, "list_ms")
            ),
            "—",
            "info".into(),
        ));
    }
    let mut cost_lines = Vec::new();
    for w in of("scale-writers") {
        let writers = w["writers"].as_u64().unwrap_or(0);
        let label = w["label"].as_str().unwrap_or("");
        let exactly = w["exactly_once"] == true;
        let failed = w["failed"].as_u64().unwrap_or(u64::MAX);
        let batches = f(w, "batches");
        let common = format!(
            "{:.1} batches/s · p50 {:.0} ms · p99 {:.0} ms (max {:.0}) · failed {failed} · collisions {} ({:.2}/batch) · {} (rows {} + quarantined {} of {} sent, {} duplicates)",
            f(w, "batches_per_s"),
            f(w, "p50_ms"),
            f(w, "p99_ms"),
            f(w, "max_ms"),
            w["collisions"],
            f(w, "collisions") / batches,
            if exactly { "exactly once" } else { "NOT exactly once" },
            w["rows"],
            w["quarantined"],
            w["records_sent"],
            w["duplicates"]
        );
        let on_s3 = w["lake"] == "s3";
        let (target, pass) = if writers == 8 && label != "cost" && on_s3 {
            (
                "≥ 10 batches/s, p99 ≤ 2 s, 0 failed, exactly once",
                f(w, "batches_per_s") >= 10.0 && f(w, "p99_ms") <= 2_000.0 && failed == 0 && exactly,
            )
        } else {
            ("0 failed, exactly once", failed == 0 && exactly)
        };
        rows.push(row(
            format!(
                "scale: {writers} writer(s) on one table on {}, {}-record batches, {:.0} s{} (took {:.0} s)",
                w["lake"].as_str().unwrap_or(""),
                w["records_per_batch"],
                f(w, "window_s"),
                if on_s3 { format!(", +{} ms/request", f(w, "latency_ms")) } else { String::new() },
                f(w, "elapsed_s")
            ),
            common,
            target,
            verdict(pass),
        ));
        if !on_s3 {
            continue;
        }
        rows.push(row(
            format!("  S3 requests per landed batch, {writers} writer(s), {} records", w["records_per_batch"]),
            format!("{:.1} ({})", f(w, "requests_per_batch"), per_batch(&w["requests"], batches)),
            "≤ 6",
            verdict(f(w, "requests_per_batch") <= 6.0),
        ));
        if label == "cost" || writers == 8 {
            cost_lines.push(w);
        }
    }
    // All-in cost per million records: Lambda compute and invocations at the measured batch
    // time, and the S3 requests counted per batch. Kinesis is not included.
    for w in cost_lines {
        let records = f(w, "records_per_batch");
        let memory = f(w, "memory_mb");
        let (compute, invocations) = cost_per_million(records, f(w, "mean_ms"), memory);
        let batches_per_million = 1e6 / records;
        let per_batch_cost = w["requests"]["by_kind"].as_object().map_or(f64::NAN, s3_request_cost) / f(w, "batches");
        let s3 = per_batch_cost * batches_per_million;
        let total = compute + invocations + s3;
        let cost_run = w["label"] == "cost";
        rows.push(row(
            if cost_run {
                format!(
                    "scale: all-in cost per million records, template defaults (BatchSize {records:.0}, {memory:.0} MB, arm64), 1 writer"
                )
            } else {
                format!("  same at {records:.0}-record batches, 8 writers ({memory:.0} MB)")
            },
            format!(
                "${compute:.5} compute ({:.0} ms/batch) + ${invocations:.5} invocations + ${s3:.5} S3 ({:.1} requests/batch) = ${total:.4}",
                f(w, "mean_ms"),
                f(w, "requests_per_batch")
            ),
            if cost_run { "≤ $0.01" } else { "—" },
            if cost_run { verdict(total <= 0.01) } else { "info".into() },
        ));
    }
    for p in of("scale-progress") {
        let v = &p["variants"];
        rows.push(row(
            format!(
                "scale: progress state of a month ({} Kafka Connect objects, {} shards × {} generations; retention {}; took {:.0} s)",
                p["objects"], p["shards"], p["reshards"].as_u64().unwrap_or(0) + 1, p["retention"].as_str().unwrap_or(""), f(p, "elapsed_s")
            ),
            format!(
                "checkpoint with nothing expired: {} txns, {:.2} MB (written in {:.0} ms; cold open {:.0} ms, lookup {:.1} ms)",
                v["fresh"]["txns_in_checkpoint"], f(&v["fresh"], "checkpoint_bytes") / 1048576.0,
                f(&v["fresh"], "checkpoint_ms"), f(&v["fresh"], "open_ms"), f(&v["fresh"], "lookup_ms")
            ),
            "—",
            "info".into(),
        ));
        for (name, what) in [
            ("month", "stamped as the month went (last 7 days live)"),
            ("expired", "all a month older but the live shards"),
        ] {
            let x = &v[name];
            let bytes = f(x, "checkpoint_bytes");
            let ok = x["as_expected"] == true;
            rows.push(row(
                format!("  checkpoint after expiry, {what}"),
                format!(
                    "{} txns (expected {}: {} live sources), {:.2} MB ({:.0} B/txn); expired gone, live kept: {}; cold open {:.0} ms, lookup {:.1} ms",
                    x["txns_in_checkpoint"], x["live_txns_expected"], x["live_sources"], bytes / 1048576.0,
                    bytes / f(x, "txns_in_checkpoint").max(1.0), if ok { "yes" } else { "NO" },
                    f(x, "open_ms"), f(x, "lookup_ms")
                ),
                // Bounded means the checkpoint holds the sources of the retention window and no
                // more (about 50 B each): its size follows the objects landed in the last 7 days,
                // and what a size costs is the cold open that reads it.
                "expired txns gone, cold open ≤ 100 ms",
                verdict(ok && f(x, "open_ms") <= 100.0),
            ));
        }
    }
}
