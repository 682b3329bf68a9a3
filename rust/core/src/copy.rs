//! Directory-to-directory replication of content directories (upmirror's, or a WSUS `WsusContent` folder, which has
//! the same layout): every layout file of the source placed at its digest-derived path in the destination,
//! in parallel, verified, atomically, resumably.
//!
//! How each file is checked, cheaply:
//! - The bytes of a file are checked against the SHA-1 in its name exactly once. When the source's content index
//!   vouches for a source file (same size and mtime as when it was verified) the copy trusts it and moves the bytes
//!   in the kernel: a reflink (FICLONE) where the filesystem shares extents, `copy_file_range` otherwise, so a copy
//!   of an indexed directory costs what `cp -a` costs. The destination's index inherits the source's entry.
//! - An unindexed source file (or any file with `verify`) is moved the same way and then the new file is hashed
//!   (memory-mapped, SHA-1 and blake3 on two threads) while its pages are still cached: that checks exactly the
//!   bytes the destination holds. Hashing on the way through a userspace buffer was not faster (README, W6), and
//!   it checks the bytes read rather than the bytes written, so this simpler design was kept. A reflinked or
//!   hard-linked file shares the source's extents, so hashing it is hashing the source.
//! - A file already present at its destination path that the destination's index vouches for is skipped with one
//!   `stat` of the destination and nothing read on either side (its name is its digest). A present file of the
//!   source's size that the index does not know is read and checked (`rechecked`); a mismatch is copied again.
//!
//! Placement and crashes: each file is written under `DST/.partial/` and renamed to its final path. Files are not
//! flushed one by one; every `CHECKPOINT` a thread of its own flushes the whole filesystem once (`syncfs`) while the
//! workers go on copying, and only then records the new files in the destination's index. So after SIGKILL or a
//! power cut the index never vouches for a file that is not on disk, and a placed file it does not know is read and
//! checked before it is skipped: a re-run copies only what is missing.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use rayon::prelude::*;

use crate::error::{Error, IoResultExt, Result};
use crate::index::{ContentIndex, IndexEntry};
use crate::pool::run_in_pool;
use crate::progress::Progress;
use crate::store::{ContentName, ContentStore, ScanEntry};
use crate::verify::check_file;

/// How often new files are flushed and recorded in the destination's index (what a crash can cost a re-run:
/// re-reading, not re-copying, the files placed since).
const CHECKPOINT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
pub struct CopyOptions {
    /// Hard-link files instead of copying them (same filesystem; falls back to a copy across filesystems).
    pub hardlink: bool,
    /// Read and check every byte: present files and sources alike, whatever the indexes say.
    pub verify: bool,
    /// Files worked on at once (`None`: one per core; kernel copies from the page cache and hashing are CPU work, and
    /// 4 threads were not faster than 1 or 2 on the shared 2-core reference machine, though the runs were noisy).
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

enum Method {
    Reflink,
    Hardlink,
    KernelCopy,
}

/// How a file reached its partial path, and what is known of its bytes.
struct Written {
    method: Method,
    blake3: Option<[u8; 32]>,
    /// The source's bytes were read and checked (rather than vouched for by its index).
    hashed: bool,
    /// The new file's metadata, for its index entry.
    metadata: Metadata,
}

enum Outcome {
    Skipped { rechecked: bool },
    Copied { method: Method, replaced: bool, hashed: bool },
}

/// Entries learned since the last checkpoint, and the index they go into once flushed. Two locks, so workers adding
/// entries never wait for the index being written.
struct Checkpointing {
    index: Mutex<ContentIndex>,
    pending: Mutex<Vec<(String, IndexEntry)>>,
}

/// A file that needs work: its source metadata, and the destination file of its name if one of the same size exists.
struct Job {
    file: ScanEntry,
    source: Metadata,
    present: Option<Metadata>,
}

/// The first look at a file: vouched for at the destination by its index, to be worked on, or unreadable.
enum Triage {
    Known(u64),
    Work(Box<Job>),
    Failed(String, String),
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
    let destination_index = ContentIndex::load(&destination_store);
    let mut report =
        CopyReport { files: scan.files.len() as u64, outside_layout: scan.outside, ..CopyReport::default() };
    let threads = options.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));

    // First, one stat of the destination per file: a file its index vouches for is done without touching the source.
    let triage = |file: ScanEntry| -> Triage {
        let relative = file.name.relative_path();
        let present = fs::metadata(destination_store.root().join(&relative)).ok().filter(fs::Metadata::is_file);
        if let Some(present) = &present
            && !options.verify
            && destination_index.verified_entry(&relative, present).is_some()
        {
            return Triage::Known(present.len());
        }
        match fs::metadata(file.path_in(&source_store)) {
            Ok(source) => {
                let present = present.filter(|p| p.len() == source.len());
                Triage::Work(Box::new(Job { file, source, present }))
            }
            Err(error) => Triage::Failed(file.name.relative_path(), error.to_string()),
        }
    };
    let triaged: Vec<Triage> = run_in_pool(Some(threads), || scan.files.into_par_iter().map(triage).collect())?;
    let mut jobs = Vec::new();
    let mut known_bytes = 0;
    for outcome in triaged {
        match outcome {
            Triage::Known(size) => {
                report.skipped += 1;
                known_bytes += size;
            }
            Triage::Work(job) => jobs.push(*job),
            Triage::Failed(relative, reason) => report.failed.push((relative, reason)),
        }
    }
    report.bytes = known_bytes + jobs.iter().map(|j| j.source.len()).sum::<u64>();
    progress.add_total(report.files, report.bytes);
    progress.add_bytes(known_bytes);
    for _ in 0..report.skipped {
        progress.file_done();
    }
    if jobs.is_empty() {
        // Nothing changed (the no-change re-run): no source index to read, no workers, nothing to flush or record.
        report.failed.sort();
        progress.check()?;
        return Ok(report);
    }
    let source_index = ContentIndex::load(&source_store);

    // Large files first, so the last minutes are not one thread finishing a big file alone.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.source.len()));
    let state = Checkpointing { index: Mutex::new(destination_index), pending: Mutex::new(Vec::new()) };
    let copier =
        Copier { source: &source_store, destination: &destination_store, source_index: &source_index, options };
    let (outcomes, checkpoints) = std::thread::scope(|scope| {
        // Checkpoints run on a thread of their own, so no copying worker waits for the disk to be flushed.
        let (stop, stopped) = mpsc::channel::<()>();
        let checkpointer = scope.spawn(|| -> Result<()> {
            let stopped = stopped;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT) {
                checkpoint(&state, &destination_store, options.sync)?;
            }
            Ok(())
        });
        let outcomes: Result<Vec<(&Job, Result<Outcome>)>> = run_in_pool(Some(threads), || {
            jobs.par_iter()
                .filter(|_| !progress.is_cancelled())
                .map(|job| {
                    let outcome = copier.copy_file(job, progress).map(|(outcome, entry)| {
                        if let Some(entry) = entry {
                            let mut pending = state.pending.lock().expect("no worker panics holding the lock");
                            pending.push((job.file.name.relative_path(), entry));
                        }
                        outcome
                    });
                    match &outcome {
                        Ok(_) => progress.file_done(),
                        Err(Error::Cancelled) => {}
                        Err(_) => progress.file_failed(),
                    }
                    progress.add_bytes(job.source.len());
                    (job, outcome)
                })
                .collect()
        });
        drop(stop);
        (outcomes, checkpointer.join().expect("the checkpoint thread does not panic"))
    });
    // Whatever was done, even when cancelled, is flushed and recorded.
    checkpoint(&state, &destination_store, options.sync)?;
    checkpoints?;
    let outcomes = outcomes?;

    tally(&mut report, outcomes);
    report.corrupt_source.sort();
    report.failed.sort();
    progress.check()?;
    Ok(report)
}

/// Adds each worked-on file's outcome to the report.
fn tally(report: &mut CopyReport, outcomes: Vec<(&Job, Result<Outcome>)>) {
    for (job, outcome) in outcomes {
        match outcome {
            Ok(Outcome::Skipped { rechecked }) => {
                report.skipped += 1;
                report.rechecked += u64::from(rechecked);
            }
            Ok(Outcome::Copied { method, replaced, hashed }) => {
                report.copied += 1;
                report.bytes_copied += job.source.len();
                report.replaced += u64::from(replaced);
                report.hashed += u64::from(hashed);
                match method {
                    Method::Reflink => report.reflinked += 1,
                    Method::Hardlink => report.hardlinked += 1,
                    Method::KernelCopy => {}
                }
            }
            Err(Error::Cancelled) => {}
            Err(Error::DigestMismatch { .. }) => {
                report.corrupt_source.push(job.file.name.relative_path());
            }
            Err(error) => report.failed.push((job.file.name.relative_path(), error.to_string())),
        }
    }
}

/// Flushes the filesystem and records the entries learned since the last checkpoint in the index on disk.
fn checkpoint(state: &Checkpointing, store: &ContentStore, sync: bool) -> Result<()> {
    let pending = std::mem::take(&mut *state.pending.lock().expect("no worker panics holding the lock"));
    if pending.is_empty() {
        return Ok(());
    }
    if sync {
        store.sync_filesystem()?;
    }
    let mut index = state.index.lock().expect("no worker panics holding the lock");
    for (relative, entry) in pending {
        index.record(relative, entry);
    }
    index.save()
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
    /// Brings one file to the destination: a present file of the same size is read and checked first, and kept if
    /// it matches its name. Returns what happened and the new index entry, if any.
    fn copy_file(&self, job: &Job, progress: &Progress) -> Result<(Outcome, Option<IndexEntry>)> {
        progress.check()?;
        let name = &job.file.name;
        let mut replaced = false;
        if job.present.is_some() {
            // Read without counting: progress counts each file's bytes once, when it is done.
            if let Some(entry) = check_file(&self.destination.path_of(name), name, &Progress::new())? {
                return Ok((Outcome::Skipped { rechecked: true }, Some(entry)));
            }
            replaced = true;
        }
        let trusted = (!self.options.verify)
            .then(|| self.source_index.verified_entry(&name.relative_path(), &job.source))
            .flatten();
        let partial = self.destination.partial_path_of(name);
        let written = self.write_partial(&job.file.path_in(self.source), &job.source, name, &partial, trusted);
        let Ok(Some(Written { method, blake3, hashed, metadata })) = written else {
            let _ = fs::remove_file(&partial);
            // The source's bytes do not match the SHA-1 in its name: sorted into `corrupt_source`, not copied.
            return Err(written.err().unwrap_or_else(|| Error::DigestMismatch {
                name: name.relative_path(),
                algorithm: "sha1",
                expected: name.sha1_hex(),
                actual: None,
            }));
        };
        self.destination.place_verified_unsynced(&partial, name)?;
        // The rename keeps the inode, so the metadata taken before it describes the placed file.
        Ok((Outcome::Copied { method, replaced, hashed }, Some(IndexEntry::verified(&metadata, blake3))))
    }

    /// Writes the source to the partial path by the cheapest method that still checks it once. `None`: the source's
    /// bytes do not match its name.
    fn write_partial(
        &self,
        source_path: &Path,
        source: &Metadata,
        name: &ContentName,
        partial: &Path,
        trusted: Option<&IndexEntry>,
    ) -> Result<Option<Written>> {
        let (method, metadata) = self.place_bytes(source_path, source, partial)?;
        Ok(match trusted {
            Some(entry) => Some(Written { method, blake3: entry.blake3, hashed: false, metadata }),
            // Reading the new file checks exactly the bytes the destination holds (shared extents for a reflink or
            // a hard link); they are still in the page cache, so this costs one pass of hashing.
            None => check_file(partial, name, &Progress::new())?.map(|e| Written {
                method,
                blake3: e.blake3,
                hashed: true,
                metadata,
            }),
        })
    }

    /// Puts the source's bytes at the partial path: a hard link if asked (and possible), else a reflink, else an
    /// in-kernel copy; the source's modification time is kept, as `cp -a` and `rsync -a` keep it. Returns the new
    /// file's metadata.
    fn place_bytes(&self, source_path: &Path, source: &Metadata, partial: &Path) -> Result<(Method, Metadata)> {
        if self.options.hardlink {
            let linked = fs::hard_link(source_path, partial).or_else(|e| match e.kind() {
                // A partial file left by an earlier run is redone from the start.
                io::ErrorKind::AlreadyExists => {
                    fs::remove_file(partial).and_then(|()| fs::hard_link(source_path, partial))
                }
                _ => Err(e),
            });
            match linked {
                Ok(()) => return Ok((Method::Hardlink, source.clone())),
                // Across filesystems a link is impossible; the file is copied instead.
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
                Err(e) => return Err(Error::io(partial, e)),
            }
        }
        let mut input = File::open(source_path).at(source_path)?;
        // A new file, never an old one opened for writing: a partial left by an interrupted `--link` run is a hard
        // link to a source file, and truncating it would truncate the source.
        let create = || OpenOptions::new().write(true).create_new(true).open(partial);
        let mut output = create()
            .or_else(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => fs::remove_file(partial).and_then(|()| create()),
                _ => Err(e),
            })
            .at(partial)?;
        let method = if reflink(&input, &output) {
            Method::Reflink
        } else {
            // std's copy between two files is copy_file_range: no bytes pass through userspace.
            io::copy(&mut input, &mut output).at(partial)?;
            Method::KernelCopy
        };
        output.set_modified(source.modified().at(source_path)?).at(partial)?;
        let metadata = output.metadata().at(partial)?;
        Ok((method, metadata))
    }
}

/// Shares the source's extents with the (empty) output where the filesystem can (XFS, btrfs); false otherwise.
fn reflink(input: &File, output: &File) -> bool {
    // SAFETY: FICLONE reads two descriptors that stay open for the duration of the call.
    unsafe { libc::ioctl(output.as_raw_fd(), libc::FICLONE, input.as_raw_fd()) == 0 }
}
