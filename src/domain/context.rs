//! What every domain operation that changes state needs besides the connection: the
//! configuration, the signing keys, the injected time, and who is asking (for audit rows).

use crate::clock::UnixTime;
use crate::config::Config;
use crate::domain::audit::AuditContext;
use crate::domain::keys::KeyRing;

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
}
