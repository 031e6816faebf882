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
    /// Live sealed segments (sealed ones appended in order; a merge result goes last).
    pub segments: Vec<ManifestSegment>,
    /// Segments whose codes were written under an earlier quantization setting
    /// ([`crate::Collection::set_quantization`]): the optimizer rewrites each, then drops it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requantize: Vec<u64>,
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
    /// Quantized codes file in the folder (`codes-i8.bin`, `codes-b1h.bin`, or `codes-b1.bin`
    /// from before the rotation).
    #[serde(default)]
    pub codes: Option<String>,
}

impl Manifest {
    pub(crate) fn new(config: CollectionConfig) -> Self {
        Manifest {
            config,
            applied_lsn: 0,
            next_segment_id: 1,
            schema: BTreeMap::new(),
            segments: Vec::new(),
            requantize: Vec::new(),
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

    /// Replaces `folder/MANIFEST` atomically. An error with `renamed: true` means the new
    /// manifest is in place but the folder sync failed: which manifest a crash would leave is
    /// unknown, so the caller must keep every file either one references.
    pub(crate) fn write(
        &self,
        dir: &dyn Directory,
        folder: &Path,
    ) -> std::result::Result<(), ManifestWriteError> {
        let tmp = folder.join(format!("{FILE}.tmp"));
        let body = serde_json::to_vec_pretty(self).expect("manifest serializes");
        let before = (|| {
            let mut w = FileWriter::create(dir, &tmp, MAGIC)?;
            w.write(&body)?;
            w.finish([self.applied_lsn, self.segments.len() as u64, 0])?;
            let shown = dir.describe(&tmp);
            dir.rename(&tmp, &folder.join(FILE)).at(&shown)
        })();
        if let Err(error) = before {
            let _ = dir.remove_file(&tmp);
            return Err(ManifestWriteError {
                error,
                renamed: false,
            });
        }
        let mut last = None;
        for _ in 0..3 {
            match dir.sync_dir(folder) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(ManifestWriteError {
            error: Error::io(dir.describe(folder), last.expect("three failures")),
            renamed: true,
        })
    }
}

/// A failed manifest write.
#[derive(Debug)]
pub(crate) struct ManifestWriteError {
    pub error: Error,
    /// The new manifest replaced the old one in the folder, but not durably.
    pub renamed: bool,
}

impl From<ManifestWriteError> for Error {
    fn from(e: ManifestWriteError) -> Error {
        e.error
    }
}
