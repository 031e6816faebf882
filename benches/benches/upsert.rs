//! Upsert throughput: batches of 1,000 points, 128-d and 1024-d, under each fsync policy, on
//! the local file system. The background optimizer is off so that this measures the write path
//! (validation, WAL append and fsync, apply, publish).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deftech_benches::Rng;
use deftech_vec::{CollectionConfig, Database, FsyncPolicy, Metric, OptimizerConfig, Point};
use serde_json::json;

fn upsert(c: &mut Criterion) {
    let mut group = c.benchmark_group("upsert_batch_1000");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1000));
    for dim in [128usize, 1024] {
        for (name, policy) in [
            ("always", FsyncPolicy::Always),
            (
                "interval_100ms",
                FsyncPolicy::Interval(Duration::from_millis(100)),
            ),
            ("never", FsyncPolicy::Never),
        ] {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = Database::open(dir.path()).expect("open");
            let config = CollectionConfig::new(dim, Metric::Cosine)
                .fsync(policy)
                .optimizer(OptimizerConfig::default().background(false));
            let col = db.create_collection("bench", config).expect("create");
            let mut rng = Rng::new(dim as u64);
            let pool: Vec<Vec<f32>> = (0..1000).map(|_| rng.uniform_vector(dim)).collect();
            let mut next_id = 0u64;
            group.bench_function(BenchmarkId::new(name, dim), |b| {
                b.iter_batched(
                    || {
                        let first = next_id;
                        next_id += 1000;
                        pool.iter()
                            .enumerate()
                            .map(|(i, v)| {
                                Point::new(first + i as u64, v.clone())
                                    .with_payload(json!({"i": i}))
                            })
                            .collect::<Vec<_>>()
                    },
                    |batch| col.upsert(batch).expect("upsert"),
                    criterion::BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, upsert);
criterion_main!(benches);
