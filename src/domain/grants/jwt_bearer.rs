//! The JWT-bearer grant (RFC 7523) with either assertion authmd accepts: an identity assertion
//! it signed for an agent registration, or a trusted provider's ID-JAG (verified against the
//! provider's keys before the database call).

use serde_json::json;

use super::{issue_person_grant, narrow_scopes, resolve_resource, PersonGrant};
use crate::db::agents::RegistrationRow;
use crate::db::status::{GrantKind, Protocol};
use crate::db::tokens::GrantRow;
use crate::db::{self, write_checked, write_tx, DbConn};
use crate::domain::agents;
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::clients::Client;
use crate::domain::context::Ctx;
use crate::domain::credentials::mint::AssertionClaims;
use crate::domain::credentials::{self, issue_for_grant, TokenResponse};
use crate::domain::discovery::GRANT_JWT_BEARER;
use crate::domain::providers::VerifiedIdJag;
use crate::domain::scope::Scopes;
use crate::domain::secrets::time_ordered_id;
use crate::error::{AppError, AppResult, ErrorCode};

fn not_registered() -> AppError {
    AppError::protocol(
        ErrorCode::UnauthorizedClient,
        "client is not registered for the jwt-bearer grant",
    )
}

/// The JWT-bearer grant with an identity assertion authmd issued: single use (jti), then an
/// access token and a rotating refresh token for the registration. `checked` is the assertion's
/// signature and expiry check, done before the write ([`crate::domain::endpoints::precheck`]);
/// its failure is reported here, after the client checks, as it always was.
pub fn exchange_identity_assertion(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: Option<&Client>,
    checked: AppResult<AssertionClaims>,
    scope: Option<&str>,
    resource: Option<&str>,
) -> AppResult<TokenResponse> {
    let bad = |m: &'static str| AppError::protocol(ErrorCode::InvalidGrant, m);
    if client.is_some_and(|c| !c.allows_grant(GRANT_JWT_BEARER)) {
        return Err(not_registered());
    }
    let audience = resolve_resource(ctx.config, resource)?;
    let claims = checked?;
    // Every refusal is decided before the first write, so inside SQLite's writer batch the
    // exchange needs no savepoint (see `write_checked`).
    let check = |conn: &mut DbConn| {
        let reg = db::agents::find_registration(conn, &claims.registration_id)?
            .ok_or_else(|| bad("assertion names no registration"))?;
        // v0.1 assertions are single use; a v0.6 one is the agent's way back to new access
        // tokens (that path has no refresh token), so it is re-exchangeable until it expires,
        // unless revoked (RFC 7009 records its jti) or superseded by the claim.
        let v06 = reg.protocol == Protocol::V06;
        if db::agents::jti_seen(conn, &claims.iss, &claims.jti)? {
            return Err(bad(if v06 {
                "assertion was revoked"
            } else {
                "assertion was already used (jti replay)"
            }));
        }
        if v06 && claims.pre_claim && reg.claimed_at.is_some() {
            return Err(bad(
                "the registration was claimed: use the identity assertion the claim grant returned",
            ));
        }
        if !credentials::is_live(&reg, ctx.now) {
            return Err(bad("the registration is no longer active"));
        }
        let granted = Scopes::parse(&reg.scopes).unwrap_or_default();
        let scopes = narrow_scopes(scope, &granted)?.to_string();
        Ok((reg, v06, scopes))
    };
    let apply = |conn: &mut DbConn, (reg, v06, scopes): (RegistrationRow, bool, String)| {
        // A concurrent exchange of the same assertion on PostgreSQL can record its jti between
        // the check and here; SQLite's one writer cannot interleave.
        if !v06 && !db::agents::record_jti(conn, &claims.iss, &claims.jti, claims.exp)? {
            return Err(bad("assertion was already used (jti replay)"));
        }
        let grant = GrantRow {
            id: time_ordered_id("gr_", ctx.now),
            client_id: None,
            registration_id: Some(reg.id.clone()),
            user_id: reg.user_id.clone(),
            subject: credentials::subject_of(&reg).to_owned(),
            scope: reg.scopes.clone(),
            resource: audience.clone(),
            kind: GrantKind::JwtBearer,
            created_at: ctx.now,
            revoked_at: None,
            provider_iss: None,
            provider_sub: None,
        };
        db::tokens::insert_grant(conn, &grant)?;
        let response = issue_for_grant(conn, ctx, &grant, &scopes, !v06)?;
        ctx.record(
            conn,
            AuditEvent::TokenIssued,
            AuditEntry {
                registration_id: Some(&reg.id),
                user_id: reg.user_id.as_deref(),
                detail: Some(json!({ "grant_type": GRANT_JWT_BEARER, "grant_id": grant.id })),
                ..Default::default()
            },
        )?;
        Ok(response)
    };
    write_checked(conn, check, apply)
}

/// The JWT-bearer grant with a provider's ID-JAG (verified): the client must be registered for
/// the grant and be the one the ID-JAG names; an access token for the matched user, under a
/// grant that remembers `(iss, sub)` so the provider's logout revokes it. Never a refresh token.
pub fn exchange_id_jag(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    client: &Client,
    v: &VerifiedIdJag,
    scope: Option<&str>,
    resource: Option<&str>,
) -> AppResult<TokenResponse> {
    if !client.allows_grant(GRANT_JWT_BEARER) {
        return Err(not_registered());
    }
    if v.client_id.as_deref() != Some(client.client_id.as_str()) {
        return Err(AppError::protocol(
            ErrorCode::InvalidGrant,
            "the ID-JAG's client_id is not the authenticated client",
        ));
    }
    let allowed = crate::domain::scope::assertion_scopes(&client.scopes(), v.scope.as_deref())?;
    let scopes = narrow_scopes(scope, &allowed)?.to_string();
    let audience = resolve_resource(ctx.config, resource)?;
    write_tx(conn, |conn| {
        agents::remember_jti(conn, &v.iss, &v.jti, v.exp).map_err(|_| {
            AppError::protocol(
                ErrorCode::InvalidGrant,
                "the ID-JAG was already used (jti replay)",
            )
        })?;
        let user_id = agents::match_user(conn, ctx.now, v)?;
        issue_person_grant(
            conn,
            ctx,
            PersonGrant {
                id: time_ordered_id("gr_", ctx.now),
                client,
                user_id: &user_id,
                scope: &scopes,
                resource: &audience,
                kind: GrantKind::JwtBearer,
                refresh: false,
                provider: Some((&v.iss, &v.sub)),
                detail: json!({ "issuer": v.iss }),
            },
        )
    })
}
