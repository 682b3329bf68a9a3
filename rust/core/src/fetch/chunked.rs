//! Chunked transfers: a file's missing Range chunks fetched as tasks of their own, written in place with their
//! progress journaled, and hashed: when BLAKE3 is the only digest asked for and chunks are a power of two long, each
//! chunk is hashed as a BLAKE3 subtree by the task that streams it and the subtrees are merged at the end (no read
//! back, the hashing spread over the connections); otherwise in order right behind the writers (read back from the
//! page cache).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use blake3::hazmat::{ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root};
use reqwest::StatusCode;
use tokio::task::JoinSet;
use xxhash_rust::xxh3::Xxh3;

use super::file::{Placed, RequestSlot, request, verify_and_place};
use super::job::DownloadJob;
use super::journal::{JOURNAL_RECORD, Journal, KeptPrefix, chunk_len};
use super::schedule::{Context, FileError, Paths};
use super::transfer::{StreamFailure, WRITE_BUFFER, parse_content_range, stream_body, validator_of};
use crate::error::{IoResultExt, Result};
use crate::hash::{Algorithm, AlgorithmSet, Digests, MultiHasher};

/// The hasher behind chunked writers reads back this much at a time.
const HASH_READ: usize = 4 << 20;
/// A chunk under way journals its progress each time this many more bytes of it were written, so a killed run
/// loses less than this (plus the bytes gathered for a write) of each chunk that was under way.
const PROGRESS_STEP: u64 = WRITE_BUFFER as u64;

/// Fetches the missing chunks of a file (the first one's answer already in hand, if any), with a hasher reading the
/// finished prefix behind them, then verifies and places the file. Returns the bytes reused.
pub(super) async fn finish_chunked(
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
        context.progress.add_bytes(reused);
    }
    let file =
        OpenOptions::new().read(true).write(true).open(&paths.part).at(&paths.part).map_err(|e| context.fatal(e))?;
    let journal =
        OpenOptions::new().append(true).open(&paths.journal).at(&paths.journal).map_err(|e| context.fatal(e))?;
    let missing: Vec<usize> = resumed.done.iter().enumerate().filter(|(_, d)| !**d).map(|(i, _)| i).collect();
    let algorithms = job.expected.algorithms();
    let by_subtrees = hashed_by_subtrees(algorithms, chunk_size, size);
    let subtrees = by_subtrees.then(|| Mutex::new(vec![None; resumed.done.len()]));
    let chunked = Arc::new(ChunkedFile {
        subtrees,
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
    let hasher = (!by_subtrees).then(|| {
        let chunked = chunked.clone();
        tokio::task::spawn_blocking(move || hash_behind(&chunked, algorithms))
    });
    let fetched = fetch_chunks(context, job, &chunked, missing, probe, resumed.kept).await;
    if fetched.is_err() {
        chunked.abort_hashing();
    }
    let digests = match hasher {
        Some(hasher) => hasher.await.expect("the hasher does not panic"),
        None if fetched.is_ok() => {
            let chunked = chunked.clone();
            tokio::task::spawn_blocking(move || root_of_subtrees(&chunked)).await.expect("merging does not panic")
        }
        None => Ok(None),
    };
    fetched?;
    let digests = digests.map_err(|e| context.fatal(e))?;
    drop(chunked);
    verify_and_place(context, job, paths, digests.as_ref(), true).await?;
    // Counted once placed: bytes of an earlier run that a digest then refused were not reused.
    context.bytes_reused.fetch_add(reused, Ordering::Relaxed);
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
    // The chunk's BLAKE3 subtree, when the file is hashed so; a kept prefix is read back into it first.
    let mut subtree = chunked.subtrees.as_ref().map(|_| {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(start);
        hasher
    });
    if let Some(hasher) = subtree.as_mut()
        && offset > start
    {
        read_into(chunked, start, offset, &mut vec![0u8; HASH_READ.min((offset - start) as usize)], |data| {
            hasher.update(data);
        })
        .map_err(|e| context.fatal(e))?;
    }
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
                if let Some(hasher) = subtree.as_mut() {
                    hasher.update(data);
                }
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
        if attempts > context.options.retry.retries {
            return Err(FileError::Failed(message));
        }
        context.unless_stopped(tokio::time::sleep(context.backoff(attempts, None))).await?;
    }
    if let (Some(hasher), Some(subtrees)) = (subtree, chunked.subtrees.as_ref()) {
        subtrees.lock().expect("subtrees lock")[index] = Some(hasher.finalize_non_root());
    }
    chunked.chunk_finished(index, chunk_hasher.digest()).map_err(|e| context.fatal(e))?;
    Ok(())
}

/// A chunked file being fetched: the partial file, its journal, and which chunks are finished (for the hasher).
pub(super) struct ChunkedFile {
    /// The BLAKE3 subtree of each chunk once it is hashed, when the file is hashed by subtrees.
    pub(super) subtrees: Option<Mutex<Vec<Option<ChainingValue>>>>,
    /// Retries use connections not used before (this attempt follows a corrupted one).
    pub(super) fresh: bool,
    pub(super) part_path: PathBuf,
    pub(super) size: u64,
    pub(super) chunk_size: u64,
    pub(super) validator: String,
    pub(super) file: File,
    pub(super) journal: Mutex<File>,
    pub(super) cursor: Mutex<CursorState>,
    pub(super) advanced: Condvar,
}

pub(super) struct CursorState {
    pub(super) done: Vec<bool>,
    pub(super) aborted: bool,
}

impl ChunkedFile {
    /// Appends a record: the first `length` bytes of chunk `index` were written and hash to `xxh3`. Written after
    /// the bytes, and trusted on resume only when the bytes still hash so.
    pub(super) fn journal(&self, index: usize, length: u64, xxh3: u64) -> Result<()> {
        let mut record = [0u8; JOURNAL_RECORD];
        record[..8].copy_from_slice(&(index as u64).to_le_bytes());
        record[8..16].copy_from_slice(&length.to_le_bytes());
        record[16..].copy_from_slice(&xxh3.to_le_bytes());
        self.journal.lock().expect("journal lock").write_all(&record).at(&self.part_path)
    }

    pub(super) fn chunk_finished(&self, index: usize, xxh3: u64) -> Result<()> {
        self.journal(index, chunk_len(self.size, self.chunk_size, index), xxh3)?;
        self.cursor.lock().expect("cursor lock").done[index] = true;
        self.advanced.notify_all();
        Ok(())
    }

    pub(super) fn abort_hashing(&self) {
        self.cursor.lock().expect("cursor lock").aborted = true;
        self.advanced.notify_all();
    }
}

/// Whether a file is hashed by BLAKE3 subtrees: BLAKE3 is the only digest asked for, a chunk is a whole BLAKE3 subtree
/// (a power of two of at least one BLAKE3 chunk), and there are at least two chunks to merge.
fn hashed_by_subtrees(algorithms: AlgorithmSet, chunk_size: u64, size: u64) -> bool {
    algorithms.len() == 1
        && algorithms.contains(Algorithm::Blake3)
        && chunk_size.is_power_of_two()
        && chunk_size >= blake3::CHUNK_LEN as u64
        && size > chunk_size
}

/// Feeds bytes `start..end` of the partial file to `sink`, read back a `buffer` at a time.
fn read_into(file: &ChunkedFile, start: u64, end: u64, buffer: &mut [u8], mut sink: impl FnMut(&[u8])) -> Result<()> {
    let mut at = start;
    while at < end {
        let n = ((end - at) as usize).min(buffer.len());
        file.file.read_exact_at(&mut buffer[..n], at).at(&file.part_path)?;
        sink(&buffer[..n]);
        at += n as u64;
    }
    Ok(())
}

/// The file's BLAKE3 from its chunks' subtrees; chunks finished by an earlier run are read back for theirs.
fn root_of_subtrees(file: &ChunkedFile) -> Result<Option<Digests>> {
    let subtrees = file.subtrees.as_ref().expect("hashed by subtrees");
    let mut values = subtrees.lock().expect("subtrees lock").clone();
    let mut buffer = Vec::new();
    for (index, value) in values.iter_mut().enumerate() {
        if value.is_none() {
            let start = index as u64 * file.chunk_size;
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(start);
            buffer.resize(HASH_READ, 0);
            read_into(file, start, (start + file.chunk_size).min(file.size), &mut buffer, |data| {
                hasher.update(data);
            })?;
            *value = Some(hasher.finalize_non_root());
        }
    }
    let values: Vec<ChainingValue> = values.into_iter().map(|v| v.expect("every chunk hashed")).collect();
    let root = root_hash(&values, file.chunk_size, file.size);
    Ok(Some(Digests { size: file.size, blake3: Some(*root.as_bytes()), sha256: None, sha1: None, xxh3: None }))
}

/// The BLAKE3 of a file of `size` bytes (more than one chunk) from the subtrees of its chunks of `chunk_size`.
fn root_hash(values: &[ChainingValue], chunk_size: u64, size: u64) -> blake3::Hash {
    let left = left_subtree_len(size);
    merge_subtrees_root(
        &merged(values, chunk_size, 0, left),
        &merged(values, chunk_size, left, size - left),
        Mode::Hash,
    )
}

/// The chaining value of the BLAKE3 subtree over bytes `start..start + len`, built from the chunks' subtrees the way
/// BLAKE3 splits an input (the left part the largest power of two below the length).
fn merged(values: &[ChainingValue], chunk_size: u64, start: u64, len: u64) -> ChainingValue {
    if len <= chunk_size {
        return values[(start / chunk_size) as usize];
    }
    let left = left_subtree_len(len);
    merge_subtrees_non_root(
        &merged(values, chunk_size, start, left),
        &merged(values, chunk_size, start + left, len - left),
        Mode::Hash,
    )
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
        read_into(file, start, (start + file.chunk_size).min(file.size), &mut buffer, |data| hasher.update(data))?;
    }
    Ok(Some(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks hashed as subtrees on their own and merged give the BLAKE3 of the whole, for files that end on a chunk
    /// boundary, one byte past it, and anywhere in between.
    #[test]
    fn subtrees_merge_into_the_hash_of_the_whole() {
        let chunk_size = 64 << 10;
        let data: Vec<u8> = (0..(13 * chunk_size + 5)).map(|i| (i * 31 % 251) as u8).collect();
        for size in [
            chunk_size + 1,
            2 * chunk_size,
            3 * chunk_size - 7,
            8 * chunk_size,
            9 * chunk_size + 1,
            13 * chunk_size + 5,
        ] {
            let whole = &data[..size];
            let values: Vec<ChainingValue> = whole
                .chunks(chunk_size)
                .enumerate()
                .map(|(index, piece)| {
                    let mut hasher = blake3::Hasher::new();
                    hasher.set_input_offset((index * chunk_size) as u64);
                    hasher.update(piece);
                    hasher.finalize_non_root()
                })
                .collect();
            assert_eq!(root_hash(&values, chunk_size as u64, size as u64), blake3::hash(whole), "size {size}");
        }
    }

    #[test]
    fn only_blake3_alone_with_power_of_two_chunks_is_hashed_by_subtrees() {
        let blake3 = AlgorithmSet::from_iter([Algorithm::Blake3]);
        assert!(hashed_by_subtrees(blake3, 4 << 20, (4 << 20) + 1));
        assert!(!hashed_by_subtrees(blake3, 4 << 20, 4 << 20), "one chunk: nothing to merge");
        assert!(!hashed_by_subtrees(blake3, 3 << 20, 10 << 20), "a chunk that is no subtree");
        assert!(!hashed_by_subtrees(
            AlgorithmSet::from_iter([Algorithm::Blake3, Algorithm::Sha256]),
            4 << 20,
            10 << 20
        ));
    }
}
