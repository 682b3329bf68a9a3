//! The download engine's `Content-Range` parser (fetch.rs): a value it accepts is a range inside the total it
//! names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upmirror_core::fetch::fuzzing::content_range;

fuzz_target!(|value: &[u8]| {
    if let Some((start, end_inclusive, total)) = content_range(value) {
        assert!(start <= end_inclusive && end_inclusive < total, "{value:?}");
    }
});
