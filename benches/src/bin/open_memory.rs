//! Resident memory after opening a collection of sealed points, for growing sizes, each in a
//! fresh child process: the vectors stay in the page cache behind the mmap, so the resident
//! growth caused by opening must not grow with the data.
//!
//! `cargo run --release -p deftech-benches --bin open_memory [-- 100000 1000000]`
#![allow(clippy::print_stdout)]

use std::process::Command;
use std::time::Instant;

use deftech_benches::{resident_bytes, sealed_collection};
use deftech_vec::{Database, SearchRequest};

fn measure(n: u64, dim: usize) {
    let path = sealed_collection(n, dim).expect("data set");
    let before = resident_bytes().unwrap_or_default();
    let start = Instant::now();
    let db = Database::open(&path).expect("open");
    let c = db.collection("sealed").expect("collection");
    let opened = start.elapsed();
    let after_open = resident_bytes().unwrap_or_default();
    assert_eq!(c.info().points, n);
    // One exact search touches every vector once (through the page cache, not the heap).
    let hits = c
        .search(&SearchRequest::new(vec![0.01; dim], 10).exact(true))
        .expect("search");
    assert_eq!(hits.len(), 10);
    let after_search = resident_bytes().unwrap_or_default();
    let mapped: u64 = c.info().segments.iter().map(|s| s.mapped_bytes).sum();
    let kib = |a: u64, b: u64| a.saturating_sub(b) / 1024;
    println!(
        "{:>19} | {:>9.2?} | {:>8} | {:>8} | {:>10} | {:>10} | {:>10}",
        format!("{n} x {dim}"),
        opened,
        kib(after_open.0, before.0),
        kib(after_open.1, before.1),
        mapped / 1024,
        kib(after_search.0, before.0),
        kib(after_search.1, before.1),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, n, dim] = args.as_slice()
        && flag == "--child"
    {
        measure(n.parse().expect("n"), dim.parse().expect("dim"));
        return;
    }
    let sizes: Vec<u64> = if args.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        args.iter()
            .map(|a| a.parse().expect("a point count"))
            .collect()
    };
    let exe = std::env::current_exe().expect("exe");
    println!(
        "{:>19} | {:>9} | {:>8} | {:>8} | {:>10} | {:>10} | {:>10}",
        "points", "open", "heap KiB", "file KiB", "mapped KiB", "heap after", "file after"
    );
    println!(
        "{:>19} | {:>9} | {:>8} | {:>8} | {:>10} | {:>10} | {:>10}",
        "", "", "(open)", "(open)", "", "exact scan", "exact scan"
    );
    for n in sizes {
        // Build (or reuse) the data set first so that the child only opens it.
        sealed_collection(n, 128).expect("data set");
        let status = Command::new(&exe)
            .args(["--child", &n.to_string(), "128"])
            .status()
            .expect("child");
        assert!(status.success());
    }
}
