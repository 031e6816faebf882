//! Snapshots: a consistent copy of a collection in an [`ObjectStore`], incremental by file
//! content, restorable (also to a point in time with archived WAL), exportable as one tar file.
//!
//! Store layout, per collection `C`:
//!
//! ```text
//! C/blobs/<sha256>            file bodies, content-addressed: a file already stored is never
//!                             uploaded again (sealed segment files never change)
//! C/snapshots/<id>.json       a snapshot: the collection manifest, the LSN it covers, and every
//!                             file (relative path, SHA-256, size); written last, so a snapshot
//!                             is listed only once complete
//! C/wal/<first lsn>.wal       archived WAL files (see `archive`), for point-in-time restore
//! ```
//!
//! A snapshot holds the sealed segment files of the durable manifest plus the WAL tail after
//! its `applied_lsn`, cut at the LSN of the moment the snapshot began: it contains exactly the
//! writes acknowledged before it. Writers wait only for the capture (an fsync and a list of
//! files under the writer lock); files are read afterwards, pinned so that the optimizer does
//! not delete them meanwhile.

pub(crate) mod archive;
#[cfg(feature = "s3")]
mod s3;
mod store;
pub(crate) mod tarball;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use archive::{ArchiveReport, WalArchiver};
#[cfg(feature = "s3")]
pub use s3::{S3Config, S3Store};
pub use store::{LocalStore, ObjectMeta, ObjectStore};

use crate::directory::Directory;
use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;
use crate::types::Lsn;

pub(crate) const FORMAT_VERSION: u32 = 1;

/// One file of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileRef {
    /// Path inside the collection folder (`segments/<id>/vectors.bin`, `wal/<lsn>.wal`).
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// A snapshot as stored (`C/snapshots/<id>.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotManifest {
    pub format_version: u32,
    pub id: String,
    pub collection: String,
    pub created_at_ms: u64,
    /// Every write at or below this LSN is in the snapshot.
    pub lsn: Lsn,
    pub manifest: Manifest,
    pub files: Vec<FileRef>,
}

impl FileRef {
    fn new(rel: &Path, sha256: String, size: u64) -> FileRef {
        let path = rel
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/");
        FileRef { path, sha256, size }
    }
}

impl SnapshotManifest {
    /// A new snapshot at `lsn` made of `files`, created now; its id sorts by LSN.
    pub(crate) fn new(
        collection: &str,
        lsn: Lsn,
        manifest: Manifest,
        files: Vec<FileRef>,
    ) -> SnapshotManifest {
        let created_at_ms = now_ms();
        SnapshotManifest {
            format_version: FORMAT_VERSION,
            id: format!("{lsn:020}-{created_at_ms}"),
            collection: collection.to_owned(),
            created_at_ms,
            lsn,
            manifest,
            files,
        }
    }
}

/// What a snapshot is and what it cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Snapshot id (sorts by LSN).
    pub id: String,
    /// Collection it was taken of.
    pub collection: String,
    /// LSN it covers.
    pub lsn: Lsn,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Files in the snapshot.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Files uploaded by this snapshot (the others were in the store already).
    pub uploaded_files: usize,
    /// Bytes uploaded by this snapshot.
    pub uploaded_bytes: u64,
}

/// Which state to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestorePoint {
    /// The newest snapshot.
    Latest,
    /// A snapshot by id.
    Snapshot(String),
    /// Every write up to this LSN: the newest snapshot at or before it, then archived WAL.
    Lsn(Lsn),
    /// Every write up to this time (ms since the Unix epoch), by the WAL records' timestamps.
    Time(u64),
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Streams `src` into a new file `path` of `dir` (parents created) while hashing it, then
/// syncs it; returns the size and the SHA-256. Read errors name `shown`.
pub(crate) fn copy_hashed(
    src: &mut dyn Read,
    dir: &dyn Directory,
    path: &Path,
    shown: &str,
) -> Result<(u64, String)> {
    if let Some(parent) = path.parent() {
        dir.create_dir_all(parent).at(&dir.describe(parent))?;
    }
    let mut out = dir.create(path).at(&dir.describe(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(|e| Error::io(shown, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).at(&dir.describe(path))?;
        total += n as u64;
    }
    out.sync().at(&dir.describe(path))?;
    Ok((total, hex(&hasher.finalize())))
}

/// Concurrent transfers per snapshot or restore.
pub(crate) const TRANSFER_THREADS: usize = 4;

/// Runs `f` on every item with up to `threads` threads; results in item order, or the first
/// error (the other threads stop taking new items).
pub(crate) fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<R>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    *slots[i].lock() = Some(r);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    let mut first_err = None;
    for slot in slots {
        match slot.into_inner() {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Checksums of collection files already hashed, by (relative path, length).
pub(crate) type HashCache = parking_lot::Mutex<std::collections::HashMap<(PathBuf, u64), String>>;

pub(crate) fn blob_key(collection: &str, sha: &str) -> String {
    format!("{collection}/blobs/{sha}")
}

pub(crate) fn manifest_key(collection: &str, id: &str) -> String {
    format!("{collection}/snapshots/{id}.json")
}

/// Files captured under the writer lock (paths relative to the collection folder, lengths to
/// copy: the active WAL file is cut at the capture).
pub(crate) struct Capture {
    pub manifest: Manifest,
    pub lsn: Lsn,
    pub files: Vec<(PathBuf, u64)>,
}

/// Uploads the captured files that the store does not hold, then the snapshot manifest.
pub(crate) fn upload(
    dir: &dyn Directory,
    folder: &Path,
    collection: &str,
    capture: Capture,
    store: &dyn ObjectStore,
    hashes: &HashCache,
) -> Result<SnapshotInfo> {
    let lock = store_lock(store, collection);
    let _held = lock.lock();
    // Files are hashed and uploaded a few at a time: stores (S3 above all) are faster with
    // several streams, and hashing uses more than one core.
    let results = parallel(&capture.files, TRANSFER_THREADS, |(rel, len)| {
        let path = folder.join(rel);
        let data = dir.read(&path).at(&dir.describe(&path))?;
        let body = data.get(..*len as usize).ok_or_else(|| {
            Error::corrupted(
                dir.describe(&path),
                0,
                format!("file shorter than the {len} bytes captured"),
            )
        })?;
        // Segment files never change (segment ids are never reused): a segment file seen
        // before has the same content, so it is hashed once, not at every snapshot. WAL files
        // are hashed every time (a rollback can rewrite a tail to the same length).
        let immutable = rel.starts_with("segments");
        let cached = if immutable {
            hashes.lock().get(&(rel.clone(), *len)).cloned()
        } else {
            None
        };
        let sha = match cached {
            Some(sha) => sha,
            None => {
                let sha = sha256_hex(body);
                if immutable {
                    let mut h = hashes.lock();
                    if h.len() > 100_000 {
                        h.clear();
                    }
                    h.insert((rel.clone(), *len), sha.clone());
                }
                sha
            }
        };
        let key = blob_key(collection, &sha);
        let uploaded = store.head(&key)? != Some(*len);
        if uploaded {
            store.put(&key, &mut &body[..], *len)?;
        }
        let file = FileRef::new(rel, sha, *len);
        Ok((file, uploaded))
    })?;
    let (mut uploaded_files, mut uploaded_bytes) = (0, 0);
    let mut files = Vec::with_capacity(results.len());
    for (f, uploaded) in results {
        if uploaded {
            uploaded_files += 1;
            uploaded_bytes += f.size;
        }
        files.push(f);
    }
    let snap = SnapshotManifest::new(collection, capture.lsn, capture.manifest, files);
    let json = serde_json::to_vec_pretty(&snap).expect("snapshot manifest serializes");
    store.put(
        &manifest_key(collection, &snap.id),
        &mut &json[..],
        json.len() as u64,
    )?;
    Ok(SnapshotInfo {
        uploaded_files,
        uploaded_bytes,
        ..info_of(&snap)
    })
}

pub(crate) fn info_of(s: &SnapshotManifest) -> SnapshotInfo {
    SnapshotInfo {
        id: s.id.clone(),
        collection: s.collection.clone(),
        lsn: s.lsn,
        created_at_ms: s.created_at_ms,
        files: s.files.len(),
        bytes: s.files.iter().map(|f| f.size).sum(),
        uploaded_files: 0,
        uploaded_bytes: 0,
    }
}

/// Reads and checks a snapshot manifest.
pub(crate) fn read_manifest(
    store: &dyn ObjectStore,
    collection: &str,
    id: &str,
) -> Result<SnapshotManifest> {
    let key = manifest_key(collection, id);
    let mut bytes = Vec::new();
    store
        .get(&key)?
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("{}/{key}", store.location()), e))?;
    let s: SnapshotManifest = serde_json::from_slice(&bytes).map_err(|e| {
        Error::corrupted(
            format!("{}/{key}", store.location()),
            0,
            format!("bad snapshot manifest: {e}"),
        )
    })?;
    if s.format_version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: PathBuf::from(format!("{}/{key}", store.location())),
            found: s.format_version,
            supported: FORMAT_VERSION,
        });
    }
    for f in &s.files {
        check_rel_path(&f.path).map_err(|reason| {
            Error::corrupted(
                format!("{}/{key}", store.location()),
                0,
                format!("file {:?}: {reason}", f.path),
            )
        })?;
    }
    Ok(s)
}

/// A snapshot's file paths must stay inside the collection folder.
pub(crate) fn check_rel_path(p: &str) -> std::result::Result<(), &'static str> {
    if p.is_empty() || p.starts_with('/') || p.contains('\\') {
        return Err("not a relative path");
    }
    if p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("path leaves the collection folder");
    }
    let top = p.split('/').next().unwrap_or_default();
    if top != "segments" && top != "wal" {
        return Err("only segments/ and wal/ files belong in a snapshot");
    }
    Ok(())
}

/// Snapshots of `collection` in the store, oldest first.
pub fn list(store: &dyn ObjectStore, collection: &str) -> Result<Vec<SnapshotInfo>> {
    let prefix = format!("{collection}/snapshots/");
    let mut out = Vec::new();
    for o in store.list(&prefix)? {
        let Some(id) = o
            .key
            .strip_prefix(&prefix)
            .and_then(|k| k.strip_suffix(".json"))
        else {
            continue;
        };
        out.push(info_of(&read_manifest(store, collection, id)?));
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// What [`prune`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Snapshots deleted.
    pub snapshots: usize,
    /// Blobs deleted (no remaining snapshot references them).
    pub blobs: usize,
    /// Archived WAL files deleted (wholly before the oldest remaining snapshot).
    pub wal_files: usize,
    /// Bytes freed.
    pub bytes: u64,
}

/// Serializes snapshot uploads and garbage collection of one collection in one store within
/// this process, so that a prune never deletes the blobs of a snapshot still being uploaded
/// (its manifest, which would reference them, is written last). Separate processes writing the
/// same collection to the same store must not prune concurrently with a snapshot.
pub(crate) fn store_lock(store: &dyn ObjectStore, collection: &str) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let key = format!("{}\0{collection}", store.location());
    LOCKS
        .get_or_init(Default::default)
        .lock()
        .entry(key)
        .or_default()
        .clone()
}

/// Keeps the newest `keep` snapshots of `collection`, deletes the others, then deletes blobs no
/// remaining snapshot references (never one still referenced) and archived WAL files wholly
/// before the oldest remaining snapshot (no restore point can need them).
pub fn prune(store: &dyn ObjectStore, collection: &str, keep: usize) -> Result<PruneReport> {
    let lock = store_lock(store, collection);
    let _held = lock.lock();
    let all = list(store, collection)?;
    let cut = all.len().saturating_sub(keep);
    let doomed: Vec<&str> = all[..cut].iter().map(|s| s.id.as_str()).collect();
    remove(store, collection, &doomed, all.get(cut).map(|s| s.lsn))
}

/// Deletes one snapshot and the blobs only it referenced.
pub fn delete(store: &dyn ObjectStore, collection: &str, id: &str) -> Result<PruneReport> {
    let lock = store_lock(store, collection);
    let _held = lock.lock();
    let all = list(store, collection)?;
    if !all.iter().any(|s| s.id == id) {
        return Err(Error::invalid_argument(
            "snapshot",
            format!(
                "no snapshot {id:?} of `{collection}` in {}",
                store.location()
            ),
        ));
    }
    let oldest_left = all.iter().find(|s| s.id != id).map(|s| s.lsn);
    remove(store, collection, &[id], oldest_left)
}

/// Deletes the given snapshots, then every blob the others do not reference, and archived WAL
/// files wholly at or below `oldest_left`, the LSN of the oldest remaining snapshot (with no
/// snapshot left, the archived WAL is kept: it is trimmed only relative to a snapshot).
fn remove(
    store: &dyn ObjectStore,
    collection: &str,
    ids: &[&str],
    oldest_left: Option<Lsn>,
) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    for id in ids {
        store.delete(&manifest_key(collection, id))?;
        report.snapshots += 1;
    }
    let mut referenced = std::collections::HashSet::new();
    for s in list(store, collection)? {
        for f in read_manifest(store, collection, &s.id)?.files {
            referenced.insert(f.sha256);
        }
    }
    let prefix = format!("{collection}/blobs/");
    for o in store.list(&prefix)? {
        let sha = o.key.strip_prefix(&prefix).unwrap_or_default();
        if !referenced.contains(sha) {
            store.delete(&o.key)?;
            report.blobs += 1;
            report.bytes += o.size;
        }
    }
    if let Some(oldest) = oldest_left {
        let prefix = format!("{collection}/wal/");
        let wal = store.list(&prefix)?;
        let first = |o: &ObjectMeta| -> Option<Lsn> {
            o.key
                .strip_prefix(&prefix)?
                .strip_suffix(".wal")?
                .parse()
                .ok()
        };
        for pair in wal.windows(2) {
            // The file's records end just before the next file's first LSN.
            if let (Some(_), Some(next)) = (first(&pair[0]), first(&pair[1]))
                && next <= oldest + 1
            {
                store.delete(&pair[0].key)?;
                report.wal_files += 1;
                report.bytes += pair[0].size;
            }
        }
    }
    Ok(report)
}

/// Writes a stored snapshot as one self-contained tar stream (the format of
/// [`Collection::export_snapshot`](crate::Collection::export_snapshot)), streaming each blob.
pub fn export(
    store: &dyn ObjectStore,
    collection: &str,
    id: &str,
    out: &mut dyn std::io::Write,
) -> Result<SnapshotInfo> {
    let snap = read_manifest(store, collection, id)?;
    tarball::write_from_store(store, collection, &snap, out)?;
    Ok(info_of(&snap))
}

/// The snapshot manifest's checksum-free description of a stored snapshot.
pub fn describe(store: &dyn ObjectStore, collection: &str, id: &str) -> Result<SnapshotInfo> {
    Ok(info_of(&read_manifest(store, collection, id)?))
}

/// Picks the snapshot for a restore point.
pub(crate) fn choose(
    store: &dyn ObjectStore,
    collection: &str,
    point: &RestorePoint,
) -> Result<SnapshotManifest> {
    let all = list(store, collection)?;
    let none = || {
        Error::invalid_argument(
            "snapshot",
            format!(
                "no snapshot of `{collection}` in {} fits {point:?}",
                store.location()
            ),
        )
    };
    let id = match point {
        RestorePoint::Latest => all.last().map(|s| s.id.clone()),
        RestorePoint::Snapshot(id) => all.iter().find(|s| &s.id == id).map(|s| s.id.clone()),
        RestorePoint::Lsn(l) => all.iter().rev().find(|s| s.lsn <= *l).map(|s| s.id.clone()),
        RestorePoint::Time(t) => all
            .iter()
            .rev()
            .find(|s| s.created_at_ms <= *t)
            .map(|s| s.id.clone()),
    }
    .ok_or_else(none)?;
    read_manifest(store, collection, &id)
}

/// Copies a blob into `path` of `dir`, checking its SHA-256 and size; the error names the file.
pub(crate) fn fetch(
    store: &dyn ObjectStore,
    collection: &str,
    f: &FileRef,
    dir: &dyn Directory,
    path: &Path,
) -> Result<()> {
    let shown = format!(
        "{}/{} ({})",
        store.location(),
        blob_key(collection, &f.sha256),
        f.path
    );
    let mut r = store.get(&blob_key(collection, &f.sha256))?;
    let (total, sha) = copy_hashed(&mut r, dir, path, &shown)?;
    if total != f.size || sha != f.sha256 {
        return Err(Error::corrupted(
            shown,
            total,
            format!(
                "content does not match the snapshot (size {total} vs {}, checksum mismatch: {})",
                f.size,
                sha != f.sha256
            ),
        ));
    }
    Ok(())
}
