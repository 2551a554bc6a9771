//! A real SMTP server per test app, in process, keeping what it receives in memory.
//!
//! The protocol is `mailin`'s (the SMTP engine of `mailin-embedded`), driven over
//! tokio sockets here: `mailin-embedded` itself cannot be built without a TLS
//! stack (its rustls default pulls aws-lc, its other option is OpenSSL), and the
//! tests speak plain SMTP anyway. The portal's mail worker talks to it exactly as
//! to any relay: `PORTAL_SMTP_URL=smtp://127.0.0.1:<port>`.
//!
//! Tests read messages with [`Mailbox::wait_for`], [`Mailbox::all`] and
//! [`Mailbox::expect_none_to`], and can make the server refuse mail for a while
//! ([`Mailbox::set_down`], a temporary 421) or for good ([`Mailbox::reject`], 550).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message as the SMTP server received it.
#[derive(Clone, Debug)]
pub struct Email {
    /// The `From` header.
    pub from: String,
    /// The envelope recipients (`RCPT TO`): who actually receives it, whatever the headers say.
    pub to: Vec<String>,
    /// The `Subject` header, decoded.
    pub subject: String,
    /// The `text/plain` part, decoded.
    pub text: String,
    /// The `text/html` part, decoded.
    pub html: String,
    /// The message as sent (headers and encoded body).
    pub raw: String,
    /// The top-level headers, decoded, in order.
    pub headers: Vec<(String, String)>,
}

impl Email {
    /// The path and query of the first `http(s)://` URL in the text part, for `client.get(&email.link())`.
    pub fn link(&self) -> String {
        let url = self
            .text
            .split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '"'))
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no link in the email {:?}:\n{}", self.subject, self.text));
        let url = url.trim_end_matches(['.', ',', ';', ':']);
        let after_scheme = &url[url.find("://").unwrap() + 3..];
        match after_scheme.find('/') {
            Some(slash) => after_scheme[slash..].to_owned(),
            None => "/".to_owned(),
        }
    }

    /// The first top-level header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<Email>>,
    down: AtomicBool,
    rejected: Mutex<Vec<String>>,
}

/// The test SMTP server and everything it has received.
#[derive(Clone)]
pub struct Mailbox {
    inbox: Arc<Inbox>,
    port: u16,
    _server: Arc<Stop>,
}

/// Stops accepting when the last handle of the mailbox goes.
struct Stop(tokio::task::AbortHandle);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Mailbox {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start() -> Mailbox {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the test SMTP server");
        let port = listener.local_addr().expect("SMTP address").port();
        let inbox = Arc::new(Inbox::default());
        let accepting = inbox.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(serve(stream, peer.ip(), accepting.clone()));
            }
        });
        Mailbox { inbox, port, _server: Arc::new(Stop(task.abort_handle())) }
    }

    /// What `PORTAL_SMTP_URL` should say to reach this server (plain SMTP, no TLS).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// While down, every command is answered `421` (a temporary failure, which senders retry).
    pub fn set_down(&self, down: bool) {
        self.inbox.down.store(down, Ordering::SeqCst);
    }

    /// Mail to `address` is refused for good (`550` at `RCPT TO`).
    pub fn reject(&self, address: &str) {
        self.inbox.rejected.lock().unwrap().push(address.to_ascii_lowercase());
    }

    /// Every message received so far, oldest first.
    pub fn all(&self) -> Vec<Email> {
        self.inbox.messages.lock().unwrap().clone()
    }

    /// Messages received so far for `to` (an envelope recipient).
    pub fn to(&self, to: &str) -> Vec<Email> {
        self.all().into_iter().filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to))).collect()
    }

    /// Waits (up to about 10 s) for a message to `to` whose subject contains `subject_contains`.
    pub async fn wait_for(&self, to: &str, subject_contains: &str) -> Email {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = self.to(to).into_iter().find(|m| m.subject.contains(subject_contains)) {
                return m;
            }
            if Instant::now() > deadline {
                let got: Vec<String> =
                    self.all().iter().map(|m| format!("{:?} to {}", m.subject, m.to.join(", "))).collect();
                panic!("no email to {to} with {subject_contains:?} in its subject; received: {got:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asserts that no message for `to` arrives within `within`.
    pub async fn expect_none_to(&self, to: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.to(to);
            assert!(
                got.is_empty(),
                "expected no email to {to}, got {:?}",
                got.iter().map(|m| &m.subject).collect::<Vec<_>>()
            );
            if Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One SMTP connection: lines in, `mailin`'s responses out.
async fn serve(stream: TcpStream, peer: IpAddr, inbox: Arc<Inbox>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut session = SessionBuilder::new("portal-test-smtp").build(peer, Recorder::new(inbox.clone()));
    if inbox.down.load(Ordering::SeqCst) {
        let _ = write.write_all(b"421 4.3.2 Service not available, try again later\r\n").await;
        return;
    }
    if write.write_all(&session.greeting().buffer().unwrap()).await.is_err() {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match read.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if inbox.down.load(Ordering::SeqCst) {
            let _ = write.write_all(b"421 4.3.2 Service not available, try again later\r\n").await;
            return;
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => {}
            Action::Reply => {
                if write.write_all(&response.buffer().unwrap()).await.is_err() {
                    return;
                }
            }
            Action::Close | Action::UpgradeTls => {
                let _ = write.write_all(&response.buffer().unwrap()).await;
                return;
            }
        }
    }
}

/// Collects each message of a connection and files it in the inbox when its data ends.
struct Recorder {
    inbox: Arc<Inbox>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Recorder {
    fn new(inbox: Arc<Inbox>) -> Self {
        Recorder { inbox, to: Vec::new(), data: Vec::new() }
    }
}

impl Handler for Recorder {
    fn rcpt(&mut self, to: &str) -> Response {
        if self.inbox.rejected.lock().unwrap().iter().any(|r| r.eq_ignore_ascii_case(to)) {
            return mailin::response::NO_MAILBOX;
        }
        mailin::response::OK
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.data.clear();
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        match parse(&self.data, std::mem::take(&mut self.to)) {
            Ok(email) => {
                self.inbox.messages.lock().unwrap().push(email);
                mailin::response::OK
            }
            Err(e) => Response::custom(554, format!("unreadable message: {e}")),
        }
    }
}

fn parse(raw: &[u8], to: Vec<String>) -> Result<Email, mailparse::MailParseError> {
    let parsed = mailparse::parse_mail(raw)?;
    let headers: Vec<(String, String)> = parsed.headers.iter().map(|h| (h.get_key(), h.get_value())).collect();
    let header = |name: &str| {
        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let (mut text, mut html) = (String::new(), String::new());
    collect_parts(&parsed, &mut text, &mut html)?;
    Ok(Email {
        from: header("From"),
        to,
        subject: header("Subject"),
        text,
        html,
        raw: String::from_utf8_lossy(raw).into_owned(),
        headers,
    })
}

fn collect_parts(
    part: &mailparse::ParsedMail<'_>,
    text: &mut String,
    html: &mut String,
) -> Result<(), mailparse::MailParseError> {
    if part.subparts.is_empty() {
        match part.ctype.mimetype.as_str() {
            "text/plain" if text.is_empty() => *text = part.get_body()?,
            "text/html" if html.is_empty() => *html = part.get_body()?,
            _ => {}
        }
    }
    for sub in &part.subparts {
        collect_parts(sub, text, html)?;
    }
    Ok(())
}
