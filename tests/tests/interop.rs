//! Writes a small lake that `tests/python/read_tables.py` reads back with other engines (the
//! Python `deltalake` package and polars), to prove pinpipe's tables are plain Delta tables.
//! `scripts/test.sh` points `PINPIPE_INTEROP_DIR` at a fresh directory; without it the lake
//! goes to a temporary directory and only the Rust side is checked.

use pinpipe::Table;
use pinpipe::kinesis_trigger::consume_kinesis;
use pinpipe::lake::Lake;
use pinpipe::local::events::{KinesisDelivery, kinesis_event, sequence_number};
use pinpipe::sink::TableSink;
use pinpipe_tests::read_table;
use serde_json::json;

fn raw(table: Table, ind: i64) -> Vec<u8> {
    match table {
        Table::Pin => json!({"index": ind, "unique_id": format!("u{ind}"), "title": "Title", "description": "No description available",
            "poster_name": "Poster", "follower_count": format!("{ind}k"), "tag_list": "a,b", "is_image_or_video": "image",
            "image_src": "https://example.com/i.jpg", "downloaded": 1, "save_location": "Local save in /data/art", "category": "art"}),
        Table::Geo => json!({"ind": ind, "timestamp": "2020-08-28 03:52:47", "latitude": 10.5, "longitude": -20.25, "country": "Albania"}),
        Table::User => json!({"ind": ind, "first_name": "Abigail", "last_name": "Ali", "age": 20 + ind, "date_joined": "2015-10-24T11:23:51"}),
    }
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn writes_a_lake_that_other_engines_can_read() {
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var("PINPIPE_INTEROP_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| temp.path().to_path_buf());
    let lake = Lake::new(dir.join("lake").to_str().unwrap());
    let mut expected = serde_json::Map::new();
    for table in Table::ALL {
        let sink = TableSink::new(table, lake.clone());
        // Two batches, so the tables have two data commits, plus one poison record each.
        for (first, inds) in [(1u64, 1..=10i64), (11, 11..=25)] {
            let mut records: Vec<Vec<u8>> = inds.map(|i| raw(table, i)).collect();
            records.push(b"[\"poison\"]".to_vec());
            let seqs: Vec<String> = (0..records.len() as u64).map(|i| sequence_number(first * 100 + i)).collect();
            let deliveries: Vec<KinesisDelivery> = records
                .iter()
                .zip(&seqs)
                .map(|(data, seq)| KinesisDelivery {
                    shard_id: "shardId-000000000000",
                    sequence_number: seq,
                    partition_key: "p",
                    data,
                })
                .collect();
            let stream = table.stream_name("interop");
            consume_kinesis(&sink, &kinesis_event("us-east-1", "123456789012", &stream, &deliveries)).await.unwrap();
        }
        assert_eq!(read_table(&lake, table.name()).await.unwrap().num_rows(), 25);
        expected.insert(table.name().to_string(), json!(25));
    }
    assert_eq!(read_table(&lake, "quarantine").await.unwrap().num_rows(), 6);
    expected.insert("quarantine".into(), json!(6));
    std::fs::write(dir.join("expected.json"), serde_json::Value::Object(expected).to_string()).unwrap();
}
