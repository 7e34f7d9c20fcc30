//! Sliding-window rate limits stored in the database, so every instance sharing it counts the
//! same hits. The window is estimated from two fixed windows: the previous one weighted by how
//! much of it still overlaps the sliding window, plus the current one.
//!
//! Limits must not become a way to lock others out, so:
//! - the per-IP window is counted first, and a request refused there never reaches the
//!   deployment-wide window (one address cannot spend everybody's budget);
//! - the login form counts failures only, per account and per IP (a success never counts, so
//!   an office behind one NAT can sign in), and a refusal is read, not counted;
//! - mail is counted per recipient, so nobody can mail-bomb an address through claim requests;
//! - failed client authentication at the token endpoint is counted per client and IP.

use crate::clock::UnixTime;
use crate::config::RateLimitConfig;
use crate::db::ratelimit::WindowKey;
use crate::db::{self, DbConn};
use crate::error::{AppResult, ErrorCode, ProtocolError};

/// What is being limited per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    AgentAuth,
    Claim,
    Otp,
    Register,
    /// `/api/tokens` and `/api/workspaces`: making, listing and revoking tokens.
    Tokens,
    /// The `/signup` form.
    Signup,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::AgentAuth => "agent_auth",
            Action::Claim => "claim",
            Action::Otp => "otp",
            Action::Register => "register",
            Action::Tokens => "tokens",
            Action::Signup => "signup",
        }
    }

    /// (per IP, per deployment) maxima from the configuration.
    fn limits(self, c: &RateLimitConfig) -> (u32, u32) {
        match self {
            Action::AgentAuth => (c.agent_auth_per_ip, c.agent_auth_global),
            Action::Claim => (c.claim_per_ip, c.claim_global),
            Action::Otp => (c.otp_per_ip, c.otp_global),
            Action::Register => (c.register_per_ip, c.register_global),
            Action::Tokens => (c.tokens_per_ip, c.tokens_global),
            Action::Signup => (c.signup_per_ip, c.signup_global),
        }
    }
}

/// The state of one window after a hit or a peek.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub limit: u32,
    /// Requests the window still allows.
    pub remaining: u32,
    /// Seconds until the current fixed window ends.
    pub reset_s: i64,
    pub window_s: i64,
    /// Whether the window holds more than `limit` (the request that reaches it is allowed).
    pub over: bool,
}

/// A bucket and its window: `(bucket, max, window seconds)`.
struct Bucket {
    name: String,
    max: u32,
    window: i64,
}

impl Bucket {
    fn key(&self, now: UnixTime) -> WindowKey {
        let current = now - now.rem_euclid(self.window);
        WindowKey {
            bucket: self.name.clone(),
            current,
            previous: current - self.window,
        }
    }

    /// The usage given the hits of the current and previous fixed windows.
    fn usage(&self, now: UnixTime, (current, previous): (i64, i64)) -> Usage {
        let window = self.window;
        let elapsed = now.rem_euclid(window);
        // Weighted in integers: previous * (window - elapsed) / window.
        let estimate = current + previous * (window - elapsed) / window;
        Usage {
            limit: self.max,
            remaining: (i64::from(self.max) - estimate).clamp(0, i64::from(u32::MAX)) as u32,
            reset_s: (window - elapsed).max(1),
            window_s: window,
            over: estimate > i64::from(self.max),
        }
    }
}

/// Counts one hit (or only reads, `count = false`) and says whether the window is over.
fn measure(conn: &mut DbConn, now: UnixTime, b: &Bucket, count: bool) -> AppResult<Usage> {
    let key = b.key(now);
    let hits = if count {
        db::ratelimit::hit(conn, &key)?
    } else {
        db::ratelimit::peek(conn, &key.bucket, key.current, key.previous)?
    };
    Ok(b.usage(now, hits))
}

fn refused(code: ErrorCode, message: &'static str, usage: &Usage) -> crate::error::AppError {
    let mut p = ProtocolError::new(code, message).with_retry_after(usage.reset_s as u64);
    p.rate_limit = Some((usage.limit, usage.window_s));
    p.into()
}

/// Counts this request against `action`'s windows: per IP first, then the deployment's. A
/// request refused per IP is not counted toward the deployment. Answers the tighter window's
/// usage (for the `RateLimit` headers), or `429 rate_limited` with `Retry-After`.
pub fn check(
    conn: &mut DbConn,
    config: &RateLimitConfig,
    now: UnixTime,
    action: Action,
    ip: Option<&str>,
) -> AppResult<Option<Usage>> {
    if !config.enabled {
        return Ok(None);
    }
    let (per_ip, global) = action.limits(config);
    let mut buckets = Vec::with_capacity(2);
    if let Some(ip) = ip {
        buckets.push(Bucket {
            name: format!("{}:ip:{ip}", action.name()),
            max: per_ip,
            window: config.window_s,
        });
    }
    buckets.push(Bucket {
        name: format!("{}:all", action.name()),
        max: global,
        window: config.window_s,
    });
    let mut tightest: Option<Usage> = None;
    for bucket in &buckets {
        // A refused request still counts in its own window, so hammering does not reopen it.
        let usage = measure(conn, now, bucket, true)?;
        if usage.over {
            return Err(refused(
                ErrorCode::RateLimited,
                "too many requests; retry later",
                &usage,
            ));
        }
        if tightest.is_none_or(|t| usage.remaining < t.remaining) {
            tightest = Some(usage);
        }
    }
    Ok(tightest)
}

fn login_buckets(config: &RateLimitConfig, account: &str, ip: Option<&str>) -> Vec<Bucket> {
    let window = config.login_failure_window_s;
    let mut buckets = vec![Bucket {
        name: format!("login_fail:acct:{account}"),
        max: config.login_failures_per_account,
        window,
    }];
    if let Some(ip) = ip {
        buckets.push(Bucket {
            name: format!("login_fail:ip:{ip}"),
            max: config.login_failures_per_ip,
            window,
        });
    }
    buckets
}

/// Before checking a password: refused while the account, or the IP, has used up its failures.
/// Reads only; answers the tighter window (for the `RateLimit` headers).
pub fn login_allowed(
    conn: &mut DbConn,
    config: &RateLimitConfig,
    now: UnixTime,
    account: &str,
    ip: Option<&str>,
) -> AppResult<Option<Usage>> {
    if !config.enabled {
        return Ok(None);
    }
    let mut tightest: Option<Usage> = None;
    for bucket in login_buckets(config, account, ip) {
        let usage = refuse_if_spent(
            conn,
            now,
            &bucket,
            ErrorCode::RateLimited,
            "too many failed sign-ins; retry later",
        )?;
        if tightest.is_none_or(|t| usage.remaining < t.remaining) {
            tightest = Some(usage);
        }
    }
    Ok(tightest)
}

/// Refuses when a failure window has no attempt left; counts nothing.
fn refuse_if_spent(
    conn: &mut DbConn,
    now: UnixTime,
    bucket: &Bucket,
    code: ErrorCode,
    message: &'static str,
) -> AppResult<Usage> {
    let usage = measure(conn, now, bucket, false)?;
    if usage.remaining == 0 {
        return Err(refused(code, message, &usage));
    }
    Ok(usage)
}

/// A wrong password (or unknown account, disabled account): counted for the account and the IP.
pub fn login_failed(
    conn: &mut DbConn,
    config: &RateLimitConfig,
    now: UnixTime,
    account: &str,
    ip: Option<&str>,
) -> AppResult<()> {
    if !config.enabled {
        return Ok(());
    }
    for bucket in login_buckets(config, account, ip) {
        measure(conn, now, &bucket, true)?;
    }
    Ok(())
}

/// Seconds over which `rate_limit.mail_per_recipient` counts.
pub const MAIL_WINDOW_S: i64 = 3600;

/// Counts one message to `recipient`; `429 rate_limited` when it would exceed the hourly limit.
pub fn mail_allowed(
    conn: &mut DbConn,
    config: &RateLimitConfig,
    now: UnixTime,
    recipient: &str,
) -> AppResult<()> {
    if !config.enabled {
        return Ok(());
    }
    let bucket = Bucket {
        name: format!("mail:{}", recipient.to_ascii_lowercase()),
        max: config.mail_per_recipient,
        window: MAIL_WINDOW_S,
    };
    let usage = measure(conn, now, &bucket, true)?;
    if usage.over {
        return Err(refused(
            ErrorCode::RateLimited,
            "too many messages to this address; retry later",
            &usage,
        ));
    }
    Ok(())
}

fn client_auth_bucket(config: &RateLimitConfig, client_id: &str, ip: Option<&str>) -> Bucket {
    Bucket {
        name: format!("client_auth:{client_id}:{}", ip.unwrap_or("-")),
        max: config.client_auth_failures,
        window: config.window_s,
    }
}

/// A client's failure window at the token endpoint, read with the client's row (one round
/// trip) before its secret is checked. `None` when limits are off.
pub struct ClientAuthWindow {
    bucket: Bucket,
    pub key: WindowKey,
}

pub fn client_auth_window(
    config: &RateLimitConfig,
    now: UnixTime,
    client_id: &str,
    ip: Option<&str>,
) -> Option<ClientAuthWindow> {
    if !config.enabled {
        return None;
    }
    let bucket = client_auth_bucket(config, client_id, ip);
    let key = bucket.key(now);
    Some(ClientAuthWindow { bucket, key })
}

impl ClientAuthWindow {
    /// `429 temporarily_unavailable` once this client has failed from this IP
    /// `rate_limit.client_auth_failures` times in the window (`hits` as read).
    pub fn refuse_if_spent(&self, now: UnixTime, hits: (i64, i64)) -> AppResult<()> {
        let usage = self.bucket.usage(now, hits);
        if usage.remaining == 0 {
            return Err(refused(
                ErrorCode::TemporarilyUnavailable,
                "too many failed client authentications; retry later",
                &usage,
            ));
        }
        Ok(())
    }
}

pub fn client_auth_failed(
    conn: &mut DbConn,
    config: &RateLimitConfig,
    now: UnixTime,
    client_id: &str,
    ip: Option<&str>,
) -> AppResult<()> {
    if !config.enabled {
        return Ok(());
    }
    measure(conn, now, &client_auth_bucket(config, client_id, ip), true)?;
    Ok(())
}

/// Drops windows that no estimate reads any more.
pub fn purge(conn: &mut DbConn, config: &RateLimitConfig, now: UnixTime) -> AppResult<usize> {
    let longest = config
        .window_s
        .max(config.login_failure_window_s)
        .max(MAIL_WINDOW_S);
    Ok(db::ratelimit::purge(conn, now - 2 * longest)?)
}
