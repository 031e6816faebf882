//! A whole WAL file (header and frames) opened and replayed.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = deftech_vec::fuzzing::replay_wal_file(data);
});
