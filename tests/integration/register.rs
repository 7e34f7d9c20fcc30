//! Dynamic client registration (RFC 7591) and management (RFC 7592), as MCP clients use it.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::flows;
use crate::harness::{Backend, TestApp};

crate::db_tests!(
    mcp_client_registers_and_completes_the_code_flow,
    confidential_registration_gets_a_working_secret,
    registration_management_with_the_access_token,
    bad_metadata_is_refused,
    registration_can_be_gated_or_off,
);

async fn mcp_client_registers_and_completes_the_code_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    // What an IDE's MCP client sends.
    let body = json!({
        "client_name": "Cursor",
        "application_type": "native",
        "redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback", "http://127.0.0.1:33418/callback", "https://cursor.example/cb"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "api.read",
        "client_uri": "https://cursor.example",
        // Members authmd does not know (some MCP clients send their resource) are ignored,
        // never a 400 (RFC 7591 §2).
        "resource": "https://mcp.example/mcp",
    });
    let resp = app.post_json("/oauth2/register", &body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let reg: Value = resp.json().await.unwrap();
    assert!(reg["client_id"].as_str().unwrap().starts_with("cl_"));
    assert!(
        reg.get("client_secret").is_none(),
        "public clients get no secret"
    );
    assert_eq!(
        reg["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(reg["token_endpoint_auth_method"], "none");
    assert_eq!(reg["application_type"], "native");
    assert_eq!(reg["redirect_uris"], body["redirect_uris"]);
    assert_eq!(
        reg["client_uri"], "https://cursor.example",
        "kept metadata is echoed"
    );
    assert!(reg.get("resource").is_none(), "unknown members are ignored");
    assert!(reg["registration_access_token"]
        .as_str()
        .unwrap()
        .starts_with("rat_"));
    assert_eq!(
        reg["registration_client_uri"],
        json!(format!(
            "{}/oauth2/register/{}",
            app.base,
            reg["client_id"].as_str().unwrap()
        ))
    );
    assert_eq!(flows::audit_count(&app, "client.created").await, 1);

    flows::user(&app, "mcp@example.com").await;
    let client = flows::TestClient {
        id: reg["client_id"].as_str().unwrap().to_owned(),
        secret: None,
        redirect_uri: "http://127.0.0.1:50001/callback".to_owned(),
    };
    let pkce = flows::pkce();
    let code = flows::authorization_code(&app, &client, &pkce, "mcp@example.com").await;
    let (status, pair) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(status, 200, "{pair}");
    assert!(
        pair["refresh_token"].is_string(),
        "refresh_token was registered"
    );
    // No `resource` anywhere in the flow: the token is for the default audience.
    let rs = flows::resource_server(&app).await;
    let info = flows::introspect(&app, &rs, pair["access_token"].as_str().unwrap()).await;
    assert_eq!(info["aud"], app.base.as_str(), "{info}");
}

async fn confidential_registration_gets_a_working_secret(backend: Backend) {
    // A client acting for itself needs the operator's initial access token.
    const IAT: &str = "iat-for-backends-0123456789abcdefghij";
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.oauth.registration = authmd::config::RegistrationMode::Token;
            c.oauth.initial_access_token = IAT.to_owned();
        })
        .start()
        .await;
    let resp = app
        .client
        .post(app.url("/oauth2/register"))
        .bearer_auth(IAT)
        .json(&json!({"client_name": "Backend", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let reg: Value = resp.json().await.unwrap();
    let secret = reg["client_secret"].as_str().unwrap();
    assert!(secret.starts_with("cs_"));
    assert_eq!(reg["client_secret_expires_at"], 0);
    let resp = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", reg["client_id"].as_str().unwrap()),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

async fn registration_management_with_the_access_token(backend: Backend) {
    let app = TestApp::start(backend).await;
    let reg: Value = app
        .post_value(
            "/oauth2/register",
            &json!({"client_name": "Tmp", "redirect_uris": ["https://tmp.example/cb"]}),
        )
        .await;
    let uri = reg["registration_client_uri"].as_str().unwrap();
    let rat = reg["registration_access_token"].as_str().unwrap();

    let read = app.client.get(uri).bearer_auth(rat).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["client_id"], reg["client_id"]);
    assert!(
        read.get("client_secret").is_none(),
        "the secret is never shown again"
    );

    let wrong = app
        .client
        .get(uri)
        .bearer_auth("rat_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let challenge = wrong.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains(&format!(
        "resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
        app.base
    )));
    let none = app.client.get(uri).send().await.unwrap();
    assert_eq!(none.status(), 401);

    assert_eq!(
        app.client
            .delete(uri)
            .bearer_auth(rat)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        app.client
            .get(uri)
            .bearer_auth(rat)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

async fn bad_metadata_is_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let cases = [
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["cursor://x/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "scope": "root"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "client_id": "mine"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": "https://a.example/cb"}),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let resp = app.post_json("/oauth2/register", &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], code, "{body}");
    }
}

async fn registration_can_be_gated_or_off(backend: Backend) {
    let gated = TestApp::builder(backend)
        .with_config(|c| {
            c.oauth.registration = authmd::config::RegistrationMode::Token;
            c.oauth.initial_access_token = "iat-secret-0123456789abcdefghijklmnop".to_owned();
        })
        .start()
        .await;
    let body = json!({"redirect_uris": ["https://a.example/cb"]});
    let resp = gated.post_json("/oauth2/register", &body).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_token"
    );
    let resp = gated
        .client
        .post(gated.url("/oauth2/register"))
        .bearer_auth("iat-secret-0123456789abcdefghijklmnop")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let off = TestApp::builder(backend)
        .with_config(|c| c.oauth.registration = authmd::config::RegistrationMode::Off)
        .start()
        .await;
    let resp = off.post_json("/oauth2/register", &body).await;
    assert_eq!(resp.status(), 403);
    let meta = off
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(meta.get("registration_endpoint").is_none());
}
