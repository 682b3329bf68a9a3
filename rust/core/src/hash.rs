//! One-pass multi-digest hashing: any set of {blake3, SHA-256, SHA-1, XXH3-128} over a file in a single read, with
//! blake3 spread over threads for large files and the other digests running alongside it on the same mapped bytes.
//! Content is identified by SHA-1 (the WSUS layout) and verified by the strongest digest the metadata carries.

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, IoResultExt, Result};
use crate::pool::run_in_pool;
use crate::progress::Progress;

/// Below this size blake3 hashes on one thread: splitting work across rayon costs more than it saves.
/// Measured with `cargo run --release --example blake3_threshold` (README, "Hashing"): on the 2-core reference
/// machine two threads win from about 512 KiB; the constant leaves some margin.
pub const BLAKE3_PARALLEL_MIN: u64 = 1 << 20;

/// Files at least this large are memory-mapped (one pass, no copy); smaller ones are read into a buffer.
pub(crate) const MMAP_MIN: u64 = 256 << 10;

/// How many bytes a digest consumes between two looks at the cancellation flag and two progress updates.
const STEP: usize = 16 << 20;

/// The buffer size for files that cannot be mapped (pipes, devices).
const STREAM_BUFFER: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Blake3,
    Sha256,
    Sha1,
    Xxh3,
}

impl Algorithm {
    pub const ALL: [Algorithm; 4] = [Algorithm::Blake3, Algorithm::Sha256, Algorithm::Sha1, Algorithm::Xxh3];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Blake3 => "blake3",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha1 => "sha1",
            Algorithm::Xxh3 => "xxh3",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Algorithm::Blake3 => 1,
            Algorithm::Sha256 => 2,
            Algorithm::Sha1 => 4,
            Algorithm::Xxh3 => 8,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| {
            Error::InvalidInput(format!("unknown digest algorithm {name:?}; choose from blake3, sha256, sha1, xxh3"))
        })
    }
}

/// A set of algorithms, cheap to copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlgorithmSet(u8);

impl AlgorithmSet {
    pub const ALL: AlgorithmSet = AlgorithmSet(0b1111);

    pub fn contains(self, algorithm: Algorithm) -> bool {
        self.0 & algorithm.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Algorithm> for AlgorithmSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        AlgorithmSet(iter.into_iter().fold(0, |bits, a| bits | a.bit()))
    }
}

/// The digests of one file or byte stream; an algorithm that was not asked for is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub blake3: Option<[u8; 32]>,
    pub sha256: Option<[u8; 32]>,
    pub sha1: Option<[u8; 20]>,
    /// XXH3-128 in its canonical (big-endian) byte order, as `xxhsum -H2` prints it.
    pub xxh3: Option<[u8; 16]>,
}

impl Digests {
    pub fn bytes(&self, algorithm: Algorithm) -> Option<&[u8]> {
        match algorithm {
            Algorithm::Blake3 => self.blake3.as_ref().map(<[u8; 32]>::as_slice),
            Algorithm::Sha256 => self.sha256.as_ref().map(<[u8; 32]>::as_slice),
            Algorithm::Sha1 => self.sha1.as_ref().map(<[u8; 20]>::as_slice),
            Algorithm::Xxh3 => self.xxh3.as_ref().map(<[u8; 16]>::as_slice),
        }
    }

    /// Lower-case hex of one digest, as `b3sum` and `sha256sum` print it.
    pub fn hex(&self, algorithm: Algorithm) -> Option<String> {
        self.bytes(algorithm).map(hex::encode)
    }
}

/// One digest's running state.
enum State {
    Blake3(Box<blake3::Hasher>),
    Sha256(Box<Sha256>),
    Sha1(Box<Sha1>),
    Xxh3(Box<Xxh3>),
}

impl State {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Blake3 => State::Blake3(Box::default()),
            Algorithm::Sha256 => State::Sha256(Box::default()),
            Algorithm::Sha1 => State::Sha1(Box::default()),
            Algorithm::Xxh3 => State::Xxh3(Box::default()),
        }
    }

    /// Feeds bytes; blake3 spreads a large slice over the rayon pool.
    fn update(&mut self, data: &[u8]) {
        match self {
            State::Blake3(h) if data.len() as u64 >= BLAKE3_PARALLEL_MIN => {
                h.update_rayon(data);
            }
            State::Blake3(h) => {
                h.update(data);
            }
            State::Sha256(h) => h.update(data),
            State::Sha1(h) => h.update(data),
            State::Xxh3(h) => h.update(data),
        }
    }

    fn finish_into(self, digests: &mut Digests) {
        match self {
            State::Blake3(h) => digests.blake3 = Some(*h.finalize().as_bytes()),
            State::Sha256(h) => digests.sha256 = Some(h.finalize().into()),
            State::Sha1(h) => digests.sha1 = Some(h.finalize().into()),
            State::Xxh3(h) => digests.xxh3 = Some(h.digest128().to_be_bytes()),
        }
    }

    /// Rough cost per byte, so progress is reported by the digest that finishes last.
    fn cost_rank(&self) -> u8 {
        match self {
            State::Sha256(_) => 4,
            State::Sha1(_) => 3,
            State::Blake3(_) => 2,
            State::Xxh3(_) => 1,
        }
    }
}

/// Computes several digests of a stream fed in pieces (used for bytes from Python and for downloads).
pub struct MultiHasher {
    size: u64,
    states: Vec<State>,
}

impl MultiHasher {
    pub fn new(algorithms: AlgorithmSet) -> Result<Self> {
        if algorithms.is_empty() {
            return Err(Error::InvalidInput("no digest algorithm selected".into()));
        }
        Ok(MultiHasher { size: 0, states: algorithms.iter().map(State::new).collect() })
    }

    /// Feeds bytes to every digest; a large piece is hashed by all digests at once on the rayon pool.
    pub fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        if self.states.len() > 1 && data.len() as u64 >= BLAKE3_PARALLEL_MIN {
            self.states.par_iter_mut().for_each(|state| state.update(data));
        } else {
            for state in &mut self.states {
                state.update(data);
            }
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finalize(self) -> Digests {
        let mut digests = Digests { size: self.size, ..Digests::default() };
        for state in self.states {
            state.finish_into(&mut digests);
        }
        digests
    }
}

/// Hashes one file with every algorithm of the set in a single pass over its bytes.
///
/// Regular files of `MMAP_MIN` bytes or more are memory-mapped and each digest runs on its own rayon task over the
/// same pages (blake3 itself split over the pool above `BLAKE3_PARALLEL_MIN`); smaller files are read into memory
/// once; anything else (a pipe) is streamed. Progress counts the file's bytes once; cancellation is checked every
/// `STEP` bytes.
pub fn hash_file(path: &Path, algorithms: AlgorithmSet, progress: &Progress) -> Result<Digests> {
    let mut hasher = MultiHasher::new(algorithms)?;
    progress.check()?;
    let mut file = File::open(path).at(path)?;
    let metadata = file.metadata().at(path)?;
    if metadata.is_dir() {
        return Err(Error::io(path, std::io::Error::from_raw_os_error(libc::EISDIR)));
    }
    if !metadata.is_file() {
        return hash_stream(&mut file, path, hasher, progress);
    }
    if metadata.len() < MMAP_MIN {
        let mut data = Vec::with_capacity(metadata.len() as usize);
        file.read_to_end(&mut data).at(path)?;
        hasher.update(&data);
        progress.add_bytes(data.len() as u64);
        return Ok(hasher.finalize());
    }
    // SAFETY: the map is read-only and private to this call. As with b3sum, a file truncated by another process
    // while it is hashed would fault; content files are immutable once placed, so upmirror never does that.
    let map = unsafe { memmap2::Mmap::map(&file) }.at(path)?;
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Sequential);
    hash_mapped(&map, hasher, progress)
}

fn hash_mapped(data: &[u8], hasher: MultiHasher, progress: &Progress) -> Result<Digests> {
    let MultiHasher { mut states, .. } = hasher;
    // Costliest first, one task each: the pool starts the slow digests at once and the cheap ones fill the gaps.
    states.sort_by_key(|state| std::cmp::Reverse(state.cost_rank()));
    let reporter = 0;
    let outcomes: Vec<Result<()>> = states
        .par_iter_mut()
        .with_max_len(1)
        .enumerate()
        .map(|(index, state)| {
            for piece in data.chunks(STEP) {
                progress.check()?;
                state.update(piece);
                if index == reporter {
                    progress.add_bytes(piece.len() as u64);
                }
            }
            Ok(())
        })
        .collect();
    outcomes.into_iter().collect::<Result<()>>()?;
    Ok(MultiHasher { size: data.len() as u64, states }.finalize())
}

fn hash_stream(reader: &mut impl Read, path: &Path, mut hasher: MultiHasher, progress: &Progress) -> Result<Digests> {
    let mut buffer = vec![0u8; STREAM_BUFFER];
    loop {
        progress.check()?;
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(hasher.finalize()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        hasher.update(&buffer[..n]);
        progress.add_bytes(n as u64);
    }
}

/// Hashes many files in parallel on at most `threads` threads (`None`: one per core); the results keep the order of
/// `paths`, and one file's error does not stop the others. Progress totals are set from the files' sizes first.
pub fn hash_files(
    paths: &[PathBuf],
    algorithms: AlgorithmSet,
    threads: Option<usize>,
    progress: &Progress,
) -> Result<Vec<Result<Digests>>> {
    if algorithms.is_empty() {
        return Err(Error::InvalidInput("no digest algorithm selected".into()));
    }
    let total: u64 = paths.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    progress.add_total(paths.len() as u64, total);
    let run = || {
        paths
            .par_iter()
            .map(|path| {
                let result = hash_file(path, algorithms, progress);
                match &result {
                    Ok(_) => progress.file_done(),
                    Err(_) => progress.file_failed(),
                }
                result
            })
            .collect()
    };
    run_in_pool(threads, run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample(len: usize) -> Vec<u8> {
        // A cheap deterministic byte pattern with no short period.
        (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
    }

    fn one_shot(data: &[u8]) -> Digests {
        Digests {
            size: data.len() as u64,
            blake3: Some(*blake3::hash(data).as_bytes()),
            sha256: Some(Sha256::digest(data).into()),
            sha1: Some(Sha1::digest(data).into()),
            xxh3: Some(xxhash_rust::xxh3::xxh3_128(data).to_be_bytes()),
        }
    }

    #[test]
    fn file_digests_match_one_shot_functions_around_every_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [
            0,
            1,
            1023,
            1024,
            MMAP_MIN as usize - 1,
            MMAP_MIN as usize,
            BLAKE3_PARALLEL_MIN as usize - 1,
            BLAKE3_PARALLEL_MIN as usize,
            STEP + 1,
        ];
        for size in sizes {
            let data = sample(size);
            let path = dir.path().join(format!("f{size}"));
            File::create(&path).unwrap().write_all(&data).unwrap();
            let got = hash_file(&path, AlgorithmSet::ALL, &Progress::new()).unwrap();
            assert_eq!(got, one_shot(&data), "size {size}");
        }
    }

    #[test]
    fn streaming_in_odd_pieces_equals_one_shot() {
        let data = sample(3 * BLAKE3_PARALLEL_MIN as usize + 17);
        let mut hasher = MultiHasher::new(AlgorithmSet::ALL).unwrap();
        for piece in data.chunks(BLAKE3_PARALLEL_MIN as usize + 5) {
            hasher.update(piece);
        }
        assert_eq!(hasher.finalize(), one_shot(&data));
    }

    #[test]
    fn only_the_selected_digests_are_computed() {
        let set: AlgorithmSet = [Algorithm::Sha1].into_iter().collect();
        let mut hasher = MultiHasher::new(set).unwrap();
        hasher.update(b"abc");
        let digests = hasher.finalize();
        assert_eq!(digests.hex(Algorithm::Sha1).as_deref(), Some("a9993e364706816aba3e25717850c26c9cd0d89d"));
        assert!(digests.blake3.is_none() && digests.sha256.is_none() && digests.xxh3.is_none());
    }

    #[test]
    fn a_missing_file_names_its_path_and_the_others_still_hash() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("present");
        std::fs::write(&present, b"x").unwrap();
        let missing = dir.path().join("missing");
        let progress = Progress::new();
        let results = hash_files(&[missing.clone(), present], AlgorithmSet::ALL, Some(2), &progress).unwrap();
        match &results[0] {
            Err(Error::Io { path, source }) => {
                assert_eq!(path, &missing);
                assert_eq!(source.kind(), ErrorKind::NotFound);
            }
            other => panic!("expected a NotFound error, got {other:?}"),
        }
        assert_eq!(results[1].as_ref().unwrap().size, 1);
        let snapshot = progress.snapshot();
        assert_eq!((snapshot.files_done, snapshot.files_failed), (1, 1));
    }

    #[test]
    fn a_cancelled_progress_stops_hashing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, sample(1 << 20)).unwrap();
        let progress = Progress::new();
        progress.cancel();
        assert!(matches!(hash_file(&path, AlgorithmSet::ALL, &progress), Err(Error::Cancelled)));
    }

    #[test]
    fn algorithm_names_round_trip_and_unknown_names_are_refused() {
        for algorithm in Algorithm::ALL {
            assert_eq!(algorithm.name().parse::<Algorithm>().unwrap(), algorithm);
        }
        let err = "md5".parse::<Algorithm>().unwrap_err().to_string();
        assert!(err.contains("md5") && err.contains("blake3"), "{err}");
    }
}
