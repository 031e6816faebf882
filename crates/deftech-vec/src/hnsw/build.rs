//! Parallel HNSW construction (the algorithm of Malkov & Yashunin, with hnswlib's neighbour
//! selection heuristic): nodes are inserted by all threads at once, each node's link lists
//! guarded by its own lock; then the graph is written as one flat file.

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use super::search::{SearchContext, greedy, search_layer};
use super::{Links, MAGIC, NO_ENTRY};
use crate::codec::FileWriter;
use crate::directory::Directory;
use crate::error::Result;
use crate::scorer::F32Vectors;

/// Graph construction parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub m: usize,
    pub ef_construct: usize,
    pub threads: usize,
    pub seed: u64,
}

struct Building<'a> {
    store: F32Vectors<'a>,
    n: usize,
    m: usize,
    levels: Vec<u8>,
    l0: Vec<AtomicU32>,
    upper_index: Vec<u32>,
    upper: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
    entry: RwLock<(u32, u8)>,
}

fn level_for(node: u32, seed: u64, ml: f64) -> u8 {
    // SplitMix64 of (seed, node): levels do not depend on thread timing.
    let mut z = seed ^ (u64::from(node).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (-u.ln() * ml).floor().min(30.0) as u8
}

impl Building<'_> {
    fn stride0(&self) -> usize {
        1 + 2 * self.m
    }

    /// The slots of `node`'s list at `level`: count then ids.
    fn slots(&self, node: u32, level: u8) -> &[AtomicU32] {
        if level == 0 {
            let s = self.stride0();
            &self.l0[node as usize * s..(node as usize + 1) * s]
        } else {
            let b = 1 + self.m;
            let at = self.upper_index[node as usize] as usize + (usize::from(level) - 1) * b;
            &self.upper[at..at + b]
        }
    }

    fn read_links(&self, node: u32, level: u8, out: &mut [u32; 257]) -> usize {
        let _g = self.locks[node as usize].lock();
        let slots = self.slots(node, level);
        let n = (slots[0].load(Ordering::Relaxed) as usize).min(slots.len() - 1);
        for (o, s) in out.iter_mut().zip(&slots[1..1 + n]) {
            *o = s.load(Ordering::Relaxed);
        }
        n
    }

    fn write_links(slots: &[AtomicU32], ids: &[u32]) {
        for (s, &id) in slots[1..].iter().zip(ids) {
            s.store(id, Ordering::Relaxed);
        }
        slots[0].store(ids.len() as u32, Ordering::Relaxed);
    }

    /// hnswlib's heuristic: walk candidates closest first, keep one unless it is closer to an
    /// already kept neighbour than to the base point.
    fn select(&self, candidates: &[(f32, u32)], max: usize, out: &mut Vec<u32>) {
        out.clear();
        let mut kept: Vec<(f32, u32)> = Vec::with_capacity(max);
        for &(d, c) in candidates {
            if kept.len() >= max {
                break;
            }
            if kept.iter().all(|&(_, k)| self.store.between(c, k) >= d) {
                kept.push((d, c));
            }
        }
        out.extend(kept.iter().map(|&(_, k)| k));
    }

    fn insert(&self, q: u32, ctx: &mut SearchContext, ef_construct: usize) {
        let level = self.levels[q as usize];
        let (mut ep, top) = *self.entry.read();
        if ep == q {
            return;
        }
        let scorer = self.store.query(self.store.vector(q));
        let mut d = crate::scorer::Scorer::distance(&scorer, ep);
        for l in (level.saturating_add(1)..=top).rev() {
            (ep, d) = greedy(self, &scorer, &mut ctx.buf, ep, d, l);
        }
        let mut seeds = vec![(d, ep)];
        let mut found = Vec::new();
        let mut selected = Vec::new();
        let not_self = |i: u32| i != q;
        for l in (0..=level.min(top)).rev() {
            ctx.reset(self.n);
            for &(sd, s) in &seeds {
                ctx.seed(sd, s, s != q);
            }
            search_layer(ctx, self, &scorer, l, ef_construct, &not_self);
            ctx.sorted_results(&mut found);
            self.select(&found, self.m, &mut selected);
            {
                let _g = self.locks[q as usize].lock();
                let slots = self.slots(q, l);
                let existing = slots[0].load(Ordering::Relaxed) as usize;
                if existing > 0 {
                    // Other threads already linked to q at this level (it was reachable from
                    // above): keep the best of those links and the selected ones.
                    let mut cands = found.clone();
                    for s in &slots[1..1 + existing.min(slots.len() - 1)] {
                        let id = s.load(Ordering::Relaxed);
                        if id != q && !cands.iter().any(|c| c.1 == id) {
                            cands.push((self.store.between(q, id), id));
                        }
                    }
                    cands.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
                    let max = if l == 0 { 2 * self.m } else { self.m };
                    self.select(&cands, max, &mut selected);
                }
                Self::write_links(slots, &selected);
            }
            let max = if l == 0 { 2 * self.m } else { self.m };
            for &s in &selected {
                self.link_back(s, q, l, max);
            }
            seeds.clone_from(&found);
        }
        if level > top {
            let mut e = self.entry.write();
            if level > e.1 {
                *e = (q, level);
            }
        }
    }

    /// Adds `q` to `s`'s list at `level`, pruning with the heuristic when it is full.
    fn link_back(&self, s: u32, q: u32, level: u8, max: usize) {
        let _g = self.locks[s as usize].lock();
        let slots = self.slots(s, level);
        let n = slots[0].load(Ordering::Relaxed) as usize;
        if slots[1..1 + n]
            .iter()
            .any(|x| x.load(Ordering::Relaxed) == q)
        {
            return; // s selected q itself while q was being inserted.
        }
        if n < max {
            slots[1 + n].store(q, Ordering::Relaxed);
            slots[0].store(n as u32 + 1, Ordering::Relaxed);
            return;
        }
        let mut cands: Vec<(f32, u32)> = slots[1..1 + n]
            .iter()
            .map(|x| {
                let id = x.load(Ordering::Relaxed);
                (self.store.between(s, id), id)
            })
            .collect();
        cands.push((self.store.between(s, q), q));
        cands.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut kept = Vec::with_capacity(max);
        self.select(&cands, max, &mut kept);
        Self::write_links(slots, &kept);
    }
}

/// No parent or next hop yet (see [`Building::connect`]).
const NONE: u32 = u32::MAX;

impl Building<'_> {
    /// Makes level 0 strongly connected: every node reachable from the entry point and the
    /// entry point reachable from every node, so a search reaches every node wherever the
    /// descent through the upper levels lands. The neighbour heuristic can leave a few nodes
    /// without incoming links (or, with dot product, whole regions without a way back); each
    /// is linked to or from its nearest connected node, taking a free slot or replacing a link
    /// that is not on the spanning trees, which therefore stay intact: one pass suffices.
    /// Returns how many nodes could not be connected (none in practice).
    fn connect(&self, ctx: &mut SearchContext) -> usize {
        let Some((entry, _)) = Links::entry(self) else {
            return 0;
        };
        let n = self.n;
        let mut found = Vec::new();
        // Forward: `parent[v]` is the node whose link first reached `v` from the entry point.
        let mut parent = vec![NONE; n];
        parent[entry as usize] = entry;
        self.reach_forward(entry, &mut parent);
        for u in 0..n as u32 {
            if parent[u as usize] != NONE {
                continue;
            }
            let accept = |i: u32| parent[i as usize] != NONE;
            self.nearest(ctx, u, entry, &accept, &mut found);
            let from = found.iter().map(|&(_, w)| w).find(|&w| {
                // Removing a link w → v that is not a tree edge leaves every node reached.
                self.link_level0(w, u, |v| parent[v as usize] != w)
            });
            if let Some(w) = from {
                parent[u as usize] = w;
                self.reach_forward(u, &mut parent);
            }
        }
        // Backward, on the reversed links: `next[x]` is the link `x` follows toward the entry.
        let mut start = vec![0u32; n + 1];
        for x in 0..n as u32 {
            self.for_each_neighbor(x, 0, |y| start[y as usize + 1] += 1);
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut from = vec![0u32; start[n] as usize];
        for x in 0..n as u32 {
            self.for_each_neighbor(x, 0, |y| {
                from[fill[y as usize] as usize] = x;
                fill[y as usize] += 1;
            });
        }
        drop(fill);
        let reverse = |y: u32| &from[start[y as usize] as usize..start[y as usize + 1] as usize];
        let mut next = vec![NONE; n];
        next[entry as usize] = entry;
        let reach_backward = |to: u32, next: &mut Vec<u32>| {
            let mut stack = vec![to];
            while let Some(y) = stack.pop() {
                for &x in reverse(y) {
                    if next[x as usize] == NONE {
                        next[x as usize] = y;
                        stack.push(x);
                    }
                }
            }
        };
        reach_backward(entry, &mut next);
        for u in 0..n as u32 {
            if next[u as usize] != NONE {
                continue;
            }
            let accept = |i: u32| next[i as usize] != NONE && i != u;
            self.nearest(ctx, u, entry, &accept, &mut found);
            // u is on no path to the entry yet, so none of its links is on the backward tree;
            // links that are forward tree edges (u → its children) stay.
            let to = found
                .iter()
                .map(|&(_, w)| w)
                .find(|&w| self.link_level0(u, w, |v| parent[v as usize] != u));
            // The reversed lists stay exact for the nodes still to be connected: links added
            // here point at connected nodes, and a link u → v replaced here leaves a stale
            // entry in v's list that names u, connected from this moment on.
            if let Some(w) = to {
                next[u as usize] = w;
                reach_backward(u, &mut next);
            }
        }
        // A node that found no slot may still have been reached through a later repair.
        (0..n)
            .filter(|&i| parent[i] == NONE || next[i] == NONE)
            .count()
    }

    /// The `2m` accepted nodes nearest to `u` at level 0, searched from both the end of the
    /// descent toward `u` (close to it, but it may not reach the accepted nodes) and the entry
    /// point (which reaches every node once the forward pass is done).
    fn nearest(
        &self,
        ctx: &mut SearchContext,
        u: u32,
        entry: u32,
        accept: &impl Fn(u32) -> bool,
        found: &mut Vec<(f32, u32)>,
    ) {
        let scorer = self.store.query(self.store.vector(u));
        let top = self.levels[entry as usize];
        let d_entry = crate::scorer::Scorer::distance(&scorer, entry);
        let (mut ep, mut d) = (entry, d_entry);
        for level in (1..=top).rev() {
            (ep, d) = greedy(self, &scorer, &mut ctx.buf, ep, d, level);
        }
        ctx.reset(self.n);
        ctx.seed(d_entry, entry, accept(entry));
        if ep != entry {
            ctx.seed(d, ep, accept(ep));
        }
        search_layer(ctx, self, &scorer, 0, 2 * self.m, accept);
        ctx.sorted_results(found);
    }

    /// Marks everything reachable from `from` at level 0, recording each node's parent.
    fn reach_forward(&self, from: u32, parent: &mut [u32]) {
        let mut stack = vec![from];
        while let Some(x) = stack.pop() {
            self.for_each_neighbor(x, 0, |y| {
                if parent[y as usize] == NONE {
                    parent[y as usize] = x;
                    stack.push(y);
                }
            });
        }
    }

    /// Adds the level-0 link `w → u` into a free slot, or in place of `w`'s farthest
    /// neighbour that `removable` allows; false when the list is full of links to keep.
    fn link_level0(&self, w: u32, u: u32, removable: impl Fn(u32) -> bool) -> bool {
        if w == u {
            return false;
        }
        let slots = self.slots(w, 0);
        let len = (slots[0].load(Ordering::Relaxed) as usize).min(slots.len() - 1);
        let link = |k: usize| slots[k].load(Ordering::Relaxed);
        if (1..=len).any(|k| link(k) == u) {
            return true;
        }
        if len < 2 * self.m {
            slots[1 + len].store(u, Ordering::Relaxed);
            slots[0].store(len as u32 + 1, Ordering::Relaxed);
            return true;
        }
        let victim = (1..=len).filter(|&k| removable(link(k))).max_by(|&a, &b| {
            let da = self.store.between(w, link(a));
            let db = self.store.between(w, link(b));
            da.total_cmp(&db)
        });
        let Some(k) = victim else { return false };
        slots[k].store(u, Ordering::Relaxed);
        true
    }
}

impl Links for Building<'_> {
    fn entry(&self) -> Option<(u32, u8)> {
        let e = *self.entry.read();
        (e.0 != NO_ENTRY).then_some(e)
    }

    fn for_each_neighbor(&self, node: u32, level: u8, mut f: impl FnMut(u32)) {
        let mut buf = [0u32; 257];
        let n = self.read_links(node, level, &mut buf);
        for &id in &buf[..n] {
            if (id as usize) < self.n {
                f(id);
            }
        }
    }
}

/// Builds the graph of `store` with all threads and writes it to `path` (synced).
pub(crate) fn build(
    dir: &dyn Directory,
    path: &Path,
    store: F32Vectors<'_>,
    params: Params,
) -> Result<()> {
    let n = store.len();
    let m = params.m;
    let ml = 1.0 / (m as f64).ln();
    let levels: Vec<u8> = (0..n as u32)
        .map(|i| level_for(i, params.seed, ml))
        .collect();
    let mut upper_index = Vec::with_capacity(n + 1);
    let mut total = 0u32;
    for &l in &levels {
        upper_index.push(total);
        total += u32::from(l) * (1 + m as u32);
    }
    upper_index.push(total);
    let b = Building {
        store,
        n,
        m,
        l0: (0..n * (1 + 2 * m)).map(|_| AtomicU32::new(0)).collect(),
        upper: (0..total).map(|_| AtomicU32::new(0)).collect(),
        upper_index,
        locks: (0..n).map(|_| Mutex::new(())).collect(),
        entry: RwLock::new((NO_ENTRY, 0)),
        levels,
    };
    if n > 0 {
        *b.entry.write() = (0, b.levels[0]);
        let next = AtomicUsize::new(1);
        let threads = params.threads.clamp(1, n.div_ceil(256));
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut ctx = SearchContext::new();
                    loop {
                        let start = next.fetch_add(64, Ordering::Relaxed);
                        if start >= n {
                            break;
                        }
                        for q in start..(start + 64).min(n) {
                            b.insert(q as u32, &mut ctx, params.ef_construct.max(m));
                        }
                    }
                });
            }
        });
    }
    let unconnected = b.connect(&mut SearchContext::new());
    if unconnected > 0 {
        tracing::warn!(
            nodes = n,
            unconnected,
            "graph nodes left without a path to or from the entry point at level 0"
        );
    }
    let (entry, top) = *b.entry.read();
    let mut w = FileWriter::create(dir, path, MAGIC)?;
    let words = |v: &[AtomicU32]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| x.load(Ordering::Relaxed).to_le_bytes())
            .collect()
    };
    for chunk in b.l0.chunks(1 << 16) {
        w.write(&words(chunk))?;
    }
    let idx: Vec<u8> = b.upper_index.iter().flat_map(|x| x.to_le_bytes()).collect();
    w.write(&idx)?;
    for chunk in b.upper.chunks(1 << 16) {
        w.write(&words(chunk))?;
    }
    w.finish([
        n as u64,
        m as u64,
        u64::from(entry) | (u64::from(top) << 32),
    ])?;
    Ok(())
}
