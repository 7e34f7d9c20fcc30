//! auth.md agent registration through real HTTP: every flow end to end, the emailed claim
//! ceremony over real SMTP, a provider serving a JWKS on loopback, and every error code.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::{claim_link, TestProvider};
use crate::flows;
use crate::harness::{Backend, TestApp};

crate::db_tests!(
    anonymous_api_key_works_at_once,
    anonymous_credential_types_and_identity_assertion_exchange,
    claim_merges_the_agent_into_the_user,
    claim_with_link_keeps_the_agent_principal,
    claim_requests_are_idempotent_and_superseded,
    wrong_codes_lock_and_codes_expire,
    this_wasnt_me_cancels,
    verified_email_registration_gets_a_fresh_credential,
    unclaimed_registrations_expire,
    id_jag_registration_and_every_check,
    id_jag_at_the_token_endpoint,
    provider_logout_revokes_and_refuses_replay,
    provider_security_events_revoke_and_refuse_replay,
    flows_can_be_turned_off,
    registration_is_rate_limited,
    api_keys_are_revoked_by_possession,
    api_key_prefix_is_configurable,
    a_broken_limiter_store_fails_open,
    unclaimed_credentials_that_died_stay_dead,
    registration_scopes_narrow_or_are_refused,
);

async fn anon(app: &TestApp, body: Value) -> Value {
    let resp = app.post_json("/agent/auth", &body).await;
    assert_eq!(resp.status(), 200, "{body}");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    resp.json().await.unwrap()
}

/// The status of one anonymous registration (rate-limit tests count them).
async fn anon_status(app: &TestApp) -> u16 {
    app.post_json("/agent/auth", &json!({"type": "anonymous"}))
        .await
        .status()
        .as_u16()
}

async fn err(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(body["message"].is_string(), "auth.md error shape: {body}");
    (status, body["error"].as_str().unwrap().to_owned())
}

/// The person's part of a claim, in a fresh browser.
async fn read_code(app: &TestApp, message_index: usize) -> String {
    flows::read_claim_code(app, &flows::browser(), message_index).await
}

use flows::complete_claim as complete;

async fn anonymous_api_key_works_at_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    assert!(reg["registration_id"].as_str().unwrap().starts_with("reg_"));
    assert_eq!(reg["registration_type"], "anonymous");
    assert_eq!(reg["credential_type"], "api_key");
    assert!(reg["credential"].as_str().unwrap().starts_with("sk_"));
    assert!(reg["credential_expires"].is_null());
    assert_eq!(reg["scopes"], json!(["api.read"]));
    assert_eq!(reg["post_claim_scopes"], json!(["api.read", "api.write"]));
    assert_eq!(reg["claim_url"], json!(app.url("/agent/auth/claim")));
    assert!(reg["claim_token"].as_str().unwrap().starts_with("clm_"));
    assert_eq!(reg["claim_token_expires"], json!(app.now() + 86400));

    let info = flows::introspect(&app, &rs, reg["credential"].as_str().unwrap()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["scope"], "api.read");
    assert!(info["sub"].as_str().unwrap().starts_with("agt_"));
    assert_eq!(info["agent_registration"]["id"], reg["registration_id"]);
    assert_eq!(info["agent_registration"]["claimed"], false);
    // A v0.6 registration at /agent/identity is the same kind of row; the audit row carries the
    // caller's IP.
    let alias = app
        .post_json("/agent/identity", &json!({"type": "anonymous"}))
        .await;
    assert_eq!(alias.status(), 200);
    let rows = app
        .state
        .db
        .run(|c| {
            Ok(authmd::db::audit::recent(
                c,
                Some("registration.created"),
                10,
            )?)
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].ip.as_deref(), Some("127.0.0.1"));
}

async fn anonymous_credential_types_and_identity_assertion_exchange(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let reg = anon(
        &app,
        json!({"type": "anonymous", "requested_credential_type": "access_token"}),
    )
    .await;
    assert!(reg["credential"].as_str().unwrap().starts_with("at_"));
    assert_eq!(reg["credential_expires"], json!(app.now() + 3600));
    assert_eq!(
        flows::introspect(&app, &rs, reg["credential"].as_str().unwrap()).await["active"],
        true
    );

    // Vectoken's flow: register → identity assertion → JWT-bearer token.
    let reg = anon(
        &app,
        json!({"type": "anonymous", "requested_credential_type": "identity_assertion"}),
    )
    .await;
    let assertion = reg["credential"].as_str().unwrap();
    assert_eq!(assertion.matches('.').count(), 2, "a JWT");
    let exchange_for = |assertion: String, scope: &'static str| {
        app.client
            .post(app.url("/oauth2/token"))
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned(),
                ),
                ("assertion", assertion),
                ("scope", scope.to_owned()),
            ])
            .send()
    };
    let exchange = |assertion: String| exchange_for(assertion, "api.read");
    // A refused exchange (a scope the registration lacks) does not use the assertion up.
    let resp = exchange_for(assertion.to_owned(), "api.write")
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_scope"
    );
    let resp = exchange(assertion.to_owned()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let pair: Value = resp.json().await.unwrap();
    assert_eq!(pair["scope"], "api.read");
    let info = flows::introspect(&app, &rs, pair["access_token"].as_str().unwrap()).await;
    assert_eq!(info["agent_registration"]["id"], reg["registration_id"]);
    // RFC 9068: an agent credential's client is its registration.
    assert_eq!(info["client_id"], reg["registration_id"]);

    let replay = exchange(assertion.to_owned()).await.unwrap();
    assert_eq!(replay.status(), 400);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"].as_str().unwrap().contains("jti"),
        "{body}"
    );

    // The refresh token rotates without any client.
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", pair["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A tampered or expired assertion is invalid_grant.
    let reg = anon(
        &app,
        json!({"type": "anonymous", "requested_credential_type": "identity_assertion"}),
    )
    .await;
    let jwt = reg["credential"].as_str().unwrap().to_owned();
    let tampered = format!("{}x", &jwt[..jwt.len() - 1]);
    assert_eq!(exchange(tampered).await.unwrap().status(), 400);
    app.clock.advance(301);
    let expired = exchange(jwt).await.unwrap();
    let body: Value = expired.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

async fn claim_merges_the_agent_into_the_user(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    let key = reg["credential"].as_str().unwrap();
    let claim_token = reg["claim_token"].as_str().unwrap();

    // The link in the email comes from server.issuer, whatever Host the request carried.
    let resp = app
        .client
        .post(app.url("/agent/auth/claim"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .json(&json!({"claim_token": claim_token, "email": "Owner@Example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let started: Value = resp.json().await.unwrap();
    assert_eq!(started["status"], "initiated");
    assert_eq!(started["registration_id"], reg["registration_id"]);
    assert!(started["claim_attempt_id"].is_string());
    assert!(started["expires_at"].is_i64());
    let messages = app.mail.wait_for(1).await;
    assert!(messages[0].contains("owner@example.com"));

    // Opening the link mints nothing: no code exists yet.
    let link = claim_link(&messages[0]);
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 200);
    assert_eq!(
        err(complete(&app, claim_token, "000000").await).await,
        (401, "otp_invalid".into())
    );

    // A new code replaces the previous one.
    let replaced = read_code(&app, 0).await;
    let otp = read_code(&app, 0).await;
    if replaced != otp {
        assert_eq!(
            err(complete(&app, claim_token, &replaced).await).await,
            (401, "otp_invalid".into())
        );
    }
    let resp = complete(&app, claim_token, &otp).await;
    assert_eq!(resp.status(), 200);
    let done: Value = resp.json().await.unwrap();
    assert_eq!(
        done,
        json!({"registration_id": reg["registration_id"], "status": "claimed",
               "scopes": ["api.read", "api.write"], "mode": "merge"})
    );

    // Same key, post-claim scopes, the user as subject.
    let info = flows::introspect(&app, &rs, key).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["scope"], "api.read api.write");
    assert!(info["sub"].as_str().unwrap().starts_with("usr_"));
    assert!(info.get("owner_sub").is_none());
    assert_eq!(info["agent_registration"]["claimed"], true);

    assert_eq!(
        err(complete(&app, claim_token, &otp).await).await,
        (409, "previously_claimed".into())
    );
    let again = app
        .post_json(
            "/agent/auth/claim",
            &json!({"claim_token": claim_token, "email": "owner@example.com"}),
        )
        .await;
    assert_eq!(err(again).await, (409, "previously_claimed".into()));
    for (event, n) in [
        ("claim.requested", 1),
        ("otp.generated", 2),
        ("claim.confirmed", 1),
    ] {
        assert_eq!(flows::audit_count(&app, event).await, n, "{event}");
    }
}

async fn claim_with_link_keeps_the_agent_principal(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    let claim_token = reg["claim_token"].as_str().unwrap();
    let before = flows::introspect(&app, &rs, reg["credential"].as_str().unwrap()).await;
    app.post_json(
        "/agent/auth/claim",
        &json!({"claim_token": claim_token, "email": "linker@example.com", "link": true}),
    )
    .await;
    let otp = read_code(&app, 0).await;
    assert_eq!(complete(&app, claim_token, &otp).await.status(), 200);
    let after = flows::introspect(&app, &rs, reg["credential"].as_str().unwrap()).await;
    assert_eq!(
        after["sub"], before["sub"],
        "tinysend's link: the agent stays its own principal"
    );
    assert!(after["owner_sub"].as_str().unwrap().starts_with("usr_"));
    assert_eq!(after["scope"], "api.read api.write");
}

async fn claim_requests_are_idempotent_and_superseded(backend: Backend) {
    let app = TestApp::start(backend).await;
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    let claim_token = reg["claim_token"].as_str().unwrap();
    let body = json!({"claim_token": claim_token, "email": "a@example.com"});
    let first: Value = app.post_value("/agent/auth/claim", &body).await;
    let second: Value = app.post_value("/agent/auth/claim", &body).await;
    assert_eq!(first["claim_attempt_id"], second["claim_attempt_id"]);
    app.mail.wait_for(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        app.mail.messages().len(),
        1,
        "the same email while open sends nothing new"
    );

    let other: Value = app
        .post_value(
            "/agent/auth/claim",
            &json!({"claim_token": claim_token, "email": "b@example.com"}),
        )
        .await;
    assert_ne!(other["claim_attempt_id"], first["claim_attempt_id"]);
    let messages = app.mail.wait_for(2).await;
    // The first link is superseded: the page says so and its button mints nothing.
    let old = claim_link(&messages[0]);
    let page = reqwest::get(&old).await.unwrap();
    assert_eq!(page.status(), StatusCode::GONE);
    let html = flows::browser()
        .get(&old)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("newer request"), "{html}");
    assert!(!html.contains("Get my code"));
    let otp = read_code(&app, 1).await;
    assert_eq!(complete(&app, claim_token, &otp).await.status(), 200);

    let bad = app
        .post_json(
            "/agent/auth/claim",
            &json!({"claim_token": "clm_nope", "email": "a@example.com"}),
        )
        .await;
    assert_eq!(err(bad).await, (401, "invalid_claim_token".into()));
    let bad = app
        .post_json("/agent/auth/claim", &json!({"claim_token": claim_token}))
        .await;
    assert_eq!(err(bad).await, (400, "invalid_request".into()));
}

async fn wrong_codes_lock_and_codes_expire(backend: Backend) {
    let app = TestApp::start(backend).await;
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    let claim_token = reg["claim_token"].as_str().unwrap();
    app.post_json(
        "/agent/auth/claim",
        &json!({"claim_token": claim_token, "email": "c@example.com"}),
    )
    .await;
    let otp = read_code(&app, 0).await;
    let wrong = if otp == "123456" { "654321" } else { "123456" };
    for _ in 0..4 {
        assert_eq!(
            err(complete(&app, claim_token, wrong).await).await,
            (401, "otp_invalid".into())
        );
    }
    assert_eq!(
        err(complete(&app, claim_token, wrong).await).await,
        (429, "otp_locked".into())
    );
    assert_eq!(
        err(complete(&app, claim_token, &otp).await).await,
        (429, "otp_locked".into()),
        "locked even for the right code"
    );

    // A new attempt, then the code expires after ten minutes.
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    let claim_token = reg["claim_token"].as_str().unwrap();
    app.post_json(
        "/agent/auth/claim",
        &json!({"claim_token": claim_token, "email": "c@example.com"}),
    )
    .await;
    let otp = read_code(&app, 1).await;
    app.clock.advance(601);
    assert_eq!(
        err(complete(&app, claim_token, &otp).await).await,
        (410, "otp_expired".into())
    );
}

async fn this_wasnt_me_cancels(backend: Backend) {
    let app = TestApp::start(backend).await;
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    let claim_token = reg["claim_token"].as_str().unwrap();
    app.post_json(
        "/agent/auth/claim",
        &json!({"claim_token": claim_token, "email": "d@example.com"}),
    )
    .await;
    let link = claim_link(&app.mail.wait_for(1).await[0]);
    let browser = flows::browser();
    let html = browser
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = flows::form_value(&html, "token").unwrap();
    let csrf = flows::form_value(&html, "csrf_token").unwrap();
    let no_csrf = browser
        .post(app.url("/agent/auth/claim/attempt/cancel"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    let resp = browser
        .post(app.url("/agent/auth/claim/attempt/cancel"))
        .form(&[("token", token.as_str()), ("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("cancelled"));
    let (status, _) = err(complete(&app, claim_token, "000000").await).await;
    assert_eq!(status, 401);
    assert_eq!(flows::audit_count(&app, "claim.cancelled").await, 1);
}

async fn verified_email_registration_gets_a_fresh_credential(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let resp = app
        .post_json(
            "/agent/auth",
            &json!({"type": "identity_assertion", "assertion_type": "verified_email", "assertion": "Vera@Example.com", "requested_credential_type": "access_token"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let reg: Value = resp.json().await.unwrap();
    assert_eq!(reg["registration_type"], "email-verification");
    assert!(
        reg.get("credential").is_none(),
        "no credential before the ceremony"
    );
    let claim_token = reg["claim_token"].as_str().unwrap();
    assert!(app.mail.wait_for(1).await[0].contains("vera@example.com"));
    let otp = read_code(&app, 0).await;
    let resp = complete(&app, claim_token, &otp).await;
    assert_eq!(resp.status(), 200);
    let done: Value = resp.json().await.unwrap();
    assert_eq!(done["credential_type"], "access_token");
    assert_eq!(done["scopes"], json!(["api.read", "api.write"]));
    let info = flows::introspect(&app, &rs, done["credential"].as_str().unwrap()).await;
    assert_eq!(info["active"], true);
    assert!(info["sub"].as_str().unwrap().starts_with("usr_"));

    // tinysend's list form of the same request.
    let resp = app
        .post_json("/agent/auth", &json!({"type": "identity_assertion", "assertions": [{"type": "verified_email", "email": "list@example.com"}]}))
        .await;
    assert_eq!(resp.status(), 200);
}

async fn unclaimed_registrations_expire(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| c.agent.claim_ttl_s = 600)
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    let key = reg["credential"].as_str().unwrap();
    app.clock.advance(599);
    assert_eq!(flows::introspect(&app, &rs, key).await["active"], true);
    app.clock.advance(1);
    assert_eq!(
        flows::introspect(&app, &rs, key).await["active"],
        false,
        "dies with its registration, checked at use"
    );
    let late = app
        .post_json(
            "/agent/auth/claim",
            &json!({"claim_token": reg["claim_token"], "email": "e@example.com"}),
        )
        .await;
    assert_eq!(err(late).await, (410, "claim_expired".into()));
    assert_eq!(app.state.sweep().await.unwrap(), 1);
    assert_eq!(app.state.sweep().await.unwrap(), 0, "expired once");
    assert_eq!(flows::audit_count(&app, "registration.expired").await, 1);
}

async fn id_jag_registration_and_every_check(backend: Backend) {
    let provider = TestProvider::start().await;
    let app = TestApp::builder(backend)
        .with_provider(&provider)
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let now = app.now();
    let register = |jag: String| {
        let body = json!({"type": "identity_assertion", "assertion_type": "urn:ietf:params:oauth:token-type:id-jag", "assertion": jag});
        let app = &app;
        async move { app.post_json("/agent/auth", &body).await }
    };
    let jag = provider.id_jag(&app.base, now, json!({}));
    let resp = register(jag.clone()).await;
    assert_eq!(resp.status(), 200);
    let reg: Value = resp.json().await.unwrap();
    assert_eq!(reg["registration_type"], "agent-provider");
    assert!(reg.get("refresh_token").is_none());
    let first = flows::introspect(&app, &rs, reg["credential"].as_str().unwrap()).await;
    assert!(first["sub"].as_str().unwrap().starts_with("usr_"));

    assert_eq!(
        err(register(jag).await).await,
        (400, "replay_detected".into())
    );
    // The same (iss, sub) later is the same user.
    let again: Value = register(provider.id_jag(&app.base, now, json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        flows::introspect(&app, &rs, again["credential"].as_str().unwrap()).await["sub"],
        first["sub"]
    );

    let stranger = TestProvider::start().await;
    let forged = stranger.id_jag(&app.base, now, json!({"iss": provider.issuer}));
    assert_eq!(
        err(register(forged).await).await,
        (400, "invalid_signature".into())
    );
    assert_eq!(
        err(register(stranger.id_jag(&app.base, now, json!({}))).await).await,
        (400, "issuer_not_enabled".into())
    );
    assert_eq!(
        err(register(provider.id_jag("https://other.example", now, json!({}))).await).await,
        (400, "invalid_audience".into())
    );
    assert_eq!(
        err(register(provider.id_jag(&app.base, now, json!({"exp": now - 1}))).await).await,
        (400, "credential_expired".into())
    );
    assert_eq!(
        err(register(provider.id_jag(&app.base, now, json!({"email_verified": false}))).await)
            .await,
        (400, "missing_verified_email".into())
    );
    let wrong_typ = provider.sign("JWT", &json!({"iss": provider.issuer, "sub": "x", "aud": app.base, "exp": now + 60, "jti": "j1", "email": "a@b.example", "email_verified": true}));
    assert_eq!(
        err(register(wrong_typ).await).await,
        (400, "invalid_request".into())
    );
    assert_eq!(
        err(register(provider.id_jag(&app.base, now, json!({"iat": now + 600}))).await).await,
        (400, "invalid_request".into())
    );
    // The JWKS was cached: one fetch served every check (the stranger's token triggered one
    // refetch for its unknown kid).
    assert!(provider.fetches.load(std::sync::atomic::Ordering::SeqCst) <= 2);
}

async fn id_jag_at_the_token_endpoint(backend: Backend) {
    let provider = TestProvider::start().await;
    let app = TestApp::builder(backend)
        .with_provider(&provider)
        .start()
        .await;
    let jwt_bearer = || flows::ClientSpec {
        grant_types: vec!["urn:ietf:params:oauth:grant-type:jwt-bearer"],
        redirect_uris: vec![],
        ..Default::default()
    };
    let client = flows::client(&app, jwt_bearer()).await;
    let other = flows::client(&app, jwt_bearer()).await;
    let now = app.now();
    let grant = |c: &flows::TestClient, jag: String| {
        app.client
            .post(app.url("/oauth2/token"))
            .basic_auth(&c.id, c.secret.as_ref())
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned(),
                ),
                ("assertion", jag),
            ])
            .send()
    };
    let jag = provider.id_jag(
        &app.base,
        now,
        json!({"client_id": client.id, "scope": "api.read"}),
    );
    let resp = grant(&client, jag.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["scope"], "api.read");
    assert!(
        body.get("refresh_token").is_none(),
        "never a refresh token for an ID-JAG"
    );
    let replay: Value = grant(&client, jag).await.unwrap().json().await.unwrap();
    assert_eq!(replay["error"], "invalid_grant");

    let jag = provider.id_jag(&app.base, now, json!({"client_id": client.id}));
    let wrong_client: Value = grant(&other, jag).await.unwrap().json().await.unwrap();
    assert_eq!(wrong_client["error"], "invalid_grant");
    assert!(wrong_client["error_description"]
        .as_str()
        .unwrap()
        .contains("client_id"));
    let bad_aud: Value = grant(
        &client,
        provider.id_jag("https://x.example", now, json!({"client_id": client.id})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(bad_aud["error"], "invalid_grant");
    assert!(bad_aud["error_description"]
        .as_str()
        .unwrap()
        .contains("aud"));
}

async fn provider_logout_revokes_and_refuses_replay(backend: Backend) {
    let provider = TestProvider::start().await;
    let app = TestApp::builder(backend)
        .with_provider(&provider)
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let now = app.now();
    let reg: Value = app.post_value("/agent/auth",
            &json!({"type": "identity_assertion", "assertion_type": "urn:ietf:params:oauth:token-type:id-jag", "assertion": provider.id_jag(&app.base, now, json!({"sub": "leaver"}))}),).await;
    let key = reg["credential"].as_str().unwrap();
    assert_eq!(flows::introspect(&app, &rs, key).await["active"], true);

    let logout = provider.logout(&app.base, now, "leaver");
    let send = |body: String, content_type: &'static str| {
        app.client
            .post(app.url("/agent/auth/revoke"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(
        err(send(logout.clone(), "application/json").await.unwrap())
            .await
            .0,
        400
    );
    let resp = send(logout.clone(), "application/logout+jwt")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 1);
    assert_eq!(flows::introspect(&app, &rs, key).await["active"], false);
    assert_eq!(
        err(send(logout, "application/logout+jwt").await.unwrap()).await,
        (400, "replay_detected".into())
    );
    assert_eq!(flows::audit_count(&app, "registration.revoked").await, 1);
}

/// RFC 8935 push of an RFC 8417 Security Event Token (auth.md v0.3+): 202 and every credential
/// of the `(iss, sub)` revoked; refusals as `{"err", "description"}`.
async fn provider_security_events_revoke_and_refuse_replay(backend: Backend) {
    let provider = TestProvider::start().await;
    let app = TestApp::builder(backend)
        .with_provider(&provider)
        .start()
        .await;
    let meta = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(
        meta["agent_auth"]["events_endpoint"],
        app.url("/agent/event/notify").as_str()
    );
    const REVOKED: &str = "https://schemas.workos.com/events/agent/auth/identity/assertion/revoked";
    assert!(meta["agent_auth"]["events_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(REVOKED)));

    let rs = flows::resource_server(&app).await;
    let now = app.now();
    let register = |sub: &str| {
        json!({"type": "identity_assertion", "assertion_type": "urn:ietf:params:oauth:token-type:id-jag",
               "assertion": provider.id_jag(&app.base, now, json!({"sub": sub}))})
    };
    let leaver = app.post_value("/agent/auth", &register("leaver")).await;
    let stayer = app.post_value("/agent/auth", &register("stayer")).await;
    let (leaver_key, stayer_key) = (
        leaver["credential"].as_str().unwrap().to_owned(),
        stayer["credential"].as_str().unwrap().to_owned(),
    );
    let set = |sub: &str, events: Value, aud: &str| {
        provider.sign(
            "secevent+jwt",
            &json!({"iss": provider.issuer, "sub": sub, "aud": aud, "iat": now,
                    "jti": uuid::Uuid::new_v4().to_string(), "events": events}),
        )
    };
    let send = |body: String, content_type: &'static str| {
        app.client
            .post(app.url("/agent/event/notify"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let refused = |resp: reqwest::Response| async move {
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert!(body["description"].is_string(), "{body}");
        body["err"].as_str().unwrap().to_owned()
    };

    // An event authmd does not act on is accepted and changes nothing (RFC 8417 §2.2).
    let other = set(
        "leaver",
        json!({"https://example.com/events/other": {}}),
        &app.base,
    );
    let resp = send(other, "application/secevent+jwt").await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(
        flows::introspect(&app, &rs, &leaver_key).await["active"],
        true
    );

    let revoke = set("leaver", json!({ REVOKED: {} }), &app.base);
    assert_eq!(
        refused(send(revoke.clone(), "application/json").await.unwrap()).await,
        "invalid_request"
    );
    let resp = send(revoke.clone(), "application/secevent+jwt")
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert!(resp.bytes().await.unwrap().is_empty());
    assert_eq!(
        flows::introspect(&app, &rs, &leaver_key).await["active"],
        false
    );
    assert_eq!(
        flows::introspect(&app, &rs, &stayer_key).await["active"],
        true,
        "another identity of the same provider is untouched"
    );
    // Replay, wrong audience, wrong type, an untrusted issuer, a bad signature, no events.
    assert_eq!(
        refused(send(revoke, "application/secevent+jwt").await.unwrap()).await,
        "invalid_request"
    );
    let wrong_aud = set(
        "stayer",
        json!({ REVOKED: {} }),
        "https://elsewhere.example",
    );
    assert_eq!(
        refused(send(wrong_aud, "application/secevent+jwt").await.unwrap()).await,
        "invalid_audience"
    );
    let logout_typed = provider.sign(
        "logout+jwt",
        &json!({"iss": provider.issuer, "sub": "stayer", "aud": app.base, "iat": now, "exp": now + 60,
                "jti": "x1", "events": { REVOKED: {} }}),
    );
    assert_eq!(
        refused(
            send(logout_typed, "application/secevent+jwt")
                .await
                .unwrap()
        )
        .await,
        "invalid_request"
    );
    let stranger = TestProvider::start().await;
    let foreign = stranger.sign(
        "secevent+jwt",
        &json!({"iss": stranger.issuer, "sub": "stayer", "aud": app.base, "iat": now, "jti": "x2", "events": { REVOKED: {} }}),
    );
    assert_eq!(
        refused(send(foreign, "application/secevent+jwt").await.unwrap()).await,
        "invalid_issuer"
    );
    let forged = {
        let good = set("stayer", json!({ REVOKED: {} }), &app.base);
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[2] = parts[2].chars().rev().collect();
        parts.join(".")
    };
    assert_eq!(
        refused(send(forged, "application/secevent+jwt").await.unwrap()).await,
        "invalid_key"
    );
    let empty = set("stayer", json!({}), &app.base);
    assert_eq!(
        refused(send(empty, "application/secevent+jwt").await.unwrap()).await,
        "invalid_request"
    );
    assert_eq!(
        flows::introspect(&app, &rs, &stayer_key).await["active"],
        true
    );
}

async fn flows_can_be_turned_off(backend: Backend) {
    // tokens&: no anonymous registration, no verified-email flow.
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.agent.anonymous_enabled = false;
            c.agent.verified_email_enabled = false;
        })
        .start()
        .await;
    assert_eq!(
        err(app
            .post_json("/agent/auth", &json!({"type": "anonymous"}))
            .await)
        .await,
        (400, "anonymous_not_enabled".into())
    );
    let email = json!({"type": "identity_assertion", "assertion_type": "verified_email", "assertion": "x@example.com"});
    assert_eq!(
        err(app.post_json("/agent/auth", &email).await).await,
        (400, "verified_email_not_enabled".into())
    );
    let jag = json!({"type": "identity_assertion", "assertion_type": "urn:ietf:params:oauth:token-type:id-jag", "assertion": "a.b.c"});
    let (status, _) = err(app.post_json("/agent/auth", &jag).await).await;
    assert_eq!(status, 400);

    let open = TestApp::start(backend).await;
    let bad = json!({"type": "anonymous", "requested_credential_type": "password"});
    assert_eq!(
        err(open.post_json("/agent/auth", &bad).await).await,
        (400, "unsupported_credential_type".into())
    );
    // An identity type nobody here knows, on either path.
    for path in ["/agent/auth", "/agent/identity"] {
        let resp = open
            .post_json(path, &json!({"type": "carrier_pigeon"}))
            .await;
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "unsupported_identity_type", "{path}");
    }
    assert_eq!(
        err(open.post_json("/agent/auth", &json!({})).await).await,
        (400, "invalid_request".into())
    );
}

async fn registration_is_rate_limited(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.rate_limit.agent_auth_per_ip = 2;
            c.rate_limit.window_s = 60;
        })
        .start()
        .await;
    for _ in 0..2 {
        assert_eq!(anon_status(&app).await, 200);
    }
    let limited = app
        .post_json("/agent/auth", &json!({"type": "anonymous"}))
        .await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(err(limited).await.1, "rate_limited");
    // Two windows later the counters are empty again.
    app.clock.advance(120);
    assert_eq!(anon_status(&app).await, 200);
}

async fn a_broken_limiter_store_fails_open(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| c.rate_limit.agent_auth_per_ip = 1)
        .start()
        .await;
    assert_eq!(anon_status(&app).await, 200);
    assert_eq!(anon_status(&app).await, 429);
    // The counters' table disappears: registration keeps working (and the cause is logged).
    app.state
        .db
        .run(|conn| {
            diesel::connection::SimpleConnection::batch_execute(
                conn,
                "DROP TABLE rate_limit_windows",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(anon_status(&app).await, 200);
}

async fn api_key_prefix_is_configurable(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| c.tokens.prefixes.api_key = "dai_".to_owned())
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    let key = reg["credential"].as_str().unwrap();
    assert!(key.starts_with("dai_"), "{key}");
    assert_eq!(flows::introspect(&app, &rs, key).await["active"], true);
    let resp = app
        .client
        .post(app.url("/oauth2/revoke"))
        .form(&[("token", key)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(flows::introspect(&app, &rs, key).await["active"], false);
}

async fn api_keys_are_revoked_by_possession(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    let key = reg["credential"].as_str().unwrap();
    let resp = app
        .client
        .post(app.url("/oauth2/revoke"))
        .form(&[("token", key)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(flows::introspect(&app, &rs, key).await["active"], false);
}

/// `agent.unclaimed_credential_ttl_s` shorter than the claim window: the key dies at its own
/// time, and a claim afterwards cannot bring it back (the registration is closed).
async fn unclaimed_credentials_that_died_stay_dead(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.agent.unclaimed_credential_ttl_s = authmd::config::UnclaimedTtl::Seconds(600);
        })
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let reg = anon(&app, json!({"type": "anonymous"})).await;
    let key = reg["credential"].as_str().unwrap();
    let claim_token = reg["claim_token"].as_str().unwrap();
    app.clock.advance(599);
    assert_eq!(flows::introspect(&app, &rs, key).await["active"], true);
    app.clock.advance(2);
    assert_eq!(flows::introspect(&app, &rs, key).await["active"], false);
    // Still inside the claim window (a day), but the registration is closed.
    let resp = app
        .post_json(
            "/agent/auth/claim",
            &json!({"claim_token": claim_token, "email": "late@example.com"}),
        )
        .await;
    assert_eq!(resp.status(), 410);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "claim_expired"
    );
    app.state.sweep().await.unwrap();
    assert_eq!(flows::introspect(&app, &rs, key).await["active"], false);
    assert_eq!(flows::audit_count(&app, "registration.expired").await, 1);
}

/// A registration's `scopes` narrow what its type grants before the claim; anything else is
/// `invalid_scope`, on both generations.
async fn registration_scopes_narrow_or_are_refused(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| c.agent.pre_claim_scopes = vec!["api.read".into(), "api.write".into()])
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let reg = anon(&app, json!({"type": "anonymous", "scopes": ["api.read"]})).await;
    assert_eq!(reg["scopes"], json!(["api.read"]));
    let info = flows::introspect(&app, &rs, reg["credential"].as_str().unwrap()).await;
    assert_eq!(info["scope"], "api.read");
    for (path, body) in [
        (
            "/agent/auth",
            json!({"type": "anonymous", "scopes": ["admin"]}),
        ),
        ("/agent/auth", json!({"type": "anonymous", "scopes": []})),
        (
            "/agent/identity",
            json!({"type": "anonymous", "scopes": ["admin"]}),
        ),
        // Nothing is granted before a person confirms: any scope is too much.
        (
            "/agent/auth",
            json!({"type": "identity_assertion", "assertion_type": "verified_email",
                   "assertion": "s@example.com", "scopes": ["api.read"]}),
        ),
        (
            "/agent/identity",
            json!({"type": "service_auth", "login_hint": "s@example.com", "scopes": ["api.read"]}),
        ),
    ] {
        let resp = app.post_json(path, &body).await;
        assert_eq!(resp.status(), 400, "{path} {body}");
        assert_eq!(
            resp.json::<Value>().await.unwrap()["error"],
            "invalid_scope",
            "{body}"
        );
    }
    let v06: Value = app
        .post_value(
            "/agent/identity",
            &json!({"type": "anonymous", "scopes": ["api.write"]}),
        )
        .await;
    assert_eq!(v06["pre_claim_scopes"], json!(["api.write"]));
}
