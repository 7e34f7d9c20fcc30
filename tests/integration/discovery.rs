//! Discovery documents, health and the OpenAPI description, as callers fetch them.

use serde_json::json;

use crate::harness::{Backend, TestApp};

crate::db_tests!(
    authorization_server_metadata_has_rfc8414_fields,
    agent_auth_block_follows_configuration,
    protected_resource_metadata,
    auth_md_lists_only_enabled_flows,
    openapi_describes_every_json_endpoint,
    health_and_readiness,
);

async fn authorization_server_metadata_has_rfc8414_fields(backend: Backend) {
    let app = TestApp::start(backend).await;
    let m = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    let issuer = &app.base;
    assert_eq!(m["issuer"], json!(issuer));
    for (field, path) in [
        ("authorization_endpoint", "/oauth2/authorize"),
        ("token_endpoint", "/oauth2/token"),
        ("revocation_endpoint", "/oauth2/revoke"),
        ("introspection_endpoint", "/oauth2/introspect"),
        ("registration_endpoint", "/oauth2/register"),
        ("jwks_uri", "/.well-known/jwks.json"),
    ] {
        assert_eq!(m[field], json!(format!("{issuer}{path}")), "{field}");
    }
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(m["response_types_supported"], json!(["code"]));
    assert_eq!(
        m["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    let auth_methods = m["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    for method in ["client_secret_basic", "client_secret_post", "none"] {
        assert!(auth_methods.contains(&json!(method)), "{method}");
    }
    let grants = m["grant_types_supported"].as_array().unwrap();
    for grant in [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ] {
        assert!(grants.contains(&json!(grant)), "{grant}");
    }
    assert_eq!(
        m["scopes_supported"],
        json!(["api.read", "api.write", "openid", "email", "profile"])
    );
    // Every URL the document names is served by this server.
    for field in ["jwks_uri", "service_documentation"] {
        let url = m[field].as_str().unwrap();
        let resp = app.client.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{field} {url}");
    }
}

async fn agent_auth_block_follows_configuration(backend: Backend) {
    let open = TestApp::start(backend).await;
    let m = open
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    let block = &m["agent_auth"];
    let issuer = &open.base;
    assert_eq!(block["skill"], json!(format!("{issuer}/auth.md")));
    assert_eq!(block["register_uri"], json!(format!("{issuer}/agent/auth")));
    assert_eq!(
        block["claim_uri"],
        json!(format!("{issuer}/agent/auth/claim"))
    );
    assert_eq!(
        block["revocation_uri"],
        json!(format!("{issuer}/oauth2/revoke"))
    );
    assert_eq!(
        block["identity_types_supported"],
        json!(["anonymous", "identity_assertion", "service_auth"])
    );
    assert_eq!(
        block["identity_endpoint"],
        json!(format!("{issuer}/agent/identity"))
    );
    assert_eq!(
        block["claim_endpoint"],
        json!(format!("{issuer}/agent/identity/claim"))
    );
    assert_eq!(
        block["anonymous"]["credential_types_supported"],
        json!(["api_key", "access_token", "identity_assertion"])
    );
    assert_eq!(
        block["identity_assertion"]["assertion_types_supported"],
        json!(["verified_email"])
    );
    assert_eq!(block["events_supported"], json!([]));
    assert!(m.get("authorization_grant_profiles_supported").is_none());

    // tokens&: nothing agent-initiated; Vectoken-like: a trusted provider and no anonymous.
    let closed = TestApp::builder(backend)
        .with_config(|c| {
            c.agent.anonymous_enabled = false;
            c.agent.verified_email_enabled = false;
            c.agent.service_auth_enabled = false;
        })
        .start()
        .await;
    let m = closed
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    // No agent registration at all: no block, so no register or claim URI that would refuse.
    assert!(m.get("agent_auth").is_none(), "{m}");
    assert!(!m["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("urn:workos:agent-auth:grant-type:claim")));

    let provider = TestApp::builder(backend)
        .with_config(|c| {
            c.agent.anonymous_enabled = false;
            c.agent.trusted_providers = vec![authmd::config::TrustedProvider {
                issuer: "https://agents.example".to_owned(),
                jwks_uri: "https://agents.example/jwks".to_owned(),
            }];
        })
        .start()
        .await;
    let m = provider
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(
        m["agent_auth"]["identity_types_supported"],
        json!(["identity_assertion", "service_auth"])
    );
    assert_eq!(
        m["agent_auth"]["identity_assertion"]["assertion_types_supported"],
        json!(["verified_email", "urn:ietf:params:oauth:token-type:id-jag"])
    );
    assert_eq!(
        m["authorization_grant_profiles_supported"],
        json!(["urn:ietf:params:oauth:grant-profile:id-jag"])
    );
    assert_eq!(
        m["agent_auth"]["events_supported"],
        json!([
            "http://schemas.openid.net/event/backchannel-logout",
            "https://schemas.workos.com/events/agent/auth/identity/assertion/revoked"
        ])
    );
    assert_eq!(
        m["agent_auth"]["events_endpoint"],
        json!(format!("{}/agent/event/notify", provider.base))
    );
}

async fn protected_resource_metadata(backend: Backend) {
    let app = TestApp::start(backend).await;
    let m = app.get_json("/.well-known/oauth-protected-resource").await;
    assert_eq!(
        m["resource"],
        json!(app.base),
        "no resources configured: the issuer is the resource"
    );
    assert_eq!(m["authorization_servers"], json!([app.base]));
    assert_eq!(m["bearer_methods_supported"], json!(["header"]));
    assert_eq!(m["scopes_supported"], json!(["api.read", "api.write"]));

    // RFC 9728 §3.3: a document describes the URL it is fetched for. The root is authmd's own
    // API even when another origin's resource is the default audience; a resource on authmd's
    // origin is at its path-suffixed location; another origin's is not served here.
    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.server.resources = vec![
                "https://api.example.com/v1".to_owned(),
                format!("{}/mcp", c.server.issuer),
            ];
        })
        .start()
        .await;
    let m = app.get_json("/.well-known/oauth-protected-resource").await;
    assert_eq!(m["resource"], json!(app.base));
    let m = app
        .get_json("/.well-known/oauth-protected-resource/mcp")
        .await;
    assert_eq!(m["resource"], json!(app.url("/mcp")));
    let resp = app.get("/.well-known/oauth-protected-resource/v1").await;
    assert_eq!(
        resp.status(),
        404,
        "api.example.com serves its own document"
    );
    let resp = app.get("/.well-known/oauth-protected-resource/nope").await;
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

async fn auth_md_lists_only_enabled_flows(backend: Backend) {
    let app = TestApp::start(backend).await;
    let resp = app.get("/auth.md").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    let md = resp.text().await.unwrap();
    assert!(
        md.contains(&format!("POST {}/agent/auth", app.base)),
        "{md}"
    );
    assert!(md.contains("\"type\": \"anonymous\""));
    assert!(md.contains("verified_email"));
    assert!(
        !md.contains("id-jag\""),
        "no provider configured, no ID-JAG section"
    );
    assert!(md.contains("api.read api.write"));

    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.agent.anonymous_enabled = false;
            c.agent.verified_email_enabled = false;
            c.agent.service_auth_enabled = false;
            c.oauth.registration = authmd::config::RegistrationMode::Off;
        })
        .start()
        .await;
    let md = app.get("/auth.md").await.text().await.unwrap();
    assert!(!md.contains("\"type\": \"anonymous\""), "{md}");
    assert!(!md.contains("verified_email"));
    assert!(!md.contains("/oauth2/register"));
    assert!(md.contains("not offered"));
    assert!(md.contains(&app.base));
}

async fn openapi_describes_every_json_endpoint(backend: Backend) {
    // With the admin API on, so its endpoints answer (401) instead of "not enabled" (404).
    let app = TestApp::builder(backend)
        .with_admin_token("t-0123456789abcdefghijklmnopqrstuvwxyz")
        .start()
        .await;
    let doc = app.get_json("/openapi.json").await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["servers"][0]["url"], json!(app.base));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/.well-known/oauth-authorization-server", "get"),
        ("/.well-known/oauth-protected-resource", "get"),
        ("/.well-known/jwks.json", "get"),
        ("/auth.md", "get"),
        ("/openapi.json", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/oauth2/authorize", "get"),
        ("/oauth2/token", "post"),
        ("/oauth2/revoke", "post"),
        ("/oauth2/introspect", "post"),
        ("/oauth2/register", "post"),
        ("/agent/auth", "post"),
        ("/agent/auth/claim", "post"),
        ("/agent/auth/claim/complete", "post"),
        ("/agent/auth/revoke", "post"),
        ("/api/tokens", "get"),
        ("/api/tokens", "post"),
        ("/api/tokens/{id}", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    // Every documented path is routed: nothing answers the generic 404.
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let url = app.url(&path.replace("{id}", "x"));
            let req = match method.as_str() {
                "get" => app.client.get(url),
                "post" => app.client.post(url).json(&json!({})),
                "delete" => app.client.delete(url),
                other => panic!("unexpected method {other}"),
            };
            let resp = req.send().await.unwrap();
            assert_ne!(
                resp.status(),
                404,
                "{method} {path} is documented but not routed"
            );
        }
    }
    // Every JSON body is a named schema, except the documents whose shape their RFC leaves
    // open (discovery metadata, the JWK Set, RFC 7591 client metadata, this document).
    let open_by_rfc = [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-protected-resource",
        "/.well-known/jwks.json",
        "/openapi.json",
        "/oauth2/register",
        "/oauth2/register/{client_id}",
        "/admin/clients",
        "/admin/clients/{id}",
    ];
    let mut free = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let mut bodies: Vec<&serde_json::Value> = op["responses"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(|r| r.pointer("/content/application~1json/schema"))
                .collect();
            bodies.extend(op.pointer("/requestBody/content/application~1json/schema"));
            for schema in bodies {
                if schema.get("$ref").is_none() && !open_by_rfc.contains(&path.as_str()) {
                    free.push(format!("{method} {path}: {schema}"));
                }
            }
        }
    }
    assert!(free.is_empty(), "bodies without a schema: {free:#?}");
    for name in ["TokenResponse", "Introspection", "Registered", "AuditPage"] {
        assert!(
            doc.pointer(&format!("/components/schemas/{name}"))
                .is_some(),
            "{name} is described"
        );
    }
}

async fn health_and_readiness(backend: Backend) {
    let app = TestApp::start(backend).await;
    assert_eq!(app.get_json("/healthz").await["status"], "ok");
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready");
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(ready["database"], expected);
}
