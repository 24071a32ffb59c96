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
        .with_writer(writer)
        .try_init()
        .is_ok();
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
