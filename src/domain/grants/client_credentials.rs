//! `grant_type=client_credentials`: a confidential client acting for itself.

use serde_json::json;

use super::{narrow_scopes, resolve_resource};
use crate::db::tokens::Issue;
use crate::domain::audit::{self, AuditEntry, AuditEvent};
use crate::domain::clients::Client;
use crate::domain::context::Ctx;
use crate::domain::credentials::{access_row, Subject, TokenResponse};
use crate::domain::discovery::GRANT_CLIENT_CREDENTIALS;
use crate::error::{AppError, AppResult, ErrorCode};

/// `grant_type=client_credentials`: the client acts for itself; no refresh token.
///
/// Mints the token and the rows that record it without writing them: the caller inserts the
/// [`Issue`]. This grant needs no transaction (what it read, the client, is not what it
/// writes), so its insert is batched with other requests' instead of holding a writer
/// (`service::oauth::client_credentials`).
pub fn client_credentials(
    ctx: &Ctx<'_>,
    client: &Client,
    scope: Option<&str>,
    resource: Option<&str>,
) -> AppResult<(Issue, TokenResponse)> {
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
    let issue = Issue { token: row, audit };
    let response = TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in,
        scope: scopes,
        refresh_token: None,
        id_token: None,
        identity_assertion: None,
        assertion_expires: None,
    };
    Ok((issue, response))
}
