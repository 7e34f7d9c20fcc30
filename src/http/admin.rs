//! `/admin/…`: the operator API, authenticated by `admin.token` (compared in constant time).
//! Off when no token is configured.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::extract;
use super::response::{no_store_json, ApiError, Shape};
use crate::domain::admin::{AuditFilter, RevokeTarget};
use crate::error::ErrorCode;
use crate::service;
use crate::state::AppState;

fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    if state.config.admin.token.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "the admin API is not enabled",
            Shape::OAuth,
        ));
    }
    match extract::bearer(req) {
        Some(t) if state.admin_token_matches(&t) => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the admin token is required",
            Shape::OAuth,
        )),
    }
}

/// Every other path under `/admin/`.
pub async fn unknown(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    super::response::not_found(req).await
}

#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<i64>,
    after: Option<String>,
    status: Option<String>,
    user_id: Option<String>,
}

impl From<Page> for service::admin::Page {
    fn from(q: Page) -> Self {
        Self {
            limit: q.limit,
            after: q.after,
            status: q.status,
            user_id: q.user_id,
        }
    }
}

#[utoipa::path(get, path = "/admin/clients", tag = "admin", summary = "List clients", responses((status = 200, description = "clients", body = Object, content_type = "application/json"), (status = 401, description = "invalid_token", body = super::response::ErrorBody)))]
pub async fn clients_list(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    Ok(no_store_json(&service::admin::clients(&state).await?))
}

#[utoipa::path(get, path = "/admin/clients/{id}", tag = "admin", summary = "Show a client", params(("id" = String, Path, description = "client_id")), responses((status = 200, description = "client", body = Object, content_type = "application/json"), (status = 404, description = "not_found", body = super::response::ErrorBody)))]
pub async fn client_show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let client = service::admin::client(&state, path.into_inner()).await?;
    Ok(no_store_json(&client))
}

#[utoipa::path(get, path = "/admin/registrations", tag = "admin", summary = "List agent registrations (filter by status, user_id; page with limit and after)", params(("status" = Option<String>, Query, description = "pending, active, claimed, expired or revoked"), ("user_id" = Option<String>, Query, description = "owner"), ("after" = Option<String>, Query, description = "cursor: next of the previous page"), ("limit" = Option<i64>, Query, description = "1 to 200, default 50")), responses((status = 200, description = "registrations and next", body = crate::domain::admin::RegistrationPage, content_type = "application/json")))]
pub async fn registrations(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let page = service::admin::registrations(&state, q.into_inner().into()).await?;
    Ok(no_store_json(&page))
}

#[utoipa::path(get, path = "/admin/registrations/{id}", tag = "admin", summary = "Show a registration and its API key prefixes", params(("id" = String, Path, description = "registration_id")), responses((status = 200, description = "registration", body = crate::domain::admin::RegistrationInfo, content_type = "application/json"), (status = 404, description = "not_found", body = super::response::ErrorBody)))]
pub async fn registration(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let registration = service::admin::registration(&state, path.into_inner()).await?;
    Ok(no_store_json(&registration))
}

#[utoipa::path(get, path = "/admin/users", tag = "admin", summary = "List users", params(("after" = Option<String>, Query, description = "cursor"), ("limit" = Option<i64>, Query, description = "1 to 200")), responses((status = 200, description = "users and next", body = crate::domain::admin::UserPage, content_type = "application/json")))]
pub async fn users(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let users = service::admin::users(&state, q.into_inner().into()).await?;
    Ok(no_store_json(&users))
}

#[utoipa::path(get, path = "/admin/users/{id}", tag = "admin", summary = "Show a user", params(("id" = String, Path, description = "user id")), responses((status = 200, description = "user", body = crate::domain::admin::UserInfo, content_type = "application/json"), (status = 404, description = "not_found", body = super::response::ErrorBody)))]
pub async fn user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let user = service::admin::user(&state, path.into_inner()).await?;
    Ok(no_store_json(&user))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewUserBody {
    email: String,
    /// Leave out for an account that signs in only through tokens made for it.
    password: Option<String>,
}

#[utoipa::path(post, path = "/admin/users", tag = "admin",
    summary = "Create an account (no browser needed); without a password it cannot use the login page",
    request_body(content = NewUserBody, content_type = "application/json"),
    responses(
        (status = 201, description = "id, email", body = crate::domain::admin::NewUser, content_type = "application/json"),
        (status = 400, description = "invalid_request: a bad address, a short password, or the address is taken", body = super::response::ErrorBody),
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
    ))]
pub async fn create_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewUserBody>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let body = body.into_inner();
    let audit = extract::audit_context(&req, &state.config);
    let user = service::admin::create_user(&state, audit, body.email, body.password).await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(user))
}

#[utoipa::path(post, path = "/admin/users/{id}/tokens", tag = "admin",
    summary = "Make a personal or workspace token for a user (the first credential, no browser); shown once",
    params(("id" = String, Path, description = "user id")),
    request_body(content = super::tokens_api::CreateBody, content_type = "application/json"),
    responses(
        (status = 201, description = "the token, shown once, with its metadata", body = crate::domain::accounts::CreatedToken, content_type = "application/json"),
        (status = 400, description = "invalid_scope or invalid_request", body = super::response::ErrorBody),
        (status = 403, description = "access_denied: the user is not a member of the workspace", body = super::response::ErrorBody),
        (status = 404, description = "not_found: no such user", body = super::response::ErrorBody),
    ))]
pub async fn mint_for_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<super::tokens_api::CreateBody>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let audit = extract::audit_context(&req, &state.config);
    let created = service::admin::mint_for_user(
        &state,
        audit,
        path.into_inner(),
        body.into_inner().into_request(),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(created))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    event: Option<String>,
    registration_id: Option<String>,
    user_id: Option<String>,
    client_id: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    before_id: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/admin/audit", tag = "admin", summary = "The audit log, newest first, filtered and paged", params(("event" = Option<String>, Query, description = "event name"), ("registration_id" = Option<String>, Query, description = "registration"), ("user_id" = Option<String>, Query, description = "user"), ("client_id" = Option<String>, Query, description = "client"), ("since" = Option<i64>, Query, description = "Unix time, inclusive"), ("until" = Option<i64>, Query, description = "Unix time, exclusive"), ("before_id" = Option<i64>, Query, description = "cursor: next of the previous page"), ("limit" = Option<i64>, Query, description = "1 to 200")), responses((status = 200, description = "events and next", body = crate::domain::admin::AuditPage, content_type = "application/json")))]
pub async fn audit(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let q = q.into_inner();
    let filter = AuditFilter {
        event: q.event,
        registration_id: q.registration_id,
        user_id: q.user_id,
        client_id: q.client_id,
        since: q.since,
        until: q.until,
        before_id: q.before_id,
    };
    let events = service::admin::audit_log(&state, filter, q.limit).await?;
    Ok(no_store_json(&events))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RevokeBody {
    #[serde(default)]
    all: bool,
    registration_id: Option<String>,
    user_id: Option<String>,
}

#[utoipa::path(post, path = "/admin/revoke-agents", tag = "admin", summary = "Bulk revocation of agent credentials: {all: true}, {registration_id} or {user_id}", request_body(content = RevokeBody, content_type = "application/json"), responses((status = 200, description = "revoked count", body = crate::domain::agents::Revoked, content_type = "application/json"), (status = 400, description = "invalid_request", body = super::response::ErrorBody), (status = 401, description = "invalid_token: not the admin token", body = super::response::ErrorBody), (status = 404, description = "not_found: no such registration", body = super::response::ErrorBody)))]
pub async fn revoke_agents(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RevokeBody>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let target = match body.into_inner() {
        RevokeBody {
            all: true,
            registration_id: None,
            user_id: None,
        } => RevokeTarget::All,
        RevokeBody {
            all: false,
            registration_id: Some(id),
            user_id: None,
        } => RevokeTarget::Registration(id),
        RevokeBody {
            all: false,
            registration_id: None,
            user_id: Some(id),
        } => RevokeTarget::User(id),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "give exactly one of all: true, registration_id, user_id",
                Shape::OAuth,
            ))
        }
    };
    let mut audit = extract::audit_context(&req, &state.config);
    audit.actor = Some("admin".to_owned());
    let revoked = service::admin::revoke_agents(&state, audit, target).await?;
    Ok(no_store_json(&crate::domain::agents::Revoked { revoked }))
}
