//! Turns a compiled filter into an allow set for one sealed segment, using its payload indexes
//! where they answer exactly, and says whether the remaining points still need a check.

use std::collections::HashSet;

use roaring::RoaringBitmap;

use super::eval::{CCond, Clause, CompiledFilter};
use super::{AnyValues, Match, MatchValue};
use crate::error::Result;
use crate::payload::PayloadIndexKind;
use crate::payload::index::{IndexQuery, SealedIndex};
use crate::types::PointId;

/// What the planner needs from a segment.
pub(crate) trait IndexSource {
    /// The index on `key`, if the segment has one.
    fn index(&self, key: &str) -> Option<&SealedIndex>;
    /// Offsets of these ids in the segment (deleted ones included).
    fn offsets_of(&self, ids: &HashSet<PointId>) -> RoaringBitmap;
    /// Every offset of the segment.
    fn universe(&self) -> RoaringBitmap;
}

/// The planner's answer: `candidates` (`None` = every point) is a superset of the matches;
/// when `exact`, it is exactly the matches and no per-point check is needed.
#[derive(Debug)]
pub(crate) struct Plan {
    pub candidates: Option<RoaringBitmap>,
    pub exact: bool,
}

/// Plans `filter` over a segment.
pub(crate) fn plan(filter: &CompiledFilter, src: &dyn IndexSource) -> Result<Plan> {
    let (candidates, exact) = filter_set(filter, src)?;
    Ok(Plan { candidates, exact })
}

type Answer = (Option<RoaringBitmap>, bool);

fn intersect(acc: &mut Option<RoaringBitmap>, set: RoaringBitmap) {
    match acc {
        Some(a) => *a &= set,
        None => *acc = Some(set),
    }
}

fn filter_set(f: &CompiledFilter, src: &dyn IndexSource) -> Result<Answer> {
    let mut restrict: Option<RoaringBitmap> = None;
    let mut exact = true;
    for c in &f.must {
        match cond_set(c, src)? {
            Some((set, e)) => {
                intersect(&mut restrict, set);
                exact &= e;
            }
            None => exact = false,
        }
    }
    if !f.should.is_empty() {
        let mut union = RoaringBitmap::new();
        let mut all = true;
        for c in &f.should {
            match cond_set(c, src)? {
                Some((set, e)) => {
                    union |= set;
                    exact &= e;
                }
                None => {
                    all = false;
                    break;
                }
            }
        }
        if all {
            intersect(&mut restrict, union);
        } else {
            exact = false;
        }
    }
    if !f.must_not.is_empty() {
        let mut union = RoaringBitmap::new();
        let mut all_exact = true;
        for c in &f.must_not {
            match cond_set(c, src)? {
                Some((set, true)) => union |= set,
                _ => {
                    all_exact = false;
                    break;
                }
            }
        }
        if all_exact {
            intersect(&mut restrict, src.universe() - union);
        } else {
            exact = false;
        }
    }
    if f.min_should.is_some() {
        exact = false;
    }
    Ok((restrict, exact))
}

/// The exact (or superset) set for one condition, when indexes or ids can answer it.
fn cond_set(c: &CCond, src: &dyn IndexSource) -> Result<Option<(RoaringBitmap, bool)>> {
    match c {
        CCond::HasId(ids) => Ok(Some((src.offsets_of(ids), true))),
        CCond::Filter(f) => {
            let (set, exact) = filter_set(f, src)?;
            Ok(set.map(|s| (s, exact)))
        }
        CCond::Field { key, clauses, .. } => {
            let Some(index) = src.index(key) else {
                return Ok(None);
            };
            let mut restrict: Option<RoaringBitmap> = None;
            let mut exact = true;
            for clause in clauses {
                match clause_query(clause, index.kind()) {
                    Some(q) => {
                        let ans = index.query(&q)?;
                        exact &= ans.unsure.is_empty();
                        intersect(&mut restrict, ans.matched | ans.unsure);
                    }
                    None => exact = false,
                }
            }
            Ok(restrict.map(|r| (r, exact)))
        }
        CCond::IsEmpty(_) | CCond::IsNull(_) | CCond::Nested { .. } => Ok(None),
    }
}

fn clause_query(clause: &Clause, kind: PayloadIndexKind) -> Option<IndexQuery<'_>> {
    use PayloadIndexKind as K;
    match (clause, kind) {
        (Clause::Match(Match::Value(MatchValue::Keyword(s))), K::Keyword) => {
            Some(IndexQuery::Keywords(std::slice::from_ref(s)))
        }
        (Clause::Match(Match::Any(AnyValues::Keywords(list))), K::Keyword) => {
            Some(IndexQuery::Keywords(list))
        }
        (Clause::Match(Match::Value(MatchValue::Integer(i))), K::Integer) => {
            Some(IndexQuery::Integers(std::slice::from_ref(i)))
        }
        (Clause::Match(Match::Any(AnyValues::Integers(list))), K::Integer) => {
            Some(IndexQuery::Integers(list))
        }
        (Clause::Match(Match::Value(MatchValue::Bool(b))), K::Bool) => Some(IndexQuery::Bool(*b)),
        (Clause::Range(r), K::Integer | K::Float) => Some(IndexQuery::Range(r)),
        _ => None,
    }
}
