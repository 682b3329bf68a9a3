//! upmirror's engine, in pure Rust with no Python: the work that must be fast (hashing, downloads, the content
//! store, copying and deduplication, and the HTTP front of `upmirror serve`, which serves content). The
//! `upmirror-py` crate exposes it to the Python orchestrator.

pub mod connection;
pub mod copy;
pub mod dedup;
pub mod error;
pub mod fetch;
pub mod front;
pub mod hash;
pub mod http;
pub mod index;
pub mod placement;
pub mod pool;
pub mod progress;
pub mod store;
pub mod tls;
pub mod verify;
pub mod wsus;

pub use copy::{CopyOptions, CopyReport, copy_content};
pub use dedup::{DedupOptions, DedupReport, DuplicateGroup, LinkKind, deduplicate};
pub use error::{Error, Result};
pub use fetch::{DownloadJob, DownloadOptions, DownloadReport, ExpectedDigests, FileOutcome, JobTarget};
pub use front::{Front, FrontOptions};
pub use hash::{Algorithm, AlgorithmSet, Digests, MultiHasher, hash_file, hash_files};
pub use http::{HttpClient, HttpOptions, HttpResponse, ProxyOptions};
pub use index::{ContentIndex, IndexEntry};
pub use progress::{Progress, ProgressSnapshot};
pub use store::{ContentName, ContentStore};
pub use verify::{VerifyOptions, VerifyReport, verify_content};
