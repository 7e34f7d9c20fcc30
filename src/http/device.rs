//! The `/device` page of the RFC 8628 device grant: a signed-in person enters the code a
//! device shows, sees who is asking for what, and allows or denies.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::extract::{self, SESSION_COOKIE};
use super::pages::{self, LoginPage};
use crate::domain::device::PendingDevice;
use crate::domain::users::User;
use crate::error::{AppError, ErrorCode};
use crate::service;
use crate::state::AppState;

pub enum DeviceStep {
    /// The code form, with what was wrong with the last code.
    Enter(Option<String>),
    Confirm(PendingDevice),
    Done(bool),
}

#[derive(askama::Template)]
#[template(path = "device.html")]
struct DevicePage<'a> {
    csrf_token: &'a str,
    user_email: &'a str,
    user_code: &'a str,
    step: DeviceStep,
}

/// The signed-in person and when they signed in; `Err`: an error page.
pub(super) async fn signed_in(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Option<(User, i64)>, HttpResponse> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    service::device::session(state, cookie.value().to_owned())
        .await
        .map_err(|e| pages::failure_page(&e))
}

fn page(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    email: &str,
    code: &str,
    step: DeviceStep,
) -> HttpResponse {
    pages::with_csrf(req, state, |csrf| {
        pages::render(
            status,
            &DevicePage {
                csrf_token: csrf,
                user_email: email,
                user_code: code,
                step,
            },
        )
    })
}

fn disabled() -> HttpResponse {
    pages::error_page(
        StatusCode::NOT_FOUND,
        "not_found",
        "the device authorization grant is not enabled on this server",
    )
}

/// `GET /device[?user_code=…]`: the code form (signed in), or the login form returning here.
pub async fn show(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if !state.config.oauth.device.enabled {
        return disabled();
    }
    let code: String = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "user_code")
        .map(|(_, v)| {
            v.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(16)
                .collect()
        })
        .unwrap_or_default();
    let user = match signed_in(&state, &req).await {
        Ok(user) => user,
        Err(page) => return page,
    };
    let Some((user, _)) = user else {
        let return_to = if code.is_empty() {
            "/device".to_owned()
        } else {
            format!("/device?user_code={code}")
        };
        return pages::with_csrf(&req, &state, |csrf| {
            pages::render(
                StatusCode::OK,
                &LoginPage {
                    csrf_token: csrf,
                    return_to: &return_to,
                    email: "",
                    error: None,
                },
            )
        });
    };
    page(
        &req,
        &state,
        StatusCode::OK,
        &user.email,
        &code,
        DeviceStep::Enter(None),
    )
}

/// `POST /device`: without `decision`, the confirmation step for the typed code; with
/// `decision` = `allow` or `deny`, the answer.
pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: extract::FormPairs,
) -> HttpResponse {
    if !state.config.oauth.device.enabled {
        return disabled();
    }
    let params = match pages::checked_form(&state, &req, form.into_inner()) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let user = match signed_in(&state, &req).await {
        Ok(user) => user,
        Err(page) => return page,
    };
    let Some((user, auth_time)) = user else {
        return pages::error_page(
            StatusCode::UNAUTHORIZED,
            "login_required",
            "your session has ended; sign in and enter the code again",
        );
    };
    let typed = params.owned("user_code").unwrap_or_default();
    let wrong_code = |e: &AppError| e.code() == Some(ErrorCode::InvalidRequest);
    let decision = match params.get("decision") {
        None => None,
        Some("allow") => Some(true),
        Some("deny") => Some(false),
        Some(_) => {
            return pages::error_page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "decision must be allow or deny",
            )
        }
    };
    let outcome = match decision {
        None => {
            let ip = extract::client_ip(&req, &state.config);
            service::device::describe(&state, ip, typed.clone())
                .await
                .map(DeviceStep::Confirm)
        }
        Some(allow) => {
            let audit = extract::audit_context(&req, &state.config);
            service::device::decide(
                &state,
                audit,
                user.id.clone(),
                auth_time,
                typed.clone(),
                allow,
            )
            .await
            .map(|()| DeviceStep::Done(allow))
        }
    };
    match outcome {
        Ok(step) => page(&req, &state, StatusCode::OK, &user.email, &typed, step),
        Err(e) if wrong_code(&e) => {
            let message = match &e {
                AppError::Protocol(p) => p.description.to_string(),
                _ => String::new(),
            };
            page(
                &req,
                &state,
                StatusCode::BAD_REQUEST,
                &user.email,
                &typed,
                DeviceStep::Enter(Some(message)),
            )
        }
        Err(e) => pages::failure_page(&e),
    }
}
