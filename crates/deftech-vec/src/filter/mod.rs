//! Payload filters in Qdrant's shape: `must` / `should` / `must_not` / `min_should` of
//! conditions; match (value, any, except, text), range, values_count, is_empty, is_null,
//! has_id, nested, and filters nested as conditions.
//!
//! Semantics follow Qdrant (see `eval.rs`): a condition on a path matches when any value found
//! there matches; `except` needs at least one non-null value outside the list; `score` and ids
//! are not part of filters.

pub(crate) mod eval;
mod json;
pub(crate) mod plan;

pub(crate) use eval::CompiledFilter;

use crate::types::PointId;

/// A filter: all of `must`, at least one of `should` (when any), none of `must_not`, and at
/// least `min_count` of `min_should`.
///
/// ```
/// use deftech_vec::{Condition, Filter, Range};
/// let f = Filter::must([
///     Condition::matches("city", "London"),
///     Condition::range("price", Range::default().gte(10.0).lt(100.0)),
/// ])
/// .with_must_not([Condition::is_empty("tags")]);
/// let json = serde_json::to_value(&f).unwrap();
/// assert_eq!(serde_json::from_value::<Filter>(json).unwrap(), f);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Every condition must match.
    pub must: Vec<Condition>,
    /// At least one must match (ignored when empty).
    pub should: Vec<Condition>,
    /// None may match.
    pub must_not: Vec<Condition>,
    /// At least `min_count` of these must match.
    pub min_should: Option<MinShould>,
}

/// `min_should`: at least `min_count` of `conditions`.
#[derive(Clone, Debug, PartialEq)]
pub struct MinShould {
    /// The conditions.
    pub conditions: Vec<Condition>,
    /// How many must match.
    pub min_count: usize,
}

/// One condition of a filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// A condition on the values at a payload path.
    Field(FieldCondition),
    /// The path holds nothing: missing, `null` or `[]`.
    IsEmpty {
        /// Payload path.
        key: String,
    },
    /// The path holds an explicit `null`.
    IsNull {
        /// Payload path.
        key: String,
    },
    /// The point's id is one of these.
    HasId(Vec<PointId>),
    /// Some element of the array of objects at `key` matches `filter` on its own.
    Nested {
        /// Path of the array (`[]` is implied).
        key: String,
        /// Filter applied to each element.
        filter: Filter,
    },
    /// A nested boolean filter.
    Filter(Filter),
}

/// Conditions on the values at one payload path; all that are set must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldCondition {
    /// Payload path.
    pub key: String,
    /// Value match.
    pub r#match: Option<Match>,
    /// Numeric range.
    pub range: Option<Range>,
    /// Range on the number of values.
    pub values_count: Option<ValuesCount>,
    /// Field-level `is_empty: true|false`.
    pub is_empty: Option<bool>,
    /// Field-level `is_null: true|false`.
    pub is_null: Option<bool>,
}

/// A value match.
#[derive(Clone, Debug, PartialEq)]
pub enum Match {
    /// Equal to a value.
    Value(MatchValue),
    /// Equal to any of the values.
    Any(AnyValues),
    /// Some value is none of these.
    Except(AnyValues),
    /// A string value contains this text.
    Text(String),
}

/// A single value to match: keyword, integer or bool (as Qdrant: no floats).
#[derive(Clone, Debug, PartialEq)]
pub enum MatchValue {
    /// A string.
    Keyword(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

/// A list of keywords or of integers.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyValues {
    /// Strings.
    Keywords(Vec<String>),
    /// Integers.
    Integers(Vec<i64>),
}

/// A numeric range; unset bounds are open.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Range {
    /// Greater than.
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub gte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub lte: Option<f64>,
}

/// A range on the number of values at a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValuesCount {
    /// Greater than.
    pub gt: Option<usize>,
    /// Greater than or equal.
    pub gte: Option<usize>,
    /// Less than.
    pub lt: Option<usize>,
    /// Less than or equal.
    pub lte: Option<usize>,
}

impl Range {
    /// Sets `gt`.
    #[must_use]
    pub fn gt(mut self, v: f64) -> Self {
        self.gt = Some(v);
        self
    }
    /// Sets `gte`.
    #[must_use]
    pub fn gte(mut self, v: f64) -> Self {
        self.gte = Some(v);
        self
    }
    /// Sets `lt`.
    #[must_use]
    pub fn lt(mut self, v: f64) -> Self {
        self.lt = Some(v);
        self
    }
    /// Sets `lte`.
    #[must_use]
    pub fn lte(mut self, v: f64) -> Self {
        self.lte = Some(v);
        self
    }

    pub(crate) fn lower_ok(&self, v: f64) -> bool {
        self.gt.is_none_or(|b| v > b) && self.gte.is_none_or(|b| v >= b)
    }

    pub(crate) fn upper_ok(&self, v: f64) -> bool {
        self.lt.is_none_or(|b| v < b) && self.lte.is_none_or(|b| v <= b)
    }

    pub(crate) fn contains(&self, v: f64) -> bool {
        self.lower_ok(v) && self.upper_ok(v)
    }
}

impl ValuesCount {
    pub(crate) fn contains(&self, n: usize) -> bool {
        self.gt.is_none_or(|b| n > b)
            && self.gte.is_none_or(|b| n >= b)
            && self.lt.is_none_or(|b| n < b)
            && self.lte.is_none_or(|b| n <= b)
    }
}

impl Filter {
    /// A filter with only `must` conditions.
    pub fn must(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Filter {
            must: conditions.into_iter().collect(),
            ..Filter::default()
        }
    }

    /// A filter with only `should` conditions.
    pub fn should(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Filter {
            should: conditions.into_iter().collect(),
            ..Filter::default()
        }
    }

    /// A filter with only `must_not` conditions.
    pub fn must_not(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Filter {
            must_not: conditions.into_iter().collect(),
            ..Filter::default()
        }
    }

    /// Adds `must` conditions.
    #[must_use]
    pub fn with_must(mut self, conditions: impl IntoIterator<Item = Condition>) -> Self {
        self.must.extend(conditions);
        self
    }

    /// Adds `should` conditions.
    #[must_use]
    pub fn with_should(mut self, conditions: impl IntoIterator<Item = Condition>) -> Self {
        self.should.extend(conditions);
        self
    }

    /// Adds `must_not` conditions.
    #[must_use]
    pub fn with_must_not(mut self, conditions: impl IntoIterator<Item = Condition>) -> Self {
        self.must_not.extend(conditions);
        self
    }

    /// Sets `min_should`.
    #[must_use]
    pub fn with_min_should(
        mut self,
        conditions: impl IntoIterator<Item = Condition>,
        min_count: usize,
    ) -> Self {
        self.min_should = Some(MinShould {
            conditions: conditions.into_iter().collect(),
            min_count,
        });
        self
    }

    /// True when the filter has no conditions (matches everything).
    pub fn is_empty(&self) -> bool {
        self.must.is_empty()
            && self.should.is_empty()
            && self.must_not.is_empty()
            && self.min_should.is_none()
    }
}

impl Condition {
    /// `key` equals `value` (a string, integer or bool).
    pub fn matches(key: impl Into<String>, value: impl Into<MatchValue>) -> Self {
        Condition::Field(FieldCondition {
            key: key.into(),
            r#match: Some(Match::Value(value.into())),
            ..FieldCondition::default()
        })
    }

    /// `key` equals any of `values`.
    pub fn matches_any(key: impl Into<String>, values: AnyValues) -> Self {
        Condition::Field(FieldCondition {
            key: key.into(),
            r#match: Some(Match::Any(values)),
            ..FieldCondition::default()
        })
    }

    /// `key` has a value that is none of `values`.
    pub fn matches_except(key: impl Into<String>, values: AnyValues) -> Self {
        Condition::Field(FieldCondition {
            key: key.into(),
            r#match: Some(Match::Except(values)),
            ..FieldCondition::default()
        })
    }

    /// A string at `key` contains `text`.
    pub fn matches_text(key: impl Into<String>, text: impl Into<String>) -> Self {
        Condition::Field(FieldCondition {
            key: key.into(),
            r#match: Some(Match::Text(text.into())),
            ..FieldCondition::default()
        })
    }

    /// A number at `key` is within `range`.
    pub fn range(key: impl Into<String>, range: Range) -> Self {
        Condition::Field(FieldCondition {
            key: key.into(),
            range: Some(range),
            ..FieldCondition::default()
        })
    }

    /// The number of values at `key` is within `count`.
    pub fn values_count(key: impl Into<String>, count: ValuesCount) -> Self {
        Condition::Field(FieldCondition {
            key: key.into(),
            values_count: Some(count),
            ..FieldCondition::default()
        })
    }

    /// `key` is missing, `null` or `[]`.
    pub fn is_empty(key: impl Into<String>) -> Self {
        Condition::IsEmpty { key: key.into() }
    }

    /// `key` is `null`.
    pub fn is_null(key: impl Into<String>) -> Self {
        Condition::IsNull { key: key.into() }
    }

    /// The point id is one of `ids`.
    pub fn has_id(ids: impl IntoIterator<Item = impl Into<PointId>>) -> Self {
        Condition::HasId(ids.into_iter().map(Into::into).collect())
    }

    /// Some object in the array at `key` matches `filter`.
    pub fn nested(key: impl Into<String>, filter: Filter) -> Self {
        Condition::Nested {
            key: key.into(),
            filter,
        }
    }
}

impl From<Filter> for Condition {
    fn from(f: Filter) -> Self {
        Condition::Filter(f)
    }
}

impl From<&str> for MatchValue {
    fn from(s: &str) -> Self {
        MatchValue::Keyword(s.to_owned())
    }
}

impl From<String> for MatchValue {
    fn from(s: String) -> Self {
        MatchValue::Keyword(s)
    }
}

impl From<i64> for MatchValue {
    fn from(i: i64) -> Self {
        MatchValue::Integer(i)
    }
}

impl From<bool> for MatchValue {
    fn from(b: bool) -> Self {
        MatchValue::Bool(b)
    }
}
