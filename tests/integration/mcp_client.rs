//! The official MCP TypeScript SDK, end to end: its client identifies itself with a Client ID
//! Metadata Document (served over https with a test CA that authmd is told to trust), signs a
//! person in through authmd's pages, and calls a tool on an MCP server that checks the token by
//! introspection. The script is `tests/mcp/e2e.mjs`; `.ci/run` installs its pinned packages
//! (`npm ci` in `tests/mcp`).

use std::path::Path;
use std::process::Stdio;

use crate::flows;
use crate::harness::{Backend, TestApp};

const PACKAGES: &str = "tests/mcp/node_modules/@modelcontextprotocol/sdk";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA, and a certificate for `localhost` it signed: (CA PEM, leaf PEM, leaf key PEM).
fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_sdk_client_uses_a_metadata_document_end_to_end() {
    let installed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(PACKAGES)
        .exists();
    if !installed {
        // .ci/run installs the packages and sets CI; there their absence is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "{PACKAGES} is missing: run `npm ci` in tests/mcp"
        );
        eprintln!("skipped: run `npm ci` in tests/mcp to drive the MCP SDK");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = test_pki();
    let (ca_path, cert_path, key_path) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    std::fs::write(&ca_path, ca).unwrap();
    std::fs::write(&cert_path, leaf).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let (mcp_port, doc_port) = (free_port(), free_port());
    let mcp_url = format!("http://127.0.0.1:{mcp_port}/mcp");

    let ca_file = ca_path.display().to_string();
    let resource = mcp_url.clone();
    let app = TestApp::builder(Backend::Sqlite)
        .with_config(move |c| {
            c.oauth.cimd.allow_private_addresses = true;
            c.oauth.cimd.ca_file = ca_file;
            c.server.resources = vec![resource];
        })
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let user_id = flows::user(&app, "mcp-sdk@example.com").await;

    let run = tokio::process::Command::new("node")
        .arg("tests/mcp/e2e.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AUTHMD_URL", &app.base)
        .env("MCP_PORT", mcp_port.to_string())
        .env("DOC_PORT", doc_port.to_string())
        .env("DOC_CERT", &cert_path)
        .env("DOC_KEY", &key_path)
        .env("PERSON_EMAIL", "mcp-sdk@example.com")
        .env("PERSON_PASSWORD", flows::PASSWORD)
        .env("RS_CLIENT_ID", &rs.id)
        .env("RS_CLIENT_SECRET", rs.secret.as_deref().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(90), run)
        .await
        .expect("the MCP run finishes within 90 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("{stdout}");
    for step in [
        "ok authorization request uses the document URL as client_id, no registration",
        "ok consent page names the client and the document host",
        "ok code exchanged for an access and a refresh token",
        "ok tool call authorised by introspection",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    assert!(stdout.contains(&format!("SUB {user_id}")), "{stdout}");
    // The client is known by its document, not by a registration.
    let doc_url = format!("https://localhost:{doc_port}/oauth/client.json");
    let stored = authmd::domain::clients::find(&mut app.state.db.get().unwrap(), &doc_url)
        .unwrap()
        .expect("the document client is stored");
    assert!(stored.is_public);
    assert_eq!(
        flows::audit_count(&app, "client.created").await,
        1,
        "only the resource server was created"
    );
}
