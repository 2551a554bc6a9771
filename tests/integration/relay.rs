//! The notification relay: writers append events, one elected connection per
//! database sends the notifications (see actors/src/relay.rs).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::support::live::{LiveSocket, PATIENCE};
use crate::support::{Client, TestApp, spawn_app};

const ALICE: &str = "alice@acme.example";
const STAFF: &str = "staff@portal.example";

/// A plain owner connection, as the business's ERP would open, that also hears
/// notifications on the channels it listens to (with the sending backend's pid).
struct Erp {
    db: tokio_postgres::Client,
    pid: i32,
    heard: mpsc::UnboundedReceiver<(i32, String)>,
}

impl Erp {
    async fn connect(app: &TestApp, channels: &[String]) -> Erp {
        let (db, mut connection) = tokio_postgres::connect(&app.db_url, NoTls).await.unwrap();
        let (tx, heard) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message {
                    let _ = tx.send((n.process_id(), n.channel().to_owned()));
                }
            }
        });
        let pid = db.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        for channel in channels {
            db.batch_execute(&format!("LISTEN \"{channel}\"")).await.unwrap();
        }
        Erp { db, pid, heard }
    }

    /// Sets a tracking number on `order` in a transaction of its own; the channels
    /// that transaction itself notified (not the relay's notifications, also heard here).
    async fn update(&mut self, order: uuid::Uuid, tracking: &str) -> Vec<String> {
        self.db
            .execute(
                "UPDATE orders SET tracking_carrier = 'UPS', tracking_number = $2 WHERE id = $1",
                &[&order, &tracking],
            )
            .await
            .unwrap();
        // A session's own notifications reach it before its transaction's answer,
        // so one more round trip is enough for every one of them to be here.
        self.db.batch_execute("SELECT 1").await.unwrap();
        let mut own = Vec::new();
        while let Ok((pid, channel)) = self.heard.try_recv() {
            if pid == self.pid {
                own.push(channel);
            }
        }
        own
    }
}

async fn metrics(staff: &Client) -> HashMap<String, f64> {
    let text = staff.get_html("/metrics").await;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v)))
        .collect()
}

/// Waits (at most [`PATIENCE`]) until the app's metrics satisfy `ok`; the metrics then.
async fn metrics_until(staff: &Client, what: &str, ok: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let m = metrics(staff).await;
        if ok(&m) {
            return m;
        }
        assert!(tokio::time::Instant::now() < deadline, "never {what}: {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn relay_connections(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'portal-relay' AND datname = current_database()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

async fn alice_on_order(app: &TestApp, order: uuid::Uuid) -> LiveSocket {
    let alice = app.signed_in(ALICE).await;
    let (mut socket, _) = LiveSocket::for_page(&alice, &app.origin, &format!("/orders/{order}")).await;
    socket.resumed().await;
    socket
}

#[tokio::test]
async fn an_erp_update_is_live_whether_the_relay_sleeps_or_polls() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1040").await;
    let acme = app.customer_id("acme").await;
    let staff = app.signed_in(STAFF).await;
    let mut alice = alice_on_order(&app, order).await;
    let target = format!("order-{order}-details");
    let mut erp = Erp::connect(&app, &["portal_events".to_owned(), format!("c_{acme}"), "staff".to_owned()]).await;

    // Asleep: nothing has been written for a while, so the relay has stopped polling.
    let before = metrics_until(&staff, "an asleep relay", |m| {
        m["portal_live_relay_leader"] == 1.0 && m["portal_live_relay_awake"] == 0.0
    })
    .await;
    let own = erp.update(order, "1ZASLEEP").await;
    assert_eq!(own, vec!["portal_events".to_owned()], "a writer wakes a sleeping relay, and only that");
    alice.expect(&target, "1ZASLEEP").await;
    metrics_until(&staff, "a writer waking the relay", |m| {
        m["portal_live_relay_wakeups_total"] > before["portal_live_relay_wakeups_total"]
    })
    .await;

    // Awake: the relay polls for a few milliseconds after each event, so writes in
    // quick succession keep it awake and find it so: they send nothing at all.
    // (A write that finds it dozed off wakes it, and the next one finds it awake.)
    let mut attempts = 0;
    let tracking = loop {
        attempts += 1;
        let tracking = format!("1ZAWAKE{attempts}");
        let own = erp.update(order, &tracking).await;
        if own.is_empty() {
            break tracking;
        }
        assert_eq!(own, vec!["portal_events".to_owned()]);
        assert!(attempts < 200, "the relay was never awake for a write");
    };
    alice.expect(&target, &tracking).await;
    let after = metrics(&staff).await;
    assert!(after["portal_live_relay_notifications_total"] > before["portal_live_relay_notifications_total"]);
}

#[tokio::test]
async fn writers_notify_only_to_wake_a_sleeping_relay() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1040").await;
    let acme = app.customer_id("acme").await;
    // No relay runs on this database once the app has stopped, so nothing but the
    // writer's own transaction can notify.
    app.stop().await;
    let owner = app.sql().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while relay_connections(&owner).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the relay's connection outlived the app");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut erp = Erp::connect(&app, &["portal_events".to_owned(), format!("c_{acme}"), "staff".to_owned()]).await;

    owner.execute("UPDATE live_relay SET awake = true", &[]).await.unwrap();
    assert_eq!(erp.update(order, "1ZQUIET").await, Vec::<String>::new(), "an awake relay means silent writers");
    let events: i64 = owner
        .query_one("SELECT count(*) FROM events WHERE topic = 'orders' AND subject_id = $1", &[&order])
        .await
        .unwrap()
        .get(0);
    assert!(events > 0, "the event is still written");

    owner.execute("UPDATE live_relay SET awake = false", &[]).await.unwrap();
    assert_eq!(erp.update(order, "1ZWAKE").await, vec!["portal_events".to_owned()]);
    // Several rows in one transaction still wake the relay once.
    erp.db.batch_execute("BEGIN").await.unwrap();
    for n in 0..3 {
        erp.db
            .execute("UPDATE orders SET tracking_number = $2 WHERE id = $1", &[&order, &format!("1ZMANY{n}")])
            .await
            .unwrap();
    }
    erp.db.batch_execute("COMMIT").await.unwrap();
    assert_eq!(erp.update(order, "1ZLAST").await, vec!["portal_events".to_owned(), "portal_events".to_owned()]);
}

#[tokio::test]
async fn another_connection_takes_over_when_the_relay_dies() {
    let app = spawn_app().await;
    let order = app.order_id("ORD-1041").await;
    let staff = app.signed_in(STAFF).await;
    let mut alice = alice_on_order(&app, order).await;
    let target = format!("order-{order}-details");
    metrics_until(&staff, "a relay", |m| m["portal_live_relay_leader"] == 1.0).await;
    let owner = app.sql().await;
    owner
        .execute("UPDATE orders SET tracking_carrier = 'UPS', tracking_number = '1ZBEFORE' WHERE id = $1", &[&order])
        .await
        .unwrap();
    alice.expect(&target, "1ZBEFORE").await;

    // Killed right after a change, while it polls: the flag stays awake, so the next
    // writers stay silent and only the relay that takes over can announce them.
    let killed: i64 = owner
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'portal-relay' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "one relay connection per process");
    owner
        .execute("UPDATE orders SET tracking_carrier = 'UPS', tracking_number = '1ZAFTER' WHERE id = $1", &[&order])
        .await
        .unwrap();
    alice.expect(&target, "1ZAFTER").await;
    let m = metrics_until(&staff, "a second takeover", |m| m["portal_live_relay_takeovers_total"] >= 2.0).await;
    assert_eq!(m["portal_live_relay_leader"], 1.0);
    assert_eq!(relay_connections(&owner).await, 1);
}
