//! The configuration of the Delta functions: the stream consumer, batch ingest and maintenance.
//! Each is read whole at start-up (see the module above for why).

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Env};
use crate::Table;
use crate::batch::BatchLimits;
use crate::lake::Lake;
use crate::maintenance::MaintenancePolicy;

pub const TABLE_VAR: &str = "PINPIPE_TABLE";
pub const LAKE_URI_VAR: &str = "PINPIPE_LAKE_URI";
pub const PREFIX_VAR: &str = "PINPIPE_PREFIX";
pub const BATCH_MAX_RECORDS_VAR: &str = "PINPIPE_BATCH_MAX_RECORDS";
pub const LOCAL_OBJECTS_DIR_VAR: &str = "PINPIPE_LOCAL_OBJECTS_DIR";
pub const TARGET_FILE_MB_VAR: &str = "PINPIPE_TARGET_FILE_MB";
pub const COMPACT_MAX_MB_PER_RUN_VAR: &str = "PINPIPE_COMPACT_MAX_MB_PER_RUN";
pub const VACUUM_RETENTION_HOURS_VAR: &str = "PINPIPE_VACUUM_RETENTION_HOURS";

const LAKE_URI_WHAT: &str = "the lake's root (s3://bucket/prefix, or a local directory)";

fn lake(env: &Env) -> Result<Lake, ConfigError> {
    Ok(Lake::new(env.required(LAKE_URI_VAR, LAKE_URI_WHAT)?))
}

/// The stream consumer: which table it lands and where the lake is.
pub struct ConsumerConfig {
    pub table: Table,
    pub lake: Lake,
}

impl ConsumerConfig {
    /// Reads `PINPIPE_TABLE` (`pin`, `geo` or `user`) and `PINPIPE_LAKE_URI`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let table = env.required(TABLE_VAR, "pin, geo or user")?;
        let table = table.parse().map_err(|e| ConfigError(format!("{TABLE_VAR}={table:?}: {e}")))?;
        Ok(Self { table, lake: lake(env)? })
    }
}

/// Batch ingest: the deployment's topics, the lake, how much one commit holds, and, for local
/// runs only, a folder that stands for the bucket.
pub struct BatchIngestConfig {
    pub prefix: String,
    pub lake: Lake,
    pub limits: BatchLimits,
    pub local_objects_dir: Option<PathBuf>,
}

impl BatchIngestConfig {
    /// Reads `PINPIPE_PREFIX` (topics `<prefix>.pin|geo|user`), `PINPIPE_LAKE_URI`, and the
    /// optional `PINPIPE_BATCH_MAX_RECORDS` (records per commit) and `PINPIPE_LOCAL_OBJECTS_DIR`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = BatchLimits::default();
        Ok(Self {
            prefix: env.required(PREFIX_VAR, "the deployment's prefix (topics <prefix>.pin|geo|user)")?,
            lake: lake(env)?,
            limits: BatchLimits { records: env.optional(BATCH_MAX_RECORDS_VAR, defaults.records)?, ..defaults },
            local_objects_dir: env.value(LOCAL_OBJECTS_DIR_VAR).map(PathBuf::from),
        })
    }
}

/// Maintenance: the lake and how much one run may do. Sizes are given in MiB and durations in
/// hours, the units an operator thinks in.
pub struct MaintenanceConfig {
    pub lake: Lake,
    pub policy: MaintenancePolicy,
}

impl MaintenanceConfig {
    /// Reads `PINPIPE_LAKE_URI`, and the optional `PINPIPE_TARGET_FILE_MB`,
    /// `PINPIPE_COMPACT_MAX_MB_PER_RUN` and `PINPIPE_VACUUM_RETENTION_HOURS`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        const MIB: u64 = 1 << 20;
        let defaults = MaintenancePolicy::default();
        let hours = env.optional(VACUUM_RETENTION_HOURS_VAR, defaults.vacuum_retention.as_secs() / 3600)?;
        let policy = MaintenancePolicy {
            target_file_size: env.optional(TARGET_FILE_MB_VAR, defaults.target_file_size / MIB)? * MIB,
            max_bytes_per_run: env.optional(COMPACT_MAX_MB_PER_RUN_VAR, defaults.max_bytes_per_run / MIB)? * MIB,
            vacuum_retention: Duration::from_secs(hours * 3600),
            ..defaults
        };
        Ok(Self { lake: lake(env)?, policy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::table_lookup;

    #[test]
    fn the_consumer_needs_a_known_table_and_a_lake() {
        let lookup = table_lookup(&[(TABLE_VAR, "geo"), (LAKE_URI_VAR, "s3://bucket/lake")]);
        let config = ConsumerConfig::from_env(&Env::from_lookup(&lookup)).unwrap();
        assert_eq!(config.table, Table::Geo);
        assert_eq!(config.lake.root(), "s3://bucket/lake");

        let lookup = table_lookup(&[(TABLE_VAR, "pins"), (LAKE_URI_VAR, "lake")]);
        let err = ConsumerConfig::from_env(&Env::from_lookup(&lookup)).err().unwrap().to_string();
        assert!(err.contains("PINPIPE_TABLE=\"pins\""), "{err}");

        let lookup = table_lookup(&[(TABLE_VAR, "pin")]);
        let err = ConsumerConfig::from_env(&Env::from_lookup(&lookup)).err().unwrap().to_string();
        assert!(err.contains("PINPIPE_LAKE_URI must be set"), "{err}");
    }

    #[test]
    fn batch_ingest_defaults_and_overrides() {
        let lookup = table_lookup(&[(PREFIX_VAR, "abc"), (LAKE_URI_VAR, "lake")]);
        let config = BatchIngestConfig::from_env(&Env::from_lookup(&lookup)).unwrap();
        assert_eq!(config.limits.records, BatchLimits::default().records);
        assert_eq!(config.local_objects_dir, None);

        let lookup = table_lookup(&[
            (PREFIX_VAR, "abc"),
            (LAKE_URI_VAR, "lake"),
            (BATCH_MAX_RECORDS_VAR, "250"),
            (LOCAL_OBJECTS_DIR_VAR, "raw"),
        ]);
        let config = BatchIngestConfig::from_env(&Env::from_lookup(&lookup)).unwrap();
        assert_eq!((config.prefix.as_str(), config.limits.records), ("abc", 250));
        assert_eq!(config.local_objects_dir, Some(PathBuf::from("raw")));
    }

    #[test]
    fn maintenance_reads_sizes_in_mib_and_retention_in_hours() {
        let lookup = table_lookup(&[(LAKE_URI_VAR, "lake")]);
        let config = MaintenanceConfig::from_env(&Env::from_lookup(&lookup)).unwrap();
        let defaults = MaintenancePolicy::default();
        assert_eq!(config.policy.target_file_size, defaults.target_file_size);
        assert_eq!(config.policy.max_bytes_per_run, defaults.max_bytes_per_run);
        assert_eq!(config.policy.vacuum_retention, defaults.vacuum_retention);

        let lookup = table_lookup(&[
            (LAKE_URI_VAR, "lake"),
            (TARGET_FILE_MB_VAR, "64"),
            (COMPACT_MAX_MB_PER_RUN_VAR, "100"),
            (VACUUM_RETENTION_HOURS_VAR, "24"),
        ]);
        let policy = MaintenanceConfig::from_env(&Env::from_lookup(&lookup)).unwrap().policy;
        assert_eq!(policy.target_file_size, 64 << 20);
        assert_eq!(policy.max_bytes_per_run, 100 << 20);
        assert_eq!(policy.vacuum_retention, Duration::from_secs(24 * 3600));
    }
}
