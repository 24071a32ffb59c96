//! The one integration-test binary of the server: every test talks to a real server on a real socket
//! through the full middleware stack (palisade-testkit's `TestApp`), on SQLite and on PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly; helpers outside #[test] fns are test code too"
)]

mod api_keys;
mod audit;
mod auth;
mod config_start;
mod forged_tokens;
mod input;
mod isolation;
mod limits;
mod mfa;
mod pipeline;
mod policies;
mod registry;
mod resources;
mod roles;
mod tenants;
mod trust;
mod users;
mod waf;

/// A random, well-formed id that names nothing.
pub fn unknown_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Replaces `{param}` segments with a well-formed id that names nothing.
pub fn concrete_path(template: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                unknown_id()
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Asserts a response is an RFC 9457 problem with this status and code, and returns its body.
pub async fn expect_problem(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status for expected {code}");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/problem+json");
    let rid = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = palisade_testkit::json(res).await;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(
        body["request_id"],
        rid.as_str(),
        "problem carries the request id"
    );
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://palisade.dev/problems/")
    );
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}
