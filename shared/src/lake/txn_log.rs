//! Every source's progress in one read of the log, for an appender's cold lookups.
//!
//! delta-rs looks a `txn` entry up one app id at a time, each lookup a replay of the last
//! checkpoint and the commits after it; a Kinesis position is eight entries (see
//! [`super::progress`]), so one cold lookup was eight replays: on S3 over a thousand requests and
//! seconds at a checkpoint's distance, and again after every reload of a busy table. Here the
//! last checkpoint's `txn` column and the commits after it are read once, for every app id.
//!
//! Only the classic single-file checkpoint delta-rs writes is read; for anything else (a
//! multi-part or V2 checkpoint, a log with a commit missing) the answer is "cannot tell" and the
//! caller falls back to delta-rs' own lookups.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, Int64Array, StringArray, StructArray};
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::ObjectStoreExt as _;
use object_store::path::Path;

/// Commits read at once.
const CONCURRENT_READS: usize = 16;

/// Why the log could not be read in one pass; the caller then looks entries up the slow way.
#[derive(Debug, thiserror::Error)]
pub enum TxnLogError {
    #[error("reading {path}: {source}")]
    Store { path: String, source: object_store::Error },
    #[error("{path}: {detail}")]
    Unreadable { path: String, detail: String },
    #[error("{0}")]
    Unsupported(String),
}

/// The `txn` versions by app id as of version `at` of `table`: the last checkpoint at or below
/// `at` (if `_last_checkpoint` names one), then the commits after it up to `at`. An entry the
/// checkpoint dropped as expired (`delta.setTransactionRetentionDuration`) is absent, as it is
/// for delta-rs.
pub async fn txn_versions(table: &DeltaTable, at: u64) -> Result<HashMap<String, i64>, TxnLogError> {
    let store = table.log_store().object_store(None);
    let mut versions = HashMap::new();
    let checkpoint = last_checkpoint(&store).await?.filter(|v| *v <= at);
    if let Some(version) = checkpoint {
        let path = Path::from(format!("_delta_log/{version:020}.checkpoint.parquet"));
        let bytes = get(&store, &path).await?;
        read_checkpoint_txns(&path, bytes, &mut versions)?;
    }
    let first = checkpoint.map_or(0, |v| v + 1);
    let commits: Vec<(u64, bytes::Bytes)> = futures::stream::iter(first..=at)
        .map(|version| {
            let store = store.clone();
            async move {
                let path = Path::from(format!("_delta_log/{version:020}.json"));
                get(&store, &path).await.map(|bytes| (version, bytes))
            }
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    for (version, bytes) in commits {
        read_commit_txns(version, &bytes, &mut versions)?;
    }
    Ok(versions)
}

async fn get(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<bytes::Bytes, TxnLogError> {
    let store_error = |source| TxnLogError::Store { path: path.to_string(), source };
    store.get(path).await.map_err(store_error)?.bytes().await.map_err(store_error)
}

/// The version `_delta_log/_last_checkpoint` names, if there is one.
async fn last_checkpoint(store: &Arc<dyn ObjectStore>) -> Result<Option<u64>, TxnLogError> {
    let path = Path::from("_delta_log/_last_checkpoint");
    let bytes = match get(store, &path).await {
        Ok(bytes) => bytes,
        Err(TxnLogError::Store { source: object_store::Error::NotFound { .. }, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let hint: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| TxnLogError::Unreadable { path: path.to_string(), detail: e.to_string() })?;
    if hint.get("parts").is_some_and(|p| !p.is_null()) || hint.get("v2Checkpoint").is_some_and(|p| !p.is_null()) {
        return Err(TxnLogError::Unsupported(format!("{path}: not a single-file classic checkpoint")));
    }
    let version = hint["version"]
        .as_u64()
        .ok_or_else(|| TxnLogError::Unreadable { path: path.to_string(), detail: "no version".into() })?;
    Ok(Some(version))
}

/// Adds the checkpoint's `txn` rows (only its `txn.appId` and `txn.version` columns are decoded).
fn read_checkpoint_txns(
    path: &Path,
    bytes: bytes::Bytes,
    versions: &mut HashMap<String, i64>,
) -> Result<(), TxnLogError> {
    let unreadable = |detail: String| TxnLogError::Unreadable { path: path.to_string(), detail };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| unreadable(e.to_string()))?;
    if builder.schema().field_with_name("txn").is_err() {
        return Ok(()); // a checkpoint of a table that never recorded progress
    }
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["txn.appId", "txn.version"]);
    let reader = builder.with_projection(mask).build().map_err(|e| unreadable(e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(e.to_string()))?;
        let txn = batch
            .column_by_name("txn")
            .and_then(|c| c.as_any().downcast_ref::<StructArray>())
            .ok_or_else(|| unreadable("the txn column is not a struct".into()))?;
        let app_ids = txn.column_by_name("appId").and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let txn_versions = txn.column_by_name("version").and_then(|c| c.as_any().downcast_ref::<Int64Array>());
        let (Some(app_ids), Some(txn_versions)) = (app_ids, txn_versions) else {
            return Err(unreadable("txn.appId or txn.version has an unexpected type".into()));
        };
        for i in (0..txn.len()).filter(|i| txn.is_valid(*i)) {
            if app_ids.is_valid(i) && txn_versions.is_valid(i) {
                versions.insert(app_ids.value(i).to_string(), txn_versions.value(i));
            }
        }
    }
    Ok(())
}

/// What a commit does to the things an appender tracks.
pub(super) struct CommitSummary {
    /// Its `txn` actions: app id and version.
    pub txns: Vec<(String, i64)>,
    /// Whether it changes the schema, the properties or the protocol (`metaData`, `protocol`).
    pub reshapes: bool,
    /// The paths of the files it adds.
    pub adds: Vec<String>,
}

/// Reads one commit (newline-delimited JSON actions).
pub(super) fn summarize_commit(version: u64, bytes: &[u8]) -> Result<CommitSummary, TxnLogError> {
    let unreadable =
        |detail: String| TxnLogError::Unreadable { path: format!("_delta_log/{version:020}.json"), detail };
    let mut summary = CommitSummary { txns: Vec::new(), reshapes: false, adds: Vec::new() };
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
        let action: serde_json::Value = serde_json::from_slice(line).map_err(|e| unreadable(e.to_string()))?;
        if let Some(txn) = action.get("txn") {
            let (Some(app_id), Some(v)) = (txn["appId"].as_str(), txn["version"].as_i64()) else {
                return Err(unreadable("a txn action without appId or version".into()));
            };
            summary.txns.push((app_id.to_string(), v));
        }
        if let Some(path) = action.get("add").and_then(|add| add["path"].as_str()) {
            summary.adds.push(path.to_string());
        }
        summary.reshapes |= action.get("metaData").is_some() || action.get("protocol").is_some();
    }
    Ok(summary)
}

/// Adds the `txn` actions of one commit; later commits win.
fn read_commit_txns(version: u64, bytes: &[u8], versions: &mut HashMap<String, i64>) -> Result<(), TxnLogError> {
    versions.extend(summarize_commit(version, bytes)?.txns);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::{Lake, Marked, Position, SourceKey, TableAppender, committed_position};
    use deltalake::arrow::array::Int64Array;
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    fn schema() -> deltalake::arrow::datatypes::SchemaRef {
        Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]))
    }

    async fn append(appender: &mut TableAppender, key: &SourceKey, position: &str) {
        let item = Marked { key: key.clone(), position: Position::parse(position).unwrap(), item: 1i64 };
        let build = |rows: &[&i64]| {
            let values: Vec<i64> = rows.iter().map(|v| **v).collect();
            Ok(RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values))])?)
        };
        appender.append(&[item], serde_json::Map::new(), build).await.unwrap();
    }

    #[tokio::test]
    async fn one_read_finds_what_delta_rs_finds_entry_by_entry_across_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap());
        let table = lake.open_or_create("t", &schema()).await.unwrap();
        let mut appender = TableAppender::new(table).unwrap();
        let shard = SourceKey::Sequence("kinesis/s/shard-0".into());
        let object = SourceKey::Offset("kafka/t/0/42".into());
        append(&mut appender, &shard, "49590338271490256608559692538361571095921575989136588898").await;
        append(&mut appender, &object, "50").await;
        deltalake::checkpoints::create_checkpoint(&lake.open("t").await.unwrap().unwrap(), None).await.unwrap();
        append(&mut appender, &shard, "49590338271490256608559692538361571095921575989136588999").await;

        let table = lake.open("t").await.unwrap().unwrap();
        let at = table.version().unwrap() as u64;
        let versions = txn_versions(&table, at).await.unwrap();
        for key in [&shard, &object] {
            let ids = key.app_ids();
            let ours: Vec<i64> = ids.iter().map(|id| versions[id]).collect();
            assert_eq!(key.decode(&ours), committed_position(&table, key).await.unwrap(), "{key}");
        }
        assert_eq!(
            key_position(&versions, &shard),
            Position::parse("49590338271490256608559692538361571095921575989136588999")
        );
        // As of the version before the last commit: the checkpoint's value.
        let before = txn_versions(&table, at - 1).await.unwrap();
        assert_eq!(
            key_position(&before, &shard),
            Position::parse("49590338271490256608559692538361571095921575989136588898")
        );
    }

    fn key_position(versions: &HashMap<String, i64>, key: &SourceKey) -> Option<Position> {
        let chunks: Option<Vec<i64>> = key.app_ids().iter().map(|id| versions.get(id).copied()).collect();
        key.decode(&chunks?)
    }
}
