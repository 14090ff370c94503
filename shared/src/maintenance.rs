//! Table maintenance: many small appends are this pipeline's normal load (one commit per Lambda
//! batch), so without upkeep a table grows a file per batch and a log entry per batch, and every
//! open gets slower. One maintenance run, per table:
//!
//! 1. **Compaction** rewrites small files into files of about the target size, in one commit that
//!    removes the small files and adds the big ones with `dataChange = false`. It never needs
//!    DataFusion: it reads Parquet and writes through the same writer as the appends. The work per
//!    run is bounded (bytes read), so a run fits a Lambda time limit; the next run goes on.
//!    Appends running at the same time do not conflict with it: they only add files.
//! 2. **Checkpoint** when the log has grown since the last one, so opening the table reads one
//!    Parquet checkpoint and a few JSON commits rather than the whole log.
//! 3. **Log cleanup** of commit files older than the table's log retention, before the checkpoint.
//! 4. **Vacuum** of files no longer referenced and older than the retention period, including
//!    files of appends that failed before committing.

use std::time::{Duration, Instant};

use deltalake::kernel::Action;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError, Path};
use object_store::ObjectStoreExt as _;

use crate::lake::{Lake, LakeError};
use crate::table::{QUARANTINE_TABLE, REDRIVES_TABLE, Table};

/// How much work one maintenance run may do.
#[derive(Debug, Clone)]
pub struct MaintenancePolicy {
    /// Size of the files compaction writes; files under half of it count as small.
    pub target_file_size: u64,
    /// Compact only when at least this many small files have gathered.
    pub min_small_files: usize,
    /// Read at most this many bytes of small files per run.
    pub max_bytes_per_run: u64,
    /// Vacuum files unreferenced for longer than this.
    pub vacuum_retention: Duration,
}

impl Default for MaintenancePolicy {
    fn default() -> Self {
        Self {
            target_file_size: 128 * 1024 * 1024,
            min_small_files: 8,
            max_bytes_per_run: 512 * 1024 * 1024,
            vacuum_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What one run did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MaintenanceReport {
    pub table: String,
    pub version: Option<u64>,
    pub files_before: usize,
    pub files_after: usize,
    pub files_compacted: usize,
    pub files_written: usize,
    pub checkpoint_version: Option<u64>,
    pub logs_cleaned: usize,
    pub files_vacuumed: usize,
    /// Group-commit intents abandoned for longer than a Lambda invocation lasts, deleted.
    pub intents_swept: usize,
    pub duration_ms: u64,
}

/// What one run did to one table of the lake.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum TableMaintenance {
    Maintained(MaintenanceReport),
    /// The table has not been written yet.
    Skipped {
        table: String,
        skipped: &'static str,
    },
    Failed {
        table: String,
        error: String,
    },
}

/// Maintains every table of the lake: the three clean tables, the quarantine and the redrive
/// ledger. One table's
/// failure must not starve the others, so it is logged and reported, and the run goes on.
pub async fn maintain_lake(lake: &Lake, policy: &MaintenancePolicy) -> Vec<TableMaintenance> {
    let mut outcomes = Vec::new();
    for name in Table::ALL.iter().map(|t| t.name()).chain([QUARANTINE_TABLE, REDRIVES_TABLE]) {
        let outcome = match maintain(lake, name, policy).await {
            Ok(Some(report)) => {
                tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "table maintained");
                TableMaintenance::Maintained(report)
            }
            Ok(None) => TableMaintenance::Skipped { table: name.to_string(), skipped: "no table yet" },
            Err(error) => {
                tracing::error!(table = name, %error, "maintenance failed");
                TableMaintenance::Failed { table: name.to_string(), error: error.to_string() }
            }
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// Runs compaction, checkpoint, log cleanup and vacuum on the table `name`, if it exists, and
/// sweeps its abandoned group-commit intents.
pub async fn maintain(
    lake: &Lake,
    name: &str,
    policy: &MaintenancePolicy,
) -> Result<Option<MaintenanceReport>, LakeError> {
    let started = Instant::now();
    let url = lake.table_url(name)?;
    let uri = url.to_string();
    let delta = |source| LakeError::Delta { uri: uri.clone(), source };
    let mut table = match lake.open(name).await {
        Ok(Some(table)) => table,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut report = MaintenanceReport { table: name.to_string(), ..Default::default() };
    report.files_before = active_files(&table).map_err(delta)?.len();

    let (compacted, written) = compact(&mut table, policy).await.map_err(delta)?;
    report.files_compacted = compacted;
    report.files_written = written;

    let version = table.version().unwrap_or(0);
    if last_checkpoint_version(&table).await < Some(version) {
        deltalake::checkpoints::create_checkpoint(&table, None).await.map_err(delta)?;
        report.checkpoint_version = Some(version);
    }
    report.logs_cleaned = deltalake::checkpoints::cleanup_metadata(&table, None).await.map_err(delta)?;

    let (table, metrics) = table
        .vacuum()
        .with_retention_period(chrono::Duration::from_std(policy.vacuum_retention).unwrap_or(chrono::Duration::days(7)))
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .await
        .map_err(delta)?;
    report.files_vacuumed = metrics.files_deleted.len();
    report.intents_swept = crate::lake::intents::sweep(table.log_store().object_store(None))
        .await
        .map_err(|source| LakeError::Intents { uri: uri.clone(), source: Box::new(source) })?;
    report.version = table.version();
    report.files_after = active_files(&table).map_err(delta)?.len();
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(Some(report))
}

struct ActiveFile {
    path: String,
    size: i64,
    remove: deltalake::kernel::Remove,
}

fn active_files(table: &DeltaTable) -> Result<Vec<ActiveFile>, DeltaTableError> {
    Ok(table
        .snapshot()?
        .log_data()
        .into_iter()
        .map(|f| ActiveFile { path: f.path().to_string(), size: f.size(), remove: f.remove_action(false) })
        .collect())
}

/// Rewrites small files into target-sized ones; returns (files removed, files added).
async fn compact(table: &mut DeltaTable, policy: &MaintenancePolicy) -> Result<(usize, usize), DeltaTableError> {
    let mut small: Vec<ActiveFile> =
        active_files(table)?.into_iter().filter(|f| (f.size as u64) < policy.target_file_size / 2).collect();
    small.sort_by(|a, b| a.path.cmp(&b.path));
    let mut budget = policy.max_bytes_per_run;
    small.retain(|f| {
        let fits = f.size as u64 <= budget;
        if fits {
            budget -= f.size as u64;
        }
        fits
    });
    if small.len() < policy.min_small_files {
        return Ok((0, 0));
    }
    let store = table.object_store();
    let mut writer = RecordBatchWriter::for_table(table)?.with_target_file_size(policy.target_file_size);
    let schema = writer.arrow_schema();
    // Compacted files are laid out as the appends lay theirs out.
    writer = writer.with_writer_properties(crate::lake::file_layout::writer_properties(&schema));
    for file in &small {
        let bytes = store.get(&Path::parse(&file.path)?).await?.bytes().await?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()? {
            // A file from before the table gained a column (`_rescued`) gets it, as nulls.
            writer.write(crate::lake::with_table_columns(&schema, batch?)?).await?;
        }
    }
    let adds = writer.flush().await?;
    let written = adds.len();
    let mut actions: Vec<Action> = adds
        .into_iter()
        .map(|mut add| {
            add.data_change = false;
            Action::Add(add)
        })
        .collect();
    actions.extend(small.iter().map(|f| Action::Remove(f.remove.clone())));
    let operation = DeltaOperation::Optimize { predicate: None, target_size: policy.target_file_size as i64 };
    let snapshot = table.snapshot()?;
    let finalized = CommitBuilder::from(CommitProperties::default())
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await?;
    table.state = Some(finalized.snapshot());
    Ok((small.len(), written))
}

/// The version of the table's latest checkpoint, from `_delta_log/_last_checkpoint`.
async fn last_checkpoint_version(table: &DeltaTable) -> Option<u64> {
    let store = table.log_store().object_store(None);
    let bytes = store.get(&Path::from("_delta_log/_last_checkpoint")).await.ok()?.bytes().await.ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get("version")?.as_u64()
}
