//! Vector distances: simsimd kernels (runtime-dispatched SIMD, with simsimd's own serial
//! fallback) and plain scalar references used by tests; and a cache prefetch hint.
//!
//! # Safety
//!
//! The one `unsafe` block here issues a prefetch instruction for an address inside a live
//! slice. Prefetches never fault and do not read memory architecturally, so any address is
//! sound; we only ever pass addresses of borrowed slices.
//!
//! Internally every metric is a *distance*, lower is closer: `-dot` for Cosine (over vectors
//! normalized at insert) and Dot, squared L2 for Euclid, L1 for Manhattan. [`to_score`] turns it
//! into Qdrant's score.

use simsimd::SpatialSimilarity;

use crate::types::Metric;

/// Asks the CPU to start loading `v` into the cache (the first 4 cache lines).
#[inline]
pub(crate) fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = v.as_ptr().cast::<i8>();
        let lines = (v.len() * 4).div_ceil(64).min(4);
        for l in 0..lines {
            // SAFETY: see the module contract: prefetching an address inside a live slice
            // cannot fault; `l * 64 < len * 4` keeps it inside.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(l * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// Dot product.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    match <f32 as SpatialSimilarity>::dot(a, b) {
        Some(d) => d as f32,
        None => scalar_dot(a, b),
    }
}

/// Squared Euclidean distance.
#[inline]
pub(crate) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    match <f32 as SpatialSimilarity>::l2sq(a, b) {
        Some(d) => d as f32,
        None => scalar_l2sq(a, b),
    }
}

/// Manhattan distance (no simsimd kernel: a loop the compiler vectorizes).
#[inline]
pub(crate) fn l1(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

pub(crate) fn scalar_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(crate) fn scalar_l2sq(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The internal distance (lower is closer).
#[inline]
pub(crate) fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => -dot(a, b),
        Metric::Euclid => l2sq(a, b),
        Metric::Manhattan => l1(a, b),
    }
}

/// Qdrant's score from an internal distance.
#[inline]
pub(crate) fn to_score(metric: Metric, distance: f32) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => -distance,
        Metric::Euclid => distance.max(0.0).sqrt(),
        Metric::Manhattan => distance,
    }
}

/// Does `score` pass Qdrant's (strict) score threshold?
pub(crate) fn passes_threshold(metric: Metric, score: f32, threshold: Option<f32>) -> bool {
    match threshold {
        None => true,
        Some(t) if metric.higher_is_better() => score > t,
        Some(t) => score < t,
    }
}

/// Scales `v` to unit length in place (a zero vector stays zero).
pub(crate) fn normalize(v: &mut [f32]) {
    let norm = scalar_dot(v, v).sqrt();
    if norm > 0.0 {
        for x in v {
            *x /= norm;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vecs(dim: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        (
            (0..dim).map(|_| next()).collect(),
            (0..dim).map(|_| next()).collect(),
        )
    }

    #[test]
    fn simd_kernels_match_scalar() {
        for dim in [1, 3, 7, 16, 100, 128, 384, 1024, 1536] {
            let (a, b) = vecs(dim, dim as u64);
            let tol = 1e-4 * dim as f32;
            assert!(
                (dot(&a, &b) - scalar_dot(&a, &b)).abs() < tol,
                "dot dim {dim}"
            );
            assert!(
                (l2sq(&a, &b) - scalar_l2sq(&a, &b)).abs() < tol,
                "l2sq dim {dim}"
            );
        }
    }

    #[test]
    fn scores_follow_qdrant_conventions() {
        let a = [3.0, 4.0];
        let b = [0.0, 0.0];
        assert_eq!(
            to_score(Metric::Euclid, distance(Metric::Euclid, &a, &b)),
            5.0
        );
        assert_eq!(
            to_score(Metric::Manhattan, distance(Metric::Manhattan, &a, &b)),
            7.0
        );
        assert_eq!(to_score(Metric::Dot, distance(Metric::Dot, &a, &a)), 25.0);
        let mut n = a;
        normalize(&mut n);
        assert!((to_score(Metric::Cosine, distance(Metric::Cosine, &n, &n)) - 1.0).abs() < 1e-6);
        assert!(passes_threshold(Metric::Dot, 1.0, Some(0.5)));
        assert!(
            !passes_threshold(Metric::Dot, 0.5, Some(0.5)),
            "strict, as Qdrant"
        );
        assert!(passes_threshold(Metric::Euclid, 0.4, Some(0.5)));
        assert!(!passes_threshold(Metric::Euclid, 0.5, Some(0.5)));
    }
}
