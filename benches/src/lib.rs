//! Shared fixtures for the benches and the harness: deterministic data generators, process
//! memory readings, and the on-disk collections the benches reuse.

pub mod data;

use std::path::{Path, PathBuf};

use deftech_vec::{CollectionConfig, Database, FsyncPolicy, Metric, OptimizerConfig, Point};
use serde_json::json;

/// A small, fast, deterministic generator (xorshift64*), so that every run sees the same data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.unit().max(1e-7);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    /// A vector of uniform values in [-1, 1).
    pub fn uniform_vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.unit() * 2.0 - 1.0).collect()
    }
}

/// Resident memory of this process in bytes, split as Linux reports it in `/proc/self/status`:
/// `(anonymous, file-backed)`. Anonymous is the heap (and stacks); file-backed is page cache
/// mapped into the process (the mmapped segment files).
pub fn resident_bytes() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("RssAnon:")?, field("RssFile:")?))
}

/// Where benches keep data sets between runs (`DEFTECH_BENCH_DATA`, default `./bench-data`).
pub fn data_dir() -> PathBuf {
    std::env::var_os("DEFTECH_BENCH_DATA")
        .map_or_else(|| PathBuf::from("bench-data"), PathBuf::from)
}

/// A database holding collection `sealed` with `n` uniform points of dimension `dim` (payload
/// `group` = id % 100, indexed), all in one sealed segment with its HNSW graph (m 16,
/// ef_construct 100); built once under `data_dir()` and reused.
pub fn sealed_collection(n: u64, dim: usize) -> std::io::Result<PathBuf> {
    // `v2`: WAL frames gained a timestamp (WAL magic version 2); older caches do not open.
    let path = data_dir().join(format!("sealed-hnsw-v2-{n}x{dim}"));
    let marker = path.join("COMPLETE");
    if marker.exists() {
        return Ok(path);
    }
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    build_sealed(&path, n, dim).map_err(std::io::Error::other)?;
    std::fs::write(marker, b"")?;
    Ok(path)
}

fn build_sealed(path: &Path, n: u64, dim: usize) -> deftech_vec::Result<()> {
    let db = Database::open(path)?;
    let config = CollectionConfig::new(dim, Metric::Cosine)
        .fsync(FsyncPolicy::Never)
        .optimizer(
            OptimizerConfig::default()
                .background(false)
                .max_segments(1)
                .max_segment_points(n as usize),
        );
    let c = db.create_collection("sealed", config)?;
    let mut rng = Rng::new(n ^ dim as u64);
    let batch = 10_000;
    let mut next = 0;
    while next < n {
        let end = (next + batch).min(n);
        c.upsert((next..end).map(|i| {
            Point::new(i, rng.uniform_vector(dim))
                .with_payload(json!({"group": i % 100, "title": format!("doc {i}")}))
        }))?;
        next = end;
    }
    c.create_payload_index("group", deftech_vec::PayloadIndexKind::Integer)?;
    c.optimize()?;
    c.flush()?;
    db.close()
}
