//! Prometheus metrics in the text exposition format: requests and latency histograms per route
//! and status, and per-collection gauges read from the engine at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use deftech_vec::Database;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request counters and histograms.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut map = self.series.lock().expect("metrics lock");
        let s = map
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default();
        s.count += 1;
        s.sum += secs;
        for (b, bound) in s.buckets.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *b += 1;
            }
        }
    }

    /// The exposition text.
    pub fn render(&self, db: Option<&Database>) -> String {
        let mut out = String::new();
        let map = self.series.lock().expect("metrics lock");
        out.push_str(
            "# HELP deftech_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE deftech_http_requests_total counter\n");
        for ((route, method, status), s) in map.iter() {
            let _ = writeln!(
                out,
                "deftech_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
                escape(route),
                s.count
            );
        }
        out.push_str("# HELP deftech_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE deftech_http_request_duration_seconds histogram\n");
        for ((route, method, status), s) in map.iter() {
            let labels = format!(
                "route=\"{}\",method=\"{method}\",status=\"{status}\"",
                escape(route)
            );
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "deftech_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "deftech_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "deftech_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "deftech_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        drop(map);
        let Some(db) = db else { return out };
        let infos: Vec<_> = db
            .list_collections()
            .iter()
            .filter_map(|n| db.collection(n).ok())
            .map(|c| c.info())
            .collect();
        let gauge = |out: &mut String,
                     name: &str,
                     help: &str,
                     kind: &str,
                     f: &dyn Fn(&deftech_vec::CollectionInfo) -> f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for i in &infos {
                let _ = writeln!(out, "{name}{{collection=\"{}\"}} {}", escape(&i.name), f(i));
            }
        };
        gauge(
            &mut out,
            "deftech_collection_points",
            "Live points.",
            "gauge",
            &|i| i.points as f64,
        );
        gauge(
            &mut out,
            "deftech_collection_segments",
            "Segments (mutable and sealed).",
            "gauge",
            &|i| i.segments.len() as f64,
        );
        gauge(
            &mut out,
            "deftech_collection_wal_bytes",
            "Bytes held by WAL files.",
            "gauge",
            &|i| i.wal_bytes as f64,
        );
        gauge(
            &mut out,
            "deftech_collection_lsn",
            "Last applied log sequence number.",
            "gauge",
            &|i| i.lsn as f64,
        );
        gauge(
            &mut out,
            "deftech_collection_mapped_bytes",
            "Bytes of mapped segment files.",
            "gauge",
            &|i| i.segments.iter().map(|s| s.mapped_bytes).sum::<u64>() as f64,
        );
        gauge(
            &mut out,
            "deftech_optimizer_seals_total",
            "Mutable segments sealed.",
            "counter",
            &|i| i.optimizer.seals as f64,
        );
        gauge(
            &mut out,
            "deftech_optimizer_merges_total",
            "Segment merges and vacuums.",
            "counter",
            &|i| i.optimizer.merges as f64,
        );
        gauge(
            &mut out,
            "deftech_optimizer_errors_total",
            "Failed optimizer jobs.",
            "counter",
            &|i| i.optimizer.errors as f64,
        );
        gauge(
            &mut out,
            "deftech_optimizer_graph_build_seconds_total",
            "Time spent building HNSW graphs.",
            "counter",
            &|i| i.optimizer.graph_build_ms as f64 / 1000.0,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.observe("/collections/{name}", "GET", 200, Duration::from_millis(3));
        m.observe(
            "/collections/{name}",
            "GET",
            200,
            Duration::from_millis(300),
        );
        let text = m.render(None);
        assert!(text.contains(r#"deftech_http_requests_total{route="/collections/{name}",method="GET",status="200"} 2"#));
        assert!(text.contains(r#"le="0.005"} 1"#), "{text}");
        assert!(text.contains(r#"le="+Inf"} 2"#));
    }
}
