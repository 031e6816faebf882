//! Writes a sealed segment: files are streamed into `<id>.tmp/`, synced, and the folder is
//! renamed into place, so a segment folder either exists complete or not at all.

use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;

use super::sealed::{
    self, ID_ENTRY, IDS, MAGIC_IDS, MAGIC_PAYLOADS, MAGIC_VECTORS, MAGIC_VERSIONS, PAYLOADS,
    VECTORS, VERSIONS,
};
use crate::codec::{FileWriter, HEADER_LEN, open_file};
use crate::directory::Directory;
use crate::error::{Error, IoContext, Result};
use crate::filter::eval::PayloadSchema;
use crate::payload::JsonPath;
use crate::payload::index::{IndexBuilder, file_name as index_file_name};
use crate::types::{Lsn, Metric, Payload, PointId};

const MAGIC_TOMBSTONES: &[u8; 8] = b"DTTOMBS\0";

/// Streams points into a new segment folder.
pub(crate) struct SegmentBuilder<'a> {
    dir: &'a dyn Directory,
    tmp: PathBuf,
    fin: PathBuf,
    parent: PathBuf,
    dim: usize,
    metric: Metric,
    vectors: FileWriter,
    versions: FileWriter,
    blob: FileWriter,
    payload_offsets: Vec<u64>,
    ids: Vec<(u32, u128, u32)>,
    indexes: Vec<(String, IndexBuilder)>,
    count: u32,
}

impl<'a> SegmentBuilder<'a> {
    /// Starts segment `id` under `segments_dir`, with indexes for every field of `schema`.
    pub(crate) fn new(
        dir: &'a dyn Directory,
        segments_dir: &Path,
        id: u64,
        dim: usize,
        metric: Metric,
        schema: &PayloadSchema,
    ) -> Result<Self> {
        let fin = segments_dir.join(sealed::folder_name(id));
        let tmp = segments_dir.join(format!("{}.tmp", sealed::folder_name(id)));
        if dir.exists(&tmp) {
            dir.remove_dir_all(&tmp).at(&dir.describe(&tmp))?;
        }
        dir.create_dir_all(&tmp).at(&dir.describe(&tmp))?;
        let indexes = schema
            .iter()
            .map(|(field, &kind)| {
                let path = JsonPath::parse(field)
                    .map_err(|e| Error::InvalidFilter(format!("bad index key: {e}")))?;
                Ok((field.clone(), IndexBuilder::new(kind, path)))
            })
            .collect::<Result<_>>()?;
        Ok(SegmentBuilder {
            vectors: FileWriter::create(dir, &tmp.join(VECTORS), MAGIC_VECTORS)?,
            versions: FileWriter::create(dir, &tmp.join(VERSIONS), MAGIC_VERSIONS)?,
            blob: FileWriter::create(dir, &tmp.join(PAYLOADS), MAGIC_PAYLOADS)?,
            dir,
            tmp,
            fin,
            parent: segments_dir.to_owned(),
            dim,
            metric,
            payload_offsets: vec![0],
            ids: Vec::new(),
            indexes,
            count: 0,
        })
    }

    /// Adds a point. `payload_json` is its payload as compact JSON (empty for none); `parsed`
    /// may carry the parsed payload to spare a parse when indexes need it.
    pub(crate) fn add(
        &mut self,
        id: PointId,
        version: Lsn,
        vector: &[f32],
        payload_json: &[u8],
        parsed: Option<&Payload>,
    ) -> Result<()> {
        debug_assert_eq!(vector.len(), self.dim);
        let offset = self.count;
        self.vectors.write_f32s(vector)?;
        self.versions.write_u64(version)?;
        let json: &[u8] = if payload_json == b"{}" {
            b""
        } else {
            payload_json
        };
        self.blob.write(json)?;
        self.payload_offsets.push(self.blob.body_len());
        let (kind, value) = id.key();
        self.ids.push((kind, value, offset));
        if !self.indexes.is_empty() && !json.is_empty() {
            let owned;
            let payload = match parsed {
                Some(p) => p,
                None => {
                    owned = serde_json::from_slice::<Payload>(json).map_err(|e| {
                        Error::corrupted(&self.tmp, 0, format!("payload of point {id}: {e}"))
                    })?;
                    &owned
                }
            };
            for (_, b) in &mut self.indexes {
                b.add(offset, payload);
            }
        }
        self.count = self.count.checked_add(1).ok_or_else(|| {
            Error::invalid_argument(
                "optimizer.max_segment_points",
                "a segment holds at most 2^32 - 1 points",
            )
        })?;
        Ok(())
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Writes the remaining files, syncs, and renames the folder into place.
    pub(crate) fn finish(mut self) -> Result<u32> {
        let n = u64::from(self.count);
        self.vectors
            .finish([n, self.dim as u64, self.metric.code()])?;
        self.versions.finish([n, 0, 0])?;
        self.blob.pad_to(8)?;
        let blob_len = self.blob.body_len();
        for off in std::mem::take(&mut self.payload_offsets) {
            self.blob.write_u64(off)?;
        }
        self.blob.finish([n, blob_len, 0])?;

        let mut sorted = std::mem::take(&mut self.ids);
        sorted.sort_unstable();
        if let Some(w) = sorted
            .windows(2)
            .find(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1))
        {
            let id = PointId::from_key(w[0].0, w[0].1).expect("valid key");
            return Err(Error::corrupted(
                &self.tmp,
                0,
                format!("point {id} appears twice in one segment"),
            ));
        }
        let mut rank = vec![0u32; sorted.len()];
        let mut ids = FileWriter::create(self.dir, &self.tmp.join(IDS), MAGIC_IDS)?;
        for (i, &(kind, value, offset)) in sorted.iter().enumerate() {
            ids.write_u32(kind)?;
            ids.write_u32(offset)?;
            ids.write_u64(value as u64)?;
            ids.write_u64((value >> 64) as u64)?;
            rank[offset as usize] = i as u32;
        }
        let rank_bytes: Vec<u8> = rank.iter().flat_map(|r| r.to_le_bytes()).collect();
        ids.write(&rank_bytes)?;
        debug_assert_eq!(ids.body_len(), n * (ID_ENTRY as u64 + 4));
        ids.finish([n, 0, 0])?;

        for (field, b) in std::mem::take(&mut self.indexes) {
            let kind = b.kind();
            b.write(
                self.dir,
                &self.tmp.join(index_file_name(&field, kind)),
                self.count,
            )?;
        }
        let shown = self.dir.describe(&self.tmp);
        self.dir.sync_dir(&self.tmp).at(&shown)?;
        self.dir.rename(&self.tmp, &self.fin).at(&shown)?;
        self.dir
            .sync_dir(&self.parent)
            .at(&self.dir.describe(&self.parent))?;
        Ok(self.count)
    }

    /// Removes the partial folder (after an error).
    pub(crate) fn abandon(dir: &dyn Directory, segments_dir: &Path, id: u64) {
        let tmp = segments_dir.join(format!("{}.tmp", sealed::folder_name(id)));
        let _ = dir.remove_dir_all(&tmp);
    }
}

/// Name of a tombstone file written when the manifest covering `lsn` was written.
pub(crate) fn tombstone_file_name(lsn: Lsn) -> String {
    format!("tombstones-{lsn:020}.bin")
}

/// Writes the deleted offsets of a segment (synced; the caller syncs the folder).
pub(crate) fn write_tombstones(
    dir: &dyn Directory,
    path: &Path,
    deleted: &RoaringBitmap,
    count: u32,
    lsn: Lsn,
) -> Result<()> {
    let mut w = FileWriter::create(dir, path, MAGIC_TOMBSTONES)?;
    let mut bytes = Vec::with_capacity(deleted.serialized_size());
    deleted
        .serialize_into(&mut bytes)
        .expect("writing to a Vec cannot fail");
    w.write(&bytes)?;
    w.finish([deleted.len(), lsn, u64::from(count)])?;
    Ok(())
}

/// Reads a tombstone file, checking it fits a segment of `count` points.
pub(crate) fn read_tombstones(
    dir: &dyn Directory,
    path: &Path,
    count: u32,
) -> Result<RoaringBitmap> {
    let (bytes, header) = open_file(dir, path, MAGIC_TOMBSTONES)?;
    let shown = dir.describe(path);
    crate::codec::verify_body(&bytes, &header, &shown)?;
    let bm = RoaringBitmap::deserialize_from(&bytes[HEADER_LEN..])
        .map_err(|e| Error::corrupted(&shown, HEADER_LEN as u64, format!("bad bitmap: {e}")))?;
    if header.params[2] != u64::from(count)
        || bm.len() != header.params[0]
        || bm.max().is_some_and(|m| m >= count)
    {
        return Err(Error::corrupted(
            &shown,
            32,
            format!("tombstones do not fit a segment of {count} points"),
        ));
    }
    Ok(bm)
}
