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

    /// A transfer failed after its retries: unreachable, reset, stalled, or an HTTP error status. The URL carries
    /// no credentials.
    #[error("{url}: {message}")]
    Http { url: String, message: String },

    /// No connection could be made (refused, no route, the connect timed out, a name that does not resolve).
    /// `target` names what could not be reached: an origin (`http://host:port`, no credentials), or `proxy ...` when
    /// the requests go through a proxy, which is then the one at fault.
    #[error("{target} is unreachable: {message}")]
    Unreachable { target: String, message: String },

    /// The TLS handshake failed: an untrusted or mismatched certificate, or a protocol error.
    #[error("{url}: TLS: {message}")]
    Tls { url: String, message: String },

    /// The proxy refused to forward without authentication upmirror may or can give; the message says why and never
    /// holds a credential.
    #[error("{0}")]
    ProxyAuthentication(String),

    /// Downloaded bytes did not match the digest the metadata promised; nothing was placed.
    #[error("{name}: {algorithm} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { name: String, algorithm: &'static str, expected: String, actual: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
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
