//! Continuous WAL archiving and point-in-time restore.
//!
//! Each WAL file `wal/<first lsn>.wal` of collection `C` is stored as `C/wal/<first lsn>.wal`.
//! A closed file is shipped once, whole; the active file's synced prefix is shipped at an
//! interval and replaced by the next, longer prefix (an object is replaced whole, so a reader
//! never sees a half-written one). While archiving is on, the collection deletes a WAL file
//! only once it is archived.
//!
//! A restore to an LSN or a time takes the newest snapshot at or before it, then copies the
//! archived frames after the snapshot's LSN, verbatim (checksums included), into one new WAL
//! file of the restored collection, up to the target; opening the collection replays them.
//!
//! Limitation: there are no WAL timelines. A collection restored to an earlier point and then
//! archived under the same name overwrites the archive's later history from that point on.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex as StdMutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{ObjectStore, RestorePoint, SnapshotManifest};
use crate::collection::Collection;
use crate::directory::Directory;
use crate::error::{Error, IoContext, Result};
use crate::types::Lsn;
use crate::wal;

const WAL_DIR: &str = "wal";

pub(crate) fn wal_key(collection: &str, first_lsn: Lsn) -> String {
    format!("{collection}/wal/{first_lsn:020}.wal")
}

/// What one archiving pass shipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveReport {
    /// WAL files (closed, or the active file's prefix) uploaded.
    pub files: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Every record at or below this LSN is in the store.
    pub archived_lsn: Lsn,
}

/// One pass: ships closed WAL files not yet in the store and, with `active`, the active file's
/// synced prefix. Then lets the collection delete the archived files its manifest covers.
pub(crate) fn archive_pass(
    c: &Collection,
    store: &dyn ObjectStore,
    active: bool,
) -> Result<ArchiveReport> {
    let inner = &c.inner;
    inner.check_open()?;
    let dir = &*inner.dir;
    inner.archiving.store(true, Ordering::SeqCst);
    let (closed, act, last_lsn) = {
        let mut w = inner.writer.lock();
        if active {
            inner.sync_locked(&mut w)?;
        }
        (
            w.wal.closed_files(),
            w.wal.active_file(),
            w.wal.next_lsn() - 1,
        )
    };
    let mut report = ArchiveReport {
        archived_lsn: inner.archived_lsn.load(Ordering::SeqCst),
        ..ArchiveReport::default()
    };
    for (path, first, last) in closed {
        if last <= report.archived_lsn {
            continue; // shipped by an earlier pass
        }
        let key = wal_key(&inner.name, first);
        let data = dir.read(&path).at(&dir.describe(&path))?;
        if store.head(&key)? != Some(data.len() as u64) {
            store.put(&key, &mut &data[..], data.len() as u64)?;
            report.files += 1;
            report.bytes += data.len() as u64;
        }
        report.archived_lsn = last;
    }
    let (path, first, len) = act;
    if active && len > crate::codec::HEADER_LEN as u64 {
        let key = wal_key(&inner.name, first);
        if store.head(&key)? != Some(len) {
            let data = dir.read(&path).at(&dir.describe(&path))?;
            let prefix = data.get(..len as usize).ok_or_else(|| {
                Error::corrupted(
                    dir.describe(&path),
                    0,
                    format!("shorter than the {len} bytes synced"),
                )
            })?;
            store.put(&key, &mut &prefix[..], len)?;
            report.files += 1;
            report.bytes += len;
        }
        // Every record up to the capture is now in the store (closed files, then this prefix).
        report.archived_lsn = report.archived_lsn.max(last_lsn);
    }
    inner
        .archived_lsn
        .fetch_max(report.archived_lsn, Ordering::SeqCst);
    report.archived_lsn = inner.archived_lsn.load(Ordering::SeqCst);
    if inner.pins.load(Ordering::SeqCst) == 0 {
        let mut w = inner.writer.lock();
        let applied = w.state.applied_lsn;
        if let Err(e) = w.wal.remove_covered(inner.removable_wal(applied)) {
            tracing::warn!(collection = %inner.name, "could not remove archived WAL files: {e}");
        }
    }
    Ok(report)
}

/// Ships a collection's WAL to an object store in the background: closed files within about a
/// second of closing, the active file's synced prefix every `interval`. Stops when dropped (or
/// with [`stop`](Self::stop)), after a last pass that ships everything acknowledged.
#[derive(Debug)]
pub struct WalArchiver {
    stop: Arc<(StdMutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
}

impl WalArchiver {
    pub(crate) fn start(
        c: Collection,
        store: Arc<dyn ObjectStore>,
        interval: Duration,
    ) -> WalArchiver {
        let stop = Arc::new((StdMutex::new(false), Condvar::new()));
        let failed = Arc::new(AtomicBool::new(false));
        let (s, f) = (stop.clone(), failed.clone());
        c.inner.archiving.store(true, Ordering::SeqCst);
        let thread = std::thread::Builder::new()
            .name(format!("deftech-archive-{}", c.name()))
            .spawn(move || {
                let poll = interval.min(Duration::from_secs(1));
                let mut last_active = Instant::now();
                loop {
                    let stopping = {
                        let (m, cv) = &*s;
                        let g = m.lock().unwrap_or_else(|e| e.into_inner());
                        let (g, _) = cv.wait_timeout(g, poll).unwrap_or_else(|e| e.into_inner());
                        *g
                    };
                    let active = stopping || last_active.elapsed() >= interval;
                    match archive_pass(&c, &*store, active) {
                        Ok(r) => {
                            f.store(false, Ordering::SeqCst);
                            if r.files > 0 {
                                tracing::debug!(
                                    collection = c.name(),
                                    files = r.files,
                                    bytes = r.bytes,
                                    "archived WAL"
                                );
                            }
                        }
                        Err(Error::CollectionDropped(_)) => break,
                        Err(e) => {
                            f.store(true, Ordering::SeqCst);
                            tracing::warn!(
                                collection = c.name(),
                                store = store.location(),
                                "WAL archiving failed, retrying: {e}"
                            );
                        }
                    }
                    if active {
                        last_active = Instant::now();
                    }
                    if stopping {
                        break;
                    }
                }
            })
            .expect("spawn the WAL archiver thread");
        WalArchiver {
            stop,
            thread: Some(thread),
            failed,
        }
    }

    /// True while the last pass failed (the store is unreachable, say); passes keep retrying.
    pub fn failing(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// False once the archiver has stopped by itself: its collection was dropped or replaced
    /// (by a restore), after which a new archiver must be started for the new collection.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Ships what is left and stops.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WalArchiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Adds to a staged restore the archived WAL records after the snapshot, up to `point`.
pub(crate) fn extend_to(
    store: &dyn ObjectStore,
    collection: &str,
    snap: &SnapshotManifest,
    point: &RestorePoint,
    dir: &dyn Directory,
    staging: &Path,
) -> Result<()> {
    let stop_after = |lsn: Lsn, time_ms: u64| match point {
        RestorePoint::Lsn(l) => lsn > *l,
        RestorePoint::Time(t) => time_ms > *t,
        _ => true,
    };
    if matches!(point, RestorePoint::Latest | RestorePoint::Snapshot(_)) {
        return Ok(());
    }
    if let RestorePoint::Lsn(l) = point
        && *l <= snap.lsn
    {
        return Ok(());
    }
    let prefix = format!("{collection}/wal/");
    let objects = store.list(&prefix)?;
    let firsts: Vec<Option<Lsn>> = objects
        .iter()
        .map(|o| {
            o.key
                .strip_prefix(&prefix)
                .and_then(|k| k.strip_suffix(".wal"))
                .and_then(|k| k.parse().ok())
        })
        .collect();
    let mut next = snap.lsn + 1;
    let mut frames = Vec::new();
    let mut done = false;
    for (i, o) in objects.iter().enumerate() {
        let Some(first) = firsts[i] else { continue };
        // Skip files wholly at or below the snapshot.
        if let Some(Some(nf)) = firsts.get(i + 1)
            && *nf <= next
        {
            continue;
        }
        if first > next {
            return Err(Error::corrupted(
                format!("{}/{}", store.location(), o.key),
                0,
                format!(
                    "archived WAL is missing records {next}..{}: cannot restore past LSN {}",
                    first - 1,
                    next - 1
                ),
            ));
        }
        let shown = format!("{}/{}", store.location(), o.key);
        let mut bytes = Vec::with_capacity(o.size as usize);
        store
            .get(&o.key)?
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&shown, e))?;
        let (file_first, list) = wal::read_frames(&bytes, &shown)?;
        if file_first != first {
            return Err(Error::corrupted(
                &shown,
                32,
                format!("header names first LSN {file_first}, the key {first}"),
            ));
        }
        for f in list {
            if f.lsn < next {
                continue;
            }
            if stop_after(f.lsn, f.time_ms) {
                done = true;
                break;
            }
            frames.extend_from_slice(&bytes[f.range]);
            next += 1;
        }
        if done {
            break;
        }
    }
    if let RestorePoint::Lsn(l) = point
        && next <= *l
    {
        return Err(Error::invalid_argument(
            "lsn",
            format!(
                "the archive of `{collection}` in {} ends at LSN {}, before the requested {l}",
                store.location(),
                next - 1
            ),
        ));
    }
    if frames.is_empty() {
        return Ok(());
    }
    let first = snap.lsn + 1;
    let path = staging.join(WAL_DIR).join(format!("{first:020}.wal"));
    let body = wal::file_bytes(first, &frames);
    let mut out = dir.create(&path).at(&dir.describe(&path))?;
    out.write_all(&body).at(&dir.describe(&path))?;
    out.sync().at(&dir.describe(&path))?;
    tracing::info!(
        collection,
        from = first,
        to = next - 1,
        "replaying archived WAL"
    );
    Ok(())
}
