//! `grant_type=client_credentials`: a confidential client acting for itself.

use serde_json::json;

use super::{narrow_scopes, resolve_resource};
use crate::db::{write_tx, DbConn};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::clients::Client;
use crate::domain::context::Ctx;
use crate::domain::credentials::{mint_access, Subject, TokenResponse};
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
    write_tx(conn, |conn| {
        let (access_token, expires_in) = mint_access(
            conn,
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
        ctx.record(
            conn,
            AuditEvent::TokenIssued,
            AuditEntry {
                client_id: Some(&client.client_id),
                detail: Some(json!({ "grant_type": GRANT_CLIENT_CREDENTIALS, "scope": scopes })),
                ..Default::default()
            },
        )?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in,
            scope: scopes.clone(),
            refresh_token: None,
            id_token: None,
            identity_assertion: None,
            assertion_expires: None,
        })
    })
}
