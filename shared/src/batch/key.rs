//! The Kafka Connect S3 sink's key layout: which topic, table, partition and start offset an
//! object holds, and which objects an S3 notification names.

use aws_lambda_events::event::s3::S3Event;

use super::ObjectRef;
use crate::Table;
use crate::lake::SourceKey;

/// The key prefix under which the sink writes (its `topics.dir`, by default `topics`).
pub const TOPICS_DIR: &str = "topics";

/// What a Kafka Connect object key says about its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectObject {
    pub topic: String,
    pub table: Table,
    pub partition: u32,
    pub start_offset: i64,
    pub gzip: bool,
}

impl ConnectObject {
    /// The exactly-once source of this object's records (see the module docs).
    pub fn source_key(&self) -> SourceKey {
        SourceKey::Offset(format!("kafka/{}/{}/{}", self.topic, self.partition, self.start_offset))
    }
}

/// Why an object key is not ingested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Skip(pub String);

/// Reads a key of the layout `topics/<prefix>.<table>/partition=<p>/<prefix>.<table>+<p>+<offset>.json[.gz]`.
pub fn parse_key(prefix: &str, key: &str) -> Result<ConnectObject, Skip> {
    let skip = |why: &str| Err(Skip(format!("{key}: {why}")));
    let parts: Vec<&str> = key.split('/').collect();
    let [dir, topic, partition_dir, file] = parts[..] else {
        return skip("not of the form topics/<topic>/partition=<p>/<file>");
    };
    if dir != TOPICS_DIR {
        return skip("not under topics/");
    }
    let (gzip, stem) = if let Some(stem) = file.strip_suffix(".json.gz") {
        (true, stem)
    } else if let Some(stem) = file.strip_suffix(".json") {
        (false, stem)
    } else {
        return skip("not a .json or .json.gz object (only the sink's JsonFormat is read)");
    };
    let Some(partition) = partition_dir.strip_prefix("partition=").and_then(|p| p.parse::<u32>().ok()) else {
        return skip("the folder after the topic is not partition=<number>");
    };
    let fields: Vec<&str> = stem.rsplitn(3, '+').collect();
    let [offset, file_partition, file_topic] = fields[..] else {
        return skip("the file name is not <topic>+<partition>+<offset>");
    };
    if file_topic != topic || file_partition.parse::<u32>().ok() != Some(partition) {
        return skip("the file name does not match its topic and partition folders");
    }
    // Kafka offsets stay far below 10^18; the bound keeps start + ordinal inside an i64.
    let Some(start_offset) = offset.parse::<i64>().ok().filter(|o| (0..1_000_000_000_000_000_000).contains(o)) else {
        return skip("the start offset is not a number below 10^18");
    };
    let Some(table_name) = topic.strip_prefix(prefix).and_then(|t| t.strip_prefix('.')) else {
        return skip(&format!("topic {topic} is not one of this deployment's ({prefix}.pin|geo|user)"));
    };
    let Ok(table) = table_name.parse::<Table>() else {
        return skip(&format!("topic {topic} names no table of pinpipe (pin, geo, user)"));
    };
    Ok(ConnectObject { topic: topic.to_string(), table, partition, start_offset, gzip })
}

/// The objects an S3 notification names, keys URL-decoded, and the records it names that are
/// not object creations or lack a bucket or key, as skips.
pub fn objects_of(event: &S3Event) -> (Vec<ObjectRef>, Vec<Skip>) {
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    for record in &event.records {
        let name = record.event_name.as_deref().unwrap_or_default();
        let (Some(bucket), Some(key)) = (record.s3.bucket.name.as_deref(), record.s3.object.key.as_deref()) else {
            skipped.push(Skip(format!("a {name:?} record without bucket or key")));
            continue;
        };
        if !name.starts_with("ObjectCreated:") {
            skipped.push(Skip(format!("{key}: {name:?} is not an object creation")));
            continue;
        }
        objects.push(ObjectRef { bucket: bucket.to_string(), key: decode_key(key) });
    }
    (objects, skipped)
}

/// Decodes an S3 notification key: URL-encoded, with `+` for a space. The sink's keys hold
/// literal `+` (notifications send `%2B`); a hand-written event may carry them unencoded, and
/// since the layout has no spaces, a `+` is read as itself when a space would break the layout.
pub fn decode_key(key: &str) -> String {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let form = decode(&key.replace('+', " "));
    if form.contains(' ') && !key.contains("%20") { decode(key) } else { form }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kafka_connect_key_names_topic_table_partition_and_offset() {
        let key = "topics/0a1b.pin/partition=3/0a1b.pin+3+0000000042.json";
        let object = parse_key("0a1b", key).unwrap();
        assert_eq!(
            object,
            ConnectObject { topic: "0a1b.pin".into(), table: Table::Pin, partition: 3, start_offset: 42, gzip: false }
        );
        assert_eq!(object.source_key(), SourceKey::Offset("kafka/0a1b.pin/3/42".into()));
        let gz = parse_key("0a1b", "topics/0a1b.user/partition=0/0a1b.user+0+0000000007.json.gz").unwrap();
        assert_eq!((gz.table, gz.gzip, gz.start_offset), (Table::User, true, 7));
    }

    #[test]
    fn keys_outside_the_layout_are_skipped_with_the_reason() {
        let cases = [
            ("topics/0a1b.pin/partition=0/0a1b.pin+0+1.avro", "not a .json"),
            ("other/0a1b.pin/partition=0/0a1b.pin+0+1.json", "not under topics/"),
            ("topics/0a1b.pin/0a1b.pin+0+1.json", "not of the form"),
            ("topics/0a1b.pin/part=0/0a1b.pin+0+1.json", "partition=<number>"),
            ("topics/0a1b.pin/partition=0/0a1b.pin+1+1.json", "does not match"),
            ("topics/0a1b.pin/partition=0/0a1b.geo+0+1.json", "does not match"),
            ("topics/0a1b.pin/partition=0/0a1b.pin+0+x.json", "start offset"),
            ("topics/0a1b.pin/partition=0/0a1b.pin+0+-1.json", "start offset"),
            ("topics/other.pin/partition=0/other.pin+0+1.json", "not one of this deployment's"),
            ("topics/0a1b.pins/partition=0/0a1b.pins+0+1.json", "names no table"),
            ("topics/0a1b.pin/partition=0/", "not a .json"),
        ];
        for (key, why) in cases {
            let skip = parse_key("0a1b", key).expect_err(key);
            assert!(skip.0.contains(why) && skip.0.starts_with(key), "{key}: {skip}");
        }
    }

    #[test]
    fn notification_keys_are_url_decoded() {
        assert_eq!(
            decode_key("topics/p.pin/partition=0/p.pin%2B0%2B0000000001.json"),
            "topics/p.pin/partition=0/p.pin+0+0000000001.json"
        );
        // Unencoded `+` in a hand-written event is taken as itself.
        assert_eq!(
            decode_key("topics/p.pin/partition=0/p.pin+0+0000000001.json"),
            "topics/p.pin/partition=0/p.pin+0+0000000001.json"
        );
        assert_eq!(decode_key("a+b%20c"), "a b c");
    }

    #[test]
    fn only_object_creations_of_a_notification_are_read() {
        let event: S3Event = serde_json::from_value(serde_json::json!({"Records": [
            {"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z",
             "userIdentity": {"principalId": "AWS:X"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
             "s3": {"bucket": {"name": "raw"}, "object": {"key": "topics/p.pin/partition=0/p.pin%2B0%2B0000000001.json"}}},
            {"eventName": "ObjectRemoved:Delete", "eventTime": "2026-01-01T00:00:00Z",
             "userIdentity": {"principalId": "AWS:X"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
             "s3": {"bucket": {"name": "raw"}, "object": {"key": "topics/p.pin/partition=0/p.pin%2B0%2B0000000002.json"}}}
        ]}))
        .unwrap();
        let (objects, skipped) = objects_of(&event);
        assert_eq!(
            objects,
            vec![ObjectRef { bucket: "raw".into(), key: "topics/p.pin/partition=0/p.pin+0+0000000001.json".into() }]
        );
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].0.contains("ObjectRemoved:Delete"), "{}", skipped[0]);
    }
}
