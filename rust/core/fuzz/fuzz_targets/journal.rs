//! The download journal loader (fetch.rs), which reads what an interrupted run left: any journal beside a partial
//! file of the size it claims (up to 1 MiB) loads or is refused, without a panic, and keeps no more chunks than the
//! file has.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use upmirror_core::fetch::fuzzing::load_journal;

fn scratch() -> &'static PathBuf {
    static SCRATCH: OnceLock<PathBuf> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let folder = std::env::temp_dir().join(format!("upmirror-fuzz-journal-{}", std::process::id()));
        fs::create_dir_all(&folder).expect("a scratch folder");
        folder
    })
}

fn field(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fuzz_target!(|journal: &[u8]| {
    // The part file takes the size the journal claims, and the chunk size it records, when they are small enough
    // for a fuzzing run: that is where the loader goes past the header.
    let size = field(journal, 8).filter(|size| *size <= 1 << 20).unwrap_or(4096);
    let chunk_size = field(journal, 16).filter(|chunk| (1..=1 << 20).contains(chunk)).unwrap_or(64 << 10);
    let part = scratch().join("file.part");
    let journal_path = scratch().join("file.part.journal");
    fs::write(&part, vec![0u8; size as usize]).expect("the part file");
    fs::write(&journal_path, journal).expect("the journal");
    for expected_size in [None, Some(size)] {
        if let Some((loaded_size, whole, kept)) = load_journal(&part, &journal_path, expected_size, chunk_size) {
            let chunks = size.div_ceil(chunk_size) as usize;
            assert_eq!(loaded_size, size);
            assert!(whole + kept <= chunks, "{whole} whole and {kept} begun of {chunks} chunks");
        }
    }
});
