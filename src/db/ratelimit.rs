//! Rate-limit windows: one row per bucket and fixed window, shared by every instance.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};

use super::schema::rate_limit_windows;
use super::{native, DbConn};

/// A bucket's current fixed window and the one before it, to read together with another row
/// (the client's failure window with the client).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WindowKey {
    pub bucket: String,
    pub current: i64,
    pub previous: i64,
}

/// Adds one hit to the key's current window and returns the hits of that window and the
/// previous one. One statement (atomic alone): a hot bucket's row is locked for that statement
/// and its commit only, where an upsert, a read and a commit held it for three round trips.
pub fn hit(conn: &mut DbConn, key: &WindowKey) -> QueryResult<(i64, i64)> {
    let (hits, previous): (i32, Option<i32>) = native!(conn, |c| Hit { key }.get_result(c))?;
    Ok((i64::from(hits), i64::from(previous.unwrap_or(0))))
}

/// The upsert of [`hit`] as a query type of its own. diesel prepares a statement once per
/// connection when its type names it, but parses the text of every `sql_query` (and every
/// upsert its DSL builds) again on each use: on SQLite's writer, parsing and compiling this
/// statement was a fifth of a registration's time (`bench/README.md`, tenth session).
struct Hit<'a> {
    key: &'a WindowKey,
}

impl diesel::query_builder::QueryId for Hit<'_> {
    type QueryId = Hit<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for Hit<'_> {
    type SqlType = (Integer, Nullable<Integer>);
}

impl<C> RunQueryDsl<C> for Hit<'_> {}

impl<DB> diesel::query_builder::QueryFragment<DB> for Hit<'_>
where
    DB: diesel::backend::Backend,
    String: diesel::serialize::ToSql<Text, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        out.push_sql("INSERT INTO rate_limit_windows (bucket, window_start, hits) VALUES (");
        out.push_bind_param::<Text, _>(&self.key.bucket)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.key.current)?;
        out.push_sql(
            ", 1) ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_windows.hits + 1 \
             RETURNING hits, (SELECT p.hits FROM rate_limit_windows p WHERE p.bucket = ",
        );
        out.push_bind_param::<Text, _>(&self.key.bucket)?;
        out.push_sql(" AND p.window_start = ");
        out.push_bind_param::<BigInt, _>(&self.key.previous)?;
        out.push_sql(")");
        Ok(())
    }
}

/// The hits of `bucket`'s window and the previous one, counting nothing.
pub fn peek(
    conn: &mut DbConn,
    bucket: &str,
    window_start: i64,
    previous_start: i64,
) -> QueryResult<(i64, i64)> {
    let rows: Vec<(i64, i32)> = rate_limit_windows::table
        .filter(rate_limit_windows::bucket.eq(bucket))
        .filter(rate_limit_windows::window_start.eq_any([window_start, previous_start]))
        .select((rate_limit_windows::window_start, rate_limit_windows::hits))
        .load(conn)?;
    let count = |start: i64| {
        rows.iter()
            .find(|(s, _)| *s == start)
            .map_or(0, |(_, h)| i64::from(*h))
    };
    Ok((count(window_start), count(previous_start)))
}

pub fn purge(conn: &mut DbConn, before: i64) -> QueryResult<usize> {
    diesel::delete(rate_limit_windows::table.filter(rate_limit_windows::window_start.lt(before)))
        .execute(conn)
}
