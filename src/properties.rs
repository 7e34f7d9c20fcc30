//! Property tests: the parsers and matchers that face the network, run over generated input
//! (`proptest`). Each property is a rule the rest of the code relies on, not an example; a
//! failure prints the smallest input that breaks it.

use proptest::prelude::*;

use crate::config::Config;
use crate::domain::clients::redirect_matches;
use crate::domain::credentials::{recognise, Kind};
use crate::domain::keys::KeyRing;
use crate::domain::scope::{self, Scopes};
use crate::http::extract::{FormLimit, FormPairs, Params};
use crate::http::middleware::{json_is_clean, url_is_clean};

fn config() -> &'static Config {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(Config::defaults)
}

fn ring() -> &'static KeyRing {
    static RING: std::sync::OnceLock<KeyRing> = std::sync::OnceLock::new();
    RING.get_or_init(KeyRing::for_tests)
}

/// A form's pairs, or the error answer's status and body.
type FormRead = Result<Vec<(String, String)>, (u16, Vec<u8>)>;

/// What `web::Form<Vec<(String, String)>>` and [`FormPairs`] make of one request: the pairs,
/// or the error answer's status and body. Both are configured as `http::serve` configures them.
fn read_form(
    body: &[u8],
    content_type: &str,
    length: Option<String>,
    limit: usize,
    fast: bool,
) -> FormRead {
    use actix_web::{test::TestRequest, web, FromRequest};
    let mut request = TestRequest::post()
        .uri("/oauth2/introspect")
        .insert_header(("content-type", content_type))
        .app_data(FormLimit(limit))
        .app_data(
            web::FormConfig::default()
                .limit(limit)
                .error_handler(crate::http::response::payload_error),
        )
        .set_payload(body.to_vec());
    if let Some(length) = length {
        request = request.insert_header(("content-length", length));
    }
    let (req, mut payload) = request.to_http_parts();
    let read = async {
        if fast {
            FormPairs::from_request(&req, &mut payload)
                .await
                .map(FormPairs::into_inner)
        } else {
            web::Form::<Vec<(String, String)>>::from_request(&req, &mut payload)
                .await
                .map(web::Form::into_inner)
        }
    };
    actix_web::rt::System::new().block_on(read).map_err(|e| {
        let answer = e.as_response_error().error_response();
        let body = actix_web::body::to_bytes(answer.into_body());
        let body = actix_web::rt::System::new()
            .block_on(body)
            .unwrap_or_default();
        (e.as_response_error().status_code().as_u16(), body.to_vec())
    })
}

/// A host name, a path and a query of the shapes redirect URIs have.
fn uri_parts() -> impl Strategy<Value = (String, String, String)> {
    (
        "[a-z]{1,10}(\\.[a-z]{2,5}){1,2}",
        "(/[a-zA-Z0-9_.-]{0,8}){0,3}",
        prop_oneof![Just(String::new()), "\\?[a-z]{1,5}=[a-z0-9]{0,5}"],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every registered URI matches itself, and an https URI matches nothing else: not with
    /// anything appended, not another path, not another case of the host.
    #[test]
    fn https_redirects_match_exactly((host, path, query) in uri_parts(), extra in "[a-zA-Z0-9/#?.=&_-]{1,12}") {
        let registered = format!("https://{host}{path}{query}");
        prop_assert!(redirect_matches(&registered, &registered));
        let appended = format!("{registered}{extra}");
        prop_assert!(!redirect_matches(&registered, &appended));
        let other_host = format!("https://{}{path}{query}", host.to_uppercase());
        prop_assert!(!redirect_matches(&registered, &other_host) || other_host == registered);
    }

    /// RFC 8252 §7.3: a loopback redirect matches on any port, and on nothing else that differs.
    #[test]
    fn loopback_redirects_ignore_only_the_port(
        host in prop_oneof![Just("127.0.0.1"), Just("[::1]"), Just("localhost")],
        p1 in 1u16.., p2 in 1u16..,
        path in "(/[a-z]{1,6}){1,2}",
        other in "(/[a-z]{1,6}){1,2}",
    ) {
        let registered = format!("http://{host}:{p1}{path}");
        let u1 = format!("http://{host}:{p2}{path}");
        prop_assert!(redirect_matches(&registered, &u1));
        let u2 = format!("http://{host}{path}");
        prop_assert!(redirect_matches(&registered, &u2));
        let u3 = format!("http://{host}:{p2}{path}#frag");
        prop_assert!(!redirect_matches(&registered, &u3));
        let u4 = format!("https://{host}:{p2}{path}");
        prop_assert!(!redirect_matches(&registered, &u4));
        let u5 = format!("http://user:pw@{host}:{p2}{path}");
        prop_assert!(!redirect_matches(&registered, &u5));
        if other != path {
            let u6 = format!("http://{host}:{p2}{other}");
        prop_assert!(!redirect_matches(&registered, &u6));
        }
    }

    /// Scope strings: parsing never panics; what parses prints back to itself (sorted,
    /// deduplicated), and holds only RFC 6749 scope tokens.
    #[test]
    fn scopes_round_trip(s in "\\PC{0,40}") {
        if let Some(parsed) = Scopes::parse(&s) {
            let printed = parsed.to_string();
            prop_assert_eq!(Scopes::parse(&printed), Some(parsed.clone()));
            prop_assert!(parsed.iter().all(crate::config::is_scope_token));
        }
    }

    /// A registration's `scopes` never widen what its type grants.
    #[test]
    fn requested_scopes_never_widen(
        granted in proptest::collection::vec("[a-z]{1,4}\\.[a-z]{1,4}", 0..5),
        asked in proptest::collection::vec("[a-z]{1,4}\\.[a-z]{1,4}", 0..5),
    ) {
        let granted = Scopes::from_list(&granted);
        if let Ok(got) = scope::requested(&granted, Some(&asked)) {
            prop_assert!(got.is_subset(&granted));
            prop_assert!(!got.is_empty());
        }
    }

    /// Request parameters: a repeated name, a NUL or a replacement character (invalid UTF-8
    /// decoded) is refused; otherwise every parameter reads back as sent.
    #[test]
    fn parameters_refuse_repeats_and_bad_bytes(
        pairs in proptest::collection::vec(("[a-z_]{1,6}", "\\PC{0,12}|\\x00|\u{FFFD}"), 0..8),
    ) {
        let repeated = {
            let mut names: Vec<&String> = pairs.iter().map(|(k, _)| k).collect();
            names.sort();
            names.windows(2).any(|w| w[0] == w[1])
        };
        let bad = pairs.iter().any(|(_, v)| v.contains(['\0', '\u{FFFD}']));
        match Params::from_pairs(pairs.clone()) {
            Ok(params) => {
                prop_assert!(!repeated && !bad);
                for (k, v) in &pairs {
                    prop_assert_eq!(params.get(k), Some(v.as_str()));
                }
            }
            Err(_) => prop_assert!(repeated || bad),
        }
    }

    /// The JSON screen finds a NUL in any string value, however escaped, and passes the rest.
    #[test]
    fn json_screen_finds_nul_characters(s in "\\PC{0,20}", nul in any::<bool>(), nested in any::<bool>()) {
        let value = if nul { format!("{s}\0{s}") } else { s.clone() };
        let body = if nested {
            serde_json::json!({"outer": {"list": [value]}})
        } else {
            serde_json::json!({"field": value})
        };
        let bytes = serde_json::to_vec(&body).unwrap();
        prop_assert_eq!(json_is_clean(&bytes), !nul);
    }

    /// The URL screen refuses `%00` anywhere in the path or query, and nothing else.
    #[test]
    fn url_screen_finds_encoded_nul(
        segment in "[A-Za-z0-9%._~-]{0,12}",
        value in "[A-Za-z0-9%._~-]{0,12}",
        in_query in any::<bool>(),
        nul in any::<bool>(),
    ) {
        let (segment, value) = match (nul, in_query) {
            (true, false) => (format!("{segment}%00"), value),
            (true, true) => (segment, format!("%00{value}")),
            _ => (segment, value),
        };
        let uri: actix_web::http::Uri = format!("/x/{segment}?v={value}").parse().unwrap();
        let generated_nul = format!("{segment}?{value}").contains("%00");
        prop_assert_eq!(url_is_clean(&uri), !generated_nul);
        prop_assert!(!nul || generated_nul);
    }

    /// Any presented string is recognised by its prefix or not at all: never a panic, never a
    /// JWT kind without a signature by one of authmd's keys.
    #[test]
    fn presented_secrets_are_recognised_by_prefix_or_signature(
        s in "\\PC{0,60}",
        parts in proptest::collection::vec("[A-Za-z0-9_-]{0,40}", 3),
    ) {
        let _ = recognise(config(), ring(), &s);
        let jwt_like = parts.join(".");
        if let Some(p) = recognise(config(), ring(), &jwt_like) {
            prop_assert!(!matches!(p.kind, Kind::AccessJwt | Kind::IdentityAssertion));
        }
    }

    /// Configuration: any overlay text either loads or fails naming a key; never a panic.
    #[test]
    fn configuration_fails_naming_a_key(
        section in prop_oneof![Just("server"), Just("agent"), Just("tokens"), Just("tokens.prefixes"), Just("rate_limit"), Just("accounts")],
        key in "[a-z_]{1,24}",
        value in prop_oneof![
            "-?[0-9]{1,6}".prop_map(|v| v),
            "\\PC{0,12}".prop_map(|v| format!("{v:?}")),
            Just("true".to_owned()),
            Just("[]".to_owned()),
        ],
    ) {
        let text = format!("[{section}]\n{key} = {value}\n");
        if let Err(e) = Config::from_toml_overlay(&text) {
            prop_assert!(!e.key.is_empty(), "{}", e);
        }
    }

    /// Form bodies: [`FormPairs`] reads every body, Content-Type and Content-Length as
    /// `web::Form` does, the same pairs or the same error answer, at the limit and past it.
    #[test]
    fn form_bodies_read_as_web_form_reads_them(
        pairs in proptest::collection::vec(("[a-z_%+&=]{0,6}|\\PC{0,4}", "[a-zA-Z0-9%+&=~.]{0,12}|\\PC{0,6}"), 0..6),
        raw in proptest::collection::vec(any::<u8>(), 0..12),
        content_type in prop_oneof![
            4 => Just("application/x-www-form-urlencoded"),
            1 => Just("Application/X-WWW-Form-Urlencoded"),
            1 => Just("application/x-www-form-urlencoded; charset=utf-8"),
            1 => Just("application/x-www-form-urlencoded; charset=latin1"),
            1 => Just("application/json"),
            1 => Just("text/plain"),
        ],
        // Content-Length: the body's own (what a client sends), none, unreadable, or another.
        length in prop_oneof![
            4 => Just(None),
            1 => Just(Some("true".to_owned())),
            1 => (0usize..80).prop_map(|n| Some(n.to_string())),
        ],
        // The limit around the body's length, where an off-by-one would show.
        limit_offset in -3isize..4,
    ) {
        let mut body: Vec<u8> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes();
        body.extend_from_slice(&raw);
        let limit = body.len().saturating_add_signed(limit_offset).max(1);
        let form = read_form(&body, content_type, length.clone(), limit, false);
        let fast = read_form(&body, content_type, length, limit, true);
        prop_assert_eq!(fast, form);
    }
}
