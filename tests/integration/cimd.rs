//! Client ID Metadata Documents: a client names itself by a URL, authmd fetches the document
//! from a real web server on loopback (so `oauth.cimd.allow_private_addresses = true`, except
//! where a test checks that loopback is refused), and the code flow runs as for any client.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::{DocumentHost, Served};
use crate::flows::{self, TestClient};
use crate::harness::{Backend, TestApp};

crate::db_tests!(
    a_document_client_runs_the_whole_code_flow,
    documents_are_refused_on_a_page_with_the_reason,
    private_addresses_are_refused_by_default,
    documents_are_cached_and_fetched_once_at_a_time,
    a_document_client_never_gets_client_credentials,
    metadata_advertises_documents_only_when_enabled,
);

const REDIRECT: &str = "http://127.0.0.1:7777/callback";

async fn app_with_documents(backend: Backend) -> TestApp {
    TestApp::builder(backend)
        .with_config(|c| c.oauth.cimd.allow_private_addresses = true)
        .start()
        .await
}

fn document(url: &str) -> Value {
    json!({
        "client_id": url,
        "client_name": "Docs Client",
        "redirect_uris": [REDIRECT, "cursor://anysphere.cursor-mcp/oauth/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    })
}

fn client_of(url: &str) -> TestClient {
    TestClient {
        id: url.to_owned(),
        secret: None,
        redirect_uri: REDIRECT.to_owned(),
    }
}

/// The page an authorization request for `client` gets, with its status.
async fn authorize_page(app: &TestApp, client: &TestClient) -> (StatusCode, String) {
    let url = flows::authorize_url(app, client, &flows::pkce(), &[]);
    let resp = flows::browser().get(url).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

async fn a_document_client_runs_the_whole_code_flow(backend: Backend) {
    let app = app_with_documents(backend).await;
    let host = DocumentHost::start().await;
    let url = host.url("/oauth/client.json");
    host.serve("/oauth/client.json", Served::json(&document(&url)));
    let client = client_of(&url);
    flows::user(&app, "doc@example.com").await;

    let pkce = flows::pkce();
    let browser = flows::browser();
    let authorize = flows::authorize_url(&app, &client, &pkce, &[]);
    let consent_url = flows::sign_in(&app, &browser, &authorize, "doc@example.com").await;
    // The consent page names the client as its document does, and the host that published it.
    let html = browser
        .get(&consent_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Docs Client"), "{html}");
    assert!(
        html.contains("describes itself at <strong>127.0.0.1</strong>"),
        "{html}"
    );
    let location = flows::consent(&app, &browser, &consent_url, "allow").await;
    assert!(location.starts_with(REDIRECT), "{location}");
    let code = flows::query_of(&location).remove("code").unwrap();

    // The token endpoint knows the client as a public one: `none`, PKCE-bound.
    let (status, body) = flows::exchange(&app, &client, &code, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let rs = flows::resource_server(&app).await;
    let info = flows::introspect(&app, &rs, body["access_token"].as_str().unwrap()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], url.as_str());
    let (status, body) = flows::token(
        &app,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A loopback redirect on another port is the same registered URI (RFC 8252 §7.3); a
    // redirect URI the document does not list is refused on a page.
    let mut other_port = client_of(&url);
    other_port.redirect_uri = "http://127.0.0.1:40123/callback".into();
    let (status, html) = authorize_page(&app, &other_port).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let mut unlisted = client_of(&url);
    unlisted.redirect_uri = "https://elsewhere.example/callback".into();
    let (status, html) = authorize_page(&app, &unlisted).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("redirect_uri is not registered"), "{html}");
}

async fn documents_are_refused_on_a_page_with_the_reason(backend: Backend) {
    let app = app_with_documents(backend).await;
    let host = DocumentHost::start().await;
    let mismatched = host.url("/mismatch.json");
    host.serve(
        "/mismatch.json",
        Served::json(&document("https://someone-else.example/client.json")),
    );
    let huge = host.url("/huge.json");
    let mut big = document(&huge);
    big["padding"] = json!("x".repeat(70 * 1024));
    host.serve("/huge.json", Served::json(&big));
    let secretful = host.url("/secret.json");
    let mut with_secret = document(&secretful);
    with_secret["token_endpoint_auth_method"] = json!("client_secret_basic");
    host.serve("/secret.json", Served::json(&with_secret));
    let not_json = host.url("/page.html");
    host.serve(
        "/page.html",
        Served {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: "<html></html>".into(),
            delay_ms: 0,
        },
    );
    let moved = host.url("/moved.json");
    host.serve(
        "/moved.json",
        Served {
            status: 302,
            headers: vec![("Location".into(), host.url("/mismatch.json"))],
            body: String::new(),
            delay_ms: 0,
        },
    );

    // A failure is remembered briefly: asking again at once does not fetch again.
    let missing = host.url("/missing.json");
    for _ in 0..3 {
        assert_eq!(
            authorize_page(&app, &client_of(&missing)).await.0,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(host.hits("/missing.json"), 1);
    app.clock.advance(11);
    authorize_page(&app, &client_of(&missing)).await;
    assert_eq!(host.hits("/missing.json"), 2);

    for (url, reason) in [
        (host.url("/missing.json"), "404"),
        (mismatched, "does not equal the URL"),
        (huge, "larger than 65536 bytes"),
        (secretful, "public"),
        (not_json, "not a JSON object"),
        // A redirect is followed, and the document found there is still judged against the
        // URL the client gave.
        (moved, "does not equal the URL"),
    ] {
        let (status, html) = authorize_page(&app, &client_of(&url)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {html}");
        assert!(html.contains("invalid_client"), "{url}: {html}");
        assert!(
            html.contains(reason),
            "{url}: expected {reason:?} in {html}"
        );
    }

    // A document host that does not answer in time.
    let slow = host.url("/slow.json");
    let mut served = Served::json(&document(&slow));
    served.delay_ms = 7_000;
    host.serve("/slow.json", served);
    let started = std::time::Instant::now();
    let (status, html) = authorize_page(&app, &client_of(&slow)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("no answer within 5 s"), "{html}");
    assert!(started.elapsed() < std::time::Duration::from_secs(7));
}

async fn private_addresses_are_refused_by_default(backend: Backend) {
    let app = TestApp::start(backend).await;
    let host = DocumentHost::start().await;
    let url = host.url("/client.json");
    host.serve("/client.json", Served::json(&document(&url)));
    // Plain http, and a loopback IP literal.
    let (status, html) = authorize_page(&app, &client_of(&url)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("must use https"), "{html}");
    let literal = url.replace("http://", "https://");
    let (status, html) = authorize_page(&app, &client_of(&literal)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("non-public address"), "{html}");
    // A host name is judged by the addresses it resolves to, not by its spelling.
    let port = url::Url::parse(&url).unwrap().port().unwrap();
    let named = format!("https://localhost:{port}/client.json");
    let (status, html) = authorize_page(&app, &client_of(&named)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("resolves to a non-public address"), "{html}");
    assert_eq!(
        host.hits("/client.json"),
        0,
        "nothing reached the private host"
    );
}

async fn documents_are_cached_and_fetched_once_at_a_time(backend: Backend) {
    let app = app_with_documents(backend).await;
    let host = DocumentHost::start().await;
    let url = host.url("/cached.json");
    let mut served = Served::json(&document(&url)).header("Cache-Control", "max-age=120");
    served.delay_ms = 300;
    host.serve("/cached.json", served);
    let client = client_of(&url);

    // Eight requests at once: one fetch.
    let pages = futures_util::future::join_all((0..8).map(|_| authorize_page(&app, &client))).await;
    for (status, html) in &pages {
        assert_eq!(*status, StatusCode::OK, "{html}");
    }
    assert_eq!(host.hits("/cached.json"), 1);
    // Within max-age: from the cache.
    app.clock.advance(100);
    assert_eq!(authorize_page(&app, &client).await.0, StatusCode::OK);
    assert_eq!(host.hits("/cached.json"), 1);
    // After it: fetched again, and the new name is what the client is now called.
    let mut renamed = document(&url);
    renamed["client_name"] = json!("Renamed Client");
    host.serve("/cached.json", Served::json(&renamed));
    app.clock.advance(30);
    assert_eq!(authorize_page(&app, &client).await.0, StatusCode::OK);
    assert_eq!(host.hits("/cached.json"), 2);
    let stored = authmd::domain::clients::find(&mut app.state.db.get().unwrap(), &url)
        .unwrap()
        .unwrap();
    assert_eq!(stored.client_name, "Renamed Client");
    assert!(stored.is_public);
}

async fn a_document_client_never_gets_client_credentials(backend: Backend) {
    let app = app_with_documents(backend).await;
    let host = DocumentHost::start().await;
    let url = host.url("/cc.json");
    let mut doc = document(&url);
    doc["grant_types"] = json!(["authorization_code", "client_credentials"]);
    host.serve("/cc.json", Served::json(&doc));
    let (status, html) = authorize_page(&app, &client_of(&url)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("client_credentials"), "{html}");

    // Known through a valid document, it still cannot ask for client_credentials.
    let good = host.url("/good.json");
    host.serve("/good.json", Served::json(&document(&good)));
    assert_eq!(
        authorize_page(&app, &client_of(&good)).await.0,
        StatusCode::OK
    );
    let (status, body) = flows::token(
        &app,
        &client_of(&good),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert!(status.is_client_error(), "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
}

async fn metadata_advertises_documents_only_when_enabled(backend: Backend) {
    let app = TestApp::start(backend).await;
    let meta = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(meta["client_id_metadata_document_supported"], true);

    let off = TestApp::builder(backend)
        .with_config(|c| {
            c.oauth.cimd.enabled = false;
            c.oauth.cimd.allow_private_addresses = true;
        })
        .start()
        .await;
    let meta = off
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(
        meta.get("client_id_metadata_document_supported").is_none(),
        "{meta}"
    );
    let host = DocumentHost::start().await;
    let url = host.url("/client.json");
    host.serve("/client.json", Served::json(&document(&url)));
    let (status, html) = authorize_page(&off, &client_of(&url)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("does not accept client metadata documents"),
        "{html}"
    );
    assert_eq!(host.hits("/client.json"), 0);
}
