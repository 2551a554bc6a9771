//! Where uploaded files live: the [`BlobStore`], on the local disk or in an S3-compatible bucket.
//!
//! Every upload is first streamed to a private file in the spool directory (always local, under
//! `<data_dir>/blobs/spool`), hashed and sized on the way ([`Spool`]); only then is it stored under a
//! generated [`BlobKey`]. Nothing holds a whole file in memory: the local store renames the spool file
//! into place, the S3 store streams it up in parts. Downloads are an open file for the handler to
//! stream (local) or a short-lived presigned URL to redirect to (S3).
//!
//! File I/O goes through `tokio::fs`, i.e. the blocking pool, never the async workers.

mod key;
mod local;
mod s3_bucket;
mod spool;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use self::key::BlobKey;
pub use self::spool::{HEAD_BYTES, Spool, Spooled};
pub use crate::config::{S3Settings, StorageSettings};

use self::local::LocalStore;
use self::s3_bucket::S3Store;

/// Spool files older than this are leftovers of a crash or a kill, removed at open.
const SPOOL_MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A local file operation failed (the spool, or the local store).
    #[error("blob storage could not {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    /// The S3 bucket cannot be used at start-up: wrong endpoint, missing bucket, refused credentials.
    #[error("S3 bucket {bucket:?} at {endpoint} cannot be used: {detail}")]
    Unreachable { bucket: String, endpoint: String, detail: String },
    /// An S3 request about one object failed.
    #[error("S3 {operation} of {key} in bucket {bucket:?} at {endpoint} failed: {detail}")]
    S3 { operation: &'static str, key: String, bucket: String, endpoint: String, detail: String },
    /// No object is stored under the key.
    #[error("no stored object {key}")]
    NotFound { key: String },
    /// A string that is not a generated storage key (see [`BlobKey::parse`]).
    #[error("not a valid storage key")]
    InvalidKey,
}

impl StorageError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> StorageError {
        StorageError::Io { action, path: path.to_path_buf(), source }
    }

    /// The object is not there (a download of a deleted or never-stored blob).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

/// The headers a download response carries, whichever store serves it.
#[derive(Clone, Debug)]
pub struct ResponseHeaders {
    pub content_type: String,
    pub content_disposition: String,
}

/// What a download handler sends.
#[derive(Debug)]
pub enum Fetched {
    /// Local store: the open file and its length, for the handler to stream.
    File { file: tokio::fs::File, len: u64 },
    /// S3: a presigned GET URL (valid for at most 60 s) to redirect the browser to. Its response
    /// carries the given Content-Type and Content-Disposition, and `Cache-Control: no-store`.
    Redirect(String),
}

/// The blob store; cheap to clone (one shared handle inside).
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    spool_dir: PathBuf,
    backend: Backend,
    /// An S3 multipart upload holds a few tens of MiB while it runs (parts being signed
    /// and sent): at most this many run at once, the rest wait their turn.
    s3_puts: tokio::sync::Semaphore,
}

const S3_PUTS_AT_ONCE: usize = 4;

enum Backend {
    Local(LocalStore),
    S3(S3Store),
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("kind", &self.kind()).field("spool_dir", &self.inner.spool_dir).finish()
    }
}

impl BlobStore {
    /// Local: creates `<data_dir>/blobs/objects` and `<data_dir>/blobs/spool`. S3: builds the bucket
    /// handle and checks the bucket is reachable with the credentials (a list of at most one key),
    /// failing with a message naming the bucket and endpoint otherwise. Both: the spool directory is
    /// local, `<data_dir>/blobs/spool`, and spool files older than an hour are removed.
    pub async fn open(config: &crate::config::Config) -> Result<BlobStore, StorageError> {
        let blobs = config.data_dir.join("blobs");
        let spool_dir = blobs.join("spool");
        create_private_dir(&spool_dir).await?;
        sweep_spool(&spool_dir, SPOOL_MAX_AGE).await;
        let backend = match &config.storage {
            StorageSettings::Local => Backend::Local(LocalStore::open(blobs.join("objects")).await?),
            StorageSettings::S3(settings) => Backend::S3(S3Store::open(settings).await?),
        };
        let s3_puts = tokio::sync::Semaphore::new(S3_PUTS_AT_ONCE);
        Ok(BlobStore { inner: Arc::new(Inner { spool_dir, backend, s3_puts }) })
    }

    /// `"local"` or `"s3"`.
    pub fn kind(&self) -> &'static str {
        match self.inner.backend {
            Backend::Local(_) => "local",
            Backend::S3(_) => "s3",
        }
    }

    /// A new private temp file in the spool directory, for streaming an upload to disk before it is stored.
    pub async fn spool(&self) -> Result<Spool, StorageError> {
        Spool::create(&self.inner.spool_dir).await
    }

    /// Stores a spooled file under `key`: local, fsync'd and renamed into place; S3, streamed up from
    /// the file (multipart above 8 MiB) with the content type. Consumes the spool file either way.
    pub async fn put(&self, key: &BlobKey, file: Spooled, content_type: &str) -> Result<(), StorageError> {
        match &self.inner.backend {
            Backend::Local(store) => store.put(key, file).await,
            Backend::S3(store) => {
                // Never closed, so acquiring only waits.
                let _permit = self.inner.s3_puts.acquire().await;
                store.put(key, file, content_type).await
            }
        }
    }

    /// What a download handler sends: local, the open file and its length; S3, a presigned GET URL
    /// valid for at most 60 s whose response has the Content-Type and Content-Disposition of
    /// `headers` and `Cache-Control: no-store`. A missing object is [`StorageError::NotFound`] on both.
    pub async fn fetch(&self, key: &BlobKey, headers: &ResponseHeaders) -> Result<Fetched, StorageError> {
        match &self.inner.backend {
            Backend::Local(store) => store.fetch(key).await,
            Backend::S3(store) => store.fetch(key, headers).await,
        }
    }

    /// Idempotent: a missing object is Ok.
    pub async fn delete(&self, key: &BlobKey) -> Result<(), StorageError> {
        match &self.inner.backend {
            Backend::Local(store) => store.delete(key).await,
            Backend::S3(store) => store.delete(key).await,
        }
    }

    pub async fn exists(&self, key: &BlobKey) -> Result<bool, StorageError> {
        match &self.inner.backend {
            Backend::Local(store) => store.exists(key).await,
            Backend::S3(store) => store.exists(key).await,
        }
    }
}

/// The spool directory holds uploads in flight: readable by the portal's user only.
async fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder.create(dir).await.map_err(|e| StorageError::io("create", dir, e))
}

/// Removes spool files older than `max_age`: leftovers of a process that died mid-upload. Failures
/// are logged, never fatal.
async fn sweep_spool(dir: &Path, max_age: Duration) {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot look for stale spool files");
            return;
        }
    };
    let now = SystemTime::now();
    let mut removed = 0usize;
    loop {
        let entry = match entries.next_entry().await {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot look for stale spool files");
                break;
            }
        };
        let Ok(metadata) = entry.metadata().await else { continue };
        let age = metadata.modified().ok().and_then(|modified| now.duration_since(modified).ok());
        if metadata.is_file() && age.is_some_and(|age| age > max_age) {
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(path = %entry.path().display(), %error, "cannot remove a stale spool file")
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed stale spool files");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn temp_config() -> (crate::config::Config, PathBuf) {
        let dir = std::env::temp_dir().join(format!("portal-storage-unit-{}", uuid::Uuid::new_v4().simple()));
        let config = crate::config::Config { data_dir: dir.clone(), ..Default::default() };
        (config, dir)
    }

    fn headers() -> ResponseHeaders {
        ResponseHeaders { content_type: "text/plain".into(), content_disposition: "attachment".into() }
    }

    async fn spool_files(store: &BlobStore) -> usize {
        let mut entries = tokio::fs::read_dir(&store.inner.spool_dir).await.unwrap();
        let mut n = 0;
        while entries.next_entry().await.unwrap().is_some() {
            n += 1;
        }
        n
    }

    /// Drops delete spool files on the blocking pool: wait for it.
    async fn until_spool_is_empty(store: &BlobStore) {
        for _ in 0..200 {
            if spool_files(store).await == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the spool directory is not emptied");
    }

    /// Handlers may move the store and its futures across threads (`tokio::spawn`).
    #[allow(dead_code)]
    fn the_store_and_its_futures_are_send(store: BlobStore, key: BlobKey, spooled: Spooled, mut spool: Spool) {
        fn send<T: Send + Sync>(_: &T) {}
        fn send_future<T: Send>(_: T) {}
        send(&store);
        let config = crate::config::Config::default();
        send_future(BlobStore::open(&config));
        send_future(store.spool());
        send_future(spool.write(b""));
        send_future(store.put(&key, spooled, "text/plain"));
        send_future(store.fetch(&key, &headers()));
        send_future(store.delete(&key));
        send_future(store.exists(&key));
    }

    #[tokio::test]
    async fn local_round_trip() {
        let (config, dir) = temp_config();
        let store = BlobStore::open(&config).await.unwrap();
        assert_eq!(store.kind(), "local");
        assert!(dir.join("blobs/objects").is_dir());
        assert!(dir.join("blobs/spool").is_dir());

        let mut spool = store.spool().await.unwrap();
        spool.write(b"hello, ").await.unwrap();
        spool.write(b"world").await.unwrap();
        assert_eq!(spool.len(), 12);
        assert_eq!(spool.head(), b"hello, world");
        let spooled = spool.finish().await.unwrap();
        assert_eq!(spooled.len(), 12);
        assert_eq!(spooled.sha256(), "09ca7e4eaa6e8ae9c7d261167129184883644d07dfba7cbfbc4c8a2e08360d5b");

        let key = BlobKey::random();
        assert!(!store.exists(&key).await.unwrap());
        store.put(&key, spooled, "text/plain").await.unwrap();
        assert!(store.exists(&key).await.unwrap());
        assert!(dir.join("blobs/objects").join(key.as_str()).is_file());
        assert_eq!(spool_files(&store).await, 0, "the spool file was moved, not copied");

        let Fetched::File { mut file, len } = store.fetch(&key, &headers()).await.unwrap() else {
            panic!("a local store hands out files");
        };
        assert_eq!(len, 12);
        let mut body = String::new();
        file.read_to_string(&mut body).await.unwrap();
        assert_eq!(body, "hello, world");

        store.delete(&key).await.unwrap();
        assert!(!store.exists(&key).await.unwrap());
        store.delete(&key).await.unwrap();
        assert!(store.fetch(&key, &headers()).await.unwrap_err().is_not_found());

        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }

    #[tokio::test]
    async fn head_keeps_the_first_8_kib_and_the_hash_covers_everything() {
        let (config, dir) = temp_config();
        let store = BlobStore::open(&config).await.unwrap();
        let mut spool = store.spool().await.unwrap();
        let chunk: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut all = Vec::new();
        for _ in 0..3 {
            spool.write(&chunk).await.unwrap();
            all.extend_from_slice(&chunk);
        }
        assert_eq!(spool.head(), &all[..HEAD_BYTES]);
        let spooled = spool.finish().await.unwrap();
        assert_eq!(spooled.len(), 15000);
        assert_eq!(spooled.head(), &all[..HEAD_BYTES]);
        use sha2::Digest;
        assert_eq!(spooled.sha256(), hex::encode(sha2::Sha256::digest(&all)));
        drop(spooled);
        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }

    #[tokio::test]
    async fn dropped_spools_leave_nothing_behind() {
        let (config, dir) = temp_config();
        let store = BlobStore::open(&config).await.unwrap();

        let mut unfinished = store.spool().await.unwrap();
        unfinished.write(b"half an upload").await.unwrap();
        assert_eq!(spool_files(&store).await, 1);
        drop(unfinished);
        until_spool_is_empty(&store).await;

        let mut spool = store.spool().await.unwrap();
        spool.write(b"never stored").await.unwrap();
        let spooled = spool.finish().await.unwrap();
        drop(spooled);
        until_spool_is_empty(&store).await;

        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }

    #[tokio::test]
    async fn open_removes_stale_spool_files_only() {
        let (config, dir) = temp_config();
        let spool_dir = dir.join("blobs/spool");
        tokio::fs::create_dir_all(&spool_dir).await.unwrap();
        let stale = spool_dir.join("stale.part");
        let fresh = spool_dir.join("fresh.part");
        tokio::fs::write(&stale, b"x").await.unwrap();
        tokio::fs::write(&fresh, b"x").await.unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        let file = std::fs::File::options().write(true).open(&stale).unwrap();
        file.set_modified(two_hours_ago).unwrap();
        drop(file);

        BlobStore::open(&config).await.unwrap();
        assert!(!stale.exists(), "an upload abandoned two hours ago is removed");
        assert!(fresh.exists(), "one that may still be in flight is kept");

        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }
}
