//! The fuzz corpus as an ordinary test, so CI exercises every fuzz target without nightly.
//!
//! Every file in `fuzz/corpus/<target>/` goes through the same `deftech_vec::fuzzing` entry
//! point as its fuzz target, then ~50 deterministic mutations of it do too (byte flips, flips
//! with the checksums fixed up so they reach the decoders, truncations). Nothing may panic.
//! Seeds named `valid-*` must succeed and seeds named `bad-*` must be rejected; any other name
//! (damaged seeds, inputs the fuzzers found) only has to be handled without a panic.
//!
//! The seeds are generated, deterministically, by the ignored test in this file:
//!
//! ```text
//! cargo test -p deftech-vec --test fuzz_corpus -- --ignored regenerate_seed_corpus
//! ```
//!
//! Run it again after a change to the WAL or segment formats. It rewrites only the seeds it
//! generates; inputs added by hand or by the fuzzers stay.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deftech_vec::fuzzing::{
    SEGMENT_FILES, decode_wal_record, open_segment, replay_wal_file, valid_segment_files,
};
use deftech_vec::{
    CollectionConfig, Database, Directory, MemoryDirectory, Metric, OptimizerConfig,
    PayloadIndexKind, Point, PointId,
};
use serde_json::json;

/// Bytes of the header at the start of WAL and segment files.
const HEADER_LEN: usize = 64;
/// Bytes of a WAL frame header: length u32, CRC32C u32, LSN u64.
const FRAME_HEADER: usize = 24;
/// Mutations tried per seed.
const MUTATIONS: usize = 50;

/// One fuzz target: its corpus folder and the input handling of its `fuzz_targets/<name>.rs`.
#[derive(Clone, Copy)]
struct Target {
    name: &'static str,
    run: fn(&[u8]) -> bool,
    /// Recomputes the checksums of a mutated input so it gets past them.
    fix_checksums: fn(&mut [u8]),
}

/// `fuzz_targets/segment_open.rs`: the first byte selects the file, the rest replaces it.
fn segment_open(data: &[u8]) -> bool {
    match data.split_first() {
        Some((&which, bytes)) => open_segment(which, bytes),
        None => false,
    }
}

const WAL_RECORD: Target = Target {
    name: "wal_record",
    run: decode_wal_record,
    fix_checksums: |_| {},
};
const WAL_FILE: Target = Target {
    name: "wal_file",
    run: replay_wal_file,
    fix_checksums: fix_wal_checksums,
};
const SEGMENT_OPEN: Target = Target {
    name: "segment_open",
    run: segment_open,
    fix_checksums: |data| {
        if let Some(file) = data.get_mut(1..) {
            fix_header_checksum(file);
        }
    },
};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// The seeds of a target, sorted by name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (
                path.file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned(),
                bytes,
            )
        })
        .collect();
    out.sort();
    out
}

/// splitmix64: deterministic positions without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs every seed of `target` and `MUTATIONS` mutations of each; returns the seed count.
fn run_corpus(target: Target) -> usize {
    let seeds = seeds(target.name);
    assert!(
        !seeds.is_empty(),
        "{}: the corpus is empty",
        corpus_dir(target.name).display()
    );
    assert!(
        seeds.iter().any(|(name, _)| name.starts_with("valid-")),
        "{}: no valid-* seed",
        target.name
    );
    for (name, bytes) in &seeds {
        let ok = (target.run)(bytes);
        if name.starts_with("valid-") {
            assert!(ok, "{}/{name}: a valid seed was rejected", target.name);
        } else if name.starts_with("bad-") {
            assert!(!ok, "{}/{name}: a bad seed was accepted", target.name);
        }
        mutate(target, name, bytes);
    }
    seeds.len()
}

/// Flips bytes (raw, then with checksums fixed up) and truncates at `MUTATIONS` positions.
fn mutate(target: Target, name: &str, seed: &[u8]) {
    let n = seed.len();
    if n == 0 {
        return;
    }
    let mut state = name_hash(name);
    for k in 0..MUTATIONS {
        // Half spread evenly, half at random; short seeds get every position.
        let pos = if n <= MUTATIONS {
            k % n
        } else if k % 2 == 0 {
            k * n / MUTATIONS
        } else {
            (next_random(&mut state) % n as u64) as usize
        };
        let mask = [0x01, 0x80, 0xff, 0x10][k % 4];
        let mut flipped = seed.to_vec();
        flipped[pos] ^= mask;
        let _ = (target.run)(&flipped);
        (target.fix_checksums)(&mut flipped);
        let _ = (target.run)(&flipped);
        let _ = (target.run)(&seed[..pos]);
    }
}

/// Recomputes the CRC32C of bytes 0..56 of a file header, stored at 56..60.
fn fix_header_checksum(file: &mut [u8]) {
    if file.len() >= HEADER_LEN {
        let crc = crc32c(&file[..56]);
        file[56..60].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Recomputes the header checksum of a WAL file (its unused body length counts as zero) and the
/// checksum of every complete frame.
fn fix_wal_checksums(file: &mut [u8]) {
    if file.len() < HEADER_LEN {
        return;
    }
    let mut header = file[..HEADER_LEN].to_vec();
    header[16..24].fill(0);
    let crc = crc32c(&header[..56]);
    file[56..60].copy_from_slice(&crc.to_le_bytes());
    for (start, len) in frames(file) {
        let crc = crc32c(&file[start + 8..start + FRAME_HEADER + len]);
        file[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// (offset, body length) of each complete frame of a WAL file, in order.
fn frames(file: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = HEADER_LEN;
    while file.len() - pos >= FRAME_HEADER {
        let len = u32::from_le_bytes(file[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if file.len() - pos - FRAME_HEADER < len {
            break;
        }
        out.push((pos, len));
        pos += FRAME_HEADER + len;
    }
    out
}

/// CRC32C (Castagnoli), bitwise: the test needs no dependency for a few kilobytes.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn wal_record_corpus() {
    assert!(run_corpus(WAL_RECORD) >= 8);
}

#[test]
fn wal_file_corpus() {
    assert!(run_corpus(WAL_FILE) >= 3);
}

#[test]
fn segment_open_corpus() {
    assert!(run_corpus(SEGMENT_OPEN) >= SEGMENT_FILES.len());
}

#[test]
fn generated_seeds_are_valid() {
    let wal = build_wal();
    assert!(replay_wal_file(&wal));
    let bodies = frames(&wal);
    assert!(bodies.len() >= 8, "{} records", bodies.len());
    for (start, len) in bodies {
        let body = &wal[start + FRAME_HEADER..start + FRAME_HEADER + len];
        assert!(decode_wal_record(body), "record at offset {start}");
    }
    let files = valid_segment_files();
    assert_eq!(files.len(), SEGMENT_FILES.len());
    for (i, (name, bytes)) in files.iter().enumerate() {
        assert_eq!(name, SEGMENT_FILES[i]);
        assert!(open_segment(i as u8, bytes), "{name}");
    }
}

#[test]
fn checksum_helpers_match_the_library() {
    // The standard CRC32C check value.
    assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    // Fixing the checksums of valid files changes nothing.
    let wal = build_wal();
    let mut fixed = wal.clone();
    fix_wal_checksums(&mut fixed);
    assert_eq!(fixed, wal);
    for (name, bytes) in valid_segment_files() {
        let mut fixed = bytes.clone();
        fix_header_checksum(&mut fixed);
        assert_eq!(fixed, bytes, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Seed generation.

const COLLECTION: &str = "seeds";
const UUID: &str = "6f0c2a7e-3b1d-4c5e-9a8f-0123456789ab";

/// The WAL file of a small collection that went through every kind of operation.
fn build_wal() -> Vec<u8> {
    let dir = Arc::new(MemoryDirectory::new());
    let db = Database::open_in(dir.clone()).expect("open database");
    let config = CollectionConfig::new(3, Metric::Cosine)
        .optimizer(OptimizerConfig::default().background(false));
    let c = db
        .create_collection(COLLECTION, config)
        .expect("create collection");
    let uuid: PointId = UUID.parse().expect("uuid");
    c.upsert([
        Point::new(1, vec![1.0, 0.0, 0.0]).with_payload(json!({"city": "Oslo", "n": 3})),
        Point::new(2, vec![0.0, 2.0, 0.5]),
        Point::new(uuid, vec![0.25, -1.0, 4.0]).with_payload(json!({
            "tags": ["a", "b"], "nested": {"x": 1.5, "y": [true, null]}
        })),
    ])
    .expect("upsert");
    c.upsert([Point::new(3, vec![0.5, 0.5, 0.5]).with_payload(json!({"n": -7}))])
        .expect("upsert");
    let as_map = |v: serde_json::Value| v.as_object().expect("object").clone();
    c.set_payload(
        vec![PointId::from(1), uuid],
        as_map(json!({"lang": "no"})),
        None,
    )
    .expect("set payload");
    c.set_payload(
        vec![PointId::from(2)],
        as_map(json!({"deep": 1})),
        Some("nested"),
    )
    .expect("set payload at key");
    c.overwrite_payload(vec![PointId::from(3)], as_map(json!({"only": "this"})))
        .expect("overwrite payload");
    c.delete_payload_keys(vec![PointId::from(1)], &["n", "nested.x"])
        .expect("delete payload keys");
    c.clear_payload(vec![PointId::from(2)])
        .expect("clear payload");
    for (field, kind) in [
        ("city", PayloadIndexKind::Keyword),
        ("n", PayloadIndexKind::Integer),
        ("nested.x", PayloadIndexKind::Float),
        ("flag", PayloadIndexKind::Bool),
    ] {
        c.create_payload_index(field, kind).expect("create index");
    }
    c.delete_payload_index("flag").expect("drop index");
    c.delete([PointId::from(2), PointId::from(99)])
        .expect("delete");
    let wal_dir = Path::new("collections").join(COLLECTION).join("wal");
    let mut files: Vec<String> = dir
        .list(&wal_dir)
        .expect("list wal")
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n.ends_with(".wal"))
        .collect();
    files.sort();
    assert_eq!(files, ["00000000000000000001.wal"], "one WAL file");
    let bytes = dir
        .read(&wal_dir.join(&files[0]))
        .expect("read wal")
        .to_vec();
    db.close().expect("close");
    bytes
}

const OP_NAMES: [&str; 9] = [
    "unknown",
    "upsert",
    "delete",
    "set-payload",
    "overwrite-payload",
    "delete-payload-keys",
    "clear-payload",
    "create-index",
    "drop-index",
];

fn wal_record_seeds(wal: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, (start, len)) in frames(wal).into_iter().enumerate() {
        let body = wal[start + FRAME_HEADER..start + FRAME_HEADER + len].to_vec();
        let op = OP_NAMES[usize::from(body[0]).min(OP_NAMES.len() - 1)];
        out.push((format!("valid-{:02}-{op}", i + 1), body));
    }
    let upsert = out[0].1.clone();
    let mut trailing = upsert.clone();
    trailing.push(0);
    let mut huge_count = upsert.clone();
    huge_count[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    out.extend([
        ("bad-empty".to_owned(), Vec::new()),
        ("bad-unknown-tag".to_owned(), vec![9, 0, 0, 0, 0]),
        (
            "bad-truncated-upsert".to_owned(),
            upsert[..upsert.len() / 2].to_vec(),
        ),
        ("bad-trailing-byte".to_owned(), trailing),
        ("bad-huge-count".to_owned(), huge_count),
        // delete of one id of unknown kind 7
        (
            "bad-id-kind".to_owned(),
            vec![2, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        // overwrite with a payload that is not a JSON object
        (
            "bad-json".to_owned(),
            [&[4u8, 0, 0, 0, 0, 2, 0, 0, 0][..], b"[]"].concat(),
        ),
        // drop index with a field name that is not UTF-8
        ("bad-utf8".to_owned(), vec![8, 2, 0, 0, 0, 0xc3, 0x28]),
        // create index of unknown kind 9
        ("bad-index-kind".to_owned(), vec![7, 1, 0, 0, 0, b'k', 9]),
    ]);
    out
}

fn wal_file_seeds(wal: &[u8]) -> Vec<(String, Vec<u8>)> {
    let frames = frames(wal);
    let (last_start, _) = *frames.last().expect("frames");
    let (first_start, first_len) = frames[0];
    let mut out = vec![
        ("valid-full".to_owned(), wal.to_vec()),
        ("valid-header-only".to_owned(), wal[..HEADER_LEN].to_vec()),
        // A torn write: the last frame is cut short and cut off on open.
        (
            "valid-torn-tail".to_owned(),
            wal[..last_start + 10].to_vec(),
        ),
        (
            "valid-torn-header".to_owned(),
            wal[..HEADER_LEN / 2].to_vec(),
        ),
    ];
    let mut flip = wal.to_vec();
    flip[first_start + FRAME_HEADER + first_len / 2] ^= 0x40;
    out.push(("bad-mid-log-flip".to_owned(), flip.clone()));
    // The same damage with the frame checksum fixed: an undecodable or different operation.
    fix_wal_checksums(&mut flip);
    out.push(("damaged-mid-log-flip-fixed".to_owned(), flip));
    let mut tail_flip = wal.to_vec();
    let n = tail_flip.len();
    tail_flip[n - 1] ^= 0x01;
    out.push(("valid-last-frame-flip".to_owned(), tail_flip));
    let mut garbage = wal.to_vec();
    garbage[first_start + FRAME_HEADER] = 0xee; // unknown operation tag
    fix_wal_checksums(&mut garbage);
    out.push(("bad-unknown-op-fixed".to_owned(), garbage));
    let mut gap = wal.to_vec();
    gap[last_start + 8..last_start + 16].copy_from_slice(&1000u64.to_le_bytes());
    fix_wal_checksums(&mut gap);
    out.push(("bad-lsn-gap-at-end".to_owned(), gap));
    let mut lsn2 = wal.to_vec();
    lsn2[32..40].copy_from_slice(&2u64.to_le_bytes());
    fix_wal_checksums(&mut lsn2);
    out.push(("bad-header-first-lsn".to_owned(), lsn2));
    let mut magic = wal.to_vec();
    magic[0] ^= 0x20;
    out.push(("bad-magic".to_owned(), magic));
    out
}

fn segment_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, (name, bytes)) in valid_segment_files().into_iter().enumerate() {
        let stem = name.split('.').next().expect("stem").to_owned();
        let input = |file: &[u8]| [&[i as u8][..], file].concat();
        out.push((format!("valid-{i}-{stem}"), input(&bytes)));
        out.push((
            format!("bad-{i}-{stem}-truncated"),
            input(&bytes[..bytes.len() - 1]),
        ));
        let mut header = bytes.clone();
        header[40] ^= 0x01; // a parameter, with the header checksum left stale
        out.push((format!("bad-{i}-{stem}-header-flip"), input(&header)));
        fix_header_checksum(&mut header);
        out.push((format!("damaged-{i}-{stem}-header-param"), input(&header)));
        let body = bytes.len() - HEADER_LEN;
        for (what, at) in [
            ("first", HEADER_LEN),
            ("middle", HEADER_LEN + body / 2),
            ("last", bytes.len() - 1),
        ] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x81;
            out.push((
                format!("damaged-{i}-{stem}-{what}-body-flip"),
                input(&flipped),
            ));
        }
    }
    out
}

/// Writes the generated seeds into `fuzz/corpus/`, replacing earlier generated seeds (names
/// starting with `valid-`, `bad-` or `damaged-`) and keeping every other input.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand after a format change"]
fn regenerate_seed_corpus() {
    let wal = build_wal();
    for (target, seeds) in [
        (WAL_RECORD.name, wal_record_seeds(&wal)),
        (WAL_FILE.name, wal_file_seeds(&wal)),
        (SEGMENT_OPEN.name, segment_seeds()),
    ] {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).expect("create corpus folder");
        for entry in fs::read_dir(&dir).expect("list corpus") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name").to_string_lossy();
            if ["valid-", "bad-", "damaged-"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                fs::remove_file(&path).expect("remove old seed");
            }
        }
        for (name, bytes) in seeds {
            fs::write(dir.join(name), bytes).expect("write seed");
        }
    }
}
