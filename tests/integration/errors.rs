//! Bad input gets a clear JSON 4xx, never a 500; every response carries a request id.

use serde_json::{json, Value};

use crate::harness::{Backend, TestApp};

crate::db_tests!(
    unknown_path_is_json_404,
    wrong_method_is_json_405,
    malformed_json_is_invalid_request,
    a_nul_in_the_url_is_invalid_request,
    oversized_body_is_413,
    error_shapes_follow_the_endpoint_family,
    responses_carry_a_request_id,
);

async fn unknown_path_is_json_404(backend: Backend) {
    let app = TestApp::start(backend).await;
    let resp = app.get("/no/such/thing?token=secret").await;
    assert_eq!(resp.status(), 404);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("/no/such/thing"));
    assert!(
        !body.to_string().contains("secret"),
        "the query string is not echoed"
    );
}

async fn wrong_method_is_json_405(backend: Backend) {
    let app = TestApp::start(backend).await;
    let resp = app
        .client
        .delete(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
}

async fn malformed_json_is_invalid_request(backend: Backend) {
    let app = TestApp::start(backend).await;
    let resp = app
        .client
        .post(app.url("/agent/auth"))
        .header("content-type", "application/json")
        .body("{\"type\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["message"].as_str().unwrap().contains("malformed"),
        "agent shape: {body}"
    );

    let resp = app
        .client
        .post(app.url("/oauth2/register"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("Content-Type"),
        "{body}"
    );
}

/// Found by the schema-driven fuzzer: a `%00` in a path segment or query value reached
/// PostgreSQL as text, which refuses it with an error (a 500). Refused for every route alike.
async fn a_nul_in_the_url_is_invalid_request(backend: Backend) {
    const ADMIN: &str = "errors-admin-token-0123456789abcdefghij";
    let app = TestApp::builder(backend)
        .with_admin_token(ADMIN)
        .start()
        .await;
    for path in [
        "/admin/users/%00",
        "/admin/users?after=%00",
        "/admin/registrations/a%00b",
        "/oauth2/register/%00",
    ] {
        let resp = app
            .client
            .get(app.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{path}");
    }
    // A percent-encoded byte that is not NUL is an ordinary unknown id.
    let resp = app
        .client
        .get(app.url("/admin/users/%01"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

async fn oversized_body_is_413(backend: Backend) {
    let app = TestApp::builder(backend)
        .with_config(|c| c.server.max_body_bytes = 2048)
        .start()
        .await;
    let big = json!({ "type": "anonymous", "padding": "x".repeat(4096) });
    let resp = app.post_json("/agent/auth", &big).await;
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");

    // Without a Content-Length (chunked), the extractor's limit still applies.
    let chunks: Vec<Result<String, std::io::Error>> = vec![
        Ok("{\"type\": \"".to_owned()),
        Ok("y".repeat(4096)),
        Ok("\"}".to_owned()),
    ];
    let resp = app
        .client
        .post(app.url("/agent/auth"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let small = app
        .post_json("/agent/auth", &json!({"type": "anonymous"}))
        .await;
    assert_ne!(small.status(), 413);
}

async fn error_shapes_follow_the_endpoint_family(backend: Backend) {
    let app = TestApp::start(backend).await;
    let resp = app
        .post_json("/agent/auth", &json!({"type": "telepathy"}))
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_identity_type");
    assert!(
        body["message"].is_string() && body.get("error_description").is_none(),
        "auth.md v0.1 endpoints use {{error, message}}: {body}"
    );
    // auth.md v0.6 at /agent/identity: {error, error_description}.
    for (path, body) in [
        ("/agent/identity", json!({"type": "telepathy"})),
        (
            "/agent/identity/claim",
            json!({"claim_token": "clm_nope", "email": "a@example.com"}),
        ),
    ] {
        let resp = app.post_json(path, &body).await;
        assert!(resp.status().is_client_error(), "{path}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error_description"].is_string() && body.get("message").is_none(),
            "{path} uses the v0.6 shape: {body}"
        );
    }
    let resp = app.client.get(app.url("/api/tokens")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error_description"].is_string(),
        "OAuth endpoints use the RFC 6749 shape: {body}"
    );
}

async fn responses_carry_a_request_id(backend: Backend) {
    let app = TestApp::start(backend).await;
    let a = app.get("/healthz").await;
    let b = app.get("/nope").await;
    let id_a = a.headers()["x-request-id"].to_str().unwrap().to_owned();
    let id_b = b.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id_a.len(), 32);
    assert_ne!(id_a, id_b);
}
