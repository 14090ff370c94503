//! The batch ingest Lambda, triggered by S3 `ObjectCreated` under `topics/` of the bucket a
//! Kafka Connect S3 sink writes to. It lands each object's records, cleaned, in the same Delta
//! tables as the stream consumers, exactly once (see `pinpipe::batch`).
//!
//! Configuration: `PINPIPE_PREFIX` (topics `<prefix>.pin|geo|user`), `PINPIPE_LAKE_URI`
//! (`s3://bucket/prefix` or a local directory); optional `PINPIPE_BATCH_MAX_RECORDS` (records
//! per commit, 10000) and, for local runs only, `PINPIPE_LOCAL_OBJECTS_DIR` (read object keys
//! from this folder instead of S3); see `pinpipe::config::BatchIngestConfig`.

use std::sync::Arc;

use aws_lambda_events::event::s3::S3Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pinpipe::batch::{BatchIngest, LocalObjects, ObjectSource, S3Objects};
use pinpipe::config::{BatchIngestConfig, Env};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pinpipe::allocator::keep_batch_memory();
    pinpipe::logging::init();
    let config = BatchIngestConfig::from_env(&Env::process())?;
    let source: Arc<dyn ObjectSource> = match config.local_objects_dir {
        Some(dir) => Arc::new(LocalObjects::new(dir)),
        None => Arc::new(S3Objects::from_env()),
    };
    let ingest = BatchIngest::new(config.prefix, config.lake, source).with_limits(config.limits);
    let ingest = &ingest;
    run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        let summary = ingest.handle_s3_event(&event.payload).await?;
        Ok::<Value, Error>(summary.to_json())
    }))
    .await
}
