//! A live page's socket, driven as live.js drives it: hello, then an ack for every push.

use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::{ConnectStream, connect_async};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::{Error, Message};
use futures_util::StreamExt;
use portal_actors::protocol::{OpKind, Push};

use super::Client;

/// How long a test waits for something that should arrive at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The stream position a live page was rendered at.
pub fn cursor_in(html: &str) -> i64 {
    let marker = "data-live-cursor=\"";
    let start = html.find(marker).expect("a live page") + marker.len();
    html[start..][..html[start..].find('"').expect("cursor")].parse().expect("numeric cursor")
}

/// The ids of the live regions in a page, as live.js collects them.
pub fn regions_in(html: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse("[data-live][id]").expect("selector");
    doc.select(&selector).filter_map(|e| e.value().id().map(str::to_owned)).collect()
}

/// The markup a push replaces `target` with.
pub fn html_of<'a>(push: &'a Push, target: &str) -> Option<&'a str> {
    push.ops.iter().find(|op| op.target == target && op.op == OpKind::Replace).map(|op| op.html.as_str())
}

pub struct LiveSocket {
    ws: WebSocketStream<ConnectStream>,
    /// Ack every push, as live.js does (a test of slow clients turns this off).
    pub acks: bool,
}

pub enum Refusal {
    Status(u16),
}

/// Opens `/live` with `client`'s cookies, sending `origin` (None: no Origin header).
pub async fn open(client: &Client, origin: Option<&str>) -> Result<LiveSocket, Refusal> {
    let url = format!("{}/live", client.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("request");
    let cookies = client.cookie_header();
    if !cookies.is_empty() {
        request.headers_mut().insert("cookie", HeaderValue::from_str(&cookies).expect("cookie header"));
    }
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", HeaderValue::from_str(origin).expect("origin header"));
    }
    match connect_async(request).await {
        Ok((ws, _)) => Ok(LiveSocket { ws, acks: true }),
        Err(Error::Http(response)) => Err(Refusal::Status(response.status().as_u16())),
        Err(e) => panic!("live socket failed: {e}"),
    }
}

impl LiveSocket {
    /// Opens a socket for the page at `path`, as the browser would after loading it.
    pub async fn for_page(client: &Client, origin: &str, path: &str) -> (LiveSocket, String) {
        let html = client.get_html(path).await;
        let mut socket = open(client, Some(origin)).await.unwrap_or_else(|_| panic!("live socket for {path} refused"));
        socket.hello(cursor_in(&html), &regions_in(&html)).await;
        (socket, html)
    }

    pub async fn hello(&mut self, cursor: i64, regions: &[String]) {
        let hello = serde_json::json!({"type": "hello", "cursor": cursor, "regions": regions});
        self.ws.send(Message::text(hello.to_string())).await.expect("hello sent");
    }

    /// The next push, or `None` if nothing arrives within `wait` (a close is a panic).
    pub async fn push_within(&mut self, wait: Duration) -> Option<Push> {
        loop {
            let message = match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => panic!("the live socket ended"),
                Ok(Some(message)) => message.expect("live socket message"),
            };
            match message {
                Message::Text(text) => {
                    let push: Push = serde_json::from_str(&text).expect("a push as designed");
                    if self.acks {
                        let ack = serde_json::json!({"type": "ack", "id": push.id});
                        self.ws.send(Message::text(ack.to_string())).await.expect("ack sent");
                    }
                    return Some(push);
                }
                Message::Close(frame) => panic!("the live socket closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The first push (the page's catch-up when it connects).
    pub async fn resumed(&mut self) -> Push {
        self.push_within(PATIENCE).await.expect("the catch-up push")
    }

    /// Waits for a push that replaces `target` with markup containing `text`, and returns that push.
    pub async fn expect_push(&mut self, target: &str, text: &str) -> Push {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let push = self.push_within(left).await.unwrap_or_else(|| panic!("no push of {target} with {text:?}"));
            if html_of(&push, target).is_some_and(|html| html.contains(text)) {
                return push;
            }
        }
    }

    /// Waits for a push that replaces `target` with markup containing `text`, and returns that markup.
    pub async fn expect(&mut self, target: &str, text: &str) -> String {
        let push = self.expect_push(target, text).await;
        html_of(&push, target).unwrap_or_default().to_owned()
    }

    /// Asserts that nothing is pushed for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(push) = self.push_within(wait).await {
            panic!("expected nothing, got {push:?}");
        }
    }

    /// Reads (and acks, if acking) until the server closes the socket; returns the close code.
    pub async fn closed(&mut self) -> u16 {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("the socket should close");
            match message {
                Some(Ok(Message::Close(frame))) => return frame.map_or(1005, |f| u16::from(f.code)),
                Some(Ok(Message::Text(text))) if self.acks => {
                    let push: Push = serde_json::from_str(&text).expect("push");
                    let ack = serde_json::json!({"type": "ack", "id": push.id});
                    let _ = self.ws.send(Message::text(ack.to_string())).await;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return 1006,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
