//! auth.md v0.1 agent endpoints under `/agent/auth`, their claim pages, and the provider event
//! receiver. Errors use the auth.md v0.1 shape `{"error", "message"}` (v0.6 at
//! `/agent/identity` is [`super::identity`]).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::extract::{self, Params};
use super::pages;
use super::response::{no_store_json, status_of, ApiError, Shape};
use crate::domain::agents::Registered;
use crate::domain::claims::{AttemptState, ClaimStarted, Claimed};
use crate::domain::ratelimit::Action;
use crate::error::{AppError, ErrorCode};
use crate::service;
use crate::service::agents::RegisterRequest;
use crate::state::AppState;

fn bad(msg: &'static str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, msg, Shape::Agent)
}

/// Counts the request against its limits; the usage goes into the request's extensions, where
/// the middleware turns it into the RateLimit headers of the answer.
pub async fn limit(
    state: &AppState,
    req: &HttpRequest,
    action: Action,
    shape: Shape,
) -> Result<(), ApiError> {
    let ip = extract::client_ip(req, &state.config);
    match service::ops::rate_limit(state, action, ip).await {
        Ok(usage) => {
            if let Some(usage) = usage {
                req.extensions_mut().insert(usage);
            }
            Ok(())
        }
        Err(error) => Err(ApiError { error, shape }),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RegisterBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    requested_credential_type: Option<String>,
    assertion_type: Option<String>,
    assertion: Option<String>,
    /// The list form some services use: `[{"type": "verified_email", "email": "…"}]`.
    assertions: Option<Vec<Value>>,
    /// A subset of the scopes this type grants before the claim; otherwise `invalid_scope`.
    scopes: Option<Vec<String>>,
}

impl RegisterBody {
    /// `(assertion_type, assertion)` from either form.
    fn assertion(&self) -> Option<(String, String)> {
        if let (Some(t), Some(a)) = (&self.assertion_type, &self.assertion) {
            return Some((t.clone(), a.clone()));
        }
        let first = self.assertions.as_ref()?.first()?;
        let t = first.get("type")?.as_str()?.to_owned();
        let a = first
            .get("assertion")
            .or_else(|| first.get("email"))?
            .as_str()?
            .to_owned();
        Some((t, a))
    }
}

#[utoipa::path(post, path = "/agent/auth", tag = "agents",
    summary = "Register an agent (auth.md v0.1): anonymous, verified email, or ID-JAG",
    request_body(content = RegisterBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Registration (and credential where the flow gives one at once)", body = Registered, content_type = "application/json"),
        (status = 400, description = "auth.md error", body = super::response::ErrorBody),
        (status = 429, description = "rate_limited", body = super::response::ErrorBody),
    ))]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    limit(&state, &req, Action::AgentAuth, Shape::Agent).await?;
    let body = body.into_inner();
    let request = RegisterRequest {
        assertion: body.assertion(),
        kind: body.kind,
        requested_credential_type: body.requested_credential_type,
        scopes: body.scopes,
    };
    let audit = extract::audit_context(&req, &state.config);
    let answer = service::agents::register(&state, audit, request)
        .await
        .map_err(ApiError::agent)?;
    Ok(no_store_json(&answer))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ClaimBody {
    claim_token: Option<String>,
    email: Option<String>,
    #[serde(default)]
    link: bool,
}

#[utoipa::path(post, path = "/agent/auth/claim", tag = "agents",
    summary = "Start the claim of an anonymous registration: emails the person a one-time link",
    request_body(content = ClaimBody, content_type = "application/json"),
    responses(
        (status = 200, description = "registration_id, claim_attempt_id, status, expires_at", body = ClaimStarted, content_type = "application/json"),
        (status = 401, description = "invalid_claim_token", body = super::response::ErrorBody),
        (status = 409, description = "previously_claimed", body = super::response::ErrorBody),
        (status = 410, description = "claim_expired", body = super::response::ErrorBody),
    ))]
pub async fn claim(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ClaimBody>,
) -> Result<HttpResponse, ApiError> {
    limit(&state, &req, Action::Claim, Shape::Agent).await?;
    let body = body.into_inner();
    let claim_token = body
        .claim_token
        .ok_or_else(|| bad("claim_token is required"))?;
    let email = body.email.ok_or_else(|| bad("email is required"))?;
    let audit = extract::audit_context(&req, &state.config);
    let answer = service::agents::claim(&state, audit, claim_token, email, body.link)
        .await
        .map_err(ApiError::agent)?;
    Ok(no_store_json(&answer))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CompleteBody {
    claim_token: Option<String>,
    otp: Option<String>,
}

#[utoipa::path(post, path = "/agent/auth/claim/complete", tag = "agents",
    summary = "Complete a claim with the one-time code the person read on the claim page",
    request_body(content = CompleteBody, content_type = "application/json"),
    responses(
        (status = 200, description = "registration_id and status claimed (plus a credential for verified-email registrations)", body = Claimed, content_type = "application/json"),
        (status = 401, description = "otp_invalid or invalid_claim_token", body = super::response::ErrorBody),
        (status = 410, description = "otp_expired, claim_expired or claim_superseded", body = super::response::ErrorBody),
        (status = 429, description = "otp_locked or rate_limited", body = super::response::ErrorBody),
    ))]
pub async fn complete(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CompleteBody>,
) -> Result<HttpResponse, ApiError> {
    limit(&state, &req, Action::Otp, Shape::Agent).await?;
    let body = body.into_inner();
    let claim_token = body
        .claim_token
        .ok_or_else(|| bad("claim_token is required"))?;
    let otp = body.otp.ok_or_else(|| bad("otp is required"))?;
    let audit = extract::audit_context(&req, &state.config);
    let answer = service::agents::complete(&state, audit, claim_token, otp)
        .await
        .map_err(ApiError::agent)?;
    Ok(no_store_json(&answer))
}

#[utoipa::path(post, path = "/agent/auth/revoke", tag = "agents",
    summary = "Provider-initiated revocation: an application/logout+jwt body revokes every credential for (iss, sub)",
    request_body(content = String, content_type = "application/logout+jwt"),
    responses(
        (status = 200, description = "How many registrations were revoked", body = crate::domain::agents::Revoked, content_type = "application/json"),
        (status = 400, description = "auth.md error", body = super::response::ErrorBody),
    ))]
pub async fn provider_revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let token = jwt_body(&req, &body, "application/logout+jwt")
        .map_err(|why| ApiError::new(ErrorCode::InvalidRequest, why, Shape::Agent))?;
    let audit = extract::audit_context(&req, &state.config);
    let revoked = service::agents::provider_logout(&state, audit, token)
        .await
        .map_err(ApiError::agent)?;
    Ok(no_store_json(&revoked))
}

/// A provider's JWT posted as the whole body with its media type (logout tokens, SETs).
fn jwt_body(req: &HttpRequest, body: &[u8], media_type: &str) -> Result<String, String> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with(media_type) {
        return Err(format!("Content-Type must be {media_type}"));
    }
    match std::str::from_utf8(body).map(str::trim) {
        Ok(token) if !token.is_empty() => Ok(token.to_owned()),
        _ => Err("the body must be a JWT".to_owned()),
    }
}

/// RFC 8935 §2.4 error codes for a refused Security Event Token.
fn set_error_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::IssuerNotEnabled => "invalid_issuer",
        ErrorCode::InvalidAudience => "invalid_audience",
        ErrorCode::InvalidSignature => "invalid_key",
        _ => "invalid_request",
    }
}

fn set_refused(err: &'static str, description: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "err": err, "description": description }))
}

#[utoipa::path(post, path = "/agent/event/notify", tag = "agents",
    summary = "Security Event Token push (RFC 8417 / RFC 8935) from a trusted agent provider: the identity-assertion revoked event revokes every registration and credential of its (iss, sub)",
    request_body(content = String, content_type = "application/secevent+jwt"),
    responses(
        (status = 202, description = "Accepted (acted on, or carrying no event authmd handles)"),
        (status = 400, description = "RFC 8935 error: {\"err\": invalid_request | invalid_key | invalid_issuer | invalid_audience, \"description\"}", body = SetError, content_type = "application/json"),
    ))]
pub async fn provider_event(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let token = match jwt_body(&req, &body, "application/secevent+jwt") {
        Ok(token) => token,
        Err(why) => return Ok(set_refused("invalid_request", &why)),
    };
    let audit = extract::audit_context(&req, &state.config);
    match service::agents::provider_event(&state, audit, token).await {
        Ok(()) => Ok(HttpResponse::Accepted()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish()),
        Err(AppError::Protocol(p)) if status_of(p.code) == StatusCode::BAD_REQUEST => {
            Ok(set_refused(set_error_code(p.code), &p.description))
        }
        Err(AppError::Protocol(p)) if p.code == ErrorCode::ReplayDetected => Ok(set_refused(
            "invalid_request",
            "this SET was already delivered (jti replay)",
        )),
        Err(e) => Err(ApiError::agent(e)),
    }
}

/// An RFC 8935 §2.4 error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SetError {
    pub err: String,
    pub description: String,
}

/// What the claim page renders.
pub enum ClaimView {
    Open { email: String, link: bool },
    Code { otp: String },
    Cancelled,
    Closed { message: String },
}

#[derive(askama::Template)]
#[template(path = "claim.html")]
struct ClaimPage<'a> {
    view: ClaimView,
    csrf_token: &'a str,
    token: &'a str,
}

fn claim_page(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    view: ClaimView,
    token: &str,
) -> HttpResponse {
    pages::with_csrf(req, state, |csrf| {
        pages::render(
            status,
            &ClaimPage {
                view,
                csrf_token: csrf,
                token,
            },
        )
    })
}

fn closed(message: String) -> ClaimView {
    ClaimView::Closed { message }
}

/// `GET /agent/auth/claim/view?token=…`: the page the email links to. Mints nothing.
pub async fn claim_view(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let token = Params::from_pairs(query.into_inner())
        .ok()
        .and_then(|p| p.owned("token"))
        .unwrap_or_default();
    match service::agents::claim_view(&state, token.clone()).await {
        Ok(AttemptState::Open { email, link }) => claim_page(
            &req,
            &state,
            StatusCode::OK,
            ClaimView::Open { email, link },
            &token,
        ),
        Ok(AttemptState::Closed(message)) => claim_page(
            &req,
            &state,
            StatusCode::GONE,
            closed(message.to_owned()),
            "",
        ),
        Err(AppError::Protocol(p)) => claim_page(
            &req,
            &state,
            StatusCode::NOT_FOUND,
            closed(p.description.into_owned()),
            "",
        ),
        Err(e) => pages::failure_page(&e),
    }
}

/// The page's forms: CSRF-checked, then `challenge` (mint a code) or `cancel`.
async fn page_action(
    state: &AppState,
    req: &HttpRequest,
    form: Vec<(String, String)>,
    mint: bool,
) -> HttpResponse {
    let params = match pages::checked_form(state, req, form) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    if let Err(e) = limit(state, req, Action::Otp, Shape::Agent).await {
        return pages::failure_page(&e.error);
    }
    let token = params.owned("token").unwrap_or_default();
    let audit = extract::audit_context(req, &state.config);
    let result = if mint {
        service::agents::claim_challenge(state, audit, token)
            .await
            .map(|otp| ClaimView::Code { otp })
    } else {
        service::agents::claim_cancel(state, audit, token)
            .await
            .map(|()| ClaimView::Cancelled)
    };
    match result {
        Ok(view) => claim_page(req, state, StatusCode::OK, view, ""),
        Err(AppError::Protocol(p)) => {
            let status = super::response::status_of(p.code);
            claim_page(req, state, status, closed(p.description.into_owned()), "")
        }
        Err(e) => pages::failure_page(&e),
    }
}

pub async fn claim_challenge(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: extract::FormPairs,
) -> HttpResponse {
    page_action(&state, &req, form.into_inner(), true).await
}

pub async fn claim_cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: extract::FormPairs,
) -> HttpResponse {
    page_action(&state, &req, form.into_inner(), false).await
}
