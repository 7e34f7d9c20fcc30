//! Protocol steps shared by the OAuth tests: clients, users, a browser that signs in and
//! consents, PKCE pairs.

use authmd::domain::audit::AuditContext;
use authmd::domain::clients::{self, NewClient};
use authmd::domain::grants::code::s256;
use authmd::domain::scope::Scopes;
use authmd::domain::users;
use reqwest::StatusCode;
use serde_json::{json, Value};
use url::Url;

use crate::harness::TestApp;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestClient {
    pub id: String,
    pub secret: Option<String>,
    pub redirect_uri: String,
}

pub struct ClientSpec<'a> {
    pub public: bool,
    pub introspect: bool,
    pub redirect_uris: Vec<&'a str>,
    pub grant_types: Vec<&'a str>,
}

impl Default for ClientSpec<'_> {
    fn default() -> Self {
        Self {
            public: false,
            introspect: false,
            redirect_uris: vec!["https://app.example/callback"],
            grant_types: vec!["authorization_code", "refresh_token", "client_credentials"],
        }
    }
}

pub async fn client(app: &TestApp, spec: ClientSpec<'_>) -> TestClient {
    let now = app.now();
    let allowed = Scopes::from_list(&authmd::domain::discovery::scopes_supported(
        &app.state.config,
    ));
    let new = NewClient {
        name: "Test App".to_owned(),
        redirect_uris: spec.redirect_uris.iter().map(|s| s.to_string()).collect(),
        grant_types: spec.grant_types.iter().map(|s| s.to_string()).collect(),
        scope: None,
        token_endpoint_auth_method: if spec.public {
            "none"
        } else {
            "client_secret_basic"
        }
        .to_owned(),
        application_type: "web".to_owned(),
        can_introspect: spec.introspect,
        registration_token: false,
        metadata: json!({}),
    };
    let created = app
        .state
        .db
        .run(move |conn| clients::create(conn, now, &AuditContext::cli(), new, &allowed))
        .await
        .unwrap();
    TestClient {
        id: created.client.client_id.clone(),
        secret: created.client_secret.map(|s| s.into_string()),
        redirect_uri: created
            .client
            .redirect_uris
            .first()
            .cloned()
            .unwrap_or_default(),
    }
}

pub async fn confidential(app: &TestApp) -> TestClient {
    client(app, ClientSpec::default()).await
}

/// A resource server's client: may introspect, nothing else.
pub async fn resource_server(app: &TestApp) -> TestClient {
    client(
        app,
        ClientSpec {
            introspect: true,
            redirect_uris: vec![],
            grant_types: vec!["client_credentials"],
            ..Default::default()
        },
    )
    .await
}

pub async fn user(app: &TestApp, email: &str) -> String {
    let now = app.now();
    let email = email.to_owned();
    app.state
        .db
        .run(move |conn| users::create(conn, now, &email, Some(users::new_password(PASSWORD)?)))
        .await
        .unwrap()
        .id
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = format!("v{}", uuid::Uuid::new_v4().simple()).repeat(2);
    Pkce {
        challenge: s256(&verifier),
        verifier,
    }
}

/// A browser: its own cookie jar, no automatic redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        // Shorter than the server's keep-alive, as in the harness's client.
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap()
}

/// The value of a form field, with HTML character references decoded as a browser would.
pub fn form_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(unescape(&html[start..start + end]))
}

fn unescape(s: &str) -> String {
    [
        ("&#38;", "&"),
        ("&#34;", "\""),
        ("&#39;", "'"),
        ("&#60;", "<"),
        ("&#62;", ">"),
        ("&quot;", "\""),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&amp;", "&"),
    ]
    .iter()
    .fold(s.to_owned(), |acc, (from, to)| acc.replace(from, to))
}

pub fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

pub fn authorize_url(
    app: &TestApp,
    client: &TestClient,
    pkce: &Pkce,
    extra: &[(&str, &str)],
) -> String {
    let mut url = Url::parse(&app.url("/oauth2/authorize")).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &client.id)
            .append_pair("redirect_uri", &client.redirect_uri)
            .append_pair("state", "st-123")
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256");
        if !extra.iter().any(|(k, _)| *k == "scope") {
            q.append_pair("scope", "api.read");
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// Signs in on the login page the authorization URL shows; returns the next location.
pub async fn sign_in(
    app: &TestApp,
    browser: &reqwest::Client,
    authorize: &str,
    email: &str,
) -> String {
    let page = browser.get(authorize).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("name=\"password\""),
        "login form expected: {html}"
    );
    let csrf = form_value(&html, "csrf_token").expect("csrf token on the login form");
    let return_to = form_value(&html, "return_to").unwrap();
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
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "login should succeed");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    app.url(&location)
}

/// Answers the consent page at `url` (already signed in); returns the redirect location.
pub async fn consent(
    app: &TestApp,
    browser: &reqwest::Client,
    url: &str,
    decision: &str,
) -> String {
    let page = browser.get(url).send().await.unwrap();
    let status = page.status();
    let html = page.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{url}: {html}");
    assert!(
        html.contains("value=\"allow\"") && html.contains("value=\"deny\""),
        "consent form expected: {html}"
    );
    let csrf = form_value(&html, "csrf_token").unwrap();
    let mut form: Vec<(String, String)> = Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    form.push(("csrf_token".into(), csrf));
    form.push(("decision".into(), decision.into()));
    let resp = browser
        .post(app.url("/oauth2/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    resp.headers()["location"].to_str().unwrap().to_owned()
}

/// The whole browser part: sign in, allow; returns the code.
pub async fn authorization_code(
    app: &TestApp,
    client: &TestClient,
    pkce: &Pkce,
    email: &str,
) -> String {
    let browser = browser();
    let url = authorize_url(app, client, pkce, &[]);
    let next = sign_in(app, &browser, &url, email).await;
    let location = consent(app, &browser, &next, "allow").await;
    assert!(location.starts_with(&client.redirect_uri), "{location}");
    query_of(&location)
        .remove("code")
        .expect("code in redirect")
}

/// POSTs a token request with client_secret_basic (or client_id for public clients).
pub async fn token(
    app: &TestApp,
    client: &TestClient,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = app.client.post(app.url("/oauth2/token"));
    let mut form: Vec<(&str, &str)> = form.to_vec();
    match &client.secret {
        Some(secret) => req = req.basic_auth(&client.id, Some(secret)),
        None => form.push(("client_id", &client.id)),
    }
    let resp = req.form(&form).send().await.unwrap();
    let status = resp.status();
    if status.is_success() {
        assert_eq!(resp.headers()["cache-control"], "no-store");
    }
    (status, resp.json().await.unwrap())
}

pub async fn exchange(
    app: &TestApp,
    client: &TestClient,
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    token(
        app,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &client.redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub async fn introspect(app: &TestApp, rs: &TestClient, token: &str) -> Value {
    let resp = app
        .client
        .post(app.url("/oauth2/introspect"))
        .basic_auth(&rs.id, rs.secret.as_ref())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

pub async fn audit_count(app: &TestApp, event: &'static str) -> usize {
    app.state
        .db
        .run(move |conn| Ok(authmd::db::audit::recent(conn, Some(event), 1000)?.len()))
        .await
        .unwrap()
}

/// The person's part of a claim: open the link of mail number `message_index` with
/// `browser`, press "Get my code", read the code the page shows.
pub async fn read_claim_code(
    app: &TestApp,
    browser: &reqwest::Client,
    message_index: usize,
) -> String {
    let messages = app.mail.wait_for(message_index + 1).await;
    let link = crate::fakes::claim_link(&messages[message_index]);
    assert!(
        link.starts_with(&app.base),
        "the link is built from the issuer: {link}"
    );
    let page = browser.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Get my code")
            && (html.contains("This wasn&#39;t me") || html.contains("This wasn't me")),
        "{html}"
    );
    let page = browser
        .post(app.url("/agent/auth/claim/attempt/challenge"))
        .form(&[
            ("token", form_value(&html, "token").unwrap()),
            ("csrf_token", form_value(&html, "csrf_token").unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let start = html.find("id=\"otp\">").expect("code shown") + "id=\"otp\">".len();
    html[start..start + 6].to_owned()
}

/// The agent's last step: `POST /agent/auth/claim/complete`.
pub async fn complete_claim(app: &TestApp, claim_token: &str, otp: &str) -> reqwest::Response {
    app.post_json(
        "/agent/auth/claim/complete",
        &json!({"claim_token": claim_token, "otp": otp}),
    )
    .await
}

/// An anonymous agent claimed by `email` through the whole ceremony (mail, page, code), the
/// page read with `browser`; returns the registration answer (with its credential).
pub async fn claim_agent(
    app: &TestApp,
    browser: &reqwest::Client,
    email: &str,
    mail_index: usize,
) -> Value {
    let reg: Value = app
        .post_value("/agent/auth", &json!({"type": "anonymous"}))
        .await;
    let claim_token = reg["claim_token"].as_str().unwrap();
    let asked = app
        .post_json(
            "/agent/auth/claim",
            &json!({"claim_token": claim_token, "email": email}),
        )
        .await;
    assert_eq!(asked.status(), 200);
    let otp = read_claim_code(app, browser, mail_index).await;
    assert_eq!(complete_claim(app, claim_token, &otp).await.status(), 200);
    reg
}

/// [`claim_agent`] with a fresh browser.
pub async fn claimed_agent(app: &TestApp, email: &str, mail_index: usize) -> Value {
    claim_agent(app, &browser(), email, mail_index).await
}

/// Submits the sign-in form of /account with `browser`; returns the answer.
pub async fn login(
    app: &TestApp,
    browser: &reqwest::Client,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let html = browser
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_value(&html, "csrf_token").unwrap();
    browser
        .post(app.url("/login"))
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf_token", &csrf),
            ("return_to", "/account"),
        ])
        .send()
        .await
        .unwrap()
}

/// A person signed in through the form: their browser (holding the session cookie) and id.
pub struct Person {
    pub browser: reqwest::Client,
    pub user_id: String,
}

impl Person {
    /// `POST /api/tokens` through the session: the answer's status and body.
    pub async fn create_token(&self, app: &TestApp, body: Value) -> (StatusCode, Value) {
        let resp = self
            .browser
            .post(app.url("/api/tokens"))
            // A session write must come from this server's own pages.
            .header("origin", &app.base)
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    /// A personal token the person makes (`201`); its plaintext.
    pub async fn token(&self, app: &TestApp, body: Value) -> String {
        let (status, created) = self.create_token(app, body).await;
        assert_eq!(status, 201, "{created}");
        created["token"].as_str().expect("token").to_owned()
    }
}

/// A new user signed in at /account.
pub async fn person(app: &TestApp, email: &str) -> Person {
    let user_id = user(app, email).await;
    let browser = browser();
    let resp = login(app, &browser, email, PASSWORD).await;
    assert_eq!(resp.status(), 303, "sign-in");
    assert_eq!(resp.headers()["location"], "/account");
    Person { browser, user_id }
}

/// A browser signed in at /account as a new user; returns it and the user id.
pub async fn signed_in(app: &TestApp, email: &str) -> (reqwest::Client, String) {
    let p = person(app, email).await;
    (p.browser, p.user_id)
}

/// `/api/tokens` with a bearer credential: `POST` with `body`, or `GET` without; the answer's
/// status and body.
pub async fn tokens_api(app: &TestApp, bearer: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = match body {
        Some(body) => app.client.post(app.url("/api/tokens")).json(&body),
        None => app.client.get(app.url("/api/tokens")),
    };
    let resp = request.bearer_auth(bearer).send().await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}
