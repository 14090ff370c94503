//! The maintenance Lambda, run on a schedule: compacts, checkpoints, cleans the log of and
//! vacuums every pinpipe table (see `pinpipe::maintenance`). Invoked with
//! `{"redrive": {...}}` instead, it redrives quarantined records (see `pinpipe::redrive`):
//! fields `table`, `reason_like`, `since`, `limit` (at most `MAX_LAMBDA_LIMIT` per table) and
//! `dry_run`, all optional; an unknown field fails the invocation.
//!
//! Configuration: `PINPIPE_LAKE_URI`; optional `PINPIPE_TARGET_FILE_MB` (128),
//! `PINPIPE_COMPACT_MAX_MB_PER_RUN` (512), `PINPIPE_VACUUM_RETENTION_HOURS` (168)
//! (see `pinpipe::config::MaintenanceConfig`).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pinpipe::config::{Env, MaintenanceConfig};
use pinpipe::maintenance::maintain_lake;
use pinpipe::redrive::{redrive, request_from_event};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pinpipe::allocator::keep_batch_memory();
    pinpipe::logging::init();
    let config = MaintenanceConfig::from_env(&Env::process())?;
    let config = &config;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let answer = match request_from_event(&event.payload)? {
            Some(request) => serde_json::to_value(redrive(&config.lake, &request).await?)?,
            None => serde_json::to_value(maintain_lake(&config.lake, &config.policy).await)?,
        };
        Ok::<Value, Error>(answer)
    }))
    .await
}
