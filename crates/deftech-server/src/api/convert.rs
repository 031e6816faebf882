//! Qdrant's JSON request shapes to engine types, and engine results to Qdrant's response
//! shapes. Errors name the offending field (`points[3].vector: ...`).

use deftech_vec::{
    Filter, Metric, PayloadIndexKind, PayloadSelector, Point, PointId, PointSelector, Record,
    ScoredPoint, SearchRequest,
};
use serde_json::{Map, Value, json};

use super::ApiError;
use crate::config::ServerLimits;

type R<T> = Result<T, ApiError>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

pub(crate) fn obj<'a>(v: &'a Value, at: &str) -> R<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| bad(format!("{at}: expected a JSON object, got {}", kind(v))))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

fn usize_field(o: &Map<String, Value>, k: &str, at: &str) -> R<Option<usize>> {
    match field(o, k) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| bad(format!("{at}.{k}: expected an unsigned integer, got {v}"))),
    }
}

pub(crate) fn point_id(v: &Value, at: &str) -> R<PointId> {
    PointId::try_from(v).map_err(|e| bad(format!("{at}: {e}")))
}

fn ids(v: &Value, at: &str, limits: &ServerLimits) -> R<Vec<PointId>> {
    let list = v
        .as_array()
        .ok_or_else(|| bad(format!("{at}: expected a list of point ids")))?;
    if list.len() > limits.max_batch_points {
        return Err(bad(format!(
            "{at}: {} ids is over the limit of {} per request",
            list.len(),
            limits.max_batch_points
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, id)| point_id(id, &format!("{at}[{i}]")))
        .collect()
}

/// A dense vector: a list of numbers, or the unnamed vector of a named-vector object.
fn vector(v: &Value, at: &str) -> R<Vec<f32>> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| bad(format!("{at}[{i}]: expected a number, got {x}")))
            })
            .collect(),
        Value::Object(o) if o.len() == 1 && o.contains_key("") => {
            vector(&o[""], &format!("{at}[\"\"]"))
        }
        Value::Object(o) => Err(bad(format!(
            "{at}: named vectors ({:?}) are not supported: collections have one unnamed vector",
            o.keys().collect::<Vec<_>>()
        ))),
        other => Err(bad(format!(
            "{at}: expected a list of numbers, got {}",
            kind(other)
        ))),
    }
}

pub(crate) fn filter(v: Option<&Value>, at: &str) -> R<Option<Filter>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Filter::from_json(v)
            .map(Some)
            .map_err(|e| bad(e.replacen("filter", at, 1))),
    }
}

/// `points` (ids) or `filter`, as in Qdrant's points selectors.
pub(crate) fn selector(
    o: &Map<String, Value>,
    at: &str,
    limits: &ServerLimits,
) -> R<PointSelector> {
    match (field(o, "points"), field(o, "filter")) {
        (Some(p), None) => Ok(PointSelector::Ids(ids(p, &format!("{at}.points"), limits)?)),
        (None, Some(f)) => Ok(PointSelector::Filter(
            filter(Some(f), &format!("{at}.filter"))?.expect("present"),
        )),
        (Some(_), Some(_)) => Err(bad(format!(
            "{at}: give either `points` or `filter`, not both"
        ))),
        (None, None) => Err(bad(format!(
            "{at}: missing `points` (a list of ids) or `filter`"
        ))),
    }
}

pub(crate) fn payload_object(v: Option<&Value>, at: &str) -> R<deftech_vec::Payload> {
    match v {
        None => Err(bad(format!("{at}: missing"))),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(other) => Err(bad(format!(
            "{at}: expected a JSON object, got {}",
            kind(other)
        ))),
    }
}

/// Upsert bodies: `{"points": [...]}` or the columnar `{"batch": {...}}`.
pub(crate) fn upsert(body: &Value, limits: &ServerLimits) -> R<Vec<Point>> {
    let o = obj(body, "body")?;
    let check = |n: usize, at: &str| -> R<()> {
        if n > limits.max_batch_points {
            return Err(bad(format!(
                "{at}: {n} points is over the limit of {} per request",
                limits.max_batch_points
            )));
        }
        Ok(())
    };
    if let Some(points) = field(o, "points") {
        let list = points
            .as_array()
            .ok_or_else(|| bad("points: expected a list of points"))?;
        check(list.len(), "points")?;
        return list
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let at = format!("points[{i}]");
                let po = obj(p, &at)?;
                let id = point_id(
                    po.get("id")
                        .ok_or_else(|| bad(format!("{at}.id: missing")))?,
                    &format!("{at}.id"),
                )?;
                let v = vector(
                    po.get("vector")
                        .ok_or_else(|| bad(format!("{at}.vector: missing")))?,
                    &format!("{at}.vector"),
                )?;
                let payload = match po.get("payload") {
                    None | Some(Value::Null) => Value::Null,
                    Some(Value::Object(m)) => Value::Object(m.clone()),
                    Some(other) => {
                        return Err(bad(format!(
                            "{at}.payload: expected a JSON object, got {}",
                            kind(other)
                        )));
                    }
                };
                Ok(Point::new(id, v).with_payload(payload))
            })
            .collect();
    }
    if let Some(batch) = field(o, "batch") {
        let b = obj(batch, "batch")?;
        let ids = ids(
            b.get("ids").ok_or_else(|| bad("batch.ids: missing"))?,
            "batch.ids",
            limits,
        )?;
        let vectors = b
            .get("vectors")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("batch.vectors: expected a list of vectors"))?;
        if vectors.len() != ids.len() {
            return Err(bad(format!(
                "batch.vectors: {} vectors for {} ids",
                vectors.len(),
                ids.len()
            )));
        }
        let payloads = match field(b, "payloads") {
            None => None,
            Some(p) => {
                let list = p
                    .as_array()
                    .ok_or_else(|| bad("batch.payloads: expected a list"))?;
                if list.len() != ids.len() {
                    return Err(bad(format!(
                        "batch.payloads: {} payloads for {} ids",
                        list.len(),
                        ids.len()
                    )));
                }
                Some(list)
            }
        };
        return ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let v = vector(&vectors[i], &format!("batch.vectors[{i}]"))?;
                let payload = match payloads.map(|p| &p[i]) {
                    None | Some(Value::Null) => Value::Null,
                    Some(Value::Object(m)) => Value::Object(m.clone()),
                    Some(other) => {
                        return Err(bad(format!(
                            "batch.payloads[{i}]: expected a JSON object, got {}",
                            kind(other)
                        )));
                    }
                };
                Ok(Point::new(id, v).with_payload(payload))
            })
            .collect();
    }
    Err(bad("body: missing `points` or `batch`"))
}

/// `with_payload`: bool, a list of keys, or `{"include": [...]}` / `{"exclude": [...]}`.
pub(crate) fn with_payload(v: Option<&Value>, default: bool, at: &str) -> R<PayloadSelector> {
    let strings = |v: &Value, at: &str| -> R<Vec<String>> {
        v.as_array()
            .ok_or_else(|| bad(format!("{at}: expected a list of keys")))?
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("{at}: keys must be strings")))
            })
            .collect()
    };
    match v {
        None | Some(Value::Null) => Ok(default.into()),
        Some(Value::Bool(b)) => Ok((*b).into()),
        Some(list @ Value::Array(_)) => Ok(PayloadSelector::Include(strings(list, at)?)),
        Some(Value::Object(o)) => match (o.get("include"), o.get("exclude")) {
            (Some(i), None) => Ok(PayloadSelector::Include(strings(
                i,
                &format!("{at}.include"),
            )?)),
            (None, Some(e)) => Ok(PayloadSelector::Exclude(strings(
                e,
                &format!("{at}.exclude"),
            )?)),
            _ => Err(bad(format!(
                "{at}: expected {{\"include\": [...]}} or {{\"exclude\": [...]}}"
            ))),
        },
        Some(other) => Err(bad(format!(
            "{at}: expected a bool, a list of keys or an object, got {}",
            kind(other)
        ))),
    }
}

/// `with_vector`: bool or a list of vector names (only the unnamed vector exists).
pub(crate) fn with_vector(v: Option<&Value>, at: &str) -> R<bool> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Array(names)) => Ok(names.iter().any(|n| n.as_str() == Some(""))),
        Some(other) => Err(bad(format!(
            "{at}: expected a bool or a list of vector names, got {}",
            kind(other)
        ))),
    }
}

fn params(
    o: &Map<String, Value>,
    req: &mut SearchRequest,
    limits: &ServerLimits,
    at: &str,
) -> R<()> {
    if let Some(p) = field(o, "params") {
        let po = obj(p, &format!("{at}.params"))?;
        if let Some(ef) = usize_field(po, "hnsw_ef", &format!("{at}.params"))? {
            if ef == 0 || ef > limits.max_ef {
                return Err(bad(format!(
                    "{at}.params.hnsw_ef: must be between 1 and {}, got {ef}",
                    limits.max_ef
                )));
            }
            req.params.hnsw_ef = Some(ef);
        }
        if let Some(e) = field(po, "exact") {
            req.params.exact = e
                .as_bool()
                .ok_or_else(|| bad(format!("{at}.params.exact: expected a bool, got {e}")))?;
        }
        if let Some(qv) = field(po, "quantization") {
            let qat = format!("{at}.params.quantization");
            let qo = obj(qv, &qat)?;
            let mut qp = deftech_vec::QuantizationParams::default();
            let flag = |k: &str| -> R<Option<bool>> {
                match field(qo, k) {
                    None => Ok(None),
                    Some(v) => v
                        .as_bool()
                        .map(Some)
                        .ok_or_else(|| bad(format!("{qat}.{k}: expected a bool, got {v}"))),
                }
            };
            if flag("ignore")? == Some(true) {
                qp = deftech_vec::QuantizationParams::ignore();
            }
            if let Some(r) = flag("rescore")? {
                qp = qp.rescore(r);
            }
            if let Some(os) = field(qo, "oversampling") {
                let os = os
                    .as_f64()
                    .filter(|f| (1.0..=100.0).contains(f))
                    .ok_or_else(|| {
                        bad(format!(
                            "{qat}.oversampling: expected a number between 1 and 100, got {os}"
                        ))
                    })?;
                qp = qp.oversampling(os as f32);
            }
            *req = std::mem::replace(req, SearchRequest::new(Vec::new(), 1)).quantization(qp);
        }
    }
    Ok(())
}

fn limit_offset(
    o: &Map<String, Value>,
    default_limit: Option<usize>,
    limits: &ServerLimits,
    at: &str,
) -> R<(usize, usize)> {
    let limit = match (usize_field(o, "limit", at)?, default_limit) {
        (Some(l), _) => l,
        (None, Some(d)) => d,
        (None, None) => return Err(bad(format!("{at}.limit: missing"))),
    };
    let offset = usize_field(o, "offset", at)?.unwrap_or(0);
    if limit == 0 {
        return Err(bad(format!("{at}.limit: must be at least 1")));
    }
    if limit.saturating_add(offset) > limits.max_limit {
        return Err(bad(format!(
            "{at}.limit: limit + offset = {} is over the limit of {}",
            limit.saturating_add(offset),
            limits.max_limit
        )));
    }
    Ok((limit, offset))
}

fn threshold(o: &Map<String, Value>, at: &str) -> R<Option<f32>> {
    match field(o, "score_threshold") {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(|f| Some(f as f32))
            .ok_or_else(|| bad(format!("{at}.score_threshold: expected a number, got {v}"))),
    }
}

/// `POST /points/search` bodies.
pub(crate) fn search(body: &Value, limits: &ServerLimits, at: &str) -> R<SearchRequest> {
    let o = obj(body, at)?;
    let v = field(o, "vector").ok_or_else(|| bad(format!("{at}.vector: missing")))?;
    let v = match v {
        Value::Object(named) if named.contains_key("vector") => {
            let name = named.get("name").and_then(Value::as_str).unwrap_or("");
            if !name.is_empty() {
                return Err(bad(format!(
                    "{at}.vector.name: unknown vector {name:?} (collections have one unnamed vector)"
                )));
            }
            vector(&named["vector"], &format!("{at}.vector.vector"))?
        }
        other => vector(other, &format!("{at}.vector"))?,
    };
    let (limit, offset) = limit_offset(o, None, limits, at)?;
    let mut req = SearchRequest::new(v, limit)
        .offset(offset)
        .with_payload(with_payload(
            o.get("with_payload"),
            false,
            &format!("{at}.with_payload"),
        )?)
        .with_vector(with_vector(
            o.get("with_vector"),
            &format!("{at}.with_vector"),
        )?);
    req.filter = filter(o.get("filter"), &format!("{at}.filter"))?;
    req.score_threshold = threshold(o, at)?;
    params(o, &mut req, limits, at)?;
    Ok(req)
}

/// What `POST /points/query` asks for.
pub(crate) enum QueryInput {
    Vector(Vec<f32>),
    Point(PointId),
}

/// `POST /points/query` bodies: the query vector (or point id to take it from) and a request
/// with a placeholder vector.
pub(crate) fn query(
    body: &Value,
    limits: &ServerLimits,
    at: &str,
) -> R<(QueryInput, SearchRequest)> {
    let o = obj(body, at)?;
    if field(o, "prefetch").is_some() {
        return Err(bad(format!("{at}.prefetch: not supported")));
    }
    if let Some(using) = field(o, "using").and_then(Value::as_str)
        && !using.is_empty()
    {
        return Err(bad(format!(
            "{at}.using: unknown vector {using:?} (collections have one unnamed vector)"
        )));
    }
    let q = field(o, "query").ok_or_else(|| {
        bad(format!(
            "{at}.query: missing (a vector, a point id or {{\"nearest\": ...}})"
        ))
    })?;
    let input = match q {
        Value::Array(_) => QueryInput::Vector(vector(q, &format!("{at}.query"))?),
        Value::Number(_) | Value::String(_) => {
            QueryInput::Point(point_id(q, &format!("{at}.query"))?)
        }
        Value::Object(qo) => match qo.get("nearest") {
            Some(n @ Value::Array(_)) => {
                QueryInput::Vector(vector(n, &format!("{at}.query.nearest"))?)
            }
            Some(n @ (Value::Number(_) | Value::String(_))) => {
                QueryInput::Point(point_id(n, &format!("{at}.query.nearest"))?)
            }
            _ => {
                return Err(bad(format!(
                    "{at}.query: only nearest-neighbour queries are supported, got {:?}",
                    qo.keys().collect::<Vec<_>>()
                )));
            }
        },
        other => {
            return Err(bad(format!(
                "{at}.query: expected a vector, a point id or an object, got {}",
                kind(other)
            )));
        }
    };
    let (limit, offset) = limit_offset(o, Some(10), limits, at)?;
    let mut req = SearchRequest::new(Vec::new(), limit)
        .offset(offset)
        .with_payload(with_payload(
            o.get("with_payload"),
            false,
            &format!("{at}.with_payload"),
        )?)
        .with_vector(with_vector(
            o.get("with_vector"),
            &format!("{at}.with_vector"),
        )?);
    req.filter = filter(o.get("filter"), &format!("{at}.filter"))?;
    req.score_threshold = threshold(o, at)?;
    params(o, &mut req, limits, at)?;
    Ok((input, req))
}

/// `POST /points/scroll` bodies.
pub(crate) fn scroll(body: &Value, limits: &ServerLimits) -> R<deftech_vec::ScrollRequest> {
    let o = obj(body, "body")?;
    if field(o, "order_by").is_some() {
        return Err(bad("body.order_by: not supported"));
    }
    let (limit, _) = limit_offset(o, Some(10), limits, "body")?;
    let mut req = deftech_vec::ScrollRequest::new(limit)
        .with_payload(with_payload(
            o.get("with_payload"),
            true,
            "body.with_payload",
        )?)
        .with_vector(with_vector(o.get("with_vector"), "body.with_vector")?);
    req.filter = filter(o.get("filter"), "body.filter")?;
    req.offset = match field(o, "offset") {
        None => None,
        Some(v) => Some(point_id(v, "body.offset")?),
    };
    Ok(req)
}

/// Payload index kinds: `"keyword"` or `{"type": "keyword", ...}`.
pub(crate) fn index_kind(v: Option<&Value>) -> R<PayloadIndexKind> {
    let name = match v {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(o)) => o
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("field_schema.type: missing"))?,
        _ => {
            return Err(bad(
                "field_schema: expected a type name such as \"keyword\"",
            ));
        }
    };
    match name {
        "keyword" => Ok(PayloadIndexKind::Keyword),
        "integer" => Ok(PayloadIndexKind::Integer),
        "float" => Ok(PayloadIndexKind::Float),
        "bool" => Ok(PayloadIndexKind::Bool),
        other => Err(bad(format!(
            "field_schema: index type {other:?} is not supported (keyword, integer, float, bool)"
        ))),
    }
}

pub(crate) fn metric(name: &str) -> R<Metric> {
    match name {
        "Cosine" => Ok(Metric::Cosine),
        "Dot" => Ok(Metric::Dot),
        "Euclid" => Ok(Metric::Euclid),
        "Manhattan" => Ok(Metric::Manhattan),
        other => Err(bad(format!(
            "vectors.distance: unknown distance {other:?} (Cosine, Dot, Euclid, Manhattan)"
        ))),
    }
}

pub(crate) fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::Cosine => "Cosine",
        Metric::Dot => "Dot",
        Metric::Euclid => "Euclid",
        Metric::Manhattan => "Manhattan",
    }
}

pub(crate) fn scored(p: &ScoredPoint) -> Value {
    json!({
        "id": p.id,
        "version": p.version,
        "score": p.score,
        "payload": p.payload,
        "vector": p.vector,
    })
}

pub(crate) fn record(r: &Record) -> Value {
    json!({
        "id": r.id,
        "payload": r.payload,
        "vector": r.vector,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits::default()
    }

    #[test]
    fn upsert_shapes_and_errors() {
        let pts = upsert(
            &json!({"points": [{"id": 1, "vector": [1, 2.5], "payload": {"a": 1}}, {"id": "550e8400-e29b-41d4-a716-446655440000", "vector": {"": [0, 0]}}]}),
            &limits(),
        )
        .unwrap();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].vector, vec![1.0, 2.5]);
        let pts = upsert(
            &json!({"batch": {"ids": [1, 2], "vectors": [[1], [2]], "payloads": [{"x": 1}, null]}}),
            &limits(),
        )
        .unwrap();
        assert_eq!(pts[1].payload, Value::Null);
        for (body, msg) in [
            (
                json!({"points": [{"id": -1, "vector": [1]}]}),
                "points[0].id",
            ),
            (
                json!({"points": [{"id": 1, "vector": [1, "x"]}]}),
                "points[0].vector[1]",
            ),
            (json!({"points": [{"id": 1}]}), "points[0].vector: missing"),
            (
                json!({"points": [{"id": 1, "vector": [1], "payload": [1]}]}),
                "points[0].payload",
            ),
            (
                json!({"batch": {"ids": [1, 2], "vectors": [[1]]}}),
                "batch.vectors",
            ),
            (
                json!({"points": [{"id": 1, "vector": {"text": [1]}}]}),
                "named vectors",
            ),
            (json!({}), "missing `points` or `batch`"),
        ] {
            let err = upsert(&body, &limits()).unwrap_err();
            assert!(
                err.message.contains(msg),
                "{} should contain {msg}",
                err.message
            );
        }
    }

    #[test]
    fn search_and_query_shapes() {
        let r = search(
            &json!({"vector": [1, 2], "limit": 3, "offset": 1, "with_payload": ["a"], "params": {"hnsw_ef": 64, "exact": true}, "score_threshold": 0.5, "filter": {"must": [{"key": "a", "match": {"value": 1}}]}}),
            &limits(),
            "body",
        )
        .unwrap();
        assert_eq!(
            (r.limit, r.offset, r.params.hnsw_ef, r.params.exact),
            (3, 1, Some(64), true)
        );
        assert!(r.filter.is_some());
        let err = search(&json!({"vector": [1], "limit": 0}), &limits(), "body").unwrap_err();
        assert!(err.message.contains("body.limit"));
        let err = search(&json!({"vector": [1], "limit": 5, "filter": {"must": [{"key": "a", "match": {"value": 1.5}}]}}), &limits(), "body").unwrap_err();
        assert!(
            err.message.contains("body.filter.must[0].match.value"),
            "{}",
            err.message
        );
        let (q, r) = query(&json!({"query": {"nearest": [1, 2]}}), &limits(), "body").unwrap();
        assert!(matches!(q, QueryInput::Vector(v) if v == vec![1.0, 2.0]));
        assert_eq!(r.limit, 10);
        let (q, _) = query(&json!({"query": 7}), &limits(), "body").unwrap();
        assert!(matches!(q, QueryInput::Point(PointId::Num(7))));
        assert!(query(&json!({"query": {"recommend": {}}}), &limits(), "body").is_err());
    }
}
