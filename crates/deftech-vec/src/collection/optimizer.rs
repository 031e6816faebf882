//! The optimizer: seals the mutable segment, builds payload indexes for existing segments,
//! vacuums mostly-deleted segments and merges small ones. Readers never wait for it: new
//! segments are built outside the writer lock and swapped in with one manifest write.
//!
//! Every job has a *boundary* LSN `B`: the new segment holds the input points minus those
//! deleted at or before `B`, and the manifest written at the swap covers `max(applied, B)`.
//! Deletes after `B` (including those that happen while the job runs) are carried over to the
//! new segment through the offset maps. Sealing uses the freeze LSN as `B`; merges use the
//! current `applied_lsn`, so a point whose deletion is only in the WAL is never dropped from the
//! files (replay may still need it).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use roaring::RoaringBitmap;

use super::state::SegEntry;
use super::{Inner, SEGMENTS_DIR, Signal};
use crate::error::{Error, IoContext, Result};
use crate::filter::eval::PayloadSchema;
use crate::hnsw;
use crate::manifest::ManifestSegment;
use crate::payload::JsonPath;
use crate::payload::index::{IndexBuilder, file_name as index_file_name};
use crate::quantization::{self, Quantization};
use crate::scorer::F32Vectors;
use crate::segment::writer::{SegmentBuilder, tombstone_file_name, write_tombstones};
use crate::segment::{MutableSegment, SealedSegment, Segment, sealed};
use crate::types::{Lsn, Payload};

const NONE: u32 = u32::MAX;

/// The background loop.
pub(crate) fn run(weak: Weak<Inner>, signal: Arc<Signal>) {
    let mut pause = Duration::from_secs(1);
    while signal.wait(pause) {
        let Some(inner) = weak.upgrade() else { break };
        pause = Duration::from_secs(1);
        for _ in 0..64 {
            if signal.shutdown.load(Ordering::SeqCst) || inner.dropped.load(Ordering::SeqCst) {
                break;
            }
            match step(&inner, false) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(collection = %inner.name, "optimizer job failed, will retry: {e}");
                    inner.stats.optimizer_errors.fetch_add(1, Ordering::Relaxed);
                    *inner.stats.last_optimizer_error.lock() = Some(e.to_string());
                    pause = Duration::from_secs(10);
                    break;
                }
            }
        }
    }
}

/// Runs jobs until none is left (sealing whatever the mutable segment holds).
pub(crate) fn optimize_all(inner: &Inner) -> Result<()> {
    let mut force = true;
    for _ in 0..1000 {
        if !step(inner, force)? {
            return Ok(());
        }
        force = false;
    }
    Ok(())
}

/// Runs merge and vacuum jobs only, leaving the mutable segment alone (test knob: merges while
/// the WAL holds writes the segments do not).
#[cfg(feature = "testing")]
pub(crate) fn merge_only(inner: &Inner) -> Result<()> {
    let _job = inner.jobs.lock();
    while merge(inner)? {
        inner.stats.merges.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Seals the mutable segment and does nothing else (test knob).
#[cfg(feature = "testing")]
pub(crate) fn seal_only(inner: &Inner) -> Result<()> {
    let _job = inner.jobs.lock();
    if seal(inner, true)? {
        inner.stats.seals.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Runs one job; false when there was nothing to do.
fn step(inner: &Inner, force_seal: bool) -> Result<bool> {
    let _job = inner.jobs.lock();
    if inner.dropped.load(Ordering::SeqCst) {
        return Ok(false);
    }
    if seal(inner, force_seal)? {
        inner.stats.seals.fetch_add(1, Ordering::Relaxed);
        return Ok(true);
    }
    if build_missing_index(inner)? {
        inner.stats.index_builds.fetch_add(1, Ordering::Relaxed);
        return Ok(true);
    }
    if merge(inner)? {
        inner.stats.merges.fetch_add(1, Ordering::Relaxed);
        return Ok(true);
    }
    Ok(false)
}

struct Input {
    seg: Arc<Segment>,
    drop: RoaringBitmap,
    len: u32,
}

fn segments_dir(inner: &Inner) -> PathBuf {
    inner.folder.join(SEGMENTS_DIR)
}

/// Writes the live points of `inputs` into a new sealed segment.
fn build(
    inner: &Inner,
    id: u64,
    inputs: &[Input],
    schema: &PayloadSchema,
) -> Result<(SealedSegment, Vec<Vec<u32>>, Option<Quantization>)> {
    let dir = &*inner.dir;
    let segs = segments_dir(inner);
    // The setting as the build starts; if `set_quantization` changes it meanwhile, the swap
    // lists the result for another rewrite.
    let quantization = inner.writer.lock().state.quantization.clone();
    let result = (|| {
        let cfg = &inner.config;
        let mut b = SegmentBuilder::new(dir, &segs, id, cfg.dimension, cfg.metric, schema)?;
        let mut maps = Vec::with_capacity(inputs.len());
        for input in inputs {
            let mut map = vec![NONE; input.len as usize];
            for off in 0..input.len {
                if input.drop.contains(off) {
                    continue;
                }
                map[off as usize] = b.count();
                match &*input.seg {
                    Segment::Mutable(m) => {
                        let meta = m.meta(off);
                        let json = serde_json::to_vec(&*meta.payload).expect("payload serializes");
                        b.add(
                            meta.id,
                            meta.version,
                            m.vector(off),
                            &json,
                            Some(&meta.payload),
                        )?;
                    }
                    Segment::Sealed(s) => {
                        b.add(
                            s.point_id(off)?,
                            s.version(off),
                            s.vector(off),
                            s.payload_bytes(off)?,
                            None,
                        )?;
                    }
                }
            }
            maps.push(map);
        }
        let count = b.finish()?;
        let folder = segs.join(sealed::folder_name(id));
        let mut seg = SealedSegment::open(
            dir,
            id,
            &folder,
            cfg.dimension,
            cfg.metric,
            count,
            schema,
            false,
            None,
            !cfg.hnsw.on_disk,
        )?;
        if let Some(q) = &quantization
            && count > 0
        {
            // Codes are learned from this segment's own vectors: merges re-learn them.
            let name = quantization::file_name(q);
            let tmp = folder.join(format!("{name}.tmp"));
            quantization::write(dir, &tmp, q, seg.vectors(), cfg.dimension)?;
            dir.rename(&tmp, &folder.join(name))
                .at(&dir.describe(&tmp))?;
            seg = seg.with_codes(dir, name, !cfg.hnsw.on_disk)?;
        }
        if count > 0 && count as usize >= cfg.hnsw.full_scan_threshold {
            let start = std::time::Instant::now();
            let tmp = folder.join(format!("{}.tmp", hnsw::FILE));
            let params = hnsw::Params {
                m: cfg.hnsw.m,
                ef_construct: cfg.hnsw.ef_construct,
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                seed: id,
            };
            hnsw::build(
                dir,
                &tmp,
                F32Vectors::new(cfg.metric, seg.vectors(), cfg.dimension),
                params,
            )?;
            dir.rename(&tmp, &folder.join(hnsw::FILE))
                .at(&dir.describe(&tmp))?;
            dir.sync_dir(&folder).at(&dir.describe(&folder))?;
            seg = seg.with_graph(dir, !cfg.hnsw.on_disk)?;
            inner
                .stats
                .graph_build_ms
                .fetch_add(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            tracing::debug!(segment = id, points = count, elapsed = ?start.elapsed(), "built HNSW graph");
        }
        dir.sync_dir(&folder).at(&dir.describe(&folder))?;
        if quantization.as_ref().is_some_and(|q| q.keep_in_ram()) {
            seg.keep_in_ram();
        }
        Ok((seg, maps, quantization.clone()))
    })();
    if result.is_err() {
        SegmentBuilder::abandon(dir, &segs, id);
        let _ = dir.remove_dir_all(&segs.join(sealed::folder_name(id)));
    }
    result
}

/// The manifest entries of the current sealed segments.
pub(crate) fn manifest_segments(entries: &[SegEntry]) -> Vec<ManifestSegment> {
    entries
        .iter()
        .map(|e| {
            let s = e.seg.as_sealed().expect("sealed");
            ManifestSegment {
                id: s.id(),
                count: s.count(),
                tombstones: e.tombstone_file.clone(),
                indexes: s.indexed_fields().map(|(f, k)| (f.clone(), k)).collect(),
                graph: s.graph().is_some(),
                codes: s.codes_file(),
            }
        })
        .collect()
}

/// Swaps `inputs` (the frozen segment, or sealed segments by id) for `new_seg` and writes the
/// manifest covering `max(applied, boundary)`.
fn swap(
    inner: &Inner,
    frozen: bool,
    merged_ids: &[u64],
    new_seg: SealedSegment,
    maps: Vec<Vec<u32>>,
    boundary: Lsn,
    built_with: &Option<Quantization>,
) -> Result<()> {
    let dir = &*inner.dir;
    let mut w = inner.writer.lock();
    inner.sync_locked(&mut w)?;
    let state = &mut w.state;
    let new_applied = state.applied_lsn.max(boundary);

    // Deletes after the boundary, carried into the new segment.
    let mut deletes = RoaringBitmap::new();
    let mut pending = Vec::new();
    {
        let inputs: Vec<&SegEntry> = if frozen {
            vec![state.frozen.as_ref().expect("frozen segment being sealed")]
        } else {
            merged_ids
                .iter()
                .map(|id| {
                    state
                        .sealed
                        .iter()
                        .find(|e| e.seg.id() == *id)
                        .expect("merge inputs stay until the swap")
                })
                .collect()
        };
        for (k, e) in inputs.iter().enumerate() {
            for &(lsn, off) in &e.pending {
                if lsn > boundary {
                    let new = maps[k][off as usize];
                    assert_ne!(new, NONE, "a point deleted after the boundary was kept");
                    deletes.insert(new);
                    pending.push((lsn, new));
                }
            }
        }
        pending.sort_unstable();
    }

    // Tombstone files of the other segments, as of the new applied LSN.
    let mut new_tombs: Vec<(usize, String)> = Vec::new();
    let write_result = (|| {
        for (i, e) in state.sealed.iter().enumerate() {
            if merged_ids.contains(&e.seg.id()) || !e.pending.iter().any(|&(l, _)| l <= new_applied)
            {
                continue;
            }
            let s = e.seg.as_sealed().expect("sealed");
            let name = tombstone_file_name(new_applied);
            write_tombstones(
                dir,
                &s.folder().join(&name),
                &e.deletes_up_to(new_applied),
                s.count(),
                new_applied,
            )?;
            dir.sync_dir(s.folder()).at(&dir.describe(s.folder()))?;
            new_tombs.push((i, name));
        }
        let mut segments: Vec<ManifestSegment> = Vec::new();
        for (i, ms) in manifest_segments(&state.sealed).into_iter().enumerate() {
            if merged_ids.contains(&ms.id) {
                continue;
            }
            let tombstones = new_tombs
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, n)| n.clone())
                .or(ms.tombstones);
            segments.push(ManifestSegment { tombstones, ..ms });
        }
        // A segment whose points were all deleted is not kept.
        if new_seg.count() > 0 {
            segments.push(ManifestSegment {
                id: new_seg.id(),
                count: new_seg.count(),
                tombstones: None,
                indexes: new_seg
                    .indexed_fields()
                    .map(|(f, k)| (f.clone(), k))
                    .collect(),
                graph: new_seg.graph().is_some(),
                codes: new_seg.codes_file(),
            });
        }
        let mut manifest = state.manifest(&inner.config, new_applied, segments);
        // Built while `set_quantization` changed the setting: rewritten again later.
        if new_seg.count() > 0 && *built_with != state.quantization {
            manifest.requantize.push(new_seg.id());
        }
        Ok(manifest)
    })();
    let cleanup = |new_tombs: &[(usize, String)], state: &super::state::WriterState| {
        for (i, name) in new_tombs {
            let s = state.sealed[*i].seg.as_sealed().expect("sealed");
            let _ = dir.remove_file(&s.folder().join(name));
        }
        let _ = dir.remove_dir_all(&segments_dir(inner).join(sealed::folder_name(new_seg.id())));
    };
    let manifest = match write_result {
        Ok(m) => m,
        Err(e) => {
            cleanup(&new_tombs, state);
            return Err(e);
        }
    };
    // If the new manifest is in place but not durable, either manifest may be the one found
    // after a crash: switch in memory, keep every file, and refuse writes until reopened.
    let mut unsure = None;
    if let Err(e) = manifest.write(dir, &inner.folder) {
        if !e.renamed {
            cleanup(&new_tombs, state);
            return Err(e.error);
        }
        unsure = Some(e.error);
    }

    // The manifest is durable: switch the in-memory state.
    let mut garbage: Vec<PathBuf> = Vec::new();
    for (i, name) in new_tombs {
        let e = &mut state.sealed[i];
        let s = e.seg.as_sealed().expect("sealed");
        if let Some(old) = e.tombstone_file.replace(name) {
            garbage.push(s.folder().join(old));
        }
        e.pending.retain(|&(l, _)| l > new_applied);
    }
    let mut removed_folders = Vec::new();
    state.sealed.retain(|e| {
        let keep = !merged_ids.contains(&e.seg.id());
        if !keep {
            removed_folders.push(e.seg.as_sealed().expect("sealed").folder().to_owned());
        }
        keep
    });
    if frozen {
        state.frozen = None;
    }
    let empty_folder = (new_seg.count() == 0).then(|| new_seg.folder().to_owned());
    if new_seg.count() > 0 {
        let mut entry = SegEntry::new(Arc::new(Segment::Sealed(new_seg)), deletes, None);
        entry.pending = pending;
        state.sealed.push(entry);
    }
    state.applied_lsn = new_applied;
    state.requantize.clone_from(&manifest.requantize);
    let view = state.view();
    inner.publish(view);
    if let Some(e) = unsure {
        w.poison_unsure_manifest(&e);
        return Err(e);
    }
    // Files a snapshot in progress still reads are deleted when it is done (decided under the
    // writer lock, which captures also take).
    let pinned = inner.pins.load(Ordering::SeqCst) > 0;
    if !pinned && let Err(e) = w.wal.remove_covered(inner.removable_wal(new_applied)) {
        tracing::warn!(collection = %inner.name, "could not remove covered WAL files: {e}");
    }
    let mut doomed: Vec<(PathBuf, bool)> = garbage.into_iter().map(|f| (f, false)).collect();
    doomed.extend(
        empty_folder
            .into_iter()
            .chain(removed_folders)
            .map(|f| (f, true)),
    );
    if pinned {
        inner.deferred.lock().extend(doomed);
        doomed = Vec::new();
    }
    drop(w);
    inner.delete_files(doomed);
    if !frozen && !merged_ids.is_empty() {
        let _ = dir.sync_dir(&segments_dir(inner));
    }
    Ok(())
}

/// Seals the mutable segment when it is large enough (or `force` and non-empty), or finishes
/// sealing a segment frozen by an earlier failed attempt.
fn seal(inner: &Inner, force: bool) -> Result<bool> {
    let (input, boundary, new_id, schema) = {
        let mut w = inner.writer.lock();
        if w.poisoned.is_some() {
            return Ok(false);
        }
        if w.state.frozen.is_none() {
            let written = w.state.mutable.len() as usize;
            let need = if force {
                written > 0
            } else {
                written >= inner.config.optimizer.seal_threshold
            };
            if !need {
                return Ok(false);
            }
            inner.sync_locked(&mut w)?;
            let id = w.state.next_segment_id;
            w.state.next_segment_id += 1;
            let fresh = SegEntry::new(
                Arc::new(Segment::Mutable(MutableSegment::new(
                    id,
                    inner.config.dimension,
                ))),
                RoaringBitmap::new(),
                None,
            );
            let old = std::mem::replace(&mut w.state.mutable, fresh);
            w.state.frozen = Some(old);
            w.state.frozen_lsn = w.state.lsn;
            let view = w.state.view();
            inner.publish(view);
        }
        let boundary = w.state.frozen_lsn;
        let f = w.state.frozen.as_ref().expect("frozen");
        let input = Input {
            seg: f.seg.clone(),
            drop: f.deletes_up_to(boundary),
            len: f.len(),
        };
        let id = w.state.next_segment_id;
        w.state.next_segment_id += 1;
        (input, boundary, id, w.state.schema.clone())
    };
    let (seg, maps, built_with) = build(inner, new_id, std::slice::from_ref(&input), &schema)?;
    tracing::debug!(collection = %inner.name, segment = new_id, points = seg.count(), "sealed mutable segment");
    swap(inner, true, &[], seg, maps, boundary, &built_with)?;
    Ok(true)
}

/// Picks sealed segments to vacuum (one mostly-deleted segment) or merge (the smallest).
/// A chosen merge: inputs, their segment ids, the boundary, the new id, the schema.
type MergePlan = (Vec<Input>, Vec<u64>, Lsn, u64, Arc<PayloadSchema>);

fn pick_merge(inner: &Inner) -> Option<MergePlan> {
    let mut w = inner.writer.lock();
    if w.poisoned.is_some() {
        return None;
    }
    let cfg = &inner.config.optimizer;
    let applied = w.state.applied_lsn;
    let sealed = &w.state.sealed;
    let durable_deleted = |e: &SegEntry| e.deletes_up_to(applied).len();
    let mut chosen: Vec<usize> = Vec::new();
    if let Some(i) = sealed.iter().position(|e| {
        let d = durable_deleted(e);
        d >= cfg.vacuum_min_deleted as u64
            && d as f64 > cfg.vacuum_deleted_ratio * f64::from(e.len())
    }) {
        chosen.push(i);
    } else if let Some(i) = sealed
        .iter()
        .position(|e| w.state.requantize.contains(&e.seg.id()))
    {
        // Written under an earlier quantization setting: rewritten alone, like a vacuum.
        chosen.push(i);
    } else if sealed.len() > cfg.max_segments {
        let mut by_size: Vec<(u64, usize)> = sealed
            .iter()
            .enumerate()
            .map(|(i, e)| (u64::from(e.len()) - durable_deleted(e), i))
            .collect();
        by_size.sort_unstable();
        let mut total = 0u64;
        for (live, i) in by_size {
            if chosen.len() >= 2 && total + live > cfg.max_segment_points as u64 {
                break;
            }
            total += live;
            chosen.push(i);
        }
        if chosen.len() < 2 || total > cfg.max_segment_points as u64 {
            return None;
        }
    } else {
        return None;
    }
    chosen.sort_unstable();
    let inputs = chosen
        .iter()
        .map(|&i| {
            let e = &sealed[i];
            Input {
                seg: e.seg.clone(),
                drop: e.deletes_up_to(applied),
                len: e.len(),
            }
        })
        .collect();
    let ids = chosen.iter().map(|&i| sealed[i].seg.id()).collect();
    let id = w.state.next_segment_id;
    w.state.next_segment_id += 1;
    Some((inputs, ids, applied, id, w.state.schema.clone()))
}

fn merge(inner: &Inner) -> Result<bool> {
    let Some((inputs, ids, boundary, new_id, schema)) = pick_merge(inner) else {
        return Ok(false);
    };
    let (seg, maps, built_with) = build(inner, new_id, &inputs, &schema)?;
    tracing::debug!(collection = %inner.name, inputs = ?ids, segment = new_id, points = seg.count(), "merged segments");
    swap(inner, false, &ids, seg, maps, boundary, &built_with)?;
    Ok(true)
}

/// Builds one missing payload index file for an existing sealed segment.
fn build_missing_index(inner: &Inner) -> Result<bool> {
    let target = {
        let w = inner.writer.lock();
        if w.poisoned.is_some() {
            return Ok(false);
        }
        let schema = w.state.schema.clone();
        w.state.sealed.iter().find_map(|e| {
            let s = e.seg.as_sealed().expect("sealed");
            schema
                .iter()
                .find(|(f, k)| s.index(f).map(|i| i.kind()) != Some(**k))
                .map(|(f, k)| (e.seg.clone(), f.clone(), *k))
        })
    };
    let Some((seg, field, kind)) = target else {
        return Ok(false);
    };
    let s = seg.as_sealed().expect("sealed");
    let dir = &*inner.dir;
    let name = index_file_name(&field, kind);
    let tmp = s.folder().join(format!("{name}.tmp"));
    let path =
        JsonPath::parse(&field).map_err(|e| Error::InvalidFilter(format!("bad index key: {e}")))?;
    let mut b = IndexBuilder::new(kind, path);
    for off in 0..s.count() {
        let bytes = s.payload_bytes(off)?;
        if !bytes.is_empty() {
            let p: Payload = serde_json::from_slice(bytes).map_err(|e| {
                Error::corrupted(dir.describe(s.folder()), 0, format!("payload {off}: {e}"))
            })?;
            b.add(off, &p);
        }
    }
    b.write(dir, &tmp, s.count())?;
    dir.rename(&tmp, &s.folder().join(&name))
        .at(&dir.describe(&tmp))?;
    dir.sync_dir(s.folder()).at(&dir.describe(s.folder()))?;

    let mut w = inner.writer.lock();
    // Publishing a view must not expose writes that are not durable yet.
    inner.sync_locked(&mut w)?;
    let state = &mut w.state;
    let Some(i) = state.sealed.iter().position(|e| Arc::ptr_eq(&e.seg, &seg)) else {
        return Ok(true); // Merged away meanwhile; the next open removes the file.
    };
    if state.schema.get(&field) != Some(&kind) {
        return Ok(true);
    }
    let updated = s.with_index(dir, &field, kind)?;
    let mut segments = manifest_segments(&state.sealed);
    segments[i].indexes.insert(field.clone(), kind);
    state
        .manifest(&inner.config, state.applied_lsn, segments)
        .write(dir, &inner.folder)
        .map_err(|e| {
            if e.renamed {
                w.poison_unsure_manifest(&e.error);
            }
            e.error
        })?;
    let state = &mut w.state;
    state.sealed[i].seg = Arc::new(Segment::Sealed(updated));
    let view = state.view();
    inner.publish(view);
    tracing::debug!(collection = %inner.name, field = %field, kind = kind.name(), "built payload index");
    Ok(true)
}
