//! RFC 8628 device authorization grant: a device without a usable browser (a CLI on a remote
//! box, a headless agent) shows a short user code; a person signs in on the `/device` page,
//! enters it and approves; the device polls the token endpoint meanwhile.
//!
//! - The device code is a 256-bit `dc_…` secret; the user code eight letters from a 20-letter
//!   alphabet without vowels (RFC 8628 §6.1: no words, nothing to confuse), shown `XXXX-XXXX`.
//!   Both are stored as SHA-256 only (the user code in its normal form).
//! - Guessing user codes needs an account and is limited per IP with the one-time-code window
//!   (`rate_limit.otp_*`): 20⁸ codes against a few attempts a minute.
//! - Polling faster than the interval answers `slow_down` and adds 5 seconds to it (§3.5); the
//!   poll is recorded even when the answer is an error, so the rule holds across polls.
//! - The person sees the client's name and the scopes on a confirmation step before approving
//!   (§5.4: remote phishing relies on people approving codes they did not start).

use serde::Serialize;
use serde_json::json;

use super::grants::{narrow_scopes, resolve_resource};
use crate::db::status::{DeviceStatus, GrantKind};
use crate::db::{self, device::DeviceRow, write_tx, DbConn};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::clients::{self, Client};
use crate::domain::context::Ctx;
use crate::domain::credentials::TokenResponse;
use crate::domain::discovery::{paths, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN};
use crate::domain::secrets::{prefix, time_ordered_id, HashedToken, PlainToken};
use crate::error::{AppError, AppResult, ErrorCode, ProtocolError};

/// RFC 8628 §6.1's example alphabet: consonants only, so no code spells a word.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;
/// What each `slow_down` adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP_S: i64 = 5;

/// RFC 8628 §3.2 device authorization response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceAuthorization {
    pub device_code: String,
    /// `XXXX-XXXX`; case and the dash do not matter when typed.
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

fn random_user_code() -> String {
    let bytes = crate::domain::secrets::random_bytes();
    let letters: String = bytes
        .iter()
        .take(USER_CODE_LEN)
        // 256 is not a multiple of 20: the first 240 values map evenly, the rest are skipped
        // by drawing from the remaining bytes.
        .chain(bytes.iter().skip(USER_CODE_LEN))
        .filter(|b| **b < 240)
        .take(USER_CODE_LEN)
        .map(|b| USER_CODE_ALPHABET[usize::from(*b) % USER_CODE_ALPHABET.len()] as char)
        .collect();
    if letters.len() == USER_CODE_LEN {
        letters
    } else {
        random_user_code()
    }
}

/// A typed user code in its normal form (upper case, no dash or spaces), if it can be one.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

fn shown(code: &str) -> String {
    format!("{}-{}", &code[..4], &code[4..])
}

fn disabled() -> AppError {
    AppError::protocol(
        ErrorCode::UnsupportedGrantType,
        "the device authorization grant is not enabled on this server",
    )
}

/// How many user codes a device authorization draws before it gives up. 20^8 codes make a
/// clash with a live request rare but not impossible (a load test of a few hundred thousand
/// requests met some), and a clash is the server's bad luck, not the client's error: it draws
/// again. Four clashes in a row mean the code space is nearly full, and the answer is 503.
const USER_CODE_DRAWS: usize = 4;

/// `POST /oauth2/device` for an authenticated client (or a public one naming itself).
pub fn authorize(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    scope: Option<&str>,
    resource: Option<&str>,
) -> AppResult<DeviceAuthorization> {
    authorize_drawing(conn, ctx, client, scope, resource, random_user_code)
}

/// [`authorize`] with the user codes drawn by `draw` (tests make them clash).
fn authorize_drawing(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    scope: Option<&str>,
    resource: Option<&str>,
    mut draw: impl FnMut() -> String,
) -> AppResult<DeviceAuthorization> {
    let config = ctx.config;
    if !config.oauth.device.enabled {
        return Err(disabled());
    }
    if !client.allows_grant(GRANT_DEVICE_CODE) {
        return Err(AppError::protocol(
            ErrorCode::UnauthorizedClient,
            "client may not use the device authorization grant",
        ));
    }
    let scopes = narrow_scopes(scope, &client.scopes())?;
    let resource = resolve_resource(config, resource)?;
    let device_code = PlainToken::generate(prefix::DEVICE_CODE);
    let mut row = DeviceRow {
        device_code_hash: device_code.hash().as_str().to_owned(),
        user_code_hash: String::new(),
        client_id: client.client_id.clone(),
        scope: scopes.to_string(),
        resource,
        created_at: ctx.now,
        expires_at: ctx.now + config.oauth.device.code_ttl_s,
        poll_interval: config.oauth.device.interval_s,
        last_polled_at: None,
        status: DeviceStatus::Pending,
        user_id: None,
        auth_time: None,
        grant_id: None,
    };
    let mut user_code = None;
    for _ in 0..USER_CODE_DRAWS {
        let code = draw();
        row.user_code_hash = HashedToken::of(&code).as_str().to_owned();
        if db::device::insert(conn, &row)? {
            user_code = Some(code);
            break;
        }
    }
    let user_code = user_code.ok_or_else(|| {
        AppError::Protocol(
            ProtocolError::new(
                ErrorCode::ServiceUnavailable,
                "no free user code was found; retry shortly",
            )
            .with_retry_after(1),
        )
    })?;
    let page = format!("{}{}", config.server.issuer, paths::DEVICE_PAGE);
    Ok(DeviceAuthorization {
        device_code: device_code.expose().to_owned(),
        verification_uri_complete: format!("{page}?user_code={}", shown(&user_code)),
        verification_uri: page,
        user_code: shown(&user_code),
        expires_in: config.oauth.device.code_ttl_s,
        interval: config.oauth.device.interval_s,
    })
}

/// What the `/device` page shows before the person decides.
#[derive(Debug, Clone)]
pub struct PendingDevice {
    pub user_code: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    pub resource: String,
}

fn unknown_code() -> AppError {
    AppError::protocol(
        ErrorCode::InvalidRequest,
        "that code is not valid or has expired; check the code your device shows",
    )
}

/// The pending request a typed user code names.
pub fn pending(conn: &mut DbConn, ctx: &Ctx<'_>, typed: &str) -> AppResult<(DeviceRow, Client)> {
    let code = normalize_user_code(typed).ok_or_else(unknown_code)?;
    let row = db::device::find_by_user_code(conn, HashedToken::of(&code).as_str())?
        .filter(|r| r.status == DeviceStatus::Pending && r.expires_at > ctx.now)
        .ok_or_else(unknown_code)?;
    let client = clients::find(conn, &row.client_id)?.ok_or_else(unknown_code)?;
    Ok((row, client))
}

/// The confirmation step: who is asking, for what.
pub fn describe(conn: &mut DbConn, ctx: &Ctx<'_>, typed: &str) -> AppResult<PendingDevice> {
    let (row, client) = pending(conn, ctx, typed)?;
    let code = normalize_user_code(typed).unwrap_or_default();
    Ok(PendingDevice {
        user_code: shown(&code),
        client_name: client.client_name,
        scopes: crate::domain::scope::list(&row.scope),
        resource: row.resource,
    })
}

/// The person's answer on the `/device` page.
pub fn decide(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    user_id: &str,
    auth_time: i64,
    typed: &str,
    allow: bool,
) -> AppResult<()> {
    write_tx(conn, |conn| {
        let (row, client) = pending(conn, ctx, typed)?;
        let status = if allow {
            DeviceStatus::Approved
        } else {
            DeviceStatus::Denied
        };
        if !db::device::decide(conn, &row.device_code_hash, status, user_id, auth_time)? {
            return Err(unknown_code());
        }
        ctx.record(
            conn,
            AuditEvent::DeviceDecided,
            AuditEntry {
                client_id: Some(&client.client_id),
                user_id: Some(user_id),
                detail: Some(json!({ "approved": allow, "scope": row.scope })),
                ..Default::default()
            },
        )
    })
}

fn device_error(code: ErrorCode, msg: &'static str) -> AppError {
    AppError::protocol(code, msg)
}

/// `grant_type=urn:ietf:params:oauth:grant-type:device_code`: one poll.
pub fn poll(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    device_code: &str,
) -> AppResult<TokenResponse> {
    if !ctx.config.oauth.device.enabled {
        return Err(disabled());
    }
    if !client.allows_grant(GRANT_DEVICE_CODE) {
        return Err(AppError::protocol(
            ErrorCode::UnauthorizedClient,
            "client may not use the device authorization grant",
        ));
    }
    let hash = HashedToken::of(device_code);
    // The poll is recorded even when the answer is an error, so the error is a value inside a
    // committed transaction.
    let outcome = write_tx(conn, |conn| -> AppResult<AppResult<TokenResponse>> {
        let Some(row) = db::device::find(conn, hash.as_str())? else {
            return Ok(Err(super::grants::invalid_grant("device_code is invalid")));
        };
        if row.client_id != client.client_id {
            return Ok(Err(super::grants::invalid_grant(
                "device_code was issued to another client",
            )));
        }
        if row.status == DeviceStatus::Used {
            return Ok(Err(super::grants::invalid_grant(
                "device_code was already used",
            )));
        }
        if row.expires_at <= ctx.now {
            return Ok(Err(device_error(
                ErrorCode::ExpiredToken,
                "the device code has expired; start again",
            )));
        }
        let too_soon = row
            .last_polled_at
            .is_some_and(|t| ctx.now - t < row.poll_interval);
        let interval = if too_soon {
            row.poll_interval + SLOW_DOWN_STEP_S
        } else {
            row.poll_interval
        };
        db::device::polled(conn, &row.device_code_hash, ctx.now, interval)?;
        if too_soon {
            return Ok(Err(device_error(
                ErrorCode::SlowDown,
                "polling too fast; wait 5 seconds longer between polls",
            )));
        }
        match row.status {
            DeviceStatus::Pending => Ok(Err(device_error(
                ErrorCode::AuthorizationPending,
                "the person has not answered yet",
            ))),
            DeviceStatus::Denied => Ok(Err(device_error(
                ErrorCode::DeviceAccessDenied,
                "the person denied the request",
            ))),
            DeviceStatus::Used => Ok(Err(super::grants::invalid_grant(
                "device_code was already used",
            ))),
            DeviceStatus::Approved => issue(conn, ctx, client, &row).map(Ok),
        }
    })?;
    outcome
}

fn issue(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    row: &DeviceRow,
) -> AppResult<TokenResponse> {
    let user_id = row.user_id.clone().unwrap_or_default();
    // A person disabled since approving gets nothing.
    if db::users::find(conn, &user_id)?.is_none_or(|u| u.disabled_at.is_some()) {
        return Err(super::grants::invalid_grant(
            "the approving account is disabled",
        ));
    }
    let grant_id = time_ordered_id("gr_", ctx.now);
    if !db::device::mark_used(conn, &row.device_code_hash, &grant_id)? {
        return Err(super::grants::invalid_grant("device_code was already used"));
    }
    super::grants::issue_person_grant(
        conn,
        ctx,
        super::grants::PersonGrant {
            id: grant_id,
            client,
            user_id: &user_id,
            scope: &row.scope,
            resource: &row.resource,
            kind: GrantKind::DeviceCode,
            refresh: client.allows_grant(GRANT_REFRESH_TOKEN),
            provider: None,
            detail: json!({ "scope": row.scope }),
        },
    )
}

/// Drops requests that ended more than a day ago (nothing can use them; the day keeps a
/// late poll's answer `expired_token` rather than `invalid_grant` for a while).
pub fn purge(conn: &mut DbConn, now: i64) -> AppResult<usize> {
    Ok(db::device::purge(conn, now - 86_400)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clients::{self, NewClient};
    use crate::domain::scope::Scopes;
    use crate::domain::testing::Fixture;

    fn device_client(fx: &Fixture) -> Client {
        let new = NewClient {
            name: "device".into(),
            redirect_uris: Vec::new(),
            grant_types: vec![GRANT_DEVICE_CODE.into()],
            scope: Some("api.read".into()),
            token_endpoint_auth_method: "client_secret_basic".into(),
            application_type: "web".into(),
            can_introspect: false,
            registration_token: false,
            metadata: serde_json::json!({}),
        };
        let scopes = Scopes::parse("api.read").unwrap();
        clients::create(&mut fx.conn(), 1_000, &fx.audit, new, &scopes)
            .unwrap()
            .client
    }

    #[test]
    fn a_user_code_held_by_another_request_is_drawn_again() {
        let fx = Fixture::new();
        let client = device_client(&fx);
        let ctx = fx.ctx(1_000);
        let mut draws = ["BCDFGHJK", "BCDFGHJK", "BCDFGHJK", "LMNPQRST"]
            .into_iter()
            .map(str::to_owned);
        let mut conn = fx.conn();
        let first = authorize_drawing(&mut conn, &ctx, &client, None, None, || {
            draws.next().unwrap()
        })
        .unwrap();
        let second = authorize_drawing(&mut conn, &ctx, &client, None, None, || {
            draws.next().unwrap()
        })
        .unwrap();
        assert_eq!(first.user_code, "BCDF-GHJK");
        assert_eq!(second.user_code, "LMNP-QRST");
        assert_eq!(
            draws.next(),
            None,
            "the clashing code was drawn twice, then a free one"
        );
        // Each user code leads to its own request.
        for (shown_code, device_code) in [
            (&first.user_code, &first.device_code),
            (&second.user_code, &second.device_code),
        ] {
            let code = normalize_user_code(shown_code).unwrap();
            let row = db::device::find_by_user_code(&mut conn, HashedToken::of(&code).as_str())
                .unwrap()
                .unwrap();
            assert_eq!(row.device_code_hash, HashedToken::of(device_code).as_str());
        }
    }

    #[test]
    fn when_every_draw_clashes_the_answer_is_retry_later_and_nothing_is_stored() {
        let fx = Fixture::new();
        let client = device_client(&fx);
        let ctx = fx.ctx(1_000);
        let mut conn = fx.conn();
        authorize_drawing(&mut conn, &ctx, &client, None, None, || "BCDFGHJK".into()).unwrap();
        let err = authorize_drawing(&mut conn, &ctx, &client, None, None, || "BCDFGHJK".into())
            .unwrap_err();
        let AppError::Protocol(p) = err else {
            panic!("expected a protocol error, got {err:?}");
        };
        assert_eq!(p.code, ErrorCode::ServiceUnavailable);
        assert_eq!(p.retry_after, Some(1));
        let stored = db::device::purge(&mut conn, i64::MAX).unwrap();
        assert_eq!(stored, 1, "only the first request was stored");
    }

    #[test]
    fn user_codes_are_eight_consonants_and_typing_is_forgiving() {
        for _ in 0..200 {
            let code = random_user_code();
            assert_eq!(code.len(), 8);
            assert!(
                code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)),
                "{code}"
            );
            assert_eq!(normalize_user_code(&shown(&code)), Some(code.clone()));
            assert_eq!(
                normalize_user_code(&shown(&code).to_lowercase()),
                Some(code.clone())
            );
        }
        assert_eq!(normalize_user_code("BCDF GHJK"), Some("BCDFGHJK".into()));
        assert_eq!(
            normalize_user_code("ABCD-EFGH"),
            None,
            "vowels never appear"
        );
        assert_eq!(normalize_user_code("BCDF"), None);
    }
}
