//! Snapshot and restore: time and bytes for a collection of sealed points (HNSW graph and a
//! payload index included) to the local store and to an S3-protocol server on loopback
//! (s3s-fs, in-process, through the real aws-sdk-s3 client): a first snapshot, a second one
//! after 1,000 writes (WAL only), a third after `optimize` sealed them into a new segment,
//! and a full restore from each store.
//!
//! `cargo run --release -p deftech-benches --bin snapshot [-- 1000000 128]`
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use deftech_benches::sealed_collection;
use deftech_vec::{
    Database, LocalStore, ObjectStore, Point, RestorePoint, S3Config, S3Store, SnapshotInfo,
};
use serde_json::json;

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn row(store: &str, step: &str, secs: f64, info: &SnapshotInfo) {
    println!(
        "{store:<6} | {step:<28} | {secs:>8.2} | {:>5} | {:>10.1} | {:>9} | {:>11.1} | {:>8.0}",
        info.files,
        mib(info.bytes),
        info.uploaded_files,
        mib(info.uploaded_bytes),
        mib(info.bytes) / secs
    );
}

/// An s3s-fs server on 127.0.0.1 with one bucket; returns its URL and keeps the runtime.
fn s3_server(root: &Path) -> (String, tokio::runtime::Runtime) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;
    std::fs::create_dir_all(root.join("bench")).expect("bucket folder");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut b = s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).expect("s3s-fs"));
    b.set_auth(s3s::auth::SimpleAuth::from_single(
        "bench-key",
        "bench-secret",
    ));
    let service = b.build();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    (format!("http://{addr}"), rt)
}

fn run(label: &str, store: &dyn ObjectStore, db_dir: &Path, restore_dir: &Path, dim: usize) {
    let db = Database::open(db_dir).expect("open copy");
    let c = db.collection("sealed").expect("collection");
    let t = Instant::now();
    let first = c.snapshot(store).expect("first snapshot");
    row(label, "first snapshot", t.elapsed().as_secs_f64(), &first);

    let n = c.count(None).expect("count");
    c.upsert((0..1000u64).map(|i| {
        Point::new(10_000_000 + i, vec![0.5; dim]).with_payload(json!({"group": 1, "title": "new"}))
    }))
    .expect("writes");
    let t = Instant::now();
    let second = c.snapshot(store).expect("second snapshot");
    row(
        label,
        "+1000 points (in the WAL)",
        t.elapsed().as_secs_f64(),
        &second,
    );

    // Seals the new points into a second, small segment (too small to be worth a merge).
    c.optimize().expect("optimize");
    let t = Instant::now();
    let third = c.snapshot(store).expect("third snapshot");
    row(
        label,
        "same, sealed (new segment)",
        t.elapsed().as_secs_f64(),
        &third,
    );
    db.close().expect("close");

    let _ = std::fs::remove_dir_all(restore_dir);
    let rdb = Database::open(restore_dir).expect("restore db");
    let t = Instant::now();
    let r = rdb
        .restore(store, "sealed", &RestorePoint::Latest, "sealed")
        .expect("restore");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(r.count(None).expect("count"), n + 1000);
    println!(
        "{label:<6} | {:<28} | {secs:>8.2} | {:>5} | {:>10.1} | {:>9} | {:>11} | {:>8.0}",
        "restore (latest, verified)",
        third.files,
        mib(third.bytes),
        "-",
        "-",
        mib(third.bytes) / secs
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.first().map_or(1_000_000, |s| s.parse().expect("n"));
    let dim: usize = args.get(1).map_or(128, |s| s.parse().expect("dim"));
    let t = Instant::now();
    let cached = sealed_collection(n, dim).expect("data set");
    println!("data set {} ready in {:.1?}", cached.display(), t.elapsed());
    let work = tempfile::Builder::new()
        .prefix("snapshot-bench")
        .tempdir_in(cached.parent().expect("parent"))
        .expect("work dir");

    println!(
        "\n{n} x {dim} sealed points (HNSW m 16, integer payload index), snapshot and restore"
    );
    println!(
        "store  | step                         |   time s | files |  total MiB | uploaded | uploaded MiB |    MiB/s"
    );
    let local_db = work.path().join("local-db");
    copy_dir(&cached, &local_db).expect("copy");
    let local = LocalStore::new(work.path().join("local-store")).expect("local store");
    run(
        "local",
        &local,
        &local_db,
        &work.path().join("local-restore"),
        dim,
    );

    let s3_db = work.path().join("s3-db");
    copy_dir(&cached, &s3_db).expect("copy");
    let (url, _rt) = s3_server(&work.path().join("s3-root"));
    let s3: Arc<dyn ObjectStore> = Arc::new(
        S3Store::new(
            S3Config::new("bench")
                .region("us-east-1")
                .endpoint(url, true)
                .credentials("bench-key", "bench-secret"),
        )
        .expect("S3 store"),
    );
    run("s3", &*s3, &s3_db, &work.path().join("s3-restore"), dim);
    println!(
        "(MiB/s: snapshot size over time; the first snapshot hashes and copies every file, later ones \
         hash only the WAL and new segments; restores verify every SHA-256 and open the collection)"
    );
}
