//! Discovery documents, built once from the live configuration: RFC 8414 authorization-server
//! metadata with the `agent_auth` block, RFC 9728 protected-resource metadata, and `/auth.md`.
//! Only what the configuration enables is advertised; every URL derives from `server.issuer`.

use askama::Template;
use serde_json::{json, Map, Value};

use crate::config::{Config, RegistrationMode};

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// auth.md v0.4+: the agent polls the token endpoint with its claim token until a person has
/// confirmed the claim's `user_code` (RFC 8628 §3.5 answers; a profile URN so it never collides
/// with the device grant).
pub const GRANT_AGENT_CLAIM: &str = "urn:workos:agent-auth:grant-type:claim";
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
pub const ID_JAG_GRANT_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
/// The `events` member a provider's logout token carries (OpenID Back-Channel Logout).
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The paths authmd serves, relative to the issuer.
pub mod paths {
    pub const AUTHORIZE: &str = "/oauth2/authorize";
    pub const TOKEN: &str = "/oauth2/token";
    pub const REVOKE: &str = "/oauth2/revoke";
    pub const INTROSPECT: &str = "/oauth2/introspect";
    pub const REGISTER: &str = "/oauth2/register";
    pub const DEVICE_AUTHORIZATION: &str = "/oauth2/device";
    pub const DEVICE_PAGE: &str = "/device";
    pub const JWKS: &str = "/.well-known/jwks.json";
    pub const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
    pub const PR_METADATA: &str = "/.well-known/oauth-protected-resource";
    pub const AUTH_MD: &str = "/auth.md";
    pub const OIDC_METADATA: &str = "/.well-known/openid-configuration";
    pub const USERINFO: &str = "/userinfo";
    pub const OPENAPI: &str = "/openapi.json";
    pub const AGENT_AUTH: &str = "/agent/auth";
    pub const AGENT_CLAIM: &str = "/agent/auth/claim";
    pub const AGENT_CLAIM_COMPLETE: &str = "/agent/auth/claim/complete";
    pub const AGENT_REVOKE: &str = "/agent/auth/revoke";
    pub const AGENT_EVENTS: &str = "/agent/event/notify";
    pub const AGENT_IDENTITY: &str = "/agent/identity";
    pub const IDENTITY_CLAIM: &str = "/agent/identity/claim";
    /// Where a signed-in person types a v0.6 claim's `user_code`.
    pub const CLAIM_PAGE: &str = "/claim";
    pub const LOGIN: &str = "/login";
}

/// The discovery documents, rendered once at start-up (the configuration does not change while
/// the server runs), so serving them costs no work per request.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub authorization_server: Value,
    /// `/.well-known/openid-configuration`, when OpenID Connect is on.
    pub openid_configuration: Option<Value>,
    /// `(path, document)`: the bare RFC 9728 path for the default resource, then the
    /// path-suffixed location of every configured resource that has a path.
    pub protected_resources: Vec<(String, Value)>,
    pub auth_md: String,
}

impl Discovery {
    pub fn build(config: &Config) -> Self {
        Self {
            authorization_server: authorization_server_metadata(config),
            openid_configuration: config
                .oauth
                .oidc
                .enabled
                .then(|| openid_configuration(config)),
            protected_resources: protected_resource_documents(config),
            auth_md: render_auth_md(config),
        }
    }
}

fn url(config: &Config, path: &str) -> String {
    format!("{}{path}", config.server.issuer)
}

/// Every scope authmd can grant: the OAuth scopes plus, while agents can register, the agent
/// scopes, first mention first.
pub fn scopes_supported(config: &Config) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    let agents = !identity_types(config).is_empty();
    let agent_scopes = config
        .agent
        .pre_claim_scopes
        .iter()
        .chain(&config.agent.post_claim_scopes)
        .filter(|_| agents);
    for s in config.oauth.scopes.iter().chain(agent_scopes) {
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    scopes
}

/// Identity types accepted with this configuration: `anonymous` and `identity_assertion` on
/// both paths, `service_auth` at `/agent/identity` (auth.md v0.6).
pub fn identity_types(config: &Config) -> Vec<&'static str> {
    let mut types = Vec::new();
    if config.agent.anonymous_enabled {
        types.push("anonymous");
    }
    if !assertion_types(config).is_empty() {
        types.push("identity_assertion");
    }
    if config.agent.service_auth_enabled {
        types.push("service_auth");
    }
    types
}

/// Whether anything can be claimed through the v0.6 ceremony (and so polled with the claim
/// grant).
pub fn claim_grant_enabled(config: &Config) -> bool {
    config.agent.anonymous_enabled
        || config.agent.service_auth_enabled
        || !config.agent.trusted_providers.is_empty()
}

pub fn assertion_types(config: &Config) -> Vec<&'static str> {
    let mut types = Vec::new();
    if config.agent.verified_email_enabled {
        types.push("verified_email");
    }
    if !config.agent.trusted_providers.is_empty() {
        types.push(ID_JAG_TOKEN_TYPE);
    }
    types
}

pub const CREDENTIAL_TYPES: [&str; 3] = ["api_key", "access_token", "identity_assertion"];

/// The `agent_auth` block; `None` when no agent registration is enabled (an endpoint that
/// would only refuse is not advertised).
fn agent_auth_block(config: &Config) -> Option<Value> {
    let types = identity_types(config);
    if types.is_empty() {
        return None;
    }
    let mut block = Map::new();
    block.insert("skill".into(), json!(url(config, paths::AUTH_MD)));
    // v0.6 names (`/agent/identity`) beside the v0.1 ones (`/agent/auth`): adopters read both.
    block.insert(
        "identity_endpoint".into(),
        json!(url(config, paths::AGENT_IDENTITY)),
    );
    block.insert("register_uri".into(), json!(url(config, paths::AGENT_AUTH)));
    if claim_grant_enabled(config) {
        block.insert(
            "claim_endpoint".into(),
            json!(url(config, paths::IDENTITY_CLAIM)),
        );
    }
    // A v0.1 claim completes an anonymous or a verified-email registration.
    if config.agent.anonymous_enabled || config.agent.verified_email_enabled {
        block.insert("claim_uri".into(), json!(url(config, paths::AGENT_CLAIM)));
    }
    // Where an agent revokes its own credential (RFC 7009). A provider's logout and event
    // tokens go to `events_endpoint`.
    block.insert("revocation_uri".into(), json!(url(config, paths::REVOKE)));
    block.insert("identity_types_supported".into(), json!(types));
    block.insert("credential_types_supported".into(), json!(CREDENTIAL_TYPES));
    let assertions = assertion_types(config);
    if !assertions.is_empty() {
        block.insert("assertion_types_supported".into(), json!(assertions));
    }
    // Per-type detail, keyed by identity type.
    if config.agent.anonymous_enabled {
        block.insert(
            "anonymous".into(),
            json!({
                "credential_types_supported": CREDENTIAL_TYPES,
                "scopes": config.agent.pre_claim_scopes,
                "post_claim_scopes": config.agent.post_claim_scopes,
            }),
        );
    }
    if !assertions.is_empty() {
        block.insert(
            "identity_assertion".into(),
            json!({
                "assertion_types_supported": assertions,
                "credential_types_supported": CREDENTIAL_TYPES,
            }),
        );
    }
    // Provider revocation: the v0.1 logout token at `revocation_uri`, and the v0.3+ Security
    // Event Token at `events_endpoint`; both only with a provider to send them.
    let events: Vec<&str> = if config.agent.trusted_providers.is_empty() {
        vec![]
    } else {
        block.insert(
            "events_endpoint".into(),
            json!(url(config, paths::AGENT_EVENTS)),
        );
        vec![
            LOGOUT_EVENT,
            crate::domain::providers::IDENTITY_REVOKED_EVENT,
        ]
    };
    block.insert("events_supported".into(), json!(events));
    Some(Value::Object(block))
}

/// The grants the token endpoint runs; the device grant when it is on.
pub fn grant_types_supported(config: &Config) -> Vec<&'static str> {
    let mut grants = vec![
        GRANT_AUTHORIZATION_CODE,
        GRANT_REFRESH_TOKEN,
        GRANT_CLIENT_CREDENTIALS,
        GRANT_JWT_BEARER,
    ];
    if config.oauth.device.enabled {
        grants.push(GRANT_DEVICE_CODE);
    }
    if claim_grant_enabled(config) {
        grants.push(GRANT_AGENT_CLAIM);
    }
    grants
}

/// RFC 8414 metadata plus the auth.md `agent_auth` block.
pub fn authorization_server_metadata(config: &Config) -> Value {
    let client_auth = ["client_secret_basic", "client_secret_post"];
    let mut m = Map::new();
    m.insert("issuer".into(), json!(config.server.issuer));
    m.insert(
        "authorization_endpoint".into(),
        json!(url(config, paths::AUTHORIZE)),
    );
    m.insert("token_endpoint".into(), json!(url(config, paths::TOKEN)));
    m.insert("jwks_uri".into(), json!(url(config, paths::JWKS)));
    if config.oauth.device.enabled {
        m.insert(
            "device_authorization_endpoint".into(),
            json!(url(config, paths::DEVICE_AUTHORIZATION)),
        );
    }
    if config.oauth.registration != RegistrationMode::Off {
        m.insert(
            "registration_endpoint".into(),
            json!(url(config, paths::REGISTER)),
        );
    }
    let mut scopes = scopes_supported(config);
    if config.oauth.oidc.enabled {
        for s in crate::domain::oidc::SCOPES {
            if !scopes.iter().any(|known| known == s) {
                scopes.push(s.to_owned());
            }
        }
    }
    m.insert("scopes_supported".into(), json!(scopes));
    m.insert("response_types_supported".into(), json!(["code"]));
    m.insert("response_modes_supported".into(), json!(["query"]));
    m.insert(
        "grant_types_supported".into(),
        json!(grant_types_supported(config)),
    );
    m.insert(
        "token_endpoint_auth_methods_supported".into(),
        json!(["client_secret_basic", "client_secret_post", "none"]),
    );
    m.insert(
        "revocation_endpoint".into(),
        json!(url(config, paths::REVOKE)),
    );
    m.insert(
        "revocation_endpoint_auth_methods_supported".into(),
        json!(["client_secret_basic", "client_secret_post", "none"]),
    );
    m.insert(
        "introspection_endpoint".into(),
        json!(url(config, paths::INTROSPECT)),
    );
    m.insert(
        "introspection_endpoint_auth_methods_supported".into(),
        json!(client_auth),
    );
    m.insert("code_challenge_methods_supported".into(), json!(["S256"]));
    m.insert(
        "authorization_response_iss_parameter_supported".into(),
        json!(true),
    );
    m.insert(
        "service_documentation".into(),
        json!(url(config, paths::AUTH_MD)),
    );
    if config.oauth.cimd.enabled {
        m.insert("client_id_metadata_document_supported".into(), json!(true));
    }
    if !config.agent.trusted_providers.is_empty() {
        m.insert(
            "authorization_grant_profiles_supported".into(),
            json!([ID_JAG_GRANT_PROFILE]),
        );
    }
    if let Some(block) = agent_auth_block(config) {
        m.insert("agent_auth".into(), block);
    }
    Value::Object(m)
}

/// OpenID Connect Discovery 1.0: every RFC 8414 member with the same value, plus the OpenID
/// Provider fields.
pub fn openid_configuration(config: &Config) -> Value {
    let mut m = match authorization_server_metadata(config) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert(
        "userinfo_endpoint".into(),
        json!(url(config, paths::USERINFO)),
    );
    m.insert("subject_types_supported".into(), json!(["public"]));
    m.insert(
        "id_token_signing_alg_values_supported".into(),
        json!(crate::domain::oidc::ID_TOKEN_ALGS),
    );
    m.insert(
        "claims_supported".into(),
        json!(crate::domain::oidc::CLAIMS),
    );
    m.insert("claims_parameter_supported".into(), json!(false));
    m.insert("request_parameter_supported".into(), json!(false));
    m.insert("request_uri_parameter_supported".into(), json!(false));
    m.insert(
        "prompt_values_supported".into(),
        json!(["none", "login", "consent", "select_account"]),
    );
    Value::Object(m)
}

/// The RFC 9728 document for `resource`. Its `resource` member is the resource itself, which
/// is also the URL the document is fetched for (RFC 9728 §3.3).
pub fn protected_resource_metadata(config: &Config, resource: &str) -> Value {
    json!({
        "resource": resource,
        "authorization_servers": [config.server.issuer],
        "scopes_supported": scopes_supported(config),
        "bearer_methods_supported": ["header"],
    })
}

/// Where `resource` must publish its RFC 9728 document: `https://h/p` at
/// `https://h/.well-known/oauth-protected-resource/p`, `https://h` at the bare path.
pub fn protected_resource_metadata_url(resource: &str) -> Option<String> {
    let url = url::Url::parse(resource).ok()?;
    let path = url.path().trim_end_matches('/');
    Some(format!(
        "{}{}{path}",
        url.origin().ascii_serialization(),
        paths::PR_METADATA
    ))
}

/// The RFC 9728 documents authmd serves itself. A document describes the URL it is fetched
/// for (RFC 9728 §3.3), so authmd serves only its own origin's: the root describes authmd's own
/// API (the issuer), unless a configured resource is that origin itself; a configured resource
/// on authmd's origin is at its path-suffixed location. A resource on another origin serves its
/// own document (`authmd resource metadata URL` prints it).
fn protected_resource_documents(config: &Config) -> Vec<(String, Value)> {
    let issuer = url::Url::parse(&config.server.issuer).ok();
    let origin = issuer.as_ref().map(|u| u.origin());
    let mut root = config.server.issuer.clone();
    let mut docs = Vec::new();
    for resource in &config.server.resources {
        let Ok(parsed) = url::Url::parse(resource) else {
            continue;
        };
        if Some(parsed.origin()) != origin {
            continue;
        }
        let path = parsed.path().trim_end_matches('/');
        if path.is_empty() {
            root = resource.clone();
            continue;
        }
        let location = format!("{}{path}", paths::PR_METADATA);
        if !docs.iter().any(|(p, _)| *p == location) {
            docs.push((location, protected_resource_metadata(config, resource)));
        }
    }
    docs.insert(
        0,
        (
            paths::PR_METADATA.to_owned(),
            protected_resource_metadata(config, &root),
        ),
    );
    docs
}

#[derive(Template)]
#[template(path = "auth.md")]
struct AuthMdTemplate<'a> {
    issuer: &'a str,
    resource: &'a str,
    anonymous: bool,
    verified_email: bool,
    id_jag: bool,
    providers: Vec<&'a str>,
    pre_claim_scopes: String,
    post_claim_scopes: String,
    registration_open: bool,
    cimd: bool,
    oidc: bool,
    device: bool,
    claim_ttl_s: i64,
    assertion_ttl_s: i64,
    service_auth: bool,
    claim_email: bool,
    user_code_ttl_s: i64,
    max_auth_age_s: i64,
    signup: bool,
    max_ttl_s: i64,
    personal_prefix: &'a str,
}

/// The agent-facing guide, listing only the flows this configuration enables.
pub fn render_auth_md(config: &Config) -> String {
    let template = AuthMdTemplate {
        issuer: &config.server.issuer,
        resource: config.default_resource(),
        anonymous: config.agent.anonymous_enabled,
        verified_email: config.agent.verified_email_enabled,
        id_jag: !config.agent.trusted_providers.is_empty(),
        providers: config
            .agent
            .trusted_providers
            .iter()
            .map(|p| p.issuer.as_str())
            .collect(),
        pre_claim_scopes: config.agent.pre_claim_scopes.join(" "),
        post_claim_scopes: config.agent.post_claim_scopes.join(" "),
        registration_open: config.oauth.registration != RegistrationMode::Off,
        cimd: config.oauth.cimd.enabled,
        oidc: config.oauth.oidc.enabled,
        device: config.oauth.device.enabled,
        claim_ttl_s: config.agent.claim_ttl_s,
        assertion_ttl_s: config.agent.identity_assertion_ttl_s,
        service_auth: config.agent.service_auth_enabled,
        claim_email: config.agent.claim_email_enabled,
        user_code_ttl_s: config.agent.user_code_ttl_s,
        max_auth_age_s: config.agent.id_jag_max_auth_age_s,
        signup: config.accounts.signup != crate::config::Signup::Off,
        max_ttl_s: config.tokens.personal_max_ttl_s,
        personal_prefix: &config.tokens.prefixes.personal,
    };
    template
        .render()
        .expect("auth.md template renders (checked at compile time and by tests)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_derive_from_issuer() {
        let config =
            Config::from_toml_overlay("[server]\nissuer = \"https://auth.example.com\"").unwrap();
        let m = authorization_server_metadata(&config);
        assert_eq!(m["issuer"], "https://auth.example.com");
        assert_eq!(m["token_endpoint"], "https://auth.example.com/oauth2/token");
        assert_eq!(
            m["agent_auth"]["register_uri"],
            "https://auth.example.com/agent/auth"
        );
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        // Both generations' names.
        assert_eq!(
            m["agent_auth"]["identity_endpoint"],
            "https://auth.example.com/agent/identity"
        );
        assert_eq!(
            m["agent_auth"]["claim_endpoint"],
            "https://auth.example.com/agent/identity/claim"
        );
        assert_eq!(
            m["agent_auth"]["claim_uri"],
            "https://auth.example.com/agent/auth/claim"
        );
        assert!(m["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(GRANT_AGENT_CLAIM)));
        assert!(m["agent_auth"]["identity_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("service_auth")));
    }

    #[test]
    fn disabled_flows_are_not_advertised() {
        let config = Config::from_toml_overlay(
            "[agent]\nanonymous_enabled = false\nverified_email_enabled = false\nservice_auth_enabled = false\n[oauth]\nregistration = \"off\"",
        )
        .unwrap();
        let m = authorization_server_metadata(&config);
        assert!(m.get("agent_auth").is_none(), "{m}");
        assert!(!m["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(GRANT_AGENT_CLAIM)));
        assert!(m["agent_auth"].get("anonymous").is_none());
        assert!(m.get("registration_endpoint").is_none());
        assert!(m.get("authorization_grant_profiles_supported").is_none());
        let md = render_auth_md(&config);
        assert!(!md.contains("\"type\": \"anonymous\""), "{md}");
        assert!(!md.contains("verified_email"), "{md}");
        assert!(!md.contains("service_auth"), "{md}");
        assert!(!md.contains("/oauth2/register"), "{md}");
        assert!(md.contains("Client ID Metadata Document"), "{md}");
    }

    #[test]
    fn documents_are_advertised_only_when_enabled() {
        let on = Config::defaults();
        assert_eq!(
            authorization_server_metadata(&on)["client_id_metadata_document_supported"],
            json!(true)
        );
        let off = Config::from_toml_overlay(
            "[oauth]\nregistration = \"off\"\n[oauth.cimd]\nenabled = false",
        )
        .unwrap();
        let m = authorization_server_metadata(&off);
        assert!(m.get("client_id_metadata_document_supported").is_none());
        assert!(!render_auth_md(&off).contains("Apps (OAuth clients)"));
    }

    #[test]
    fn id_jag_advertised_with_trusted_provider() {
        let config = Config::from_toml_overlay(
            "[agent]\ntrusted_providers = [{ issuer = \"https://idp.example\", jwks_uri = \"https://idp.example/jwks\" }]",
        )
        .unwrap();
        let m = authorization_server_metadata(&config);
        assert_eq!(
            m["authorization_grant_profiles_supported"],
            json!([ID_JAG_GRANT_PROFILE])
        );
        assert!(m["agent_auth"]["assertion_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(ID_JAG_TOKEN_TYPE)));
        assert!(render_auth_md(&config).contains("https://idp.example"));
    }

    #[test]
    fn each_document_describes_the_url_it_is_fetched_for() {
        let config = Config::from_toml_overlay(
            "[server]\nissuer = \"https://auth.example\"\nresources = [\"https://api.example.com/v1\", \"https://auth.example/mcp\"]",
        )
        .unwrap();
        let docs = protected_resource_documents(&config);
        // The root is authmd's own API; only same-origin resources are served here.
        assert_eq!(docs[0].0, "/.well-known/oauth-protected-resource");
        assert_eq!(docs[0].1["resource"], "https://auth.example");
        assert_eq!(docs[1].0, "/.well-known/oauth-protected-resource/mcp");
        assert_eq!(docs[1].1["resource"], "https://auth.example/mcp");
        assert_eq!(docs.len(), 2);
        // A resource that is authmd's origin itself is the root's resource.
        let config = Config::from_toml_overlay(
            "[server]\nissuer = \"https://auth.example\"\nresources = [\"https://auth.example/\"]",
        )
        .unwrap();
        let docs = protected_resource_documents(&config);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].1["resource"], "https://auth.example/");
        assert_eq!(
            protected_resource_metadata_url("https://api.example.com/v1/").as_deref(),
            Some("https://api.example.com/.well-known/oauth-protected-resource/v1")
        );
        assert_eq!(
            protected_resource_metadata_url("https://api.example.com:8443").as_deref(),
            Some("https://api.example.com:8443/.well-known/oauth-protected-resource")
        );
    }
}
