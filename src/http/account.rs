//! `GET /account`: what acts in the signed-in person's name, each with a revoke button.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::extract::{self, SESSION_COOKIE};
use super::pages::{self, LoginPage};
use crate::domain::accounts::{Overview, Revocable};
use crate::domain::users::User;
use crate::service;
use crate::state::AppState;

#[derive(askama::Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    email: &'a str,
    csrf_token: &'a str,
    overview: Overview,
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
    match service::accounts::overview(&state, user.id.clone()).await {
        Ok(overview) => pages::with_csrf(&req, &state, |csrf| {
            pages::render(
                StatusCode::OK,
                &AccountPage {
                    email: &user.email,
                    csrf_token: csrf,
                    overview,
                },
            )
        }),
        Err(e) => pages::failure_page(&e),
    }
}

/// `POST /account/{agents|apps|tokens}/{id}/revoke`.
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<Vec<(String, String)>>,
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
