//! Payload indexes change speed, never results: the same data and filters give identical
//! answers with and without indexes, in mutable and sealed segments, including values of the
//! "wrong" type (a float in an integer field, a number in a keyword field).

use deftech_vec::{
    AnyValues, Collection, Condition, Filter, Metric, PayloadIndexKind, Point, Range,
    ScrollRequest, SearchRequest, ValuesCount,
};
use serde_json::{Value, json};

use crate::common::{Rng, mem_db, quiet_config};

const DIM: usize = 6;
const WORDS: [&str; 5] = ["red", "green", "blue", "cyan", "gold"];

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => json!(WORDS[rng.below(5) as usize]),
        1 => json!([WORDS[rng.below(5) as usize], WORDS[rng.below(5) as usize]]),
        2 => json!(rng.below(10) as i64 - 3),
        3 => json!(rng.below(20) as f64 / 4.0),
        4 => json!([rng.below(10), rng.below(100) as f64 / 10.0]),
        5 => json!(rng.below(2) == 0),
        6 => Value::Null,
        7 => json!([]),
        _ => json!({"inner": rng.below(5)}),
    }
}

fn random_payload(rng: &mut Rng) -> Value {
    let mut o = serde_json::Map::new();
    for key in ["color", "n", "x", "flag"] {
        if rng.below(5) != 0 {
            o.insert(key.into(), random_value(rng));
        }
    }
    if rng.below(3) == 0 {
        o.insert(
            "items".into(),
            json!([{"color": WORDS[rng.below(5) as usize], "n": rng.below(4)}, {"n": rng.below(4)}]),
        );
    }
    Value::Object(o)
}

fn random_condition(rng: &mut Rng) -> Condition {
    match rng.below(12) {
        0 => Condition::matches("color", WORDS[rng.below(5) as usize]),
        1 => Condition::matches_any(
            "color",
            AnyValues::Keywords(vec![
                WORDS[rng.below(5) as usize].into(),
                WORDS[rng.below(5) as usize].into(),
            ]),
        ),
        2 => Condition::matches_except(
            "color",
            AnyValues::Keywords(vec![WORDS[rng.below(5) as usize].into()]),
        ),
        3 => Condition::matches("n", rng.below(10) as i64 - 3),
        4 => Condition::matches_any(
            "n",
            AnyValues::Integers(vec![rng.below(5) as i64, rng.below(5) as i64]),
        ),
        5 => Condition::range(
            "n",
            Range::default()
                .gte(rng.below(8) as f64 - 3.5)
                .lt(rng.below(8) as f64),
        ),
        6 => Condition::range("x", Range::default().gt(rng.below(40) as f64 / 8.0)),
        7 => Condition::matches("flag", rng.below(2) == 0),
        8 => Condition::is_empty(["color", "n", "x"][rng.below(3) as usize]),
        9 => Condition::values_count(
            "color",
            ValuesCount {
                gte: Some(2),
                ..ValuesCount::default()
            },
        ),
        10 => Condition::nested(
            "items",
            Filter::must([Condition::matches("n", rng.below(4) as i64)]),
        ),
        _ => Condition::matches_text("color", "e"),
    }
}

fn random_filter(rng: &mut Rng) -> Filter {
    let mut f = Filter::default();
    for _ in 0..rng.below(3) {
        f.must.push(random_condition(rng));
    }
    for _ in 0..rng.below(3) {
        f.should.push(random_condition(rng));
    }
    if rng.below(3) == 0 {
        f.must_not.push(random_condition(rng));
    }
    if rng.below(4) == 0 {
        f.must.push(Condition::Filter(Filter::should([
            random_condition(rng),
            random_condition(rng),
        ])));
    }
    f
}

fn compare(a: &Collection, b: &Collection, rng: &mut Rng, rounds: usize) {
    for _ in 0..rounds {
        let f = random_filter(rng);
        assert_eq!(
            a.count(Some(&f)).unwrap(),
            b.count(Some(&f)).unwrap(),
            "count with {f:?}"
        );
        let q = rng.vector(DIM);
        let req = SearchRequest::new(q, 15)
            .filter(f.clone())
            .with_payload(true);
        // Versions (LSNs) differ between the two collections: compare the rest.
        let strip = |hits: Vec<deftech_vec::ScoredPoint>| {
            hits.into_iter()
                .map(|h| (h.id, h.score, h.payload))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            strip(a.search(&req).unwrap()),
            strip(b.search(&req).unwrap()),
            "search with {f:?}"
        );
        let s = ScrollRequest::new(20).filter(f.clone());
        let (sa, sb) = (a.scroll(&s).unwrap(), b.scroll(&s).unwrap());
        let strip = |r: &deftech_vec::ScrollResult| {
            r.points
                .iter()
                .map(|p| (p.id, p.payload.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&sa), strip(&sb), "scroll with {f:?}");
        assert_eq!(sa.next_page_offset, sb.next_page_offset);
    }
}

#[test]
fn results_with_and_without_indexes_are_identical() {
    let (_dir, db) = mem_db();
    let plain = db
        .create_collection("plain", quiet_config(DIM, Metric::Dot))
        .unwrap();
    let indexed = db
        .create_collection("indexed", quiet_config(DIM, Metric::Dot))
        .unwrap();
    // Some indexes exist before the data (built at seal time), some come after (built for
    // existing segments by the optimizer).
    indexed
        .create_payload_index("color", PayloadIndexKind::Keyword)
        .unwrap();
    indexed
        .create_payload_index("n", PayloadIndexKind::Integer)
        .unwrap();
    let mut rng = Rng::new(11);
    for round in 0..4u64 {
        let points: Vec<Point> = (0..300u64)
            .map(|i| {
                Point::new(round * 300 + i, rng.vector(DIM)).with_payload(random_payload(&mut rng))
            })
            .collect();
        plain.upsert(points.clone()).unwrap();
        indexed.upsert(points).unwrap();
        if round == 1 {
            indexed
                .create_payload_index("x", PayloadIndexKind::Float)
                .unwrap();
            indexed
                .create_payload_index("flag", PayloadIndexKind::Bool)
                .unwrap();
        }
        if round < 3 {
            plain.optimize().unwrap();
            indexed.optimize().unwrap();
        }
        compare(&plain, &indexed, &mut rng, 60);
    }
    let info = indexed.info();
    let sealed = info
        .segments
        .iter()
        .filter(|s| s.kind == "sealed")
        .collect::<Vec<_>>();
    assert!(!sealed.is_empty());
    for s in sealed {
        let mut f = s.indexed_fields.clone();
        f.sort();
        assert_eq!(
            f,
            vec!["color", "flag", "n", "x"],
            "every sealed segment got every index"
        );
    }
    // Deletes and payload edits after indexing.
    let f = Filter::must([Condition::matches("color", "red")]);
    plain.delete_by_filter(&f).unwrap();
    indexed.delete_by_filter(&f).unwrap();
    compare(&plain, &indexed, &mut rng, 60);
    // Changing an index kind rebuilds it.
    indexed
        .create_payload_index("x", PayloadIndexKind::Integer)
        .unwrap();
    indexed.optimize().unwrap();
    compare(&plain, &indexed, &mut rng, 30);
}
