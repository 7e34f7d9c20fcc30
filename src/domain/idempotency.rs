//! `Idempotency-Key` on write endpoints: a retry with the same key and the same request gets
//! the first answer byte for byte and changes nothing; the same key with another request is
//! `422 idempotency_key_reused`. Answers are stored encrypted under a key derived from the
//! Idempotency-Key (only a hash of it is stored), kept 24 hours, and shared by every instance.
//!
//! A stored answer belongs to its caller: records are looked up under the caller's principal
//! (a user however they authenticate; a bearer credential's subject and client; the admin), so
//! another caller's same key is a fresh request, never a replay of someone else's secrets.
//! A request with no principal (anonymous registration, open client registration) shares the
//! anonymous space with everyone else, so there the key itself must be unguessable.

use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::accounts::IdempotencyRow;
use crate::db::{self, DbConn};
use crate::domain::credentials::{self, Kind, RecordUse};
use crate::domain::keys::KeyRing;
use crate::domain::secrets::{constant_time_eq, open, seal, sha256_hex, HashedToken};
use crate::domain::users;
use crate::error::{AppError, AppResult, ErrorCode};

pub const KEY_TTL_S: i64 = 24 * 3600;
/// Shortest key accepted without a principal: 22 base64url characters are 128 bits.
pub const MIN_ANONYMOUS_KEY_LEN: usize = 22;
const CONTEXT: &str = "idempotency v1";

/// A request's identity under a key: which endpoint, which key, and what was asked.
pub struct Fingerprint {
    key: String,
    lookup: String,
    request: String,
}

impl Fingerprint {
    /// `scope` names the endpoint (method and path), `principal` the caller (`None`:
    /// anonymous); `request` is what makes two requests the same (the body).
    pub fn new(scope: &str, principal: Option<&str>, key: &str, request: &[u8]) -> Self {
        let mut material = scope.as_bytes().to_vec();
        material.push(0);
        material.extend_from_slice(request);
        let principal = principal.unwrap_or("anonymous");
        Self {
            key: key.to_owned(),
            lookup: HashedToken::of(&format!("{scope}\0{principal}\0{key}"))
                .as_str()
                .to_owned(),
            request: sha256_hex(&material),
        }
    }
}

/// A stored answer to replay.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

pub enum Begin {
    /// First time: run the request, then [`finish`] (or [`abandon`]).
    Proceed,
    Replay(Stored),
}

/// Visible ASCII, at most 255 characters; without a principal, at least
/// [`MIN_ANONYMOUS_KEY_LEN`].
pub fn check_key(key: &str, principal: Option<&str>) -> AppResult<()> {
    if !((1..=255).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b))) {
        return Err(AppError::protocol(
            ErrorCode::InvalidRequest,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    if principal.is_none() && key.len() < MIN_ANONYMOUS_KEY_LEN {
        return Err(AppError::protocol(
            ErrorCode::InvalidRequest,
            format!(
                "an unauthenticated request's Idempotency-Key must be unguessable: at least {MIN_ANONYMOUS_KEY_LEN} random characters"
            ),
        ));
    }
    Ok(())
}

/// What a write request presented to say who it is.
#[derive(Debug, Default)]
pub struct Presented {
    /// The whole `Authorization` header.
    pub authorization: Option<String>,
    pub bearer: Option<String>,
    pub bearer_is_admin: bool,
    pub session: Option<String>,
}

/// The caller's principal for idempotency records: `user:ID` for a person (session or personal
/// token), `sub:…/client:…` for other live bearer credentials, `admin`, or, for credentials
/// that do not resolve (an initial access token, Basic credentials), a hash of the header, so
/// only the same header finds the record. `None`: anonymous.
pub fn principal(
    conn: &mut DbConn,
    config: &Config,
    keys: &KeyRing,
    now: UnixTime,
    p: &Presented,
) -> AppResult<Option<String>> {
    if p.bearer_is_admin {
        return Ok(Some("admin".to_owned()));
    }
    if let Some(token) = &p.bearer {
        if let Some(presented) = credentials::recognise(config, keys, token) {
            if let Some(live) = credentials::resolve(conn, config, now, &presented, RecordUse::Yes)?
            {
                return Ok(Some(match (presented.kind, &live.user_id) {
                    (Kind::PersonalToken, Some(user)) => format!("user:{user}"),
                    _ => format!(
                        "sub:{}\0client:{}",
                        live.sub,
                        live.client_id.as_deref().unwrap_or_default()
                    ),
                }));
            }
        }
    }
    if let Some(header) = &p.authorization {
        return Ok(Some(format!("authz:{}", sha256_hex(header.as_bytes()))));
    }
    if let Some(cookie) = &p.session {
        if let Some(user) = users::session_user(conn, now, cookie)? {
            return Ok(Some(format!("user:{}", user.id)));
        }
    }
    Ok(None)
}

pub fn begin(conn: &mut DbConn, now: UnixTime, f: &Fingerprint) -> AppResult<Begin> {
    let row = IdempotencyRow {
        key_hash: f.lookup.clone(),
        request_hash: f.request.clone(),
        status: None,
        content_type: None,
        sealed_body: None,
        created_at: now,
        expires_at: now + KEY_TTL_S,
    };
    for _ in 0..2 {
        if db::accounts::reserve_idempotency(conn, &row)? {
            return Ok(Begin::Proceed);
        }
        let Some(existing) = db::accounts::find_idempotency(conn, &f.lookup)? else {
            continue;
        };
        if existing.expires_at <= now {
            db::accounts::release_idempotency(conn, &f.lookup)?;
            continue;
        }
        if !constant_time_eq(existing.request_hash.as_bytes(), f.request.as_bytes()) {
            return Err(AppError::protocol(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request",
            ));
        }
        return match (existing.status, existing.sealed_body) {
            (Some(status), Some(sealed)) => {
                let body = open(&f.key, CONTEXT, &sealed)
                    .ok_or_else(|| AppError::internal("stored answer does not open"))?;
                Ok(Begin::Replay(Stored {
                    status: status as u16,
                    content_type: existing
                        .content_type
                        .unwrap_or_else(|| "application/json".to_owned()),
                    body,
                }))
            }
            _ => Err(AppError::protocol(
                ErrorCode::IdempotencyKeyInUse,
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )),
        };
    }
    Err(AppError::Conflict)
}

pub fn finish(conn: &mut DbConn, f: &Fingerprint, answer: &Stored) -> AppResult<()> {
    let sealed = seal(&f.key, CONTEXT, &answer.body);
    db::accounts::complete_idempotency(
        conn,
        &f.lookup,
        i32::from(answer.status),
        &answer.content_type,
        &sealed,
    )?;
    Ok(())
}

/// The request failed in a way a retry may fix (5xx, 429): forget the key.
pub fn abandon(conn: &mut DbConn, f: &Fingerprint) -> AppResult<()> {
    db::accounts::release_idempotency(conn, &f.lookup)?;
    Ok(())
}

pub fn purge(conn: &mut DbConn, now: UnixTime) -> AppResult<usize> {
    Ok(db::accounts::purge_idempotency(conn, now)?)
}
