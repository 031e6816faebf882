//! How the dense and keyword result lists become one: reciprocal rank fusion or a weighted
//! combination of scores.

use std::collections::HashMap;

use serde::Serialize;

/// Reciprocal rank fusion constant (Cormack et al.; what Elasticsearch and Qdrant use).
pub const RRF_K: f32 = 60.0;

/// Fuses ranked lists: each item scores `Σ 1 / (RRF_K + rank)` (rank from 1) over the lists
/// it appears in. Best first; ties keep first-seen order.
pub fn rrf<T: Clone + Eq + std::hash::Hash>(lists: &[Vec<T>]) -> Vec<(T, f32)> {
    let mut scores: HashMap<T, (f32, usize)> = HashMap::new();
    let mut order = 0;
    for list in lists {
        for (rank, item) in list.iter().enumerate() {
            let e = scores.entry(item.clone()).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            e.0 += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    let mut out: Vec<(T, (f32, usize))> = scores.into_iter().collect();
    out.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    out.into_iter().map(|(t, (s, _))| (t, s)).collect()
}

/// How the dense and keyword lists are combined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion ([`rrf`]): ranks only, no tuning.
    Rrf,
    /// A convex combination of scores: `dense × cosine + (1 − dense) × BM25 / best BM25 of the
    /// query` ([`weighted`]).
    Weighted {
        /// Weight of the dense score, 0 to 1.
        dense: f32,
    },
}

/// Convex combination of a dense list (cosine scores) and a keyword list (BM25 scores, divided
/// by the query's best so they fall in 0..=1); an item missing from a list scores 0 there.
/// Best first.
pub fn weighted(dense: &[(String, f32)], keyword: &[(String, f32)], w: f32) -> Vec<(String, f32)> {
    let w = w.clamp(0.0, 1.0);
    let best = keyword.iter().map(|(_, s)| *s).fold(0.0f32, f32::max);
    let mut scores: Vec<(String, f32)> = Vec::new();
    let mut add = |id: &String, s: f32| match scores.iter_mut().find(|(i, _)| i == id) {
        Some((_, acc)) => *acc += s,
        None => scores.push((id.clone(), s)),
    };
    for (id, s) in dense {
        add(id, w * s.max(0.0));
    }
    for (id, s) in keyword {
        add(id, (1.0 - w) * if best > 0.0 { s / best } else { 0.0 });
    }
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    scores
}

/// Which retrievers an ask (or an evaluation) uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retrieval {
    /// Vector search only.
    Dense,
    /// BM25 only.
    Keyword,
    /// Both, fused by RRF.
    Hybrid,
}
