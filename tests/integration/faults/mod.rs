//! Faults, each driven against the real binary with bounded load on loopback: `kill -9` during
//! issuance (`kill`), PostgreSQL cut away and back (`outage`), SQLite out of space (`disk`), the
//! mail server unreachable during claims (`mail`), SIGTERM while requests are in flight
//! (`shutdown`), and three instances sharing one PostgreSQL (`instances`).
//!
//! Shared here: starting `authmd` on a database of either backend, and making its client.

mod disk;
mod instances;
mod kill;
mod mail;
mod outage;
mod shutdown;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::harness::{self, Backend};

pub const ADMIN: &str = "faults-admin-token-0123456789abcdef0123";

/// `authmd` on `db_url`, listening on `port`, with the rate limiter off (these tests are about
/// the database and the process, not about throttling) and nothing on stdout.
pub fn authmd(dir: &Path, db_url: &str, port: u16) -> Command {
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

/// Starts `cmd serve` and waits (bounded) until `/readyz` answers 200.
pub async fn serve(mut cmd: Command, port: u16) -> Child {
    let child = cmd.arg("serve").spawn().unwrap();
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A database of its own for one test: a SQLite file in `dir`, or a fresh PostgreSQL database
/// (dropped by [`Database::drop_pg`]).
pub struct Database {
    pub url: String,
    pg: Option<(String, String)>,
}

impl Database {
    pub async fn new(backend: Backend, dir: &Path) -> Self {
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}", dir.join("faults.db").display()),
                pg: None,
            },
            Backend::Postgres => {
                let admin_url = std::env::var(harness::PG_ENV).unwrap();
                let name = tokio::task::spawn_blocking({
                    let admin_url = admin_url.clone();
                    move || harness::fresh_pg_database(&admin_url)
                })
                .await
                .unwrap();
                Self {
                    url: harness::replace_db_name(&admin_url, &name),
                    pg: Some((admin_url, name)),
                }
            }
        }
    }

    /// A pool on this database, for checking what was committed.
    pub fn open(&self) -> authmd::db::Db {
        let mut config = authmd::config::Config::defaults();
        config.database.url = self.url.clone();
        authmd::db::Db::connect(&config).unwrap()
    }

    pub async fn drop_pg(self) {
        let Some((admin_url, name)) = self.pg else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            use diesel::connection::SimpleConnection;
            use diesel::Connection;
            if let Ok(mut c) = diesel::PgConnection::establish(&admin_url) {
                let _ =
                    c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        })
        .await;
    }
}

/// A confidential client allowed `client_credentials` and introspection, made with the CLI:
/// `(client_id, client_secret)`.
pub async fn make_client(dir: &Path, db_url: &str) -> (String, String) {
    let out = authmd(dir, db_url, 0)
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
    assert!(out.status.success(), "client create failed");
    let client: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        client["client_id"].as_str().unwrap().to_owned(),
        client["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// `client_credentials` at the token endpoint, as `(client_id, client_secret)`.
pub async fn request_token(
    http: &reqwest::Client,
    base: &str,
    (id, secret): (&str, &str),
) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
}

/// An anonymous agent registration.
pub async fn register_anonymous(
    http: &reqwest::Client,
    base: &str,
) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{base}/agent/auth"))
        .json(&serde_json::json!({"type": "anonymous"}))
        .send()
        .await
}

/// The mixed issuing load: even workers ask for tokens, odd ones register agents. The answer,
/// and the field of its body that carries the credential.
pub async fn issue(
    http: &reqwest::Client,
    base: &str,
    client: (&str, &str),
    worker: usize,
) -> reqwest::Result<(reqwest::Response, &'static str)> {
    if worker.is_multiple_of(2) {
        Ok((request_token(http, base, client).await?, "access_token"))
    } else {
        Ok((register_anonymous(http, base).await?, "credential"))
    }
}

/// Whether `credential` introspects as active.
pub async fn active(
    http: &reqwest::Client,
    base: &str,
    (id, secret): (&str, &str),
    credential: &str,
) -> bool {
    let info: Value = http
        .post(format!("{base}/oauth2/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", credential)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    info["active"] == true
}

/// Every credential a client received still introspects as active; `lost` says where it would
/// have been lost.
pub async fn assert_all_active<'a>(
    http: &reqwest::Client,
    base: &str,
    client: (&str, &str),
    received: impl IntoIterator<Item = &'a str>,
    lost: &str,
) {
    for credential in received {
        assert!(
            active(http, base, client, credential).await,
            "{}… lost {lost}",
            &credential[..8]
        );
    }
}

/// Nothing committed without its audit row: every access token of `client_id` has its
/// `token.issued` row and every registration its `registration.created` row (each credential
/// and its audit row are written in one transaction). Returns `(tokens, registrations)`.
pub async fn assert_audited(db: &authmd::db::Db, client_id: &str) -> (i64, i64) {
    let ((tokens, token_rows), (registrations, registration_rows)) = audited(db, client_id).await;
    assert_eq!(tokens, token_rows, "every token row has its audit row");
    assert_eq!(
        registrations, registration_rows,
        "every registration has its audit row"
    );
    (tokens, registrations)
}

async fn audited(db: &authmd::db::Db, client_id: &str) -> ((i64, i64), (i64, i64)) {
    use diesel::prelude::*;
    let id = client_id.to_owned();
    db.run(move |conn| {
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
        Ok(((tokens, token_rows), (registrations, registration_rows)))
    })
    .await
    .unwrap()
}
