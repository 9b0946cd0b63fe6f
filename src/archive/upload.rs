//! An `s3://` archive: the daemon's files are written and completed in the local spool folder
//! as for a local archive, then each complete file is uploaded to the same relative key under
//! the bucket's prefix and removed from the spool. An S3 object appears only once its upload
//! is complete, so readers of the bucket never see a partial file; the daemon commits offsets
//! only after the files holding their windows are uploaded. A file whose upload fails stays in
//! the spool and is uploaded at the next try; files a crash left in the spool are uploaded by
//! the next daemon that opens it (their windows were not committed, so Kafka delivers them
//! again too: the archive then holds identical repeats, as after a crash with a local archive).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::ArchiveError;
use super::config::{ArchiveConfig, S3Location};
use super::file::collect_files;

/// Files uploaded by one call, and their size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Object keys written, in upload order.
    pub keys: Vec<String>,
    pub bytes: u64,
}

/// Uploads an `s3://` archive's complete files from its spool folder.
#[derive(Debug)]
pub struct Uploader {
    store: Arc<dyn ObjectStore>,
    location: S3Location,
    spool: PathBuf,
}

impl Uploader {
    /// The uploader of `config`'s archive; `None` for a local archive. Credentials come from
    /// the `AWS_*` environment variables; nothing is sent before the first upload.
    pub fn open(config: &ArchiveConfig) -> Result<Option<Uploader>, ArchiveError> {
        let Some(location) = config.s3_location() else {
            return Ok(None);
        };
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&location.bucket);
        if let Some(endpoint) = &config.s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.s3.region {
            builder = builder.with_region(region);
        }
        if config.s3.allow_http {
            builder = builder.with_allow_http(true);
        }
        let store = builder.build().map_err(|source| ArchiveError::Store {
            what: format!("s3://{}", location.bucket),
            source: Box::new(source),
        })?;
        Ok(Some(Uploader {
            store: Arc::new(store),
            location,
            spool: config.local_dir().to_path_buf(),
        }))
    }

    /// The key a spool file goes to: the prefix, then its path below the spool folder.
    fn key_of(&self, file: &Path) -> Option<ObjectPath> {
        let relative = file.strip_prefix(&self.spool).ok()?;
        let mut parts: Vec<String> = Vec::new();
        if !self.location.prefix.is_empty() {
            parts.extend(self.location.prefix.split('/').map(str::to_owned));
        }
        for part in relative.components() {
            parts.push(part.as_os_str().to_str()?.to_owned());
        }
        Some(ObjectPath::from_iter(parts))
    }

    /// Complete files in the spool that are not uploaded yet, oldest name first.
    pub fn waiting(&self) -> Result<Vec<PathBuf>, ArchiveError> {
        let mut files = Vec::new();
        if self.spool.exists() {
            collect_files(&self.spool, &mut files, &|name| {
                name.ends_with(".parquet") && !name.starts_with('.') && !name.starts_with('_')
            })?;
        }
        files.sort();
        Ok(files)
    }

    /// Uploads every complete file of the spool, each removed from the spool once the store
    /// has it. When this returns `Ok`, every file completed so far is in the bucket. The first
    /// failure ends the call; what was not uploaded stays for the next one.
    pub async fn upload_waiting(&self) -> Result<UploadReport, ArchiveError> {
        let mut report = UploadReport::default();
        for file in self.waiting()? {
            let Some(key) = self.key_of(&file) else {
                continue;
            };
            let bytes = tokio::fs::read(&file)
                .await
                .map_err(ArchiveError::io(&file))?;
            let size = bytes.len() as u64;
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|source| ArchiveError::Upload {
                    key: key.to_string(),
                    source: Box::new(source),
                })?;
            tokio::fs::remove_file(&file)
                .await
                .map_err(ArchiveError::io(&file))?;
            tracing::debug!(key = %key, bytes = size, "archive file uploaded");
            report.keys.push(key.to_string());
            report.bytes += size;
        }
        Ok(report)
    }

    /// The bucket and prefix files go to, as `s3://BUCKET/PREFIX`.
    pub fn url(&self) -> String {
        self.location.url()
    }
}
