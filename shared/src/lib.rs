//! pinpipe's library: the domain of the pipeline, shared by every Lambda function and the CLI.
//! The functions (`functions/*`) are thin: each reads its configuration, sets up logging and
//! hands the runtime's events to one entry point here. Nothing in this crate but the triggers
//! knows a Lambda event type.
//!
//! # Map
//!
//! ```text
//!  producer λ ──▶ api ──▶ stream (port) ──▶ stream::kinesis            (AWS)
//!                                     └──▶ local::embedded            (in memory, demo/tests)
//!
//!  stream-consumer λ ──▶ kinesis_trigger ─┐   (the payload read by kinesis_event)
//!                                         ├──▶ sink ──▶ clean ──▶ schema ──▶ lake (Delta, exactly once)
//!  batch-ingest λ ───▶ batch ─────────────┘      (rows to the table, rejects to the quarantine)
//!                      ├─ key      Kafka Connect object keys
//!                      ├─ object   the object port: s3 and local adapters
//!                      └─ reader   records out of a streamed object
//!
//!  maintenance λ ──┬──▶ maintenance ──▶ lake
//!                  └──▶ redrive ──▶ clean ──▶ lake (quarantine → table, exactly once; a ledger)
//!  pinpipe redrive ──────▲
//! ```
//!
//! - [`table`]: the three tables (and the quarantine, and its redrive ledger), their stream,
//!   topic and lake names.
//! - [`clean`]: decoding and the cleaning rules of each table, one rule list per table
//!   (docs/cleaning.md); [`schema`] maps clean records onto Arrow/Delta.
//! - [`api`]: the producer's REST contract (docs/rest-api.md), independent of Lambda:
//!   routing, body validation, errors, retries of throttled puts.
//! - [`stream`]: the stream port the producer writes through, and its Kinesis adapter.
//! - [`sink`]: cleans a set of source records and commits them exactly once, rows to the
//!   table and rejects to the quarantine, whatever their source.
//! - [`kinesis_event`]: the Kinesis event read straight from the invoke payload's bytes,
//!   borrowing from them (or from a typed `KinesisEvent`).
//! - [`kinesis_trigger`]: a Kinesis event batch through the sink (the stream consumer).
//! - [`batch`]: Kafka Connect S3 sink objects through the same sink (docs/batch-files.md).
//! - [`lake`]: the Delta Lake tables, appends with exactly-once progress per source (read in one
//!   pass of the log, `lake::txn_log`), and column scans without a query engine (`lake::scan`).
//! - [`freshness`]: how old the records a commit lands are (commit time minus arrival).
//! - [`maintenance`]: compaction, checkpoints, log cleanup and vacuum.
//! - [`allocator`]: malloc settings for a process that handles one large batch after another.
//! - [`redrive`]: quarantined records cleaned again after a rule change (`RULES_VERSION`), the
//!   ones that now pass landed exactly once, a ledger of what became of each
//!   (docs/cleaning.md#redrive).
//! - [`config`], [`logging`], [`metrics`], [`backoff`]: what every function starts with,
//!   reports through and waits by.
//! - `local` (feature `local`): what runs on one machine only — the embedded stream service,
//!   the post emulator, builders of Lambda events. No Lambda function turns it on.
//!
//! The features: `lake` (the Delta side: sink, triggers, batch, maintenance, redrive), `kinesis` (the
//! AWS SDK adapter, for the producer), `local`.

pub mod allocator;
pub mod backoff;
#[cfg(feature = "lake")]
pub mod batch;
pub mod clean;
pub mod config;
pub mod freshness;
mod json;
pub mod kinesis_event;
#[cfg(feature = "lake")]
pub mod kinesis_trigger;
#[cfg(feature = "lake")]
pub mod lake;
#[cfg(any(test, feature = "local"))]
pub mod local;
pub mod logging;
#[cfg(feature = "lake")]
pub mod maintenance;
pub mod metrics;
#[cfg(feature = "lake")]
pub mod redrive;
#[cfg(feature = "lake")]
pub mod schema;
#[cfg(feature = "lake")]
pub mod sink;
pub mod stream;
pub mod table;
pub use table::Table;
pub mod api;
