//! Blobs as files under `<data_dir>/blobs/objects/<key>`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{BlobKey, Fetched, Spooled, StorageError};

pub(super) struct LocalStore {
    objects: PathBuf,
}

impl LocalStore {
    pub(super) async fn open(objects: PathBuf) -> Result<LocalStore, StorageError> {
        tokio::fs::create_dir_all(&objects).await.map_err(|e| StorageError::io("create", &objects, e))?;
        Ok(LocalStore { objects })
    }

    /// Only ever built from a parsed key, so it stays under the objects directory.
    fn path(&self, key: &BlobKey) -> PathBuf {
        self.objects.join(key.as_str())
    }

    /// Makes the spool file durable, renames it into place (same filesystem, so atomic: a reader
    /// sees the whole file or none) and makes the rename durable.
    pub(super) async fn put(&self, key: &BlobKey, mut spooled: Spooled) -> Result<(), StorageError> {
        let target = self.path(key);
        let dir = target.parent().unwrap_or(&self.objects).to_path_buf();
        let new_dir = !tokio::fs::try_exists(&dir).await.map_err(|e| StorageError::io("read", &dir, e))?;
        if new_dir {
            tokio::fs::create_dir_all(&dir).await.map_err(|e| StorageError::io("create", &dir, e))?;
        }
        let source = spooled.file.path.clone();
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&source)
            .await
            .map_err(|e| StorageError::io("open", &source, e))?;
        file.sync_all().await.map_err(|e| StorageError::io("sync", &source, e))?;
        drop(file);
        tokio::fs::rename(&source, &target).await.map_err(|e| StorageError::io("move a spool file to", &target, e))?;
        spooled.file.disarm();
        sync_dir(&dir).await?;
        if new_dir {
            // The new `<prefix>` directory's own entries, up to the objects directory.
            let mut up = dir.parent();
            while let Some(parent) = up.filter(|p| p.starts_with(&self.objects)) {
                sync_dir(parent).await?;
                up = parent.parent();
            }
        }
        Ok(())
    }

    pub(super) async fn fetch(&self, key: &BlobKey) -> Result<Fetched, StorageError> {
        let path = self.path(key);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StorageError::NotFound { key: key.to_string() }),
            Err(e) => return Err(StorageError::io("open", &path, e)),
        };
        let metadata = file.metadata().await.map_err(|e| StorageError::io("read", &path, e))?;
        if !metadata.is_file() {
            return Err(StorageError::NotFound { key: key.to_string() });
        }
        Ok(Fetched::File { file, len: metadata.len() })
    }

    pub(super) async fn delete(&self, key: &BlobKey) -> Result<(), StorageError> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("delete", &path, e)),
        }
    }

    pub(super) async fn exists(&self, key: &BlobKey) -> Result<bool, StorageError> {
        let path = self.path(key);
        match tokio::fs::metadata(&path).await {
            Ok(metadata) => Ok(metadata.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io("read", &path, e)),
        }
    }
}

/// fsync on a directory makes the entries created or renamed in it durable.
async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let handle = tokio::fs::File::open(dir).await.map_err(|e| StorageError::io("open", dir, e))?;
    handle.sync_all().await.map_err(|e| StorageError::io("sync", dir, e))
}
