//! Liveness and readiness.

use actix_web::{web, HttpResponse};

/// Liveness (`ok`) or readiness (`ready`, with the backend reached).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
    /// `sqlite` or `postgres`.
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<&'static str>,
}

use super::response::ApiError;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "Alive", body = Health, content_type = "application/json"))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        database: None,
    })
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: the database answers",
    responses(
        (status = 200, description = "Ready", body = Health, content_type = "application/json"),
        (status = 503, description = "Database unreachable", body = super::response::ErrorBody)
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Any failure to reach the database is "not ready" (503), never a 500.
    let backend = crate::service::ops::ready(&state).await?;
    Ok(HttpResponse::Ok().json(Health {
        status: "ready",
        database: Some(backend),
    }))
}
