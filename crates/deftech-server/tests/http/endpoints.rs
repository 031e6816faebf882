//! Every endpoint, with Qdrant's request and response shapes.

use serde_json::{Value, json};

use crate::common::TestServer;

fn setup(s: &TestServer) {
    s.ok(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": 3, "distance": "Dot"}, "hnsw_config": {"m": 8}, "on_disk_payload": true})),
    );
    let points: Vec<Value> = (1..=20)
        .map(|i| json!({"id": i, "vector": [i as f32, 1.0, 0.0], "payload": {"n": i, "color": if i % 2 == 0 { "red" } else { "blue" }}}))
        .collect();
    let r = s.ok(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({"points": points})),
    );
    assert_eq!(r["status"], "completed");
    assert!(r["operation_id"].as_u64().unwrap() >= 1);
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn service_endpoints() {
    let s = TestServer::start();
    let root = s.raw("GET", "/", b"", &[]).json();
    assert!(
        root["version"].as_str().unwrap().starts_with("1."),
        "{root}"
    );
    assert_eq!(s.raw("GET", "/healthz", b"", &[]).status, 200);
    assert_eq!(s.raw("GET", "/readyz", b"", &[]).status, 200);
    setup(&s);
    let m = s.raw("GET", "/metrics", b"", &[]);
    assert_eq!(m.status, 200);
    assert!(
        m.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/plain"))
    );
    let text = m.text();
    assert!(text.contains(r#"deftech_http_requests_total{route="/collections/{name}/points",method="PUT",status="200"} 1"#), "{text}");
    assert!(
        text.contains("deftech_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"deftech_collection_points{collection="c"} 20"#),
        "{text}"
    );
    assert!(text.contains("deftech_collection_wal_bytes"), "{text}");
    let (status, v) = s.call("GET", "/no/such/route", None);
    assert_eq!(status, 404);
    assert!(v["status"]["error"].as_str().unwrap().contains("no route"));
}

#[test]
fn collection_endpoints() {
    let s = TestServer::start();
    setup(&s);
    assert_eq!(
        s.ok("GET", "/collections", None),
        json!({"collections": [{"name": "c"}]})
    );
    assert_eq!(
        s.ok("GET", "/collections/c/exists", None),
        json!({"exists": true})
    );
    assert_eq!(
        s.ok("GET", "/collections/zz/exists", None),
        json!({"exists": false})
    );
    let info = s.ok("GET", "/collections/c", None);
    assert_eq!(info["points_count"], 20);
    assert_eq!(info["status"], "green");
    assert_eq!(
        info["config"]["params"]["vectors"],
        json!({"size": 3, "distance": "Dot"})
    );
    assert_eq!(info["config"]["hnsw_config"]["m"], 8);
    // Graph and codes are copied into memory unless `on_disk` keeps them mapped.
    assert_eq!(info["config"]["hnsw_config"]["on_disk"], false);
    assert!(info["segments_count"].as_u64().unwrap() >= 1);
    s.ok(
        "PUT",
        "/collections/mapped",
        Some(json!({"vectors": {"size": 3, "distance": "Dot"}, "hnsw_config": {"on_disk": true}})),
    );
    let mapped = s.ok("GET", "/collections/mapped", None);
    assert_eq!(mapped["config"]["hnsw_config"]["on_disk"], true);
    let (status, v) = s.call(
        "PUT",
        "/collections/bad",
        Some(json!({"vectors": {"size": 3, "distance": "Dot"}, "hnsw_config": {"on_disk": "yes"}})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("hnsw_config.on_disk"), "{v}");
    assert_eq!(s.ok("DELETE", "/collections/c", None), json!(true));
    assert_eq!(s.ok("DELETE", "/collections/c", None), json!(false));
    let (status, v) = s.call("GET", "/collections/c", None);
    assert_eq!(status, 404, "{v}");
}

#[test]
fn point_endpoints() {
    let s = TestServer::start();
    setup(&s);
    // Columnar upsert.
    s.ok(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({"batch": {"ids": [100, "2f3a8c1e-0000-4000-8000-000000000001"], "vectors": [[0, 0, 1], [0, 1, 0]], "payloads": [{"n": 100}, null]}})),
    );
    let one = s.ok("GET", "/collections/c/points/100", None);
    assert_eq!(one["payload"], json!({"n": 100}));
    assert_eq!(one["vector"], json!([0.0, 0.0, 1.0]));
    let (status, _) = s.call("GET", "/collections/c/points/999", None);
    assert_eq!(status, 404);
    let many = s.ok(
        "POST",
        "/collections/c/points",
        Some(json!({"ids": [1, 2, 999], "with_payload": ["n"], "with_vector": false})),
    );
    assert_eq!(ids(&many), vec![1, 2]);
    assert_eq!(many[0]["payload"], json!({"n": 1}));

    // Search, batch search, query.
    let hits = s.ok(
        "POST",
        "/collections/c/points/search",
        Some(json!({"vector": [1, 0, 0], "limit": 3, "with_payload": true})),
    );
    assert_eq!(ids(&hits), vec![20, 19, 18]);
    assert_eq!(hits[0]["score"], 20.0);
    assert!(hits[0]["version"].is_u64());
    let hits = s.ok(
        "POST",
        "/collections/c/points/search",
        Some(json!({"vector": [1, 0, 0], "limit": 2, "offset": 1, "filter": {"must": [{"key": "color", "match": {"value": "blue"}}]}, "params": {"hnsw_ef": 32}})),
    );
    assert_eq!(ids(&hits), vec![17, 15]);
    let batch = s.ok(
        "POST",
        "/collections/c/points/search/batch",
        Some(json!({"searches": [{"vector": [1, 0, 0], "limit": 1}, {"vector": [-1, 0, 0], "limit": 1}]})),
    );
    assert_eq!(batch.as_array().unwrap().len(), 2);
    assert_eq!(ids(&batch[0]), vec![20]);
    let q = s.ok(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": [1, 0, 0], "limit": 2, "score_threshold": 19.5})),
    );
    assert_eq!(ids(&q["points"]), vec![20]);
    let q = s.ok(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": {"nearest": [1, 0, 0]}, "limit": 1, "with_vector": true})),
    );
    assert_eq!(q["points"][0]["vector"], json!([20.0, 1.0, 0.0]));
    let q = s.ok(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": 20, "limit": 1})),
    );
    assert_eq!(ids(&q["points"]), vec![19]);
    let qb = s.ok(
        "POST",
        "/collections/c/points/query/batch",
        Some(json!({"searches": [{"query": [1, 0, 0], "limit": 1}]})),
    );
    assert_eq!(ids(&qb[0]["points"]), vec![20]);

    // Scroll and count.
    let page = s.ok(
        "POST",
        "/collections/c/points/scroll",
        Some(json!({"limit": 5, "filter": {"must": [{"key": "n", "range": {"gte": 10}}]}})),
    );
    assert_eq!(ids(&page["points"]), vec![10, 11, 12, 13, 14]);
    assert_eq!(page["next_page_offset"], 15);
    let last = s.ok(
        "POST",
        "/collections/c/points/scroll",
        Some(json!({"limit": 100, "offset": 15, "with_payload": false})),
    );
    assert_eq!(last["next_page_offset"], Value::Null);
    assert!(last["points"][0]["payload"].is_null());
    assert_eq!(
        s.ok(
            "POST",
            "/collections/c/points/count",
            Some(json!({"exact": true}))
        ),
        json!({"count": 22})
    );
    assert_eq!(
        s.ok(
            "POST",
            "/collections/c/points/count",
            Some(json!({"filter": {"must": [{"key": "color", "match": {"any": ["red"]}}]}}))
        ),
        json!({"count": 10})
    );

    // Payload edits.
    s.ok(
        "POST",
        "/collections/c/points/payload?wait=true",
        Some(json!({"payload": {"x": 1}, "points": [1, 2]})),
    );
    s.ok(
        "POST",
        "/collections/c/points/payload?wait=true",
        Some(json!({"payload": {"y": 2}, "points": [1], "key": "nested"})),
    );
    assert_eq!(
        s.ok("GET", "/collections/c/points/1", None)["payload"],
        json!({"n": 1, "color": "blue", "x": 1, "nested": {"y": 2}})
    );
    s.ok(
        "PUT",
        "/collections/c/points/payload?wait=true",
        Some(json!({"payload": {"only": true}, "points": [2]})),
    );
    assert_eq!(
        s.ok("GET", "/collections/c/points/2", None)["payload"],
        json!({"only": true})
    );
    s.ok(
        "POST",
        "/collections/c/points/payload/delete?wait=true",
        Some(json!({"keys": ["x", "nested.y"], "points": [1]})),
    );
    assert_eq!(
        s.ok("GET", "/collections/c/points/1", None)["payload"],
        json!({"n": 1, "color": "blue", "nested": {}})
    );
    s.ok(
        "POST",
        "/collections/c/points/payload/clear?wait=true",
        Some(json!({"filter": {"must": [{"has_id": [1]}]}})),
    );
    assert_eq!(
        s.ok("GET", "/collections/c/points/1", None)["payload"],
        json!({})
    );

    // Payload indexes.
    let r = s.ok(
        "PUT",
        "/collections/c/index?wait=true",
        Some(json!({"field_name": "color", "field_schema": "keyword"})),
    );
    assert_eq!(r["status"], "completed");
    s.ok(
        "PUT",
        "/collections/c/index?wait=true",
        Some(json!({"field_name": "n", "field_schema": {"type": "integer", "range": true}})),
    );
    let info = s.ok("GET", "/collections/c", None);
    assert_eq!(info["payload_schema"]["color"]["data_type"], "keyword");
    s.ok("DELETE", "/collections/c/index/n?wait=true", None);
    assert!(
        s.ok("GET", "/collections/c", None)["payload_schema"]
            .get("n")
            .is_none()
    );

    // Deletes by id and by filter.
    s.ok(
        "POST",
        "/collections/c/points/delete?wait=true",
        Some(json!({"points": [20, 19]})),
    );
    s.ok(
        "POST",
        "/collections/c/points/delete?wait=true",
        Some(json!({"filter": {"must": [{"key": "color", "match": {"value": "red"}}]}})),
    );
    // 20 and 19 by id; the even ids 4..18 by colour (point 2 lost its colour to the overwrite).
    assert_eq!(
        s.ok("POST", "/collections/c/points/count", Some(json!({}))),
        json!({"count": 12})
    );
}

#[test]
fn quantization_config_and_search_params() {
    let s = TestServer::start();
    s.ok(
        "PUT",
        "/collections/q",
        Some(json!({"vectors": {"size": 8, "distance": "Cosine"}, "quantization_config": {"scalar": {"type": "int8", "quantile": 0.98, "always_ram": true}}, "optimizers_config": {"indexing_threshold": 1}, "hnsw_config": {"full_scan_threshold": 1}})),
    );
    let info = s.ok("GET", "/collections/q", None);
    assert_eq!(
        info["config"]["quantization_config"]["scalar"]["quantile"]
            .as_f64()
            .unwrap() as f32,
        0.98
    );
    let points: Vec<Value> = (0..300).map(|i| json!({"id": i, "vector": (0..8).map(|j| ((i * 7 + j * 3) % 11) as f32 - 5.0).collect::<Vec<_>>()})).collect();
    s.ok(
        "PUT",
        "/collections/q/points?wait=true",
        Some(json!({"points": points})),
    );
    let q = json!({"vector": [1, 2, 3, 4, -1, -2, -3, -4], "limit": 5});
    let exact = s.ok(
        "POST",
        "/collections/q/points/search",
        Some(json!({"vector": q["vector"], "limit": 5, "params": {"exact": true}})),
    );
    let ignored = s.ok("POST", "/collections/q/points/search", Some(json!({"vector": q["vector"], "limit": 5, "params": {"quantization": {"ignore": true}}})));
    let rescored = s.ok("POST", "/collections/q/points/search", Some(json!({"vector": q["vector"], "limit": 5, "params": {"quantization": {"rescore": true, "oversampling": 3.0}}})));
    assert_eq!(ids(&exact).len(), 5);
    assert_eq!(ids(&ignored).len(), 5);
    assert_eq!(ids(&rescored).len(), 5);
    let (status, v) = s.call("POST", "/collections/q/points/search", Some(json!({"vector": q["vector"], "limit": 5, "params": {"quantization": {"oversampling": 0.5}}})));
    assert_eq!(status, 400, "{v}");
    let (status, v) = s.call("PUT", "/collections/p", Some(json!({"vectors": {"size": 8, "distance": "Dot"}, "quantization_config": {"product": {"compression": "x16"}}})));
    assert_eq!(status, 400, "{v}");
    // Binary, as Qdrant 1.15 clients send it: one bit is what the codes hold, more is refused
    // by name.
    s.ok(
        "PUT",
        "/collections/b",
        Some(json!({"vectors": {"size": 8, "distance": "Cosine"}, "quantization_config": {"binary": {"always_ram": false, "encoding": "one_bit", "query_encoding": "scalar8bits"}}})),
    );
    let info = s.ok("GET", "/collections/b", None);
    assert_eq!(
        info["config"]["quantization_config"],
        json!({"binary": {"always_ram": false}})
    );
    for (field, value) in [("encoding", "two_bits"), ("query_encoding", "scalar2bits")] {
        let (status, v) = s.call("PUT", "/collections/b2", Some(json!({"vectors": {"size": 8, "distance": "Cosine"}, "quantization_config": {"binary": {field: value}}})));
        assert_eq!(status, 400, "{v}");
        assert!(
            v.to_string()
                .contains(&format!("quantization_config.binary.{field}")),
            "{v}"
        );
    }
}

#[test]
fn wait_false_is_acknowledged_then_visible() {
    let s = TestServer::start();
    setup(&s);
    let r = s.ok(
        "PUT",
        "/collections/c/points",
        Some(json!({"points": [{"id": 500, "vector": [1, 1, 1]}]})),
    );
    assert_eq!(r["status"], "acknowledged");
    for _ in 0..200 {
        if s.call("GET", "/collections/c/points/500", None).0 == 200 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the acknowledged write never became visible");
}

#[test]
fn data_survives_a_restart() {
    let s = TestServer::start();
    setup(&s);
    let data = s.dir.path().join("data");
    let dir = s.stop();
    let s = TestServer::start_with(|c| c.data = data);
    assert_eq!(
        s.ok("POST", "/collections/c/points/count", Some(json!({}))),
        json!({"count": 20})
    );
    drop(dir);
}
