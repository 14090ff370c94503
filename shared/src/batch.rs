//! The batch path: the objects a Kafka Connect S3 sink writes, landed in the same Delta tables
//! as the stream, cleaned by the same code.
//!
//! The sink writes `topics/<topic>/partition=<p>/<topic>+<p>+<start offset>.json` (SPEC §4):
//! newline-separated JSON values. pinpipe also takes an object holding one JSON array, and
//! gzip-compressed `.json.gz`. Objects are streamed record by record, never read whole, and the
//! records of all the objects of one notification are committed together, in chunks of at most
//! [`BatchLimits::records`] records per table, so a notification for many small objects makes
//! one commit per table, not one per object.
//!
//! # Exactly once
//!
//! Each object is its own source: [`SourceKey::Offset`] `kafka/<topic>/<p>/<start offset>`, and a
//! record's position is its Kafka offset (start offset + its ordinal in the object). A second
//! notification for the object, or the object uploaded again under the same key, finds the
//! object's `txn` entry and writes nothing; a retry after a crash between two chunk commits skips
//! the chunks that landed. A single high-water mark per topic-partition would be smaller, but S3
//! notifications arrive in no particular order and are handled by concurrent invocations: an
//! object with a lower offset landing after a higher one would look delivered and be lost. The
//! price is one `txn` entry per object; the sink's `flush.size` sets how many that is.
//!
//! # What is skipped, what fails
//!
//! A key outside the layout, another deployment's topic, an unknown table, a format other than
//! JSON, or an object deleted since its notification is skipped with a logged reason: retrying
//! would never help. A record that cannot be cleaned, and the unreadable rest of a corrupt
//! object, go to the quarantine table with `s3://bucket/key`, line number and reason. Only an
//! infrastructure failure (S3 or the lake unreachable) fails the invocation, and Lambda's retry
//! is then safe.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_compression::tokio::bufread::GzipDecoder;
use aws_lambda_events::event::s3::S3Event;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::RetryConfig;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use crate::Table;
use crate::consumer::{BatchSummary, ConsumeError, SourceRecord, TableSink};
use crate::json::closes_string;
use crate::lake::{Lake, Position, SourceKey};
use crate::schema::Origin;

/// The key prefix under which the sink writes (its `topics.dir`, by default `topics`).
pub const TOPICS_DIR: &str = "topics";

/// A record longer than this is quarantined with its first [`KEPT_OF_OVERSIZED`] bytes rather
/// than held in memory: no clean `pin`, `geo` or `user` record comes near it.
pub const MAX_RECORD_BYTES: usize = 4 << 20;
const KEPT_OF_OVERSIZED: usize = 64 << 10;

/// An object in a bucket, its key as stored (already URL-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

/// What a Kafka Connect object key says about its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectObject {
    pub topic: String,
    pub table: Table,
    pub partition: u32,
    pub start_offset: i64,
    pub gzip: bool,
}

impl ConnectObject {
    /// The exactly-once source of this object's records (see the module docs).
    pub fn source_key(&self) -> SourceKey {
        SourceKey::Offset(format!("kafka/{}/{}/{}", self.topic, self.partition, self.start_offset))
    }
}

/// Why an object key is not ingested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Skip(pub String);

/// Reads a key of the layout `topics/<prefix>.<table>/partition=<p>/<prefix>.<table>+<p>+<offset>.json[.gz]`.
pub fn parse_key(prefix: &str, key: &str) -> Result<ConnectObject, Skip> {
    let skip = |why: &str| Err(Skip(format!("{key}: {why}")));
    let parts: Vec<&str> = key.split('/').collect();
    let [dir, topic, partition_dir, file] = parts[..] else {
        return skip("not of the form topics/<topic>/partition=<p>/<file>");
    };
    if dir != TOPICS_DIR {
        return skip("not under topics/");
    }
    let (gzip, stem) = if let Some(stem) = file.strip_suffix(".json.gz") {
        (true, stem)
    } else if let Some(stem) = file.strip_suffix(".json") {
        (false, stem)
    } else {
        return skip("not a .json or .json.gz object (only the sink's JsonFormat is read)");
    };
    let Some(partition) = partition_dir.strip_prefix("partition=").and_then(|p| p.parse::<u32>().ok()) else {
        return skip("the folder after the topic is not partition=<number>");
    };
    let fields: Vec<&str> = stem.rsplitn(3, '+').collect();
    let [offset, file_partition, file_topic] = fields[..] else {
        return skip("the file name is not <topic>+<partition>+<offset>");
    };
    if file_topic != topic || file_partition.parse::<u32>().ok() != Some(partition) {
        return skip("the file name does not match its topic and partition folders");
    }
    // Kafka offsets stay far below 10^18; the bound keeps start + ordinal inside an i64.
    let Some(start_offset) = offset.parse::<i64>().ok().filter(|o| (0..1_000_000_000_000_000_000).contains(o)) else {
        return skip("the start offset is not a number below 10^18");
    };
    let Some(table_name) = topic.strip_prefix(prefix).and_then(|t| t.strip_prefix('.')) else {
        return skip(&format!("topic {topic} is not one of this deployment's ({prefix}.pin|geo|user)"));
    };
    let Ok(table) = table_name.parse::<Table>() else {
        return skip(&format!("topic {topic} names no table of pinpipe (pin, geo, user)"));
    };
    Ok(ConnectObject { topic: topic.to_string(), table, partition, start_offset, gzip })
}

/// The objects an S3 notification names, keys URL-decoded, and the records it names that are
/// not object creations or lack a bucket or key, as skips.
pub fn objects_of(event: &S3Event) -> (Vec<ObjectRef>, Vec<Skip>) {
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    for record in &event.records {
        let name = record.event_name.as_deref().unwrap_or_default();
        let (Some(bucket), Some(key)) = (record.s3.bucket.name.as_deref(), record.s3.object.key.as_deref()) else {
            skipped.push(Skip(format!("a {name:?} record without bucket or key")));
            continue;
        };
        if !name.starts_with("ObjectCreated:") {
            skipped.push(Skip(format!("{key}: {name:?} is not an object creation")));
            continue;
        }
        objects.push(ObjectRef { bucket: bucket.to_string(), key: decode_key(key) });
    }
    (objects, skipped)
}

/// Decodes an S3 notification key: URL-encoded, with `+` for a space. The sink's keys hold
/// literal `+` (notifications send `%2B`); a hand-written event may carry them unencoded, and
/// since the layout has no spaces, a `+` is read as itself when a space would break the layout.
pub fn decode_key(key: &str) -> String {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let form = decode(&key.replace('+', " "));
    if form.contains(' ') && !key.contains("%20") { decode(key) } else { form }
}

/// Where objects are read from: S3 in Lambda, a local folder for the demo.
#[async_trait::async_trait]
pub trait ObjectSource: Send + Sync {
    /// The object's bytes as a stream, or `None` if it no longer exists.
    async fn open(&self, object: &ObjectRef) -> Result<Option<ObjectBody>, SourceError>;

    /// Where the object is, as the lineage and quarantine tables name it.
    fn locate(&self, object: &ObjectRef) -> String {
        format!("s3://{}/{}", object.bucket, object.key)
    }
}

pub type ObjectBody = Box<dyn AsyncBufRead + Send + Unpin>;

#[derive(Debug, thiserror::Error)]
#[error("reading s3://{bucket}/{key}: {detail}")]
pub struct SourceError {
    pub bucket: String,
    pub key: String,
    pub detail: String,
}

impl SourceError {
    fn new(object: &ObjectRef, detail: impl ToString) -> Self {
        Self { bucket: object.bucket.clone(), key: object.key.clone(), detail: detail.to_string() }
    }
}

/// Objects in S3, streamed with `GetObject` by object_store's S3 client (the lake's own).
pub struct S3Objects {
    config: Vec<(AmazonS3ConfigKey, String)>,
    retry: Option<RetryConfig>,
    /// One client per bucket, kept across invocations.
    stores: std::sync::Mutex<HashMap<String, Arc<AmazonS3>>>,
}

impl S3Objects {
    /// Credentials, region and endpoint from the `AWS_*` environment, as Lambda provides them.
    /// A custom endpoint (`AWS_ENDPOINT_URL`: moto, MinIO) is addressed path-style.
    pub fn from_env() -> Self {
        Self { config: Vec::new(), retry: None, stores: Default::default() }
    }

    /// A setting on top of the environment, such as another endpoint.
    pub fn with_config(mut self, key: AmazonS3ConfigKey, value: impl Into<String>) -> Self {
        self.config.push((key, value.into()));
        self
    }

    /// How failed requests are retried (object_store's default: up to 10 times within 3 minutes).
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    fn store(&self, object: &ObjectRef) -> Result<Arc<AmazonS3>, SourceError> {
        let mut stores = self.stores.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(store) = stores.get(&object.bucket) {
            return Ok(store.clone());
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&object.bucket);
        for (key, value) in &self.config {
            builder = builder.with_config(*key, value);
        }
        if let Some(retry) = &self.retry {
            builder = builder.with_retry(retry.clone());
        }
        let store = Arc::new(builder.build().map_err(|e| SourceError::new(object, e))?);
        stores.insert(object.bucket.clone(), store.clone());
        Ok(store)
    }
}

#[async_trait::async_trait]
impl ObjectSource for S3Objects {
    async fn open(&self, object: &ObjectRef) -> Result<Option<ObjectBody>, SourceError> {
        let store = self.store(object)?;
        // The key as S3 names it: `parse` keeps it as it is, where `from` would re-encode a `%`.
        let path = ObjectPath::parse(&object.key).unwrap_or_else(|_| ObjectPath::from(object.key.as_str()));
        match store.get(&path).await {
            Ok(found) => {
                let body = found.into_stream().map_err(std::io::Error::from);
                Ok(Some(Box::new(tokio_util::io::StreamReader::new(body))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(SourceError::new(object, error)),
        }
    }
}

/// Objects in a local folder that stands for the bucket: `<root>/<key>` (the bucket name is
/// not used). `pinpipe emulate --kafka-files` and the demo write this layout.
pub struct LocalObjects {
    root: PathBuf,
}

impl LocalObjects {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

#[async_trait::async_trait]
impl ObjectSource for LocalObjects {
    async fn open(&self, object: &ObjectRef) -> Result<Option<ObjectBody>, SourceError> {
        match tokio::fs::File::open(self.root.join(&object.key)).await {
            Ok(file) => Ok(Some(Box::new(BufReader::new(file)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SourceError::new(object, e)),
        }
    }

    fn locate(&self, object: &ObjectRef) -> String {
        format!("file://{}", self.root.join(&object.key).display())
    }
}

/// One raw record of an object: its bytes, and the line (or array element) it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub line: u64,
    pub bytes: Vec<u8>,
    /// Why the record cannot be cleaned before it is even parsed (too long, object corrupt).
    pub unreadable: Option<String>,
}

/// Marks the errors of the stream under the decoder, so that they can be told from errors in
/// the content (a corrupt gzip stream): only the former are worth a retry.
struct Transport(ObjectBody);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(std::io::Error);

impl Transport {
    fn caused(error: &std::io::Error) -> bool {
        error.get_ref().is_some_and(|inner| inner.is::<TransportError>())
    }

    fn mark(error: std::io::Error) -> std::io::Error {
        std::io::Error::new(error.kind(), TransportError(error))
    }
}

impl tokio::io::AsyncRead for Transport {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf).map_err(Transport::mark)
    }
}

impl AsyncBufRead for Transport {
    fn poll_fill_buf(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<&[u8]>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_fill_buf(cx).map_err(Transport::mark)
    }

    fn consume(mut self: std::pin::Pin<&mut Self>, amt: usize) {
        std::pin::Pin::new(&mut self.0).consume(amt)
    }
}

/// Splits an object's stream into records: one per non-blank line, or one per element if the
/// object is a single JSON array. Reads as it goes; holds one record at a time.
pub struct RecordReader {
    body: ObjectBody,
    mode: Option<Mode>,
    /// Lines read so far.
    line: u64,
    /// Array elements read so far.
    elements: u64,
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Lines,
    /// A top-level array; `true` once its `[` was read.
    Array(bool),
}

impl RecordReader {
    pub fn new(body: ObjectBody, gzip: bool) -> Self {
        let body: ObjectBody = Box::new(Transport(body));
        let body: ObjectBody = if gzip {
            let mut decoder = GzipDecoder::new(body);
            decoder.multiple_members(true);
            Box::new(BufReader::new(decoder))
        } else {
            body
        };
        Self { body, mode: None, line: 0, elements: 0, done: false }
    }

    /// The next record, `None` at the end. A stream that cannot be decoded (corrupt gzip) ends
    /// with one unreadable record that says why; errors of the transport (S3, the disk) are
    /// returned, since a retry may well succeed.
    pub async fn next_record(&mut self) -> std::io::Result<Option<RawRecord>> {
        if self.done {
            return Ok(None);
        }
        let result = match self.mode {
            Some(Mode::Lines) => self.next_line().await,
            Some(Mode::Array(_)) => self.next_element().await,
            None => match self.detect().await {
                Ok(Mode::Lines) => {
                    self.mode = Some(Mode::Lines);
                    self.next_line().await
                }
                Ok(mode) => {
                    self.mode = Some(mode);
                    self.next_element().await
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) if !Transport::caused(&e) => {
                self.done = true;
                let at = self.position() + 1;
                let reason = format!("object unreadable from record {at} on: {e}");
                Ok(Some(RawRecord { line: at, bytes: Vec::new(), unreadable: Some(reason) }))
            }
            other => other,
        }
    }

    /// Line number in line mode, element number in array mode, of the last record read.
    fn position(&self) -> u64 {
        match self.mode {
            Some(Mode::Array(_)) => self.elements,
            _ => self.line,
        }
    }

    /// An object whose first non-blank byte is `[` is one JSON array; anything else is lines.
    async fn detect(&mut self) -> std::io::Result<Mode> {
        let buf = self.body.fill_buf().await?;
        let first = buf.iter().find(|b| !b.is_ascii_whitespace());
        match first {
            Some(b'[') => Ok(Mode::Array(false)),
            Some(_) => Ok(Mode::Lines),
            // Only blanks in the first buffer: lines handles the rest, arrays there are rare.
            None => Ok(Mode::Lines),
        }
    }

    async fn next_line(&mut self) -> std::io::Result<Option<RawRecord>> {
        loop {
            let mut bytes = Vec::new();
            let mut length = 0usize;
            let mut ended = false;
            while !ended {
                let buf = self.body.fill_buf().await?;
                if buf.is_empty() {
                    break;
                }
                let (take, newline) = match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => (i, true),
                    None => (buf.len(), false),
                };
                let room = MAX_RECORD_BYTES.saturating_sub(bytes.len()).min(take);
                bytes.extend_from_slice(&buf[..room]);
                length += take;
                self.body.consume(take + usize::from(newline));
                ended = newline;
            }
            if length == 0 && !ended {
                return Ok(None);
            }
            self.line += 1;
            if length <= MAX_RECORD_BYTES && bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            return Ok(Some(self.record(self.line, bytes, length)));
        }
    }

    /// The next element of the top-level array. Tracks strings and nesting so that commas and
    /// brackets inside a value do not split it; a scalar element ends at the next `,` or `]`.
    async fn next_element(&mut self) -> std::io::Result<Option<RawRecord>> {
        let mut bytes = Vec::new();
        let mut length = 0usize;
        let mut depth = 0usize;
        let (mut in_string, mut escaped, mut started) = (false, false, false);
        loop {
            let buf = self.body.fill_buf().await?;
            if buf.is_empty() {
                // An array cut short: what was read of its last element is quarantined as is.
                if length == 0 {
                    return Ok(None);
                }
                self.elements += 1;
                return Ok(Some(self.record(self.elements, bytes, length)));
            }
            let mut used = 0;
            let mut finished = false;
            for &b in buf {
                used += 1;
                if !started {
                    match (b, self.mode) {
                        (b'[', Some(Mode::Array(false))) => {
                            self.mode = Some(Mode::Array(true));
                            continue;
                        }
                        (b']', _) => {
                            self.done = true;
                            finished = true;
                            break;
                        }
                        (b',', _) => continue,
                        _ if b.is_ascii_whitespace() => continue,
                        _ => started = true,
                    }
                }
                if in_string {
                    in_string = !closes_string(b, &mut escaped);
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' if depth > 0 => depth -= 1,
                        b',' | b']' if depth == 0 => {
                            // The separator ends a scalar element and is left for the next call.
                            used -= 1;
                            finished = true;
                            break;
                        }
                        _ => {}
                    }
                }
                length += 1;
                if bytes.len() < MAX_RECORD_BYTES {
                    bytes.push(b);
                }
                if depth == 0 && !in_string && matches!(b, b'}' | b']' | b'"') {
                    finished = true;
                    break;
                }
            }
            self.body.consume(used);
            if finished {
                if length == 0 {
                    return Ok(None);
                }
                self.elements += 1;
                return Ok(Some(self.record(self.elements, bytes, length)));
            }
        }
    }

    fn record(&self, line: u64, mut bytes: Vec<u8>, length: usize) -> RawRecord {
        let unreadable = (length > MAX_RECORD_BYTES).then(|| {
            bytes.truncate(KEPT_OF_OVERSIZED);
            format!(
                "record of {length} bytes is over the {MAX_RECORD_BYTES}-byte limit; its first {KEPT_OF_OVERSIZED} bytes are kept"
            )
        });
        RawRecord { line, bytes, unreadable }
    }
}

/// How much the batch path commits at once, per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Records per commit.
    pub records: usize,
    /// Raw bytes per commit.
    pub bytes: usize,
}

impl Default for BatchLimits {
    /// About what one Kinesis batch holds: a few MB, a few thousand rows, one Parquet file.
    fn default() -> Self {
        Self { records: 10_000, bytes: 32 << 20 }
    }
}

/// What one table received from an ingest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableTotals {
    pub records_in: usize,
    pub rows_written: usize,
    /// Records an earlier delivery had already landed.
    pub duplicates_skipped: usize,
    pub quarantined: usize,
    pub commits: usize,
}

impl TableTotals {
    fn add(&mut self, batch: &BatchSummary) {
        self.records_in += batch.records_in;
        self.rows_written += batch.rows.rows_written;
        self.duplicates_skipped += batch.rows.rows_skipped + batch.quarantined.rows_skipped;
        self.quarantined += batch.quarantined.rows_written;
        self.commits += usize::from(batch.rows.version.is_some()) + usize::from(batch.quarantined.version.is_some());
    }
}

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub objects_read: usize,
    pub skipped: Vec<Skip>,
    pub tables: std::collections::BTreeMap<Table, TableTotals>,
}

impl IngestSummary {
    /// The summary as the Lambda's answer: objects read, skips with reasons, totals per table.
    pub fn to_json(&self) -> serde_json::Value {
        let tables: serde_json::Map<String, serde_json::Value> = self
            .tables
            .iter()
            .map(|(table, t)| {
                let totals = serde_json::json!({
                    "records_in": t.records_in, "rows_written": t.rows_written,
                    "duplicates_skipped": t.duplicates_skipped, "quarantined": t.quarantined, "commits": t.commits,
                });
                (table.name().to_string(), totals)
            })
            .collect();
        serde_json::json!({
            "objects_read": self.objects_read,
            "skipped": self.skipped.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
            "tables": tables,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("reading s3://{bucket}/{key}: {source}")]
    Read { bucket: String, key: String, source: std::io::Error },
    #[error(transparent)]
    Consume(#[from] ConsumeError),
}

/// The batch ingest: Kafka Connect objects in, exactly-once commits to the tables out.
pub struct BatchIngest {
    prefix: String,
    source: Arc<dyn ObjectSource>,
    sinks: Vec<TableSink>,
    limits: BatchLimits,
}

/// A record read and waiting for its chunk's commit.
struct Pending {
    key: SourceKey,
    position: Position,
    origin: Origin,
    raw: RawRecord,
}

impl BatchIngest {
    /// Ingests the topics `<prefix>.pin|geo|user` from `source` into `lake`.
    pub fn new(prefix: impl Into<String>, lake: Lake, source: Arc<dyn ObjectSource>) -> Self {
        let sinks = Table::ALL.iter().map(|t| TableSink::new(*t, lake.clone())).collect();
        Self { prefix: prefix.into(), source, sinks, limits: BatchLimits::default() }
    }

    pub fn with_limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Handles an S3 notification as the Lambda runtime delivers it, with a log line and
    /// metrics for the invocation. An error makes Lambda retry the event, which is safe.
    pub async fn handle_s3_event(&self, event: &S3Event) -> Result<IngestSummary, IngestError> {
        let started = Instant::now();
        let (objects, skipped) = objects_of(event);
        let result = self.ingest(&objects).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(summary) => {
                for skip in &skipped {
                    tracing::warn!(reason = %skip, "notification record skipped");
                }
                for (table, totals) in &summary.tables {
                    crate::metrics::emit(
                        "batch-ingest",
                        table.name(),
                        &[
                            ("RecordsIn", "Count", totals.records_in as f64),
                            ("RowsWritten", "Count", totals.rows_written as f64),
                            ("DuplicatesSkipped", "Count", totals.duplicates_skipped as f64),
                            ("Quarantined", "Count", totals.quarantined as f64),
                            ("BatchDuration", "Milliseconds", elapsed_ms),
                        ],
                    );
                    tracing::info!(
                        table = %table,
                        records_in = totals.records_in,
                        rows_written = totals.rows_written,
                        duplicates_skipped = totals.duplicates_skipped,
                        quarantined = totals.quarantined,
                        commits = totals.commits,
                        "objects committed"
                    );
                }
                tracing::info!(
                    objects = objects.len(),
                    objects_read = summary.objects_read,
                    skipped = summary.skipped.len() + skipped.len(),
                    duration_ms = elapsed_ms as u64,
                    "notification ingested"
                );
            }
            Err(error) => {
                tracing::error!(objects = objects.len(), %error, "ingest failed; Lambda will retry the notification");
                crate::metrics::emit("batch-ingest", "all", &[("BatchFailures", "Count", 1.0)]);
            }
        }
        result.map(|mut summary| {
            summary.skipped.extend(skipped);
            summary
        })
    }

    /// Reads `objects` and commits their records, each table in as few commits as its
    /// [`BatchLimits`] allow. Objects that are not this deployment's Kafka Connect JSON are
    /// skipped with the reason.
    pub async fn ingest(&self, objects: &[ObjectRef]) -> Result<IngestSummary, IngestError> {
        let mut summary = IngestSummary::default();
        let mut by_table: Vec<Vec<(&ObjectRef, ConnectObject)>> = vec![Vec::new(); Table::ALL.len()];
        for object in objects {
            match parse_key(&self.prefix, &object.key) {
                Ok(connect) => by_table[table_index(connect.table)].push((object, connect)),
                Err(skip) => {
                    tracing::warn!(bucket = %object.bucket, reason = %skip, "object skipped");
                    summary.skipped.push(skip);
                }
            }
        }
        for (sink, objects) in self.sinks.iter().zip(by_table) {
            if objects.is_empty() {
                continue;
            }
            let totals = summary.tables.entry(sink.table()).or_default();
            let mut chunk: Vec<Pending> = Vec::new();
            let mut chunk_bytes = 0usize;
            for (object, connect) in objects {
                let Some(body) = self.source.open(object).await? else {
                    let skip = Skip(format!("{}: the object no longer exists", object.key));
                    tracing::warn!(bucket = %object.bucket, reason = %skip, "object skipped");
                    summary.skipped.push(skip);
                    continue;
                };
                summary.objects_read += 1;
                let mut reader = RecordReader::new(body, connect.gzip);
                let key = connect.source_key();
                let source = self.source.locate(object);
                let read_error =
                    |source| IngestError::Read { bucket: object.bucket.clone(), key: object.key.clone(), source };
                let mut offset = connect.start_offset;
                while let Some(raw) = reader.next_record().await.map_err(read_error)? {
                    chunk_bytes += raw.bytes.len();
                    chunk.push(Pending {
                        key: key.clone(),
                        position: Position::parse(&offset.to_string()).expect("an offset is a decimal"),
                        origin: Origin { source: source.clone(), position: raw.line.to_string() },
                        raw,
                    });
                    offset += 1;
                    if chunk.len() >= self.limits.records || chunk_bytes >= self.limits.bytes {
                        totals.add(&commit(sink, &mut chunk).await?);
                        chunk_bytes = 0;
                    }
                }
            }
            if !chunk.is_empty() {
                totals.add(&commit(sink, &mut chunk).await?);
            }
        }
        Ok(summary)
    }
}

fn table_index(table: Table) -> usize {
    Table::ALL.iter().position(|t| *t == table).expect("every table is in Table::ALL")
}

/// Commits a chunk through the table's sink (clean rows and quarantine, exactly once) and
/// empties it.
async fn commit(sink: &TableSink, chunk: &mut Vec<Pending>) -> Result<BatchSummary, ConsumeError> {
    let records = chunk
        .iter()
        .map(|p| SourceRecord {
            key: p.key.clone(),
            position: p.position.clone(),
            origin: p.origin.clone(),
            data: &p.raw.bytes,
            unreadable: p.raw.unreadable.clone(),
        })
        .collect();
    let summary = sink.consume(records).await?;
    chunk.clear();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(bytes: &'static [u8]) -> ObjectBody {
        Box::new(bytes)
    }

    async fn records(bytes: &'static [u8], gzip: bool) -> Vec<RawRecord> {
        let mut reader = RecordReader::new(body(bytes), gzip);
        let mut out = Vec::new();
        while let Some(record) = reader.next_record().await.expect("in-memory reads do not fail") {
            out.push(record);
        }
        out
    }

    fn texts(records: &[RawRecord]) -> Vec<(u64, String)> {
        records.iter().map(|r| (r.line, String::from_utf8_lossy(&r.bytes).into_owned())).collect()
    }

    #[test]
    fn a_kafka_connect_key_names_topic_table_partition_and_offset() {
        let key = "topics/0a1b.pin/partition=3/0a1b.pin+3+0000000042.json";
        let object = parse_key("0a1b", key).unwrap();
        assert_eq!(
            object,
            ConnectObject { topic: "0a1b.pin".into(), table: Table::Pin, partition: 3, start_offset: 42, gzip: false }
        );
        assert_eq!(object.source_key(), SourceKey::Offset("kafka/0a1b.pin/3/42".into()));
        let gz = parse_key("0a1b", "topics/0a1b.user/partition=0/0a1b.user+0+0000000007.json.gz").unwrap();
        assert_eq!((gz.table, gz.gzip, gz.start_offset), (Table::User, true, 7));
    }

    #[test]
    fn keys_outside_the_layout_are_skipped_with_the_reason() {
        let cases = [
            ("topics/0a1b.pin/partition=0/0a1b.pin+0+1.avro", "not a .json"),
            ("other/0a1b.pin/partition=0/0a1b.pin+0+1.json", "not under topics/"),
            ("topics/0a1b.pin/0a1b.pin+0+1.json", "not of the form"),
            ("topics/0a1b.pin/part=0/0a1b.pin+0+1.json", "partition=<number>"),
            ("topics/0a1b.pin/partition=0/0a1b.pin+1+1.json", "does not match"),
            ("topics/0a1b.pin/partition=0/0a1b.geo+0+1.json", "does not match"),
            ("topics/0a1b.pin/partition=0/0a1b.pin+0+x.json", "start offset"),
            ("topics/0a1b.pin/partition=0/0a1b.pin+0+-1.json", "start offset"),
            ("topics/other.pin/partition=0/other.pin+0+1.json", "not one of this deployment's"),
            ("topics/0a1b.pins/partition=0/0a1b.pins+0+1.json", "names no table"),
            ("topics/0a1b.pin/partition=0/", "not a .json"),
        ];
        for (key, why) in cases {
            let skip = parse_key("0a1b", key).expect_err(key);
            assert!(skip.0.contains(why) && skip.0.starts_with(key), "{key}: {skip}");
        }
    }

    #[test]
    fn notification_keys_are_url_decoded() {
        assert_eq!(
            decode_key("topics/p.pin/partition=0/p.pin%2B0%2B0000000001.json"),
            "topics/p.pin/partition=0/p.pin+0+0000000001.json"
        );
        // Unencoded `+` in a hand-written event is taken as itself.
        assert_eq!(
            decode_key("topics/p.pin/partition=0/p.pin+0+0000000001.json"),
            "topics/p.pin/partition=0/p.pin+0+0000000001.json"
        );
        assert_eq!(decode_key("a+b%20c"), "a b c");
    }

    #[test]
    fn only_object_creations_of_a_notification_are_read() {
        let event: S3Event = serde_json::from_value(serde_json::json!({"Records": [
            {"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z",
             "userIdentity": {"principalId": "AWS:X"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
             "s3": {"bucket": {"name": "raw"}, "object": {"key": "topics/p.pin/partition=0/p.pin%2B0%2B0000000001.json"}}},
            {"eventName": "ObjectRemoved:Delete", "eventTime": "2026-01-01T00:00:00Z",
             "userIdentity": {"principalId": "AWS:X"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
             "s3": {"bucket": {"name": "raw"}, "object": {"key": "topics/p.pin/partition=0/p.pin%2B0%2B0000000002.json"}}}
        ]}))
        .unwrap();
        let (objects, skipped) = objects_of(&event);
        assert_eq!(
            objects,
            vec![ObjectRef { bucket: "raw".into(), key: "topics/p.pin/partition=0/p.pin+0+0000000001.json".into() }]
        );
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].0.contains("ObjectRemoved:Delete"), "{}", skipped[0]);
    }

    #[tokio::test]
    async fn lines_are_records_and_blank_lines_are_not() {
        let got = records(b"{\"ind\":1}\n\n{\"ind\":2}\r\n  \n{\"ind\":3}", false).await;
        assert_eq!(texts(&got), vec![(1, "{\"ind\":1}".into()), (3, "{\"ind\":2}".into()), (5, "{\"ind\":3}".into())]);
        assert!(records(b"", false).await.is_empty());
        assert!(records(b"\n\n", false).await.is_empty());
    }

    #[tokio::test]
    async fn an_array_object_yields_its_elements() {
        let got = records(b" [ {\"a\":\"x,]}\\\"\"}, {\"b\":[1,{\"c\":2}]},\n 42 , \"s\", null ]\n", false).await;
        assert_eq!(
            texts(&got),
            vec![
                (1, "{\"a\":\"x,]}\\\"\"}".into()),
                (2, "{\"b\":[1,{\"c\":2}]}".into()),
                (3, "42 ".into()),
                (4, "\"s\"".into()),
                (5, "null ".into()),
            ]
        );
        assert!(records(b"[]", false).await.is_empty());
        // Cut short: the partial element is still a record (quarantined by cleaning).
        assert_eq!(
            texts(&records(b"[{\"a\":1},{\"b\"", false).await),
            vec![(1, "{\"a\":1}".into()), (2, "{\"b\"".into())]
        );
    }

    #[tokio::test]
    async fn gzip_objects_are_decompressed_and_corrupt_ones_end_in_an_unreadable_record() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"{\"ind\":1}\n{\"ind\":2}\n").unwrap();
        let gz: &'static [u8] = encoder.finish().unwrap().leak();
        assert_eq!(texts(&records(gz, true).await), vec![(1, "{\"ind\":1}".into()), (2, "{\"ind\":2}".into())]);

        let corrupt: &'static [u8] = b"\x1f\x8b\x08\x00garbage that is not deflate at all";
        let got = records(corrupt, true).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].unreadable.as_deref().is_some_and(|r| r.contains("unreadable")), "{got:?}");
    }

    #[tokio::test]
    async fn an_oversized_record_is_cut_and_marked_not_held_whole() {
        let mut big = b"{\"ind\": \"".to_vec();
        big.resize(MAX_RECORD_BYTES + 10, b'x');
        big.extend_from_slice(b"\"}\n{\"ind\":2}\n");
        let got = records(big.leak(), false).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].bytes.len(), KEPT_OF_OVERSIZED);
        assert!(got[0].unreadable.as_deref().is_some_and(|r| r.contains("over the")), "{:?}", got[0].unreadable);
        assert_eq!((got[1].line, got[1].bytes.as_slice(), &got[1].unreadable), (2, &b"{\"ind\":2}"[..], &None));
    }

    fn pin(ind: i64) -> String {
        serde_json::json!({"index": ind, "unique_id": format!("u{ind}"), "title": "t", "description": "d",
            "follower_count": "12k", "poster_name": "p", "tag_list": "a,b", "is_image_or_video": "image",
            "image_src": "http://x/y.png", "save_location": "Local save in /data/x", "category": "art",
            "downloaded": 1})
        .to_string()
    }

    async fn write(root: &std::path::Path, key: &str, content: &str) -> ObjectRef {
        let path = root.join(key);
        tokio::fs::create_dir_all(path.parent().unwrap()).await.unwrap();
        tokio::fs::write(&path, content).await.unwrap();
        ObjectRef { bucket: "local".into(), key: key.into() }
    }

    #[tokio::test]
    async fn objects_land_once_in_one_commit_per_table_and_bad_lines_in_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("raw");
        let lake = Lake::new(dir.path().join("lake").to_string_lossy().into_owned());
        let a = write(&files, "topics/p.pin/partition=0/p.pin+0+0000000000.json", &format!("{}\n{}\n", pin(1), pin(2)))
            .await;
        let b = write(&files, "topics/p.pin/partition=1/p.pin+1+0000000005.json", &format!("[{}, 7]", pin(3))).await;
        let c = write(&files, "topics/p.pin/partition=0/p.pin+0+0000000002.json", "not json\n").await;
        let other =
            ObjectRef { bucket: "local".into(), key: "topics/q.pin/partition=0/q.pin+0+0000000000.json".into() };
        let gone = ObjectRef { bucket: "local".into(), key: "topics/p.pin/partition=0/p.pin+0+0000000009.json".into() };
        let ingest = BatchIngest::new("p", lake.clone(), Arc::new(LocalObjects::new(&files)));
        let objects = vec![a, b, c, other, gone];

        let first = ingest.ingest(&objects).await.unwrap();
        let pin_totals = &first.tables[&Table::Pin];
        assert_eq!((first.objects_read, first.skipped.len()), (3, 2));
        assert_eq!(
            (pin_totals.records_in, pin_totals.rows_written, pin_totals.quarantined, pin_totals.commits),
            (5, 3, 2, 2)
        );
        assert_eq!(lake.count_rows("pin").await.unwrap(), Some(3));
        let quarantine = lake.read_all(crate::consumer::QUARANTINE_TABLE).await.unwrap().unwrap();
        assert_eq!(quarantine.num_rows(), 2);

        // The same notification again, and then each object alone: nothing more lands.
        let again = ingest.ingest(&objects).await.unwrap();
        assert_eq!(again.tables[&Table::Pin].duplicates_skipped, 5);
        assert_eq!(again.tables[&Table::Pin].commits, 0);
        for object in &objects {
            ingest.ingest(std::slice::from_ref(object)).await.unwrap();
        }
        assert_eq!(lake.count_rows("pin").await.unwrap(), Some(3));
        assert_eq!(lake.count_rows(crate::consumer::QUARANTINE_TABLE).await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn a_large_object_is_committed_in_chunks_and_a_retry_skips_the_chunks_that_landed() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("raw");
        let lake = Lake::new(dir.path().join("lake").to_string_lossy().into_owned());
        let lines: String = (0..25).map(|i| pin(i) + "\n").collect();
        let object = write(&files, "topics/p.pin/partition=0/p.pin+0+0000000100.json", &lines).await;
        let limits = BatchLimits { records: 10, bytes: usize::MAX };

        // A first delivery that stopped after two chunks: only the first 20 lines were there.
        let first20: String = lines.lines().take(20).map(|l| format!("{l}\n")).collect();
        write(&files, &object.key, &first20).await;
        let ingest = BatchIngest::new("p", lake.clone(), Arc::new(LocalObjects::new(&files))).with_limits(limits);
        assert_eq!(ingest.ingest(std::slice::from_ref(&object)).await.unwrap().tables[&Table::Pin].commits, 2);

        write(&files, &object.key, &lines).await;
        let retry = ingest.ingest(std::slice::from_ref(&object)).await.unwrap();
        let totals = &retry.tables[&Table::Pin];
        assert_eq!((totals.rows_written, totals.duplicates_skipped, totals.commits), (5, 20, 1));
        assert_eq!(lake.count_rows("pin").await.unwrap(), Some(25));
    }
}
