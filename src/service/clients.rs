//! Dynamic client registration (RFC 7591) and its management (RFC 7592).

use serde_json::Value;

use super::{query, write};
use crate::domain::audit::AuditContext;
use crate::domain::registration::{self, RegistrationRequest};
use crate::error::AppResult;
use crate::state::AppState;

/// Checks the registration gate (open, token, off) before anything else is read.
pub fn gate(state: &AppState, bearer: Option<&str>) -> AppResult<()> {
    registration::check_gate(&state.config, bearer)
}

pub async fn register(
    state: &AppState,
    audit: AuditContext,
    request: RegistrationRequest,
) -> AppResult<Value> {
    write(state, audit, move |conn, ctx| {
        registration::register(conn, ctx.config, ctx.now, ctx.audit, request)
    })
    .await
}

pub async fn read(state: &AppState, client_id: String, token: Option<String>) -> AppResult<Value> {
    query(state, move |conn, ctx| {
        registration::read(conn, ctx.config, &client_id, token.as_deref())
    })
    .await
}

pub async fn delete(state: &AppState, client_id: String, token: Option<String>) -> AppResult<()> {
    write(state, AuditContext::default(), move |conn, ctx| {
        registration::delete(conn, ctx.now, &client_id, token.as_deref())
    })
    .await
}
