//! Everything a request handler needs, built explicitly at start-up: no globals.

use std::sync::{Arc, RwLock};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::db::batch::{Batched, BatchedWrites};
use crate::db::point_reads::{ClientReads, IntrospectionReads};
use crate::db::tokens::IssueInserts;
use crate::db::Db;
use crate::domain::cimd::DocumentFetcher;
use crate::domain::discovery::Discovery;
use crate::domain::keys::{self, KeyRing};
use crate::domain::mail::Mailer;
use crate::domain::providers::ProviderKeys;
use crate::domain::secrets::constant_time_eq;
use crate::error::AppResult;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub keys: KeyStore,
    pub clock: Arc<dyn Clock>,
    pub discovery: Arc<Discovery>,
    pub providers: Arc<ProviderKeys>,
    /// Client ID Metadata Documents, fetched and cached.
    pub documents: Arc<DocumentFetcher>,
    pub mailer: Arc<Mailer>,
    /// Keys CSRF tokens (a database secret, so every instance accepts every instance's forms).
    pub csrf_key: Arc<ring::hmac::Key>,
    /// Introspection's first reads, batched across requests.
    pub introspection_reads: Arc<Batched<IntrospectionReads>>,
    /// Client authentications' reads (the client and its failure window), batched across
    /// requests: client_credentials on PostgreSQL reads its client this way.
    pub client_reads: Arc<Batched<ClientReads>>,
    /// client_credentials' inserts, batched across requests: PostgreSQL only (`None` on
    /// SQLite, where they are jobs of the writer thread).
    pub token_issues: Option<Arc<BatchedWrites<IssueInserts>>>,
}

impl AppState {
    /// Connects to nothing: takes an open, migrated database and a clock.
    pub fn new(config: Config, db: Db, clock: Arc<dyn Clock>) -> AppResult<Self> {
        let now = clock.now();
        let (ring, csrf_secret) = {
            let mut conn = db.get()?;
            keys::ensure_signing_key(&mut conn, now)?;
            (
                keys::load_ring(&mut conn, now, &config)?,
                keys::server_secret(&mut conn, now, "csrf")?,
            )
        };
        let discovery = Arc::new(Discovery::build(&config));
        let mailer = Arc::new(Mailer::new(&config.mail));
        Ok(Self {
            csrf_key: Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &csrf_secret)),
            introspection_reads: Arc::new(Batched::new(&db)),
            client_reads: Arc::new(Batched::new(&db)),
            token_issues: BatchedWrites::for_backend(&db).map(Arc::new),
            providers: Arc::new(ProviderKeys::new()),
            documents: Arc::new(DocumentFetcher::new(&config)?),
            mailer,
            config: Arc::new(config),
            db,
            keys: KeyStore::new(ring),
            clock,
            discovery,
        })
    }

    pub fn with_system_clock(config: Config, db: Db) -> AppResult<Self> {
        Self::new(config, db, Arc::new(SystemClock))
    }

    /// Whether `presented` is the configured admin token (constant time; never when unset).
    pub fn admin_token_matches(&self, presented: &str) -> bool {
        let configured = &self.config.admin.token;
        !configured.is_empty() && constant_time_eq(configured.as_bytes(), presented.as_bytes())
    }

    /// Connections the storage pool may open (sizes the server's blocking threads).
    pub fn storage_connections(&self) -> u32 {
        self.db.max_size()
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Re-reads the keys from the database, so a `keys rotate` run by another process (or
    /// another instance) is picked up.
    pub async fn reload_keys(&self) -> AppResult<()> {
        let config = self.config.clone();
        let now = self.now();
        let ring = self
            .db
            .run(move |conn| keys::load_ring(conn, now, &config))
            .await?;
        self.keys.replace(ring);
        Ok(())
    }
}

impl AppState {
    /// Periodic housekeeping: expires unclaimed registrations (recording `registration.expired`)
    /// and drops rate-limit windows and replay records nothing can read any more.
    pub async fn sweep(&self) -> AppResult<usize> {
        let (config, keys, now) = (self.config.clone(), self.keys.current(), self.now());
        self.db
            .write(move |conn| {
                let audit = crate::domain::audit::AuditContext {
                    actor: Some("sweep".to_owned()),
                    ..Default::default()
                };
                let ctx = crate::domain::context::Ctx {
                    config: &config,
                    keys: &keys,
                    now,
                    audit: &audit,
                };
                let expired = crate::domain::agents::expire_unclaimed(conn, &ctx)?;
                crate::domain::ratelimit::purge(conn, &config.rate_limit, now)?;
                crate::domain::idempotency::purge(conn, now)?;
                crate::domain::device::purge(conn, now)?;
                crate::domain::signup::purge(conn, now)?;
                Ok(expired)
            })
            .await
    }
}

/// The current key ring, swapped whole on reload.
#[derive(Clone)]
pub struct KeyStore(Arc<RwLock<Arc<KeyRing>>>);

impl KeyStore {
    pub fn new(ring: KeyRing) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(ring))))
    }

    pub fn current(&self) -> Arc<KeyRing> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            // A panic while holding the lock cannot leave a half-written Arc behind.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, ring: KeyRing) {
        let ring = Arc::new(ring);
        match self.0.write() {
            Ok(mut guard) => *guard = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
    }
}
