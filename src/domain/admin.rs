//! The operator's view: clients, registrations, users and the audit log, and bulk revocation
//! of agent credentials for incident response.

use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::UnixTime;
use crate::config::Config;
pub use crate::db::admin::AuditFilter;
use crate::db::agents::RegistrationRow;
use crate::db::{self, write_tx, DbConn};
use crate::domain::accounts::{self, Caller, CreatedToken, TokenRequest};
use crate::domain::audit::{self, AuditContext, AuditEvent};
use crate::domain::clients;
use crate::domain::credentials;
use crate::domain::registration::client_metadata;
use crate::domain::users;
use crate::error::{AppError, AppResult, ErrorCode};

pub const MAX_PAGE: i64 = 200;

fn page_size(limit: Option<i64>) -> i64 {
    limit.unwrap_or(50).clamp(1, MAX_PAGE)
}

/// Every client, as RFC 7591 metadata.
pub fn clients(conn: &mut DbConn, config: &Config) -> AppResult<Value> {
    let list: Vec<Value> = clients::list(conn)?
        .iter()
        .map(|c| client_metadata(config, c))
        .collect();
    Ok(json!({ "clients": list }))
}

/// One client's metadata, with what only the operator sees.
pub fn client(conn: &mut DbConn, config: &Config, id: &str) -> AppResult<Value> {
    let c = clients::find(conn, id)?
        .ok_or_else(|| AppError::protocol(ErrorCode::NotFound, "no such client"))?;
    let mut v = client_metadata(config, &c);
    v["can_introspect"] = json!(c.can_introspect);
    v["created_at"] = json!(c.created_at);
    Ok(v)
}

/// An agent registration as the operator sees it (never a secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RegistrationInfo {
    pub registration_id: String,
    /// `anonymous`, `email-verification`, `agent-provider` or `service_auth`.
    pub registration_type: String,
    /// The auth.md generation it was made through: `v0.1` (`/agent/auth`) or `v0.6`
    /// (`/agent/identity`).
    pub protocol: String,
    /// `pending`, `active`, `claimed`, `revoked` or `expired`.
    pub status: String,
    pub principal_id: String,
    pub scopes: String,
    pub user_id: Option<String>,
    pub link: Option<bool>,
    pub email: Option<String>,
    pub provider_iss: Option<String>,
    pub provider_sub: Option<String>,
    pub claim_token_expires: i64,
    pub created_at: i64,
    pub claimed_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Its API keys (one registration's view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<Vec<ApiKeyInfo>>,
}

impl From<&RegistrationRow> for RegistrationInfo {
    fn from(r: &RegistrationRow) -> Self {
        Self {
            registration_id: r.id.clone(),
            registration_type: r.registration_type.as_str().to_owned(),
            protocol: r.protocol.as_str().to_owned(),
            status: r.status.as_str().to_owned(),
            principal_id: r.principal_id.clone(),
            scopes: r.scopes.clone(),
            user_id: r.user_id.clone(),
            link: r.link,
            email: r.email.clone(),
            provider_iss: r.provider_iss.clone(),
            provider_sub: r.provider_sub.clone(),
            claim_token_expires: r.claim_token_expires,
            created_at: r.created_at,
            claimed_at: r.claimed_at,
            revoked_at: r.revoked_at,
            api_keys: None,
        }
    }
}

/// An API key's public part.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RegistrationPage {
    pub registrations: Vec<RegistrationInfo>,
    /// The `after` cursor of the next page; `null` on the last.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    pub users: Vec<UserInfo>,
    /// The `after` cursor of the next page; `null` on the last.
    pub next: Option<String>,
}

/// One audit row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    pub event: String,
    pub created_at: i64,
    pub actor: Option<String>,
    pub ip: Option<String>,
    /// The `X-Request-Id` of the request that made the row.
    pub request_id: Option<String>,
    pub registration_id: Option<String>,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    /// Event-specific facts (never a secret); its members depend on the event.
    pub detail: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditRecord>,
    /// The `before_id` cursor of the next page; `null` on the last.
    pub next: Option<i64>,
}

pub fn registrations(
    conn: &mut DbConn,
    status: Option<&str>,
    user_id: Option<&str>,
    after: Option<&str>,
    limit: Option<i64>,
) -> AppResult<RegistrationPage> {
    let limit = page_size(limit);
    let rows = db::admin::registrations(conn, status, user_id, after, limit)?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    Ok(RegistrationPage {
        registrations: rows.iter().map(RegistrationInfo::from).collect(),
        next,
    })
}

pub fn registration(conn: &mut DbConn, id: &str) -> AppResult<RegistrationInfo> {
    let reg = db::agents::find_registration(conn, id)?
        .ok_or_else(|| AppError::protocol(ErrorCode::NotFound, "no such registration"))?;
    let keys = db::accounts::registration_keys(conn, id)?
        .into_iter()
        .map(|k| ApiKeyInfo {
            prefix: k.prefix,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
        })
        .collect();
    let mut info = RegistrationInfo::from(&reg);
    info.api_keys = Some(keys);
    Ok(info)
}

fn user_info(u: crate::db::users::UserRow) -> UserInfo {
    UserInfo {
        id: u.id,
        email: u.email,
        email_verified: u.email_verified,
        created_at: u.created_at,
    }
}

pub fn users(conn: &mut DbConn, after: Option<&str>, limit: Option<i64>) -> AppResult<UserPage> {
    let limit = page_size(limit);
    let rows = db::admin::users(conn, after, limit)?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    Ok(UserPage {
        users: rows.into_iter().map(user_info).collect(),
        next,
    })
}

pub fn user(conn: &mut DbConn, id: &str) -> AppResult<UserInfo> {
    let u = db::users::find(conn, id)?
        .ok_or_else(|| AppError::protocol(ErrorCode::NotFound, "no such user"))?;
    Ok(user_info(u))
}

/// The audit log, newest first; `next` is the cursor (`before_id`) of the following page.
pub fn audit_log(
    conn: &mut DbConn,
    filter: &AuditFilter,
    limit: Option<i64>,
) -> AppResult<AuditPage> {
    let limit = page_size(limit);
    let rows = db::admin::audit(conn, filter, limit)?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let events = rows
        .into_iter()
        .map(|r| AuditRecord {
            detail: serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
            id: r.id,
            event: r.event,
            created_at: r.created_at,
            actor: r.actor,
            ip: r.ip,
            request_id: r.request_id,
            registration_id: r.registration_id,
            client_id: r.client_id,
            user_id: r.user_id,
        })
        .collect();
    Ok(AuditPage { events, next })
}

/// Which agent credentials a bulk revocation hits.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    All,
    Registration(String),
    User(String),
}

/// Incident response: revokes agent registrations (and every credential issued for them).
pub fn revoke_agents(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    target: &RevokeTarget,
) -> AppResult<usize> {
    write_tx(conn, |conn| {
        let regs = match target {
            RevokeTarget::All => db::admin::live_registration_ids(conn, None)?,
            RevokeTarget::User(user) => db::admin::live_registration_ids(conn, Some(user))?,
            RevokeTarget::Registration(id) => vec![id.clone()],
        };
        let mut n = 0;
        for id in regs {
            let reg = db::agents::find_registration(conn, &id)?
                .ok_or_else(|| AppError::protocol(ErrorCode::NotFound, "no such registration"))?;
            let detail = json!({ "reason": "bulk revocation" });
            n += usize::from(credentials::revoke_registration(
                conn, now, ctx, &reg, detail,
            )?);
        }
        Ok(n)
    })
}

/// `POST /admin/users`: a new account (the operator vouches for the address).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewUser {
    pub id: String,
    pub email: String,
}

pub fn create_user(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    email: &str,
    password_hash: Option<String>,
) -> AppResult<NewUser> {
    let has_password = password_hash.is_some();
    write_tx(conn, |conn| {
        let user = users::create(conn, now, email, password_hash.clone())?;
        audit::record(
            conn,
            now,
            ctx,
            AuditEvent::UserCreated,
            audit::AuditEntry {
                user_id: Some(&user.id),
                detail: Some(json!({ "password": has_password })),
                ..Default::default()
            },
        )?;
        Ok(NewUser {
            id: user.id,
            email: user.email,
        })
    })
}

/// A token for a user, made by the operator (the first credential needs no browser): any of
/// the deployment's scopes, a workspace the user is a member of, shown once.
pub fn mint_for_user(
    conn: &mut DbConn,
    config: &Config,
    now: UnixTime,
    ctx: &AuditContext,
    user: &str,
    request: &TokenRequest,
) -> AppResult<CreatedToken> {
    let row = match user.contains('@') {
        true => users::normalize_email(user)
            .map(|e| db::users::find_by_email(conn, &e))
            .transpose()?
            .flatten(),
        false => db::users::find(conn, user)?,
    };
    let row = row
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(|| AppError::protocol(ErrorCode::NotFound, "no such user"))?;
    let caller = Caller::session(config, row.id);
    accounts::create_token(conn, config, now, ctx, &caller, request)
}
