//! RFC 7009 for every credential kind, and the cascades when a parent dies.

use serde_json::json;

use super::{recognise, Kind, Presented};
use crate::clock::UnixTime;
use crate::db::agents::RegistrationRow;
use crate::db::{self, DbConn};
use crate::domain::audit::{AuditContext, AuditEntry, AuditEvent};
use crate::domain::context::Ctx;
use crate::error::{AppError, AppResult, ErrorCode};

/// Who is asking to revoke.
#[derive(Debug, Clone, Copy)]
pub enum Revoker<'a> {
    /// An authenticated confidential client, or a public client naming itself.
    Client(&'a str),
    /// No client authentication: possession of the token is the only proof.
    Holder,
}

/// RFC 7009 for every kind. Unknown tokens are not an error. A token issued to a client may be
/// revoked by that client, or by its holder when the client is public; every other kind by
/// whoever holds it (possession proves ownership). The revoker is already authenticated.
pub fn revoke(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    revoker: Revoker<'_>,
    token: &str,
) -> AppResult<()> {
    let Some(p) = recognise(ctx.config, ctx.keys, token) else {
        return Ok(());
    };
    db::write_tx(conn, |conn| {
        let Some(found) = find_for_revocation(conn, &p)? else {
            return Ok(());
        };
        // A registration access token is its registrant's, not a token issued to the client.
        let owner = match p.kind {
            Kind::RegistrationAccessToken => None,
            _ => found.client_id.as_deref(),
        };
        may_revoke(conn, revoker, owner)?;
        let revoked = match p.kind {
            Kind::AccessToken | Kind::AccessJwt => {
                db::tokens::revoke_access_token(conn, &p.id, ctx.now)?
            }
            Kind::RefreshToken => {
                let grant = found.grant_id.as_deref().unwrap_or_default();
                revoke_from(conn, ctx.now, Dying::Grant(grant))? > 0
            }
            Kind::ApiKey => db::agents::revoke_api_key(conn, &p.id, ctx.now)?,
            Kind::IdentityAssertion => {
                let a = p.assertion.as_ref().expect("recognised with its claims");
                !db::agents::jti_seen(conn, &a.iss, &a.jti)?
                    && db::agents::record_jti(conn, &a.iss, &a.jti, a.exp)?
            }
            Kind::PersonalToken => {
                db::accounts::revoke_token_tree(
                    conn,
                    found.row_id.as_deref().unwrap_or_default(),
                    ctx.now,
                )? > 0
            }
            Kind::ClaimToken => db::agents::clear_claim_token(conn, &p.id)?,
            Kind::ClaimAttempt => db::agents::cancel_attempt_by_view_token(conn, &p.id)?,
            Kind::RegistrationAccessToken => db::clients::clear_registration_token(conn, &p.id)?,
            Kind::AuthorizationCode => db::oauth::burn_code(conn, &p.id, ctx.now)?,
            Kind::DeviceCode => db::device::burn(conn, &p.id)?,
        };
        if revoked {
            ctx.record(
                conn,
                AuditEvent::TokenRevoked,
                AuditEntry {
                    client_id: found.client_id.as_deref(),
                    user_id: found.user_id.as_deref(),
                    registration_id: found.registration_id.as_deref(),
                    detail: Some(json!({
                        "token_type": p.kind.spec().name,
                        "token_prefix": found.prefix,
                        "grant_id": found.grant_id,
                    })),
                },
            )?;
        }
        Ok(())
    })
}

/// What revocation needs to know of a stored credential: whom it was issued to (for the
/// RFC 7009 ownership check) and what the audit row names.
#[derive(Debug, Default)]
struct Found {
    client_id: Option<String>,
    user_id: Option<String>,
    registration_id: Option<String>,
    grant_id: Option<String>,
    row_id: Option<String>,
    prefix: Option<String>,
}

fn find_for_revocation(conn: &mut DbConn, p: &Presented) -> AppResult<Option<Found>> {
    Ok(match p.kind {
        Kind::AccessToken | Kind::AccessJwt => {
            db::tokens::find_access_token(conn, &p.id)?.map(|r| Found {
                client_id: r.client_id,
                user_id: r.user_id,
                registration_id: r.registration_id,
                grant_id: r.grant_id,
                prefix: Some(r.prefix),
                ..Default::default()
            })
        }
        Kind::RefreshToken => match db::tokens::find_refresh_token(conn, &p.id)? {
            Some(r) => db::tokens::find_grant(conn, &r.grant_id)?.map(|g| Found {
                client_id: g.client_id,
                user_id: g.user_id,
                registration_id: g.registration_id,
                grant_id: Some(g.id),
                prefix: Some(r.prefix),
                ..Default::default()
            }),
            None => None,
        },
        Kind::ApiKey => db::agents::find_api_key(conn, &p.id)?.map(|r| Found {
            registration_id: Some(r.registration_id),
            prefix: Some(r.prefix),
            ..Default::default()
        }),
        Kind::IdentityAssertion => {
            let a = p.assertion.as_ref().expect("recognised with its claims");
            Some(Found {
                registration_id: Some(a.registration_id.clone()),
                ..Default::default()
            })
        }
        Kind::PersonalToken => db::accounts::find_token_by_hash(conn, &p.id)?.map(|r| Found {
            user_id: Some(r.user_id),
            row_id: Some(r.id),
            prefix: Some(r.prefix),
            ..Default::default()
        }),
        Kind::ClaimToken => db::agents::find_by_claim_token(conn, &p.id)?.map(|r| Found {
            registration_id: Some(r.id),
            ..Default::default()
        }),
        Kind::ClaimAttempt => db::agents::find_attempt_by_view_token(conn, &p.id)?.map(|r| Found {
            registration_id: Some(r.registration_id),
            ..Default::default()
        }),
        Kind::RegistrationAccessToken => {
            db::clients::find_by_registration_token(conn, &p.id)?.map(|c| Found {
                client_id: Some(c.id),
                ..Default::default()
            })
        }
        Kind::AuthorizationCode => db::oauth::find_code(conn, &p.id)?.map(|c| Found {
            client_id: Some(c.client_id),
            user_id: Some(c.user_id),
            ..Default::default()
        }),
        Kind::DeviceCode => db::device::find(conn, &p.id)?.map(|d| Found {
            client_id: Some(d.client_id),
            user_id: d.user_id,
            ..Default::default()
        }),
    })
}

/// RFC 7009 §2.1: a client revokes only its own tokens; a confidential client's tokens need
/// that client's authentication. Tokens issued to no client are revoked by possession.
fn may_revoke(conn: &mut DbConn, revoker: Revoker<'_>, owner: Option<&str>) -> AppResult<()> {
    match (revoker, owner) {
        (Revoker::Client(client_id), Some(owner)) if client_id != owner => Err(AppError::protocol(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        )),
        (Revoker::Holder, Some(owner)) => match db::clients::find(conn, owner)? {
            Some(c) if !c.is_public => Err(AppError::protocol(
                ErrorCode::InvalidClient,
                "client authentication is required to revoke this token",
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A parent that dies, taking every credential that hangs from it (see [`Parent`]).
#[derive(Debug, Clone, Copy)]
pub enum Dying<'a> {
    /// One authorization: its access and refresh tokens.
    Grant(&'a str),
    /// An agent registration: its API keys, access tokens, grants and refresh tokens (identity
    /// assertions stop at use: they name the registration).
    Registration(&'a str),
    /// A deleted client: its grants and tokens.
    Client(&'a str),
    /// A person disconnecting one app: that app's grants for them.
    UserClient {
        user_id: &'a str,
        client_id: &'a str,
    },
    /// A disabled user: grants, access tokens, agents bound to them, personal and workspace
    /// tokens, remembered consent.
    User(&'a str),
}

/// Revokes everything that hangs from `dying`, in the caller's transaction. Returns how many
/// parents were live (grants, registrations, personal tokens), for the audit row.
pub fn revoke_from(conn: &mut DbConn, now: UnixTime, dying: Dying<'_>) -> AppResult<usize> {
    Ok(match dying {
        Dying::Grant(id) => usize::from(db::tokens::revoke_grant(conn, id, now)?),
        Dying::Registration(id) => usize::from(db::agents::revoke_registration(conn, id, now)?),
        Dying::Client(id) => db::tokens::revoke_client_tokens(conn, id, now)?,
        Dying::UserClient { user_id, client_id } => {
            db::tokens::revoke_user_client(conn, user_id, client_id, now)?
        }
        Dying::User(user_id) => {
            let mut n = db::tokens::revoke_user_grants(conn, user_id, now)?;
            for reg in db::accounts::user_registrations(conn, user_id)? {
                n += usize::from(db::agents::revoke_registration(conn, &reg.id, now)?);
            }
            n += db::accounts::revoke_user_tokens(conn, user_id, now)?;
            db::accounts::delete_user_consents(conn, user_id)?;
            n
        }
    })
}

/// Revokes an agent registration and everything issued for it, and records
/// `registration.revoked` (with `detail`, which says why) when it was live. The one way a
/// registration is revoked on someone's request: its owner, the operator, its provider.
pub fn revoke_registration(
    conn: &mut DbConn,
    now: UnixTime,
    audit: &AuditContext,
    reg: &RegistrationRow,
    detail: serde_json::Value,
) -> AppResult<bool> {
    let live = revoke_from(conn, now, Dying::Registration(&reg.id))? > 0;
    if live {
        let entry = AuditEntry {
            registration_id: Some(&reg.id),
            user_id: reg.user_id.as_deref(),
            detail: Some(detail),
            ..Default::default()
        };
        crate::domain::audit::record(conn, now, audit, AuditEvent::RegistrationRevoked, entry)?;
    }
    Ok(live)
}

/// A provider's event for `(iss, sub)`: the registrations made with its ID-JAGs (each revoked
/// and recorded with `detail`) and the grants of ID-JAG exchanges at the token endpoint.
/// Returns how many registrations and how many grants were live.
pub fn revoke_provider_subject(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    iss: &str,
    sub: &str,
    detail: serde_json::Value,
) -> AppResult<(usize, usize)> {
    let mut revoked = 0;
    for reg in db::agents::by_provider_subject(conn, iss, sub)? {
        revoked += usize::from(revoke_registration(
            conn,
            ctx.now,
            ctx.audit,
            &reg,
            detail.clone(),
        )?);
    }
    let grants = db::tokens::revoke_provider_grants(conn, iss, sub, ctx.now)?;
    Ok((revoked, grants))
}
