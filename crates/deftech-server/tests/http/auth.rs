//! API keys: missing key 401, wrong role 403, read-only keys cannot write.

use serde_json::json;

use crate::common::{ADMIN, READER, TestServer, WRITER};

#[test]
fn keys_and_roles_are_enforced() {
    let s = TestServer::with_keys();
    let create = json!({"vectors": {"size": 2, "distance": "Dot"}});
    // No key, wrong key.
    let (status, v) = s.call_as(None, "PUT", "/collections/c", Some(create.clone()));
    assert_eq!(status, 401, "{v}");
    let (status, _) = s.call_as(Some("wrong-key-000"), "GET", "/collections", None);
    assert_eq!(status, 401);
    // Health and version stay open.
    assert_eq!(s.raw("GET", "/healthz", b"", &[]).status, 200);
    assert_eq!(s.raw("GET", "/", b"", &[]).status, 200);
    // Only admins manage collections.
    let (status, v) = s.call_as(Some(WRITER), "PUT", "/collections/c", Some(create.clone()));
    assert_eq!(status, 403, "{v}");
    assert!(
        v["status"]["error"]
            .as_str()
            .unwrap()
            .contains("needs admin"),
        "{v}"
    );
    assert_eq!(
        s.call_as(Some(ADMIN), "PUT", "/collections/c", Some(create))
            .0,
        200
    );
    // Writers write; readers read but cannot write.
    let upsert = json!({"points": [{"id": 1, "vector": [1, 2]}]});
    assert_eq!(
        s.call_as(
            Some(WRITER),
            "PUT",
            "/collections/c/points?wait=true",
            Some(upsert.clone())
        )
        .0,
        200
    );
    let (status, _) = s.call_as(
        Some(READER),
        "PUT",
        "/collections/c/points?wait=true",
        Some(upsert),
    );
    assert_eq!(status, 403);
    let (status, _) = s.call_as(
        Some(READER),
        "POST",
        "/collections/c/points/delete?wait=true",
        Some(json!({"points": [1]})),
    );
    assert_eq!(status, 403);
    let (status, v) = s.call_as(
        Some(READER),
        "POST",
        "/collections/c/points/search",
        Some(json!({"vector": [1, 0], "limit": 1})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"][0]["id"], 1);
    // Bearer tokens work too.
    let r = s.raw(
        "GET",
        "/collections/c",
        b"",
        &[("authorization", &format!("Bearer {READER}"))],
    );
    assert_eq!(r.status, 200);
    let (status, _) = s.call_as(Some(READER), "DELETE", "/collections/c", None);
    assert_eq!(status, 403);
    assert_eq!(
        s.raw("GET", "/metrics", b"", &[("api-key", READER)]).status,
        200
    );
    assert_eq!(s.raw("GET", "/metrics", b"", &[]).status, 401);
}

#[test]
fn public_addresses_need_keys() {
    let config = deftech_server::ServerConfig {
        listen: "0.0.0.0:0".into(),
        ..deftech_server::ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(deftech_server::run(config, async {}, None))
        .unwrap_err();
    assert!(err.to_string().contains("without API keys"), "{err}");
}
