//! The download engine: a job list (URL, target, size, expected digests) fetched into the content store or a plain
//! directory. Large files are split into Range chunks over several connections, small files go many at once, and the
//! bytes requested but not yet on disk are bounded. Every byte is hashed (in-stream for files fetched in one piece,
//! right behind the writers, from the page cache, for chunked ones); a file reaches its final path only after its
//! digests matched, by an atomic rename that the placing thread (`placement`) makes durable a batch at a time.
//!
//! Resume: a chunked file's bytes live in `<root>/.partial/<name>.part`, and `<name>.part.journal` gets a record
//! (chunk, length, XXH3-64 of the chunk's first `length` bytes) each time a chunk under way has `PROGRESS_STEP`
//! (256 KiB) more bytes written, and one when it is finished. A restarted download re-reads the journaled chunks and
//! keeps only what still hashes as recorded: whole chunks, and of an unfinished chunk the longest recorded beginning
//! (the rest of it is asked for with a Range). So a kill costs, per chunk under way, less than `PROGRESS_STEP` plus
//! the bytes gathered for one write (`WRITE_BUFFER`, 256 KiB, when the network delivers small reads): under 512 KiB
//! of each of at most `connections` chunks; small files fetched in one piece are fetched again whole. The
//! whole-file digest is computed over every byte again before placement, so nothing unverified is ever trusted.
//! Journals are not fsynced: a killed process loses nothing the page cache holds, and after a power loss a record
//! whose bytes did not reach the disk fails its XXH3 check.
//!
//! Origins that cannot be reached: connections that cannot be made (refused, no route, connect timeout) do not count
//! against a file's retries. `CIRCUIT_THRESHOLD` of them in a row take the origin for down (`Circuit`): its files
//! wait, one probe at a time tries again after growing pauses, and the first answer brings them all back; after
//! `DownloadOptions::outage_budget` (30 s) without one, every file still to come from it ends at once as
//! unreachable and `DownloadReport::unreachable` says why.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, HeaderValue, LAST_MODIFIED, RANGE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::error::{Error, IoResultExt, Result};
use crate::hash::{Algorithm, AlgorithmSet, Digests, MultiHasher};
use crate::http::{HttpClient, StreamingResponse, parse_url, redacted, runtime};
use crate::placement::{Placer, Verified};
use crate::progress::Progress;
use crate::store::{ContentName, ContentStore, PARTIAL_DIR};

/// Connections at once (over all files). Measured with `python -m benches W2a W2b` (benches/w2_download.py).
pub const DEFAULT_CONNECTIONS: usize = 16;
/// Range chunk size; files up to this size are fetched in one request. Measured with benches/w2_download.py.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;
/// Bytes requested but not yet written, over all connections.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 512 << 20;
pub const DEFAULT_RETRIES: u32 = 5;
/// How long an origin may stay unreachable before its files end as "unreachable" (a restarted server is back well
/// within it; one that is gone costs this long once, not retries for every file).
pub const DEFAULT_OUTAGE_BUDGET: Duration = Duration::from_secs(30);
/// Connections in a row that could not be made (over all files of an origin) before the origin counts as down.
const CIRCUIT_THRESHOLD: u32 = 3;

/// Received bytes are gathered into writes of this size (fewer system calls than one write per network read). Also
/// the step of a chunk's journaled progress: bytes gathered and not yet written are lost to a kill.
const WRITE_BUFFER: usize = 256 << 10;
/// Network reads at least this large are written without gathering.
const DIRECT_WRITE_MIN: usize = 64 << 10;
/// The hasher behind chunked writers reads back this much at a time.
const HASH_READ: usize = 4 << 20;
/// The longest wait a server may ask for with Retry-After.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(120);
const JOURNAL_MAGIC: &[u8; 8] = b"UPMJRNL2";
/// A record of the journal: a chunk's index, a length, and the XXH3-64 of the chunk's first `length` bytes, each a
/// little-endian u64. The chunk's whole length for a finished chunk; less for progress within one.
const JOURNAL_RECORD: usize = 24;
/// A chunk under way journals its progress each time this many more bytes of it were written, so a killed run
/// loses less than this (plus the bytes gathered for a write) of each chunk that was under way.
const PROGRESS_STEP: u64 = WRITE_BUFFER as u64;
/// File tasks alive at once per connection: enough to keep every connection busy with small files while the job
/// list is consumed lazily (memory stays flat in the number of jobs).
const FILE_TASKS_PER_CONNECTION: usize = 4;

/// The digests the metadata promises; the strongest given (blake3 > sha256 > sha1) and the SHA-1 are checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedDigests {
    pub sha1: Option<[u8; 20]>,
    pub sha256: Option<[u8; 32]>,
    pub blake3: Option<[u8; 32]>,
}

impl ExpectedDigests {
    fn algorithms(&self) -> AlgorithmSet {
        let strongest = if self.blake3.is_some() {
            Some(Algorithm::Blake3)
        } else if self.sha256.is_some() {
            Some(Algorithm::Sha256)
        } else {
            None
        };
        strongest.into_iter().chain(self.sha1.map(|_| Algorithm::Sha1)).collect()
    }

    fn expected(&self, algorithm: Algorithm) -> Option<&[u8]> {
        match algorithm {
            Algorithm::Blake3 => self.blake3.as_ref().map(<[u8; 32]>::as_slice),
            Algorithm::Sha256 => self.sha256.as_ref().map(<[u8; 32]>::as_slice),
            Algorithm::Sha1 => self.sha1.as_ref().map(<[u8; 20]>::as_slice),
            Algorithm::Xxh3 => None,
        }
    }

    fn check(&self, label: &str, actual: &Digests) -> Result<()> {
        for algorithm in self.algorithms().iter() {
            let (Some(expected), Some(got)) = (self.expected(algorithm), actual.bytes(algorithm)) else { continue };
            if expected != got {
                return Err(Error::DigestMismatch {
                    name: label.to_owned(),
                    algorithm: algorithm.name(),
                    expected: hex::encode(expected),
                    actual: hex::encode(got),
                });
            }
        }
        Ok(())
    }
}

/// Where a job's file goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobTarget {
    /// Into the content store under its digest-derived name; the name's SHA-1 is always verified.
    Content(ContentName),
    /// A plain file name in the download directory (`upmirror fetch`), checked by `JobTarget::file`.
    File(String),
}

impl JobTarget {
    /// A plain file name: one path segment with no `/`, `\`, control characters, and not `.`, `..` or `.partial`.
    pub fn file(name: &str) -> Result<Self> {
        let refused = name.is_empty()
            || name == "."
            || name == ".."
            || name == PARTIAL_DIR
            || name.len() > 255
            || name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
        if refused {
            return Err(Error::InvalidInput(format!(
                "{name:?} cannot be used as a file name (empty, `.`, `..`, `.partial`, a slash or a control character)"
            )));
        }
        Ok(JobTarget::File(name.to_owned()))
    }

    /// The file name of a URL's last path segment (percent-decoded), checked as `file` does.
    pub fn file_from_url(url: &str) -> Result<Self> {
        let parsed = parse_url(url)?;
        let segment = parsed.path_segments().and_then(Iterator::last).unwrap_or_default();
        let decoded = percent_decode(segment);
        Self::file(&decoded).map_err(|_| {
            Error::InvalidInput(format!("{} does not end in a usable file name (got {decoded:?})", redacted(&parsed)))
        })
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len() + 1
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone, Debug)]
pub struct DownloadJob {
    pub url: String,
    pub target: JobTarget,
    /// Known from metadata in the content store; `None` for `upmirror fetch`, learned from the server.
    pub size: Option<u64>,
    pub expected: ExpectedDigests,
}

impl DownloadJob {
    /// A content-store job: the name's SHA-1 is always expected.
    pub fn content(url: String, name: ContentName, size: u64, mut expected: ExpectedDigests) -> Self {
        expected.sha1 = Some(name.sha1);
        DownloadJob { url, target: JobTarget::Content(name), size: Some(size), expected }
    }

    fn label(&self) -> String {
        match &self.target {
            JobTarget::Content(name) => name.relative_path(),
            JobTarget::File(name) => name.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DownloadOptions {
    pub connections: usize,
    pub chunk_size: u64,
    pub max_in_flight_bytes: u64,
    /// Retries of one request or chunk after a transient failure (connect error, reset, stall, 5xx, 429).
    pub retries: u32,
    /// The first retry waits about this long (with jitter), doubling up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long an origin that no connection reaches is waited for (probed with growing pauses) before every file
    /// still to come from it ends as unreachable. Connection failures never count against a file's retries.
    pub outage_budget: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            connections: DEFAULT_CONNECTIONS,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            retries: DEFAULT_RETRIES,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            outage_budget: DEFAULT_OUTAGE_BUDGET,
        }
    }
}

impl DownloadOptions {
    fn validate(&self) -> Result<()> {
        if self.connections == 0 || self.connections > 1024 {
            return Err(Error::InvalidInput(format!("connections must be 1 to 1024, not {}", self.connections)));
        }
        if self.chunk_size < 64 << 10 {
            return Err(Error::InvalidInput(format!("chunk size must be at least 64 KiB, not {}", self.chunk_size)));
        }
        if self.max_in_flight_bytes < self.chunk_size {
            return Err(Error::InvalidInput(format!(
                "max in-flight bytes ({}) must be at least the chunk size ({})",
                self.max_in_flight_bytes, self.chunk_size
            )));
        }
        Ok(())
    }
}

/// What became of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOutcome {
    Placed {
        path: PathBuf,
        bytes_fetched: u64,
        bytes_reused: u64,
    },
    /// Already present with the right size.
    Skipped {
        path: PathBuf,
    },
    Failed {
        reason: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct DownloadReport {
    /// One outcome per job, in the order of the jobs.
    pub outcomes: Vec<FileOutcome>,
    /// Body bytes received from the network.
    pub bytes_transferred: u64,
    /// Bytes of verified chunks kept from an earlier, interrupted run.
    pub bytes_reused: u64,
    /// Set when an origin stayed unreachable past the outage budget: why (naming the origin, or the proxy). Its
    /// files failed with this reason; the caller may treat the whole run as "upstream unreachable".
    pub unreachable: Option<String>,
}

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

struct Context {
    client: Arc<HttpClient>,
    root: PathBuf,
    options: DownloadOptions,
    progress: Arc<Progress>,
    connections: Arc<Semaphore>,
    /// Bytes requested and not yet written, in KiB units.
    in_flight: Arc<Semaphore>,
    in_flight_units: usize,
    stop: Arc<Stop>,
    /// Verified files go to their final paths through this queue.
    placer: Placer,
    /// The names in `.partial/` when the download started.
    leftovers: HashSet<OsString>,
    /// By origin (`origin_key`).
    circuits: Mutex<HashMap<String, Arc<Circuit>>>,
    bytes_transferred: AtomicU64,
    bytes_reused: AtomicU64,
}

/// The stop of the whole download: the first fatal error (or cancellation) is kept and every task ends soon.
#[derive(Default)]
struct Stop {
    flag: AtomicBool,
    notify: Notify,
    error: Mutex<Option<Error>>,
}

impl Stop {
    fn trigger(&self, error: Error) {
        let mut slot = self.error.lock().expect("stop error lock");
        if slot.is_none() {
            *slot = Some(error);
        }
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    fn take_error(&self) -> Option<Error> {
        self.error.lock().expect("stop error lock").take()
    }

    async fn wait(&self) {
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

/// An origin as the downloads see it, shared by every file from it: up, or down once `CIRCUIT_THRESHOLD`
/// connections in a row could not be made. While it is down, files wait in `pass` instead of spending their own
/// retries, and one request at a time (the probe) tries again, after pauses that grow as backoffs do. A probe that
/// connects brings every waiting file back; a probe that fails after the outage budget is spent makes the origin
/// gone, and every file still to come from it ends at once, unreachable.
#[derive(Default)]
struct Circuit {
    /// Set while connections fail: a clear flag (the usual case) costs a request one atomic load.
    troubled: AtomicBool,
    state: Mutex<CircuitState>,
    changed: Notify,
}

#[derive(Default)]
struct CircuitState {
    /// Connections in a row that could not be made.
    failures: u32,
    down: Option<Down>,
    probing: bool,
    /// Why the origin is given up, once the outage budget is spent.
    gone: Option<String>,
}

struct Down {
    since: Instant,
    probes: u32,
    next_probe: Instant,
}

impl Circuit {
    fn gone(&self) -> Option<String> {
        if !self.troubled.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().expect("circuit lock").gone.clone()
    }

    /// Waits until a request may go to the origin: at once while it is up; while it is down, until this request is
    /// the next probe or another one connected.
    async fn pass(self: &Arc<Self>, context: &Context) -> Result<Pass, FileError> {
        let pass = |probe| Pass { circuit: self.clone(), probe };
        loop {
            if !self.troubled.load(Ordering::Acquire) {
                return Ok(pass(false));
            }
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut state = self.state.lock().expect("circuit lock");
                if let Some(reason) = &state.gone {
                    return Err(FileError::Unreachable(reason.clone()));
                }
                let now = Instant::now();
                match &state.down {
                    None => return Ok(pass(false)),
                    Some(_) if state.probing => None,
                    Some(down) if now < down.next_probe => Some(down.next_probe - now),
                    Some(_) => {
                        state.probing = true;
                        return Ok(pass(true));
                    }
                }
            };
            let pause = async {
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            };
            context
                .unless_stopped(async {
                    tokio::select! { () = notified => {}, () = pause => {} }
                })
                .await?;
        }
    }
}

/// A request's permission to go to an origin; says how it went (`reached`, `failed`). A probe dropped unanswered
/// (its file stopped) lets the next waiting request probe.
struct Pass {
    circuit: Arc<Circuit>,
    probe: bool,
}

impl Pass {
    /// The origin answered: it is up.
    fn reached(mut self) {
        self.probe = false;
        let circuit = &self.circuit;
        if !circuit.troubled.load(Ordering::Acquire) {
            return;
        }
        let mut state = circuit.state.lock().expect("circuit lock");
        if state.gone.is_some() {
            return; // too late: its files have ended
        }
        *state = CircuitState::default();
        circuit.troubled.store(false, Ordering::Release);
        drop(state);
        circuit.changed.notify_waiters();
    }

    /// No connection could be made (`error` names the origin or the proxy). True when the origin is down now, so
    /// the request waits in `pass`; false while it only failed a few times (the request pauses briefly).
    fn failed(mut self, error: &Error, context: &Context) -> bool {
        let probe = std::mem::take(&mut self.probe);
        let circuit = &self.circuit;
        let mut state = circuit.state.lock().expect("circuit lock");
        circuit.troubled.store(true, Ordering::Release);
        state.failures += 1;
        let failures = state.failures;
        let now = Instant::now();
        if probe {
            state.probing = false;
        }
        match &mut state.down {
            None if failures < CIRCUIT_THRESHOLD => return false,
            None => state.down = Some(Down { since: now, probes: 0, next_probe: now + context.backoff(1, None) }),
            Some(down) if probe => {
                down.probes += 1;
                let outage = now.duration_since(down.since);
                if outage >= context.options.outage_budget {
                    state.gone = Some(format!(
                        "{error} (no connection for {:.1} s, {failures} attempts in a row)",
                        outage.as_secs_f64()
                    ));
                } else {
                    down.next_probe = now + context.backoff(down.probes + 1, None);
                }
            }
            Some(_) => {}
        }
        drop(state);
        circuit.changed.notify_waiters();
        true
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.probe {
            self.circuit.state.lock().expect("circuit lock").probing = false;
            self.circuit.changed.notify_waiters();
        }
    }
}

/// A URL's scheme and authority as written: the key of its origin's circuit (no parsing per request).
fn origin_key(url: &str) -> &str {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let end = url[authority..].find(['/', '?', '#']).map_or(url.len(), |i| authority + i);
    &url[..end]
}

/// Why one attempt at a file ended without placing it.
#[derive(Debug)]
enum FileError {
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
    async fn unless_stopped<T>(&self, future: impl Future<Output = T>) -> Result<T, FileError> {
        tokio::select! {
            biased;
            () = self.stop.wait() => Err(FileError::Stop),
            value = future => Ok(value),
        }
    }

    /// Takes permits at once when they are free (the usual case, and the cheap one), else waits for them unless the
    /// download stops first.
    async fn acquire(&self, semaphore: &Arc<Semaphore>, permits: u32) -> Result<OwnedSemaphorePermit, FileError> {
        if self.stop.is_set() {
            return Err(FileError::Stop);
        }
        if let Ok(permit) = semaphore.clone().try_acquire_many_owned(permits) {
            return Ok(permit);
        }
        Ok(self.unless_stopped(semaphore.clone().acquire_many_owned(permits)).await?.expect("never closed"))
    }

    /// A local I/O failure stops everything: the next file would meet the same full disk or missing permission.
    fn fatal(&self, error: Error) -> FileError {
        self.stop.trigger(error);
        FileError::Stop
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(RETRY_AFTER_MAX);
        }
        let exponential = self.options.backoff_base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let capped = exponential.min(self.options.backoff_max);
        // Full jitter in the upper half: retries of many connections do not hit the server in step.
        capped.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// The circuit of a URL's origin, shared by every file from it.
    fn circuit(&self, url: &str) -> Arc<Circuit> {
        let key = origin_key(url);
        let mut circuits = self.circuits.lock().expect("circuit map lock");
        if let Some(circuit) = circuits.get(key) {
            return circuit.clone();
        }
        let circuit = Arc::new(Circuit::default());
        circuits.insert(key.to_owned(), circuit.clone());
        circuit
    }

    fn paths(&self, job: &DownloadJob) -> Paths {
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

struct Paths {
    part: PathBuf,
    journal: PathBuf,
    final_path: PathBuf,
}

impl Paths {
    fn discard(&self) {
        let _ = fs::remove_file(&self.part);
        let _ = fs::remove_file(&self.journal);
    }
}

async fn download_file(context: &Arc<Context>, job: DownloadJob) -> FileOutcome {
    let paths = context.paths(&job);
    if let Some(size) = job.size
        && fs::metadata(&paths.final_path).is_ok_and(|m| m.is_file() && m.len() == size)
    {
        context.progress.add_bytes(size);
        context.progress.file_done();
        return FileOutcome::Skipped { path: paths.final_path };
    }
    let label = job.label();
    if let Some(reason) = context.circuit(&job.url).gone() {
        context.progress.file_failed();
        return FileOutcome::Failed { reason: format!("{label}: {reason}") };
    }
    let mut fresh = false;
    loop {
        match attempt_file(context, &job, &paths, fresh).await {
            Ok(Placed { size, reused }) => {
                // In place once the placer's batch is: `download` returns only after that.
                return FileOutcome::Placed {
                    path: paths.final_path,
                    bytes_fetched: size - reused,
                    bytes_reused: reused,
                };
            }
            Err(FileError::Restart(_)) if !fresh => {
                // Nothing of this attempt can be trusted: start over on connections not used before.
                paths.discard();
                fresh = true;
            }
            Err(FileError::Restart(reason) | FileError::Failed(reason) | FileError::Unreachable(reason)) => {
                paths.discard_if_useless();
                context.progress.file_failed();
                return FileOutcome::Failed { reason: format!("{label}: {reason}") };
            }
            Err(FileError::Stop) => {
                return FileOutcome::Failed { reason: format!("{label}: stopped") };
            }
        }
    }
}

impl Paths {
    /// After a final failure a partial file without a journal cannot be resumed; one with a journal keeps its
    /// verified chunks for the next run.
    fn discard_if_useless(&self) {
        if !self.journal.exists() {
            let _ = fs::remove_file(&self.part);
        }
    }
}

/// A placed file: its size and the bytes of it kept from an earlier run.
struct Placed {
    size: u64,
    reused: u64,
}

/// One attempt at a file.
async fn attempt_file(
    context: &Arc<Context>,
    job: &DownloadJob,
    paths: &Paths,
    fresh: bool,
) -> Result<Placed, FileError> {
    let chunk_size = context.options.chunk_size;
    let mut attempts = 0;
    if job.size.is_some_and(|size| size <= chunk_size) {
        let slot = request(context, job, None, fresh, &mut attempts).await?;
        return whole_body(context, job, paths, slot, fresh, attempts).await;
    }
    // A chunked download, or a file of unknown size: resume what an earlier run verified, then probe with the first
    // missing chunk, whose answer says whether the server honours Range, the file's size and its validator.
    let leftover = !fresh && paths.part.file_name().is_some_and(|name| context.leftovers.contains(name));
    let resumed = if leftover {
        let part = paths.part.clone();
        let journal = paths.journal.clone();
        let expected_size = job.size;
        tokio::task::spawn_blocking(move || load_journal(&part, &journal, expected_size, chunk_size))
            .await
            .expect("journal loading does not panic")
    } else {
        None
    };
    if leftover && resumed.is_none() {
        paths.discard();
    }
    // `upmirror fetch` learns a size from the server; a journal remembers the size it learned.
    let known_size = job.size.or(resumed.as_ref().map(|r| r.size));
    if job.size.is_none()
        && let Some(size) = known_size
    {
        context.progress.add_total(0, size);
    }
    let first_missing = match &resumed {
        Some(r) => r.done.iter().position(|done| !done),
        None => Some(0),
    };
    let Some(first_missing) = first_missing else {
        let resumed = resumed.expect("all chunks done implies a journal");
        let size = resumed.size;
        return finish_chunked(context, job, paths, size, resumed, None, fresh).await;
    };
    let chunk_start = first_missing as u64 * chunk_size;
    let end = known_size.map_or(chunk_start + chunk_size, |size| size.min(chunk_start + chunk_size));
    let start = chunk_start + resumed.as_ref().and_then(|r| r.kept.get(&first_missing)).map_or(0, |kept| kept.length);
    let probe = request(context, job, Some((start, end)), fresh, &mut attempts).await?;
    let status = probe.response.status();
    if status == StatusCode::RANGE_NOT_SATISFIABLE && job.size.is_none() {
        // An empty file: nginx refuses any range of it.
        drop(probe);
        let slot = request(context, job, None, fresh, &mut attempts).await?;
        return whole_body(context, job, paths, slot, fresh, attempts).await;
    }
    if status == StatusCode::OK {
        // The server ignores Range: one stream of the whole body, nothing resumable.
        paths.discard();
        return whole_body(context, job, paths, probe, fresh, attempts).await;
    }
    let range = parse_content_range(probe.response.headers())
        .ok_or_else(|| FileError::Failed("a 206 answer without a valid Content-Range".into()))?;
    if range.start != start {
        return Err(FileError::Failed(format!("asked for bytes from {start}, the server sent from {}", range.start)));
    }
    if let Some(size) = job.size
        && range.total != size
    {
        return Err(FileError::Failed(format!(
            "the server has {} bytes where {size} were expected (changed upstream or wrong metadata)",
            range.total
        )));
    }
    let size = range.total;
    let validator = validator_of(probe.response.headers());
    if known_size.is_none() {
        context.progress.add_total(0, size);
        if size <= chunk_size {
            // The probe was the whole file.
            return whole_body(context, job, paths, probe, fresh, attempts).await;
        }
    }
    let resumed = match resumed {
        Some(r) if r.validator == validator && r.size == size => r,
        Some(_) => return Err(FileError::Restart("the file changed upstream since the interrupted run".into())),
        None => {
            let part = paths.part.clone();
            let journal = paths.journal.clone();
            let header_validator = validator.clone();
            tokio::task::spawn_blocking(move || start_journal(&part, &journal, size, chunk_size, &header_validator))
                .await
                .expect("journal creation does not panic")
                .map_err(|e| context.fatal(e))?
        }
    };
    finish_chunked(context, job, paths, size, resumed, Some((first_missing, probe)), fresh).await
}

/// Fetches the missing chunks of a file (the first one's answer already in hand, if any), with a hasher reading the
/// finished prefix behind them, then verifies and places the file. Returns the bytes reused.
async fn finish_chunked(
    context: &Arc<Context>,
    job: &DownloadJob,
    paths: &Paths,
    size: u64,
    resumed: Journal,
    probe: Option<(usize, RequestSlot)>,
    fresh: bool,
) -> Result<Placed, FileError> {
    let chunk_size = context.options.chunk_size;
    let finished: u64 =
        resumed.done.iter().enumerate().filter(|(_, done)| **done).map(|(i, _)| chunk_len(size, chunk_size, i)).sum();
    let reused = finished + resumed.kept.values().map(|kept| kept.length).sum::<u64>();
    if reused > 0 {
        context.bytes_reused.fetch_add(reused, Ordering::Relaxed);
        context.progress.add_bytes(reused);
    }
    let file =
        OpenOptions::new().read(true).write(true).open(&paths.part).at(&paths.part).map_err(|e| context.fatal(e))?;
    let journal =
        OpenOptions::new().append(true).open(&paths.journal).at(&paths.journal).map_err(|e| context.fatal(e))?;
    let missing: Vec<usize> = resumed.done.iter().enumerate().filter(|(_, d)| !**d).map(|(i, _)| i).collect();
    let chunked = Arc::new(ChunkedFile {
        fresh,
        part_path: paths.part.clone(),
        size,
        chunk_size,
        validator: resumed.validator,
        file,
        journal: Mutex::new(journal),
        cursor: Mutex::new(CursorState { done: resumed.done, aborted: false }),
        advanced: Condvar::new(),
    });
    let hasher = {
        let chunked = chunked.clone();
        let algorithms = job.expected.algorithms();
        tokio::task::spawn_blocking(move || hash_behind(&chunked, algorithms))
    };
    let fetched = fetch_chunks(context, job, &chunked, missing, probe, resumed.kept).await;
    if fetched.is_err() {
        chunked.abort_hashing();
    }
    let digests = hasher.await.expect("the hasher does not panic");
    fetched?;
    let digests = digests.map_err(|e| context.fatal(e))?;
    drop(chunked);
    verify_and_place(context, job, paths, digests.as_ref(), true).await?;
    Ok(Placed { size, reused })
}

async fn fetch_chunks(
    context: &Arc<Context>,
    job: &DownloadJob,
    chunked: &Arc<ChunkedFile>,
    missing: Vec<usize>,
    mut probe: Option<(usize, RequestSlot)>,
    mut kept: HashMap<usize, KeptPrefix>,
) -> Result<(), FileError> {
    // Each chunk is its own task, so the runtime spreads the connections over its threads; the semaphores (taken in
    // order, fairly) decide how many run at once.
    let mut tasks = JoinSet::new();
    for index in missing {
        let first = match probe.take() {
            Some((probe_index, slot)) if probe_index == index => Some(slot),
            other => {
                probe = other;
                None
            }
        };
        let chunked = chunked.clone();
        let context = context.clone();
        let job = job.clone();
        let prefix = kept.remove(&index);
        tasks.spawn(async move { fetch_chunk(&context, &job, &chunked, index, first, prefix).await });
    }
    let mut outcome = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let result = joined.unwrap_or(Err(FileError::Stop));
        if let Err(error) = result {
            tasks.abort_all();
            outcome = match (outcome, error) {
                (Err(FileError::Stop), _) | (_, FileError::Stop) => Err(FileError::Stop),
                (Err(FileError::Restart(r)), _) | (_, FileError::Restart(r)) => Err(FileError::Restart(r)),
                (_, failed) => Err(failed),
            };
        }
    }
    outcome
}

async fn fetch_chunk(
    context: &Context,
    job: &DownloadJob,
    chunked: &ChunkedFile,
    index: usize,
    mut first: Option<RequestSlot>,
    kept: Option<KeptPrefix>,
) -> Result<(), FileError> {
    let start = index as u64 * chunked.chunk_size;
    let end = (start + chunked.chunk_size).min(chunked.size);
    // A prefix verified from an interrupted run is kept: its hash goes on from where it stopped.
    let (mut offset, mut chunk_hasher) = match kept {
        Some(prefix) => (start + prefix.length, prefix.hasher),
        None => (start, Xxh3::new()),
    };
    // Where the journal's latest record of this chunk ends.
    let mut journaled = offset;
    let mut attempts = 0;
    loop {
        let slot = match first.take() {
            Some(slot) => slot,
            None => request(context, job, Some((offset, end)), chunked.fresh, &mut attempts).await?,
        };
        let headers = slot.response.headers();
        if slot.response.status() != StatusCode::PARTIAL_CONTENT {
            return Err(FileError::Restart("the server stopped honouring Range requests".into()));
        }
        if validator_of(headers) != chunked.validator {
            return Err(FileError::Restart("the file changed upstream during the download".into()));
        }
        let range = parse_content_range(headers);
        let range_ok =
            range.is_some_and(|r| r.start == offset && r.total == chunked.size && r.end_inclusive + 1 == end);
        let failure = if range_ok {
            match stream_body(context, slot, offset, end, |data, at| {
                chunked.file.write_all_at(data, at).at(&chunked.part_path)?;
                chunk_hasher.update(data);
                let written = at + data.len() as u64;
                if written < end && written - journaled >= PROGRESS_STEP {
                    chunked.journal(index, written - start, chunk_hasher.digest())?;
                    journaled = written;
                }
                Ok(())
            })
            .await
            {
                Ok(_) => None,
                Err(StreamFailure::Local(error)) => return Err(context.fatal(error)),
                Err(StreamFailure::Stopped) => return Err(FileError::Stop),
                Err(StreamFailure::Transfer { message, written }) => {
                    // Keep what arrived: the retry asks for the rest of the chunk only.
                    offset += written;
                    Some(message)
                }
            }
        } else {
            Some(format!("the server answered a different range than bytes {offset}-{}", end - 1))
        };
        let Some(message) = failure else { break };
        attempts += 1;
        if attempts > context.options.retries {
            return Err(FileError::Failed(message));
        }
        context.unless_stopped(tokio::time::sleep(context.backoff(attempts, None))).await?;
    }
    chunked.chunk_finished(index, chunk_hasher.digest()).map_err(|e| context.fatal(e))?;
    Ok(())
}

/// Streams one response body (no Range, or a probe that covered the whole file) into a fresh partial file, hashing
/// it in-stream, then verifies and places it. Transient failures start the body over.
async fn whole_body(
    context: &Context,
    job: &DownloadJob,
    paths: &Paths,
    first: RequestSlot,
    fresh: bool,
    mut attempts: u32,
) -> Result<Placed, FileError> {
    let mut slot = Some(first);
    loop {
        let response = match slot.take() {
            Some(s) => s,
            None => request(context, job, None, fresh, &mut attempts).await?,
        };
        let headers = response.response.headers();
        let announced = if response.response.status() == StatusCode::PARTIAL_CONTENT {
            parse_content_range(headers).map(|r| r.total)
        } else {
            header_u64(headers, CONTENT_LENGTH)
        };
        if let (Some(size), Some(announced)) = (job.size, announced)
            && announced != size
        {
            let message = format!("the server announces {announced} bytes where {size} were expected");
            attempts += 1;
            if attempts > context.options.retries {
                return Err(FileError::Failed(message));
            }
            context.unless_stopped(tokio::time::sleep(context.backoff(attempts, None))).await?;
            continue;
        }
        let expected_len = job.size.or(announced);
        let mut file = File::create(&paths.part).at(&paths.part).map_err(|e| context.fatal(e))?;
        let algorithms = job.expected.algorithms();
        let mut hasher = (!algorithms.is_empty()).then(|| MultiHasher::new(algorithms).expect("a non-empty set"));
        let end = expected_len.unwrap_or(u64::MAX);
        let streamed = stream_body(context, response, 0, end, |data, _| {
            file.write_all(data).at(&paths.part)?;
            if let Some(h) = hasher.as_mut() {
                h.update(data);
            }
            Ok(())
        })
        .await;
        let failure = match streamed {
            Ok(length) if expected_len.is_none_or(|e| e == length) => {
                drop(file);
                let digests = hasher.map(MultiHasher::finalize);
                verify_and_place(context, job, paths, digests.as_ref(), false).await?;
                return Ok(Placed { size: length, reused: 0 });
            }
            Ok(length) => Some(format!("the body ended after {length} of {} bytes", expected_len.unwrap_or(0))),
            Err(StreamFailure::Local(error)) => return Err(context.fatal(error)),
            Err(StreamFailure::Stopped) => return Err(FileError::Stop),
            Err(StreamFailure::Transfer { message, .. }) => Some(message),
        };
        let Some(message) = failure else { unreachable!("success returns above") };
        attempts += 1;
        if attempts > context.options.retries {
            return Err(FileError::Failed(message));
        }
        context.unless_stopped(tokio::time::sleep(context.backoff(attempts, None))).await?;
    }
}

async fn verify_and_place(
    context: &Context,
    job: &DownloadJob,
    paths: &Paths,
    digests: Option<&Digests>,
    chunked: bool,
) -> Result<(), FileError> {
    if let Some(digests) = digests
        && let Err(Error::DigestMismatch { algorithm, expected, actual, .. }) =
            job.expected.check(&job.label(), digests)
    {
        return Err(FileError::Restart(format!("{algorithm} digest mismatch: expected {expected}, got {actual}")));
    }
    let indexed = match &job.target {
        JobTarget::Content(name) => Some((name.relative_path(), digests.and_then(|d| d.blake3))),
        JobTarget::File(_) => None,
    };
    let verified = Verified {
        part: paths.part.clone(),
        final_path: paths.final_path.clone(),
        journal: chunked.then(|| paths.journal.clone()),
        indexed,
    };
    if context.placer.place(verified).await { Ok(()) } else { Err(FileError::Stop) }
}

/// A response with the connection and in-flight budget it holds.
struct RequestSlot {
    response: StreamingResponse,
    _connection: OwnedSemaphorePermit,
    _budget: OwnedSemaphorePermit,
}

/// Sends a GET (with a Range when given) and retries transient failures with backoff; returns a 200, 206 or 416
/// answer. `attempts` counts retries across the calls of one chunk or file.
async fn request(
    context: &Context,
    job: &DownloadJob,
    range: Option<(u64, u64)>,
    fresh: bool,
    attempts: &mut u32,
) -> Result<RequestSlot, FileError> {
    let budget_bytes = range.map_or(job.size.unwrap_or(context.options.chunk_size), |(start, end)| end - start);
    let units = (budget_bytes.div_ceil(1024) as usize).clamp(1, context.in_flight_units);
    let circuit = context.circuit(&job.url);
    loop {
        // While the origin is down, files wait here holding no connection and no budget.
        let pass = circuit.pass(context).await?;
        let budget = context.acquire(&context.in_flight, units as u32).await?;
        let connection = context.acquire(&context.connections, 1).await?;
        let mut headers = HeaderMap::new();
        if let Some((start, end)) = range {
            let value = HeaderValue::from_str(&format!("bytes={start}-{}", end - 1)).expect("a range is ASCII");
            headers.insert(RANGE, value);
        }
        let sent = context.unless_stopped(context.client.send(Method::GET, &job.url, headers, None, fresh)).await?;
        let (message, retry_after) = match sent {
            Ok(response) => {
                pass.reached();
                let status = response.status();
                if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
                    return Ok(RequestSlot { response, _connection: connection, _budget: budget });
                }
                let retryable = status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT;
                let message = format!("HTTP {status}");
                if !retryable {
                    return Err(FileError::Failed(message));
                }
                (message, retry_after(response.headers()))
            }
            Err(error @ Error::Unreachable { .. }) => {
                // Not this file's failure: the origin's circuit decides when to try again and when to give up.
                drop(connection);
                drop(budget);
                if !pass.failed(&error, context) {
                    context.unless_stopped(tokio::time::sleep(context.backoff(1, None))).await?;
                }
                continue;
            }
            Err(Error::Http { message, .. }) => (message, None),
            Err(other @ (Error::Tls { .. } | Error::ProxyAuthentication(_) | Error::InvalidInput(_))) => {
                return Err(FileError::Failed(other.to_string()));
            }
            Err(other) => return Err(context.fatal(other)),
        };
        drop(connection);
        drop(budget);
        *attempts += 1;
        if *attempts > context.options.retries {
            return Err(FileError::Failed(format!("{message} (after {} retries)", context.options.retries)));
        }
        context.unless_stopped(tokio::time::sleep(context.backoff(*attempts, retry_after))).await?;
    }
}

enum StreamFailure {
    /// The network failed after `written` bytes reached the file; worth a retry.
    Transfer {
        message: String,
        written: u64,
    },
    /// Writing locally failed: the whole download stops.
    Local(Error),
    Stopped,
}

/// Reads a body into `sink(data, offset)` in writes of up to `WRITE_BUFFER` bytes, from `start` up to `end`
/// (exclusive; `u64::MAX` when unknown). Returns the bytes written.
async fn stream_body(
    context: &Context,
    slot: RequestSlot,
    start: u64,
    end: u64,
    mut sink: impl FnMut(&[u8], u64) -> Result<()>,
) -> Result<u64, StreamFailure> {
    let mut response = slot.response;
    // Allocated on first use, for the body when it is smaller than a gathered write: most small bodies arrive in
    // one read and are written without it.
    let capacity = usize::try_from(end - start).map_or(WRITE_BUFFER, |n| n.min(WRITE_BUFFER));
    let mut buffer: Vec<u8> = Vec::new();
    let mut written = 0u64;
    // Writes bytes at the current offset and counts them; `flush!` empties the gathering buffer through it.
    let mut emit = |data: &[u8], written: &mut u64| -> Result<(), StreamFailure> {
        sink(data, start + *written).map_err(StreamFailure::Local)?;
        *written += data.len() as u64;
        context.progress.add_bytes(data.len() as u64);
        context.bytes_transferred.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    };
    macro_rules! flush {
        () => {
            if !buffer.is_empty() {
                emit(&buffer, &mut written)?;
                buffer.clear();
            }
        };
    }
    loop {
        let next = tokio::select! {
            biased;
            () = context.stop.wait() => {
                flush!();
                return Err(StreamFailure::Stopped);
            }
            next = response.chunk(&context.client) => next,
        };
        match next {
            Ok(Some(data)) => {
                let received = written + buffer.len() as u64 + data.len() as u64;
                if start + received > end {
                    flush!();
                    return Err(StreamFailure::Transfer {
                        message: "the server sent more bytes than asked for".into(),
                        written,
                    });
                }
                if buffer.is_empty() && (data.len() >= DIRECT_WRITE_MIN || start + received == end) {
                    // A large read, or the whole rest of the body (most small files arrive in one read), goes to
                    // the file as it is: gathering it first would only add a copy.
                    emit(&data, &mut written)?;
                    continue;
                }
                if buffer.capacity() == 0 {
                    buffer.reserve_exact(capacity);
                }
                buffer.extend_from_slice(&data);
                if buffer.len() >= WRITE_BUFFER {
                    flush!();
                }
            }
            Ok(None) => {
                flush!();
                if end != u64::MAX && start + written < end {
                    return Err(StreamFailure::Transfer {
                        message: format!("the connection closed after {} of {} bytes", written, end - start),
                        written,
                    });
                }
                return Ok(written);
            }
            Err(error) => {
                flush!();
                let message = match error {
                    Error::Http { message, .. } => message,
                    other => other.to_string(),
                };
                return Err(StreamFailure::Transfer { message, written });
            }
        }
    }
}

/// A chunked file being fetched: the partial file, its journal, and which chunks are finished (for the hasher).
struct ChunkedFile {
    /// Retries use connections not used before (this attempt follows a corrupted one).
    fresh: bool,
    part_path: PathBuf,
    size: u64,
    chunk_size: u64,
    validator: String,
    file: File,
    journal: Mutex<File>,
    cursor: Mutex<CursorState>,
    advanced: Condvar,
}

struct CursorState {
    done: Vec<bool>,
    aborted: bool,
}

impl ChunkedFile {
    /// Appends a record: the first `length` bytes of chunk `index` were written and hash to `xxh3`. Written after
    /// the bytes, and trusted on resume only when the bytes still hash so.
    fn journal(&self, index: usize, length: u64, xxh3: u64) -> Result<()> {
        let mut record = [0u8; JOURNAL_RECORD];
        record[..8].copy_from_slice(&(index as u64).to_le_bytes());
        record[8..16].copy_from_slice(&length.to_le_bytes());
        record[16..].copy_from_slice(&xxh3.to_le_bytes());
        self.journal.lock().expect("journal lock").write_all(&record).at(&self.part_path)
    }

    fn chunk_finished(&self, index: usize, xxh3: u64) -> Result<()> {
        self.journal(index, chunk_len(self.size, self.chunk_size, index), xxh3)?;
        self.cursor.lock().expect("cursor lock").done[index] = true;
        self.advanced.notify_all();
        Ok(())
    }

    fn abort_hashing(&self) {
        self.cursor.lock().expect("cursor lock").aborted = true;
        self.advanced.notify_all();
    }
}

/// Hashes a chunked file in order, each chunk as soon as it and all before it are finished (read back from the page
/// cache). Returns `None` when no digest was asked for, or when the download was aborted.
fn hash_behind(file: &ChunkedFile, algorithms: AlgorithmSet) -> Result<Option<Digests>> {
    if algorithms.is_empty() {
        return Ok(None);
    }
    let mut hasher = MultiHasher::new(algorithms)?;
    let mut buffer = vec![0u8; HASH_READ];
    let chunks = file.size.div_ceil(file.chunk_size) as usize;
    for index in 0..chunks {
        {
            let mut state = file.cursor.lock().expect("cursor lock");
            while !state.done[index] && !state.aborted {
                state = file.advanced.wait(state).expect("cursor lock");
            }
            if state.aborted {
                return Ok(None);
            }
        }
        let start = index as u64 * file.chunk_size;
        let end = (start + file.chunk_size).min(file.size);
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(HASH_READ);
            file.file.read_exact_at(&mut buffer[..n], at).at(&file.part_path)?;
            hasher.update(&buffer[..n]);
            at += n as u64;
        }
    }
    Ok(Some(hasher.finalize()))
}

/// The state an interrupted run left: the validator the server gave then, which chunks were verified, and the
/// verified beginnings of chunks that were under way.
struct Journal {
    size: u64,
    validator: String,
    done: Vec<bool>,
    kept: HashMap<usize, KeptPrefix>,
}

/// The first `length` bytes of an unfinished chunk, verified, and the chunk's XXH3 state after them.
struct KeptPrefix {
    length: u64,
    hasher: Xxh3,
}

fn chunk_len(size: u64, chunk_size: u64, index: usize) -> u64 {
    let start = index as u64 * chunk_size;
    (start + chunk_size).min(size) - start
}

/// Creates the partial file at its full size (reserving the space, so a full disk shows before any transfer) and
/// the journal's header.
fn start_journal(part: &Path, journal: &Path, size: u64, chunk_size: u64, validator: &str) -> Result<Journal> {
    let file = File::create(part).at(part)?;
    reserve(&file, size).at(part)?;
    let mut header = Vec::with_capacity(32 + validator.len());
    header.extend_from_slice(JOURNAL_MAGIC);
    header.extend_from_slice(&size.to_le_bytes());
    header.extend_from_slice(&chunk_size.to_le_bytes());
    let validator = &validator.as_bytes()[..validator.len().min(1024)];
    header.extend_from_slice(&(validator.len() as u64).to_le_bytes());
    header.extend_from_slice(validator);
    fs::write(journal, header).at(journal)?;
    Ok(Journal {
        size,
        validator: String::from_utf8_lossy(validator).into_owned(),
        done: vec![false; size.div_ceil(chunk_size) as usize],
        kept: HashMap::new(),
    })
}

/// Allocates the file's blocks (posix_fallocate), falling back to a sparse length where the filesystem cannot.
fn reserve(file: &File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let Ok(length) = libc::off_t::try_from(size) else { return file.set_len(size) };
    // SAFETY: a valid open file descriptor and a non-negative length.
    let status = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, length) };
    match status {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Reads a journal left by an interrupted run and keeps the chunks whose bytes still match their XXH3. `None` when
/// there is none, or it belongs to another size (when the size is known) or chunk size: the file starts over.
fn load_journal(part: &Path, journal: &Path, expected_size: Option<u64>, chunk_size: u64) -> Option<Journal> {
    let mut bytes = Vec::new();
    File::open(journal).ok()?.read_to_end(&mut bytes).ok()?;
    let field = |at: usize| bytes.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let size = field(8)?;
    if bytes.get(..8)? != JOURNAL_MAGIC || expected_size.is_some_and(|e| e != size) || field(16)? != chunk_size {
        return None;
    }
    let file = File::open(part).ok()?;
    if file.metadata().ok()?.len() != size {
        return None;
    }
    let validator_len = usize::try_from(field(24)?).ok()?;
    let validator = String::from_utf8_lossy(bytes.get(32..32 + validator_len)?).into_owned();
    let chunks = size.div_ceil(chunk_size) as usize;
    let mut done = vec![false; chunks];
    // Progress within chunks, as (length, xxh3) by chunk: checked once the finished chunks are known.
    let mut progress: HashMap<usize, Vec<(u64, u64)>> = HashMap::new();
    let mut buffer = vec![0u8; chunk_size as usize];
    for record in bytes[32 + validator_len..].chunks_exact(JOURNAL_RECORD) {
        let value = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().expect("8 bytes"));
        let (index, length, recorded) = (usize::try_from(value(0)).ok()?, value(8), value(16));
        if index >= chunks || done[index] || length == 0 || length > chunk_len(size, chunk_size, index) {
            continue;
        }
        if length < chunk_len(size, chunk_size, index) {
            progress.entry(index).or_default().push((length, recorded));
            continue;
        }
        let length = length as usize;
        if file.read_exact_at(&mut buffer[..length], index as u64 * chunk_size).is_ok()
            && xxh3_64(&buffer[..length]) == recorded
        {
            done[index] = true;
        }
    }
    // Of an unfinished chunk, the longest beginning whose bytes still hash as recorded is kept.
    let mut kept = HashMap::new();
    for (index, mut records) in progress.into_iter().filter(|(index, _)| !done[*index]) {
        records.sort_unstable();
        let longest = records.last().map_or(0, |(length, _)| *length as usize);
        if file.read_exact_at(&mut buffer[..longest], index as u64 * chunk_size).is_err() {
            continue;
        }
        let mut hasher = Xxh3::new();
        let mut hashed = 0;
        for (length, recorded) in records {
            hasher.update(&buffer[hashed..length as usize]);
            hashed = length as usize;
            if hasher.digest() == recorded {
                kept.insert(index, KeptPrefix { length, hasher: hasher.clone() });
            }
        }
    }
    Some(Journal { size, validator, done, kept })
}

struct ContentRange {
    start: u64,
    end_inclusive: u64,
    total: u64,
}

/// `Content-Range: bytes START-END/TOTAL`.
fn parse_content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let range = ContentRange {
        start: start.trim().parse().ok()?,
        end_inclusive: end.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
    };
    (range.start <= range.end_inclusive && range.end_inclusive < range.total).then_some(range)
}

fn header_u64(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// What identifies this version of the file upstream: its ETag, else its Last-Modified date.
fn validator_of(headers: &HeaderMap) -> String {
    headers
        .get(ETAG)
        .or_else(|| headers.get(LAST_MODIFIED))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Retry-After in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_that_could_escape_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", ".partial", "a\u{7f}"] {
            assert!(JobTarget::file(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(JobTarget::file_from_url("http://h/x/a%20b.cab?q=1").unwrap(), JobTarget::File("a b.cab".into()));
        assert!(JobTarget::file_from_url("http://h/x/..%2F..%2Fetc").is_err());
        assert!(JobTarget::file_from_url("http://h/").is_err());
    }

    #[test]
    fn strongest_digest_and_sha1_are_checked() {
        let expected = ExpectedDigests { sha1: Some([1; 20]), sha256: Some([2; 32]), blake3: Some([3; 32]) };
        let set = expected.algorithms();
        assert!(set.contains(Algorithm::Blake3) && set.contains(Algorithm::Sha1) && !set.contains(Algorithm::Sha256));
    }

    #[test]
    fn content_ranges_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 10-19/100"));
        let range = parse_content_range(&headers).unwrap();
        assert_eq!((range.start, range.end_inclusive, range.total), (10, 19, 100));
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 10-100/100"));
        assert!(parse_content_range(&headers).is_none());
    }

    #[test]
    fn journal_keeps_only_chunks_whose_bytes_match() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        let journal = dir.path().join("f.part.journal");
        let chunk = 64 << 10;
        let size = chunk * 3 - 5;
        start_journal(&part, &journal, size, chunk, "\"etag\"").unwrap();
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let file = OpenOptions::new().write(true).open(&part).unwrap();
        file.write_all_at(&data, 0).unwrap();
        let mut records = Vec::new();
        let mut record = |index: u64, length: u64| {
            let start = (index * chunk) as usize;
            records.extend_from_slice(&index.to_le_bytes());
            records.extend_from_slice(&length.to_le_bytes());
            records.extend_from_slice(&xxh3_64(&data[start..start + length as usize]).to_le_bytes());
        };
        // Chunk 2 was under way: 100 and 300 bytes of it recorded, then a record of a longer beginning that was
        // never written (after a power loss, a record may reach the disk and its bytes not).
        record(2, 100);
        record(2, 300);
        record(0, chunk);
        record(1, chunk);
        record(2, 400);
        record(2, chunk - 5);
        let torn = records.len() - JOURNAL_RECORD / 2;
        OpenOptions::new().append(true).open(&journal).unwrap().write_all(&records[..torn]).unwrap();
        // Chunk 1's bytes are damaged after their record was written; so are chunk 2's bytes after the 300th.
        file.write_all_at(b"X", chunk + 7).unwrap();
        file.write_all_at(b"Y", 2 * chunk + 350).unwrap();
        let loaded = load_journal(&part, &journal, None, chunk).unwrap();
        assert_eq!(loaded.size, size);
        assert_eq!(loaded.validator, "\"etag\"");
        assert_eq!(loaded.done, vec![true, false, false]);
        assert_eq!(loaded.kept.keys().collect::<Vec<_>>(), vec![&2]);
        let prefix = &loaded.kept[&2];
        assert_eq!(prefix.length, 300);
        let mut whole = prefix.hasher.clone();
        whole.update(&data[(2 * chunk + 300) as usize..]);
        assert_eq!(whole.digest(), xxh3_64(&data[(2 * chunk) as usize..]));
        assert!(load_journal(&part, &journal, Some(size), chunk * 2).is_none());
        assert!(load_journal(&part, &journal, Some(size + 1), chunk).is_none());
    }
}
