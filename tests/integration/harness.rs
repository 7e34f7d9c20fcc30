//! `TestApp`: the real server on a free loopback port, against a fresh database, with a clock
//! the test controls. SQLite gets a file in a temporary directory; PostgreSQL (when
//! `AUTHMD_TEST_POSTGRES_URL` names a role that may create databases) gets its own database,
//! copied from a template migrated once per run.

use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};

use authmd::clock::FixedClock;
use authmd::config::Config;
use authmd::db::Db;
use authmd::state::AppState;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

pub const PG_ENV: &str = "AUTHMD_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT`, also the issuer.
    pub base: String,
    /// Every message the server sent, received over real SMTP.
    pub mail: crate::fakes::SmtpSink,
    pub client: reqwest::Client,
    pub clock: Arc<FixedClock>,
    pub state: AppState,
    handle: actix_web::dev::ServerHandle,
    _db: DbGuard,
}

enum DbGuard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let DbGuard::Postgres { admin_url, name } = self {
            if let Ok(mut conn) = PgConnection::establish(admin_url) {
                let _ =
                    conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // stop() sends the command at once; nothing needs to wait for it.
        drop(self.handle.stop(false));
    }
}

/// How a test's server is configured before it starts: closures over the typed `Config`, run
/// in order over the defaults. The harness then sets what it owns (issuer, database, mail).
pub struct TestAppBuilder {
    backend: Backend,
    configure: Vec<ConfigChange>,
    /// A configuration file laid over the defaults, as `serve --config FILE` would.
    file: Option<std::path::PathBuf>,
}

/// One `with_config` closure.
type ConfigChange = Box<dyn FnOnce(&mut Config) + Send>;

impl TestAppBuilder {
    /// Changes the configuration, e.g. `.with_config(|c| c.agent.claim_ttl_s = 600)`.
    pub fn with_config(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// Starts from a configuration file (relative to the crate root), read the way `serve
    /// --config` reads it; the harness then sets what it owns (issuer, database, mail).
    pub fn with_config_file(mut self, path: &str) -> Self {
        self.file = Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path));
        self
    }

    /// Turns the admin API on with `token`.
    pub fn with_admin_token(self, token: &'static str) -> Self {
        self.with_config(move |c| c.admin.token = token.to_owned())
    }

    /// Trusts a test agent provider (its issuer and JWKS URL).
    pub fn with_provider(self, provider: &crate::fakes::TestProvider) -> Self {
        let trusted = authmd::config::TrustedProvider {
            issuer: provider.issuer.clone(),
            jwks_uri: provider.jwks_uri.clone(),
        };
        self.with_config(move |c| c.agent.trusted_providers.push(trusted))
    }

    pub async fn start(self) -> TestApp {
        TestApp::start_with(self.backend, self.configure, self.file).await
    }
}

impl TestApp {
    pub async fn start(backend: Backend) -> Self {
        Self::builder(backend).start().await
    }

    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder {
            backend,
            configure: Vec::new(),
            file: None,
        }
    }

    async fn start_with(
        backend: Backend,
        configure: Vec<ConfigChange>,
        file: Option<std::path::PathBuf>,
    ) -> Self {
        capture_logs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (db_url, guard) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("authmd.db");
                let template = tokio::task::spawn_blocking(sqlite_template).await.unwrap();
                std::fs::copy(template, &path).unwrap();
                let url = format!("sqlite://{}", path.display());
                (url, DbGuard::Sqlite(dir))
            }
            Backend::Postgres => {
                let admin_url =
                    std::env::var(PG_ENV).expect("postgres tests need AUTHMD_TEST_POSTGRES_URL");
                let name = tokio::task::spawn_blocking({
                    let admin_url = admin_url.clone();
                    move || fresh_pg_database(&admin_url)
                })
                .await
                .unwrap();
                (
                    replace_db_name(&admin_url, &name),
                    DbGuard::Postgres { admin_url, name },
                )
            }
        };
        // The harness's own settings come first, so a test's closure can read them (the
        // issuer, say) and must not change them.
        let mut config = match &file {
            Some(path) => Config::load(Some(path), std::iter::empty())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            None => Config::defaults(),
        };
        config.server.issuer = base.clone();
        config.database.url = db_url;
        let mail = crate::fakes::SmtpSink::start().await;
        config.mail.transport = authmd::config::MailTransport::Smtp;
        config.mail.smtp_host = "127.0.0.1".to_owned();
        config.mail.smtp_port = mail.port;
        config.mail.smtp_tls = authmd::config::SmtpTls::None;
        config.database.max_connections = 8;
        config.server.workers = 1;
        for f in configure {
            f(&mut config);
        }
        config
            .prepare()
            .unwrap_or_else(|e| panic!("test config: {e}"));

        let clock = Arc::new(FixedClock::starting_now());
        let state = tokio::task::spawn_blocking({
            let clock = clock.clone();
            move || {
                let db = Db::connect(&config).expect("test database opens");
                db.migrate().expect("migrations run");
                AppState::new(config, db, clock).expect("state builds")
            }
        })
        .await
        .unwrap();
        let server = authmd::http::serve(state.clone(), listener).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        // Idle connections are dropped before the server's keep-alive (5 s) closes them, so a
        // request after a long pause never races the server's close on a pooled connection.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap();
        Self {
            base,
            mail,
            client,
            clock,
            state,
            handle,
            _db: guard,
        }
    }

    pub fn now(&self) -> i64 {
        authmd::clock::Clock::now(self.clock.as_ref())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    /// GETs `path` with a bearer credential and reads the JSON answer, which must be a 200.
    pub async fn get_value_as(&self, path: &str, bearer: &str) -> serde_json::Value {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    /// POSTs `body` as JSON and reads the JSON answer, whatever its status.
    pub async fn post_value(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        self.post_json(path, body).await.json().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// Everything the servers of this test binary logged (authmd at debug, the rest at info), so
/// tests can check that no secret ever reaches a log line.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("authmd=debug,info")
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

/// The log lines captured so far.
pub fn logged() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// Whether PostgreSQL tests should run.
pub fn postgres_enabled() -> bool {
    std::env::var(PG_ENV).is_ok_and(|v| !v.is_empty())
}

pub fn replace_db_name(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("AUTHMD_TEST_POSTGRES_URL is a URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// Migrates a template database and gives it its signing keys. Every test starts from a copy,
/// so an RSA key (slow to make in a debug build) is generated once per run rather than once per
/// test; `binary.rs` starts the real binary on empty databases, where the keys are made as in
/// production.
fn prepare_template(config: &Config) {
    let db = Db::connect(config).unwrap();
    db.migrate().unwrap();
    let now = authmd::clock::Clock::now(&authmd::clock::SystemClock);
    authmd::domain::keys::ensure_signing_key(&mut db.get().unwrap(), now).unwrap();
}

/// The per-run SQLite template: migrated, keys made, every connection closed.
fn sqlite_template() -> std::path::PathBuf {
    static TEMPLATE: OnceLock<std::path::PathBuf> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            // Kept for the whole run: the directory is never dropped.
            let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
            let path = dir.path().join("template.db");
            let mut config = Config::defaults();
            config.database.url = format!("sqlite://{}", path.display());
            config.database.max_connections = 1;
            prepare_template(&config);
            // Into the main file, so copying that one file copies everything.
            let mut conn =
                diesel::SqliteConnection::establish(&path.display().to_string()).unwrap();
            conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
                .unwrap();
            path
        })
        .clone()
}

/// Creates the per-run template once (migrated), then a fresh copy for one test.
pub fn fresh_pg_database(admin_url: &str) -> String {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    // CREATE DATABASE … TEMPLATE fails while another copy from the same template is running.
    static CREATE_LOCK: Mutex<()> = Mutex::new(());
    let _guard = CREATE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let template = TEMPLATE.get_or_init(|| {
        let name = format!("authmd_tpl_{}_{}", std::process::id(), rand_suffix());
        let mut admin =
            PgConnection::establish(admin_url).expect("connect to AUTHMD_TEST_POSTGRES_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        {
            let mut config = Config::defaults();
            config.database.url = replace_db_name(admin_url, &name);
            config.database.max_connections = 1;
            prepare_template(&config);
        }
        name
    });
    let name = format!("authmd_t_{}", rand_suffix());
    let mut admin = PgConnection::establish(admin_url).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .unwrap();
    name
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Generates one `#[tokio::test]` per backend for each named `async fn(Backend)`.
/// PostgreSQL variants return early (and say so) when `AUTHMD_TEST_POSTGRES_URL` is unset.
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if !$crate::harness::postgres_enabled() {
                        eprintln!("skipped: {} not set", $crate::harness::PG_ENV);
                        return;
                    }
                    super::$name($crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}
