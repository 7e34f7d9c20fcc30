//! Every credential authmd issues, in one table: how a presented secret is recognised, what it
//! hangs from, how it is introspected, revoked and audited.
//!
//! Introspection (`/oauth2/introspect`), revocation (`/oauth2/revoke`), the callers of
//! `/api/tokens` and the principals of `Idempotency-Key` all start from [`recognise`] and
//! dispatch on [`Kind`] here, once. A kind added to authmd is one [`KINDS`] entry and one arm in
//! each `match` below; the compiler points at every arm that is missing.
//!
//! "Dies with its parent" is kept two ways: revoking a parent revokes its children in the same
//! transaction (a client's, grant's, registration's, user's or maker token's credentials), and
//! the checks below that read a parent anyway (an agent credential's registration) judge it
//! again at use, so a registration that expired unclaimed stops its credentials at once.

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::json;

use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::agents::RegistrationRow;
use crate::db::tokens::AccessTokenRow;
use crate::db::{self, DbConn};
use crate::domain::agents;
use crate::domain::audit::{self, AuditEntry, AuditEvent};
use crate::domain::clients::{self, Client, ClientAuth};
use crate::domain::context::Ctx;
use crate::domain::keys::KeyRing;
use crate::domain::secrets::{prefix, HashedToken};
use crate::domain::tokens::Introspection;
use crate::error::{AppError, AppResult, ErrorCode};

/// The kinds of credential authmd issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `at_…`, stored as its SHA-256.
    AccessToken,
    /// RFC 9068 JWT access token, stored by `jti`.
    AccessJwt,
    /// `rt_…`: rotates; revoking one revokes its grant.
    RefreshToken,
    /// An agent's API key (`sk_…`, prefix configurable).
    ApiKey,
    /// A JWT authmd signed for an agent, exchanged with the JWT-bearer grant.
    IdentityAssertion,
    /// `pat_…`: a person's personal or workspace token.
    PersonalToken,
    /// `clm_…`: lets a person claim an anonymous registration.
    ClaimToken,
    /// `cv_…`: the link of one claim attempt's email.
    ClaimAttempt,
    /// `rat_…`: RFC 7592 management of a dynamically registered client.
    RegistrationAccessToken,
    /// `ac_…`: one authorization code.
    AuthorizationCode,
}

/// What a credential hangs from: when that dies, the credential dies with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    Grant,
    Registration,
    User,
    Client,
    /// The personal token that minted it.
    MakerToken,
    /// A provider identity `(iss, sub)`: the provider's logout event.
    ProviderSubject,
}

/// One row of the table.
#[derive(Debug)]
pub struct KindSpec {
    pub kind: Kind,
    /// Its `token_type` in introspection answers and audit rows.
    pub name: &'static str,
    pub parents: &'static [Parent],
    /// The type prefix of a random secret (stored as its SHA-256). `None`: a JWT, recognised by
    /// its signature, or the API key, whose prefix is configured (`agent.api_key_prefix`).
    pub prefix: Option<&'static str>,
    /// Whether a resource server may accept it: only these ever introspect `active: true`.
    /// The others are one-step secrets of a ceremony, never bearer credentials for an API.
    pub bearer: bool,
}

pub const KINDS: [KindSpec; 10] = [
    KindSpec {
        kind: Kind::AccessToken,
        name: "access_token",
        parents: &[
            Parent::Grant,
            Parent::Registration,
            Parent::Client,
            Parent::User,
            Parent::ProviderSubject,
        ],
        prefix: Some(prefix::ACCESS_TOKEN),
        bearer: true,
    },
    KindSpec {
        kind: Kind::AccessJwt,
        name: "access_token",
        parents: &[
            Parent::Grant,
            Parent::Registration,
            Parent::Client,
            Parent::User,
            Parent::ProviderSubject,
        ],
        prefix: None,
        bearer: true,
    },
    KindSpec {
        kind: Kind::RefreshToken,
        name: "refresh_token",
        parents: &[
            Parent::Grant,
            Parent::Registration,
            Parent::Client,
            Parent::User,
        ],
        prefix: Some(prefix::REFRESH_TOKEN),
        bearer: true,
    },
    KindSpec {
        kind: Kind::ApiKey,
        name: "api_key",
        parents: &[Parent::Registration, Parent::User, Parent::ProviderSubject],
        prefix: None,
        bearer: true,
    },
    KindSpec {
        kind: Kind::IdentityAssertion,
        name: "identity_assertion",
        parents: &[Parent::Registration, Parent::User],
        prefix: None,
        bearer: true,
    },
    KindSpec {
        kind: Kind::PersonalToken,
        name: "personal_token",
        parents: &[Parent::User, Parent::MakerToken],
        prefix: Some(prefix::PERSONAL_TOKEN),
        bearer: true,
    },
    KindSpec {
        kind: Kind::ClaimToken,
        name: "claim_token",
        parents: &[Parent::Registration],
        prefix: Some(prefix::CLAIM_TOKEN),
        bearer: false,
    },
    KindSpec {
        kind: Kind::ClaimAttempt,
        name: "claim_attempt_token",
        parents: &[Parent::Registration],
        prefix: Some(prefix::CLAIM_ATTEMPT),
        bearer: false,
    },
    KindSpec {
        kind: Kind::RegistrationAccessToken,
        name: "registration_access_token",
        parents: &[Parent::Client],
        prefix: Some(prefix::REGISTRATION_TOKEN),
        bearer: false,
    },
    KindSpec {
        kind: Kind::AuthorizationCode,
        name: "authorization_code",
        parents: &[Parent::Client, Parent::User],
        prefix: Some(prefix::AUTH_CODE),
        bearer: false,
    },
];

impl Kind {
    pub fn spec(self) -> &'static KindSpec {
        KINDS
            .iter()
            .find(|s| s.kind == self)
            .expect("every kind has a row (unit-tested)")
    }
}

/// A presented secret, recognised: its kind and the key its row is stored under (a SHA-256
/// for random secrets, the `jti` of a JWT whose signature checked out).
#[derive(Debug, Clone)]
pub struct Presented {
    pub kind: Kind,
    pub id: String,
    /// The claims of an identity assertion (already verified).
    assertion: Option<AssertionRef>,
}

#[derive(Debug, Clone, Deserialize)]
struct AssertionRef {
    iss: String,
    jti: String,
    exp: i64,
    registration_id: String,
}

/// Which kind a presented secret is, from the table: its type prefix, or a JWT signature by one
/// of authmd's keys. The configured API key prefix is tried first, so an operator's prefix that
/// starts like a built-in one still means what they configured.
pub fn recognise(config: &Config, keys: &KeyRing, token: &str) -> Option<Presented> {
    let hashed = |kind| {
        Some(Presented {
            kind,
            id: HashedToken::of(token).as_str().to_owned(),
            assertion: None,
        })
    };
    if token.starts_with(config.agent.api_key_prefix.as_str()) {
        return hashed(Kind::ApiKey);
    }
    if let Some(spec) = KINDS
        .iter()
        .find(|s| s.prefix.is_some_and(|p| token.starts_with(p)))
    {
        return hashed(spec.kind);
    }
    if token.matches('.').count() == 2 {
        return recognise_jwt(config, keys, token);
    }
    None
}

/// A JWT signed by one of authmd's keys with authmd as `iss`: an RFC 9068 access token
/// (`typ: at+jwt`) or an identity assertion (it names its registration).
fn recognise_jwt(config: &Config, keys: &KeyRing, token: &str) -> Option<Presented> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.alg != Algorithm::ES256 {
        return None;
    }
    let key = keys.find(header.kid.as_deref()?)?;
    let mut validation = Validation::new(Algorithm::ES256);
    // Expiry is judged against the injected clock, not the system clock.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.set_issuer(&[&config.server.issuer]);
    if header.typ.as_deref() == Some("at+jwt") {
        #[derive(Deserialize)]
        struct Jti {
            jti: String,
        }
        let data = jsonwebtoken::decode::<Jti>(token, &key.decoding, &validation).ok()?;
        return Some(Presented {
            kind: Kind::AccessJwt,
            id: data.claims.jti,
            assertion: None,
        });
    }
    let data = jsonwebtoken::decode::<AssertionRef>(token, &key.decoding, &validation).ok()?;
    Some(Presented {
        kind: Kind::IdentityAssertion,
        id: data.claims.jti.clone(),
        assertion: Some(data.claims),
    })
}

/// A live credential: what introspection reports and what callers are told about.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub sub: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub registration_id: Option<String>,
    pub scope: String,
    pub exp: Option<i64>,
    pub iat: i64,
    pub aud: String,
    pub workspace: Option<String>,
    /// A personal token's row id (its maker id for tokens it mints).
    pub token_id: Option<String>,
    /// An agent credential's registration, read once and judged live.
    pub registration: Option<RegistrationRow>,
}

/// The answer for a stored access-token row, and the registration that completes it (the
/// registration's state decides whether the token still works).
pub fn access_live(row: AccessTokenRow, now: UnixTime) -> Option<Live> {
    if row.revoked_at.is_some() || row.expires_at <= now {
        return None;
    }
    Some(Live {
        sub: row.subject,
        user_id: row.user_id,
        // RFC 9068 `client_id` of an agent credential: its registration.
        client_id: row.client_id.or_else(|| row.registration_id.clone()),
        registration_id: row.registration_id,
        scope: row.scope,
        exp: Some(row.expires_at),
        iat: row.issued_at,
        aud: row.audience,
        ..Default::default()
    })
}

/// Whether the credential is live now, and what it speaks for. Reads (and for API keys and
/// personal tokens, writes `last_used_at` at most once a minute); never revokes.
pub fn resolve(
    conn: &mut DbConn,
    config: &Config,
    now: UnixTime,
    p: &Presented,
) -> AppResult<Option<Live>> {
    let live = match p.kind {
        Kind::AccessToken | Kind::AccessJwt => {
            db::tokens::find_access_token(conn, &p.id)?.and_then(|row| access_live(row, now))
        }
        Kind::RefreshToken => {
            let Some(row) = db::tokens::find_refresh_token(conn, &p.id)? else {
                return Ok(None);
            };
            let Some(grant) = db::tokens::find_grant(conn, &row.grant_id)? else {
                return Ok(None);
            };
            let live = row.revoked_at.is_none()
                && row.used_at.is_none()
                && grant.revoked_at.is_none()
                && row.expires_at > now;
            live.then(|| Live {
                sub: grant.subject,
                user_id: grant.user_id,
                client_id: grant.client_id,
                registration_id: grant.registration_id,
                scope: grant.scope,
                exp: Some(row.expires_at),
                iat: row.issued_at,
                aud: grant.resource,
                ..Default::default()
            })
        }
        Kind::ApiKey => {
            let Some(row) = db::agents::find_api_key(conn, &p.id)? else {
                return Ok(None);
            };
            if row.revoked_at.is_some() {
                return Ok(None);
            }
            if crate::domain::accounts::is_stale(row.last_used_at, now) {
                db::accounts::touch_api_key(conn, &row.key_hash, now)?;
            }
            let Some(reg) = db::agents::find_registration(conn, &row.registration_id)? else {
                return Ok(None);
            };
            Some(Live {
                sub: agents::subject_of(&reg).to_owned(),
                user_id: reg.user_id.clone(),
                registration_id: Some(reg.id.clone()),
                // RFC 9068 `client_id` of an agent credential: its registration.
                client_id: Some(reg.id.clone()),
                scope: reg.scopes.clone(),
                iat: row.created_at,
                aud: config.default_resource().to_owned(),
                registration: Some(reg),
                ..Default::default()
            })
        }
        Kind::IdentityAssertion => {
            let Some(a) = &p.assertion else {
                return Ok(None);
            };
            if a.exp <= now || db::agents::jti_seen(conn, &a.iss, &a.jti)? {
                return Ok(None);
            }
            let Some(reg) = db::agents::find_registration(conn, &a.registration_id)? else {
                return Ok(None);
            };
            Some(Live {
                sub: agents::subject_of(&reg).to_owned(),
                user_id: reg.user_id.clone(),
                registration_id: Some(reg.id.clone()),
                client_id: Some(reg.id.clone()),
                scope: reg.scopes.clone(),
                exp: Some(a.exp),
                iat: reg.created_at,
                aud: config.server.issuer.clone(),
                registration: Some(reg),
                ..Default::default()
            })
        }
        Kind::PersonalToken => {
            let Some(row) = db::accounts::find_token_by_hash(conn, &p.id)? else {
                return Ok(None);
            };
            if row.revoked_at.is_some() || row.expires_at.is_some_and(|e| e <= now) {
                return Ok(None);
            }
            if crate::domain::accounts::is_stale(row.last_used_at, now) {
                db::accounts::touch_token(conn, &row.id, now)?;
            }
            Some(Live {
                sub: row.user_id.clone(),
                user_id: Some(row.user_id),
                scope: row.scopes,
                exp: row.expires_at,
                iat: row.created_at,
                aud: config.default_resource().to_owned(),
                workspace: row.workspace,
                token_id: Some(row.id),
                ..Default::default()
            })
        }
        // One-step secrets: never a bearer credential, so nothing to report.
        Kind::ClaimToken
        | Kind::ClaimAttempt
        | Kind::RegistrationAccessToken
        | Kind::AuthorizationCode => None,
    };
    let Some(mut live) = live else {
        return Ok(None);
    };
    // An agent credential works only while its registration does (expired unclaimed, revoked).
    if let Some(reg_id) = &live.registration_id {
        if live.registration.is_none() {
            live.registration = db::agents::find_registration(conn, reg_id)?;
        }
        if !live
            .registration
            .as_ref()
            .is_some_and(|reg| agents::is_live(reg, now))
        {
            return Ok(None);
        }
    }
    Ok(Some(live))
}

/// RFC 7662 answer for any presented token.
pub fn introspect(
    conn: &mut DbConn,
    config: &Config,
    keys: &KeyRing,
    now: UnixTime,
    token: &str,
) -> AppResult<Introspection> {
    let Some(p) = recognise(config, keys, token) else {
        return Ok(Introspection::inactive());
    };
    if !p.kind.spec().bearer {
        return Ok(Introspection::inactive());
    }
    Ok(match resolve(conn, config, now, &p)? {
        Some(live) => answer(config, p.kind, live),
        None => Introspection::inactive(),
    })
}

/// Builds the introspection answer of a live credential.
pub fn answer(config: &Config, kind: Kind, live: Live) -> Introspection {
    let token_type = match kind {
        Kind::AccessToken | Kind::AccessJwt => "Bearer",
        other => other.spec().name,
    };
    let mut answer = Introspection {
        active: true,
        scope: Some(live.scope),
        client_id: live.client_id,
        sub: Some(live.sub),
        exp: live.exp,
        iat: Some(live.iat),
        token_type: Some(token_type.to_owned()),
        aud: Some(live.aud),
        iss: Some(config.server.issuer.clone()),
        workspace: live.workspace,
        ..Default::default()
    };
    if let Some(reg) = &live.registration {
        agents::describe(reg, &mut answer);
    }
    answer
}

/// Who is asking to revoke.
enum Revoker<'a> {
    /// An authenticated confidential client, or a public client naming itself.
    Client(&'a Client),
    /// No client authentication: possession of the token is the only proof.
    Holder,
}

/// RFC 7009 for every kind. Unknown tokens are not an error. A token issued to a client may be
/// revoked by that client, or by its holder when the client is public; every other kind by
/// whoever holds it (possession proves ownership).
pub fn revoke(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    auth: Option<&ClientAuth>,
    token: &str,
) -> AppResult<()> {
    let client = auth
        .map(|a| clients::authenticate_limited(conn, ctx, a))
        .transpose()?;
    let revoker = client.as_ref().map_or(Revoker::Holder, Revoker::Client);
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
        may_revoke(conn, &revoker, owner)?;
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
        };
        if revoked {
            audit::record(
                conn,
                ctx.now,
                ctx.audit,
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
    })
}

/// RFC 7009 §2.1: a client revokes only its own tokens; a confidential client's tokens need
/// that client's authentication. Tokens issued to no client are revoked by possession.
fn may_revoke(conn: &mut DbConn, revoker: &Revoker<'_>, owner: Option<&str>) -> AppResult<()> {
    match (revoker, owner) {
        (Revoker::Client(c), Some(owner)) if c.client_id != owner => Err(AppError::protocol(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        )),
        (Revoker::Holder, Some(owner)) => match clients::find(conn, owner)? {
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

/// A provider's event for `(iss, sub)`: the registrations made with its ID-JAGs and the grants
/// of ID-JAG exchanges at the token endpoint. Returns how many were live.
pub fn revoke_provider_subject(
    conn: &mut DbConn,
    now: UnixTime,
    iss: &str,
    sub: &str,
) -> AppResult<(Vec<RegistrationRow>, usize)> {
    let mut revoked = Vec::new();
    for reg in db::agents::by_provider_subject(conn, iss, sub)? {
        if revoke_from(conn, now, Dying::Registration(&reg.id))? > 0 {
            revoked.push(reg);
        }
    }
    let grants = db::tokens::revoke_provider_grants(conn, iss, sub, now)?;
    Ok((revoked, grants))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_row() {
        let all = [
            Kind::AccessToken,
            Kind::AccessJwt,
            Kind::RefreshToken,
            Kind::ApiKey,
            Kind::IdentityAssertion,
            Kind::PersonalToken,
            Kind::ClaimToken,
            Kind::ClaimAttempt,
            Kind::RegistrationAccessToken,
            Kind::AuthorizationCode,
        ];
        assert_eq!(all.len(), KINDS.len());
        for kind in all {
            assert_eq!(
                KINDS.iter().filter(|s| s.kind == kind).count(),
                1,
                "{kind:?}"
            );
            assert!(
                !kind.spec().parents.is_empty(),
                "{kind:?} names its parents"
            );
        }
    }

    #[test]
    fn prefixes_are_recognised() {
        let config = Config::defaults();
        let ring = crate::domain::keys::KeyRing::for_tests();
        for (token, kind) in [
            ("sk_abc", Kind::ApiKey),
            ("pat_abc", Kind::PersonalToken),
            ("at_abc", Kind::AccessToken),
            ("rt_abc", Kind::RefreshToken),
            ("clm_abc", Kind::ClaimToken),
            ("cv_abc", Kind::ClaimAttempt),
            ("rat_abc", Kind::RegistrationAccessToken),
            ("ac_abc", Kind::AuthorizationCode),
        ] {
            assert_eq!(recognise(&config, &ring, token).unwrap().kind, kind);
        }
        assert!(recognise(&config, &ring, "nothing").is_none());
        assert!(recognise(&config, &ring, "a.b.c").is_none());
    }
}
