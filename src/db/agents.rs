//! Agent registrations, API keys, claim attempts, delegations and the jti replay store.

use diesel::prelude::*;

use super::schema::{
    access_tokens, agent_registrations, api_keys, claim_attempts, delegations, grants,
    refresh_tokens, seen_jtis,
};
use super::status::{
    AttemptStatus, Ceremony, CredentialType, Protocol, RegistrationStatus, RegistrationType,
};
use super::{native, DbConn};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = agent_registrations)]
#[diesel(treat_none_as_default_value = false)]
pub struct RegistrationRow {
    pub id: String,
    pub registration_type: RegistrationType,
    pub status: RegistrationStatus,
    pub requested_credential_type: CredentialType,
    pub principal_id: String,
    pub scopes: String,
    pub claim_token_hash: Option<String>,
    pub claim_token_expires: i64,
    pub email: Option<String>,
    pub user_id: Option<String>,
    pub link: Option<bool>,
    pub provider_iss: Option<String>,
    pub provider_sub: Option<String>,
    pub created_at: i64,
    pub claimed_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub protocol: Protocol,
    pub claim_polled_at: Option<i64>,
    pub claim_poll_interval: Option<i64>,
    /// When the credentials stop working unless the registration is claimed first.
    pub credentials_expire_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
#[diesel(treat_none_as_default_value = false)]
pub struct ApiKeyRow {
    pub key_hash: String,
    pub registration_id: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = claim_attempts)]
#[diesel(treat_none_as_default_value = false)]
pub struct AttemptRow {
    pub id: String,
    pub registration_id: String,
    pub email: String,
    pub link: bool,
    pub view_token_hash: String,
    pub status: AttemptStatus,
    pub otp_hash: Option<String>,
    pub otp_expires_at: Option<i64>,
    pub failed_attempts: i32,
    pub created_at: i64,
    pub expires_at: i64,
    pub ceremony: Ceremony,
}

pub fn insert_registration(conn: &mut DbConn, row: &RegistrationRow) -> QueryResult<()> {
    native!(conn, |c| diesel::insert_into(agent_registrations::table)
        .values(row)
        .execute(c)
        .map(drop))
}

pub fn find_registration(conn: &mut DbConn, id: &str) -> QueryResult<Option<RegistrationRow>> {
    native!(conn, |c| agent_registrations::table
        .find(id)
        .select(RegistrationRow::as_select())
        .first(c)
        .optional())
}

pub fn find_by_claim_token(conn: &mut DbConn, hash: &str) -> QueryResult<Option<RegistrationRow>> {
    agent_registrations::table
        .filter(agent_registrations::claim_token_hash.eq(hash))
        .select(RegistrationRow::as_select())
        .first(conn)
        .optional()
}

/// Marks a registration claimed (or bound) by `user_id` with its new scopes.
pub fn set_claimed(
    conn: &mut DbConn,
    id: &str,
    user_id: &str,
    link: bool,
    scopes: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::update(agent_registrations::table.find(id))
        .set((
            agent_registrations::status.eq(RegistrationStatus::Claimed),
            agent_registrations::user_id.eq(user_id),
            agent_registrations::link.eq(link),
            agent_registrations::scopes.eq(scopes),
            agent_registrations::claimed_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
}

pub fn set_status(conn: &mut DbConn, id: &str, status: RegistrationStatus) -> QueryResult<()> {
    diesel::update(agent_registrations::table.find(id))
        .set(agent_registrations::status.eq(status))
        .execute(conn)
        .map(drop)
}

/// Unclaimed registrations whose credentials have died (`credentials_expire_at`); once closed,
/// a claim cannot bring them back.
pub fn expired_unclaimed(conn: &mut DbConn, now: i64) -> QueryResult<Vec<RegistrationRow>> {
    agent_registrations::table
        .filter(
            agent_registrations::status
                .eq_any([RegistrationStatus::Active, RegistrationStatus::Pending]),
        )
        .filter(agent_registrations::claimed_at.is_null())
        .filter(agent_registrations::credentials_expire_at.le(now))
        .select(RegistrationRow::as_select())
        .load(conn)
}

pub fn by_provider_subject(
    conn: &mut DbConn,
    iss: &str,
    sub: &str,
) -> QueryResult<Vec<RegistrationRow>> {
    agent_registrations::table
        .filter(agent_registrations::provider_iss.eq(iss))
        .filter(agent_registrations::provider_sub.eq(sub))
        .select(RegistrationRow::as_select())
        .load(conn)
}

/// Revokes a registration and every credential issued for it.
pub fn revoke_registration(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<bool> {
    let n = diesel::update(
        agent_registrations::table
            .find(id)
            .filter(agent_registrations::status.ne(RegistrationStatus::Revoked)),
    )
    .set((
        agent_registrations::status.eq(RegistrationStatus::Revoked),
        agent_registrations::revoked_at.eq(now),
    ))
    .execute(conn)?;
    revoke_registration_credentials(conn, id, now)?;
    Ok(n == 1)
}

/// Revokes every credential issued for a registration (API keys, access tokens, grants and
/// their refresh tokens), leaving the registration itself as it is.
pub fn revoke_registration_credentials(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<()> {
    diesel::update(
        api_keys::table
            .filter(api_keys::registration_id.eq(id))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(now))
    .execute(conn)?;
    diesel::update(
        access_tokens::table
            .filter(access_tokens::registration_id.eq(id))
            .filter(access_tokens::revoked_at.is_null()),
    )
    .set(access_tokens::revoked_at.eq(now))
    .execute(conn)?;
    let grant_ids: Vec<String> = grants::table
        .filter(grants::registration_id.eq(id))
        .select(grants::id)
        .load(conn)?;
    diesel::update(
        grants::table
            .filter(grants::registration_id.eq(id))
            .filter(grants::revoked_at.is_null()),
    )
    .set(grants::revoked_at.eq(now))
    .execute(conn)?;
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::grant_id.eq_any(&grant_ids))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now))
    .execute(conn)?;
    Ok(())
}

/// After a claim, the registration's live tokens speak for the new subject with the new scopes.
pub fn retarget_tokens(
    conn: &mut DbConn,
    registration_id: &str,
    subject: &str,
    user_id: &str,
    scopes: &str,
) -> QueryResult<()> {
    diesel::update(access_tokens::table.filter(access_tokens::registration_id.eq(registration_id)))
        .set((
            access_tokens::subject.eq(subject),
            access_tokens::user_id.eq(user_id),
            access_tokens::scope.eq(scopes),
        ))
        .execute(conn)?;
    diesel::update(grants::table.filter(grants::registration_id.eq(registration_id)))
        .set((
            grants::subject.eq(subject),
            grants::user_id.eq(user_id),
            grants::scope.eq(scopes),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn insert_api_key(conn: &mut DbConn, row: &ApiKeyRow) -> QueryResult<()> {
    native!(conn, |c| diesel::insert_into(api_keys::table)
        .values(row)
        .execute(c)
        .map(drop))
}

pub fn find_api_key(conn: &mut DbConn, hash: &str) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .find(hash)
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()
}

pub fn revoke_api_key(conn: &mut DbConn, hash: &str, now: i64) -> QueryResult<bool> {
    let n = diesel::update(
        api_keys::table
            .find(hash)
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn insert_attempt(conn: &mut DbConn, row: &AttemptRow) -> QueryResult<()> {
    diesel::insert_into(claim_attempts::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

pub fn find_attempt_by_view_token(
    conn: &mut DbConn,
    hash: &str,
) -> QueryResult<Option<AttemptRow>> {
    claim_attempts::table
        .filter(claim_attempts::view_token_hash.eq(hash))
        .select(AttemptRow::as_select())
        .first(conn)
        .optional()
}

/// The registration's current attempt: opening one supersedes every other, so at most one
/// is not superseded (timestamps alone cannot order two attempts made in the same second).
pub fn latest_attempt(conn: &mut DbConn, registration_id: &str) -> QueryResult<Option<AttemptRow>> {
    claim_attempts::table
        .filter(claim_attempts::registration_id.eq(registration_id))
        .filter(claim_attempts::status.ne(AttemptStatus::Superseded))
        .order(claim_attempts::created_at.desc())
        .then_order_by(claim_attempts::id.desc())
        .select(AttemptRow::as_select())
        .first(conn)
        .optional()
}

pub fn supersede_open_attempts(conn: &mut DbConn, registration_id: &str) -> QueryResult<()> {
    diesel::update(
        claim_attempts::table
            .filter(claim_attempts::registration_id.eq(registration_id))
            .filter(claim_attempts::status.ne(AttemptStatus::Completed)),
    )
    .set(claim_attempts::status.eq(AttemptStatus::Superseded))
    .execute(conn)
    .map(drop)
}

pub fn set_attempt_otp(
    conn: &mut DbConn,
    id: &str,
    otp_hash: &str,
    expires_at: i64,
) -> QueryResult<()> {
    diesel::update(claim_attempts::table.find(id))
        .set((
            claim_attempts::otp_hash.eq(otp_hash),
            claim_attempts::otp_expires_at.eq(expires_at),
            claim_attempts::failed_attempts.eq(0),
        ))
        .execute(conn)
        .map(drop)
}

pub fn set_attempt_status(conn: &mut DbConn, id: &str, status: AttemptStatus) -> QueryResult<()> {
    diesel::update(claim_attempts::table.find(id))
        .set(claim_attempts::status.eq(status))
        .execute(conn)
        .map(drop)
}

pub fn count_failed_attempt(conn: &mut DbConn, id: &str) -> QueryResult<i32> {
    diesel::update(claim_attempts::table.find(id))
        .set(claim_attempts::failed_attempts.eq(claim_attempts::failed_attempts + 1))
        .execute(conn)?;
    claim_attempts::table
        .find(id)
        .select(claim_attempts::failed_attempts)
        .first(conn)
}

/// Records a jti; false if it was seen before (the primary key refuses it).
pub fn record_jti(
    conn: &mut DbConn,
    issuer: &str,
    jti: &str,
    expires_at: i64,
) -> QueryResult<bool> {
    use diesel::result::{DatabaseErrorKind, Error};
    let result = native!(conn, |c| diesel::insert_into(seen_jtis::table)
        .values((
            seen_jtis::issuer.eq(issuer),
            seen_jtis::jti.eq(jti),
            seen_jtis::expires_at.eq(expires_at),
        ))
        .execute(c));
    match result {
        Ok(_) => Ok(true),
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a jti was recorded (an assertion already used, or revoked).
pub fn jti_seen(conn: &mut DbConn, issuer: &str, jti: &str) -> QueryResult<bool> {
    native!(conn, |c| diesel::select(diesel::dsl::exists(
        seen_jtis::table
            .filter(seen_jtis::issuer.eq(issuer))
            .filter(seen_jtis::jti.eq(jti)),
    ))
    .get_result(c))
}

/// Forgets a registration's claim token: nobody can claim it with that token any more.
pub fn clear_claim_token(conn: &mut DbConn, hash: &str) -> QueryResult<bool> {
    let n = diesel::update(
        agent_registrations::table.filter(agent_registrations::claim_token_hash.eq(hash)),
    )
    .set(agent_registrations::claim_token_hash.eq(None::<String>))
    .execute(conn)?;
    Ok(n == 1)
}

/// Cancels the claim attempt an emailed link names, unless it already ended.
pub fn cancel_attempt_by_view_token(conn: &mut DbConn, hash: &str) -> QueryResult<bool> {
    let n = diesel::update(
        claim_attempts::table
            .filter(claim_attempts::view_token_hash.eq(hash))
            .filter(claim_attempts::status.ne(AttemptStatus::Completed))
            .filter(claim_attempts::status.ne(AttemptStatus::Cancelled)),
    )
    .set(claim_attempts::status.eq(AttemptStatus::Cancelled))
    .execute(conn)?;
    Ok(n == 1)
}

/// Forgets jtis that could no longer be replayed anyway (their token has expired).
pub fn purge_jtis(conn: &mut DbConn, now: i64) -> QueryResult<usize> {
    diesel::delete(seen_jtis::table.filter(seen_jtis::expires_at.lt(now))).execute(conn)
}

pub fn find_delegation(
    conn: &mut DbConn,
    issuer: &str,
    subject: &str,
) -> QueryResult<Option<String>> {
    delegations::table
        .find((issuer, subject))
        .select(delegations::user_id)
        .first(conn)
        .optional()
}

pub fn insert_delegation(
    conn: &mut DbConn,
    issuer: &str,
    subject: &str,
    user_id: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::insert_into(delegations::table)
        .values((
            delegations::issuer.eq(issuer),
            delegations::subject.eq(subject),
            delegations::user_id.eq(user_id),
            delegations::created_at.eq(now),
        ))
        .execute(conn)
        .map(drop)
}

/// Records a claim-grant poll and the interval the next one must keep.
pub fn set_claim_polled(conn: &mut DbConn, id: &str, now: i64, interval: i64) -> QueryResult<()> {
    diesel::update(agent_registrations::table.find(id))
        .set((
            agent_registrations::claim_polled_at.eq(now),
            agent_registrations::claim_poll_interval.eq(interval),
        ))
        .execute(conn)
        .map(drop)
}

/// Notes the provider identity an anonymous registration is being claimed with (an ID-JAG
/// that needs the person's confirmation), so the confirmation can bind it.
pub fn set_provider_subject(conn: &mut DbConn, id: &str, iss: &str, sub: &str) -> QueryResult<()> {
    diesel::update(agent_registrations::table.find(id))
        .set((
            agent_registrations::provider_iss.eq(iss),
            agent_registrations::provider_sub.eq(sub),
        ))
        .execute(conn)
        .map(drop)
}

/// Whether `user_id` has delegated to any identity of provider `issuer` before.
pub fn issuer_linked(conn: &mut DbConn, issuer: &str, user_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        delegations::table
            .filter(delegations::issuer.eq(issuer))
            .filter(delegations::user_id.eq(user_id)),
    ))
    .get_result(conn)
}

/// Whether `user_id` owns a claimed registration other than `except`.
pub fn has_other_claimed(conn: &mut DbConn, user_id: &str, except: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        agent_registrations::table
            .filter(agent_registrations::user_id.eq(user_id))
            .filter(agent_registrations::claimed_at.is_not_null())
            .filter(agent_registrations::id.ne(except)),
    ))
    .get_result(conn)
}
