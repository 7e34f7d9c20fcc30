//! The benchmark is not run by CI (it takes minutes), but its script must stay valid and its
//! requests must match the server's current API: the exact bodies the script sends are read
//! from it and sent to a server configured the way the script configures authmd.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::flows::{self, ClientSpec};
use crate::harness::{Backend, TestApp};

fn bench(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench")
        .join(file)
}

fn script() -> String {
    std::fs::read_to_string(bench("run.sh")).unwrap()
}

#[test]
fn bench_scripts_parse() {
    for sh in ["run.sh", "roundtrips.sh"] {
        let status = Command::new("bash")
            .arg("-n")
            .arg(bench(sh))
            .status()
            .unwrap();
        assert!(status.success(), "bash -n bench/{sh}");
    }
    // roundtrips.sh configures authmd from run.sh's heredoc, found by its first line.
    assert!(script().contains("  cat > \"$WORK/authmd.toml\" <<TOML\n"));
    for py in ["collect.py", "report.py", "seed.py"] {
        // Parse only: py_compile would leave __pycache__ in the source tree.
        let status = Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
            .arg(bench(py))
            .status();
        match status {
            Ok(s) => assert!(s.success(), "{py} does not compile"),
            Err(_) => eprintln!("python3 not available: {py} not checked"),
        }
    }
}

/// Runs a bench Python helper and returns its standard output; it must succeed.
fn python(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new("python3")
        .arg(bench(script))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The single-quoted literal that follows `marker` in the script.
fn literal_after(script: &str, marker: &str) -> String {
    let start = script
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in bench/run.sh"))
        + marker.len();
    let rest = &script[start..];
    let open = rest.find('\'').unwrap() + 1;
    let close = rest[open..].find('\'').unwrap();
    rest[open..open + close].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_requests_match_the_api() {
    let s = script();
    let token_body = literal_after(&s, "measure \"token client_credentials\"");
    let agent_body = literal_after(&s, "measure \"agent/auth anonymous\"");
    assert!(
        s.contains("/oauth2/token /oauth2/introspect /oauth2/revoke"),
        "authmd paths in the script"
    );
    assert!(s.contains("--grant-type client_credentials --scope api.read --introspect --json"));
    assert!(
        s.contains("[rate_limit]\n# On, as every deployment runs it")
            && s.contains("enabled = true\nagent_auth_per_ip = 1000000000"),
        "the bench runs with the rate limiter on"
    );

    // Configured as the script configures authmd.
    let app = TestApp::builder(Backend::Sqlite)
        .with_config(|c| {
            c.server.resources = vec!["https://api.bench.example".to_owned()];
            // On, with the limits raised (as the script does): the load is never refused.
            let r = &mut c.rate_limit;
            r.enabled = true;
            r.agent_auth_per_ip = 1_000_000_000;
            r.agent_auth_global = 1_000_000_000;
            r.tokens_per_ip = 1_000_000_000;
            r.client_auth_failures = 1_000_000_000;
        })
        .start()
        .await;
    let client = flows::client(
        &app,
        ClientSpec {
            introspect: true,
            redirect_uris: vec![],
            grant_types: vec!["client_credentials"],
            ..Default::default()
        },
    )
    .await;
    let post_form = |path: &str, body: String| {
        app.client
            .post(app.url(path))
            .basic_auth(&client.id, client.secret.as_ref())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let resp = post_form("/oauth2/token", token_body.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{token_body}");
    let token: Value = resp.json().await.unwrap();
    let access = token["access_token"].as_str().unwrap().to_owned();
    let info: Value = post_form("/oauth2/introspect", format!("token={access}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["active"], true);
    assert_eq!(info["aud"], "https://api.bench.example");
    assert_eq!(
        post_form("/oauth2/revoke", format!("token={access}"))
            .await
            .unwrap()
            .status(),
        200
    );
    let unknown = literal_after(&s, "measure \"introspect unknown\"").replace("token=", "");
    let info: Value = post_form("/oauth2/introspect", format!("token={unknown}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info, json!({"active": false}));

    let resp = app
        .client
        .post(app.url("/agent/auth"))
        .header("content-type", "application/json")
        .body(agent_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{agent_body}");
    let resp = app
        .post_json(
            "/agent/auth",
            &json!({"type": "anonymous", "requested_credential_type": "identity_assertion"}),
        )
        .await;
    let assertion = resp.json::<Value>().await.unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the load generator's exchange");

    // The growth seeder writes rows the current schema accepts.
    if Command::new("python3").arg("--version").output().is_ok() {
        let path = app
            .state
            .config
            .database
            .url
            .trim_start_matches("sqlite://")
            .to_owned();
        python("seed.py", &[path.as_ref(), "100".as_ref()]);
        let n = app
            .state
            .db
            .run(|conn| {
                use authmd::db::schema::access_tokens::dsl::*;
                use diesel::prelude::*;
                Ok(access_tokens
                    .filter(prefix.eq("at_seed"))
                    .count()
                    .get_result::<i64>(conn)?)
            })
            .await
            .unwrap();
        assert_eq!(n, 100);
    }
}

/// The report's targets table reads its verdicts from the numbers: a run that meets every
/// target says so, and one that misses one names it.
#[test]
fn bench_report_checks_the_targets() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not available: report not checked");
        return;
    }
    let row = |backend: &str, server: &str, path: &str, rps: f64, p99: f64| {
        json!({"backend": backend, "server": server, "path": path, "rps": rps, "p50_ms": 1.0,
               "p99_ms": p99, "errors": 0, "non_2xx": 0, "peak_rss_kib": 30_000,
               "server_cpu_pct": 100.0, "others_cpu_pct": 50.0})
    };
    let report = |introspect_rps: f64| {
        let mut rows = vec![
            row("sqlite", "authmd", "healthz", 60_000.0, 1.0),
            row(
                "sqlite",
                "authmd",
                "token client_credentials",
                20_000.0,
                5.0,
            ),
            row("sqlite", "peer", "token client_credentials", 4_000.0, 10.0),
            row("sqlite", "authmd", "agent/auth anonymous", 8_000.0, 10.0),
            row(
                "sqlite",
                "authmd",
                "POST /oauth2/token (jwt-bearer)",
                8_000.0,
                12.0,
            ),
            row("postgres", "authmd", "introspect valid", 30_000.0, 3.0),
            row("postgres", "peer", "introspect valid", 5_000.0, 10.0),
            row(
                "postgres",
                "authmd",
                "token client_credentials",
                3_000.0,
                8.0,
            ),
            row(
                "postgres",
                "peer",
                "token client_credentials",
                1_500.0,
                10.0,
            ),
        ];
        for path in [
            "introspect valid",
            "introspect unknown",
            "introspect revoked",
        ] {
            rows.push(row("sqlite", "authmd", path, introspect_rps, 2.0));
            rows.push(row("sqlite", "peer", path, 5_000.0, 10.0));
        }
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("results.jsonl");
        let lines: Vec<String> = rows.iter().map(Value::to_string).collect();
        std::fs::write(&input, lines.join("\n")).unwrap();
        python(
            "report.py",
            &[input.as_ref(), "32".as_ref(), "15".as_ref(), "1".as_ref()],
        )
    };
    let good = report(50_000.0);
    assert!(good.contains("## Targets"), "{good}");
    assert_eq!(good.matches("| met |").count(), 9, "{good}");
    assert!(!good.contains("missed"), "{good}");
    // 25,000 req/s: 5× the peer and 42 % of /healthz.
    let short = report(25_000.0);
    assert!(
        short.contains("| SQLite: introspection ≥ 6× the peer | 5.00× (lowest of valid, unknown, revoked) | **missed** |"),
        "{short}"
    );
    assert!(
        short.contains("| SQLite: introspection ≥ 75 % of /healthz | 42 % (lowest) | **missed** |"),
        "{short}"
    );
    assert_eq!(short.matches("**missed**").count(), 2, "{short}");
}
