//! The stored vocabularies: states and types kept in text columns, typed here so no code
//! compares a status with a string literal. Each value is stored as the same text as before
//! these types existed, so no data migration was needed; an unknown stored value fails the
//! read (it can only come from outside authmd).

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

/// Declares a text-stored enum: `as_str`, `FromStr` and the diesel mapping to `Text`.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
        #[diesel(sql_type = Text)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue(stringify!($name))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<DB: Backend> ToSql<Text, DB> for $name
        where
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                self.as_str().to_sql(out)
            }
        }

        impl<DB: Backend> FromSql<Text, DB> for $name
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                Ok(String::from_sql(bytes)?.parse()?)
            }
        }
    };
}

/// A stored value that names no variant.
#[derive(Debug, thiserror::Error)]
#[error("unknown stored {0} value")]
pub struct UnknownValue(&'static str);

text_enum! {
    /// Where an agent registration stands.
    RegistrationStatus {
        /// Verified-email registrations before the person confirms: no credential yet.
        Pending => "pending",
        /// Anonymous registrations before a claim: pre-claim credentials work.
        Active => "active",
        Claimed => "claimed",
        Revoked => "revoked",
        /// The claim window closed before a claim.
        Expired => "expired",
    }
}

impl RegistrationStatus {
    /// Whether a claim may still be opened or completed.
    pub fn claimable(self) -> bool {
        matches!(self, Self::Active | Self::Pending)
    }
}

text_enum! {
    /// How an agent registered.
    RegistrationType {
        Anonymous => "anonymous",
        VerifiedEmail => "email-verification",
        /// With an ID-JAG from a trusted agent provider.
        Provider => "agent-provider",
        /// auth.md v0.6 `service_auth`: the agent names the person (`login_hint`); the person
        /// confirms on `/claim` before any credential exists.
        ServiceAuth => "service_auth",
    }
}

text_enum! {
    /// The auth.md generation a registration was made through.
    Protocol {
        /// `/agent/auth`: credentials at registration, claims by emailed one-time code.
        V01 => "v0.1",
        /// `/agent/identity`: identity assertions exchanged at the token endpoint, claims by a
        /// `user_code` the signed-in person types on `/claim`, polled with the claim grant.
        V06 => "v0.6",
    }
}

text_enum! {
    /// How a claim attempt's code travels.
    Ceremony {
        /// v0.1: the emailed page shows the code; the agent sends it back.
        EmailOtp => "email_otp",
        /// v0.6: the agent is given the code; the signed-in person types it on `/claim`.
        UserCode => "user_code",
    }
}

text_enum! {
    /// The credential an agent asked for at registration.
    CredentialType {
        ApiKey => "api_key",
        AccessToken => "access_token",
        IdentityAssertion => "identity_assertion",
    }
}

text_enum! {
    /// Where one emailed claim attempt stands.
    AttemptStatus {
        /// Mailed; waiting for the person.
        Initiated => "initiated",
        /// A newer attempt for the same registration replaced it (or its email failed).
        Superseded => "superseded",
        Completed => "completed",
        /// "This wasn't me".
        Cancelled => "cancelled",
        /// Too many wrong codes.
        Locked => "locked",
    }
}

text_enum! {
    /// The grant type that created a grant (RFC 6749 / RFC 7523 names).
    GrantKind {
        AuthorizationCode => "authorization_code",
        DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
        /// auth.md v0.6: the access token the claim grant hands over once a person claimed.
        AgentClaim => "urn:workos:agent-auth:grant-type:claim",
    }
}

text_enum! {
    /// How an access token is written.
    TokenFormat {
        Opaque => "opaque",
        Jwt => "jwt",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_text() {
        fn check<T: Copy + PartialEq + std::fmt::Debug + std::str::FromStr>(
            all: &[T],
            text: fn(T) -> &'static str,
        ) {
            for &v in all {
                assert_eq!(text(v).parse::<T>().ok(), Some(v));
            }
        }
        check(RegistrationStatus::ALL, RegistrationStatus::as_str);
        check(RegistrationType::ALL, RegistrationType::as_str);
        check(CredentialType::ALL, CredentialType::as_str);
        check(AttemptStatus::ALL, AttemptStatus::as_str);
        check(GrantKind::ALL, GrantKind::as_str);
        check(TokenFormat::ALL, TokenFormat::as_str);
        assert!("Claimed".parse::<RegistrationStatus>().is_err());
    }
}

text_enum! {
    /// Where an RFC 8628 device authorization stands.
    DeviceStatus {
        /// Waiting for a person to enter the user code.
        Pending => "pending",
        Approved => "approved",
        Denied => "denied",
        /// Exchanged for tokens (or revoked): never again.
        Used => "used",
    }
}
