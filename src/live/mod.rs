//! The web side of the live layer: the `/live` socket, `/metrics`, and the
//! renderer that turns region ids into the same partials the pages use.
//!
//! `portal-actors` decides who needs what and moves it; this module only
//! knows what each region id means and renders it under the viewer's own scope.

mod regions;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use portal_actors::protocol::{Op, OpKind};
use portal_actors::{Audience, Catchup, EVENT_COLUMNS, Event, RenderError, RenderFuture, Renderer};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::db::{Db, DbError, Scope};
use crate::web::extract::current_viewer;
use crate::web::{AppError, AppState};
use regions::Region;

pub use portal_actors::{ListenerConfig, Live};

/// Starts this process's live layer on the application's database.
pub fn start(db: &Db) -> std::io::Result<Live> {
    let (database, role) = db.listener_login();
    Live::start(ListenerConfig { database, role: role.to_owned() }, Arc::new(PageRenderer { db: db.clone() }))
}

/// Upgrades a signed-in page's request to its live socket.
pub async fn socket(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    // Browsers send cookies with a WebSocket handshake from any site and CORS does
    // not apply to it, so the origin check is what stops cross-site socket hijacking.
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin.is_some_and(|o| o.eq_ignore_ascii_case(&state.origin)) {
        return Err(AppError::CrossSite);
    }
    let viewer = current_viewer(&req).await?.ok_or(AppError::Unauthorized)?;
    // Staff who must add a passkey first see no back-office data, live or not.
    if viewer.needs_passkey {
        return Err(AppError::Forbidden);
    }
    let audience = Audience {
        session_id: viewer.session_id,
        user_id: viewer.user_id,
        customer_id: viewer.customer.as_ref().map(|c| c.id),
        role: viewer.role.as_str().to_owned(),
    };
    state.live.connect(audience, &req, payload).map_err(|e| AppError::BadRequest(e.to_string()))
}

/// Prometheus text, for staff or for a scraper holding `PORTAL_METRICS_TOKEN`.
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let bearer =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let token_ok = match (&state.metrics_token, bearer) {
        (Some(expected), Some(sent)) => bool::from(expected.expose_secret().as_bytes().ct_eq(sent.as_bytes())),
        _ => false,
    };
    if !token_ok {
        match current_viewer(&req).await? {
            Some(viewer) if viewer.is_staff() && !viewer.needs_passkey => {}
            Some(_) => return Err(AppError::Forbidden),
            None => return Err(AppError::Unauthorized),
        }
    }
    let pool = state.db.state();
    let mut body = state.live.metrics().prometheus();
    body.push_str(&format!(
        "# HELP portal_db_pool_connections Connections of the customer pool.\n# TYPE portal_db_pool_connections gauge\n\
         portal_db_pool_connections {}\n# HELP portal_db_pool_idle Idle connections of the customer pool.\n\
         # TYPE portal_db_pool_idle gauge\nportal_db_pool_idle {}\n",
        pool.connections, pool.idle_connections
    ));
    Ok(HttpResponse::Ok().insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")).body(body))
}

/// Drops events older than the retention period (pages away longer re-render whole).
pub async fn prune(db: &Db, keep: Duration) -> Result<i32, DbError> {
    let scope = db.staff_scope(None).await?;
    let row = scope.query_one("SELECT portal_events_prune(make_interval(secs => $1))", &[&keep.as_secs_f64()]).await?;
    scope.commit().await?;
    Ok(row.try_get(0)?)
}

/// More missed events than this and a page is re-rendered whole instead.
const MAX_CATCHUP: i64 = 5_000;

struct PageRenderer {
    db: Db,
}

fn failed(e: impl std::fmt::Display) -> RenderError {
    RenderError(e.to_string())
}

async fn scope_of(db: &Db, audience: &Audience) -> Result<Scope, DbError> {
    match audience.customer_id {
        Some(customer) => db.customer_scope(customer, audience.user_id).await,
        None => db.staff_scope(Some(audience.user_id)).await,
    }
}

impl Renderer for PageRenderer {
    fn affects(&self, audience: &Audience, region: &str, event: &Event) -> bool {
        Region::parse(region, audience).is_some_and(|r| r.affected_by(audience, event))
    }

    fn share_key(&self, audience: &Audience, region: &str) -> String {
        match Region::parse(region, audience) {
            Some(r) if r.per_user() => format!("user:{}", audience.user_id),
            _ => format!("role:{}", audience.role),
        }
    }

    fn render(&self, audience: Audience, regions: Vec<String>) -> RenderFuture<HashMap<String, Vec<Op>>> {
        let db = self.db.clone();
        Box::pin(async move {
            let scope = scope_of(&db, &audience).await.map_err(failed)?;
            let mut cache = regions::Cache::default();
            let mut out = HashMap::with_capacity(regions.len());
            for id in regions {
                let Some(region) = Region::parse(&id, &audience) else { continue };
                let op = match region.render(&scope, &audience, &mut cache).await.map_err(failed)? {
                    Some(html) => Op { op: OpKind::Replace, target: id.clone(), html },
                    None => Op { op: OpKind::Remove, target: id.clone(), html: String::new() },
                };
                out.insert(id, vec![op]);
            }
            scope.commit().await.map_err(failed)?;
            Ok(out)
        })
    }

    fn events_since(&self, audience: Audience, cursor: i64) -> RenderFuture<Option<Catchup>> {
        let db = self.db.clone();
        Box::pin(async move {
            let scope = scope_of(&db, &audience).await.map_err(failed)?;
            // Row-level security limits a customer to its own events.
            let rows = scope
                .query(
                    &format!(
                        "WITH here AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS position, \
                                (SELECT pruned_below FROM events_horizon) AS horizon) \
                         SELECT h.position, h.horizon, e.* FROM here h LEFT JOIN LATERAL ( \
                           SELECT {EVENT_COLUMNS} FROM events WHERE xid >= $1 ORDER BY id LIMIT $2) e ON true"
                    ),
                    &[&cursor, &(MAX_CATCHUP + 1)],
                )
                .await
                .map_err(failed)?;
            scope.commit().await.map_err(failed)?;
            let Some(first) = rows.first() else { return Ok(None) };
            let (position, horizon): (i64, i64) =
                (first.try_get("position").map_err(failed)?, first.try_get("horizon").map_err(failed)?);
            if cursor < horizon || rows.len() as i64 > MAX_CATCHUP {
                return Ok(None);
            }
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                if row.try_get::<_, Option<i64>>("id").map_err(failed)?.is_some() {
                    events.push(Event::from_row(row).map_err(failed)?);
                }
            }
            Ok(Some(Catchup { events, position }))
        })
    }

    fn alive(&self, sessions: Vec<Uuid>) -> RenderFuture<HashMap<Uuid, String>> {
        let db = self.db.clone();
        Box::pin(async move {
            let scope = db.staff_scope(None).await.map_err(failed)?;
            let rows = scope
                .query("SELECT session_id, role FROM portal_sessions_alive($1)", &[&sessions])
                .await
                .map_err(failed)?;
            scope.commit().await.map_err(failed)?;
            rows.iter()
                .map(|r| Ok((r.try_get("session_id").map_err(failed)?, r.try_get("role").map_err(failed)?)))
                .collect()
        })
    }
}
