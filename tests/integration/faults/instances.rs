//! Three instances of authmd on one PostgreSQL under a mixed, bounded load, with the invariants
//! that must hold across instances checked as it runs and afterwards:
//!
//! - a token revoked on one instance (revocation answered 200) is inactive on every instance;
//! - the same `Idempotency-Key` sent to all three at once makes one registration;
//! - an identity assertion exchanged on all three at once is accepted once (its `jti` is spent
//!   everywhere), and so is the refresh token that exchange returned;
//! - failed sign-ins for one account, spread over the three, are counted in one window.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::process::Child;

use super::{active, authmd, free_port, make_client, request_token, serve, Database};
use crate::flows::{form_value, PASSWORD};
use crate::harness::{self, Backend};

/// Failed sign-ins one account may have, over every instance, before 429.
const LOGIN_FAILURES: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_postgres_keep_every_invariant() {
    if !harness::postgres_enabled() {
        eprintln!("skipped: {} not set", harness::PG_ENV);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Database::new(Backend::Postgres, dir.path()).await;
    let (id, secret) = make_client(dir.path(), &db.url).await;
    let client = (id.as_str(), secret.as_str());
    {
        let pool = db.open();
        pool.run(|conn| {
            let password = authmd::domain::users::new_password(PASSWORD)?;
            let now = authmd::clock::Clock::now(&authmd::clock::SystemClock);
            authmd::domain::users::create(conn, now, "shared@example.com", Some(password))?;
            Ok(())
        })
        .await
        .unwrap();
    }

    // One issuer for all three, as behind one load balancer; the first instance makes the
    // signing key, the others find it.
    let ports = [free_port(), free_port(), free_port()];
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let mut servers: Vec<Child> = Vec::new();
    for port in ports {
        let mut cmd = authmd(dir.path(), &db.url, port);
        cmd.env("AUTHMD_SERVER__ISSUER", &issuer)
            .env("AUTHMD_RATE_LIMIT__ENABLED", "true")
            .env(
                "AUTHMD_RATE_LIMIT__LOGIN_FAILURES_PER_ACCOUNT",
                LOGIN_FAILURES.to_string(),
            )
            .env("AUTHMD_RATE_LIMIT__LOGIN_FAILURES_PER_IP", "1000")
            .env("AUTHMD_RATE_LIMIT__AGENT_AUTH_PER_IP", "100000")
            .env("AUTHMD_RATE_LIMIT__AGENT_AUTH_GLOBAL", "100000");
        servers.push(serve(cmd, port).await);
    }
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    let (revoked, keys, spent, locked) = tokio::join!(
        revocations(&http, &bases, client),
        idempotent_registrations(&http, &bases),
        spent_once(&http, &bases),
        shared_login_window(&bases),
    );
    assert_eq!(revoked, 30);
    assert_eq!(spent, 10);
    assert!(locked);

    // No duplicate registration per key: the database holds one per key, plus the one each
    // assertion round made.
    let pool = db.open();
    let registrations: i64 = pool
        .run(|conn| {
            use diesel::prelude::*;
            Ok(authmd::db::schema::agent_registrations::table
                .count()
                .get_result(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(registrations as usize, keys + spent);
    // And a token issued before all this is still good everywhere.
    let token = client_credentials(&http, &bases[2], client).await;
    for base in &bases {
        assert!(active(&http, base, client, &token).await);
    }
    for mut server in servers {
        server.start_kill().unwrap();
        server.wait().await.unwrap();
    }
    drop(pool);
    db.drop_pg().await;
}

async fn client_credentials(http: &reqwest::Client, base: &str, client: (&str, &str)) -> String {
    let resp = request_token(http, base, client).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Issue on one instance, revoke on the next, then introspect on all three: never active once
/// the revocation was acknowledged. Returns the rounds done.
async fn revocations(http: &reqwest::Client, bases: &[String], client: (&str, &str)) -> usize {
    let mut rounds = 0;
    for i in 0..30 {
        let token = client_credentials(http, &bases[i % 3], client).await;
        assert!(active(http, &bases[(i + 2) % 3], client, &token).await);
        let resp = http
            .post(format!("{}/oauth2/revoke", bases[(i + 1) % 3]))
            .basic_auth(client.0, Some(client.1))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        for base in bases {
            assert!(
                !active(http, base, client, &token).await,
                "a revoked token is active on {base}"
            );
        }
        rounds += 1;
    }
    rounds
}

/// The same Idempotency-Key and body sent to all three instances at once, for several keys:
/// every success carries the same registration. Returns the keys used.
async fn idempotent_registrations(http: &reqwest::Client, bases: &[String]) -> usize {
    const KEYS: usize = 15;
    for k in 0..KEYS {
        let key = format!("shared-key-{k:02}-0123456789abcdefghij");
        let answers = join_all(bases.iter().map(|base| {
            http.post(format!("{base}/agent/auth"))
                .header("Idempotency-Key", &key)
                .json(&json!({"type": "anonymous"}))
                .send()
        }))
        .await;
        let mut ids = Vec::new();
        for resp in answers {
            let resp = resp.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            match status {
                200 => ids.push(body["registration_id"].as_str().unwrap().to_owned()),
                409 => assert_eq!(body["error"], "idempotency_key_in_use"),
                other => panic!("Idempotency-Key across instances answered {other}: {body}"),
            }
        }
        assert!(!ids.is_empty(), "one of the three made the registration");
        ids.dedup();
        assert_eq!(ids.len(), 1, "one registration per key: {ids:?}");
    }
    KEYS
}

/// An identity assertion presented to all three instances at once is accepted once; so is the
/// refresh token that exchange returned. Returns the rounds done.
async fn spent_once(http: &reqwest::Client, bases: &[String]) -> usize {
    let mut rounds = 0;
    for i in 0..10 {
        let reg: Value = http
            .post(format!("{}/agent/auth", bases[i % 3]))
            .json(&json!({"type": "anonymous", "requested_credential_type": "identity_assertion"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let assertion = reg["credential"].as_str().unwrap();
        let exchanged = once_across(
            http,
            bases,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion),
            ],
        )
        .await;
        let refresh = exchanged["refresh_token"].as_str().unwrap().to_owned();
        let rotated = accepted_across(
            http,
            bases,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        // Within `tokens.refresh_grace_s` a refresh token presented again gets the same new
        // pair (a client that lost the answer retries); never a second pair.
        assert!(
            rotated
                .windows(2)
                .all(|w| w[0]["refresh_token"] == w[1]["refresh_token"]
                    && w[0]["access_token"] == w[1]["access_token"]),
            "one rotation across instances"
        );
        rounds += 1;
    }
    rounds
}

/// Posts `form` to the token endpoint of every instance at once: exactly one succeeds.
async fn once_across(http: &reqwest::Client, bases: &[String], form: &[(&str, &str)]) -> Value {
    let mut accepted = accepted_across(http, bases, form).await;
    assert_eq!(
        accepted.len(),
        1,
        "accepted once across instances: {}",
        form[0].1
    );
    accepted.pop().unwrap()
}

/// Posts `form` to the token endpoint of every instance at once; the answers that succeeded
/// (at least one). The others must be refused (`invalid_grant`, or a 503 asking for a retry).
async fn accepted_across(
    http: &reqwest::Client,
    bases: &[String],
    form: &[(&str, &str)],
) -> Vec<Value> {
    let answers = join_all(
        bases
            .iter()
            .map(|base| http.post(format!("{base}/oauth2/token")).form(form).send()),
    )
    .await;
    let mut accepted = Vec::new();
    for resp in answers {
        let resp = resp.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        match status {
            200 => accepted.push(body),
            400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
            503 => assert_eq!(body["error"], "temporarily_unavailable"),
            other => panic!("{} answered {other}: {body}", form[0].1),
        }
    }
    assert!(!accepted.is_empty(), "{} accepted somewhere", form[0].1);
    accepted
}

/// Failed sign-ins for one account, round robin over the instances: the account's window is
/// one, so the limit is reached after `LOGIN_FAILURES` in all, not per instance.
async fn shared_login_window(bases: &[String]) -> bool {
    for attempt in 0..LOGIN_FAILURES + 3 {
        let base = &bases[attempt % 3];
        let browser = crate::flows::browser();
        let html = browser
            .get(format!("{base}/account"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = form_value(&html, "csrf_token").unwrap();
        let password = if attempt < LOGIN_FAILURES {
            "wrong password"
        } else {
            PASSWORD
        };
        let resp = browser
            .post(format!("{base}/login"))
            .form(&[
                ("email", "shared@example.com"),
                ("password", password),
                ("csrf_token", &csrf),
                ("return_to", "/account"),
            ])
            .send()
            .await
            .unwrap();
        let expected = if attempt < LOGIN_FAILURES { 401 } else { 429 };
        assert_eq!(
            resp.status().as_u16(),
            expected,
            "sign-in {attempt} on {base}"
        );
    }
    true
}
