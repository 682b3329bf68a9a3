//! The content index: per content directory, what upmirror last learned about each file (size, modification time,
//! blake3, whether its bytes matched the SHA-1 in its name), so `copy` and `verify` skip a file whose size and
//! modification time are unchanged without reading it.
//!
//! It lives at `<content>/.upmirror-index` (a dot-name, outside the layout) as MessagePack, readable by msgspec:
//! `{"version": 1, "entries": [[relative_path, size, mtime_ns, blake3_hex | nil, sha1_verified], ...]}`, sorted by
//! path. It is a cache, never the truth: an unreadable or foreign index is ignored (every file is read again), and it
//! is replaced atomically (temporary file, fsync, rename), so a crash leaves the old index or the new one.
//! Memory: one small entry per file (no contents), about 150 bytes, so a million files stay near 150 MB.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::error::{IoResultExt, Result};
use crate::store::{ContentName, ContentStore};

/// Bumped when the meaning of an entry changes; an index of another version is ignored.
pub(crate) const INDEX_VERSION: u32 = 1;

/// What the index knows of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub size: u64,
    pub mtime_ns: i64,
    pub blake3: Option<[u8; 32]>,
    /// The file's bytes were read and their SHA-1 equalled the one in its name.
    pub sha1_verified: bool,
}

impl IndexEntry {
    /// An entry for a file whose bytes were just checked, stamped with its current metadata.
    pub fn verified(metadata: &Metadata, blake3: Option<[u8; 32]>) -> Self {
        IndexEntry { size: metadata.len(), mtime_ns: mtime_ns(metadata), blake3, sha1_verified: true }
    }

    /// True when the file still has the size and modification time it had when this entry was written.
    pub(crate) fn describes(&self, metadata: &Metadata) -> bool {
        self.size == metadata.len() && self.mtime_ns == mtime_ns(metadata)
    }
}

/// Modification time in nanoseconds since the epoch (negative before it, 0 when the platform has none).
pub(crate) fn mtime_ns(metadata: &Metadata) -> i64 {
    metadata.modified().ok().map_or(0, |t| match t.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i64,
        Err(before) => -(before.duration().as_nanos() as i64),
    })
}

/// The on-disk form: a map with a version, and entries as arrays (compact, and `array_like` Structs in msgspec).
#[derive(Serialize, Deserialize)]
struct IndexDocument {
    version: u32,
    entries: Vec<(String, u64, i64, Option<String>, bool)>,
}

/// The index of one content directory, held in memory as a sorted map of relative path to entry. Keys are the
/// layout's own spelling (`ContentName::relative_path`), whatever case a foreign directory used on disk.
#[derive(Debug)]
pub struct ContentIndex {
    path: PathBuf,
    entries: BTreeMap<String, IndexEntry>,
}

impl ContentIndex {
    /// Reads the index of a content directory; a missing, unreadable or foreign index gives an empty one.
    pub fn load(store: &ContentStore) -> Self {
        let path = store.index_path();
        let entries = fs::read(&path)
            .ok()
            .and_then(|bytes| rmp_serde::from_slice::<IndexDocument>(&bytes).ok())
            .filter(|document| document.version == INDEX_VERSION)
            .map(|document| {
                document
                    .entries
                    .into_iter()
                    .map(|(relative, size, mtime_ns, blake3_hex, sha1_verified)| {
                        let blake3 = blake3_hex.and_then(|h| {
                            let mut digest = [0u8; 32];
                            hex::decode_to_slice(h, &mut digest).ok().map(|()| digest)
                        });
                        (relative, IndexEntry { size, mtime_ns, blake3, sha1_verified })
                    })
                    .collect()
            })
            .unwrap_or_default();
        ContentIndex { path, entries }
    }

    /// The entry of a file if it still describes it (same size and modification time) and its SHA-1 was verified.
    pub(crate) fn verified_entry(&self, relative: &str, metadata: &Metadata) -> Option<&IndexEntry> {
        self.entries.get(relative).filter(|e| e.sha1_verified && e.describes(metadata))
    }

    pub fn get(&self, relative: &str) -> Option<&IndexEntry> {
        self.entries.get(relative)
    }

    pub(crate) fn record(&mut self, relative: String, entry: IndexEntry) {
        self.entries.insert(relative, entry);
    }

    pub(crate) fn remove(&mut self, relative: &str) {
        self.entries.remove(relative);
    }

    /// Drops the entries of files that were deleted on purpose (by the Server Cleanup Wizard), so that `verify`
    /// does not report them missing. Paths are relative to the content directory, spelt as the layout accepts.
    pub fn forget_deleted(store: &ContentStore, relatives: &[String]) -> Result<()> {
        let mut index = ContentIndex::load(store);
        let before = index.len();
        for name in relatives.iter().filter_map(|relative| ContentName::parse_relative(relative).ok()) {
            index.remove(&name.relative_path());
        }
        if index.len() == before { Ok(()) } else { index.save() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The relative paths in the index, in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Writes the index atomically: a temporary file beside it, flushed, renamed over the old one.
    pub(crate) fn save(&self) -> Result<()> {
        static SAVES: AtomicU64 = AtomicU64::new(0);
        let document = IndexDocument {
            version: INDEX_VERSION,
            entries: self
                .entries
                .iter()
                .map(|(relative, e)| (relative.clone(), e.size, e.mtime_ns, e.blake3.map(hex::encode), e.sha1_verified))
                .collect(),
        };
        let bytes = rmp_serde::to_vec_named(&document).expect("an index document always encodes");
        // A name of its own per writer: two saves at once (a download and a verification) never rename each
        // other's file away. The last rename wins; the index is a cache, so the loser's entries are only re-learnt.
        let unique = format!("{}.{}.tmp", std::process::id(), SAVES.fetch_add(1, Ordering::Relaxed));
        let temporary = self.path.with_extension(unique);
        let mut file = File::create(&temporary).at(&temporary)?;
        let written = file.write_all(&bytes).and_then(|()| file.sync_all()).at(&temporary);
        let renamed = written.and_then(|()| fs::rename(&temporary, &self.path).at(&self.path));
        if renamed.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        renamed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path());
        let file = dir.path().join("f");
        fs::write(&file, b"abc").unwrap();
        let metadata = fs::metadata(&file).unwrap();
        let mut index = ContentIndex::load(&store);
        assert!(index.is_empty());
        index.record("9D/A".into(), IndexEntry::verified(&metadata, Some([7; 32])));
        index.record("00/B".into(), IndexEntry { size: 1, mtime_ns: -5, blake3: None, sha1_verified: false });
        index.save().unwrap();
        let loaded = ContentIndex::load(&store);
        assert_eq!(loaded.paths().collect::<Vec<_>>(), ["00/B", "9D/A"]);
        assert_eq!(loaded.get("9D/A"), index.get("9D/A"));
        assert!(loaded.verified_entry("9D/A", &metadata).is_some());
        assert!(loaded.verified_entry("00/B", &metadata).is_none());
    }

    #[test]
    fn a_changed_file_is_not_described_and_a_damaged_index_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path());
        let file = dir.path().join("f");
        fs::write(&file, b"abc").unwrap();
        let entry = IndexEntry::verified(&fs::metadata(&file).unwrap(), None);
        fs::write(&file, b"abcd").unwrap();
        assert!(!entry.describes(&fs::metadata(&file).unwrap()));
        fs::write(store.index_path(), b"\xc1 not messagepack").unwrap();
        assert!(ContentIndex::load(&store).is_empty());
    }
}
