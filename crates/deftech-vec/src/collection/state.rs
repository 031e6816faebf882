//! The writer's state of a collection and the read views it publishes.
//!
//! One writer at a time (the collection's writer lock) applies operations to [`WriterState`].
//! Readers never see it directly: after each write the writer builds a [`View`] (cheap: `Arc`s
//! of segments and delete bitmaps, plus the mutable segment's length) and publishes it,
//! immediately or once the WAL is durable.

use std::collections::HashMap;
use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::config::CollectionConfig;
use crate::error::Result;
use crate::filter::eval::PayloadSchema;
use crate::manifest::{Manifest, ManifestSegment};
use crate::payload::{JsonPath, delete_path, set_payload};
use crate::quantization::Quantization;
use crate::segment::{MutableSegment, SegView, Segment};
use crate::types::{Lsn, Payload, PointId};
use crate::wal::Op;

/// A consistent read view: what readers search.
#[derive(Debug)]
pub(crate) struct View {
    /// Every write at or below this LSN is visible, nothing above.
    pub lsn: Lsn,
    /// Newest first: the mutable segment, the frozen one (if sealing), sealed newest to oldest.
    pub segments: Vec<SegView>,
    pub schema: Arc<PayloadSchema>,
}

impl View {
    pub(crate) fn mutable(&self) -> &MutableSegment {
        self.segments[0]
            .seg
            .as_mutable()
            .expect("the first segment of a view is the mutable one")
    }

    pub(crate) fn mutable_len(&self) -> usize {
        self.segments[0].len as usize
    }

    /// Live points.
    pub(crate) fn live_count(&self) -> u64 {
        self.segments.iter().map(SegView::live_count).sum()
    }
}

/// A segment in the writer's state.
#[derive(Debug)]
pub(crate) struct SegEntry {
    pub seg: Arc<Segment>,
    /// Deleted offsets, current.
    pub deletes: RoaringBitmap,
    /// The bitmap of the last built view.
    pub published: Arc<RoaringBitmap>,
    pub dirty: bool,
    /// Deletes newer than the manifest's `applied_lsn`: `(lsn, offset)`, in LSN order.
    pub pending: Vec<(Lsn, u32)>,
    /// Tombstone file holding the deletes up to the manifest's `applied_lsn`.
    pub tombstone_file: Option<String>,
}

impl SegEntry {
    pub(crate) fn new(
        seg: Arc<Segment>,
        deletes: RoaringBitmap,
        tombstone_file: Option<String>,
    ) -> Self {
        SegEntry {
            seg,
            published: Arc::new(deletes.clone()),
            deletes,
            dirty: false,
            pending: Vec::new(),
            tombstone_file,
        }
    }

    fn delete(&mut self, offset: u32, lsn: Lsn) {
        if self.deletes.insert(offset) {
            self.pending.push((lsn, offset));
            self.dirty = true;
        }
    }

    /// Points written to the segment (live or not).
    pub(crate) fn len(&self) -> u32 {
        match &*self.seg {
            Segment::Mutable(m) => m.written() as u32,
            Segment::Sealed(s) => s.count(),
        }
    }

    /// Deletes at or below `lsn` (the durable part as of a manifest at `lsn`).
    pub(crate) fn deletes_up_to(&self, lsn: Lsn) -> RoaringBitmap {
        let mut bm = self.deletes.clone();
        for &(l, off) in &self.pending {
            if l > lsn {
                bm.remove(off);
            }
        }
        bm
    }

    fn seg_view(&mut self) -> SegView {
        if self.dirty {
            self.published = Arc::new(self.deletes.clone());
            self.dirty = false;
        }
        SegView {
            seg: self.seg.clone(),
            len: self.len(),
            deletes: self.published.clone(),
        }
    }
}

/// Where the current version of a point is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loc {
    Mutable(u32),
    Frozen(u32),
    Sealed(usize, u32),
}

/// The writer's state.
#[derive(Debug)]
pub(crate) struct WriterState {
    /// Last applied LSN.
    pub lsn: Lsn,
    /// `applied_lsn` of the durable manifest.
    pub applied_lsn: Lsn,
    pub next_segment_id: u64,
    pub schema: Arc<PayloadSchema>,
    pub mutable: SegEntry,
    /// The previous mutable segment while the optimizer seals it.
    pub frozen: Option<SegEntry>,
    /// LSN at which `frozen` was frozen: it holds every mutable-segment write up to it.
    pub frozen_lsn: Lsn,
    /// Sealed segments, oldest first.
    pub sealed: Vec<SegEntry>,
    /// The quantization new segments are built with (the collection's, unless changed since
    /// it was created).
    pub quantization: Option<Quantization>,
    /// Sealed segments still to be rewritten with `quantization`.
    pub requantize: Vec<u64>,
}

/// A point's current version, read by the writer.
pub(crate) struct Current {
    pub vector: Vec<f32>,
    pub payload: Arc<Payload>,
}

impl WriterState {
    /// The manifest of this state, over `segments`, durable up to `applied_lsn`: the
    /// collection's configuration with the current quantization, and the segments still to be
    /// rewritten among those that remain.
    pub(crate) fn manifest(
        &self,
        config: &CollectionConfig,
        applied_lsn: Lsn,
        segments: Vec<ManifestSegment>,
    ) -> Manifest {
        let mut config = config.clone();
        config.quantization.clone_from(&self.quantization);
        let requantize = self
            .requantize
            .iter()
            .copied()
            .filter(|id| segments.iter().any(|s| s.id == *id))
            .collect();
        Manifest {
            config,
            applied_lsn,
            next_segment_id: self.next_segment_id,
            schema: (*self.schema).clone(),
            segments,
            requantize,
        }
    }

    /// Finds the live version of `id`.
    pub(crate) fn locate(&self, id: PointId) -> Option<Loc> {
        let m = self.mutable.seg.as_mutable().expect("mutable");
        if let Some(slot) = m.find_latest(id) {
            // The newest version of a point in the mutable segment supersedes all others.
            return (!self.mutable.deletes.contains(slot)).then_some(Loc::Mutable(slot));
        }
        if let Some(f) = &self.frozen {
            let fm = f.seg.as_mutable().expect("frozen is mutable");
            if let Some(slot) = fm.find_latest(id) {
                return (!f.deletes.contains(slot)).then_some(Loc::Frozen(slot));
            }
        }
        for (i, e) in self.sealed.iter().enumerate().rev() {
            let s = e.seg.as_sealed().expect("sealed");
            if let Some(off) = s.find(id)
                && !e.deletes.contains(off)
            {
                return Some(Loc::Sealed(i, off));
            }
        }
        None
    }

    fn entry_mut(&mut self, loc: Loc) -> (&mut SegEntry, u32) {
        match loc {
            Loc::Mutable(s) => (&mut self.mutable, s),
            Loc::Frozen(s) => (self.frozen.as_mut().expect("frozen exists"), s),
            Loc::Sealed(i, o) => (&mut self.sealed[i], o),
        }
    }

    /// Reads the current version at `loc` (possibly not yet published).
    pub(crate) fn read(&self, loc: Loc) -> Result<Current> {
        let from_mutable = |m: &MutableSegment, slot: u32| {
            let meta = m.writer_meta(slot);
            Current {
                vector: m.writer_vector(slot).to_vec(),
                payload: meta.payload.clone(),
            }
        };
        Ok(match loc {
            Loc::Mutable(slot) => {
                from_mutable(self.mutable.seg.as_mutable().expect("mutable"), slot)
            }
            Loc::Frozen(slot) => from_mutable(
                self.frozen
                    .as_ref()
                    .expect("frozen")
                    .seg
                    .as_mutable()
                    .expect("mutable"),
                slot,
            ),
            Loc::Sealed(i, off) => {
                let s = self.sealed[i].seg.as_sealed().expect("sealed");
                Current {
                    vector: s.vector(off).to_vec(),
                    payload: s.payload(off)?,
                }
            }
        })
    }

    /// LSN of the version at `loc`.
    pub(crate) fn version_at(&self, loc: Loc) -> Lsn {
        match loc {
            Loc::Mutable(slot) => {
                self.mutable
                    .seg
                    .as_mutable()
                    .expect("mutable")
                    .writer_meta(slot)
                    .version
            }
            Loc::Frozen(slot) => {
                let f = self.frozen.as_ref().expect("frozen");
                f.seg
                    .as_mutable()
                    .expect("mutable")
                    .writer_meta(slot)
                    .version
            }
            Loc::Sealed(i, off) => self.sealed[i].seg.as_sealed().expect("sealed").version(off),
        }
    }

    fn delete_at(&mut self, loc: Loc, lsn: Lsn) {
        let (entry, off) = self.entry_mut(loc);
        entry.delete(off, lsn);
    }

    fn push(&mut self, id: PointId, lsn: Lsn, vector: &[f32], payload: Arc<Payload>) {
        self.mutable
            .seg
            .as_mutable()
            .expect("mutable")
            .push(id, lsn, vector, payload);
    }

    /// Writes a new version of `id` with an edited payload.
    fn edit_payload(
        &mut self,
        id: PointId,
        lsn: Lsn,
        edit: impl FnOnce(&mut Payload),
    ) -> Result<()> {
        let Some(loc) = self.locate(id) else {
            return Ok(()); // Replay of an edit of a point deleted later: nothing to do.
        };
        if self.version_at(loc) >= lsn {
            return Ok(()); // Already applied.
        }
        let cur = self.read(loc)?;
        let mut payload = (*cur.payload).clone();
        edit(&mut payload);
        self.delete_at(loc, lsn);
        self.push(id, lsn, &cur.vector, Arc::new(payload));
        Ok(())
    }

    /// Applies one logged operation. Live writes and WAL replay both come through here, so
    /// replay rebuilds exactly the state the writes produced.
    pub(crate) fn apply(&mut self, lsn: Lsn, op: &Op) -> Result<()> {
        debug_assert!(lsn > self.lsn, "LSNs must increase");
        match op {
            Op::Upsert(points) => {
                let dim = self.mutable.seg.as_mutable().expect("mutable").dim();
                if let Some(p) = points
                    .iter()
                    .find(|p| p.vector.len() != dim || p.vector.iter().any(|x| !x.is_finite()))
                {
                    // Only a log written by something else (or damaged with a valid checksum)
                    // gets here: writes are validated before they are logged.
                    return Err(crate::error::Error::Corrupted {
                        path: std::path::PathBuf::from("wal"),
                        offset: 0,
                        reason: format!(
                            "LSN {lsn}: point {} has a vector of {} values (collection dimension {dim}) or a non-finite value",
                            p.id,
                            p.vector.len()
                        ),
                    });
                }
                for p in points {
                    if let Some(loc) = self.locate(p.id) {
                        if self.version_at(loc) >= lsn {
                            continue; // Already applied.
                        }
                        self.delete_at(loc, lsn);
                    }
                    self.push(p.id, lsn, &p.vector, Arc::new(p.payload.clone()));
                }
            }
            Op::Delete(ids) => {
                for &id in ids {
                    if let Some(loc) = self.locate(id)
                        && self.version_at(loc) < lsn
                    {
                        self.delete_at(loc, lsn);
                    }
                }
            }
            Op::SetPayload { ids, payload, key } => {
                let key = match key {
                    Some(k) => Some(crate::payload::parse_set_key(k)?),
                    None => None,
                };
                for &id in ids {
                    self.edit_payload(id, lsn, |p| set_payload(p, payload, key.as_ref()))?;
                }
            }
            Op::OverwritePayload { ids, payload } => {
                for &id in ids {
                    self.edit_payload(id, lsn, |p| *p = payload.clone())?;
                }
            }
            Op::DeletePayloadKeys { ids, keys } => {
                let paths: Vec<JsonPath> = keys
                    .iter()
                    .filter_map(|k| JsonPath::parse(k).ok())
                    .collect();
                for &id in ids {
                    self.edit_payload(id, lsn, |p| {
                        for path in &paths {
                            delete_path(p, path);
                        }
                    })?;
                }
            }
            Op::ClearPayload(ids) => {
                for &id in ids {
                    self.edit_payload(id, lsn, Payload::clear)?;
                }
            }
            Op::CreateIndex { field, kind } => {
                Arc::make_mut(&mut self.schema).insert(field.clone(), *kind);
            }
            Op::DropIndex { field } => {
                Arc::make_mut(&mut self.schema).remove(field);
            }
        }
        self.lsn = lsn;
        Ok(())
    }

    /// Builds the view of the current state.
    pub(crate) fn view(&mut self) -> Arc<View> {
        let mut segments = Vec::with_capacity(self.sealed.len() + 2);
        segments.push(self.mutable.seg_view());
        if let Some(f) = &mut self.frozen {
            segments.push(f.seg_view());
        }
        for e in self.sealed.iter_mut().rev() {
            segments.push(e.seg_view());
        }
        Arc::new(View {
            lsn: self.lsn,
            segments,
            schema: self.schema.clone(),
        })
    }

    /// Undoes every write after `view` (which must be of the current segment layout): used
    /// when the WAL could not be made durable.
    pub(crate) fn rollback_to(&mut self, view: &View) {
        let by_id: HashMap<u64, &SegView> = view.segments.iter().map(|s| (s.seg.id(), s)).collect();
        let lsn = view.lsn;
        let entries = std::iter::once(&mut self.mutable)
            .chain(self.frozen.as_mut())
            .chain(self.sealed.iter_mut());
        for e in entries {
            let sv = by_id
                .get(&e.seg.id())
                .expect("rollback only within one segment layout");
            e.deletes = (*sv.deletes).clone();
            e.published = sv.deletes.clone();
            e.dirty = false;
            e.pending.retain(|&(l, _)| l <= lsn);
        }
        self.mutable
            .seg
            .as_mutable()
            .expect("mutable")
            .truncate(view.mutable_len());
        self.schema = view.schema.clone();
        self.lsn = lsn;
    }
}
