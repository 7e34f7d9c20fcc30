//! Human accounts and their browser sessions.
//!
//! Passwords are argon2id. Login costs one argon2 verification whether or not the email exists,
//! so response time does not reveal which accounts exist. Callers run these functions on the
//! blocking pool (`Db::run`), never on an actix worker.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;

use crate::clock::UnixTime;
use crate::config::RateLimitConfig;
use crate::db::{self, users::SessionRow, users::UserRow, DbConn};
use crate::domain::audit::{self, AuditContext, AuditEntry, AuditEvent};
use crate::domain::credentials;
use crate::domain::ratelimit;
use crate::domain::secrets::{random_id, HashedToken, PlainToken};
use crate::error::{AppError, AppResult, ErrorCode};

/// Browser sessions last a working day.
pub const SESSION_TTL_S: i64 = 12 * 3600;
const SESSION_PREFIX: &str = "ses_";
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub created_at: UnixTime,
    /// A disabled user cannot sign in; everything issued for them was revoked.
    pub disabled_at: Option<UnixTime>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            email_verified: row.email_verified,
            created_at: row.created_at,
            disabled_at: row.disabled_at,
        }
    }
}

/// Lower-cased and trimmed, if it is one RFC 5322 addr-spec (parsed by lettre, the crate that
/// sends the mail) with a dotted domain name: lists (`a@b.c,d@e.f`), display names, comments,
/// doubled `@` and address literals are refused.
pub fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let address: lettre::Address = email.parse().ok()?;
    let domain = address.domain();
    let dotted = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.starts_with('[');
    dotted.then_some(email)
}

pub fn hash_password(password: &str) -> AppResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::internal(format!("argon2: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of a random password with the same parameters, verified against when the email is
/// unknown so that path costs what a wrong password costs.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = PlainToken::generate("");
        hash_password(random.expose()).unwrap_or_default()
    })
}

/// A new password, checked and hashed (Argon2id: tens of milliseconds, so callers run this
/// before, never inside, a write transaction).
pub fn new_password(password: &str) -> AppResult<String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AppError::protocol(
            ErrorCode::InvalidRequest,
            format!("password must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    hash_password(password)
}

/// A new account, with a password hash from [`new_password`]. Without one the person cannot
/// sign in on the login page; an operator can still make tokens for them
/// (`POST /admin/users/{id}/tokens`, `authmd token create`).
pub fn create(
    conn: &mut DbConn,
    now: UnixTime,
    email: &str,
    password_hash: Option<String>,
) -> AppResult<User> {
    let email = normalize_email(email).ok_or_else(|| {
        AppError::protocol(ErrorCode::InvalidRequest, "email is not a valid address")
    })?;
    if db::users::find_by_email(conn, &email)?.is_some() {
        return Err(AppError::protocol(
            ErrorCode::InvalidRequest,
            "a user with this email exists",
        ));
    }
    let row = UserRow {
        id: random_id("usr_"),
        email,
        password_hash,
        email_verified: false,
        created_at: now,
        disabled_at: None,
    };
    db::users::insert(conn, &row)?;
    Ok(row.into())
}

/// The account for an address someone has just proven they control (a claim code, a
/// provider's verified email): the existing one, or a new one without a password.
pub fn find_or_create_verified(
    conn: &mut DbConn,
    now: UnixTime,
    email: String,
) -> AppResult<String> {
    if let Some(user) = db::users::find_by_email(conn, &email)? {
        return Ok(user.id);
    }
    let row = UserRow {
        id: random_id("usr_"),
        email,
        password_hash: None,
        email_verified: true,
        created_at: now,
        disabled_at: None,
    };
    db::users::insert(conn, &row)?;
    Ok(row.id)
}

/// The user for these credentials, or `None`; same cost either way.
pub fn verify_login(conn: &mut DbConn, email: &str, password: &str) -> AppResult<Option<User>> {
    let row = match normalize_email(email) {
        Some(email) => db::users::find_by_email(conn, &email)?,
        None => None,
    };
    match row {
        Some(row) => {
            let ok = row
                .password_hash
                .as_deref()
                .is_some_and(|h| verify_password(password, h));
            if row.password_hash.is_none() {
                verify_password(password, dummy_hash());
            }
            Ok(ok.then(|| row.into()))
        }
        None => {
            verify_password(password, dummy_hash());
            Ok(None)
        }
    }
}

/// One sign-in attempt: the account it names (normalised) and where it came from.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    account: String,
    email: String,
    ip: Option<String>,
}

impl LoginAttempt {
    pub fn new(email: &str, ip: Option<String>) -> Self {
        Self {
            account: normalize_email(email).unwrap_or_else(|| email.trim().to_lowercase()),
            email: email.to_owned(),
            ip,
        }
    }
}

/// What the read-only half of a sign-in found: the user whose password matched (and who is not
/// disabled), and the failure window before this attempt.
#[derive(Debug, Clone)]
pub struct CheckedLogin {
    user_id: Option<String>,
    usage: Option<ratelimit::Usage>,
}

/// The login form's first half, reads only: refused while the account or the IP has used up
/// its failed sign-ins; otherwise checks the password (argon2, the same cost for unknown
/// accounts).
pub fn check_login(
    conn: &mut DbConn,
    limits: &RateLimitConfig,
    now: UnixTime,
    attempt: &LoginAttempt,
    password: &str,
) -> AppResult<CheckedLogin> {
    let usage =
        ratelimit::login_allowed(conn, limits, now, &attempt.account, attempt.ip.as_deref())?;
    let user_id = match verify_login(conn, &attempt.email, password)? {
        Some(user) if user.disabled_at.is_none() => Some(user.id),
        _ => None,
    };
    Ok(CheckedLogin { user_id, usage })
}

/// The second half, a quick write: a session for a match; otherwise the failure is counted (a
/// success never is). Answers the session (`None`: wrong credentials) and the failure window's
/// state after this attempt, for the `RateLimit` headers.
pub fn finish_login(
    conn: &mut DbConn,
    limits: &RateLimitConfig,
    now: UnixTime,
    attempt: &LoginAttempt,
    checked: CheckedLogin,
) -> AppResult<(Option<PlainToken>, Option<ratelimit::Usage>)> {
    let mut usage = checked.usage;
    match checked.user_id {
        Some(user_id) => Ok((Some(start_session(conn, now, &user_id)?), usage)),
        None => {
            ratelimit::login_failed(conn, limits, now, &attempt.account, attempt.ip.as_deref())?;
            if let Some(u) = usage.as_mut() {
                u.remaining = u.remaining.saturating_sub(1);
            }
            Ok((None, usage))
        }
    }
}

/// Starts a browser session; the returned token is the cookie value (only its hash is stored).
pub fn start_session(conn: &mut DbConn, now: UnixTime, user_id: &str) -> AppResult<PlainToken> {
    let token = PlainToken::generate(SESSION_PREFIX);
    db::users::insert_session(
        conn,
        &SessionRow {
            id_hash: token.hash().as_str().to_owned(),
            user_id: user_id.to_owned(),
            created_at: now,
            expires_at: now + SESSION_TTL_S,
        },
    )?;
    Ok(token)
}

/// The signed-in user of a session cookie, if the session is live.
pub fn session_user(conn: &mut DbConn, now: UnixTime, cookie: &str) -> AppResult<Option<User>> {
    Ok(session(conn, now, cookie)?.map(|(user, _)| user))
}

/// The signed-in user of a session cookie and when they signed in (the session's start).
pub fn session(
    conn: &mut DbConn,
    now: UnixTime,
    cookie: &str,
) -> AppResult<Option<(User, UnixTime)>> {
    let Some(session) = db::users::find_session(conn, HashedToken::of(cookie).as_str())? else {
        return Ok(None);
    };
    if session.expires_at <= now {
        return Ok(None);
    }
    Ok(db::users::find(conn, &session.user_id)?
        .map(User::from)
        .filter(|u| u.disabled_at.is_none())
        .map(|u| (u, session.created_at)))
}

pub fn end_session(conn: &mut DbConn, cookie: &str) -> AppResult<()> {
    db::users::delete_session(conn, HashedToken::of(cookie).as_str())?;
    Ok(())
}

/// `authmd user disable ID|EMAIL`: the user can no longer sign in, their sessions end, and
/// every credential issued for them (grants, tokens, agents, personal tokens) is revoked.
pub fn disable(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    id_or_email: &str,
) -> AppResult<User> {
    let row = match db::users::find(conn, id_or_email)? {
        Some(row) => Some(row),
        None => match normalize_email(id_or_email) {
            Some(email) => db::users::find_by_email(conn, &email)?,
            None => None,
        },
    };
    let row = row.ok_or_else(|| AppError::protocol(ErrorCode::NotFound, "no such user"))?;
    db::write_tx(conn, |conn| {
        db::users::set_disabled(conn, &row.id, now)?;
        db::users::delete_user_sessions(conn, &row.id)?;
        let revoked = credentials::revoke_from(conn, now, credentials::Dying::User(&row.id))?;
        audit::record(
            conn,
            now,
            ctx,
            AuditEvent::TokenRevoked,
            AuditEntry {
                user_id: Some(&row.id),
                detail: Some(serde_json::json!({ "reason": "user disabled", "revoked": revoked })),
                ..Default::default()
            },
        )
    })?;
    let mut user = User::from(row);
    user.disabled_at = Some(now);
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").as_deref(),
            Some("ann@example.com")
        );
        assert!(normalize_email("no-at-sign").is_none());
        assert!(normalize_email("a@b").is_none());
        assert!(normalize_email("a b@c.d").is_none());
        assert!(normalize_email("two@@example.com").is_none());
        assert!(normalize_email("a@b.c,evil@x.com").is_none());
        assert!(normalize_email("Ann <ann@example.com>").is_none());
        assert!(normalize_email("ann(comment)@example.com").is_none());
        assert!(normalize_email("ann@[127.0.0.1]").is_none());
        assert_eq!(
            normalize_email("first.last+tag@sub.example.org").as_deref(),
            Some("first.last+tag@sub.example.org")
        );
    }

    #[test]
    fn argon2id_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a phc string"));
    }
}
