//! The HTTP front of `upmirror serve` (hyper, HTTP/1.1 with keep-alive, TLS by rustls when the server has a
//! certificate): it answers `/Content` itself, from the content directory, and forwards everything else (the sync
//! protocol, the client and admin APIs) to the aiohttp backend on its private Unix socket. Content is most of the
//! traffic and needs no Python; the backend still decides whose token opens it (`backend`). A plain-HTTP connection
//! starts in `plain`, which sends content by sendfile until a request for anything else hands it to hyper.
//!
//! The front takes a listening socket bound by the caller, runs on the process-wide runtime, and stops gracefully:
//! no new connection is accepted and requests in flight finish (for a few seconds at most).

mod backend;
mod content;
mod plain;

use std::convert::Infallible;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use backend::ACCESS_PATH;
pub use content::{MAX_RANGES, UnsatisfiableRange, parse_ranges};

use crate::error::{Error, Result};
use crate::http::runtime;
use content::{ContentFiles, Pieces};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body of the front: content pieces, messages, or a backend's streamed body.
pub type FrontBody = UnsyncBoxBody<Bytes, BoxError>;

/// In-flight requests get this long to finish once the front is stopped.
const STOP_GRACE: Duration = Duration::from_secs(8);
/// A TLS client must finish its handshake within this time.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// A client must send a request's headers within this time (also how long an idle keep-alive connection lives).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The most request body bytes read and dropped on a content request (which has no use for a body) to keep its
/// connection; past this the connection closes after the answer.
const IGNORED_BODY: usize = 64 << 10;
/// How long the body of a refused request is read and dropped before its connection closes (aiohttp's
/// lingering_time).
const LINGER: Duration = Duration::from_secs(10);
/// The requests the front answers itself; everything else goes to the backend.
const CONTENT_PREFIX: &str = "/Content/";
/// How long the accept loop rests when accept fails (out of descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// The longest request target (path and query) the front takes: 414 above. The backend refuses a request line
/// longer than 8190 bytes (aiohttp's max_line_size) with a multi-line 400 and a traceback in the log.
const MAX_REQUEST_TARGET: usize = 8000;
/// The longest header name or value the front takes: 431 above (aiohttp's max_field_size is 8190 bytes).
const MAX_HEADER_FIELD: usize = 8000;

#[derive(Clone, Debug)]
pub struct FrontOptions {
    pub content_dir: PathBuf,
    /// The Unix socket the aiohttp backend listens on.
    pub backend_socket: PathBuf,
    /// The largest request body the backend takes: a request declaring more is refused (413) before it is sent.
    pub max_request_body: u64,
    /// Content needs no token (`server.anonymous_content`).
    pub anonymous_content: bool,
    /// PEM files of the server's certificate chain and private key; `None` serves plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A running front; see the module's description.
pub struct Front {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Front {
    /// Starts serving on `listener` (already bound and listening).
    pub fn start(listener: StdTcpListener, options: FrontOptions) -> Result<Front> {
        let tls = options.tls.as_ref().map(|(certificate, key)| tls_acceptor(certificate, key)).transpose()?;
        listener
            .set_nonblocking(true)
            .map_err(|error| Error::InvalidInput(format!("the listening socket: {error}")))?;
        let listener = {
            let _entered = runtime().enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(|error| Error::InvalidInput(format!("the listening socket: {error}")))?
        };
        let routes = Arc::new(Routes {
            content: ContentFiles::new(options.content_dir),
            backend: backend::Backend::new(options.backend_socket, options.max_request_body),
            anonymous_content: options.anonymous_content,
        });
        let (stop, stopped) = watch::channel(false);
        let task = runtime().spawn(accept(listener, tls, routes, stopped));
        Ok(Front { stop, task: Mutex::new(Some(task)) })
    }

    /// Stops accepting connections and returns once the requests in flight finished (or the grace time ran out).
    /// Call it from outside the runtime.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().expect("the task lock is never poisoned").take();
        if let Some(task) = task {
            let _ = runtime().block_on(task);
        }
    }
}

/// A front dropped without `stop` stops accepting (without waiting for the requests in flight).
impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn tls_acceptor(certificate: &Path, key: &Path) -> Result<TlsAcceptor> {
    let refuse = |what: &str, error: &dyn std::fmt::Display| {
        Error::InvalidInput(format!("cannot use {what} for the server's TLS: {error}"))
    };
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(Iterator::collect::<std::result::Result<Vec<_>, _>>)
        .map_err(|error| refuse(&certificate.display().to_string(), &error))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| refuse(&key.display().to_string(), &error))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| refuse("the TLS versions", &error))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| refuse("the certificate and key", &error))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    routes: Arc<Routes>,
    mut stopped: watch::Receiver<bool>,
) {
    let connections = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => break,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(ACCEPT_BACKOFF).await; // out of descriptors: let connections close first
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (routes, tls, watcher, stopped) =
            (Arc::clone(&routes), tls.clone(), connections.watcher(), stopped.clone());
        tokio::spawn(async move {
            match tls {
                None => plain::serve_plain(stream, routes, watcher, stopped).await,
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        serve_connection(stream, routes, watcher).await;
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(STOP_GRACE, connections.shutdown()).await;
}

async fn serve_connection<S>(stream: S, routes: Arc<Routes>, watcher: Watcher)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let routes = Arc::clone(&routes);
        async move { Ok::<_, Infallible>(routes.answer(request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let _ = watcher.watch(connection).await; // a client that goes away is no error of the server's
}

struct Routes {
    content: ContentFiles,
    backend: backend::Backend,
    anonymous_content: bool,
}

impl Routes {
    async fn answer(&self, request: Request<Incoming>) -> Response<FrontBody> {
        let content = request.uri().path().starts_with(CONTENT_PREFIX);
        let refusal = oversized(&request).or_else(|| if content { None } else { self.backend.refusal(&request) });
        if let Some(mut refused) = refusal {
            let body = request.into_body();
            if !body.is_end_stream() {
                // The body is not wanted: this connection ends with the answer, once the body was read and dropped
                // for a while (as nginx's lingering close). A client that sends its whole body before it reads the
                // answer gets to read it; closing at once would reset the connection under it.
                refused.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                tokio::spawn(tokio::time::timeout(LINGER, discarded(body, usize::MAX)));
            }
            return refused;
        }
        if !content {
            return self.backend.forward(request).await;
        }
        let (request, body) = request.into_parts();
        let mut response = self.answer_content(&request).await;
        if !body.is_end_stream() && !discarded(body, IGNORED_BODY).await {
            // Unread request bytes would be taken for the next request: this connection ends with the answer.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    async fn answer_content(&self, request: &hyper::http::request::Parts) -> Response<FrontBody> {
        if request.method != Method::GET && request.method != Method::HEAD {
            return not_allowed(&request.method, "content", "GET, HEAD");
        }
        if !self.anonymous_content
            && let Some(refusal) = self.backend.check_access(&request.headers).await
        {
            return refusal;
        }
        let relative = &request.uri.path()[CONTENT_PREFIX.len()..];
        self.content.answer(&request.method, relative, &request.headers)
    }
}

/// A 414 or 431 for a request whose target or a header is longer than the front (and the backend behind it) takes.
fn oversized<B>(request: &Request<B>) -> Option<Response<FrontBody>> {
    let target = request.uri().path_and_query().map_or(0, |target| target.as_str().len());
    if target > MAX_REQUEST_TARGET {
        let text = format!("the request target is {target} bytes long; this server takes at most {MAX_REQUEST_TARGET}");
        return Some(message(StatusCode::URI_TOO_LONG, &text));
    }
    let (name, length) = request
        .headers()
        .iter()
        .map(|(name, value)| (name, name.as_str().len().max(value.len())))
        .max_by_key(|(_, length)| *length)?;
    (length > MAX_HEADER_FIELD).then(|| {
        let text = format!("the {name} header is {length} bytes long; this server takes at most {MAX_HEADER_FIELD}");
        message(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &text)
    })
}

/// A 405 naming the method, with the methods `allow`ed on `what`.
fn not_allowed(method: &Method, what: &str, allow: &'static str) -> Response<FrontBody> {
    let mut refused = message(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed on {what}"));
    refused.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    refused
}

/// Reads and drops a request body that is not used, up to `limit` bytes; true when it ended.
async fn discarded(mut body: Incoming, limit: usize) -> bool {
    let mut read = 0;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, Bytes::len);
        if read > limit {
            return false;
        }
    }
    body.is_end_stream()
}

/// A plain-text answer of one line: control characters in quoted input are escaped.
fn message(status: StatusCode, text: &str) -> Response<FrontBody> {
    let mut line = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, line.len())
        .body(Pieces::from(vec![Bytes::from(line)]).boxed_unsync())
        .expect("valid headers")
}
