//! Distance kernels: the selected kernel (hand-written AVX2+FMA here, simsimd on AVX-512
//! machines), simsimd called directly, and a plain loop, at the dimensions that matter.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deftech_benches::Rng;
use deftech_vec::bench_internals as k;
use simsimd::SpatialSimilarity;

fn kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("l2sq_f32 (selected: {})", k::kernel_name()));
    for dim in [128usize, 384, 1024] {
        let mut rng = Rng::new(dim as u64);
        let a = rng.uniform_vector(dim);
        let b = rng.uniform_vector(dim);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("selected", dim), &dim, |bench, _| {
            bench.iter(|| k::l2sq(std::hint::black_box(&a), std::hint::black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("simsimd", dim), &dim, |bench, _| {
            bench.iter(|| {
                <f32 as SpatialSimilarity>::l2sq(std::hint::black_box(&a), std::hint::black_box(&b))
            })
        });
        g.bench_with_input(BenchmarkId::new("scalar", dim), &dim, |bench, _| {
            bench.iter(|| k::scalar_l2sq(std::hint::black_box(&a), std::hint::black_box(&b)))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("dot_f32");
    for dim in [128usize, 1024] {
        let mut rng = Rng::new(dim as u64 + 1);
        let a = rng.uniform_vector(dim);
        let b = rng.uniform_vector(dim);
        g.bench_with_input(BenchmarkId::new("selected", dim), &dim, |bench, _| {
            bench.iter(|| k::dot(std::hint::black_box(&a), std::hint::black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("simsimd", dim), &dim, |bench, _| {
            bench.iter(|| {
                <f32 as SpatialSimilarity>::dot(std::hint::black_box(&a), std::hint::black_box(&b))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
