use std::path::Path;

use super::*;
use crate::directory::MemoryDirectory;
use crate::scorer::{F32Vectors, Scorer};
use crate::types::Metric;

fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..dim).map(|_| next() * 4.0).collect())
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = &centres[i % centres.len()];
        out.extend(c.iter().map(|x| x + next()));
    }
    out
}

fn built(vectors: &[f32], dim: usize, m: usize) -> (MemoryDirectory, Graph) {
    let dir = MemoryDirectory::new();
    let store = F32Vectors::new(Metric::Euclid, vectors, dim);
    let params = Params {
        m,
        ef_construct: 100,
        threads: 2,
        seed: 7,
    };
    build(&dir, Path::new("g"), store, params).unwrap();
    let g = Graph::open(&dir, Path::new("g"), store.len() as u32, true).unwrap();
    (dir, g)
}

/// Every node is reachable from the entry point at level 0, and reaches it.
fn assert_strongly_connected(g: &Graph, n: usize, what: &str) {
    let (entry, _) = g.entry().unwrap();
    let mut forward: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut reverse: Vec<Vec<u32>> = vec![Vec::new(); n];
    for x in 0..n as u32 {
        g.for_each_neighbor(x, 0, |y| {
            forward[x as usize].push(y);
            reverse[y as usize].push(x);
        });
    }
    let unreached = |links: &[Vec<u32>]| {
        let mut seen = vec![false; n];
        let mut stack = vec![entry];
        seen[entry as usize] = true;
        while let Some(x) = stack.pop() {
            for &y in &links[x as usize] {
                if !seen[y as usize] {
                    seen[y as usize] = true;
                    stack.push(y);
                }
            }
        }
        seen.iter().filter(|s| !**s).count()
    };
    assert_eq!(
        (unreached(&forward), unreached(&reverse)),
        (0, 0),
        "{what}: (nodes the entry point cannot reach, nodes that cannot reach it) at level 0"
    );
}

#[test]
fn graph_invariants_hold() {
    let dim = 16;
    let n = 5000;
    let vectors = clustered(n, dim, 1);
    let m = 8;
    let (_dir, g) = built(&vectors, dim, m);
    let (_, top) = g.entry().unwrap();
    let mut level_counts = vec![0usize; usize::from(top) + 1];
    for node in 0..n as u32 {
        for level in 0..=top {
            let list: Vec<u32> = if level == 0 {
                g.level0(node).to_vec()
            } else {
                g.upper(node, level).to_vec()
            };
            if level > 0 && list.is_empty() {
                continue;
            }
            level_counts[usize::from(level)] += 1;
            let max = if level == 0 { 2 * m } else { m };
            assert!(
                list.len() <= max,
                "node {node} level {level}: {} links",
                list.len()
            );
            assert!(!list.contains(&node), "self-link at node {node}");
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "duplicate link at node {node}");
            assert!(list.iter().all(|&x| (x as usize) < n));
        }
    }
    assert!(level_counts[0] == n, "every node has level-0 links");
    assert_strongly_connected(&g, n, "clustered, m = 8");
    // Graph bytes per point stay within the budget (level 0 + CSR upper levels).
    let per_point = g.file_bytes() as f64 / n as f64;
    assert!(
        per_point < 4.0 * (1.0 + 2.0 * m as f64) + 12.0,
        "{per_point} bytes per point"
    );
}

#[test]
fn search_finds_true_neighbours() {
    let dim = 24;
    let n = 4000;
    let vectors = clustered(n, dim, 2);
    let (_dir, g) = built(&vectors, dim, 16);
    let store = F32Vectors::new(Metric::Euclid, &vectors, dim);
    // Queries near the data: data points moved a little.
    let queries: Vec<f32> = vectors[..50 * dim]
        .iter()
        .enumerate()
        .map(|(i, x)| x + ((i % 7) as f32 - 3.0) * 0.05)
        .collect();
    let mut hits = 0;
    let mut out = Vec::new();
    for q in queries.chunks(dim) {
        let scorer = store.query(q);
        let mut exact: Vec<(f32, u32)> = (0..n as u32).map(|i| (scorer.distance(i), i)).collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        with_context(|ctx| search(ctx, n, &g, &scorer, 64, &|_| true, &mut out));
        let truth: Vec<u32> = exact[..10].iter().map(|e| e.1).collect();
        hits += out[..10].iter().filter(|r| truth.contains(&r.1)).count();
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0), "sorted");
    }
    let recall = hits as f64 / 500.0;
    assert!(recall >= 0.98, "recall@10 = {recall}");
}

#[test]
fn filtered_search_returns_only_accepted_points() {
    let dim = 8;
    let n = 3000;
    let vectors = clustered(n, dim, 3);
    let (_dir, g) = built(&vectors, dim, 8);
    let store = F32Vectors::new(Metric::Euclid, &vectors, dim);
    let q = &vectors[..dim];
    let scorer = store.query(q);
    let mut out = Vec::new();
    let accept = |i: u32| i % 10 == 3;
    with_context(|ctx| search(ctx, n, &g, &scorer, 50, &accept, &mut out));
    assert_eq!(out.len(), 50);
    assert!(out.iter().all(|r| r.1 % 10 == 3));
    let mut exact: Vec<(f32, u32)> = (0..n as u32)
        .filter(|i| accept(*i))
        .map(|i| (scorer.distance(i), i))
        .collect();
    exact.sort_by(|a, b| a.0.total_cmp(&b.0));
    let truth: Vec<u32> = exact[..10].iter().map(|e| e.1).collect();
    let found = out[..10].iter().filter(|r| truth.contains(&r.1)).count();
    assert!(found >= 9, "{found}/10");
}

#[test]
fn damaged_graph_files_are_rejected_or_harmless() {
    let dim = 4;
    let vectors = clustered(300, dim, 4);
    let (dir, g) = built(&vectors, dim, 4);
    let bytes = dir.read(Path::new("g")).unwrap().to_vec();
    drop(g);
    assert!(Graph::open(&dir, Path::new("g"), 301, true).is_err());
    let store = F32Vectors::new(Metric::Euclid, &vectors, dim);
    let scorer = store.query(&vectors[..dim]);
    let mut out = Vec::new();
    // Garbage neighbour ids (past the header, so the header still checks out) never panic.
    for seed in 0..50u32 {
        let mut b = bytes.clone();
        for k in 0..40 {
            let at = 64 + ((seed as usize * 7919 + k * 104_729) % (b.len() - 64));
            b[at] = b[at].wrapping_add(seed as u8 | 1);
        }
        let mut f = dir.create(Path::new("g2")).unwrap();
        f.write_all(&b).unwrap();
        drop(f);
        if let Ok(g) = Graph::open(&dir, Path::new("g2"), 300, true) {
            with_context(|ctx| search(ctx, 300, &g, &scorer, 10, &|_| true, &mut out));
        }
    }
}

/// A search whose `ef` covers the whole graph returns every node wherever the descent through
/// the upper levels lands, so level 0 must be strongly connected, not only reachable from the
/// entry point. Dot product on 8 uniform dimensions (not a metric: points of large norm crowd
/// every neighbour list) is where the heuristic strands nodes: these two builds (one thread,
/// so deterministic) left 2 nodes unreachable, and in the second the entry point had no
/// incoming link at all, before the build connected level 0 both ways. The crash test's
/// exhaustive search missed a point this way, once in a dozen runs.
#[test]
fn level0_is_strongly_connected_under_dot_product() {
    let dim = 8;
    for (seed, n) in [(5u64, 20_895usize), (52, 18_508)] {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        let vectors: Vec<f32> = (0..n * dim).map(|_| next()).collect();
        let dir = MemoryDirectory::new();
        let store = F32Vectors::new(Metric::Dot, &vectors, dim);
        let params = Params {
            m: 16,
            ef_construct: 100,
            threads: 1,
            seed,
        };
        build(&dir, Path::new("g"), store, params).unwrap();
        let g = Graph::open(&dir, Path::new("g"), n as u32, true).unwrap();
        assert_strongly_connected(&g, n, &format!("dot product, seed {seed}"));
        let mut out = Vec::new();
        for q in vectors.chunks(dim).step_by(n / 20) {
            let scorer = store.query(q);
            with_context(|ctx| search(ctx, n, &g, &scorer, n, &|_| true, &mut out));
            assert_eq!(
                out.len(),
                n,
                "seed {seed}: a whole-graph search missed nodes"
            );
        }
    }
}
