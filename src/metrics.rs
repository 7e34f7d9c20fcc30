//! Prometheus metrics for `GET /metrics` (`metrics.enabled`, behind `metrics.token`), in the
//! text exposition format, through the Prometheus project's own client (`prometheus-client`).
//!
//! One process-wide set ([`metrics`]): the counters are atomics, so counting costs a few
//! nanoseconds and needs no state threaded through every layer. Labels have bounded values
//! only (route patterns, never raw paths; grant type names; status codes), so no caller can grow
//! the set without end.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/api/tokens/{id}`), or `unmatched`.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    pub grant_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BatchLabels {
    /// What the batch held: `sqlite_writes` (the SQLite writer's group commits),
    /// `introspection_reads`, `client_reads` and `token_inserts` (PostgreSQL's batched
    /// client_credentials reads and inserts).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActiveLabels {
    /// `true` or `false`: what introspection answered.
    pub active: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 8))
}

/// Everything `/metrics` reports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub tokens_issued: Family<GrantLabels, Counter>,
    /// The two series of the `introspections` family (inactive, active), made once: an
    /// introspection then counts with one atomic add instead of formatting a label and looking
    /// it up under the family's lock.
    introspection_answers: [Counter; 2],
    pub rate_limited: Family<RouteLabels, Counter>,
    pub mail_failures: Counter,
    pub batch_size: Family<BatchLabels, Histogram, fn() -> Histogram>,
    pub pool_connections: Gauge,
    pub pool_idle: Gauge,
    pub pool_max: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("authmd");
        let introspections = Family::<ActiveLabels, Counter>::default();
        let answer = |active: bool| {
            introspections
                .get_or_create(&ActiveLabels {
                    active: active.to_string(),
                })
                .clone()
        };
        let m = Self {
            registry: Registry::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            tokens_issued: Family::default(),
            introspection_answers: [answer(false), answer(true)],
            rate_limited: Family::default(),
            mail_failures: Counter::default(),
            batch_size: Family::new_with_constructor(batch_histogram as fn() -> Histogram),
            pool_connections: Gauge::default(),
            pool_idle: Gauge::default(),
            pool_max: Gauge::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern, method and status",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by route pattern",
            m.latency.clone(),
        );
        registry.register(
            "tokens_issued",
            "Token endpoint answers that issued tokens, by grant type",
            m.tokens_issued.clone(),
        );
        registry.register(
            "introspections",
            "Introspection answers, by whether the token was active",
            introspections,
        );
        registry.register(
            "rate_limited",
            "Requests refused with 429, by route pattern",
            m.rate_limited.clone(),
        );
        registry.register(
            "mail_failures",
            "Messages the mail transport could not send",
            m.mail_failures.clone(),
        );
        registry.register(
            "batch_size",
            "Requests per batch: the SQLite writer's group commits, introspection's reads, \
             PostgreSQL's token inserts",
            m.batch_size.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Open database connections in the pool",
            m.pool_connections.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections in the pool (0 with connections at the maximum: saturated)",
            m.pool_idle.clone(),
        );
        registry.register(
            "db_pool_max_connections",
            "The pool's maximum size",
            m.pool_max.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one introspection answer, active or not.
    pub fn introspected(&self, active: bool) {
        self.introspection_answers[usize::from(active)].inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_in_the_text_format() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                route: "/oauth2/token".into(),
                method: "POST".into(),
                status: 200,
            })
            .inc();
        m.tokens_issued
            .get_or_create(&GrantLabels {
                grant_type: "client_credentials".into(),
            })
            .inc_by(2);
        m.latency
            .get_or_create(&RouteLabels {
                route: "/oauth2/token".into(),
            })
            .observe(0.002);
        m.introspected(true);
        m.introspected(true);
        m.introspected(false);
        let text = m.render();
        assert!(
            text.contains("authmd_introspections_total{active=\"true\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("authmd_introspections_total{active=\"false\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "authmd_http_requests_total{route=\"/oauth2/token\",method=\"POST\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("authmd_tokens_issued_total{grant_type=\"client_credentials\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("authmd_http_request_duration_seconds_count{route=\"/oauth2/token\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
