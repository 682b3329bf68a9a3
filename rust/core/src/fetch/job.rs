//! The records of the download engine: the jobs (URL, target, size, expected digests), the options of a run, and
//! what became of each job.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::hash::{Algorithm, AlgorithmSet, Digests};
use crate::http::{DEFAULT_CONNECTIONS, RetryPolicy, parse_url, redacted};
use crate::store::{ContentName, PARTIAL_DIR};

/// Range chunk size; files up to this size are fetched in one request. Measured with benches/w2_download.py.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;
/// Bytes requested but not yet written, over all connections.
pub(crate) const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 512 << 20;
/// How long an origin may stay unreachable before its files end as "unreachable" (a restarted server is back well
/// within it; one that is gone costs this long once, not retries for every file).
pub(crate) const DEFAULT_OUTAGE_BUDGET: Duration = Duration::from_secs(30);

/// The digests the metadata promises; the strongest given (blake3 > sha256 > sha1) and the SHA-1 are checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedDigests {
    pub sha1: Option<[u8; 20]>,
    pub sha256: Option<[u8; 32]>,
    pub blake3: Option<[u8; 32]>,
}

impl ExpectedDigests {
    pub(super) fn algorithms(&self) -> AlgorithmSet {
        let strongest = if self.blake3.is_some() {
            Some(Algorithm::Blake3)
        } else if self.sha256.is_some() {
            Some(Algorithm::Sha256)
        } else {
            None
        };
        strongest.into_iter().chain(self.sha1.map(|_| Algorithm::Sha1)).collect()
    }

    pub(super) fn expected(&self, algorithm: Algorithm) -> Option<&[u8]> {
        match algorithm {
            Algorithm::Blake3 => self.blake3.as_ref().map(<[u8; 32]>::as_slice),
            Algorithm::Sha256 => self.sha256.as_ref().map(<[u8; 32]>::as_slice),
            Algorithm::Sha1 => self.sha1.as_ref().map(<[u8; 20]>::as_slice),
            Algorithm::Xxh3 => None,
        }
    }

    pub(super) fn check(&self, label: &str, actual: &Digests) -> Result<()> {
        for algorithm in self.algorithms().iter() {
            let (Some(expected), Some(got)) = (self.expected(algorithm), actual.bytes(algorithm)) else { continue };
            if expected != got {
                return Err(Error::DigestMismatch {
                    name: label.to_owned(),
                    algorithm: algorithm.name(),
                    expected: hex::encode(expected),
                    actual: Some(hex::encode(got)),
                });
            }
        }
        Ok(())
    }
}

/// Where a job's file goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobTarget {
    /// Into the content store under its digest-derived name; the name's SHA-1 is always verified.
    Content(ContentName),
    /// A plain file name in the download directory (`upmirror fetch`), checked by `JobTarget::file`.
    File(String),
}

impl JobTarget {
    /// A plain file name: one path segment with no `/`, `\`, control characters, and not `.`, `..` or `.partial`.
    pub fn file(name: &str) -> Result<Self> {
        let refused = name.is_empty()
            || name == "."
            || name == ".."
            || name == PARTIAL_DIR
            || name.len() > 255
            || name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
        if refused {
            return Err(Error::InvalidInput(format!(
                "{name:?} cannot be used as a file name (empty, `.`, `..`, `.partial`, a slash or a control character)"
            )));
        }
        Ok(JobTarget::File(name.to_owned()))
    }

    /// The file name of a URL's last path segment (percent-decoded), checked as `file` does.
    pub fn file_from_url(url: &str) -> Result<Self> {
        let parsed = parse_url(url)?;
        let segment = parsed.path_segments().and_then(Iterator::last).unwrap_or_default();
        let decoded = percent_decode(segment);
        Self::file(&decoded).map_err(|_| {
            Error::InvalidInput(format!("{} does not end in a usable file name (got {decoded:?})", redacted(&parsed)))
        })
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len() + 1
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone, Debug)]
pub struct DownloadJob {
    pub url: String,
    pub target: JobTarget,
    /// Known from metadata in the content store; `None` for `upmirror fetch`, learned from the server.
    pub size: Option<u64>,
    pub expected: ExpectedDigests,
}

impl DownloadJob {
    /// A content-store job: the name's SHA-1 is always expected.
    pub fn content(url: String, name: ContentName, size: u64, mut expected: ExpectedDigests) -> Self {
        expected.sha1 = Some(name.sha1);
        DownloadJob { url, target: JobTarget::Content(name), size: Some(size), expected }
    }

    pub(super) fn label(&self) -> String {
        match &self.target {
            JobTarget::Content(name) => name.relative_path(),
            JobTarget::File(name) => name.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DownloadOptions {
    pub connections: usize,
    pub chunk_size: u64,
    pub max_in_flight_bytes: u64,
    /// How one request or chunk is retried after a transient failure (connect error, reset, stall, 429, 5xx): the
    /// client's one policy. Connection failures never count against it (`outage_budget` decides).
    pub retry: RetryPolicy,
    /// How long an origin that no connection reaches is waited for (probed with growing pauses) before every file
    /// still to come from it ends as unreachable. Connection failures never count against a file's retries.
    pub outage_budget: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            connections: DEFAULT_CONNECTIONS,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            retry: RetryPolicy::default(),
            outage_budget: DEFAULT_OUTAGE_BUDGET,
        }
    }
}

impl DownloadOptions {
    pub(super) fn validate(&self) -> Result<()> {
        if self.connections == 0 || self.connections > 1024 {
            return Err(Error::InvalidInput(format!("connections must be 1 to 1024, not {}", self.connections)));
        }
        if self.chunk_size < 64 << 10 {
            return Err(Error::InvalidInput(format!("chunk size must be at least 64 KiB, not {}", self.chunk_size)));
        }
        if self.max_in_flight_bytes < self.chunk_size {
            return Err(Error::InvalidInput(format!(
                "max in-flight bytes ({}) must be at least the chunk size ({})",
                self.max_in_flight_bytes, self.chunk_size
            )));
        }
        Ok(())
    }
}

/// What became of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOutcome {
    Placed {
        path: PathBuf,
        bytes_fetched: u64,
        bytes_reused: u64,
    },
    /// Already present with the right size.
    Skipped {
        path: PathBuf,
    },
    Failed {
        reason: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct DownloadReport {
    /// One outcome per job, in the order of the jobs.
    pub outcomes: Vec<FileOutcome>,
    /// Body bytes received from the network.
    pub bytes_transferred: u64,
    /// Bytes of verified chunks kept from an earlier, interrupted run.
    pub bytes_reused: u64,
    /// Set when an origin stayed unreachable past the outage budget: why (naming the origin, or the proxy). Its
    /// files failed with this reason; the caller may treat the whole run as "upstream unreachable".
    pub unreachable: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_that_could_escape_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", ".partial", "a\u{7f}"] {
            assert!(JobTarget::file(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(JobTarget::file_from_url("http://h/x/a%20b.cab?q=1").unwrap(), JobTarget::File("a b.cab".into()));
        assert!(JobTarget::file_from_url("http://h/x/..%2F..%2Fetc").is_err());
        assert!(JobTarget::file_from_url("http://h/").is_err());
    }

    #[test]
    fn strongest_digest_and_sha1_are_checked() {
        let expected = ExpectedDigests { sha1: Some([1; 20]), sha256: Some([2; 32]), blake3: Some([3; 32]) };
        let set = expected.algorithms();
        assert!(set.contains(Algorithm::Blake3) && set.contains(Algorithm::Sha1) && !set.contains(Algorithm::Sha256));
    }
}
