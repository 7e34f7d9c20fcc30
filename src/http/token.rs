//! `POST /oauth2/token`, `POST /oauth2/revoke`, `POST /oauth2/introspect`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::extract::{self, Params};
use super::response::{no_store_json, ApiError, Shape};
use crate::db::DbConn;
use crate::domain::context::Ctx;
use crate::domain::credentials;
use crate::domain::discovery::GRANT_JWT_BEARER;
use crate::domain::providers;
use crate::domain::tokens::{self, Introspection, TokenRequest, TokenResponse};
use crate::error::ErrorCode;
use crate::state::AppState;

type Form = web::Form<Vec<(String, String)>>;

#[utoipa::path(post, path = "/oauth2/token", tag = "oauth",
    summary = "Token endpoint: authorization_code (PKCE), refresh_token (rotating), client_credentials",
    request_body(content_type = "application/x-www-form-urlencoded", content = String),
    responses(
        (status = 200, description = "Tokens", body = Object, content_type = "application/json"),
        (status = 400, description = "RFC 6749 error", body = super::response::ErrorBody),
        (status = 401, description = "invalid_client", body = super::response::ErrorBody),
    ))]
pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Form,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_pairs(form.into_inner())?;
    let auth = extract::client_auth(&req, &params)?;
    let mut request = TokenRequest {
        grant_type: params.owned("grant_type").unwrap_or_default(),
        code: params.owned("code"),
        redirect_uri: params.owned("redirect_uri"),
        code_verifier: params.owned("code_verifier"),
        refresh_token: params.owned("refresh_token"),
        scope: params.owned("scope"),
        resource: params.owned("resource"),
        assertion: params.owned("assertion"),
        id_jag: None,
    };
    let (config, keys, now) = (state.config.clone(), state.keys.current(), state.now());
    // An assertion from a trusted provider is verified against its JWKS first (network);
    // authmd's own identity assertions are checked with its keys inside the grant.
    if request.grant_type == GRANT_JWT_BEARER {
        if let Some(assertion) = &request.assertion {
            let issuer = providers::unverified_issuer(assertion);
            if issuer.as_deref() != Some(config.server.issuer.as_str()) {
                let verified = state
                    .providers
                    .verify_id_jag(&config, now, assertion)
                    .await
                    .map_err(|p| {
                        ApiError::new(ErrorCode::InvalidGrant, p.description, Shape::OAuth)
                    })?;
                request.id_jag = Some(verified);
            }
        }
    }
    let audit = extract::audit_context(&req, &config);
    let response: TokenResponse = state
        .db
        .write(move |conn| {
            let ctx = Ctx {
                config: &config,
                keys: &keys,
                now,
                audit: &audit,
            };
            tokens::token_request(conn, &ctx, auth.as_ref(), &request)
        })
        .await?;
    Ok(no_store_json(&response))
}

#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth",
    summary = "Token revocation (RFC 7009). Unknown tokens answer 200",
    request_body(content_type = "application/x-www-form-urlencoded", content = String),
    responses(
        (status = 200, description = "Revoked (or unknown)"),
        (status = 401, description = "invalid_client", body = super::response::ErrorBody),
    ))]
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Form,
) -> Result<HttpResponse, ApiError> {
    let params = Params::from_pairs(form.into_inner())?;
    let token = params.require("token")?.to_owned();
    let auth = extract::client_auth(&req, &params)?;
    let (config, keys, now) = (state.config.clone(), state.keys.current(), state.now());
    let audit = extract::audit_context(&req, &config);
    state
        .db
        .run(move |conn| {
            let ctx = Ctx {
                config: &config,
                keys: &keys,
                now,
                audit: &audit,
            };
            credentials::revoke(conn, &ctx, auth.as_ref(), &token)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .finish())
}

#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth",
    summary = "Token introspection (RFC 7662), for clients allowed to introspect or the admin token",
    request_body(content_type = "application/x-www-form-urlencoded", content = String),
    responses(
        (status = 200, description = "active plus scope, client_id, sub, exp, iat, token_type, aud, iss", body = Object, content_type = "application/json"),
        (status = 401, description = "invalid_client", body = super::response::ErrorBody),
    ))]
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Form,
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
    let (config, keys, now) = (state.config.clone(), state.keys.current(), state.now());
    // Resource servers call this on every request: most answers need only two primary-key
    // reads, which are batched across requests (`Db::point_reads`).
    if let Some(reads) = tokens::introspection_reads(&config, &keys, auth.as_ref(), &token) {
        let rows = state.db.point_reads(reads).await?;
        if let Some(answer) = tokens::introspect_prefetched(&config, now, auth.as_ref(), rows)? {
            return Ok(no_store_json(&answer));
        }
    }
    let read_only = !tokens::introspection_writes(&config, &keys, &token);
    let work = move |conn: &mut DbConn| {
        tokens::introspect_for(conn, &config, &keys, now, auth.as_ref(), &token)
    };
    let answer: Introspection = if read_only {
        state.db.read(work).await?
    } else {
        state.db.run(work).await?
    };
    Ok(no_store_json(&answer))
}
