//! Opening a database whose collection holds 100,000 or 1,000,000 sealed 128-d points. Opening
//! maps the segment files and checks their headers; it must not read or copy the vectors, so
//! its time stays flat as the data grows. (`cargo run --release -p deftech-benches --bin
//! open_memory` reports the resident memory side.)

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use deftech_vec::Database;

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open_sealed_128d");
    group.sample_size(20);
    for n in [100_000u64, 1_000_000] {
        let path = deftech_benches::sealed_collection(n, 128).expect("build the data set");
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let db = Database::open(&path).expect("open");
                let c = db.collection("sealed").expect("collection");
                assert_eq!(c.info().points, n);
                drop(c);
                drop(db);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
