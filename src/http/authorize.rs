//! The authorization endpoint and its pages: login, consent, logout.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use super::extract::{self, Params, SESSION_COOKIE};
use super::pages::{self, ConsentPage, LoginPage};
use super::response::ApiError;
use crate::domain::oauth::{AuthorizeError, AuthorizeParams, AuthorizeStep};
use crate::error::ErrorCode;
use crate::service;
use crate::state::AppState;

/// Where a successful login may send the browser: a path on authmd's own origin (not
/// `//host`, not `/\\host`, nothing but visible ASCII). Empty: the account page. Anything
/// else is refused (an open redirect, or a header-breaking control character).
pub(super) fn return_to_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return Some("/account");
    }
    let same_origin = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.bytes().all(|b| (0x21..=0x7e).contains(&b));
    same_origin.then_some(path)
}

/// Where the login form sends the browser back: the same authorization request without
/// `prompt` and `max_age`, which the sign-in about to happen satisfies (kept, they would ask
/// for a sign-in again and again).
fn login_return_to(query: &str) -> String {
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| k != "prompt" && k != "max_age")
        .collect();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish();
    format!("/oauth2/authorize?{query}")
}

fn params_of(p: &Params) -> AuthorizeParams {
    AuthorizeParams {
        response_type: p.owned("response_type"),
        client_id: p.owned("client_id"),
        redirect_uri: p.owned("redirect_uri"),
        scope: p.owned("scope"),
        state: p.owned("state"),
        code_challenge: p.owned("code_challenge"),
        code_challenge_method: p.owned("code_challenge_method"),
        resource: p.owned("resource"),
        nonce: p.owned("nonce"),
        prompt: p.owned("prompt"),
        max_age: p.owned("max_age"),
    }
}

fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn error_response(e: AuthorizeError) -> HttpResponse {
    match e {
        AuthorizeError::Redirect(url) => found(&url),
        AuthorizeError::Page(p) => {
            let status = if p.code == ErrorCode::ServiceUnavailable {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            };
            pages::error_page(status, p.code.as_str(), &p.description)
        }
    }
}

fn query_pairs(req: &HttpRequest) -> Result<Params, ApiError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    Params::from_pairs(pairs)
}

#[cfg(test)]
mod tests {
    use super::return_to_path;

    #[test]
    fn the_login_form_returns_without_prompt_or_max_age() {
        assert_eq!(
            super::login_return_to("client_id=c&prompt=login&max_age=0&state=a+b"),
            "/oauth2/authorize?client_id=c&state=a+b"
        );
    }

    #[test]
    fn return_to_is_a_same_origin_path() {
        assert_eq!(return_to_path(""), Some("/account"));
        assert_eq!(return_to_path("/account"), Some("/account"));
        assert!(return_to_path("/oauth2/authorize?client_id=x").is_some());
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "/a\nb",
            "/a b",
            "account",
        ] {
            assert_eq!(return_to_path(bad), None, "{bad:?}");
        }
    }
}

#[utoipa::path(get, path = "/oauth2/authorize", tag = "oauth",
    summary = "Authorization endpoint: response_type=code with PKCE S256; answers HTML (login, consent) or a redirect carrying code, state and iss",
    responses(
        (status = 200, description = "Login or consent page", body = String, content_type = "text/html"),
        (status = 302, description = "Redirect to the client with code (or error), state and iss"),
        (status = 400, description = "Error page: unknown client or redirect URI", body = String, content_type = "text/html"),
    ))]
pub async fn authorize(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let params = match query_pairs(&req) {
        Ok(p) => params_of(&p),
        Err(e) => {
            return pages::error_page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &e.error.to_string(),
            )
        }
    };
    let session = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
    match service::authorize::begin(&state, params.clone(), session).await {
        Ok(AuthorizeStep::Redirect(url)) => found(&url),
        Ok(AuthorizeStep::Login) => {
            let return_to = login_return_to(req.query_string());
            pages::with_csrf(&req, &state, |csrf| {
                pages::render(
                    StatusCode::OK,
                    &LoginPage {
                        csrf_token: csrf,
                        return_to: &return_to,
                        email: "",
                        error: None,
                    },
                )
            })
        }
        Ok(AuthorizeStep::Consent(valid, user)) => {
            let fields: Vec<(&'static str, String)> = [
                ("response_type", params.response_type),
                ("client_id", params.client_id),
                ("redirect_uri", params.redirect_uri),
                ("scope", params.scope),
                ("state", params.state),
                ("code_challenge", params.code_challenge),
                ("code_challenge_method", params.code_challenge_method),
                ("resource", params.resource),
                ("nonce", params.nonce),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let redirect_host = url::Url::parse(&valid.redirect_uri)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| valid.redirect_uri.clone());
            pages::with_csrf(&req, &state, |csrf| {
                pages::render(
                    StatusCode::OK,
                    &ConsentPage {
                        csrf_token: csrf,
                        client_name: &valid.client.client_name,
                        user_email: &user.email,
                        scopes: valid.scopes.iter().collect(),
                        resource: &valid.resource,
                        redirect_host,
                        document_host: valid.client.document_host(),
                        fields,
                    },
                )
            })
        }
        Err(e) => error_response(e),
    }
}

/// The consent form's answer.
pub async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: extract::FormPairs,
) -> HttpResponse {
    let params = match pages::checked_form(&state, &req, form.into_inner()) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let allow = match params.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return pages::error_page(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "decision must be allow or deny",
            )
        }
    };
    let auth_params = params_of(&params);
    let session = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
    match service::authorize::decide(&state, auth_params, session, allow).await {
        Ok(url) => found(&url),
        Err(e) => error_response(e),
    }
}

/// The login form's answer. The password check runs on the blocking pool.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: extract::FormPairs,
) -> HttpResponse {
    let params = match pages::checked_form(&state, &req, form.into_inner()) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let Some(return_to) = return_to_path(params.get("return_to").unwrap_or_default()) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "return_to must be a path on this server",
        );
    };
    let return_to = return_to.to_owned();
    let email = params.owned("email").unwrap_or_default();
    let password = params.owned("password").unwrap_or_default();
    let ip = extract::client_ip(&req, &state.config);
    let outcome = service::authorize::login(&state, email.clone(), password, ip).await;
    if let Ok((_, Some(usage))) = &outcome {
        // The middleware turns it into the RateLimit headers of the answer.
        req.extensions_mut().insert(*usage);
    }
    match outcome.map(|(session, _)| session) {
        Ok(Some(session)) => {
            let mut resp = HttpResponse::SeeOther()
                .insert_header((header::LOCATION, return_to))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
            let _ = resp.add_cookie(&extract::cookie(
                &state.config,
                SESSION_COOKIE,
                session.into_string(),
            ));
            resp
        }
        Ok(None) => pages::with_csrf(&req, &state, |csrf| {
            pages::render(
                StatusCode::UNAUTHORIZED,
                &LoginPage {
                    csrf_token: csrf,
                    return_to: &return_to,
                    email: &email,
                    error: Some("Wrong email or password."),
                },
            )
        }),
        Err(e) => pages::failure_page(&e),
    }
}

/// Ends the browser session.
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: extract::FormPairs,
) -> Result<HttpResponse, ApiError> {
    if let Err(page) = pages::checked_form(&state, &req, form.into_inner()) {
        return Ok(*page);
    }
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        service::authorize::logout(&state, cookie.value().to_owned()).await?;
    }
    let mut resp = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/account"))
        .finish();
    let mut removal = extract::cookie(&state.config, SESSION_COOKIE, String::new());
    removal.make_removal();
    let _ = resp.add_cookie(&removal);
    Ok(resp)
}
