//! The batch path: the objects a Kafka Connect S3 sink writes, landed in the same Delta tables
//! as the stream, cleaned by the same code.
//!
//! The sink writes `topics/<topic>/partition=<p>/<topic>+<p>+<start offset>.json` (docs/batch-files.md):
//! newline-separated JSON values. pinpipe also takes an object holding one JSON array, and
//! gzip-compressed `.json.gz`. Objects are streamed record by record, never read whole, and the
//! records of all the objects of one notification are committed together, in chunks of at most
//! [`BatchLimits::records`] records per table, so a notification for many small objects makes
//! one commit per table, not one per object.
//!
//! # Exactly once
//!
//! Each object is its own source: [`SourceKey::Offset`](crate::lake::SourceKey::Offset)
//! `kafka/<topic>/<p>/<start offset>`, and a record's position is its Kafka offset (start offset +
//! its ordinal in the object). A second notification for the object, or the object uploaded again
//! under the same key, finds the object's `txn` entry and writes nothing; a retry after a crash
//! between two chunk commits skips the chunks that landed. A single high-water mark per
//! topic-partition would be smaller, but S3 notifications arrive in no particular order and are
//! handled by concurrent invocations: an object with a lower offset landing after a higher one
//! would look delivered and be lost. The price is one `txn` entry per object; the sink's
//! `flush.size` sets how many that is.
//!
//! # What is skipped, what fails
//!
//! A key outside the layout, another deployment's topic, an unknown table, a format other than
//! JSON, or an object deleted since its notification is skipped with a logged reason: retrying
//! would never help. A record that cannot be cleaned, and the unreadable rest of a corrupt
//! object, go to the quarantine table with `s3://bucket/key`, line number and reason. Only an
//! infrastructure failure (S3 or the lake unreachable) fails the invocation, and Lambda's retry
//! is then safe.
//!
//! # Where
//!
//! `key`: the sink's key layout and the objects a notification names. `object`: the object
//! port, [`ObjectSource`], with its adapters [`S3Objects`] and [`LocalObjects`]. `reader`: an
//! object's records, one at a time ([`RecordReader`]). `ingest`: [`BatchIngest`], which commits
//! them in chunks through each table's [`TableSink`](crate::sink::TableSink).

mod ingest;
mod key;
mod object;
mod reader;

pub use crate::sink::TableTotals;
pub use ingest::{BatchIngest, BatchLimits, IngestError, IngestSummary};
pub use key::{ConnectObject, Skip, TOPICS_DIR, decode_key, objects_of, parse_key};
pub use object::{LocalObjects, ObjectBody, ObjectRef, ObjectSource, OpenedObject, S3Objects, SourceError};
pub use reader::{MAX_OBJECT_RECORD_BYTES, ObjectRecord, RecordReader, holds_partial_record};
