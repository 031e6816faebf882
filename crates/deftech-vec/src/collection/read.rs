//! Reads over a [`View`]: exact search, get, scroll, count. Readers never take the writer lock.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use crate::distance;
use crate::error::Result;
use crate::filter::CompiledFilter;
use crate::filter::plan::{Plan, plan};
use crate::hnsw;
use crate::request::{PayloadSelector, ScrollResult};
use crate::scorer::{F32Vectors, Scorer};
use crate::segment::{SegView, Segment};
use crate::types::{Metric, Payload, PointId, Record, ScoredPoint};

use super::state::View;

/// A candidate: internal distance, segment index in the view, offset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cand {
    pub dist: f32,
    pub seg: usize,
    pub off: u32,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.dist
            .total_cmp(&o.dist)
            .then(self.seg.cmp(&o.seg))
            .then(self.off.cmp(&o.off))
    }
}

/// Keeps the `k` smallest candidates.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Cand>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    /// Would a candidate at `dist` enter?
    #[inline]
    pub(crate) fn admits(&self, dist: f32) -> bool {
        self.heap.len() < self.k
            || self
                .heap
                .peek()
                .is_some_and(|w| dist.total_cmp(&w.dist) == Ordering::Less)
    }

    #[inline]
    pub(crate) fn push(&mut self, c: Cand) {
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && c < *worst
        {
            *worst = c;
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<Cand> {
        self.heap.into_sorted_vec()
    }
}

/// Filter evaluation for one segment: the plan from its indexes plus the per-point check.
pub(crate) struct SegFilter<'a> {
    pub plan: Plan,
    filter: &'a CompiledFilter,
}

impl<'a> SegFilter<'a> {
    pub(crate) fn new(
        filter: &'a CompiledFilter,
        sv: &SegView,
        schema_ok: &dyn Fn(&str, crate::payload::PayloadIndexKind) -> bool,
    ) -> Result<Self> {
        let plan = match &*sv.seg {
            Segment::Sealed(s) => {
                let src = SchemaGated {
                    seg: s,
                    ok: schema_ok,
                };
                plan(filter, &src)?
            }
            Segment::Mutable(_) => Plan {
                candidates: None,
                exact: false,
            },
        };
        Ok(SegFilter { plan, filter })
    }

    /// Does the live point at `off` pass? (Candidates already restricted by the plan.)
    pub(crate) fn check(&self, sv: &SegView, off: u32) -> Result<bool> {
        if self.plan.exact {
            return Ok(true);
        }
        let id = sv.point_id(off)?;
        if !self.filter.needs_payload() {
            return Ok(self.filter.matches(Some(id), &Payload::new()));
        }
        let payload = sv.payload(off)?;
        Ok(self.filter.matches(Some(id), &payload))
    }
}

/// Uses a segment's index only if the collection's schema still declares it with that kind.
struct SchemaGated<'a> {
    seg: &'a crate::segment::SealedSegment,
    ok: &'a dyn Fn(&str, crate::payload::PayloadIndexKind) -> bool,
}

impl crate::filter::plan::IndexSource for SchemaGated<'_> {
    fn index(&self, key: &str) -> Option<&crate::payload::index::SealedIndex> {
        self.seg.index(key).filter(|i| (self.ok)(key, i.kind()))
    }
    fn offsets_of(&self, ids: &HashSet<PointId>) -> roaring::RoaringBitmap {
        crate::filter::plan::IndexSource::offsets_of(self.seg, ids)
    }
    fn universe(&self) -> roaring::RoaringBitmap {
        crate::filter::plan::IndexSource::universe(self.seg)
    }
}

pub(crate) fn seg_filter<'a>(
    view: &View,
    filter: &'a CompiledFilter,
    sv: &SegView,
) -> Result<SegFilter<'a>> {
    let schema = view.schema.clone();
    SegFilter::new(filter, sv, &move |k, kind| schema.get(k) == Some(&kind))
}

/// Calls `f(off)` for every live offset that passes the filter's plan, in offset order
/// (per-point checks are left to the caller via [`SegFilter::check`]).
pub(crate) fn for_each_candidate(
    sv: &SegView,
    sf: Option<&SegFilter<'_>>,
    mut f: impl FnMut(u32) -> Result<()>,
) -> Result<()> {
    match sf.and_then(|s| s.plan.candidates.as_ref()) {
        Some(cands) if sv.deletes.is_empty() => {
            for off in cands.iter().take_while(|&o| o < sv.len) {
                f(off)?;
            }
        }
        Some(cands) => {
            for off in (cands - &*sv.deletes).iter().take_while(|&o| o < sv.len) {
                f(off)?;
            }
        }
        None => {
            let no_deletes = sv.deletes.is_empty();
            for off in 0..sv.len {
                if no_deletes || !sv.deletes.contains(off) {
                    f(off)?;
                }
            }
        }
    }
    Ok(())
}

/// Distance bound implied by a score threshold (candidates at or past it are dropped).
fn distance_bound(metric: Metric, threshold: Option<f32>) -> Option<f32> {
    threshold.map(|t| match metric {
        Metric::Cosine | Metric::Dot => -t,
        Metric::Euclid => {
            if t <= 0.0 {
                f32::NEG_INFINITY
            } else {
                t * t
            }
        }
        Metric::Manhattan => t,
    })
}

/// Exact search of one segment into `top`.
pub(crate) fn scan_segment(
    metric: Metric,
    query: &[f32],
    seg_index: usize,
    sv: &SegView,
    sf: Option<&SegFilter<'_>>,
    bound: Option<f32>,
    top: &mut TopK,
) -> Result<()> {
    let dim = query.len();
    let op = crate::scorer::Op::for_metric(metric);
    let consider = |off: u32, v: &[f32], top: &mut TopK| -> Result<()> {
        let d = op.distance(query, v);
        if bound.is_some_and(|b| d >= b) || !top.admits(d) {
            return Ok(());
        }
        if let Some(sf) = sf
            && !sf.check(sv, off)?
        {
            return Ok(());
        }
        top.push(Cand {
            dist: d,
            seg: seg_index,
            off,
        });
        Ok(())
    };
    let has_candidates = sf.is_some_and(|s| s.plan.candidates.is_some());
    if has_candidates {
        return for_each_candidate(sv, sf, |off| consider(off, sv.vector(off), top));
    }
    match &*sv.seg {
        Segment::Sealed(s) => {
            let all = &s.vectors()[..sv.len as usize * dim];
            let no_deletes = sv.deletes.is_empty();
            for (off, v) in all.chunks_exact(dim).enumerate() {
                let off = off as u32;
                if no_deletes || !sv.deletes.contains(off) {
                    consider(off, v, top)?;
                }
            }
        }
        Segment::Mutable(m) => {
            for (first, run) in m.vector_runs(sv.len as usize) {
                for (k, v) in run.chunks_exact(dim).enumerate() {
                    let off = (first + k) as u32;
                    if !sv.deletes.contains(off) {
                        consider(off, v, top)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Fills in results for the chosen candidates.
pub(crate) fn materialize(
    view: &View,
    metric: Metric,
    cands: &[Cand],
    threshold: Option<f32>,
    with_payload: &PayloadSelector,
    with_vector: bool,
) -> Result<Vec<ScoredPoint>> {
    let mut out = Vec::with_capacity(cands.len());
    for c in cands {
        let sv = &view.segments[c.seg];
        let score = distance::to_score(metric, c.dist);
        if !distance::passes_threshold(metric, score, threshold) {
            continue;
        }
        out.push(ScoredPoint {
            id: sv.point_id(c.off)?,
            version: sv.version(c.off),
            score,
            payload: if with_payload.is_none() {
                None
            } else {
                with_payload.select(&*sv.payload(c.off)?)
            },
            vector: with_vector.then(|| sv.vector(c.off).to_vec()),
        });
    }
    Ok(out)
}

/// Points sampled to estimate the selectivity of a filter no index answers.
const SAMPLE: u32 = 128;

/// How one segment is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// Every (allowed) point is scored.
    Scan,
    /// The HNSW graph is traversed.
    Graph,
}

/// The planner: the graph unless asked for an exact search, the segment has no graph, or a
/// filter's allow set is small enough that scoring every allowed point is cheaper than the
/// graph walk. A filtered walk visits about `1 / selectivity` times more nodes than an
/// unfiltered one (which scores on the order of 100 · ef points), so scanning `a` allowed points
/// of `n` wins while `a < n · 100 · ef / a`, that is `a < sqrt(100 · ef · n)`; and always below
/// `full_scan_threshold`. The scan is exact, so small allow sets also get perfect recall.
/// When no index answers the filter, the allow set is estimated from a sample of 128 points.
pub(crate) fn choose(
    sv: &SegView,
    sf: Option<&SegFilter<'_>>,
    exact: bool,
    full_scan_threshold: usize,
    ef: usize,
) -> Method {
    let Some(s) = sv.seg.as_sealed() else {
        return Method::Scan;
    };
    if exact || s.graph().is_none() {
        return Method::Scan;
    }
    let Some(sf) = sf else {
        return Method::Graph;
    };
    let allowed = match &sf.plan.candidates {
        Some(c) => c.len() as f64,
        None if sf.plan.exact => return Method::Graph,
        // No index answers the filter: estimate its selectivity on an even sample.
        None => {
            let n = s.count();
            let step = (n / SAMPLE).max(1);
            let (mut seen, mut passed) = (0u32, 0u32);
            for off in (0..n).step_by(step as usize).take(SAMPLE as usize) {
                if sv.is_live(off) {
                    seen += 1;
                    passed += u32::from(sf.check(sv, off).unwrap_or(false));
                }
            }
            if seen == 0 {
                0.0
            } else {
                f64::from(passed) / f64::from(seen) * sv.live_count() as f64
            }
        }
    };
    let crossover = (100.0 * ef as f64 * f64::from(s.count())).sqrt();
    if allowed < full_scan_threshold as f64 || allowed < crossover {
        return Method::Scan;
    }
    Method::Graph
}

/// Graph search of one sealed segment into `top`: on the quantized codes when the segment has
/// them (keeping `k × oversampling` candidates, rescored on the mapped `f32` vectors), on the
/// `f32` vectors otherwise.
fn graph_segment(
    q: &Query<'_>,
    seg_index: usize,
    sv: &SegView,
    sf: Option<&SegFilter<'_>>,
    bound: Option<f32>,
    top: &mut TopK,
) -> Result<()> {
    let s = sv
        .seg
        .as_sealed()
        .expect("graph search of a sealed segment");
    let graph = s.graph().expect("graph search needs a graph");
    let failure = std::cell::RefCell::new(None);
    let accept = |i: u32| -> bool {
        if sv.deletes.contains(i) {
            return false;
        }
        let Some(sf) = sf else { return true };
        if let Some(c) = &sf.plan.candidates
            && !c.contains(i)
        {
            return false;
        }
        match sf.check(sv, i) {
            Ok(pass) => pass,
            Err(e) => {
                failure.borrow_mut().get_or_insert(e);
                false
            }
        }
    };
    let ef = q.ef.max(q.k);
    let n = s.count() as usize;
    let exact = F32Vectors::new(q.metric, s.vectors(), s.dim()).query(q.vector);
    let mut out = Vec::new();
    match s.codes() {
        Some(codes) if !q.quant.ignore => {
            let keep = ((q.k as f32) * q.quant.oversampling.max(1.0)).ceil() as usize;
            let scorer = codes.query(q.metric, q.vector);
            hnsw::with_context(|ctx| {
                hnsw::search(ctx, n, graph, &scorer, ef.max(keep), &accept, &mut out)
            });
            out.truncate(keep);
            if q.quant.rescore || !scorer.estimates_the_metric() {
                for c in &mut out {
                    c.0 = exact.distance(c.1);
                }
            }
        }
        _ => hnsw::with_context(|ctx| hnsw::search(ctx, n, graph, &exact, ef, &accept, &mut out)),
    }
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    for (dist, off) in out {
        if bound.is_none_or(|b| dist < b) {
            top.push(Cand {
                dist,
                seg: seg_index,
                off,
            });
        }
    }
    Ok(())
}

/// What a search asks for, resolved against the collection's configuration.
pub(crate) struct Query<'a> {
    pub metric: Metric,
    pub vector: &'a [f32],
    /// `limit + offset`.
    pub k: usize,
    pub filter: Option<&'a CompiledFilter>,
    pub threshold: Option<f32>,
    pub exact: bool,
    pub ef: usize,
    pub full_scan_threshold: usize,
    pub quant: crate::quantization::QuantizationParams,
}

/// Searches every segment of the view (graph or scan per segment) and merges the results.
pub(crate) fn search(view: &View, q: &Query<'_>) -> Result<Vec<Cand>> {
    let bound = distance_bound(q.metric, q.threshold);
    let mut top = TopK::new(q.k);
    for (i, sv) in view.segments.iter().enumerate() {
        if sv.len == 0 {
            continue;
        }
        let sf = match q.filter {
            Some(f) => Some(seg_filter(view, f, sv)?),
            None => None,
        };
        match choose(
            sv,
            sf.as_ref(),
            q.exact,
            q.full_scan_threshold,
            q.ef.max(q.k),
        ) {
            Method::Scan => scan_segment(q.metric, q.vector, i, sv, sf.as_ref(), bound, &mut top)?,
            Method::Graph => graph_segment(q, i, sv, sf.as_ref(), bound, &mut top)?,
        }
    }
    Ok(top.into_sorted())
}

fn record(
    sv: &SegView,
    off: u32,
    with_payload: &PayloadSelector,
    with_vector: bool,
) -> Result<Record> {
    Ok(Record {
        id: sv.point_id(off)?,
        version: sv.version(off),
        payload: if with_payload.is_none() {
            None
        } else {
            with_payload.select(&*sv.payload(off)?)
        },
        vector: with_vector.then(|| sv.vector(off).to_vec()),
    })
}

/// The visible live point with this id.
pub(crate) fn find(view: &View, id: PointId) -> Option<(&SegView, u32)> {
    view.segments
        .iter()
        .find_map(|sv| sv.find(id).map(|off| (sv, off)))
}

/// Points by id, in request order, skipping missing and repeated ids.
pub(crate) fn get(
    view: &View,
    ids: &[PointId],
    with_payload: &PayloadSelector,
    with_vector: bool,
) -> Result<Vec<Record>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &id in ids {
        if !seen.insert(id) {
            continue;
        }
        if let Some((sv, off)) = find(view, id) {
            out.push(record(sv, off, with_payload, with_vector)?);
        }
    }
    Ok(out)
}

/// Sorted `(id, offset)` of a segment's matching live points with id `>= from`, at most `max`.
fn scroll_segment(
    view: &View,
    sv: &SegView,
    filter: Option<&CompiledFilter>,
    from: Option<PointId>,
    max: usize,
) -> Result<Vec<(PointId, u32)>> {
    let sf = match filter {
        Some(f) => Some(seg_filter(view, f, sv)?),
        None => None,
    };
    let passes = |off: u32| -> Result<bool> {
        if !sv.is_live(off) {
            return Ok(false);
        }
        if let Some(sf) = &sf {
            if let Some(c) = &sf.plan.candidates
                && !c.contains(off)
            {
                return Ok(false);
            }
            return sf.check(sv, off);
        }
        Ok(true)
    };
    let mut out = Vec::new();
    match &*sv.seg {
        Segment::Sealed(s) => {
            let mut rank = from.map_or(0, |f| s.rank_from(f));
            while rank < s.count() as usize && out.len() < max {
                let (id, off) = s.by_rank(rank)?;
                if passes(off)? {
                    out.push((id, off));
                }
                rank += 1;
            }
        }
        Segment::Mutable(m) => {
            let mut all: Vec<(PointId, u32)> = (0..sv.len)
                .filter(|&off| sv.is_live(off))
                .map(|off| (m.meta(off).id, off))
                .filter(|(id, _)| from.is_none_or(|f| *id >= f))
                .collect();
            all.sort_unstable();
            for (id, off) in all {
                if out.len() >= max {
                    break;
                }
                if passes(off)? {
                    out.push((id, off));
                }
            }
        }
    }
    Ok(out)
}

/// One page of points in id order.
pub(crate) fn scroll(
    view: &View,
    filter: Option<&CompiledFilter>,
    from: Option<PointId>,
    limit: usize,
    with_payload: &PayloadSelector,
    with_vector: bool,
) -> Result<ScrollResult> {
    let mut merged: Vec<(PointId, usize, u32)> = Vec::new();
    for (i, sv) in view.segments.iter().enumerate() {
        for (id, off) in scroll_segment(view, sv, filter, from, limit + 1)? {
            merged.push((id, i, off));
        }
    }
    merged.sort_unstable_by_key(|&(id, _, _)| id);
    let next_page_offset = merged.get(limit).map(|&(id, _, _)| id);
    merged.truncate(limit);
    let points = merged
        .into_iter()
        .map(|(_, i, off)| record(&view.segments[i], off, with_payload, with_vector))
        .collect::<Result<_>>()?;
    Ok(ScrollResult {
        points,
        next_page_offset,
    })
}

/// Number of live points matching `filter`.
pub(crate) fn count(view: &View, filter: Option<&CompiledFilter>) -> Result<u64> {
    let Some(filter) = filter else {
        return Ok(view.live_count());
    };
    let mut n = 0u64;
    for sv in &view.segments {
        let sf = seg_filter(view, filter, sv)?;
        if sf.plan.exact
            && let Some(c) = &sf.plan.candidates
        {
            let mut live = c.clone();
            live.remove_range(sv.len..);
            n += (live - &*sv.deletes).len();
            continue;
        }
        for_each_candidate(sv, Some(&sf), |off| {
            if sf.check(sv, off)? {
                n += 1;
            }
            Ok(())
        })?;
    }
    Ok(n)
}

/// Ids of live points matching `filter` (to resolve filter-based writes).
pub(crate) fn matching_ids(view: &View, filter: &CompiledFilter) -> Result<Vec<PointId>> {
    let mut ids = Vec::new();
    for sv in &view.segments {
        let sf = seg_filter(view, filter, sv)?;
        for_each_candidate(sv, Some(&sf), |off| {
            if sf.check(sv, off)? {
                ids.push(sv.point_id(off)?);
            }
            Ok(())
        })?;
    }
    Ok(ids)
}
