//! Signing keys: created on first start, published with kid/alg/use, rotated with the previous
//! key kept until nothing it signed can still be valid.

use serde_json::Value;

use authmd::domain::audit::AuditContext;
use authmd::domain::keys;

use crate::harness::{Backend, TestApp};

crate::db_tests!(
    jwks_publishes_the_generated_key,
    rotation_keeps_previous_key_until_retention
);

async fn jwks_publishes_the_generated_key(backend: Backend) {
    let app = TestApp::start(backend).await;
    let jwks = app.get_json("/.well-known/jwks.json").await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert_eq!(
        key["kid"],
        Value::from(app.state.keys.current().signer.kid.clone())
    );
    assert!(
        key.get("d").is_none(),
        "the private half is never published"
    );
}

async fn rotation_keeps_previous_key_until_retention(backend: Backend) {
    let app = TestApp::start(backend).await;
    let old_kid = app.state.keys.current().signer.kid.clone();
    let now = authmd::clock::Clock::now(app.clock.as_ref());
    let new = app
        .state
        .db
        .run(move |conn| keys::rotate(conn, now, &AuditContext::cli()))
        .await
        .unwrap();
    app.state.reload_keys().await.unwrap();
    assert_eq!(
        app.state.keys.current().signer.kid,
        new.kid,
        "the new key signs"
    );

    let kids = |jwks: Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let published = kids(app.get_json("/.well-known/jwks.json").await);
    assert_eq!(published, vec![new.kid.clone(), old_kid.clone()]);

    // One second before the retention ends the old key is still needed; after it, it is gone.
    let retention = keys::retention_s(&app.state.config);
    app.clock.advance(retention - 1);
    app.state.reload_keys().await.unwrap();
    assert_eq!(kids(app.get_json("/.well-known/jwks.json").await).len(), 2);
    app.clock.advance(1);
    app.state.reload_keys().await.unwrap();
    assert_eq!(
        kids(app.get_json("/.well-known/jwks.json").await),
        vec![new.kid.clone()]
    );

    // The rotation is audited.
    let rows = app
        .state
        .db
        .run(|conn| Ok(authmd::db::audit::recent(conn, Some("key.rotated"), 10)?))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor.as_deref(), Some("cli"));
    assert!(rows[0].detail.contains(&new.kid));
}
