//! The collection manifest: which sealed segments are live, with which tombstone files and
//! payload indexes, and the LSN up to which they hold every write (`applied_lsn`).
//!
//! `MANIFEST` is an immutable file (common 64-byte header, magic `DTMANIF\0`, body checksum)
//! whose body is JSON, so operators can read it. It is replaced atomically: written to
//! `MANIFEST.tmp`, synced, renamed, and the folder synced.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec::{FileWriter, HEADER_LEN, open_file, verify_body};
use crate::config::CollectionConfig;
use crate::directory::Directory;
use crate::error::{Error, IoContext, Result};
use crate::payload::PayloadIndexKind;
use crate::types::Lsn;

const MAGIC: &[u8; 8] = b"DTMANIF\0";
pub(crate) const FILE: &str = "MANIFEST";

/// A manifest as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub config: CollectionConfig,
    /// Every write at or below this LSN is in the listed segments and tombstone files.
    pub applied_lsn: Lsn,
    /// The next segment id to allocate.
    pub next_segment_id: u64,
    /// Declared payload indexes.
    pub schema: BTreeMap<String, PayloadIndexKind>,
    /// Live sealed segments, oldest first.
    pub segments: Vec<ManifestSegment>,
}

/// One sealed segment in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ManifestSegment {
    pub id: u64,
    pub count: u32,
    /// Tombstone file in the segment folder, if any point was deleted.
    #[serde(default)]
    pub tombstones: Option<String>,
    /// Payload index files present in the segment folder.
    #[serde(default)]
    pub indexes: BTreeMap<String, PayloadIndexKind>,
    /// The folder holds an HNSW graph (`hnsw.bin`).
    #[serde(default)]
    pub graph: bool,
}

impl Manifest {
    pub(crate) fn new(config: CollectionConfig) -> Self {
        Manifest {
            config,
            applied_lsn: 0,
            next_segment_id: 1,
            schema: BTreeMap::new(),
            segments: Vec::new(),
        }
    }

    /// Reads and checks `folder/MANIFEST`.
    pub(crate) fn read(dir: &dyn Directory, folder: &Path) -> Result<Manifest> {
        let path = folder.join(FILE);
        let (bytes, header) = open_file(dir, &path, MAGIC)?;
        let shown = dir.describe(&path);
        verify_body(&bytes, &header, &shown)?;
        serde_json::from_slice(&bytes[HEADER_LEN..]).map_err(|e| {
            Error::corrupted(&shown, HEADER_LEN as u64, format!("bad manifest JSON: {e}"))
        })
    }

    /// Replaces `folder/MANIFEST` atomically.
    pub(crate) fn write(&self, dir: &dyn Directory, folder: &Path) -> Result<()> {
        let tmp = folder.join(format!("{FILE}.tmp"));
        let body = serde_json::to_vec_pretty(self).expect("manifest serializes");
        let result = (|| {
            let mut w = FileWriter::create(dir, &tmp, MAGIC)?;
            w.write(&body)?;
            w.finish([self.applied_lsn, self.segments.len() as u64, 0])?;
            let shown = dir.describe(&tmp);
            dir.rename(&tmp, &folder.join(FILE)).at(&shown)?;
            dir.sync_dir(folder).at(&dir.describe(folder))
        })();
        if result.is_err() {
            let _ = dir.remove_file(&tmp);
        }
        result
    }
}
