//! `/Content/<XX>/<SHA-1><ext>` answered by the front itself: the path is read through the one layout parser
//! (`ContentName`, never joined raw; only regular files reached without a symbolic link are served), validators
//! (ETag, Last-Modified) and conditional requests (If-None-Match, If-Modified-Since, If-Range) are checked, one range
//! is a plain 206, several are `multipart/byteranges`, and an unsatisfiable or malformed range is a 416 with a
//! one-line message. A body up to 64 KiB is read with one pread and leaves with the headers; a larger one is a plan
//! of heads and file ranges (`FileParts`), which `plain` sends by sendfile, and which hyper (TLS) reads a piece at a
//! time on the blocking pool, the next piece while the current one is sent. (Not a memory map, which would spare
//! hyper's copy: a file truncated under a map, or a disk read failing, would kill the whole server with SIGBUS, where
//! a read fails this one response.)

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::{File, Metadata, OpenOptions};
use std::future::Future;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use tokio::task::JoinHandle;

use super::{BoxError, FrontBody, message};
use crate::store::ContentName;

/// The most ranges one request may ask for.
pub const MAX_RANGES: usize = 64;
/// Responses up to this size are read with one pread and sent with their headers.
pub(crate) const SMALL_BODY: u64 = 64 << 10;
/// Larger bodies are read and sent in pieces of this size.
const READ_PIECE: u64 = 1 << 20;
/// The latest date an HTTP date can spell (9999-12-31T23:59:59Z).
const LAST_HTTP_DATE: i64 = 253_402_300_799;

/// Why a Range header cannot be served (answered with 416 and this message).
#[derive(Debug, PartialEq, Eq)]
pub struct UnsatisfiableRange(pub String);

/// The satisfiable byte ranges of a Range header as (start, end exclusive); `Ok(None)` when the header is not a
/// bytes range at all (then the whole file is sent). An error when it is malformed or nothing in it can be
/// satisfied.
pub fn parse_ranges(header: &str, size: u64) -> Result<Option<Vec<(u64, u64)>>, UnsatisfiableRange> {
    let (unit, specs) = header.split_once('=').unwrap_or((header, ""));
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(None);
    }
    let parts: Vec<&str> = specs.split(',').map(str::trim).filter(|spec| !spec.is_empty()).collect();
    if parts.is_empty() {
        return Err(UnsatisfiableRange("empty byte range set".into()));
    }
    if parts.len() > MAX_RANGES {
        return Err(UnsatisfiableRange(format!("more than {MAX_RANGES} ranges in one request")));
    }
    let number = |digits: &str| -> Option<Option<u64>> {
        if digits.is_empty() {
            Some(None)
        } else if digits.bytes().all(|b| b.is_ascii_digit()) {
            Some(Some(digits.parse().unwrap_or(u64::MAX))) // only too many digits fail: past any file's end
        } else {
            None
        }
    };
    let mut ranges = Vec::with_capacity(parts.len());
    for spec in parts {
        let malformed = || UnsatisfiableRange(format!("malformed range {spec:?}"));
        let (first, last) = spec.split_once('-').ok_or_else(malformed)?;
        let (first, last) = (number(first).ok_or_else(malformed)?, number(last).ok_or_else(malformed)?);
        let (start, end) = match (first, last) {
            (None, None | Some(0)) => return Err(malformed()),
            (None, Some(suffix)) => (size.saturating_sub(suffix), size),
            (Some(start), Some(last)) if last < start => return Err(malformed()),
            (Some(start), last) => (start, last.map_or(size, |last| size.min(last.saturating_add(1)))),
        };
        if start < size {
            ranges.push((start, end));
        }
    }
    if ranges.is_empty() {
        return Err(UnsatisfiableRange(format!("no range within the file's {size} bytes")));
    }
    Ok(Some(ranges))
}

/// The content directory the front serves.
pub(crate) struct ContentFiles {
    root: PathBuf,
}

impl ContentFiles {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        ContentFiles { root: root.into() }
    }

    /// The answer to a GET or HEAD of `relative` (the request path after `/Content/`).
    pub(crate) fn answer(&self, method: &Method, relative: &str, headers: &HeaderMap) -> Response<FrontBody> {
        let Ok(name) = ContentName::parse_relative(relative) else {
            return message(StatusCode::NOT_FOUND, &format!("{relative:?} is not the name of a content file"));
        };
        let missing = || message(StatusCode::NOT_FOUND, &format!("no content file {}", name.relative_path()));
        let file = match open_inside(&self.root, &name) {
            Ok(file) => file,
            // Nothing there, or a symbolic link where the folder or the file should be: no content file either way.
            Err(error) if matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)) => {
                return missing();
            }
            Err(error) => return failure(&error),
        };
        match file.metadata() {
            Ok(metadata) if metadata.is_file() => answer_file(method, &file, &metadata, headers),
            Ok(_) => missing(),
            Err(error) => failure(&error),
        }
    }
}

/// Opens a content file without following a symbolic link, neither its folder nor the file itself, so only what is
/// inside the content directory is served (a link could lead anywhere). Non-blocking, so a FIFO placed there does
/// not hold a thread; the caller serves regular files only.
fn open_inside(root: &Path, name: &ContentName) -> std::io::Result<File> {
    let folder = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(root.join(name.folder()))?;
    let file_name = CString::new(name.file_name()).map_err(std::io::Error::other)?;
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: openat with a directory descriptor we own and a NUL-terminated name; the result is checked.
    let descriptor = unsafe { libc::openat(folder.as_raw_fd(), file_name.as_ptr(), flags) };
    if descriptor < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor openat just returned, owned by nothing else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(descriptor) }))
}

fn failure(error: &dyn std::error::Error) -> Response<FrontBody> {
    message(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot read the content file: {error}"))
}

/// A validator pair of a file: its ETag (`"<mtime ns hex>-<size hex>"`) and Last-Modified date.
fn validators(metadata: &Metadata) -> (String, String) {
    let nanoseconds = i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec());
    let sign = if nanoseconds < 0 { "-" } else { "" };
    let etag = format!("\"{sign}{:x}-{:x}\"", nanoseconds.unsigned_abs(), metadata.size());
    let seconds = metadata.mtime().clamp(0, LAST_HTTP_DATE).unsigned_abs();
    (etag, httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(seconds)))
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

fn answer_file(method: &Method, file: &File, metadata: &Metadata, request: &HeaderMap) -> Response<FrontBody> {
    let size = metadata.size();
    let (etag, last_modified) = validators(metadata);
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(if_none_match) = text(request, header::IF_NONE_MATCH) {
        let mut tags = if_none_match.split(',').map(|tag| tag.trim().trim_start_matches("W/"));
        if tags.any(|tag| tag == etag || tag == "*") {
            return empty(response.status(StatusCode::NOT_MODIFIED));
        }
    } else if let Some(since) =
        text(request, header::IF_MODIFIED_SINCE).and_then(|v| httpdate::parse_http_date(&v).ok())
    {
        let since =
            since.duration_since(UNIX_EPOCH).map_or(i64::MIN, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if metadata.mtime() <= since {
            return empty(response.status(StatusCode::NOT_MODIFIED));
        }
    }
    let whole = vec![(0, size, Bytes::new())];
    let if_range = text(request, header::IF_RANGE);
    let range = text(request, header::RANGE)
        .filter(|_| if_range.as_ref().is_none_or(|tag| *tag == etag || *tag == last_modified)); // else stale
    let ranges = match range.map(|range| parse_ranges(&range, size)) {
        None | Some(Ok(None)) => return send_parts(method, file, response, whole, Bytes::new()),
        Some(Ok(Some(ranges))) => ranges,
        Some(Err(UnsatisfiableRange(reason))) => {
            let mut refused = message(StatusCode::RANGE_NOT_SATISFIABLE, &reason);
            let content_range = HeaderValue::from_str(&format!("bytes */{size}")).expect("ASCII");
            refused.headers_mut().insert(header::CONTENT_RANGE, content_range);
            return refused;
        }
    };
    response = response.status(StatusCode::PARTIAL_CONTENT);
    if let [(start, end)] = ranges[..] {
        response = response.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{size}", end - 1));
        return send_parts(method, file, response, vec![(start, end, Bytes::new())], Bytes::new());
    }
    let boundary = format!("{:032x}", rand::random::<u128>());
    let parts = ranges
        .into_iter()
        .map(|(start, end)| {
            let head = format!(
                "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {start}-{}/{size}\r\n\r\n",
                end - 1
            );
            (start, end, Bytes::from(head))
        })
        .collect();
    let content_type = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}")).expect("ASCII");
    if let Some(headers) = response.headers_mut() {
        headers.insert(header::CONTENT_TYPE, content_type); // replaces application/octet-stream
    }
    send_parts(method, file, response, parts, Bytes::from(format!("\r\n--{boundary}--\r\n")))
}

fn empty(response: hyper::http::response::Builder) -> Response<FrontBody> {
    response.body(Pieces::default().boxed_unsync()).expect("valid headers")
}

/// Sends (start, end, head) parts of the file, each head followed by the file's bytes, then `tail`.
fn send_parts(
    method: &Method,
    file: &File,
    mut response: hyper::http::response::Builder,
    parts: Vec<(u64, u64, Bytes)>,
    tail: Bytes,
) -> Response<FrontBody> {
    let length =
        parts.iter().map(|(start, end, head)| head.len() as u64 + end - start).sum::<u64>() + tail.len() as u64;
    response = response.header(header::CONTENT_LENGTH, length);
    if method == Method::HEAD {
        return empty(response);
    }
    if length > SMALL_BODY {
        return match file.try_clone() {
            Ok(file) => {
                // The plan goes with the response too: a plain-HTTP connection sends it by sendfile (`plain`), and
                // hyper, which never polls a body it does not send, reads it a piece at a time (TLS).
                let plan = FileParts::new(file, parts, tail);
                response.extension(plan.clone()).body(FileBody::from(plan).boxed_unsync()).expect("valid headers")
            }
            Err(error) => failure(&error),
        };
    }
    match read_parts(file, &parts, &tail) {
        Ok(body) => response.body(body.boxed_unsync()).expect("valid headers"),
        Err(error) => failure(&error),
    }
}

/// A small body read at once: one buffer, one write with the headers.
fn read_parts(file: &File, parts: &[(u64, u64, Bytes)], tail: &Bytes) -> std::io::Result<Pieces> {
    let mut body = Vec::with_capacity(SMALL_BODY as usize);
    for (start, end, head) in parts {
        body.extend_from_slice(head);
        append_read(file, *start, (end - start) as usize, &mut body)?;
    }
    body.extend_from_slice(tail);
    Ok(Pieces::from(vec![Bytes::from(body)]))
}

/// What a large body consists of: heads and tails as they are, between them ranges of the file.
#[derive(Clone)]
pub(crate) struct FileParts {
    pub(crate) file: Arc<File>,
    pub(crate) segments: VecDeque<Segment>,
    remaining: u64,
}

#[derive(Clone)]
pub(crate) enum Segment {
    Bytes(Bytes),
    File { start: u64, end: u64 },
}

impl FileParts {
    fn new(file: File, parts: Vec<(u64, u64, Bytes)>, tail: Bytes) -> Self {
        let mut segments = VecDeque::new();
        let mut remaining = tail.len() as u64;
        for (start, end, head) in parts {
            remaining += head.len() as u64 + end - start;
            if !head.is_empty() {
                segments.push_back(Segment::Bytes(head));
            }
            if end > start {
                segments.push_back(Segment::File { start, end });
            }
        }
        if !tail.is_empty() {
            segments.push_back(Segment::Bytes(tail));
        }
        FileParts { file: Arc::new(file), segments, remaining }
    }
}

/// A large body as hyper sends it: the file's ranges read a piece at a time off the event loop, one piece ahead of
/// the socket.
pub(crate) struct FileBody {
    file: Arc<File>,
    segments: VecDeque<Segment>,
    /// The piece being read: it comes before everything still in `segments`.
    reading: Option<JoinHandle<std::io::Result<Bytes>>>,
    remaining: u64,
}

impl From<FileParts> for FileBody {
    fn from(plan: FileParts) -> Self {
        FileBody { file: plan.file, segments: plan.segments, reading: None, remaining: plan.remaining }
    }
}

impl FileBody {
    /// Starts reading the next piece when the next segment is the file's.
    fn read_ahead(&mut self) {
        if self.reading.is_some() {
            return;
        }
        let Some(Segment::File { start, end }) = self.segments.front_mut() else { return };
        let at = *start;
        let length = (*end - at).min(READ_PIECE) as usize;
        *start += length as u64;
        if *start == *end {
            self.segments.pop_front();
        }
        let file = self.file.clone();
        self.reading = Some(tokio::task::spawn_blocking(move || {
            let mut piece = Vec::with_capacity(length);
            append_read(&file, at, length, &mut piece)?;
            Ok(Bytes::from(piece))
        }));
    }
}

/// Appends `length` bytes of the file read at `at` to `buffer`, which is not zeroed first: the reads fill every byte,
/// and zeroing would be one more pass over memory for each piece, the front's cost on a large file.
fn append_read(file: &File, at: u64, length: usize, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    let end = buffer.len() + length;
    buffer.reserve(length);
    while buffer.len() < end {
        let wanted = end - buffer.len();
        let offset = libc::off_t::try_from(at + (length - wanted) as u64).map_err(std::io::Error::other)?;
        // SAFETY: pread writes at most `wanted` bytes into the spare capacity (reserved: at least `wanted` long), and
        // the length grows by exactly the bytes it wrote.
        let read =
            unsafe { libc::pread(file.as_raw_fd(), buffer.spare_capacity_mut().as_mut_ptr().cast(), wanted, offset) };
        match read {
            0 => return Err(std::io::Error::other("the file shrank while it was sent")),
            ..0 => {
                let error = std::io::Error::last_os_error();
                if error.kind() != ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            // SAFETY: the first `read` bytes of the spare capacity were just written.
            _ => unsafe { buffer.set_len(buffer.len() + read.unsigned_abs()) },
        }
    }
    Ok(())
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(reading) = self.reading.as_mut() {
                let read = std::task::ready!(Pin::new(reading).poll(cx));
                self.reading = None;
                let piece = match read {
                    Ok(Ok(piece)) => piece,
                    Ok(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                    Err(join) => return Poll::Ready(Some(Err(join.into()))),
                };
                self.remaining -= piece.len() as u64;
                self.read_ahead();
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            match self.segments.front() {
                None => return Poll::Ready(None),
                Some(Segment::File { .. }) => self.read_ahead(),
                Some(Segment::Bytes(_)) => {
                    let Some(Segment::Bytes(bytes)) = self.segments.pop_front() else { unreachable!() };
                    self.remaining -= bytes.len() as u64;
                    self.read_ahead();
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reading.is_none() && self.segments.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        // A client that went away: the piece being read is not wanted.
        if let Some(reading) = self.reading.take() {
            reading.abort();
        }
    }
}

/// A body of byte pieces known in advance, sent in order.
#[derive(Default)]
pub(crate) struct Pieces {
    pieces: VecDeque<Bytes>,
    remaining: u64,
}

impl From<Vec<Bytes>> for Pieces {
    fn from(pieces: Vec<Bytes>) -> Self {
        let remaining = pieces.iter().map(|piece| piece.len() as u64).sum();
        Pieces { pieces: pieces.into(), remaining }
    }
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let piece = self.pieces.pop_front();
        if let Some(piece) = &piece {
            self.remaining -= piece.len() as u64;
        }
        Poll::Ready(piece.map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(header: &str, size: u64) -> Result<Option<Vec<(u64, u64)>>, UnsatisfiableRange> {
        parse_ranges(header, size)
    }

    #[test]
    fn single_suffix_and_open_ranges() {
        assert_eq!(ranges("bytes=100-999", 5000), Ok(Some(vec![(100, 1000)])));
        assert_eq!(ranges("bytes=-500", 5000), Ok(Some(vec![(4500, 5000)])));
        assert_eq!(ranges("bytes=-9000", 5000), Ok(Some(vec![(0, 5000)])));
        assert_eq!(ranges("bytes=4990-", 5000), Ok(Some(vec![(4990, 5000)])));
        assert_eq!(ranges("bytes=10-99999999999999999999999", 5000), Ok(Some(vec![(10, 5000)])));
        assert_eq!(ranges(" Bytes = 0-0 , ,1-1", 5), Ok(Some(vec![(0, 1), (1, 2)])));
    }

    #[test]
    fn other_units_mean_the_whole_file() {
        assert_eq!(ranges("items=0-5", 5000), Ok(None));
        assert_eq!(ranges("nonsense", 5000), Ok(None));
    }

    #[test]
    fn unsatisfiable_and_malformed_ranges_are_refused() {
        for bad in ["bytes=", "bytes=,", "bytes=5", "bytes=-", "bytes=-0", "bytes=9-3", "bytes=a-3", "bytes=+1-2"] {
            assert!(ranges(bad, 5000).is_err(), "{bad}");
        }
        assert!(ranges("bytes=5000-", 5000).is_err());
        assert!(ranges("bytes=0-1", 0).is_err());
        let many = format!("bytes={}", vec!["0-1"; MAX_RANGES + 1].join(","));
        assert!(ranges(&many, 5000).is_err());
        let most = format!("bytes={}", vec!["0-1"; MAX_RANGES].join(","));
        assert_eq!(ranges(&most, 5000).map(|r| r.map(|r| r.len())), Ok(Some(MAX_RANGES)));
    }

    #[test]
    fn a_read_appends_the_range_after_what_the_buffer_holds_and_a_short_file_fails() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("file");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mut buffer = b"head".to_vec();
        append_read(&file, 1_000_001, 1_500_000, &mut buffer).unwrap();
        assert_eq!(&buffer[..4], b"head");
        assert_eq!(&buffer[4..], &data[1_000_001..2_500_001]);
        let error = append_read(&file, 2_999_000, 1_001, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("shrank"), "{error}");
    }
}
