//! Checking a content directory: every file against the SHA-1 in its name, trusting the content index for files
//! whose size and modification time are unchanged since they were last checked (`full` reads every byte anyway).
//! The result lists corrupt and missing files by their content path, the input a repair (fetching them again from
//! the upstream, as `wsusutil reset` does) needs.

use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::hash::{Algorithm, AlgorithmSet, hash_file};
use crate::index::{ContentIndex, IndexEntry};
use crate::pool::run_in_pool;
use crate::progress::Progress;
use crate::store::{ContentName, ContentStore, ScanEntry};

#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// Read every file, even those the index vouches for.
    pub full: bool,
    /// Files checked at once (`None`: one per core).
    pub threads: Option<usize>,
}

/// What a verification found. Paths are relative to the content directory, in the layout's spelling.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub files: u64,
    pub bytes: u64,
    /// Files the index vouched for (not read).
    pub trusted: u64,
    /// Files read and found to match their name.
    pub hashed_ok: u64,
    pub bytes_read: u64,
    /// Files whose bytes do not match the SHA-1 in their name.
    pub corrupt: Vec<String>,
    /// Files the index knew that are gone.
    pub missing: Vec<String>,
    /// Files that could not be read, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Entries that are not part of the layout.
    pub outside_layout: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.unreadable.is_empty()
    }
}

/// The two digests every check computes: SHA-1 (the name) and blake3 (kept in the index for later comparisons
/// with metadata and for dedup).
pub(crate) fn check_algorithms() -> AlgorithmSet {
    [Algorithm::Sha1, Algorithm::Blake3].into_iter().collect()
}

/// Reads a file and compares its SHA-1 with its name: `Some(entry)` for the index when it matches, `None` when the
/// bytes are corrupt. The metadata is taken before reading, so a file changed meanwhile is read again next time.
pub(crate) fn check_file(path: &Path, name: &ContentName, progress: &Progress) -> Result<Option<IndexEntry>> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let digests = hash_file(path, check_algorithms(), progress)?;
    Ok((digests.sha1 == Some(name.sha1)).then(|| IndexEntry::verified(&metadata, digests.blake3)))
}

enum Outcome {
    Trusted,
    Ok(IndexEntry),
    Corrupt,
    Unreadable(String),
}

/// Verifies every file of a content directory and updates its index.
pub fn verify_content(root: &Path, options: VerifyOptions, progress: &Progress) -> Result<VerifyReport> {
    if !root.is_dir() {
        return Err(Error::InvalidInput(format!("{} is not a directory", root.display())));
    }
    let store = ContentStore::new(root);
    let scan = store.scan()?;
    let index = ContentIndex::load(&store);
    let mut report = VerifyReport {
        files: scan.files.len() as u64,
        bytes: scan.files.iter().map(|f| f.metadata.len()).sum(),
        outside_layout: scan.outside,
        ..VerifyReport::default()
    };
    progress.add_total(report.files, report.bytes);

    let present: std::collections::HashSet<String> = scan.files.iter().map(|f| f.name.relative_path()).collect();
    report.missing = index.paths().filter(|p| !present.contains(*p)).map(str::to_owned).collect();
    drop(present);

    let check = |file: &ScanEntry| -> Outcome {
        if !options.full && index.verified_entry(&file.name.relative_path(), &file.metadata).is_some() {
            progress.add_bytes(file.metadata.len());
            return Outcome::Trusted;
        }
        match check_file(&store.root().join(&file.relative), &file.name, progress) {
            Ok(Some(entry)) => Outcome::Ok(entry),
            Ok(None) => Outcome::Corrupt,
            Err(Error::Cancelled) => Outcome::Unreadable("cancelled".into()),
            Err(error) => Outcome::Unreadable(error.to_string()),
        }
    };
    let outcomes = Mutex::new(Vec::new());
    run_in_pool(options.threads, || {
        scan.files.par_iter().for_each(|file| {
            if progress.is_cancelled() {
                return;
            }
            let outcome = check(file);
            match outcome {
                Outcome::Trusted | Outcome::Ok(_) => progress.file_done(),
                Outcome::Corrupt | Outcome::Unreadable(_) => progress.file_failed(),
            }
            outcomes.lock().expect("no worker panics holding the lock").push((file, outcome));
        });
    })?;

    let mut index = index;
    for (file, outcome) in outcomes.into_inner().expect("workers are done") {
        match outcome {
            Outcome::Trusted => report.trusted += 1,
            Outcome::Ok(entry) => {
                report.hashed_ok += 1;
                report.bytes_read += entry.size;
                index.record(file.name.relative_path(), entry);
            }
            Outcome::Corrupt => {
                report.bytes_read += file.metadata.len();
                report.corrupt.push(file.name.relative_path());
                index.remove(&file.name.relative_path());
            }
            Outcome::Unreadable(reason) => report.unreadable.push((file.relative.clone(), reason)),
        }
    }
    // What was learned is kept even when cancelled: the next run skips the files checked so far.
    index.save()?;
    progress.check()?;
    report.corrupt.sort();
    report.unreadable.sort();
    Ok(report)
}
