//! Collection configuration: dimension, metric, index, WAL and optimizer settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::Metric;

/// Largest supported vector dimension.
pub const MAX_DIMENSION: usize = 65_536;

/// Configuration of a collection, fixed at creation (stored in its manifest).
///
/// ```
/// use deftech_vec::{CollectionConfig, FsyncPolicy, Metric};
/// let config = CollectionConfig::new(768, Metric::Cosine)
///     .fsync(FsyncPolicy::Always)
///     .seal_threshold(50_000);
/// assert_eq!(config.dimension, 768);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CollectionConfig {
    /// Number of components in every vector.
    pub dimension: usize,
    /// Distance metric.
    pub metric: Metric,
    /// HNSW graph parameters.
    #[serde(default)]
    pub hnsw: HnswConfig,
    /// Write-ahead log settings.
    #[serde(default)]
    pub wal: WalConfig,
    /// Background optimizer settings.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Input limits.
    #[serde(default)]
    pub limits: Limits,
    /// Quantized codes searched before rescoring on the `f32` vectors (none by default).
    #[serde(default)]
    pub quantization: Option<crate::quantization::Quantization>,
}

impl CollectionConfig {
    /// A configuration with default index, WAL and optimizer settings.
    pub fn new(dimension: usize, metric: Metric) -> Self {
        CollectionConfig {
            dimension,
            metric,
            hnsw: HnswConfig::default(),
            wal: WalConfig::default(),
            optimizer: OptimizerConfig::default(),
            limits: Limits::default(),
            quantization: None,
        }
    }

    /// Sets the quantization.
    #[must_use]
    pub fn quantization(mut self, q: crate::quantization::Quantization) -> Self {
        self.quantization = Some(q);
        self
    }

    /// Sets the HNSW parameters.
    #[must_use]
    pub fn hnsw(mut self, hnsw: HnswConfig) -> Self {
        self.hnsw = hnsw;
        self
    }

    /// Sets the WAL fsync policy.
    #[must_use]
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.wal.fsync = policy;
        self
    }

    /// Sets the WAL settings.
    #[must_use]
    pub fn wal(mut self, wal: WalConfig) -> Self {
        self.wal = wal;
        self
    }

    /// Sets the optimizer settings.
    #[must_use]
    pub fn optimizer(mut self, optimizer: OptimizerConfig) -> Self {
        self.optimizer = optimizer;
        self
    }

    /// Seals the mutable segment once it holds this many points.
    #[must_use]
    pub fn seal_threshold(mut self, points: usize) -> Self {
        self.optimizer.seal_threshold = points;
        self
    }

    /// Sets the input limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.dimension == 0 || self.dimension > MAX_DIMENSION {
            return Err(Error::invalid_argument(
                "dimension",
                format!(
                    "must be between 1 and {MAX_DIMENSION}, got {}",
                    self.dimension
                ),
            ));
        }
        if !(2..=128).contains(&self.hnsw.m) {
            return Err(Error::invalid_argument(
                "hnsw.m",
                format!("must be between 2 and 128, got {}", self.hnsw.m),
            ));
        }
        if self.hnsw.ef_construct < self.hnsw.m || self.hnsw.ef_construct > 4096 {
            return Err(Error::invalid_argument(
                "hnsw.ef_construct",
                format!(
                    "must be between m ({}) and 4096, got {}",
                    self.hnsw.m, self.hnsw.ef_construct
                ),
            ));
        }
        if let FsyncPolicy::Interval(d) = self.wal.fsync
            && (d.is_zero() || d > Duration::from_secs(3600))
        {
            return Err(Error::invalid_argument(
                "wal.fsync",
                format!("interval must be between 1 ms and 1 hour, got {d:?}"),
            ));
        }
        if self.wal.segment_bytes < 4096 {
            return Err(Error::invalid_argument(
                "wal.segment_bytes",
                format!("must be at least 4096, got {}", self.wal.segment_bytes),
            ));
        }
        if self.optimizer.seal_threshold == 0 {
            return Err(Error::invalid_argument(
                "optimizer.seal_threshold",
                "must be at least 1",
            ));
        }
        if self.optimizer.max_segments == 0 {
            return Err(Error::invalid_argument(
                "optimizer.max_segments",
                "must be at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.optimizer.vacuum_deleted_ratio) {
            return Err(Error::invalid_argument(
                "optimizer.vacuum_deleted_ratio",
                format!(
                    "must be within [0, 1], got {}",
                    self.optimizer.vacuum_deleted_ratio
                ),
            ));
        }
        if self.limits.max_payload_bytes == 0 {
            return Err(Error::invalid_argument(
                "limits.max_payload_bytes",
                "must be at least 1",
            ));
        }
        if let Some(q) = &self.quantization {
            q.validate()?;
        }
        if self.limits.max_batch_points == 0 {
            return Err(Error::invalid_argument(
                "limits.max_batch_points",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// HNSW graph parameters (used once sealed segments carry a graph).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HnswConfig {
    /// Links per node on upper levels (level 0 keeps up to `2·m`).
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construct: usize,
    /// Segments with fewer points than this are scanned exactly instead of indexed.
    pub full_scan_threshold: usize,
    /// Keep each sealed segment's graph and quantized codes in the page cache (mapped files)
    /// instead of copying them into process memory in huge pages (Qdrant's `hnsw_config.on_disk`).
    /// The copies make searches faster (ARCHITECTURE.md §11) but must fit in memory; set this
    /// when graph and codes are larger than RAM. Takes effect as segments are opened.
    #[serde(default)]
    pub on_disk: bool,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: 16,
            ef_construct: 100,
            full_scan_threshold: 10_000,
            on_disk: false,
        }
    }
}

impl HnswConfig {
    /// Sets `m`.
    #[must_use]
    pub fn m(mut self, m: usize) -> Self {
        self.m = m;
        self
    }

    /// Sets `ef_construct`.
    #[must_use]
    pub fn ef_construct(mut self, ef: usize) -> Self {
        self.ef_construct = ef;
        self
    }

    /// Sets the full-scan threshold.
    #[must_use]
    pub fn full_scan_threshold(mut self, points: usize) -> Self {
        self.full_scan_threshold = points;
        self
    }

    /// Keeps graph and quantized codes mapped (page cache) instead of copied into memory.
    #[must_use]
    pub fn on_disk(mut self, on: bool) -> Self {
        self.on_disk = on;
        self
    }
}

/// When the WAL is flushed to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Every write is durable before it is acknowledged (and before readers see it); concurrent
    /// writers share one `fdatasync` (group commit).
    Always,
    /// A background thread syncs at this interval; a crash can lose the writes of the last
    /// interval.
    #[serde(with = "millis")]
    Interval(Duration),
    /// The operating system decides; a crash can lose recent writes.
    Never,
}

/// WAL settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WalConfig {
    /// Fsync policy.
    pub fsync: FsyncPolicy,
    /// A WAL file is closed and a new one started past this size.
    pub segment_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            fsync: FsyncPolicy::Always,
            segment_bytes: 32 << 20,
        }
    }
}

impl WalConfig {
    /// Sets the fsync policy.
    #[must_use]
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }

    /// Sets the WAL file size at which a new file is started.
    #[must_use]
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }
}

/// Background optimizer settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OptimizerConfig {
    /// The mutable segment is sealed once it holds this many point versions.
    pub seal_threshold: usize,
    /// When there are more sealed segments than this, the smallest are merged.
    ///
    /// A search walks every segment's graph, each walk paying its own descent and keeping at
    /// least `limit × oversampling` candidates: at 1M × 1024 five segments of 200k cost about
    /// 4× one of 1M, at 2M five of 400k 2.5× one of 2M (two of 1M: 1.08×). For query
    /// throughput keep this low and [`max_segment_points`](Self::max_segment_points) high
    /// (ARCHITECTURE.md §11).
    pub max_segments: usize,
    /// A merge never produces a segment larger than this many points. Larger segments mean
    /// fewer graph walks per query, and longer graph builds on merge. For 10M × 1024 on one
    /// 8-vCPU replica, 5M (two segments) is estimated at ≈ 5,600 int8 queries/s against
    /// ≈ 4,650–5,300 for the default's five (ARCHITECTURE.md §11).
    pub max_segment_points: usize,
    /// A sealed segment whose deleted fraction exceeds this is rewritten without its deleted
    /// points.
    pub vacuum_deleted_ratio: f64,
    /// ... provided it has at least this many deleted points.
    pub vacuum_min_deleted: usize,
    /// Run the optimizer in a background thread (otherwise only [`Collection::optimize`]
    /// seals and merges).
    ///
    /// [`Collection::optimize`]: crate::Collection::optimize
    pub background: bool,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            seal_threshold: 20_000,
            max_segments: 8,
            max_segment_points: 2_000_000,
            vacuum_deleted_ratio: 0.2,
            vacuum_min_deleted: 1_000,
            background: true,
        }
    }
}

impl OptimizerConfig {
    /// Sets the seal threshold (points).
    #[must_use]
    pub fn seal_threshold(mut self, points: usize) -> Self {
        self.seal_threshold = points;
        self
    }

    /// Sets the number of sealed segments above which merges happen.
    #[must_use]
    pub fn max_segments(mut self, n: usize) -> Self {
        self.max_segments = n;
        self
    }

    /// Sets the largest merge result (points).
    #[must_use]
    pub fn max_segment_points(mut self, n: usize) -> Self {
        self.max_segment_points = n;
        self
    }

    /// Sets the vacuum thresholds.
    #[must_use]
    pub fn vacuum(mut self, deleted_ratio: f64, min_deleted: usize) -> Self {
        self.vacuum_deleted_ratio = deleted_ratio;
        self.vacuum_min_deleted = min_deleted;
        self
    }

    /// Enables or disables the background optimizer thread.
    #[must_use]
    pub fn background(mut self, on: bool) -> Self {
        self.background = on;
        self
    }
}

/// Input limits; requests beyond them are rejected whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload of one point, in bytes of compact JSON.
    pub max_payload_bytes: usize,
    /// Most points (or ids) in one write.
    pub max_batch_points: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1 << 20,
            max_batch_points: 100_000,
        }
    }
}

impl Limits {
    /// Sets the payload size limit.
    #[must_use]
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Sets the batch size limit.
    #[must_use]
    pub fn max_batch_points(mut self, n: usize) -> Self {
        self.max_batch_points = n;
        self
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_json() {
        let c = CollectionConfig::new(4, Metric::Dot)
            .fsync(FsyncPolicy::Interval(Duration::from_millis(250)))
            .seal_threshold(10);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<CollectionConfig>(&json).unwrap(), c);
    }

    #[test]
    fn validation_names_the_field() {
        let err = CollectionConfig::new(0, Metric::Dot)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("dimension"), "{err}");
        let err = CollectionConfig::new(8, Metric::Dot)
            .hnsw(HnswConfig::default().m(1))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("hnsw.m"), "{err}");
    }
}
