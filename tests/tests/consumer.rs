//! The stream consumer against real Delta tables: on moto's S3 (the Lambda's deployment shape)
//! and on local disk (the local runner's).

use std::collections::HashSet;

use deltalake::arrow::array::{Array, BinaryArray, ListArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use pinpipe::Table;
use pinpipe::kinesis_trigger::{consume_kinesis, handle_kinesis_event};
use pinpipe::lake::Lake;
use pinpipe::local::events::{KinesisDelivery, KinesisSource, kinesis_event, kinesis_source_event, sequence_number};
use pinpipe::sink::TableSink;
use pinpipe::table::QUARANTINE_TABLE;
use pinpipe_tests::{int_column, new_bucket, read_table, str_column, unique};
use serde_json::json;

const SHARD: &str = "shardId-000000000000";

fn geo_record(ind: i64) -> Vec<u8> {
    json!({"ind": ind, "timestamp": "2020-08-28 03:52:47", "latitude": -89.9787, "longitude": -173.293, "country": "Albania"})
        .to_string()
        .into_bytes()
}

fn pin_record(ind: i64) -> Vec<u8> {
    json!({"index": ind, "unique_id": format!("uid-{ind}"), "title": "No Title Data Available",
        "description": "Cozy room", "poster_name": "User Info Error", "follower_count": "211k",
        "tag_list": "Home Decor,Room Ideas", "is_image_or_video": "image", "image_src": "Image src error.",
        "downloaded": "1", "save_location": "Local save in /data/home-decor", "category": "home-decor"})
    .to_string()
    .into_bytes()
}

/// A Kinesis event of `records` on one shard, numbered from `first`.
fn event(
    stream: &str,
    shard: &str,
    first: u64,
    records: &[Vec<u8>],
) -> aws_lambda_events::event::kinesis::KinesisEvent {
    let seqs: Vec<String> = (0..records.len() as u64).map(|i| sequence_number(first + i)).collect();
    let deliveries: Vec<KinesisDelivery> = records
        .iter()
        .zip(&seqs)
        .map(|(data, seq)| KinesisDelivery {
            shard_id: shard,
            sequence_number: seq,
            partition_key: "partition-1",
            data,
        })
        .collect();
    kinesis_event("us-east-1", "123456789012", stream, &deliveries)
}

async fn s3_lake() -> Lake {
    Lake::new(format!("s3://{}/lake", new_bucket().await))
}

fn local_lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap());
    (dir, lake)
}

#[tokio::test]
async fn a_kinesis_batch_lands_every_clean_pin_row_with_spec_types_on_s3() {
    let lake = s3_lake().await;
    let sink = TableSink::new(Table::Pin, lake.clone());
    let records: Vec<Vec<u8>> = (1..=5).map(pin_record).collect();
    let response = handle_kinesis_event(&sink, &event("streaming-t-pin", SHARD, 1, &records)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let batch = read_table(&lake, "pin").await.expect("pin table exists");
    assert_eq!(batch.num_rows(), 5);
    let mut inds = int_column(&batch, "ind");
    inds.sort();
    assert_eq!(inds, (1..=5).map(Some).collect::<Vec<_>>());
    assert!(int_column(&batch, "follower_count").iter().all(|v| *v == Some(211_000)));
    assert!(int_column(&batch, "downloaded").iter().all(|v| *v == Some(1)));
    assert!(str_column(&batch, "title").iter().all(Option::is_none));
    assert!(str_column(&batch, "poster_name").iter().all(Option::is_none));
    assert!(str_column(&batch, "image_src").iter().all(Option::is_none));
    assert!(str_column(&batch, "save_location").iter().all(|v| v.as_deref() == Some("/data/home-decor")));
    assert!(
        str_column(&batch, "_source")
            .iter()
            .all(|v| v.as_deref() == Some("kinesis:streaming-t-pin/shardId-000000000000"))
    );
    let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(
        names,
        [
            "ind",
            "unique_id",
            "title",
            "description",
            "follower_count",
            "poster_name",
            "tag_list",
            "is_image_or_video",
            "image_src",
            "save_location",
            "category",
            "downloaded",
            "_source",
            "_position",
            "_ingested_at",
            "_rescued"
        ]
    );
    assert_eq!(batch.schema().field_with_name("ind").unwrap().data_type(), &DataType::Int64);
    assert!(!batch.schema().field_with_name("ind").unwrap().is_nullable());
}

#[tokio::test]
async fn geo_rows_have_float_list_coordinates_and_utc_microsecond_timestamps() {
    let lake = s3_lake().await;
    let sink = TableSink::new(Table::Geo, lake.clone());
    let summary = consume_kinesis(&sink, &event("streaming-t-geo", SHARD, 1, &[geo_record(7528)])).await.unwrap();
    assert_eq!(summary.rows.rows_written, 1);

    let batch = read_table(&lake, "geo").await.unwrap();
    let ts = batch.column_by_name("timestamp").unwrap();
    assert_eq!(ts.data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
    let ts = ts.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
    assert_eq!(ts.value(0), 1_598_586_767_000_000);
    let coordinates = batch.column_by_name("coordinates").unwrap().as_any().downcast_ref::<ListArray>().unwrap();
    let point = coordinates.value(0);
    let point = point.as_any().downcast_ref::<deltalake::arrow::array::Float64Array>().unwrap();
    assert_eq!((point.value(0), point.value(1)), (-89.9787, -173.293));
    assert_eq!(str_column(&batch, "country"), [Some("Albania".to_string())]);
}

#[tokio::test]
async fn poison_records_go_to_quarantine_without_failing_the_batch() {
    let lake = s3_lake().await;
    let sink = TableSink::new(Table::User, lake.clone());
    let records = vec![
        json!({"ind": 1, "first_name": "Abigail", "last_name": "Ali", "age": 20, "date_joined": "2015-10-24 11:23:51"})
            .to_string()
            .into_bytes(),
        b"{not json".to_vec(),
        json!({"ind": 2, "first_name": "Bo", "last_name": "Li", "age": "old", "date_joined": "2016-01-01 00:00:00"})
            .to_string()
            .into_bytes(),
        json!({"first_name": "No", "last_name": "Key"}).to_string().into_bytes(),
        json!({"ind": 3, "first_name": "Cy", "last_name": "Ng", "age": 40, "date_joined": "2017-02-03T04:05:06"})
            .to_string()
            .into_bytes(),
    ];
    let response = handle_kinesis_event(&sink, &event("streaming-t-user", SHARD, 100, &records)).await;
    assert!(response.batch_item_failures.is_empty(), "a poison record must not fail the batch: {response:?}");

    let users = read_table(&lake, "user").await.unwrap();
    let mut inds = int_column(&users, "ind");
    inds.sort();
    assert_eq!(inds, [Some(1), Some(3)]);
    let mut names = str_column(&users, "user_name");
    names.sort();
    assert_eq!(names, [Some("Abigail Ali".to_string()), Some("Cy Ng".to_string())]);

    let quarantine = read_table(&lake, QUARANTINE_TABLE).await.expect("quarantine table exists");
    assert_eq!(quarantine.num_rows(), 3);
    let mut rows: Vec<(String, String, String)> = str_column(&quarantine, "position")
        .into_iter()
        .zip(str_column(&quarantine, "reason"))
        .zip(str_column(&quarantine, "table"))
        .map(|((p, r), t)| (p.unwrap(), r.unwrap(), t.unwrap()))
        .collect();
    rows.sort();
    assert_eq!(rows[0].0, sequence_number(101));
    assert!(rows[0].1.starts_with("invalid JSON"), "{}", rows[0].1);
    assert_eq!(rows[1].1, r#"age: cannot convert "old" to an integer"#);
    assert_eq!(rows[2].1, "ind: missing key field `ind`");
    assert!(rows.iter().all(|r| r.2 == "user"));
    let raw = quarantine.column_by_name("raw").unwrap().as_any().downcast_ref::<BinaryArray>().unwrap();
    let raws: HashSet<&[u8]> = (0..raw.len()).map(|i| raw.value(i)).collect();
    assert!(raws.contains(&b"{not json"[..]), "raw bytes are kept as they came");
    assert!(
        str_column(&quarantine, "source")
            .iter()
            .all(|s| s.as_deref() == Some("kinesis:streaming-t-user/shardId-000000000000"))
    );
}

#[tokio::test]
async fn an_unreachable_lake_fails_the_batch_from_its_first_record() {
    let missing_bucket = unique("pinpipe-missing-");
    let sink = TableSink::new(Table::Geo, Lake::new(format!("s3://{missing_bucket}/lake")));
    let batch = event("streaming-t-geo", SHARD, 40, &[geo_record(1), geo_record(2)]);
    let response = handle_kinesis_event(&sink, &batch).await;
    let failures: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failures, [Some(sequence_number(40))]);
}

#[tokio::test]
async fn a_batch_redelivered_after_its_commit_adds_nothing() {
    let (_dir, lake) = local_lake();
    let sink = TableSink::new(Table::Geo, lake.clone());
    let batch = event("streaming-t-geo", SHARD, 1, &(1..=4).map(geo_record).collect::<Vec<_>>());
    let first = consume_kinesis(&sink, &batch).await.unwrap();
    assert_eq!(first.rows.rows_written, 4);
    // A new process (a fresh Lambda instance) gets the same batch again.
    let again = consume_kinesis(&TableSink::new(Table::Geo, lake.clone()), &batch).await.unwrap();
    assert_eq!((again.rows.rows_written, again.rows.already_committed, again.rows.version), (0, 4, None));
    assert_eq!(read_table(&lake, "geo").await.unwrap().num_rows(), 4);
}

#[tokio::test]
async fn two_consumers_of_different_shards_committing_at_once_both_land() {
    let lake = s3_lake().await;
    let a = TableSink::new(Table::Geo, lake.clone());
    let b = TableSink::new(Table::Geo, lake.clone());
    // Create the table first, as the first batch on any shard would.
    consume_kinesis(&a, &event("streaming-t-geo", "shardId-000000000009", 1, &[geo_record(0)])).await.unwrap();
    let left = event("streaming-t-geo", "shardId-000000000000", 1, &(1..=20).map(geo_record).collect::<Vec<_>>());
    let right = event("streaming-t-geo", "shardId-000000000001", 1, &(21..=40).map(geo_record).collect::<Vec<_>>());
    let (l, r) = tokio::join!(consume_kinesis(&a, &left), consume_kinesis(&b, &right));
    assert_eq!(l.unwrap().rows.rows_written, 20);
    assert_eq!(r.unwrap().rows.rows_written, 20);
    let mut inds: Vec<i64> =
        int_column(&read_table(&lake, "geo").await.unwrap(), "ind").into_iter().flatten().collect();
    inds.sort();
    assert_eq!(inds, (0..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn fields_no_rule_reads_reach_the_table_as_sent_and_the_batch_counts_them() {
    let lake = s3_lake().await;
    let sink = TableSink::new(Table::Pin, lake.clone());
    let with_new_fields =
        br#"{"index": 1, "title": "t", "new_field": "important", "extra": {"a": 1, "b": [2.50, null]}}"#;
    let records = vec![with_new_fields.to_vec(), pin_record(2)];
    let summary = consume_kinesis(&sink, &event("streaming-t-pin", SHARD, 1, &records)).await.unwrap();
    assert_eq!((summary.rows.rows_written, summary.rows_with_rescued_fields), (2, 1));

    let batch = read_table(&lake, "pin").await.unwrap();
    let mut rescued: Vec<(Option<i64>, Option<String>)> =
        int_column(&batch, "ind").into_iter().zip(str_column(&batch, "_rescued")).collect();
    rescued.sort();
    assert_eq!(
        rescued,
        [
            (Some(1), Some(r#"{"new_field":"important","extra":{"a": 1, "b": [2.50, null]}}"#.to_string())),
            (Some(2), None)
        ]
    );
    assert_eq!(str_column(&batch, "title").iter().filter(|t| t.as_deref() == Some("t")).count(), 1);
}

#[tokio::test]
async fn a_pin_table_written_before_rescued_fields_gains_the_column_and_keeps_its_rows() {
    use pinpipe::clean::clean_bytes;
    use pinpipe::lake::{Marked, Position, SourceKey, TableAppender};
    use pinpipe::schema::{Origin, table_batch, table_schema};
    let lake = s3_lake().await;
    // The table as pinpipe created it before this column: clean columns and lineage only.
    let schema = table_schema(Table::Pin);
    let old_columns: Vec<usize> = (0..schema.fields().len() - 1).collect();
    let old_schema = std::sync::Arc::new(schema.project(&old_columns).unwrap());
    assert_eq!(old_schema.fields().last().unwrap().name(), "_ingested_at");
    let old_rows: Vec<_> = (1..=3)
        .map(|ind| Marked {
            key: SourceKey::Sequence(format!("kinesis/streaming-t-pin/{SHARD}")),
            position: Position::parse(&ind.to_string()).unwrap(),
            item: (
                clean_bytes(Table::Pin, &pin_record(ind)).unwrap().into_owned(),
                Origin { source: "old".into(), position: ind.to_string() },
            ),
        })
        .collect();
    let table = lake.open_or_create("pin", &old_schema).await.unwrap();
    TableAppender::new(table)
        .unwrap()
        .append(&old_rows, Default::default(), |fresh| Ok(table_batch(Table::Pin, fresh, 0)?.project(&old_columns)?))
        .await
        .unwrap();
    assert!(read_table(&lake, "pin").await.unwrap().column_by_name("_rescued").is_none());

    // The consumer, upgraded, takes the next batch of the same shard.
    let sink = TableSink::new(Table::Pin, lake.clone());
    let records = vec![br#"{"index": 4, "campaign": "spring"}"#.to_vec(), pin_record(5)];
    let summary = consume_kinesis(&sink, &event("streaming-t-pin", SHARD, 4, &records)).await.unwrap();
    assert_eq!((summary.rows.rows_written, summary.rows_with_rescued_fields), (2, 1));

    let batch = read_table(&lake, "pin").await.unwrap();
    assert_eq!(batch.schema().fields().last().unwrap().name(), "_rescued");
    let mut rows: Vec<(Option<i64>, Option<String>)> =
        int_column(&batch, "ind").into_iter().zip(str_column(&batch, "_rescued")).collect();
    rows.sort();
    let expected: Vec<(Option<i64>, Option<String>)> = vec![
        (Some(1), None),
        (Some(2), None),
        (Some(3), None),
        (Some(4), Some(r#"{"campaign":"spring"}"#.to_string())),
        (Some(5), None),
    ];
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn a_batch_reports_how_old_its_records_were_from_their_arrival_times() {
    let (_dir, lake) = local_lake();
    let sink = TableSink::new(Table::Geo, lake.clone());
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/streaming-t-geo";
    let source =
        KinesisSource { stream_arn: arn, region: "us-east-1", invoke_identity_arn: "arn:aws:iam::123456789012:role/r" };
    // Whole seconds: `aws_lambda_events` reads the digits after the point as milliseconds
    // (`….84` as 84 ms), and a computed f64 can print with more digits than it has ms.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let now = (now_ms / 1_000) as f64;
    let since_second = (now_ms % 1_000) as f64 / 1e3;
    let records: Vec<Vec<u8>> = (1..=5).map(geo_record).collect();
    let seqs: Vec<String> = (1..=5).map(sequence_number).collect();
    // Arrived 50, 40, 30, 20 and 10 seconds ago.
    let deliveries: Vec<(KinesisDelivery, f64)> = (0..5)
        .map(|i| {
            let delivery =
                KinesisDelivery { shard_id: SHARD, sequence_number: &seqs[i], partition_key: "k", data: &records[i] };
            (delivery, now - 50.0 + 10.0 * i as f64)
        })
        .collect();
    let started = std::time::Instant::now();
    let summary = consume_kinesis(&sink, &kinesis_source_event(&source, &deliveries)).await.unwrap();
    let took = started.elapsed().as_secs_f64() + since_second + 0.01;
    let (p50, max) =
        (summary.record_ages.p50().unwrap().as_secs_f64(), summary.record_ages.max().unwrap().as_secs_f64());
    assert!((29.99..30.0 + took).contains(&p50), "p50 {p50} s: the middle record arrived 30 s ago");
    assert!((49.99..50.0 + took).contains(&max), "max {max} s: the oldest record arrived 50 s ago");
    assert_eq!(summary.record_ages.len(), 5);
}
