//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a client names
//! itself by an `https` URL, and authmd fetches that URL to learn its name and redirect URIs.
//!
//! The fetch is the dangerous part: any caller of `/oauth2/authorize` chooses the URL, so the
//! fetcher is a way into whatever network authmd sits on. Hence:
//!
//! - `https` only; a URL with a path, no fragment, no user or password, no dot segments.
//! - No private, loopback, link-local or otherwise non-public address: checked on the addresses
//!   the host name resolves to (every one of them, by the resolver the HTTP client connects
//!   with, so a name cannot resolve to a public address for the check and a private one for the
//!   connection), on IP literals, and again on every redirect hop (at most [`MAX_REDIRECTS`]).
//!   No proxy from the environment, which would connect on the fetcher's behalf unchecked.
//! - [`FETCH_TIMEOUT`] for the whole fetch, at most [`MAX_DOCUMENT_BYTES`] read whatever the
//!   headers claim.
//! - One fetch in flight per URL; the answer cached per `Cache-Control: max-age`, clamped to
//!   [`MIN_CACHE_S`] .. [`MAX_CACHE_S`] (a document that says `no-store` is still kept for the
//!   minimum, so strangers cannot make authmd fetch it on every request). A failure is
//!   remembered for [`FAILURE_CACHE_S`], for the same reason.
//!
//! `oauth.cimd.allow_private_addresses` lifts the address rules and allows plain `http`, for
//! tests and closed networks.
//!
//! The document's rules: its `client_id` equals the URL; the client is public (no secret; the
//! token endpoint authenticates it as `none`, and PKCE binds the code); its redirect URIs are
//! the document's and nothing else; its grants are the code flow's and never
//! `client_credentials`. The client is stored as a row (id = the URL) so codes, consents and
//! grants refer to it like any other client; each fetch refreshes the row.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;
use url::Url;

use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::clients::ClientRow;
use crate::domain::clients::{validate_redirect_uri, AUTH_NONE};
use crate::domain::discovery::{scopes_supported, GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN};
use crate::domain::scope::Scopes;
use crate::error::{AppError, AppResult, ErrorCode, ProtocolError};

pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
pub const MAX_REDIRECTS: usize = 3;
pub const MIN_CACHE_S: i64 = 60;
pub const MAX_CACHE_S: i64 = 24 * 3600;
/// How long a failed fetch or a refused document is remembered before the URL is tried again.
pub const FAILURE_CACHE_S: i64 = 10;
/// Cached documents kept at most; past it, expired entries are dropped first.
const MAX_CACHED: usize = 4096;

/// Grants a document client may have.
const DOCUMENT_GRANTS: [&str; 2] = [GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN];

/// Whether `client_id` names a metadata document rather than a registered client. Registered
/// ids are never URLs (`cl_…`), so the two cannot be confused.
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Why a document could not be used: shown on the authorization endpoint's error page.
fn refused(reason: impl Into<String>) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::InvalidClient,
        format!("client metadata document: {}", reason.into()),
    )
}

/// Checks a `client_id` URL before anything is fetched.
pub fn check_url(client_id: &str, allow_private: bool) -> Result<Url, ProtocolError> {
    let url = Url::parse(client_id).map_err(|e| refused(format!("not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(refused("the client_id URL must use https")),
    }
    if url.fragment().is_some() {
        return Err(refused("the client_id URL must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused(
            "the client_id URL must not carry a user or password",
        ));
    }
    if url.path() == "/" {
        return Err(refused("the client_id URL must have a path"));
    }
    // `Url` resolves dot segments, so a URL that had them no longer reads as it was sent.
    if url.as_str() != client_id {
        return Err(refused(
            "the client_id URL must be in normal form (no dot segments, lower-case scheme and host)",
        ));
    }
    if !allow_private && ip_literal(&url).is_some_and(is_forbidden) {
        return Err(refused("the client_id URL names a non-public address"));
    }
    Ok(url)
}

fn ip_literal(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Ranges no document is fetched from: RFC 6890's special-purpose blocks that are not
/// globally reachable, and IPv6's.
const FORBIDDEN_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Whether an address is one a document must not be fetched from. IPv4 addresses carried in
/// IPv6 (mapped, NAT64, 6to4) are judged by the IPv4 address they reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    let embedded = match ip {
        IpAddr::V6(v6) => embedded_v4(v6),
        IpAddr::V4(_) => None,
    };
    if let Some(v4) = embedded {
        return is_forbidden(IpAddr::V4(v4));
    }
    FORBIDDEN_RANGES.iter().any(|range| {
        range
            .parse::<IpNet>()
            .is_ok_and(|net: IpNet| net.contains(&ip))
    })
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let low = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::a.b.c.d).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low()),
        [0, 0, 0, 0, 0, 0, _, _] if s[6] != 0 => Some(low()),
        // 6to4 (2002::/16): the IPv4 address is in the second and third segments.
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// Whether a redirect hop may be followed.
pub fn hop_allowed(url: &Url, allow_private: bool) -> Result<(), &'static str> {
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err("a redirect left https"),
    }
    if !allow_private && ip_literal(url).is_some_and(is_forbidden) {
        return Err("a redirect led to a non-public address");
    }
    Ok(())
}

/// The `Cache-Control` lifetime of a document, clamped.
pub fn cache_seconds(cache_control: Option<&str>) -> i64 {
    let max_age = cache_control.and_then(|value| {
        value.split(',').find_map(|directive| {
            let (name, v) = directive.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| v.trim().trim_matches('"').parse::<i64>().ok())
                .flatten()
        })
    });
    max_age.unwrap_or(0).clamp(MIN_CACHE_S, MAX_CACHE_S)
}

/// A client as its document describes it, ready to be stored.
#[derive(Debug, Clone)]
pub struct DocumentClient {
    pub row: ClientRow,
}

/// Applies the document rules to a fetched body.
pub fn client_from_document(
    config: &Config,
    url: &str,
    body: &[u8],
    now: UnixTime,
) -> Result<DocumentClient, ProtocolError> {
    let doc: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| refused("the document is not a JSON object"))?;
    let text = |name: &str| -> Result<Option<&str>, ProtocolError> {
        match doc.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(refused(format!("{name} must be a string"))),
        }
    };
    let list = |name: &str| -> Result<Option<Vec<String>>, ProtocolError> {
        match doc.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| refused(format!("{name} must be an array of strings"))),
            Some(_) => Err(refused(format!("{name} must be an array of strings"))),
        }
    };
    if text("client_id")? != Some(url) {
        return Err(refused(
            "its client_id does not equal the URL it was fetched from",
        ));
    }
    if doc.contains_key("client_secret") || doc.contains_key("client_secret_expires_at") {
        return Err(refused("a published document cannot carry a client secret"));
    }
    let method = text("token_endpoint_auth_method")?.unwrap_or(AUTH_NONE);
    if method != AUTH_NONE {
        return Err(refused(format!(
            "token_endpoint_auth_method {method:?} is not supported: a document client is public (none)"
        )));
    }
    let redirect_uris = list("redirect_uris")?.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(refused("redirect_uris is missing or empty"));
    }
    for uri in &redirect_uris {
        validate_redirect_uri(uri, true).map_err(refused)?;
    }
    let grant_types = match list("grant_types")? {
        Some(grants) => {
            if let Some(other) = grants
                .iter()
                .find(|g| !DOCUMENT_GRANTS.contains(&g.as_str()))
            {
                return Err(refused(format!(
                    "grant type {other:?} is not available to a document client (authorization_code, refresh_token)"
                )));
            }
            if !grants.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) {
                return Err(refused("grant_types must include authorization_code"));
            }
            grants
        }
        // RFC 7591 defaults to the code grant alone; refresh comes with it here because every
        // authmd code-flow client rotates refresh tokens, and a document cannot be re-registered.
        None => DOCUMENT_GRANTS.iter().map(|g| (*g).to_owned()).collect(),
    };
    let host = Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let name = text("client_name")?
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(200).collect::<String>())
        .unwrap_or_else(|| host.clone());
    // The document is published for every server the client talks to, so it may name scopes
    // this one does not have: those are ignored rather than refused, and a document without
    // `scope` may ask for any scope a registered client may.
    let supported = Scopes::from_list(&scopes_supported(config));
    let scope = match text("scope")?.and_then(Scopes::parse) {
        Some(asked) => asked.intersection(&supported),
        None => supported,
    };
    let metadata: Map<String, Value> = ["client_uri", "logo_uri", "tos_uri", "policy_uri"]
        .iter()
        .filter_map(|k| doc.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .chain([("client_id_metadata_document".to_owned(), json!(true))])
        .collect();
    let application_type = match text("application_type")? {
        Some("native") => "native",
        _ => "web",
    };
    Ok(DocumentClient {
        row: ClientRow {
            id: url.to_owned(),
            name,
            secret_hash: None,
            secret_prefix: None,
            is_public: true,
            redirect_uris: serde_json::to_string(&redirect_uris).unwrap_or_default(),
            grant_types: serde_json::to_string(&grant_types).unwrap_or_default(),
            scope: scope.to_string(),
            can_introspect: false,
            token_endpoint_auth_method: AUTH_NONE.to_owned(),
            application_type: application_type.to_owned(),
            registration_token_hash: None,
            metadata: Value::Object(metadata).to_string(),
            created_at: now,
        },
    })
}

/// Resolves host names for the fetcher, refusing any name with a non-public address.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // Every address is checked, not just the first: the connection may use any.
            if addrs.is_empty() || addrs.iter().any(|a| is_forbidden(a.ip())) {
                return Err(format!("{host} resolves to a non-public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

struct Cached {
    /// The client, or why the document could not be used.
    answer: Result<DocumentClient, ProtocolError>,
    expires_at: UnixTime,
}

/// Fetches documents and caches them; one fetch in flight per URL.
pub struct DocumentFetcher {
    http: reqwest::Client,
    allow_private: bool,
    entries: StdMutex<HashMap<String, Arc<Mutex<Option<Cached>>>>>,
}

impl DocumentFetcher {
    pub fn new(config: &Config) -> AppResult<Self> {
        let allow_private = config.oauth.cimd.allow_private_addresses;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            match hop_allowed(attempt.url(), allow_private) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(why),
            }
        });
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(redirects)
            .no_proxy()
            .user_agent(concat!("authmd/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let ca_file = &config.oauth.cimd.ca_file;
        if !ca_file.is_empty() {
            let pem = std::fs::read(ca_file)
                .map_err(|e| AppError::internal(format!("oauth.cimd.ca_file {ca_file}: {e}")))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| AppError::internal(format!("oauth.cimd.ca_file {ca_file}: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            http: builder
                .build()
                .map_err(|e| AppError::internal(format!("the document fetcher: {e}")))?,
            allow_private,
            entries: StdMutex::new(HashMap::new()),
        })
    }

    /// The client a `client_id` URL names: from the cache, or fetched now.
    pub async fn client(
        &self,
        config: &Config,
        client_id: &str,
        now: UnixTime,
    ) -> Result<DocumentClient, ProtocolError> {
        if !config.oauth.cimd.enabled {
            return Err(ProtocolError::new(
                ErrorCode::InvalidClient,
                "this server does not accept client metadata documents as client_id",
            ));
        }
        let url = check_url(client_id, self.allow_private)?;
        let slot = self.slot(client_id, now);
        // Held across the fetch: a second request for this URL waits and reads the result.
        let mut entry = slot.lock().await;
        if let Some(cached) = entry.as_ref().filter(|c| c.expires_at > now) {
            return cached.answer.clone();
        }
        let (answer, lifetime) = match self.fetch(url).await {
            Ok((body, lifetime)) => (
                client_from_document(config, client_id, &body, now),
                lifetime,
            ),
            Err(e) => (Err(e), FAILURE_CACHE_S),
        };
        // A refusal is remembered too (briefly, for a failed fetch), so a URL that fails cannot
        // be made to cost a fetch per request.
        let lifetime = if answer.is_err() {
            lifetime.min(FAILURE_CACHE_S)
        } else {
            lifetime
        };
        *entry = Some(Cached {
            answer: answer.clone(),
            expires_at: now + lifetime,
        });
        answer
    }

    fn slot(&self, url: &str, now: UnixTime) -> Arc<Mutex<Option<Cached>>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_CACHED && !entries.contains_key(url) {
            // Drop what has expired (or is being fetched by nobody and holds nothing).
            entries.retain(|_, slot| match slot.try_lock() {
                Ok(entry) => entry.as_ref().is_some_and(|c| c.expires_at > now),
                Err(_) => true,
            });
            if entries.len() >= MAX_CACHED {
                entries.clear();
            }
        }
        entries.entry(url.to_owned()).or_default().clone()
    }

    async fn fetch(&self, url: Url) -> Result<(Vec<u8>, i64), ProtocolError> {
        let shown = url.to_string();
        let failed = |cause: String| {
            tracing::warn!(url = %shown, cause = %cause, "fetching a client metadata document failed");
            refused(format!("{shown} could not be fetched: {cause}"))
        };
        let mut resp = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| failed(describe(&e)))?;
        if !resp.status().is_success() {
            return Err(failed(format!("it answered {}", resp.status())));
        }
        if resp
            .content_length()
            .is_some_and(|n| n as usize > MAX_DOCUMENT_BYTES)
        {
            return Err(failed(format!(
                "it is larger than {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        let lifetime = cache_seconds(
            resp.headers()
                .get(reqwest::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| failed(describe(&e)))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(failed(format!(
                    "it is larger than {MAX_DOCUMENT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, lifetime))
    }
}

/// What went wrong with a fetch, in words a person can act on; reqwest's own message nests its
/// causes, and the innermost (the resolver's refusal, the redirect policy's) is the useful one.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", FETCH_TIMEOUT.as_secs());
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_forbidden_in_every_form() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "224.0.0.1",
        ] {
            assert!(is_forbidden(ip(bad)), "{bad} must be forbidden");
        }
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(ip(good)), "{good} is public");
        }
    }

    #[test]
    fn client_id_urls_are_checked_before_any_fetch() {
        assert!(check_url("https://app.example/client.json", false).is_ok());
        for (bad, why) in [
            ("http://app.example/client.json", "https"),
            ("https://app.example/", "path"),
            ("https://app.example", "path"),
            ("https://app.example/a#f", "fragment"),
            ("https://u:p@app.example/c", "user"),
            ("https://app.example/a/../c", "normal form"),
            ("https://127.0.0.1/c", "non-public"),
            ("https://[::1]/c", "non-public"),
            ("https://[::ffff:a00:1]/c", "non-public"),
        ] {
            let err = check_url(bad, false).unwrap_err();
            assert!(err.description.contains(why), "{bad}: {}", err.description);
        }
        // Allowed for tests and closed networks.
        assert!(check_url("http://127.0.0.1:8080/c", true).is_ok());
    }

    #[test]
    fn redirect_hops_are_checked_like_the_first_url() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(hop_allowed(&u("https://cdn.example/c.json"), false).is_ok());
        assert!(hop_allowed(&u("http://cdn.example/c.json"), false).is_err());
        assert!(hop_allowed(&u("https://169.254.169.254/latest"), false).is_err());
        assert!(hop_allowed(&u("https://[fd00::1]/x"), false).is_err());
        assert!(hop_allowed(&u("http://127.0.0.1/x"), true).is_ok());
    }

    #[test]
    fn cache_lifetime_is_clamped() {
        assert_eq!(cache_seconds(None), MIN_CACHE_S);
        assert_eq!(cache_seconds(Some("no-store")), MIN_CACHE_S);
        assert_eq!(cache_seconds(Some("public, max-age=600")), 600);
        assert_eq!(cache_seconds(Some("max-age=5")), MIN_CACHE_S);
        assert_eq!(cache_seconds(Some("max-age=99999999")), MAX_CACHE_S);
        assert_eq!(cache_seconds(Some("max-age=junk")), MIN_CACHE_S);
    }

    #[test]
    fn document_rules() {
        let config = Config::defaults();
        let url = "https://app.example/client.json";
        let doc = |v: Value| client_from_document(&config, url, v.to_string().as_bytes(), 0);
        let ok = doc(json!({
            "client_id": url,
            "client_name": "Example",
            "redirect_uris": ["http://127.0.0.1/cb", "cursor://x/cb"],
            "scope": "api.read unknown.scope",
        }))
        .unwrap();
        assert!(ok.row.is_public);
        assert_eq!(ok.row.name, "Example");
        assert_eq!(ok.row.scope, "api.read");
        assert_eq!(
            ok.row.grant_types,
            r#"["authorization_code","refresh_token"]"#
        );
        for (bad, why) in [
            (
                json!({"client_id": "https://other.example/c", "redirect_uris": ["https://a.example/cb"]}),
                "does not equal",
            ),
            (json!({"client_id": url}), "redirect_uris"),
            (
                json!({"client_id": url, "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
                "public",
            ),
            (
                json!({"client_id": url, "redirect_uris": ["https://a.example/cb"], "client_secret": "x"}),
                "secret",
            ),
            (
                json!({"client_id": url, "redirect_uris": ["https://a.example/cb"], "grant_types": ["authorization_code", "client_credentials"]}),
                "client_credentials",
            ),
            (
                json!({"client_id": url, "redirect_uris": ["javascript:alert(1)"]}),
                "not allowed",
            ),
            (
                json!({"client_id": url, "redirect_uris": "https://a.example/cb"}),
                "array",
            ),
        ] {
            let err = doc(bad.clone()).unwrap_err();
            assert!(err.description.contains(why), "{bad}: {}", err.description);
        }
        let nameless =
            doc(json!({"client_id": url, "redirect_uris": ["https://a.example/cb"]})).unwrap();
        assert_eq!(nameless.row.name, "app.example");
        assert!(client_from_document(&config, url, b"[1]", 0).is_err());
    }
}
