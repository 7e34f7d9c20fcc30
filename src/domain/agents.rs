//! auth.md agent registration: anonymous, verified-email and ID-JAG registrations, their
//! credentials, the emailed claim ceremony (attempt, one-time code, completion), expiry of
//! unclaimed registrations, provider-initiated revocation, and the JWT-bearer exchange of the
//! identity assertions authmd issues.

use askama::Template;
use jsonwebtoken::{Algorithm, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clock::UnixTime;
use crate::db::agents::{ApiKeyRow, AttemptRow, RegistrationRow};
use crate::db::tokens::GrantRow;
use crate::db::{self, write_tx, DbConn};
use crate::domain::audit::{self, AuditEntry, AuditEvent};
use crate::domain::clients::Client;
use crate::domain::context::Ctx;
use crate::domain::credentials;
use crate::domain::discovery::{paths, GRANT_JWT_BEARER};
use crate::domain::mail::Email;
use crate::domain::providers::{VerifiedIdJag, VerifiedLogout};
use crate::domain::ratelimit;
use crate::domain::scope::Scopes;
use crate::domain::secrets::{constant_time_eq, prefix, random_id, HashedToken, PlainToken};
use crate::domain::tokens::{self, Introspection, Subject, TokenResponse};
use crate::domain::users;
use crate::error::{AppError, AppResult, ErrorCode};

pub const TYPE_ANONYMOUS: &str = "anonymous";
pub const TYPE_EMAIL: &str = "email-verification";
pub const TYPE_PROVIDER: &str = "agent-provider";
/// One-time codes live ten minutes.
pub const OTP_TTL_S: i64 = 600;
/// Wrong codes before an attempt locks.
pub const MAX_OTP_FAILURES: i32 = 5;

fn err(code: ErrorCode, msg: &'static str) -> AppError {
    AppError::protocol(code, msg)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialType {
    ApiKey,
    AccessToken,
    IdentityAssertion,
}

impl CredentialType {
    pub fn parse(s: Option<&str>) -> AppResult<Self> {
        match s {
            None | Some("api_key") => Ok(Self::ApiKey),
            Some("access_token") => Ok(Self::AccessToken),
            Some("identity_assertion") => Ok(Self::IdentityAssertion),
            Some(_) => Err(err(
                ErrorCode::UnsupportedCredentialType,
                "requested_credential_type must be api_key, access_token or identity_assertion",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::AccessToken => "access_token",
            Self::IdentityAssertion => "identity_assertion",
        }
    }
}

/// The `sub` of a registration's credentials: the user after a merge (or for provider
/// registrations), the agent's own principal otherwise.
pub fn subject_of(reg: &RegistrationRow) -> &str {
    match (&reg.user_id, reg.link) {
        (Some(user), Some(false) | None)
            if reg.status == "claimed" || reg.registration_type == TYPE_PROVIDER =>
        {
            user
        }
        _ => &reg.principal_id,
    }
}

/// Whether a registration's credentials work now.
pub fn is_live(reg: &RegistrationRow, now: UnixTime) -> bool {
    match reg.status.as_str() {
        "revoked" | "expired" | "pending" => false,
        // Unclaimed registrations die with their claim window.
        _ => reg.claimed_at.is_some() || reg.claim_token_expires > now,
    }
}

fn audit_reg(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    event: AuditEvent,
    reg: &RegistrationRow,
    detail: Value,
) -> AppResult<()> {
    audit::record(
        conn,
        ctx.now,
        ctx.audit,
        event,
        AuditEntry {
            registration_id: Some(&reg.id),
            user_id: reg.user_id.as_deref(),
            detail: Some(detail),
            ..Default::default()
        },
    )
}

#[derive(Debug, Serialize, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    registration_id: String,
    scope: String,
}

/// Mints a credential of `kind` for a registration; returns it and its expiry (None: none).
fn issue_credential(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    reg: &RegistrationRow,
    kind: CredentialType,
) -> AppResult<(String, Option<i64>)> {
    let subject = subject_of(reg).to_owned();
    match kind {
        CredentialType::ApiKey => {
            let key = PlainToken::generate(&ctx.config.agent.api_key_prefix);
            db::agents::insert_api_key(
                conn,
                &ApiKeyRow {
                    key_hash: key.hash().as_str().to_owned(),
                    registration_id: reg.id.clone(),
                    prefix: key.display_prefix(),
                    created_at: ctx.now,
                    last_used_at: None,
                    revoked_at: None,
                },
            )?;
            Ok((key.into_string(), None))
        }
        CredentialType::AccessToken => {
            let (token, ttl) = tokens::mint_access(
                conn,
                ctx,
                &Subject {
                    grant_id: None,
                    client_id: None,
                    registration_id: Some(&reg.id),
                    subject: &subject,
                    user_id: reg.user_id.as_deref(),
                    scope: &reg.scopes,
                    audience: ctx.config.default_resource(),
                },
            )?;
            Ok((token, Some(ctx.now + ttl)))
        }
        CredentialType::IdentityAssertion => {
            let exp = ctx.now + ctx.config.agent.identity_assertion_ttl_s;
            let claims = AssertionClaims {
                iss: ctx.config.server.issuer.clone(),
                sub: subject,
                aud: ctx.config.server.issuer.clone(),
                iat: ctx.now,
                exp,
                jti: random_id(""),
                registration_id: reg.id.clone(),
                scope: reg.scopes.clone(),
            };
            let mut header = Header::new(Algorithm::ES256);
            header.typ = Some("JWT".to_owned());
            header.kid = Some(ctx.keys.signer.kid.clone());
            let jwt = jsonwebtoken::encode(&header, &claims, &ctx.keys.signer.encoding)
                .map_err(|e| AppError::internal(format!("signing identity assertion: {e}")))?;
            Ok((jwt, Some(exp)))
        }
    }
}

fn scopes_json(s: &str) -> Value {
    json!(s.split(' ').filter(|x| !x.is_empty()).collect::<Vec<_>>())
}

fn new_registration(
    ctx: &Ctx<'_>,
    kind: &str,
    status: &str,
    credential: CredentialType,
    scopes: &[String],
) -> (RegistrationRow, Option<PlainToken>) {
    let claim_token = (kind != TYPE_PROVIDER).then(|| PlainToken::generate(prefix::CLAIM_TOKEN));
    let row = RegistrationRow {
        id: random_id("reg_"),
        registration_type: kind.to_owned(),
        status: status.to_owned(),
        requested_credential_type: credential.as_str().to_owned(),
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
    };
    (row, claim_token)
}

/// `type: anonymous`: a working credential at once with the pre-claim scopes.
pub fn register_anonymous(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    kind: CredentialType,
) -> AppResult<Value> {
    if !ctx.config.agent.anonymous_enabled {
        return Err(err(
            ErrorCode::AnonymousNotEnabled,
            "anonymous registration is not enabled",
        ));
    }
    let (reg, claim_token) = new_registration(
        ctx,
        TYPE_ANONYMOUS,
        "active",
        kind,
        &ctx.config.agent.pre_claim_scopes,
    );
    let claim_token = claim_token.expect("anonymous registrations have a claim token");
    let (credential, expires) = write_tx(conn, |conn| {
        db::agents::insert_registration(conn, &reg)?;
        let issued = issue_credential(conn, ctx, &reg, kind)?;
        audit_reg(
            conn,
            ctx,
            AuditEvent::RegistrationCreated,
            &reg,
            json!({ "type": TYPE_ANONYMOUS, "credential_type": kind.as_str() }),
        )?;
        Ok(issued)
    })?;
    Ok(json!({
        "registration_id": reg.id,
        "registration_type": TYPE_ANONYMOUS,
        "credential_type": kind.as_str(),
        "credential": credential,
        "credential_expires": expires,
        "scopes": scopes_json(&reg.scopes),
        "claim_url": ctx.url(paths::AGENT_CLAIM),
        "claim_token": claim_token.into_string(),
        "claim_token_expires": reg.claim_token_expires,
        "post_claim_scopes": ctx.config.agent.post_claim_scopes,
    }))
}

#[derive(Template)]
#[template(path = "email/claim.txt")]
struct ClaimText<'a> {
    issuer: &'a str,
    url: &'a str,
    link: bool,
    expires: i64,
}

#[derive(Template)]
#[template(path = "email/claim.html")]
struct ClaimHtml<'a> {
    issuer: &'a str,
    url: &'a str,
    link: bool,
}

/// Opens a claim attempt and builds the email carrying its link. The link is built from
/// `server.issuer` only, never from request headers.
fn open_attempt(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    reg: &RegistrationRow,
    email: &str,
    link: bool,
) -> AppResult<(AttemptRow, Email)> {
    // Every claim and verification email is made here: the one place to count them.
    ratelimit::mail_allowed(conn, &ctx.config.rate_limit, ctx.now, email)?;
    db::agents::supersede_open_attempts(conn, &reg.id)?;
    let view_token = PlainToken::generate(prefix::CLAIM_ATTEMPT);
    let attempt = AttemptRow {
        id: random_id("cat_"),
        registration_id: reg.id.clone(),
        email: email.to_owned(),
        link,
        view_token_hash: view_token.hash().as_str().to_owned(),
        status: "initiated".to_owned(),
        otp_hash: None,
        otp_expires_at: None,
        failed_attempts: 0,
        created_at: ctx.now,
        expires_at: reg.claim_token_expires,
    };
    db::agents::insert_attempt(conn, &attempt)?;
    let url = format!(
        "{}/agent/auth/claim/view?token={}",
        ctx.config.server.issuer,
        view_token.expose()
    );
    let issuer = ctx.config.server.issuer.as_str();
    let render = |r: Result<String, askama::Error>| {
        r.map_err(|e| AppError::internal(format!("claim email: {e}")))
    };
    let mail = Email {
        to: email.to_owned(),
        subject: "An agent asks to be connected to your account".to_owned(),
        text: render(
            ClaimText {
                issuer,
                url: &url,
                link,
                expires: reg.claim_token_expires,
            }
            .render(),
        )?,
        html: render(
            ClaimHtml {
                issuer,
                url: &url,
                link,
            }
            .render(),
        )?,
    };
    audit_reg(
        conn,
        ctx,
        AuditEvent::ClaimRequested,
        reg,
        json!({ "attempt_id": attempt.id, "link": link }),
    )?;
    Ok((attempt, mail))
}

/// `type: identity_assertion` with a verified email: no credential until the person confirms.
pub fn register_verified_email(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    email: &str,
    kind: CredentialType,
) -> AppResult<(Value, Email)> {
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
        TYPE_EMAIL,
        "pending",
        kind,
        &ctx.config.agent.post_claim_scopes,
    );
    reg.email = Some(email.clone());
    let claim_token = claim_token.expect("verified-email registrations have a claim token");
    let mail = write_tx(conn, |conn| {
        db::agents::insert_registration(conn, &reg)?;
        audit_reg(
            conn,
            ctx,
            AuditEvent::RegistrationCreated,
            &reg,
            json!({ "type": TYPE_EMAIL, "credential_type": kind.as_str() }),
        )?;
        Ok(open_attempt(conn, ctx, &reg, &email, false)?.1)
    })?;
    Ok((
        json!({
            "registration_id": reg.id,
            "registration_type": TYPE_EMAIL,
            "claim_url": ctx.url(paths::AGENT_CLAIM),
            "claim_token": claim_token.into_string(),
            "claim_token_expires": reg.claim_token_expires,
            "post_claim_scopes": ctx.config.agent.post_claim_scopes,
        }),
        mail,
    ))
}

/// Called when the claim email could not be sent: the registration is withdrawn so nothing
/// waits for a message that never left.
pub fn withdraw(conn: &mut DbConn, now: UnixTime, registration_id: &str) -> AppResult<()> {
    credentials::revoke_from(conn, now, credentials::Dying::Registration(registration_id))?;
    Ok(())
}

/// The user an ID-JAG speaks for: an earlier delegation for `(iss, sub)`, else the verified
/// email's account, else a new account.
fn match_user(conn: &mut DbConn, now: UnixTime, v: &VerifiedIdJag) -> AppResult<String> {
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

fn remember_jti(conn: &mut DbConn, issuer: &str, jti: &str, exp: i64) -> AppResult<()> {
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
) -> AppResult<Value> {
    // An ID-JAG made out to one of authmd's clients is that client's to redeem, authenticated,
    // at the token endpoint; anyone else holding it must not turn it into a credential here.
    if let Some(client_id) = &v.client_id {
        if db::clients::find(conn, client_id)?.is_some() {
            return Err(err(
                ErrorCode::InvalidRequest,
                "this ID-JAG names a client of this server: redeem it at the token endpoint with that client's authentication",
            ));
        }
    }
    let flow = Scopes::from_list(&ctx.config.agent.post_claim_scopes);
    let scopes: Vec<String> = assertion_scopes(&flow, v.scope.as_deref())?
        .iter()
        .map(str::to_owned)
        .collect();
    let (mut reg, _) = new_registration(ctx, TYPE_PROVIDER, "claimed", kind, &scopes);
    let (credential, expires, reg) = write_tx(conn, |conn| {
        remember_jti(conn, &v.iss, &v.jti, v.exp)?;
        let user_id = match_user(conn, ctx.now, v)?;
        reg.user_id = Some(user_id);
        reg.link = Some(false);
        reg.provider_iss = Some(v.iss.clone());
        reg.provider_sub = Some(v.sub.clone());
        reg.claimed_at = Some(ctx.now);
        db::agents::insert_registration(conn, &reg)?;
        let (credential, expires) = issue_credential(conn, ctx, &reg, kind)?;
        audit_reg(
            conn,
            ctx,
            AuditEvent::RegistrationCreated,
            &reg,
            json!({ "type": TYPE_PROVIDER, "issuer": v.iss, "credential_type": kind.as_str() }),
        )?;
        Ok((credential, expires, reg))
    })?;
    Ok(json!({
        "registration_id": reg.id,
        "registration_type": TYPE_PROVIDER,
        "credential_type": kind.as_str(),
        "credential": credential,
        "credential_expires": expires,
        "scopes": scopes_json(&reg.scopes),
    }))
}

/// The registration a claim token names, checked for being claimable.
fn claimable(conn: &mut DbConn, now: UnixTime, claim_token: &str) -> AppResult<RegistrationRow> {
    let reg = db::agents::find_by_claim_token(conn, HashedToken::of(claim_token).as_str())?
        .ok_or_else(|| err(ErrorCode::InvalidClaimToken, "claim_token is not valid"))?;
    match reg.status.as_str() {
        "claimed" => Err(err(
            ErrorCode::PreviouslyClaimed,
            "this registration has already been claimed",
        )),
        "revoked" => Err(err(
            ErrorCode::InvalidClaimToken,
            "this registration was revoked",
        )),
        "expired" => Err(err(ErrorCode::ClaimExpired, "the claim window has closed")),
        _ if reg.claim_token_expires <= now => {
            Err(err(ErrorCode::ClaimExpired, "the claim window has closed"))
        }
        _ => Ok(reg),
    }
}

/// `POST /agent/auth/claim`: emails the person a link. Repeating it with the same email while
/// the attempt is open sends nothing new.
pub fn request_claim(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    claim_token: &str,
    email: &str,
    link: bool,
) -> AppResult<(Value, Option<Email>)> {
    let email = users::normalize_email(email)
        .ok_or_else(|| err(ErrorCode::InvalidRequest, "email is not a valid address"))?;
    write_tx(conn, |conn| {
        let reg = claimable(conn, ctx.now, claim_token)?;
        if reg.registration_type != TYPE_ANONYMOUS {
            return Err(err(
                ErrorCode::InvalidRequest,
                "only anonymous registrations are claimed this way",
            ));
        }
        let open = db::agents::latest_attempt(conn, &reg.id)?
            .filter(|a| a.status == "initiated" && a.email == email && a.expires_at > ctx.now);
        let (attempt, mail) = match open {
            Some(attempt) => (attempt, None),
            None => {
                let (attempt, mail) = open_attempt(conn, ctx, &reg, &email, link)?;
                (attempt, Some(mail))
            }
        };
        Ok((
            json!({
                "registration_id": reg.id,
                "claim_attempt_id": attempt.id,
                "status": "initiated",
                "expires_at": attempt.expires_at,
            }),
            mail,
        ))
    })
}

/// What the claim page shows for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptState {
    /// Waiting for the person: offer "get a code" and "this wasn't me".
    Open {
        email: String,
        link: bool,
    },
    Closed(&'static str),
}

fn attempt_by_view_token(conn: &mut DbConn, view_token: &str) -> AppResult<AttemptRow> {
    db::agents::find_attempt_by_view_token(conn, HashedToken::of(view_token).as_str())?
        .ok_or_else(|| err(ErrorCode::InvalidClaimToken, "this claim link is not valid"))
}

/// Checks an attempt can still be acted on.
fn open_attempt_check(
    conn: &mut DbConn,
    now: UnixTime,
    attempt: &AttemptRow,
) -> AppResult<RegistrationRow> {
    match attempt.status.as_str() {
        "superseded" => {
            return Err(err(
                ErrorCode::ClaimSuperseded,
                "a newer claim replaced this one",
            ))
        }
        "completed" => {
            return Err(err(
                ErrorCode::PreviouslyClaimed,
                "this claim is already complete",
            ))
        }
        "cancelled" => {
            return Err(err(
                ErrorCode::InvalidClaimToken,
                "this claim was cancelled",
            ))
        }
        "locked" => {
            return Err(err(
                ErrorCode::OtpLocked,
                "too many wrong codes; start a new claim",
            ))
        }
        _ => {}
    }
    if attempt.expires_at <= now {
        return Err(err(ErrorCode::ClaimExpired, "the claim window has closed"));
    }
    let reg = db::agents::find_registration(conn, &attempt.registration_id)?
        .ok_or_else(|| err(ErrorCode::InvalidClaimToken, "this claim link is not valid"))?;
    if !matches!(reg.status.as_str(), "active" | "pending") {
        return Err(err(
            ErrorCode::ClaimExpired,
            "this registration can no longer be claimed",
        ));
    }
    Ok(reg)
}

/// `GET /agent/auth/claim/view`: reads only; mints nothing (link scanners are harmless).
pub fn view(conn: &mut DbConn, now: UnixTime, view_token: &str) -> AppResult<AttemptState> {
    let attempt = attempt_by_view_token(conn, view_token)?;
    Ok(match open_attempt_check(conn, now, &attempt) {
        Ok(_) => AttemptState::Open {
            email: attempt.email,
            link: attempt.link,
        },
        Err(AppError::Protocol(p)) => AttemptState::Closed(match p.code {
            ErrorCode::ClaimSuperseded => {
                "A newer request replaced this one. Use the most recent email."
            }
            ErrorCode::PreviouslyClaimed => "This agent is already connected.",
            ErrorCode::OtpLocked => {
                "Too many wrong codes were entered. Ask your agent to start again."
            }
            ErrorCode::InvalidClaimToken => "This request was cancelled.",
            _ => "This request has expired.",
        }),
        Err(e) => return Err(e),
    })
}

/// A 6-digit code from the OS CSPRNG, uniform (rejection sampling).
fn six_digits() -> String {
    let rng = SystemRandom::new();
    loop {
        let mut b = [0u8; 4];
        rng.fill(&mut b).expect("the OS random source is available");
        let n = u32::from_le_bytes(b);
        // 4_294_000_000 is the largest multiple of 1_000_000 below 2^32.
        if n < 4_294_000_000 {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

fn otp_hash(attempt_id: &str, otp: &str) -> String {
    HashedToken::of(&format!("{attempt_id}:{otp}"))
        .as_str()
        .to_owned()
}

/// The page's button: mints a code (replacing any earlier one) and returns it to show.
pub fn challenge(conn: &mut DbConn, ctx: &Ctx<'_>, view_token: &str) -> AppResult<String> {
    write_tx(conn, |conn| {
        let attempt = attempt_by_view_token(conn, view_token)?;
        let reg = open_attempt_check(conn, ctx.now, &attempt)?;
        let otp = six_digits();
        db::agents::set_attempt_otp(
            conn,
            &attempt.id,
            &otp_hash(&attempt.id, &otp),
            ctx.now + OTP_TTL_S,
        )?;
        audit_reg(
            conn,
            ctx,
            AuditEvent::OtpGenerated,
            &reg,
            json!({ "attempt_id": attempt.id }),
        )?;
        Ok(otp)
    })
}

/// "This wasn't me": cancels the attempt.
pub fn cancel(conn: &mut DbConn, ctx: &Ctx<'_>, view_token: &str) -> AppResult<()> {
    write_tx(conn, |conn| {
        let attempt = attempt_by_view_token(conn, view_token)?;
        let reg = open_attempt_check(conn, ctx.now, &attempt)?;
        db::agents::set_attempt_status(conn, &attempt.id, "cancelled")?;
        audit_reg(
            conn,
            ctx,
            AuditEvent::ClaimCancelled,
            &reg,
            json!({ "attempt_id": attempt.id }),
        )
    })
}

/// `POST /agent/auth/claim/complete`: checks the code in constant time; five wrong codes lock
/// the attempt. Anonymous registrations keep their credential with the post-claim scopes;
/// verified-email registrations get a fresh credential.
pub fn complete(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    claim_token: &str,
    otp: &str,
) -> AppResult<Value> {
    // Wrong codes must be counted even though the answer is an error: commit, then fail.
    let outcome = write_tx(conn, |conn| -> AppResult<AppResult<Value>> {
        let reg = claimable(conn, ctx.now, claim_token)?;
        let attempt = db::agents::latest_attempt(conn, &reg.id)?.ok_or_else(|| {
            err(
                ErrorCode::OtpInvalid,
                "no claim is in progress; call /agent/auth/claim first",
            )
        })?;
        open_attempt_check(conn, ctx.now, &attempt)?;
        let Some(stored) = attempt.otp_hash.as_deref() else {
            return Err(err(ErrorCode::OtpInvalid, "no code has been issued yet"));
        };
        if attempt.otp_expires_at.is_none_or(|t| t <= ctx.now) {
            return Err(err(
                ErrorCode::OtpExpired,
                "the code has expired; get a new one from the link",
            ));
        }
        if !constant_time_eq(
            otp_hash(&attempt.id, otp.trim()).as_bytes(),
            stored.as_bytes(),
        ) {
            let failures = db::agents::count_failed_attempt(conn, &attempt.id)?;
            if failures >= MAX_OTP_FAILURES {
                db::agents::set_attempt_status(conn, &attempt.id, "locked")?;
                return Ok(Err(err(
                    ErrorCode::OtpLocked,
                    "too many wrong codes; the claim is locked",
                )));
            }
            return Ok(Err(err(ErrorCode::OtpInvalid, "the code is not correct")));
        }
        let user_id = users::find_or_create_verified(conn, ctx.now, attempt.email.clone())?;
        let link = reg.registration_type == TYPE_ANONYMOUS && attempt.link;
        let scopes = Scopes::from_list(&ctx.config.agent.post_claim_scopes).to_string();
        db::agents::set_claimed(conn, &reg.id, &user_id, link, &scopes, ctx.now)?;
        db::agents::set_attempt_status(conn, &attempt.id, "completed")?;
        let claimed = db::agents::find_registration(conn, &reg.id)?
            .ok_or_else(|| AppError::internal("registration vanished"))?;
        audit_reg(
            conn,
            ctx,
            AuditEvent::ClaimConfirmed,
            &claimed,
            json!({ "attempt_id": attempt.id, "link": link }),
        )?;
        let mut answer = json!({ "registration_id": reg.id, "status": "claimed" });
        if reg.registration_type == TYPE_ANONYMOUS {
            // Same credential, new scopes and (after a merge) the user as its subject.
            db::agents::retarget_tokens(conn, &reg.id, subject_of(&claimed), &user_id, &scopes)?;
        } else {
            let kind = CredentialType::parse(Some(&reg.requested_credential_type))?;
            let (credential, expires) = issue_credential(conn, ctx, &claimed, kind)?;
            answer["credential_type"] = json!(kind.as_str());
            answer["credential"] = json!(credential);
            answer["credential_expires"] = json!(expires);
            answer["scopes"] = scopes_json(&scopes);
        }
        Ok(Ok(answer))
    })?;
    outcome
}

/// Closes unclaimed registrations whose window has passed; one audit row each.
pub fn expire_unclaimed(conn: &mut DbConn, ctx: &Ctx<'_>) -> AppResult<usize> {
    write_tx(conn, |conn| {
        let expired = db::agents::expired_unclaimed(conn, ctx.now)?;
        for reg in &expired {
            db::agents::set_status(conn, &reg.id, "expired")?;
            audit_reg(
                conn,
                ctx,
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
        let (registrations, grants) =
            credentials::revoke_provider_subject(conn, ctx.now, &v.iss, &v.sub)?;
        for reg in &registrations {
            audit_reg(
                conn,
                ctx,
                AuditEvent::RegistrationRevoked,
                reg,
                json!({ "reason": "provider logout", "issuer": v.iss }),
            )?;
        }
        if grants > 0 {
            audit::record(
                conn,
                ctx.now,
                ctx.audit,
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
        Ok(registrations.len() + grants)
    })
}

/// Adds the agent members of an introspection answer for a live registration.
pub fn describe(reg: &RegistrationRow, answer: &mut Introspection) {
    if reg.link == Some(true) {
        answer.owner_sub = reg.user_id.clone();
    }
    answer.agent_registration = Some(json!({
        "id": reg.id,
        "type": reg.registration_type,
        "claimed": reg.status == "claimed",
    }));
}

/// The JWT-bearer grant with an identity assertion authmd issued: single use (jti), then an
/// access token and a rotating refresh token for the registration.
pub fn exchange_identity_assertion(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: Option<&Client>,
    assertion: &str,
    scope: Option<&str>,
    resource: Option<&str>,
) -> AppResult<TokenResponse> {
    let bad = |m: &'static str| err(ErrorCode::InvalidGrant, m);
    if client.is_some_and(|c| !c.allows_grant(GRANT_JWT_BEARER)) {
        return Err(err(
            ErrorCode::UnauthorizedClient,
            "client is not registered for the jwt-bearer grant",
        ));
    }
    let audience = tokens::resolve_resource(ctx.config, resource)?;
    let header =
        jsonwebtoken::decode_header(assertion).map_err(|_| bad("assertion is not a JWT"))?;
    let key = header
        .kid
        .as_deref()
        .and_then(|k| ctx.keys.find(k))
        .ok_or_else(|| bad("assertion signature: unknown key"))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.set_audience(&[&ctx.config.server.issuer]);
    validation.set_issuer(&[&ctx.config.server.issuer]);
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key.decoding, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                bad("assertion aud must be the issuer")
            }
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                bad("assertion iss is not this server")
            }
            _ => bad("assertion signature verification failed"),
        })?
        .claims;
    if claims.exp <= ctx.now {
        return Err(bad("assertion has expired"));
    }
    write_tx(conn, |conn| {
        if !db::agents::record_jti(conn, &claims.iss, &claims.jti, claims.exp)? {
            return Err(bad("assertion was already used (jti replay)"));
        }
        let reg = db::agents::find_registration(conn, &claims.registration_id)?
            .ok_or_else(|| bad("assertion names no registration"))?;
        if !is_live(&reg, ctx.now) {
            return Err(bad("the registration is no longer active"));
        }
        let granted = Scopes::parse(&reg.scopes).unwrap_or_default();
        let scopes = tokens::narrow_scopes(scope, &granted)?.to_string();
        let grant = GrantRow {
            id: random_id("gr_"),
            client_id: None,
            registration_id: Some(reg.id.clone()),
            user_id: reg.user_id.clone(),
            subject: subject_of(&reg).to_owned(),
            scope: reg.scopes.clone(),
            resource: audience.clone(),
            kind: GRANT_JWT_BEARER.to_owned(),
            created_at: ctx.now,
            revoked_at: None,
            provider_iss: None,
            provider_sub: None,
        };
        db::tokens::insert_grant(conn, &grant)?;
        let response = tokens::issue_for_grant(conn, ctx, &grant, &scopes, true)?;
        audit_reg(
            conn,
            ctx,
            AuditEvent::TokenIssued,
            &reg,
            json!({ "grant_type": GRANT_JWT_BEARER, "grant_id": grant.id }),
        )?;
        Ok(response)
    })
}

/// The scopes a flow grants, cut down to an assertion's `scope` claim when it has one. An
/// assertion that leaves nothing is `invalid_scope`: it asked for nothing this flow grants.
pub fn assertion_scopes(flow: &Scopes, claim: Option<&str>) -> AppResult<Scopes> {
    let Some(claim) = claim else {
        return Ok(flow.clone());
    };
    let asked = Scopes::parse(claim).ok_or_else(|| {
        err(
            ErrorCode::InvalidScope,
            "the assertion's scope is malformed",
        )
    })?;
    let granted = flow.intersection(&asked);
    if granted.is_empty() {
        return Err(err(
            ErrorCode::InvalidScope,
            "the assertion's scope names nothing this flow grants",
        ));
    }
    Ok(granted)
}

/// The JWT-bearer grant with a provider's ID-JAG (verified): the client must be registered for
/// the grant and be the one the ID-JAG names; an access token for the matched user, under a
/// grant that remembers `(iss, sub)` so the provider's logout revokes it. Never a refresh token.
pub fn exchange_id_jag(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    v: &VerifiedIdJag,
    scope: Option<&str>,
    resource: Option<&str>,
) -> AppResult<TokenResponse> {
    if !client.allows_grant(GRANT_JWT_BEARER) {
        return Err(err(
            ErrorCode::UnauthorizedClient,
            "client is not registered for the jwt-bearer grant",
        ));
    }
    if v.client_id.as_deref() != Some(client.client_id.as_str()) {
        return Err(err(
            ErrorCode::InvalidGrant,
            "the ID-JAG's client_id is not the authenticated client",
        ));
    }
    let allowed = assertion_scopes(&client.scopes(), v.scope.as_deref())?;
    let scopes = tokens::narrow_scopes(scope, &allowed)?.to_string();
    let audience = tokens::resolve_resource(ctx.config, resource)?;
    write_tx(conn, |conn| {
        remember_jti(conn, &v.iss, &v.jti, v.exp).map_err(|_| {
            err(
                ErrorCode::InvalidGrant,
                "the ID-JAG was already used (jti replay)",
            )
        })?;
        let user_id = match_user(conn, ctx.now, v)?;
        let grant = GrantRow {
            id: random_id("gr_"),
            client_id: Some(client.client_id.clone()),
            registration_id: None,
            user_id: Some(user_id.clone()),
            subject: user_id.clone(),
            scope: scopes.clone(),
            resource: audience.clone(),
            kind: GRANT_JWT_BEARER.to_owned(),
            created_at: ctx.now,
            revoked_at: None,
            provider_iss: Some(v.iss.clone()),
            provider_sub: Some(v.sub.clone()),
        };
        db::tokens::insert_grant(conn, &grant)?;
        let response = tokens::issue_for_grant(conn, ctx, &grant, &scopes, false)?;
        tokens::audit_token(
            conn,
            ctx,
            AuditEvent::TokenIssued,
            Some(&client.client_id),
            Some(&user_id),
            json!({ "grant_type": GRANT_JWT_BEARER, "issuer": v.iss, "grant_id": grant.id }),
        )?;
        Ok(response)
    })
}

/// Called when a claim email could not be sent: the attempt is closed so a retry opens (and
/// mails) a new one instead of finding this one open and sending nothing.
pub fn abandon_attempt(conn: &mut DbConn, attempt_id: &str) -> AppResult<()> {
    db::agents::set_attempt_status(conn, attempt_id, "superseded")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_digit_codes() {
        for _ in 0..200 {
            let code = six_digits();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
        assert_ne!(
            six_digits(),
            six_digits(),
            "two codes in a row differ (1 in a million flake)"
        );
    }

    #[test]
    fn credential_types() {
        assert_eq!(CredentialType::parse(None).unwrap(), CredentialType::ApiKey);
        assert_eq!(
            CredentialType::parse(Some("access_token")).unwrap(),
            CredentialType::AccessToken
        );
        assert_eq!(
            CredentialType::parse(Some("password")).unwrap_err().code(),
            Some(ErrorCode::UnsupportedCredentialType)
        );
    }
}
