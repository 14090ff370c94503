//! Group commits (`pinpipe::lake::intents`): an append that lost a race is published as an
//! intent and carried by another writer's commit. Each test drives the crash points of that
//! protocol on moto and asserts the exact rows, with no key twice.

use std::time::{Duration, Instant};

use pinpipe::Table;
use pinpipe::kinesis_trigger::consume_kinesis;
use pinpipe::lake::Lake;
use pinpipe::lake::intents::INTENTS_DIR;
use pinpipe::sink::TableSink;
use pinpipe_tests::fault_proxy::{Fault, FaultPlan, FaultProxy};
use pinpipe_tests::{endpoint, geo_batch, inds_once, lake_through, new_bucket, s3_client};

const SHARD_A: &str = "shardId-000000000000";
const SHARD_B: &str = "shardId-000000000001";
const SHARD_C: &str = "shardId-000000000002";

/// Every PUT of the table's log entry for version 3 fails (a 500), however often it is retried.
fn put_of_version_3(method: &str, path: &str) -> bool {
    method == "PUT" && path.ends_with("/_delta_log/00000000000000000003.json")
}

/// Three writers (sinks) of the geo table, after writer A crashed with its append published.
struct Scene {
    lake: Lake,
    _proxy: FaultProxy,
    a: TableSink,
    b: TableSink,
    c: TableSink,
    /// A's batch that failed after its intent was published.
    crashed: aws_lambda_events::event::kinesis::KinesisEvent,
}

impl Scene {
    /// Writer A lands shard A's first batch (v1), B lands shard B's (v2) behind A's back; then
    /// A's second batch loses its race for v2, publishes its intent, and fails on v3 (every PUT
    /// of v3 is a 500), as a crash would.
    async fn after_a_crash(seed: u64) -> Scene {
        let bucket = new_bucket().await;
        let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), seed).await;
        let lake = lake_through(&bucket, &proxy);
        let sink = || TableSink::new(Table::Geo, lake.clone());
        let (a, b, c) = (sink(), sink(), sink());
        consume_kinesis(&a, &geo_batch(SHARD_A, 1, 1..=10)).await.unwrap();
        consume_kinesis(&b, &geo_batch(SHARD_B, 1, 1001..=1010)).await.unwrap();
        proxy.set_plan(FaultPlan { probability: 1.0, faults: vec![Fault::InternalError], matches: put_of_version_3 });
        let crashed = geo_batch(SHARD_A, 11, 11..=20);
        assert!(consume_kinesis(&a, &crashed).await.is_err(), "A's commit of v3 must fail");
        proxy.set_plan(FaultPlan::none());
        assert_eq!(intents(&lake).await, 1, "A published its append before it failed");
        Scene { lake, _proxy: proxy, a, b, c, crashed }
    }

    /// C lands v3 behind B's back, so B's next batch loses a race and is contended: it lists
    /// the intents before its next attempt.
    async fn b_lands_a_batch_contended(&self) -> pinpipe::sink::BatchSummary {
        consume_kinesis(&self.c, &geo_batch(SHARD_C, 1, 2001..=2010)).await.unwrap();
        let summary = consume_kinesis(&self.b, &geo_batch(SHARD_B, 11, 1011..=1020)).await.unwrap();
        assert!(summary.rows.attempts >= 2, "B lost a race, so it listed the intents: {summary:?}");
        summary
    }

    /// Every row the scene's batches hold, once each.
    async fn assert_every_row_once(&self) {
        let expected: Vec<i64> = (1..=20).chain(1001..=1020).chain(2001..=2010).collect();
        assert_eq!(inds_once(&self.lake, "geo").await, expected);
    }
}

/// How many intents the geo table has.
async fn intents(lake: &Lake) -> usize {
    let (bucket, prefix) = lake.root().trim_start_matches("s3://").split_once('/').unwrap();
    let listed = s3_client()
        .await
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{prefix}/geo/{INTENTS_DIR}/"))
        .send()
        .await
        .unwrap();
    listed.contents().len()
}

/// Waits (at most 5 s) for the background deletes of intents to leave none.
async fn until_no_intents(lake: &Lake) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = intents(lake).await;
        if n == 0 || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_append_published_by_a_writer_that_then_crashed_is_carried_once_and_its_redelivery_adds_nothing() {
    let scene = Scene::after_a_crash(11).await;
    let carrying = scene.b_lands_a_batch_contended().await;
    assert_eq!(carrying.rows.carried, 1, "B's commit carries A's intent: {carrying:?}");
    assert_eq!(until_no_intents(&scene.lake).await, 0, "the carried intent is deleted");

    // Lambda delivers A's failed batch again: it has landed already.
    let redelivered = consume_kinesis(&scene.a, &scene.crashed).await.unwrap();
    assert_eq!((redelivered.rows.rows_written, redelivered.rows.already_committed), (0, 10));
    scene.assert_every_row_once().await;
}

#[tokio::test]
async fn an_intent_whose_batch_its_redelivery_landed_is_never_carried_and_is_deleted() {
    let scene = Scene::after_a_crash(12).await;
    // The redelivery commits A's batch itself: the published intent is now stale.
    let redelivered = consume_kinesis(&scene.a, &scene.crashed).await.unwrap();
    assert_eq!((redelivered.rows.rows_written, redelivered.rows.carried), (10, 0));
    // B, contended, lists the stale intent: it must not carry it (that would land shard A's
    // records 11..=20 twice), and deletes it.
    let next = scene.b_lands_a_batch_contended().await;
    assert_eq!(next.rows.carried, 0, "{next:?}");
    assert_eq!(until_no_intents(&scene.lake).await, 0, "the stale intent is deleted");
    scene.assert_every_row_once().await;
}

/// Writer `w` of a group writing in step owns shard `w`; its first batch is the row `w * 1000`.
async fn land_first_batches(lake: &Lake, writers: i64) {
    for w in 0..writers {
        let first = geo_batch(&format!("shardId-{w:012}"), 1, [w * 1000]);
        consume_kinesis(&TableSink::new(Table::Geo, lake.clone()), &first).await.unwrap();
    }
}

/// Writer `w`'s batch of round `round`: the next 10 rows of its shard.
fn in_step_batch(w: i64, round: i64) -> aws_lambda_events::event::kinesis::KinesisEvent {
    let first = w * 1000 + round * 10 + 1;
    geo_batch(&format!("shardId-{w:012}"), (round * 10 + 2) as u64, first..first + 10)
}

/// Every row `writers` writers land in `rounds` rounds, first batches included, in order.
fn in_step_rows(writers: i64, rounds: i64) -> Vec<i64> {
    (0..writers).flat_map(|w| w * 1000..=w * 1000 + rounds * 10).collect()
}

#[tokio::test]
async fn writers_in_step_carry_each_others_batches_and_each_carried_batch_is_reported_landed_once() {
    let bucket = new_bucket().await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 13).await;
    let lake = lake_through(&bucket, &proxy);
    const WRITERS: i64 = 4;
    const ROUNDS: i64 = 12;
    land_first_batches(&lake, WRITERS).await;
    // The writers keep landing batches at once, each request taking an S3-like 10 ms: they
    // collide, publish what lost, and carry each other's.
    proxy.set_latency(Duration::from_millis(10));
    let writers = (0..WRITERS).map(|w| {
        let sink = TableSink::new(Table::Geo, lake.clone());
        async move {
            let (mut landed_by_another, mut carried) = (0, 0);
            for round in 0..ROUNDS {
                let summary = consume_kinesis(&sink, &in_step_batch(w, round)).await.unwrap();
                assert_eq!(summary.rows.rows_written, 10, "{summary:?}");
                landed_by_another += usize::from(summary.rows.landed_by_another);
                carried += summary.rows.carried;
            }
            (landed_by_another, carried)
        }
    });
    let outcomes = futures::future::join_all(writers).await;
    proxy.set_latency(Duration::ZERO);
    let landed: usize = outcomes.iter().map(|o| o.0).sum();
    let carried: usize = outcomes.iter().map(|o| o.1).sum();
    eprintln!(
        "{WRITERS} writers x {ROUNDS} batches: {carried} carried by another writer's commit, {landed} reported so"
    );
    assert!(carried > 0, "writers in step collide and carry each other's batches");
    assert_eq!(landed, carried, "each carried batch is reported landed by its own writer");
    assert_eq!(inds_once(&lake, "geo").await, in_step_rows(WRITERS, ROUNDS));
}

/// Commits and every request for an intent (publishing, reading, deleting).
fn commit_or_intent(method: &str, path: &str) -> bool {
    path.contains(INTENTS_DIR) || (method == "PUT" && path.contains("/_delta_log/") && path.ends_with(".json"))
}

#[tokio::test]
async fn contended_writers_whose_commits_and_intents_meet_s3_faults_land_every_row_once() {
    let bucket = new_bucket().await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 14).await;
    let lake = lake_through(&bucket, &proxy);
    const WRITERS: i64 = 4;
    const ROUNDS: i64 = 8;
    land_first_batches(&lake, WRITERS).await;
    // Commits that land but whose answer is lost (carrying commits among them), and intents
    // that fail to publish, to be read or to be deleted.
    proxy.set_latency(Duration::from_millis(10));
    proxy.set_plan(FaultPlan {
        probability: 0.25,
        faults: vec![Fault::DropAfterForwarding, Fault::InternalError, Fault::DropBeforeForwarding],
        matches: commit_or_intent,
    });
    let writers = (0..WRITERS).map(|w| {
        let sink = TableSink::new(Table::Geo, lake.clone());
        async move {
            for round in 0..ROUNDS {
                pinpipe_tests::deliver_until_success(&sink, &in_step_batch(w, round)).await;
            }
        }
    });
    futures::future::join_all(writers).await;
    proxy.set_plan(FaultPlan::none());
    proxy.set_latency(Duration::ZERO);
    eprintln!("faults injected: {}", proxy.stats.faults());
    assert!(proxy.stats.faults() >= 10, "the test must actually inject faults");
    assert_eq!(inds_once(&lake, "geo").await, in_step_rows(WRITERS, ROUNDS));
}
