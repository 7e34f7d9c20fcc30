//! What operators watch: `GET /metrics` (Prometheus text format, behind `metrics.token`).
//! The metrics are process-wide and the tests of this binary run side by side, so the checks
//! look for series and lower bounds, never exact totals.

use serde_json::json;

use crate::flows;
use crate::harness::{Backend, TestApp};

crate::db_tests!(metrics_report_requests_tokens_and_refusals);

const METRICS_TOKEN: &str = "metrics-scraper-token-0123456789abcdef";

/// The value of the first sample line that starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_report_requests_tokens_and_refusals(backend: Backend) {
    let off = TestApp::start(backend).await;
    assert_eq!(off.get("/metrics").await.status(), 404, "off by default");

    let app = TestApp::builder(backend)
        .with_config(|c| {
            c.metrics.enabled = true;
            c.metrics.token = METRICS_TOKEN.to_owned();
            c.rate_limit.register_per_ip = 1;
        })
        .start()
        .await;
    let rs = flows::resource_server(&app).await;
    let client = flows::confidential(&app).await;
    let (status, cc) = flows::token(&app, &client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200);
    flows::introspect(&app, &rs, cc["access_token"].as_str().unwrap()).await;
    flows::introspect(&app, &rs, "at_nothing").await;
    for _ in 0..2 {
        app.post_json(
            "/oauth2/register",
            &json!({"redirect_uris": ["https://app.example/cb"]}),
        )
        .await;
    }

    let scrape = |token: Option<&'static str>| {
        let mut req = app.client.get(app.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(scrape(None).await.unwrap().status(), 401);
    assert_eq!(scrape(Some("wrong")).await.unwrap().status(), 401);
    let resp = scrape(Some(METRICS_TOKEN)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = resp.text().await.unwrap();
    for (series, at_least) in [
        (
            "authmd_http_requests_total{route=\"/oauth2/token\",method=\"POST\",status=\"200\"}",
            1.0,
        ),
        (
            "authmd_tokens_issued_total{grant_type=\"client_credentials\"}",
            1.0,
        ),
        ("authmd_introspections_total{active=\"true\"}", 1.0),
        ("authmd_introspections_total{active=\"false\"}", 1.0),
        ("authmd_rate_limited_total{route=\"/oauth2/register\"}", 1.0),
        (
            "authmd_http_request_duration_seconds_count{route=\"/oauth2/introspect\"}",
            2.0,
        ),
        ("authmd_db_pool_max_connections", 1.0),
        ("authmd_batch_size_count{kind=\"introspection_reads\"}", 1.0),
        // The token's insert: a group commit of SQLite's writer, or PostgreSQL's batched
        // client_credentials inserts.
        (
            match backend {
                Backend::Sqlite => "authmd_batch_size_count{kind=\"sqlite_writes\"}",
                Backend::Postgres => "authmd_batch_size_count{kind=\"token_inserts\"}",
            },
            1.0,
        ),
    ] {
        let value = sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        assert!(value >= at_least, "{series} = {value}");
    }
    // The client's read: on PostgreSQL batched with other requests' reads (on SQLite it is
    // part of the writer's job; the metrics are the process's, shared by the tests running in
    // it, so that a SQLite server made no such batch cannot be seen from here).
    if backend == Backend::Postgres {
        let client_reads = sample(&text, "authmd_batch_size_count{kind=\"client_reads\"}");
        assert!(client_reads >= Some(1.0), "{text}");
    }
    // Raw paths never become labels: a probe of random paths adds no series for them.
    app.get("/no/such/path/abc123").await;
    let text = scrape(Some(METRICS_TOKEN))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("abc123"));
    assert!(text.contains("route=\"unmatched\""), "{text}");
}
