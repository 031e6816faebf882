//! One WAL record body through the operation decoder.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = deftech_vec::fuzzing::decode_wal_record(data);
});
