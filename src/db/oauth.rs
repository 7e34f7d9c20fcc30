//! Consents and authorization codes.

use diesel::prelude::*;

use super::schema::{authorization_codes, consents};
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consents)]
#[diesel(treat_none_as_default_value = false)]
pub struct ConsentRow {
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub granted_at: i64,
}

pub fn find_consent(
    conn: &mut DbConn,
    user_id: &str,
    client_id: &str,
) -> QueryResult<Option<ConsentRow>> {
    consents::table
        .find((user_id, client_id))
        .select(ConsentRow::as_select())
        .first(conn)
        .optional()
}

/// Replaces the user's consent for the client (delete + insert: portable across backends).
pub fn put_consent(conn: &mut DbConn, row: &ConsentRow) -> QueryResult<()> {
    diesel::delete(consents::table.find((&row.user_id, &row.client_id))).execute(conn)?;
    diesel::insert_into(consents::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = authorization_codes)]
#[diesel(treat_none_as_default_value = false)]
pub struct CodeRow {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub resource: String,
    pub code_challenge: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub grant_id: Option<String>,
    /// OpenID Connect: the request's `nonce`, and when the person signed in.
    pub nonce: Option<String>,
    pub auth_time: Option<i64>,
}

pub fn insert_code(conn: &mut DbConn, row: &CodeRow) -> QueryResult<()> {
    diesel::insert_into(authorization_codes::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

pub fn find_code(conn: &mut DbConn, code_hash: &str) -> QueryResult<Option<CodeRow>> {
    authorization_codes::table
        .find(code_hash)
        .select(CodeRow::as_select())
        .first(conn)
        .optional()
}

/// Marks the code used if nobody did first; returns false when it was already used (a race
/// between two exchanges of the same code loses here, not later).
pub fn mark_code_used(
    conn: &mut DbConn,
    code_hash: &str,
    now: i64,
    grant_id: &str,
) -> QueryResult<bool> {
    let n = diesel::update(
        authorization_codes::table
            .find(code_hash)
            .filter(authorization_codes::used_at.is_null()),
    )
    .set((
        authorization_codes::used_at.eq(now),
        authorization_codes::grant_id.eq(grant_id),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Marks an unused code used without a grant: revoked before anyone exchanged it.
pub fn burn_code(conn: &mut DbConn, code_hash: &str, now: i64) -> QueryResult<bool> {
    let n = diesel::update(
        authorization_codes::table
            .find(code_hash)
            .filter(authorization_codes::used_at.is_null()),
    )
    .set(authorization_codes::used_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}
