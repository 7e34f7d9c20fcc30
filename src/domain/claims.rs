//! The emailed claim ceremony (auth.md v0.1): a person is mailed a link to a page that shows a
//! one-time code, which the agent sends back to complete the claim. Opening an attempt, the
//! page's reads and buttons, completion, and what happens when the mail cannot be sent.

use askama::Template;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use serde_json::json;

use crate::clock::UnixTime;
use crate::config::OtpDelivery;
use crate::db::agents::{AttemptRow, RegistrationRow};
use crate::db::status::{AttemptStatus, Ceremony, Protocol, RegistrationStatus, RegistrationType};
use crate::db::{self, write_tx, DbConn};
use crate::domain::audit::AuditEvent;
use crate::domain::context::Ctx;
use crate::domain::credentials;
use crate::domain::credentials::mint::Issued;
use crate::domain::mail::Email;
use crate::domain::ratelimit;
use crate::domain::scope::{self, Scopes};
use crate::domain::secrets::{constant_time_eq, prefix, random_id, HashedToken, PlainToken};
use crate::domain::users;
use crate::error::{AppError, AppResult, ErrorCode};

/// One-time codes live ten minutes.
pub const OTP_TTL_S: i64 = 600;
/// Wrong codes before an attempt locks.
pub const MAX_OTP_FAILURES: i32 = 5;

fn err(code: ErrorCode, msg: &'static str) -> AppError {
    AppError::protocol(code, msg)
}

/// The answer to `POST /agent/auth/claim`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClaimStarted {
    pub registration_id: String,
    pub claim_attempt_id: String,
    /// `initiated`.
    pub status: String,
    pub expires_at: i64,
}

/// The answer to `POST /agent/auth/claim/complete`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Claimed {
    pub registration_id: String,
    /// `claimed`.
    pub status: String,
    /// A verified-email registration's credential, issued now.
    #[serde(flatten)]
    pub credential: Option<Issued>,
    /// An anonymous registration keeps its credential; these are its scopes now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// An anonymous registration: `merge` (its credential now speaks for the person) or `link`
    /// (it keeps its own identity, owned by the person).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "email/claim.txt")]
struct ClaimText<'a> {
    issuer: &'a str,
    url: &'a str,
    link: bool,
    expires: i64,
    code: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "email/claim.html")]
struct ClaimHtml<'a> {
    issuer: &'a str,
    url: &'a str,
    link: bool,
    code: Option<&'a str>,
}

/// Opens a claim attempt and builds the email carrying its link. The link is built from
/// `server.issuer` only, never from request headers.
pub(crate) fn open_attempt(
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
        status: AttemptStatus::Initiated,
        otp_hash: None,
        otp_expires_at: None,
        failed_attempts: 0,
        created_at: ctx.now,
        expires_at: reg.claim_token_expires,
        ceremony: Ceremony::EmailOtp,
    };
    db::agents::insert_attempt(conn, &attempt)?;
    // agent.claim_otp_delivery = "email": the code is minted now and travels in the message;
    // the link still lets the person say "this wasn't me".
    let code = match ctx.config.agent.claim_otp_delivery {
        OtpDelivery::Page => None,
        OtpDelivery::Email => Some(mint_otp(conn, ctx, &attempt.id)?),
    };
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
                code: code.as_deref(),
            }
            .render(),
        )?,
        html: render(
            ClaimHtml {
                issuer,
                url: &url,
                link,
                code: code.as_deref(),
            }
            .render(),
        )?,
    };
    ctx.record_registration(
        conn,
        AuditEvent::ClaimRequested,
        reg,
        json!({ "attempt_id": attempt.id, "link": link }),
    )?;
    Ok((attempt, mail))
}

/// The registration a claim token names, checked for being claimable now through the
/// ceremony of `protocol`'s generation (each generation claims only its own registrations).
pub(crate) fn claimable(
    conn: &mut DbConn,
    now: UnixTime,
    claim_token: &str,
    protocol: Protocol,
) -> AppResult<RegistrationRow> {
    let reg = db::agents::find_by_claim_token(conn, HashedToken::of(claim_token).as_str())?
        .ok_or_else(|| err(ErrorCode::InvalidClaimToken, "claim_token is not valid"))?;
    let (elsewhere, already) = match protocol {
        Protocol::V01 => (
            err(
                ErrorCode::InvalidRequest,
                "this registration was made at /agent/identity: claim it at /agent/identity/claim",
            ),
            ErrorCode::PreviouslyClaimed,
        ),
        Protocol::V06 => (
            err(
                ErrorCode::ClaimedOrInFlight,
                "this registration was made at /agent/auth: claim it at /agent/auth/claim",
            ),
            ErrorCode::ClaimedOrInFlight,
        ),
    };
    if reg.protocol != protocol {
        return Err(elsewhere);
    }
    match reg.status {
        RegistrationStatus::Claimed => {
            Err(err(already, "this registration has already been claimed"))
        }
        RegistrationStatus::Revoked => Err(err(
            ErrorCode::InvalidClaimToken,
            "this registration was revoked",
        )),
        RegistrationStatus::Expired => {
            Err(err(ErrorCode::ClaimExpired, "the claim window has closed"))
        }
        _ if reg.claim_token_expires <= now => {
            Err(err(ErrorCode::ClaimExpired, "the claim window has closed"))
        }
        // Credentials that died unclaimed stay dead: the registration is closed.
        _ if reg.credentials_expire_at.is_some_and(|e| e <= now) => Err(err(
            ErrorCode::ClaimExpired,
            "this registration's credentials expired unclaimed",
        )),
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
) -> AppResult<(ClaimStarted, Option<Email>)> {
    let email = users::normalize_email(email)
        .ok_or_else(|| err(ErrorCode::InvalidRequest, "email is not a valid address"))?;
    write_tx(conn, |conn| {
        let reg = claimable(conn, ctx.now, claim_token, Protocol::V01)?;
        if reg.registration_type != RegistrationType::Anonymous {
            return Err(err(
                ErrorCode::InvalidRequest,
                "only anonymous registrations are claimed this way",
            ));
        }
        let open = db::agents::latest_attempt(conn, &reg.id)?.filter(|a| {
            a.status == AttemptStatus::Initiated && a.email == email && a.expires_at > ctx.now
        });
        let (attempt, mail) = match open {
            Some(attempt) => (attempt, None),
            None => {
                let (attempt, mail) = open_attempt(conn, ctx, &reg, &email, link)?;
                (attempt, Some(mail))
            }
        };
        let started = ClaimStarted {
            registration_id: reg.id,
            claim_attempt_id: attempt.id,
            status: attempt.status.as_str().to_owned(),
            expires_at: attempt.expires_at,
        };
        Ok((started, mail))
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
    match attempt.status {
        AttemptStatus::Superseded => {
            return Err(err(
                ErrorCode::ClaimSuperseded,
                "a newer claim replaced this one",
            ))
        }
        AttemptStatus::Completed => {
            return Err(err(
                ErrorCode::PreviouslyClaimed,
                "this claim is already complete",
            ))
        }
        AttemptStatus::Cancelled => {
            return Err(err(
                ErrorCode::InvalidClaimToken,
                "this claim was cancelled",
            ))
        }
        AttemptStatus::Locked => {
            return Err(err(
                ErrorCode::OtpLocked,
                "too many wrong codes; start a new claim",
            ))
        }
        AttemptStatus::Initiated => {}
    }
    if attempt.expires_at <= now {
        return Err(err(ErrorCode::ClaimExpired, "the claim window has closed"));
    }
    let reg = db::agents::find_registration(conn, &attempt.registration_id)?
        .ok_or_else(|| err(ErrorCode::InvalidClaimToken, "this claim link is not valid"))?;
    if !reg.status.claimable() {
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
pub(crate) fn six_digits() -> String {
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

pub(crate) fn otp_hash(attempt_id: &str, otp: &str) -> String {
    HashedToken::of(&format!("{attempt_id}:{otp}"))
        .as_str()
        .to_owned()
}

/// A fresh code for an attempt, replacing any earlier one; only its hash is kept.
fn mint_otp(conn: &mut DbConn, ctx: &Ctx<'_>, attempt_id: &str) -> AppResult<String> {
    let otp = six_digits();
    db::agents::set_attempt_otp(
        conn,
        attempt_id,
        &otp_hash(attempt_id, &otp),
        ctx.now + OTP_TTL_S,
    )?;
    Ok(otp)
}

/// The page's button: mints a code (replacing any earlier one) and returns it to show.
pub fn challenge(conn: &mut DbConn, ctx: &Ctx<'_>, view_token: &str) -> AppResult<String> {
    write_tx(conn, |conn| {
        let attempt = attempt_by_view_token(conn, view_token)?;
        let reg = open_attempt_check(conn, ctx.now, &attempt)?;
        let otp = mint_otp(conn, ctx, &attempt.id)?;
        ctx.record_registration(
            conn,
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
        db::agents::set_attempt_status(conn, &attempt.id, AttemptStatus::Cancelled)?;
        ctx.record_registration(
            conn,
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
) -> AppResult<Claimed> {
    // Wrong codes must be counted even though the answer is an error: commit, then fail.
    let outcome = write_tx(conn, |conn| -> AppResult<AppResult<Claimed>> {
        let reg = claimable(conn, ctx.now, claim_token, Protocol::V01)?;
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
                db::agents::set_attempt_status(conn, &attempt.id, AttemptStatus::Locked)?;
                return Ok(Err(err(
                    ErrorCode::OtpLocked,
                    "too many wrong codes; the claim is locked",
                )));
            }
            return Ok(Err(err(ErrorCode::OtpInvalid, "the code is not correct")));
        }
        let user_id = users::find_or_create_verified(conn, ctx.now, attempt.email.clone())?;
        let link = reg.registration_type == RegistrationType::Anonymous && attempt.link;
        let scopes = Scopes::from_list(&ctx.config.agent.post_claim_scopes).to_string();
        db::agents::set_claimed(conn, &reg.id, &user_id, link, &scopes, ctx.now)?;
        db::agents::set_attempt_status(conn, &attempt.id, AttemptStatus::Completed)?;
        let claimed = db::agents::find_registration(conn, &reg.id)?
            .ok_or_else(|| AppError::internal("registration vanished"))?;
        ctx.record_registration(
            conn,
            AuditEvent::ClaimConfirmed,
            &claimed,
            json!({ "attempt_id": attempt.id, "link": link }),
        )?;
        let mut answer = Claimed {
            registration_id: reg.id.clone(),
            status: claimed.status.as_str().to_owned(),
            credential: None,
            scopes: None,
            mode: None,
        };
        if reg.registration_type == RegistrationType::Anonymous {
            answer.scopes = Some(scope::list(&scopes));
            answer.mode = Some(if link { "link" } else { "merge" });
            // Same credential, new scopes and (after a merge) the user as its subject.
            let subject = credentials::subject_of(&claimed);
            db::agents::retarget_tokens(conn, &reg.id, subject, &user_id, &scopes)?;
        } else {
            let kind = claimed.requested_credential_type;
            let (credential, expires) =
                credentials::mint::for_registration(conn, ctx, &claimed, kind)?;
            answer.credential = Some(Issued::new(kind, credential, expires, &scopes));
        }
        Ok(Ok(answer))
    })?;
    outcome
}

/// Called when the claim email could not be sent: the registration is withdrawn so nothing
/// waits for a message that never left.
pub fn withdraw(conn: &mut DbConn, now: UnixTime, registration_id: &str) -> AppResult<()> {
    credentials::revoke_from(conn, now, credentials::Dying::Registration(registration_id))?;
    Ok(())
}

/// Called when a claim email could not be sent: the attempt is closed so a retry opens (and
/// mails) a new one instead of finding this one open and sending nothing.
pub fn abandon_attempt(conn: &mut DbConn, attempt_id: &str) -> AppResult<()> {
    db::agents::set_attempt_status(conn, attempt_id, AttemptStatus::Superseded)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::status::CredentialType;
    use crate::domain::agents;
    use crate::domain::testing::Fixture;

    const T0: UnixTime = 1_700_000_000;

    /// An anonymous registration and the view token its claim mail links to.
    fn claim_mailed(fx: &Fixture, conn: &mut DbConn, email: &str) -> (String, String) {
        let ctx = fx.ctx(T0);
        let reg = agents::register_anonymous(conn, &ctx, CredentialType::ApiKey, None).unwrap();
        let claim_token = reg.claim.unwrap().claim_token;
        let (started, mail) = request_claim(conn, &ctx, &claim_token, email, false).unwrap();
        assert_eq!(started.status, "initiated");
        let mail = mail.expect("the first request mails");
        // Asked again while the attempt is open: nothing new is sent.
        let (_, again) = request_claim(conn, &ctx, &claim_token, email, false).unwrap();
        assert!(again.is_none());
        let view_token = mail.text.split("token=").nth(1).unwrap();
        let view_token = view_token.split_whitespace().next().unwrap().to_owned();
        (claim_token, view_token)
    }

    #[test]
    fn the_claim_ceremony_without_http() {
        let fx = Fixture::new();
        let mut conn = fx.conn();
        let (claim_token, view_token) = claim_mailed(&fx, &mut conn, "Person@Example.com");
        let ctx = fx.ctx(T0 + 10);
        assert_eq!(
            view(&mut conn, ctx.now, &view_token).unwrap(),
            AttemptState::Open {
                email: "person@example.com".into(),
                link: false
            }
        );
        let otp = challenge(&mut conn, &ctx, &view_token).unwrap();
        let claimed = complete(&mut conn, &ctx, &claim_token, &otp).unwrap();
        assert_eq!(claimed.status, "claimed");
        // Anonymous registrations keep their credential: none is issued at completion.
        assert!(claimed.credential.is_none());
        let err = complete(&mut conn, &ctx, &claim_token, &otp).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::PreviouslyClaimed));
        assert!(matches!(
            view(&mut conn, ctx.now, &view_token).unwrap(),
            AttemptState::Closed(_)
        ));
    }

    #[test]
    fn wrong_codes_lock_and_codes_expire() {
        let fx = Fixture::new();
        let mut conn = fx.conn();
        let (claim_token, view_token) = claim_mailed(&fx, &mut conn, "lock@example.com");
        let ctx = fx.ctx(T0 + 10);
        let otp = challenge(&mut conn, &ctx, &view_token).unwrap();
        let wrong = if otp == "000000" { "111111" } else { "000000" };
        for _ in 1..MAX_OTP_FAILURES {
            let err = complete(&mut conn, &ctx, &claim_token, wrong).unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::OtpInvalid));
        }
        let err = complete(&mut conn, &ctx, &claim_token, wrong).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::OtpLocked));
        // Locked: even the right code is refused now.
        let err = complete(&mut conn, &ctx, &claim_token, &otp).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::OtpLocked));

        let (claim_token, view_token) = claim_mailed(&fx, &mut conn, "slow@example.com");
        let otp = challenge(&mut conn, &ctx, &view_token).unwrap();
        let late = fx.ctx(ctx.now + OTP_TTL_S);
        let err = complete(&mut conn, &late, &claim_token, &otp).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::OtpExpired));
    }

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
}
