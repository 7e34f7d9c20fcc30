//! `grant_type=refresh_token`: rotation on every use, a grace window for lost answers, and
//! revocation of the whole grant on reuse after it.

use serde_json::json;

use super::{invalid_grant, narrow_scopes, resource_of_grant};
use crate::db::{self, write_tx, DbConn};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::clients::Client;
use crate::domain::context::Ctx;
use crate::domain::credentials::{self, issue_for_grant, TokenResponse};
use crate::domain::discovery::GRANT_REFRESH_TOKEN;
use crate::domain::scope::Scopes;
use crate::domain::secrets::{self, HashedToken};
use crate::error::{AppError, AppResult, ErrorCode};

/// Seals a rotated token's successor under a key derived from the presented refresh token,
/// which only its holder knows, so the stored successor is unreadable without it.
fn seal(presented: &str, response: &TokenResponse) -> AppResult<Vec<u8>> {
    let data = serde_json::to_vec(response).map_err(AppError::internal)?;
    Ok(secrets::seal(presented, "refresh grace v1", &data))
}

fn open(presented: &str, sealed: &[u8]) -> Option<TokenResponse> {
    serde_json::from_slice(&secrets::open(presented, "refresh grace v1", sealed)?).ok()
}

/// `grant_type=refresh_token`: rotates on every use. A token presented again within
/// `tokens.refresh_grace_s` gets the same new pair; later, reuse revokes the whole grant.
pub fn refresh(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: Option<&Client>,
    presented: &str,
    scope: Option<&str>,
    resource: Option<&str>,
) -> AppResult<TokenResponse> {
    if client.is_some_and(|c| !c.allows_grant(GRANT_REFRESH_TOKEN)) {
        return Err(AppError::protocol(
            ErrorCode::UnauthorizedClient,
            "client may not use refresh_token",
        ));
    }
    let hash = HashedToken::of(presented);
    // A concurrent rotation on PostgreSQL makes the conditional update lose; the second try
    // then sees the token as used and takes the grace path.
    for _ in 0..2 {
        let outcome = write_tx(conn, |conn| -> AppResult<AppResult<TokenResponse>> {
            let Some(row) = db::tokens::find_refresh_token(conn, hash.as_str())? else {
                return Ok(Err(invalid_grant("refresh token is invalid")));
            };
            let grant = db::tokens::find_grant(conn, &row.grant_id)?
                .ok_or_else(|| invalid_grant("refresh token is invalid"))?;
            // Client grants need that client's authentication; agent grants (no client) are
            // refreshed by possession, like the identity assertion that started them.
            match (&grant.client_id, client) {
                (Some(owner), Some(c)) if *owner == c.client_id => {}
                (None, None) => {}
                (Some(_), None) => {
                    return Err(AppError::protocol(
                        ErrorCode::InvalidClient,
                        "client authentication is required",
                    ))
                }
                _ => {
                    return Ok(Err(invalid_grant(
                        "refresh token was issued to another client",
                    )))
                }
            }
            if row.revoked_at.is_some() || grant.revoked_at.is_some() {
                return Ok(Err(invalid_grant("refresh token has been revoked")));
            }
            // An agent's grant lives only as long as its registration (an unclaimed one expires).
            if let Some(reg_id) = &grant.registration_id {
                let live = db::agents::find_registration(conn, reg_id)?
                    .is_some_and(|reg| credentials::is_live(&reg, ctx.now));
                if !live {
                    return Ok(Err(invalid_grant("the registration is no longer active")));
                }
            }
            if let Err(e) = resource_of_grant(&grant.resource, resource) {
                return Ok(Err(e));
            }
            if let Some(used_at) = row.used_at {
                // A grace of 0 means strictly single use, even within the same second.
                let grace = ctx.config.tokens.refresh_grace_s;
                let within_grace = grace > 0 && ctx.now - used_at <= grace;
                if within_grace {
                    if let Some(previous) = row
                        .successor_sealed
                        .as_deref()
                        .and_then(|s| open(presented, s))
                    {
                        return Ok(Ok(previous));
                    }
                }
                credentials::revoke_from(conn, ctx.now, credentials::Dying::Grant(&grant.id))?;
                ctx.record(
                    conn,
                    AuditEvent::RefreshReuseDetected,
                    AuditEntry {
                        client_id: grant.client_id.as_deref(),
                        user_id: grant.user_id.as_deref(),
                        detail: Some(json!({ "grant_id": grant.id, "token_prefix": row.prefix })),
                        ..Default::default()
                    },
                )?;
                return Ok(Err(invalid_grant(
                    "refresh token was already used; the grant is revoked",
                )));
            }
            if row.expires_at <= ctx.now {
                return Ok(Err(invalid_grant("refresh token has expired")));
            }
            let granted = Scopes::parse(&grant.scope).unwrap_or_default();
            let scopes = narrow_scopes(scope, &granted)?.to_string();
            let response = issue_for_grant(conn, ctx, &grant, &scopes, true)?;
            if !db::tokens::mark_refresh_used(
                conn,
                hash.as_str(),
                ctx.now,
                &seal(presented, &response)?,
            )? {
                // Lost a race: undo what this attempt issued and look again.
                return Err(AppError::Conflict);
            }
            ctx.record(
                conn,
                AuditEvent::TokenRefreshed,
                AuditEntry {
                    client_id: grant.client_id.as_deref(),
                    user_id: grant.user_id.as_deref(),
                    detail: Some(json!({ "grant_id": grant.id, "scope": scopes })),
                    ..Default::default()
                },
            )?;
            Ok(Ok(response))
        });
        match outcome {
            Ok(result) => return result,
            Err(AppError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(invalid_grant("refresh token was used concurrently; retry"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::status::CredentialType;
    use crate::domain::agents;
    use crate::domain::credentials::mint::verify_identity_assertion;
    use crate::domain::grants::jwt_bearer::exchange_identity_assertion;
    use crate::domain::testing::Fixture;

    /// An agent's identity assertion exchanged (JWT-bearer), then its refresh token rotated:
    /// the grace window answers a retry with the same pair, reuse after it revokes the grant.
    #[test]
    fn agent_refresh_rotates_with_grace_then_reuse_revokes_without_http() {
        let mut fx = Fixture::new();
        fx.config.tokens.refresh_grace_s = 5;
        let mut conn = fx.conn();
        let t0 = 1_700_000_000;
        let ctx = fx.ctx(t0);
        let kind = CredentialType::IdentityAssertion;
        let reg = agents::register_anonymous(&mut conn, &ctx, kind, None).unwrap();
        let assertion = reg.credential.unwrap().credential;
        let checked = || verify_identity_assertion(ctx.config, ctx.keys, ctx.now, &assertion);
        let first =
            exchange_identity_assertion(&mut conn, &ctx, None, checked(), None, None).unwrap();
        let replay = exchange_identity_assertion(&mut conn, &ctx, None, checked(), None, None);
        assert_eq!(replay.unwrap_err().code(), Some(ErrorCode::InvalidGrant));

        let old = first.refresh_token.unwrap();
        let next = refresh(&mut conn, &fx.ctx(t0 + 1), None, &old, None, None).unwrap();
        assert_ne!(next.access_token, first.access_token);
        // A retry within the grace window gets the same new pair.
        let retry = refresh(&mut conn, &fx.ctx(t0 + 3), None, &old, None, None).unwrap();
        assert_eq!(retry, next);
        // After it, reuse is theft: refused, and the grant (with the new pair) is revoked.
        let late = refresh(&mut conn, &fx.ctx(t0 + 10), None, &old, None, None);
        assert_eq!(late.unwrap_err().code(), Some(ErrorCode::InvalidGrant));
        let newer = next.refresh_token.unwrap();
        let dead = refresh(&mut conn, &fx.ctx(t0 + 11), None, &newer, None, None);
        assert_eq!(dead.unwrap_err().code(), Some(ErrorCode::InvalidGrant));
    }

    #[test]
    fn sealed_successor_opens_only_with_the_presented_token() {
        let response = TokenResponse {
            access_token: "at_x".into(),
            token_type: "Bearer".into(),
            expires_in: 60,
            scope: "a".into(),
            refresh_token: Some("rt_y".into()),
            id_token: None,
            identity_assertion: None,
            assertion_expires: None,
        };
        let sealed = seal("rt_presented", &response).unwrap();
        assert_eq!(open("rt_presented", &sealed), Some(response));
        assert_eq!(open("rt_other", &sealed), None);
        assert!(!String::from_utf8_lossy(&sealed).contains("at_x"));
    }
}
