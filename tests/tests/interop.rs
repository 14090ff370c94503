//! Writes a small lake that `tests/python/read_tables.py` reads back with other engines (the
//! Python `deltalake` package and polars), to prove pinpipe's tables are plain Delta tables.
//! `scripts/test.sh` points `PINPIPE_INTEROP_DIR` at a fresh directory; without it the lake
//! goes to a temporary directory and only the Rust side is checked.
//!
//! Besides `lake/`, it writes a `pin` table as pinpipe created it before the `_rescued` column
//! (`evolution/before/pin`) and the same table after the sink added the column and appended to
//! it (`evolution/after/pin`), so both are read by the other engines too.

use pinpipe::Table;
use pinpipe::clean::clean_bytes;
use pinpipe::kinesis_trigger::consume_kinesis;
use pinpipe::lake::{Lake, Marked, Position, SourceKey, TableAppender};
use pinpipe::local::events::{KinesisDelivery, kinesis_event, sequence_number};
use pinpipe::schema::{Origin, table_batch, table_schema};
use pinpipe::sink::TableSink;
use pinpipe_tests::read_table;
use serde_json::json;

/// A raw record; pin 7 also carries fields no rule reads, which land in `_rescued`.
fn raw(table: Table, ind: i64) -> Vec<u8> {
    if table == Table::Pin && ind == 7 {
        return RESCUED_PIN.as_bytes().to_vec();
    }
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

/// Pin 7 as a client sent it, with two fields no rule reads, and what `_rescued` holds of it.
const RESCUED_PIN: &str = r#"{"index": 7, "unique_id": "u7", "title": "Title", "description": "No description available",
    "poster_name": "Poster", "follower_count": "7k", "tag_list": "a,b", "is_image_or_video": "image",
    "image_src": "https://example.com/i.jpg", "downloaded": 1, "save_location": "Local save in /data/art", "category": "art",
    "new_field": "important", "extra": {"a": [1, 2.50]}}"#;
const RESCUED_TEXT: &str = r#"{"new_field":"important","extra":{"a": [1, 2.50]}}"#;

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
    let pins = read_table(&lake, "pin").await.unwrap();
    let rescued: Vec<_> = pinpipe_tests::str_column(&pins, "_rescued").into_iter().flatten().collect();
    assert_eq!(rescued, [RESCUED_TEXT]);

    write_a_table_before_and_after_it_gains_rescued_fields(&dir.join("evolution")).await;
    std::fs::write(dir.join("rescued.json"), json!({"pin_7": RESCUED_TEXT}).to_string()).unwrap();
}

/// `before/pin`: pins 1-10 in a table with the columns pinpipe wrote before `_rescued`.
/// `after/pin`: a copy of it, to which the sink then appended pins 11-25 (pin 7's fields again,
/// as pin 17), adding the column on the way.
async fn write_a_table_before_and_after_it_gains_rescued_fields(dir: &std::path::Path) {
    let before = Lake::new(dir.join("before").to_str().unwrap());
    let schema = table_schema(Table::Pin);
    let old_columns: Vec<usize> = (0..schema.fields().len() - 1).collect();
    let old_schema = std::sync::Arc::new(schema.project(&old_columns).unwrap());
    let rows: Vec<_> = (1..=10)
        .map(|ind| Marked {
            key: SourceKey::Sequence("kinesis/streaming-interop-pin/shardId-000000000000".into()),
            position: Position::parse(&sequence_number(ind as u64)).unwrap(),
            item: (
                clean_bytes(Table::Pin, &raw(Table::Pin, ind)).unwrap().into_owned(),
                Origin { source: "old".into(), position: ind.to_string() },
            ),
        })
        .collect();
    let table = before.open_or_create("pin", &old_schema).await.unwrap();
    TableAppender::new(table)
        .unwrap()
        .append(&rows, Default::default(), |fresh| Ok(table_batch(Table::Pin, fresh, 0)?.project(&old_columns)?))
        .await
        .unwrap();

    copy_dir(&dir.join("before"), &dir.join("after"));
    let after = Lake::new(dir.join("after").to_str().unwrap());
    let sink = TableSink::new(Table::Pin, after.clone());
    let records: Vec<Vec<u8>> = (11..=25)
        .map(|ind| {
            if ind == 17 {
                RESCUED_PIN.replace(r#""index": 7"#, r#""index": 17"#).into_bytes()
            } else {
                raw(Table::Pin, ind)
            }
        })
        .collect();
    let seqs: Vec<String> = (11..=25).map(sequence_number).collect();
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
    let event = kinesis_event("us-east-1", "123456789012", &Table::Pin.stream_name("interop"), &deliveries);
    let summary = consume_kinesis(&sink, &event).await.unwrap();
    assert_eq!((summary.rows.rows_written, summary.rows_with_rescued_fields), (15, 1));
    assert_eq!(read_table(&after, "pin").await.unwrap().num_rows(), 25);
    assert!(read_table(&before, "pin").await.unwrap().column_by_name("_rescued").is_none());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
