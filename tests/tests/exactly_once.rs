//! Exactly-once under redelivery, concurrency and injected S3 faults: every test asserts the
//! exact set of rows and that no key appears twice.

use std::sync::atomic::Ordering;

use pinpipe::Table;
use pinpipe::kinesis_trigger::consume_kinesis;
use pinpipe::lake::Lake;
use pinpipe::sink::TableSink;
use pinpipe_tests::fault_proxy::{Fault, FaultPlan, FaultProxy};
use pinpipe_tests::{deliver_until_success, endpoint, geo_batch, inds_once, lake_through, new_bucket};

#[tokio::test]
async fn a_batch_redelivered_after_a_crash_past_its_commit_adds_nothing_on_s3() {
    let lake = Lake::new(format!("s3://{}/lake", new_bucket().await));
    let event = geo_batch("shardId-000000000000", 1, 1..=10);
    consume_kinesis(&TableSink::new(Table::Geo, lake.clone()), &event).await.unwrap();
    // The function "crashed" before returning; a new instance gets the same batch.
    let retry = consume_kinesis(&TableSink::new(Table::Geo, lake.clone()), &event).await.unwrap();
    assert_eq!((retry.rows.rows_written, retry.rows.already_committed), (0, 10));
    assert_eq!(inds_once(&lake, "geo").await, (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_redelivery_from_a_mid_batch_sequence_number_lands_the_rest_once() {
    let lake = Lake::new(format!("s3://{}/lake", new_bucket().await));
    let sink = TableSink::new(Table::Geo, lake.clone());
    consume_kinesis(&sink, &geo_batch("shardId-000000000000", 1, 1..=10)).await.unwrap();
    // Lambda retries from record 6 (a partial batch response or a bisected half) and carries on
    // with new records 11..=15 in the same batch.
    let retry = consume_kinesis(&sink, &geo_batch("shardId-000000000000", 6, 6..=15)).await.unwrap();
    assert_eq!((retry.rows.rows_written, retry.rows.already_committed), (5, 5));
    assert_eq!(inds_once(&lake, "geo").await, (1..=15).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_same_records_delivered_to_two_invocations_at_once_land_once() {
    let bucket = new_bucket().await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 1).await;
    let lake = lake_through(&bucket, &proxy);
    consume_kinesis(&TableSink::new(Table::Geo, lake.clone()), &geo_batch("shardId-000000000000", 1, [0]))
        .await
        .unwrap();
    let (a, b) = (TableSink::new(Table::Geo, lake.clone()), TableSink::new(Table::Geo, lake.clone()));
    let event = geo_batch("shardId-000000000000", 2, 1..=20);
    let (ra, rb) = tokio::join!(consume_kinesis(&a, &event), consume_kinesis(&b, &event));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.rows.rows_written + rb.rows.rows_written, 20, "{ra:?} {rb:?}");
    assert_eq!(inds_once(&lake, "geo").await, (0..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn eight_concurrent_writers_on_one_table_land_every_row_once() {
    let bucket = new_bucket().await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 2).await;
    let lake = lake_through(&bucket, &proxy);
    // Eight shards' consumers start at once on a table that does not exist yet: they also race
    // to create it.
    let writers = (0..8i64).map(|w| {
        let lake = lake.clone();
        async move {
            let sink = TableSink::new(Table::Geo, lake);
            let shard = format!("shardId-{w:012}");
            for round in 0..3i64 {
                let first_ind = w * 1_000 + round * 10;
                let event = geo_batch(&shard, (round * 10 + 1) as u64, first_ind..first_ind + 10);
                deliver_until_success(&sink, &event).await;
            }
        }
    });
    futures::future::join_all(writers).await;
    let expected: Vec<i64> = (0..8i64).flat_map(|w| w * 1_000..w * 1_000 + 30).collect();
    assert_eq!(inds_once(&lake, "geo").await, expected);
}

fn any_request(_: &str, _: &str) -> bool {
    true
}

fn delta_log_put(method: &str, path: &str) -> bool {
    method == "PUT" && path.contains("/_delta_log/") && path.ends_with(".json")
}

#[tokio::test]
async fn injected_s3_faults_lose_no_row_and_duplicate_none() {
    let bucket = new_bucket().await;
    let plan = FaultPlan {
        // An append makes few requests (a Parquet PUT and a log PUT when no other writer is in
        // the way), so the rate is high enough to hit every kind of request many times.
        probability: 0.3,
        faults: vec![Fault::InternalError, Fault::SlowDown, Fault::DropBeforeForwarding, Fault::DropAfterForwarding],
        matches: any_request,
    };
    let proxy = FaultProxy::start(&endpoint(), plan, 42).await;
    let lake = lake_through(&bucket, &proxy);
    let sink = TableSink::new(Table::Geo, lake.clone());
    let mut deliveries = 0;
    for round in 0..12i64 {
        let event = geo_batch("shardId-000000000000", (round * 25 + 1) as u64, round * 25..round * 25 + 25);
        deliveries += deliver_until_success(&sink, &event).await;
    }
    proxy.set_plan(FaultPlan::none());
    let stats = &proxy.stats;
    eprintln!(
        "fault test: {} requests, {} faults (500: {}, 503: {}, dropped before: {}, dropped after: {}), {deliveries} deliveries for 12 batches",
        stats.requests.load(Ordering::Relaxed),
        stats.faults(),
        stats.internal_errors.load(Ordering::Relaxed),
        stats.slow_downs.load(Ordering::Relaxed),
        stats.dropped_before.load(Ordering::Relaxed),
        stats.dropped_after.load(Ordering::Relaxed),
    );
    assert!(stats.faults() >= 5, "the test must actually inject faults");
    assert_eq!(inds_once(&lake, "geo").await, (0..300).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_not_applied_twice() {
    let bucket = new_bucket().await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 7).await;
    let lake = lake_through(&bucket, &proxy);
    let sink = TableSink::new(Table::Geo, lake.clone());
    consume_kinesis(&sink, &geo_batch("shardId-000000000000", 1, 1..=5)).await.unwrap();
    // From now on every commit lands in S3 but its answer never reaches pinpipe.
    proxy.set_plan(FaultPlan { probability: 1.0, faults: vec![Fault::DropAfterForwarding], matches: delta_log_put });
    let event = geo_batch("shardId-000000000000", 6, 6..=15);
    let attempts = deliver_until_success(&sink, &event).await;
    proxy.set_plan(FaultPlan::none());
    assert!(proxy.stats.dropped_after.load(Ordering::Relaxed) >= 1);
    eprintln!("lost-answer commit: {attempts} deliveries");
    assert_eq!(inds_once(&lake, "geo").await, (1..=15).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_writer_idle_while_others_landed_many_commits_catches_up_and_lands_once() {
    let bucket = new_bucket().await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 11).await;
    let lake = lake_through(&bucket, &proxy);
    let idle = TableSink::new(Table::Geo, lake.clone());
    consume_kinesis(&idle, &geo_batch("shardId-000000000000", 1, [0])).await.unwrap();
    // Another shard's consumer lands 40 commits, so the idle one's next commit loses the race
    // at its old head; it reads the commits in between (in rounds of 2, 4, 8, ... at once) and
    // commits at the head.
    let busy = TableSink::new(Table::Geo, lake.clone());
    for i in 1..=40i64 {
        consume_kinesis(&busy, &geo_batch("shardId-000000000001", i as u64, [1_000 + i])).await.unwrap();
    }
    let summary = consume_kinesis(&idle, &geo_batch("shardId-000000000000", 2, 1..=5)).await.unwrap();
    assert_eq!(summary.rows.rows_written, 5, "{summary:?}");
    assert!(summary.rows.attempts >= 2, "the idle writer's first attempt was at a version already taken: {summary:?}");
    assert_eq!(summary.rows.version, Some(42), "{summary:?}");
    // And its position is right after the reload: a redelivery adds nothing.
    let again = consume_kinesis(&idle, &geo_batch("shardId-000000000000", 2, 1..=5)).await.unwrap();
    assert_eq!(again.rows.already_committed, 5, "{again:?}");
    let mut expected: Vec<i64> = (0..=5).collect();
    expected.extend(1_001..=1_040);
    assert_eq!(inds_once(&lake, "geo").await, expected);
}

#[tokio::test]
async fn the_writer_landing_on_the_checkpoint_interval_has_a_checkpoint_written() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap());
    let sink = TableSink::new(Table::Geo, lake.clone());
    // Version 0 creates the table; commits 1..=100 are the batches.
    for i in 0..100i64 {
        consume_kinesis(&sink, &geo_batch("shardId-000000000000", (i + 1) as u64, [i])).await.unwrap();
    }
    // Written by a task of its own, off the batch's path: wait for it (bounded).
    let last_checkpoint = dir.path().join("geo/_delta_log/_last_checkpoint");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !last_checkpoint.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&last_checkpoint).unwrap()).unwrap();
    assert_eq!(written["version"], 100, "{written}");
    // A cold start reads it: a fresh sink continues the shard exactly once.
    let cold = TableSink::new(Table::Geo, lake.clone());
    let again = consume_kinesis(&cold, &geo_batch("shardId-000000000000", 100, [99])).await.unwrap();
    assert_eq!(again.rows.already_committed, 1, "{again:?}");
    assert_eq!(inds_once(&lake, "geo").await, (0..100).collect::<Vec<_>>());
}
