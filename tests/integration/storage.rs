//! The blob store as a library, against both backends: files under a data dir, and a real S3 server
//! (s3s over s3s-fs, in process, checking SigV4 signatures).

use std::path::{Path, PathBuf};

use portal::config::{Config, StorageSettings};
use portal::storage::{BlobKey, BlobStore, Fetched, ResponseHeaders, StorageError};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::support::{fresh_data_dir, s3, stored_objects};

struct Store {
    store: BlobStore,
    config: Config,
}

impl Store {
    async fn local() -> Store {
        Store::open(StorageSettings::Local).await
    }

    async fn s3() -> Store {
        Store::open(StorageSettings::S3(s3::settings().await)).await
    }

    async fn open(storage: StorageSettings) -> Store {
        let data_dir = fresh_data_dir(&format!("storage-{}", uuid::Uuid::new_v4().simple()));
        let config = Config { data_dir, storage, ..Config::default() };
        let store = BlobStore::open(&config).await.expect("the store opens");
        Store { store, config }
    }

    async fn objects(&self) -> Vec<String> {
        stored_objects(&self.config.storage, &self.config.data_dir).await
    }

    fn spool_dir(&self) -> PathBuf {
        self.config.data_dir.join("blobs/spool")
    }

    /// Stores `content` under a new key through a spool, as an upload handler does.
    async fn put(&self, content: &[u8], content_type: &str) -> BlobKey {
        let mut spool = self.store.spool().await.unwrap();
        spool.write(content).await.unwrap();
        let spooled = spool.finish().await.unwrap();
        assert_eq!(spooled.sha256(), hex::encode(Sha256::digest(content)));
        let key = BlobKey::random();
        self.store.put(&key, spooled, content_type).await.unwrap();
        key
    }

    /// The content as a browser would get it (for S3, by following the presigned URL).
    async fn download(&self, key: &BlobKey, headers: &ResponseHeaders) -> Vec<u8> {
        match self.store.fetch(key, headers).await.unwrap() {
            Fetched::File { mut file, len } => {
                let mut body = Vec::new();
                file.read_to_end(&mut body).await.unwrap();
                assert_eq!(body.len() as u64, len);
                body
            }
            Fetched::Redirect(url) => {
                let response = reqwest::get(&url).await.unwrap();
                assert_eq!(response.status(), 200, "GET of the presigned URL");
                response.bytes().await.unwrap().to_vec()
            }
        }
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn pdf_headers() -> ResponseHeaders {
    ResponseHeaders {
        content_type: "application/pdf".into(),
        content_disposition: "attachment; filename=\"Q3 report.pdf\"; filename*=UTF-8''Q3%20r%C3%A9port.pdf".into(),
    }
}

async fn spool_is_empty(dir: &Path) -> bool {
    // Drops clean up on the blocking pool: give them a moment.
    for _ in 0..100 {
        let mut entries = tokio::fs::read_dir(dir).await.unwrap();
        if entries.next_entry().await.unwrap().is_none() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

async fn round_trip(store: Store) {
    let content = b"%PDF-1.7 not really a PDF\n".repeat(100);
    let key = store.put(&content, "application/pdf").await;
    assert!(store.store.exists(&key).await.unwrap());
    assert_eq!(store.objects().await, vec![key.as_str().to_owned()], "stored under its key, and only that");
    assert!(spool_is_empty(&store.spool_dir()).await, "put consumes the spool file");

    let body = store.download(&key, &pdf_headers()).await;
    assert_eq!(body, content);

    store.store.delete(&key).await.unwrap();
    assert!(!store.store.exists(&key).await.unwrap());
    assert!(store.objects().await.is_empty());
    let missing = store.store.fetch(&key, &pdf_headers()).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
}

#[tokio::test]
async fn local_round_trip() {
    let store = Store::local().await;
    assert_eq!(store.store.kind(), "local");
    let key = store.put(b"local bytes", "text/plain").await;
    assert!(store.config.data_dir.join("blobs/objects").join(key.as_str()).is_file());
    store.store.delete(&key).await.unwrap();
    round_trip(store).await;
}

#[tokio::test]
async fn s3_round_trip() {
    let store = Store::s3().await;
    assert_eq!(store.store.kind(), "s3");
    round_trip(store).await;
}

#[tokio::test]
async fn s3_downloads_are_short_lived_presigned_urls_carrying_the_response_headers() {
    let store = Store::s3().await;
    // Stored as something else, so the download's Content-Type can only come from the override.
    let key = store.put(b"hello", "application/octet-stream").await;
    let Fetched::Redirect(url) = store.store.fetch(&key, &pdf_headers()).await.unwrap() else {
        panic!("S3 downloads are redirects");
    };
    let parsed = url::Url::parse(&url).unwrap();
    let query: std::collections::HashMap<String, String> = parsed.query_pairs().into_owned().collect();
    assert_eq!(query.get("X-Amz-Expires").map(String::as_str), Some("60"));
    assert_eq!(query.get("response-content-type").map(String::as_str), Some("application/pdf"));
    assert_eq!(query.get("response-content-disposition"), Some(&pdf_headers().content_disposition));
    assert_eq!(query.get("response-cache-control").map(String::as_str), Some("no-store"));
    assert!(parsed.path().ends_with(key.as_str()), "{url}");

    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    // s3s applies the response-* overrides in its GetObject operation, as AWS S3 does: the
    // response has the portal's headers, not the ones stored with the object.
    assert_eq!(header(&response, "content-type"), Some("application/pdf"));
    assert_eq!(header(&response, "content-disposition"), Some(pdf_headers().content_disposition.as_str()));
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"hello");
}

#[tokio::test]
async fn s3_refuses_a_tampered_presigned_url() {
    let store = Store::s3().await;
    let key = store.put(b"secret plans", "text/plain").await;
    let Fetched::Redirect(url) = store.store.fetch(&key, &pdf_headers()).await.unwrap() else {
        panic!("S3 downloads are redirects");
    };
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200, "the URL as signed works");

    // One character of the signature changed.
    let marker = "X-Amz-Signature=";
    let at = url.find(marker).unwrap() + marker.len();
    let first = url.as_bytes()[at];
    let swapped = if first == b'0' { '1' } else { '0' };
    let tampered = format!("{}{swapped}{}", &url[..at], &url[at + 1..]);
    assert_ne!(tampered, url);
    let response = reqwest::get(&tampered).await.unwrap();
    assert_eq!(response.status(), 403, "{}", response.text().await.unwrap());

    // The response overrides are signed too: another file name is refused.
    let renamed = url.replace("Q3%20report.pdf", "evil.html");
    assert_ne!(renamed, url);
    assert_eq!(reqwest::get(&renamed).await.unwrap().status(), 403);

    // And so is the key: the URL of one object is no good for another.
    let other = store.put(b"other", "text/plain").await;
    let moved = url.replace(key.as_str(), other.as_str());
    assert_eq!(reqwest::get(&moved).await.unwrap().status(), 403);
}

/// 20 MB written in 64 KiB chunks: on S3 a multipart upload (8 MiB parts), locally a rename.
async fn large_file_round_trips(store: Store) {
    const TOTAL: usize = 20 * 1000 * 1000;
    const CHUNK: usize = 64 * 1024;
    let mut spool = store.store.spool().await.unwrap();
    let mut hasher = Sha256::new();
    let mut written = 0usize;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    while written < TOTAL {
        let n = CHUNK.min(TOTAL - written);
        // Incompressible, reproducible bytes (xorshift), different in every chunk.
        let chunk: Vec<u8> = (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        hasher.update(&chunk);
        spool.write(&chunk).await.unwrap();
        written += n;
    }
    assert_eq!(spool.len(), TOTAL as u64);
    assert_eq!(spool.head().len(), portal::storage::HEAD_BYTES);
    let spooled = spool.finish().await.unwrap();
    let expected = hex::encode(hasher.finalize());
    assert_eq!(spooled.sha256(), expected);
    assert_eq!(spooled.len(), TOTAL as u64);

    let key = BlobKey::random();
    store.store.put(&key, spooled, "application/octet-stream").await.unwrap();
    assert!(spool_is_empty(&store.spool_dir()).await, "put consumes the spool file");
    let body = store.download(&key, &pdf_headers()).await;
    assert_eq!(body.len(), TOTAL);
    assert_eq!(hex::encode(Sha256::digest(&body)), expected);
    store.store.delete(&key).await.unwrap();
    assert!(store.objects().await.is_empty());
}

#[tokio::test]
async fn local_large_file_round_trips() {
    large_file_round_trips(Store::local().await).await;
}

#[tokio::test]
async fn s3_large_file_round_trips() {
    large_file_round_trips(Store::s3().await).await;
}

async fn delete_is_idempotent(store: Store) {
    let never = BlobKey::random();
    store.store.delete(&never).await.unwrap();
    assert!(!store.store.exists(&never).await.unwrap());
    let key = store.put(b"to be deleted", "text/plain").await;
    let kept = store.put(b"to be kept", "text/plain").await;
    store.store.delete(&key).await.unwrap();
    store.store.delete(&key).await.unwrap();
    assert_eq!(store.objects().await, vec![kept.as_str().to_owned()], "only the deleted object is gone");
}

#[tokio::test]
async fn local_delete_is_idempotent() {
    delete_is_idempotent(Store::local().await).await;
}

#[tokio::test]
async fn s3_delete_is_idempotent() {
    delete_is_idempotent(Store::s3().await).await;
}

#[tokio::test]
async fn dropped_uploads_leave_nothing_behind() {
    for store in [Store::local().await, Store::s3().await] {
        let mut unfinished = store.store.spool().await.unwrap();
        unfinished.write(b"half an upload").await.unwrap();
        drop(unfinished);
        let mut spool = store.store.spool().await.unwrap();
        spool.write(b"finished, never stored").await.unwrap();
        drop(spool.finish().await.unwrap());
        assert!(spool_is_empty(&store.spool_dir()).await, "{}", store.store.kind());
        assert!(store.objects().await.is_empty(), "{}", store.store.kind());
    }
}

#[tokio::test]
async fn s3_open_fails_clearly_without_leaking_the_secret() {
    let good = s3::settings().await;
    let open = |settings: portal::config::S3Settings| async move {
        let config = Config {
            data_dir: fresh_data_dir(&format!("storage-{}", uuid::Uuid::new_v4().simple())),
            storage: StorageSettings::S3(settings),
            ..Config::default()
        };
        BlobStore::open(&config).await.map(|_| ()).unwrap_err()
    };

    let wrong_secret = portal::config::S3Settings { secret_key: "not-the-secret-at-all".into(), ..good.clone() };
    let error = open(wrong_secret).await;
    let message = error.to_string();
    assert!(matches!(error, StorageError::Unreachable { .. }), "{error:?}");
    assert!(message.contains(&good.bucket) && message.contains(&good.endpoint), "{message}");
    assert!(message.contains("403") && message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(!message.contains("not-the-secret-at-all") && !message.contains(s3::SECRET_KEY), "{message}");

    let missing = portal::config::S3Settings { bucket: "t-no-such-bucket".into(), ..good.clone() };
    let message = open(missing).await.to_string();
    assert!(message.contains("t-no-such-bucket") && message.contains("NoSuchBucket"), "{message}");

    // Nothing listens on the port of a listener just closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let down = portal::config::S3Settings { endpoint: endpoint.clone(), ..good.clone() };
    let message = open(down).await.to_string();
    assert!(message.contains(&endpoint) && message.contains(&good.bucket), "{message}");
}
