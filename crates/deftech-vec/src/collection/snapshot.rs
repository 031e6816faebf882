//! Snapshots and WAL archiving on the collection side: capturing a consistent file set under
//! the writer lock, pinning it against the optimizer, and the public snapshot methods.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Collection, Inner, SEGMENTS_DIR, WAL_DIR, optimizer, sealed};
use crate::error::{IoContext, Result};
use crate::types::Lsn;

/// Keeps the files of a capture from being deleted until dropped.
pub(crate) struct Pin {
    inner: Arc<Inner>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        if self.inner.pins.fetch_sub(1, Ordering::SeqCst) == 1 {
            let doomed = std::mem::take(&mut *self.inner.deferred.lock());
            self.inner.delete_files(doomed);
        }
    }
}

impl Inner {
    /// Deletes files and folders the manifest no longer references.
    pub(crate) fn delete_files(&self, doomed: Vec<(PathBuf, bool)>) {
        for (path, is_dir) in doomed {
            let r = if is_dir {
                self.dir.remove_dir_all(&path)
            } else {
                self.dir.remove_file(&path)
            };
            if let Err(e) = r
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %self.dir.describe(&path).display(), "could not remove: {e}");
            }
        }
    }

    /// The LSN up to which WAL files may be deleted: the manifest's, and with archiving on,
    /// only what is archived.
    pub(crate) fn removable_wal(&self, applied: Lsn) -> Lsn {
        if self.archiving.load(Ordering::SeqCst) {
            applied.min(self.archived_lsn.load(Ordering::SeqCst))
        } else {
            applied
        }
    }

    /// Captures a consistent set of files under the writer lock: the durable manifest's segment
    /// and tombstone files and the WAL after it, cut at the current LSN (everything acknowledged
    /// so far, made durable first). The files stay pinned while the returned guard lives.
    pub(crate) fn capture(self: &Arc<Self>) -> Result<(crate::snapshot::Capture, Pin)> {
        let mut w = self.writer.lock();
        self.check_open()?;
        self.sync_locked(&mut w)?;
        self.pins.fetch_add(1, Ordering::SeqCst);
        let pin = Pin {
            inner: self.clone(),
        };
        let st = &w.state;
        let manifest = st.manifest(
            &self.config,
            st.applied_lsn,
            optimizer::manifest_segments(&st.sealed),
        );
        let mut files = Vec::new();
        for e in &st.sealed {
            let s = e.seg.as_sealed().expect("sealed");
            let rel = Path::new(SEGMENTS_DIR).join(sealed::folder_name(s.id()));
            for (name, len) in s.files() {
                files.push((rel.join(name), len));
            }
            if let Some(t) = &e.tombstone_file {
                let path = s.folder().join(t);
                let len = self.dir.read(&path).at(&self.dir.describe(&path))?.len() as u64;
                files.push((rel.join(t), len));
            }
        }
        for (name, len) in w.wal.files_with_len()? {
            files.push((Path::new(WAL_DIR).join(name), len));
        }
        Ok((
            crate::snapshot::Capture {
                manifest,
                lsn: st.lsn,
                files,
            },
            pin,
        ))
    }
}

impl Collection {
    /// Takes a snapshot into `store`: uploads the files the store does not hold yet (sealed
    /// segment files are content-addressed, so a second snapshot uploads little), then the
    /// snapshot manifest. Writes are held only for the capture.
    pub fn snapshot(
        &self,
        store: &dyn crate::snapshot::ObjectStore,
    ) -> Result<crate::snapshot::SnapshotInfo> {
        let (capture, _pin) = self.inner.capture()?;
        crate::snapshot::upload(
            &*self.inner.dir,
            &self.inner.folder,
            &self.inner.name,
            capture,
            store,
            &self.inner.hashes,
        )
    }

    /// Writes a snapshot as one self-contained tar stream (see [`Database::import_snapshot`]).
    ///
    /// [`Database::import_snapshot`]: crate::Database::import_snapshot
    pub fn export_snapshot(
        &self,
        out: &mut dyn std::io::Write,
    ) -> Result<crate::snapshot::SnapshotInfo> {
        let (capture, _pin) = self.inner.capture()?;
        crate::snapshot::tarball::write(
            &*self.inner.dir,
            &self.inner.folder,
            &self.inner.name,
            capture,
            out,
        )
    }

    /// Ships the WAL to `store` once: closed files not yet there and the active file's synced
    /// prefix (see [`start_wal_archiving`](Self::start_wal_archiving)). From the first call on,
    /// WAL files are deleted only once archived.
    pub fn archive_wal(
        &self,
        store: &dyn crate::snapshot::ObjectStore,
    ) -> Result<crate::snapshot::ArchiveReport> {
        crate::snapshot::archive::archive_pass(self, store, true)
    }

    /// Starts continuous WAL archiving to `store`: closed WAL files are shipped within about a
    /// second, the active file's synced prefix every `interval` (the most the store can be
    /// behind), so that [`Database::restore`](crate::Database::restore) can replay to any LSN
    /// or time after a snapshot. WAL files are deleted only once archived. Archiving stops when
    /// the returned handle is dropped, after a last pass.
    pub fn start_wal_archiving(
        &self,
        store: std::sync::Arc<dyn crate::snapshot::ObjectStore>,
        interval: Duration,
    ) -> crate::snapshot::WalArchiver {
        crate::snapshot::WalArchiver::start(self.clone(), store, interval)
    }
}
