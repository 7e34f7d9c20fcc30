//! `/api/tokens`: personal and workspace tokens. The caller authenticates with a bearer
//! credential that speaks for a user (a personal token or a user's access token) or with the
//! account page's session.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::extract::{self, SESSION_COOKIE};
use super::response::{no_store_json, ApiError, Shape};
use crate::domain::accounts::{self, Caller};
use crate::error::ErrorCode;
use crate::service;
use crate::state::AppState;

/// The user behind the request, or `401 invalid_token` with the bearer challenge.
pub async fn caller(state: &AppState, req: &HttpRequest) -> Result<Caller, ApiError> {
    let unauthenticated = || {
        ApiError::new(
            ErrorCode::InvalidToken,
            "a bearer token that speaks for a user is required",
            Shape::OAuth,
        )
    };
    let session = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
    service::accounts::caller(state, extract::bearer(req), session)
        .await?
        .ok_or_else(unauthenticated)
}

/// The answer to a deletion.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// `revoked`.
    status: &'static str,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateBody {
    name: Option<String>,
    scopes: Option<Vec<String>>,
    /// Space-separated alternative to `scopes`.
    scope: Option<String>,
    workspace: Option<String>,
    /// Seconds until the token expires; never later than the token that makes it.
    expires_in: Option<i64>,
}

#[utoipa::path(post, path = "/api/tokens", tag = "account",
    summary = "Create a personal or workspace token with chosen scopes (never more than the caller has); the plaintext is in this answer only",
    request_body(content = CreateBody, content_type = "application/json"),
    responses(
        (status = 201, description = "id, token (shown once), prefix, scopes, workspace, created_at", body = crate::domain::accounts::CreatedToken, content_type = "application/json"),
        (status = 400, description = "invalid_scope", body = super::response::ErrorBody),
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
        (status = 403, description = "insufficient_scope: the bearer is not a personal or workspace token; access_denied: another workspace", body = super::response::ErrorBody),
    ))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &req).await?;
    let body = body.into_inner();
    let request = accounts::TokenRequest {
        scopes: body.scopes.or_else(|| {
            body.scope.map(|s| {
                s.split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
        }),
        name: body.name,
        workspace: body.workspace,
        expires_in: body.expires_in,
    };
    let audit = extract::audit_context(&req, &state.config);
    let created = service::accounts::create_token(&state, audit, caller, request).await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(created))
}

#[utoipa::path(get, path = "/api/tokens", tag = "account",
    summary = "List the caller's tokens: id, prefix, scopes, created_at, last_used_at — never plaintext or hash",
    responses(
        (status = 200, description = "tokens", body = crate::domain::accounts::TokenList, content_type = "application/json"),
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
    ))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &req).await?;
    let tokens = service::accounts::list_tokens(&state, caller).await?;
    Ok(no_store_json(&tokens))
}

#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "account",
    summary = "Revoke one of the caller's tokens; another user's token is 404",
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 200, description = "revoked", body = Deleted, content_type = "application/json"),
        (status = 404, description = "not_found", body = super::response::ErrorBody),
    ))]
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &req).await?;
    let id = path.into_inner();
    let audit = extract::audit_context(&req, &state.config);
    service::accounts::delete_token(&state, audit, caller, id).await?;
    Ok(no_store_json(&Deleted { status: "revoked" }))
}
