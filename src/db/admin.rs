//! Operator listings: paged by a cursor on the primary key, newest first.

use diesel::prelude::*;

use super::agents::RegistrationRow;
use super::audit::AuditRow;
use super::schema::{agent_registrations, audit_events, users};
use super::users::UserRow;
use super::DbConn;

/// Filters for the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event: Option<String>,
    pub registration_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Rows with an id below this (the `next` cursor of the previous page).
    pub before_id: Option<i64>,
}

pub fn audit(conn: &mut DbConn, f: &AuditFilter, limit: i64) -> QueryResult<Vec<AuditRow>> {
    let mut q = audit_events::table
        .select(AuditRow::as_select())
        .order(audit_events::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(v) = &f.event {
        q = q.filter(audit_events::event.eq(v.clone()));
    }
    if let Some(v) = &f.registration_id {
        q = q.filter(audit_events::registration_id.eq(v.clone()));
    }
    if let Some(v) = &f.user_id {
        q = q.filter(audit_events::user_id.eq(v.clone()));
    }
    if let Some(v) = &f.client_id {
        q = q.filter(audit_events::client_id.eq(v.clone()));
    }
    if let Some(v) = f.since {
        q = q.filter(audit_events::created_at.ge(v));
    }
    if let Some(v) = f.until {
        q = q.filter(audit_events::created_at.lt(v));
    }
    if let Some(v) = f.before_id {
        q = q.filter(audit_events::id.lt(v));
    }
    q.load(conn)
}

pub fn registrations(
    conn: &mut DbConn,
    status: Option<&str>,
    user_id: Option<&str>,
    after_id: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<RegistrationRow>> {
    let mut q = agent_registrations::table
        .select(RegistrationRow::as_select())
        .order(agent_registrations::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(v) = status {
        q = q.filter(agent_registrations::status.eq(v.to_owned()));
    }
    if let Some(v) = user_id {
        q = q.filter(agent_registrations::user_id.eq(v.to_owned()));
    }
    if let Some(v) = after_id {
        q = q.filter(agent_registrations::id.gt(v.to_owned()));
    }
    q.load(conn)
}

pub fn users(conn: &mut DbConn, after_id: Option<&str>, limit: i64) -> QueryResult<Vec<UserRow>> {
    let mut q = users::table
        .select(UserRow::as_select())
        .order(users::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(v) = after_id {
        q = q.filter(users::id.gt(v.to_owned()));
    }
    q.load(conn)
}

/// Registration ids to revoke in bulk: all live ones, or one user's.
pub fn live_registration_ids(conn: &mut DbConn, user_id: Option<&str>) -> QueryResult<Vec<String>> {
    let mut q = agent_registrations::table
        .filter(agent_registrations::status.ne(super::status::RegistrationStatus::Revoked))
        .select(agent_registrations::id)
        .into_boxed();
    if let Some(v) = user_id {
        q = q.filter(agent_registrations::user_id.eq(v.to_owned()));
    }
    q.load(conn)
}
