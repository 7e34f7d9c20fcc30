//! Server-rendered pages (askama templates compiled into the binary).

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::extract::{self, Params, CSRF_COOKIE};
use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub csrf_token: &'a str,
    pub return_to: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub csrf_token: &'a str,
    pub client_name: &'a str,
    pub user_email: &'a str,
    pub scopes: Vec<&'a str>,
    pub resource: &'a str,
    pub redirect_host: String,
    /// For a client known by its metadata document: the host that published it.
    pub document_host: Option<String>,
    /// The authorization request, carried through the form as hidden fields.
    pub fields: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub code: &'a str,
}

/// Renders a page with the headers every page has: no caching, no framing (clickjacking on
/// the consent form), no scripts.
pub fn render(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ))
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// The page for a failed request: a protocol error shows its code and description (and a 429
/// its `Retry-After`); anything else shows only a reference, under which the cause is logged.
pub fn failure_page(error: &AppError) -> HttpResponse {
    match error {
        AppError::Protocol(p) => {
            let status = super::response::status_of(p.code);
            let mut resp = error_page(status, p.code.as_str(), &p.description);
            let retry_after = super::response::retry_after(p);
            if let Some(seconds) = retry_after {
                if let Ok(v) = header::HeaderValue::from_str(&seconds.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            super::middleware::refusal_headers(resp.headers_mut(), p, retry_after);
            resp
        }
        other => {
            let reference = uuid::Uuid::new_v4().simple().to_string();
            tracing::error!(reference = %reference, cause = %other, "request failed");
            let mut resp = error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ServiceUnavailable.as_str(),
                &format!(
                    "Something went wrong on our side; please try again. Reference {reference}."
                ),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            resp
        }
    }
}

pub fn error_page(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let title = if status == StatusCode::FORBIDDEN {
        "Request refused"
    } else {
        "This request cannot be completed"
    };
    render(
        status,
        &ErrorPage {
            title,
            message,
            code,
        },
    )
}

/// Renders a page that carries forms: `render` gets the CSRF token for the browser's cookie,
/// which is set here when the browser has none yet.
pub fn with_csrf(
    req: &HttpRequest,
    state: &AppState,
    render: impl FnOnce(&str) -> HttpResponse,
) -> HttpResponse {
    let (cookie_value, fresh) = extract::csrf_cookie(req);
    let session = extract::session_cookie(req);
    let token = extract::csrf_token_for(&state.csrf_key, &cookie_value, session.as_deref());
    let mut resp = render(&token);
    if fresh {
        let _ = resp.add_cookie(&extract::cookie(&state.config, CSRF_COOKIE, cookie_value));
    }
    resp
}

/// A submitted form whose CSRF token matches the browser's cookie, or the error page to show.
pub fn checked_form(
    state: &AppState,
    req: &HttpRequest,
    pairs: Vec<(String, String)>,
) -> Result<Params, Box<HttpResponse>> {
    let params = Params::from_pairs(pairs).map_err(|e| {
        Box::new(error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &e.error.to_string(),
        ))
    })?;
    if !extract::csrf_ok(&state.csrf_key, req, params.get("csrf_token")) {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "the form's CSRF token is missing or wrong",
        )));
    }
    Ok(params)
}

/// A Unix time as people read it: `2026-11-23 04:56 UTC`.
pub fn utc(t: i64) -> String {
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn unix_times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(-86_400), "1969-12-31 00:00 UTC");
    }
}
