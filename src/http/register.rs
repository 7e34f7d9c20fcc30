//! Dynamic client registration: `POST /oauth2/register` (RFC 7591), and
//! `GET`/`DELETE /oauth2/register/{client_id}` with the registration access token (RFC 7592).

use actix_web::{web, HttpRequest, HttpResponse};

use super::extract;
use super::response::{ApiError, Shape};
use crate::domain::ratelimit::Action;
use crate::domain::registration::RegistrationRequest;
use crate::service;
use crate::state::AppState;

#[utoipa::path(post, path = "/oauth2/register", tag = "oauth",
    summary = "Register a client (RFC 7591)",
    request_body(content = RegistrationRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Client metadata with client_id, client_secret (confidential clients) and registration_access_token", body = Object, content_type = "application/json"),
        (status = 400, description = "invalid_redirect_uri or invalid_client_metadata", body = super::response::ErrorBody),
        (status = 401, description = "initial access token required", body = super::response::ErrorBody),
    ))]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RegistrationRequest>,
) -> Result<HttpResponse, ApiError> {
    service::clients::gate(&state, extract::bearer(&req).as_deref())?;
    super::agents::limit(&state, &req, Action::Register, Shape::OAuth).await?;
    let audit = extract::audit_context(&req, &state.config);
    let created = service::clients::register(&state, audit, body.into_inner()).await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(created))
}

#[utoipa::path(get, path = "/oauth2/register/{client_id}", tag = "oauth",
    summary = "Read a registration (RFC 7592) with the registration access token",
    params(("client_id" = String, Path, description = "The client")),
    responses(
        (status = 200, description = "Client metadata", body = Object, content_type = "application/json"),
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
    ))]
pub async fn read(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let metadata = service::clients::read(&state, path.into_inner(), extract::bearer(&req)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(metadata))
}

#[utoipa::path(delete, path = "/oauth2/register/{client_id}", tag = "oauth",
    summary = "Delete a registration (RFC 7592); its tokens are revoked",
    params(("client_id" = String, Path, description = "The client")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "invalid_token", body = super::response::ErrorBody),
    ))]
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service::clients::delete(&state, path.into_inner(), extract::bearer(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
