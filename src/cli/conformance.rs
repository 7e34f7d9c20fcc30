//! `authmd conformance URL`: walks a live auth.md service as an agent following AUTH.md v0.6
//! would — discovery, anonymous registration, the assertion exchange, claim initiation, the
//! polling answers, `service_auth`, error shapes — and prints one line per requirement.
//!
//! It needs nothing from the service but HTTP: point it at any implementation. It never
//! completes a claim (that needs a person), so the `user_code` expiry and the post-claim
//! exchange are reported as skipped. A `[MUST]` failure makes the exit code 1.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

/// How strongly AUTH.md (or an RFC it points to) asks for something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Must,
    Should,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// One requirement checked.
#[derive(Debug, Clone)]
pub struct Check {
    pub id: &'static str,
    pub level: Level,
    pub what: &'static str,
    pub outcome: Outcome,
}

impl Check {
    /// The printed line: `PASS  [MUST]   3a  anonymous registration answers …`.
    pub fn line(&self) -> String {
        let (verdict, why) = match &self.outcome {
            Outcome::Pass => ("PASS", String::new()),
            Outcome::Fail(why) => ("FAIL", format!(" — {why}")),
            Outcome::Skip(why) => ("SKIP", format!(" — {why}")),
        };
        let level = match self.level {
            Level::Must => "[MUST]  ",
            Level::Should => "[SHOULD]",
        };
        format!("{verdict}  {level} {:<4} {}{why}", self.id, self.what)
    }
}

/// Every check, in the order an agent meets them.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn record(&mut self, id: &'static str, level: Level, what: &'static str, outcome: Outcome) {
        self.checks.push(Check {
            id,
            level,
            what,
            outcome,
        });
    }

    fn check(
        &mut self,
        id: &'static str,
        level: Level,
        what: &'static str,
        result: Result<(), String>,
    ) -> bool {
        let passed = result.is_ok();
        let outcome = match result {
            Ok(()) => Outcome::Pass,
            Err(why) => Outcome::Fail(why),
        };
        self.record(id, level, what, outcome);
        passed
    }

    /// Whether every `[MUST]` passed.
    pub fn conforms(&self) -> bool {
        !self
            .checks
            .iter()
            .any(|c| c.level == Level::Must && matches!(c.outcome, Outcome::Fail(_)))
    }

    pub fn failed(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
            .collect()
    }
}

/// An answer: status, `Cache-Control`, and the JSON body (`Null` when not JSON).
struct Answer {
    status: u16,
    cache_control: String,
    body: Value,
}

struct Agent {
    http: reqwest::Client,
}

impl Agent {
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, String> {
        let resp = request
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        let cache_control = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok(Answer {
            status,
            cache_control,
            body,
        })
    }

    async fn get(&self, url: &str) -> Result<Answer, String> {
        self.send(self.http.get(url)).await
    }

    async fn post_json(&self, url: &str, body: &Value) -> Result<Answer, String> {
        self.send(self.http.post(url).json(body)).await
    }

    async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<Answer, String> {
        self.send(self.http.post(url).form(form)).await
    }
}

fn string<'a>(v: &'a Value, field: &str) -> Result<&'a str, String> {
    v[field]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{field} is missing or not a string"))
}

fn rfc3339(v: &Value, field: &str) -> Result<(), String> {
    let s = string(v, field)?;
    chrono::DateTime::parse_from_rfc3339(s)
        .map(drop)
        .map_err(|_| format!("{field} is not an RFC 3339 time: {s:?}"))
}

fn string_array(v: &Value, field: &str) -> Result<(), String> {
    match v[field].as_array() {
        Some(a) if a.iter().all(Value::is_string) => Ok(()),
        _ => Err(format!("{field} is not an array of strings")),
    }
}

fn status(a: &Answer, want: u16) -> Result<(), String> {
    if a.status == want {
        Ok(())
    } else {
        Err(format!("status {} (wanted {want}): {}", a.status, a.body))
    }
}

/// An error answer: `status`, and `error` one of `codes` with an `error_description`.
fn error_shape(a: &Answer, want: u16, codes: &[&str]) -> Result<(), String> {
    status(a, want)?;
    let code = string(&a.body, "error")?;
    if !codes.contains(&code) {
        return Err(format!("error {code:?} (wanted {})", codes.join(" or ")));
    }
    string(&a.body, "error_description").map(drop)
}

/// The RFC 8628-shaped ceremony block.
fn ceremony(block: &Value) -> Result<(), String> {
    let code = string(block, "user_code")?;
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("user_code is not 6 digits: {code:?}"));
    }
    string(block, "verification_uri")?;
    for field in ["expires_in", "interval"] {
        if !block[field].is_i64() {
            return Err(format!("{field} is not a number of seconds"));
        }
    }
    Ok(())
}

/// The `iss` of a JWT, unverified.
fn jwt_issuer(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["iss"].as_str().map(str::to_owned)
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLAIM_GRANT: &str = "urn:workos:agent-auth:grant-type:claim";

/// Walks the service at `base` (its authorization server's issuer, or a resource server whose
/// protected-resource metadata names it). `email` is the address claims are started for.
pub async fn check(base: &str, email: &str) -> Report {
    let mut r = Report::default();
    let agent = Agent {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client builds"),
    };
    let base = base.trim_end_matches('/');
    use Level::{Must, Should};

    // Step 1a: protected resource metadata names the authorization server.
    let mut issuer = base.to_owned();
    match agent
        .get(&format!("{base}/.well-known/oauth-protected-resource"))
        .await
    {
        Ok(prm) => {
            let ok = r.check(
                "1a",
                Should,
                "protected resource metadata has resource and authorization_servers",
                status(&prm, 200)
                    .and_then(|()| string(&prm.body, "resource").map(drop))
                    .and_then(|()| string_array(&prm.body, "authorization_servers")),
            );
            if ok {
                if let Some(first) = prm.body["authorization_servers"][0].as_str() {
                    issuer = first.trim_end_matches('/').to_owned();
                }
            }
        }
        Err(e) => {
            r.check("1a", Should, "protected resource metadata", Err(e));
        }
    }

    // Step 1b: authorization server metadata with the agent_auth block.
    let meta = match agent
        .get(&format!("{issuer}/.well-known/oauth-authorization-server"))
        .await
    {
        Ok(a) if a.status == 200 => a.body,
        Ok(a) => {
            r.check("1b", Must, "authorization server metadata", status(&a, 200));
            return r;
        }
        Err(e) => {
            r.check("1b", Must, "authorization server metadata", Err(e));
            return r;
        }
    };
    r.check(
        "1b",
        Must,
        "metadata has issuer, token_endpoint, revocation_endpoint, grant_types_supported",
        ["issuer", "token_endpoint", "revocation_endpoint"]
            .iter()
            .try_for_each(|f| string(&meta, f).map(drop))
            .and_then(|()| string_array(&meta, "grant_types_supported")),
    );
    let grants: Vec<&str> = meta["grant_types_supported"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    r.check(
        "1c",
        Must,
        "grant_types_supported lists the JWT-bearer and claim grants",
        if grants.contains(&JWT_BEARER) && grants.contains(&CLAIM_GRANT) {
            Ok(())
        } else {
            Err(format!("got {grants:?}"))
        },
    );
    let block = &meta["agent_auth"];
    r.check(
        "1d",
        Must,
        "agent_auth has skill, identity_endpoint, claim_endpoint, identity_types_supported",
        ["skill", "identity_endpoint", "claim_endpoint"]
            .iter()
            .try_for_each(|f| string(block, f).map(drop))
            .and_then(|()| string_array(block, "identity_types_supported")),
    );
    let (Ok(token_endpoint), Ok(identity_endpoint), Ok(claim_endpoint)) = (
        string(&meta, "token_endpoint").map(str::to_owned),
        string(block, "identity_endpoint").map(str::to_owned),
        string(block, "claim_endpoint").map(str::to_owned),
    ) else {
        return r;
    };
    let revocation_endpoint = string(&meta, "revocation_endpoint")
        .unwrap_or_default()
        .to_owned();
    let types: Vec<&str> = block["identity_types_supported"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Ok(skill) = string(block, "skill") {
        let fetched = agent.http.get(skill).send().await;
        r.check(
            "1e",
            Should,
            "agent_auth.skill (the auth.md document) is served",
            match fetched {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => Err(format!("status {}", resp.status())),
                Err(e) => Err(e.to_string()),
            },
        );
    }

    // Errors at /agent/identity are AUTH.md's.
    match agent
        .post_json(&identity_endpoint, &json!({"type": "no_such_type"}))
        .await
    {
        Ok(a) => {
            r.check(
                "E1",
                Must,
                "an unknown registration type is a 4xx with error and error_description",
                if (400..500).contains(&a.status) {
                    string(&a.body, "error")
                        .and_then(|_| string(&a.body, "error_description"))
                        .map(drop)
                } else {
                    Err(format!("status {}", a.status))
                },
            );
        }
        Err(e) => {
            r.check("E1", Must, "an unknown registration type", Err(e));
        }
    }

    // Step 3: anonymous registration.
    let anonymous = match agent
        .post_json(&identity_endpoint, &json!({"type": "anonymous"}))
        .await
    {
        Ok(a) if a.status == 200 => Some(a.body),
        Ok(a) if !types.contains(&"anonymous") => {
            r.check(
                "3a",
                Must,
                "anonymous registration off: anonymous_not_enabled",
                error_shape(&a, 400, &["anonymous_not_enabled"]),
            );
            None
        }
        Ok(a) => {
            r.check("3a", Must, "anonymous registration", status(&a, 200));
            None
        }
        Err(e) => {
            r.check("3a", Must, "anonymous registration", Err(e));
            None
        }
    };
    if let Some(reg) = &anonymous {
        r.check(
            "3a",
            Must,
            "anonymous registration answers its fields (times in RFC 3339)",
            (|| {
                for f in [
                    "registration_id",
                    "identity_assertion",
                    "claim_url",
                    "claim_token",
                ] {
                    string(reg, f)?;
                }
                if reg["registration_type"] != "anonymous" {
                    return Err(format!(
                        "registration_type {} (wanted anonymous)",
                        reg["registration_type"]
                    ));
                }
                rfc3339(reg, "assertion_expires")?;
                rfc3339(reg, "claim_token_expires")?;
                string_array(reg, "pre_claim_scopes")?;
                string_array(reg, "post_claim_scopes")
            })(),
        );
        let assertion = string(reg, "identity_assertion")
            .unwrap_or_default()
            .to_owned();
        let meta_issuer = string(&meta, "issuer").unwrap_or_default().to_owned();
        r.check(
            "3b",
            Should,
            "the identity assertion is a JWT whose iss is the metadata issuer",
            match jwt_issuer(&assertion) {
                Some(iss) if iss == meta_issuer => Ok(()),
                Some(iss) => Err(format!("iss {iss:?}")),
                None => Err("not a JWT".to_owned()),
            },
        );

        // Step 5: the exchange, twice; no refresh token.
        let form = [
            ("grant_type", JWT_BEARER),
            ("assertion", assertion.as_str()),
        ];
        let mut access = None;
        for (id, what) in [
            (
                "5a",
                "the identity assertion exchanges for an access token (no-store, no refresh token)",
            ),
            (
                "5b",
                "the same identity assertion exchanges again before it expires",
            ),
        ] {
            let result = match agent.post_form(&token_endpoint, &form).await {
                Ok(a) => status(&a, 200)
                    .and_then(|()| string(&a.body, "access_token").map(drop))
                    .and_then(|()| match a.body["token_type"].as_str() {
                        Some(t) if t.eq_ignore_ascii_case("bearer") => Ok(()),
                        _ => Err("token_type is not Bearer".to_owned()),
                    })
                    .and_then(|()| {
                        if a.body.get("refresh_token").is_some() {
                            Err("a refresh_token was returned".to_owned())
                        } else if !a.cache_control.contains("no-store") {
                            Err("Cache-Control is not no-store".to_owned())
                        } else {
                            access = a.body["access_token"].as_str().map(str::to_owned);
                            Ok(())
                        }
                    }),
                Err(e) => Err(e),
            };
            r.check(id, Must, what, result);
        }
        if let (Some(token), false) = (&access, revocation_endpoint.is_empty()) {
            let result = match agent
                .post_form(
                    &revocation_endpoint,
                    &[("token", token), ("token_type_hint", "access_token")],
                )
                .await
            {
                Ok(a) => status(&a, 200),
                Err(e) => Err(e),
            };
            r.check(
                "R1",
                Must,
                "the access token is revoked at revocation_endpoint (200)",
                result,
            );
        }

        // Step 4: claim initiation and polling.
        let claim_token = string(reg, "claim_token").unwrap_or_default().to_owned();
        let started = agent
            .post_json(
                &claim_endpoint,
                &json!({"claim_token": claim_token, "email": email}),
            )
            .await;
        let first_uri = match &started {
            Ok(a) => {
                r.check(
                    "4a",
                    Must,
                    "claim initiation answers claim_attempt_id, status initiated, expires_at and a claim_attempt block",
                    status(a, 200).and_then(|()| {
                        string(&a.body, "claim_attempt_id")?;
                        if a.body["status"] != "initiated" {
                            return Err(format!("status {}", a.body["status"]));
                        }
                        rfc3339(&a.body, "expires_at")?;
                        ceremony(&a.body["claim_attempt"])
                    }),
                );
                a.body["claim_attempt"]["verification_uri"]
                    .as_str()
                    .map(str::to_owned)
            }
            Err(e) => {
                r.check("4a", Must, "claim initiation", Err(e.clone()));
                None
            }
        };
        let poll = [
            ("grant_type", CLAIM_GRANT),
            ("claim_token", claim_token.as_str()),
        ];
        let result = match agent.post_form(&token_endpoint, &poll).await {
            Ok(a) => error_shape(&a, 400, &["authorization_pending"]),
            Err(e) => Err(e),
        };
        r.check(
            "4b",
            Must,
            "polling before the person confirms: authorization_pending",
            result,
        );
        let result = match agent.post_form(&token_endpoint, &poll).await {
            Ok(a) => error_shape(&a, 400, &["slow_down"]),
            Err(e) => Err(e),
        };
        r.check(
            "4c",
            Should,
            "polling again at once (faster than interval): slow_down",
            result,
        );
        let again = agent
            .post_json(
                &claim_endpoint,
                &json!({"claim_token": claim_token, "email": email}),
            )
            .await;
        r.check(
            "4d",
            Must,
            "re-initiating the claim mints a fresh ceremony",
            match again {
                Ok(a) => status(&a, 200).and_then(|()| {
                    ceremony(&a.body["claim_attempt"])?;
                    if a.body["claim_attempt"]["verification_uri"].as_str() == first_uri.as_deref()
                    {
                        Err("the same verification_uri came back".to_owned())
                    } else {
                        Ok(())
                    }
                }),
                Err(e) => Err(e),
            },
        );
        r.record(
            "4e",
            Must,
            "expired_token once the user_code window closes",
            Outcome::Skip("needs the window (typically 10 minutes) to pass".to_owned()),
        );
        r.record(
            "4f",
            Must,
            "after the person confirms: an access token plus identity_assertion",
            Outcome::Skip("needs a person to type the code".to_owned()),
        );
    }

    // service_auth.
    if types.contains(&"service_auth") {
        let result = match agent
            .post_json(
                &identity_endpoint,
                &json!({"type": "service_auth", "login_hint": email}),
            )
            .await
        {
            Ok(a) => status(&a, 200).and_then(|()| {
                if a.body["registration_type"] != "service_auth" {
                    return Err(format!("registration_type {}", a.body["registration_type"]));
                }
                if a.body.get("identity_assertion").is_some() {
                    return Err("an identity_assertion before the claim".to_owned());
                }
                string(&a.body, "claim_token")?;
                rfc3339(&a.body, "claim_token_expires")?;
                ceremony(&a.body["claim"])
            }),
            Err(e) => Err(e),
        };
        r.check(
            "3c",
            Must,
            "service_auth answers a claim token and a claim block, no assertion",
            result,
        );
        let result = match agent
            .post_json(
                &identity_endpoint,
                &json!({"type": "service_auth", "login_hint": "not an address"}),
            )
            .await
        {
            Ok(a) => error_shape(&a, 400, &["invalid_login_hint"]),
            Err(e) => Err(e),
        };
        r.check(
            "3d",
            Must,
            "a login_hint that is not an email: invalid_login_hint",
            result,
        );
    } else {
        r.record(
            "3c",
            Must,
            "service_auth",
            Outcome::Skip("not in identity_types_supported".to_owned()),
        );
    }

    // More error shapes.
    let result = match agent
        .post_json(
            &claim_endpoint,
            &json!({"claim_token": "clm_conformance_unknown", "email": email}),
        )
        .await
    {
        Ok(a) => error_shape(&a, 401, &["invalid_claim_token"]),
        Err(e) => Err(e),
    };
    r.check(
        "E2",
        Must,
        "an unknown claim_token at the claim endpoint: 401 invalid_claim_token",
        result,
    );
    let result = match agent
        .post_form(
            &token_endpoint,
            &[("grant_type", JWT_BEARER), ("assertion", "not.a.jwt")],
        )
        .await
    {
        Ok(a) => error_shape(&a, 400, &["invalid_grant"]),
        Err(e) => Err(e),
    };
    r.check(
        "E3",
        Must,
        "a bad assertion at the token endpoint: invalid_grant",
        result,
    );
    let result = match agent
        .post_form(
            &token_endpoint,
            &[("grant_type", "urn:example:no-such-grant")],
        )
        .await
    {
        Ok(a) => error_shape(&a, 400, &["unsupported_grant_type"]),
        Err(e) => Err(e),
    };
    r.check(
        "E4",
        Must,
        "an unknown grant_type: unsupported_grant_type",
        result,
    );
    let result = match agent
        .post_form(
            &token_endpoint,
            &[
                ("grant_type", CLAIM_GRANT),
                ("claim_token", "clm_conformance_unknown"),
            ],
        )
        .await
    {
        Ok(a) => error_shape(&a, 400, &["expired_token", "invalid_grant"]),
        Err(e) => Err(e),
    };
    r.check(
        "E5",
        Must,
        "polling with an unknown claim_token: expired_token or invalid_grant",
        result,
    );
    r
}

/// The subcommand: prints the report; exit code 1 when a `[MUST]` failed.
pub fn run(url: &str, email: &str) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authmd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(check(url, email));
    for c in &report.checks {
        println!("{}", c.line());
    }
    let count = |f: fn(&Outcome) -> bool| report.checks.iter().filter(|c| f(&c.outcome)).count();
    println!(
        "{} passed, {} failed, {} skipped: {}",
        count(|o| *o == Outcome::Pass),
        count(|o| matches!(o, Outcome::Fail(_))),
        count(|o| matches!(o, Outcome::Skip(_))),
        if report.conforms() {
            "conforms to AUTH.md v0.6 as far as checked"
        } else {
            "does not conform"
        }
    );
    if report.conforms() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
