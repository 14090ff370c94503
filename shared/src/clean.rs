//! Decoding and cleaning (docs/cleaning.md), the same for the stream and the batch path.
//!
//! Each table is described once, as a list of [`Column`]s, each with the [`Rule`] that
//! derives it from the raw JSON object. [`clean`] applies a table's rules in order; there is
//! no per-table copy of the logic, only per-table data. A record that cannot be made to fit
//! the clean schema is a [`Rejection`] with a reason a person can act on.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::Table;
use crate::json::{Text, visit_other_kinds};

/// The type of a clean column; maps onto Arrow/Delta types in `schema.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int64,
    Utf8,
    /// Microseconds since the epoch, UTC.
    Timestamp,
    /// `[latitude, longitude]`.
    Coordinates,
}

/// How a clean column is derived from the raw record.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// The join key: a required integer, read from the first of these fields that is present.
    Key(&'static [&'static str]),
    /// An optional integer.
    Int(&'static str),
    /// A string; empty strings and the listed placeholders become null.
    Text { field: &'static str, nulls: &'static [&'static str] },
    /// `"211k"` → 211000, `"1M"` → 1000000, `"92"` → 92; placeholders become null.
    FollowerCount { field: &'static str, nulls: &'static [&'static str] },
    /// `"Local save in /data/x"` → `"/data/x"`.
    SavePath(&'static str),
    /// `"2020-08-28 03:52:47"`, ISO 8601 with `T`, optional fraction and offset; UTC.
    Timestamp(&'static str),
    /// `[latitude, longitude]` from two numeric fields, named in that order.
    Coordinates(&'static [&'static str; 2]),
    /// `first + " " + last` from two text fields, named in that order.
    FullName(&'static [&'static str; 2]),
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub rule: Rule,
}

const fn col(name: &'static str, ty: ColumnType, rule: Rule) -> Column {
    Column { name, ty, rule }
}

const fn text(name: &'static str, nulls: &'static [&'static str]) -> Column {
    col(name, ColumnType::Utf8, Rule::Text { field: name, nulls })
}

use ColumnType::{Coordinates as CoordinatesType, Int64, Timestamp as TimestampType, Utf8};

const PIN: &[Column] = &[
    col("ind", Int64, Rule::Key(&["index", "ind"])),
    text("unique_id", &[]),
    text("title", &["No Title Data Available"]),
    text("description", &["No description available Story format", "No description available", "Untitled"]),
    col("follower_count", Int64, Rule::FollowerCount { field: "follower_count", nulls: &["User Info Error"] }),
    text("poster_name", &["User Info Error"]),
    text("tag_list", &["N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e"]),
    text("is_image_or_video", &[]),
    text("image_src", &["Image src error."]),
    col("save_location", Utf8, Rule::SavePath("save_location")),
    text("category", &[]),
    // The original pipeline dropped `downloaded`; pinpipe keeps it after the others (docs/records.md).
    col("downloaded", Int64, Rule::Int("downloaded")),
];

const GEO: &[Column] = &[
    col("ind", Int64, Rule::Key(&["ind", "index"])),
    text("country", &[]),
    col("coordinates", CoordinatesType, Rule::Coordinates(&["latitude", "longitude"])),
    col("timestamp", TimestampType, Rule::Timestamp("timestamp")),
];

const USER: &[Column] = &[
    col("ind", Int64, Rule::Key(&["ind", "index"])),
    col("user_name", Utf8, Rule::FullName(&["first_name", "last_name"])),
    col("age", Int64, Rule::Int("age")),
    col("date_joined", TimestampType, Rule::Timestamp("date_joined")),
];

impl Rule {
    /// The raw fields the rule reads, in the order it reads them.
    pub fn fields(self) -> Vec<&'static str> {
        match self {
            Rule::Key(fields) => fields.to_vec(),
            Rule::Int(field)
            | Rule::Text { field, .. }
            | Rule::FollowerCount { field, .. }
            | Rule::SavePath(field)
            | Rule::Timestamp(field) => vec![field],
            Rule::Coordinates(fields) | Rule::FullName(fields) => fields.to_vec(),
        }
    }
}

impl Table {
    /// The clean columns of the table, in the order of docs/records.md.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::Pin => PIN,
            Table::Geo => GEO,
            Table::User => USER,
        }
    }

    /// The raw fields the table's rules read, each once, in column order: the one list the
    /// property tests, the fuzzers and anything else that builds raw records take their keys
    /// from.
    pub fn raw_fields(self) -> Vec<&'static str> {
        let mut fields: Vec<&'static str> = Vec::new();
        for field in self.columns().iter().flat_map(|c| c.rule.fields()) {
            if !fields.contains(&field) {
                fields.push(field);
            }
        }
        fields
    }
}

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

/// Why a record could not be cleaned. Goes to the quarantine table with the raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

fn reject<T>(reason: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection(reason.into()))
}

/// Decodes raw bytes (a record's JSON text) into a JSON object.
pub fn decode(raw: &[u8]) -> Result<Map<String, Value>, Rejection> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => reject(format!("not a JSON object (found {})", kind(&other))),
        Err(e) => Err(invalid_json(raw, e)),
    }
}

fn invalid_json(raw: &[u8], e: serde_json::Error) -> Rejection {
    if std::str::from_utf8(raw).is_err() {
        Rejection(format!("not UTF-8 JSON text: {e}"))
    } else {
        Rejection(format!("invalid JSON: {e}"))
    }
}

/// Decodes and cleans one raw record: the hot path of both ingest paths. The record is parsed
/// once into a [`RawRecord`] that borrows its strings from `raw`; `decode` + `clean` give the
/// same answer (the fuzz targets check that they agree).
pub fn clean_bytes(table: Table, raw: &[u8]) -> Result<CleanRecord, Rejection> {
    match serde_json::from_slice::<TopLevel>(raw) {
        Ok(TopLevel::Object(record)) => clean_raw(table, &record),
        Ok(TopLevel::Other(found)) => reject(format!("not a JSON object (found {found})")),
        Err(e) => Err(invalid_json(raw, e)),
    }
}

/// Applies the table's rules to one raw record.
pub fn clean(table: Table, raw: &Map<String, Value>) -> Result<CleanRecord, Rejection> {
    clean_raw(table, &RawRecord::from_map(raw))
}

fn clean_raw(table: Table, raw: &RawRecord) -> Result<CleanRecord, Rejection> {
    let cells = table
        .columns()
        .iter()
        .map(|column| column.rule.apply(raw).map_err(|Rejection(why)| Rejection(format!("{}: {why}", column.name))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CleanRecord { cells })
}

/// A field of a raw record. Strings are borrowed from the record's bytes unless they hold
/// escapes. No rule looks inside arrays and objects, so only their kind is kept.
#[derive(Debug, Clone, PartialEq)]
enum FieldValue<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array,
    Object,
}

static NULL: FieldValue<'static> = FieldValue::Null;

impl FieldValue<'_> {
    fn kind(&self) -> &'static str {
        match self {
            FieldValue::Null => "null",
            FieldValue::Bool(_) => "a boolean",
            FieldValue::Number(_) => "a number",
            FieldValue::Str(_) => "a string",
            FieldValue::Array => "an array",
            FieldValue::Object => "an object",
        }
    }
}

/// As JSON text, the way a reason quotes a value.
impl fmt::Display for FieldValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Null => f.write_str("null"),
            FieldValue::Bool(b) => write!(f, "{b}"),
            FieldValue::Number(n) => write!(f, "{n}"),
            FieldValue::Str(s) => write!(f, "{}", Value::from(s.as_ref())),
            FieldValue::Array => f.write_str("[...]"),
            FieldValue::Object => f.write_str("{...}"),
        }
    }
}

impl<'a> From<&'a Value> for FieldValue<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => FieldValue::Null,
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Number(n) => FieldValue::Number(n.clone()),
            Value::String(s) => FieldValue::Str(Cow::Borrowed(s)),
            Value::Array(_) => FieldValue::Array,
            Value::Object(_) => FieldValue::Object,
        }
    }
}

/// The top-level fields of one raw record, in input order.
#[derive(Debug, Default)]
struct RawRecord<'a> {
    fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
}

impl<'a> RawRecord<'a> {
    fn from_map(map: &'a Map<String, Value>) -> Self {
        Self { fields: map.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), FieldValue::from(v))).collect() }
    }

    /// The field's value; of a repeated key the last one counts, as when parsing into a map.
    fn get(&self, name: &str) -> Option<&FieldValue<'a>> {
        self.fields.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value)
    }
}

/// What a record's JSON text holds at the top: an object, or the kind of anything else.
enum TopLevel<'a> {
    Object(RawRecord<'a>),
    Other(&'static str),
}

/// Visits any JSON value. Nested arrays and objects are parsed in full (as `Value`s, then
/// dropped) so that exactly the texts `decode` rejects are rejected here too.
struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = FieldValue<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(FieldValue::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(FieldValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(FieldValue::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(FieldValue::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(v).map_or(FieldValue::Null, FieldValue::Number))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(FieldValue::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FieldValue::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(FieldValue::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Value>()?.is_some() {}
        Ok(FieldValue::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<String, Value>()?.is_some() {}
        Ok(FieldValue::Object)
    }
}

impl<'de> Deserialize<'de> for FieldValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopVisitor;
        impl<'de> Visitor<'de> for TopVisitor {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Text(key), value)) = map.next_entry::<Text, FieldValue>()? {
                    fields.push((key, value));
                }
                Ok(TopLevel::Object(RawRecord { fields }))
            }
            // Anything else: parsed as decode would, then named.
            visit_other_kinds!(TopLevel);
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Ok(TopLevel::Other(AnyVisitor.visit_seq(seq)?.kind()))
            }
        }
        deserializer.deserialize_any(TopVisitor)
    }
}

impl Rule {
    fn apply(self, raw: &RawRecord) -> Result<Cell, Rejection> {
        let field = |name: &str| raw.get(name).unwrap_or(&NULL);
        match self {
            Rule::Key(names) => {
                let Some(value) = names.iter().find_map(|n| raw.get(n).filter(|v| **v != FieldValue::Null)) else {
                    return reject(format!("missing key field `{}`", names[0]));
                };
                match integer(value)? {
                    Some(v) => Ok(Cell::Int(v)),
                    None => reject(format!("empty key field `{}`", names[0])),
                }
            }
            Rule::Int(name) => Ok(integer(field(name))?.map_or(Cell::Null, Cell::Int)),
            Rule::Text { field: name, nulls } => {
                Ok(string(field(name), nulls)?.map_or(Cell::Null, |s| Cell::Str(s.into_owned())))
            }
            Rule::FollowerCount { field: name, nulls } => {
                Ok(follower_count(field(name), nulls)?.map_or(Cell::Null, Cell::Int))
            }
            Rule::SavePath(name) => Ok(string(field(name), &[])?.and_then(save_path).map_or(Cell::Null, Cell::Str)),
            Rule::Timestamp(name) => Ok(timestamp(field(name))?.map_or(Cell::Null, Cell::Timestamp)),
            Rule::Coordinates([latitude, longitude]) => {
                let lat = float(field(latitude)).map_err(|Rejection(r)| Rejection(format!("{latitude}: {r}")))?;
                let lon = float(field(longitude)).map_err(|Rejection(r)| Rejection(format!("{longitude}: {r}")))?;
                match (lat, lon) {
                    (None, None) => Ok(Cell::Null),
                    (Some(lat), Some(lon)) => {
                        if !(-90.0..=90.0).contains(&lat) {
                            return reject(format!("{latitude} {lat} is outside [-90, 90]"));
                        }
                        if !(-180.0..=180.0).contains(&lon) {
                            return reject(format!("{longitude} {lon} is outside [-180, 180]"));
                        }
                        Ok(Cell::Coordinates([lat, lon]))
                    }
                    (Some(_), None) => reject(format!("{latitude} given without {longitude}")),
                    (None, Some(_)) => reject(format!("{longitude} given without {latitude}")),
                }
            }
            Rule::FullName(names) => {
                let parts: Vec<Cow<str>> =
                    names.into_iter().filter_map(|n| string(field(n), &[]).transpose()).collect::<Result<_, _>>()?;
                Ok(if parts.is_empty() { Cell::Null } else { Cell::Str(parts.join(" ")) })
            }
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string value with placeholders and blanks as null. Numbers and booleans become their
/// text (the emulator serialises database rows loosely); arrays and objects are rejected.
fn string<'v>(value: &'v FieldValue, nulls: &[&str]) -> Result<Option<Cow<'v, str>>, Rejection> {
    let s = match value {
        FieldValue::Null => return Ok(None),
        FieldValue::Str(s) => Cow::Borrowed(s.as_ref()),
        FieldValue::Number(n) => Cow::Owned(n.to_string()),
        FieldValue::Bool(b) => Cow::Owned(b.to_string()),
        other => return reject(format!("expected a string, found {}", other.kind())),
    };
    let trimmed = s.trim();
    if trimmed.is_empty() || nulls.contains(&trimmed) {
        return Ok(None);
    }
    Ok(Some(s))
}

/// An integer given as a JSON number (integral) or a string of digits; blank is null.
fn integer(value: &FieldValue) -> Result<Option<i64>, Rejection> {
    match value {
        FieldValue::Null => Ok(None),
        FieldValue::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => reject(format!("{n} is not an integer")),
        },
        FieldValue::Str(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Ok(None);
            }
            match decimal_integer(t) {
                Some(v) => Ok(Some(v)),
                None => reject(format!("cannot convert {s:?} to an integer")),
            }
        }
        other => reject(format!("expected an integer, found {}", other.kind())),
    }
}

/// The integer a decimal numeral writes exactly (`42`, `+42`, `42.000`, `4.2e1`), if it is
/// one and fits an i64. Going through f64 would round `4.0000000000000000001` to 4.
fn decimal_integer(t: &str) -> Option<i64> {
    let (negative, unsigned) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exponent) = unsigned.split_once(['e', 'E']).map_or((unsigned, None), |(m, e)| (m, Some(e)));
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !is_digits(whole) || !is_digits(fraction) {
        return None;
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let magnitude = e.strip_prefix(['+', '-']).unwrap_or(e);
            if magnitude.is_empty() || !is_digits(magnitude) {
                return None;
            }
            // Capped: far past the 19 digits an i64 has, the exact size no longer matters.
            let significant = magnitude.trim_start_matches('0');
            let magnitude = if significant.len() > 6 { 1_000_000 } else { significant.parse().unwrap_or(0) };
            if e.starts_with('-') { -magnitude } else { magnitude }
        }
    };
    // The digits before `point` are the integer part; every digit after it must be 0.
    let point = i64::try_from(whole.len()).ok()?.saturating_add(exponent);
    let limit = i128::from(i64::MAX) + 1;
    let mut value: i128 = 0;
    let mut position: i64 = 0;
    for digit in whole.bytes().chain(fraction.bytes()).map(|b| i128::from(b - b'0')) {
        if position < point {
            value = value * 10 + digit;
            if value > limit {
                return None;
            }
        } else if digit != 0 {
            return None;
        }
        position += 1;
    }
    while value != 0 && position < point {
        value *= 10;
        if value > limit {
            return None;
        }
        position += 1;
    }
    i64::try_from(if negative { -value } else { value }).ok()
}

/// A finite float given as a JSON number or a numeric string; blank is null.
fn float(value: &FieldValue) -> Result<Option<f64>, Rejection> {
    let f = match value {
        FieldValue::Null => return Ok(None),
        FieldValue::Number(n) => n.as_f64(),
        FieldValue::Str(s) if s.trim().is_empty() => return Ok(None),
        FieldValue::Str(s) => s.trim().parse::<f64>().ok(),
        other => return reject(format!("expected a number, found {}", other.kind())),
    };
    match f {
        Some(f) if f.is_finite() => Ok(Some(f)),
        _ => reject(format!("cannot convert {value} to a number")),
    }
}

/// Follower counts as the source shows them: `92`, `211k`, `1M` (also `1.5k`, `12,345`).
fn follower_count(value: &FieldValue, nulls: &[&str]) -> Result<Option<i64>, Rejection> {
    let FieldValue::Str(s) = value else {
        return match integer(value)? {
            Some(n) if n < 0 => reject(format!("cannot convert {value} to a follower count (a count is not negative)")),
            n => Ok(n),
        };
    };
    let t = s.trim();
    if t.is_empty() || nulls.contains(&t) {
        return Ok(None);
    }
    let (number, multiplier) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1_000i64),
        Some((i, 'M' | 'm')) => (&t[..i], 1_000_000i64),
        _ => (t, 1),
    };
    let number = number.trim().replace(',', "");
    let bad =
        || Rejection(format!("cannot convert {s:?} to a follower count (expected digits with an optional k or M)"));
    let (whole, fraction) = number.split_once('.').unwrap_or((&number, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // Exact decimal arithmetic: 1.5k is 1500, but 1.2345k is not a whole number of followers.
    let scale = 10i64.checked_pow(fraction.len() as u32).ok_or_else(bad)?;
    let digits: i64 = format!("{whole}{fraction}").parse().map_err(|_| bad())?;
    let scaled = digits.checked_mul(multiplier).ok_or_else(bad)?;
    if scaled % scale != 0 {
        return Err(bad());
    }
    Ok(Some(scaled / scale))
}

/// `Local save in /data/x` → `/data/x`. The prefix goes however often it repeats (a value
/// cleaned twice, or written twice), so no clean value still starts with it; blank is null.
fn save_path(s: Cow<str>) -> Option<String> {
    const PREFIX: &str = "Local save in ";
    let mut rest = s.trim_start();
    if !rest.starts_with(PREFIX) {
        return Some(s.into_owned());
    }
    while let Some(after) = rest.strip_prefix(PREFIX) {
        rest = after.trim_start();
    }
    let path = rest.trim_end();
    (!path.is_empty()).then(|| path.to_string())
}

/// Timestamps as `2020-08-28 03:52:47` or ISO 8601 (`T`, fraction, `Z` or offset); naive ones are UTC.
fn timestamp(value: &FieldValue) -> Result<Option<i64>, Rejection> {
    let s = match value {
        FieldValue::Null => return Ok(None),
        FieldValue::Str(s) => s.trim(),
        other => return reject(format!("expected a timestamp string, found {}", other.kind())),
    };
    if s.is_empty() {
        return Ok(None);
    }
    parse_timestamp(s).map(Some).ok_or_else(|| Rejection(format!("cannot parse {s:?} as a timestamp")))
}

fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.with_timezone(&Utc).timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros())
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
    use serde_json::json;

    fn clean_json(table: Table, raw: Value) -> Result<CleanRecord, Rejection> {
        clean_bytes(table, raw.to_string().as_bytes())
    }

    fn cell(table: Table, raw: Value, column: &str) -> Cell {
        let record = clean_json(table, raw).expect("record cleans");
        let i = table.columns().iter().position(|c| c.name == column).expect("column exists");
        record.cells[i].clone()
    }

    fn pin(overrides: Value) -> Value {
        let mut base = json!({"index": 7528, "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf", "title": "Room ideas",
            "description": "Nice room", "poster_name": "Jane", "follower_count": "211k",
            "tag_list": "Home Decor,Diy Decor,Room Ideas", "is_image_or_video": "image", "image_src": "https://i.pinimg.com/x.jpg",
            "downloaded": 1, "save_location": "Local save in /data/home-decor", "category": "home-decor"});
        for (k, v) in overrides.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    fn rejection(table: Table, raw: Value) -> String {
        clean_json(table, raw).expect_err("record is rejected").0
    }

    #[test]
    fn the_spec_pin_example_cleans_to_nulls_and_a_path() {
        let raw = json!({"index": 7528, "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf", "title": "No Title Data Available",
            "description": "No description available Story format", "poster_name": "User Info Error",
            "follower_count": "User Info Error", "tag_list": "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e",
            "is_image_or_video": "multi-video(story page format)", "image_src": "Image src error.",
            "downloaded": 0, "save_location": "Local save in /data/mens-fashion", "category": "mens-fashion"});
        let record = clean_json(Table::Pin, raw).unwrap();
        assert_eq!(
            record.to_json_line(Table::Pin),
            r#"{"ind":7528,"unique_id":"fbe53c66-3442-4773-b19e-d3ec6f54dddf","title":null,"description":null,"follower_count":null,"poster_name":null,"tag_list":null,"is_image_or_video":"multi-video(story page format)","image_src":null,"save_location":"/data/mens-fashion","category":"mens-fashion","downloaded":0}"#
        );
    }

    #[test]
    fn every_placeholder_becomes_null_in_its_column() {
        let cases = [
            ("title", "No Title Data Available"),
            ("description", "No description available Story format"),
            ("description", "No description available"),
            ("description", "Untitled"),
            ("poster_name", "User Info Error"),
            ("follower_count", "User Info Error"),
            ("tag_list", "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e"),
            ("image_src", "Image src error."),
        ];
        for (column, placeholder) in cases {
            assert_eq!(
                cell(Table::Pin, pin(json!({ column: placeholder })), column),
                Cell::Null,
                "{column} = {placeholder:?}"
            );
        }
    }

    #[test]
    fn placeholders_are_only_null_in_their_own_column() {
        assert_eq!(cell(Table::Pin, pin(json!({"title": "Untitled"})), "title"), Cell::Str("Untitled".into()));
    }

    #[test]
    fn empty_strings_become_null_in_every_column() {
        for column in [
            "unique_id",
            "title",
            "description",
            "poster_name",
            "tag_list",
            "is_image_or_video",
            "image_src",
            "save_location",
            "category",
            "follower_count",
            "downloaded",
        ] {
            assert_eq!(cell(Table::Pin, pin(json!({ column: "" })), column), Cell::Null, "{column}");
            assert_eq!(cell(Table::Pin, pin(json!({ column: "  " })), column), Cell::Null, "{column} blank");
        }
        assert_eq!(cell(Table::Geo, json!({"ind": 1, "country": ""}), "country"), Cell::Null);
    }

    #[test]
    fn follower_counts_scale_k_and_m() {
        for (raw, expected) in [
            ("211k", 211_000),
            ("1M", 1_000_000),
            ("92", 92),
            ("0", 0),
            ("1.5k", 1_500),
            ("12,345", 12_345),
            ("7K", 7_000),
            (" 3k ", 3_000),
        ] {
            assert_eq!(
                cell(Table::Pin, pin(json!({"follower_count": raw})), "follower_count"),
                Cell::Int(expected),
                "{raw}"
            );
        }
        assert_eq!(cell(Table::Pin, pin(json!({"follower_count": 92})), "follower_count"), Cell::Int(92));
    }

    #[test]
    fn unconvertible_follower_counts_are_rejected() {
        for raw in ["lots", "k", "1.2345k", "12kk", "-5", "1e3"] {
            let why = rejection(Table::Pin, pin(json!({"follower_count": raw})));
            assert!(why.starts_with("follower_count: cannot convert"), "{raw}: {why}");
        }
    }

    /// Found by fuzzing (`fuzz/`, target `clean_structured`): `"-5"` was rejected but the
    /// number -5 was accepted as a follower count.
    #[test]
    fn negative_follower_counts_are_rejected_as_numbers_too() {
        assert_eq!(
            rejection(Table::Pin, pin(json!({"follower_count": -38371}))),
            "follower_count: cannot convert -38371 to a follower count (a count is not negative)"
        );
        assert!(
            rejection(Table::Pin, pin(json!({"follower_count": -5.0}))).starts_with("follower_count: cannot convert")
        );
        assert_eq!(cell(Table::Pin, pin(json!({"follower_count": 0})), "follower_count"), Cell::Int(0));
        assert_eq!(cell(Table::Pin, pin(json!({"follower_count": -0.0})), "follower_count"), Cell::Int(0));
    }

    #[test]
    fn numbers_given_as_strings_are_integers() {
        let record = clean_json(Table::Pin, pin(json!({"index": "7528", "downloaded": "1"}))).unwrap();
        assert_eq!(record.ind(), 7528);
        assert_eq!(cell(Table::Pin, pin(json!({"downloaded": "1"})), "downloaded"), Cell::Int(1));
        assert_eq!(cell(Table::Pin, pin(json!({"index": 7528.0})), "ind"), Cell::Int(7528));
        assert_eq!(cell(Table::User, json!({"ind": "3", "age": "20"}), "age"), Cell::Int(20));
    }

    /// Found by fuzzing (`fuzz/`, target `clean_structured`): integers given as text went
    /// through f64, so `"2074688218111.000000000003437487075"` was accepted as 2074688218111.
    #[test]
    fn integers_given_as_text_are_exact_or_rejected() {
        for (raw, expected) in [
            ("42", 42),
            ("+42", 42),
            ("-0", 0),
            ("42.000", 42),
            ("5.", 5),
            ("1e3", 1000),
            ("4.2E1", 42),
            ("150e-1", 15),
            ("0e999999999999999999999", 0),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
            ("1e18", 1_000_000_000_000_000_000),
        ] {
            assert_eq!(cell(Table::User, json!({"ind": 1, "age": raw}), "age"), Cell::Int(expected), "{raw}");
        }
        for raw in [
            "2074688218111.000000000003437487075",
            "4.0000000000000000001",
            "1e-400",
            "15e-1",
            "9223372036854775808",
            "-9223372036854775809",
            "1e19",
            "1e999999999999",
            "inf",
            "NaN",
            ".",
            "e5",
            "1e",
            "+-1",
            "0x10",
            "1_000",
        ] {
            let why = rejection(Table::User, json!({"ind": 1, "age": raw}));
            assert_eq!(why, format!("age: cannot convert {raw:?} to an integer"));
        }
        assert!(rejection(Table::Pin, pin(json!({"index": "7528.5"}))).starts_with("ind: cannot convert"));
    }

    #[test]
    fn index_is_renamed_to_ind_and_other_tables_accept_either() {
        assert_eq!(Table::Pin.columns()[0].name, "ind");
        assert_eq!(clean_json(Table::Pin, pin(json!({"index": 5}))).unwrap().ind(), 5);
        assert_eq!(clean_json(Table::Geo, json!({"index": 6})).unwrap().ind(), 6);
    }

    #[test]
    fn save_location_keeps_only_the_path() {
        assert_eq!(
            cell(Table::Pin, pin(json!({"save_location": "Local save in /data/mens-fashion"})), "save_location"),
            Cell::Str("/data/mens-fashion".into())
        );
        assert_eq!(
            cell(Table::Pin, pin(json!({"save_location": "/data/art"})), "save_location"),
            Cell::Str("/data/art".into())
        );
        assert_eq!(cell(Table::Pin, pin(json!({"save_location": "Local save in "})), "save_location"), Cell::Null);
    }

    /// Found by fuzzing (`fuzz/`, target `clean_structured`): a doubled prefix kept one
    /// `Local save in ` in the clean value, and a leading blank kept all of it.
    #[test]
    fn save_location_loses_a_repeated_or_indented_prefix() {
        for raw in [
            "Local save in Local save in /data/home-decor",
            "  Local save in /data/home-decor",
            "Local save in  Local save in /data/home-decor ",
        ] {
            assert_eq!(
                cell(Table::Pin, pin(json!({"save_location": raw})), "save_location"),
                Cell::Str("/data/home-decor".into()),
                "{raw:?}"
            );
        }
        assert_eq!(
            cell(Table::Pin, pin(json!({"save_location": "Local save in Local save in "})), "save_location"),
            Cell::Null
        );
    }

    #[test]
    fn strings_keep_unicode_and_non_breaking_spaces() {
        let description = "Cozy\u{a0}room… 居心地";
        assert_eq!(
            cell(Table::Pin, pin(json!({"description": description})), "description"),
            Cell::Str(description.into())
        );
    }

    #[test]
    fn column_orders_follow_the_spec() {
        let names = |t: Table| t.columns().iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(
            names(Table::Pin),
            [
                "ind",
                "unique_id",
                "title",
                "description",
                "follower_count",
                "poster_name",
                "tag_list",
                "is_image_or_video",
                "image_src",
                "save_location",
                "category",
                "downloaded"
            ]
        );
        assert_eq!(names(Table::Geo), ["ind", "country", "coordinates", "timestamp"]);
        assert_eq!(names(Table::User), ["ind", "user_name", "age", "date_joined"]);
    }

    #[test]
    fn geo_gets_coordinates_and_a_timestamp() {
        let raw = json!({"ind": 7528, "timestamp": "2020-08-28 03:52:47", "latitude": -89.9787, "longitude": -173.293, "country": "Albania"});
        assert_eq!(
            clean_json(Table::Geo, raw).unwrap().to_json_line(Table::Geo),
            r#"{"ind":7528,"country":"Albania","coordinates":[-89.9787,-173.293],"timestamp":"2020-08-28T03:52:47"}"#
        );
        let as_strings =
            json!({"ind": "1", "latitude": "10.5", "longitude": "-20", "timestamp": "2020-08-28T03:52:47"});
        assert_eq!(cell(Table::Geo, as_strings, "coordinates"), Cell::Coordinates([10.5, -20.0]));
    }

    #[test]
    fn space_separated_and_iso_timestamps_are_the_same_instant() {
        let expected = Cell::Timestamp(1_598_586_767_000_000);
        for raw in [
            "2020-08-28 03:52:47",
            "2020-08-28T03:52:47",
            "2020-08-28T03:52:47Z",
            "2020-08-28T05:52:47+02:00",
            "2020-08-28 03:52:47.000",
        ] {
            assert_eq!(cell(Table::Geo, json!({"ind": 1, "timestamp": raw}), "timestamp"), expected, "{raw}");
        }
        assert_eq!(
            cell(Table::Geo, json!({"ind": 1, "timestamp": "2020-08-28T03:52:47.25"}), "timestamp"),
            Cell::Timestamp(1_598_586_767_250_000)
        );
    }

    #[test]
    fn user_gets_a_user_name_and_a_join_timestamp() {
        let raw = json!({"ind": 7528, "first_name": "Abigail", "last_name": "Ali", "age": 20, "date_joined": "2015-10-24 11:23:51"});
        assert_eq!(
            clean_json(Table::User, raw).unwrap().to_json_line(Table::User),
            r#"{"ind":7528,"user_name":"Abigail Ali","age":20,"date_joined":"2015-10-24T11:23:51"}"#
        );
        assert_eq!(
            cell(Table::User, json!({"ind": 1, "first_name": "Abigail"}), "user_name"),
            Cell::Str("Abigail".into())
        );
        assert_eq!(cell(Table::User, json!({"ind": 1}), "user_name"), Cell::Null);
    }

    #[test]
    fn the_borrowing_parse_agrees_with_decode_and_clean() {
        let cases: [&[u8]; 16] = [
            br#"{"index": 1, "index": 2, "title": "first", "title": "last"}"#,
            br#"{"index": 3, "title": "esc\"aped \u00e9\n", "poster_name": "\ud83d\ude00"}"#,
            br#"{"index": 4, "extra": [1, {"a": [null, "x"]}], "more": {"b": {"c": []}}}"#,
            br#"{"index": 5, "extra": ["\ud800"]}"#,
            br#"{"index": 6, "extra": {"k": "\u12"}}"#,
            b"{\"index\": 7, \"extra\": [\"\xff\"]}",
            br#"{"index": 8, "title": 1e400}"#,
            br#"{"index": 9.0, "follower_count": -0.0, "downloaded": 18446744073709551615}"#,
            br#"{"index": 10, "title": true, "description": 12.5, "tag_list": null}"#,
            br#"{"index": 11} trailing"#,
            br#"{"index": 12,}"#,
            br#""a string""#,
            br#"[{"index": 13}]"#,
            b"-1.5e3",
            b"null",
            br#"{"ind\u0065x": 14, "save_location": "Local save in \/data"}"#,
        ];
        for raw in cases {
            for table in Table::ALL {
                let expected = decode(raw).and_then(|map| clean(table, &map));
                assert_eq!(clean_bytes(table, raw), expected, "{table} {}", String::from_utf8_lossy(raw));
            }
        }
        // The last of a repeated key counts, and escaped keys and values are unescaped.
        let pin = clean_bytes(Table::Pin, cases[0]).unwrap();
        assert_eq!((pin.ind(), &pin.cells[2]), (2, &Cell::Str("last".into())));
        let pin = clean_bytes(Table::Pin, cases[15]).unwrap();
        assert_eq!((pin.ind(), &pin.cells[9]), (14, &Cell::Str("/data".into())));
    }

    #[test]
    fn records_that_cannot_fit_are_rejected_with_a_reason() {
        let cases: [(Table, &[u8], &str); 6] = [
            (Table::Pin, b"[1,2]", "not a JSON object (found an array)"),
            (Table::Pin, b"{\"index\": ", "invalid JSON"),
            (Table::Pin, b"\xff\xfe", "not UTF-8"),
            (Table::Pin, br#"{"title": "x"}"#, "ind: missing key field `index`"),
            (Table::Geo, br#"{"ind": null}"#, "ind: missing key field `ind`"),
            (Table::User, br#"{"ind": ""}"#, "ind: empty key field `ind`"),
        ];
        for (table, raw, expected) in cases {
            let why = clean_bytes(table, raw).unwrap_err().0;
            assert!(why.starts_with(expected), "{raw:?}: {why}");
        }
        assert_eq!(
            rejection(Table::Geo, json!({"ind": 1, "timestamp": "yesterday"})),
            r#"timestamp: cannot parse "yesterday" as a timestamp"#
        );
        assert_eq!(
            rejection(Table::User, json!({"ind": 1, "date_joined": 20151024})),
            "date_joined: expected a timestamp string, found a number"
        );
        assert_eq!(
            rejection(Table::User, json!({"ind": 1, "age": "twenty"})),
            r#"age: cannot convert "twenty" to an integer"#
        );
        assert_eq!(rejection(Table::Pin, pin(json!({"index": 1.5}))), "ind: 1.5 is not an integer");
        assert_eq!(rejection(Table::Pin, pin(json!({"title": ["a"]}))), "title: expected a string, found an array");
        assert_eq!(
            rejection(Table::Geo, json!({"ind": 1, "latitude": 91, "longitude": 0})),
            "coordinates: latitude 91 is outside [-90, 90]"
        );
        assert_eq!(
            rejection(Table::Geo, json!({"ind": 1, "latitude": 1})),
            "coordinates: latitude given without longitude"
        );
        assert_eq!(
            rejection(Table::Geo, json!({"ind": 1, "latitude": "north", "longitude": 1})),
            r#"coordinates: latitude: cannot convert "north" to a number"#
        );
    }

    #[test]
    fn timestamps_format_as_iso_seconds_in_utc() {
        assert_eq!(format_timestamp(1_598_586_767_000_000), "2020-08-28T03:52:47");
        assert_eq!(format_timestamp(1_598_586_767_250_000), "2020-08-28T03:52:47.250");
    }
}
