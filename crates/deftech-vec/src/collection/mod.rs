//! A collection: the public handle and its calls. The write path and group commit are in
//! `commit.rs`, reads in `read.rs`, the background optimizer in `optimizer.rs`, snapshots in
//! `snapshot.rs`.

mod commit;
mod info;
pub use info::{CollectionInfo, ComponentInfo, OptimizerInfo, SegmentInfo};
mod optimizer;
mod read;
mod snapshot;
pub(crate) mod state;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use roaring::RoaringBitmap;

use crate::config::{CollectionConfig, FsyncPolicy};
use crate::directory::{Directory, LockGuard, SyncHandle};
use crate::distance;
use crate::error::{Error, IoContext, Result};
use crate::filter::{CompiledFilter, Filter};
use crate::manifest::Manifest;
use crate::payload::{JsonPath, PayloadIndexKind};
use crate::quantization::Quantization;
use crate::request::{PayloadSelector, PointSelector, ScrollRequest, ScrollResult, SearchRequest};
use crate::segment::writer::read_tombstones;
use crate::segment::{MutableSegment, SealedSegment, Segment, sealed};
use crate::types::{Lsn, Metric, Payload, Point, PointId, Record, ScoredPoint};
use crate::wal::{Op, PointData, Wal, WalPos};

use state::{SegEntry, View, WriterState};

pub(crate) const SEGMENTS_DIR: &str = "segments";
pub(crate) const WAL_DIR: &str = "wal";

/// A handle to a collection. Cheap to clone, `Send + Sync`; use it from many threads at once.
///
/// Every write returns its LSN. Reads see a consistent snapshot and never wait for writers or
/// the optimizer.
#[derive(Clone)]
pub struct Collection {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.inner.name)
            .finish()
    }
}

pub(crate) struct Writer {
    pub state: WriterState,
    pub wal: Wal,
    /// Set when the WAL could not be repaired: writes are refused until reopen.
    pub poisoned: Option<String>,
}

impl Writer {
    /// A new manifest is in place but could not be made durable, so either manifest may be
    /// the one a crash leaves: writes are refused until the database is reopened.
    pub(crate) fn poison_unsure_manifest(&mut self, e: &Error) {
        self.poisoned = Some(format!(
            "the manifest could not be made durable ({e}); reopen the database"
        ));
    }
}

struct CommitState {
    written: Lsn,
    durable: Lsn,
    durable_pos: WalPos,
    syncing: bool,
    handle: Option<Arc<dyn SyncHandle>>,
    pending: VecDeque<(Lsn, Arc<View>, WalPos)>,
    epoch: u64,
    /// For recent epochs ended by a rollback: the durable LSN at that moment. A write of an
    /// ended epoch at or below it was durable (and published) before the rollback, which only
    /// cut what came after.
    ended: VecDeque<(u64, Lsn)>,
    error: Option<String>,
}

/// Wakes background threads.
pub(crate) struct Signal {
    flag: Mutex<bool>,
    cv: Condvar,
    shutdown: AtomicBool,
}

impl Signal {
    fn new() -> Arc<Self> {
        Arc::new(Signal {
            flag: Mutex::new(false),
            cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
        })
    }

    pub(crate) fn notify(&self) {
        *self.flag.lock() = true;
        self.cv.notify_all();
    }

    /// Waits for a notification or the timeout; false once shut down.
    fn wait(&self, timeout: Duration) -> bool {
        let mut f = self.flag.lock();
        if !*f && !self.shutdown.load(Ordering::SeqCst) {
            self.cv.wait_for(&mut f, timeout);
        }
        *f = false;
        !self.shutdown.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.notify();
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub seals: AtomicU64,
    pub merges: AtomicU64,
    pub index_builds: AtomicU64,
    pub graph_build_ms: AtomicU64,
    pub optimizer_errors: AtomicU64,
    pub last_optimizer_error: Mutex<Option<String>>,
}

pub(crate) struct Inner {
    pub name: String,
    pub dir: Arc<dyn Directory>,
    pub folder: PathBuf,
    /// The configuration as opened. Its `quantization` is not kept up to date: the current one
    /// is `WriterState::quantization` (`Collection::set_quantization`).
    pub config: CollectionConfig,
    pub writer: Mutex<Writer>,
    pub current: RwLock<Arc<View>>,
    commit: Mutex<CommitState>,
    commit_cv: Condvar,
    /// Serializes optimizer jobs (background thread and `optimize()`).
    pub jobs: Mutex<()>,
    pub signal: Arc<Signal>,
    /// Wakes the interval-fsync thread (separate, so it never eats the optimizer's wake-ups).
    sync_signal: Arc<Signal>,
    pub dropped: AtomicBool,
    pub stats: Stats,
    /// Snapshots in progress: while non-zero, files are not deleted but deferred.
    pub pins: AtomicUsize,
    /// Files and folders to delete once no snapshot reads them (`true` = folder).
    pub deferred: Mutex<Vec<(PathBuf, bool)>>,
    /// With WAL archiving on: WAL files wholly at or below this LSN are archived.
    pub archived_lsn: AtomicU64,
    pub archiving: AtomicBool,
    /// Checksums of files already uploaded by snapshots.
    pub hashes: crate::snapshot::HashCache,
    threads: Mutex<Vec<JoinHandle<()>>>,
    _lock: Arc<dyn LockGuard>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.signal.stop();
        self.sync_signal.stop();
        let me = std::thread::current().id();
        for t in self.threads.get_mut().drain(..) {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        if !self.dropped.load(Ordering::SeqCst) {
            let w = self.writer.get_mut();
            if let Err(e) = w.wal.sync() {
                tracing::error!(collection = %self.name, "final WAL sync failed: {e}");
            }
        }
    }
}

/// One write, as a value (see [`Collection::update`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Update {
    /// Insert or replace points.
    Upsert(Vec<Point>),
    /// Delete points.
    Delete(PointSelector),
    /// Merge into payloads (at `key` when given).
    SetPayload {
        /// Which points.
        selector: PointSelector,
        /// Keys to merge; `null` values remove keys.
        payload: Payload,
        /// Object path to merge at.
        key: Option<String>,
    },
    /// Replace payloads.
    OverwritePayload {
        /// Which points.
        selector: PointSelector,
        /// The new payload.
        payload: Payload,
    },
    /// Remove payload keys (paths).
    DeletePayloadKeys {
        /// Which points.
        selector: PointSelector,
        /// The keys.
        keys: Vec<String>,
    },
    /// Remove whole payloads.
    ClearPayload(PointSelector),
    /// Declare a payload index.
    CreatePayloadIndex {
        /// The field (path).
        field: String,
        /// The index kind.
        kind: PayloadIndexKind,
    },
    /// Remove a payload index declaration.
    DeletePayloadIndex {
        /// The field (path).
        field: String,
    },
}

fn validate_vector(v: &[f32], dim: usize, point: Option<PointId>) -> Result<()> {
    if v.len() != dim {
        return Err(Error::DimensionMismatch {
            point,
            expected: dim,
            got: v.len(),
        });
    }
    if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(Error::NonFiniteVector {
            point,
            index,
            value,
        });
    }
    Ok(())
}

fn check_batch(n: usize, limit: usize, what: &'static str) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid_argument(what, "must not be empty"));
    }
    if n > limit {
        return Err(Error::invalid_argument(
            what,
            format!("{n} items is over the limit of {limit} per request"),
        ));
    }
    Ok(())
}

/// Removes leftovers of interrupted work: segment folders the manifest does not list, partial
/// folders, stale tombstone and index files.
fn collect_garbage(dir: &dyn Directory, folder: &Path, manifest: &Manifest) -> Result<()> {
    let segs = folder.join(SEGMENTS_DIR);
    let shown = dir.describe(&segs);
    dir.create_dir_all(&segs).at(&shown)?;
    let live: HashMap<String, &crate::manifest::ManifestSegment> = manifest
        .segments
        .iter()
        .map(|s| (sealed::folder_name(s.id), s))
        .collect();
    let mut removed = false;
    for entry in dir.list(&segs).at(&shown)? {
        let path = segs.join(&entry.name);
        match live.get(&entry.name) {
            None => {
                tracing::info!(path = %dir.describe(&path).display(), "removing unreferenced segment data");
                if entry.is_dir {
                    dir.remove_dir_all(&path).at(&dir.describe(&path))?;
                } else {
                    dir.remove_file(&path).at(&dir.describe(&path))?;
                }
                removed = true;
            }
            Some(ms) => {
                let keep_index: Vec<String> = ms
                    .indexes
                    .iter()
                    .map(|(f, k)| crate::payload::index::file_name(f, *k))
                    .collect();
                for file in dir.list(&path).at(&dir.describe(&path))? {
                    let stale_tomb = file.name.starts_with("tombstones-")
                        && Some(&file.name) != ms.tombstones.as_ref();
                    let stale_index =
                        file.name.starts_with("index-") && !keep_index.contains(&file.name);
                    if stale_tomb || stale_index || file.name.ends_with(".tmp") {
                        let p = path.join(&file.name);
                        dir.remove_file(&p).at(&dir.describe(&p))?;
                    }
                }
            }
        }
    }
    if removed {
        dir.sync_dir(&segs).at(&shown)?;
    }
    Ok(())
}

impl Collection {
    /// Opens the collection stored in `folder` (a manifest exists there).
    pub(crate) fn open(
        dir: Arc<dyn Directory>,
        folder: PathBuf,
        name: String,
        lock: Arc<dyn LockGuard>,
    ) -> Result<Collection> {
        let manifest = Manifest::read(&*dir, &folder)?;
        let config = manifest.config.clone();
        config.validate()?;
        collect_garbage(&*dir, &folder, &manifest)?;
        let mut sealed_entries = Vec::new();
        for ms in &manifest.segments {
            let seg_folder = folder.join(SEGMENTS_DIR).join(sealed::folder_name(ms.id));
            let seg = SealedSegment::open(
                &*dir,
                ms.id,
                &seg_folder,
                config.dimension,
                config.metric,
                ms.count,
                &ms.indexes,
                ms.graph,
                ms.codes.as_deref(),
                !config.hnsw.on_disk,
            )?;
            if config
                .quantization
                .as_ref()
                .is_some_and(|q| q.keep_in_ram())
            {
                seg.keep_in_ram();
            }
            let deletes = match &ms.tombstones {
                Some(f) => read_tombstones(&*dir, &seg_folder.join(f), ms.count)?,
                None => RoaringBitmap::new(),
            };
            sealed_entries.push(SegEntry::new(
                Arc::new(Segment::Sealed(seg)),
                deletes,
                ms.tombstones.clone(),
            ));
        }
        let mutable_id = manifest.next_segment_id;
        let mut state = WriterState {
            lsn: manifest.applied_lsn,
            applied_lsn: manifest.applied_lsn,
            next_segment_id: manifest.next_segment_id + 1,
            schema: Arc::new(manifest.schema.clone()),
            mutable: SegEntry::new(
                Arc::new(Segment::Mutable(MutableSegment::new(
                    mutable_id,
                    config.dimension,
                ))),
                RoaringBitmap::new(),
                None,
            ),
            frozen: None,
            frozen_lsn: 0,
            sealed: sealed_entries,
            quantization: config.quantization.clone(),
            requantize: manifest.requantize.clone(),
        };
        let mut replayed = 0u64;
        let wal = Wal::open(
            dir.clone(),
            &folder.join(WAL_DIR),
            config.wal.segment_bytes,
            manifest.applied_lsn,
            |lsn, op| {
                replayed += 1;
                state.apply(lsn, &op)
            },
        )?;
        state.lsn = wal.next_lsn() - 1;
        if replayed > 0 {
            tracing::info!(collection = %name, records = replayed, lsn = state.lsn, "replayed WAL");
        }
        let view = state.view();
        view.mutable().publish(view.mutable_len());
        let pos = wal.pos();
        let inner = Arc::new(Inner {
            name,
            dir,
            folder,
            commit: Mutex::new(CommitState {
                written: state.lsn,
                durable: state.lsn,
                durable_pos: pos,
                syncing: false,
                handle: Some(wal.sync_handle()),
                pending: VecDeque::new(),
                epoch: 0,
                ended: VecDeque::new(),
                error: None,
            }),
            writer: Mutex::new(Writer {
                state,
                wal,
                poisoned: None,
            }),
            current: RwLock::new(view),
            commit_cv: Condvar::new(),
            jobs: Mutex::new(()),
            signal: Signal::new(),
            sync_signal: Signal::new(),
            dropped: AtomicBool::new(false),
            stats: Stats::default(),
            pins: AtomicUsize::new(0),
            deferred: Mutex::new(Vec::new()),
            archived_lsn: AtomicU64::new(0),
            archiving: AtomicBool::new(false),
            hashes: Default::default(),
            threads: Mutex::new(Vec::new()),
            config,
            _lock: lock,
        });
        Self::spawn_threads(&inner)?;
        Ok(Collection { inner })
    }

    fn spawn_threads(inner: &Arc<Inner>) -> Result<()> {
        let mut threads = Vec::new();
        if inner.config.optimizer.background {
            let weak: Weak<Inner> = Arc::downgrade(inner);
            let signal = inner.signal.clone();
            let t = std::thread::Builder::new()
                .name(format!("deftech-opt-{}", inner.name))
                .spawn(move || optimizer::run(weak, signal))
                .map_err(|e| Error::io(&inner.folder, e))?;
            threads.push(t);
        }
        // The committer: syncs at the interval (`Interval`), or makes writes that did not wait
        // durable and visible (`Always`).
        let every = match inner.config.wal.fsync {
            FsyncPolicy::Interval(every) => Some(every),
            FsyncPolicy::Always => Some(Duration::from_secs(1)),
            FsyncPolicy::Never => None,
        };
        if let Some(every) = every {
            let weak: Weak<Inner> = Arc::downgrade(inner);
            let signal = inner.sync_signal.clone();
            let t = std::thread::Builder::new()
                .name(format!("deftech-sync-{}", inner.name))
                .spawn(move || {
                    while signal.wait(every) {
                        let Some(inner) = weak.upgrade() else { break };
                        let result = match inner.config.wal.fsync {
                            FsyncPolicy::Always => inner.commit_pending(),
                            _ => inner.sync_written(),
                        };
                        if let Err(e) = result {
                            tracing::error!(collection = %inner.name, "background WAL sync failed: {e}");
                        }
                    }
                })
                .map_err(|e| Error::io(&inner.folder, e))?;
            threads.push(t);
        }
        *inner.threads.lock() = threads;
        Ok(())
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The collection's configuration, with its current quantization
    /// ([`Collection::set_quantization`]).
    pub fn config(&self) -> CollectionConfig {
        let mut config = self.inner.config.clone();
        config.quantization = self.inner.writer.lock().state.quantization.clone();
        config
    }

    /// Changes the collection's quantization (Qdrant's `update_collection` with
    /// `quantization_config`), or removes it with `None`. The setting is durable when this
    /// returns, without waiting for an optimizer job in progress; segments sealed from then on
    /// are built with it, and the optimizer rewrites every existing sealed segment with it, one
    /// at a time, in the background (or in [`Collection::optimize`]). Until a segment is
    /// rewritten, searches use the codes it has.
    pub fn set_quantization(&self, quantization: Option<Quantization>) -> Result<()> {
        if let Some(q) = &quantization {
            q.validate()?;
        }
        let inner = &*self.inner;
        // Not waiting for a job in progress: a segment it builds with the old setting is listed
        // for another rewrite when it is swapped in.
        let mut w = inner.writer.lock();
        inner.check_writable(&w)?;
        if w.state.quantization == quantization {
            return Ok(());
        }
        let before = (w.state.quantization.clone(), w.state.requantize.clone());
        w.state.quantization = quantization;
        w.state.requantize = w.state.sealed.iter().map(|e| e.seg.id()).collect();
        let segments = optimizer::manifest_segments(&w.state.sealed);
        let written = w
            .state
            .manifest(&inner.config, w.state.applied_lsn, segments)
            .write(&*inner.dir, &inner.folder);
        if let Err(e) = written {
            if e.renamed {
                w.poison_unsure_manifest(&e.error);
            } else {
                (w.state.quantization, w.state.requantize) = before;
            }
            return Err(e.error);
        }
        drop(w);
        inner.signal.notify();
        Ok(())
    }

    /// Applies one write. With `wait`, returns once the write is durable (per the fsync
    /// policy) and visible to readers; without, once it is validated and appended to the WAL
    /// (under `FsyncPolicy::Always` it becomes visible when the background group commit has
    /// synced it, within milliseconds). Validation errors are returned either way, and a
    /// rejected write changes nothing.
    pub fn update(&self, update: Update, wait: bool) -> Result<Lsn> {
        let limits = &self.inner.config.limits;
        let lsn = match update {
            Update::Upsert(points) => {
                let data = self.prepare_points(points)?;
                self.inner.write(wait, |_, _| Ok(Op::Upsert(data)))?
            }
            Update::Delete(PointSelector::Ids(ids)) => {
                check_batch(ids.len(), limits.max_batch_points, "points")?;
                self.inner.write(wait, |_, _| Ok(Op::Delete(ids)))?
            }
            Update::Delete(selector @ PointSelector::Filter(_)) => {
                self.inner.write(wait, |inner, w| {
                    let ids = inner.resolve(w, &selector, false)?;
                    Ok(Op::Delete(ids))
                })?
            }
            Update::SetPayload {
                selector,
                payload,
                key,
            } => {
                if let Some(k) = &key {
                    crate::payload::parse_set_key(k)?;
                }
                self.check_patch(&payload)?;
                self.payload_op(wait, &selector, |ids| {
                    Ok(Op::SetPayload { ids, payload, key })
                })?
            }
            Update::OverwritePayload { selector, payload } => {
                self.check_patch(&payload)?;
                self.payload_op(wait, &selector, |ids| {
                    Ok(Op::OverwritePayload { ids, payload })
                })?
            }
            Update::DeletePayloadKeys { selector, keys } => {
                if keys.is_empty() {
                    return Err(Error::invalid_argument("keys", "must not be empty"));
                }
                for k in &keys {
                    JsonPath::parse(k).map_err(|e| Error::invalid_argument("keys", e))?;
                }
                self.payload_op(wait, &selector, |ids| {
                    Ok(Op::DeletePayloadKeys { ids, keys })
                })?
            }
            Update::ClearPayload(selector) => {
                self.payload_op(wait, &selector, |ids| Ok(Op::ClearPayload(ids)))?
            }
            Update::CreatePayloadIndex { field, kind } => {
                JsonPath::parse(&field).map_err(|e| Error::invalid_argument("field_name", e))?;
                let lsn = self
                    .inner
                    .write(wait, |_, _| Ok(Op::CreateIndex { field, kind }))?;
                self.inner.signal.notify();
                lsn
            }
            Update::DeletePayloadIndex { field } => {
                self.inner.write(wait, |_, _| Ok(Op::DropIndex { field }))?
            }
        };
        Ok(lsn)
    }

    fn prepare_points(&self, points: Vec<Point>) -> Result<Vec<PointData>> {
        let config = &self.inner.config;
        check_batch(points.len(), config.limits.max_batch_points, "points")?;
        let mut last: HashMap<PointId, usize> = HashMap::with_capacity(points.len());
        for (i, p) in points.iter().enumerate() {
            validate_vector(&p.vector, config.dimension, Some(p.id))?;
            last.insert(p.id, i);
        }
        let mut data = Vec::with_capacity(last.len());
        for (i, p) in points.into_iter().enumerate() {
            if last[&p.id] != i {
                continue;
            }
            let payload = match p.payload {
                serde_json::Value::Null => Payload::new(),
                serde_json::Value::Object(o) => o,
                other => {
                    return Err(Error::InvalidPayload {
                        point: p.id,
                        reason: format!("must be a JSON object, got {}", json_kind(&other)),
                    });
                }
            };
            self.inner.check_payload(p.id, &payload)?;
            let mut vector = p.vector;
            if config.metric == Metric::Cosine {
                distance::normalize(&mut vector);
            }
            data.push(PointData {
                id: p.id,
                vector,
                payload,
            });
        }
        Ok(data)
    }

    fn check_patch(&self, payload: &Payload) -> Result<()> {
        self.inner
            .check_payload(PointId::Num(0), payload)
            .map_err(|_| {
                Error::invalid_argument(
                    "payload",
                    format!(
                        "over the limit of {} bytes",
                        self.inner.config.limits.max_payload_bytes
                    ),
                )
            })
    }

    fn payload_op(
        &self,
        wait: bool,
        selector: &PointSelector,
        make: impl FnOnce(Vec<PointId>) -> Result<Op>,
    ) -> Result<Lsn> {
        self.inner.write(wait, |inner, w| {
            let ids = inner.resolve(w, selector, true)?;
            make(ids)
        })
    }

    /// Inserts or replaces points (vector and payload). Duplicate ids within one batch: the last
    /// one wins. The batch is validated whole first: a rejected batch changes nothing.
    pub fn upsert(&self, points: impl IntoIterator<Item = Point>) -> Result<Lsn> {
        self.update(Update::Upsert(points.into_iter().collect()), true)
    }

    /// Deletes points by id (ids that do not exist are ignored).
    pub fn delete(&self, ids: impl IntoIterator<Item = PointId>) -> Result<Lsn> {
        self.update(
            Update::Delete(PointSelector::Ids(ids.into_iter().collect())),
            true,
        )
    }

    /// Deletes every point matching `filter`.
    pub fn delete_by_filter(&self, filter: &Filter) -> Result<Lsn> {
        self.update(Update::Delete(PointSelector::Filter(filter.clone())), true)
    }

    /// Merges `payload` into the payload of the selected points (a `null` value removes the key).
    /// With `key`, merges into the object at that path instead. Missing ids are an error and
    /// nothing is changed.
    pub fn set_payload(
        &self,
        selector: impl Into<PointSelector>,
        payload: Payload,
        key: Option<&str>,
    ) -> Result<Lsn> {
        let update = Update::SetPayload {
            selector: selector.into(),
            payload,
            key: key.map(str::to_owned),
        };
        self.update(update, true)
    }

    /// Replaces the payload of the selected points.
    pub fn overwrite_payload(
        &self,
        selector: impl Into<PointSelector>,
        payload: Payload,
    ) -> Result<Lsn> {
        let update = Update::OverwritePayload {
            selector: selector.into(),
            payload,
        };
        self.update(update, true)
    }

    /// Removes keys (paths) from the payload of the selected points.
    pub fn delete_payload_keys(
        &self,
        selector: impl Into<PointSelector>,
        keys: &[&str],
    ) -> Result<Lsn> {
        let update = Update::DeletePayloadKeys {
            selector: selector.into(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        };
        self.update(update, true)
    }

    /// Removes the whole payload of the selected points.
    pub fn clear_payload(&self, selector: impl Into<PointSelector>) -> Result<Lsn> {
        self.update(Update::ClearPayload(selector.into()), true)
    }

    /// Declares a payload index on `field`. Sealed segments get the index file built in the
    /// background; until then filters on the field scan payloads, with identical results.
    pub fn create_payload_index(&self, field: &str, kind: PayloadIndexKind) -> Result<Lsn> {
        let update = Update::CreatePayloadIndex {
            field: field.to_owned(),
            kind,
        };
        self.update(update, true)
    }

    /// Removes a payload index declaration.
    pub fn delete_payload_index(&self, field: &str) -> Result<Lsn> {
        self.update(
            Update::DeletePayloadIndex {
                field: field.to_owned(),
            },
            true,
        )
    }

    /// Declared payload indexes.
    pub fn payload_schema(&self) -> BTreeMap<String, PayloadIndexKind> {
        (*self.inner.view().schema).clone()
    }

    fn query_vector(&self, v: &[f32]) -> Result<Vec<f32>> {
        validate_vector(v, self.inner.config.dimension, None)?;
        let mut q = v.to_vec();
        if self.inner.config.metric == Metric::Cosine {
            distance::normalize(&mut q);
        }
        Ok(q)
    }

    /// Nearest neighbours of `req.vector`, best first, with Qdrant's score conventions.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        self.inner.check_open()?;
        if req.limit == 0 {
            return Err(Error::invalid_argument("limit", "must be at least 1"));
        }
        if let Some(t) = req.score_threshold
            && !t.is_finite()
        {
            return Err(Error::invalid_argument(
                "score_threshold",
                format!("must be finite, got {t}"),
            ));
        }
        let q = self.query_vector(&req.vector)?;
        let view = self.inner.view();
        let filter = match &req.filter {
            Some(f) => Some(CompiledFilter::compile(f, &view.schema)?),
            None => None,
        };
        let k = req
            .limit
            .checked_add(req.offset)
            .ok_or_else(|| Error::invalid_argument("offset", "limit + offset overflows"))?;
        let metric = self.inner.config.metric;
        let hnsw = &self.inner.config.hnsw;
        let qp = req.params.quantization;
        if !(qp.oversampling.is_finite() && (1.0..=100.0).contains(&qp.oversampling)) {
            return Err(Error::invalid_argument(
                "params.quantization.oversampling",
                format!("must be between 1 and 100, got {}", qp.oversampling),
            ));
        }
        if req.params.hnsw_ef == Some(0) {
            return Err(Error::invalid_argument(
                "params.hnsw_ef",
                "must be at least 1",
            ));
        }
        let query = read::Query {
            metric,
            vector: &q,
            k,
            filter: filter.as_ref(),
            threshold: req.score_threshold,
            exact: req.params.exact,
            ef: req.params.hnsw_ef.unwrap_or(hnsw.ef_construct),
            full_scan_threshold: hnsw.full_scan_threshold,
            quant: req.params.quantization,
        };
        let cands = read::search(&view, &query)?;
        let page: Vec<_> = cands.into_iter().skip(req.offset).collect();
        read::materialize(
            &view,
            metric,
            &page,
            req.score_threshold,
            &req.with_payload,
            req.with_vector,
        )
    }

    /// Points by id, in the order asked, skipping ids that do not exist.
    pub fn get(
        &self,
        ids: &[PointId],
        with_payload: impl Into<PayloadSelector>,
        with_vector: bool,
    ) -> Result<Vec<Record>> {
        self.inner.check_open()?;
        read::get(&self.inner.view(), ids, &with_payload.into(), with_vector)
    }

    /// One page of points in id order (numeric ids first, then UUIDs).
    pub fn scroll(&self, req: &ScrollRequest) -> Result<ScrollResult> {
        self.inner.check_open()?;
        if req.limit == 0 {
            return Err(Error::invalid_argument("limit", "must be at least 1"));
        }
        let view = self.inner.view();
        let filter = match &req.filter {
            Some(f) => Some(CompiledFilter::compile(f, &view.schema)?),
            None => None,
        };
        read::scroll(
            &view,
            filter.as_ref(),
            req.offset,
            req.limit,
            &req.with_payload,
            req.with_vector,
        )
    }

    /// Number of live points matching `filter` (all points without one). Always exact.
    pub fn count(&self, filter: Option<&Filter>) -> Result<u64> {
        self.inner.check_open()?;
        let view = self.inner.view();
        let compiled = match filter {
            Some(f) => Some(CompiledFilter::compile(f, &view.schema)?),
            None => None,
        };
        read::count(&view, compiled.as_ref())
    }

    /// Makes every acknowledged write durable (fsyncs the WAL, whatever the policy).
    pub fn flush(&self) -> Result<()> {
        self.inner.check_open()?;
        let mut w = self.inner.writer.lock();
        self.inner.sync_locked(&mut w)
    }

    /// Seals the mutable segment (whatever its size), builds missing payload indexes, and
    /// merges and vacuums per the optimizer settings; returns when there is nothing left to do.
    pub fn optimize(&self) -> Result<()> {
        self.inner.check_open()?;
        optimizer::optimize_all(&self.inner)
    }

    /// Runs only merge and vacuum jobs (test knob).
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn optimize_merges_only(&self) -> Result<()> {
        optimizer::merge_only(&self.inner)
    }

    /// Seals the mutable segment without merging (test knob).
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn optimize_seal_only(&self) -> Result<()> {
        optimizer::seal_only(&self.inner)
    }

    /// The LSN of the last visible write.
    pub fn lsn(&self) -> Lsn {
        self.inner.view().lsn
    }

    /// Checks every sealed segment file's checksum (reads everything).
    pub fn verify(&self) -> Result<()> {
        let view = self.inner.view();
        for sv in &view.segments {
            if let Some(s) = sv.seg.as_sealed() {
                s.verify(&*self.inner.dir)?;
            }
        }
        Ok(())
    }

    /// Marks the handle dead after `Database::drop_collection`.
    /// Runs `remove` (which moves the collection's files away) with no optimizer job and no
    /// write in progress, then marks the handle dead. If `remove` fails, nothing changes.
    pub(crate) fn retire(&self, remove: impl FnOnce() -> Result<()>) -> Result<()> {
        let _jobs = self.inner.jobs.lock();
        let _writer = self.inner.writer.lock();
        remove()?;
        self.inner.dropped.store(true, Ordering::SeqCst);
        self.inner.signal.stop();
        self.inner.sync_signal.stop();
        Ok(())
    }

    /// Stops background threads and syncs the WAL.
    pub(crate) fn close(&self) -> Result<()> {
        self.inner.signal.stop();
        self.inner.sync_signal.stop();
        let threads: Vec<_> = self.inner.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        if self.inner.dropped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut w = self.inner.writer.lock();
        self.inner.sync_locked(&mut w)
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
