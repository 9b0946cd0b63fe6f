//! Reading an archive back, wherever it is: a daemon's archive folder, one archive file (replay's
//! `windows.parquet`), or an `s3://BUCKET/PREFIX` archive read through the S3 API. The offline
//! commands that look at what the daemons archived (`alerts explain --archive`, `train
//! --exclude-archive`) read through here.

use std::path::Path;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ArchiveError;
use super::config::S3Location;
use super::file::{is_archive_file_name, read_archive_dir, read_scored_windows};
use super::schema::from_record_batch;
use crate::score::ScoredWindow;

/// Every window of the archive at `path`: a folder (its complete files, recursively), one
/// archive file, or `s3://BUCKET/PREFIX` (its complete objects under the prefix). The store of an
/// `s3://` archive is set up from the standard `AWS_*` environment variables (`AWS_ENDPOINT_URL`
/// for a store other than AWS, `AWS_REGION`, `AWS_ALLOW_HTTP`, the credentials).
pub fn read_archive(path: &Path) -> Result<Vec<ScoredWindow>, ArchiveError> {
    match S3Location::parse(path) {
        Some(location) => read_s3_archive(&location),
        None if path.is_dir() => read_archive_dir(path),
        None => read_scored_windows(path),
    }
}

/// The objects of an `s3://` archive, in key order. Objects appear only once uploaded whole, so
/// every one is a complete file.
fn read_s3_archive(location: &S3Location) -> Result<Vec<ScoredWindow>, ArchiveError> {
    let url = location.url();
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(&location.bucket)
        .build()
        .map_err(|source| ArchiveError::Store {
            what: url.clone(),
            source: Box::new(source),
        })?;
    // Its own thread and runtime: the caller may or may not be inside one.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(ArchiveError::io(url.as_str()))?;
                runtime.block_on(read_objects(&store, location, &url))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

async fn read_objects(
    store: &dyn ObjectStore,
    location: &S3Location,
    url: &str,
) -> Result<Vec<ScoredWindow>, ArchiveError> {
    let failed = |what: String| {
        move |source: object_store::Error| ArchiveError::Store {
            what,
            source: Box::new(source),
        }
    };
    let prefix = (!location.prefix.is_empty()).then(|| ObjectPath::from(location.prefix.as_str()));
    let mut objects: Vec<ObjectPath> = store
        .list(prefix.as_ref())
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(failed(url.to_owned()))?;
    objects.retain(|key| key.filename().is_some_and(is_archive_file_name));
    objects.sort();
    let mut windows = Vec::new();
    for key in objects {
        let name = format!("s3://{}/{key}", location.bucket);
        let bytes = store
            .get(&key)
            .await
            .map_err(failed(name.clone()))?
            .bytes()
            .await
            .map_err(failed(name.clone()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(ArchiveError::parquet(name.as_str()))?;
        for batch in reader {
            windows.extend(from_record_batch(&batch?)?);
        }
    }
    Ok(windows)
}
