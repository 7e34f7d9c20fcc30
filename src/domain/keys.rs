//! Signing keys, kept in the database, published as JWKS: ES256 (P-256, made with `ring`) for
//! everything authmd signs, and RS256 (RSA 2048, made with `rsa`) for ID tokens, because OpenID
//! Connect Core §15.1 requires every provider to support RS256 and many relying parties accept
//! nothing else.
//!
//! Exactly one key of each algorithm signs (the newest unretired one). Rotation retires both and
//! creates new ones; a retired key stays published while a token it signed can still be valid,
//! i.e. for the longest lifetime of anything authmd signs.

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
/// The ID-token algorithm every OpenID provider supports.
pub const RSA_ALG: &str = "RS256";
const RSA_BITS: usize = 2048;

/// A usable key: the row plus parsed signing and verification halves.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub created_at: UnixTime,
    pub retired_at: Option<UnixTime>,
    pub public_jwk: Value,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
}

impl SigningKey {
    pub fn algorithm(&self) -> Algorithm {
        self.alg
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
    /// ES256: access tokens, identity assertions, everything but RS256 ID tokens.
    pub signer: Arc<SigningKey>,
    /// RS256, for ID tokens.
    pub rsa_signer: Arc<SigningKey>,
    pub published: Vec<Arc<SigningKey>>,
}

impl KeyRing {
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.published.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>() })
    }

    pub fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.published.iter().find(|k| k.kid == kid)
    }

    /// Signs `claims` with the current ES256 key; `typ` goes in the header (RFC 8725 §3.11).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> AppResult<String> {
        Self::sign_with(&self.signer, Some(typ), claims)
    }

    /// Signs `claims` with the current key for `alg` (ES256 or RS256), with `typ` when given.
    pub fn sign_as<T: Serialize>(
        &self,
        alg: Algorithm,
        typ: Option<&str>,
        claims: &T,
    ) -> AppResult<String> {
        match alg {
            Algorithm::ES256 => Self::sign_with(&self.signer, typ, claims),
            Algorithm::RS256 => Self::sign_with(&self.rsa_signer, typ, claims),
            other => Err(AppError::internal(format!("no {other:?} signing key"))),
        }
    }

    fn sign_with<T: Serialize>(
        key: &SigningKey,
        typ: Option<&str>,
        claims: &T,
    ) -> AppResult<String> {
        let mut header = Header::new(key.alg);
        header.typ = typ.map(str::to_owned);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| AppError::internal(format!("signing a {typ:?} JWT: {e}")))
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

fn generate(now: UnixTime, alg: &str) -> AppResult<SigningKeyRow> {
    match alg {
        RSA_ALG => generate_rsa(now),
        _ => generate_ec(now),
    }
}

fn generate_rsa(now: UnixTime) -> AppResult<SigningKeyRow> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, RSA_BITS)
        .map_err(|e| AppError::internal(format!("RSA key generation failed: {e}")))?;
    let der = key
        .to_pkcs1_der()
        .map_err(|e| AppError::internal(format!("RSA key encoding failed: {e}")))?;
    let (n, e) = (
        URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    );
    let kid = thumbprint_of(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
    let jwk = json!({ "kty": "RSA", "n": n, "e": e, "kid": kid, "alg": RSA_ALG, "use": "sig" });
    Ok(SigningKeyRow {
        kid,
        alg: RSA_ALG.to_owned(),
        private_key: der.as_bytes().to_vec(),
        public_jwk: jwk.to_string(),
        created_at: now,
        retired_at: None,
    })
}

fn generate_ec(now: UnixTime) -> AppResult<SigningKeyRow> {
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
    thumbprint_of(&format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
    ))
}

fn thumbprint_of(canonical: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn parse(row: &SigningKeyRow) -> AppResult<SigningKey> {
    // Before the first signature: jsonwebtoken fixes its crypto provider at first use.
    super::jws::install();
    let jwk: Value = serde_json::from_str(&row.public_jwk)
        .map_err(|e| AppError::internal(format!("key {}: bad public JWK: {e}", row.kid)))?;
    if row.alg == RSA_ALG {
        let (Some(n), Some(e)) = (jwk["n"].as_str(), jwk["e"].as_str()) else {
            return Err(AppError::internal(format!(
                "key {}: JWK lacks n/e",
                row.kid
            )));
        };
        let decoding = DecodingKey::from_rsa_components(n, e)
            .map_err(|e| AppError::internal(format!("key {}: {e}", row.kid)))?;
        return Ok(SigningKey {
            kid: row.kid.clone(),
            alg: Algorithm::RS256,
            created_at: row.created_at,
            retired_at: row.retired_at,
            public_jwk: jwk,
            encoding: EncodingKey::from_rsa_der(&row.private_key),
            decoding,
        });
    }
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
        alg: Algorithm::ES256,
        created_at: row.created_at,
        retired_at: row.retired_at,
        public_jwk: jwk,
        encoding: EncodingKey::from_ec_der(&row.private_key),
        decoding,
    })
}

/// Every algorithm authmd signs with, each with its own active key.
const ALGS: [&str; 2] = [ALG, RSA_ALG];

/// Creates a signing key for each algorithm that has no active one. Returns whether one was
/// created. The (slow) RSA generation runs before the transaction, and only when needed.
pub fn ensure_signing_key(conn: &mut DbConn, now: UnixTime) -> AppResult<bool> {
    let active = db::keys::active(conn)?;
    let missing: Vec<SigningKeyRow> = ALGS
        .iter()
        .filter(|alg| !active.iter().any(|k| k.alg == **alg))
        .map(|alg| generate(now, alg))
        .collect::<AppResult<_>>()?;
    if missing.is_empty() {
        return Ok(false);
    }
    db::write_tx(conn, |conn| {
        let active = db::keys::active(conn)?;
        let mut created = false;
        for row in &missing {
            // Another process may have made one meanwhile.
            if !active.iter().any(|k| k.alg == row.alg) {
                db::keys::insert(conn, row)?;
                created = true;
            }
        }
        Ok(created)
    })
}

/// Retires the active key and creates a new one, in one transaction.
pub fn rotate(conn: &mut DbConn, now: UnixTime, ctx: &AuditContext) -> AppResult<KeyInfo> {
    let fresh: Vec<SigningKeyRow> = ALGS
        .iter()
        .map(|alg| generate(now, alg))
        .collect::<AppResult<_>>()?;
    db::write_tx(conn, |conn| {
        let previous: Vec<String> = db::keys::active(conn)?.into_iter().map(|k| k.kid).collect();
        db::keys::retire_active(conn, now)?;
        for row in &fresh {
            db::keys::insert(conn, row)?;
        }
        let row = &fresh[0];
        audit::record(
            conn,
            now,
            ctx,
            AuditEvent::KeyRotated,
            AuditEntry {
                detail: Some(json!({
                    "kid": row.kid,
                    "kids": fresh.iter().map(|k| &k.kid).collect::<Vec<_>>(),
                    "retired": previous,
                })),
                ..Default::default()
            },
        )?;
        let row = row.clone();
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
    let active = |alg: Algorithm| {
        published
            .iter()
            .find(|k| k.retired_at.is_none() && k.alg == alg)
            .cloned()
            .ok_or_else(|| AppError::internal(format!("no active {alg:?} signing key")))
    };
    Ok(KeyRing {
        signer: active(Algorithm::ES256)?,
        rsa_signer: active(Algorithm::RS256)?,
        published,
    })
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
        let key = Arc::new(parse(&generate(1_700_000_000, ALG).unwrap()).unwrap());
        let rsa = Arc::new(parse(&generate(1_700_000_000, RSA_ALG).unwrap()).unwrap());
        Self {
            signer: key.clone(),
            rsa_signer: rsa.clone(),
            published: vec![key, rsa],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_signs_and_verifies() {
        let row = generate(1_700_000_000, ALG).unwrap();
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
        let other = parse(&generate(1, ALG).unwrap()).unwrap();
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

#[cfg(test)]
mod rsa_tests {
    use super::*;

    #[test]
    fn id_tokens_sign_with_either_algorithm_and_verify_with_the_published_jwk() {
        let ring = KeyRing::for_tests();
        for alg in [Algorithm::RS256, Algorithm::ES256] {
            let token = ring
                .sign_as(alg, None, &json!({"sub": "u", "exp": 4_000_000_000u64}))
                .unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, alg);
            let key = ring.find(header.kid.as_deref().unwrap()).unwrap();
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(key.public_jwk.clone()).unwrap();
            let mut validation = Validation::new(alg);
            validation.required_spec_claims.clear();
            let data = jsonwebtoken::decode::<Value>(
                &token,
                &DecodingKey::from_jwk(&jwk).unwrap(),
                &validation,
            )
            .unwrap();
            assert_eq!(data.claims["sub"], "u");
        }
        assert_eq!(ring.rsa_signer.public_jwk["kty"], "RSA");
        assert_eq!(ring.rsa_signer.public_jwk["alg"], "RS256");
    }
}
