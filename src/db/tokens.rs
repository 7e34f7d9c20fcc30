//! Grants, access tokens and refresh tokens.

use super::native;
use diesel::prelude::*;

use super::audit::NewAuditRow;
use super::schema::{access_tokens, audit_events, grants, refresh_tokens};
use super::status::{GrantKind, TokenFormat};
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = grants)]
#[diesel(treat_none_as_default_value = false)]
pub struct GrantRow {
    pub id: String,
    pub client_id: Option<String>,
    pub registration_id: Option<String>,
    pub user_id: Option<String>,
    pub subject: String,
    pub scope: String,
    pub resource: String,
    pub kind: GrantKind,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The provider identity `(iss, sub)` of an ID-JAG exchange: its logout revokes the grant.
    pub provider_iss: Option<String>,
    pub provider_sub: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = access_tokens)]
#[diesel(treat_none_as_default_value = false)]
pub struct AccessTokenRow {
    pub id: String,
    pub grant_id: Option<String>,
    pub registration_id: Option<String>,
    pub client_id: Option<String>,
    pub subject: String,
    pub user_id: Option<String>,
    pub scope: String,
    pub audience: String,
    pub prefix: String,
    pub format: TokenFormat,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

#[cfg(test)]
impl AccessTokenRow {
    /// A live client_credentials token of `client_id`, for the storage tests.
    pub fn of_client(id: &str, client_id: &str) -> Self {
        Self {
            id: id.to_owned(),
            grant_id: None,
            registration_id: None,
            client_id: Some(client_id.to_owned()),
            subject: client_id.to_owned(),
            user_id: None,
            scope: "read".to_owned(),
            audience: "https://api.example".to_owned(),
            prefix: id.chars().take(8).collect(),
            format: TokenFormat::Opaque,
            issued_at: 1,
            expires_at: 2,
            revoked_at: None,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
#[diesel(treat_none_as_default_value = false)]
pub struct RefreshTokenRow {
    pub token_hash: String,
    pub grant_id: String,
    pub prefix: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub successor_sealed: Option<Vec<u8>>,
    pub revoked_at: Option<i64>,
}

pub fn insert_grant(conn: &mut DbConn, row: &GrantRow) -> QueryResult<()> {
    native!(conn, |c| diesel::insert_into(grants::table)
        .values(row)
        .execute(c)
        .map(drop))
}

pub fn find_grant(conn: &mut DbConn, id: &str) -> QueryResult<Option<GrantRow>> {
    native!(conn, |c| grants::table
        .find(id)
        .select(GrantRow::as_select())
        .first(c)
        .optional())
}

/// Revokes a grant and everything issued under it; returns whether the grant was live.
pub fn revoke_grant(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<bool> {
    Ok(revoke_grant_ids(conn, &[id.to_owned()], now)? == 1)
}

/// Revokes grants and every token issued under them; returns how many were live.
fn revoke_grant_ids(conn: &mut DbConn, ids: &[String], now: i64) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let n = diesel::update(
        grants::table
            .filter(grants::id.eq_any(ids))
            .filter(grants::revoked_at.is_null()),
    )
    .set(grants::revoked_at.eq(now))
    .execute(conn)?;
    // Access tokens carry their own revoked_at so introspection stays one row read.
    diesel::update(
        access_tokens::table
            .filter(access_tokens::grant_id.eq_any(ids))
            .filter(access_tokens::revoked_at.is_null()),
    )
    .set(access_tokens::revoked_at.eq(now))
    .execute(conn)?;
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::grant_id.eq_any(ids))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now))
    .execute(conn)?;
    Ok(n)
}

pub fn insert_access_token(conn: &mut DbConn, row: &AccessTokenRow) -> QueryResult<()> {
    native!(conn, |c| diesel::insert_into(access_tokens::table)
        .values(row)
        .execute(c)
        .map(drop))
}

/// An access token and the audit row of its issue: what [`insert_issues`] writes.
#[derive(Debug, Clone)]
pub struct Issue {
    pub token: AccessTokenRow,
    pub audit: NewAuditRow,
}

/// Inserts each issue's token and audit row, all or none. PostgreSQL: one statement for the
/// whole batch (`WITH first AS (INSERT … tokens) INSERT … audit rows`), atomic without
/// `BEGIN`/`COMMIT`; SQLite: one-row inserts in a transaction.
///
/// Inside the SQLite writer's batch (a transaction already open) there is no savepoint: a
/// failed insert is a database error, which fails and rolls back the whole batch (`Db::write`),
/// so a token is never committed without its audit row either way. The savepoint cost every
/// token a `SAVEPOINT` and a `RELEASE` parsed anew and a copy of each page it changed in the
/// statement journal, on the writer every issuance waits for.
pub fn insert_issues(conn: &mut DbConn, issues: &[&Issue]) -> QueryResult<()> {
    match conn {
        DbConn::Pg(c) => super::Together(
            diesel::insert_into(access_tokens::table)
                .values(issues.iter().map(|i| &i.token).collect::<Vec<_>>()),
            diesel::insert_into(audit_events::table)
                .values(issues.iter().map(|i| &i.audit).collect::<Vec<_>>()),
        )
        .execute(c)
        .map(drop),
        DbConn::Sqlite(c) => {
            // Row by row: a one-row insert's statement is prepared once per connection (its
            // type names it), where a multi-row insert of a varying count is parsed anew.
            let inserts = |c: &mut diesel::SqliteConnection| {
                for issue in issues {
                    diesel::insert_into(access_tokens::table)
                        .values(&issue.token)
                        .execute(c)?;
                    diesel::insert_into(audit_events::table)
                        .values(&issue.audit)
                        .execute(c)?;
                }
                Ok(())
            };
            if super::transaction_depth(c)? > 0 {
                inserts(c)
            } else {
                c.transaction(inserts)
            }
        }
    }
}

/// A batch of [`Issue`]s inserted by [`insert_issues`] (`super::batch`); each is answered `()`.
pub struct IssueInserts;

impl super::batch::Batch for IssueInserts {
    const KIND: &'static str = "token_inserts";
    type Key = Issue;
    type Rows = ();
    fn run(conn: &mut DbConn, issues: &[&Issue]) -> QueryResult<Vec<()>> {
        insert_issues(conn, issues)?;
        Ok(vec![(); issues.len()])
    }
}

pub fn find_access_token(conn: &mut DbConn, id: &str) -> QueryResult<Option<AccessTokenRow>> {
    native!(conn, |c| access_tokens::table
        .find(id)
        .select(AccessTokenRow::as_select())
        .first(c)
        .optional())
}

pub fn revoke_access_token(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<bool> {
    let n = diesel::update(
        access_tokens::table
            .find(id)
            .filter(access_tokens::revoked_at.is_null()),
    )
    .set(access_tokens::revoked_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn insert_refresh_token(conn: &mut DbConn, row: &RefreshTokenRow) -> QueryResult<()> {
    native!(conn, |c| diesel::insert_into(refresh_tokens::table)
        .values(row)
        .execute(c)
        .map(drop))
}

pub fn find_refresh_token(conn: &mut DbConn, hash: &str) -> QueryResult<Option<RefreshTokenRow>> {
    native!(conn, |c| refresh_tokens::table
        .find(hash)
        .select(RefreshTokenRow::as_select())
        .first(c)
        .optional())
}

/// Marks a refresh token used, storing the sealed successor pair; false if it was used already.
pub fn mark_refresh_used(
    conn: &mut DbConn,
    hash: &str,
    now: i64,
    sealed: &[u8],
) -> QueryResult<bool> {
    let n = native!(conn, |c| diesel::update(
        refresh_tokens::table
            .find(hash)
            .filter(refresh_tokens::used_at.is_null()),
    )
    .set((
        refresh_tokens::used_at.eq(now),
        refresh_tokens::successor_sealed.eq(sealed),
    ))
    .execute(c))?;
    Ok(n == 1)
}

/// Revokes every grant (with its tokens) and access token of a client (before the client row
/// goes); returns how many grants were live.
pub fn revoke_client_tokens(conn: &mut DbConn, client_id: &str, now: i64) -> QueryResult<usize> {
    let ids: Vec<String> = grants::table
        .filter(grants::client_id.eq(client_id))
        .filter(grants::revoked_at.is_null())
        .select(grants::id)
        .load(conn)?;
    revoke_grant_ids(conn, &ids, now)?;
    diesel::update(
        access_tokens::table
            .filter(access_tokens::client_id.eq(client_id))
            .filter(access_tokens::revoked_at.is_null()),
    )
    .set(access_tokens::revoked_at.eq(now))
    .execute(conn)?;
    Ok(ids.len())
}

/// Revokes every grant (and its tokens) a user gave a client; returns how many.
pub fn revoke_user_client(
    conn: &mut DbConn,
    user_id: &str,
    client_id: &str,
    now: i64,
) -> QueryResult<usize> {
    let ids: Vec<String> = grants::table
        .filter(grants::user_id.eq(user_id))
        .filter(grants::client_id.eq(client_id))
        .filter(grants::revoked_at.is_null())
        .select(grants::id)
        .load(conn)?;
    revoke_grant_ids(conn, &ids, now)
}

/// Revokes every grant (and its tokens) issued for a user, and their access tokens issued
/// outside any grant; returns how many grants were live.
pub fn revoke_user_grants(conn: &mut DbConn, user_id: &str, now: i64) -> QueryResult<usize> {
    let ids: Vec<String> = grants::table
        .filter(grants::user_id.eq(user_id))
        .filter(grants::revoked_at.is_null())
        .select(grants::id)
        .load(conn)?;
    revoke_grant_ids(conn, &ids, now)?;
    diesel::update(
        access_tokens::table
            .filter(access_tokens::user_id.eq(user_id))
            .filter(access_tokens::revoked_at.is_null()),
    )
    .set(access_tokens::revoked_at.eq(now))
    .execute(conn)?;
    Ok(ids.len())
}

/// Revokes every grant (and its tokens) obtained with an ID-JAG for `(iss, sub)`.
pub fn revoke_provider_grants(
    conn: &mut DbConn,
    iss: &str,
    sub: &str,
    now: i64,
) -> QueryResult<usize> {
    let ids: Vec<String> = grants::table
        .filter(grants::provider_iss.eq(iss))
        .filter(grants::provider_sub.eq(sub))
        .filter(grants::revoked_at.is_null())
        .select(grants::id)
        .load(conn)?;
    revoke_grant_ids(conn, &ids, now)
}
