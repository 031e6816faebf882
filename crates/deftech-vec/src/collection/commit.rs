//! The write path of a collection: validate → WAL → apply → publish, group commit (one fsync
//! for the writes that queued behind it), and rollback when the WAL cannot be made durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Inner, WAL_DIR, Writer, check_batch, read};
use crate::config::FsyncPolicy;
use crate::error::{Error, Result};
use crate::filter::CompiledFilter;
use crate::request::PointSelector;
use crate::types::{Lsn, Payload, PointId};
use crate::wal::Op;

use super::state::View;

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.dropped.load(Ordering::SeqCst) {
            return Err(Error::CollectionDropped(self.name.clone()));
        }
        Ok(())
    }

    /// Refuses a change to a dropped collection, or to one made read-only by a failure.
    pub(crate) fn check_writable(&self, w: &Writer) -> Result<()> {
        self.check_open()?;
        if let Some(reason) = &w.poisoned {
            return Err(Error::ReadOnly {
                collection: self.name.clone(),
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    pub(crate) fn view(&self) -> Arc<View> {
        self.current.read().clone()
    }

    pub(crate) fn publish(&self, view: Arc<View>) {
        view.mutable().publish(view.mutable_len());
        *self.current.write() = view;
    }

    /// Makes every appended record durable and publishes all pending views. Writer lock held.
    pub(crate) fn sync_locked(&self, w: &mut Writer) -> Result<()> {
        match w.wal.sync() {
            Ok(()) => {
                let mut c = self.commit.lock();
                c.durable = c.durable.max(c.written);
                c.durable_pos = w.wal.pos();
                if let Some((_, view, _)) = c.pending.drain(..).next_back() {
                    self.publish(view);
                }
                self.commit_cv.notify_all();
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                self.rollback_locked(w, &msg);
                Err(e)
            }
        }
    }

    /// Undoes writes that could not be made durable. Writer lock held.
    pub(super) fn rollback_locked(&self, w: &mut Writer, reason: &str) {
        let mut c = self.commit.lock();
        if c.pending.is_empty() {
            return;
        }
        let published = self.view();
        tracing::error!(
            collection = %self.name,
            lost_from = published.lsn + 1,
            lost_to = c.written,
            "WAL sync failed ({reason}); rolling back writes not yet durable"
        );
        if let Err(e) = w.wal.rollback(c.durable_pos) {
            // The cut is retried before the next append; until then writes fail.
            tracing::error!(collection = %self.name, "could not cut the WAL back yet: {e}");
        }
        w.state.rollback_to(&published);
        c.pending.clear();
        c.written = c.durable;
        let (ended, floor) = (c.epoch, c.durable);
        c.ended.push_back((ended, floor));
        if c.ended.len() > 1024 {
            c.ended.pop_front();
        }
        c.epoch += 1;
        c.error = Some(reason.to_owned());
        self.commit_cv.notify_all();
    }

    /// Waits until `lsn` is durable (group commit: one waiter syncs for all).
    pub(super) fn wait_durable(&self, lsn: Lsn, epoch: u64) -> Result<()> {
        let mut c = self.commit.lock();
        loop {
            if c.epoch != epoch {
                if c.ended.iter().any(|&(e, floor)| e == epoch && lsn <= floor) {
                    return Ok(());
                }
                return Err(Error::io(
                    self.dir.describe(&self.folder.join(WAL_DIR)),
                    std::io::Error::other(format!(
                        "write not durable: {}",
                        c.error.clone().unwrap_or_default()
                    )),
                ));
            }
            if c.durable >= lsn {
                return Ok(());
            }
            if c.syncing {
                self.commit_cv.wait(&mut c);
                continue;
            }
            let target = c.written;
            let Some(handle) = c.handle.clone() else {
                return Err(Error::io(
                    &self.folder,
                    std::io::Error::other("no WAL file to sync"),
                ));
            };
            let sync_epoch = c.epoch;
            c.syncing = true;
            drop(c);
            let result = handle.sync();
            match result {
                Ok(()) => {
                    c = self.commit.lock();
                    c.syncing = false;
                    // A rollback during the sync (after another syncer's failure) cut records
                    // this sync may have covered: then it proves nothing.
                    if c.epoch == sync_epoch && c.durable < target {
                        c.durable = target;
                    }
                    let mut last = None;
                    while c.pending.front().is_some_and(|(l, _, _)| *l <= c.durable) {
                        last = c.pending.pop_front();
                    }
                    if let Some((_, view, pos)) = last {
                        c.durable_pos = pos;
                        self.publish(view);
                    }
                    self.commit_cv.notify_all();
                }
                Err(e) => {
                    // Keep leadership (`syncing`) until the rollback is done, so no other waiter
                    // syncs records that are about to be cut off.
                    let mut w = self.writer.lock();
                    let already = self.commit.lock().durable >= target;
                    if !already {
                        self.rollback_locked(&mut w, &e.to_string());
                    }
                    self.commit.lock().syncing = false;
                    self.commit_cv.notify_all();
                    drop(w);
                    c = self.commit.lock();
                }
            }
        }
    }

    /// Makes pending writes (appended, not yet durable) durable and visible.
    pub(super) fn commit_pending(&self) -> Result<()> {
        let (lsn, epoch) = {
            let c = self.commit.lock();
            if c.pending.is_empty() {
                return Ok(());
            }
            (c.written, c.epoch)
        };
        self.wait_durable(lsn, epoch)
    }

    /// Syncs whatever is written (interval policy and `flush`); errors are returned.
    pub(super) fn sync_written(&self) -> Result<()> {
        let (target, handle, epoch) = {
            let c = self.commit.lock();
            if c.durable >= c.written || c.syncing {
                return Ok(());
            }
            (c.written, c.handle.clone(), c.epoch)
        };
        if let Some(h) = handle {
            h.sync()
                .map_err(|e| Error::io(self.dir.describe(&self.folder.join(WAL_DIR)), e))?;
            let mut c = self.commit.lock();
            if c.epoch == epoch {
                c.durable = c.durable.max(target);
            }
        }
        Ok(())
    }

    /// The write path: `build` validates and resolves against the writer's state and returns the
    /// operation to log; it is appended, applied and published (after fsync under `Always`).
    pub(super) fn write(
        &self,
        wait: bool,
        build: impl FnOnce(&Inner, &mut Writer) -> Result<Op>,
    ) -> Result<Lsn> {
        let (lsn, epoch) = {
            let mut w = self.writer.lock();
            self.check_writable(&w)?;
            let op = build(self, &mut w)?;
            let body = op.encode();
            if body.len() > crate::wal::MAX_RECORD_BYTES {
                return Err(Error::invalid_argument(
                    "points",
                    format!(
                        "the request encodes to {} bytes, over the {}-byte limit of one log record; \
                         split it into smaller batches",
                        body.len(),
                        crate::wal::MAX_RECORD_BYTES
                    ),
                ));
            }
            let lsn = w.wal.next_lsn();
            let before = w.wal.pos();
            w.wal.append(lsn, &body)?;
            if let Err(e) = w.state.apply(lsn, &op) {
                // Reads were checked while building the op, so this means the data changed under
                // us (a damaged file): undo the append and refuse further writes.
                let _ = w.wal.rollback(before);
                w.poisoned = Some(format!("applying LSN {lsn} failed: {e}"));
                return Err(e);
            }
            let view = w.state.view();
            let handle = w.wal.sync_handle();
            let mut c = self.commit.lock();
            c.written = lsn;
            c.handle = Some(handle);
            match self.config.wal.fsync {
                FsyncPolicy::Always => {
                    c.pending.push_back((lsn, view, w.wal.pos()));
                    (lsn, Some(c.epoch))
                }
                FsyncPolicy::Interval(_) | FsyncPolicy::Never => {
                    c.durable_pos = w.wal.pos();
                    drop(c);
                    self.publish(view);
                    (lsn, None)
                }
            }
        };
        if let Some(epoch) = epoch {
            if wait {
                self.wait_durable(lsn, epoch)?;
            } else {
                // The committer thread makes it durable and visible.
                self.sync_signal.notify();
            }
        }
        if self.config.optimizer.background
            && self.view().mutable_len() >= self.config.optimizer.seal_threshold
        {
            self.signal.notify();
        }
        Ok(lsn)
    }

    /// Resolves a selector to ids. Filters are evaluated on the published state after making
    /// every pending write durable (so they see all earlier writes). Writer lock held.
    pub(super) fn resolve(
        &self,
        w: &mut Writer,
        selector: &PointSelector,
        must_exist: bool,
    ) -> Result<Vec<PointId>> {
        match selector {
            PointSelector::Ids(ids) => {
                check_batch(ids.len(), self.config.limits.max_batch_points, "points")?;
                if must_exist {
                    for &id in ids {
                        match w.state.locate(id) {
                            None => return Err(Error::PointNotFound(id)),
                            // Check the payload is readable now, so applying cannot fail later.
                            Some(loc) => drop(w.state.read(loc)?),
                        }
                    }
                }
                Ok(ids.clone())
            }
            PointSelector::Filter(f) => {
                self.sync_locked(w)?;
                let view = self.view();
                let compiled = CompiledFilter::compile(f, &view.schema)?;
                read::matching_ids(&view, &compiled)
            }
        }
    }

    pub(super) fn check_payload(&self, id: PointId, payload: &Payload) -> Result<()> {
        let size = serde_json::to_vec(payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > self.config.limits.max_payload_bytes {
            return Err(Error::InvalidPayload {
                point: id,
                reason: format!(
                    "{size} bytes of JSON is over the limit of {} bytes",
                    self.config.limits.max_payload_bytes
                ),
            });
        }
        Ok(())
    }
}
