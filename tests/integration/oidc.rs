//! OpenID Connect: an outside relying party (the `openidconnect` crate) discovers authmd,
//! runs the code flow and validates the ID token and userinfo; then `prompt`, `max_age`,
//! the ES256 option and the step-up answers, over raw HTTP.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::flows::{self, TestClient};
use crate::harness::{Backend, TestApp};

crate::db_tests!(
    an_openid_relying_party_validates_id_token_and_userinfo,
    id_tokens_carry_nonce_auth_time_and_es256_on_request,
    prompt_and_max_age_follow_openid_connect,
    userinfo_and_discovery_answer_as_openid_connect_says,
    openid_connect_can_be_turned_off,
);

const REDIRECT: &str = "https://rp.example/callback";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The claims of a JWT, unverified (the relying-party test verifies signatures).
fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header_of(jwt: &str) -> Value {
    let header = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

async fn rp_client(app: &TestApp) -> TestClient {
    flows::client(
        app,
        flows::ClientSpec {
            redirect_uris: vec![REDIRECT],
            ..Default::default()
        },
    )
    .await
}

async fn an_openid_relying_party_validates_id_token_and_userinfo(backend: Backend) {
    let app = TestApp::start(backend).await;
    let registered = rp_client(&app).await;
    flows::user(&app, "rp@example.com").await;
    let http = http();
    let meta =
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http)
            .await
            .expect("authmd's OpenID configuration is accepted");
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(registered.id.clone()),
        Some(ClientSecret::new(registered.secret.clone().unwrap())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("api.read".into()))
        .set_pkce_challenge(challenge)
        .url();

    let browser = flows::browser();
    let consent = flows::sign_in(&app, &browser, url.as_str(), "rp@example.com").await;
    let location = flows::consent(&app, &browser, &consent, "allow").await;
    let query = flows::query_of(&location);
    assert_eq!(&query["state"], state.secret());

    let tokens = client
        .exchange_code(AuthorizationCode::new(query["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token response with an id_token");
    let id_token = tokens.id_token().expect("an id_token for scope openid");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("the ID token verifies against authmd's JWKS");
    assert_eq!(claims.email().map(|e| e.as_str()), Some("rp@example.com"));
    assert_eq!(claims.email_verified(), Some(false));
    assert!(claims.auth_time().is_some());
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    assert_eq!(
        id_token.signing_alg().unwrap(),
        &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
    );

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo answers");
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(info.email().map(|e| e.as_str()), Some("rp@example.com"));
}

/// Drives the browser part for `client` with `extra` parameters; returns the token answer.
async fn code_flow(
    app: &TestApp,
    client: &TestClient,
    email: &str,
    scope: &str,
    extra: &[(&str, &str)],
) -> Value {
    let pkce = flows::pkce();
    let mut params = vec![("scope", scope)];
    params.extend_from_slice(extra);
    let url = flows::authorize_url(app, client, &pkce, &params).replace("scope=api.read&", "");
    let browser = flows::browser();
    let consent = flows::sign_in(app, &browser, &url, email).await;
    let location = flows::consent(app, &browser, &consent, "allow").await;
    let code = flows::query_of(&location).remove("code").unwrap();
    let (status, body) = flows::exchange(app, client, &code, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn id_tokens_carry_nonce_auth_time_and_es256_on_request(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = rp_client(&app).await;
    let user_id = flows::user(&app, "claims@example.com").await;
    let body = code_flow(
        &app,
        &client,
        "claims@example.com",
        "openid",
        &[("nonce", "n-0S6")],
    )
    .await;
    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(header_of(id_token)["alg"], "RS256");
    let c = claims_of(id_token);
    assert_eq!(c["iss"], app.base.as_str());
    assert_eq!(c["sub"], user_id.as_str());
    assert_eq!(c["aud"], client.id.as_str());
    assert_eq!(c["nonce"], "n-0S6");
    let auth_time = c["auth_time"].as_i64().unwrap();
    assert!(auth_time <= app.now() && auth_time > app.now() - 60, "{c}");
    assert!(
        c.get("email").is_none(),
        "no email without scope email: {c}"
    );
    assert_eq!(
        c["at_hash"],
        authmd::domain::oidc::at_hash(body["access_token"].as_str().unwrap()).as_str()
    );
    // Without openid: no ID token at all.
    let plain = code_flow(&app, &client, "claims@example.com", "api.read", &[]).await;
    assert!(plain.get("id_token").is_none(), "{plain}");

    // A client registered for ES256 gets ES256, signed by a key in the JWKS.
    let registered = app
        .post_value(
            "/oauth2/register",
            &json!({
                "client_name": "ES256 RP",
                "redirect_uris": [REDIRECT],
                "id_token_signed_response_alg": "ES256",
            }),
        )
        .await;
    assert_eq!(
        registered["id_token_signed_response_alg"], "ES256",
        "{registered}"
    );
    let es = TestClient {
        id: registered["client_id"].as_str().unwrap().to_owned(),
        secret: registered["client_secret"].as_str().map(str::to_owned),
        redirect_uri: REDIRECT.to_owned(),
    };
    let body = code_flow(&app, &es, "claims@example.com", "openid email", &[]).await;
    let id_token = body["id_token"].as_str().unwrap();
    let header = header_of(id_token);
    assert_eq!(header["alg"], "ES256");
    let jwks = app.get_json("/.well-known/jwks.json").await;
    let kids: Vec<(&str, &str)> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kid"].as_str().unwrap(), k["alg"].as_str().unwrap()))
        .collect();
    assert!(
        kids.contains(&(header["kid"].as_str().unwrap(), "ES256")),
        "{jwks}"
    );
    assert!(kids.iter().any(|(_, alg)| *alg == "RS256"), "{jwks}");
    assert_eq!(claims_of(id_token)["email"], "claims@example.com");
    // Anything else is refused at registration.
    let resp = app
        .post_json(
            "/oauth2/register",
            &json!({"client_name": "x", "redirect_uris": [REDIRECT], "id_token_signed_response_alg": "none"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

/// The next location of an authorization request in `browser`, and the page if there is one.
async fn step(browser: &reqwest::Client, url: &str) -> (StatusCode, Option<String>, String) {
    let resp = browser.get(url).send().await.unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, location, resp.text().await.unwrap())
}

async fn prompt_and_max_age_follow_openid_connect(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = rp_client(&app).await;
    flows::user(&app, "prompt@example.com").await;
    let pkce = flows::pkce();
    let url = |extra: &[(&str, &str)]| flows::authorize_url(&app, &client, &pkce, extra);
    let browser = flows::browser();

    // Nobody signed in: prompt=none answers login_required at the client.
    let (status, location, _) = step(&browser, &url(&[("prompt", "none")])).await;
    assert_eq!(status, StatusCode::FOUND);
    let q = flows::query_of(&location.unwrap());
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "st-123");

    // Signed in, never approved: consent_required.
    let consent = flows::sign_in(&app, &browser, &url(&[]), "prompt@example.com").await;
    let (_, location, _) = step(&browser, &url(&[("prompt", "none")])).await;
    assert_eq!(
        flows::query_of(&location.unwrap())["error"],
        "consent_required"
    );

    // Approved once (an https redirect, so it is remembered): prompt=none gets a code.
    flows::consent(&app, &browser, &consent, "allow").await;
    let (_, location, _) = step(&browser, &url(&[("prompt", "none")])).await;
    assert!(flows::query_of(&location.unwrap()).contains_key("code"));
    // prompt=consent asks again anyway.
    let (status, _, html) = step(&browser, &url(&[("prompt", "consent")])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("value=\"allow\""), "{html}");
    // prompt=login shows the login form although a session exists; the form returns without
    // prompt, so signing in once is enough.
    let (status, _, html) = step(&browser, &url(&[("prompt", "login")])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("name=\"password\""), "{html}");
    assert!(!flows::form_value(&html, "return_to")
        .unwrap()
        .contains("prompt"));
    // max_age: a session younger than it is fine, an older one must sign in again.
    let (_, location, _) = step(&browser, &url(&[("max_age", "300")])).await;
    assert!(flows::query_of(&location.unwrap()).contains_key("code"));
    app.clock.advance(301);
    let (status, _, html) = step(&browser, &url(&[("max_age", "300")])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("name=\"password\""), "{html}");
    let next = flows::sign_in(
        &app,
        &browser,
        &url(&[("max_age", "300")]),
        "prompt@example.com",
    )
    .await;
    let (_, location, _) = step(&browser, &next).await;
    assert!(flows::query_of(&location.unwrap()).contains_key("code"));

    // Malformed values go back to the client as invalid_request.
    for bad in [
        ("prompt", "none login"),
        ("prompt", "bogus"),
        ("max_age", "-5"),
    ] {
        let (_, location, _) = step(&browser, &url(&[bad])).await;
        assert_eq!(
            flows::query_of(&location.unwrap())["error"],
            "invalid_request",
            "{bad:?}"
        );
    }
}

async fn userinfo_and_discovery_answer_as_openid_connect_says(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = rp_client(&app).await;
    let user_id = flows::user(&app, "info@example.com").await;

    // No token: 401 with the bearer challenge.
    let resp = app.get("/userinfo").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("resource_metadata="));

    // A token without openid: 403, and the challenge names the scope to ask for.
    let plain = code_flow(&app, &client, "info@example.com", "api.read", &[]).await;
    let resp = app
        .client
        .get(app.url("/userinfo"))
        .bearer_auth(plain["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"openid\""), "{challenge}");
    assert!(challenge.contains("resource_metadata=\""), "{challenge}");
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "insufficient_scope"
    );

    // With openid: GET and POST; email only with scope email.
    let oidc = code_flow(&app, &client, "info@example.com", "openid", &[]).await;
    let token = oidc["access_token"].as_str().unwrap();
    let info = app.get_value_as("/userinfo", token).await;
    assert_eq!(info, json!({"sub": user_id}));
    let full = code_flow(&app, &client, "info@example.com", "openid email", &[]).await;
    let resp = app
        .client
        .post(app.url("/userinfo"))
        .bearer_auth(full["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["email"], "info@example.com");
    assert_eq!(info["email_verified"], false);
    // A revoked token is no longer anyone's.
    let resp = app
        .client
        .post(app.url("/oauth2/revoke"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .client
        .get(app.url("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Discovery: every RFC 8414 member with the same value, plus the OpenID fields.
    let oauth = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    let openid = app.get_json("/.well-known/openid-configuration").await;
    for (k, v) in oauth.as_object().unwrap() {
        assert_eq!(&openid[k], v, "{k}");
    }
    assert_eq!(openid["userinfo_endpoint"], app.url("/userinfo").as_str());
    assert_eq!(openid["subject_types_supported"], json!(["public"]));
    assert_eq!(
        openid["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256"])
    );
    for scope in ["openid", "email", "profile"] {
        assert!(oauth["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(scope)));
    }
}

async fn openid_connect_can_be_turned_off(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| c.oauth.oidc.enabled = false)
        .start()
        .await;
    assert_eq!(
        app.get("/.well-known/openid-configuration").await.status(),
        StatusCode::NOT_FOUND
    );
    let oauth = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(!oauth["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("openid")));
    let client = rp_client(&app).await;
    flows::user(&app, "off@example.com").await;
    // openid is then an ordinary scope the client was never given.
    let pkce = flows::pkce();
    let url =
        flows::authorize_url(&app, &client, &pkce, &[]).replace("scope=api.read", "scope=openid");
    let (_, location, _) = step(&flows::browser(), &url).await;
    assert_eq!(
        flows::query_of(&location.unwrap())["error"],
        "invalid_scope"
    );
}
