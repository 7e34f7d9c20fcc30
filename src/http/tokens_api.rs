//! `/api/tokens`: personal and workspace tokens. The caller authenticates with a bearer
//! credential that speaks for a user (a personal token or a user's access token) or with the
//! account page's session.

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::extract::{self, SESSION_COOKIE};
use super::response::{no_store_json, ApiError, Shape};
use crate::domain::accounts::{self, Caller};
use crate::domain::ratelimit::Action;
use crate::error::ErrorCode;
use crate::service;
use crate::state::AppState;

/// The user behind the request, or `401 invalid_token` with the bearer challenge. Every call
/// counts against the `/api` rate limit first (`rate_limit.tokens_per_ip`), so guessing tokens
/// here is as slow as anywhere else.
pub async fn caller(state: &AppState, req: &HttpRequest) -> Result<Caller, ApiError> {
    super::agents::limit(state, req, Action::Tokens, Shape::OAuth).await?;
    let bearer = extract::bearer(req);
    if bearer.is_none() && req.method() != Method::GET && !same_origin(state, req) {
        // A cookie rides along on requests other sites make; the browser's Origin does not lie.
        return Err(ApiError::new(
            ErrorCode::AccessDenied,
            "a write with the account session needs an Origin header equal to this server's origin",
            Shape::OAuth,
        ));
    }
    let unauthenticated = || {
        ApiError::new(
            ErrorCode::InvalidToken,
            "a bearer token that speaks for a user is required",
            Shape::OAuth,
        )
    };
    let session = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
    service::accounts::caller(state, bearer, session)
        .await?
        .ok_or_else(unauthenticated)
}

/// Whether the request's `Origin` is the issuer's origin.
fn same_origin(state: &AppState, req: &HttpRequest) -> bool {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let issuer = url::Url::parse(&state.config.server.issuer).ok();
    issuer.is_some_and(|u| u.origin().ascii_serialization() == origin)
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

impl CreateBody {
    pub fn into_request(self) -> accounts::TokenRequest {
        accounts::TokenRequest {
            scopes: self
                .scopes
                .or_else(|| self.scope.map(|s| crate::domain::scope::list(&s))),
            name: self.name,
            workspace: self.workspace,
            expires_in: self.expires_in,
        }
    }
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
    let request = body.into_inner().into_request();
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
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct WorkspaceBody {
    name: String,
}

#[utoipa::path(post, path = "/api/workspaces", tag = "account",
    summary = "Create a workspace the caller owns (and is the first member of); tokens name it by id",
    request_body(content = WorkspaceBody, content_type = "application/json"),
    responses(
        (status = 201, description = "id, name, owner, created_at", body = crate::domain::workspaces::Workspace, content_type = "application/json"),
        (status = 400, description = "invalid_request", body = super::response::ErrorBody),
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
        (status = 403, description = "access_denied: a workspace token, or a session write without this server's Origin", body = super::response::ErrorBody),
    ))]
pub async fn create_workspace(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<WorkspaceBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &req).await?;
    let audit = extract::audit_context(&req, &state.config);
    let ws =
        service::accounts::create_workspace(&state, audit, caller, body.into_inner().name).await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(ws))
}

#[utoipa::path(get, path = "/api/workspaces", tag = "account",
    summary = "The workspaces the caller belongs to",
    responses(
        (status = 200, description = "workspaces", body = crate::domain::workspaces::WorkspaceList, content_type = "application/json"),
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
    ))]
pub async fn list_workspaces(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &req).await?;
    Ok(no_store_json(
        &service::accounts::list_workspaces(&state, caller).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MemberBody {
    email: String,
}

#[utoipa::path(post, path = "/api/workspaces/{id}/members", tag = "account",
    summary = "The owner adds a member by the email of their account",
    params(("id" = String, Path, description = "Workspace id")),
    request_body(content = MemberBody, content_type = "application/json"),
    responses(
        (status = 201, description = "workspace_id, user_id, email", body = crate::domain::workspaces::Member, content_type = "application/json"),
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
        (status = 403, description = "access_denied: not the owner", body = super::response::ErrorBody),
        (status = 404, description = "not_found: no such workspace, or no account with that email", body = super::response::ErrorBody),
    ))]
pub async fn add_member(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<MemberBody>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &req).await?;
    let audit = extract::audit_context(&req, &state.config);
    let member = service::accounts::add_member(
        &state,
        audit,
        caller,
        path.into_inner(),
        body.into_inner().email,
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(member))
}

#[utoipa::path(delete, path = "/api/workspaces/{id}/members/{user_id}", tag = "account",
    summary = "The owner removes a member; the member's tokens for the workspace are revoked",
    params(("id" = String, Path, description = "Workspace id"), ("user_id" = String, Path, description = "The member's user id")),
    responses(
        (status = 200, description = "removed, tokens_revoked", body = crate::domain::workspaces::Removed, content_type = "application/json"),
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
        (status = 403, description = "access_denied: not the owner", body = super::response::ErrorBody),
        (status = 404, description = "not_found", body = super::response::ErrorBody),
    ))]
pub async fn remove_member(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &req).await?;
    let audit = extract::audit_context(&req, &state.config);
    let (id, member) = path.into_inner();
    Ok(no_store_json(
        &service::accounts::remove_member(&state, audit, caller, id, member).await?,
    ))
}

#[utoipa::path(delete, path = "/api/workspaces/{id}", tag = "account",
    summary = "The owner deletes a workspace; every token for it is revoked",
    params(("id" = String, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "deleted, tokens_revoked", body = crate::domain::workspaces::Removed, content_type = "application/json"),
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
        (status = 403, description = "access_denied: not the owner", body = super::response::ErrorBody),
        (status = 404, description = "not_found", body = super::response::ErrorBody),
    ))]
pub async fn delete_workspace(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&state, &req).await?;
    let audit = extract::audit_context(&req, &state.config);
    Ok(no_store_json(
        &service::accounts::delete_workspace(&state, audit, caller, path.into_inner()).await?,
    ))
}
