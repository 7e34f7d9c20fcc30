//! Every credential authmd issues, in one table: how a presented secret is recognised, what it
//! hangs from, how it is introspected, revoked and audited.
//!
//! Introspection (`/oauth2/introspect`), revocation (`/oauth2/revoke`), the callers of
//! `/api/tokens` and the principals of `Idempotency-Key` all start from [`recognise`] and
//! dispatch on [`Kind`] here, once. A kind added to authmd is one [`KINDS`] entry and one arm in
//! each `match` below; the compiler points at every arm that is missing.
//!
//! "Dies with its parent" is kept two ways: revoking a parent revokes its children in the same
//! transaction (a client's, grant's, registration's, user's or maker token's credentials), and
//! the checks below that read a parent anyway (an agent credential's registration) judge it
//! again at use, so a registration that expired unclaimed stops its credentials at once.

//!
//! - [`mint`]: making credentials (access and refresh tokens, identity assertions).
//! - [`resolve`](resolve()): whether a recognised credential is live, and its RFC 7662 answer.
//! - [`revoke`](revoke::revoke): RFC 7009 for every kind, and the cascades when a parent dies.
//!
//! This module sits under every feature that issues or checks credentials (grants, agents,
//! accounts, clients, users) and imports none of them.

pub mod mint;
mod resolve;
mod revoke;

use serde::Deserialize;

use crate::config::Config;
use crate::domain::keys::KeyRing;
use crate::domain::secrets::{prefix, HashedToken};

pub use mint::{access_row, issue_for_grant, mint_access, Subject, TokenResponse};
pub use resolve::{
    access_live, answer, introspect, is_live, is_stale, resolve, subject_of, AgentRegistration,
    Introspection, Live, RecordUse,
};
pub use revoke::{
    revoke, revoke_from, revoke_provider_subject, revoke_registration, Dying, Revoker,
};

/// The kinds of credential authmd issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `at_…`, stored as its SHA-256.
    AccessToken,
    /// RFC 9068 JWT access token, stored by `jti`.
    AccessJwt,
    /// `rt_…`: rotates; revoking one revokes its grant.
    RefreshToken,
    /// An agent's API key (`sk_…`, prefix configurable).
    ApiKey,
    /// A JWT authmd signed for an agent, exchanged with the JWT-bearer grant.
    IdentityAssertion,
    /// `pat_…`: a person's personal or workspace token.
    PersonalToken,
    /// `clm_…`: lets a person claim an anonymous registration.
    ClaimToken,
    /// `cv_…`: the link of one claim attempt's email.
    ClaimAttempt,
    /// `rat_…`: RFC 7592 management of a dynamically registered client.
    RegistrationAccessToken,
    /// `ac_…`: one authorization code.
    AuthorizationCode,
    /// `dc_…`: an RFC 8628 device code.
    DeviceCode,
}

/// What a credential hangs from: when that dies, the credential dies with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    Grant,
    Registration,
    User,
    Client,
    /// The personal token that minted it.
    MakerToken,
    /// A provider identity `(iss, sub)`: the provider's logout event.
    ProviderSubject,
}

/// One row of the table.
#[derive(Debug)]
pub struct KindSpec {
    pub kind: Kind,
    /// Its `token_type` in introspection answers and audit rows.
    pub name: &'static str,
    pub parents: &'static [Parent],
    /// The type prefix of a random secret (stored as its SHA-256). `None`: a JWT, recognised by
    /// its signature, or a secret whose prefix the deployment chooses ([`configured_prefix`]).
    pub prefix: Option<&'static str>,
    /// Whether a resource server may accept it: only these ever introspect `active: true`.
    /// The others are one-step secrets of a ceremony, never bearer credentials for an API.
    pub bearer: bool,
}

pub const KINDS: [KindSpec; 11] = [
    KindSpec {
        kind: Kind::AccessToken,
        name: "access_token",
        parents: &[
            Parent::Grant,
            Parent::Registration,
            Parent::Client,
            Parent::User,
            Parent::ProviderSubject,
        ],
        prefix: Some(prefix::ACCESS_TOKEN),
        bearer: true,
    },
    KindSpec {
        kind: Kind::AccessJwt,
        name: "access_token",
        parents: &[
            Parent::Grant,
            Parent::Registration,
            Parent::Client,
            Parent::User,
            Parent::ProviderSubject,
        ],
        prefix: None,
        bearer: true,
    },
    KindSpec {
        kind: Kind::RefreshToken,
        name: "refresh_token",
        parents: &[
            Parent::Grant,
            Parent::Registration,
            Parent::Client,
            Parent::User,
        ],
        prefix: Some(prefix::REFRESH_TOKEN),
        bearer: true,
    },
    KindSpec {
        kind: Kind::ApiKey,
        name: "api_key",
        parents: &[Parent::Registration, Parent::User, Parent::ProviderSubject],
        prefix: None,
        bearer: true,
    },
    KindSpec {
        kind: Kind::IdentityAssertion,
        name: "identity_assertion",
        parents: &[Parent::Registration, Parent::User],
        prefix: None,
        bearer: true,
    },
    KindSpec {
        kind: Kind::PersonalToken,
        name: "personal_token",
        parents: &[Parent::User, Parent::MakerToken],
        prefix: None,
        bearer: true,
    },
    KindSpec {
        kind: Kind::ClaimToken,
        name: "claim_token",
        parents: &[Parent::Registration],
        prefix: None,
        bearer: false,
    },
    KindSpec {
        kind: Kind::ClaimAttempt,
        name: "claim_attempt_token",
        parents: &[Parent::Registration],
        prefix: Some(prefix::CLAIM_ATTEMPT),
        bearer: false,
    },
    KindSpec {
        kind: Kind::RegistrationAccessToken,
        name: "registration_access_token",
        parents: &[Parent::Client],
        prefix: Some(prefix::REGISTRATION_TOKEN),
        bearer: false,
    },
    KindSpec {
        kind: Kind::AuthorizationCode,
        name: "authorization_code",
        parents: &[Parent::Client, Parent::User],
        prefix: Some(prefix::AUTH_CODE),
        bearer: false,
    },
    KindSpec {
        kind: Kind::DeviceCode,
        name: "device_code",
        parents: &[Parent::Client, Parent::User],
        prefix: Some(prefix::DEVICE_CODE),
        bearer: false,
    },
];

impl Kind {
    pub fn spec(self) -> &'static KindSpec {
        KINDS
            .iter()
            .find(|s| s.kind == self)
            .expect("every kind has a row (unit-tested)")
    }
}

/// A presented secret, recognised: its kind and the key its row is stored under (a SHA-256
/// for random secrets, the `jti` of a JWT whose signature checked out).
#[derive(Debug, Clone)]
pub struct Presented {
    pub kind: Kind,
    pub id: String,
    /// The claims of an identity assertion (already verified).
    assertion: Option<AssertionRef>,
}

#[derive(Debug, Clone)]
struct AssertionRef {
    iss: String,
    jti: String,
    exp: i64,
    registration_id: String,
}

/// The prefix of a kind whose prefix is configured (`tokens.prefixes.*`).
pub fn configured_prefix(config: &Config, kind: Kind) -> Option<&str> {
    let p = &config.tokens.prefixes;
    match kind {
        Kind::PersonalToken => Some(&p.personal),
        Kind::ApiKey => Some(&p.api_key),
        Kind::ClaimToken => Some(&p.claim),
        _ => None,
    }
}

/// Which kind a presented secret is, from the table: its type prefix (configured or fixed; start-up
/// refuses two that could both match), or a JWT signature by one of authmd's keys.
pub fn recognise(config: &Config, keys: &KeyRing, token: &str) -> Option<Presented> {
    let hashed = |kind| {
        Some(Presented {
            kind,
            id: HashedToken::of(token).as_str().to_owned(),
            assertion: None,
        })
    };
    if let Some(kind) = [Kind::PersonalToken, Kind::ApiKey, Kind::ClaimToken]
        .into_iter()
        .find(|k| configured_prefix(config, *k).is_some_and(|p| token.starts_with(p)))
    {
        return hashed(kind);
    }
    if let Some(spec) = KINDS
        .iter()
        .find(|s| s.prefix.is_some_and(|p| token.starts_with(p)))
    {
        return hashed(spec.kind);
    }
    if token.matches('.').count() == 2 {
        return recognise_jwt(config, keys, token);
    }
    None
}

/// A JWT signed by one of authmd's keys with authmd as `iss`: an RFC 9068 access token
/// (`typ: at+jwt`) or an identity assertion (it names its registration).
fn recognise_jwt(config: &Config, keys: &KeyRing, token: &str) -> Option<Presented> {
    #[derive(Deserialize)]
    struct Claims {
        jti: String,
        exp: Option<i64>,
        registration_id: Option<String>,
    }
    let (header, claims) = keys
        .verify::<Claims>(token, &config.server.issuer, None)
        .ok()?;
    if header.typ.as_deref() == Some("at+jwt") {
        return Some(Presented {
            kind: Kind::AccessJwt,
            id: claims.jti,
            assertion: None,
        });
    }
    Some(Presented {
        kind: Kind::IdentityAssertion,
        id: claims.jti.clone(),
        assertion: Some(AssertionRef {
            iss: config.server.issuer.clone(),
            jti: claims.jti,
            exp: claims.exp?,
            registration_id: claims.registration_id?,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_row() {
        let all = [
            Kind::AccessToken,
            Kind::AccessJwt,
            Kind::RefreshToken,
            Kind::ApiKey,
            Kind::IdentityAssertion,
            Kind::PersonalToken,
            Kind::ClaimToken,
            Kind::ClaimAttempt,
            Kind::RegistrationAccessToken,
            Kind::AuthorizationCode,
            Kind::DeviceCode,
        ];
        assert_eq!(all.len(), KINDS.len());
        for kind in all {
            assert_eq!(
                KINDS.iter().filter(|s| s.kind == kind).count(),
                1,
                "{kind:?}"
            );
            assert!(
                !kind.spec().parents.is_empty(),
                "{kind:?} names its parents"
            );
        }
    }

    #[test]
    fn prefixes_are_recognised() {
        let config = Config::defaults();
        let ring = crate::domain::keys::KeyRing::for_tests();
        for (token, kind) in [
            ("sk_abc", Kind::ApiKey),
            ("pat_abc", Kind::PersonalToken),
            ("at_abc", Kind::AccessToken),
            ("rt_abc", Kind::RefreshToken),
            ("clm_abc", Kind::ClaimToken),
            ("cv_abc", Kind::ClaimAttempt),
            ("rat_abc", Kind::RegistrationAccessToken),
            ("ac_abc", Kind::AuthorizationCode),
            ("dc_abc", Kind::DeviceCode),
        ] {
            assert_eq!(recognise(&config, &ring, token).unwrap().kind, kind);
        }
        assert!(recognise(&config, &ring, "nothing").is_none());
        assert!(recognise(&config, &ring, "a.b.c").is_none());
    }
}
