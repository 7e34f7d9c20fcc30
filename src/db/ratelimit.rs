//! Rate-limit windows: one row per bucket and fixed window, shared by every instance.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::schema::rate_limit_windows;
use super::DbConn;

/// Adds one hit to `bucket`'s window and returns the hits of that window and the previous one.
/// The upsert is backend-specific SQL, kept in this one match.
pub fn hit(
    conn: &mut DbConn,
    bucket: &str,
    window_start: i64,
    previous_start: i64,
) -> QueryResult<(i64, i64)> {
    let upsert = "INSERT INTO rate_limit_windows (bucket, window_start, hits) VALUES ($1, $2, 1) \
                  ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_windows.hits + 1";
    match conn {
        DbConn::Sqlite(c) => diesel::sql_query(upsert.replace('$', "?"))
            .bind::<Text, _>(bucket)
            .bind::<BigInt, _>(window_start)
            .execute(c)?,
        DbConn::Pg(c) => diesel::sql_query(upsert)
            .bind::<Text, _>(bucket)
            .bind::<BigInt, _>(window_start)
            .execute(c)?,
    };
    peek(conn, bucket, window_start, previous_start)
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
