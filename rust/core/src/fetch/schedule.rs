//! The scheduling loop of a download: the shared context of every file task, the job list consumed lazily (a bounded
//! number of file tasks alive at once), the stop on a fatal error or cancellation, and the report.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::circuit::{Circuit, origin_key};
use super::file::download_file;
use super::job::{DownloadJob, DownloadOptions, DownloadReport, FileOutcome, JobTarget};
use crate::error::{Error, IoResultExt, Result};
use crate::http::{HttpClient, runtime};
use crate::placement::Placer;
use crate::progress::Progress;
use crate::store::{ContentStore, PARTIAL_DIR};

/// File tasks alive at once per connection: enough to keep every connection busy with small files while the job
/// list is consumed lazily (memory stays flat in the number of jobs).
const FILE_TASKS_PER_CONNECTION: usize = 4;

/// Downloads every job under `root` (a content directory for `Content` targets, any directory for `File` ones).
/// Blocks on the shared runtime; call it off the GIL. A failing file is reported in its outcome while the others
/// complete; only a local fault (disk full, permissions) or cancellation ends the whole call with an error, and
/// leaves every unfinished file resumable.
pub fn download(
    client: Arc<HttpClient>,
    root: &Path,
    jobs: Vec<DownloadJob>,
    options: DownloadOptions,
    progress: Arc<Progress>,
) -> Result<DownloadReport> {
    options.validate()?;
    let partial = root.join(PARTIAL_DIR);
    fs::create_dir_all(&partial).at(&partial)?;
    // What earlier runs left, listed once: a file with nothing here has nothing to resume, and costs no lookup.
    let leftovers = fs::read_dir(&partial).at(&partial)?.filter_map(|entry| Some(entry.ok()?.file_name())).collect();
    let known: u64 = jobs.iter().filter_map(|j| j.size).sum();
    progress.add_total(jobs.len() as u64, known);
    let in_flight_units = (options.max_in_flight_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS as u64) as usize;
    let stop = Arc::new(Stop::default());
    let placer = {
        let stop = stop.clone();
        Placer::start(root, progress.clone(), move |error| stop.trigger(error))
    };
    let context = Arc::new(Context {
        connections: Arc::new(Semaphore::new(options.connections)),
        in_flight: Arc::new(Semaphore::new(in_flight_units)),
        in_flight_units,
        client,
        root: root.to_path_buf(),
        options,
        progress,
        stop,
        placer,
        leftovers,
        circuits: Mutex::new(HashMap::new()),
        bytes_transferred: AtomicU64::new(0),
        bytes_reused: AtomicU64::new(0),
    });
    // The scheduling loop runs on a runtime thread too: a file task finishing then wakes no thread outside the
    // runtime (waking the blocked caller for every file cost a futex call and a context switch each).
    runtime().block_on(runtime().spawn(download_all(context, jobs))).expect("the download loop does not panic")
}

async fn download_all(context: Arc<Context>, jobs: Vec<DownloadJob>) -> Result<DownloadReport> {
    let watcher = tokio::spawn(watch_cancellation(context.clone()));
    let total = jobs.len();
    let mut outcomes: Vec<Option<FileOutcome>> = vec![None; total];
    let mut pending = jobs.into_iter().enumerate();
    let mut running = JoinSet::new();
    let limit = context.options.connections * FILE_TASKS_PER_CONNECTION;
    loop {
        while running.len() < limit && !context.stop.is_set() {
            let Some((index, job)) = pending.next() else { break };
            let context = context.clone();
            running.spawn(async move { (index, download_file(&context, job).await) });
        }
        let Some(joined) = running.join_next().await else { break };
        let (index, outcome) = joined.expect("download tasks do not panic");
        outcomes[index] = Some(outcome);
    }
    watcher.abort();
    let placing = context.clone();
    tokio::task::spawn_blocking(move || placing.placer.finish()).await.expect("placing does not panic");
    if let Some(error) = context.stop.take_error() {
        return Err(error);
    }
    let unreachable = context.circuits.lock().expect("circuit map lock").values().find_map(|c| c.gone());
    Ok(DownloadReport {
        outcomes: outcomes
            .into_iter()
            .map(|o| o.unwrap_or(FileOutcome::Failed { reason: "not attempted".into() }))
            .collect(),
        bytes_transferred: context.bytes_transferred.load(Ordering::Relaxed),
        bytes_reused: context.bytes_reused.load(Ordering::Relaxed),
        unreachable,
    })
}

/// Turns the progress' cancellation flag (set by Ctrl-C in the bindings) into a stop of every task.
async fn watch_cancellation(context: Arc<Context>) {
    loop {
        if context.progress.is_cancelled() {
            context.stop.trigger(Error::Cancelled);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) struct Context {
    pub(super) client: Arc<HttpClient>,
    pub(super) root: PathBuf,
    pub(super) options: DownloadOptions,
    pub(super) progress: Arc<Progress>,
    pub(super) connections: Arc<Semaphore>,
    /// Bytes requested and not yet written, in KiB units.
    pub(super) in_flight: Arc<Semaphore>,
    pub(super) in_flight_units: usize,
    pub(super) stop: Arc<Stop>,
    /// Verified files go to their final paths through this queue.
    pub(super) placer: Placer,
    /// The names in `.partial/` when the download started.
    pub(super) leftovers: HashSet<OsString>,
    /// By origin (`origin_key`).
    pub(super) circuits: Mutex<HashMap<String, Arc<Circuit>>>,
    pub(super) bytes_transferred: AtomicU64,
    pub(super) bytes_reused: AtomicU64,
}

/// The stop of the whole download: the first fatal error (or cancellation) is kept and every task ends soon.
#[derive(Default)]
pub(super) struct Stop {
    pub(super) flag: AtomicBool,
    pub(super) notify: Notify,
    pub(super) error: Mutex<Option<Error>>,
}

impl Stop {
    pub(super) fn trigger(&self, error: Error) {
        let mut slot = self.error.lock().expect("stop error lock");
        if slot.is_none() {
            *slot = Some(error);
        }
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(super) fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    pub(super) fn take_error(&self) -> Option<Error> {
        self.error.lock().expect("stop error lock").take()
    }

    pub(super) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Why one attempt at a file ended without placing it.
#[derive(Debug)]
pub(super) enum FileError {
    /// Start the file over from nothing, on fresh connections (digest mismatch, file changed upstream); once.
    Restart(String),
    /// Give up on this file with this reason; the others continue.
    Failed(String),
    /// The file's origin stayed unreachable past the outage budget (the reason names it).
    Unreachable(String),
    /// The whole download stops (the reason is in `Context::stop`).
    Stop,
}

impl Context {
    /// Runs a future unless the download stops first.
    pub(super) async fn unless_stopped<T>(&self, future: impl Future<Output = T>) -> Result<T, FileError> {
        tokio::select! {
            biased;
            () = self.stop.wait() => Err(FileError::Stop),
            value = future => Ok(value),
        }
    }

    /// Takes permits at once when they are free (the usual case, and the cheap one), else waits for them unless the
    /// download stops first.
    pub(super) async fn acquire(
        &self,
        semaphore: &Arc<Semaphore>,
        permits: u32,
    ) -> Result<OwnedSemaphorePermit, FileError> {
        if self.stop.is_set() {
            return Err(FileError::Stop);
        }
        if let Ok(permit) = semaphore.clone().try_acquire_many_owned(permits) {
            return Ok(permit);
        }
        Ok(self.unless_stopped(semaphore.clone().acquire_many_owned(permits)).await?.expect("never closed"))
    }

    /// A local I/O failure stops everything: the next file would meet the same full disk or missing permission.
    pub(super) fn fatal(&self, error: Error) -> FileError {
        self.stop.trigger(error);
        FileError::Stop
    }

    pub(super) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.options.retry.backoff(attempt, retry_after)
    }

    /// The circuit of a URL's origin, shared by every file from it.
    pub(super) fn circuit(&self, url: &str) -> Arc<Circuit> {
        let key = origin_key(url);
        let mut circuits = self.circuits.lock().expect("circuit map lock");
        if let Some(circuit) = circuits.get(key) {
            return circuit.clone();
        }
        let circuit = Arc::new(Circuit::default());
        circuits.insert(key.to_owned(), circuit.clone());
        circuit
    }

    pub(super) fn paths(&self, job: &DownloadJob) -> Paths {
        let (partial_name, final_path) = match &job.target {
            JobTarget::Content(name) => {
                let store = ContentStore::new(&self.root);
                (store.partial_path_of(name), store.path_of(name))
            }
            JobTarget::File(name) => (self.root.join(PARTIAL_DIR).join(format!("{name}.part")), self.root.join(name)),
        };
        let journal = PathBuf::from(format!("{}.journal", partial_name.display()));
        Paths { part: partial_name, journal, final_path }
    }
}

pub(super) struct Paths {
    pub(super) part: PathBuf,
    pub(super) journal: PathBuf,
    pub(super) final_path: PathBuf,
}

impl Paths {
    pub(super) fn discard(&self) {
        let _ = fs::remove_file(&self.part);
        let _ = fs::remove_file(&self.journal);
    }
}
