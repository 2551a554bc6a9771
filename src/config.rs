//! One typed configuration, read once from `PORTAL_*` variables and `DATABASE_URL`.
//!
//! Nothing reads the environment after start-up: the config is passed down
//! explicitly, so tests can run many differently configured apps in parallel.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Address the HTTP server binds (`PORTAL_ADDR`, default 127.0.0.1:8080; port 0 picks a free one).
    pub addr: SocketAddr,
    /// Everything local lives here: the private PostgreSQL cluster, mail files, blobs (`PORTAL_DATA_DIR`).
    pub data_dir: PathBuf,
    /// An external PostgreSQL server; when unset the portal runs its own cluster under the data dir.
    pub database_url: Option<SecretString>,
    /// Logins for the two connection pools on an external server (`PORTAL_DATABASE_WEB_URL`,
    /// `PORTAL_DATABASE_STAFF_URL`): the `portal_web` and `portal_web_staff` roles the migrations create.
    pub database_web_url: Option<SecretString>,
    pub database_staff_url: Option<SecretString>,
    /// The origin users reach the portal at (`PORTAL_PUBLIC_URL`), used for links in email, origin
    /// checks and whether cookies are `Secure`. Defaults to `http://<addr>` once the server is bound.
    pub public_url: Option<String>,
    /// A signed-in session ends after this long without a request (`PORTAL_SESSION_IDLE_MINUTES`).
    pub session_idle: Duration,
    /// ... and after this long whatever happens (`PORTAL_SESSION_MAX_HOURS`).
    pub session_absolute: Duration,
    /// "Keep me signed in" sessions last this long (`PORTAL_REMEMBER_DAYS`), still revocable.
    pub remember_for: Duration,
    /// Database connections per process (`PORTAL_DB_POOL_SIZE`).
    pub db_pool_size: u32,
    /// HTTP worker threads (`PORTAL_WORKERS`, default: one per core).
    pub workers: usize,
    /// Events are kept this long (`PORTAL_EVENTS_RETENTION_HOURS`) so live pages can catch up after
    /// a disconnect; a page away longer is re-rendered whole instead.
    pub events_retention: Duration,
    /// A bearer token that lets a metrics scraper read `/metrics` (`PORTAL_METRICS_TOKEN`, at
    /// least 32 characters); staff signed in may read it without one.
    pub metrics_token: Option<SecretString>,
    /// Emit logs as JSON lines (`PORTAL_LOG_FORMAT=json`) instead of human-readable text.
    pub log_json: bool,
    /// Where email goes (`PORTAL_SMTP_URL`, lettre's URL form: `smtp://user:pass@host:587?tls=required`,
    /// `smtps://…:465`, or plain `smtp://127.0.0.1:2525` for a local relay). Without it, emails are
    /// written as `.eml` files under `<data_dir>/mail` and logged.
    pub smtp_url: Option<SecretString>,
    /// The sender of every email (`PORTAL_MAIL_FROM`), checked to be a mailbox like `Portal <portal@example.com>`.
    pub mail_from: String,
    /// The mail worker looks for due emails this often, besides waking on `NOTIFY portal_outbox`.
    pub mail_poll: Duration,
    /// A failed send is retried after this long, doubling per attempt up to an hour.
    pub mail_retry_base: Duration,
    /// Where uploaded files are kept: under `<data_dir>/blobs` (the default), or in an S3 bucket when
    /// `PORTAL_S3_BUCKET` is set (see [`S3Settings`]). Uploads are spooled under the data dir either way.
    pub storage: StorageSettings,
    /// The largest file an upload may carry (`PORTAL_UPLOAD_MAX_MB`, 1 to 10240, default 100 MiB).
    pub upload_max_bytes: u64,
    /// A download link handed to a browser works for this long (`PORTAL_DOWNLOAD_LINK_MINUTES`,
    /// 1 to 60, default 5).
    pub download_grant_ttl: Duration,
}

/// Where the blob store keeps uploaded files.
#[derive(Clone, Debug, Default)]
pub enum StorageSettings {
    /// Files under `<data_dir>/blobs/objects`.
    #[default]
    Local,
    /// An S3-compatible bucket.
    S3(S3Settings),
}

/// An S3-compatible bucket (AWS S3, MinIO, Garage, Ceph, R2, ...), from `PORTAL_S3_*`.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// `PORTAL_S3_ENDPOINT`, an origin such as `https://minio.internal:9000`; without it, AWS S3 for
    /// the region (`https://s3.<region>.amazonaws.com`).
    pub endpoint: String,
    /// `PORTAL_S3_REGION` (default `us-east-1`); part of every signature, even on non-AWS servers.
    pub region: String,
    /// `PORTAL_S3_BUCKET`: setting it selects S3 storage. The bucket must exist.
    pub bucket: String,
    /// `PORTAL_S3_ACCESS_KEY`, required with the bucket.
    pub access_key: String,
    /// `PORTAL_S3_SECRET_KEY`, required with the bucket; never printed.
    pub secret_key: SecretString,
    /// `PORTAL_S3_PATH_STYLE`: `http://host/bucket/key` URLs instead of `http://bucket.host/key`.
    /// Defaults to true when an endpoint is given (most self-hosted servers want it), else false.
    pub path_style: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("var"),
            database_url: None,
            database_web_url: None,
            database_staff_url: None,
            public_url: None,
            session_idle: Duration::from_secs(2 * 3600),
            session_absolute: Duration::from_secs(12 * 3600),
            remember_for: Duration::from_secs(30 * 24 * 3600),
            db_pool_size: 16,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            events_retention: Duration::from_secs(24 * 3600),
            metrics_token: None,
            log_json: false,
            smtp_url: None,
            mail_from: "Portal <portal@localhost>".into(),
            mail_poll: Duration::from_secs(5),
            mail_retry_base: Duration::from_secs(30),
            storage: StorageSettings::Local,
            upload_max_bytes: 100 * 1024 * 1024,
            download_grant_ttl: Duration::from_secs(5 * 60),
        }
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Builds the config from any variable source, so parsing is testable without touching the process env.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Config::default();
        if let Some(addr) = get("PORTAL_ADDR") {
            config.addr = addr.parse().map_err(|_| ConfigError::Invalid {
                name: "PORTAL_ADDR",
                reason: format!("{addr:?} is not an address like 127.0.0.1:8080"),
            })?;
        }
        if let Some(dir) = get("PORTAL_DATA_DIR") {
            config.data_dir = PathBuf::from(dir);
        }
        config.database_url = get("DATABASE_URL").map(SecretString::from);
        config.database_web_url = get("PORTAL_DATABASE_WEB_URL").map(SecretString::from);
        config.database_staff_url = get("PORTAL_DATABASE_STAFF_URL").map(SecretString::from);
        if config.database_web_url.is_some() != config.database_staff_url.is_some() {
            return Err(ConfigError::Invalid {
                name: "PORTAL_DATABASE_WEB_URL",
                reason: "set it together with PORTAL_DATABASE_STAFF_URL, or neither".into(),
            });
        }
        if let Some(url) = get("PORTAL_PUBLIC_URL") {
            config.public_url = Some(parse_origin(&url)?);
        }
        if let Some(n) = number(&get, "PORTAL_SESSION_IDLE_MINUTES", 1, 60 * 24 * 30)? {
            config.session_idle = Duration::from_secs(n * 60);
        }
        if let Some(n) = number(&get, "PORTAL_SESSION_MAX_HOURS", 1, 24 * 90)? {
            config.session_absolute = Duration::from_secs(n * 3600);
        }
        if let Some(n) = number(&get, "PORTAL_REMEMBER_DAYS", 1, 400)? {
            config.remember_for = Duration::from_secs(n * 24 * 3600);
        }
        if let Some(n) = number(&get, "PORTAL_DB_POOL_SIZE", 1, 1000)? {
            config.db_pool_size = n as u32;
        }
        if let Some(n) = number(&get, "PORTAL_WORKERS", 1, 512)? {
            config.workers = n as usize;
        }
        if let Some(n) = number(&get, "PORTAL_EVENTS_RETENTION_HOURS", 1, 24 * 90)? {
            config.events_retention = Duration::from_secs(n * 3600);
        }
        if let Some(token) = get("PORTAL_METRICS_TOKEN") {
            if token.len() < 32 {
                return Err(ConfigError::Invalid {
                    name: "PORTAL_METRICS_TOKEN",
                    reason: "use at least 32 random characters".into(),
                });
            }
            config.metrics_token = Some(SecretString::from(token));
        }
        config.log_json = matches!(get("PORTAL_LOG_FORMAT").as_deref(), Some("json"));
        if let Some(url) = get("PORTAL_SMTP_URL") {
            // The URL holds the SMTP password: the error names the variable, never the value.
            if !crate::address::smtp_url_is_valid(&url) {
                return Err(ConfigError::Invalid {
                    name: "PORTAL_SMTP_URL",
                    reason: "expected smtp://[user:pass@]host[:port][?tls=required|opportunistic] or smtps://…".into(),
                });
            }
            config.smtp_url = Some(SecretString::from(url));
        }
        if let Some(from) = get("PORTAL_MAIL_FROM") {
            if !crate::address::mailbox_is_valid(&from) {
                return Err(ConfigError::Invalid {
                    name: "PORTAL_MAIL_FROM",
                    reason: format!("{from:?} is not a mailbox like `Portal <portal@example.com>`"),
                });
            }
            config.mail_from = from;
        }
        config.storage = storage_settings(&get)?;
        if let Some(n) = number(&get, "PORTAL_UPLOAD_MAX_MB", 1, 10 * 1024)? {
            config.upload_max_bytes = n * 1024 * 1024;
        }
        if let Some(n) = number(&get, "PORTAL_DOWNLOAD_LINK_MINUTES", 1, 60)? {
            config.download_grant_ttl = Duration::from_secs(n * 60);
        }
        Ok(config)
    }
}

/// `PORTAL_S3_*`: S3 when the bucket is set, local otherwise. Errors name the variable and never
/// show the secret key.
fn storage_settings(get: &impl Fn(&str) -> Option<String>) -> Result<StorageSettings, ConfigError> {
    let Some(bucket) = get("PORTAL_S3_BUCKET") else {
        // Half an S3 configuration is a mistake, not a wish for local storage.
        for name in ["PORTAL_S3_ENDPOINT", "PORTAL_S3_REGION", "PORTAL_S3_ACCESS_KEY", "PORTAL_S3_SECRET_KEY"] {
            if get(name).is_some() {
                return Err(ConfigError::Invalid {
                    name: "PORTAL_S3_BUCKET",
                    reason: format!("{name} is set but the bucket is not: set PORTAL_S3_BUCKET to store files on S3"),
                });
            }
        }
        return Ok(StorageSettings::Local);
    };
    let bucket = bucket.trim().to_owned();
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid_bucket {
        return Err(ConfigError::Invalid {
            name: "PORTAL_S3_BUCKET",
            reason: format!("{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, dots and hyphens)"),
        });
    }
    let region = get("PORTAL_S3_REGION").map_or_else(|| "us-east-1".to_owned(), |r| r.trim().to_owned());
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ConfigError::Invalid {
            name: "PORTAL_S3_REGION",
            reason: format!("{region:?} is not a region name like us-east-1"),
        });
    }
    let endpoint = match get("PORTAL_S3_ENDPOINT") {
        Some(url) => Some(origin_of("PORTAL_S3_ENDPOINT", &url)?),
        None => None,
    };
    let required = |name: &'static str| {
        get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Invalid { name, reason: "required when PORTAL_S3_BUCKET is set".into() })
    };
    let access_key = required("PORTAL_S3_ACCESS_KEY")?;
    let secret_key = SecretString::from(required("PORTAL_S3_SECRET_KEY")?);
    let path_style = match get("PORTAL_S3_PATH_STYLE") {
        None => endpoint.is_some(),
        Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "PORTAL_S3_PATH_STYLE",
                    reason: format!("expected true or false, got {raw:?}"),
                });
            }
        },
    };
    let endpoint = endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
    Ok(StorageSettings::S3(S3Settings { endpoint, region, bucket, access_key, secret_key, path_style }))
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(None);
    };
    match raw.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ConfigError::Invalid {
            name,
            reason: format!("expected a whole number from {min} to {max}, got {raw:?}"),
        }),
    }
}

/// Normalises a public URL to its origin (`scheme://host[:port]`), refusing anything with a path,
/// credentials or a scheme other than http(s), because it is compared against `Origin` headers.
pub fn parse_origin(url: &str) -> Result<String, ConfigError> {
    origin_of("PORTAL_PUBLIC_URL", url)
}

fn origin_of(name: &'static str, url: &str) -> Result<String, ConfigError> {
    // A URL with credentials in it is refused without being shown.
    let shown = if url.contains('@') { "the URL".to_owned() } else { format!("{url:?}") };
    let invalid = |reason: &str| ConfigError::Invalid { name, reason: format!("{shown}: {reason}") };
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\', ' ']) {
        return Err(invalid("must be an origin such as https://portal.example.com, without a path"));
    }
    Ok(trimmed.to_ascii_lowercase())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_suit_a_laptop() {
        let config = from(&[]).unwrap();
        assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("var"));
        assert!(config.database_url.is_none());
    }

    #[test]
    fn reads_variables() {
        let config = from(&[
            ("PORTAL_ADDR", "0.0.0.0:9000"),
            ("PORTAL_PUBLIC_URL", "https://Portal.Example.com/"),
            ("PORTAL_SESSION_IDLE_MINUTES", "15"),
            ("PORTAL_EVENTS_RETENTION_HOURS", "48"),
        ])
        .unwrap();
        assert_eq!(config.events_retention, Duration::from_secs(48 * 3600));
        assert_eq!(config.addr.port(), 9000);
        assert_eq!(config.public_url.as_deref(), Some("https://portal.example.com"));
        assert_eq!(config.session_idle, Duration::from_secs(900));
    }

    #[test]
    fn refuses_bad_values_with_their_name() {
        let err = from(&[("PORTAL_ADDR", "localhost")]).unwrap_err();
        assert!(err.to_string().contains("PORTAL_ADDR"));
        assert!(from(&[("PORTAL_SESSION_IDLE_MINUTES", "0")]).is_err());
        assert!(from(&[("PORTAL_PUBLIC_URL", "https://a.example/path")]).is_err());
        assert!(from(&[("PORTAL_PUBLIC_URL", "ftp://a.example")]).is_err());
        assert!(from(&[("PORTAL_PUBLIC_URL", "https://user@a.example")]).is_err());
        let short = from(&[("PORTAL_METRICS_TOKEN", "secret")]).unwrap_err();
        assert!(short.to_string().contains("PORTAL_METRICS_TOKEN"));
    }

    #[test]
    fn reads_mail_settings() {
        use secrecy::ExposeSecret;
        let config = from(&[]).unwrap();
        assert!(config.smtp_url.is_none());
        assert_eq!(config.mail_from, "Portal <portal@localhost>");
        assert!(crate::address::mailbox_is_valid(&config.mail_from));

        let config = from(&[
            ("PORTAL_SMTP_URL", "smtp://user:p%40ss@mail.example.com:587?tls=required"),
            ("PORTAL_MAIL_FROM", "Acme Portal <portal@acme.example>"),
        ])
        .unwrap();
        assert_eq!(
            config.smtp_url.as_ref().map(|u| u.expose_secret().to_owned()).as_deref(),
            Some("smtp://user:p%40ss@mail.example.com:587?tls=required")
        );
        assert!(!format!("{config:?}").contains("p%40ss"), "the SMTP password never prints");
        assert_eq!(config.mail_from, "Acme Portal <portal@acme.example>");
        for url in ["smtps://mail.example.com", "smtp://127.0.0.1:2525", "smtp://h?tls=opportunistic"] {
            assert!(from(&[("PORTAL_SMTP_URL", url)]).is_ok(), "{url}");
        }

        let err = from(&[("PORTAL_SMTP_URL", "http://user:hunter2@mail.example.com")]).unwrap_err();
        assert!(err.to_string().contains("PORTAL_SMTP_URL"));
        assert!(!err.to_string().contains("hunter2"), "the error never shows the password");
        assert!(from(&[("PORTAL_SMTP_URL", "smtp://h?tls=sometimes")]).is_err());
        let senders =
            ["portal", "Portal <portal@>", "Evil\r\nBcc: x@example.com <a@example.com>", "a@b.example, c@d.example"];
        for bad in senders {
            let err = from(&[("PORTAL_MAIL_FROM", bad)]).unwrap_err();
            assert!(err.to_string().contains("PORTAL_MAIL_FROM"), "{bad}");
        }
    }

    #[test]
    fn storage_is_local_unless_a_bucket_is_set() {
        let config = from(&[]).unwrap();
        assert!(matches!(config.storage, StorageSettings::Local));
        assert_eq!(config.upload_max_bytes, 100 * 1024 * 1024);
        assert_eq!(config.download_grant_ttl, Duration::from_secs(300));

        let config = from(&[("PORTAL_UPLOAD_MAX_MB", "2048"), ("PORTAL_DOWNLOAD_LINK_MINUTES", "1")]).unwrap();
        assert_eq!(config.upload_max_bytes, 2048 * 1024 * 1024);
        assert_eq!(config.download_grant_ttl, Duration::from_secs(60));
        for (name, bad) in [
            ("PORTAL_UPLOAD_MAX_MB", "0"),
            ("PORTAL_UPLOAD_MAX_MB", "10241"),
            ("PORTAL_UPLOAD_MAX_MB", "1.5"),
            ("PORTAL_DOWNLOAD_LINK_MINUTES", "0"),
            ("PORTAL_DOWNLOAD_LINK_MINUTES", "61"),
        ] {
            let err = from(&[(name, bad)]).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={bad}: {err}");
        }
    }

    #[test]
    fn reads_s3_settings() {
        use secrecy::ExposeSecret;
        let keys = [("PORTAL_S3_ACCESS_KEY", "AKID"), ("PORTAL_S3_SECRET_KEY", "s3cr3t-value")];

        // AWS: no endpoint, virtual-hosted style.
        let config =
            from(&[&[("PORTAL_S3_BUCKET", "portal-files"), ("PORTAL_S3_REGION", "eu-west-3")][..], &keys].concat())
                .unwrap();
        let StorageSettings::S3(s3) = &config.storage else { panic!("S3 expected") };
        assert_eq!(s3.bucket, "portal-files");
        assert_eq!(s3.region, "eu-west-3");
        assert_eq!(s3.endpoint, "https://s3.eu-west-3.amazonaws.com");
        assert!(!s3.path_style);
        assert_eq!(s3.access_key, "AKID");
        assert_eq!(s3.secret_key.expose_secret(), "s3cr3t-value");
        assert!(!format!("{config:?}").contains("s3cr3t-value"), "the secret key never prints");

        // A self-hosted server: path style unless told otherwise, us-east-1 by default.
        let minio = [("PORTAL_S3_BUCKET", "files"), ("PORTAL_S3_ENDPOINT", "http://127.0.0.1:9000/")];
        let config = from(&[&minio[..], &keys].concat()).unwrap();
        let StorageSettings::S3(s3) = &config.storage else { panic!("S3 expected") };
        assert_eq!(s3.endpoint, "http://127.0.0.1:9000");
        assert_eq!(s3.region, "us-east-1");
        assert!(s3.path_style);
        let config = from(&[&minio[..], &keys, &[("PORTAL_S3_PATH_STYLE", "false")]].concat()).unwrap();
        let StorageSettings::S3(s3) = &config.storage else { panic!("S3 expected") };
        assert!(!s3.path_style);
    }

    #[test]
    fn refuses_incomplete_or_bad_s3_settings_by_name() {
        let secret = "hunter2-secret";
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("PORTAL_S3_BUCKET", "files"), ("PORTAL_S3_SECRET_KEY", secret)], "PORTAL_S3_ACCESS_KEY"),
            (vec![("PORTAL_S3_BUCKET", "files"), ("PORTAL_S3_ACCESS_KEY", "AKID")], "PORTAL_S3_SECRET_KEY"),
            (
                vec![("PORTAL_S3_ENDPOINT", "http://127.0.0.1:9000"), ("PORTAL_S3_SECRET_KEY", secret)],
                "PORTAL_S3_BUCKET",
            ),
            (
                vec![
                    ("PORTAL_S3_BUCKET", "files"),
                    ("PORTAL_S3_ACCESS_KEY", "AKID"),
                    ("PORTAL_S3_SECRET_KEY", secret),
                    ("PORTAL_S3_ENDPOINT", "ftp://files.example"),
                ],
                "PORTAL_S3_ENDPOINT",
            ),
            (
                vec![
                    ("PORTAL_S3_BUCKET", "files"),
                    ("PORTAL_S3_ACCESS_KEY", "AKID"),
                    ("PORTAL_S3_SECRET_KEY", secret),
                    ("PORTAL_S3_ENDPOINT", "https://AKID:hunter2-secret@s3.example"),
                ],
                "PORTAL_S3_ENDPOINT",
            ),
            (
                vec![
                    ("PORTAL_S3_BUCKET", "files"),
                    ("PORTAL_S3_ACCESS_KEY", "AKID"),
                    ("PORTAL_S3_SECRET_KEY", secret),
                    ("PORTAL_S3_PATH_STYLE", "yes please"),
                ],
                "PORTAL_S3_PATH_STYLE",
            ),
            (
                vec![
                    ("PORTAL_S3_BUCKET", "../Files"),
                    ("PORTAL_S3_ACCESS_KEY", "AKID"),
                    ("PORTAL_S3_SECRET_KEY", secret),
                ],
                "PORTAL_S3_BUCKET",
            ),
            (
                vec![
                    ("PORTAL_S3_BUCKET", "files"),
                    ("PORTAL_S3_ACCESS_KEY", "AKID"),
                    ("PORTAL_S3_SECRET_KEY", secret),
                    ("PORTAL_S3_REGION", "eu west"),
                ],
                "PORTAL_S3_REGION",
            ),
        ];
        for (vars, name) in cases {
            let err = from(&vars).unwrap_err().to_string();
            assert!(err.contains(name), "{vars:?} should fail on {name}: {err}");
            assert!(!err.contains("hunter2"), "the error never shows the secret: {err}");
        }
    }
}
