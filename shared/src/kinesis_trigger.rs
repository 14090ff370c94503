//! The stream consumer's trigger: one Kinesis event batch in, through a [`TableSink`], one
//! commit per Delta table out.
//!
//! Each Kinesis event record is decoded into a [`SourceRecord`] (its shard, sequence number and
//! origin) and the sink cleans and commits them. A poison record never fails the batch. Only an
//! infrastructure failure (the lake unreachable, commits still conflicting after bounded retries)
//! fails it, and then as a partial batch response from the first record, so Lambda retries the
//! batch; the exactly-once appends of [`crate::lake`] make that retry safe.

use std::time::Instant;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;

use crate::lake::{Position, SourceKey};
use crate::schema::Origin;
use crate::sink::{BatchSummary, SinkError, SourceRecord, TableSink, TableTotals};

/// The function name the stream consumer's metrics carry.
const FUNCTION: &str = "stream-consumer";

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("record {event_id:?} has no usable shard or sequence number: {detail}")]
    BadEvent { event_id: String, detail: String },
}

/// Handles a Kinesis event as the Lambda runtime delivers it, answering with the partial
/// batch response Lambda expects (`ReportBatchItemFailures`).
pub async fn handle_kinesis_event(sink: &TableSink, event: &KinesisEvent) -> KinesisEventResponse {
    handle_kinesis_batch(sink, event).await.response
}

/// What handling one Kinesis event did: the answer for Lambda, and the batch's summary when it
/// committed (for a caller that drives the consumer itself, such as `pinpipe demo`).
#[derive(Debug)]
pub struct HandledBatch {
    pub response: KinesisEventResponse,
    pub summary: Option<BatchSummary>,
}

/// [`handle_kinesis_event`], with the summary of the batch: the same log line, metrics and
/// answer.
pub async fn handle_kinesis_batch(sink: &TableSink, event: &KinesisEvent) -> HandledBatch {
    let started = Instant::now();
    let table = sink.table();
    let mut response = KinesisEventResponse::default();
    match consume_kinesis(sink, event).await {
        Ok(summary) => {
            let elapsed = started.elapsed();
            TableTotals::from(&summary).emit(FUNCTION, table.name(), elapsed);
            tracing::info!(
                table = %table,
                records_in = summary.records_in,
                rows_written = summary.rows.rows_written,
                already_committed = summary.rows.already_committed,
                quarantined = summary.quarantined.rows_written,
                rows_with_rescued_fields = summary.rows_with_rescued_fields,
                freshness_p50_ms = summary.record_ages.p50_ms(),
                freshness_max_ms = summary.record_ages.max_ms(),
                commit_version = summary.rows.version,
                quarantine_version = summary.quarantined.version,
                duration_ms = elapsed.as_millis() as u64,
                "{}",
                summary.outcome()
            );
            HandledBatch { response, summary: Some(summary) }
        }
        Err(error) => {
            // Nothing after the first record is known to be durable in both tables, so retry
            // from there; already-committed rows are skipped on the retry.
            let first = event.records.iter().map(|r| r.kinesis.sequence_number.as_str()).next();
            tracing::error!(table = %table, records_in = event.records.len(), %error, retry_from = ?first, "batch failed; asking Lambda to retry it");
            if let Some(first) = first {
                response.add_failure(first);
            }
            crate::metrics::emit_batch_failure(FUNCTION, table.name());
            HandledBatch { response, summary: None }
        }
    }
}

/// Cleans and commits one Kinesis batch through `sink`, exactly once per record.
pub async fn consume_kinesis(sink: &TableSink, event: &KinesisEvent) -> Result<BatchSummary, TriggerError> {
    let records = event.records.iter().map(source_record).collect::<Result<Vec<_>, _>>()?;
    Ok(sink.consume(records).await?)
}

/// Reads the shard, sequence number and origin of a Kinesis event record.
fn source_record(record: &KinesisEventRecord) -> Result<SourceRecord<'_>, TriggerError> {
    let event_id = record.event_id.clone().unwrap_or_default();
    let bad = |detail: &str| TriggerError::BadEvent { event_id: event_id.clone(), detail: detail.to_string() };
    // Lambda's eventID is "<shardId>:<sequenceNumber>"; the ARN ends in "stream/<name>".
    let shard = event_id
        .split_once(':')
        .map(|(shard, _)| shard)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("eventID is not <shard>:<sequence>"))?;
    let stream = record
        .event_source_arn
        .as_deref()
        .and_then(|arn| arn.rsplit_once(":stream/").map(|(_, name)| name))
        .ok_or_else(|| bad("eventSourceARN does not name a stream"))?;
    let sequence = &record.kinesis.sequence_number;
    let position =
        Position::parse(sequence).ok_or_else(|| bad("sequenceNumber is not a decimal of at most 128 digits"))?;
    Ok(SourceRecord {
        key: SourceKey::Sequence(format!("kinesis/{stream}/{shard}")),
        position,
        origin: Origin { source: format!("kinesis:{stream}/{shard}"), position: sequence.clone() },
        data: record.kinesis.data.as_slice(),
        unreadable: None,
        arrived_at: Some(record.kinesis.approximate_arrival_timestamp.0),
    })
}
