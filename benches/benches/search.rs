//! Single-query search latency on 100,000 sealed 128-d points with their HNSW graph: graph
//! search at several `ef`, a filtered search (10 % of the points pass, indexed), and the exact
//! scan as the baseline.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use deftech_benches::Rng;
use deftech_vec::{Condition, Database, Filter, Range, SearchRequest};

fn search(c: &mut Criterion) {
    let n = 100_000;
    let path = deftech_benches::sealed_collection(n, 128).expect("build the data set");
    let db = Database::open(&path).expect("open");
    let col = db.collection("sealed").expect("collection");
    let mut rng = Rng::new(42);
    let queries: Vec<Vec<f32>> = (0..256).map(|_| rng.uniform_vector(128)).collect();
    let mut g = c.benchmark_group("search_100k_128d_top10");
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % queries.len();
        queries[i].clone()
    };
    for ef in [32usize, 64, 128] {
        g.bench_function(BenchmarkId::new("hnsw_ef", ef), |b| {
            b.iter(|| {
                col.search(&SearchRequest::new(next(), 10).hnsw_ef(ef))
                    .expect("search")
            })
        });
    }
    let ten_percent = Filter::must([Condition::range("group", Range::default().lt(10.0))]);
    g.bench_function("hnsw_ef64_filter_10pct", |b| {
        b.iter(|| {
            col.search(
                &SearchRequest::new(next(), 10)
                    .hnsw_ef(64)
                    .filter(ten_percent.clone()),
            )
            .expect("search")
        })
    });
    g.sample_size(20);
    g.bench_function("exact_scan", |b| {
        b.iter(|| {
            col.search(&SearchRequest::new(next(), 10).exact(true))
                .expect("search")
        })
    });
    g.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
