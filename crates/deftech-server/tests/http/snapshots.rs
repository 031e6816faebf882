//! Qdrant's snapshot endpoints over HTTP, the scheduled snapshot and WAL-archive settings, and
//! the `deftech snapshot` command line on a stopped server's folder.

use std::process::Command;

use serde_json::{Value, json};

use crate::common::{ADMIN, READER, TestServer, WRITER};

fn setup(s: &TestServer, name: &str, n: u64) {
    s.ok(
        "PUT",
        &format!("/collections/{name}"),
        Some(json!({"vectors": {"size": 4, "distance": "Cosine"}})),
    );
    upsert(s, name, 1..=n);
}

fn upsert(s: &TestServer, name: &str, ids: std::ops::RangeInclusive<u64>) {
    let points: Vec<Value> = ids
        .map(|i| json!({"id": i, "vector": [i as f32, 1.0, (i % 3) as f32, 0.5], "payload": {"n": i}}))
        .collect();
    s.ok(
        "PUT",
        &format!("/collections/{name}/points?wait=true"),
        Some(json!({"points": points})),
    );
}

fn count(s: &TestServer, name: &str) -> u64 {
    s.ok(
        "POST",
        &format!("/collections/{name}/points/count"),
        Some(json!({"exact": true})),
    )["count"]
        .as_u64()
        .unwrap()
}

fn search(s: &TestServer, name: &str) -> Value {
    s.ok(
        "POST",
        &format!("/collections/{name}/points/search"),
        Some(json!({"vector": [3.0, 1.0, 0.0, 0.5], "limit": 5, "with_payload": true})),
    )
}

fn multipart(tar: &[u8]) -> (String, Vec<u8>) {
    let boundary = "deftech-boundary-7f3a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"snapshot\"; filename=\"c.snapshot\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(tar);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn create_list_download_recover_upload_delete() {
    let s = TestServer::start();
    setup(&s, "c", 30);
    let before = search(&s, "c");

    let snap = s.ok("POST", "/collections/c/snapshots?wait=true", None);
    let name = snap["name"].as_str().unwrap().to_owned();
    assert!(name.ends_with(".snapshot"), "{snap}");
    assert!(snap["size"].as_u64().unwrap() > 0);
    assert_eq!(snap["creation_time"].as_str().unwrap().len(), 19, "{snap}");
    let listed = s.ok("GET", "/collections/c/snapshots", None);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], name.as_str());

    // Download: one tar file.
    let tar = s.raw("GET", &format!("/collections/c/snapshots/{name}"), b"", &[]);
    assert_eq!(tar.status, 200);
    let tar = tar.body;
    assert_eq!(&tar[257..262], b"ustar", "a tar archive");
    assert_eq!(
        s.raw(
            "GET",
            "/collections/c/snapshots/00000000000000000001-1.snapshot",
            b"",
            &[]
        )
        .status,
        404
    );

    // Writes after the snapshot, then recover by name: back to the snapshot's state.
    upsert(&s, "c", 100..=120);
    assert_eq!(count(&s, "c"), 51);
    assert_eq!(
        s.ok(
            "PUT",
            "/collections/c/snapshots/recover",
            Some(json!({"location": name}))
        ),
        json!(true)
    );
    assert_eq!(count(&s, "c"), 30);
    assert_eq!(search(&s, "c"), before);

    // Upload as a new collection (multipart, as qdrant-client sends it).
    let (ct, body) = multipart(&tar);
    let r = s.raw(
        "POST",
        "/collections/d/snapshots/upload?priority=snapshot",
        &body,
        &[("content-type", &ct)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(count(&s, "d"), 30);
    assert_eq!(search(&s, "d"), before);

    // Recover from a file on the server, checking the checksum.
    let path = s.dir.path().join("c.snapshot");
    std::fs::write(&path, &tar).unwrap();
    let url = format!("file://{}", path.display());
    let (status, v) = s.call(
        "PUT",
        "/collections/e/snapshots/recover",
        Some(json!({"location": url, "checksum": "00".repeat(32)})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["status"]["error"].as_str().unwrap().contains("SHA-256"),
        "{v}"
    );
    assert_eq!(s.call("GET", "/collections/e", None).0, 404);
    s.ok(
        "PUT",
        "/collections/e/snapshots/recover",
        Some(json!({"location": url, "checksum": sha256_hex(&tar)})),
    );
    assert_eq!(count(&s, "e"), 30);
    assert!(
        path.exists(),
        "a server-side file is read in place, not consumed"
    );

    // Recover over HTTP from a download URL (here the server's own).
    let url = format!("http://{}/collections/c/snapshots/{name}", s.addr);
    s.ok(
        "PUT",
        "/collections/f/snapshots/recover",
        Some(json!({"location": url})),
    );
    assert_eq!(search(&s, "f"), before);

    // Damaged uploads: 400 naming the problem; the existing collection is untouched.
    upsert(&s, "d", 200..=201);
    for bad in [tar[..tar.len() / 2].to_vec(), b"not a tar".to_vec(), {
        let mut t = tar.clone();
        let at = t.len() - 3000;
        t[at] ^= 1;
        t
    }] {
        let (ct, body) = multipart(&bad);
        let r = s.raw(
            "POST",
            "/collections/d/snapshots/upload",
            &body,
            &[("content-type", &ct)],
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.json()["status"]["error"].is_string());
        assert_eq!(count(&s, "d"), 32);
    }
    let (status, v) = s.call(
        "PUT",
        "/collections/d/snapshots/recover",
        Some(json!({"location": "/no/such/file"})),
    );
    assert_eq!(status, 400, "{v}");
    let (status, _) = s.call("PUT", "/collections/d/snapshots/recover", Some(json!({})));
    assert_eq!(status, 400);

    // Delete.
    assert_eq!(
        s.ok("DELETE", &format!("/collections/c/snapshots/{name}"), None),
        json!(true)
    );
    assert_eq!(s.ok("GET", "/collections/c/snapshots", None), json!([]));
    assert_eq!(
        s.call("DELETE", &format!("/collections/c/snapshots/{name}"), None)
            .0,
        404
    );
    assert_eq!(s.call("POST", "/collections/nope/snapshots", None).0, 404);
}

#[test]
fn snapshot_routes_need_their_roles() {
    let s = TestServer::with_keys();
    setup(&s, "c", 5);
    let name = s.ok("POST", "/collections/c/snapshots", None)["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        s.call_as(Some(READER), "POST", "/collections/c/snapshots", None)
            .0,
        403
    );
    assert_eq!(
        s.call_as(Some(READER), "GET", "/collections/c/snapshots", None)
            .0,
        200
    );
    assert_eq!(
        s.call_as(Some(WRITER), "POST", "/collections/c/snapshots", None)
            .0,
        200
    );
    let recover = json!({"location": name});
    assert_eq!(
        s.call_as(
            Some(WRITER),
            "PUT",
            "/collections/c/snapshots/recover",
            Some(recover.clone())
        )
        .0,
        403
    );
    assert_eq!(
        s.call_as(None, "GET", "/collections/c/snapshots", None).0,
        401
    );
    assert_eq!(
        s.call_as(
            Some(WRITER),
            "DELETE",
            &format!("/collections/c/snapshots/{name}"),
            None
        )
        .0,
        403
    );
    assert_eq!(
        s.call_as(
            Some(ADMIN),
            "PUT",
            "/collections/c/snapshots/recover",
            Some(recover)
        )
        .0,
        200
    );
}

#[test]
fn scheduled_snapshots_with_retention_and_wal_archiving() {
    let s = TestServer::start_with(|c| {
        c.snapshots.interval_secs = 1;
        c.snapshots.keep = 2;
        c.snapshots.wal_archive = true;
        c.snapshots.wal_archive_interval_secs = 1;
    });
    setup(&s, "c", 10);
    let store = s.dir.path().join("data/snapshots");
    let mut seen = 0;
    for i in 0..60 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        if i % 4 == 0 {
            upsert(&s, "c", 1000 + i..=1000 + i);
        }
        seen = s
            .ok("GET", "/collections/c/snapshots", None)
            .as_array()
            .unwrap()
            .len();
        if seen == 2 && i > 20 {
            break;
        }
    }
    assert_eq!(seen, 2, "retention keeps the newest two");
    let wal: Vec<_> = std::fs::read_dir(store.join("c/wal")).unwrap().collect();
    assert!(!wal.is_empty(), "the WAL is archived");
    s.stop();
}

#[test]
fn command_line_snapshots_of_a_stopped_server() {
    let s = TestServer::start();
    setup(&s, "c", 25);
    let data = s.dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_deftech");
    // While the server runs, the folder is locked: a clear error.
    let busy = Command::new(bin)
        .args(["snapshot", "create", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("HTTP API"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    let dir = s.stop();
    let data = dir.path().join("data");

    let run = |args: &[&str]| {
        let out = Command::new(bin)
            .args(["snapshot"])
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let created = run(&["create"]);
    assert!(created.starts_with("c: snapshot "), "{created}");
    let listed = run(&["list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let id = listed.split('\t').nth(1).unwrap().to_owned();
    let restored = run(&["restore", "c", "--snapshot", &id, "--as", "copy"]);
    assert!(restored.contains("25 points"), "{restored}");
    let restored = run(&[
        "restore",
        "c",
        "--time",
        "2999-01-01T00:00:00",
        "--as",
        "copy2",
    ]);
    assert!(restored.contains("25 points"), "{restored}");
    let bad = Command::new(bin)
        .args(["snapshot", "restore", "c", "--time", "soon", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    run(&["delete", "c", &id]);
    assert_eq!(run(&["list", "c"]), "");

    // The server sees the restored collections.
    let s2 = TestServer::start_with(|c| c.data = data.clone());
    assert_eq!(count(&s2, "copy"), 25);
}

#[test]
fn an_unreachable_snapshot_store_is_reported_and_the_database_still_serves() {
    let s = TestServer::start_with(|c| {
        c.snapshots.s3 = Some(deftech_server::config::S3Settings {
            bucket: "backups".into(),
            region: Some("us-east-1".into()),
            endpoint: Some("http://127.0.0.1:9".into()), // discard port: nothing listens
            path_style: true,
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            ..Default::default()
        });
    });
    setup(&s, "c", 3);
    let mut last = (0, Value::Null);
    for _ in 0..300 {
        last = s.call("POST", "/collections/c/snapshots", None);
        if last.1["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("snapshots.s3"))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(
        last.1["status"]["error"]
            .as_str()
            .unwrap()
            .contains("s3://backups"),
        "{}",
        last.1
    );
    assert_eq!(count(&s, "c"), 3);
}
