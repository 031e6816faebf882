//! Qdrant's JSON shape for filters, with errors that name the offending path
//! (`must[0].match.value: ...`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use super::{
    AnyValues, Condition, FieldCondition, Filter, Match, MatchValue, MinShould, Range, ValuesCount,
};
use crate::types::PointId;

type R<T> = Result<T, String>;

fn obj<'a>(v: &'a Value, at: &str) -> R<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| format!("{at}: expected an object, got {v}"))
}

fn non_null<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

fn string(v: &Value, at: &str) -> R<String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{at}: expected a string, got {v}"))
}

fn key_of(o: &Map<String, Value>, at: &str) -> R<String> {
    let k = o.get("key").ok_or_else(|| format!("{at}: missing `key`"))?;
    let k = string(k, &format!("{at}.key"))?;
    if k.is_empty() {
        return Err(format!("{at}.key: must not be empty"));
    }
    Ok(k)
}

impl Filter {
    /// Parses Qdrant's JSON filter shape; the error names the offending path.
    pub fn from_json(v: &Value) -> R<Filter> {
        parse_filter(v, "filter")
    }

    /// Qdrant's JSON shape of this filter.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        let list = |c: &[Condition]| Value::Array(c.iter().map(Condition::to_json).collect());
        if !self.must.is_empty() {
            o.insert("must".into(), list(&self.must));
        }
        if !self.should.is_empty() {
            o.insert("should".into(), list(&self.should));
        }
        if !self.must_not.is_empty() {
            o.insert("must_not".into(), list(&self.must_not));
        }
        if let Some(ms) = &self.min_should {
            o.insert(
                "min_should".into(),
                json!({"conditions": list(&ms.conditions), "min_count": ms.min_count}),
            );
        }
        Value::Object(o)
    }
}

fn parse_list(v: &Value, at: &str) -> R<Vec<Condition>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, c)| parse_condition(c, &format!("{at}[{i}]")))
            .collect(),
        Value::Object(_) => Ok(vec![parse_condition(v, at)?]),
        other => Err(format!(
            "{at}: expected a condition or a list of conditions, got {other}"
        )),
    }
}

fn parse_filter(v: &Value, at: &str) -> R<Filter> {
    let o = obj(v, at)?;
    let mut f = Filter::default();
    for (k, val) in o {
        match k.as_str() {
            "must" => f.must = parse_list(val, &format!("{at}.must"))?,
            "should" => f.should = parse_list(val, &format!("{at}.should"))?,
            "must_not" => f.must_not = parse_list(val, &format!("{at}.must_not"))?,
            "min_should" => {
                if val.is_null() {
                    continue;
                }
                let mat = format!("{at}.min_should");
                let m = obj(val, &mat)?;
                let conditions = parse_list(
                    m.get("conditions").unwrap_or(&Value::Null),
                    &format!("{mat}.conditions"),
                )?;
                let min_count = m
                    .get("min_count")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| format!("{mat}.min_count: expected an unsigned integer"))?;
                f.min_should = Some(MinShould {
                    conditions,
                    min_count: min_count as usize,
                });
            }
            other => {
                return Err(format!(
                    "{at}: unknown field `{other}` (expected must, should, must_not, min_should)"
                ));
            }
        }
    }
    Ok(f)
}

fn parse_condition(v: &Value, at: &str) -> R<Condition> {
    let o = obj(v, at)?;
    if o.contains_key("key") {
        return parse_field(o, at).map(Condition::Field);
    }
    if let Some(e) = o.get("is_empty") {
        let e = obj(e, &format!("{at}.is_empty"))?;
        return Ok(Condition::IsEmpty {
            key: key_of(e, &format!("{at}.is_empty"))?,
        });
    }
    if let Some(e) = o.get("is_null") {
        let e = obj(e, &format!("{at}.is_null"))?;
        return Ok(Condition::IsNull {
            key: key_of(e, &format!("{at}.is_null"))?,
        });
    }
    if let Some(ids) = o.get("has_id") {
        let list = ids
            .as_array()
            .ok_or_else(|| format!("{at}.has_id: expected a list of point ids"))?;
        let ids = list
            .iter()
            .enumerate()
            .map(|(i, id)| PointId::try_from(id).map_err(|e| format!("{at}.has_id[{i}]: {e}")))
            .collect::<R<Vec<_>>>()?;
        return Ok(Condition::HasId(ids));
    }
    if let Some(n) = o.get("nested") {
        let nat = format!("{at}.nested");
        let n = obj(n, &nat)?;
        let key = key_of(n, &nat)?;
        let filter = parse_filter(
            n.get("filter")
                .ok_or_else(|| format!("{nat}: missing `filter`"))?,
            &format!("{nat}.filter"),
        )?;
        return Ok(Condition::Nested { key, filter });
    }
    if o.contains_key("has_vector") {
        return Err(format!(
            "{at}.has_vector: not supported (collections have one unnamed vector)"
        ));
    }
    if o.is_empty()
        || ["must", "should", "must_not", "min_should"]
            .iter()
            .any(|k| o.contains_key(*k))
    {
        return parse_filter(v, at).map(Condition::Filter);
    }
    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
    Err(format!(
        "{at}: unknown condition with fields {keys:?} (expected key, is_empty, is_null, has_id, nested, or a filter)"
    ))
}

fn parse_field(o: &Map<String, Value>, at: &str) -> R<FieldCondition> {
    let mut fc = FieldCondition {
        key: key_of(o, at)?,
        ..FieldCondition::default()
    };
    for (k, v) in o {
        if v.is_null() {
            continue;
        }
        let fat = format!("{at}.{k}");
        match k.as_str() {
            "key" => {}
            "match" => fc.r#match = Some(parse_match(v, &fat)?),
            "range" => fc.range = Some(parse_range(v, &fat)?),
            "values_count" => fc.values_count = Some(parse_count(v, &fat)?),
            "is_empty" => {
                fc.is_empty = Some(
                    v.as_bool()
                        .ok_or_else(|| format!("{fat}: expected a bool"))?,
                )
            }
            "is_null" => {
                fc.is_null = Some(
                    v.as_bool()
                        .ok_or_else(|| format!("{fat}: expected a bool"))?,
                )
            }
            "geo_bounding_box" | "geo_radius" | "geo_polygon" => {
                return Err(format!("{fat}: geo conditions are not supported"));
            }
            other => {
                return Err(format!(
                    "{at}: unknown field `{other}` in a field condition"
                ));
            }
        }
    }
    if fc.r#match.is_none()
        && fc.range.is_none()
        && fc.values_count.is_none()
        && fc.is_empty.is_none()
        && fc.is_null.is_none()
    {
        return Err(format!(
            "{at}: condition on `{}` needs one of match, range, values_count, is_empty, is_null",
            fc.key
        ));
    }
    Ok(fc)
}

fn parse_value(v: &Value, at: &str) -> R<MatchValue> {
    match v {
        Value::String(s) => Ok(MatchValue::Keyword(s.clone())),
        Value::Bool(b) => Ok(MatchValue::Bool(*b)),
        Value::Number(n) => n.as_i64().map(MatchValue::Integer).ok_or_else(|| {
            format!("{at}: {n} is not an integer; match values are strings, integers or bools")
        }),
        other => Err(format!(
            "{at}: expected a string, integer or bool, got {other}"
        )),
    }
}

fn parse_any(v: &Value, at: &str) -> R<AnyValues> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("{at}: expected a list"))?;
    if list.iter().all(Value::is_string) {
        return Ok(AnyValues::Keywords(
            list.iter()
                .map(|s| s.as_str().expect("checked").to_owned())
                .collect(),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, n)| {
            n.as_i64()
                .ok_or_else(|| format!("{at}[{i}]: expected all strings or all integers, got {n}"))
        })
        .collect::<R<Vec<_>>>()
        .map(AnyValues::Integers)
}

fn parse_match(v: &Value, at: &str) -> R<Match> {
    let o = obj(v, at)?;
    let present: Vec<(&String, &Value)> = o.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(k, val)] = present.as_slice() else {
        return Err(format!(
            "{at}: expected exactly one of value, any, except, text"
        ));
    };
    let fat = format!("{at}.{k}");
    match k.as_str() {
        "value" => parse_value(val, &fat).map(Match::Value),
        "any" => parse_any(val, &fat).map(Match::Any),
        "except" => parse_any(val, &fat).map(Match::Except),
        "text" => string(val, &fat).map(Match::Text),
        other => Err(format!(
            "{at}: unknown match kind `{other}` (expected value, any, except, text)"
        )),
    }
}

fn bound(o: &Map<String, Value>, k: &str, at: &str) -> R<Option<f64>> {
    match non_null(o, k) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| format!("{at}.{k}: expected a number, got {v}")),
    }
}

fn parse_range(v: &Value, at: &str) -> R<Range> {
    let o = obj(v, at)?;
    for k in o.keys() {
        if !["gt", "gte", "lt", "lte"].contains(&k.as_str()) {
            return Err(format!(
                "{at}: unknown bound `{k}` (expected gt, gte, lt, lte)"
            ));
        }
    }
    Ok(Range {
        gt: bound(o, "gt", at)?,
        gte: bound(o, "gte", at)?,
        lt: bound(o, "lt", at)?,
        lte: bound(o, "lte", at)?,
    })
}

fn parse_count(v: &Value, at: &str) -> R<ValuesCount> {
    let o = obj(v, at)?;
    let get = |k: &str| -> R<Option<usize>> {
        match non_null(o, k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| format!("{at}.{k}: expected an unsigned integer, got {v}")),
        }
    };
    for k in o.keys() {
        if !["gt", "gte", "lt", "lte"].contains(&k.as_str()) {
            return Err(format!(
                "{at}: unknown bound `{k}` (expected gt, gte, lt, lte)"
            ));
        }
    }
    Ok(ValuesCount {
        gt: get("gt")?,
        gte: get("gte")?,
        lt: get("lt")?,
        lte: get("lte")?,
    })
}

impl Condition {
    fn to_json(&self) -> Value {
        match self {
            Condition::Field(fc) => {
                let mut o = Map::new();
                o.insert("key".into(), json!(fc.key));
                if let Some(m) = &fc.r#match {
                    let any = |a: &AnyValues| match a {
                        AnyValues::Keywords(k) => json!(k),
                        AnyValues::Integers(i) => json!(i),
                    };
                    let m = match m {
                        Match::Value(MatchValue::Keyword(s)) => json!({"value": s}),
                        Match::Value(MatchValue::Integer(i)) => json!({"value": i}),
                        Match::Value(MatchValue::Bool(b)) => json!({"value": b}),
                        Match::Any(a) => json!({"any": any(a)}),
                        Match::Except(a) => json!({"except": any(a)}),
                        Match::Text(t) => json!({"text": t}),
                    };
                    o.insert("match".into(), m);
                }
                if let Some(r) = &fc.range {
                    let mut ro = Map::new();
                    for (k, b) in [("gt", r.gt), ("gte", r.gte), ("lt", r.lt), ("lte", r.lte)] {
                        if let Some(b) = b {
                            ro.insert(k.into(), json!(b));
                        }
                    }
                    o.insert("range".into(), Value::Object(ro));
                }
                if let Some(c) = &fc.values_count {
                    let mut co = Map::new();
                    for (k, b) in [("gt", c.gt), ("gte", c.gte), ("lt", c.lt), ("lte", c.lte)] {
                        if let Some(b) = b {
                            co.insert(k.into(), json!(b));
                        }
                    }
                    o.insert("values_count".into(), Value::Object(co));
                }
                if let Some(b) = fc.is_empty {
                    o.insert("is_empty".into(), json!(b));
                }
                if let Some(b) = fc.is_null {
                    o.insert("is_null".into(), json!(b));
                }
                Value::Object(o)
            }
            Condition::IsEmpty { key } => json!({"is_empty": {"key": key}}),
            Condition::IsNull { key } => json!({"is_null": {"key": key}}),
            Condition::HasId(ids) => json!({"has_id": ids}),
            Condition::Nested { key, filter } => {
                json!({"nested": {"key": key, "filter": filter.to_json()}})
            }
            Condition::Filter(f) => f.to_json(),
        }
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Filter::from_json(&v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qdrant_examples() {
        let f = Filter::from_json(&json!({
            "must": [
                {"key": "city", "match": {"value": "London"}},
                {"key": "price", "range": {"gte": 10, "lt": 99.5}},
                {"should": [{"key": "color", "match": {"any": ["red", "blue"]}}]},
                {"nested": {"key": "diet", "filter": {"must": [{"key": "food", "match": {"value": "meat"}}]}}},
                {"has_id": [1, "936da01f-9abd-4d9d-80c7-02af85c822a8"]},
            ],
            "must_not": {"is_empty": {"key": "tags"}},
            "min_should": {"conditions": [{"is_null": {"key": "x"}}], "min_count": 1}
        }))
        .unwrap();
        assert_eq!(f.must.len(), 5);
        assert_eq!(f.must_not, vec![Condition::is_empty("tags")]);
        assert_eq!(Filter::from_json(&f.to_json()).unwrap(), f);
        assert!(Filter::from_json(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_path() {
        let cases = [
            (
                json!({"must": [{"key": "a", "match": {"value": 1.5}}]}),
                "filter.must[0].match.value",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gte": "x"}}]}),
                "filter.must[0].range.gte",
            ),
            (json!({"should": [{"key": "a"}]}), "filter.should[0]"),
            (json!({"must": [{"bogus": 1}]}), "filter.must[0]"),
            (
                json!({"must_not": [{"has_id": [-1]}]}),
                "filter.must_not[0].has_id[0]",
            ),
            (
                json!({"must": [{"key": "a", "match": {"any": ["x", 1]}}]}),
                "filter.must[0].match.any[0]",
            ),
            (json!({"musts": []}), "unknown field `musts`"),
        ];
        for (v, expected) in cases {
            let err = Filter::from_json(&v).unwrap_err();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }
}
