//! Checking a content directory: every file against the SHA-1 in its name, trusting the content index for files
//! whose size and modification time are unchanged since they were last checked (`full` reads every byte anyway).
//! The result lists corrupt and missing files by their content path, the input a repair (fetching them again from
//! the upstream, as `wsusutil reset` does) needs.

use std::fs::Metadata;
use std::path::Path;

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

/// A listed file with its metadata.
type Stated = (ScanEntry, Metadata);

/// The metadata of every listed file, read in parallel; files that vanished or cannot be read are set apart.
fn stat_all(store: &ContentStore, files: Vec<ScanEntry>) -> (Vec<Stated>, Vec<(String, String)>) {
    let stats: Vec<(ScanEntry, std::io::Result<Metadata>)> = files
        .into_par_iter()
        .map(|file| {
            let metadata = std::fs::metadata(file.path_in(store));
            (file, metadata)
        })
        .collect();
    let mut present = Vec::with_capacity(stats.len());
    let mut unreadable = Vec::new();
    for (file, metadata) in stats {
        match metadata {
            Ok(metadata) => present.push((file, metadata)),
            Err(error) => unreadable.push((file.relative, error.to_string())),
        }
    }
    (present, unreadable)
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
    let mut report = VerifyReport { outside_layout: scan.outside, ..VerifyReport::default() };
    let (files, unreadable) = run_in_pool(options.threads, || stat_all(&store, scan.files))?;
    report.unreadable = unreadable;
    report.files = files.len() as u64;
    report.bytes = files.iter().map(|(_, m)| m.len()).sum();
    progress.add_total(report.files, report.bytes);

    let present: std::collections::HashSet<String> = files.iter().map(|(f, _)| f.name.relative_path()).collect();
    // Entries of missing files stay in the index, so they are reported again until a repair (or a cleanup) settles
    // them; without metadata, the index is the only memory of what the directory held.
    report.missing = index.paths().filter(|p| !present.contains(*p)).map(str::to_owned).collect();
    drop(present);

    let check = |file: &ScanEntry, metadata: &Metadata| -> Outcome {
        if !options.full && index.verified_entry(&file.name.relative_path(), metadata).is_some() {
            progress.add_bytes(metadata.len());
            return Outcome::Trusted;
        }
        match check_file(&file.path_in(&store), &file.name, progress) {
            Ok(Some(entry)) => Outcome::Ok(entry),
            Ok(None) => Outcome::Corrupt,
            Err(Error::Cancelled) => Outcome::Unreadable("cancelled".into()),
            Err(error) => Outcome::Unreadable(error.to_string()),
        }
    };
    let outcomes: Vec<(&ScanEntry, &Metadata, Outcome)> = run_in_pool(options.threads, || {
        files
            .par_iter()
            .filter(|_| !progress.is_cancelled())
            .map(|(file, metadata)| {
                let outcome = check(file, metadata);
                match outcome {
                    Outcome::Trusted | Outcome::Ok(_) => progress.file_done(),
                    Outcome::Corrupt | Outcome::Unreadable(_) => progress.file_failed(),
                }
                (file, metadata, outcome)
            })
            .collect()
    })?;

    let mut index = index;
    let mut learned = false;
    for (file, metadata, outcome) in outcomes {
        match outcome {
            Outcome::Trusted => report.trusted += 1,
            Outcome::Ok(entry) => {
                report.hashed_ok += 1;
                report.bytes_read += entry.size;
                index.record(file.name.relative_path(), entry);
                learned = true;
            }
            Outcome::Corrupt => {
                report.bytes_read += metadata.len();
                report.corrupt.push(file.name.relative_path());
                index.remove(&file.name.relative_path());
                learned = true;
            }
            Outcome::Unreadable(reason) => report.unreadable.push((file.relative.clone(), reason)),
        }
    }
    // What was learned is kept even when cancelled: the next run skips the files checked so far.
    if learned {
        index.save()?;
    }
    progress.check()?;
    report.corrupt.sort();
    report.unreadable.sort();
    Ok(report)
}
