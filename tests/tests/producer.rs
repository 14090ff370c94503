//! The producer's REST contract against Kinesis: `pinpipe::api::handle` over a
//! `KinesisStreamStore` whose SDK client talks to moto, read back with the plain SDK.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use http::{Method, StatusCode};
use pinpipe::Table;
use pinpipe::api::{ApiConfig, ApiRequest, ApiResponse, handle};
use pinpipe::stream::StreamStore;
use pinpipe::stream::kinesis::KinesisStreamStore;
use pinpipe_tests::fault_proxy::{Fault, FaultPlan, FaultProxy};
use pinpipe_tests::{endpoint, kinesis_client, sdk_config, unique};
use serde_json::{Value, json};

/// A producer for a fresh deployment prefix, so tests sharing one moto server stay apart.
struct Producer {
    config: ApiConfig,
    store: KinesisStreamStore,
}

impl Producer {
    async fn new(stream_admin: bool) -> Self {
        let config = ApiConfig::new(unique("t"), stream_admin, Duration::from_millis(2000)).unwrap();
        Self { config, store: KinesisStreamStore::new(kinesis_client().await) }
    }

    fn stream(&self, table: Table) -> String {
        table.stream_name(&self.config.prefix)
    }

    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> ApiResponse {
        let mut request = ApiRequest::new(method, path);
        if let Some(body) = body {
            request = request.with_body("application/json", body.as_bytes());
        }
        handle(&self.config, &self.store, request).await
    }

    /// Creates the three streams through the API with one shard each.
    async fn create_streams(&self) {
        for table in Table::ALL {
            let response = self
                .call(Method::POST, &format!("/streams/{}", self.stream(table)), Some(r#"{"ShardCount": 1}"#))
                .await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        }
    }
}

/// Whether Kinesis knows the stream.
async fn stream_exists(name: &str) -> bool {
    kinesis_client().await.describe_stream().stream_name(name).send().await.is_ok()
}

/// Every record of a stream, read from each shard from TRIM_HORIZON: (partition key, data) by
/// (shard, sequence number), since sequence numbers are only unique within a shard.
async fn read_stream(name: &str) -> BTreeMap<(String, String), (String, Vec<u8>)> {
    let client = kinesis_client().await;
    let shards = client.list_shards().stream_name(name).send().await.unwrap();
    let mut records = BTreeMap::new();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_string);
        while let Some(current) = iterator {
            let page = client.get_records().shard_iterator(current).send().await.unwrap();
            for record in page.records() {
                records.insert(
                    (shard.shard_id().to_string(), record.sequence_number().to_string()),
                    (record.partition_key().unwrap_or_default().to_string(), record.data().as_ref().to_vec()),
                );
            }
            iterator = if page.records().is_empty() { None } else { page.next_shard_iterator().map(str::to_string) };
        }
    }
    records
}

/// pinpipe stores the client's text of `Data` without the whitespace between tokens (keys in
/// the client's order, escapes as sent). The length of `data` without the spaces of Python's separators (`": "`, `", "`); the
/// seeds' values hold neither sequence.
fn compact_len(data: &str) -> usize {
    data.len() - data.matches("\": ").count() - data.matches(", \"").count()
}

/// Raw records as the posting emulator sends them, in Python's `json.dumps` text (spaced
/// separators, non-ASCII escaped, timestamps through `default=str`).
fn seed_record(table: Table) -> &'static str {
    match table {
        Table::Pin => {
            r#"{"index": 7528, "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf", "title": "No Title Data Available", "description": "No description available Story format", "poster_name": "User Info Error", "follower_count": "User Info Error", "tag_list": "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e", "is_image_or_video": "multi-video(story page format)", "image_src": "Image src error.", "downloaded": 0, "save_location": "Local save in /data/mens-fashion", "category": "mens-fashion"}"#
        }
        Table::Geo => {
            r#"{"ind": 7528, "timestamp": "2020-08-28 03:52:47", "latitude": -89.9787, "longitude": -173.293, "country": "Albania"}"#
        }
        Table::User => {
            r#"{"ind": 7528, "first_name": "Zo\u00eb", "last_name": "Ali", "age": 20, "date_joined": "2015-10-24 11:23:51"}"#
        }
    }
}

#[tokio::test]
async fn streams_are_created_listed_described_and_deleted_through_the_api() {
    let producer = Producer::new(true).await;
    let [pin, geo, user] = Table::ALL.map(|t| producer.stream(t));

    // Provisioned with a shard count, and on-demand when the body is absent or has no count.
    let created = producer.call(Method::POST, &format!("/prod/streams/{pin}"), Some(r#"{"ShardCount": 2}"#)).await;
    assert_eq!((created.status, &created.body), (StatusCode::OK, &json!({})));
    let created = producer.call(Method::POST, &format!("/streams/{geo}"), None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let created =
        producer.call(Method::POST, &format!("/streams/{user}"), Some(&format!(r#"{{"StreamName": "{user}"}}"#))).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let again = producer.call(Method::POST, &format!("/streams/{pin}"), None).await;
    assert_eq!((again.status, again.error_code()), (StatusCode::CONFLICT, Some("StreamInUse")));

    // Another deployment's stream exists in the same account but is neither listed nor touched.
    let foreign = Table::Pin.stream_name(&unique("other"));
    kinesis_client().await.create_stream().stream_name(&foreign).shard_count(1).send().await.unwrap();

    let listed = producer.call(Method::GET, "/streams", None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["HasMoreStreams"], false);
    let names: BTreeSet<&str> =
        listed.body["StreamNames"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from([pin.as_str(), geo.as_str(), user.as_str()]));

    let described = producer.call(Method::GET, &format!("/streams/{pin}"), None).await;
    assert_eq!(described.status, StatusCode::OK, "{}", described.body);
    let description = &described.body["StreamDescription"];
    assert_eq!(description["StreamName"], pin.as_str());
    assert!(description["StreamARN"].as_str().unwrap().ends_with(&format!(":stream/{pin}")));
    assert_eq!(description["StreamStatus"], "ACTIVE");
    assert_eq!(description["RetentionPeriodHours"], 24);
    let shards = description["Shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    assert!(shards.iter().all(|s| s["ShardId"].as_str().unwrap().starts_with("shardId-")));
    assert_eq!(shards[0]["StartingHashKey"], "0");
    let on_demand = producer.call(Method::GET, &format!("/streams/{geo}"), None).await;
    let on_demand_shards = on_demand.body["StreamDescription"]["Shards"].as_array().unwrap().len();
    assert!(on_demand_shards >= 1, "{}", on_demand.body);
    let mode = kinesis_client().await.describe_stream_summary().stream_name(&geo).send().await.unwrap();
    let mode =
        mode.stream_description_summary().unwrap().stream_mode_details().unwrap().stream_mode().as_str().to_string();
    assert_eq!(mode, "ON_DEMAND");

    let refused = producer.call(Method::DELETE, &format!("/streams/{foreign}"), None).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::NOT_FOUND, Some("StreamNotFound")));
    assert!(stream_exists(&foreign).await);

    for name in [&pin, &geo, &user] {
        let deleted = producer.call(Method::DELETE, &format!("/streams/{name}"), None).await;
        assert_eq!((deleted.status, &deleted.body), (StatusCode::OK, &json!({})), "{name}");
        assert!(!stream_exists(name).await, "{name} is gone");
    }
    let listed = producer.call(Method::GET, "/streams", None).await;
    assert_eq!(listed.body["StreamNames"], json!([]));
    let gone = producer.call(Method::GET, &format!("/streams/{pin}"), None).await;
    assert_eq!((gone.status, gone.error_code()), (StatusCode::NOT_FOUND, Some("StreamNotFound")));
}

#[tokio::test]
async fn put_record_with_the_seed_clients_body_stores_the_compact_json_of_data() {
    let producer = Producer::new(true).await;
    producer.create_streams().await;
    for table in Table::ALL {
        let stream = producer.stream(table);
        let partition_key = uuid::Uuid::new_v4().to_string();
        let data = seed_record(table);
        // Byte for byte what the seeds' Python client sends.
        let body = format!(r#"{{"StreamName": "{stream}", "Data": {data}, "PartitionKey": "{partition_key}"}}"#);
        let response = producer.call(Method::PUT, &format!("/prod/streams/{stream}/record"), Some(&body)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        let sequence_number = response.body["SequenceNumber"].as_str().unwrap();
        let shard_id = response.body["ShardId"].as_str().unwrap();

        let stored = read_stream(&stream).await;
        assert_eq!(stored.len(), 1, "{table}");
        let (stored_key, stored_data) = &stored[&(shard_id.to_string(), sequence_number.to_string())];
        assert_eq!(stored_key, &partition_key);
        let text = std::str::from_utf8(stored_data).unwrap();
        assert_eq!(text.len(), compact_len(data), "{table}: {text}");
        assert!(!text.contains("\": ") && !text.contains(", \""), "compact: {text}");
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), serde_json::from_str::<Value>(data).unwrap());
    }
    let user = read_stream(&producer.stream(Table::User)).await;
    let (_, user_data) = user.values().next().unwrap();
    // Stored as the client escaped it, and read back as the same name.
    assert!(std::str::from_utf8(user_data).unwrap().contains(r"Zo\u00eb"), "the client's escape is kept");
    assert_eq!(serde_json::from_slice::<Value>(user_data).unwrap()["first_name"], "Zoë");
}

#[tokio::test]
async fn put_records_lands_records_of_all_three_tables() {
    let producer = Producer::new(true).await;
    for table in Table::ALL {
        let response = producer
            .call(Method::POST, &format!("/streams/{}", producer.stream(table)), Some(r#"{"ShardCount": 2}"#))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    for table in Table::ALL {
        let stream = producer.stream(table);
        let record: Value = serde_json::from_str(seed_record(table)).unwrap();
        let keys = ["partition-1".to_string(), uuid::Uuid::new_v4().to_string(), table.name().to_string()];
        let records: Vec<Value> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let mut data = record.clone();
                data[if table == Table::Pin { "index" } else { "ind" }] = json!(i);
                json!({"data": data, "partition-key": key})
            })
            .collect();
        let body = json!({"records": records});
        let response = producer.call(Method::PUT, &format!("/streams/{stream}/records"), Some(&body.to_string())).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(response.body["FailedRecordCount"], 0);
        let acks = response.body["Records"].as_array().unwrap();
        assert_eq!(acks.len(), 3);

        let stored = read_stream(&stream).await;
        assert_eq!(stored.len(), 3, "{table}");
        for (i, ack) in acks.iter().enumerate() {
            let at =
                (ack["ShardId"].as_str().unwrap().to_string(), ack["SequenceNumber"].as_str().unwrap().to_string());
            let (key, data) = &stored[&at];
            assert_eq!(key, &keys[i]);
            assert_eq!(data, &serde_json::to_vec(&records[i]["data"]).unwrap(), "{table} record {i}");
        }
    }
}

#[tokio::test]
async fn stream_admin_off_refuses_create_and_delete() {
    let producer = Producer::new(false).await;
    let pin = producer.stream(Table::Pin);
    let refused = producer.call(Method::POST, &format!("/streams/{pin}"), Some(r#"{"ShardCount": 1}"#)).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::FORBIDDEN, Some("StreamAdminDisabled")));
    assert!(!stream_exists(&pin).await);

    kinesis_client().await.create_stream().stream_name(&pin).shard_count(1).send().await.unwrap();
    let refused = producer.call(Method::DELETE, &format!("/streams/{pin}"), None).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::FORBIDDEN, Some("StreamAdminDisabled")));
    assert!(stream_exists(&pin).await);

    // Reading and writing still work.
    let described = producer.call(Method::GET, &format!("/streams/{pin}"), None).await;
    assert_eq!(described.status, StatusCode::OK);
    let put = producer
        .call(Method::PUT, &format!("/streams/{pin}/record"), Some(r#"{"Data": {"index": 1}, "PartitionKey": "p"}"#))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
}

#[tokio::test]
async fn foreign_missing_and_invalid_streams_are_refused() {
    let producer = Producer::new(true).await;
    let foreign = Table::Geo.stream_name(&unique("other"));
    kinesis_client().await.create_stream().stream_name(&foreign).shard_count(1).send().await.unwrap();
    let record = r#"{"Data": {"ind": 1}, "PartitionKey": "p"}"#;
    let batch = r#"{"records": [{"data": {"ind": 1}, "partition-key": "p"}]}"#;

    for (method, suffix, body) in
        [(Method::GET, "", None), (Method::PUT, "/record", Some(record)), (Method::PUT, "/records", Some(batch))]
    {
        let response = producer.call(method.clone(), &format!("/streams/{foreign}{suffix}"), body).await;
        assert_eq!(
            (response.status, response.error_code()),
            (StatusCode::NOT_FOUND, Some("StreamNotFound")),
            "{method} {suffix}"
        );
        let response = producer.call(method.clone(), &format!("/streams/bad%20name{suffix}"), body).await;
        assert_eq!((response.status, response.error_code()), (StatusCode::BAD_REQUEST, Some("InvalidStreamName")));
        // One of ours by name, but not created: Kinesis' ResourceNotFoundException.
        let missing = producer.stream(Table::User);
        let response = producer.call(method.clone(), &format!("/streams/{missing}{suffix}"), body).await;
        assert_eq!(
            (response.status, response.error_code()),
            (StatusCode::NOT_FOUND, Some("StreamNotFound")),
            "{method} {suffix}"
        );
    }
    assert!(read_stream(&foreign).await.is_empty(), "nothing was written to another deployment's stream");
}

#[tokio::test]
async fn kinesis_store_lists_every_stream_across_pages() {
    // More streams than one ListStreams page holds.
    let prefix = unique("page");
    let names: Vec<String> = (0..12).map(|i| format!("{prefix}-{i:02}")).collect();
    let client = kinesis_client().await;
    for name in &names {
        client.create_stream().stream_name(name).shard_count(1).send().await.unwrap();
    }
    let store = KinesisStreamStore::new(client);
    let listed: BTreeSet<String> = store.list_streams().await.unwrap().into_iter().collect();
    for name in &names {
        assert!(listed.contains(name), "{name} missing from {} listed streams", listed.len());
    }
}

/// A producer whose Kinesis client goes through `proxy`.
async fn producer_through(proxy: &FaultProxy, retry_budget: Duration) -> Producer {
    let config =
        aws_sdk_kinesis::config::Builder::from(&sdk_config().await).endpoint_url(proxy.endpoint.clone()).build();
    Producer {
        config: ApiConfig::new(unique("t"), true, retry_budget).unwrap(),
        store: KinesisStreamStore::new(aws_sdk_kinesis::Client::from_conf(config)),
    }
}

fn geo_batch(n: usize) -> (Vec<Value>, String) {
    let records: Vec<Value> = (0..n)
        .map(|i| {
            json!({"data": {"ind": i, "country": "Chad", "latitude": 1.5, "longitude": 2.5,
                                 "timestamp": "2021-03-04 05:06:07"}, "partition-key": format!("post-{i}")})
        })
        .collect();
    let body = json!({ "records": records }).to_string();
    (records, body)
}

fn throttle_entries(probability: f64) -> FaultPlan {
    FaultPlan { probability, faults: vec![Fault::ThrottleEntries], matches: |_, _| true }
}

#[tokio::test]
async fn throttled_put_records_entries_are_retried_and_land_exactly_once() {
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 5).await;
    let producer = producer_through(&proxy, Duration::from_secs(10)).await;
    producer.create_streams().await;
    let stream = producer.stream(Table::Geo);
    // A hot shard: each entry of every PutRecords call is throttled with a 30% chance.
    proxy.set_plan(throttle_entries(0.3));
    let (records, body) = geo_batch(200);
    let response = producer.call(Method::PUT, &format!("/streams/{stream}/records"), Some(&body)).await;
    proxy.set_plan(FaultPlan::none());
    let throttled = proxy.stats.throttled_entries.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("producer throttling: {throttled} entries throttled and retried for 200 records");
    assert!(throttled >= 30, "the proxy must really throttle entries ({throttled})");
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["FailedRecordCount"], 0, "{}", response.body);

    let stored = read_stream(&stream).await;
    let mut landed: Vec<Vec<u8>> = stored.values().map(|(_, data)| data.clone()).collect();
    landed.sort();
    let mut expected: Vec<Vec<u8>> = records.iter().map(|r| serde_json::to_vec(&r["data"]).unwrap()).collect();
    expected.sort();
    assert_eq!(landed.len(), 200, "every record once, none doubled by the retries");
    assert_eq!(landed, expected);
    // Each acknowledgement points at the record it stands for.
    for (i, ack) in response.body["Records"].as_array().unwrap().iter().enumerate() {
        let at = (ack["ShardId"].as_str().unwrap().to_string(), ack["SequenceNumber"].as_str().unwrap().to_string());
        assert_eq!(stored[&at].1, serde_json::to_vec(&records[i]["data"]).unwrap(), "ack {i}");
    }
}

#[tokio::test]
async fn entries_still_throttled_when_the_retry_budget_runs_out_are_reported_per_record() {
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none(), 6).await;
    let producer = producer_through(&proxy, Duration::from_millis(300)).await;
    producer.create_streams().await;
    let stream = producer.stream(Table::Geo);
    proxy.set_plan(throttle_entries(1.0));
    let (_, body) = geo_batch(20);
    let response = producer.call(Method::PUT, &format!("/streams/{stream}/records"), Some(&body)).await;
    proxy.set_plan(FaultPlan::none());
    assert_eq!(response.body["FailedRecordCount"], 20, "{}", response.body);
    let results = response.body["Records"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    assert!(results.iter().all(|r| r["ErrorCode"] == "ProvisionedThroughputExceededException"), "{}", response.body);
    assert!(read_stream(&stream).await.is_empty(), "nothing was written");
}
