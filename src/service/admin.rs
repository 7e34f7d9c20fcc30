//! The operator API: listings read on the blocking pool; bulk revocation is a write.

use serde_json::Value;

use super::{query, write};
use crate::domain::accounts::{CreatedToken, TokenRequest};
use crate::domain::admin::NewUser;
use crate::domain::admin::{
    self, AuditFilter, AuditPage, RegistrationInfo, RegistrationPage, RevokeTarget, UserInfo,
    UserPage,
};
use crate::domain::audit::AuditContext;
use crate::error::AppResult;
use crate::state::AppState;

/// A page of the registrations listing.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: Option<i64>,
    pub after: Option<String>,
    pub status: Option<String>,
    pub user_id: Option<String>,
}

pub async fn clients(state: &AppState) -> AppResult<Value> {
    query(state, |conn, ctx| admin::clients(conn, ctx.config)).await
}

pub async fn client(state: &AppState, id: String) -> AppResult<Value> {
    query(state, move |conn, ctx| admin::client(conn, ctx.config, &id)).await
}

pub async fn registrations(state: &AppState, page: Page) -> AppResult<RegistrationPage> {
    query(state, move |conn, _| {
        admin::registrations(
            conn,
            page.status.as_deref(),
            page.user_id.as_deref(),
            page.after.as_deref(),
            page.limit,
        )
    })
    .await
}

pub async fn registration(state: &AppState, id: String) -> AppResult<RegistrationInfo> {
    query(state, move |conn, _| admin::registration(conn, &id)).await
}

pub async fn users(state: &AppState, page: Page) -> AppResult<UserPage> {
    query(state, move |conn, _| {
        admin::users(conn, page.after.as_deref(), page.limit)
    })
    .await
}

pub async fn user(state: &AppState, id: String) -> AppResult<UserInfo> {
    query(state, move |conn, _| admin::user(conn, &id)).await
}

pub async fn audit_log(
    state: &AppState,
    filter: AuditFilter,
    limit: Option<i64>,
) -> AppResult<AuditPage> {
    query(state, move |conn, _| admin::audit_log(conn, &filter, limit)).await
}

pub async fn revoke_agents(
    state: &AppState,
    audit: AuditContext,
    target: RevokeTarget,
) -> AppResult<usize> {
    write(state, audit, move |conn, ctx| {
        admin::revoke_agents(conn, ctx.now, ctx.audit, &target)
    })
    .await
}

pub async fn create_user(
    state: &AppState,
    audit: AuditContext,
    email: String,
    password: Option<String>,
) -> AppResult<NewUser> {
    // Hashed on the blocking pool before the write: the writer never waits for Argon2.
    let hash = match password {
        Some(p) => Some(
            actix_web::rt::task::spawn_blocking(move || crate::domain::users::new_password(&p))
                .await
                .map_err(|_| {
                    crate::error::AppError::internal("the password hashing task failed")
                })??,
        ),
        None => None,
    };
    write(state, audit, move |conn, ctx| {
        admin::create_user(conn, ctx.now, ctx.audit, &email, hash)
    })
    .await
}

/// `user`: an id or an email address.
pub async fn mint_for_user(
    state: &AppState,
    audit: AuditContext,
    user: String,
    request: TokenRequest,
) -> AppResult<CreatedToken> {
    write(state, audit, move |conn, ctx| {
        admin::mint_for_user(conn, ctx.config, ctx.now, ctx.audit, &user, &request)
    })
    .await
}
