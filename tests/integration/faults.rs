//! Faults, driven against the real binary: `kill -9` in the middle of sustained token issuance
//! and registration, then a restart on the same database (SQLite and PostgreSQL). Every
//! credential a client received must still work, every credential row must have the audit row
//! written in its transaction, and SQLite must pass its integrity check. Bounded: a few hundred
//! requests on loopback, a second or two of load.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::harness::{self, Backend};

crate::db_tests!(kill_9_during_issuance_loses_nothing_answered);

const ADMIN: &str = "faults-admin-token-0123456789abcdef0123";

fn authmd(dir: &Path, db_url: &str, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authmd"));
    cmd.current_dir(dir)
        .env_remove("RUST_LOG")
        .env("AUTHMD_DATABASE__URL", db_url)
        .env("AUTHMD_SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("AUTHMD_SERVER__ISSUER", format!("http://127.0.0.1:{port}"))
        .env("AUTHMD_RATE_LIMIT__ENABLED", "false")
        .env("AUTHMD_ADMIN__TOKEN", ADMIN)
        .env("AUTHMD_LOG__ACCESS_LOG", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn serve(dir: &Path, db_url: &str, port: u16) -> Child {
    let child = authmd(dir, db_url, port).arg("serve").spawn().unwrap();
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status() == 200 {
                return child;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("authmd did not become ready");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn kill_9_during_issuance_loses_nothing_answered(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (db_url, pg) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("faults.db").display()),
            None,
        ),
        Backend::Postgres => {
            let admin_url = std::env::var(harness::PG_ENV).unwrap();
            let name = tokio::task::spawn_blocking({
                let admin_url = admin_url.clone();
                move || harness::fresh_pg_database(&admin_url)
            })
            .await
            .unwrap();
            (
                harness::replace_db_name(&admin_url, &name),
                Some((admin_url, name)),
            )
        }
    };
    // A client that may take client_credentials tokens and introspect, made with the CLI.
    let out = authmd(dir.path(), &db_url, 0)
        .args([
            "client",
            "create",
            "--name",
            "load",
            "--grant-type",
            "client_credentials",
            "--scope",
            "api.read",
            "--introspect",
            "--json",
        ])
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let client: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (id, secret) = (
        client["client_id"].as_str().unwrap().to_owned(),
        client["client_secret"].as_str().unwrap().to_owned(),
    );

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(dir.path(), &db_url, port).await;
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
                let answer = if worker % 2 == 0 {
                    http.post(format!("{base}/oauth2/token"))
                        .basic_auth(&id, Some(&secret))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await
                        .map(|r| (r, "access_token"))
                } else {
                    http.post(format!("{base}/agent/auth"))
                        .json(&json!({"type": "anonymous"}))
                        .send()
                        .await
                        .map(|r| (r, "credential"))
                };
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
    let mut server = serve(dir.path(), &db_url, port).await;
    for credential in &received {
        let info: Value = http
            .post(format!("{base}/oauth2/introspect"))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", credential.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            info["active"],
            true,
            "{}… lost after kill -9",
            &credential[..8]
        );
    }
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    // Nothing committed without its audit row (same transaction), and SQLite is intact.
    let mut config = authmd::config::Config::defaults();
    config.database.url = db_url.clone();
    let db = authmd::db::Db::connect(&config).unwrap();
    let (tokens, token_rows, registrations, registration_rows) = db
        .run(move |conn| {
            use authmd::db::schema::{access_tokens, agent_registrations, audit_events};
            let tokens: i64 = access_tokens::table
                .filter(access_tokens::client_id.eq(&id))
                .count()
                .get_result(conn)?;
            let token_rows: i64 = audit_events::table
                .filter(audit_events::event.eq("token.issued"))
                .filter(audit_events::client_id.eq(&id))
                .count()
                .get_result(conn)?;
            let registrations: i64 = agent_registrations::table.count().get_result(conn)?;
            let registration_rows: i64 = audit_events::table
                .filter(audit_events::event.eq("registration.created"))
                .count()
                .get_result(conn)?;
            Ok((tokens, token_rows, registrations, registration_rows))
        })
        .await
        .unwrap();
    assert_eq!(tokens, token_rows, "every token row has its audit row");
    assert_eq!(
        registrations, registration_rows,
        "every registration has its audit row"
    );
    let mut conn = db.get().unwrap();
    authmd::db::integrity_check(&mut conn).expect("the database passes its integrity check");
    drop(conn);
    drop(db);
    if let Some((admin_url, name)) = pg {
        let _ = tokio::task::spawn_blocking(move || {
            use diesel::connection::SimpleConnection;
            if let Ok(mut c) = diesel::PgConnection::establish(&admin_url) {
                let _ =
                    c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        })
        .await;
    }
}
