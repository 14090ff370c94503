//! The clean record: one [`Cell`] per column of its table, the fields it rescued, and its JSON
//! line.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::Table;

/// One clean value. Text borrows from the record's bytes where the clean value is a slice of
/// them (most text: no escapes, nothing rewritten), so a batch's text is copied once, into its
/// Arrow columns, rather than first into a string of its own per cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Str(Cow<'a, str>),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
    Coordinates([f64; 2]),
}

/// The column (and JSON line key) that holds a record's [`Rescued`] fields.
pub const RESCUED_COLUMN: &str = "_rescued";

/// The fields of a raw record that no rule of its table reads, so that nothing a client sends is
/// dropped in silence: the text of one JSON object, keys in input order (of a repeated key, the
/// last), each value exactly as the client sent it, numbers and spacing included
/// (docs/records.md#rescued-fields).
#[derive(Debug, Clone)]
pub struct Rescued(String);

impl Rescued {
    /// Wraps the text of a JSON object, as the parse of a raw record writes it.
    pub(super) fn from_json_text(text: String) -> Self {
        Rescued(text)
    }

    /// The JSON object's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Equal when both texts hold the same JSON. A record cleaned from its bytes keeps each value's
/// text as sent, one cleaned from a parsed map (`clean`) can only write it anew (`2.50` as
/// `2.5`, keys sorted): the same fields, so the same record.
impl PartialEq for Rescued {
    fn eq(&self, other: &Self) -> bool {
        let parse = |text: &str| serde_json::from_str::<Value>(text).ok();
        self.0 == other.0
            || match (parse(&self.0), parse(&other.0)) {
                (Some(mine), Some(theirs)) => same_json(&mine, &theirs),
                _ => false,
            }
    }
}

/// JSON equality, but for floats a few ulps apart: serde_json's default float parser is not
/// always correctly rounded, so a number written anew from its parsed value
/// (`-1.9921100000000002e+32` for `-19.9211e31`) may read back off the original text's reading.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(fx), Some(fy)) if x.is_f64() && y.is_f64() => (fx - fy).abs() <= fx.abs().max(fy.abs()) * 1e-15,
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, x)| y.get(key).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

/// A clean record: one cell per column of its table, in column order, and the fields the
/// table's rules do not read.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanRecord<'a> {
    pub cells: Vec<Cell<'a>>,
    /// `None` when the rules read every field of the record.
    pub rescued: Option<Rescued>,
}

impl CleanRecord<'_> {
    /// The record with its text its own, for one kept beyond the bytes it was cleaned from.
    pub fn into_owned(self) -> CleanRecord<'static> {
        let cells = self
            .cells
            .into_iter()
            .map(|cell| match cell {
                Cell::Null => Cell::Null,
                Cell::Int(v) => Cell::Int(v),
                Cell::Str(s) => Cell::Str(Cow::Owned(s.into_owned())),
                Cell::Timestamp(us) => Cell::Timestamp(us),
                Cell::Coordinates(c) => Cell::Coordinates(c),
            })
            .collect();
        CleanRecord { cells, rescued: self.rescued }
    }

    /// The join key (`ind`), always the first column and never null.
    pub fn ind(&self) -> i64 {
        match self.cells.first() {
            Some(Cell::Int(ind)) => *ind,
            other => unreachable!("the first clean column is the non-null key, found {other:?}"),
        }
    }

    /// One JSON object, keys in column order, timestamps as `YYYY-MM-DDTHH:MM:SS` (UTC), then
    /// `"_rescued"` with the rescued fields as an object, if there are any.
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
                Cell::Str(s) => out.push_str(&Value::from(s.as_ref()).to_string()),
                Cell::Timestamp(us) => out.push_str(&Value::from(format_timestamp(*us)).to_string()),
                Cell::Coordinates(c) => out.push_str(&serde_json::json!(c).to_string()),
            }
        }
        if let Some(rescued) = &self.rescued {
            out.push_str(",\"");
            out.push_str(RESCUED_COLUMN);
            out.push_str("\":");
            out.push_str(rescued.as_str());
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
    fn rescued_fields_are_equal_when_they_hold_the_same_json_as_written_anew() {
        let rescued = |text: &str| Rescued::from_json_text(text.to_string());
        assert_eq!(rescued(r#"{"a": 2.50, "b": [1e2]}"#), rescued(r#"{"b":[100.0],"a":2.5}"#));
        assert_eq!(rescued(r#"{"x":-19.9211e31}"#), rescued(r#"{"x":-1.9921100000000002e+32}"#));
        assert_ne!(rescued(r#"{"a": 1}"#), rescued(r#"{"a": 2}"#));
        assert_ne!(rescued(r#"{"a": 1}"#), rescued(r#"{"a": 1, "b": 1}"#));
        assert_ne!(rescued(r#"{"a": "1"}"#), rescued(r#"{"a": 1}"#));
    }

    #[test]
    fn timestamps_format_as_iso_seconds_in_utc() {
        assert_eq!(format_timestamp(1_598_586_767_000_000), "2020-08-28T03:52:47");
        assert_eq!(format_timestamp(1_598_586_767_250_000), "2020-08-28T03:52:47.250");
    }
}
