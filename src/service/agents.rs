//! auth.md agent registration and the emailed claim ceremony.

use super::{query, write};
use crate::domain::agents::{self, Registered, Revoked};
use crate::domain::audit::AuditContext;
use crate::domain::claims::{self, AttemptState, ClaimStarted, Claimed};
use crate::domain::discovery::ID_JAG_TOKEN_TYPE;
use crate::domain::mail::Email;
use crate::domain::scope::{self, Scopes};
use crate::error::{AppError, AppResult, ErrorCode, ProtocolError};
use crate::state::AppState;

fn bad(msg: &'static str) -> AppError {
    AppError::protocol(ErrorCode::InvalidRequest, msg)
}

/// A registration request, as the agent sent it.
#[derive(Debug, Clone, Default)]
pub struct RegisterRequest {
    /// `anonymous` or `identity_assertion`.
    pub kind: Option<String>,
    pub requested_credential_type: Option<String>,
    /// `(assertion_type, assertion)`.
    pub assertion: Option<(String, String)>,
    /// A subset of what the type grants before the claim.
    pub scopes: Option<Vec<String>>,
}

/// `POST /agent/auth`: dispatches on `type` and `assertion_type`.
pub async fn register(
    state: &AppState,
    audit: AuditContext,
    request: RegisterRequest,
) -> AppResult<Registered> {
    let kind = agents::credential_type(
        state.config.agent.default_credential_type,
        request.requested_credential_type.as_deref(),
    )?;
    let scopes = request.scopes;
    match request.kind.as_deref() {
        Some("anonymous") => {
            write(state, audit, move |conn, ctx| {
                agents::register_anonymous(conn, ctx, kind, scopes.as_deref())
            })
            .await
        }
        Some("identity_assertion") => {
            let (assertion_type, assertion) = request
                .assertion
                .ok_or_else(|| bad("assertion_type and assertion are required"))?;
            match assertion_type.as_str() {
                "verified_email" => {
                    // Nothing is granted before the person confirms.
                    scope::requested(&Scopes::default(), scopes.as_deref())?;
                    let (answer, mail) = write(state, audit, move |conn, ctx| {
                        agents::register_verified_email(conn, ctx, &assertion, kind)
                    })
                    .await?;
                    // Nothing may wait for a message that never left: the registration is
                    // withdrawn.
                    let id = answer.registration_id.clone();
                    deliver(state, &mail, "the verification email", move |conn, ctx| {
                        claims::withdraw(conn, ctx.now, &id)
                    })
                    .await?;
                    Ok(answer)
                }
                ID_JAG_TOKEN_TYPE => {
                    let mut verified = state
                        .providers
                        .verify_id_jag(&state.config, state.now(), &assertion)
                        .await?;
                    agents::narrow_id_jag(&state.config, &mut verified, scopes.as_deref())?;
                    write(state, audit, move |conn, ctx| {
                        agents::register_id_jag(conn, ctx, &verified, kind)
                    })
                    .await
                }
                _ => Err(bad(
                    "assertion_type must be verified_email or urn:ietf:params:oauth:token-type:id-jag",
                )),
            }
        }
        Some(other) => Err(AppError::protocol(
            ErrorCode::UnsupportedIdentityType,
            format!(
                "identity type {other:?} is not supported here (anonymous, identity_assertion)"
            ),
        )),
        None => Err(bad("type is required")),
    }
}

/// `POST /agent/auth/claim`: opens an attempt and mails its link (unless the same attempt is
/// already open).
pub async fn claim(
    state: &AppState,
    audit: AuditContext,
    claim_token: String,
    email: String,
    link: bool,
) -> AppResult<ClaimStarted> {
    let (answer, mail) = write(state, audit, move |conn, ctx| {
        claims::request_claim(conn, ctx, &claim_token, &email, link)
    })
    .await?;
    if let Some(mail) = mail {
        // The attempt is closed, so a retry opens (and mails) a new one instead of finding
        // this one open and sending nothing.
        let attempt = answer.claim_attempt_id.clone();
        deliver(state, &mail, "the claim email", move |conn, _| {
            claims::abandon_attempt(conn, &attempt)
        })
        .await?;
    }
    Ok(answer)
}

/// How long a caller is told to wait after the mail server refused or could not be reached.
pub(crate) const MAIL_RETRY_AFTER_S: u64 = 5;

/// Sends `mail`; when it cannot be sent, runs `compensate` and answers a retryable 503.
async fn deliver<F>(
    state: &AppState,
    mail: &Email,
    what: &'static str,
    compensate: F,
) -> AppResult<()>
where
    F: FnOnce(&mut crate::db::DbConn, &crate::domain::context::Ctx<'_>) -> AppResult<()>
        + Send
        + 'static,
{
    let Err(e) = state.mailer.send(mail).await else {
        return Ok(());
    };
    tracing::warn!(error = %e, "{what} could not be sent; undoing what was waiting for it");
    write(state, AuditContext::default(), compensate).await?;
    // Nothing waits on the unsent mail (compensated above), so the same request, repeated once
    // the mail server answers, starts afresh.
    Err(ProtocolError::new(
        ErrorCode::ServiceUnavailable,
        format!("{what} could not be sent; retry later"),
    )
    .with_retry_after(MAIL_RETRY_AFTER_S)
    .into())
}

/// `POST /agent/auth/claim/complete`.
pub async fn complete(
    state: &AppState,
    audit: AuditContext,
    claim_token: String,
    otp: String,
) -> AppResult<Claimed> {
    write(state, audit, move |conn, ctx| {
        claims::complete(conn, ctx, &claim_token, &otp)
    })
    .await
}

/// `POST /agent/auth/revoke`: a provider's logout token, verified against its JWKS first.
pub async fn provider_logout(
    state: &AppState,
    audit: AuditContext,
    token: String,
) -> AppResult<Revoked> {
    let verified = state
        .providers
        .verify_logout(&state.config, state.now(), &token)
        .await?;
    write(state, audit, move |conn, ctx| {
        agents::provider_logout(conn, ctx, &verified)
    })
    .await
}

/// `POST /agent/event/notify`: a provider's Security Event Token. Revokes everything issued for
/// its `(iss, sub)` when it carries the revocation event; otherwise accepted and ignored.
pub async fn provider_event(state: &AppState, audit: AuditContext, token: String) -> AppResult<()> {
    let verified = state
        .providers
        .verify_security_event(&state.config, state.now(), &token)
        .await?;
    if let Some(verified) = verified {
        write(state, audit, move |conn, ctx| {
            agents::provider_logout(conn, ctx, &verified)
        })
        .await?;
    }
    Ok(())
}

/// The claim page: what an attempt's link shows. Reads only.
pub async fn claim_view(state: &AppState, view_token: String) -> AppResult<AttemptState> {
    query(state, move |conn, ctx| {
        claims::view(conn, ctx.now, &view_token)
    })
    .await
}

/// The claim page's "get a code" button: returns the code to show.
pub async fn claim_challenge(
    state: &AppState,
    audit: AuditContext,
    view_token: String,
) -> AppResult<String> {
    write(state, audit, move |conn, ctx| {
        claims::challenge(conn, ctx, &view_token)
    })
    .await
}

/// The claim page's "this wasn't me" button.
pub async fn claim_cancel(
    state: &AppState,
    audit: AuditContext,
    view_token: String,
) -> AppResult<()> {
    write(state, audit, move |conn, ctx| {
        claims::cancel(conn, ctx, &view_token)
    })
    .await
}
