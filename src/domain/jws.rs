//! How jsonwebtoken signs and checks ES256 and signs RS256 here: on `ring`, with each private
//! key parsed once.
//!
//! jsonwebtoken's RustCrypto backend re-parses the private key for every signature (for RSA
//! that includes rebuilding its CRT values; for P-256 it recomputes the public point), then signs
//! with big-number code several times slower than ring's. Measured here, one RS256 signature
//! took 3.9 ms of CPU through that backend and 0.9 ms with ring, all of it on the request's
//! path (`bench/README.md`, tenth session; ES256 was not timed alone). jsonwebtoken's
//! documented extension point is a process-wide [`CryptoProvider`]; the one installed here keeps
//! jsonwebtoken for everything a JWT is (header, claims, base64url, validation) and only swaps
//! the primitive: RS256 and ES256 signatures and ES256 verification by ring, every other
//! algorithm (a provider's RS256 ID-JAG, HMAC, PS*, EdDSA) by the RustCrypto backend as before.
//!
//! Parsed keys are kept in a small table keyed by the private key's DER bytes, the only handle
//! the provider is given. Keys rotate rarely; the table holds the last [`MAX_KEYS`].

use std::sync::{Arc, LazyLock, OnceLock, RwLock};

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtSigner, JwtVerifier};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};

/// Parsed private keys remembered; more than the signing keys any ring publishes at once.
const MAX_KEYS: usize = 8;

static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    ..rust_crypto::DEFAULT_PROVIDER.clone()
});

/// Installs the provider for the process, before any JWT is signed or checked. Returns whether
/// it is the one in use: jsonwebtoken fixes its provider at first use, so a JWT handled before
/// this call keeps the RustCrypto backend (correct, only slower), which is logged.
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let ok = CryptoProvider::install_default(&PROVIDER).is_ok();
        if !ok {
            tracing::warn!("JWT signing stays on jsonwebtoken's RustCrypto backend: a JWT was handled before the ring provider was installed");
        }
        ok
    })
}

/// A parsed private key, by algorithm.
enum Parsed {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// Parsed keys by their DER bytes, newest last.
static PARSED: RwLock<Vec<(Vec<u8>, Arc<Parsed>)>> = RwLock::new(Vec::new());

/// The key `der` parsed for `alg`, from the table or parsed now; `None` when ring cannot read
/// it (the caller falls back to the RustCrypto backend, which reports the error).
fn parsed(alg: Algorithm, der: &[u8]) -> Option<Arc<Parsed>> {
    if let Ok(table) = PARSED.read() {
        if let Some((_, p)) = table.iter().find(|(k, _)| k.as_slice() == der) {
            return Some(p.clone());
        }
    }
    let p = Arc::new(match alg {
        Algorithm::RS256 => Parsed::Rsa(RsaKeyPair::from_der(der).ok()?),
        Algorithm::ES256 => Parsed::Ec(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .ok()?,
        ),
        _ => return None,
    });
    if let Ok(mut table) = PARSED.write() {
        if table.len() >= MAX_KEYS {
            table.remove(0);
        }
        table.push((der.to_vec(), p.clone()));
    }
    Some(p)
}

struct RingSigner {
    alg: Algorithm,
    key: Arc<Parsed>,
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &*self.key {
            Parsed::Rsa(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| signature::Error::new())?;
                Ok(sig)
            }
            Parsed::Ec(pair) => pair
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if matches!(alg, Algorithm::RS256 | Algorithm::ES256) && key.family() == alg.family() {
        if let Some(key) = parsed(*alg, key.inner()) {
            return Ok(Box::new(RingSigner { alg: *alg, key }));
        }
    }
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key)
}

/// ES256 verification of an uncompressed P-256 point (how authmd's keys and JWK-built keys
/// are held).
struct RingEs256Verifier(Vec<u8>);

impl Verifier<Vec<u8>> for RingEs256Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.0)
            .verify(msg, sig)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingEs256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

fn verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    if *alg == Algorithm::ES256 && key.family() == alg.family() {
        let point = key.as_bytes();
        if point.len() == 65 && point[0] == 0x04 {
            return Ok(Box::new(RingEs256Verifier(point.to_vec())));
        }
    }
    (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::keys::KeyRing;

    /// Both directions against the RustCrypto backend: what ring signs, RustCrypto accepts, and
    /// the reverse; a changed message is refused by both.
    #[test]
    fn ring_and_rustcrypto_agree_on_es256_and_rs256() {
        let ring = KeyRing::for_tests();
        for key in [&ring.signer, &ring.rsa_signer] {
            let msg = b"header.claims";
            let ours = signer(&key.alg, &key.encoding)
                .unwrap()
                .try_sign(msg)
                .unwrap();
            let theirs = (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&key.alg, &key.encoding)
                .unwrap()
                .try_sign(msg)
                .unwrap();
            let check_ours = verifier(&key.alg, &key.decoding).unwrap();
            let check_theirs =
                (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(&key.alg, &key.decoding).unwrap();
            for sig in [&ours, &theirs] {
                check_ours.verify(msg, sig).unwrap();
                check_theirs.verify(msg, sig).unwrap();
                assert!(check_ours.verify(b"header.claimz", sig).is_err());
                assert!(check_theirs.verify(b"header.claimz", sig).is_err());
            }
        }
    }

    /// The ring path is the one taken for authmd's own keys (a key ring cannot read would fall
    /// back silently), and each key is parsed once.
    #[test]
    fn authmd_keys_sign_on_ring_and_are_parsed_once() {
        let ring = KeyRing::for_tests();
        for key in [&ring.signer, &ring.rsa_signer] {
            let first = parsed(key.alg, key.encoding.inner()).expect("ring reads the key");
            let again = parsed(key.alg, key.encoding.inner()).unwrap();
            assert!(Arc::ptr_eq(&first, &again));
        }
        let foreign = EncodingKey::from_secret(b"hmac secret");
        assert!(parsed(Algorithm::HS256, foreign.inner()).is_none());
    }

    /// A compressed or malformed public key is left to the RustCrypto backend, which decides.
    #[test]
    fn unusual_public_keys_fall_back() {
        let ring = KeyRing::for_tests();
        let msg = b"header.claims";
        let sig = signer(&Algorithm::ES256, &ring.signer.encoding)
            .unwrap()
            .try_sign(msg)
            .unwrap();
        let point = ring.signer.decoding.as_bytes();
        let mut compressed = vec![0x02 | (point[64] & 1)];
        compressed.extend_from_slice(&point[1..33]);
        let key = DecodingKey::from_ec_der(&compressed);
        verifier(&Algorithm::ES256, &key)
            .unwrap()
            .verify(msg, &sig)
            .expect("the fallback accepts a compressed point");
    }
}
