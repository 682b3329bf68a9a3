//! upmirror's engine, in pure Rust with no Python: the work that must be fast (hashing, downloads, the content
//! store, copying and deduplication, and the HTTP front of `upmirror serve`, which serves content). The
//! `upmirror-py` crate exposes it to the Python orchestrator.

mod copy;
mod dedup;
mod error;
pub mod fetch;
pub mod front;
pub mod hash;
mod http;
mod index;
pub mod placement;
mod pool;
mod progress;
mod runtime;
mod store;
mod tls;
mod verify;
pub mod wsus;

pub use copy::{CopyOptions, CopyReport, copy_content};
pub use dedup::{DedupOptions, DedupReport, DuplicateGroup, LinkKind, deduplicate};
pub use error::{Error, HttpErrorKind, Result};
pub use fetch::{DownloadJob, DownloadOptions, DownloadReport, ExpectedDigests, FileOutcome, JobTarget};
pub use front::{Front, FrontOptions};
pub use hash::{Algorithm, AlgorithmSet, Digests, MultiHasher, hash_file, hash_files};
pub use http::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONNECTIONS, DEFAULT_READ_TIMEOUT, DEFAULT_RETRIES, HttpClient, HttpOptions,
    HttpResponse, ProxyOptions, RETRYABLE_STATUSES, RetryPolicy,
};
pub use index::{ContentIndex, IndexEntry};
pub use progress::{Progress, ProgressSnapshot};
pub use store::{ContentName, ContentStore};
pub use verify::{VerifyOptions, VerifyReport, verify_content};
