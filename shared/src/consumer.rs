//! The stream consumer: one Kinesis event batch in, one commit per Delta table out.
//!
//! Every record is decoded and cleaned; clean rows go to the table, rejected records to the
//! quarantine table with their raw bytes, origin and reason. A poison record never fails the
//! batch. Only an infrastructure failure (the lake unreachable, commits still conflicting after
//! bounded retries) fails it, and then as a partial batch response from the first record, so
//! Lambda retries the batch; the exactly-once appends of [`crate::lake`] make that retry safe.

use std::time::Instant;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;
use deltalake::DeltaTable;
use tokio::sync::Mutex;

use crate::Table;
use crate::clean::{CleanRecord, Rejection, clean_bytes};
use crate::lake::{AppendOutcome, Lake, LakeError, Marked, Position, SourceKey, append_exactly_once};
use crate::schema::{Origin, Quarantined, quarantine_batch, quarantine_schema, table_batch, table_schema};

/// The name of the table that holds every rejected record, of all three tables.
pub const QUARANTINE_TABLE: &str = "quarantine";

/// What one batch did, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub records_in: usize,
    pub rows: AppendOutcome,
    pub quarantined: AppendOutcome,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    // Boxed: a LakeError is large, and every record's Result would pay for it.
    #[error(transparent)]
    Lake(Box<LakeError>),
    #[error("record {event_id:?} has no usable shard or sequence number: {detail}")]
    BadEvent { event_id: String, detail: String },
}

impl From<LakeError> for ConsumeError {
    fn from(error: LakeError) -> Self {
        ConsumeError::Lake(Box::new(error))
    }
}

/// Sinks batches of one table into a lake, keeping the Delta table handles warm across
/// invocations so a warm Lambda only reads the log entries that are new since its last batch.
pub struct TableSink {
    table: Table,
    lake: Lake,
    data: Mutex<Option<DeltaTable>>,
    quarantine: Mutex<Option<DeltaTable>>,
}

/// One raw record and where it came from, whatever the source: a Kinesis record or a line of
/// a Kafka Connect object. `key` and `position` drive exactly-once appends; `origin` is lineage.
#[derive(Debug, Clone)]
pub struct SourceRecord<'a> {
    pub key: SourceKey,
    pub position: Position,
    pub origin: Origin,
    pub data: &'a [u8],
    /// Set when the record is known to be unusable before cleaning (cut short, an unreadable
    /// object): it goes to quarantine with this reason.
    pub unreadable: Option<String>,
}

impl TableSink {
    pub fn new(table: Table, lake: Lake) -> Self {
        Self { table, lake, data: Mutex::new(None), quarantine: Mutex::new(None) }
    }

    pub fn table(&self) -> Table {
        self.table
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Handles a Kinesis event as the Lambda runtime delivers it, answering with the partial
    /// batch response Lambda expects (`ReportBatchItemFailures`).
    pub async fn handle_kinesis_event(&self, event: &KinesisEvent) -> KinesisEventResponse {
        let started = Instant::now();
        let mut response = KinesisEventResponse::default();
        match self.consume_kinesis(event).await {
            Ok(summary) => {
                crate::metrics::emit(
                    "stream-consumer",
                    self.table.name(),
                    &[
                        ("RecordsIn", "Count", summary.records_in as f64),
                        ("RowsWritten", "Count", summary.rows.rows_written as f64),
                        (
                            "DuplicatesSkipped",
                            "Count",
                            (summary.rows.rows_skipped + summary.quarantined.rows_skipped) as f64,
                        ),
                        ("Quarantined", "Count", summary.quarantined.rows_written as f64),
                        ("BatchDuration", "Milliseconds", started.elapsed().as_secs_f64() * 1e3),
                    ],
                );
                tracing::info!(
                    table = %self.table,
                    records_in = summary.records_in,
                    rows_written = summary.rows.rows_written,
                    rows_skipped = summary.rows.rows_skipped,
                    quarantined = summary.quarantined.rows_written,
                    commit_version = summary.rows.version,
                    quarantine_version = summary.quarantined.version,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "batch committed"
                )
            }
            Err(error) => {
                // Nothing after the first record is known to be durable in both tables, so retry
                // from there; already-committed rows are skipped on the retry.
                let first = event.records.iter().map(|r| r.kinesis.sequence_number.as_str()).next();
                tracing::error!(table = %self.table, records_in = event.records.len(), %error, retry_from = ?first, "batch failed; asking Lambda to retry it");
                if let Some(first) = first {
                    response.add_failure(first);
                }
                crate::metrics::emit("stream-consumer", self.table.name(), &[("BatchFailures", "Count", 1.0)]);
            }
        }
        response
    }

    /// Cleans and commits one Kinesis batch, exactly once per record.
    pub async fn consume_kinesis(&self, event: &KinesisEvent) -> Result<BatchSummary, ConsumeError> {
        let incoming = event.records.iter().map(incoming).collect::<Result<Vec<_>, _>>()?;
        self.consume(incoming).await
    }

    /// Cleans `incoming` and commits it: clean rows to the table, rejects to quarantine, one
    /// commit each, skipping whatever an earlier delivery already committed.
    pub async fn consume(&self, incoming: Vec<SourceRecord<'_>>) -> Result<BatchSummary, ConsumeError> {
        let records_in = incoming.len();
        let mut rows: Vec<Marked<(CleanRecord, Origin)>> = Vec::with_capacity(records_in);
        let mut rejected: Vec<Marked<Quarantined>> = Vec::new();
        for record in incoming {
            let cleaned = match record.unreadable {
                Some(reason) => Err(Rejection(reason)),
                None => clean_bytes(self.table, record.data),
            };
            match cleaned {
                Ok(clean) => {
                    rows.push(Marked { key: record.key, position: record.position, item: (clean, record.origin) })
                }
                Err(rejection) => rejected.push(Marked {
                    key: record.key,
                    position: record.position,
                    item: Quarantined {
                        table: self.table,
                        origin: record.origin,
                        raw: record.data.to_vec(),
                        reason: rejection.0,
                    },
                }),
            }
        }
        let now = chrono::Utc::now().timestamp_micros();
        let metadata = |kind: &str, n: usize| {
            serde_json::json!({"pinpipe": {"table": self.table.name(), "kind": kind, "records_in": records_in, "records": n}})
                .as_object()
                .cloned()
                .unwrap_or_default()
        };

        // The two tables are independent, so both commits run at once and their storage round
        // trips overlap. Either failing fails the batch; the retry skips what either committed.
        let clean_rows = async {
            if rows.is_empty() {
                return Ok(AppendOutcome::default());
            }
            let mut table = self.open(&self.data, self.table.name(), table_schema(self.table)).await?;
            let table = table.as_mut().expect("opened above");
            append_exactly_once(table, &rows, metadata("rows", rows.len()), |fresh| {
                Ok(table_batch(self.table, fresh, now)?)
            })
            .await
        };
        let quarantined = async {
            if rejected.is_empty() {
                return Ok(AppendOutcome::default());
            }
            let mut table = self.open(&self.quarantine, QUARANTINE_TABLE, quarantine_schema()).await?;
            let table = table.as_mut().expect("opened above");
            append_exactly_once(table, &rejected, metadata("quarantine", rejected.len()), |fresh| {
                Ok(quarantine_batch(fresh, now)?)
            })
            .await
        };
        let (rows, quarantined) = tokio::join!(clean_rows, quarantined);
        Ok(BatchSummary { records_in, rows: rows?, quarantined: quarantined? })
    }

    /// The cached handle of a table, brought up to date, or a freshly opened (or created) one.
    async fn open<'a>(
        &self,
        slot: &'a Mutex<Option<DeltaTable>>,
        name: &str,
        schema: deltalake::arrow::datatypes::SchemaRef,
    ) -> Result<tokio::sync::MutexGuard<'a, Option<DeltaTable>>, LakeError> {
        let mut guard = slot.lock().await;
        match guard.as_mut() {
            Some(table) => {
                if let Err(source) = table.update_state().await {
                    *guard = None;
                    return Err(LakeError::Delta { uri: self.lake.root().to_string() + "/" + name, source });
                }
            }
            None => *guard = Some(self.lake.open_or_create(name, &schema).await?),
        }
        Ok(guard)
    }
}

/// Reads the shard, sequence number and origin of a Kinesis event record.
fn incoming(record: &KinesisEventRecord) -> Result<SourceRecord<'_>, ConsumeError> {
    let event_id = record.event_id.clone().unwrap_or_default();
    let bad = |detail: &str| ConsumeError::BadEvent { event_id: event_id.clone(), detail: detail.to_string() };
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
    })
}
