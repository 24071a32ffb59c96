//! The one integration-test binary of the server: every test talks to a real server on a real socket
//! through the full middleware stack (palisade-testkit's `TestApp`), on SQLite and on PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly; helpers outside #[test] fns are test code too"
)]

/// Like `palisade_testkit::each_backend!`, but each test's app comes from the calling module's own
/// `async fn spawn(Backend) -> Option<TestApp>` (for example with declared resources).
macro_rules! each_backend_with_spawn {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = super::spawn(palisade_testkit::Backend::Sqlite).await.expect("sqlite app");
                    super::$name(app).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = super::spawn(palisade_testkit::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            }
        )+
    };
}

mod api_keys;
mod audit;
mod auth;
mod config_start;
mod forged_tokens;
mod identity;
mod input;
mod isolation;
mod limits;
mod mfa;
mod network;
mod pipeline;
mod policies;
mod principal_cache;
mod registry;
mod resources;
mod retention;
mod roles;
mod sessions;
mod sms;
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

/// Runs the `palisade` binary in `dir` with `args` (no config from the environment, quiet logs) and
/// returns whether it succeeded and what it printed (stdout, then stderr).
pub fn run_cli(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(dir)
        .env_remove("PALISADE_CONFIG")
        .env("PALISADE__LOG__LEVEL", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every file below the workspace's `crates/<dir>` folders, with its text (for source-scanning
/// review tests).
pub fn source_files(dirs: &[&str]) -> Vec<(std::path::PathBuf, String)> {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    let mut stack: Vec<_> = dirs.iter().map(|d| crates.join(d)).collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    out
}
