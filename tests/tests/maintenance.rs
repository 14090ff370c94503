//! Maintenance keeps a table of many small appends small: compaction, checkpoints, vacuum, and
//! all of it safe while a consumer keeps committing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use pinpipe::Table;
use pinpipe::kinesis_trigger::consume_kinesis;
use pinpipe::lake::Lake;
use pinpipe::local::events::{KinesisDelivery, kinesis_event, sequence_number};
use pinpipe::maintenance::{MaintenancePolicy, maintain};
use pinpipe::sink::TableSink;
use pinpipe_tests::fault_proxy::{FaultPlan, FaultProxy};
use pinpipe_tests::{endpoint, int_column, new_bucket, read_table, s3_client};
use serde_json::json;

fn user_batch(first: i64, n: i64) -> KinesisEvent {
    let records: Vec<Vec<u8>> = (first..first + n)
        .map(|ind| {
            json!({"ind": ind, "first_name": "Ada", "last_name": "Lovelace", "age": 36, "date_joined": "2016-05-06 07:08:09"})
                .to_string()
                .into_bytes()
        })
        .collect();
    let seqs: Vec<String> = (first..first + n).map(|i| sequence_number(i as u64)).collect();
    let deliveries: Vec<KinesisDelivery> = records
        .iter()
        .zip(&seqs)
        .map(|(data, seq)| KinesisDelivery {
            shard_id: "shardId-000000000000",
            sequence_number: seq,
            partition_key: "k",
            data,
        })
        .collect();
    kinesis_event("us-east-1", "123456789012", "streaming-x-user", &deliveries)
}

fn small_tables() -> MaintenancePolicy {
    MaintenancePolicy { target_file_size: 8 << 20, min_small_files: 4, ..MaintenancePolicy::default() }
}

async fn assert_every_row_once(lake: &Lake, n: i64) {
    let batch = read_table(lake, "user").await.unwrap();
    let inds: Vec<i64> = int_column(&batch, "ind").into_iter().flatten().collect();
    assert_eq!(inds.len() as i64, n, "row count");
    assert_eq!(inds.iter().copied().collect::<HashSet<_>>(), (0..n).collect::<HashSet<_>>());
}

#[tokio::test]
async fn maintenance_running_beside_a_committing_consumer_compacts_without_losing_rows() {
    let bucket = new_bucket().await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 3).await;
    let lake = Lake::new(format!("s3://{bucket}/lake")).with_storage_options(
        [("AWS_ENDPOINT_URL", proxy.endpoint.as_str()), ("AWS_ALLOW_HTTP", "true")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let sink = TableSink::new(Table::User, lake.clone());
    for i in 0..30 {
        consume_kinesis(&sink, &user_batch(i * 5, 5)).await.unwrap();
    }
    // Maintenance runs while the consumer commits 20 more batches.
    let writer = async {
        for i in 30..50 {
            consume_kinesis(&sink, &user_batch(i * 5, 5)).await.unwrap();
        }
    };
    let policy = small_tables();
    let (_, report) = tokio::join!(writer, maintain(&lake, "user", &policy));
    let report = report.unwrap().expect("the table exists");
    assert!(report.files_compacted >= 30, "{report:?}");
    assert_every_row_once(&lake, 250).await;

    // Once writers are quiet, a run with no retention compacts the rest and vacuums every
    // file no longer in the table.
    let policy = MaintenancePolicy { vacuum_retention: Duration::ZERO, ..small_tables() };
    let report = maintain(&lake, "user", &policy).await.unwrap().unwrap();
    assert_eq!(report.files_after, 1, "{report:?}");
    assert!(report.checkpoint_version.is_some(), "{report:?}");
    assert!(report.files_vacuumed >= 30, "{report:?}");
    assert_every_row_once(&lake, 250).await;
    let objects = s3_client().await.list_objects_v2().bucket(&bucket).prefix("lake/user/").send().await.unwrap();
    let data_file = |k: &&str| k.ends_with(".parquet") && !k.contains("/_delta_log/");
    let parquet = objects.contents().iter().filter_map(|o| o.key()).filter(data_file).count();
    let keys: Vec<_> = objects.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(parquet, 1, "only the compacted file is left in S3: {keys:?} {report:?}");

    // Progress survives compaction and checkpoints: a redelivered batch still adds nothing.
    let again = consume_kinesis(&TableSink::new(Table::User, lake.clone()), &user_batch(0, 5)).await.unwrap();
    assert_eq!(again.rows.rows_written, 0);
}

/// 200 commits by default; `PINPIPE_SMALL_COMMITS=2000` for the longer run (a few minutes).
#[tokio::test]
async fn many_small_commits_shrink_to_one_file_and_a_checkpoint_on_local_disk() {
    let commits: i64 = std::env::var("PINPIPE_SMALL_COMMITS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap());
    let sink = TableSink::new(Table::User, lake.clone());
    let started = Instant::now();
    for i in 0..commits {
        consume_kinesis(&sink, &user_batch(i * 2, 2)).await.unwrap();
    }
    let committing = started.elapsed();
    let opened = Instant::now();
    lake.open("user").await.unwrap().unwrap();
    let open_before = opened.elapsed();
    let report = maintain(&lake, "user", &small_tables()).await.unwrap().unwrap();
    let opened = Instant::now();
    lake.open("user").await.unwrap().unwrap();
    eprintln!(
        "{commits} commits in {committing:?}: open {open_before:?} before maintenance, {:?} after; {report:?}",
        opened.elapsed()
    );
    assert_eq!((report.files_before, report.files_after), (commits as usize, 1), "{report:?}");
    assert_eq!(report.checkpoint_version, report.version);
    assert_every_row_once(&lake, commits * 2).await;
}
