//! Rate-limit windows: one row per bucket and fixed window, shared by every instance.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};

use super::schema::rate_limit_windows;
use super::DbConn;

/// A bucket's current fixed window and the one before it, to read together with another row
/// (the client's failure window with the client).
#[derive(Debug, Clone)]
pub struct WindowKey {
    pub bucket: String,
    pub current: i64,
    pub previous: i64,
}

#[derive(QueryableByName)]
struct Hits {
    #[diesel(sql_type = Integer)]
    hits: i32,
    #[diesel(sql_type = Nullable<Integer>)]
    previous: Option<i32>,
}

/// Adds one hit to the key's current window and returns the hits of that window and the
/// previous one. One statement (atomic alone): a hot bucket's row is locked for that statement
/// and its commit only, where an upsert, a read and a commit held it for three round trips.
pub fn hit(conn: &mut DbConn, key: &WindowKey) -> QueryResult<(i64, i64)> {
    let upsert = "INSERT INTO rate_limit_windows (bucket, window_start, hits) VALUES ($1, $2, 1) \
                  ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_windows.hits + 1 \
                  RETURNING hits, (SELECT p.hits FROM rate_limit_windows p \
                  WHERE p.bucket = $1 AND p.window_start = $3) AS previous";
    let row: Hits = match conn {
        // SQLite numbers its parameters the same way with `?NNN`.
        DbConn::Sqlite(c) => diesel::sql_query(upsert.replace('$', "?"))
            .bind::<Text, _>(&key.bucket)
            .bind::<BigInt, _>(key.current)
            .bind::<BigInt, _>(key.previous)
            .get_result(c)?,
        DbConn::Pg(c) => diesel::sql_query(upsert)
            .bind::<Text, _>(&key.bucket)
            .bind::<BigInt, _>(key.current)
            .bind::<BigInt, _>(key.previous)
            .get_result(c)?,
    };
    Ok((i64::from(row.hits), i64::from(row.previous.unwrap_or(0))))
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
