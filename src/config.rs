//! Typed configuration: `config/default.toml` (compiled in) ← `--config FILE` ← environment.
//!
//! Every struct denies unknown fields and no field has a serde default, so the compiled-in
//! `default.toml` must name every key: a key added here and forgotten there fails the unit test
//! below, and a typo in an operator's file fails start-up with the key's dotted name.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

/// The built-in defaults, the base layer of every configuration.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Prefix of the environment variables that override configuration keys.
const ENV_PREFIX: &str = "AUTHMD_";

/// Keys that no longer exist, and what replaced them: naming the replacement beats a bare
/// "unknown key" for an operator upgrading.
const REMOVED_KEYS: [(&str, &str); 5] = [
    (
        "agent.api_key_prefix",
        "moved: the prefix of agent API keys is tokens.prefixes.api_key",
    ),
    (
        "oauth.client_id_metadata_documents",
        "removed: Client ID Metadata Documents are configured in [oauth.cimd] (enabled, allow_private_addresses, ca_file)",
    ),
    (
        "server.trust_forwarded_for",
        "removed: list the proxies whose X-Forwarded-For hops to believe in server.trusted_proxies",
    ),
    (
        "rate_limit.login_per_ip",
        "removed: the login form counts failures only, see rate_limit.login_failures_per_ip",
    ),
    (
        "rate_limit.login_global",
        "removed: the login form counts failures only, see rate_limit.login_failures_per_account",
    ),
];

fn removed_key(table: &toml::Table) -> Option<ConfigError> {
    REMOVED_KEYS.iter().find_map(|(dotted, why)| {
        let (section, key) = dotted.split_once('.')?;
        table
            .get(section)?
            .as_table()?
            .contains_key(key)
            .then(|| ConfigError::new(*dotted, *why))
    })
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub mail: MailConfig,
    pub oauth: OAuthConfig,
    pub agent: AgentConfig,
    pub rate_limit: RateLimitConfig,
    pub admin: AdminConfig,
    pub tokens: TokensConfig,
    pub accounts: AccountsConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub issuer: String,
    pub resources: Vec<String>,
    pub max_body_bytes: usize,
    pub workers: usize,
    /// Proxies whose `X-Forwarded-For` hops are believed, as written (CIDR or single address).
    pub trusted_proxies: Vec<String>,
    /// `trusted_proxies`, parsed once at load.
    #[serde(skip)]
    pub trusted_proxy_nets: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub connection_timeout_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    pub access_log: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    Smtp,
    File,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    pub transport: MailTransport,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    pub smtp_username: String,
    pub smtp_password: String,
    pub from: String,
    pub file_dir: PathBuf,
}

// The SMTP password must never reach a log line, so Debug is written by hand.
impl fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailConfig")
            .field("transport", &self.transport)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_tls", &self.smtp_tls)
            .field("smtp_username", &self.smtp_username)
            .field("smtp_password", &"<redacted>")
            .field("from", &self.from)
            .field("file_dir", &self.file_dir)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Open,
    Token,
    Off,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    pub scopes: Vec<String>,
    pub registration: RegistrationMode,
    pub initial_access_token: String,
    pub cimd: CimdConfig,
    pub oidc: OidcConfig,
    pub device: DeviceConfig,
}

/// RFC 8628 device authorization grant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub enabled: bool,
    /// Lifetime of a device code and its user code, seconds.
    pub code_ttl_s: i64,
    /// Seconds a device must wait between polls (raised by 5 on each `slow_down`).
    pub interval_s: i64,
}

/// OpenID Connect for the code flow.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub enabled: bool,
}

/// Client ID Metadata Documents: an `https` URL as `client_id`, fetched to learn the client.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CimdConfig {
    pub enabled: bool,
    /// Fetch from private, loopback and link-local addresses, and over plain `http` (tests and
    /// closed networks only: on an open network it lets any caller make authmd reach inside).
    pub allow_private_addresses: bool,
    /// A PEM file of extra root certificates trusted when fetching documents (an internal CA
    /// of a closed network); empty: the public web roots only.
    pub ca_file: String,
}

impl fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("scopes", &self.scopes)
            .field("registration", &self.registration)
            .field("initial_access_token", &"<redacted>")
            .field("cimd", &self.cimd)
            .field("oidc", &self.oidc)
            .field("device", &self.device)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedProvider {
    pub issuer: String,
    pub jwks_uri: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub anonymous_enabled: bool,
    pub verified_email_enabled: bool,
    pub pre_claim_scopes: Vec<String>,
    pub post_claim_scopes: Vec<String>,
    pub trusted_providers: Vec<TrustedProvider>,
    pub claim_ttl_s: i64,
    pub identity_assertion_ttl_s: i64,
    pub max_assertion_lifetime_s: i64,
    pub jwks_min_refetch_s: i64,
    pub service_auth_enabled: bool,
    pub user_code_ttl_s: i64,
    pub claim_poll_interval_s: i64,
    pub claim_email_enabled: bool,
    pub id_jag_max_auth_age_s: i64,
    pub default_credential_type: DefaultCredential,
    pub unclaimed_credential_ttl_s: UnclaimedTtl,
    pub claim_otp_delivery: OtpDelivery,
}

/// What `/agent/auth` issues when the request names no `requested_credential_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultCredential {
    ApiKey,
    AccessToken,
    IdentityAssertion,
}

impl DefaultCredential {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::AccessToken => "access_token",
            Self::IdentityAssertion => "identity_assertion",
        }
    }
}

/// `agent.unclaimed_credential_ttl_s`: `"claim_window"` or a number of seconds (0: until
/// revoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum UnclaimedTtl {
    Seconds(i64),
    Named(ClaimWindow),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimWindow {
    ClaimWindow,
}

impl AgentConfig {
    /// When the credentials of an anonymous registration made at `created_at` stop working
    /// unless a person claims it first; `None`: not before they are revoked.
    pub fn unclaimed_credentials_expire(&self, created_at: i64) -> Option<i64> {
        match self.unclaimed_credential_ttl_s {
            UnclaimedTtl::Named(ClaimWindow::ClaimWindow) => {
                Some(created_at.saturating_add(self.claim_ttl_s))
            }
            UnclaimedTtl::Seconds(0) => None,
            UnclaimedTtl::Seconds(s) => Some(created_at.saturating_add(s)),
        }
    }
}

/// How the one-time code of a v0.1 claim reaches the agent's person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtpDelivery {
    /// The email links to a page that shows the code (the page needs the emailed link).
    Page,
    /// The code is in the email itself.
    Email,
}

/// Who may open an account on `/signup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signup {
    Off,
    Open,
    EmailVerified,
}

/// `GET /metrics`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub token: String,
}

impl fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("enabled", &self.enabled)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    pub signup: Signup,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub window_s: i64,
    pub agent_auth_per_ip: u32,
    pub agent_auth_global: u32,
    pub claim_per_ip: u32,
    pub claim_global: u32,
    pub otp_per_ip: u32,
    pub otp_global: u32,
    pub register_per_ip: u32,
    pub register_global: u32,
    pub tokens_per_ip: u32,
    pub tokens_global: u32,
    pub signup_per_ip: u32,
    pub signup_global: u32,
    pub login_failure_window_s: i64,
    pub login_failures_per_account: u32,
    pub login_failures_per_ip: u32,
    pub mail_per_recipient: u32,
    pub client_auth_failures: u32,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub token: String,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.token.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        };
        f.debug_struct("AdminConfig")
            .field("token", &token)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessTokenFormat {
    Opaque,
    Jwt,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    pub access_token_format: AccessTokenFormat,
    pub access_token_ttl_s: i64,
    pub refresh_token_ttl_s: i64,
    pub refresh_grace_s: i64,
    pub authorization_code_ttl_s: i64,
    pub personal_max_ttl_s: i64,
    pub prefixes: TokenPrefixes,
}

/// The readable prefixes of the secrets whose prefix a deployment may choose.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPrefixes {
    pub personal: String,
    pub api_key: String,
    pub claim: String,
}

/// Prefixes authmd keeps for itself; a configured prefix may not be one of them.
pub const FIXED_PREFIXES: [&str; 9] = [
    "at_", "rt_", "ac_", "dc_", "cv_", "cs_", "rat_", "ses_", "sgn_",
];

/// A configuration problem, always naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Which backend a `database.url` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(ConfigError::new(
                    "database.url",
                    "sqlite:// URL has no path",
                ));
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else {
            Err(ConfigError::new(
                "database.url",
                "must start with sqlite:// or postgres://",
            ))
        }
    }
}

impl Config {
    /// Defaults ← optional file ← `AUTHMD_<SECTION>__<KEY>` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = parse_table(DEFAULT_TOML, "config/default.toml")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
            })?;
            let overlay = parse_table(&text, &path.display().to_string())?;
            merge(&mut table, overlay);
        }
        apply_env(&mut table, env)?;
        Self::from_table(table)
    }

    /// Only the compiled-in defaults: what tests start from.
    pub fn defaults() -> Self {
        Self::load(None, std::iter::empty()).expect("config/default.toml is valid (unit-tested)")
    }

    /// Parses a TOML document on top of the defaults (used by tests and `--config`).
    pub fn from_toml_overlay(text: &str) -> Result<Self, ConfigError> {
        let mut table = parse_table(DEFAULT_TOML, "config/default.toml")?;
        merge(&mut table, parse_table(text, "overlay")?);
        Self::from_table(table)
    }

    fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        if let Some(err) = removed_key(&table) {
            return Err(err);
        }
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                let message = e.inner().to_string();
                // An unknown key is reported by serde on its parent; name the key itself.
                // serde_path_to_error's path may or may not end with the unknown field already.
                match unknown_field_name(&message) {
                    Some(field) if key == "." => ConfigError::new(field, "unknown key"),
                    Some(field) if key == field || key.ends_with(&format!(".{field}")) => {
                        ConfigError::new(key, "unknown key")
                    }
                    Some(field) => ConfigError::new(format!("{key}.{field}"), "unknown key"),
                    None => ConfigError::new(key, message),
                }
            })?;
        config.prepare()?;
        Ok(config)
    }

    /// Derives what is computed from other keys (the parsed `server.trusted_proxies`) and
    /// validates; for a configuration built or changed in code rather than read from TOML.
    pub fn prepare(&mut self) -> Result<(), ConfigError> {
        self.server.trusted_proxy_nets = parse_proxies(&self.server.trusted_proxies)?;
        self.validate()
    }

    /// Checks what types alone cannot: URLs, ranges, combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.oauth.cimd.ca_file.is_empty() {
            let pem = std::fs::read_to_string(&self.oauth.cimd.ca_file).map_err(|e| {
                ConfigError::new("oauth.cimd.ca_file", format!("cannot be read: {e}"))
            })?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(ConfigError::new(
                    "oauth.cimd.ca_file",
                    "holds no PEM certificate",
                ));
            }
        }
        if !(60..=86_400).contains(&self.oauth.device.code_ttl_s) {
            return Err(ConfigError::new(
                "oauth.device.code_ttl_s",
                "must be between 60 and 86400 seconds",
            ));
        }
        if !(1..=60).contains(&self.oauth.device.interval_s) {
            return Err(ConfigError::new(
                "oauth.device.interval_s",
                "must be between 1 and 60 seconds",
            ));
        }
        let issuer = Url::parse(&self.server.issuer)
            .map_err(|e| ConfigError::new("server.issuer", format!("not a URL: {e}")))?;
        if !matches!(issuer.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                "server.issuer",
                "must be an http or https URL",
            ));
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(ConfigError::new(
                "server.issuer",
                "must not have a query or fragment",
            ));
        }
        if self.server.issuer.ends_with('/') {
            return Err(ConfigError::new("server.issuer", "must not end with '/'"));
        }
        for (i, resource) in self.server.resources.iter().enumerate() {
            let key = format!("server.resources[{i}]");
            let url = Url::parse(resource)
                .map_err(|e| ConfigError::new(key.clone(), format!("not an absolute URI: {e}")))?;
            if url.fragment().is_some() {
                return Err(ConfigError::new(key, "must not have a fragment (RFC 8707)"));
            }
        }
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::new(
                "server.max_body_bytes",
                "must be at least 1024",
            ));
        }
        DatabaseUrl::parse(&self.database.url)?;
        if self.database.connection_timeout_s == 0 {
            return Err(ConfigError::new(
                "database.connection_timeout_s",
                "must be positive",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::new("log.level", e.to_string()))?;
        if self.mail.from.parse::<MailboxCheck>().is_err() {
            return Err(ConfigError::new(
                "mail.from",
                "must be an address like \"Name <a@b>\"",
            ));
        }
        for (key, scopes) in [
            ("oauth.scopes", &self.oauth.scopes),
            ("agent.pre_claim_scopes", &self.agent.pre_claim_scopes),
            ("agent.post_claim_scopes", &self.agent.post_claim_scopes),
        ] {
            if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
                return Err(ConfigError::new(
                    key,
                    format!("{bad:?} is not a valid scope"),
                ));
            }
        }
        if self.oauth.registration == RegistrationMode::Token
            && self.oauth.initial_access_token.is_empty()
        {
            return Err(ConfigError::new(
                "oauth.initial_access_token",
                "must be set when oauth.registration = \"token\"",
            ));
        }
        for (i, provider) in self.agent.trusted_providers.iter().enumerate() {
            for (field, value) in [
                ("issuer", &provider.issuer),
                ("jwks_uri", &provider.jwks_uri),
            ] {
                let key = format!("agent.trusted_providers[{i}].{field}");
                let url = Url::parse(value)
                    .map_err(|e| ConfigError::new(key.clone(), format!("not a URL: {e}")))?;
                // Keys fetched over plain http could be swapped by anyone on the path.
                if !(url.scheme() == "https" || (url.scheme() == "http" && is_loopback_host(&url)))
                {
                    return Err(ConfigError::new(
                        key,
                        "must be an https URL (http only on loopback)",
                    ));
                }
            }
        }
        for (key, value) in [
            ("agent.claim_ttl_s", self.agent.claim_ttl_s),
            ("agent.user_code_ttl_s", self.agent.user_code_ttl_s),
            (
                "agent.claim_poll_interval_s",
                self.agent.claim_poll_interval_s,
            ),
            (
                "agent.id_jag_max_auth_age_s",
                self.agent.id_jag_max_auth_age_s,
            ),
            (
                "agent.identity_assertion_ttl_s",
                self.agent.identity_assertion_ttl_s,
            ),
            ("rate_limit.window_s", self.rate_limit.window_s),
            ("tokens.access_token_ttl_s", self.tokens.access_token_ttl_s),
            (
                "tokens.refresh_token_ttl_s",
                self.tokens.refresh_token_ttl_s,
            ),
            (
                "tokens.authorization_code_ttl_s",
                self.tokens.authorization_code_ttl_s,
            ),
        ] {
            if value <= 0 {
                return Err(ConfigError::new(
                    key,
                    "must be a positive number of seconds",
                ));
            }
        }
        self.validate_prefixes()?;
        if self.metrics.enabled && self.metrics.token.is_empty() {
            return Err(ConfigError::new(
                "metrics.token",
                "is required when metrics.enabled is true (at least 32 characters)",
            ));
        }
        if let UnclaimedTtl::Seconds(s) = self.agent.unclaimed_credential_ttl_s {
            if s < 0 {
                return Err(ConfigError::new(
                    "agent.unclaimed_credential_ttl_s",
                    "must be \"claim_window\", 0 (until revoked) or a positive number of seconds",
                ));
            }
        }
        if self.tokens.personal_max_ttl_s < 0 {
            return Err(ConfigError::new(
                "tokens.personal_max_ttl_s",
                "must be 0 (no maximum) or a positive number of seconds",
            ));
        }
        // A short bearer secret can be guessed; 32 characters is 190 bits and more of base64.
        for (key, secret) in [
            ("admin.token", &self.admin.token),
            (
                "oauth.initial_access_token",
                &self.oauth.initial_access_token,
            ),
            ("metrics.token", &self.metrics.token),
        ] {
            if !secret.is_empty() && secret.chars().count() < MIN_SECRET_CHARS {
                return Err(ConfigError::new(
                    key,
                    format!("must be at least {MIN_SECRET_CHARS} characters"),
                ));
            }
        }
        for (key, value) in [
            (
                "agent.max_assertion_lifetime_s",
                self.agent.max_assertion_lifetime_s,
            ),
            (
                "rate_limit.login_failure_window_s",
                self.rate_limit.login_failure_window_s,
            ),
        ] {
            if value <= 0 {
                return Err(ConfigError::new(
                    key,
                    "must be a positive number of seconds",
                ));
            }
        }
        if self.agent.jwks_min_refetch_s < 0 {
            return Err(ConfigError::new(
                "agent.jwks_min_refetch_s",
                "must not be negative",
            ));
        }
        parse_proxies(&self.server.trusted_proxies)?;
        if self.tokens.refresh_grace_s < 0 {
            return Err(ConfigError::new(
                "tokens.refresh_grace_s",
                "must not be negative",
            ));
        }
        Ok(())
    }

    /// Each configurable prefix is `[a-z][a-z0-9]{1,7}_` and differs from the others and from
    /// authmd's own: the prefix alone decides what kind of secret a presented string is. As
    /// every prefix ends in `_` and `_` appears nowhere before it, two distinct prefixes never
    /// start one another.
    fn validate_prefixes(&self) -> Result<(), ConfigError> {
        let p = &self.tokens.prefixes;
        let all = [
            ("tokens.prefixes.personal", &p.personal),
            ("tokens.prefixes.api_key", &p.api_key),
            ("tokens.prefixes.claim", &p.claim),
        ];
        for (i, (key, value)) in all.iter().enumerate() {
            let body = value.strip_suffix('_').unwrap_or("");
            let well_formed = (2..=8).contains(&body.len())
                && body.as_bytes()[0].is_ascii_lowercase()
                && body
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !well_formed {
                return Err(ConfigError::new(
                    *key,
                    format!("{value:?} must be a lower-case letter, 1 to 7 more letters or digits, then '_'"),
                ));
            }
            if FIXED_PREFIXES.contains(&value.as_str()) {
                return Err(ConfigError::new(
                    *key,
                    format!("{value:?} is authmd's own prefix for another kind of secret"),
                ));
            }
            if let Some((other, _)) = all[..i].iter().find(|(_, v)| v == value) {
                return Err(ConfigError::new(
                    *key,
                    format!("{value:?} is already the prefix of {other}"),
                ));
            }
        }
        Ok(())
    }

    /// The resource a token is for when the request names none (RFC 8707).
    pub fn default_resource(&self) -> &str {
        self.server
            .resources
            .first()
            .map(String::as_str)
            .unwrap_or(&self.server.issuer)
    }

    pub fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&self.database.url).expect("validated at load")
    }
}

/// Whether a URL's host is this machine (`localhost`, 127.0.0.0/8, `::1`): where plain `http`
/// cannot be intercepted on the network.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Shortest accepted `admin.token` and `oauth.initial_access_token`.
pub const MIN_SECRET_CHARS: usize = 32;

/// `server.trusted_proxies`: CIDR blocks, or single addresses (a /32 or /128).
fn parse_proxies(list: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        format!("server.trusted_proxies[{i}]"),
                        format!("{s:?} is not an IP address or CIDR block"),
                    )
                })
        })
        .collect()
}

/// `Name <addr@host>` or a bare address: enough to refuse a typo at start-up.
struct MailboxCheck;

impl std::str::FromStr for MailboxCheck {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let addr = match (s.find('<'), s.rfind('>')) {
            (Some(open), Some(close)) if open < close && close == s.len() - 1 => {
                &s[open + 1..close]
            }
            (None, None) => s.trim(),
            _ => return Err(()),
        };
        match addr.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !domain.is_empty()
                    && !addr.contains(char::is_whitespace) =>
            {
                Ok(MailboxCheck)
            }
            _ => Err(()),
        }
    }
}

/// RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| {
        let message = e.message().to_owned();
        ConfigError::new(origin, format!("not valid TOML: {message}"))
    })
}

/// Lays `overlay` over `base`, table by table; scalars and arrays replace.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // Variables without a section separator (AUTHMD_TEST_POSTGRES_URL…) are not config.
        // Nested tables take one more separator each: AUTHMD_OAUTH__CIMD__ENABLED.
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let [tables @ .., key] = path.as_slice() else {
            continue;
        };
        if tables.is_empty() {
            continue;
        }
        let dotted = path.join(".");
        let unknown = || ConfigError::new(dotted.clone(), format!("unknown key (from {name})"));
        let mut section_table = &mut *table;
        for t in tables {
            section_table = match section_table.get_mut(t) {
                Some(toml::Value::Table(inner)) => inner,
                _ => return Err(unknown()),
            };
        }
        let key = key.clone();
        // Keep strings as written (a numeric admin token stays a string); parse the rest as TOML.
        let value = match section_table.get(&key) {
            Some(toml::Value::String(_)) => toml::Value::String(raw),
            Some(toml::Value::Table(_)) => return Err(unknown()),
            Some(_) => parse_env_value(&raw).ok_or_else(|| {
                ConfigError::new(dotted.clone(), format!("{name} is not a valid TOML value"))
            })?,
            None => {
                let why = REMOVED_KEYS
                    .iter()
                    .find(|(k, _)| *k == dotted)
                    .map_or("unknown key", |(_, why)| why);
                return Err(ConfigError::new(dotted, format!("{why} (from {name})")));
            }
        };
        section_table.insert(key, value);
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> Option<toml::Value> {
    let doc: toml::Table = format!("v = {raw}").parse().ok()?;
    doc.get("v").cloned()
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsing default.toml alone must succeed: no field has a serde default, and every struct
    /// denies unknown fields, so a key missing from either side fails here.
    #[test]
    fn default_toml_matches_struct() {
        let table = parse_table(DEFAULT_TOML, "default").unwrap();
        Config::from_table(table).expect("default.toml parses into Config");
    }

    /// Every key in default.toml is documented by a comment line right above it.
    #[test]
    fn default_toml_documents_every_key() {
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            let key = line.split('=').next().unwrap().trim();
            // Keys grouped under one comment (agent_auth_per_ip / _global) share it.
            let documented = lines[..i]
                .iter()
                .rev()
                .take_while(|l| !l.trim().is_empty() && !l.trim().starts_with('['))
                .any(|l| l.trim().starts_with('#'));
            assert!(documented, "default.toml key {key:?} has no comment");
        }
    }

    #[test]
    fn every_struct_key_is_in_default_toml() {
        // Serialising the parsed defaults yields every struct field; each must appear in the file.
        let config = Config::defaults();
        let value = toml::Value::try_from(&config).unwrap();
        let file = parse_table(DEFAULT_TOML, "default").unwrap();
        for (section, fields) in value.as_table().unwrap() {
            let file_section = file[section].as_table().unwrap();
            for key in fields.as_table().unwrap().keys() {
                assert!(
                    file_section.contains_key(key),
                    "{section}.{key} missing from default.toml"
                );
            }
        }
    }

    #[test]
    fn env_overrides_file_and_keeps_strings() {
        let env = vec![
            (
                "AUTHMD_SERVER__BIND".to_owned(),
                "127.0.0.1:9999".to_owned(),
            ),
            (
                "AUTHMD_ADMIN__TOKEN".to_owned(),
                "12345678901234567890123456789012".to_owned(),
            ),
            (
                "AUTHMD_TOKENS__ACCESS_TOKEN_TTL_S".to_owned(),
                "60".to_owned(),
            ),
            (
                "AUTHMD_AGENT__PRE_CLAIM_SCOPES".to_owned(),
                "[\"a\", \"b\"]".to_owned(),
            ),
            ("AUTHMD_TEST_POSTGRES_URL".to_owned(), "ignored".to_owned()),
            ("OTHER".to_owned(), "ignored".to_owned()),
        ];
        let config = Config::load(None, env).unwrap();
        assert_eq!(config.server.bind.port(), 9999);
        assert_eq!(config.admin.token, "12345678901234567890123456789012");
        assert_eq!(config.tokens.access_token_ttl_s, 60);
        assert_eq!(config.agent.pre_claim_scopes, vec!["a", "b"]);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[server]\nbind = \"nope\"", "server.bind"),
            ("[server]\nbindd = \"1.2.3.4:1\"", "server.bindd"),
            ("[nosuch]\nx = 1", "nosuch"),
            ("[server]\nissuer = \"http://x/\"", "server.issuer"),
            (
                "[server]\nresources = [\"not a uri\"]",
                "server.resources[0]",
            ),
            ("[database]\nurl = \"mysql://x\"", "database.url"),
            (
                "[tokens]\naccess_token_format = \"paseto\"",
                "tokens.access_token_format",
            ),
            (
                "[tokens]\naccess_token_ttl_s = 0",
                "tokens.access_token_ttl_s",
            ),
            ("[mail]\nsmtp_port = 70000", "mail.smtp_port"),
            (
                "[oauth]\nregistration = \"token\"",
                "oauth.initial_access_token",
            ),
            (
                "[agent]\npre_claim_scopes = [\"a b\"]",
                "agent.pre_claim_scopes",
            ),
            (
                "[agent]\ntrusted_providers = [{ issuer = \"https://p\", jwks = \"x\" }]",
                "agent.trusted_providers[0].jwks",
            ),
        ];
        for (text, key) in cases {
            let err = Config::from_toml_overlay(text).unwrap_err();
            assert!(
                err.key.starts_with(key),
                "{text:?}: got key {:?} ({})",
                err.key,
                err.message
            );
        }
        let err = Config::load(None, vec![("AUTHMD_SERVER__NOPE".into(), "1".into())]).unwrap_err();
        assert_eq!(err.key, "server.nope");
    }

    #[test]
    fn token_prefixes_are_checked_and_must_not_clash() {
        let ok = Config::from_toml_overlay(
            "[tokens.prefixes]\npersonal = \"dai_\"\napi_key = \"sk_\"\nclaim = \"ct_\"",
        )
        .unwrap();
        assert_eq!(ok.tokens.prefixes.personal, "dai_");
        for (text, key) in [
            (
                "[tokens.prefixes]\npersonal = \"Dai_\"",
                "tokens.prefixes.personal",
            ),
            (
                "[tokens.prefixes]\npersonal = \"dai\"",
                "tokens.prefixes.personal",
            ),
            (
                "[tokens.prefixes]\npersonal = \"d_\"",
                "tokens.prefixes.personal",
            ),
            (
                "[tokens.prefixes]\npersonal = \"abcdefghi_\"",
                "tokens.prefixes.personal",
            ),
            (
                "[tokens.prefixes]\npersonal = \"1ab_\"",
                "tokens.prefixes.personal",
            ),
            // authmd's own prefixes, and one kind's prefix for another.
            (
                "[tokens.prefixes]\napi_key = \"at_\"",
                "tokens.prefixes.api_key",
            ),
            (
                "[tokens.prefixes]\nclaim = \"cv_\"",
                "tokens.prefixes.claim",
            ),
            (
                "[tokens.prefixes]\nclaim = \"sk_\"",
                "tokens.prefixes.claim",
            ),
            (
                "[tokens.prefixes]\napi_key = \"pat_\"",
                "tokens.prefixes.api_key",
            ),
        ] {
            let err = Config::from_toml_overlay(text).unwrap_err();
            assert_eq!(err.key, key, "{text}: {err}");
        }
    }

    #[test]
    fn unclaimed_credential_lifetime_and_personal_maximum() {
        let c = Config::defaults();
        assert_eq!(
            c.agent.unclaimed_credentials_expire(100),
            Some(100 + c.agent.claim_ttl_s)
        );
        let c = Config::from_toml_overlay("[agent]\nunclaimed_credential_ttl_s = 0").unwrap();
        assert_eq!(c.agent.unclaimed_credentials_expire(100), None);
        let c = Config::from_toml_overlay("[agent]\nunclaimed_credential_ttl_s = 60").unwrap();
        assert_eq!(c.agent.unclaimed_credentials_expire(100), Some(160));
        let env = vec![(
            "AUTHMD_AGENT__UNCLAIMED_CREDENTIAL_TTL_S".into(),
            "claim_window".into(),
        )];
        assert!(Config::load(None, env).is_ok());
        for (text, key) in [
            (
                "[agent]\nunclaimed_credential_ttl_s = -1",
                "agent.unclaimed_credential_ttl_s",
            ),
            (
                "[agent]\nunclaimed_credential_ttl_s = \"forever\"",
                "agent.unclaimed_credential_ttl_s",
            ),
            (
                "[tokens]\npersonal_max_ttl_s = -5",
                "tokens.personal_max_ttl_s",
            ),
            ("[accounts]\nsignup = \"maybe\"", "accounts.signup"),
            (
                "[agent]\nclaim_otp_delivery = \"sms\"",
                "agent.claim_otp_delivery",
            ),
            (
                "[agent]\ndefault_credential_type = \"password\"",
                "agent.default_credential_type",
            ),
        ] {
            let err = Config::from_toml_overlay(text).unwrap_err();
            assert_eq!(err.key, key, "{text}: {err}");
        }
    }

    #[test]
    fn the_example_deployments_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deployments");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            Config::load(Some(&path), Vec::new())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
        assert_eq!(seen, 5);
    }

    #[test]
    fn an_unknown_key_is_named_once() {
        let err = Config::from_toml_overlay("[server]\nbindd = \"1.2.3.4:1\"").unwrap_err();
        assert_eq!(err.key, "server.bindd");
        assert_eq!(
            err.to_string(),
            "configuration error: server.bindd: unknown key"
        );
        let err = Config::from_toml_overlay("nosuch = 1").unwrap_err();
        assert_eq!(err.key, "nosuch");
    }

    #[test]
    fn removed_keys_name_their_replacement() {
        for (text, key, replacement) in [
            (
                "[server]\ntrust_forwarded_for = true",
                "server.trust_forwarded_for",
                "server.trusted_proxies",
            ),
            (
                "[rate_limit]\nlogin_per_ip = 5",
                "rate_limit.login_per_ip",
                "rate_limit.login_failures_per_ip",
            ),
            (
                "[agent]\napi_key_prefix = \"dai_\"",
                "agent.api_key_prefix",
                "tokens.prefixes.api_key",
            ),
        ] {
            let err = Config::from_toml_overlay(text).unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.message.contains(replacement), "{err}");
        }
        let err = Config::load(
            None,
            vec![("AUTHMD_SERVER__TRUST_FORWARDED_FOR".into(), "true".into())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("server.trusted_proxies"), "{err}");
    }

    #[test]
    fn short_secrets_and_bad_proxies_stop_start_up() {
        for (text, key) in [
            ("[admin]\ntoken = \"short\"", "admin.token"),
            (
                "[oauth]\nregistration = \"token\"\ninitial_access_token = \"0123456789\"",
                "oauth.initial_access_token",
            ),
            (
                "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"not-an-ip\"]",
                "server.trusted_proxies[1]",
            ),
            (
                "[agent]\ntrusted_providers = [{ issuer = \"https://p.example\", jwks_uri = \"http://p.example/jwks\" }]",
                "agent.trusted_providers[0].jwks_uri",
            ),
            ("[agent]\nmax_assertion_lifetime_s = 0", "agent.max_assertion_lifetime_s"),
        ] {
            let err = Config::from_toml_overlay(text).unwrap_err();
            assert_eq!(err.key, key, "{text}: {err}");
        }
        let ok = Config::from_toml_overlay(
            "[admin]\ntoken = \"0123456789abcdef0123456789abcdef\"\n[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]",
        )
        .unwrap();
        assert_eq!(ok.server.trusted_proxy_nets.len(), 2);
    }

    #[test]
    fn database_url_schemes() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/a.db").unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("data/a.db"))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/a.db").unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/tmp/a.db"))
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/d"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn nested_keys_come_from_the_environment_too() {
        let config = Config::load(
            None,
            vec![
                ("AUTHMD_OAUTH__CIMD__ENABLED".into(), "false".into()),
                ("AUTHMD_OAUTH__DEVICE__INTERVAL_S".into(), "7".into()),
            ],
        )
        .unwrap();
        assert!(!config.oauth.cimd.enabled);
        assert_eq!(config.oauth.device.interval_s, 7);
        let err =
            Config::load(None, vec![("AUTHMD_OAUTH__CIMD__NOPE".into(), "1".into())]).unwrap_err();
        assert!(err.to_string().contains("oauth.cimd.nope"), "{err}");
        let err = Config::load(None, vec![("AUTHMD_OAUTH__CIMD".into(), "1".into())]).unwrap_err();
        assert!(err.to_string().contains("oauth.cimd"), "{err}");
        let err =
            Config::from_toml_overlay("[oauth]\nclient_id_metadata_documents = true").unwrap_err();
        assert!(err.to_string().contains("[oauth.cimd]"), "{err}");
    }

    #[test]
    fn secrets_are_not_in_debug() {
        let config = Config::from_toml_overlay(
            "[admin]\ntoken = \"s3cret-admin-0123456789abcdefghijk\"\n[mail]\nsmtp_password = \"s3cret-smtp\"",
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
