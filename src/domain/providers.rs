//! Trusted agent providers: their JWKS (fetched over HTTP, cached, refetched once when a `kid`
//! is unknown) and the verification of what they sign — ID-JAGs (identity assertion
//! authorization grants) and logout tokens. Replay (`jti`) is checked later, in the database,
//! so it holds across restarts and instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::clock::UnixTime;
use crate::config::{Config, TrustedProvider};
use crate::domain::discovery::LOGOUT_EVENT;
use crate::error::{ErrorCode, ProtocolError};

pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// OpenID Back-Channel Logout 1.0 §2.4: logout tokens are explicitly typed.
pub const LOGOUT_TYP: &str = "logout+jwt";
/// RFC 8417 §2.3: Security Event Tokens are typed `secevent+jwt`.
pub const SET_TYP: &str = "secevent+jwt";
/// The auth.md event that revokes a provider identity's registrations and credentials.
pub const IDENTITY_REVOKED_EVENT: &str =
    "https://schemas.workos.com/events/agent/auth/identity/assertion/revoked";
/// How far in the future an `iat` may be (clock skew).
const MAX_IAT_SKEW_S: i64 = 120;
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// A provider that has not answered by then is treated as unavailable.
const JWKS_FETCH_TIMEOUT_S: u64 = 5;
/// A JWKS is refetched when older than this, or once when a `kid` is unknown.
const JWKS_TTL_S: i64 = 300;

fn fail(code: ErrorCode, msg: impl Into<String>) -> ProtocolError {
    ProtocolError::new(code, msg.into())
}

/// The claims of a verified ID-JAG that authmd uses.
#[derive(Debug, Clone)]
pub struct VerifiedIdJag {
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub exp: i64,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone_number: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    /// When the person last signed in at the provider (OIDC `auth_time`).
    pub auth_time: Option<i64>,
}

/// A provider's verified word to revoke everything issued for `(iss, sub)`: a logout token
/// (auth.md v0.1) or a Security Event Token carrying the revocation event (v0.3 and later).
#[derive(Debug, Clone)]
pub struct VerifiedLogout {
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub exp: i64,
}

#[derive(Debug, Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Value>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
    email: Option<String>,
    email_verified: Option<Value>,
    phone_number: Option<String>,
    phone_number_verified: Option<Value>,
    client_id: Option<String>,
    scope: Option<String>,
    events: Option<Value>,
    auth_time: Option<i64>,
}

fn truthy(v: &Option<Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || matches!(v, Some(Value::String(s)) if s == "true")
}

fn audience_contains(aud: &Option<Value>, expected: &str) -> bool {
    match aud {
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(expected)),
        _ => false,
    }
}

/// The `iss` a JWT claims, unverified: only to pick who must verify it.
pub fn unverified_issuer(token: &str) -> Option<String> {
    jsonwebtoken::dangerous::insecure_decode::<RawClaims>(token)
        .ok()?
        .claims
        .iss
}

struct CachedJwks {
    fetched_at: UnixTime,
    keys: JwkSet,
}

/// What is known of one provider's keys.
#[derive(Default)]
struct ProviderState {
    cached: Option<CachedJwks>,
    /// The last fetch started, successful or not: no other starts for
    /// `agent.jwks_min_refetch_s`, so strangers cannot drive fetches at a provider.
    attempted_at: Option<UnixTime>,
}

/// Fetches and caches providers' keys. Reads take a short lock; a fetch holds only its own
/// provider's async lock, so one fetch is in flight per provider and a slow provider stalls
/// no other provider's verifications.
pub struct ProviderKeys {
    http: reqwest::Client,
    state: StdMutex<HashMap<String, ProviderState>>,
    fetching: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Default for ProviderKeys {
    fn default() -> Self {
        Self::new()
    }
}

type FoundKey = (DecodingKey, Option<Algorithm>);

fn find_key(set: &JwkSet, kid: Option<&str>) -> Option<FoundKey> {
    let jwk = match kid {
        Some(kid) => set.find(kid)?,
        None if set.keys.len() == 1 => &set.keys[0],
        None => return None,
    };
    let alg = jwk
        .common
        .key_algorithm
        .and_then(|a| a.to_string().parse::<Algorithm>().ok());
    DecodingKey::from_jwk(jwk).ok().map(|k| (k, alg))
}

/// What the cache says about a key, without fetching.
enum Lookup {
    Found(FoundKey),
    /// Not found, and a fetch may start now.
    Fetch,
    /// Not found, and the last fetch was too recent to start another.
    Missing,
}

impl ProviderKeys {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(JWKS_FETCH_TIMEOUT_S))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client builds");
        Self {
            http,
            state: StdMutex::new(HashMap::new()),
            fetching: StdMutex::new(HashMap::new()),
        }
    }

    fn lookup(&self, issuer: &str, kid: Option<&str>, now: UnixTime, min_refetch: i64) -> Lookup {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(p) = state.get(issuer) else {
            return Lookup::Fetch;
        };
        if let Some(c) = &p.cached {
            if now - c.fetched_at < JWKS_TTL_S {
                if let Some(found) = find_key(&c.keys, kid) {
                    return Lookup::Found(found);
                }
            }
        }
        match p.attempted_at {
            Some(t) if now - t < min_refetch => match &p.cached {
                // Stale keys still verify while a refetch is not allowed yet.
                Some(c) => find_key(&c.keys, kid).map_or(Lookup::Missing, Lookup::Found),
                None => Lookup::Missing,
            },
            _ => Lookup::Fetch,
        }
    }

    async fn fetch(&self, provider: &TrustedProvider) -> Result<JwkSet, ProtocolError> {
        let unavailable = |e: String| {
            tracing::warn!(issuer = %provider.issuer, error = %e, "fetching provider JWKS failed");
            fail(
                ErrorCode::InvalidSignature,
                format!("the keys of {} could not be fetched", provider.issuer),
            )
        };
        let mut resp = self
            .http
            .get(&provider.jwks_uri)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("status {}", resp.status())));
        }
        if resp
            .content_length()
            .is_some_and(|n| n as usize > MAX_JWKS_BYTES)
        {
            return Err(unavailable("JWKS too large".into()));
        }
        // Read at most MAX_JWKS_BYTES, whatever the headers claimed.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(e.to_string()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(unavailable("JWKS too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("not a JWK set: {e}")))
    }

    /// The key for `kid`, from the cache or one (re)fetch.
    async fn key(
        &self,
        config: &Config,
        provider: &TrustedProvider,
        kid: Option<&str>,
        now: UnixTime,
    ) -> Result<FoundKey, ProtocolError> {
        let min_refetch = config.agent.jwks_min_refetch_s;
        let no_key = || {
            fail(
                ErrorCode::InvalidSignature,
                "no key of the issuer matches the token's kid",
            )
        };
        match self.lookup(&provider.issuer, kid, now, min_refetch) {
            Lookup::Found(found) => return Ok(found),
            Lookup::Missing => return Err(no_key()),
            Lookup::Fetch => {}
        }
        let lock = {
            let mut fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
            fetching.entry(provider.issuer.clone()).or_default().clone()
        };
        let _in_flight = lock.lock().await;
        // Whoever held the lock before may have fetched what this request needs.
        match self.lookup(&provider.issuer, kid, now, min_refetch) {
            Lookup::Found(found) => return Ok(found),
            Lookup::Missing => return Err(no_key()),
            Lookup::Fetch => {}
        }
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(provider.issuer.clone())
            .or_default()
            .attempted_at = Some(now);
        let keys = self.fetch(provider).await?;
        let found = find_key(&keys, kid);
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(provider.issuer.clone())
            .or_default()
            .cached = Some(CachedJwks {
            fetched_at: now,
            keys,
        });
        found.ok_or_else(no_key)
    }

    /// Signature, issuer and header checks shared by ID-JAGs and logout tokens.
    ///
    /// `exp_required`: ID-JAGs and logout tokens must carry `exp`; a Security Event Token
    /// usually does not (RFC 8417 §2.2), and is then judged from `iat` (or its arrival) with the
    /// longest accepted lifetime, which also bounds how long its `jti` is remembered.
    async fn verify(
        &self,
        config: &Config,
        now: UnixTime,
        token: &str,
        expected_typ: &str,
        exp_required: bool,
        audiences: &[&str],
    ) -> Result<RawClaims, ProtocolError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| fail(ErrorCode::InvalidRequest, "the assertion is not a JWT"))?;
        // RFC 8725 §3.11: each kind of JWT has its own typ, so one cannot pass for another.
        let typ = header.typ.as_deref().unwrap_or_default();
        let typ = typ.strip_prefix("application/").unwrap_or(typ);
        if !typ.eq_ignore_ascii_case(expected_typ) {
            return Err(fail(
                ErrorCode::InvalidRequest,
                format!("typ must be {expected_typ}"),
            ));
        }
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(fail(
                ErrorCode::InvalidSignature,
                "symmetric algorithms are not accepted",
            ));
        }
        let unverified: RawClaims = jsonwebtoken::dangerous::insecure_decode(token)
            .map(|d| d.claims)
            .map_err(|_| {
                fail(
                    ErrorCode::InvalidRequest,
                    "the assertion's claims are malformed",
                )
            })?;
        let iss = unverified
            .iss
            .clone()
            .ok_or_else(|| fail(ErrorCode::InvalidRequest, "iss is missing"))?;
        let provider = config
            .agent
            .trusted_providers
            .iter()
            .find(|p| p.issuer == iss)
            .ok_or_else(|| {
                fail(
                    ErrorCode::IssuerNotEnabled,
                    format!("issuer {iss} is not trusted"),
                )
            })?;
        let (key, key_alg) = self
            .key(config, provider, header.kid.as_deref(), now)
            .await?;
        if key_alg.is_some_and(|a| a != header.alg) {
            return Err(fail(
                ErrorCode::InvalidSignature,
                "the token's alg does not match its key",
            ));
        }
        let mut validation = Validation::new(header.alg);
        // Time and audience are checked below against authmd's own clock and issuer.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut claims = jsonwebtoken::decode::<RawClaims>(token, &key, &validation)
            .map_err(|_| fail(ErrorCode::InvalidSignature, "signature verification failed"))?
            .claims;
        if !exp_required && claims.exp.is_none() {
            claims.exp = Some(claims.iat.unwrap_or(now) + config.agent.max_assertion_lifetime_s);
        }
        if !audiences.iter().any(|a| audience_contains(&claims.aud, a)) {
            return Err(fail(
                ErrorCode::InvalidAudience,
                format!("aud must be one of {}", audiences.join(", ")),
            ));
        }
        match claims.exp {
            Some(exp) if exp > now => {}
            Some(_) => {
                return Err(fail(
                    ErrorCode::CredentialExpired,
                    "the assertion has expired",
                ))
            }
            None => return Err(fail(ErrorCode::InvalidRequest, "exp is missing")),
        }
        if claims.iat.is_some_and(|iat| iat > now + MAX_IAT_SKEW_S) {
            return Err(fail(ErrorCode::InvalidRequest, "iat is in the future"));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + MAX_IAT_SKEW_S) {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "the assertion is not valid yet (nbf)",
            ));
        }
        // A long-lived assertion is a bearer credential in all but name: bound its lifetime.
        let exp = claims.exp.unwrap_or_default();
        let lifetime = exp - claims.iat.unwrap_or(now);
        if lifetime > config.agent.max_assertion_lifetime_s {
            return Err(fail(
                ErrorCode::InvalidRequest,
                format!(
                    "the assertion lives too long: exp - iat must be at most {} s",
                    config.agent.max_assertion_lifetime_s
                ),
            ));
        }
        if claims.jti.as_deref().is_none_or(str::is_empty) {
            return Err(fail(ErrorCode::InvalidRequest, "jti is missing"));
        }
        if claims.sub.as_deref().is_none_or(str::is_empty) {
            return Err(fail(ErrorCode::InvalidRequest, "sub is missing"));
        }
        Ok(claims)
    }

    /// An ID-JAG at the token endpoint or at `/agent/auth`: `aud` must be the issuer
    /// (draft-ietf-oauth-identity-assertion-authz-grant: the ID-JAG is made out to the
    /// authorization server that redeems it).
    pub async fn verify_id_jag(
        &self,
        config: &Config,
        now: UnixTime,
        token: &str,
    ) -> Result<VerifiedIdJag, ProtocolError> {
        self.verify_id_jag_for(config, now, token, &[config.server.issuer.as_str()])
            .await
    }

    /// An ID-JAG at `/agent/identity`: auth.md v0.6 tells agents to mint it for the protected
    /// resource's `resource`, so `aud` may be the issuer or any configured resource.
    pub async fn verify_id_jag_at_identity(
        &self,
        config: &Config,
        now: UnixTime,
        token: &str,
    ) -> Result<VerifiedIdJag, ProtocolError> {
        let mut audiences = vec![config.server.issuer.as_str()];
        audiences.extend(config.server.resources.iter().map(String::as_str));
        self.verify_id_jag_for(config, now, token, &audiences).await
    }

    async fn verify_id_jag_for(
        &self,
        config: &Config,
        now: UnixTime,
        token: &str,
        audiences: &[&str],
    ) -> Result<VerifiedIdJag, ProtocolError> {
        let c = self
            .verify(config, now, token, ID_JAG_TYP, true, audiences)
            .await?;
        let email_verified = truthy(&c.email_verified) && c.email.is_some();
        let phone_verified = truthy(&c.phone_number_verified) && c.phone_number.is_some();
        if !email_verified && !phone_verified {
            return Err(fail(
                ErrorCode::MissingVerifiedEmail,
                "email_verified or phone_number_verified must be true",
            ));
        }
        Ok(VerifiedIdJag {
            iss: c.iss.unwrap_or_default(),
            sub: c.sub.unwrap_or_default(),
            jti: c.jti.unwrap_or_default(),
            exp: c.exp.unwrap_or_default(),
            email: c.email,
            email_verified,
            phone_number: c.phone_number.filter(|_| phone_verified),
            client_id: c.client_id,
            scope: c.scope,
            auth_time: c.auth_time,
        })
    }

    /// Verifies an `application/secevent+jwt` body (RFC 8417, pushed per RFC 8935). `None`: a
    /// well-formed SET carrying no event authmd acts on (RFC 8417 §2.2: ignored, still accepted).
    pub async fn verify_security_event(
        &self,
        config: &Config,
        now: UnixTime,
        token: &str,
    ) -> Result<Option<VerifiedLogout>, ProtocolError> {
        let c = self
            .verify(
                config,
                now,
                token,
                SET_TYP,
                false,
                &[config.server.issuer.as_str()],
            )
            .await?;
        let Some(events) = c
            .events
            .as_ref()
            .and_then(Value::as_object)
            .filter(|e| !e.is_empty())
        else {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "events must be a non-empty object keyed by event type",
            ));
        };
        if !events.contains_key(IDENTITY_REVOKED_EVENT) {
            return Ok(None);
        }
        Ok(Some(VerifiedLogout {
            iss: c.iss.unwrap_or_default(),
            sub: c.sub.unwrap_or_default(),
            jti: c.jti.unwrap_or_default(),
            exp: c.exp.unwrap_or_default(),
        }))
    }

    /// Verifies an `application/logout+jwt` body (OpenID Back-Channel Logout shape).
    pub async fn verify_logout(
        &self,
        config: &Config,
        now: UnixTime,
        token: &str,
    ) -> Result<VerifiedLogout, ProtocolError> {
        let c = self
            .verify(
                config,
                now,
                token,
                LOGOUT_TYP,
                true,
                &[config.server.issuer.as_str()],
            )
            .await?;
        let has_event = c
            .events
            .as_ref()
            .and_then(Value::as_object)
            .is_some_and(|e| e.contains_key(LOGOUT_EVENT));
        if !has_event {
            return Err(fail(
                ErrorCode::InvalidRequest,
                format!("events must contain {LOGOUT_EVENT}"),
            ));
        }
        Ok(VerifiedLogout {
            iss: c.iss.unwrap_or_default(),
            sub: c.sub.unwrap_or_default(),
            jti: c.jti.unwrap_or_default(),
            exp: c.exp.unwrap_or_default(),
        })
    }
}
