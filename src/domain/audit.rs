//! The audit log: what changed, when, by whom, from where — never a secret.

use serde_json::Value;

use crate::clock::UnixTime;
use crate::db::{self, DbConn};
use crate::error::AppResult;

/// The audit event names (their dotted forms are the stored and reported names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvent {
    RegistrationCreated,
    ClaimRequested,
    OtpGenerated,
    ClaimConfirmed,
    ClaimCancelled,
    RegistrationExpired,
    RegistrationRevoked,
    TokenIssued,
    TokenRefreshed,
    TokenRevoked,
    RefreshReuseDetected,
    CodeReuseDetected,
    /// A person approved or denied a device authorization request.
    DeviceDecided,
    ClientCreated,
    KeyRotated,
    WorkspaceCreated,
    WorkspaceDeleted,
    WorkspaceMemberAdded,
    WorkspaceMemberRemoved,
    UserCreated,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        use AuditEvent::*;
        match self {
            RegistrationCreated => "registration.created",
            ClaimRequested => "claim.requested",
            OtpGenerated => "otp.generated",
            ClaimConfirmed => "claim.confirmed",
            ClaimCancelled => "claim.cancelled",
            RegistrationExpired => "registration.expired",
            RegistrationRevoked => "registration.revoked",
            TokenIssued => "token.issued",
            TokenRefreshed => "token.refreshed",
            TokenRevoked => "token.revoked",
            RefreshReuseDetected => "refresh.reuse_detected",
            CodeReuseDetected => "code.reuse_detected",
            DeviceDecided => "device.decided",
            ClientCreated => "client.created",
            KeyRotated => "key.rotated",
            WorkspaceCreated => "workspace.created",
            WorkspaceDeleted => "workspace.deleted",
            WorkspaceMemberAdded => "workspace.member_added",
            WorkspaceMemberRemoved => "workspace.member_removed",
            UserCreated => "user.created",
        }
    }
}

/// Who and where: filled by the HTTP layer (IP) or the CLI (`actor = "cli"`).
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    pub actor: Option<String>,
    pub ip: Option<String>,
    /// The request's id (its `X-Request-Id`), so a row leads to the request's log lines.
    pub request_id: Option<String>,
}

impl AuditContext {
    pub fn cli() -> Self {
        Self {
            actor: Some("cli".to_owned()),
            ..Default::default()
        }
    }
}

/// One audit row; ids are optional and `detail` must hold nothing secret.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry<'a> {
    pub registration_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub detail: Option<Value>,
}

pub fn record(
    conn: &mut DbConn,
    now: UnixTime,
    ctx: &AuditContext,
    event: AuditEvent,
    entry: AuditEntry<'_>,
) -> AppResult<()> {
    db::audit::insert(conn, &row(now, ctx, event, entry))?;
    Ok(())
}

/// The audit row [`record`] writes, for a caller that inserts it with the change it records.
pub fn row(
    now: UnixTime,
    ctx: &AuditContext,
    event: AuditEvent,
    entry: AuditEntry<'_>,
) -> db::audit::NewAuditRow {
    db::audit::NewAuditRow {
        event: event.as_str(),
        created_at: now,
        actor: ctx.actor.clone(),
        ip: ctx.ip.clone(),
        request_id: ctx.request_id.clone(),
        registration_id: entry.registration_id.map(str::to_owned),
        client_id: entry.client_id.map(str::to_owned),
        user_id: entry.user_id.map(str::to_owned),
        detail: entry
            .detail
            .unwrap_or(Value::Object(Default::default()))
            .to_string(),
    }
}
