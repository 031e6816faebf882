//! A real `deftech serve` process: SIGTERM while writes are in flight stops it cleanly (exit 0)
//! and loses no acknowledged write.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::request;

pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Starts the binary and waits until it is ready.
pub fn spawn_server(data: &std::path::Path, addr: SocketAddr, extra: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deftech"))
        .arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg(addr.to_string())
        .args(extra)
        .env("DEFTECH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start deftech");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = request(addr, "GET", "/readyz", b"", &[])
            && r.status == 200
        {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("deftech exited early: {status}");
        }
        assert!(Instant::now() < deadline, "deftech never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_finishes_requests_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addr = free_addr();
    let mut child = spawn_server(&data, addr, &[]);
    let r = request(
        addr,
        "PUT",
        "/collections/c",
        serde_json::to_vec(&json!({"vectors": {"size": 4, "distance": "Dot"}}))
            .unwrap()
            .as_slice(),
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u64)
        .map(|t| {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let ids: Vec<u64> = (0..20).map(|k| t * 1_000_000 + i * 20 + k).collect();
                    let points: Vec<_> = ids
                        .iter()
                        .map(|&id| json!({"id": id, "vector": [1, 2, 3, 4]}))
                        .collect();
                    let body = serde_json::to_vec(&json!({"points": points})).unwrap();
                    match request(addr, "PUT", "/collections/c/points?wait=true", &body, &[]) {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().extend(ids),
                        _ => {}
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    assert!(exit.success(), "deftech exited with {exit}");
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "too few writes before the signal: {}",
        acked.len()
    );
    let db = deftech_vec::Database::open(&data).unwrap();
    let c = db.collection("c").unwrap();
    let ids: Vec<deftech_vec::PointId> = acked.iter().map(|&i| i.into()).collect();
    let found = c.get(&ids, false, false).unwrap();
    assert_eq!(
        found.len(),
        acked.len(),
        "acknowledged writes lost in shutdown"
    );
}
