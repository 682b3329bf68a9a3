//! The options the one HTTP client is built from: TLS, the proxy (printed without its password), the bearer token,
//! timeouts, the per-host connection cap.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The proxy settings of WSUS: a URL, a user (optionally in a Windows domain) and a password, and whether Basic
/// authentication (which sends the password in clear text) is allowed.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    pub url: String,
    pub user: Option<String>,
    pub domain: Option<String>,
    pub password: Option<String>,
    pub allow_basic_auth: bool,
}

/// Printed without the password, so options can be logged safely.
impl fmt::Debug for ProxyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyOptions")
            .field("url", &self.url)
            .field("user", &self.user.as_ref().map(|_| "<set>"))
            .field("domain", &self.domain)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("allow_basic_auth", &self.allow_basic_auth)
            .finish()
    }
}

/// Connections at once per origin (and over all files of a download). Measured with `python -m benches W2a W2b`
/// (benches/w2_download.py).
pub const DEFAULT_CONNECTIONS: usize = 16;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest silence while reading an answer; long enough for a server that computes a large metadata answer.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct HttpOptions {
    /// A PEM bundle of CA certificates that replaces the system roots (a private PKI); `None` uses the system roots.
    pub ca_file: Option<PathBuf>,
    /// Turned off only by an explicit option; never by default.
    pub verify_tls: bool,
    pub proxy: Option<ProxyOptions>,
    pub bearer_token: Option<String>,
    pub connect_timeout: Duration,
    /// The longest silence while reading a response: a stalled connection fails after it and is retried.
    pub read_timeout: Duration,
    pub max_connections_per_host: usize,
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            ca_file: None,
            verify_tls: true,
            proxy: None,
            bearer_token: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_connections_per_host: DEFAULT_CONNECTIONS,
            user_agent: concat!("upmirror/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOptions")
            .field("ca_file", &self.ca_file)
            .field("verify_tls", &self.verify_tls)
            .field("proxy", &self.proxy)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<hidden>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_connections_per_host", &self.max_connections_per_host)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}
