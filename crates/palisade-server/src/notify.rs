//! Delivery of one-time codes. One trait; the development outbox writes one JSON object per line to
//! `data_dir/outbox.ndjson` (`channel`, `destination`, `code`, `at`) and is refused in production by
//! `config check`. SMTP and an HTTPS SMS gateway are later senders behind the same trait.

use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use palisade_store::OtpChannel;
use secrecy::{ExposeSecret, SecretString};

/// Why a code could not be handed over.
#[derive(Debug, thiserror::Error)]
#[error("code delivery failed: {0}")]
pub struct SendError(pub String);

/// Delivers codes.
#[async_trait]
pub trait CodeSender: Send + Sync {
    /// Sends `code` to `destination` over `channel`.
    async fn send(
        &self,
        channel: OtpChannel,
        destination: &str,
        code: &SecretString,
    ) -> Result<(), SendError>;

    /// Sends a security notice (e.g. "TOTP was disabled") by e-mail.
    async fn notice(&self, email: &str, subject: &str, text: &str) -> Result<(), SendError>;
}

/// The development outbox.
#[derive(Debug, Clone)]
pub struct Outbox {
    path: PathBuf,
    lock: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Outbox {
    /// An outbox file (created on first use, mode 0600).
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: std::sync::Arc::new(std::sync::Mutex::new(())),
        }
    }
}

impl Outbox {
    async fn append(&self, line: serde_json::Value) -> Result<(), SendError> {
        let path = self.path.clone();
        let lock = self.lock.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = lock
                .lock()
                .map_err(|_| SendError("outbox lock poisoned".into()))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(&path)
                .map_err(|e| SendError(e.kind().to_string()))?;
            writeln!(f, "{line}").map_err(|e| SendError(e.kind().to_string()))
        })
        .await
        .map_err(|e| SendError(e.to_string()))?
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[async_trait]
impl CodeSender for Outbox {
    async fn send(
        &self,
        channel: OtpChannel,
        destination: &str,
        code: &SecretString,
    ) -> Result<(), SendError> {
        self.append(serde_json::json!({
            "channel": channel.as_str(),
            "destination": destination,
            "code": code.expose_secret(),
            "at": now_rfc3339(),
        }))
        .await
    }

    async fn notice(&self, email: &str, subject: &str, text: &str) -> Result<(), SendError> {
        self.append(serde_json::json!({
            "channel": "email",
            "destination": email,
            "kind": "notice",
            "subject": subject,
            "text": text,
            "at": now_rfc3339(),
        }))
        .await
    }
}
