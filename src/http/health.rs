//! Liveness, readiness and Prometheus metrics.

use actix_web::{web, HttpRequest, HttpResponse};

/// Liveness (`ok`) or readiness (`ready`, with the backend reached).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
    /// `sqlite` or `postgres`.
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<&'static str>,
}

use super::response::{ApiError, Shape};
use crate::domain::secrets::constant_time_eq;
use crate::error::ErrorCode;
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

/// `GET /metrics` for a Prometheus scraper holding `metrics.token` (404 while metrics are off).
pub async fn metrics(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let config = &state.config.metrics;
    if !config.enabled {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "metrics are not enabled",
            Shape::OAuth,
        ));
    }
    let presented = super::extract::bearer(&req).unwrap_or_default();
    if !constant_time_eq(config.token.as_bytes(), presented.as_bytes()) {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the metrics token is required",
            Shape::OAuth,
        ));
    }
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(crate::service::ops::metrics_text(&state)))
}
