//! User rows and browser sessions.

use diesel::prelude::*;

use super::schema::{sessions, users};
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
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
