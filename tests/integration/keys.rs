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
    assert_eq!(keys.len(), 2, "an ES256 key and an RS256 key for ID tokens");
    let ring = app.state.keys.current();
    let ec = keys.iter().find(|k| k["kty"] == "EC").unwrap();
    assert_eq!(ec["crv"], "P-256");
    assert_eq!(ec["alg"], "ES256");
    assert_eq!(ec["use"], "sig");
    assert_eq!(ec["kid"], Value::from(ring.signer.kid.clone()));
    let rsa = keys.iter().find(|k| k["kty"] == "RSA").unwrap();
    assert_eq!(rsa["alg"], "RS256");
    assert_eq!(rsa["use"], "sig");
    assert_eq!(rsa["e"], "AQAB");
    assert_eq!(rsa["kid"], Value::from(ring.rsa_signer.kid.clone()));
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "the private half is never published: {key}"
            );
        }
    }
}

async fn rotation_keeps_previous_key_until_retention(backend: Backend) {
    let app = TestApp::start(backend).await;
    let old_kid = app.state.keys.current().signer.kid.clone();
    let old_rsa = app.state.keys.current().rsa_signer.kid.clone();
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
    let new_rsa = app.state.keys.current().rsa_signer.kid.clone();
    assert_ne!(new_rsa, old_rsa, "the RSA key rotates too");

    let kids = |jwks: Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut published = kids(app.get_json("/.well-known/jwks.json").await);
    published.sort();
    let mut expected = vec![new.kid.clone(), new_rsa.clone(), old_kid.clone(), old_rsa];
    expected.sort();
    assert_eq!(published, expected);

    // One second before the retention ends the old key is still needed; after it, it is gone.
    let retention = keys::retention_s(&app.state.config);
    app.clock.advance(retention - 1);
    app.state.reload_keys().await.unwrap();
    assert_eq!(kids(app.get_json("/.well-known/jwks.json").await).len(), 4);
    app.clock.advance(1);
    app.state.reload_keys().await.unwrap();
    let mut current = kids(app.get_json("/.well-known/jwks.json").await);
    current.sort();
    let mut expected = vec![new.kid.clone(), new_rsa];
    expected.sort();
    assert_eq!(current, expected);

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
