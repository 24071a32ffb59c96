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

use crate::security_stats::{SecurityEvent, SecurityStats};

/// Labels of a request series. Every value is one of a fixed set known at start, so recording a
/// request allocates nothing and a client cannot grow the series set.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method, or `OTHER` for an extension method.
    pub method: &'static str,
    /// Route template, `unmatched`, or `other` for a template the route table does not hold.
    pub route: &'static str,
    /// `2xx`, `4xx`, ...
    pub status: &'static str,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// The route templates of the route table, set once at assembly.
    routes: std::sync::OnceLock<std::collections::HashSet<&'static str>>,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    in_flight: Gauge<i64, std::sync::atomic::AtomicI64>,
    shed: Counter<u64, AtomicU64>,
    denials: Counter<u64, AtomicU64>,
    rate_limited: Counter<u64, AtomicU64>,
    waf_violations: Family<WafLabels, Counter>,
    waf_blocks: Counter<u64, AtomicU64>,
    failed_logins: Counter<u64, AtomicU64>,
    notify_failures: Family<ChannelLabels, Counter>,
    limiter_degraded: Gauge<i64, std::sync::atomic::AtomicI64>,
    limiter_fallbacks: Gauge<i64, std::sync::atomic::AtomicI64>,
    security: SecurityStats,
}

/// Labels of a WAF violation series: the problem code (a fixed, small set).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WafLabels {
    /// e.g. `waf.too_deep`.
    pub code: String,
}

/// Labels of a delivery-failure series: the channel (`email` or `sms`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// `email` or `sms`.
    pub channel: String,
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
        let rate_limited = Counter::default();
        let waf_violations = Family::<WafLabels, Counter>::default();
        let waf_blocks = Counter::default();
        let failed_logins = Counter::default();
        let notify_failures = Family::<ChannelLabels, Counter>::default();
        let limiter_degraded = Gauge::default();
        let limiter_fallbacks = Gauge::default();
        registry.register(
            "notify_failures",
            "One-time codes and security notices the sender could not deliver, by channel",
            notify_failures.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by the rate limiter (429)",
            rate_limited.clone(),
        );
        registry.register(
            "waf_violations",
            "Request bodies refused by the WAF, by problem code",
            waf_violations.clone(),
        );
        registry.register(
            "waf_blocks",
            "Blocks imposed after bursts of WAF violations, and requests refused as blocked",
            waf_blocks.clone(),
        );
        registry.register(
            "failed_logins",
            "Failed sign-in steps (wrong one-time code or second factor)",
            failed_logins.clone(),
        );
        registry.register(
            "rate_limit_degraded",
            "1 while the shared rate limiter is unreachable and limits are per instance",
            limiter_degraded.clone(),
        );
        registry.register(
            "rate_limit_fallback_decisions",
            "Rate-limit decisions taken per instance because the shared limiter was unreachable",
            limiter_fallbacks.clone(),
        );
        Self {
            registry,
            routes: std::sync::OnceLock::new(),
            requests,
            duration,
            in_flight,
            shed,
            denials,
            rate_limited,
            waf_violations,
            waf_blocks,
            failed_logins,
            notify_failures,
            limiter_degraded,
            limiter_fallbacks,
            security: SecurityStats::new(),
        }
    }

    /// Declares the route templates the request series may carry (once, when the router is built).
    pub fn set_routes(&self, templates: impl IntoIterator<Item = &'static str>) {
        let _ = self.routes.set(templates.into_iter().collect());
    }

    /// Records a finished request. `route` is the matched template, `None` when no route matched.
    pub fn record_request(
        &self,
        method: &axum::http::Method,
        route: Option<&str>,
        status: u16,
        seconds: f64,
    ) {
        use axum::http::Method;
        let method = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            _ => "OTHER",
        };
        let route = match route {
            None => "unmatched",
            Some(r) => self
                .routes
                .get()
                .and_then(|set| set.get(r).copied())
                .unwrap_or("other"),
        };
        let status = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
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
        self.security.record(SecurityEvent::Denial);
    }

    /// The rate limiter refused a request.
    pub fn record_rate_limited(&self) {
        self.rate_limited.inc();
        self.security.record(SecurityEvent::RateLimited);
    }

    /// The WAF refused a body with `code`.
    pub fn record_waf_violation(&self, code: &str) {
        self.waf_violations
            .get_or_create(&WafLabels {
                code: code.to_owned(),
            })
            .inc();
        self.security.record(SecurityEvent::WafViolation);
    }

    /// A client was blocked, or a blocked client refused.
    pub fn record_waf_block(&self) {
        self.waf_blocks.inc();
        self.security.record(SecurityEvent::WafBlock);
    }

    /// A sign-in step failed.
    pub fn record_failed_login(&self) {
        self.failed_logins.inc();
        self.security.record(SecurityEvent::FailedLogin);
    }

    /// A code or notice could not be delivered over `channel` (`email` or `sms`).
    pub fn record_notify_failure(&self, channel: &str) {
        self.notify_failures
            .get_or_create(&ChannelLabels {
                channel: channel.to_owned(),
            })
            .inc();
    }

    /// Delivery failures so far over `channel`.
    #[must_use]
    pub fn notify_failures(&self, channel: &str) -> u64 {
        self.notify_failures
            .get_or_create(&ChannelLabels {
                channel: channel.to_owned(),
            })
            .get()
    }

    /// The limiter's health after a decision.
    pub fn set_limiter_health(&self, health: palisade_state::LimiterHealth) {
        self.limiter_degraded.set(i64::from(health.degraded));
        self.limiter_fallbacks
            .set(i64::try_from(health.fallback_decisions).unwrap_or(i64::MAX));
    }

    /// Security counters by window.
    #[must_use]
    pub fn security(&self) -> &SecurityStats {
        &self.security
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
