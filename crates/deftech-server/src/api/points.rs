//! Point endpoints: upsert, retrieve, delete, payload edits, search, query, scroll, count.

use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use deftech_vec::{Collection, PointId, SearchRequest, Update};
use serde_json::{Value, json};

use super::collections::{WaitParam, update_result};
use super::convert::{self, obj};
use super::{ApiError, JsonBody, Shared, blocking, ok};

async fn write(s: &Shared, name: &str, wait: bool, update: Update) -> Result<Value, ApiError> {
    let c = s.collection(name)?;
    let lsn = blocking(move || c.update(update, wait)).await?;
    Ok(update_result(lsn, wait))
}

pub(crate) async fn upsert(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(w): Query<WaitParam>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let points = convert::upsert(&body, &s.config.limits)?;
    Ok(ok(
        write(&s, &name, w.wait(), Update::Upsert(points)).await?,
        t,
    ))
}

pub(crate) async fn delete(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(w): Query<WaitParam>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let o = obj(&body, "body")?;
    let selector = convert::selector(o, "body", &s.config.limits)?;
    Ok(ok(
        write(&s, &name, w.wait(), Update::Delete(selector)).await?,
        t,
    ))
}

pub(crate) async fn set_payload(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(w): Query<WaitParam>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let o = obj(&body, "body")?;
    let payload = convert::payload_object(o.get("payload"), "body.payload")?;
    let selector = convert::selector(o, "body", &s.config.limits)?;
    let key = match o.get("key").filter(|k| !k.is_null()) {
        None => None,
        Some(k) => Some(
            k.as_str()
                .ok_or_else(|| ApiError::bad_request("body.key: expected a string"))?
                .to_owned(),
        ),
    };
    let update = Update::SetPayload {
        selector,
        payload,
        key,
    };
    Ok(ok(write(&s, &name, w.wait(), update).await?, t))
}

pub(crate) async fn overwrite_payload(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(w): Query<WaitParam>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let o = obj(&body, "body")?;
    let payload = convert::payload_object(o.get("payload"), "body.payload")?;
    let selector = convert::selector(o, "body", &s.config.limits)?;
    let update = Update::OverwritePayload { selector, payload };
    Ok(ok(write(&s, &name, w.wait(), update).await?, t))
}

pub(crate) async fn delete_payload(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(w): Query<WaitParam>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let o = obj(&body, "body")?;
    let keys = o
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("body.keys: expected a list of keys"))?
        .iter()
        .enumerate()
        .map(|(i, k)| {
            k.as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::bad_request(format!("body.keys[{i}]: expected a string")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let selector = convert::selector(o, "body", &s.config.limits)?;
    let update = Update::DeletePayloadKeys { selector, keys };
    Ok(ok(write(&s, &name, w.wait(), update).await?, t))
}

pub(crate) async fn clear_payload(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(w): Query<WaitParam>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let o = obj(&body, "body")?;
    let selector = convert::selector(o, "body", &s.config.limits)?;
    Ok(ok(
        write(&s, &name, w.wait(), Update::ClearPayload(selector)).await?,
        t,
    ))
}

pub(crate) async fn retrieve(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let o = obj(&body, "body")?;
    let ids_v = o
        .get("ids")
        .ok_or_else(|| ApiError::bad_request("body.ids: missing"))?;
    let list = ids_v
        .as_array()
        .ok_or_else(|| ApiError::bad_request("body.ids: expected a list of point ids"))?;
    if list.len() > s.config.limits.max_batch_points {
        return Err(ApiError::bad_request(format!(
            "body.ids: {} ids is over the limit of {}",
            list.len(),
            s.config.limits.max_batch_points
        )));
    }
    let ids = list
        .iter()
        .enumerate()
        .map(|(i, v)| convert::point_id(v, &format!("body.ids[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let with_payload = convert::with_payload(o.get("with_payload"), true, "body.with_payload")?;
    let with_vector = convert::with_vector(o.get("with_vector"), "body.with_vector")?;
    let c = s.collection(&name)?;
    let records = blocking(move || c.get(&ids, with_payload, with_vector)).await?;
    Ok(ok(
        records.iter().map(convert::record).collect::<Vec<_>>(),
        t,
    ))
}

pub(crate) async fn get_one(
    State(s): State<Shared>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let id: PointId = id.parse().map_err(ApiError::bad_request)?;
    let c = s.collection(&name)?;
    let records = blocking(move || c.get(&[id], true, true)).await?;
    match records.first() {
        Some(r) => Ok(ok(convert::record(r), t)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Not found: no point with id {id} found"),
        )),
    }
}

fn run_search(c: &Collection, req: &SearchRequest) -> Result<Vec<Value>, deftech_vec::Error> {
    Ok(c.search(req)?.iter().map(convert::scored).collect())
}

pub(crate) async fn search(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let req = convert::search(&body, &s.config.limits, "body")?;
    let c = s.collection(&name)?;
    let hits = blocking(move || run_search(&c, &req)).await?;
    Ok(ok(hits, t))
}

fn batch_bodies<'a>(body: &'a Value, key: &str, s: &Shared) -> Result<&'a Vec<Value>, ApiError> {
    let list = obj(body, "body")?
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request(format!("body.{key}: expected a list of requests")))?;
    if list.len() > s.config.limits.max_batch_searches {
        return Err(ApiError::bad_request(format!(
            "body.{key}: {} requests is over the limit of {}",
            list.len(),
            s.config.limits.max_batch_searches
        )));
    }
    Ok(list)
}

pub(crate) async fn search_batch(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let reqs = batch_bodies(&body, "searches", &s)?
        .iter()
        .enumerate()
        .map(|(i, b)| convert::search(b, &s.config.limits, &format!("body.searches[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let c = s.collection(&name)?;
    let all = blocking(move || {
        reqs.iter()
            .map(|r| run_search(&c, r))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(ok(all, t))
}

/// Resolves a query input (a vector, or a point whose vector to use) and searches.
fn run_query(
    c: &Collection,
    input: convert::QueryInput,
    mut req: SearchRequest,
) -> Result<Value, deftech_vec::Error> {
    match input {
        convert::QueryInput::Vector(v) => req.vector = v,
        convert::QueryInput::Point(id) => {
            let found = c.get(&[id], false, true)?;
            let Some(r) = found.into_iter().next() else {
                return Err(deftech_vec::Error::PointNotFound(id));
            };
            req.vector = r.vector.unwrap_or_default();
            // The point itself is not a result of a search by its own vector.
            let f = deftech_vec::Filter::must_not([deftech_vec::Condition::has_id([id])]);
            req.filter = Some(match req.filter.take() {
                Some(existing) => existing.with_must([deftech_vec::Condition::Filter(f)]),
                None => f,
            });
        }
    }
    Ok(json!({"points": run_search(c, &req)?}))
}

pub(crate) async fn query(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let (input, req) = convert::query(&body, &s.config.limits, "body")?;
    let c = s.collection(&name)?;
    let result = blocking(move || run_query(&c, input, req)).await?;
    Ok(ok(result, t))
}

pub(crate) async fn query_batch(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let reqs = batch_bodies(&body, "searches", &s)?
        .iter()
        .enumerate()
        .map(|(i, b)| convert::query(b, &s.config.limits, &format!("body.searches[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let c = s.collection(&name)?;
    let all = blocking(move || {
        reqs.into_iter()
            .map(|(input, req)| run_query(&c, input, req))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(ok(all, t))
}

pub(crate) async fn scroll(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let req = convert::scroll(&body, &s.config.limits)?;
    let c = s.collection(&name)?;
    let page = blocking(move || c.scroll(&req)).await?;
    let result = json!({
        "points": page.points.iter().map(convert::record).collect::<Vec<_>>(),
        "next_page_offset": page.next_page_offset,
    });
    Ok(ok(result, t))
}

pub(crate) async fn count(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let o = obj(&body, "body")?;
    let filter = convert::filter(o.get("filter"), "body.filter")?;
    let c = s.collection(&name)?;
    let n = blocking(move || c.count(filter.as_ref())).await?;
    Ok(ok(json!({"count": n}), t))
}
