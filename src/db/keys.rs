//! Signing-key rows.

use diesel::prelude::*;

use super::schema::signing_keys;
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
#[diesel(treat_none_as_default_value = false)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub private_key: Vec<u8>,
    pub public_jwk: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

pub fn insert(conn: &mut DbConn, row: &SigningKeyRow) -> QueryResult<()> {
    diesel::insert_into(signing_keys::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

/// Every key: the active one first, then by retirement, newest first.
pub fn all(conn: &mut DbConn) -> QueryResult<Vec<SigningKeyRow>> {
    signing_keys::table
        .order((
            signing_keys::retired_at.is_null().desc(),
            signing_keys::retired_at.desc(),
            signing_keys::created_at.desc(),
        ))
        .select(SigningKeyRow::as_select())
        .load(conn)
}

/// Keys still signing (normally one), newest first.
pub fn active(conn: &mut DbConn) -> QueryResult<Vec<SigningKeyRow>> {
    signing_keys::table
        .filter(signing_keys::retired_at.is_null())
        .order(signing_keys::created_at.desc())
        .select(SigningKeyRow::as_select())
        .load(conn)
}

/// Keys that are active or were retired after `since` (and so may still verify something).
pub fn published(conn: &mut DbConn, since: i64) -> QueryResult<Vec<SigningKeyRow>> {
    signing_keys::table
        .filter(
            signing_keys::retired_at
                .is_null()
                .or(signing_keys::retired_at.gt(since)),
        )
        .order((
            signing_keys::retired_at.is_null().desc(),
            signing_keys::retired_at.desc(),
            signing_keys::created_at.desc(),
        ))
        .select(SigningKeyRow::as_select())
        .load(conn)
}

pub fn retire_active(conn: &mut DbConn, now: i64) -> QueryResult<usize> {
    diesel::update(signing_keys::table.filter(signing_keys::retired_at.is_null()))
        .set(signing_keys::retired_at.eq(now))
        .execute(conn)
}

/// The named server secret, created (by whichever instance comes first) if there is none.
pub fn server_secret(
    conn: &mut DbConn,
    name: &str,
    fresh: &[u8],
    now: i64,
) -> QueryResult<Vec<u8>> {
    use super::schema::server_secrets;
    let existing: Option<Vec<u8>> = server_secrets::table
        .find(name)
        .select(server_secrets::secret)
        .first(conn)
        .optional()?;
    if let Some(secret) = existing {
        return Ok(secret);
    }
    let row = (
        server_secrets::name.eq(name),
        server_secrets::secret.eq(fresh),
        server_secrets::created_at.eq(now),
    );
    // Two instances starting together: the second insert does nothing and reads the first's.
    match conn {
        DbConn::Sqlite(c) => diesel::insert_into(server_secrets::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c)?,
        DbConn::Pg(c) => diesel::insert_into(server_secrets::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c)?,
    };
    server_secrets::table
        .find(name)
        .select(server_secrets::secret)
        .first(conn)
}
