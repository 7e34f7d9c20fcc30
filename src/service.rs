//! The entry points request handlers call: one async function per operation.
//!
//! Each decides how its storage work runs, so no handler has to know:
//!
//! - [`write`]: every write. It must be quick (no password hashing, no network): on SQLite all
//!   writes of the process are group-committed by one writer thread (see `Db::write`).
//! - [`read`]: a few point reads; on SQLite it may run inline on the worker (see `Db::read`).
//! - [`query`]: reads that may take longer (listings, a password check), on the blocking pool.
//! - Introspection's first reads are batched across requests ([`oauth::introspect`]).
//!
//! Network work (a provider's JWKS, sending mail) happens here too, before or after the
//! database call, never inside it. `http/` calls these functions and never touches `db`.

pub mod accounts;
pub mod admin;
pub mod agents;
pub mod authorize;
pub mod clients;
pub mod device;
pub mod identity;
pub mod oauth;
pub mod ops;

use crate::db::DbConn;
use crate::domain::audit::AuditContext;
use crate::domain::context::Ctx;
use crate::error::AppResult;
use crate::state::AppState;

/// `f` with a context made now: the configuration, the current keys, the injected time.
fn in_context<T, F>(
    state: &AppState,
    audit: AuditContext,
    f: F,
) -> impl FnOnce(&mut DbConn) -> AppResult<T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn, &Ctx<'_>) -> AppResult<T> + Send + 'static,
{
    let (config, keys, now) = (state.config.clone(), state.keys.current(), state.now());
    move |conn| {
        let ctx = Ctx {
            config: &config,
            keys: &keys,
            now,
            audit: &audit,
        };
        f(conn, &ctx)
    }
}

/// A write, group-committed on SQLite; `audit` says who is asking.
async fn write<T, F>(state: &AppState, audit: AuditContext, f: F) -> AppResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn, &Ctx<'_>) -> AppResult<T> + Send + 'static,
{
    state.db.write(in_context(state, audit, f)).await
}

/// Read-only work on the blocking pool. `f` must not write: on SQLite every write belongs to
/// the writer thread.
async fn query<T, F>(state: &AppState, f: F) -> AppResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn, &Ctx<'_>) -> AppResult<T> + Send + 'static,
{
    state
        .db
        .run(in_context(state, AuditContext::default(), f))
        .await
}

/// A few point reads, inline on the worker when SQLite has an idle connection.
async fn read<T, F>(state: &AppState, f: F) -> AppResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn, &Ctx<'_>) -> AppResult<T> + Send + 'static,
{
    state
        .db
        .read(in_context(state, AuditContext::default(), f))
        .await
}
