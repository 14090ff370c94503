//! The parse of a raw record into its top-level fields, without building a JSON tree.
//!
//! The fields the table's rules read are parsed into [`FieldValue`]s. Every other field is kept
//! as the JSON text the client sent, borrowed from the record's bytes: the rescued fields of
//! docs/records.md. A record without such fields pays for nothing but one lookup per key.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::rules::ReadFields;
use crate::json::{Text, visit_other_kinds};

/// A field of a raw record. Strings are borrowed from the record's bytes unless they hold
/// escapes. No rule looks inside arrays and objects, so only their kind is kept.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum FieldValue<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array,
    Object,
}

pub(super) static NULL: FieldValue<'static> = FieldValue::Null;

impl FieldValue<'_> {
    pub(super) fn kind(&self) -> &'static str {
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

/// The top-level fields of one raw record: the values of those the table's rules read, and the
/// others (unread) as JSON text.
#[derive(Debug)]
pub(super) struct RawRecord<'a> {
    reads: &'static ReadFields,
    /// The value of each field the rules read, by its number in `reads`; of a repeated key the
    /// last, as when parsing into a map.
    values: Vec<Option<FieldValue<'a>>>,
    /// Fields no rule reads, in input order, each value as the JSON text the client sent
    /// (written anew only for a record that came as a parsed map, where that text is gone).
    unread: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> RawRecord<'a> {
    fn new(reads: &'static ReadFields) -> Self {
        Self { reads, values: std::iter::repeat_with(|| None).take(reads.len()).collect(), unread: Vec::new() }
    }

    /// The fields of a parsed record; those not in `reads` are unread.
    pub(super) fn from_map(map: &'a Map<String, Value>, reads: &'static ReadFields) -> Self {
        let mut record = Self::new(reads);
        for (key, value) in map {
            match reads.number(key) {
                Some(i) => record.values[i] = Some(FieldValue::from(value)),
                None => record.unread.push((Cow::Borrowed(key), Cow::Owned(value.to_string()))),
            }
        }
        record
    }

    /// The value of the field `name`, which a rule reads; `None` if the record lacks it.
    pub(super) fn get(&self, name: &str) -> Option<&FieldValue<'a>> {
        self.reads.number(name).and_then(|i| self.values[i].as_ref())
    }

    /// The unread fields as the text of one JSON object, in input order, each value as sent;
    /// of a repeated key only the last value, as for the fields the rules read. `None` if
    /// every field was read.
    pub(super) fn unread_json(&self) -> Option<String> {
        if self.unread.is_empty() {
            return None;
        }
        let size = self.unread.iter().map(|(key, value)| key.len() + value.len() + 4).sum::<usize>();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'{');
        for (i, (key, value)) in self.unread.iter().enumerate() {
            if self.unread[i + 1..].iter().any(|(later, _)| later == key) {
                continue;
            }
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, key.as_ref()).expect("writing to a Vec does not fail");
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'}');
        Some(String::from_utf8(out).expect("JSON text written from UTF-8 strings"))
    }
}

/// What a record's JSON text holds at the top: an object, or the kind of anything else.
pub(super) enum TopLevel<'a> {
    Object(RawRecord<'a>),
    Other(&'static str),
}

/// Parses a record's top level for a table whose rules read the fields `reads`.
pub(super) struct TopLevelOf<'r> {
    pub(super) reads: &'static ReadFields,
    /// Set once an unread field was met. Its value is scanned by serde_json's `RawValue`, which
    /// leaves escapes, number ranges and depth to a check of its own ([`is_valid_field_value`]);
    /// a parse that fails after that point may name a different fault than parsing the whole
    /// record into a `Value` would, so the caller asks that parse for the reason.
    pub(super) met_unread: &'r Cell<bool>,
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

impl<'de> DeserializeSeed<'de> for TopLevelOf<'_> {
    type Value = TopLevel<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevelOf<'_> {
    type Value = TopLevel<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut record = RawRecord::new(self.reads);
        while let Some(Text(key)) = map.next_key::<Text>()? {
            match self.reads.number(&key) {
                Some(i) => record.values[i] = Some(map.next_value::<FieldValue>()?),
                None => {
                    self.met_unread.set(true);
                    let value: &'de RawValue = map.next_value()?;
                    if !is_valid_field_value(value.get()) {
                        return Err(de::Error::custom("invalid JSON in a field no rule reads"));
                    }
                    record.unread.push((key, Cow::Borrowed(value.get())));
                }
            }
        }
        Ok(TopLevel::Object(record))
    }
    // Anything else: parsed as decode would, then named.
    visit_other_kinds!(TopLevel);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Ok(TopLevel::Other(AnyVisitor.visit_seq(seq)?.kind()))
    }
}

/// How many arrays and objects may nest in a field's value: serde_json parses at most 127 levels
/// (its recursion limit of 128), and the record's own object is one of them.
const MAX_FIELD_NESTING: usize = 126;

/// Whether a field's JSON text, as `RawValue` scanned it, is as valid as parsing the whole
/// record into a `Value` requires: escapes that make characters, numbers within range, nesting
/// within serde_json's limit. (The scan checked the syntax and UTF-8 only.) Never more
/// lenient than that parse; any text it refuses sends the record to that parse.
fn is_valid_field_value(text: &str) -> bool {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    ValidValue { nesting: 0 }.deserialize(&mut deserializer).is_ok() && deserializer.end().is_ok()
}

/// Visits a value in full, building nothing; `nesting` arrays and objects enclose it within
/// its field.
#[derive(Clone, Copy)]
struct ValidValue {
    nesting: usize,
}

impl ValidValue {
    fn inside<E: de::Error>(self) -> Result<ValidValue, E> {
        if self.nesting >= MAX_FIELD_NESTING {
            return Err(E::custom("nested too deep"));
        }
        Ok(ValidValue { nesting: self.nesting + 1 })
    }
}

impl<'de> DeserializeSeed<'de> for ValidValue {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValidValue {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let element = self.inside()?;
        while seq.next_element_seed(element)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let value = self.inside()?;
        // Keys are strings: visiting one checks its escapes like any string's.
        while map.next_key_seed(value)?.is_some() {
            map.next_value_seed(value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cell, CleanRecord, clean, clean_bytes, decode};
    use crate::Table;

    #[test]
    fn the_borrowing_parse_agrees_with_decode_and_clean() {
        let cases: [&[u8]; 27] = [
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
            // Fields no rule of the table reads: kept as sent, and exactly as valid as `decode` wants.
            br#"{"index": 15, "ind": 15, "new": 2.50, "big": 12345678901234567890123, "obj": {"b": [1e2, -0], "a": "\u00e9"}}"#,
            br#"{"index": 16, "extra": "\ud800"}"#,
            br#"{"index": 17, "extra": "\x"}"#,
            br#"{"index": 18, "extra": 1e400}"#,
            b"{\"index\": 19, \"extra\": \"a\x01b\"}",
            b"{\"index\": 20, \"extra\": \"\xff\"}",
            br#"{"index": 21, "extra": [1,]}"#,
            br#"{"index": 22, "extra": {"k": 1,}, "title": "x"}"#,
            br#"{"index": 23, "dup": 1, "dup": {"last": true}}"#,
            br#"{"index": 24, "extra": [1, 2] "title": "x"}"#,
            // Found by fuzzing: written anew from its parsed value, a float may read back one ulp off.
            br#"{"index": 25, "latitude": -19.9211e31, "y": {"": -1.4296026378025494e144, "z": 9.398135806372757e+139}}"#,
        ];
        for raw in cases {
            for table in Table::ALL {
                let expected = decode(raw).and_then(|map| clean(table, &map).map(CleanRecord::into_owned));
                assert_eq!(clean_bytes(table, raw), expected, "{table} {}", String::from_utf8_lossy(raw));
            }
        }
        // The last of a repeated key counts, and escaped keys and values are unescaped.
        let pin = clean_bytes(Table::Pin, cases[0]).unwrap();
        assert_eq!((pin.ind(), &pin.cells[2]), (2, &Cell::Str("last".into())));
        let pin = clean_bytes(Table::Pin, cases[15]).unwrap();
        assert_eq!((pin.ind(), &pin.cells[9]), (14, &Cell::Str("/data".into())));
        let pin = clean_bytes(Table::Pin, cases[16]).unwrap();
        assert_eq!(
            pin.rescued.unwrap().as_str(),
            r#"{"new":2.50,"big":12345678901234567890123,"obj":{"b": [1e2, -0], "a": "\u00e9"}}"#
        );
    }

    /// A field's value nested `depth` arrays deep.
    fn nested(depth: usize) -> Vec<u8> {
        format!(r#"{{"index": 1, "extra": {}1{}}}"#, "[".repeat(depth), "]".repeat(depth)).into_bytes()
    }

    #[test]
    fn a_rescued_value_nests_as_deep_as_decode_allows_and_no_deeper() {
        for depth in [125, 126, 127, 128, 200] {
            let raw = nested(depth);
            let expected = decode(&raw).and_then(|map| clean(Table::Pin, &map).map(CleanRecord::into_owned));
            assert_eq!(clean_bytes(Table::Pin, &raw), expected, "nested {depth} deep");
        }
        // The check itself draws the line where decode does, so the fast path keeps depth 126.
        let text = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(super::is_valid_field_value(&text(126)));
        assert!(!super::is_valid_field_value(&text(127)));
        assert!(clean_bytes(Table::Pin, &nested(126)).is_ok());
        assert!(clean_bytes(Table::Pin, &nested(127)).unwrap_err().0.contains("recursion limit"));
    }
}
