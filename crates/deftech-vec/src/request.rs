//! Request types of the read and write API, with builders.

use crate::filter::Filter;
use crate::types::{Payload, PointId, Record};

/// Which payload fields to return.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PayloadSelector {
    /// No payload.
    #[default]
    None,
    /// The whole payload.
    All,
    /// Only these top-level keys (or paths).
    Include(Vec<String>),
    /// All but these top-level keys (or paths).
    Exclude(Vec<String>),
}

impl From<bool> for PayloadSelector {
    fn from(b: bool) -> Self {
        if b {
            PayloadSelector::All
        } else {
            PayloadSelector::None
        }
    }
}

impl PayloadSelector {
    /// True when nothing is returned.
    pub fn is_none(&self) -> bool {
        matches!(self, PayloadSelector::None)
    }

    /// Applies the selection to a payload.
    pub(crate) fn select(&self, payload: &Payload) -> Option<Payload> {
        match self {
            PayloadSelector::None => None,
            PayloadSelector::All => Some(payload.clone()),
            PayloadSelector::Include(keys) => {
                let mut out = Payload::new();
                for k in keys {
                    // Nested paths keep the whole top-level value holding them; keys that are
                    // not valid paths select nothing.
                    if let Ok(path) = crate::payload::JsonPath::parse(k)
                        && let Some(crate::payload::Step::Key(top)) = path.steps.first()
                        && let Some(v) = payload.get(top)
                    {
                        out.insert(top.clone(), v.clone());
                    }
                }
                Some(out)
            }
            PayloadSelector::Exclude(keys) => {
                let mut out = payload.clone();
                for k in keys {
                    if let Ok(path) = crate::payload::JsonPath::parse(k) {
                        crate::payload::delete_path(&mut out, &path);
                    }
                }
                Some(out)
            }
        }
    }
}

/// Per-query search parameters.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SearchParams {
    /// Candidate list size for HNSW search (at least `limit`).
    pub hnsw_ef: Option<usize>,
    /// Scan every point instead of using the graph.
    pub exact: bool,
    /// Use of the collection's quantized codes.
    pub quantization: crate::quantization::QuantizationParams,
}

/// A nearest-neighbour search.
///
/// ```
/// use deftech_vec::{Condition, Filter, SearchRequest};
/// let req = SearchRequest::new(vec![0.1, 0.2, 0.3], 10)
///     .filter(Filter::must([Condition::matches("lang", "en")]))
///     .with_payload(true)
///     .score_threshold(0.5);
/// assert_eq!(req.limit, 10);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SearchRequest {
    /// The query vector.
    pub vector: Vec<f32>,
    /// Number of results.
    pub limit: usize,
    /// Results to skip (pagination).
    pub offset: usize,
    /// Only points matching this filter.
    pub filter: Option<Filter>,
    /// Only results strictly better than this score.
    pub score_threshold: Option<f32>,
    /// Which payload to return.
    pub with_payload: PayloadSelector,
    /// Return vectors.
    pub with_vector: bool,
    /// Search parameters.
    pub params: SearchParams,
}

impl SearchRequest {
    /// The `limit` nearest points to `vector`.
    pub fn new(vector: Vec<f32>, limit: usize) -> Self {
        SearchRequest {
            vector,
            limit,
            offset: 0,
            filter: None,
            score_threshold: None,
            with_payload: PayloadSelector::None,
            with_vector: false,
            params: SearchParams::default(),
        }
    }

    /// Skips the first `offset` results.
    #[must_use]
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Restricts results to points matching `filter`.
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Drops results not strictly better than `threshold`.
    #[must_use]
    pub fn score_threshold(mut self, threshold: f32) -> Self {
        self.score_threshold = Some(threshold);
        self
    }

    /// Selects the payload to return (`true`, `false` or a [`PayloadSelector`]).
    #[must_use]
    pub fn with_payload(mut self, selector: impl Into<PayloadSelector>) -> Self {
        self.with_payload = selector.into();
        self
    }

    /// Returns vectors.
    #[must_use]
    pub fn with_vector(mut self, on: bool) -> Self {
        self.with_vector = on;
        self
    }

    /// Forces an exact scan.
    #[must_use]
    pub fn exact(mut self, on: bool) -> Self {
        self.params.exact = on;
        self
    }

    /// Sets the HNSW candidate list size.
    #[must_use]
    pub fn hnsw_ef(mut self, ef: usize) -> Self {
        self.params.hnsw_ef = Some(ef);
        self
    }

    /// Sets how quantized codes are used (see [`QuantizationParams`]).
    ///
    /// [`QuantizationParams`]: crate::QuantizationParams
    #[must_use]
    pub fn quantization(mut self, params: crate::quantization::QuantizationParams) -> Self {
        self.params.quantization = params;
        self
    }
}

/// A page of points in id order.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ScrollRequest {
    /// Only points matching this filter.
    pub filter: Option<Filter>,
    /// Start at this id (inclusive), as returned in `next_page_offset`.
    pub offset: Option<PointId>,
    /// Page size.
    pub limit: usize,
    /// Which payload to return.
    pub with_payload: PayloadSelector,
    /// Return vectors.
    pub with_vector: bool,
}

impl Default for ScrollRequest {
    fn default() -> Self {
        ScrollRequest {
            filter: None,
            offset: None,
            limit: 10,
            with_payload: PayloadSelector::All,
            with_vector: false,
        }
    }
}

impl ScrollRequest {
    /// A page of `limit` points, with payloads.
    pub fn new(limit: usize) -> Self {
        ScrollRequest {
            limit,
            ..ScrollRequest::default()
        }
    }

    /// Restricts to points matching `filter`.
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Starts at `id` (inclusive).
    #[must_use]
    pub fn offset(mut self, id: impl Into<PointId>) -> Self {
        self.offset = Some(id.into());
        self
    }

    /// Selects the payload to return.
    #[must_use]
    pub fn with_payload(mut self, selector: impl Into<PayloadSelector>) -> Self {
        self.with_payload = selector.into();
        self
    }

    /// Returns vectors.
    #[must_use]
    pub fn with_vector(mut self, on: bool) -> Self {
        self.with_vector = on;
        self
    }
}

/// One page of a scroll.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrollResult {
    /// The points, in id order.
    pub points: Vec<Record>,
    /// The id to pass as `offset` for the next page; `None` on the last page.
    pub next_page_offset: Option<PointId>,
}

/// Points a write applies to: listed ids, or every point matching a filter (resolved to ids
/// when the write is logged).
#[derive(Clone, Debug, PartialEq)]
pub enum PointSelector {
    /// These ids.
    Ids(Vec<PointId>),
    /// Points matching this filter.
    Filter(Filter),
}

impl From<Vec<PointId>> for PointSelector {
    fn from(ids: Vec<PointId>) -> Self {
        PointSelector::Ids(ids)
    }
}

impl From<Filter> for PointSelector {
    fn from(f: Filter) -> Self {
        PointSelector::Filter(f)
    }
}
