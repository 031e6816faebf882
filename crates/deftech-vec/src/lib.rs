//! # deftech-vec
//!
//! An embedded vector search engine: collections of points (an id, a vector, a JSON payload)
//! stored in a write-ahead log and immutable, memory-mapped segments with an HNSW graph each;
//! approximate and exact search, filtered with Qdrant's filter language (payload indexes make
//! filters fast, never change their results), with Qdrant's scoring conventions; crash-safe by
//! construction.
//!
//! ```
//! use deftech_vec::{CollectionConfig, Condition, Database, Filter, Metric, Point, SearchRequest};
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir()?;
//! let db = Database::open(dir.path())?;
//! let books = db.create_collection("books", CollectionConfig::new(4, Metric::Dot))?;
//! books.upsert([
//!     Point::new(1, vec![0.1, 0.9, 0.0, 0.0]).with_payload(json!({"genre": "poetry", "year": 1855})),
//!     Point::new(2, vec![0.8, 0.1, 0.1, 0.0]).with_payload(json!({"genre": "novel", "year": 1869})),
//!     Point::new(3, vec![0.7, 0.2, 0.0, 0.1]).with_payload(json!({"genre": "novel", "year": 1925})),
//! ])?;
//!
//! let query = SearchRequest::new(vec![1.0, 0.0, 0.0, 0.0], 2)
//!     .filter(Filter::must([Condition::matches("genre", "novel")]))
//!     .with_payload(true);
//! let hits = books.search(&query)?;
//! assert_eq!(hits.len(), 2);
//! assert_eq!(hits[0].id, 2u64.into());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The architecture (files, invariants, recovery) is described in `ARCHITECTURE.md` at the
//! repository root.

mod codec;
mod collection;
mod config;
mod database;
mod directory;
mod distance;
mod error;
mod filter;
mod hnsw;
mod manifest;
mod payload;
mod quantization;
mod request;
mod scorer;
mod segment;
mod snapshot;
pub mod time;
mod types;
mod wal;

pub use collection::{
    Collection, CollectionInfo, ComponentInfo, OptimizerInfo, SegmentInfo, Update,
};
pub use config::{
    CollectionConfig, FsyncPolicy, HnswConfig, Limits, MAX_DIMENSION, OptimizerConfig, WalConfig,
};
pub use database::{Database, MAX_NAME_LEN, validate_collection_name};
pub use directory::{
    DirEntry, Directory, FileBytes, FsDirectory, LockGuard, MemoryDirectory, SyncHandle,
    WritableFile,
};
pub use error::{Error, Result};
pub use filter::{
    AnyValues, Condition, FieldCondition, Filter, Match, MatchValue, MinShould, Range, ValuesCount,
};
pub use payload::PayloadIndexKind;
pub use quantization::{BinaryQuantization, Quantization, QuantizationParams, ScalarQuantization};
pub use snapshot::{
    ArchiveReport, LocalStore, ObjectMeta, ObjectStore, PruneReport, RestorePoint, SnapshotInfo,
    WalArchiver,
};
#[cfg(feature = "s3")]
pub use snapshot::{S3Config, S3Store};
/// Snapshot store operations: listing and retention.
pub mod snapshots {
    pub use crate::snapshot::{delete, describe, export, list, prune};
}
pub use request::{
    PayloadSelector, PointSelector, ScrollRequest, ScrollResult, SearchParams, SearchRequest,
};
pub use types::{Lsn, Metric, Payload, Point, PointId, Record, ScoredPoint};

/// Internals exposed for the criterion benches (not part of the stable API).
#[doc(hidden)]
pub mod bench_internals {
    /// Squared L2 with the kernel selected for this CPU.
    pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        crate::distance::l2sq(a, b)
    }

    /// Dot product with the kernel selected for this CPU.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        crate::distance::dot(a, b)
    }

    /// The name of the selected kernel set.
    pub fn kernel_name() -> &'static str {
        crate::distance::kernels().name
    }

    /// Plain loops, the reference.
    pub fn scalar_l2sq(a: &[f32], b: &[f32]) -> f32 {
        crate::distance::scalar_l2sq(a, b)
    }

    /// int8 codes against 16-bit query weights, `Σ u_j·d_j`, with the selected kernel.
    pub fn dot_u8_i16(u: &[u8], d: &[i16]) -> i32 {
        (crate::distance::kernels().dot_u8_i16)(u, d)
    }

    /// The plain loop of [`dot_u8_i16`].
    pub fn scalar_dot_u8_i16(u: &[u8], d: &[i16]) -> i32 {
        crate::distance::scalar_dot_u8_i16(u, d)
    }

    /// Query bit planes per word of a binary code (`planes.len()` is this many times the
    /// code's words).
    pub const QUERY_PLANES: usize = crate::distance::QUERY_PLANES;

    /// A binary code against a query's bit planes with the selected kernel: the weighted sum at
    /// the code's ones, and the number of ones.
    pub fn weighted_bits(code: &[u64], planes: &[u64]) -> (u32, u32) {
        (crate::distance::kernels().weighted_bits)(code, planes)
    }

    /// The plain loop of [`weighted_bits`].
    pub fn scalar_weighted_bits(code: &[u64], planes: &[u64]) -> (u32, u32) {
        crate::distance::scalar_weighted_bits(code, planes)
    }
}

/// Entry points for the fuzz targets and their corpus tests (not part of the stable API).
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use crate::directory::{Directory, MemoryDirectory};
    use crate::payload::PayloadIndexKind;
    use crate::segment::SealedSegment;
    use crate::segment::writer::SegmentBuilder;
    use crate::types::{Metric, PointId};

    /// Decodes one WAL record body; must never panic.
    pub fn decode_wal_record(bytes: &[u8]) -> bool {
        crate::wal::Op::decode(bytes).is_ok()
    }

    /// Opens a WAL made of one file with these bytes and replays it; must never panic.
    pub fn replay_wal_file(bytes: &[u8]) -> bool {
        let dir = MemoryDirectory::new();
        let _ = dir.create_dir_all(Path::new("wal"));
        let Ok(mut f) = dir.create(Path::new("wal/00000000000000000001.wal")) else {
            return false;
        };
        let _ = f.write_all(bytes);
        drop(f);
        crate::wal::Wal::open(Arc::new(dir), Path::new("wal"), 1 << 20, 0, |_, _| Ok(())).is_ok()
    }

    /// Names of the files of a sealed segment, in the order [`open_segment`] indexes them.
    pub const SEGMENT_FILES: [&str; 6] = [
        "vectors.bin",
        "ids.bin",
        "versions.bin",
        "payloads.bin",
        "index-6b-keyword.idx",
        "index-6e-integer.idx",
    ];

    /// The files of a small valid segment (4 points, dimension 3, keyword index on `k`, integer
    /// index on `n`): the seeds of the segment corpus.
    pub fn valid_segment_files() -> Vec<(String, Vec<u8>)> {
        let dir = MemoryDirectory::new();
        build_segment(&dir);
        SEGMENT_FILES
            .iter()
            .map(|name| {
                let bytes = dir
                    .read(&Path::new("segs/0000000000000001").join(name))
                    .expect("built");
                ((*name).to_owned(), bytes.to_vec())
            })
            .collect()
    }

    fn schema() -> BTreeMap<String, PayloadIndexKind> {
        BTreeMap::from([
            ("k".to_owned(), PayloadIndexKind::Keyword),
            ("n".to_owned(), PayloadIndexKind::Integer),
        ])
    }

    fn build_segment(dir: &MemoryDirectory) {
        let mut b = SegmentBuilder::new(dir, Path::new("segs"), 1, 3, Metric::Dot, &schema())
            .expect("builder");
        let payloads = [
            r#"{"k":"a","n":1}"#,
            r#"{"k":["a","b"],"n":[2,3.5]}"#,
            "",
            r#"{"n":"x","other":{"deep":[1,2]}}"#,
        ];
        for (i, p) in payloads.iter().enumerate() {
            let v = [i as f32, 1.0, -(i as f32)];
            b.add(
                PointId::Num(i as u64 * 7),
                i as u64 + 1,
                &v,
                p.as_bytes(),
                None,
            )
            .expect("add");
        }
        b.finish().expect("finish");
    }

    /// Replaces file `which % 6` of a valid segment with `bytes`, opens the segment and, if that
    /// succeeds, reads every point and runs indexed filters; must never panic.
    pub fn open_segment(which: u8, bytes: &[u8]) -> bool {
        let dir = MemoryDirectory::new();
        build_segment(&dir);
        let folder = Path::new("segs/0000000000000001");
        let name = SEGMENT_FILES[usize::from(which) % SEGMENT_FILES.len()];
        let Ok(mut f) = dir.create(&folder.join(name)) else {
            return false;
        };
        let _ = f.write_all(bytes);
        drop(f);
        let Ok(seg) = SealedSegment::open(
            &dir,
            1,
            folder,
            3,
            Metric::Dot,
            4,
            &schema(),
            false,
            None,
            true,
        ) else {
            return false;
        };
        let _ = seg.verify(&dir);
        for off in 0..seg.count() {
            let _ = seg.point_id(off);
            let _ = seg.version(off);
            let _ = seg.payload(off);
            let _ = seg.vector(off);
        }
        for rank in 0..seg.count() as usize {
            let _ = seg.by_rank(rank);
        }
        for id in [0u64, 7, 14, 21, 99] {
            let _ = seg.find(PointId::Num(id));
        }
        let filter = crate::filter::Filter::must([
            crate::filter::Condition::matches("k", "a"),
            crate::filter::Condition::range("n", crate::filter::Range::default().gte(1.0)),
        ]);
        if let Ok(compiled) = crate::filter::CompiledFilter::compile(&filter, &schema()) {
            let _ = crate::filter::plan::plan(&compiled, &seg);
        }
        true
    }
}
