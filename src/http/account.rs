//! `GET /account`: what acts in the signed-in person's name, each with a revoke button.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::extract::{self, SESSION_COOKIE};
use super::pages::{self, LoginPage};
use crate::domain::accounts::{CreatedToken, Overview, Revocable, TokenRequest};
use crate::domain::discovery::scopes_supported;
use crate::domain::scope;
use crate::domain::users::User;
use crate::error::AppError;
use crate::service;
use crate::state::AppState;

#[derive(askama::Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    email: &'a str,
    csrf_token: &'a str,
    overview: Overview,
    /// A token just made: its plaintext is on this page only.
    created: Option<CreatedToken>,
    error: Option<&'a str>,
    /// Every scope a token can have, offered as the form's default.
    all_scopes: String,
    /// `tokens.personal_max_ttl_s` (0: none).
    max_ttl_s: i64,
}

impl AccountPage<'_> {
    fn when(&self, t: &i64) -> String {
        pages::utc(*t)
    }
}

/// The signed-in user; a failure to read the session is an error page, never "signed out".
async fn signed_in(state: &AppState, req: &HttpRequest) -> Result<Option<User>, HttpResponse> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    service::accounts::session_user(state, cookie.value().to_owned())
        .await
        .map_err(|e| pages::failure_page(&e))
}

pub async fn page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let user = match signed_in(&state, &req).await {
        Ok(user) => user,
        Err(page) => return page,
    };
    let Some(user) = user else {
        return pages::with_csrf(&req, &state, |csrf| {
            pages::render(
                StatusCode::OK,
                &LoginPage {
                    csrf_token: csrf,
                    return_to: "/account",
                    email: "",
                    error: None,
                },
            )
        });
    };
    render(&state, &req, &user, StatusCode::OK, None, None).await
}

/// The account page for `user`, with a token just made or a form error.
async fn render(
    state: &AppState,
    req: &HttpRequest,
    user: &User,
    status: StatusCode,
    created: Option<CreatedToken>,
    error: Option<&str>,
) -> HttpResponse {
    match service::accounts::overview(state, user.id.clone()).await {
        Ok(overview) => pages::with_csrf(req, state, |csrf| {
            let mut resp = pages::render(
                status,
                &AccountPage {
                    email: &user.email,
                    csrf_token: csrf,
                    overview,
                    created,
                    error,
                    all_scopes: scopes_supported(&state.config).join(" "),
                    max_ttl_s: state.config.tokens.personal_max_ttl_s,
                },
            );
            // A page that shows a secret is never stored.
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            resp
        }),
        Err(e) => pages::failure_page(&e),
    }
}

/// `POST /account/tokens`: the "Make a token" form. The page that answers shows the token once.
pub async fn create_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: extract::FormPairs,
) -> HttpResponse {
    let params = match pages::checked_form(&state, &req, form.into_inner()) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let user = match signed_in(&state, &req).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return pages::error_page(StatusCode::UNAUTHORIZED, "access_denied", "sign in first")
        }
        Err(page) => return page,
    };
    let expires_in = match params
        .get("expires_in")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return render(
                    &state,
                    &req,
                    &user,
                    StatusCode::BAD_REQUEST,
                    None,
                    Some("Expires in must be a whole number of seconds."),
                )
                .await
            }
        },
    };
    let request = TokenRequest {
        name: params.owned("name").filter(|s| !s.trim().is_empty()),
        scopes: params.get("scopes").map(scope::list),
        workspace: params.owned("workspace").filter(|s| !s.is_empty()),
        expires_in,
    };
    let audit = extract::audit_context(&req, &state.config);
    match service::accounts::create_token_on_page(&state, audit, user.id.clone(), request).await {
        Ok(created) => {
            render(
                &state,
                &req,
                &user,
                StatusCode::CREATED,
                Some(created),
                None,
            )
            .await
        }
        Err(AppError::Protocol(p))
            if super::response::status_of(p.code).is_client_error()
                && super::response::status_of(p.code) != StatusCode::TOO_MANY_REQUESTS =>
        {
            let status = super::response::status_of(p.code);
            render(&state, &req, &user, status, None, Some(&p.description)).await
        }
        Err(e) => pages::failure_page(&e),
    }
}

/// `POST /account/{agents|apps|tokens}/{id}/revoke`.
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: extract::FormPairs,
) -> HttpResponse {
    if let Err(page) = pages::checked_form(&state, &req, form.into_inner()) {
        return *page;
    }
    let user = match signed_in(&state, &req).await {
        Ok(user) => user,
        Err(page) => return page,
    };
    let Some(user) = user else {
        return pages::error_page(StatusCode::UNAUTHORIZED, "access_denied", "sign in first");
    };
    let (kind, id) = path.into_inner();
    let what = match kind.as_str() {
        "agents" => Revocable::Agent(id),
        "apps" => Revocable::App(id),
        "tokens" => Revocable::Token(id),
        _ => {
            return pages::error_page(
                StatusCode::NOT_FOUND,
                "not_found",
                "nothing to revoke there",
            )
        }
    };
    let audit = extract::audit_context(&req, &state.config);
    match service::accounts::revoke_own(&state, audit, user.id, what).await {
        Ok(()) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/account"))
            .finish(),
        Err(e) => pages::failure_page(&e),
    }
}
