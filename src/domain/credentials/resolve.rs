//! Whether a recognised credential is live now, what it speaks for, and the RFC 7662 answer.

use serde::{Deserialize, Serialize};

use super::{recognise, Kind, Presented};
use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::agents::RegistrationRow;
use crate::db::status::{RegistrationStatus, RegistrationType};
use crate::db::tokens::AccessTokenRow;
use crate::db::{self, DbConn};
use crate::domain::keys::KeyRing;
use crate::error::AppResult;

/// Seconds between two `last_used_at` writes for one credential.
pub const TOUCH_INTERVAL_S: i64 = 60;

/// Whether a credential's `last_used_at` is old enough to be written again.
pub fn is_stale(last_used_at: Option<i64>, now: UnixTime) -> bool {
    last_used_at.is_none_or(|t| now - t >= TOUCH_INTERVAL_S)
}

/// The `sub` of a registration's credentials: the user after a merge (or for provider
/// registrations), the agent's own principal otherwise.
pub fn subject_of(reg: &RegistrationRow) -> &str {
    match (&reg.user_id, reg.link) {
        (Some(user), Some(false) | None)
            if reg.status == RegistrationStatus::Claimed
                || reg.registration_type == RegistrationType::Provider =>
        {
            user
        }
        _ => &reg.principal_id,
    }
}

/// Whether a registration's credentials work now.
pub fn is_live(reg: &RegistrationRow, now: UnixTime) -> bool {
    match reg.status {
        RegistrationStatus::Revoked | RegistrationStatus::Expired | RegistrationStatus::Pending => {
            false
        }
        // Unclaimed registrations die when their credentials do (agent.unclaimed_credential_ttl_s).
        RegistrationStatus::Active | RegistrationStatus::Claimed => {
            reg.claimed_at.is_some() || reg.credentials_expire_at.is_none_or(|e| e > now)
        }
    }
}

/// RFC 7662 answer. Inactive tokens answer `{"active": false}` only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// For a linked agent: the user who owns it (`sub` stays the agent principal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_sub: Option<String>,
    /// For agent credentials: the registration they belong to and whether it is claimed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_registration: Option<AgentRegistration>,
    /// For workspace tokens: the one workspace the token may act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

impl Introspection {
    pub fn inactive() -> Self {
        Self::default()
    }
}

/// The registration an agent credential belongs to, as introspection reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AgentRegistration {
    pub id: String,
    /// `anonymous`, `email-verification` or `agent-provider`.
    #[serde(rename = "type")]
    pub registration_type: String,
    pub claimed: bool,
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
pub fn access_live(row: &AccessTokenRow, now: UnixTime) -> Option<Live> {
    if row.revoked_at.is_some() || row.expires_at <= now {
        return None;
    }
    Some(Live {
        sub: row.subject.clone(),
        user_id: row.user_id.clone(),
        // RFC 9068 `client_id` of an agent credential: its registration.
        client_id: row
            .client_id
            .clone()
            .or_else(|| row.registration_id.clone()),
        registration_id: row.registration_id.clone(),
        scope: row.scope.clone(),
        exp: Some(row.expires_at),
        iat: row.issued_at,
        aud: row.audience.clone(),
        ..Default::default()
    })
}

/// Whether resolving a credential records its use (`last_used_at` of API keys and personal
/// tokens, at most once a minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordUse {
    Yes,
    /// Read only: the database cannot take writes now (disk full, read-only), and when a
    /// credential was last used is bookkeeping, never a reason to refuse to say it is live.
    No,
}

/// Whether the credential is live now, and what it speaks for. Reads (and, with
/// [`RecordUse::Yes`], writes `last_used_at` at most once a minute); never revokes.
pub fn resolve(
    conn: &mut DbConn,
    config: &Config,
    now: UnixTime,
    p: &Presented,
    record: RecordUse,
) -> AppResult<Option<Live>> {
    let live = match p.kind {
        Kind::AccessToken | Kind::AccessJwt => {
            db::tokens::find_access_token(conn, &p.id)?.and_then(|row| access_live(&row, now))
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
            if record == RecordUse::Yes && is_stale(row.last_used_at, now) {
                db::accounts::touch_api_key(conn, &row.key_hash, now)?;
            }
            let Some(reg) = db::agents::find_registration(conn, &row.registration_id)? else {
                return Ok(None);
            };
            Some(Live {
                sub: subject_of(&reg).to_owned(),
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
                sub: subject_of(&reg).to_owned(),
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
            if record == RecordUse::Yes && is_stale(row.last_used_at, now) {
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
        | Kind::AuthorizationCode
        | Kind::DeviceCode => None,
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
            .is_some_and(|reg| is_live(reg, now))
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
    record: RecordUse,
) -> AppResult<Introspection> {
    let Some(p) = recognise(config, keys, token) else {
        return Ok(Introspection::inactive());
    };
    if !p.kind.spec().bearer {
        return Ok(Introspection::inactive());
    }
    Ok(match resolve(conn, config, now, &p, record)? {
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
        if reg.link == Some(true) {
            answer.owner_sub = reg.user_id.clone();
        }
        answer.agent_registration = Some(AgentRegistration {
            id: reg.id.clone(),
            registration_type: reg.registration_type.as_str().to_owned(),
            claimed: reg.status == RegistrationStatus::Claimed,
        });
    }
    answer
}
