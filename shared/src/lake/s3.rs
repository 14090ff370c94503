//! S3 for delta-rs without the AWS SDK.
//!
//! deltalake's own `s3` feature resolves credentials with the AWS SDK, which brings its own HTTP
//! stacks and TLS library beside object_store's: most of a function's size. pinpipe registers
//! object_store's S3 client instead, configured from the `AWS_*` environment (Lambda's
//! credentials, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`) and the lake's storage
//! options, with delta-rs' default log store: commits are conditional PUTs
//! (`If-None-Match: *`), which S3 supports and which need no lock table.

use std::str::FromStr;
use std::sync::{Arc, Once};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
    object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError, Path};
use object_store::ObjectStoreScheme;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use url::Url;

#[derive(Debug, Default)]
struct S3Factory;

impl ObjectStoreFactory for S3Factory {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, Path)> {
        let mut builder = AmazonS3Builder::from_env().with_url(url.to_string()).with_retry(config.retry.clone());
        // Keys object_store does not know (delta-rs' own, such as `max_retries`) are not for it.
        for (key, value) in &config.raw {
            if let Ok(key) = AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()) {
                builder = builder.with_config(key, value.clone());
            }
        }
        let (_, path) =
            ObjectStoreScheme::parse(url).map_err(|e| DeltaTableError::GenericError { source: Box::new(e) })?;
        Ok((Arc::new(builder.build()?), Path::parse(path)?))
    }
}

impl LogStoreFactory for S3Factory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

/// Makes `s3://` and `s3a://` lakes openable; [`super::Lake::new`] calls it.
pub fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        let factory = Arc::new(S3Factory);
        for scheme in ["s3", "s3a"] {
            let url = Url::parse(&format!("{scheme}://")).expect("a scheme is a URL");
            object_store_factories().insert(url.clone(), factory.clone());
            logstore_factories().insert(url, factory.clone());
        }
    });
}
