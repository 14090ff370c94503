//! The AWS adapter of the stream port: [`StreamStore`] over Amazon Kinesis Data Streams.
//!
//! It stays thin: one SDK call per port call (plus pagination), errors mapped onto
//! [`StreamError`]. Retrying failed records is the caller's job (`api::put_records_with_retry`).

use std::fmt::Debug;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamMode, StreamModeDetails};

use crate::stream::{PutAck, PutEntry, PutOutcome, ShardInfo, StreamError, StreamInfo, StreamStore};

/// Kinesis Data Streams through the AWS SDK.
#[derive(Debug, Clone)]
pub struct KinesisStreamStore {
    client: Client,
}

impl KinesisStreamStore {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// A store whose client is built from shared SDK configuration (region, credentials, endpoint).
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(config))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Maps an SDK error onto the port's errors by the service's error code, so codes that an
/// operation does not model (moto, newer service versions) are still recognised.
fn stream_error<E, R>(err: SdkError<E, R>, stream: &str) -> StreamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    let service_error = err.as_service_error();
    let code = service_error.and_then(ProvideErrorMetadata::code).map(str::to_string);
    let message = service_error
        .and_then(ProvideErrorMetadata::message)
        .map(str::to_string)
        .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
    match code.as_deref() {
        Some("ResourceNotFoundException") => StreamError::NotFound(stream.to_string()),
        Some("ResourceInUseException") => StreamError::InUse(stream.to_string()),
        Some(
            "LimitExceededException"
            | "ProvisionedThroughputExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException",
        ) => StreamError::Throttled(message),
        Some("InvalidArgumentException" | "ValidationException") => StreamError::Invalid(message),
        _ => StreamError::Service(DisplayErrorContext(&err).to_string()),
    }
}

fn build_error(err: aws_sdk_kinesis::error::BuildError) -> StreamError {
    StreamError::Invalid(err.to_string())
}

#[async_trait]
impl StreamStore for KinesisStreamStore {
    async fn list_streams(&self) -> Result<Vec<String>, StreamError> {
        let mut names: Vec<String> = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let mut call = self.client.list_streams();
            // Kinesis pages with NextToken; older implementations only with the last name seen.
            call = match (&next_token, names.last()) {
                (Some(token), _) => call.next_token(token),
                (None, Some(last)) => call.exclusive_start_stream_name(last),
                (None, None) => call,
            };
            let page = call.send().await.map_err(|e| stream_error(e, ""))?;
            let page_len = page.stream_names().len();
            names.extend(page.stream_names().iter().cloned());
            next_token = page.next_token().map(str::to_string);
            if !page.has_more_streams() || page_len == 0 {
                return Ok(names);
            }
        }
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo, StreamError> {
        let mut shards: Vec<ShardInfo> = Vec::new();
        loop {
            let mut call = self.client.describe_stream().stream_name(name);
            if let Some(last) = shards.last() {
                call = call.exclusive_start_shard_id(&last.shard_id);
            }
            let output = call.send().await.map_err(|e| stream_error(e, name))?;
            let Some(description) = output.stream_description() else {
                return Err(StreamError::Service(format!("DescribeStream of {name} returned no description")));
            };
            let page_len = description.shards().len();
            shards.extend(description.shards().iter().map(|shard| ShardInfo {
                shard_id: shard.shard_id().to_string(),
                starting_hash_key:
                    shard.hash_key_range().map(|r| r.starting_hash_key().to_string()).unwrap_or_default(),
                ending_hash_key: shard.hash_key_range().map(|r| r.ending_hash_key().to_string()).unwrap_or_default(),
                starting_sequence_number:
                    shard.sequence_number_range().map(|r| r.starting_sequence_number().to_string()).unwrap_or_default(),
                ending_sequence_number:
                    shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).map(str::to_string),
            }));
            if !description.has_more_shards() || page_len == 0 {
                return Ok(StreamInfo {
                    stream_name: description.stream_name().to_string(),
                    stream_arn: description.stream_arn().to_string(),
                    stream_status: description.stream_status().as_str().to_string(),
                    retention_period_hours: description.retention_period_hours(),
                    shards,
                });
            }
        }
    }

    async fn create_stream(&self, name: &str, shard_count: Option<i32>) -> Result<(), StreamError> {
        let call = self.client.create_stream().stream_name(name);
        let call = match shard_count {
            Some(shards) => call.shard_count(shards).stream_mode_details(
                StreamModeDetails::builder().stream_mode(StreamMode::Provisioned).build().map_err(build_error)?,
            ),
            None => call.stream_mode_details(
                StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().map_err(build_error)?,
            ),
        };
        call.send().await.map_err(|e| stream_error(e, name))?;
        Ok(())
    }

    async fn delete_stream(&self, name: &str) -> Result<(), StreamError> {
        self.client.delete_stream().stream_name(name).send().await.map_err(|e| stream_error(e, name))?;
        Ok(())
    }

    async fn put_record(&self, stream: &str, entry: PutEntry) -> Result<PutAck, StreamError> {
        let output = self
            .client
            .put_record()
            .stream_name(stream)
            .data(Blob::new(entry.data))
            .partition_key(entry.partition_key)
            .send()
            .await
            .map_err(|e| stream_error(e, stream))?;
        Ok(PutAck { sequence_number: output.sequence_number().to_string(), shard_id: output.shard_id().to_string() })
    }

    async fn put_records(&self, stream: &str, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
        let sent = entries.len();
        let records = entries
            .into_iter()
            .map(|entry| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(entry.data))
                    .partition_key(entry.partition_key)
                    .build()
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .put_records()
            .stream_name(stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| stream_error(e, stream))?;
        if output.records().len() != sent {
            return Err(StreamError::Service(format!(
                "PutRecords on {stream} answered {} results for {sent} records",
                output.records().len()
            )));
        }
        Ok(output
            .records()
            .iter()
            .map(|result| match (result.sequence_number(), result.shard_id(), result.error_code()) {
                (Some(sequence_number), Some(shard_id), None) => PutOutcome::Ok(PutAck {
                    sequence_number: sequence_number.to_string(),
                    shard_id: shard_id.to_string(),
                }),
                (_, _, code) => PutOutcome::Failed {
                    error_code: code.unwrap_or("InternalFailure").to_string(),
                    error_message: result.error_message().unwrap_or("no outcome reported for this record").to_string(),
                },
            })
            .collect())
    }
}
