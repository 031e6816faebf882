//! Retrieval evaluation: recall@5, MRR@10 and nDCG@10 of dense, keyword (BM25) and hybrid
//! retrieval (reciprocal rank fusion, and score-weighted fusion with dense weights 0.3 and 0.5,
//! the default) on a real corpus with known-answer queries: every section title of the documents
//! (at least two words, naming one section only) is a query, and the chunks of that section
//! are its relevant chunks.
//!
//! ```sh
//! scripts/fetch-model   # once
//! apt-get install python3.11-doc
//! cargo run --release -p deftech-rag --example retrieval_eval -- \
//!     /usr/share/doc/python3.11/html/_sources/tutorial /usr/share/doc/python3.11/html/_sources/faq
//! ```
//!
//! `--embedder hash` uses the hashing embedder instead of all-MiniLM-L6-v2 (no model needed).

#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use deftech_rag::chunk::{ChunkConfig, WordCounter, chunk};
use deftech_rag::embed::{Embedder, HashEmbedder};
use deftech_rag::{Assistant, Fusion, Label, Level, Limits, Retrieval, User, ingest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dirs = Vec::new();
    let mut hash = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--embedder" => {}
            "hash" => hash = true,
            "local" => hash = false,
            _ => dirs.push(PathBuf::from(a)),
        }
    }
    if dirs.is_empty() {
        dirs.push("/usr/share/doc/python3.11/html/_sources/tutorial".into());
        dirs.push("/usr/share/doc/python3.11/html/_sources/faq".into());
    }
    let embedder: Arc<dyn Embedder> = if hash {
        Arc::new(HashEmbedder::new(384))
    } else {
        let dir = std::env::var_os("DEFTECH_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/deftech/all-MiniLM-L6-v2")
            });
        Arc::new(deftech_rag::embed::LocalEmbedder::open(dir)?)
    };
    let data = tempfile::tempdir()?;
    let assistant = Assistant::builder(data.path())
        .embedder(embedder.clone())
        .build()?;
    let fusions = [
        ("hybrid-rrf", Fusion::Rrf),
        ("hybrid-w0.3", Fusion::Weighted { dense: 0.3 }),
        ("hybrid-w0.5", Fusion::Weighted { dense: 0.5 }),
    ];
    let label = Label::new(Level::Unclassified);

    // Ingest, and collect sections: heading → the (document, location) it names.
    let mut sections: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let started = std::time::Instant::now();
    let mut chunks = 0;
    for dir in &dirs {
        let prefix = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for (path, id) in ingest::walk(dir)? {
            let id = format!("{prefix}/{id}");
            let doc = ingest::load(&path, &id, label.clone())?;
            assistant.ingest(&doc)?;
            for c in chunk(&doc.text, doc.format, &ChunkConfig::default(), &WordCounter) {
                chunks += 1;
                if let Some(title) = c.section.last() {
                    sections
                        .entry(title.clone())
                        .or_default()
                        .insert((id.clone(), c.location()));
                }
            }
        }
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let queries: Vec<(String, (String, String))> = sections
        .into_iter()
        .filter(|(title, places)| places.len() == 1 && title.split_whitespace().count() >= 2)
        .map(|(title, places)| (title, places.into_iter().next().expect("one place")))
        .collect();
    // How many chunks each section has (its relevant set).
    let user = User {
        id: "eval".into(),
        roles: vec![],
        clearance: Level::TopSecret,
        compartments: BTreeSet::new(),
        groups: BTreeSet::new(),
    };
    println!(
        "corpus: {} ({chunks} chunks, ingested in {ingest_secs:.1} s with {}); {} queries (section titles)",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        embedder.model(),
        queries.len()
    );
    println!(
        "{:<12} | {:>9} | {:>7} | {:>8} | {:>10}",
        "mode", "recall@5", "MRR@10", "nDCG@10", "ms/query"
    );
    let runs = [
        ("dense".to_owned(), Retrieval::Dense, None),
        ("keyword".to_owned(), Retrieval::Keyword, None),
    ]
    .into_iter()
    .chain(
        fusions
            .iter()
            .map(|(name, f)| (name.to_string(), Retrieval::Hybrid, Some(*f))),
    );
    drop(assistant);
    for (name, mode, fusion) in runs {
        let assistant = Assistant::builder(data.path())
            .embedder(embedder.clone())
            .limits(Limits {
                fusion: fusion.unwrap_or(Fusion::Rrf),
                ..Limits::default()
            })
            .build()?;
        let (mut recall, mut mrr, mut ndcg) = (0.0, 0.0, 0.0);
        let t = std::time::Instant::now();
        for (q, (doc, location)) in &queries {
            // The relevant set: every chunk of the section (found with a wide search).
            let (hits, _) = assistant.retrieve(&user, q, mode, 10)?;
            let rel = |h: &deftech_rag::Retrieved| h.document == *doc && h.location == *location;
            let total_relevant = assistant.section_chunks(doc, location)?.max(1);
            let found5 = hits.iter().take(5).filter(|h| rel(h)).count();
            recall += found5 as f64 / total_relevant.min(5) as f64;
            if let Some(r) = hits.iter().position(rel) {
                mrr += 1.0 / (r + 1) as f64;
            }
            let dcg: f64 = hits
                .iter()
                .enumerate()
                .filter(|(_, h)| rel(h))
                .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
                .sum();
            let idcg: f64 = (0..total_relevant.min(10))
                .map(|i| 1.0 / ((i + 2) as f64).log2())
                .sum();
            ndcg += dcg / idcg;
        }
        let n = queries.len().max(1) as f64;
        println!(
            "{:<12} | {:>9.4} | {:>7.4} | {:>8.4} | {:>10.2}",
            name,
            recall / n,
            mrr / n,
            ndcg / n,
            t.elapsed().as_secs_f64() * 1000.0 / n
        );
    }
    Ok(())
}
