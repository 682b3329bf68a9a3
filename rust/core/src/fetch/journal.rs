//! The resume journal of a chunked file (`UPMJRNL2`): a header (size, chunk size, validator) and 24-byte records
//! (chunk, length, XXH3-64 of that beginning); loading keeps only what still hashes as recorded.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::error::{IoResultExt, Result};

const JOURNAL_MAGIC: &[u8; 8] = b"UPMJRNL2";
/// A record of the journal: a chunk's index, a length, and the XXH3-64 of the chunk's first `length` bytes, each a
/// little-endian u64. The chunk's whole length for a finished chunk; less for progress within one.
pub(super) const JOURNAL_RECORD: usize = 24;

/// The state an interrupted run left: the validator the server gave then, which chunks were verified, and the
/// verified beginnings of chunks that were under way.
pub(super) struct Journal {
    pub(super) size: u64,
    pub(super) validator: String,
    pub(super) done: Vec<bool>,
    pub(super) kept: HashMap<usize, KeptPrefix>,
}

/// The first `length` bytes of an unfinished chunk, verified, and the chunk's XXH3 state after them.
pub(super) struct KeptPrefix {
    pub(super) length: u64,
    pub(super) hasher: Xxh3,
}

pub(super) fn chunk_len(size: u64, chunk_size: u64, index: usize) -> u64 {
    let start = index as u64 * chunk_size;
    (start + chunk_size).min(size) - start
}

/// Creates the partial file at its full size (reserving the space, so a full disk shows before any transfer) and
/// the journal's header.
pub(super) fn start_journal(
    part: &Path,
    journal: &Path,
    size: u64,
    chunk_size: u64,
    validator: &str,
) -> Result<Journal> {
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
pub(super) fn load_journal(
    part: &Path,
    journal: &Path,
    expected_size: Option<u64>,
    chunk_size: u64,
) -> Option<Journal> {
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

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;

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
