//! The sink: a set of raw records of one table in, one exactly-once commit per Delta table out,
//! whatever the source (a Kinesis batch in [`crate::kinesis_trigger`], the records of Kafka
//! Connect objects in [`crate::batch`]).
//!
//! Every record is cleaned; clean rows go to the table, rejected records to the quarantine table
//! with their raw bytes, origin and reason. A poison record never fails the batch. Only an
//! infrastructure failure (the lake unreachable, commits still conflicting after bounded retries)
//! fails it, and the trigger then has the batch delivered again; the exactly-once appends of
//! [`crate::lake`] make that retry safe.
//!
//! Nothing a record holds is dropped in silence: the fields no cleaning rule reads go with its
//! row as `_rescued` (docs/records.md#rescued-fields), and a batch counts the rows that have
//! some, so an upstream schema change shows the day it happens. A batch also measures how old
//! the records it committed were when the commit landed ([`crate::freshness`]).

use std::borrow::Borrow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::clean::{CleanRecord, Rejection, clean_bytes};
use crate::freshness::RecordAges;
use crate::lake::{AppendOutcome, Lake, LakeError, Marked, Position, SourceKey, TableAppender, add_missing_columns};
use crate::schema::{Origin, Quarantined, quarantine_batch, quarantine_schema, table_batch, table_schema};
use crate::table::{QUARANTINE_TABLE, Table};

/// What one batch did, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub records_in: usize,
    pub rows: AppendOutcome,
    pub quarantined: AppendOutcome,
    /// Rows this batch wrote that carry rescued fields (fields no cleaning rule reads).
    pub rows_with_rescued_fields: usize,
    /// The ages of the records this batch committed (rows and quarantined), at the time the
    /// commits landed; records an earlier delivery committed are not in it.
    pub record_ages: RecordAges,
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
    /// Rows written with rescued fields: fields no cleaning rule reads, kept in `_rescued`.
    pub rows_with_rescued_fields: usize,
    /// The ages of the committed records when their commits landed (see [`crate::freshness`]).
    pub record_ages: RecordAges,
}

impl TableTotals {
    pub fn add(&mut self, batch: &BatchSummary) {
        self.records_in += batch.records_in;
        self.rows_written += batch.rows.rows_written;
        self.already_committed += batch.rows.already_committed + batch.quarantined.already_committed;
        self.quarantined += batch.quarantined.rows_written;
        self.commits += usize::from(batch.rows.version.is_some()) + usize::from(batch.quarantined.version.is_some());
        self.rows_with_rescued_fields += batch.rows_with_rescued_fields;
        self.record_ages.add(&batch.record_ages);
    }

    /// Emits the per-batch metrics of `function` (`stream-consumer`, `batch-ingest`) for
    /// `table`, the one mapping of a batch to metric names. The names are referenced by the
    /// template's alarms and dashboard: keep them. Freshness is left out when nothing was
    /// committed: a batch with no new records has no age, and a 0 would read as fresh.
    pub fn emit(&self, function: &str, table: &str, duration: Duration) {
        let mut metrics = vec![
            ("RecordsIn", "Count", self.records_in as f64),
            ("RowsWritten", "Count", self.rows_written as f64),
            ("AlreadyCommitted", "Count", self.already_committed as f64),
            ("Quarantined", "Count", self.quarantined as f64),
            ("RowsWithRescuedFields", "Count", self.rows_with_rescued_fields as f64),
            ("BatchDuration", "Milliseconds", duration.as_secs_f64() * 1e3),
        ];
        if let (Some(p50), Some(max)) = (self.record_ages.p50_ms(), self.record_ages.max_ms()) {
            metrics.push(("FreshnessP50", "Milliseconds", p50 as f64));
            metrics.push(("FreshnessMax", "Milliseconds", max as f64));
        }
        crate::metrics::emit(function, table, &metrics);
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
    /// When the record reached the pipeline, for freshness: Kinesis' arrival timestamp, or the
    /// time its object was written. `None` leaves the record out of the batch's ages.
    pub arrived_at: Option<DateTime<Utc>>,
}

/// A row or a rejected record waiting for its commit, with when its record arrived.
struct Arrived<T> {
    item: T,
    arrived_at: Option<DateTime<Utc>>,
}

impl<'a> Borrow<(CleanRecord<'a>, Origin)> for &Arrived<(CleanRecord<'a>, Origin)> {
    fn borrow(&self) -> &(CleanRecord<'a>, Origin) {
        &self.item
    }
}

impl Borrow<Quarantined> for &Arrived<Quarantined> {
    fn borrow(&self) -> &Quarantined {
        &self.item
    }
}

/// What an append's last built batch held (an append may build several, losing races; the
/// last is the one it committed): when its records arrived, and for clean rows how many carry
/// rescued fields.
#[derive(Default)]
struct Built {
    arrivals: std::sync::Mutex<Vec<DateTime<Utc>>>,
    rescued: AtomicUsize,
}

impl Built {
    fn record<T>(&self, fresh: &[&Arrived<T>], rescued: impl Fn(&T) -> bool) {
        let arrivals = fresh.iter().filter_map(|a| a.arrived_at).collect();
        *self.arrivals.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = arrivals;
        self.rescued.store(fresh.iter().filter(|a| rescued(&a.item)).count(), Ordering::Relaxed);
    }

    /// What the committed batch held, if `outcome` committed one.
    fn committed(self, outcome: &AppendOutcome) -> (Vec<DateTime<Utc>>, usize) {
        if outcome.version.is_none() {
            return (Vec::new(), 0);
        }
        (self.arrivals.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()), self.rescued.into_inner())
    }
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
        let mut rows: Vec<Marked<Arrived<(CleanRecord, Origin)>>> = Vec::with_capacity(records_in);
        let mut rejected: Vec<Marked<Arrived<Quarantined>>> = Vec::new();
        for record in incoming {
            let cleaned = match record.unreadable {
                Some(reason) => Err(Rejection(reason)),
                None => clean_bytes(self.table, record.data),
            };
            let arrived_at = record.arrived_at;
            match cleaned {
                Ok(clean) => rows.push(Marked {
                    key: record.key,
                    position: record.position,
                    item: Arrived { item: (clean, record.origin), arrived_at },
                }),
                Err(rejection) => rejected.push(Marked {
                    key: record.key,
                    position: record.position,
                    item: Arrived {
                        item: Quarantined {
                            table: self.table,
                            origin: record.origin,
                            raw: record.data.to_vec(),
                            reason: rejection.0,
                        },
                        arrived_at,
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
        let (built_rows, built_rejects) = (Built::default(), Built::default());
        let clean_rows = async {
            if rows.is_empty() {
                return Ok(AppendOutcome::default());
            }
            let mut slot = self.open(&self.data, self.table.name(), table_schema(self.table)).await?;
            let appender = slot.as_mut().expect("opened above");
            let appended = appender
                .append(&rows, metadata("rows", rows.len()), |fresh| {
                    built_rows.record(fresh, |(clean, _)| clean.rescued.is_some());
                    Ok(table_batch(self.table, fresh, now)?)
                })
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
                .append(&rejected, metadata("quarantine", rejected.len()), |fresh| {
                    built_rejects.record(fresh, |_| false);
                    Ok(quarantine_batch(fresh, now)?)
                })
                .await;
            forget_on_error(&mut slot, appended)
        };
        let (rows, quarantined) = tokio::join!(clean_rows, quarantined);
        let (rows, quarantined) = (rows?, quarantined?);
        let committed_at = Utc::now();
        let (row_arrivals, rows_with_rescued_fields) = built_rows.committed(&rows);
        let (reject_arrivals, _) = built_rejects.committed(&quarantined);
        let record_ages = RecordAges::at(committed_at, row_arrivals.into_iter().chain(reject_arrivals));
        Ok(BatchSummary { records_in, rows, quarantined, rows_with_rescued_fields, record_ages })
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
            // A table created before a column of `schema` existed (`_rescued`) gains it here,
            // before the first append that writes it.
            let table = add_missing_columns(self.lake.open_or_create(name, &schema).await?, &schema).await?;
            *guard = Some(TableAppender::new(table)?);
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
            ..Default::default()
        }
    }

    fn user(ind: i64, extra: &str) -> Vec<u8> {
        format!(r#"{{"ind": {ind}, "first_name": "Ann", "last_name": "Lee", "age": 33{extra}}}"#).into_bytes()
    }

    fn source_records<'a>(shard: &str, records: &'a [Vec<u8>]) -> Vec<SourceRecord<'a>> {
        let arrived_at = Some(Utc::now() - chrono::TimeDelta::seconds(30));
        (0..records.len())
            .map(|i| SourceRecord {
                key: SourceKey::Sequence(format!("kinesis/s/{shard}")),
                position: Position::parse(&(i + 1).to_string()).unwrap(),
                origin: Origin { source: format!("kinesis:s/{shard}"), position: (i + 1).to_string() },
                data: &records[i],
                unreadable: None,
                arrived_at,
            })
            .collect()
    }

    /// A `user` table as pinpipe wrote it before rows had rescued fields, with rows `inds`.
    async fn user_table_from_before_rescued_fields(lake: &Lake, inds: &[i64]) {
        let schema = table_schema(Table::User);
        let old_columns: Vec<usize> = (0..schema.fields().len() - 1).collect();
        let old_schema = std::sync::Arc::new(schema.project(&old_columns).unwrap());
        let table = lake.open_or_create("user", &old_schema).await.unwrap();
        let rows: Vec<_> = inds
            .iter()
            .map(|ind| Marked {
                key: SourceKey::Offset(format!("old/{ind}")),
                position: Position::parse("0").unwrap(),
                item: (
                    clean_bytes(Table::User, &user(*ind, "")).unwrap().into_owned(),
                    Origin { source: "old".into(), position: "1".into() },
                ),
            })
            .collect();
        TableAppender::new(table)
            .unwrap()
            .append(&rows, Default::default(), |fresh| Ok(table_batch(Table::User, fresh, 0)?.project(&old_columns)?))
            .await
            .unwrap();
    }

    async fn add_column_commits(lake: &Lake, name: &str) -> usize {
        use futures::TryStreamExt;
        let table = lake.open(name).await.unwrap().unwrap();
        let history: Vec<_> = table.history(None).try_collect().await.unwrap();
        history.iter().filter(|c| c.operation.as_deref() == Some("ADD COLUMN")).count()
    }

    #[tokio::test]
    async fn a_table_from_before_rescued_fields_gains_the_column_and_old_rows_read_null() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        user_table_from_before_rescued_fields(&lake, &[1, 2]).await;
        let sink = TableSink::new(Table::User, lake.clone());
        let records = [user(3, r#", "nickname": "Annie", "tags": ["a", 1.50]"#), user(4, "")];
        let summary = sink.consume(source_records("shardId-0", &records)).await.unwrap();
        assert_eq!((summary.rows.rows_written, summary.rows_with_rescued_fields), (2, 1));

        let rows = lake.read_all("user").await.unwrap().unwrap();
        let schema = rows.schema();
        assert_eq!(schema.fields().last().map(|f| f.name().as_str()), Some(crate::schema::RESCUED));
        let inds = rows.column_by_name("ind").unwrap().as_any().downcast_ref::<deltalake::arrow::array::Int64Array>();
        let rescued = rows.column_by_name("_rescued").unwrap();
        let rescued = rescued.as_any().downcast_ref::<deltalake::arrow::array::StringArray>().unwrap();
        let mut by_ind: Vec<(i64, Option<&str>)> = inds.unwrap().values().iter().copied().zip(rescued.iter()).collect();
        by_ind.sort();
        assert_eq!(by_ind, [(1, None), (2, None), (3, Some(r#"{"nickname":"Annie","tags":["a", 1.50]}"#)), (4, None)]);
        assert_eq!(add_column_commits(&lake, "user").await, 1);

        // A new sink (another process) finds the column and adds nothing.
        let again = TableSink::new(Table::User, lake.clone());
        again.consume(source_records("shardId-1", &[user(5, "")])).await.unwrap();
        assert_eq!(add_column_commits(&lake, "user").await, 1);
    }

    #[tokio::test]
    async fn a_table_that_gained_rescued_fields_still_compacts_its_older_files() {
        use crate::maintenance::{MaintenancePolicy, maintain};
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        user_table_from_before_rescued_fields(&lake, &[1, 2]).await;
        let sink = TableSink::new(Table::User, lake.clone());
        sink.consume(source_records("shardId-0", &[user(3, r#", "x": 1"#)])).await.unwrap();
        let policy = MaintenancePolicy { min_small_files: 2, ..Default::default() };
        let report = maintain(&lake, "user", &policy).await.unwrap().unwrap();
        assert_eq!((report.files_compacted, report.files_written, report.files_after), (2, 1, 1));
        let rows = lake.read_all("user").await.unwrap().unwrap();
        let rescued = rows.column_by_name("_rescued").unwrap();
        assert_eq!((rows.num_rows(), rescued.null_count()), (3, 2));
    }

    #[tokio::test]
    async fn of_two_writers_adding_the_column_at_once_the_loser_reloads_and_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        user_table_from_before_rescued_fields(&lake, &[1]).await;
        // Both opened the table before either added the column.
        let (first, second) = (lake.open("user").await.unwrap().unwrap(), lake.open("user").await.unwrap().unwrap());
        let schema = table_schema(Table::User);
        let winner = add_missing_columns(first, &schema).await.unwrap();
        let loser = add_missing_columns(second, &schema).await.unwrap();
        assert_eq!(winner.version(), loser.version(), "the loser reloaded to the winner's commit");
        let columns = |t: &deltalake::DeltaTable| t.snapshot().unwrap().schema().fields().count();
        assert_eq!((columns(&winner), columns(&loser)), (schema.fields().len(), schema.fields().len()));
        assert_eq!(add_column_commits(&lake, "user").await, 1);

        // And two sinks on an old table at once both land their rows.
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        user_table_from_before_rescued_fields(&lake, &[1]).await;
        let (a, b) = (TableSink::new(Table::User, lake.clone()), TableSink::new(Table::User, lake.clone()));
        let (ra, rb) = ([user(2, r#", "x": 1"#)], [user(3, r#", "y": 2"#)]);
        let (sa, sb) =
            tokio::join!(a.consume(source_records("shardId-a", &ra)), b.consume(source_records("shardId-b", &rb)));
        assert_eq!((sa.unwrap().rows_with_rescued_fields, sb.unwrap().rows_with_rescued_fields), (1, 1));
        assert_eq!(lake.count_rows("user").await.unwrap(), Some(3));
        assert_eq!(add_column_commits(&lake, "user").await, 1);
    }

    #[tokio::test]
    async fn a_batch_reports_the_age_of_the_records_it_committed_and_a_redelivery_none() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TableSink::new(Table::User, Lake::new(dir.path().to_str().unwrap()));
        let records = [user(1, ""), b"not json".to_vec()];
        let summary = sink.consume(source_records("shardId-0", &records)).await.unwrap();
        assert_eq!(summary.record_ages.len(), 2, "the row and the quarantined record");
        let max = summary.record_ages.max().unwrap();
        assert!((Duration::from_secs(30)..Duration::from_secs(40)).contains(&max), "{max:?}");
        let again = sink.consume(source_records("shardId-0", &records)).await.unwrap();
        assert!(again.record_ages.is_empty(), "nothing new was committed");
        assert_eq!(TableTotals::from(&again).record_ages.p50(), None);
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
