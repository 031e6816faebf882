//! Model-based test: random operation sequences, including reopen and simulated power loss,
//! checked against a brute-force model (a map of points; exact k-NN by sorting). With small
//! integer vectors every score is exact, so results must match the model exactly (up to the
//! order of equal scores).

use std::collections::BTreeMap;

use deftech_vec::{
    AnyValues, Collection, Condition, Database, Error, Filter, FsyncPolicy, MemoryDirectory,
    Metric, OptimizerConfig, Payload, PayloadIndexKind, Point, PointId, Range, ScrollRequest,
    SearchRequest, WalConfig,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{mem_db, quiet_config, reopen};

const DIM: usize = 4;

fn pid(i: u8) -> PointId {
    if i < 24 {
        PointId::Num(u64::from(i))
    } else {
        PointId::Uuid(Uuid::from_u128(
            0xabcd_0000_0000_0000_0000_0000_0000_0000 + u128::from(i),
        ))
    }
}

#[derive(Clone, Debug)]
struct PayloadSpec {
    k: Option<Vec<u8>>,
    k_array: bool,
    n: Option<i64>,
    f: Option<u8>,
    tags: Option<Vec<u8>>,
}

const KEYS: [&str; 3] = ["a", "b", "c"];

impl PayloadSpec {
    fn json(&self) -> Payload {
        let mut p = Payload::new();
        if let Some(k) = &self.k {
            let words: Vec<Value> = k.iter().map(|&i| json!(KEYS[usize::from(i) % 3])).collect();
            if self.k_array || words.is_empty() {
                p.insert("k".into(), Value::Array(words));
            } else {
                p.insert("k".into(), words[0].clone());
            }
        }
        if let Some(n) = self.n {
            p.insert("n".into(), json!(n));
        }
        if let Some(f) = self.f {
            p.insert("f".into(), json!(f64::from(f) * 0.5));
        }
        if let Some(t) = &self.tags {
            p.insert(
                "tags".into(),
                json!(
                    t.iter()
                        .map(|&i| if i % 2 == 0 { "x" } else { "y" })
                        .collect::<Vec<_>>()
                ),
            );
        }
        p
    }
}

fn payload_spec() -> impl Strategy<Value = PayloadSpec> {
    (
        proptest::option::of(proptest::collection::vec(0u8..3, 0..3)),
        any::<bool>(),
        proptest::option::of(0i64..4),
        proptest::option::of(0u8..5),
        proptest::option::of(proptest::collection::vec(0u8..2, 0..3)),
    )
        .prop_map(|(k, k_array, n, f, tags)| PayloadSpec {
            k,
            k_array,
            n,
            f,
            tags,
        })
}

#[derive(Clone, Debug)]
enum Cond {
    MatchK(u8),
    AnyK(Vec<u8>),
    MatchN(i64),
    RangeN(i64, i64),
    RangeF(u8),
    EmptyTags,
    HasId(Vec<u8>),
}

#[derive(Clone, Debug)]
struct FilterSpec {
    must: Vec<Cond>,
    should: Vec<Cond>,
    must_not: Vec<Cond>,
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        (0u8..3).prop_map(Cond::MatchK),
        proptest::collection::vec(0u8..3, 1..3).prop_map(Cond::AnyK),
        (0i64..4).prop_map(Cond::MatchN),
        (0i64..4, 0i64..5).prop_map(|(a, b)| Cond::RangeN(a, b)),
        (0u8..5).prop_map(Cond::RangeF),
        Just(Cond::EmptyTags),
        proptest::collection::vec(0u8..28, 1..5).prop_map(Cond::HasId),
    ]
}

fn filter_spec() -> impl Strategy<Value = FilterSpec> {
    (
        proptest::collection::vec(cond(), 0..3),
        proptest::collection::vec(cond(), 0..3),
        proptest::collection::vec(cond(), 0..2),
    )
        .prop_map(|(must, should, must_not)| FilterSpec {
            must,
            should,
            must_not,
        })
}

impl Cond {
    fn to_engine(&self) -> Condition {
        match self {
            Cond::MatchK(i) => Condition::matches("k", KEYS[usize::from(*i)]),
            Cond::AnyK(l) => Condition::matches_any(
                "k",
                AnyValues::Keywords(l.iter().map(|&i| KEYS[usize::from(i)].to_owned()).collect()),
            ),
            Cond::MatchN(n) => Condition::matches("n", *n),
            Cond::RangeN(a, b) => {
                Condition::range("n", Range::default().gte(*a as f64).lt(*b as f64))
            }
            Cond::RangeF(g) => Condition::range("f", Range::default().gt(f64::from(*g) * 0.5)),
            Cond::EmptyTags => Condition::is_empty("tags"),
            Cond::HasId(ids) => Condition::has_id(ids.iter().map(|&i| pid(i))),
        }
    }

    /// An independent evaluation of the condition on the model's payload.
    fn eval(&self, id: PointId, p: &Payload) -> bool {
        let strings = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                _ => vec![],
            }
        };
        match self {
            Cond::MatchK(i) => strings(p.get("k")).contains(&KEYS[usize::from(*i)].to_owned()),
            Cond::AnyK(l) => {
                let have = strings(p.get("k"));
                l.iter()
                    .any(|&i| have.contains(&KEYS[usize::from(i)].to_owned()))
            }
            Cond::MatchN(n) => p.get("n").and_then(Value::as_i64) == Some(*n),
            Cond::RangeN(a, b) => p
                .get("n")
                .and_then(Value::as_i64)
                .is_some_and(|n| n >= *a && n < *b),
            Cond::RangeF(g) => p
                .get("f")
                .and_then(Value::as_f64)
                .is_some_and(|f| f > f64::from(*g) * 0.5),
            Cond::EmptyTags => p
                .get("tags")
                .is_none_or(|t| t.as_array().is_some_and(Vec::is_empty)),
            Cond::HasId(ids) => ids.iter().any(|&i| pid(i) == id),
        }
    }
}

impl FilterSpec {
    fn to_engine(&self) -> Filter {
        Filter::must(self.must.iter().map(Cond::to_engine))
            .with_should(self.should.iter().map(Cond::to_engine))
            .with_must_not(self.must_not.iter().map(Cond::to_engine))
    }

    fn eval(&self, id: PointId, p: &Payload) -> bool {
        self.must.iter().all(|c| c.eval(id, p))
            && (self.should.is_empty() || self.should.iter().any(|c| c.eval(id, p)))
            && !self.must_not.iter().any(|c| c.eval(id, p))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Upsert(Vec<(u8, [i8; DIM], PayloadSpec)>),
    Delete(Vec<u8>),
    DeleteByFilter(FilterSpec),
    SetPayload(Vec<u8>, PayloadSpec, bool),
    Overwrite(Vec<u8>, PayloadSpec),
    DeleteKeys(Vec<u8>, Vec<u8>),
    Clear(Vec<u8>),
    CreateIndex(u8),
    Search([i8; DIM], usize, Option<FilterSpec>),
    Scroll(Option<FilterSpec>, Option<u8>, usize),
    Count(Option<FilterSpec>),
    Get(Vec<u8>),
    Flush,
    Optimize,
    Merge,
    Seal,
    Reopen,
    Crash,
}

fn vector() -> impl Strategy<Value = [i8; DIM]> {
    proptest::array::uniform4(-3i8..=3)
}

fn ids() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..28, 1..5)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec((0u8..28, vector(), payload_spec()), 1..8).prop_map(Op::Upsert),
        2 => ids().prop_map(Op::Delete),
        1 => filter_spec().prop_map(Op::DeleteByFilter),
        2 => (ids(), payload_spec(), any::<bool>()).prop_map(|(i, p, b)| Op::SetPayload(i, p, b)),
        1 => (ids(), payload_spec()).prop_map(|(i, p)| Op::Overwrite(i, p)),
        1 => (ids(), proptest::collection::vec(0u8..4, 1..3)).prop_map(|(i, k)| Op::DeleteKeys(i, k)),
        1 => ids().prop_map(Op::Clear),
        1 => (0u8..5).prop_map(Op::CreateIndex),
        4 => (vector(), 1usize..12, proptest::option::of(filter_spec())).prop_map(|(v, l, f)| Op::Search(v, l, f)),
        2 => (proptest::option::of(filter_spec()), proptest::option::of(0u8..28), 1usize..10)
            .prop_map(|(f, o, l)| Op::Scroll(f, o, l)),
        2 => proptest::option::of(filter_spec()).prop_map(Op::Count),
        1 => ids().prop_map(Op::Get),
        1 => Just(Op::Flush),
        2 => Just(Op::Optimize),
        1 => Just(Op::Merge),
        2 => Just(Op::Seal),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

struct Model {
    metric: Metric,
    points: BTreeMap<PointId, (Vec<f32>, Payload)>,
}

impl Model {
    fn score(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.metric {
            Metric::Dot => a.iter().zip(b).map(|(x, y)| x * y).sum(),
            Metric::Euclid => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt(),
            other => unreachable!("{other:?} scores are not exact"),
        }
    }

    fn better(&self, a: f32, b: f32) -> bool {
        if self.metric == Metric::Dot {
            a > b
        } else {
            a < b
        }
    }

    fn matching(&self, f: Option<&FilterSpec>) -> Vec<PointId> {
        self.points
            .iter()
            .filter(|(id, (_, p))| f.is_none_or(|f| f.eval(**id, p)))
            .map(|(id, _)| *id)
            .collect()
    }
}

struct Harness {
    dir: MemoryDirectory,
    db: Option<Database>,
    col: Option<Collection>,
    model: Model,
}

fn config(metric: Metric) -> deftech_vec::CollectionConfig {
    // Every sealed segment gets a graph (threshold 0): with ef above the segment sizes the
    // graph search must still give exact answers.
    quiet_config(DIM, metric)
        .hnsw(deftech_vec::HnswConfig::default().full_scan_threshold(0))
        .fsync(FsyncPolicy::Always)
        .wal(WalConfig::default().segment_bytes(4096))
        .optimizer(
            OptimizerConfig::default()
                .background(false)
                .max_segments(2)
                .vacuum(0.2, 2),
        )
}

const INDEXES: [(&str, PayloadIndexKind); 5] = [
    ("k", PayloadIndexKind::Keyword),
    ("n", PayloadIndexKind::Integer),
    ("f", PayloadIndexKind::Float),
    ("tags", PayloadIndexKind::Keyword),
    // Re-indexing a field with another kind (floats in an integer index are checked one by one).
    ("f", PayloadIndexKind::Integer),
];

impl Harness {
    fn new(metric: Metric) -> Self {
        let (dir, db) = mem_db();
        let col = db.create_collection("m", config(metric)).unwrap();
        Harness {
            dir,
            db: Some(db),
            col: Some(col),
            model: Model {
                metric,
                points: BTreeMap::new(),
            },
        }
    }

    fn col(&self) -> &Collection {
        self.col.as_ref().unwrap()
    }

    fn reopen_from(&mut self, dir: MemoryDirectory) {
        self.col = None;
        self.db = None;
        self.dir = dir;
        let db = reopen(&self.dir);
        self.col = Some(db.collection("m").unwrap());
        self.db = Some(db);
    }

    fn all_exist(&self, ids: &[u8]) -> bool {
        ids.iter().all(|&i| self.model.points.contains_key(&pid(i)))
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Upsert(points) => {
                let batch = points.iter().map(|(i, v, p)| {
                    Point::new(pid(*i), v.iter().map(|&x| f32::from(x)).collect())
                        .with_payload(Value::Object(p.json()))
                });
                self.col().upsert(batch.collect::<Vec<_>>()).unwrap();
                for (i, v, p) in points {
                    self.model.points.insert(
                        pid(*i),
                        (v.iter().map(|&x| f32::from(x)).collect(), p.json()),
                    );
                }
            }
            Op::Delete(ids) => {
                self.col().delete(ids.iter().map(|&i| pid(i))).unwrap();
                for &i in ids {
                    self.model.points.remove(&pid(i));
                }
            }
            Op::DeleteByFilter(f) => {
                self.col().delete_by_filter(&f.to_engine()).unwrap();
                for id in self.model.matching(Some(f)) {
                    self.model.points.remove(&id);
                }
            }
            Op::SetPayload(ids, spec, with_null) => {
                let mut p = spec.json();
                if *with_null {
                    p.insert("n".into(), Value::Null);
                }
                let r = self.col().set_payload(
                    ids.iter().map(|&i| pid(i)).collect::<Vec<_>>(),
                    p.clone(),
                    None,
                );
                if self.all_exist(ids) {
                    r.unwrap();
                    for &i in ids {
                        let cur = &mut self.model.points.get_mut(&pid(i)).unwrap().1;
                        for (k, v) in &p {
                            if v.is_null() {
                                cur.remove(k);
                            } else {
                                cur.insert(k.clone(), v.clone());
                            }
                        }
                    }
                } else {
                    prop_assert!(matches!(r, Err(Error::PointNotFound(_))), "{r:?}");
                }
            }
            Op::Overwrite(ids, spec) => {
                let r = self.col().overwrite_payload(
                    ids.iter().map(|&i| pid(i)).collect::<Vec<_>>(),
                    spec.json(),
                );
                if self.all_exist(ids) {
                    r.unwrap();
                    for &i in ids {
                        self.model.points.get_mut(&pid(i)).unwrap().1 = spec.json();
                    }
                } else {
                    prop_assert!(matches!(r, Err(Error::PointNotFound(_))), "{r:?}");
                }
            }
            Op::DeleteKeys(ids, keys) => {
                let names: Vec<&str> = keys.iter().map(|&k| INDEXES[usize::from(k)].0).collect();
                let r = self
                    .col()
                    .delete_payload_keys(ids.iter().map(|&i| pid(i)).collect::<Vec<_>>(), &names);
                if self.all_exist(ids) {
                    r.unwrap();
                    for &i in ids {
                        let cur = &mut self.model.points.get_mut(&pid(i)).unwrap().1;
                        for n in &names {
                            cur.remove(*n);
                        }
                    }
                } else {
                    prop_assert!(matches!(r, Err(Error::PointNotFound(_))), "{r:?}");
                }
            }
            Op::Clear(ids) => {
                let r = self
                    .col()
                    .clear_payload(ids.iter().map(|&i| pid(i)).collect::<Vec<_>>());
                if self.all_exist(ids) {
                    r.unwrap();
                    for &i in ids {
                        self.model.points.get_mut(&pid(i)).unwrap().1.clear();
                    }
                } else {
                    prop_assert!(matches!(r, Err(Error::PointNotFound(_))), "{r:?}");
                }
            }
            Op::CreateIndex(i) => {
                let (field, kind) = INDEXES[usize::from(*i)];
                self.col().create_payload_index(field, kind).unwrap();
            }
            Op::Search(v, limit, f) => self.check_search(v, *limit, f.as_ref())?,
            Op::Scroll(f, offset, limit) => {
                let mut req = ScrollRequest::new(*limit).with_payload(true);
                req.filter = f.as_ref().map(FilterSpec::to_engine);
                req.offset = offset.map(pid);
                let got = self.col().scroll(&req).unwrap();
                let expected: Vec<PointId> = self
                    .model
                    .matching(f.as_ref())
                    .into_iter()
                    .filter(|id| offset.is_none_or(|o| *id >= pid(o)))
                    .collect();
                let page: Vec<PointId> = got.points.iter().map(|p| p.id).collect();
                prop_assert_eq!(&page[..], &expected[..expected.len().min(*limit)]);
                prop_assert_eq!(got.next_page_offset, expected.get(*limit).copied());
                for p in &got.points {
                    prop_assert_eq!(p.payload.as_ref().unwrap(), &self.model.points[&p.id].1);
                }
            }
            Op::Count(f) => {
                let engine = f.as_ref().map(FilterSpec::to_engine);
                let got = self.col().count(engine.as_ref()).unwrap();
                prop_assert_eq!(got, self.model.matching(f.as_ref()).len() as u64);
            }
            Op::Get(ids) => {
                let want: Vec<PointId> = ids.iter().map(|&i| pid(i)).collect();
                let got = self.col().get(&want, true, true).unwrap();
                let mut seen = Vec::new();
                let expected: Vec<PointId> = want
                    .iter()
                    .filter(|id| {
                        let first = !seen.contains(*id);
                        seen.push(**id);
                        first && self.model.points.contains_key(id)
                    })
                    .copied()
                    .collect();
                prop_assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), expected);
                for r in got {
                    let (v, p) = &self.model.points[&r.id];
                    prop_assert_eq!(r.vector.as_ref().unwrap(), v);
                    prop_assert_eq!(r.payload.as_ref().unwrap(), p);
                }
            }
            Op::Flush => self.col().flush().unwrap(),
            Op::Optimize => self.col().optimize().unwrap(),
            Op::Merge => self.col().optimize_merges_only().unwrap(),
            Op::Seal => self.col().optimize_seal_only().unwrap(),
            Op::Reopen => {
                let dir = self.dir.clone();
                self.reopen_from(dir);
            }
            Op::Crash => {
                // Power loss now: only what was synced survives. Under `Always`, that is every
                // acknowledged write, so the model is unchanged.
                let after = self.dir.crash_copy();
                self.reopen_from(after);
            }
        }
        Ok(())
    }

    fn check_search(
        &self,
        v: &[i8; DIM],
        limit: usize,
        f: Option<&FilterSpec>,
    ) -> Result<(), TestCaseError> {
        let q: Vec<f32> = v.iter().map(|&x| f32::from(x)).collect();
        let mut req = SearchRequest::new(q.clone(), limit).with_payload(true);
        req.filter = f.map(FilterSpec::to_engine);
        let got = self.col().search(&req).unwrap();
        let mut expected: Vec<(f32, PointId)> = self
            .model
            .matching(f)
            .into_iter()
            .map(|id| (self.model.score(&q, &self.model.points[&id].0), id))
            .collect();
        expected.sort_by(|a, b| {
            if self.model.better(a.0, b.0) {
                std::cmp::Ordering::Less
            } else if self.model.better(b.0, a.0) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        prop_assert_eq!(got.len(), expected.len().min(limit));
        // Same scores in the same order; ids may differ only among equal scores.
        let got_scores: Vec<f32> = got.iter().map(|h| h.score).collect();
        let want_scores: Vec<f32> = expected.iter().take(limit).map(|e| e.0).collect();
        prop_assert_eq!(&got_scores, &want_scores);
        for h in &got {
            let (vec, payload) = &self.model.points[&h.id];
            prop_assert_eq!(h.score, self.model.score(&q, vec), "score of {}", h.id);
            prop_assert_eq!(h.payload.as_ref().unwrap(), payload);
            prop_assert!(
                f.is_none_or(|f| f.eval(h.id, payload)),
                "{} does not match the filter",
                h.id
            );
        }
        let mut unique: Vec<PointId> = got.iter().map(|h| h.id).collect();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), got.len(), "duplicate ids in results");
        Ok(())
    }
}

fn run(metric: Metric, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(metric);
    for op in ops {
        h.apply(op)?;
    }
    // Finally: a reopen must give the same state.
    let dir = h.dir.clone();
    h.reopen_from(dir);
    h.apply(&Op::Count(None))?;
    h.apply(&Op::Scroll(None, None, 100))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn dot_collection_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(Metric::Dot, &ops)?;
    }

    #[test]
    fn euclid_collection_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(Metric::Euclid, &ops)?;
    }
}
