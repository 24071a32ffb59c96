//! Prometheus metrics, held per app (no global registry), rendered at `/metrics`.
//!
//! Labels are bounded: the route *template* (never the raw path), the method, and the status class,
//! so a client cannot grow the series set.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a request series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route template or `unmatched`.
    pub route: String,
    /// `2xx`, `4xx`, ...
    pub status: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    in_flight: Gauge<i64, std::sync::atomic::AtomicI64>,
    shed: Counter<u64, AtomicU64>,
    denials: Counter<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every series registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("palisade");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]);
        let in_flight = Gauge::default();
        let shed = Counter::default();
        let denials = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status class",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being served",
            in_flight.clone(),
        );
        registry.register(
            "http_requests_shed",
            "Requests refused by the concurrency cap",
            shed.clone(),
        );
        registry.register(
            "authz_denials",
            "Requests denied by authentication or authorization",
            denials.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            in_flight,
            shed,
            denials,
        }
    }

    /// Records a finished request.
    pub fn record_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let class = format!("{}xx", status / 100);
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: class,
            })
            .inc();
        self.duration.observe(seconds);
    }

    /// A request started (+1) or finished (-1).
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    /// A request was shed.
    pub fn record_shed(&self) {
        self.shed.inc();
    }

    /// A request was denied.
    pub fn record_denial(&self) {
        self.denials.inc();
    }

    /// How many requests were denied so far.
    #[must_use]
    pub fn denials(&self) -> u64 {
        self.denials.get()
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
