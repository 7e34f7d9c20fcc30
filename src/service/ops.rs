//! Cross-cutting operations: rate limits, readiness, and `Idempotency-Key` records.

use std::sync::Arc;

use super::{query, write};
use crate::domain::audit::AuditContext;
use crate::domain::idempotency::{self, Begin, Fingerprint, Presented, Stored};
use crate::domain::ratelimit::{self, Action, Usage};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Counts a request against its limits. `Err` only for a refusal (429): a failing limiter
/// store lets the request through (and says so in the log), because an outage of the counter
/// must not become an outage of sign-up.
pub async fn rate_limit(
    state: &AppState,
    action: Action,
    ip: Option<String>,
) -> AppResult<Option<Usage>> {
    // Off means off: no write (and no trip through the writer thread) per request.
    if !state.config.rate_limit.enabled {
        return Ok(None);
    }
    let checked = write(state, AuditContext::default(), move |conn, ctx| {
        ratelimit::check(conn, &ctx.config.rate_limit, ctx.now, action, ip.as_deref())
    })
    .await;
    match checked {
        Err(e @ AppError::Protocol(_)) => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable; allowing the request");
            Ok(None)
        }
        ok => ok,
    }
}

/// Readiness: one round trip to the database. Returns the backend's name.
pub async fn ready(state: &AppState) -> AppResult<&'static str> {
    query(state, |conn, _| crate::db::ping(conn))
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    Ok(state.db.backend())
}

/// The start of an idempotent request: who the principal is, whether the key is acceptable,
/// and whether this is a retry of a stored answer.
pub async fn begin_idempotent(
    state: &AppState,
    presented: Presented,
    key: String,
    scope: String,
    body: Vec<u8>,
) -> AppResult<(Arc<Fingerprint>, Begin)> {
    write(state, AuditContext::default(), move |conn, ctx| {
        let principal = idempotency::principal(conn, ctx.config, ctx.keys, ctx.now, &presented)?;
        idempotency::check_key(&key, principal.as_deref())?;
        let f = Fingerprint::new(&scope, principal.as_deref(), &key, &body);
        let begin = idempotency::begin(conn, ctx.now, &f)?;
        Ok((Arc::new(f), begin))
    })
    .await
}

/// Stores the answer of an idempotent request (`Some`), or forgets the key so a retry runs
/// again (`None`: 5xx and 429 answers).
pub async fn finish_idempotent(
    state: &AppState,
    fingerprint: Arc<Fingerprint>,
    stored: Option<Stored>,
) -> AppResult<()> {
    write(
        state,
        AuditContext::default(),
        move |conn, _| match stored {
            Some(stored) => idempotency::finish(conn, &fingerprint, &stored),
            None => idempotency::abandon(conn, &fingerprint),
        },
    )
    .await
}

/// The metrics text for `/metrics`, with the connection pool read now.
pub fn metrics_text(state: &AppState) -> String {
    let m = crate::metrics::metrics();
    let (open, idle) = state.db.pool_state();
    m.pool_connections.set(i64::from(open));
    m.pool_idle.set(i64::from(idle));
    m.pool_max.set(i64::from(state.db.max_size()));
    m.render()
}
