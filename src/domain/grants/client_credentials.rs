//! `grant_type=client_credentials`: a confidential client acting for itself.

use serde_json::json;

use super::{narrow_scopes, resolve_resource};
use crate::db::{self, DbConn};
use crate::domain::audit::{self, AuditEntry, AuditEvent};
use crate::domain::clients::Client;
use crate::domain::context::Ctx;
use crate::domain::credentials::{access_row, Subject, TokenResponse};
use crate::domain::discovery::GRANT_CLIENT_CREDENTIALS;
use crate::error::{AppError, AppResult, ErrorCode};

/// `grant_type=client_credentials`: the client acts for itself; no refresh token.
pub fn client_credentials(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    scope: Option<&str>,
    resource: Option<&str>,
) -> AppResult<TokenResponse> {
    if client.is_public || !client.allows_grant(GRANT_CLIENT_CREDENTIALS) {
        return Err(AppError::protocol(
            ErrorCode::UnauthorizedClient,
            "client may not use client_credentials",
        ));
    }
    let scopes = narrow_scopes(scope, &client.scopes())?.to_string();
    let audience = resolve_resource(ctx.config, resource)?;
    let (access_token, expires_in, row) = access_row(
        ctx,
        &Subject {
            grant_id: None,
            client_id: Some(&client.client_id),
            registration_id: None,
            subject: &client.client_id,
            user_id: None,
            scope: &scopes,
            audience: &audience,
        },
    )?;
    // The token and its audit row in one write: one statement on PostgreSQL.
    let audit = audit::row(
        ctx.now,
        ctx.audit,
        AuditEvent::TokenIssued,
        AuditEntry {
            client_id: Some(&client.client_id),
            detail: Some(json!({ "grant_type": GRANT_CLIENT_CREDENTIALS, "scope": scopes })),
            ..Default::default()
        },
    );
    db::tokens::insert_access_token_audited(conn, &row, &audit)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in,
        scope: scopes,
        refresh_token: None,
        id_token: None,
        identity_assertion: None,
        assertion_expires: None,
    })
}
