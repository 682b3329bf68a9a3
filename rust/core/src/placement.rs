//! Group commit of verified files: downloads whose digests matched, and files other writers staged (`place_staged`,
//! the one way publish, seed bundles and the catalog generator put content in place), are moved from `.partial/` to
//! their final paths by a thread of their own, a batch at a time, with one `syncfs` per batch instead of two
//! `fsync`s per file.
//!
//! The order keeps the promise that a final path only ever holds a whole, verified file, even across a power loss:
//! the batch's bytes are flushed first (`syncfs`), then the batch is renamed into place; the renames themselves are
//! made durable by the next batch's flush, or by the last one before the download returns. Download tasks hand a
//! file over and move on to the next one, so the network never waits for the disk; the queue is bounded, so a slow
//! disk slows the downloads down instead of growing memory.
//!
//! Content-store files (their SHA-1 checked) are then recorded in the content index, once the last flush made every
//! rename durable, so `verify` and `copy` need not read them again and the index never vouches for a file that a
//! power loss could take back.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::hash::{Algorithm, AlgorithmSet, Digests, hash_files};
use crate::index::{ContentIndex, IndexEntry};
use crate::progress::Progress;
use crate::store::{ContentName, ContentStore, FilesystemFlush, rename_into_place};

/// Files handed over and not yet placed, at most (paths only; their bytes are already in the page cache).
const QUEUE: usize = 4096;
/// Files renamed after one flush, at most.
const BATCH: usize = 1024;
/// After a batch smaller than `BATCH`, the thread lets files gather this long before it looks again: one wake-up
/// and one flush for many small files instead of one for each (the commit delay of a database's group commit).
const GATHER: Duration = Duration::from_millis(2);

/// A verified file waiting in `.partial/` for its final path.
pub struct Verified {
    pub part: PathBuf,
    pub final_path: PathBuf,
    /// Its resume journal, removed once the file is in place.
    pub journal: Option<PathBuf>,
    /// For a content-store file, whose SHA-1 was checked: its path relative to the content directory and its
    /// blake3 when computed, for the content index.
    pub indexed: Option<(String, Option<[u8; 32]>)>,
}

enum Message {
    Place(Verified),
    /// Everything was handed over: flush the last renames and end.
    Finish,
}

/// The placing thread's queue. Download tasks share it; `finish` waits for the thread.
pub struct Placer {
    queue: mpsc::Sender<Message>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Placer {
    /// Starts the thread for the filesystem holding `root`. It counts each placed file as done in `progress`; its
    /// first error (a full disk, a missing permission) goes to `on_error`, and nothing more is placed after it.
    pub fn start(root: &Path, progress: Arc<Progress>, on_error: impl FnOnce(Error) + Send + 'static) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let root = root.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("upmirror-place".into())
            .spawn(move || {
                let placed = FilesystemFlush::open(&root).and_then(|disk| place_batches(&disk, receiver, &progress));
                let placed = placed.map(|learned| record_in_index(&root, learned));
                if let Err(error) = placed {
                    on_error(error);
                }
            })
            .expect("the placing thread starts");
        Self { queue, thread: Mutex::new(Some(thread)) }
    }

    /// Hands a verified file over (waiting while the queue is full). `false` when the thread has stopped on an
    /// error, which it reported.
    pub async fn place(&self, verified: Verified) -> bool {
        self.queue.send(Message::Place(verified)).await.is_ok()
    }

    /// `place` for a caller outside the async runtime (`place_staged`): blocks while the queue is full.
    pub fn place_blocking(&self, verified: Verified) -> bool {
        self.queue.blocking_send(Message::Place(verified)).is_ok()
    }

    /// Waits until every file handed over is in place and durable. Call it once every task has handed its files
    /// over; blocking, so from a blocking context.
    pub fn finish(&self) {
        let _ = self.queue.blocking_send(Message::Finish);
        if let Some(thread) = self.thread.lock().expect("placer lock").take() {
            thread.join().expect("the placing thread does not panic");
        }
    }
}

/// Places every file handed over; returns the index entries of the content-store files among them.
fn place_batches(
    disk: &FilesystemFlush,
    mut receiver: mpsc::Receiver<Message>,
    progress: &Progress,
) -> Result<Vec<(String, IndexEntry)>> {
    let mut learned = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut finished = false;
    let mut placed_any = false;
    while !finished {
        match receiver.blocking_recv() {
            Some(Message::Place(first)) => batch.push(first),
            Some(Message::Finish) | None => break,
        }
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(Message::Place(next)) => batch.push(next),
                Ok(Message::Finish) => {
                    finished = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let full = batch.len() == BATCH;
        // The bytes of this batch (and the renames of the one before) reach the disk before any name points at them.
        disk.flush()?;
        for verified in batch.drain(..) {
            rename_into_place(&verified.part, &verified.final_path)?;
            if let Some(journal) = verified.journal {
                let _ = fs::remove_file(&journal);
            }
            if let Some((relative, blake3)) = verified.indexed
                && let Ok(metadata) = fs::metadata(&verified.final_path)
            {
                learned.push((relative, IndexEntry::verified(&metadata, blake3)));
            }
            progress.file_done();
        }
        placed_any = true;
        if !full && !finished {
            std::thread::sleep(GATHER);
        }
    }
    // The renames of the last batch.
    if placed_any {
        disk.flush()?;
    }
    Ok(learned)
}

/// Adds what a download verified to the content index. The index is a cache: failing to write it costs a later
/// `verify` or `copy` a read of these files, nothing more, so a failure is not reported.
fn record_in_index(root: &Path, learned: Vec<(String, IndexEntry)>) {
    if learned.is_empty() {
        return;
    }
    let mut index = ContentIndex::load(&ContentStore::new(root));
    for (relative, entry) in learned {
        index.record(relative, entry);
    }
    let _ = index.save();
}

/// A file that a writer outside the download engine (publish, seed bundles, the catalog generator) staged under
/// the content directory's `.partial/` (`ContentStore::staging_path`), with the name and digests it must have.
#[derive(Clone, Debug)]
pub struct StagedFile {
    pub staged: PathBuf,
    pub name: ContentName,
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
    pub blake3: Option<[u8; 32]>,
}

/// What `place_staged` did. Paths are relative to the content directory, in the layout's spelling.
#[derive(Debug, Default)]
pub struct StagedReport {
    /// Every staged file's size, SHA-1, SHA-256 and blake3, in the order given (`None`: it could not be read).
    pub digests: Vec<Option<Digests>>,
    /// Files this call put in place.
    pub placed: Vec<String>,
    /// Files already in place (or named twice in the call): their staged copies were removed.
    pub present: Vec<String>,
    /// Files refused, by their position in the call, with the reason. One refusal and nothing is placed.
    pub refused: Vec<(usize, String)>,
}

/// The one way a staged file enters a content directory: every file is read once for its SHA-1, SHA-256 and blake3
/// (in parallel), and must have the size and every digest it was staged with. Only when all of them do are they
/// placed, by the placing thread (one `syncfs` before each batch of atomic renames, one after the last), and
/// recorded in the content index, so `verify` and `copy` trust them without reading them again. When any file is
/// refused (other bytes, or unreadable), nothing is placed and every staged file of the call is removed: a staged
/// set goes in whole or not at all. A file already in place is not replaced (its digest was checked when it was
/// placed). Progress counts the bytes and files hashed; cancellation leaves the staged files where they are.
pub fn place_staged(store: &ContentStore, files: Vec<StagedFile>, progress: &Progress) -> Result<StagedReport> {
    let partial = store.partial_dir();
    let mut seen_paths = HashSet::with_capacity(files.len());
    for file in &files {
        let in_partial = file.staged.parent() == Some(partial.as_path()) && file.staged.file_name().is_some();
        if !in_partial || !seen_paths.insert(file.staged.as_path()) {
            return Err(Error::InvalidInput(format!(
                "{} is not a file staged once under {}",
                file.staged.display(),
                partial.display()
            )));
        }
    }
    let paths: Vec<PathBuf> = files.iter().map(|file| file.staged.clone()).collect();
    let algorithms: AlgorithmSet = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Blake3].into_iter().collect();
    let hashed = hash_files(&paths, algorithms, None, progress)?;
    let mut report = StagedReport::default();
    for (position, (file, digests)) in files.iter().zip(hashed).enumerate() {
        match digests {
            Ok(digests) => {
                if let Some(reason) = mismatch(file, &digests) {
                    report.refused.push((position, reason));
                }
                report.digests.push(Some(digests));
            }
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            Err(error) => {
                report.refused.push((position, format!("cannot be read: {error}")));
                report.digests.push(None);
            }
        }
    }
    if !report.refused.is_empty() {
        for path in &paths {
            let _ = fs::remove_file(path);
        }
        return Ok(report);
    }
    let failure: Arc<Mutex<Option<Error>>> = Arc::default();
    let placer = {
        let failure = failure.clone();
        Placer::start(store.root(), Arc::new(Progress::new()), move |error| {
            *failure.lock().expect("failure lock") = Some(error);
        })
    };
    let mut names = HashSet::with_capacity(files.len());
    for (file, digests) in files.into_iter().zip(&report.digests) {
        let relative = file.name.relative_path();
        if !names.insert(file.name.clone()) || store.contains(&file.name, file.size) {
            let _ = fs::remove_file(&file.staged);
            report.present.push(relative);
            continue;
        }
        let blake3 = digests.as_ref().and_then(|d| d.blake3);
        let final_path = store.path_of(&file.name);
        let verified =
            Verified { part: file.staged, final_path, journal: None, indexed: Some((relative.clone(), blake3)) };
        if !placer.place_blocking(verified) {
            break;
        }
        report.placed.push(relative);
    }
    placer.finish();
    match failure.lock().expect("failure lock").take() {
        Some(error) => Err(error),
        None => Ok(report),
    }
}

/// Why a staged file's digests refuse it, if they do.
fn mismatch(file: &StagedFile, digests: &Digests) -> Option<String> {
    if digests.size != file.size {
        return Some(format!("has {} bytes, expected {}", digests.size, file.size));
    }
    let sha1 = (&file.name.sha1[..], digests.sha1.as_ref().map(|d| &d[..]));
    let sha256 = file.sha256.as_ref().map(|expected| (&expected[..], digests.sha256.as_ref().map(|d| &d[..])));
    let blake3 = file.blake3.as_ref().map(|expected| (&expected[..], digests.blake3.as_ref().map(|d| &d[..])));
    [("sha1", Some(sha1)), ("sha256", sha256), ("blake3", blake3)].into_iter().find_map(|(algorithm, pair)| {
        let (expected, actual) = pair?;
        (Some(expected) != actual).then(|| {
            let actual = actual.map_or_else(|| "nothing".to_owned(), hex::encode);
            format!("does not match its {algorithm}: expected {}, got {actual}", hex::encode(expected))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(root: &Path, name: &str, journal: bool) -> Verified {
        let part = root.join(".partial").join(format!("{name}.part"));
        fs::write(&part, name).unwrap();
        let journal = journal.then(|| {
            let path = root.join(".partial").join(format!("{name}.part.journal"));
            fs::write(&path, b"journal").unwrap();
            path
        });
        Verified { part, final_path: root.join("AB").join(name), journal, indexed: None }
    }

    #[test]
    fn every_file_handed_over_is_in_place_when_finish_returns() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(".partial")).unwrap();
        let progress = Arc::new(Progress::new());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let placer = Placer::start(dir.path(), progress.clone(), move |e| seen.lock().unwrap().push(e.to_string()));
        let files: Vec<Verified> = (0..100).map(|i| verified(dir.path(), &format!("f{i}"), i % 10 == 0)).collect();
        crate::http::runtime().block_on(async {
            for file in files {
                assert!(placer.place(file).await);
            }
        });
        placer.finish();
        assert!(errors.lock().unwrap().is_empty());
        assert_eq!(progress.snapshot().files_done, 100);
        for i in 0..100 {
            assert_eq!(fs::read(dir.path().join("AB").join(format!("f{i}"))).unwrap(), format!("f{i}").as_bytes());
        }
        assert_eq!(fs::read_dir(dir.path().join(".partial")).unwrap().count(), 0, "parts and journals are gone");
    }

    #[test]
    fn a_failed_placement_is_reported_and_nothing_more_is_placed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(".partial")).unwrap();
        fs::write(dir.path().join("AB"), b"a file where the folder should be").unwrap();
        let progress = Arc::new(Progress::new());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let placer = Placer::start(dir.path(), progress.clone(), move |e| seen.lock().unwrap().push(e.to_string()));
        let file = verified(dir.path(), "f0", false);
        crate::http::runtime().block_on(placer.place(file));
        placer.finish();
        assert_eq!(errors.lock().unwrap().len(), 1, "the first error is reported once");
        assert_eq!(progress.snapshot().files_done, 0);
        assert!(dir.path().join(".partial/f0.part").exists(), "the verified part stays for the next run");
    }

    fn staged(store: &ContentStore, purpose: &str, bytes: &[u8]) -> StagedFile {
        let staged = store.staging_path(purpose).unwrap();
        fs::write(&staged, bytes).unwrap();
        let mut hasher = crate::hash::MultiHasher::new(AlgorithmSet::ALL).unwrap();
        hasher.update(bytes);
        let digests = hasher.finalize();
        let name = ContentName::new(digests.sha1.unwrap(), ".cab").unwrap();
        StagedFile { staged, name, size: bytes.len() as u64, sha256: digests.sha256, blake3: digests.blake3 }
    }

    #[test]
    fn staged_files_are_placed_and_recorded_in_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path());
        let files =
            vec![staged(&store, "t-a", b"first"), staged(&store, "t-b", b"second"), staged(&store, "t-c", b"first")];
        let names: Vec<ContentName> = files.iter().map(|f| f.name.clone()).collect();
        let report = place_staged(&store, files, &Progress::new()).unwrap();
        assert!(report.refused.is_empty());
        assert_eq!(report.placed, [names[0].relative_path(), names[1].relative_path()]);
        assert_eq!(report.present, [names[0].relative_path()], "the same content twice is placed once");
        assert_eq!(report.digests[1].as_ref().unwrap().sha1, Some(names[1].sha1));
        let index = ContentIndex::load(&store);
        for (name, bytes) in [(&names[0], &b"first"[..]), (&names[1], &b"second"[..])] {
            let path = store.path_of(name);
            assert_eq!(fs::read(&path).unwrap(), bytes);
            let entry = index.verified_entry(&name.relative_path(), &fs::metadata(&path).unwrap());
            assert!(entry.is_some_and(|e| e.blake3 == Some(*blake3::hash(bytes).as_bytes())), "{name:?} is trusted");
        }
        assert_eq!(fs::read_dir(store.partial_dir()).unwrap().count(), 0, "nothing is left staged");

        let again = staged(&store, "t-d", b"second");
        let report = place_staged(&store, vec![again], &Progress::new()).unwrap();
        assert_eq!((report.placed.len(), report.present.len()), (0, 1), "a file in place is not replaced");
    }

    #[test]
    fn a_file_whose_bytes_do_not_match_refuses_the_whole_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path());
        let good = staged(&store, "t-good", b"good bytes");
        let mut bad = staged(&store, "t-bad", b"bad bytes");
        bad.name = staged(&store, "t-other", b"other bytes").name;
        fs::remove_file(store.partial_path("t-other")).unwrap();
        let mut short = staged(&store, "t-short", b"short");
        short.size = 6;
        let mut strong = staged(&store, "t-strong", b"strong");
        strong.blake3 = Some([0; 32]);
        let names: Vec<ContentName> = [&good, &bad].iter().map(|f| f.name.clone()).collect();
        let report = place_staged(&store, vec![good, bad, short, strong], &Progress::new()).unwrap();
        let refused: Vec<usize> = report.refused.iter().map(|(position, _)| *position).collect();
        assert_eq!(refused, [1, 2, 3]);
        assert!(report.refused[0].1.starts_with("does not match its sha1: expected"), "{:?}", report.refused);
        assert_eq!(report.refused[1].1, "has 5 bytes, expected 6");
        assert!(report.refused[2].1.starts_with("does not match its blake3"), "{:?}", report.refused);
        assert!(report.placed.is_empty());
        for name in &names {
            assert!(!store.path_of(name).exists(), "nothing is placed");
        }
        assert!(ContentIndex::load(&store).is_empty());
        assert_eq!(fs::read_dir(store.partial_dir()).unwrap().count(), 0, "the staged set is removed");
    }

    #[test]
    fn only_files_staged_under_partial_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path());
        let mut outside = staged(&store, "t-a", b"bytes");
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"bytes").unwrap();
        outside.staged = elsewhere;
        assert!(matches!(place_staged(&store, vec![outside], &Progress::new()), Err(Error::InvalidInput(_))));
        let twice = staged(&store, "t-b", b"bytes");
        assert!(matches!(
            place_staged(&store, vec![twice.clone(), twice], &Progress::new()),
            Err(Error::InvalidInput(_))
        ));
        for bad in ["", ".hidden", "a/b", "../x", "a b", &"x".repeat(201)] {
            assert!(store.staging_path(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(store.staging_path("publish-ab.cab").unwrap(), store.partial_dir().join("publish-ab.cab.part"));
    }
}
