//! The Delta Lake side of pinpipe: where the tables live, creating them, and appending to them
//! exactly once.
//!
//! - this module: the [`Lake`] (an `s3://` prefix or a local directory), opening and creating
//!   its tables, small reads for summaries;
//! - [`progress`]: how far each source has landed in a table, stored in the table's own log
//!   (`txn` actions), and read back — the exactly-once state, isolated with its own types;
//! - [`append`]: [`TableAppender`], which appends a batch and advances its sources' progress in
//!   one Delta commit, at a cost that does not grow with the table, and shares the log with
//!   other writers (reads on to the head after a lost race, checkpoints in the background);
//! - [`intents`]: group commits — appends that lose races are published, and the next
//!   contended writer's commit carries them;
//! - [`file_layout`]: the Parquet files' writer properties (Snappy; dictionaries only where
//!   values repeat), the same for every writer of a table;
//! - [`txn_log`]: every source's progress in one read of the last checkpoint and the commits
//!   after it, for an appender's cold lookups;
//! - [`scan`]: chosen columns of a table's rows, read from its Parquet files without a query
//!   engine (the Lambdas have none);
//! - [`s3`]: S3 for delta-rs through object_store, without the AWS SDK.

use std::collections::HashMap;

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use url::Url;

pub mod append;
pub mod file_layout;
pub mod intents;
pub mod progress;
pub mod s3;
pub mod scan;
pub mod txn_log;

/// `delta.setTransactionRetentionDuration` of the tables pinpipe creates.
pub const TXN_RETENTION: &str = "interval 7 days";

pub use append::{
    AppendOutcome, COMMIT_BACKOFF, MAX_COMMIT_ATTEMPTS, TableAppender, is_conflict, settle_background_checkpoints,
};
pub use progress::{CHUNKS, Marked, Position, SourceKey, committed_position};

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
    #[error("Delta table {uri}: group-commit intents: {source}")]
    Intents { uri: String, source: Box<intents::IntentError> },
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
        let mut attempt = 1;
        loop {
            match table.load().await {
                Ok(()) => return Ok(Some(table)),
                Err(DeltaTableError::NotATable(_)) => return Ok(None),
                Err(e) if is_listing_gap(&e) && attempt < LOAD_ATTEMPTS => {
                    tracing::debug!(table = %url, attempt, error = %e, "the log listing raced a commit; listing again");
                    tokio::time::sleep(LISTING_RETRY_PAUSE.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(delta(e)),
            }
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
            // Progress (`txn`) of a source silent for a week is dropped at the next checkpoint:
            // longer than Kinesis keeps records by default (24 h) and than S3 redelivers an event
            // (6 h in the template), so no delivery can still come for it (docs/deploy.md).
            .with_configuration_property(TableProperty::SetTransactionRetentionDuration, Some(TXN_RETENTION))
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

/// How many times a table load lists the log when the listing raced a commit. A table
/// written many times a second (8 writers on local disk: 160 commits a second) can race
/// several listings in a row; each retry waits [`LISTING_RETRY_PAUSE`] first.
pub(crate) const LOAD_ATTEMPTS: u32 = 10;

/// The pause before listing the log again after a listing raced a commit.
pub(crate) const LISTING_RETRY_PAUSE: crate::backoff::Backoff =
    crate::backoff::Backoff::new(std::time::Duration::from_millis(5), std::time::Duration::from_millis(100));

/// Whether a failed load saw the log in the middle of other writers' commits: a listing of
/// `_delta_log` is no snapshot (a local directory lists in hash order, S3 page by page), so a
/// listing taken while versions N and N+1 are written can hold N+1 without N, and delta-rs
/// refuses the gap. A second listing sees both. delta-rs reports it only as kernel error text.
pub(crate) fn is_listing_gap(error: &DeltaTableError) -> bool {
    error.to_string().contains("Expected contiguous commit files")
}

/// Adds to `table` the columns of `schema` it lacks, nullable, after its own: one Delta
/// `ADD COLUMNS` commit (a `metaData` action with the wider schema), which readers of the table
/// follow, old files reading as null in the new columns. Nothing is written when the table has
/// them all, so it is safe to call on every open. Safe when writers race to add the same
/// column: the loser's commit conflicts with the winner's metadata change, and it reloads the
/// table and finds the column there. Returns the table as it now is.
///
/// Only for columns a table gains at its end (see `schema::table_schema`): a column of `schema`
/// that is not nullable cannot be given to rows already written, and is refused.
pub async fn add_missing_columns(mut table: DeltaTable, schema: &SchemaRef) -> Result<DeltaTable, LakeError> {
    let uri = table.table_url().to_string();
    let delta = |source| LakeError::Delta { uri: uri.clone(), source };
    let wanted: StructType = schema.as_ref().try_into_kernel().map_err(|e| delta(e.into()))?;
    for attempt in 1..=MAX_COMMIT_ATTEMPTS {
        let current = table.snapshot().map_err(delta)?.schema();
        let missing: Vec<_> = wanted.fields().filter(|f| current.field(f.name()).is_none()).cloned().collect();
        if missing.is_empty() {
            return Ok(table);
        }
        if let Some(required) = missing.iter().find(|f| !f.is_nullable()) {
            let why =
                format!("column {} is not nullable, so rows already in the table cannot have it", required.name());
            return Err(delta(DeltaTableError::Generic(why)));
        }
        let names: Vec<&str> = missing.iter().map(|f| f.name().as_str()).collect();
        match table.clone().add_columns().with_fields(missing.clone()).await {
            Ok(evolved) => {
                tracing::info!(table = %uri, columns = ?names, version = ?evolved.version(), "added columns to the table");
                return Ok(evolved);
            }
            Err(e) if is_conflict(&e) => {
                tracing::info!(table = %uri, attempt, error = %e, "another writer changed the table first; reloading it");
                tokio::time::sleep(COMMIT_BACKOFF.delay(attempt)).await;
                table.update_state().await.map_err(delta)?;
            }
            Err(e) => return Err(delta(e)),
        }
    }
    Err(LakeError::Contended { uri, attempts: MAX_COMMIT_ATTEMPTS })
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
                batches.push(with_table_columns(&schema, batch?)?);
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

/// `batch`, read from one of a table's files, with the table's columns (`schema`): a file
/// written before the table gained a column (see [`add_missing_columns`]) reads as null in it.
/// For whatever reads a table's Parquet files itself: [`Lake::read_all`], compaction.
pub(crate) fn with_table_columns(
    schema: &deltalake::arrow::datatypes::Schema,
    batch: RecordBatch,
) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    if batch.schema().fields().len() == schema.fields().len() {
        return Ok(batch);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => column.clone(),
            None => deltalake::arrow::array::new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(std::sync::Arc::new(schema.clone()), columns)
}

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
        assert_eq!(stats.as_deref(), Some("table,source,position,raw_text,reason,quarantined_at,rules_version"));
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
