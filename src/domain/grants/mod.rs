//! The grants of the token endpoint, one module each, and the rules they share: which
//! audience a token is for (RFC 8707) and which scopes it may carry.
//!
//! Every token belongs to a grant (what one authorization produced). Replaying a code or
//! reusing a rotated refresh token after the grace window revokes the grant, and with it every
//! access and refresh token issued under it. Access tokens carry their own `revoked_at`, so
//! introspection is one primary-key read.

pub mod client_credentials;
pub mod code;
pub mod jwt_bearer;
pub mod refresh;

use serde_json::Value;

use crate::config::Config;
use crate::db::status::GrantKind;
use crate::db::tokens::GrantRow;
use crate::db::{self, DbConn};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::clients::Client;
use crate::domain::context::Ctx;
use crate::domain::credentials::{issue_for_grant, TokenResponse};
use crate::domain::scope::Scopes;
use crate::error::{AppError, AppResult, ErrorCode};

/// What a person granted a client, by whichever grant (a code, a device approval, an ID-JAG).
pub(crate) struct PersonGrant<'a> {
    pub id: String,
    pub client: &'a Client,
    pub user_id: &'a str,
    pub scope: &'a str,
    pub resource: &'a str,
    pub kind: GrantKind,
    pub refresh: bool,
    /// The agent provider identity `(iss, sub)` an ID-JAG spoke for.
    pub provider: Option<(&'a str, &'a str)>,
    /// `token.issued` detail beyond `grant_type` and `grant_id`.
    pub detail: Value,
}

/// Stores a person's grant, issues its tokens and records `token.issued`: the one way a
/// person's authorization becomes tokens, inside the caller's transaction.
pub(crate) fn issue_person_grant(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    g: PersonGrant<'_>,
) -> AppResult<TokenResponse> {
    let grant = GrantRow {
        id: g.id,
        client_id: Some(g.client.client_id.clone()),
        registration_id: None,
        user_id: Some(g.user_id.to_owned()),
        subject: g.user_id.to_owned(),
        scope: g.scope.to_owned(),
        resource: g.resource.to_owned(),
        kind: g.kind,
        created_at: ctx.now,
        revoked_at: None,
        provider_iss: g.provider.map(|(iss, _)| iss.to_owned()),
        provider_sub: g.provider.map(|(_, sub)| sub.to_owned()),
    };
    db::tokens::insert_grant(conn, &grant)?;
    let response = issue_for_grant(conn, ctx, &grant, g.scope, g.refresh)?;
    let mut detail = serde_json::json!({
        "grant_type": g.kind.as_str(),
        "grant_id": grant.id,
    });
    if let (Some(d), Value::Object(extra)) = (detail.as_object_mut(), g.detail) {
        d.extend(extra);
    }
    ctx.record(
        conn,
        AuditEvent::TokenIssued,
        AuditEntry {
            client_id: Some(&g.client.client_id),
            user_id: Some(g.user_id),
            detail: Some(detail),
            ..Default::default()
        },
    )?;
    Ok(response)
}

pub(crate) fn invalid_grant(msg: &'static str) -> AppError {
    AppError::protocol(ErrorCode::InvalidGrant, msg)
}

/// Two resource indicators name the same resource when they differ only by a trailing slash
/// (`https://api.example` and `https://api.example/`): clients add or drop it, and no server
/// serves different APIs at the two.
fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The audience for a request's `resource` (RFC 8707): one of the configured resources (in its
/// configured form), or the default one when none is named.
pub fn resolve_resource(config: &Config, requested: Option<&str>) -> AppResult<String> {
    match requested {
        None | Some("") => Ok(config.default_resource().to_owned()),
        Some(r) => {
            let known = if config.server.resources.is_empty() {
                same_resource(r, &config.server.issuer).then_some(&config.server.issuer)
            } else {
                config.server.resources.iter().find(|k| same_resource(k, r))
            };
            known.cloned().ok_or_else(|| {
                AppError::protocol(ErrorCode::InvalidTarget, format!("unknown resource {r:?}"))
            })
        }
    }
}

/// A token request's `resource` against the one its grant was made for: absent or the same,
/// else `invalid_target`.
pub(crate) fn resource_of_grant(granted: &str, requested: Option<&str>) -> AppResult<()> {
    match requested {
        None | Some("") => Ok(()),
        Some(r) if same_resource(r, granted) => Ok(()),
        Some(r) => Err(AppError::protocol(
            ErrorCode::InvalidTarget,
            format!("resource {r:?} is not the one this grant was made for"),
        )),
    }
}

/// The scopes a request may have: the requested subset of what is allowed, or all of it.
pub fn narrow_scopes(requested: Option<&str>, allowed: &Scopes) -> AppResult<Scopes> {
    match requested {
        None => Ok(allowed.clone()),
        Some(s) => {
            let scopes = Scopes::parse(s)
                .ok_or_else(|| AppError::protocol(ErrorCode::InvalidScope, "scope is malformed"))?;
            if scopes.is_subset(allowed) {
                Ok(if scopes.is_empty() {
                    allowed.clone()
                } else {
                    scopes
                })
            } else {
                Err(AppError::protocol(
                    ErrorCode::InvalidScope,
                    format!("scope not allowed: {}", scopes.missing_from(allowed)),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_resolve() {
        let config =
            Config::from_toml_overlay("[server]\nresources = [\"https://api.example\"]").unwrap();
        assert_eq!(
            resolve_resource(&config, None).unwrap(),
            "https://api.example"
        );
        assert_eq!(
            resolve_resource(&config, Some("https://api.example")).unwrap(),
            "https://api.example"
        );
        let err = resolve_resource(&config, Some("https://evil.example")).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidTarget));
        // A trailing slash added or dropped names the same resource, in its configured form.
        assert_eq!(
            resolve_resource(&config, Some("https://api.example/")).unwrap(),
            "https://api.example"
        );
        assert!(resource_of_grant("https://api.example", Some("https://api.example/")).is_ok());
        assert!(
            resource_of_grant("https://api.example", Some("https://api.example.evil")).is_err()
        );
    }
}
