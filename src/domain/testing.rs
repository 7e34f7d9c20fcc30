//! A domain test fixture: a migrated SQLite database in a temporary directory, the default
//! configuration and a key ring, so protocol flows can be tested without HTTP.

use crate::clock::UnixTime;
use crate::config::Config;
use crate::db::{Db, DbManager};
use crate::domain::audit::AuditContext;
use crate::domain::context::Ctx;
use crate::domain::keys::KeyRing;

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub db: Db,
    pub config: Config,
    pub keys: KeyRing,
    pub audit: AuditContext,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.database.url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&config).unwrap();
        db.migrate().unwrap();
        Self {
            _dir: dir,
            db,
            config,
            keys: KeyRing::for_tests(),
            audit: AuditContext::cli(),
        }
    }

    pub fn conn(&self) -> r2d2::PooledConnection<DbManager> {
        self.db.get().unwrap()
    }

    /// The context of a request made at `now`.
    pub fn ctx(&self, now: UnixTime) -> Ctx<'_> {
        Ctx {
            config: &self.config,
            keys: &self.keys,
            now,
            audit: &self.audit,
        }
    }
}
