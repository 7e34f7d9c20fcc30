//! Audit rows: one per state change, never a secret.

use super::native;
use diesel::prelude::*;

use super::schema::audit_events;
use super::DbConn;

/// An audit row to insert. Owned, so that a batch of them can be inserted together on
/// another thread (token issues on PostgreSQL, `tokens::insert_issues`).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewAuditRow {
    pub event: &'static str,
    pub created_at: i64,
    pub actor: Option<String>,
    pub ip: Option<String>,
    pub registration_id: Option<String>,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    pub detail: String,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: i64,
    pub event: String,
    pub created_at: i64,
    pub actor: Option<String>,
    pub ip: Option<String>,
    pub registration_id: Option<String>,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    pub detail: String,
    pub request_id: Option<String>,
}

pub fn insert(conn: &mut DbConn, row: &NewAuditRow) -> QueryResult<()> {
    native!(conn, |c| diesel::insert_into(audit_events::table)
        .values(row)
        .execute(c)
        .map(drop))
}

/// Newest first, optionally only one event type.
pub fn recent(conn: &mut DbConn, event: Option<&str>, limit: i64) -> QueryResult<Vec<AuditRow>> {
    let mut query = audit_events::table
        .select(AuditRow::as_select())
        .order(audit_events::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(event) = event {
        query = query.filter(audit_events::event.eq(event.to_owned()));
    }
    query.load(conn)
}
