//! The S3 adapter of the object port.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::RetryConfig;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;

use super::{ObjectRef, ObjectSource, OpenedObject, SourceError};

/// Objects in S3, streamed with `GetObject` by object_store's S3 client (the lake's own).
pub struct S3Objects {
    config: Vec<(AmazonS3ConfigKey, String)>,
    retry: Option<RetryConfig>,
    /// One client per bucket, kept across invocations.
    stores: std::sync::Mutex<HashMap<String, Arc<AmazonS3>>>,
}

impl S3Objects {
    /// Credentials, region and endpoint from the `AWS_*` environment, as Lambda provides them.
    /// A custom endpoint (`AWS_ENDPOINT_URL`: moto, MinIO) is addressed path-style.
    pub fn from_env() -> Self {
        Self { config: Vec::new(), retry: None, stores: Default::default() }
    }

    /// A setting on top of the environment, such as another endpoint.
    pub fn with_config(mut self, key: AmazonS3ConfigKey, value: impl Into<String>) -> Self {
        self.config.push((key, value.into()));
        self
    }

    /// How failed requests are retried (object_store's default: up to 10 times within 3 minutes).
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    fn store(&self, object: &ObjectRef) -> Result<Arc<AmazonS3>, SourceError> {
        let mut stores = self.stores.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(store) = stores.get(&object.bucket) {
            return Ok(store.clone());
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&object.bucket);
        for (key, value) in &self.config {
            builder = builder.with_config(*key, value);
        }
        if let Some(retry) = &self.retry {
            builder = builder.with_retry(retry.clone());
        }
        let store = Arc::new(builder.build().map_err(|e| SourceError::new(object, e))?);
        stores.insert(object.bucket.clone(), store.clone());
        Ok(store)
    }
}

#[async_trait::async_trait]
impl ObjectSource for S3Objects {
    async fn open(&self, object: &ObjectRef) -> Result<Option<OpenedObject>, SourceError> {
        let store = self.store(object)?;
        // The key as S3 names it: `parse` keeps it as it is, where `from` would re-encode a `%`.
        let path = ObjectPath::parse(&object.key).unwrap_or_else(|_| ObjectPath::from(object.key.as_str()));
        match store.get(&path).await {
            Ok(found) => {
                let last_modified = Some(found.meta.last_modified);
                let body = found.into_stream().map_err(std::io::Error::from);
                Ok(Some(OpenedObject { body: Box::new(tokio_util::io::StreamReader::new(body)), last_modified }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(SourceError::new(object, error)),
        }
    }
}
