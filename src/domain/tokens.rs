//! Tokens: the grants of the token endpoint, refresh rotation with a grace window, revocation
//! (RFC 7009) and introspection (RFC 7662).
//!
//! Every token belongs to a grant (what one authorization produced). Replaying a code or
//! reusing a rotated refresh token after the grace window revokes the grant, and with it every
//! access and refresh token issued under it. Access tokens carry their own `revoked_at`, so
//! introspection is one primary-key read.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::UnixTime;
use crate::config::{AccessTokenFormat, Config};
use crate::db::clients::ClientRow;
use crate::db::point_reads::{PointReads, PointRows};
use crate::db::tokens::{AccessTokenRow, GrantRow, RefreshTokenRow};
use crate::db::{self, write_tx, DbConn};
use crate::domain::agents;
use crate::domain::audit::{self, AuditEntry, AuditEvent};
use crate::domain::clients::{self, Client, ClientAuth};
use crate::domain::context::Ctx;
use crate::domain::credentials::{self, Kind};
use crate::domain::discovery::{
    GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER, GRANT_REFRESH_TOKEN,
};
use crate::domain::keys::KeyRing;
use crate::domain::providers::VerifiedIdJag;
use crate::domain::scope::Scopes;
use crate::domain::secrets::{self, constant_time_eq, prefix, random_id, HashedToken, PlainToken};
use crate::error::{AppError, AppResult, ErrorCode};

/// RFC 6749 §5.1 successful response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

fn invalid_grant(msg: &'static str) -> AppError {
    AppError::protocol(ErrorCode::InvalidGrant, msg)
}

/// The audience for a request's `resource` (RFC 8707): one of the configured resources, or
/// the default one when none is named.
pub fn resolve_resource(config: &Config, requested: Option<&str>) -> AppResult<String> {
    match requested {
        None | Some("") => Ok(config.default_resource().to_owned()),
        Some(r) => {
            let known = if config.server.resources.is_empty() {
                r == config.server.issuer
            } else {
                config.server.resources.iter().any(|k| k == r)
            };
            if known {
                Ok(r.to_owned())
            } else {
                Err(AppError::protocol(
                    ErrorCode::InvalidTarget,
                    format!("unknown resource {r:?}"),
                ))
            }
        }
    }
}

/// A token request's `resource` against the one its grant was made for: absent or equal, else
/// `invalid_target`.
fn resource_of_grant(granted: &str, requested: Option<&str>) -> AppResult<()> {
    match requested {
        None | Some("") => Ok(()),
        Some(r) if r == granted => Ok(()),
        Some(r) => Err(AppError::protocol(
            ErrorCode::InvalidTarget,
            format!("resource {r:?} is not the one this grant was made for"),
        )),
    }
}

/// The scopes a request may have: the requested subset of what is allowed, or all of it.
pub fn narrow_scopes(requested: Option<&str>, allowed: &Scopes) -> AppResult<Scopes> {
    match requested {
        None => Ok(allowed.clone()),
        Some(s) => {
            let scopes = Scopes::parse(s)
                .ok_or_else(|| AppError::protocol(ErrorCode::InvalidScope, "scope is malformed"))?;
            if scopes.is_subset(allowed) {
                Ok(if scopes.is_empty() {
                    allowed.clone()
                } else {
                    scopes
                })
            } else {
                Err(AppError::protocol(
                    ErrorCode::InvalidScope,
                    format!("scope not allowed: {}", scopes.missing_from(allowed)),
                ))
            }
        }
    }
}

/// Who a token speaks for.
pub struct Subject<'a> {
    pub grant_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub registration_id: Option<&'a str>,
    /// The token's `sub`: a user, a client, or an agent principal.
    pub subject: &'a str,
    pub user_id: Option<&'a str>,
    pub scope: &'a str,
    pub audience: &'a str,
}

/// RFC 9068 access-token claims.
#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: String,
    client_id: Option<String>,
    scope: String,
}

/// Mints and stores an access token; returns it and its lifetime.
pub fn mint_access(conn: &mut DbConn, ctx: &Ctx<'_>, s: &Subject<'_>) -> AppResult<(String, i64)> {
    let ttl = ctx.config.tokens.access_token_ttl_s;
    let subject = s.subject;
    let (token, id, prefix_shown, format) = match ctx.config.tokens.access_token_format {
        AccessTokenFormat::Opaque => {
            let t = PlainToken::generate(prefix::ACCESS_TOKEN);
            let id = t.hash().as_str().to_owned();
            let shown = t.display_prefix();
            (t.into_string(), id, shown, "opaque")
        }
        AccessTokenFormat::Jwt => {
            let jti = random_id("");
            let claims = AccessClaims {
                iss: ctx.config.server.issuer.clone(),
                sub: subject.to_owned(),
                aud: s.audience.to_owned(),
                exp: ctx.now + ttl,
                iat: ctx.now,
                jti: jti.clone(),
                // RFC 9068 requires client_id; an agent credential's client is its registration.
                client_id: s.client_id.or(s.registration_id).map(str::to_owned),
                scope: s.scope.to_owned(),
            };
            let mut header = Header::new(Algorithm::ES256);
            header.typ = Some("at+jwt".to_owned());
            header.kid = Some(ctx.keys.signer.kid.clone());
            let jwt = jsonwebtoken::encode(&header, &claims, &ctx.keys.signer.encoding)
                .map_err(|e| AppError::internal(format!("signing access token: {e}")))?;
            let shown = format!("jwt:{}", &jti[..8]);
            (jwt, jti, shown, "jwt")
        }
    };
    db::tokens::insert_access_token(
        conn,
        &AccessTokenRow {
            id,
            grant_id: s.grant_id.map(str::to_owned),
            registration_id: s.registration_id.map(str::to_owned),
            client_id: s.client_id.map(str::to_owned),
            subject: subject.to_owned(),
            user_id: s.user_id.map(str::to_owned),
            scope: s.scope.to_owned(),
            audience: s.audience.to_owned(),
            prefix: prefix_shown,
            format: format.to_owned(),
            issued_at: ctx.now,
            expires_at: ctx.now + ttl,
            revoked_at: None,
        },
    )?;
    Ok((token, ttl))
}

fn mint_refresh(conn: &mut DbConn, ctx: &Ctx<'_>, grant_id: &str) -> AppResult<PlainToken> {
    let token = PlainToken::generate(prefix::REFRESH_TOKEN);
    db::tokens::insert_refresh_token(
        conn,
        &RefreshTokenRow {
            token_hash: token.hash().as_str().to_owned(),
            grant_id: grant_id.to_owned(),
            prefix: token.display_prefix(),
            issued_at: ctx.now,
            expires_at: ctx.now + ctx.config.tokens.refresh_token_ttl_s,
            used_at: None,
            successor_sealed: None,
            revoked_at: None,
        },
    )?;
    Ok(token)
}

/// Issues an access token (and a refresh token when the client may refresh) under `grant`.
pub fn issue_for_grant(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    grant: &GrantRow,
    scope: &str,
    with_refresh: bool,
) -> AppResult<TokenResponse> {
    let (access_token, expires_in) = mint_access(
        conn,
        ctx,
        &Subject {
            grant_id: Some(&grant.id),
            client_id: grant.client_id.as_deref(),
            registration_id: grant.registration_id.as_deref(),
            subject: &grant.subject,
            user_id: grant.user_id.as_deref(),
            scope,
            audience: &grant.resource,
        },
    )?;
    let refresh_token = if with_refresh {
        Some(mint_refresh(conn, ctx, &grant.id)?.into_string())
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in,
        scope: scope.to_owned(),
        refresh_token,
    })
}

pub fn audit_token(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    event: AuditEvent,
    client_id: Option<&str>,
    user_id: Option<&str>,
    detail: serde_json::Value,
) -> AppResult<()> {
    audit::record(
        conn,
        ctx.now,
        ctx.audit,
        event,
        AuditEntry {
            client_id,
            user_id,
            detail: Some(detail),
            ..Default::default()
        },
    )
}

/// RFC 7636 §4.1: 43–128 characters of the unreserved set.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// BASE64URL(SHA256(verifier)), the S256 transform.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// `grant_type=authorization_code`.
pub fn exchange_code(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    resource: Option<&str>,
) -> AppResult<TokenResponse> {
    if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
        return Err(AppError::protocol(
            ErrorCode::UnauthorizedClient,
            "client may not use authorization_code",
        ));
    }
    let verifier = verifier.ok_or_else(|| {
        AppError::protocol(ErrorCode::InvalidRequest, "code_verifier is required")
    })?;
    let code_hash = HashedToken::of(code);
    let grant_id = random_id("gr_");
    // The replay branch must persist the revocation before answering invalid_grant, so it
    // returns its error as a value inside a committed transaction.
    let outcome = write_tx(conn, |conn| -> AppResult<AppResult<TokenResponse>> {
        let Some(row) = db::oauth::find_code(conn, code_hash.as_str())? else {
            return Ok(Err(invalid_grant("authorization code is invalid")));
        };
        if row.used_at.is_some() {
            if let Some(first) = &row.grant_id {
                credentials::revoke_from(conn, ctx.now, credentials::Dying::Grant(first))?;
            }
            audit_token(
                conn,
                ctx,
                AuditEvent::CodeReuseDetected,
                Some(&row.client_id),
                Some(&row.user_id),
                json!({ "grant_id": row.grant_id }),
            )?;
            return Ok(Err(invalid_grant(
                "authorization code was already used; the tokens issued from it are revoked",
            )));
        }
        if row.client_id != client.client_id {
            return Ok(Err(invalid_grant(
                "authorization code was issued to another client",
            )));
        }
        if row.expires_at <= ctx.now {
            return Ok(Err(invalid_grant("authorization code has expired")));
        }
        let redirect_ok = match redirect_uri {
            Some(uri) => uri == row.redirect_uri,
            None => client.redirect_uris.len() == 1 && client.redirect_uris[0] == row.redirect_uri,
        };
        if !redirect_ok {
            return Ok(Err(invalid_grant(
                "redirect_uri does not match the authorization request",
            )));
        }
        if !valid_verifier(verifier)
            || !constant_time_eq(s256(verifier).as_bytes(), row.code_challenge.as_bytes())
        {
            return Ok(Err(invalid_grant(
                "code_verifier does not match the code_challenge",
            )));
        }
        // RFC 8707 §2.2: the token request may name only a resource the grant covers.
        if let Err(e) = resource_of_grant(&row.resource, resource) {
            return Ok(Err(e));
        }
        if !db::oauth::mark_code_used(conn, code_hash.as_str(), ctx.now, &grant_id)? {
            return Ok(Err(invalid_grant("authorization code was already used")));
        }
        let grant = GrantRow {
            id: grant_id.clone(),
            client_id: Some(client.client_id.clone()),
            registration_id: None,
            user_id: Some(row.user_id.clone()),
            subject: row.user_id.clone(),
            scope: row.scope.clone(),
            resource: row.resource.clone(),
            kind: GRANT_AUTHORIZATION_CODE.to_owned(),
            created_at: ctx.now,
            revoked_at: None,
            provider_iss: None,
            provider_sub: None,
        };
        db::tokens::insert_grant(conn, &grant)?;
        let response = issue_for_grant(
            conn,
            ctx,
            &grant,
            &row.scope,
            client.allows_grant(GRANT_REFRESH_TOKEN),
        )?;
        audit_token(
            conn,
            ctx,
            AuditEvent::TokenIssued,
            Some(&client.client_id),
            Some(&row.user_id),
            json!({ "grant_type": GRANT_AUTHORIZATION_CODE, "grant_id": grant.id, "scope": row.scope }),
        )?;
        Ok(Ok(response))
    })?;
    outcome
}

/// `grant_type=client_credentials`: the client acts for itself; no refresh token.
pub fn client_credentials(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    scope: Option<&str>,
    resource: Option<&str>,
) -> AppResult<TokenResponse> {
    if client.is_public || !client.allows_grant(GRANT_CLIENT_CREDENTIALS) {
        return Err(AppError::protocol(
            ErrorCode::UnauthorizedClient,
            "client may not use client_credentials",
        ));
    }
    let scopes = narrow_scopes(scope, &client.scopes())?.to_string();
    let audience = resolve_resource(ctx.config, resource)?;
    write_tx(conn, |conn| {
        let (access_token, expires_in) = mint_access(
            conn,
            ctx,
            &Subject {
                grant_id: None,
                client_id: Some(&client.client_id),
                registration_id: None,
                subject: &client.client_id,
                user_id: None,
                scope: &scopes,
                audience: &audience,
            },
        )?;
        audit_token(
            conn,
            ctx,
            AuditEvent::TokenIssued,
            Some(&client.client_id),
            None,
            json!({ "grant_type": GRANT_CLIENT_CREDENTIALS, "scope": scopes }),
        )?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in,
            scope: scopes.clone(),
            refresh_token: None,
        })
    })
}

/// Seals a rotated token's successor under a key derived from the presented refresh token,
/// which only its holder knows, so the stored successor is unreadable without it.
fn seal(presented: &str, response: &TokenResponse) -> AppResult<Vec<u8>> {
    let data = serde_json::to_vec(response).map_err(AppError::internal)?;
    Ok(secrets::seal(presented, "refresh grace v1", &data))
}

fn open(presented: &str, sealed: &[u8]) -> Option<TokenResponse> {
    serde_json::from_slice(&secrets::open(presented, "refresh grace v1", sealed)?).ok()
}

/// `grant_type=refresh_token`: rotates on every use. A token presented again within
/// `tokens.refresh_grace_s` gets the same new pair; later, reuse revokes the whole grant.
pub fn refresh(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: Option<&Client>,
    presented: &str,
    scope: Option<&str>,
    resource: Option<&str>,
) -> AppResult<TokenResponse> {
    if client.is_some_and(|c| !c.allows_grant(GRANT_REFRESH_TOKEN)) {
        return Err(AppError::protocol(
            ErrorCode::UnauthorizedClient,
            "client may not use refresh_token",
        ));
    }
    let hash = HashedToken::of(presented);
    // A concurrent rotation on PostgreSQL makes the conditional update lose; the second try
    // then sees the token as used and takes the grace path.
    for _ in 0..2 {
        let outcome = write_tx(conn, |conn| -> AppResult<AppResult<TokenResponse>> {
            let Some(row) = db::tokens::find_refresh_token(conn, hash.as_str())? else {
                return Ok(Err(invalid_grant("refresh token is invalid")));
            };
            let grant = db::tokens::find_grant(conn, &row.grant_id)?
                .ok_or_else(|| invalid_grant("refresh token is invalid"))?;
            // Client grants need that client's authentication; agent grants (no client) are
            // refreshed by possession, like the identity assertion that started them.
            match (&grant.client_id, client) {
                (Some(owner), Some(c)) if *owner == c.client_id => {}
                (None, None) => {}
                (Some(_), None) => {
                    return Err(AppError::protocol(
                        ErrorCode::InvalidClient,
                        "client authentication is required",
                    ))
                }
                _ => {
                    return Ok(Err(invalid_grant(
                        "refresh token was issued to another client",
                    )))
                }
            }
            if row.revoked_at.is_some() || grant.revoked_at.is_some() {
                return Ok(Err(invalid_grant("refresh token has been revoked")));
            }
            // An agent's grant lives only as long as its registration (an unclaimed one expires).
            if let Some(reg_id) = &grant.registration_id {
                let live = db::agents::find_registration(conn, reg_id)?
                    .is_some_and(|reg| agents::is_live(&reg, ctx.now));
                if !live {
                    return Ok(Err(invalid_grant("the registration is no longer active")));
                }
            }
            if let Err(e) = resource_of_grant(&grant.resource, resource) {
                return Ok(Err(e));
            }
            if let Some(used_at) = row.used_at {
                // A grace of 0 means strictly single use, even within the same second.
                let grace = ctx.config.tokens.refresh_grace_s;
                let within_grace = grace > 0 && ctx.now - used_at <= grace;
                if within_grace {
                    if let Some(previous) = row
                        .successor_sealed
                        .as_deref()
                        .and_then(|s| open(presented, s))
                    {
                        return Ok(Ok(previous));
                    }
                }
                credentials::revoke_from(conn, ctx.now, credentials::Dying::Grant(&grant.id))?;
                audit_token(
                    conn,
                    ctx,
                    AuditEvent::RefreshReuseDetected,
                    grant.client_id.as_deref(),
                    grant.user_id.as_deref(),
                    json!({ "grant_id": grant.id, "token_prefix": row.prefix }),
                )?;
                return Ok(Err(invalid_grant(
                    "refresh token was already used; the grant is revoked",
                )));
            }
            if row.expires_at <= ctx.now {
                return Ok(Err(invalid_grant("refresh token has expired")));
            }
            let granted = Scopes::parse(&grant.scope).unwrap_or_default();
            let scopes = narrow_scopes(scope, &granted)?.to_string();
            let response = issue_for_grant(conn, ctx, &grant, &scopes, true)?;
            if !db::tokens::mark_refresh_used(
                conn,
                hash.as_str(),
                ctx.now,
                &seal(presented, &response)?,
            )? {
                // Lost a race: undo what this attempt issued and look again.
                return Err(AppError::Conflict);
            }
            audit_token(
                conn,
                ctx,
                AuditEvent::TokenRefreshed,
                grant.client_id.as_deref(),
                grant.user_id.as_deref(),
                json!({ "grant_id": grant.id, "scope": scopes }),
            )?;
            Ok(Ok(response))
        });
        match outcome {
            Ok(result) => return result,
            Err(AppError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(invalid_grant("refresh token was used concurrently; retry"))
}

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
}

fn required<'a>(v: &'a Option<String>, name: &'static str) -> AppResult<&'a str> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::protocol(ErrorCode::InvalidRequest, format!("{name} is required")))
}

/// `POST /oauth2/token`: authenticates the client (when one is presented), then runs the
/// requested grant. Only agent grants (identity assertions and their refresh tokens) may come
/// without a client.
pub fn token_request(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    auth: Option<&ClientAuth>,
    req: &TokenRequest,
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
        GRANT_AUTHORIZATION_CODE => exchange_code(
            conn,
            ctx,
            need_client()?,
            required(&req.code, "code")?,
            req.redirect_uri.as_deref(),
            req.code_verifier.as_deref(),
            req.resource.as_deref(),
        ),
        GRANT_REFRESH_TOKEN => refresh(
            conn,
            ctx,
            client.as_ref(),
            required(&req.refresh_token, "refresh_token")?,
            req.scope.as_deref(),
            req.resource.as_deref(),
        ),
        GRANT_CLIENT_CREDENTIALS => client_credentials(
            conn,
            ctx,
            need_client()?,
            req.scope.as_deref(),
            req.resource.as_deref(),
        ),
        GRANT_JWT_BEARER => match &req.id_jag {
            Some(v) => agents::exchange_id_jag(
                conn,
                ctx,
                need_client()?,
                v,
                req.scope.as_deref(),
                req.resource.as_deref(),
            ),
            None => agents::exchange_identity_assertion(
                conn,
                ctx,
                client.as_ref(),
                required(&req.assertion, "assertion")?,
                req.scope.as_deref(),
                req.resource.as_deref(),
            ),
        },
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

/// RFC 7662 answer. Inactive tokens answer `{"active": false}` only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// For a linked agent: the user who owns it (`sub` stays the agent principal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_sub: Option<String>,
    /// For agent credentials: the registration they belong to and whether it is claimed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_registration: Option<serde_json::Value>,
    /// For workspace tokens: the one workspace the token may act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

impl Introspection {
    pub fn inactive() -> Self {
        Self::default()
    }
}

/// Whether an introspection caller may introspect: a confidential client, authenticated, with
/// `can_introspect`. `client` reads the caller's row by id.
fn check_introspection_caller(
    auth: &ClientAuth,
    client: impl FnOnce(&str) -> AppResult<Option<ClientRow>>,
) -> AppResult<()> {
    let ClientAuth::Secret { client_id, .. } = auth else {
        return Err(AppError::protocol(
            ErrorCode::InvalidClient,
            "introspection needs client authentication",
        ));
    };
    if !clients::authenticate_row(auth, client(client_id)?)?.can_introspect {
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
) -> AppResult<Introspection> {
    if let Some(auth) = caller {
        check_introspection_caller(auth, |id| Ok(db::clients::find(conn, id)?))?;
    }
    credentials::introspect(conn, config, keys, now, token)
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
    Ok(match credentials::access_live(row, now) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a+".repeat(30)));
    }

    #[test]
    fn sealed_successor_opens_only_with_the_presented_token() {
        let response = TokenResponse {
            access_token: "at_x".into(),
            token_type: "Bearer".into(),
            expires_in: 60,
            scope: "a".into(),
            refresh_token: Some("rt_y".into()),
        };
        let sealed = seal("rt_presented", &response).unwrap();
        assert_eq!(open("rt_presented", &sealed), Some(response));
        assert_eq!(open("rt_other", &sealed), None);
        assert!(!String::from_utf8_lossy(&sealed).contains("at_x"));
    }

    #[test]
    fn resources_resolve() {
        let config =
            Config::from_toml_overlay("[server]\nresources = [\"https://api.example\"]").unwrap();
        assert_eq!(
            resolve_resource(&config, None).unwrap(),
            "https://api.example"
        );
        assert_eq!(
            resolve_resource(&config, Some("https://api.example")).unwrap(),
            "https://api.example"
        );
        let err = resolve_resource(&config, Some("https://evil.example")).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidTarget));
    }
}
