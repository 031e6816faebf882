//! The library API: behaviour that users of Qdrant expect, and bad input rejected whole.

use deftech_vec::{
    AnyValues, Collection, CollectionConfig, Condition, Database, Error, Filter, Metric, Payload,
    PayloadIndexKind, Point, PointId, PointSelector, Range, ScrollRequest, SearchRequest,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{Rng, mem_db, quiet_config, reopen};

fn obj(v: Value) -> Payload {
    v.as_object().expect("object").clone()
}

fn ids(points: &[deftech_vec::ScoredPoint]) -> Vec<PointId> {
    points.iter().map(|p| p.id).collect()
}

#[test]
fn handles_are_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Database>();
    assert_send_sync::<Collection>();
}

#[test]
fn collections_are_created_listed_and_dropped() {
    let (dir, db) = mem_db();
    let a = db
        .create_collection("alpha", quiet_config(2, Metric::Dot))
        .unwrap();
    db.create_collection("beta_2.x-y", quiet_config(2, Metric::Dot))
        .unwrap();
    assert_eq!(db.list_collections(), vec!["alpha", "beta_2.x-y"]);
    assert!(matches!(
        db.create_collection("alpha", quiet_config(2, Metric::Dot)),
        Err(Error::CollectionExists(_))
    ));
    assert!(matches!(
        db.collection("nope"),
        Err(Error::CollectionNotFound(_))
    ));
    a.upsert([Point::new(1, vec![1.0, 2.0])]).unwrap();
    db.drop_collection("alpha").unwrap();
    assert!(matches!(a.count(None), Err(Error::CollectionDropped(_))));
    assert!(matches!(
        a.upsert([Point::new(1, vec![1.0, 2.0])]),
        Err(Error::CollectionDropped(_))
    ));
    assert!(matches!(
        db.drop_collection("alpha"),
        Err(Error::CollectionNotFound(_))
    ));
    drop((a, db));
    let db = reopen(&dir);
    assert_eq!(db.list_collections(), vec!["beta_2.x-y"]);
    // A dropped name can be reused.
    let a = db
        .create_collection("alpha", quiet_config(3, Metric::Dot))
        .unwrap();
    assert_eq!(a.count(None).unwrap(), 0);
}

#[test]
fn bad_collection_names_and_configs_are_rejected() {
    let (_dir, db) = mem_db();
    let long = "x".repeat(129);
    for name in [
        "",
        "../x",
        "a/b",
        ".hidden",
        "-dash",
        "sp ace",
        long.as_str(),
        "ünï",
    ] {
        let err = db
            .create_collection(name, quiet_config(2, Metric::Dot))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{name:?}: {err}");
    }
    let err = db
        .create_collection("ok", quiet_config(0, Metric::Dot))
        .unwrap_err();
    assert!(err.to_string().contains("dimension"), "{err}");
    assert!(db.list_collections().is_empty());
}

#[test]
fn a_folder_has_one_owner() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let c = db
        .create_collection("c", quiet_config(2, Metric::Dot))
        .unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::InUse { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(db);
    // A collection handle still owns the folder.
    assert!(matches!(
        Database::open(dir.path()),
        Err(Error::InUse { .. })
    ));
    drop(c);
    Database::open(dir.path()).unwrap();
}

#[test]
fn every_write_returns_the_next_lsn() {
    let (_dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(2, Metric::Dot))
        .unwrap();
    let l1 = c.upsert([Point::new(1, vec![1.0, 0.0])]).unwrap();
    let l2 = c
        .set_payload(vec![PointId::Num(1)], obj(json!({"a": 1})), None)
        .unwrap();
    let l3 = c.delete([PointId::Num(1)]).unwrap();
    let l4 = c
        .create_payload_index("a", PayloadIndexKind::Integer)
        .unwrap();
    assert_eq!((l1, l2, l3, l4), (1, 2, 3, 4));
    assert_eq!(c.lsn(), 4);
    let got = c.get(&[PointId::Num(1)], true, false).unwrap();
    assert!(got.is_empty());
}

#[test]
fn scores_follow_qdrant_conventions() {
    let (_dir, db) = mem_db();
    let pts = || {
        [
            Point::new(1, vec![1.0, 0.0]),
            Point::new(2, vec![3.0, 4.0]),
            Point::new(3, vec![-1.0, 0.0]),
        ]
    };
    let q = SearchRequest::new(vec![1.0, 0.0], 3).with_vector(true);

    let cos = db
        .create_collection("cos", quiet_config(2, Metric::Cosine))
        .unwrap();
    cos.upsert(pts()).unwrap();
    let hits = cos.search(&q).unwrap();
    assert_eq!(ids(&hits), vec![1u64.into(), 2u64.into(), 3u64.into()]);
    assert!((hits[0].score - 1.0).abs() < 1e-6);
    assert!((hits[1].score - 0.6).abs() < 1e-6);
    // Stored vectors are normalized, as in Qdrant.
    let v = hits[1].vector.as_ref().unwrap();
    assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);

    let dot = db
        .create_collection("dot", quiet_config(2, Metric::Dot))
        .unwrap();
    dot.upsert(pts()).unwrap();
    let hits = dot.search(&q).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.score).collect::<Vec<_>>(),
        vec![3.0, 1.0, -1.0]
    );

    let euc = db
        .create_collection("euc", quiet_config(2, Metric::Euclid))
        .unwrap();
    euc.upsert(pts()).unwrap();
    let hits = euc.search(&q).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.score).collect::<Vec<_>>(),
        vec![0.0, 2.0, 20f32.sqrt()]
    );
    // Thresholds are strict: Euclid keeps distances below, similarities keep scores above.
    let hits = euc.search(&q.clone().score_threshold(2.0)).unwrap();
    assert_eq!(ids(&hits), vec![1u64.into()]);
    let hits = dot.search(&q.clone().score_threshold(1.0)).unwrap();
    assert_eq!(ids(&hits), vec![2u64.into()]);

    let man = db
        .create_collection("man", quiet_config(2, Metric::Manhattan))
        .unwrap();
    man.upsert(pts()).unwrap();
    let hits = man.search(&q).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.score).collect::<Vec<_>>(),
        vec![0.0, 2.0, 6.0]
    );
}

#[test]
fn search_offset_limit_and_payload_selection() {
    let (_dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(1, Metric::Dot))
        .unwrap();
    c.upsert(
        (1..=10u64)
            .map(|i| Point::new(i, vec![i as f32]).with_payload(json!({"i": i, "sq": i * i}))),
    )
    .unwrap();
    let page = c
        .search(
            &SearchRequest::new(vec![1.0], 3)
                .offset(2)
                .with_payload(true),
        )
        .unwrap();
    assert_eq!(ids(&page), vec![8u64.into(), 7u64.into(), 6u64.into()]);
    assert_eq!(page[0].payload.as_ref().unwrap()["sq"], json!(64));
    let sel = deftech_vec::PayloadSelector::Include(vec!["i".into()]);
    let page = c
        .search(&SearchRequest::new(vec![1.0], 1).with_payload(sel))
        .unwrap();
    assert_eq!(page[0].payload, Some(obj(json!({"i": 10}))));
    let sel = deftech_vec::PayloadSelector::Exclude(vec!["i".into()]);
    let page = c
        .search(&SearchRequest::new(vec![1.0], 1).with_payload(sel))
        .unwrap();
    assert_eq!(page[0].payload, Some(obj(json!({"sq": 100}))));
    assert!(
        c.search(&SearchRequest::new(vec![1.0], 1)).unwrap()[0]
            .payload
            .is_none()
    );
}

#[test]
fn bad_input_is_rejected_whole_with_named_errors() {
    let (_dir, db) = mem_db();
    let c = db
        .create_collection(
            "c",
            quiet_config(3, Metric::Dot)
                .limits(deftech_vec::Limits::default().max_payload_bytes(64)),
        )
        .unwrap();
    c.upsert([Point::new(1, vec![1.0, 2.0, 3.0]).with_payload(json!({"keep": true}))])
        .unwrap();
    let good = || Point::new(2, vec![0.0, 0.0, 1.0]);
    let cases: Vec<(Vec<Point>, &str)> = vec![
        (
            vec![good(), Point::new(3, vec![1.0, 2.0])],
            "expected 3, got 2",
        ),
        (
            vec![good(), Point::new(4, vec![1.0, f32::NAN, 0.0])],
            "non-finite",
        ),
        (
            vec![Point::new(5, vec![f32::INFINITY, 0.0, 0.0]), good()],
            "point 5",
        ),
        (vec![], "must not be empty"),
        (
            vec![good(), good().with_payload(json!([1, 2]))],
            "must be a JSON object",
        ),
        (
            vec![good().with_payload(json!({"big": "x".repeat(100)}))],
            "over the limit of 64 bytes",
        ),
    ];
    for (batch, expected) in cases {
        let err = c.upsert(batch).unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{err} should contain {expected:?}"
        );
    }
    // Nothing of the rejected batches was stored.
    assert_eq!(c.count(None).unwrap(), 1);
    assert_eq!(c.lsn(), 1);

    let err = c.search(&SearchRequest::new(vec![1.0], 1)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DimensionMismatch {
                point: None,
                expected: 3,
                got: 1
            }
        ),
        "{err}"
    );
    let err = c
        .search(&SearchRequest::new(vec![1.0, 2.0, f32::NAN], 1))
        .unwrap_err();
    assert!(err.to_string().contains("non-finite"), "{err}");
    let err = c
        .search(&SearchRequest::new(vec![1.0, 2.0, 3.0], 0))
        .unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");

    // set_payload on a missing id: 404-like error, nothing changed (all or nothing).
    let err = c
        .set_payload(
            vec![PointId::Num(1), PointId::Num(77)],
            obj(json!({"x": 1})),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::PointNotFound(PointId::Num(77))),
        "{err}"
    );
    let p = c.get(&[PointId::Num(1)], true, false).unwrap();
    assert_eq!(p[0].payload, Some(obj(json!({"keep": true}))));

    // A filter on a field of the wrong type.
    c.create_payload_index("keep", PayloadIndexKind::Bool)
        .unwrap();
    let err = c
        .count(Some(&Filter::must([Condition::range(
            "keep",
            Range::default().gt(0.0),
        )])))
        .unwrap_err();
    assert!(
        err.to_string().contains("field `keep` is indexed as bool"),
        "{err}"
    );
    let err = c
        .delete_payload_keys(vec![PointId::Num(1)], &["a..b"])
        .unwrap_err();
    assert!(err.to_string().contains("keys"), "{err}");
    assert_eq!(c.lsn(), 2);
}

#[test]
fn duplicate_ids_in_a_batch_last_one_wins() {
    let (_dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(1, Metric::Dot))
        .unwrap();
    c.upsert([
        Point::new(1, vec![1.0]).with_payload(json!({"v": "first"})),
        Point::new(2, vec![2.0]),
        Point::new(1, vec![3.0]).with_payload(json!({"v": "last"})),
    ])
    .unwrap();
    assert_eq!(c.count(None).unwrap(), 2);
    let r = c.get(&[PointId::Num(1)], true, true).unwrap();
    assert_eq!(r[0].vector, Some(vec![3.0]));
    assert_eq!(r[0].payload, Some(obj(json!({"v": "last"}))));
}

fn payload_of(c: &Collection, id: u64) -> Payload {
    c.get(&[PointId::Num(id)], true, false).unwrap()[0]
        .payload
        .clone()
        .unwrap()
}

#[test]
fn payload_edits_follow_qdrant() {
    let (_dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(1, Metric::Dot))
        .unwrap();
    c.upsert([
        Point::new(1, vec![1.0])
            .with_payload(json!({"a": 1, "b": {"c": 2}, "arr": [{"x": 1, "y": 2}]})),
        Point::new(2, vec![2.0]).with_payload(json!({"a": 5})),
    ])
    .unwrap();
    for round in 0..2 {
        if round == 1 {
            // Same edits on sealed segments: points are copied to the mutable segment.
            c.optimize().unwrap();
        }
        c.overwrite_payload(
            vec![PointId::Num(1)],
            obj(json!({"a": 1, "b": {"c": 2}, "arr": [{"x": 1, "y": 2}]})),
        )
        .unwrap();
        c.set_payload(vec![PointId::Num(1)], obj(json!({"a": null, "d": 4})), None)
            .unwrap();
        assert_eq!(
            payload_of(&c, 1),
            obj(json!({"b": {"c": 2}, "arr": [{"x": 1, "y": 2}], "d": 4}))
        );
        c.set_payload(vec![PointId::Num(1)], obj(json!({"e": 5})), Some("b"))
            .unwrap();
        assert_eq!(payload_of(&c, 1)["b"], json!({"c": 2, "e": 5}));
        c.delete_payload_keys(vec![PointId::Num(1)], &["b.c", "arr[].x"])
            .unwrap();
        assert_eq!(
            payload_of(&c, 1),
            obj(json!({"b": {"e": 5}, "arr": [{"y": 2}], "d": 4}))
        );
        c.clear_payload(vec![PointId::Num(1)]).unwrap();
        assert_eq!(payload_of(&c, 1), Payload::new());
        // Filter selectors.
        let f = Filter::must([Condition::matches("a", 5i64)]);
        c.set_payload(
            PointSelector::Filter(f.clone()),
            obj(json!({"tag": "x"})),
            None,
        )
        .unwrap();
        assert_eq!(payload_of(&c, 2), obj(json!({"a": 5, "tag": "x"})));
        // Vectors survive payload edits.
        assert_eq!(
            c.get(&[PointId::Num(2)], false, true).unwrap()[0].vector,
            Some(vec![2.0])
        );
    }
    c.delete_by_filter(&Filter::must([Condition::matches("tag", "x")]))
        .unwrap();
    assert_eq!(c.count(None).unwrap(), 1);
}

#[test]
fn scroll_pages_through_numeric_then_uuid_ids_across_segments() {
    let (_dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(1, Metric::Dot))
        .unwrap();
    let mut rng = Rng::new(7);
    let mut all: Vec<PointId> = (0..40u64).map(|i| PointId::Num(i * 3)).collect();
    all.extend((0..10).map(|_| PointId::Uuid(Uuid::from_u128(u128::from(rng.next_u64()) << 40))));
    for (i, chunk) in all.chunks(7).enumerate() {
        c.upsert(
            chunk
                .iter()
                .map(|&id| Point::new(id, vec![1.0]).with_payload(json!({"even": i % 2 == 0}))),
        )
        .unwrap();
        if i % 3 == 0 {
            c.optimize().unwrap();
        }
    }
    c.delete([PointId::Num(9), all[45]]).unwrap();
    let mut expected = all.clone();
    expected.retain(|&id| id != PointId::Num(9) && id != all[45]);
    expected.sort();

    let mut seen = Vec::new();
    let mut offset = None;
    loop {
        let mut req = ScrollRequest::new(6);
        req.offset = offset;
        let page = c.scroll(&req).unwrap();
        seen.extend(page.points.iter().map(|p| p.id));
        match page.next_page_offset {
            Some(next) => offset = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    // Exactly `limit` points left: no next page.
    let page = c.scroll(&ScrollRequest::new(expected.len())).unwrap();
    assert_eq!(page.next_page_offset, None);
    let page = c
        .scroll(&ScrollRequest::new(100).filter(Filter::must([Condition::matches("even", true)])))
        .unwrap();
    assert!(
        page.points
            .iter()
            .all(|p| p.payload.as_ref().unwrap()["even"] == json!(true))
    );
}

#[test]
fn data_survives_reopen_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(1);
    let vectors: Vec<Vec<f32>> = (0..300).map(|_| rng.vector(8)).collect();
    let query = rng.vector(8);
    let before;
    {
        let db = Database::open(dir.path()).unwrap();
        let c = db
            .create_collection("c", quiet_config(8, Metric::Cosine).seal_threshold(100))
            .unwrap();
        c.create_payload_index("g", PayloadIndexKind::Integer)
            .unwrap();
        for (chunk_no, chunk) in vectors.chunks(50).enumerate() {
            c.upsert(chunk.iter().enumerate().map(|(i, v)| {
                let id = (chunk_no * 50 + i) as u64;
                Point::new(id, v.clone()).with_payload(json!({"g": id % 5}))
            }))
            .unwrap();
            if chunk_no == 2 {
                c.optimize().unwrap();
            }
        }
        c.delete((0..300u64).step_by(7).map(PointId::Num)).unwrap();
        let f = Filter::must([Condition::matches_any("g", AnyValues::Integers(vec![1, 3]))]);
        before = c
            .search(
                &SearchRequest::new(query.clone(), 20)
                    .filter(f)
                    .with_payload(true),
            )
            .unwrap();
        db.close().unwrap();
    }
    let db = Database::open(dir.path()).unwrap();
    let c = db.collection("c").unwrap();
    assert_eq!(c.count(None).unwrap(), 300 - 43);
    let f = Filter::must([Condition::matches_any("g", AnyValues::Integers(vec![1, 3]))]);
    let after = c
        .search(&SearchRequest::new(query, 20).filter(f).with_payload(true))
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(
        c.payload_schema().get("g"),
        Some(&PayloadIndexKind::Integer)
    );
    c.verify().unwrap();
}

#[test]
fn optimizer_seals_merges_and_vacuums_without_changing_results() {
    let (dir, db) = mem_db();
    let cfg = quiet_config(4, Metric::Euclid).optimizer(
        deftech_vec::OptimizerConfig::default()
            .background(false)
            .seal_threshold(50)
            .max_segments(2)
            .vacuum(0.3, 5),
    );
    let c = db.create_collection("c", cfg).unwrap();
    let mut rng = Rng::new(3);
    let query = rng.vector(4);
    for round in 0..6u64 {
        c.upsert(
            (0..60u64).map(|i| {
                Point::new(round * 60 + i, rng.vector(4)).with_payload(json!({"r": round}))
            }),
        )
        .unwrap();
        c.optimize().unwrap();
    }
    let info = c.info();
    let sealed = info.segments.iter().filter(|s| s.kind == "sealed").count();
    assert!(
        sealed <= 2,
        "merges keep at most max_segments sealed segments: {sealed}"
    );
    assert!(info.optimizer.merges > 0);
    let before = c.search(&SearchRequest::new(query.clone(), 25)).unwrap();
    // Delete most of one round: the vacuum rewrites that segment.
    c.delete((0..50u64).map(PointId::Num)).unwrap();
    let expected: Vec<_> = before
        .iter()
        .filter(|h| !matches!(h.id, PointId::Num(n) if n < 50))
        .cloned()
        .collect();
    c.optimize().unwrap();
    let after = c.search(&SearchRequest::new(query.clone(), 25)).unwrap();
    assert_eq!(&after[..expected.len()], &expected[..]);
    assert_eq!(c.count(None).unwrap(), 360 - 50);
    drop((c, db));
    let db = reopen(&dir);
    let c = db.collection("c").unwrap();
    assert_eq!(c.count(None).unwrap(), 310);
    assert_eq!(c.search(&SearchRequest::new(query, 25)).unwrap(), after);
}

#[test]
fn background_optimizer_seals_on_its_own() {
    let (_dir, db) = mem_db();
    let c = db
        .create_collection(
            "c",
            CollectionConfig::new(2, Metric::Dot).seal_threshold(100),
        )
        .unwrap();
    c.upsert((0..250u64).map(|i| Point::new(i, vec![i as f32, 1.0])))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c.info().sealed_points == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the optimizer never sealed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(c.count(None).unwrap(), 250);
}

#[test]
fn wal_is_trimmed_once_segments_cover_it() {
    let (_dir, db) = mem_db();
    let cfg =
        quiet_config(16, Metric::Dot).wal(deftech_vec::WalConfig::default().segment_bytes(4096));
    let c = db.create_collection("c", cfg).unwrap();
    let mut rng = Rng::new(9);
    for b in 0..20u64 {
        c.upsert((0..20u64).map(|i| Point::new(b * 20 + i, rng.vector(16))))
            .unwrap();
    }
    let before = c.info();
    assert!(before.wal_files > 3, "{} files", before.wal_files);
    c.optimize().unwrap();
    let after = c.info();
    assert_eq!(after.wal_files, 1);
    assert!(
        after.wal_bytes < before.wal_bytes / 4,
        "{} -> {}",
        before.wal_bytes,
        after.wal_bytes
    );
    assert_eq!(after.applied_lsn, 20);
}
