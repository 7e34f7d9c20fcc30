//! The five deployment profiles in `examples/deployments/`, each started from its file and
//! walked the way its service's own auth document tells callers to: the agent's side and the
//! person's side, on both backends. Where a service's wire format is its own product API (an
//! `ok/data` envelope, `/workspaces/:id/tokens` paths), the walk uses the authmd call that
//! serves it (README, "Deployment profiles").

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::flows::{self, form_value};
use crate::harness::{Backend, TestApp};

crate::db_tests!(tokensand, vectoken, tinysend, memory, molecule);

const ADMIN: &str = "molecule-admin-token-0123456789abcdef";

async fn start(backend: Backend, file: &str) -> TestApp {
    TestApp::builder(backend)
        .with_config_file(&format!("examples/deployments/{file}"))
        .start()
        .await
}

/// A 6-digit code in a recorded message.
fn code_in(message: &str) -> String {
    let text = crate::fakes::decode_qp(message);
    let at = text
        .find("6-digit code")
        .expect("the message offers a code");
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text}"))
        .to_owned()
}

/// A JSON call with an optional bearer: status, headers and body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

/// The browser's sign-up on `/signup`; the answer (a redirect with a session when `open`).
async fn sign_up(app: &TestApp, browser: &reqwest::Client, email: &str) -> reqwest::Response {
    let page = browser.get(app.url("/signup")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csrf = form_value(&page.text().await.unwrap(), "csrf_token").unwrap();
    browser
        .post(app.url("/signup"))
        .form(&[
            ("email", email),
            ("password", flows::PASSWORD),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap()
}

/// The account page's "Make a token" form: the page's status and the token it shows once.
async fn make_token_on_page(
    app: &TestApp,
    browser: &reqwest::Client,
    fields: &[(&str, &str)],
) -> (StatusCode, Option<String>) {
    let html = browser
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_value(&html, "csrf_token").unwrap();
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("csrf_token", &csrf));
    let resp = browser
        .post(app.url("/account/tokens"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let html = resp.text().await.unwrap();
    let token = html.find("id=\"new-token-value\">").map(|at| {
        let rest = &html[at + "id=\"new-token-value\">".len()..];
        rest[..rest.find('<').unwrap()].to_owned()
    });
    (status, token)
}

/// tokens& (seed 000): no agent registration of any kind; a person signs up, signs in and makes
/// `dai_` workflow tokens with scopes, shown once, revocable; every limited endpoint says so.
async fn tokensand(backend: Backend) {
    let app = start(backend, "tokensand.toml").await;
    let rs = flows::resource_server(&app).await;

    // Agent side: "Do not assume tokens& supports these flows" — nothing advertised, all refused.
    let m = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(m.get("agent_auth").is_none(), "{m}");
    assert!(m.get("registration_endpoint").is_none());
    let scopes = m["scopes_supported"].as_array().unwrap();
    assert!(
        !scopes.contains(&json!("api.read")),
        "agent scopes only with agents: {scopes:?}"
    );
    for (path, body, code) in [
        (
            "/agent/identity",
            json!({"type": "anonymous"}),
            "anonymous_not_enabled",
        ),
        (
            "/agent/auth",
            json!({"type": "anonymous"}),
            "anonymous_not_enabled",
        ),
        (
            "/agent/auth",
            json!({"type": "identity_assertion", "assertion_type": "verified_email", "assertion": "a@example.com"}),
            "verified_email_not_enabled",
        ),
        (
            "/agent/identity",
            json!({"type": "service_auth", "login_hint": "a@example.com"}),
            "service_auth_not_enabled",
        ),
    ] {
        let resp = app.post_json(path, &body).await;
        assert_eq!(resp.status(), 400, "{path} {body}");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], code);
    }
    // "Ask the human to sign in before requesting workflow-token ... creation": the guide says where.
    let md = app.get("/auth.md").await.text().await.unwrap();
    for needle in [
        "/account",
        "/signup",
        "`dai_`",
        "Agent registration is not offered",
    ] {
        assert!(md.contains(needle), "{needle}: {md}");
    }
    assert!(!md.contains("\"type\": \"anonymous\""));

    // Person side: sign up, then make a token on the account page.
    let browser = flows::browser();
    let resp = sign_up(&app, &browser, "dev@tokensand.example").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/account");
    let (status, token) = make_token_on_page(
        &app,
        &browser,
        &[
            ("name", "cursor"),
            ("scopes", "project:read tools:read"),
            ("expires_in", ""),
        ],
    )
    .await;
    assert_eq!(status, 201);
    let token = token.expect("shown once on the page");
    assert!(token.starts_with("dai_"), "{token}");
    let info = flows::introspect(&app, &rs, &token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["scope"], "project:read tools:read");
    assert_eq!(info["token_type"], "personal_token");
    // Never shown again: the page lists the prefix only.
    let html = browser
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("dai_") && !html.contains(&token));
    // A scope the person asks for that the deployment has not: the form says so.
    let (status, none) =
        make_token_on_page(&app, &browser, &[("name", "x"), ("scopes", "admin")]).await;
    assert_eq!((status, none), (StatusCode::BAD_REQUEST, None));

    // The agent with the token: lists (metadata only, quota headers), never beyond itself.
    let (status, headers, listed) =
        call(&app, Method::GET, "/api/tokens", Some(&token), None).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("ratelimit-policy") && headers.contains_key("ratelimit"));
    assert!(!listed.to_string().contains(&token));
    let (status, _, body) = call(
        &app,
        Method::POST,
        "/api/tokens",
        Some(&token),
        Some(json!({"scopes": ["project:publish"]})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );

    // "signed-in users can revoke workflow tokens from the dashboard"
    let id = listed["tokens"][0]["id"].as_str().unwrap();
    let html = browser
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = browser
        .post(app.url(&format!("/account/tokens/{id}/revoke")))
        .form(&[("csrf_token", form_value(&html, "csrf_token").unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(flows::introspect(&app, &rs, &token).await["active"], false);

    // "honor ... 429, and quota metadata": /api/tokens runs out, and says when to come back.
    let mut refused = None;
    for _ in 0..40 {
        let (status, headers, body) =
            call(&app, Method::GET, "/api/tokens", Some("dai_x"), None).await;
        if status == 429 {
            refused = Some((headers, body));
            break;
        }
        assert_eq!(status, 401);
    }
    let (headers, body) = refused.expect("limited within tokens_per_ip = 30");
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(headers.contains_key("ratelimit"));
    assert_eq!(body["error"], "rate_limited");

    // Failed sign-ins are limited per account; the HTML 429 carries Retry-After too.
    let other = flows::browser();
    let mut last = None;
    for _ in 0..11 {
        last = Some(flows::login(&app, &other, "dev@tokensand.example", "wrong-password").await);
    }
    let last = last.unwrap();
    assert_eq!(last.status(), 429);
    assert!(last.headers().contains_key("retry-after"));
}

/// Vectoken (seed 001): anonymous registration for public.read at /agent/identity, an identity
/// assertion exchanged with a JSON JWT-bearer request, no claim needed, JSON revocation.
async fn vectoken(backend: Backend) {
    let app = start(backend, "vectoken.toml").await;
    let rs = flows::resource_server(&app).await;
    let base = app.base.clone();

    // Step 1: discover.
    assert_eq!(
        app.get("/.well-known/oauth-protected-resource")
            .await
            .status(),
        200
    );
    let m = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    let block = &m["agent_auth"];
    assert_eq!(block["identity_types_supported"], json!(["anonymous"]));
    assert_eq!(
        block["identity_endpoint"],
        json!(format!("{base}/agent/identity"))
    );
    assert_eq!(
        block["claim_endpoint"],
        json!(format!("{base}/agent/identity/claim"))
    );
    assert_eq!(
        block["revocation_uri"],
        json!(format!("{base}/oauth2/revoke"))
    );
    assert_eq!(m["scopes_supported"], json!(["public.read"]));

    // Step 3: register with the seed's exact body.
    let (status, _, reg) = call(
        &app,
        Method::POST,
        "/agent/identity",
        None,
        Some(json!({"type": "anonymous", "scopes": ["public.read"]})),
    )
    .await;
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["pre_claim_scopes"], json!(["public.read"]));
    let assertion = reg["identity_assertion"].as_str().unwrap();

    // Step 4: the JSON token request.
    let (status, headers, token) = call(
        &app,
        Method::POST,
        "/oauth2/token",
        None,
        Some(json!({
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion,
            "scope": "public.read",
        })),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(token["scope"], "public.read");
    assert!(token["token_type"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case("bearer"));
    let access = token["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        flows::introspect(&app, &rs, &access).await["scope"],
        "public.read"
    );

    // Errors the seed lists.
    for (body, status, code) in [
        (
            json!({"type": "verified_email"}),
            400,
            "unsupported_identity_type",
        ),
        (
            json!({"type": "anonymous", "scopes": ["models.invoke"]}),
            400,
            "invalid_scope",
        ),
        (json!({"scopes": ["public.read"]}), 400, "invalid_request"),
    ] {
        let (s, _, answer) = call(
            &app,
            Method::POST,
            "/agent/identity",
            None,
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (s.as_u16(), answer["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }

    // "Anonymous public-read access does not require ownership claim": unclaimed credentials
    // outlive the claim window (here an /agent/auth API key, two days on, after the sweep).
    let (_, _, v01) = call(
        &app,
        Method::POST,
        "/agent/auth",
        None,
        Some(json!({"type": "anonymous"})),
    )
    .await;
    assert_eq!(
        v01["credential_type"], "identity_assertion",
        "the deployment's default"
    );
    let (_, _, keyed) = call(
        &app,
        Method::POST,
        "/agent/auth",
        None,
        Some(json!({"type": "anonymous", "requested_credential_type": "api_key"})),
    )
    .await;
    let key = keyed["credential"].as_str().unwrap().to_owned();
    app.clock.advance(2 * 86_400);
    app.state.sweep().await.unwrap();
    assert_eq!(flows::introspect(&app, &rs, &key).await["active"], true);

    // Step 6: revoke with a JSON body; the token stops at once.
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/oauth2/revoke",
        None,
        Some(json!({"token": key})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(flows::introspect(&app, &rs, &key).await["active"], false);

    // No sign-up page in this profile.
    assert_eq!(app.get("/signup").await.status(), 404);
}

/// tinysend (seed 002): anonymous agents with an `sk_` key and a `ct_` claim token, claimed by
/// the emailed code (merge or link), and verified-email registration.
async fn tinysend(backend: Backend) {
    let app = start(backend, "tinysend.toml").await;
    let rs = flows::resource_server(&app).await;
    let person_id = flows::user(&app, "user@example.com").await;

    // anonymous registration
    let reg = app
        .post_value("/agent/auth", &json!({"type": "anonymous"}))
        .await;
    let key = reg["credential"].as_str().unwrap().to_owned();
    let claim_token = reg["claim_token"].as_str().unwrap().to_owned();
    assert!(
        key.starts_with("sk_") && claim_token.starts_with("ct_"),
        "{reg}"
    );
    assert_eq!(reg["scopes"], json!(["read"]));

    // claim step 1 — the code comes in the email itself.
    let resp = app
        .post_json(
            "/agent/auth/claim",
            &json!({"claim_token": claim_token, "email": "user@example.com", "link": false}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let otp = code_in(&app.mail.wait_for(1).await[0]);
    // claim step 2
    let resp = flows::complete_claim(&app, &claim_token, &otp).await;
    assert_eq!(resp.status(), 200);
    let done: Value = resp.json().await.unwrap();
    assert_eq!(done["scopes"], json!(["read", "write"]));
    assert_eq!(done["mode"], "merge");
    let info = flows::introspect(&app, &rs, &key).await;
    assert_eq!(
        (info["scope"].as_str(), info["sub"].as_str()),
        (Some("read write"), Some(person_id.as_str()))
    );

    // link: true keeps the agent's identity, owned by the person.
    let linked = app
        .post_value("/agent/auth", &json!({"type": "anonymous"}))
        .await;
    let ct = linked["claim_token"].as_str().unwrap();
    app.post_json(
        "/agent/auth/claim",
        &json!({"claim_token": ct, "email": "user@example.com", "link": true}),
    )
    .await;
    let otp = code_in(&app.mail.wait_for(2).await[1]);
    let done: Value = flows::complete_claim(&app, ct, &otp)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["mode"], "link");

    // identity assertion with a verified email: a code, then a fresh credential.
    let pending = app
        .post_value(
            "/agent/auth",
            &json!({"type": "identity_assertion", "assertions": [{"type": "verified_email", "email": "new@example.com"}]}),
        )
        .await;
    let ct = pending["claim_token"]
        .as_str()
        .expect("claim token")
        .to_owned();
    assert!(pending.get("credential").is_none(), "{pending}");
    let otp = code_in(&app.mail.wait_for(3).await[2]);
    let done: Value = flows::complete_claim(&app, &ct, &otp)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        done["credential"].as_str().unwrap().starts_with("sk_"),
        "{done}"
    );
    assert_eq!(done["scopes"], json!(["read", "write"]));

    // The person sees both agents on their account page.
    let browser = flows::browser();
    assert_eq!(
        flows::login(&app, &browser, "user@example.com", flows::PASSWORD)
            .await
            .status(),
        303
    );
    let html = browser
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for r in [&reg, &linked] {
        assert!(html.contains(r["registration_id"].as_str().unwrap()));
    }
}

/// The memory product (seed 003): PKCE code flow with single-use codes and strictly single-use
/// refresh tokens, narrow short-lived workspace tokens, Idempotency-Key on writes.
async fn memory(backend: Backend) {
    let app = start(backend, "memory.toml").await;
    let rs = flows::resource_server(&app).await;
    let m = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert!(m.get("agent_auth").is_none());

    // OAuth 2.0 with PKCE, a third-party client asking for memory.read only.
    flows::user(&app, "me@memory.example").await;
    let client = flows::confidential(&app).await;
    let pkce = flows::pkce();
    let browser = flows::browser();
    let url = flows::authorize_url(&app, &client, &pkce, &[("scope", "memory.read")]);
    let next = flows::sign_in(&app, &browser, &url, "me@memory.example").await;
    let location = flows::consent(&app, &browser, &next, "allow").await;
    let code = flows::query_of(&location).remove("code").unwrap();
    let (status, pair) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(status, 200, "{pair}");
    assert_eq!(pair["scope"], "memory.read");

    // "single-use refresh rotation": a second use, even at once, is refused and ends the family.
    let refresh = |rt: String| {
        let client = &client;
        let app = &app;
        async move {
            flows::token(
                app,
                client,
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await
        }
    };
    let (status, second) = refresh(pair["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 200, "{second}");
    let (status, _) = refresh(pair["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        status, 400,
        "refresh_grace_s = 0: no replay within the second"
    );
    let (status, _) = refresh(second["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 400, "the whole family is revoked");

    let (status, again) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(
        (status.as_u16(), again["error"].as_str()),
        (400, Some("invalid_grant")),
        "single-use codes (a second use also revokes what the first gave)"
    );

    // Workspace API tokens: narrow and short-lived; at most 90 days.
    let person = flows::person(&app, "owner@memory.example").await;
    let pat = person.token(&app, json!({"name": "me"})).await;
    let info = flows::introspect(&app, &rs, &pat).await;
    assert_eq!(
        info["exp"].as_i64().unwrap(),
        app.now() + 7_776_000,
        "defaults to the maximum"
    );
    let (status, _, ws) = call(
        &app,
        Method::POST,
        "/api/workspaces",
        Some(&pat),
        Some(json!({"name": "research"})),
    )
    .await;
    assert_eq!(status, 201);
    let ws_id = ws["id"].as_str().unwrap();
    let (status, _, too_long) = call(
        &app,
        Method::POST,
        "/api/tokens",
        Some(&pat),
        Some(json!({"workspace": ws_id, "expires_in": 7_776_001})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), too_long["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // "Pass an Idempotency-Key on write calls so retries do not create duplicates."
    let mint = || {
        app.client
            .post(app.url("/api/tokens"))
            .bearer_auth(&pat)
            .header("idempotency-key", "capture-token-0001-0002-0003")
            .json(&json!({"name": "capture", "workspace": ws_id, "scopes": ["memory.candidates"], "expires_in": 3600}))
            .send()
    };
    let first: Value = mint().await.unwrap().json().await.unwrap();
    let retry: Value = mint().await.unwrap().json().await.unwrap();
    assert_eq!(
        first, retry,
        "the retry answers the first token, not a second one"
    );
    let capture = first["token"].as_str().unwrap();
    let info = flows::introspect(&app, &rs, capture).await;
    assert_eq!(info["scope"], "memory.candidates");
    assert_eq!(info["workspace"], json!(ws_id));
    assert_eq!(info["exp"].as_i64().unwrap(), app.now() + 3600);
    let (_, _, listed) = call(&app, Method::GET, "/api/tokens", Some(&pat), None).await;
    assert_eq!(listed["count"], 2, "one capture token, not two: {listed}");
}

/// Molecule AI (seed 004): the first token without a browser, workspaces owned by a person,
/// tokens per workspace listed/created/revoked, all revoked when the workspace is deleted.
async fn molecule(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config_file("examples/deployments/molecule.toml")
        .with_admin_token(ADMIN)
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let admin = |method: Method, path: &str, body: Option<Value>| {
        let req = app.client.request(method, app.url(path)).bearer_auth(ADMIN);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        async move {
            let resp = req.send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    };

    // Bootstrap: an account and its first token, no browser.
    let (status, user) = admin(
        Method::POST,
        "/admin/users",
        Some(json!({"email": "ops@molecule.example"})),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let user_id = user["id"].as_str().unwrap();
    let (status, first) = admin(
        Method::POST,
        &format!("/admin/users/{user_id}/tokens"),
        Some(json!({"name": "bootstrap"})),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let boot = first["token"].as_str().unwrap().to_owned();
    let (status, _) = admin(
        Method::POST,
        "/admin/users/usr_nobody/tokens",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404);
    let resp = app
        .client
        .post(app.url("/admin/users"))
        .json(&json!({"email": "x@y.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the admin API needs its token");

    // "Create workspace", then its tokens (the seed's /workspaces/:id/tokens is /api/tokens
    // with "workspace": id).
    let (status, _, ws) = call(
        &app,
        Method::POST,
        "/api/workspaces",
        Some(&boot),
        Some(json!({"name": "My Agent"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(ws["owner"], json!(user_id));
    let ws_id = ws["id"].as_str().unwrap().to_owned();
    let (status, _, created) = call(
        &app,
        Method::POST,
        "/api/tokens",
        Some(&boot),
        Some(json!({"workspace": ws_id})),
    )
    .await;
    assert_eq!(status, 201);
    let ws_token = created["token"].as_str().unwrap().to_owned();
    // Entropy: 256 bits behind the prefix; only the hash is stored.
    assert!(ws_token.len() >= "pat_".len() + 43, "{ws_token}");
    assert_eq!(
        created.get("expires_at"),
        Some(&Value::Null),
        "permanent until revoked"
    );

    // Rotation: make a second, use it, see last_used_at, revoke the first.
    let (_, _, second) = call(
        &app,
        Method::POST,
        "/api/tokens",
        Some(&boot),
        Some(json!({"name": "rotated", "workspace": ws_id})),
    )
    .await;
    let second_token = second["token"].as_str().unwrap().to_owned();
    let (status, _, listed) =
        call(&app, Method::GET, "/api/tokens", Some(&second_token), None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["count"], 2, "only the workspace's tokens: {listed}");
    let row = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == second["id"])
        .unwrap();
    assert!(row["last_used_at"].is_i64(), "{row}");
    let (status, _, gone) = call(
        &app,
        Method::DELETE,
        &format!("/api/tokens/{}", created["id"].as_str().unwrap()),
        Some(&second_token),
        None,
    )
    .await;
    assert_eq!(
        (status.as_u16(), gone["status"].as_str()),
        (200, Some("revoked"))
    );
    assert_eq!(
        flows::introspect(&app, &rs, &ws_token).await["active"],
        false
    );

    // "a token from workspace A cannot access workspace B": another person's workspace.
    let (_, other) = admin(
        Method::POST,
        "/admin/users",
        Some(json!({"email": "dev@molecule.example"})),
    )
    .await;
    let (_, other_first) = admin(
        Method::POST,
        &format!("/admin/users/{}/tokens", other["id"].as_str().unwrap()),
        Some(json!({})),
    )
    .await;
    let other_pat = other_first["token"].as_str().unwrap();
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/api/tokens",
        Some(other_pat),
        Some(json!({"workspace": ws_id})),
    )
    .await;
    assert_eq!(status, 403, "naming a workspace is not membership");

    // "All tokens revoked when workspace is deleted"
    let (status, _, deleted) = call(
        &app,
        Method::DELETE,
        &format!("/api/workspaces/{ws_id}"),
        Some(&boot),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(deleted["tokens_revoked"], 1);
    assert_eq!(
        flows::introspect(&app, &rs, &second_token).await["active"],
        false
    );
    assert_eq!(flows::introspect(&app, &rs, &boot).await["active"], true);
}
