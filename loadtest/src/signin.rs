//! `signin`: sustained password sign-ins per second (GET /login + POST /login with the real
//! password, a fresh cookie jar per attempt), and the `/orders` p99 of one signed-in client
//! meanwhile, next to its idle p99 measured just before for the same time.

use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use reqwest::redirect::Policy;

use crate::report::Figure;
use crate::{AnyError, connection, percentile, sign_in};

const DEFAULT_URL: &str = "http://127.0.0.1:8080";
const DEMO_PASSWORD: &str = "demo-portal-password";
/// The demo's customer accounts: attempts are spread over them, one account per loop.
const DEMO_ACCOUNTS: [&str; 3] = ["alice@acme.example", "dave@acme.example", "bob@globex.example"];
/// Longest pause after a 429 before the loop tries again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Parser)]
pub struct SigninArgs {
    /// The portal to load (keep it on this machine).
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// Accounts the sign-in loops use, loop i always account i mod n (repeat the flag).
    #[arg(long = "email", default_values_t = DEMO_ACCOUNTS.map(str::to_owned))]
    pub emails: Vec<String>,
    #[arg(long, env = "PORTAL_LOADTEST_PASSWORD", default_value = DEMO_PASSWORD)]
    pub password: String,
    /// How long each phase lasts (idle /orders, then /orders during sign-ins), per concurrency.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub seconds: u64,
    /// Concurrent sign-in loops; repeat the flag to measure several in turn.
    #[arg(long, default_values_t = [4, 8, 16], value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: Vec<u32>,
    /// Print one JSON object per figure instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

impl SigninArgs {
    /// Small enough for `all --quick` (about 12 s): 5 s per phase at C = 4, which keeps the
    /// portal's hashing slots (one per core) busy without queueing long at each.
    /// The database is not needed: sign-ins go through the portal only.
    pub fn quick(url: String, _database_url: String) -> Self {
        SigninArgs {
            url,
            emails: DEMO_ACCOUNTS.map(str::to_owned).to_vec(),
            password: DEMO_PASSWORD.to_owned(),
            seconds: 5,
            concurrency: vec![4],
            json: false,
        }
    }
}

/// What one sign-in loop saw.
#[derive(Default)]
struct Attempts {
    /// GET /login + POST /login of every attempt answered 303, in µs.
    latencies_us: Vec<u64>,
    /// 429 "Too many failed attempts": the account or the network was locked.
    locked: u64,
    /// Any other 429: every hashing slot stayed busy too long.
    busy: u64,
    /// Anything else (another status, a transport error, a page without a token).
    errors: u64,
    first_error: Option<String>,
}

enum Answer {
    SignedIn,
    Locked(Duration),
    Busy(Duration),
    Failed(String),
}

fn retry_after(response: &reqwest::Response) -> Duration {
    let seconds = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(seconds).min(MAX_BACKOFF)
}

/// One sign-in as a new browser makes it: no cookies but those the sign-in page sets.
async fn attempt(client: &reqwest::Client, url: &str, email: &str, password: &str) -> Result<Answer, AnyError> {
    let page = client.get(format!("{url}/login")).send().await?;
    if !page.status().is_success() {
        return Ok(Answer::Failed(format!("GET /login answered {}", page.status())));
    }
    let cookies = page
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    let html = page.text().await?;
    let Some(token) = html.split("name=\"csrf_token\" value=\"").nth(1).and_then(|rest| rest.split('"').next()) else {
        return Ok(Answer::Failed("the sign-in page has no csrf_token".to_owned()));
    };
    let mut post =
        client.post(format!("{url}/login")).form(&[("csrf_token", token), ("email", email), ("password", password)]);
    if !cookies.is_empty() {
        post = post.header(COOKIE, cookies);
    }
    let response = post.send().await?;
    let status = response.status();
    let wait = retry_after(&response);
    let body = response.text().await.unwrap_or_default();
    Ok(match status {
        StatusCode::SEE_OTHER => Answer::SignedIn,
        StatusCode::TOO_MANY_REQUESTS if body.contains("Too many failed attempts") => Answer::Locked(wait),
        StatusCode::TOO_MANY_REQUESTS => Answer::Busy(wait),
        other => Answer::Failed(format!("POST /login as {email} answered {other}")),
    })
}

/// Signs in again and again until `until`, counting what came back.
async fn sign_in_loop(url: String, email: String, password: String, until: Instant) -> Attempts {
    let mut seen = Attempts::default();
    // No cookie store: each attempt carries only the cookies of its own sign-in page.
    let client = match reqwest::Client::builder().redirect(Policy::none()).timeout(Duration::from_secs(30)).build() {
        Ok(client) => client,
        Err(e) => {
            seen.errors += 1;
            seen.first_error = Some(e.to_string());
            return seen;
        }
    };
    while Instant::now() < until {
        let started = Instant::now();
        let answer = attempt(&client, &url, &email, &password).await.unwrap_or_else(|e| Answer::Failed(e.to_string()));
        let pause = match answer {
            Answer::SignedIn => {
                seen.latencies_us.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                None
            }
            Answer::Locked(wait) => {
                seen.locked += 1;
                Some(wait)
            }
            Answer::Busy(wait) => {
                seen.busy += 1;
                Some(wait)
            }
            Answer::Failed(e) => {
                seen.errors += 1;
                seen.first_error.get_or_insert(e);
                Some(Duration::from_millis(100))
            }
        };
        if let Some(pause) = pause {
            // Do not hammer a refusal; never sleep past the end of the run.
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
        }
    }
    seen
}

/// The observer's /orders p99 (ms) and request count over `seconds`.
async fn orders_p99(client: &reqwest::Client, url: &str, seconds: u64) -> Result<(f64, usize), AnyError> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let outcome = connection(client.clone(), url.to_owned(), vec!["/orders".to_owned()], until).await;
    if outcome.errors > 0 {
        return Err(format!("/orders failed {} times for the signed-in observer", outcome.errors).into());
    }
    let mut latencies = outcome.latencies_us;
    latencies.sort_unstable();
    Ok((percentile(&latencies, 99.0), latencies.len()))
}

pub async fn measure(args: &SigninArgs) -> Result<Vec<Figure>, AnyError> {
    let url = args.url.trim_end_matches('/').to_owned();
    if args.emails.is_empty() {
        return Err("signin needs at least one --email".into());
    }
    let first = args.emails.first().map(String::as_str).unwrap_or(DEMO_ACCOUNTS[0]);
    let (observer, _jar) = sign_in(&url, first, &args.password).await?;
    // Warm the observer's connection and the page's caches.
    orders_p99(&observer, &url, 1).await?;

    let mut figures = Vec::new();
    for &c in &args.concurrency {
        let (idle_p99, idle_requests) = orders_p99(&observer, &url, args.seconds).await?;

        let started = Instant::now();
        let until = started + Duration::from_secs(args.seconds);
        let loops: Vec<_> = (0..usize::try_from(c)?)
            .map(|i| {
                let email = args.emails[i % args.emails.len()].clone();
                tokio::spawn(sign_in_loop(url.clone(), email, args.password.clone(), until))
            })
            .collect();
        let (loaded_p99, loaded_requests) = orders_p99(&observer, &url, args.seconds).await?;
        let mut latencies = Vec::new();
        let (mut locked, mut busy, mut errors, mut first_error) = (0u64, 0u64, 0u64, None);
        for task in loops {
            let seen = task.await?;
            latencies.extend(seen.latencies_us);
            locked += seen.locked;
            busy += seen.busy;
            errors += seen.errors;
            if first_error.is_none() {
                first_error = seen.first_error;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let rate = latencies.len() as f64 / elapsed;
        let ratio = if idle_p99 > 0.0 { loaded_p99 / idle_p99 } else { f64::INFINITY };
        if let Some(e) = first_error {
            eprintln!("signin C={c}: {errors} errors, the first: {e}");
        }
        eprintln!(
            "signin C={c}: {} sign-ins in {elapsed:.1} s, {locked} locked, {busy} busy, {errors} errors; \
             /orders {idle_requests} requests idle, {loaded_requests} during sign-ins",
            latencies.len()
        );
        figures.extend([
            Figure::new("signin", format!("password sign-ins/s, C={c}"), rate, "/s").target("≥ 60 /s sustained"),
            Figure::new(
                "signin",
                format!("sign-in p50 (GET + POST /login), C={c}"),
                percentile(&latencies, 50.0),
                "ms",
            ),
            Figure::new(
                "signin",
                format!("sign-in p99 (GET + POST /login), C={c}"),
                percentile(&latencies, 99.0),
                "ms",
            ),
            Figure::new("signin", format!("sign-ins refused 429 (locked / busy), C={c}"), (locked + busy) as f64, "")
                .target(format!("0: correct passwords are never throttled ({locked} locked, {busy} busy)")),
            Figure::new("signin", format!("sign-in errors, C={c}"), errors as f64, "").target("0"),
            Figure::new("signin", format!("/orders p99 idle, before C={c}"), idle_p99, "ms"),
            Figure::new("signin", format!("/orders p99 during sign-ins, C={c}"), loaded_p99, "ms"),
            Figure::new("signin", format!("/orders p99 during ÷ idle, C={c}"), ratio, "×").target("< 2×"),
        ]);
    }
    Ok(figures)
}

pub async fn run(args: SigninArgs) -> Result<(), AnyError> {
    let figures = measure(&args).await?;
    crate::report::print(&figures, args.json);
    Ok(())
}
