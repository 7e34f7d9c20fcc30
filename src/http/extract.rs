//! Reading requests: parameters (duplicates refused), client authentication, bearer tokens,
//! the caller's IP, cookies and CSRF tokens.

use std::collections::HashMap;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::response::{ApiError, Shape};
use crate::config::Config;
use crate::domain::audit::AuditContext;
use crate::domain::clients::{ClientAuth, AUTH_BASIC, AUTH_POST};
use crate::domain::secrets::{constant_time_eq, PlainToken};
use crate::error::ErrorCode;

pub const SESSION_COOKIE: &str = "authmd_session";
pub const CSRF_COOKIE: &str = "authmd_csrf";

/// Request parameters as a map. RFC 6749 §3.1–3.2: a parameter must not appear twice.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

/// The body of `/oauth2/token` and `/oauth2/revoke`: form-encoded, the standard, or a JSON
/// object with the same members, as agents send it. JSON members must be strings; both kinds
/// go through [`Params`], so the same checks apply.
pub struct OAuthBody(pub Vec<(String, String)>);

impl FromRequest for OAuthBody {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if json {
            let body =
                web::Json::<serde_json::Map<String, serde_json::Value>>::from_request(req, payload);
            Box::pin(async move {
                let mut pairs = Vec::new();
                for (name, value) in body.await?.into_inner() {
                    let serde_json::Value::String(value) = value else {
                        return Err(ApiError::new(
                            ErrorCode::InvalidRequest,
                            format!("{name} must be a string"),
                            Shape::OAuth,
                        )
                        .into());
                    };
                    pairs.push((name, value));
                }
                Ok(OAuthBody(pairs))
            })
        } else {
            let form = FormPairs::from_request(req, payload);
            Box::pin(async move { Ok(OAuthBody(form.await?.into_inner())) })
        }
    }
}

/// The most bytes a form body may have: `server.max_body_bytes`, the limit `web::FormConfig`
/// is given too. Without it in the app's data, forms are read by `web::Form` alone.
#[derive(Debug, Clone, Copy)]
pub struct FormLimit(pub usize);

/// A form-encoded body's name-value pairs, as `web::Form<Vec<(String, String)>>` reads them
/// (the same limit, errors and parsing), for every form this API takes. The common body, typed
/// exactly `application/x-www-form-urlencoded` and not compressed, is read here directly:
/// `web::Form` parses the Content-Type as a MIME type and looks up its charset on every
/// request, and deserializes through serde: 2.8k instructions of the 64k an introspection costs
/// beyond `/healthz` (callgrind, `bench/README.md`, twenty-third session). A charset parameter, a
/// Content-Encoding or an unreadable Content-Length takes `web::Form`'s path, so those keep its
/// behaviour to the letter.
pub struct FormPairs(Vec<(String, String)>);

impl FormPairs {
    pub fn into_inner(self) -> Vec<(String, String)> {
        self.0
    }
}

impl FromRequest for FormPairs {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let headers = req.headers();
        let plain = headers.get(header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes()
                .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
        }) && !headers.contains_key(header::CONTENT_ENCODING);
        let declared = match headers.get(header::CONTENT_LENGTH) {
            None => Some(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .map(Some),
        };
        let limit = req.app_data::<FormLimit>().map(|limit| limit.0);
        let (true, Some(declared), Some(limit)) = (plain, declared, limit) else {
            let form = web::Form::<Vec<(String, String)>>::from_request(req, payload);
            return Box::pin(async move { Ok(FormPairs(form.await?.into_inner())) });
        };
        let req = req.clone();
        let mut stream = payload.take();
        Box::pin(async move {
            use actix_web::error::UrlencodedError;
            let refuse = |err: UrlencodedError| super::response::payload_error(err, &req);
            if let Some(size) = declared.filter(|size| *size > limit) {
                return Err(refuse(UrlencodedError::Overflow { size, limit }));
            }
            let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
            while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
                let chunk = chunk.map_err(|e| refuse(UrlencodedError::Payload(e)))?;
                let size = body.len() + chunk.len();
                if size > limit {
                    return Err(refuse(UrlencodedError::Overflow { size, limit }));
                }
                body.extend_from_slice(&chunk);
            }
            // What serde_urlencoded gives `web::Form` for these pairs: the same parser.
            Ok(FormPairs(
                form_urlencoded::parse(&body).into_owned().collect(),
            ))
        })
    }
}

impl Params {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut map = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            // Form decoding replaces invalid UTF-8 with U+FFFD, which no OAuth parameter
            // carries legitimately; a NUL would be refused by PostgreSQL and stored by SQLite.
            let bad = |s: &str| s.contains(['\0', '\u{FFFD}']);
            if bad(&k) || bad(&v) {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "parameter {:?} contains a NUL character or invalid UTF-8",
                        k.replace(['\0', '\u{FFFD}'], "?")
                    ),
                    Shape::OAuth,
                ));
            }
            if map.contains_key(&k) {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("parameter {k} appears more than once"),
                    Shape::OAuth,
                ));
            }
            map.insert(k, v);
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn owned(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    pub fn require(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("{key} is required"),
                Shape::OAuth,
            )
        })
    }
}

fn bad_client(msg: &'static str) -> ApiError {
    ApiError::new(ErrorCode::InvalidClient, msg, Shape::OAuth)
}

/// Client authentication of RFC 6749 §2.3: `client_secret_basic`, `client_secret_post`, or a
/// public client's bare `client_id`. Using two methods at once is refused.
pub fn client_auth(req: &HttpRequest, params: &Params) -> Result<Option<ClientAuth>, ApiError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| bad_client("malformed Authorization header"))?;
        if let Some(encoded) = strip_scheme(value, "Basic") {
            if params.get("client_secret").is_some() {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "use one client authentication method, not two",
                    Shape::OAuth,
                ));
            }
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| bad_client("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| bad_client("malformed Basic credentials"))?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            let client_id =
                form_decode(id).ok_or_else(|| bad_client("malformed Basic credentials"))?;
            let secret =
                form_decode(secret).ok_or_else(|| bad_client("malformed Basic credentials"))?;
            if let Some(body_id) = params.get("client_id") {
                if body_id != client_id {
                    return Err(bad_client(
                        "client_id does not match the authenticated client",
                    ));
                }
            }
            return Ok(Some(ClientAuth::Secret {
                client_id,
                secret,
                method: AUTH_BASIC,
            }));
        }
    }
    match (params.get("client_id"), params.get("client_secret")) {
        (Some(id), Some(secret)) => Ok(Some(ClientAuth::Secret {
            client_id: id.to_owned(),
            secret: secret.to_owned(),
            method: AUTH_POST,
        })),
        (None, Some(_)) => Err(bad_client("client_secret without client_id")),
        (Some(id), None) if !id.is_empty() => Ok(Some(ClientAuth::Public {
            client_id: id.to_owned(),
        })),
        _ => Ok(None),
    }
}

fn form_decode(s: &str) -> Option<String> {
    // Client ids and secrets are mostly URL-safe already: nothing to decode.
    if !s.contains(['+', '%']) {
        return Some(s.to_owned());
    }
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest.trim())
}

/// The bearer token of an `Authorization: Bearer …` header (RFC 6750 §2.1).
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?;
    // The scheme is looked at before the whole value is checked as text: introspection asks
    // every request for a bearer token, and most carry Basic credentials instead.
    let scheme = value.as_bytes().split(|b| *b == b' ').next()?;
    if !scheme.eq_ignore_ascii_case(b"Bearer") {
        return None;
    }
    let value = value.to_str().ok()?;
    strip_scheme(value, "Bearer")
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// The caller's IP. When the peer is one of `server.trusted_proxies`, the rightmost
/// `X-Forwarded-For` hop that is not a trusted proxy: hops to its left were written by the
/// client and prove nothing. Otherwise the peer address.
pub fn client_ip(req: &HttpRequest, config: &Config) -> Option<String> {
    let peer = req.peer_addr().map(|a| a.ip());
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    forwarded_client(peer, &forwarded, &config.server.trusted_proxy_nets).map(|ip| ip.to_string())
}

fn forwarded_client(
    peer: Option<std::net::IpAddr>,
    headers: &[&str],
    trusted: &[ipnet::IpNet],
) -> Option<std::net::IpAddr> {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    // Walk from the right; stop at the first hop a trusted proxy did not vouch for.
    for hop in hops.iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A garbled hop ends what can be believed; the last good one stands.
            Err(_) => break,
        }
    }
    Some(client)
}

pub fn audit_context(req: &HttpRequest, config: &Config) -> AuditContext {
    AuditContext {
        actor: None,
        ip: client_ip(req, config),
        request_id: req
            .extensions()
            .get::<super::middleware::RequestId>()
            .map(|id| id.0.clone()),
    }
}

/// A cookie with the attributes every authmd cookie has: HttpOnly, SameSite=Lax, Path=/, and
/// Secure when the issuer is https.
pub fn cookie(config: &Config, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(config.server.issuer.starts_with("https://"))
        .finish()
}

/// The CSRF cookie value, minting one if the request has none (the caller must then set it).
pub fn csrf_cookie(req: &HttpRequest) -> (String, bool) {
    match req.cookie(CSRF_COOKIE) {
        Some(c) if c.value().len() >= 32 => (c.value().to_owned(), false),
        _ => (PlainToken::generate("").into_string(), true),
    }
}

/// The form token for a CSRF cookie: an HMAC under the server's CSRF secret of the cookie and
/// the browser's session. Without the secret nobody can compute it, even knowing the cookie
/// (a subdomain that can set cookies cannot forge it), and a token minted for one session does
/// not work in another.
pub fn csrf_token_for(key: &ring::hmac::Key, cookie_value: &str, session: Option<&str>) -> String {
    let session = session.map(|s| crate::domain::secrets::sha256_hex(s.as_bytes()));
    let material = format!("{cookie_value}\0{}", session.unwrap_or_default());
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(key, material.as_bytes()).as_ref())
}

/// The browser's session cookie, if any.
pub fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned())
}

/// Checks a submitted form's `csrf_token` against the request's CSRF cookie and session.
pub fn csrf_ok(key: &ring::hmac::Key, req: &HttpRequest, submitted: Option<&str>) -> bool {
    match (req.cookie(CSRF_COOKIE), submitted) {
        (Some(cookie), Some(token)) => {
            let expected = csrf_token_for(key, cookie.value(), session_cookie(req).as_deref());
            constant_time_eq(expected.as_bytes(), token.as_bytes())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64. Those with nothing
    /// encoded are taken as they are; the rest are decoded, `+` as a space.
    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(form_decode("cl_Ab-9_x.~").as_deref(), Some("cl_Ab-9_x.~"));
        assert_eq!(form_decode("a%2Bb+c%3A").as_deref(), Some("a+b c:"));
        assert_eq!(form_decode("a+b").as_deref(), Some("a b"));
        assert_eq!(form_decode("%E2%9C%93").as_deref(), Some("\u{2713}"));
        assert_eq!(form_decode("%FF"), None, "not UTF-8 once decoded");
    }

    #[test]
    fn cookies_are_httponly_lax_and_secure_on_https() {
        let http = Config::defaults();
        let c = cookie(&http, SESSION_COOKIE, "v".into());
        assert_eq!(c.http_only(), Some(true));
        assert_eq!(c.same_site(), Some(SameSite::Lax));
        assert_ne!(c.secure(), Some(true));
        let https =
            Config::from_toml_overlay("[server]\nissuer = \"https://auth.example\"").unwrap();
        assert_eq!(
            cookie(&https, SESSION_COOKIE, "v".into()).secure(),
            Some(true)
        );
    }

    #[test]
    fn csrf_token_is_keyed_and_bound_to_cookie_and_session() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"server secret");
        let other = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"another secret");
        let t = csrf_token_for(&key, "a", Some("s1"));
        assert_eq!(t, csrf_token_for(&key, "a", Some("s1")));
        assert_ne!(t, csrf_token_for(&key, "b", Some("s1")));
        assert_ne!(t, csrf_token_for(&key, "a", Some("s2")));
        assert_ne!(t, csrf_token_for(&key, "a", None));
        assert_ne!(t, csrf_token_for(&other, "a", Some("s1")));
    }

    #[test]
    fn client_ip_is_the_rightmost_untrusted_hop() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // Untrusted peer: the header is ignored.
        assert_eq!(
            forwarded_client(Some(ip("203.0.113.9")), &["1.1.1.1"], &proxies),
            Some(ip("203.0.113.9"))
        );
        // Trusted peer: the spoofed leftmost hop is not believed.
        assert_eq!(
            forwarded_client(
                Some(ip("10.0.0.2")),
                &["6.6.6.6, 198.51.100.7, 10.0.0.3"],
                &proxies
            ),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            forwarded_client(Some(ip("10.0.0.2")), &["6.6.6.6", "198.51.100.7"], &proxies),
            Some(ip("198.51.100.7"))
        );
        // No proxies configured: always the peer.
        assert_eq!(
            forwarded_client(Some(ip("10.0.0.2")), &["6.6.6.6"], &[]),
            Some(ip("10.0.0.2"))
        );
    }

    #[test]
    fn duplicate_parameters_are_refused() {
        let dup = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        assert!(Params::from_pairs(dup).is_err());
        for bad in ["a\0b", "a\u{FFFD}b"] {
            assert!(Params::from_pairs(vec![("a".to_owned(), bad.to_owned())]).is_err());
        }
        let ok = Params::from_pairs(vec![("a".to_owned(), "1".to_owned())]).unwrap();
        assert_eq!(ok.get("a"), Some("1"));
        assert!(ok.require("b").is_err());
    }
}
