//! The OAuth 2.0 core through real HTTP: authorization code with PKCE, consent, refresh
//! rotation, client credentials, revocation, introspection, and their failure paths.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::flows::{self, ClientSpec};
use crate::harness::{Backend, TestApp};

crate::db_tests!(
    code_flow_end_to_end,
    consent_is_remembered,
    code_replay_revokes_what_the_first_exchange_issued,
    wrong_verifier_and_other_code_checks,
    pkce_is_required_and_plain_refused,
    bad_client_or_redirect_gets_a_page_not_a_redirect,
    loopback_redirect_matches_any_port,
    csrf_is_enforced_on_login_and_consent,
    deny_redirects_with_access_denied,
    wrong_password_and_unknown_email_look_the_same,
    refresh_rotation_grace_and_reuse,
    client_credentials_and_client_authentication,
    concurrent_client_credentials_are_each_stored_and_audited,
    introspection_requires_an_allowed_client,
    revocation_is_visible_to_introspection,
    concurrent_introspections_get_their_own_answers,
    expiry_follows_the_clock,
    resource_indicators,
    jwt_access_tokens,
    duplicate_parameters_are_refused,
    public_client_code_flow,
    json_bodies_at_token_and_revoke,
);

async fn code_flow_end_to_end(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let rs = flows::resource_server(&app).await;
    let user_id = flows::user(&app, "ann@example.com").await;
    let pkce = flows::pkce();

    let browser = flows::browser();
    let url = flows::authorize_url(&app, &client, &pkce, &[]);
    let next = flows::sign_in(&app, &browser, &url, "ann@example.com").await;
    let location = flows::consent(&app, &browser, &next, "allow").await;
    let q = flows::query_of(&location);
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], app.base, "RFC 9207 iss");
    assert!(q["code"].starts_with("ac_"));

    let (status, body) = flows::exchange(&app, &client, &q["code"], &pkce.verifier).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "api.read");
    assert_eq!(body["expires_in"], 3600);
    let access = body["access_token"].as_str().unwrap();
    assert!(access.starts_with("at_"));
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt_"));

    let info = flows::introspect(&app, &rs, access).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], Value::from(user_id));
    assert_eq!(info["client_id"], Value::from(client.id.clone()));
    assert_eq!(info["scope"], "api.read");
    assert_eq!(info["aud"], Value::from(app.base.clone()));
    assert_eq!(info["iss"], Value::from(app.base.clone()));
    assert_eq!(info["token_type"], "Bearer");
    assert!(info["exp"].as_i64().unwrap() > info["iat"].as_i64().unwrap());
    assert_eq!(flows::audit_count(&app, "token.issued").await, 1);
}

async fn consent_is_remembered(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    flows::user(&app, "bo@example.com").await;
    let browser = flows::browser();
    let pkce = flows::pkce();
    let url = flows::authorize_url(&app, &client, &pkce, &[]);
    let next = flows::sign_in(&app, &browser, &url, "bo@example.com").await;
    flows::consent(&app, &browser, &next, "allow").await;

    // Same client, same scopes: straight back with a code.
    let again = browser
        .get(flows::authorize_url(&app, &client, &flows::pkce(), &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::FOUND);
    let q = flows::query_of(again.headers()["location"].to_str().unwrap());
    assert!(q.contains_key("code"));
    // A wider request asks again.
    let wider = browser
        .get(
            flows::authorize_url(&app, &client, &flows::pkce(), &[])
                .replace("scope=api.read", "scope=api.read+api.write"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wider.status(), StatusCode::OK);
    assert!(wider.text().await.unwrap().contains("api.write"));
}

async fn code_replay_revokes_what_the_first_exchange_issued(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let rs = flows::resource_server(&app).await;
    flows::user(&app, "cy@example.com").await;
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "cy@example.com").await;
    let (status, first) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(status, 200);
    let (status, second) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(status, 400);
    assert_eq!(second["error"], "invalid_grant");
    for token in ["access_token", "refresh_token"] {
        let info = flows::introspect(&app, &rs, first[token].as_str().unwrap()).await;
        assert_eq!(
            info,
            serde_json::json!({"active": false}),
            "{token} from the first exchange is revoked"
        );
    }
    assert_eq!(flows::audit_count(&app, "code.reuse_detected").await, 1);
}

async fn wrong_verifier_and_other_code_checks(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let other = flows::confidential(&app).await;
    flows::user(&app, "di@example.com").await;
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "di@example.com").await;

    let (status, body) = flows::exchange(&app, &client, &code, &flows::pkce().verifier).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant")),
        "wrong verifier"
    );
    let (status, body) = flows::token(
        &app,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &client.redirect_uri),
        ],
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_request")),
        "missing verifier"
    );
    let (status, body) = flows::token(
        &app,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://app.example/other"),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant")),
        "redirect mismatch"
    );
    let other = flows::TestClient {
        redirect_uri: client.redirect_uri.clone(),
        ..other
    };
    let (status, body) = flows::exchange(&app, &other, &code, &pkce.verifier).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant")),
        "another client"
    );
    // Failed checks do not consume the code: the rightful exchange still works.
    let (status, _) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(status, 200);
    let (status, body) = flows::exchange(&app, &client, "ac_unknown", &pkce.verifier).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

async fn pkce_is_required_and_plain_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let pkce = flows::pkce();
    for (label, url) in [
        (
            "missing",
            flows::authorize_url(&app, &client, &pkce, &[])
                .replace(&format!("code_challenge={}", pkce.challenge), ""),
        ),
        (
            "plain",
            flows::authorize_url(&app, &client, &pkce, &[])
                .replace("code_challenge_method=S256", "code_challenge_method=plain"),
        ),
        (
            "no method",
            flows::authorize_url(&app, &client, &pkce, &[])
                .replace("code_challenge_method=S256", ""),
        ),
    ] {
        let resp = app.client.get(url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "{label}");
        let q = flows::query_of(resp.headers()["location"].to_str().unwrap());
        assert_eq!(q["error"], "invalid_request", "{label}");
        assert_eq!(q["state"], "st-123");
        assert_eq!(q["iss"], app.base);
    }
    let resp = app
        .client
        .get(
            flows::authorize_url(&app, &client, &pkce, &[])
                .replace("response_type=code", "response_type=token"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        flows::query_of(resp.headers()["location"].to_str().unwrap())["error"],
        "unsupported_response_type"
    );
}

async fn bad_client_or_redirect_gets_a_page_not_a_redirect(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let pkce = flows::pkce();
    let cases = [
        flows::authorize_url(&app, &client, &pkce, &[])
            .replace("app.example%2Fcallback", "evil.example%2Fcallback"),
        flows::authorize_url(&app, &client, &pkce, &[]).replace(&client.id, "cl_nobody"),
        flows::authorize_url(&app, &client, &pkce, &[]).replace("callback", "callback%2Fextra"),
    ];
    for url in cases {
        let resp = app.client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(resp.headers().get("location").is_none());
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
}

async fn loopback_redirect_matches_any_port(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::client(
        &app,
        ClientSpec {
            public: true,
            redirect_uris: vec!["http://127.0.0.1:1/callback"],
            grant_types: vec!["authorization_code", "refresh_token"],
            ..Default::default()
        },
    )
    .await;
    flows::user(&app, "lo@example.com").await;
    let client = flows::TestClient {
        redirect_uri: "http://127.0.0.1:49152/callback".into(),
        ..client
    };
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "lo@example.com").await;
    let (status, body) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(status, 200, "{body}");
}

async fn csrf_is_enforced_on_login_and_consent(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    flows::user(&app, "ed@example.com").await;
    let browser = flows::browser();
    let url = flows::authorize_url(&app, &client, &flows::pkce(), &[]);
    let login = browser.get(&url).send().await.unwrap();
    let set_cookie: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(set_cookie.iter().any(|c| c.starts_with("authmd_csrf=")
        && c.contains("HttpOnly")
        && c.contains("SameSite=Lax")));
    assert!(
        !set_cookie.iter().any(|c| c.contains("Secure")),
        "http issuer: no Secure flag"
    );
    let html = login.text().await.unwrap();
    let return_to = flows::form_value(&html, "return_to").unwrap();

    let no_token = browser
        .post(app.url("/login"))
        .form(&[
            ("email", "ed@example.com"),
            ("password", flows::PASSWORD),
            ("return_to", return_to.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let forged = browser
        .post(app.url("/login"))
        .form(&[
            ("email", "ed@example.com"),
            ("password", flows::PASSWORD),
            ("csrf_token", "forged"),
            ("return_to", return_to.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let next = flows::sign_in(&app, &browser, &url, "ed@example.com").await;
    let session_ok = browser.get(&next).send().await.unwrap();
    assert_eq!(session_ok.status(), 200);
    let mut form: Vec<(String, String)> = url::Url::parse(&next)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    form.push(("decision".into(), "allow".into()));
    let resp = browser
        .post(app.url("/oauth2/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "consent without CSRF token"
    );
    assert!(resp.headers().get("location").is_none());
}

async fn deny_redirects_with_access_denied(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    flows::user(&app, "fa@example.com").await;
    let browser = flows::browser();
    let url = flows::authorize_url(&app, &client, &flows::pkce(), &[]);
    let next = flows::sign_in(&app, &browser, &url, "fa@example.com").await;
    let location = flows::consent(&app, &browser, &next, "deny").await;
    let q = flows::query_of(&location);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-123");
    assert!(!q.contains_key("code"));
}

async fn wrong_password_and_unknown_email_look_the_same(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    flows::user(&app, "gi@example.com").await;
    let browser = flows::browser();
    let html = browser
        .get(flows::authorize_url(&app, &client, &flows::pkce(), &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = flows::form_value(&html, "csrf_token").unwrap();
    let mut bodies = Vec::new();
    for email in ["gi@example.com", "nobody@example.com"] {
        let resp = browser
            .post(app.url("/login"))
            .form(&[
                ("email", email),
                ("password", "wrong password"),
                ("csrf_token", &csrf),
                ("return_to", "/account"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        bodies.push(resp.text().await.unwrap().replace(email, "EMAIL"));
    }
    assert_eq!(bodies[0], bodies[1]);
}

async fn refresh_rotation_grace_and_reuse(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let rs = flows::resource_server(&app).await;
    flows::user(&app, "ha@example.com").await;
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "ha@example.com").await;
    let (_, first) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();

    let refresh = |rt: String| {
        let (app, client) = (&app, &client);
        async move {
            flows::token(
                app,
                client,
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await
        }
    };
    let (status, second) = refresh(rt1.clone()).await;
    assert_eq!(status, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2, "rotates");

    // Presented again inside the grace window: the same pair, not a new one.
    app.clock.advance(5);
    let (status, again) = refresh(rt1.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(again, second);
    assert_eq!(
        flows::introspect(&app, &rs, second["access_token"].as_str().unwrap()).await["active"],
        true
    );

    // After the window: reuse revokes the whole grant.
    app.clock.advance(6);
    let (status, body) = refresh(rt1.clone()).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(flows::introspect(&app, &rs, &rt2).await["active"], false);
    assert_eq!(
        flows::introspect(&app, &rs, second["access_token"].as_str().unwrap()).await["active"],
        false
    );
    let (status, _) = refresh(rt2).await;
    assert_eq!(status, 400, "the successor dies with the family");
    assert_eq!(flows::audit_count(&app, "refresh.reuse_detected").await, 1);
    assert_eq!(flows::audit_count(&app, "token.refreshed").await, 1);
}

async fn client_credentials_and_client_authentication(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let (status, body) = flows::token(&app, &client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["scope"], "api.read api.write");

    // client_secret_post works too.
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "api.read"),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["scope"], "api.read");

    for (id, secret) in [(client.id.as_str(), "cs_wrong"), ("cl_unknown", "cs_wrong")] {
        let resp = app
            .client
            .post(app.url("/oauth2/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().get("www-authenticate").is_some());
        assert_eq!(resp.headers()["cache-control"], "no-store");
        assert_eq!(
            resp.json::<Value>().await.unwrap()["error"],
            "invalid_client"
        );
    }
    let (status, body) = flows::token(
        &app,
        &client,
        &[("grant_type", "client_credentials"), ("scope", "admin")],
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, body) = flows::token(&app, &client, &[("grant_type", "password")]).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no client authentication at all");
    let public = flows::client(
        &app,
        ClientSpec {
            public: true,
            grant_types: vec!["authorization_code"],
            ..Default::default()
        },
    )
    .await;
    let (status, body) = flows::token(&app, &public, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
}

/// client_credentials inserts its token outside a transaction, batched with other requests'
/// (one statement per batch on PostgreSQL): under concurrency every answered token is its own,
/// live, and recorded by exactly one audit row; a wrong secret among them is refused and
/// counted, and stores nothing.
async fn concurrent_client_credentials_are_each_stored_and_audited(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let rs = flows::resource_server(&app).await;
    let asks = (0..60).map(|i| {
        let secret = if i % 10 == 9 {
            "cs_wrong".to_owned()
        } else {
            client.secret.clone().unwrap()
        };
        let request = app
            .client
            .post(app.url("/oauth2/token"))
            .basic_auth(&client.id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "api.read")])
            .send();
        async move {
            let resp = request.await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut tokens = std::collections::HashSet::new();
    for (i, (status, body)) in answers.iter().enumerate() {
        if i % 10 == 9 {
            assert_eq!(
                (*status, body["error"].as_str()),
                (401, Some("invalid_client"))
            );
        } else {
            assert_eq!(*status, 200, "{body}");
            assert!(tokens.insert(body["access_token"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(tokens.len(), 54);
    for token in &tokens {
        let resp = app
            .client
            .post(app.url("/oauth2/introspect"))
            .basic_auth(&rs.id, rs.secret.as_ref())
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["active"], true, "{body}");
        assert_eq!(body["client_id"], client.id.as_str());
        assert_eq!(body["scope"], "api.read");
    }
    assert_eq!(flows::audit_count(&app, "token.issued").await, 54);
}

async fn introspection_requires_an_allowed_client(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_admin_token("admin-secret-token-0123456789abcdef")
        .start()
        .await;
    let client = flows::confidential(&app).await;
    let (_, body) = flows::token(&app, &client, &[("grant_type", "client_credentials")]).await;
    let access = body["access_token"].as_str().unwrap();

    let anonymous = app
        .client
        .post(app.url("/oauth2/introspect"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let not_allowed = app
        .client
        .post(app.url("/oauth2/introspect"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(not_allowed.status(), 401);
    let admin = app
        .client
        .post(app.url("/oauth2/introspect"))
        .bearer_auth("admin-secret-token-0123456789abcdef")
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    assert_eq!(admin.json::<Value>().await.unwrap()["active"], true);
    let rs = flows::resource_server(&app).await;
    assert_eq!(
        flows::introspect(&app, &rs, "at_unknown").await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        flows::introspect(&app, &rs, "garbage").await,
        serde_json::json!({"active": false})
    );
}

async fn revocation_is_visible_to_introspection(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let other = flows::confidential(&app).await;
    let rs = flows::resource_server(&app).await;
    flows::user(&app, "ia@example.com").await;
    let revoke = |c: &flows::TestClient, token: &str| {
        app.client
            .post(app.url("/oauth2/revoke"))
            .basic_auth(&c.id, c.secret.as_ref())
            .form(&[("token", token.to_owned())])
            .send()
    };

    let (_, body) = flows::token(&app, &client, &[("grant_type", "client_credentials")]).await;
    let access = body["access_token"].as_str().unwrap();
    let refused = revoke(&other, access).await.unwrap();
    assert_eq!(refused.status(), 400, "another client's token");
    assert_eq!(flows::introspect(&app, &rs, access).await["active"], true);
    let unauthenticated = app
        .client
        .post(app.url("/oauth2/revoke"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        unauthenticated.status(),
        401,
        "a confidential client's token needs its authentication"
    );
    assert_eq!(revoke(&client, access).await.unwrap().status(), 200);
    assert_eq!(flows::introspect(&app, &rs, access).await["active"], false);
    assert_eq!(
        revoke(&client, "at_never_issued").await.unwrap().status(),
        200
    );

    // Revoking a refresh token revokes its grant: the access token too.
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "ia@example.com").await;
    let (_, pair) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(
        revoke(&client, pair["refresh_token"].as_str().unwrap())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        flows::introspect(&app, &rs, pair["access_token"].as_str().unwrap()).await["active"],
        false
    );
    assert_eq!(flows::audit_count(&app, "token.revoked").await, 2);
    let missing = app
        .client
        .post(app.url("/oauth2/revoke"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
}

/// On PostgreSQL concurrent introspections are read together (one query per table for a
/// batch): each still gets the answer for its own token and its own caller.
async fn concurrent_introspections_get_their_own_answers(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let rs = flows::resource_server(&app).await;
    let other_rs = flows::resource_server(&app).await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (_, body) = flows::token(&app, &client, &[("grant_type", "client_credentials")]).await;
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let revoked = app
        .client
        .post(app.url("/oauth2/revoke"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("token", tokens[1].as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);

    // (caller id, caller secret, token) -> expected (status, active)
    let wrong_secret = "not-the-secret".to_owned();
    let cases = [
        (
            &rs.id,
            rs.secret.as_ref().unwrap(),
            tokens[0].as_str(),
            (200, Some(true)),
        ),
        (
            &other_rs.id,
            other_rs.secret.as_ref().unwrap(),
            tokens[1].as_str(),
            (200, Some(false)),
        ),
        (
            &rs.id,
            rs.secret.as_ref().unwrap(),
            "at_unknown",
            (200, Some(false)),
        ),
        (&rs.id, &wrong_secret, tokens[0].as_str(), (401, None)),
        (
            &client.id,
            client.secret.as_ref().unwrap(),
            tokens[0].as_str(),
            (401, None),
        ),
    ];
    let asks = (0..80).map(|i| {
        let (id, secret, token, expected) = cases[i % cases.len()];
        let request = app
            .client
            .post(app.url("/oauth2/introspect"))
            .basic_auth(id, Some(secret))
            .form(&[("token", token)])
            .send();
        async move {
            let resp = request.await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            ((status, body["active"].as_bool()), expected, body)
        }
    });
    for (got, expected, body) in futures_util::future::join_all(asks).await {
        assert_eq!(got, expected, "{body}");
        if expected.1 == Some(true) {
            assert_eq!(body["client_id"], client.id.as_str());
        }
    }
}

async fn expiry_follows_the_clock(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let rs = flows::resource_server(&app).await;
    flows::user(&app, "ja@example.com").await;
    let (_, body) = flows::token(&app, &client, &[("grant_type", "client_credentials")]).await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    app.clock.advance(3599);
    assert_eq!(flows::introspect(&app, &rs, &access).await["active"], true);
    app.clock.advance(1);
    assert_eq!(flows::introspect(&app, &rs, &access).await["active"], false);

    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "ja@example.com").await;
    app.clock.advance(61);
    let (status, body) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant")),
        "expired code"
    );
}

async fn resource_indicators(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.server.resources = vec![
                "https://api.example.com".to_owned(),
                "https://mcp.example.com/mcp".to_owned(),
            ];
        })
        .start()
        .await;
    let client = flows::confidential(&app).await;
    let rs = flows::resource_server(&app).await;
    flows::user(&app, "ka@example.com").await;
    let (_, body) = flows::token(&app, &client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        flows::introspect(&app, &rs, body["access_token"].as_str().unwrap()).await["aud"],
        "https://api.example.com"
    );
    let (status, body) = flows::token(
        &app,
        &client,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://elsewhere.example"),
        ],
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    // A trailing slash added by the client names the same resource; `aud` is its configured form.
    let (status, body) = flows::token(
        &app,
        &client,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://mcp.example.com/mcp/"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        flows::introspect(&app, &rs, body["access_token"].as_str().unwrap()).await["aud"],
        "https://mcp.example.com/mcp"
    );

    let pkce = flows::pkce();
    let browser = flows::browser();
    let url = flows::authorize_url(
        &app,
        &client,
        &pkce,
        &[("resource", "https://mcp.example.com/mcp")],
    );
    let next = flows::sign_in(&app, &browser, &url, "ka@example.com").await;
    let location = flows::consent(&app, &browser, &next, "allow").await;
    let code = flows::query_of(&location)["code"].clone();
    let (_, pair) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(
        flows::introspect(&app, &rs, pair["access_token"].as_str().unwrap()).await["aud"],
        "https://mcp.example.com/mcp"
    );

    let bad = browser
        .get(flows::authorize_url(
            &app,
            &client,
            &pkce,
            &[("resource", "https://elsewhere.example")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        flows::query_of(bad.headers()["location"].to_str().unwrap())["error"],
        "invalid_target"
    );
}

async fn jwt_access_tokens(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| c.tokens.access_token_format = authmd::config::AccessTokenFormat::Jwt)
        .start()
        .await;
    let client = flows::confidential(&app).await;
    let rs = flows::resource_server(&app).await;
    let (_, body) = flows::token(&app, &client, &[("grant_type", "client_credentials")]).await;
    let jwt = body["access_token"].as_str().unwrap();

    // Verifiable with the published JWKS alone, as a resource server would.
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwks: jsonwebtoken::jwk::JwkSet = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[&app.base]);
    validation.set_issuer(&[&app.base]);
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["client_id"], Value::from(client.id.clone()));
    assert_eq!(claims["sub"], Value::from(client.id.clone()));

    assert_eq!(flows::introspect(&app, &rs, jwt).await["active"], true);
    let resp = app
        .client
        .post(app.url("/oauth2/revoke"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("token", jwt)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        flows::introspect(&app, &rs, jwt).await["active"],
        false,
        "revocation beats the signature"
    );
    // A token signed by someone else is not active.
    let forged = format!(
        "{}.{}.{}",
        jwt.split('.').next().unwrap(),
        jwt.split('.').nth(1).unwrap(),
        "AAAA"
    );
    assert_eq!(flows::introspect(&app, &rs, &forged).await["active"], false);
}

async fn duplicate_parameters_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let (status, body) = flows::token(
        &app,
        &client,
        &[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .json(&serde_json::json!({"grant_type": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "JSON is not a token request");
}

async fn public_client_code_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::client(
        &app,
        ClientSpec {
            public: true,
            redirect_uris: vec!["cursor://anysphere.cursor-retrieval/oauth/callback"],
            grant_types: vec!["authorization_code", "refresh_token"],
            ..Default::default()
        },
    )
    .await;
    flows::user(&app, "la@example.com").await;
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "la@example.com").await;
    let (status, pair) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(status, 200, "{pair}");
    let (status, _) = flows::token(
        &app,
        &client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", pair["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // A public client revokes its own tokens by naming itself.
    let resp = app
        .client
        .post(app.url("/oauth2/revoke"))
        .form(&[
            ("token", pair["access_token"].as_str().unwrap()),
            ("client_id", client.id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Agents send JSON: `/oauth2/token` and `/oauth2/revoke` take a JSON object with the same
/// members as the form (strings only), with the same checks.
async fn json_bodies_at_token_and_revoke(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = flows::confidential(&app).await;
    let rs = flows::resource_server(&app).await;
    let secret = client.secret.clone().unwrap();
    let post = |path: &'static str, body: Value| {
        app.client
            .post(app.url(path))
            .basic_auth(&client.id, Some(&secret))
            .json(&body)
            .send()
    };
    let resp = post("/oauth2/token", json!({"grant_type": "client_credentials"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let issued: Value = resp.json().await.unwrap();
    let token = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(flows::introspect(&app, &rs, &token).await["active"], true);

    // A member that is not a string, and a missing one, are clear 400s.
    let resp = post("/oauth2/token", json!({"grant_type": 5}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("grant_type"));
    let resp = post("/oauth2/token", json!({})).await.unwrap();
    assert_eq!(resp.status(), 400);

    let resp = post("/oauth2/revoke", json!({"token": token}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(flows::introspect(&app, &rs, &token).await["active"], false);
}
