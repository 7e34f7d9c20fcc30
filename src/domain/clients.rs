//! OAuth clients: registration (CLI and RFC 7591), redirect-URI rules, client authentication.
//!
//! Generated client secrets are 256-bit random tokens checked by SHA-256 in constant time, so
//! the token endpoint never pays for a password hash.

use std::borrow::Borrow;

use serde::Serialize;
use serde_json::{json, Value};
use url::Url;

use crate::clock::UnixTime;
use crate::db::point_reads::{ClientFound, ClientRead};
use crate::db::{self, clients::ClientRow, DbConn};
use crate::domain::audit::{self, AuditContext, AuditEntry, AuditEvent};
use crate::domain::context::Ctx;
use crate::domain::credentials;
use crate::domain::discovery::{
    GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_JWT_BEARER,
    GRANT_REFRESH_TOKEN,
};
use crate::domain::ratelimit;
use crate::domain::scope::Scopes;
use crate::domain::secrets::{prefix, random_id, HashedToken, PlainToken};
use crate::error::{AppError, AppResult, ErrorCode};

pub const AUTH_BASIC: &str = "client_secret_basic";
pub const AUTH_POST: &str = "client_secret_post";
pub const AUTH_NONE: &str = "none";

/// A registered client, decoded from its row.
#[derive(Debug, Clone, Serialize)]
pub struct Client {
    pub client_id: String,
    pub client_name: String,
    pub is_public: bool,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scope: String,
    pub can_introspect: bool,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    #[serde(skip)]
    pub secret_hash: Option<String>,
    #[serde(skip)]
    pub registration_token_hash: Option<String>,
    #[serde(skip)]
    pub metadata: Value,
    pub secret_prefix: Option<String>,
    pub created_at: UnixTime,
}

impl Client {
    fn from_row(row: ClientRow) -> AppResult<Self> {
        let list = |s: &str, what: &str| {
            serde_json::from_str::<Vec<String>>(s)
                .map_err(|e| AppError::internal(format!("client {}: bad {what}: {e}", row.id)))
        };
        Ok(Self {
            redirect_uris: list(&row.redirect_uris, "redirect_uris")?,
            grant_types: list(&row.grant_types, "grant_types")?,
            metadata: serde_json::from_str(&row.metadata).unwrap_or_else(|_| json!({})),
            client_id: row.id,
            client_name: row.name,
            is_public: row.is_public,
            scope: row.scope,
            can_introspect: row.can_introspect,
            token_endpoint_auth_method: row.token_endpoint_auth_method,
            application_type: row.application_type,
            secret_hash: row.secret_hash,
            registration_token_hash: row.registration_token_hash,
            secret_prefix: row.secret_prefix,
            created_at: row.created_at,
        })
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    pub fn scopes(&self) -> Scopes {
        Scopes::parse(&self.scope).unwrap_or_default()
    }

    /// For a client known by its metadata document (its id is the document's URL): the host
    /// that published it, which is all a person can check about who is asking.
    pub fn document_host(&self) -> Option<String> {
        if !crate::domain::cimd::is_document_url(&self.client_id) {
            return None;
        }
        Url::parse(&self.client_id)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
    }

    /// The registered redirect URI a request's `redirect_uri` matches, if any.
    pub fn match_redirect(&self, requested: &str) -> Option<&str> {
        self.redirect_uris
            .iter()
            .find(|registered| redirect_matches(registered, requested))
            .map(String::as_str)
    }
}

/// Exact match, except that a loopback redirect matches on any port (RFC 8252 §7.3).
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (Url::parse(registered), Url::parse(requested)) {
        (Ok(reg), Ok(req)) => {
            is_loopback(&reg)
                && reg.scheme() == req.scheme()
                && reg.host_str() == req.host_str()
                && reg.path() == req.path()
                && reg.query() == req.query()
                && req.fragment().is_none()
                && reg.username() == req.username()
                && req.password().is_none()
        }
        _ => false,
    }
}

fn is_loopback(url: &Url) -> bool {
    url.scheme() == "http" && matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
}

/// Checks a redirect URI at registration: absolute, no fragment; https, loopback http, or (for
/// public clients only) a private-use scheme such as `cursor://` or `vscode://`.
pub fn validate_redirect_uri(uri: &str, public: bool) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} must not contain a fragment"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "{uri:?}: http is only allowed for loopback addresses"
        )),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" => {
            Err(format!("{uri:?}: scheme {} is not allowed", url.scheme()))
        }
        _ if public => Ok(()),
        scheme => Err(format!(
            "{uri:?}: private-use scheme {scheme} is only allowed for public clients"
        )),
    }
}

/// What a caller asks to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scope: Option<String>,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    pub can_introspect: bool,
    /// Issue an RFC 7592 registration access token (dynamic registration).
    pub registration_token: bool,
    /// Extra RFC 7591 metadata to store and echo (client_uri, logo_uri, contacts, …).
    pub metadata: Value,
}

/// A client just created, with the secrets shown exactly once.
pub struct CreatedClient {
    pub client: Client,
    pub client_secret: Option<PlainToken>,
    pub registration_token: Option<PlainToken>,
}

pub const KNOWN_GRANTS: [&str; 5] = [
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    GRANT_DEVICE_CODE,
];

/// Validates and stores a client. `allowed_scopes` is everything the deployment can grant.
pub fn create(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    new: NewClient,
    allowed_scopes: &Scopes,
) -> AppResult<CreatedClient> {
    let invalid = |msg: String| AppError::protocol(ErrorCode::InvalidClientMetadata, msg);
    let name = new.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(invalid("client_name must be 1 to 200 characters".into()));
    }
    let public = match new.token_endpoint_auth_method.as_str() {
        AUTH_NONE => true,
        AUTH_BASIC | AUTH_POST => false,
        other => {
            return Err(invalid(format!(
                "token_endpoint_auth_method {other:?} is not supported (client_secret_basic, client_secret_post, none)"
            )))
        }
    };
    if !matches!(new.application_type.as_str(), "web" | "native") {
        return Err(invalid(
            "application_type must be \"web\" or \"native\"".into(),
        ));
    }
    for g in &new.grant_types {
        if !KNOWN_GRANTS.contains(&g.as_str()) {
            return Err(invalid(format!("grant type {g:?} is not supported")));
        }
    }
    if public
        && new
            .grant_types
            .iter()
            .any(|g| g == GRANT_CLIENT_CREDENTIALS)
    {
        return Err(invalid(
            "a public client cannot use client_credentials".into(),
        ));
    }
    if new
        .grant_types
        .iter()
        .any(|g| g == GRANT_AUTHORIZATION_CODE)
        && new.redirect_uris.is_empty()
    {
        return Err(AppError::protocol(
            ErrorCode::InvalidRedirectUri,
            "redirect_uris is required for the authorization_code grant",
        ));
    }
    for uri in &new.redirect_uris {
        validate_redirect_uri(uri, public)
            .map_err(|m| AppError::protocol(ErrorCode::InvalidRedirectUri, m))?;
    }
    let scopes = match &new.scope {
        Some(s) => Scopes::parse(s).ok_or_else(|| invalid("scope is malformed".into()))?,
        None => allowed_scopes.clone(),
    };
    if !scopes.is_subset(allowed_scopes) {
        return Err(AppError::protocol(
            ErrorCode::InvalidClientMetadata,
            format!("unknown scope(s): {}", scopes.missing_from(allowed_scopes)),
        ));
    }

    let secret = (!public).then(|| PlainToken::generate(prefix::CLIENT_SECRET));
    let registration_token = new
        .registration_token
        .then(|| PlainToken::generate(prefix::REGISTRATION_TOKEN));
    let row = ClientRow {
        id: random_id("cl_"),
        name: name.to_owned(),
        secret_hash: secret.as_ref().map(|s| s.hash().as_str().to_owned()),
        secret_prefix: secret.as_ref().map(PlainToken::display_prefix),
        is_public: public,
        redirect_uris: serde_json::to_string(&new.redirect_uris).unwrap_or_default(),
        grant_types: serde_json::to_string(&new.grant_types).unwrap_or_default(),
        scope: scopes.to_string(),
        can_introspect: new.can_introspect,
        token_endpoint_auth_method: new.token_endpoint_auth_method.clone(),
        application_type: new.application_type.clone(),
        registration_token_hash: registration_token
            .as_ref()
            .map(|t| t.hash().as_str().to_owned()),
        metadata: new.metadata.to_string(),
        created_at: now,
    };
    db::write_tx(conn, |conn| {
        db::clients::insert(conn, &row)?;
        audit::record(
            conn,
            now,
            ctx,
            AuditEvent::ClientCreated,
            AuditEntry {
                client_id: Some(&row.id),
                detail: Some(
                    json!({ "name": row.name, "public": public, "dynamic": new.registration_token }),
                ),
                ..Default::default()
            },
        )
    })?;
    Ok(CreatedClient {
        client: Client::from_row(row)?,
        client_secret: secret,
        registration_token,
    })
}

pub fn find(conn: &mut DbConn, client_id: &str) -> AppResult<Option<Client>> {
    db::clients::find(conn, client_id)?
        .map(Client::from_row)
        .transpose()
}

pub fn list(conn: &mut DbConn) -> AppResult<Vec<Client>> {
    db::clients::all(conn)?
        .into_iter()
        .map(Client::from_row)
        .collect()
}

/// Deletes a client and revokes every token issued to it.
pub fn delete(conn: &mut DbConn, now: UnixTime, client_id: &str) -> AppResult<bool> {
    db::write_tx(conn, |conn| {
        credentials::revoke_from(conn, now, credentials::Dying::Client(client_id))?;
        Ok(db::clients::delete(conn, client_id)? == 1)
    })
}

/// How a request authenticates its client (RFC 6749 §2.3).
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` or `client_secret_post`.
    Secret {
        client_id: String,
        secret: String,
        method: &'static str,
    },
    /// `none`: a public client names itself.
    Public { client_id: String },
}

impl ClientAuth {
    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::Secret { client_id, .. } | ClientAuth::Public { client_id } => client_id,
        }
    }
}

fn invalid_client(msg: &'static str) -> AppError {
    AppError::protocol(ErrorCode::InvalidClient, msg)
}

/// Authenticates a client. Every failure is `invalid_client` (401) with the same description
/// whether the client is unknown or the secret wrong, and both paths compare a hash.
pub fn authenticate(conn: &mut DbConn, auth: &ClientAuth) -> AppResult<Client> {
    authenticate_found(auth, find(conn, auth.client_id())?)
}

/// [`authenticate`] against the client already read (`None`: no such client).
fn authenticate_found(auth: &ClientAuth, client: Option<Client>) -> AppResult<Client> {
    verify(
        auth,
        client
            .as_ref()
            .map(|c| (c.is_public, c.secret_hash.as_deref())),
    )?;
    client.ok_or_else(|| invalid_client("client authentication failed"))
}

/// Client authentication at the token and revocation endpoints, limited: after
/// `rate_limit.client_auth_failures` failures for one client from one IP in a window, the
/// secret is not even checked (`429 temporarily_unavailable`), so it cannot be guessed online.
/// The failure count is written outside any transaction, so it stays when the request fails.
pub fn authenticate_limited(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    auth: &ClientAuth,
) -> AppResult<Client> {
    let result = lookup(conn, ctx, auth)?.judge(ctx.now, auth);
    if matches!(&result, Err(e) if counts_as_failure(e)) {
        count_failure(conn, ctx, auth)?;
    }
    result
}

/// What [`authenticate_limited`] reads: the client's row and, with limits on, its failure
/// window, in one round trip.
pub struct ClientLookup {
    window: Option<ratelimit::ClientAuthWindow>,
    row: Option<ClientRow>,
    hits: (i64, i64),
}

/// Reads the client `auth` names and its failure window; writes nothing, so a caller may read
/// on a connection of its own and write (the token, or [`count_failure`]) afterwards.
pub fn lookup(conn: &mut DbConn, ctx: &Ctx<'_>, auth: &ClientAuth) -> AppResult<ClientLookup> {
    let (read, window) = lookup_read(ctx, auth);
    let found = db::clients::find_with_window(conn, &read.client_id, read.window.as_ref())?;
    Ok(ClientLookup::of(window, found))
}

/// What [`lookup`] reads, for a caller that reads it batched with other requests' reads
/// (`db::point_reads::ClientReads`), and the window the rows are then judged by
/// ([`ClientLookup::of`]).
pub fn lookup_read(
    ctx: &Ctx<'_>,
    auth: &ClientAuth,
) -> (ClientRead, Option<ratelimit::ClientAuthWindow>) {
    let ip = ctx.audit.ip.as_deref();
    let window =
        ratelimit::client_auth_window(&ctx.config.rate_limit, ctx.now, auth.client_id(), ip);
    let read = ClientRead {
        client_id: auth.client_id().to_owned(),
        window: window.as_ref().map(|w| w.key.clone()),
    };
    (read, window)
}

impl ClientLookup {
    /// The lookup of what [`lookup_read`] asked, from the rows found for it.
    pub fn of(window: Option<ratelimit::ClientAuthWindow>, found: ClientFound) -> Self {
        let (row, hits) = found;
        Self { window, row, hits }
    }

    /// Refuses a spent window, then checks what `auth` presents. An error for which
    /// [`counts_as_failure`] holds must be counted with [`count_failure`].
    pub fn judge(self, now: UnixTime, auth: &ClientAuth) -> AppResult<Client> {
        if let Some(window) = &self.window {
            window.refuse_if_spent(now, self.hits)?;
        }
        self.row
            .map(Client::from_row)
            .transpose()
            .and_then(|client| authenticate_found(auth, client))
    }
}

/// Whether `e` is a failed authentication, which counts toward the client's failure window.
pub fn counts_as_failure(e: &AppError) -> bool {
    e.code() == Some(ErrorCode::InvalidClient)
}

/// Counts one failed authentication of `auth`'s client from the request's IP.
pub fn count_failure(conn: &mut DbConn, ctx: &Ctx<'_>, auth: &ClientAuth) -> AppResult<()> {
    let ip = ctx.audit.ip.as_deref();
    ratelimit::client_auth_failed(conn, &ctx.config.rate_limit, ctx.now, auth.client_id(), ip)
}

/// [`authenticate`] against a client row already read (`None`: no such client). The row stays
/// a row: authenticating needs none of the JSON lists a [`Client`] parses.
pub fn authenticate_row<R: Borrow<ClientRow>>(auth: &ClientAuth, row: Option<R>) -> AppResult<R> {
    verify(
        auth,
        row.as_ref().map(|r| {
            let r = r.borrow();
            (r.is_public, r.secret_hash.as_deref())
        }),
    )?;
    row.ok_or_else(|| invalid_client("client authentication failed"))
}

/// Whether `auth` authenticates the client found as `(is_public, secret_hash)`; `Ok` only when
/// one was found.
fn verify(auth: &ClientAuth, found: Option<(bool, Option<&str>)>) -> AppResult<()> {
    match (auth, found) {
        (ClientAuth::Secret { secret, .. }, Some((false, stored))) => {
            if HashedToken::of(secret).matches(stored.unwrap_or_default()) {
                Ok(())
            } else {
                Err(invalid_client("client authentication failed"))
            }
        }
        (ClientAuth::Secret { secret, .. }, _) => {
            // Unknown client, or a public one presenting a secret: same cost, same answer.
            let _ = HashedToken::of(secret).matches(UNKNOWN_CLIENT_HASH);
            Err(invalid_client("client authentication failed"))
        }
        (ClientAuth::Public { .. }, Some((true, _))) => Ok(()),
        (ClientAuth::Public { .. }, Some((false, _))) => {
            Err(invalid_client("this client must authenticate"))
        }
        (ClientAuth::Public { .. }, None) => Err(invalid_client("client authentication failed")),
    }
}

/// What a secret is compared with when there is no client: a hash no secret has.
const UNKNOWN_CLIENT_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_matches_any_port() {
        let reg = "http://127.0.0.1:3000/callback";
        assert!(redirect_matches(reg, "http://127.0.0.1:51234/callback"));
        assert!(redirect_matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:9/callback"
        ));
        assert!(redirect_matches("http://[::1]:1/cb", "http://[::1]:2/cb"));
        assert!(redirect_matches(
            "http://localhost:1/cb",
            "http://localhost:2/cb"
        ));
        assert!(!redirect_matches(reg, "http://127.0.0.1:51234/other"));
        assert!(!redirect_matches(reg, "http://localhost:3000/callback"));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:444/cb"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example/cb/"
        ));
        assert!(redirect_matches(
            "cursor://anysphere/cb",
            "cursor://anysphere/cb"
        ));
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(validate_redirect_uri("https://app.example/cb", false).is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:8000/cb", false).is_ok());
        assert!(validate_redirect_uri("http://app.example/cb", false).is_err());
        assert!(validate_redirect_uri("https://app.example/cb#x", false).is_err());
        assert!(
            validate_redirect_uri("cursor://anysphere.cursor-retrieval/oauth/callback", true)
                .is_ok()
        );
        assert!(validate_redirect_uri(
            "vscode://vscode.github-authentication/did-authenticate",
            false
        )
        .is_err());
        assert!(validate_redirect_uri("javascript:alert(1)", true).is_err());
        assert!(validate_redirect_uri("/relative", true).is_err());
    }
}
