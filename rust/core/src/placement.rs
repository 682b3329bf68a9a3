//! Group commit of verified downloads: files whose digests matched are moved from `.partial/` to their final paths
//! by a thread of their own, a batch at a time, with one `syncfs` per batch instead of two `fsync`s per file.
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

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::index::{ContentIndex, IndexEntry};
use crate::progress::Progress;
use crate::store::{ContentStore, FilesystemFlush, rename_into_place};

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
}
