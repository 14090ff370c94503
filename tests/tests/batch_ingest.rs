//! The batch path against moto S3: Kafka Connect objects land cleaned in the tables, exactly
//! once under repeated notifications, re-uploads, unordered objects, concurrent writers and
//! injected S3 faults.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use aws_lambda_events::event::s3::S3Event;
use object_store::RetryConfig;
use object_store::aws::AmazonS3ConfigKey;
use pinpipe::Table;
use pinpipe::batch::{BatchIngest, BatchLimits, ObjectRef, S3Objects};
use pinpipe::lake::Lake;
use pinpipe::sink::TableSink;
use pinpipe::table::QUARANTINE_TABLE;
use pinpipe_tests::fault_proxy::{Fault, FaultPlan, FaultProxy};
use pinpipe_tests::{
    deliver_until_success, endpoint, geo_batch, inds_once, int_column, lake_through, new_bucket, read_table, s3_client,
    str_column,
};
use serde_json::json;

const PREFIX: &str = "0a1b2c3d4e5f";

fn geo(ind: i64) -> String {
    json!({"ind": ind, "timestamp": "2021-03-04 05:06:07", "latitude": 1.5, "longitude": 2.5, "country": "Chad"})
        .to_string()
}

fn user(ind: i64) -> String {
    json!({"ind": ind, "first_name": "Ann", "last_name": "Lee", "age": 33, "date_joined": "2016-01-02T03:04:05"})
        .to_string()
}

fn key(table: &str, partition: u32, offset: i64, ext: &str) -> String {
    format!("topics/{PREFIX}.{table}/partition={partition}/{PREFIX}.{table}+{partition}+{offset:010}.{ext}")
}

async fn put(bucket: &str, key: &str, body: Vec<u8>) -> ObjectRef {
    s3_client().await.put_object().bucket(bucket).key(key).body(body.into()).send().await.expect("put object");
    ObjectRef { bucket: bucket.into(), key: key.into() }
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

/// The notification S3 sends for `objects`: keys URL-encoded, `+` as `%2B`.
fn notification(objects: &[ObjectRef]) -> S3Event {
    let records: Vec<_> = objects
        .iter()
        .map(|o| {
            json!({"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                   "eventTime": "2026-11-25T10:00:00.000Z", "eventName": "ObjectCreated:Put",
                   "userIdentity": {"principalId": "AWS:AIDAPINPIPE"},
                   "requestParameters": {"sourceIPAddress": "10.0.0.1"},
                   "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
                   "s3": {"bucket": {"name": o.bucket, "arn": format!("arn:aws:s3:::{}", o.bucket)},
                          "object": {"key": o.key.replace('+', "%2B"), "size": 100}}})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a valid S3 event")
}

async fn s3_objects() -> Arc<S3Objects> {
    Arc::new(S3Objects::from_env().with_config(AmazonS3ConfigKey::Endpoint, endpoint()))
}

#[tokio::test]
async fn kafka_connect_objects_in_s3_land_cleaned_and_bad_lines_go_to_quarantine_with_their_origin() {
    let bucket = new_bucket().await;
    let lake = Lake::new(format!("s3://{bucket}/lake"));
    let objects = vec![
        put(&bucket, &key("geo", 0, 0, "json"), format!("{}\n{}\n{{broken\n", geo(1), geo(2)).into_bytes()).await,
        put(&bucket, &key("geo", 1, 7, "json.gz"), gzip(&format!("{}\n{}\n", geo(3), geo(4)))).await,
        put(&bucket, &key("user", 0, 0, "json"), format!("[{}, {}]", user(1), user(2)).into_bytes()).await,
        // Named by the notification but deleted before the function ran.
        ObjectRef { bucket: bucket.clone(), key: key("geo", 0, 99, "json") },
        ObjectRef { bucket: bucket.clone(), key: format!("topics/other.geo/partition=0/other.geo+0+{:010}.json", 0) },
    ];
    let ingest = BatchIngest::new(PREFIX, lake.clone(), s3_objects().await);
    let summary = ingest.handle_s3_event(&notification(&objects)).await.expect("ingest succeeds");

    assert_eq!(summary.objects_read, 3);
    assert_eq!(summary.skipped.len(), 2, "{:?}", summary.skipped);
    assert_eq!(inds_once(&lake, "geo").await, vec![1, 2, 3, 4]);
    assert_eq!(inds_once(&lake, "user").await, vec![1, 2]);
    let geo_rows = read_table(&lake, "geo").await.unwrap();
    let sources = str_column(&geo_rows, "_source");
    assert!(sources.iter().flatten().all(|s| s.starts_with(&format!("s3://{bucket}/topics/"))), "{sources:?}");

    let quarantine = read_table(&lake, QUARANTINE_TABLE).await.expect("quarantine exists");
    assert_eq!(quarantine.num_rows(), 1);
    assert_eq!(str_column(&quarantine, "source"), vec![Some(format!("s3://{bucket}/{}", key("geo", 0, 0, "json")))]);
    assert_eq!(str_column(&quarantine, "position"), vec![Some("3".to_string())]);
    assert_eq!(str_column(&quarantine, "raw_text"), vec![Some("{broken".to_string())]);
    assert!(str_column(&quarantine, "reason")[0].as_deref().is_some_and(|r| !r.is_empty()));
}

#[tokio::test]
async fn the_same_notification_twice_and_a_reuploaded_object_land_once() {
    let bucket = new_bucket().await;
    let lake = Lake::new(format!("s3://{bucket}/lake"));
    let lines: String = (1..=5).map(|i| geo(i) + "\n").collect();
    let object = put(&bucket, &key("geo", 0, 0, "json"), lines.clone().into_bytes()).await;
    let event = notification(std::slice::from_ref(&object));
    BatchIngest::new(PREFIX, lake.clone(), s3_objects().await).handle_s3_event(&event).await.unwrap();

    // The notification again, to a fresh instance, and the object uploaded again.
    let again = BatchIngest::new(PREFIX, lake.clone(), s3_objects().await).handle_s3_event(&event).await.unwrap();
    assert_eq!(again.tables[&Table::Geo].already_committed, 5);
    put(&bucket, &object.key, lines.into_bytes()).await;
    let reupload = BatchIngest::new(PREFIX, lake.clone(), s3_objects().await).handle_s3_event(&event).await.unwrap();
    assert_eq!((reupload.tables[&Table::Geo].rows_written, reupload.tables[&Table::Geo].commits), (0, 0));
    assert_eq!(inds_once(&lake, "geo").await, (1..=5).collect::<Vec<_>>());
}

#[tokio::test]
async fn objects_of_one_partition_arriving_out_of_order_all_land() {
    let bucket = new_bucket().await;
    let lake = Lake::new(format!("s3://{bucket}/lake"));
    let ingest = BatchIngest::new(PREFIX, lake.clone(), s3_objects().await);
    // Offsets 0..=9, one record per object as with flush.size=1; notifications in reverse order.
    for offset in (0..10i64).rev() {
        let object = put(&bucket, &key("geo", 0, offset, "json"), (geo(offset) + "\n").into_bytes()).await;
        ingest.handle_s3_event(&notification(&[object])).await.unwrap();
    }
    assert_eq!(inds_once(&lake, "geo").await, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_notification_for_many_objects_makes_one_commit_per_table() {
    let bucket = new_bucket().await;
    let lake = Lake::new(format!("s3://{bucket}/lake"));
    let mut objects = Vec::new();
    for offset in 0..40i64 {
        objects.push(put(&bucket, &key("geo", 0, offset, "json"), (geo(offset) + "\n").into_bytes()).await);
    }
    let summary = BatchIngest::new(PREFIX, lake.clone(), s3_objects().await)
        .handle_s3_event(&notification(&objects))
        .await
        .unwrap();
    assert_eq!(summary.tables[&Table::Geo].commits, 1);
    let table = lake.open("geo").await.unwrap().expect("geo exists");
    assert_eq!(table.version(), Some(1), "one create and one append");
    assert_eq!(inds_once(&lake, "geo").await, (0..40).collect::<Vec<_>>());
}

#[tokio::test]
async fn batch_ingest_and_stream_consumers_writing_one_table_at_once_land_every_row_once() {
    let bucket = new_bucket().await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 3).await;
    let lake = lake_through(&bucket, &proxy);
    let mut objects = Vec::new();
    for offset in 0..30i64 {
        objects.push(put(&bucket, &key("geo", 0, offset, "json"), (geo(10_000 + offset) + "\n").into_bytes()).await);
    }
    let ingest = BatchIngest::new(PREFIX, lake.clone(), s3_objects().await)
        .with_limits(BatchLimits { records: 5, bytes: usize::MAX });
    let batch_writer = async {
        let event = notification(&objects);
        for _ in 0..20 {
            if ingest.handle_s3_event(&event).await.is_ok() {
                return;
            }
        }
        panic!("batch ingest never succeeded");
    };
    let stream_writers = (0..3i64).map(|w| {
        let lake = lake.clone();
        async move {
            let sink = TableSink::new(Table::Geo, lake);
            let shard = format!("shardId-{w:012}");
            for round in 0..3i64 {
                let first = w * 100 + round * 10;
                deliver_until_success(&sink, &geo_batch(&shard, (round * 10 + 1) as u64, first..first + 10)).await;
            }
        }
    });
    tokio::join!(batch_writer, futures::future::join_all(stream_writers));
    let mut expected: Vec<i64> = (0..3i64).flat_map(|w| w * 100..w * 100 + 30).collect();
    expected.extend(10_000..10_030);
    assert_eq!(inds_once(&lake, "geo").await, expected);
}

fn any_request(_: &str, _: &str) -> bool {
    true
}

#[tokio::test]
async fn injected_s3_faults_during_batch_ingest_lose_no_row_and_duplicate_none() {
    let bucket = new_bucket().await;
    let mut objects = Vec::new();
    for (partition, offset) in [(0u32, 0i64), (0, 20), (1, 0), (1, 20)] {
        let lines: String = (0..20).map(|i| geo(partition as i64 * 1_000 + offset + i) + "\n").collect();
        objects.push(put(&bucket, &key("geo", partition, offset, "json"), lines.into_bytes()).await);
    }
    let plan = FaultPlan {
        probability: 0.25,
        faults: vec![Fault::InternalError, Fault::SlowDown, Fault::DropBeforeForwarding, Fault::DropAfterForwarding],
        matches: any_request,
    };
    let proxy = FaultProxy::start(&endpoint(), plan, 11).await;
    let lake = lake_through(&bucket, &proxy);
    // The objects are read through the faulty proxy too, with no SDK retries, so that faults
    // reach the handler and Lambda's retry of the whole notification.
    let source = Arc::new(
        S3Objects::from_env()
            .with_config(AmazonS3ConfigKey::Endpoint, proxy.endpoint.clone())
            .with_retry(RetryConfig { max_retries: 0, ..Default::default() }),
    );
    // Chunks of 15 records: some deliveries fail between two commits of one notification.
    let ingest =
        BatchIngest::new(PREFIX, lake.clone(), source).with_limits(BatchLimits { records: 15, bytes: usize::MAX });
    let event = notification(&objects);
    let mut deliveries = 0;
    for attempt in 1..=40 {
        deliveries = attempt;
        if ingest.handle_s3_event(&event).await.is_ok() {
            break;
        }
    }
    proxy.set_plan(FaultPlan::none());
    let stats = &proxy.stats;
    eprintln!(
        "batch fault test: {} requests, {} faults, {deliveries} deliveries of one notification",
        stats.requests.load(Ordering::Relaxed),
        stats.faults()
    );
    assert!(stats.faults() >= 3, "the test must actually inject faults");
    assert!(deliveries > 1, "some faults must fail a delivery, so that a retry has to skip what landed");
    let expected: Vec<i64> = [0i64, 1_000].into_iter().flat_map(|base| base..base + 40).collect();
    assert_eq!(inds_once(&lake, "geo").await, expected);
}

#[tokio::test]
async fn fields_no_rule_reads_land_through_the_batch_path_and_the_summary_counts_them_with_freshness() {
    let bucket = new_bucket().await;
    let lake = Lake::new(format!("s3://{bucket}/lake"));
    let lines = format!(
        "{}\n{}\n",
        r#"{"ind": 1, "first_name": "Ann", "loyalty": {"tier": "gold", "points": 1.50e3}}"#,
        user(2)
    );
    let before_put = chrono::Utc::now();
    let object = put(&bucket, &key("user", 0, 0, "json"), lines.into_bytes()).await;
    let summary = BatchIngest::new(PREFIX, lake.clone(), s3_objects().await)
        .handle_s3_event(&notification(&[object]))
        .await
        .expect("ingest succeeds");
    let ingested_within = chrono::Utc::now() - before_put;

    let totals = &summary.tables[&Table::User];
    assert_eq!((totals.rows_written, totals.rows_with_rescued_fields), (2, 1));
    let json = summary.to_json();
    assert_eq!(json["tables"]["user"]["rows_with_rescued_fields"], 1);
    // Freshness counts from the object's Last-Modified (whole seconds in S3's header).
    let max = json["tables"]["user"]["freshness_max_ms"].as_i64().expect("a freshness");
    assert!(max <= ingested_within.num_milliseconds() + 1_000, "{max} ms");
    assert!(json["tables"]["user"]["freshness_p50_ms"].as_i64() <= Some(max));

    let users = read_table(&lake, "user").await.unwrap();
    let mut rows: Vec<(Option<i64>, Option<String>)> =
        int_column(&users, "ind").into_iter().zip(str_column(&users, "_rescued")).collect();
    rows.sort();
    assert_eq!(
        rows,
        [(Some(1), Some(r#"{"loyalty":{"tier": "gold", "points": 1.50e3}}"#.to_string())), (Some(2), None)]
    );
}
