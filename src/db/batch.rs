//! Batched statements: the reads of many concurrent requests answered together, with one query
//! for the whole batch, the pattern GraphQL servers call a data loader ([`Batched`]); and, on
//! PostgreSQL, inserts that need no read first made together, one statement and one commit for
//! the batch ([`BatchedWrites`]). This executor knows no feature's rows: a [`Batch`] says what a
//! key is and how a batch of keys is run (introspection's reads are
//! `point_reads::IntrospectionReads`; token issues are `tokens::IssueInserts`).
//!
//! On PostgreSQL one reader thread reads the batches ([`Batcher`]): a round trip is best waited
//! for off the HTTP workers, and one thread makes the biggest batches. On SQLite each HTTP
//! worker reads its own requests' batch ([`WorkerBatches`]): a read of a local WAL file costs
//! less than handing it to another thread. A request's reads start after it was queued, so they
//! see every commit made before it arrived.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};

use diesel::QueryResult;

use super::{Db, DbConn, DbManager};
use crate::error::{AppError, AppResult};

/// A statement that many requests can share.
pub trait Batch: 'static {
    /// The `kind` label of the `authmd_batch_size` metric.
    const KIND: &'static str;
    /// What one request asks for.
    type Key: Send + 'static;
    /// What it gets back.
    type Rows: Send + 'static;
    /// Runs a whole batch, all or nothing; answers in the order of `keys`.
    fn run(conn: &mut DbConn, keys: &[&Self::Key]) -> QueryResult<Vec<Self::Rows>>;
}

/// Writes that read nothing first (a token and its audit row), on PostgreSQL: a [`Batcher`]
/// thread runs what is queued as one statement on a pooled connection, so a burst of N costs
/// one round trip and one commit instead of N (`bench/README.md`, tenth session). SQLite has
/// none: its writer thread's group commit already puts concurrent writes in one transaction
/// (`Db::write`), and a read apart from the write measured slower there than both in one job.
pub struct BatchedWrites<R: Batch> {
    pool: r2d2::Pool<DbManager>,
    /// Started on first use.
    batcher: OnceLock<Batcher<R>>,
}

impl<R: Batch> BatchedWrites<R> {
    /// The batched writes of `db`'s backend, if it has them (PostgreSQL).
    pub fn for_backend(db: &Db) -> Option<Self> {
        (db.backend() != "sqlite").then(|| Self {
            pool: db.batch_pool().clone(),
            batcher: OnceLock::new(),
        })
    }

    /// Queues `key` with other requests' and waits for it to be committed.
    pub async fn write(&self, key: R::Key) -> AppResult<R::Rows> {
        self.batcher
            .get_or_init(|| Batcher::start(&self.pool))
            .read(key)
            .await
    }
}

/// Batched reads of one kind, made the way the database's backend reads best.
pub struct Batched<R: Batch> {
    readers: Readers<R>,
}

enum Readers<R: Batch> {
    Workers(WorkerBatches<R>),
    /// Started on first use.
    Thread {
        pool: r2d2::Pool<DbManager>,
        batcher: OnceLock<Batcher<R>>,
    },
}

impl<R: Batch> Batched<R> {
    pub fn new(db: &Db) -> Self {
        let readers = match db.backend() {
            "sqlite" => Readers::Workers(WorkerBatches::new(&db.pool)),
            _ => Readers::Thread {
                pool: db.batch_pool().clone(),
                batcher: OnceLock::new(),
            },
        };
        Self { readers }
    }

    /// Queues `key` with the reads of other requests and waits for its rows.
    pub async fn read(&self, key: R::Key) -> AppResult<R::Rows> {
        match &self.readers {
            Readers::Workers(batches) => batches.read(key).await,
            Readers::Thread { pool, batcher } => {
                batcher.get_or_init(|| Batcher::start(pool)).read(key).await
            }
        }
    }
}

/// Most requests one batch reads for.
const MAX_BATCH: usize = 256;

/// Threads that read batches. One: whatever arrives during a batch's reads waits for the next
/// batch, so batches grow with the load. More threads made smaller batches and more queries, and
/// measured slower (`bench/README.md`).
const READERS: usize = 1;

struct Job<R: Batch> {
    key: R::Key,
    reply: tokio::sync::oneshot::Sender<AppResult<R::Rows>>,
}

/// Reader threads that answer queued keys in batches, with connections from the pool. They end
/// when the last [`Batcher`] clone is dropped.
pub struct Batcher<R: Batch> {
    jobs: mpsc::Sender<Job<R>>,
}

impl<R: Batch> Clone for Batcher<R> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<R: Batch> Batcher<R> {
    /// Starts the threads. One that cannot start is logged; if none can, every read answers
    /// an internal error (the queue has no receiver left).
    pub fn start(pool: &r2d2::Pool<DbManager>) -> Self {
        let (jobs, queue) = mpsc::channel::<Job<R>>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..READERS {
            let (pool, queue) = (pool.clone(), Arc::clone(&queue));
            let spawned = std::thread::Builder::new()
                .name(format!("authmd-batch-reads-{n}"))
                .spawn(move || serve::<R>(&pool, &queue));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a point-read thread");
            }
        }
        Self { jobs }
    }

    /// Queues one request's key and waits for its rows.
    pub async fn read(&self, key: R::Key) -> AppResult<R::Rows> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job { key, reply })
            .map_err(|_| AppError::internal("the point-read threads have stopped"))?;
        answer
            .await
            .map_err(|_| AppError::internal("a point read was abandoned"))?
    }
}

/// One reader thread: takes everything queued (the queue's lock is held only while taking),
/// reads it with one [`Batch::run`], and answers each request.
fn serve<R: Batch>(pool: &r2d2::Pool<DbManager>, queue: &Mutex<mpsc::Receiver<Job<R>>>) {
    loop {
        let batch = {
            let queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            let Ok(first) = queue.recv() else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        match pool.get() {
            Ok(mut conn) => answer(Ok(&mut conn), batch),
            Err(e) => {
                // What was queued while the pool was waited for fails with this batch: in an
                // outage each request then waits for at most one connection timeout, not for
                // the batches queued before it each waiting out one of their own.
                let mut batch = batch;
                let queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
                batch.extend(queue.try_iter());
                drop(queue);
                answer(Err(e.into()), batch)
            }
        }
    }
}

/// Reads a batch with one [`Batch::run`] and answers each of its requests; a connection
/// that could not be had, or a failed or panicking read, fails every request of the batch.
fn answer<R: Batch>(conn: AppResult<&mut DbConn>, batch: Vec<Job<R>>) {
    crate::metrics::metrics()
        .batch_size
        .get_or_create(&crate::metrics::BatchLabels { kind: R::KIND })
        .observe(batch.len() as f64);
    let keys: Vec<&R::Key> = batch.iter().map(|job| &job.key).collect();
    let rows = match conn {
        // A panic fails this batch's requests, not the thread or worker it ran on.
        Ok(conn) => {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Ok(R::run(conn, &keys)?)))
                .unwrap_or_else(|_| Err(AppError::internal("a batched read panicked")))
        }
        Err(e) => Err(e),
    };
    match rows {
        Ok(rows) => {
            for (job, rows) in batch.into_iter().zip(rows) {
                let _ = job.reply.send(Ok(rows));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, reads = batch.len(), "batched read failed");
            for job in batch {
                let _ = job.reply.send(Err(super::batch_failed(&e)));
            }
        }
    }
}

/// SQLite's batches are made on each HTTP worker thread instead of a reader thread. A read on a
/// local WAL file takes microseconds, so handing it to another thread and back cost more than
/// the read (`bench/README.md`). The first request a worker queues starts a task that yields once,
/// so that the worker first runs every other request that is ready, and then reads for all of
/// them at once on the worker, or on a blocking thread when no pooled connection is idle.
pub struct WorkerBatches<R: Batch> {
    /// Tells this queue from another's on the same thread (several readers, or tests running
    /// several servers in one process).
    id: u64,
    pool: r2d2::Pool<DbManager>,
    reads: PhantomData<fn() -> R>,
}

thread_local! {
    /// Each queue's jobs (a `Vec<Job<R>>` of its reader's `R`) waiting on this thread for its
    /// batch task.
    static QUEUED: RefCell<Vec<(u64, Box<dyn Any>)>> = const { RefCell::new(Vec::new()) };
}

impl<R: Batch> WorkerBatches<R> {
    pub fn new(pool: &r2d2::Pool<DbManager>) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pool: pool.clone(),
            reads: PhantomData,
        }
    }

    /// Queues one request's key on this worker and waits for its rows. Must be called on an
    /// actix (or tokio `LocalSet`) thread: the batch runs as a local task.
    pub async fn read(&self, key: R::Key) -> AppResult<R::Rows> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job::<R> { key, reply };
        let first = QUEUED.with(|queued| {
            let mut queued = queued.borrow_mut();
            let mine = queued
                .iter_mut()
                .find(|(id, _)| *id == self.id)
                .and_then(|(_, jobs)| jobs.downcast_mut::<Vec<Job<R>>>());
            match mine {
                Some(jobs) => {
                    jobs.push(job);
                    false
                }
                None => {
                    queued.push((self.id, Box::new(vec![job])));
                    true
                }
            }
        });
        if first {
            // A spawned task, not this request's future: the batch must be read even if the
            // request that started it is dropped (its client went away).
            actix_web::rt::spawn(read_queued::<R>(self.id, self.pool.clone()));
        }
        answer
            .await
            .map_err(|_| AppError::internal("a point read was abandoned"))?
    }
}

/// The batch task of one queue on one worker thread.
async fn read_queued<R: Batch>(id: u64, pool: r2d2::Pool<DbManager>) {
    // Tokio runs a yielding task again only after the tasks that are ready now, including the
    // requests whose sockets the last poll found readable: they queue their reads first.
    tokio::task::yield_now().await;
    let batch = QUEUED.with(|queued| {
        let mut queued = queued.borrow_mut();
        let at = queued.iter().position(|(queue, _)| *queue == id);
        at.and_then(|at| queued.swap_remove(at).1.downcast::<Vec<Job<R>>>().ok())
            .map(|jobs| *jobs)
            .unwrap_or_default()
    });
    if let Some(mut conn) = pool.try_get() {
        return answer(Ok(&mut conn), batch);
    }
    // Every pooled connection is busy: wait for one off the worker.
    let waited = actix_web::rt::task::spawn_blocking(move || match pool.get() {
        Ok(mut conn) => answer(Ok(&mut conn), batch),
        Err(e) => answer(Err(e.into()), batch),
    })
    .await;
    if let Err(e) = waited {
        // The batch's replies were dropped with it; each request answers an internal error.
        tracing::error!(error = %e, "a batched read's blocking task failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseUrl;
    use std::time::{Duration, Instant};

    /// A batch that reads nothing: what is tested here is the executor around it.
    struct Nothing;

    impl Batch for Nothing {
        const KIND: &'static str = "nothing";
        type Key = ();
        type Rows = ();

        fn run(_: &mut DbConn, keys: &[&()]) -> QueryResult<Vec<()>> {
            Ok(vec![(); keys.len()])
        }
    }

    /// With the database unreachable, a read queued while the reader thread waits for a
    /// connection is answered when that wait ends, with the same `503` cause: it does not wait
    /// out a connection timeout of its own after it (as it did, up to twice the timeout).
    #[actix_web::test]
    async fn in_an_outage_a_queued_read_waits_for_at_most_one_connection_timeout() {
        let timeout = Duration::from_millis(600);
        // Nothing listens on port 1: every connection attempt fails until the timeout.
        let unreachable = DbManager::new(DatabaseUrl::Postgres(
            "postgres://nobody@127.0.0.1:1/none".to_owned(),
        ));
        let pool = r2d2::Pool::builder()
            .max_size(1)
            .min_idle(Some(0))
            .connection_timeout(timeout)
            .build_unchecked(unreachable);
        let batcher = Batcher::<Nothing>::start(&pool);
        let first = batcher.read(());
        let queued = async {
            tokio::time::sleep(timeout / 3).await;
            let at = Instant::now();
            let asks = (0..5).map(|_| batcher.read(()));
            let answers = futures_util::future::join_all(asks).await;
            (answers, at.elapsed())
        };
        let (first, (queued, waited)) = futures_util::join!(first, queued);
        for answer in std::iter::once(first).chain(queued) {
            assert!(
                matches!(answer, Err(AppError::Unavailable(_))),
                "an unreachable database is a 503"
            );
        }
        // Queued a third of the way into the first wait: two thirds of a timeout with the fix,
        // five thirds without it.
        assert!(
            waited < timeout,
            "queued reads waited {waited:?}, past one connection timeout"
        );
    }
}
