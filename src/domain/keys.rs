//! Signing keys: ES256 (P-256) pairs made with `ring`, kept in the database, published as JWKS.
//!
//! Exactly one key signs (the newest unretired one). Rotation retires it and creates another;
//! a retired key stays published while a token it signed can still be valid, i.e. for the
//! longest lifetime of anything authmd signs.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::{self, keys::SigningKeyRow, DbConn};
use crate::domain::audit::{self, AuditContext, AuditEntry, AuditEvent};
use crate::error::{AppError, AppResult};

pub const ALG: &str = "ES256";

/// A usable key: the row plus parsed signing and verification halves.
pub struct SigningKey {
    pub kid: String,
    pub created_at: UnixTime,
    pub retired_at: Option<UnixTime>,
    pub public_jwk: Value,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
}

impl SigningKey {
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// What `keys list` shows: no private material.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at: UnixTime,
    pub retired_at: Option<UnixTime>,
    pub published: bool,
}

/// The keys a server instance uses: one signer and everything published.
pub struct KeyRing {
    pub signer: Arc<SigningKey>,
    pub published: Vec<Arc<SigningKey>>,
}

impl KeyRing {
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.published.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>() })
    }

    pub fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.published.iter().find(|k| k.kid == kid)
    }

    /// Signs `claims` with the current key; `typ` goes in the header (RFC 8725 §3.11).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> AppResult<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.signer.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signer.encoding)
            .map_err(|e| AppError::internal(format!("signing a {typ}: {e}")))
    }

    /// Verifies a JWT one of these keys signed with `issuer` as `iss` (and `audience` as `aud`
    /// when given). Expiry is not checked here: callers judge `exp` against the injected clock.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: Option<&str>,
    ) -> Result<(Header, T), Unverified> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Unverified::NotJwt)?;
        if header.alg != Algorithm::ES256 {
            return Err(Unverified::Signature);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|k| self.find(k))
            .ok_or(Unverified::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[issuer]);
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data =
            jsonwebtoken::decode::<T>(token, &key.decoding, &validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => Unverified::Audience,
                    jsonwebtoken::errors::ErrorKind::InvalidIssuer => Unverified::Issuer,
                    _ => Unverified::Signature,
                }
            })?;
        Ok((header, data.claims))
    }
}

/// Why [`KeyRing::verify`] refused a JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverified {
    NotJwt,
    UnknownKey,
    Issuer,
    Audience,
    /// A bad signature, a wrong algorithm, or claims that do not parse.
    Signature,
}

/// How long a retired key must stay published: the longest lifetime of anything signed.
pub fn retention_s(config: &Config) -> i64 {
    config
        .tokens
        .access_token_ttl_s
        .max(config.agent.identity_assertion_ttl_s)
}

fn generate(now: UnixTime) -> AppResult<SigningKeyRow> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| AppError::internal("P-256 key generation failed"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| AppError::internal("generated P-256 key does not parse"))?;
    // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
    let point = pair.public_key().as_ref();
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..65]),
    );
    let kid = thumbprint(&x, &y);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "kid": kid, "alg": ALG, "use": "sig",
    });
    Ok(SigningKeyRow {
        kid,
        alg: ALG.to_owned(),
        private_key: pkcs8.as_ref().to_vec(),
        public_jwk: jwk.to_string(),
        created_at: now,
        retired_at: None,
    })
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn parse(row: &SigningKeyRow) -> AppResult<SigningKey> {
    let jwk: Value = serde_json::from_str(&row.public_jwk)
        .map_err(|e| AppError::internal(format!("key {}: bad public JWK: {e}", row.kid)))?;
    let (x, y) = match (jwk["x"].as_str(), jwk["y"].as_str()) {
        (Some(x), Some(y)) => (x, y),
        _ => {
            return Err(AppError::internal(format!(
                "key {}: JWK lacks x/y",
                row.kid
            )))
        }
    };
    let decoding = DecodingKey::from_ec_components(x, y)
        .map_err(|e| AppError::internal(format!("key {}: {e}", row.kid)))?;
    Ok(SigningKey {
        kid: row.kid.clone(),
        created_at: row.created_at,
        retired_at: row.retired_at,
        public_jwk: jwk,
        encoding: EncodingKey::from_ec_der(&row.private_key),
        decoding,
    })
}

/// Creates a signing key when none is active. Returns whether one was created.
pub fn ensure_signing_key(conn: &mut DbConn, now: UnixTime) -> AppResult<bool> {
    db::write_tx(conn, |conn| {
        if !db::keys::active(conn)?.is_empty() {
            return Ok(false);
        }
        db::keys::insert(conn, &generate(now)?)?;
        Ok(true)
    })
}

/// Retires the active key and creates a new one, in one transaction.
pub fn rotate(conn: &mut DbConn, now: UnixTime, ctx: &AuditContext) -> AppResult<KeyInfo> {
    db::write_tx(conn, |conn| {
        let previous: Vec<String> = db::keys::active(conn)?.into_iter().map(|k| k.kid).collect();
        db::keys::retire_active(conn, now)?;
        let row = generate(now)?;
        db::keys::insert(conn, &row)?;
        audit::record(
            conn,
            now,
            ctx,
            AuditEvent::KeyRotated,
            AuditEntry {
                detail: Some(json!({ "kid": row.kid, "retired": previous })),
                ..Default::default()
            },
        )?;
        Ok(KeyInfo {
            kid: row.kid,
            alg: row.alg,
            created_at: row.created_at,
            retired_at: None,
            published: true,
        })
    })
}

pub fn list(conn: &mut DbConn, now: UnixTime, config: &Config) -> AppResult<Vec<KeyInfo>> {
    let since = now - retention_s(config);
    Ok(db::keys::all(conn)?
        .into_iter()
        .map(|k| KeyInfo {
            published: k.retired_at.is_none_or(|r| r > since),
            kid: k.kid,
            alg: k.alg,
            created_at: k.created_at,
            retired_at: k.retired_at,
        })
        .collect())
}

/// Loads the signer and the published keys.
pub fn load_ring(conn: &mut DbConn, now: UnixTime, config: &Config) -> AppResult<KeyRing> {
    let rows = db::keys::published(conn, now - retention_s(config))?;
    let published = rows
        .iter()
        .map(|row| parse(row).map(Arc::new))
        .collect::<AppResult<Vec<_>>>()?;
    // Newest first: if two instances raced to create the first key, the newest signs.
    let signer = published
        .iter()
        .find(|k| k.retired_at.is_none())
        .cloned()
        .ok_or_else(|| AppError::internal("no active signing key"))?;
    Ok(KeyRing { signer, published })
}

/// A 256-bit server secret by name (created on first use, shared through the database).
pub fn server_secret(conn: &mut DbConn, now: UnixTime, name: &str) -> AppResult<Vec<u8>> {
    let fresh = crate::domain::secrets::random_bytes();
    Ok(db::keys::server_secret(conn, name, &fresh, now)?)
}

#[cfg(test)]
impl KeyRing {
    /// A ring with one freshly generated key, for unit tests.
    pub fn for_tests() -> Self {
        let key = Arc::new(parse(&generate(1_700_000_000).unwrap()).unwrap());
        Self {
            signer: key.clone(),
            published: vec![key],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_signs_and_verifies() {
        let row = generate(1_700_000_000).unwrap();
        let key = parse(&row).unwrap();
        assert_eq!(key.public_jwk["kid"], row.kid);
        assert_eq!(key.public_jwk["alg"], "ES256");
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(
            &header,
            &json!({"sub": "x", "exp": 4_000_000_000u64}),
            &key.encoding,
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(&token, &key.decoding, &validation).unwrap();
        assert_eq!(data.claims["sub"], "x");
        let other = parse(&generate(1).unwrap()).unwrap();
        assert!(jsonwebtoken::decode::<Value>(&token, &other.decoding, &validation).is_err());
    }

    #[test]
    fn the_ring_verifies_what_it_signs_and_names_what_is_wrong() {
        let ring = KeyRing::for_tests();
        let jwt = ring
            .sign(
                "JWT",
                &json!({"iss": "https://as", "aud": "https://as", "sub": "x"}),
            )
            .unwrap();
        let (header, claims) = ring
            .verify::<Value>(&jwt, "https://as", Some("https://as"))
            .unwrap();
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(claims["sub"], "x");
        assert_eq!(
            ring.verify::<Value>(&jwt, "https://other", None)
                .unwrap_err(),
            Unverified::Issuer
        );
        assert_eq!(
            ring.verify::<Value>(&jwt, "https://as", Some("https://rs"))
                .unwrap_err(),
            Unverified::Audience
        );
        assert_eq!(
            KeyRing::for_tests()
                .verify::<Value>(&jwt, "https://as", None)
                .unwrap_err(),
            Unverified::UnknownKey
        );
        assert_eq!(
            ring.verify::<Value>("a.b", "https://as", None).unwrap_err(),
            Unverified::NotJwt
        );
    }

    #[test]
    fn thumbprint_matches_rfc7638_shape() {
        let a = thumbprint("x1", "y1");
        assert_eq!(a.len(), 43);
        assert_ne!(a, thumbprint("x1", "y2"));
    }
}
