//! Blobs in an S3-compatible bucket, through rust-s3.

use std::collections::HashMap;
use std::time::Duration;

use s3::Bucket;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::region::Region;
use secrecy::ExposeSecret;

use super::{BlobKey, Fetched, ResponseHeaders, Spooled, StorageError};
use crate::config::S3Settings;

/// A presigned download URL works this long: enough to follow the redirect, too short to share.
const PRESIGN_SECS: u32 = 60;
/// Parts of one multipart upload in flight at once. rust-s3 reads 8 MiB parts, so an upload holds
/// a few parts' worth of memory whatever the file's size.
const PARTS_IN_FLIGHT: usize = 2;
/// The reachability check at start-up gives up after this long.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

pub(super) struct S3Store {
    bucket: Box<Bucket>,
    name: String,
    endpoint: String,
}

impl S3Store {
    /// Builds the bucket handle and lists at most one key, which needs the bucket to exist and the
    /// credentials to be accepted.
    pub(super) async fn open(settings: &S3Settings) -> Result<S3Store, StorageError> {
        let name = settings.bucket.clone();
        let endpoint = settings.endpoint.clone();
        let unreachable =
            |detail: String| StorageError::Unreachable { bucket: name.clone(), endpoint: endpoint.clone(), detail };
        let region = Region::Custom { region: settings.region.clone(), endpoint: settings.endpoint.clone() };
        let credentials =
            Credentials::new(Some(&settings.access_key), Some(settings.secret_key.expose_secret()), None, None, None)
                .map_err(|e| unreachable(format!("credentials: {e}")))?;
        let mut bucket = Bucket::new(&settings.bucket, region, credentials).map_err(|e| unreachable(describe(&e)))?;
        if settings.path_style {
            bucket.set_path_style();
        }
        let probe = bucket.with_request_timeout(OPEN_TIMEOUT).map_err(|e| unreachable(describe(&e)))?;
        if let Err(error) = probe.list_page(String::new(), None, None, None, Some(1)).await {
            let hint = match &error {
                S3Error::HttpFailWithBody(401 | 403, _) => {
                    " (check PORTAL_S3_ACCESS_KEY, PORTAL_S3_SECRET_KEY and PORTAL_S3_REGION)"
                }
                S3Error::HttpFailWithBody(404, _) => " (create the bucket first, or check PORTAL_S3_BUCKET)",
                _ => "",
            };
            return Err(unreachable(format!("{}{hint}", describe(&error))));
        }
        Ok(S3Store { bucket, name, endpoint })
    }

    fn failed(&self, operation: &'static str, key: &BlobKey, error: &S3Error) -> StorageError {
        StorageError::S3 {
            operation,
            key: key.to_string(),
            bucket: self.name.clone(),
            endpoint: self.endpoint.clone(),
            detail: describe(error),
        }
    }

    /// Streams the spool file up (one PUT below 8 MiB, a multipart upload above), then deletes it.
    pub(super) async fn put(
        &self,
        key: &BlobKey,
        mut spooled: Spooled,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let path = spooled.file.path.clone();
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| StorageError::io("open", &path, e))?;
        let response = self
            .bucket
            .put_object_stream_builder(key.as_str())
            .with_content_type(content_type)
            .with_max_concurrent_chunks(PARTS_IN_FLIGHT)
            .execute_stream(&mut file)
            .await
            .map_err(|e| self.failed("upload", key, &e))?;
        drop(file);
        if response.uploaded_bytes() as u64 != spooled.len() {
            return Err(StorageError::S3 {
                operation: "upload",
                key: key.to_string(),
                bucket: self.name.clone(),
                endpoint: self.endpoint.clone(),
                detail: format!("sent {} bytes of {}", response.uploaded_bytes(), spooled.len()),
            });
        }
        match tokio::fs::remove_file(&path).await {
            Ok(()) => spooled.file.disarm(),
            // Stored all the same; the spool file's drop tries again.
            Err(error) => tracing::warn!(path = %path.display(), %error, "could not remove a spool file"),
        }
        Ok(())
    }

    /// A presigned GET whose response carries the portal's headers. Checks the object exists first,
    /// so a missing object is `NotFound` here as on the local store, not an S3 error page.
    pub(super) async fn fetch(&self, key: &BlobKey, headers: &ResponseHeaders) -> Result<Fetched, StorageError> {
        if !self.exists(key).await? {
            return Err(StorageError::NotFound { key: key.to_string() });
        }
        let queries = HashMap::from([
            ("response-content-type".to_owned(), headers.content_type.clone()),
            ("response-content-disposition".to_owned(), headers.content_disposition.clone()),
            ("response-cache-control".to_owned(), "no-store".to_owned()),
        ]);
        let url = self
            .bucket
            .presign_get(key.as_str(), PRESIGN_SECS, Some(queries))
            .await
            .map_err(|e| self.failed("presign", key, &e))?;
        Ok(Fetched::Redirect(url))
    }

    pub(super) async fn delete(&self, key: &BlobKey) -> Result<(), StorageError> {
        match self.bucket.delete_object(key.as_str()).await {
            Ok(_) => Ok(()),
            // AWS answers 204 for a missing key; some servers say 404 NoSuchKey. A missing bucket is
            // an error all the same.
            Err(S3Error::HttpFailWithBody(404, body)) if xml_element(&body, "Code") != Some("NoSuchBucket") => Ok(()),
            Err(e) => Err(self.failed("delete", key, &e)),
        }
    }

    pub(super) async fn exists(&self, key: &BlobKey) -> Result<bool, StorageError> {
        self.bucket.object_exists(key.as_str()).await.map_err(|e| self.failed("look up", key, &e))
    }
}

/// An S3 failure in a line: the HTTP status with S3's error code and message rather than the whole
/// XML body (which may echo the request, never the secret key, but is long).
fn describe(error: &S3Error) -> String {
    match error {
        S3Error::HttpFailWithBody(status, body) => {
            let code = xml_element(body, "Code");
            let message = xml_element(body, "Message");
            match (code, message) {
                (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
                (Some(code), None) => format!("HTTP {status} {code}"),
                _ => format!("HTTP {status}"),
            }
        }
        other => {
            let mut text = other.to_string();
            // The underlying cause (connection refused, DNS, TLS) is the useful part.
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

fn xml_element<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))?;
    let text = body[start..start + end].trim();
    Some(text.get(..text.len().min(300)).unwrap_or(text))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn describes_s3_errors_in_a_line() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The bucket does not exist</Message></Error>";
        assert_eq!(
            describe(&S3Error::HttpFailWithBody(404, body.into())),
            "HTTP 404 NoSuchBucket: The bucket does not exist"
        );
        assert_eq!(describe(&S3Error::HttpFailWithBody(502, "<html>bad gateway</html>".into())), "HTTP 502");
    }
}
