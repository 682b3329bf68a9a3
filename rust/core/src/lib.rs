//! upmirror's engine, in pure Rust with no Python: the work that must be fast (hashing, downloads, the content
//! store, copying and deduplication). The `upmirror-py` crate exposes it to the Python orchestrator.

pub mod error;
pub mod fetch;
pub mod hash;
pub mod http;
pub mod progress;
pub mod store;

pub use error::{Error, Result};
pub use fetch::{DownloadJob, DownloadOptions, DownloadReport, ExpectedDigests, FileOutcome, JobTarget};
pub use hash::{Algorithm, AlgorithmSet, Digests, MultiHasher, hash_file, hash_files};
pub use http::{HttpClient, HttpOptions, HttpResponse, ProxyOptions};
pub use progress::{Progress, ProgressSnapshot};
pub use store::{ContentName, ContentStore};
