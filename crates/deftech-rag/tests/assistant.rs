//! The assistant end to end on the offline hashing embedder: ingest (idempotent, replacing,
//! formats), ask (citations, classification, nothing relevant, streaming), clearance as a
//! property (nothing above the user's clearance is ever retrieved, cited or answered),
//! denials, fail-closed audit, and the HTTP API.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use deftech_rag::access::{self, RELEASABLE_TO_NONE};
use deftech_rag::chunk::Format;
use deftech_rag::embed::HashEmbedder;
use deftech_rag::sink::AuditSink;
use deftech_rag::{Assistant, Document, Error, Ingested, Label, Level, Retrieval, User, audit};
use proptest::prelude::*;
use serde_json::Value;

fn assistant(dir: &std::path::Path) -> Assistant {
    Assistant::builder(dir)
        .embedder(Arc::new(HashEmbedder::new(256)))
        .build()
        .unwrap()
}

fn user(id: &str, clearance: Level, compartments: &[&str], groups: &[&str]) -> User {
    User {
        id: id.into(),
        roles: vec!["analyst".into()],
        clearance,
        compartments: compartments.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
    }
}

fn label(level: Level, compartments: &[&str], groups: &[&str]) -> Label {
    Label {
        level,
        compartments: compartments.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
    }
}

fn doc(id: &str, text: &str, l: Label) -> Document {
    Document::new(id, id.to_uppercase(), text, Format::Markdown, l)
}

const REACTOR: &str = "# Reactor\n\n## Cooling\n\nThe reactor cooling loop circulates heavy water through the core. Pumps keep the heavy water moving at all times.\n\n## Shielding\n\nLead and concrete shielding surround the reactor vessel.\n";
const SUBMARINE: &str = "# Submarine\n\nThe submarine reactor uses pressurised heavy water cooling in a compact loop. Its crew monitors the loop from the control room.\n";

fn records(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .collect()
}

#[test]
fn ingest_ask_cite_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let a = assistant(dir.path());
    assert_eq!(
        a.ingest(&doc(
            "reactor.md",
            REACTOR,
            label(Level::Unclassified, &[], &[])
        ))
        .unwrap(),
        Ingested::Added
    );
    assert_eq!(
        a.ingest(&doc(
            "sub.md",
            SUBMARINE,
            label(Level::Secret, &["NN"], &["USA", "GBR"])
        ))
        .unwrap(),
        Ingested::Added
    );
    let chunks = a.chunk_count().unwrap();
    // Unchanged: nothing written. Changed: replaced.
    assert_eq!(
        a.ingest(&doc(
            "reactor.md",
            REACTOR,
            label(Level::Unclassified, &[], &[])
        ))
        .unwrap(),
        Ingested::Unchanged
    );
    assert_eq!(a.chunk_count().unwrap(), chunks);
    let relabelled = doc("reactor.md", REACTOR, label(Level::Cui, &[], &[]));
    assert_eq!(
        a.ingest(&relabelled).unwrap(),
        Ingested::Replaced,
        "a new label is a new version"
    );
    assert_eq!(a.chunk_count().unwrap(), chunks);

    let analyst = user("ana", Level::Secret, &["NN"], &["GBR"]);
    let q = "How does the heavy water cooling loop work?";
    let answer = a.ask(&analyst, q).unwrap();
    assert!(answer.found, "{answer:?}");
    assert!(!answer.citations.is_empty());
    for c in &answer.citations {
        let quoted = &answer.text[c.span.0..c.span.1];
        assert!(!quoted.is_empty());
        assert!(answer.retrieved.iter().any(|r| r.chunk == c.chunk));
        assert!(["reactor.md", "sub.md"].contains(&c.document.as_str()));
        assert!(!c.quote.is_empty() && !c.location.is_empty());
        assert!(c.number >= 1 && answer.text.contains(&format!("[{}]", c.number)));
    }
    let cited: BTreeSet<&str> = answer
        .citations
        .iter()
        .map(|c| c.document.as_str())
        .collect();
    let expected = Label::lub(answer.citations.iter().map(|c| &c.label)).unwrap();
    assert_eq!(answer.classification, expected);
    if cited.contains("sub.md") {
        assert_eq!(answer.classification.level, Level::Secret);
        assert_eq!(
            answer.classification.groups,
            ["GBR".to_owned(), "USA".to_owned()].into()
        );
    }
    // Both retrievers contributed, ranks recorded.
    assert!(
        answer
            .retrieved
            .iter()
            .any(|r| r.dense_rank.is_some() && r.keyword_rank.is_some())
    );

    // A reader without the compartment never sees the submarine document.
    let outsider = user("out", Level::TopSecret, &[], &["GBR"]);
    let answer = a.ask(&outsider, q).unwrap();
    assert!(
        answer.retrieved.iter().all(|r| r.document == "reactor.md"),
        "{:?}",
        answer.retrieved
    );

    // Nothing relevant: said, not invented.
    let none = a
        .ask(&analyst, "zebra migration across the serengeti")
        .unwrap();
    assert!(!none.found);
    assert_eq!(none.text, deftech_rag::assistant::NOTHING_RELEVANT);
    assert!(none.citations.is_empty());
    assert_eq!(none.classification, Label::new(Level::Unclassified));

    // Streaming gives the same text, in pieces.
    let mut streamed = String::new();
    let answer = a.ask_stream(&analyst, q, |t| streamed.push_str(t)).unwrap();
    assert_eq!(streamed, answer.text);

    // Bad input is named.
    let err = a.ask(&analyst, "   ").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                field: "question",
                ..
            }
        ),
        "{err}"
    );

    // Deleting.
    assert!(a.delete_document("sub.md").unwrap());
    assert!(!a.delete_document("sub.md").unwrap());
    let answer = a.ask(&analyst, q).unwrap();
    assert!(answer.retrieved.iter().all(|r| r.document == "reactor.md"));

    // The audit trail: every ingest, ask and delete, chained.
    drop(a);
    let summary = audit::verify(&dir.path().join("audit.log")).unwrap();
    let events = records(dir.path());
    assert_eq!(summary.records as usize, events.len());
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "ingest").count(), 4);
    assert_eq!(actions.iter().filter(|a| **a == "delete").count(), 2);
    let ask = events
        .iter()
        .find(|e| e["action"] == "ask" && e["outcome"] == "answered")
        .unwrap();
    assert_eq!(ask["user"]["id"], "ana");
    assert_eq!(ask["user"]["clearance"], "SECRET");
    assert_eq!(ask["query"], q);
    assert!(
        ask["filter"]["must"].is_array(),
        "the filter applied is recorded"
    );
    assert!(!ask["retrieved"].as_array().unwrap().is_empty());
    assert!(!ask["cited"].as_array().unwrap().is_empty());
    assert!(ask["cited"][0]["version"].as_str().unwrap().len() == 64);
    assert!(ask["cited"][0]["label"]["level"].is_string());
    assert_eq!(ask["models"]["generator"]["model"], "extractive");
    assert!(ask["latency_ms"]["total"].as_f64().unwrap() > 0.0);
    assert!(ask["time"].as_str().unwrap().ends_with('Z'));
    assert!(events.iter().any(|e| e["outcome"] == "nothing_relevant"));
    assert!(events.iter().any(|e| e["outcome"] == "streaming"));
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "ingest" && e["outcome"] == "unchanged")
    );
}

#[test]
fn the_wrong_embedder_for_a_data_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(assistant(dir.path()));
    let err = Assistant::builder(dir.path())
        .embedder(Arc::new(HashEmbedder::new(128)))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hash-256") && err.contains("hash-128"),
        "{err}"
    );
}

#[test]
fn denials_are_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let a = assistant(dir.path());
    let reader = user("rita", Level::Secret, &[], &[]);
    let err = a
        .ingest_as(
            &reader,
            &doc("x.md", REACTOR, label(Level::Unclassified, &[], &[])),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err}");
    let mut writer = user("will", Level::Cui, &[], &[]);
    writer.roles = vec!["ingest".into()];
    let err = a
        .ingest_as(
            &writer,
            &doc("x.md", REACTOR, label(Level::Secret, &[], &[])),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err}");
    assert_eq!(
        a.ingest_as(&writer, &doc("x.md", REACTOR, label(Level::Cui, &[], &[])))
            .unwrap()
            .0,
        Ingested::Added
    );
    assert!(matches!(
        a.delete_document_as(&reader, "x.md"),
        Err(Error::Denied(_))
    ));
    // A writer cannot overwrite or delete a document they may not read: both are audited
    // denials, and the document stays.
    a.ingest(&doc("plan.md", SUBMARINE, label(Level::Secret, &[], &[])))
        .unwrap();
    let err = a
        .ingest_as(
            &writer,
            &doc(
                "plan.md",
                "# Plan\n\nNothing here.\n",
                label(Level::Cui, &[], &[]),
            ),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err}");
    assert!(matches!(
        a.delete_document_as(&writer, "plan.md"),
        Err(Error::Denied(_))
    ));
    let boss = user("boss", Level::Secret, &[], &[]);
    let (hits, _) = a
        .retrieve(&boss, "submarine reactor", Retrieval::Hybrid, 5)
        .unwrap();
    assert!(
        hits.iter().any(|h| h.document == "plan.md"),
        "the document is untouched"
    );
    drop(a);
    let denied: Vec<Value> = records(dir.path())
        .into_iter()
        .filter(|e| e["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 5);
    assert_eq!(denied[0]["user"]["id"], "rita");
}

#[derive(Debug)]
struct BrokenSink;

impl AuditSink for BrokenSink {
    fn name(&self) -> String {
        "broken".into()
    }
    fn append(&self, _: &Value) -> deftech_rag::Result<()> {
        Err(Error::Audit("disk on fire".into()))
    }
}

#[test]
fn audit_failures_fail_closed_unless_configured_open() {
    let dir = tempfile::tempdir().unwrap();
    let a = Assistant::builder(dir.path())
        .embedder(Arc::new(HashEmbedder::new(64)))
        .audit_sink(Arc::new(BrokenSink))
        .build()
        .unwrap();
    let err = a
        .ingest(&doc("r.md", REACTOR, label(Level::Unclassified, &[], &[])))
        .unwrap_err();
    assert!(
        matches!(err, Error::Audit(_)) && err.to_string().contains("disk on fire"),
        "{err}"
    );
    let u = user("u", Level::Secret, &[], &[]);
    assert!(matches!(
        a.ask(&u, "heavy water cooling"),
        Err(Error::Audit(_))
    ));
    let mut seen = String::new();
    assert!(matches!(
        a.ask_stream(&u, "heavy water cooling", |t| seen.push_str(t)),
        Err(Error::Audit(_))
    ));
    assert!(
        seen.is_empty(),
        "no text reaches a user before the audit record is written"
    );
    drop(a);
    let open = Assistant::builder(dir.path())
        .embedder(Arc::new(HashEmbedder::new(64)))
        .audit_sink(Arc::new(BrokenSink))
        .audit_fail_open(true)
        .build()
        .unwrap();
    assert!(open.ask(&u, "heavy water cooling").unwrap().found);
}

#[test]
fn files_of_every_format_are_ingested_with_locations() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::write(docs.join("a.md"), REACTOR).unwrap();
    std::fs::write(
        docs.join("b.txt"),
        "Plain text about glaciers and ice sheets melting.\n\nA second paragraph on sea level.",
    )
    .unwrap();
    std::fs::write(docs.join("sub/c.html"), "<html><head><title>Volcanoes</title></head><body><h1>Volcanoes</h1><h2>Lava</h2><p>Basaltic lava flows are runny and hot.</p></body></html>").unwrap();
    std::fs::write(
        docs.join("d.rst.txt"),
        "Tides\n=====\n\nSpring tides\n------------\n\nSpring tides happen at new and full moon.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("e.pdf"),
        minimal_pdf(&[
            "Quartz crystals oscillate at a precise frequency.",
            "Second page about watch movements.",
        ]),
    )
    .unwrap();
    std::fs::write(docs.join("broken.pdf"), b"%PDF-1.4 not really").unwrap();
    std::fs::write(docs.join("ignored.bin"), [0u8, 1, 2]).unwrap();
    let a = assistant(&dir.path().join("data"));
    let mut seen = Vec::new();
    let report = a
        .ingest_dir(&docs, &label(Level::Unclassified, &[], &[]), |p| {
            seen.push((p.done, p.total, p.id.to_owned()))
        })
        .unwrap();
    assert_eq!(report.added, 5, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, "broken.pdf");
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[5].0, 6);
    assert!(seen.iter().any(|(_, _, id)| id == "sub/c.html"));
    let u = user("u", Level::Unclassified, &[], &[]);
    let loc = |q: &str| {
        let (hits, _) = a.retrieve(&u, q, Retrieval::Hybrid, 3).unwrap();
        (
            hits[0].document.clone(),
            hits[0].title.clone(),
            hits[0].location.clone(),
        )
    };
    assert_eq!(
        loc("basaltic lava runny"),
        (
            "sub/c.html".into(),
            "Volcanoes".into(),
            "Volcanoes › Lava".into()
        )
    );
    assert_eq!(
        loc("spring tides full moon"),
        (
            "d.rst.txt".into(),
            "Tides".into(),
            "Tides › Spring tides".into()
        )
    );
    assert_eq!(loc("quartz crystals oscillate").2, "Page 1");
    assert_eq!(loc("watch movements").2, "Page 2");
    assert_eq!(loc("glaciers ice sheets").0, "b.txt");
    // A second pass changes nothing.
    let again = a
        .ingest_dir(&docs, &label(Level::Unclassified, &[], &[]), |_| {})
        .unwrap();
    assert_eq!((again.added, again.unchanged), (0, 5));
}

/// A PDF with one page per string (Helvetica, standard encoding), offsets computed.
fn minimal_pdf(pages: &[&str]) -> Vec<u8> {
    let n = pages.len();
    let mut objects: Vec<String> = Vec::new();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {n} >>",
        kids.join(" ")
    ));
    objects.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into(),
    );
    for (i, text) in pages.iter().enumerate() {
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        let stream = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ));
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
    for off in offsets {
        out.extend(format!("{off:010} 00000 n \n").bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .bytes(),
    );
    out
}

const COMPARTMENTS: [&str; 3] = ["HCS", "SI", "TK"];
const GROUPS: [&str; 3] = ["USA", "GBR", "AUS"];

fn subset(names: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(names, 0..=names.len())
}

fn level() -> impl Strategy<Value = Level> {
    proptest::sample::select(Level::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Across random labels and users: no retrieved chunk, citation or answer classification is
    /// ever above what the user may read, and every readable document can be found.
    #[test]
    fn nothing_above_clearance_ever_reaches_the_user(
        labels in proptest::collection::vec((level(), subset(&COMPARTMENTS), subset(&GROUPS)), 8),
        users in proptest::collection::vec((level(), subset(&COMPARTMENTS), subset(&GROUPS)), 4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let a = assistant(dir.path());
        let labels: Vec<Label> = labels.iter().map(|(l, c, g)| label(*l, c, g)).collect();
        for (i, l) in labels.iter().enumerate() {
            let text = format!("# Report {i}\n\nThe heavy water reactor report number {i} describes cooling loop {i}. Report {i} also covers shielding.\n");
            a.ingest(&doc(&format!("r{i}.md"), &text, l.clone())).unwrap();
        }
        for (lvl, c, g) in &users {
            let u = user("p", *lvl, c, g);
            let readable: BTreeSet<String> = labels
                .iter()
                .enumerate()
                .filter(|(_, l)| access::can_read(&u, l))
                .map(|(i, _)| format!("r{i}.md"))
                .collect();
            let answer = a.ask(&u, "heavy water reactor cooling loop report").unwrap();
            for r in &answer.retrieved {
                prop_assert!(access::can_read(&u, &r.label), "retrieved {:?} for {:?}", r.label, u);
                prop_assert!(readable.contains(&r.document));
            }
            for c in &answer.citations {
                prop_assert!(access::can_read(&u, &c.label), "cited {:?} for {:?}", c.label, u);
            }
            let cl = &answer.classification;
            prop_assert!(cl.level <= u.clearance);
            prop_assert!(cl.compartments.is_subset(&u.compartments));
            // Releasability of the combination: the groups every cited (or prompted) chunk is
            // releasable to. It may be disjoint from the user's groups even though the user may
            // read each part (parts REL TO {GBR, AUS} and {AUS, USA} read by a GBR+USA user
            // combine to REL TO AUS); each part's readability is what is asserted above.
            let parts: Vec<&Label> = if answer.citations.is_empty() {
                answer.retrieved.iter().map(|r| &r.label).collect()
            } else {
                answer.citations.iter().map(|c| &c.label).collect()
            };
            for g in &cl.groups {
                prop_assert!(
                    g == RELEASABLE_TO_NONE || parts.iter().all(|p| p.groups.is_empty() || p.groups.contains(g)),
                    "group {g} of {cl:?} not shared by {parts:?}"
                );
            }
            // Nothing readable is lost: each retriever alone finds every readable report.
            for mode in [Retrieval::Dense, Retrieval::Keyword] {
                let (hits, _) = a.retrieve(&u, "heavy water reactor report cooling", mode, 40).unwrap();
                let found: BTreeSet<String> = hits.iter().map(|h| h.document.clone()).collect();
                prop_assert_eq!(&found, &readable, "{:?}", mode);
            }
        }
    }
}

mod api {
    use super::*;
    use deftech_rag::api::{Users, router};

    struct Server {
        url: String,
        _rt: tokio::runtime::Runtime,
    }

    fn serve(a: Assistant, users: Users) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = router(Arc::new(a), users);
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { url, _rt: rt }
    }

    fn post(url: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.post(url).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let mut resp = req.send(body).unwrap();
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap(),
        )
    }

    #[test]
    fn identity_comes_from_the_token_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = assistant(dir.path());
        a.ingest(&doc(
            "reactor.md",
            REACTOR,
            label(Level::Unclassified, &[], &[]),
        ))
        .unwrap();
        a.ingest(&doc("sub.md", SUBMARINE, label(Level::TopSecret, &[], &[])))
            .unwrap();
        let mut users = Users::parse(&format!(
            "[[user]]\ntoken_sha256 = \"{}\"\nid = \"alice\"\nroles = [\"analyst\"]\nclearance = \"CUI\"\n",
            "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3" // sha256("123")
        ))
        .unwrap();
        let mut writer = user("wendy", Level::Secret, &[], &[]);
        writer.roles = vec!["ingest".into()];
        users.add("writer-token", writer);
        assert!(
            Users::parse("[[user]]\ntoken_sha256 = \"xyz\"\nid = \"a\"\nclearance = \"CUI\"\n")
                .unwrap_err()
                .contains("64 hex")
        );
        let s = serve(a, users);
        let ask = format!("{}/v1/ask", s.url);

        let (status, body) = post(&ask, None, r#"{"question": "heavy water cooling"}"#);
        assert_eq!(status, 401, "{body}");
        let (status, _) = post(
            &ask,
            Some("wrong"),
            r#"{"question": "heavy water cooling"}"#,
        );
        assert_eq!(status, 401);
        // A body cannot name a user.
        let (status, body) = post(
            &ask,
            Some("123"),
            r#"{"question": "heavy water cooling", "user": {"id": "root", "clearance": "TOP_SECRET"}}"#,
        );
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("unknown field `user`"), "{body}");

        let (status, body) = post(
            &ask,
            Some("123"),
            r#"{"question": "submarine reactor heavy water cooling loop"}"#,
        );
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert!(
            answer["retrieved"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["document"] == "reactor.md"),
            "{body}"
        );
        assert!(answer["citations"][0]["quote"].is_string());
        assert_eq!(answer["classification"]["level"], "UNCLASSIFIED");

        // Streaming: text events, then the answer.
        let (status, body) = post(
            &ask,
            Some("123"),
            r#"{"question": "heavy water cooling loop", "stream": true}"#,
        );
        assert_eq!(status, 200);
        assert!(
            body.contains("event: text") && body.contains("event: answer"),
            "{body}"
        );

        // Documents: writers only, and not above their own clearance.
        let docs = format!("{}/v1/documents", s.url);
        let new_doc = r#"{"id": "memo.md", "title": "Memo", "text": "The glacier survey found thick ice.", "classification": {"level": "SECRET", "compartments": [], "groups": []}}"#;
        assert_eq!(post(&docs, Some("123"), new_doc).0, 403);
        let (status, body) = post(&docs, Some("writer-token"), new_doc);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"outcome\":\"added\""), "{body}");
        let too_high = new_doc.replace("SECRET", "TOP_SECRET");
        assert_eq!(post(&docs, Some("writer-token"), &too_high).0, 403);
        let (status, body) = post(
            &docs,
            Some("writer-token"),
            r#"{"id": "x", "text": "t", "format": "docx", "classification": {"level": "CUI", "compartments": [], "groups": []}}"#,
        );
        assert_eq!(status, 400);
        assert!(body.contains("docx"), "{body}");
        drop(s);
        let denied = records(dir.path())
            .into_iter()
            .filter(|e| e["outcome"] == "denied")
            .count();
        assert_eq!(denied, 4, "two unauthenticated asks and two refused writes");
    }
}

/// Scores documents by how often they say "submarine" (a stand-in for a cross-encoder).
#[derive(Debug)]
struct SubmarineReranker;

impl deftech_rag::rerank::Reranker for SubmarineReranker {
    fn model(&self) -> String {
        "submarine-counter".into()
    }
    fn endpoint(&self) -> String {
        "local".into()
    }
    fn rerank(
        &self,
        _q: &str,
        documents: &[String],
        top_n: usize,
    ) -> deftech_rag::Result<Vec<(usize, f32)>> {
        let mut out: Vec<(usize, f32)> = documents
            .iter()
            .enumerate()
            .map(|(i, d)| {
                (
                    i,
                    d.to_lowercase().matches("submarine").count() as f32 / 10.0,
                )
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.truncate(top_n);
        Ok(out)
    }
}

#[test]
fn a_reranker_orders_the_candidates_and_gates_relevance() {
    let dir = tempfile::tempdir().unwrap();
    let a = Assistant::builder(dir.path())
        .embedder(Arc::new(HashEmbedder::new(256)))
        .reranker(Arc::new(SubmarineReranker))
        .build()
        .unwrap();
    a.ingest(&doc(
        "reactor.md",
        REACTOR,
        label(Level::Unclassified, &[], &[]),
    ))
    .unwrap();
    a.ingest(&doc(
        "sub.md",
        SUBMARINE,
        label(Level::Unclassified, &[], &[]),
    ))
    .unwrap();
    let u = user("u", Level::Unclassified, &[], &[]);
    let answer = a.ask(&u, "reactor heavy water cooling loop").unwrap();
    assert!(answer.found);
    assert_eq!(
        answer.retrieved[0].document, "sub.md",
        "{:?}",
        answer.retrieved
    );
    assert!(answer.retrieved[0].score > 0.1);
    assert!(
        answer
            .retrieved
            .windows(2)
            .all(|w| w[0].score >= w[1].score)
    );
    // Every candidate scores 0 for the reranker: nothing relevant.
    a.delete_document("sub.md").unwrap();
    let none = a.ask(&u, "reactor heavy water cooling loop").unwrap();
    assert!(!none.found);
    drop(a);
    let ask = records(dir.path())
        .into_iter()
        .find(|e| e["action"] == "ask")
        .unwrap();
    assert_eq!(ask["models"]["reranker"]["model"], "submarine-counter");
}
