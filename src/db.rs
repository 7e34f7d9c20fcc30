//! Storage: the connection type, the pool, migrations, and the queries in `db/*`.
//!
//! Queries take `&mut DbConn` and never decide transactions or build HTTP responses; the domain
//! function that calls them does. The backend is chosen from the URL scheme by [`DbManager`]
//! (not `MultiConnection::establish`, which tries each backend and hides why one failed).
//!
//! Every row type that is inserted says `treat_none_as_default_value = false`: a `None` is
//! written as `NULL` (no nullable column has another default). With diesel's default, `None`
//! means the column's `DEFAULT`, so the statement's text depends on which fields are empty: its
//! prepared statement is found by rendering that text on every insert, and on SQLite, which
//! has no `DEFAULT` keyword, a multi-row insert becomes one statement per row inside a
//! savepoint of its own.

pub mod accounts;
pub mod admin;
pub mod agents;
pub mod audit;
pub mod batch;
pub mod clients;
pub mod device;
pub mod keys;
pub mod oauth;
pub mod point_reads;
pub mod ratelimit;
pub mod schema;
pub mod status;
pub mod tokens;
pub mod users;
pub mod workspaces;

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::{Config, DatabaseUrl};
use crate::error::{AppError, AppResult};

/// Runs a diesel query on the concrete connection inside [`DbConn`]. Through
/// `MultiConnection`, every execution renders its SQL again and walks each bind through an
/// extra backend layer, even when the prepared statement is cached (a measurable share of the
/// writer thread's time: `bench/README.md`). The hot queries (token issuance and
/// introspection) use this; the body is written once and compiled for each backend.
macro_rules! native {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite($c) => $body,
            $crate::db::DbConn::Pg($c) => $body,
        }
    };
}
pub(crate) use native;

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// One connection to either backend; queries written once against it run on both.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

/// Why a database could not be reached or prepared. Messages name the backend, never a password.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("cannot open {backend} database: {message}")]
    Connect {
        backend: &'static str,
        message: String,
    },
    #[error("migrations failed: {0}")]
    Migrate(String),
    #[error("connection pool: {0}")]
    Pool(String),
}

/// r2d2 manager that opens the backend the URL names.
#[derive(Debug, Clone)]
pub struct DbManager {
    url: DatabaseUrl,
}

impl DbManager {
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url }
    }

    fn open(&self) -> Result<DbConn, DbSetupError> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let path_str = path.to_string_lossy();
                let mut conn =
                    SqliteConnection::establish(&path_str).map_err(|e| DbSetupError::Connect {
                        backend: "SQLite",
                        message: e.to_string(),
                    })?;
                // busy_timeout first: switching to WAL itself needs the lock another
                // connection may hold. The server's writer never checkpoints (a thread of its
                // own does, see `checkpoints`); other writers (the CLI) checkpoint every 10,000
                // WAL pages (~40 MiB) instead of 1,000, each checkpoint syncing in the
                // committing thread.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 5000;
                     PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA wal_autocheckpoint = 10000;",
                )
                .map_err(|e| DbSetupError::Connect {
                    backend: "SQLite",
                    message: e.to_string(),
                })?;
                Ok(DbConn::Sqlite(conn))
            }
            DatabaseUrl::Postgres(url) => {
                PgConnection::establish(url)
                    .map(DbConn::Pg)
                    .map_err(|e| DbSetupError::Connect {
                        backend: "PostgreSQL",
                        message: redact_url_password(&e.to_string(), url),
                    })
            }
        }
    }
}

impl DbManager {
    /// The writer thread's connection: it never checkpoints (see [`checkpoints`]).
    ///
    /// Its statement journal stays in memory (`temp_store = MEMORY`): every write of a batch
    /// is a savepoint of the batch's transaction, and SQLite copies each page a savepoint
    /// changes to that journal, which past 64 KiB it spills to a temporary file and then
    /// writes with a system call per page. That was ~15% of the writer's time on
    /// registrations (`bench/README.md`, tenth session). The journal holds at most the pages
    /// one batch changes.
    ///
    /// When the WAL starts over (see [`checkpoints`]) it is cut back to
    /// [`WAL_RESTART_FRAMES`] pages if a burst made it longer, so its file is bounded too.
    fn open_writer(&self) -> AppResult<DbConn> {
        let mut conn = self.open_checkpointer()?;
        conn.batch_execute(&format!(
            "PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY;
             PRAGMA journal_size_limit = {};",
            i64::from(WAL_RESTART_FRAMES) * 4096
        ))?;
        Ok(conn)
    }

    fn open_checkpointer(&self) -> AppResult<DbConn> {
        self.open()
            .map_err(|e| AppError::Unavailable(e.to_string()))
    }
}

/// Connections of PostgreSQL's batch threads: one per kind of batch (introspection's reads,
/// client authentication's reads, token inserts), each thread holding one while it runs a batch.
/// They are not counted in `database.max_connections`.
const BATCH_CONNECTIONS: u32 = 3;

/// How the batch threads' PostgreSQL connections plan, set once per connection.
///
/// A batched statement has a fixed text and is prepared once per connection, but PostgreSQL
/// planned it again for every batch: a custom plan for the bound arrays looks cheaper than the
/// generic one, which assumes a hundred keys. That planning was 41 % of PostgreSQL's CPU under
/// introspection and 23 % under client_credentials (`bench/README.md`, seventeenth session).
/// A forced generic plan alone is planned once, but it is planned for the table statistics of
/// that moment and kept until the next `ANALYZE`: made while a table is small it scans the
/// table into a hash join, and stays so while the table grows (introspection at 1.3k instead of
/// 33k req/s for a whole benchmark round, sixteenth session). The batched statements only look
/// rows up by primary key, so here sequential scans, hash joins and merge joins are ruled out:
/// the one plan left is a nested loop over primary-key index scans, whatever the statistics
/// say. A unit test checks the plans use the indexes on an empty, analyzed database and after
/// it has grown. Every other statement runs on the main pool and plans as PostgreSQL chooses.
const BATCH_PLAN_SETTINGS: &str = "SET plan_cache_mode = force_generic_plan;
     SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off";

/// Applies [`BATCH_PLAN_SETTINGS`] to each new connection of the batch pool.
#[derive(Debug)]
struct BatchPlans;

impl r2d2::CustomizeConnection<DbConn, DbSetupError> for BatchPlans {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), DbSetupError> {
        match conn {
            DbConn::Pg(c) => {
                c.batch_execute(BATCH_PLAN_SETTINGS)
                    .map_err(|e| DbSetupError::Connect {
                        backend: "PostgreSQL",
                        message: e.to_string(),
                    })
            }
            DbConn::Sqlite(_) => Ok(()),
        }
    }
}

impl r2d2::ManageConnection for DbManager {
    type Connection = DbConn;
    type Error = DbSetupError;

    fn connect(&self) -> Result<DbConn, DbSetupError> {
        self.open()
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), DbSetupError> {
        conn.batch_execute("SELECT 1")
            .map_err(|e| DbSetupError::Connect {
                backend: self.backend_name(),
                message: e.to_string(),
            })
    }

    /// A connection left inside a transaction (a panic unwound through it) is not reused.
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        std::thread::panicking() || diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

impl DbManager {
    fn backend_name(&self) -> &'static str {
        match self.url {
            DatabaseUrl::Sqlite(_) => "SQLite",
            DatabaseUrl::Postgres(_) => "PostgreSQL",
        }
    }
}

/// libpq may quote the connection string in its errors; keep any password out of them.
fn redact_url_password(message: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(password) if !password.is_empty() => message.replace(&password, "***"),
        _ => message.to_owned(),
    }
}

/// A shareable pool; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<DbManager>,
    /// The connections the batch threads run their statements on (`batch`): on PostgreSQL a
    /// pool of its own, planned as [`BatchPlans`] says; on SQLite `pool` itself.
    batch_pool: r2d2::Pool<DbManager>,
    manager: DbManager,
    backend: &'static str,
    /// SQLite's group-commit writer, started on first use: the process's one SQLite writer
    /// (see [`write_tx`]).
    writer: Arc<OnceLock<mpsc::Sender<Job>>>,
}

/// A write handed to the SQLite writer thread: runs inside the batch's transaction and returns
/// the database's own failure, if it had one (the batch then fails with it), and what to do
/// once the batch's commit has succeeded (`Ok`) or failed (`Err`). Given the batch's failure
/// instead of a connection (no connection could be opened, or an earlier write of the batch
/// failed), it runs nothing and only says how to answer.
type Job = Box<dyn FnOnce(Result<&mut DbConn, &AppError>) -> (Option<AppError>, Deliver) + Send>;
type Deliver = Box<dyn FnOnce(Result<(), &AppError>) + Send>;

/// Most writes one batch commits together.
const MAX_BATCH: usize = 128;

impl Db {
    /// Opens the pool, creating the SQLite file's directory if needed. Does not migrate.
    pub fn connect(config: &Config) -> Result<Self, DbSetupError> {
        let url = config.database_url();
        if let DatabaseUrl::Sqlite(path) = &url {
            create_parent_dir(path)?;
        }
        let size = match config.database.max_connections {
            0 => (std::thread::available_parallelism().map_or(2, |n| n.get() as u32) * 4).max(8),
            n => n,
        };
        let backend = match url {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        };
        let manager = DbManager::new(url);
        let writer_manager = manager.clone();
        // Open one connection eagerly so a bad URL fails start-up with its real cause instead
        // of r2d2's generic time-out.
        drop(manager.open()?);
        let builder = || {
            r2d2::Pool::builder()
                // No background replenishing: a CLI command may exit while r2d2 would still be
                // connecting on another thread, and libpq torn down mid-connect can crash the
                // exit.
                .min_idle(Some(0))
                // Connections are checked when they fail, not with an extra round trip per
                // checkout: that round trip was a second query on every introspection.
                .test_on_check_out(false)
                .connection_timeout(Duration::from_secs(config.database.connection_timeout_s))
        };
        let pool = builder()
            .max_size(size)
            .build(manager.clone())
            .map_err(|e| DbSetupError::Pool(e.to_string()))?;
        let batch_pool = match backend {
            "postgres" => builder()
                .max_size(BATCH_CONNECTIONS)
                .connection_customizer(Box::new(BatchPlans))
                .build(manager)
                .map_err(|e| DbSetupError::Pool(e.to_string()))?,
            _ => pool.clone(),
        };
        Ok(Self {
            manager: writer_manager,
            backend,
            writer: Arc::default(),
            pool,
            batch_pool,
        })
    }

    /// The connections for batch threads (`batch::Batcher`).
    pub(crate) fn batch_pool(&self) -> &r2d2::Pool<DbManager> {
        &self.batch_pool
    }

    /// A connection for synchronous callers (CLI, migrations, the blocking closure of [`run`]).
    ///
    /// [`run`]: Db::run
    pub fn get(&self) -> AppResult<r2d2::PooledConnection<DbManager>> {
        Ok(self.pool.get()?)
    }

    /// Runs blocking database work on the blocking thread pool, never on an actix worker.
    pub async fn run<T, F>(&self, f: F) -> AppResult<T>
    where
        F: FnOnce(&mut DbConn) -> AppResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| AppError::internal(format!("blocking task failed: {e}")))?
    }

    /// Runs a short read-only query set (point reads by key). On SQLite, when a pooled connection
    /// is idle, it runs right here on the calling worker: a primary-key read on a local WAL file
    /// takes microseconds and never waits for writers, while handing it to a blocking thread and
    /// back cost more than the read itself (`bench/README.md`). Otherwise, and always on PostgreSQL (a network round trip), as [`run`].
    ///
    /// `f` must not write: a write could wait for SQLite's lock on an async worker.
    ///
    /// [`run`]: Db::run
    pub async fn read<T, F>(&self, f: F) -> AppResult<T>
    where
        F: FnOnce(&mut DbConn) -> AppResult<T> + Send + 'static,
        T: Send + 'static,
    {
        if self.backend == "sqlite" {
            if let Some(mut conn) = self.pool.try_get() {
                return f(&mut conn);
            }
        }
        self.run(f).await
    }

    /// Runs a write (token issuance, registration, revocation: every write the server makes). On
    /// SQLite, all writes go to one writer thread, which commits whatever is queued in one
    /// transaction: one WAL commit and one lock hand-over for many writes instead of one each
    /// (`bench/README.md`). Each write keeps the meaning it has
    /// alone: its own `write_tx` becomes a savepoint, rolled back when it fails, and what it
    /// writes outside one stays even when it then returns an error (a replayed code revokes its
    /// grant and answers `invalid_grant`). A database error in any write, or a failed commit,
    /// fails the whole batch. Each caller gets its answer only after the commit. On PostgreSQL,
    /// as [`run`].
    ///
    /// `f` must be quick (no password hashing, no network): the writes queued behind it wait.
    ///
    /// [`run`]: Db::run
    pub async fn write<T, F>(&self, f: F) -> AppResult<T>
    where
        F: FnOnce(&mut DbConn) -> AppResult<T> + Send + 'static,
        T: Send + 'static,
    {
        if self.backend != "sqlite" {
            return self.run(f).await;
        }
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let (result, db_failed) = match conn {
                Ok(conn) => {
                    let result = f(conn);
                    let db_failed = match &result {
                        Err(e @ (AppError::Internal(_) | AppError::Unavailable(_))) => {
                            // Its caller will see the batch's failure; the cause is logged here.
                            tracing::error!(error = %e, "a batched write failed; failing its batch");
                            Some(batch_failed(e))
                        }
                        _ => None,
                    };
                    (result, db_failed)
                }
                // Not run; the batch's failure is the answer (`deliver` is given it).
                Err(e) => (Err(batch_failed(e)), None),
            };
            let deliver: Deliver = Box::new(move |commit: Result<(), &AppError>| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(e) => Err(batch_failed(e)),
                };
                let _ = answer_tx.send(answer);
            });
            (db_failed, deliver)
        });
        self.writer()
            .send(job)
            .map_err(|_| AppError::internal("the SQLite writer has stopped"))?;
        answer_rx
            .await
            .map_err(|_| AppError::internal("a batched write was abandoned"))?
    }

    fn writer(&self) -> &mpsc::Sender<Job> {
        self.writer.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let manager = self.manager.clone();
            // The thread ends when the last `Db` clone (and so the last sender) is dropped.
            let spawned = std::thread::Builder::new()
                .name("authmd-sqlite-writer".to_owned())
                .spawn(move || write_batches(&manager, &rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the SQLite writer thread");
            }
            tx
        })
    }

    /// Runs pending migrations; returns how many ran.
    pub fn migrate(&self) -> Result<usize, DbSetupError> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| DbSetupError::Pool(e.to_string()))?;
        run_migrations(&mut conn)
    }

    /// `(open connections, idle connections)` of the pool now.
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }

    /// Connections the pool may open.
    pub fn max_size(&self) -> u32 {
        self.pool.max_size()
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }
}

/// The SQLite writer thread: takes what is queued (up to [`MAX_BATCH`]), runs it in one
/// transaction, commits, then answers every caller.
///
/// The thread keeps one connection of its own (its prepared statements stay warm, and it never
/// waits for the pool); a connection that failed is closed and opened again for the next batch.
/// A larger page cache for it was tried (32 MiB) and bought nothing measurable, so it has
/// SQLite's default and the server's memory stays small.
fn write_batches(manager: &DbManager, jobs: &mpsc::Receiver<Job>) {
    let mut connection: Option<DbConn> = None;
    // Checkpoints run on a thread of their own, told of each commit; it ends with this one.
    // It holds `gate` while the writer must not commit (see `checkpoints`).
    let (committed, commits) = mpsc::sync_channel::<()>(1);
    let gate = Arc::new(Mutex::new(()));
    let (checkpointer, checkpoint_gate) = (manager.clone(), Arc::clone(&gate));
    let spawned = std::thread::Builder::new()
        .name("authmd-sqlite-checkpoint".to_owned())
        .spawn(move || checkpoints(&checkpointer, &commits, &checkpoint_gate));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the SQLite checkpoint thread");
    }
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        crate::metrics::metrics()
            .batch_size
            .get_or_create(&crate::metrics::BatchLabels {
                kind: "sqlite_writes",
            })
            .observe(batch.len() as f64);
        let mut delivers: Vec<Deliver> = Vec::with_capacity(batch.len());
        let conn = match connection.take() {
            Some(conn) => Ok(conn),
            None => manager.open_writer(),
        };
        let mut pending = batch.into_iter();
        let committing = gate.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = conn.and_then(|mut conn| {
            // A panic in one write abandons the batch (its callers see an error) without
            // ending the thread; the connection, left inside a transaction, is discarded.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                write_tx(&mut conn, |conn| {
                    for job in pending.by_ref() {
                        let (db_failed, deliver) = job(Ok(conn));
                        delivers.push(deliver);
                        // SQLite may have rolled the whole transaction back (disk full, I/O):
                        // later writes would run outside it. Fail the batch instead, as that
                        // write failed: an outage stays a retryable 503 for every caller.
                        if let Some(e) = db_failed {
                            return Err(e);
                        }
                    }
                    Ok(())
                })
            }))
            .unwrap_or_else(|_| Err(AppError::internal("a batched write panicked")))
            .map(|()| connection = Some(conn))
        });
        drop(committing);
        if let Err(e) = &outcome {
            // The writes the batch never reached (no connection, or a write before them failed)
            // are answered with its failure too: dropped, each would answer a 500 for what is
            // the database's outage.
            delivers.extend(pending.map(|job| job(Err(e)).1));
            tracing::error!(error = %e, writes = delivers.len(), "batched commit failed");
        }
        for deliver in delivers {
            deliver(outcome.as_ref().map(|_| ()));
        }
        // Full: a checkpoint is already due.
        let _ = committed.try_send(());
    }
}

/// How often, at most, the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The SQLite checkpoint thread: after commits, at most every [`CHECKPOINT_EVERY`], a passive
/// checkpoint (it never blocks writers or readers). A checkpoint syncs the WAL and the database
/// file; run by the committing writer, as SQLite's automatic checkpoint does, every write
/// queued meanwhile waited for those syncs, which was the registration path's p99 (about 130 ms
/// at 10,000 WAL pages on this project's bench machine, `bench/README.md`). Small and frequent,
/// off the writer, the syncs overlap the writes. Ends when the writer thread does.
///
/// The WAL starts over only when a write transaction begins with every frame already copied
/// into the database. Under writes that never pause that moment never comes: each checkpoint
/// copies the frames committed before it while the writer appends more, and the WAL grew
/// without bound (1.6–2.0 GB after 18 s of registrations, measured). So past
/// [`WAL_RESTART_FRAMES`] this thread holds the writer's `gate` for a second pass, short since
/// the first copied nearly everything; the writer's next transaction then begins at the WAL's
/// start. Run by the writer itself, that finishing checkpoint doubled registration p99
/// (12–13 → 20–38 ms), because every queued write waited for both passes' syncs. Each hold
/// still delays the writes queued behind it, so it comes rarely: at 64 MiB of WAL, several
/// times a second under registrations, it cost their p99 (median of twelve 4 s runs at c=32:
/// 19 ms, against 17 ms with no bound and the WAL at 2.1 GB); at 256 MiB, 14 ms with the WAL
/// under 264 MiB (`bench/README.md`, eleventh session).
///
/// The held pass is made short. SQLite syncs the database file only in a pass that copies the
/// WAL's last frame, so without help the held pass flushed every page copied since the WAL
/// last started over ([`PreSync`]). Before taking the gate this thread reads the WAL's first
/// pages back (the prefetch), flushes both files, runs one more pass without the gate and
/// flushes again; the held pass then copies and syncs only what the writer committed in the
/// last few tens of milliseconds. Under 30 s of registrations at c=32 the holds measured 64 ms
/// on average (at most 122) as the thread was, 38 ms (71) with the flush alone, and 22 ms (53)
/// with the flush and the extra pass (`bench/README.md`, twenty-second session). More passes
/// without the gate and no flush, tried before, bought nothing: the held pass's sync was the
/// database file's, which only a flush outside the gate shortens.
fn checkpoints(manager: &DbManager, commits: &mpsc::Receiver<()>, gate: &Mutex<()>) {
    let mut connection: Option<DbConn> = None;
    let mut prefetch = WalPrefetch::new(manager);
    let mut pre_sync = PreSync::new(manager);
    while commits.recv().is_ok() {
        let conn = match connection.take() {
            Some(conn) => Ok(conn),
            None => manager.open_checkpointer(),
        };
        match conn.and_then(|mut conn| {
            let frames = passive_checkpoint(&mut conn)?.log;
            if frames > WAL_RESTART_FRAMES {
                // The writer's next transaction after the held pass starts the WAL over from
                // its first frame.
                prefetch.ahead_of(0);
                pre_sync.flush(prefetch.file.as_ref());
                passive_checkpoint(&mut conn)?;
                pre_sync.flush(prefetch.file.as_ref());
                let _paused = gate.lock().unwrap_or_else(PoisonError::into_inner);
                passive_checkpoint(&mut conn)?;
            } else {
                prefetch.ahead_of(frames);
            }
            Ok(conn)
        }) {
            Ok(conn) => connection = Some(conn),
            // The next commit tries again; meanwhile the WAL grows, nothing is lost.
            Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed"),
        }
        std::thread::sleep(CHECKPOINT_EVERY);
    }
}

/// Reads the WAL's pages just past the writer's next frame back into the page cache, from the
/// checkpoint thread, before the writer overwrites them.
///
/// A WAL frame is a 24-byte header and a page, so every frame the writer writes covers part of
/// two file blocks. Where the WAL starts over, it overwrites blocks already on disk; a block no
/// longer in the page cache must then be read before the kernel can change part of it, and the
/// writer waits for that read in its commit, with every write queued behind it. Pages of a WAL
/// left alone for a while are reclaimed (memory pressure, or a proactive reclaimer such as
/// DAMON's, which this project's bench machines run): there the writer's commits waited on
/// such reads 650–800 times in 6 s of registrations after a quiet spell. With the WAL's pages
/// dropped before a registration run, 2.6–3.3k registrations/s at p99 64–67 ms without this,
/// 4.4–4.8k at p99 22–24 ms with it (`bench/README.md`, twelfth session). Pages still cached
/// cost the prefetch a look-up each and the writer nothing.
struct WalPrefetch {
    /// The WAL's path; `None` on PostgreSQL, which has no WAL file of ours to read ahead.
    path: Option<std::path::PathBuf>,
    /// Opened when the WAL exists. Only read: the WAL carries no locks of SQLite's (those are
    /// on the database and `-shm` files), so this descriptor cannot release one when closed.
    file: Option<std::fs::File>,
}

/// How far past the writer's next frame [`WalPrefetch`] reads: more than the writer appends
/// between two checkpoint passes (about 60 MB/s under registrations on the bench machine).
const PREFETCH_AHEAD: u64 = 64 << 20;

/// One readahead request: the kernel reads at most its readahead window per call.
const PREFETCH_CHUNK: u64 = 128 << 10;

/// SQLite's default page size, which authmd's databases use; a WAL frame is one page and a
/// 24-byte header, after the WAL's 32-byte header.
const WAL_FRAME_BYTES: u64 = 4096 + 24;

impl WalPrefetch {
    fn new(manager: &DbManager) -> Self {
        let path = sqlite_files(manager).map(|(_, wal)| wal);
        Self { path, file: None }
    }

    /// Asks the kernel to read [`PREFETCH_AHEAD`] bytes of the WAL from the frame after
    /// `frames` (pages already cached cost a look-up; past the file's end, nothing). Failing
    /// costs only the prefetch, so errors are ignored.
    fn ahead_of(&mut self, frames: i32) {
        use rustix::fs::{fadvise, Advice};
        let Some(path) = &self.path else { return };
        if self.file.is_none() {
            self.file = std::fs::File::open(path).ok();
        }
        let Some(file) = &self.file else { return };
        let start = 32 + u64::try_from(frames).unwrap_or(0) * WAL_FRAME_BYTES;
        let mut at = start - start % PREFETCH_CHUNK;
        while at < start + PREFETCH_AHEAD {
            let _ = fadvise(
                file,
                at,
                std::num::NonZeroU64::new(PREFETCH_CHUNK),
                Advice::WillNeed,
            );
            at += PREFETCH_CHUNK;
        }
    }
}

/// Flushes the database file and the WAL to disk from the checkpoint thread, before it holds
/// the writer for the pass that lets the WAL start over.
///
/// SQLite syncs the database file only in a checkpoint that copies the WAL's last frame. Under
/// writes that never pause, no pass without the gate gets there, so the held pass's sync
/// flushed every page the passes before it had copied since the WAL last started over, while
/// every write waited. Flushed here first, the held pass's syncs cover only what was written
/// since. An extra sync changes nothing SQLite relies on, so a failure costs only the time it
/// was meant to save and is ignored: the held pass still syncs both files before the WAL
/// starts over.
struct PreSync {
    /// The database file's path; `None` on PostgreSQL.
    path: Option<std::path::PathBuf>,
    /// The database file, opened once and never closed. Closing any descriptor of a file
    /// drops every POSIX lock this process holds on it, and SQLite's connections lock the
    /// database file that way: closed while the server runs, it could release a reader's lock
    /// under it. So it is one descriptor kept for the life of the process.
    database: Option<std::mem::ManuallyDrop<std::fs::File>>,
}

impl PreSync {
    fn new(manager: &DbManager) -> Self {
        Self {
            path: sqlite_files(manager).map(|(database, _)| database),
            database: None,
        }
    }

    /// `fdatasync` of the database file, then of the WAL (what the writer appended meanwhile),
    /// through the descriptor [`WalPrefetch`] already holds.
    fn flush(&mut self, wal: Option<&std::fs::File>) {
        let Some(path) = &self.path else {
            return;
        };
        if self.database.is_none() {
            self.database = std::fs::File::open(path)
                .ok()
                .map(std::mem::ManuallyDrop::new);
        }
        for file in [self.database.as_deref(), wal].into_iter().flatten() {
            let _ = file.sync_data();
        }
    }
}

/// The SQLite database file's path and its WAL's; `None` on PostgreSQL.
fn sqlite_files(manager: &DbManager) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    match &manager.url {
        DatabaseUrl::Sqlite(db) => {
            let mut wal = db.as_os_str().to_owned();
            wal.push("-wal");
            Some((db.clone(), wal.into()))
        }
        DatabaseUrl::Postgres(_) => None,
    }
}

/// WAL pages past which the checkpoint thread makes the WAL start over: 256 MiB of 4 KiB pages.
const WAL_RESTART_FRAMES: i32 = if cfg!(test) { 64 } else { 65_536 };

/// What `PRAGMA wal_checkpoint` answers (in part).
#[derive(diesel::QueryableByName)]
struct WalCheckpoint {
    /// Frames in the WAL.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
}

/// Copies what it can of the WAL into the database without waiting for anyone.
fn passive_checkpoint(conn: &mut DbConn) -> AppResult<WalCheckpoint> {
    use diesel::RunQueryDsl;
    Ok(diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(conn)?)
}

/// Each caller of a failed batch gets its own copy of the cause.
pub(crate) fn batch_failed(e: &AppError) -> AppError {
    match e {
        AppError::Unavailable(m) => AppError::Unavailable(m.clone()),
        AppError::Internal(m) => AppError::Internal(m.clone()),
        other => AppError::internal(format!("batched commit failed: {other}")),
    }
}

/// Readiness: one round trip to the database.
/// Copies a SQLite database to `target` while it stays in use (`VACUUM INTO` reads in one
/// transaction), then runs `PRAGMA integrity_check` on the copy. PostgreSQL has its own tools.
pub fn backup_sqlite(conn: &mut DbConn, target: &str) -> AppResult<()> {
    use diesel::sql_types::Text;
    use diesel::RunQueryDsl;
    let DbConn::Sqlite(c) = conn else {
        return Err(crate::error::AppError::protocol(
            crate::error::ErrorCode::InvalidRequest,
            "authmd backup copies SQLite databases; for PostgreSQL use pg_dump",
        ));
    };
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(target)
        .execute(c)?;
    let copy = SqliteConnection::establish(target).map_err(|e| {
        crate::error::AppError::internal(format!("the backup cannot be opened: {e}"))
    })?;
    integrity_check(&mut DbConn::Sqlite(copy))
}

/// SQLite's `PRAGMA integrity_check` (every page, index and constraint); PostgreSQL checks its
/// own pages, so there it is `Ok`.
pub fn integrity_check(conn: &mut DbConn) -> AppResult<()> {
    use diesel::sql_types::Text;
    use diesel::{QueryableByName, RunQueryDsl};
    let DbConn::Sqlite(c) = conn else {
        return Ok(());
    };
    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = Text)]
        integrity_check: String,
    }
    let rows: Vec<Check> = diesel::sql_query("PRAGMA integrity_check").load(c)?;
    match rows.first().map(|r| r.integrity_check.as_str()) {
        Some("ok") => Ok(()),
        other => Err(crate::error::AppError::internal(format!(
            "integrity check failed: {other:?}"
        ))),
    }
}

pub fn ping(conn: &mut DbConn) -> AppResult<()> {
    conn.batch_execute("SELECT 1").map_err(AppError::from)
}

pub fn run_migrations(conn: &mut DbConn) -> Result<usize, DbSetupError> {
    let ran = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConn::Pg(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.len()),
    };
    ran.map_err(|e| DbSetupError::Migrate(e.to_string()))
}

fn create_parent_dir(path: &Path) -> Result<(), DbSetupError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| DbSetupError::Connect {
                backend: "SQLite",
                message: format!("cannot create {}: {e}", dir.display()),
            })
        }
        _ => Ok(()),
    }
}

/// A transaction that writes. On SQLite it takes the write lock before its first read (a no-op
/// write), so a read-then-write cannot fail with `SQLITE_BUSY_SNAPSHOT` under concurrency; on
/// PostgreSQL it is a plain transaction and races are settled by conditional updates.
///
/// How SQLite writers are coordinated, in one place: inside the server process every write
/// runs on the one writer thread ([`Db::write`]), so writers never meet SQLite's lock; another
/// process on the same file (the CLI, a test's setup connection) waits for it through
/// `busy_timeout`. Inside a batch this is a savepoint of the batch's transaction.
pub fn write_tx<T, F>(conn: &mut DbConn, f: F) -> AppResult<T>
where
    F: FnOnce(&mut DbConn) -> AppResult<T>,
{
    conn.transaction(|conn| {
        if let DbConn::Sqlite(c) = conn {
            // Only the outermost transaction takes the lock; a savepoint inside it (every
            // write of the writer's batch) already holds it, and would pay for parsing and
            // running the no-op on each write.
            if transaction_depth(c)? <= 1 {
                c.batch_execute("UPDATE signing_keys SET alg = alg WHERE 0")?;
            }
        }
        f(conn)
    })
}

/// A write in two steps: `check` reads and decides, and may refuse with any error, but writes
/// nothing; `apply` writes what was decided, and fails only as the database fails.
///
/// Outside a transaction (PostgreSQL, the CLI) the two run in one, as [`write_tx`]. Inside the
/// SQLite writer's batch they run without the savepoint [`write_tx`] would open: a refusal from
/// `check` has nothing to undo, and a failure of `apply` fails and rolls back the whole batch
/// (`Db::write`), which is how a database error in a batch ends anyway. The savepoint cost each
/// write a `SAVEPOINT` and a `RELEASE`, and a copy in the statement journal of every page the
/// write changed: a fifth of the writer's time for a JWT-bearer exchange (`bench/README.md`,
/// sixteenth session). Should `apply` refuse all the same (on PostgreSQL a concurrent request
/// can win a race the check saw no sign of), its error fails the batch instead of answering
/// that refusal, so nothing it wrote before refusing is committed.
///
/// Debug builds check that `check` wrote nothing.
pub fn write_checked<C, T>(
    conn: &mut DbConn,
    check: impl FnOnce(&mut DbConn) -> AppResult<C>,
    apply: impl FnOnce(&mut DbConn, C) -> AppResult<T>,
) -> AppResult<T> {
    let in_batch = match conn {
        DbConn::Sqlite(c) => transaction_depth(c)? > 0,
        DbConn::Pg(_) => false,
    };
    if !in_batch {
        return write_tx(conn, |conn| {
            let checked = check(conn)?;
            apply(conn, checked)
        });
    }
    #[cfg(debug_assertions)]
    let changes = total_changes(conn)?;
    let checked = check(conn)?;
    #[cfg(debug_assertions)]
    assert_eq!(total_changes(conn)?, changes, "a write_checked check wrote");
    apply(conn, checked).map_err(|e| match e {
        AppError::Internal(_) | AppError::Unavailable(_) => e,
        refused => AppError::internal(format!(
            "a write refused after it had begun writing, so its batch is rolled back: {refused}"
        )),
    })
}

/// Rows SQLite's connection has changed since it opened (`sqlite3_total_changes`).
#[cfg(debug_assertions)]
fn total_changes(conn: &mut DbConn) -> AppResult<i64> {
    use diesel::RunQueryDsl;
    Ok(match conn {
        DbConn::Sqlite(c) => diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "total_changes()",
        ))
        .get_result(c)?,
        DbConn::Pg(_) => 0,
    })
}

/// How many transactions are open on `c`: 0 outside one, 1 in a transaction, more in savepoints.
pub(crate) fn transaction_depth(c: &mut SqliteConnection) -> diesel::QueryResult<u32> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    Ok(AnsiTransactionManager::transaction_manager_status_mut(c)
        .transaction_depth()?
        .map_or(0, u32::from))
}

/// A PostgreSQL database of a storage test's own, migrated, dropped with the value; `None` when
/// the suite is given no PostgreSQL role that may create databases (`AUTHMD_TEST_POSTGRES_URL`).
#[cfg(test)]
pub(crate) struct TestPg {
    pub url: String,
    admin_url: String,
    name: String,
}

#[cfg(test)]
impl TestPg {
    pub fn new(tag: &str) -> Option<Self> {
        let admin_url = std::env::var("AUTHMD_TEST_POSTGRES_URL").ok()?;
        let name = format!("authmd_t_{tag}_{}", std::process::id());
        let mut admin = PgConnection::establish(&admin_url).unwrap();
        // One statement each: PostgreSQL runs several sent together in one transaction, and
        // neither may run in one.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        Some(Self {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        })
    }

    /// The database, migrated.
    pub fn db(&self) -> Db {
        let mut config = Config::defaults();
        config.database.url = self.url.clone();
        let db = Db::connect(&config).unwrap();
        db.migrate().unwrap();
        db
    }
}

#[cfg(test)]
impl Drop for TestPg {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_db(dir: &tempfile::TempDir) -> Db {
        let mut config = Config::defaults();
        config.database.url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&config).unwrap();
        db.migrate().unwrap();
        db
    }

    /// The kernel's count of file pages written but not yet on disk, in bytes.
    fn dirty_bytes() -> u64 {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: u64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("Dirty:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("/proc/meminfo has a Dirty line");
        kib * 1024
    }

    /// A checkpoint that cannot copy the WAL's last frame leaves the pages it copied unsynced
    /// (the premise of [`PreSync`]); the pre-sync writes them out. The margins are wide: other
    /// tests write files meanwhile, but not tens of MiB in a moment.
    #[test]
    fn pre_sync_flushes_what_an_unfinished_checkpoint_copied() {
        use diesel::connection::SimpleConnection;
        // Under the build directory, not /tmp: a tmpfs has no pages to write out.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let db = dir.path().join("t.db");
        let mut writer = SqliteConnection::establish(&db.to_string_lossy()).unwrap();
        writer
            .batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 PRAGMA synchronous = NORMAL; CREATE TABLE t (x BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16000)
                 INSERT INTO t SELECT randomblob(3000) FROM n;",
            )
            .unwrap();
        // A reader on that snapshot, then one more commit: the checkpoint may copy every
        // frame but the last commit's, so it does not finish.
        let mut reader = SqliteConnection::establish(&db.to_string_lossy()).unwrap();
        reader
            .batch_execute("BEGIN; SELECT count(*) FROM t;")
            .unwrap();
        writer
            .batch_execute("INSERT INTO t VALUES (randomblob(3000));")
            .unwrap();
        let copied = passive_checkpoint(&mut DbConn::Sqlite(writer)).unwrap();
        assert!(copied.log > 16_000, "{} frames in the WAL", copied.log);
        let before = dirty_bytes();
        assert!(
            before >= 40 << 20,
            "the ~48 MiB copied are not yet on disk: {before} bytes dirty"
        );

        // The checkpoint synced the WAL itself: only the database file is left.
        PreSync::new(&DbManager::new(DatabaseUrl::Sqlite(db.clone()))).flush(None);
        let after = dirty_bytes();
        assert!(
            before.saturating_sub(after) >= 32 << 20,
            "{before} bytes dirty before, {after} after"
        );
        drop(reader);
    }

    /// The prefetch reads a WAL whose pages left the page cache back in, from the frame the
    /// writer writes next. Without it the pages stay out (checked first).
    #[test]
    fn wal_prefetch_reads_back_the_pages_the_writer_will_overwrite() {
        use diesel::connection::SimpleConnection;
        // Under the build directory, not /tmp: a tmpfs keeps its files in the page cache.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let db = dir.path().join("t.db");
        let mut conn = SqliteConnection::establish(&db.to_string_lossy()).unwrap();
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t (x BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO t SELECT randomblob(3000) FROM n;",
        )
        .unwrap();
        let wal = dir.path().join("t.db-wal");
        let size = std::fs::metadata(&wal).unwrap().len();
        assert!(size > 4 << 20, "the WAL is {size} bytes");
        let resident = || -> u64 {
            let out = std::process::Command::new("fincore")
                .args(["--bytes", "--noheadings", "--output", "RES"])
                .arg(&wal)
                .output()
                .expect("fincore (util-linux) reports what of a file is cached");
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let drop_cached = || {
            let file = std::fs::File::open(&wal).unwrap();
            file.sync_all().unwrap();
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        };
        let mut prefetch = WalPrefetch::new(&DbManager::new(DatabaseUrl::Sqlite(db.clone())));

        drop_cached();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            resident() < size / 10,
            "dropped pages stay out: {}",
            resident()
        );

        // From frame 1,000 on: the pages before it stay out, the rest come back.
        prefetch.ahead_of(1000);
        let start = 32 + 1000 * WAL_FRAME_BYTES;
        let mut waited = 0;
        while resident() < (size - start) * 9 / 10 && waited < 50 {
            std::thread::sleep(Duration::from_millis(100));
            waited += 1;
        }
        let back = resident();
        assert!(
            back >= (size - start) * 9 / 10,
            "{back} of {size} bytes back"
        );
        assert!(
            back <= size - start + (1 << 20),
            "{back} bytes back, from {start}"
        );
        drop(conn);
    }

    #[test]
    fn bundled_sqlite_options() {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
            .load::<CompileOption>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|o| o.compile_options)
            .collect();
        // Set in .cargo/config.toml; see the reasons there.
        assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "{options:?}");
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(options.iter().any(|o| o == "THREADSAFE=2"), "{options:?}");
    }

    /// Holds the writer thread until the returned sender is dropped, so the writes queued
    /// meanwhile are committed together as one batch.
    async fn hold_writer(db: &Db) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let holder = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |_| {
                    started_tx.send(()).unwrap();
                    let _ = release_rx.recv();
                    Ok(())
                })
                .await
                .unwrap();
            })
        };
        started_rx.await.unwrap();
        (release_tx, holder)
    }

    fn insert(conn: &mut DbConn, v: &str) -> AppResult<()> {
        conn.batch_execute(&format!("INSERT INTO scratch (v) VALUES ('{v}')"))?;
        Ok(())
    }

    fn scratch_rows(db: &Db) -> Vec<String> {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            v: String,
        }
        let mut conn = db.get().unwrap();
        diesel::sql_query("SELECT v FROM scratch ORDER BY v")
            .load::<Row>(&mut *conn)
            .unwrap()
            .into_iter()
            .map(|r| r.v)
            .collect()
    }

    fn scratch_db(dir: &tempfile::TempDir) -> Db {
        let db = sqlite_db(dir);
        db.get()
            .unwrap()
            .batch_execute("CREATE TABLE scratch (v TEXT PRIMARY KEY)")
            .unwrap();
        db
    }

    fn refused() -> AppError {
        AppError::protocol(crate::error::ErrorCode::InvalidGrant, "refused")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_writes_keep_the_meaning_they_have_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_db(&dir);
        let (release, holder) = hold_writer(&db).await;
        let ok = tokio::spawn({
            let db = db.clone();
            async move { db.write(|c| write_tx(c, |c| insert(c, "ok"))).await }
        });
        // Its transaction fails: what it wrote is rolled back, the neighbours' writes are not.
        let failed_tx = tokio::spawn({
            let db = db.clone();
            async move {
                db.write(|c| {
                    write_tx(c, |c| {
                        insert(c, "rolled-back")?;
                        Err::<(), _>(refused())
                    })
                })
                .await
            }
        });
        // Writes outside a transaction, then refuses (like a replayed code revoking its grant):
        // the write stays.
        let kept = tokio::spawn({
            let db = db.clone();
            async move {
                db.write(|c| {
                    insert(c, "kept")?;
                    Err::<(), _>(refused())
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(release);
        holder.await.unwrap();
        ok.await.unwrap().unwrap();
        assert!(matches!(
            failed_tx.await.unwrap(),
            Err(AppError::Protocol(_))
        ));
        assert!(matches!(kept.await.unwrap(), Err(AppError::Protocol(_))));
        assert_eq!(scratch_rows(&db), ["kept", "ok"]);
    }

    /// `write_checked` in the writer's batch: a refusal of its check answers that refusal and
    /// leaves the neighbours' writes; a refusal once `apply` began writing fails the batch, so
    /// what it wrote is not committed (there is no savepoint to roll back to).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checked_write_refuses_before_writing_or_fails_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_db(&dir);
        let checked = |check: bool, apply: bool, v: &'static str| {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |c| {
                    write_checked(
                        c,
                        |_| if check { Ok(()) } else { Err(refused()) },
                        |c, ()| {
                            insert(c, v)?;
                            if apply {
                                Ok(())
                            } else {
                                Err(refused())
                            }
                        },
                    )
                })
                .await
            })
        };
        let (release, holder) = hold_writer(&db).await;
        let ok = checked(true, true, "ok");
        let refused_first = checked(false, true, "never");
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(release);
        holder.await.unwrap();
        ok.await.unwrap().unwrap();
        assert!(matches!(
            refused_first.await.unwrap(),
            Err(AppError::Protocol(_))
        ));
        assert_eq!(scratch_rows(&db), ["ok"]);

        let (release, holder) = hold_writer(&db).await;
        let neighbour = checked(true, true, "lost");
        let refused_late = checked(true, false, "half");
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(release);
        holder.await.unwrap();
        assert!(neighbour.await.unwrap().is_err());
        assert!(matches!(
            refused_late.await.unwrap(),
            Err(AppError::Internal(_))
        ));
        assert_eq!(scratch_rows(&db), ["ok"]);

        // Alone (no batch: the CLI, PostgreSQL) it is one transaction, and a late refusal is
        // answered as it is, with what `apply` wrote rolled back.
        let mut conn = db.get().unwrap();
        let alone = write_checked(
            &mut conn,
            |_| Ok(()),
            |c, ()| {
                insert(c, "alone")?;
                Err::<(), _>(refused())
            },
        );
        assert!(matches!(alone, Err(AppError::Protocol(_))));
        drop(conn);
        assert_eq!(scratch_rows(&db), ["ok"]);
    }

    /// Debug builds catch a check that writes: without a savepoint its write could not be
    /// undone when the check then refuses.
    #[test]
    #[should_panic(expected = "a write_checked check wrote")]
    fn a_check_that_writes_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_db(&dir);
        let mut conn = db.get().unwrap();
        let _ = write_tx(&mut conn, |c| {
            write_checked(c, |c| insert(c, "sneaky"), |_, ()| Ok(()))
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_error_or_panic_fails_the_whole_batch_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_db(&dir);
        for breaker in ["sql", "panic"] {
            let (release, holder) = hold_writer(&db).await;
            let neighbour = tokio::spawn({
                let db = db.clone();
                let v = format!("lost-{breaker}");
                async move { db.write(move |c| write_tx(c, |c| insert(c, &v))).await }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let broken = tokio::spawn({
                let db = db.clone();
                async move {
                    db.write(move |c| {
                        if breaker == "panic" {
                            panic!("a bug in one write");
                        }
                        c.batch_execute("INSERT INTO no_such_table VALUES (1)")?;
                        Ok(())
                    })
                    .await
                }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(release);
            holder.await.unwrap();
            assert!(neighbour.await.unwrap().is_err(), "{breaker}");
            assert!(broken.await.unwrap().is_err(), "{breaker}");
        }
        assert!(scratch_rows(&db).is_empty());
        // The writer thread survived both and commits the next batch.
        db.write(|c| insert(c, "after")).await.unwrap();
        assert_eq!(scratch_rows(&db), ["after"]);
    }

    /// A write that finds the database out of service (disk full, I/O) fails its batch; the
    /// writes queued after it in that batch are not run, and each answers the same 503, not a
    /// 500 for a write dropped unanswered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_after_an_outage_in_their_batch_answer_it_too() {
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_db(&dir);
        let (release, holder) = hold_writer(&db).await;
        let spawn_write = |v: &'static str| {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |c| {
                    if v == "outage" {
                        return Err(AppError::Unavailable("the disk is full".to_owned()));
                    }
                    insert(c, v)
                })
                .await
            })
        };
        let before = spawn_write("before");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let outage = spawn_write("outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = [spawn_write("after-1"), spawn_write("after-2")];
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(release);
        holder.await.unwrap();
        for answer in [before, outage].into_iter().chain(after) {
            let answer = answer.await.unwrap();
            assert!(
                matches!(answer, Err(AppError::Unavailable(_))),
                "{answer:?}"
            );
        }
        assert!(scratch_rows(&db).is_empty());
    }

    /// A writer that cannot open its connection (here the database's directory is gone) answers
    /// every queued write 503, the database's outage, not 500 for a write it dropped unanswered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_that_cannot_open_its_connection_answers_each_write_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        let sub = dir.path().join("gone");
        config.database.url = format!("sqlite://{}", sub.join("t.db").display());
        let db = Db::connect(&config).unwrap();
        db.migrate().unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        let writes = (0..3).map(|_| db.write(|_| Ok(())));
        for answer in futures_util::future::join_all(writes).await {
            assert!(
                matches!(answer, Err(AppError::Unavailable(_))),
                "{answer:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_all_committed_and_answered() {
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_db(&dir);
        let writes: Vec<_> = (0..200)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.write(move |c| write_tx(c, |c| insert(c, &format!("{i:03}"))).map(|()| i))
                        .await
                })
            })
            .collect();
        for (i, w) in writes.into_iter().enumerate() {
            assert_eq!(w.await.unwrap().unwrap(), i);
        }
        assert_eq!(scratch_rows(&db).len(), 200);
    }

    /// An audit row that fails after its token was inserted, inside the writer's batch, fails
    /// the batch: the token is not committed without it, and the batch before it stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_whose_audit_row_fails_in_a_batch_is_not_committed() {
        use crate::db::audit::NewAuditRow;
        use crate::db::tokens::{self, AccessTokenRow, Issue};
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite_db(&dir);
        db.get()
            .unwrap()
            .batch_execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_events WHEN NEW.event = 'refused'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let issue = |id: &str, event: &'static str| Issue {
            token: AccessTokenRow::of_client(id, "c"),
            audit: NewAuditRow {
                event,
                created_at: 1,
                actor: None,
                ip: None,
                registration_id: None,
                client_id: None,
                user_id: None,
                detail: "{}".to_owned(),
                request_id: None,
            },
        };
        let (kept, refused) = (issue("kept", "token.issued"), issue("lost", "refused"));
        db.write(move |c| Ok(tokens::insert_issues(c, &[&kept])?))
            .await
            .unwrap();
        let failed = db
            .write(move |c| Ok(tokens::insert_issues(c, &[&refused])?))
            .await;
        assert!(failed.is_err());
        let mut conn = db.get().unwrap();
        assert!(tokens::find_access_token(&mut conn, "kept")
            .unwrap()
            .is_some());
        assert!(tokens::find_access_token(&mut conn, "lost")
            .unwrap()
            .is_none());
    }

    #[derive(diesel::QueryableByName)]
    struct PlanStep {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }

    /// SQLite's indexes on columns most rows leave NULL are partial (`WHERE … IS NOT NULL`);
    /// the look-ups by those columns, `=` and `IN` as the queries in `db/` write them, still
    /// use them rather than scanning the table.
    #[test]
    fn partial_indexes_serve_the_lookups_by_their_columns() {
        use diesel::RunQueryDsl;
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite_db(&dir);
        let mut conn = db.get().unwrap();
        let DbConn::Sqlite(c) = &mut *conn else {
            unreachable!("a SQLite database")
        };
        for (query, index) in [
            (
                "UPDATE access_tokens SET revoked_at = 1 WHERE grant_id IN (?1, ?2)",
                "access_tokens_grant",
            ),
            (
                "UPDATE access_tokens SET revoked_at = 1 WHERE registration_id = ?1",
                "access_tokens_registration",
            ),
            (
                "SELECT id FROM audit_events WHERE registration_id = ?1",
                "audit_events_registration",
            ),
            (
                "SELECT id FROM audit_events WHERE user_id = ?1",
                "audit_events_user",
            ),
        ] {
            let plan: Vec<PlanStep> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {query}"))
                .load(c)
                .unwrap();
            assert!(
                plan.iter()
                    .any(|step| step.detail.contains(&format!("INDEX {index} "))),
                "{query}: {:?}",
                plan.iter().map(|s| &s.detail).collect::<Vec<_>>()
            );
        }
        let partial: Vec<PlanStep> = diesel::sql_query(
            "SELECT name AS detail FROM sqlite_master
             WHERE type = 'index' AND sql LIKE '%WHERE % IS NOT NULL'",
        )
        .load(c)
        .unwrap();
        assert_eq!(
            partial.len(),
            4,
            "{:?}",
            partial.iter().map(|s| &s.detail).collect::<Vec<_>>()
        );
    }

    #[derive(diesel::QueryableByName)]
    struct IndexScans {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        scans: i64,
    }

    /// PostgreSQL's indexes on those columns are partial too; the look-ups that revoke and
    /// list by them still use them in the generic plan a prepared statement comes to. Each runs
    /// as `db/` writes it, with sequential scans disabled (a plan that cannot use its index
    /// scans the table all the same) and generic plans forced, then every index must have
    /// counted a scan in this transaction.
    #[test]
    fn postgres_partial_indexes_serve_the_lookups_by_their_columns() {
        use diesel::RunQueryDsl;
        let Some(pg) = TestPg::new("partial_indexes") else {
            return;
        };
        let db = pg.db();
        let mut conn = db.get().unwrap();
        let partial: Vec<IndexScans> = diesel::sql_query(
            "SELECT indexname::text AS name, 0::int8 AS scans FROM pg_indexes
             WHERE indexdef LIKE '% WHERE (% IS NOT NULL)' ORDER BY 1",
        )
        .load(&mut *conn)
        .unwrap();
        let partial: Vec<&str> = partial.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            partial,
            [
                "access_tokens_grant",
                "access_tokens_registration",
                "audit_events_registration",
                "audit_events_user",
            ]
        );
        let scans = conn
            .transaction::<_, diesel::result::Error, _>(|conn| {
                diesel::sql_query("SET LOCAL enable_seqscan = off").execute(conn)?;
                diesel::sql_query("SET LOCAL plan_cache_mode = force_generic_plan")
                    .execute(conn)?;
                tokens::revoke_grant(conn, "g1", 1)?;
                agents::revoke_registration_credentials(conn, "r1", 1)?;
                for filter in [
                    admin::AuditFilter {
                        registration_id: Some("r1".to_owned()),
                        ..admin::AuditFilter::default()
                    },
                    admin::AuditFilter {
                        user_id: Some("u1".to_owned()),
                        ..admin::AuditFilter::default()
                    },
                ] {
                    admin::audit(conn, &filter, 50)?;
                }
                diesel::sql_query(
                    "SELECT indexrelname::text AS name,
                     pg_stat_get_xact_numscans(indexrelid) AS scans
                     FROM pg_stat_user_indexes ORDER BY 1",
                )
                .load::<IndexScans>(conn)
            })
            .unwrap();
        for index in partial {
            assert!(
                scans.iter().any(|s| s.name == index && s.scans > 0),
                "{index} unused: {:?}",
                scans.iter().map(|s| (&s.name, s.scans)).collect::<Vec<_>>()
            );
        }
    }

    #[derive(diesel::QueryableByName)]
    struct Checkpoint {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        wal_autocheckpoint: i64,
    }

    #[test]
    fn sqlite_connections_checkpoint_rarely() {
        use diesel::RunQueryDsl;
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite_db(&dir);
        let mut pooled = db.get().unwrap();
        let checkpoint = diesel::sql_query("PRAGMA wal_autocheckpoint")
            .get_result::<Checkpoint>(&mut *pooled)
            .unwrap();
        assert_eq!(checkpoint.wal_autocheckpoint, 10_000);
    }

    /// The writer never checkpoints; the checkpoint thread does, soon after commits, so the WAL
    /// starts over instead of growing with every write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checkpoint_thread_keeps_the_wal_short() {
        use diesel::RunQueryDsl;
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_db(&dir);
        let big = "x".repeat(4000);
        for i in 0..100 {
            let v = format!("{i:03}{big}");
            db.write(move |c| insert(c, &v)).await.unwrap();
        }
        // After a checkpoint has copied every frame, the next commit starts the WAL over.
        std::thread::sleep(CHECKPOINT_EVERY * 3);
        db.write(|c| insert(c, "last")).await.unwrap();
        std::thread::sleep(CHECKPOINT_EVERY * 3);
        let mut conn = db.get().unwrap();
        let wal = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
            .get_result::<WalCheckpoint>(&mut *conn)
            .unwrap();
        // 100 writes of a page each, without checkpoints, would leave well over 100 frames.
        assert!(wal.log < 20, "{} frames in the WAL", wal.log);
        assert_eq!(scratch_rows(&db).len(), 101);
    }

    /// Writes that never pause leave the checkpoint thread no moment with every frame copied; it
    /// must make one (see `checkpoints`), or the WAL holds every write ever made.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_writes_that_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_db(&dir);
        let big = "x".repeat(4000);
        let until = std::time::Instant::now() + CHECKPOINT_EVERY * 24;
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (db, big) = (db.clone(), big.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while std::time::Instant::now() < until {
                        let v = format!("{w}-{n}{big}");
                        db.write(move |c| insert(c, &v)).await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut written = 0;
        for w in writers {
            written += w.await.unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("t.db-wal"))
            .unwrap()
            .len();
        // Each 4000-byte row fills a 4 KiB page of its own: a WAL that never started over holds
        // at least that page for every write (about five frames per write, measured, with the
        // tree pages each commit rewrites), a WAL that starts over only what came since the
        // last of some twenty restarts.
        let all = written as u64 * 4096;
        assert!(wal < all, "WAL {wal} bytes after {written} writes");
        assert_eq!(scratch_rows(&db).len(), written);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_outside_the_writer_thread_waits_for_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = scratch_db(&dir);
        // The writer thread holds a batch (and SQLite's write lock) open...
        let (release, holder) = hold_writer(&db).await;
        let outside = std::thread::spawn({
            let db = db.clone();
            move || {
                // ...while a connection of its own (as another process would have) writes: it
                // waits through busy_timeout instead of failing "database is locked".
                let mut conn = db.get().unwrap();
                write_tx(&mut conn, |c| insert(c, "outside"))
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(release);
        holder.await.unwrap();
        outside.join().unwrap().unwrap();
        assert!(scratch_rows(&db).contains(&"outside".to_owned()));
    }
}
