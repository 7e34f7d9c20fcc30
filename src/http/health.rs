//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::response::ApiError;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "Alive", body = Object, content_type = "application/json"))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: the database answers",
    responses(
        (status = 200, description = "Ready", body = Object, content_type = "application/json"),
        (status = 503, description = "Database unreachable", body = super::response::ErrorBody)
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Any failure to reach the database is "not ready" (503), never a 500.
    let backend = crate::service::ops::ready(&state).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "database": backend })))
}
