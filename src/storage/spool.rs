//! Uploads on their way to the store: a private temp file in the spool directory.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::StorageError;

/// How much of the start of an upload is kept in memory, for content sniffing.
pub const HEAD_BYTES: usize = 8 * 1024;

/// An upload being written to its spool file. `write` appends and keeps a running SHA-256, the byte
/// count and the first [`HEAD_BYTES`] in memory; `finish` turns it into a [`Spooled`] file.
/// Dropping an unfinished `Spool` deletes its file.
pub struct Spool {
    writer: BufWriter<tokio::fs::File>,
    file: SpoolFile,
    hasher: Sha256,
    len: u64,
    head: Vec<u8>,
}

/// A finished spool file, ready for [`super::BlobStore::put`]. Dropping it without `put` deletes it.
pub struct Spooled {
    pub(super) file: SpoolFile,
    len: u64,
    sha256: String,
    head: Vec<u8>,
}

impl Spool {
    pub(super) async fn create(dir: &Path) -> Result<Spool, StorageError> {
        let name: [u8; 16] = rand::random();
        let path = dir.join(format!("{}.part", hex::encode(name)));
        let mut options = tokio::fs::OpenOptions::new();
        // Private to the portal's user; a fresh name, never an existing file.
        options.write(true).create_new(true).mode(0o600);
        let file = options.open(&path).await.map_err(|e| StorageError::io("create a spool file in", dir, e))?;
        Ok(Spool {
            writer: BufWriter::with_capacity(64 * 1024, file),
            file: SpoolFile { path, armed: true },
            hasher: Sha256::new(),
            len: 0,
            head: Vec::new(),
        })
    }

    /// Appends `data` to the file.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StorageError> {
        if self.head.len() < HEAD_BYTES {
            let take = data.len().min(HEAD_BYTES - self.head.len());
            self.head.extend_from_slice(&data[..take]);
        }
        self.hasher.update(data);
        self.writer.write_all(data).await.map_err(|e| StorageError::io("write", &self.file.path, e))?;
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first bytes written (up to [`HEAD_BYTES`]), for sniffing the content type.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Flushes the file and computes its SHA-256.
    pub async fn finish(self) -> Result<Spooled, StorageError> {
        let Spool { mut writer, file, hasher, len, head } = self;
        // Waits for the blocking pool to have written everything (tokio's File flushes on flush()).
        writer.flush().await.map_err(|e| StorageError::io("write", &file.path, e))?;
        drop(writer);
        Ok(Spooled { file, len, sha256: hex::encode(hasher.finalize()), head })
    }
}

impl Spooled {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The SHA-256 of the content, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The first bytes (up to [`HEAD_BYTES`]), for sniffing the content type.
    pub fn head(&self) -> &[u8] {
        &self.head
    }
}

/// The spool file's path; deletes the file when dropped unless disarmed (it was moved into place).
pub(super) struct SpoolFile {
    pub(super) path: PathBuf,
    armed: bool,
}

impl SpoolFile {
    /// The file is gone (renamed or deleted): nothing to clean up.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), %error, "could not remove a spool file");
            }
        };
        // Off the async worker when there is a runtime; directly otherwise.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}
