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

    let (_guard, _driver, _profile, browser) = chromium().await;

    let result = async {
        sign_in(&browser, &app.url("/account"), "browser@example.com").await?;
        let html = until_page(&browser, "the account page lists the agent", |html| {
            html.contains(&format!("id=\"agent-{reg_id}\""))
        })
        .await?;
        assert!(
            html.contains(&key[..11]),
            "the agent's key prefix is listed"
        );

        let shot = browser.screenshot().await.map_err(at("screenshot"))?;
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("account.png");
        std::fs::write(&path, &shot).unwrap();
        assert!(
            shot.starts_with(b"\x89PNG"),
            "a PNG screenshot at {}",
            path.display()
        );

        click(
            &browser,
            "revoke the agent",
            Locator::Css(&format!("#agent-{reg_id} button[name=revoke]")),
        )
        .await?;
        // Back on /account after the POST-redirect-GET, without the agent.
        until_page(&browser, "the account page without the agent", |html| {
            html.contains("id=\"sign-out\"") && !html.contains(&format!("agent-{reg_id}"))
        })
        .await?;
        Ok::<_, String>(())
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

/// One browser test at a time. Each starts a Chromium beside the rest of the suite, and on
/// two cores three of them at once made page timings the least predictable part of the run.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A headless Chromium through chromedriver: this test's turn at the browser, the driver
/// process (killed on drop), the profile directory, and the WebDriver client.
async fn chromium() -> (
    tokio::sync::MutexGuard<'static, ()>,
    tokio::process::Child,
    tempfile::TempDir,
    fantoccini::Client,
) {
    let guard = ONE_BROWSER.lock().await;
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
    (guard, driver, profile, browser)
}

/// How long a step may wait for the page it expects.
const PAGE_WAIT: Duration = Duration::from_secs(30);

/// Names the step a WebDriver command failed in.
fn at(step: &str) -> impl Fn(fantoccini::error::CmdError) -> String + '_ {
    move |e| format!("{step}: {e}")
}

/// Polls the current page until `ready` holds for its HTML, and returns that HTML. A click on
/// a submit button returns before the next page is there, and reading the page while that
/// navigation is in flight can fail: such errors are retried, and only the deadline fails
/// the step, naming it with the last error or the page's start.
async fn until_page(
    browser: &fantoccini::Client,
    step: &str,
    ready: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + PAGE_WAIT;
    loop {
        let last = match browser.source().await {
            Ok(html) if ready(&html) => return Ok(html),
            Ok(html) => html.chars().take(300).collect::<String>(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{step}: not there after {PAGE_WAIT:?}; last: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Types `text` into the element `locator` finds on the page already loaded.
async fn type_into(
    browser: &fantoccini::Client,
    step: &str,
    locator: Locator<'_>,
    text: &str,
) -> Result<(), String> {
    let field = browser.find(locator).await.map_err(at(step))?;
    field.send_keys(text).await.map_err(at(step))
}

/// Clicks the element `locator` finds on the page already loaded.
async fn click(
    browser: &fantoccini::Client,
    step: &str,
    locator: Locator<'_>,
) -> Result<(), String> {
    let button = browser.find(locator).await.map_err(at(step))?;
    button.click().await.map_err(at(step))
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
    let (_guard, _driver, _profile, browser) = chromium().await;
    let result = async {
        sign_in(&browser, &uri, "coder@example.com").await?;
        until_page(&browser, "the claim page with its advisory", |html| {
            html.contains("data-advisory=\"first_time_account\"")
        })
        .await?;
        type_into(
            &browser,
            "type the user code",
            Locator::Css("input[name=user_code]"),
            &code,
        )
        .await?;
        click(
            &browser,
            "confirm the code",
            Locator::Css("button[type=submit]"),
        )
        .await?;
        until_page(&browser, "the confirmation page", |html| {
            html.contains("All set")
        })
        .await?;
        Ok::<_, String>(())
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

/// Opens `url` (a page that shows the login form), signs in as `email`, and waits until the
/// form has gone.
async fn sign_in(browser: &fantoccini::Client, url: &str, email: &str) -> Result<(), String> {
    browser
        .goto(url)
        .await
        .map_err(at("open the sign-in page"))?;
    until_page(browser, "the sign-in form", |html| {
        html.contains("name=\"email\"")
    })
    .await?;
    type_into(
        browser,
        "type the email",
        Locator::Css("input[name=email]"),
        email,
    )
    .await?;
    type_into(
        browser,
        "type the password",
        Locator::Css("input[name=password]"),
        flows::PASSWORD,
    )
    .await?;
    click(browser, "sign in", Locator::Css("button[type=submit]")).await?;
    until_page(browser, "signed in", |html| {
        !html.contains("name=\"password\"")
    })
    .await?;
    Ok(())
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
    let (_guard, _driver, _profile, browser) = chromium().await;
    let email = "new-dev@tokensand.example";

    let result = async {
        // Sign up: the account exists at once and the browser is signed in.
        browser
            .goto(&app.url("/signup"))
            .await
            .map_err(at("open /signup"))?;
        type_into(
            &browser,
            "type the email",
            Locator::Css("input[name=email]"),
            email,
        )
        .await?;
        type_into(
            &browser,
            "type the password",
            Locator::Css("input[name=password]"),
            flows::PASSWORD,
        )
        .await?;
        click(&browser, "sign up", Locator::Id("sign-up")).await?;
        let html = until_page(&browser, "signed in after sign-up", |html| {
            html.contains("id=\"sign-out\"")
        })
        .await?;
        assert!(html.contains(email));

        // Sign out, and wait for the signed-out page: opening the next page while the sign-out
        // is still in flight can cancel it and leave the browser signed in.
        click(&browser, "sign out", Locator::Id("sign-out")).await?;
        until_page(&browser, "signed out", |html| {
            html.contains("name=\"password\"")
        })
        .await?;

        // Sign in again with the new password.
        sign_in(&browser, &app.url("/account"), email).await?;
        until_page(&browser, "the token form", |html| {
            html.contains("id=\"make-token\"")
        })
        .await?;

        // Make a token with one scope.
        type_into(
            &browser,
            "name the token",
            Locator::Id("token-name"),
            "my coding agent",
        )
        .await?;
        let scopes = browser
            .find(Locator::Id("token-scopes"))
            .await
            .map_err(at("find the scopes field"))?;
        scopes.clear().await.map_err(at("clear the scopes field"))?;
        scopes
            .send_keys("project:read")
            .await
            .map_err(at("type the scopes"))?;
        click(&browser, "make the token", Locator::Id("make-token-button")).await?;
        until_page(&browser, "the new token shown", |html| {
            html.contains("id=\"new-token-value\"")
        })
        .await?;
        let shown = browser
            .find(Locator::Id("new-token-value"))
            .await
            .map_err(at("find the new token"))?
            .text()
            .await
            .map_err(at("read the new token"))?;
        let shot = browser.screenshot().await.map_err(at("screenshot"))?;
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("account-token.png");
        std::fs::write(&path, &shot).unwrap();
        assert!(shot.starts_with(b"\x89PNG"), "{}", path.display());

        // Shown once: the next visit lists its prefix only.
        browser
            .goto(&app.url("/account"))
            .await
            .map_err(at("open /account again"))?;
        let html = until_page(&browser, "the account page listing the token", |html| {
            html.contains("id=\"sign-out\"")
        })
        .await?;
        assert!(!html.contains(&shown) && html.contains(&shown[..12]));
        Ok::<_, String>(shown)
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
        click(
            &browser,
            "revoke the token",
            Locator::Css("button[name=revoke]"),
        )
        .await?;
        until_page(&browser, "the account page without the token", |html| {
            html.contains("id=\"sign-out\"") && !html.contains("name=\"revoke\"")
        })
        .await?;
        Ok::<_, String>(())
    }
    .await;
    let _ = browser.close().await;
    revoked.expect("revoke in the browser");
    assert_eq!(flows::introspect(&app, &rs, &token).await["active"], false);
}
