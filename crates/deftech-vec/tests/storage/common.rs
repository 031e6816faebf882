//! Shared helpers.

use std::sync::Arc;

use deftech_vec::{CollectionConfig, Database, MemoryDirectory, Metric, OptimizerConfig};

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.f32()).collect()
    }
}

/// A config with the background optimizer off (tests call `optimize()` when they want it).
pub fn quiet_config(dim: usize, metric: Metric) -> CollectionConfig {
    CollectionConfig::new(dim, metric).optimizer(OptimizerConfig::default().background(false))
}

pub fn mem_db() -> (MemoryDirectory, Database) {
    let dir = MemoryDirectory::new();
    let db = Database::open_in(Arc::new(dir.clone())).expect("open in-memory database");
    (dir, db)
}

pub fn reopen(dir: &MemoryDirectory) -> Database {
    Database::open_in(Arc::new(dir.clone())).expect("reopen")
}
