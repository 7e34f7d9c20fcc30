//! The `authmd` binary as an operator runs it: start-up with defaults, bad configuration,
//! migrations, key commands, and what reaches the log.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::harness;

fn authmd(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authmd"));
    cmd.current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The harness's own variable is not configuration, but keep the environment clean anyway.
    for (name, _) in std::env::vars() {
        if name.starts_with("AUTHMD_") && name.contains("__") {
            cmd.env_remove(name);
        }
    }
    cmd
}

async fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn assert_one_clean_line(stderr: &str, key: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    assert!(lines[0].contains(key), "line should name {key}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nbindd = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    // --config after the subcommand, as SPEC allows.
    let (code, _, stderr) = run(authmd(dir.path()).args(["serve", "--config", "bad.toml"])).await;
    assert_eq!(code, 2);
    assert_one_clean_line(&stderr, "server.bindd");
    assert_eq!(
        stderr.matches("bindd").count(),
        1,
        "the unknown key is named once: {stderr}"
    );

    // A removed key names its replacement.
    std::fs::write(
        dir.path().join("old.toml"),
        "[server]\ntrust_forwarded_for = true\n",
    )
    .unwrap();
    let (code, _, stderr) = run(authmd(dir.path()).args(["serve", "--config", "old.toml"])).await;
    assert_eq!(code, 2);
    assert_one_clean_line(&stderr, "server.trusted_proxies");
    let (code, _, stderr) = run(authmd(dir.path())
        .arg("serve")
        .env("AUTHMD_ADMIN__TOKEN", "too-short"))
    .await;
    assert_eq!(code, 2);
    assert_one_clean_line(&stderr, "admin.token");

    std::fs::write(
        dir.path().join("bad2.toml"),
        "[tokens]\naccess_token_format = \"paseto\"\n",
    )
    .unwrap();
    let (code, _, stderr) =
        run(authmd(dir.path()).args(["--config", "bad2.toml", "migrate"])).await;
    assert_eq!(code, 2);
    assert_one_clean_line(&stderr, "tokens.access_token_format");

    let (code, _, stderr) = run(authmd(dir.path())
        .arg("serve")
        .env("AUTHMD_TOKENS__ACCESS_TOKEN_TTL_S", "soon"))
    .await;
    assert_eq!(code, 2);
    assert_one_clean_line(&stderr, "tokens.access_token_ttl_s");

    let (code, _, stderr) =
        run(authmd(dir.path()).args(["serve", "--config", "missing.toml"])).await;
    assert_eq!(code, 2);
    assert_one_clean_line(&stderr, "missing.toml");

    assert!(
        !dir.path().join("data").exists(),
        "nothing is created when the config is bad"
    );
}

#[tokio::test]
async fn unreachable_database_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(authmd(dir.path()).arg("migrate").env(
        "AUTHMD_DATABASE__URL",
        "postgres://nobody:pw-must-not-leak@127.0.0.1:1/none",
    ))
    .await;
    assert_eq!(code, 1);
    assert_one_clean_line(&stderr, "PostgreSQL");
    assert!(!stderr.contains("pw-must-not-leak"), "{stderr}");
}

/// `cargo run --release -- serve` on a fresh machine: SQLite under ./data, migrated, a key
/// generated, HTTP on the configured address. Also: no secret from a request reaches the log.
#[tokio::test]
async fn serve_with_defaults_creates_everything_and_logs_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = authmd(dir.path())
        .arg("serve")
        .env("AUTHMD_SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("AUTHMD_SERVER__ISSUER", &base)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if let Ok(resp) = client.get(format!("{base}/healthz")).send().await {
            up = resp.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "server did not come up");
    assert!(dir.path().join("data/authmd.db").exists());
    let jwks: Value = client
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // An ES256 key for everything, an RS256 key for ID tokens.
    let mut algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    algs.sort();
    assert_eq!(algs, ["ES256", "RS256"]);
    let ready: Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["database"], "sqlite");

    let resp = client
        .post(format!("{base}/oauth2/token?code=ac_querysecret123"))
        .header("authorization", "Bearer at_headersecret456")
        .form(&[("client_secret", "cs_formsecret789")])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error() || resp.status() == 501);

    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("authmd listening"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI colour codes when stderr is not a terminal: {stderr:?}"
    );
    assert!(
        stderr.contains("/oauth2/token"),
        "the access log names the path: {stderr}"
    );
    for secret in [
        "ac_querysecret123",
        "at_headersecret456",
        "cs_formsecret789",
        "authorization",
    ] {
        assert!(
            !stderr.to_lowercase().contains(&secret.to_lowercase()),
            "{secret} leaked: {stderr}"
        );
    }

    // A second start reuses the database and the key.
    let (code, stdout, _) = run(authmd(dir.path()).args(["keys", "list", "--json"])).await;
    assert_eq!(code, 0);
    let keys: Value = serde_json::from_str(&stdout).unwrap();
    let listed: std::collections::BTreeSet<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    let served: std::collections::BTreeSet<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(listed, served);
}

async fn migrate_and_rotate(dir: &Path, db_url: &str) {
    let (code, stdout, stderr) = run(authmd(dir)
        .arg("migrate")
        .env("AUTHMD_DATABASE__URL", db_url))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let expected =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"))
            .unwrap()
            .count();
    assert!(
        stdout.starts_with(&format!("{expected} migration(s) applied")),
        "{stdout}"
    );
    let (code, stdout, _) = run(authmd(dir)
        .arg("migrate")
        .env("AUTHMD_DATABASE__URL", db_url))
    .await;
    assert_eq!(code, 0);
    assert!(stdout.starts_with("0 migration(s) applied"), "{stdout}");

    let (code, stdout, _) = run(authmd(dir)
        .args(["keys", "list", "--json"])
        .env("AUTHMD_DATABASE__URL", db_url))
    .await;
    assert_eq!(code, 0);
    let before: Value = serde_json::from_str(&stdout).unwrap();
    let before = before.as_array().unwrap().clone();
    assert_eq!(before.len(), 2, "one key per algorithm");
    let (code, stdout, _) = run(authmd(dir)
        .args(["keys", "rotate", "--json"])
        .env("AUTHMD_DATABASE__URL", db_url))
    .await;
    assert_eq!(code, 0);
    let rotated: Value = serde_json::from_str(&stdout).unwrap();
    let (_, stdout, _) = run(authmd(dir)
        .args(["keys", "list", "--json"])
        .env("AUTHMD_DATABASE__URL", db_url))
    .await;
    let after: Value = serde_json::from_str(&stdout).unwrap();
    let after = after.as_array().unwrap();
    assert_eq!(after.len(), 4);
    // Active keys first: a new one of each algorithm, the rotated ES256 key among them.
    let active: Vec<&Value> = after.iter().filter(|k| k["retired_at"].is_null()).collect();
    assert_eq!(active.len(), 2);
    assert!(active.iter().any(|k| k["kid"] == rotated["kid"]));
    assert!(after[..2].iter().all(|k| k["retired_at"].is_null()));
    for old in &before {
        let now = after.iter().find(|k| k["kid"] == old["kid"]).unwrap();
        assert!(now["retired_at"].is_i64());
        assert_eq!(
            now["published"], true,
            "the retired key still verifies recent tokens"
        );
    }
}

#[tokio::test]
async fn migrate_and_keys_commands_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x/authmd.db").display());
    migrate_and_rotate(dir.path(), &url).await;
}

#[tokio::test]
async fn migrate_and_keys_commands_on_postgres() {
    if !harness::postgres_enabled() {
        eprintln!("skipped: {} not set", harness::PG_ENV);
        return;
    }
    let admin = std::env::var(harness::PG_ENV).unwrap();
    // An empty database, not the migrated template: the command must migrate it itself.
    let name = format!(
        "authmd_cli_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut conn = <diesel::PgConnection as diesel::Connection>::establish(&admin).unwrap();
    diesel::connection::SimpleConnection::batch_execute(
        &mut conn,
        &format!("CREATE DATABASE \"{name}\""),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    migrate_and_rotate(dir.path(), &harness::replace_db_name(&admin, &name)).await;
    let _ = diesel::connection::SimpleConnection::batch_execute(
        &mut conn,
        &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    );
}

#[test]
fn migrations_have_the_same_names_on_both_backends() {
    let names = |backend: &str| -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let sqlite = names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, names("postgres"));
}

/// `client create|list|show|delete` and `user create --password-stdin`: the printed secret
/// works, only hashes are stored, and the password never needs argv.
#[tokio::test]
async fn client_and_user_commands() {
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("cli.db");
    let url = format!("sqlite://{}", db_path.display());
    let cli = |args: &[&str]| {
        let mut cmd = authmd(dir.path());
        cmd.args(args).env("AUTHMD_DATABASE__URL", &url);
        cmd
    };

    let (code, stdout, stderr) = run(&mut cli(&[
        "client",
        "create",
        "--name",
        "Billing API",
        "--redirect-uri",
        "https://billing.example/cb",
        "--redirect-uri",
        "http://127.0.0.1:9/cb",
        "--scope",
        "api.read",
        "--introspect",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let created: Value = serde_json::from_str(&stdout).unwrap();
    let client_id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cs_"));
    assert_eq!(created["can_introspect"], true);
    assert_eq!(created["scope"], "api.read");

    let (code, stdout, _) = run(&mut cli(&[
        "client",
        "create",
        "--name",
        "IDE",
        "--public",
        "--redirect-uri",
        "vscode://ext/cb",
    ]))
    .await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("client_id:") && !stdout.contains("client_secret"),
        "{stdout}"
    );
    let (code, _, stderr) = run(&mut cli(&[
        "client",
        "create",
        "--name",
        "Bad",
        "--redirect-uri",
        "http://evil.example/cb",
    ]))
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("loopback"), "{stderr}");
    // Neither redirect URI nor grant type: a service acting for itself, client_credentials only.
    let (code, stdout, stderr) = run(&mut cli(&[
        "client",
        "create",
        "--name",
        "Worker",
        "--scope",
        "api.read api.write",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let worker: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        worker["grant_types"],
        serde_json::json!(["client_credentials"])
    );
    // With redirect URIs and no grant type: a person signs in through it, nothing more.
    let (_, stdout, _) = run(&mut cli(&["client", "show", &client_id, "--json"])).await;
    let billing: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        billing["grant_types"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );

    let (code, stdout, _) = run(&mut cli(&["client", "list", "--json"])).await;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(!stdout.contains(&secret), "list never shows the secret");
    let (code, stdout, _) = run(&mut cli(&["client", "show", &client_id])).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("Billing API") && !stdout.contains(&secret));

    let mut child = cli(&[
        "user",
        "create",
        "--email",
        "Ops@Example.com",
        "--password-stdin",
        "--json",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hunter2hunter2\n")
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["email"], "ops@example.com");
    let (code, _, stderr) = run(&mut cli(&["user", "disable", "nobody@example.com"])).await;
    assert_eq!(code, 1, "an unknown user is an error: {stderr}");

    // What was printed works; what is stored is not the plaintext.
    let mut config = authmd::config::Config::defaults();
    config.database.url = url.clone();
    let db = authmd::db::Db::connect(&config).unwrap();
    let mut conn = db.get().unwrap();
    let auth = authmd::domain::clients::ClientAuth::Secret {
        client_id: client_id.clone(),
        secret: secret.clone(),
        method: "client_secret_basic",
    };
    assert!(authmd::domain::clients::authenticate(&mut conn, &auth).is_ok());
    let login = authmd::domain::users::verify_login(&mut conn, "ops@example.com", "hunter2hunter2")
        .unwrap();
    assert_eq!(login.unwrap().id, user["id"].as_str().unwrap());
    drop(conn);
    // `user disable` by email: the account can no longer start a session.
    let (code, stdout, stderr) =
        run(&mut cli(&["user", "disable", "Ops@Example.com", "--json"])).await;
    assert_eq!(code, 0, "{stderr}");
    let disabled: Value = serde_json::from_str(&stdout).unwrap();
    assert!(disabled["disabled_at"].is_i64(), "{stdout}");
    let mut conn = db.get().unwrap();
    let attempt = authmd::domain::users::LoginAttempt::new("ops@example.com", None);
    let checked = authmd::domain::users::check_login(
        &mut conn,
        &config.rate_limit,
        0,
        &attempt,
        "hunter2hunter2",
    )
    .unwrap();
    let (session, _) =
        authmd::domain::users::finish_login(&mut conn, &config.rate_limit, 0, &attempt, checked)
            .unwrap();
    assert!(session.is_none(), "a disabled user cannot sign in");
    drop(conn);
    let mut raw = std::fs::read(&db_path).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("cli.db-wal")) {
        raw.extend(wal);
    }
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        raw.contains("Billing API"),
        "the files read are the database"
    );
    assert!(
        !raw.contains(&secret) && !raw.contains("hunter2hunter2"),
        "plaintext secrets in the database"
    );

    let (code, _, _) = run(&mut cli(&["client", "delete", &client_id])).await;
    assert_eq!(code, 0);
    let (code, _, stderr) = run(&mut cli(&["client", "show", &client_id])).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("no client"), "{stderr}");
}

/// `admin revoke-agents`: incident response from the command line.
#[tokio::test]
async fn admin_revoke_agents_command() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("adm.db").display());
    let mut config = authmd::config::Config::defaults();
    config.database.url = url.clone();
    let db = authmd::db::Db::connect(&config).unwrap();
    db.migrate().unwrap();
    let now = authmd::clock::Clock::now(&authmd::clock::SystemClock);
    let mut conn = db.get().unwrap();
    authmd::domain::keys::ensure_signing_key(&mut conn, now).unwrap();
    let keys = authmd::domain::keys::load_ring(&mut conn, now, &config).unwrap();
    let audit = authmd::domain::audit::AuditContext::cli();
    let ctx = authmd::domain::context::Ctx {
        config: &config,
        keys: &keys,
        now,
        audit: &audit,
    };
    let kind = authmd::db::status::CredentialType::ApiKey;
    let a = authmd::domain::agents::register_anonymous(&mut conn, &ctx, kind, None).unwrap();
    let b = authmd::domain::agents::register_anonymous(&mut conn, &ctx, kind, None).unwrap();
    drop(conn);
    let active = |key: &str| {
        let mut conn = db.get().unwrap();
        authmd::domain::credentials::introspect(
            &mut conn,
            &config,
            &keys,
            now,
            key,
            authmd::domain::credentials::RecordUse::No,
        )
        .unwrap()
        .active
    };
    let cli = |args: &[&str]| {
        let mut cmd = authmd(dir.path());
        cmd.args(args).env("AUTHMD_DATABASE__URL", &url);
        cmd
    };

    let (code, _, stderr) = run(&mut cli(&["admin", "revoke-agents"])).await;
    assert_eq!(code, 2, "one target is required: {stderr}");
    let reg_a = a.registration_id.as_str();
    let key = |r: &authmd::domain::agents::Registered| r.credential.clone().unwrap().credential;
    let (code, stdout, _) = run(&mut cli(&[
        "admin",
        "revoke-agents",
        "--registration",
        reg_a,
    ]))
    .await;
    assert_eq!(code, 0);
    assert!(stdout.contains("revoked 1"), "{stdout}");
    assert!(!active(&key(&a)));
    assert!(active(&key(&b)));
    let (code, stdout, _) = run(&mut cli(&["admin", "revoke-agents", "--all"])).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("revoked 1"), "{stdout}");
    assert!(!active(&key(&b)));
}

/// `authmd resource metadata URL`: the RFC 9728 document another origin must serve, for a
/// configured resource only.
#[tokio::test]
async fn resource_metadata_command_prints_the_document_to_serve() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("authmd.toml"),
        "[server]\nissuer = \"https://auth.example\"\nresources = [\"https://api.example.com/v1\"]\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(authmd(dir.path()).args([
        "--config",
        "authmd.toml",
        "resource",
        "metadata",
        "https://api.example.com/v1",
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["resource"], "https://api.example.com/v1");
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://auth.example"])
    );
    assert!(
        stderr.contains("https://api.example.com/.well-known/oauth-protected-resource/v1"),
        "{stderr}"
    );
    let (code, _, stderr) = run(authmd(dir.path()).args([
        "--config",
        "authmd.toml",
        "resource",
        "metadata",
        "https://elsewhere.example",
    ]))
    .await;
    assert_eq!(code, 2);
    assert!(stderr.contains("not a configured resource"), "{stderr}");
}

/// `authmd token create`: the first credential of a deployment without a browser, with the
/// profile's prefix, only its hash stored; an unknown user or a workspace the user is not a
/// member of is refused.
#[tokio::test]
async fn token_create_command_makes_the_first_credential() {
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tok.db").display());
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deployments/tokensand.toml");
    let cli = |args: &[&str]| {
        let mut cmd = authmd(dir.path());
        cmd.arg("--config")
            .arg(&profile)
            .args(args)
            .env("AUTHMD_DATABASE__URL", &url);
        cmd
    };
    let mut child = cli(&[
        "user",
        "create",
        "--email",
        "ops@tokensand.example",
        "--password-stdin",
        "--json",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();

    let (code, stdout, stderr) = run(&mut cli(&[
        "token",
        "create",
        "--user",
        "ops@tokensand.example",
        "--scope",
        "project:read tools:read",
        "--expires-in",
        "3600",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let created: Value = serde_json::from_str(&stdout).unwrap();
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("dai_"), "{token}");
    assert_eq!(
        created["scopes"],
        serde_json::json!(["project:read", "tools:read"])
    );
    assert!(created["expires_at"].is_i64());

    // Stored as its hash, never as plaintext.
    let mut config = authmd::config::Config::load(Some(&profile), Vec::new()).unwrap();
    config.database.url = url.clone();
    let db = authmd::db::Db::connect(&config).unwrap();
    let hash = authmd::domain::secrets::HashedToken::of(token)
        .as_str()
        .to_owned();
    let row = db
        .run(move |conn| Ok(authmd::db::accounts::find_token_by_hash(conn, &hash)?))
        .await
        .unwrap()
        .expect("the token's hash is stored");
    assert_eq!(row.user_id, user["id"].as_str().unwrap());
    assert!(!std::fs::read(dir.path().join("tok.db"))
        .unwrap()
        .windows(token.len())
        .any(|w| w == token.as_bytes()));

    for (args, needle) in [
        (vec!["--user", "nobody@tokensand.example"], "no such user"),
        (
            vec!["--user", "ops@tokensand.example", "--workspace", "ws_nope"],
            "member",
        ),
        (
            vec!["--user", "ops@tokensand.example", "--scope", "admin"],
            "admin",
        ),
    ] {
        let mut all = vec!["token", "create"];
        all.extend(args);
        let (code, _, stderr) = run(&mut cli(&all)).await;
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
        assert!(!stderr.contains("dai_"), "{stderr}");
    }
}

/// `authmd backup FILE` while `serve` takes writes: the copy is consistent (integrity-checked by
/// the command), holds what was committed before it started, never overwrites a file, and a
/// server restored from it works.
#[tokio::test]
async fn backup_is_online_and_restores() {
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("live.db").display());
    let cli = |args: &[&str], url: &str| {
        let mut cmd = authmd(dir.path());
        cmd.args(args).env("AUTHMD_DATABASE__URL", url);
        cmd
    };
    let mut child = cli(
        &[
            "user",
            "create",
            "--email",
            "ops@example.com",
            "--password-stdin",
        ],
        &url,
    )
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .await
        .unwrap();
    assert!(child.wait_with_output().await.unwrap().status.success());

    // A server writing registrations the whole time the backup runs.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = cli(&["serve"], &url)
        .env("AUTHMD_SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("AUTHMD_SERVER__ISSUER", &base)
        .env("AUTHMD_RATE_LIMIT__ENABLED", "false")
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writer = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..200 {
                let resp = client
                    .post(format!("{base}/agent/auth"))
                    .json(&serde_json::json!({"type": "anonymous"}))
                    .send()
                    .await;
                if resp.is_ok_and(|r| r.status() == 200) {
                    ok += 1;
                }
            }
            ok
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copy = dir.path().join("copy.db");
    let (code, stdout, stderr) = run(&mut cli(&["backup", copy.to_str().unwrap()], &url)).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("integrity ok"), "{stdout}");
    let written = writer.await.unwrap();
    assert_eq!(written, 200, "the server kept answering during the backup");
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    // Never over an existing file.
    let (code, _, stderr) = run(&mut cli(&["backup", copy.to_str().unwrap()], &url)).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("exists"), "{stderr}");

    // Restore: the copy as another deployment's database; what it holds still works.
    let restored = format!("sqlite://{}", copy.display());
    let (code, stdout, stderr) = run(&mut cli(
        &["token", "create", "--user", "ops@example.com", "--json"],
        &restored,
    ))
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"token\""));
    let mut config = authmd::config::Config::defaults();
    config.database.url = restored;
    let db = authmd::db::Db::connect(&config).unwrap();
    let registrations = db
        .run(|conn| Ok(authmd::db::admin::live_registration_ids(conn, None)?.len()))
        .await
        .unwrap();
    assert!(
        registrations > 0,
        "registrations committed before the copy are in it"
    );
}

/// `log.format = "json"`: every line on standard error is one JSON object, the access line
/// carries the request id the response sent, and nothing is coloured.
#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    use tokio::io::AsyncReadExt;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = authmd(dir.path())
        .arg("serve")
        .env("AUTHMD_SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("AUTHMD_SERVER__ISSUER", &base)
        .env("AUTHMD_LOG__FORMAT", "json")
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut request_id = None;
    for _ in 0..100 {
        if let Ok(resp) = client.get(format!("{base}/healthz")).send().await {
            request_id = Some(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let request_id = request_id.expect("server came up");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "{stderr}");
    assert!(
        lines.iter().any(|l| l.to_string().contains(&request_id)),
        "the access line names {request_id}: {stderr}"
    );
}
