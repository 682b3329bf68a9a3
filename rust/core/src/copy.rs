//! Directory-to-directory replication of content directories (upmirror's, or a WSUS `WsusContent` folder, which has
//! the same layout): every layout file of the source placed at its digest-derived path in the destination,
//! in parallel, verified, atomically, resumably.
//!
//! How each file is checked, cheaply (measured with `python -m benches W6`):
//! - The bytes of a file are checked against the SHA-1 in its name exactly once. When the source's content index
//!   vouches for a source file (same size and mtime as when it was verified) the copy trusts it and moves the bytes
//!   in the kernel: a reflink (FICLONE) where the filesystem shares extents, `copy_file_range` otherwise, so a copy
//!   of an indexed directory costs what `cp -a` costs. The destination's index inherits the source's entry.
//! - An unindexed source file (or any file with `verify`) is copied through a userspace buffer and hashed on the
//!   way: one read, and the bytes checked are the bytes written. Reading the source twice (a kernel copy, then a
//!   hash of the source) was no faster and checks the bytes less directly. A reflinked or hard-linked file shares
//!   the source's extents, so it is checked by hashing the source once.
//! - A file already present at its destination path with the size the source has is skipped without reading it
//!   when the destination's index vouches for it; otherwise it is read and checked (`rechecked`), and a mismatch
//!   is copied again.
//!
//! Placement and crashes: each file is written under `DST/.partial/` and renamed to its final path. Files are not
//! flushed one by one; every `CHECKPOINT` the whole filesystem is flushed once (`syncfs`) and only then are the new
//! files recorded in the destination's index. So after SIGKILL or a power cut the index never vouches for a file that
//! is not on disk, and a placed file it does not know is read and checked before it is skipped: a re-run copies only
//! what is missing.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::error::{Error, IoResultExt, Result};
use crate::hash::{Digests, MultiHasher};
use crate::index::{ContentIndex, IndexEntry};
use crate::pool::run_in_pool;
use crate::progress::Progress;
use crate::store::{ContentName, ContentStore, ScanEntry};
use crate::verify::{check_algorithms, check_file};

/// How often new files are flushed and recorded in the destination's index (what a crash can cost a re-run:
/// re-reading, not re-copying, the files placed since).
const CHECKPOINT: Duration = Duration::from_secs(1);

/// The buffer of a hashing copy: large enough that syscalls vanish, small enough for many threads.
const COPY_BUFFER: usize = 1 << 20;

#[derive(Clone, Copy, Debug)]
pub struct CopyOptions {
    /// Hard-link files instead of copying them (same filesystem; falls back to a copy across filesystems).
    pub hardlink: bool,
    /// Read and check every byte: present files and sources alike, whatever the indexes say.
    pub verify: bool,
    /// Files worked on at once (`None`: twice the cores, at least 4, as copies wait on the disk).
    pub threads: Option<usize>,
    /// Flush to disk before recording files in the index (off: faster, but a power cut may leave garbage the
    /// index vouches for; SIGKILL is safe either way).
    pub sync: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions { hardlink: false, verify: false, threads: None, sync: true }
    }
}

/// What a copy did. Paths are relative to the content directories, in the layout's spelling.
#[derive(Debug, Default)]
pub struct CopyReport {
    pub files: u64,
    pub bytes: u64,
    /// Files written to the destination (by any method), and their bytes.
    pub copied: u64,
    pub bytes_copied: u64,
    /// Of the copied files, those reflinked or hard-linked rather than written.
    pub reflinked: u64,
    pub hardlinked: u64,
    /// Of the copied files, those whose source bytes were read and checked on the way.
    pub hashed: u64,
    /// Files already present and identical.
    pub skipped: u64,
    /// Of the skipped files, those read to confirm it (unknown to the index, or `verify`).
    pub rechecked: u64,
    /// Of the copied files, those present before with other bytes, now replaced.
    pub replaced: u64,
    /// Source files whose bytes do not match their name; never copied.
    pub corrupt_source: Vec<String>,
    /// Files that failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Source entries outside the layout; not copied.
    pub outside_layout: Vec<String>,
}

impl CopyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt_source.is_empty() && self.failed.is_empty()
    }
}

enum Method {
    Reflink,
    Hardlink,
    KernelCopy,
    HashingCopy,
}

/// How a file reached its partial path, and what is known of its bytes.
struct Written {
    method: Method,
    blake3: Option<[u8; 32]>,
    /// The source's bytes were read and checked (rather than vouched for by its index).
    hashed: bool,
}

/// Per file: its size and outcome, or its relative path and why it failed.
type Results = (Vec<(u64, Outcome)>, Vec<(String, String)>);

enum Outcome {
    Skipped { rechecked: bool },
    Copied { method: Method, replaced: bool, hashed: bool },
}

/// Entries learned since the last checkpoint, and the index they go into once flushed.
struct Checkpointing {
    index: ContentIndex,
    pending: Vec<(String, IndexEntry)>,
    last: Instant,
}

/// Replicates the content directory `source` into `destination` (created if needed).
pub fn copy_content(
    source: &Path,
    destination: &Path,
    options: CopyOptions,
    progress: &Progress,
) -> Result<CopyReport> {
    check_directories(source, destination)?;
    let source_store = ContentStore::new(source);
    let destination_store = ContentStore::new(destination);
    destination_store.create()?;
    let scan = source_store.scan()?;
    let source_index = ContentIndex::load(&source_store);
    let mut report = CopyReport {
        files: scan.files.len() as u64,
        bytes: scan.files.iter().map(|f| f.metadata.len()).sum(),
        outside_layout: scan.outside,
        ..CopyReport::default()
    };
    progress.add_total(report.files, report.bytes);

    // Large files first, so the last minutes are not one thread finishing a big file alone.
    let mut files = scan.files;
    files.sort_by_key(|f| std::cmp::Reverse(f.metadata.len()));

    let state = Mutex::new(Checkpointing {
        index: ContentIndex::load(&destination_store),
        pending: Vec::new(),
        last: Instant::now(),
    });
    let checkpoint_running = AtomicBool::new(false);
    let results = Mutex::new((Vec::new(), Vec::new()));
    let copier =
        Copier { source: &source_store, destination: &destination_store, source_index: &source_index, options };
    let threads =
        options.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).max(4)));

    run_in_pool(Some(threads), || {
        files.par_iter().for_each(|file| {
            if progress.is_cancelled() {
                return;
            }
            let relative = file.name.relative_path();
            let known = |present: &fs::Metadata| {
                let state = state.lock().expect("no worker panics holding the lock");
                state.index.verified_entry(&relative, present).is_some()
            };
            let outcome = copier.copy_file(file, known, progress);
            match outcome {
                Ok((outcome, entry)) => {
                    progress.file_done();
                    let mut state = state.lock().expect("no worker panics holding the lock");
                    if let Some(entry) = entry {
                        state.pending.push((relative, entry));
                    }
                    drop(state);
                    results.lock().expect("no worker panics holding the lock").0.push((file.metadata.len(), outcome));
                }
                Err(Error::Cancelled) => {}
                Err(error) => {
                    progress.file_failed();
                    results.lock().expect("no worker panics holding the lock").1.push((relative, error.to_string()));
                }
            }
            progress.add_bytes(file.metadata.len());
            maybe_checkpoint(&state, &checkpoint_running, &destination_store, options.sync, false);
        });
    })?;
    // Whatever was done, even when cancelled, is flushed and recorded.
    maybe_checkpoint(&state, &checkpoint_running, &destination_store, options.sync, true).transpose()?;

    let (outcomes, failed): Results = results.into_inner().expect("workers are done");
    for (size, outcome) in outcomes {
        match outcome {
            Outcome::Skipped { rechecked } => {
                report.skipped += 1;
                report.rechecked += u64::from(rechecked);
            }
            Outcome::Copied { method, replaced, hashed } => {
                report.copied += 1;
                report.bytes_copied += size;
                report.replaced += u64::from(replaced);
                report.hashed += u64::from(hashed);
                match method {
                    Method::Reflink => report.reflinked += 1,
                    Method::Hardlink => report.hardlinked += 1,
                    Method::KernelCopy | Method::HashingCopy => {}
                }
            }
        }
    }
    for (relative, reason) in failed {
        if reason == CORRUPT_SOURCE {
            report.corrupt_source.push(relative);
        } else {
            report.failed.push((relative, reason));
        }
    }
    report.corrupt_source.sort();
    report.failed.sort();
    progress.check()?;
    Ok(report)
}

/// The failure text of a source file whose bytes do not match its name (sorted into `corrupt_source`).
const CORRUPT_SOURCE: &str = "the source file's bytes do not match the SHA-1 in its name";

/// Every `CHECKPOINT` (or at the end), one thread flushes the filesystem and records the pending entries.
fn maybe_checkpoint(
    state: &Mutex<Checkpointing>,
    running: &AtomicBool,
    store: &ContentStore,
    sync: bool,
    last: bool,
) -> Option<Result<()>> {
    if !last && state.lock().expect("no worker panics holding the lock").last.elapsed() < CHECKPOINT {
        return None;
    }
    if running.swap(true, Ordering::AcqRel) && !last {
        return None;
    }
    let result = (|| {
        let pending = std::mem::take(&mut state.lock().expect("no worker panics holding the lock").pending);
        if sync && !pending.is_empty() {
            store.sync_filesystem()?;
        }
        let mut state = state.lock().expect("no worker panics holding the lock");
        for (relative, entry) in pending {
            state.index.record(relative, entry);
        }
        state.last = Instant::now();
        state.index.save()
    })();
    running.store(false, Ordering::Release);
    Some(result)
}

/// Refuses what cannot be copied: a source that is not a directory, a destination that is a file, or directories
/// inside one another (a copy would read its own output).
fn check_directories(source: &Path, destination: &Path) -> Result<()> {
    if !source.is_dir() {
        return Err(Error::InvalidInput(format!("source {} is not a directory", source.display())));
    }
    if destination.exists() && !destination.is_dir() {
        return Err(Error::InvalidInput(format!("destination {} is not a directory", destination.display())));
    }
    let source_real = fs::canonicalize(source).at(source)?;
    let destination_real = resolve_maybe_missing(destination)?;
    if destination_real.starts_with(&source_real) || source_real.starts_with(&destination_real) {
        return Err(Error::InvalidInput(format!(
            "source {} and destination {} overlap: one is inside the other",
            source.display(),
            destination.display()
        )));
    }
    Ok(())
}

/// The real path of a directory that may not exist yet: its nearest existing ancestor resolved, the rest appended.
fn resolve_maybe_missing(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().at(path)?.join(path) };
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    while !existing.exists() {
        missing.push(existing.file_name().map(ToOwned::to_owned).unwrap_or_default());
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let mut resolved = fs::canonicalize(existing).at(existing)?;
    resolved.extend(missing.iter().rev());
    Ok(resolved)
}

struct Copier<'a> {
    source: &'a ContentStore,
    destination: &'a ContentStore,
    source_index: &'a ContentIndex,
    options: CopyOptions,
}

impl Copier<'_> {
    /// Brings one file to the destination. `known`: whether the destination's index vouches for the present file
    /// with this metadata. Returns what happened and the new index entry, if any.
    fn copy_file(
        &self,
        file: &ScanEntry,
        known: impl Fn(&fs::Metadata) -> bool,
        progress: &Progress,
    ) -> Result<(Outcome, Option<IndexEntry>)> {
        progress.check()?;
        let target = self.destination.path_of(&file.name);
        let present = fs::metadata(&target).ok().filter(|m| m.is_file() && m.len() == file.metadata.len());
        let mut replaced = false;
        if let Some(present) = present {
            if !self.options.verify && known(&present) {
                return Ok((Outcome::Skipped { rechecked: false }, None));
            }
            // Read without counting: progress counts each file's bytes once, when it is done.
            if let Some(entry) = check_file(&target, &file.name, &Progress::new())? {
                return Ok((Outcome::Skipped { rechecked: true }, Some(entry)));
            }
            replaced = true;
        }
        let source_path = self.source.root().join(&file.relative);
        let trusted = (!self.options.verify)
            .then(|| self.source_index.verified_entry(&file.name.relative_path(), &file.metadata))
            .flatten();
        let partial = self.destination.partial_path_of(&file.name);
        let Some(Written { method, blake3, hashed }) =
            self.write_partial(&source_path, &file.name, &partial, trusted)?
        else {
            let _ = fs::remove_file(&partial);
            return Err(Error::InvalidInput(CORRUPT_SOURCE.into()));
        };
        let placed = self.destination.place_verified_unsynced(&partial, &file.name)?;
        let metadata = fs::metadata(&placed).at(&placed)?;
        Ok((Outcome::Copied { method, replaced, hashed }, Some(IndexEntry::verified(&metadata, blake3))))
    }

    /// Writes the source to the partial path by the cheapest method that still checks it once. `None`: the source's
    /// bytes do not match its name.
    fn write_partial(
        &self,
        source_path: &Path,
        name: &ContentName,
        partial: &Path,
        trusted: Option<&IndexEntry>,
    ) -> Result<Option<Written>> {
        // A partial file left by an earlier run is redone from the start.
        match fs::remove_file(partial) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(Error::io(partial, e)),
            _ => {}
        }
        let check_source = |method: Method| -> Result<Option<Written>> {
            match trusted {
                Some(entry) => Ok(Some(Written { method, blake3: entry.blake3, hashed: false })),
                None => Ok(check_file(source_path, name, &Progress::new())?.map(|e| Written {
                    method,
                    blake3: e.blake3,
                    hashed: true,
                })),
            }
        };
        if self.options.hardlink {
            match fs::hard_link(source_path, partial) {
                Ok(()) => return check_source(Method::Hardlink),
                // Across filesystems a link is impossible; the file is copied instead.
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
                Err(e) => return Err(Error::io(partial, e)),
            }
        }
        let mut input = File::open(source_path).at(source_path)?;
        let mut output = File::create(partial).at(partial)?;
        let modified = input.metadata().and_then(|m| m.modified()).at(source_path)?;
        let done = if reflink(&input, &output) {
            check_source(Method::Reflink)?
        } else if let Some(entry) = trusted {
            io::copy(&mut input, &mut output).at(partial)?;
            Some(Written { method: Method::KernelCopy, blake3: entry.blake3, hashed: false })
        } else {
            let digests = hashing_copy(&mut input, source_path, &mut output, partial)?;
            (digests.sha1 == Some(name.sha1)).then_some(Written {
                method: Method::HashingCopy,
                blake3: digests.blake3,
                hashed: true,
            })
        };
        // Keep the source's modification time, as `cp -a` and `rsync -a` do.
        output.set_modified(modified).at(partial)?;
        Ok(done)
    }
}

/// Shares the source's extents with the (empty) output where the filesystem can (XFS, btrfs); false otherwise.
fn reflink(input: &File, output: &File) -> bool {
    // SAFETY: FICLONE reads two descriptors that stay open for the duration of the call.
    unsafe { libc::ioctl(output.as_raw_fd(), libc::FICLONE, input.as_raw_fd()) == 0 }
}

/// Copies through a buffer, hashing exactly the bytes written.
fn hashing_copy(input: &mut File, input_path: &Path, output: &mut File, output_path: &Path) -> Result<Digests> {
    let mut hasher = MultiHasher::new(check_algorithms())?;
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(input_path, e)),
        };
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n]).at(output_path)?;
    }
    Ok(hasher.finalize())
}
