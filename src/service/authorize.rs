//! The authorization endpoint, its consent decision, and the login form.

use super::transaction;
use crate::domain::audit::AuditContext;
use crate::domain::oauth::{self, AuthorizeError, AuthorizeParams, AuthorizeStep};
use crate::domain::ratelimit::Usage;
use crate::domain::secrets::PlainToken;
use crate::domain::users;
use crate::error::AppResult;
use crate::state::AppState;

/// Validates an authorization request and decides the next step (login, consent, redirect).
pub async fn begin(
    state: &AppState,
    params: AuthorizeParams,
    session: Option<String>,
) -> Result<AuthorizeStep, AuthorizeError> {
    transaction(state, AuditContext::default(), move |conn, ctx| {
        Ok(oauth::begin(
            conn,
            ctx.config,
            ctx.now,
            &params,
            session.as_deref(),
        ))
    })
    .await
    .map_err(AuthorizeError::from)?
}

/// The consent form's decision: the redirect back to the client.
pub async fn decide(
    state: &AppState,
    params: AuthorizeParams,
    session: Option<String>,
    allow: bool,
) -> Result<String, AuthorizeError> {
    transaction(state, AuditContext::default(), move |conn, ctx| {
        Ok(oauth::decide(
            conn,
            ctx.config,
            ctx.now,
            &params,
            session.as_deref(),
            allow,
        ))
    })
    .await
    .map_err(AuthorizeError::from)?
}

/// The login form: a session on success, and the failure window's usage for the RateLimit
/// headers. The password check (argon2) runs on the blocking pool.
pub async fn login(
    state: &AppState,
    email: String,
    password: String,
    ip: Option<String>,
) -> AppResult<(Option<PlainToken>, Option<Usage>)> {
    transaction(state, AuditContext::default(), move |conn, ctx| {
        users::login(
            conn,
            &ctx.config.rate_limit,
            ctx.now,
            &email,
            &password,
            ip.as_deref(),
        )
    })
    .await
}

pub async fn logout(state: &AppState, cookie: String) -> AppResult<()> {
    transaction(state, AuditContext::default(), move |conn, _| {
        users::end_session(conn, &cookie)
    })
    .await
}
