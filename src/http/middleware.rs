//! Request-scoped concerns: a request id, one access-log line, early refusal of bodies declared
//! too large, and the RFC 9728 bearer challenge (which needs the configured issuer).
//!
//! The access log records the path without its query string and never any header, so codes,
//! tokens and `Authorization` values cannot reach it.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use tracing::Instrument;

use super::response::{ApiError, BearerChallenge, Shape};
use crate::domain::discovery::paths;
use crate::domain::ratelimit::Usage;
use crate::error::ErrorCode;
use crate::state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, for handlers that want to log it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn observe(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let path = req.path().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    if let Some(state) = &state {
        if declared_length(&req).is_some_and(|len| len > state.config.server.max_body_bytes) {
            // Refuse before reading a byte; bodies without a length are bounded by the extractors.
            let err = ApiError::new(
                ErrorCode::PayloadTooLarge,
                "request body is too large",
                Shape::for_path(&path),
            );
            let res = req.into_response(err.error_response());
            return Ok(res.map_into_boxed_body());
        }
    }
    if !url_is_clean(req.uri()) {
        let err = ApiError::new(
            ErrorCode::InvalidRequest,
            "the URL contains a NUL character",
            Shape::for_path(&path),
        );
        let res = req.into_response(err.error_response());
        return Ok(res.map_into_boxed_body());
    }
    if let Some(state) = &state {
        if let Err(problem) = screen_body(&mut req, state.config.server.max_body_bytes).await {
            let err = ApiError::new(problem.0, problem.1, Shape::for_path(&path));
            let res = req.into_response(err.error_response());
            return Ok(res.map_into_boxed_body());
        }
    }
    let span = tracing::info_span!("request", id = %request_id, method = %method, path = %path);

    let res = next.call(req).instrument(span.clone()).await?;
    let mut res = finish(
        res.map_into_boxed_body(),
        state.as_ref().map(|s| s.get_ref()),
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    record(&res, &method, started.elapsed());
    if state.as_ref().is_none_or(|s| s.config.log.access_log) {
        let status = res.status().as_u16();
        let latency_us = started.elapsed().as_micros() as u64;
        span.in_scope(|| tracing::info!(target: "authmd::access", status, latency_us, "request"));
    }
    Ok(res)
}

/// Counts the answer for `/metrics`: by route pattern (never the raw path, whose values are
/// unbounded), method and status; its latency by route; a 429 as a rate-limit refusal.
fn record(
    res: &ServiceResponse<BoxBody>,
    method: &actix_web::http::Method,
    took: std::time::Duration,
) {
    use crate::metrics::{metrics, RequestLabels, RouteLabels};
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let m = metrics();
    let status = res.status().as_u16();
    m.requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: method.as_str().to_owned(),
            status,
        })
        .inc();
    let by_route = RouteLabels { route };
    m.latency
        .get_or_create(&by_route)
        .observe(took.as_secs_f64());
    if status == 429 {
        m.rate_limited.get_or_create(&by_route).inc();
    }
}

/// Reads a JSON body once, before any handler: refuses a body over the limit (also one sent
/// without a length) and a NUL character or invalid UTF-8 in any field, whatever the endpoint,
/// so no backend ever sees one (PostgreSQL would refuse a NUL with an error, SQLite would store
/// it). The body is put back for the handler. Form bodies are checked where their parameters
/// are decoded (`extract::Params`), which costs nothing extra on the token and introspection
/// paths.
async fn screen_body(
    req: &mut ServiceRequest,
    limit: usize,
) -> Result<(), (ErrorCode, &'static str)> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..16))
        .is_some_and(|t| t.eq_ignore_ascii_case(b"application/json"));
    if !json {
        return Ok(());
    }
    let mut payload = req.take_payload();
    let mut body = web::BytesMut::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut payload).await {
        let chunk = chunk.map_err(|_| {
            (
                ErrorCode::InvalidRequest,
                "the request body could not be read",
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err((ErrorCode::PayloadTooLarge, "request body is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    if !json_is_clean(&body) {
        return Err((
            ErrorCode::InvalidRequest,
            "a field contains a NUL character or invalid UTF-8",
        ));
    }
    let (_, mut restored) = actix_http::h1::Payload::create(true);
    restored.unread_data(body);
    req.set_payload(actix_web::dev::Payload::from(restored));
    Ok(())
}

/// Whether the path and query are free of an encoded NUL (`%00`). Path segments and query
/// values reach queries as text, and PostgreSQL refuses a NUL in text with an error (SQLite
/// would store it); no identifier or parameter of this API contains one, so a URL carrying one
/// is refused here, once for every route. (A raw NUL cannot get past the HTTP parser.)
pub(crate) fn url_is_clean(uri: &actix_web::http::Uri) -> bool {
    let has_nul = |s: &str| s.as_bytes().windows(3).any(|w| w == b"%00");
    !has_nul(uri.path()) && !uri.query().is_some_and(has_nul)
}

/// A JSON body is UTF-8 with no raw NUL and no `\u0000` escape in a string.
pub(crate) fn json_is_clean(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    if text.contains('\0') {
        return false;
    }
    // `u0000` is an escape when an odd number of backslashes stands right before it.
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(found) = text[i..].find("u0000") {
        let at = i + found;
        let slashes = bytes[..at]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if slashes % 2 == 1 {
            return false;
        }
        i = at + 1;
    }
    true
}

fn declared_length(req: &ServiceRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn finish(mut res: ServiceResponse<BoxBody>, state: Option<&AppState>) -> ServiceResponse<BoxBody> {
    // No response is ever to be sniffed into another type (an error JSON into HTML).
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let usage = res.request().extensions().get::<Usage>().copied();
    if let Some(usage) = usage {
        rate_limit_headers(res.headers_mut(), &usage);
    }
    if matches!(
        res.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        let challenge = res
            .response()
            .extensions()
            .get::<BearerChallenge>()
            .cloned();
        if let (Some(challenge), Some(state)) = (challenge, state) {
            let scope = challenge
                .scope
                .map(|s| format!(", scope=\"{s}\""))
                .unwrap_or_default();
            let value = format!(
                "Bearer error=\"{}\"{scope}, resource_metadata=\"{}{}\"",
                challenge.error,
                state.config.server.issuer,
                paths::PR_METADATA
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
        }
    }
    res
}

/// `RateLimit-Policy` and `RateLimit` (IETF httpapi ratelimit-headers draft, structured fields):
/// the window that is closest to refusing this caller.
pub fn rate_limit_headers(headers: &mut actix_web::http::header::HeaderMap, usage: &Usage) {
    let policy = format!("\"default\";q={};w={}", usage.limit, usage.window_s);
    let current = format!("\"default\";r={};t={}", usage.remaining, usage.reset_s);
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// The `RateLimit` headers of a refusal by a limit: nothing remains until `Retry-After`.
pub fn refusal_headers(
    headers: &mut actix_web::http::header::HeaderMap,
    p: &crate::error::ProtocolError,
    retry_after: Option<u64>,
) {
    if let (Some((limit, window_s)), Some(reset_s)) = (p.rate_limit, retry_after) {
        let usage = Usage {
            limit,
            remaining: 0,
            reset_s: reset_s as i64,
            window_s,
            over: true,
        };
        rate_limit_headers(headers, &usage);
    }
}

#[cfg(test)]
mod tests {
    use super::json_is_clean;

    #[test]
    fn nul_and_bad_utf8_are_found_in_json() {
        assert!(json_is_clean(br#"{"a": "plain", "b": "\\u0000 is text"}"#));
        assert!(!json_is_clean(br#"{"a": "x\u0000y"}"#));
        assert!(!json_is_clean(br#"{"a": "x\\\u0000y"}"#));
        assert!(!json_is_clean(b"{\"a\": \"\xff\"}"));
    }
}
