//! The HNSW index through the collection API: recall against exact search, filtered recall at
//! 1 % and 10 % selectivity, identical results after reopening, and searches racing a
//! background graph build and segment swap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deftech_vec::{
    Collection, CollectionConfig, Condition, Filter, HnswConfig, Metric, OptimizerConfig,
    PayloadIndexKind, Point, PointId, Range, SearchRequest,
};
use serde_json::json;

use crate::common::{Rng, mem_db, quiet_config, reopen};

const DIM: usize = 32;

/// A Gaussian mixture: `clusters` centres, points spread around them.
fn mixture(n: usize, clusters: usize, rng: &mut Rng) -> Vec<Vec<f32>> {
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| rng.vector(DIM).iter().map(|x| x * 3.0).collect())
        .collect();
    (0..n)
        .map(|i| {
            let c = &centres[(rng.next_u64() as usize + i) % clusters];
            c.iter().map(|x| x + rng.f32() * 0.7).collect()
        })
        .collect()
}

fn load(c: &Collection, vectors: &[Vec<f32>]) {
    for (chunk_no, chunk) in vectors.chunks(5000).enumerate() {
        c.upsert(
            chunk
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let id = (chunk_no * 5000 + i) as u64;
                    Point::new(id, v.clone()).with_payload(json!({"bucket": id % 100}))
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    }
}

fn queries(vectors: &[Vec<f32>], n: usize, rng: &mut Rng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let v = &vectors[rng.below(vectors.len() as u64) as usize];
            v.iter().map(|x| x + rng.f32() * 0.3).collect()
        })
        .collect()
}

/// Mean recall@10 of the graph against exact search, for `filter`.
fn recall(c: &Collection, qs: &[Vec<f32>], filter: Option<&Filter>) -> f64 {
    let mut found = 0;
    let mut total = 0;
    for q in qs {
        let mut req = SearchRequest::new(q.clone(), 10);
        req.filter = filter.cloned();
        let approx = c.search(&req).unwrap();
        let exact = c.search(&req.clone().exact(true)).unwrap();
        let truth: Vec<PointId> = exact.iter().map(|h| h.id).collect();
        found += approx.iter().filter(|h| truth.contains(&h.id)).count();
        total += truth.len();
    }
    found as f64 / total as f64
}

fn indexed_collection(
    n: usize,
    seed: u64,
) -> (
    deftech_vec::MemoryDirectory,
    deftech_vec::Database,
    Collection,
    Vec<Vec<f32>>,
) {
    let (dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(DIM, Metric::Euclid))
        .unwrap();
    let mut rng = Rng::new(seed);
    let vectors = mixture(n, 40, &mut rng);
    load(&c, &vectors);
    c.optimize().unwrap();
    let info = c.info();
    assert!(
        info.segments.iter().any(|s| s.graph_bytes > 0),
        "the sealed segment got a graph: {info:?}"
    );
    (dir, db, c, vectors)
}

#[test]
fn graph_recall_on_20k_points() {
    let (_dir, _db, c, vectors) = indexed_collection(20_000, 1);
    let mut rng = Rng::new(2);
    let qs = queries(&vectors, 100, &mut rng);
    let r = recall(&c, &qs, None);
    assert!(r >= 0.97, "recall@10 = {r}");
    // Graph bytes per point within budget (level 0 stride 1 + 2m words, plus upper levels).
    let info = c.info();
    let graph: u64 = info.segments.iter().map(|s| s.graph_bytes).sum();
    let per_point = graph as f64 / 20_000.0;
    assert!(per_point <= 160.0, "{per_point} graph bytes per point");
}

#[test]
fn filtered_recall_at_1_and_10_percent() {
    let (_dir, _db, c, vectors) = indexed_collection(20_000, 3);
    let mut rng = Rng::new(4);
    let qs = queries(&vectors, 40, &mut rng);
    let one = Filter::must([Condition::matches("bucket", 7i64)]);
    let ten = Filter::must([Condition::range("bucket", Range::default().lt(10.0))]);
    // Without a payload index: the graph is traversed and points are checked one by one.
    for (name, f) in [("1%", &one), ("10%", &ten)] {
        let r = recall(&c, &qs, Some(f));
        assert!(r >= 0.95, "unindexed {name}: recall@10 = {r}");
    }
    // With an index: the planner scans small allow sets, and traverses the graph for big ones.
    c.create_payload_index("bucket", PayloadIndexKind::Integer)
        .unwrap();
    c.optimize().unwrap();
    for (name, f) in [("1%", &one), ("10%", &ten)] {
        let r = recall(&c, &qs, Some(f));
        assert!(r >= 0.95, "indexed {name}: recall@10 = {r}");
    }
}

#[test]
fn filtered_graph_traversal_with_an_index() {
    // A threshold below the allow-set sizes forces graph traversal with index-backed filters.
    let (_dir, db) = mem_db();
    let cfg =
        quiet_config(DIM, Metric::Cosine).hnsw(HnswConfig::default().full_scan_threshold(100));
    let c = db.create_collection("c", cfg).unwrap();
    c.create_payload_index("bucket", PayloadIndexKind::Integer)
        .unwrap();
    let mut rng = Rng::new(5);
    let vectors = mixture(20_000, 40, &mut rng);
    load(&c, &vectors);
    c.optimize().unwrap();
    let qs = queries(&vectors, 40, &mut rng);
    for (name, f) in [
        ("1%", Filter::must([Condition::matches("bucket", 7i64)])),
        (
            "10%",
            Filter::must([Condition::range("bucket", Range::default().lt(10.0))]),
        ),
    ] {
        let r = recall(&c, &qs, Some(&f));
        assert!(r >= 0.95, "{name}: recall@10 = {r}");
    }
}

#[test]
fn results_identical_after_reopen_and_deletes_skipped() {
    let (dir, db, c, vectors) = indexed_collection(12_000, 6);
    let mut rng = Rng::new(7);
    let qs = queries(&vectors, 20, &mut rng);
    // Deleted points keep the graph navigable but never come back in results.
    c.delete((0..12_000u64).step_by(3).map(PointId::Num))
        .unwrap();
    let before: Vec<_> = qs
        .iter()
        .map(|q| {
            c.search(&SearchRequest::new(q.clone(), 20).hnsw_ef(80))
                .unwrap()
        })
        .collect();
    for hits in &before {
        assert_eq!(hits.len(), 20);
        assert!(
            hits.iter()
                .all(|h| !matches!(h.id, PointId::Num(n) if n % 3 == 0))
        );
    }
    drop((c, db));
    let db = reopen(&dir);
    let c = db.collection("c").unwrap();
    for (q, b) in qs.iter().zip(&before) {
        assert_eq!(
            &c.search(&SearchRequest::new(q.clone(), 20).hnsw_ef(80))
                .unwrap(),
            b
        );
    }
    // limit up to 1,000 (ef is raised to the limit).
    let big = c.search(&SearchRequest::new(qs[0].clone(), 1000)).unwrap();
    assert_eq!(big.len(), 1000);
    assert!(big.windows(2).all(|w| w[0].score <= w[1].score));
}

#[test]
fn searches_racing_a_background_build_answer_correctly() {
    let (_dir, db) = mem_db();
    let cfg = CollectionConfig::new(DIM, Metric::Dot)
        .optimizer(OptimizerConfig::default().seal_threshold(12_000));
    let c = db.create_collection("c", cfg).unwrap();
    let mut rng = Rng::new(8);
    let vectors = mixture(12_000, 30, &mut rng);
    let qs = queries(&vectors, 10, &mut rng);
    // Reference answers from exact search before anything is sealed.
    c.upsert(
        vectors[..11_999]
            .iter()
            .enumerate()
            .map(|(i, v)| Point::new(i as u64, v.clone()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let truth: Vec<Vec<PointId>> = qs
        .iter()
        .map(|q| {
            c.search(&SearchRequest::new(q.clone(), 10).exact(true))
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect()
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (c, qs, truth, stop) = (c.clone(), qs.clone(), truth.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rounds = 0;
                let mut found = 0;
                while !stop.load(Ordering::SeqCst) || rounds < 3 {
                    for (q, t) in qs.iter().zip(&truth) {
                        let exact = c
                            .search(&SearchRequest::new(q.clone(), 10).exact(true))
                            .unwrap();
                        assert_eq!(&exact.iter().map(|h| h.id).collect::<Vec<_>>(), t);
                        let approx = c.search(&SearchRequest::new(q.clone(), 10)).unwrap();
                        assert_eq!(approx.len(), 10);
                        found += approx.iter().filter(|h| t.contains(&h.id)).count();
                    }
                    rounds += 1;
                }
                found as f64 / (rounds * 100) as f64
            })
        })
        .collect();
    // The 12,000th point crosses the seal threshold: the background optimizer seals and builds
    // the graph while the readers run.
    // (A zero vector: it scores 0 and cannot enter any top 10, so the exact answers stay.)
    c.upsert([Point::new(11_999u64, vec![0.0; DIM])]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !c.info().segments.iter().any(|s| s.graph_bytes > 0) {
        assert!(std::time::Instant::now() < deadline, "no graph was built");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        let recall = r.join().unwrap();
        assert!(recall >= 0.9, "recall while racing the build: {recall}");
    }
}
