//! The trust rules: each test is one hole an independent review found, driven from outside as
//! an attacker or an ordinary client would, with the variants a narrow fix would miss.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::{claim_link, TestProvider};
use crate::flows::{self, ClientSpec, TestClient};
use crate::harness::{Backend, TestApp};

crate::db_tests!(
    idempotency_records_belong_to_their_caller,
    only_first_party_credentials_mint_personal_tokens,
    open_registration_is_for_apps_that_ask_a_person,
    every_credential_kind_is_introspected_and_revoked_through_one_model,
    credentials_die_with_what_they_came_from,
    assertions_are_bounded,
    provider_keys_cannot_be_fetched_by_strangers,
    rate_limits_cannot_be_turned_against_others,
    login_counts_failures_only,
    mail_and_client_authentication_are_limited,
    pages_do_not_remember_loopback_consent_or_leak_errors,
    bad_input_is_a_clear_4xx,
    the_token_endpoint_checks_resource_for_every_grant,
    refresh_grace_zero_is_single_use,
);

/// A signed-in browser for a new user; returns it, the user id and a personal token it made.
async fn person(app: &TestApp, email: &str) -> (reqwest::Client, String, String) {
    let p = flows::person(app, email).await;
    let pat = p
        .token(
            app,
            json!({"name": "mine", "scopes": ["api.read", "api.write"]}),
        )
        .await;
    (p.browser, p.user_id, pat)
}

fn key(n: u8) -> String {
    format!("idem-key-{n}-{}", "x".repeat(20))
}

async fn idempotency_records_belong_to_their_caller(backend: Backend) {
    let app = TestApp::start(backend).await;
    // No principal: a short key is refused, on every anonymous endpoint.
    for (path, body) in [
        ("/agent/auth", json!({"type": "anonymous"})),
        (
            "/oauth2/register",
            json!({"redirect_uris": ["https://a.example/cb"]}),
        ),
    ] {
        let resp = app
            .client
            .post(app.url(path))
            .header("idempotency-key", "k")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "invalid_request", "{path}");
    }
    // An unguessable key still replays for the anonymous caller who made it.
    let long = key(1);
    let first = app
        .client
        .post(app.url("/agent/auth"))
        .header("idempotency-key", &long)
        .json(&json!({"type": "anonymous"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let again = app
        .client
        .post(app.url("/agent/auth"))
        .header("idempotency-key", &long)
        .json(&json!({"type": "anonymous"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first);

    // Two people, the same short key: each gets their own token, never the other's.
    let (alice, _, alice_pat) = person(&app, "alice@example.com").await;
    let (bob, _, bob_pat) = person(&app, "bob@example.com").await;
    let mint = |client: &reqwest::Client, bearer: Option<&str>| {
        let mut req = client
            .post(app.url("/api/tokens"))
            .header("origin", &app.base)
            .header("idempotency-key", "short")
            .json(&json!({"name": "ci"}));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send()
    };
    let a: Value = mint(&alice, None).await.unwrap().json().await.unwrap();
    let b = mint(&bob, None).await.unwrap();
    assert_eq!(b.status(), 201);
    assert!(b.headers().get("idempotent-replayed").is_none());
    let b: Value = b.json().await.unwrap();
    assert_ne!(
        a["token"], b["token"],
        "session callers are separate principals"
    );
    // Bearer callers too: Bob's personal token does not unlock Alice's record.
    let a2: Value = mint(&app.client, Some(&alice_pat))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b2: Value = mint(&app.client, Some(&bob_pat))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(a2["token"], b2["token"]);
    // A user is one principal however they authenticate: session and personal token share.
    assert_eq!(a2["token"], a["token"], "same user, same key, same answer");
}

async fn only_first_party_credentials_mint_personal_tokens(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let (_, _, pat) = person(&app, "owner@example.com").await;
    // A third-party app's token for the same person.
    let client = flows::confidential(&app).await;
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "owner@example.com").await;
    let (_, tokens) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    let app_token = tokens["access_token"].as_str().unwrap().to_owned();
    // A client acting for itself, and an agent's key.
    let (_, cc) = flows::token(&app, &client, &[("grant_type", "client_credentials")]).await;
    let agent: Value = app
        .post_value("/agent/auth", &json!({"type": "anonymous"}))
        .await;
    for (what, bearer) in [
        ("third-party access token", app_token.as_str()),
        (
            "client_credentials token",
            cc["access_token"].as_str().unwrap(),
        ),
        ("agent API key", agent["credential"].as_str().unwrap()),
    ] {
        let resp = app
            .client
            .post(app.url("/api/tokens"))
            .bearer_auth(bearer)
            .json(&json!({"name": "escalate"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{what}");
        // Step-up (RFC 6750 §3): the challenge says why, and where to learn more.
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"insufficient_scope\"")
                && challenge.contains("resource_metadata=\""),
            "{what}: {challenge}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "insufficient_scope", "{what}");
    }
    // A personal token mints, never beyond itself: scopes, then expiry.
    let mint = |bearer: String, body: Value| {
        app.client
            .post(app.url("/api/tokens"))
            .bearer_auth(bearer)
            .json(&body)
            .send()
    };
    let child = mint(
        pat.clone(),
        json!({"name": "child", "scopes": ["api.read"], "expires_in": 600}),
    )
    .await
    .unwrap();
    assert_eq!(child.status(), 201);
    let child: Value = child.json().await.unwrap();
    let child_token = child["token"].as_str().unwrap().to_owned();
    let wider = mint(child_token.clone(), json!({"scopes": ["api.write"]}))
        .await
        .unwrap();
    assert_eq!(wider.status(), 400);
    let longer = mint(child_token.clone(), json!({"expires_in": 6000}))
        .await
        .unwrap();
    assert_eq!(
        longer.status(),
        400,
        "asking for more expiry is refused, not narrowed"
    );
    let grandchild: Value = mint(child_token.clone(), json!({"name": "gc"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(grandchild["expires_at"].as_i64().unwrap() <= child["expires_at"].as_i64().unwrap());
    let grandchild = grandchild["token"].as_str().unwrap().to_owned();
    // The maker dies: everything it made dies too.
    let resp = app
        .client
        .post(app.url("/oauth2/revoke"))
        .form(&[("token", pat.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for t in [&pat, &child_token, &grandchild] {
        assert_eq!(flows::introspect(&app, &rs, t).await["active"], false);
    }
}

async fn register(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/oauth2/register", &body).await
}

async fn open_registration_is_for_apps_that_ask_a_person(backend: Backend) {
    let app = TestApp::start(backend).await;
    for grants in [
        json!(["client_credentials"]),
        json!([
            "authorization_code",
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        ]),
    ] {
        let resp = register(
            &app,
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": grants}),
        )
        .await;
        assert_eq!(resp.status(), 400, "{grants}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client_metadata");
    }
    for uri in [
        "javascript:alert(1)",
        "http://evil.example/",
        "data:text/html,x",
    ] {
        let resp = register(
            &app,
            json!({"redirect_uris": ["https://a.example/cb"], "client_uri": uri}),
        )
        .await;
        assert_eq!(resp.status(), 400, "{uri}");
    }
    let resp = register(
        &app,
        json!({
            "redirect_uris": ["https://a.example/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "client_uri": "https://a.example",
            "can_introspect": true,
            "anything": "else",
        }),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["client_uri"], "https://a.example");
    assert!(body.get("can_introspect").is_none(), "{body}");
    assert!(body.get("anything").is_none(), "{body}");
    // The same registrant with the operator's initial access token may ask for more.
    const IAT: &str = "iat-0123456789abcdefghijklmnopqrstuvwxyz";
    let iat = IAT;
    let gated = TestApp::builder(backend)
        .with_config(|c| {
            c.oauth.registration = authmd::config::RegistrationMode::Token;
            c.oauth.initial_access_token = IAT.to_owned();
        })
        .start()
        .await;
    let resp = gated
        .client
        .post(gated.url("/oauth2/register"))
        .bearer_auth(iat)
        .json(&json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

async fn revoke(app: &TestApp, token: &str, client: Option<&TestClient>) -> StatusCode {
    let mut req = app.client.post(app.url("/oauth2/revoke"));
    if let Some(c) = client {
        req = req.basic_auth(&c.id, c.secret.as_ref());
    }
    req.form(&[("token", token)]).send().await.unwrap().status()
}

/// Every kind authmd issues, minted for real: introspection tells the truth about it before,
/// `/oauth2/revoke` by its holder (or its client) kills it, and it never reaches the audit log.
async fn every_credential_kind_is_introspected_and_revoked_through_one_model(backend: Backend) {
    use authmd::domain::credentials::{Kind, KINDS};
    for format in [
        authmd::config::AccessTokenFormat::Opaque,
        authmd::config::AccessTokenFormat::Jwt,
    ] {
        let app = TestApp::builder(backend)
            .with_config(move |c| c.tokens.access_token_format = format)
            .start()
            .await;
        let rs = flows::resource_server(&app).await;
        let client = flows::confidential(&app).await;
        let (_, _, pat) = person(&app, "kinds@example.com").await;
        let pkce = flows::pkce();
        let code = flows::authorization_code(&app, &client, &pkce, "kinds@example.com").await;
        let (_, t) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
        let access = t["access_token"].as_str().unwrap().to_owned();
        let refresh = t["refresh_token"].as_str().unwrap().to_owned();
        // An unused code, for the code kind.
        let pkce2 = flows::pkce();
        flows::user(&app, "kinds2@example.com").await;
        let unused_code =
            flows::authorization_code(&app, &client, &pkce2, "kinds2@example.com").await;
        let anon: Value = app
            .post_value("/agent/auth", &json!({"type": "anonymous"}))
            .await;
        let assertion: Value = app
            .post_value(
                "/agent/auth",
                &json!({"type": "anonymous", "requested_credential_type": "identity_assertion"}),
            )
            .await;
        app.post_json(
            "/agent/auth/claim",
            &json!({"claim_token": anon["claim_token"], "email": "kinds@example.com"}),
        )
        .await;
        let view = claim_link(&app.mail.wait_for(1).await[0]);
        let attempt_token = url::Url::parse(&view)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "token")
            .unwrap()
            .1
            .into_owned();
        let dcr: Value = register(&app, json!({"redirect_uris": ["https://a.example/cb"]}))
            .await
            .json()
            .await
            .unwrap();

        let device_client = flows::client(
            &app,
            flows::ClientSpec {
                redirect_uris: vec![],
                grant_types: vec!["urn:ietf:params:oauth:grant-type:device_code"],
                ..Default::default()
            },
        )
        .await;
        let device: Value = app
            .client
            .post(app.url("/oauth2/device"))
            .basic_auth(&device_client.id, device_client.secret.as_deref())
            .form(&[("scope", "api.read")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let device_code = device["device_code"].as_str().unwrap().to_owned();

        let access_kind = if format == authmd::config::AccessTokenFormat::Jwt {
            Kind::AccessJwt
        } else {
            Kind::AccessToken
        };
        let cases: Vec<(Kind, String, Option<&TestClient>)> = vec![
            (access_kind, access.clone(), Some(&client)),
            (Kind::RefreshToken, refresh.clone(), Some(&client)),
            (
                Kind::ApiKey,
                anon["credential"].as_str().unwrap().to_owned(),
                None,
            ),
            (
                Kind::IdentityAssertion,
                assertion["credential"].as_str().unwrap().to_owned(),
                None,
            ),
            (Kind::PersonalToken, pat.clone(), None),
            (
                Kind::ClaimToken,
                anon["claim_token"].as_str().unwrap().to_owned(),
                None,
            ),
            (Kind::ClaimAttempt, attempt_token.clone(), None),
            (
                Kind::RegistrationAccessToken,
                dcr["registration_access_token"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                None,
            ),
            (Kind::AuthorizationCode, unused_code.clone(), Some(&client)),
            (Kind::DeviceCode, device_code.clone(), Some(&device_client)),
        ];
        let covered: Vec<Kind> = cases.iter().map(|c| c.0).collect();
        for spec in KINDS.iter() {
            let other_format = matches!(
                (spec.kind, format),
                (Kind::AccessJwt, authmd::config::AccessTokenFormat::Opaque)
                    | (Kind::AccessToken, authmd::config::AccessTokenFormat::Jwt)
            );
            assert!(
                other_format || covered.contains(&spec.kind),
                "{:?} has no case in this test",
                spec.kind
            );
        }
        for (kind, token, owner) in &cases {
            let before = flows::introspect(&app, &rs, token).await;
            assert_eq!(
                before["active"],
                kind.spec().bearer,
                "{kind:?} before: {before}"
            );
            assert_eq!(revoke(&app, token, *owner).await, 200, "{kind:?}");
            let after = flows::introspect(&app, &rs, token).await;
            assert_eq!(after, json!({"active": false}), "{kind:?} after");
        }
        // Revoked means unusable, not only reported inactive.
        let (status, body) = flows::exchange(&app, &client, &unused_code, &pkce2.verifier).await;
        assert_eq!(
            (status.as_u16(), body["error"].clone()),
            (400, json!("invalid_grant"))
        );
        let (status, _) = flows::token(
            &app,
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_eq!(status, 400);
        let exchanged = app
            .client
            .post(app.url("/oauth2/token"))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion["credential"].as_str().unwrap()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(exchanged.status(), 400, "a revoked identity assertion");
        let (status, body) = flows::token(
            &app,
            &device_client,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &device_code),
            ],
        )
        .await;
        assert_eq!(
            (status.as_u16(), body["error"].clone()),
            (400, json!("invalid_grant")),
            "a revoked device code"
        );
        let claim = app
            .post_json(
                "/agent/auth/claim",
                &json!({"claim_token": anon["claim_token"], "email": "kinds@example.com"}),
            )
            .await;
        assert_eq!(claim.status(), 401, "a revoked claim token");
        let read = app
            .client
            .get(app.url(&format!(
                "/oauth2/register/{}",
                dcr["client_id"].as_str().unwrap()
            )))
            .bearer_auth(dcr["registration_access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 401, "a revoked registration access token");
        // Never logged: no audit row holds any of the secrets.
        let rows: Vec<String> = app
            .state
            .db
            .run(|conn| {
                Ok(authmd::db::audit::recent(conn, None, 10_000)?
                    .into_iter()
                    .map(|r| format!("{r:?}"))
                    .collect())
            })
            .await
            .unwrap();
        let log = crate::harness::logged();
        assert!(
            log.contains("authmd::access"),
            "the log capture works: it holds access lines"
        );
        for (kind, token, _) in &cases {
            assert!(
                rows.iter().all(|r| !r.contains(token.as_str())),
                "{kind:?} reached the audit log"
            );
            assert!(!log.contains(token.as_str()), "{kind:?} reached the log");
        }
        let revoked = flows::audit_count(&app, "token.revoked").await;
        assert!(
            revoked >= cases.len(),
            "one audit row per revocation: {revoked}"
        );
    }
}

async fn credentials_die_with_what_they_came_from(backend: Backend) {
    let provider = TestProvider::start().await;
    let app = TestApp::builder(backend)
        .with_provider(&provider)
        // Unclaimed registrations live 200 s, less than their identity assertions (300 s).
        .with_config(|c| c.agent.claim_ttl_s = 200)
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    // An unclaimed registration expires: its refresh tokens stop rotating.
    let reg: Value = app
        .post_value(
            "/agent/auth",
            &json!({"type": "anonymous", "requested_credential_type": "identity_assertion"}),
        )
        .await;
    let grant: Value = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", reg["credential"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = grant["refresh_token"].as_str().unwrap().to_owned();
    let unused: Value = app
        .post_value(
            "/agent/auth",
            &json!({"type": "anonymous", "requested_credential_type": "identity_assertion"}),
        )
        .await;
    let unused = unused["credential"].as_str().unwrap().to_owned();
    assert_eq!(flows::introspect(&app, &rs, &unused).await["active"], true);
    app.clock.advance(201);
    assert_eq!(
        flows::introspect(&app, &rs, &unused).await["active"],
        false,
        "an identity assertion dies with its registration, before its own exp"
    );
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        400,
        "an expired registration's refresh token"
    );
    assert_eq!(
        flows::introspect(&app, &rs, &refresh).await["active"],
        false
    );

    // A provider's logout reaches tokens from ID-JAG exchanges at the token endpoint.
    let client = flows::client(
        &app,
        ClientSpec {
            grant_types: vec!["urn:ietf:params:oauth:grant-type:jwt-bearer"],
            redirect_uris: vec![],
            ..Default::default()
        },
    )
    .await;
    let now = app.now();
    let jag = provider.id_jag(
        &app.base,
        now,
        json!({"client_id": client.id, "sub": "leaver"}),
    );
    let (status, issued) = flows::token(
        &app,
        &client,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &jag),
        ],
    )
    .await;
    assert_eq!(status, 200, "{issued}");
    let exchanged = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        flows::introspect(&app, &rs, &exchanged).await["active"],
        true
    );
    let resp = app
        .client
        .post(app.url("/agent/auth/revoke"))
        .header("content-type", "application/logout+jwt")
        .body(provider.logout(&app.base, now, "leaver"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        flows::introspect(&app, &rs, &exchanged).await["active"],
        false
    );

    // Disabling a user revokes their apps' tokens, personal tokens and agents; no sign-in.
    let (_, user_id, pat) = person(&app, "leaving@example.com").await;
    let app_client = flows::confidential(&app).await;
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &app_client, &pkce, "leaving@example.com").await;
    let (_, t) = flows::exchange(&app, &app_client, &code, &pkce.verifier).await;
    let agent = flows::claimed_agent(&app, "leaving@example.com", app.mail.messages().len()).await;
    let live = [
        pat.clone(),
        t["access_token"].as_str().unwrap().to_owned(),
        t["refresh_token"].as_str().unwrap().to_owned(),
        agent["credential"].as_str().unwrap().to_owned(),
    ];
    for token in &live {
        assert_eq!(flows::introspect(&app, &rs, token).await["active"], true);
    }
    let now = app.now();
    let id = user_id.clone();
    app.state
        .db
        .run(move |conn| {
            authmd::domain::users::disable(
                conn,
                now,
                &authmd::domain::audit::AuditContext::cli(),
                &id,
            )
        })
        .await
        .unwrap();
    for token in &live {
        assert_eq!(flows::introspect(&app, &rs, token).await["active"], false);
    }
    let browser = flows::browser();
    let url = flows::authorize_url(&app, &app_client, &flows::pkce(), &[]);
    let html = browser
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = browser
        .post(app.url("/login"))
        .form(&[
            ("email", "leaving@example.com"),
            ("password", flows::PASSWORD),
            (
                "csrf_token",
                &flows::form_value(&html, "csrf_token").unwrap(),
            ),
            ("return_to", "/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a disabled user cannot sign in");

    // Deleting a client revokes what it was issued.
    let service = client_cc(&app).await;
    let (_, cc) = flows::token(&app, &service, &[("grant_type", "client_credentials")]).await;
    let cc = cc["access_token"].as_str().unwrap().to_owned();
    assert_eq!(flows::introspect(&app, &rs, &cc).await["active"], true);
    let (id, now) = (service.id.clone(), app.now());
    app.state
        .db
        .run(move |conn| authmd::domain::clients::delete(conn, now, &id))
        .await
        .unwrap();
    assert_eq!(flows::introspect(&app, &rs, &cc).await["active"], false);
}

async fn client_cc(app: &TestApp) -> TestClient {
    flows::client(
        app,
        ClientSpec {
            redirect_uris: vec![],
            grant_types: vec!["client_credentials"],
            ..Default::default()
        },
    )
    .await
}

async fn assertions_are_bounded(backend: Backend) {
    let provider = TestProvider::start().await;
    let app = TestApp::builder(backend)
        .with_provider(&provider)
        .start()
        .await;
    let now = app.now();
    // nbf in the future, a 100-year lifetime, the wrong typ: each refused.
    for (what, jag) in [
        ("nbf", provider.id_jag(&app.base, now, json!({"nbf": now + 3600}))),
        ("lifetime", provider.id_jag(&app.base, now, json!({"exp": now + 100 * 365 * 86_400}))),
        (
            "typ",
            provider.sign(
                "logout+jwt",
                &json!({"iss": provider.issuer, "sub": "s", "aud": app.base, "iat": now, "exp": now + 60, "jti": "t1", "email": "a@b.example", "email_verified": true}),
            ),
        ),
    ] {
        let resp = register_jag(&app, &jag).await;
        assert_eq!(resp.status(), 400, "{what}");
    }
    // A logout token must be typed as one.
    let untyped = provider.sign(
        "JWT",
        &json!({"iss": provider.issuer, "sub": "s", "aud": app.base, "iat": now, "exp": now + 60, "jti": "l1", "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
    );
    let resp = app
        .client
        .post(app.url("/agent/auth/revoke"))
        .header("content-type", "application/logout+jwt")
        .body(untyped)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // An ID-JAG made out to one of authmd's clients is not redeemable at /agent/auth...
    let client = flows::client(
        &app,
        ClientSpec {
            grant_types: vec!["urn:ietf:params:oauth:grant-type:jwt-bearer"],
            redirect_uris: vec![],
            ..Default::default()
        },
    )
    .await;
    let bound = provider.id_jag(
        &app.base,
        now,
        json!({"client_id": client.id, "scope": "api.read"}),
    );
    let resp = register_jag(&app, &bound).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    // ...while the provider's own name for the agent does not stop it, and scope narrows.
    let own = provider.id_jag(
        &app.base,
        now,
        json!({"client_id": "provider-agent-7", "scope": "api.read"}),
    );
    let resp = register_jag(&app, &own).await;
    assert_eq!(resp.status(), 200);
    let reg: Value = resp.json().await.unwrap();
    assert_eq!(reg["scopes"], json!(["api.read"]));
    let nothing = provider.id_jag(&app.base, now, json!({"scope": "admin.everything"}));
    let resp = register_jag(&app, &nothing).await;
    assert_eq!(resp.status(), 400);
    // The JWT-bearer grant needs a client registered for it.
    let plain = flows::confidential(&app).await;
    let jag = provider.id_jag(&app.base, now, json!({"client_id": plain.id}));
    let (status, body) = flows::token(
        &app,
        &plain,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &jag),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unauthorized_client");
    // RFC 9068: an agent grant's JWT access token names its client (the registration).
    let jwt_app = TestApp::builder(backend)
        .with_config(|c| c.tokens.access_token_format = authmd::config::AccessTokenFormat::Jwt)
        .start()
        .await;
    let reg: Value = jwt_app
        .post_value(
            "/agent/auth",
            &json!({"type": "anonymous", "requested_credential_type": "access_token"}),
        )
        .await;
    let jwt = reg["credential"].as_str().unwrap();
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["client_id"], reg["registration_id"], "{payload}");
}

async fn provider_keys_cannot_be_fetched_by_strangers(backend: Backend) {
    let provider = TestProvider::start().await;
    let app = TestApp::builder(backend)
        .with_provider(&provider)
        .start()
        .await;
    let fetches = || provider.fetches.load(std::sync::atomic::Ordering::SeqCst);
    let good = provider.id_jag(&app.base, app.now(), json!({}));
    assert_eq!(register_jag(&app, &good).await.status(), 200);
    let after_first = fetches();
    // Strangers send tokens with made-up kids: no fetch for jwks_min_refetch_s.
    for i in 0..20 {
        let jag = with_unknown_kid(&app, &provider, format!("unknown-{i}"));
        assert_eq!(register_jag(&app, &jag).await.status(), 400);
    }
    assert_eq!(
        fetches(),
        after_first,
        "unknown kids fetched nothing within the refetch interval"
    );
    // After the interval, one unknown kid fetches once; the next waits for the interval again.
    app.clock.advance(61);
    for i in 0..3 {
        let jag = with_unknown_kid(&app, &provider, format!("later-{i}"));
        assert_eq!(register_jag(&app, &jag).await.status(), 400);
    }
    assert_eq!(
        fetches(),
        after_first + 1,
        "one fetch after the interval, not one per unknown kid"
    );
    // A known kid is served from the cache.
    let known = provider.id_jag(&app.base, app.now(), json!({}));
    assert_eq!(register_jag(&app, &known).await.status(), 200);
    assert_eq!(fetches(), after_first + 1);
}

/// `POST /agent/auth` with an ID-JAG.
async fn register_jag(app: &TestApp, jag: &str) -> reqwest::Response {
    app.post_json(
        "/agent/auth",
        &json!({"type": "identity_assertion", "assertion_type": "urn:ietf:params:oauth:token-type:id-jag", "assertion": jag}),
    )
    .await
}

/// An ID-JAG from `provider`'s issuer with a `kid` it never published (and no valid signature).
fn with_unknown_kid(app: &TestApp, provider: &TestProvider, kid: String) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("oauth-id-jag+jwt".into());
    header.kid = Some(kid.clone());
    let now = app.now();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(
            json!({"iss": provider.issuer, "sub": "s", "aud": app.base, "iat": now, "exp": now + 60, "jti": kid}).to_string()
        ),
        URL_SAFE_NO_PAD.encode(b"sig")
    )
}

/// A request from `ip` through a trusted proxy on loopback.
fn from_ip(app: &TestApp, ip: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/agent/auth"))
        // The leftmost hop is whatever the client wrote: it must not matter.
        .header(
            "x-forwarded-for",
            format!("{}, {ip}", uuid::Uuid::new_v4().as_u128() % 250),
        )
        .json(&json!({"type": "anonymous"}))
}

async fn rate_limits_cannot_be_turned_against_others(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
            c.rate_limit.agent_auth_per_ip = 3;
            c.rate_limit.agent_auth_global = 5;
        })
        .start()
        .await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            from_ip(&app, "198.51.100.1")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[..3], [200, 200, 200]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    // Refused per IP did not spend the deployment's budget: another address still gets in.
    let other = from_ip(&app, "203.0.113.7").send().await.unwrap();
    assert_eq!(other.status(), 200);
    assert!(other.headers().contains_key("ratelimit-policy"));
    assert!(other.headers().contains_key("ratelimit"));
    let refused = from_ip(&app, "198.51.100.1").send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.headers().contains_key("ratelimit"));
}

async fn login_counts_failures_only(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.rate_limit.login_failures_per_account = 3;
            c.rate_limit.login_failures_per_ip = 100;
        })
        .start()
        .await;
    // Many people behind one address sign in at once: successes never count.
    for i in 0..12 {
        let email = format!("office{i}@example.com");
        flows::user(&app, &email).await;
        let resp = flows::login(&app, &flows::browser(), &email, flows::PASSWORD).await;
        assert_eq!(resp.status(), 303, "{email}");
    }
    // Failures for one account lock that account, from every address, with Retry-After.
    flows::user(&app, "target@example.com").await;
    for _ in 0..3 {
        let resp = flows::login(
            &app,
            &flows::browser(),
            "target@example.com",
            "wrong password",
        )
        .await;
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().contains_key("ratelimit-policy"));
    }
    let locked = flows::login(
        &app,
        &flows::browser(),
        "target@example.com",
        flows::PASSWORD,
    )
    .await;
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().contains_key("retry-after"));
    assert!(
        locked.headers().contains_key("ratelimit"),
        "the login form says its window"
    );
    assert!(
        locked.text().await.unwrap().contains("<html"),
        "an HTML page"
    );
    // Other accounts are unaffected.
    let resp = flows::login(
        &app,
        &flows::browser(),
        "office1@example.com",
        flows::PASSWORD,
    )
    .await;
    assert_eq!(resp.status(), 303);
    app.clock.advance(901);
    let resp = flows::login(
        &app,
        &flows::browser(),
        "target@example.com",
        flows::PASSWORD,
    )
    .await;
    assert_eq!(resp.status(), 303, "the window moved on");
}

async fn mail_and_client_authentication_are_limited(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.rate_limit.mail_per_recipient = 2;
            c.rate_limit.client_auth_failures = 3;
            c.rate_limit.claim_per_ip = 100;
        })
        .start()
        .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reg: Value = app
            .post_value("/agent/auth", &json!({"type": "anonymous"}))
            .await;
        let resp = app
            .post_json(
                "/agent/auth/claim",
                &json!({"claim_token": reg["claim_token"], "email": "victim@example.com"}),
            )
            .await;
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(
        app.mail.messages().len(),
        2,
        "no more mail reached the victim"
    );

    let client = client_cc(&app).await;
    for _ in 0..3 {
        let resp = app
            .client
            .post(app.url("/oauth2/token"))
            .basic_auth(&client.id, Some("wrong"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let (status, body) = flows::token(&app, &client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    // The revocation endpoint authenticates clients too: same window, no online guessing there.
    let resp = app
        .client
        .post(app.url("/oauth2/revoke"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("token", "at_whatever")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
}

async fn pages_do_not_remember_loopback_consent_or_leak_errors(backend: Backend) {
    let app = TestApp::start(backend).await;
    let native = flows::client(
        &app,
        ClientSpec {
            public: true,
            redirect_uris: vec!["http://127.0.0.1/callback"],
            grant_types: vec!["authorization_code", "refresh_token"],
            ..Default::default()
        },
    )
    .await;
    flows::user(&app, "native@example.com").await;
    let browser = flows::browser();
    let url = flows::authorize_url(&app, &native, &flows::pkce(), &[]);
    let next = flows::sign_in(&app, &browser, &url, "native@example.com").await;
    let location = flows::consent(&app, &browser, &next, "allow").await;
    assert!(location.contains("code="));
    // The same app again, on another port: consent is shown again (RFC 8252 §8.6).
    let again = TestClient {
        id: native.id.clone(),
        secret: None,
        redirect_uri: "http://127.0.0.1:45678/callback".into(),
    };
    let url = flows::authorize_url(&app, &again, &flows::pkce(), &[]);
    let page = browser.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200, "a consent page, not a redirect");
    assert!(page.text().await.unwrap().contains("value=\"allow\""));

    // return_to that is not a same-origin path: 400, including a control character.
    for bad in ["https://evil.example/", "//evil.example", "/account\u{7}x"] {
        let html = browser
            .get(app.url("/account"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = flows::form_value(&html, "csrf_token").unwrap_or_default();
        let resp = flows::browser()
            .post(app.url("/login"))
            .form(&[
                ("email", "native@example.com"),
                ("password", flows::PASSWORD),
                ("csrf_token", &csrf),
                ("return_to", bad),
            ])
            .send()
            .await
            .unwrap();
        assert!(
            resp.status() == 400 || resp.status() == 403,
            "{bad:?}: {}",
            resp.status()
        );
    }
    // A CSRF token from one browser does not work in another's session.
    let (alice, _, _) = person(&app, "csrf-a@example.com").await;
    let html = alice
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = flows::form_value(&html, "csrf_token").unwrap();
    let mallory = flows::browser();
    mallory.get(app.url("/account")).send().await.unwrap();
    let resp = mallory
        .post(app.url("/logout"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Every response says nosniff.
    for path in ["/healthz", "/account", "/nowhere", "/.well-known/jwks.json"] {
        let resp = app.get(path).await;
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
}

async fn bad_input_is_a_clear_4xx(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_admin_token("admin-0123456789abcdefghijklmnopqrstuv")
        .start()
        .await;
    let client = flows::confidential(&app).await;
    // NUL in a form field and in a JSON field, on both backends.
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("grant_type", "client_credentials"), ("scope", "api\0read")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let resp = register(
        &app,
        json!({"redirect_uris": ["https://a.example/cb"], "client_name": "nul\u{0}name"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    // A body over the limit at an OAuth endpoint: 413 with an RFC 6749 code.
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&pad={}",
            "a".repeat(70_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    // Addresses are one addr-spec: lists and doubled @ are 400, never a mail attempt.
    for email in [
        "two@@example.com",
        "a@b.example,evil@x.example",
        "Name <n@x.example>",
    ] {
        let resp = app
            .post_json(
                "/agent/auth",
                &json!({"type": "identity_assertion", "assertion_type": "verified_email", "assertion": email}),
            )
            .await;
        assert_eq!(resp.status(), 400, "{email}");
    }
    assert_eq!(app.mail.messages().len(), 0);
    // Anything under /admin/ without the token is 401.
    for path in ["/admin/", "/admin/clients", "/admin/nothing/here"] {
        assert_eq!(app.get(path).await.status(), 401, "{path}");
    }
}

async fn the_token_endpoint_checks_resource_for_every_grant(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.server.resources = vec![
                "https://api.example".to_owned(),
                "https://other.example".to_owned(),
            ];
        })
        .start()
        .await;
    let client = flows::confidential(&app).await;
    flows::user(&app, "res@example.com").await;
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "res@example.com").await;
    let exchange = |code: String, verifier: String, resource: &'static str| {
        let client = &client;
        let app = &app;
        async move {
            flows::token(
                app,
                client,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &client.redirect_uri),
                    ("code_verifier", &verifier),
                    ("resource", resource),
                ],
            )
            .await
        }
    };
    let (status, body) = exchange(code, pkce.verifier.clone(), "https://other.example").await;
    assert_eq!(
        (status.as_u16(), body["error"].clone()),
        (400, json!("invalid_target"))
    );
    let pkce = flows::pkce();
    flows::user(&app, "res2@example.com").await;
    let code = flows::authorization_code(&app, &client, &pkce, "res2@example.com").await;
    let (status, tokens) = exchange(code, pkce.verifier.clone(), "https://api.example").await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, body) = flows::token(
        &app,
        &client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("resource", "https://unknown.example"),
        ],
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"].clone()),
        (400, json!("invalid_target"))
    );
    let reg: Value = app
        .post_value(
            "/agent/auth",
            &json!({"type": "anonymous", "requested_credential_type": "identity_assertion"}),
        )
        .await;
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", reg["credential"].as_str().unwrap()),
            ("resource", "https://unknown.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_target"
    );
}

async fn refresh_grace_zero_is_single_use(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| c.tokens.refresh_grace_s = 0)
        .start()
        .await;
    let client = flows::confidential(&app).await;
    flows::user(&app, "grace@example.com").await;
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "grace@example.com").await;
    let (_, tokens) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let (first, _) = flows::token(&app, &client, &form).await;
    assert_eq!(first, 200);
    // Same second: with no grace window the reuse is a replay, and the family dies.
    let (second, body) = flows::token(&app, &client, &form).await;
    assert_eq!(
        (second.as_u16(), body["error"].clone()),
        (400, json!("invalid_grant"))
    );
}
