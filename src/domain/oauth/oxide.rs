//! oxide-auth at the authorization endpoint, wrapped here and nowhere else.
//!
//! An authorization request is validated by oxide-auth's I/O-free state machine
//! (`code_grant::authorization::Authorization`: Bind → Extend → Negotiate → Pending), driven by
//! hand inside the caller's database call:
//!
//! - **Bind**: [`ClientsRegistrar`], a `Registrar` over the clients table, binds the client and
//!   its redirect URI. Registered URIs match through `RegisteredUrl`; `http://localhost` on any
//!   port through `IgnorePortOnLocalhost`. oxide-auth treats IP literals as ordinary hosts, but
//!   RFC 8252 §7.3 gives `127.0.0.1` and `[::1]` any port too, so those keep authmd's loopback
//!   rule (`clients::redirect_matches`).
//! - **Extend**: PKCE through `Pkce::required()` (S256 only: `plain` is never allowed), after
//!   the client's grant types are checked.
//! - **Negotiate**: the registrar narrows the requested scope to the client's.
//!
//! Around it stay authmd's: the exact error descriptions (oxide-auth's errors are `()` or carry
//! only a code, so the cause is worked out here where it is known), the RFC 8707 `resource`,
//! consent, the code itself and the RFC 9207 `iss` (`super::approve`).
//!
//! Time: oxide-auth reads the system clock (`Utc::now`) only when it makes a grant or a code
//! (`Pending::authorize`, its issuers). authmd never calls those: the code and its expiry are
//! made in `super::approve` with the injected `now`.
//!
//! The token side stays authmd's own (`grants::code`): oxide-auth's access-token flow issues
//! through its `Issuer` with its own clock and its own error bodies, while authmd's token
//! endpoint must answer RFC 6749 §5.2 codes with its descriptions, judge expiry with the
//! injected clock, revoke a replayed code's grant in the same transaction, and store every token
//! it issues.

use std::borrow::Cow;
use std::cell::RefCell;

use oxide_auth::code_grant::authorization::{
    Authorization, Error as MachineError, Input, Output, Request,
};
use oxide_auth::code_grant::extensions::Pkce;
use oxide_auth::primitives::grant::Extensions;
use oxide_auth::primitives::registrar::{
    BoundClient, ClientUrl, ExactUrl, IgnoreLocalPortUrl, PreGrant, RegisteredUrl, Registrar,
    RegistrarError,
};
use oxide_auth::primitives::scope::Scope;

use super::{redirect_with, AuthorizeError, AuthorizeParams, ValidAuthorize};
use crate::config::Config;
use crate::db::DbConn;
use crate::domain::clients::{self, Client};
use crate::domain::discovery::GRANT_AUTHORIZATION_CODE;
use crate::domain::grants::{narrow_scopes, resolve_resource};
use crate::domain::oidc;
use crate::domain::scope::Scopes;
use crate::error::{AppError, ErrorCode, ProtocolError};

/// The request as oxide-auth reads it.
struct Query<'a>(&'a AuthorizeParams);

impl Request for Query<'_> {
    fn valid(&self) -> bool {
        true
    }

    fn client_id(&self) -> Option<Cow<'_, str>> {
        self.0.client_id.as_deref().map(Cow::Borrowed)
    }

    fn scope(&self) -> Option<Cow<'_, str>> {
        self.0.scope.as_deref().map(Cow::Borrowed)
    }

    fn redirect_uri(&self) -> Option<Cow<'_, str>> {
        self.0.redirect_uri.as_deref().map(Cow::Borrowed)
    }

    fn state(&self) -> Option<Cow<'_, str>> {
        self.0.state.as_deref().map(Cow::Borrowed)
    }

    fn response_type(&self) -> Option<Cow<'_, str>> {
        self.0.response_type.as_deref().map(Cow::Borrowed)
    }

    fn extension(&self, key: &str) -> Option<Cow<'_, str>> {
        match key {
            "code_challenge" => self.0.code_challenge.as_deref().map(Cow::Borrowed),
            "code_challenge_method" => self.0.code_challenge_method.as_deref().map(Cow::Borrowed),
            _ => None,
        }
    }
}

/// Why the registrar refused, kept because `RegistrarError` cannot say.
enum Refusal {
    Page(ErrorCode, &'static str),
    Redirect(ErrorCode, String),
    Failed(AppError),
}

/// The clients table as oxide-auth's `Registrar`, reading inside the caller's database call.
struct ClientsRegistrar<'c> {
    conn: RefCell<&'c mut DbConn>,
    config: &'c Config,
    client: RefCell<Option<Client>>,
    refusal: RefCell<Option<Refusal>>,
}

impl<'c> ClientsRegistrar<'c> {
    fn new(conn: &'c mut DbConn, config: &'c Config) -> Self {
        Self {
            conn: RefCell::new(conn),
            config,
            client: RefCell::new(None),
            refusal: RefCell::new(None),
        }
    }

    fn refuse<T>(&self, why: Refusal) -> Result<T, RegistrarError> {
        let error = match why {
            Refusal::Failed(_) => RegistrarError::PrimitiveError,
            _ => RegistrarError::Unspecified,
        };
        *self.refusal.borrow_mut() = Some(why);
        Err(error)
    }

    fn find(&self, client_id: &str) -> Result<Option<Client>, AppError> {
        clients::find(&mut self.conn.borrow_mut(), client_id)
    }
}

/// A registered redirect URI as oxide-auth matches it: exactly, or on any port for
/// `localhost`.
fn registered(uri: &str) -> Option<RegisteredUrl> {
    IgnoreLocalPortUrl::new(uri)
        .ok()
        .map(RegisteredUrl::IgnorePortOnLocalhost)
}

fn is_loopback_ip(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| matches!(u.host_str(), Some("127.0.0.1" | "[::1]")))
}

/// Whether a request's redirect URI is one the client registered.
fn matches(registered_uri: &str, requested: &ExactUrl) -> bool {
    registered(registered_uri).is_some_and(|r| r == *requested)
        || (is_loopback_ip(registered_uri)
            && clients::redirect_matches(registered_uri, requested.as_str()))
}

impl Registrar for ClientsRegistrar<'_> {
    fn bound_redirect<'a>(&self, bound: ClientUrl<'a>) -> Result<BoundClient<'a>, RegistrarError> {
        let client = match self.find(&bound.client_id) {
            Ok(Some(client)) => client,
            Ok(None) => {
                return self.refuse(Refusal::Page(ErrorCode::InvalidClient, "unknown client_id"))
            }
            Err(e) => return self.refuse(Refusal::Failed(e)),
        };
        let redirect_uri = match &bound.redirect_uri {
            Some(requested) if client.redirect_uris.iter().any(|r| matches(r, requested)) => {
                RegisteredUrl::Exact(requested.clone().into_owned())
            }
            Some(_) => {
                return self.refuse(Refusal::Page(
                    ErrorCode::InvalidRequest,
                    "redirect_uri is not registered for this client",
                ))
            }
            // The one registered URI, verbatim (with its port, even on localhost).
            None if client.redirect_uris.len() == 1 => {
                match ExactUrl::new(client.redirect_uris[0].clone()) {
                    Ok(exact) => RegisteredUrl::Exact(exact),
                    Err(_) => {
                        return self.refuse(Refusal::Page(
                            ErrorCode::InvalidRequest,
                            "the client's registered redirect_uri is not a URL",
                        ))
                    }
                }
            }
            None => {
                return self.refuse(Refusal::Page(
                    ErrorCode::InvalidRequest,
                    "redirect_uri is required",
                ))
            }
        };
        *self.client.borrow_mut() = Some(client);
        Ok(BoundClient {
            client_id: bound.client_id,
            redirect_uri: Cow::Owned(redirect_uri),
        })
    }

    /// Narrows the requested scope to the client's (all of the client's when none is asked).
    fn negotiate(
        &self,
        bound: BoundClient,
        scope: Option<Scope>,
    ) -> Result<PreGrant, RegistrarError> {
        let (own, allowed) = match self.client.borrow().as_ref() {
            Some(client) => (client.scopes(), oidc::code_flow_scopes(self.config, client)),
            None => return Err(RegistrarError::PrimitiveError),
        };
        let requested = scope.map(|s| s.to_string());
        // Without a scope the client gets its own scopes, never OpenID Connect unasked.
        let narrowed = match requested.as_deref() {
            None => Ok(own),
            Some(_) => narrow_scopes(requested.as_deref(), &allowed),
        };
        let narrowed = match narrowed {
            Ok(narrowed) => narrowed,
            Err(e) => {
                return self.refuse(Refusal::Redirect(ErrorCode::InvalidScope, e.to_string()))
            }
        };
        let scope = narrowed
            .to_string()
            .parse::<Scope>()
            .or(Err(RegistrarError::PrimitiveError))?;
        Ok(PreGrant {
            client_id: bound.client_id.into_owned(),
            redirect_uri: bound.redirect_uri.into_owned(),
            scope,
        })
    }

    /// Client authentication belongs to the token endpoint (`clients::authenticate`), never to
    /// the authorization endpoint.
    fn check(&self, _client_id: &str, _passphrase: Option<&[u8]>) -> Result<(), RegistrarError> {
        Err(RegistrarError::PrimitiveError)
    }
}

/// Validates an authorization request. Needs the database (the client) but changes nothing.
pub fn validate(
    conn: &mut DbConn,
    config: &Config,
    p: &AuthorizeParams,
) -> Result<ValidAuthorize, AuthorizeError> {
    let page = |code, msg: &str| AuthorizeError::Page(ProtocolError::new(code, msg.to_owned()));
    let client_id = p
        .client_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| page(ErrorCode::InvalidRequest, "client_id is missing"))?;
    let prompt = oidc::Prompt::parse(p.prompt.as_deref());
    let max_age = oidc::parse_max_age(p.max_age.as_deref());
    let registrar = ClientsRegistrar::new(conn, config);
    let query = Query(p);
    let mut machine = Authorization::new(&query);
    let mut output = machine.advance(Input::None);
    // Filled in once the redirect URI is trusted: from then on errors go back to the client.
    let mut back_to: Option<String> = None;
    let back = |uri: &str, code: ErrorCode, msg: &str| {
        AuthorizeError::Redirect(redirect_with(
            uri,
            &config.server.issuer,
            &[("error", code.as_str()), ("error_description", msg)],
            p.state.as_deref(),
        ))
    };
    loop {
        output = match output {
            Output::Bind {
                client_id,
                redirect_uri,
            } => {
                let bound = registrar.bound_redirect(ClientUrl {
                    client_id: Cow::Owned(client_id),
                    redirect_uri: redirect_uri.map(Cow::Owned),
                });
                let bound_client = match bound {
                    Ok(bound) => bound,
                    Err(_) => return Err(refused(&registrar, None, &back)),
                };
                back_to = Some(bound_client.redirect_uri.as_str().to_owned());
                machine.advance(Input::Bound {
                    request: &query,
                    bound_client,
                })
            }
            Output::Extend => {
                let uri = back_to.as_deref().unwrap_or_default();
                let client = registrar.client.borrow().clone();
                let Some(client) = client else {
                    return Err(AppError::internal("bound without a client").into());
                };
                if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
                    return Err(back(
                        uri,
                        ErrorCode::UnauthorizedClient,
                        "client may not use the authorization code grant",
                    ));
                }
                let extensions =
                    pkce(p).map_err(|msg| back(uri, ErrorCode::InvalidRequest, msg))?;
                machine.advance(Input::Extended(extensions))
            }
            Output::Negotiate {
                bound_client,
                scope,
            } => {
                let pre_grant = registrar
                    .negotiate(bound_client.clone(), scope)
                    .map_err(|_| refused(&registrar, back_to.as_deref(), &back))?;
                machine.advance(Input::Negotiated {
                    pre_grant,
                    state: p.state.clone(),
                })
            }
            Output::Ok {
                pre_grant,
                state,
                extensions: _,
            } => {
                let redirect_uri = pre_grant.redirect_uri.as_str().to_owned();
                let resource = resolve_resource(config, p.resource.as_deref()).map_err(|_| {
                    back(&redirect_uri, ErrorCode::InvalidTarget, "unknown resource")
                })?;
                let prompt = prompt
                    .clone()
                    .map_err(|msg| back(&redirect_uri, ErrorCode::InvalidRequest, &msg))?;
                let max_age = max_age
                    .clone()
                    .map_err(|msg| back(&redirect_uri, ErrorCode::InvalidRequest, &msg))?;
                let client = registrar.client.borrow_mut().take();
                let Some(client) = client else {
                    return Err(AppError::internal("negotiated without a client").into());
                };
                return Ok(ValidAuthorize {
                    client,
                    scopes: Scopes::parse(&pre_grant.scope.to_string()).unwrap_or_default(),
                    redirect_uri,
                    state,
                    // Checked by `pkce` to be present and a base64url SHA-256.
                    code_challenge: p.code_challenge.clone().unwrap_or_default(),
                    resource,
                    nonce: p.nonce.clone().filter(|n| !n.is_empty()),
                    prompt,
                    max_age,
                });
            }
            Output::Err(MachineError::Redirect(_)) => {
                // Raised between Bind and Extend: an unsupported response type, or a scope
                // oxide-auth cannot parse.
                let uri = back_to.as_deref().unwrap_or_default();
                return Err(match p.response_type.as_deref() {
                    Some("code") => back(uri, ErrorCode::InvalidScope, "scope is malformed"),
                    Some(_) => back(
                        uri,
                        ErrorCode::UnsupportedResponseType,
                        "only response_type=code is supported",
                    ),
                    None => back(uri, ErrorCode::InvalidRequest, "response_type is missing"),
                });
            }
            // Before binding: the request's redirect URI is not even a URL, so it cannot be
            // registered (or the client is unknown, which the page says first).
            Output::Err(MachineError::Ignore) => {
                return Err(match registrar.find(client_id) {
                    Ok(None) => page(ErrorCode::InvalidClient, "unknown client_id"),
                    Ok(Some(_)) => page(
                        ErrorCode::InvalidRequest,
                        "redirect_uri is not registered for this client",
                    ),
                    Err(e) => e.into(),
                })
            }
            Output::Err(MachineError::PrimitiveError) => {
                return Err(refused(&registrar, back_to.as_deref(), &back))
            }
        };
    }
}

/// The error for a refusal the registrar recorded.
fn refused(
    registrar: &ClientsRegistrar<'_>,
    redirect_uri: Option<&str>,
    back: &dyn Fn(&str, ErrorCode, &str) -> AuthorizeError,
) -> AuthorizeError {
    match registrar.refusal.borrow_mut().take() {
        Some(Refusal::Page(code, msg)) => {
            AuthorizeError::Page(ProtocolError::new(code, msg.to_owned()))
        }
        Some(Refusal::Redirect(code, msg)) => match redirect_uri {
            Some(uri) => back(uri, code, &msg),
            None => AuthorizeError::Page(ProtocolError::new(code, msg)),
        },
        Some(Refusal::Failed(e)) => e.into(),
        None => AppError::internal("oxide-auth refused without a cause").into(),
    }
}

/// PKCE through oxide-auth's `Pkce::required()` (S256 only), with authmd's descriptions for
/// each way a challenge can be wrong (oxide-auth answers `()`), and the RFC 7636 shape of an
/// S256 challenge, which oxide-auth does not check.
fn pkce(p: &AuthorizeParams) -> Result<Extensions, &'static str> {
    let challenge = match p.code_challenge.as_deref() {
        Some(c) if !c.is_empty() => c,
        _ => return Err("code_challenge is required (PKCE S256)"),
    };
    // RFC 7636 defaults a missing method to plain, which authmd refuses.
    if p.code_challenge_method.as_deref() != Some("S256") {
        return Err("code_challenge_method must be S256");
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("code_challenge is not a base64url SHA-256");
    }
    let required = Pkce::required();
    let method = p.code_challenge_method.as_deref().map(Cow::Borrowed);
    let value = required
        .challenge(method, Some(Cow::Borrowed(challenge)))
        .ok()
        .flatten()
        .ok_or("code_challenge_method must be S256")?;
    let mut extensions = Extensions::new();
    extensions.set(&required, value);
    Ok(extensions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(s: &str) -> ExactUrl {
        s.parse().unwrap()
    }

    #[test]
    fn redirect_matching_follows_rfc8252_for_every_loopback_form() {
        // Exact for ordinary URIs.
        assert!(matches(
            "https://app.example/cb",
            &exact("https://app.example/cb")
        ));
        assert!(!matches(
            "https://app.example/cb",
            &exact("https://app.example/cb2")
        ));
        assert!(!matches(
            "https://app.example/cb",
            &exact("https://app.example:8443/cb")
        ));
        // Any port on localhost (oxide-auth's IgnorePortOnLocalhost) and on IP literals.
        assert!(matches(
            "http://localhost/cb",
            &exact("http://localhost:53123/cb")
        ));
        assert!(matches(
            "http://127.0.0.1/cb",
            &exact("http://127.0.0.1:53123/cb")
        ));
        assert!(matches(
            "http://[::1]:80/cb",
            &exact("http://[::1]:4711/cb")
        ));
        // Never another path or host.
        assert!(!matches(
            "http://localhost/cb",
            &exact("http://localhost:53123/other")
        ));
        assert!(!matches(
            "http://127.0.0.1/cb",
            &exact("http://127.0.0.2:53123/cb")
        ));
    }

    #[test]
    fn pkce_is_s256_only_and_names_what_is_wrong() {
        let mut p = AuthorizeParams {
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            code_challenge_method: Some("S256".into()),
            ..Default::default()
        };
        assert!(pkce(&p).is_ok());
        p.code_challenge_method = Some("plain".into());
        assert_eq!(pkce(&p).unwrap_err(), "code_challenge_method must be S256");
        p.code_challenge_method = None;
        assert_eq!(pkce(&p).unwrap_err(), "code_challenge_method must be S256");
        p.code_challenge_method = Some("S256".into());
        p.code_challenge = Some("short".into());
        assert_eq!(
            pkce(&p).unwrap_err(),
            "code_challenge is not a base64url SHA-256"
        );
        p.code_challenge = None;
        assert_eq!(
            pkce(&p).unwrap_err(),
            "code_challenge is required (PKCE S256)"
        );
    }
}
