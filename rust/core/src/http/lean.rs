//! The lean path of the client: GETs to an origin reached without a proxy go on `connection`s the client keeps idle
//! per origin (at most as many as the origin has connection slots, none older than `IDLE_TIMEOUT`); a closed idle
//! connection is replaced without counting as a failure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HOST, HeaderMap, HeaderValue, LOCATION, USER_AGENT};
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use super::connection::{Connection, ConnectionError, SendError};
use super::errors::{connection_error, redacted};
use super::options::HttpOptions;
use super::response::ResponseBody;
use crate::error::{Error, HttpErrorKind, Result};

/// What a lean GET brought: an answer whose body is still to be read, or a redirect to follow.
pub(super) enum LeanAnswer {
    Body(ResponseBody),
    Redirect(url::Url),
}

/// The Location of an answer that sends a GET elsewhere (301, 302, 303, 307, 308); any other answer, and a redirect
/// without a readable Location, is an answer of its own.
fn redirect_location(status: StatusCode, headers: &HeaderMap) -> Option<&str> {
    let redirects = [
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::SEE_OTHER,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ];
    redirects.contains(&status).then(|| headers.get(LOCATION)?.to_str().ok()).flatten()
}

/// What the client keeps per origin: its connection slots (the per-host cap) and its idle lean connections.
pub(super) struct Origin {
    pub(super) slots: Arc<Semaphore>,
    /// With the time each went idle, most recent last.
    pub(super) idle: Mutex<Vec<(Instant, Connection)>>,
    pub(super) max_idle: usize,
}

/// An idle connection older than this is closed rather than reused: a firewall or NAT between may have forgotten it
/// without a word, and a request on it would wait for the read timeout (reqwest's pool uses the same limit).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

impl Origin {
    pub(super) fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().expect("the idle list is never poisoned");
        // Oldest first: the stale ones are at the front.
        while idle.first().is_some_and(|(since, _)| since.elapsed() >= IDLE_TIMEOUT) {
            idle.remove(0);
        }
        idle.pop().map(|(_, connection)| connection)
    }

    /// Keeps a connection whose answer was read to its end for the next request, unless as many are idle as the
    /// origin has connection slots (the oldest is closed then).
    pub(super) fn put_idle(&self, connection: Connection) {
        let mut idle = self.idle.lock().expect("the idle list is never poisoned");
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push((Instant::now(), connection));
    }
}

/// What the lean path needs of the options: the same timeouts, headers and TLS configuration reqwest is built with.
pub(super) struct DirectSettings {
    /// hyper-util's TCP connector: every address of a name, the next tried after 300 ms (Happy Eyeballs).
    pub(super) tcp: HttpConnector,
    pub(super) tls: TlsConnector,
    pub(super) connect_timeout: Duration,
    pub(super) read_timeout: Duration,
    pub(super) user_agent: HeaderValue,
    pub(super) authorization: Option<HeaderValue>,
}

impl DirectSettings {
    pub(super) fn new(
        options: &HttpOptions,
        authorization: Option<HeaderValue>,
        tls: rustls::ClientConfig,
    ) -> Result<Self> {
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
    /// connection the server had closed meanwhile is replaced without counting as a failure. A redirect comes back as
    /// the URL its Location names, for the caller to follow; the bearer token goes only with `authorize`.
    pub(super) async fn send(
        &self,
        url: &url::Url,
        origin: &Arc<Origin>,
        extra: &HeaderMap,
        fresh: bool,
        authorize: bool,
    ) -> Result<LeanAnswer> {
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
                return Err(connection_error(url, ConnectionError::Reset("the server closed the connection".into())));
            }
            let mut request = hyper::Request::get(&url[url::Position::BeforePath..url::Position::AfterQuery])
                .body(Empty::new())
                .map_err(|e| Error::InvalidInput(format!("{}: {e}", redacted(url))))?;
            let headers = request.headers_mut();
            let host = HeaderValue::from_str(host)
                .map_err(|_| Error::InvalidInput(format!("{}: the host is not allowed in HTTP", redacted(url))))?;
            headers.insert(HOST, host);
            headers.insert(USER_AGENT, self.user_agent.clone());
            if let Some(value) = self.authorization.as_ref().filter(|_| authorize) {
                headers.insert(AUTHORIZATION, value.clone());
            }
            for (name, value) in extra {
                headers.append(name, value.clone());
            }
            match connection.send(request, self.read_timeout).await {
                Ok(response) => {
                    if let Some(location) = redirect_location(response.status(), response.headers()) {
                        // The redirect's own body is not read, so its connection is not kept.
                        return url.join(location).map(LeanAnswer::Redirect).map_err(|_| {
                            Error::http(
                                HttpErrorKind::Redirect,
                                redacted(url),
                                "redirected to a Location that is not a URL",
                            )
                        });
                    }
                    let (head, body) = response.into_parts();
                    return Ok(LeanAnswer::Body(ResponseBody::Direct {
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
