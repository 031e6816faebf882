//! The official Python `qdrant-client` (from PyPI), unchanged, against the `deftech` binary.
//! `scripts/test` installs it; without it this test fails with a message saying so.

use std::process::Command;

use crate::shutdown::{free_addr, spawn_server};

#[test]
fn official_python_client_works_unchanged() {
    let check = Command::new("python3")
        .args(["-c", "import qdrant_client"])
        .output();
    match check {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "python3 with qdrant-client is required (scripts/test installs it: python3 -m pip install qdrant-client)"
        ),
    }
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let key = "suite-admin-key";
    let mut child = spawn_server(&dir.path().join("data"), addr, &["--api-key", key]);
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/qdrant_client/suite.py");
    let out = Command::new("python3")
        .arg(suite)
        .arg(format!("http://{addr}"))
        .arg(key)
        .output()
        .expect("run python3");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().unwrap();
    assert!(
        out.status.success(),
        "qdrant-client suite failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("checks passed"));
    assert!(exit.success(), "server exit: {exit}");
}
