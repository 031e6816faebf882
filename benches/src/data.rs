//! Data sets for the ANN harness: generated (clustered Gaussian mixture, uniform) or read from
//! `.fvecs` / `.npy` files; exact ground truth computed once and cached next to them.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::Rng;

/// Vectors stored row by row.
#[derive(Clone, Debug)]
pub struct Vectors {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Row access to a data set, held in memory or mapped from its file.
pub trait Rows: Sync {
    fn dim(&self) -> usize;
    fn len(&self) -> usize;
    fn row(&self, i: usize) -> &[f32];
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Rows for Vectors {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        Vectors::len(self)
    }
    fn row(&self, i: usize) -> &[f32] {
        Vectors::row(self, i)
    }
}

/// An `.fvecs` file mapped instead of read: rows come from the page cache, so a data set as
/// large as memory (2M × 1024 is 8 GB) does not also sit on the harness's heap beside the
/// engine's mutable segment while it is loaded.
#[derive(Debug)]
pub struct MappedFvecs {
    map: memmap2::Mmap,
    dim: usize,
    len: usize,
}

impl MappedFvecs {
    pub fn open(path: &Path) -> std::io::Result<MappedFvecs> {
        let file = File::open(path)?;
        // SAFETY: the harness's own cache file, not modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let bad = |why: String| std::io::Error::other(format!("{}: {why}", path.display()));
        let head: [u8; 4] = map
            .get(..4)
            .ok_or_else(|| bad("empty".into()))?
            .try_into()
            .expect("4");
        let dim = usize::try_from(i32::from_le_bytes(head))
            .ok()
            .filter(|&d| d > 0)
            .ok_or_else(|| bad("bad dimension".into()))?;
        let stride = 4 + 4 * dim;
        if map.len() % stride != 0 {
            return Err(bad(format!(
                "{} bytes is not whole rows of {dim}",
                map.len()
            )));
        }
        // Each row's own dimension is checked when it is read: checking them all here would
        // read the whole file.
        let len = map.len() / stride;
        Ok(MappedFvecs { map, dim, len })
    }
}

impl Rows for MappedFvecs {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.len
    }
    fn row(&self, i: usize) -> &[f32] {
        assert!(i < self.len, "row {i} of {}", self.len);
        let at = i * (4 + 4 * self.dim);
        let d = i32::from_le_bytes(self.map[at..at + 4].try_into().expect("4"));
        assert_eq!(
            d as usize, self.dim,
            "row {i} of the .fvecs file has another dimension"
        );
        let bytes = &self.map[at + 4..at + 4 + 4 * self.dim];
        // SAFETY: in bounds (sliced above), 4-aligned (the map is page-aligned and every row
        // starts 4 bytes into a multiple of 4), any bit pattern is an f32; little-endian host
        // (x86-64 and aarch64, as `.fvecs` is).
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), self.dim) }
    }
}

/// A Gaussian mixture: `clusters` centres drawn from N(0, 1), points at centre + N(0, spread²).
/// `decay` > 0 gives dimension j a scale of (j + 1)^−decay: a decaying spectrum, as text
/// embeddings have.
pub fn clustered(
    n: usize,
    dim: usize,
    clusters: usize,
    spread: f32,
    decay: f32,
    seed: u64,
) -> Vectors {
    let mut rng = Rng::new(seed);
    let scale: Vec<f32> = (0..dim).map(|j| ((j + 1) as f32).powf(-decay)).collect();
    let centres: Vec<f32> = (0..clusters * dim).map(|_| rng.normal()).collect();
    let mut data = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = (rng.next_u64() % clusters as u64) as usize;
        for j in 0..dim {
            data.push((centres[c * dim + j] + rng.normal() * spread) * scale[j]);
        }
    }
    Vectors { dim, data }
}

/// Uniform in [-1, 1)^dim.
pub fn uniform(n: usize, dim: usize, seed: u64) -> Vectors {
    let mut rng = Rng::new(seed);
    Vectors {
        dim,
        data: (0..n * dim).map(|_| rng.unit() * 2.0 - 1.0).collect(),
    }
}

/// Writes `.fvecs`: per vector, its dimension as i32 LE then the floats.
pub fn write_fvecs(path: &Path, v: &Vectors) -> std::io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    for i in 0..v.len() {
        w.write_all(&(v.dim as i32).to_le_bytes())?;
        for x in v.row(i) {
            w.write_all(&x.to_le_bytes())?;
        }
    }
    w.flush()
}

/// Reads `.fvecs`, at most `limit` vectors.
pub fn read_fvecs(path: &Path, limit: usize) -> std::io::Result<Vectors> {
    let mut r = BufReader::new(File::open(path)?);
    let mut data = Vec::new();
    let mut dim = 0;
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < limit && r.read_exact(&mut head).is_ok() {
        let d = i32::from_le_bytes(head) as usize;
        if dim == 0 {
            dim = d;
        } else if d != dim {
            return Err(std::io::Error::other(format!(
                "vector {n} has dimension {d}, not {dim}"
            )));
        }
        let mut buf = vec![0u8; d * 4];
        r.read_exact(&mut buf)?;
        data.extend(
            buf.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4"))),
        );
        n += 1;
    }
    Ok(Vectors { dim, data })
}

/// Writes `.ivecs` (ground-truth neighbour ids).
pub fn write_ivecs(path: &Path, rows: &[Vec<u32>]) -> std::io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    for r in rows {
        w.write_all(&(r.len() as i32).to_le_bytes())?;
        for x in r {
            w.write_all(&x.to_le_bytes())?;
        }
    }
    w.flush()
}

/// Reads `.ivecs`.
pub fn read_ivecs(path: &Path) -> std::io::Result<Vec<Vec<u32>>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let d = i32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        at += 4;
        let row = bytes[at..at + d * 4]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
            .collect();
        at += d * 4;
        out.push(row);
    }
    Ok(out)
}

/// Reads a 2-D little-endian float32 `.npy` (C or Fortran order), at most `limit` rows.
pub fn read_npy(path: &Path, limit: usize) -> std::io::Result<Vectors> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let bad = |m: &str| std::io::Error::other(format!("{}: {m}", path.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file"));
    }
    let (header_len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4")) as usize,
            12,
        )
    };
    let header =
        std::str::from_utf8(&bytes[start..start + header_len]).map_err(|_| bad("bad header"))?;
    if !header.contains("'<f4'") {
        return Err(bad("only little-endian float32 (<f4) is supported"));
    }
    let fortran = header.contains("'fortran_order': True");
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape
        .trim_start_matches([' ', '('])
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let [rows, dim] = dims[..] else {
        return Err(bad("expected a 2-D array"));
    };
    let body = &bytes[start + header_len..];
    let at = |i: usize| f32::from_le_bytes(body[i * 4..i * 4 + 4].try_into().expect("4"));
    let n = rows.min(limit);
    let mut data = Vec::with_capacity(n * dim);
    for r in 0..n {
        for c in 0..dim {
            data.push(if fortran {
                at(c * rows + r)
            } else {
                at(r * dim + c)
            });
        }
    }
    Ok(Vectors { dim, data })
}

/// Exact `k` nearest neighbours (squared L2, or negative dot for `dot`) of every query, with
/// all threads.
pub fn ground_truth(base: &Vectors, queries: &Vectors, k: usize, dot: bool) -> Vec<Vec<u32>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = queries.len().div_ceil(threads);
    let mut out = vec![Vec::new(); queries.len()];
    std::thread::scope(|s| {
        for (t, slot) in out.chunks_mut(chunk.max(1)).enumerate() {
            s.spawn(move || {
                for (j, row) in slot.iter_mut().enumerate() {
                    let q = queries.row(t * chunk + j);
                    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
                    for i in 0..base.len() {
                        let v = base.row(i);
                        let d = if dot {
                            -q.iter().zip(v).map(|(a, b)| a * b).sum::<f32>()
                        } else {
                            q.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum::<f32>()
                        };
                        if best.len() < k || d < best[best.len() - 1].0 {
                            let pos = best.partition_point(|e| e.0 <= d);
                            best.insert(pos, (d, i as u32));
                            best.truncate(k);
                        }
                    }
                    *row = best.into_iter().map(|e| e.1).collect();
                }
            });
        }
    });
    out
}

/// The folder of a data set: `<data_dir>/<name>`.
pub fn set_dir(name: &str) -> PathBuf {
    crate::data_dir().join(name)
}
