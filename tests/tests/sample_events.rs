//! Every sample event in `events/` is what Lambda would really deliver: each file deserialises
//! into its `aws_lambda_events` type and runs through the handler code the functions use —
//! the consumer into a temporary local lake, the producer's REST contract against the embedded
//! stream service, maintenance over the tables the consumers wrote. A file nobody checks fails
//! the test, so a new sample event has to come with its check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lambda_events::event::apigw::ApiGatewayProxyRequest;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::s3::S3Event;
use base64::Engine as _;
use http::StatusCode;
use pinpipe::Table;
use pinpipe::api::{self, ApiConfig, ApiRequest, ApiResponse};
use pinpipe::batch::{BatchIngest, LocalObjects};
use pinpipe::kinesis_trigger::{consume_kinesis, handle_kinesis_event};
use pinpipe::lake::Lake;
use pinpipe::local::embedded::EmbeddedStreams;
use pinpipe::maintenance::{MaintenancePolicy, maintain};
use pinpipe::sink::TableSink;
use pinpipe::stream::StreamStore;
use pinpipe::table::QUARANTINE_TABLE;
use pinpipe_tests::str_column;
use serde_json::{Value, json};

/// The prefix every sample event is written for.
const PREFIX: &str = "0a1b2c3d4e5f";

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn read_event(name: &str) -> String {
    let path = events_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The sample event `name` as the Lambda type `T`.
macro_rules! load {
    ($name:expr) => {{
        let name = $name;
        serde_json::from_str(&read_event(name))
            .unwrap_or_else(|e| panic!("{name} is not a valid event of its type: {e}"))
    }};
}

/// The sample events this file checks, by the test that checks them.
const KINESIS_EVENTS: [(&str, Table); 3] =
    [("kinesis-pin.json", Table::Pin), ("kinesis-geo.json", Table::Geo), ("kinesis-user.json", Table::User)];
const API_EVENTS: [&str; 6] = [
    "apigw-list-streams.json",
    "apigw-describe-stream.json",
    "apigw-create-stream.json",
    "apigw-delete-stream.json",
    "apigw-put-record.json",
    "apigw-put-records.json",
];
const SCHEDULED_EVENT: &str = "scheduled.json";
const REDRIVE_EVENT: &str = "maintenance-redrive.json";
const S3_EVENT: &str = "s3-kafka-connect.json";

#[test]
fn every_sample_event_is_checked() {
    let mut checked: Vec<&str> = KINESIS_EVENTS.iter().map(|(name, _)| *name).collect();
    checked.extend(API_EVENTS);
    checked.extend([SCHEDULED_EVENT, REDRIVE_EVENT, S3_EVENT]);
    let mut unchecked = Vec::new();
    for entry in std::fs::read_dir(events_dir()).expect("events/ exists") {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") && !checked.contains(&name.as_str()) {
            unchecked.push(name);
        }
    }
    assert!(unchecked.is_empty(), "sample events without a check in tests/tests/sample_events.rs: {unchecked:?}");
}

// ---------------------------------------------------------------------------------------------
// Stream consumers

/// One realistic batch per table: three clean records and one poison record each.
#[tokio::test]
async fn kinesis_samples_land_three_rows_and_quarantine_the_poison_record() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap());
    for (name, table) in KINESIS_EVENTS {
        let event: KinesisEvent = load!(name);
        assert_eq!(event.records.len(), 4, "{name}");
        for record in &event.records {
            assert_eq!(record.kinesis.sequence_number.len(), 56, "{name}: Kinesis sequence numbers have 56 digits");
            let arn = record.event_source_arn.as_deref().unwrap();
            assert!(arn.ends_with(&format!(":stream/{}", table.stream_name(PREFIX))), "{name}: {arn}");
        }

        let sink = TableSink::new(table, lake.clone());
        // What the Lambda answers: no failed records, a poison record does not fail the batch.
        let response = handle_kinesis_event(&sink, &event).await;
        assert!(response.batch_item_failures.is_empty(), "{name}: {:?}", response.batch_item_failures);
        assert_eq!(lake.count_rows(table.name()).await.unwrap(), Some(3), "{name}: clean rows");

        // Lambda delivers at least once: the same batch again adds nothing.
        let again = consume_kinesis(&sink, &event).await.unwrap();
        assert_eq!((again.records_in, again.rows.rows_written, again.quarantined.rows_written), (4, 0, 0), "{name}");
        assert_eq!(again.rows.already_committed, 3, "{name}: redelivered rows are skipped");
    }

    // The three poison records, one per table, each with its reason and origin.
    let quarantine = lake.read_all(QUARANTINE_TABLE).await.unwrap().expect("quarantine table");
    assert_eq!(quarantine.num_rows(), 3);
    let mut tables: Vec<String> = str_column(&quarantine, "table").into_iter().flatten().collect();
    tables.sort();
    assert_eq!(tables, ["geo", "pin", "user"]);
    let reasons = str_column(&quarantine, "reason").into_iter().flatten().collect::<Vec<_>>().join(" | ");
    for expected in ["follower_count", "timestamp", "JSON"] {
        assert!(reasons.contains(expected), "reasons {reasons:?} should mention {expected}");
    }
    for source in str_column(&quarantine, "source").into_iter().flatten() {
        assert!(source.starts_with(&format!("kinesis:streaming-{PREFIX}-")), "{source}");
    }
}

// ---------------------------------------------------------------------------------------------
// Producer

/// The request the producer's Lambda hands to the contract, built from a REST proxy event the
/// way lambda_http does: the stage in front of the path, the Content-Type header, the body.
fn api_request(event: &ApiGatewayProxyRequest) -> ApiRequest {
    let path = event.request_context.path.clone().or_else(|| event.path.clone()).expect("a path");
    let mut request = ApiRequest::new(event.http_method.clone(), path);
    let body = match (&event.body, event.is_base64_encoded) {
        (Some(body), true) => base64::engine::general_purpose::STANDARD.decode(body).expect("base64 body"),
        (Some(body), false) => body.clone().into_bytes(),
        (None, _) => Vec::new(),
    };
    request.body = body;
    request.content_type =
        event.headers.get(http::header::CONTENT_TYPE).map(|v| v.to_str().expect("ASCII content type").to_string());
    request
}

async fn call(config: &ApiConfig, store: &EmbeddedStreams, name: &str) -> ApiResponse {
    let event: ApiGatewayProxyRequest = load!(name);
    assert_eq!(event.request_context.stage.as_deref(), Some("prod"), "{name}");
    api::handle(config, store, api_request(&event)).await
}

async fn store_with_streams() -> EmbeddedStreams {
    let store = EmbeddedStreams::new(2, 1);
    for table in Table::ALL {
        store.create_stream(&table.stream_name(PREFIX), None).await.unwrap();
    }
    store
}

#[tokio::test]
async fn api_samples_get_the_answers_of_the_rest_contract() {
    let config = ApiConfig::new(PREFIX, false, Duration::from_millis(500)).unwrap();
    let store = store_with_streams().await;
    let pin = Table::Pin.stream_name(PREFIX);
    let geo = Table::Geo.stream_name(PREFIX);

    let listed = call(&config, &store, "apigw-list-streams.json").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let mut names = config.stream_names();
    names.sort();
    assert_eq!(listed.body["StreamNames"], json!(names));

    let described = call(&config, &store, "apigw-describe-stream.json").await;
    assert_eq!(described.status, StatusCode::OK, "{}", described.body);
    assert_eq!(described.body["StreamDescription"]["StreamName"], json!(pin));

    // PutRecord: the record's Data object is stored as its JSON text.
    let put = call(&config, &store, "apigw-put-record.json").await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["SequenceNumber"].as_str().map(str::len), Some(56), "{}", put.body);
    let event: ApiGatewayProxyRequest = load!("apigw-put-record.json");
    let sent: Value = serde_json::from_str(event.body.as_deref().unwrap()).unwrap();
    let stored: Vec<Value> = (0..store.shard_count(&pin))
        .flat_map(|shard| store.read(&pin, shard, 0, 100))
        .map(|r| serde_json::from_slice(&r.data).unwrap())
        .collect();
    assert_eq!(stored, [sent["Data"].clone()]);

    // PutRecords: every record accepted.
    let put = call(&config, &store, "apigw-put-records.json").await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["FailedRecordCount"], json!(0), "{}", put.body);
    let stored: usize = (0..store.shard_count(&geo)).map(|shard| store.read(&geo, shard, 0, 100).len()).sum();
    assert_eq!(stored, put.body["Records"].as_array().unwrap().len());
    assert_eq!(stored, 3);

    // Stream administration is off unless the deployment allows it.
    for name in ["apigw-create-stream.json", "apigw-delete-stream.json"] {
        let refused = call(&config, &store, name).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{name}: {}", refused.body);
        assert_eq!(refused.error_code(), Some("StreamAdminDisabled"), "{name}");
    }
    assert_eq!(store.shard_count(&pin), 2, "the refused delete left the stream alone");
}

#[tokio::test]
async fn api_admin_samples_create_and_delete_a_stream_when_allowed() {
    let config = ApiConfig::new(PREFIX, true, Duration::from_millis(500)).unwrap();
    let store = EmbeddedStreams::new(2, 1);
    let pin = Table::Pin.stream_name(PREFIX);

    let created = call(&config, &store, "apigw-create-stream.json").await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(store.shard_count(&pin), 1, "the sample asks for one shard");

    let deleted = call(&config, &store, "apigw-delete-stream.json").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(store.shard_count(&pin), 0);
}

// ---------------------------------------------------------------------------------------------
// Maintenance

#[tokio::test]
async fn scheduled_sample_runs_maintenance_over_every_table() {
    let event: EventBridgeEvent<Value> = load!(SCHEDULED_EVENT);
    assert_eq!((event.detail_type.as_str(), event.source.as_str()), ("Scheduled Event", "aws.events"));

    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap());
    for (name, table) in KINESIS_EVENTS {
        let event: KinesisEvent = load!(name);
        consume_kinesis(&TableSink::new(table, lake.clone()), &event).await.unwrap();
    }

    // What the maintenance Lambda does on every scheduled event: each table in turn.
    let policy = MaintenancePolicy { min_small_files: 1, ..MaintenancePolicy::default() };
    let names = Table::ALL.iter().map(|t| t.name()).chain([QUARANTINE_TABLE]);
    for name in names {
        let report = maintain(&lake, name, &policy).await.unwrap().unwrap_or_else(|| panic!("{name} exists"));
        assert!(report.checkpoint_version.is_some(), "{name}: a checkpoint after the first run: {report:?}");
        assert_eq!(report.files_after, 1, "{name}: {report:?}");
    }
    assert_eq!(lake.count_rows("pin").await.unwrap(), Some(3), "maintenance keeps every row");
    assert_eq!(lake.count_rows(QUARANTINE_TABLE).await.unwrap(), Some(3));

    // A lake without tables is nothing to do, not an error.
    let empty = tempfile::tempdir().unwrap();
    assert!(maintain(&Lake::new(empty.path().to_str().unwrap()), "pin", &policy).await.unwrap().is_none());

    // A scheduled event is not a redrive request.
    let scheduled: Value = serde_json::from_str(&read_event(SCHEDULED_EVENT)).unwrap();
    assert_eq!(pinpipe::redrive::request_from_event(&scheduled).unwrap(), None);
}

/// The redrive sample is what the maintenance function reads as a redrive request: a dry run
/// over `pin` that writes nothing. The sample's quarantined record was rejected by today's
/// rules, so there is nothing to redrive until `RULES_VERSION` changes.
#[tokio::test]
async fn redrive_sample_runs_a_dry_redrive_of_pin() {
    let event: Value = load!(REDRIVE_EVENT);
    let request = pinpipe::redrive::request_from_event(&event).unwrap().expect("a redrive request");
    assert_eq!((request.table, request.limit, request.dry_run), (Some(Table::Pin), 10_000, true));
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap());
    let pins: KinesisEvent = load!("kinesis-pin.json");
    consume_kinesis(&TableSink::new(Table::Pin, lake.clone()), &pins).await.unwrap();
    let report = pinpipe::redrive::redrive(&lake, &request).await.unwrap();
    assert_eq!(report.tables.len(), 1);
    let pin = &report.tables[0];
    assert_eq!((pin.table.as_str(), pin.run, pin.moved, pin.stayed), ("pin", None, 0, 0), "{report:?}");
    assert!(lake.open(pinpipe::table::REDRIVES_TABLE).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Batch ingest

/// The S3 sample through batch-ingest's handler, reading the object it names from
/// `events/kafka-connect/` (what `PINPIPE_LOCAL_OBJECTS_DIR` does for `cargo lambda watch`):
/// two clean pins land, the record without an index is quarantined, a redelivery adds nothing.
async fn run_batch_ingest_sample(event: &S3Event) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap());
    let objects = std::sync::Arc::new(LocalObjects::new(events_dir().join("kafka-connect")));
    let ingest = BatchIngest::new(PREFIX, lake.clone(), objects);
    let summary = ingest.handle_s3_event(event).await.expect("the sample object is ingested");
    assert_eq!((summary.objects_read, summary.skipped.len()), (1, 0), "{summary:?}");
    let pin = &summary.tables[&Table::Pin];
    assert_eq!((pin.records_in, pin.rows_written, pin.quarantined), (3, 2, 1), "{pin:?}");
    assert_eq!(lake.count_rows("pin").await.unwrap(), Some(2));
    assert_eq!(lake.count_rows(QUARANTINE_TABLE).await.unwrap(), Some(1));
    let again = ingest.handle_s3_event(event).await.unwrap();
    assert_eq!(again.tables[&Table::Pin].already_committed, 3);
    assert_eq!(lake.count_rows("pin").await.unwrap(), Some(2));
}

#[tokio::test]
async fn s3_kafka_connect_sample_deserialises() {
    let event: S3Event = load!(S3_EVENT);
    assert_eq!(event.records.len(), 1);
    let record = &event.records[0];
    assert_eq!(record.event_name.as_deref(), Some("ObjectCreated:Put"));
    assert_eq!(record.s3.bucket.name.as_deref(), Some(format!("pinpipe-{PREFIX}-raw-123456789012-us-east-1").as_str()));
    // S3 notifications URL-encode object keys ('=' is %3D, '+' is %2B, a space would be '+').
    let key = record.s3.object.key.as_deref().unwrap();
    assert_eq!(key, format!("topics/{PREFIX}.pin/partition%3D0/{PREFIX}.pin%2B0%2B0000000042.json"));
    assert!(record.s3.object.size.unwrap() > 0);
    run_batch_ingest_sample(&event).await;
}
