//! User rows and browser sessions.

use diesel::prelude::*;

use super::schema::{sessions, users};
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
#[diesel(treat_none_as_default_value = false)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub email_verified: bool,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

pub fn insert(conn: &mut DbConn, row: &UserRow) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

pub fn find_by_email(conn: &mut DbConn, email: &str) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::email.eq(email))
        .select(UserRow::as_select())
        .first(conn)
        .optional()
}

pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
#[diesel(treat_none_as_default_value = false)]
pub struct SessionRow {
    pub id_hash: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn insert_session(conn: &mut DbConn, row: &SessionRow) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

pub fn find_session(conn: &mut DbConn, id_hash: &str) -> QueryResult<Option<SessionRow>> {
    sessions::table
        .find(id_hash)
        .select(SessionRow::as_select())
        .first(conn)
        .optional()
}

pub fn delete_session(conn: &mut DbConn, id_hash: &str) -> QueryResult<usize> {
    diesel::delete(sessions::table.find(id_hash)).execute(conn)
}

pub fn set_disabled(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set(users::disabled_at.eq(now))
        .execute(conn)
        .map(drop)
}

pub fn delete_user_sessions(conn: &mut DbConn, user_id: &str) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
}

/// A pending `email_verified` sign-up: the link's hash, the address and the password's hash.
pub fn insert_signup_link(
    conn: &mut DbConn,
    token_hash: &str,
    email: &str,
    password_hash: &str,
    now: i64,
    expires_at: i64,
) -> QueryResult<()> {
    use super::schema::signup_links as s;
    diesel::insert_into(s::table)
        .values((
            s::token_hash.eq(token_hash),
            s::email.eq(email),
            s::password_hash.eq(password_hash),
            s::created_at.eq(now),
            s::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .map(drop)
}

/// Removes a sign-up link and returns `(email, password hash, expires_at)`: a link works once.
pub fn take_signup_link(
    conn: &mut DbConn,
    token_hash: &str,
) -> QueryResult<Option<(String, String, i64)>> {
    use super::schema::signup_links as s;
    let row = s::table
        .find(token_hash)
        .select((s::email, s::password_hash, s::expires_at))
        .first(conn)
        .optional()?;
    diesel::delete(s::table.find(token_hash)).execute(conn)?;
    Ok(row)
}

pub fn purge_signup_links(conn: &mut DbConn, now: i64) -> QueryResult<usize> {
    use super::schema::signup_links as s;
    diesel::delete(s::table.filter(s::expires_at.le(now))).execute(conn)
}
