//! Point reads of many requests at once, through the batch executor (`db::batch`):
//! introspection's first reads (the caller's client and the access token, each by primary key),
//! and a client authentication's (the client and its failure window). A point read costs the
//! database far more around the lookup than in it: on PostgreSQL a round trip, on SQLite a read
//! transaction (`bench/README.md`).

use std::collections::HashMap;
use std::sync::Arc;

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};

use super::batch::Batch;
use super::clients::ClientRow;
use super::ratelimit::WindowKey;
use super::schema::{access_tokens, clients};
use super::tokens::AccessTokenRow;
use super::DbConn;

/// The keys one request reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PointReads {
    pub client_id: Option<String>,
    pub access_token_id: Option<String>,
}

/// What was found for them.
#[derive(Debug, Clone, Default)]
pub struct PointRows {
    /// Shared: a batch's requests mostly name one client (a resource server introspecting),
    /// and each gets the row found once instead of a copy of its dozen strings.
    pub client: Option<Arc<ClientRow>>,
    pub access_token: Option<Arc<AccessTokenRow>>,
}

/// Introspection's reads as a [`Batch`].
pub struct IntrospectionReads;

impl Batch for IntrospectionReads {
    const KIND: &'static str = "introspection_reads";
    type Key = PointReads;
    type Rows = PointRows;

    fn run(conn: &mut DbConn, keys: &[&PointReads]) -> QueryResult<Vec<PointRows>> {
        fetch_many(conn, keys)
    }
}

/// Many requests' reads. PostgreSQL: one statement for both tables ([`BothByKey`]), one round
/// trip per batch. SQLite: one read transaction for the batch, then a primary-key lookup per
/// distinct key. A local lookup costs microseconds; what costs is around it. Taking the read
/// lock (fcntl system calls) once per batch instead of once per query, and no `IN (…)` list,
/// which SQLite sorts in a temporary b-tree for every batch: 28.4 → 27.1 µs of CPU per
/// introspection, 43.9k → 45.6k introspections/s (medians of three, `bench/README.md`, eleventh
/// session).
pub fn fetch_many(conn: &mut DbConn, reads: &[&PointReads]) -> QueryResult<Vec<PointRows>> {
    let client_ids = distinct(reads.iter().filter_map(|r| r.client_id.as_deref()));
    let token_ids = distinct(reads.iter().filter_map(|r| r.access_token_id.as_deref()));
    let (clients, tokens): (Vec<ClientRow>, Vec<AccessTokenRow>) = match conn {
        DbConn::Sqlite(c) => c.transaction(|c| {
            let clients = each_found(&client_ids, |id| {
                clients::table
                    .find(id)
                    .select(ClientRow::as_select())
                    .first(c)
                    .optional()
            })?;
            let tokens = each_found(&token_ids, |id| {
                access_tokens::table
                    .find(id)
                    .select(AccessTokenRow::as_select())
                    .first(c)
                    .optional()
            })?;
            QueryResult::Ok((clients, tokens))
        })?,
        DbConn::Pg(c) => {
            let mut clients = Vec::with_capacity(client_ids.len());
            let mut tokens = Vec::with_capacity(token_ids.len());
            if !(client_ids.is_empty() && token_ids.is_empty()) {
                let found: Vec<(Option<ClientRow>, Option<AccessTokenRow>)> = BothByKey {
                    client_ids: &client_ids,
                    token_ids: &token_ids,
                }
                .load(c)?;
                for (client, token) in found {
                    clients.extend(client);
                    tokens.extend(token);
                }
            }
            (clients, tokens)
        }
    };
    let clients: Vec<Arc<ClientRow>> = clients.into_iter().map(Arc::new).collect();
    let tokens: Vec<Arc<AccessTokenRow>> = tokens.into_iter().map(Arc::new).collect();
    let clients: HashMap<&str, &Arc<ClientRow>> =
        clients.iter().map(|row| (row.id.as_str(), row)).collect();
    let tokens: HashMap<&str, &Arc<AccessTokenRow>> =
        tokens.iter().map(|row| (row.id.as_str(), row)).collect();
    Ok(reads
        .iter()
        .map(|r| PointRows {
            client: r
                .client_id
                .as_deref()
                .and_then(|id| clients.get(id).map(|row| Arc::clone(row))),
            access_token: r
                .access_token_id
                .as_deref()
                .and_then(|id| tokens.get(id).map(|row| Arc::clone(row))),
        })
        .collect())
}

/// PostgreSQL: the clients and the access tokens of a batch in one statement, so a batch waits
/// for one round trip instead of two, one after the other. `unnest` of the two id arrays pads
/// the shorter with NULLs; each row holds the client of one id and the token of another (or
/// NULLs), joined by primary key. The column lists are diesel's, from the schema, and the
/// statement has a fixed text, so it is prepared once per connection.
struct BothByKey<'a> {
    client_ids: &'a Vec<&'a str>,
    token_ids: &'a Vec<&'a str>,
}

impl QueryId for BothByKey<'_> {
    type QueryId = BothByKey<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for BothByKey<'_> {
    type SqlType = (Nullable<clients::SqlType>, Nullable<access_tokens::SqlType>);
}

impl QueryFragment<Pg> for BothByKey<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT ");
        clients::all_columns.walk_ast(out.reborrow())?;
        out.push_sql(", ");
        access_tokens::all_columns.walk_ast(out.reborrow())?;
        out.push_sql(" FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(self.client_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(self.token_ids)?;
        out.push_sql(
            ") AS wanted (client_id, token_id) \
             LEFT JOIN clients ON clients.id = wanted.client_id \
             LEFT JOIN access_tokens ON access_tokens.id = wanted.token_id",
        );
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for BothByKey<'_> {}

/// What one client authentication reads: the client by id and, with limits on, the hits of its
/// failure window (the client and the caller's IP).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientRead {
    pub client_id: String,
    pub window: Option<WindowKey>,
}

/// The client's row (`None`: no such client) and its window's hits (current, previous; zero
/// without a window), as `clients::find_with_window` answers.
pub type ClientFound = (Option<ClientRow>, (i64, i64));

/// A client authentication's reads as a [`Batch`]: the client_credentials grant on PostgreSQL
/// reads its client this way, so a burst of token requests costs PostgreSQL one statement for
/// their clients instead of one each, as introspection's reads do.
pub struct ClientReads;

impl Batch for ClientReads {
    const KIND: &'static str = "client_reads";
    type Key = ClientRead;
    type Rows = ClientFound;

    fn run(conn: &mut DbConn, keys: &[&ClientRead]) -> QueryResult<Vec<ClientFound>> {
        let mut wanted: Vec<&ClientRead> = keys.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let found: Vec<ClientFound> = match conn {
            DbConn::Pg(c) => {
                let rows: Vec<(Option<ClientRow>, Option<i32>, Option<i32>)> =
                    ClientsWithWindows::of(&wanted).load(c)?;
                rows.into_iter()
                    .map(|(row, current, previous)| {
                        let hits = |h: Option<i32>| i64::from(h.unwrap_or(0));
                        (row, (hits(current), hits(previous)))
                    })
                    .collect()
            }
            // One read transaction, then each key as one request reads it.
            DbConn::Sqlite(_) => conn.transaction(|conn| {
                wanted
                    .iter()
                    .map(|k| {
                        super::clients::find_with_window(conn, &k.client_id, k.window.as_ref())
                    })
                    .collect::<QueryResult<Vec<_>>>()
            })?,
        };
        // Each key's answer is the row of its place among the distinct keys.
        keys.iter()
            .map(|key| {
                wanted
                    .binary_search(key)
                    .ok()
                    .and_then(|at| found.get(at).cloned())
                    .ok_or_else(|| {
                        diesel::result::Error::DeserializationError(
                            "a batched client read answered fewer rows than it was asked".into(),
                        )
                    })
            })
            .collect()
    }
}

/// PostgreSQL: the clients of a batch and their failure windows in one statement, one row per
/// key in the order given (`WITH ORDINALITY`). A key without a window has a NULL bucket, which
/// joins no window row, so its hits read as zero; an unknown client's window is read all the
/// same, so an unknown client is limited alike. Fixed text: prepared once per connection.
struct ClientsWithWindows {
    client_ids: Vec<String>,
    buckets: Vec<Option<String>>,
    current: Vec<i64>,
    previous: Vec<i64>,
}

impl ClientsWithWindows {
    fn of(keys: &[&ClientRead]) -> Self {
        Self {
            client_ids: keys.iter().map(|k| k.client_id.clone()).collect(),
            buckets: keys
                .iter()
                .map(|k| k.window.as_ref().map(|w| w.bucket.clone()))
                .collect(),
            current: keys
                .iter()
                .map(|k| k.window.as_ref().map_or(0, |w| w.current))
                .collect(),
            previous: keys
                .iter()
                .map(|k| k.window.as_ref().map_or(0, |w| w.previous))
                .collect(),
        }
    }
}

impl QueryId for ClientsWithWindows {
    type QueryId = ClientsWithWindows;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for ClientsWithWindows {
    type SqlType = (
        Nullable<clients::SqlType>,
        Nullable<Integer>,
        Nullable<Integer>,
    );
}

impl QueryFragment<Pg> for ClientsWithWindows {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT ");
        clients::all_columns.walk_ast(out.reborrow())?;
        out.push_sql(", cur.hits, prev.hits FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.client_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.buckets)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.current)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.previous)?;
        out.push_sql(
            ") WITH ORDINALITY AS wanted (client_id, bucket, cur, prev, n) \
             LEFT JOIN clients ON clients.id = wanted.client_id \
             LEFT JOIN rate_limit_windows cur \
             ON cur.bucket = wanted.bucket AND cur.window_start = wanted.cur \
             LEFT JOIN rate_limit_windows prev \
             ON prev.bucket = wanted.bucket AND prev.window_start = wanted.prev \
             ORDER BY wanted.n",
        );
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for ClientsWithWindows {}

/// The rows `find` finds, one lookup per id.
fn each_found<T>(
    ids: &[&str],
    mut find: impl FnMut(&str) -> QueryResult<Option<T>>,
) -> QueryResult<Vec<T>> {
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        rows.extend(find(id)?);
    }
    Ok(rows)
}

fn distinct<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::db::batch::{Batcher, WorkerBatches};
    use crate::db::clients::ClientRow;
    use crate::db::Db;
    use std::sync::Arc;

    fn client(id: &str) -> ClientRow {
        ClientRow {
            id: id.to_owned(),
            name: id.to_owned(),
            secret_hash: None,
            secret_prefix: None,
            is_public: true,
            redirect_uris: "[]".to_owned(),
            grant_types: "[]".to_owned(),
            scope: String::new(),
            can_introspect: false,
            token_endpoint_auth_method: "none".to_owned(),
            application_type: "web".to_owned(),
            registration_token_hash: None,
            metadata: "{}".to_owned(),
            created_at: 0,
        }
    }

    fn seeded_db(dir: &tempfile::TempDir) -> Db {
        seeded(&format!("sqlite://{}", dir.path().join("t.db").display()))
    }

    fn seeded(url: &str) -> Db {
        let mut config = Config::defaults();
        config.database.url = url.to_owned();
        let db = Db::connect(&config).unwrap();
        db.migrate().unwrap();
        let mut conn = db.get().unwrap();
        for c in ["c1", "c2"] {
            crate::db::clients::insert(&mut conn, &client(c)).unwrap();
        }
        for (t, c) in [("t1", "c1"), ("t2", "c2")] {
            crate::db::tokens::insert_access_token(&mut conn, &AccessTokenRow::of_client(t, c))
                .unwrap();
        }
        db
    }

    fn reads(client_id: Option<&str>, token_id: Option<&str>) -> PointReads {
        PointReads {
            client_id: client_id.map(str::to_owned),
            access_token_id: token_id.map(str::to_owned),
        }
    }

    fn ids(rows: &PointRows) -> (Option<&str>, Option<&str>) {
        (
            rows.client.as_ref().map(|c| c.id.as_str()),
            rows.access_token.as_ref().map(|t| t.id.as_str()),
        )
    }

    #[test]
    fn many_reads_answer_each_request_with_its_own_rows() {
        let dir = tempfile::tempdir().unwrap();
        answers_each_request_with_its_own_rows(&seeded_db(&dir));
    }

    /// PostgreSQL's one statement for both tables, in a database of its own (when the test
    /// suite is given a PostgreSQL role that may create databases).
    #[test]
    fn postgres_reads_answer_each_request_with_its_own_rows() {
        let Some(pg) = crate::db::TestPg::new("point_reads") else {
            return;
        };
        let db = seeded(&pg.url);
        answers_each_request_with_its_own_rows(&db);
        client_reads_answer_as_single_reads(&db);
        // Only clients, only tokens, and more of one than the other: the shorter list is padded.
        let mut conn = db.get().unwrap();
        let only_clients = [reads(Some("c2"), None), reads(Some("c1"), None)];
        let only_tokens = [
            reads(None, Some("t1")),
            reads(None, Some("t2")),
            reads(None, Some("none")),
        ];
        for asked in [&only_clients[..], &only_tokens[..]] {
            let refs: Vec<&PointReads> = asked.iter().collect();
            let got: Vec<_> = fetch_many(&mut conn, &refs)
                .unwrap()
                .iter()
                .map(|r| {
                    let (c, t) = ids(r);
                    (c.map(str::to_owned), t.map(str::to_owned))
                })
                .collect();
            let want: Vec<_> = asked
                .iter()
                .map(|r| {
                    (
                        r.client_id.clone(),
                        r.access_token_id.clone().filter(|t| t != "none"),
                    )
                })
                .collect();
            assert_eq!(got, want);
        }
    }

    #[derive(diesel::QueryableByName)]
    struct Scans {
        #[diesel(sql_type = BigInt)]
        seq: i64,
        #[diesel(sql_type = BigInt)]
        idx: i64,
    }

    /// Runs both batched reads in a transaction on `conn`; answers the sequential and the index
    /// scans they made of the tables they read.
    fn scans_of_batched_reads(conn: &mut DbConn) -> Scans {
        use crate::db::ratelimit::WindowKey;
        conn.transaction(|conn| {
            let asked = [reads(Some("c1"), Some("t1")), reads(Some("c2"), Some("no"))];
            fetch_many(conn, &asked.iter().collect::<Vec<_>>())?;
            let read = ClientRead {
                client_id: "c1".to_owned(),
                window: Some(WindowKey {
                    bucket: "b1".to_owned(),
                    current: 120,
                    previous: 60,
                }),
            };
            ClientReads::run(conn, &[&read])?;
            diesel::sql_query(
                "SELECT coalesce(sum(seq_scan), 0)::int8 AS seq,
                 coalesce(sum(idx_scan), 0)::int8 AS idx FROM pg_stat_xact_user_tables
                 WHERE relname IN ('clients', 'access_tokens', 'rate_limit_windows')",
            )
            .get_result::<Scans>(conn)
        })
        .unwrap()
    }

    /// PostgreSQL's batch connections plan each batched read once and look rows up by primary
    /// key whatever the statistics say (`db::BATCH_PLAN_SETTINGS`): on a nearly empty database
    /// just analyzed, where a forced generic plan alone scans the tables (checked first, on a
    /// connection of its own), and again after the tables grew by thousands of tokens inserted
    /// as token issuance inserts them, without a new `ANALYZE`.
    #[test]
    fn postgres_batched_reads_look_up_by_key_whatever_the_statistics() {
        use diesel::connection::SimpleConnection;
        let Some(pg) = crate::db::TestPg::new("batch_plans") else {
            return;
        };
        let db = seeded(&pg.url);
        db.get().unwrap().batch_execute("ANALYZE").unwrap();

        let mut generic_only = DbConn::Pg(PgConnection::establish(&pg.url).unwrap());
        generic_only
            .batch_execute("SET plan_cache_mode = force_generic_plan")
            .unwrap();
        let scans = scans_of_batched_reads(&mut generic_only);
        assert!(
            scans.seq > 0,
            "a generic plan on tiny tables scans them ({} index scans)",
            scans.idx
        );

        let mut batch = db.batch_pool().get().unwrap();
        for grown in [false, true] {
            let scans = scans_of_batched_reads(&mut batch);
            assert_eq!(scans.seq, 0, "sequential scans, grown: {grown}");
            assert!(scans.idx >= 3, "{} index scans, grown: {grown}", scans.idx);
            if !grown {
                for chunk in 0..6 {
                    let issues: Vec<crate::db::tokens::Issue> = (0..500)
                        .map(|n| crate::db::tokens::Issue {
                            token: AccessTokenRow::of_client(&format!("g{chunk}-{n}"), "c1"),
                            audit: crate::db::audit::NewAuditRow {
                                event: "token.issued",
                                created_at: 0,
                                actor: None,
                                ip: None,
                                registration_id: None,
                                client_id: Some("c1".to_owned()),
                                user_id: None,
                                detail: "{}".to_owned(),
                                request_id: None,
                            },
                        })
                        .collect();
                    crate::db::tokens::insert_issues(
                        &mut batch,
                        &issues.iter().collect::<Vec<_>>(),
                    )
                    .unwrap();
                }
            }
        }
    }

    fn answers_each_request_with_its_own_rows(db: &Db) {
        let mut conn = db.get().unwrap();
        let asked = [
            reads(Some("c1"), Some("t2")),
            reads(Some("c2"), None),
            reads(Some("nope"), Some("t1")),
            reads(None, Some("missing")),
            reads(Some("c1"), Some("t1")),
            reads(None, None),
        ];
        let refs: Vec<&PointReads> = asked.iter().collect();
        let rows = fetch_many(&mut conn, &refs).unwrap();
        let got: Vec<_> = rows.iter().map(ids).collect();
        assert_eq!(
            got,
            [
                (Some("c1"), Some("t2")),
                (Some("c2"), None),
                (None, Some("t1")),
                (None, None),
                (Some("c1"), Some("t1")),
                (None, None),
            ]
        );
        // Each answer is what the single-row look-ups find.
        for (one, batched) in asked.iter().zip(&rows) {
            let client = one
                .client_id
                .as_deref()
                .map(|id| crate::db::clients::find(&mut conn, id).unwrap());
            let token = one
                .access_token_id
                .as_deref()
                .map(|id| crate::db::tokens::find_access_token(&mut conn, id).unwrap());
            assert_eq!(
                (
                    client.flatten().map(|c| c.id),
                    token.flatten().map(|t| t.id)
                ),
                (
                    batched.client.as_ref().map(|c| c.id.clone()),
                    batched.access_token.as_ref().map(|t| t.id.clone())
                )
            );
        }
    }

    #[test]
    fn client_reads_answer_each_request_as_its_own_read_would() {
        let dir = tempfile::tempdir().unwrap();
        client_reads_answer_as_single_reads(&seeded_db(&dir));
    }

    /// [`ClientReads`] against `clients::find_with_window` for the same keys: windows with hits
    /// in both periods, no window, an unknown client, the same key twice, a window never hit.
    fn client_reads_answer_as_single_reads(db: &Db) {
        use crate::db::ratelimit::{self, WindowKey};
        let mut conn = db.get().unwrap();
        let window = |bucket: &str, current: i64| WindowKey {
            bucket: bucket.to_owned(),
            current,
            previous: current - 60,
        };
        for _ in 0..2 {
            ratelimit::hit(&mut conn, &window("b1", 120)).unwrap();
        }
        ratelimit::hit(&mut conn, &window("b1", 60)).unwrap();
        let read = |client: &str, w: Option<WindowKey>| ClientRead {
            client_id: client.to_owned(),
            window: w,
        };
        let asked = [
            read("c1", Some(window("b1", 120))),
            read("c2", None),
            read("nope", Some(window("b1", 120))),
            read("c1", Some(window("b1", 120))),
            read("c2", Some(window("b2", 120))),
            read("c1", Some(window("b1", 180))),
        ];
        let refs: Vec<&ClientRead> = asked.iter().collect();
        let batched = ClientReads::run(&mut conn, &refs).unwrap();
        let got: Vec<(Option<&str>, (i64, i64))> = batched
            .iter()
            .map(|(row, hits)| (row.as_ref().map(|r| r.id.as_str()), *hits))
            .collect();
        assert_eq!(
            got,
            [
                (Some("c1"), (2, 1)),
                (Some("c2"), (0, 0)),
                (None, (2, 1)),
                (Some("c1"), (2, 1)),
                (Some("c2"), (0, 0)),
                (Some("c1"), (0, 2)),
            ]
        );
        for (one, (row, hits)) in asked.iter().zip(&batched) {
            let (single_row, single_hits) = crate::db::clients::find_with_window(
                &mut conn,
                &one.client_id,
                one.window.as_ref(),
            )
            .unwrap();
            assert_eq!(single_hits, *hits);
            assert_eq!(
                single_row.map(|r| (r.id, r.secret_hash, r.grant_types)),
                row.clone().map(|r| (r.id, r.secret_hash, r.grant_types))
            );
        }
    }

    #[test]
    fn sqlite_batches_of_any_size_reuse_one_prepared_statement_per_table() {
        use diesel::connection::{Instrumentation, InstrumentationEvent};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let db = seeded_db(&dir);
        let mut conn = db.get().unwrap();
        let prepared = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&prepared);
        let DbConn::Sqlite(sqlite) = &mut *conn else {
            unreachable!("a SQLite database")
        };
        // Counts statements that are prepared and put in the cache: one lookup per table, used
        // again for every key and batch (an `IN (?, ?, …)` with a bind per key is prepared again
        // for every batch and never cached).
        let count = move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { .. } = event {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        };
        let count: Box<dyn Instrumentation> = Box::new(count);
        sqlite.set_instrumentation(count);
        for n in [1, 2, 3, 5, 1] {
            let asked: Vec<PointReads> = (0..n)
                .map(|i| reads(Some(["c1", "c2"][i % 2]), Some(["t1", "t2", "tx"][i % 3])))
                .collect();
            let refs: Vec<&PointReads> = asked.iter().collect();
            let rows = fetch_many(&mut conn, &refs).unwrap();
            assert_eq!(rows[0].access_token.as_ref().unwrap().id, "t1");
        }
        assert_eq!(prepared.load(Ordering::SeqCst), 2, "one per table");
    }

    #[actix_web::test]
    async fn batcher_answers_concurrent_requests_and_sees_earlier_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = seeded_db(&dir);
        let batcher = Batcher::<IntrospectionReads>::start(&db.pool);
        let asks = (0..200).map(|i| {
            let (c, t) = if i % 2 == 0 {
                ("c1", "t1")
            } else {
                ("c2", "t2")
            };
            let batcher = batcher.clone();
            async move { (c, t, batcher.read(reads(Some(c), Some(t))).await.unwrap()) }
        });
        for (c, t, rows) in futures_util::future::join_all(asks).await {
            assert_eq!(ids(&rows), (Some(c), Some(t)));
        }
        // A revocation committed before the read is queued is what the read sees.
        crate::db::tokens::revoke_access_token(&mut db.get().unwrap(), "t1", 5).unwrap();
        let rows = batcher.read(reads(None, Some("t1"))).await.unwrap();
        assert_eq!(rows.access_token.unwrap().revoked_at, Some(5));
    }

    #[actix_web::test]
    async fn worker_batches_answer_each_database_and_request_with_its_own_rows() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (db_a, db_b) = (seeded_db(&dir_a), seeded_db(&dir_b));
        // Only the second database knows t3: a read answered from the wrong queue shows.
        crate::db::tokens::insert_access_token(
            &mut db_b.get().unwrap(),
            &AccessTokenRow::of_client("t3", "c1"),
        )
        .unwrap();
        let (a, b) = (
            WorkerBatches::<IntrospectionReads>::new(&db_a.pool),
            WorkerBatches::<IntrospectionReads>::new(&db_b.pool),
        );
        let asks = (0..200).map(|i| {
            let (batches, t, found) = match i % 3 {
                0 => (&a, "t1", true),
                1 => (&a, "t3", false),
                _ => (&b, "t3", true),
            };
            async move {
                let rows = batches.read(reads(Some("c2"), Some(t))).await.unwrap();
                (rows, t, found)
            }
        });
        for (rows, t, found) in futures_util::future::join_all(asks).await {
            assert_eq!(ids(&rows), (Some("c2"), found.then_some(t)));
        }
        crate::db::tokens::revoke_access_token(&mut db_a.get().unwrap(), "t1", 5).unwrap();
        let rows = a.read(reads(None, Some("t1"))).await.unwrap();
        assert_eq!(rows.access_token.unwrap().revoked_at, Some(5));
    }

    #[actix_web::test]
    async fn worker_batches_wait_off_the_worker_when_every_connection_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let db = seeded_db(&dir);
        let batches = WorkerBatches::<IntrospectionReads>::new(&db.pool);
        let held: Vec<_> = (0..db.pool.max_size()).map(|_| db.get().unwrap()).collect();
        assert!(db.pool.try_get().is_none());
        // Given back later by another thread; the read must wait for it without blocking
        // this (single-threaded) runtime, or the timer below could not fire either.
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(held);
        });
        let read = async {
            let rows = batches.read(reads(Some("c1"), Some("t2"))).await;
            (rows, std::time::Instant::now())
        };
        let tick = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            std::time::Instant::now()
        };
        let ((rows, read_at), ticked_at) = futures_util::join!(read, tick);
        assert_eq!(ids(&rows.unwrap()), (Some("c1"), Some("t2")));
        assert!(
            ticked_at < read_at,
            "the worker was blocked while the read waited"
        );
        release.join().unwrap();
    }
}
