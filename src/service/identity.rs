//! auth.md v0.6 at `/agent/identity`: registration, claim initiation (by email or ID-JAG), and
//! the `/claim` page. Provider ID-JAGs are verified against their JWKS before the write.

use super::{query, write};
use crate::domain::audit::AuditContext;
use crate::domain::discovery::ID_JAG_TOKEN_TYPE;
use crate::domain::identity::{self, ClaimAttemptStarted, ClaimOutcome, ClaimPage, IdJagOutcome};
use crate::domain::mail::Email;
use crate::domain::providers::VerifiedIdJag;
use crate::domain::scope::{self, Scopes};
use crate::domain::users::User;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;

fn bad(msg: &'static str) -> AppError {
    AppError::protocol(ErrorCode::InvalidRequest, msg)
}

/// A `POST /agent/identity` body, as the agent sent it.
#[derive(Debug, Clone, Default)]
pub struct IdentityRequest {
    pub kind: Option<String>,
    pub login_hint: Option<String>,
    pub assertion_type: Option<String>,
    pub assertion: Option<String>,
    /// A subset of what the type grants before the claim.
    pub scopes: Option<Vec<String>>,
}

/// The v0.6 ceremony does not depend on the email (the agent already holds the code and the
/// link), so a message that cannot be sent is logged and the answer stands.
async fn courtesy_mail(state: &AppState, mail: Option<Email>) {
    if let Some(mail) = mail {
        if let Err(e) = state.mailer.send(&mail).await {
            tracing::warn!(error = %e, "the claim code email could not be sent; the agent has the code");
        }
    }
}

/// The ID-JAG of an `identity_assertion` body, verified (`aud`: the issuer or a resource).
async fn verified_id_jag(
    state: &AppState,
    assertion_type: Option<&str>,
    assertion: Option<String>,
) -> AppResult<VerifiedIdJag> {
    match assertion_type {
        Some(ID_JAG_TOKEN_TYPE) => {}
        Some(_) => {
            return Err(bad(
                "assertion_type must be urn:ietf:params:oauth:token-type:id-jag",
            ))
        }
        None => return Err(bad("assertion_type is required")),
    }
    let assertion = assertion
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("assertion is required"))?;
    Ok(state
        .providers
        .verify_id_jag_at_identity(&state.config, state.now(), &assertion)
        .await?)
}

/// `POST /agent/identity`: dispatches on `type`.
pub async fn register(
    state: &AppState,
    audit: AuditContext,
    request: IdentityRequest,
) -> AppResult<IdJagOutcome> {
    let scopes = request.scopes;
    match request.kind.as_deref() {
        Some("anonymous") => write(state, audit, move |conn, ctx| {
            identity::register_anonymous(conn, ctx, scopes.as_deref())
        })
        .await
        .map(IdJagOutcome::Registered),
        Some("service_auth") => {
            // Nothing is granted before the person confirms.
            scope::requested(&Scopes::default(), scopes.as_deref())?;
            let hint = request
                .login_hint
                .ok_or_else(|| bad("login_hint is required"))?;
            let (answer, mail) = write(state, audit, move |conn, ctx| {
                identity::register_service_auth(conn, ctx, &hint)
            })
            .await?;
            courtesy_mail(state, mail).await;
            Ok(IdJagOutcome::Registered(answer))
        }
        Some("identity_assertion") => {
            let mut v = verified_id_jag(
                state,
                request.assertion_type.as_deref(),
                request.assertion,
            )
            .await?;
            crate::domain::agents::narrow_id_jag(&state.config, &mut v, scopes.as_deref())?;
            let (outcome, mail) = write(state, audit, move |conn, ctx| {
                identity::register_id_jag(conn, ctx, &v)
            })
            .await?;
            courtesy_mail(state, mail).await;
            Ok(outcome)
        }
        Some(other) => Err(AppError::protocol(
            ErrorCode::UnsupportedIdentityType,
            format!(
                "identity type {other:?} is not supported here (anonymous, service_auth, identity_assertion)"
            ),
        )),
        None => Err(bad("type is required")),
    }
}

/// A `POST /agent/identity/claim` body.
#[derive(Debug, Clone, Default)]
pub struct ClaimRequest {
    pub kind: Option<String>,
    pub claim_token: Option<String>,
    pub email: Option<String>,
    pub assertion_type: Option<String>,
    pub assertion: Option<String>,
}

/// What `POST /agent/identity/claim` answers.
pub enum ClaimAnswer {
    Started(ClaimAttemptStarted),
    Claimed(ClaimOutcome),
}

/// `POST /agent/identity/claim`: a fresh ceremony for an email, or a claim with an ID-JAG.
pub async fn claim(
    state: &AppState,
    audit: AuditContext,
    request: ClaimRequest,
) -> AppResult<ClaimAnswer> {
    let claim_token = request
        .claim_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("claim_token is required"))?;
    match request.kind.as_deref() {
        Some("identity_assertion") => {
            // The draft's assertion_type may be left out here: the claim takes ID-JAGs only.
            let assertion_type = request
                .assertion_type
                .as_deref()
                .or(Some(ID_JAG_TOKEN_TYPE));
            let v = verified_id_jag(state, assertion_type, request.assertion).await?;
            let (outcome, mail) = write(state, audit, move |conn, ctx| {
                identity::claim_with_id_jag(conn, ctx, &claim_token, &v)
            })
            .await?;
            courtesy_mail(state, mail).await;
            Ok(ClaimAnswer::Claimed(outcome))
        }
        Some(other) if other != "email" => Err(AppError::protocol(
            ErrorCode::UnsupportedIdentityType,
            format!("claim type {other:?} is not supported (an email, or identity_assertion)"),
        )),
        _ => {
            let email = request.email.ok_or_else(|| bad("email is required"))?;
            let (started, mail) = write(state, audit, move |conn, ctx| {
                identity::start_claim(conn, ctx, &claim_token, &email)
            })
            .await?;
            courtesy_mail(state, mail).await;
            Ok(ClaimAnswer::Started(started))
        }
    }
}

/// `GET /claim`: what the signed-in person sees. Reads only.
pub async fn claim_page(state: &AppState, view_token: String, user: User) -> AppResult<ClaimPage> {
    query(state, move |conn, ctx| {
        identity::page(conn, ctx, &view_token, &user)
    })
    .await
}

/// `POST /claim`: the person typed the code.
pub async fn confirm(
    state: &AppState,
    audit: AuditContext,
    view_token: String,
    user: User,
    user_code: String,
) -> AppResult<Result<ClaimPage, (ClaimPage, &'static str)>> {
    write(state, audit, move |conn, ctx| {
        identity::confirm(conn, ctx, &view_token, &user, &user_code)
    })
    .await
}
