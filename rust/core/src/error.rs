//! The one error type of the core. Every variant says what failed and on which path or URL, so the bindings can
//! turn it into a precise Python exception without guessing.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named path; the bindings map it to the matching `OSError` subclass.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },

    /// The caller asked to stop (Ctrl-C in the CLI, or a cancelled job); work done so far is kept.
    #[error("cancelled")]
    Cancelled,

    /// The caller passed something the core cannot work with (an unknown algorithm name, an empty set).
    #[error("{0}")]
    InvalidInput(String),

    /// An HTTP request failed, of a `kind` callers decide by (retry or not, which Python exception). `target` is
    /// the redacted URL, or for `Unreachable` the origin (`http://host:port`) or `proxy ...` when the requests go
    /// through a proxy, which is then the one at fault. Neither it nor the message ever holds a credential.
    #[error("{}", http_message(*kind, target, message))]
    Http { kind: HttpErrorKind, target: String, message: String },

    /// Bytes downloaded or copied did not match the digest the metadata or the name promised; nothing was placed.
    /// `actual` is absent where the check only knows that the digests differ.
    #[error(
        "{name}: {algorithm} digest mismatch: expected {expected}, got {}",
        actual.as_deref().unwrap_or("other bytes")
    )]
    DigestMismatch { name: String, algorithm: &'static str, expected: String, actual: Option<String> },
}

/// The kinds of HTTP failure, set where the failure is met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// No connection could be made: refused, no route, or the connect timed out.
    Unreachable,
    /// Connecting failed otherwise: a name that does not resolve, a reset during the TLS handshake.
    Connect,
    /// A connection stayed silent longer than the read timeout.
    TimedOut,
    /// A connection was reset or closed before the answer was complete.
    Reset,
    /// The answer could not be read as HTTP: a malformed head or body, an undecodable encoding.
    Body,
    /// The TLS handshake failed: an untrusted or mismatched certificate, or a protocol error.
    Tls,
    /// A redirect that cannot be followed: too many, or to a URL that is not plain http(s).
    Redirect,
    /// The proxy refused to forward without authentication upmirror may or can give (the message says why).
    ProxyRefused,
}

impl HttpErrorKind {
    /// Whether another attempt may succeed: not for a configuration problem (TLS, the proxy's credentials).
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Unreachable | Self::Connect | Self::TimedOut | Self::Reset | Self::Body)
    }

    /// The kind's name as Python sees it (`HttpError.kind`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Connect => "connect",
            Self::TimedOut => "timed_out",
            Self::Reset => "reset",
            Self::Body => "body",
            Self::Tls => "tls",
            Self::Redirect => "redirect",
            Self::ProxyRefused => "proxy_refused",
        }
    }
}

fn http_message(kind: HttpErrorKind, target: &str, message: &str) -> String {
    match kind {
        HttpErrorKind::Unreachable => format!("{target} is unreachable: {message}"),
        HttpErrorKind::Tls => format!("{target}: TLS: {message}"),
        HttpErrorKind::ProxyRefused => message.to_owned(),
        _ => format!("{target}: {message}"),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn http(kind: HttpErrorKind, target: String, message: impl Into<String>) -> Self {
        Error::Http { kind, target, message: message.into() }
    }

    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }
}

/// Attaches a path to an I/O result: `file.read(..).at(path)?`.
pub trait IoResultExt<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::io(path, source))
    }
}

/// A message followed by those of an error's sources, each once, joined by ": ". A wrapper's own message ("error
/// sending request", "tcp connect error") hides the cause, which is what a person needs to read.
pub fn message_chain(top: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut text = top;
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
