//! Bad input gets a 4xx naming the problem, and changes nothing stored.

use serde_json::json;

use crate::common::TestServer;

fn count(s: &TestServer) -> u64 {
    s.ok("POST", "/collections/c/points/count", Some(json!({})))["count"]
        .as_u64()
        .unwrap()
}

#[test]
fn bad_requests_name_the_field_and_change_nothing() {
    let s = TestServer::start_with(|c| {
        c.limits.max_body_bytes = 64 << 10;
        c.limits.max_batch_points = 50;
    });
    s.ok(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": 3, "distance": "Cosine"}})),
    );
    s.ok(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({"points": [{"id": 1, "vector": [1, 0, 0], "payload": {"k": "v"}}]})),
    );
    let lsn = s.ok("GET", "/collections/c", None)["deftech"]["lsn"].clone();

    let cases: Vec<(&str, &str, &[u8], u16, &str)> = vec![
        (
            "PUT",
            "/collections/c/points?wait=true",
            b"{not json",
            400,
            "invalid JSON",
        ),
        (
            "PUT",
            "/collections/c/points?wait=true",
            br#"{"points": [{"id": 2, "vector": [1, 2]}]}"#,
            400,
            "expected 3, got 2",
        ),
        (
            "PUT",
            "/collections/c/points?wait=true",
            br#"{"points": [{"id": 2, "vector": [1, 2, 1e39]}]}"#,
            400,
            "non-finite",
        ),
        (
            "PUT",
            "/collections/c/points?wait=true",
            br#"{"points": [{"id": -5, "vector": [1, 2, 3]}]}"#,
            400,
            "points[0].id",
        ),
        (
            "PUT",
            "/collections/c/points?wait=true",
            br#"{"points": [{"id": 2, "vector": [1, 2, 3], "payload": 7}]}"#,
            400,
            "points[0].payload",
        ),
        (
            "PUT",
            "/collections/c/points?wait=true",
            br#"{"points": []}"#,
            400,
            "must not be empty",
        ),
        (
            "PUT",
            "/collections/nope/points?wait=true",
            br#"{"points": [{"id": 2, "vector": [1, 2, 3]}]}"#,
            404,
            "nope",
        ),
        (
            "POST",
            "/collections/c/points/search",
            br#"{"vector": [1, 2, 3]}"#,
            400,
            "body.limit: missing",
        ),
        (
            "POST",
            "/collections/c/points/search",
            br#"{"vector": [1, 2, 3], "limit": 100000}"#,
            400,
            "over the limit of 10000",
        ),
        (
            "POST",
            "/collections/c/points/search",
            br#"{"vector": [1, 2, 3], "limit": 1, "params": {"hnsw_ef": 999999}}"#,
            400,
            "hnsw_ef",
        ),
        (
            "POST",
            "/collections/c/points/search",
            br#"{"vector": [1, 2], "limit": 1}"#,
            400,
            "dimension",
        ),
        (
            "POST",
            "/collections/c/points/count",
            br#"{"filter": {"must": [{"key": "k", "match": {"value": 1.5}}]}}"#,
            400,
            "body.filter.must[0].match.value",
        ),
        (
            "POST",
            "/collections/c/points/payload?wait=true",
            br#"{"payload": {"a": 1}, "points": [42]}"#,
            404,
            "42",
        ),
        (
            "POST",
            "/collections/c/points/delete?wait=true",
            br#"{}"#,
            400,
            "missing `points`",
        ),
        (
            "PUT",
            "/collections/c/index?wait=true",
            br#"{"field_name": "k", "field_schema": "geo"}"#,
            400,
            "not supported",
        ),
        (
            "PUT",
            "/collections/c",
            br#"{"vectors": {"size": 3, "distance": "Cosine"}}"#,
            409,
            "already exists",
        ),
        (
            "PUT",
            "/collections/..%2Fx",
            br#"{"vectors": {"size": 3, "distance": "Cosine"}}"#,
            400,
            "invalid collection name",
        ),
        (
            "PUT",
            "/collections/d",
            br#"{"vectors": {"size": 0, "distance": "Cosine"}}"#,
            400,
            "dimension",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let r = s.raw(method, path, body, &[]);
        let v = r.json();
        assert_eq!(r.status, status, "{method} {path}: {v}");
        let msg = v["status"]["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{method} {path}: {msg:?} should contain {needle:?}"
        );
    }
    // Too many points and too large a body.
    let many: Vec<_> = (0..51)
        .map(|i| json!({"id": i, "vector": [1, 0, 0]}))
        .collect();
    let (status, v) = s.call(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({"points": many})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["status"]["error"]
            .as_str()
            .unwrap()
            .contains("limit of 50"),
        "{v}"
    );
    let big =
        json!({"points": [{"id": 9, "vector": [1, 0, 0], "payload": {"x": "y".repeat(100_000)}}]});
    let r = s.raw(
        "PUT",
        "/collections/c/points?wait=true",
        &serde_json::to_vec(&big).unwrap(),
        &[],
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.json()["status"]["error"]
            .as_str()
            .unwrap()
            .contains("max_body_bytes")
    );
    // Nothing changed.
    assert_eq!(count(&s), 1);
    assert_eq!(s.ok("GET", "/collections/c", None)["deftech"]["lsn"], lsn);
    assert_eq!(
        s.ok("GET", "/collections/c/points/1", None)["payload"],
        json!({"k": "v"})
    );
}
