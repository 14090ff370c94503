//! The local-folder adapter of the object port.

use std::path::PathBuf;

use tokio::io::BufReader;

use super::{ObjectRef, ObjectSource, OpenedObject, SourceError};

/// Objects in a local folder that stands for the bucket: `<root>/<key>` (the bucket name is
/// not used). `pinpipe emulate --kafka-files` and the demo write this layout.
pub struct LocalObjects {
    root: PathBuf,
}

impl LocalObjects {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

#[async_trait::async_trait]
impl ObjectSource for LocalObjects {
    async fn open(&self, object: &ObjectRef) -> Result<Option<OpenedObject>, SourceError> {
        match tokio::fs::File::open(self.root.join(&object.key)).await {
            Ok(file) => {
                let modified = file.metadata().await.and_then(|m| m.modified()).ok();
                let last_modified = modified.map(chrono::DateTime::<chrono::Utc>::from);
                Ok(Some(OpenedObject { body: Box::new(BufReader::new(file)), last_modified }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SourceError::new(object, e)),
        }
    }

    fn locate(&self, object: &ObjectRef) -> String {
        format!("file://{}", self.root.join(&object.key).display())
    }
}
