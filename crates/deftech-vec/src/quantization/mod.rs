//! Quantization: compact codes of each sealed segment's vectors that the graph is walked on,
//! with the best candidates rescored on the mapped `f32` vectors.
//!
//! - **Scalar int8**: an affine map per dimension, learned from the segment's values (the central
//!   `quantile` of each dimension; outliers clip): `x_j ≈ α_j·u_j + γ_j`, one byte
//!   `u_j ∈ [0, 255]`. Per-dimension ranges keep precision where embeddings have a decaying
//!   spectrum. For a query, `w_j = q_j·α_j` is rounded to integers `d_j = w_j / s` of up to
//!   ±8,224 at 1,024 dimensions (15 bits with the sign; the widest whose sum fits `i32`), so
//!   `q·x̂ ≈ s·Σ d_j·u_j + Σ q_j·γ_j` is one `vpmovzxbw` + `vpmaddwd` pass over 1 byte per
//!   dimension. (Weights rounded to 7 bits, as `vpmaddubsw` needs, zeroed most dimensions of a
//!   decaying spectrum: `w_j` scales with the square of a dimension's spread.)
//!   Squared L2 adds the stored `‖x̂‖²` and the query's `‖q‖²`. Rescoring on `f32` removes the
//!   approximation from the final scores.
//! - **Binary**: one bit per dimension (`b_j = x_j > μ_j`, with `μ` the segment's per-dimension
//!   mean), read back as `x̂_j = μ_j ± a_j` with `a_j` the dimension's mean absolute deviation.
//!   The query stays real-valued (asymmetric, as in RaBitQ and Qdrant's asymmetric binary):
//!   `q·x̂ = q·μ − Σ w_j + 2·Σ_{b_j=1} w_j` with `w_j = q_j·a_j` quantized to 8 bits, so the sum
//!   over the set bits is eight AND-popcount passes over 1 bit per dimension. Weighting by `a_j`
//!   is what keeps the few high-variance dimensions of real embeddings from counting the same
//!   as the many small ones, which plain Hamming distance does. Euclid and Manhattan compare
//!   codes by Hamming distance.
//!
//! Codes are learned again for every new segment (seal, merge, vacuum), so merges re-learn the
//! quantiles. Byte layouts are in ARCHITECTURE.md.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec::{FileWriter, HEADER_LEN, open_file};
use crate::directory::{Directory, FileBytes};
use crate::distance::{self, Kernels, QUERY_PLANES};
use crate::error::{Error, Result};
use crate::scorer::Scorer;
use crate::types::Metric;

pub(crate) const FILE_I8: &str = "codes-i8.bin";
pub(crate) const FILE_BITS: &str = "codes-b1.bin";
pub(crate) const MAGIC_I8: &[u8; 8] = b"DTCODI8\0";
pub(crate) const MAGIC_BITS: &[u8; 8] = b"DTCODB1\0";

/// A collection's quantization (Qdrant's `quantization_config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Quantization {
    /// int8 codes, one byte per dimension.
    Scalar(ScalarQuantization),
    /// One bit per dimension.
    Binary(BinaryQuantization),
}

/// Scalar (int8) quantization settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScalarQuantization {
    /// Fraction of values the code range covers (the rest clip), e.g. 0.99.
    pub quantile: f32,
    /// Keep codes and graph locked in memory (mlock; falls back to the page cache with a
    /// warning when the limit is too low).
    #[serde(default)]
    pub always_ram: bool,
}

/// Binary quantization settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BinaryQuantization {
    /// Keep codes and graph locked in memory.
    #[serde(default)]
    pub always_ram: bool,
}

impl Quantization {
    /// int8 codes covering the central `quantile` of the values.
    pub fn int8(quantile: f32) -> Self {
        Quantization::Scalar(ScalarQuantization {
            quantile,
            always_ram: false,
        })
    }

    /// Binary codes.
    pub fn binary() -> Self {
        Quantization::Binary(BinaryQuantization::default())
    }

    /// Locks codes and graph in memory.
    #[must_use]
    pub fn always_ram(mut self, on: bool) -> Self {
        match &mut self {
            Quantization::Scalar(s) => s.always_ram = on,
            Quantization::Binary(b) => b.always_ram = on,
        }
        self
    }

    pub(crate) fn keep_in_ram(&self) -> bool {
        match self {
            Quantization::Scalar(s) => s.always_ram,
            Quantization::Binary(b) => b.always_ram,
        }
    }

    /// Checks the settings; the error names the field.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Quantization::Scalar(s) = self
            && !(s.quantile > 0.5 && s.quantile <= 1.0)
        {
            return Err(Error::invalid_argument(
                "quantization.quantile",
                format!("must be in (0.5, 1], got {}", s.quantile),
            ));
        }
        Ok(())
    }
}

/// Per-query use of quantization (Qdrant's `params.quantization`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct QuantizationParams {
    /// Search the `f32` vectors instead.
    pub ignore: bool,
    /// Rescore the candidates on the `f32` vectors (exact scores).
    pub rescore: bool,
    /// Candidates kept per result before rescoring.
    pub oversampling: f32,
}

impl Default for QuantizationParams {
    fn default() -> Self {
        QuantizationParams {
            ignore: false,
            rescore: true,
            oversampling: 2.0,
        }
    }
}

impl QuantizationParams {
    /// Searches on `f32` vectors.
    pub fn ignore() -> Self {
        QuantizationParams {
            ignore: true,
            ..Self::default()
        }
    }

    /// Sets the oversampling factor.
    #[must_use]
    pub fn oversampling(mut self, factor: f32) -> Self {
        self.oversampling = factor;
        self
    }

    /// Enables or disables rescoring.
    #[must_use]
    pub fn rescore(mut self, on: bool) -> Self {
        self.rescore = on;
        self
    }
}

/// The codes of one segment.
#[derive(Clone)]
pub(crate) enum Codes {
    I8(I8Codes),
    Bits(BitCodes),
}

impl std::fmt::Debug for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Codes::I8(c) => write!(f, "I8Codes({} points)", c.count),
            Codes::Bits(c) => write!(f, "BitCodes({} points)", c.count),
        }
    }
}

/// int8 codes: `count × dim` bytes `u`, then `count` f32 `‖x̂‖²`, then per dimension `α`, `γ`.
#[derive(Clone)]
pub(crate) struct I8Codes {
    bytes: FileBytes,
    count: usize,
    dim: usize,
    norms_at: usize,
    map_at: usize,
}

/// Binary codes: `count × words` u64, then the per-dimension means, then (in files written
/// since asymmetric scoring) the per-dimension mean absolute deviations.
#[derive(Clone)]
pub(crate) struct BitCodes {
    bytes: FileBytes,
    count: usize,
    words: usize,
    dim: usize,
    means_at: usize,
    /// Where the deviations start; `None` in files that hold only means (Hamming scoring).
    deviations_at: Option<usize>,
}

/// Up to `max` vectors spread evenly over the segment.
fn sample_rows(vectors: &[f32], dim: usize, max: usize) -> impl Iterator<Item = &[f32]> {
    let n = vectors.len() / dim;
    let step = (n / max.max(1)).max(1);
    vectors.chunks_exact(dim).step_by(step).take(max)
}

/// Learns the per-dimension affine maps of the codes: `(α_j, γ_j)` with `x_j ≈ α_j·u + γ_j`.
pub(crate) fn learn_i8(vectors: &[f32], dim: usize, quantile: f32) -> (Vec<f32>, Vec<f32>) {
    let rows: Vec<&[f32]> = sample_rows(vectors, dim, 20_000).collect();
    let mut alphas = Vec::with_capacity(dim);
    let mut betas = Vec::with_capacity(dim);
    let mut col = Vec::with_capacity(rows.len());
    for j in 0..dim {
        col.clear();
        col.extend(rows.iter().map(|r| r[j]));
        let (lo, hi) = if col.is_empty() {
            (-1.0, 1.0)
        } else {
            let last = col.len() - 1;
            let lo_i = ((last as f64) * f64::from(1.0 - quantile) / 2.0).round() as usize;
            let hi_i = ((last as f64) * f64::from(1.0 + quantile) / 2.0).round() as usize;
            let lo = *col.select_nth_unstable_by(lo_i, f32::total_cmp).1;
            let hi = *col.select_nth_unstable_by(hi_i, f32::total_cmp).1;
            (lo, hi)
        };
        alphas.push(((hi - lo) / 255.0).max(1e-12));
        betas.push(lo);
    }
    (alphas, betas)
}

/// Per-dimension means (the binary codes' thresholds) and mean absolute deviations from them
/// (the magnitude a bit stands for).
fn learn_binary(vectors: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    const SAMPLE: usize = 50_000;
    let mean = |sums: Vec<f64>, n: usize| -> Vec<f32> {
        sums.into_iter()
            .map(|s| if n == 0 { 0.0 } else { (s / n as f64) as f32 })
            .collect()
    };
    let mut sum = vec![0f64; dim];
    let mut n = 0usize;
    for r in sample_rows(vectors, dim, SAMPLE) {
        for (s, &x) in sum.iter_mut().zip(r) {
            *s += f64::from(x);
        }
        n += 1;
    }
    let means = mean(sum, n);
    let mut dev = vec![0f64; dim];
    for r in sample_rows(vectors, dim, SAMPLE) {
        for ((s, &x), &m) in dev.iter_mut().zip(r).zip(&means) {
            *s += f64::from((x - m).abs());
        }
    }
    (means, mean(dev, n))
}

#[inline]
fn encode_u8(x: f32, alpha: f32, gamma: f32) -> u8 {
    ((x - gamma) / alpha).round().clamp(0.0, 255.0) as u8
}

fn bits(v: &[f32], means: &[f32], out: &mut [u64]) {
    out.fill(0);
    for (j, (&x, &m)) in v.iter().zip(means).enumerate() {
        if x > m {
            out[j / 64] |= 1 << (j % 64);
        }
    }
}

/// Writes the codes of `vectors` for `q` into `path` (synced).
pub(crate) fn write(
    dir: &dyn Directory,
    path: &Path,
    q: &Quantization,
    vectors: &[f32],
    dim: usize,
) -> Result<()> {
    let count = vectors.len() / dim;
    match q {
        Quantization::Scalar(s) => {
            let (alphas, betas) = learn_i8(vectors, dim, s.quantile);
            let mut w = FileWriter::create(dir, path, MAGIC_I8)?;
            let mut norms = Vec::with_capacity(count);
            let mut buf = Vec::with_capacity(dim);
            for v in vectors.chunks_exact(dim) {
                buf.clear();
                let mut norm = 0f32;
                for j in 0..dim {
                    let u = encode_u8(v[j], alphas[j], betas[j]);
                    let x = alphas[j] * f32::from(u) + betas[j];
                    norm += x * x;
                    buf.push(u);
                }
                norms.push(norm);
                w.write(&buf)?;
            }
            w.pad_to(4)?;
            w.write(bytemuck::cast_slice(&norms))?;
            w.write(bytemuck::cast_slice(&alphas))?;
            w.write(bytemuck::cast_slice(&betas))?;
            w.finish([count as u64, dim as u64, 0])?;
        }
        Quantization::Binary(_) => {
            let words = dim.div_ceil(64);
            let (means, deviations) = learn_binary(vectors, dim);
            let mut w = FileWriter::create(dir, path, MAGIC_BITS)?;
            let mut buf = vec![0u64; words];
            for v in vectors.chunks_exact(dim) {
                bits(v, &means, &mut buf);
                w.write(bytemuck::cast_slice(&buf))?;
            }
            w.write(bytemuck::cast_slice(&means))?;
            w.write(bytemuck::cast_slice(&deviations))?;
            w.finish([count as u64, dim as u64, words as u64])?;
        }
    }
    Ok(())
}

/// The file name of the codes of `q`.
pub(crate) fn file_name(q: &Quantization) -> &'static str {
    match q {
        Quantization::Scalar(_) => FILE_I8,
        Quantization::Binary(_) => FILE_BITS,
    }
}

impl Codes {
    /// Opens a codes file of a segment of `count` points of dimension `dim`; `in_ram`: copied
    /// into huge pages once checked.
    pub(crate) fn open(
        dir: &dyn Directory,
        path: &Path,
        binary: bool,
        count: u32,
        dim: usize,
        in_ram: bool,
    ) -> Result<Codes> {
        let magic = if binary { MAGIC_BITS } else { MAGIC_I8 };
        let (bytes, h) = open_file(dir, path, magic)?;
        let shown = dir.describe(path);
        let n = count as usize;
        if h.params[0] != u64::from(count) || h.params[1] != dim as u64 {
            return Err(Error::corrupted(
                &shown,
                32,
                format!(
                    "codes of {} x {} for a segment of {count} x {dim}",
                    h.params[0], h.params[1]
                ),
            ));
        }
        if binary {
            let words = dim.div_ceil(64);
            let means_at = n * words * 8;
            let wrong_size = || Error::corrupted(&shown, 16, "binary codes have the wrong size");
            // Files written before asymmetric scoring end after the means.
            let with_means = means_at + dim * 4;
            let deviations_at = match h.body_len {
                _ if h.params[2] != words as u64 => return Err(wrong_size()),
                len if len == (with_means + dim * 4) as u64 => Some(with_means),
                len if len == with_means as u64 => None,
                _ => return Err(wrong_size()),
            };
            let c = BitCodes {
                bytes,
                count: n,
                words,
                dim,
                means_at,
                deviations_at,
            };
            if c.means()
                .iter()
                .chain(c.deviations().unwrap_or(&[]))
                .any(|x| !x.is_finite())
                || c.deviations().is_some_and(|d| d.iter().any(|a| *a < 0.0))
            {
                return Err(Error::corrupted(
                    &shown,
                    (HEADER_LEN + means_at) as u64,
                    "bad per-dimension means or deviations",
                ));
            }
            // Every quantized search walks the codes: once checked, they live in memory, in
            // huge pages.
            Ok(Codes::Bits(BitCodes {
                bytes: c.bytes.for_search(in_ram),
                ..c
            }))
        } else {
            let norms_at = (n * dim).div_ceil(4) * 4;
            let map_at = norms_at + n * 4;
            if h.body_len != (map_at + dim * 8) as u64 {
                return Err(Error::corrupted(
                    &shown,
                    16,
                    "int8 codes have the wrong size",
                ));
            }
            let c = I8Codes {
                bytes,
                count: n,
                dim,
                norms_at,
                map_at,
            };
            if c.alphas().iter().chain(c.betas()).any(|x| !x.is_finite())
                || c.alphas().iter().any(|a| *a <= 0.0)
            {
                return Err(Error::corrupted(
                    &shown,
                    (HEADER_LEN + map_at) as u64,
                    "bad per-dimension code map",
                ));
            }
            Ok(Codes::I8(I8Codes {
                bytes: c.bytes.for_search(in_ram),
                ..c
            }))
        }
    }

    pub(crate) fn file_bytes(&self) -> &FileBytes {
        match self {
            Codes::I8(c) => &c.bytes,
            Codes::Bits(c) => &c.bytes,
        }
    }

    /// A scorer of `query` (normalized for Cosine) against these codes.
    pub(crate) fn query<'a>(&'a self, metric: Metric, query: &[f32]) -> CodeQuery<'a> {
        let k = distance::kernels();
        match self {
            Codes::I8(c) => {
                let (alphas, gammas) = (c.alphas(), c.betas());
                let w: Vec<f32> = query.iter().zip(alphas).map(|(q, a)| q * a).collect();
                let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
                let limit = f32::from(distance::i16_weight_limit(c.dim));
                let scale = if max > 0.0 { max / limit } else { 1.0 };
                CodeQuery::I8 {
                    codes: c,
                    d: w.iter()
                        .map(|x| (x / scale).round().clamp(-limit, limit) as i16)
                        .collect(),
                    scale,
                    offset: query.iter().zip(gammas).map(|(q, g)| q * g).sum(),
                    norm: query.iter().map(|q| q * q).sum(),
                    query: query.to_vec(),
                    metric,
                    k,
                }
            }
            Codes::Bits(c) => {
                if let (Some(dev), Metric::Cosine | Metric::Dot) = (c.deviations(), metric) {
                    return CodeQuery::weighted_bits(c, dev, query, k);
                }
                let mut q = vec![0u64; c.words];
                bits(query, c.means(), &mut q);
                CodeQuery::Bits {
                    codes: c,
                    q,
                    dim: query.len() as f32,
                    metric,
                    k,
                }
            }
        }
    }
}

impl I8Codes {
    #[inline]
    fn code(&self, i: u32) -> &[u8] {
        let start = HEADER_LEN + i as usize * self.dim;
        &self.bytes[start..start + self.dim]
    }

    #[inline]
    fn norm(&self, i: u32) -> f32 {
        let at = HEADER_LEN + self.norms_at + i as usize * 4;
        f32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes"))
    }

    fn alphas(&self) -> &[f32] {
        let at = HEADER_LEN + self.map_at;
        bytemuck::cast_slice(&self.bytes[at..at + self.dim * 4])
    }

    fn betas(&self) -> &[f32] {
        let at = HEADER_LEN + self.map_at + self.dim * 4;
        bytemuck::cast_slice(&self.bytes[at..at + self.dim * 4])
    }
}

impl BitCodes {
    #[inline]
    fn code(&self, i: u32) -> &[u64] {
        let start = HEADER_LEN + i as usize * self.words * 8;
        bytemuck::cast_slice(&self.bytes[start..start + self.words * 8])
    }

    fn means(&self) -> &[f32] {
        let at = HEADER_LEN + self.means_at;
        bytemuck::cast_slice(&self.bytes[at..at + self.dim * 4])
    }

    fn deviations(&self) -> Option<&[f32]> {
        let at = HEADER_LEN + self.deviations_at?;
        Some(bytemuck::cast_slice(&self.bytes[at..at + self.dim * 4]))
    }
}

/// A query against codes: distances comparable with the `f32` ones (lower is closer).
pub(crate) enum CodeQuery<'a> {
    I8 {
        codes: &'a I8Codes,
        /// `q_j · α_j / scale`, rounded to at most 16 bits ([`distance::i16_weight_limit`]).
        d: Vec<i16>,
        scale: f32,
        /// `Σ q_j · γ_j`.
        offset: f32,
        /// `‖q‖²`.
        norm: f32,
        query: Vec<f32>,
        metric: Metric,
        k: &'static Kernels,
    },
    /// Hamming distance (Euclid, Manhattan, and files without deviations).
    Bits {
        codes: &'a BitCodes,
        q: Vec<u64>,
        dim: f32,
        metric: Metric,
        k: &'static Kernels,
    },
    /// `−q·x̂` from 8-bit query weights `w_j ≈ step·(c_j − ZERO)` (Cosine, Dot).
    WeightedBits {
        codes: &'a BitCodes,
        /// The bit planes of `c`, interleaved per word.
        planes: Vec<u64>,
        step: f32,
        /// `q·μ − Σ w_j`.
        base: f32,
        k: &'static Kernels,
    },
}

/// The level of a zero query weight (levels are `1 ..= 2·ZERO − 1`).
const ZERO: u32 = 1 << (QUERY_PLANES - 1);

impl<'a> CodeQuery<'a> {
    fn weighted_bits(
        codes: &'a BitCodes,
        deviations: &[f32],
        query: &[f32],
        k: &'static Kernels,
    ) -> Self {
        // Symmetric levels `w_j ≈ step·(c_j − ZERO)`, so a zero weight is exactly zero: with an
        // offset range, the rounding of the many near-zero weights of a decaying spectrum adds
        // up to one bias per set bit.
        let w: Vec<f32> = query.iter().zip(deviations).map(|(q, a)| q * a).collect();
        let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        let step = if max > 0.0 {
            max / (ZERO - 1) as f32
        } else {
            1.0
        };
        let mut planes = vec![0u64; codes.words * QUERY_PLANES];
        for (j, &x) in w.iter().enumerate() {
            let c = ((x / step).round() as i32 + ZERO as i32).clamp(1, 2 * ZERO as i32 - 1) as u32;
            for p in 0..QUERY_PLANES {
                if c >> p & 1 == 1 {
                    planes[(j / 64) * QUERY_PLANES + p] |= 1 << (j % 64);
                }
            }
        }
        let q_mu: f32 = query.iter().zip(codes.means()).map(|(q, m)| q * m).sum();
        CodeQuery::WeightedBits {
            codes,
            planes,
            step,
            base: q_mu - w.iter().sum::<f32>(),
            k,
        }
    }
}

impl Scorer for CodeQuery<'_> {
    #[inline]
    fn distance(&self, i: u32) -> f32 {
        match self {
            CodeQuery::I8 {
                codes,
                d,
                scale,
                offset,
                norm,
                query,
                metric,
                k,
            } => {
                let x = codes.code(i);
                let dot = || scale * (k.dot_u8_i16)(x, d) as f32 + offset;
                match metric {
                    Metric::Cosine | Metric::Dot => -dot(),
                    Metric::Euclid => (norm - 2.0 * dot() + codes.norm(i)).max(0.0),
                    Metric::Manhattan => {
                        let (a, b) = (codes.alphas(), codes.betas());
                        query
                            .iter()
                            .zip(x)
                            .enumerate()
                            .map(|(j, (q, &c))| (q - (a[j] * f32::from(c) + b[j])).abs())
                            .sum()
                    }
                }
            }
            CodeQuery::Bits {
                codes,
                q,
                dim,
                metric,
                k,
            } => {
                let h = (k.hamming)(q, codes.code(i)) as f32;
                match metric {
                    // The angle estimate: cos θ ≈ cos(π·h/d); as a distance, its negative.
                    Metric::Cosine | Metric::Dot => -(std::f32::consts::PI * h / dim).cos(),
                    Metric::Euclid | Metric::Manhattan => h,
                }
            }
            CodeQuery::WeightedBits {
                codes,
                planes,
                step,
                base,
                k,
            } => {
                let (weighted, ones) = (k.weighted_bits)(codes.code(i), planes);
                // Σ_{b_j=1} w_j ≈ step·Σ_{b_j=1} (c_j − ZERO).
                let set_weights = step * (i64::from(weighted) - i64::from(ZERO * ones)) as f32;
                -(base + 2.0 * set_weights)
            }
        }
    }

    #[inline]
    fn prefetch(&self, i: u32) {
        let (bytes, start, len) = match self {
            CodeQuery::I8 { codes, .. } => {
                (&codes.bytes, HEADER_LEN + i as usize * codes.dim, codes.dim)
            }
            CodeQuery::Bits { codes, .. } | CodeQuery::WeightedBits { codes, .. } => (
                &codes.bytes,
                HEADER_LEN + i as usize * codes.words * 8,
                codes.words * 8,
            ),
        };
        if let Some(s) = bytes.get(start..start + len) {
            distance::prefetch_bytes(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::MemoryDirectory;
    use crate::scorer::F32Vectors;

    fn data(n: usize, dim: usize) -> Vec<f32> {
        let mut s = 0x1234_5678u64;
        (0..n * dim)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn codes(q: &Quantization, v: &[f32], dim: usize) -> Codes {
        let dir = MemoryDirectory::new();
        write(&dir, Path::new("c"), q, v, dim).unwrap();
        Codes::open(
            &dir,
            Path::new("c"),
            matches!(q, Quantization::Binary(_)),
            (v.len() / dim) as u32,
            dim,
            true,
        )
        .unwrap()
    }

    #[test]
    fn int8_distances_track_f32_distances() {
        let dim = 64;
        let v = data(200, dim);
        for metric in [Metric::Dot, Metric::Euclid, Metric::Manhattan] {
            let c = codes(&Quantization::int8(0.99), &v, dim);
            let q = &v[..dim];
            let exact = F32Vectors::new(metric, &v, dim).query(q);
            let approx = c.query(metric, q);
            for i in 0..200u32 {
                let (e, a) = (exact.distance(i), approx.distance(i));
                let scale = if metric == Metric::Manhattan {
                    dim as f32 * 0.01
                } else {
                    0.05 * e.abs().max(1.0)
                };
                assert!(
                    (e - a).abs() <= scale,
                    "{metric:?} point {i}: exact {e}, int8 {a}"
                );
            }
        }
    }

    #[test]
    fn binary_hamming_orders_by_angle() {
        let dim = 256;
        let v = data(100, dim);
        let c = codes(&Quantization::binary(), &v, dim);
        let q = &v[..dim];
        let s = c.query(Metric::Euclid, q);
        assert_eq!(s.distance(0), 0.0, "identical bit pattern");
        let others: f32 = (1..100).map(|i| s.distance(i)).sum::<f32>() / 99.0;
        assert!(
            others > dim as f32 / 4.0,
            "unrelated points are far: {others}"
        );
    }

    /// Embedding-like data: clustered, with a decaying spectrum (dimension j scaled by
    /// `1 / (1 + j / 8)`), so a few dimensions carry most of the variance.
    fn decaying(n: usize, dim: usize) -> Vec<f32> {
        let noise = data(n + 40, dim);
        let centres = &noise[n * dim..];
        let mut v: Vec<f32> = noise[..n * dim]
            .chunks_exact(dim)
            .enumerate()
            .flat_map(|(i, r)| {
                let c = &centres[(i % 40) * dim..(i % 40 + 1) * dim];
                (0..dim).map(move |j| (c[j] + 0.5 * r[j]) / (1.0 + j as f32 / 8.0))
            })
            .collect();
        for r in v.chunks_exact_mut(dim) {
            distance::normalize(r);
        }
        v
    }

    /// Mean fraction of each query's exact top 10 (by dot) found among the `keep` best by `s`.
    fn recall_of(v: &[f32], dim: usize, keep: usize, scorer: impl Fn(&[f32]) -> Vec<f32>) -> f64 {
        let n = v.len() / dim;
        let mut hit = 0usize;
        let queries = 20;
        for qi in 0..queries {
            let q = &v[qi * 37 % n * dim..][..dim];
            let rank = |d: Vec<f32>, k: usize| {
                let mut ix: Vec<usize> = (0..n).collect();
                ix.sort_by(|&a, &b| d[a].total_cmp(&d[b]));
                ix.truncate(k);
                ix
            };
            let exact = F32Vectors::new(Metric::Dot, v, dim).query(q);
            let truth = rank((0..n as u32).map(|i| exact.distance(i)).collect(), 10);
            let got = rank(scorer(q), keep);
            hit += truth.iter().filter(|t| got.contains(t)).count();
        }
        hit as f64 / (queries * 10) as f64
    }

    #[test]
    fn int8_estimate_keeps_the_small_dimensions_of_a_decaying_spectrum() {
        let dim = 256;
        let n = 2000;
        let v = decaying(n, dim);
        let c = codes(&Quantization::int8(1.0), &v, dim);
        let Codes::I8(codes_i8) = &c else {
            unreachable!("int8 codes")
        };
        let (alphas, gammas) = (codes_i8.alphas(), codes_i8.betas());
        let q = &v[7 * dim..8 * dim];
        let scorer = c.query(Metric::Dot, q);
        // The estimate is `q·x̂` for the reconstruction x̂_j = α_j·u_j + γ_j, up to the rounding
        // of the query's weights; measured against how much `q·x̂` varies between points,
        // which is what ranking needs. (Weights rounded to 7 bits zero most of these
        // dimensions: `q_j·α_j` falls with the square of the spectrum.)
        let recon: Vec<f64> = (0..n as u32)
            .map(|i| {
                let u = codes_i8.code(i);
                (0..dim)
                    .map(|j| {
                        f64::from(q[j]) * f64::from(alphas[j].mul_add(f32::from(u[j]), gammas[j]))
                    })
                    .sum()
            })
            .collect();
        let mean = recon.iter().sum::<f64>() / n as f64;
        let spread = (recon.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        let worst = (0..n as u32)
            .map(|i| (-f64::from(scorer.distance(i)) - recon[i as usize]).abs())
            .fold(0f64, f64::max);
        assert!(
            worst < 1e-3 * spread,
            "worst |estimate − q·x̂| {worst} vs spread of q·x̂ {spread}"
        );
        let all = |s: CodeQuery<'_>| (0..n as u32).map(|i| s.distance(i)).collect::<Vec<_>>();
        let recall = recall_of(&v, dim, 20, |q| all(c.query(Metric::Cosine, q)));
        assert!(
            recall >= 0.99,
            "top-10 within the best 20 by int8: {recall}"
        );
    }

    #[test]
    fn codes_of_2_mib_or_more_are_searched_from_a_huge_page_copy() {
        let (n, dim) = (2100, 1024);
        let v = data(n, dim);
        for q in [Quantization::int8(1.0), Quantization::binary()] {
            let c = codes(&q, &v, dim);
            let big = c.file_bytes().len() >= 2 << 20;
            assert_eq!(
                c.file_bytes().is_anonymous(),
                big && crate::directory::huge_pages_available(),
                "{q:?}: {} bytes",
                c.file_bytes().len()
            );
            // `hnsw.on_disk` keeps them mapped.
            let dir = MemoryDirectory::new();
            write(&dir, Path::new("c"), &q, &v, dim).unwrap();
            let binary = matches!(q, Quantization::Binary(_));
            let mapped = Codes::open(&dir, Path::new("c"), binary, n as u32, dim, false).unwrap();
            assert!(!mapped.file_bytes().is_anonymous());
            // The copy scores like the file: each point is its own nearest.
            for i in [0u32, 777, 2099] {
                let s = c.query(Metric::Euclid, &v[i as usize * dim..][..dim]);
                let nearest = (0..n as u32)
                    .min_by(|&a, &b| s.distance(a).total_cmp(&s.distance(b)))
                    .expect("points");
                assert_eq!(nearest, i, "{q:?}");
            }
        }
    }

    #[test]
    fn asymmetric_binary_estimates_the_dot_and_beats_hamming() {
        let dim = 256;
        let n = 2000;
        let v = decaying(n, dim);
        let c = codes(&Quantization::binary(), &v, dim);
        let Codes::Bits(b) = &c else {
            unreachable!("binary codes")
        };
        let (means, dev) = (b.means(), b.deviations().expect("deviations are written"));
        let q = &v[5 * dim..6 * dim];
        let weighted = c.query(Metric::Dot, q);
        assert!(matches!(weighted, CodeQuery::WeightedBits { .. }));
        // The estimate is `q·x̂` for the reconstruction x̂_j = μ_j ± a_j, up to the 8-bit
        // rounding of the query's weights.
        let (mut err, mut size) = (0f32, 0f32);
        for i in 0..n as u32 {
            let code = b.code(i);
            let recon: f32 = (0..dim)
                .map(|j| {
                    let sign = if code[j / 64] >> (j % 64) & 1 == 1 {
                        1.0
                    } else {
                        -1.0
                    };
                    q[j] * (means[j] + sign * dev[j])
                })
                .sum();
            err += (-weighted.distance(i) - recon).abs();
            size += recon.abs();
        }
        assert!(
            err < 0.05 * size,
            "mean |estimate − q·x̂| {err} vs mean |q·x̂| {size}"
        );
        let all = |s: CodeQuery<'_>| (0..n as u32).map(|i| s.distance(i)).collect::<Vec<_>>();
        let asym = recall_of(&v, dim, 40, |q| all(c.query(Metric::Cosine, q)));
        // Euclid on binary codes is the plain Hamming distance.
        let hamming = recall_of(&v, dim, 40, |q| all(c.query(Metric::Euclid, q)));
        assert!(
            asym > hamming && asym >= 0.9,
            "top-10 within the best 40: asymmetric {asym}, Hamming {hamming}"
        );
    }

    #[test]
    fn binary_files_without_deviations_score_by_hamming() {
        let (dim, n) = (64usize, 30usize);
        let v = data(n, dim);
        let dir = MemoryDirectory::new();
        let means = vec![0f32; dim];
        let mut w = FileWriter::create(&dir, Path::new("c"), MAGIC_BITS).unwrap();
        let mut buf = [0u64; 1];
        for r in v.chunks_exact(dim) {
            bits(r, &means, &mut buf);
            w.write(bytemuck::cast_slice(&buf)).unwrap();
        }
        w.write(bytemuck::cast_slice(&means)).unwrap();
        w.finish([n as u64, dim as u64, 1]).unwrap();
        let c = Codes::open(&dir, Path::new("c"), true, n as u32, dim, true).unwrap();
        let s = c.query(Metric::Cosine, &v[..dim]);
        assert!(matches!(s, CodeQuery::Bits { .. }));
        assert_eq!(s.distance(0), -1.0, "identical bit pattern");
    }

    #[test]
    fn damaged_codes_are_rejected() {
        let dir = MemoryDirectory::new();
        let v = data(10, 8);
        write(&dir, Path::new("c"), &Quantization::int8(0.99), &v, 8).unwrap();
        assert!(Codes::open(&dir, Path::new("c"), false, 11, 8, true).is_err());
        assert!(Codes::open(&dir, Path::new("c"), true, 10, 8, true).is_err());
        assert!(Codes::open(&dir, Path::new("c"), false, 10, 8, true).is_ok());
    }
}
