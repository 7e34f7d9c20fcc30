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
/// whole batch ([`IssueArrays`]), atomic without `BEGIN`/`COMMIT`; SQLite: one-row inserts in a
/// transaction.
///
/// Inside the SQLite writer's batch (a transaction already open) there is no savepoint: a
/// failed insert is a database error, which fails and rolls back the whole batch (`Db::write`),
/// so a token is never committed without its audit row either way. The savepoint cost every
/// token a `SAVEPOINT` and a `RELEASE` parsed anew and a copy of each page it changed in the
/// statement journal, on the writer every issuance waits for.
pub fn insert_issues(conn: &mut DbConn, issues: &[&Issue]) -> QueryResult<()> {
    match conn {
        DbConn::Pg(c) => IssueArrays::of(issues).execute(c).map(drop),
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

/// PostgreSQL: a batch of issues as one statement of fixed text, each column bound as one array:
/// `WITH first AS (INSERT INTO access_tokens (…) SELECT * FROM unnest($1, …, $13)) INSERT INTO
/// audit_events (…) SELECT * FROM unnest($14, …, $22)`. A multi-row `VALUES` list has a text
/// for every row count, so diesel cannot keep it prepared and PostgreSQL parsed and planned it
/// for every batch; this text is prepared once per connection, and its plan (rows from
/// `unnest` into a table) is the same whatever the tables hold, so the plan PostgreSQL keeps
/// for it cannot go stale as they grow. The data-modifying `WITH` runs exactly once whether or
/// not the outer insert reads it, and the whole is one statement: atomic, one round trip.
/// The column names are the schema's (`Column::NAME`), in the order the arrays are bound.
struct IssueArrays<'a> {
    id: Vec<&'a str>,
    grant_id: Vec<Option<&'a str>>,
    registration_id: Vec<Option<&'a str>>,
    client_id: Vec<Option<&'a str>>,
    subject: Vec<&'a str>,
    user_id: Vec<Option<&'a str>>,
    scope: Vec<&'a str>,
    audience: Vec<&'a str>,
    prefix: Vec<&'a str>,
    format: Vec<&'static str>,
    issued_at: Vec<i64>,
    expires_at: Vec<i64>,
    revoked_at: Vec<Option<i64>>,
    event: Vec<&'static str>,
    created_at: Vec<i64>,
    actor: Vec<Option<&'a str>>,
    ip: Vec<Option<&'a str>>,
    audit_registration_id: Vec<Option<&'a str>>,
    audit_client_id: Vec<Option<&'a str>>,
    audit_user_id: Vec<Option<&'a str>>,
    detail: Vec<&'a str>,
    request_id: Vec<Option<&'a str>>,
}

impl<'a> IssueArrays<'a> {
    fn of(issues: &[&'a Issue]) -> Self {
        let tokens = || issues.iter().map(|i| &i.token);
        let audits = || issues.iter().map(|i| &i.audit);
        Self {
            id: tokens().map(|t| t.id.as_str()).collect(),
            grant_id: tokens().map(|t| t.grant_id.as_deref()).collect(),
            registration_id: tokens().map(|t| t.registration_id.as_deref()).collect(),
            client_id: tokens().map(|t| t.client_id.as_deref()).collect(),
            subject: tokens().map(|t| t.subject.as_str()).collect(),
            user_id: tokens().map(|t| t.user_id.as_deref()).collect(),
            scope: tokens().map(|t| t.scope.as_str()).collect(),
            audience: tokens().map(|t| t.audience.as_str()).collect(),
            prefix: tokens().map(|t| t.prefix.as_str()).collect(),
            format: tokens().map(|t| t.format.as_str()).collect(),
            issued_at: tokens().map(|t| t.issued_at).collect(),
            expires_at: tokens().map(|t| t.expires_at).collect(),
            revoked_at: tokens().map(|t| t.revoked_at).collect(),
            event: audits().map(|a| a.event).collect(),
            created_at: audits().map(|a| a.created_at).collect(),
            actor: audits().map(|a| a.actor.as_deref()).collect(),
            ip: audits().map(|a| a.ip.as_deref()).collect(),
            audit_registration_id: audits().map(|a| a.registration_id.as_deref()).collect(),
            audit_client_id: audits().map(|a| a.client_id.as_deref()).collect(),
            audit_user_id: audits().map(|a| a.user_id.as_deref()).collect(),
            detail: audits().map(|a| a.detail.as_str()).collect(),
            request_id: audits().map(|a| a.request_id.as_deref()).collect(),
        }
    }
}

impl diesel::query_builder::QueryId for IssueArrays<'_> {
    type QueryId = IssueArrays<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for IssueArrays<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Nullable, Text};
        use diesel::Column;
        /// `name (col, …) SELECT * FROM unnest(` for the columns of `$table`.
        macro_rules! insert_unnest {
            ($table:ident: $($column:ident),+) => {{
                out.push_sql("INSERT INTO ");
                out.push_identifier(stringify!($table))?;
                out.push_sql(" (");
                let mut first = true;
                $(
                    if !std::mem::take(&mut first) {
                        out.push_sql(", ");
                    }
                    out.push_identifier($table::$column::NAME)?;
                )+
                out.push_sql(") SELECT * FROM unnest(");
            }};
        }
        /// The arrays, comma-separated, then `)`.
        macro_rules! arrays {
            ($($ty:ty => $values:expr),+) => {{
                let mut first = true;
                $(
                    if !std::mem::take(&mut first) {
                        out.push_sql(", ");
                    }
                    out.push_bind_param::<Array<$ty>, _>($values)?;
                )+
                out.push_sql(")");
            }};
        }
        out.push_sql("WITH first AS (");
        insert_unnest!(access_tokens: id, grant_id, registration_id, client_id, subject, user_id,
            scope, audience, prefix, format, issued_at, expires_at, revoked_at);
        arrays!(
            Text => &self.id,
            Nullable<Text> => &self.grant_id,
            Nullable<Text> => &self.registration_id,
            Nullable<Text> => &self.client_id,
            Text => &self.subject,
            Nullable<Text> => &self.user_id,
            Text => &self.scope,
            Text => &self.audience,
            Text => &self.prefix,
            Text => &self.format,
            BigInt => &self.issued_at,
            BigInt => &self.expires_at,
            Nullable<BigInt> => &self.revoked_at
        );
        out.push_sql(") ");
        insert_unnest!(audit_events: event, created_at, actor, ip, registration_id, client_id,
            user_id, detail, request_id);
        arrays!(
            Text => &self.event,
            BigInt => &self.created_at,
            Nullable<Text> => &self.actor,
            Nullable<Text> => &self.ip,
            Nullable<Text> => &self.audit_registration_id,
            Nullable<Text> => &self.audit_client_id,
            Nullable<Text> => &self.audit_user_id,
            Text => &self.detail,
            Nullable<Text> => &self.request_id
        );
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for IssueArrays<'_> {}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::db::audit::AuditRow;
    use crate::db::{Db, TestPg};

    /// Three issues between them setting and leaving out every optional column.
    fn three_issues() -> Vec<Issue> {
        let mut full = AccessTokenRow::of_client("t-full", "c1");
        full.grant_id = Some("g1".to_owned());
        full.registration_id = Some("r1".to_owned());
        full.user_id = Some("u1".to_owned());
        full.format = TokenFormat::Jwt;
        full.revoked_at = Some(full.issued_at + 5);
        let mut bare = AccessTokenRow::of_client("t-bare", "c2");
        bare.client_id = None;
        bare.scope = String::new();
        let audit = |detail: &str, full: bool| NewAuditRow {
            event: "token.issued",
            created_at: 1_700_000_000,
            actor: full.then(|| "client:c1".to_owned()),
            ip: full.then(|| "127.0.0.1".to_owned()),
            registration_id: full.then(|| "r1".to_owned()),
            client_id: full.then(|| "c1".to_owned()),
            user_id: full.then(|| "u1".to_owned()),
            detail: detail.to_owned(),
            request_id: full.then(|| "req-1".to_owned()),
        };
        vec![
            Issue {
                token: full,
                audit: audit(r#"{"n":1}"#, true),
            },
            Issue {
                token: bare,
                audit: audit(r#"{"n":2}"#, false),
            },
            Issue {
                token: AccessTokenRow::of_client("t-third", "c1"),
                audit: audit(r#"{"n":3}"#, true),
            },
        ]
    }

    /// An audit row's columns but its id, whichever way it is held.
    type AuditColumns = (String, i64, [Option<String>; 5], String, Option<String>);

    fn audit_rows(conn: &mut DbConn) -> Vec<AuditColumns> {
        let mut rows: Vec<AuditColumns> = audit_events::table
            .select(AuditRow::as_select())
            .load(conn)
            .unwrap()
            .into_iter()
            .map(|a| {
                let optional = [a.actor, a.ip, a.registration_id, a.client_id, a.user_id];
                (a.event, a.created_at, optional, a.detail, a.request_id)
            })
            .collect();
        rows.sort();
        rows
    }

    /// Every column of every issue is stored as given, on both backends; a batch that fails
    /// stores nothing of itself.
    fn stores_every_column_all_or_nothing(db: &Db) {
        let mut conn = db.get().unwrap();
        let issues = three_issues();
        let refs: Vec<&Issue> = issues.iter().collect();
        insert_issues(&mut conn, &refs).unwrap();
        for issue in &issues {
            let stored = find_access_token(&mut conn, &issue.token.id)
                .unwrap()
                .expect("stored");
            assert_eq!(format!("{stored:?}"), format!("{:?}", issue.token));
        }
        let mut want: Vec<AuditColumns> = issues
            .iter()
            .map(|i| {
                let a = i.audit.clone();
                let optional = [a.actor, a.ip, a.registration_id, a.client_id, a.user_id];
                (
                    a.event.to_owned(),
                    a.created_at,
                    optional,
                    a.detail,
                    a.request_id,
                )
            })
            .collect();
        want.sort();
        assert_eq!(audit_rows(&mut conn), want);

        // A new token and one whose id is taken: the batch fails, the new token and both audit
        // rows are not written.
        let mut again = three_issues();
        again[0].token.id = "t-new".to_owned();
        let refs: Vec<&Issue> = again.iter().take(2).collect();
        assert!(insert_issues(&mut conn, &refs).is_err());
        assert!(find_access_token(&mut conn, "t-new").unwrap().is_none());
        assert_eq!(audit_rows(&mut conn), want);
    }

    #[test]
    fn sqlite_issue_batches_store_every_column_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.database.url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&config).unwrap();
        db.migrate().unwrap();
        stores_every_column_all_or_nothing(&db);
    }

    /// PostgreSQL's one statement of arrays ([`IssueArrays`]).
    #[test]
    fn postgres_issue_batches_store_every_column_all_or_nothing() {
        let Some(pg) = TestPg::new("issue_arrays") else {
            return;
        };
        stores_every_column_all_or_nothing(&pg.db());
    }
}
