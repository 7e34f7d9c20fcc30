//! The entry points of `/oauth2/token`, `/oauth2/revoke` and `/oauth2/introspect`: client
//! authentication, then one dispatch (on the grant type, or on the credential kind through
//! [`credentials`]).

use std::borrow::Borrow;

use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::clients::ClientRow;
use crate::db::point_reads::{PointReads, PointRows};
use crate::db::tokens::Issue;
use crate::db::{self, DbConn};
use crate::domain::clients::{self, ClientAuth};
use crate::domain::context::Ctx;
use crate::domain::credentials::mint::{verify_identity_assertion, AssertionClaims};
use crate::domain::credentials::{self, Introspection, Kind, RecordUse, Revoker, TokenResponse};
use crate::domain::discovery::{
    GRANT_AGENT_CLAIM, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE,
    GRANT_JWT_BEARER, GRANT_REFRESH_TOKEN,
};
use crate::domain::grants;
use crate::domain::keys::KeyRing;
use crate::domain::providers::VerifiedIdJag;
use crate::error::{AppError, AppResult, ErrorCode};

/// The parameters of a token request that the grants read.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub grant_type: String,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    /// The JWT-bearer `assertion` (an identity assertion authmd issued).
    pub assertion: Option<String>,
    /// A provider's ID-JAG, verified (against its JWKS) before this call.
    pub id_jag: Option<VerifiedIdJag>,
    /// RFC 8628 `device_code`.
    pub device_code: Option<String>,
    /// auth.md claim grant: the registration's `claim_token`.
    pub claim_token: Option<String>,
}

fn required<'a>(v: &'a Option<String>, name: &'static str) -> AppResult<&'a str> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::protocol(ErrorCode::InvalidRequest, format!("{name} is required")))
}

/// `grant_type=client_credentials` for `auth`, without writing: authenticates the client
/// against what was read for it ([`clients::lookup_read`]) and mints; the caller inserts the
/// [`Issue`], and counts an authentication failure ([`clients::counts_as_failure`],
/// [`clients::count_failure`]). [`token`] does the same inside its transaction.
pub fn client_credentials_found(
    ctx: &Ctx<'_>,
    found: clients::ClientLookup,
    auth: &ClientAuth,
    req: &TokenRequest,
) -> AppResult<(Issue, TokenResponse)> {
    let client = found.judge(ctx.now, auth)?;
    grants::client_credentials::client_credentials(
        ctx,
        &client,
        req.scope.as_deref(),
        req.resource.as_deref(),
    )
}

/// The checks of a token request that read no database, done before its write on the request's
/// own worker: a signature check is CPU work, and on SQLite every write of
/// the process waits behind the one running on the single writer thread.
#[derive(Default)]
pub struct Prechecked {
    /// authmd's own identity assertion (JWT-bearer): key, `iss`, `aud` and expiry.
    assertion: Option<AppResult<AssertionClaims>>,
}

/// [`Prechecked`] for `req`, with the time and keys its write will use.
pub fn precheck(config: &Config, keys: &KeyRing, now: UnixTime, req: &TokenRequest) -> Prechecked {
    let assertion = match (
        req.grant_type.as_str(),
        req.assertion.as_deref(),
        &req.id_jag,
    ) {
        (GRANT_JWT_BEARER, Some(a), None) if !a.is_empty() => {
            Some(verify_identity_assertion(config, keys, now, a))
        }
        _ => None,
    };
    Prechecked { assertion }
}

/// `POST /oauth2/token`: authenticates the client (when one is presented), then runs the
/// requested grant. Only agent grants (identity assertions and their refresh tokens) may come
/// without a client. `pre` holds what [`precheck`] found; a check it did not do is done here.
pub fn token(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    auth: Option<&ClientAuth>,
    req: &TokenRequest,
    mut pre: Prechecked,
) -> AppResult<TokenResponse> {
    let client = auth
        .map(|a| clients::authenticate_limited(conn, ctx, a))
        .transpose()?;
    let need_client = || {
        client.as_ref().ok_or_else(|| {
            AppError::protocol(
                ErrorCode::InvalidClient,
                "client authentication is required",
            )
        })
    };
    match req.grant_type.as_str() {
        GRANT_AUTHORIZATION_CODE => grants::code::exchange_code(
            conn,
            ctx,
            need_client()?,
            required(&req.code, "code")?,
            req.redirect_uri.as_deref(),
            req.code_verifier.as_deref(),
            req.resource.as_deref(),
        ),
        GRANT_REFRESH_TOKEN => grants::refresh::refresh(
            conn,
            ctx,
            client.as_ref(),
            required(&req.refresh_token, "refresh_token")?,
            req.scope.as_deref(),
            req.resource.as_deref(),
        ),
        GRANT_CLIENT_CREDENTIALS => {
            let (issue, response) = grants::client_credentials::client_credentials(
                ctx,
                need_client()?,
                req.scope.as_deref(),
                req.resource.as_deref(),
            )?;
            db::tokens::insert_issues(conn, &[&issue])?;
            Ok(response)
        }
        GRANT_DEVICE_CODE => crate::domain::device::poll(
            conn,
            ctx,
            need_client()?,
            required(&req.device_code, "device_code")?,
        ),
        GRANT_JWT_BEARER => match &req.id_jag {
            Some(v) => grants::jwt_bearer::exchange_id_jag(
                conn,
                ctx,
                need_client()?,
                v,
                req.scope.as_deref(),
                req.resource.as_deref(),
            ),
            None => {
                let assertion = required(&req.assertion, "assertion")?;
                let checked = pre.assertion.take().unwrap_or_else(|| {
                    verify_identity_assertion(ctx.config, ctx.keys, ctx.now, assertion)
                });
                grants::jwt_bearer::exchange_identity_assertion(
                    conn,
                    ctx,
                    client.as_ref(),
                    checked,
                    req.scope.as_deref(),
                    req.resource.as_deref(),
                )
            }
        },
        GRANT_AGENT_CLAIM => {
            crate::domain::identity::poll(conn, ctx, required(&req.claim_token, "claim_token")?)
        }
        "" => Err(AppError::protocol(
            ErrorCode::InvalidRequest,
            "grant_type is required",
        )),
        other => Err(AppError::protocol(
            ErrorCode::UnsupportedGrantType,
            format!("grant_type {other:?} is not supported"),
        )),
    }
}

/// `POST /oauth2/revoke`: authenticates the client when one is presented (with the failure
/// limit), then revokes through the one credential model.
pub fn revoke(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    auth: Option<&ClientAuth>,
    token: &str,
) -> AppResult<()> {
    let client = auth
        .map(|a| clients::authenticate_limited(conn, ctx, a))
        .transpose()?;
    let revoker = match &client {
        Some(c) => Revoker::Client(&c.client_id),
        None => Revoker::Holder,
    };
    credentials::revoke(conn, ctx, revoker, token)
}

/// Whether an introspection caller may introspect: a confidential client, authenticated, with
/// `can_introspect`. `client` reads the caller's row by id.
fn check_introspection_caller<R: Borrow<ClientRow>>(
    auth: &ClientAuth,
    client: impl FnOnce(&str) -> AppResult<Option<R>>,
) -> AppResult<()> {
    let ClientAuth::Secret { client_id, .. } = auth else {
        return Err(AppError::protocol(
            ErrorCode::InvalidClient,
            "introspection needs client authentication",
        ));
    };
    if !clients::authenticate_row(auth, client(client_id)?)?
        .borrow()
        .can_introspect
    {
        return Err(AppError::protocol(
            ErrorCode::InvalidClient,
            "this client may not introspect",
        ));
    }
    Ok(())
}

/// Introspection for a caller: a client allowed to introspect (`caller`), or the admin token
/// (`None`, checked by the caller of this function).
pub fn introspect_for(
    conn: &mut DbConn,
    config: &Config,
    keys: &KeyRing,
    now: UnixTime,
    caller: Option<&ClientAuth>,
    token: &str,
    record: RecordUse,
) -> AppResult<Introspection> {
    if let Some(auth) = caller {
        check_introspection_caller(auth, |id| Ok(db::clients::find(conn, id)?))?;
    }
    credentials::introspect(conn, config, keys, now, token, record)
}

/// The primary-key reads that answer most introspections without anything else (see
/// [`introspect_prefetched`]): the caller's client row and, for access tokens, the token's
/// row. `None` for every other kind, which [`introspect_for`] answers.
pub fn introspection_reads(
    config: &Config,
    keys: &KeyRing,
    caller: Option<&ClientAuth>,
    token: &str,
) -> Option<PointReads> {
    let presented = credentials::recognise(config, keys, token);
    let access_token_id = match presented {
        Some(p) if matches!(p.kind, Kind::AccessToken | Kind::AccessJwt) => Some(p.id),
        Some(_) => return None,
        None => None,
    };
    Some(PointReads {
        client_id: caller.map(|auth| auth.client_id().to_owned()),
        access_token_id,
    })
}

/// [`introspect_for`] from the rows of [`introspection_reads`]. `Ok(None)`: the answer needs
/// more reads (an agent's token, whose registration decides), and `introspect_for` gives it.
pub fn introspect_prefetched(
    config: &Config,
    now: UnixTime,
    caller: Option<&ClientAuth>,
    rows: PointRows,
) -> AppResult<Option<Introspection>> {
    if let Some(auth) = caller {
        check_introspection_caller(auth, |_| Ok(rows.client))?;
    }
    let Some(row) = rows.access_token else {
        return Ok(Some(Introspection::inactive()));
    };
    Ok(match credentials::access_live(&row, now) {
        None => Some(Introspection::inactive()),
        Some(live) if live.registration_id.is_some() => None,
        Some(live) => Some(Introspection {
            active: true,
            scope: Some(live.scope),
            client_id: live.client_id,
            sub: Some(live.sub),
            exp: live.exp,
            iat: Some(live.iat),
            token_type: Some("Bearer".to_owned()),
            aud: Some(live.aud),
            iss: Some(config.server.issuer.clone()),
            ..Default::default()
        }),
    })
}

/// Whether introspecting `token` may write: API keys and personal tokens record when they were
/// last used. Everything else is answered by reads alone.
pub fn introspection_writes(config: &Config, keys: &KeyRing, token: &str) -> bool {
    credentials::recognise(config, keys, token)
        .is_some_and(|p| matches!(p.kind, Kind::ApiKey | Kind::PersonalToken))
}
