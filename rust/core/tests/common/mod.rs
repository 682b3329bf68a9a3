//! A small HTTP/1.1 file server on loopback for the integration tests: hyper on its own tokio runtime, serving
//! files from memory with Range support (one range), optionally without a Content-Length (chunked transfer
//! encoding), counting the connections it accepted, and able to close its idle connections as a server's
//! keep-alive timeout does.

#![allow(dead_code)] // each test crate uses part of it

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_RANGE, ETAG, RANGE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How a file is sent when no Range is asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    ContentLength,
    /// No Content-Length: the body goes in pieces of this many bytes with `Transfer-Encoding: chunked`.
    Chunked(usize),
}

struct Served {
    data: Bytes,
    framing: Framing,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    open: AtomicUsize,
    requests: Mutex<HashMap<String, Vec<Option<String>>>>,
}

pub struct FileServer {
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    close_idle: watch::Sender<u64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FileServer {
    pub fn start(files: Vec<(&str, Vec<u8>, Framing)>) -> FileServer {
        let files: Arc<HashMap<String, Served>> = Arc::new(
            files
                .into_iter()
                .map(|(path, data, framing)| (path.to_owned(), Served { data: Bytes::from(data), framing }))
                .collect(),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let (close_idle, _) = watch::channel(0u64);
        let accept_counters = Arc::clone(&counters);
        let closing = close_idle.subscribe();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                accept_counters.accepted.fetch_add(1, Ordering::SeqCst);
                accept_counters.open.fetch_add(1, Ordering::SeqCst);
                let (files, counters, mut closing) =
                    (Arc::clone(&files), Arc::clone(&accept_counters), closing.clone());
                closing.mark_unchanged();
                tokio::spawn(async move {
                    let service = service_fn(|request| {
                        std::future::ready(Ok::<_, Infallible>(answer(&files, &counters, &request)))
                    });
                    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    loop {
                        tokio::select! {
                            _ = connection.as_mut() => break,
                            // An idle connection closes at once; one serving a request closes after its answer.
                            Ok(()) = closing.changed() => connection.as_mut().graceful_shutdown(),
                        }
                    }
                    counters.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        FileServer { addr, counters, close_idle, runtime: Some(runtime) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// TCP connections accepted since the start.
    pub fn connections(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// The Range header of every request for `path`, in order (`None` for a request without one).
    pub fn requests(&self, path: &str) -> Vec<Option<String>> {
        self.counters.requests.lock().unwrap().get(path).cloned().unwrap_or_default()
    }

    /// Closes every idle connection (as a keep-alive timeout does) and returns once none is open.
    pub fn close_idle_connections(&self) {
        self.close_idle.send_modify(|generation| *generation += 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.counters.open.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "the server's connections did not close");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn answer(files: &HashMap<String, Served>, counters: &Counters, request: &Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let range = request.headers().get(RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    counters.requests.lock().unwrap().entry(path.clone()).or_default().push(range.clone());
    let Some(served) = files.get(&path) else {
        return Response::builder().status(StatusCode::NOT_FOUND).body(full(Bytes::new())).unwrap();
    };
    let data = &served.data;
    let etag = format!("\"{}\"", data.len());
    if let Some((start, end)) = range.as_deref().and_then(|r| single_range(r, data.len())) {
        return Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header(ETAG, etag)
            .header(CONTENT_RANGE, format!("bytes {start}-{}/{}", end - 1, data.len()))
            .body(full(data.slice(start..end)))
            .unwrap();
    }
    let body = match served.framing {
        Framing::ContentLength => full(data.clone()),
        Framing::Chunked(piece) => {
            let pieces: Vec<Result<Frame<Bytes>, Infallible>> = (0..data.len())
                .step_by(piece.max(1))
                .map(|at| Ok(Frame::data(data.slice(at..(at + piece).min(data.len())))))
                .collect();
            StreamBody::new(futures_util::stream::iter(pieces)).boxed()
        }
    };
    Response::builder().header(ETAG, etag).body(body).unwrap()
}

fn full(data: Bytes) -> Body {
    Full::new(data).boxed()
}

/// `bytes=START-END` or `bytes=START-` within `size`, as a half-open range.
fn single_range(header: &str, size: usize) -> Option<(usize, usize)> {
    let (start, end) = header.strip_prefix("bytes=")?.split_once('-')?;
    let start: usize = start.parse().ok()?;
    let end = if end.is_empty() { size } else { (end.parse::<usize>().ok()? + 1).min(size) };
    (start < end).then_some((start, end))
}

/// Seeded bytes that do not repeat within a chunk.
pub fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
