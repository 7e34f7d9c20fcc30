//! Bearer secrets: 256 bits from the OS CSPRNG behind a readable type prefix.
//!
//! A [`PlainToken`] exists only between minting and the one response that shows it; what is
//! stored is its [`HashedToken`] (SHA-256) plus a short display prefix for log correlation.
//! Neither type prints its value through `Debug`.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// The type prefixes of SPEC section 3.
pub mod prefix {
    pub const API_KEY: &str = "sk_";
    pub const ACCESS_TOKEN: &str = "at_";
    pub const REFRESH_TOKEN: &str = "rt_";
    pub const AUTH_CODE: &str = "ac_";
    pub const CLAIM_TOKEN: &str = "clm_";
    pub const CLAIM_ATTEMPT: &str = "cv_";
    pub const PERSONAL_TOKEN: &str = "pat_";
    pub const CLIENT_SECRET: &str = "cs_";
    pub const REGISTRATION_TOKEN: &str = "rat_";
}

/// Characters after the type prefix kept for display and log correlation.
const DISPLAY_CHARS: usize = 8;

/// 32 bytes from the OS CSPRNG.
pub fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random source is available");
    bytes
}

/// A URL-safe random identifier (not a secret): `reg_…`, `usr_…`, `kid`s.
pub fn random_id(prefix: &str) -> String {
    let bytes = random_bytes();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&bytes[..16]))
}

/// A freshly minted secret. Shown once, never stored.
pub struct PlainToken(String);

impl PlainToken {
    pub fn generate(prefix: &str) -> Self {
        Self(format!(
            "{prefix}{}",
            URL_SAFE_NO_PAD.encode(random_bytes())
        ))
    }

    /// Wraps a secret a caller presented, to hash it for look-up.
    pub fn presented(value: &str) -> Self {
        Self(value.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn hash(&self) -> HashedToken {
        HashedToken::of(&self.0)
    }

    /// The type prefix and the next few characters, e.g. `sk_AbCdEfGh`.
    pub fn display_prefix(&self) -> String {
        let type_len = self.0.find('_').map_or(0, |i| i + 1);
        self.0.chars().take(type_len + DISPLAY_CHARS).collect()
    }
}

impl fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainToken({}…)", self.display_prefix())
    }
}

/// SHA-256 of a secret, lower-case hex: what the database holds and indexes.
#[derive(Clone, PartialEq, Eq)]
pub struct HashedToken(String);

impl HashedToken {
    pub fn of(secret: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
        Self(hex(digest.as_ref()))
    }

    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a stored hash.
    pub fn matches(&self, stored: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), stored.as_bytes())
    }
}

impl fmt::Debug for HashedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashedToken(…)")
    }
}

/// Compares two secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_prefix_and_256_bits() {
        let t = PlainToken::generate(prefix::API_KEY);
        let body = t.expose().strip_prefix("sk_").unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_ne!(t.expose(), PlainToken::generate(prefix::API_KEY).expose());
        assert_eq!(t.display_prefix().len(), 3 + 8);
        assert!(t.expose().starts_with(&t.display_prefix()));
    }

    #[test]
    fn hash_is_sha256_hex() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            HashedToken::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(HashedToken::of("abc").matches(HashedToken::of("abc").as_str()));
        assert!(!HashedToken::of("abc").matches(HashedToken::of("abd").as_str()));
    }

    #[test]
    fn debug_hides_values() {
        let t = PlainToken::generate(prefix::ACCESS_TOKEN);
        let debug = format!("{t:?} {:?}", t.hash());
        assert!(!debug.contains(t.expose()));
        assert!(!debug.contains(t.hash().as_str()));
    }
}
