//! The producer's REST contract (SPEC §3), independent of Lambda.
//!
//! pinpipe keeps the routes of the original API Gateway → Kinesis proxy so existing clients
//! keep working. Every request is validated completely before anything is written, and every
//! refusal is a 4xx with a JSON body `{"error": "<Code>", "message": "<what is wrong>"}`.
//! The handler is generic over the [`StreamStore`] port, so the Lambda function, the local
//! runner and the unit tests share it.

use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::time::Duration;

use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::Table;
use crate::config::ConfigError;
use crate::json::{Text, closes_string, visit_other_kinds};
use crate::stream::{PutAck, PutEntry, PutOutcome, StreamError, StreamStore};

/// API Gateway refuses bodies above 10 MB; so does pinpipe when it runs without one.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Kinesis' limit on one record: data plus partition key.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis' limit on one PutRecords call: all data plus all partition keys.
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Kinesis' limit on the number of records of one PutRecords call.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Kinesis' limit on a partition key, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;
/// Kinesis' limit on a stream name.
pub const MAX_STREAM_NAME_CHARS: usize = 128;

pub const PREFIX_VAR: &str = "PINPIPE_PREFIX";
pub const STREAM_ADMIN_VAR: &str = "PINPIPE_STREAM_ADMIN";
pub const PUT_RETRY_BUDGET_VAR: &str = "PINPIPE_PUT_RETRY_BUDGET_MS";
pub const DEFAULT_PUT_RETRY_BUDGET: Duration = Duration::from_millis(3000);

/// Per-record error codes of Kinesis that are worth sending again.
const RETRYABLE_RECORD_ERRORS: [&str; 3] =
    ["ProvisionedThroughputExceededException", "InternalFailure", "KMSThrottlingException"];

// ---------------------------------------------------------------------------------------------
// Configuration

/// How long, and how patiently, throttled puts are retried: exponential backoff with full
/// jitter (the pause before retry n is uniform in `[0, min(max_delay, base_delay · 2^(n-1))]`),
/// and no retry starts once `budget` has passed since the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub budget: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(50);
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(1);

    /// The default backoff (50 ms base, 1 s cap) within `budget`.
    pub fn with_budget(budget: Duration) -> Self {
        Self { budget, base_delay: Self::DEFAULT_BASE_DELAY, max_delay: Self::DEFAULT_MAX_DELAY }
    }

    /// The pause before retry number `retry` (1 for the first retry).
    fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        let ceiling = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=ceiling_nanos))
    }
}

/// The producer's configuration: which deployment's streams it serves and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// The deployment's prefix; its streams are `streaming-<prefix>-pin|geo|user`.
    pub prefix: String,
    /// Whether `POST` (create) and `DELETE` of streams are allowed.
    pub stream_admin: bool,
    /// How throttled puts are retried before the failure is reported to the client.
    pub put_retry: RetryPolicy,
}

impl ApiConfig {
    /// A configuration with the default backoff; fails if `prefix` is not `[A-Za-z0-9_-]+`
    /// or too long for the stream names it makes.
    pub fn new(prefix: impl Into<String>, stream_admin: bool, put_retry_budget: Duration) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        validate_prefix(&prefix)?;
        Ok(Self { prefix, stream_admin, put_retry: RetryPolicy::with_budget(put_retry_budget) })
    }

    /// Reads `PINPIPE_PREFIX` (required), `PINPIPE_STREAM_ADMIN` (`true|false`, default false)
    /// and `PINPIPE_PUT_RETRY_BUDGET_MS` (default 3000).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`ApiConfig::from_env`] over any source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let prefix = value(PREFIX_VAR).ok_or_else(|| {
            ConfigError(format!("{PREFIX_VAR} must be set to the deployment's prefix (letters, digits, _ and -)"))
        })?;
        let stream_admin = match value(STREAM_ADMIN_VAR) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => return Err(ConfigError(format!("{STREAM_ADMIN_VAR}={v:?}: expected true or false"))),
        };
        let budget = match value(PUT_RETRY_BUDGET_VAR) {
            None => DEFAULT_PUT_RETRY_BUDGET,
            Some(v) => Duration::from_millis(v.parse().map_err(|_| {
                ConfigError(format!("{PUT_RETRY_BUDGET_VAR}={v:?}: expected a whole number of milliseconds"))
            })?),
        };
        Self::new(prefix, stream_admin, budget)
    }

    /// The names of this deployment's streams, in table order.
    pub fn stream_names(&self) -> Vec<String> {
        Table::ALL.iter().map(|t| t.stream_name(&self.prefix)).collect()
    }
}

fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ConfigError(format!("{PREFIX_VAR}={prefix:?}: expected one or more of A-Z, a-z, 0-9, _ and -")));
    }
    let longest = Table::ALL.iter().map(|t| t.stream_name(prefix).len()).max().unwrap_or(0);
    if longest > MAX_STREAM_NAME_CHARS {
        return Err(ConfigError(format!(
            "{PREFIX_VAR} is {} characters: stream names made from it would exceed Kinesis' {MAX_STREAM_NAME_CHARS}",
            prefix.len()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Requests and responses

/// An HTTP request as the contract needs it: whatever carried it (API Gateway, a local server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: Method,
    /// The URL path, possibly with a stage prefix such as `/prod`; no query string.
    pub path: String,
    /// The `Content-Type` header, if the request had one.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self { method, path: path.into(), content_type: None, body: Vec::new() }
    }

    /// The request with a body and its content type.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type.to_string());
        self.body = body.into();
        self
    }

    /// The request with `value` as its `application/json` body.
    pub fn with_json(self, value: &Value) -> Self {
        self.with_body("application/json", value.to_string())
    }
}

impl From<http::Request<Vec<u8>>> for ApiRequest {
    fn from(request: http::Request<Vec<u8>>) -> Self {
        let (parts, body) = request.into_parts();
        // A header that is not visible ASCII cannot name a JSON type; keep it so it is refused.
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().map_or_else(|_| "<not ASCII>".to_string(), str::to_string));
        Self { method: parts.method, path: parts.uri.path().to_string(), content_type, body }
    }
}

/// The answer: a status, extra headers (`Allow` on 405) and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl ApiResponse {
    fn ok(body: Value) -> Self {
        Self { status: StatusCode::OK, headers: HeaderMap::new(), body }
    }

    /// The `error` code of an error response.
    pub fn error_code(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }

    /// The body as compact JSON text.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.body.to_string().into_bytes()
    }

    /// The response as a plain `http` response with `Content-Type: application/json`.
    pub fn into_http(self) -> http::Response<Vec<u8>> {
        let body = self.body_bytes();
        let mut response = http::Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// A refusal or failure on its way to becoming an error response.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), allow: None }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<ApiError> for ApiResponse {
    fn from(err: ApiError) -> Self {
        let mut headers = HeaderMap::new();
        if let Some(allow) = err.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        Self { status: err.status, headers, body: json!({"error": err.code, "message": err.message}) }
    }
}

impl From<StreamError> for ApiError {
    fn from(err: StreamError) -> Self {
        match err {
            StreamError::NotFound(name) => {
                Self::new(StatusCode::NOT_FOUND, "StreamNotFound", format!("stream {name} does not exist"))
            }
            StreamError::InUse(name) => Self::new(
                StatusCode::CONFLICT,
                "StreamInUse",
                format!("stream {name} already exists or is being created or deleted"),
            ),
            StreamError::Throttled(_) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                "the stream service is throttling requests; retry later",
            ),
            StreamError::Invalid(message) => Self::bad_request("InvalidArgument", message),
            StreamError::Service(message) => {
                // The details may name accounts and endpoints: they go to the log, not the client.
                tracing::error!(error = %message, "stream service failed");
                Self::new(StatusCode::BAD_GATEWAY, "StreamServiceError", "the stream service failed; retry later")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routing

/// What a request asks for, once its route and method are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action<'a> {
    ListStreams,
    DescribeStream(&'a str),
    CreateStream(&'a str),
    DeleteStream(&'a str),
    PutRecord(&'a str),
    PutRecords(&'a str),
}

/// Finds the action of `method` on `path`. The path may carry one stage segment before
/// `streams` (API Gateway REST paths look like `/prod/streams/...`).
fn route<'a>(method: &Method, path: &'a str) -> Result<Action<'a>, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["streams", ..] => &segments[..],
        [_stage, "streams", ..] => &segments[1..],
        _ => &[][..],
    };
    let not_allowed = |allow: &'static str| ApiError {
        allow: Some(allow),
        ..ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not allowed on {path}; allowed: {allow}"),
        )
    };
    match (rest, method) {
        (["streams"], &Method::GET) => Ok(Action::ListStreams),
        (["streams"], _) => Err(not_allowed("GET")),
        (["streams", name], &Method::GET) => Ok(Action::DescribeStream(name)),
        (["streams", name], &Method::POST) => Ok(Action::CreateStream(name)),
        (["streams", name], &Method::DELETE) => Ok(Action::DeleteStream(name)),
        (["streams", _], _) => Err(not_allowed("GET, POST, DELETE")),
        (["streams", name, "record"], &Method::PUT) => Ok(Action::PutRecord(name)),
        (["streams", name, "records"], &Method::PUT) => Ok(Action::PutRecords(name)),
        (["streams", _, "record" | "records"], _) => Err(not_allowed("PUT")),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "RouteNotFound",
            format!("no route for {method} {}; routes start at /streams", shorten(path)),
        )),
    }
}

/// Whether `name` is a syntactically valid Kinesis stream name.
fn is_valid_stream_name(name: &str) -> bool {
    (1..=MAX_STREAM_NAME_CHARS).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Refuses a name Kinesis would refuse (400) and a valid name that is not one of this
/// deployment's streams (404), so the producer never touches another deployment's streams.
fn check_stream(config: &ApiConfig, name: &str) -> Result<Table, ApiError> {
    if !is_valid_stream_name(name) {
        return Err(ApiError::bad_request(
            "InvalidStreamName",
            format!(
                "stream name {:?} is invalid: Kinesis stream names are 1 to {MAX_STREAM_NAME_CHARS} characters of A-Z, a-z, 0-9, _, . and -",
                shorten(name)
            ),
        ));
    }
    Table::from_stream_name(&config.prefix, name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "StreamNotFound",
            format!("stream {name} is not one of this deployment's streams ({})", config.stream_names().join(", ")),
        )
    })
}

/// At most 80 characters of client input, for messages.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 80;
    match text.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Body validation

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

/// A JSON object whose values stay unparsed text borrowed from the request body: a put body is
/// read once and each record's data is forwarded as the client wrote it (compacted), never
/// built into a tree and serialised again. Of a repeated key the last one counts.
type JsonObject<'a> = BTreeMap<Cow<'a, str>, &'a RawValue>;

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

type RecordsBody<'a> = BTreeMap<String, BodyField<'a>>;

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
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = JsonObject::new();
                while let Some((Text(key), value)) = map.next_entry::<Text, &RawValue>()? {
                    fields.insert(key, value);
                }
                Ok(RecordItem::Object(fields))
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
/// number ranges (`1e999`) nor nesting depth, which the consumers' parser limits.
fn compact_json(text: &str) -> (Vec<u8>, bool) {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    // Bytes are copied in runs, from `run` up to the next whitespace between tokens.
    let mut run = 0;
    let (mut in_string, mut escaped) = (false, false);
    let (mut depth, mut max_depth, mut digits, mut needs_parse) = (0usize, 0usize, 0usize, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
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
        lookup(object, &BATCH_RECORDS, Parent::Body)?.ok_or_else(|| missing(&BATCH_RECORDS, Parent::Body))?;
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
fn shard_count(request: &ApiRequest, stream: &str) -> Result<Option<i32>, ApiError> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let object = json_object_body(request)?;
    check_body_stream_name(lookup(&object, &STREAM_NAME, Parent::Body)?.map(|(v, path)| (*v, path)), stream)?;
    let value = lookup(&object, &SHARD_COUNT, Parent::Body)?
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

// ---------------------------------------------------------------------------------------------
// Handling

/// Answers one request of the contract. Never panics on input; every refusal happens before
/// anything is written.
pub async fn handle<S: StreamStore + ?Sized>(config: &ApiConfig, store: &S, request: ApiRequest) -> ApiResponse {
    match dispatch(config, store, &request).await {
        Ok(response) => response,
        Err(err) => {
            if err.status.is_server_error() {
                tracing::warn!(method = %request.method, path = %request.path, status = err.status.as_u16(), error = err.code, "request failed");
            } else {
                tracing::debug!(method = %request.method, path = %request.path, status = err.status.as_u16(), error = err.code, message = %err.message, "request refused");
            }
            err.into()
        }
    }
}

async fn dispatch<S: StreamStore + ?Sized>(
    config: &ApiConfig,
    store: &S,
    request: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let action = route(&request.method, &request.path)?;
    match action {
        Action::ListStreams => {
            let names: Vec<String> = store
                .list_streams()
                .await?
                .into_iter()
                .filter(|name| Table::from_stream_name(&config.prefix, name).is_some())
                .collect();
            Ok(ApiResponse::ok(json!({"StreamNames": names, "HasMoreStreams": false})))
        }
        Action::DescribeStream(stream) => {
            check_stream(config, stream)?;
            let info = store.describe_stream(stream).await?;
            let mut description = serde_json::to_value(&info).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("could not encode the stream: {e}"),
                )
            })?;
            // Every shard is listed, as Kinesis' own clients expect to be told.
            if let Value::Object(fields) = &mut description {
                fields.insert("HasMoreShards".to_string(), Value::Bool(false));
            }
            Ok(ApiResponse::ok(json!({"StreamDescription": description})))
        }
        Action::CreateStream(stream) => {
            check_stream(config, stream)?;
            check_admin(config, "create", stream)?;
            let shards = shard_count(request, stream)?;
            store.create_stream(stream, shards).await?;
            tracing::info!(stream, shards, "stream created");
            Ok(ApiResponse::ok(json!({})))
        }
        Action::DeleteStream(stream) => {
            check_stream(config, stream)?;
            check_admin(config, "delete", stream)?;
            store.delete_stream(stream).await?;
            tracing::info!(stream, "stream deleted");
            Ok(ApiResponse::ok(json!({})))
        }
        Action::PutRecord(stream) => {
            check_stream(config, stream)?;
            let body = json_object_body(request)?;
            check_body_stream_name(lookup(&body, &STREAM_NAME, Parent::Body)?.map(|(v, path)| (*v, path)), stream)?;
            let entry = put_entry(&body, &RECORD_DATA, &RECORD_PARTITION_KEY, Parent::Body)?;
            let ack = put_record_with_retry(store, stream, entry, &config.put_retry).await?;
            Ok(ApiResponse::ok(ack_json(&ack)))
        }
        Action::PutRecords(stream) => {
            check_stream(config, stream)?;
            let RecordsBodyOf(body) = json_body(request)?;
            let name = lookup(&body, &STREAM_NAME, Parent::Body)?.and_then(|(v, path)| Some((v.raw()?, path)));
            check_body_stream_name(name, stream)?;
            let entries = put_records_entries(&body)?;
            let outcomes = put_records_with_retry(store, stream, entries, &config.put_retry).await?;
            Ok(ApiResponse::ok(put_records_json(&outcomes)))
        }
    }
}

fn check_admin(config: &ApiConfig, verb: &str, stream: &str) -> Result<(), ApiError> {
    if config.stream_admin {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "StreamAdminDisabled",
        format!(
            "this deployment does not allow clients to {verb} streams ({stream}); set {STREAM_ADMIN_VAR}=true to allow it"
        ),
    ))
}

/// A JSON object built in place (`json!` copies every value it is given, a whole array included).
fn object(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(fields.into_iter().map(|(key, value)| (key.to_string(), value)).collect())
}

fn ack_json(ack: &PutAck) -> Value {
    object([
        ("SequenceNumber", Value::String(ack.sequence_number.clone())),
        ("ShardId", Value::String(ack.shard_id.clone())),
    ])
}

/// Kinesis' PutRecords answer: the failure count and one entry per record, in request order.
fn put_records_json(outcomes: &[PutOutcome]) -> Value {
    let failed = outcomes.iter().filter(|o| matches!(o, PutOutcome::Failed { .. })).count();
    let records: Vec<Value> = outcomes
        .iter()
        .map(|outcome| match outcome {
            PutOutcome::Ok(ack) => ack_json(ack),
            PutOutcome::Failed { error_code, error_message } => object([
                ("ErrorCode", Value::String(error_code.clone())),
                ("ErrorMessage", Value::String(error_message.clone())),
            ]),
        })
        .collect();
    object([("FailedRecordCount", Value::from(failed)), ("Records", Value::Array(records))])
}

// ---------------------------------------------------------------------------------------------
// Retrying puts

/// The Kinesis-style per-record outcome that stands for a whole-call error.
fn failed_outcome(err: &StreamError) -> PutOutcome {
    let error_code = match err {
        StreamError::NotFound(_) => "ResourceNotFoundException",
        StreamError::InUse(_) => "ResourceInUseException",
        StreamError::Throttled(_) => "ProvisionedThroughputExceededException",
        StreamError::Invalid(_) => "InvalidArgumentException",
        StreamError::Service(_) => "InternalFailure",
    };
    // Service details may name accounts and endpoints: they are logged, not answered.
    let error_message = match err {
        StreamError::Service(_) => "the stream service failed; retry later".to_string(),
        other => other.to_string(),
    };
    PutOutcome::Failed { error_code: error_code.to_string(), error_message }
}

/// Puts one record, retrying a throttled call within the policy's budget.
pub async fn put_record_with_retry<S: StreamStore + ?Sized>(
    store: &S,
    stream: &str,
    entry: PutEntry,
    policy: &RetryPolicy,
) -> Result<PutAck, StreamError> {
    let start = tokio::time::Instant::now();
    let mut retry = 0;
    loop {
        match store.put_record(stream, entry.clone()).await {
            Err(StreamError::Throttled(message)) => {
                retry += 1;
                match next_pause(policy, start, retry) {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => {
                        tracing::warn!(
                            stream,
                            retries = retry - 1,
                            "put still throttled when the retry budget ran out"
                        );
                        return Err(StreamError::Throttled(message));
                    }
                }
            }
            other => return other,
        }
    }
}

/// The pause before retry number `retry`, or `None` once the budget is spent.
fn next_pause(policy: &RetryPolicy, start: tokio::time::Instant, retry: u32) -> Option<Duration> {
    let remaining = policy.budget.checked_sub(start.elapsed()).filter(|r| !r.is_zero())?;
    Some(policy.delay(retry).min(remaining))
}

/// Puts `entries` and retries only the ones that failed with a retryable error (throttling,
/// Kinesis' `InternalFailure`) — and whole calls that were throttled — with exponential backoff
/// and full jitter, until all landed or the policy's budget is spent. Returns each record's
/// final outcome at its original index; what still failed is reported as
/// [`PutOutcome::Failed`], never dropped.
///
/// `Err` means nothing was written: the first call failed outright (or stayed throttled for the
/// whole budget). A whole-call error after some records landed fails the remaining ones
/// individually instead.
pub async fn put_records_with_retry<S: StreamStore + ?Sized>(
    store: &S,
    stream: &str,
    entries: Vec<PutEntry>,
    policy: &RetryPolicy,
) -> Result<Vec<PutOutcome>, StreamError> {
    let start = tokio::time::Instant::now();
    let mut outcomes: Vec<Option<PutOutcome>> = vec![None; entries.len()];
    let mut pending: Vec<usize> = (0..entries.len()).collect();
    let mut retry = 0;
    let mut last_error: Option<StreamError> = None;
    while !pending.is_empty() {
        let batch: Vec<PutEntry> = pending.iter().map(|&i| entries[i].clone()).collect();
        match store.put_records(stream, batch).await {
            Ok(results) if results.len() == pending.len() => {
                let mut still_failing = Vec::new();
                for (&index, outcome) in pending.iter().zip(results) {
                    if let PutOutcome::Failed { error_code, .. } = &outcome
                        && RETRYABLE_RECORD_ERRORS.contains(&error_code.as_str())
                    {
                        still_failing.push(index);
                    }
                    outcomes[index] = Some(outcome);
                }
                pending = still_failing;
                last_error = None;
            }
            Ok(results) => {
                let err = StreamError::Service(format!(
                    "stream service answered {} outcomes for {} records",
                    results.len(),
                    pending.len()
                ));
                tracing::warn!(stream, error = %err, "put call answered the wrong number of outcomes");
                fail_pending(&mut outcomes, &mut pending, &err);
                last_error = Some(err);
            }
            Err(err @ StreamError::Throttled(_)) => last_error = Some(err),
            Err(err) => {
                // Nothing resolved yet, so nothing was written: the caller can say so plainly.
                if outcomes.iter().all(Option::is_none) {
                    return Err(err);
                }
                tracing::warn!(stream, failed = pending.len(), error = %err, "put call failed after some records landed");
                fail_pending(&mut outcomes, &mut pending, &err);
                last_error = Some(err);
            }
        }
        if pending.is_empty() {
            break;
        }
        retry += 1;
        match next_pause(policy, start, retry) {
            Some(pause) => {
                tracing::debug!(stream, retry, pending = pending.len(), ?pause, "retrying failed records");
                tokio::time::sleep(pause).await;
            }
            None => {
                tracing::warn!(
                    stream,
                    retries = retry - 1,
                    failed = pending.len(),
                    "records still failing when the retry budget ran out"
                );
                break;
            }
        }
    }
    if outcomes.iter().all(Option::is_none)
        && let Some(err) = last_error
    {
        return Err(err);
    }
    let unresolved = last_error.unwrap_or_else(|| StreamError::Service("no outcome was reported".to_string()));
    Ok(outcomes.into_iter().map(|outcome| outcome.unwrap_or_else(|| failed_outcome(&unresolved))).collect())
}

/// Gives every pending record `err` as its final outcome.
fn fail_pending(outcomes: &mut [Option<PutOutcome>], pending: &mut Vec<usize>, err: &StreamError) {
    for index in pending.drain(..) {
        outcomes[index] = Some(failed_outcome(err));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::stream::{ShardInfo, StreamInfo};

    const PREFIX: &str = "0a1b2c3d4e5f";
    const PIN: &str = "streaming-0a1b2c3d4e5f-pin";
    const GEO: &str = "streaming-0a1b2c3d4e5f-geo";
    const USER: &str = "streaming-0a1b2c3d4e5f-user";
    const THROTTLED: &str = "ProvisionedThroughputExceededException";

    /// An in-memory stream service that can throttle chosen records and whole calls, and that
    /// remembers every call so tests can tell what was sent and what was written.
    #[derive(Default)]
    struct MemoryStore {
        state: Mutex<MemoryState>,
    }

    #[derive(Default)]
    struct MemoryState {
        /// The records written to each existing stream.
        streams: BTreeMap<String, Vec<PutEntry>>,
        /// Per partition key: how many more times its record fails with the given code.
        record_failures: HashMap<String, (u32, &'static str)>,
        /// How many more put calls are throttled as a whole.
        throttled_calls: u32,
        /// What the next non-put call answers instead of succeeding.
        control_error: Option<StreamError>,
        /// Put calls that fail as a whole after this many put calls succeeded.
        fail_puts_after: Option<(usize, StreamError)>,
        /// The partition keys sent by each put call, in order.
        put_calls: Vec<Vec<String>>,
        created: Vec<(String, Option<i32>)>,
        deleted: Vec<String>,
        next_sequence: u64,
    }

    impl MemoryStore {
        fn with_streams(names: &[&str]) -> Self {
            let store = Self::default();
            for name in names {
                store.state().streams.insert((*name).to_string(), Vec::new());
            }
            store
        }

        fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
            self.state.lock().unwrap()
        }

        fn fail_record(&self, partition_key: &str, times: u32, code: &'static str) {
            self.state().record_failures.insert(partition_key.to_string(), (times, code));
        }

        fn written(&self, stream: &str) -> Vec<PutEntry> {
            self.state().streams.get(stream).cloned().unwrap_or_default()
        }

        fn put_calls(&self) -> Vec<Vec<String>> {
            self.state().put_calls.clone()
        }

        fn nothing_changed(&self) -> bool {
            let state = self.state();
            state.put_calls.is_empty()
                && state.created.is_empty()
                && state.deleted.is_empty()
                && state.streams.values().all(Vec::is_empty)
        }

        fn control(&self, name: &str) -> Result<(), StreamError> {
            let mut state = self.state();
            if let Some(err) = state.control_error.take() {
                return Err(err);
            }
            if name.is_empty() || state.streams.contains_key(name) {
                Ok(())
            } else {
                Err(StreamError::NotFound(name.to_string()))
            }
        }

        /// One put call: whole-call failures first, then each record on its own.
        fn put(&self, stream: &str, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
            let mut state = self.state();
            let calls_so_far = state.put_calls.len();
            state.put_calls.push(entries.iter().map(|e| e.partition_key.clone()).collect());
            if let Some((after, err)) = &state.fail_puts_after
                && calls_so_far >= *after
            {
                return Err(err.clone());
            }
            if state.throttled_calls > 0 {
                state.throttled_calls -= 1;
                return Err(StreamError::Throttled("rate exceeded".to_string()));
            }
            if !state.streams.contains_key(stream) {
                return Err(StreamError::NotFound(stream.to_string()));
            }
            let mut outcomes = Vec::new();
            for entry in entries {
                if let Some((times, code)) = state.record_failures.get_mut(&entry.partition_key)
                    && *times > 0
                {
                    *times -= 1;
                    outcomes.push(PutOutcome::Failed {
                        error_code: (*code).to_string(),
                        error_message: format!("{} failed", entry.partition_key),
                    });
                    continue;
                }
                state.next_sequence += 1;
                let sequence_number = format!("{:056}", state.next_sequence);
                state.streams.get_mut(stream).unwrap().push(entry);
                outcomes.push(PutOutcome::Ok(PutAck { sequence_number, shard_id: "shardId-000000000000".to_string() }));
            }
            Ok(outcomes)
        }
    }

    #[async_trait]
    impl StreamStore for MemoryStore {
        async fn list_streams(&self) -> Result<Vec<String>, StreamError> {
            self.control("")?;
            Ok(self.state().streams.keys().cloned().collect())
        }

        async fn describe_stream(&self, name: &str) -> Result<StreamInfo, StreamError> {
            self.control(name)?;
            Ok(StreamInfo {
                stream_name: name.to_string(),
                stream_arn: format!("arn:aws:kinesis:us-east-1:123456789012:stream/{name}"),
                stream_status: "ACTIVE".to_string(),
                retention_period_hours: 24,
                shards: vec![ShardInfo {
                    shard_id: "shardId-000000000000".to_string(),
                    starting_hash_key: "0".to_string(),
                    ending_hash_key: "340282366920938463463374607431768211455".to_string(),
                    starting_sequence_number: "1".to_string(),
                    ending_sequence_number: None,
                }],
            })
        }

        async fn create_stream(&self, name: &str, shard_count: Option<i32>) -> Result<(), StreamError> {
            if let Some(err) = self.state().control_error.take() {
                return Err(err);
            }
            let mut state = self.state();
            if state.streams.contains_key(name) {
                return Err(StreamError::InUse(name.to_string()));
            }
            state.streams.insert(name.to_string(), Vec::new());
            state.created.push((name.to_string(), shard_count));
            Ok(())
        }

        async fn delete_stream(&self, name: &str) -> Result<(), StreamError> {
            self.control(name)?;
            let mut state = self.state();
            state.streams.remove(name);
            state.deleted.push(name.to_string());
            Ok(())
        }

        async fn put_record(&self, stream: &str, entry: PutEntry) -> Result<PutAck, StreamError> {
            match self.put(stream, vec![entry])?.remove(0) {
                PutOutcome::Ok(ack) => Ok(ack),
                PutOutcome::Failed { error_code, error_message } => {
                    Err(StreamError::Throttled(format!("{error_code}: {error_message}")))
                }
            }
        }

        async fn put_records(&self, stream: &str, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
            self.put(stream, entries)
        }
    }

    fn config(stream_admin: bool) -> ApiConfig {
        ApiConfig::new(PREFIX, stream_admin, Duration::from_millis(500)).unwrap()
    }

    /// A fast policy so retry tests take milliseconds.
    fn quick_retry(budget_ms: u64) -> RetryPolicy {
        RetryPolicy {
            budget: Duration::from_millis(budget_ms),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    fn ours() -> MemoryStore {
        MemoryStore::with_streams(&[PIN, GEO, USER])
    }

    async fn call(store: &MemoryStore, request: ApiRequest) -> ApiResponse {
        handle(&config(false), store, request).await
    }

    async fn call_admin(store: &MemoryStore, request: ApiRequest) -> ApiResponse {
        handle(&config(true), store, request).await
    }

    fn get(path: &str) -> ApiRequest {
        ApiRequest::new(Method::GET, path)
    }

    fn put_json(path: &str, body: &Value) -> ApiRequest {
        ApiRequest::new(Method::PUT, path).with_json(body)
    }

    fn pin_record(ind: i64) -> Value {
        json!({"index": ind, "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf", "title": "No Title Data Available",
            "follower_count": "211k", "downloaded": 0, "save_location": "Local save in /data/mens-fashion",
            "category": "mens-fashion"})
    }

    /// A PutRecords body of `n` records keyed `key-0`, `key-1`, ….
    fn batch(n: usize) -> Value {
        let records: Vec<Value> =
            (0..n).map(|i| json!({"data": pin_record(i as i64), "partition-key": format!("key-{i}")})).collect();
        json!({"records": records})
    }

    fn entries(keys: &[&str]) -> Vec<PutEntry> {
        keys.iter()
            .map(|k| PutEntry { data: format!("{{\"k\":\"{k}\"}}").into_bytes(), partition_key: (*k).to_string() })
            .collect()
    }

    /// Asserts an error response: status, code and a message that mentions `needle`.
    #[track_caller]
    fn assert_error(response: &ApiResponse, status: u16, code: &str, needle: &str) {
        assert_eq!(response.status.as_u16(), status, "{}", response.body);
        assert_eq!(response.error_code(), Some(code), "{}", response.body);
        let message = response.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "message {message:?} should mention {needle:?}");
        assert_eq!(
            response.body.as_object().map(serde_json::Map::len),
            Some(2),
            "error bodies hold error and message only"
        );
    }

    // --- configuration ---------------------------------------------------------------------

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn config_reads_prefix_admin_switch_and_retry_budget() {
        let config = ApiConfig::from_lookup(vars(&[
            (PREFIX_VAR, "0a1b2c3d4e5f"),
            (STREAM_ADMIN_VAR, "true"),
            (PUT_RETRY_BUDGET_VAR, "1500"),
        ]))
        .unwrap();
        assert_eq!(config.prefix, "0a1b2c3d4e5f");
        assert!(config.stream_admin);
        assert_eq!(config.put_retry, RetryPolicy::with_budget(Duration::from_millis(1500)));
        assert_eq!(config.stream_names(), vec![PIN, GEO, USER]);
    }

    #[test]
    fn config_defaults_to_no_admin_and_a_three_second_budget() {
        let config = ApiConfig::from_lookup(vars(&[(PREFIX_VAR, "abc_1-x")])).unwrap();
        assert!(!config.stream_admin);
        assert_eq!(config.put_retry.budget, Duration::from_millis(3000));
        assert_eq!(config.put_retry.base_delay, Duration::from_millis(50));
        assert_eq!(config.put_retry.max_delay, Duration::from_secs(1));
    }

    #[test]
    fn config_errors_name_the_variable() {
        let missing = ApiConfig::from_lookup(vars(&[])).unwrap_err();
        assert!(missing.to_string().contains(PREFIX_VAR), "{missing}");
        let blank = ApiConfig::from_lookup(vars(&[(PREFIX_VAR, "  ")])).unwrap_err();
        assert!(blank.to_string().contains(PREFIX_VAR), "{blank}");
        for bad in ["a.b", "a b", "ü", "a/b"] {
            let err = ApiConfig::from_lookup(vars(&[(PREFIX_VAR, bad)])).unwrap_err();
            assert!(err.to_string().contains(PREFIX_VAR), "{bad}: {err}");
        }
        let too_long = "x".repeat(114);
        assert!(ApiConfig::from_lookup(vars(&[(PREFIX_VAR, &too_long)])).is_err());
        assert!(ApiConfig::from_lookup(vars(&[(PREFIX_VAR, &too_long[..113])])).is_ok());
        let admin = ApiConfig::from_lookup(vars(&[(PREFIX_VAR, "p"), (STREAM_ADMIN_VAR, "yes")])).unwrap_err();
        assert!(admin.to_string().contains(STREAM_ADMIN_VAR), "{admin}");
        let budget = ApiConfig::from_lookup(vars(&[(PREFIX_VAR, "p"), (PUT_RETRY_BUDGET_VAR, "3s")])).unwrap_err();
        assert!(budget.to_string().contains(PUT_RETRY_BUDGET_VAR), "{budget}");
    }

    // --- routing ---------------------------------------------------------------------------

    #[test]
    fn routes_match_with_and_without_a_stage_prefix() {
        for base in ["", "/prod", "/v1"] {
            assert_eq!(route(&Method::GET, &format!("{base}/streams")), Ok(Action::ListStreams));
            assert_eq!(route(&Method::GET, &format!("{base}/streams/")), Ok(Action::ListStreams));
            assert_eq!(route(&Method::GET, &format!("{base}/streams/s")), Ok(Action::DescribeStream("s")));
            assert_eq!(route(&Method::POST, &format!("{base}/streams/s")), Ok(Action::CreateStream("s")));
            assert_eq!(route(&Method::DELETE, &format!("{base}/streams/s")), Ok(Action::DeleteStream("s")));
            assert_eq!(route(&Method::PUT, &format!("{base}/streams/s/record")), Ok(Action::PutRecord("s")));
            assert_eq!(route(&Method::PUT, &format!("{base}/streams/s/records")), Ok(Action::PutRecords("s")));
        }
    }

    #[tokio::test]
    async fn unknown_routes_are_404() {
        let store = ours();
        for path in
            ["/", "", "/stream", "/prod/v1/streams", "/streams/s/recordz", "/streams/s/record/x", "/prod/topics/x"]
        {
            let response = call(&store, get(path)).await;
            assert_error(&response, 404, "RouteNotFound", "/streams");
        }
        assert!(store.nothing_changed());
    }

    #[tokio::test]
    async fn wrong_methods_on_known_routes_are_405_with_allow() {
        let store = ours();
        let cases = [
            (Method::POST, "/streams".to_string(), "GET"),
            (Method::PUT, format!("/streams/{PIN}"), "GET, POST, DELETE"),
            (Method::PATCH, format!("/prod/streams/{PIN}"), "GET, POST, DELETE"),
            (Method::POST, format!("/streams/{PIN}/record"), "PUT"),
            (Method::GET, format!("/streams/{PIN}/records"), "PUT"),
        ];
        for (method, path, allow) in cases {
            let response = call_admin(&store, ApiRequest::new(method.clone(), &path).with_json(&batch(1))).await;
            assert_error(&response, 405, "MethodNotAllowed", method.as_str());
            assert_eq!(response.headers.get(ALLOW).unwrap(), allow, "{method} {path}");
        }
        assert!(store.nothing_changed());
    }

    #[tokio::test]
    async fn invalid_stream_names_are_400_and_foreign_ones_404_on_every_route() {
        let store = MemoryStore::with_streams(&[PIN, "streaming-other-pin"]);
        let invalid = ["bad name", "a%2Fb", "ünï", &"x".repeat(129)];
        let foreign =
            ["streaming-other-pin", "streaming-0a1b2c3d4e5f-orders", "streaming-0a1b2c3d4e5f-pin-x", "orders"];
        let requests = |name: &str| {
            vec![
                get(&format!("/streams/{name}")),
                ApiRequest::new(Method::POST, format!("/streams/{name}")),
                ApiRequest::new(Method::DELETE, format!("/streams/{name}")),
                put_json(&format!("/streams/{name}/record"), &json!({"Data": pin_record(1), "PartitionKey": "p"})),
                put_json(&format!("/streams/{name}/records"), &batch(2)),
            ]
        };
        for name in invalid {
            for request in requests(name) {
                let response = call_admin(&store, request).await;
                assert_error(&response, 400, "InvalidStreamName", "1 to 128 characters");
            }
        }
        for name in foreign {
            for request in requests(name) {
                let response = call_admin(&store, request).await;
                assert_error(&response, 404, "StreamNotFound", PIN);
            }
        }
        assert!(store.nothing_changed());
        assert_eq!(store.state().streams.len(), 2, "the other deployment's stream is untouched");
    }

    // --- stream administration -------------------------------------------------------------

    #[tokio::test]
    async fn list_shows_only_this_deployments_streams() {
        let store =
            MemoryStore::with_streams(&[PIN, USER, "streaming-other-pin", "orders", "streaming-0a1b2c3d4e5f-x"]);
        let response = call(&store, get("/prod/streams")).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body, json!({"StreamNames": [PIN, USER], "HasMoreStreams": false}));
    }

    #[tokio::test]
    async fn describe_answers_a_kinesis_stream_description() {
        let store = ours();
        let response = call(&store, get(&format!("/streams/{GEO}"))).await;
        assert_eq!(response.status, StatusCode::OK);
        let description = &response.body["StreamDescription"];
        assert_eq!(description["StreamName"], GEO);
        assert_eq!(description["StreamARN"], format!("arn:aws:kinesis:us-east-1:123456789012:stream/{GEO}"));
        assert_eq!(description["StreamStatus"], "ACTIVE");
        assert_eq!(description["RetentionPeriodHours"], 24);
        assert_eq!(description["HasMoreShards"], false);
        assert_eq!(description["Shards"][0]["ShardId"], "shardId-000000000000");
        assert_eq!(description["Shards"][0]["StartingHashKey"], "0");
        assert!(description["Shards"][0].get("EndingSequenceNumber").is_none());
    }

    #[tokio::test]
    async fn create_takes_an_optional_shard_count_and_defaults_to_on_demand() {
        let store = MemoryStore::default();
        let create = |name: &str| ApiRequest::new(Method::POST, format!("/streams/{name}"));
        let response = call_admin(&store, create(PIN).with_json(&json!({"ShardCount": 2}))).await;
        assert_eq!((response.status, response.body), (StatusCode::OK, json!({})));
        assert_eq!(call_admin(&store, create(GEO)).await.status, StatusCode::OK);
        let response = call_admin(&store, create(USER).with_json(&json!({"StreamName": USER}))).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            store.state().created,
            vec![(PIN.to_string(), Some(2)), (GEO.to_string(), None), (USER.to_string(), None)]
        );
        let again = call_admin(&store, create(PIN)).await;
        assert_error(&again, 409, "StreamInUse", PIN);
    }

    #[tokio::test]
    async fn create_refuses_bad_shard_counts_and_bodies() {
        let store = MemoryStore::default();
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
    async fn create_and_delete_are_forbidden_when_admin_is_off() {
        let store = ours();
        let response = call(&store, ApiRequest::new(Method::POST, format!("/streams/{PIN}"))).await;
        assert_error(&response, 403, "StreamAdminDisabled", STREAM_ADMIN_VAR);
        let response = call(&store, ApiRequest::new(Method::DELETE, format!("/streams/{PIN}"))).await;
        assert_error(&response, 403, "StreamAdminDisabled", "delete");
        assert!(store.nothing_changed());
        assert_eq!(store.state().streams.len(), 3);
    }

    #[tokio::test]
    async fn delete_removes_the_stream_when_admin_is_on() {
        let store = ours();
        let response = call_admin(&store, ApiRequest::new(Method::DELETE, format!("/prod/streams/{GEO}"))).await;
        assert_eq!((response.status, response.body), (StatusCode::OK, json!({})));
        assert_eq!(store.state().deleted, vec![GEO.to_string()]);
        let again = call_admin(&store, ApiRequest::new(Method::DELETE, format!("/streams/{GEO}"))).await;
        assert_error(&again, 404, "StreamNotFound", GEO);
    }

    #[tokio::test]
    async fn stream_service_errors_map_to_statuses() {
        let cases = [
            (StreamError::NotFound(PIN.to_string()), 404, "StreamNotFound"),
            (StreamError::InUse(PIN.to_string()), 409, "StreamInUse"),
            (StreamError::Throttled("rate exceeded".to_string()), 429, "Throttled"),
            (StreamError::Invalid("bad shard".to_string()), 400, "InvalidArgument"),
            (StreamError::Service("account 123456789012 endpoint down".to_string()), 502, "StreamServiceError"),
        ];
        for (err, status, code) in cases {
            let store = ours();
            store.state().control_error = Some(err);
            let response = call(&store, get(&format!("/streams/{PIN}"))).await;
            assert_error(&response, status, code, "");
            assert!(!response.body.to_string().contains("123456789012"), "service details stay in the log");
        }
    }

    // --- PutRecord -------------------------------------------------------------------------

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
        assert_eq!(response.body, json!({"SequenceNumber": format!("{:056}", 1), "ShardId": "shardId-000000000000"}));
        let written = store.written(PIN);
        assert_eq!(written.len(), 1);
        assert_eq!(
            String::from_utf8(written[0].data.clone()).unwrap(),
            r#"{"index":7528,"title":"No Title Data Available","downloaded":0}"#
        );
        assert_eq!(written[0].partition_key, "6f1c2b7e-55a4-4c1e-9f0a-3f0e3c9d2b1a");
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
        let store = ours();
        for (request, status, code, needle) in cases {
            let response = call(&store, request).await;
            assert_error(&response, status, code, needle);
        }
        assert!(store.nothing_changed());
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
    async fn put_record_retries_a_throttled_call_within_the_budget() {
        let store = ours();
        store.state().throttled_calls = 2;
        let config = ApiConfig { put_retry: quick_retry(1000), ..config(false) };
        let request = put_json(&format!("/streams/{PIN}/record"), &json!({"Data": {"ind": 1}, "PartitionKey": "p"}));
        let response = handle(&config, &store, request.clone()).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(store.put_calls().len(), 3);
        assert_eq!(store.written(PIN).len(), 1);

        store.state().throttled_calls = u32::MAX;
        let config = ApiConfig { put_retry: quick_retry(20), ..config };
        let response = handle(&config, &store, request).await;
        assert_error(&response, 429, "Throttled", "retry later");
        assert_eq!(store.written(PIN).len(), 1);
    }

    // --- PutRecords ------------------------------------------------------------------------

    #[tokio::test]
    async fn put_records_answers_each_record_in_request_order() {
        let store = ours();
        let response = call(&store, put_json(&format!("/streams/{USER}/records"), &batch(3))).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            response.body,
            json!({"FailedRecordCount": 0, "Records": [
                {"SequenceNumber": format!("{:056}", 1), "ShardId": "shardId-000000000000"},
                {"SequenceNumber": format!("{:056}", 2), "ShardId": "shardId-000000000000"},
                {"SequenceNumber": format!("{:056}", 3), "ShardId": "shardId-000000000000"},
            ]})
        );
        let written = store.written(USER);
        let keys: Vec<&str> = written.iter().map(|e| e.partition_key.as_str()).collect();
        assert_eq!(keys, ["key-0", "key-1", "key-2"]);
        assert_eq!(written[2].data, serde_json::to_vec(&pin_record(2)).unwrap());
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
        let store = ours();
        for (request, status, code, needle) in cases {
            let response = call(&store, request).await;
            assert_error(&response, status, code, needle);
        }
        assert!(store.nothing_changed());
    }

    #[tokio::test]
    async fn put_records_takes_exactly_500_records() {
        let store = ours();
        let response = call(&store, put_json(&format!("/streams/{PIN}/records"), &batch(MAX_BATCH_RECORDS))).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body["Records"].as_array().unwrap().len(), 500);
        assert_eq!(store.written(PIN).len(), 500);
    }

    #[tokio::test]
    async fn put_records_reports_what_still_failed_after_the_budget_with_status_200() {
        let store = ours();
        store.fail_record("key-1", u32::MAX, THROTTLED);
        let config = ApiConfig { put_retry: quick_retry(30), ..config(false) };
        let response = handle(&config, &store, put_json(&format!("/streams/{PIN}/records"), &batch(3))).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body["FailedRecordCount"], 1);
        let records = response.body["Records"].as_array().unwrap();
        assert!(records[0]["SequenceNumber"].is_string());
        assert_eq!(records[1], json!({"ErrorCode": THROTTLED, "ErrorMessage": "key-1 failed"}));
        assert!(records[2]["SequenceNumber"].is_string());
        let keys: Vec<String> = store.written(PIN).into_iter().map(|e| e.partition_key).collect();
        assert_eq!(keys, ["key-0", "key-2"]);
    }

    // --- retry logic -----------------------------------------------------------------------

    #[tokio::test]
    async fn only_failed_entries_are_resent_and_outcomes_keep_their_index() {
        let store = MemoryStore::with_streams(&[PIN]);
        store.fail_record("b", 2, THROTTLED);
        store.fail_record("d", 1, "InternalFailure");
        let outcomes =
            put_records_with_retry(&store, PIN, entries(&["a", "b", "c", "d", "e"]), &quick_retry(1000)).await.unwrap();
        assert_eq!(store.put_calls(), vec![vec!["a", "b", "c", "d", "e"], vec!["b", "d"], vec!["b"]]);
        let shards_of: Vec<String> = outcomes
            .iter()
            .map(|o| match o {
                PutOutcome::Ok(ack) => ack.sequence_number.trim_start_matches('0').to_string(),
                PutOutcome::Failed { error_code, .. } => error_code.clone(),
            })
            .collect();
        // a, c, e land first (1, 2, 3), then d (4), then b (5): each at its own index.
        assert_eq!(shards_of, ["1", "5", "2", "4", "3"]);
        let keys: Vec<String> = store.written(PIN).into_iter().map(|e| e.partition_key).collect();
        assert_eq!(keys, ["a", "c", "e", "d", "b"]);
    }

    #[tokio::test]
    async fn records_that_cannot_succeed_are_not_retried() {
        let store = MemoryStore::with_streams(&[PIN]);
        store.fail_record("b", u32::MAX, "KMSAccessDeniedException");
        let outcomes = put_records_with_retry(&store, PIN, entries(&["a", "b"]), &quick_retry(1000)).await.unwrap();
        assert_eq!(store.put_calls().len(), 1);
        assert!(matches!(&outcomes[0], PutOutcome::Ok(_)));
        assert_eq!(
            outcomes[1],
            PutOutcome::Failed {
                error_code: "KMSAccessDeniedException".to_string(),
                error_message: "b failed".to_string()
            }
        );
    }

    #[tokio::test]
    async fn an_exhausted_budget_reports_the_failures_it_has() {
        let store = MemoryStore::with_streams(&[PIN]);
        store.fail_record("b", u32::MAX, THROTTLED);
        let started = std::time::Instant::now();
        let outcomes = put_records_with_retry(&store, PIN, entries(&["a", "b", "c"]), &quick_retry(40)).await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(40) && elapsed < Duration::from_secs(2), "{elapsed:?}");
        let calls = store.put_calls();
        assert!(calls.len() > 2, "it kept retrying within the budget: {calls:?}");
        assert!(calls[1..].iter().all(|call| call == &["b"]), "only b is resent: {calls:?}");
        assert_eq!(outcomes.len(), 3);
        assert!(matches!(&outcomes[0], PutOutcome::Ok(_)) && matches!(&outcomes[2], PutOutcome::Ok(_)));
        assert!(matches!(&outcomes[1], PutOutcome::Failed { error_code, .. } if error_code == THROTTLED));
    }

    #[tokio::test]
    async fn a_zero_budget_makes_one_attempt() {
        let store = MemoryStore::with_streams(&[PIN]);
        store.fail_record("a", 1, THROTTLED);
        let outcomes = put_records_with_retry(&store, PIN, entries(&["a"]), &quick_retry(0)).await.unwrap();
        assert_eq!(store.put_calls().len(), 1);
        assert!(matches!(&outcomes[0], PutOutcome::Failed { .. }));
    }

    #[tokio::test]
    async fn throttled_whole_calls_are_retried_and_errors_before_any_write_are_returned() {
        let store = MemoryStore::with_streams(&[PIN]);
        store.state().throttled_calls = 2;
        let outcomes = put_records_with_retry(&store, PIN, entries(&["a", "b"]), &quick_retry(1000)).await.unwrap();
        assert_eq!(store.put_calls().len(), 3);
        assert!(outcomes.iter().all(|o| matches!(o, PutOutcome::Ok(_))));

        let store = MemoryStore::with_streams(&[PIN]);
        store.state().throttled_calls = u32::MAX;
        let result = put_records_with_retry(&store, PIN, entries(&["a"]), &quick_retry(20)).await;
        assert!(matches!(result, Err(StreamError::Throttled(_))), "{result:?}");
        assert!(store.put_calls().len() > 1);

        let store = MemoryStore::with_streams(&[]);
        let result = put_records_with_retry(&store, PIN, entries(&["a"]), &quick_retry(1000)).await;
        assert_eq!(result, Err(StreamError::NotFound(PIN.to_string())));
        assert_eq!(store.put_calls().len(), 1, "a missing stream is not retried");
    }

    #[tokio::test]
    async fn an_error_after_some_records_landed_fails_the_rest_individually() {
        let store = MemoryStore::with_streams(&[PIN]);
        store.fail_record("b", u32::MAX, THROTTLED);
        store.state().fail_puts_after = Some((1, StreamError::Service("connection reset".to_string())));
        let outcomes = put_records_with_retry(&store, PIN, entries(&["a", "b"]), &quick_retry(1000)).await.unwrap();
        assert_eq!(store.put_calls().len(), 2);
        assert!(matches!(&outcomes[0], PutOutcome::Ok(_)));
        assert_eq!(
            outcomes[1],
            PutOutcome::Failed {
                error_code: "InternalFailure".to_string(),
                error_message: "the stream service failed; retry later".to_string()
            }
        );
    }

    #[tokio::test]
    async fn a_whole_call_error_during_put_records_maps_to_its_status() {
        let store = MemoryStore::with_streams(&[PIN]);
        store.state().fail_puts_after = Some((0, StreamError::Invalid("record too large".to_string())));
        let response = call(&store, put_json(&format!("/streams/{PIN}/records"), &batch(1))).await;
        assert_error(&response, 400, "InvalidArgument", "record too large");
        let store = MemoryStore::with_streams(&[]);
        let response = call(&store, put_json(&format!("/streams/{PIN}/records"), &batch(1))).await;
        assert_error(&response, 404, "StreamNotFound", PIN);
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

    #[test]
    fn backoff_pauses_stay_under_the_exponential_ceiling() {
        let policy = RetryPolicy::with_budget(Duration::from_secs(3));
        for retry in 1..40 {
            let ceiling = (Duration::from_millis(50) * 2u32.saturating_pow(retry - 1)).min(Duration::from_secs(1));
            for _ in 0..20 {
                assert!(policy.delay(retry) <= ceiling, "retry {retry}");
            }
        }
        let spread: std::collections::HashSet<Duration> = (0..50).map(|_| policy.delay(5)).collect();
        assert!(spread.len() > 10, "pauses are jittered");
    }

    // --- robustness ------------------------------------------------------------------------

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

    #[test]
    fn responses_become_json_http_responses() {
        let request = http::Request::builder()
            .method(Method::PUT)
            .uri("https://api.example.com/prod/streams/s/record?x=1")
            .header(CONTENT_TYPE, "application/json")
            .body(b"{}".to_vec())
            .unwrap();
        let request = ApiRequest::from(request);
        assert_eq!(request.path, "/prod/streams/s/record");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));

        let response: ApiResponse = route(&Method::POST, "/streams").unwrap_err().into();
        let http = response.into_http();
        assert_eq!(http.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(http.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(http.headers()[ALLOW], "GET");
        let body: Value = serde_json::from_slice(http.body()).unwrap();
        assert_eq!(body["error"], "MethodNotAllowed");
    }
}
