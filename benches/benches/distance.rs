//! Distance kernels: the selected kernel (hand-written AVX2+FMA here, simsimd on AVX-512
//! machines), simsimd called directly, and a plain loop, at the dimensions that matter; and the
//! code kernels of the quantized walks (AVX2 wherever the CPU has it) against their plain loops.

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

/// The kernels the quantized walks score codes with: int8 codes against 16-bit query weights,
/// and binary codes against the query's 8 bit planes (one rotated 1024-d vector: 16 words).
fn code_kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("codes (selected: {})", k::kernel_name()));
    for dim in [384usize, 1024] {
        let mut rng = Rng::new(dim as u64 + 2);
        let u: Vec<u8> = (0..dim).map(|_| (rng.next_u64() & 0xFF) as u8).collect();
        let d: Vec<i16> = (0..dim)
            .map(|_| (rng.next_u64() % 16_000) as i16 - 8_000)
            .collect();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(
            BenchmarkId::new("u8_i16 selected", dim),
            &dim,
            |bench, _| {
                bench.iter(|| k::dot_u8_i16(std::hint::black_box(&u), std::hint::black_box(&d)))
            },
        );
        g.bench_with_input(BenchmarkId::new("u8_i16 scalar", dim), &dim, |bench, _| {
            bench.iter(|| k::scalar_dot_u8_i16(std::hint::black_box(&u), std::hint::black_box(&d)))
        });
        let words = dim.next_power_of_two() / 64;
        let code: Vec<u64> = (0..words).map(|_| rng.next_u64()).collect();
        let planes: Vec<u64> = (0..words * k::QUERY_PLANES)
            .map(|_| rng.next_u64())
            .collect();
        g.bench_with_input(
            BenchmarkId::new("weighted_bits selected", dim),
            &dim,
            |bench, _| {
                bench.iter(|| {
                    k::weighted_bits(std::hint::black_box(&code), std::hint::black_box(&planes))
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("weighted_bits scalar", dim),
            &dim,
            |bench, _| {
                bench.iter(|| {
                    k::scalar_weighted_bits(
                        std::hint::black_box(&code),
                        std::hint::black_box(&planes),
                    )
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, kernels, code_kernels);
criterion_main!(benches);
