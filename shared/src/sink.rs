//! The sink: a set of raw records of one table in, one exactly-once commit per Delta table out,
//! whatever the source (a Kinesis batch in [`crate::kinesis_trigger`], the records of Kafka
//! Connect objects in [`crate::batch`]).
//!
//! Every record is cleaned; clean rows go to the table, rejected records to the quarantine table
//! with their raw bytes, origin and reason. A poison record never fails the batch. Only an
//! infrastructure failure (the lake unreachable, commits still conflicting after bounded retries)
//! fails it, and the trigger then has the batch delivered again; the exactly-once appends of
//! [`crate::lake`] make that retry safe.

use std::time::Duration;

use tokio::sync::Mutex;

use crate::clean::{CleanRecord, Rejection, clean_bytes};
use crate::lake::{AppendOutcome, Lake, LakeError, Marked, Position, SourceKey, TableAppender};
use crate::schema::{Origin, Quarantined, quarantine_batch, quarantine_schema, table_batch, table_schema};
use crate::table::{QUARANTINE_TABLE, Table};

/// What one batch did, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub records_in: usize,
    pub rows: AppendOutcome,
    pub quarantined: AppendOutcome,
}

impl BatchSummary {
    /// What the batch did, in words for the log: a redelivered batch says so, rather than look
    /// like a batch that wrote nothing.
    pub fn outcome(&self) -> &'static str {
        let already = self.rows.already_committed + self.quarantined.already_committed;
        if already == 0 {
            "batch committed"
        } else if already == self.records_in {
            "batch already committed by an earlier delivery of these records; nothing written"
        } else {
            "batch committed; part of it was already committed by an earlier delivery"
        }
    }
}

/// What one table received from one or more batches: the figures both paths log and emit as
/// metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableTotals {
    pub records_in: usize,
    pub rows_written: usize,
    /// Records an earlier delivery of the same records had already committed (see
    /// [`AppendOutcome::already_committed`]).
    pub already_committed: usize,
    pub quarantined: usize,
    pub commits: usize,
}

impl TableTotals {
    pub fn add(&mut self, batch: &BatchSummary) {
        self.records_in += batch.records_in;
        self.rows_written += batch.rows.rows_written;
        self.already_committed += batch.rows.already_committed + batch.quarantined.already_committed;
        self.quarantined += batch.quarantined.rows_written;
        self.commits += usize::from(batch.rows.version.is_some()) + usize::from(batch.quarantined.version.is_some());
    }

    /// Emits the per-batch metrics of `function` (`stream-consumer`, `batch-ingest`) for
    /// `table`, the one mapping of a batch to metric names. The names are referenced by the
    /// template's alarms and dashboard: keep them.
    pub fn emit(&self, function: &str, table: &str, duration: Duration) {
        crate::metrics::emit(
            function,
            table,
            &[
                ("RecordsIn", "Count", self.records_in as f64),
                ("RowsWritten", "Count", self.rows_written as f64),
                ("AlreadyCommitted", "Count", self.already_committed as f64),
                ("Quarantined", "Count", self.quarantined as f64),
                ("BatchDuration", "Milliseconds", duration.as_secs_f64() * 1e3),
            ],
        );
    }
}

impl From<&BatchSummary> for TableTotals {
    fn from(batch: &BatchSummary) -> Self {
        let mut totals = TableTotals::default();
        totals.add(batch);
        totals
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    // Boxed: a LakeError is large, and every record's Result would pay for it.
    #[error(transparent)]
    Lake(Box<LakeError>),
}

impl From<LakeError> for SinkError {
    fn from(error: LakeError) -> Self {
        SinkError::Lake(Box::new(error))
    }
}

/// Sinks batches of one table into a lake, keeping the Delta table handles warm across
/// invocations so a warm Lambda only reads the log entries that are new since its last batch.
pub struct TableSink {
    table: Table,
    lake: Lake,
    data: Mutex<Option<TableAppender>>,
    quarantine: Mutex<Option<TableAppender>>,
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

    /// Cleans `incoming` and commits it: clean rows to the table, rejects to quarantine, one
    /// commit each, skipping whatever an earlier delivery already committed.
    pub async fn consume(&self, incoming: Vec<SourceRecord<'_>>) -> Result<BatchSummary, SinkError> {
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
            let mut slot = self.open(&self.data, self.table.name(), table_schema(self.table)).await?;
            let appender = slot.as_mut().expect("opened above");
            let appended = appender
                .append(&rows, metadata("rows", rows.len()), |fresh| Ok(table_batch(self.table, fresh, now)?))
                .await;
            forget_on_error(&mut slot, appended)
        };
        let quarantined = async {
            if rejected.is_empty() {
                return Ok(AppendOutcome::default());
            }
            let mut slot = self.open(&self.quarantine, QUARANTINE_TABLE, quarantine_schema()).await?;
            let appender = slot.as_mut().expect("opened above");
            let appended = appender
                .append(&rejected, metadata("quarantine", rejected.len()), |fresh| Ok(quarantine_batch(fresh, now)?))
                .await;
            forget_on_error(&mut slot, appended)
        };
        let (rows, quarantined) = tokio::join!(clean_rows, quarantined);
        Ok(BatchSummary { records_in, rows: rows?, quarantined: quarantined? })
    }

    /// The warm appender of a table, or a freshly opened (or created) one. A warm appender is
    /// not brought up to date first: it learns what other writers committed from the commits
    /// it loses races to (see `lake::append`), which keeps a warm append's cost flat.
    async fn open<'a>(
        &self,
        slot: &'a Mutex<Option<TableAppender>>,
        name: &str,
        schema: deltalake::arrow::datatypes::SchemaRef,
    ) -> Result<tokio::sync::MutexGuard<'a, Option<TableAppender>>, LakeError> {
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(TableAppender::new(self.lake.open_or_create(name, &schema).await?)?);
        }
        Ok(guard)
    }
}

/// Drops the appender after a failed append, so the retry starts from a fresh open: whatever
/// went wrong (a lost answer, a storage error), the log is then read again as it is.
fn forget_on_error<T>(slot: &mut Option<TableAppender>, result: Result<T, LakeError>) -> Result<T, LakeError> {
    if result.is_err() {
        *slot = None;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(records_in: usize, written: usize, already: usize, quarantined: usize) -> BatchSummary {
        BatchSummary {
            records_in,
            rows: AppendOutcome { rows_written: written, already_committed: already, ..Default::default() },
            quarantined: AppendOutcome { rows_written: quarantined, ..Default::default() },
        }
    }

    #[test]
    fn a_redelivered_batch_says_it_was_already_committed() {
        assert_eq!(summary(10, 9, 0, 1).outcome(), "batch committed");
        let redelivered = summary(10, 0, 10, 0);
        assert!(redelivered.outcome().starts_with("batch already committed by an earlier delivery"));
        assert_eq!(TableTotals::from(&redelivered).already_committed, 10);
        assert!(summary(10, 4, 6, 0).outcome().contains("part of it was already committed"));
    }
}
