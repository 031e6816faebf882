//! The vector-storage abstraction the graph code searches through: a [`Scorer`] gives the
//! distance from a query (or from a stored point) to stored point `i`. The graph never sees
//! how vectors are stored, so quantized codes with rescoring can plug in beside raw `f32`.

use crate::distance;
use crate::types::Metric;

/// Distances from one query to stored points; lower is closer.
pub(crate) trait Scorer {
    /// Distance to point `i` (`i` is below the number of stored points).
    fn distance(&self, i: u32) -> f32;
    /// Hints that point `i` will be scored soon.
    #[inline]
    fn prefetch(&self, _i: u32) {}
}

/// `f32` vectors stored contiguously, `dim`-strided.
#[derive(Clone, Copy)]
pub(crate) struct F32Vectors<'a> {
    pub vectors: &'a [f32],
    pub dim: usize,
    op: Op,
}

impl<'a> F32Vectors<'a> {
    pub(crate) fn new(metric: Metric, vectors: &'a [f32], dim: usize) -> Self {
        F32Vectors {
            vectors,
            dim,
            op: Op::for_metric(metric),
        }
    }

    /// Number of stored points.
    pub(crate) fn len(&self) -> usize {
        self.vectors.len() / self.dim
    }

    #[inline]
    pub(crate) fn vector(&self, i: u32) -> &'a [f32] {
        let start = i as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// Distance between two stored points.
    #[inline]
    pub(crate) fn between(&self, a: u32, b: u32) -> f32 {
        self.op.distance(self.vector(a), self.vector(b))
    }

    /// A scorer for an external query (already normalized for Cosine).
    pub(crate) fn query(self, query: &'a [f32]) -> F32Query<'a> {
        F32Query {
            store: self,
            query,
            op: self.op,
        }
    }
}

/// The distance of a metric with the CPU's kernel, chosen once.
#[derive(Clone, Copy)]
pub(crate) enum Op {
    Plain(distance::Kernel),
    NegDot(distance::Kernel),
}

impl Op {
    pub(crate) fn for_metric(metric: Metric) -> Op {
        let k = distance::kernels();
        match metric {
            Metric::Cosine | Metric::Dot => Op::NegDot(k.dot),
            Metric::Euclid => Op::Plain(k.l2sq),
            Metric::Manhattan => Op::Plain(distance::l1),
        }
    }

    /// The internal distance (lower is closer).
    #[inline]
    pub(crate) fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Op::Plain(k) => k(a, b),
            Op::NegDot(k) => -k(a, b),
        }
    }
}

/// An `f32` query against [`F32Vectors`]; the kernel is chosen once, not per distance.
#[derive(Clone, Copy)]
pub(crate) struct F32Query<'a> {
    store: F32Vectors<'a>,
    query: &'a [f32],
    op: Op,
}

impl Scorer for F32Query<'_> {
    #[inline]
    fn distance(&self, i: u32) -> f32 {
        self.op.distance(self.query, self.store.vector(i))
    }

    #[inline]
    fn prefetch(&self, i: u32) {
        let start = i as usize * self.store.dim;
        if let Some(v) = self.store.vectors.get(start..start + self.store.dim) {
            distance::prefetch(v);
        }
    }
}
