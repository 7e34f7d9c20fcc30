//! Client rows.

use super::native;
use diesel::prelude::*;

use super::ratelimit::WindowKey;
use super::schema::{clients, rate_limit_windows};
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = clients)]
#[diesel(treat_none_as_default_value = false)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub secret_prefix: Option<String>,
    pub is_public: bool,
    pub redirect_uris: String,
    pub grant_types: String,
    pub scope: String,
    pub can_introspect: bool,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    pub registration_token_hash: Option<String>,
    pub metadata: String,
    pub created_at: i64,
}

pub fn insert(conn: &mut DbConn, row: &ClientRow) -> QueryResult<()> {
    diesel::insert_into(clients::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<ClientRow>> {
    native!(conn, |c| clients::table
        .find(id)
        .select(ClientRow::as_select())
        .first(c)
        .optional())
}

/// The client's row and the hits of `window` (current, previous): on PostgreSQL one round trip
/// for both when the client exists. Without a window, the hits are zero.
pub fn find_with_window(
    conn: &mut DbConn,
    id: &str,
    window: Option<&WindowKey>,
) -> QueryResult<(Option<ClientRow>, (i64, i64))> {
    let Some(w) = window else {
        return Ok((find(conn, id)?, (0, 0)));
    };
    let hits = |start: i64| {
        rate_limit_windows::table
            .filter(rate_limit_windows::bucket.eq(w.bucket.clone()))
            .filter(rate_limit_windows::window_start.eq(start))
            .select(rate_limit_windows::hits)
            .single_value()
    };
    let found: Option<(ClientRow, Option<i32>, Option<i32>)> = native!(conn, |c| clients::table
        .find(id)
        .select((ClientRow::as_select(), hits(w.current), hits(w.previous)))
        .first(c)
        .optional())?;
    match found {
        Some((row, current, previous)) => Ok((
            Some(row),
            (
                i64::from(current.unwrap_or(0)),
                i64::from(previous.unwrap_or(0)),
            ),
        )),
        // No such client: its window is still read, so an unknown client is limited alike.
        None => Ok((
            None,
            super::ratelimit::peek(conn, &w.bucket, w.current, w.previous)?,
        )),
    }
}

pub fn all(conn: &mut DbConn) -> QueryResult<Vec<ClientRow>> {
    clients::table
        .order(clients::created_at.asc())
        .select(ClientRow::as_select())
        .load(conn)
}

pub fn delete(conn: &mut DbConn, id: &str) -> QueryResult<usize> {
    diesel::delete(clients::table.find(id)).execute(conn)
}

pub fn find_by_registration_token(conn: &mut DbConn, hash: &str) -> QueryResult<Option<ClientRow>> {
    clients::table
        .filter(clients::registration_token_hash.eq(hash))
        .select(ClientRow::as_select())
        .first(conn)
        .optional()
}

/// Forgets a registration access token: the client can no longer be managed with it.
pub fn clear_registration_token(conn: &mut DbConn, hash: &str) -> QueryResult<bool> {
    let n = diesel::update(clients::table.filter(clients::registration_token_hash.eq(hash)))
        .set(clients::registration_token_hash.eq(None::<String>))
        .execute(conn)?;
    Ok(n == 1)
}

/// Stores a client learned from its Client ID Metadata Document, or refreshes what the
/// document says (name, redirect URIs, grants, scope, metadata) when it is already known. One
/// statement, so two instances learning the same client at once cannot collide.
pub fn upsert_document_client(conn: &mut DbConn, row: &ClientRow) -> QueryResult<()> {
    native!(conn, |c| diesel::insert_into(clients::table)
        .values(row)
        .on_conflict(clients::id)
        .do_update()
        .set((
            clients::name.eq(&row.name),
            clients::redirect_uris.eq(&row.redirect_uris),
            clients::grant_types.eq(&row.grant_types),
            clients::scope.eq(&row.scope),
            clients::metadata.eq(&row.metadata),
        ))
        .execute(c)
        .map(drop))
}
