//! The one place that turns an [`AppError`] into an HTTP response, and the JSON error bodies
//! for the framework's own failures (unknown path, bad JSON, oversized body).
//!
//! OAuth endpoints answer RFC 6749 bodies `{"error", "error_description"}`; agent endpoints
//! answer auth.md bodies `{"error", "message"}`. Internal errors answer 500 with an opaque
//! reference; the cause goes to the log under that reference and never to the caller.

use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::{AppError, ErrorCode, ProtocolError};

/// Which error body a family of endpoints speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OAuth,
    /// auth.md v0.1 at `/agent/auth`: `{"error", "message"}`.
    Agent,
    /// auth.md v0.6 at `/agent/identity`: `{"error", "error_description"}`.
    Identity,
}

impl Shape {
    pub fn for_path(path: &str) -> Self {
        if path.starts_with("/agent/identity") {
            Shape::Identity
        } else if path.starts_with("/agent/") {
            Shape::Agent
        } else {
            Shape::OAuth
        }
    }
}

/// The error type of every handler.
#[derive(Debug)]
pub struct ApiError {
    pub error: AppError,
    pub shape: Shape,
}

impl ApiError {
    pub fn agent(error: impl Into<AppError>) -> Self {
        Self {
            error: error.into(),
            shape: Shape::Agent,
        }
    }

    pub fn new(
        code: ErrorCode,
        description: impl Into<std::borrow::Cow<'static, str>>,
        shape: Shape,
    ) -> Self {
        Self {
            error: AppError::protocol(code, description),
            shape,
        }
    }
}

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self {
            error: e.into(),
            shape: Shape::OAuth,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match &self.error {
            AppError::Protocol(p) => status_of(p.code),
            AppError::Unavailable(_) | AppError::Conflict => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match &self.error {
            AppError::Protocol(p) => protocol_response(p, self.shape),
            AppError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "database unavailable");
                let p = ProtocolError::new(
                    ErrorCode::ServiceUnavailable,
                    "the database is unavailable or busy; retry shortly",
                )
                .with_retry_after(1);
                protocol_response(&p, self.shape)
            }
            AppError::Conflict => {
                let p = ProtocolError::new(
                    ErrorCode::ServiceUnavailable,
                    "a concurrent request changed this; retry",
                )
                .with_retry_after(1);
                protocol_response(&p, self.shape)
            }
            AppError::Internal(cause) => {
                let reference = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(reference = %reference, cause = %cause, "internal error");
                let body = ErrorBody::new(
                    "server_error",
                    format!("internal error; reference {reference}"),
                    self.shape,
                );
                HttpResponse::InternalServerError()
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .json(body)
            }
        }
    }
}

/// The status of each protocol error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        InvalidClient | InvalidToken | InvalidClaimToken | OtpInvalid | InteractionRequired
        | LoginRequired => StatusCode::UNAUTHORIZED,
        AccessDenied | InsufficientScope => StatusCode::FORBIDDEN,
        NotFound => StatusCode::NOT_FOUND,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        PreviouslyClaimed | ClaimedOrInFlight | IdempotencyKeyInUse => StatusCode::CONFLICT,
        OtpExpired | ClaimExpired | ClaimSuperseded => StatusCode::GONE,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        OtpLocked | RateLimited | TemporarilyUnavailable => StatusCode::TOO_MANY_REQUESTS,
        NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        InvalidRequest
        | UnsupportedIdentityType
        | AuthorizationPending
        | SlowDown
        | ExpiredToken
        | DeviceAccessDenied
        | InvalidGrant
        | UnauthorizedClient
        | UnsupportedGrantType
        | UnsupportedResponseType
        | InvalidScope
        | InvalidTarget
        | UnsupportedTokenType
        | InvalidRedirectUri
        | InvalidClientMetadata
        | AnonymousNotEnabled
        | VerifiedEmailNotEnabled
        | IssuerNotEnabled
        | UnsupportedCredentialType
        | InvalidSignature
        | ReplayDetected
        | InvalidAudience
        | CredentialExpired
        | MissingVerifiedEmail
        | ServiceAuthNotEnabled
        | InvalidLoginHint => StatusCode::BAD_REQUEST,
    }
}

/// An error body in either shape (both are documented in the OpenAPI description).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error code.
    pub error: String,
    /// RFC 6749 description (OAuth endpoints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// auth.md description (agent endpoints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `login_required`: the oldest sign-in accepted, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

impl ErrorBody {
    fn new(code: &str, description: String, shape: Shape) -> Self {
        let (error_description, message) = match shape {
            Shape::OAuth | Shape::Identity => (Some(description), None),
            Shape::Agent => (None, Some(description)),
        };
        Self {
            error: code.to_owned(),
            error_description,
            message,
            max_age: None,
        }
    }
}

/// Every 429 and 503 says when to come back (RFC 9110 §10.2.3); a lock with no natural end (a
/// claim locked by wrong codes) can be retried, with a new attempt, at once.
pub(super) fn retry_after(p: &ProtocolError) -> Option<u64> {
    let status = status_of(p.code);
    p.retry_after.or((status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::SERVICE_UNAVAILABLE)
        .then_some(1))
}

/// An `AgentAuth` challenge (auth.md v0.5) parameter: quoted, with `\` and `"` escaped.
fn challenge_param(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Marks a 401 for the middleware that knows the issuer, which then adds
/// `WWW-Authenticate: Bearer resource_metadata="…"` (RFC 9728 §5.1).
#[derive(Debug, Clone)]
pub struct BearerChallenge {
    pub error: &'static str,
    /// The scope a 403 `insufficient_scope` asks for.
    pub scope: Option<&'static str>,
}

fn protocol_response(p: &ProtocolError, shape: Shape) -> HttpResponse {
    let mut builder = HttpResponse::build(status_of(p.code));
    builder.insert_header((header::CACHE_CONTROL, "no-store"));
    let retry_after = retry_after(p);
    if let Some(seconds) = retry_after {
        builder.insert_header((header::RETRY_AFTER, seconds.to_string()));
    }
    let mut refusal = actix_web::http::header::HeaderMap::new();
    super::middleware::refusal_headers(&mut refusal, p, retry_after);
    for (name, value) in refusal {
        builder.insert_header((name, value));
    }
    if p.code == ErrorCode::InvalidClient {
        // RFC 6749 §5.2: a 401 for client authentication carries a challenge.
        builder.insert_header((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"authmd\""),
        ));
    }
    if p.code == ErrorCode::LoginRequired {
        let challenge = format!(
            "AgentAuth error=\"login_required\", max_age=\"{}\", error_description=\"{}\"",
            p.max_age.unwrap_or_default(),
            challenge_param(&p.description)
        );
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            builder.insert_header((header::WWW_AUTHENTICATE, value));
        }
    }
    let mut body = ErrorBody::new(p.code.as_str(), p.description.to_string(), shape);
    body.max_age = p.max_age;
    let mut response = builder.json(body);
    if p.code == ErrorCode::InvalidToken {
        response.extensions_mut().insert(BearerChallenge {
            error: "invalid_token",
            scope: None,
        });
    }
    if p.code == ErrorCode::InsufficientScope {
        // RFC 6750 §3.1 and RFC 9470: say which scope would do, so a client can step up.
        response.extensions_mut().insert(BearerChallenge {
            error: "insufficient_scope",
            scope: p.required_scope,
        });
    }
    response
}

/// JSON 404 for paths no route matches.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::NotFound,
        format!("no such endpoint: {} {}", req.method(), req.path()),
        Shape::for_path(req.path()),
    ))
}

/// Body-parsing failures (malformed JSON or form, wrong content type, too large) as JSON 4xx.
pub fn payload_error(
    err: impl fmt::Display + PayloadErrorKind,
    req: &HttpRequest,
) -> actix_web::Error {
    let shape = Shape::for_path(req.path());
    let api = match err.kind() {
        PayloadProblem::TooLarge => ApiError::new(
            ErrorCode::PayloadTooLarge,
            "request body is too large",
            shape,
        ),
        PayloadProblem::ContentType => ApiError::new(
            ErrorCode::InvalidRequest,
            format!("unsupported Content-Type for {}", req.path()),
            shape,
        ),
        PayloadProblem::Malformed => ApiError::new(
            ErrorCode::InvalidRequest,
            format!("malformed request body: {}", sanitize(&err.to_string())),
            shape,
        ),
    };
    api.into()
}

/// Which kind of body failure an actix payload error is.
pub enum PayloadProblem {
    TooLarge,
    ContentType,
    Malformed,
}

pub trait PayloadErrorKind {
    fn kind(&self) -> PayloadProblem;
}

impl PayloadErrorKind for actix_web::error::JsonPayloadError {
    fn kind(&self) -> PayloadProblem {
        use actix_web::error::JsonPayloadError as E;
        match self {
            E::Overflow { .. } | E::OverflowKnownLength { .. } => PayloadProblem::TooLarge,
            E::ContentType => PayloadProblem::ContentType,
            E::Payload(actix_web::error::PayloadError::Overflow) => PayloadProblem::TooLarge,
            _ => PayloadProblem::Malformed,
        }
    }
}

impl PayloadErrorKind for actix_web::error::UrlencodedError {
    fn kind(&self) -> PayloadProblem {
        use actix_web::error::UrlencodedError as E;
        match self {
            E::Overflow { .. } => PayloadProblem::TooLarge,
            E::ContentType => PayloadProblem::ContentType,
            E::Payload(actix_web::error::PayloadError::Overflow) => PayloadProblem::TooLarge,
            _ => PayloadProblem::Malformed,
        }
    }
}

impl PayloadErrorKind for actix_web::error::QueryPayloadError {
    fn kind(&self) -> PayloadProblem {
        PayloadProblem::Malformed
    }
}

/// serde messages can quote the offending input; keep them short and on one line.
fn sanitize(message: &str) -> String {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() > 200 {
        one_line.chars().take(200).collect::<String>() + "…"
    } else {
        one_line
    }
}

/// A 200 JSON answer that must not be cached (tokens, credentials).
pub fn no_store_json(body: &impl Serialize) -> HttpResponse {
    // Static header values and one buffer sized for a token answer: this is the answer of
    // every token request and introspection, and `HttpResponseBuilder::json` validates and
    // copies each header value and grows its buffer from empty.
    let mut json = Vec::with_capacity(512);
    if let Err(e) = serde_json::to_writer(&mut json, body) {
        return HttpResponse::from_error(actix_web::error::JsonPayloadError::Serialize(e));
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(json)
}

/// JSON 405 for a known path asked with another method.
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
        Shape::for_path(req.path()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use serde_json::json;

    async fn body_of(resp: HttpResponse) -> serde_json::Value {
        serde_json::from_slice(&to_bytes(resp.into_body()).await.unwrap()).unwrap()
    }

    #[actix_web::test]
    async fn oauth_and_agent_shapes() {
        let e = ApiError::new(ErrorCode::InvalidGrant, "code already used", Shape::OAuth);
        let resp = e.error_response();
        assert_eq!(resp.status(), 400);
        assert_eq!(
            body_of(resp).await,
            json!({"error": "invalid_grant", "error_description": "code already used"})
        );
        let e = ApiError::new(ErrorCode::OtpLocked, "too many wrong codes", Shape::Agent);
        let resp = e.error_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(
            body_of(resp).await,
            json!({"error": "otp_locked", "message": "too many wrong codes"})
        );
    }

    #[actix_web::test]
    async fn invalid_client_has_challenge_and_retry_after_is_set() {
        let resp =
            ApiError::new(ErrorCode::InvalidClient, "bad secret", Shape::OAuth).error_response();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_some());
        let p = ProtocolError::new(ErrorCode::RateLimited, "slow down").with_retry_after(7);
        let resp = ApiError::agent(p).error_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "7");
        let resp = ApiError::new(ErrorCode::OtpLocked, "locked", Shape::Agent).error_response();
        assert_eq!(resp.status(), 429);
        assert!(
            resp.headers().get(header::RETRY_AFTER).is_some(),
            "every 429 has Retry-After"
        );
    }

    #[actix_web::test]
    async fn internal_errors_hide_the_cause() {
        let resp =
            ApiError::from(AppError::internal("SELECT * FROM secrets failed")).error_response();
        assert_eq!(resp.status(), 500);
        let body = body_of(resp).await;
        assert_eq!(body["error"], "server_error");
        assert!(!body.to_string().contains("SELECT"));
    }

    #[test]
    fn every_agent_code_has_the_spec_status() {
        use ErrorCode::*;
        let spec = [
            (InvalidRequest, 400),
            (AnonymousNotEnabled, 400),
            (VerifiedEmailNotEnabled, 400),
            (IssuerNotEnabled, 400),
            (UnsupportedCredentialType, 400),
            (InvalidSignature, 400),
            (ReplayDetected, 400),
            (InvalidAudience, 400),
            (CredentialExpired, 400),
            (MissingVerifiedEmail, 400),
            (InvalidClaimToken, 401),
            (OtpInvalid, 401),
            (OtpLocked, 429),
            (OtpExpired, 410),
            (ClaimExpired, 410),
            (ClaimSuperseded, 410),
            (PreviouslyClaimed, 409),
            (RateLimited, 429),
            (TemporarilyUnavailable, 429),
            (IdempotencyKeyReused, 422),
            (InvalidClient, 401),
            (InvalidGrant, 400),
            (InvalidTarget, 400),
            (UnsupportedGrantType, 400),
            (InvalidScope, 400),
            (InvalidToken, 401),
        ];
        for (code, status) in spec {
            assert_eq!(status_of(code).as_u16(), status, "{}", code.as_str());
        }
    }
}
