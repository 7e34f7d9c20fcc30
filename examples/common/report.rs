//! What both load generators print: one JSON line per phase.

use std::time::Duration;

use serde_json::{json, Value};

/// The phase's line: requests/s over `elapsed`, p50 and p99 of the timed answers, errors.
pub fn report(path: &str, latencies: &mut [Duration], errors: usize, elapsed: Duration) -> Value {
    latencies.sort();
    let pct = |p: f64| {
        if latencies.is_empty() {
            0.0
        } else {
            latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]
                .as_secs_f64()
                * 1000.0
        }
    };
    json!({
        "path": path,
        "requests": latencies.len() + errors,
        "seconds": elapsed.as_secs_f64(),
        "rps": (latencies.len() + errors) as f64 / elapsed.as_secs_f64(),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": errors,
    })
}
