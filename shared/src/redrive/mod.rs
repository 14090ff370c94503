//! Quarantine redrive: re-cleans quarantined records with today's rules, lands the ones that
//! now pass in their table **exactly once**, and leaves the others in quarantine with the reason
//! today's rules give (docs/cleaning.md#redrive). `pinpipe redrive` and the maintenance Lambda
//! (`{"redrive": {...}}`) run the same [`redrive`].
//!
//! # Which records
//!
//! Every quarantine row records the rules version that rejected it
//! ([`crate::clean::RULES_VERSION`], null for rows from before versions: 0). A record is redriven
//! when no run has landed it and the newest version that looked at it (the quarantine row's, or
//! that of the last run that found it still rejected) is older than today's; within that, the
//! request's filters (table, reason, time) and limit. Rows that do not hold their whole record
//! (an oversized record cut short, the unreadable rest of an object) are never redriven.
//!
//! # Exactly once
//!
//! Per-record progress entries would cost one log lookup each, so a table's redrives are
//! numbered runs instead, and the run number is the progress (`txn`) of the source key
//! `redrive/<table>` in two tables: the ledger ([`ledger`]) and the clean table. A run:
//!
//! 1. reads the clean table's `redrive/<table>` position, *then* the ledger: a run the ledger
//!    holds that the table's position does not cover is unfinished (its landing crashed, or
//!    another redrive is landing it right now);
//! 2. finishes it first: re-cleans the records that run landed (from the quarantine) and
//!    appends them to the table at that run's position, which the appender skips if that
//!    landing already committed (so two finishers, or finisher and owner, land it once);
//! 3. picks its records and re-cleans them;
//! 4. writes its intent: its ledger rows, in one commit at position last run + 1. The ledger's
//!    appender skips it if another redrive took that number first: this one then starts over
//!    from 1, and finds that run done or finishes it;
//! 5. lands its clean rows in the table at the same position, in one commit.
//!
//! A crash between 4 and 5 leaves an intent that the next redrive finishes in 2, with the same
//! rows (cleaning is a pure function of the raw bytes and the rules). That needs the same rules:
//! an unfinished run written under another rules version stops the redrive with
//! [`RedriveError::OtherRules`]; finish it with the release that wrote it.
//!
//! A table drops `txn` entries a week after their last update (`lake::TXN_RETENTION`), so after
//! a quiet week the clean table may no longer know its last run. Then its rows answer: the last
//! run is done if the table holds any row with the lineage of a record that run landed.

use std::collections::{BTreeMap, HashMap, HashSet};

use deltalake::arrow::array::{Array, BinaryArray, Int32Array, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, TimeUnit};

use crate::Table;
use crate::batch::holds_partial_record;
use crate::clean::{CleanRecord, RULES_VERSION, clean_bytes};
use crate::lake::scan::scan;
use crate::lake::{
    Lake, LakeError, Marked, Position, SourceKey, TableAppender, add_missing_columns, committed_position,
};
use crate::schema::{Origin, POSITION, RULES_VERSION_COLUMN, SOURCE, table_batch, table_schema};
use crate::table::{QUARANTINE_TABLE, REDRIVES_TABLE};

pub mod ledger;
pub mod like;
pub mod request;

pub use ledger::{Outcome, RecordId, redrives_schema};
pub use like::Like;
pub use request::{DEFAULT_LIMIT, MAX_LAMBDA_LIMIT, RedriveRequest, RequestError, parse_since, request_from_event};

use ledger::{LastRun, Ledger, LedgerRow, ledger_batch};

/// How many times a redrive starts over after other redrives took the run number it meant to
/// write; each start over finds the other run and finishes it, so this only runs out when many
/// redrives of one table run at once.
const MAX_ROUNDS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error(transparent)]
    Lake(Box<LakeError>),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(
        "{table}: redrive run {run} never finished landing and was written under rules version {written}, \
         but these are rules version {ours}: finish it with the release that wrote it (docs/cleaning.md#redrive)"
    )]
    OtherRules { table: Table, run: i64, written: i32, ours: u32 },
    #[error(
        "{table}: record {origin} {position} of unfinished redrive run {run} no longer cleans ({reason}) \
         under the same rules version {RULES_VERSION}: were the rules changed without a new RULES_VERSION?"
    )]
    Changed { table: Table, run: i64, origin: String, position: String, reason: String },
    #[error("{table}: unfinished redrive run {run} lands a record the quarantine no longer holds: {origin} {position}")]
    Missing { table: Table, run: i64, origin: String, position: String },
    #[error("{table}: other redrives took the run number {MAX_ROUNDS} times in a row; try again")]
    Contended { table: Table },
    #[error("the {0} table is unreadable: {1}")]
    Unreadable(String, String),
}

impl From<LakeError> for RedriveError {
    fn from(error: LakeError) -> Self {
        RedriveError::Lake(Box::new(error))
    }
}

/// What a redrive did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RedriveReport {
    pub rules_version: u32,
    pub dry_run: bool,
    pub tables: Vec<TableRedrive>,
}

/// What a redrive did with one table's quarantined records.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableRedrive {
    pub table: String,
    /// The run this redrive wrote; `None` when it had nothing to redrive, or in a dry run.
    pub run: Option<i64>,
    /// Records that now pass and landed in the table (would land, in a dry run).
    pub moved: usize,
    /// Records still rejected by today's rules, which stay in quarantine.
    pub stayed: usize,
    /// The moved records by the reason they had been rejected with.
    pub moved_by_reason: BTreeMap<String, usize>,
    /// The records that stayed by today's reason.
    pub stayed_by_reason: BTreeMap<String, usize>,
    /// More records matched than the limit: another redrive goes on with them.
    pub more: bool,
    /// Unfinished runs this redrive found and finished first (would finish, in a dry run).
    pub finished: Vec<FinishedRun>,
}

/// An unfinished run that a redrive finished.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FinishedRun {
    pub run: i64,
    /// The records that run lands.
    pub records: usize,
    /// Rows this redrive wrote for it: 0 when the run's own redrive (or another) landed them
    /// first.
    pub rows_written: usize,
}

/// Redrives the quarantined records `request` selects, table by table (see the module docs).
pub async fn redrive(lake: &Lake, request: &RedriveRequest) -> Result<RedriveReport, RedriveError> {
    let mut report = RedriveReport { rules_version: RULES_VERSION, dry_run: request.dry_run, tables: Vec::new() };
    for table in request.tables() {
        let done = redrive_table(lake, table, request).await?;
        tracing::info!(
            table = %table, run = ?done.run, moved = done.moved, stayed = done.stayed, more = done.more,
            finished = done.finished.len(), dry_run = request.dry_run, "quarantine redriven"
        );
        report.tables.push(done);
    }
    Ok(report)
}

/// A quarantined record picked for a run, with what today's rules make of it.
struct Picked {
    row: LedgerRow,
    clean: Option<CleanRecord<'static>>,
}

async fn redrive_table(lake: &Lake, table: Table, request: &RedriveRequest) -> Result<TableRedrive, RedriveError> {
    let key = SourceKey::Offset(format!("redrive/{table}"));
    let mut report = TableRedrive { table: table.name().to_string(), ..Default::default() };
    for _round in 0..MAX_ROUNDS {
        // 1. The table's position first, then the ledger: a run the ledger holds past it is
        //    unfinished, or landed after the position was read (finishing it again is harmless).
        let landed_up_to = match lake.open(table.name()).await? {
            Some(delta) => committed_position(&delta, &key).await?.map(|p| run_number(&p)).transpose()?,
            None => None,
        };
        let ledger = Ledger::read(lake, table).await?;
        let unfinished = unfinished_run(lake, table, landed_up_to, ledger.last_run.as_ref()).await?;
        if let Some(run) = unfinished
            && i64::from(run.rules_version) != i64::from(RULES_VERSION)
        {
            return Err(RedriveError::OtherRules {
                table,
                run: run.number,
                written: run.rules_version,
                ours: RULES_VERSION,
            });
        }
        let finishing: HashSet<&RecordId> = unfinished.iter().flat_map(|run| &run.landed).collect();

        // 3. Read the quarantine once: the unfinished run's records and this run's candidates.
        let found = read_quarantine(lake, table, request, &ledger, &finishing).await?;
        report.more = found.more;
        let picked: Vec<Picked> = found.candidates.into_iter().map(|q| recleaned(table, q)).collect();

        if request.dry_run {
            if let Some(run) = unfinished {
                report.finished.push(FinishedRun { run: run.number, records: run.landed.len(), rows_written: 0 });
            }
            count(&mut report, &picked);
            return Ok(report);
        }

        // 2. Finish the unfinished run.
        if let Some(run) = unfinished {
            let rows = finishing_rows(table, run, found.finishing)?;
            let written = land(lake, table, &key, run.number, &rows).await?;
            tracing::info!(%table, run = run.number, records = rows.len(), rows_written = written, "finished an unfinished redrive run");
            report.finished.push(FinishedRun { run: run.number, records: rows.len(), rows_written: written });
        }
        if picked.is_empty() {
            return Ok(report);
        }

        // 4. The intent: this run's ledger rows, at the next run number, once.
        let last = ledger.last_run.as_ref().map_or(0, |r| r.number).max(landed_up_to.unwrap_or(0));
        let run = last + 1;
        if !write_intent(lake, table, &key, run, &picked).await? {
            // What this round finished stays in the report: those rows did land.
            tracing::info!(%table, run, "another redrive took this run number first; starting over");
            continue;
        }

        // 5. Land the clean rows at the same position.
        let rows: Vec<(CleanRecord<'static>, Origin)> =
            picked.iter().filter_map(|p| p.clean.clone().map(|clean| (clean, origin(&p.row.record)))).collect();
        land(lake, table, &key, run, &rows).await?;
        report.run = Some(run);
        count(&mut report, &picked);
        return Ok(report);
    }
    Err(RedriveError::Contended { table })
}

fn run_number(position: &Position) -> Result<i64, RedriveError> {
    position.as_str().parse().map_err(|_| RedriveError::Unreadable("redrive progress".into(), position.to_string()))
}

fn run_position(run: i64) -> Position {
    Position::parse(&run.to_string()).expect("a run number is a non-negative decimal")
}

fn origin(record: &RecordId) -> Origin {
    Origin { source: record.source.clone(), position: record.position.clone() }
}

/// The ledger's last run if its landing has not completed: it landed records, and the table's
/// position does not cover it (or the table forgot its position, and holds none of them).
async fn unfinished_run<'a>(
    lake: &Lake,
    table: Table,
    landed_up_to: Option<i64>,
    last: Option<&'a LastRun>,
) -> Result<Option<&'a LastRun>, RedriveError> {
    let Some(run) = last.filter(|run| !run.landed.is_empty()) else { return Ok(None) };
    match landed_up_to {
        Some(done) => Ok((done < run.number).then_some(run)),
        None => Ok((!table_holds_any(lake, table, &run.landed).await?).then_some(run)),
    }
}

/// Whether the clean table holds a row with the lineage of any of `records`.
async fn table_holds_any(lake: &Lake, table: Table, records: &[RecordId]) -> Result<bool, RedriveError> {
    let Some(delta) = lake.open(table.name()).await? else { return Ok(false) };
    let wanted: HashSet<&RecordId> = records.iter().collect();
    let columns = [Field::new(SOURCE, DataType::Utf8, true), Field::new(POSITION, DataType::Utf8, true)];
    let mut found = false;
    scan(&delta, &columns, |batch| {
        let (Some(sources), Some(positions)) = (strings(&batch, 0), strings(&batch, 1)) else {
            return Err(RedriveError::Unreadable(table.name().into(), "lineage columns are not text".into()));
        };
        found = (0..batch.num_rows()).any(|i| {
            let id = RecordId { source: sources.value(i).into(), position: positions.value(i).into() };
            wanted.contains(&id)
        });
        Ok(!found)
    })
    .await?;
    Ok(found)
}

fn strings(batch: &deltalake::arrow::record_batch::RecordBatch, i: usize) -> Option<&StringArray> {
    batch.column(i).as_any().downcast_ref::<StringArray>()
}

/// A quarantined record, as read.
struct QuarantinedRecord {
    record: RecordId,
    raw: Vec<u8>,
    /// Its current reason: the last run's that found it still rejected, or the quarantine's.
    reason: String,
}

struct Found {
    /// The unfinished run's records, by identity.
    finishing: HashMap<RecordId, Vec<u8>>,
    candidates: Vec<QuarantinedRecord>,
    more: bool,
}

/// One pass over the quarantine: the raw bytes of the records of the run being finished, and
/// up to `request.limit` records to redrive.
async fn read_quarantine(
    lake: &Lake,
    table: Table,
    request: &RedriveRequest,
    ledger: &Ledger,
    finishing: &HashSet<&RecordId>,
) -> Result<Found, RedriveError> {
    let mut found = Found { finishing: HashMap::new(), candidates: Vec::new(), more: false };
    let Some(delta) = lake.open(QUARANTINE_TABLE).await? else { return Ok(found) };
    let timestamp = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let columns = [
        Field::new("table", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("position", DataType::Utf8, true),
        Field::new("raw", DataType::Binary, true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("quarantined_at", timestamp, true),
        Field::new(RULES_VERSION_COLUMN, DataType::Int32, true),
    ];
    let since = request.since.map(|t| t.timestamp_micros());
    let ours = RULES_VERSION as i32;
    // A record quarantined twice (a redelivery older than the progress retention) is one record.
    let mut seen: HashSet<RecordId> = HashSet::new();
    scan(&delta, &columns, |batch| {
        let unreadable = |what: &str| RedriveError::Unreadable(QUARANTINE_TABLE.into(), what.into());
        let (Some(tables), Some(sources), Some(positions), Some(reasons)) =
            (strings(&batch, 0), strings(&batch, 1), strings(&batch, 2), strings(&batch, 4))
        else {
            return Err(unreadable("a text column is not text"));
        };
        let raws = batch.column(3).as_any().downcast_ref::<BinaryArray>().ok_or_else(|| unreadable("raw"))?;
        let times =
            batch.column(5).as_any().downcast_ref::<TimestampMicrosecondArray>().ok_or_else(|| unreadable("time"))?;
        let versions = batch.column(6).as_any().downcast_ref::<Int32Array>().ok_or_else(|| unreadable("version"))?;
        for i in 0..batch.num_rows() {
            if tables.is_null(i) || tables.value(i) != table.name() || sources.is_null(i) || positions.is_null(i) {
                continue;
            }
            let record = RecordId { source: sources.value(i).into(), position: positions.value(i).into() };
            if finishing.contains(&record) {
                found.finishing.entry(record).or_insert_with(|| raws.value(i).to_vec());
                continue;
            }
            if seen.contains(&record) {
                continue;
            }
            let history = ledger.records.get(&record);
            if history.is_some_and(|h| h.landed) {
                continue;
            }
            let quarantined_under = if versions.is_valid(i) { versions.value(i) } else { 0 };
            if quarantined_under.max(history.map_or(0, |h| h.rules_version)) >= ours {
                continue;
            }
            let quarantine_reason = if reasons.is_valid(i) { reasons.value(i) } else { "" };
            if holds_partial_record(quarantine_reason) {
                continue;
            }
            let reason = history.and_then(|h| h.reason.as_ref()).map_or(quarantine_reason, |(_, r)| r.as_str());
            if request.reason_like.as_ref().is_some_and(|like| !like.matches(reason)) {
                continue;
            }
            if since.is_some_and(|since| times.is_null(i) || times.value(i) < since) {
                continue;
            }
            seen.insert(record.clone());
            if found.candidates.len() == request.limit {
                found.more = true;
                continue;
            }
            let raw = if raws.is_valid(i) { raws.value(i).to_vec() } else { Vec::new() };
            found.candidates.push(QuarantinedRecord { record, raw, reason: reason.to_string() });
        }
        Ok(true)
    })
    .await?;
    Ok(found)
}

fn recleaned(table: Table, quarantined: QuarantinedRecord) -> Picked {
    let QuarantinedRecord { record, raw, reason } = quarantined;
    match clean_bytes(table, &raw) {
        Ok(clean) => Picked {
            row: LedgerRow { record, outcome: Outcome::Landed, reason: None, previous_reason: reason },
            clean: Some(clean.into_owned()),
        },
        Err(rejection) => Picked {
            row: LedgerRow {
                record,
                outcome: Outcome::StillRejected,
                reason: Some(rejection.0),
                previous_reason: reason,
            },
            clean: None,
        },
    }
}

/// The clean rows of the unfinished run `run`, re-cleaned from the quarantine's raw bytes.
fn finishing_rows(
    table: Table,
    run: &LastRun,
    mut raws: HashMap<RecordId, Vec<u8>>,
) -> Result<Vec<(CleanRecord<'static>, Origin)>, RedriveError> {
    let mut rows = Vec::with_capacity(run.landed.len());
    for record in &run.landed {
        let missing = || RedriveError::Missing {
            table,
            run: run.number,
            origin: record.source.clone(),
            position: record.position.clone(),
        };
        let raw = raws.remove(record).ok_or_else(missing)?;
        let clean = clean_bytes(table, &raw).map_err(|rejection| RedriveError::Changed {
            table,
            run: run.number,
            origin: record.source.clone(),
            position: record.position.clone(),
            reason: rejection.0,
        })?;
        rows.push((clean.into_owned(), origin(record)));
    }
    Ok(rows)
}

/// Writes run `run`'s ledger rows at position `run` of `key`; `false` when the ledger already
/// holds that run (another redrive's).
async fn write_intent(
    lake: &Lake,
    table: Table,
    key: &SourceKey,
    run: i64,
    picked: &[Picked],
) -> Result<bool, RedriveError> {
    let schema = redrives_schema();
    let delta = add_missing_columns(lake.open_or_create(REDRIVES_TABLE, &schema).await?, &schema).await?;
    let items: Vec<Marked<&LedgerRow>> =
        picked.iter().map(|p| Marked { key: key.clone(), position: run_position(run), item: &p.row }).collect();
    let now = chrono::Utc::now().timestamp_micros();
    let metadata = app_metadata(table, "redrive-intent", run, items.len());
    let outcome = TableAppender::new(delta)?
        .append(&items, metadata, |fresh| {
            let rows: Vec<&LedgerRow> = fresh.iter().map(|row| **row).collect();
            Ok(ledger_batch(table, run, RULES_VERSION as i32, &rows, now)?)
        })
        .await?;
    Ok(outcome.version.is_some())
}

/// Appends `rows` to the table at position `run` of `key`: once, whoever lands them first.
/// Returns the rows written by this call.
async fn land(
    lake: &Lake,
    table: Table,
    key: &SourceKey,
    run: i64,
    rows: &[(CleanRecord<'_>, Origin)],
) -> Result<usize, RedriveError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let schema = table_schema(table);
    let delta = add_missing_columns(lake.open_or_create(table.name(), &schema).await?, &schema).await?;
    let items: Vec<Marked<&(CleanRecord<'_>, Origin)>> =
        rows.iter().map(|row| Marked { key: key.clone(), position: run_position(run), item: row }).collect();
    let now = chrono::Utc::now().timestamp_micros();
    let outcome = TableAppender::new(delta)?
        .append(&items, app_metadata(table, "redrive", run, items.len()), |fresh| {
            let fresh: Vec<&(CleanRecord<'_>, Origin)> = fresh.iter().map(|row| **row).collect();
            Ok(table_batch(table, &fresh, now)?)
        })
        .await?;
    Ok(outcome.rows_written)
}

fn app_metadata(table: Table, kind: &str, run: i64, n: usize) -> serde_json::Map<String, serde_json::Value> {
    let metadata = serde_json::json!({"pinpipe": {"table": table.name(), "kind": kind, "run": run, "records": n}});
    metadata.as_object().cloned().unwrap_or_default()
}

fn count(report: &mut TableRedrive, picked: &[Picked]) {
    for p in picked {
        match (&p.row.outcome, &p.row.reason) {
            (Outcome::Landed, _) => {
                report.moved += 1;
                *report.moved_by_reason.entry(p.row.previous_reason.clone()).or_default() += 1;
            }
            (Outcome::StillRejected, reason) => {
                report.stayed += 1;
                *report.stayed_by_reason.entry(reason.clone().unwrap_or_default()).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{SourceRecord, TableSink};

    fn geo(ind: i64) -> Vec<u8> {
        format!(r#"{{"ind": {ind}, "country": "Chad"}}"#).into_bytes()
    }

    fn record(position: &str) -> RecordId {
        RecordId { source: "kinesis:old/shardId-0".into(), position: position.into() }
    }

    /// `geo` rows whose lineage is `record(position)` for each of `positions`, landed by the sink
    /// (no `redrive/geo` progress, as after a quiet week).
    async fn geo_rows_with_lineage(lake: &Lake, positions: &[&str]) {
        let raws: Vec<Vec<u8>> = (0..positions.len() as i64).map(geo).collect();
        let records = positions
            .iter()
            .zip(&raws)
            .map(|(position, data)| SourceRecord {
                key: SourceKey::Offset("test".into()),
                position: Position::parse(position).unwrap(),
                origin: origin(&record(position)),
                data,
                unreadable: None,
                arrived_at: None,
            })
            .collect();
        TableSink::new(Table::Geo, lake.clone()).consume(records).await.unwrap();
    }

    /// Writes ledger rows of `run` (records landed) under `rules_version`, as a run's intent.
    async fn intent(lake: &Lake, run: i64, rules_version: i32, positions: &[&str]) {
        let rows: Vec<LedgerRow> = positions
            .iter()
            .map(|p| LedgerRow {
                record: record(p),
                outcome: Outcome::Landed,
                reason: None,
                previous_reason: "old".into(),
            })
            .collect();
        let delta = lake.open_or_create(REDRIVES_TABLE, &redrives_schema()).await.unwrap();
        let items: Vec<Marked<&LedgerRow>> = rows
            .iter()
            .map(|row| Marked { key: SourceKey::Offset("redrive/geo".into()), position: run_position(run), item: row })
            .collect();
        TableAppender::new(delta)
            .unwrap()
            .append(&items, Default::default(), |fresh| {
                let fresh: Vec<&LedgerRow> = fresh.iter().map(|row| **row).collect();
                Ok(ledger_batch(Table::Geo, run, rules_version, &fresh, 0)?)
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_table_that_forgot_its_redrive_progress_tells_a_landed_run_by_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        let run = |positions: &[&str]| LastRun {
            number: 4,
            rules_version: RULES_VERSION as i32,
            landed: positions.iter().map(|p| record(p)).collect(),
        };
        // No table yet: the run has not landed.
        let not_landed = run(&["7"]);
        assert!(unfinished_run(&lake, Table::Geo, None, Some(&not_landed)).await.unwrap().is_some());
        geo_rows_with_lineage(&lake, &["5", "7"]).await;
        let landed = run(&["7", "8"]);
        assert!(unfinished_run(&lake, Table::Geo, None, Some(&landed)).await.unwrap().is_none());
        let elsewhere = run(&["8", "9"]);
        assert!(unfinished_run(&lake, Table::Geo, None, Some(&elsewhere)).await.unwrap().is_some());
        // With progress, the progress answers; a run that landed nothing is never unfinished.
        assert!(unfinished_run(&lake, Table::Geo, Some(4), Some(&elsewhere)).await.unwrap().is_none());
        assert!(unfinished_run(&lake, Table::Geo, Some(3), Some(&landed)).await.unwrap().is_some());
        assert!(unfinished_run(&lake, Table::Geo, Some(3), Some(&run(&[]))).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_unfinished_run_of_other_rules_stops_the_redrive_and_says_how_to_finish_it() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        intent(&lake, 1, RULES_VERSION as i32 - 1, &["1"]).await;
        let request = RedriveRequest { table: Some(Table::Geo), ..Default::default() };
        let err = redrive(&lake, &request).await.unwrap_err();
        assert!(matches!(err, RedriveError::OtherRules { run: 1, .. }), "{err}");
        assert!(err.to_string().contains("finish it with the release that wrote it"), "{err}");
        // A dry run says the same, before anything is written.
        let dry = RedriveRequest { dry_run: true, ..request.clone() };
        assert!(matches!(redrive(&lake, &dry).await.unwrap_err(), RedriveError::OtherRules { .. }));
    }

    #[tokio::test]
    async fn an_unfinished_run_whose_record_left_the_quarantine_is_an_error_not_a_loss() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        intent(&lake, 1, RULES_VERSION as i32, &["1"]).await;
        let request = RedriveRequest { table: Some(Table::Geo), ..Default::default() };
        let err = redrive(&lake, &request).await.unwrap_err();
        assert!(matches!(err, RedriveError::Missing { run: 1, .. }), "{err}");
    }
}
