//! Unit tests of the codes: estimates against exact distances, the rotation's advantage on a
//! decaying spectrum, files from before the rotation, damaged files.

use super::*;
use crate::directory::MemoryDirectory;
use crate::scorer::F32Vectors;

/// `n × dim` pseudo-random values in [−0.5, 0.5).
pub(super) fn data(n: usize, dim: usize) -> Vec<f32> {
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
    let path = Path::new(file_name(q));
    write(&dir, path, q, v, dim).unwrap();
    Codes::open(&dir, path, (v.len() / dim) as u32, dim, true).unwrap()
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
fn rotated_binary_estimates_l2_and_dot_for_every_metric() {
    // Uniform data (no structure for the codes to exploit), a dimension that is not a
    // power of two (padded to 128).
    let (n, dim) = (300, 100);
    let v = data(n, dim);
    let c = codes(&Quantization::binary(), &v, dim);
    assert!(matches!(c, Codes::Rotated(_)), "{c:?}");
    let q = &v[..dim];
    for metric in [Metric::Dot, Metric::Euclid, Metric::Manhattan] {
        let s = c.query(metric, q);
        let nearest = (0..n as u32)
            .min_by(|&a, &b| s.distance(a).total_cmp(&s.distance(b)))
            .expect("points");
        assert_eq!(nearest, 0, "{metric:?}: a point is its own nearest");
    }
    // The L2 estimate is unbiased: averaged over the points, within a few percent.
    let exact = F32Vectors::new(Metric::Euclid, &v, dim).query(q);
    let est = c.query(Metric::Euclid, q);
    let (mut e_sum, mut a_sum) = (0f64, 0f64);
    for i in 1..n as u32 {
        e_sum += f64::from(exact.distance(i));
        a_sum += f64::from(est.distance(i));
    }
    assert!(
        (a_sum / e_sum - 1.0).abs() < 0.03,
        "mean L2² estimate {} vs exact {}",
        a_sum / f64::from(n as u32 - 1),
        e_sum / f64::from(n as u32 - 1)
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
                .map(|j| f64::from(q[j]) * f64::from(alphas[j].mul_add(f32::from(u[j]), gammas[j])))
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
        let path = Path::new(file_name(&q));
        write(&dir, path, &q, &v, dim).unwrap();
        let mapped = Codes::open(&dir, path, n as u32, dim, false).unwrap();
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

/// Writes binary codes as they were before the rotation: bits of `x_j > μ_j` in the data's
/// own basis, then the means and (`deviations`) the mean absolute deviations.
fn write_unrotated(dir: &MemoryDirectory, v: &[f32], dim: usize, deviations: bool) {
    let n = v.len() / dim;
    let means = learn_means(v, dim);
    let mut dev = vec![0f32; dim];
    for r in v.chunks_exact(dim) {
        for ((d, &x), &m) in dev.iter_mut().zip(r).zip(&means) {
            *d += (x - m).abs() / n as f32;
        }
    }
    let words = dim.div_ceil(64);
    let mut w = FileWriter::create(dir, Path::new(FILE_BITS), MAGIC_BITS).unwrap();
    let mut buf = vec![0u64; words];
    for r in v.chunks_exact(dim) {
        bits(r, &means, &mut buf);
        w.write(bytemuck::cast_slice(&buf)).unwrap();
    }
    w.write(bytemuck::cast_slice(&means)).unwrap();
    if deviations {
        w.write(bytemuck::cast_slice(&dev)).unwrap();
    }
    w.finish([n as u64, dim as u64, words as u64]).unwrap();
}

#[test]
fn rotated_binary_beats_the_data_basis_on_a_decaying_spectrum() {
    let dim = 256;
    let n = 2000;
    let v = decaying(n, dim);
    let c = codes(&Quantization::binary(), &v, dim);
    let dir = MemoryDirectory::new();
    write_unrotated(&dir, &v, dim, true);
    let old = Codes::open(&dir, Path::new(FILE_BITS), n as u32, dim, true).unwrap();
    let all = |s: CodeQuery<'_>| (0..n as u32).map(|i| s.distance(i)).collect::<Vec<_>>();
    let rotated = recall_of(&v, dim, 20, |q| all(c.query(Metric::Cosine, q)));
    let unrotated = recall_of(&v, dim, 20, |q| all(old.query(Metric::Cosine, q)));
    assert!(
        rotated > unrotated && rotated >= 0.9,
        "top-10 within the best 20: rotated {rotated}, data basis {unrotated}"
    );
    // The estimate is q·μ + f·(P·q)·s up to the 8-bit rounding of P·q.
    let Codes::Rotated(b) = &c else {
        unreachable!("rotated codes")
    };
    let q = &v[5 * dim..6 * dim];
    let mut pq = vec![0f32; b.rotation.padded()];
    b.rotation.apply(q, &mut pq);
    let q_mu: f32 = q.iter().zip(b.means()).map(|(x, m)| x * m).sum();
    let s = c.query(Metric::Dot, q);
    let (mut err, mut size) = (0f32, 0f32);
    for i in 0..n as u32 {
        let (code, factor, _) = b.record(i);
        let signed: f32 = pq
            .iter()
            .enumerate()
            .map(|(j, x)| {
                if code[j / 64] >> (j % 64) & 1 == 1 {
                    *x
                } else {
                    -*x
                }
            })
            .sum();
        let want = q_mu + factor * signed;
        err += (-s.distance(i) - want).abs();
        size += (want - q_mu).abs();
    }
    assert!(
        err < 0.05 * size,
        "mean |estimate − exact formula| {err} vs mean |f·(P·q)·s| {size}"
    );
}

#[test]
fn unrotated_binary_files_are_still_read() {
    let dim = 256;
    let n = 2000;
    let v = decaying(n, dim);
    let dir = MemoryDirectory::new();
    write_unrotated(&dir, &v, dim, true);
    let c = Codes::open(&dir, Path::new(FILE_BITS), n as u32, dim, true).unwrap();
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
    let mut w = FileWriter::create(&dir, Path::new(FILE_BITS), MAGIC_BITS).unwrap();
    let mut buf = [0u64; 1];
    for r in v.chunks_exact(dim) {
        bits(r, &means, &mut buf);
        w.write(bytemuck::cast_slice(&buf)).unwrap();
    }
    w.write(bytemuck::cast_slice(&means)).unwrap();
    w.finish([n as u64, dim as u64, 1]).unwrap();
    let c = Codes::open(&dir, Path::new(FILE_BITS), n as u32, dim, true).unwrap();
    let s = c.query(Metric::Cosine, &v[..dim]);
    assert!(matches!(s, CodeQuery::Bits { .. }));
    assert_eq!(s.distance(0), -1.0, "identical bit pattern");
}

#[test]
fn damaged_codes_are_rejected() {
    let dir = MemoryDirectory::new();
    let v = data(10, 8);
    let (i8, b) = (Path::new(FILE_I8), Path::new(FILE_BITS_ROTATED));
    write(&dir, i8, &Quantization::int8(0.99), &v, 8).unwrap();
    write(&dir, b, &Quantization::binary(), &v, 8).unwrap();
    assert!(Codes::open(&dir, i8, 11, 8, true).is_err());
    assert!(Codes::open(&dir, b, 10, 9, true).is_err());
    assert!(Codes::open(&dir, i8, 10, 8, true).is_ok());
    assert!(Codes::open(&dir, b, 10, 8, true).is_ok());
    // Codes under the other kind's name: the magic does not match.
    dir.rename(i8, Path::new(FILE_BITS)).unwrap();
    assert!(Codes::open(&dir, Path::new(FILE_BITS), 10, 8, true).is_err());
    // A point's factor that is not a number.
    let (bytes, _) = open_file(&dir, b, MAGIC_BITS_ROTATED).unwrap();
    let mut bad = bytes.to_vec();
    let at = HEADER_LEN + 3 * RotatedBits::record_len(1) + 8;
    bad[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut w = FileWriter::create(&dir, Path::new("bad"), MAGIC_BITS_ROTATED).unwrap();
    w.write(&bad[HEADER_LEN..]).unwrap();
    w.finish([10, 8, 64]).unwrap();
    dir.rename(Path::new("bad"), b).unwrap();
    let err = Codes::open(&dir, b, 10, 8, true).unwrap_err().to_string();
    assert!(err.contains("point 3"), "{err}");
}
