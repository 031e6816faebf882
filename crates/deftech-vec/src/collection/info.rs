//! What [`Collection::info`] reports: points, segments, per-component memory (mapped and
//! resident bytes, so operators can tell page cache from heap), WAL size and optimizer counters.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Collection, Inner};
use crate::config::CollectionConfig;
use crate::payload::PayloadIndexKind;
use crate::segment::Segment;
use crate::types::Lsn;

/// Collection status as reported by [`Collection::info`].
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CollectionInfo {
    /// The collection's name.
    pub name: String,
    /// Its configuration.
    pub config: CollectionConfig,
    /// Live points.
    pub points: u64,
    /// Points in sealed segments (searchable by index once the graph exists).
    pub sealed_points: u64,
    /// Last applied (and visible) LSN.
    pub lsn: Lsn,
    /// LSN up to which segments on disk hold everything (the WAL after it is replayed on open).
    pub applied_lsn: Lsn,
    /// Segments, newest first.
    pub segments: Vec<SegmentInfo>,
    /// Declared payload indexes.
    pub payload_schema: BTreeMap<String, PayloadIndexKind>,
    /// Bytes held by WAL files.
    pub wal_bytes: u64,
    /// Number of WAL files.
    pub wal_files: usize,
    /// Optimizer counters.
    pub optimizer: OptimizerInfo,
}

/// One segment in [`CollectionInfo`].
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// Segment id.
    pub id: u64,
    /// `mutable`, `sealing` or `sealed`.
    pub kind: &'static str,
    /// Live points.
    pub points: u64,
    /// Deleted points still held.
    pub deleted: u64,
    /// Payload indexes present in this segment.
    pub indexed_fields: Vec<String>,
    /// Bytes of the HNSW graph file (0 when the segment is scanned instead).
    pub graph_bytes: u64,
    /// Per component (vectors, codes, graph, ids, versions, payloads, payload indexes): bytes
    /// mapped and bytes resident in memory right now. Mapped files live in the page cache, not
    /// the heap: resident pages can be evicted unless locked (`always_ram`).
    pub components: Vec<ComponentInfo>,
    /// Bytes of mapped files (sealed) — page cache, not heap.
    pub mapped_bytes: u64,
    /// Bytes of heap (mutable segments).
    pub heap_bytes: u64,
}

/// Memory of one component of a segment.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ComponentInfo {
    /// `vectors`, `codes`, `graph`, `ids`, `versions`, `payloads`, `payload_indexes`, or
    /// `heap` for a mutable segment.
    pub name: &'static str,
    /// Bytes of the file (or heap).
    pub mapped_bytes: u64,
    /// Bytes of it in memory now.
    pub resident_bytes: u64,
    /// True when the component is a copy in anonymous memory (the graph and quantized codes of
    /// segments of 2 MiB or more, in huge pages): process memory that the kernel can only swap
    /// out (not at all with `always_ram`, which locks it), unlike the page cache behind mapped
    /// files, which it drops under pressure. False for mapped files.
    pub anonymous: bool,
}

/// Optimizer activity.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct OptimizerInfo {
    /// Mutable segments sealed.
    pub seals: u64,
    /// Merges and vacuums.
    pub merges: u64,
    /// Payload index files built for existing segments.
    pub index_builds: u64,
    /// Time spent building HNSW graphs, in milliseconds (all threads, wall clock).
    pub graph_build_ms: u64,
    /// Failed jobs (retried later).
    pub errors: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

impl Collection {
    /// Status, sizes and counters.
    pub fn info(&self) -> CollectionInfo {
        let view = self.inner.view();
        let (applied_lsn, wal_bytes, wal_files, quantization) = {
            let w = self.inner.writer.lock();
            (
                w.state.applied_lsn,
                w.wal.total_bytes(),
                w.wal.file_count(),
                w.state.quantization.clone(),
            )
        };
        let segments = view
            .segments
            .iter()
            .enumerate()
            .map(|(i, sv)| match &*sv.seg {
                Segment::Mutable(m) => SegmentInfo {
                    id: m.id(),
                    kind: if i == 0 { "mutable" } else { "sealing" },
                    points: sv.live_count(),
                    deleted: sv.deletes.len(),
                    indexed_fields: Vec::new(),
                    graph_bytes: 0,
                    components: vec![ComponentInfo {
                        name: "heap",
                        mapped_bytes: m.heap_bytes() as u64,
                        resident_bytes: m.heap_bytes() as u64,
                        anonymous: true,
                    }],
                    mapped_bytes: 0,
                    heap_bytes: m.heap_bytes() as u64,
                },
                Segment::Sealed(s) => SegmentInfo {
                    id: s.id(),
                    kind: "sealed",
                    points: sv.live_count(),
                    deleted: sv.deletes.len(),
                    indexed_fields: s.indexed_fields().map(|(f, _)| f.clone()).collect(),
                    graph_bytes: s.graph_bytes() as u64,
                    components: s.components(),
                    mapped_bytes: s.mapped_bytes() as u64,
                    heap_bytes: sv.deletes.serialized_size() as u64,
                },
            })
            .collect::<Vec<_>>();
        CollectionInfo {
            name: self.inner.name.clone(),
            config: CollectionConfig {
                quantization,
                ..self.inner.config.clone()
            },
            points: view.live_count(),
            sealed_points: view
                .segments
                .iter()
                .filter(|s| s.seg.as_sealed().is_some())
                .map(|s| s.live_count())
                .sum(),
            lsn: view.lsn,
            applied_lsn,
            segments,
            payload_schema: (*view.schema).clone(),
            wal_bytes,
            wal_files,
            optimizer: self.inner.stats_info(),
        }
    }
}

impl Inner {
    fn stats_info(&self) -> OptimizerInfo {
        OptimizerInfo {
            seals: self.stats.seals.load(Ordering::Relaxed),
            merges: self.stats.merges.load(Ordering::Relaxed),
            index_builds: self.stats.index_builds.load(Ordering::Relaxed),
            graph_build_ms: self.stats.graph_build_ms.load(Ordering::Relaxed),
            errors: self.stats.optimizer_errors.load(Ordering::Relaxed),
            last_error: self.stats.last_optimizer_error.lock().clone(),
        }
    }
}
