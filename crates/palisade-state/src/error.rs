//! The one error type of the crate.
//!
//! Invariants:
//! - SECURITY: every variant means "no trustworthy answer"; callers deny (fail closed) on all of them.
//! - Messages and sources never contain the connection URL, keys or values.

/// A boxed error source, logged by the server with its chain and never shown to clients.
type Source = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong with shared state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend could not answer: Redis down, unreachable or slower than the operation timeout,
    /// or the in-process backend is full. Callers fail closed.
    #[error("shared state unavailable")]
    Unavailable(#[source] Source),
    /// Anything else: a bug, a refused argument (zero or absurd time to live) or an unexpected reply.
    /// Callers fail closed.
    #[error("shared state internal error")]
    Internal(#[source] Source),
    /// The state URL or options are unusable. The reason is a fixed text; the URL is never echoed
    /// (it may hold a password).
    #[error("invalid shared state configuration: {0}")]
    Config(&'static str),
}

impl StateError {
    /// An [`StateError::Unavailable`] from a fixed message.
    pub(crate) fn unavailable(msg: &'static str) -> Self {
        Self::Unavailable(msg.into())
    }

    /// An [`StateError::Internal`] from a fixed message.
    pub(crate) fn internal(msg: &'static str) -> Self {
        Self::Internal(msg.into())
    }
}
