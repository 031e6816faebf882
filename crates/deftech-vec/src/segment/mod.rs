//! Segments: the in-memory mutable segment and immutable sealed segments, and the read view of
//! either as of some LSN.

mod arena;
pub(crate) mod mutable;
pub(crate) mod sealed;
pub(crate) mod writer;

use std::sync::Arc;

use roaring::RoaringBitmap;

pub(crate) use mutable::MutableSegment;
pub(crate) use sealed::SealedSegment;

use crate::error::Result;
use crate::types::{Lsn, Payload, PointId};

/// A segment of either kind. Always behind an `Arc`, so the size difference of the variants
/// costs nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Segment {
    Mutable(MutableSegment),
    Sealed(SealedSegment),
}

impl Segment {
    pub(crate) fn id(&self) -> u64 {
        match self {
            Segment::Mutable(m) => m.id(),
            Segment::Sealed(s) => s.id(),
        }
    }

    pub(crate) fn as_sealed(&self) -> Option<&SealedSegment> {
        match self {
            Segment::Sealed(s) => Some(s),
            Segment::Mutable(_) => None,
        }
    }

    pub(crate) fn as_mutable(&self) -> Option<&MutableSegment> {
        match self {
            Segment::Mutable(m) => Some(m),
            Segment::Sealed(_) => None,
        }
    }
}

/// A segment as some reader sees it: its first `len` points, minus `deletes`.
#[derive(Clone, Debug)]
pub(crate) struct SegView {
    pub seg: Arc<Segment>,
    pub len: u32,
    pub deletes: Arc<RoaringBitmap>,
}

impl SegView {
    #[inline]
    pub(crate) fn is_live(&self, offset: u32) -> bool {
        offset < self.len && !self.deletes.contains(offset)
    }

    /// Offset of the visible, live version of `id`, if any.
    pub(crate) fn find(&self, id: PointId) -> Option<u32> {
        let off = match &*self.seg {
            Segment::Mutable(m) => {
                let off = m.find(id, self.len as usize)?;
                // A version chain read while the writer rolled back unpublished slots may lead
                // to a slot reused by another point: check the id of the (published) slot.
                if off >= self.len || m.meta(off).id != id {
                    return None;
                }
                off
            }
            Segment::Sealed(s) => s.find(id)?,
        };
        self.is_live(off).then_some(off)
    }

    pub(crate) fn point_id(&self, offset: u32) -> Result<PointId> {
        match &*self.seg {
            Segment::Mutable(m) => Ok(m.meta(offset).id),
            Segment::Sealed(s) => s.point_id(offset),
        }
    }

    pub(crate) fn version(&self, offset: u32) -> Lsn {
        match &*self.seg {
            Segment::Mutable(m) => m.meta(offset).version,
            Segment::Sealed(s) => s.version(offset),
        }
    }

    pub(crate) fn payload(&self, offset: u32) -> Result<Arc<Payload>> {
        match &*self.seg {
            Segment::Mutable(m) => Ok(m.meta(offset).payload.clone()),
            Segment::Sealed(s) => s.payload(offset),
        }
    }

    #[inline]
    pub(crate) fn vector(&self, offset: u32) -> &[f32] {
        match &*self.seg {
            Segment::Mutable(m) => m.vector(offset),
            Segment::Sealed(s) => s.vector(offset),
        }
    }

    /// Live points in this view.
    pub(crate) fn live_count(&self) -> u64 {
        u64::from(self.len) - self.deletes.len()
    }
}
