//! Finding identical files across directories and replacing the duplicates by links, the way fclones does it: group
//! by size, then by an xxh3 of a prefix and a suffix, then by the full blake3, so most files are never read whole.
//!
//! Linking is careful: a file is replaced only when it and the file it is linked to still have the size, inode and
//! modification time (and, for the duplicate, change time) seen when they were hashed; a hard link is made under a
//! temporary name and renamed over the duplicate, so the path always holds the whole file. Reflinks use the kernel's
//! FIDEDUPERANGE, which compares the bytes itself under a lock and shares extents only where they are equal.
//! Paths that already share an inode count as one file (reported by its first path; a duplicate is replaced at all of
//! its paths). Empty files are left alone (a link saves nothing).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, IoResultExt, Result};
use crate::hash::{Algorithm, hash_file};
use crate::pool::run_in_pool;
use crate::progress::Progress;
use crate::store::{INDEX_FILE, PARTIAL_DIR};

/// The prefix and the suffix hashed in the second stage.
const EDGE: u64 = 4 << 10;

/// Files up to this size are hashed whole at once: the prefix and suffix would be most of them anyway.
const WHOLE_MAX: u64 = 64 << 10;

/// The longest range handed to FIDEDUPERANGE at once (filesystems cap a single call near 16 MiB).
const DEDUPE_STEP: u64 = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Hardlink,
    Reflink,
}

#[derive(Clone, Copy, Debug)]
pub struct DedupOptions {
    pub link: LinkKind,
    /// Find and report the groups, link nothing.
    pub dry_run: bool,
    /// Files smaller than this are not considered (at least 1: empty files are never linked).
    pub min_size: u64,
    /// Files hashed at once (`None`: one per core).
    pub threads: Option<usize>,
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions { link: LinkKind::Hardlink, dry_run: false, min_size: 1, threads: None }
    }
}

/// Files with identical bytes; `paths[0]` is the one kept, the others are linked to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateGroup {
    pub size: u64,
    pub blake3: [u8; 32],
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Default)]
pub struct DedupReport {
    /// Distinct files seen (paths sharing an inode count once).
    pub files: u64,
    pub bytes: u64,
    /// Files that share their size with another.
    pub candidates_by_size: u64,
    /// Files read whole (small candidates, and large ones whose prefix and suffix matched another's).
    pub read_whole: u64,
    pub groups: Vec<DuplicateGroup>,
    /// Bytes the duplicates take (what linking them all saves).
    pub bytes_duplicate: u64,
    pub files_linked: u64,
    pub bytes_saved: u64,
    /// Files not linked because they (or the file they would be linked to) changed after they were hashed.
    pub changed: Vec<PathBuf>,
    pub failed: Vec<(PathBuf, String)>,
}

/// What was seen of a file when it was listed; linking requires it to be unchanged.
#[derive(Clone, Debug)]
struct Seen {
    path: PathBuf,
    /// Other paths of the same inode under the roots: a duplicate is replaced at every one of them.
    also: Vec<PathBuf>,
    size: u64,
    device: u64,
    inode: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Seen {
    fn from_metadata(path: PathBuf, m: &fs::Metadata) -> Self {
        Seen {
            path,
            also: Vec::new(),
            size: m.len(),
            device: m.dev(),
            inode: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Same inode, size and modification time at every path; `with_ctime` also the change time (a chmod, or a
    /// write that restored the mtime). The kept file's change time moves when links are added to it, so it is
    /// compared without.
    fn unchanged(&self, with_ctime: bool) -> bool {
        std::iter::once(&self.path).chain(&self.also).all(|path| self.unchanged_at(path, with_ctime))
    }

    fn unchanged_at(&self, path: &Path, with_ctime: bool) -> bool {
        fs::symlink_metadata(path).is_ok_and(|m| {
            let now = Seen::from_metadata(PathBuf::new(), &m);
            now.device == self.device
                && now.inode == self.inode
                && now.size == self.size
                && now.mtime == self.mtime
                && (!with_ctime || now.ctime == self.ctime)
        })
    }
}

/// Finds the duplicate groups among the files under `roots` and, unless `dry_run`, links them.
pub fn deduplicate(roots: &[PathBuf], options: DedupOptions, progress: &Progress) -> Result<DedupReport> {
    for root in roots {
        if !root.is_dir() {
            return Err(Error::InvalidInput(format!("{} is not a directory", root.display())));
        }
    }
    let files = list_files(roots, options.min_size.max(1), progress)?;
    let mut report =
        DedupReport { files: files.len() as u64, bytes: files.iter().map(|f| f.size).sum(), ..DedupReport::default() };
    progress.add_total(report.files, 0);

    let by_size: Vec<(u64, Vec<Seen>)> = group_by_key(files.into_iter().map(|f| (f.size, f)));
    report.candidates_by_size = by_size.iter().map(|(_, g)| g.len() as u64).sum();
    let (small, large): (Vec<_>, Vec<_>) = by_size.into_iter().map(|(_, g)| g).partition(|g| g[0].size <= WHOLE_MAX);
    let full_hash = |f: &Seen| -> Result<[u8; 32]> {
        let digests = hash_file(&f.path, [Algorithm::Blake3].into_iter().collect(), progress)?;
        Ok(digests.blake3.expect("blake3 was asked for"))
    };
    let mut failed = Vec::new();
    let mut found = run_in_pool(options.threads, || -> Result<Vec<([u8; 32], Vec<Seen>)>> {
        let by_edges = refine(large, edge_hash, progress, &mut failed)?;
        let survivors: Vec<Vec<Seen>> = by_edges.into_iter().map(|(_, g)| g).chain(small).collect();
        report.read_whole = survivors.iter().map(|g| g.len() as u64).sum();
        progress.add_total(0, survivors.iter().flatten().map(|f| f.size).sum());
        refine(survivors, full_hash, progress, &mut failed)
    })??;
    report.failed = failed;

    // The file with the most paths is kept (fewest replacements), then the first path in order.
    for (_, members) in &mut found {
        members.sort_by(|a, b| b.also.len().cmp(&a.also.len()).then_with(|| a.path.cmp(&b.path)));
    }
    found.sort_by(|(_, a), (_, b)| b[0].size.cmp(&a[0].size).then_with(|| a[0].path.cmp(&b[0].path)));
    for (blake3, members) in &found {
        report.bytes_duplicate += members[0].size * (members.len() as u64 - 1);
        report.groups.push(DuplicateGroup {
            size: members[0].size,
            blake3: *blake3,
            paths: members.iter().map(|f| f.path.clone()).collect(),
        });
    }
    if !options.dry_run {
        // Groups are independent: linking them in parallel overlaps the filesystem's journal waits.
        let linked: Vec<DedupReport> = run_in_pool(options.threads, || {
            found
                .par_iter()
                .filter(|_| !progress.is_cancelled())
                .map(|(_, members)| {
                    let mut part = DedupReport::default();
                    link_group(members, options.link, &mut part);
                    part
                })
                .collect()
        })?;
        progress.check()?;
        for part in linked {
            report.files_linked += part.files_linked;
            report.bytes_saved += part.bytes_saved;
            report.changed.extend(part.changed);
            report.failed.extend(part.failed);
        }
    }
    report.changed.sort();
    report.failed.sort();
    Ok(report)
}

/// Replaces every member after the first by a link to the first, each only if both are unchanged since hashing.
fn link_group(members: &[Seen], kind: LinkKind, report: &mut DedupReport) {
    let (kept, duplicates) = members.split_first().expect("groups have two or more members");
    for duplicate in duplicates {
        if !kept.unchanged(false) || !duplicate.unchanged(true) {
            report.changed.push(duplicate.path.clone());
            continue;
        }
        let linked = match kind {
            LinkKind::Hardlink if kept.device != duplicate.device => {
                Err(Error::InvalidInput("on another filesystem than the file it duplicates".into()))
            }
            LinkKind::Hardlink => std::iter::once(&duplicate.path)
                .chain(&duplicate.also)
                .try_for_each(|path| replace_by_hardlink(&kept.path, path)),
            LinkKind::Reflink => share_extents(&kept.path, &duplicate.path, duplicate.size),
        };
        match linked {
            Ok(()) => {
                report.files_linked += 1;
                report.bytes_saved += duplicate.size;
            }
            Err(error) => report.failed.push((duplicate.path.clone(), error.to_string())),
        }
    }
}

/// Links `kept` under a temporary name beside `duplicate`, then renames it over `duplicate` (atomic).
fn replace_by_hardlink(kept: &Path, duplicate: &Path) -> Result<()> {
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(duplicate.file_name().unwrap_or_default());
    temporary_name.push(".upmirror-dedup");
    let temporary = duplicate.with_file_name(temporary_name);
    fs::hard_link(kept, &temporary).at(&temporary)?;
    fs::rename(&temporary, duplicate).at(duplicate).inspect_err(|_| {
        let _ = fs::remove_file(&temporary);
    })
}

/// The kernel's `struct file_dedupe_range` with one destination (linux/fs.h).
#[repr(C)]
struct FileDedupeRange {
    src_offset: u64,
    src_length: u64,
    dest_count: u16,
    reserved1: u16,
    reserved2: u32,
    dest_fd: i64,
    dest_offset: u64,
    bytes_deduped: u64,
    status: i32,
    reserved: u32,
}

/// `_IOWR(0x94, 54, struct file_dedupe_range)`; the header struct is 24 bytes.
const FIDEDUPERANGE: libc::Ioctl = 0xC018_9436;
const FILE_DEDUPE_RANGE_DIFFERS: i32 = 1;

/// Makes `duplicate` share `kept`'s extents with FIDEDUPERANGE, range by range; the kernel refuses any range whose
/// bytes differ, so a file changed meanwhile is never altered.
fn share_extents(kept: &Path, duplicate: &Path, size: u64) -> Result<()> {
    let source = File::open(kept).at(kept)?;
    let destination = OpenOptions::new().write(true).open(duplicate).at(duplicate)?;
    let mut offset = 0;
    while offset < size {
        let mut range = FileDedupeRange {
            src_offset: offset,
            src_length: DEDUPE_STEP.min(size - offset),
            dest_count: 1,
            reserved1: 0,
            reserved2: 0,
            dest_fd: i64::from(destination.as_raw_fd()),
            dest_offset: offset,
            bytes_deduped: 0,
            status: 0,
            reserved: 0,
        };
        // SAFETY: the struct matches the kernel's layout for one destination and outlives the call.
        if unsafe { libc::ioctl(source.as_raw_fd(), FIDEDUPERANGE, &raw mut range) } != 0 {
            return Err(Error::io(duplicate, io::Error::last_os_error()));
        }
        if range.status == FILE_DEDUPE_RANGE_DIFFERS {
            return Err(Error::InvalidInput("changed since it was hashed; the kernel found different bytes".into()));
        }
        if range.status < 0 {
            return Err(Error::io(duplicate, io::Error::from_raw_os_error(-range.status)));
        }
        if range.bytes_deduped == 0 {
            return Err(Error::io(duplicate, io::Error::other("the filesystem shared no extents")));
        }
        offset += range.bytes_deduped;
    }
    Ok(())
}

/// xxh3-128 of the first and last `EDGE` bytes: cheap, and tells apart most same-size files.
fn edge_hash(file: &Seen) -> Result<u128> {
    let handle = File::open(&file.path).at(&file.path)?;
    let mut hasher = Xxh3::new();
    let mut buffer = vec![0u8; EDGE as usize];
    for offset in [0, file.size.saturating_sub(EDGE)] {
        let length = EDGE.min(file.size) as usize;
        handle.read_exact_at(&mut buffer[..length], offset).at(&file.path)?;
        hasher.update(&buffer[..length]);
    }
    Ok(hasher.digest128())
}

/// Splits each group by a key computed in parallel for every member, keeping groups of two or more. A file that
/// cannot be read leaves its group (and is reported); cancellation stops the whole search.
fn refine<K: std::hash::Hash + Eq + Send>(
    groups: Vec<Vec<Seen>>,
    key: impl Fn(&Seen) -> Result<K> + Sync,
    progress: &Progress,
    failed: &mut Vec<(PathBuf, String)>,
) -> Result<Vec<(K, Vec<Seen>)>> {
    let keyed: Vec<Vec<(Seen, Result<K>)>> = groups
        .into_par_iter()
        .map(|group| {
            group
                .into_iter()
                .map(|f| {
                    let k = if progress.is_cancelled() { Err(Error::Cancelled) } else { key(&f) };
                    progress.file_done();
                    (f, k)
                })
                .collect()
        })
        .collect();
    progress.check()?;
    let mut refined = Vec::new();
    for group in keyed {
        let mut readable = Vec::with_capacity(group.len());
        for (file, key) in group {
            match key {
                Ok(key) => readable.push((key, file)),
                Err(error) => failed.push((file.path, error.to_string())),
            }
        }
        refined.extend(group_by_key(readable));
    }
    Ok(refined)
}

/// Walks the roots, keeping one path per inode, skipping upmirror's own files (the content index, `.partial/`).
fn list_files(roots: &[PathBuf], min_size: u64, progress: &Progress) -> Result<Vec<Seen>> {
    let mut by_inode: HashMap<(u64, u64), usize> = HashMap::new();
    let mut files: Vec<Seen> = Vec::new();
    for root in roots {
        let walker = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name().into_iter();
        for entry in walker.filter_entry(|e| e.file_name() != PARTIAL_DIR && e.file_name() != INDEX_FILE) {
            progress.check()?;
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(root).to_path_buf();
                Error::io(&path, e.into_io_error().unwrap_or_else(|| io::Error::other("filesystem loop")))
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let metadata = entry.metadata().map_err(|e| Error::io(entry.path(), e.into()))?;
            if metadata.len() < min_size {
                continue;
            }
            match by_inode.entry((metadata.dev(), metadata.ino())) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    let first = &mut files[*first.get()];
                    // The same path reached through two overlapping roots is one path.
                    if first.path != entry.path() && !first.also.iter().any(|p| p == entry.path()) {
                        first.also.push(entry.into_path());
                    }
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(files.len());
                    files.push(Seen::from_metadata(entry.into_path(), &metadata));
                }
            }
        }
    }
    Ok(files)
}

/// Groups items by a key, keeping only groups of two or more.
fn group_by_key<K: std::hash::Hash + Eq>(items: impl IntoIterator<Item = (K, Seen)>) -> Vec<(K, Vec<Seen>)> {
    let mut groups: HashMap<K, Vec<Seen>> = HashMap::new();
    for (key, item) in items {
        groups.entry(key).or_default().push(item);
    }
    groups.into_iter().filter(|(_, g)| g.len() >= 2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_identical_files() -> (tempfile::TempDir, Vec<Seen>) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"same bytes").unwrap();
        fs::write(dir.path().join("b"), b"same bytes").unwrap();
        let files = list_files(&[dir.path().to_path_buf()], 1, &Progress::new()).unwrap();
        assert_eq!(files.len(), 2);
        (dir, files)
    }

    #[test]
    fn a_duplicate_changed_after_hashing_is_left_alone() {
        let (dir, files) = two_identical_files();
        let duplicate = dir.path().join("b");
        let inode = fs::metadata(&duplicate).unwrap().ino();
        // Same size, new bytes and a new modification time, as a writer would leave it.
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(&duplicate, b"SAME BYTES").unwrap();
        let mut report = DedupReport::default();
        link_group(&files, LinkKind::Hardlink, &mut report);
        assert_eq!(report.changed, std::slice::from_ref(&duplicate));
        assert_eq!(report.files_linked, 0);
        assert_eq!(fs::read(&duplicate).unwrap(), b"SAME BYTES");
        assert_eq!(fs::metadata(&duplicate).unwrap().ino(), inode);
    }

    #[test]
    fn a_kept_file_replaced_after_hashing_stops_the_linking() {
        let (dir, files) = two_identical_files();
        let kept = dir.path().join("a");
        fs::remove_file(&kept).unwrap();
        fs::write(&kept, b"other data").unwrap();
        let mut report = DedupReport::default();
        link_group(&files, LinkKind::Hardlink, &mut report);
        assert_eq!(report.files_linked, 0);
        assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"same bytes");
    }

    #[test]
    fn unchanged_duplicates_become_one_inode() {
        let (dir, files) = two_identical_files();
        let mut report = DedupReport::default();
        link_group(&files, LinkKind::Hardlink, &mut report);
        assert_eq!((report.files_linked, report.bytes_saved), (1, 10));
        let inode = |name: &str| fs::metadata(dir.path().join(name)).unwrap().ino();
        assert_eq!(inode("a"), inode("b"));
        assert!(!dir.path().join(".b.upmirror-dedup").exists());
    }
}
