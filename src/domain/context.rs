//! What every domain operation that changes state needs besides the connection: the
//! configuration, the signing keys, the injected time, and who is asking (for audit rows).

use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::agents::RegistrationRow;
use crate::db::DbConn;
use crate::domain::audit::{self, AuditContext, AuditEntry, AuditEvent};
use crate::domain::keys::KeyRing;
use crate::error::AppResult;

pub struct Ctx<'a> {
    pub config: &'a Config,
    pub keys: &'a KeyRing,
    pub now: UnixTime,
    pub audit: &'a AuditContext,
}

impl Ctx<'_> {
    /// An absolute URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.server.issuer)
    }

    /// Writes one audit row for this request (its actor, address and request id), now.
    pub fn record(
        &self,
        conn: &mut DbConn,
        event: AuditEvent,
        entry: AuditEntry<'_>,
    ) -> AppResult<()> {
        audit::record(conn, self.now, self.audit, event, entry)
    }

    /// One audit row about an agent registration (its id and user).
    pub fn record_registration(
        &self,
        conn: &mut DbConn,
        event: AuditEvent,
        reg: &RegistrationRow,
        detail: serde_json::Value,
    ) -> AppResult<()> {
        self.record(
            conn,
            event,
            AuditEntry {
                registration_id: Some(&reg.id),
                user_id: reg.user_id.as_deref(),
                detail: Some(detail),
                ..Default::default()
            },
        )
    }
}
