//! The `Idempotency-Key` middleware for write endpoints: reads the body once, asks
//! `domain::idempotency` whether this is a retry, and either replays the stored answer or runs
//! the handler and stores what it answered (5xx and 429 answers are not stored, so a retry
//! can succeed).

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};

use super::response::{ApiError, Shape};
use crate::domain::idempotency::{self, Begin, Stored};
use crate::error::ErrorCode;
use crate::service;
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";

fn payload_of(bytes: web::Bytes) -> Payload {
    let (_, mut payload) = actix_http::h1::Payload::create(true);
    payload.unread_data(bytes);
    Payload::from(payload)
}

fn refuse(req: ServiceRequest, err: ApiError) -> ServiceResponse<BoxBody> {
    req.into_response(err.error_response())
}

pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(key) = req
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().map(str::to_owned))
    else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let shape = Shape::for_path(req.path());
    let Ok(key) = key else {
        let err = ApiError::new(
            ErrorCode::InvalidRequest,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            shape,
        );
        return Ok(refuse(req, err));
    };
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let body = req.extract::<web::Bytes>().await?;
    let bearer = super::extract::bearer(req.request());
    let presented = idempotency::Presented {
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        bearer_is_admin: bearer
            .as_deref()
            .is_some_and(|t| state.admin_token_matches(t)),
        bearer,
        session: super::extract::session_cookie(req.request()),
    };
    let scope = format!("{} {}", req.method(), req.path());
    let started =
        service::ops::begin_idempotent(&state, presented, key, scope, body.to_vec()).await;
    let (fingerprint, begin) = match started {
        Ok(started) => started,
        Err(e) => return Ok(refuse(req, ApiError { error: e, shape })),
    };
    if let Begin::Replay(stored) = begin {
        let resp = HttpResponse::build(
            actix_web::http::StatusCode::from_u16(stored.status)
                .unwrap_or(actix_web::http::StatusCode::OK),
        )
        .content_type(stored.content_type)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("idempotent-replayed", "true"))
        .body(stored.body);
        return Ok(req.into_response(resp));
    }

    req.set_payload(payload_of(body));
    let res = next.call(req).await?;
    let status = res.status();
    let (http_req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let bytes = to_bytes(body)
        .await
        .map_err(|_| actix_web::error::ErrorInternalServerError("response body"))?;
    let content_type = head
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let stored = Stored {
        status: status.as_u16(),
        content_type,
        body: bytes.to_vec(),
    };
    let keep = !status.is_server_error() && status.as_u16() != 429;
    let outcome =
        service::ops::finish_idempotent(&state, fingerprint, keep.then_some(stored)).await;
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "storing the idempotent answer failed");
    }
    let res = head.set_body(bytes).map_into_boxed_body();
    Ok(ServiceResponse::new(http_req, res))
}
