//! OpenID Connect `/userinfo` (Core §5.3): the claims of the person an access token speaks for.

use actix_web::{web, HttpRequest, HttpResponse};

use super::extract;
use super::response::{no_store_json, ApiError, Shape};
use crate::error::ErrorCode;
use crate::service;
use crate::state::AppState;

#[utoipa::path(get, path = "/userinfo", tag = "oauth",
    summary = "OpenID Connect userinfo: sub, and email and email_verified with scope email; GET or POST with the access token as a bearer",
    responses(
        (status = 200, description = "The person's claims", body = crate::domain::oidc::UserInfo, content_type = "application/json"),
        (status = 401, description = "invalid_token: missing, unknown, expired or revoked access token", body = super::response::ErrorBody),
        (status = 403, description = "insufficient_scope: the token lacks openid (WWW-Authenticate names it)", body = super::response::ErrorBody),
    ))]
pub async fn userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !state.config.oauth.oidc.enabled {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "OpenID Connect is not enabled on this server",
            Shape::OAuth,
        ));
    }
    let unauthenticated = || {
        ApiError::new(
            ErrorCode::InvalidToken,
            "an access token is required as a bearer credential",
            Shape::OAuth,
        )
    };
    let token = extract::bearer(&req).ok_or_else(unauthenticated)?;
    let info = service::oauth::userinfo(&state, token)
        .await?
        .ok_or_else(unauthenticated)?;
    Ok(no_store_json(&info))
}
