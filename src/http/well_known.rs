//! Discovery: RFC 8414 and RFC 9728 metadata, JWKS, `/auth.md`. The documents are built at
//! start-up (`domain::discovery`); these handlers only serve them.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::response::{ApiError, Shape};
use crate::error::ErrorCode;
use crate::state::AppState;

/// Discovery documents may be cached briefly; they change only with a restart.
const METADATA_CACHE: &str = "public, max-age=300";

#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    summary = "Authorization server metadata (RFC 8414) with the auth.md agent_auth block",
    responses((status = 200, description = "Metadata", body = Object, content_type = "application/json"))
)]
pub async fn authorization_server(state: web::Data<AppState>) -> HttpResponse {
    cached_json(&state.discovery.authorization_server)
}

#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "discovery",
    summary = "OpenID Provider metadata (OpenID Connect Discovery 1.0): every RFC 8414 member with the same value, plus userinfo_endpoint, subject_types_supported, id_token_signing_alg_values_supported, claims_supported",
    responses(
        (status = 200, description = "Metadata", body = Object, content_type = "application/json"),
        (status = 404, description = "OpenID Connect is off (oauth.oidc.enabled = false)", body = super::response::ErrorBody)
    )
)]
pub async fn openid_configuration(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .discovery
        .openid_configuration
        .as_ref()
        .map(cached_json)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                "OpenID Connect is not enabled on this server",
                Shape::OAuth,
            )
        })
}

#[utoipa::path(
    get,
    path = "/.well-known/oauth-protected-resource",
    tag = "discovery",
    summary = "Protected resource metadata (RFC 9728) for the default resource; configured resources with a path are also served at the path-suffixed location",
    responses(
        (status = 200, description = "Metadata", body = Object, content_type = "application/json"),
        (status = 404, description = "No such resource", body = super::response::ErrorBody)
    )
)]
pub async fn protected_resource(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    state
        .discovery
        .protected_resources
        .iter()
        .find(|(path, _)| path == req.path())
        .map(|(_, doc)| cached_json(doc))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no protected resource is described at {}", req.path()),
                Shape::OAuth,
            )
        })
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    summary = "Public signing keys: the current key and retired keys that can still verify a token",
    responses((status = 200, description = "JWK Set", body = Object, content_type = "application/json"))
)]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(state.keys.current().jwks())
}

#[utoipa::path(
    get,
    path = "/auth.md",
    tag = "discovery",
    summary = "The agent-facing guide, rendered from the live configuration",
    responses((status = 200, description = "Markdown", body = String, content_type = "text/markdown"))
)]
pub async fn auth_md(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/markdown; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, METADATA_CACHE))
        .body(state.discovery.auth_md.clone())
}

fn cached_json(doc: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, METADATA_CACHE))
        .json(doc)
}
