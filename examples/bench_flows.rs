//! Load generator for the browser and device flows, whose requests a fixed-body tool cannot
//! replay: each code is spent once, and authorization needs a signed-in session.
//!
//! Setup (not measured): signs one user in through the login form and allows the consent page
//! once for each (client, scope) pair used below, so later authorizations are answered with a
//! code at once, as for a returning user. Then, each phase for the given time at the given
//! concurrency, one JSON line each (requests/s, p50, p99, errors):
//!
//! 1. `GET /oauth2/authorize` for a registered confidential client (consent remembered),
//!    collecting codes;
//! 2. the same with scope `openid`;
//! 3. the exchange of each code of phase 1;
//! 4. the exchange of each `openid` code (each answer carries a signed `id_token`);
//! 5. `GET /oauth2/authorize` for a client named by its metadata document URL (fetched once,
//!    then cached), a public client with a loopback redirect: its consent page, shown every
//!    time;
//! 6. device authorizations (`POST /oauth2/device`), collecting device codes;
//! 7. one poll of each device code at the token endpoint (`authorization_pending` is its
//!    success).
//!
//! `cargo run --release --example bench_flows -- http://127.0.0.1:8080 32 10` with, in the
//! environment: `BENCH_EMAIL`, `BENCH_PASSWORD`, `BENCH_CLIENT`, `BENCH_SECRET`,
//! `BENCH_REDIRECT` (the client's redirect URI), `BENCH_DEVICE_CLIENT`, `BENCH_DEVICE_SECRET`,
//! `BENCH_CIMD_URL` (a document naming `BENCH_REDIRECT`). Sends traffic only to the base URL it
//! is given (loopback).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{redirect::Policy, StatusCode};
use serde_json::Value;
use url::Url;

#[path = "common/report.rs"]
mod common;
use common::report;

const VERIFIER: &str = "bench-verifier-0123456789-0123456789-0123456789-abcdef";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is required"))
}

/// Runs `step` from `concurrency` tasks until `seconds` pass or a step returns `None` (no work
/// left). A step answers `Some(Ok(item))` (timed, `item` kept), `Some(Err(()))` (an error).
/// Prints the phase's line and returns the items.
async fn phase<T, F, Fut>(path: &str, concurrency: usize, seconds: u64, step: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Result<Option<T>, ()>>> + Send,
{
    let step = Arc::new(step);
    let items = Arc::new(Mutex::new(Vec::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (step, items, latencies, errors) = (
            step.clone(),
            items.clone(),
            latencies.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let t = Instant::now();
                match step().await {
                    None => break,
                    Some(Ok(item)) => {
                        latencies.lock().unwrap().push(t.elapsed());
                        if let Some(item) = item {
                            items.lock().unwrap().push(item);
                        }
                    }
                    Some(Err(())) => {
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
            path,
            &mut lat,
            errors.load(Ordering::Relaxed),
            started.elapsed()
        )
    );
    let items = std::mem::take(&mut *items.lock().unwrap());
    items
}

fn form_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(
        html[start..start + end]
            .replace("&amp;", "&")
            .replace("&#38;", "&"),
    )
}

struct Flows {
    base: String,
    /// Holds the session cookie; follows no redirect, so each answer is seen.
    browser: reqwest::Client,
    redirect: String,
    challenge: String,
}

impl Flows {
    fn authorize_url(&self, client_id: &str, scope: &str) -> String {
        let mut url = Url::parse(&format!("{}/oauth2/authorize", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &self.redirect)
            .append_pair("scope", scope)
            .append_pair("state", "bench")
            .append_pair("code_challenge", &self.challenge)
            .append_pair("code_challenge_method", "S256");
        url.to_string()
    }

    /// The code of a redirect to the client, or `None`.
    fn code_of(resp: &reqwest::Response) -> Option<String> {
        let location = resp.headers().get("location")?.to_str().ok()?;
        Url::parse(location)
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
    }

    /// Setup: signs in when the login form shows, then allows the consent page once.
    async fn consent(&self, client_id: &str, scope: &str, email: &str, password: &str) {
        let url = self.authorize_url(client_id, scope);
        let mut page = self.browser.get(&url).send().await.unwrap();
        let mut html = page.text().await.unwrap();
        if html.contains("name=\"password\"") {
            let resp = self
                .browser
                .post(format!("{}/login", self.base))
                .form(&[
                    ("email", email),
                    ("password", password),
                    ("csrf_token", &form_value(&html, "csrf_token").unwrap()),
                    ("return_to", &form_value(&html, "return_to").unwrap()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::SEE_OTHER, "sign-in failed");
            page = self.browser.get(&url).send().await.unwrap();
            html = page.text().await.unwrap();
        }
        let csrf = form_value(&html, "csrf_token").expect("a consent page");
        let mut form: Vec<(String, String)> = Url::parse(&url)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        form.push(("csrf_token".into(), csrf));
        form.push(("decision".into(), "allow".into()));
        let resp = self
            .browser
            .post(format!("{}/oauth2/authorize", self.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(Self::code_of(&resp).is_some(), "consent gave no code");
    }

    /// One authorization that shows the consent page (a public client with a loopback
    /// redirect is asked every time, RFC 8252 §8.6).
    async fn consent_page(&self, client_id: &str, scope: &str) -> Result<Option<String>, ()> {
        let resp = self
            .browser
            .get(self.authorize_url(client_id, scope))
            .send()
            .await
            .map_err(drop)?;
        let status = resp.status();
        let html = resp.text().await.map_err(drop)?;
        match status == StatusCode::OK && html.contains("value=\"allow\"") {
            true => Ok(None),
            false => Err(()),
        }
    }

    /// One authorization with consent remembered: a redirect with a code.
    async fn authorize(&self, client_id: &str, scope: &str) -> Result<Option<String>, ()> {
        let resp = self
            .browser
            .get(self.authorize_url(client_id, scope))
            .send()
            .await
            .map_err(drop)?;
        match (resp.status(), Self::code_of(&resp)) {
            (StatusCode::FOUND, Some(code)) => Ok(Some(code)),
            _ => Err(()),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    assert!(
        base.starts_with("http://127.0.0.1"),
        "this load generator only targets loopback"
    );
    let (email, password) = (env("BENCH_EMAIL"), env("BENCH_PASSWORD"));
    let (client_id, secret) = (env("BENCH_CLIENT"), env("BENCH_SECRET"));
    let (device_client, device_secret) = (env("BENCH_DEVICE_CLIENT"), env("BENCH_DEVICE_SECRET"));
    let cimd = env("BENCH_CIMD_URL");
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        VERIFIER.as_bytes(),
    ));
    let flows = Arc::new(Flows {
        base: base.clone(),
        browser: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap(),
        redirect: env("BENCH_REDIRECT"),
        challenge,
    });
    let api = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();

    for scope in ["api.read", "openid api.read"] {
        flows.consent(&client_id, scope, &email, &password).await;
    }
    // The document is fetched here, so the phase below reads it from the cache.
    flows
        .consent_page(&cimd, "api.read")
        .await
        .expect("the document client's consent page");

    let authorize = |client: String, scope: &'static str| {
        let flows = flows.clone();
        move || {
            let (flows, client) = (flows.clone(), client.clone());
            async move { Some(flows.authorize(&client, scope).await) }
        }
    };
    let codes = phase(
        "GET /oauth2/authorize (consent remembered)",
        concurrency,
        seconds,
        authorize(client_id.clone(), "api.read"),
    )
    .await;
    let oidc_codes = phase(
        "GET /oauth2/authorize (openid, consent remembered)",
        concurrency,
        seconds,
        authorize(client_id.clone(), "openid api.read"),
    )
    .await;

    // Spends each code once; `expect` names the field a good answer carries.
    let exchange = |codes: Vec<String>, expect: &'static str| {
        let queue = Arc::new(Mutex::new(codes));
        let (api, base, flows) = (api.clone(), base.clone(), flows.clone());
        let (client_id, secret) = (client_id.clone(), secret.clone());
        move || {
            let code = queue.lock().unwrap().pop();
            let (api, base, flows) = (api.clone(), base.clone(), flows.clone());
            let (client_id, secret) = (client_id.clone(), secret.clone());
            async move {
                let code = code?;
                let resp = api
                    .post(format!("{base}/oauth2/token"))
                    .basic_auth(client_id, Some(secret))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", &flows.redirect),
                        ("code_verifier", VERIFIER),
                    ])
                    .send()
                    .await;
                let Ok(resp) = resp else {
                    return Some(Err(()));
                };
                let ok = resp.status().is_success()
                    && resp
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v[expect].is_string());
                Some(if ok { Ok(None::<()>) } else { Err(()) })
            }
        }
    };
    phase(
        "POST /oauth2/token (authorization_code)",
        concurrency,
        seconds,
        exchange(codes, "access_token"),
    )
    .await;
    phase(
        "POST /oauth2/token (authorization_code, openid: id_token)",
        concurrency,
        seconds,
        exchange(oidc_codes, "id_token"),
    )
    .await;
    phase(
        "GET /oauth2/authorize (metadata document client, cached; consent page)",
        concurrency,
        seconds,
        {
            let flows = flows.clone();
            move || {
                let (flows, cimd) = (flows.clone(), cimd.clone());
                async move {
                    Some(
                        flows
                            .consent_page(&cimd, "api.read")
                            .await
                            .map(|_| None::<()>),
                    )
                }
            }
        },
    )
    .await;

    let device_codes = {
        let (api, base) = (api.clone(), base.clone());
        let (client, secret) = (device_client.clone(), device_secret.clone());
        phase("POST /oauth2/device", concurrency, seconds, move || {
            let (api, base) = (api.clone(), base.clone());
            let (client, secret) = (client.clone(), secret.clone());
            async move {
                let resp = api
                    .post(format!("{base}/oauth2/device"))
                    .basic_auth(client, Some(secret))
                    .form(&[("scope", "api.read")])
                    .send()
                    .await;
                let Ok(resp) = resp else {
                    return Some(Err(()));
                };
                let body: HashMap<String, Value> = resp.json().await.unwrap_or_default();
                Some(
                    body.get("device_code")
                        .and_then(Value::as_str)
                        .map(|c| Some(c.to_owned()))
                        .ok_or(()),
                )
            }
        })
        .await
    };
    let queue = Arc::new(Mutex::new(device_codes));
    phase(
        "POST /oauth2/token (device_code, pending)",
        concurrency,
        seconds,
        move || {
            let code = queue.lock().unwrap().pop();
            let (api, base) = (api.clone(), base.clone());
            let (client, secret) = (device_client.clone(), device_secret.clone());
            async move {
                let code = code?;
                let resp = api
                    .post(format!("{base}/oauth2/token"))
                    .basic_auth(client, Some(secret))
                    .form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                        ("device_code", &code),
                    ])
                    .send()
                    .await;
                let Ok(resp) = resp else {
                    return Some(Err(()));
                };
                let body: Value = resp.json().await.unwrap_or_default();
                Some(if body["error"] == "authorization_pending" {
                    Ok(None::<()>)
                } else {
                    Err(())
                })
            }
        },
    )
    .await;
}
