//! Reading and validating request bodies into what Kinesis stores.
//!
//! A put body is read once: each record's `Data` stays the raw JSON text the client wrote, is
//! compacted, and is forwarded as is — never built into a tree and serialised again — because
//! the producer's cost is dominated by 500-record PutRecords bodies. Every field is checked, and
//! every record of a batch, before anything is written; refusals name the field by its path
//! (`records[3].partition-key`) in the spelling the client used (`Data` or `data`).
//!
//! The entry points are [`put_record_body`], [`put_records_body`] and [`shard_count`], one per
//! request that has a body.

use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;

use http::StatusCode;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::{ApiError, ApiRequest};
use super::route::shorten;
use super::{MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_BODY_BYTES, MAX_PARTITION_KEY_CHARS, MAX_RECORD_BYTES};
use crate::json::{Text, visit_other_kinds};
use crate::stream::PutEntry;

/// The record of a PutRecord body, validated; a `StreamName` in the body must name `stream`.
pub(super) fn put_record_body(request: &ApiRequest, stream: &str) -> Result<PutEntry, ApiError> {
    let body = json_object_body(request)?;
    body.check_unique(Parent::Body)?;
    check_body_stream_name(lookup(&body.map, &STREAM_NAME, Parent::Body)?.map(|(v, path)| (*v, path)), stream)?;
    put_entry(&body, &RECORD_DATA, &RECORD_PARTITION_KEY, Parent::Body)
}

/// The records of a PutRecords body, all validated, in request order; a `StreamName` in the
/// body must name `stream`.
pub(super) fn put_records_body(request: &ApiRequest, stream: &str) -> Result<Vec<PutEntry>, ApiError> {
    let RecordsBodyOf(body) = json_body(request)?;
    body.check_unique(Parent::Body)?;
    let name = lookup(&body.map, &STREAM_NAME, Parent::Body)?.and_then(|(v, path)| Some((v.raw()?, path)));
    check_body_stream_name(name, stream)?;
    put_records_entries(&body)
}

/// Whether a `Content-Type` names JSON: `application/json` or any `*/*+json`, parameters allowed.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some((kind, subtype)) => {
            !kind.is_empty()
                && (essence == "application/json" || (subtype.len() > "+json".len() && subtype.ends_with("+json")))
        }
        None => false,
    }
}

/// The fields of a JSON object, and the first key it gave twice. JSON parsers disagree on which
/// of two equal keys wins, so an object with a repeated key is refused (see
/// [`Fields::check_unique`]) rather than one of its values silently dropped.
struct Fields<K, V> {
    map: BTreeMap<K, V>,
    repeated: Option<String>,
}

impl<K: Ord + Borrow<str>, V> Fields<K, V> {
    fn new() -> Self {
        Self { map: BTreeMap::new(), repeated: None }
    }

    fn insert(&mut self, key: K, value: V) {
        if self.repeated.is_none() && self.map.contains_key(key.borrow()) {
            self.repeated = Some(key.borrow().to_string());
        }
        self.map.insert(key, value);
    }

    /// Refuses the object if it gave a key twice, naming the key by its path.
    fn check_unique(&self, parent: Parent) -> Result<(), ApiError> {
        match &self.repeated {
            None => Ok(()),
            Some(key) => {
                let path = match parent {
                    Parent::Body => shorten(key),
                    parent => format!("{parent}.{}", shorten(key)),
                };
                Err(ApiError::bad_request("DuplicateField", format!("{path} is given twice; send each field once")))
            }
        }
    }
}

/// A JSON object whose values stay unparsed text borrowed from the request body: a put body is
/// read once and each record's data is forwarded as the client wrote it (compacted), never
/// built into a tree and serialised again.
type JsonObject<'a> = Fields<Cow<'a, str>, &'a RawValue>;

impl<'de> Deserialize<'de> for JsonObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = JsonObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                read_fields(map)
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The fields of the object `map` is reading, values kept as raw text.
fn read_fields<'de, A: MapAccess<'de>>(mut map: A) -> Result<JsonObject<'de>, A::Error> {
    let mut fields = JsonObject::new();
    while let Some((Text(key), value)) = map.next_entry::<Text, &RawValue>()? {
        fields.insert(key, value);
    }
    Ok(fields)
}

/// A field of a PutRecords body: `records` is read in the same pass as the body (each record's
/// fields, their values still raw text); any other field stays raw text.
enum BodyField<'a> {
    Records(RecordList<'a>),
    Raw(&'a RawValue),
}

/// The `records` of a PutRecords body, or the kind of the value that stood there.
enum RecordList<'a> {
    Array(Vec<RecordItem<'a>>),
    Other(&'static str),
}

/// One element of `records`: a record's fields, or the kind of the non-object that stood there.
enum RecordItem<'a> {
    Object(JsonObject<'a>),
    Other(&'static str),
}

type RecordsBody<'a> = Fields<String, BodyField<'a>>;

impl<'a> BodyField<'a> {
    fn raw(&self) -> Option<&'a RawValue> {
        match self {
            BodyField::Raw(raw) => Some(raw),
            BodyField::Records(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for RecordItem<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = RecordItem<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a record")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(RecordItem::Object(read_fields(map)?))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RecordItem::Other("an array"))
            }
            visit_other_kinds!(RecordItem);
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

impl<'de> Deserialize<'de> for RecordList<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = RecordList<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH_RECORDS));
                while let Some(record) = seq.next_element::<RecordItem>()? {
                    records.push(record);
                }
                Ok(RecordList::Array(records))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(RecordList::Other("an object"))
            }
            visit_other_kinds!(RecordList);
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

/// Deserialises a PutRecords body in one pass: a map whose record list is read on the way.
struct RecordsBodyOf<'a>(RecordsBody<'a>);

impl<'de> Deserialize<'de> for RecordsBodyOf<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = RecordsBodyOf<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut body = RecordsBody::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = if BATCH_RECORDS.spellings.contains(&key.as_str()) {
                        BodyField::Records(map.next_value()?)
                    } else {
                        BodyField::Raw(map.next_value()?)
                    };
                    body.insert(key, value);
                }
                Ok(RecordsBodyOf(body))
            }
        }
        deserializer.deserialize_map(BodyVisitor)
    }
}

/// Checks size and content type and parses the body as a JSON object.
fn json_object_body(request: &ApiRequest) -> Result<JsonObject<'_>, ApiError> {
    json_body(request)
}

/// Checks size and content type and parses the body as a JSON object into `T`.
fn json_body<'a, T: Deserialize<'a>>(request: &'a ApiRequest) -> Result<T, ApiError> {
    if request.body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("request body is {} bytes; the limit is {MAX_BODY_BYTES}", request.body.len()),
        ));
    }
    if let Some(content_type) = &request.content_type
        && !is_json_media_type(content_type)
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("Content-Type {:?} is not JSON; send application/json", shorten(content_type)),
        ));
    }
    let malformed = |e| ApiError::bad_request("MalformedJson", format!("request body is not valid JSON: {e}"));
    match serde_json::from_slice::<T>(&request.body) {
        Ok(object) => Ok(object),
        // Valid JSON of another type: say which.
        Err(e) if e.is_data() => {
            let value = serde_json::from_slice::<&RawValue>(&request.body).map_err(malformed)?;
            Err(ApiError::bad_request(
                "InvalidBody",
                format!("request body must be a JSON object, got {}", kind_of(value)),
            ))
        }
        Err(e) => Err(malformed(e)),
    }
}

/// The kind of a valid JSON value, from its first character.
fn kind_of(value: &RawValue) -> &'static str {
    match value.get().trim_start().as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// The value as a string, if it is one.
fn as_string(value: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(value.get()).ok()
}

/// Valid JSON text without the whitespace between its tokens, and whether the text needs a full
/// parse to be sure pinpipe can read it back: capturing raw JSON checks its grammar but neither
/// number ranges (`1e999`), nesting depth, nor `\u` escapes of surrogates (a lone one is not
/// text), all of which the consumers' parser refuses.
fn compact_json(text: &str) -> (Vec<u8>, bool) {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    // Bytes are copied in runs, from `run` up to the next whitespace between tokens.
    let mut run = 0;
    let (mut depth, mut max_depth, mut digits, mut needs_parse) = (0usize, 0usize, 0usize, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if b == b'"' {
            // Inside a string only a quote or a backslash matters: jump from one to the next
            // (most of a record's bytes are in its strings).
            digits = 0;
            loop {
                // Past the end only when the text ends in a backslash inside a string.
                let Some(k) = bytes.get(i..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) else {
                    // Unterminated: raw capture refuses it before this runs.
                    i = bytes.len();
                    break;
                };
                let at = i + k;
                if bytes[at] == b'"' {
                    i = at + 1;
                    break;
                }
                // `\uD800`-`\uDFFF`: half of a surrogate pair, or a lone one.
                needs_parse |= bytes.get(at + 1) == Some(&b'u')
                    && matches!(bytes.get(at + 2), Some(b'd' | b'D'))
                    && matches!(bytes.get(at + 3), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'));
                i = at + 2;
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.extend_from_slice(&bytes[run..i - 1]);
                run = i;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            // An exponent, or a numeral long enough to overflow an f64.
            b'e' | b'E' if digits > 0 => needs_parse = true,
            _ => {}
        }
        digits = if b.is_ascii_digit() || b == b'.' { digits + 1 } else { 0 };
        needs_parse |= digits > 300;
    }
    out.extend_from_slice(&bytes[run..]);
    (out, needs_parse || max_depth > 100)
}

/// A field that clients may spell two ways (`data` or Kinesis' `Data`).
struct Field {
    /// The spelling used in messages when the field is missing.
    canonical: &'static str,
    spellings: [&'static str; 2],
}

const STREAM_NAME: Field = Field { canonical: "StreamName", spellings: ["StreamName", "stream-name"] };
const SHARD_COUNT: Field = Field { canonical: "ShardCount", spellings: ["ShardCount", "shard-count"] };
const RECORD_DATA: Field = Field { canonical: "Data", spellings: ["Data", "data"] };
const RECORD_PARTITION_KEY: Field = Field { canonical: "PartitionKey", spellings: ["PartitionKey", "partition-key"] };
const BATCH_DATA: Field = Field { canonical: "data", spellings: ["data", "Data"] };
const BATCH_PARTITION_KEY: Field = Field { canonical: "partition-key", spellings: ["partition-key", "PartitionKey"] };
const BATCH_RECORDS: Field = Field { canonical: "records", spellings: ["records", "Records"] };

/// The field's value and the path naming it (`records[3].partition-key`); `None` if absent.
/// `parent` is the object it is looked up in.
fn lookup<'o, K: Borrow<str> + Ord, V>(
    object: &'o BTreeMap<K, V>,
    field: &Field,
    parent: Parent,
) -> Result<Option<(&'o V, FieldPath)>, ApiError> {
    let path = |name| FieldPath { parent, name };
    let mut found = field.spellings.iter().filter_map(|name| object.get(*name).map(|v| (*name, v)));
    let first = found.next();
    if let (Some((a, _)), Some((b, _))) = (first, found.next()) {
        return Err(ApiError::bad_request(
            "DuplicateField",
            format!("{} and {} are the same field; send only one", path(a), path(b)),
        ));
    }
    Ok(first.map(|(name, v)| (v, path(name))))
}

fn missing(field: &Field, parent: Parent) -> ApiError {
    let path = FieldPath { parent, name: field.canonical };
    ApiError::bad_request("MissingField", format!("{path} is required"))
}

/// The object a field belongs to: the body, or one element of a record list (`records[3]`).
/// Paths are only formatted for messages, never on the way of a valid request.
#[derive(Debug, Clone, Copy)]
enum Parent {
    Body,
    Record { list: &'static str, index: usize },
}

impl std::fmt::Display for Parent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Parent::Body => Ok(()),
            Parent::Record { list, index } => write!(f, "{list}[{index}]"),
        }
    }
}

/// Where a field sits in the body: `PartitionKey`, `records[3].partition-key`.
#[derive(Debug, Clone, Copy)]
struct FieldPath {
    parent: Parent,
    name: &'static str,
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.parent {
            Parent::Body => f.write_str(self.name),
            parent => write!(f, "{parent}.{}", self.name),
        }
    }
}

/// Refuses a body whose `StreamName` names another stream than the path.
fn check_body_stream_name(name: Option<(&RawValue, FieldPath)>, stream: &str) -> Result<(), ApiError> {
    let Some((value, path)) = name else { return Ok(()) };
    if kind_of(value) == "null" {
        return Ok(());
    }
    match as_string(value) {
        Some(name) if name == stream => Ok(()),
        Some(name) => Err(ApiError::bad_request(
            "StreamNameMismatch",
            format!("{path} {:?} differs from the stream in the path, {stream}", shorten(&name)),
        )),
        None => Err(ApiError::bad_request("InvalidField", format!("{path} must be a string, got {}", kind_of(value)))),
    }
}

/// One record of a put request, validated into what Kinesis stores: the compact JSON text of
/// its `Data` object and its partition key.
fn put_entry(object: &JsonObject, data: &Field, key: &Field, parent: Parent) -> Result<PutEntry, ApiError> {
    object.check_unique(parent)?;
    let object = &object.map;
    let (&data_value, data_path) = lookup(object, data, parent)?.ok_or_else(|| missing(data, parent))?;
    if kind_of(data_value) != "an object" {
        return Err(ApiError::bad_request(
            "DataNotAnObject",
            format!("{data_path} must be a JSON object (the raw record), got {}", kind_of(data_value)),
        ));
    }
    let (&key_value, key_path) = lookup(object, key, parent)?.ok_or_else(|| missing(key, parent))?;
    let Some(partition_key) = as_string(key_value) else {
        return Err(ApiError::bad_request(
            "InvalidField",
            format!("{key_path} must be a string, got {}", kind_of(key_value)),
        ));
    };
    let key_chars = partition_key.chars().count();
    if key_chars == 0 || key_chars > MAX_PARTITION_KEY_CHARS {
        return Err(ApiError::bad_request(
            "InvalidPartitionKey",
            format!("{key_path} must be 1 to {MAX_PARTITION_KEY_CHARS} characters, got {key_chars}"),
        ));
    }
    let (data, needs_parse) = compact_json(data_value.get());
    if needs_parse && let Err(e) = serde_json::from_slice::<Value>(&data) {
        return Err(ApiError::bad_request("MalformedJson", format!("{data_path} is not valid JSON: {e}")));
    }
    let size = data.len() + partition_key.len();
    if size > MAX_RECORD_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RecordTooLarge",
            format!(
                "{data_path} is {} bytes as compact JSON; with its partition key a record may be at most {MAX_RECORD_BYTES} bytes",
                data.len()
            ),
        ));
    }
    Ok(PutEntry { data, partition_key })
}

/// The records of a PutRecords body, all validated, in request order.
fn put_records_entries(object: &RecordsBody) -> Result<Vec<PutEntry>, ApiError> {
    let (records_value, records_path) =
        lookup(&object.map, &BATCH_RECORDS, Parent::Body)?.ok_or_else(|| missing(&BATCH_RECORDS, Parent::Body))?;
    let records = match records_value {
        BodyField::Records(RecordList::Array(records)) => records,
        BodyField::Records(RecordList::Other(kind)) => {
            return Err(ApiError::bad_request(
                "InvalidField",
                format!("{records_path} must be an array of records, got {kind}"),
            ));
        }
        BodyField::Raw(_) => unreachable!("the body parser reads every spelling of records as a record list"),
    };
    if records.is_empty() {
        return Err(ApiError::bad_request(
            "NoRecords",
            format!("{records_path} is empty; send 1 to {MAX_BATCH_RECORDS} records"),
        ));
    }
    if records.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::bad_request(
            "TooManyRecords",
            format!("{records_path} has {} records; send at most {MAX_BATCH_RECORDS} per request", records.len()),
        ));
    }
    let mut entries = Vec::with_capacity(records.len());
    let mut total = 0usize;
    for (i, record) in records.iter().enumerate() {
        let path = Parent::Record { list: records_path.name, index: i };
        let record = match record {
            RecordItem::Object(record) => record,
            RecordItem::Other(kind) => {
                return Err(ApiError::bad_request("InvalidField", format!("{path} must be a JSON object, got {kind}")));
            }
        };
        let entry = put_entry(record, &BATCH_DATA, &BATCH_PARTITION_KEY, path)?;
        total += entry.data.len() + entry.partition_key.len();
        entries.push(entry);
    }
    if total > MAX_BATCH_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BatchTooLarge",
            format!(
                "{records_path} hold {total} bytes of data and partition keys; the limit per request is {MAX_BATCH_BYTES}"
            ),
        ));
    }
    Ok(entries)
}

/// The optional `ShardCount` of a CreateStream body; `None` means on-demand capacity.
pub(super) fn shard_count(request: &ApiRequest, stream: &str) -> Result<Option<i32>, ApiError> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let object = json_object_body(request)?;
    object.check_unique(Parent::Body)?;
    check_body_stream_name(lookup(&object.map, &STREAM_NAME, Parent::Body)?.map(|(v, path)| (*v, path)), stream)?;
    let value = lookup(&object.map, &SHARD_COUNT, Parent::Body)?
        .map(|(value, path)| (serde_json::from_str::<Value>(value.get()).unwrap_or(Value::Null), path));
    match value {
        None | Some((Value::Null, _)) => Ok(None),
        Some((value, path)) => match value.as_i64().and_then(|n| i32::try_from(n).ok()).filter(|n| *n >= 1) {
            Some(n) => Ok(Some(n)),
            None => Err(ApiError::bad_request(
                "InvalidShardCount",
                format!("{path} must be a positive whole number, got {value}; omit it for on-demand capacity"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::json;

    use super::super::test_store::FaultyStreams;
    use super::super::test_support::*;
    use super::*;
    use crate::json::closes_string;
    use crate::local::events::sequence_number;

    #[tokio::test]
    async fn create_refuses_bad_shard_counts_and_bodies() {
        let store = FaultyStreams::with_streams(&[]);
        let create = ApiRequest::new(Method::POST, format!("/streams/{PIN}"));
        for bad in [json!(0), json!(-1), json!(1.5), json!("2"), json!(3_000_000_000_i64)] {
            let response = call_admin(&store, create.clone().with_json(&json!({"ShardCount": bad}))).await;
            assert_error(&response, 400, "InvalidShardCount", "ShardCount");
        }
        let response = call_admin(&store, create.clone().with_json(&json!({"StreamName": GEO}))).await;
        assert_error(&response, 400, "StreamNameMismatch", GEO);
        let response = call_admin(&store, create.clone().with_body("application/json", "{\"ShardCount\": ")).await;
        assert_error(&response, 400, "MalformedJson", "not valid JSON");
        let response = call_admin(&store, create.clone().with_body("text/plain", "ShardCount=1")).await;
        assert_error(&response, 415, "UnsupportedMediaType", "text/plain");
        assert!(store.nothing_changed());
    }

    #[tokio::test]
    async fn put_record_with_the_seed_clients_body_stores_the_compact_json_of_data() {
        let store = ours();
        // What Python's json.dumps produces for the seeds' client: spaced separators.
        let body = format!(
            "{{\"StreamName\": \"{PIN}\", \"Data\": {{\"index\": 7528, \"title\": \"No Title Data Available\", \"downloaded\": 0}}, \"PartitionKey\": \"6f1c2b7e-55a4-4c1e-9f0a-3f0e3c9d2b1a\"}}"
        );
        let request = ApiRequest::new(Method::PUT, format!("/prod/streams/{PIN}/record"))
            .with_body("application/json", body.into_bytes());
        let response = call(&store, request).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(response.body, json!({"SequenceNumber": sequence_number(1), "ShardId": "shardId-000000000000"}));
        let written = store.written(PIN);
        assert_eq!(written.len(), 1);
        assert_eq!(
            String::from_utf8(written[0].data.clone()).unwrap(),
            r#"{"index":7528,"title":"No Title Data Available","downloaded":0}"#
        );
        assert_eq!(written[0].partition_key, "6f1c2b7e-55a4-4c1e-9f0a-3f0e3c9d2b1a");
    }

    #[tokio::test]
    async fn a_field_given_twice_is_refused_wherever_it_stands() {
        let record = |path: &str| ApiRequest::new(Method::PUT, format!("/streams/{PIN}/{path}"));
        let cases: Vec<(ApiRequest, u16, &str, &str)> = vec![
            (
                record("record").with_body("application/json", r#"{"Data": {"ind": 1}, "Data": {"ind": 2}, "PartitionKey": "p"}"#),
                400,
                "DuplicateField",
                "Data is given twice",
            ),
            (
                record("record").with_body("application/json", r#"{"Data": {}, "PartitionKey": "p", "PartitionKey": "q"}"#),
                400,
                "DuplicateField",
                "PartitionKey is given twice",
            ),
            (
                record("records").with_body(
                    "application/json",
                    r#"{"records": [{"data": {}, "partition-key": "a"}, {"data": {}, "data": {}, "partition-key": "b"}]}"#,
                ),
                400,
                "DuplicateField",
                "records[1].data is given twice",
            ),
            (
                record("records").with_body(
                    "application/json",
                    r#"{"records": [{"data": {}, "partition-key": "a"}], "records": [{"data": {}, "partition-key": "b"}]}"#,
                ),
                400,
                "DuplicateField",
                "records is given twice",
            ),
        ];
        assert_all_refused_before_any_write(cases).await;
    }

    #[tokio::test]
    async fn data_the_consumer_could_not_read_back_is_refused() {
        let put = |data: &str| {
            ApiRequest::new(Method::PUT, format!("/streams/{PIN}/record"))
                .with_body("application/json", format!(r#"{{"Data": {data}, "PartitionKey": "p"}}"#))
        };
        let cases: Vec<(ApiRequest, u16, &str, &str)> = vec![
            (put(r#"{"title": "caf\udc00"}"#), 400, "MalformedJson", "Data is not valid JSON"),
            (put(r#"{"title": "caf\uD83D"}"#), 400, "MalformedJson", "Data is not valid JSON"),
        ];
        assert_all_refused_before_any_write(cases).await;

        // A whole pair is text (U+1F600), and so is an escaped backslash before a `u`.
        let store = ours();
        for data in [r#"{"title": "\ud83d\ude00"}"#, r#"{"title": "\\udc00"}"#] {
            let response = call(&store, put(data)).await;
            assert_eq!(response.status, StatusCode::OK, "{data}: {}", response.body);
        }
        assert_eq!(store.written(PIN).len(), 2);
    }

    #[tokio::test]
    async fn put_record_accepts_json_content_types_and_none() {
        let store = ours();
        let body = json!({"Data": pin_record(1), "PartitionKey": "partition-1"}).to_string();
        let path = format!("/streams/{PIN}/record");
        for content_type in [
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/vnd.kafka.json.v2+json"),
            None,
        ] {
            let mut request = ApiRequest::new(Method::PUT, &path).with_body("application/json", body.clone());
            request.content_type = content_type.map(str::to_string);
            assert_eq!(call(&store, request).await.status, StatusCode::OK, "{content_type:?}");
        }
        assert_eq!(store.written(PIN).len(), 4);
    }

    #[tokio::test]
    async fn put_record_validation_errors_write_nothing() {
        let path = format!("/streams/{PIN}/record");
        let raw = |content_type: &str, body: &[u8]| {
            ApiRequest::new(Method::PUT, &path).with_body(content_type, body.to_vec())
        };
        let with = |body: Value| put_json(&path, &body);
        let long_key = "k".repeat(257);
        let cases: Vec<(ApiRequest, u16, &str, &str)> = vec![
            (raw("application/json", b"{\"Data\": {"), 400, "MalformedJson", "not valid JSON"),
            (raw("application/json", b""), 400, "MalformedJson", "not valid JSON"),
            (raw("application/json", b"\xff\xfe"), 400, "MalformedJson", "not valid JSON"),
            (raw("text/plain", b"{}"), 415, "UnsupportedMediaType", "text/plain"),
            (raw("application/x-www-form-urlencoded", b"Data=1"), 415, "UnsupportedMediaType", "form"),
            (raw("json", b"{}"), 415, "UnsupportedMediaType", "json"),
            (with(json!([1, 2])), 400, "InvalidBody", "an array"),
            (with(json!({"PartitionKey": "p"})), 400, "MissingField", "Data is required"),
            (
                with(json!({"Data": "{\"index\": 1}", "PartitionKey": "p"})),
                400,
                "DataNotAnObject",
                "Data must be a JSON object",
            ),
            (with(json!({"Data": [1], "PartitionKey": "p"})), 400, "DataNotAnObject", "an array"),
            (with(json!({"Data": null, "PartitionKey": "p"})), 400, "DataNotAnObject", "null"),
            (with(json!({"Data": {}})), 400, "MissingField", "PartitionKey is required"),
            (with(json!({"Data": {}, "PartitionKey": 7})), 400, "InvalidField", "PartitionKey must be a string"),
            (
                with(json!({"Data": {}, "PartitionKey": ""})),
                400,
                "InvalidPartitionKey",
                "PartitionKey must be 1 to 256",
            ),
            (with(json!({"Data": {}, "PartitionKey": long_key})), 400, "InvalidPartitionKey", "got 257"),
            (with(json!({"Data": {}, "data": {}, "PartitionKey": "p"})), 400, "DuplicateField", "Data and data"),
            (with(json!({"StreamName": GEO, "Data": {}, "PartitionKey": "p"})), 400, "StreamNameMismatch", GEO),
            (with(json!({"StreamName": 5, "Data": {}, "PartitionKey": "p"})), 400, "InvalidField", "StreamName"),
            (
                with(json!({"Data": {"blob": "x".repeat(MAX_RECORD_BYTES)}, "PartitionKey": "p"})),
                413,
                "RecordTooLarge",
                "Data is",
            ),
            (raw("application/json", &vec![b' '; MAX_BODY_BYTES + 1]), 413, "PayloadTooLarge", "10485760"),
        ];
        assert_all_refused_before_any_write(cases).await;
    }

    #[tokio::test]
    async fn partition_keys_are_counted_in_characters() {
        let store = ours();
        let key = "é".repeat(256);
        let response =
            call(&store, put_json(&format!("/streams/{PIN}/record"), &json!({"Data": {}, "PartitionKey": key}))).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(store.written(PIN)[0].data, b"{}");
    }

    #[tokio::test]
    async fn put_records_accepts_kinesis_spellings() {
        let store = ours();
        let body = json!({"StreamName": GEO, "Records": [
            {"Data": {"ind": 1}, "PartitionKey": "geo"},
            {"data": {"ind": 2}, "partition-key": "geo"},
        ]});
        let response = call(&store, put_json(&format!("/streams/{GEO}/records"), &body)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(response.body["FailedRecordCount"], 0);
        let data: Vec<Vec<u8>> = store.written(GEO).into_iter().map(|e| e.data).collect();
        assert_eq!(data, [b"{\"ind\":1}".to_vec(), b"{\"ind\":2}".to_vec()]);
    }

    #[tokio::test]
    async fn put_records_validation_errors_write_nothing() {
        let path = format!("/streams/{PIN}/records");
        let with = |body: Value| put_json(&path, &body);
        let mut bad_key = batch(5);
        bad_key["records"][3]["partition-key"] = json!("");
        let mut missing_key = batch(5);
        missing_key["records"][4].as_object_mut().unwrap().remove("partition-key");
        let mut bad_data = batch(2);
        bad_data["records"][1]["data"] = json!("[1,2]");
        let mut not_object = batch(3);
        not_object["records"][2] = json!("record");
        let huge = json!({"blob": "x".repeat(900 * 1024)});
        let too_big: Vec<Value> = (0..6).map(|i| json!({"data": huge, "partition-key": format!("k{i}")})).collect();
        let cases: Vec<(ApiRequest, u16, &str, &str)> = vec![
            (with(json!({"records": []})), 400, "NoRecords", "records is empty"),
            (with(batch(MAX_BATCH_RECORDS + 1)), 400, "TooManyRecords", "501"),
            (with(json!({})), 400, "MissingField", "records is required"),
            (with(json!({"records": {"data": {}}})), 400, "InvalidField", "records must be an array"),
            (with(json!({"records": [], "Records": []})), 400, "DuplicateField", "records and Records"),
            (with(bad_key), 400, "InvalidPartitionKey", "records[3].partition-key"),
            (with(missing_key), 400, "MissingField", "records[4].partition-key is required"),
            (with(bad_data), 400, "DataNotAnObject", "records[1].data"),
            (with(not_object), 400, "InvalidField", "records[2] must be a JSON object"),
            (
                with(json!({"records": [{"data": {"blob": "x".repeat(MAX_RECORD_BYTES)}, "partition-key": "p"}]})),
                413,
                "RecordTooLarge",
                "records[0].data",
            ),
            (with(json!({"records": too_big})), 413, "BatchTooLarge", "5242880"),
            (with(json!({"StreamName": USER, "records": []})), 400, "StreamNameMismatch", USER),
            (
                ApiRequest::new(Method::PUT, &path).with_body("text/csv", "data,partition-key"),
                415,
                "UnsupportedMediaType",
                "text/csv",
            ),
            (
                ApiRequest::new(Method::PUT, &path).with_body("application/json", "{\"records\": [{]}"),
                400,
                "MalformedJson",
                "JSON",
            ),
        ];
        assert_all_refused_before_any_write(cases).await;
    }

    #[tokio::test]
    async fn put_records_takes_exactly_500_records() {
        let store = ours();
        let response = call(&store, put_json(&format!("/streams/{PIN}/records"), &batch(MAX_BATCH_RECORDS))).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body["Records"].as_array().unwrap().len(), 500);
        assert_eq!(store.written(PIN).len(), 500);
    }

    /// The byte-at-a-time compaction `compact_json` replaced: the reference it must agree with.
    fn byte_by_byte(text: &str) -> (Vec<u8>, bool) {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(text.len());
        // Bytes are copied in runs, from `run` up to the next whitespace between tokens.
        let mut run = 0;
        let (mut in_string, mut escaped) = (false, false);
        let (mut depth, mut max_depth, mut digits, mut needs_parse) = (0usize, 0usize, 0usize, false);
        for (i, &b) in bytes.iter().enumerate() {
            if in_string {
                // `\uD800`-`\uDFFF`: half of a surrogate pair, or a lone one.
                needs_parse |= escaped
                    && b == b'u'
                    && matches!(bytes.get(i + 1), Some(b'd' | b'D'))
                    && matches!(bytes.get(i + 2), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'));
                in_string = !closes_string(b, &mut escaped);
                digits = 0;
                continue;
            }
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => {
                    out.extend_from_slice(&bytes[run..i]);
                    run = i + 1;
                    continue;
                }
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    max_depth = max_depth.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                // An exponent, or a numeral long enough to overflow an f64.
                b'e' | b'E' if digits > 0 => needs_parse = true,
                _ => {}
            }
            digits = if b.is_ascii_digit() || b == b'.' { digits + 1 } else { 0 };
            needs_parse |= digits > 300;
        }
        out.extend_from_slice(&bytes[run..]);
        (out, needs_parse || max_depth > 100)
    }

    #[test]
    fn compacting_agrees_with_a_byte_at_a_time_reading() {
        let mut texts: Vec<String> = [
            r#"{"a": "x", "b" : [1, 2.5, -3e2], "c": {"d": null}}"#,
            r#"{"esc": "q\"uote \\ back\\", "u": "\u00e9 \uD83D\uDE00 \ud800", "t": "\t\n"}"#,
            r#"{"s": "\\", "after": 1}"#,
            r#"{"s": "ends with backslash \\\\"}"#,
            "{ \"ws\" :\t[ 1 ,\n 2 ]\r }",
            r#"["", "\"", "\\\"", {"": ""}]"#,
            r#""just a string with spaces""#,
            r#"12345.678e9"#,
            // Unterminated, ending in a backslash: never reaches compaction, but must not panic.
            r#""abc\"#,
        ]
        .map(String::from)
        .to_vec();
        texts.push(format!("{{\"n\": 1{}}}", "0".repeat(400)));
        texts.push(format!("{{\"a\": {}{}}}", "[".repeat(101), "]".repeat(101)));
        // Records spaced as a person or Python's json.dumps spaces them.
        for i in 0..50 {
            let record = json!({"index": i, "title": format!("Room \"{i}\" ideas\\"), "tags": ["a b", "é", "\u{1F600}"],
                "follower_count": format!("{i}k"), "nested": {"x": [i, 2.5, null, true]}, "empty": ""});
            texts.push(serde_json::to_string_pretty(&record).unwrap());
            texts.push(serde_json::to_string(&record).unwrap().replace(',', ", ").replace(':', ": "));
        }
        for text in &texts {
            assert_eq!(compact_json(text), byte_by_byte(text), "{text}");
        }
    }

    #[test]
    fn compacting_drops_whitespace_between_tokens_only() {
        let (text, needs_parse) = compact_json("{ \"a b\" : [ 1 , \"x \\\" y\" ] ,\n\t\"c\":\r null }");
        assert_eq!(String::from_utf8(text).unwrap(), r#"{"a b":[1,"x \" y"],"c":null}"#);
        assert!(!needs_parse);
        // What raw capture cannot vouch for gets a full parse; words and strings do not.
        assert!(compact_json(r#"{"n": 1e999}"#).1);
        assert!(compact_json(&format!("{{\"n\": 1{}}}", "0".repeat(400))).1);
        assert!(compact_json(&format!("{{\"a\": {}{}}}", "[".repeat(101), "]".repeat(101))).1);
        assert!(!compact_json(r#"{"t": true, "f": false, "s": "1e5", "e": 2.5}"#).1);
    }

    #[tokio::test]
    async fn odd_input_gets_a_4xx_not_a_panic() {
        let store = ours();
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep_data = format!("{{\"Data\": {{\"a\": {nested}}}, \"PartitionKey\": \"p\"}}");
        let bodies: Vec<Vec<u8>> = vec![
            nested.into_bytes(),
            deep_data.into_bytes(),
            b"{\"Data\": {\"n\": 1e999}, \"PartitionKey\": \"p\"}".to_vec(),
            b"\x00\x01".to_vec(),
            b"null".to_vec(),
            b"{\"records\": null}".to_vec(),
            b"{\"records\": [null]}".to_vec(),
            b"{\"records\": [{\"data\": {}, \"partition-key\": null}]}".to_vec(),
            b"{\"Data\": {}, \"PartitionKey\": \"p\"} trailing".to_vec(),
        ];
        for body in bodies {
            for path in [format!("/streams/{PIN}/record"), format!("/streams/{PIN}/records"), format!("/streams/{PIN}")]
            {
                let method = if path.ends_with(PIN) { Method::POST } else { Method::PUT };
                let response =
                    call_admin(&store, ApiRequest::new(method, &path).with_body("application/json", body.clone()))
                        .await;
                assert!(response.status.is_client_error(), "{path}: {} {}", response.status, response.body);
                assert!(response.error_code().is_some());
            }
        }
        assert!(store.nothing_changed());
    }
}
