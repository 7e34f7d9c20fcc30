//! `grant_type=authorization_code` with PKCE S256 (RFC 7636): single-use codes; a replayed code
//! revokes everything issued from it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

use super::{invalid_grant, issue_person_grant, resource_of_grant, PersonGrant};
use crate::db::status::GrantKind;
use crate::db::{self, write_tx, DbConn};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::clients::Client;
use crate::domain::context::Ctx;
use crate::domain::credentials::{self, TokenResponse};
use crate::domain::discovery::{GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN};
use crate::domain::oidc;
use crate::domain::secrets::{constant_time_eq, time_ordered_id, HashedToken};
use crate::error::{AppError, AppResult, ErrorCode};

/// RFC 7636 §4.1: 43–128 characters of the unreserved set.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// BASE64URL(SHA256(verifier)), the S256 transform.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// `grant_type=authorization_code`.
pub fn exchange_code(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    resource: Option<&str>,
) -> AppResult<TokenResponse> {
    if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
        return Err(AppError::protocol(
            ErrorCode::UnauthorizedClient,
            "client may not use authorization_code",
        ));
    }
    let verifier = verifier.ok_or_else(|| {
        AppError::protocol(ErrorCode::InvalidRequest, "code_verifier is required")
    })?;
    let code_hash = HashedToken::of(code);
    let grant_id = time_ordered_id("gr_", ctx.now);
    // The replay branch must persist the revocation before answering invalid_grant, so it
    // returns its error as a value inside a committed transaction.
    let outcome = write_tx(conn, |conn| -> AppResult<AppResult<TokenResponse>> {
        let Some(row) = db::oauth::find_code(conn, code_hash.as_str())? else {
            return Ok(Err(invalid_grant("authorization code is invalid")));
        };
        if row.used_at.is_some() {
            if let Some(first) = &row.grant_id {
                credentials::revoke_from(conn, ctx.now, credentials::Dying::Grant(first))?;
            }
            ctx.record(
                conn,
                AuditEvent::CodeReuseDetected,
                AuditEntry {
                    client_id: Some(&row.client_id),
                    user_id: Some(&row.user_id),
                    detail: Some(json!({ "grant_id": row.grant_id })),
                    ..Default::default()
                },
            )?;
            return Ok(Err(invalid_grant(
                "authorization code was already used; the tokens issued from it are revoked",
            )));
        }
        if row.client_id != client.client_id {
            return Ok(Err(invalid_grant(
                "authorization code was issued to another client",
            )));
        }
        if row.expires_at <= ctx.now {
            return Ok(Err(invalid_grant("authorization code has expired")));
        }
        let redirect_ok = match redirect_uri {
            Some(uri) => uri == row.redirect_uri,
            None => client.redirect_uris.len() == 1 && client.redirect_uris[0] == row.redirect_uri,
        };
        if !redirect_ok {
            return Ok(Err(invalid_grant(
                "redirect_uri does not match the authorization request",
            )));
        }
        if !valid_verifier(verifier)
            || !constant_time_eq(s256(verifier).as_bytes(), row.code_challenge.as_bytes())
        {
            return Ok(Err(invalid_grant(
                "code_verifier does not match the code_challenge",
            )));
        }
        // RFC 8707 §2.2: the token request may name only a resource the grant covers.
        if let Err(e) = resource_of_grant(&row.resource, resource) {
            return Ok(Err(e));
        }
        if !db::oauth::mark_code_used(conn, code_hash.as_str(), ctx.now, &grant_id)? {
            return Ok(Err(invalid_grant("authorization code was already used")));
        }
        let mut response = issue_person_grant(
            conn,
            ctx,
            PersonGrant {
                id: grant_id.clone(),
                client,
                user_id: &row.user_id,
                scope: &row.scope,
                resource: &row.resource,
                kind: GrantKind::AuthorizationCode,
                refresh: client.allows_grant(GRANT_REFRESH_TOKEN),
                provider: None,
                detail: json!({ "scope": row.scope }),
            },
        )?;
        if oidc::wants_id_token(ctx.config, &row.scope) {
            let facts = oidc::IdTokenFacts {
                scope: &row.scope,
                nonce: row.nonce.as_deref(),
                auth_time: row.auth_time.unwrap_or(row.created_at),
                access_token: &response.access_token,
            };
            response.id_token = Some(oidc::id_token_for(conn, ctx, client, &row.user_id, &facts)?);
        }
        Ok(Ok(response))
    })?;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a+".repeat(30)));
    }
}
