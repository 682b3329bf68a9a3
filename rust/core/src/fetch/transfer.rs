//! A response body streamed into a file in gathered writes, and the headers the engine reads (Content-Range,
//! Content-Length, the validator).

use std::sync::atomic::Ordering;

use reqwest::header::{CONTENT_RANGE, ETAG, HeaderMap, LAST_MODIFIED};

use super::file::RequestSlot;
use super::schedule::Context;
use crate::error::{Error, Result};

/// Received bytes are gathered into writes of this size (fewer system calls than one write per network read). Also
/// the step of a chunk's journaled progress: bytes gathered and not yet written are lost to a kill.
pub(super) const WRITE_BUFFER: usize = 256 << 10;
/// Network reads at least this large are written without gathering.
const DIRECT_WRITE_MIN: usize = 64 << 10;

pub(super) enum StreamFailure {
    /// The network failed after `written` bytes reached the file; worth a retry.
    Transfer {
        message: String,
        written: u64,
    },
    /// Writing locally failed: the whole download stops.
    Local(Error),
    Stopped,
}

/// Reads a body into `sink(data, offset)` in writes of up to `WRITE_BUFFER` bytes, from `start` up to `end`
/// (exclusive; `u64::MAX` when unknown). Returns the bytes written.
pub(super) async fn stream_body(
    context: &Context,
    slot: RequestSlot,
    start: u64,
    end: u64,
    mut sink: impl FnMut(&[u8], u64) -> Result<()>,
) -> Result<u64, StreamFailure> {
    let mut response = slot.response;
    // Allocated on first use, for the body when it is smaller than a gathered write: most small bodies arrive in
    // one read and are written without it.
    let capacity = usize::try_from(end - start).map_or(WRITE_BUFFER, |n| n.min(WRITE_BUFFER));
    let mut buffer: Vec<u8> = Vec::new();
    let mut written = 0u64;
    // Writes bytes at the current offset and counts them; `flush!` empties the gathering buffer through it.
    let mut emit = |data: &[u8], written: &mut u64| -> Result<(), StreamFailure> {
        sink(data, start + *written).map_err(StreamFailure::Local)?;
        *written += data.len() as u64;
        context.progress.add_bytes(data.len() as u64);
        context.bytes_transferred.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    };
    macro_rules! flush {
        () => {
            if !buffer.is_empty() {
                emit(&buffer, &mut written)?;
                buffer.clear();
            }
        };
    }
    loop {
        let next = tokio::select! {
            biased;
            () = context.stop.wait() => {
                flush!();
                return Err(StreamFailure::Stopped);
            }
            next = response.chunk(&context.client) => next,
        };
        match next {
            Ok(Some(data)) => {
                let received = written + buffer.len() as u64 + data.len() as u64;
                if start + received > end {
                    flush!();
                    return Err(StreamFailure::Transfer {
                        message: "the server sent more bytes than asked for".into(),
                        written,
                    });
                }
                if buffer.is_empty() && (data.len() >= DIRECT_WRITE_MIN || start + received == end) {
                    // A large read, or the whole rest of the body (most small files arrive in one read), goes to
                    // the file as it is: gathering it first would only add a copy.
                    emit(&data, &mut written)?;
                    continue;
                }
                if buffer.capacity() == 0 {
                    buffer.reserve_exact(capacity);
                }
                buffer.extend_from_slice(&data);
                if buffer.len() >= WRITE_BUFFER {
                    flush!();
                }
            }
            Ok(None) => {
                flush!();
                if end != u64::MAX && start + written < end {
                    return Err(StreamFailure::Transfer {
                        message: format!("the connection closed after {} of {} bytes", written, end - start),
                        written,
                    });
                }
                return Ok(written);
            }
            Err(error) => {
                flush!();
                let message = match error {
                    Error::Http { message, .. } => message,
                    other => other.to_string(),
                };
                return Err(StreamFailure::Transfer { message, written });
            }
        }
    }
}

pub(super) struct ContentRange {
    pub(super) start: u64,
    pub(super) end_inclusive: u64,
    pub(super) total: u64,
}

/// `Content-Range: bytes START-END/TOTAL`.
pub(super) fn parse_content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let range = ContentRange {
        start: start.trim().parse().ok()?,
        end_inclusive: end.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
    };
    (range.start <= range.end_inclusive && range.end_inclusive < range.total).then_some(range)
}

pub(super) fn header_u64(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// What identifies this version of the file upstream: its ETag, else its Last-Modified date.
pub(super) fn validator_of(headers: &HeaderMap) -> String {
    headers
        .get(ETAG)
        .or_else(|| headers.get(LAST_MODIFIED))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn content_ranges_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 10-19/100"));
        let range = parse_content_range(&headers).unwrap();
        assert_eq!((range.start, range.end_inclusive, range.total), (10, 19, 100));
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 10-100/100"));
        assert!(parse_content_range(&headers).is_none());
    }
}
