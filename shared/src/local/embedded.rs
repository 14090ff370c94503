//! An embedded stream service behind the same port as Kinesis: streams with shards in memory,
//! for running the whole pipeline in one process (`pinpipe demo`). Partition keys pick shards by
//! hash, sequence numbers grow per stream and are Kinesis-shaped (56 digits).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::local::events::sequence_number;
use crate::stream::{PutAck, PutEntry, PutOutcome, ShardInfo, StreamError, StreamInfo, StreamStore};

/// A record as stored in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// When it was put: what Kinesis gives consumers as `approximateArrivalTimestamp`.
    pub arrived_at: chrono::DateTime<chrono::Utc>,
}

struct EmbeddedStream {
    shards: Vec<Vec<StoredRecord>>,
    next_sequence: u64,
}

/// Streams in memory. Shard ids carry `shard_tag`, so that two runs that must not be taken for
/// redeliveries of each other (e.g. another emulator seed) use distinct shards.
pub struct EmbeddedStreams {
    streams: Mutex<BTreeMap<String, EmbeddedStream>>,
    default_shards: usize,
    shard_tag: u64,
}

impl EmbeddedStreams {
    pub fn new(default_shards: usize, shard_tag: u64) -> Self {
        Self { streams: Mutex::new(BTreeMap::new()), default_shards: default_shards.max(1), shard_tag }
    }

    pub fn shard_id(&self, index: usize) -> String {
        format!("shardId-{:012}", (self.shard_tag % 1_000_000_000) * 1_000 + index as u64)
    }

    /// How many shards `stream` has.
    pub fn shard_count(&self, stream: &str) -> usize {
        self.streams.lock().unwrap().get(stream).map_or(0, |s| s.shards.len())
    }

    /// Up to `max` records of a shard from position `from` (an index into the shard).
    pub fn read(&self, stream: &str, shard: usize, from: usize, max: usize) -> Vec<StoredRecord> {
        let streams = self.streams.lock().unwrap();
        let Some(records) = streams.get(stream).and_then(|s| s.shards.get(shard)) else { return Vec::new() };
        records.iter().skip(from).take(max).cloned().collect()
    }

    fn put(&self, stream: &str, entry: PutEntry) -> Result<PutAck, StreamError> {
        let mut streams = self.streams.lock().unwrap();
        let s = streams.get_mut(stream).ok_or_else(|| StreamError::NotFound(stream.to_string()))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        entry.partition_key.hash(&mut hasher);
        let shard = (hasher.finish() % s.shards.len() as u64) as usize;
        s.next_sequence += 1;
        let sequence_number = sequence_number(s.next_sequence);
        s.shards[shard].push(StoredRecord {
            sequence_number: sequence_number.clone(),
            partition_key: entry.partition_key,
            data: entry.data,
            arrived_at: chrono::Utc::now(),
        });
        Ok(PutAck { sequence_number, shard_id: self.shard_id(shard) })
    }
}

#[async_trait]
impl StreamStore for EmbeddedStreams {
    async fn list_streams(&self) -> Result<Vec<String>, StreamError> {
        Ok(self.streams.lock().unwrap().keys().cloned().collect())
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo, StreamError> {
        let count = self.shard_count(name);
        if count == 0 {
            return Err(StreamError::NotFound(name.to_string()));
        }
        let shards = (0..count)
            .map(|i| ShardInfo {
                shard_id: self.shard_id(i),
                starting_hash_key: "0".into(),
                ending_hash_key: "340282366920938463463374607431768211455".into(),
                starting_sequence_number: sequence_number(0),
                ending_sequence_number: None,
            })
            .collect();
        Ok(StreamInfo {
            stream_name: name.to_string(),
            stream_arn: format!("arn:aws:kinesis:local:000000000000:stream/{name}"),
            stream_status: "ACTIVE".into(),
            retention_period_hours: 24,
            shards,
        })
    }

    async fn create_stream(&self, name: &str, shard_count: Option<i32>) -> Result<(), StreamError> {
        let mut streams = self.streams.lock().unwrap();
        if streams.contains_key(name) {
            return Err(StreamError::InUse(name.to_string()));
        }
        let shards = shard_count.map_or(self.default_shards, |n| n.max(1) as usize);
        streams.insert(name.to_string(), EmbeddedStream { shards: vec![Vec::new(); shards], next_sequence: 0 });
        Ok(())
    }

    async fn delete_stream(&self, name: &str) -> Result<(), StreamError> {
        self.streams.lock().unwrap().remove(name).map(|_| ()).ok_or_else(|| StreamError::NotFound(name.to_string()))
    }

    async fn put_record(&self, stream: &str, entry: PutEntry) -> Result<PutAck, StreamError> {
        self.put(stream, entry)
    }

    async fn put_records(&self, stream: &str, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
        entries.into_iter().map(|e| self.put(stream, e).map(PutOutcome::Ok)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_spread_over_shards_in_order_with_growing_sequence_numbers() {
        let streams = EmbeddedStreams::new(4, 7);
        streams.create_stream("s", None).await.unwrap();
        for i in 0..100 {
            let entry = PutEntry { data: vec![i as u8], partition_key: format!("key-{i}") };
            streams.put_record("s", entry).await.unwrap();
        }
        let per_shard: Vec<Vec<StoredRecord>> = (0..4).map(|s| streams.read("s", s, 0, 1_000)).collect();
        assert_eq!(per_shard.iter().map(Vec::len).sum::<usize>(), 100);
        assert!(per_shard.iter().all(|records| !records.is_empty()), "every shard gets records");
        for records in &per_shard {
            assert!(records.windows(2).all(|w| w[0].sequence_number < w[1].sequence_number));
        }
        assert_eq!(streams.shard_id(2), "shardId-000000007002");
        assert!(matches!(
            streams.put_record("nope", PutEntry { data: vec![], partition_key: "k".into() }).await,
            Err(StreamError::NotFound(_))
        ));
    }
}
