//! Sliding-window rate limits stored in the database, so every instance sharing it counts the
//! same hits. The window is estimated from two fixed windows: the previous one weighted by how
//! much of it still overlaps the sliding window, plus the current one.

use crate::clock::UnixTime;
use crate::config::RateLimitConfig;
use crate::db::{self, DbConn};
use crate::error::{AppResult, ErrorCode, ProtocolError};

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    AgentAuth,
    Claim,
    Otp,
    Login,
    Register,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::AgentAuth => "agent_auth",
            Action::Claim => "claim",
            Action::Otp => "otp",
            Action::Login => "login",
            Action::Register => "register",
        }
    }

    /// (per IP, per deployment) maxima from the configuration.
    fn limits(self, c: &RateLimitConfig) -> (u32, u32) {
        match self {
            Action::AgentAuth => (c.agent_auth_per_ip, c.agent_auth_global),
            Action::Claim => (c.claim_per_ip, c.claim_global),
            Action::Otp => (c.otp_per_ip, c.otp_global),
            Action::Login => (c.login_per_ip, c.login_global),
            Action::Register => (c.register_per_ip, c.register_global),
        }
    }
}

/// Counts this request and refuses it when a window is full (`429 rate_limited` with
/// `Retry-After`). A refused request still counts, so hammering does not open the gate sooner.
pub fn check(
    conn: &mut DbConn,
    config: &RateLimitConfig,
    now: UnixTime,
    action: Action,
    ip: Option<&str>,
) -> AppResult<()> {
    if !config.enabled {
        return Ok(());
    }
    let window = config.window_s;
    let start = now - now.rem_euclid(window);
    let elapsed = now - start;
    let (per_ip, global) = action.limits(config);
    let mut buckets = vec![(format!("{}:all", action.name()), global)];
    if let Some(ip) = ip {
        buckets.push((format!("{}:ip:{ip}", action.name()), per_ip));
    }
    for (bucket, max) in buckets {
        // In a write transaction so that, on SQLite, it queues with the other writers of this
        // process instead of sleeping in SQLite's busy handler.
        let (current, previous) = db::write_tx(conn, |conn| {
            Ok(db::ratelimit::hit(conn, &bucket, start, start - window)?)
        })?;
        // Weighted in integers: previous * (window - elapsed) / window.
        let estimate = current + previous * (window - elapsed) / window;
        if estimate > i64::from(max) {
            let retry_after = (window - elapsed).max(1) as u64;
            return Err(ProtocolError::new(
                ErrorCode::RateLimited,
                "too many requests; retry later",
            )
            .with_retry_after(retry_after)
            .into());
        }
    }
    Ok(())
}

/// Drops windows that no estimate reads any more.
pub fn purge(conn: &mut DbConn, config: &RateLimitConfig, now: UnixTime) -> AppResult<usize> {
    Ok(db::ratelimit::purge(conn, now - 2 * config.window_s)?)
}
