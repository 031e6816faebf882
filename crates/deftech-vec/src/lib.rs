//! # deftech-vec
//!
//! An embedded vector search engine: collections of points (an id, a vector, a JSON payload)
//! stored in a write-ahead log and immutable, memory-mapped segments; exact and filtered
//! search with Qdrant's filter language and scoring conventions; crash-safe by construction.
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
mod manifest;
mod payload;
mod request;
mod segment;
mod types;
mod wal;

pub use collection::{Collection, CollectionInfo, OptimizerInfo, SegmentInfo};
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
pub use request::{
    PayloadSelector, PointSelector, ScrollRequest, ScrollResult, SearchParams, SearchRequest,
};
pub use types::{Lsn, Metric, Payload, Point, PointId, Record, ScoredPoint};

/// Entry points for the fuzz targets (not part of the stable API).
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    use crate::directory::{Directory, MemoryDirectory};

    /// Decodes one WAL record body; must never panic.
    pub fn decode_wal_record(bytes: &[u8]) -> bool {
        crate::wal::Op::decode(bytes).is_ok()
    }

    /// Replays a WAL file made of `bytes`; must never panic.
    pub fn replay_wal_file(bytes: &[u8]) -> bool {
        let dir = MemoryDirectory::new();
        let _ = dir.create_dir_all(Path::new("wal"));
        let Ok(mut f) = dir.create(Path::new("wal/00000000000000000001.wal")) else {
            return false;
        };
        let _ = f.write_all(bytes);
        drop(f);
        crate::wal::Wal::open(
            std::sync::Arc::new(dir),
            Path::new("wal"),
            1 << 20,
            0,
            |_, _| Ok(()),
        )
        .is_ok()
    }
}
