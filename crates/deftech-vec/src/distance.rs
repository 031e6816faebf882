//! Vector distances: simsimd kernels (runtime-dispatched SIMD, with simsimd's own serial
//! fallback) and plain scalar references used by tests; and a cache prefetch hint.
//!
//! On x86-64 with AVX2 and FMA (and without AVX-512, where simsimd's kernels are used), `f32`
//! L2 and dot products use hand-written AVX2 kernels: for the short vectors HNSW compares
//! millions of times, simsimd's FFI call and per-call dispatch cost as much as the arithmetic.
//! The code kernels (int8 and binary codes) are AVX2 wherever AVX2 is present, AVX-512
//! machines included. [`kernels`] picks the implementations once per process.
//!
//! # Safety
//!
//! The `unsafe` blocks here (1) issue prefetch instructions for addresses inside live slices —
//! prefetches never fault, so that is always sound — and (2) call `#[target_feature]` kernels,
//! which is sound only on CPUs with those features: the kernels are private and reachable only
//! through the table [`kernels`] fills after `is_x86_feature_detected!` confirmed the features.
//! The kernels read only within `a[..n]` and `b[..n]` with `n = min(a.len(), b.len())`.
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

/// Asks the CPU to start loading `b` into the cache (up to 16 cache lines).
#[inline]
pub(crate) fn prefetch_bytes(b: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = b.as_ptr().cast::<i8>();
        for l in 0..b.len().div_ceil(64).min(16) {
            // SAFETY: see the module contract: prefetching an address inside a live slice
            // cannot fault; `l * 64 < len` keeps it inside.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(l * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = b;
}

/// A distance kernel: two equal-length slices to a number.
pub(crate) type Kernel = fn(&[f32], &[f32]) -> f32;

/// A binary code kernel: the Hamming distance of two bit vectors.
pub(crate) type KernelBits = fn(&[u64], &[u64]) -> u32;

/// A code kernel: unsigned 8-bit codes against 16-bit signed query weights, `Σ u_j·d_j` in
/// wrapping `i32` arithmetic (exact when the true sum fits, which [`i16_weight_limit`] ensures).
pub(crate) type KernelU8I16 = fn(&[u8], &[i16]) -> i32;

/// The largest query weight magnitude for int8 codes of dimension `dim` whose sum cannot leave
/// `i32`: `255·limit·dim < 2^31` (±8,224 at 1,024 dimensions: 15 bits with the sign; 128 at
/// the largest dimension a collection allows, 65,536).
pub(crate) fn i16_weight_limit(dim: usize) -> i16 {
    let limit = (i32::MAX as usize / (255 * dim.max(1))).clamp(1, i16::MAX as usize);
    debug_assert!(
        255 * dim * limit <= i32::MAX as usize,
        "dimension {dim} too large for exact int8 sums"
    );
    limit as i16
}

/// Bit planes per word of a query against binary codes (8-bit query weights: at 4 bits the
/// rounding of a decaying spectrum's many small weights cost ~2 points of recall in the unit
/// test, and the walk is bound by memory, not by the nine POPCNTs per word).
pub(crate) const QUERY_PLANES: usize = 8;

/// A binary code against a query quantized to [`QUERY_PLANES`] bit planes, stored interleaved
/// (`planes[w * QUERY_PLANES + k]` is plane k of word w): `(Σ_k 2^k·popcount(code & plane_k),
/// popcount(code))`, i.e. the sum of the query's integer weights where the code has a one, and
/// the number of ones.
pub(crate) type KernelWeightedBits = fn(&[u64], &[u64]) -> (u32, u32);

/// The kernels this CPU runs.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub dot: Kernel,
    pub l2sq: Kernel,
    pub hamming: KernelBits,
    pub dot_u8_i16: KernelU8I16,
    pub weighted_bits: KernelWeightedBits,
    pub name: &'static str,
}

/// Picks the fastest implementation for this CPU, once. The `f32` kernels are ours on AVX2
/// machines and simsimd's elsewhere (its AVX-512 kernels where the CPU has them); the code
/// kernels are ours wherever AVX2 is present, AVX-512 machines included (simsimd has no
/// `u8 × i16` or weighted-bits kernel, and the scalar ones are several times slower).
pub(crate) fn kernels() -> &'static Kernels {
    static K: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut k = Kernels {
            dot: simsimd_dot,
            l2sq: simsimd_l2sq,
            hamming: scalar_hamming,
            dot_u8_i16: scalar_dot_u8_i16,
            weighted_bits: scalar_weighted_bits,
            name: "simsimd",
        };
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            k.dot_u8_i16 = avx2::dot_u8_i16;
            if std::arch::is_x86_feature_detected!("popcnt") {
                k.hamming = avx2::hamming;
                k.weighted_bits = avx2::weighted_bits;
            }
            k.name = "simsimd f32, avx2 codes";
            if std::arch::is_x86_feature_detected!("fma")
                && !std::arch::is_x86_feature_detected!("avx512f")
            {
                k.dot = avx2::dot;
                k.l2sq = avx2::l2sq;
                k.name = "avx2+fma";
            }
        }
        k
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(v, 1);
        let lo = _mm256_castps256_ps128(v);
        let s = _mm_add_ps(hi, lo);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2sq_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1, mut s2, mut s3) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let mut i = 0;
        // SAFETY: every load reads `width` floats at `i` with `i + width <= n`, and `n` is
        // within both slices; the caller runs on a CPU with AVX2 and FMA.
        unsafe {
            while i + 32 <= n {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                let d1 = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                );
                let d2 = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 16)),
                    _mm256_loadu_ps(pb.add(i + 16)),
                );
                let d3 = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 24)),
                    _mm256_loadu_ps(pb.add(i + 24)),
                );
                s0 = _mm256_fmadd_ps(d0, d0, s0);
                s1 = _mm256_fmadd_ps(d1, d1, s1);
                s2 = _mm256_fmadd_ps(d2, d2, s2);
                s3 = _mm256_fmadd_ps(d3, d3, s3);
                i += 32;
            }
            while i + 8 <= n {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                s0 = _mm256_fmadd_ps(d, d, s0);
                i += 8;
            }
        }
        // SAFETY: AVX2 is present (the caller's contract); `hsum` only shuffles registers.
        let mut sum = unsafe { hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) };
        while i < n {
            let d = a[i] - b[i];
            sum += d * d;
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1, mut s2, mut s3) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let mut i = 0;
        // SAFETY: every load reads `width` floats at `i` with `i + width <= n`, and `n` is
        // within both slices; the caller runs on a CPU with AVX2 and FMA.
        unsafe {
            while i + 32 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
                s1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    s1,
                );
                s2 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 16)),
                    _mm256_loadu_ps(pb.add(i + 16)),
                    s2,
                );
                s3 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 24)),
                    _mm256_loadu_ps(pb.add(i + 24)),
                    s3,
                );
                i += 32;
            }
            while i + 8 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
                i += 8;
            }
        }
        // SAFETY: AVX2 is present (the caller's contract); `hsum` only shuffles registers.
        let mut sum = unsafe { hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) };
        while i < n {
            sum += a[i] * b[i];
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2")]
    unsafe fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    /// `Σ u_j·d_j`: `vpmovzxbw` widens 16 codes to `i16`, `vpmaddwd` multiplies by the
    /// weights and adds pairs into `i32` lanes (wrapping, like the scalar reference).
    #[target_feature(enable = "avx2")]
    unsafe fn dot_u8_i16_impl(u: &[u8], d: &[i16]) -> i32 {
        let n = u.len().min(d.len());
        let (pu, pd) = (u.as_ptr(), d.as_ptr());
        let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        // SAFETY: each load reads 16 codes (16 bytes) and 16 weights (32 bytes) at `i` or
        // `i + 16`, within `n`, inside both slices; the caller runs on a CPU with AVX2.
        unsafe {
            while i + 32 <= n {
                let u0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(pu.add(i).cast()));
                let u1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(pu.add(i + 16).cast()));
                let d0 = _mm256_loadu_si256(pd.add(i).cast());
                let d1 = _mm256_loadu_si256(pd.add(i + 16).cast());
                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(u0, d0));
                a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(u1, d1));
                i += 32;
            }
            if i + 16 <= n {
                let u0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(pu.add(i).cast()));
                let d0 = _mm256_loadu_si256(pd.add(i).cast());
                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(u0, d0));
                i += 16;
            }
        }
        // SAFETY: AVX2 is present (the caller's contract); only register shuffles.
        let mut sum = unsafe { hsum_i32(_mm256_add_epi32(a0, a1)) };
        while i < n {
            sum = sum.wrapping_add(i32::from(u[i]) * i32::from(d[i]));
            i += 1;
        }
        sum
    }

    /// Only reachable through `kernels()`, which checked AVX2.
    pub(super) fn dot_u8_i16(u: &[u8], d: &[i16]) -> i32 {
        // SAFETY: see the module contract: installed only after feature detection.
        unsafe { dot_u8_i16_impl(u, d) }
    }

    #[target_feature(enable = "popcnt")]
    unsafe fn hamming_impl(a: &[u64], b: &[u64]) -> u32 {
        a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
    }

    /// Only reachable through `kernels()`, which checked POPCNT.
    pub(super) fn hamming(a: &[u64], b: &[u64]) -> u32 {
        // SAFETY: see the module contract: installed only after feature detection.
        unsafe { hamming_impl(a, b) }
    }

    #[target_feature(enable = "popcnt")]
    unsafe fn weighted_bits_impl(code: &[u64], planes: &[u64]) -> (u32, u32) {
        super::weighted_bits_body(code, planes)
    }

    /// Only reachable through `kernels()`, which checked POPCNT.
    pub(super) fn weighted_bits(code: &[u64], planes: &[u64]) -> (u32, u32) {
        // SAFETY: see the module contract: installed only after feature detection.
        unsafe { weighted_bits_impl(code, planes) }
    }

    /// Only reachable through `kernels()`, which checked AVX2 and FMA.
    pub(super) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: see the module contract: installed only after feature detection.
        unsafe { l2sq_impl(a, b) }
    }

    /// Only reachable through `kernels()`, which checked AVX2 and FMA.
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: see the module contract: installed only after feature detection.
        unsafe { dot_impl(a, b) }
    }
}

pub(crate) fn scalar_dot_u8_i16(u: &[u8], d: &[i16]) -> i32 {
    u.iter().zip(d).fold(0i32, |s, (&x, &y)| {
        s.wrapping_add(i32::from(x) * i32::from(y))
    })
}

pub(crate) fn scalar_hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// The body of the weighted-bits kernels (inlined into each, so `count_ones` becomes POPCNT
/// where the caller enables it).
#[inline(always)]
fn weighted_bits_body(code: &[u64], planes: &[u64]) -> (u32, u32) {
    let mut acc = [0u32; QUERY_PLANES];
    let mut ones = 0u32;
    for (&b, p) in code.iter().zip(planes.chunks_exact(QUERY_PLANES)) {
        ones += b.count_ones();
        for k in 0..QUERY_PLANES {
            acc[k] += (b & p[k]).count_ones();
        }
    }
    let weighted = acc.iter().enumerate().map(|(k, a)| a << k).sum();
    (weighted, ones)
}

pub(crate) fn scalar_weighted_bits(code: &[u64], planes: &[u64]) -> (u32, u32) {
    weighted_bits_body(code, planes)
}

fn simsimd_dot(a: &[f32], b: &[f32]) -> f32 {
    match <f32 as SpatialSimilarity>::dot(a, b) {
        Some(d) => d as f32,
        None => scalar_dot(a, b),
    }
}

fn simsimd_l2sq(a: &[f32], b: &[f32]) -> f32 {
    match <f32 as SpatialSimilarity>::l2sq(a, b) {
        Some(d) => d as f32,
        None => scalar_l2sq(a, b),
    }
}

/// Dot product.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// Squared Euclidean distance.
#[inline]
pub(crate) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2sq)(a, b)
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
#[cfg(test)]
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
    fn code_kernels_match_scalar() {
        let k = kernels();
        for dim in [
            1usize, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1024, 4096,
        ] {
            let u: Vec<u8> = (0..dim).map(|i| ((i * 53 + 7) % 256) as u8).collect();
            let limit = i16_weight_limit(dim);
            let d: Vec<i16> = (0..dim)
                .map(|i| ((i * 7919 + 5) % (2 * limit as usize + 1)) as i32 - i32::from(limit))
                .map(|w| w as i16)
                .collect();
            let exact: i64 = u
                .iter()
                .zip(&d)
                .map(|(&x, &y)| i64::from(x) * i64::from(y))
                .sum();
            assert_eq!(
                i64::from((k.dot_u8_i16)(&u, &d)),
                exact,
                "dot_u8_i16 dim {dim}"
            );
            assert_eq!(i64::from(scalar_dot_u8_i16(&u, &d)), exact);
            // The extremes the weight limit allows stay exact.
            let top = vec![255u8; dim];
            for extreme in [limit, -limit] {
                let e = vec![extreme; dim];
                assert_eq!(
                    i64::from((k.dot_u8_i16)(&top, &e)),
                    255 * i64::from(extreme) * dim as i64,
                    "no overflow, dim {dim}"
                );
            }
        }
        let a = [0xF0F0_F0F0_F0F0_F0F0u64, 1, u64::MAX];
        let b = [0x0F0F_0F0F_0F0F_0F0Fu64, 0, u64::MAX];
        assert_eq!((k.hamming)(&a, &b), 65);
        assert_eq!(scalar_hamming(&a, &b), 65);
        // Weighted bits against a plain sum of the weights at the set bits.
        for words in [1usize, 3, 16] {
            let code: Vec<u64> = (0..words as u64)
                .map(|w| 0x9E37_79B9_7F4A_7C15u64.rotate_left(w as u32 * 7) ^ w)
                .collect();
            let weights: Vec<u32> = (0..words * 64)
                .map(|j| ((j * 37 + 3) % (1 << QUERY_PLANES)) as u32)
                .collect();
            let mut planes = vec![0u64; words * QUERY_PLANES];
            for (j, &c) in weights.iter().enumerate() {
                for p in 0..QUERY_PLANES {
                    if c >> p & 1 == 1 {
                        planes[(j / 64) * QUERY_PLANES + p] |= 1 << (j % 64);
                    }
                }
            }
            let set = |j: usize| code[j / 64] >> (j % 64) & 1 == 1;
            let want: u32 = (0..words * 64)
                .filter(|&j| set(j))
                .map(|j| weights[j])
                .sum();
            let ones = (0..words * 64).filter(|&j| set(j)).count() as u32;
            assert_eq!(
                (k.weighted_bits)(&code, &planes),
                (want, ones),
                "{words} words"
            );
            assert_eq!(scalar_weighted_bits(&code, &planes), (want, ones));
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
