//! The content store: the one place that knows the WSUS content layout,
//! `<content>/<last two hex digits of the SHA-1>/<SHA-1 upper-case hex><original extension>`, where in-progress
//! files live (`<content>/.partial/`), and how a verified file is placed at its final path (atomically, never
//! before its digest matched). Every path written under a content directory is derived here from a digest.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoResultExt, Result};

/// The folder of unfinished downloads and their resume journals, inside the content directory.
pub const PARTIAL_DIR: &str = ".partial";

/// The content index (`crate::index`), a dot-name so no scan of the layout can take it for content.
pub const INDEX_FILE: &str = ".upmirror-index";

/// The longest purpose of a staged file (`ContentStore::staging_path`): the name and its `.part.journal` stay far
/// below the 255 bytes of a file name.
const MAX_PURPOSE_LEN: usize = 200;

/// The longest file extension accepted from metadata (".cab", ".msu", ".esd", ".psf" and the like are 3-4).
pub const MAX_EXTENSION_LEN: usize = 16;

/// A file's identity in the store: its SHA-1 and its original extension (with the dot, or empty).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContentName {
    pub sha1: [u8; 20],
    pub extension: String,
}

impl ContentName {
    /// Validates an extension from metadata: empty, or a dot and 1 to 16 ASCII letters, digits or underscores.
    /// Anything else (a slash, `..`, spaces, control characters) could name a path, so it is refused.
    pub fn new(sha1: [u8; 20], extension: &str) -> Result<Self> {
        let valid = extension.is_empty()
            || (extension.len() >= 2
                && extension.len() <= MAX_EXTENSION_LEN + 1
                && extension.starts_with('.')
                && extension[1..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !valid {
            return Err(Error::InvalidInput(format!(
                "file extension {extension:?} is not allowed: expected a dot and up to {MAX_EXTENSION_LEN} letters, \
                 digits or underscores"
            )));
        }
        Ok(ContentName { sha1, extension: extension.to_ascii_lowercase() })
    }

    /// Builds a name from the SHA-1 in hex (either case) and an extension.
    pub fn from_hex(sha1_hex: &str, extension: &str) -> Result<Self> {
        let mut sha1 = [0u8; 20];
        hex::decode_to_slice(sha1_hex, &mut sha1)
            .map_err(|_| Error::InvalidInput(format!("{sha1_hex:?} is not a SHA-1 in hex (40 hex digits)")))?;
        Self::new(sha1, extension)
    }

    /// Parses a path relative to the content directory (`3F/<40 hex>3F.cab`, `/` separated), accepting exactly the
    /// layout's names: this is how `/Content/...` requests and foreign content directories are read.
    pub fn parse_relative(relative: &str) -> Result<Self> {
        let refuse = || Error::InvalidInput(format!("{relative:?} is not a content path (<XX>/<SHA-1><extension>)"));
        let (folder, file) = relative.split_once('/').ok_or_else(refuse)?;
        if file.len() < 40 || !file.is_char_boundary(40) {
            return Err(refuse());
        }
        let (sha1_hex, extension) = file.split_at(40);
        let name = Self::from_hex(sha1_hex, extension).map_err(|_| refuse())?;
        if !folder.eq_ignore_ascii_case(&name.folder()) {
            return Err(refuse());
        }
        Ok(name)
    }

    pub fn sha1_hex(&self) -> String {
        hex::encode_upper(self.sha1)
    }

    /// The folder: the last two hex digits of the SHA-1, upper case as WSUS writes them.
    pub fn folder(&self) -> String {
        hex::encode_upper(&self.sha1[19..])
    }

    pub fn file_name(&self) -> String {
        format!("{}{}", self.sha1_hex(), self.extension)
    }

    /// The path relative to the content directory, `/` separated (also the tail of the `/Content/` URL).
    pub fn relative_path(&self) -> String {
        format!("{}/{}", self.folder(), self.file_name())
    }
}

/// A content directory.
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ContentStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, name: &ContentName) -> PathBuf {
        self.root.join(name.folder()).join(name.file_name())
    }

    pub fn partial_dir(&self) -> PathBuf {
        self.root.join(PARTIAL_DIR)
    }

    /// THE naming of in-progress files, the one scheme for every writer: `<content>/.partial/<label>.part` (a
    /// resume journal sits beside it as `<label>.part.journal`). `label` is one plain path segment: a content file
    /// name for downloads and copies, a name checked by `staging_path` for everything else.
    pub fn partial_path(&self, label: &str) -> PathBuf {
        self.partial_dir().join(format!("{label}.part"))
    }

    /// The in-progress file of a name, under `.partial/`; its journal sits beside it.
    pub fn partial_path_of(&self, name: &ContentName) -> PathBuf {
        self.partial_path(&name.file_name())
    }

    /// Where a writer outside the core (publish, seed bundles, the catalog generator) stages a file before
    /// `placement::place_staged` verifies and places it: `partial_path(purpose)`, with `.partial/` created. The
    /// purpose names the writer and the file (`publish-<sha1>.cab`); it must be 1 to 200 ASCII letters, digits,
    /// `-`, `_` or `.`, not starting with a dot, so it can never name another path.
    pub fn staging_path(&self, purpose: &str) -> Result<PathBuf> {
        let plain = !purpose.is_empty()
            && purpose.len() <= MAX_PURPOSE_LEN
            && !purpose.starts_with('.')
            && purpose.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !plain {
            return Err(Error::InvalidInput(format!(
                "{purpose:?} cannot name a staged file: expected 1 to {MAX_PURPOSE_LEN} letters, digits, '-', '_' or \
                 '.', not starting with a dot"
            )));
        }
        self.create()?;
        Ok(self.partial_path(purpose))
    }

    /// True when a file of this name and size is already in place (the digest was checked when it was placed).
    pub fn contains(&self, name: &ContentName, size: u64) -> bool {
        fs::metadata(self.path_of(name)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// The content index file of this directory.
    pub fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    /// Moves a verified file into its final path with an atomic rename but without flushing it: for bulk work
    /// (copies) that makes a whole batch durable at once with `sync_filesystem` before it records the batch in the
    /// content index. Until then a crash may leave the file at its final path unflushed, which is why a file absent
    /// from the index is read and checked before it is trusted.
    pub fn place_verified_unsynced(&self, verified: &Path, name: &ContentName) -> Result<PathBuf> {
        let target = self.path_of(name);
        rename_into_place(verified, &target)?;
        Ok(target)
    }

    /// Flushes every written file and directory entry of the filesystem holding the store (one `syncfs`, far cheaper
    /// than one `fsync` per file for thousands of files).
    pub fn sync_filesystem(&self) -> Result<()> {
        FilesystemFlush::open(&self.root)?.flush()
    }

    /// Lists the directory: every file in the layout, and every other entry, which is reported rather than taken for
    /// content. upmirror's own entries (`.partial/`, the index) are neither. Folders that are not layout folders are
    /// reported whole (with a trailing `/`), not descended into. Only directories are read (no `stat` per file, the
    /// folders in parallel), so listing a large unchanged directory stays cheap.
    pub fn scan(&self) -> Result<Scan> {
        use rayon::prelude::*;
        let mut scan = Scan::default();
        let mut folders = Vec::new();
        for entry in fs::read_dir(&self.root).at(&self.root)? {
            let entry = entry.at(&self.root)?;
            let folder_name = entry.file_name().to_string_lossy().into_owned();
            // `.upmirror-index.<writer>.tmp` is an index being written (or left by a crash while it was).
            if folder_name == PARTIAL_DIR || folder_name.starts_with(INDEX_FILE) {
                continue;
            }
            let kind = entry.file_type().at(&entry.path())?;
            if kind.is_dir() && folder_name.len() == 2 && folder_name.bytes().all(|b| b.is_ascii_hexdigit()) {
                folders.push(folder_name);
            } else {
                scan.outside.push(if kind.is_dir() { format!("{folder_name}/") } else { folder_name });
            }
        }
        let listed: Vec<Result<Scan>> = folders.par_iter().map(|folder| self.scan_folder(folder)).collect();
        for folder in listed {
            let folder = folder?;
            scan.files.extend(folder.files);
            scan.outside.extend(folder.outside);
        }
        scan.files.sort_by(|a, b| a.relative.cmp(&b.relative));
        // On a case-sensitive filesystem one name can be spelled twice (`9d/…` and `9D/…`, `.cab` and `.CAB`); the
        // second spelling is reported, never worked on, so no two workers ever write the same path.
        let mut seen = std::collections::HashSet::new();
        let (files, twice): (Vec<ScanEntry>, Vec<ScanEntry>) =
            scan.files.into_iter().partition(|f| seen.insert(f.name.clone()));
        scan.files = files;
        scan.outside.extend(twice.into_iter().map(|f| f.relative));
        scan.outside.sort();
        Ok(scan)
    }

    fn scan_folder(&self, folder_name: &str) -> Result<Scan> {
        let folder = self.root.join(folder_name);
        let mut scan = Scan::default();
        for file in fs::read_dir(&folder).at(&folder)? {
            let file = file.at(&folder)?;
            let relative = format!("{folder_name}/{}", file.file_name().to_string_lossy());
            let kind = file.file_type().at(&file.path())?;
            match ContentName::parse_relative(&relative) {
                Ok(name) if kind.is_file() => scan.files.push(ScanEntry { name, relative }),
                _ => scan.outside.push(if kind.is_dir() { format!("{relative}/") } else { relative }),
            }
        }
        Ok(scan)
    }

    /// Creates the content directory and its `.partial/` folder.
    pub fn create(&self) -> Result<()> {
        let partial = self.partial_dir();
        match fs::create_dir_all(&partial) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(Error::io(&partial, e)),
            _ => Ok(()),
        }
    }
}

/// The filesystem holding a folder, kept open to be flushed again and again.
pub struct FilesystemFlush {
    folder: PathBuf,
    handle: File,
}

impl FilesystemFlush {
    pub fn open(folder: &Path) -> Result<Self> {
        Ok(Self { folder: folder.to_path_buf(), handle: File::open(folder).at(folder)? })
    }

    /// Flushes every written file and directory entry of the filesystem (`syncfs`).
    pub fn flush(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs only reads the descriptor, which `self` keeps open.
        if unsafe { libc::syncfs(self.handle.as_raw_fd()) } != 0 {
            return Err(Error::io(&self.folder, std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Renames a finished file to `target` atomically, creating its folder when it is missing. Not durable by itself:
/// callers flush the filesystem before (the bytes) and after (the name) — see `placement`.
pub fn rename_into_place(finished: &Path, target: &Path) -> Result<()> {
    match fs::rename(finished, target) {
        Err(e) if e.kind() == ErrorKind::NotFound && finished.exists() => {
            let folder = target.parent().expect("a target path has a folder");
            fs::create_dir_all(folder).at(folder)?;
            fs::rename(finished, target).at(target)
        }
        other => other.at(target),
    }
}

/// One file of a content directory, as listed by `ContentStore::scan`.
#[derive(Debug)]
pub struct ScanEntry {
    pub name: ContentName,
    /// The path relative to the content directory as found on disk (a WSUS folder may spell it in lower case).
    pub relative: String,
}

impl ScanEntry {
    pub fn path_in(&self, store: &ContentStore) -> PathBuf {
        store.root().join(&self.relative)
    }
}

/// What `ContentStore::scan` found: layout files and the relative paths of everything else.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<ScanEntry>,
    pub outside: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";

    #[test]
    fn layout_is_the_wsus_one() {
        let name = ContentName::from_hex(SHA1, ".CAB").unwrap();
        assert_eq!(name.relative_path(), "9D/A9993E364706816ABA3E25717850C26C9CD0D89D.cab");
        assert_eq!(
            ContentStore::new("/c").path_of(&name),
            PathBuf::from("/c/9D/A9993E364706816ABA3E25717850C26C9CD0D89D.cab")
        );
    }

    #[test]
    fn relative_paths_round_trip_and_strangers_are_refused() {
        let name = ContentName::from_hex(SHA1, ".msu").unwrap();
        assert_eq!(ContentName::parse_relative(&name.relative_path()).unwrap(), name);
        assert_eq!(ContentName::parse_relative(&name.relative_path().to_lowercase()).unwrap(), name);
        for bad in [
            "",
            "9D",
            "9D/",
            "00/A9993E364706816ABA3E25717850C26C9CD0D89D.cab",
            "9D/A9993E364706816ABA3E25717850C26C9CD0D89D/../x",
            "9D/A9993E364706816ABA3E25717850C26C9CD0D89D.c b",
            "../A9993E364706816ABA3E25717850C26C9CD0D89D.cab",
            "9D/ZZ993E364706816ABA3E25717850C26C9CD0D89D.cab",
            "9D/A9993E364706816ABA3E25717850C26C9CD0D89D.",
            "9D/A9993E364706816ABA3E25717850C26C9CD0D89D.cab/x",
            "9D/A9993E364706816ABA3E25717850C26C9CD0D89Dé",
        ] {
            assert!(ContentName::parse_relative(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn extensions_that_could_name_a_path_are_refused() {
        let sha1 = [0u8; 20];
        for bad in ["cab", ".", "./x", ".c/b", "..", ".a.b", ".\0", ".abcdefghijklmnopq"] {
            assert!(ContentName::new(sha1, bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ContentName::new(sha1, "").is_ok());
        assert!(ContentName::new(sha1, ".abcdefghijklmnop").is_ok());
    }

    #[test]
    fn place_verified_moves_the_file_into_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path());
        store.create().unwrap();
        let name = ContentName::from_hex(SHA1, ".cab").unwrap();
        let partial = store.partial_path_of(&name);
        fs::write(&partial, b"abc").unwrap();
        assert!(!store.contains(&name, 3));
        let placed = store.place_verified_unsynced(&partial, &name).unwrap();
        assert_eq!(fs::read(placed).unwrap(), b"abc");
        assert!(store.contains(&name, 3));
        assert!(!partial.exists());
    }

    #[test]
    fn scan_lists_layout_files_and_reports_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path());
        store.create().unwrap();
        let name = ContentName::from_hex(SHA1, ".cab").unwrap();
        fs::create_dir_all(store.path_of(&name).parent().unwrap()).unwrap();
        fs::write(store.path_of(&name), b"abc").unwrap();
        fs::write(store.index_path(), b"").unwrap();
        fs::write(store.partial_path_of(&name), b"a").unwrap();
        fs::write(dir.path().join("9D/notes.txt"), b"x").unwrap();
        fs::create_dir(dir.path().join("9D/deeper")).unwrap();
        fs::create_dir(dir.path().join("other")).unwrap();
        fs::write(dir.path().join("readme"), b"x").unwrap();
        fs::create_dir(dir.path().join("9d")).unwrap();
        fs::write(dir.path().join("9d").join(name.file_name()), b"abc").unwrap();
        let scan = store.scan().unwrap();
        assert_eq!(scan.files.len(), 1);
        assert_eq!(scan.files[0].name, name);
        let twice = format!("9d/{}", name.file_name());
        assert_eq!(scan.outside, ["9D/deeper/", "9D/notes.txt", &twice, "other/", "readme"]);
    }
}
