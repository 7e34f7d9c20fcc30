//! Making credentials: access tokens (opaque or RFC 9068 JWT), rotating refresh tokens, and the
//! identity assertions authmd signs for agents. Every token is stored (or, for an assertion,
//! its `jti` is checked at use) so that revocation and introspection see it.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::config::{AccessTokenFormat, Config};
use crate::db::agents::{ApiKeyRow, RegistrationRow};
use crate::db::status::{CredentialType, TokenFormat};
use crate::db::tokens::{AccessTokenRow, GrantRow, RefreshTokenRow};
use crate::db::{self, DbConn};
use crate::domain::context::Ctx;
use crate::domain::keys::{KeyRing, Unverified};
use crate::domain::secrets::{prefix, random_id, PlainToken};
use crate::error::{AppError, AppResult, ErrorCode};

/// RFC 6749 §5.1 successful response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// OpenID Connect: with scope `openid` on the code and device flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// auth.md v0.6 claim grant: the post-claim identity assertion, the agent's way to new
    /// access tokens (there is no refresh token on that path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_assertion: Option<String>,
    /// RFC 3339 expiry of `identity_assertion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_expires: Option<String>,
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
    let (token, ttl, row) = access_row(ctx, s)?;
    db::tokens::insert_access_token(conn, &row)?;
    Ok((token, ttl))
}

/// Mints an access token and the row that stores it, for the caller to insert (with its audit
/// row, in one statement where the backend allows); returns it, its lifetime and the row.
pub fn access_row(ctx: &Ctx<'_>, s: &Subject<'_>) -> AppResult<(String, i64, AccessTokenRow)> {
    let ttl = ctx.config.tokens.access_token_ttl_s;
    let subject = s.subject;
    let (token, id, prefix_shown, format) = match ctx.config.tokens.access_token_format {
        AccessTokenFormat::Opaque => {
            let t = PlainToken::generate(prefix::ACCESS_TOKEN);
            let id = t.hash().as_str().to_owned();
            let shown = t.display_prefix();
            (t.into_string(), id, shown, TokenFormat::Opaque)
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
            let jwt = ctx.keys.sign("at+jwt", &claims)?;
            let shown = format!("jwt:{}", &jti[..8]);
            (jwt, jti, shown, TokenFormat::Jwt)
        }
    };
    let row = AccessTokenRow {
        id,
        grant_id: s.grant_id.map(str::to_owned),
        registration_id: s.registration_id.map(str::to_owned),
        client_id: s.client_id.map(str::to_owned),
        subject: subject.to_owned(),
        user_id: s.user_id.map(str::to_owned),
        scope: s.scope.to_owned(),
        audience: s.audience.to_owned(),
        prefix: prefix_shown,
        format,
        issued_at: ctx.now,
        expires_at: ctx.now + ttl,
        revoked_at: None,
    };
    Ok((token, ttl, row))
}

pub fn mint_refresh(conn: &mut DbConn, ctx: &Ctx<'_>, grant_id: &str) -> AppResult<PlainToken> {
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
        id_token: None,
        identity_assertion: None,
        assertion_expires: None,
    })
}

/// The claims of an identity assertion authmd signs for an agent registration.
#[derive(Debug, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub registration_id: String,
    pub scope: String,
    /// v0.6: the person's address, once a person owns the registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// v0.6: issued to an anonymous registration before its claim. The claim supersedes it
    /// (the claim grant returns the one to use), so it is refused once the registration is
    /// claimed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_claim: bool,
}

/// Signs an identity assertion for `reg` speaking for `subject`; returns it and its expiry.
pub fn identity_assertion(
    ctx: &Ctx<'_>,
    reg: &RegistrationRow,
    subject: &str,
) -> AppResult<(String, i64)> {
    let exp = ctx.now + ctx.config.agent.identity_assertion_ttl_s;
    let claims = AssertionClaims {
        iss: ctx.config.server.issuer.clone(),
        sub: subject.to_owned(),
        aud: ctx.config.server.issuer.clone(),
        iat: ctx.now,
        exp,
        jti: random_id(""),
        registration_id: reg.id.clone(),
        scope: reg.scopes.clone(),
        email: None,
        email_verified: None,
        pre_claim: false,
    };
    Ok((ctx.keys.sign("JWT", &claims)?, exp))
}

/// The identity assertion of an auth.md v0.6 registration (`typ` `oauth-id-jag+jwt`, as the
/// profile's reference signs it): re-exchangeable until it expires. `email` is the owner's,
/// when a person owns the registration.
pub fn identity_assertion_v06(
    ctx: &Ctx<'_>,
    reg: &RegistrationRow,
    email: Option<&str>,
) -> AppResult<(String, i64)> {
    let exp = ctx.now + ctx.config.agent.identity_assertion_ttl_s;
    let claims = AssertionClaims {
        iss: ctx.config.server.issuer.clone(),
        sub: super::subject_of(reg).to_owned(),
        aud: ctx.config.server.issuer.clone(),
        iat: ctx.now,
        exp,
        jti: random_id(""),
        registration_id: reg.id.clone(),
        scope: reg.scopes.clone(),
        email: email.map(str::to_owned),
        email_verified: email.map(|_| true),
        pre_claim: reg.claimed_at.is_none(),
    };
    Ok((
        ctx.keys
            .sign(crate::domain::providers::ID_JAG_TYP, &claims)?,
        exp,
    ))
}

/// Checks an identity assertion authmd signed: its key, `iss` and `aud` (both this server) and
/// expiry against the injected clock. Replay (`jti`) is the caller's, inside its transaction.
pub fn verify_identity_assertion(
    config: &Config,
    keys: &KeyRing,
    now: UnixTime,
    assertion: &str,
) -> AppResult<AssertionClaims> {
    let bad = |m: &'static str| AppError::protocol(ErrorCode::InvalidGrant, m);
    let issuer = &config.server.issuer;
    let (_, claims) = keys
        .verify::<AssertionClaims>(assertion, issuer, Some(issuer))
        .map_err(|e| match e {
            Unverified::NotJwt => bad("assertion is not a JWT"),
            Unverified::UnknownKey => bad("assertion signature: unknown key"),
            Unverified::Audience => bad("assertion aud must be the issuer"),
            Unverified::Issuer => bad("assertion iss is not this server"),
            Unverified::Signature => bad("assertion signature verification failed"),
        })?;
    if claims.exp <= now {
        return Err(bad("assertion has expired"));
    }
    Ok(claims)
}

/// A credential issued to an agent (shown once).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Issued {
    /// `api_key`, `access_token` or `identity_assertion`.
    pub credential_type: String,
    pub credential: String,
    /// Unix time; `null` for API keys, which live as long as their registration.
    pub credential_expires: Option<i64>,
    pub scopes: Vec<String>,
}

impl Issued {
    pub fn new(
        kind: CredentialType,
        credential: String,
        expires: Option<i64>,
        scopes: &str,
    ) -> Self {
        Self {
            credential_type: kind.as_str().to_owned(),
            credential,
            credential_expires: expires,
            scopes: crate::domain::scope::list(scopes),
        }
    }
}

/// Mints a credential of `kind` for a registration; returns it and its expiry (None: none).
pub fn for_registration(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    reg: &RegistrationRow,
    kind: CredentialType,
) -> AppResult<(String, Option<i64>)> {
    let subject = super::subject_of(reg).to_owned();
    match kind {
        CredentialType::ApiKey => {
            let key = PlainToken::generate(&ctx.config.tokens.prefixes.api_key);
            db::agents::insert_api_key(
                conn,
                &ApiKeyRow {
                    key_hash: key.hash().as_str().to_owned(),
                    registration_id: reg.id.clone(),
                    prefix: key.display_prefix(),
                    created_at: ctx.now,
                    last_used_at: None,
                    revoked_at: None,
                },
            )?;
            Ok((key.into_string(), None))
        }
        CredentialType::AccessToken => {
            let (token, ttl) = mint_access(
                conn,
                ctx,
                &Subject {
                    grant_id: None,
                    client_id: None,
                    registration_id: Some(&reg.id),
                    subject: &subject,
                    user_id: reg.user_id.as_deref(),
                    scope: &reg.scopes,
                    audience: ctx.config.default_resource(),
                },
            )?;
            Ok((token, Some(ctx.now + ttl)))
        }
        CredentialType::IdentityAssertion => {
            let (jwt, exp) = identity_assertion(ctx, reg, &subject)?;
            Ok((jwt, Some(exp)))
        }
    }
}
