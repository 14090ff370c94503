//! The stream consumer's trigger: one Kinesis event batch in, through a [`TableSink`], one
//! commit per Delta table out.
//!
//! The function hands over the invoke payload's bytes ([`handle_kinesis_payload`]), read in one
//! pass by [`crate::kinesis_event`]; a typed `KinesisEvent` (the local runner, the tests) is
//! read into the same [`KinesisBatch`], so both go through [`handle_batch`].
//!
//! Each Kinesis event record is decoded into a [`SourceRecord`] (its shard, sequence number and
//! origin) and the sink cleans and commits them. A poison record never fails the batch. Only an
//! infrastructure failure (the lake unreachable, commits still conflicting after bounded retries)
//! fails it, and then as a partial batch response from the first record, so Lambda retries the
//! batch; the exactly-once appends of [`crate::lake`] make that retry safe.

use std::time::Instant;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;

use crate::kinesis_event::{EventError, EventRecord, KinesisBatch, UnreadableData};
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

/// Handles the invoke payload as the Lambda runtime hands it over, its bytes unparsed: the
/// stream consumer's entry point. An `Err` means the payload is no Kinesis event at all; the
/// function answers it with an invocation error (Lambda retries the batch), as the runtime did
/// when it parsed the payload itself.
pub async fn handle_kinesis_payload(sink: &TableSink, payload: &[u8]) -> Result<KinesisEventResponse, EventError> {
    let batch = KinesisBatch::parse(payload)?;
    Ok(handle_batch(sink, &batch).await.response)
}

/// Handles a typed Kinesis event (the local runner, tests), answering with the partial batch
/// response Lambda expects (`ReportBatchItemFailures`).
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
    handle_batch(sink, &KinesisBatch::from_event(event)).await
}

/// One batch, whichever way it was read: the one path of every entry point above.
pub async fn handle_batch(sink: &TableSink, batch: &KinesisBatch<'_>) -> HandledBatch {
    let started = Instant::now();
    let table = sink.table();
    let mut response = KinesisEventResponse::default();
    match consume_batch(sink, batch).await {
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
                commit_attempts = summary.rows.attempts,
                carried_other_batches = summary.rows.carried,
                landed_by_another = summary.rows.landed_by_another,
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
            let first = batch.records.first().map(|r| r.sequence_number.as_ref());
            tracing::error!(table = %table, records_in = batch.len(), %error, retry_from = ?first, "batch failed; asking Lambda to retry it");
            if let Some(first) = first {
                response.add_failure(first);
            }
            crate::metrics::emit_batch_failure(FUNCTION, table.name());
            HandledBatch { response, summary: None }
        }
    }
}

/// Cleans and commits one typed Kinesis event through `sink`, exactly once per record.
pub async fn consume_kinesis(sink: &TableSink, event: &KinesisEvent) -> Result<BatchSummary, TriggerError> {
    consume_batch(sink, &KinesisBatch::from_event(event)).await
}

/// Cleans and commits one Kinesis batch through `sink`, exactly once per record. The records'
/// data is decoded into one buffer that lives as long as the batch.
pub async fn consume_batch(sink: &TableSink, batch: &KinesisBatch<'_>) -> Result<BatchSummary, TriggerError> {
    let mut buffer = Vec::new();
    let data = batch.decode_data(&mut buffer);
    let records = batch.records.iter().zip(data).map(|(r, d)| source_record(r, d)).collect::<Result<Vec<_>, _>>()?;
    Ok(sink.consume(records).await?)
}

/// Reads the shard, sequence number and origin of a Kinesis event record. Data that is not
/// base64 makes the record unreadable: it goes to quarantine as the text it was.
fn source_record<'a>(
    record: &EventRecord<'_>,
    data: Result<&'a [u8], UnreadableData<'a>>,
) -> Result<SourceRecord<'a>, TriggerError> {
    let event_id = record.event_id.as_deref().unwrap_or_default();
    let bad = |detail: &str| TriggerError::BadEvent { event_id: event_id.to_string(), detail: detail.to_string() };
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
    let sequence = record.sequence_number.as_ref();
    let position =
        Position::parse(sequence).ok_or_else(|| bad("sequenceNumber is not a decimal of at most 128 digits"))?;
    let (data, unreadable) = match data {
        Ok(data) => (data, None),
        Err(UnreadableData { text, reason }) => (text.as_bytes(), Some(reason)),
    };
    Ok(SourceRecord {
        key: SourceKey::Sequence(["kinesis/", stream, "/", shard].concat()),
        position,
        origin: Origin { source: ["kinesis:", stream, "/", shard].concat(), position: sequence.to_string() },
        data,
        unreadable,
        arrived_at: Some(record.arrived_at),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use crate::Table;
    use crate::lake::Lake;

    const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/streaming-t-user";

    fn record(sequence: u32, data: &str) -> String {
        format!(
            r#"{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"k","sequenceNumber":"{sequence}","data":"{data}",
                "approximateArrivalTimestamp":1700000000.5}},"eventSource":"aws:kinesis","eventID":"shardId-000000000000:{sequence}",
                "eventSourceARN":"{ARN}","awsRegion":"us-east-1"}}"#
        )
    }

    fn payload(records: &[String]) -> Vec<u8> {
        format!(r#"{{"Records":[{}]}}"#, records.join(",")).into_bytes()
    }

    fn user(ind: i64) -> String {
        STANDARD.encode(format!(r#"{{"ind": {ind}, "first_name": "Ann", "last_name": "Lee", "age": 33}}"#))
    }

    #[tokio::test]
    async fn the_payload_and_the_typed_event_commit_the_same_batch() {
        let good = [record(1, &user(1)), record(2, &STANDARD.encode("not json")), record(3, &user(3))];
        let bytes = payload(&good);
        let event: KinesisEvent = serde_json::from_slice(&bytes).unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from_bytes = TableSink::new(Table::User, Lake::new(a.path().to_str().unwrap()));
        let from_event = TableSink::new(Table::User, Lake::new(b.path().to_str().unwrap()));
        let batch = KinesisBatch::parse(&bytes).unwrap();
        let (x, y) =
            (consume_batch(&from_bytes, &batch).await.unwrap(), consume_kinesis(&from_event, &event).await.unwrap());
        assert_eq!((x.rows.rows_written, x.quarantined.rows_written), (2, 1));
        assert_eq!(
            (x.rows.rows_written, x.quarantined.rows_written),
            (y.rows.rows_written, y.quarantined.rows_written)
        );
        // Lambda's fraction of a second is read as one: half a second, not 5 ms.
        assert_eq!(batch.records[0].arrived_at.timestamp_subsec_millis(), 500);
        // A redelivery through the payload path is skipped as already committed.
        let again = handle_kinesis_payload(&from_bytes, &bytes).await.unwrap();
        assert!(again.batch_item_failures.is_empty());
        let redelivered = consume_batch(&from_bytes, &batch).await.unwrap();
        assert_eq!(redelivered.rows.already_committed + redelivered.quarantined.already_committed, 3);
    }

    #[tokio::test]
    async fn data_that_is_not_base64_is_quarantined_as_sent_and_the_rest_commits() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        let sink = TableSink::new(Table::User, lake.clone());
        let bytes = payload(&[record(1, &user(1)), record(2, "%%% not base64"), record(3, &user(3))]);
        let response = handle_kinesis_payload(&sink, &bytes).await.unwrap();
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert_eq!(lake.count_rows("user").await.unwrap(), Some(2));
        assert_eq!(lake.count_rows(crate::table::QUARANTINE_TABLE).await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_payload_that_is_no_kinesis_event_is_an_error_and_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        let sink = TableSink::new(Table::User, lake.clone());
        let error = handle_kinesis_payload(&sink, br#"{"Records": [{"kinesis": {}}]}"#).await.unwrap_err();
        assert!(error.to_string().contains("missing field"), "{error}");
        assert_eq!(lake.count_rows("user").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_record_without_a_shard_fails_the_batch_from_its_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TableSink::new(Table::User, Lake::new(dir.path().to_str().unwrap()));
        let mut bad = record(8, &user(8));
        bad = bad.replace("shardId-000000000000:8", "8");
        let response = handle_kinesis_payload(&sink, &payload(&[record(7, &user(7)), bad])).await.unwrap();
        let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        assert_eq!(failed, [Some("7".to_string())]);
    }
}
