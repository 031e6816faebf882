//! One file of a valid sealed segment replaced, then the segment opened and read. The first
//! byte selects the file (`deftech_vec::fuzzing::SEGMENT_FILES`, modulo their number), the rest
//! is its new content.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&which, bytes)) = data.split_first() {
        let _ = deftech_vec::fuzzing::open_segment(which, bytes);
    }
});
