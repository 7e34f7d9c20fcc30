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

/// The type prefixes of the secrets authmd issues (a leaked one says what it is). Personal
/// tokens, API keys and claim tokens take the deployment's prefixes (`tokens.prefixes.*`).
pub mod prefix {
    pub const ACCESS_TOKEN: &str = "at_";
    pub const REFRESH_TOKEN: &str = "rt_";
    pub const AUTH_CODE: &str = "ac_";
    pub const DEVICE_CODE: &str = "dc_";
    pub const CLAIM_ATTEMPT: &str = "cv_";
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

/// A URL-safe identifier (not a secret) that starts with its creation second (`now`, 4 bytes
/// big-endian) and goes on with 128 random bits. Rows keyed by it in the same second share the
/// key's first characters, so a table's primary-key index takes their inserts on a few hot pages
/// instead of a random page each, which SQLite's WAL had to copy whole for every commit: 11 %
/// fewer bytes written to disk per anonymous registration, measured (37.2 → 33.1 KiB,
/// `bench/README.md`, eleventh session).
/// For rows written at a high rate: registrations and grants.
pub fn time_ordered_id(prefix: &str, now: i64) -> String {
    let mut bytes = [0u8; 20];
    // Seconds since 1970 fit in 32 bits until 2106; later ones wrap, which costs only order.
    bytes[..4].copy_from_slice(&(now as u32).to_be_bytes());
    bytes[4..].copy_from_slice(&random_bytes()[..16]);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
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

/// SHA-256 of arbitrary bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Compares two secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// AES-256-GCM key derived from a secret the caller holds (a refresh token, an
/// Idempotency-Key) and a context label, so what is sealed is unreadable without that secret.
fn derived_key(secret: &str, context: &str) -> ring::aead::LessSafeKey {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("authmd {context}\0{secret}").as_bytes(),
    );
    let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, digest.as_ref())
        .expect("32-byte key");
    ring::aead::LessSafeKey::new(key)
}

/// Encrypts `data` under a key derived from `secret`: nonce (12 bytes) || ciphertext || tag.
pub fn seal(secret: &str, context: &str, data: &[u8]) -> Vec<u8> {
    let nonce: [u8; 12] = random_bytes()[..12].try_into().expect("12 bytes");
    let mut buf = data.to_vec();
    derived_key(secret, context)
        .seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::empty(),
            &mut buf,
        )
        .expect("AES-GCM sealing cannot fail for in-memory buffers");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Decrypts what [`seal`] produced with the same secret and context; `None` otherwise.
pub fn open(secret: &str, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 + ring::aead::AES_256_GCM.tag_len() {
        return None;
    }
    let (nonce, rest) = sealed.split_at(12);
    let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = rest.to_vec();
    let plain = derived_key(secret, context)
        .open_in_place(nonce, ring::aead::Aad::empty(), &mut buf)
        .ok()?;
    Some(plain.to_vec())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Bytes first, one UTF-8 check at the end: `String::push` encodes each char on its own,
    // which made this a third of a client secret's verification (callgrind).
    let out: Vec<u8> = bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .collect();
    String::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_ids_share_their_start_within_a_second_and_stay_unique() {
        // Five base64 characters carry the first 30 of the time's 32 bits.
        let start = |id: &str| id["reg_".len().."reg_".len() + 5].to_owned();
        let same: Vec<String> = (0..64)
            .map(|_| time_ordered_id("reg_", 1_800_000_001))
            .collect();
        for id in &same {
            assert!(id.starts_with("reg_"));
            assert_eq!(id.len(), "reg_".len() + 27);
            assert_eq!(start(id), start(&same[0]));
        }
        let mut distinct = same.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), same.len());
        // An hour later the start differs.
        assert_ne!(
            start(&time_ordered_id("reg_", 1_800_003_601)),
            start(&same[0])
        );
    }

    #[test]
    fn tokens_have_prefix_and_256_bits() {
        let t = PlainToken::generate("sk_");
        let body = t.expose().strip_prefix("sk_").unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_ne!(t.expose(), PlainToken::generate("sk_").expose());
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
    fn sealed_data_opens_only_with_the_same_secret_and_context() {
        let sealed = seal("key-1", "ctx", b"secret answer");
        assert_eq!(
            open("key-1", "ctx", &sealed).as_deref(),
            Some(&b"secret answer"[..])
        );
        assert_eq!(open("key-2", "ctx", &sealed), None);
        assert_eq!(open("key-1", "other", &sealed), None);
        assert!(!String::from_utf8_lossy(&sealed).contains("secret answer"));
    }

    #[test]
    fn debug_hides_values() {
        let t = PlainToken::generate(prefix::ACCESS_TOKEN);
        let debug = format!("{t:?} {:?}", t.hash());
        assert!(!debug.contains(t.expose()));
        assert!(!debug.contains(t.hash().as_str()));
    }
}
