//! Graceful shutdown: SIGTERM while tokens and registrations are being issued. Requests in
//! flight are finished (through the SQLite group commit too) and answered, the process exits 0
//! by itself, and after a restart every credential a client was given works.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{assert_all_active, authmd, free_port, issue, make_client, serve, Database};
use crate::harness::Backend;

crate::db_tests!(sigterm_drains_in_flight_requests);

/// One request: when it was sent and answered (relative to the start), and what came back.
struct Sent {
    sent: Duration,
    answered: Duration,
    credential: Option<String>,
    status: u16,
}

async fn sigterm_drains_in_flight_requests(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new(backend, dir.path()).await;
    let (id, secret) = make_client(dir.path(), &db.url).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(authmd(dir.path(), &db.url, port), port).await;
    // A connection per request: each request is either accepted, and then must be answered, or
    // refused at connect once the server has stopped listening.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let start = Instant::now();
    let log = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let mut load = Vec::new();
    for worker in 0..16 {
        let (http, base, id, secret, log) = (
            http.clone(),
            base.clone(),
            id.clone(),
            secret.clone(),
            log.clone(),
        );
        load.push(tokio::spawn(async move {
            for _ in 0..2_000 {
                let sent = start.elapsed();
                let answer = issue(&http, &base, (&id, &secret), worker).await;
                let Ok((resp, field)) = answer else {
                    // Nothing listens any more: the load is over.
                    return;
                };
                let status = resp.status().as_u16();
                let body: Option<Value> = resp.json().await.ok();
                log.lock().unwrap().push(Sent {
                    sent,
                    answered: start.elapsed(),
                    credential: body.and_then(|b| b[field].as_str().map(str::to_owned)),
                    status,
                });
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let pid = server.id().unwrap().to_string();
    let term_at = start.elapsed();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("authmd exits by itself after SIGTERM")
        .unwrap();
    assert!(exit.success(), "a clean exit: {exit}");
    for task in load {
        task.await.unwrap();
    }

    let log = std::mem::take(&mut *log.lock().unwrap());
    assert!(log.len() > 20, "the load ran: {} requests", log.len());
    for s in &log {
        assert!(s.status < 500, "an answer during shutdown was {}", s.status);
    }
    let drained = log
        .iter()
        .filter(|s| s.sent < term_at && s.answered > term_at && s.credential.is_some())
        .count();
    assert!(
        drained > 0,
        "requests in flight at SIGTERM were finished and answered"
    );

    // Every credential given out, in flight at SIGTERM or before it, survived.
    let mut server = serve(authmd(dir.path(), &db.url, port), port).await;
    let http = reqwest::Client::new();
    let answered = log.iter().filter_map(|s| s.credential.as_deref());
    assert_all_active(&http, &base, (&id, &secret), answered, "at shutdown").await;
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    db.drop_pg().await;
}
