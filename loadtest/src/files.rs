//! `files`: upload and download throughput for one large file, and the portal's peak memory
//! meanwhile. The file is written once to a temporary file and uploaded from disk as a stream,
//! so the load generator never holds it in memory either; downloads are read as streams and
//! checked (length and SHA-256) against the source.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use reqwest::multipart::{Form, Part};
use reqwest::redirect::Policy;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::{AnyError, sign_in};

const MIB: u64 = 1024 * 1024;
/// What every generated file starts with: the portal accepts it as a PDF by these bytes.
const PDF_HEADER: &[u8] = b"%PDF-1.7\n";
/// Bytes per read of the file being uploaded (and per write while generating it).
const CHUNK: usize = 256 * 1024;
/// One upload or download may take this long before it counts as failed.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Parser)]
pub struct FilesArgs {
    /// The portal (keep it on this machine).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The portal's process id: its VmRSS before the first run and VmHWM (peak) after the last.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Another process to report the same figures for (e.g. the S3 server).
    #[arg(long)]
    peer_pid: Option<u32>,
    /// What to call --peer-pid in the report.
    #[arg(long, default_value = "peer")]
    peer_label: String,
    /// The store behind the portal, for the report only ("local", "s3").
    #[arg(long, default_value = "local")]
    store_label: String,
    #[arg(long, default_value = "alice@acme.example")]
    email: String,
    #[arg(long, env = "PORTAL_LOADTEST_PASSWORD", default_value = "demo-portal-password")]
    password: String,
    /// Size of the file in MiB (the portal's PORTAL_UPLOAD_MAX_MB must allow it).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=2048))]
    size_mb: u64,
    /// Upload + download rounds, each with a new document.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    runs: u32,
    /// Reset the watched processes' VmHWM before the first run (writes 5 to /proc/<pid>/clear_refs;
    /// needs the right to write there), so the peak after the runs is theirs, not start-up's.
    #[arg(long)]
    reset_peak: bool,
    /// Where the temporary file is written (default: the system's temp dir); it is removed afterwards.
    #[arg(long)]
    temp_dir: Option<PathBuf>,
    /// Print one JSON object instead of markdown tables.
    #[arg(long)]
    json: bool,
}

/// The generated file; removed from disk when dropped.
struct Source {
    path: PathBuf,
    len: u64,
    sha256: String,
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Deterministic pseudo-random bytes (xorshift64*): incompressible, cheap, the same every run.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Writes `len` bytes (the PDF header, then pseudo-random bytes) to `path`, hashing as it goes.
fn generate(path: &Path, len: u64) -> Result<String, AnyError> {
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    let mut hasher = Sha256::new();
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0u64;
    while written < len {
        let n = usize::try_from((len - written).min(CHUNK as u64))?;
        let chunk = &mut buf[..n];
        noise.fill(chunk);
        if written == 0 {
            let head = PDF_HEADER.len().min(n);
            chunk[..head].copy_from_slice(&PDF_HEADER[..head]);
        }
        hasher.update(&*chunk);
        out.write_all(chunk)?;
        written += n as u64;
    }
    out.sync_all()?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file on disk as a request body, read chunk by chunk as it is sent.
async fn file_body(path: &Path) -> Result<reqwest::Body, AnyError> {
    let file = tokio::fs::File::open(path).await?;
    let chunks = futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok::<_, std::io::Error>(Some((buf, file)))
    });
    Ok(reqwest::Body::wrap_stream(chunks))
}

fn csrf_in(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    Some(html.split(marker).nth(1)?.split('"').next()?.to_owned())
}

#[derive(Deserialize)]
struct Uploaded {
    location: String,
}

/// A failed step, with the portal's exact answer.
async fn refused(step: &str, response: reqwest::Response) -> AnyError {
    let status = response.status();
    let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.text().await.unwrap_or_else(|e| format!("(body unreadable: {e})"));
    let location = location.map(|l| format!(" (Location: {l})")).unwrap_or_default();
    format!("{step}: HTTP {status}{location}; body: {body}").into()
}

/// Uploads the source as a new document; its address (`/documents/<id>`) and the seconds it took.
async fn upload(
    client: &reqwest::Client,
    url: &str,
    csrf: &str,
    source: &Source,
    run: u32,
) -> Result<(String, f64), AnyError> {
    let file = Part::stream_with_length(file_body(&source.path).await?, source.len)
        .file_name(format!("loadtest-{}mib.pdf", source.len / MIB))
        .mime_str("application/pdf")?;
    // The order the portal's form sends: the token first, so it is checked before the file is stored.
    let form = Form::new()
        .text("csrf_token", csrf.to_owned())
        .part("file", file)
        .text("doc_type", "artwork")
        .text("title", format!("Load test file, {} MiB, run {run}", source.len / MIB));
    let started = Instant::now();
    let response = client
        .post(format!("{url}/documents"))
        .header("X-Portal-Upload", "1")
        .multipart(form)
        .timeout(TRANSFER_TIMEOUT)
        .send()
        .await?;
    if response.status() != StatusCode::OK {
        return Err(refused("upload", response).await);
    }
    let answer: Uploaded = response.json().await?;
    let seconds = started.elapsed().as_secs_f64();
    if !answer.location.starts_with("/documents/") {
        return Err(format!("upload: unexpected location {:?}", answer.location).into());
    }
    Ok((answer.location, seconds))
}

/// What a download delivered.
struct Downloaded {
    seconds: f64,
    len: u64,
    sha256: String,
    /// Whether the bytes came from a redirect target (S3) rather than the portal.
    redirected: bool,
}

/// Takes a fresh download grant for the document and reads the file to its last byte; timed from
/// the grant request (the click) to the last byte.
async fn download(
    client: &reqwest::Client,
    plain: &reqwest::Client,
    url: &str,
    csrf: &str,
    document: &str,
) -> Result<Downloaded, AnyError> {
    let started = Instant::now();
    let grant = client.post(format!("{url}{document}/download")).form(&[("csrf_token", csrf)]).send().await?;
    let redeem = match (grant.status(), grant.headers().get(LOCATION).and_then(|v| v.to_str().ok())) {
        (StatusCode::SEE_OTHER, Some(to)) if to.starts_with("/downloads/") => format!("{url}{to}"),
        _ => return Err(refused("download grant", grant).await),
    };
    let response = client.get(redeem).timeout(TRANSFER_TIMEOUT).send().await?;
    let (response, redirected) = match response.status() {
        StatusCode::OK => (response, false),
        StatusCode::SEE_OTHER | StatusCode::FOUND | StatusCode::TEMPORARY_REDIRECT => {
            let Some(target) = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned) else {
                return Err(refused("download redirect without Location", response).await);
            };
            let object = plain.get(target).timeout(TRANSFER_TIMEOUT).send().await?;
            if object.status() != StatusCode::OK {
                return Err(refused("download from the presigned URL", object).await);
            }
            (object, true)
        }
        _ => return Err(refused("download", response).await),
    };
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Downloaded { seconds, len, sha256: hex(&hasher.finalize()), redirected })
}

/// `VmRSS` and `VmHWM` (peak resident set) of a process, in KiB.
#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

fn memory_of(pid: &str) -> Result<Memory, AnyError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss_kib), Some(hwm_kib)) => Ok(Memory { rss_kib, hwm_kib }),
        _ => Err(format!("/proc/{pid}/status has no VmRSS/VmHWM").into()),
    }
}

/// Sets the process's VmHWM back to its current VmRSS.
fn reset_peak(pid: u32) -> Result<(), AnyError> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .map_err(|e| format!("cannot reset the peak of {pid} (/proc/{pid}/clear_refs): {e}").into())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Median, min and max.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some((&min, &max)) = sorted.first().zip(sorted.last()) else {
        return (0.0, 0.0, 0.0);
    };
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 };
    (median, min, max)
}

/// Before the first run and after the last.
struct Watched {
    label: String,
    pid: u32,
    before: Memory,
    after: Memory,
}

impl Watched {
    /// Peak during the runs over the resident set before them. (If the peak was reached before
    /// the runs, e.g. at start-up, this is an upper bound on what the runs added.)
    fn growth_kib(&self) -> i64 {
        self.after.hwm_kib as i64 - self.before.rss_kib as i64
    }

    fn peak_moved(&self) -> bool {
        self.after.hwm_kib > self.before.hwm_kib
    }
}

pub async fn run(args: FilesArgs) -> Result<(), AnyError> {
    let url = args.url.trim_end_matches('/').to_owned();
    let len = args.size_mb * MIB;
    let (client, _jar) = sign_in(&url, &args.email, &args.password).await?;
    // Redirects stay unfollowed here too: the presigned URL answers 200 or it is an error.
    let plain = reqwest::Client::builder().redirect(Policy::none()).build()?;
    let new_page = client.get(format!("{url}/documents/new")).send().await?;
    if new_page.status() != StatusCode::OK {
        return Err(refused("GET /documents/new", new_page).await);
    }
    let csrf = csrf_in(&new_page.text().await?).ok_or("/documents/new has no csrf_token")?;

    let dir = args.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let path = dir.join(format!("portal-loadtest-{}-{nanos}.pdf", std::process::id()));
    let generating = Instant::now();
    let sha256 = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || generate(&path, len)).await?
    };
    // From here on the file is removed whatever happens.
    let source = Source { path, len, sha256: sha256? };
    eprintln!(
        "files: generated {} MiB at {} in {:.1} s (sha256 {})",
        args.size_mb,
        source.path.display(),
        generating.elapsed().as_secs_f64(),
        source.sha256
    );

    let reset = args.reset_peak;
    let watch = |pid: Option<u32>, label: &str| -> Result<Option<(String, u32, Memory)>, AnyError> {
        pid.map(|pid| {
            if reset {
                reset_peak(pid)?;
            }
            Ok((label.to_owned(), pid, memory_of(&pid.to_string())?))
        })
        .transpose()
    };
    let server_before = watch(args.server_pid, "portal")?;
    let peer_before = watch(args.peer_pid, &args.peer_label)?;

    let mut rows = Vec::new();
    for run in 1..=args.runs {
        let (document, up_seconds) = upload(&client, &url, &csrf, &source, run).await?;
        let got = download(&client, &plain, &url, &csrf, &document).await?;
        if got.len != source.len || got.sha256 != source.sha256 {
            return Err(format!(
                "run {run}: the download of {document} differs from the upload: {} bytes, sha256 {} \
                 (sent {} bytes, sha256 {})",
                got.len, got.sha256, source.len, source.sha256
            )
            .into());
        }
        let up = mib(len / 1024) / up_seconds;
        let down = mib(len / 1024) / got.seconds;
        eprintln!(
            "files: run {run}: {document}: upload {up_seconds:.2} s ({up:.0} MiB/s), download {:.2} s ({down:.0} MiB/s{}), sha256 ok",
            got.seconds,
            if got.redirected { ", via the presigned redirect" } else { "" }
        );
        rows.push((run, document, up_seconds, up, got.seconds, down, got.redirected));
    }

    let finish = |before: Option<(String, u32, Memory)>| -> Result<Option<Watched>, AnyError> {
        before
            .map(|(label, pid, before)| Ok(Watched { label, pid, before, after: memory_of(&pid.to_string())? }))
            .transpose()
    };
    let server = finish(server_before)?;
    let peer = finish(peer_before)?;
    let own = memory_of("self")?;
    drop(source);

    let ups: Vec<f64> = rows.iter().map(|r| r.3).collect();
    let downs: Vec<f64> = rows.iter().map(|r| r.5).collect();
    let (up_median, up_min, up_max) = spread(&ups);
    let (down_median, down_min, down_max) = spread(&downs);
    let redirected = rows.iter().any(|r| r.6);

    if args.json {
        let memory = |w: &Option<Watched>| {
            w.as_ref().map(|w| {
                serde_json::json!({
                    "label": w.label, "pid": w.pid,
                    "rss_before_kib": w.before.rss_kib, "hwm_before_kib": w.before.hwm_kib,
                    "rss_after_kib": w.after.rss_kib, "hwm_after_kib": w.after.hwm_kib,
                    "growth_kib": w.growth_kib(),
                })
            })
        };
        let report = serde_json::json!({
            "benchmark": "files", "store": args.store_label, "size_mib": args.size_mb, "runs": args.runs,
            "upload_mib_s": { "median": up_median, "min": up_min, "max": up_max, "each": ups },
            "download_mib_s": { "median": down_median, "min": down_min, "max": down_max, "each": downs },
            "download_via_redirect": redirected,
            "server": memory(&server), "peer": memory(&peer),
            "peak_reset_before_runs": reset, "loadgen_hwm_kib": own.hwm_kib,
        });
        println!("{report}");
        return Ok(());
    }

    println!("| run | document | upload s | upload MiB/s | download s | download MiB/s |");
    println!("|---:|---|---:|---:|---:|---:|");
    for (run, document, up_seconds, up, down_seconds, down, _) in &rows {
        println!("| {run} | `{document}` | {up_seconds:.2} | {up:.0} | {down_seconds:.2} | {down:.0} |");
    }
    println!();
    println!(
        "| store | size | upload MiB/s median (min–max) | download MiB/s median (min–max) | server RSS before | \
         server peak RSS (VmHWM) | growth |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let (rss_before, peak, growth) = match &server {
        Some(w) => (
            format!("{:.1} MiB", mib(w.before.rss_kib)),
            format!("{:.1} MiB", mib(w.after.hwm_kib)),
            format!("{:+.1} MiB", w.growth_kib() as f64 / 1024.0),
        ),
        None => ("–".into(), "–".into(), "–".into()),
    };
    println!(
        "| {} | {} MiB | {up_median:.0} ({up_min:.0}–{up_max:.0}) | {down_median:.0} ({down_min:.0}–{down_max:.0}){} | \
         {rss_before} | {peak} | {growth} |",
        args.store_label,
        args.size_mb,
        if redirected { " ¹" } else { "" },
    );
    println!();
    for w in server.iter().chain(peer.iter()) {
        println!(
            "- {} (pid {}): VmRSS {:.1} → {:.1} MiB, VmHWM {:.1} → {:.1} MiB{}",
            w.label,
            w.pid,
            mib(w.before.rss_kib),
            mib(w.after.rss_kib),
            mib(w.before.hwm_kib),
            mib(w.after.hwm_kib),
            if w.peak_moved() || reset { "" } else { " (the peak predates the runs: growth is an upper bound)" }
        );
    }
    if reset {
        println!("- VmHWM of the watched processes was reset to VmRSS just before the first run");
    }
    println!("- load generator: VmHWM {:.1} MiB", mib(own.hwm_kib));
    if redirected {
        println!(
            "- ¹ the portal answered the download with a redirect to a presigned URL: the bytes came from the \
             store, so the portal's memory reflects the upload path only"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_file_is_a_pdf_of_the_asked_size() {
        let path = std::env::temp_dir().join(format!("portal-loadtest-test-{}.pdf", std::process::id()));
        let len = 3 * CHUNK as u64 + 5;
        let sha = generate(&path, len).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(bytes.len() as u64, len);
        assert!(bytes.starts_with(PDF_HEADER));
        assert_eq!(sha, hex(&Sha256::digest(&bytes)));
        assert_ne!(bytes[CHUNK..CHUNK + 64], bytes[2 * CHUNK..2 * CHUNK + 64], "not a repeated pattern");
    }

    #[test]
    fn spread_gives_median_min_max() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[4.0, 1.0]), (2.5, 1.0, 4.0));
        assert_eq!(spread(&[]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn csrf_is_read_from_the_hidden_input() {
        let html = r#"<form><input type="hidden" name="csrf_token" value="abc-123"><input name="file"></form>"#;
        assert_eq!(csrf_in(html).as_deref(), Some("abc-123"));
        assert_eq!(csrf_in("<form></form>"), None);
    }
}
