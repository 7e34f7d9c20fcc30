//! `/oauth2/token`, `/oauth2/revoke`, `/oauth2/introspect`.

use super::{read, write};
use crate::db::batch::BatchedWrites;
use crate::db::tokens::IssueInserts;
use crate::db::DbConn;
use crate::domain::audit::AuditContext;
use crate::domain::clients::{self, ClientAuth};
use crate::domain::context::Ctx;
use crate::domain::credentials::{Introspection, RecordUse, TokenResponse};
use crate::domain::discovery::{GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER};
use crate::domain::endpoints::{self, TokenRequest};
use crate::domain::oidc;
use crate::domain::providers;
use crate::domain::{device, ratelimit};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;

/// A token request. A provider's ID-JAG is verified against its JWKS first (network); authmd's
/// own identity assertions are checked with its keys before the write too. Every grant is a
/// short write.
pub async fn token(
    state: &AppState,
    audit: AuditContext,
    auth: Option<ClientAuth>,
    mut request: TokenRequest,
) -> AppResult<TokenResponse> {
    // Where inserts are batched (PostgreSQL) client_credentials holds no transaction (see
    // [`client_credentials`]). On SQLite it stays one job of the writer, inside the dispatch
    // below: there its read costs less than a read on another connection plus a job (7.1k
    // against 6.3k tokens/s measured side by side, `bench/README.md`, tenth session).
    if let (GRANT_CLIENT_CREDENTIALS, Some(issues), Some(auth)) =
        (request.grant_type.as_str(), &state.token_issues, &auth)
    {
        return client_credentials(state, issues, audit, auth.clone(), request).await;
    }
    if request.grant_type == GRANT_JWT_BEARER {
        if let Some(assertion) = &request.assertion {
            let issuer = providers::unverified_issuer(assertion);
            if issuer.as_deref() != Some(state.config.server.issuer.as_str()) {
                let verified = state
                    .providers
                    .verify_id_jag(&state.config, state.now(), assertion)
                    .await
                    .map_err(|p| AppError::protocol(ErrorCode::InvalidGrant, p.description))?;
                request.id_jag = Some(verified);
            }
        }
    }
    // Signature checks here, on this worker, not on the writer every write waits for.
    let pre = endpoints::precheck(&state.config, &state.keys.current(), state.now(), &request);
    write(state, audit, move |conn, ctx| {
        endpoints::token(conn, ctx, auth.as_ref(), &request, pre)
    })
    .await
}

/// `grant_type=client_credentials` on PostgreSQL: it reads the client and inserts a token, and
/// what it reads is not what it writes, so it holds no transaction. The read joins other
/// requests' reads of their clients in one statement per batch, the insert joins their inserts
/// likewise; minting runs on this worker. A failed authentication is counted in a write of its
/// own, as it is for every grant.
///
/// Between the read and the insert another request may change the client: a secret rotated
/// or a client deleted in those microseconds does not stop this token, as it would not have
/// stopped one issued just before. Failures counted meanwhile by concurrent requests are seen
/// by the next read, so a burst of guesses can exceed the window by at most the requests in
/// flight; a client secret is 256 random bits, and the window exists to stop sustained
/// guessing, which it does.
async fn client_credentials(
    state: &AppState,
    issues: &BatchedWrites<IssueInserts>,
    audit: AuditContext,
    auth: ClientAuth,
    request: TokenRequest,
) -> AppResult<TokenResponse> {
    let (config, keys, now) = (state.config.clone(), state.keys.current(), state.now());
    let ctx = Ctx {
        config: &config,
        keys: &keys,
        now,
        audit: &audit,
    };
    let (read, window) = clients::lookup_read(&ctx, &auth);
    let found = clients::ClientLookup::of(window, state.client_reads.read(read).await?);
    let minted = endpoints::client_credentials_found(&ctx, found, &auth, &request);
    match minted {
        Ok((issue, response)) => {
            issues.write(issue).await?;
            Ok(response)
        }
        Err(e) if clients::counts_as_failure(&e) => {
            write(state, audit, move |conn, ctx| {
                clients::count_failure(conn, ctx, &auth)
            })
            .await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// RFC 7009 revocation.
pub async fn revoke(
    state: &AppState,
    audit: AuditContext,
    auth: Option<ClientAuth>,
    token: String,
) -> AppResult<()> {
    write(state, audit, move |conn, ctx| {
        endpoints::revoke(conn, ctx, auth.as_ref(), &token)
    })
    .await
}

/// RFC 8628 device authorization: client authentication (with the failure limit), the
/// per-IP registration window (each request creates state), then a device code.
pub async fn device_authorization(
    state: &AppState,
    audit: AuditContext,
    auth: ClientAuth,
    scope: Option<String>,
    resource: Option<String>,
) -> AppResult<device::DeviceAuthorization> {
    write(state, audit, move |conn, ctx| {
        let client = clients::authenticate_limited(conn, ctx, &auth)?;
        ratelimit::check(
            conn,
            &ctx.config.rate_limit,
            ctx.now,
            ratelimit::Action::Register,
            ctx.audit.ip.as_deref(),
        )?;
        device::authorize(conn, ctx, &client, scope.as_deref(), resource.as_deref())
    })
    .await
}

/// OpenID Connect userinfo for a bearer access token; `None`: not a live access token.
pub async fn userinfo(state: &AppState, token: String) -> AppResult<Option<oidc::UserInfo>> {
    read(state, move |conn, ctx| {
        oidc::userinfo_for_bearer(conn, ctx.config, ctx.keys, ctx.now, &token)
    })
    .await
}

/// RFC 7662 introspection for a client allowed to introspect (`caller`), or for the admin token
/// (`None`, checked by the caller). Resource servers call this on every request: most answers
/// need only two primary-key reads, which are batched across requests.
pub async fn introspect(
    state: &AppState,
    caller: Option<ClientAuth>,
    token: String,
) -> AppResult<Introspection> {
    let (config, keys, now) = (state.config.clone(), state.keys.current(), state.now());
    if let Some(reads) = endpoints::introspection_reads(&config, &keys, caller.as_ref(), &token) {
        let rows = state.introspection_reads.read(reads).await?;
        if let Some(answer) = endpoints::introspect_prefetched(&config, now, caller.as_ref(), rows)?
        {
            return Ok(answer);
        }
    }
    // API keys and personal tokens record when they were last used: those may write.
    let writes = endpoints::introspection_writes(&config, &keys, &token);
    let work = move |record: RecordUse| {
        let (caller, token) = (caller.clone(), token.clone());
        move |conn: &mut DbConn, ctx: &crate::domain::context::Ctx<'_>| {
            endpoints::introspect_for(
                conn,
                ctx.config,
                ctx.keys,
                ctx.now,
                caller.as_ref(),
                &token,
                record,
            )
        }
    };
    if !writes {
        return read(state, work(RecordUse::No)).await;
    }
    match write(state, AuditContext::default(), work(RecordUse::Yes)).await {
        // The database takes no writes (disk full, read-only file) but may still be read:
        // whether a credential is live must not wait on recording when it was used.
        Err(AppError::Unavailable(cause)) => {
            tracing::warn!(cause = %cause, "introspection could not record a use; answering from a read");
            read(state, work(RecordUse::No)).await
        }
        answer => answer,
    }
}
