//! For operators and load balancers: `/healthz` (the process is up) and
//! `/readyz` (it can serve).

use actix_web::{HttpResponse, web};

use crate::web::AppState;

/// The process is up.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// The process can serve: its database answers.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = match state.db.door().await {
        Ok(door) => door.ping().await.is_ok(),
        Err(_) => false,
    };
    let pool = state.db.state();
    // Pages work without the live layer, so a lost listener degrades readiness but does not fail it.
    let (listening, error) = state.live.metrics().listener();
    let body = serde_json::json!({
        "database": if database { "ok" } else { "unreachable" },
        "pool": { "connections": pool.connections, "idle": pool.idle_connections },
        "live": {
            "listener": if listening { "connected" } else { "reconnecting" },
            "error": error,
            "sessions": state.live.metrics().connected_sessions(),
        },
    });
    if database { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
