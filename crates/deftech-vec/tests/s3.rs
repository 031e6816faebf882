//! The S3 object store against a real S3-protocol server on loopback (s3s-fs, in-process,
//! verifying SigV4 signatures), driven by the real aws-sdk-s3 client: objects, multipart
//! uploads, listing with prefixes, credentials checked, and snapshots, incremental snapshots
//! and point-in-time restore through it.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use deftech_vec::{
    CollectionConfig, Database, Metric, ObjectStore, OptimizerConfig, Point, RestorePoint,
    S3Config, S3Store, ScrollRequest, SearchRequest, snapshots,
};
use serde_json::json;

const AK: &str = "deftech-test-key";
const SK: &str = "deftech-test-secret";

/// An s3s-fs server on 127.0.0.1 serving `root` (one folder per bucket), stopped on drop.
struct S3Server {
    addr: SocketAddr,
    root: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

fn start_server(buckets: &[&str]) -> S3Server {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;
    use s3s::auth::SimpleAuth;
    use s3s::service::S3ServiceBuilder;

    let root = tempfile::tempdir().unwrap();
    for b in buckets {
        std::fs::create_dir(root.path().join(b)).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(SimpleAuth::from_single(AK, SK));
    let service = b.build();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
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
    S3Server {
        addr,
        root,
        _rt: rt,
    }
}

fn store(server: &S3Server, bucket: &str, prefix: &str) -> S3Store {
    S3Store::new(
        S3Config::new(bucket)
            .prefix(prefix)
            .region("us-east-1")
            .endpoint(format!("http://{}", server.addr), true)
            .credentials(AK, SK)
            .part_size(5 << 20),
    )
    .unwrap()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect()
}

#[test]
fn objects_round_trip_with_multipart_and_prefixes() {
    let server = start_server(&["snap"]);
    let s = store(&server, "snap", "backups/prod");
    assert_eq!(s.location(), "s3://snap/backups/prod");

    s.put("a/one", &mut &b"hello"[..], 5).unwrap();
    let big = pattern(12 << 20 | 12_345, 7); // three parts: 5 + 5 + 2 MiB and change
    s.put("a/big", &mut &big[..], big.len() as u64).unwrap();
    s.put("b/two", &mut &b"xy"[..], 2).unwrap();

    let mut out = Vec::new();
    s.get("a/big").unwrap().read_to_end(&mut out).unwrap();
    assert!(
        out == big,
        "multipart object differs ({} vs {} bytes)",
        out.len(),
        big.len()
    );
    assert_eq!(s.head("a/big").unwrap(), Some(big.len() as u64));
    assert_eq!(s.head("a/none").unwrap(), None);
    let keys: Vec<String> = s.list("a/").unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(keys, vec!["a/big", "a/one"]);
    assert_eq!(s.list("").unwrap().len(), 3);
    // Under the prefix on the server's disk: the bucket folder holds backups/prod/....
    assert!(server.root.path().join("snap/backups/prod/a/one").exists());

    // A short reader fails the upload and leaves nothing (nor a dangling multipart upload).
    assert!(s.put("short", &mut &big[..1000], 2000).is_err());
    assert!(
        s.put("short-big", &mut &big[..6 << 20], big.len() as u64)
            .is_err()
    );
    assert_eq!(s.head("short").unwrap(), None);
    assert_eq!(s.head("short-big").unwrap(), None);

    s.delete("a/one").unwrap();
    s.delete("a/one").unwrap();
    assert_eq!(s.list("a/").unwrap().len(), 1);
    for bad in ["", "/abs", "a/../b", "a//b"] {
        assert!(s.put(bad, &mut &b""[..], 0).is_err(), "{bad:?}");
    }
}

#[test]
fn wrong_credentials_and_missing_buckets_are_clear_errors() {
    let server = start_server(&["snap"]);
    let bad = S3Store::new(
        S3Config::new("snap")
            .region("us-east-1")
            .endpoint(format!("http://{}", server.addr), true)
            .credentials(AK, "wrong-secret"),
    );
    let err = bad.unwrap_err().to_string();
    assert!(err.contains("s3://snap"), "{err}");
    let missing = S3Store::new(
        S3Config::new("nope")
            .region("us-east-1")
            .endpoint(format!("http://{}", server.addr), true)
            .credentials(AK, SK),
    );
    assert!(missing.unwrap_err().to_string().contains("s3://nope"));
}

fn dump(c: &deftech_vec::Collection) -> serde_json::Value {
    let r = c
        .scroll(
            &ScrollRequest::new(100_000)
                .with_payload(true)
                .with_vector(true),
        )
        .unwrap();
    serde_json::to_value(&r.points).unwrap()
}

#[test]
fn snapshots_incremental_and_point_in_time_through_s3() {
    let server = start_server(&["snap"]);
    let s: Arc<dyn ObjectStore> = Arc::new(store(&server, "snap", "cluster-a"));
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let dim = 128;
    let c = db
        .create_collection(
            "docs",
            CollectionConfig::new(dim, Metric::Dot)
                .optimizer(OptimizerConfig::default().background(false)),
        )
        .unwrap();
    let vector = |i: u64| {
        (0..dim)
            .map(|d| ((i * 31 + d as u64) % 97) as f32 / 97.0)
            .collect::<Vec<f32>>()
    };
    // 12,000 x 128 f32 = 6 MB of vectors: a multipart upload with 5 MiB parts.
    for k in 0..6u64 {
        c.upsert(
            (k * 2000..(k + 1) * 2000)
                .map(|i| Point::new(i, vector(i)).with_payload(json!({"k": k}))),
        )
        .unwrap();
    }
    c.optimize().unwrap();
    c.archive_wal(&*s).unwrap();
    let first = c.snapshot(&*s).unwrap();
    assert_eq!(first.uploaded_bytes, first.bytes);
    assert!(first.bytes > 6 << 20);

    let mid = c
        .upsert((20_000..20_010).map(|i| Point::new(i, vector(i))))
        .unwrap();
    let second = c.snapshot(&*s).unwrap();
    assert!(
        second.uploaded_bytes * 100 < first.uploaded_bytes,
        "{first:?} then {second:?}"
    );
    c.upsert((30_000..30_010).map(|i| Point::new(i, vector(i))))
        .unwrap();
    c.archive_wal(&*s).unwrap();

    let dir2 = tempfile::tempdir().unwrap();
    let db2 = Database::open(dir2.path()).unwrap();
    let latest = db2
        .restore(&*s, "docs", &RestorePoint::Latest, "latest")
        .unwrap();
    assert_eq!(latest.count(None).unwrap(), 12_010);
    let at_mid = db2
        .restore(&*s, "docs", &RestorePoint::Lsn(mid), "mid")
        .unwrap();
    assert_eq!(at_mid.count(None).unwrap(), 12_010);
    let end = db2
        .restore(&*s, "docs", &RestorePoint::Lsn(c.lsn()), "end")
        .unwrap();
    assert_eq!(dump(&end), dump(&c));
    let q = SearchRequest::new(vector(5), 5).with_payload(true);
    assert_eq!(
        serde_json::to_value(end.search(&q).unwrap()).unwrap(),
        serde_json::to_value(c.search(&q).unwrap()).unwrap()
    );
    assert_eq!(snapshots::list(&*s, "docs").unwrap().len(), 2);
    let pruned = snapshots::prune(&*s, "docs", 1).unwrap();
    assert_eq!(pruned.snapshots, 1);
    db2.restore(&*s, "docs", &RestorePoint::Latest, "after-prune")
        .unwrap()
        .verify()
        .unwrap();
}

#[test]
fn the_last_handle_may_drop_inside_an_async_context() {
    // A server drops its store while its own runtime shuts down: that must not panic.
    let server = start_server(&["snap"]);
    let s = store(&server, "snap", "");
    s.put("k", &mut &b"v"[..], 1).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move { drop(s) });
}
