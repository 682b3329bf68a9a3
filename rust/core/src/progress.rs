//! Progress counters that workers update with relaxed atomics and a caller polls, plus the cancellation flag.
//! One `Progress` is shared by every long operation (hashing, downloads, copies), so the bindings poll them alike.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Progress {
    started: Instant,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    files_done: AtomicU64,
    files_failed: AtomicU64,
    files_total: AtomicU64,
    cancelled: AtomicBool,
}

/// A consistent-enough copy of the counters for display; `rate` is bytes per second since the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressSnapshot {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_failed: u64,
    pub files_total: u64,
    pub elapsed_seconds: f64,
    pub rate: f64,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            started: Instant::now(),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            files_failed: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
        }
    }

    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_total(&self, files: u64, bytes: u64) {
        self.files_total.fetch_add(files, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn file_failed(&self) {
        self.files_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once `cancel` was called: workers call it between units of work.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let elapsed_seconds = self.started.elapsed().as_secs_f64();
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        ProgressSnapshot {
            bytes_done,
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            files_failed: self.files_failed.load(Ordering::Relaxed),
            files_total: self.files_total.load(Ordering::Relaxed),
            elapsed_seconds,
            rate: if elapsed_seconds > 0.0 { bytes_done as f64 / elapsed_seconds } else { 0.0 },
        }
    }
}
