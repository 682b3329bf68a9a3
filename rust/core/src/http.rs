//! The one HTTP client of upmirror (reqwest on rustls), built from the server's options: TLS verified against the
//! system roots or a given CA bundle, connect and read timeouts, an HTTP proxy whose Basic credentials are sent only
//! when "allow basic authentication" is on, the upstream's bearer token, and connection reuse with a per-host cap.
//! Metadata requests and content downloads both go through it, on the one process-wide tokio runtime.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::header::{
    AUTHORIZATION, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE, USER_AGENT, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use tokio::runtime::Runtime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use crate::connection::{Connection, ConnectionError, SendError};
use crate::error::{Error, Result, message_chain};

/// The runtime every network task of the process runs on: created once, on first use, never one per call.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("upmirror-net")
            .enable_all()
            .build()
            .expect("the tokio runtime starts")
    })
}

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
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            max_connections_per_host: 16,
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

/// A whole response, for metadata calls.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response whose body is still to be read, holding its host's connection slot until it is dropped.
pub struct StreamingResponse {
    body: ResponseBody,
    /// For error messages (redacted when printed).
    url: url::Url,
    _slot: OwnedSemaphorePermit,
}

enum ResponseBody {
    /// Through reqwest: proxies, redirects, request bodies.
    Pooled(reqwest::Response),
    /// On a lean connection (`connection`), which goes back to the idle pool once the body was read to its end.
    Direct {
        head: hyper::http::response::Parts,
        body: Incoming,
        connection: Option<Connection>,
        origin: Arc<Origin>,
        read_timeout: Duration,
        /// A read failed: the body is not to be read further.
        failed: bool,
    },
}

impl StreamingResponse {
    pub fn status(&self) -> StatusCode {
        match &self.body {
            ResponseBody::Pooled(response) => response.status(),
            ResponseBody::Direct { head, .. } => head.status,
        }
    }

    pub fn headers(&self) -> &HeaderMap {
        match &self.body {
            ResponseBody::Pooled(response) => response.headers(),
            ResponseBody::Direct { head, .. } => &head.headers,
        }
    }

    /// The next piece of the body, `None` at its end. A stall longer than the read timeout is an error.
    pub async fn chunk(&mut self, client: &HttpClient) -> Result<Option<Bytes>> {
        match &mut self.body {
            ResponseBody::Pooled(response) => response.chunk().await.map_err(|e| client.transport_error(&self.url, &e)),
            ResponseBody::Direct { body, connection, origin, read_timeout, failed, .. } => {
                if *failed {
                    return Err(Error::Http { url: redacted(&self.url), message: "the transfer failed before".into() });
                }
                let Some(open) = connection.as_mut() else { return Ok(None) };
                match open.next_data(body, *read_timeout).await {
                    Ok(Some(data)) => Ok(Some(data)),
                    Ok(None) => {
                        let finished = connection.take().expect("checked above");
                        if finished.reusable() {
                            origin.put_idle(finished);
                        }
                        Ok(None)
                    }
                    Err(error) => {
                        *connection = None;
                        *failed = true;
                        Err(connection_error(&self.url, error))
                    }
                }
            }
        }
    }
}

pub struct HttpClient {
    client: reqwest::Client,
    /// The same settings without connection reuse: a retry after a corrupted transfer must not reuse a connection.
    fresh_client: reqwest::Client,
    /// Where the proxy is (scheme, host and port only), for error messages.
    proxy_address: Option<String>,
    proxy_basic_allowed: bool,
    proxy_has_credentials: bool,
    max_connections_per_host: usize,
    /// By origin (scheme, host and port).
    origins: Mutex<HashMap<String, Arc<Origin>>>,
    /// GETs take lean connections (`connection`) unless a proxy is set.
    direct: Option<DirectSettings>,
}

/// What the client keeps per origin: its connection slots (the per-host cap) and its idle lean connections.
struct Origin {
    slots: Arc<Semaphore>,
    /// With the time each went idle, most recent last.
    idle: Mutex<Vec<(Instant, Connection)>>,
    max_idle: usize,
}

/// An idle connection older than this is closed rather than reused: a firewall or NAT between may have forgotten it
/// without a word, and a request on it would wait for the read timeout (reqwest's pool uses the same limit).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

impl Origin {
    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().expect("the idle list is never poisoned");
        // Oldest first: the stale ones are at the front.
        while idle.first().is_some_and(|(since, _)| since.elapsed() >= IDLE_TIMEOUT) {
            idle.remove(0);
        }
        idle.pop().map(|(_, connection)| connection)
    }

    /// Keeps a connection whose answer was read to its end for the next request, unless as many are idle as the
    /// origin has connection slots (the oldest is closed then).
    fn put_idle(&self, connection: Connection) {
        let mut idle = self.idle.lock().expect("the idle list is never poisoned");
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push((Instant::now(), connection));
    }
}

/// What the lean path needs of the options: the same timeouts, headers and TLS configuration reqwest is built with.
struct DirectSettings {
    /// hyper-util's TCP connector: every address of a name, the next tried after 300 ms (Happy Eyeballs).
    tcp: HttpConnector,
    tls: TlsConnector,
    connect_timeout: Duration,
    read_timeout: Duration,
    user_agent: HeaderValue,
    authorization: Option<HeaderValue>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("proxy", &self.proxy_address)
            .field("max_connections_per_host", &self.max_connections_per_host)
            .finish_non_exhaustive()
    }
}

/// Installs the ring crypto provider for rustls once per process (reqwest is built without a provider of its own).
fn install_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Another library of the process may have installed one first; either provider verifies the same way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl HttpClient {
    pub fn new(options: &HttpOptions) -> Result<Self> {
        install_crypto_provider();
        if options.max_connections_per_host == 0 {
            return Err(Error::InvalidInput("max_connections_per_host must be at least 1".into()));
        }
        let mut proxy_address = None;
        let mut proxy = None;
        if let Some(p) = &options.proxy {
            let url = url::Url::parse(&p.url)
                .map_err(|e| Error::InvalidInput(format!("the proxy URL is not a valid URL: {e}")))?;
            if !url.username().is_empty() || url.password().is_some() {
                // Refused without echoing the URL: it holds a secret.
                return Err(Error::InvalidInput(
                    "the proxy URL must not contain credentials; give them as the proxy user and password".into(),
                ));
            }
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Error::InvalidInput(format!(
                    "the proxy URL scheme {:?} is not supported; use http:// or https://",
                    url.scheme()
                )));
            }
            proxy_address = Some(format!(
                "{}://{}:{}",
                url.scheme(),
                url.host_str().unwrap_or_default(),
                url.port_or_known_default().unwrap_or_default()
            ));
            proxy = Some((p.clone(), url));
        }
        let authorization = match &options.bearer_token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Error::InvalidInput("the bearer token contains characters not allowed in HTTP".into())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let tls = crate::tls::client_config(options.ca_file.as_deref(), options.verify_tls)?;
        let build = |reuse: bool| -> Result<reqwest::Client> {
            let mut headers = HeaderMap::new();
            if let Some(value) = &authorization {
                headers.insert(AUTHORIZATION, value.clone());
            }
            let mut builder = reqwest::Client::builder()
                .user_agent(options.user_agent.clone())
                .default_headers(headers)
                .connect_timeout(options.connect_timeout)
                .read_timeout(options.read_timeout)
                .tcp_nodelay(true)
                .http1_only()
                .pool_max_idle_per_host(if reuse { options.max_connections_per_host } else { 0 })
                .no_proxy();
            builder = builder.tls_backend_preconfigured(tls.clone());
            if let Some((p, url)) = &proxy {
                let mut reqwest_proxy = reqwest::Proxy::all(url.as_str())
                    .map_err(|e| Error::InvalidInput(format!("the proxy URL is not usable: {}", e.without_url())))?;
                if p.allow_basic_auth
                    && let (Some(user), Some(password)) = (&p.user, &p.password)
                {
                    let user = match &p.domain {
                        Some(domain) if !domain.is_empty() => format!("{domain}\\{user}"),
                        _ => user.clone(),
                    };
                    reqwest_proxy = reqwest_proxy.basic_auth(&user, password);
                }
                builder = builder.proxy(reqwest_proxy);
            }
            builder.build().map_err(|e| Error::InvalidInput(format!("cannot build the HTTP client: {}", chain(&e))))
        };
        let direct = if proxy.is_some() {
            None
        } else {
            Some(DirectSettings::new(options, authorization.clone(), tls.clone())?)
        };
        Ok(HttpClient {
            client: build(true)?,
            fresh_client: build(false)?,
            direct,
            proxy_address,
            proxy_basic_allowed: options.proxy.as_ref().is_some_and(|p| p.allow_basic_auth),
            proxy_has_credentials: options.proxy.as_ref().is_some_and(|p| p.user.is_some() && p.password.is_some()),
            max_connections_per_host: options.max_connections_per_host,
            origins: Mutex::new(HashMap::new()),
        })
    }

    pub fn max_connections_per_host(&self) -> usize {
        self.max_connections_per_host
    }

    fn origin(&self, url: &url::Url) -> Arc<Origin> {
        // The scheme, host and port name the origin (the url crate leaves a default port out, so both spellings of
        // one origin serialize alike). A URL with a user name keeps it out of the key.
        let with_user;
        let key = if url.username().is_empty() && url.password().is_none() {
            &url[..url::Position::AfterPort]
        } else {
            with_user = origin_of(url);
            &with_user
        };
        let mut origins = self.origins.lock().expect("the origin map is never poisoned");
        if let Some(origin) = origins.get(key) {
            return origin.clone();
        }
        let origin = Arc::new(Origin {
            slots: Arc::new(Semaphore::new(self.max_connections_per_host)),
            idle: Mutex::new(Vec::new()),
            max_idle: self.max_connections_per_host,
        });
        origins.insert(key.to_owned(), origin.clone());
        origin
    }

    /// Sends a request and returns once the headers arrived; the body is read by the caller. Waits for a free
    /// connection slot of the URL's host first. A proxy's refusal (407, or tinyproxy's 401 to wrong credentials)
    /// becomes `ProxyAuthentication`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        fresh_connection: bool,
    ) -> Result<StreamingResponse> {
        let parsed = parse_url(url)?;
        let origin = self.origin(&parsed);
        let slot = origin.slots.clone().acquire_owned().await.expect("host slots are never closed");
        if let Some(direct) = &self.direct
            && method == Method::GET
            && body.is_none()
            && parsed.username().is_empty()
            && parsed.password().is_none()
            && let Some(body) = direct.send(&parsed, &origin, &headers, fresh_connection).await?
        {
            return Ok(StreamingResponse { body, url: parsed, _slot: slot });
        }
        let client = if fresh_connection { &self.fresh_client } else { &self.client };
        let mut request = client.request(method, parsed.clone()).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&parsed, &e))?;
        if self.proxy_address.is_some() {
            let status = response.status();
            if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
                return Err(self.proxy_refusal(status, &challenges(response.headers(), &PROXY_AUTHENTICATE)));
            }
            // Some proxies (tinyproxy) answer wrong credentials with 401 and a Basic challenge. upmirror never sends
            // Basic credentials to a server (its tokens are bearer tokens), so that challenge is the proxy's.
            let basic = |schemes: Vec<String>| schemes.iter().any(|s| s.eq_ignore_ascii_case("basic"));
            if status == StatusCode::UNAUTHORIZED
                && self.proxy_credentials_sent()
                && basic(challenges(response.headers(), &WWW_AUTHENTICATE))
            {
                return Err(self.proxy_refusal(status, &["Basic".to_owned()]));
            }
        }
        Ok(StreamingResponse { body: ResponseBody::Pooled(response), url: parsed, _slot: slot })
    }

    /// A whole request for metadata calls; the body is read completely. Blocks on the shared runtime (call it
    /// without holding the GIL).
    pub fn request_blocking(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::InvalidInput(format!("{method:?} is not an HTTP method")))?;
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::InvalidInput(format!("{name:?} is not an HTTP header name")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| Error::InvalidInput(format!("the value of header {name} is not allowed in HTTP")))?;
            header_map.append(name, value);
        }
        runtime().block_on(async {
            let mut response = self.send(method, url, header_map, body, false).await?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
                .collect();
            let mut body = Vec::new();
            while let Some(data) = response.chunk(self).await? {
                body.extend_from_slice(&data);
            }
            Ok(HttpResponse { status, headers, body })
        })
    }

    /// Whether requests carry the proxy's Basic credentials.
    fn proxy_credentials_sent(&self) -> bool {
        self.proxy_basic_allowed && self.proxy_has_credentials
    }

    /// The error for a proxy that refused a request (`status`: 407, or 401 from a proxy that answers wrong
    /// credentials so), saying exactly why upmirror did not (or could not) authenticate. Never holds a credential.
    fn proxy_refusal(&self, status: StatusCode, schemes: &[String]) -> Error {
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
        Error::ProxyAuthentication(message)
    }

    /// Classifies a reqwest error: a TLS failure, a proxy refusing a tunnel, or a transfer error (retryable).
    pub fn transport_error(&self, url: &url::Url, error: &reqwest::Error) -> Error {
        let message = chain(error);
        if is_tls_error(error) {
            return Error::Tls { url: redacted(url), message };
        }
        if self.proxy_address.is_some() && message.contains("407") {
            // A proxy refusing a CONNECT tunnel (https through the proxy): its headers are not visible here.
            return self.proxy_refusal(StatusCode::PROXY_AUTHENTICATION_REQUIRED, &[]);
        }
        if cannot_connect(error) {
            // Through a proxy, the connection that failed is the one to the proxy.
            let target = self.proxy_address.as_ref().map_or_else(|| origin_of(url), |proxy| format!("proxy {proxy}"));
            return Error::Unreachable { target, message: format!("cannot connect: {message}") };
        }
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "cannot connect"
        } else {
            "transfer failed"
        };
        Error::Http { url: redacted(url), message: format!("{kind}: {message}") }
    }
}

impl DirectSettings {
    fn new(options: &HttpOptions, authorization: Option<HeaderValue>, tls: rustls::ClientConfig) -> Result<Self> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(options.connect_timeout));
        tcp.set_happy_eyeballs_timeout(Some(Duration::from_millis(300)));
        Ok(DirectSettings {
            tcp,
            tls: TlsConnector::from(Arc::new(tls)),
            connect_timeout: options.connect_timeout,
            read_timeout: options.read_timeout,
            user_agent: HeaderValue::from_str(&options.user_agent)
                .map_err(|_| Error::InvalidInput("the user agent is not allowed in HTTP".into()))?,
            authorization,
        })
    }

    /// Sends a GET on a lean connection: an idle one of the origin unless `fresh`, else a new one. A reused
    /// connection the server had closed meanwhile is replaced without counting as a failure. `None` for a redirect,
    /// which reqwest follows instead.
    async fn send(
        &self,
        url: &url::Url,
        origin: &Arc<Origin>,
        extra: &HeaderMap,
        fresh: bool,
    ) -> Result<Option<ResponseBody>> {
        let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
        loop {
            let pooled = if fresh { None } else { origin.take_idle() };
            let reused = pooled.is_some();
            let mut connection = if let Some(idle) = pooled {
                idle
            } else {
                // An IPv6 address is written in brackets in a URL, and resolved (and named to TLS) without them.
                let name =
                    url.host_str().expect("an http URL has a host").trim_start_matches('[').trim_end_matches(']');
                let port = url.port_or_known_default().expect("http(s) has a default port");
                let tls = (url.scheme() == "https").then_some(&self.tls);
                Connection::open(&self.tcp, name, port, tls, self.connect_timeout)
                    .await
                    .map_err(|e| connection_error(url, e))?
            };
            if !connection.ready().await {
                if reused {
                    continue;
                }
                return Err(connection_error(
                    url,
                    ConnectionError::Transfer("the server closed the connection".into()),
                ));
            }
            let mut request = hyper::Request::get(&url[url::Position::BeforePath..url::Position::AfterQuery])
                .body(Empty::new())
                .map_err(|e| Error::InvalidInput(format!("{}: {e}", redacted(url))))?;
            let headers = request.headers_mut();
            let host = HeaderValue::from_str(host)
                .map_err(|_| Error::InvalidInput(format!("{}: the host is not allowed in HTTP", redacted(url))))?;
            headers.insert(HOST, host);
            headers.insert(USER_AGENT, self.user_agent.clone());
            if let Some(value) = &self.authorization {
                headers.insert(AUTHORIZATION, value.clone());
            }
            for (name, value) in extra {
                headers.append(name, value.clone());
            }
            match connection.send(request, self.read_timeout).await {
                Ok(response) if response.status().is_redirection() && response.status() != StatusCode::NOT_MODIFIED => {
                    return Ok(None);
                }
                Ok(response) => {
                    let (head, body) = response.into_parts();
                    return Ok(Some(ResponseBody::Direct {
                        head,
                        body,
                        connection: Some(connection),
                        origin: origin.clone(),
                        read_timeout: self.read_timeout,
                        failed: false,
                    }));
                }
                Err(SendError { before_answer: true, .. }) if reused => {}
                Err(SendError { error, .. }) => return Err(connection_error(url, error)),
            }
        }
    }
}

/// A lean connection's failure, worded like reqwest's (`HttpClient::transport_error`).
fn connection_error(url: &url::Url, error: ConnectionError) -> Error {
    let message = match error {
        ConnectionError::Unreachable(message) => {
            return Error::Unreachable { target: origin_of(url), message: format!("cannot connect: {message}") };
        }
        ConnectionError::Connect(message) => format!("cannot connect: {message}"),
        ConnectionError::TimedOut => "timed out".to_owned(),
        ConnectionError::Tls(message) => return Error::Tls { url: redacted(url), message },
        ConnectionError::Transfer(message) => format!("transfer failed: {message}"),
    };
    Error::Http { url: redacted(url), message }
}

pub fn parse_url(url: &str) -> Result<url::Url> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::InvalidInput(format!("{:?} is not a valid URL: {e}", redact_str(url))))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::InvalidInput(format!("{:?} is not an http:// or https:// URL", redact_str(url))));
    }
    Ok(parsed)
}

/// A URL's origin as it may appear in messages: scheme, host and port, without user name and password.
pub fn origin_of(url: &url::Url) -> String {
    format!("{}://{}", url.scheme(), &url[url::Position::BeforeHost..url::Position::AfterPort])
}

/// The schemes a challenge header (`WWW-Authenticate`, `Proxy-Authenticate`) offers.
fn challenges(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
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
pub fn redacted(url: &url::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

fn redact_str(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| url.split('@').next_back().unwrap_or_default().to_owned(), |u| redacted(&u))
}

/// The messages of an error and its sources, joined: reqwest's own message alone ("error sending request") hides
/// the cause. The URL is left out (callers add a redacted one).
fn chain(error: &reqwest::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_never_print() {
        let options = HttpOptions {
            proxy: Some(ProxyOptions {
                url: "http://127.0.0.1:3128".into(),
                user: Some("alice".into()),
                domain: Some("CORP".into()),
                password: Some("s3cret-pw".into()),
                allow_basic_auth: false,
            }),
            bearer_token: Some("tok-123".into()),
            ..HttpOptions::default()
        };
        let printed = format!("{options:?}");
        assert!(!printed.contains("s3cret-pw") && !printed.contains("tok-123"), "{printed}");
        let client = HttpClient::new(&options).unwrap();
        assert!(!format!("{client:?}").contains("s3cret-pw"));
    }

    #[test]
    fn proxy_urls_with_credentials_are_refused_without_echo() {
        let options = HttpOptions {
            proxy: Some(ProxyOptions { url: "http://bob:hunter2@127.0.0.1:3128".into(), ..ProxyOptions::default() }),
            ..HttpOptions::default()
        };
        let error = HttpClient::new(&options).unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_str("http://u:p@host/x"), "http://host/x");
        assert!(parse_url("ftp://host/x").is_err());
    }
}
