//! The maintenance Lambda, run on a schedule: compacts, checkpoints, cleans the log of and
//! vacuums every pinpipe table (see `pinpipe::maintenance`).
//!
//! Configuration: `PINPIPE_LAKE_URI`; optional `PINPIPE_TARGET_FILE_MB` (128),
//! `PINPIPE_COMPACT_MAX_MB_PER_RUN` (512), `PINPIPE_VACUUM_RETENTION_HOURS` (168)
//! (see `pinpipe::config::MaintenanceConfig`).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pinpipe::config::{Env, MaintenanceConfig};
use pinpipe::maintenance::{TableMaintenance, maintain_lake};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pinpipe::logging::init();
    let config = MaintenanceConfig::from_env(&Env::process())?;
    let config = &config;
    run(service_fn(move |_scheduled: LambdaEvent<Value>| async move {
        Ok::<Vec<TableMaintenance>, Error>(maintain_lake(&config.lake, &config.policy).await)
    }))
    .await
}
