//! SQLite out of space mid-run, and space coming back.
//!
//! The database lives on a small tmpfs of its own; a filler file takes every free byte while
//! registrations and token requests go on. Writes must then be refused with `503`,
//! `Retry-After` and a JSON `temporarily_unavailable` body (never a 500), reads must go on,
//! and once the filler is removed writes succeed again without a restart; afterwards every
//! credential a client received works and the database passes its integrity check.
//!
//! Mounting needs root (CI runs as root); elsewhere the test says so and does nothing, unless
//! `CI` is set, where not being able to mount is a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command as Std;
use std::time::Duration;

use serde_json::Value;

use super::{
    assert_all_active, assert_audited, authmd, free_port, make_client, register_anonymous,
    request_token, serve,
};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Std::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Std::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    // The last partial block: byte by byte, so not even a page is left.
    while file.write_all(&[0]).is_ok() {}
    let _ = file.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_out_of_space_refuses_writes_cleanly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Tmpfs::mount(&dir.path().join("disk"), "16m") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must be able to mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let db_url = format!("sqlite://{}", mount.0.join("authmd.db").display());
    let (id, secret) = make_client(dir.path(), &db_url).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(authmd(dir.path(), &db_url, port), port).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let mut received = Vec::new();
    let register = || register_anonymous(&http, &base);
    for _ in 0..5 {
        let body: Value = register().await.unwrap().json().await.unwrap();
        received.push(body["credential"].as_str().unwrap().to_owned());
    }

    fill(&mount.0.join("filler"));
    // Writes go on until SQLite needs a page the disk no longer has (its WAL reuses pages it
    // already has first).
    let mut refused = 0;
    for _ in 0..3_000 {
        let resp = register().await.unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp.headers().contains_key("retry-after");
        let body: Value = resp.json().await.expect("every answer is JSON");
        match status {
            200 => received.push(body["credential"].as_str().unwrap().to_owned()),
            503 => {
                assert!(retry_after, "a refused write says when to retry");
                assert_eq!(body["error"], "temporarily_unavailable");
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("out of space answered {other}: {body}"),
        }
    }
    assert!(refused >= 5, "the disk filled: {refused} writes refused");
    // Reads go on: a credential issued earlier introspects (a read of the full database).
    let info: Value = http
        .post(format!("{base}/oauth2/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", received[0].as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["active"], true, "{info}");

    // Space returns: writes succeed again, without a restart.
    std::fs::remove_file(mount.0.join("filler")).unwrap();
    let mut after = 0;
    for _ in 0..20 {
        let resp = register().await.unwrap();
        if resp.status() == 200 {
            let body: Value = resp.json().await.unwrap();
            received.push(body["credential"].as_str().unwrap().to_owned());
            after += 1;
        }
    }
    assert_eq!(after, 20, "every write succeeds once space returns");
    let resp = request_token(&http, &base, (&id, &secret)).await.unwrap();
    assert_eq!(resp.status(), 200);

    let client = (id.as_str(), secret.as_str());
    assert_all_active(
        &http,
        &base,
        client,
        received.iter().map(String::as_str),
        "to the full disk",
    )
    .await;
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let db = {
        let mut config = authmd::config::Config::defaults();
        config.database.url = db_url.clone();
        authmd::db::Db::connect(&config).unwrap()
    };
    let (_, registrations) = assert_audited(&db, &id).await;
    assert_eq!(
        registrations as usize,
        received.len(),
        "nothing a client was refused was committed"
    );
    let mut conn = db.get().unwrap();
    authmd::db::integrity_check(&mut conn).expect("the database passes its integrity check");
    drop(conn);
    drop(db);
    drop(mount);
}
