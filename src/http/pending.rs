//! Endpoints of the contract that later work fills in. They are routed and described now so the
//! HTTP surface is complete from the start, and answer 501 with a JSON error until then. JSON
//! endpoints already parse their body, so malformed and oversized bodies get their real 4xx.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::response::{ApiError, ErrorBody, Shape};
use crate::error::ErrorCode;

fn pending(req: &HttpRequest) -> ApiError {
    ApiError::new(
        ErrorCode::NotImplemented,
        format!("{} {} is not implemented yet", req.method(), req.path()),
        Shape::for_path(req.path()),
    )
}

macro_rules! pending_handler {
    ($name:ident) => {
        pub async fn $name(req: HttpRequest) -> Result<HttpResponse, ApiError> {
            Err(pending(&req))
        }
    };
}

#[utoipa::path(get, path = "/api/tokens", tag = "account",
    summary = "List personal tokens (metadata only)",
    responses((status = 501, description = "Not implemented yet", body = ErrorBody)))]
pub async fn list_tokens(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(pending(&req))
}

#[utoipa::path(post, path = "/api/tokens", tag = "account",
    summary = "Create a personal or workspace token; plaintext shown once",
    responses((status = 501, description = "Not implemented yet", body = ErrorBody)))]
pub async fn create_token(
    req: HttpRequest,
    _body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    Err(pending(&req))
}

#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "account",
    summary = "Revoke a personal token",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 501, description = "Not implemented yet", body = ErrorBody)))]
pub async fn delete_token(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(pending(&req))
}

// Pages and admin routes are not JSON endpoints of the OpenAPI description.
pending_handler!(account);
pending_handler!(admin);
