//! Crash recovery with a real process: a child writes in fsync mode and reports each
//! acknowledged write on stdout; the parent kills it with SIGKILL at a random moment (while the
//! background optimizer seals and merges), reopens the folder and checks that every
//! acknowledged write is there and the collection is consistent. Several rounds run in the same
//! folder, so recovery also recovers from earlier recoveries.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use deftech_vec::{
    CollectionConfig, Database, Error, FsyncPolicy, Metric, OptimizerConfig, Payload, Point,
    PointId, ScrollRequest, SearchRequest, WalConfig,
};
use serde_json::{Value, json};

use crate::common::Rng;

const DIR_ENV: &str = "DEFTECH_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "DEFTECH_CRASH_CHILD_ROUND";
const DIM: usize = 8;
const BATCH: u64 = 10;

fn config() -> CollectionConfig {
    CollectionConfig::new(DIM, Metric::Dot)
        .fsync(FsyncPolicy::Always)
        .wal(WalConfig::default().segment_bytes(64 << 10))
        .optimizer(
            OptimizerConfig::default()
                .seal_threshold(150)
                .max_segments(3)
                .vacuum(0.2, 10),
        )
}

fn vector(id: u64) -> Vec<f32> {
    let mut r = Rng::new(id + 1);
    r.vector(DIM)
}

/// The child's workload; a no-op unless the parent started this process.
#[test]
fn child_process_workload() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let db = Database::open(&dir).unwrap();
    let c = match db.collection("crash") {
        Ok(c) => c,
        Err(_) => db.create_collection("crash", config()).unwrap(),
    };
    let mut out = std::io::stdout().lock();
    for batch in 0u64.. {
        let first = round * 1_000_000 + batch * BATCH;
        c.upsert((first..first + BATCH).map(|id| {
            Point::new(id, vector(id)).with_payload(json!({"round": round, "batch": batch}))
        }))
        .unwrap();
        writeln!(out, "ACK upsert {first}").unwrap();
        out.flush().unwrap();
        if batch % 7 == 3 {
            let victim = first - 3 * BATCH;
            c.delete([PointId::Num(victim)]).unwrap();
            writeln!(out, "ACK delete {victim}").unwrap();
            out.flush().unwrap();
        }
        if batch % 5 == 4 {
            let target = first - BATCH;
            let mut p = Payload::new();
            p.insert("edited".into(), json!(batch));
            c.set_payload(
                (target..target + BATCH)
                    .map(PointId::Num)
                    .collect::<Vec<_>>(),
                p,
                None,
            )
            .unwrap();
            writeln!(out, "ACK edit {target} {batch}").unwrap();
            out.flush().unwrap();
        }
    }
}

#[derive(Debug, Clone)]
enum Acked {
    Upsert(u64),
    Delete(u64),
    Edit(u64, u64),
}

fn parse(line: &str) -> Option<Acked> {
    // libtest may print its own text before the first line of the child's output.
    let mut it = line[line.find("ACK ")? + 4..].split(' ');
    let kind = it.next()?;
    let a: u64 = it.next()?.parse().ok()?;
    Some(match kind {
        "upsert" => Acked::Upsert(a),
        "delete" => Acked::Delete(a),
        "edit" => Acked::Edit(a, it.next()?.parse().ok()?),
        _ => return None,
    })
}

fn apply(expected: &mut BTreeMap<u64, Payload>, op: &Acked, round: u64) {
    match *op {
        Acked::Upsert(first) => {
            let batch = (first - round * 1_000_000) / BATCH;
            for id in first..first + BATCH {
                expected.insert(
                    id,
                    json!({"round": round, "batch": batch})
                        .as_object()
                        .unwrap()
                        .clone(),
                );
            }
        }
        Acked::Delete(id) => {
            expected.remove(&id);
        }
        Acked::Edit(first, batch) => {
            for id in first..first + BATCH {
                if let Some(p) = expected.get_mut(&id) {
                    p.insert("edited".into(), json!(batch));
                }
            }
        }
    }
}

/// The ids the write in flight at the kill may have touched: after the last acknowledged
/// upsert (batch starting at `f`) the child may be deleting `f - 30`, editing `f - 10..f`, or
/// upserting `f + 10..f + 20`.
fn in_flight_ids(acked: &[Acked]) -> Vec<u64> {
    let f = acked
        .iter()
        .rev()
        .find_map(|op| match op {
            Acked::Upsert(f) => Some(*f),
            _ => None,
        })
        .expect("at least one upsert was acknowledged");
    let mut ids: Vec<u64> = (f + BATCH..f + 2 * BATCH).collect();
    ids.extend(f.saturating_sub(BATCH)..f);
    if f >= 3 * BATCH {
        ids.push(f - 3 * BATCH);
    }
    ids
}

#[test]
fn killed_writer_loses_no_acknowledged_write() {
    if std::env::var(DIR_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new(42);
    let mut expected: BTreeMap<u64, Payload> = BTreeMap::new();
    let mut total_acks = 0;
    for round in 0..5u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::child_process_workload",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(op) = parse(&line) {
                    let _ = tx.send(op);
                }
            }
        });
        // Let it write for a while (at least until the first acknowledgement), then kill it.
        let mut acked: Vec<Acked> = vec![
            rx.recv_timeout(Duration::from_secs(60))
                .expect("child acknowledged nothing"),
        ];
        let kill_at = Instant::now() + Duration::from_millis(200 + rng.below(1500));
        let mut checked_lock = false;
        while Instant::now() < kill_at {
            if let Ok(op) = rx.recv_timeout(Duration::from_millis(10)) {
                acked.push(op);
            }
            if !checked_lock {
                // The folder is owned by the child: this process must be refused.
                let err = Database::open(dir.path()).unwrap_err();
                assert!(matches!(err, Error::InUse { .. }), "{err}");
                checked_lock = true;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(rx.try_iter());
        total_acks += acked.len();
        for op in &acked {
            apply(&mut expected, op, round);
        }

        let db = Database::open(dir.path()).unwrap();
        let c = db.collection("crash").unwrap();
        c.verify().unwrap();
        let unsure = in_flight_ids(&acked);
        for (id, payload) in &expected {
            let got = c.get(&[PointId::Num(*id)], true, true).unwrap();
            if unsure.contains(id) {
                continue;
            }
            assert_eq!(
                got.len(),
                1,
                "round {round}: acknowledged point {id} is missing"
            );
            assert_eq!(
                got[0].payload.as_ref().unwrap(),
                payload,
                "round {round}: point {id}"
            );
            assert_eq!(got[0].vector.as_ref().unwrap(), &vector(*id));
        }
        // Consistency: count, a full scroll and an exact search agree; nothing unexpected.
        let mut all = Vec::new();
        let mut offset = None;
        loop {
            let mut req = ScrollRequest::new(500);
            req.offset = offset;
            let page = c.scroll(&req).unwrap();
            all.extend(page.points);
            match page.next_page_offset {
                Some(o) => offset = Some(o),
                None => break,
            }
        }
        assert_eq!(all.len() as u64, c.count(None).unwrap());
        let hits = c
            .search(&SearchRequest::new(vector(7), all.len().max(1)))
            .unwrap();
        assert_eq!(hits.len(), all.len());
        for r in &all {
            let PointId::Num(id) = r.id else {
                panic!("unexpected id {}", r.id)
            };
            if !unsure.contains(&id) {
                assert!(
                    expected.contains_key(&id),
                    "round {round}: point {id} was deleted but came back"
                );
            }
            let p = r.payload.as_ref().unwrap();
            assert_eq!(p["round"], json!(id / 1_000_000));
            assert_eq!(p["batch"], json!((id % 1_000_000) / BATCH));
        }
        // Adopt the outcome of the write that may have been in flight.
        for id in unsure {
            match all.iter().find(|r| r.id == PointId::Num(id)) {
                Some(r) => {
                    expected.insert(id, r.payload.clone().unwrap());
                }
                None => {
                    expected.remove(&id);
                }
            }
        }
        assert!(
            all.iter()
                .all(|r| r.payload.as_ref().unwrap().get("round") != Some(&Value::Null)),
            "payloads intact"
        );
    }
    assert!(
        total_acks > 20,
        "the child made too little progress: {total_acks} acknowledgements"
    );
}
