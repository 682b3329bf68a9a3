//! How the client's failures are told apart: reqwest's errors and the lean connections' become `Error`s of a kind
//! (unreachable, TLS, proxy refusal, timed out, ...), with URLs redacted and the causes' messages joined.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName};

use super::HttpClient;
use super::connection::ConnectionError;
use crate::error::{Error, HttpErrorKind, Result, message_chain};

impl HttpClient {
    /// Whether requests carry the proxy's Basic credentials.
    pub(super) fn proxy_credentials_sent(&self) -> bool {
        self.proxy_basic_allowed && self.proxy_has_credentials
    }

    /// The error for a proxy that refused a request (`status`: 407, or 401 from a proxy that answers wrong
    /// credentials so), saying exactly why upmirror did not (or could not) authenticate. Never holds a credential.
    pub(super) fn proxy_refusal(&self, status: StatusCode, schemes: &[String]) -> Error {
        let proxy = self.proxy_address.as_deref().unwrap_or("the proxy");
        let offers_basic = schemes.iter().any(|s| s.eq_ignore_ascii_case("basic"));
        let offered = if schemes.is_empty() { "no scheme named".to_owned() } else { schemes.join(", ") };
        let message = if offers_basic && !self.proxy_basic_allowed {
            format!(
                "the proxy {proxy} asks for Basic authentication, which sends the password in clear text and is not \
                 allowed; turn on \"allow basic authentication\" to use it"
            )
        } else if offers_basic && !self.proxy_has_credentials {
            format!("the proxy {proxy} asks for Basic authentication but no proxy user and password are set")
        } else if offers_basic {
            format!(
                "the proxy {proxy} refused the credentials (HTTP {}): check proxy.user, proxy.domain and \
                 proxy.password",
                status.as_u16()
            )
        } else {
            format!("the proxy {proxy} asks for authentication upmirror does not support ({offered}); only Basic is")
        };
        Error::http(HttpErrorKind::ProxyRefused, proxy.to_owned(), message)
    }

    /// The error for a proxy that answered 407 to a CONNECT tunnel (https through the proxy). The schemes it offers
    /// are not visible there, so the message says what the options allow instead.
    fn tunnel_refusal(&self) -> Error {
        let proxy = self.proxy_address.as_deref().unwrap_or("the proxy");
        let message = if !self.proxy_has_credentials {
            format!("the proxy {proxy} asks for authentication (HTTP 407) but no proxy user and password are set")
        } else if !self.proxy_basic_allowed {
            format!(
                "the proxy {proxy} asks for authentication (HTTP 407); upmirror authenticates to a proxy with Basic \
                 only, which sends the password in clear text and is not allowed; turn on \"allow basic \
                 authentication\" to use it"
            )
        } else {
            format!(
                "the proxy {proxy} refused the credentials (HTTP 407): check proxy.user, proxy.domain and \
                 proxy.password"
            )
        };
        Error::http(HttpErrorKind::ProxyRefused, proxy.to_owned(), message)
    }

    /// Classifies a reqwest error by its kind: TLS, a proxy refusing a tunnel, no connection at all, a connect that
    /// failed otherwise, a stall, a malformed answer, or a connection reset or closed early.
    pub(crate) fn transport_error(&self, url: &url::Url, error: &reqwest::Error) -> Error {
        let message = chain(error);
        if is_tls_error(error) {
            return Error::http(HttpErrorKind::Tls, redacted(url), message);
        }
        if self.proxy_address.is_some() && error.is_connect() && holds_proxy_refusal(error) {
            return self.tunnel_refusal();
        }
        if cannot_connect(error) {
            // Through a proxy, the connection that failed is the one to the proxy.
            let target = self.proxy_address.as_ref().map_or_else(|| origin_of(url), |proxy| format!("proxy {proxy}"));
            return Error::http(HttpErrorKind::Unreachable, target, format!("cannot connect: {message}"));
        }
        let (kind, what) = if error.is_timeout() {
            (HttpErrorKind::TimedOut, "timed out")
        } else if error.is_connect() {
            (HttpErrorKind::Connect, "cannot connect")
        } else if (error.is_body() || error.is_decode()) && !holds_reset(error) {
            (HttpErrorKind::Body, "transfer failed")
        } else {
            (HttpErrorKind::Reset, "transfer failed")
        };
        Error::http(kind, redacted(url), format!("{what}: {message}"))
    }
}

/// A lean connection's failure, worded like reqwest's (`HttpClient::transport_error`).
pub(super) fn connection_error(url: &url::Url, error: ConnectionError) -> Error {
    let (kind, message) = match error {
        ConnectionError::Unreachable(message) => {
            return Error::http(HttpErrorKind::Unreachable, origin_of(url), format!("cannot connect: {message}"));
        }
        ConnectionError::Connect(message) => (HttpErrorKind::Connect, format!("cannot connect: {message}")),
        ConnectionError::TimedOut => (HttpErrorKind::TimedOut, "timed out".to_owned()),
        ConnectionError::Tls(message) => (HttpErrorKind::Tls, message),
        ConnectionError::Reset(message) => (HttpErrorKind::Reset, format!("transfer failed: {message}")),
        ConnectionError::Malformed(message) => (HttpErrorKind::Body, format!("transfer failed: {message}")),
    };
    Error::http(kind, redacted(url), message)
}

/// Whether a proxy's refusal to open a tunnel (407 to CONNECT) is among an error's causes. hyper-util reports it as
/// `TunnelError::ProxyAuthRequired`, a type it does not export, so its fixed message is what identifies it.
fn holds_proxy_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(cause) = source {
        if cause.to_string() == "tunnel error: proxy authorization required" {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether an error (or one of its sources) is a connection reset, aborted or ended early.
pub(crate) fn holds_reset(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut source = Some(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof))
            || cause.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

pub(crate) fn parse_url(url: &str) -> Result<url::Url> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::InvalidInput(format!("{:?} is not a valid URL: {e}", redact_str(url))))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::InvalidInput(format!("{:?} is not an http:// or https:// URL", redact_str(url))));
    }
    Ok(parsed)
}

/// A URL's origin as it may appear in messages: scheme, host and port, without user name and password.
pub(crate) fn origin_of(url: &url::Url) -> String {
    format!("{}://{}", url.scheme(), &url[url::Position::BeforeHost..url::Position::AfterPort])
}

/// The schemes a challenge header (`WWW-Authenticate`, `Proxy-Authenticate`) offers.
pub(super) fn challenges(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split_whitespace().next().unwrap_or_default().to_owned())
        .collect()
}

/// A reqwest error that made no connection at all (`holds_connect_failure`), or timed out connecting.
fn cannot_connect(error: &reqwest::Error) -> bool {
    error.is_connect() && (error.is_timeout() || holds_connect_failure(error))
}

/// Whether an error (or one of its sources) is a connection that could not be made: refused, no route, or timed
/// out; not a connection that was made and then failed (reset), nor a proxy refusing a tunnel.
pub(crate) fn holds_connect_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{AddrNotAvailable, ConnectionRefused, HostUnreachable, NetworkUnreachable, TimedOut};
    let mut source = Some(error);
    while let Some(cause) = source {
        if cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(io.kind(), ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable | TimedOut)
        }) {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A URL as it may appear in messages: without user name and password.
pub(crate) fn redacted(url: &url::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

pub(super) fn redact_str(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| url.split('@').next_back().unwrap_or_default().to_owned(), |u| redacted(&u))
}

/// The messages of an error and its sources, joined: reqwest's own message alone ("error sending request") hides
/// the cause. The URL is left out (callers add a redacted one).
pub(super) fn chain(error: &reqwest::Error) -> String {
    let top = error.to_string();
    let top = top.split(" for url (").next().unwrap_or(&top).to_owned();
    message_chain(top, std::error::Error::source(error))
}

fn is_tls_error(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(s) = source {
        if holds_rustls_error(s) {
            return true;
        }
        source = s.source();
    }
    false
}

/// `io::Error` hides the error it wraps from `source()`, and TLS layers wrap io errors in io errors: look inside.
pub(crate) fn holds_rustls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    error
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .is_some_and(|inner| holds_rustls_error(inner))
}
