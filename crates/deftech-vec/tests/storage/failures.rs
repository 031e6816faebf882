//! Failures: a full disk, failing fsyncs, damaged files. Errors are returned, stored data stays
//! readable and consistent, and writes resume once the fault is gone.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deftech_vec::{
    Collection, Database, Directory, Error, MemoryDirectory, Metric, Point, PointId, SearchRequest,
};
use serde_json::json;

use crate::common::{Rng, mem_db, quiet_config, reopen};

fn batch(first: u64, n: u64, rng: &mut Rng) -> Vec<Point> {
    (first..first + n)
        .map(|id| {
            Point::new(id, rng.vector(16)).with_payload(json!({"id": id, "pad": "x".repeat(200)}))
        })
        .collect()
}

fn ids_of(c: &Collection) -> BTreeSet<u64> {
    let n = c.count(None).unwrap() as usize;
    let hits = c
        .search(&SearchRequest::new(vec![0.0; 16], n.max(1)))
        .unwrap();
    hits.iter()
        .map(|h| match h.id {
            PointId::Num(n) => n,
            other => panic!("unexpected id {other}"),
        })
        .collect()
}

#[test]
fn full_disk_fails_the_write_and_changes_nothing() {
    let (dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(16, Metric::Dot))
        .unwrap();
    let mut rng = Rng::new(1);
    c.upsert(batch(0, 50, &mut rng)).unwrap();
    dir.set_capacity(Some(dir.used_bytes() + 3000));
    let err = c.upsert(batch(100, 50, &mut rng)).unwrap_err();
    assert!(err.is_storage_full(), "{err}");
    assert!(
        err.to_string().contains(".wal"),
        "the error names the WAL file: {err}"
    );
    // Reads keep working and see nothing of the failed batch.
    assert_eq!(ids_of(&c), (0..50).collect());
    // Space returns: writes resume.
    dir.set_capacity(None);
    c.upsert(batch(100, 50, &mut rng)).unwrap();
    drop((c, db));
    let db = reopen(&dir.crash_copy());
    let c = db.collection("c").unwrap();
    assert_eq!(ids_of(&c), (0..50).chain(100..150).collect());
}

#[test]
fn full_disk_during_sealing_keeps_serving_and_retries() {
    let (dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(16, Metric::Dot))
        .unwrap();
    let mut rng = Rng::new(2);
    c.upsert(batch(0, 200, &mut rng)).unwrap();
    dir.set_capacity(Some(dir.used_bytes() + 10_000));
    let err = c.optimize().unwrap_err();
    assert!(err.is_storage_full(), "{err}");
    assert_eq!(ids_of(&c), (0..200).collect());
    // The failed job left no partial segment behind, so the space is free again.
    dir.set_capacity(Some(dir.used_bytes() + 3_000));
    c.delete([PointId::Num(0)]).unwrap();
    dir.set_capacity(None);
    c.optimize().unwrap();
    assert_eq!(c.info().sealed_points, 199);
    drop((c, db));
    let db = reopen(&dir.crash_copy());
    assert_eq!(ids_of(&db.collection("c").unwrap()), (1..200).collect());
}

#[test]
fn failed_fsync_rolls_back_every_write_not_yet_durable() {
    let (dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(16, Metric::Dot))
        .unwrap();
    let acked = Arc::new(parking_lot::Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(t);
                let mut errors = 0;
                let mut attempts = 0;
                for i in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    attempts += 1;
                    let id = t * 1_000_000_000 + i;
                    match c.upsert([Point::new(id, rng.vector(16))]) {
                        Ok(_) => {
                            acked.lock().insert(id);
                        }
                        Err(e) => {
                            assert!(!e.to_string().is_empty());
                            errors += 1;
                        }
                    }
                }
                (attempts, errors)
            })
        })
        .collect();
    // Make syncs fail several times while the writes go on (each window rolls back whatever
    // was not durable; writes acknowledged before a window must stay).
    for _ in 0..8 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        dir.set_fail_syncs(true);
        std::thread::sleep(std::time::Duration::from_millis(5));
        dir.set_fail_syncs(false);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop.store(true, Ordering::SeqCst);
    let (attempts, errors) = writers
        .into_iter()
        .map(|w| w.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert!(errors > 0, "no write failed: the fault was never hit");
    let acked = acked.lock().clone();
    // What readers see now is exactly what was acknowledged...
    let visible = ids_of(&c);
    assert!(
        visible == acked,
        "visible but not acknowledged: {:?}; acknowledged but not visible: {:?}",
        visible.difference(&acked).take(10).collect::<Vec<_>>(),
        acked.difference(&visible).take(10).collect::<Vec<_>>()
    );
    assert_eq!(c.count(None).unwrap(), acked.len() as u64);
    assert_eq!(acked.len() + errors, attempts);
    assert!(
        acked.iter().any(|&id| id % 1_000_000_000 > 0),
        "writes after the fault succeeded"
    );
    // ... and exactly that survives a power cut.
    let db2 = reopen(&dir.crash_copy());
    assert_eq!(ids_of(&db2.collection("c").unwrap()), acked);
    drop(db2);
    // Writes work again.
    c.upsert([Point::new(9999, vec![0.5; 16])]).unwrap();
}

fn wal_file(dir: &MemoryDirectory) -> std::path::PathBuf {
    let wal = Path::new("collections/c/wal");
    wal.join(&dir.list(wal).unwrap().last().unwrap().name)
}

fn rewrite(dir: &MemoryDirectory, path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = dir.read(path).unwrap().to_vec();
    f(&mut bytes);
    let mut w = dir.create(path).unwrap();
    w.write_all(&bytes).unwrap();
    w.sync().unwrap();
}

#[test]
fn damaged_wal_in_the_middle_is_an_error_naming_file_and_offset() {
    let (dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(16, Metric::Dot))
        .unwrap();
    let mut rng = Rng::new(3);
    for b in 0..5 {
        c.upsert(batch(b * 10, 10, &mut rng)).unwrap();
    }
    drop((c, db));
    let path = wal_file(&dir);
    rewrite(&dir, &path, |b| b[200] ^= 0x55);
    let err = Database::open_in(Arc::new(dir.clone())).unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(path.file_name().unwrap().to_str().unwrap()) && msg.contains("offset 64"),
        "{msg}"
    );
}

#[test]
fn torn_wal_tail_is_cut_and_earlier_writes_kept() {
    let (dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(16, Metric::Dot))
        .unwrap();
    let mut rng = Rng::new(4);
    for b in 0..5 {
        c.upsert(batch(b * 10, 10, &mut rng)).unwrap();
    }
    drop((c, db));
    let path = wal_file(&dir);
    rewrite(&dir, &path, |b| b.truncate(b.len() - 100));
    let db = reopen(&dir);
    let c = db.collection("c").unwrap();
    assert_eq!(ids_of(&c), (0..40).collect());
    // The log continues cleanly after the cut.
    c.upsert(batch(40, 10, &mut rng)).unwrap();
    drop((c, db));
    assert_eq!(
        ids_of(&reopen(&dir).collection("c").unwrap()),
        (0..50).collect()
    );
}

#[test]
fn damaged_segment_files_are_reported_by_name() {
    let (dir, db) = mem_db();
    let c = db
        .create_collection("c", quiet_config(16, Metric::Dot))
        .unwrap();
    let mut rng = Rng::new(5);
    c.upsert(batch(0, 30, &mut rng)).unwrap();
    c.optimize().unwrap();
    let seg = c
        .info()
        .segments
        .iter()
        .find(|s| s.kind == "sealed")
        .unwrap()
        .id;
    drop((c, db));
    let folder = Path::new("collections/c/segments").join(format!("{seg:016x}"));

    // A flipped bit in a vector: the header is fine, the body checksum is not.
    let vectors = folder.join("vectors.bin");
    let original = dir.read(&vectors).unwrap().to_vec();
    rewrite(&dir, &vectors, |b| b[100] ^= 1);
    let db = reopen(&dir);
    let err = db.collection("c").unwrap().verify().unwrap_err();
    assert!(
        err.to_string().contains("vectors.bin") && err.to_string().contains("checksum"),
        "{err}"
    );
    drop(db);

    // A damaged header: the collection does not open, and the error names the file.
    rewrite(&dir, &vectors, |b| {
        *b = original.clone();
        b[40] ^= 1;
    });
    let err = Database::open_in(Arc::new(dir.clone())).unwrap_err();
    assert!(err.to_string().contains("vectors.bin"), "{err}");

    // A truncated file likewise.
    rewrite(&dir, &vectors, |b| {
        *b = original.clone();
        b.truncate(b.len() - 4);
    });
    let err = Database::open_in(Arc::new(dir.clone())).unwrap_err();
    assert!(err.to_string().contains("vectors.bin"), "{err}");

    rewrite(&dir, &vectors, |b| *b = original.clone());
    assert_eq!(
        ids_of(&reopen(&dir).collection("c").unwrap()),
        (0..30).collect()
    );
}
