//! Personal and workspace tokens, what a user's account page lists, and idempotency records.

use diesel::prelude::*;

use super::agents::{ApiKeyRow, RegistrationRow};
use super::schema::{
    agent_registrations, api_keys, clients, consents, idempotency_keys, personal_tokens,
};
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = personal_tokens)]
#[diesel(treat_none_as_default_value = false)]
pub struct PersonalTokenRow {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    pub workspace: Option<String>,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// None: never expires.
    pub expires_at: Option<i64>,
    /// The personal token that minted this one, if any: this one dies with it.
    pub parent_id: Option<String>,
}

pub fn insert_token(conn: &mut DbConn, row: &PersonalTokenRow) -> QueryResult<()> {
    diesel::insert_into(personal_tokens::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

pub fn find_token_by_hash(conn: &mut DbConn, hash: &str) -> QueryResult<Option<PersonalTokenRow>> {
    personal_tokens::table
        .filter(personal_tokens::token_hash.eq(hash))
        .select(PersonalTokenRow::as_select())
        .first(conn)
        .optional()
}

/// A user's live tokens, newest first; only one workspace's when `workspace` is given.
pub fn user_tokens(
    conn: &mut DbConn,
    user_id: &str,
    workspace: Option<&str>,
) -> QueryResult<Vec<PersonalTokenRow>> {
    let mut q = personal_tokens::table
        .filter(personal_tokens::user_id.eq(user_id))
        .filter(personal_tokens::revoked_at.is_null())
        .order(personal_tokens::created_at.desc())
        .then_order_by(personal_tokens::id.desc())
        .select(PersonalTokenRow::as_select())
        .into_boxed();
    if let Some(ws) = workspace {
        q = q.filter(personal_tokens::workspace.eq(ws.to_owned()));
    }
    q.load(conn)
}

/// Revokes a token of this user (and workspace, when given); false if there is none.
pub fn revoke_token(
    conn: &mut DbConn,
    id: &str,
    user_id: &str,
    workspace: Option<&str>,
    now: i64,
) -> QueryResult<bool> {
    let target = personal_tokens::table
        .filter(personal_tokens::id.eq(id))
        .filter(personal_tokens::user_id.eq(user_id))
        .filter(personal_tokens::revoked_at.is_null());
    let n = match workspace {
        Some(ws) => diesel::update(target.filter(personal_tokens::workspace.eq(ws)))
            .set(personal_tokens::revoked_at.eq(now))
            .execute(conn)?,
        None => diesel::update(target)
            .set(personal_tokens::revoked_at.eq(now))
            .execute(conn)?,
    };
    if n == 1 {
        revoke_descendants(conn, vec![id.to_owned()], now)?;
    }
    Ok(n == 1)
}

/// Revokes a token and every token minted from it, however deep; returns how many were live.
pub fn revoke_token_tree(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<usize> {
    let n = diesel::update(
        personal_tokens::table
            .find(id)
            .filter(personal_tokens::revoked_at.is_null()),
    )
    .set(personal_tokens::revoked_at.eq(now))
    .execute(conn)?;
    Ok(n + revoke_descendants(conn, vec![id.to_owned()], now)?)
}

/// The tokens minted from `makers`, then theirs, level by level.
fn revoke_descendants(conn: &mut DbConn, mut makers: Vec<String>, now: i64) -> QueryResult<usize> {
    let mut n = 0;
    while !makers.is_empty() {
        let children: Vec<String> = personal_tokens::table
            .filter(personal_tokens::parent_id.eq_any(&makers))
            .filter(personal_tokens::revoked_at.is_null())
            .select(personal_tokens::id)
            .load(conn)?;
        n += diesel::update(personal_tokens::table.filter(personal_tokens::id.eq_any(&children)))
            .set(personal_tokens::revoked_at.eq(now))
            .execute(conn)?;
        makers = children;
    }
    Ok(n)
}

/// Revokes every token of a user (the user was disabled).
pub fn revoke_user_tokens(conn: &mut DbConn, user_id: &str, now: i64) -> QueryResult<usize> {
    diesel::update(
        personal_tokens::table
            .filter(personal_tokens::user_id.eq(user_id))
            .filter(personal_tokens::revoked_at.is_null()),
    )
    .set(personal_tokens::revoked_at.eq(now))
    .execute(conn)
}

pub fn touch_token(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<()> {
    diesel::update(personal_tokens::table.find(id))
        .set(personal_tokens::last_used_at.eq(now))
        .execute(conn)
        .map(drop)
}

pub fn touch_api_key(conn: &mut DbConn, hash: &str, now: i64) -> QueryResult<()> {
    diesel::update(api_keys::table.find(hash))
        .set(api_keys::last_used_at.eq(now))
        .execute(conn)
        .map(drop)
}

/// The agents a user claimed (or that act for them), newest first.
pub fn user_registrations(conn: &mut DbConn, user_id: &str) -> QueryResult<Vec<RegistrationRow>> {
    agent_registrations::table
        .filter(agent_registrations::user_id.eq(user_id))
        .filter(agent_registrations::status.eq(super::status::RegistrationStatus::Claimed))
        .order(agent_registrations::created_at.desc())
        .select(RegistrationRow::as_select())
        .load(conn)
}

pub fn registration_keys(conn: &mut DbConn, registration_id: &str) -> QueryResult<Vec<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::registration_id.eq(registration_id))
        .filter(api_keys::revoked_at.is_null())
        .select(ApiKeyRow::as_select())
        .load(conn)
}

/// `(client_id, client name, scope, granted_at)` of every app the user consented to.
pub fn user_consents(
    conn: &mut DbConn,
    user_id: &str,
) -> QueryResult<Vec<(String, String, String, i64)>> {
    consents::table
        .inner_join(clients::table.on(clients::id.eq(consents::client_id)))
        .filter(consents::user_id.eq(user_id))
        .order(consents::granted_at.desc())
        .select((
            consents::client_id,
            clients::name,
            consents::scope,
            consents::granted_at,
        ))
        .load(conn)
}

pub fn delete_consent(conn: &mut DbConn, user_id: &str, client_id: &str) -> QueryResult<usize> {
    diesel::delete(consents::table.find((user_id, client_id))).execute(conn)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys)]
#[diesel(treat_none_as_default_value = false)]
pub struct IdempotencyRow {
    pub key_hash: String,
    pub request_hash: String,
    pub status: Option<i32>,
    pub content_type: Option<String>,
    pub sealed_body: Option<Vec<u8>>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Reserves a key; false if a row already holds it (read it with [`find_idempotency`]).
pub fn reserve_idempotency(conn: &mut DbConn, row: &IdempotencyRow) -> QueryResult<bool> {
    use diesel::result::{DatabaseErrorKind, Error};
    match diesel::insert_into(idempotency_keys::table)
        .values(row)
        .execute(conn)
    {
        Ok(_) => Ok(true),
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn find_idempotency(conn: &mut DbConn, key_hash: &str) -> QueryResult<Option<IdempotencyRow>> {
    idempotency_keys::table
        .find(key_hash)
        .select(IdempotencyRow::as_select())
        .first(conn)
        .optional()
}

pub fn complete_idempotency(
    conn: &mut DbConn,
    key_hash: &str,
    status: i32,
    content_type: &str,
    sealed: &[u8],
) -> QueryResult<()> {
    diesel::update(idempotency_keys::table.find(key_hash))
        .set((
            idempotency_keys::status.eq(status),
            idempotency_keys::content_type.eq(content_type),
            idempotency_keys::sealed_body.eq(sealed),
        ))
        .execute(conn)
        .map(drop)
}

pub fn release_idempotency(conn: &mut DbConn, key_hash: &str) -> QueryResult<()> {
    diesel::delete(idempotency_keys::table.find(key_hash))
        .execute(conn)
        .map(drop)
}

pub fn purge_idempotency(conn: &mut DbConn, now: i64) -> QueryResult<usize> {
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::expires_at.le(now)))
        .execute(conn)
}

pub fn delete_user_consents(conn: &mut DbConn, user_id: &str) -> QueryResult<usize> {
    diesel::delete(consents::table.filter(consents::user_id.eq(user_id))).execute(conn)
}
