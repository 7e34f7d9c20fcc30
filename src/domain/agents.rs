//! auth.md agent registrations and the lifecycle of their credentials: anonymous,
//! verified-email and ID-JAG registration, expiry of unclaimed registrations, and
//! provider-initiated revocation. The emailed claim ceremony is [`claims`]; the JWT-bearer
//! exchange of identity assertions is [`crate::domain::grants::jwt_bearer`].

use serde::Serialize;
use serde_json::json;

use crate::clock::UnixTime;
use crate::config::{Config, DefaultCredential};
use crate::db::agents::RegistrationRow;
use crate::db::status::{CredentialType, Protocol, RegistrationStatus, RegistrationType};
use crate::db::{self, write_checked, write_tx, DbConn};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::claims;
use crate::domain::context::Ctx;
use crate::domain::credentials;
pub use crate::domain::credentials::mint::Issued;
use crate::domain::discovery::paths;
use crate::domain::mail::Email;
use crate::domain::providers::{VerifiedIdJag, VerifiedLogout};
use crate::domain::scope::{self, Scopes};
use crate::domain::secrets::{random_id, time_ordered_id, PlainToken};
use crate::domain::users;
use crate::error::{AppError, AppResult, ErrorCode};

fn err(code: ErrorCode, msg: &'static str) -> AppError {
    AppError::protocol(code, msg)
}

/// `requested_credential_type`, absent meaning the deployment's `agent.default_credential_type`.
pub fn credential_type(default: DefaultCredential, s: Option<&str>) -> AppResult<CredentialType> {
    s.unwrap_or(default.as_str()).parse().map_err(|_| {
        err(
            ErrorCode::UnsupportedCredentialType,
            "requested_credential_type must be api_key, access_token or identity_assertion",
        )
    })
}

/// The answer to a registration: the credential where the flow gives one at once, and the
/// claim offer where a person can still claim the agent.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub registration_id: String,
    /// `anonymous`, `email-verification` or `agent-provider`.
    pub registration_type: String,
    #[serde(flatten)]
    pub credential: Option<Issued>,
    #[serde(flatten)]
    pub claim: Option<ClaimOffer>,
}

/// How a person can claim the agent, and what it gets when they do.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClaimOffer {
    pub claim_url: String,
    pub claim_token: String,
    pub claim_token_expires: i64,
    pub post_claim_scopes: Vec<String>,
}

impl ClaimOffer {
    fn new(ctx: &Ctx<'_>, reg: &RegistrationRow, token: Option<PlainToken>) -> Self {
        Self {
            claim_url: ctx.url(paths::AGENT_CLAIM),
            claim_token: token.map(PlainToken::into_string).unwrap_or_default(),
            claim_token_expires: reg.claim_token_expires,
            post_claim_scopes: ctx.config.agent.post_claim_scopes.clone(),
        }
    }
}

/// What provider-initiated revocation revoked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    /// Registrations and grants that were live.
    pub revoked: usize,
}

pub(crate) fn new_registration(
    ctx: &Ctx<'_>,
    kind: RegistrationType,
    status: RegistrationStatus,
    credential: CredentialType,
    scopes: &[String],
) -> (RegistrationRow, Option<PlainToken>) {
    let claim_token = (kind != RegistrationType::Provider)
        .then(|| PlainToken::generate(&ctx.config.tokens.prefixes.claim));
    let row = RegistrationRow {
        id: time_ordered_id("reg_", ctx.now),
        registration_type: kind,
        status,
        requested_credential_type: credential,
        principal_id: random_id("agt_"),
        scopes: Scopes::from_list(scopes).to_string(),
        claim_token_hash: claim_token.as_ref().map(|t| t.hash().as_str().to_owned()),
        claim_token_expires: ctx.now + ctx.config.agent.claim_ttl_s,
        email: None,
        user_id: None,
        link: None,
        provider_iss: None,
        provider_sub: None,
        created_at: ctx.now,
        claimed_at: None,
        revoked_at: None,
        protocol: Protocol::V01,
        claim_polled_at: None,
        claim_poll_interval: None,
        credentials_expire_at: match status {
            RegistrationStatus::Claimed => None,
            // Nothing works before the claim: the registration ends with its claim window.
            RegistrationStatus::Pending => Some(ctx.now + ctx.config.agent.claim_ttl_s),
            _ => ctx.config.agent.unclaimed_credentials_expire(ctx.now),
        },
    };
    (row, claim_token)
}

/// `type: anonymous`: a working credential at once with the pre-claim scopes.
pub fn register_anonymous(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    kind: CredentialType,
    requested: Option<&[String]>,
) -> AppResult<Registered> {
    if !ctx.config.agent.anonymous_enabled {
        return Err(err(
            ErrorCode::AnonymousNotEnabled,
            "anonymous registration is not enabled",
        ));
    }
    let pre_claim = Scopes::from_list(&ctx.config.agent.pre_claim_scopes);
    let scopes = scope::list(&scope::requested(&pre_claim, requested)?.to_string());
    let (reg, claim_token) = new_registration(
        ctx,
        RegistrationType::Anonymous,
        RegistrationStatus::Active,
        kind,
        &scopes,
    );
    // Nothing to check: every refusal came before, so no savepoint (see `write_checked`).
    let (credential, expires) = write_checked(
        conn,
        |_| Ok(()),
        |conn, ()| {
            db::agents::insert_registration(conn, &reg)?;
            let issued = credentials::mint::for_registration(conn, ctx, &reg, kind)?;
            ctx.record_registration(
                conn,
                AuditEvent::RegistrationCreated,
                &reg,
                json!({ "type": reg.registration_type, "credential_type": kind }),
            )?;
            Ok(issued)
        },
    )?;
    Ok(Registered {
        registration_id: reg.id.clone(),
        registration_type: reg.registration_type.as_str().to_owned(),
        credential: Some(Issued::new(kind, credential, expires, &reg.scopes)),
        claim: Some(ClaimOffer::new(ctx, &reg, claim_token)),
    })
}

/// `type: identity_assertion` with a verified email: no credential until the person confirms.
pub fn register_verified_email(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    email: &str,
    kind: CredentialType,
) -> AppResult<(Registered, Email)> {
    if !ctx.config.agent.verified_email_enabled {
        return Err(err(
            ErrorCode::VerifiedEmailNotEnabled,
            "verified-email registration is not enabled",
        ));
    }
    let email = users::normalize_email(email).ok_or_else(|| {
        err(
            ErrorCode::InvalidRequest,
            "assertion must be an email address",
        )
    })?;
    let (mut reg, claim_token) = new_registration(
        ctx,
        RegistrationType::VerifiedEmail,
        RegistrationStatus::Pending,
        kind,
        &ctx.config.agent.post_claim_scopes,
    );
    reg.email = Some(email.clone());
    let mail = write_tx(conn, |conn| {
        db::agents::insert_registration(conn, &reg)?;
        ctx.record_registration(
            conn,
            AuditEvent::RegistrationCreated,
            &reg,
            json!({ "type": reg.registration_type, "credential_type": kind }),
        )?;
        Ok(claims::open_attempt(conn, ctx, &reg, &email, false)?.1)
    })?;
    let answer = Registered {
        registration_id: reg.id.clone(),
        registration_type: reg.registration_type.as_str().to_owned(),
        credential: None,
        claim: Some(ClaimOffer::new(ctx, &reg, claim_token)),
    };
    Ok((answer, mail))
}

/// The user an ID-JAG speaks for: an earlier delegation for `(iss, sub)`, else the verified
/// email's account, else a new account.
pub fn match_user(conn: &mut DbConn, now: UnixTime, v: &VerifiedIdJag) -> AppResult<String> {
    if let Some(user_id) = db::agents::find_delegation(conn, &v.iss, &v.sub)? {
        return Ok(user_id);
    }
    let email = match (&v.email, v.email_verified, &v.phone_number) {
        (Some(email), true, _) => users::normalize_email(email).ok_or_else(|| {
            err(
                ErrorCode::MissingVerifiedEmail,
                "the verified email is not an address",
            )
        })?,
        // A phone-only identity gets a placeholder that can never receive mail or sign in.
        (_, _, Some(phone)) => format!("phone:{phone}"),
        _ => {
            return Err(err(
                ErrorCode::MissingVerifiedEmail,
                "no verified email or phone number",
            ))
        }
    };
    let user_id = users::find_or_create_verified(conn, now, email)?;
    db::agents::insert_delegation(conn, &v.iss, &v.sub, &user_id, now)?;
    Ok(user_id)
}

pub fn remember_jti(conn: &mut DbConn, issuer: &str, jti: &str, exp: i64) -> AppResult<()> {
    if db::agents::record_jti(conn, issuer, jti, exp)? {
        Ok(())
    } else {
        Err(err(
            ErrorCode::ReplayDetected,
            "this assertion's jti was already used",
        ))
    }
}

/// `type: identity_assertion` with an ID-JAG (already verified): a credential at once, bound to
/// the matched or created user. Never a refresh token.
pub fn register_id_jag(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    v: &VerifiedIdJag,
    kind: CredentialType,
) -> AppResult<Registered> {
    let scopes = id_jag_scopes(conn, ctx, v)?;
    let (mut reg, _) = new_registration(
        ctx,
        RegistrationType::Provider,
        RegistrationStatus::Claimed,
        kind,
        &scopes,
    );
    let (credential, expires, reg) = write_tx(conn, |conn| {
        remember_jti(conn, &v.iss, &v.jti, v.exp)?;
        let user_id = match_user(conn, ctx.now, v)?;
        reg.user_id = Some(user_id);
        reg.link = Some(false);
        reg.provider_iss = Some(v.iss.clone());
        reg.provider_sub = Some(v.sub.clone());
        reg.claimed_at = Some(ctx.now);
        db::agents::insert_registration(conn, &reg)?;
        let (credential, expires) = credentials::mint::for_registration(conn, ctx, &reg, kind)?;
        ctx.record_registration(
            conn,
            AuditEvent::RegistrationCreated,
            &reg,
            json!({ "type": reg.registration_type, "issuer": v.iss, "credential_type": kind }),
        )?;
        Ok((credential, expires, reg))
    })?;
    Ok(Registered {
        registration_id: reg.id.clone(),
        registration_type: reg.registration_type.as_str().to_owned(),
        credential: Some(Issued::new(kind, credential, expires, &reg.scopes)),
        claim: None,
    })
}

/// The scopes an ID-JAG may have at `/agent/*`: the post-claim scopes narrowed by its `scope`
/// claim. An ID-JAG made out to one of authmd's clients is that client's to redeem,
/// authenticated, at the token endpoint; anyone else holding it must not turn it into a
/// credential here.
pub(crate) fn id_jag_scopes(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    v: &VerifiedIdJag,
) -> AppResult<Vec<String>> {
    if let Some(client_id) = &v.client_id {
        if db::clients::find(conn, client_id)?.is_some() {
            return Err(err(
                ErrorCode::InvalidRequest,
                "this ID-JAG names a client of this server: redeem it at the token endpoint with that client's authentication",
            ));
        }
    }
    let flow = Scopes::from_list(&ctx.config.agent.post_claim_scopes);
    Ok(scope::assertion_scopes(&flow, v.scope.as_deref())?
        .iter()
        .map(str::to_owned)
        .collect())
}

/// Narrows what an ID-JAG registration gets (the post-claim scopes cut to its `scope` claim) to
/// the `scopes` the request names, by narrowing the claim itself.
pub fn narrow_id_jag(
    config: &Config,
    v: &mut VerifiedIdJag,
    requested: Option<&[String]>,
) -> AppResult<()> {
    if requested.is_some() {
        let flow = Scopes::from_list(&config.agent.post_claim_scopes);
        let grant = scope::assertion_scopes(&flow, v.scope.as_deref())?;
        v.scope = Some(scope::requested(&grant, requested)?.to_string());
    }
    Ok(())
}

/// Closes unclaimed registrations whose window has passed; one audit row each.
pub fn expire_unclaimed(conn: &mut DbConn, ctx: &Ctx<'_>) -> AppResult<usize> {
    write_tx(conn, |conn| {
        let expired = db::agents::expired_unclaimed(conn, ctx.now)?;
        for reg in &expired {
            db::agents::set_status(conn, &reg.id, RegistrationStatus::Expired)?;
            ctx.record_registration(
                conn,
                AuditEvent::RegistrationExpired,
                reg,
                json!({ "type": reg.registration_type }),
            )?;
        }
        db::agents::purge_jtis(conn, ctx.now)?;
        Ok(expired.len())
    })
}

/// `POST /agent/auth/revoke`: a provider's logout token revokes every credential for
/// `(iss, sub)`.
pub fn revoke_for_provider(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    v: &VerifiedLogout,
) -> AppResult<usize> {
    write_tx(conn, |conn| {
        remember_jti(conn, &v.iss, &v.jti, v.exp)?;
        let (registrations, grants) = credentials::revoke_provider_subject(
            conn,
            ctx,
            &v.iss,
            &v.sub,
            json!({ "reason": "provider logout", "issuer": v.iss }),
        )?;
        if grants > 0 {
            ctx.record(
                conn,
                AuditEvent::TokenRevoked,
                AuditEntry {
                    detail: Some(json!({
                        "reason": "provider logout",
                        "issuer": v.iss,
                        "grants_revoked": grants,
                    })),
                    ..Default::default()
                },
            )?;
        }
        Ok(registrations + grants)
    })
}

/// `POST /agent/auth/revoke`: the provider's logout token was verified before this call.
pub fn provider_logout(conn: &mut DbConn, ctx: &Ctx<'_>, v: &VerifiedLogout) -> AppResult<Revoked> {
    revoke_for_provider(conn, ctx, v).map(|revoked| Revoked { revoked })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_types() {
        let d = DefaultCredential::ApiKey;
        assert_eq!(credential_type(d, None).unwrap(), CredentialType::ApiKey);
        assert_eq!(
            credential_type(DefaultCredential::IdentityAssertion, None).unwrap(),
            CredentialType::IdentityAssertion
        );
        assert_eq!(
            credential_type(d, Some("access_token")).unwrap(),
            CredentialType::AccessToken
        );
        assert_eq!(
            credential_type(d, Some("password")).unwrap_err().code(),
            Some(ErrorCode::UnsupportedCredentialType)
        );
    }
}
