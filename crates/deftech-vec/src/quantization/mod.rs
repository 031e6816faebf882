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
//! - **Binary** (RaBitQ's estimator): each point's offset from the segment's mean,
//!   `r = x − μ`, is turned by a random rotation `P` (three sign flips and Walsh–Hadamard
//!   transforms, [`rotation`]) and kept as the signs `s_j ∈ {±1}` of `y = P·r`, one bit per
//!   coordinate of `d` padded to a power of two, plus one factor `f = ‖r‖² / Σ_j |y_j|` per point.
//!   The query stays real-valued (asymmetric): `q·x ≈ q·μ + f·(P·q)·s`, unbiased because the
//!   rotation is random, with `P·q` quantized to 8 bits so that `(P·q)·s` is eight AND-popcount
//!   passes over the code. Without the rotation, the bits of a decaying spectrum go to
//!   dimensions that carry little of the variance: at 1M × 1024 the top 10 were 58% within the
//!   best 80 by the codes, and are 99% with it. Squared L2 adds the stored `‖x‖²` and the
//!   query's `‖q‖²`; Manhattan walks on that L2 estimate (rescoring makes the scores exact).
//!   Segments written before the rotation (`codes-b1.bin`: bits of `x_j > μ_j`, weighted by the
//!   per-dimension mean absolute deviation, or plain Hamming distance) are still read.
//!
//! Codes are learned again for every new segment (seal, merge, vacuum), so merges re-learn the
//! quantiles. Byte layouts are in ARCHITECTURE.md.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec::{FileWriter, HEADER_LEN, Header, open_file};
use crate::directory::{Directory, FileBytes};
use crate::distance::{self, Kernels, QUERY_PLANES};
use crate::error::{Error, Result};
use crate::scorer::Scorer;
use crate::types::Metric;

pub(crate) mod rotation;

use rotation::Rotation;

pub(crate) const FILE_I8: &str = "codes-i8.bin";
/// Binary codes of the data's own basis (written before the rotation; read only).
pub(crate) const FILE_BITS: &str = "codes-b1.bin";
/// Binary codes of the rotated offsets from the mean.
pub(crate) const FILE_BITS_ROTATED: &str = "codes-b1h.bin";
pub(crate) const MAGIC_I8: &[u8; 8] = b"DTCODI8\0";
pub(crate) const MAGIC_BITS: &[u8; 8] = b"DTCODB1\0";
pub(crate) const MAGIC_BITS_ROTATED: &[u8; 8] = b"DTCODBH\0";

/// The kinds of codes file, told apart by name (the manifest records each segment's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CodeKind {
    I8,
    Bits,
    RotatedBits,
}

impl CodeKind {
    /// The kind of the codes file called `name`, if it is one.
    pub(crate) fn of_file(name: &str) -> Option<CodeKind> {
        match name {
            FILE_I8 => Some(CodeKind::I8),
            FILE_BITS => Some(CodeKind::Bits),
            FILE_BITS_ROTATED => Some(CodeKind::RotatedBits),
            _ => None,
        }
    }

    pub(crate) fn magic(self) -> &'static [u8; 8] {
        match self {
            CodeKind::I8 => MAGIC_I8,
            CodeKind::Bits => MAGIC_BITS,
            CodeKind::RotatedBits => MAGIC_BITS_ROTATED,
        }
    }
}

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
    /// Rescore the candidates on the `f32` vectors (exact scores). Where the codes cannot
    /// estimate the metric's score (binary codes with Manhattan, which walk on an L2 estimate;
    /// binary files from before the rotation where they are scored by Hamming distance: Euclid,
    /// Manhattan, and Dot in files without deviations), candidates are rescored regardless, so
    /// a score is never a different metric's.
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
    Rotated(RotatedBits),
}

impl std::fmt::Debug for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Codes::I8(c) => write!(f, "I8Codes({} points)", c.count),
            Codes::Bits(c) => write!(f, "BitCodes({} points)", c.count),
            Codes::Rotated(c) => write!(f, "RotatedBits({} points)", c.count),
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

/// Binary codes of the data's own basis (files written before the rotation): `count × words`
/// u64, then the per-dimension means, then (in files written since asymmetric scoring) the
/// per-dimension mean absolute deviations.
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

/// Binary codes of rotated offsets from the mean: `count` records of `words` u64 (the signs of
/// `P·(x − μ)`), the factor `f = ‖x − μ‖² / Σ|P·(x − μ)|` and `‖x‖²` (f32 each); then the
/// rotation's sign words (`ROUNDS × words` u64); then the means `μ` (`dim` f32).
#[derive(Clone)]
pub(crate) struct RotatedBits {
    bytes: FileBytes,
    count: usize,
    dim: usize,
    words: usize,
    rotation: Rotation,
    means_at: usize,
}

impl RotatedBits {
    /// Checks a rotated binary codes file: its length, every point's factor and norm, the means.
    fn parse(bytes: FileBytes, h: &Header, n: usize, dim: usize, shown: &Path) -> Result<Self> {
        let padded = rotation::padded_len(dim);
        let words = padded / 64;
        let signs_at = n * RotatedBits::record_len(words);
        let means_at = signs_at + rotation::ROUNDS * words * 8;
        if h.params[2] != padded as u64 || h.body_len != (means_at + dim * 4) as u64 {
            return Err(Error::corrupted(
                shown,
                16,
                "rotated binary codes have the wrong size",
            ));
        }
        let at = HEADER_LEN + signs_at;
        let signs: &[u64] = bytemuck::cast_slice(&bytes[at..at + (means_at - signs_at)]);
        let c = RotatedBits {
            rotation: Rotation::from_signs(dim, signs),
            bytes,
            count: n,
            dim,
            words,
            means_at,
        };
        if let Some(bad) = (0..n as u32).find(|&i| {
            let (_, factor, norm) = c.record(i);
            !(factor.is_finite() && factor >= 0.0 && norm.is_finite() && norm >= 0.0)
        }) {
            let at = HEADER_LEN + bad as usize * RotatedBits::record_len(words) + words * 8;
            return Err(Error::corrupted(
                shown,
                at as u64,
                format!("bad code factor or norm of point {bad}"),
            ));
        }
        if c.means().iter().any(|x| !x.is_finite()) {
            return Err(Error::corrupted(
                shown,
                (HEADER_LEN + means_at) as u64,
                "bad per-dimension means",
            ));
        }
        Ok(c)
    }

    fn record_len(words: usize) -> usize {
        words * 8 + 8
    }

    #[inline]
    fn record(&self, i: u32) -> (&[u64], f32, f32) {
        let len = Self::record_len(self.words);
        let start = HEADER_LEN + i as usize * len;
        let rec = &self.bytes[start..start + len];
        let (code, tail) = rec.split_at(self.words * 8);
        let f32_at = |at: usize| f32::from_le_bytes(tail[at..at + 4].try_into().expect("4 bytes"));
        (bytemuck::cast_slice(code), f32_at(0), f32_at(4))
    }

    fn means(&self) -> &[f32] {
        let at = HEADER_LEN + self.means_at;
        bytemuck::cast_slice(&self.bytes[at..at + self.dim * 4])
    }
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

/// Per-dimension means of up to 50,000 of the vectors (the centre the binary codes encode
/// offsets from).
fn learn_means(vectors: &[f32], dim: usize) -> Vec<f32> {
    let mut sum = vec![0f64; dim];
    let mut n = 0usize;
    for r in sample_rows(vectors, dim, 50_000) {
        for (s, &x) in sum.iter_mut().zip(r) {
            *s += f64::from(x);
        }
        n += 1;
    }
    sum.into_iter()
        .map(|s| if n == 0 { 0.0 } else { (s / n as f64) as f32 })
        .collect()
}

/// One point's rotated binary code: the sign bits of `y = P·(x − μ)` into `code`, and
/// `(f, ‖x‖²)` with `f = ‖y‖² / Σ|y_j|` (RaBitQ's `1 / ⟨ō, o⟩`, times `‖x − μ‖`), 0 for a
/// point at the mean.
fn rotated_code(
    x: &[f32],
    means: &[f32],
    rotation: &Rotation,
    offset: &mut [f32],
    rotated: &mut [f32],
    code: &mut [u64],
) -> (f32, f32) {
    for ((o, &v), &m) in offset.iter_mut().zip(x).zip(means) {
        *o = v - m;
    }
    rotation.apply(offset, rotated);
    code.fill(0);
    let (mut sq, mut abs) = (0f64, 0f64);
    for (j, &y) in rotated.iter().enumerate() {
        if y > 0.0 {
            code[j / 64] |= 1 << (j % 64);
        }
        sq += f64::from(y) * f64::from(y);
        abs += f64::from(y.abs());
    }
    let factor = if abs > 0.0 { (sq / abs) as f32 } else { 0.0 };
    (factor, x.iter().map(|v| v * v).sum())
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
            let means = learn_means(vectors, dim);
            let rotation = Rotation::new(dim);
            let padded = rotation.padded();
            let mut w = FileWriter::create(dir, path, MAGIC_BITS_ROTATED)?;
            let (mut offset, mut rotated) = (vec![0f32; dim], vec![0f32; padded]);
            let mut code = vec![0u64; padded / 64];
            for v in vectors.chunks_exact(dim) {
                let (factor, norm) =
                    rotated_code(v, &means, &rotation, &mut offset, &mut rotated, &mut code);
                w.write(bytemuck::cast_slice(&code))?;
                w.write_f32s(&[factor, norm])?;
            }
            w.write(bytemuck::cast_slice(rotation.signs()))?;
            w.write(bytemuck::cast_slice(&means))?;
            w.finish([count as u64, dim as u64, padded as u64])?;
        }
    }
    Ok(())
}

/// The file name of the codes of `q`.
pub(crate) fn file_name(q: &Quantization) -> &'static str {
    match q {
        Quantization::Scalar(_) => FILE_I8,
        Quantization::Binary(_) => FILE_BITS_ROTATED,
    }
}

impl Codes {
    /// Opens a codes file (its kind told by its name) of a segment of `count` points of
    /// dimension `dim`; `in_ram`: copied into huge pages once checked.
    pub(crate) fn open(
        dir: &dyn Directory,
        path: &Path,
        count: u32,
        dim: usize,
        in_ram: bool,
    ) -> Result<Codes> {
        let shown = dir.describe(path);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(kind) = CodeKind::of_file(name) else {
            return Err(Error::corrupted(&shown, 0, "not a codes file name"));
        };
        let (bytes, h) = open_file(dir, path, kind.magic())?;
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
        let mut codes = match kind {
            CodeKind::I8 => Codes::I8(I8Codes::parse(bytes, &h, n, dim, &shown)?),
            CodeKind::Bits => Codes::Bits(BitCodes::parse(bytes, &h, n, dim, &shown)?),
            CodeKind::RotatedBits => Codes::Rotated(RotatedBits::parse(bytes, &h, n, dim, &shown)?),
        };
        // Every quantized search walks the codes: once checked, they live in memory, in huge
        // pages.
        let bytes = codes.file_bytes_mut();
        *bytes = bytes.for_search(in_ram);
        Ok(codes)
    }

    fn file_bytes_mut(&mut self) -> &mut FileBytes {
        match self {
            Codes::I8(c) => &mut c.bytes,
            Codes::Bits(c) => &mut c.bytes,
            Codes::Rotated(c) => &mut c.bytes,
        }
    }

    pub(crate) fn file_bytes(&self) -> &FileBytes {
        match self {
            Codes::I8(c) => &c.bytes,
            Codes::Bits(c) => &c.bytes,
            Codes::Rotated(c) => &c.bytes,
        }
    }

    pub(crate) fn kind(&self) -> CodeKind {
        match self {
            Codes::I8(_) => CodeKind::I8,
            Codes::Bits(_) => CodeKind::Bits,
            Codes::Rotated(_) => CodeKind::RotatedBits,
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
            Codes::Rotated(c) => CodeQuery::rotated(c, metric, query, k),
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
    /// Checks an int8 codes file: its length and the per-dimension maps.
    fn parse(bytes: FileBytes, h: &Header, n: usize, dim: usize, shown: &Path) -> Result<Self> {
        let norms_at = (n * dim).div_ceil(4) * 4;
        let map_at = norms_at + n * 4;
        if h.body_len != (map_at + dim * 8) as u64 {
            return Err(Error::corrupted(
                shown,
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
                shown,
                (HEADER_LEN + map_at) as u64,
                "bad per-dimension code map",
            ));
        }
        Ok(c)
    }

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
    /// Checks a pre-rotation binary codes file: its length, means and deviations.
    fn parse(bytes: FileBytes, h: &Header, n: usize, dim: usize, shown: &Path) -> Result<Self> {
        let words = dim.div_ceil(64);
        let means_at = n * words * 8;
        let wrong_size = || Error::corrupted(shown, 16, "binary codes have the wrong size");
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
                shown,
                (HEADER_LEN + means_at) as u64,
                "bad per-dimension means or deviations",
            ));
        }
        Ok(c)
    }

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
    /// `q·x ≈ q·μ + f·(P·q)·s` from 8-bit weights `(P·q)_j ≈ step·(c_j − ZERO)`.
    Rotated {
        codes: &'a RotatedBits,
        /// The bit planes of `c`, interleaved per word.
        planes: Vec<u64>,
        step: f32,
        /// `Σ_j (P·q)_j` as quantized.
        total: f32,
        /// `q·μ`.
        q_mu: f32,
        /// `‖q‖²`.
        norm: f32,
        metric: Metric,
        k: &'static Kernels,
    },
}

/// The level of a zero query weight (levels are `1 ..= 2·ZERO − 1`).
const ZERO: u32 = 1 << (QUERY_PLANES - 1);

/// Symmetric 8-bit levels of `w` (`w_j ≈ step·(c_j − ZERO)`, so a zero weight is exactly
/// zero), as bit planes interleaved per word: `(planes, step, Σ_j step·(c_j − ZERO))`.
fn weight_planes(w: &[f32], words: usize) -> (Vec<u64>, f32, f32) {
    let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
    let step = if max > 0.0 {
        max / (ZERO - 1) as f32
    } else {
        1.0
    };
    let levels: Vec<u8> = w
        .iter()
        .map(|&x| ((x / step).round() as i32 + ZERO as i32).clamp(1, 2 * ZERO as i32 - 1) as u8)
        .collect();
    let total: i64 = levels.iter().map(|&c| i64::from(c) - i64::from(ZERO)).sum();
    let mut planes = vec![0u64; words * QUERY_PLANES];
    // Branch-free: the bits of 1,024 random levels would mispredict half the time, a cost
    // that showed in profiles of the binary walk (this runs once per query and segment).
    for (block, out) in levels.chunks(64).zip(planes.chunks_exact_mut(QUERY_PLANES)) {
        for (p, plane) in out.iter_mut().enumerate() {
            *plane = block
                .iter()
                .enumerate()
                .fold(0u64, |acc, (j, &c)| acc | (u64::from(c >> p & 1) << j));
        }
    }
    (planes, step, step * total as f32)
}

impl CodeQuery<'_> {
    /// Whether the distances are estimates of the metric's own (so may be returned as scores
    /// without rescoring), rather than a proxy that only ranks.
    pub(crate) fn estimates_the_metric(&self) -> bool {
        match self {
            CodeQuery::I8 { .. } | CodeQuery::WeightedBits { .. } => true,
            // cos θ ≈ cos(π·h/d): a cosine, not a dot product of unnormalized vectors.
            CodeQuery::Bits { metric, .. } => *metric == Metric::Cosine,
            CodeQuery::Rotated { metric, .. } => *metric != Metric::Manhattan,
        }
    }
}

impl<'a> CodeQuery<'a> {
    fn rotated(codes: &'a RotatedBits, metric: Metric, query: &[f32], k: &'static Kernels) -> Self {
        let mut rotated = vec![0f32; codes.rotation.padded()];
        codes.rotation.apply(query, &mut rotated);
        let (planes, step, total) = weight_planes(&rotated, codes.words);
        CodeQuery::Rotated {
            codes,
            planes,
            step,
            total,
            q_mu: query.iter().zip(codes.means()).map(|(q, m)| q * m).sum(),
            norm: query.iter().map(|q| q * q).sum(),
            metric,
            k,
        }
    }

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
        let (planes, step, _) = weight_planes(&w, codes.words);
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
            CodeQuery::Rotated {
                codes,
                planes,
                step,
                total,
                q_mu,
                norm,
                metric,
                k,
            } => {
                let (code, factor, x_norm) = codes.record(i);
                let (weighted, ones) = (k.weighted_bits)(code, planes);
                // (P·q)·s = 2·Σ_{s_j=1} (P·q)_j − Σ_j (P·q)_j.
                let set = step * (i64::from(weighted) - i64::from(ZERO * ones)) as f32;
                let dot = q_mu + factor * (2.0 * set - total);
                match metric {
                    Metric::Cosine | Metric::Dot => -dot,
                    Metric::Euclid | Metric::Manhattan => (norm - 2.0 * dot + x_norm).max(0.0),
                }
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
            CodeQuery::Rotated { codes, .. } => {
                let len = RotatedBits::record_len(codes.words);
                (&codes.bytes, HEADER_LEN + i as usize * len, len)
            }
        };
        if let Some(s) = bytes.get(start..start + len) {
            distance::prefetch_bytes(s);
        }
    }
}

#[cfg(test)]
mod tests;
