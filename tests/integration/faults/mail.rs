//! The mail server unreachable during a claim: the caller gets a retryable `503` with
//! `Retry-After`, nothing waits on a message that was never sent, and the same request repeated
//! once the mail server is back succeeds and the ceremony completes.

use serde_json::{json, Value};

use crate::flows;
use crate::harness::{Backend, TestApp};

crate::db_tests!(mail_server_down_during_a_claim_is_retryable);

async fn mail_server_down_during_a_claim_is_retryable(backend: Backend) {
    let app = TestApp::start(backend).await;
    let reg: Value = app
        .post_value("/agent/auth", &json!({"type": "anonymous"}))
        .await;
    let claim_token = reg["claim_token"].as_str().unwrap().to_owned();
    let ask = json!({"claim_token": claim_token, "email": "ada@example.com"});

    app.mail.set_reachable(false);
    for _ in 0..2 {
        let resp = app.post_json("/agent/auth/claim", &ask).await;
        assert_eq!(resp.status(), 503);
        let retry_after: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry_after >= 1);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("could not be sent"));
    }
    assert!(app.mail.messages().is_empty());
    // The agent's credential is untouched by the failed claims.
    let rs = flows::resource_server(&app).await;
    let info = flows::introspect(&app, &rs, reg["credential"].as_str().unwrap()).await;
    assert_eq!(info["active"], true);

    // The mail server is back: the same request succeeds, and the ceremony completes.
    app.mail.set_reachable(true);
    let resp = app.post_json("/agent/auth/claim", &ask).await;
    assert_eq!(resp.status(), 200);
    let code = flows::read_claim_code(&app, &flows::browser(), 0).await;
    let done = flows::complete_claim(&app, &claim_token, &code).await;
    assert_eq!(done.status(), 200);
    let info = flows::introspect(&app, &rs, reg["credential"].as_str().unwrap()).await;
    assert_eq!(info["agent_registration"]["claimed"], true);
    assert_eq!(app.mail.messages().len(), 1, "one message, from the retry");
}
