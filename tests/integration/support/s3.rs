//! A real S3 server for the tests, in process: s3s (the S3 protocol, with SigV4 signature checks, so
//! a tampered presigned URL gets 403) over s3s-fs (objects as files in a directory under /tmp).
//!
//! One server per test process, started on first use. Every `#[tokio::test]` has its own runtime,
//! and a server spawned on one would die with its test, so the server has a thread and a runtime of
//! its own for the life of the process. Each caller of [`settings`] gets a fresh bucket on it.
//! The directories of test processes that are gone are removed when the next one starts.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use portal::config::S3Settings;
use s3::creds::Credentials;
use s3::region::Region;
use s3::{Bucket, BucketConfiguration};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use secrecy::SecretString;
use tokio::sync::OnceCell;

pub const ACCESS_KEY: &str = "AKIDPORTALTEST";
pub const SECRET_KEY: &str = "portal-test-secret-key-0123456789";
pub const REGION: &str = "us-east-1";
const ROOT: &str = "/tmp/portal-test-s3";

pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The directory s3s-fs keeps the buckets in (one subdirectory per bucket).
    pub root: PathBuf,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();

/// The process's S3 server, started on first use.
pub async fn server() -> &'static Server {
    SERVER.get_or_init(|| async { start() }).await
}

fn start() -> Server {
    let parent = Path::new(ROOT);
    super::sweep_dead_runs(parent);
    let root = parent.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("S3 server directory");
    let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs over the directory");
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();

    // Bound here, so the port is known before the server thread runs.
    let listener = StdListener::bind("127.0.0.1:0").expect("a free port for the S3 server");
    listener.set_nonblocking(true).expect("non-blocking listener");
    let port = listener.local_addr().expect("S3 server address").port();
    std::thread::Builder::new()
        .name("test-s3-server".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("test-s3-worker")
                .enable_all()
                .build()
                .expect("S3 server runtime");
            runtime.block_on(serve(listener, service));
        })
        .expect("S3 server thread");
    Server { endpoint: format!("http://127.0.0.1:{port}"), root }
}

async fn serve(listener: StdListener, service: S3Service) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(_) => {
                // Out of file descriptors, say: try again shortly rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let connection = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// Settings for a new, empty bucket (`t-<uuid>`) on the test server, path-style like most
/// self-hosted servers.
pub async fn settings() -> S3Settings {
    let server = server().await;
    let name = format!("t-{}", uuid::Uuid::new_v4().simple());
    let created = Bucket::create_with_path_style(&name, region(server), credentials(), BucketConfiguration::default())
        .await
        .expect("bucket created on the test S3 server");
    assert!(created.success(), "bucket {name} created: {} {}", created.response_code, created.response_text);
    S3Settings {
        endpoint: server.endpoint.clone(),
        region: REGION.into(),
        bucket: name,
        access_key: ACCESS_KEY.into(),
        secret_key: SecretString::from(SECRET_KEY),
        path_style: true,
    }
}

fn region(server: &Server) -> Region {
    Region::Custom { region: REGION.into(), endpoint: server.endpoint.clone() }
}

fn credentials() -> Credentials {
    Credentials::new(Some(ACCESS_KEY), Some(SECRET_KEY), None, None, None).expect("credentials")
}

/// A rust-s3 handle on the bucket of `settings`, to look behind the portal's back.
pub fn bucket(settings: &S3Settings) -> Box<Bucket> {
    use secrecy::ExposeSecret;
    let region = Region::Custom { region: settings.region.clone(), endpoint: settings.endpoint.clone() };
    let credentials =
        Credentials::new(Some(&settings.access_key), Some(settings.secret_key.expose_secret()), None, None, None)
            .expect("credentials");
    let bucket = Bucket::new(&settings.bucket, region, credentials).expect("bucket handle");
    if settings.path_style { bucket.with_path_style() } else { bucket }
}

/// Every key in the bucket, sorted.
pub async fn keys(settings: &S3Settings) -> Vec<String> {
    let pages = bucket(settings).list(String::new(), None).await.expect("list the test bucket");
    let mut keys: Vec<String> = pages.into_iter().flat_map(|page| page.contents).map(|object| object.key).collect();
    keys.sort();
    keys
}
