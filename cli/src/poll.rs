//! `pinpipe poll`: Lambda's Kinesis event source mapping, on one machine. It reads a stream shard
//! by shard (GetShardIterator, GetRecords), builds the `KinesisEvent` batches Lambda would build,
//! invokes a function through the Lambda Invoke API (`cargo lambda watch` serves it on loopback),
//! and moves each shard's position the way Lambda does with `ReportBatchItemFailures`:
//!
//! - an empty `batchItemFailures` (or none, or a `null` answer): the whole batch is done;
//! - failures listed: the records before the lowest failed sequence number are done, and the
//!   next batch starts at that record;
//! - a function error, an answer that is not a partial batch response, or an `itemIdentifier`
//!   that is not in the batch: nothing is done and the whole batch is retried.
//!
//! Retries of one record are bounded (`--max-retries`, the template's `MaximumRetryAttempts`) with
//! jittered backoff; then poll stops with an error and the position stays before that record.
//! Unlike Lambda it neither bisects a failing batch nor sends it to a failure destination: it
//! is for local runs, where stopping is the useful answer.
//!
//! The position of each shard (the last sequence number the function finished) is kept in a
//! small JSON file, written after each batch that moved it, so a second run continues where the
//! first stopped. Shards are read one at a time, parents before their children.
//!
//! A replay (`--from-timestamp`) reads every shard from a point in time (AT_TIMESTAMP) instead,
//! with a state file of its own that records the time: the regular positions stay untouched,
//! and running the same replay again carries it on. Everything else is the same; the consumer's
//! exactly-once progress skips the records its table already holds.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
use aws_sdk_kinesis::types::ShardIteratorType;
use pinpipe::backoff::Backoff;
use pinpipe::local::events::{KinesisDelivery, KinesisSource, kinesis_event_json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

#[derive(Debug, Clone, clap::Args)]
pub struct PollArgs {
    /// The Kinesis stream to read, e.g. streaming-0a1b2c3d4e5f-pin.
    #[arg(long)]
    pub stream: String,
    /// The function each batch is sent to, by its name on the Invoke API (`cargo lambda watch`
    /// serves each binary under its name).
    #[arg(long, default_value = "stream-consumer")]
    pub function: String,
    /// Where the Lambda Invoke API is served: `cargo lambda watch`'s address.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    pub invoke_url: String,
    /// Most records per invocation (the template's BatchSize).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// How long to gather records for a batch that is not full before invoking (the template's
    /// MaximumBatchingWindowInSeconds, in milliseconds). 0 invokes with what one read returns.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=300_000))]
    pub batching_window_ms: u64,
    /// Retries of a failing batch before poll stops (the template's MaximumRetryAttempts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_retries: u32,
    /// The file keeping each shard's position [default: .pinpipe/poll-<stream>.json].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Replay: read every shard from this time (AT_TIMESTAMP) rather than from saved positions.
    /// RFC 3339 (2025-11-25T09:00:00Z, 2025-11-25T10:00:00+01:00) or seconds since the Unix
    /// epoch. Needs a --state of its own, a file that does not exist yet, so the regular
    /// positions stay untouched; the same command again carries the replay on from that file.
    /// The consumer skips records at or below what its table already landed from each shard, so
    /// a replay into the same table adds only the records past that; to land records again,
    /// replay into a new table.
    #[arg(long, value_name = "TIME", requires = "state", value_parser = replay_start)]
    pub from_timestamp: Option<Timestamp>,
    /// Send what the stream holds now, then exit (instead of polling until interrupted).
    #[arg(long)]
    pub once: bool,
    /// The pause after a round that found no records (without --once).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub idle_ms: u64,
    /// How long one invocation may take, in seconds (the first may wait for `cargo lambda watch`
    /// to compile the function).
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub invoke_timeout_secs: u64,
}

impl PollArgs {
    pub fn state_file(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| Path::new(".pinpipe").join(format!("poll-{}.json", self.stream)))
    }
}

/// What a poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    /// Records the function finished.
    pub records: usize,
    /// Invocations, retries included.
    pub invocations: usize,
    /// Invocations that failed (wholly or in part) and were retried.
    pub retries: usize,
}

// ---------------------------------------------------------------------------------------------
// The pure parts: records, batches, answers, positions.

/// A point in time, to the millisecond: where a replay (`--from-timestamp`) starts. Kept in the
/// state file as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn now() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(since.as_millis() as i64)
    }

    pub fn date_time(self) -> DateTime {
        DateTime::from_millis(self.0)
    }

    /// An RFC 3339 time with `Z` or an offset (a space may stand for the `T`); sub-millisecond
    /// digits are dropped.
    fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let mut text = text.to_string();
        if text.len() > 10 && text.as_bytes()[10] == b' ' {
            text.replace_range(10..11, "T");
        }
        let time = DateTime::from_str(&text, DateTimeFormat::DateTimeWithOffset).ok()?;
        time.to_millis().ok().map(Timestamp)
    }

    /// Seconds since the Unix epoch: digits, and up to millisecond digits after a point.
    fn parse_epoch_seconds(text: &str) -> Option<Timestamp> {
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
            Some(_) => return None,
            None => (text, ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return None;
        }
        let millis: String = fraction.chars().chain(std::iter::repeat('0')).take(3).collect();
        whole.parse::<i64>().ok()?.checked_mul(1000)?.checked_add(millis.parse().ok()?).map(Timestamp)
    }

    /// `--from-timestamp`'s value: RFC 3339 or seconds since the epoch, no later than `now`.
    pub fn parse(text: &str, now: Timestamp) -> Result<Timestamp, String> {
        let text = text.trim();
        let Some(time) = Self::parse_epoch_seconds(text).or_else(|| Self::parse_rfc3339(text)) else {
            return Err(format!(
                "{text:?} is not a time: give RFC 3339 (2025-11-25T09:00:00Z, 2025-11-25T10:00:00+01:00) or \
                 seconds since the Unix epoch (1764061200)"
            ));
        };
        if time > now {
            let hint = if text.len() >= 12 && text.bytes().all(|b| b.is_ascii_digit()) {
                " (seconds since the epoch, not milliseconds)"
            } else {
                ""
            };
            return Err(format!("{text} is in the future{hint}: a replay starts from a time already past"));
        }
        Ok(time)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.date_time().fmt(DateTimeFormat::DateTime) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{} ms since the Unix epoch", self.0),
        }
    }
}

impl From<Timestamp> for String {
    fn from(time: Timestamp) -> String {
        time.to_string()
    }
}

impl TryFrom<String> for Timestamp {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse_rfc3339(&text).ok_or_else(|| format!("{text:?} is not an RFC 3339 time"))
    }
}

/// Parses `--from-timestamp`.
fn replay_start(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text, Timestamp::now())
}

/// Where GetShardIterator starts reading a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardStart<'a> {
    /// The oldest record the shard retains (TRIM_HORIZON).
    Oldest,
    /// Just after this sequence number (AFTER_SEQUENCE_NUMBER).
    After(&'a str),
    /// The first record that arrived at or after this time, or the oldest retained one if the
    /// time is older (AT_TIMESTAMP).
    At(Timestamp),
}

/// Where to read a shard from: just after `after` (the last record read or done), else from the
/// replay's time, else from the oldest record.
pub fn shard_start(after: Option<&str>, replay_from: Option<Timestamp>) -> ShardStart<'_> {
    match (after, replay_from) {
        (Some(after), _) => ShardStart::After(after),
        (None, Some(time)) => ShardStart::At(time),
        (None, None) => ShardStart::Oldest,
    }
}

/// One record as GetRecords returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// `ApproximateArrivalTimestamp`, in seconds since the Unix epoch.
    pub arrival: f64,
}

/// Lambda's limit on a synchronous invocation's payload; the event source mapping keeps each
/// batch under it.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// About what one record adds to an event besides its data, partition key and sequence
/// number (twice: `sequenceNumber` and `eventID`) and the names of its source.
const RECORD_OVERHEAD_BYTES: usize = 320;

/// How many of `pending` go into the next batch: at most `batch_size`, and only as many as
/// keep the event under [`MAX_PAYLOAD_BYTES`] (but at least one, if there is one).
pub fn batch_len(pending: &[StreamRecord], batch_size: usize, source: &KinesisSource<'_>, shard: &str) -> usize {
    let fixed = RECORD_OVERHEAD_BYTES
        + source.stream_arn.len()
        + source.invoke_identity_arn.len()
        + source.region.len()
        + shard.len();
    let mut size = 16; // {"Records":[]}
    let mut n = 0;
    for record in pending.iter().take(batch_size.max(1)) {
        size +=
            fixed + record.data.len().div_ceil(3) * 4 + record.partition_key.len() + 2 * record.sequence_number.len();
        if n > 0 && size > MAX_PAYLOAD_BYTES {
            break;
        }
        n += 1;
    }
    n
}

/// The event Lambda delivers for `batch`, read from `shard` of `source`, as the JSON Lambda sends.
pub fn batch_event(source: &KinesisSource<'_>, shard: &str, batch: &[StreamRecord]) -> Vec<u8> {
    let records: Vec<(KinesisDelivery<'_>, f64)> = batch
        .iter()
        .map(|r| {
            let delivery = KinesisDelivery {
                shard_id: shard,
                sequence_number: &r.sequence_number,
                partition_key: &r.partition_key,
                data: &r.data,
            };
            (delivery, r.arrival)
        })
        .collect();
    serde_json::to_vec(&kinesis_event_json(source, &records)).expect("a Kinesis event serialises")
}

/// The ARN's region and account: `arn:aws:kinesis:<region>:<account>:stream/<name>`.
pub fn arn_region_account(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kinesis"), Some(region), Some(account)) => Some((region, account)),
        _ => None,
    }
}

/// What the Invoke API answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub status: u16,
    /// The `X-Amz-Function-Error` header: Lambda answers 200 with it when the function failed.
    pub function_error: Option<String>,
    pub body: Vec<u8>,
}

/// What an answer means for its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResult {
    /// Every record of the batch is done.
    Done,
    /// The first `done` records are done; the function reported the next one (the lowest
    /// failed sequence number) as failed, and Lambda retries from it.
    Partial { done: usize, failed: String },
    /// Nothing is done: the whole batch is retried, unless `retryable` is false (the Invoke API
    /// refused the request itself, e.g. an unknown function).
    Failed { why: String, retryable: bool },
}

/// Orders two decimal sequence numbers by value.
pub fn cmp_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_string()
    }
}

/// Reads an answer to `batch` as Lambda's event source mapping does with
/// `ReportBatchItemFailures`.
pub fn batch_result(batch: &[StreamRecord], invocation: &Invocation) -> BatchResult {
    let failed = |why: String| BatchResult::Failed { why, retryable: true };
    if let Some(kind) = &invocation.function_error {
        return failed(format!("function error ({kind}): {}", snippet(&invocation.body)));
    }
    match invocation.status {
        200 => {}
        // `cargo lambda watch` answers a function error with a 500; throttles and service errors
        // are worth another try too.
        429 | 500..=599 => return failed(format!("HTTP {}: {}", invocation.status, snippet(&invocation.body))),
        status => {
            return BatchResult::Failed {
                why: format!("the Invoke API refused the request with HTTP {status}: {}", snippet(&invocation.body)),
                retryable: false,
            };
        }
    }
    let text = String::from_utf8_lossy(&invocation.body);
    if text.trim().is_empty() {
        return BatchResult::Done;
    }
    let answer: Value = match serde_json::from_str(&text) {
        Ok(answer) => answer,
        Err(e) => return failed(format!("the answer is not JSON ({e}): {}", snippet(&invocation.body))),
    };
    let items = match &answer {
        Value::Null => return BatchResult::Done,
        Value::Object(fields) => match fields.get("batchItemFailures") {
            None | Some(Value::Null) => return BatchResult::Done,
            Some(Value::Array(items)) if items.is_empty() => return BatchResult::Done,
            Some(Value::Array(items)) => items,
            Some(_) => return failed(format!("batchItemFailures is not a list: {}", snippet(&invocation.body))),
        },
        _ => return failed(format!("the answer is not a partial batch response: {}", snippet(&invocation.body))),
    };
    let mut lowest: Option<&str> = None;
    for item in items {
        let id = match item.get("itemIdentifier") {
            Some(Value::String(id)) if !id.is_empty() => id.as_str(),
            _ => return failed(format!("a batch item failure has no itemIdentifier: {item}")),
        };
        if !batch.iter().any(|r| r.sequence_number == id) {
            return failed(format!("itemIdentifier {id:?} is not a sequence number of the batch"));
        }
        if lowest.is_none_or(|low| cmp_sequence(id, low).is_lt()) {
            lowest = Some(id);
        }
    }
    let lowest = lowest.expect("a non-empty list of failures");
    let done = batch.iter().position(|r| r.sequence_number == lowest).expect("the failed record is in the batch");
    BatchResult::Partial { done, failed: lowest.to_string() }
}

/// The position of one shard.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPosition {
    /// The last sequence number the function finished; reading resumes after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The shard is closed (after a reshard) and was read to its end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
}

/// The file `--state` names: which stream, and the position of each of its shards.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollState {
    pub stream: String,
    pub stream_arn: String,
    /// When the stream was created (seconds since the epoch): a stream deleted and created again
    /// under the same name starts its sequence numbers afresh, so old positions mean nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_created: Option<f64>,
    /// The state of a replay (`--from-timestamp`): shards without a position are read from this
    /// time rather than from their oldest record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_timestamp: Option<Timestamp>,
    #[serde(default)]
    pub shards: BTreeMap<String, ShardPosition>,
}

impl PollState {
    /// The state in `path`, or `None` when there is no such file yet.
    pub fn load(path: &Path) -> anyhow::Result<Option<PollState>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).with_context(|| format!("reading the poll state {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading the poll state {}", path.display())),
        }
    }

    /// Writes the state to `path` whole or not at all (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut text = serde_json::to_string_pretty(self).expect("the poll state serialises");
        text.push('\n');
        std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, path).with_context(|| format!("writing the poll state {}", path.display()))
    }

    /// Checks that this state belongs to `stream` as it is now.
    pub fn check_stream(&self, stream: &StreamDescription, path: &Path) -> anyhow::Result<()> {
        if self.stream != stream.name {
            bail!(
                "{} holds the positions of stream {}, not {}; use another --state",
                path.display(),
                self.stream,
                stream.name
            );
        }
        if let (Some(then), Some(now)) = (self.stream_created, stream.created)
            && (then - now).abs() > 0.001
        {
            bail!(
                "stream {} was created again since {} was written, so its positions mean nothing now; \
                 delete that file to read the stream from its start",
                stream.name,
                path.display()
            );
        }
        Ok(())
    }

    /// Checks that a poll with `--from-timestamp from` (or without) may go on from this state:
    /// a replay from `from` carries on only a replay from the same time, never a regular poll's
    /// positions.
    pub fn check_replay(&self, from: Option<Timestamp>, path: &Path) -> anyhow::Result<()> {
        match (from, self.from_timestamp) {
            (None, _) => Ok(()),
            (Some(from), Some(saved)) if from == saved => Ok(()),
            (Some(from), Some(saved)) => bail!(
                "{} holds the positions of a replay from {saved}; give the replay from {from} a --state of its \
                 own, a file that does not exist yet (or delete that one)",
                path.display()
            ),
            (Some(from), None) => bail!(
                "{} holds the positions of a regular poll; give the replay from {from} a --state of its own, a \
                 file that does not exist yet, so they stay untouched",
                path.display()
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The ports: Kinesis and the Invoke API.

/// A stream as DescribeStreamSummary and ListShards show it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDescription {
    pub name: String,
    pub arn: String,
    pub created: Option<f64>,
    pub shards: Vec<ShardDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardDescription {
    pub id: String,
    pub parents: Vec<String>,
}

/// One GetRecords answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub records: Vec<StreamRecord>,
    /// `None` once a closed shard is read to its end.
    pub next_iterator: Option<String>,
    pub millis_behind_latest: Option<i64>,
}

#[derive(Debug)]
pub enum ReadError {
    /// The iterator is too old (five minutes); get another from the position.
    Expired,
    /// Kinesis asks to slow down.
    Throttled(String),
    Other(anyhow::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Expired => f.write_str("the shard iterator expired"),
            ReadError::Throttled(message) => write!(f, "throttled: {message}"),
            ReadError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

/// What poll needs of Kinesis.
pub trait ShardReader {
    async fn describe(&self, stream: &str) -> anyhow::Result<StreamDescription>;
    /// An iterator at `start` in the shard.
    async fn iterator(&self, stream: &str, shard: &str, start: ShardStart<'_>) -> Result<String, ReadError>;
    async fn records(&self, iterator: &str, limit: i32) -> Result<Page, ReadError>;
}

/// What poll needs of Lambda: one synchronous invocation.
pub trait Invoker {
    /// Sends `payload` and returns the answer; `Err` when no answer came (refused connection,
    /// timeout).
    async fn invoke(&self, payload: Vec<u8>) -> anyhow::Result<Invocation>;
}

/// Kinesis through the AWS SDK, wherever `AWS_ENDPOINT_URL` and the `AWS_*` variables point.
pub struct KinesisReader {
    client: aws_sdk_kinesis::Client,
}

/// The service's error code and message, or, for an error without an answer (no connection,
/// timeout), the whole chain of causes.
fn sdk_message<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.as_service_error() {
        Some(service) => {
            format!("{}: {}", service.code().unwrap_or("error"), service.message().unwrap_or("no message"))
        }
        None => DisplayErrorContext(err).to_string(),
    }
}

fn read_error<E, R>(err: SdkError<E, R>) -> ReadError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.as_service_error().and_then(ProvideErrorMetadata::code) {
        Some("ExpiredIteratorException") => ReadError::Expired,
        Some(
            "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException",
        ) => ReadError::Throttled(sdk_message(&err)),
        _ => ReadError::Other(anyhow::anyhow!("{}", sdk_message(&err))),
    }
}

impl ShardReader for KinesisReader {
    async fn describe(&self, stream: &str) -> anyhow::Result<StreamDescription> {
        let summary = self
            .client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DescribeStreamSummary of {stream}: {}", sdk_message(&e)))?;
        let summary = summary.stream_description_summary().context("DescribeStreamSummary returned no summary")?;
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..1_000 {
            // ListShards takes the stream name on the first page and only the token after it.
            let call = match &next_token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(stream),
            };
            let page = call.send().await.map_err(|e| anyhow::anyhow!("ListShards of {stream}: {}", sdk_message(&e)))?;
            shards.extend(page.shards().iter().map(|shard| {
                ShardDescription {
                    id: shard.shard_id().to_string(),
                    parents: shard
                        .parent_shard_id()
                        .into_iter()
                        .chain(shard.adjacent_parent_shard_id())
                        .map(str::to_string)
                        .collect(),
                }
            }));
            next_token = page.next_token().map(str::to_string);
            if next_token.is_none() || page.shards().is_empty() {
                break;
            }
        }
        Ok(StreamDescription {
            name: stream.to_string(),
            arn: summary.stream_arn().to_string(),
            created: Some(summary.stream_creation_timestamp().as_secs_f64()),
            shards,
        })
    }

    async fn iterator(&self, stream: &str, shard: &str, start: ShardStart<'_>) -> Result<String, ReadError> {
        let call = self.client.get_shard_iterator().stream_name(stream).shard_id(shard);
        let call = match start {
            ShardStart::After(sequence) => {
                call.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(sequence)
            }
            ShardStart::At(time) => {
                call.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(time.date_time())
            }
            ShardStart::Oldest => call.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let output = call.send().await.map_err(read_error)?;
        output
            .shard_iterator()
            .map(str::to_string)
            .ok_or_else(|| ReadError::Other(anyhow::anyhow!("GetShardIterator of {shard} returned no iterator")))
    }

    async fn records(&self, iterator: &str, limit: i32) -> Result<Page, ReadError> {
        let output =
            self.client.get_records().shard_iterator(iterator).limit(limit).send().await.map_err(read_error)?;
        Ok(Page {
            records: output
                .records()
                .iter()
                .map(|r| StreamRecord {
                    sequence_number: r.sequence_number().to_string(),
                    partition_key: r.partition_key().unwrap_or_default().to_string(),
                    data: r.data().as_ref().to_vec(),
                    // Lambda gives the arrival to the millisecond.
                    arrival: r
                        .approximate_arrival_timestamp()
                        .map(|t| (t.as_secs_f64() * 1000.0).round() / 1000.0)
                        .unwrap_or_default(),
                })
                .collect(),
            next_iterator: output.next_shard_iterator().map(str::to_string),
            millis_behind_latest: output.millis_behind_latest(),
        })
    }
}

/// The Lambda Invoke API over HTTP: `POST <base>/2015-03-31/functions/<name>/invocations`.
pub struct HttpInvoker {
    client: reqwest::Client,
    url: String,
}

impl HttpInvoker {
    pub fn new(base: &str, function: &str, timeout: Duration) -> anyhow::Result<Self> {
        if function.is_empty() || !function.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("--function {function:?}: a function name is letters, digits, '-' and '_'");
        }
        let url = format!("{}/2015-03-31/functions/{function}/invocations", base.trim_end_matches('/'));
        let client = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(5)).build()?;
        Ok(Self { client, url })
    }
}

impl Invoker for HttpInvoker {
    async fn invoke(&self, payload: Vec<u8>) -> anyhow::Result<Invocation> {
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .body(payload)
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e.without_url()))
            .with_context(|| format!("invoking {}", self.url))?;
        let status = response.status().as_u16();
        let function_error =
            response.headers().get("x-amz-function-error").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = response.bytes().await.with_context(|| format!("reading the answer of {}", self.url))?.to_vec();
        Ok(Invocation { status, function_error, body })
    }
}

// ---------------------------------------------------------------------------------------------
// The loop.

/// How poll behaves, from the arguments.
#[derive(Debug, Clone)]
pub struct Settings {
    pub stream: String,
    pub batch_size: usize,
    pub window: Duration,
    pub max_retries: u32,
    pub state_file: PathBuf,
    /// A replay's start (`--from-timestamp`).
    pub from: Option<Timestamp>,
    pub once: bool,
    pub idle: Duration,
    pub backoff: Backoff,
}

impl Settings {
    pub fn from_args(args: &PollArgs) -> Self {
        Settings {
            stream: args.stream.clone(),
            batch_size: args.batch_size as usize,
            window: Duration::from_millis(args.batching_window_ms),
            max_retries: args.max_retries,
            state_file: args.state_file(),
            from: args.from_timestamp,
            once: args.once,
            idle: Duration::from_millis(args.idle_ms),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
        }
    }
}

/// Reads of one batch that came back empty while Kinesis said the reader was behind (a gap in
/// the shard), before the batch goes with what it has.
const MAX_EMPTY_READS_BEHIND: u32 = 100;
/// Throttled or expired reads in a row before poll gives up.
const MAX_READ_RETRIES: u32 = 10;
/// Most GetRecords calls for one batch.
const MAX_READS_PER_BATCH: u32 = 2_000;

/// One shard as the loop follows it.
struct Cursor {
    id: String,
    parents: Vec<String>,
    iterator: Option<String>,
    /// Records read but not yet done, oldest first.
    pending: VecDeque<StreamRecord>,
    /// GetRecords returned no next iterator: the shard is closed and read to its end.
    ended: bool,
    /// The record the last attempts failed at, and how many attempts failed there.
    failing: Option<(String, u32)>,
}

struct Poller<'a, R, I> {
    settings: &'a Settings,
    reader: &'a R,
    invoker: &'a I,
    stop: watch::Receiver<bool>,
    stream_arn: String,
    region: String,
    role: String,
    state: PollState,
    report: PollReport,
}

pub async fn run(args: &PollArgs) -> anyhow::Result<PollReport> {
    let settings = Settings::from_args(args);
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(90))
        .build();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts).load().await;
    let reader = KinesisReader { client: aws_sdk_kinesis::Client::new(&sdk) };
    let invoker = HttpInvoker::new(&args.invoke_url, &args.function, Duration::from_secs(args.invoke_timeout_secs))?;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("pinpipe poll: stopping after the batch in flight (Ctrl-C again to quit at once)");
            let _ = stop_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    poll(&settings, &reader, &invoker, stop).await
}

/// Polls `settings.stream` through `reader` and sends its batches through `invoker` until the
/// stream is drained (`once`) or `stop` turns true.
pub async fn poll<R: ShardReader, I: Invoker>(
    settings: &Settings,
    reader: &R,
    invoker: &I,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<PollReport> {
    let description = reader.describe(&settings.stream).await?;
    let state = match PollState::load(&settings.state_file)? {
        Some(state) => {
            state.check_stream(&description, &settings.state_file)?;
            state.check_replay(settings.from, &settings.state_file)?;
            state
        }
        None => PollState {
            stream: description.name.clone(),
            stream_arn: description.arn.clone(),
            stream_created: description.created,
            from_timestamp: settings.from,
            shards: BTreeMap::new(),
        },
    };
    if let Some(from) = state.from_timestamp {
        println!(
            "{}: replay from {from}: shards without a position in {} are read from that time",
            description.name,
            settings.state_file.display()
        );
    }
    let (region, account) = arn_region_account(&description.arn)
        .with_context(|| format!("{} is not the ARN of a Kinesis stream", description.arn))?;
    let mut poller = Poller {
        settings,
        reader,
        invoker,
        stop,
        stream_arn: description.arn.clone(),
        region: region.to_string(),
        role: format!("arn:aws:iam::{account}:role/pinpipe-consumer"),
        state,
        report: PollReport::default(),
    };
    poller.run(description).await?;
    Ok(poller.report)
}

impl<R: ShardReader, I: Invoker> Poller<'_, R, I> {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps for `pause`, or less if asked to stop.
    async fn pause(&mut self, pause: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
    }

    fn position(&self, shard: &str) -> ShardPosition {
        self.state.shards.get(shard).cloned().unwrap_or_default()
    }

    fn cursors(&self, description: &StreamDescription) -> Vec<Cursor> {
        description
            .shards
            .iter()
            .map(|shard| Cursor {
                id: shard.id.clone(),
                parents: shard.parents.clone(),
                iterator: None,
                pending: VecDeque::new(),
                ended: false,
                failing: None,
            })
            .collect()
    }

    async fn run(&mut self, mut description: StreamDescription) -> anyhow::Result<()> {
        let mut cursors = self.cursors(&description);
        let mut listed = Instant::now();
        loop {
            let mut progress = false;
            let mut shard_ended = false;
            for cursor in &mut cursors {
                if self.stopping() {
                    return Ok(());
                }
                if self.position(&cursor.id).finished {
                    continue;
                }
                // Lambda finishes a parent shard before it reads its children.
                let known = |id: &String| description.shards.iter().any(|s| &s.id == id);
                if cursor.parents.iter().any(|p| known(p) && !self.position(p).finished) {
                    continue;
                }
                let step = self.step(cursor).await?;
                progress |= step.records > 0 || step.finished;
                shard_ended |= step.finished;
            }
            if self.stopping() {
                return Ok(());
            }
            // New shards appear when a stream is resharded; look for them now and then.
            if shard_ended || listed.elapsed() > Duration::from_secs(60) {
                let fresh = self.reader.describe(&self.settings.stream).await?;
                let new_shards = fresh.shards.iter().filter(|s| !cursors.iter().any(|c| c.id == s.id)).cloned();
                let new_shards = StreamDescription { shards: new_shards.collect(), ..fresh.clone() };
                cursors.extend(self.cursors(&new_shards));
                description = fresh;
                listed = Instant::now();
            }
            if !progress {
                if self.settings.once {
                    return Ok(());
                }
                self.pause(self.settings.idle).await;
            }
        }
    }

    /// Reads the next batch of `cursor`'s shard and has the function process it: the batch is
    /// done, partly done, or failed after its retries (an error).
    async fn step(&mut self, cursor: &mut Cursor) -> anyhow::Result<Step> {
        self.fill(cursor).await?;
        if cursor.pending.is_empty() {
            if cursor.ended {
                self.state.shards.entry(cursor.id.clone()).or_default().finished = true;
                self.state.save(&self.settings.state_file)?;
                println!("{}  closed, read to its end", cursor.id);
                return Ok(Step { records: 0, finished: true });
            }
            return Ok(Step::default());
        }
        let source =
            KinesisSource { stream_arn: &self.stream_arn, region: &self.region, invoke_identity_arn: &self.role };
        let pending = cursor.pending.make_contiguous();
        let n = batch_len(pending, self.settings.batch_size, &source, &cursor.id);
        let batch = pending[..n].to_vec();
        let payload = batch_event(&source, &cursor.id, &batch);
        let (first, last) = (&batch[0].sequence_number, &batch[n - 1].sequence_number);
        loop {
            let result = match self.invoker.invoke(payload.clone()).await {
                Ok(invocation) => batch_result(&batch, &invocation),
                Err(e) => BatchResult::Failed { why: format!("no answer: {e:#}"), retryable: true },
            };
            self.report.invocations += 1;
            let label = format!("{}  {n:>5} records  {first} .. {last}", cursor.id);
            let (done, why, retryable) = match result {
                BatchResult::Done => (n, None, true),
                BatchResult::Partial { done, failed } => {
                    (done, Some(format!("the function reported {failed} as failed")), true)
                }
                BatchResult::Failed { why, retryable } => (0, Some(why), retryable),
            };
            if done > 0 {
                let finished = batch[done - 1].sequence_number.clone();
                cursor.pending.drain(..done);
                self.state.shards.entry(cursor.id.clone()).or_default().after = Some(finished);
                self.state.save(&self.settings.state_file)?;
                self.report.records += done;
            }
            let Some(why) = why else {
                cursor.failing = None;
                println!("{label}  ok");
                return Ok(Step { records: n, finished: false });
            };
            if !retryable {
                println!("{label}  failed: {why}");
                bail!("{why}; the position of {} is unchanged in {}", cursor.id, self.settings.state_file.display());
            }
            // The record the next attempt starts at, and how many attempts failed there.
            let at = batch[done].sequence_number.clone();
            let attempts = match &cursor.failing {
                Some((failing, attempts)) if done == 0 && *failing == at => attempts + 1,
                _ => 1,
            };
            cursor.failing = Some((at.clone(), attempts));
            if attempts > self.settings.max_retries {
                println!("{label}  failed: {why}; giving up after {attempts} attempts");
                return Err(self.gave_up(cursor, &at, attempts, &why));
            }
            let pause = self.settings.backoff.delay(attempts);
            if done > 0 {
                println!("{label}  {done} done, {why}; retrying from it in {:.1} s", pause.as_secs_f64());
            } else {
                let max = self.settings.max_retries;
                println!("{label}  failed: {why}; retry {attempts}/{max} in {:.1} s", pause.as_secs_f64());
            }
            self.report.retries += 1;
            self.pause(pause).await;
            // After progress the next batch starts at the failed record and may take newer ones,
            // as Lambda's does; without progress the same batch goes again.
            if done > 0 || self.stopping() {
                return Ok(Step { records: done, finished: false });
            }
        }
    }

    /// The error poll stops with when the batch starting at `at` failed `attempts` times.
    fn gave_up(&self, cursor: &Cursor, at: &str, attempts: u32, why: &str) -> anyhow::Error {
        let position = match (&self.position(&cursor.id).after, self.state.from_timestamp) {
            (Some(after), _) => format!("after {after} in {}", self.settings.state_file.display()),
            (None, Some(from)) => format!("at the replay's start, {from}"),
            (None, None) => "at the start of the shard".to_string(),
        };
        anyhow::anyhow!(
            "{} of {}: the batch starting at {at} failed {attempts} times (last: {why}); the shard's position \
             stays {position}, so the next run starts with that batch again",
            cursor.id,
            self.settings.stream,
        )
    }

    /// Reads into `cursor.pending` until it holds a batch, the batching window is over, the shard
    /// has nothing more for now, or it has ended.
    async fn fill(&mut self, cursor: &mut Cursor) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.settings.window;
        let (mut empty_behind, mut read_retries, mut reads) = (0, 0, 0);
        while cursor.pending.len() < self.settings.batch_size && !cursor.ended && reads < MAX_READS_PER_BATCH {
            reads += 1;
            let iterator = match &cursor.iterator {
                Some(iterator) => iterator.clone(),
                None => {
                    // Resume after what is already read, else after the saved position, else
                    // at the replay's time.
                    let after = match cursor.pending.back() {
                        Some(last) => Some(last.sequence_number.clone()),
                        None => self.position(&cursor.id).after,
                    };
                    let start = shard_start(after.as_deref(), self.state.from_timestamp);
                    match self.reader.iterator(&self.settings.stream, &cursor.id, start).await {
                        Ok(iterator) => iterator,
                        Err(e) => {
                            self.read_retry(&cursor.id, "GetShardIterator", e, &mut read_retries).await?;
                            continue;
                        }
                    }
                }
            };
            let limit = (self.settings.batch_size - cursor.pending.len()).clamp(1, 10_000) as i32;
            let page = match self.reader.records(&iterator, limit).await {
                Ok(page) => page,
                Err(e) => {
                    if matches!(e, ReadError::Expired) {
                        cursor.iterator = None;
                    }
                    self.read_retry(&cursor.id, "GetRecords", e, &mut read_retries).await?;
                    continue;
                }
            };
            read_retries = 0;
            cursor.ended = page.next_iterator.is_none();
            cursor.iterator = page.next_iterator;
            let got = page.records.len();
            cursor.pending.extend(page.records);
            if got == 0 {
                if page.millis_behind_latest.unwrap_or(0) > 0 && empty_behind < MAX_EMPTY_READS_BEHIND {
                    empty_behind += 1;
                    continue;
                }
                let now = Instant::now();
                if cursor.pending.is_empty() || now >= deadline || self.stopping() {
                    break;
                }
                self.pause((deadline - now).min(Duration::from_millis(200))).await;
            } else if Instant::now() >= deadline {
                break;
            }
        }
        Ok(())
    }

    /// Waits before another read after `error`, or fails when it cannot be retried.
    async fn read_retry(&mut self, shard: &str, call: &str, error: ReadError, retries: &mut u32) -> anyhow::Result<()> {
        *retries += 1;
        match error {
            ReadError::Other(e) => Err(e.context(format!("{call} of {shard} in {}", self.settings.stream))),
            e if *retries > MAX_READ_RETRIES => {
                bail!("{call} of {shard} in {}: {e}, {MAX_READ_RETRIES} times in a row", self.settings.stream)
            }
            ReadError::Expired => Ok(()),
            ReadError::Throttled(_) => {
                self.pause(self.settings.backoff.delay(*retries)).await;
                Ok(())
            }
        }
    }
}

/// What one step of a shard did.
#[derive(Debug, Default, Clone, Copy)]
struct Step {
    records: usize,
    finished: bool,
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::*;

    const ARN: &str = "arn:aws:kinesis:eu-west-1:111122223333:stream/streaming-abc-pin";
    const ROLE: &str = "arn:aws:iam::111122223333:role/pinpipe-consumer";

    fn source() -> KinesisSource<'static> {
        KinesisSource { stream_arn: ARN, region: "eu-west-1", invoke_identity_arn: ROLE }
    }

    fn record(sequence: u64, data: &str) -> StreamRecord {
        StreamRecord {
            sequence_number: sequence.to_string(),
            partition_key: format!("key-{sequence}"),
            data: data.as_bytes().to_vec(),
            arrival: 1_764_061_921.5 + sequence as f64,
        }
    }

    fn answer(status: u16, body: &str) -> Invocation {
        Invocation { status, function_error: None, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn a_batch_is_the_event_lambda_builds_from_get_records() {
        let batch = [record(7, r#"{"index": 7}"#), record(8, "not json")];
        let event: Value = serde_json::from_slice(&batch_event(&source(), "shardId-000000000002", &batch)).unwrap();
        let records = event["Records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        let first = &records[0];
        assert_eq!(first["eventID"], "shardId-000000000002:7");
        assert_eq!(first["eventSourceARN"], ARN);
        assert_eq!(first["eventSource"], "aws:kinesis");
        assert_eq!(first["eventName"], "aws:kinesis:record");
        assert_eq!(first["eventVersion"], "1.0");
        assert_eq!(first["awsRegion"], "eu-west-1");
        assert_eq!(first["invokeIdentityArn"], ROLE);
        assert_eq!(first["kinesis"]["sequenceNumber"], "7");
        assert_eq!(first["kinesis"]["partitionKey"], "key-7");
        assert_eq!(first["kinesis"]["kinesisSchemaVersion"], "1.0");
        assert_eq!(first["kinesis"]["data"], "eyJpbmRleCI6IDd9");
        assert_eq!(first["kinesis"]["approximateArrivalTimestamp"].as_f64(), Some(1_764_061_928.5));
        assert_eq!(records[1]["kinesis"]["data"], "bm90IGpzb24=");
        // What the consumer's runtime deserialises.
        let typed: aws_lambda_events::event::kinesis::KinesisEvent =
            serde_json::from_slice(&batch_event(&source(), "shardId-000000000002", &batch)).unwrap();
        assert_eq!(typed.records[1].kinesis.data.as_slice(), b"not json");
    }

    #[test]
    fn batches_hold_at_most_batch_size_records_and_stay_under_six_megabytes() {
        let small: Vec<StreamRecord> = (1..=10).map(|n| record(n, "{}")).collect();
        assert_eq!(batch_len(&small, 4, &source(), "shardId-000000000000"), 4);
        assert_eq!(batch_len(&small, 100, &source(), "shardId-000000000000"), 10);
        assert_eq!(batch_len(&small[..0], 100, &source(), "shardId-000000000000"), 0);
        // 1 MiB records (Kinesis's largest): four fit in 6 MiB once base64-encoded, five do not.
        let big: Vec<StreamRecord> = (1..=10).map(|n| record(n, &"x".repeat(1 << 20))).collect();
        let n = batch_len(&big, 100, &source(), "shardId-000000000000");
        assert_eq!(n, 4);
        assert!(batch_event(&source(), "shardId-000000000000", &big[..n]).len() <= MAX_PAYLOAD_BYTES);
        assert!(batch_event(&source(), "shardId-000000000000", &big[..n + 1]).len() > MAX_PAYLOAD_BYTES);
        // A record alone always goes, whatever its size.
        assert_eq!(batch_len(&big[..1], 1, &source(), "shardId-000000000000"), 1);
    }

    #[test]
    fn partial_batch_responses_move_the_position_as_lambda_does() {
        let batch: Vec<StreamRecord> = [5u64, 9, 10, 120].iter().map(|&n| record(n, "{}")).collect();
        for done in ["", "null", "{}", r#"{"batchItemFailures": []}"#, r#"{"batchItemFailures": null}"#] {
            assert_eq!(batch_result(&batch, &answer(200, done)), BatchResult::Done, "{done:?}");
        }
        // The lowest failed sequence number, by value rather than as text ("120" < "9" as text).
        let partial =
            r#"{"batchItemFailures": [{"itemIdentifier": "120"}, {"itemIdentifier": "10"}, {"itemIdentifier": "9"}]}"#;
        assert_eq!(batch_result(&batch, &answer(200, partial)), BatchResult::Partial { done: 1, failed: "9".into() });
        let first = r#"{"batchItemFailures": [{"itemIdentifier": "5"}]}"#;
        assert_eq!(batch_result(&batch, &answer(200, first)), BatchResult::Partial { done: 0, failed: "5".into() });
        // Lambda treats these as a failure of the whole batch.
        for whole in [
            r#"{"batchItemFailures": [{"itemIdentifier": ""}]}"#,
            r#"{"batchItemFailures": [{"itemIdentifier": null}]}"#,
            r#"{"batchItemFailures": [{"item": "9"}]}"#,
            r#"{"batchItemFailures": [{"itemIdentifier": "11"}]}"#,
            r#"{"batchItemFailures": "9"}"#,
            "not json",
            r#""ok""#,
        ] {
            assert!(
                matches!(batch_result(&batch, &answer(200, whole)), BatchResult::Failed { retryable: true, .. }),
                "{whole}"
            );
        }
        let unhandled = Invocation {
            function_error: Some("Unhandled".into()),
            ..answer(200, r#"{"errorMessage": "boom", "errorType": "Panic"}"#)
        };
        let BatchResult::Failed { why, retryable: true } = batch_result(&batch, &unhandled) else { panic!() };
        assert!(why.contains("Unhandled") && why.contains("boom"), "{why}");
        // `cargo lambda watch` reports a function error as a 500; a missing function is a 404.
        assert!(matches!(batch_result(&batch, &answer(500, "{}")), BatchResult::Failed { retryable: true, .. }));
        assert!(matches!(
            batch_result(&batch, &answer(404, "no such function")),
            BatchResult::Failed { retryable: false, .. }
        ));
        assert_eq!(cmp_sequence("0120", "9"), std::cmp::Ordering::Greater);
    }

    fn description(created: f64) -> StreamDescription {
        StreamDescription {
            name: "streaming-abc-pin".into(),
            arn: ARN.into(),
            created: Some(created),
            shards: vec![ShardDescription { id: "shardId-000000000000".into(), parents: vec![] }],
        }
    }

    #[test]
    fn the_state_file_round_trips_and_belongs_to_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/poll-streaming-abc-pin.json");
        assert_eq!(PollState::load(&path).unwrap(), None);
        let state = PollState {
            stream: "streaming-abc-pin".into(),
            stream_arn: ARN.into(),
            stream_created: Some(1_700_000_000.25),
            from_timestamp: None,
            shards: BTreeMap::from([
                ("shardId-000000000000".into(), ShardPosition { after: Some("4959".into()), finished: true }),
                ("shardId-000000000001".into(), ShardPosition { after: Some("12".into()), finished: false }),
            ]),
        };
        state.save(&path).unwrap();
        assert_eq!(PollState::load(&path).unwrap(), Some(state.clone()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""after": "12""#) && !text.contains(r#""finished": false"#), "{text}");
        assert!(!dir.path().join("nested/poll-streaming-abc-pin.json.tmp").exists());
        state.check_stream(&description(1_700_000_000.25), &path).unwrap();
        let recreated = state.check_stream(&description(1_800_000_000.0), &path).unwrap_err().to_string();
        assert!(recreated.contains("created again"), "{recreated}");
        let other = StreamDescription { name: "streaming-abc-geo".into(), ..description(1_700_000_000.25) };
        assert!(state.check_stream(&other, &path).unwrap_err().to_string().contains("not streaming-abc-geo"));
        std::fs::write(&path, "{").unwrap();
        assert!(PollState::load(&path).is_err());
    }

    /// Shards in memory: `(id, parents, records, closed)`; iterators are "<shard>/<index>". Keeps
    /// the start of every iterator it hands out, as "<shard> <start>".
    struct FakeStream {
        shards: Vec<(String, Vec<String>, Vec<StreamRecord>, bool)>,
        reads: Mutex<usize>,
        starts: Mutex<Vec<String>>,
    }

    impl FakeStream {
        fn new(shards: Vec<(&str, Vec<&str>, Vec<StreamRecord>, bool)>) -> Self {
            let shards = shards
                .into_iter()
                .map(|(id, parents, records, closed)| {
                    (id.to_string(), parents.into_iter().map(str::to_string).collect(), records, closed)
                })
                .collect();
            FakeStream { shards, reads: Mutex::new(0), starts: Mutex::default() }
        }

        fn starts(&self) -> Vec<String> {
            std::mem::take(&mut *self.starts.lock().unwrap())
        }

        fn shard(&self, id: &str) -> &(String, Vec<String>, Vec<StreamRecord>, bool) {
            self.shards.iter().find(|s| s.0 == id).unwrap()
        }
    }

    impl ShardReader for FakeStream {
        async fn describe(&self, stream: &str) -> anyhow::Result<StreamDescription> {
            Ok(StreamDescription {
                name: stream.to_string(),
                arn: ARN.into(),
                created: Some(1_700_000_000.0),
                shards: self
                    .shards
                    .iter()
                    .map(|(id, parents, _, _)| ShardDescription { id: id.clone(), parents: parents.clone() })
                    .collect(),
            })
        }

        async fn iterator(&self, _stream: &str, shard: &str, start: ShardStart<'_>) -> Result<String, ReadError> {
            let records = &self.shard(shard).2;
            let (index, label) = match start {
                ShardStart::Oldest => (0, "oldest".to_string()),
                ShardStart::After(after) => {
                    (records.iter().position(|r| r.sequence_number == after).unwrap() + 1, format!("after {after}"))
                }
                // As Kinesis: the first record that arrived at or after the time.
                ShardStart::At(time) => {
                    let at = time.millis() as f64 / 1000.0;
                    (records.iter().position(|r| r.arrival >= at).unwrap_or(records.len()), format!("at {time}"))
                }
            };
            self.starts.lock().unwrap().push(format!("{shard} {label}"));
            Ok(format!("{shard}/{index}"))
        }

        async fn records(&self, iterator: &str, limit: i32) -> Result<Page, ReadError> {
            *self.reads.lock().unwrap() += 1;
            let (shard, index) = iterator.split_once('/').unwrap();
            let index: usize = index.parse().unwrap();
            let (_, _, records, closed) = self.shard(shard);
            let end = (index + limit as usize).min(records.len());
            let next = if *closed && end == records.len() { None } else { Some(format!("{shard}/{end}")) };
            Ok(Page { records: records[index..end].to_vec(), next_iterator: next, millis_behind_latest: Some(0) })
        }
    }

    /// A function that answers from a script (then `{"batchItemFailures": []}`), keeping the
    /// sequence numbers of every event it was sent.
    #[derive(Default)]
    struct FakeFunction {
        script: Mutex<VecDeque<Invocation>>,
        events: Mutex<Vec<Vec<String>>>,
    }

    impl FakeFunction {
        fn answering(script: Vec<Invocation>) -> Self {
            FakeFunction { script: Mutex::new(script.into()), events: Mutex::default() }
        }

        fn events(&self) -> Vec<Vec<String>> {
            self.events.lock().unwrap().clone()
        }
    }

    impl Invoker for FakeFunction {
        async fn invoke(&self, payload: Vec<u8>) -> anyhow::Result<Invocation> {
            let event: aws_lambda_events::event::kinesis::KinesisEvent = serde_json::from_slice(&payload)?;
            let ids = event.records.iter().map(|r| r.event_id.clone().unwrap_or_default()).collect();
            self.events.lock().unwrap().push(ids);
            let next = self.script.lock().unwrap().pop_front();
            Ok(next.unwrap_or_else(|| answer(200, r#"{"batchItemFailures": []}"#)))
        }
    }

    fn test_settings(dir: &Path, batch_size: usize) -> Settings {
        Settings {
            stream: "streaming-abc-pin".into(),
            batch_size,
            window: Duration::ZERO,
            max_retries: 2,
            state_file: dir.join("poll.json"),
            from: None,
            once: true,
            idle: Duration::from_millis(10),
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
        }
    }

    fn never_stop() -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        rx
    }

    fn ids(shard: &str, sequences: std::ops::RangeInclusive<u64>) -> Vec<String> {
        sequences.map(|n| format!("{shard}:{n}")).collect()
    }

    #[tokio::test]
    async fn poll_drains_parents_first_retries_from_the_lowest_failure_and_resumes_from_its_state() {
        let dir = tempfile::tempdir().unwrap();
        // shardId-1 is the child of shardId-0, which was closed by a reshard.
        let stream = FakeStream::new(vec![
            ("shardId-1", vec!["shardId-0"], (20..=22).map(|n| record(n, "{}")).collect(), false),
            ("shardId-0", vec![], (1..=5).map(|n| record(n, "{}")).collect(), true),
        ]);
        let function =
            FakeFunction::answering(vec![answer(200, r#"{"batchItemFailures": [{"itemIdentifier": "3"}]}"#)]);
        let settings = test_settings(dir.path(), 3);
        let report = poll(&settings, &stream, &function, never_stop()).await.unwrap();
        assert_eq!(
            function.events(),
            [ids("shardId-0", 1..=3), ids("shardId-0", 3..=5), ids("shardId-1", 20..=22)],
            "the parent first; the retry starts at the failed record and tops the batch up"
        );
        assert_eq!(report, PollReport { records: 8, invocations: 3, retries: 1 });
        let state = PollState::load(&settings.state_file).unwrap().unwrap();
        assert_eq!(state.shards["shardId-0"], ShardPosition { after: Some("5".into()), finished: true });
        assert_eq!(state.shards["shardId-1"], ShardPosition { after: Some("22".into()), finished: false });
        assert_eq!((state.stream.as_str(), state.stream_arn.as_str()), ("streaming-abc-pin", ARN));

        // A second run starts from the saved positions: nothing to send.
        let again = FakeFunction::default();
        let report = poll(&settings, &stream, &again, never_stop()).await.unwrap();
        assert_eq!((report.records, again.events().len()), (0, 0));

        // New records on the open shard: only they go.
        let grown = FakeStream::new(vec![
            ("shardId-1", vec!["shardId-0"], (20..=24).map(|n| record(n, "{}")).collect(), false),
            ("shardId-0", vec![], (1..=5).map(|n| record(n, "{}")).collect(), true),
        ]);
        let more = FakeFunction::default();
        poll(&settings, &grown, &more, never_stop()).await.unwrap();
        assert_eq!(more.events(), [ids("shardId-1", 23..=24)]);
    }

    #[tokio::test]
    async fn a_failing_function_is_retried_a_bounded_number_of_times_and_the_position_stays() {
        let dir = tempfile::tempdir().unwrap();
        let stream = FakeStream::new(vec![("shardId-0", vec![], (1..=4).map(|n| record(n, "{}")).collect(), false)]);
        // The first batch goes; the second fails every time.
        let error = r#"{"errorType": "Panic", "errorMessage": "lake unreachable"}"#;
        let function = FakeFunction::answering(
            std::iter::once(answer(200, "{}")).chain(std::iter::repeat_n(answer(500, error), 10)).collect(),
        );
        let settings = test_settings(dir.path(), 2);
        let err = poll(&settings, &stream, &function, never_stop()).await.unwrap_err().to_string();
        assert!(err.contains("failed 3 times") && err.contains("lake unreachable") && err.contains("after 2"), "{err}");
        assert_eq!(
            function.events(),
            [ids("shardId-0", 1..=2), ids("shardId-0", 3..=4), ids("shardId-0", 3..=4), ids("shardId-0", 3..=4)]
        );
        let state = PollState::load(&settings.state_file).unwrap().unwrap();
        assert_eq!(state.shards["shardId-0"].after.as_deref(), Some("2"));

        // A function that keeps reporting its first record as failed is bounded the same way.
        let dir = tempfile::tempdir().unwrap();
        let stuck =
            FakeFunction::answering(vec![answer(200, r#"{"batchItemFailures": [{"itemIdentifier": "1"}]}"#); 10]);
        let err = poll(&test_settings(dir.path(), 2), &stream, &stuck, never_stop()).await.unwrap_err().to_string();
        assert!(err.contains("reported 1 as failed") && err.contains("at the start of the shard"), "{err}");
        assert_eq!(stuck.events().len(), 3);
        assert_eq!(PollState::load(&test_settings(dir.path(), 2).state_file).unwrap(), None, "nothing was done");

        // An Invoke API that does not know the function: no retry.
        let dir = tempfile::tempdir().unwrap();
        let unknown = FakeFunction::answering(vec![answer(404, "function not found")]);
        let err = poll(&test_settings(dir.path(), 2), &stream, &unknown, never_stop()).await.unwrap_err().to_string();
        assert!(err.contains("HTTP 404"), "{err}");
        assert_eq!(unknown.events().len(), 1);
    }

    #[tokio::test]
    async fn the_batching_window_gathers_records_until_the_batch_is_full_or_the_window_ends() {
        let dir = tempfile::tempdir().unwrap();
        let stream = FakeStream::new(vec![("shardId-0", vec![], (1..=5).map(|n| record(n, "{}")).collect(), false)]);
        let function = FakeFunction::default();
        let settings = Settings { window: Duration::from_millis(300), ..test_settings(dir.path(), 4) };
        let started = Instant::now();
        poll(&settings, &stream, &function, never_stop()).await.unwrap();
        // The first batch is full at once; the second waits out the window for more.
        assert_eq!(function.events(), [ids("shardId-0", 1..=4), ids("shardId-0", 5..=5)]);
        assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    }

    #[test]
    fn a_replay_starts_at_rfc_3339_or_epoch_seconds_in_the_past() {
        let now = Timestamp::parse("2025-11-26T00:00:00Z", Timestamp::from_millis(i64::MAX)).unwrap();
        let parse = |text: &str| Timestamp::parse(text, now);
        let at = Timestamp::from_millis(1_764_061_921_000); // 2025-11-25T09:12:01Z
        for text in [
            "2025-11-25T09:12:01Z",
            "2025-11-25t09:12:01z",
            "2025-11-25T10:12:01+01:00",
            "2025-11-25T04:12:01-05:00",
            "2025-11-25 09:12:01Z",
            " 2025-11-25T09:12:01Z ",
            "1764061921",
            "1764061921.0",
        ] {
            assert_eq!(parse(text), Ok(at), "{text}");
        }
        assert_eq!(parse("2025-11-25T09:12:01.25Z").unwrap().millis(), 1_764_061_921_250);
        assert_eq!(parse("1764061921.25").unwrap().millis(), 1_764_061_921_250);
        // Beyond the millisecond is dropped.
        assert_eq!(parse("1764061921.2509").unwrap().millis(), 1_764_061_921_250);
        assert_eq!(parse("2025-11-25T09:12:01.250999Z").unwrap().millis(), 1_764_061_921_250);
        assert_eq!(parse("0"), Ok(Timestamp::from_millis(0)));
        for wrong in [
            "",
            "yesterday",
            "2025-11-25",
            "09:12:01",
            "2025-11-25T09:12:01",
            "-1764061921",
            "1764061921.",
            ".5",
            "1e9",
        ] {
            let err = parse(wrong).unwrap_err();
            assert!(err.contains("is not a time") && err.contains("RFC 3339"), "{wrong}: {err}");
        }
        assert!(parse("2025-11-26T00:00:00.001Z").unwrap_err().contains("in the future"));
        let millis = parse("1764061921000").unwrap_err();
        assert!(millis.contains("in the future") && millis.contains("not milliseconds"), "{millis}");
        assert_eq!(parse("2025-11-26T00:00:00Z"), Ok(now), "now is past enough");
        // The state file keeps it as RFC 3339, and reads it back.
        assert_eq!(at.to_string(), "2025-11-25T09:12:01Z");
        assert_eq!(Timestamp::from_millis(1_764_061_921_250).to_string(), "2025-11-25T09:12:01.25Z");
        assert_eq!(serde_json::to_string(&at).unwrap(), r#""2025-11-25T09:12:01Z""#);
        assert_eq!(serde_json::from_str::<Timestamp>(r#""2025-11-25T10:12:01+01:00""#).unwrap(), at);
        assert!(serde_json::from_str::<Timestamp>(r#""1764061921""#).is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        poll: PollArgs,
    }

    #[test]
    fn from_timestamp_needs_a_state_file_of_its_own() {
        use clap::Parser;
        let args =
            Cli::try_parse_from(["poll", "--stream", "s", "--from-timestamp", "1764061921", "--state", "replay.json"])
                .unwrap()
                .poll;
        assert_eq!(args.from_timestamp, Some(Timestamp::from_millis(1_764_061_921_000)));
        assert_eq!(Settings::from_args(&args).from, args.from_timestamp);
        assert_eq!(Cli::try_parse_from(["poll", "--stream", "s"]).unwrap().poll.from_timestamp, None);
        let without_state = Cli::try_parse_from(["poll", "--stream", "s", "--from-timestamp", "1764061921"]);
        assert!(without_state.err().unwrap().to_string().contains("--state"));
        let future = Cli::try_parse_from(["poll", "--stream", "s", "--from-timestamp", "99999999999", "--state", "r"]);
        assert!(future.err().unwrap().to_string().contains("in the future"));
    }

    #[test]
    fn a_shard_is_read_after_its_position_else_from_the_replay_time_else_from_its_oldest_record() {
        let from = Timestamp::from_millis(1_764_061_921_000);
        assert_eq!(shard_start(None, None), ShardStart::Oldest);
        assert_eq!(shard_start(None, Some(from)), ShardStart::At(from));
        assert_eq!(shard_start(Some("42"), None), ShardStart::After("42"));
        assert_eq!(
            shard_start(Some("42"), Some(from)),
            ShardStart::After("42"),
            "a replay carries on after its position"
        );
    }

    #[test]
    fn a_replay_goes_on_only_from_a_state_file_of_the_same_replay() {
        let path = Path::new("replay.json");
        let from = Timestamp::from_millis(1_764_061_921_000);
        let regular = PollState { stream: "streaming-abc-pin".into(), ..PollState::default() };
        regular.check_replay(None, path).unwrap();
        let err = regular.check_replay(Some(from), path).unwrap_err().to_string();
        assert!(err.contains("positions of a regular poll") && err.contains("--state"), "{err}");
        let replay = PollState { from_timestamp: Some(from), ..regular };
        replay.check_replay(Some(from), path).unwrap();
        replay.check_replay(None, path).unwrap();
        let err = replay.check_replay(Some(Timestamp::from_millis(0)), path).unwrap_err().to_string();
        assert!(err.contains("a replay from 2025-11-25T09:12:01Z") && err.contains("--state"), "{err}");
    }

    #[tokio::test]
    async fn a_replay_reads_from_its_time_with_a_state_of_its_own_and_carries_on_from_it() {
        let dir = tempfile::tempdir().unwrap();
        // Record n arrived at 1_764_061_921.5 + n.
        let stream = FakeStream::new(vec![
            ("shardId-1", vec!["shardId-0"], (20..=22).map(|n| record(n, "{}")).collect(), false),
            ("shardId-0", vec![], (1..=5).map(|n| record(n, "{}")).collect(), true),
            ("shardId-2", vec![], (30..=31).map(|n| record(n, "{}")).collect(), false),
        ]);
        let regular = test_settings(dir.path(), 10);
        poll(&regular, &stream, &FakeFunction::default(), never_stop()).await.unwrap();
        let regular_state = std::fs::read(&regular.state_file).unwrap();
        stream.starts();

        // From the arrival of record 4: the regular positions are not looked at, nor moved.
        let from = Timestamp::from_millis(1_764_061_925_500);
        let replay = Settings { from: Some(from), state_file: dir.path().join("replay.json"), ..regular.clone() };
        let function = FakeFunction::default();
        let report = poll(&replay, &stream, &function, never_stop()).await.unwrap();
        assert_eq!(function.events(), [ids("shardId-0", 4..=5), ids("shardId-2", 30..=31), ids("shardId-1", 20..=22)]);
        assert_eq!(report.records, 7);
        assert_eq!(
            stream.starts(),
            [
                "shardId-0 at 2025-11-25T09:12:05.5Z",
                "shardId-2 at 2025-11-25T09:12:05.5Z",
                "shardId-1 at 2025-11-25T09:12:05.5Z"
            ]
        );
        assert_eq!(std::fs::read(&regular.state_file).unwrap(), regular_state, "the regular state is untouched");
        let state = PollState::load(&replay.state_file).unwrap().unwrap();
        assert_eq!(state.from_timestamp, Some(from));
        assert_eq!(state.shards["shardId-0"], ShardPosition { after: Some("5".into()), finished: true });
        assert_eq!(state.shards["shardId-1"].after.as_deref(), Some("22"));
        let text = std::fs::read_to_string(&replay.state_file).unwrap();
        assert!(text.contains(r#""from_timestamp": "2025-11-25T09:12:05.5Z""#), "{text}");

        // The same replay again carries on from its positions: nothing new to send.
        let again = FakeFunction::default();
        poll(&replay, &stream, &again, never_stop()).await.unwrap();
        assert_eq!(again.events().len(), 0);
        assert_eq!(stream.starts(), ["shardId-1 after 22", "shardId-2 after 31"]);

        // A replay refuses a regular state file, or another replay's.
        let onto_regular = Settings { from: Some(from), ..regular.clone() };
        let err = poll(&onto_regular, &stream, &FakeFunction::default(), never_stop()).await.unwrap_err();
        assert!(err.to_string().contains("positions of a regular poll"), "{err}");
        let other = Settings { from: Some(Timestamp::from_millis(0)), ..replay.clone() };
        let err = poll(&other, &stream, &FakeFunction::default(), never_stop()).await.unwrap_err();
        assert!(err.to_string().contains("positions of a replay from 2025-11-25T09:12:05.5Z"), "{err}");
        assert_eq!(std::fs::read(&regular.state_file).unwrap(), regular_state);

        // A replay stopped before a shard moved: rerun, with or without --from-timestamp, that
        // shard still starts at the replay's time, kept in the state file.
        let stopped = Settings { from: Some(from), state_file: dir.path().join("stopped.json"), ..regular.clone() };
        let unknown = FakeFunction::answering(vec![answer(200, "{}"), answer(404, "function not found")]);
        let err = poll(&stopped, &stream, &unknown, never_stop()).await.unwrap_err().to_string();
        assert!(err.contains("HTTP 404"), "{err}");
        assert_eq!(stream.starts(), ["shardId-0 at 2025-11-25T09:12:05.5Z", "shardId-2 at 2025-11-25T09:12:05.5Z"]);
        let carry_on = Settings { from: None, ..stopped.clone() };
        let function = FakeFunction::default();
        poll(&carry_on, &stream, &function, never_stop()).await.unwrap();
        assert_eq!(function.events(), [ids("shardId-2", 30..=31), ids("shardId-1", 20..=22)]);
        assert_eq!(
            stream.starts(),
            ["shardId-0 after 5", "shardId-2 at 2025-11-25T09:12:05.5Z", "shardId-1 at 2025-11-25T09:12:05.5Z"]
        );
    }

    #[tokio::test]
    async fn the_invoke_api_is_called_as_lambda_serves_it() {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let server_seen = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = server_seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await?.to_bytes();
                            seen.lock().unwrap().push((path, body.len()));
                            let response = hyper::Response::builder()
                                .status(200)
                                .header("X-Amz-Function-Error", "Unhandled")
                                .body(Full::new(Bytes::from_static(br#"{"errorMessage":"boom"}"#)))
                                .unwrap();
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        let invoker = HttpInvoker::new(&format!("{base}/"), "stream-consumer", Duration::from_secs(5)).unwrap();
        let answer = invoker.invoke(b"{\"Records\":[]}".to_vec()).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.function_error.as_deref(), Some("Unhandled"));
        assert_eq!(answer.body, br#"{"errorMessage":"boom"}"#);
        assert_eq!(*seen.lock().unwrap(), [("/2015-03-31/functions/stream-consumer/invocations".to_string(), 14)]);
        assert!(HttpInvoker::new(&base, "../admin", Duration::from_secs(1)).is_err());
        // Nobody listening: an error, which poll retries like a function error.
        let closed = HttpInvoker::new("http://127.0.0.1:9", "f", Duration::from_secs(2)).unwrap();
        assert!(closed.invoke(Vec::new()).await.is_err());
    }
}
