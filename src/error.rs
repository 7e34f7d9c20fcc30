//! Errors, by layer.
//!
//! - `db/` returns `diesel` and pool errors; they convert into [`AppError::Internal`].
//! - `domain/` returns [`AppError`]: a [`ProtocolError`] when the caller did something wrong (it
//!   carries an RFC 6749/7009/7662 or auth.md code and a description safe to show), or an
//!   internal error whose cause is logged and never shown.
//! - `http/response.rs` is the one place that maps an [`AppError`] to a status, a JSON body and
//!   `WWW-Authenticate`.

use std::borrow::Cow;
use std::fmt;

/// The error codes authmd answers with. The string forms are part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    // RFC 6749, 7009, 7662, 8707
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    UnsupportedTokenType,
    /// RFC 6750: a missing or bad bearer credential on a protected endpoint.
    InvalidToken,
    InsufficientScope,
    // RFC 8628 §3.5, at the token endpoint (all 400)
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    /// `access_denied` at the token endpoint: 400 as RFC 6749 §5.2 says of every token error,
    /// where an API refusing a caller answers `AccessDenied` (403).
    DeviceAccessDenied,
    // RFC 7591
    InvalidRedirectUri,
    InvalidClientMetadata,
    // auth.md
    AnonymousNotEnabled,
    VerifiedEmailNotEnabled,
    IssuerNotEnabled,
    UnsupportedCredentialType,
    /// An agent registration `type` this server does not know (400, on both paths).
    UnsupportedIdentityType,
    InvalidSignature,
    ReplayDetected,
    InvalidAudience,
    CredentialExpired,
    MissingVerifiedEmail,
    InvalidClaimToken,
    OtpInvalid,
    OtpLocked,
    OtpExpired,
    ClaimExpired,
    ClaimSuperseded,
    PreviouslyClaimed,
    // auth.md v0.6, at /agent/identity
    ServiceAuthNotEnabled,
    InvalidLoginHint,
    /// 401: an ID-JAG matched an account by email with no delegation for its `(iss, sub)`;
    /// the person must confirm on `/claim`.
    InteractionRequired,
    /// 401: an ID-JAG's `auth_time` is missing or older than `agent.id_jag_max_auth_age_s`.
    LoginRequired,
    /// 409: the registration is already claimed, or is not claimed this way.
    ClaimedOrInFlight,
    RateLimited,
    /// RFC 6749 `temporarily_unavailable` answered with 429: a client that keeps failing to
    /// authenticate at the token endpoint.
    TemporarilyUnavailable,
    // HTTP-level
    IdempotencyKeyReused,
    IdempotencyKeyInUse,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    NotImplemented,
    ServiceUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidClient => "invalid_client",
            InvalidGrant => "invalid_grant",
            UnauthorizedClient => "unauthorized_client",
            UnsupportedGrantType => "unsupported_grant_type",
            UnsupportedResponseType => "unsupported_response_type",
            InvalidScope => "invalid_scope",
            InvalidTarget => "invalid_target",
            AccessDenied => "access_denied",
            UnsupportedTokenType => "unsupported_token_type",
            InvalidToken => "invalid_token",
            InsufficientScope => "insufficient_scope",
            AuthorizationPending => "authorization_pending",
            SlowDown => "slow_down",
            ExpiredToken => "expired_token",
            DeviceAccessDenied => "access_denied",
            InvalidRedirectUri => "invalid_redirect_uri",
            InvalidClientMetadata => "invalid_client_metadata",
            AnonymousNotEnabled => "anonymous_not_enabled",
            VerifiedEmailNotEnabled => "verified_email_not_enabled",
            IssuerNotEnabled => "issuer_not_enabled",
            UnsupportedCredentialType => "unsupported_credential_type",
            UnsupportedIdentityType => "unsupported_identity_type",
            InvalidSignature => "invalid_signature",
            ReplayDetected => "replay_detected",
            InvalidAudience => "invalid_audience",
            CredentialExpired => "credential_expired",
            MissingVerifiedEmail => "missing_verified_email",
            InvalidClaimToken => "invalid_claim_token",
            OtpInvalid => "otp_invalid",
            OtpLocked => "otp_locked",
            OtpExpired => "otp_expired",
            ClaimExpired => "claim_expired",
            ClaimSuperseded => "claim_superseded",
            PreviouslyClaimed => "previously_claimed",
            ServiceAuthNotEnabled => "service_auth_not_enabled",
            InvalidLoginHint => "invalid_login_hint",
            InteractionRequired => "interaction_required",
            LoginRequired => "login_required",
            ClaimedOrInFlight => "claimed_or_in_flight",
            RateLimited => "rate_limited",
            TemporarilyUnavailable => "temporarily_unavailable",
            IdempotencyKeyReused => "idempotency_key_reused",
            IdempotencyKeyInUse => "idempotency_key_in_use",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            // RFC 6749 has no code for it; 413 with invalid_request says enough.
            PayloadTooLarge => "invalid_request",
            UnsupportedMediaType => "unsupported_media_type",
            NotImplemented => "not_implemented",
            ServiceUnavailable => "temporarily_unavailable",
        }
    }
}

/// A caller-facing protocol error: a code and a description that is safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    /// Seconds to put in `Retry-After` (rate limits, lockouts).
    pub retry_after: Option<u64>,
    /// For a refusal by a rate limit: its `(limit, window seconds)`, for the `RateLimit` headers.
    pub rate_limit: Option<(u32, i64)>,
    /// For `insufficient_scope`: the scope the request needs, for the `WWW-Authenticate`
    /// challenge (RFC 6750 §3).
    pub required_scope: Option<&'static str>,
    /// For `login_required`: the oldest sign-in accepted, in seconds (body and challenge).
    pub max_age: Option<i64>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after: None,
            rate_limit: None,
            required_scope: None,
            max_age: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

/// Everything a domain function can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Protocol(ProtocolError),
    /// The pool had no connection in time: 503, the caller may retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A concurrent writer won a conditional update; the transaction rolled back and the
    /// operation may be retried.
    #[error("concurrent update")]
    Conflict,
    /// A bug or an outage. The cause is logged with an id; the caller sees only the id.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn protocol(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self::Protocol(ProtocolError::new(code, description))
    }

    /// `403 insufficient_scope`: the credential is good but lacks `scope`.
    pub fn insufficient_scope(scope: &'static str) -> Self {
        let mut p = ProtocolError::new(
            ErrorCode::InsufficientScope,
            format!("this request needs scope {scope}"),
        );
        p.required_scope = Some(scope);
        Self::Protocol(p)
    }

    /// `401 login_required` (auth.md v0.5): the agent must have the person sign in again at
    /// its provider; `max_age` goes into the body and the `AgentAuth` challenge.
    pub fn login_required(description: String, max_age: i64) -> Self {
        let mut p = ProtocolError::new(ErrorCode::LoginRequired, description);
        p.max_age = Some(max_age);
        Self::Protocol(p)
    }

    pub fn internal(cause: impl fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Protocol(p) => Some(p.code),
            _ => None,
        }
    }
}

impl From<ProtocolError> for AppError {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<diesel::result::Error> for AppError {
    /// A lost PostgreSQL connection, or SQLite refusing to write (disk full, read-only file,
    /// I/O error, lock held past `busy_timeout`), is an outage the caller may retry through
    /// (503 with `Retry-After`); nothing was committed, since the write's transaction failed
    /// with it. Anything else is a bug, answered 500 with a reference.
    fn from(e: diesel::result::Error) -> Self {
        if storage_unavailable(&e) {
            Self::Unavailable(format!("database: {e}"))
        } else {
            Self::Internal(format!("database: {e}"))
        }
    }
}

/// Whether `e` says the database cannot be reached or written now, rather than that a query
/// is wrong. SQLite reports these only as messages (diesel maps its result codes to `Unknown`);
/// the strings are SQLite's own `sqlite3_errstr` texts, stable across versions.
fn storage_unavailable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            const SQLITE_OUTAGES: [&str; 5] = [
                "database or disk is full",
                "attempt to write a readonly database",
                "disk I/O error",
                "database is locked",
                "unable to open database file",
            ];
            SQLITE_OUTAGES.contains(&info.message())
        }
        _ => false,
    }
}

impl From<r2d2::Error> for AppError {
    fn from(e: r2d2::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

pub type AppResult<T> = Result<T, AppError>;
