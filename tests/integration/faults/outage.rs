//! PostgreSQL cut away under load and brought back, without restarting authmd.
//!
//! authmd reaches PostgreSQL through a TCP proxy on loopback; cutting the proxy closes every
//! connection and refuses new ones, which is what authmd sees when PostgreSQL stops (the shared
//! server itself is never stopped: other tests use it). Meanwhile every answer must be a 200 or
//! a `503` with `Retry-After` and a JSON `temporarily_unavailable` body, none slower than the
//! configured connection timeout, and `/readyz` must say not ready; afterwards service resumes,
//! every token a client received before or during the outage is still valid, and every token
//! row has its audit row.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::{
    assert_all_active, assert_audited, authmd, free_port, make_client, register_anonymous,
    request_token, serve, Database,
};
use crate::harness::{self, Backend};

/// Seconds authmd waits for a database connection before answering 503.
const CONNECTION_TIMEOUT_S: u64 = 2;

/// A TCP proxy to PostgreSQL that can be cut and restored.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (flag, tasks) = (cut.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { port, cut, open }
    }

    /// Closes every open connection and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// One answer seen during the run.
struct Seen {
    status: u16,
    retry_after: bool,
    error: Option<String>,
    elapsed: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_answers_503_and_service_resumes() {
    if !harness::postgres_enabled() {
        eprintln!("skipped: {} not set", harness::PG_ENV);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new(Backend::Postgres, dir.path()).await;
    let (id, secret) = make_client(dir.path(), &db.url).await;
    let mut url = url::Url::parse(&db.url).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    url.set_port(Some(proxy.port)).unwrap();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = authmd(dir.path(), url.as_str(), port);
    cmd.env(
        "AUTHMD_DATABASE__CONNECTION_TIMEOUT_S",
        CONNECTION_TIMEOUT_S.to_string(),
    );
    let mut server = serve(cmd, port).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let mut received = Vec::new();
    for _ in 0..10 {
        let resp = request_token(&http, &base, (&id, &secret)).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        received.push(body["access_token"].as_str().unwrap().to_owned());
    }

    // Load: token issuance, introspection of a token issued before, anonymous registration.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let during = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (http, base, id, secret) = (http.clone(), base.clone(), id.clone(), secret.clone());
        let (stop, seen, during, known) = (
            stop.clone(),
            seen.clone(),
            during.clone(),
            received[0].clone(),
        );
        load.push(tokio::spawn(async move {
            for _ in 0..5_000 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let started = Instant::now();
                let (resp, field) = match worker % 3 {
                    0 => (
                        request_token(&http, &base, (&id, &secret)).await.unwrap(),
                        "access_token",
                    ),
                    1 => (
                        http.post(format!("{base}/oauth2/introspect"))
                            .basic_auth(&id, Some(&secret))
                            .form(&[("token", known.as_str())])
                            .send()
                            .await
                            .unwrap(),
                        "active",
                    ),
                    _ => (
                        register_anonymous(&http, &base).await.unwrap(),
                        "credential",
                    ),
                };
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                let body: Value = resp.json().await.expect("every answer is JSON");
                let elapsed = started.elapsed();
                if status == 200 && field == "access_token" {
                    during
                        .lock()
                        .unwrap()
                        .push(body[field].as_str().unwrap().to_owned());
                }
                seen.lock().unwrap().push(Seen {
                    status,
                    retry_after,
                    error: body["error"].as_str().map(str::to_owned),
                    elapsed,
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/readyz says not ready in the outage");
    assert!(started.elapsed() < Duration::from_secs(CONNECTION_TIMEOUT_S + 2));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    proxy.restore();

    // Service resumes without a restart.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = http.get(format!("{base}/readyz")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    // Connections that died idle in the pool are discarded on first use; after that, every
    // request is served.
    let mut after = 0;
    for _ in 0..40 {
        let resp = request_token(&http, &base, (&id, &secret)).await.unwrap();
        if resp.status() == 200 {
            after += 1;
        } else {
            assert_eq!(after, 0, "a 503 after service had resumed");
        }
    }
    assert!(after >= 20, "service resumed: {after} of 40 tokens issued");

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let refused: Vec<&Seen> = seen.iter().filter(|s| s.status != 200).collect();
    assert!(
        !refused.is_empty(),
        "the outage was seen by the load ({} answers)",
        seen.len()
    );
    for s in &refused {
        assert_eq!(s.status, 503, "an outage is a 503, never a 500");
        assert!(s.retry_after, "every 503 has Retry-After");
        assert_eq!(s.error.as_deref(), Some("temporarily_unavailable"));
    }
    let slowest = seen.iter().map(|s| s.elapsed).max().unwrap();
    assert!(
        slowest < Duration::from_secs(CONNECTION_TIMEOUT_S + 2),
        "no request hung past the connection timeout: slowest {slowest:?}"
    );

    // Every token a client received, before or during the outage, is still valid.
    received.extend(during.lock().unwrap().iter().cloned());
    let client = (id.as_str(), secret.as_str());
    assert_all_active(
        &http,
        &base,
        client,
        received.iter().map(String::as_str),
        "in the outage",
    )
    .await;
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let pool = db.open();
    assert_audited(&pool, &id).await;
    drop(pool);
    db.drop_pg().await;
}
