//! auth.md v0.6 at `/agent/identity`: registration answers carry a service-signed identity
//! assertion (never a credential), `service_auth` names the person by `login_hint`, and claims
//! run as a device-flow-shaped ceremony — the agent is given a `user_code` and a
//! `verification_uri`, a signed-in person types the code on `/claim`, and the agent polls the
//! token endpoint with the claim grant.
//!
//! The registrations are the same rows as v0.1's ([`crate::domain::agents`]), marked
//! [`Protocol::V06`]: the account page, the admin API, audit events and revocation treat both
//! alike. Each v0.6 agent is its own principal (`link`): a person owning two agents can revoke
//! one alone, and introspection reports the agent as `sub` and the person as `owner_sub`.
//!
//! Where AUTH.md v0.6 and the ID-JAG draft (draft-ietf-oauth-identity-assertion-authz-grant)
//! disagree, each rule applies where its document speaks:
//!
//! - **Audience.** At the token endpoint an ID-JAG is an authorization grant made out to the
//!   authorization server that redeems it: `aud` must be the issuer (the draft). At
//!   `/agent/identity` AUTH.md tells agents to mint it for the protected resource's `resource`:
//!   `aud` may be the issuer or any configured resource.
//! - **`client_id`.** The draft binds the ID-JAG to the client that redeems it: at the token
//!   endpoint it must equal the authenticated client. AUTH.md's registrations have no client; an
//!   ID-JAG naming a client registered here is refused at `/agent/*` (that client redeems it),
//!   one naming no client of ours is the provider's name for its agent and does not matter.
//! - **`auth_time`.** AUTH.md v0.5 requires it at `/agent/identity` (older than
//!   `agent.id_jag_max_auth_age_s`, missing, or in the future: `401 login_required`); the draft
//!   does not, so the token endpoint does not.
//! - **Email matches.** AUTH.md v0.5: a verified email matching an account that has no
//!   delegation for the ID-JAG's `(iss, sub)` is never bound silently at `/agent/identity`; the
//!   person confirms on `/claim` (`401 interaction_required`). `/agent/auth` keeps v0.1's rule.
//! - **Refresh.** Neither path returns a refresh token for an ID-JAG; a v0.6 identity assertion
//!   is re-exchangeable until it expires instead.

use askama::Template;
use serde::Serialize;
use serde_json::json;

use crate::clock::{rfc3339, UnixTime};
use crate::db::agents::{AttemptRow, RegistrationRow};
use crate::db::status::{
    AttemptStatus, Ceremony, CredentialType, GrantKind, Protocol, RegistrationStatus,
    RegistrationType,
};
use crate::db::tokens::GrantRow;
use crate::db::{self, write_checked, write_tx, DbConn};
use crate::domain::agents::{self, id_jag_scopes, new_registration};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::claims::{claimable, otp_hash, six_digits, MAX_OTP_FAILURES};
use crate::domain::context::Ctx;
use crate::domain::credentials::mint::identity_assertion_v06;
use crate::domain::credentials::{self, issue_for_grant, TokenResponse};
use crate::domain::discovery::{paths, GRANT_AGENT_CLAIM};
use crate::domain::mail::Email;
use crate::domain::providers::VerifiedIdJag;
use crate::domain::ratelimit;
use crate::domain::scope::{self, Scopes};
use crate::domain::secrets::{
    constant_time_eq, prefix, random_id, time_ordered_id, HashedToken, PlainToken,
};
use crate::domain::users::{self, User};
use crate::error::{AppError, AppResult, ErrorCode};

/// What each `slow_down` adds to the polling interval (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP_S: i64 = 5;
/// How far in the future an ID-JAG's `auth_time` may be (clock skew).
const AUTH_TIME_SKEW_S: i64 = 60;

fn err(code: ErrorCode, msg: &'static str) -> AppError {
    AppError::protocol(code, msg)
}

/// The RFC 8628-shaped ceremony block: `claim` in registration answers, `claim_attempt` in
/// the answer to `POST /agent/identity/claim`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CeremonyBlock {
    /// Six digits the agent shows the person, who types them on `/claim`.
    pub user_code: String,
    /// Seconds the `user_code` can still be typed.
    pub expires_in: i64,
    /// `/login?return_to=/claim?claim_attempt_token=…`: the page the person opens.
    pub verification_uri: String,
    /// Seconds between polls of the claim grant.
    pub interval: i64,
}

/// The answer to `POST /agent/identity` (200), and the body of its `401
/// interaction_required`. Fields absent from a shape are left out.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct IdentityRegistered {
    pub registration_id: String,
    /// `anonymous`, `service_auth` or `identity_assertion`.
    pub registration_type: String,
    /// Exchange it at the token endpoint with the JWT-bearer grant, as often as needed until
    /// it expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_assertion: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion_expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_claim_scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_url: Option<String>,
    /// Shown once: the agent's handle on the claim (poll it at the token endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_token: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_token_expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_claim_scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<CeremonyBlock>,
}

/// An ID-JAG at `/agent/identity` (or claiming with one): done, or the person must confirm.
#[derive(Debug, Clone)]
pub enum IdJagOutcome {
    Registered(IdentityRegistered),
    /// `401 interaction_required`: the body, with the ceremony block.
    ConfirmationRequired(IdentityRegistered),
}

/// The answer to `POST /agent/identity/claim` with an email.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClaimAttemptStarted {
    pub registration_id: String,
    pub claim_attempt_id: String,
    /// `initiated`.
    pub status: String,
    /// RFC 3339: when the `user_code` stops working.
    pub expires_at: String,
    pub claim_attempt: CeremonyBlock,
}

/// The answer to `POST /agent/identity/claim` with an ID-JAG that needed no confirmation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClaimedWithAssertion {
    pub registration_id: String,
    /// `claimed`.
    pub status: String,
    /// The post-claim assertion; the pre-claim one and its access tokens no longer work.
    pub identity_assertion: String,
    pub assertion_expires: String,
    pub scopes: Vec<String>,
}

fn scope_list(s: &str) -> Vec<String> {
    scope::list(s)
}

fn claim_url(ctx: &Ctx<'_>) -> String {
    ctx.url(paths::IDENTITY_CLAIM)
}

/// A new v0.6 registration row (not yet stored).
fn v06_registration(
    ctx: &Ctx<'_>,
    kind: RegistrationType,
    status: RegistrationStatus,
    scopes: &[String],
) -> (RegistrationRow, PlainToken) {
    let (mut reg, token) =
        new_registration(ctx, kind, status, CredentialType::IdentityAssertion, scopes);
    reg.protocol = Protocol::V06;
    // Each v0.6 agent is its own principal, owned by the person who claims it.
    reg.link = Some(true);
    let token = token.unwrap_or_else(|| {
        let t = PlainToken::generate(&ctx.config.tokens.prefixes.claim);
        reg.claim_token_hash = Some(t.hash().as_str().to_owned());
        t
    });
    (reg, token)
}

fn created(ctx: &Ctx<'_>, conn: &mut DbConn, reg: &RegistrationRow) -> AppResult<()> {
    ctx.record_registration(
        conn,
        AuditEvent::RegistrationCreated,
        reg,
        json!({ "type": reg.registration_type, "protocol": reg.protocol }),
    )
}

/// `type: anonymous`: an identity assertion with the pre-claim scopes, and a claim token.
pub fn register_anonymous(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    requested: Option<&[String]>,
) -> AppResult<IdentityRegistered> {
    if !ctx.config.agent.anonymous_enabled {
        return Err(err(
            ErrorCode::AnonymousNotEnabled,
            "anonymous registration is not enabled",
        ));
    }
    let pre_claim = Scopes::from_list(&ctx.config.agent.pre_claim_scopes);
    let scopes = scope::list(&scope::requested(&pre_claim, requested)?.to_string());
    let (reg, claim_token) = v06_registration(
        ctx,
        RegistrationType::Anonymous,
        RegistrationStatus::Active,
        &scopes,
    );
    // Nothing to check: every refusal came before, so no savepoint (see `write_checked`).
    write_checked(
        conn,
        |_| Ok(()),
        |conn, ()| {
            db::agents::insert_registration(conn, &reg)?;
            created(ctx, conn, &reg)
        },
    )?;
    let (assertion, exp) = identity_assertion_v06(ctx, &reg, None)?;
    Ok(IdentityRegistered {
        registration_id: reg.id.clone(),
        registration_type: "anonymous".to_owned(),
        identity_assertion: Some(assertion),
        assertion_expires: Some(rfc3339(exp)),
        pre_claim_scopes: Some(scope_list(&reg.scopes)),
        claim_url: Some(claim_url(ctx)),
        claim_token: Some(claim_token.into_string()),
        claim_token_expires: Some(rfc3339(reg.claim_token_expires)),
        post_claim_scopes: Some(ctx.config.agent.post_claim_scopes.clone()),
        ..Default::default()
    })
}

/// `type: service_auth`: the agent names the person; nothing works until they confirm on
/// `/claim`. The ceremony comes with the answer, and is mailed to the person.
pub fn register_service_auth(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    login_hint: &str,
) -> AppResult<(IdentityRegistered, Option<Email>)> {
    if !ctx.config.agent.service_auth_enabled {
        return Err(err(
            ErrorCode::ServiceAuthNotEnabled,
            "service_auth registration is not enabled",
        ));
    }
    let email = users::normalize_email(login_hint).ok_or_else(|| {
        err(
            ErrorCode::InvalidLoginHint,
            "login_hint must be an email address",
        )
    })?;
    let (mut reg, claim_token) = v06_registration(
        ctx,
        RegistrationType::ServiceAuth,
        RegistrationStatus::Pending,
        &ctx.config.agent.post_claim_scopes,
    );
    reg.email = Some(email.clone());
    let (block, mail) = write_tx(conn, |conn| {
        db::agents::insert_registration(conn, &reg)?;
        created(ctx, conn, &reg)?;
        let (_, block, mail) = open_ceremony(conn, ctx, &reg, &email)?;
        Ok((block, mail))
    })?;
    let answer = IdentityRegistered {
        registration_id: reg.id.clone(),
        registration_type: "service_auth".to_owned(),
        claim_url: Some(claim_url(ctx)),
        claim_token: Some(claim_token.into_string()),
        claim_token_expires: Some(rfc3339(reg.claim_token_expires)),
        post_claim_scopes: Some(scope_list(&reg.scopes)),
        claim: Some(block),
        ..Default::default()
    };
    Ok((answer, mail))
}

/// AUTH.md v0.5: an ID-JAG must say when the person signed in at the provider, recently.
pub fn check_auth_time(ctx: &Ctx<'_>, v: &VerifiedIdJag) -> AppResult<()> {
    let max_age = ctx.config.agent.id_jag_max_auth_age_s;
    let description = match v.auth_time {
        None => "the ID-JAG has no auth_time; have the person sign in at the provider and mint a fresh ID-JAG".to_owned(),
        Some(t) if t > ctx.now + AUTH_TIME_SKEW_S => format!(
            "auth_time is {}s in the future; re-mint the ID-JAG with the time of the person's sign-in",
            t - ctx.now
        ),
        Some(t) if ctx.now - t > max_age => format!(
            "auth_time is {}s old; max allowed is {max_age}s. Re-authenticate at the provider and request a fresh ID-JAG.",
            ctx.now - t
        ),
        Some(_) => return Ok(()),
    };
    Err(AppError::login_required(description, max_age))
}

/// Who an ID-JAG speaks for at `/agent/identity`.
enum Match {
    /// An earlier delegation, or a new account: bind at once.
    User(String),
    /// The verified email is an existing account's and `(iss, sub)` was never delegated: the
    /// person confirms first.
    Confirm(String),
}

fn match_id_jag(conn: &mut DbConn, ctx: &Ctx<'_>, v: &VerifiedIdJag) -> AppResult<Match> {
    if let Some(user_id) = db::agents::find_delegation(conn, &v.iss, &v.sub)? {
        return Ok(Match::User(user_id));
    }
    if let (Some(email), true) = (&v.email, v.email_verified) {
        let email = users::normalize_email(email).ok_or_else(|| {
            err(
                ErrorCode::MissingVerifiedEmail,
                "the verified email is not an address",
            )
        })?;
        if db::users::find_by_email(conn, &email)?.is_some() {
            return Ok(Match::Confirm(email));
        }
    }
    // A new person (or a phone-only identity, matched like v0.1): bound now.
    let user_id = agents::match_user(conn, ctx.now, v)?;
    Ok(Match::User(user_id))
}

fn user_email(conn: &mut DbConn, user_id: &str) -> AppResult<Option<String>> {
    Ok(db::users::find(conn, user_id)?
        .map(|u| u.email)
        .filter(|e| !e.starts_with("phone:")))
}

/// `type: identity_assertion` with a verified ID-JAG (its `auth_time` checked first).
pub fn register_id_jag(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    v: &VerifiedIdJag,
) -> AppResult<(IdJagOutcome, Option<Email>)> {
    check_auth_time(ctx, v)?;
    let scopes = id_jag_scopes(conn, ctx, v)?;
    write_tx(conn, |conn| {
        agents::remember_jti(conn, &v.iss, &v.jti, v.exp)?;
        let matched = match_id_jag(conn, ctx, v)?;
        let status = match matched {
            Match::User(_) => RegistrationStatus::Claimed,
            Match::Confirm(_) => RegistrationStatus::Pending,
        };
        let (mut reg, claim_token) =
            v06_registration(ctx, RegistrationType::Provider, status, &scopes);
        reg.provider_iss = Some(v.iss.clone());
        reg.provider_sub = Some(v.sub.clone());
        match matched {
            Match::User(user_id) => {
                reg.user_id = Some(user_id.clone());
                reg.claimed_at = Some(ctx.now);
                reg.claim_token_hash = None;
                db::agents::insert_registration(conn, &reg)?;
                created(ctx, conn, &reg)?;
                let email = user_email(conn, &user_id)?;
                let (assertion, exp) = identity_assertion_v06(ctx, &reg, email.as_deref())?;
                let answer = IdentityRegistered {
                    registration_id: reg.id.clone(),
                    registration_type: "identity_assertion".to_owned(),
                    identity_assertion: Some(assertion),
                    assertion_expires: Some(rfc3339(exp)),
                    scopes: Some(scopes.clone()),
                    ..Default::default()
                };
                Ok((IdJagOutcome::Registered(answer), None))
            }
            Match::Confirm(email) => {
                reg.email = Some(email.clone());
                db::agents::insert_registration(conn, &reg)?;
                created(ctx, conn, &reg)?;
                let (_, block, mail) = open_ceremony(conn, ctx, &reg, &email)?;
                let answer = IdentityRegistered {
                    registration_id: reg.id.clone(),
                    registration_type: "identity_assertion".to_owned(),
                    claim_url: Some(claim_url(ctx)),
                    claim_token: Some(claim_token.into_string()),
                    claim_token_expires: Some(rfc3339(reg.claim_token_expires)),
                    post_claim_scopes: Some(scopes.clone()),
                    claim: Some(block),
                    ..Default::default()
                };
                Ok((IdJagOutcome::ConfirmationRequired(answer), mail))
            }
        }
    })
}

#[derive(Template)]
#[template(path = "email/user_code.txt")]
struct UserCodeText<'a> {
    issuer: &'a str,
    email: &'a str,
    user_code: &'a str,
    url: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "email/user_code.html")]
struct UserCodeHtml<'a> {
    issuer: &'a str,
    email: &'a str,
    user_code: &'a str,
    url: &'a str,
    minutes: i64,
}

/// The page the person opens: the login form, returning to `/claim` for this attempt. Built
/// from `server.issuer` only.
fn verification_uri(ctx: &Ctx<'_>, view_token: &str) -> String {
    let claim_path = format!("{}?claim_attempt_token={view_token}", paths::CLAIM_PAGE);
    let return_to: String = url::form_urlencoded::byte_serialize(claim_path.as_bytes()).collect();
    format!("{}/login?return_to={return_to}", ctx.config.server.issuer)
}

/// Opens a claim attempt for `email` with a fresh `user_code` (replacing any open attempt),
/// and the email carrying it when claim emails are on.
fn open_ceremony(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    reg: &RegistrationRow,
    email: &str,
) -> AppResult<(AttemptRow, CeremonyBlock, Option<Email>)> {
    let mailing = ctx.config.agent.claim_email_enabled;
    if mailing {
        ratelimit::mail_allowed(conn, &ctx.config.rate_limit, ctx.now, email)?;
    }
    db::agents::supersede_open_attempts(conn, &reg.id)?;
    let view_token = PlainToken::generate(prefix::CLAIM_ATTEMPT);
    let user_code = six_digits();
    let id = random_id("cat_");
    let code_expires = (ctx.now + ctx.config.agent.user_code_ttl_s).min(reg.claim_token_expires);
    let attempt = AttemptRow {
        id: id.clone(),
        registration_id: reg.id.clone(),
        email: email.to_owned(),
        link: true,
        view_token_hash: view_token.hash().as_str().to_owned(),
        status: AttemptStatus::Initiated,
        otp_hash: Some(otp_hash(&id, &user_code)),
        otp_expires_at: Some(code_expires),
        failed_attempts: 0,
        created_at: ctx.now,
        expires_at: reg.claim_token_expires,
        ceremony: Ceremony::UserCode,
    };
    db::agents::insert_attempt(conn, &attempt)?;
    ctx.record_registration(
        conn,
        AuditEvent::ClaimRequested,
        reg,
        json!({ "attempt_id": attempt.id, "ceremony": "user_code" }),
    )?;
    let url = verification_uri(ctx, view_token.expose());
    let block = CeremonyBlock {
        user_code: user_code.clone(),
        expires_in: code_expires - ctx.now,
        verification_uri: url.clone(),
        interval: ctx.config.agent.claim_poll_interval_s,
    };
    let mail = if mailing {
        let issuer = ctx.config.server.issuer.as_str();
        let minutes = (code_expires - ctx.now + 59) / 60;
        let render = |r: Result<String, askama::Error>| {
            r.map_err(|e| AppError::internal(format!("user code email: {e}")))
        };
        Some(Email {
            to: email.to_owned(),
            subject: "An agent asks to act on your behalf".to_owned(),
            text: render(
                UserCodeText {
                    issuer,
                    email,
                    user_code: &user_code,
                    url: &url,
                    minutes,
                }
                .render(),
            )?,
            html: render(
                UserCodeHtml {
                    issuer,
                    email,
                    user_code: &user_code,
                    url: &url,
                    minutes,
                }
                .render(),
            )?,
        })
    } else {
        None
    };
    Ok((attempt, block, mail))
}

/// `POST /agent/identity/claim` with `{claim_token, email}`: a fresh ceremony (new
/// `user_code`, new link). For `service_auth` and ID-JAG confirmations the email must be the
/// one the registration names.
pub fn start_claim(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    claim_token: &str,
    email: &str,
) -> AppResult<(ClaimAttemptStarted, Option<Email>)> {
    let email = users::normalize_email(email)
        .ok_or_else(|| err(ErrorCode::InvalidRequest, "email is not a valid address"))?;
    write_tx(conn, |conn| {
        let reg = claimable(conn, ctx.now, claim_token, Protocol::V06)?;
        if reg.email.as_deref().is_some_and(|named| named != email) {
            return Err(err(
                ErrorCode::InvalidRequest,
                "email must be the address this registration was made for",
            ));
        }
        let (attempt, block, mail) = open_ceremony(conn, ctx, &reg, &email)?;
        let started = ClaimAttemptStarted {
            registration_id: reg.id,
            claim_attempt_id: attempt.id,
            status: attempt.status.as_str().to_owned(),
            expires_at: rfc3339(attempt.otp_expires_at.unwrap_or(attempt.expires_at)),
            claim_attempt: block,
        };
        Ok((started, mail))
    })
}

/// What claiming with an ID-JAG came to.
#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    Claimed(ClaimedWithAssertion),
    /// The person must confirm: the `401 interaction_required` body.
    ConfirmationRequired(IdentityRegistered),
}

/// `POST /agent/identity/claim` with `{type: identity_assertion, claim_token, assertion}`
/// (auth.md PR 12): an anonymous registration claimed by the person a trusted provider vouches
/// for. Same matching as registering with the ID-JAG: an existing account with no delegation
/// for `(iss, sub)` confirms on `/claim` first.
pub fn claim_with_id_jag(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    claim_token: &str,
    v: &VerifiedIdJag,
) -> AppResult<(ClaimOutcome, Option<Email>)> {
    check_auth_time(ctx, v)?;
    id_jag_scopes(conn, ctx, v)?;
    write_tx(conn, |conn| {
        let reg = claimable(conn, ctx.now, claim_token, Protocol::V06)?;
        if reg.registration_type != RegistrationType::Anonymous {
            return Err(err(
                ErrorCode::ClaimedOrInFlight,
                "only anonymous registrations are claimed with an ID-JAG",
            ));
        }
        agents::remember_jti(conn, &v.iss, &v.jti, v.exp)?;
        db::agents::set_provider_subject(conn, &reg.id, &v.iss, &v.sub)?;
        let mut reg = reg;
        reg.provider_iss = Some(v.iss.clone());
        reg.provider_sub = Some(v.sub.clone());
        match match_id_jag(conn, ctx, v)? {
            Match::User(user_id) => {
                let claimed = finish_claim(conn, ctx, &reg, &user_id, None)?;
                // The answer carries the credential: nothing is left to poll for.
                db::agents::clear_claim_token(conn, HashedToken::of(claim_token).as_str())?;
                let email = user_email(conn, &user_id)?;
                let (assertion, exp) = identity_assertion_v06(ctx, &claimed, email.as_deref())?;
                Ok((
                    ClaimOutcome::Claimed(ClaimedWithAssertion {
                        registration_id: claimed.id.clone(),
                        status: claimed.status.as_str().to_owned(),
                        identity_assertion: assertion,
                        assertion_expires: rfc3339(exp),
                        scopes: scope_list(&claimed.scopes),
                    }),
                    None,
                ))
            }
            Match::Confirm(email) => {
                let (_, block, mail) = open_ceremony(conn, ctx, &reg, &email)?;
                let answer = IdentityRegistered {
                    registration_id: reg.id.clone(),
                    registration_type: "anonymous".to_owned(),
                    claim_url: Some(claim_url(ctx)),
                    claim_token_expires: Some(rfc3339(reg.claim_token_expires)),
                    post_claim_scopes: Some(ctx.config.agent.post_claim_scopes.clone()),
                    claim: Some(block),
                    ..Default::default()
                };
                Ok((ClaimOutcome::ConfirmationRequired(answer), mail))
            }
        }
    })
}

/// Makes `user_id` the owner of `reg`: post-claim scopes, the provider's delegation bound when
/// the claim came through one, and an anonymous registration's pre-claim access tokens
/// revoked (its pre-claim assertion is refused from now on: it says `pre_claim`).
fn finish_claim(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    reg: &RegistrationRow,
    user_id: &str,
    attempt_id: Option<&str>,
) -> AppResult<RegistrationRow> {
    let scopes = if reg.registration_type == RegistrationType::Provider {
        reg.scopes.clone()
    } else {
        scope::Scopes::from_list(&ctx.config.agent.post_claim_scopes).to_string()
    };
    if reg.registration_type == RegistrationType::Anonymous {
        db::agents::revoke_registration_credentials(conn, &reg.id, ctx.now)?;
    }
    if let (Some(iss), Some(sub)) = (&reg.provider_iss, &reg.provider_sub) {
        if db::agents::find_delegation(conn, iss, sub)?.is_none() {
            db::agents::insert_delegation(conn, iss, sub, user_id, ctx.now)?;
        }
    }
    db::agents::set_claimed(conn, &reg.id, user_id, true, &scopes, ctx.now)?;
    if let Some(attempt_id) = attempt_id {
        db::agents::set_attempt_status(conn, attempt_id, AttemptStatus::Completed)?;
    }
    let claimed = db::agents::find_registration(conn, &reg.id)?
        .ok_or_else(|| AppError::internal("registration vanished"))?;
    ctx.record_registration(
        conn,
        AuditEvent::ClaimConfirmed,
        &claimed,
        json!({ "attempt_id": attempt_id, "protocol": claimed.protocol }),
    )?;
    Ok(claimed)
}

/// A notice shown above the `/claim` form: something the person should notice first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advisory {
    /// An ID-JAG confirmation where this provider was never linked to this person before.
    FirstTimeProvider { provider: String },
    /// The first agent this person takes ownership of.
    FirstTimeAccount,
}

impl Advisory {
    pub fn kind(&self) -> &'static str {
        match self {
            Advisory::FirstTimeProvider { .. } => "first_time_provider",
            Advisory::FirstTimeAccount => "first_time_account",
        }
    }
}

/// What `/claim` shows a signed-in person for a `claim_attempt_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimPage {
    /// The code form.
    Form {
        advisories: Vec<Advisory>,
    },
    /// The claim names someone else: sign in as them.
    WrongAccount {
        expected: String,
    },
    /// Nothing to do here: why.
    Closed(&'static str),
    Done,
}

fn attempt_for_page(
    conn: &mut DbConn,
    now: UnixTime,
    view_token: &str,
) -> AppResult<Result<(AttemptRow, RegistrationRow), ClaimPage>> {
    let invalid =
        || ClaimPage::Closed("This link is no longer valid. Ask your agent to start a new claim.");
    let Some(attempt) =
        db::agents::find_attempt_by_view_token(conn, HashedToken::of(view_token).as_str())?
    else {
        return Ok(Err(invalid()));
    };
    if attempt.ceremony != Ceremony::UserCode {
        return Ok(Err(invalid()));
    }
    let Some(reg) = db::agents::find_registration(conn, &attempt.registration_id)? else {
        return Ok(Err(invalid()));
    };
    if reg.status == RegistrationStatus::Claimed {
        return Ok(Err(ClaimPage::Closed(
            "This agent has already been claimed. You can close this tab.",
        )));
    }
    let closed = match attempt.status {
        AttemptStatus::Superseded => Some("A newer code replaced this one. Use the latest link."),
        AttemptStatus::Locked => Some("Too many wrong codes. Ask your agent for a new code."),
        AttemptStatus::Cancelled | AttemptStatus::Completed => {
            Some("This link is no longer valid.")
        }
        AttemptStatus::Initiated => None,
    };
    if let Some(why) = closed {
        return Ok(Err(ClaimPage::Closed(why)));
    }
    if !reg.status.claimable() || reg.claim_token_expires <= now {
        return Ok(Err(ClaimPage::Closed(
            "This request has expired. Ask your agent to start again.",
        )));
    }
    if attempt.otp_expires_at.is_none_or(|t| t <= now) {
        return Ok(Err(ClaimPage::Closed(
            "This code has expired. Ask your agent for a new code.",
        )));
    }
    Ok(Ok((attempt, reg)))
}

fn advisories(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    reg: &RegistrationRow,
    user: &User,
) -> AppResult<Vec<Advisory>> {
    let mut out = Vec::new();
    if let Some(iss) = &reg.provider_iss {
        if !db::agents::issuer_linked(conn, iss, &user.id)? {
            // The name comes from the trust list, never from what the provider signed.
            let provider = ctx
                .config
                .agent
                .trusted_providers
                .iter()
                .find(|p| &p.issuer == iss)
                .map(|p| p.issuer.clone())
                .unwrap_or_else(|| iss.clone());
            out.push(Advisory::FirstTimeProvider { provider });
        }
    }
    if !db::agents::has_other_claimed(conn, &user.id, &reg.id)? {
        out.push(Advisory::FirstTimeAccount);
    }
    Ok(out)
}

/// `GET /claim?claim_attempt_token=…` for a signed-in person. Reads only.
pub fn page(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    view_token: &str,
    user: &User,
) -> AppResult<ClaimPage> {
    let (attempt, reg) = match attempt_for_page(conn, ctx.now, view_token)? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    if attempt.email != user.email {
        return Ok(ClaimPage::WrongAccount {
            expected: attempt.email,
        });
    }
    Ok(ClaimPage::Form {
        advisories: advisories(conn, ctx, &reg, user)?,
    })
}

/// `POST /claim`: the person typed the code. A wrong code is counted (the answer says so);
/// five lock the attempt. The right one makes the person the registration's owner; the agent
/// learns it at its next poll.
pub fn confirm(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    view_token: &str,
    user: &User,
    user_code: &str,
) -> AppResult<Result<ClaimPage, (ClaimPage, &'static str)>> {
    write_tx(conn, |conn| {
        let (attempt, reg) = match attempt_for_page(conn, ctx.now, view_token)? {
            Ok(found) => found,
            Err(page) => return Ok(Ok(page)),
        };
        if attempt.email != user.email {
            return Ok(Ok(ClaimPage::WrongAccount {
                expected: attempt.email,
            }));
        }
        let stored = attempt.otp_hash.as_deref().unwrap_or_default();
        let typed = user_code.trim();
        if !constant_time_eq(otp_hash(&attempt.id, typed).as_bytes(), stored.as_bytes()) {
            let failures = db::agents::count_failed_attempt(conn, &attempt.id)?;
            if failures >= MAX_OTP_FAILURES {
                db::agents::set_attempt_status(conn, &attempt.id, AttemptStatus::Locked)?;
                return Ok(Ok(ClaimPage::Closed(
                    "Too many wrong codes. Ask your agent for a new code.",
                )));
            }
            let form = ClaimPage::Form {
                advisories: advisories(conn, ctx, &reg, user)?,
            };
            return Ok(Err((
                form,
                "That code doesn't match. Check the digits and try again.",
            )));
        }
        finish_claim(conn, ctx, &reg, &user.id, Some(&attempt.id))?;
        Ok(Ok(ClaimPage::Done))
    })
}

/// The claim grant (`urn:workos:agent-auth:grant-type:claim`) at the token endpoint: RFC 8628
/// §3.5 answers while the person has not confirmed (`authorization_pending`, `slow_down` when
/// polled faster than the interval, `expired_token` when the code's or the claim's window has
/// closed); once they have, an access token and the post-claim identity assertion, handed
/// over once (the claim token is then forgotten).
pub fn poll(conn: &mut DbConn, ctx: &Ctx<'_>, claim_token: &str) -> AppResult<TokenResponse> {
    let expired = |m: &'static str| err(ErrorCode::ExpiredToken, m);
    // The poll is recorded even when the answer is an error: commit, then fail.
    let outcome = write_tx(conn, |conn| -> AppResult<AppResult<TokenResponse>> {
        let hash = HashedToken::of(claim_token);
        let Some(reg) = db::agents::find_by_claim_token(conn, hash.as_str())? else {
            return Err(expired("unknown or expired claim_token"));
        };
        if reg.protocol != Protocol::V06 {
            return Err(err(
                ErrorCode::InvalidGrant,
                "this registration was made at /agent/auth: its claim completes at /agent/auth/claim/complete",
            ));
        }
        match reg.status {
            RegistrationStatus::Revoked | RegistrationStatus::Expired => {
                return Err(expired("the registration is no longer active"))
            }
            RegistrationStatus::Claimed => {
                db::agents::clear_claim_token(conn, hash.as_str())?;
                return deliver(conn, ctx, &reg).map(Ok);
            }
            _ if reg.claim_token_expires <= ctx.now => {
                return Err(expired("the claim window has closed; register again"))
            }
            _ => {}
        }
        let interval = reg
            .claim_poll_interval
            .unwrap_or(ctx.config.agent.claim_poll_interval_s);
        let too_soon = reg.claim_polled_at.is_some_and(|t| ctx.now - t < interval);
        let next = if too_soon {
            interval + SLOW_DOWN_STEP_S
        } else {
            interval
        };
        db::agents::set_claim_polled(conn, &reg.id, ctx.now, next)?;
        if too_soon {
            return Ok(Err(AppError::protocol(
                ErrorCode::SlowDown,
                format!("polled faster than the interval: wait {next} s between polls"),
            )));
        }
        if let Some(attempt) = db::agents::latest_attempt(conn, &reg.id)? {
            let code_closed = attempt.status == AttemptStatus::Locked
                || attempt.otp_expires_at.is_none_or(|t| t <= ctx.now);
            if attempt.status != AttemptStatus::Completed && code_closed {
                return Ok(Err(expired(
                    "the user_code window has closed: ask for a new one at the claim_endpoint",
                )));
            }
        }
        Ok(Err(err(
            ErrorCode::AuthorizationPending,
            "the person has not confirmed the code yet",
        )))
    })?;
    outcome
}

/// The claimed registration's first access token and its post-claim identity assertion.
fn deliver(conn: &mut DbConn, ctx: &Ctx<'_>, reg: &RegistrationRow) -> AppResult<TokenResponse> {
    let grant = GrantRow {
        id: time_ordered_id("gr_", ctx.now),
        client_id: None,
        registration_id: Some(reg.id.clone()),
        user_id: reg.user_id.clone(),
        subject: credentials::subject_of(reg).to_owned(),
        scope: reg.scopes.clone(),
        resource: ctx.config.default_resource().to_owned(),
        kind: GrantKind::AgentClaim,
        created_at: ctx.now,
        revoked_at: None,
        provider_iss: None,
        provider_sub: None,
    };
    db::tokens::insert_grant(conn, &grant)?;
    let mut response = issue_for_grant(conn, ctx, &grant, &reg.scopes, false)?;
    let email = match &reg.user_id {
        Some(user_id) => user_email(conn, user_id)?,
        None => None,
    };
    let (assertion, exp) = identity_assertion_v06(ctx, reg, email.as_deref())?;
    response.identity_assertion = Some(assertion);
    response.assertion_expires = Some(rfc3339(exp));
    ctx.record(
        conn,
        AuditEvent::TokenIssued,
        AuditEntry {
            registration_id: Some(&reg.id),
            user_id: reg.user_id.as_deref(),
            detail: Some(json!({ "grant_type": GRANT_AGENT_CLAIM, "grant_id": grant.id })),
            ..Default::default()
        },
    )?;
    Ok(response)
}
