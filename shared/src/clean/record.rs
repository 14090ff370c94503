//! The clean record: one [`Cell`] per column of its table, and its JSON line.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::Table;

/// One clean value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Str(String),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
    Coordinates([f64; 2]),
}

/// A clean record: one cell per column of its table, in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanRecord {
    pub cells: Vec<Cell>,
}

impl CleanRecord {
    /// The join key (`ind`), always the first column and never null.
    pub fn ind(&self) -> i64 {
        match self.cells.first() {
            Some(Cell::Int(ind)) => *ind,
            other => unreachable!("the first clean column is the non-null key, found {other:?}"),
        }
    }

    /// One JSON object, keys in column order, timestamps as `YYYY-MM-DDTHH:MM:SS` (UTC).
    pub fn to_json_line(&self, table: Table) -> String {
        let mut out = String::with_capacity(256);
        out.push('{');
        for (i, (column, cell)) in table.columns().iter().zip(&self.cells).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::from(column.name).to_string());
            out.push(':');
            match cell {
                Cell::Null => out.push_str("null"),
                Cell::Int(v) => out.push_str(&v.to_string()),
                Cell::Str(s) => out.push_str(&Value::from(s.as_str()).to_string()),
                Cell::Timestamp(us) => out.push_str(&Value::from(format_timestamp(*us)).to_string()),
                Cell::Coordinates(c) => out.push_str(&serde_json::json!(c).to_string()),
            }
        }
        out.push('}');
        out
    }
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, with a fraction only when there is one.
pub fn format_timestamp(micros: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(micros) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true).trim_end_matches('Z').to_string(),
        None => micros.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_iso_seconds_in_utc() {
        assert_eq!(format_timestamp(1_598_586_767_000_000), "2020-08-28T03:52:47");
        assert_eq!(format_timestamp(1_598_586_767_250_000), "2020-08-28T03:52:47.250");
    }
}
