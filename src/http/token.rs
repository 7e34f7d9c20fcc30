//! `POST /oauth2/token`, `POST /oauth2/revoke`, `POST /oauth2/introspect`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::extract::{self, OAuthBody, Params};
use super::response::{no_store_json, ApiError, Shape};
use crate::domain::credentials::{Introspection, TokenResponse};
use crate::domain::endpoints::TokenRequest;
use crate::error::ErrorCode;
use crate::service;
use crate::state::AppState;

/// The members of a token request (form-encoded, or a JSON object of strings).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenRequestBody {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    assertion: Option<String>,
    /// RFC 8628, with grant_type urn:ietf:params:oauth:grant-type:device_code.
    device_code: Option<String>,
    /// auth.md, with grant_type urn:workos:agent-auth:grant-type:claim.
    claim_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The members of a device authorization request (RFC 8628 §3.1).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DeviceRequestBody {
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

/// The members of a revocation request (form-encoded, or a JSON object of strings).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RevokeRequestBody {
    token: String,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The members of an introspection request (RFC 7662 §2.1, form-encoded); the caller
/// authenticates as a client (Basic or `client_secret_post`) or with the admin bearer token.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IntrospectRequestBody {
    token: String,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[utoipa::path(post, path = "/oauth2/token", tag = "oauth",
    summary = "Token endpoint: authorization_code (PKCE; id_token with scope openid), refresh_token (rotating), client_credentials, JWT-bearer, device_code (RFC 8628: authorization_pending, slow_down, expired_token, access_denied), the auth.md claim grant (urn:workos:agent-auth:grant-type:claim: the same answers while pending, then an access token plus identity_assertion and assertion_expires); form or JSON body",
    request_body(content(
        (TokenRequestBody = "application/x-www-form-urlencoded"),
        (TokenRequestBody = "application/json"),
    )),
    responses(
        (status = 200, description = "Tokens", body = TokenResponse, content_type = "application/json"),
        (status = 400, description = "RFC 6749 error", body = super::response::ErrorBody),
        (status = 401, description = "invalid_client", body = super::response::ErrorBody),
    ))]
pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: OAuthBody,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_pairs(body.0)?;
    let auth = extract::client_auth(&req, &params)?;
    let request = TokenRequest {
        grant_type: params.owned("grant_type").unwrap_or_default(),
        code: params.owned("code"),
        redirect_uri: params.owned("redirect_uri"),
        code_verifier: params.owned("code_verifier"),
        refresh_token: params.owned("refresh_token"),
        scope: params.owned("scope"),
        resource: params.owned("resource"),
        assertion: params.owned("assertion"),
        id_jag: None,
        device_code: params.owned("device_code"),
        claim_token: params.owned("claim_token"),
    };
    let audit = extract::audit_context(&req, &state.config);
    let grant_type = request.grant_type.clone();
    let response = service::oauth::token(&state, audit, auth, request).await?;
    // Only a grant the endpoint runs gets this far: the label's values are bounded.
    crate::metrics::metrics()
        .tokens_issued
        .get_or_create(&crate::metrics::GrantLabels { grant_type })
        .inc();
    Ok(no_store_json(&response))
}

#[utoipa::path(post, path = "/oauth2/device", tag = "oauth",
    summary = "Device authorization (RFC 8628 §3.1): a device code to poll the token endpoint with, and a user code for the /device page",
    request_body(content(
        (DeviceRequestBody = "application/x-www-form-urlencoded"),
        (DeviceRequestBody = "application/json"),
    )),
    responses(
        (status = 200, description = "device_code, user_code, verification_uri, verification_uri_complete, expires_in, interval", body = crate::domain::device::DeviceAuthorization, content_type = "application/json"),
        (status = 400, description = "RFC 6749 error (unauthorized_client, invalid_scope, invalid_target, invalid_request)", body = super::response::ErrorBody),
        (status = 401, description = "invalid_client", body = super::response::ErrorBody),
        (status = 503, description = "temporarily_unavailable, with Retry-After: four user codes drawn in a row were held by live requests", body = super::response::ErrorBody),
    ))]
pub async fn device(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: OAuthBody,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_pairs(body.0)?;
    let auth = extract::client_auth(&req, &params)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidClient,
            "client_id (or client authentication) is required",
            Shape::OAuth,
        )
    })?;
    let audit = extract::audit_context(&req, &state.config);
    let answer = service::oauth::device_authorization(
        &state,
        audit,
        auth,
        params.owned("scope"),
        params.owned("resource"),
    )
    .await?;
    Ok(no_store_json(&answer))
}

#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth",
    summary = "Token revocation (RFC 7009); form or JSON body. Unknown tokens answer 200",
    request_body(content(
        (RevokeRequestBody = "application/x-www-form-urlencoded"),
        (RevokeRequestBody = "application/json"),
    )),
    responses(
        (status = 200, description = "Revoked (or unknown)"),
        (status = 401, description = "invalid_client", body = super::response::ErrorBody),
    ))]
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: OAuthBody,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_pairs(body.0)?;
    let token = params.require("token")?.to_owned();
    let auth = extract::client_auth(&req, &params)?;
    let audit = extract::audit_context(&req, &state.config);
    service::oauth::revoke(&state, audit, auth, token).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .finish())
}

#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth",
    summary = "Token introspection (RFC 7662), for clients allowed to introspect or the admin token",
    request_body(content(
        (IntrospectRequestBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "active plus scope, client_id, sub, exp, iat, token_type, aud, iss", body = Introspection, content_type = "application/json"),
        (status = 401, description = "invalid_client", body = super::response::ErrorBody),
    ))]
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: extract::FormPairs,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_pairs(form.into_inner())?;
    let denied = || {
        ApiError::new(
            ErrorCode::InvalidClient,
            "authenticate as a client allowed to introspect",
            Shape::OAuth,
        )
    };
    let admin = extract::bearer(&req).is_some_and(|t| state.admin_token_matches(&t));
    let auth = if admin {
        None
    } else {
        Some(extract::client_auth(&req, &params)?.ok_or_else(denied)?)
    };
    let token = params.require("token")?.to_owned();
    let answer = service::oauth::introspect(&state, auth, token).await?;
    crate::metrics::metrics().introspected(answer.active);
    Ok(no_store_json(&answer))
}
