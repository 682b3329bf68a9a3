//! One file's download: skipped when present, resumed from its journal, fetched in one piece or handed to the
//! chunked path, retried once from nothing on fresh connections after corruption, verified and placed; and the one
//! request of a file or chunk, with its connection and in-flight budget, retried by the client's retry policy.

use std::fs::{self, File};
use std::io::Write;
use std::sync::Arc;

use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderValue, RANGE};
use reqwest::{Method, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::chunked::finish_chunked;
use super::job::{DownloadJob, FileOutcome, JobTarget};
use super::journal::{load_journal, start_journal};
use super::schedule::{Context, FileError, Paths};
use super::transfer::{StreamFailure, header_u64, parse_content_range, stream_body, validator_of};
use crate::error::{Error, HttpErrorKind, IoResultExt};
use crate::hash::{Digests, MultiHasher};
use crate::http::{StreamingResponse, retry_after};
use crate::placement::Verified;

pub(super) async fn download_file(context: &Arc<Context>, job: DownloadJob) -> FileOutcome {
    let paths = context.paths(&job);
    if let Some(size) = job.size
        && fs::metadata(&paths.final_path).is_ok_and(|m| m.is_file() && m.len() == size)
    {
        context.progress.add_bytes(size);
        context.progress.file_done();
        return FileOutcome::Skipped { path: paths.final_path };
    }
    let label = job.label();
    if let Some(reason) = context.circuit(&job.url).gone() {
        context.progress.file_failed();
        return FileOutcome::Failed { reason: format!("{label}: {reason}") };
    }
    let mut fresh = false;
    loop {
        match attempt_file(context, &job, &paths, fresh).await {
            Ok(Placed { size, reused }) => {
                // In place once the placer's batch is: `download` returns only after that.
                return FileOutcome::Placed {
                    path: paths.final_path,
                    bytes_fetched: size - reused,
                    bytes_reused: reused,
                };
            }
            Err(FileError::Restart(_)) if !fresh => {
                // Nothing of this attempt can be trusted: start over on connections not used before.
                paths.discard();
                fresh = true;
            }
            Err(FileError::Restart(reason) | FileError::Failed(reason) | FileError::Unreachable(reason)) => {
                paths.discard_if_useless();
                context.progress.file_failed();
                return FileOutcome::Failed { reason: format!("{label}: {reason}") };
            }
            Err(FileError::Stop) => {
                return FileOutcome::Failed { reason: format!("{label}: stopped") };
            }
        }
    }
}

impl Paths {
    /// After a final failure a partial file without a journal cannot be resumed; one with a journal keeps its
    /// verified chunks for the next run.
    pub(super) fn discard_if_useless(&self) {
        if !self.journal.exists() {
            let _ = fs::remove_file(&self.part);
        }
    }
}

/// A placed file: its size and the bytes of it kept from an earlier run.
pub(super) struct Placed {
    pub(super) size: u64,
    pub(super) reused: u64,
}

/// One attempt at a file.
async fn attempt_file(
    context: &Arc<Context>,
    job: &DownloadJob,
    paths: &Paths,
    fresh: bool,
) -> Result<Placed, FileError> {
    let chunk_size = context.options.chunk_size;
    let mut attempts = 0;
    if job.size.is_some_and(|size| size <= chunk_size) {
        let slot = request(context, job, None, fresh, &mut attempts).await?;
        return whole_body(context, job, paths, slot, fresh, attempts).await;
    }
    // A chunked download, or a file of unknown size: resume what an earlier run verified, then probe with the first
    // missing chunk, whose answer says whether the server honours Range, the file's size and its validator.
    let leftover = !fresh && paths.part.file_name().is_some_and(|name| context.leftovers.contains(name));
    let resumed = if leftover {
        let part = paths.part.clone();
        let journal = paths.journal.clone();
        let expected_size = job.size;
        tokio::task::spawn_blocking(move || load_journal(&part, &journal, expected_size, chunk_size))
            .await
            .expect("journal loading does not panic")
    } else {
        None
    };
    if leftover && resumed.is_none() {
        paths.discard();
    }
    // `upmirror fetch` learns a size from the server; a journal remembers the size it learned.
    let known_size = job.size.or(resumed.as_ref().map(|r| r.size));
    if job.size.is_none()
        && let Some(size) = known_size
    {
        context.progress.add_total(0, size);
    }
    let first_missing = match &resumed {
        Some(r) => r.done.iter().position(|done| !done),
        None => Some(0),
    };
    let (start, end) = match (first_missing, &resumed) {
        (Some(index), _) => {
            let chunk_start = index as u64 * chunk_size;
            let end = known_size.map_or(chunk_start + chunk_size, |size| size.min(chunk_start + chunk_size));
            (chunk_start + resumed.as_ref().and_then(|r| r.kept.get(&index)).map_or(0, |kept| kept.length), end)
        }
        // Every chunk is in the journal: its last byte is asked for all the same, since only the server's answer
        // says whether the file is still the one the chunks came from (size and validator).
        (None, Some(r)) => (r.size.saturating_sub(1), r.size),
        (None, None) => unreachable!("no journal leaves the first chunk missing"),
    };
    let probe = request(context, job, Some((start, end)), fresh, &mut attempts).await?;
    let status = probe.response.status();
    if status == StatusCode::RANGE_NOT_SATISFIABLE && job.size.is_none() {
        // An empty file: nginx refuses any range of it.
        drop(probe);
        let slot = request(context, job, None, fresh, &mut attempts).await?;
        return whole_body(context, job, paths, slot, fresh, attempts).await;
    }
    if status == StatusCode::OK {
        // The server ignores Range: one stream of the whole body, nothing resumable.
        paths.discard();
        return whole_body(context, job, paths, probe, fresh, attempts).await;
    }
    let range = parse_content_range(probe.response.headers())
        .ok_or_else(|| FileError::Failed("a 206 answer without a valid Content-Range".into()))?;
    if range.start != start {
        return Err(FileError::Failed(format!("asked for bytes from {start}, the server sent from {}", range.start)));
    }
    if let Some(size) = job.size
        && range.total != size
    {
        return Err(FileError::Failed(format!(
            "the server has {} bytes where {size} were expected (changed upstream or wrong metadata)",
            range.total
        )));
    }
    let size = range.total;
    let validator = validator_of(probe.response.headers());
    if known_size.is_none() {
        context.progress.add_total(0, size);
        if size <= chunk_size {
            // The probe was the whole file.
            return whole_body(context, job, paths, probe, fresh, attempts).await;
        }
    }
    let resumed = match resumed {
        Some(r) if r.validator == validator && r.size == size => r,
        Some(_) => return Err(FileError::Restart("the file changed upstream since the interrupted run".into())),
        None => {
            let part = paths.part.clone();
            let journal = paths.journal.clone();
            let header_validator = validator.clone();
            tokio::task::spawn_blocking(move || start_journal(&part, &journal, size, chunk_size, &header_validator))
                .await
                .expect("journal creation does not panic")
                .map_err(|e| context.fatal(e))?
        }
    };
    finish_chunked(context, job, paths, size, resumed, first_missing.map(|index| (index, probe)), fresh).await
}

/// Streams one response body (no Range, or a probe that covered the whole file) into a fresh partial file, hashing
/// it in-stream, then verifies and places it. Transient failures start the body over.
async fn whole_body(
    context: &Context,
    job: &DownloadJob,
    paths: &Paths,
    first: RequestSlot,
    fresh: bool,
    mut attempts: u32,
) -> Result<Placed, FileError> {
    let mut slot = Some(first);
    loop {
        let response = match slot.take() {
            Some(s) => s,
            None => request(context, job, None, fresh, &mut attempts).await?,
        };
        let headers = response.response.headers();
        let announced = if response.response.status() == StatusCode::PARTIAL_CONTENT {
            parse_content_range(headers).map(|r| r.total)
        } else {
            header_u64(headers, CONTENT_LENGTH)
        };
        if let (Some(size), Some(announced)) = (job.size, announced)
            && announced != size
        {
            let message = format!("the server announces {announced} bytes where {size} were expected");
            attempts += 1;
            if attempts > context.options.retry.retries {
                return Err(FileError::Failed(message));
            }
            context.unless_stopped(tokio::time::sleep(context.backoff(attempts, None))).await?;
            continue;
        }
        let expected_len = job.size.or(announced);
        let mut file = File::create(&paths.part).at(&paths.part).map_err(|e| context.fatal(e))?;
        let algorithms = job.expected.algorithms();
        let mut hasher = (!algorithms.is_empty()).then(|| MultiHasher::new(algorithms).expect("a non-empty set"));
        let end = expected_len.unwrap_or(u64::MAX);
        let streamed = stream_body(context, response, 0, end, |data, _| {
            file.write_all(data).at(&paths.part)?;
            if let Some(h) = hasher.as_mut() {
                h.update(data);
            }
            Ok(())
        })
        .await;
        let failure = match streamed {
            Ok(length) if expected_len.is_none_or(|e| e == length) => {
                drop(file);
                let digests = hasher.map(MultiHasher::finalize);
                verify_and_place(context, job, paths, digests.as_ref(), false).await?;
                return Ok(Placed { size: length, reused: 0 });
            }
            Ok(length) => Some(format!("the body ended after {length} of {} bytes", expected_len.unwrap_or(0))),
            Err(StreamFailure::Local(error)) => return Err(context.fatal(error)),
            Err(StreamFailure::Stopped) => return Err(FileError::Stop),
            Err(StreamFailure::Transfer { message, .. }) => Some(message),
        };
        let Some(message) = failure else { unreachable!("success returns above") };
        attempts += 1;
        if attempts > context.options.retry.retries {
            return Err(FileError::Failed(message));
        }
        context.unless_stopped(tokio::time::sleep(context.backoff(attempts, None))).await?;
    }
}

pub(super) async fn verify_and_place(
    context: &Context,
    job: &DownloadJob,
    paths: &Paths,
    digests: Option<&Digests>,
    chunked: bool,
) -> Result<(), FileError> {
    if let Some(digests) = digests
        && let Err(Error::DigestMismatch { algorithm, expected, actual, .. }) =
            job.expected.check(&job.label(), digests)
    {
        let actual = actual.as_deref().unwrap_or("other bytes");
        return Err(FileError::Restart(format!("{algorithm} digest mismatch: expected {expected}, got {actual}")));
    }
    let indexed = match &job.target {
        JobTarget::Content(name) => Some((name.relative_path(), digests.and_then(|d| d.blake3))),
        JobTarget::File(_) => None,
    };
    let verified = Verified {
        part: paths.part.clone(),
        final_path: paths.final_path.clone(),
        journal: chunked.then(|| paths.journal.clone()),
        indexed,
    };
    if context.placer.place(verified).await { Ok(()) } else { Err(FileError::Stop) }
}

/// A response with the connection and in-flight budget it holds.
pub(super) struct RequestSlot {
    pub(super) response: StreamingResponse,
    pub(super) _connection: OwnedSemaphorePermit,
    pub(super) _budget: OwnedSemaphorePermit,
}

/// Sends a GET (with a Range when given) and retries transient failures with backoff; returns a 200, 206 or 416
/// answer. `attempts` counts retries across the calls of one chunk or file.
pub(super) async fn request(
    context: &Context,
    job: &DownloadJob,
    range: Option<(u64, u64)>,
    fresh: bool,
    attempts: &mut u32,
) -> Result<RequestSlot, FileError> {
    let budget_bytes = range.map_or(job.size.unwrap_or(context.options.chunk_size), |(start, end)| end - start);
    let units = (budget_bytes.div_ceil(1024) as usize).clamp(1, context.in_flight_units);
    let circuit = context.circuit(&job.url);
    loop {
        // While the origin is down, files wait here holding no connection and no budget.
        let pass = circuit.pass(context).await?;
        let budget = context.acquire(&context.in_flight, units as u32).await?;
        let connection = context.acquire(&context.connections, 1).await?;
        let mut headers = HeaderMap::new();
        if let Some((start, end)) = range {
            let value = HeaderValue::from_str(&format!("bytes={start}-{}", end - 1)).expect("a range is ASCII");
            headers.insert(RANGE, value);
        }
        let sent = context.unless_stopped(context.client.send(Method::GET, &job.url, headers, None, fresh)).await?;
        let (message, retry_after) = match sent {
            Ok(response) => {
                pass.reached();
                let status = response.status();
                if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
                    return Ok(RequestSlot { response, _connection: connection, _budget: budget });
                }
                let message = format!("HTTP {status}");
                if !context.options.retry.retries_status(status.as_u16()) {
                    return Err(FileError::Failed(message));
                }
                (message, retry_after(response.headers()))
            }
            Err(error @ Error::Http { kind: HttpErrorKind::Unreachable, .. }) => {
                // Not this file's failure: the origin's circuit decides when to try again and when to give up.
                drop(connection);
                drop(budget);
                if !pass.failed(&error, context) {
                    context.unless_stopped(tokio::time::sleep(context.backoff(1, None))).await?;
                }
                continue;
            }
            Err(Error::Http { kind, message, .. }) if kind.is_transient() => (message, None),
            Err(other @ (Error::Http { .. } | Error::InvalidInput(_))) => {
                return Err(FileError::Failed(other.to_string()));
            }
            Err(other) => return Err(context.fatal(other)),
        };
        drop(connection);
        drop(budget);
        *attempts += 1;
        let retries = context.options.retry.retries;
        if *attempts > retries {
            return Err(FileError::Failed(format!("{message} (after {retries} retries)")));
        }
        context.unless_stopped(tokio::time::sleep(context.backoff(*attempts, retry_after))).await?;
    }
}
