//! Load generator: concurrent search requests against 100,000 × 128-d points, over loopback
//! HTTP (keep-alive connections, one per worker) and as direct library calls, with the same
//! queries; prints queries/s and p50/p99 latency, and the HTTP / library ratio.
//!
//! `cargo run --release -p deftech-benches --bin loadgen [-- --seconds 5 --workers 1,2,4,8]`
//!
//! Client and server share this machine's cores; the ratio, not the absolute numbers, is the
//! point.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use deftech_benches::{Rng, sealed_collection};
use deftech_vec::{Database, SearchRequest};

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
        }
    }

    /// One POST on the kept-alive connection; returns the status.
    fn post(&mut self, path: &str, body: &[u8]) -> u16 {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.writer.write_all(head.as_bytes()).expect("write");
        self.writer.write_all(body).expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut len = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).expect("body");
        status
    }
}

struct Run {
    qps: f64,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `workers` threads calling `one(worker, i)` for `secs` seconds, after one second of
/// warm-up that is not measured.
fn drive(workers: usize, secs: f64, one: Arc<dyn Fn(usize, usize) + Send + Sync>) -> Run {
    let warm = Instant::now();
    let mut i = 0;
    while warm.elapsed() < Duration::from_secs(1) {
        one(0, i);
        i += 1;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (stop, one) = (stop.clone(), one.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    one(w, i);
                    lat.push(t.elapsed());
                    i += 1;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("worker"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    Run {
        qps: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut secs = 5.0;
    let mut workers = vec![1usize, 2, 4, 8];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => secs = it.next().expect("--seconds N").parse().expect("seconds"),
            "--workers" => {
                workers = it
                    .next()
                    .expect("--workers 1,2")
                    .split(',')
                    .map(|w| w.parse().expect("workers"))
                    .collect()
            }
            other => panic!("unknown option {other}"),
        }
    }
    let n = 100_000;
    let path = sealed_collection(n, 128).expect("data set");
    let mut rng = Rng::new(7);
    let queries: Arc<Vec<Vec<f32>>> =
        Arc::new((0..1000).map(|_| rng.uniform_vector(128)).collect());
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        queries
            .iter()
            .map(|q| {
                serde_json::to_vec(
                    &serde_json::json!({"vector": q, "limit": 10, "params": {"hnsw_ef": 64}}),
                )
                .expect("json")
            })
            .collect(),
    );

    // Library calls.
    let mut lib_runs = Vec::new();
    {
        let db = Database::open(&path).expect("open");
        let c = db.collection("sealed").expect("collection");
        // Fault the files into the page cache first: an exact search reads every vector.
        c.search(&SearchRequest::new(queries[0].clone(), 10).exact(true))
            .expect("warm-up");
        for &w in &workers {
            let (c, queries) = (c.clone(), queries.clone());
            let one = Arc::new(move |worker: usize, i: usize| {
                let q = &queries[(worker * 7919 + i) % queries.len()];
                std::hint::black_box(
                    c.search(&SearchRequest::new(q.clone(), 10).hnsw_ef(64))
                        .expect("search"),
                );
            });
            lib_runs.push(drive(w, secs, one));
        }
        drop(c);
        db.close().expect("close");
    }

    // The same over HTTP: the server in this process, on the same folder.
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let config = deftech_server::ServerConfig {
        data: path.clone(),
        listen: "127.0.0.1:0".into(),
        ..deftech_server::ServerConfig::default()
    };
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(deftech_server::run(
            config,
            async move {
                let _ = stop_rx.await;
            },
            Some(Box::new(move |a| {
                let _ = tx.send(a);
            })),
        ))
        .expect("server");
    });
    let addr = rx.recv().expect("address");
    for _ in 0..500 {
        let mut c = Conn::open(addr);
        let ready = {
            c.writer
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: b\r\n\r\n")
                .expect("write");
            let mut line = String::new();
            c.reader.read_line(&mut line).expect("line");
            line.contains(" 200 ")
        };
        if ready {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut http_runs = Vec::new();
    for &w in &workers {
        let conns: Arc<Vec<std::sync::Mutex<Conn>>> = Arc::new(
            (0..w)
                .map(|_| std::sync::Mutex::new(Conn::open(addr)))
                .collect(),
        );
        let bodies = bodies.clone();
        let one = Arc::new(move |worker: usize, i: usize| {
            let body = &bodies[(worker * 7919 + i) % bodies.len()];
            let status = conns[worker]
                .lock()
                .expect("conn")
                .post("/collections/sealed/points/search", body);
            assert_eq!(status, 200);
        });
        http_runs.push(drive(w, secs, one));
    }
    let _ = stop_tx.send(());
    server.join().expect("server thread");

    println!(
        "\nsearch, 100,000 x 128-d sealed points with HNSW (m 16), top 10, ef 64, {secs} s per row"
    );
    println!(
        "{:>7} | {:>12} {:>9} {:>9} | {:>12} {:>9} {:>9} | {:>11}",
        "workers", "library QPS", "p50", "p99", "HTTP QPS", "p50", "p99", "HTTP/library"
    );
    for ((w, l), h) in workers.iter().zip(&lib_runs).zip(&http_runs) {
        println!(
            "{w:>7} | {:>12.0} {:>9.2?} {:>9.2?} | {:>12.0} {:>9.2?} {:>9.2?} | {:>10.2}x",
            l.qps,
            l.p50,
            l.p99,
            h.qps,
            h.p50,
            h.p99,
            l.qps / h.qps
        );
    }
    println!(
        "(HTTP/library: library QPS divided by HTTP QPS; client and server share the machine's cores)"
    );
}
