//! A real browser (Debian's headless Chromium through chromedriver) signs in, sees a claimed
//! agent on /account, revokes it, and the agent's key then introspects inactive (a screenshot
//! of the account page is written under target/); and confirms an auth.md v0.6 claim by typing
//! the agent's `user_code` on /claim.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::flows;
use crate::harness::{Backend, TestApp};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_and_revokes_an_agent() {
    if !browsers_installed() {
        return;
    }
    let app = TestApp::start(Backend::Sqlite).await;
    let rs = flows::resource_server(&app).await;
    flows::user(&app, "browser@example.com").await;
    let reg = flows::claimed_agent(&app, "browser@example.com", 0).await;
    let key = reg["credential"].as_str().unwrap().to_owned();
    let reg_id = reg["registration_id"].as_str().unwrap().to_owned();
    assert_eq!(flows::introspect(&app, &rs, &key).await["active"], true);

    let (_driver, _profile, browser) = chromium().await;

    let result = async {
        sign_in(&browser, &app.url("/account"), "browser@example.com").await?;
        browser
            .wait()
            .for_element(Locator::Css(&format!("#agent-{reg_id}")))
            .await?;
        let html = browser.source().await?;
        assert!(
            html.contains(&key[..11]),
            "the agent's key prefix is listed"
        );

        let shot = browser.screenshot().await?;
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("account.png");
        std::fs::write(&path, &shot).unwrap();
        assert!(
            shot.starts_with(b"\x89PNG"),
            "a PNG screenshot at {}",
            path.display()
        );

        browser
            .find(Locator::Css(&format!(
                "#agent-{reg_id} button[name=revoke]"
            )))
            .await?
            .click()
            .await?;
        // Back on /account after the POST-redirect-GET, without the agent.
        for _ in 0..50 {
            if !browser.source().await?.contains(&format!("agent-{reg_id}")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!browser.source().await?.contains(&format!("agent-{reg_id}")));
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("browser steps");
    assert_eq!(
        flows::introspect(&app, &rs, &key).await["active"],
        false,
        "revoked in the browser, inactive at once"
    );
}

/// A headless Chromium through chromedriver: the driver process (killed on drop), the
/// profile directory, and the WebDriver client.
async fn chromium() -> (tokio::process::Child, tempfile::TempDir, fantoccini::Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=390,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let mut browser = None;
    for _ in 0..50 {
        match ClientBuilder::rustls()
            .expect("TLS config")
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                browser = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let browser = browser.expect("connected to chromedriver");
    (driver, profile, browser)
}

fn browsers_installed() -> bool {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        // .ci/run installs both; a developer machine may not have them.
        eprintln!("skipped: {CHROMEDRIVER} or {CHROMIUM} not installed");
        return false;
    }
    // fantoccini's TLS stack brings a second rustls provider into the test build; pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    true
}

/// auth.md v0.6 in a real browser: the person opens the `verification_uri` an agent was given,
/// signs in, reads the advisory, types the `user_code`; the agent's next poll gets its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_confirms_an_agent_claim_code() {
    if !browsers_installed() {
        return;
    }
    let app = TestApp::start(Backend::Sqlite).await;
    flows::user(&app, "coder@example.com").await;
    let reg = app
        .post_value(
            "/agent/identity",
            &json!({"type": "service_auth", "login_hint": "coder@example.com"}),
        )
        .await;
    let uri = reg["claim"]["verification_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = reg["claim"]["user_code"].as_str().unwrap().to_owned();
    let (_driver, _profile, browser) = chromium().await;
    let result = async {
        sign_in(&browser, &uri, "coder@example.com").await?;
        browser
            .wait()
            .for_element(Locator::Css("[data-advisory=first_time_account]"))
            .await?;
        browser
            .find(Locator::Css("input[name=user_code]"))
            .await?
            .send_keys(&code)
            .await?;
        browser
            .find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        for _ in 0..50 {
            if browser.source().await?.contains("All set") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(browser.source().await?.contains("All set"));
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("browser steps");
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "urn:workos:agent-auth:grant-type:claim"),
            ("claim_token", reg["claim_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the agent's poll after the person confirmed"
    );
}

/// Opens `url` (a page that shows the login form) and signs in as `email`.
async fn sign_in(
    browser: &fantoccini::Client,
    url: &str,
    email: &str,
) -> Result<(), fantoccini::error::CmdError> {
    browser.goto(url).await?;
    browser
        .find(Locator::Css("input[name=email]"))
        .await?
        .send_keys(email)
        .await?;
    browser
        .find(Locator::Css("input[name=password]"))
        .await?
        .send_keys(flows::PASSWORD)
        .await?;
    browser
        .find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await
}

/// tokens&'s person side in a real browser: sign up on /signup, sign out, sign in, make a
/// token on the account page (shown once), and revoke it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_up_and_makes_a_token() {
    if !browsers_installed() {
        return;
    }
    let app = TestApp::builder(Backend::Sqlite)
        .with_config_file("examples/deployments/tokensand.toml")
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let (_driver, _profile, browser) = chromium().await;
    let email = "new-dev@tokensand.example";

    let result = async {
        // Sign up: the account exists at once and the browser is signed in.
        browser.goto(&app.url("/signup")).await?;
        browser
            .find(Locator::Css("input[name=email]"))
            .await?
            .send_keys(email)
            .await?;
        browser
            .find(Locator::Css("input[name=password]"))
            .await?
            .send_keys(flows::PASSWORD)
            .await?;
        browser.find(Locator::Id("sign-up")).await?.click().await?;
        browser.wait().for_element(Locator::Id("sign-out")).await?;
        assert!(browser.source().await?.contains(email));
        browser.find(Locator::Id("sign-out")).await?.click().await?;

        // Sign in again with the new password.
        sign_in(&browser, &app.url("/account"), email).await?;
        browser
            .wait()
            .for_element(Locator::Id("make-token"))
            .await?;

        // Make a token with one scope.
        browser
            .find(Locator::Id("token-name"))
            .await?
            .send_keys("my coding agent")
            .await?;
        let scopes = browser.find(Locator::Id("token-scopes")).await?;
        scopes.clear().await?;
        scopes.send_keys("project:read").await?;
        browser
            .find(Locator::Id("make-token-button"))
            .await?
            .click()
            .await?;
        let shown = browser
            .wait()
            .for_element(Locator::Id("new-token-value"))
            .await?
            .text()
            .await?;
        let shot = browser.screenshot().await?;
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("account-token.png");
        std::fs::write(&path, &shot).unwrap();
        assert!(shot.starts_with(b"\x89PNG"), "{}", path.display());

        // Shown once: the next visit lists its prefix only.
        browser.goto(&app.url("/account")).await?;
        let html = browser.source().await?;
        assert!(!html.contains(&shown) && html.contains(&shown[..12]));
        Ok::<_, fantoccini::error::CmdError>(shown)
    }
    .await;
    let token = match result {
        Ok(t) => t,
        Err(e) => {
            let _ = browser.close().await;
            panic!("browser steps: {e}");
        }
    };
    assert!(token.starts_with("dai_"), "{token}");
    let info = flows::introspect(&app, &rs, &token).await;
    assert_eq!(
        (info["active"].as_bool(), info["scope"].as_str()),
        (Some(true), Some("project:read"))
    );

    // Revoke it on the page.
    let revoked = async {
        browser
            .find(Locator::Css("button[name=revoke]"))
            .await?
            .click()
            .await?;
        for _ in 0..50 {
            if !browser.source().await?.contains("name=\"revoke\"") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    revoked.expect("revoke in the browser");
    assert_eq!(flows::introspect(&app, &rs, &token).await["active"], false);
}
