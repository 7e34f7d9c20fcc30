//! The authorization endpoint's protocol: validating a request (RFC 6749 §4.1.1, RFC 7636,
//! RFC 8707, RFC 8252 loopback rule), consent, and issuing the code with an RFC 9207 `iss`.
//!
//! Errors before the redirect URI is trusted are shown on a page and never redirected (an
//! open-redirect would otherwise follow); errors after it go back to the client.
//!
//! Validation runs on oxide-auth's primitives ([`oxide`]); consent, the code, RFC 9207 `iss`,
//! RFC 8707 `resource` and the pages are authmd's, around them.

pub use oxide::validate;

mod oxide;

use url::Url;

use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::oauth::{CodeRow, ConsentRow};
use crate::db::{self, write_tx, DbConn};
use crate::domain::cimd::DocumentClient;
use crate::domain::clients::Client;
use crate::domain::oidc::{self, Prompt};
use crate::domain::scope::Scopes;
use crate::domain::secrets::{prefix, PlainToken};
use crate::domain::users::{self, User};
use crate::error::{AppError, AppResult, ErrorCode, ProtocolError};

/// The query (or consent form) of an authorization request.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub resource: Option<String>,
    /// OpenID Connect.
    pub nonce: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct ValidAuthorize {
    pub client: Client,
    pub redirect_uri: String,
    pub scopes: Scopes,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
    pub nonce: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
}

#[derive(Debug)]
pub enum AuthorizeError {
    /// Show an error page (status 400); never redirect.
    Page(ProtocolError),
    /// Send the error back to the client's redirect URI.
    Redirect(String),
}

impl From<AppError> for AuthorizeError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Protocol(p) => AuthorizeError::Page(p),
            // The cause (a database message, say) is for the log; the person sees a reference.
            other => {
                let reference = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(reference = %reference, cause = %other, "authorization request failed");
                AuthorizeError::Page(
                    ProtocolError::new(
                        ErrorCode::ServiceUnavailable,
                        format!(
                            "something went wrong on our side; please try again (reference {reference})"
                        ),
                    )
                    .with_retry_after(1),
                )
            }
        }
    }
}

/// `redirect_uri` with the response parameters appended (RFC 9207 `iss` always included).
pub fn redirect_with(
    redirect_uri: &str,
    issuer: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
) -> String {
    let mut url = match Url::parse(redirect_uri) {
        Ok(url) => url,
        Err(_) => return redirect_uri.to_owned(),
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(state) = state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", issuer);
    }
    url.to_string()
}

/// Whether the user already consented to at least these scopes for this client. Never for a
/// public client redirecting to a loopback address or a private-use scheme: any app on the
/// device can claim those, so the person must see who is asking every time (RFC 8252 §8.6).
pub fn has_consent(conn: &mut DbConn, user_id: &str, req: &ValidAuthorize) -> AppResult<bool> {
    if req.client.is_public && !redirect_identifies_client(&req.redirect_uri) {
        return Ok(false);
    }
    Ok(
        db::oauth::find_consent(conn, user_id, &req.client.client_id)?
            .and_then(|c| Scopes::parse(&c.scope))
            .is_some_and(|granted| req.scopes.is_subset(&granted)),
    )
}

/// Whether a redirect URI is one only its client can receive: an `https` URL not on loopback.
fn redirect_identifies_client(redirect_uri: &str) -> bool {
    let Ok(url) = Url::parse(redirect_uri) else {
        return false;
    };
    url.scheme() == "https" && !crate::config::is_loopback_host(&url)
}

/// Records consent (widening any earlier one) and issues a code; returns the redirect URL.
pub fn approve(
    conn: &mut DbConn,
    config: &Config,
    now: UnixTime,
    signed_in: &SignedIn,
    req: &ValidAuthorize,
    remember: bool,
) -> AppResult<String> {
    let user_id = signed_in.user.id.as_str();
    let code = PlainToken::generate(prefix::AUTH_CODE);
    write_tx(conn, |conn| {
        if remember {
            let mut scopes: Vec<String> = req.scopes.iter().map(str::to_owned).collect();
            if let Some(previous) = db::oauth::find_consent(conn, user_id, &req.client.client_id)? {
                scopes.extend(
                    previous
                        .scope
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
            }
            db::oauth::put_consent(
                conn,
                &ConsentRow {
                    user_id: user_id.to_owned(),
                    client_id: req.client.client_id.clone(),
                    scope: Scopes::from_list(&scopes).to_string(),
                    granted_at: now,
                },
            )?;
        }
        db::oauth::insert_code(
            conn,
            &CodeRow {
                code_hash: code.hash().as_str().to_owned(),
                client_id: req.client.client_id.clone(),
                user_id: user_id.to_owned(),
                redirect_uri: req.redirect_uri.clone(),
                scope: req.scopes.to_string(),
                resource: req.resource.clone(),
                code_challenge: req.code_challenge.clone(),
                created_at: now,
                expires_at: now + config.tokens.authorization_code_ttl_s,
                used_at: None,
                grant_id: None,
                nonce: req.nonce.clone(),
                auth_time: Some(signed_in.auth_time),
            },
        )
        .map_err(AppError::from)
    })?;
    Ok(redirect_with(
        &req.redirect_uri,
        &config.server.issuer,
        &[("code", code.expose())],
        req.state.as_deref(),
    ))
}

/// The redirect for a user who said no.
pub fn deny(config: &Config, req: &ValidAuthorize) -> String {
    redirect_with(
        &req.redirect_uri,
        &config.server.issuer,
        &[
            ("error", "access_denied"),
            ("error_description", "the user denied the request"),
        ],
        req.state.as_deref(),
    )
}

/// What the authorization endpoint does next for a valid request.
#[derive(Debug)]
pub enum AuthorizeStep {
    /// Nobody is signed in, or the request wants a fresh sign-in: show the login form.
    Login,
    /// Signed in, consent needed: show the consent form.
    Consent(Box<ValidAuthorize>, User),
    /// Already consented (or an error for `prompt=none`): redirect to the client.
    Redirect(String),
}

/// Stores (or refreshes) the client a metadata document describes, so the request validates
/// against it like any registered client.
fn learn(conn: &mut DbConn, document: Option<&DocumentClient>) -> AppResult<()> {
    match document {
        Some(doc) => db::clients::upsert_document_client(conn, &doc.row).map_err(AppError::from),
        None => Ok(()),
    }
}

/// The person behind a session, and when they signed in (OIDC `auth_time`).
pub struct SignedIn {
    pub user: User,
    pub auth_time: UnixTime,
}

fn signed_in(
    conn: &mut DbConn,
    now: UnixTime,
    session: Option<&str>,
) -> AppResult<Option<SignedIn>> {
    let Some(cookie) = session else {
        return Ok(None);
    };
    Ok(users::session(conn, now, cookie)?.map(|(user, auth_time)| SignedIn { user, auth_time }))
}

/// An OpenID Connect error for `prompt=none`, sent back to the client.
fn prompt_none_error(
    config: &Config,
    req: &ValidAuthorize,
    code: &str,
    why: &str,
) -> AuthorizeStep {
    AuthorizeStep::Redirect(redirect_with(
        &req.redirect_uri,
        &config.server.issuer,
        &[("error", code), ("error_description", why)],
        req.state.as_deref(),
    ))
}

/// `GET /oauth2/authorize`: validate, then decide between login, consent and an immediate code.
/// `document`: the client, when `client_id` is a metadata document URL (fetched beforehand).
///
/// OpenID Connect's `prompt` and `max_age` (Core §3.1.2.1): `login`, or a session older than
/// `max_age`, shows the login form again (the form returns here without them, so a fresh
/// sign-in satisfies them once); `consent` shows the consent form even when remembered;
/// `none` never shows a page and answers `login_required` or `consent_required` instead.
pub fn begin(
    conn: &mut DbConn,
    config: &Config,
    now: UnixTime,
    params: &AuthorizeParams,
    session: Option<&str>,
    document: Option<&DocumentClient>,
) -> Result<AuthorizeStep, AuthorizeError> {
    learn(conn, document)?;
    let req = validate(conn, config, params)?;
    let current = signed_in(conn, now, session)?
        .filter(|s| !oidc::needs_fresh_login(req.prompt, req.max_age, s.auth_time, now));
    let Some(current) = current else {
        if req.prompt.none {
            return Ok(prompt_none_error(
                config,
                &req,
                "login_required",
                "the person is not signed in",
            ));
        }
        return Ok(AuthorizeStep::Login);
    };
    if !req.prompt.consent && has_consent(conn, &current.user.id, &req)? {
        return Ok(AuthorizeStep::Redirect(approve(
            conn, config, now, &current, &req, false,
        )?));
    }
    if req.prompt.none {
        return Ok(prompt_none_error(
            config,
            &req,
            "consent_required",
            "the person has not approved this client",
        ));
    }
    Ok(AuthorizeStep::Consent(Box::new(req), current.user))
}

/// `POST /oauth2/authorize`: the user's answer on the consent form.
pub fn decide(
    conn: &mut DbConn,
    config: &Config,
    now: UnixTime,
    params: &AuthorizeParams,
    session: Option<&str>,
    allow: bool,
    document: Option<&DocumentClient>,
) -> Result<String, AuthorizeError> {
    learn(conn, document)?;
    let req = validate(conn, config, params)?;
    let Some(current) = signed_in(conn, now, session)? else {
        return Err(AuthorizeError::Page(ProtocolError::new(
            ErrorCode::AccessDenied,
            "your session has ended; start again from the application",
        )));
    };
    if allow {
        Ok(approve(conn, config, now, &current, &req, true)?)
    } else {
        Ok(deny(config, &req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_carries_state_and_iss() {
        let url = redirect_with(
            "https://app.example/cb?x=1",
            "https://as.example",
            &[("code", "ac_1")],
            Some("s t"),
        );
        let parsed = Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("x".into(), "1".into()),
                ("code".into(), "ac_1".into()),
                ("state".into(), "s t".into()),
                ("iss".into(), "https://as.example".into()),
            ]
        );
    }

    #[test]
    fn internal_errors_reach_the_page_as_a_reference_only() {
        let AuthorizeError::Page(p) =
            AuthorizeError::from(AppError::internal("database: database is locked"))
        else {
            panic!("an error page");
        };
        assert!(!p.description.contains("database"), "{}", p.description);
        assert!(p.description.contains("reference"));
    }
}
