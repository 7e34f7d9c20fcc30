//! `kill -9` in the middle of sustained token issuance and registration, then a restart on the
//! same database (SQLite and PostgreSQL). Every credential a client received must still work,
//! every credential row must have the audit row written in its transaction, and SQLite must
//! pass its integrity check. A few hundred requests, a second or two of load.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{
    assert_all_active, assert_audited, authmd, free_port, issue, make_client, serve, Database,
};
use crate::harness::Backend;

crate::db_tests!(kill_9_during_issuance_loses_nothing_answered);

async fn kill_9_during_issuance_loses_nothing_answered(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new(backend, dir.path()).await;
    let (id, secret) = make_client(dir.path(), &db.url).await;

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(authmd(dir.path(), &db.url, port), port).await;
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut load = Vec::new();
    for worker in 0..8 {
        let (http, base, id, secret, received) = (
            http.clone(),
            base.clone(),
            id.clone(),
            secret.clone(),
            received.clone(),
        );
        load.push(tokio::spawn(async move {
            // Until the server is gone (bounded in any case).
            for _ in 0..400 {
                let answer = issue(&http, &base, (&id, &secret), worker).await;
                let Ok((resp, field)) = answer else { return };
                if resp.status() != 200 {
                    continue;
                }
                // A client received the credential only if it read the whole answer.
                let Ok(body) = resp.json::<Value>().await else {
                    return;
                };
                if let Some(c) = body[field].as_str() {
                    received.lock().unwrap().push(c.to_owned());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.start_kill().unwrap(); // SIGKILL
    server.wait().await.unwrap();
    for task in load {
        task.await.unwrap();
    }
    let received = received.lock().unwrap().clone();
    assert!(
        received.len() > 20,
        "load ran: {} credentials",
        received.len()
    );

    // Restarted on the same database: every credential a client received works.
    let mut server = serve(authmd(dir.path(), &db.url, port), port).await;
    let client = (id.as_str(), secret.as_str());
    assert_all_active(
        &http,
        &base,
        client,
        received.iter().map(String::as_str),
        "after kill -9",
    )
    .await;
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    // Nothing committed without its audit row (same transaction), and SQLite is intact.
    let pool = db.open();
    assert_audited(&pool, &id).await;
    let mut conn = pool.get().unwrap();
    authmd::db::integrity_check(&mut conn).expect("the database passes its integrity check");
    drop(conn);
    drop(pool);
    db.drop_pg().await;
}
