//! The signed-in person's side: sessions, the account page, and `/api/tokens`.

use super::{query, read, write};
use crate::domain::accounts::{
    self, Caller, Overview, Revocable, TokenInfo, TokenList, TokenRequest,
};
use crate::domain::audit::AuditContext;
use crate::domain::secrets::PlainToken;
use crate::domain::signup;
use crate::domain::users::{self, User};
use crate::domain::workspaces::{self, Member, Removed, Workspace, WorkspaceList};
use crate::error::{AppError, AppResult, ErrorCode, ProtocolError};
use crate::state::AppState;

/// The user a session cookie belongs to, if it is live.
pub async fn session_user(state: &AppState, cookie: String) -> AppResult<Option<User>> {
    read(state, move |conn, ctx| {
        users::session_user(conn, ctx.now, &cookie)
    })
    .await
}

/// Who calls `/api/tokens`: a bearer credential that speaks for a user, else the session.
/// `None`: neither.
pub async fn caller(
    state: &AppState,
    bearer: Option<String>,
    session: Option<String>,
) -> AppResult<Option<Caller>> {
    if let Some(token) = bearer {
        // Personal tokens record when they were last used: this may write.
        return write(state, AuditContext::default(), move |conn, ctx| {
            accounts::caller_from_bearer(conn, ctx.config, ctx.keys, ctx.now, &token)
        })
        .await;
    }
    let Some(cookie) = session else {
        return Ok(None);
    };
    Ok(session_user(state, cookie)
        .await?
        .map(|user| Caller::session(&state.config, user.id)))
}

pub async fn create_token(
    state: &AppState,
    audit: AuditContext,
    caller: Caller,
    request: TokenRequest,
) -> AppResult<accounts::CreatedToken> {
    write(state, audit, move |conn, ctx| {
        accounts::create_token(conn, ctx.config, ctx.now, ctx.audit, &caller, &request)
    })
    .await
}

pub async fn list_tokens(state: &AppState, caller: Caller) -> AppResult<TokenList> {
    let tokens: Vec<TokenInfo> =
        query(state, move |conn, _| accounts::list_tokens(conn, &caller)).await?;
    Ok(TokenList {
        count: tokens.len(),
        tokens,
    })
}

pub async fn delete_token(
    state: &AppState,
    audit: AuditContext,
    caller: Caller,
    id: String,
) -> AppResult<()> {
    write(state, audit, move |conn, ctx| {
        accounts::delete_token(conn, ctx.now, ctx.audit, &caller, &id)
    })
    .await
}

/// What acts in the person's name, for the account page.
pub async fn overview(state: &AppState, user_id: String) -> AppResult<Overview> {
    query(state, move |conn, _| accounts::overview(conn, &user_id)).await
}

/// A revoke button on the account page.
pub async fn revoke_own(
    state: &AppState,
    audit: AuditContext,
    user_id: String,
    what: Revocable,
) -> AppResult<()> {
    write(state, audit, move |conn, ctx| {
        accounts::revoke_own(conn, ctx.now, ctx.audit, &user_id, &what)
    })
    .await
}

pub async fn create_workspace(
    state: &AppState,
    audit: AuditContext,
    caller: Caller,
    name: String,
) -> AppResult<Workspace> {
    write(state, audit, move |conn, ctx| {
        workspaces::create(conn, ctx.now, ctx.audit, &caller, &name)
    })
    .await
}

pub async fn list_workspaces(state: &AppState, caller: Caller) -> AppResult<WorkspaceList> {
    query(state, move |conn, _| workspaces::list(conn, &caller)).await
}

pub async fn add_member(
    state: &AppState,
    audit: AuditContext,
    caller: Caller,
    id: String,
    email: String,
) -> AppResult<Member> {
    write(state, audit, move |conn, ctx| {
        workspaces::add_member(conn, ctx.now, ctx.audit, &caller, &id, &email)
    })
    .await
}

pub async fn remove_member(
    state: &AppState,
    audit: AuditContext,
    caller: Caller,
    id: String,
    member: String,
) -> AppResult<Removed> {
    write(state, audit, move |conn, ctx| {
        workspaces::remove_member(conn, ctx.now, ctx.audit, &caller, &id, &member)
    })
    .await
}

pub async fn delete_workspace(
    state: &AppState,
    audit: AuditContext,
    caller: Caller,
    id: String,
) -> AppResult<Removed> {
    write(state, audit, move |conn, ctx| {
        workspaces::delete(conn, ctx.now, ctx.audit, &caller, &id)
    })
    .await
}

/// `POST /signup`: the password is hashed on the blocking pool, then the account (or the
/// emailed link) is made; a link that cannot be mailed is a retryable 503.
pub async fn signup(
    state: &AppState,
    audit: AuditContext,
    email: String,
    password: String,
) -> AppResult<Option<PlainToken>> {
    let email = signup::checked(&email, &password)?;
    let hash = actix_web::rt::task::spawn_blocking(move || users::hash_password(&password))
        .await
        .map_err(|_| AppError::internal("the password hashing task failed"))??;
    let outcome = write(state, audit, move |conn, ctx| {
        signup::submit(conn, ctx, &email, &hash)
    })
    .await?;
    match outcome {
        signup::Outcome::SignedIn(session) => Ok(Some(session)),
        signup::Outcome::Mailed(mail) => {
            if let Err(e) = state.mailer.send(&mail).await {
                tracing::warn!(error = %e, "the sign-up email could not be sent");
                return Err(ProtocolError::new(
                    ErrorCode::ServiceUnavailable,
                    "the email could not be sent; try again in a moment",
                )
                .with_retry_after(super::agents::MAIL_RETRY_AFTER_S)
                .into());
            }
            Ok(None)
        }
    }
}

/// `GET /signup/verify`: the account, and a session for it.
pub async fn confirm_signup(
    state: &AppState,
    audit: AuditContext,
    token: String,
) -> AppResult<PlainToken> {
    write(state, audit, move |conn, ctx| {
        signup::confirm(conn, ctx, &token)
    })
    .await
    .map(|(_, session)| session)
}

/// The account page's "Make a token" form, and what it shows around the new token.
pub async fn create_token_on_page(
    state: &AppState,
    audit: AuditContext,
    user_id: String,
    request: TokenRequest,
) -> AppResult<accounts::CreatedToken> {
    let caller = Caller::session(&state.config, user_id);
    create_token(state, audit, caller, request).await
}
