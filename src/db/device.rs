//! RFC 8628 device authorization rows.

use diesel::prelude::*;

use super::schema::device_codes;
use super::status::DeviceStatus;
use super::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = device_codes)]
#[diesel(treat_none_as_default_value = false)]
pub struct DeviceRow {
    pub device_code_hash: String,
    pub user_code_hash: String,
    pub client_id: String,
    pub scope: String,
    pub resource: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub poll_interval: i64,
    pub last_polled_at: Option<i64>,
    pub status: DeviceStatus,
    pub user_id: Option<String>,
    pub auth_time: Option<i64>,
    pub grant_id: Option<String>,
}

/// Inserts a device request; `false`, with nothing written, when a stored request already
/// holds its user code. `ON CONFLICT DO NOTHING` rather than catching the unique violation:
/// on PostgreSQL a failed statement would abort the transaction the request runs in.
pub fn insert(conn: &mut DbConn, row: &DeviceRow) -> QueryResult<bool> {
    crate::db::native!(conn, |c| diesel::insert_into(device_codes::table)
        .values(row)
        .on_conflict(device_codes::user_code_hash)
        .do_nothing()
        .execute(c))
    .map(|inserted| inserted == 1)
}

pub fn find(conn: &mut DbConn, device_code_hash: &str) -> QueryResult<Option<DeviceRow>> {
    device_codes::table
        .find(device_code_hash)
        .select(DeviceRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_user_code(
    conn: &mut DbConn,
    user_code_hash: &str,
) -> QueryResult<Option<DeviceRow>> {
    device_codes::table
        .filter(device_codes::user_code_hash.eq(user_code_hash))
        .select(DeviceRow::as_select())
        .first(conn)
        .optional()
}

/// Records a poll, and the interval from now on.
pub fn polled(conn: &mut DbConn, hash: &str, now: i64, interval: i64) -> QueryResult<()> {
    diesel::update(device_codes::table.find(hash))
        .set((
            device_codes::last_polled_at.eq(now),
            device_codes::poll_interval.eq(interval),
        ))
        .execute(conn)
        .map(drop)
}

/// A person's answer, only while the request is still pending.
pub fn decide(
    conn: &mut DbConn,
    hash: &str,
    status: DeviceStatus,
    user_id: &str,
    auth_time: i64,
) -> QueryResult<bool> {
    let n = diesel::update(
        device_codes::table
            .find(hash)
            .filter(device_codes::status.eq(DeviceStatus::Pending)),
    )
    .set((
        device_codes::status.eq(status),
        device_codes::user_id.eq(user_id),
        device_codes::auth_time.eq(auth_time),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Marks an approved request exchanged (once: a second poll finds it used).
pub fn mark_used(conn: &mut DbConn, hash: &str, grant_id: &str) -> QueryResult<bool> {
    let n = diesel::update(
        device_codes::table
            .find(hash)
            .filter(device_codes::status.eq(DeviceStatus::Approved)),
    )
    .set((
        device_codes::status.eq(DeviceStatus::Used),
        device_codes::grant_id.eq(grant_id),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Revocation by its holder (RFC 7009): the request can no longer be exchanged.
pub fn burn(conn: &mut DbConn, hash: &str) -> QueryResult<bool> {
    let n = diesel::update(
        device_codes::table
            .find(hash)
            .filter(device_codes::status.ne(DeviceStatus::Used)),
    )
    .set(device_codes::status.eq(DeviceStatus::Used))
    .execute(conn)?;
    Ok(n == 1)
}

/// Drops requests that expired before `before`.
pub fn purge(conn: &mut DbConn, before: i64) -> QueryResult<usize> {
    diesel::delete(device_codes::table.filter(device_codes::expires_at.lt(before))).execute(conn)
}
