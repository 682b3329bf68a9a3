//! Plain-HTTP connections, answered here while their requests are for `/Content`: the request head is read with
//! httparse, the answer is the one `content` gives hyper, and a file's ranges go from the page cache to the socket by
//! sendfile(2), with no copy through user space, on the blocking pool (a disk read never stalls the event loop). The
//! first request that is anything else (another path or method, a request body, HTTP/1.0, a head httparse refuses)
//! hands the connection, with every byte read so far, to hyper for the rest of its life; TLS connections are hyper's
//! from the start.

use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::content::{FileParts, Segment};
use super::{CONTENT_PREFIX, FrontBody, HEADER_READ_TIMEOUT, MAX_REQUEST_TARGET, Routes, oversized, serve_connection};

/// The longest request head read here; a longer one goes to hyper, which answers it as it does any other.
const MAX_HEAD: usize = 16 << 10;
/// The most header fields of a request read here (more go to hyper).
const MAX_HEADERS: usize = 64;
/// The most bytes one sendfile call is asked to move: the socket takes what fits in its buffer, and a call that
/// returns lets the connection's task see its peer again.
const SENDFILE_PIECE: usize = 8 << 20;

/// Serves one plain-HTTP connection. Holding `watcher` until it ends (or hyper takes it over) is what the front's
/// stop waits for; `stopped` ends it between requests.
pub(super) async fn serve_plain(
    stream: TcpStream,
    routes: Arc<Routes>,
    watcher: Watcher,
    mut stopped: watch::Receiver<bool>,
) {
    let stream = Arc::new(stream);
    let mut buffer = BytesMut::with_capacity(4096);
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(HEADER_READ_TIMEOUT, next_request(&stream, &mut buffer)) => next,
            _ = stopped.changed(), if buffer.is_empty() => return, // idle between requests: the front stops
        };
        let request = match next {
            Ok(Ok(Next::Content(request))) => request,
            Ok(Ok(Next::HandOff)) => break,
            Ok(Ok(Next::Closed) | Err(_)) | Err(_) => return, // gone, broken, or silent for too long
        };
        let close = wants_close(request.headers()) || *stopped.borrow();
        let method = request.method().clone();
        let response = match oversized(&request) {
            Some(refused) => refused,
            None => routes.answer_content(&(*request).into_parts().0).await,
        };
        if send(&stream, &method, response, close).await.is_err() || close {
            return;
        }
    }
    // hyper takes the connection over with what was read of it.
    let Ok(stream) = Arc::try_unwrap(stream) else { return };
    serve_connection(Prefixed { prefix: buffer.freeze(), stream }, routes, watcher).await;
}

enum Next {
    /// A GET or HEAD of `/Content/...`, without a body, in HTTP/1.1: answered here.
    Content(Box<Request<()>>),
    /// Anything else: hyper answers it and everything after it on this connection.
    HandOff,
    /// The client closed the connection between requests.
    Closed,
}

/// Reads until `buffer` holds a whole request head, then takes the head out of it (a pipelined request's bytes stay).
async fn next_request(stream: &TcpStream, buffer: &mut BytesMut) -> io::Result<Next> {
    loop {
        if !buffer.is_empty() {
            match content_request(buffer) {
                Parsed::Complete(request, length) => {
                    buffer.advance(length);
                    return Ok(Next::Content(request));
                }
                Parsed::NotHere => return Ok(Next::HandOff),
                Parsed::Partial if buffer.len() >= MAX_HEAD => return Ok(Next::HandOff),
                Parsed::Partial => {}
            }
        }
        stream.readable().await?;
        match stream.try_read_buf(buffer) {
            Ok(0) if buffer.is_empty() => return Ok(Next::Closed),
            Ok(0) => return Ok(Next::HandOff), // half a request, then the end: hyper's answer, as before
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
}

enum Parsed {
    Complete(Box<Request<()>>, usize),
    Partial,
    NotHere,
}

/// The request at the start of `head` when it is one answered here.
fn content_request(head: &[u8]) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let length = match parsed.parse(head) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::NotHere,
    };
    let (Some(method), Some(target), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Parsed::NotHere;
    };
    let method = match method {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ => return Parsed::NotHere,
    };
    if !target.starts_with(CONTENT_PREFIX) || target.len() > MAX_REQUEST_TARGET {
        return Parsed::NotHere;
    }
    let mut request = Request::builder().method(method).uri(target);
    for field in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else { return Parsed::NotHere };
        // A request with a body, or one that asks for something else than an answer, is hyper's.
        let body =
            name == header::TRANSFER_ENCODING || (name == header::CONTENT_LENGTH && field.value != b"0".as_slice());
        if body || name == header::EXPECT || name == header::UPGRADE {
            return Parsed::NotHere;
        }
        let Ok(value) = HeaderValue::from_bytes(field.value) else { return Parsed::NotHere };
        request = request.header(name, value);
    }
    match request.body(()) {
        Ok(request) => Parsed::Complete(Box::new(request), length),
        Err(_) => Parsed::NotHere,
    }
}

fn wants_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|value| value.split(',').any(|token| token.trim().eq_ignore_ascii_case("close")))
    })
}

/// Writes `response` as HTTP/1.1: its head, then its body (a file's ranges by sendfile).
async fn send(
    stream: &Arc<TcpStream>,
    method: &Method,
    mut response: Response<FrontBody>,
    close: bool,
) -> io::Result<()> {
    let plan = response.extensions_mut().remove::<FileParts>();
    let (mut parts, body) = response.into_parts();
    let no_body = *method == Method::HEAD
        || parts.status == StatusCode::NOT_MODIFIED
        || parts.status == StatusCode::NO_CONTENT
        || parts.status.is_informational();
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.remove(header::CONNECTION);
    if close {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if !parts.headers.contains_key(header::DATE) {
        let now = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())).expect("ASCII");
        parts.headers.insert(header::DATE, now);
    }
    if no_body {
        return write_all(stream, &[&head(parts.status, &parts.headers)]).await;
    }
    if let Some(plan) = plan {
        write_all(stream, &[&head(parts.status, &parts.headers)]).await?;
        for segment in plan.segments {
            match segment {
                Segment::Bytes(bytes) => write_all(stream, &[&bytes]).await?,
                Segment::File { start, end } => send_file(stream, &plan.file, start, end).await?,
            }
        }
        return Ok(());
    }
    // A message, a small file or the backend's refusal: in memory, sent with the head in one (vectored) write.
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    write_all(stream, &[&head(parts.status, &parts.headers), &body]).await
}

fn head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    let reason = status.canonical_reason().unwrap_or("");
    head.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", status.as_u16()).as_bytes());
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Writes the pieces in order, as few writes (writev) as the socket allows.
async fn write_all(stream: &TcpStream, pieces: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = pieces.iter().map(|piece| io::IoSlice::new(piece)).collect();
    let mut unsent = &mut slices[..];
    io::IoSlice::advance_slices(&mut unsent, 0); // past empty pieces
    while !unsent.is_empty() {
        stream.writable().await?;
        match stream.try_write_vectored(unsent) {
            Ok(written) => io::IoSlice::advance_slices(&mut unsent, written),
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Sends the file's bytes `start..end` by sendfile, each call on the blocking pool (the stream is held by the call,
/// so its descriptor stays open while the call runs, whatever happens to this task).
async fn send_file(stream: &Arc<TcpStream>, file: &Arc<std::fs::File>, mut start: u64, end: u64) -> io::Result<()> {
    while start < end {
        stream.writable().await?;
        // The readiness tokio holds may be older than a sendfile that found the socket full: ask the socket itself,
        // inside try_io, so tokio clears that readiness (and the task waits for room) only while it is still full.
        match stream.try_io(Interest::WRITABLE, || has_room(stream)) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
        let (socket, source) = (Arc::clone(stream), Arc::clone(file));
        let count = usize::try_from(end - start).unwrap_or(usize::MAX).min(SENDFILE_PIECE);
        let sent = tokio::task::spawn_blocking(move || {
            let mut offset = libc::off_t::try_from(start).map_err(io::Error::other)?;
            // SAFETY: sendfile between two descriptors this closure keeps open (both Arcs), with an offset it owns.
            let sent = unsafe { libc::sendfile(socket.as_raw_fd(), source.as_raw_fd(), &raw mut offset, count) };
            if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent.unsigned_abs()) }
        })
        .await
        .map_err(io::Error::other)?;
        match sent {
            Ok(0) => return Err(io::Error::other("the file shrank while it was sent")),
            Ok(sent) => start += sent as u64,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Whether the socket takes more bytes now (or has an error for the next call to report): poll(2), not waiting.
fn has_room(stream: &TcpStream) -> io::Result<()> {
    let mut socket = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    // SAFETY: one pollfd that lives across the call; a timeout of 0 never blocks.
    let ready = unsafe { libc::poll(&raw mut socket, 1, 0) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    if socket.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) == 0 {
        return Err(ErrorKind::WouldBlock.into());
    }
    Ok(())
}

/// A connection handed to hyper: the bytes already read from it come first.
struct Prefixed {
    prefix: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let length = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix.split_to(length));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
