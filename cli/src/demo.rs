//! `pinpipe demo`: the whole pipeline in one process, on local disk, with no cloud account.
//!
//! The emulator's posts go through the producer's own request handling (`api::handle`, the code
//! behind API Gateway) into an embedded stream service with shards; each table's consumer
//! (`kinesis_trigger::handle_kinesis_event`, the code behind the Kinesis trigger) drains the shards in
//! Lambda-sized batches into Delta tables under `--lake`. Every `--batch-every`th post takes the
//! batch path instead: its records are written as a Kafka Connect S3 sink writes them (objects
//! under `<lake>/_raw/topics/`) and landed by the batch ingest's own code (`BatchIngest`, the code
//! behind the S3 trigger). Running it again with the same seed is
//! a redelivery of the same records, so it adds nothing; another seed adds new posts.
//!
//! The report gives each path's freshness as the functions measure it: commit time minus a
//! record's arrival, which is when the producer put it into the embedded stream (Kinesis'
//! arrival timestamp) or when its Kafka Connect object was written.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deltalake::arrow::array::{Array, StringArray};
use http::Method;
use indicatif::{ProgressBar, ProgressStyle};
use pinpipe::Table;
use pinpipe::api::{ApiConfig, ApiRequest, handle};
use pinpipe::batch::{BatchIngest, LocalObjects, ObjectRef};
use pinpipe::freshness::RecordAges;
use pinpipe::kinesis_trigger::handle_kinesis_batch;
use pinpipe::lake::Lake;
use pinpipe::local::embedded::EmbeddedStreams;
use pinpipe::local::emulator::{Emulator, Post};
use pinpipe::local::events::{KinesisDelivery, KinesisSource, kinesis_source_event, stream_arn};
use pinpipe::sink::TableSink;
use pinpipe::table::QUARANTINE_TABLE;
use serde_json::{Value, json};

use crate::emulate::write_connect_objects;

/// The deployment prefix the demo's streams are named after.
pub const DEMO_PREFIX: &str = "demo";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How many posts the emulator makes (three records each).
    #[arg(long, default_value_t = 3_000)]
    pub posts: usize,
    /// The emulator's seed: the same seed makes the same posts.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the Delta tables go.
    #[arg(long, default_value = "lake")]
    pub lake: PathBuf,
    /// Shards per stream.
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// Records per consumer invocation (Lambda's batch size).
    #[arg(long, default_value_t = 1_000)]
    pub batch_size: usize,
    /// Records per `PUT /streams/{name}/records` request.
    #[arg(long, default_value_t = 250)]
    pub request_size: usize,
    /// Every Nth post goes through the batch path (Kafka Connect files) instead of the stream;
    /// 0 sends every post through the stream.
    #[arg(long, default_value_t = 5)]
    pub batch_every: usize,
    /// Records per Kafka Connect object on the batch path (the sink's `flush.size`).
    #[arg(long, default_value_t = 100)]
    pub flush_size: usize,
    /// No progress bar (for logs and tests).
    #[arg(long)]
    pub quiet: bool,
}

/// What a demo run did.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    pub posts: usize,
    pub records: usize,
    pub poisoned: usize,
    /// Posts that took the batch path, and the Kafka Connect objects they were written to.
    pub batch_posts: usize,
    pub batch_objects: usize,
    /// Rows per table (and `quarantine`) before and after the run.
    pub rows: BTreeMap<String, (u64, u64)>,
    pub quarantine_reasons: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// How old the records each path committed were when their commits landed.
    pub stream_freshness: RecordAges,
    pub batch_freshness: RecordAges,
    /// The answers to the analytics questions (docs/analytics.md) over the lake, as aligned tables (`pinpipe query`).
    pub analytics: Option<String>,
}

impl DemoReport {
    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn print(&self, lake: &std::path::Path) {
        println!(
            "\npinpipe demo: {} posts, {} records in {:.2} s ({:.0} records/s); {} records were made unrecoverable on purpose",
            self.posts,
            self.records,
            self.elapsed.as_secs_f64(),
            self.records_per_second(),
            self.poisoned
        );
        println!(
            "  {} posts through the stream path (producer -> Kinesis -> consumer), {} through the batch path ({} Kafka Connect objects -> batch ingest)",
            self.posts - self.batch_posts,
            self.batch_posts,
            self.batch_objects
        );
        let seconds = |ms: Option<u64>| ms.map_or("-".to_string(), |ms| format!("{:.2} s", ms as f64 / 1e3));
        println!("\n  freshness (commit time minus arrival):");
        for (path, ages) in [("stream path", &self.stream_freshness), ("batch path", &self.batch_freshness)] {
            println!(
                "  {path:<12} p50 {:>9}   max {:>9}   ({} records)",
                seconds(ages.p50_ms()),
                seconds(ages.max_ms()),
                ages.len()
            );
        }
        println!("\n  {:<12} {:>10} {:>10}", "table", "rows", "new");
        for (name, (before, after)) in &self.rows {
            println!("  {:<12} {:>10} {:>10}", name, after, after - before);
        }
        if !self.quarantine_reasons.is_empty() {
            println!("\n  quarantined, by reason:");
            for (reason, n) in &self.quarantine_reasons {
                println!("  {n:>6}  {reason}");
            }
        }
        println!(
            "\n  tables: {}/{{pin,geo,user,quarantine}} (Delta Lake; e.g. polars: pl.read_delta(\"{}/pin\"))",
            lake.display(),
            lake.display()
        );
        if let Some(analytics) = &self.analytics {
            println!("\n{analytics}");
        }
    }
}

fn progress(quiet: bool, len: u64, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} records  {per_sec}  eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Runs the demo and returns its report.
pub async fn run(args: &DemoArgs) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.lake).with_context(|| format!("creating {}", args.lake.display()))?;
    let lake_dir = std::fs::canonicalize(&args.lake)?;
    let lake = Lake::new(lake_dir.to_str().context("the lake path is not UTF-8")?);
    let names: Vec<String> =
        Table::ALL.iter().map(|t| t.name().to_string()).chain([QUARANTINE_TABLE.to_string()]).collect();
    let mut rows = BTreeMap::new();
    for name in &names {
        rows.insert(name.clone(), (lake.count_rows(name).await?.unwrap_or(0), 0));
    }

    // The producer, with stream administration on, over embedded streams named after the seed.
    let streams = EmbeddedStreams::new(args.shards, args.seed);
    let config = ApiConfig::new(DEMO_PREFIX, true, Duration::from_secs(3))?;
    for table in Table::ALL {
        let path = format!("/streams/{}", table.stream_name(DEMO_PREFIX));
        let response = handle(
            &config,
            &streams,
            ApiRequest::new(Method::POST, path).with_json(&json!({"ShardCount": args.shards})),
        )
        .await;
        if !response.status.is_success() {
            bail!("creating the {table} stream failed: {}", response.body);
        }
    }

    let first_ind = (args.seed % 1_000) as i64 * 1_000_000;
    let posts: Vec<Post> = Emulator::new(args.seed, first_ind).take(args.posts).collect();
    let records = posts.len() * 3;
    let takes_batch_path = |i: usize| args.batch_every > 0 && i % args.batch_every == 0;
    let (batch_posts, stream_posts): (Vec<(usize, &Post)>, Vec<(usize, &Post)>) =
        posts.iter().enumerate().partition(|(i, _)| takes_batch_path(*i));
    let batch_posts: Vec<Post> = batch_posts.into_iter().map(|(_, p)| p.clone()).collect();
    let stream_posts: Vec<Post> = stream_posts.into_iter().map(|(_, p)| p.clone()).collect();

    let bar = progress(args.quiet, (stream_posts.len() * 3) as u64, "producing");
    for chunk in stream_posts.chunks(args.request_size.clamp(1, 500)) {
        for table in Table::ALL {
            let stream = table.stream_name(DEMO_PREFIX);
            let body: Vec<Value> = chunk
                .iter()
                .map(|post| json!({"data": post.record(table), "partition-key": format!("post-{}", post.ind)}))
                .collect();
            let request =
                ApiRequest::new(Method::PUT, format!("/streams/{stream}/records")).with_json(&json!({"records": body}));
            let response = handle(&config, &streams, request).await;
            if response.status != 200 || response.body["FailedRecordCount"] != 0 {
                bail!("the producer refused records for {stream}: {} {}", response.status, response.body);
            }
            bar.inc(chunk.len() as u64);
        }
    }
    bar.finish_and_clear();

    let bar = progress(args.quiet, (stream_posts.len() * 3) as u64, "consuming");
    let mut stream_freshness = RecordAges::default();
    let role = "arn:aws:iam::000000000000:role/pinpipe-consumer";
    for table in Table::ALL {
        let stream = table.stream_name(DEMO_PREFIX);
        let arn = stream_arn("local", "000000000000", &stream);
        let source = KinesisSource { stream_arn: &arn, region: "local", invoke_identity_arn: role };
        let sink = TableSink::new(table, lake.clone());
        for shard in 0..streams.shard_count(&stream) {
            let shard_id = streams.shard_id(shard);
            let mut from = 0;
            loop {
                let batch = streams.read(&stream, shard, from, args.batch_size.max(1));
                if batch.is_empty() {
                    break;
                }
                let deliveries: Vec<(KinesisDelivery, f64)> = batch
                    .iter()
                    .map(|r| {
                        let delivery = KinesisDelivery {
                            shard_id: &shard_id,
                            sequence_number: &r.sequence_number,
                            partition_key: &r.partition_key,
                            data: &r.data,
                        };
                        (delivery, r.arrived_at.timestamp_millis() as f64 / 1e3)
                    })
                    .collect();
                let event = kinesis_source_event(&source, &deliveries);
                let handled = handle_kinesis_batch(&sink, &event).await;
                let Some(summary) = handled.summary else {
                    bail!("the {table} consumer failed a batch on {shard_id}; see the log above");
                };
                stream_freshness.add(&summary.record_ages);
                from += batch.len();
                bar.inc(batch.len() as u64);
            }
        }
    }
    bar.finish_and_clear();

    // The batch path: the sink's objects in a folder standing for the raw bucket, offsets
    // counting from the seed's first index so that another seed writes other objects.
    let raw = lake_dir.join("_raw");
    let keys = write_connect_objects(&raw, DEMO_PREFIX, &batch_posts, first_ind as u64, args.flush_size)?;
    let objects: Vec<ObjectRef> = keys.iter().map(|key| ObjectRef { bucket: "raw".into(), key: key.clone() }).collect();
    let bar = progress(args.quiet, objects.len() as u64, "batch");
    let ingest = BatchIngest::new(DEMO_PREFIX, lake.clone(), Arc::new(LocalObjects::new(&raw)));
    let mut batch_freshness = RecordAges::default();
    // One notification per table's objects at a time, as Lambda would batch them.
    for notification in objects.chunks(50) {
        let summary = ingest.ingest(notification).await.context("batch ingest failed")?;
        if !summary.skipped.is_empty() {
            bail!("batch ingest skipped objects it should have read: {:?}", summary.skipped);
        }
        for totals in summary.tables.values() {
            batch_freshness.add(&totals.record_ages);
        }
        bar.inc(notification.len() as u64);
    }
    bar.finish_and_clear();

    for name in &names {
        let after = lake.count_rows(name).await?.unwrap_or(0);
        rows.entry(name.clone()).and_modify(|r| r.1 = after);
    }
    Ok(DemoReport {
        posts: posts.len(),
        records,
        poisoned: posts.iter().filter(|p| p.poisoned.is_some()).count(),
        batch_posts: batch_posts.len(),
        batch_objects: objects.len(),
        rows,
        quarantine_reasons: quarantine_reasons(&lake).await?,
        elapsed: started.elapsed(),
        stream_freshness,
        batch_freshness,
        analytics: Some(
            crate::query::render_all(&lake, crate::query::Format::Table)
                .await
                .unwrap_or_else(|e| format!("the analytics failed: {e:#}\n")),
        ),
    })
}

/// Quarantined records in the lake, counted by table and reason.
async fn quarantine_reasons(lake: &Lake) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut reasons = BTreeMap::new();
    let Some(batch) = lake.read_all(QUARANTINE_TABLE).await? else { return Ok(reasons) };
    let column =
        |name: &str| batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
    let (Some(tables), Some(why)) = (column("table"), column("reason")) else {
        bail!("the quarantine table lacks table/reason columns")
    };
    for i in 0..batch.num_rows() {
        if tables.is_valid(i) && why.is_valid(i) {
            *reasons.entry(format!("{}: {}", tables.value(i), why.value(i))).or_default() += 1;
        }
    }
    Ok(reasons)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use deltalake::arrow::array::Int64Array;

    use super::*;

    fn args(lake: &std::path::Path, seed: u64) -> DemoArgs {
        DemoArgs {
            posts: 400,
            seed,
            lake: lake.to_path_buf(),
            shards: 2,
            batch_size: 64,
            request_size: 50,
            batch_every: 4,
            flush_size: 30,
            quiet: true,
        }
    }

    #[tokio::test]
    async fn the_demo_lands_every_clean_record_once_and_a_rerun_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(&args(dir.path(), 5)).await.unwrap();
        let posts: Vec<Post> = Emulator::new(5, 5_000_000).take(400).collect();
        let lake = Lake::new(dir.path().to_str().unwrap());
        for table in Table::ALL {
            let expected = posts.iter().filter(|p| p.poisoned != Some(table)).count() as u64;
            assert_eq!(report.rows[table.name()], (0, expected), "{table}");
            let batch = lake.read_all(table.name()).await.unwrap().unwrap();
            let inds = batch.column_by_name("ind").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
            let unique: HashSet<i64> = inds.values().iter().copied().collect();
            assert_eq!(unique.len() as u64, expected, "{table}: no duplicate ind");
        }
        assert_eq!((report.batch_posts, report.batch_objects), (100, 12), "every 4th post, 30 records per object");
        // Every record committed has an age, from its put (or its object's write) to its commit.
        assert_eq!(report.stream_freshness.len(), 300 * 3);
        assert_eq!(report.batch_freshness.len(), 100 * 3);
        // No record is older than the run (give or take a second: a file system may keep
        // modification times in whole seconds).
        let run_time = report.elapsed + Duration::from_secs(1);
        for ages in [&report.stream_freshness, &report.batch_freshness] {
            assert!(ages.p50() <= ages.max() && ages.max() < Some(run_time), "{ages:?} within {run_time:?}");
        }
        let pins = lake.read_all("pin").await.unwrap().unwrap();
        let sources = pins.column_by_name("_source").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        let from_files = (0..sources.len()).filter(|i| sources.value(*i).starts_with("file://")).count();
        let batch_pins = posts.iter().step_by(4).filter(|p| p.poisoned != Some(Table::Pin)).count();
        assert_eq!(from_files, batch_pins, "the batch path's pins carry their object as lineage");
        let poisoned = posts.iter().filter(|p| p.poisoned.is_some()).count() as u64;
        assert_eq!(report.rows[QUARANTINE_TABLE], (0, poisoned));
        assert_eq!(report.quarantine_reasons.values().sum::<u64>(), poisoned);
        assert!(report.quarantine_reasons.keys().all(|r| r.contains("cannot")), "{:?}", report.quarantine_reasons);
        let analytics = report.analytics.as_deref().unwrap_or_default();
        assert!(analytics.contains("8. Median follower count by joining year and age group"), "{analytics}");
        assert!(!analytics.contains("failed"), "{analytics}");

        let again = run(&args(dir.path(), 5)).await.unwrap();
        assert!(again.rows.values().all(|(before, after)| before == after), "{:?}", again.rows);
        assert!(again.stream_freshness.is_empty() && again.batch_freshness.is_empty(), "a rerun commits nothing");
        let other_seed = run(&args(dir.path(), 6)).await.unwrap();
        assert!(other_seed.rows["pin"].1 > other_seed.rows["pin"].0, "another seed adds new posts");
    }
}
