//! Filters compiled for evaluation: paths parsed once, types checked against the payload
//! indexes, then evaluated point by point.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::{AnyValues, Condition, FieldCondition, Filter, Match, MatchValue, Range, ValuesCount};
use crate::error::{Error, Result};
use crate::payload::{JsonPath, PayloadIndexKind, Step};
use crate::types::{Payload, PointId};

/// Indexed fields and their kinds.
pub(crate) type PayloadSchema = BTreeMap<String, PayloadIndexKind>;

#[derive(Debug)]
pub(crate) enum Clause {
    Match(Match),
    Range(Range),
    Count(ValuesCount),
    Empty(bool),
    Null(bool),
}

#[derive(Debug)]
pub(crate) enum CCond {
    Field {
        key: String,
        path: JsonPath,
        clauses: Vec<Clause>,
    },
    IsEmpty(JsonPath),
    IsNull(JsonPath),
    HasId(HashSet<PointId>),
    Nested {
        path: JsonPath,
        filter: Box<CompiledFilter>,
    },
    Filter(Box<CompiledFilter>),
}

/// A filter ready for evaluation.
#[derive(Debug, Default)]
pub(crate) struct CompiledFilter {
    pub must: Vec<CCond>,
    pub should: Vec<CCond>,
    pub must_not: Vec<CCond>,
    pub min_should: Option<(Vec<CCond>, usize)>,
}

fn path(key: &str) -> Result<JsonPath> {
    JsonPath::parse(key).map_err(|e| Error::InvalidFilter(format!("bad key {key:?}: {e}")))
}

fn type_error(key: &str, kind: PayloadIndexKind, what: &str, needs: &str) -> Error {
    Error::InvalidFilter(format!(
        "field `{key}` is indexed as {}; {what} needs {needs}",
        kind.name()
    ))
}

fn check_types(fc: &FieldCondition, schema: &PayloadSchema) -> Result<()> {
    let Some(&kind) = schema.get(&fc.key) else {
        return Ok(());
    };
    use PayloadIndexKind as K;
    if let Some(m) = &fc.r#match {
        let (what, ok, needs) = match m {
            Match::Value(MatchValue::Keyword(_))
            | Match::Any(AnyValues::Keywords(_))
            | Match::Except(AnyValues::Keywords(_)) => {
                ("a string match", kind == K::Keyword, "a keyword index")
            }
            Match::Value(MatchValue::Integer(_))
            | Match::Any(AnyValues::Integers(_))
            | Match::Except(AnyValues::Integers(_)) => {
                ("an integer match", kind == K::Integer, "an integer index")
            }
            Match::Value(MatchValue::Bool(_)) => ("a bool match", kind == K::Bool, "a bool index"),
            Match::Text(_) => ("a text match", kind == K::Keyword, "a keyword index"),
        };
        if !ok {
            return Err(type_error(&fc.key, kind, what, needs));
        }
    }
    if fc.range.is_some() && !matches!(kind, K::Integer | K::Float) {
        return Err(type_error(
            &fc.key,
            kind,
            "a range",
            "an integer or float index",
        ));
    }
    Ok(())
}

impl CompiledFilter {
    /// Compiles `filter`, checking condition types against the indexed fields.
    pub(crate) fn compile(filter: &Filter, schema: &PayloadSchema) -> Result<CompiledFilter> {
        let list = |c: &[Condition]| {
            c.iter()
                .map(|c| compile_cond(c, schema))
                .collect::<Result<Vec<_>>>()
        };
        Ok(CompiledFilter {
            must: list(&filter.must)?,
            should: list(&filter.should)?,
            must_not: list(&filter.must_not)?,
            min_should: match &filter.min_should {
                Some(ms) => Some((list(&ms.conditions)?, ms.min_count)),
                None => None,
            },
        })
    }

    /// Does the point match? `id` is `None` inside `nested` (where `has_id` never matches).
    pub(crate) fn matches(&self, id: Option<PointId>, payload: &Payload) -> bool {
        self.must.iter().all(|c| c.matches(id, payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.matches(id, payload)))
            && !self.must_not.iter().any(|c| c.matches(id, payload))
            && self
                .min_should
                .as_ref()
                .is_none_or(|(c, n)| c.iter().filter(|c| c.matches(id, payload)).count() >= *n)
    }

    /// True when evaluating needs the payload (anything but `has_id`).
    pub(crate) fn needs_payload(&self) -> bool {
        let any = |c: &[CCond]| c.iter().any(CCond::needs_payload);
        any(&self.must)
            || any(&self.should)
            || any(&self.must_not)
            || self.min_should.as_ref().is_some_and(|(c, _)| any(c))
    }
}

fn compile_cond(c: &Condition, schema: &PayloadSchema) -> Result<CCond> {
    Ok(match c {
        Condition::Field(fc) => {
            check_types(fc, schema)?;
            let mut clauses = Vec::new();
            if let Some(m) = &fc.r#match {
                clauses.push(Clause::Match(m.clone()));
            }
            if let Some(r) = fc.range {
                clauses.push(Clause::Range(r));
            }
            if let Some(c) = fc.values_count {
                clauses.push(Clause::Count(c));
            }
            if let Some(b) = fc.is_empty {
                clauses.push(Clause::Empty(b));
            }
            if let Some(b) = fc.is_null {
                clauses.push(Clause::Null(b));
            }
            if clauses.is_empty() {
                return Err(Error::InvalidFilter(format!(
                    "condition on `{}` needs one of match, range, values_count, is_empty, is_null",
                    fc.key
                )));
            }
            CCond::Field {
                key: fc.key.clone(),
                path: path(&fc.key)?,
                clauses,
            }
        }
        Condition::IsEmpty { key } => CCond::IsEmpty(path(key)?),
        Condition::IsNull { key } => CCond::IsNull(path(key)?),
        Condition::HasId(ids) => CCond::HasId(ids.iter().copied().collect()),
        Condition::Nested { key, filter } => {
            let mut p = path(key)?;
            if p.steps.last() != Some(&Step::All) {
                p.steps.push(Step::All);
            }
            // Keys inside are relative to the array elements; types are not checked there.
            CCond::Nested {
                path: p,
                filter: Box::new(CompiledFilter::compile(filter, &PayloadSchema::new())?),
            }
        }
        Condition::Filter(f) => CCond::Filter(Box::new(CompiledFilter::compile(f, schema)?)),
    })
}

fn is_empty_value(v: &Value) -> bool {
    v.is_null() || v.as_array().is_some_and(Vec::is_empty)
}

impl CCond {
    fn needs_payload(&self) -> bool {
        match self {
            CCond::HasId(_) => false,
            CCond::Filter(f) => f.needs_payload(),
            _ => true,
        }
    }

    pub(crate) fn matches(&self, id: Option<PointId>, payload: &Payload) -> bool {
        match self {
            CCond::Field { path, clauses, .. } => {
                let leaves = path.leaves(payload);
                clauses
                    .iter()
                    .all(|c| clause_matches(c, path, &leaves, payload))
            }
            CCond::IsEmpty(p) => p.values(payload).iter().all(|v| is_empty_value(v)),
            CCond::IsNull(p) => p.values(payload).iter().any(|v| v.is_null()),
            CCond::HasId(ids) => id.is_some_and(|id| ids.contains(&id)),
            CCond::Nested { path, filter } => path
                .values(payload)
                .iter()
                .filter_map(|v| v.as_object())
                .any(|o| filter.matches(None, o)),
            CCond::Filter(f) => f.matches(id, payload),
        }
    }
}

fn clause_matches(c: &Clause, path: &JsonPath, leaves: &[&Value], payload: &Payload) -> bool {
    match c {
        Clause::Match(m) => match_leaves(m, leaves),
        Clause::Range(r) => leaves
            .iter()
            .any(|v| v.as_f64().is_some_and(|f| r.contains(f))),
        Clause::Count(vc) => vc.contains(leaves.iter().filter(|v| !v.is_null()).count()),
        Clause::Empty(want) => path.values(payload).iter().all(|v| is_empty_value(v)) == *want,
        Clause::Null(want) => leaves.iter().any(|v| v.is_null()) == *want,
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn match_leaves(m: &Match, leaves: &[&Value]) -> bool {
    match m {
        Match::Value(MatchValue::Keyword(s)) => leaves.iter().any(|v| v.as_str() == Some(s)),
        Match::Value(MatchValue::Integer(i)) => leaves.iter().any(|v| as_int(v) == Some(*i)),
        Match::Value(MatchValue::Bool(b)) => leaves.iter().any(|v| v.as_bool() == Some(*b)),
        Match::Any(AnyValues::Keywords(list)) => leaves
            .iter()
            .any(|v| v.as_str().is_some_and(|s| list.iter().any(|x| x == s))),
        Match::Any(AnyValues::Integers(list)) => leaves
            .iter()
            .any(|v| as_int(v).is_some_and(|i| list.contains(&i))),
        Match::Except(list) => {
            let mut values = leaves.iter().filter(|v| !v.is_null()).peekable();
            values.peek().is_some()
                && values.any(|v| match list {
                    AnyValues::Keywords(l) => v.as_str().is_none_or(|s| !l.iter().any(|x| x == s)),
                    AnyValues::Integers(l) => as_int(v).is_none_or(|i| !l.contains(&i)),
                })
        }
        Match::Text(t) => leaves
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.contains(t.as_str()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(filter: Value, payload: Value) -> bool {
        let f = Filter::from_json(&filter).unwrap();
        CompiledFilter::compile(&f, &PayloadSchema::new())
            .unwrap()
            .matches(Some(PointId::Num(1)), payload.as_object().unwrap())
    }

    fn cond(c: Value, payload: Value) -> bool {
        check(json!({"must": [c]}), payload)
    }

    #[test]
    fn match_semantics_follow_qdrant() {
        let m = json!({"key": "a", "match": {"value": 1}});
        assert!(cond(m.clone(), json!({"a": 1})));
        assert!(cond(m.clone(), json!({"a": [3, 1]})));
        assert!(
            !cond(m.clone(), json!({"a": 1.0})),
            "floats never match integers"
        );
        assert!(!cond(m.clone(), json!({"a": true})));
        assert!(!cond(m.clone(), json!({"a": "1"})));
        assert!(!cond(m, json!({"a": [[1]]})), "only one level of arrays");

        let except = json!({"key": "a", "match": {"except": ["x", "y"]}});
        assert!(
            !cond(except.clone(), json!({})),
            "missing never matches except"
        );
        assert!(!cond(except.clone(), json!({"a": null})));
        assert!(!cond(except.clone(), json!({"a": []})));
        assert!(!cond(except.clone(), json!({"a": [null]})));
        assert!(!cond(except.clone(), json!({"a": ["x", "y"]})));
        assert!(cond(except.clone(), json!({"a": ["x", "z"]})));
        assert!(
            cond(except, json!({"a": 5})),
            "type mismatch counts as not in the list"
        );

        let any = json!({"key": "a", "match": {"any": ["x", "y"]}});
        assert!(cond(any.clone(), json!({"a": ["q", "y"]})));
        assert!(!cond(any, json!({"a": ["q"]})));
        assert!(cond(
            json!({"key": "t", "match": {"text": "ell"}}),
            json!({"t": "hello"})
        ));
    }

    #[test]
    fn range_and_counts() {
        let r = json!({"key": "p", "range": {"gt": 1, "lte": 2.5}});
        assert!(cond(r.clone(), json!({"p": 2})));
        assert!(cond(r.clone(), json!({"p": [0, 2.5]})));
        assert!(!cond(r.clone(), json!({"p": 1})));
        assert!(!cond(r, json!({"p": "2"})));
        let c = json!({"key": "p", "values_count": {"gte": 2}});
        assert!(cond(c.clone(), json!({"p": [1, 2]})));
        assert!(!cond(c, json!({"p": 1})));
        assert!(cond(
            json!({"key": "p", "values_count": {"lt": 1}}),
            json!({})
        ));
    }

    #[test]
    fn empty_and_null_follow_qdrant() {
        let table = [
            (json!({}), true, false),
            (json!({"a": null}), true, true),
            (json!({"a": []}), true, false),
            (json!({"a": [null]}), false, false),
            (json!({"a": {}}), false, false),
            (json!({"a": 0}), false, false),
        ];
        for (payload, empty, null) in table {
            assert_eq!(
                cond(json!({"is_empty": {"key": "a"}}), payload.clone()),
                empty,
                "{payload}"
            );
            assert_eq!(
                cond(json!({"is_null": {"key": "a"}}), payload.clone()),
                null,
                "{payload}"
            );
        }
    }

    #[test]
    fn boolean_structure_nested_and_ids() {
        let p = json!({"a": 1, "diet": [{"food": "meat", "likes": true}, {"food": "veg", "likes": false}]});
        assert!(check(
            json!({"should": [{"key": "a", "match": {"value": 2}}, {"key": "a", "match": {"value": 1}}]}),
            p.clone()
        ));
        assert!(!check(
            json!({"must_not": [{"key": "a", "match": {"value": 1}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"must_not": [{"key": "a", "match": {"value": 2}}]}]}),
            p.clone()
        ));
        assert!(check(
            json!({"min_should": {"conditions": [
            {"key": "a", "match": {"value": 1}}, {"key": "a", "match": {"value": 2}}, {"has_id": [1]}
        ], "min_count": 2}}),
            p.clone()
        ));
        // Nested: both conditions must hold on the same element.
        let nested = |food: &str, likes: bool| {
            json!({"must": [{"nested": {"key": "diet", "filter": {"must": [
                {"key": "food", "match": {"value": food}}, {"key": "likes", "match": {"value": likes}}
            ]}}}]})
        };
        assert!(check(nested("meat", true), p.clone()));
        assert!(!check(nested("meat", false), p.clone()));
        // Flattened paths do not keep elements together.
        assert!(check(
            json!({"must": [
                {"key": "diet[].food", "match": {"value": "meat"}}, {"key": "diet[].likes", "match": {"value": false}}
            ]}),
            p.clone()
        ));
        assert!(check(json!({"must": [{"has_id": [1, 2]}]}), p.clone()));
        assert!(!check(json!({"must": [{"has_id": [2]}]}), p));
    }

    #[test]
    fn types_are_checked_against_indexes() {
        let mut schema = PayloadSchema::new();
        schema.insert("city".into(), PayloadIndexKind::Keyword);
        schema.insert("n".into(), PayloadIndexKind::Integer);
        let bad = [
            json!({"must": [{"key": "city", "range": {"gt": 1}}]}),
            json!({"must": [{"key": "n", "match": {"value": "x"}}]}),
            json!({"must": [{"key": "city", "match": {"value": true}}]}),
        ];
        for f in bad {
            let err =
                CompiledFilter::compile(&Filter::from_json(&f).unwrap(), &schema).unwrap_err();
            assert!(err.to_string().contains("indexed as"), "{err}");
        }
        let ok = json!({"must": [{"key": "n", "range": {"gt": 1}}, {"key": "city", "match": {"any": ["a"]}}]});
        CompiledFilter::compile(&Filter::from_json(&ok).unwrap(), &schema).unwrap();
    }
}
