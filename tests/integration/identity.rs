//! auth.md v0.6 at `/agent/identity`, step by step as AUTH.md v0.6 tells an agent: discover,
//! each registration type, the exchange, the claim ceremony with polling, the `/claim` page,
//! step-up errors, provider events, re-initiating a claim, and claiming with an ID-JAG.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db_tests;
use crate::fakes::TestProvider;
use crate::flows::{self, browser, form_value, PASSWORD};
use crate::harness::{Backend, TestApp};

db_tests!(
    discover_register_anonymous_and_exchange_again_and_again,
    service_auth_ceremony_with_polling_and_the_claim_page,
    claiming_an_anonymous_registration_revokes_its_pre_claim_credentials,
    user_codes_expire_and_claims_are_reinitiated,
    id_jag_step_up_login_required_and_interaction_required,
    claim_an_anonymous_registration_with_an_id_jag,
    a_security_event_ends_v06_registrations,
    flows_switched_off_answer_their_codes,
    the_conformance_kit_passes_against_authmd,
    the_conformance_kit_fails_a_service_that_does_not_conform,
    an_agent_reading_only_auth_md_succeeds_on_both_paths,
    the_account_page_treats_both_generations_alike,
);

const CLAIM_GRANT: &str = "urn:workos:agent-auth:grant-type:claim";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

/// `POST /agent/identity`: status and body.
async fn identity(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let resp = app.post_json("/agent/identity", &body).await;
    let status = resp.status();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    (status, resp.json().await.unwrap())
}

/// `POST /agent/identity/claim`: status and body.
async fn claim(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let resp = app.post_json("/agent/identity/claim", &body).await;
    (resp.status(), resp.json().await.unwrap())
}

/// `POST /oauth2/token` with a form: status and body.
async fn token(app: &TestApp, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

async fn poll(app: &TestApp, claim_token: &str) -> (StatusCode, Value) {
    token(
        app,
        &[("grant_type", CLAIM_GRANT), ("claim_token", claim_token)],
    )
    .await
}

async fn exchange(app: &TestApp, assertion: &str) -> (StatusCode, Value) {
    token(app, &[("grant_type", JWT_BEARER), ("assertion", assertion)]).await
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("a string: {v}"))
}

/// The person's part: open `verification_uri` in `browser`, sign in as `email` (when not
/// already), land on `/claim`; returns the page's status and HTML.
async fn open_claim_page(
    app: &TestApp,
    browser: &reqwest::Client,
    verification_uri: &str,
    email: &str,
) -> (StatusCode, String) {
    let resp = browser.get(verification_uri).send().await.unwrap();
    let location = if resp.status() == StatusCode::SEE_OTHER {
        resp.headers()["location"].to_str().unwrap().to_owned()
    } else {
        assert_eq!(resp.status(), 200);
        let html = resp.text().await.unwrap();
        let csrf = form_value(&html, "csrf_token").expect("the login form");
        let return_to = form_value(&html, "return_to").unwrap();
        assert!(
            return_to.starts_with("/claim?claim_attempt_token="),
            "{return_to}"
        );
        let resp = browser
            .post(app.url("/login"))
            .form(&[
                ("email", email),
                ("password", PASSWORD),
                ("csrf_token", &csrf),
                ("return_to", &return_to),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "sign-in");
        resp.headers()["location"].to_str().unwrap().to_owned()
    };
    let page = browser.get(app.url(&location)).send().await.unwrap();
    let status = page.status();
    (status, page.text().await.unwrap())
}

/// Types `code` into the `/claim` form shown as `html`; the answer's status and HTML.
async fn type_code(
    app: &TestApp,
    browser: &reqwest::Client,
    html: &str,
    code: &str,
) -> (StatusCode, String) {
    let csrf = form_value(html, "csrf_token").expect("the code form");
    let attempt = form_value(html, "claim_attempt_token").unwrap();
    let resp = browser
        .post(app.url("/claim"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("claim_attempt_token", attempt.as_str()),
            ("user_code", code),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

async fn discover_register_anonymous_and_exchange_again_and_again(backend: Backend) {
    let app = TestApp::start(backend).await;
    // Step 1: discovery, both generations' names.
    let m = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    let block = &m["agent_auth"];
    assert_eq!(block["identity_endpoint"], app.url("/agent/identity"));
    assert_eq!(block["claim_endpoint"], app.url("/agent/identity/claim"));
    assert_eq!(block["register_uri"], app.url("/agent/auth"));
    let grants = m["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!(CLAIM_GRANT)) && grants.contains(&json!(JWT_BEARER)));

    // Step 3: anonymous.
    let (status, reg) = identity(&app, json!({"type": "anonymous"})).await;
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["registration_type"], "anonymous");
    assert!(s(&reg["registration_id"]).starts_with("reg_"));
    assert!(s(&reg["claim_token"]).starts_with("clm_"));
    assert_eq!(reg["claim_url"], app.url("/agent/identity/claim"));
    assert_eq!(reg["pre_claim_scopes"], json!(["api.read"]));
    assert_eq!(reg["post_claim_scopes"], json!(["api.read", "api.write"]));
    assert!(is_rfc3339(&reg["assertion_expires"]), "{reg}");
    assert!(is_rfc3339(&reg["claim_token_expires"]), "{reg}");
    assert!(
        reg.get("credential").is_none(),
        "no credential at registration"
    );

    // Step 5: the assertion is re-exchangeable until it expires; never a refresh token.
    let assertion = s(&reg["identity_assertion"]).to_owned();
    let rs = flows::resource_server(&app).await;
    for _ in 0..2 {
        let (status, tokens) = exchange(&app, &assertion).await;
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["scope"], "api.read");
        assert!(tokens.get("refresh_token").is_none(), "{tokens}");
        let info = flows::introspect(&app, &rs, s(&tokens["access_token"])).await;
        assert_eq!(info["active"], true);
    }
    // Revoked (RFC 7009), it stops.
    let resp = app
        .client
        .post(app.url("/oauth2/revoke"))
        .form(&[("token", assertion.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = exchange(&app, &assertion).await;
    assert_eq!((status.as_u16(), s(&body["error"])), (400, "invalid_grant"));

    // Errors are AUTH.md's shape here.
    let (status, body) = identity(&app, json!({"type": "carrier_pigeon"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_identity_type");
    assert!(body["error_description"].is_string() && body.get("message").is_none());
    let (status, body) = identity(&app, json!({})).await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (400, "invalid_request")
    );
}

/// A service_auth registration for `email`: its answer.
async fn service_auth(app: &TestApp, email: &str) -> Value {
    let (status, reg) = identity(app, json!({"type": "service_auth", "login_hint": email})).await;
    assert_eq!(status, 200, "{reg}");
    reg
}

async fn service_auth_ceremony_with_polling_and_the_claim_page(backend: Backend) {
    let app = TestApp::start(backend).await;
    let email = "sam@example.com";
    let user_id = flows::user(&app, email).await;
    let reg = service_auth(&app, email).await;
    assert_eq!(reg["registration_type"], "service_auth");
    assert!(reg.get("identity_assertion").is_none(), "{reg}");
    assert_eq!(reg["post_claim_scopes"], json!(["api.read", "api.write"]));
    let block = &reg["claim"];
    let code = s(&block["user_code"]).to_owned();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(block["expires_in"], 600);
    assert_eq!(block["interval"], 5);
    let uri = s(&block["verification_uri"]).to_owned();
    assert!(
        uri.starts_with(&app.url("/login?return_to=%2Fclaim%3Fclaim_attempt_token%3D")),
        "{uri}"
    );
    assert!(!uri.contains(&code), "the link never carries the code");
    // The person is mailed the link and the code too.
    let mail = app.mail.wait_for(1).await;
    assert!(
        mail[0].contains(&code) && mail[0].contains(email),
        "{}",
        mail[0]
    );
    let claim_token = s(&reg["claim_token"]).to_owned();

    // Polling: pending, then slow_down when faster than the interval, then pending again.
    let (status, body) = poll(&app, &claim_token).await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (400, "authorization_pending")
    );
    let (_, body) = poll(&app, &claim_token).await;
    assert_eq!(body["error"], "slow_down");
    app.clock.advance(10);
    let (_, body) = poll(&app, &claim_token).await;
    assert_eq!(body["error"], "authorization_pending", "after backing off");

    // Someone else signed in cannot complete it.
    flows::user(&app, "mallory@example.com").await;
    let (status, html) = open_claim_page(&app, &browser(), &uri, "mallory@example.com").await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("Wrong account") && !html.contains("name=\"user_code\""));

    // The person: sign in, see the form with the first-agent advisory, a wrong code, the code.
    let person = browser();
    let (status, html) = open_claim_page(&app, &person, &uri, email).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(email) && html.contains("data-advisory=\"first_time_account\""));
    assert!(
        !html.contains("first_time_provider"),
        "no provider involved"
    );
    let (status, again) = type_code(&app, &person, &html, wrong(&code)).await;
    assert_eq!(status, 400);
    assert!(again.contains("match. Check the digits"), "{again}");
    let (status, done) = type_code(&app, &person, &again, &code).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("All set"), "{done}");

    // The next poll hands over the access token and the identity assertion, once.
    app.clock.advance(15);
    let (status, tokens) = poll(&app, &claim_token).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "api.read api.write");
    assert!(tokens.get("refresh_token").is_none());
    assert!(is_rfc3339(&tokens["assertion_expires"]));
    let rs = flows::resource_server(&app).await;
    let info = flows::introspect(&app, &rs, s(&tokens["access_token"])).await;
    assert_eq!(info["active"], true);
    // Each agent is its own principal, owned by the person.
    assert!(s(&info["sub"]).starts_with("agt_"), "{info}");
    assert_eq!(info["owner_sub"], user_id.as_str());
    let (status, body) = poll(&app, &claim_token).await;
    assert_eq!((status.as_u16(), s(&body["error"])), (400, "expired_token"));
    let (status, _) = exchange(&app, s(&tokens["identity_assertion"])).await;
    assert_eq!(status, 200);
    // The claim is done: re-initiating it is refused.
    let (status, body) = claim(&app, json!({"claim_token": claim_token, "email": email})).await;
    assert_eq!(
        status.as_u16(),
        401,
        "the claim token was forgotten: {body}"
    );

    // service_auth needs an email-shaped login_hint.
    let (status, body) = identity(
        &app,
        json!({"type": "service_auth", "login_hint": "not an email"}),
    )
    .await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (400, "invalid_login_hint")
    );
}

async fn claiming_an_anonymous_registration_revokes_its_pre_claim_credentials(backend: Backend) {
    let app = TestApp::start(backend).await;
    let email = "ana@example.com";
    flows::user(&app, email).await;
    let (_, reg) = identity(&app, json!({"type": "anonymous"})).await;
    let v1 = s(&reg["identity_assertion"]).to_owned();
    let claim_token = s(&reg["claim_token"]).to_owned();
    let (_, pre) = exchange(&app, &v1).await;
    let pre_token = s(&pre["access_token"]).to_owned();

    let (status, started) = claim(&app, json!({"claim_token": claim_token, "email": email})).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "initiated");
    assert_eq!(started["registration_id"], reg["registration_id"]);
    assert!(s(&started["claim_attempt_id"]).starts_with("cat_"));
    assert!(is_rfc3339(&started["expires_at"]));
    let block = &started["claim_attempt"];
    // Until the person confirms, the pre-claim scopes stay (v0.2 fix).
    let (_, still) = exchange(&app, &v1).await;
    assert_eq!(still["scope"], "api.read");

    let person = browser();
    let (_, html) = open_claim_page(&app, &person, s(&block["verification_uri"]), email).await;
    let (status, _) = type_code(&app, &person, &html, s(&block["user_code"])).await;
    assert_eq!(status, 200);
    let (status, tokens) = poll(&app, &claim_token).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "api.read api.write");

    let rs = flows::resource_server(&app).await;
    let info = flows::introspect(&app, &rs, &pre_token).await;
    assert_eq!(info["active"], false, "pre-claim access tokens are revoked");
    let (status, body) = exchange(&app, &v1).await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (400, "invalid_grant"),
        "v1 is superseded"
    );
    let (status, v2) = exchange(&app, s(&tokens["identity_assertion"])).await;
    assert_eq!(status, 200, "{v2}");
    assert_eq!(v2["scope"], "api.read api.write");
}

async fn user_codes_expire_and_claims_are_reinitiated(backend: Backend) {
    let app = TestApp::start(backend).await;
    let email = "late@example.com";
    flows::user(&app, email).await;
    let reg = service_auth(&app, email).await;
    let claim_token = s(&reg["claim_token"]).to_owned();
    let first_uri = s(&reg["claim"]["verification_uri"]).to_owned();

    app.clock.advance(601);
    let (status, body) = poll(&app, &claim_token).await;
    assert_eq!((status.as_u16(), s(&body["error"])), (400, "expired_token"));
    let (status, html) = open_claim_page(&app, &browser(), &first_uri, email).await;
    assert_eq!(status, 410, "an expired code's page offers no form: {html}");

    // Another address than the one the registration names is refused.
    let (status, body) = claim(
        &app,
        json!({"claim_token": claim_token, "email": "else@example.com"}),
    )
    .await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (400, "invalid_request")
    );
    // The same address: a fresh code and link; the old link is superseded.
    let (status, fresh) = claim(&app, json!({"claim_token": claim_token, "email": email})).await;
    assert_eq!(status, 200, "{fresh}");
    let block = &fresh["claim_attempt"];
    assert_eq!(block["expires_in"], 600);
    app.clock.advance(10);
    let (_, body) = poll(&app, &claim_token).await;
    assert_eq!(
        body["error"], "authorization_pending",
        "the fresh code is open"
    );
    let person = browser();
    let (status, _) = open_claim_page(&app, &person, &first_uri, email).await;
    assert_eq!(status, 410, "the old link is superseded");
    let (status, html) = open_claim_page(&app, &person, s(&block["verification_uri"]), email).await;
    assert_eq!(status, 200);
    // Five wrong codes lock the attempt; the agent hears expired_token and asks again.
    let mut html = html;
    for _ in 0..4 {
        let (status, next) = type_code(&app, &person, &html, wrong(s(&block["user_code"]))).await;
        assert_eq!(status, 400);
        html = next;
    }
    let (status, locked) = type_code(&app, &person, &html, wrong(s(&block["user_code"]))).await;
    assert_eq!(status, 410, "{locked}");
    app.clock.advance(10);
    let (_, body) = poll(&app, &claim_token).await;
    assert_eq!(body["error"], "expired_token", "a locked attempt");

    // Unknown claim tokens, and the registration's own expiry.
    let (status, body) = claim(&app, json!({"claim_token": "clm_nope", "email": email})).await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (401, "invalid_claim_token")
    );
    app.clock.advance(86_400);
    let (status, body) = claim(&app, json!({"claim_token": claim_token, "email": email})).await;
    assert_eq!((status.as_u16(), s(&body["error"])), (410, "claim_expired"));
    let (_, body) = poll(&app, &claim_token).await;
    assert_eq!(body["error"], "expired_token");

    // A v0.1 registration is not claimed this way.
    let old = app
        .post_value("/agent/auth", &json!({"type": "anonymous"}))
        .await;
    let (status, body) = claim(
        &app,
        json!({"claim_token": old["claim_token"], "email": email}),
    )
    .await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (409, "claimed_or_in_flight")
    );
    // Nor is a v0.6 registration claimed through v0.1's emailed code.
    let (_, new) = identity(&app, json!({"type": "anonymous"})).await;
    let resp = app
        .post_json(
            "/agent/auth/claim",
            &json!({"claim_token": new["claim_token"], "email": email}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(s(&body["message"]).contains("/agent/identity/claim"));
}

fn id_jag_body(assertion: String) -> Value {
    json!({"type": "identity_assertion", "assertion_type": ID_JAG, "assertion": assertion})
}

async fn id_jag_step_up_login_required_and_interaction_required(backend: Backend) {
    let provider = TestProvider::start().await;
    let app = TestApp::builder(backend)
        .with_provider(&provider)
        .with_config(|c| c.server.resources = vec!["https://api.example.com/".to_owned()])
        .start()
        .await;
    let now = app.now();
    let iss = provider.issuer.clone();

    // login_required: auth_time missing, then too old; max_age in the body and the challenge.
    for auth_time in [Value::Null, json!(now - 3601)] {
        let jag = provider.id_jag(&app.base, now, json!({"auth_time": auth_time}));
        let resp = app.post_json("/agent/identity", &id_jag_body(jag)).await;
        assert_eq!(resp.status(), 401);
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("AgentAuth error=\"login_required\", max_age=\"3600\""),
            "{challenge}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "login_required");
        assert_eq!(body["max_age"], 3600);
    }

    // A new person (JIT), with aud = the protected resource: registered at once.
    let fresh = json!({"auth_time": now - 60, "sub": "new-person", "email": "newbie@example.com"});
    let jag = provider.id_jag("https://api.example.com/", now, fresh);
    let (status, reg) = identity(&app, id_jag_body(jag)).await;
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["registration_type"], "identity_assertion");
    assert_eq!(reg["scopes"], json!(["api.read", "api.write"]));
    assert!(reg.get("claim_token").is_none());
    let (status, tokens) = exchange(&app, s(&reg["identity_assertion"])).await;
    assert_eq!(status, 200, "{tokens}");
    // The same ID-JAG again is a replay.
    let jag = provider.id_jag(&app.base, now, json!({"auth_time": now, "jti": "once"}));
    let (status, _) = identity(&app, id_jag_body(jag.clone())).await;
    assert_eq!(status, 200);
    let (status, body) = identity(&app, id_jag_body(jag)).await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (400, "replay_detected")
    );

    // An existing account's email, never linked to this provider: the person confirms first.
    let email = "owner@example.com";
    flows::user(&app, email).await;
    let claims = json!({"auth_time": now, "sub": "linker", "email": email});
    let resp = app
        .post_json(
            "/agent/identity",
            &id_jag_body(provider.id_jag(&app.base, now, claims.clone())),
        )
        .await;
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("AgentAuth error=\"interaction_required\""),
        "{challenge}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "interaction_required");
    assert_eq!(body["registration_type"], "identity_assertion");
    assert!(body.get("identity_assertion").is_none());
    let claim_token = s(&body["claim_token"]).to_owned();
    let block = &body["claim"];
    let (_, pending) = poll(&app, &claim_token).await;
    assert_eq!(pending["error"], "authorization_pending");

    let person = browser();
    let (status, html) = open_claim_page(&app, &person, s(&block["verification_uri"]), email).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("data-advisory=\"first_time_provider\"") && html.contains(&iss));
    assert!(html.contains("data-advisory=\"first_time_account\""));
    let (status, _) = type_code(&app, &person, &html, s(&block["user_code"])).await;
    assert_eq!(status, 200);
    app.clock.advance(10);
    let (status, tokens) = poll(&app, &claim_token).await;
    assert_eq!(status, 200, "{tokens}");
    // Linked now: the next ID-JAG for (iss, sub) is accepted directly.
    let again = provider.id_jag(&app.base, now, claims);
    let (status, reg) = identity(&app, id_jag_body(again)).await;
    assert_eq!(status, 200, "{reg}");
    assert!(reg["identity_assertion"].is_string());

    // Not on the trust list; an aud that is neither the issuer nor a resource.
    let stranger = TestProvider::start().await;
    let jag = stranger.id_jag(&app.base, now, json!({"auth_time": now}));
    let (status, body) = identity(&app, id_jag_body(jag)).await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (400, "issuer_not_enabled")
    );
    let jag = provider.id_jag("https://elsewhere.example", now, json!({"auth_time": now}));
    let (status, body) = identity(&app, id_jag_body(jag)).await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (400, "invalid_audience")
    );
}

async fn claim_an_anonymous_registration_with_an_id_jag(backend: Backend) {
    let provider = TestProvider::start().await;
    let app = TestApp::builder(backend)
        .with_provider(&provider)
        .start()
        .await;
    let now = app.now();
    let (_, reg) = identity(&app, json!({"type": "anonymous"})).await;
    let v1 = s(&reg["identity_assertion"]).to_owned();
    let jag = provider.id_jag(
        &app.base,
        now,
        json!({"auth_time": now, "sub": "claimer", "email": "claimer@example.com"}),
    );
    let (status, claimed) = claim(
        &app,
        json!({"type": "identity_assertion", "claim_token": reg["claim_token"], "assertion": jag}),
    )
    .await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed["status"], "claimed");
    assert_eq!(claimed["scopes"], json!(["api.read", "api.write"]));
    let (status, tokens) = exchange(&app, s(&claimed["identity_assertion"])).await;
    assert_eq!(status, 200);
    assert_eq!(tokens["scope"], "api.read api.write");
    let (status, _) = exchange(&app, &v1).await;
    assert_eq!(status, 400, "the pre-claim assertion is superseded");
    // Claimed: the claim token is spent.
    let (status, body) = claim(
        &app,
        json!({"claim_token": reg["claim_token"], "email": "claimer@example.com"}),
    )
    .await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (401, "invalid_claim_token")
    );

    // An ID-JAG for an existing account's email asks the person first.
    flows::user(&app, "held@example.com").await;
    let (_, reg) = identity(&app, json!({"type": "anonymous"})).await;
    let jag = provider.id_jag(
        &app.base,
        now,
        json!({"auth_time": now, "sub": "held", "email": "held@example.com"}),
    );
    let (status, body) = claim(
        &app,
        json!({"type": "identity_assertion", "claim_token": reg["claim_token"], "assertion": jag}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "interaction_required");
    assert!(body["claim"]["user_code"].is_string());
}

async fn a_security_event_ends_v06_registrations(backend: Backend) {
    let provider = TestProvider::start().await;
    let app = TestApp::builder(backend)
        .with_provider(&provider)
        .start()
        .await;
    let now = app.now();
    let register = |sub: &str| {
        id_jag_body(provider.id_jag(
            &app.base,
            now,
            json!({"auth_time": now, "sub": sub, "email": format!("{sub}@example.com")}),
        ))
    };
    let (_, gone) = identity(&app, register("gone")).await;
    let (_, kept) = identity(&app, register("kept")).await;
    let (_, gone_tokens) = exchange(&app, s(&gone["identity_assertion"])).await;
    let set = provider.sign(
        "secevent+jwt",
        &json!({"iss": provider.issuer, "sub": "gone", "aud": app.base, "iat": now,
                "jti": "set-1", "events": {
                    "https://schemas.workos.com/events/agent/auth/identity/assertion/revoked": {}}}),
    );
    let send = |body: String| {
        app.client
            .post(app.url("/agent/event/notify"))
            .header("content-type", "application/secevent+jwt")
            .body(body)
            .send()
    };
    let resp = send(set.clone()).await.unwrap();
    assert_eq!(resp.status(), 202);
    // The same jti again is refused (RFC 8935 shape).
    let resp = send(set).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["err"], "invalid_request");

    let rs = flows::resource_server(&app).await;
    let info = flows::introspect(&app, &rs, s(&gone_tokens["access_token"])).await;
    assert_eq!(info["active"], false);
    let (status, body) = exchange(&app, s(&gone["identity_assertion"])).await;
    assert_eq!((status.as_u16(), s(&body["error"])), (400, "invalid_grant"));
    let (status, _) = exchange(&app, s(&kept["identity_assertion"])).await;
    assert_eq!(
        status, 200,
        "another identity of the same provider keeps working"
    );
}

async fn flows_switched_off_answer_their_codes(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.agent.anonymous_enabled = false;
            c.agent.service_auth_enabled = false;
            c.agent.claim_email_enabled = false;
        })
        .start()
        .await;
    let (status, body) = identity(&app, json!({"type": "anonymous"})).await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (400, "anonymous_not_enabled")
    );
    let (status, body) = identity(
        &app,
        json!({"type": "service_auth", "login_hint": "x@example.com"}),
    )
    .await;
    assert_eq!(
        (status.as_u16(), s(&body["error"])),
        (400, "service_auth_not_enabled")
    );
    let (status, body) = identity(&app, id_jag_body("e30.e30.e30".into())).await;
    assert_eq!(status, 400, "{body}");
    let m = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(!m["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(CLAIM_GRANT)));
    // The claim grant on a server where nothing can be claimed still answers in RFC shape.
    let (status, body) = poll(&app, "clm_nothing").await;
    assert_eq!((status.as_u16(), s(&body["error"])), (400, "expired_token"));

    // With mail off, a service_auth registration sends nothing.
    let quiet = TestApp::builder(backend)
        .with_config(|c| c.agent.claim_email_enabled = false)
        .start()
        .await;
    flows::user(&quiet, "quiet@example.com").await;
    service_auth(&quiet, "quiet@example.com").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(quiet.mail.messages().is_empty());
}

async fn the_conformance_kit_passes_against_authmd(backend: Backend) {
    let app = TestApp::start(backend).await;
    let report = authmd::cli::conformance::check(&app.base, "kit@example.com").await;
    let lines: Vec<String> = report.checks.iter().map(|c| c.line()).collect();
    eprintln!("{}", lines.join("\n"));
    assert!(report.failed().is_empty(), "{}", lines.join("\n"));
    assert!(report.conforms());
    let passed = report
        .checks
        .iter()
        .filter(|c| c.outcome == authmd::cli::conformance::Outcome::Pass)
        .count();
    assert!(passed >= 18, "{}", lines.join("\n"));

    // The binary prints the same walk and exits 0.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_authmd"))
        .args(["conformance", &app.base])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("PASS  [MUST]   3a") && stdout.contains("0 failed"),
        "{stdout}"
    );
}

/// A service that answers every request with the same protected-resource document: the kit
/// must say it does not conform.
async fn the_conformance_kit_fails_a_service_that_does_not_conform(_backend: Backend) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = json!({"resource": base, "authorization_servers": [base]}).to_string();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(resp.as_bytes()).await;
            });
        }
    });
    let report = authmd::cli::conformance::check(&base, "kit@example.com").await;
    assert!(!report.conforms());
    let failed: Vec<&str> = report.failed().iter().map(|c| c.id).collect();
    assert!(
        failed.contains(&"1b") && failed.contains(&"1c"),
        "{failed:?}"
    );
}

/// One ```http block of a document: method, URL, and body.
struct HttpBlock {
    method: String,
    url: String,
    body: String,
}

fn http_blocks(md: &str) -> Vec<HttpBlock> {
    md.split("```http\n")
        .skip(1)
        .map(|rest| {
            let block = rest.split("```").next().unwrap();
            let (head, body) = block.split_once("\n\n").unwrap_or((block, ""));
            let first = head.lines().next().unwrap();
            let (method, url) = first.split_once(' ').unwrap();
            HttpBlock {
                method: method.to_owned(),
                url: url.trim().to_owned(),
                body: body.trim().to_owned(),
            }
        })
        .collect()
}

/// An agent that knows nothing but the rendered `/auth.md`: it runs the document's own
/// requests, in both generations, filling in only what earlier answers gave it.
async fn an_agent_reading_only_auth_md_succeeds_on_both_paths(backend: Backend) {
    let app = TestApp::start(backend).await;
    let md = app.get("/auth.md").await.text().await.unwrap();
    let blocks = http_blocks(&md);
    assert!(blocks.len() >= 5, "{md}");
    for b in &blocks {
        assert!(
            b.url.starts_with(&app.base),
            "every request goes to this server: {}",
            b.url
        );
        assert_eq!(b.method, "POST");
    }
    let find = |pred: &dyn Fn(&HttpBlock) -> bool| {
        blocks
            .iter()
            .find(|b| pred(b))
            .unwrap_or_else(|| panic!("{md}"))
    };
    let send_json = |b: &HttpBlock, body: String| {
        app.client
            .post(&b.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let send_form = |b: &HttpBlock, body: String| {
        app.client
            .post(&b.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };

    // auth.md v0.6: register, poll the claim grant, exchange.
    let register = find(&|b| b.url.ends_with("/agent/identity") && b.body.contains("anonymous"));
    let reg: Value = send_json(register, register.body.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claim_token = s(&reg["claim_token"]);
    let start = find(&|b| b.url.ends_with("/agent/identity/claim"));
    let resp = send_json(start, start.body.replace("clm_…", claim_token))
        .await
        .unwrap();
    let started: Value = resp.json().await.unwrap();
    assert_eq!(started["status"], "initiated", "{started}");
    let poll_block = find(&|b| b.body.contains(CLAIM_GRANT));
    let resp = send_form(poll_block, poll_block.body.replace("<clm_…>", claim_token))
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "authorization_pending", "{body}");
    let exchange_block = find(&|b| b.body.contains("jwt-bearer&assertion=<identity_assertion>"));
    let tokens: Value = send_form(
        exchange_block,
        exchange_block
            .body
            .replace("<identity_assertion>", s(&reg["identity_assertion"])),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let rs = flows::resource_server(&app).await;
    let info = flows::introspect(&app, &rs, s(&tokens["access_token"])).await;
    assert_eq!(info["active"], true, "{tokens}");

    // auth.md v0.1: register for an API key.
    let v01 = find(&|b| b.url.ends_with("/agent/auth") && b.body.contains("anonymous"));
    let reg: Value = send_json(v01, v01.body.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let info = flows::introspect(&app, &rs, s(&reg["credential"])).await;
    assert_eq!(info["active"], true, "{reg}");

    // Every discovery URL the text names answers.
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource",
        "/.well-known/jwks.json",
        "/openapi.json",
    ] {
        let url = app.url(path);
        assert!(md.contains(&url), "{url} is in the text");
        assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
    }
}

/// One registration model: a person's v0.6 agents and v0.1 agent sit on the same account
/// page, and revoking one there leaves the others working (each agent its own principal).
async fn the_account_page_treats_both_generations_alike(backend: Backend) {
    const ADMIN: &str = "admin-0123456789abcdefghijklmnopqrstuvwxyz";
    let app = TestApp::builder(backend)
        .with_admin_token(ADMIN)
        .start()
        .await;
    let email = "both@example.com";
    flows::user(&app, email).await;
    let person = browser();
    let mut assertions = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let reg = service_auth(&app, email).await;
        let (_, html) =
            open_claim_page(&app, &person, s(&reg["claim"]["verification_uri"]), email).await;
        let (status, _) = type_code(&app, &person, &html, s(&reg["claim"]["user_code"])).await;
        assert_eq!(status, 200);
        app.clock.advance(10);
        let (status, tokens) = poll(&app, s(&reg["claim_token"])).await;
        assert_eq!(status, 200, "{tokens}");
        assertions.push(s(&tokens["identity_assertion"]).to_owned());
        ids.push(s(&reg["registration_id"]).to_owned());
    }
    app.mail.wait_for(2).await;
    let v01 = flows::claim_agent(&app, &browser(), email, 2).await;

    let html = person
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for id in &ids {
        assert!(html.contains(id.as_str()), "{id} on the account page");
    }
    assert!(html.contains(s(&v01["registration_id"])));
    let csrf = form_value(&html, "csrf_token").unwrap();
    let resp = person
        .post(app.url(&format!("/account/agents/{}/revoke", ids[0])))
        .form(&[("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let (status, _) = exchange(&app, &assertions[0]).await;
    assert_eq!(status, 400, "the revoked agent's assertion stops");
    let (status, _) = exchange(&app, &assertions[1]).await;
    assert_eq!(status, 200, "the person's other v0.6 agent keeps working");
    let rs = flows::resource_server(&app).await;
    let info = flows::introspect(&app, &rs, s(&v01["credential"])).await;
    assert_eq!(info["active"], true, "and so does the v0.1 agent");
    assert!(flows::audit_count(&app, "registration.revoked").await >= 1);
    // The operator sees both generations in one list, each saying which it is.
    let v06 = app
        .get_value_as(&format!("/admin/registrations/{}", ids[1]), ADMIN)
        .await;
    assert_eq!(
        (v06["protocol"].as_str(), v06["status"].as_str()),
        (Some("v0.6"), Some("claimed"))
    );
    assert_eq!(v06["registration_type"], "service_auth");
    let old = app
        .get_value_as(
            &format!("/admin/registrations/{}", s(&v01["registration_id"])),
            ADMIN,
        )
        .await;
    assert_eq!(old["protocol"], "v0.1");
}
