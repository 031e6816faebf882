//! Sealed segments: immutable files in their own folder, mapped, never parsed wholesale.
//!
//! Opening a segment checks each file's header (magic, version, header checksum, sizes): O(1)
//! in the number of points. Body checksums are checked by [`SealedSegment::verify`], which
//! reads everything (`Collection::verify` calls it). Every access into the mapped bytes is
//! bounds-checked, so a damaged file gives errors, never a panic.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::codec::{HEADER_LEN, Header, open_file, verify_body};
use crate::collection::ComponentInfo;
use crate::directory::{Directory, FileBytes};
use crate::error::{Error, Result};
use crate::filter::plan::IndexSource;
use crate::hnsw::{self, Graph};
use crate::payload::PayloadIndexKind;
use crate::payload::index::{SealedIndex, file_name as index_file_name};
use crate::quantization::Codes;
use crate::types::{Lsn, Metric, Payload, PointId};

pub(crate) const VECTORS: &str = "vectors.bin";
pub(crate) const IDS: &str = "ids.bin";
pub(crate) const VERSIONS: &str = "versions.bin";
pub(crate) const PAYLOADS: &str = "payloads.bin";
pub(crate) const MAGIC_VECTORS: &[u8; 8] = b"DTVECF32";
pub(crate) const MAGIC_IDS: &[u8; 8] = b"DTIDS\0\0\0";
pub(crate) const MAGIC_VERSIONS: &[u8; 8] = b"DTVERS\0\0";
pub(crate) const MAGIC_PAYLOADS: &[u8; 8] = b"DTPAYLD\0";
/// Bytes of one entry of the sorted id table: kind u32, offset u32, value u128 (two u64).
pub(crate) const ID_ENTRY: usize = 24;

/// Folder of segment `id` inside the collection folder.
pub(crate) fn folder_name(id: u64) -> String {
    format!("{id:016x}")
}

/// An open sealed segment.
pub(crate) struct SealedSegment {
    id: u64,
    folder: PathBuf,
    dim: usize,
    count: u32,
    vectors: FileBytes,
    ids: FileBytes,
    versions: FileBytes,
    payloads: FileBytes,
    payload_blob_len: usize,
    indexes: BTreeMap<String, SealedIndex>,
    graph: Option<Graph>,
    codes: Option<(String, Codes)>,
    shown: PathBuf,
}

impl std::fmt::Debug for SealedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSegment")
            .field("id", &self.id)
            .field("count", &self.count)
            .field("indexes", &self.indexes.keys().collect::<Vec<_>>())
            .field("graph", &self.graph.is_some())
            .finish()
    }
}

fn expect_len(h: &Header, expected: u64, path: &Path, what: &str) -> Result<()> {
    if h.body_len != expected {
        return Err(Error::corrupted(
            path,
            16,
            format!("{what}: body is {} bytes, expected {expected}", h.body_len),
        ));
    }
    Ok(())
}

impl SealedSegment {
    /// Opens the segment in `folder`, checking headers and sizes against `dim`, `metric` and
    /// the point count the manifest recorded; with `graph`, also its HNSW graph.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        dir: &dyn Directory,
        id: u64,
        folder: &Path,
        dim: usize,
        metric: Metric,
        count: u32,
        indexes: &BTreeMap<String, PayloadIndexKind>,
        graph: bool,
        codes: Option<&str>,
        in_ram: bool,
    ) -> Result<SealedSegment> {
        let n = u64::from(count);
        let (vectors, vh) = open_file(dir, &folder.join(VECTORS), MAGIC_VECTORS)?;
        let shown_v = dir.describe(&folder.join(VECTORS));
        if vh.params != [n, dim as u64, metric.code()] {
            return Err(Error::corrupted(
                &shown_v,
                32,
                format!(
                    "header says {} points of dimension {} (metric code {}), expected {n} of {dim} ({})",
                    vh.params[0],
                    vh.params[1],
                    vh.params[2],
                    metric.code()
                ),
            ));
        }
        expect_len(&vh, n * dim as u64 * 4, &shown_v, "vectors")?;

        let (ids, ih) = open_file(dir, &folder.join(IDS), MAGIC_IDS)?;
        let shown_i = dir.describe(&folder.join(IDS));
        if ih.params[0] != n {
            return Err(Error::corrupted(
                &shown_i,
                32,
                format!("{} ids for {n} points", ih.params[0]),
            ));
        }
        expect_len(&ih, n * (ID_ENTRY as u64 + 4), &shown_i, "ids")?;

        let (versions, verh) = open_file(dir, &folder.join(VERSIONS), MAGIC_VERSIONS)?;
        let shown_ver = dir.describe(&folder.join(VERSIONS));
        if verh.params[0] != n {
            return Err(Error::corrupted(
                &shown_ver,
                32,
                format!("{} versions for {n} points", verh.params[0]),
            ));
        }
        expect_len(&verh, n * 8, &shown_ver, "versions")?;

        let (payloads, ph) = open_file(dir, &folder.join(PAYLOADS), MAGIC_PAYLOADS)?;
        let shown_p = dir.describe(&folder.join(PAYLOADS));
        let blob = ph.params[1];
        if ph.params[0] != n || blob % 8 != 0 {
            return Err(Error::corrupted(
                &shown_p,
                32,
                "payload header does not match the segment",
            ));
        }
        expect_len(&ph, blob + (n + 1) * 8, &shown_p, "payloads")?;

        let mut opened = BTreeMap::new();
        for (field, &kind) in indexes {
            let path = folder.join(index_file_name(field, kind));
            opened.insert(field.clone(), SealedIndex::open(dir, &path, kind, count)?);
        }
        let graph = if graph {
            Some(Graph::open(dir, &folder.join(hnsw::FILE), count, in_ram)?)
        } else {
            None
        };
        let codes = match codes {
            Some(name) => Some((
                name.to_owned(),
                Codes::open(dir, &folder.join(name), count, dim, in_ram)?,
            )),
            None => None,
        };
        Ok(SealedSegment {
            id,
            folder: folder.to_owned(),
            dim,
            count,
            vectors,
            ids,
            versions,
            payloads,
            payload_blob_len: blob as usize,
            indexes: opened,
            graph,
            codes,
            shown: dir.describe(folder),
        })
    }

    /// The same segment with one more index opened (its file already written in the folder).
    pub(crate) fn with_index(
        &self,
        dir: &dyn Directory,
        field: &str,
        kind: PayloadIndexKind,
    ) -> Result<SealedSegment> {
        let path = self.folder.join(index_file_name(field, kind));
        let mut indexes = self.indexes.clone();
        indexes.insert(
            field.to_owned(),
            SealedIndex::open(dir, &path, kind, self.count)?,
        );
        Ok(SealedSegment {
            id: self.id,
            folder: self.folder.clone(),
            dim: self.dim,
            count: self.count,
            vectors: self.vectors.clone(),
            ids: self.ids.clone(),
            versions: self.versions.clone(),
            payloads: self.payloads.clone(),
            payload_blob_len: self.payload_blob_len,
            indexes,
            graph: self.graph.clone(),
            codes: self.codes.clone(),
            shown: self.shown.clone(),
        })
    }

    /// The same segment with its graph file (already written in the folder) opened (`in_ram`:
    /// copied into memory, see [`Graph::open`]).
    pub(crate) fn with_graph(&self, dir: &dyn Directory, in_ram: bool) -> Result<SealedSegment> {
        Ok(SealedSegment {
            id: self.id,
            folder: self.folder.clone(),
            dim: self.dim,
            count: self.count,
            vectors: self.vectors.clone(),
            ids: self.ids.clone(),
            versions: self.versions.clone(),
            payloads: self.payloads.clone(),
            payload_blob_len: self.payload_blob_len,
            indexes: self.indexes.clone(),
            graph: Some(Graph::open(
                dir,
                &self.folder.join(hnsw::FILE),
                self.count,
                in_ram,
            )?),
            codes: self.codes.clone(),
            shown: self.shown.clone(),
        })
    }

    /// The same segment with its codes file (already written in the folder) opened (`in_ram`:
    /// copied into memory, see [`Codes::open`]).
    pub(crate) fn with_codes(
        &self,
        dir: &dyn Directory,
        name: &str,
        in_ram: bool,
    ) -> Result<SealedSegment> {
        let codes = Codes::open(dir, &self.folder.join(name), self.count, self.dim, in_ram)?;
        Ok(SealedSegment {
            id: self.id,
            folder: self.folder.clone(),
            dim: self.dim,
            count: self.count,
            vectors: self.vectors.clone(),
            ids: self.ids.clone(),
            versions: self.versions.clone(),
            payloads: self.payloads.clone(),
            payload_blob_len: self.payload_blob_len,
            indexes: self.indexes.clone(),
            graph: self.graph.clone(),
            codes: Some((name.to_owned(), codes)),
            shown: self.shown.clone(),
        })
    }

    /// The quantized codes, if the collection has quantization.
    pub(crate) fn codes(&self) -> Option<&Codes> {
        self.codes.as_ref().map(|(_, c)| c)
    }

    /// The codes file name, for the manifest.
    pub(crate) fn codes_file(&self) -> Option<String> {
        self.codes.as_ref().map(|(n, _)| n.clone())
    }

    /// Locks codes and graph in memory (mlock); the f32 vectors stay in the page cache.
    pub(crate) fn keep_in_ram(&self) {
        let mut files: Vec<&FileBytes> = Vec::new();
        if let Some((_, c)) = &self.codes {
            files.push(c.file_bytes());
        }
        if let Some(g) = &self.graph {
            files.push(g.file());
        }
        for f in files {
            if let Err(e) = f.lock_in_memory() {
                tracing::warn!(
                    segment = self.id,
                    "could not lock {} bytes in memory (RLIMIT_MEMLOCK?): {e}",
                    f.len()
                );
            }
        }
    }

    /// Every file of the segment folder the manifest relies on, with its length.
    pub(crate) fn files(&self) -> Vec<(String, u64)> {
        let mut out = vec![
            (VECTORS.to_owned(), self.vectors.len() as u64),
            (IDS.to_owned(), self.ids.len() as u64),
            (VERSIONS.to_owned(), self.versions.len() as u64),
            (PAYLOADS.to_owned(), self.payloads.len() as u64),
        ];
        for (field, idx) in &self.indexes {
            out.push((index_file_name(field, idx.kind()), idx.file_bytes() as u64));
        }
        if let Some(g) = &self.graph {
            out.push((hnsw::FILE.to_owned(), g.file_bytes() as u64));
        }
        if let Some((name, c)) = &self.codes {
            out.push((name.clone(), c.file_bytes().len() as u64));
        }
        out
    }

    /// Each component's file bytes, bytes resident, and whether it is a copy in anonymous memory.
    pub(crate) fn components(&self) -> Vec<ComponentInfo> {
        let mut out = vec![
            ("vectors", &self.vectors),
            ("ids", &self.ids),
            ("versions", &self.versions),
            ("payloads", &self.payloads),
        ];
        if let Some(g) = &self.graph {
            out.push(("graph", g.file()));
        }
        if let Some((_, c)) = &self.codes {
            out.push(("codes", c.file_bytes()));
        }
        let mut res: Vec<ComponentInfo> = out
            .into_iter()
            .map(|(name, f)| ComponentInfo {
                name,
                mapped_bytes: f.len() as u64,
                resident_bytes: f.resident_bytes(),
                anonymous: f.is_anonymous(),
            })
            .collect();
        let (mapped_bytes, resident_bytes) = self
            .indexes
            .values()
            .map(|i| (i.file_bytes() as u64, i.resident_bytes()))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        if mapped_bytes > 0 {
            res.push(ComponentInfo {
                name: "payload_indexes",
                mapped_bytes,
                resident_bytes,
                anonymous: false,
            });
        }
        res
    }

    /// The HNSW graph, once built.
    pub(crate) fn graph(&self) -> Option<&Graph> {
        self.graph.as_ref()
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Reads every file in full and checks its body checksum.
    pub(crate) fn verify(&self, dir: &dyn Directory) -> Result<()> {
        let mut files = vec![
            (VECTORS.to_owned(), MAGIC_VECTORS),
            (IDS.to_owned(), MAGIC_IDS),
            (VERSIONS.to_owned(), MAGIC_VERSIONS),
            (PAYLOADS.to_owned(), MAGIC_PAYLOADS),
        ];
        for (field, idx) in &self.indexes {
            let magic = match idx.kind() {
                PayloadIndexKind::Keyword => b"DTIDXKW\0",
                PayloadIndexKind::Bool => b"DTIDXBO\0",
                PayloadIndexKind::Integer => b"DTIDXIN\0",
                PayloadIndexKind::Float => b"DTIDXFL\0",
            };
            files.push((index_file_name(field, idx.kind()), magic));
        }
        if self.graph.is_some() {
            files.push((hnsw::FILE.to_owned(), hnsw::MAGIC));
        }
        if let Some((name, c)) = &self.codes {
            files.push((name.clone(), c.kind().magic()));
        }
        for (name, magic) in files {
            let path = self.folder.join(&name);
            let (bytes, header) = open_file(dir, &path, magic)?;
            verify_body(&bytes, &header, &dir.describe(&path))?;
        }
        Ok(())
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn folder(&self) -> &Path {
        &self.folder
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    pub(crate) fn indexed_fields(&self) -> impl Iterator<Item = (&String, PayloadIndexKind)> {
        self.indexes.iter().map(|(f, i)| (f, i.kind()))
    }

    /// All vectors, `dim`-strided, straight from the map.
    pub(crate) fn vectors(&self) -> &[f32] {
        bytemuck::cast_slice(&self.vectors[HEADER_LEN..])
    }

    #[inline]
    pub(crate) fn vector(&self, offset: u32) -> &[f32] {
        let start = offset as usize * self.dim;
        &self.vectors()[start..start + self.dim]
    }

    fn id_entry(&self, i: usize) -> Result<PointId> {
        let b = &self.ids[HEADER_LEN + i * ID_ENTRY..HEADER_LEN + (i + 1) * ID_ENTRY];
        let kind = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
        let value = u128::from(u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")))
            | (u128::from(u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"))) << 64);
        PointId::from_key(kind, value).ok_or_else(|| {
            Error::corrupted(
                self.shown.join(IDS),
                (HEADER_LEN + i * ID_ENTRY) as u64,
                format!("bad point id (kind {kind})"),
            )
        })
    }

    fn entry_offset(&self, i: usize) -> u32 {
        let o = HEADER_LEN + i * ID_ENTRY + 4;
        u32::from_le_bytes(self.ids[o..o + 4].try_into().expect("4 bytes"))
    }

    fn entry_key(&self, i: usize) -> (u32, u128) {
        let b = &self.ids[HEADER_LEN + i * ID_ENTRY..HEADER_LEN + (i + 1) * ID_ENTRY];
        let kind = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
        let value = u128::from(u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")))
            | (u128::from(u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"))) << 64);
        (kind, value)
    }

    /// The point id stored at `offset`.
    pub(crate) fn point_id(&self, offset: u32) -> Result<PointId> {
        let n = self.count as usize;
        let o = HEADER_LEN + n * ID_ENTRY + offset as usize * 4;
        let rank = u32::from_le_bytes(self.ids[o..o + 4].try_into().expect("4 bytes")) as usize;
        if rank >= n {
            return Err(Error::corrupted(
                self.shown.join(IDS),
                o as u64,
                format!("rank {rank} out of range"),
            ));
        }
        self.id_entry(rank)
    }

    /// Offset of `id`, deleted or not.
    pub(crate) fn find(&self, id: PointId) -> Option<u32> {
        let key = id.key();
        let (mut lo, mut hi) = (0, self.count as usize);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.entry_key(mid).cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let o = self.entry_offset(mid);
                    return (o < self.count).then_some(o);
                }
            }
        }
        None
    }

    /// Position in id order of the first id `>= from`.
    pub(crate) fn rank_from(&self, from: PointId) -> usize {
        let key = from.key();
        let (mut lo, mut hi) = (0, self.count as usize);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.entry_key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// `(id, offset)` at position `rank` in id order.
    pub(crate) fn by_rank(&self, rank: usize) -> Result<(PointId, u32)> {
        let id = self.id_entry(rank)?;
        let o = self.entry_offset(rank);
        if o >= self.count {
            return Err(Error::corrupted(
                self.shown.join(IDS),
                (HEADER_LEN + rank * ID_ENTRY + 4) as u64,
                format!("offset {o} out of range"),
            ));
        }
        Ok((id, o))
    }

    pub(crate) fn version(&self, offset: u32) -> Lsn {
        let o = HEADER_LEN + offset as usize * 8;
        u64::from_le_bytes(self.versions[o..o + 8].try_into().expect("8 bytes"))
    }

    /// The raw JSON bytes of a payload.
    pub(crate) fn payload_bytes(&self, offset: u32) -> Result<&[u8]> {
        let table = HEADER_LEN + self.payload_blob_len;
        let at = |i: usize| {
            let o = table + i * 8;
            u64::from_le_bytes(self.payloads[o..o + 8].try_into().expect("8 bytes"))
        };
        let (start, end) = (at(offset as usize), at(offset as usize + 1));
        if start > end || end > self.payload_blob_len as u64 {
            return Err(Error::corrupted(
                self.shown.join(PAYLOADS),
                (table + offset as usize * 8) as u64,
                format!("payload range {start}..{end} out of bounds"),
            ));
        }
        Ok(&self.payloads[HEADER_LEN + start as usize..HEADER_LEN + end as usize])
    }

    pub(crate) fn payload(&self, offset: u32) -> Result<Arc<Payload>> {
        let bytes = self.payload_bytes(offset)?;
        if bytes.is_empty() {
            return Ok(Arc::new(Payload::new()));
        }
        serde_json::from_slice(bytes).map(Arc::new).map_err(|e| {
            Error::corrupted(
                self.shown.join(PAYLOADS),
                HEADER_LEN as u64,
                format!("payload {offset}: {e}"),
            )
        })
    }

    /// Bytes of all files of the segment (mapped, not necessarily resident).
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.vectors.len()
            + self.ids.len()
            + self.versions.len()
            + self.payloads.len()
            + self
                .indexes
                .values()
                .map(SealedIndex::file_bytes)
                .sum::<usize>()
            + self.graph_bytes()
            + self.codes.as_ref().map_or(0, |(_, c)| c.file_bytes().len())
    }

    /// Bytes of the graph file (0 without a graph).
    pub(crate) fn graph_bytes(&self) -> usize {
        self.graph.as_ref().map_or(0, Graph::file_bytes)
    }

    pub(crate) fn index(&self, field: &str) -> Option<&SealedIndex> {
        self.indexes.get(field)
    }
}

impl IndexSource for SealedSegment {
    fn index(&self, key: &str) -> Option<&SealedIndex> {
        self.indexes.get(key)
    }

    fn offsets_of(&self, ids: &HashSet<PointId>) -> RoaringBitmap {
        ids.iter().filter_map(|&id| self.find(id)).collect()
    }

    fn universe(&self) -> RoaringBitmap {
        let mut bm = RoaringBitmap::new();
        bm.insert_range(0..self.count);
        bm
    }
}
