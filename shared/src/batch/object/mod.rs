//! The object port: where the batch path reads objects from. [`S3Objects`] in Lambda,
//! [`LocalObjects`] for the demo and local runs.

use chrono::{DateTime, Utc};
use tokio::io::AsyncBufRead;

mod local;
mod s3;

pub use local::LocalObjects;
pub use s3::S3Objects;

/// An object in a bucket, its key as stored (already URL-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

/// Where objects are read from: S3 in Lambda, a local folder for the demo.
#[async_trait::async_trait]
pub trait ObjectSource: Send + Sync {
    /// The object opened for reading, or `None` if it no longer exists.
    async fn open(&self, object: &ObjectRef) -> Result<Option<OpenedObject>, SourceError>;

    /// Where the object is, as the lineage and quarantine tables name it.
    fn locate(&self, object: &ObjectRef) -> String {
        format!("s3://{}/{}", object.bucket, object.key)
    }
}

pub type ObjectBody = Box<dyn AsyncBufRead + Send + Unpin>;

/// An object opened for reading: its bytes as a stream, and when it was written (S3's
/// `Last-Modified`, a file's modification time), from which its records' freshness counts.
pub struct OpenedObject {
    pub body: ObjectBody,
    pub last_modified: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
#[error("reading s3://{bucket}/{key}: {detail}")]
pub struct SourceError {
    pub bucket: String,
    pub key: String,
    pub detail: String,
}

impl SourceError {
    fn new(object: &ObjectRef, detail: impl ToString) -> Self {
        Self { bucket: object.bucket.clone(), key: object.key.clone(), detail: detail.to_string() }
    }
}
