//! The Delta Lake side of pinpipe: where the tables live, creating them, and appending to them
//! exactly once.
//!
//! # Exactly-once appends
//!
//! Lambda delivers records at least once: a batch may come again after its commit landed (the
//! function timed out or crashed after committing), a retry may start mid-batch, and two
//! invocations may hold the same record. So every append records, *in the same Delta commit as
//! the rows*, how far it got in each source, and every append first skips what the table
//! already holds.
//!
//! Progress lives in Delta `txn` actions (application transactions), which checkpoints keep and
//! the conflict checker understands. A `txn` version is an `i64`, but a Kinesis sequence number
//! is a decimal of up to 128 digits, so a position is stored as [`CHUNKS`] `txn` entries per
//! source (`<key>#0` .. `<key>#7`), each holding 16 digits of the zero-padded number, most
//! significant first. All chunks of a key are written together in every commit that advances
//! it, so any snapshot shows one consistent position. A source key is one shard of one stream
//! (`kinesis/<stream>/<shard>`); shards that split or merge get new shard ids, hence new keys, and
//! their sequence numbers only grow, so each key's position is monotone.
//!
//! The scheme assumes each shard is consumed in order, one batch at a time, as Lambda does with
//! `ParallelizationFactor: 1` (the template's setting). With a higher factor Lambda runs batches
//! of one shard concurrently, ordered only per partition key, and a later batch committing first
//! would make an earlier one look delivered: keep the factor at 1.
//!
//! Sources whose positions fit an `i64` (a Kafka offset) use [`SourceKey::Offset`]: one `txn`
//! entry whose app id is the key and whose version is the position.
//!
//! Two writers racing on the same key both write its `txn` ids; Delta's conflict checker rejects
//! the loser (`ConcurrentTransaction`), which reloads, skips what the winner wrote, and commits
//! the rest. A commit whose outcome was lost (the conditional PUT landed but the answer did not)
//! is caught the same way: the retry finds its own `txn` entries and writes nothing.
//! Conflicts are retried a bounded number of times with exponential backoff and full jitter,
//! because delta-rs's own retries do not back off.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::kernel::{StructType, Transaction};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use futures::future::try_join_all;
use url::Url;

use crate::backoff::Backoff;

/// How many `txn` entries hold one position: 8 × 16 digits = 128, Kinesis' longest.
pub const CHUNKS: usize = 8;
const CHUNK_DIGITS: usize = 16;
const MAX_DIGITS: usize = CHUNKS * CHUNK_DIGITS;

/// How many times an append goes back to the table after a conflict before giving up.
pub const MAX_COMMIT_ATTEMPTS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("invalid lake location {0:?}: {1}")]
    Location(String, String),
    #[error("Delta table {uri}: {source}")]
    Delta { uri: String, source: DeltaTableError },
    #[error("could not build the record batch: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    #[error("Delta table {uri}: still conflicting after {attempts} commit attempts")]
    Contended { uri: String, attempts: u32 },
    #[error("Delta table {uri}: progress of {key} is unreadable: {detail}")]
    Progress { uri: String, key: String, detail: String },
}

/// Where the Delta tables live: an `s3://bucket/prefix` URI or a local directory.
#[derive(Debug, Clone)]
pub struct Lake {
    root: String,
    storage_options: HashMap<String, String>,
}

impl Lake {
    /// A lake at `root`: `s3://bucket/prefix`, `file:///path` or a plain local path.
    /// S3 credentials and endpoint come from the usual `AWS_*` environment variables.
    pub fn new(root: impl Into<String>) -> Self {
        s3::register();
        let root = root.into().trim_end_matches('/').to_string();
        Self { root, storage_options: HashMap::new() }
    }

    /// Extra delta-rs storage options (e.g. `AWS_ENDPOINT_URL`), on top of the environment.
    pub fn with_storage_options(mut self, options: HashMap<String, String>) -> Self {
        self.storage_options = options;
        self
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// The URL of the table `name` in this lake.
    pub fn table_url(&self, name: &str) -> Result<Url, LakeError> {
        let location = format!("{}/{name}", self.root);
        let bad = |e: String| LakeError::Location(location.clone(), e);
        if location.contains("://") {
            Url::parse(&format!("{location}/")).map_err(|e| bad(e.to_string()))
        } else {
            // A local directory: delta-rs wants it to exist and be absolute.
            deltalake::ensure_table_uri(&location).map_err(|e| bad(e.to_string()))
        }
    }

    fn builder(&self, url: Url) -> Result<DeltaTable, DeltaTableError> {
        DeltaTableBuilder::from_url(url)?.with_storage_options(self.storage_options.clone()).build()
    }

    /// Opens the table `name`, or `None` if there is no table there yet.
    pub async fn open(&self, name: &str) -> Result<Option<DeltaTable>, LakeError> {
        let url = self.table_url(name)?;
        let delta = |source| LakeError::Delta { uri: url.to_string(), source };
        let mut table = self.builder(url.clone()).map_err(delta)?;
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(delta(e)),
        }
    }

    /// Opens the table `name`, creating it with `schema` if it does not exist yet. Safe when
    /// several writers create the same table at once: the losers open the winner's table.
    pub async fn open_or_create(&self, name: &str, schema: &SchemaRef) -> Result<DeltaTable, LakeError> {
        if let Some(table) = self.open(name).await? {
            return Ok(table);
        }
        let url = self.table_url(name)?;
        let delta = |source| LakeError::Delta { uri: url.to_string(), source };
        let columns: StructType = schema.as_ref().try_into_kernel().map_err(|e| delta(e.into()))?;
        let created = self
            .builder(url.clone())
            .map_err(delta)?
            .create()
            .with_table_name(name)
            .with_comment(format!("pinpipe table {name}"))
            .with_columns(columns.fields().cloned())
            .with_configuration_property(TableProperty::DataSkippingStatsColumns, Some(stats_columns(schema)))
            .await;
        match created {
            Ok(table) => Ok(table),
            // Lost a creation race: the table exists now, so open it.
            Err(create_error) => match self.open(name).await {
                Ok(Some(table)) => Ok(table),
                _ => Err(delta(create_error)),
            },
        }
    }
}

/// The columns whose statistics a table keeps (`delta.dataSkippingStatsColumns`): all but the
/// binary ones. delta-rs keeps no min/max for a binary column (the quarantine's raw bytes) and
/// says so in a WARN line per written file, which tells an operator nothing; naming the columns
/// that do have statistics keeps that line out of every quarantine commit.
fn stats_columns(schema: &SchemaRef) -> String {
    use deltalake::arrow::datatypes::DataType;
    let kept = schema.fields().iter().filter(|f| !matches!(f.data_type(), DataType::Binary | DataType::LargeBinary));
    kept.map(|f| f.name().as_str()).collect::<Vec<_>>().join(",")
}

impl Lake {
    /// Every row of the table `name`, read straight from its Parquet files (no query engine),
    /// as one batch; `None` if there is no table. Meant for small tables: summaries and checks.
    pub async fn read_all(&self, name: &str) -> Result<Option<RecordBatch>, LakeError> {
        use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
        use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use object_store::ObjectStoreExt as _;
        let Some(table) = self.open(name).await? else { return Ok(None) };
        let uri = table.table_url().to_string();
        let delta = |source: DeltaTableError| LakeError::Delta { uri: uri.clone(), source };
        let snapshot = table.snapshot().map_err(delta)?;
        let schema: deltalake::arrow::datatypes::Schema = snapshot
            .schema()
            .as_ref()
            .try_into_arrow()
            .map_err(|e: deltalake::arrow::error::ArrowError| delta(e.into()))?;
        let store = table.object_store();
        let mut batches = Vec::new();
        for file in snapshot.log_data() {
            let path = deltalake::Path::parse(file.path())
                .map_err(|e| delta(DeltaTableError::GenericError { source: Box::new(e) }))?;
            let bytes =
                store.get(&path).await.map_err(|e| delta(e.into()))?.bytes().await.map_err(|e| delta(e.into()))?;
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.build()).map_err(|e| delta(e.into()))?;
            for batch in reader {
                batches.push(batch?);
            }
        }
        Ok(Some(deltalake::arrow::compute::concat_batches(&std::sync::Arc::new(schema), &batches)?))
    }

    /// How many rows the table `name` holds, from the log's file statistics; `None` if there is
    /// no table.
    pub async fn count_rows(&self, name: &str) -> Result<Option<u64>, LakeError> {
        let Some(table) = self.open(name).await? else { return Ok(None) };
        let snapshot =
            table.snapshot().map_err(|source| LakeError::Delta { uri: table.table_url().to_string(), source })?;
        Ok(Some(snapshot.log_data().into_iter().map(|f| f.num_records().unwrap_or(0) as u64).sum()))
    }
}

/// A position in a source, as a decimal of up to 128 digits (a Kinesis sequence number, a Kafka
/// offset). Ordered by value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Position(String);

impl Position {
    /// Parses a decimal position; leading zeros are dropped.
    pub fn parse(s: &str) -> Option<Position> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = s.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        (digits.len() <= MAX_DIGITS).then(|| Position(digits.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn to_chunks(&self) -> [i64; CHUNKS] {
        let padded = format!("{:0>width$}", self.0, width = MAX_DIGITS);
        std::array::from_fn(|i| {
            padded[i * CHUNK_DIGITS..(i + 1) * CHUNK_DIGITS].parse().expect("16 ASCII digits fit an i64")
        })
    }

    fn from_chunks(chunks: &[i64]) -> Option<Position> {
        let mut digits = String::with_capacity(MAX_DIGITS);
        for &chunk in chunks {
            if !(0..10i64.pow(CHUNK_DIGITS as u32)).contains(&chunk) {
                return None;
            }
            digits.push_str(&format!("{chunk:0>CHUNK_DIGITS$}"));
        }
        Position::parse(&digits)
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.len(), &self.0).cmp(&(other.0.len(), &other.0))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A source whose progress a table records, and how its positions are stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKey {
    /// Positions of up to 128 digits (Kinesis sequence numbers), in [`CHUNKS`] `txn` entries.
    Sequence(String),
    /// Positions that fit an `i64` (Kafka offsets), in one `txn` entry.
    Offset(String),
}

impl SourceKey {
    pub fn id(&self) -> &str {
        match self {
            SourceKey::Sequence(id) | SourceKey::Offset(id) => id,
        }
    }

    fn app_ids(&self) -> Vec<String> {
        match self {
            SourceKey::Sequence(id) => (0..CHUNKS).map(|i| format!("{id}#{i}")).collect(),
            SourceKey::Offset(id) => vec![id.clone()],
        }
    }

    fn encode(&self, position: &Position) -> Option<Vec<i64>> {
        match self {
            SourceKey::Sequence(_) => Some(position.to_chunks().to_vec()),
            SourceKey::Offset(_) => position.0.parse::<i64>().ok().map(|v| vec![v]),
        }
    }

    fn decode(&self, versions: &[i64]) -> Option<Position> {
        match self {
            SourceKey::Sequence(_) => Position::from_chunks(versions),
            SourceKey::Offset(_) => versions.first().filter(|v| **v >= 0).and_then(|v| Position::parse(&v.to_string())),
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The position the table has recorded for the source `key`, if any.
pub async fn committed_position(table: &DeltaTable, key: &SourceKey) -> Result<Option<Position>, LakeError> {
    let uri = table.table_url().to_string();
    let delta = |source| LakeError::Delta { uri: uri.clone(), source };
    let snapshot = table.snapshot().map_err(delta)?;
    let log_store = table.log_store();
    let lookups = key.app_ids().into_iter().map(|app_id| snapshot.transaction_version(log_store.as_ref(), app_id));
    let versions: Vec<Option<i64>> = try_join_all(lookups).await.map_err(delta)?;
    if versions.iter().all(Option::is_none) {
        return Ok(None);
    }
    let unreadable =
        |detail: &str| LakeError::Progress { uri: uri.clone(), key: key.to_string(), detail: detail.to_string() };
    let versions: Vec<i64> =
        versions.into_iter().collect::<Option<_>>().ok_or_else(|| unreadable("some chunks are missing"))?;
    key.decode(&versions).map(Some).ok_or_else(|| unreadable("a version is out of range"))
}

/// One item to append, with the source key and position it came from.
#[derive(Debug, Clone)]
pub struct Marked<T> {
    pub key: SourceKey,
    pub position: Position,
    pub item: T,
}

/// What an exactly-once append did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The commit's table version, if anything was committed.
    pub version: Option<u64>,
    pub rows_written: usize,
    /// Items the table already held: an earlier delivery of the same records committed them
    /// (a retry after a lost answer, a timeout after the commit, a batch Lambda split), so they
    /// are not written again. Each source has one writer, so these are never another source's.
    pub already_committed: usize,
    pub attempts: u32,
}

/// Appends `items` to `table` in one commit, skipping every item at or below the position the
/// table already recorded for its key, and recording for each key the highest position in
/// `items` (see the module docs). `build` turns the items still to write into one batch.
pub async fn append_exactly_once<T>(
    table: &mut DeltaTable,
    items: &[Marked<T>],
    app_metadata: serde_json::Map<String, serde_json::Value>,
    build: impl Fn(&[&T]) -> Result<RecordBatch, LakeError>,
) -> Result<AppendOutcome, LakeError> {
    let uri = table.table_url().to_string();
    let delta = |source| LakeError::Delta { uri: uri.clone(), source };
    let mut highest: BTreeMap<&SourceKey, &Position> = BTreeMap::new();
    for m in items {
        let entry = highest.entry(&m.key).or_insert(&m.position);
        if m.position > **entry {
            *entry = &m.position;
        }
    }
    for attempt in 1..=MAX_COMMIT_ATTEMPTS {
        if attempt > 1 {
            table.update_state().await.map_err(delta)?;
        }
        let read_version = table.version();
        let known = read_version.and_then(|v| known_progress(&uri, v));
        let mut committed = HashMap::new();
        for key in highest.keys() {
            let position = match known.as_ref().and_then(|k| k.get(*key)) {
                Some(position) => position.clone(),
                None => committed_position(table, key).await?,
            };
            committed.insert(*key, position);
        }
        let is_new = |m: &Marked<T>| committed[&m.key].as_ref().is_none_or(|done| m.position > *done);
        let fresh: Vec<&T> = items.iter().filter(|m| is_new(m)).map(|m| &m.item).collect();
        if fresh.is_empty() {
            return Ok(AppendOutcome { version: None, rows_written: 0, already_committed: items.len(), attempts: attempt });
        }
        let mut txns = Vec::new();
        for (key, top) in &highest {
            if committed[*key].as_ref().is_some_and(|done| *top <= done) {
                continue;
            }
            let versions = key.encode(top).ok_or_else(|| LakeError::Progress {
                uri: uri.clone(),
                key: key.to_string(),
                detail: format!("position {top} does not fit an i64"),
            })?;
            txns.extend(key.app_ids().into_iter().zip(versions).map(|(app_id, v)| Transaction::new(app_id, v)));
        }
        let properties =
            CommitProperties::default().with_application_transactions(txns).with_metadata(app_metadata.clone());
        let batch = build(&fresh)?;
        let mut writer = RecordBatchWriter::for_table(table).map_err(delta)?.with_commit_properties(properties);
        writer.write(batch).await.map_err(delta)?;
        match writer.flush_and_commit(table).await {
            Ok(version) => {
                remember_progress(&uri, read_version, version, known, &committed, &highest);
                return Ok(AppendOutcome {
                    version: Some(version),
                    rows_written: fresh.len(),
                    already_committed: items.len() - fresh.len(),
                    attempts: attempt,
                });
            }
            Err(e) if is_conflict(&e) => {
                tracing::warn!(table = %uri, attempt, error = %e, "commit conflict; reloading and retrying");
                tokio::time::sleep(COMMIT_BACKOFF.delay(attempt)).await;
            }
            Err(e) => return Err(delta(e)),
        }
    }
    Err(LakeError::Contended { uri, attempts: MAX_COMMIT_ATTEMPTS })
}

/// Progress per source as of a table version, for tables this process committed to.
type KnownProgress = HashMap<SourceKey, Option<Position>>;

/// Per table: the version of this process's last commit and the positions it knew then. While a
/// table is still at that version nobody else has committed since, so these are what its log
/// says, and a warm consumer skips reading 8 `txn` entries a shard (each a log replay). At any
/// other version the log is read.
static KNOWN_PROGRESS: std::sync::LazyLock<std::sync::Mutex<HashMap<String, (u64, KnownProgress)>>> =
    std::sync::LazyLock::new(Default::default);

/// More sources than a warm process should keep positions of (batch ingest has one per object).
const MAX_KNOWN_SOURCES: usize = 10_000;

fn known_progress(uri: &str, version: u64) -> Option<KnownProgress> {
    let known = KNOWN_PROGRESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    known.get(uri).filter(|(at, _)| *at == version).map(|(_, progress)| progress.clone())
}

/// Records what a commit at `version` leaves each source at. Positions read at `read_version`
/// still hold only if the commit came right after it (delta-rs may have rebased the commit over
/// other writers' commits, which could have moved other sources).
fn remember_progress(
    uri: &str,
    read_version: Option<u64>,
    version: u64,
    known: Option<KnownProgress>,
    committed: &HashMap<&SourceKey, Option<Position>>,
    highest: &BTreeMap<&SourceKey, &Position>,
) {
    let mut progress = KnownProgress::new();
    if read_version.is_some_and(|v| v + 1 == version) {
        progress.extend(known.unwrap_or_default());
        progress.extend(committed.iter().map(|(key, position)| ((*key).clone(), position.clone())));
    }
    for (key, top) in highest {
        if committed[key].as_ref().is_none_or(|done| *top > done) {
            progress.insert((*key).clone(), Some((*top).clone()));
        }
    }
    if progress.len() > MAX_KNOWN_SOURCES {
        progress.clear();
    }
    let mut known = KNOWN_PROGRESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    known.insert(uri.to_string(), (version, progress));
}

/// S3 for delta-rs without the AWS SDK.
///
/// deltalake's own `s3` feature resolves credentials with the AWS SDK, which brings its own HTTP
/// stacks and TLS library beside object_store's: most of a function's size. pinpipe registers
/// object_store's S3 client instead, configured from the `AWS_*` environment (Lambda's
/// credentials, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`) and the lake's storage
/// options, with delta-rs' default log store: commits are conditional PUTs
/// (`If-None-Match: *`), which S3 supports and which need no lock table.
pub mod s3 {
    use std::str::FromStr;
    use std::sync::{Arc, Once};

    use deltalake::logstore::{
        LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
        logstore_factories, object_store_factories,
    };
    use deltalake::{DeltaResult, DeltaTableError, Path};
    use object_store::ObjectStoreScheme;
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use url::Url;

    #[derive(Debug, Default)]
    struct S3Factory;

    impl ObjectStoreFactory for S3Factory {
        fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, Path)> {
            let mut builder = AmazonS3Builder::from_env().with_url(url.to_string()).with_retry(config.retry.clone());
            // Keys object_store does not know (delta-rs' own, such as `max_retries`) are not for it.
            for (key, value) in &config.raw {
                if let Ok(key) = AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()) {
                    builder = builder.with_config(key, value.clone());
                }
            }
            let (_, path) =
                ObjectStoreScheme::parse(url).map_err(|e| DeltaTableError::GenericError { source: Box::new(e) })?;
            Ok((Arc::new(builder.build()?), Path::parse(path)?))
        }
    }

    impl LogStoreFactory for S3Factory {
        fn with_options(
            &self,
            prefixed_store: ObjectStoreRef,
            root_store: ObjectStoreRef,
            location: &Url,
            options: &StorageConfig,
        ) -> DeltaResult<Arc<dyn LogStore>> {
            Ok(default_logstore(prefixed_store, root_store, location, options))
        }
    }

    /// Makes `s3://` and `s3a://` lakes openable; [`super::Lake::new`] calls it.
    pub fn register() {
        static REGISTERED: Once = Once::new();
        REGISTERED.call_once(|| {
            let factory = Arc::new(S3Factory);
            for scheme in ["s3", "s3a"] {
                let url = Url::parse(&format!("{scheme}://")).expect("a scheme is a URL");
                object_store_factories().insert(url.clone(), factory.clone());
                logstore_factories().insert(url, factory.clone());
            }
        });
    }
}

/// Whether a failed commit lost a race (and may succeed after reloading the table).
pub fn is_conflict(error: &DeltaTableError) -> bool {
    matches!(
        error,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_)
                    | TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_)
            }
    )
}

/// The pause after conflicting commit attempt n: full jitter up to 100 ms, 200 ms, 400 ms, ...
/// (100 ms · 2^(n-1)), capped at 2 s.
pub const COMMIT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tables_keep_statistics_for_every_column_but_binary_ones() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        let table = lake.open_or_create("quarantine", &crate::schema::quarantine_schema()).await.unwrap();
        let snapshot = table.snapshot().unwrap();
        let stats = snapshot.metadata().configuration().get("delta.dataSkippingStatsColumns").cloned();
        assert_eq!(stats.as_deref(), Some("table,source,position,raw_text,reason,quarantined_at"));
    }

    #[test]
    fn positions_compare_by_value_not_by_text() {
        let p = |s| Position::parse(s).unwrap();
        assert!(p("10") > p("9"));
        assert!(p("0009") < p("10"));
        assert_eq!(p("007"), p("7"));
        let kinesis = "49590338271490256608559692538361571095921575989136588898";
        assert!(p(kinesis) > p("49590338271490256608559692538361571095921575989136588897"));
        assert_eq!(Position::parse(""), None);
        assert_eq!(Position::parse("12a"), None);
        assert_eq!(Position::parse(&"9".repeat(129)), None);
        assert!(Position::parse(&"9".repeat(128)).is_some());
    }

    #[test]
    fn positions_round_trip_through_txn_chunks() {
        for s in
            ["0", "1", "49590338271490256608559692538361571095921575989136588898", &"9".repeat(128), "1000000000000000"]
        {
            let p = Position::parse(s).unwrap();
            let chunks = p.to_chunks();
            assert!(chunks.iter().all(|c| *c >= 0));
            assert_eq!(Position::from_chunks(&chunks), Some(p), "{s}");
        }
        assert_eq!(Position::from_chunks(&[-1, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(COMMIT_BACKOFF.ceiling(1), Duration::from_millis(100));
        for attempt in 0..20 {
            assert!(COMMIT_BACKOFF.delay(attempt) <= Duration::from_secs(2));
        }
    }

    #[test]
    fn local_tables_live_under_the_root_directory() {
        let dir = std::env::temp_dir().join(format!("pinpipe-lake-{}", std::process::id()));
        let lake = Lake::new(dir.to_str().unwrap());
        let url = lake.table_url("pin").unwrap();
        assert_eq!(url.scheme(), "file");
        assert!(url.path().trim_end_matches('/').ends_with("/pin"), "{url}");
        let s3 = Lake::new("s3://bucket/lake/").table_url("geo").unwrap();
        assert_eq!(s3.as_str(), "s3://bucket/lake/geo/");
        std::fs::remove_dir_all(dir).ok();
    }
}
