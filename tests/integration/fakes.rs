//! Real protocol peers on loopback: an SMTP listener that records every message, and an agent
//! provider that serves a JWKS and signs ID-JAGs and logout tokens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A minimal SMTP server: greets, accepts MAIL/RCPT/DATA, stores each message, answers 250.
/// While [`SmtpSink::set_reachable`] is off it closes every connection before its greeting,
/// as a mail server that is down or cut off looks to a client.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (store, is_down) = (messages.clone(), down.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                if is_down.load(Ordering::SeqCst) {
                    drop(socket);
                    continue;
                }
                tokio::spawn(session(socket, store.clone()));
            }
        });
        Self {
            port,
            messages,
            down,
        }
    }

    pub fn set_reachable(&self, reachable: bool) {
        self.down.store(!reachable, Ordering::SeqCst);
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..100 {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("expected {n} messages, got {}", self.messages().len());
    }
}

async fn session(socket: tokio::net::TcpStream, store: Arc<Mutex<Vec<String>>>) {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250 sink\r\n"
        } else if command == "DATA" {
            let _ = write.write_all(b"354 go ahead\r\n").await;
            let mut message = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                message.push_str(&line);
            }
            store.lock().unwrap().push(message);
            b"250 queued\r\n"
        } else if command == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 ok\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Undoes quoted-printable soft breaks and escapes.
pub fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The claim-page link in a recorded message, as a person would click it.
pub fn claim_link(message: &str) -> String {
    let text = decode_qp(message);
    let start = text
        .find("http")
        .and_then(|_| text.find("/agent/auth/claim/view?token="))
        .expect("claim link in the email");
    let begin = text[..start].rfind("http").unwrap();
    let end = text[start..]
        .find(|c: char| c.is_whitespace() || c == '<' || c == '"')
        .map_or(text.len(), |e| start + e);
    text[begin..end].to_owned()
}

/// An agent provider: serves its JWKS over HTTP on loopback and signs whatever a test asks.
pub struct TestProvider {
    pub issuer: String,
    pub jwks_uri: String,
    pub kid: String,
    key: EncodingKey,
    pub fetches: Arc<AtomicUsize>,
}

impl TestProvider {
    pub async fn start() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let kid = format!("k{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
        .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = jwks.clone();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(resp.as_bytes()).await;
                });
            }
        });
        Self {
            jwks_uri: format!("{issuer}/jwks"),
            issuer,
            kid,
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            fetches,
        }
    }

    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// A valid ID-JAG for `aud`, with `changes` merged over the defaults.
    pub fn id_jag(&self, aud: &str, now: i64, changes: Value) -> String {
        let mut claims = json!({
            "iss": self.issuer, "sub": "agent-user-1", "aud": aud,
            "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string(),
            "email": "pat@example.com", "email_verified": true,
        });
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        self.sign("oauth-id-jag+jwt", &claims)
    }

    pub fn logout(&self, aud: &str, now: i64, sub: &str) -> String {
        self.sign(
            "logout+jwt",
            &json!({
                "iss": self.issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + 120,
                "jti": uuid::Uuid::new_v4().to_string(),
                "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
            }),
        )
    }
}

/// One answer of a [`DocumentHost`]: status, extra header lines, body, and a delay before it.
#[derive(Clone)]
pub struct Served {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay_ms: u64,
}

impl Served {
    pub fn json(body: &Value) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
            delay_ms: 0,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A web server on loopback serving whatever each path is set to, counting requests per path:
/// where Client ID Metadata Documents are published in tests.
#[derive(Clone)]
pub struct DocumentHost {
    pub base: String,
    routes: Arc<Mutex<std::collections::HashMap<String, Served>>>,
    hits: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

impl DocumentHost {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let host = Self {
            base,
            routes: Arc::default(),
            hits: Arc::default(),
        };
        let (routes, hits) = (host.routes.clone(), host.hits.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (routes, hits) = (routes.clone(), hits.clone());
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut read = BufReader::new(read);
                    let mut request_line = String::new();
                    if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    // The headers, up to the blank line; a GET has no body.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .to_owned();
                    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let served = routes.lock().unwrap().get(&path).cloned();
                    let served = served.unwrap_or(Served {
                        status: 404,
                        headers: vec![],
                        body: "not found".into(),
                        delay_ms: 0,
                    });
                    if served.delay_ms > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(served.delay_ms)).await;
                    }
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        served.status,
                        served.body.len()
                    );
                    for (k, v) in &served.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = write.write_all(head.as_bytes()).await;
                    let _ = write.write_all(served.body.as_bytes()).await;
                });
            }
        });
        host
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn serve(&self, path: &str, served: Served) {
        self.routes.lock().unwrap().insert(path.to_owned(), served);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}
