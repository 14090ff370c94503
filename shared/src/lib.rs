//! pinpipe: the domain of the pipeline, shared by every Lambda function and the CLI.
//!
//! - [`table`]: the three tables and their stream, topic and lake names.
//! - [`clean`]: decoding and the cleaning rules of each table, in one place.
//! - [`stream`]: the stream port; [`kinesis`] its AWS adapter.
//! - [`api`]: the producer's REST contract, independent of Lambda.
//! - [`lake`]: the Delta Lake writer with exactly-once progress.
//! - [`consumer`]: turns a Kinesis event batch into commits.
//! - [`batch`]: Kafka Connect S3 sink objects into the same commits.
//! - [`maintenance`]: compaction, checkpoints, log cleanup and vacuum.

#[cfg(feature = "lake")]
pub mod batch;
pub mod clean;
pub mod config;
#[cfg(feature = "lake")]
pub mod consumer;
pub mod embedded;
pub mod emulator;
pub mod events;
mod json;
#[cfg(feature = "lake")]
pub mod lake;
#[cfg(feature = "lake")]
pub mod maintenance;
pub mod metrics;
#[cfg(feature = "lake")]
pub mod schema;
pub mod stream;
pub mod table;
pub use table::Table;
pub mod api;
#[cfg(feature = "kinesis")]
pub mod kinesis;
