//! The ANN harness: recall and queries per second of deftech-vec's HNSW against hnsw_rs on the
//! same data and parameters, in one run; the data set, queries and ground truth are written to
//! files that `benches/peers.py` reads to run hnswlib and faiss the same way.
//!
//! ```text
//! cargo run --release -p deftech-benches --bin ann -- --dataset clustered --n 1000000 --dim 128
//! benches/run-ann.sh --dataset clustered --n 1000000 --dim 128      # then hnswlib and faiss
//! ```
//!
//! Options: `--dataset clustered|uniform|embeddings|fvecs:PATH|npy:PATH`, `--n`, `--dim`,
//! `--queries` (1000), `--m` (16), `--ef-construct` (200), `--ef 16,32,64,128,256`,
//! `--engines deftech,hnsw_rs`, `--metric l2|cosine|dot` (l2), `--k` (10), `--seed` (1),
//! `--quantization none,int8,binary` (each mode builds its own collection; a quantized mode
//! also reports the `f32` search of the same graph), `--oversampling 1,2,4` (2), `--quantile`
//! (0.99),
//! `--rounds` (1: deftech's rows are measured that many times, interleaved, and the median
//! queries/s printed, so a ratio between rows is not one moment of a noisy machine), `--keep`
//! (deftech's built collection is kept in the data folder and reopened by the next run with the
//! same data set and build parameters: query-side experiments at 1M skip the graph build; the
//! name does not cover the engine's code, so remove `bench-data/kept-*` after changing how
//! segments, graphs or codes are built), `--segments S` (1: the data set is loaded and sealed
//! in S parts, so a search walks S graphs of n / S points, as it does in a collection that grew
//! past `max_segment_points`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deftech_benches::data::{self, Rows, Vectors};
use deftech_benches::resident_bytes;
use deftech_vec::{
    CollectionConfig, Database, FsyncPolicy, HnswConfig, Metric, OptimizerConfig, Point, PointId,
    Quantization, QuantizationParams, SearchRequest,
};

struct Args {
    dataset: String,
    n: usize,
    dim: usize,
    queries: usize,
    m: usize,
    ef_construct: usize,
    efs: Vec<usize>,
    engines: Vec<String>,
    metric: String,
    k: usize,
    seed: u64,
    quantization: Vec<String>,
    oversampling: Vec<f32>,
    quantile: f32,
    rounds: usize,
    keep: bool,
    segments: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        dataset: "clustered".into(),
        n: 100_000,
        dim: 128,
        queries: 1000,
        m: 16,
        ef_construct: 200,
        efs: vec![16, 32, 64, 128, 256],
        engines: vec!["deftech".into(), "hnsw_rs".into()],
        metric: "l2".into(),
        k: 10,
        seed: 1,
        quantization: vec!["none".into()],
        oversampling: vec![2.0],
        quantile: 0.99,
        rounds: 1,
        keep: false,
        segments: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
                .clone()
        };
        match flag.as_str() {
            "--dataset" => a.dataset = val(),
            "--n" => a.n = val().parse().expect("--n"),
            "--dim" => a.dim = val().parse().expect("--dim"),
            "--queries" => a.queries = val().parse().expect("--queries"),
            "--m" => a.m = val().parse().expect("--m"),
            "--ef-construct" => a.ef_construct = val().parse().expect("--ef-construct"),
            "--ef" => a.efs = val().split(',').map(|e| e.parse().expect("--ef")).collect(),
            "--engines" => a.engines = val().split(',').map(str::to_owned).collect(),
            "--metric" => a.metric = val(),
            "--k" => a.k = val().parse().expect("--k"),
            "--seed" => a.seed = val().parse().expect("--seed"),
            "--quantization" => a.quantization = val().split(',').map(str::to_owned).collect(),
            "--oversampling" => {
                a.oversampling = val()
                    .split(',')
                    .map(|o| o.parse().expect("--oversampling"))
                    .collect()
            }
            "--quantile" => a.quantile = val().parse().expect("--quantile"),
            "--rounds" => a.rounds = val().parse::<usize>().expect("--rounds").max(1),
            "--keep" => a.keep = true,
            "--segments" => a.segments = val().parse::<usize>().expect("--segments").max(1),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

/// The data-set folder name, shared with peers.py.
fn set_name(a: &Args) -> String {
    let kind = a.dataset.replace([':', '/', '.'], "_");
    format!(
        "{kind}-{}x{}-q{}-{}-s{}",
        a.n, a.dim, a.queries, a.metric, a.seed
    )
}

fn load(a: &Args) -> (Box<dyn Rows>, Vectors, Vec<Vec<u32>>, PathBuf) {
    let dir = data::set_dir(&set_name(a));
    std::fs::create_dir_all(&dir).expect("data folder");
    let (base_p, query_p, gt_p) = (
        dir.join("base.fvecs"),
        dir.join("query.fvecs"),
        dir.join("gt.ivecs"),
    );
    if base_p.exists() && query_p.exists() && gt_p.exists() {
        eprintln!("using cached data set {}", dir.display());
        let base = data::MappedFvecs::open(&base_p).expect("base");
        let queries = data::read_fvecs(&query_p, usize::MAX).expect("queries");
        let gt = data::read_ivecs(&gt_p).expect("gt");
        return (Box::new(base), queries, gt, dir);
    }
    let t = Instant::now();
    let (mut base, mut queries) = match a.dataset.as_str() {
        "clustered" => {
            let all = data::clustered(a.n + a.queries, a.dim, 1000, 0.5, 0.0, a.seed);
            split(all, a.n)
        }
        "embeddings" => {
            // Resembles text embeddings: many topics, a decaying spectrum, unit length.
            let all = data::clustered(a.n + a.queries, a.dim, 2000, 0.6, 0.5, a.seed);
            split(all, a.n)
        }
        "uniform" => split(data::uniform(a.n + a.queries, a.dim, a.seed), a.n),
        other => {
            let (kind, path) = other.split_once(':').expect("fvecs:PATH or npy:PATH");
            let all = match kind {
                "fvecs" => data::read_fvecs(path.as_ref(), a.n + a.queries).expect("read fvecs"),
                "npy" => data::read_npy(path.as_ref(), a.n + a.queries).expect("read npy"),
                _ => panic!("unknown data set {other}"),
            };
            assert!(
                all.len() > a.queries,
                "the file holds {} vectors",
                all.len()
            );
            let n = (all.len() - a.queries).min(a.n);
            split(all, n)
        }
    };
    if a.metric == "cosine" || a.dataset == "embeddings" {
        for v in base
            .data
            .chunks_mut(base.dim)
            .chain(queries.data.chunks_mut(queries.dim))
        {
            let norm = v
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            v.iter_mut().for_each(|x| *x /= norm);
        }
    }
    eprintln!(
        "generated {} + {} vectors in {:.1?}",
        base.len(),
        queries.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let gt = data::ground_truth(&base, &queries, 100, a.metric != "l2");
    eprintln!("exact ground truth (k = 100) in {:.1?}", t.elapsed());
    data::write_fvecs(&base_p, &base).expect("write base");
    data::write_fvecs(&query_p, &queries).expect("write queries");
    data::write_ivecs(&gt_p, &gt).expect("write gt");
    (Box::new(base), queries, gt, dir)
}

fn split(all: Vectors, n: usize) -> (Vectors, Vectors) {
    let dim = all.dim;
    let mut data = all.data;
    let q = data.split_off(n * dim);
    (Vectors { dim, data }, Vectors { dim, data: q })
}

fn recall(results: &[Vec<u32>], gt: &[Vec<u32>], k: usize) -> f64 {
    let mut hit = 0;
    for (r, g) in results.iter().zip(gt) {
        let truth = &g[..k.min(g.len())];
        hit += r.iter().take(k).filter(|x| truth.contains(x)).count();
    }
    hit as f64 / (results.len() * k) as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `search` over all queries with `threads` threads for at least `min` (whole passes);
/// returns queries per second and the results of one pass.
fn measure(
    queries: &Vectors,
    threads: usize,
    min: Duration,
    search: &(dyn Fn(&[f32]) -> Vec<u32> + Sync),
) -> (f64, Vec<Vec<u32>>) {
    let first: Vec<Vec<u32>> = (0..queries.len()).map(|i| search(queries.row(i))).collect();
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed() < min || done == 0 {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= queries.len() {
                            break;
                        }
                        std::hint::black_box(search(queries.row(i)));
                    }
                });
            }
        });
        done += queries.len();
    }
    (done as f64 / start.elapsed().as_secs_f64(), first)
}

struct Row {
    engine: String,
    build: f64,
    graph_bpp: f64,
    resident_bpp: f64,
    ef: usize,
    recall: f64,
    qps1: f64,
    qps_all: f64,
}

fn print_table(rows: &[Row], threads: usize) {
    println!(
        "{:<14} | {:>9} | {:>10} | {:>13} | {:>5} | {:>9} | {:>10} | {:>10}",
        "engine",
        "build s",
        "graph B/pt",
        "resident B/pt",
        "ef",
        "recall@10",
        "QPS 1 thr",
        format!("QPS {threads} thr")
    );
    for r in rows {
        println!(
            "{:<14} | {:>9.1} | {:>10.1} | {:>13.1} | {:>5} | {:>9.4} | {:>10.0} | {:>10.0}",
            r.engine, r.build, r.graph_bpp, r.resident_bpp, r.ef, r.recall, r.qps1, r.qps_all
        );
    }
}

/// Creates the collection "ann" in `db`, loads `base` and builds its graph.
fn build_collection(
    a: &Args,
    db: &Database,
    metric: Metric,
    quant: Option<Quantization>,
    base: &dyn Rows,
) -> deftech_vec::Collection {
    let mut config = CollectionConfig::new(a.dim, metric)
        .fsync(FsyncPolicy::Never)
        .hnsw(
            HnswConfig::default()
                .m(a.m)
                .ef_construct(a.ef_construct)
                .full_scan_threshold(1),
        )
        .optimizer(
            OptimizerConfig::default()
                .background(false)
                .seal_threshold(usize::MAX / 2)
                .max_segment_points(base.len().div_ceil(a.segments))
                .max_segments(a.segments.max(8)),
        );
    if let Some(q) = quant {
        config = config.quantization(q);
    }
    let c = db.create_collection("ann", config).expect("create");
    // Each part is loaded and sealed on its own, so it becomes one segment with its own graph.
    let part = base.len().div_ceil(a.segments);
    let (mut load, mut build) = (Duration::ZERO, Duration::ZERO);
    for first in (0..base.len()).step_by(part) {
        let t = Instant::now();
        let last = (first + part).min(base.len());
        for start in (first..last).step_by(10_000) {
            let end = (start + 10_000).min(last);
            c.upsert((start..end).map(|i| Point::new(i as u64, base.row(i).to_vec())))
                .expect("upsert");
        }
        load += t.elapsed();
        let t = Instant::now();
        c.optimize().expect("optimize");
        build += t.elapsed();
    }
    let info = c.info();
    let graphs = info.segments.iter().filter(|s| s.graph_bytes > 0).count();
    assert_eq!(graphs, a.segments, "segments with a graph after the build");
    eprintln!(
        "deftech: loaded {} points in {:.1?} (WAL + mutable segment), sealed + built the graph in {:.1?} (graph alone {:.1?})",
        info.points,
        load,
        build,
        Duration::from_millis(info.optimizer.graph_build_ms)
    );
    c
}

fn run_deftech(
    a: &Args,
    mode: &str,
    base: &dyn Rows,
    queries: &Vectors,
    gt: &[Vec<u32>],
    threads: usize,
    rows: &mut Vec<Row>,
) {
    let metric = match a.metric.as_str() {
        "l2" => Metric::Euclid,
        "cosine" => Metric::Cosine,
        "dot" => Metric::Dot,
        m => panic!("unknown metric {m}"),
    };
    let quant = match mode {
        "none" => None,
        "int8" => Some(Quantization::int8(a.quantile)),
        "binary" => Some(Quantization::binary()),
        other => panic!("unknown quantization {other}"),
    };
    // A kept collection is named by everything its build depends on.
    let kept = a.keep.then(|| {
        let parts = if a.segments > 1 {
            format!("-seg{}", a.segments)
        } else {
            String::new()
        };
        deftech_benches::data_dir().join(format!(
            "kept-{}-{mode}-m{}-efc{}-q{}{parts}",
            set_name(a),
            a.m,
            a.ef_construct,
            a.quantile
        ))
    });
    let temp;
    let path = match &kept {
        Some(p) => p.clone(),
        None => {
            temp = tempfile::tempdir_in(deftech_benches::data_dir()).expect("temp dir");
            temp.path().to_owned()
        }
    };
    // The build-time file is written last: a kept folder without it is an interrupted build.
    let build_file = path.join("graph-build-ms");
    let finished = std::fs::read_to_string(&build_file).ok();
    if kept.is_some() && finished.is_none() && path.exists() {
        std::fs::remove_dir_all(&path).expect("remove an interrupted kept build");
    }
    let db = Database::open(&path).expect("open");
    let (c, build_ms) = match finished {
        Some(ms) if kept.is_some() => {
            eprintln!("deftech: reopened the kept collection {}", path.display());
            let c = db.collection("ann").expect("kept collection");
            (c, ms.trim().parse::<u64>().expect("graph-build-ms"))
        }
        _ => {
            let c = build_collection(a, &db, metric, quant, base);
            let ms = c.info().optimizer.graph_build_ms;
            std::fs::write(&build_file, ms.to_string()).expect("write graph-build-ms");
            (c, ms)
        }
    };
    let info = c.info();
    let graph: u64 = info.segments.iter().map(|s| s.graph_bytes).sum();
    // (label, quantization parameters) per row family.
    let mut modes: Vec<(String, QuantizationParams)> = Vec::new();
    if mode == "none" {
        modes.push(("deftech".into(), QuantizationParams::ignore()));
    } else {
        // The f32 walk of the same graph, the baseline of this process.
        modes.push(("deftech f32".into(), QuantizationParams::ignore()));
        for &os in &a.oversampling {
            modes.push((
                format!("{mode} x{os}"),
                QuantizationParams::default().oversampling(os),
            ));
        }
    }
    let search = |ef: usize, qp: QuantizationParams| {
        let c = c.clone();
        move |q: &[f32]| -> Vec<u32> {
            c.search(
                &SearchRequest::new(q.to_vec(), a.k)
                    .hnsw_ef(ef)
                    .quantization(qp),
            )
            .expect("search")
            .into_iter()
            .map(|h| match h.id {
                PointId::Num(n) => n as u32,
                PointId::Uuid(_) => unreachable!(),
            })
            .collect()
        }
    };
    let min = Duration::from_millis(1500);
    let points: Vec<(String, QuantizationParams, usize)> = modes
        .iter()
        .flat_map(|(label, qp)| a.efs.iter().map(|&ef| (label.clone(), *qp, ef)))
        .collect();
    // Every round measures every row once, in the same order: a slow minute of the machine
    // lands on all rows, and the median drops it.
    let mut qps: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); points.len()];
    let mut results: Vec<Vec<Vec<u32>>> = vec![Vec::new(); points.len()];
    let mut resident = vec![0.0; points.len()];
    for _ in 0..a.rounds {
        for (i, (_, qp, ef)) in points.iter().enumerate() {
            let f = search(*ef, *qp);
            let (q1, res) = measure(queries, 1, min, &f);
            let (q_all, _) = measure(queries, threads, min, &f);
            qps[i].0.push(q1);
            qps[i].1.push(q_all);
            if results[i].is_empty() {
                results[i] = res;
                // The engine's own accounting: mapped pages resident after the searches, plus
                // heap (the harness's copy of the data set is not the engine's memory).
                let info = c.info();
                let bytes: u64 = info
                    .segments
                    .iter()
                    .flat_map(|s| s.components.iter())
                    .map(|comp| comp.resident_bytes)
                    .sum();
                resident[i] = bytes as f64 / base.len() as f64;
            }
        }
    }
    let info = c.info();
    for (i, (label, _, ef)) in points.into_iter().enumerate() {
        rows.push(Row {
            engine: label,
            build: build_ms as f64 / 1000.0,
            graph_bpp: graph as f64 / base.len() as f64,
            resident_bpp: resident[i],
            ef,
            recall: recall(&results[i], gt, a.k),
            qps1: median(&mut qps[i].0),
            qps_all: median(&mut qps[i].1),
        });
    }
    let mut per: std::collections::BTreeMap<&str, (u64, u64, bool)> = Default::default();
    for s in &info.segments {
        for comp in &s.components {
            let e = per.entry(comp.name).or_default();
            e.0 += comp.mapped_bytes;
            e.1 += comp.resident_bytes;
            e.2 |= comp.anonymous;
        }
    }
    eprintln!(
        "deftech ({mode}) memory per point by component, mapped / resident after the searches:"
    );
    for (name, (m, r, anonymous)) in per {
        eprintln!(
            "  {name:<16} {:>9.1} / {:>9.1} B{}",
            m as f64 / base.len() as f64,
            r as f64 / base.len() as f64,
            if anonymous { " (anonymous copy)" } else { "" }
        );
    }
    drop(c);
    db.close().expect("close");
}

fn run_hnsw_rs(
    a: &Args,
    base: &dyn Rows,
    queries: &Vectors,
    gt: &[Vec<u32>],
    threads: usize,
    rows: &mut Vec<Row>,
) {
    use hnsw_rs::prelude::*;
    assert_eq!(a.metric, "l2", "the hnsw_rs baseline runs with l2");
    let before = resident_bytes().unwrap_or_default();
    let t = Instant::now();
    let h: Hnsw<f32, DistL2> = Hnsw::new(a.m, base.len(), 16, a.ef_construct, DistL2 {});
    let items: Vec<(&[f32], usize)> = (0..base.len()).map(|i| (base.row(i), i)).collect();
    h.parallel_insert_slice(&items);
    let build = t.elapsed();
    eprintln!("hnsw_rs: built in {build:.1?}");
    let after = resident_bytes().unwrap_or_default();
    let heap = (after.0 + after.1).saturating_sub(before.0 + before.1) as f64 / base.len() as f64;
    let min = Duration::from_millis(1500);
    for &ef in &a.efs {
        let f = |q: &[f32]| -> Vec<u32> {
            h.search(q, a.k, ef)
                .into_iter()
                .map(|n| n.d_id as u32)
                .collect()
        };
        let (qps1, res) = measure(queries, 1, min, &f);
        let (qps_all, _) = measure(queries, threads, min, &f);
        rows.push(Row {
            engine: "hnsw_rs".into(),
            build: build.as_secs_f64(),
            graph_bpp: f64::NAN,
            resident_bpp: heap,
            ef,
            recall: recall(&res, gt, a.k),
            qps1,
            qps_all,
        });
    }
}

fn main() {
    let a = parse_args();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (base, queries, gt, dir) = load(&a);
    eprintln!(
        "data set {}: {} x {} base, {} queries; m = {}, ef_construct = {}, {threads} threads",
        dir.display(),
        base.len(),
        base.dim(),
        queries.len(),
        a.m,
        a.ef_construct
    );
    let mut rows = Vec::new();
    let mut order: HashMap<&str, usize> = HashMap::new();
    for (i, e) in a.engines.iter().enumerate() {
        order.insert(e, i);
        match e.as_str() {
            "deftech" => {
                for mode in &a.quantization {
                    run_deftech(&a, mode, &*base, &queries, &gt, threads, &mut rows);
                }
            }
            "hnsw_rs" => run_hnsw_rs(&a, &*base, &queries, &gt, threads, &mut rows),
            other => panic!("unknown engine {other}"),
        }
    }
    println!(
        "\n{} x {} ({}), {} queries, k = {}, m = {}, ef_construct = {}{}",
        base.len(),
        base.dim(),
        a.dataset,
        queries.len(),
        a.k,
        a.m,
        a.ef_construct,
        if a.segments > 1 {
            format!(", deftech in {} segments", a.segments)
        } else {
            String::new()
        }
    );
    print_table(&rows, threads);
    println!(
        "(build: graph construction in seconds, all threads; graph B/pt: graph file bytes per point;"
    );
    println!(" resident B/pt: process resident memory per point after building and searching)");
}
