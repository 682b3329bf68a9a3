//! The aiohttp backend behind the front: every request that is not `/Content` is forwarded to it on its private
//! Unix socket (bodies streamed both ways, hop-by-hop headers removed, connections pooled), and it decides who may
//! read content, as nginx's `auth_request` does: the front asks `GET /api/v1/content-access` with the client's
//! Authorization header, remembers a yes for a few seconds per header value, and passes a no on unchanged.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;

use super::{BoxError, FrontBody, message, not_allowed};
use crate::error::message_chain;

/// The backend route that answers 204 when a request's Authorization header may read content (else 401).
pub const ACCESS_PATH: &str = "/api/v1/content-access";
/// A token found valid is trusted this long without asking again (app.py's TOKEN_CACHE_SECONDS), so content costs
/// no backend round trip per file and a revoked token stops working within this time.
const TOKEN_CACHE: Duration = Duration::from_secs(5);
/// The cache forgets everything when it holds this many header values.
const TOKEN_CACHE_ENTRIES: usize = 10_000;
/// Idle backend connections are closed after this long (before aiohttp's own keep-alive timeout).
const IDLE_BACKEND_CONNECTION: Duration = Duration::from_secs(30);
/// The methods the backend's routes answer (GET and POST; aiohttp answers HEAD for every GET). aiohttp refuses a
/// method it does not know with a multi-line 400 and a traceback in the log, so the front refuses the others.
const METHODS: [Method; 3] = [Method::GET, Method::HEAD, Method::POST];
const ALLOW: &str = "GET, HEAD, POST";

/// Headers that describe one connection rather than the message, so they are not forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Connects the pooled client to the backend's Unix socket, whatever the URI says.
#[derive(Clone)]
struct UnixConnector(Arc<PathBuf>);

impl tower_service::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<UnixStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = Arc::clone(&self.0);
        Box::pin(async move { UnixStream::connect(&*path).await.map(TokioIo::new) })
    }
}

/// A failure reading the client's request body while it was forwarded (a malformed chunk, a body cut short): the
/// client's fault, answered 400, where a failure of the backend is a 502.
#[derive(Debug)]
struct ClientBodyError(hyper::Error);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&message_chain(self.0.to_string(), std::error::Error::source(&self.0)))
    }
}

impl std::error::Error for ClientBodyError {}

pub(crate) struct Backend {
    client: Client<UnixConnector, FrontBody>,
    /// The largest request body the backend takes (app.py's MAX_BODY).
    max_request_body: u64,
    /// Authorization header values found valid, until when (kept in this process's memory only, never logged).
    access: Mutex<HashMap<HeaderValue, Instant>>,
}

impl Backend {
    pub(crate) fn new(socket: PathBuf, max_request_body: u64) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_BACKEND_CONNECTION)
            .build(UnixConnector(Arc::new(socket)));
        Backend { client, max_request_body, access: Mutex::new(HashMap::new()) }
    }

    /// The answer to a request the backend would refuse, given at once: a method it does not serve (405), a body
    /// declared larger than it takes (413, before any of the body is read).
    pub(crate) fn refusal<B: Body>(&self, request: &Request<B>) -> Option<Response<FrontBody>> {
        if !METHODS.contains(request.method()) {
            return Some(not_allowed(request.method(), "this server", ALLOW));
        }
        let declared = request.body().size_hint().lower(); // the Content-Length (0 for a chunked body)
        (declared > self.max_request_body).then(|| {
            let text = format!("a body of {declared} bytes; this server takes at most {}", self.max_request_body);
            message(StatusCode::PAYLOAD_TOO_LARGE, &text)
        })
    }

    /// `None` when the request's Authorization header may read content; otherwise the backend's refusal (401, or
    /// a 502 when the backend does not answer) to send to the client as it is.
    pub(crate) async fn check_access(&self, headers: &HeaderMap) -> Option<Response<FrontBody>> {
        let authorization = headers.get(header::AUTHORIZATION);
        if let Some(value) = authorization {
            let access = self.access.lock().expect("the token cache lock is never poisoned");
            if access.get(value).is_some_and(|until| *until > Instant::now()) {
                return None;
            }
        }
        let mut request = Request::get(backend_uri(ACCESS_PATH))
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .expect("a valid request");
        if let Some(value) = authorization {
            request.headers_mut().insert(header::AUTHORIZATION, value.clone());
        }
        let answer = self.send(request).await;
        if answer.status() != StatusCode::NO_CONTENT {
            return Some(answer);
        }
        if let Some(value) = authorization {
            let mut access = self.access.lock().expect("the token cache lock is never poisoned");
            if access.len() >= TOKEN_CACHE_ENTRIES {
                access.clear();
            }
            access.insert(value.clone(), Instant::now() + TOKEN_CACHE);
        }
        None
    }

    /// The backend's answer to a client's request, both bodies streamed.
    pub(crate) async fn forward(&self, request: Request<Incoming>) -> Response<FrontBody> {
        let (mut parts, body) = request.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        parts.uri = backend_uri(parts.uri.path_and_query().map_or("/", |path| path.as_str()));
        parts.version = Version::HTTP_11;
        let body = body.map_err(|error| BoxError::from(ClientBodyError(error)));
        self.send(Request::from_parts(parts, body.boxed_unsync())).await
    }

    async fn send(&self, request: Request<FrontBody>) -> Response<FrontBody> {
        match self.client.request(request).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
            }
            Err(error) => {
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
                while let Some(error) = cause {
                    if let Some(ClientBodyError(_)) = error.downcast_ref() {
                        // The client's connection is broken: it ends with the answer.
                        let mut refused = message(StatusCode::BAD_REQUEST, &format!("the request body: {error}"));
                        refused.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                        return refused;
                    }
                    cause = error.source();
                }
                message(StatusCode::BAD_GATEWAY, &format!("the server's backend did not answer: {error}"))
            }
        }
    }
}

fn backend_uri(path_and_query: &str) -> Uri {
    format!("http://backend{path_and_query}").parse().unwrap_or_else(|_| Uri::from_static("http://backend/"))
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    // Upgrade is hop-by-hop too, but the backend serves no protocol upgrade.
    headers.remove(header::UPGRADE);
}
