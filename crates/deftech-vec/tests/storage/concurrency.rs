//! Readers search, scroll, count and get while writers upsert and delete and the background
//! optimizer seals, merges and builds indexes. Every read must see one consistent state: a
//! whole write batch or none of it, each point's vector and payload from the same version, and
//! never an older state than the reader saw before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use deftech_vec::{
    Collection, CollectionConfig, Condition, Filter, Metric, OptimizerConfig, PayloadIndexKind,
    Point, PointId, ScrollRequest, SearchRequest,
};
use serde_json::json;

use crate::common::{Rng, mem_db};

const N: u64 = 400;
const DIM: usize = 8;
const GENERATIONS: u64 = 150;

fn main_filter() -> Filter {
    Filter::must([Condition::matches("kind", "main")])
}

fn point(id: u64, gen_: u64, rng: &mut Rng) -> Point {
    let mut v = rng.vector(DIM);
    v[0] = gen_ as f32;
    Point::new(id, v).with_payload(json!({"kind": "main", "gen": gen_}))
}

fn gen_of(p: &deftech_vec::Payload) -> u64 {
    p["gen"].as_u64().unwrap()
}

/// One reader pass; returns the generation seen.
fn read_once(c: &Collection, rng: &mut Rng, last_gen: u64) -> u64 {
    let q = rng.vector(DIM);
    let hits = c
        .search(
            &SearchRequest::new(q, N as usize)
                .filter(main_filter())
                .with_payload(true)
                .with_vector(true),
        )
        .unwrap();
    assert_eq!(
        hits.len() as u64,
        N,
        "a search saw {} of {N} points",
        hits.len()
    );
    let g = gen_of(hits[0].payload.as_ref().unwrap());
    assert!(
        g >= last_gen,
        "went back in time: generation {g} after {last_gen}"
    );
    let mut ids: Vec<PointId> = hits.iter().map(|h| h.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, N, "duplicate points in one search");
    for h in &hits {
        let p = h.payload.as_ref().unwrap();
        assert_eq!(gen_of(p), g, "a search saw two generations: a torn batch");
        assert_eq!(
            h.vector.as_ref().unwrap()[0],
            g as f32,
            "vector and payload of different versions"
        );
    }
    assert_eq!(c.count(Some(&main_filter())).unwrap(), N);
    let page = c
        .scroll(
            &ScrollRequest::new(50)
                .filter(main_filter())
                .offset(rng.below(N)),
        )
        .unwrap();
    let pg = page
        .points
        .first()
        .map(|p| gen_of(p.payload.as_ref().unwrap()));
    for p in &page.points {
        assert_eq!(
            Some(gen_of(p.payload.as_ref().unwrap())),
            pg,
            "a scroll page saw two generations"
        );
    }
    let id = PointId::Num(rng.below(N));
    let got = c.get(&[id], true, true).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].vector.as_ref().unwrap()[0],
        gen_of(got[0].payload.as_ref().unwrap()) as f32
    );
    g
}

#[test]
fn readers_never_see_a_torn_state() {
    let (_dir, db) = mem_db();
    let cfg = CollectionConfig::new(DIM, Metric::Euclid).optimizer(
        OptimizerConfig::default()
            .seal_threshold(300)
            .max_segments(3)
            .vacuum(0.2, 50),
    );
    let c = db.create_collection("c", cfg).unwrap();
    c.create_payload_index("kind", PayloadIndexKind::Keyword)
        .unwrap();
    let mut rng = Rng::new(5);
    c.upsert((0..N).map(|id| point(id, 0, &mut rng)).collect::<Vec<_>>())
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (c, done, reads) = (c.clone(), done.clone(), reads.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(100 + r);
                let mut last = 0;
                while !done.load(Ordering::SeqCst) {
                    last = read_once(&c, &mut rng, last);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let updater = {
        let c = c.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(6);
            for g in 1..=GENERATIONS {
                c.upsert((0..N).map(|id| point(id, g, &mut rng)).collect::<Vec<_>>())
                    .unwrap();
            }
        })
    };
    let churner = {
        let c = c.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(7);
            for round in 0..GENERATIONS {
                let base = 1_000_000 + round * 100;
                c.upsert(
                    (base..base + 100)
                        .map(|id| {
                            Point::new(id, rng.vector(DIM)).with_payload(json!({"kind": "churn"}))
                        })
                        .collect::<Vec<_>>(),
                )
                .unwrap();
                c.delete((base..base + 90).map(PointId::Num)).unwrap();
            }
        })
    };
    updater.join().unwrap();
    churner.join().unwrap();
    let background = c.info().optimizer;
    // Let the readers overlap a few more optimizer runs.
    c.optimize().unwrap();
    done.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 10, "readers ran too little");
    assert!(
        background.seals > 0,
        "the optimizer never sealed during the writes: {background:?}"
    );
    assert_eq!(c.count(None).unwrap(), N + GENERATIONS * 10);
    let mut rng = Rng::new(8);
    assert_eq!(read_once(&c, &mut rng, GENERATIONS), GENERATIONS);
}
