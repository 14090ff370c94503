//! The parse of a raw record into its top-level fields, without building a JSON tree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

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

/// The top-level fields of one raw record, in input order.
#[derive(Debug, Default)]
pub(super) struct RawRecord<'a> {
    fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
}

impl<'a> RawRecord<'a> {
    pub(super) fn from_map(map: &'a Map<String, Value>) -> Self {
        Self { fields: map.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), FieldValue::from(v))).collect() }
    }

    /// The field's value; of a repeated key the last one counts, as when parsing into a map.
    pub(super) fn get(&self, name: &str) -> Option<&FieldValue<'a>> {
        self.fields.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value)
    }
}

/// What a record's JSON text holds at the top: an object, or the kind of anything else.
pub(super) enum TopLevel<'a> {
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

#[cfg(test)]
mod tests {
    use super::super::{Cell, clean, clean_bytes, decode};
    use crate::Table;

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
}
