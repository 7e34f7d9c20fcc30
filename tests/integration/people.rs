//! People and operators: personal and workspace tokens, the account page, the admin API and
//! Idempotency-Key, through real HTTP.

use serde_json::{json, Value};

use crate::flows;
use crate::harness::{Backend, TestApp};

crate::db_tests!(
    personal_tokens_lifecycle,
    workspace_tokens_stay_in_their_workspace,
    last_used_is_written_at_most_once_a_minute,
    account_page_lists_and_revokes,
    admin_api_lists_filters_and_revokes,
    idempotent_writes_replay_and_refuse_reuse,
    signup_with_a_verified_email,
    admin_makes_accounts_and_their_first_token,
);

async fn create_token(app: &TestApp, bearer: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/tokens"))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn personal_tokens_lifecycle(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let pat = flows::person(&app, "pat@example.com").await;
    let (browser, user_id) = (&pat.browser, pat.user_id.clone());

    let unauthenticated = app.client.get(app.url("/api/tokens")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert!(unauthenticated.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("resource_metadata="));

    let (status, created) = pat
        .create_token(&app, json!({"name": "ci", "scopes": ["api.read"]}))
        .await;
    assert_eq!(status, 201);
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pat_"));
    assert_eq!(created["prefix"], json!(token[..12].to_owned()));
    assert_eq!(created["scopes"], json!(["api.read"]));

    let info = flows::introspect(&app, &rs, &token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], json!(user_id));
    assert_eq!(info["scope"], "api.read");

    // The token manages tokens too, but never grants more than it has.
    let wider = create_token(&app, &token, json!({"scopes": ["api.read", "api.write"]})).await;
    assert_eq!(wider.status(), 400);
    assert_eq!(
        wider.json::<Value>().await.unwrap()["error"],
        "invalid_scope"
    );
    let (_, listed) = flows::tokens_api(&app, &token, None).await;
    let item = &listed["tokens"][0];
    for field in ["id", "prefix", "scopes", "created_at", "last_used_at"] {
        assert!(item.get(field).is_some(), "{field}");
    }
    assert!(!listed.to_string().contains(&token), "never the plaintext");
    assert!(item.get("token").is_none() && item.get("token_hash").is_none());

    // Another user cannot delete it: 404, and it stays active.
    let (other, _) = flows::signed_in(&app, "other@example.com").await;
    let id = created["id"].as_str().unwrap();
    let resp = other
        .delete(app.url(&format!("/api/tokens/{id}")))
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(flows::introspect(&app, &rs, &token).await["active"], true);
    // A session write from another site's page (no Origin, or another origin) is refused.
    for origin in [None, Some("https://evil.example")] {
        let mut req = browser.delete(app.url(&format!("/api/tokens/{id}")));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "{origin:?}");
    }
    assert_eq!(flows::introspect(&app, &rs, &token).await["active"], true);
    let resp = browser
        .delete(app.url(&format!("/api/tokens/{id}")))
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(flows::introspect(&app, &rs, &token).await["active"], false);
    assert_eq!(
        app.client
            .get(app.url("/api/tokens"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

/// `POST`/`DELETE` on `/api/workspaces…` with a bearer token: status and body.
async fn workspaces_api(
    app: &TestApp,
    bearer: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (reqwest::StatusCode, Value) {
    let mut req = app
        .client
        .request(method, app.url(path))
        .bearer_auth(bearer);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

async fn workspace_tokens_stay_in_their_workspace(backend: Backend) {
    use reqwest::Method;
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let person = flows::person(&app, "ws@example.com").await;
    let (_, personal) = person.create_token(&app, json!({"name": "me"})).await;
    let pat = personal["token"].as_str().unwrap();
    // Workspaces are owned: one for A, one for B, both the person's.
    let (status, ws_a) = workspaces_api(
        &app,
        pat,
        Method::POST,
        "/api/workspaces",
        Some(json!({"name": "A"})),
    )
    .await;
    assert_eq!(status, 201, "{ws_a}");
    assert_eq!(ws_a["owner"], json!(person.user_id));
    let ws_a_id = ws_a["id"].as_str().unwrap().to_owned();
    let (_, ws_b) = workspaces_api(
        &app,
        pat,
        Method::POST,
        "/api/workspaces",
        Some(json!({"name": "B"})),
    )
    .await;
    let ws_b_id = ws_b["id"].as_str().unwrap().to_owned();
    let a = &person
        .token(&app, json!({"name": "a", "workspace": ws_a_id}))
        .await;
    assert_eq!(
        flows::introspect(&app, &rs, a).await["workspace"],
        json!(ws_a_id)
    );

    let cross = create_token(&app, a, json!({"workspace": ws_b_id})).await;
    assert_eq!(cross.status(), 403);
    let same = create_token(&app, a, json!({"name": "a2"})).await;
    assert_eq!(same.status(), 201);
    assert_eq!(
        same.json::<Value>().await.unwrap()["workspace"],
        json!(ws_a_id),
        "inherits its workspace"
    );
    let (_, listed) = flows::tokens_api(&app, a, None).await;
    assert_eq!(listed["count"], 2, "only A's tokens: {listed}");
    let id = personal["id"].as_str().unwrap();
    let resp = app
        .client
        .delete(app.url(&format!("/api/tokens/{id}")))
        .bearer_auth(a)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        404,
        "a workspace token cannot touch another workspace's token"
    );
    // A workspace token does not manage workspaces.
    let (status, _) = workspaces_api(
        &app,
        a,
        Method::POST,
        "/api/workspaces",
        Some(json!({"name": "C"})),
    )
    .await;
    assert_eq!(status, 403);

    // Someone else cannot mint for A by naming it, nor manage it, until the owner adds them.
    let other = flows::person(&app, "other-ws@example.com").await;
    let other_pat = &other.token(&app, json!({"name": "o"})).await;
    let denied = create_token(&app, other_pat, json!({"workspace": ws_a_id})).await;
    assert_eq!(denied.status(), 403);
    let (status, _) = workspaces_api(
        &app,
        other_pat,
        Method::DELETE,
        &format!("/api/workspaces/{ws_a_id}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "a stranger learns nothing about the workspace");
    let (status, member) = workspaces_api(
        &app,
        pat,
        Method::POST,
        &format!("/api/workspaces/{ws_a_id}/members"),
        Some(json!({"email": "other-ws@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{member}");
    assert_eq!(member["user_id"], json!(other.user_id));
    let resp = create_token(&app, other_pat, json!({"workspace": ws_a_id})).await;
    assert_eq!(resp.status(), 201);
    let other_ws_token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, theirs) = workspaces_api(&app, other_pat, Method::GET, "/api/workspaces", None).await;
    assert_eq!(theirs["count"], 1, "{theirs}");
    // A member who is not the owner cannot delete it.
    let (status, _) = workspaces_api(
        &app,
        other_pat,
        Method::DELETE,
        &format!("/api/workspaces/{ws_a_id}"),
        None,
    )
    .await;
    assert_eq!(status, 403);

    // Removing the member revokes their tokens for A; deleting A revokes everyone's.
    let (status, removed) = workspaces_api(
        &app,
        pat,
        Method::DELETE,
        &format!("/api/workspaces/{ws_a_id}/members/{}", other.user_id),
        None,
    )
    .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["tokens_revoked"], 1);
    assert_eq!(
        flows::introspect(&app, &rs, &other_ws_token).await["active"],
        false
    );
    assert_eq!(flows::introspect(&app, &rs, a).await["active"], true);
    let (status, deleted) = workspaces_api(
        &app,
        pat,
        Method::DELETE,
        &format!("/api/workspaces/{ws_a_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["tokens_revoked"], 2, "a and the a2 it made");
    assert_eq!(flows::introspect(&app, &rs, a).await["active"], false);
    assert_eq!(flows::introspect(&app, &rs, pat).await["active"], true);
    let (_, mine) = workspaces_api(&app, pat, Method::GET, "/api/workspaces", None).await;
    assert_eq!(mine["workspaces"][0]["id"], json!(ws_b_id));
    assert_eq!(mine["count"], 1);
}

async fn last_used_is_written_at_most_once_a_minute(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let person = flows::person(&app, "lu@example.com").await;
    let token = &person.token(&app, json!({})).await;
    let browser = person.browser;
    let last_used = |b: &reqwest::Client| {
        let b = b.clone();
        let url = app.url("/api/tokens");
        async move {
            let v: Value = b.get(url).send().await.unwrap().json().await.unwrap();
            v["tokens"][0]["last_used_at"].clone()
        }
    };
    assert!(last_used(&browser).await.is_null());
    let t0 = app.now();
    flows::introspect(&app, &rs, token).await;
    assert_eq!(last_used(&browser).await, json!(t0));
    app.clock.advance(30);
    flows::introspect(&app, &rs, token).await;
    assert_eq!(
        last_used(&browser).await,
        json!(t0),
        "no write within the minute"
    );
    app.clock.advance(31);
    flows::introspect(&app, &rs, token).await;
    assert_eq!(last_used(&browser).await, json!(t0 + 61));
}

async fn account_page_lists_and_revokes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rs = flows::resource_server(&app).await;
    let client = flows::confidential(&app).await;
    let (browser, _) = flows::signed_in(&app, "acct@example.com").await;

    // Two claimed agents, an app with a grant, a personal token.
    let reg = flows::claim_agent(&app, &browser, "acct@example.com", 0).await;
    let other_agent = flows::claim_agent(&app, &browser, "acct@example.com", 1).await;
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "acct@example.com").await;
    let (_, pair) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    browser
        .post(app.url("/api/tokens"))
        .header("origin", &app.base)
        .json(&json!({"name": "laptop"}))
        .send()
        .await
        .unwrap();

    let html = browser
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reg_id = reg["registration_id"].as_str().unwrap();
    assert!(html.contains(reg_id), "{html}");
    assert!(
        html.contains(&reg["credential"].as_str().unwrap()[..11]),
        "the key's prefix is shown"
    );
    assert!(html.contains("Test App") && html.contains("laptop"));
    assert!(html.contains("name=\"viewport\""), "readable on a phone");
    let csrf = flows::form_value(&html, "csrf_token").unwrap();

    let no_csrf = browser
        .post(app.url(&format!("/account/agents/{reg_id}/revoke")))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    let resp = browser
        .post(app.url(&format!("/account/agents/{reg_id}/revoke")))
        .form(&[("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        flows::introspect(&app, &rs, reg["credential"].as_str().unwrap()).await["active"],
        false
    );
    // Each agent is its own principal: the person's other agent keeps working.
    assert_eq!(
        flows::introspect(&app, &rs, other_agent["credential"].as_str().unwrap()).await["active"],
        true
    );

    let resp = browser
        .post(app.url(&format!("/account/apps/{}/revoke", client.id)))
        .form(&[("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        flows::introspect(&app, &rs, pair["access_token"].as_str().unwrap()).await["active"],
        false
    );

    // Someone else's agent is not yours to revoke.
    let (stranger, _) = flows::signed_in(&app, "stranger@example.com").await;
    let html = stranger
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf2 = flows::form_value(&html, "csrf_token").unwrap();
    let resp = stranger
        .post(app.url(&format!("/account/agents/{reg_id}/revoke")))
        .form(&[("csrf_token", &csrf2)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let resp = browser
        .post(app.url("/logout"))
        .form(&[("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let html = browser
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("name=\"password\""),
        "signed out: the login form again"
    );
}

async fn admin_api_lists_filters_and_revokes(backend: Backend) {
    let off = TestApp::start(backend).await;
    assert_eq!(
        off.client
            .get(off.url("/admin/clients"))
            .bearer_auth("x")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let app = TestApp::builder(backend)
        .with_admin_token("adm-secret-0123456789abcdefghijklmnop")
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    const ADMIN: &str = "adm-secret-0123456789abcdefghijklmnop";
    let admin = |path: &str| app.client.get(app.url(path)).bearer_auth(ADMIN).send();
    assert_eq!(
        app.client
            .get(app.url("/admin/clients"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let clients: Value = app.get_value_as("/admin/clients", ADMIN).await;
    assert_eq!(clients["clients"][0]["client_id"], json!(rs.id));
    assert_eq!(
        admin(&format!("/admin/clients/{}", rs.id))
            .await
            .unwrap()
            .status(),
        200
    );

    let (mut regs, mut request_ids) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let resp = app
            .post_json("/agent/auth", &json!({"type": "anonymous"}))
            .await;
        request_ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
        regs.push(resp.json::<Value>().await.unwrap());
    }
    let page: Value = app
        .get_value_as("/admin/registrations?limit=2", ADMIN)
        .await;
    assert_eq!(page["registrations"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    let rest: Value = app
        .get_value_as(&format!("/admin/registrations?limit=2&after={next}"), ADMIN)
        .await;
    assert_eq!(rest["registrations"].as_array().unwrap().len(), 1);
    assert!(rest["next"].is_null());
    let one: Value = app
        .get_value_as(
            &format!(
                "/admin/registrations/{}",
                regs[0]["registration_id"].as_str().unwrap()
            ),
            ADMIN,
        )
        .await;
    assert_eq!(one["api_keys"].as_array().unwrap().len(), 1);
    assert!(!one
        .to_string()
        .contains(regs[0]["credential"].as_str().unwrap()));

    // Audit: filter by event and registration, page with the cursor, bound by time.
    let events: Value = app
        .get_value_as("/admin/audit?event=registration.created&limit=2", ADMIN)
        .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 2);
    let before = events["next"].as_i64().unwrap();
    let older: Value = app
        .get_value_as(
            &format!("/admin/audit?event=registration.created&before_id={before}"),
            ADMIN,
        )
        .await;
    assert_eq!(older["events"].as_array().unwrap().len(), 1);
    let reg0 = regs[0]["registration_id"].as_str().unwrap();
    let by_reg: Value = app
        .get_value_as(&format!("/admin/audit?registration_id={reg0}"), ADMIN)
        .await;
    // Each row names the request that made it, as its answer's X-Request-Id did.
    let created = by_reg["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "registration.created")
        .unwrap();
    assert_eq!(created["request_id"], json!(request_ids[0]));
    assert!(by_reg["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["registration_id"] == json!(reg0)));
    let future: Value = app
        .get_value_as(&format!("/admin/audit?since={}", app.now() + 10), ADMIN)
        .await;
    assert_eq!(future["events"], json!([]));
    let users: Value = app.get_value_as("/admin/users", ADMIN).await;
    assert!(users["users"].is_array());

    let revoke = |body: Value| {
        app.client
            .post(app.url("/admin/revoke-agents"))
            .bearer_auth("adm-secret-0123456789abcdefghijklmnop")
            .json(&body)
            .send()
    };
    let resp: Value = revoke(json!({"registration_id": reg0}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["revoked"], 1);
    assert_eq!(
        flows::introspect(&app, &rs, regs[0]["credential"].as_str().unwrap()).await["active"],
        false
    );
    assert_eq!(
        flows::introspect(&app, &rs, regs[1]["credential"].as_str().unwrap()).await["active"],
        true
    );
    let resp: Value = revoke(json!({"all": true}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["revoked"], 2);
    assert_eq!(
        flows::introspect(&app, &rs, regs[2]["credential"].as_str().unwrap()).await["active"],
        false
    );
    assert_eq!(
        revoke(json!({"all": true, "user_id": "x"}))
            .await
            .unwrap()
            .status(),
        400
    );
}

async fn idempotent_writes_replay_and_refuse_reuse(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_admin_token("adm-0123456789abcdefghijklmnopqrstuvw")
        .start()
        .await;
    // No principal here: the key must be unguessable (22 characters or more).
    const KEY: &str = "key-1-0123456789abcdefghij";
    let send = |key: &str, body: Value| {
        app.client
            .post(app.url("/agent/auth"))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = send(KEY, json!({"type": "anonymous"})).await.unwrap();
    assert_eq!(first.status(), 200);
    let first = first.bytes().await.unwrap();
    let retry = send(KEY, json!({"type": "anonymous"})).await.unwrap();
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.bytes().await.unwrap(), first, "byte for byte");
    assert_eq!(
        flows::audit_count(&app, "registration.created").await,
        1,
        "nothing new was created"
    );

    let conflicting = send(
        KEY,
        json!({"type": "anonymous", "requested_credential_type": "access_token"}),
    )
    .await
    .unwrap();
    assert_eq!(conflicting.status(), 422);
    assert_eq!(
        conflicting.json::<Value>().await.unwrap()["error"],
        "idempotency_key_reused"
    );
    // The same key on another endpoint is another request.
    let other = app
        .client
        .post(app.url("/admin/revoke-agents"))
        .bearer_auth("adm-0123456789abcdefghijklmnopqrstuvw")
        .header("Idempotency-Key", KEY)
        .json(&json!({"all": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);

    // The stored answer held a secret; the database holds no readable copy of it.
    let credential = serde_json::from_slice::<Value>(&first).unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored: Vec<Option<Vec<u8>>> = app
        .state
        .db
        .run(|conn| {
            use diesel::prelude::*;
            Ok(authmd::db::schema::idempotency_keys::table
                .select(authmd::db::schema::idempotency_keys::sealed_body)
                .load(conn)?)
        })
        .await
        .unwrap();
    assert!(!stored.is_empty());
    for body in stored.into_iter().flatten() {
        assert!(!String::from_utf8_lossy(&body).contains(&credential));
    }

    // After 24 hours the key may be used again for a new request.
    app.clock.advance(24 * 3600 + 1);
    let fresh = send(
        KEY,
        json!({"type": "anonymous", "requested_credential_type": "access_token"}),
    )
    .await
    .unwrap();
    assert_eq!(fresh.status(), 200);
    let bad_key = send("", json!({"type": "anonymous"})).await.unwrap();
    assert_eq!(bad_key.status(), 400);
}

/// `accounts.signup = "email_verified"`: the account exists only once the emailed link is
/// followed (once); an address that has an account gets a note, and the page says the same.
async fn signup_with_a_verified_email(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| c.accounts.signup = authmd::config::Signup::EmailVerified)
        .start()
        .await;
    let submit = |browser: reqwest::Client, email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let html = browser
                .get(app.url("/signup"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let csrf = flows::form_value(&html, "csrf_token").unwrap();
            browser
                .post(app.url("/signup"))
                .form(&[
                    ("email", email),
                    ("password", password),
                    ("csrf_token", &csrf),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let browser = flows::browser();
    let short = submit(browser.clone(), "new@example.com", "short").await;
    assert_eq!(short.status(), 400);
    assert!(short.text().await.unwrap().contains("at least 8"));
    let page = submit(browser.clone(), "new@example.com", flows::PASSWORD).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Check your email"));
    assert_eq!(
        flows::login(&app, &flows::browser(), "new@example.com", flows::PASSWORD)
            .await
            .status(),
        401,
        "no account before the link is followed"
    );
    let mail = crate::fakes::decode_qp(&app.mail.wait_for(1).await[0]);
    let at = mail.find("/signup/verify?token=").expect("a link");
    let begin = mail[..at].rfind("http").unwrap();
    let end = at
        + mail[at..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
            .unwrap();
    let link = mail[begin..end].to_owned();
    let resp = browser.get(&link).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/account");
    let account = browser
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(account.contains("new@example.com") && account.contains("make-token"));
    let again = flows::browser().get(&link).send().await.unwrap();
    assert_eq!(again.status(), 400, "a link works once");
    assert_eq!(
        flows::login(&app, &flows::browser(), "new@example.com", flows::PASSWORD)
            .await
            .status(),
        303
    );
    // An address with an account: the same page, and a note instead of a link.
    let page = submit(flows::browser(), "new@example.com", "another password").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Check your email"));
    let note = crate::fakes::decode_qp(&app.mail.wait_for(2).await[1]);
    assert!(
        note.contains("already have one") && !note.contains("/signup/verify"),
        "{note}"
    );
    // Off by default.
    let off = TestApp::start(backend).await;
    assert_eq!(off.get("/signup").await.status(), 404);
}

/// `POST /admin/users` and `/admin/users/{id}/tokens`: an account and its first token, no
/// browser; with a password the person can also sign in.
async fn admin_makes_accounts_and_their_first_token(backend: Backend) {
    const ADMIN: &str = "admin-token-for-people-tests-0123456789";
    let app = TestApp::builder(backend)
        .with_admin_token(ADMIN)
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let post = |path: &str, body: Value| {
        app.client
            .post(app.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let resp = post(
        "/admin/users",
        json!({"email": "Ada@Example.com", "password": flows::PASSWORD}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);
    let user: Value = resp.json().await.unwrap();
    assert_eq!(user["email"], "ada@example.com");
    let taken = post("/admin/users", json!({"email": "ada@example.com"}))
        .await
        .unwrap();
    assert_eq!(taken.status(), 400);
    let bad = post("/admin/users", json!({"email": "not an address"}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let id = user["id"].as_str().unwrap();
    let resp = post(
        &format!("/admin/users/{id}/tokens"),
        json!({"scopes": ["api.read"], "expires_in": 600, "name": "first"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let created: Value = resp.json().await.unwrap();
    let token = created["token"].as_str().unwrap();
    let info = flows::introspect(&app, &rs, token).await;
    assert_eq!(
        (info["active"].as_bool(), info["sub"].as_str()),
        (Some(true), Some(id))
    );
    assert_eq!(info["scope"], "api.read");
    let wide = post(
        &format!("/admin/users/{id}/tokens"),
        json!({"scopes": ["root"]}),
    )
    .await
    .unwrap();
    assert_eq!(wide.status(), 400);
    assert_eq!(
        flows::login(&app, &flows::browser(), "ada@example.com", flows::PASSWORD)
            .await
            .status(),
        303
    );
    let resp = app
        .client
        .post(app.url(&format!("/admin/users/{id}/tokens")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the admin token is required");
    assert_eq!(flows::audit_count(&app, "user.created").await, 1);
}
