//! The redrive ledger, `quarantine_redrives`: one row for every quarantined record a redrive run
//! looked at, with what became of it. Append-only and never rewritten, so it is the history of
//! the quarantine (the quarantine itself is never rewritten either), and what the next redrive
//! reads to know what is done:
//!
//! - a record some run **landed** is in its table and is never looked at again;
//! - a record a run found **still rejected** under rules version v is looked at again only once
//!   the rules are newer than v, and its current reason is the one that run wrote.
//!
//! A run's rows are written in one commit, before its records land in their table (the intent;
//! see the parent module), with the run number as the `redrive/<table>` progress of the ledger.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, Int32Array, Int64Array, StringArray, StringBuilder};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;

use super::RedriveError;
use crate::Table;
use crate::lake::Lake;
use crate::lake::scan::scan;
use crate::schema::timestamp_type;
use crate::table::REDRIVES_TABLE;

/// What a run did with a record, as the `outcome` column says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Cleaned by today's rules: the run lands it in its table.
    Landed,
    /// Still rejected by today's rules, with the row's new `reason`; it stays in quarantine.
    StillRejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Landed => "landed",
            Outcome::StillRejected => "still_rejected",
        }
    }
}

/// A quarantined record's identity within its table: where it came from (the quarantine's
/// `source` and `position`, the clean row's `_source` and `_position` once landed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    pub source: String,
    pub position: String,
}

/// One ledger row to write.
#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub record: RecordId,
    pub outcome: Outcome,
    /// The reason today's rules give, when still rejected.
    pub reason: Option<String>,
    /// The reason the record had when the run looked at it.
    pub previous_reason: String,
}

/// The ledger table: see the module docs and docs/cleaning.md#redrive.
pub fn redrives_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("position", DataType::Utf8, false),
        Field::new("run", DataType::Int64, false),
        Field::new("rules_version", DataType::Int32, false),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
        Field::new("previous_reason", DataType::Utf8, false),
        Field::new("redriven_at", timestamp_type(), false),
    ]))
}

/// The ledger rows of run `run` of `table`, under rules version `rules_version`, at `at` (µs).
pub fn ledger_batch(
    table: Table,
    run: i64,
    rules_version: i32,
    rows: &[&LedgerRow],
    at: i64,
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut source = StringBuilder::with_capacity(n, n * 48);
    let mut position = StringBuilder::with_capacity(n, n * 56);
    let mut outcome = StringBuilder::with_capacity(n, n * 14);
    let mut reason = StringBuilder::with_capacity(n, n * 64);
    let mut previous = StringBuilder::with_capacity(n, n * 64);
    for row in rows {
        source.append_value(&row.record.source);
        position.append_value(&row.record.position);
        outcome.append_value(row.outcome.as_str());
        reason.append_option(row.reason.as_deref());
        previous.append_value(&row.previous_reason);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(table.name(), n))),
        Arc::new(source.finish()),
        Arc::new(position.finish()),
        Arc::new(Int64Array::from_value(run, n)),
        Arc::new(Int32Array::from_value(rules_version, n)),
        Arc::new(outcome.finish()),
        Arc::new(reason.finish()),
        Arc::new(previous.finish()),
        Arc::new(deltalake::arrow::array::TimestampMicrosecondArray::from_value(at, n).with_timezone("UTC")),
    ];
    RecordBatch::try_new(redrives_schema(), columns)
}

/// What the ledger says of one record.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The newest rules version a run re-cleaned it under.
    pub rules_version: i32,
    pub landed: bool,
    /// The reason the latest run that found it still rejected gave, with that run.
    pub reason: Option<(i64, String)>,
}

/// The latest run of a table, as the ledger holds it.
#[derive(Debug, Clone)]
pub struct LastRun {
    pub number: i64,
    pub rules_version: i32,
    /// The records it landed (or is to land, if its landing never completed).
    pub landed: Vec<RecordId>,
}

/// The ledger of one table, as read.
#[derive(Debug, Default)]
pub struct Ledger {
    pub records: HashMap<RecordId, History>,
    pub last_run: Option<LastRun>,
}

impl Ledger {
    /// Reads the ledger rows of `table`; an empty ledger if there is no ledger table yet.
    pub async fn read(lake: &Lake, table: Table) -> Result<Ledger, RedriveError> {
        let mut ledger = Ledger::default();
        let Some(delta) = lake.open(REDRIVES_TABLE).await? else { return Ok(ledger) };
        let columns = [
            Field::new("table", DataType::Utf8, true),
            Field::new("source", DataType::Utf8, true),
            Field::new("position", DataType::Utf8, true),
            Field::new("run", DataType::Int64, true),
            Field::new("rules_version", DataType::Int32, true),
            Field::new("outcome", DataType::Utf8, true),
            Field::new("reason", DataType::Utf8, true),
        ];
        let mut rows: Vec<(RecordId, i64, i32, bool, Option<String>)> = Vec::new();
        scan(&delta, &columns, |batch| {
            let text = |i: usize| batch.column(i).as_any().downcast_ref::<StringArray>().cloned();
            let (Some(tables), Some(sources), Some(positions), Some(outcomes), Some(reasons)) =
                (text(0), text(1), text(2), text(5), text(6))
            else {
                return Err(RedriveError::Unreadable(REDRIVES_TABLE.into(), "a text column is not text".into()));
            };
            let runs = batch.column(3).as_any().downcast_ref::<Int64Array>().cloned();
            let versions = batch.column(4).as_any().downcast_ref::<Int32Array>().cloned();
            let (Some(runs), Some(versions)) = (runs, versions) else {
                return Err(RedriveError::Unreadable(REDRIVES_TABLE.into(), "run or rules_version".into()));
            };
            for i in 0..batch.num_rows() {
                if !tables.is_valid(i) || tables.value(i) != table.name() {
                    continue;
                }
                if [sources.is_null(i), positions.is_null(i), runs.is_null(i), versions.is_null(i)].contains(&true) {
                    return Err(RedriveError::Unreadable(REDRIVES_TABLE.into(), "a row without its identity".into()));
                }
                let record = RecordId { source: sources.value(i).into(), position: positions.value(i).into() };
                let landed = outcomes.is_valid(i) && outcomes.value(i) == Outcome::Landed.as_str();
                let reason = reasons.is_valid(i).then(|| reasons.value(i).to_string());
                rows.push((record, runs.value(i), versions.value(i), landed, reason));
            }
            Ok(true)
        })
        .await?;
        let last = rows.iter().map(|r| r.1).max();
        if let Some(number) = last {
            let of_last = rows.iter().filter(|r| r.1 == number);
            let rules_version = of_last.clone().map(|r| r.2).max().unwrap_or(0);
            let landed = of_last.filter(|r| r.3).map(|r| r.0.clone()).collect();
            ledger.last_run = Some(LastRun { number, rules_version, landed });
        }
        for (record, run, version, landed, reason) in rows {
            let history = ledger.records.entry(record).or_default();
            history.rules_version = history.rules_version.max(version);
            history.landed |= landed;
            if let Some(reason) = reason.filter(|_| !landed)
                && history.reason.as_ref().is_none_or(|(seen, _)| *seen < run)
            {
                history.reason = Some((run, reason));
            }
        }
        Ok(ledger)
    }
}
