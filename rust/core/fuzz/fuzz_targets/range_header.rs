//! The front's `Range` header parser (front/content.rs): any header against any file size either is refused or
//! gives ranges inside the file, at most `MAX_RANGES` of them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upmirror_core::front::{MAX_RANGES, parse_ranges};

fuzz_target!(|input: (u64, &str)| {
    let (size, header) = input;
    if let Ok(Some(ranges)) = parse_ranges(header, size) {
        assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES, "{header:?}: {ranges:?}");
        for (start, end) in ranges {
            assert!(start < end && end <= size, "{header:?} over {size} bytes gave {start}..{end}");
        }
    }
});
