//! The request pipeline (DESIGN.md "The request pipeline" 1–4 and 10), outermost first:
//!
//! 1–3. [`edge`]: request id (echoed when well-formed, else generated) and client IP (the socket
//!    address, or `X-Forwarded-For` counted from the right across `trusted_proxy_hops`); on the way
//!    out it fills the request id into problem bodies, turns any bare error status into a problem,
//!    records metrics, logs one structured access line (redacted by the logging layer; the cause of an
//!    internal error is logged here, once), and sets HSTS, CSP, nosniff, Referrer-Policy, frame and
//!    cross-origin policies and `Cache-Control: no-store` on every response, errors included.
//! 4. CORS (only when origins are configured).
//! 5–6. [`admission`]: sheds with 503 + `Retry-After` beyond `server.max_concurrency`, and answers
//!    503 when a request runs past `server.request_timeout_secs`.
//! 7. Body cap (`limits.max_body_bytes`, 413) and panic catching (a panic becomes a 500 problem).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::{ApiError, InternalCause, Problem, problem_response};
use crate::guard::AuthInfo;
use crate::state::AppState;

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The client's IP as the pipeline determined it, in request extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

fn well_formed_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| s.to_owned())
}

/// The client IP: with `hops == 0` the socket address; otherwise the `hops`-th `X-Forwarded-For`
/// entry counted from the right (each trusted proxy appends the address it saw), or the leftmost
/// entry when the header has fewer. An unparsable entry falls back to the socket address.
#[must_use]
pub fn client_ip(socket: Option<IpAddr>, xff: Option<&str>, hops: u8) -> Option<IpAddr> {
    if hops == 0 {
        return socket;
    }
    let Some(xff) = xff else { return socket };
    let entries: Vec<&str> = xff
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if entries.is_empty() {
        return socket;
    }
    let idx = entries.len().saturating_sub(usize::from(hops));
    entries
        .get(idx)
        .and_then(|e| {
            e.parse::<IpAddr>()
                .ok()
                .or_else(|| e.parse::<SocketAddr>().ok().map(|s| s.ip()))
        })
        .or(socket)
}

/// Steps 1–3 in one layer (one future per request instead of three): request id and client IP,
/// then, on the way out, problem completion, metrics, the access log, the request id header and the
/// security headers, so every response, errors included, carries them.
pub async fn edge(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(well_formed_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let socket = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    // SECURITY: without a socket address (in-process calls) the client is the unspecified address,
    // which no allowlist contains.
    let ip = client_ip(socket, xff, app.settings().server.trusted_proxy_hops)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let method = req.method().clone();
    let uri = req.uri().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let self_check = req
        .extensions()
        .get::<crate::trust::checks::SelfCheckProbe>()
        .is_some();
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(ClientIp(ip));

    app.metrics().in_flight(1);
    let res = next.run(req).await;
    app.metrics().in_flight(-1);

    let mut res = finish_problem(res, &id).await;
    let status = res.status();
    if matches!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        // The rest of the body was never read, so the connection cannot carry another request: say
        // so, and the client opens a fresh one instead of failing its next request on this one.
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    if let Some(InternalCause(cause)) = res.extensions_mut().remove::<InternalCause>() {
        tracing::error!(target: "palisade::error", request_id = %id, cause = %cause, "internal error");
    }
    let elapsed = started.elapsed();
    if self_check {
        // The Trust Center probing itself: not traffic (see `trust::checks::SelfCheckProbe`).
        finish_headers(&app, &mut res, &id);
        return res;
    }
    app.metrics().record_request(
        &method,
        matched.as_ref().map(MatchedPath::as_str),
        status.as_u16(),
        elapsed.as_secs_f64(),
    );
    {
        let code = res.extensions().get::<Problem>().map(|p| p.code.as_str());
        let auth = res.extensions().get::<AuthInfo>();
        crate::logging::access(&crate::logging::AccessLine {
            request_id: &id,
            method: method.as_str(),
            route,
            path: uri.path(),
            status: status.as_u16(),
            latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            client_ip: ip,
            problem: code.unwrap_or(""),
            subject: auth.map_or("", |a| a.subject.as_str()),
            tenant: auth.map_or("", |a| a.tenant.as_str()),
        });
    }
    finish_headers(&app, &mut res, &id);
    res
}

/// The request id and the security headers, on every response.
fn finish_headers(app: &AppState, res: &mut Response, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    apply_security_headers(app, res);
}

/// The security headers, in the order they are sent.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    ),
];

/// [`SECURITY_HEADERS`] parsed once, so a response pays a map insert per header and no parsing.
static SECURITY_HEADER_PAIRS: std::sync::LazyLock<Vec<(HeaderName, HeaderValue)>> =
    std::sync::LazyLock::new(|| {
        SECURITY_HEADERS
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    });

/// The security headers (unless turned off) and `Cache-Control: no-store` when the route set none.
fn apply_security_headers(app: &AppState, res: &mut Response) {
    if app.settings().server.security_headers {
        let h = res.headers_mut();
        h.reserve(SECURITY_HEADER_PAIRS.len() + 2);
        for (name, value) in SECURITY_HEADER_PAIRS.iter() {
            // A route may set a stricter or route-specific CSP (e.g. the Trust Center page); keep it.
            if let axum::http::header::Entry::Vacant(slot) = h.entry(name) {
                slot.insert(value.clone());
            }
        }
    }
    if !res.headers().contains_key(header::CACHE_CONTROL) {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn generic_code(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::NOT_FOUND => ("route.not_found", "No route matches this path."),
        StatusCode::METHOD_NOT_ALLOWED => (
            "route.method_not_allowed",
            "This path does not accept this method.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "request.too_large",
            "The request body exceeds the configured limit.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "request.unsupported_media_type",
            "The body must be sent as application/json.",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request.timeout", "The request took too long to arrive."),
        s if s.is_server_error() => (
            "server.internal",
            "An internal error occurred; quote the request id when reporting it.",
        ),
        _ => ("request.invalid", "The request was refused."),
    }
}

/// Puts the request id into a problem body, and turns a bare error response (from axum's router or a
/// tower layer) into a problem.
pub async fn finish_problem(res: Response, request_id: &str) -> Response {
    let status = res.status();
    if let Some(problem) = res.extensions().get::<Problem>().cloned() {
        let mut problem = problem;
        problem.request_id = request_id.to_owned();
        let (mut parts, _) = res.into_parts();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.extensions.insert(problem);
        return Response::from_parts(parts, axum::body::Body::from(body));
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    // A handler's own JSON body for an error status (`/ready`'s 503 with its checks) is kept: only
    // bare statuses from the router or a tower layer are turned into problems.
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return res;
    }
    let (code, detail) = generic_code(status);
    let (parts, _) = res.into_parts();
    let mut fresh = problem_response(status, code, detail.to_owned(), None);
    // Keep headers such as Allow (405) and Retry-After.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Box::pin(finish_problem(fresh, request_id)).await
}

/// The concurrency cap's semaphore.
#[derive(Clone)]
pub struct Cap(pub Arc<Semaphore>);

/// Steps 5–6 in one layer: shed load beyond the cap (`/health` is exempt, so liveness probes see a
/// live process), then hold the request to its deadline.
pub async fn admission(
    State((app, cap)): State<(AppState, Cap)>,
    req: Request,
    next: Next,
) -> Response {
    let permit = if req.uri().path() == "/health" {
        None
    } else {
        match cap.0.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                app.metrics().record_shed();
                return ApiError::Unavailable {
                    code: "server.overloaded",
                    retry_after: 1,
                }
                .into_response();
            }
        }
    };
    let limit = Duration::from_secs(app.settings().server.request_timeout_secs);
    let res = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::Unavailable {
            code: "server.timeout",
            retry_after: 1,
        }
        .into_response(),
    };
    drop(permit);
    res
}

/// Step 7: a panic in a handler becomes a 500 problem, not a dropped connection.
pub fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    ApiError::internal(format!("handler panicked: {what}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn client_ip_ignores_forwarded_for_without_trusted_hops() {
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), Some("1.2.3.4"), 0),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn client_ip_counts_trusted_hops_from_the_right() {
        let sock = Some(ip("10.0.0.1"));
        // The client forged "6.6.6.6"; the one proxy appended the real client address.
        assert_eq!(
            client_ip(sock, Some("6.6.6.6, 1.2.3.4"), 1),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(
            client_ip(sock, Some("6.6.6.6, 1.2.3.4, 10.0.0.2"), 2),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(client_ip(sock, Some("1.2.3.4"), 3), Some(ip("1.2.3.4")));
        assert_eq!(client_ip(sock, Some("garbage"), 1), sock);
        assert_eq!(client_ip(sock, Some(""), 1), sock);
        assert_eq!(
            client_ip(sock, Some("[2001:db8::1]:443"), 1),
            Some(ip("2001:db8::1"))
        );
    }

    #[test]
    fn request_ids_are_echoed_only_when_well_formed() {
        assert!(well_formed_request_id(&HeaderValue::from_static("abc-123_x.y")).is_some());
        assert!(well_formed_request_id(&HeaderValue::from_static("has space")).is_none());
        assert!(well_formed_request_id(&HeaderValue::from_str(&"a".repeat(65)).unwrap()).is_none());
        assert!(well_formed_request_id(&HeaderValue::from_static("")).is_none());
    }
}
