//! The authorization endpoint, its consent decision, and the login form.

use super::{query, write};
use crate::domain::audit::AuditContext;
use crate::domain::cimd::{self, DocumentClient};
use crate::domain::oauth::{self, AuthorizeError, AuthorizeParams, AuthorizeStep};
use crate::domain::ratelimit::Usage;
use crate::domain::secrets::PlainToken;
use crate::domain::users;
use crate::error::AppResult;
use crate::state::AppState;

/// The client a metadata-document `client_id` names, fetched (or read from the cache) before
/// any database work; `None` for a registered client. A failed fetch is an error page.
async fn document(
    state: &AppState,
    params: &AuthorizeParams,
) -> Result<Option<DocumentClient>, AuthorizeError> {
    match params.client_id.as_deref() {
        Some(id) if cimd::is_document_url(id) => state
            .documents
            .client(&state.config, id, state.now())
            .await
            .map(Some)
            .map_err(AuthorizeError::Page),
        _ => Ok(None),
    }
}

/// Validates an authorization request and decides the next step (login, consent, redirect:
/// remembered consent issues the code at once, so this may write).
pub async fn begin(
    state: &AppState,
    params: AuthorizeParams,
    session: Option<String>,
) -> Result<AuthorizeStep, AuthorizeError> {
    let document = document(state, &params).await?;
    write(state, AuditContext::default(), move |conn, ctx| {
        Ok(oauth::begin(
            conn,
            ctx.config,
            ctx.now,
            &params,
            session.as_deref(),
            document.as_ref(),
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
    let document = document(state, &params).await?;
    write(state, AuditContext::default(), move |conn, ctx| {
        Ok(oauth::decide(
            conn,
            ctx.config,
            ctx.now,
            &params,
            session.as_deref(),
            allow,
            document.as_ref(),
        ))
    })
    .await
    .map_err(AuthorizeError::from)?
}

/// The login form: a session on success, and the failure window's usage for the RateLimit
/// headers. The password check (argon2, slow) reads on the blocking pool; only what follows
/// from it (a session, or a counted failure) is a write.
pub async fn login(
    state: &AppState,
    email: String,
    password: String,
    ip: Option<String>,
) -> AppResult<(Option<PlainToken>, Option<Usage>)> {
    let attempt = users::LoginAttempt::new(&email, ip);
    let checked = {
        let attempt = attempt.clone();
        query(state, move |conn, ctx| {
            users::check_login(conn, &ctx.config.rate_limit, ctx.now, &attempt, &password)
        })
        .await?
    };
    write(state, AuditContext::default(), move |conn, ctx| {
        users::finish_login(conn, &ctx.config.rate_limit, ctx.now, &attempt, checked)
    })
    .await
}

pub async fn logout(state: &AppState, cookie: String) -> AppResult<()> {
    write(state, AuditContext::default(), move |conn, _| {
        users::end_session(conn, &cookie)
    })
    .await
}
