//! The `/device` page of the RFC 8628 device grant: the person behind the session, the
//! pending request a typed code names, and the person's answer.

use super::{query, read, write};
use crate::domain::audit::AuditContext;
use crate::domain::device::{self, PendingDevice};
use crate::domain::ratelimit::{self, Action};
use crate::domain::users::{self, User};
use crate::error::AppResult;
use crate::state::AppState;

/// The signed-in person and when they signed in.
pub async fn session(state: &AppState, cookie: String) -> AppResult<Option<(User, i64)>> {
    read(state, move |conn, ctx| {
        users::session(conn, ctx.now, &cookie)
    })
    .await
}

/// The confirmation step for a typed code. Every lookup counts in the per-IP one-time-code
/// window, so user codes cannot be guessed online.
pub async fn describe(
    state: &AppState,
    ip: Option<String>,
    typed: String,
) -> AppResult<PendingDevice> {
    write(state, AuditContext::default(), move |conn, ctx| {
        ratelimit::check(
            conn,
            &ctx.config.rate_limit,
            ctx.now,
            Action::Otp,
            ip.as_deref(),
        )?;
        Ok(())
    })
    .await?;
    query(state, move |conn, ctx| device::describe(conn, ctx, &typed)).await
}

/// The person's answer.
pub async fn decide(
    state: &AppState,
    audit: AuditContext,
    user_id: String,
    auth_time: i64,
    typed: String,
    allow: bool,
) -> AppResult<()> {
    write(state, audit, move |conn, ctx| {
        device::decide(conn, ctx, &user_id, auth_time, &typed, allow)
    })
    .await
}
