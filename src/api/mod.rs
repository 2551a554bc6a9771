//! The JSON API under `/api/v1`, for the business's other systems.
//!
//! Bearer tokens of integration users only (`auth`): no cookies, no CSRF, and a
//! browser session is not a credential here. Every answer is JSON, errors
//! included (`error`), and each request is one transaction in the integration
//! user's staff scope.

pub mod auth;
pub mod body;
pub mod error;
pub mod orders;

use actix_web::{HttpResponse, web};

use error::ApiError;

/// The largest body the API reads.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let json = web::JsonConfig::default().limit(BODY_LIMIT).error_handler(error::json_error_handler);
    cfg.service(
        web::scope("/api/v1")
            .app_data(json)
            .service(web::resource("/orders").route(web::get().to(orders::list)).default_service(web::to(not_allowed)))
            .service(
                web::resource("/orders/by-ref/{external_ref}")
                    .route(web::get().to(orders::show_by_ref))
                    .route(web::put().to(orders::upsert))
                    .default_service(web::to(not_allowed)),
            )
            .service(
                web::resource("/orders/{id}").route(web::get().to(orders::show)).default_service(web::to(not_allowed)),
            )
            .service(
                web::resource("/orders/{id}/stage")
                    .route(web::post().to(orders::move_stage))
                    .default_service(web::to(not_allowed)),
            )
            .default_service(web::to(no_route)),
    );
}

async fn not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

async fn no_route() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NoRoute)
}
