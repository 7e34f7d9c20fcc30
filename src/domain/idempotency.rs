//! `Idempotency-Key` on write endpoints: a retry with the same key and the same request gets
//! the first answer byte for byte and changes nothing; the same key with another request is
//! `422 idempotency_key_reused`. Answers are stored encrypted under a key derived from the
//! Idempotency-Key (only a hash of it is stored), kept 24 hours, and shared by every instance.

use crate::clock::UnixTime;
use crate::db::accounts::IdempotencyRow;
use crate::db::{self, DbConn};
use crate::domain::secrets::{constant_time_eq, open, seal, sha256_hex, HashedToken};
use crate::error::{AppError, AppResult, ErrorCode};

pub const KEY_TTL_S: i64 = 24 * 3600;
const CONTEXT: &str = "idempotency v1";

/// A request's identity under a key: which endpoint, which key, and what was asked.
pub struct Fingerprint {
    key: String,
    lookup: String,
    request: String,
}

impl Fingerprint {
    /// `scope` names the endpoint (method and path); `request` is everything that makes two
    /// requests the same (caller and body).
    pub fn new(scope: &str, key: &str, request: &[u8]) -> Self {
        let mut material = scope.as_bytes().to_vec();
        material.push(0);
        material.extend_from_slice(request);
        Self {
            key: key.to_owned(),
            lookup: HashedToken::of(&format!("{scope}\0{key}"))
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

pub fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
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
