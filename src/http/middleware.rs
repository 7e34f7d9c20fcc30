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
use crate::error::ErrorCode;
use crate::state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, for handlers that want to log it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn observe(
    req: ServiceRequest,
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
    let span = tracing::info_span!("request", id = %request_id, method = %method, path = %path);

    let res = next.call(req).instrument(span.clone()).await?;
    let mut res = finish(
        res.map_into_boxed_body(),
        state.as_ref().map(|s| s.get_ref()),
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    if state.as_ref().is_none_or(|s| s.config.log.access_log) {
        let status = res.status().as_u16();
        let latency_us = started.elapsed().as_micros() as u64;
        span.in_scope(|| tracing::info!(target: "authmd::access", status, latency_us, "request"));
    }
    Ok(res)
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
    if res.status() == StatusCode::UNAUTHORIZED {
        let challenge = res
            .response()
            .extensions()
            .get::<BearerChallenge>()
            .cloned();
        if let (Some(challenge), Some(state)) = (challenge, state) {
            let value = format!(
                "Bearer error=\"{}\", resource_metadata=\"{}{}\"",
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
