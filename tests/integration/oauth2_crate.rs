//! The whole code flow driven by the `oauth2` crate, the way an outside Rust app would use
//! authmd: discovery URLs, PKCE, code exchange, refresh, revocation, introspection.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl,
    PkceCodeChallenge, RedirectUrl, RevocationUrl, Scope, StandardRevocableToken,
    TokenIntrospectionResponse, TokenResponse, TokenUrl,
};

use crate::flows;
use crate::harness::{Backend, TestApp};

crate::db_tests!(oauth2_crate_code_flow);

async fn oauth2_crate_code_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    let registered = flows::client(
        &app,
        flows::ClientSpec {
            introspect: true,
            redirect_uris: vec!["http://127.0.0.1:8976/callback"],
            ..Default::default()
        },
    )
    .await;
    flows::user(&app, "crate@example.com").await;
    let meta = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    let url = |field: &str| meta[field].as_str().unwrap().to_owned();

    let client = BasicClient::new(ClientId::new(registered.id.clone()))
        .set_client_secret(ClientSecret::new(registered.secret.clone().unwrap()))
        .set_auth_uri(AuthUrl::new(url("authorization_endpoint")).unwrap())
        .set_token_uri(TokenUrl::new(url("token_endpoint")).unwrap())
        .set_revocation_url(RevocationUrl::new(url("revocation_endpoint")).unwrap())
        .set_introspection_url(IntrospectionUrl::new(url("introspection_endpoint")).unwrap())
        .set_redirect_uri(RedirectUrl::new(registered.redirect_uri.clone()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf_state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("api.read".into()))
        .add_scope(Scope::new("api.write".into()))
        .set_pkce_challenge(challenge)
        .url();

    // The person's part, in a browser.
    let browser = flows::browser();
    let next = flows::sign_in(&app, &browser, auth_url.as_str(), "crate@example.com").await;
    let location = flows::consent(&app, &browser, &next, "allow").await;
    let q = flows::query_of(&location);
    assert_eq!(&q["state"], csrf_state.secret());
    assert_eq!(q["iss"], meta["issuer"].as_str().unwrap());

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let tokens = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    assert_eq!(tokens.token_type().as_ref(), "bearer");
    let scopes: Vec<String> = tokens
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(scopes, vec!["api.read", "api.write"]);

    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .request_async(&http)
        .await
        .expect("refresh");
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        tokens.refresh_token().unwrap().secret()
    );

    let info = client
        .introspect(refreshed.access_token())
        .request_async(&http)
        .await
        .expect("introspection");
    assert!(info.active());
    assert_eq!(info.client_id().unwrap().as_str(), registered.id);

    // The crate refuses to send revocations over plain http (the test server's issuer), so
    // check that it would build the request, then send the same form ourselves.
    let revocable: StandardRevocableToken = refreshed.refresh_token().unwrap().into();
    assert!(matches!(
        client.revoke_token(revocable),
        Err(oauth2::ConfigurationError::InsecureUrl(_))
    ));
    let resp = http
        .post(url("revocation_endpoint"))
        .basic_auth(&registered.id, registered.secret.as_ref())
        .form(&[
            (
                "token",
                refreshed.refresh_token().unwrap().secret().as_str(),
            ),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let info = client
        .introspect(refreshed.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(
        !info.active(),
        "revoking the refresh token revoked its grant"
    );
}
