//! OpenID Connect Core 1.0 for the code flow: the `openid`, `email` and `profile` scopes, the
//! ID token, userinfo, and the `prompt` / `max_age` rules of the authorization request.
//!
//! The ID token is signed RS256 unless the client registered
//! `id_token_signed_response_alg: "ES256"` (§15.1 makes RS256 the one algorithm every relying
//! party can count on). Its `sub` is the user's id, its `aud` the client, `auth_time` the
//! start of the session the person approved from, `at_hash` the left half of the SHA-256 of
//! the access token issued beside it (§3.1.3.6; SHA-256 for both algorithms).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::Serialize;

use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::{self, DbConn};
use crate::domain::clients::Client;
use crate::domain::context::Ctx;
use crate::domain::credentials::{self, Kind, RecordUse};
use crate::domain::keys::KeyRing;
use crate::domain::scope::Scopes;
use crate::domain::users::User;
use crate::error::{AppError, AppResult};

pub const OPENID: &str = "openid";
pub const EMAIL: &str = "email";
pub const PROFILE: &str = "profile";
/// Scopes open to every code-flow client without registering them.
pub const SCOPES: [&str; 3] = [OPENID, EMAIL, PROFILE];
/// The values of `id_token_signed_response_alg` authmd can honour.
pub const ID_TOKEN_ALGS: [&str; 2] = ["RS256", "ES256"];
/// Claims userinfo and ID tokens may carry.
pub const CLAIMS: [&str; 9] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "email",
    "email_verified",
];

/// What a code-flow client may ask for: its own scopes, and the OpenID scopes when OpenID
/// Connect is on.
pub fn code_flow_scopes(config: &Config, client: &Client) -> Scopes {
    let own = client.scopes();
    if !config.oauth.oidc.enabled {
        return own;
    }
    let mut all: Vec<String> = own.iter().map(str::to_owned).collect();
    all.extend(SCOPES.iter().map(|s| (*s).to_owned()));
    Scopes::from_list(&all)
}

/// Whether a grant's scope asks for OpenID Connect (and the deployment speaks it).
pub fn wants_id_token(config: &Config, scope: &str) -> bool {
    config.oauth.oidc.enabled && Scopes::parse(scope).is_some_and(|s| s.contains(OPENID))
}

/// The algorithm a client's ID tokens are signed with.
pub fn id_token_alg(client: &Client) -> Algorithm {
    match client.metadata["id_token_signed_response_alg"].as_str() {
        Some("ES256") => Algorithm::ES256,
        _ => Algorithm::RS256,
    }
}

/// `prompt` of an authorization request (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

impl Prompt {
    /// Parses the space-separated list; `none` may not be combined with anything else.
    /// `select_account` is accepted and means nothing here: a browser holds one session.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        let mut prompt = Prompt::default();
        let Some(value) = value else {
            return Ok(prompt);
        };
        let mut count = 0;
        for v in value.split(' ').filter(|v| !v.is_empty()) {
            count += 1;
            match v {
                "none" => prompt.none = true,
                "login" => prompt.login = true,
                "consent" => prompt.consent = true,
                "select_account" => {}
                other => return Err(format!("prompt value {other:?} is not supported")),
            }
        }
        if prompt.none && count > 1 {
            return Err("prompt=none cannot be combined with other values".into());
        }
        Ok(prompt)
    }
}

/// Parses `max_age`: a non-negative number of seconds.
pub fn parse_max_age(value: Option<&str>) -> Result<Option<i64>, String> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| "max_age must be a non-negative number of seconds".to_owned()),
    }
}

/// Whether the person must sign in again: `prompt=login`, or a session older than `max_age`.
pub fn needs_fresh_login(
    prompt: Prompt,
    max_age: Option<i64>,
    auth_time: UnixTime,
    now: UnixTime,
) -> bool {
    prompt.login || max_age.is_some_and(|max| now - auth_time > max)
}

/// `at_hash`: base64url of the left half of the SHA-256 of the access token.
pub fn at_hash(access_token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}

#[derive(Debug, Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
}

/// What an ID token says beyond the user and the client.
pub struct IdTokenFacts<'a> {
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: UnixTime,
    pub access_token: &'a str,
}

/// Signs the ID token issued beside `facts.access_token`.
pub fn id_token(
    ctx: &Ctx<'_>,
    client: &Client,
    user: &User,
    facts: &IdTokenFacts<'_>,
) -> AppResult<String> {
    let scopes = Scopes::parse(facts.scope).unwrap_or_default();
    let with_email = scopes.contains(EMAIL);
    let claims = IdTokenClaims {
        iss: &ctx.config.server.issuer,
        sub: &user.id,
        aud: &client.client_id,
        exp: ctx.now + ctx.config.tokens.access_token_ttl_s,
        iat: ctx.now,
        auth_time: facts.auth_time,
        nonce: facts.nonce,
        at_hash: at_hash(facts.access_token),
        email: with_email.then_some(user.email.as_str()),
        email_verified: with_email.then_some(user.email_verified),
    };
    ctx.keys.sign_as(id_token_alg(client), None, &claims)
}

/// [`id_token`] for a user known by id (read inside the caller's transaction).
pub fn id_token_for(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    user_id: &str,
    facts: &IdTokenFacts<'_>,
) -> AppResult<String> {
    let user = db::users::find(conn, user_id)?
        .map(User::from)
        .ok_or_else(|| AppError::internal(format!("grant for a missing user {user_id}")))?;
    id_token(ctx, client, &user, facts)
}

/// The userinfo answer (§5.3): `sub`, and the email claims when the token has `email`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// Userinfo for a user and the scope of the token presented; the token must carry `openid`.
pub fn userinfo(user: &User, scope: &Scopes) -> AppResult<UserInfo> {
    if !scope.contains(OPENID) {
        return Err(AppError::insufficient_scope(OPENID));
    }
    let with_email = scope.contains(EMAIL);
    Ok(UserInfo {
        sub: user.id.clone(),
        email: with_email.then(|| user.email.clone()),
        email_verified: with_email.then_some(user.email_verified),
    })
}

/// `/userinfo` for a bearer credential. `Ok(None)`: not a live access token (401). A live
/// one without `openid`, or not speaking for a person, is `403 insufficient_scope`. Only
/// access tokens are read here (none of the kinds that record their last use), so this never
/// writes.
pub fn userinfo_for_bearer(
    conn: &mut DbConn,
    config: &Config,
    keys: &KeyRing,
    now: UnixTime,
    token: &str,
) -> AppResult<Option<UserInfo>> {
    let Some(presented) = credentials::recognise(config, keys, token) else {
        return Ok(None);
    };
    if !matches!(presented.kind, Kind::AccessToken | Kind::AccessJwt) {
        return Ok(None);
    }
    let Some(live) = credentials::resolve(conn, config, now, &presented, RecordUse::Yes)? else {
        return Ok(None);
    };
    let scope = Scopes::parse(&live.scope).unwrap_or_default();
    let user = match &live.user_id {
        Some(id) if scope.contains(OPENID) => db::users::find(conn, id)?.map(User::from),
        _ => None,
    };
    let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
        return Err(AppError::insufficient_scope(OPENID));
    };
    userinfo(&user, &scope).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OpenID Connect Core, Appendix A.3: access token and its at_hash.
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn prompt_and_max_age() {
        assert_eq!(Prompt::parse(None).unwrap(), Prompt::default());
        let p = Prompt::parse(Some("login consent")).unwrap();
        assert!(p.login && p.consent && !p.none);
        assert!(Prompt::parse(Some("none login")).is_err());
        assert!(Prompt::parse(Some("bogus")).is_err());
        assert!(Prompt::parse(Some("select_account")).is_ok());
        assert_eq!(parse_max_age(Some("300")).unwrap(), Some(300));
        assert!(parse_max_age(Some("-1")).is_err());
        assert!(parse_max_age(Some("x")).is_err());
        assert!(needs_fresh_login(Prompt::default(), Some(60), 1000, 1061));
        assert!(!needs_fresh_login(Prompt::default(), Some(60), 1000, 1060));
        assert!(needs_fresh_login(p, None, 1000, 1000));
    }
}
