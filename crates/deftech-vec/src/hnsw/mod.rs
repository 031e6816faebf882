//! HNSW graphs: built in memory with all cores when a segment is sealed, written as one flat
//! file, and searched straight from the mmap (opening does not parse or copy the graph).
//!
//! `hnsw.bin` (magic `DTHNSW\0\0`, the common 64-byte header; parameters: point count, `m`,
//! and `entry | max_level << 32`) has a body of little-endian `u32`s:
//!
//! ```text
//! level 0      count × (1 + 2m)   per node: neighbour count, then up to 2m neighbour offsets
//! upper index  count + 1          CSR offsets into the upper links (in u32 units)
//! upper links  upper_index[count] per node with level L ≥ 1: L blocks of (1 + m): count, ids
//! ```
//!
//! A node's level is `(upper_index[i + 1] − upper_index[i]) / (1 + m)`. Every neighbour id is
//! checked against the point count when read, so a damaged file can make search worse but never
//! unsafe.

mod build;
mod search;
#[cfg(test)]
mod tests;

use std::path::Path;

pub(crate) use build::{Params, build};
pub(crate) use search::{search, with_context};

use crate::codec::{HEADER_LEN, open_file};
use crate::directory::{Directory, FileBytes};
use crate::error::{Error, Result};

pub(crate) const FILE: &str = "hnsw.bin";
pub(crate) const MAGIC: &[u8; 8] = b"DTHNSW\0\0";
pub(crate) const NO_ENTRY: u32 = u32::MAX;

/// Read access to a graph's links, for search.
pub(crate) trait Links {
    /// Entry point and top level, if the graph has nodes.
    fn entry(&self) -> Option<(u32, u8)>;
    /// Calls `f` with the neighbours of `node` at `level` (already checked to be in range).
    fn for_each_neighbor(&self, node: u32, level: u8, f: impl FnMut(u32));
}

/// A graph file opened from a segment folder.
#[derive(Clone)]
pub(crate) struct Graph {
    bytes: FileBytes,
    count: u32,
    m: usize,
    entry: u32,
    max_level: u8,
    upper_start: usize,
    upper_len: usize,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("count", &self.count)
            .field("m", &self.m)
            .field("max_level", &self.max_level)
            .finish()
    }
}

impl Graph {
    /// Opens and checks the graph file of a segment of `count` points; `in_ram`: copied into
    /// huge pages ([`FileBytes::copy_to_huge_pages`](crate::directory::FileBytes)).
    pub(crate) fn open(
        dir: &dyn Directory,
        path: &Path,
        count: u32,
        in_ram: bool,
    ) -> Result<Graph> {
        let (bytes, header) = open_file(dir, path, MAGIC)?;
        let shown = dir.describe(path);
        let [n, m, entry] = header.params;
        let bad = |offset: u64, reason: String| Error::corrupted(&shown, offset, reason);
        if n != u64::from(count) {
            return Err(bad(
                32,
                format!("graph of {n} nodes for a segment of {count} points"),
            ));
        }
        if !(2..=128).contains(&m) {
            return Err(bad(40, format!("m = {m} out of range")));
        }
        let m = m as usize;
        let (entry, max_level) = ((entry & 0xffff_ffff) as u32, (entry >> 32) as u8);
        if max_level > 30 {
            return Err(bad(48, format!("top level {max_level} out of range")));
        }
        if (count == 0) != (entry == NO_ENTRY) || (count > 0 && entry >= count) {
            return Err(bad(
                48,
                format!("entry point {entry} invalid for {count} nodes"),
            ));
        }
        let words = header.body_len / 4;
        let fixed = u64::from(count) * (1 + 2 * m as u64) + u64::from(count) + 1;
        if header.body_len % 4 != 0 || words < fixed {
            return Err(bad(
                16,
                format!("graph body of {} bytes is too short", header.body_len),
            ));
        }
        let upper_start = (u64::from(count) * (1 + 2 * m as u64) + u64::from(count) + 1) as usize;
        let upper_len = (words - fixed) as usize;
        let g = Graph {
            bytes,
            count,
            m,
            entry,
            max_level,
            upper_start,
            upper_len,
        };
        if g.upper_index(count as usize) as usize != upper_len {
            return Err(bad(16, "upper index does not match the upper links".into()));
        }
        // Every search walks the graph: once checked, it lives in memory, in huge pages.
        Ok(Graph {
            bytes: g.bytes.for_search(in_ram),
            ..g
        })
    }

    fn words(&self) -> &[u32] {
        bytemuck::cast_slice(&self.bytes[HEADER_LEN..])
    }

    fn upper_index(&self, i: usize) -> u32 {
        self.words()[self.count as usize * (1 + 2 * self.m) + i]
    }

    /// Bytes of the graph file.
    pub(crate) fn file_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The mapped file.
    pub(crate) fn file(&self) -> &FileBytes {
        &self.bytes
    }

    /// Neighbours of `node` at level 0 (ids not yet range-checked).
    #[inline]
    fn level0(&self, node: u32) -> &[u32] {
        let stride = 1 + 2 * self.m;
        let block = &self.words()[node as usize * stride..(node as usize + 1) * stride];
        let n = (block[0] as usize).min(2 * self.m);
        &block[1..1 + n]
    }

    /// Neighbours of `node` at `level >= 1` (ids not yet range-checked).
    fn upper(&self, node: u32, level: u8) -> &[u32] {
        let (start, end) = (
            self.upper_index(node as usize) as usize,
            self.upper_index(node as usize + 1) as usize,
        );
        let block = 1 + self.m;
        let at = start + (usize::from(level) - 1) * block;
        if start > end || end > self.upper_len || at + block > end {
            return &[];
        }
        let b = &self.words()[self.upper_start + at..self.upper_start + at + block];
        let n = (b[0] as usize).min(self.m);
        &b[1..1 + n]
    }
}

impl Links for Graph {
    fn entry(&self) -> Option<(u32, u8)> {
        (self.count > 0).then_some((self.entry, self.max_level))
    }

    #[inline]
    fn for_each_neighbor(&self, node: u32, level: u8, mut f: impl FnMut(u32)) {
        let list = if level == 0 {
            self.level0(node)
        } else {
            self.upper(node, level)
        };
        for &n in list {
            if n < self.count {
                f(n);
            }
        }
    }
}
