//! The streaming path end to end against moto: the seeds' request bodies through the producer
//! into Kinesis, read back with GetRecords, delivered to each table's consumer as Lambda would,
//! and read back from the Delta tables on S3.

use std::time::Duration;

use http::Method;
use pinpipe::Table;
use pinpipe::api::{ApiConfig, ApiRequest, handle};
use pinpipe::kinesis_trigger::handle_kinesis_event;
use pinpipe::lake::Lake;
use pinpipe::local::events::{KinesisDelivery, kinesis_event};
use pinpipe::sink::TableSink;
use pinpipe::stream::kinesis::KinesisStreamStore;
use pinpipe::table::QUARANTINE_TABLE;
use pinpipe_tests::{int_column, kinesis_client, new_bucket, read_table, str_column, unique};
use serde_json::{Value, json};

fn post(ind: i64) -> [(Table, Value); 3] {
    [
        (
            Table::Pin,
            json!({"index": ind, "unique_id": format!("uid-{ind}"), "title": "Room ideas", "description": "No description available",
                "poster_name": "Jane", "follower_count": if ind % 2 == 0 { "211k" } else { "1M" }, "tag_list": "Home Decor,Room Ideas",
                "is_image_or_video": "image", "image_src": "https://i.pinimg.com/x.jpg", "downloaded": 1,
                "save_location": "Local save in /data/home-decor", "category": "home-decor"}),
        ),
        (
            Table::Geo,
            json!({"ind": ind, "timestamp": "2020-08-28 03:52:47", "latitude": -89.9787, "longitude": -173.293, "country": "Albania"}),
        ),
        (
            Table::User,
            json!({"ind": ind, "first_name": "Abigail", "last_name": "Ali", "age": 20, "date_joined": "2015-10-24 11:23:51"}),
        ),
    ]
}

/// Every record of a stream, as (shard id, sequence number, partition key, data).
async fn read_stream(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, String, String, Vec<u8>)> {
    let shards = client.list_shards().stream_name(stream).send().await.unwrap();
    let mut records = Vec::new();
    for shard in shards.shards() {
        let iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let mut iterator = iterator.shard_iterator().map(str::to_string);
        while let Some(it) = iterator {
            let page = client.get_records().shard_iterator(it).send().await.unwrap();
            for r in page.records() {
                records.push((
                    shard.shard_id().to_string(),
                    r.sequence_number().to_string(),
                    r.partition_key().unwrap_or_default().to_string(),
                    r.data().as_ref().to_vec(),
                ));
            }
            iterator = if page.records().is_empty() { None } else { page.next_shard_iterator().map(str::to_string) };
        }
    }
    records
}

#[tokio::test]
async fn the_seeds_requests_flow_from_the_producer_through_kinesis_into_delta_on_s3() {
    let prefix = unique("e2e");
    let config = ApiConfig::new(&prefix, true, Duration::from_secs(2)).unwrap();
    let client = kinesis_client().await;
    let store = KinesisStreamStore::new(client.clone());
    for table in Table::ALL {
        let created = handle(
            &config,
            &store,
            ApiRequest::new(Method::POST, format!("/streams/{}", table.stream_name(&prefix)))
                .with_json(&json!({"ShardCount": 2})),
        )
        .await;
        assert!(created.status.is_success(), "{created:?}");
    }

    // Posts 1..=6 one record at a time with the seeds' body, posts 7..=10 through /records.
    for ind in 1..=6 {
        for (table, record) in post(ind) {
            let stream = table.stream_name(&prefix);
            let body = json!({"StreamName": stream, "Data": record, "PartitionKey": uuid::Uuid::new_v4().to_string()});
            let response = handle(
                &config,
                &store,
                ApiRequest::new(Method::PUT, format!("/streams/{stream}/record")).with_json(&body),
            )
            .await;
            assert_eq!(response.status, 200, "{response:?}");
            assert!(
                response.body["SequenceNumber"].is_string() && response.body["ShardId"].is_string(),
                "{response:?}"
            );
        }
    }
    for table in Table::ALL {
        let stream = table.stream_name(&prefix);
        let mut records: Vec<Value> = (7..=10)
            .map(|ind| json!({"data": post(ind).into_iter().find(|(t, _)| *t == table).unwrap().1, "partition-key": "partition-1"}))
            .collect();
        if table == Table::Geo {
            // One record the consumer cannot clean: it must end in quarantine, not block the shard.
            records.push(json!({"data": {"ind": 11, "timestamp": "not a time"}, "partition-key": "partition-1"}));
        }
        let response = handle(
            &config,
            &store,
            ApiRequest::new(Method::PUT, format!("/streams/{stream}/records")).with_json(&json!({"records": records})),
        )
        .await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.body["FailedRecordCount"], 0, "{response:?}");
    }

    let lake = Lake::new(format!("s3://{}/lake", new_bucket().await));
    for table in Table::ALL {
        let stream = table.stream_name(&prefix);
        let records = read_stream(&client, &stream).await;
        let expected = if table == Table::Geo { 11 } else { 10 };
        assert_eq!(records.len(), expected, "{stream} holds every record put");
        // Data is stored as the compact JSON text of the request's `Data` object.
        let first: Value = serde_json::from_slice(&records[0].3).unwrap();
        assert!(first.is_object());
        let sink = TableSink::new(table, lake.clone());
        for shard in ["shardId-000000000000", "shardId-000000000001"] {
            let on_shard: Vec<_> = records.iter().filter(|r| r.0 == shard).collect();
            let deliveries: Vec<KinesisDelivery> = on_shard
                .iter()
                .map(|r| KinesisDelivery { shard_id: &r.0, sequence_number: &r.1, partition_key: &r.2, data: &r.3 })
                .collect();
            let response =
                handle_kinesis_event(&sink, &kinesis_event("us-east-1", "123456789012", &stream, &deliveries)).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
        let rows = read_table(&lake, table.name()).await.expect("table written");
        let mut inds: Vec<i64> = int_column(&rows, "ind").into_iter().flatten().collect();
        inds.sort();
        assert_eq!(inds, (1..=10).collect::<Vec<_>>(), "{table}: every clean row once");
    }

    let pins = read_table(&lake, "pin").await.unwrap();
    let followers: Vec<(i64, i64)> = int_column(&pins, "ind")
        .into_iter()
        .zip(int_column(&pins, "follower_count"))
        .map(|(i, f)| (i.unwrap(), f.unwrap()))
        .collect();
    assert!(followers.iter().all(|(ind, f)| *f == if ind % 2 == 0 { 211_000 } else { 1_000_000 }), "{followers:?}");
    assert!(str_column(&pins, "description").iter().all(Option::is_none));
    let users = read_table(&lake, "user").await.unwrap();
    assert!(str_column(&users, "user_name").iter().all(|n| n.as_deref() == Some("Abigail Ali")));
    let quarantine = read_table(&lake, QUARANTINE_TABLE).await.expect("quarantine written");
    assert_eq!(str_column(&quarantine, "table"), [Some("geo".to_string())]);
    assert_eq!(
        str_column(&quarantine, "reason"),
        [Some(r#"timestamp: cannot parse "not a time" as a timestamp"#.to_string())]
    );
}
