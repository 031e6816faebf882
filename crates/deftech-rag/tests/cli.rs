//! The `deftech-rag` binary: ingest a folder, ask, verify the audit log, and catch tampering.

use std::process::Command;

fn rag(data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deftech-rag"));
    c.arg("--data")
        .arg(data)
        .args(["--embedder", "hash", "--embed-dim", "128"]);
    c.env("RUST_LOG", "warn");
    c
}

fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ingest_ask_verify_and_detect_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("ops.md"), "# Operations\n\n## Convoy\n\nThe convoy leaves at dawn along the northern route past the river.\n").unwrap();
    std::fs::write(
        docs.join("cook.md"),
        "# Kitchen\n\nBread needs flour, water, salt and yeast.\n",
    )
    .unwrap();
    let data = dir.path().join("data");

    let (ok, out, err) = run(rag(&data).arg("ingest").arg(&docs).args([
        "--classification",
        "secret",
        "--group",
        "USA",
    ]));
    assert!(ok, "{err}");
    assert!(
        out.contains("2 added, 0 replaced, 0 unchanged, 0 failed"),
        "{out}"
    );

    let ask = |clearance: &str, group: &str| {
        run(rag(&data).args([
            "ask",
            "When does the convoy leave along the northern route?",
            "--user",
            "ana",
            "--clearance",
            clearance,
            "--group",
            group,
        ]))
    };
    let (ok, out, err) = ask("secret", "USA");
    assert!(ok, "{err}");
    assert!(out.contains("convoy leaves at dawn"), "{out}");
    assert!(out.contains("Classification: SECRET//REL TO USA"), "{out}");
    assert!(out.contains("Operations › Convoy (ops.md)"), "{out}");
    let (ok, out, _) = ask("secret", "GBR");
    assert!(ok);
    assert!(
        out.contains("found nothing relevant") && !out.contains("dawn"),
        "{out}"
    );

    let (ok, out, err) = run(rag(&data).args([
        "ask",
        "convoy route",
        "--user",
        "ana",
        "--clearance",
        "secret",
        "--group",
        "USA",
        "--json",
    ]));
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["citations"][0]["document"], "ops.md");

    let (ok, out, err) = run(rag(&data).args(["audit", "verify"]));
    assert!(ok, "{err}");
    assert!(out.contains("5 records, chain intact"), "{out}");

    // Edit the first ask (line 3): verification fails and names that line.
    let log = data.join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let edited = text.replacen("\"ana\"", "\"bob\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&log, edited).unwrap();
    let (ok, _, err) = run(rag(&data).args(["audit", "verify"]));
    assert!(!ok);
    assert!(err.contains("line 3") && err.contains("edited"), "{err}");

    // A bad flag value is named.
    let (ok, _, err) =
        run(rag(&data).args(["ingest", "/nonexistent", "--classification", "cosmic"]));
    assert!(!ok && err.contains("cosmic"), "{err}");
}
