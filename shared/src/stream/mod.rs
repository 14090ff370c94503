//! The stream port: what the producer needs of a stream service, and its adapters —
//! [`kinesis`] against AWS (the producer's), and the in-memory
//! `crate::local::embedded::EmbeddedStreams` for local runs (the demo's and the tests').

use async_trait::async_trait;
use serde::Serialize;

#[cfg(feature = "kinesis")]
pub mod kinesis;

/// One record to put: its payload bytes and the partition key that picks the shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutEntry {
    pub data: Vec<u8>,
    pub partition_key: String,
}

/// Where a record landed, as Kinesis reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutAck {
    pub sequence_number: String,
    pub shard_id: String,
}

/// The per-record outcome of a batched put, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Ok(PutAck),
    Failed { error_code: String, error_message: String },
}

/// A shard as `DescribeStream` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardInfo {
    pub shard_id: String,
    pub starting_hash_key: String,
    pub ending_hash_key: String,
    pub starting_sequence_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ending_sequence_number: Option<String>,
}

/// A stream as `DescribeStream` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamInfo {
    pub stream_name: String,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    pub stream_status: String,
    pub retention_period_hours: i32,
    pub shards: Vec<ShardInfo>,
}

/// Why a stream call failed, in terms the API can map onto HTTP statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("stream {0} not found")]
    NotFound(String),
    #[error("stream {0} already exists or is busy")]
    InUse(String),
    #[error("request was throttled: {0}")]
    Throttled(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("stream service failed: {0}")]
    Service(String),
}

#[async_trait]
pub trait StreamStore: Send + Sync {
    async fn list_streams(&self) -> Result<Vec<String>, StreamError>;
    async fn describe_stream(&self, name: &str) -> Result<StreamInfo, StreamError>;
    /// Creates a stream; `None` shards means on-demand capacity.
    async fn create_stream(&self, name: &str, shard_count: Option<i32>) -> Result<(), StreamError>;
    async fn delete_stream(&self, name: &str) -> Result<(), StreamError>;
    async fn put_record(&self, stream: &str, entry: PutEntry) -> Result<PutAck, StreamError>;
    /// Puts up to 500 entries once. Per-entry failures come back as [`PutOutcome::Failed`];
    /// an `Err` means nothing was written. Retrying failed entries is the caller's job
    /// (see `api::put_records_with_retry`), so adapters stay thin.
    async fn put_records(&self, stream: &str, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError>;
}
