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

/// Delivers codes and notices by e-mail over SMTP (lettre). SMS is not supported by this sender.
pub struct Smtp {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
    code_ttl_minutes: u64,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Smtp {
    /// A sender over the configured relay.
    ///
    /// # Errors
    /// [`SendError`] when the relay settings or the `From` address are invalid.
    pub fn new(
        settings: &crate::config::SmtpSettings,
        code_ttl_secs: u64,
    ) -> Result<Self, SendError> {
        use crate::config::SmtpTls;
        use lettre::transport::smtp::authentication::Credentials;
        let mut builder = match settings.tls {
            SmtpTls::Starttls => {
                lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::starttls_relay(&settings.host)
                    .map_err(|e| SendError(e.to_string()))?
            }
            SmtpTls::Tls => {
                lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::relay(&settings.host)
                    .map_err(|e| SendError(e.to_string()))?
            }
            SmtpTls::None => {
                lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(
                    settings.host.clone(),
                )
                .port(25)
            }
        };
        if let Some(port) = settings.port {
            builder = builder.port(port);
        }
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let from = settings
            .from
            .parse()
            .map_err(|_| SendError("auth.otp.smtp.from is not an address".into()))?;
        Ok(Self {
            transport: builder
                .timeout(Some(std::time::Duration::from_secs(10)))
                .build(),
            from,
            code_ttl_minutes: code_ttl_secs / 60,
        })
    }

    async fn mail(&self, to: &str, subject: &str, text: String) -> Result<(), SendError> {
        use lettre::AsyncTransport;
        let to: lettre::message::Mailbox = to
            .parse()
            .map_err(|_| SendError("the destination is not an address".into()))?;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| SendError(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| SendError(e.to_string()))
    }
}

#[async_trait]
impl CodeSender for Smtp {
    async fn send(
        &self,
        channel: OtpChannel,
        destination: &str,
        code: &SecretString,
    ) -> Result<(), SendError> {
        if channel != OtpChannel::Email {
            return Err(SendError("the SMTP sender delivers e-mail only".into()));
        }
        let text = format!(
            "Your Palisade sign-in code is {}.\n\nIt expires in {} minutes. If you did not ask for it, ignore this message.\n",
            code.expose_secret(),
            self.code_ttl_minutes
        );
        self.mail(destination, "Your sign-in code", text).await
    }

    async fn notice(&self, email: &str, subject: &str, text: &str) -> Result<(), SendError> {
        self.mail(email, subject, text.to_owned()).await
    }
}
