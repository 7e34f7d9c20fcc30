//! `/signup` (when `accounts.signup` is not `off`) and the emailed link of `email_verified`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::extract::{self, SESSION_COOKIE};
use super::pages;
use crate::config::Signup;
use crate::domain::ratelimit::Action;
use crate::domain::secrets::PlainToken;
use crate::error::AppError;
use crate::service;
use crate::state::AppState;

#[derive(askama::Template)]
#[template(path = "signup.html")]
struct SignupPage<'a> {
    csrf_token: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    mailed: bool,
}

fn off(state: &AppState) -> Option<HttpResponse> {
    (state.config.accounts.signup == Signup::Off).then(|| {
        pages::error_page(
            StatusCode::NOT_FOUND,
            "not_found",
            "sign-up is not enabled on this server",
        )
    })
}

fn page(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    email: &str,
    error: Option<&str>,
    mailed: bool,
) -> HttpResponse {
    pages::with_csrf(req, state, |csrf| {
        pages::render(
            status,
            &SignupPage {
                csrf_token: csrf,
                email,
                error,
                mailed,
            },
        )
    })
}

/// Signed in: to the account page with the new session.
fn signed_in(state: &AppState, session: PlainToken) -> HttpResponse {
    let mut resp = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/account"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish();
    let _ = resp.add_cookie(&extract::cookie(
        &state.config,
        SESSION_COOKIE,
        session.into_string(),
    ));
    resp
}

pub async fn show(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(resp) = off(&state) {
        return resp;
    }
    page(&req, &state, StatusCode::OK, "", None, false)
}

pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: extract::FormPairs,
) -> HttpResponse {
    if let Some(resp) = off(&state) {
        return resp;
    }
    let params = match pages::checked_form(&state, &req, form.into_inner()) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    if let Err(e) =
        super::agents::limit(&state, &req, Action::Signup, super::response::Shape::OAuth).await
    {
        return pages::failure_page(&e.error);
    }
    let email = params.owned("email").unwrap_or_default();
    let password = params.owned("password").unwrap_or_default();
    let audit = extract::audit_context(&req, &state.config);
    match service::accounts::signup(&state, audit, email.clone(), password).await {
        Ok(Some(session)) => signed_in(&state, session),
        Ok(None) => page(&req, &state, StatusCode::OK, &email, None, true),
        // A field the person can fix: the form again, with what was wrong.
        Err(AppError::Protocol(p)) if p.code == crate::error::ErrorCode::InvalidRequest => page(
            &req,
            &state,
            StatusCode::BAD_REQUEST,
            &email,
            Some(&p.description),
            false,
        ),
        Err(e) => pages::failure_page(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct VerifyQuery {
    token: Option<String>,
}

pub async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<VerifyQuery>,
) -> HttpResponse {
    if let Some(resp) = off(&state) {
        return resp;
    }
    let Some(token) = q.into_inner().token.filter(|t| !t.is_empty()) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the link has no token",
        );
    };
    let audit = extract::audit_context(&req, &state.config);
    match service::accounts::confirm_signup(&state, audit, token).await {
        Ok(session) => signed_in(&state, session),
        Err(e) => pages::failure_page(&e),
    }
}
