//! Decoding and cleaning (docs/cleaning.md), the same for the stream and the batch path.
//!
//! Each table is described once, as a list of [`Column`]s, each with the [`Rule`] that
//! derives it from the raw JSON object. [`clean`] applies a table's rules in order; there is
//! no per-table copy of the logic, only per-table data. A record that cannot be made to fit
//! the clean schema is a [`Rejection`] with a reason a person can act on.

use std::borrow::Cow;
use std::cell::Cell as Flag;

use serde::de::DeserializeSeed;
use serde_json::{Map, Value};

use crate::Table;

mod raw;
mod record;
mod rules;
#[cfg(test)]
mod test_support;
mod values;

pub use record::{Cell, CleanRecord, RESCUED_COLUMN, Rescued, format_timestamp};
pub use rules::{Column, ColumnType, RULES_VERSION, Rule};

use raw::{FieldValue, NULL, RawRecord, TopLevel, TopLevelOf};
pub use values::parse_timestamp;
use values::{float, follower_count, integer, save_path, string, timestamp};

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
/// once into a [`RawRecord`] that borrows its strings, and the text of the fields no rule reads,
/// from `raw`; `decode` + `clean` give the same answer (the fuzz targets check that they agree;
/// [`Rescued`] compares the JSON the texts hold, since a parsed map no longer has the text).
pub fn clean_bytes(table: Table, raw: &[u8]) -> Result<CleanRecord<'_>, Rejection> {
    let met_unread = Flag::new(false);
    let top = TopLevelOf { reads: table.read_fields(), met_unread: &met_unread };
    // UTF-8 is checked once for the whole record, which is quicker than serde_json's check of
    // each string of it apart; text that is not UTF-8 is parsed from its bytes, for the reason.
    let parsed = match simdutf8::basic::from_utf8(raw) {
        Ok(text) => parse_top_level(top, &mut serde_json::Deserializer::from_str(text)),
        Err(_) => parse_top_level(top, &mut serde_json::Deserializer::from_slice(raw)),
    };
    match parsed {
        Ok(TopLevel::Object(record)) => clean_raw(table, &record),
        Ok(TopLevel::Other(found)) => reject(format!("not a JSON object (found {found})")),
        // Past a field no rule reads, the fault is named by the parse `decode` does (see
        // `TopLevelOf::met_unread`): rare, and only ever for records that are then rejected.
        Err(_) if met_unread.get() => decode(raw).and_then(|map| clean(table, &map).map(CleanRecord::into_owned)),
        Err(e) => Err(invalid_json(raw, e)),
    }
}

/// The record's top level, and nothing after it but whitespace.
fn parse_top_level<'de, R: serde_json::de::Read<'de>>(
    top: TopLevelOf<'_>,
    deserializer: &mut serde_json::Deserializer<R>,
) -> Result<TopLevel<'de>, serde_json::Error> {
    top.deserialize(&mut *deserializer).and_then(|top| deserializer.end().map(|()| top))
}

/// Applies the table's rules to one raw record.
pub fn clean(table: Table, raw: &Map<String, Value>) -> Result<CleanRecord<'_>, Rejection> {
    clean_raw(table, &RawRecord::from_map(raw, table.read_fields()))
}

fn clean_raw<'a>(table: Table, raw: &RawRecord<'a>) -> Result<CleanRecord<'a>, Rejection> {
    let cells = table
        .columns()
        .iter()
        .map(|column| column.rule.apply(raw).map_err(|Rejection(why)| Rejection(format!("{}: {why}", column.name))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CleanRecord { cells, rescued: raw.unread_json().map(Rescued::from_json_text) })
}

impl Rule {
    fn apply<'a>(self, raw: &RawRecord<'a>) -> Result<Cell<'a>, Rejection> {
        let field = |name: &str| raw.get(name).unwrap_or(&NULL);
        match self {
            Rule::Key(names) => {
                let Some(value) = names.iter().find_map(|n| raw.get(n).filter(|v| **v != FieldValue::Null)) else {
                    // Present but null is a different fault upstream than absent: say which.
                    return match names.iter().find(|n| raw.get(n).is_some()) {
                        Some(null) => reject(format!("key field `{null}` is null")),
                        None => reject(format!("missing key field `{}`", names[0])),
                    };
                };
                match integer(value)? {
                    Some(v) => Ok(Cell::Int(v)),
                    None => reject(format!("empty key field `{}`", names[0])),
                }
            }
            Rule::Int(name) => Ok(integer(field(name))?.map_or(Cell::Null, Cell::Int)),
            Rule::Text { field: name, nulls } => Ok(string(field(name), nulls)?.map_or(Cell::Null, Cell::Str)),
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
                Ok(if parts.is_empty() { Cell::Null } else { Cell::Str(Cow::Owned(parts.join(" "))) })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use super::test_support::{cell, clean_json, pin, rejection};

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

    fn rescued(table: Table, raw: &str) -> Option<String> {
        clean_bytes(table, raw.as_bytes()).expect("record cleans").rescued.map(|r| r.as_str().to_string())
    }

    #[test]
    fn fields_no_rule_reads_are_rescued_with_their_values_as_sent() {
        let raw = r#"{"index": 7, "new_field": "important", "extra": {"a": 1, "b": [1.50, 2e3, -0, 12345678901234567890123]},
            "title": "t", "note": "caf\u00e9 \"q\"", "flag": true, "nothing": null}"#;
        assert_eq!(
            rescued(Table::Pin, raw).as_deref(),
            Some(
                r#"{"new_field":"important","extra":{"a": 1, "b": [1.50, 2e3, -0, 12345678901234567890123]},"note":"caf\u00e9 \"q\"","flag":true,"nothing":null}"#
            )
        );
        let line = clean_bytes(Table::Pin, br#"{"index": 7, "new_field": "important", "extra": {"a": 1}}"#)
            .unwrap()
            .to_json_line(Table::Pin);
        assert!(
            line.ends_with(r#""downloaded":null,"_rescued":{"new_field":"important","extra":{"a": 1}}}"#),
            "{line}"
        );
        assert!(serde_json::from_str::<Value>(&line).is_ok(), "{line}");
    }

    #[test]
    fn a_record_whose_fields_are_all_read_rescues_nothing() {
        let all_read = r#"{"index": 1, "ind": 2, "title": "t", "downloaded": 0}"#;
        assert_eq!(rescued(Table::Pin, all_read), None);
        assert_eq!(rescued(Table::Geo, r#"{"ind": 1, "latitude": 1, "longitude": 2, "country": "x"}"#), None);
        assert_eq!(rescued(Table::User, r#"{"ind": 1, "first_name": "a", "last_name": "b"}"#), None);
        let line = clean_bytes(Table::Pin, all_read.as_bytes()).unwrap().to_json_line(Table::Pin);
        assert!(!line.contains(RESCUED_COLUMN), "{line}");
    }

    #[test]
    fn what_a_table_rescues_depends_on_its_own_rules() {
        // `title` is a pin field: a geo record that carries one keeps it aside.
        assert_eq!(rescued(Table::Geo, r#"{"ind": 1, "title": "t", "index": 2}"#).as_deref(), Some(r#"{"title":"t"}"#));
    }

    #[test]
    fn rescued_keys_are_json_strings_and_a_repeated_key_keeps_its_last_value() {
        let raw = r#"{"ind": 1, "ne\u0077 \"key\"": [], "tab\tkey": {}, "dup": 1, "other": 2, "dup": "last"}"#;
        let text = rescued(Table::User, raw).unwrap();
        assert_eq!(text, r#"{"new \"key\"":[],"tab\tkey":{},"other":2,"dup":"last"}"#);
        let object: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(object["new \"key\""], serde_json::json!([]));
    }

    #[test]
    fn a_rejected_record_is_rejected_whatever_it_rescues() {
        assert_eq!(
            clean_bytes(Table::User, br#"{"ind": 1, "age": "twenty", "extra": 1}"#),
            Err(Rejection(r#"age: cannot convert "twenty" to an integer"#.into()))
        );
    }

    #[test]
    fn records_that_cannot_fit_are_rejected_with_a_reason() {
        let cases: [(Table, &[u8], &str); 8] = [
            (Table::Pin, b"[1,2]", "not a JSON object (found an array)"),
            (Table::Pin, b"{\"index\": ", "invalid JSON"),
            (Table::Pin, b"\xff\xfe", "not UTF-8"),
            (Table::Pin, br#"{"title": "x"}"#, "ind: missing key field `index`"),
            (Table::Geo, br#"{"ind": null}"#, "ind: key field `ind` is null"),
            (Table::Pin, br#"{"index": null, "title": "x"}"#, "ind: key field `index` is null"),
            (Table::User, br#"{"first_name": "a"}"#, "ind: missing key field `ind`"),
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
}
