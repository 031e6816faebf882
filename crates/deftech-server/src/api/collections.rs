//! Collection endpoints: list, info, exists, create, delete; payload indexes.

use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use deftech_vec::{CollectionConfig, HnswConfig, OptimizerConfig, Quantization, Update, WalConfig};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::convert::{self, obj};
use super::{ApiError, JsonBody, Shared, blocking, ok};

/// The `?wait=` parameter of writes (Qdrant's default: do not wait).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WaitParam {
    #[serde(default)]
    pub wait: Option<bool>,
}

impl WaitParam {
    pub(crate) fn wait(&self) -> bool {
        self.wait.unwrap_or(false)
    }
}

/// Qdrant's update result.
pub(crate) fn update_result(lsn: u64, wait: bool) -> Value {
    json!({"operation_id": lsn, "status": if wait { "completed" } else { "acknowledged" }})
}

pub(crate) async fn list(State(s): State<Shared>) -> Result<Response, ApiError> {
    let t = Instant::now();
    let names: Vec<Value> = s
        .db()?
        .list_collections()
        .into_iter()
        .map(|n| json!({"name": n}))
        .collect();
    Ok(ok(json!({"collections": names}), t))
}

pub(crate) async fn exists(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let exists = s.db()?.collection(&name).is_ok();
    Ok(ok(json!({"exists": exists}), t))
}

fn kb_to_points(kb: u64, dim: usize) -> usize {
    ((kb * 1024) / (dim as u64 * 4)).max(1) as usize
}

fn points_to_kb(points: usize, dim: usize) -> u64 {
    (points as u64 * dim as u64 * 4).div_ceil(1024)
}

fn u64_of(o: &Map<String, Value>, k: &str, at: &str) -> Result<Option<u64>, ApiError> {
    match o.get(k).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("{at}.{k}: expected an unsigned integer, got {v}"))
        }),
    }
}

/// An optional boolean field (`null` counts as absent); anything else is refused, naming it.
fn bool_of(o: &Map<String, Value>, k: &str, at: &str) -> Result<Option<bool>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad_request(format!(
            "{at}.{k}: expected true or false, got {other}"
        ))),
    }
}

/// An optional string field that must be one of `allowed` (`null` counts as absent); anything
/// else is refused, naming the field and the values accepted.
fn check_choice(
    o: &Map<String, Value>,
    k: &str,
    at: &str,
    allowed: &[&str],
) -> Result<(), ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(v)) if allowed.contains(&v.as_str()) => Ok(()),
        Some(other) => {
            let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
            Err(ApiError::bad_request(format!(
                "{at}.{k}: expected {}, got {other}",
                allowed.join(" or ")
            )))
        }
    }
}

/// Qdrant's `quantization_config`: `{"scalar": {"type": "int8", "quantile", "always_ram"}}` or
/// `{"binary": {"always_ram", "encoding": "one_bit", "query_encoding"}}`.
fn quantization(v: &Value, at: &str) -> Result<Quantization, ApiError> {
    let o = obj(v, at)?;
    let always_ram =
        |m: &Map<String, Value>, at: &str| bool_of(m, "always_ram", at).map(|b| b.unwrap_or(false));
    if let Some(s) = o.get("scalar") {
        let at = format!("{at}.scalar");
        let s = obj(s, &at)?;
        check_choice(s, "type", &at, &["int8"])?;
        // Qdrant: "If not set - use the whole range of values".
        let quantile = match s.get("quantile").filter(|q| !q.is_null()) {
            None => 1.0,
            Some(q) => q.as_f64().ok_or_else(|| {
                ApiError::bad_request(format!("{at}.quantile: expected a number, got {q}"))
            })? as f32,
        };
        return Ok(Quantization::int8(quantile).always_ram(always_ram(s, &at)?));
    }
    if let Some(b) = o.get("binary") {
        let bat = format!("{at}.binary");
        let b = obj(b, &bat)?;
        // Qdrant's `encoding` picks 1, 1.5 or 2 bits per dimension; the codes here are one bit
        // (of a rotated vector), so asking for more is refused rather than silently given less.
        check_choice(b, "encoding", &bat, &["one_bit"])?;
        // Qdrant's `query_encoding`: queries here are always scored in 8 bits against the
        // codes, at least as precise as any of them, so every value is accepted.
        check_choice(
            b,
            "query_encoding",
            &bat,
            &["default", "binary", "scalar4bits", "scalar8bits"],
        )?;
        return Ok(Quantization::binary().always_ram(always_ram(b, &bat)?));
    }
    Err(ApiError::bad_request(format!(
        "{at}: expected {{\"scalar\": {{...}}}} or {{\"binary\": {{...}}}} (product quantization is not supported)"
    )))
}

fn quantization_json(q: &Option<Quantization>) -> Value {
    match q {
        None => Value::Null,
        Some(Quantization::Scalar(s)) => {
            json!({"scalar": {"type": "int8", "quantile": s.quantile, "always_ram": s.always_ram}})
        }
        Some(Quantization::Binary(b)) => json!({"binary": {"always_ram": b.always_ram}}),
        Some(_) => Value::Null,
    }
}

/// Qdrant's create-collection body to an engine configuration.
fn collection_config(body: &Value) -> Result<CollectionConfig, ApiError> {
    let o = obj(body, "body")?;
    let vectors = o.get("vectors").ok_or_else(|| {
        ApiError::bad_request("vectors: missing ({\"size\": N, \"distance\": \"Cosine\"})")
    })?;
    let vo = obj(vectors, "vectors")?;
    let vo = if vo.contains_key("size") {
        vo
    } else if vo.len() == 1 && vo.contains_key("") {
        obj(&vo[""], "vectors[\"\"]")?
    } else {
        return Err(ApiError::bad_request(format!(
            "vectors: named vectors ({:?}) are not supported: use one unnamed vector {{\"size\", \"distance\"}}",
            vo.keys().collect::<Vec<_>>()
        )));
    };
    let dim = u64_of(vo, "size", "vectors")?
        .ok_or_else(|| ApiError::bad_request("vectors.size: missing"))? as usize;
    let distance = vo.get("distance").and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_request("vectors.distance: missing (Cosine, Dot, Euclid or Manhattan)")
    })?;
    let metric = convert::metric(distance)?;
    if vo.get("multivector_config").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "vectors.multivector_config: not supported",
        ));
    }
    let quantization = match (vo.get("quantization_config"), o.get("quantization_config")) {
        (Some(q), _) if !q.is_null() => Some(quantization(q, "vectors.quantization_config")?),
        (_, Some(q)) if !q.is_null() => Some(quantization(q, "quantization_config")?),
        _ => None,
    };
    if let Some(sparse) = o.get("sparse_vectors").filter(|v| !v.is_null())
        && sparse.as_object().is_none_or(|m| !m.is_empty())
    {
        return Err(ApiError::bad_request("sparse_vectors: not supported"));
    }
    let mut config = CollectionConfig::new(dim, metric);
    if let Some(q) = quantization {
        config = config.quantization(q);
    }
    let mut hnsw = HnswConfig::default();
    if let Some(h) = o.get("hnsw_config").filter(|v| !v.is_null()) {
        let h = obj(h, "hnsw_config")?;
        if let Some(m) = u64_of(h, "m", "hnsw_config")? {
            hnsw = hnsw.m(m as usize);
        }
        if let Some(ef) = u64_of(h, "ef_construct", "hnsw_config")? {
            hnsw = hnsw.ef_construct(ef as usize);
        }
        if let Some(kb) = u64_of(h, "full_scan_threshold", "hnsw_config")? {
            hnsw = hnsw.full_scan_threshold(kb_to_points(kb, dim.max(1)));
        }
        if let Some(on) = bool_of(h, "on_disk", "hnsw_config")? {
            hnsw = hnsw.on_disk(on);
        }
    }
    config = config.hnsw(hnsw);
    let mut opt = OptimizerConfig::default();
    if let Some(op) = o.get("optimizers_config").filter(|v| !v.is_null()) {
        let op = obj(op, "optimizers_config")?;
        let at = "optimizers_config";
        let ratio = op.get("deleted_threshold").and_then(Value::as_f64);
        let min = u64_of(op, "vacuum_min_vector_number", at)?;
        if ratio.is_some() || min.is_some() {
            let (r, m) = (
                ratio.unwrap_or(opt.vacuum_deleted_ratio),
                min.map_or(opt.vacuum_min_deleted, |m| m as usize),
            );
            opt = opt.vacuum(r, m);
        }
        if let Some(n) = u64_of(op, "default_segment_number", at)?.filter(|n| *n > 0) {
            opt = opt.max_segments(n as usize);
        }
        if let Some(kb) = u64_of(op, "max_segment_size", at)? {
            opt = opt.max_segment_points(kb_to_points(kb, dim.max(1)));
        }
        if let Some(kb) = u64_of(op, "indexing_threshold", at)?.filter(|kb| *kb > 0) {
            opt = opt.seal_threshold(kb_to_points(kb, dim.max(1)));
        }
    }
    config = config.optimizer(opt);
    if let Some(w) = o.get("wal_config").filter(|v| !v.is_null()) {
        let w = obj(w, "wal_config")?;
        if let Some(mb) = u64_of(w, "wal_capacity_mb", "wal_config")? {
            config = config.wal(WalConfig::default().segment_bytes(mb.max(1) << 20));
        }
    }
    Ok(config)
}

pub(crate) async fn create(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let config = collection_config(&body)?;
    let db = s.db()?.clone();
    blocking(move || db.create_collection(&name, config).map(|_| ())).await?;
    Ok(ok(true, t))
}

/// Qdrant's update-collection (`PATCH /collections/{name}`). `quantization_config` (an object
/// as at creation, or `"Disabled"`) is applied: the new setting is durable when this returns
/// and the optimizer rewrites the existing segments in the background. The other settings are
/// fixed at creation: a request that asks to change any of them is refused, naming them, and
/// changes nothing; one that changes nothing (`{}`, or only nulls) succeeds.
pub(crate) async fn update(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let o = obj(&body, "body")?;
    let db = s.db()?.clone();
    let c = blocking(move || db.collection(&name)).await?;
    let fixed: Vec<&str> = o
        .iter()
        .filter(|(k, v)| !v.is_null() && k.as_str() != "quantization_config")
        .map(|(k, _)| k.as_str())
        .collect();
    if !fixed.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "updating {fixed:?} is not supported: a collection's vectors, hnsw, optimizer \
                 and WAL settings are fixed at creation (only quantization_config can be \
                 changed); create a new collection with the settings wanted and copy the points"
            ),
        ));
    }
    let quantization = match o.get("quantization_config").filter(|v| !v.is_null()) {
        None => None,
        Some(Value::String(d)) if d == "Disabled" => Some(None),
        Some(q) => Some(Some(quantization(q, "quantization_config")?)),
    };
    if let Some(q) = quantization {
        blocking(move || c.set_quantization(q)).await?;
    }
    Ok(ok(true, t))
}

pub(crate) async fn drop(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let db = s.db()?.clone();
    let dropped = blocking(move || match db.drop_collection(&name) {
        Ok(()) => Ok(true),
        Err(deftech_vec::Error::CollectionNotFound(_)) => Ok(false),
        Err(e) => Err(e),
    })
    .await?;
    Ok(ok(dropped, t))
}

pub(crate) async fn info(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let c = s.collection(&name)?;
    let info = blocking(move || Ok(c.info())).await?;
    let cfg = &info.config;
    let dim = cfg.dimension;
    let indexed: u64 = info
        .segments
        .iter()
        .filter(|s| s.graph_bytes > 0)
        .map(|s| s.points)
        .sum();
    let busy = info.segments.iter().any(|s| s.kind == "sealing");
    let schema: Map<String, Value> = info
        .payload_schema
        .iter()
        .map(|(f, k)| {
            (
                f.clone(),
                json!({"data_type": k.name(), "points": info.points}),
            )
        })
        .collect();
    let body = json!({
        "status": if busy { "yellow" } else { "green" },
        "optimizer_status": match &info.optimizer.last_error {
            Some(e) if info.optimizer.errors > 0 => json!({"error": e}),
            _ => json!("ok"),
        },
        "indexed_vectors_count": indexed,
        "points_count": info.points,
        "segments_count": info.segments.len(),
        "config": {
            "params": {
                "vectors": {"size": dim, "distance": convert::metric_name(cfg.metric)},
                "shard_number": 1,
                "replication_factor": 1,
                "write_consistency_factor": 1,
                "on_disk_payload": true
            },
            "hnsw_config": {
                "m": cfg.hnsw.m,
                "ef_construct": cfg.hnsw.ef_construct,
                "full_scan_threshold": points_to_kb(cfg.hnsw.full_scan_threshold, dim),
                "max_indexing_threads": 0,
                "on_disk": cfg.hnsw.on_disk
            },
            "optimizer_config": {
                "deleted_threshold": cfg.optimizer.vacuum_deleted_ratio,
                "vacuum_min_vector_number": cfg.optimizer.vacuum_min_deleted,
                "default_segment_number": cfg.optimizer.max_segments,
                "max_segment_size": points_to_kb(cfg.optimizer.max_segment_points, dim),
                "memmap_threshold": null,
                "indexing_threshold": points_to_kb(cfg.optimizer.seal_threshold, dim),
                "flush_interval_sec": 5,
                "max_optimization_threads": null
            },
            "wal_config": {"wal_capacity_mb": (cfg.wal.segment_bytes >> 20).max(1), "wal_segments_ahead": 0},
            "quantization_config": quantization_json(&cfg.quantization)
        },
        "payload_schema": schema,
        "deftech": {
            "lsn": info.lsn,
            "applied_lsn": info.applied_lsn,
            "wal_bytes": info.wal_bytes,
            "wal_files": info.wal_files,
            "segments": info.segments,
            "optimizer": info.optimizer,
        }
    });
    Ok(ok(body, t))
}

pub(crate) async fn create_index(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(w): Query<WaitParam>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let o = obj(&body, "body")?;
    let field = o
        .get("field_name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("field_name: missing"))?
        .to_owned();
    let kind = convert::index_kind(o.get("field_schema"))?;
    let c = s.collection(&name)?;
    let wait = w.wait();
    let lsn = blocking(move || c.update(Update::CreatePayloadIndex { field, kind }, wait)).await?;
    Ok(ok(update_result(lsn, wait), t))
}

pub(crate) async fn delete_index(
    State(s): State<Shared>,
    Path((name, field)): Path<(String, String)>,
    Query(w): Query<WaitParam>,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let c = s.collection(&name)?;
    let wait = w.wait();
    let lsn = blocking(move || c.update(Update::DeletePayloadIndex { field }, wait)).await?;
    Ok(ok(update_result(lsn, wait), t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qdrant_create_bodies_map_to_configs() {
        let c = collection_config(&json!({
            "vectors": {"size": 128, "distance": "Euclid"},
            "hnsw_config": {"m": 32, "ef_construct": 256, "full_scan_threshold": 10000},
            "optimizers_config": {"deleted_threshold": 0.3, "default_segment_number": 4, "indexing_threshold": 20000},
            "wal_config": {"wal_capacity_mb": 64},
            "on_disk_payload": true, "shard_number": 1
        }))
        .unwrap();
        assert_eq!((c.dimension, c.metric), (128, deftech_vec::Metric::Euclid));
        assert_eq!(
            (c.hnsw.m, c.hnsw.ef_construct, c.hnsw.full_scan_threshold),
            (32, 256, 20_000)
        );
        assert_eq!(
            (c.optimizer.max_segments, c.optimizer.seal_threshold),
            (4, 40_000)
        );
        assert_eq!(c.wal.segment_bytes, 64 << 20);
        let err =
            collection_config(&json!({"vectors": {"size": 4, "distance": "Hamming"}})).unwrap_err();
        assert!(err.message.contains("vectors.distance"));
        let err = collection_config(&json!({"vectors": {"a": {"size": 4, "distance": "Dot"}}}))
            .unwrap_err();
        assert!(err.message.contains("named vectors"));
        assert!(
            collection_config(&json!({"vectors": {"": {"size": 4, "distance": "Dot"}}})).is_ok()
        );
    }

    #[test]
    fn scalar_quantile_defaults_to_the_whole_range_as_in_qdrant() {
        let c = collection_config(&json!({
            "vectors": {"size": 4, "distance": "Cosine"},
            "quantization_config": {"scalar": {"type": "int8"}}
        }))
        .unwrap();
        assert_eq!(c.quantization, Some(Quantization::int8(1.0)));
    }

    #[test]
    fn quantization_fields_of_the_wrong_type_are_refused_by_name() {
        let with = |q: Value| {
            collection_config(&json!({
                "vectors": {"size": 4, "distance": "Cosine"},
                "quantization_config": q
            }))
        };
        for (q, field) in [
            (
                json!({"scalar": {"type": "int8", "always_ram": "yes"}}),
                "quantization_config.scalar.always_ram",
            ),
            (
                json!({"binary": {"always_ram": 1}}),
                "quantization_config.binary.always_ram",
            ),
            (
                json!({"scalar": {"type": 8}}),
                "quantization_config.scalar.type",
            ),
            (
                json!({"scalar": {"type": "int4"}}),
                "quantization_config.scalar.type",
            ),
            (
                json!({"scalar": {"quantile": "high"}}),
                "quantization_config.scalar.quantile",
            ),
        ] {
            let err = with(q.clone()).unwrap_err();
            assert!(err.message.starts_with(field), "{q}: {}", err.message);
        }
        let c = with(json!({"binary": {"always_ram": true}})).unwrap();
        assert_eq!(
            c.quantization,
            Some(Quantization::binary().always_ram(true))
        );
        let c = with(json!({"scalar": {"type": "int8", "quantile": 0.99, "always_ram": null}}));
        assert_eq!(c.unwrap().quantization, Some(Quantization::int8(0.99)));
    }
}
