//! The operator's view: clients, registrations, users and the audit log, and bulk revocation
//! of agent credentials for incident response.

use serde_json::{json, Value};

use crate::clock::UnixTime;
use crate::config::Config;
pub use crate::db::admin::AuditFilter;
use crate::db::agents::RegistrationRow;
use crate::db::{self, write_tx, DbConn};
use crate::domain::audit::{self, AuditContext, AuditEntry, AuditEvent};
use crate::domain::clients;
use crate::domain::credentials;
use crate::domain::registration::client_metadata;
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

pub fn registration_json(r: &RegistrationRow) -> Value {
    json!({
        "registration_id": r.id,
        "registration_type": r.registration_type,
        "status": r.status,
        "principal_id": r.principal_id,
        "scopes": r.scopes,
        "user_id": r.user_id,
        "link": r.link,
        "email": r.email,
        "provider_iss": r.provider_iss,
        "provider_sub": r.provider_sub,
        "claim_token_expires": r.claim_token_expires,
        "created_at": r.created_at,
        "claimed_at": r.claimed_at,
        "revoked_at": r.revoked_at,
    })
}

pub fn registrations(
    conn: &mut DbConn,
    status: Option<&str>,
    user_id: Option<&str>,
    after: Option<&str>,
    limit: Option<i64>,
) -> AppResult<Value> {
    let limit = page_size(limit);
    let rows = db::admin::registrations(conn, status, user_id, after, limit)?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    Ok(
        json!({ "registrations": rows.iter().map(registration_json).collect::<Vec<_>>(), "next": next }),
    )
}

pub fn registration(conn: &mut DbConn, id: &str) -> AppResult<Value> {
    let reg = db::agents::find_registration(conn, id)?
        .ok_or_else(|| AppError::protocol(ErrorCode::NotFound, "no such registration"))?;
    let keys: Vec<Value> = db::accounts::registration_keys(conn, id)?
        .into_iter()
        .map(|k| json!({ "prefix": k.prefix, "created_at": k.created_at, "last_used_at": k.last_used_at }))
        .collect();
    let mut v = registration_json(&reg);
    v["api_keys"] = json!(keys);
    Ok(v)
}

pub fn users(conn: &mut DbConn, after: Option<&str>, limit: Option<i64>) -> AppResult<Value> {
    let limit = page_size(limit);
    let rows = db::admin::users(conn, after, limit)?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    let users: Vec<Value> = rows
        .into_iter()
        .map(|u| json!({ "id": u.id, "email": u.email, "email_verified": u.email_verified, "created_at": u.created_at }))
        .collect();
    Ok(json!({ "users": users, "next": next }))
}

pub fn user(conn: &mut DbConn, id: &str) -> AppResult<Value> {
    let u = db::users::find(conn, id)?
        .ok_or_else(|| AppError::protocol(ErrorCode::NotFound, "no such user"))?;
    Ok(
        json!({ "id": u.id, "email": u.email, "email_verified": u.email_verified, "created_at": u.created_at }),
    )
}

/// The audit log, newest first; `next` is the cursor (`before_id`) of the following page.
pub fn audit_log(conn: &mut DbConn, filter: &AuditFilter, limit: Option<i64>) -> AppResult<Value> {
    let limit = page_size(limit);
    let rows = db::admin::audit(conn, filter, limit)?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let events: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id, "event": r.event, "created_at": r.created_at, "actor": r.actor, "ip": r.ip,
                "registration_id": r.registration_id, "client_id": r.client_id, "user_id": r.user_id,
                "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(json!({ "events": events, "next": next }))
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
        let ids = match target {
            RevokeTarget::All => db::admin::live_registration_ids(conn, None)?,
            RevokeTarget::User(user) => db::admin::live_registration_ids(conn, Some(user))?,
            RevokeTarget::Registration(id) => {
                db::agents::find_registration(conn, id)?.ok_or_else(|| {
                    AppError::protocol(ErrorCode::NotFound, "no such registration")
                })?;
                vec![id.clone()]
            }
        };
        let mut n = 0;
        for id in ids {
            if credentials::revoke_from(conn, now, credentials::Dying::Registration(&id))? > 0 {
                n += 1;
                audit::record(
                    conn,
                    now,
                    ctx,
                    AuditEvent::RegistrationRevoked,
                    AuditEntry {
                        registration_id: Some(&id),
                        detail: Some(json!({ "reason": "bulk revocation" })),
                        ..Default::default()
                    },
                )?;
            }
        }
        Ok(n)
    })
}
