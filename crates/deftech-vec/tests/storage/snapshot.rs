//! Snapshots: round trip through a store and through a tar file, incremental uploads,
//! point-in-time restore from archived WAL, damaged or hostile snapshots rejected with the
//! existing collection untouched, a store failing mid-snapshot, retention, and a snapshot taken
//! while writes continue.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deftech_vec::{
    Collection, Database, Error, LocalStore, Metric, ObjectMeta, ObjectStore, Point, RestorePoint,
    ScrollRequest, SearchRequest, snapshots,
};
use serde_json::{Value, json};

use crate::common::{Rng, mem_db, quiet_config};

const DIM: usize = 16;

fn fill(c: &Collection, rng: &mut Rng, ids: std::ops::Range<u64>) -> u64 {
    let points: Vec<Point> = ids
        .map(|i| {
            Point::new(i, rng.vector(DIM))
                .with_payload(json!({"n": i, "tag": format!("t{}", i % 7)}))
        })
        .collect();
    c.upsert(points).unwrap()
}

/// Every point, with payload and vector, as JSON (for whole-collection comparisons).
fn dump(c: &Collection) -> Value {
    let r = c
        .scroll(
            &ScrollRequest::new(100_000)
                .with_payload(true)
                .with_vector(true),
        )
        .unwrap();
    serde_json::to_value(&r.points).unwrap()
}

fn searches(c: &Collection) -> Value {
    let mut rng = Rng::new(99);
    let out: Vec<Value> = (0..20)
        .map(|_| {
            let r = c
                .search(&SearchRequest::new(rng.vector(DIM), 10).with_payload(true))
                .unwrap();
            serde_json::to_value(r).unwrap()
        })
        .collect();
    Value::Array(out)
}

/// A collection with sealed, indexed segments, tombstones, and a WAL tail.
fn populated(db: &Database, name: &str) -> Collection {
    let c = db
        .create_collection(name, quiet_config(DIM, Metric::Cosine))
        .unwrap();
    let mut rng = Rng::new(7);
    fill(&c, &mut rng, 0..1500);
    c.optimize().unwrap();
    fill(&c, &mut rng, 1500..2500);
    c.delete((0..100).map(Into::into)).unwrap();
    c.optimize().unwrap();
    fill(&c, &mut rng, 2500..2600); // WAL tail only
    c.delete((2500..2510).map(Into::into)).unwrap();
    c
}

fn store() -> (tempfile::TempDir, LocalStore) {
    let d = tempfile::tempdir().unwrap();
    let s = LocalStore::new(d.path()).unwrap();
    (d, s)
}

#[test]
fn snapshot_restores_the_same_collection() {
    let (_d, store) = store();
    let (_dir, db) = mem_db();
    let c = populated(&db, "docs");
    let info = c.snapshot(&store).unwrap();
    assert_eq!(info.lsn, c.lsn());
    assert!(
        info.uploaded_files > 0 && info.uploaded_bytes == info.bytes,
        "{info:?}"
    );

    // Restored in another database, under another name.
    let (_dir2, db2) = mem_db();
    let r = db2
        .restore(&store, "docs", &RestorePoint::Latest, "copy")
        .unwrap();
    assert_eq!(r.count(None).unwrap(), 2490);
    assert_eq!(dump(&r), dump(&c));
    assert_eq!(searches(&r), searches(&c));
    assert!(r.lsn() == c.lsn());
    // And it keeps working: writes continue after the restored LSN.
    let lsn = r.upsert([Point::new(9_999u64, vec![1.0; DIM])]).unwrap();
    assert_eq!(lsn, c.lsn() + 1);

    let listed = snapshots::list(&store, "docs").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, info.id);
    assert_eq!(listed[0].bytes, info.bytes);
}

#[test]
fn second_snapshot_uploads_only_what_changed() {
    let (_d, store) = store();
    let (_dir, db) = mem_db();
    let c = populated(&db, "docs");
    let first = c.snapshot(&store).unwrap();
    let mut rng = Rng::new(3);
    fill(&c, &mut rng, 5000..5010);
    let second = c.snapshot(&store).unwrap();
    // Only the WAL file changed: the sealed segments are in the store already.
    assert!(second.uploaded_files <= 2, "{second:?}");
    assert!(
        second.uploaded_bytes * 10 < first.uploaded_bytes,
        "{first:?} then {second:?}"
    );
    assert_eq!(second.files, first.files);

    // Both restore, each to its own state.
    let (_dir2, db2) = mem_db();
    let a = db2
        .restore(
            &store,
            "docs",
            &RestorePoint::Snapshot(first.id.clone()),
            "a",
        )
        .unwrap();
    let b = db2
        .restore(
            &store,
            "docs",
            &RestorePoint::Snapshot(second.id.clone()),
            "b",
        )
        .unwrap();
    assert_eq!(a.count(None).unwrap() + 10, b.count(None).unwrap());
    assert_eq!(dump(&b), dump(&c));

    // After a merge, the next snapshot uploads the merged segment.
    c.optimize().unwrap();
    let third = c.snapshot(&store).unwrap();
    assert!(third.uploaded_files >= 1, "{third:?}");
}

#[test]
fn restore_to_an_lsn_or_a_time_replays_archived_wal() {
    let (_d, store) = store();
    let (_dir, db) = mem_db();
    let c = populated(&db, "docs");
    c.archive_wal(&store).unwrap();
    let snap = c.snapshot(&store).unwrap();
    let mut rng = Rng::new(5);
    let mut lsns = Vec::new();
    let mut times = Vec::new();
    for k in 0..6u64 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        lsns.push(fill(&c, &mut rng, 10_000 + k * 10..10_000 + k * 10 + 10));
        times.push(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        if k == 2 {
            c.optimize().unwrap(); // seals: the WAL files before are covered, archived first
        }
    }
    let report = c.archive_wal(&store).unwrap();
    assert_eq!(report.archived_lsn.max(c.lsn()), c.lsn());

    let (_dir2, db2) = mem_db();
    // Mid-way by LSN: the snapshot plus the first three batches exactly.
    let mid = db2
        .restore(&store, "docs", &RestorePoint::Lsn(lsns[2]), "mid")
        .unwrap();
    assert_eq!(mid.lsn(), lsns[2]);
    assert_eq!(mid.count(None).unwrap(), 2490 + 30);
    assert!(mid.get(&[10_029u64.into()], false, false).unwrap().len() == 1);
    assert!(
        mid.get(&[10_030u64.into()], false, false)
            .unwrap()
            .is_empty()
    );
    // By time: after the fourth batch was acknowledged, before the fifth.
    let by_time = db2
        .restore(&store, "docs", &RestorePoint::Time(times[3]), "t")
        .unwrap();
    assert_eq!(by_time.lsn(), lsns[3]);
    // To the end: everything.
    let end = db2
        .restore(&store, "docs", &RestorePoint::Lsn(c.lsn()), "end")
        .unwrap();
    assert_eq!(dump(&end), dump(&c));
    // Before the snapshot: no snapshot fits.
    assert!(
        db2.restore(&store, "docs", &RestorePoint::Lsn(snap.lsn - 1), "x")
            .is_err()
    );
    // Past the archive: an error naming how far it goes.
    let err = db2
        .restore(&store, "docs", &RestorePoint::Lsn(c.lsn() + 5), "x")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("ends at LSN {}", c.lsn())),
        "{err}"
    );
    assert!(!db2.list_collections().contains(&"x".to_string()));
}

#[test]
fn background_archiver_ships_the_wal() {
    let (_d, store) = store();
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let (_dir, db) = mem_db();
    let c = populated(&db, "docs");
    c.snapshot(&*store).unwrap();
    let archiver = c.start_wal_archiving(store.clone(), std::time::Duration::from_millis(50));
    let mut rng = Rng::new(11);
    let last = fill(&c, &mut rng, 20_000..20_050);
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(!archiver.failing());
    // No stop needed: the interval shipped the active file's prefix.
    let (_dir2, db2) = mem_db();
    let r = db2
        .restore(&*store, "docs", &RestorePoint::Lsn(last), "r")
        .unwrap();
    assert_eq!(r.count(None).unwrap(), 2490 + 50);
    // Replacing the collection (a restore in place) stops its archiver by itself.
    db.restore(&*store, "docs", &RestorePoint::Latest, "docs")
        .unwrap();
    for _ in 0..100 {
        if !archiver.is_running() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!archiver.is_running());
    archiver.stop();
}

#[test]
fn a_damaged_blob_is_refused_and_the_existing_collection_kept() {
    let (d, store) = store();
    let (_dir, db) = mem_db();
    let c = populated(&db, "docs");
    let info = c.snapshot(&store).unwrap();
    // Damage the largest blob.
    let blobs = store.list("docs/blobs/").unwrap();
    let big = blobs.iter().max_by_key(|o| o.size).unwrap();
    let path = d.path().join(&big.key);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let before = dump(&c);
    let err = db
        .restore(
            &store,
            "docs",
            &RestorePoint::Snapshot(info.id.clone()),
            "docs",
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&big.key) && msg.contains("segments/"), "{msg}");
    assert_eq!(dump(&c), before);
    assert_eq!(dump(&db.collection("docs").unwrap()), before);
    assert_eq!(db.list_collections(), vec!["docs"]);

    // Truncated: the same, with the file named.
    std::fs::write(&path, &bytes[..mid]).unwrap();
    let err = db
        .restore(&store, "docs", &RestorePoint::Latest, "docs")
        .unwrap_err();
    assert!(err.to_string().contains(&big.key), "{err}");
    assert_eq!(dump(&db.collection("docs").unwrap()), before);

    // A missing blob.
    std::fs::remove_file(&path).unwrap();
    assert!(
        db.restore(&store, "docs", &RestorePoint::Latest, "docs")
            .is_err()
    );
    assert_eq!(dump(&db.collection("docs").unwrap()), before);
}

#[test]
fn a_snapshot_manifest_naming_paths_outside_is_refused() {
    let (d, store) = store();
    let (_dir, db) = mem_db();
    let c = populated(&db, "docs");
    let info = c.snapshot(&store).unwrap();
    let path = d.path().join(format!("docs/snapshots/{}.json", info.id));
    let text = std::fs::read_to_string(&path).unwrap();
    let evil = text.replacen("\"path\": \"segments/", "\"path\": \"../../segments/", 1);
    std::fs::write(&path, evil).unwrap();
    let err = db
        .restore(&store, "docs", &RestorePoint::Latest, "other")
        .unwrap_err();
    assert!(
        err.to_string().contains("leaves the collection folder"),
        "{err}"
    );
    std::fs::write(
        &path,
        text.replace("\"format_version\": 1", "\"format_version\": 99"),
    )
    .unwrap();
    assert!(matches!(
        db.restore(&store, "docs", &RestorePoint::Latest, "other"),
        Err(Error::UnsupportedVersion { .. })
    ));
    assert_eq!(db.list_collections(), vec!["docs"]);
}

#[test]
fn tar_export_imports_and_hostile_archives_are_refused() {
    let (_dir, db) = mem_db();
    let c = populated(&db, "docs");
    let mut tar = Vec::new();
    let info = c.export_snapshot(&mut tar).unwrap();
    assert_eq!(info.lsn, c.lsn());

    let (_dir2, db2) = mem_db();
    let r = db2.import_snapshot(&mut &tar[..], "imported").unwrap();
    assert_eq!(dump(&r), dump(&c));
    assert_eq!(searches(&r), searches(&c));

    // Existing collection under the target name stays as it was on every failure below.
    let keep = db2
        .create_collection("keep", quiet_config(DIM, Metric::Cosine))
        .unwrap();
    fill(&keep, &mut Rng::new(1), 0..10);
    let before = dump(&keep);
    let check_kept = |db2: &Database| {
        assert_eq!(dump(&db2.collection("keep").unwrap()), before);
        assert_eq!(db2.list_collections(), vec!["imported", "keep"]);
    };

    // Truncated at several points.
    for cut in [100, 600, tar.len() / 3, tar.len() - 1200] {
        let err = db2.import_snapshot(&mut &tar[..cut], "keep").unwrap_err();
        assert!(!err.to_string().is_empty());
        check_kept(&db2);
    }
    // A flipped byte inside a file body.
    let mut bad = tar.clone();
    let at = tar.len() - 4000;
    bad[at] ^= 0x20;
    let err = db2.import_snapshot(&mut &bad[..], "keep").unwrap_err();
    assert!(err.to_string().contains("blobs/"), "{err}");
    check_kept(&db2);

    // Entries that try to leave the target, and links.
    for (name, kind) in [
        ("../evil", TarKind::Regular),
        ("/etc/evil", TarKind::Regular),
        ("blobs/../../evil", TarKind::Regular),
        ("blobs/link", TarKind::Symlink),
        ("blobs/hard", TarKind::Link),
    ] {
        let hostile = hostile_tar(&tar, name, kind);
        let err = db2.import_snapshot(&mut &hostile[..], "keep").unwrap_err();
        assert!(
            err.to_string().contains(name.trim_start_matches('/')),
            "{name}: {err}"
        );
        check_kept(&db2);
    }
    // Not a tar at all.
    assert!(
        db2.import_snapshot(&mut &b"hello, not a snapshot"[..], "keep")
            .is_err()
    );
    check_kept(&db2);
}

#[derive(Clone, Copy)]
enum TarKind {
    Regular,
    Symlink,
    Link,
}

/// `snapshot.json` of a real export followed by one hostile entry, written header by header
/// (the `tar` crate refuses to build some of these).
fn hostile_tar(real: &[u8], name: &str, kind: TarKind) -> Vec<u8> {
    // The first entry of the real archive is snapshot.json: header + body padded to 512.
    let size = usize::from_str_radix(
        std::str::from_utf8(&real[124..135])
            .unwrap()
            .trim_matches(char::from(0))
            .trim(),
        8,
    )
    .unwrap();
    let first = 512 + size.div_ceil(512) * 512;
    let mut out = real[..first].to_vec();
    let body = b"owned";
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    let len = if matches!(kind, TarKind::Regular) {
        body.len()
    } else {
        0
    };
    h[124..135].copy_from_slice(format!("{len:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = match kind {
        TarKind::Regular => b'0',
        TarKind::Link => b'1',
        TarKind::Symlink => b'2',
    };
    if !matches!(kind, TarKind::Regular) {
        h[157..157 + 13].copy_from_slice(b"../../outside");
    }
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
    if len > 0 {
        let mut b = body.to_vec();
        b.resize(512, 0);
        out.extend_from_slice(&b);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A store that fails every put after the first `ok` ones (a crash or outage mid-snapshot).
#[derive(Debug)]
struct FailingStore {
    inner: LocalStore,
    ok: usize,
    puts: AtomicUsize,
}

impl ObjectStore for FailingStore {
    fn put(&self, key: &str, data: &mut dyn Read, len: u64) -> deftech_vec::Result<()> {
        if self.puts.fetch_add(1, Ordering::SeqCst) >= self.ok {
            // Half an upload reaches the store's temporary area, then the connection dies.
            let mut partial = vec![0u8; (len / 2) as usize];
            let _ = data.read(&mut partial);
            return Err(Error::Io {
                path: key.into(),
                source: std::io::Error::other("connection reset"),
            });
        }
        self.inner.put(key, data, len)
    }
    fn get(&self, key: &str) -> deftech_vec::Result<Box<dyn Read + Send>> {
        self.inner.get(key)
    }
    fn head(&self, key: &str) -> deftech_vec::Result<Option<u64>> {
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> deftech_vec::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> deftech_vec::Result<()> {
        self.inner.delete(key)
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

#[test]
fn a_snapshot_cut_short_is_never_listed() {
    let (_d, local) = store();
    let (_dir, db) = mem_db();
    let c = populated(&db, "docs");
    let good = c.snapshot(&local).unwrap();
    let mut rng = Rng::new(2);
    fill(&c, &mut rng, 7000..7100);
    c.optimize().unwrap();
    for ok in 0..3 {
        let failing = FailingStore {
            inner: local.clone(),
            ok,
            puts: AtomicUsize::new(0),
        };
        assert!(c.snapshot(&failing).is_err());
        let listed = snapshots::list(&local, "docs").unwrap();
        assert_eq!(listed.len(), 1, "after {ok} good puts");
        assert_eq!(listed[0].id, good.id);
    }
    // Latest still restores the complete one; retrying succeeds.
    let (_dir2, db2) = mem_db();
    let r = db2
        .restore(&local, "docs", &RestorePoint::Latest, "r")
        .unwrap();
    assert_eq!(r.lsn(), good.lsn);
    let again = c.snapshot(&local).unwrap();
    assert_eq!(snapshots::list(&local, "docs").unwrap().len(), 2);
    assert!(again.uploaded_files < again.files);
}

#[test]
fn retention_keeps_what_the_remaining_snapshots_reference() {
    let (_d, store) = store();
    let (_dir, db) = mem_db();
    let c = populated(&db, "docs");
    let mut rng = Rng::new(4);
    let mut ids = Vec::new();
    for k in 0..4u64 {
        fill(&c, &mut rng, 30_000 + k * 100..30_100 + k * 100);
        c.optimize().unwrap();
        ids.push(c.snapshot(&store).unwrap().id);
    }
    let report = snapshots::prune(&store, "docs", 2).unwrap();
    assert_eq!(report.snapshots, 2);
    assert!(report.blobs > 0 && report.bytes > 0, "{report:?}");
    let left: Vec<String> = snapshots::list(&store, "docs")
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, ids[2..].to_vec());
    let (_dir2, db2) = mem_db();
    for (i, id) in left.iter().enumerate() {
        let r = db2
            .restore(
                &store,
                "docs",
                &RestorePoint::Snapshot(id.clone()),
                &format!("r{i}"),
            )
            .unwrap();
        r.verify().unwrap();
    }
    assert_eq!(snapshots::prune(&store, "docs", 2).unwrap().blobs, 0);
}

#[test]
fn a_snapshot_during_writes_holds_exactly_the_acknowledged_ones() {
    let (_d, store) = store();
    let (_dir, db) = mem_db();
    let c = db
        .create_collection(
            "live",
            deftech_vec::CollectionConfig::new(DIM, Metric::Dot).seal_threshold(300),
        )
        .unwrap();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(u64, u64)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(8);
            let mut id = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let lsn = c.upsert([Point::new(id, rng.vector(DIM))]).unwrap();
                acked.lock().unwrap().push((id, lsn));
                id += 1;
            }
        })
    };
    let mut infos = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(150));
        infos.push(c.snapshot(&store).unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let (_dir2, db2) = mem_db();
    for (i, info) in infos.iter().enumerate() {
        let r = db2
            .restore(
                &store,
                "live",
                &RestorePoint::Snapshot(info.id.clone()),
                &format!("r{i}"),
            )
            .unwrap();
        let expected = acked.iter().filter(|(_, l)| *l <= info.lsn).count() as u64;
        assert!(expected > 0);
        assert_eq!(
            r.count(None).unwrap(),
            expected,
            "snapshot at LSN {}",
            info.lsn
        );
        assert_eq!(r.lsn(), info.lsn);
    }
}

#[test]
fn a_stored_snapshot_exports_as_tar_and_deletes_with_its_own_blobs() {
    let (_d, store) = store();
    let (_dir, db) = mem_db();
    let c = populated(&db, "docs");
    c.archive_wal(&store).unwrap();
    let first = c.snapshot(&store).unwrap();
    let mut rng = Rng::new(6);
    fill(&c, &mut rng, 40_000..40_500);
    c.optimize().unwrap(); // a new segment: a blob only the second snapshot has
    fill(&c, &mut rng, 40_500..40_510); // in a new WAL file: the optimizer closed the old one
    c.archive_wal(&store).unwrap();
    let second = c.snapshot(&store).unwrap();
    // Once sealed and archived, the WAL file is closed; later writes go to a new one.
    c.optimize().unwrap();
    c.archive_wal(&store).unwrap();
    fill(&c, &mut rng, 41_000..41_010);
    c.archive_wal(&store).unwrap();
    assert_eq!(store.list("docs/wal/").unwrap().len(), 2);

    let mut tar = Vec::new();
    let info = snapshots::export(&store, "docs", &second.id, &mut tar).unwrap();
    assert_eq!(info.lsn, second.lsn);
    let (_dir2, db2) = mem_db();
    let r = db2.import_snapshot(&mut &tar[..], "imported").unwrap();
    assert_eq!(r.lsn(), second.lsn);
    assert_eq!(r.count(None).unwrap() + 10, c.count(None).unwrap());

    let blobs_before = store.list("docs/blobs/").unwrap().len();
    let wal_before = store.list("docs/wal/").unwrap().len();
    assert!(snapshots::delete(&store, "docs", "no-such-id").is_err());
    let report = snapshots::delete(&store, "docs", &first.id).unwrap();
    assert_eq!(report.snapshots, 1);
    // Blobs the second snapshot uses stay; archived WAL before it goes.
    assert_eq!(
        store.list("docs/blobs/").unwrap().len(),
        blobs_before - report.blobs
    );
    assert!(
        report.wal_files >= 1 && store.list("docs/wal/").unwrap().len() < wal_before,
        "{report:?}"
    );
    db2.restore(&store, "docs", &RestorePoint::Latest, "again")
        .unwrap()
        .verify()
        .unwrap();
    assert!(
        db2.restore(&store, "docs", &RestorePoint::Snapshot(first.id), "gone")
            .is_err()
    );
}
