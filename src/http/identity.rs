//! auth.md v0.6 endpoints: `POST /agent/identity`, `POST /agent/identity/claim`, and the
//! `/claim` page where a signed-in person types a claim's `user_code`. Errors use AUTH.md's
//! `{"error", "error_description"}`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::agents::limit;
use super::device::signed_in;
use super::extract;
use super::pages::{self, LoginPage};
use super::response::{no_store_json, ApiError, Shape};
use crate::domain::identity::{
    Advisory, ClaimOutcome, ClaimPage, IdJagOutcome, IdentityRegistered,
};
use crate::domain::ratelimit::Action;
use crate::domain::users::User;
use crate::service;
use crate::service::identity::{ClaimAnswer, ClaimRequest, IdentityRequest};
use crate::state::AppState;

fn identity_error(e: impl Into<crate::error::AppError>) -> ApiError {
    ApiError {
        error: e.into(),
        shape: Shape::Identity,
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct IdentityBody {
    /// `anonymous`, `service_auth` or `identity_assertion`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// `service_auth`: the person's email address.
    login_hint: Option<String>,
    /// `identity_assertion`: `urn:ietf:params:oauth:token-type:id-jag`.
    assertion_type: Option<String>,
    assertion: Option<String>,
    /// A subset of the scopes this type grants before the claim; otherwise `invalid_scope`.
    scopes: Option<Vec<String>>,
}

/// The `401 interaction_required` body: the error, then the registration with its ceremony.
#[derive(Serialize)]
struct ConfirmationRequired<T: Serialize> {
    error: &'static str,
    error_description: &'static str,
    #[serde(flatten)]
    registration: T,
}

const CONFIRM_DESCRIPTION: &str = "This ID-JAG matches an existing account. Show the person the user_code and verification_uri so they can confirm linking the provider identity to their account.";

fn confirmation_required<T: Serialize>(registration: T) -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::WWW_AUTHENTICATE,
            "AgentAuth error=\"interaction_required\", error_description=\"the ID-JAG matches an existing account; the person must confirm the link\"",
        ))
        .json(ConfirmationRequired {
            error: "interaction_required",
            error_description: CONFIRM_DESCRIPTION,
            registration,
        })
}

#[utoipa::path(post, path = "/agent/identity", tag = "agents",
    summary = "auth.md v0.6 registration: anonymous (identity assertion + claim token), service_auth (login_hint; ceremony block), or identity_assertion with an ID-JAG",
    request_body(content = IdentityBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The registration; exchange identity_assertion at the token endpoint with the JWT-bearer grant", body = IdentityRegistered, content_type = "application/json"),
        (status = 400, description = "invalid_request, anonymous_not_enabled, service_auth_not_enabled, invalid_login_hint, issuer_not_enabled, unsupported_identity_type, …", body = super::response::ErrorBody),
        (status = 401, description = "interaction_required (with the claim block) or login_required (with max_age); WWW-Authenticate: AgentAuth", body = super::response::ErrorBody),
        (status = 429, description = "rate_limited", body = super::response::ErrorBody),
    ))]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<IdentityBody>,
) -> Result<HttpResponse, ApiError> {
    limit(&state, &req, Action::AgentAuth, Shape::Identity).await?;
    let body = body.into_inner();
    let request = IdentityRequest {
        kind: body.kind,
        login_hint: body.login_hint,
        assertion_type: body.assertion_type,
        assertion: body.assertion,
        scopes: body.scopes,
    };
    let audit = extract::audit_context(&req, &state.config);
    match service::identity::register(&state, audit, request)
        .await
        .map_err(identity_error)?
    {
        IdJagOutcome::Registered(answer) => Ok(no_store_json(&answer)),
        IdJagOutcome::ConfirmationRequired(answer) => Ok(confirmation_required(answer)),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct IdentityClaimBody {
    /// Absent (with `email`), or `identity_assertion` (with `assertion`).
    #[serde(rename = "type")]
    kind: Option<String>,
    claim_token: Option<String>,
    email: Option<String>,
    assertion_type: Option<String>,
    assertion: Option<String>,
}

#[utoipa::path(post, path = "/agent/identity/claim", tag = "agents",
    summary = "Start (or restart) a v0.6 claim ceremony for an email, or claim an anonymous registration with an ID-JAG",
    request_body(content = IdentityClaimBody, content_type = "application/json"),
    responses(
        (status = 200, description = "With an email: registration_id, claim_attempt_id, status initiated, expires_at, claim_attempt block. With an ID-JAG: registration_id, status claimed, identity_assertion, assertion_expires, scopes", body = crate::domain::identity::ClaimAttemptStarted, content_type = "application/json"),
        (status = 401, description = "invalid_claim_token; interaction_required (an ID-JAG whose email is an existing account's)", body = super::response::ErrorBody),
        (status = 409, description = "claimed_or_in_flight", body = super::response::ErrorBody),
        (status = 410, description = "claim_expired", body = super::response::ErrorBody),
    ))]
pub async fn claim(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<IdentityClaimBody>,
) -> Result<HttpResponse, ApiError> {
    limit(&state, &req, Action::Claim, Shape::Identity).await?;
    let body = body.into_inner();
    let request = ClaimRequest {
        kind: body.kind,
        claim_token: body.claim_token,
        email: body.email,
        assertion_type: body.assertion_type,
        assertion: body.assertion,
    };
    let audit = extract::audit_context(&req, &state.config);
    let answer = service::identity::claim(&state, audit, request)
        .await
        .map_err(identity_error)?;
    Ok(match answer {
        ClaimAnswer::Started(started) => no_store_json(&started),
        ClaimAnswer::Claimed(ClaimOutcome::Claimed(claimed)) => no_store_json(&claimed),
        ClaimAnswer::Claimed(ClaimOutcome::ConfirmationRequired(answer)) => {
            confirmation_required(answer)
        }
    })
}

#[derive(askama::Template)]
#[template(path = "claim_code.html")]
struct ClaimCodePage<'a> {
    view: ClaimPage,
    user_email: &'a str,
    csrf_token: &'a str,
    token: &'a str,
    error: Option<&'a str>,
}

fn claim_page(
    req: &HttpRequest,
    state: &AppState,
    user: &User,
    token: &str,
    view: ClaimPage,
    error: Option<&str>,
) -> HttpResponse {
    let status = match (&view, error) {
        (_, Some(_)) => StatusCode::BAD_REQUEST,
        (ClaimPage::WrongAccount { .. }, _) => StatusCode::FORBIDDEN,
        (ClaimPage::Closed(_), _) => StatusCode::GONE,
        _ => StatusCode::OK,
    };
    pages::with_csrf(req, state, |csrf| {
        pages::render(
            status,
            &ClaimCodePage {
                view,
                user_email: &user.email,
                csrf_token: csrf,
                token,
                error,
            },
        )
    })
}

/// The `claim_attempt_token` of a query or form, kept to the characters a token has.
fn attempt_token(value: Option<&str>) -> String {
    value
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(128)
        .collect()
}

fn login_form(req: &HttpRequest, state: &AppState, return_to: &str) -> HttpResponse {
    pages::with_csrf(req, state, |csrf| {
        pages::render(
            StatusCode::OK,
            &LoginPage {
                csrf_token: csrf,
                return_to,
                email: "",
                error: None,
            },
        )
    })
}

/// `GET /claim?claim_attempt_token=…`: the code form for a signed-in person (the login form,
/// returning here, for anyone else).
pub async fn show(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let token = attempt_token(
        url::form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == "claim_attempt_token")
            .map(|(_, v)| v)
            .as_deref(),
    );
    let user = match signed_in(&state, &req).await {
        Ok(user) => user,
        Err(page) => return page,
    };
    let Some((user, _)) = user else {
        return login_form(&req, &state, &format!("/claim?claim_attempt_token={token}"));
    };
    match service::identity::claim_page(&state, token.clone(), user.clone()).await {
        Ok(view) => claim_page(&req, &state, &user, &token, view, None),
        Err(e) => pages::failure_page(&e),
    }
}

/// `POST /claim`: CSRF-checked; the person typed the code.
pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: extract::FormPairs,
) -> HttpResponse {
    let params = match pages::checked_form(&state, &req, form.into_inner()) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let user = match signed_in(&state, &req).await {
        Ok(user) => user,
        Err(page) => return page,
    };
    let Some((user, _)) = user else {
        return pages::error_page(
            StatusCode::UNAUTHORIZED,
            "login_required",
            "your session has ended; open the link again and sign in",
        );
    };
    if let Err(e) = limit(&state, &req, Action::Otp, Shape::Identity).await {
        return pages::failure_page(&e.error);
    }
    let token = attempt_token(params.get("claim_attempt_token"));
    let code = params.owned("user_code").unwrap_or_default();
    let audit = extract::audit_context(&req, &state.config);
    match service::identity::confirm(&state, audit, token.clone(), user.clone(), code).await {
        Ok(Ok(view)) => claim_page(&req, &state, &user, &token, view, None),
        Ok(Err((view, why))) => claim_page(&req, &state, &user, &token, view, Some(why)),
        Err(e) => pages::failure_page(&e),
    }
}

/// `GET /login?return_to=…`: the sign-in form (auth.md's `verification_uri` opens it), or
/// straight on to `return_to` for someone already signed in.
pub async fn login_page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let return_to: String = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let Some(return_to) = super::authorize::return_to_path(&return_to).map(str::to_owned) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "return_to must be a path on this server",
        );
    };
    match signed_in(&state, &req).await {
        Ok(Some(_)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, return_to))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Ok(None) => login_form(&req, &state, &return_to),
        Err(page) => page,
    }
}
