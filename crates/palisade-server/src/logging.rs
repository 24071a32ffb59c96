//! Logging: structured JSON lines through one redaction layer.
//!
//! SECURITY: every formatted line passes through [`palisade_domain::redact::redact_line`] in the writer,
//! whatever emitted it (our code, a dependency, a panic message), so redaction by key name and by
//! pattern cannot be forgotten at a call site.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;

/// A writer that redacts each line before it reaches the inner writer.
pub struct RedactingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(512),
        }
    }

    /// Redacts and writes every complete line in the buffer, then drops them from it in one move.
    fn flush_lines(&mut self) -> io::Result<()> {
        let mut done = 0;
        let mut result = Ok(());
        while let Some(end) = self
            .buf
            .get(done..)
            .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
            .map(|pos| done + pos + 1)
        {
            let line = self.buf.get(done..end).unwrap_or_default();
            let text = String::from_utf8_lossy(line);
            done = end;
            result = self
                .inner
                .write_all(palisade_domain::redact::redact_line(&text).as_bytes());
            if result.is_err() {
                break;
            }
        }
        self.buf.drain(..done);
        result
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.flush_lines()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_lines()?;
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let text = String::from_utf8_lossy(&rest);
            self.inner
                .write_all(palisade_domain::redact::redact_line(&text).as_bytes())?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The background writer every log line goes through, once [`init`] installed it. Access lines are
/// written to it directly (see [`access`]), so they queue in order with every other line and pass the
/// same [`RedactingWriter`].
static LINES: std::sync::OnceLock<tracing_appender::non_blocking::NonBlocking> =
    std::sync::OnceLock::new();

/// One access-log line: one per request, written by the pipeline's edge.
#[derive(Debug, serde::Serialize)]
pub struct AccessLine<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The route template, or `unmatched`.
    pub route: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The response status.
    pub status: u16,
    /// Time spent in the server, in microseconds.
    pub latency_us: u64,
    /// The client IP the pipeline resolved.
    pub client_ip: std::net::IpAddr,
    /// The problem code of an error response, or empty.
    pub problem: &'a str,
    /// The authenticated subject, or empty.
    pub subject: &'a str,
    /// The tenant acted on, or empty.
    pub tenant: &'a str,
}

/// The line as tracing's JSON formatter would write it, field for field and in the same order.
#[derive(serde::Serialize)]
struct AccessRecord<'a> {
    timestamp: &'a str,
    level: &'static str,
    message: &'static str,
    #[serde(flatten)]
    line: &'a AccessLine<'a>,
    target: &'static str,
}

/// The access log's target.
pub const ACCESS_TARGET: &str = "palisade::access";

/// `2026-11-25T15:37:17.610627Z`, as tracing's JSON formatter writes timestamps.
const TIMESTAMP: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

/// Logs one access line at `info` under the target [`ACCESS_TARGET`], when the filter lets it
/// through. With the subscriber of [`init`] the line is serialised here in one pass and queued on
/// the same background writer (and redaction) as every other line, which costs a fraction of a
/// tracing event's field-by-field formatting; without it (tests) it is an ordinary event.
pub fn access(line: &AccessLine<'_>) {
    if !tracing::enabled!(target: "palisade::access", tracing::Level::INFO) {
        return;
    }
    let Some(lines) = LINES.get() else {
        tracing::info!(
            target: "palisade::access",
            request_id = line.request_id,
            method = line.method,
            route = line.route,
            path = line.path,
            status = line.status,
            latency_us = line.latency_us,
            client_ip = %line.client_ip,
            problem = line.problem,
            subject = line.subject,
            tenant = line.tenant,
            "request"
        );
        return;
    };
    if let Some(buf) = access_json(line, time::OffsetDateTime::now_utc()) {
        let mut writer = tracing_subscriber::fmt::MakeWriter::make_writer(lines);
        // Like a tracing event, a line that cannot be queued is dropped, never retried.
        let _ = writer.write_all(&buf);
    }
}

/// The access line as JSON, with its newline.
fn access_json(line: &AccessLine<'_>, at: time::OffsetDateTime) -> Option<Vec<u8>> {
    let timestamp = at.format(TIMESTAMP).ok()?;
    let record = AccessRecord {
        timestamp: &timestamp,
        level: "INFO",
        message: "request",
        line,
        target: ACCESS_TARGET,
    };
    let mut buf = Vec::with_capacity(320);
    serde_json::to_writer(&mut buf, &record).ok()?;
    buf.push(b'\n');
    Some(buf)
}

/// Keeps the background log writer alive; dropping it flushes what is queued and stops it.
#[must_use = "logs are flushed and the writer stops when the guard is dropped"]
pub struct LogGuard {
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global JSON subscriber (the binary calls this once; tests stay silent unless
/// `TEST_LOG` is set).
///
/// Formatting happens on the request's thread; redaction and writing happen on one background
/// thread that batches lines into a buffered stderr, so request workers never contend for the
/// stderr lock or pay a write syscall per line. The queue is not lossy: when it is full, logging
/// waits rather than dropping lines.
pub fn init(filter: &str) -> LogGuard {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("palisade-log")
        .finish(RedactingWriter::new(io::BufWriter::with_capacity(
            64 * 1024,
            io::stderr(),
        )));
    let installed = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .try_init()
        .is_ok();
    if installed {
        let _ = LINES.set(writer);
    }
    LogGuard {
        _writer: installed.then_some(guard),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_is_redacted_even_when_written_in_pieces() {
        let mut out = Vec::new();
        {
            let mut w = RedactingWriter::new(&mut out);
            w.write_all(br#"{"msg":"login","email":"ada@exam"#).unwrap();
            w.write_all(b"ple.com\",\"password\":\"hunter2\"}\n")
                .unwrap();
            w.write_all(b"plain text with ada@example.com").unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("ada@example.com"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("login"));
        assert_eq!(text.lines().count(), 2);
    }

    /// A buffer tracing's JSON formatter writes into.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The directly serialised access line is the line tracing's JSON formatter (as `init` sets it
    /// up) writes for the same event, key for key, in the same order, timestamp aside.
    #[test]
    fn access_lines_match_what_the_tracing_formatter_writes() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(move || sink.clone())
            .finish();
        let line = AccessLine {
            request_id: "01a2135a-a62a-75d6-b5a5-3095de6b6e69",
            method: "GET",
            route: "/v1/{resource}/{id}",
            path: "/v1/customers/\"quoted\"\u{e9}",
            status: 404,
            latency_us: 61,
            client_ip: "2001:db8::1".parse().unwrap(),
            problem: "record.not_found",
            subject: "user:01a2",
            tenant: "01a3",
        };
        // No `init` in tests, so `access` takes its tracing path.
        tracing::subscriber::with_default(subscriber, || access(&line));
        let from_tracing: serde_json::Value =
            serde_json::from_slice(&captured.0.lock().unwrap()).unwrap();
        let direct = access_json(&line, time::OffsetDateTime::now_utc()).unwrap();
        assert_eq!(direct.last(), Some(&b'\n'));
        let direct: serde_json::Value = serde_json::from_slice(&direct).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(keys(&direct), keys(&from_tracing));
        for (key, value) in direct.as_object().unwrap() {
            if key == "timestamp" {
                let (a, b) = (value.as_str().unwrap(), from_tracing[key].as_str().unwrap());
                assert_eq!(a.len(), b.len(), "{a} vs {b}");
                assert!(a.ends_with('Z') && b.ends_with('Z'));
            } else {
                assert_eq!(value, &from_tracing[key], "{key}");
            }
        }
    }

    #[test]
    fn access_lines_keep_their_shape_and_numbers() {
        let mut out = Vec::new();
        {
            let mut w = RedactingWriter::new(&mut out);
            w.write_all(b"{\"message\":\"request\",\"status\":200,\"latency_us\":61,\"path\":\"/v1/x/ada@example.com\"}\n{\"a\":1}\n")
                .unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"message\":\"request\",\"status\":200,\"latency_us\":61,\"path\":\"/v1/x/[REDACTED:email]\"}\n{\"a\":1}\n"
        );
    }

    #[test]
    fn session_cookies_and_csrf_tokens_never_reach_the_log() {
        let value = format!("pss_{}", "Zk9_-".repeat(8) + "abc");
        let mut out = Vec::new();
        {
            let mut w = RedactingWriter::new(&mut out);
            let line = format!(
                "{{\"cookie\":\"__Host-palisade_session={value}\",\"set-cookie\":\"palisade_session={value}; HttpOnly\",\"x-csrf-token\":\"tok123\",\"palisade_session\":\"{value}\"}}\nfree text mentioning {value} and cookie={value}\n"
            );
            w.write_all(line.as_bytes()).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains(&value), "{text}");
        assert!(!text.contains("tok123"), "{text}");
    }
}
