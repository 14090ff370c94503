//! The maintenance Lambda, run on a schedule: compacts, checkpoints, cleans the log of and
//! vacuums every pinpipe table (see `pinpipe::maintenance`).
//!
//! Configuration: `PINPIPE_LAKE_URI`; optional `PINPIPE_TARGET_FILE_MB` (128),
//! `PINPIPE_COMPACT_MAX_MB_PER_RUN` (512), `PINPIPE_VACUUM_RETENTION_HOURS` (168).

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pinpipe::consumer::QUARANTINE_TABLE;
use pinpipe::lake::Lake;
use pinpipe::maintenance::{MaintenancePolicy, maintain};
use pinpipe::{Table, config};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let lake = Lake::new(config::required("PINPIPE_LAKE_URI")?);
    let defaults = MaintenancePolicy::default();
    let policy = MaintenancePolicy {
        target_file_size: config::optional("PINPIPE_TARGET_FILE_MB", defaults.target_file_size >> 20)? << 20,
        max_bytes_per_run: config::optional("PINPIPE_COMPACT_MAX_MB_PER_RUN", defaults.max_bytes_per_run >> 20)? << 20,
        vacuum_retention: Duration::from_secs(3600 * config::optional("PINPIPE_VACUUM_RETENTION_HOURS", 168u64)?),
        ..defaults
    };
    let (lake, policy) = (&lake, &policy);
    run(service_fn(move |_scheduled: LambdaEvent<Value>| async move {
        let mut reports = Vec::new();
        let names = Table::ALL.iter().map(|t| t.name()).chain([QUARANTINE_TABLE]);
        for name in names {
            // One table's failure must not starve the others; the error is logged and reported.
            match maintain(lake, name, policy).await {
                Ok(Some(report)) => {
                    lambda_runtime::tracing::info!(report = %serde_json::to_string(&report)?, "table maintained");
                    reports.push(serde_json::to_value(report)?);
                }
                Ok(None) => reports.push(serde_json::json!({"table": name, "skipped": "no table yet"})),
                Err(error) => {
                    lambda_runtime::tracing::error!(table = name, %error, "maintenance failed");
                    reports.push(serde_json::json!({"table": name, "error": error.to_string()}));
                }
            }
        }
        Ok::<Value, Error>(Value::Array(reports))
    }))
    .await
}
