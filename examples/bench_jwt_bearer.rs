//! Load generator for the hot paths a fixed-body tool cannot drive, because every request
//! spends a single-use credential: the JWT-bearer exchange of authmd's identity assertions and
//! refresh-token rotation. Phase 1 registers anonymous agents (each answer carries a fresh
//! assertion) for the given time; phase 2 exchanges every assertion at `/oauth2/token`, keeping
//! the refresh tokens; phase 3 rotates each refresh token once. Each phase reports requests/s,
//! p50, p99 and errors as a JSON line.
//!
//! `cargo run --release --example bench_jwt_bearer -- http://127.0.0.1:8080 32 15`
//! Sends traffic only to the base URL it is given (the bench script passes 127.0.0.1).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "common/report.rs"]
mod common;
use common::report;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(15);
    assert!(
        base.starts_with("http://127.0.0.1"),
        "this load generator only targets loopback"
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();

    // Phase 1: registrations, collecting assertions.
    let assertions = Arc::new(Mutex::new(Vec::<String>::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, base, assertions, latencies, errors) = (
            client.clone(),
            base.clone(),
            assertions.clone(),
            latencies.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let t = Instant::now();
                let resp = client
                    .post(format!("{base}/agent/auth"))
                    .json(&json!({"type": "anonymous", "requested_credential_type": "identity_assertion"}))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or_default();
                        latencies.lock().unwrap().push(t.elapsed());
                        if let Some(a) = v["credential"].as_str() {
                            assertions.lock().unwrap().push(a.to_owned());
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    println!(
        "{}",
        report(
            "POST /agent/auth (identity_assertion)",
            &mut lat,
            errors.load(Ordering::Relaxed),
            started.elapsed()
        )
    );

    // Phase 2: every assertion exchanged once, keeping the refresh tokens.
    let assertions = std::mem::take(&mut *assertions.lock().unwrap());
    let (line, refresh_tokens) = spend_each(
        &client,
        &base,
        concurrency,
        seconds,
        assertions,
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion",
    )
    .await;
    println!("{}", report_as("POST /oauth2/token (jwt-bearer)", line));

    // Phase 3: every refresh token rotated once.
    let (line, _) = spend_each(
        &client,
        &base,
        concurrency,
        seconds,
        refresh_tokens,
        "refresh_token",
        "refresh_token",
    )
    .await;
    println!("{}", report_as("POST /oauth2/token (refresh_token)", line));
}

fn report_as(path: &str, mut line: Value) -> Value {
    line["path"] = json!(path);
    line
}

/// Presents each single-use credential once at the token endpoint (`grant_type`, with the
/// credential as `field`), from `concurrency` tasks until done or `seconds` pass. Returns the
/// phase's report and the refresh tokens the answers carried.
async fn spend_each(
    client: &reqwest::Client,
    base: &str,
    concurrency: usize,
    seconds: u64,
    credentials: Vec<String>,
    grant_type: &'static str,
    field: &'static str,
) -> (Value, Vec<String>) {
    let queue = Arc::new(Mutex::new(credentials));
    let refresh_tokens = Arc::new(Mutex::new(Vec::<String>::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, base, queue, latencies, errors, refresh_tokens) = (
            client.clone(),
            base.to_owned(),
            queue.clone(),
            latencies.clone(),
            errors.clone(),
            refresh_tokens.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Some(credential) = queue.lock().unwrap().pop() else {
                    break;
                };
                let t = Instant::now();
                let resp = client
                    .post(format!("{base}/oauth2/token"))
                    .form(&[("grant_type", grant_type), (field, credential.as_str())])
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or_default();
                        latencies.lock().unwrap().push(t.elapsed());
                        if let Some(rt) = v["refresh_token"].as_str() {
                            refresh_tokens.lock().unwrap().push(rt.to_owned());
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    let line = report(
        grant_type,
        &mut lat,
        errors.load(Ordering::Relaxed),
        started.elapsed(),
    );
    let kept = std::mem::take(&mut *refresh_tokens.lock().unwrap());
    (line, kept)
}
