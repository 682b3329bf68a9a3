//! The download engine: a job list (URL, target, size, expected digests) fetched into the content store or a plain
//! directory. Large files are split into Range chunks over several connections, small files go many at once, and the
//! bytes requested but not yet on disk are bounded. Every byte is hashed: in-stream for files fetched in one piece;
//! for chunked files verified by BLAKE3 alone, in power-of-two chunks, one BLAKE3 subtree per chunk by the task that
//! streams it, merged at the end; for other chunked files right behind the writers, from the page cache. A file
//! reaches its final path only after its digests matched, by an atomic rename that the placing thread (`placement`)
//! makes durable a batch at a time.
//!
//! Resume: a chunked file's bytes live in `<root>/.partial/<name>.part`, and `<name>.part.journal` gets a record
//! (chunk, length, XXH3-64 of the chunk's first `length` bytes) each time a chunk under way has `PROGRESS_STEP`
//! (256 KiB) more bytes written, and one when it is finished. A restarted download re-reads the journaled chunks and
//! keeps only what still hashes as recorded: whole chunks, and of an unfinished chunk the longest recorded beginning
//! (the rest of it is asked for with a Range). So a kill costs, per chunk under way, less than `PROGRESS_STEP` plus
//! the bytes gathered for one write (`WRITE_BUFFER`, 256 KiB, when the network delivers small reads): under 512 KiB
//! of each of at most `connections` chunks; small files fetched in one piece are fetched again whole. The
//! whole-file digest is computed over every byte again before placement, so nothing unverified is ever trusted.
//! Journals are not fsynced: a killed process loses nothing the page cache holds, and after a power loss a record
//! whose bytes did not reach the disk fails its XXH3 check.
//!
//! Origins that cannot be reached: connections that cannot be made (refused, no route, connect timeout) do not count
//! against a file's retries. `CIRCUIT_THRESHOLD` of them in a row take the origin for down (`Circuit`): its files
//! wait, one probe at a time tries again after growing pauses, and the first answer brings them all back; after
//! `DownloadOptions::outage_budget` (30 s) without one, every file still to come from it ends at once as
//! unreachable and `DownloadReport::unreachable` says why.

mod chunked;
mod circuit;
mod file;
mod job;
mod journal;
mod schedule;
mod transfer;

pub use crate::http::DEFAULT_CONNECTIONS;
pub use job::{
    DEFAULT_CHUNK_SIZE, DownloadJob, DownloadOptions, DownloadReport, ExpectedDigests, FileOutcome, JobTarget,
};
pub use schedule::download;

/// Entry points for the fuzz targets (rust/core/fuzz): the parsers of what a server or an earlier run hands the
/// engine, reached without a server. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    use reqwest::header::{CONTENT_RANGE, HeaderMap, HeaderValue};

    /// A `Content-Range` value as the engine reads it: (start, end inclusive, total) when it is valid.
    pub fn content_range(value: &[u8]) -> Option<(u64, u64, u64)> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_RANGE, HeaderValue::from_bytes(value).ok()?);
        let range = super::transfer::parse_content_range(&headers)?;
        Some((range.start, range.end_inclusive, range.total))
    }

    /// A journal beside its partial file as a restarted download loads it: the size it records, the chunks it
    /// keeps whole and the unfinished chunks whose beginning it keeps.
    pub fn load_journal(
        part: &Path,
        journal: &Path,
        expected_size: Option<u64>,
        chunk_size: u64,
    ) -> Option<(u64, usize, usize)> {
        let loaded = super::journal::load_journal(part, journal, expected_size, chunk_size)?;
        Some((loaded.size, loaded.done.iter().filter(|done| **done).count(), loaded.kept.len()))
    }
}
