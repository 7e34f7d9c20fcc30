//! RFC 8628 device authorization grant: a CLI (the `oauth2` crate) gets a code and polls while a
//! person approves on the `/device` page; then every polling answer over raw HTTP.

use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse, TokenResponse,
    TokenUrl,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::flows::{self, TestClient};
use crate::harness::{Backend, TestApp};

crate::db_tests!(
    a_cli_gets_a_token_while_a_person_approves,
    polling_answers_as_rfc8628_says,
    the_device_page_checks_the_person_and_the_code,
    the_device_grant_is_advertised_only_when_enabled,
);

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn device_app(backend: Backend) -> TestApp {
    TestApp::builder(backend)
        .with_config(|c| c.oauth.device.interval_s = 1)
        .start()
        .await
}

async fn cli_client(app: &TestApp) -> TestClient {
    flows::client(
        app,
        flows::ClientSpec {
            public: true,
            redirect_uris: vec![],
            grant_types: vec![DEVICE_GRANT, "refresh_token"],
            ..Default::default()
        },
    )
    .await
}

/// A person signs in at `verification_uri_complete`, confirms and answers `decision`.
async fn person_answers(app: &TestApp, email: &str, verification: &str, decision: &str) -> String {
    let browser = flows::browser();
    let form_page = flows::sign_in(app, &browser, verification, email).await;
    let html = browser
        .get(&form_page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = flows::form_value(&html, "csrf_token").expect("the code form");
    let code = flows::form_value(&html, "user_code").expect("the code, filled in");
    let confirm = browser
        .post(app.url("/device"))
        .form(&[("csrf_token", csrf.as_str()), ("user_code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), StatusCode::OK);
    let html = confirm.text().await.unwrap();
    assert!(html.contains("Test App"), "the client's name: {html}");
    assert!(html.contains("api.read"), "the scopes: {html}");
    let csrf = flows::form_value(&html, "csrf_token").unwrap();
    let done = browser
        .post(app.url("/device"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("user_code", code.as_str()),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    done.text().await.unwrap()
}

async fn a_cli_gets_a_token_while_a_person_approves(backend: Backend) {
    let app = device_app(backend).await;
    let registered = cli_client(&app).await;
    flows::user(&app, "cli@example.com").await;
    let meta = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    let client = BasicClient::new(ClientId::new(registered.id.clone()))
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(
                meta["device_authorization_endpoint"]
                    .as_str()
                    .unwrap()
                    .into(),
            )
            .unwrap(),
        )
        .set_token_uri(TokenUrl::new(meta["token_endpoint"].as_str().unwrap().into()).unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("api.read".into()))
        .request_async(&http)
        .await
        .expect("a device code");
    assert_eq!(details.interval().as_secs(), 1);
    let verification = details
        .verification_uri_complete()
        .expect("verification_uri_complete")
        .secret()
        .to_owned();
    assert!(verification.starts_with(&app.url("/device?user_code=")));

    // The person approves while the CLI polls; the injected clock moves with real time so the
    // polling interval is honoured as it would be.
    let ticker = {
        let clock = app.clock.clone();
        tokio::spawn(async move {
            for _ in 0..120 {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                clock.advance(1);
            }
        })
    };
    let person = {
        let app_url = verification.clone();
        let app_ref = &app;
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            person_answers(app_ref, "cli@example.com", &app_url, "allow").await
        }
    };
    let poll = client.exchange_device_access_token(&details).request_async(
        &http,
        tokio::time::sleep,
        Some(std::time::Duration::from_secs(60)),
    );
    let (tokens, page) = tokio::join!(poll, person);
    ticker.abort();
    assert!(page.contains("Device connected"), "{page}");
    let tokens = tokens.expect("the CLI gets its token");
    assert!(tokens.refresh_token().is_some());
    let rs = flows::resource_server(&app).await;
    let info = flows::introspect(&app, &rs, tokens.access_token().secret()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["scope"], "api.read");
    assert_eq!(info["client_id"], registered.id.as_str());
    assert_eq!(flows::audit_count(&app, "device.decided").await, 1);
}

async fn start(app: &TestApp, client: &TestClient) -> Value {
    let resp = app
        .client
        .post(app.url("/oauth2/device"))
        .form(&[("client_id", client.id.as_str()), ("scope", "api.read")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    resp.json().await.unwrap()
}

async fn poll(app: &TestApp, client: &TestClient, device_code: &str) -> (StatusCode, Value) {
    flows::token(
        app,
        client,
        &[("grant_type", DEVICE_GRANT), ("device_code", device_code)],
    )
    .await
}

async fn polling_answers_as_rfc8628_says(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = cli_client(&app).await;
    flows::user(&app, "poll@example.com").await;
    let d = start(&app, &client).await;
    assert_eq!(d["interval"], 5);
    assert_eq!(d["expires_in"], 600);
    let code = d["device_code"].as_str().unwrap();
    assert!(code.starts_with("dc_"));
    let user_code = d["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");

    let (status, body) = poll(&app, &client, code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "authorization_pending");
    // Again at once: slow_down, and the interval grows by 5 seconds.
    let (_, body) = poll(&app, &client, code).await;
    assert_eq!(body["error"], "slow_down");
    app.clock.advance(6);
    let (_, body) = poll(&app, &client, code).await;
    assert_eq!(
        body["error"], "slow_down",
        "the interval is 10 s now, and 15 s after this"
    );
    app.clock.advance(14);
    let (_, body) = poll(&app, &client, code).await;
    assert_eq!(
        body["error"], "slow_down",
        "14 s is still too soon: 20 s now"
    );
    app.clock.advance(20);
    let (_, body) = poll(&app, &client, code).await;
    assert_eq!(body["error"], "authorization_pending");

    // Approved: one token answer, then the code is spent.
    let verification = d["verification_uri_complete"].as_str().unwrap();
    person_answers(&app, "poll@example.com", verification, "allow").await;
    app.clock.advance(20);
    let (status, body) = poll(&app, &client, code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].as_str().is_some());
    app.clock.advance(10);
    let (status, body) = poll(&app, &client, code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    // Denied: access_denied (400 at the token endpoint).
    let denied = start(&app, &client).await;
    let page = person_answers(
        &app,
        "poll@example.com",
        denied["verification_uri_complete"].as_str().unwrap(),
        "deny",
    )
    .await;
    assert!(page.contains("Request denied"), "{page}");
    let (status, body) = poll(&app, &client, denied["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "access_denied");

    // Expired: expired_token.
    let late = start(&app, &client).await;
    app.clock.advance(601);
    let (_, body) = poll(&app, &client, late["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "expired_token");

    // Another client's code, and a code revoked by its holder, are invalid_grant.
    let other = cli_client(&app).await;
    let fresh = start(&app, &client).await;
    let fresh_code = fresh["device_code"].as_str().unwrap();
    let (_, body) = poll(&app, &other, fresh_code).await;
    assert_eq!(body["error"], "invalid_grant");
    let resp = app
        .client
        .post(app.url("/oauth2/revoke"))
        .form(&[("token", fresh_code), ("client_id", client.id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, body) = poll(&app, &client, fresh_code).await;
    assert_eq!(body["error"], "invalid_grant");

    // A client not registered for the grant cannot start it.
    let web = flows::confidential(&app).await;
    let resp = app
        .client
        .post(app.url("/oauth2/device"))
        .basic_auth(&web.id, web.secret.as_deref())
        .form(&[("scope", "api.read")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
}

async fn the_device_page_checks_the_person_and_the_code(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = cli_client(&app).await;
    flows::user(&app, "page@example.com").await;
    let d = start(&app, &client).await;

    // Not signed in: the login form, returning to the page with the code.
    let resp = app
        .client
        .get(app.url("/device?user_code=BCDF-GHJK"))
        .send()
        .await
        .unwrap();
    let html = resp.text().await.unwrap();
    assert!(html.contains("name=\"password\""), "{html}");
    assert_eq!(
        flows::form_value(&html, "return_to").unwrap(),
        "/device?user_code=BCDF-GHJK"
    );

    let browser = flows::browser();
    let form_page = flows::sign_in(&app, &browser, &app.url("/device"), "page@example.com").await;
    let html = browser
        .get(&form_page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = flows::form_value(&html, "csrf_token").unwrap();
    // A wrong code is said so, on the form again.
    let resp = browser
        .post(app.url("/device"))
        .form(&[("csrf_token", csrf.as_str()), ("user_code", "BCDF-GHJK")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("not valid or has expired"));
    // Without the CSRF token nothing happens.
    let resp = browser
        .post(app.url("/device"))
        .form(&[
            ("user_code", d["user_code"].as_str().unwrap()),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (_, body) = poll(&app, &client, d["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "authorization_pending");
    // Lower case and no dash are the same code.
    let typed = d["user_code"]
        .as_str()
        .unwrap()
        .replace('-', "")
        .to_lowercase();
    let resp = browser
        .post(app.url("/device"))
        .form(&[("csrf_token", csrf.as_str()), ("user_code", typed.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("value=\"allow\""));
}

async fn the_device_grant_is_advertised_only_when_enabled(backend: Backend) {
    let app = TestApp::start(backend).await;
    let meta = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(
        meta["device_authorization_endpoint"],
        app.url("/oauth2/device").as_str()
    );
    assert!(meta["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(DEVICE_GRANT)));
    // Open registration may ask for it: a person approves every token.
    let registered = app
        .post_value(
            "/oauth2/register",
            &json!({"client_name": "cli", "grant_types": [DEVICE_GRANT], "token_endpoint_auth_method": "none"}),
        )
        .await;
    assert_eq!(
        registered["grant_types"],
        json!([DEVICE_GRANT]),
        "{registered}"
    );

    let off = TestApp::builder(backend)
        .with_config(|c| c.oauth.device.enabled = false)
        .start()
        .await;
    let meta = off
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(meta.get("device_authorization_endpoint").is_none());
    assert!(!meta["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(DEVICE_GRANT)));
    assert_eq!(off.get("/device").await.status(), StatusCode::NOT_FOUND);
}
