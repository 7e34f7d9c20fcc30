//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592: read and
//! delete with the registration access token).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::clock::UnixTime;
use crate::config::{Config, RegistrationMode};
use crate::db::DbConn;
use crate::domain::audit::AuditContext;
use crate::domain::clients::{self, Client, NewClient, AUTH_BASIC};
use crate::domain::discovery::{paths, scopes_supported, GRANT_AUTHORIZATION_CODE};
use crate::domain::scope::Scopes;
use crate::domain::secrets::{constant_time_eq, HashedToken};
use crate::error::{AppError, AppResult, ErrorCode};

/// Metadata a client may send (RFC 7591 §2). Of the rest, only [`KEPT_METADATA`] is stored
/// and echoed; anything else is ignored (RFC 7591 §2: metadata the server does not understand).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct RegistrationRequest {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub client_name: Option<String>,
    pub scope: Option<String>,
    pub application_type: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Metadata fields authmd computes itself; a client cannot set them.
const RESERVED: [&str; 6] = [
    "client_id",
    "client_secret",
    "client_id_issued_at",
    "client_secret_expires_at",
    "registration_access_token",
    "registration_client_uri",
];

/// RFC 7591 fields authmd stores and shows back (on the consent page and in RFC 7592 reads).
pub const KEPT_METADATA: [&str; 8] = [
    "client_uri",
    "logo_uri",
    "policy_uri",
    "tos_uri",
    "contacts",
    "software_id",
    "software_version",
    // OpenID Connect Registration §2: RS256 (the default) or ES256.
    "id_token_signed_response_alg",
];

/// The fields among [`KEPT_METADATA`] that are URLs a person may follow: `https` only (or
/// `http` on loopback), never `javascript:` or `data:`.
const URL_METADATA: [&str; 4] = ["client_uri", "logo_uri", "policy_uri", "tos_uri"];

/// Grants a registrant without an initial access token may have: only those where a person
/// approves what the client gets. Anything else would hand strangers tokens with no person in
/// the loop.
pub const OPEN_GRANTS: [&str; 3] = [
    GRANT_AUTHORIZATION_CODE,
    crate::domain::discovery::GRANT_REFRESH_TOKEN,
    crate::domain::discovery::GRANT_DEVICE_CODE,
];

fn check_metadata_url(field: &str, value: &Value) -> Result<(), String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{field} must be a URL string"))?;
    let url = url::Url::parse(text).map_err(|_| format!("{field} is not a URL"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if crate::config::is_loopback_host(&url) => Ok(()),
        _ => Err(format!("{field} must be an https URL")),
    }
}

/// The metadata kept from a request: the known fields, checked.
fn kept_metadata(other: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut kept = Map::new();
    for field in KEPT_METADATA {
        let Some(value) = other.get(field) else {
            continue;
        };
        if URL_METADATA.contains(&field) {
            check_metadata_url(field, value)?;
        } else if field == "id_token_signed_response_alg" {
            let alg = value.as_str().unwrap_or_default();
            if !crate::domain::oidc::ID_TOKEN_ALGS.contains(&alg) {
                return Err(format!(
                    "id_token_signed_response_alg must be one of {:?}",
                    crate::domain::oidc::ID_TOKEN_ALGS
                ));
            }
        } else if field == "contacts" {
            let ok = value
                .as_array()
                .is_some_and(|a| a.iter().all(|c| c.as_str().is_some_and(|c| c.len() <= 254)));
            if !ok {
                return Err("contacts must be a list of strings".into());
            }
        } else if value.as_str().is_none_or(|v| v.len() > 200) {
            return Err(format!(
                "{field} must be a string of at most 200 characters"
            ));
        }
        kept.insert(field.to_owned(), value.clone());
    }
    Ok(kept)
}

/// Checks the gate of `oauth.registration`; `bearer` is the presented initial access token.
pub fn check_gate(config: &Config, bearer: Option<&str>) -> AppResult<()> {
    match config.oauth.registration {
        RegistrationMode::Open => Ok(()),
        RegistrationMode::Off => Err(AppError::protocol(
            ErrorCode::AccessDenied,
            "dynamic client registration is disabled",
        )),
        RegistrationMode::Token => match bearer {
            Some(t)
                if constant_time_eq(t.as_bytes(), config.oauth.initial_access_token.as_bytes()) =>
            {
                Ok(())
            }
            _ => Err(AppError::protocol(
                ErrorCode::InvalidToken,
                "a valid initial access token is required",
            )),
        },
    }
}

pub fn register(
    conn: &mut DbConn,
    config: &Config,
    now: UnixTime,
    ctx: &AuditContext,
    req: RegistrationRequest,
) -> AppResult<Value> {
    let invalid = |m: String| AppError::protocol(ErrorCode::InvalidClientMetadata, m);
    if let Some(key) = RESERVED.iter().find(|k| req.other.contains_key(**k)) {
        return Err(invalid(format!("{key} cannot be chosen by the client")));
    }
    if let Some(types) = &req.response_types {
        if types.iter().any(|t| t != "code") {
            return Err(invalid(
                "only the \"code\" response type is supported".into(),
            ));
        }
    }
    let method = req
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| AUTH_BASIC.to_owned());
    let grant_types = req
        .grant_types
        .clone()
        .unwrap_or_else(|| vec![GRANT_AUTHORIZATION_CODE.to_owned()]);
    // With the initial access token the operator vouches for the registrant; without one,
    // only grants that put a person in the loop.
    if config.oauth.registration == RegistrationMode::Open {
        if let Some(g) = grant_types
            .iter()
            .find(|g| !OPEN_GRANTS.contains(&g.as_str()))
        {
            return Err(invalid(format!(
                "grant type {g:?} needs an initial access token; open registration allows {}",
                OPEN_GRANTS.join(", ")
            )));
        }
    }
    let application_type = req
        .application_type
        .clone()
        .unwrap_or_else(|| "web".to_owned());
    let mut metadata = kept_metadata(&req.other).map_err(invalid)?;
    if let Some(rt) = &req.response_types {
        metadata.insert("response_types".into(), json!(rt));
    }
    let created = clients::create(
        conn,
        now,
        ctx,
        NewClient {
            name: req
                .client_name
                .clone()
                .unwrap_or_else(|| "unnamed client".to_owned()),
            redirect_uris: req.redirect_uris.clone(),
            grant_types,
            scope: req.scope.clone(),
            token_endpoint_auth_method: method,
            application_type,
            can_introspect: false,
            registration_token: true,
            metadata: Value::Object(metadata),
        },
        &Scopes::from_list(&scopes_supported(config)),
    )?;
    let mut body = client_metadata(config, &created.client);
    let obj = body.as_object_mut().expect("object");
    obj.insert(
        "client_id_issued_at".into(),
        json!(created.client.created_at),
    );
    if let Some(secret) = created.client_secret {
        obj.insert("client_secret".into(), json!(secret.into_string()));
        obj.insert("client_secret_expires_at".into(), json!(0));
    }
    if let Some(token) = created.registration_token {
        obj.insert(
            "registration_access_token".into(),
            json!(token.into_string()),
        );
    }
    Ok(body)
}

/// The client's metadata as RFC 7591/7592 responses show it (no secret).
pub fn client_metadata(config: &Config, client: &Client) -> Value {
    // Only the kept fields, whatever an older version stored.
    let mut obj: Map<String, Value> = match &client.metadata {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| KEPT_METADATA.contains(&k.as_str()) || *k == "response_types")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => Map::new(),
    };
    obj.insert("client_id".into(), json!(client.client_id));
    obj.insert("client_name".into(), json!(client.client_name));
    obj.insert("redirect_uris".into(), json!(client.redirect_uris));
    obj.insert("grant_types".into(), json!(client.grant_types));
    obj.entry("response_types").or_insert(json!(["code"]));
    obj.insert(
        "token_endpoint_auth_method".into(),
        json!(client.token_endpoint_auth_method),
    );
    obj.insert("application_type".into(), json!(client.application_type));
    obj.insert("scope".into(), json!(client.scope));
    obj.insert(
        "registration_client_uri".into(),
        json!(format!(
            "{}{}/{}",
            config.server.issuer,
            paths::REGISTER,
            client.client_id
        )),
    );
    Value::Object(obj)
}

/// The client a registration access token manages. Wrong or missing token: `invalid_token`.
fn managed_client(conn: &mut DbConn, client_id: &str, token: Option<&str>) -> AppResult<Client> {
    let denied = || {
        AppError::protocol(
            ErrorCode::InvalidToken,
            "registration access token is invalid",
        )
    };
    let token = token.ok_or_else(denied)?;
    let client = clients::find(conn, client_id)?;
    match client {
        Some(c)
            if c.registration_token_hash
                .as_deref()
                .is_some_and(|h| HashedToken::of(token).matches(h)) =>
        {
            Ok(c)
        }
        _ => Err(denied()),
    }
}

pub fn read(
    conn: &mut DbConn,
    config: &Config,
    client_id: &str,
    token: Option<&str>,
) -> AppResult<Value> {
    Ok(client_metadata(
        config,
        &managed_client(conn, client_id, token)?,
    ))
}

pub fn delete(
    conn: &mut DbConn,
    now: UnixTime,
    client_id: &str,
    token: Option<&str>,
) -> AppResult<()> {
    managed_client(conn, client_id, token)?;
    clients::delete(conn, now, client_id)?;
    Ok(())
}
