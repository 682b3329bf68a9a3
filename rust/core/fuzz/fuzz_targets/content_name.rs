//! Content-name parsing (store.rs), the gate between names from metadata or a request and paths on disk: a name it
//! accepts is the layout path it was read from (up to case), parses back to itself, and never leaves its folder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upmirror_core::ContentName;

fuzz_target!(|input: (&str, &str)| {
    let (relative, extension) = input;
    if let Ok(name) = ContentName::parse_relative(relative) {
        let path = name.relative_path();
        assert!(path.eq_ignore_ascii_case(relative), "{relative:?} read as {path:?}");
        assert!(!path.contains("..") && !path.starts_with('/') && path.matches('/').count() == 1, "{path:?}");
    }
    if let Ok(name) = ContentName::from_hex(relative, extension) {
        let path = name.relative_path();
        assert_eq!(ContentName::parse_relative(&path).expect("a name it made parses"), name);
    }
});
