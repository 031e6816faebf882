//! The mutable segment: in memory, append-only, searched by exact scan.
//!
//! Every write appends a new *version* of a point in a new slot; the previous version of the
//! same point in this segment is linked from it and deleted (through the collection's delete
//! bitmaps), so readers holding an older view still find the version they can see.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::arena::{Arena, Links};
use crate::types::{Lsn, Payload, PointId};

pub(crate) const NO_SLOT: u32 = u32::MAX;

pub(crate) struct SlotMeta {
    pub id: PointId,
    pub version: Lsn,
    pub payload: Arc<Payload>,
}

/// An in-memory segment.
pub(crate) struct MutableSegment {
    id: u64,
    dim: usize,
    vectors: Arena<f32>,
    meta: Arena<SlotMeta>,
    prev: Links,
    /// Newest slot of every point ever written here (it may be deleted or not yet published).
    latest: RwLock<HashMap<PointId, u32>>,
    /// Slots written (published or not); the writer mutex orders appends.
    len: Mutex<usize>,
}

impl std::fmt::Debug for MutableSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutableSegment")
            .field("id", &self.id)
            .field("len", &*self.len.lock())
            .finish()
    }
}

impl MutableSegment {
    pub(crate) fn new(id: u64, dim: usize) -> Self {
        MutableSegment {
            id,
            dim,
            vectors: Arena::new(dim),
            meta: Arena::new(1),
            prev: Links::new(),
            latest: RwLock::new(HashMap::new()),
            len: Mutex::new(0),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Slots written so far (published or not).
    pub(crate) fn written(&self) -> usize {
        *self.len.lock()
    }

    /// Appends a version of a point; returns its slot. Not visible to readers until published.
    pub(crate) fn push(
        &self,
        id: PointId,
        version: Lsn,
        vector: &[f32],
        payload: Arc<Payload>,
    ) -> u32 {
        assert_eq!(vector.len(), self.dim);
        let mut len = self.len.lock();
        let slot = *len;
        assert!(slot < u32::MAX as usize, "mutable segment full");
        self.vectors.write(slot, vector.iter().copied());
        self.meta.write(
            slot,
            std::iter::once(SlotMeta {
                id,
                version,
                payload,
            }),
        );
        let mut latest = self.latest.write();
        let prev = latest.insert(id, slot as u32).unwrap_or(NO_SLOT);
        self.prev.set(slot, prev);
        *len = slot + 1;
        slot as u32
    }

    /// Makes slots `< len` visible.
    pub(crate) fn publish(&self, len: usize) {
        self.vectors.publish(len);
        self.meta.publish(len);
    }

    /// Discards unpublished slots at and above `len` (after a failed fsync).
    pub(crate) fn truncate(&self, new_len: usize) {
        let mut len = self.len.lock();
        assert!(
            new_len >= self.vectors.published(),
            "cannot drop published slots"
        );
        let mut latest = self.latest.write();
        for slot in (new_len..*len).rev() {
            let id = self.meta_unchecked_id(slot);
            match self.prev.get(slot) {
                NO_SLOT => latest.remove(&id),
                prev => latest.insert(id, prev),
            };
        }
        *len = new_len.min(*len);
    }

    /// Id of a written slot (published or not); only called with the writer mutex held.
    fn meta_unchecked_id(&self, slot: usize) -> PointId {
        self.meta.get_written(slot)[0].id
    }

    /// The newest slot of `id` below `len` (it may be deleted: the caller checks).
    pub(crate) fn find(&self, id: PointId, len: usize) -> Option<u32> {
        let mut slot = *self.latest.read().get(&id)?;
        while slot != NO_SLOT && slot as usize >= len {
            slot = self.prev.get(slot as usize);
        }
        (slot != NO_SLOT).then_some(slot)
    }

    /// The writer's lookup: newest slot of `id`, published or not.
    pub(crate) fn find_latest(&self, id: PointId) -> Option<u32> {
        self.latest.read().get(&id).copied()
    }

    pub(crate) fn vector(&self, slot: u32) -> &[f32] {
        self.vectors.get(slot as usize)
    }

    pub(crate) fn meta(&self, slot: u32) -> &SlotMeta {
        &self.meta.get(slot as usize)[0]
    }

    /// The writer's read of any written slot (published or not). Only called with the
    /// collection's writer lock held, which is what makes it the single writer of the arenas.
    pub(crate) fn writer_vector(&self, slot: u32) -> &[f32] {
        self.vectors.get_written(slot as usize)
    }

    /// The writer's read of a slot's metadata (see [`writer_vector`](Self::writer_vector)).
    pub(crate) fn writer_meta(&self, slot: u32) -> &SlotMeta {
        &self.meta.get_written(slot as usize)[0]
    }

    /// Vectors of slots `< len`, as contiguous runs of `dim`-strided values.
    pub(crate) fn vector_runs(&self, len: usize) -> impl Iterator<Item = (usize, &[f32])> {
        self.vectors.runs(len)
    }

    /// Bytes of heap held (vectors and metadata, not payload contents).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.written() * (self.dim * 4 + std::mem::size_of::<SlotMeta>() + 4 + 24)
    }
}
