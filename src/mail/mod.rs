//! Email: the outbox worker, its transports (SMTP with lettre, or `.eml` files) and the templates.
//!
//! Code never sends email itself. It inserts a row into `outbox` in the same
//! transaction as the change that causes the email (inside the SECURITY DEFINER
//! account functions of the schema; no Rust code writes the outbox), so the email
//! exists if and only if the change committed. This worker then sends each row,
//! at least once and, as far as SMTP allows, exactly once:
//!
//! - A row is sent inside its own transaction that holds it `FOR UPDATE SKIP LOCKED`
//!   from before the SMTP conversation until the row is marked sent. Other workers
//!   (other processes, or a second worker here) skip it, so it is never sent by two
//!   at once, and once the "sent" mark has committed nobody picks it up again.
//! - A crash (process, connection, database) before that commit rolls the
//!   transaction back: the row is still due and is sent again later, so no email
//!   is ever lost. The one window for a duplicate is between the SMTP server
//!   accepting the message and our commit; the resend carries the same
//!   `Message-ID: <outbox-{id}@{public host}>`, so it is recognisable (and
//!   deduplicated by receivers that do so).
//! - Failures are retried with exponential backoff ([`backoff`]); a permanent SMTP
//!   rejection, a bad row (unknown template, missing param) or too many attempts
//!   set `failed_at` and `last_error` for the operator, and are logged as errors.
//! - After a successful send the `link` param (a working token) is removed from the row.

mod templates;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::config::Config;
use crate::db::{Db, DbError, Scope};

/// The channel the outbox trigger notifies (migrations/V3__accounts.sql).
const CHANNEL: &str = "portal_outbox";
/// After this many failed attempts a row is given up (about three hours with the default backoff).
pub const MAX_ATTEMPTS: i32 = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// An SMTP conversation that takes longer than this counts as failed (and is retried).
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Worker::stop` lets an email in flight finish before abandoning it (it is then resent later).
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Never includes the URL: it holds the SMTP password.
    #[error("PORTAL_SMTP_URL is not a usable SMTP URL")]
    SmtpUrl,
    #[error("the sender {0:?} is not a mailbox like `Portal <portal@example.com>`")]
    From(String),
}

/// Delay before the next attempt after `attempts` failed ones: `base × 2^(attempts-1)`, at most an hour.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Everything the worker needs, taken from the config and the public origin.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `None`: write `.eml` files into `files` and log them instead of sending.
    pub smtp_url: Option<SecretString>,
    pub files: PathBuf,
    pub from: String,
    /// The portal's public origin: links in emails are `<origin><path>`, never from a request's `Host`.
    pub origin: String,
    pub poll: Duration,
    pub retry_base: Duration,
}

impl Settings {
    pub fn new(config: &Config, origin: &str) -> Self {
        Settings {
            smtp_url: config.smtp_url.clone(),
            files: config.data_dir.join("mail"),
            from: config.mail_from.clone(),
            origin: origin.trim_end_matches('/').to_owned(),
            poll: config.mail_poll,
            retry_base: config.mail_retry_base,
        }
    }
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

/// A worker ready to start: built (and its settings checked) when the application is built.
pub struct Mailer {
    /// Built into a [`Transport`] on start: lettre's connection pool needs the runtime.
    smtp: Option<AsyncSmtpTransportBuilder>,
    files: PathBuf,
    sender: Sender,
}

/// The running worker's state.
struct Sender {
    db: Db,
    transport: Transport,
    from: Mailbox,
    origin: String,
    /// The right-hand side of our Message-IDs: the public host.
    host: String,
    poll: Duration,
    retry_base: Duration,
}

impl Mailer {
    pub fn new(db: &Db, settings: Settings) -> Result<Self, MailError> {
        if !crate::address::mailbox_is_valid(&settings.from) {
            return Err(MailError::From(settings.from));
        }
        let from = Mailbox::from_str(&settings.from).map_err(|_| MailError::From(settings.from.clone()))?;
        let smtp = match &settings.smtp_url {
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|_| MailError::SmtpUrl)?
                    .timeout(Some(SMTP_TIMEOUT)),
            ),
            None => None,
        };
        Ok(Mailer {
            smtp,
            files: settings.files,
            sender: Sender {
                db: db.clone(),
                transport: Transport::Files(PathBuf::new()),
                from,
                host: host_of(&settings.origin),
                origin: settings.origin,
                poll: settings.poll.max(Duration::from_millis(10)),
                retry_base: settings.retry_base,
            },
        })
    }

    /// Starts the worker on the current tokio runtime.
    pub fn start(self) -> Worker {
        let (stop, stopped) = watch::channel(false);
        let mut sender = self.sender;
        sender.transport = match self.smtp {
            Some(smtp) => {
                tracing::info!("mail worker started (SMTP)");
                Transport::Smtp(smtp.build())
            }
            None => {
                tracing::info!(dir = %self.files.display(), "mail worker started: no PORTAL_SMTP_URL, emails are written as files");
                Transport::Files(self.files)
            }
        };
        let task = tokio::spawn(sender.run(stopped));
        Worker { stop, task }
    }
}

impl Sender {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        // Woken by NOTIFY on a LISTEN connection of its own, because emails are queued by SQL
        // from anywhere (our account functions on any process, the business's own systems);
        // an in-process Notify would only hear this process. The poll covers the moments the
        // LISTEN connection is down, and rows whose retry time has come.
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(self.db.clone(), wake.clone()));
        'work: loop {
            loop {
                if *stopped.borrow() {
                    break 'work;
                }
                match self.send_next().await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "mail worker: database unavailable, will retry");
                        break;
                    }
                }
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
                changed = stopped.changed() => if changed.is_err() { break 'work },
            }
        }
        listener.abort();
        tracing::info!("mail worker stopped");
    }

    /// Sends the next due email, if any, in one transaction that holds its row. `Ok(false)`: none due.
    async fn send_next(&self) -> Result<bool, DbError> {
        let scope = self.db.staff_scope(None).await?;
        let Some(row) = scope
            .query_opt(
                "SELECT id, to_address, to_name, template, params, attempts, created_at FROM outbox \
                 WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now() \
                 ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?
        else {
            scope.commit().await?;
            return Ok(false);
        };
        let id: i64 = row.try_get("id")?;
        let template: String = row.try_get("template")?;
        let attempts = row.try_get::<_, i32>("attempts")?.saturating_add(1);
        let queued = Queued {
            id,
            to: row.try_get("to_address")?,
            to_name: row.try_get("to_name")?,
            params: row.try_get("params")?,
            created_at: row.try_get("created_at")?,
        };
        match self.deliver(&queued, &template).await {
            Ok(()) => {
                // In the transaction that locked the row: once this commits, no worker sends it again.
                scope
                    .execute(
                        "UPDATE outbox SET sent_at = clock_timestamp(), attempts = $2, last_error = NULL, \
                         params = params - 'link' WHERE id = $1",
                        &[&id, &attempts],
                    )
                    .await?;
                tracing::info!(id, template = %template, attempts, "email sent");
            }
            Err(Failure::Permanent(reason)) => {
                give_up(&scope, id, attempts, &reason).await?;
                tracing::error!(id, template = %template, attempts, error = %reason, "email failed for good");
            }
            Err(Failure::Transient(reason)) if attempts >= MAX_ATTEMPTS => {
                let reason = format!("gave up after {attempts} attempts: {reason}");
                give_up(&scope, id, attempts, &reason).await?;
                tracing::error!(id, template = %template, attempts, error = %reason, "email failed for good");
            }
            Err(Failure::Transient(reason)) => {
                let delay = backoff(self.retry_base, u32::try_from(attempts).unwrap_or(1));
                scope
                    .execute(
                        "UPDATE outbox SET attempts = $2, last_error = $3, \
                         next_attempt_at = clock_timestamp() + make_interval(secs => $4) WHERE id = $1",
                        &[&id, &attempts, &truncate(&reason), &delay.as_secs_f64()],
                    )
                    .await?;
                tracing::warn!(id, template = %template, attempts, retry_in_s = delay.as_secs(), error = %reason,
                               "email not sent, will retry");
            }
        }
        scope.commit().await?;
        Ok(true)
    }

    async fn deliver(&self, queued: &Queued, template: &str) -> Result<(), Failure> {
        let rendered =
            templates::render(template, &queued.params, &queued.to_name, &self.origin).map_err(Failure::Permanent)?;
        let message = compose(&self.from, &self.host, queued, &rendered).map_err(Failure::Permanent)?;
        match &self.transport {
            Transport::Smtp(smtp) => match smtp.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(Failure::Permanent(format!("SMTP server refused it: {e}"))),
                Err(e) => Err(Failure::Transient(format!("SMTP: {e}"))),
            },
            Transport::Files(dir) => {
                let path = write_file(dir, queued, &message.formatted())
                    .await
                    .map_err(|e| Failure::Transient(format!("writing the mail file: {e}")))?;
                // Without SMTP this is a local run: the log is how its user gets the link.
                tracing::info!(id = queued.id, path = %path.display(), subject = %rendered.subject,
                               link = rendered.link.as_deref().unwrap_or("-"), "email written to file");
                Ok(())
            }
        }
    }
}

/// The MIME message. Nothing from the row can add a header or a recipient: the recipient is
/// parsed as an address, the envelope is set explicitly to it alone, and the name and the
/// subject are single lines (and lettre encodes them).
fn compose(from: &Mailbox, host: &str, queued: &Queued, rendered: &templates::Rendered) -> Result<Message, String> {
    let address = Address::from_str(queued.to.trim())
        .map_err(|e| format!("recipient {:?} is not an address: {e}", templates::one_line(&queued.to)))?;
    let name = templates::one_line(&queued.to_name);
    let to = Mailbox::new((!name.is_empty()).then_some(name), address.clone());
    let envelope = lettre::address::Envelope::new(Some(from.email.clone()), vec![address])
        .map_err(|e| format!("envelope: {e}"))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(rendered.subject.clone())
        // Stable across retries: a resend after a crash between SMTP accept and commit is recognisable.
        .message_id(Some(format!("<outbox-{}@{host}>", queued.id)))
        .header(AutoSubmitted)
        .envelope(envelope)
        .multipart(MultiPart::alternative_plain_html(rendered.text.clone(), rendered.html.clone()))
        .map_err(|e| format!("building the message: {e}"))
}

/// A running worker.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    /// Stops after the email in flight (if any) is finished, or abandons it after a grace period:
    /// an abandoned email's transaction rolls back and it is sent again later.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_GRACE, &mut self.task).await.is_err() {
            self.task.abort();
            tracing::warn!("mail worker did not finish its email in time; it will be sent again");
        }
    }
}

/// Starts a worker for `db` with `settings` (what `Application::run` does).
pub fn start(db: &Db, settings: Settings) -> Result<Worker, MailError> {
    Ok(Mailer::new(db, settings)?.start())
}

struct Queued {
    id: i64,
    to: String,
    to_name: String,
    params: serde_json::Value,
    created_at: time::OffsetDateTime,
}

enum Failure {
    /// Will fail the same way every time: give up now.
    Permanent(String),
    Transient(String),
}

async fn give_up(scope: &Scope, id: i64, attempts: i32, reason: &str) -> Result<(), DbError> {
    scope
        .execute(
            "UPDATE outbox SET failed_at = clock_timestamp(), attempts = $2, last_error = $3 WHERE id = $1",
            &[&id, &attempts, &truncate(reason)],
        )
        .await?;
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(1000).collect()
}

/// `https://portal.example.com:8443` → `portal.example.com`.
fn host_of(origin: &str) -> String {
    let rest = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let host = if rest.starts_with('[') {
        rest.split_inclusive(']').next().unwrap_or(rest)
    } else {
        rest.split(':').next().unwrap_or(rest)
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || "<>@".contains(c)) {
        "localhost".to_owned()
    } else {
        host.to_owned()
    }
}

/// `<dir>/20261112-140500-outbox-42.eml`, written whole (via a temporary file) and in place of
/// an earlier attempt's, so a retry never leaves two copies.
async fn write_file(dir: &std::path::Path, queued: &Queued, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await?;
    let stamp = queued
        .created_at
        .format(time::macros::format_description!("[year][month][day]-[hour][minute][second]"))
        .unwrap_or_default();
    let path = dir.join(format!("{stamp}-outbox-{}.eml", queued.id));
    let partial = path.with_extension("eml.partial");
    tokio::fs::write(&partial, bytes).await?;
    tokio::fs::rename(&partial, &path).await?;
    Ok(path)
}

/// `Auto-Submitted: auto-generated` (RFC 3834): out-of-office replies are not sent back to us.
#[derive(Clone, Debug)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// Keeps a LISTEN connection on [`CHANNEL`] and wakes the worker on each notification
/// (and after every reconnect, to catch up what was queued while it was down).
async fn listen(db: Db, wake: Arc<Notify>) {
    let (mut config, _) = db.listener_login();
    config.application_name("portal-mail");
    let mut delay = Duration::from_millis(500);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let woken = wake.clone();
                let driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => woken.notify_one(),
                            Ok(_) => {}
                            Err(e) => return e.to_string(),
                        }
                    }
                    "connection closed".to_owned()
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        delay = Duration::from_millis(500);
                        wake.notify_one();
                        let reason = driver.await.unwrap_or_else(|e| e.to_string());
                        tracing::warn!(reason = %reason, "mail worker: LISTEN connection lost, reconnecting");
                    }
                    Err(e) => {
                        driver.abort();
                        tracing::warn!(error = %e, "mail worker: LISTEN failed");
                    }
                }
                drop(client);
            }
            Err(e) => tracing::warn!(error = %e, "mail worker: cannot connect to LISTEN, polling meanwhile"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped_at_an_hour() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff(base, 0), Duration::from_secs(30));
        assert_eq!(backoff(base, 1), Duration::from_secs(30));
        assert_eq!(backoff(base, 2), Duration::from_secs(60));
        assert_eq!(backoff(base, 3), Duration::from_secs(120));
        assert_eq!(backoff(base, 7), Duration::from_secs(1920));
        assert_eq!(backoff(base, 8), Duration::from_secs(3600));
        assert_eq!(backoff(base, u32::MAX), Duration::from_secs(3600));
        let total: Duration = (1..MAX_ATTEMPTS as u32).map(|a| backoff(base, a)).sum();
        assert!(total > Duration::from_secs(2 * 3600) && total < Duration::from_secs(4 * 3600), "{total:?}");
    }

    #[test]
    fn message_ids_use_the_public_host() {
        assert_eq!(host_of("https://portal.example.com"), "portal.example.com");
        assert_eq!(host_of("http://127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_of("http://[::1]:8080"), "[::1]");
        assert_eq!(host_of(""), "localhost");
    }

    #[test]
    fn names_cannot_add_headers_or_recipients() {
        let from = Mailbox::from_str("Portal <portal@portal.example.com>").unwrap();
        let queued = Queued {
            id: 42,
            to: "dave@acme.example".into(),
            to_name: "Dave\r\nBcc: evil@example.com".into(),
            params: serde_json::json!({"inviter_name": "Eve\r\nBcc: evil@example.com\r\n", "customer_name": "Acme",
                                       "link": "/invitation/t", "expires_hours": 72}),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let rendered =
            templates::render("invitation", &queued.params, &queued.to_name, "https://portal.example.com").unwrap();
        let message = compose(&from, "portal.example.com", &queued, &rendered).unwrap();
        assert_eq!(message.envelope().to(), &[Address::from_str("dave@acme.example").unwrap()]);
        let raw = String::from_utf8(message.formatted()).unwrap();
        let headers = &raw[..raw.find("\r\n\r\n").unwrap()];
        assert!(!headers.to_ascii_lowercase().contains("\r\nbcc:"), "{headers}");
        assert!(headers.contains("Message-ID: <outbox-42@portal.example.com>"), "{headers}");
        assert!(headers.contains("Auto-Submitted: auto-generated"), "{headers}");
        assert!(raw.contains("multipart/alternative") && raw.contains("text/plain") && raw.contains("text/html"));
    }
}
