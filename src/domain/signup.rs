//! The `/signup` page (`accounts.signup`): `open` makes the account at once; `email_verified`
//! makes it when the emailed link is followed, so nobody holds an account for an address they
//! cannot read.
//!
//! With `email_verified`, asking for an address that already has an account mails its owner a
//! note instead of a link, and the page answers the same either way: the form does not tell a
//! stranger which addresses have accounts.

use askama::Template;
use serde_json::json;

use crate::clock::UnixTime;
use crate::config::Signup;
use crate::db::users::UserRow;
use crate::db::{self, write_tx, DbConn};
use crate::domain::audit::{self, AuditEntry, AuditEvent};
use crate::domain::context::Ctx;
use crate::domain::mail::Email;
use crate::domain::ratelimit;
use crate::domain::secrets::{random_id, HashedToken, PlainToken};
use crate::domain::users::{self, User, MIN_PASSWORD_LEN};
use crate::error::{AppError, AppResult, ErrorCode};

/// How long an emailed sign-up link works, in seconds.
pub const LINK_TTL_S: i64 = 86_400;
const LINK_PREFIX: &str = "sgn_";

fn bad(msg: impl Into<std::borrow::Cow<'static, str>>) -> AppError {
    AppError::protocol(ErrorCode::InvalidRequest, msg)
}

/// What the form's submission led to.
pub enum Outcome {
    /// `open`: the account exists and the person is signed in (the session cookie's value).
    SignedIn(PlainToken),
    /// `email_verified`: a message is on its way (a link, or a note to an existing account).
    Mailed(Email),
}

#[derive(Template)]
#[template(path = "email/signup.txt")]
struct SignupText<'a> {
    issuer: &'a str,
    url: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "email/signup.html")]
struct SignupHtml<'a> {
    issuer: &'a str,
    url: Option<&'a str>,
}

/// The form's fields, checked before anything is hashed or stored: the normalised address.
pub fn checked(email: &str, password: &str) -> AppResult<String> {
    let email = users::normalize_email(email).ok_or_else(|| bad("email is not a valid address"))?;
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(bad(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(email)
}

/// `POST /signup`, with the address from [`checked`] and the password's Argon2 hash (made
/// before, off the database's writer: it takes tens of milliseconds).
pub fn submit(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    email: &str,
    password_hash: &str,
) -> AppResult<Outcome> {
    let mode = ctx.config.accounts.signup;
    if mode == Signup::Off {
        return Err(AppError::protocol(
            ErrorCode::NotFound,
            "sign-up is not enabled on this server",
        ));
    }
    let (email, password_hash) = (email.to_owned(), password_hash.to_owned());
    write_tx(conn, |conn| {
        let taken = db::users::find_by_email(conn, &email)?.is_some();
        if mode == Signup::Open {
            if taken {
                return Err(bad(
                    "an account with this email address exists: sign in instead",
                ));
            }
            let user = insert_user(conn, ctx, &email, password_hash.clone(), false)?;
            return Ok(Outcome::SignedIn(users::start_session(
                conn, ctx.now, &user.id,
            )?));
        }
        ratelimit::mail_allowed(conn, &ctx.config.rate_limit, ctx.now, &email)?;
        let link = (!taken)
            .then(|| -> AppResult<PlainToken> {
                let token = PlainToken::generate(LINK_PREFIX);
                db::users::insert_signup_link(
                    conn,
                    token.hash().as_str(),
                    &email,
                    &password_hash,
                    ctx.now,
                    ctx.now + LINK_TTL_S,
                )?;
                Ok(token)
            })
            .transpose()?;
        let url = link
            .as_ref()
            .map(|t| ctx.url(&format!("/signup/verify?token={}", t.expose())));
        Ok(Outcome::Mailed(signup_mail(ctx, &email, url.as_deref())?))
    })
}

fn signup_mail(ctx: &Ctx<'_>, to: &str, url: Option<&str>) -> AppResult<Email> {
    let issuer = ctx.config.server.issuer.as_str();
    let render = |r: Result<String, askama::Error>| {
        r.map_err(|e| AppError::internal(format!("sign-up email: {e}")))
    };
    Ok(Email {
        to: to.to_owned(),
        subject: match url {
            Some(_) => "Confirm your new account".to_owned(),
            None => "Someone tried to sign up with your address".to_owned(),
        },
        text: render(SignupText { issuer, url }.render())?,
        html: render(SignupHtml { issuer, url }.render())?,
    })
}

/// `GET /signup/verify?token=…`: makes the account (its address now verified) and signs the
/// person in. A link works once.
pub fn confirm(conn: &mut DbConn, ctx: &Ctx<'_>, token: &str) -> AppResult<(User, PlainToken)> {
    let expired = || {
        AppError::protocol(
            ErrorCode::ExpiredToken,
            "this sign-up link has expired or was already used; sign up again",
        )
    };
    write_tx(conn, |conn| {
        let row = db::users::take_signup_link(conn, HashedToken::of(token).as_str())?;
        let Some((email, password_hash, expires_at)) = row else {
            return Err(expired());
        };
        if expires_at <= ctx.now {
            return Err(expired());
        }
        if db::users::find_by_email(conn, &email)?.is_some() {
            return Err(bad(
                "an account with this email address exists: sign in instead",
            ));
        }
        let user = insert_user(conn, ctx, &email, password_hash, true)?;
        let session = users::start_session(conn, ctx.now, &user.id)?;
        Ok((user, session))
    })
}

fn insert_user(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    email: &str,
    password_hash: String,
    verified: bool,
) -> AppResult<User> {
    let row = UserRow {
        id: random_id("usr_"),
        email: email.to_owned(),
        password_hash: Some(password_hash),
        email_verified: verified,
        created_at: ctx.now,
        disabled_at: None,
    };
    db::users::insert(conn, &row)?;
    audit::record(
        conn,
        ctx.now,
        ctx.audit,
        AuditEvent::UserCreated,
        AuditEntry {
            user_id: Some(&row.id),
            detail: Some(json!({ "via": "signup", "email_verified": verified })),
            ..Default::default()
        },
    )?;
    Ok(row.into())
}

/// Drops sign-up links past their expiry (run with the other sweeps).
pub fn purge(conn: &mut DbConn, now: UnixTime) -> AppResult<usize> {
    Ok(db::users::purge_signup_links(conn, now)?)
}
