//! Delivery of one-time codes. One trait; the development outbox writes one JSON object per line to
//! `data_dir/outbox.ndjson` (`channel`, `destination`, `code`, `at`) and is refused in production by
//! `config check`. [`Smtp`] delivers e-mail, [`SmsGateway`] delivers SMS over HTTPS, and [`Routed`]
//! sends each channel to its own sender. A failed delivery never changes the API answer (no account
//! oracle); callers log it (redacted) and count it in `palisade_notify_failures`.

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

/// Sends a security notice by e-mail off the request path. A failure is logged (the reason only) and
/// counted in `palisade_notify_failures{channel="email"}`; it never fails the request that caused it.
pub(crate) fn notice_in_background(
    app: &crate::state::AppState,
    email: String,
    subject: &'static str,
    text: String,
) {
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = app.auth().sender.notice(&email, subject, &text).await {
            app.metrics().record_notify_failure("email");
            tracing::error!(target: "palisade::notify", error = %e, "security notice not delivered");
        }
    });
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

/// Delivers codes by SMS through an HTTPS gateway (`[sms]`): one JSON `POST` per code with
/// `Authorization: Bearer <token>`.
///
/// SECURITY:
/// - The token is held in `secrecy`, sent as a sensitive header value, and never logged; neither is
///   the code. Errors carry only what went wrong (status code, timeout, unreachable), never the
///   response body (a gateway may echo the message) or the URL (it may hold a key in its query).
/// - Redirects are not followed, so the token cannot be forwarded to another host; `https://` is
///   required in production (`config check`).
pub struct SmsGateway {
    client: reqwest::Client,
    url: reqwest::Url,
    token: Option<SecretString>,
    from: Option<String>,
    body: Option<serde_json::Value>,
    code_ttl_minutes: u64,
}

impl std::fmt::Debug for SmsGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsGateway")
            .field("host", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

impl SmsGateway {
    /// A sender over the configured gateway.
    ///
    /// # Errors
    /// [`SendError`] when the URL does not parse or the HTTP client cannot be built.
    pub fn new(
        settings: &crate::config::SmsSettings,
        code_ttl_secs: u64,
    ) -> Result<Self, SendError> {
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|_| SendError("sms.url is not a URL".into()))?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .https_only(url.scheme() == "https")
            .timeout(std::time::Duration::from_secs(settings.timeout_secs))
            .connect_timeout(std::time::Duration::from_secs(settings.timeout_secs))
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| SendError("the SMS gateway client cannot be built".into()))?;
        Ok(Self {
            client,
            url,
            token: settings.token.clone(),
            from: settings.from.clone(),
            body: settings.body.clone(),
            code_ttl_minutes: code_ttl_secs / 60,
        })
    }

    /// The JSON body for one message: the configured template with its placeholders filled, or the
    /// fixed shape `{"to","text","from"?}`.
    fn body_for(&self, to: &str, text: &str, code: &str) -> serde_json::Value {
        let from = self.from.as_deref().unwrap_or_default();
        match &self.body {
            Some(template) => fill(
                template,
                &[("to", to), ("text", text), ("code", code), ("from", from)],
            ),
            None => {
                let mut body = serde_json::json!({ "to": to, "text": text });
                if let (Some(from), Some(map)) = (&self.from, body.as_object_mut()) {
                    map.insert("from".to_owned(), serde_json::Value::String(from.clone()));
                }
                body
            }
        }
    }
}

/// Replaces `{name}` in every string of `template` in one pass (a substituted value is never scanned
/// again). Values go in as JSON strings, so they cannot change the document's structure.
fn fill(template: &serde_json::Value, values: &[(&str, &str)]) -> serde_json::Value {
    use serde_json::Value;
    match template {
        Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(rest.get(..open).unwrap_or_default());
                let after = rest.get(open + 1..).unwrap_or_default();
                let hit = after.find('}').and_then(|close| {
                    let name = after.get(..close)?;
                    values
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| (*v, close))
                });
                match hit {
                    Some((value, close)) => {
                        out.push_str(value);
                        rest = after.get(close + 1..).unwrap_or_default();
                    }
                    None => {
                        out.push('{');
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| fill(v, values)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), fill(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[async_trait]
impl CodeSender for SmsGateway {
    async fn send(
        &self,
        channel: OtpChannel,
        destination: &str,
        code: &SecretString,
    ) -> Result<(), SendError> {
        if channel != OtpChannel::Sms {
            return Err(SendError("the SMS gateway delivers SMS only".into()));
        }
        let text = format!(
            "Your Palisade sign-in code is {}. It expires in {} minutes.",
            code.expose_secret(),
            self.code_ttl_minutes
        );
        let body = self.body_for(destination, &text, code.expose_secret());
        let mut request = self.client.post(self.url.clone()).json(&body);
        if let Some(token) = &self.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!(
                "Bearer {}",
                token.expose_secret()
            ))
            .map_err(|_| SendError("sms.token is not a valid header value".into()))?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(|e| {
            // SECURITY: not `e.to_string()`: it names the URL.
            SendError(
                if e.is_timeout() {
                    "the SMS gateway timed out"
                } else if e.is_connect() {
                    "the SMS gateway is unreachable"
                } else {
                    "the request to the SMS gateway failed"
                }
                .into(),
            )
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SendError(format!(
                "the SMS gateway answered {}",
                status.as_u16()
            )))
        }
    }

    async fn notice(&self, _email: &str, _subject: &str, _text: &str) -> Result<(), SendError> {
        Err(SendError(
            "the SMS gateway does not deliver e-mail notices".into(),
        ))
    }
}

/// Routes by channel: e-mail codes and every notice to the e-mail sender (SMTP, or the development
/// outbox), SMS codes to the SMS sender (the gateway).
pub struct Routed {
    /// Delivers e-mail codes and notices.
    pub email: std::sync::Arc<dyn CodeSender>,
    /// Delivers SMS codes.
    pub sms: std::sync::Arc<dyn CodeSender>,
}

impl std::fmt::Debug for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Routed")
    }
}

#[async_trait]
impl CodeSender for Routed {
    async fn send(
        &self,
        channel: OtpChannel,
        destination: &str,
        code: &SecretString,
    ) -> Result<(), SendError> {
        match channel {
            OtpChannel::Email => self.email.send(channel, destination, code).await,
            OtpChannel::Sms => self.sms.send(channel, destination, code).await,
        }
    }

    async fn notice(&self, email: &str, subject: &str, text: &str) -> Result<(), SendError> {
        self.email.notice(email, subject, text).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_in_one_pass_and_values_stay_strings() {
        let template = serde_json::json!({
            "recipient": "{to}",
            "message": {"body": "{text}", "tag": ["{from}", "{unknown}", "{"]},
            "n": 3
        });
        let out = fill(
            &template,
            &[
                ("to", "+4915112345678"),
                ("text", "code {from} \"x\"}"),
                ("from", "Pal"),
            ],
        );
        assert_eq!(
            out,
            serde_json::json!({
                "recipient": "+4915112345678",
                "message": {"body": "code {from} \"x\"}", "tag": ["Pal", "{unknown}", "{"]},
                "n": 3
            })
        );
    }
}
