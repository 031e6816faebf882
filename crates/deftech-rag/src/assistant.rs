//! The assistant: ingest documents, answer questions with citations under the asker's
//! clearance, and audit everything.
//!
//! ```text
//! ask(user, q) ─ embed q ─┬─ dense search (deftech-vec, clearance filter inside) ─┐
//!                         └─ BM25 (tantivy, clearance clauses inside) ────────────┴─ fuse
//!   ─ [rerank] ─ re-check every label ─ relevance gate ─ context budget ─ generate ─ cite
//!   ─ classification = lub(cited labels) ─ audit record (fail closed) ─ Answer
//! ```
//!
//! Data folder: `vectors/` (the deftech-vec database, collection `chunks`), `keyword/` (the
//! tantivy index), `audit.log` (+ `audit.log.head`), `model.json` (the embedder the stored
//! vectors came from: opening with another model is refused, not silently mixed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use deftech_vec::{Database, PointId};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};

pub use crate::answer::{Answer, Citation, Retrieved, Timings};
pub use crate::fusion::{Fusion, RRF_K, Retrieval, rrf, weighted};

use crate::access::{self, Label, Level, User};
use crate::chunk::{ChunkConfig, TokenCounter, WordCounter, chunk};
use crate::embed::{Embedder, InputKind, embed_all};
use crate::error::{Error, Result};
use crate::generate::{Extractive, Generator, OnText, Passage, best_quote};
use crate::ingest::{self, Document};
use crate::keyword::{KeywordChunk, KeywordIndex};
use crate::rerank::Reranker;
use crate::sink::{AuditSink, FileSink, rfc3339};
use crate::store::{ChunkStore, DocumentMeta, Stored};

/// The text of the answer when retrieval finds nothing relevant the user may read.
pub const NOTHING_RELEVANT: &str =
    "I found nothing relevant to this question in the documents available to you.";

/// How much to retrieve and how much to put in the prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Candidates from each retriever (dense and keyword) before fusion.
    pub candidates: usize,
    /// Most chunks in the prompt.
    pub context_chunks: usize,
    /// Token budget for the chunks in the prompt.
    pub context_tokens: usize,
    /// Without a reranker: the best dense (cosine) score must reach this, else the answer is
    /// [`NOTHING_RELEVANT`]. Depends on the embedding model (0.3 suits all-MiniLM-L6-v2).
    pub min_similarity: f32,
    /// With a reranker: the best relevance score must reach this.
    pub min_rerank_score: f32,
    /// Longest question, in bytes.
    pub max_question_bytes: usize,
    /// How hybrid retrieval combines the two lists. Equal weights by default: on the Python
    /// tutorial and FAQ evaluation (examples/retrieval_eval.rs) it beat both retrievers alone
    /// on recall@5, MRR and nDCG@10, where RRF fell between them.
    pub fusion: Fusion,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            candidates: 40,
            context_chunks: 8,
            context_tokens: 2400,
            min_similarity: 0.3,
            min_rerank_score: 0.1,
            max_question_bytes: 4096,
            fusion: Fusion::Weighted { dense: 0.5 },
        }
    }
}

/// What an ingest did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ingested {
    /// A new document.
    Added,
    /// A changed document: its chunks were replaced.
    Replaced,
    /// Already stored in this version: nothing written.
    Unchanged,
}

/// Totals of [`Assistant::ingest_dir`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IngestReport {
    /// New documents.
    pub added: usize,
    /// Changed documents.
    pub replaced: usize,
    /// Unchanged documents.
    pub unchanged: usize,
    /// Chunks written.
    pub chunks: usize,
    /// Files that failed, with the reason (the others are still ingested).
    pub failed: Vec<(String, String)>,
}

/// Progress of [`Assistant::ingest_dir`], reported after each file.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// Files done.
    pub done: usize,
    /// Files in the folder.
    pub total: usize,
    /// The file just handled.
    pub id: &'a str,
    /// What happened to it.
    pub outcome: std::result::Result<Ingested, &'a Error>,
}

/// Builds an [`Assistant`].
#[derive(Debug)]
pub struct AssistantBuilder {
    data: PathBuf,
    embedder: Option<Arc<dyn Embedder>>,
    generator: Option<Arc<dyn Generator>>,
    reranker: Option<Arc<dyn Reranker>>,
    sinks: Vec<Arc<dyn AuditSink>>,
    file_audit: bool,
    fail_open: bool,
    limits: Limits,
    chunking: ChunkConfig,
}

impl AssistantBuilder {
    /// The embedder (required).
    pub fn embedder(mut self, e: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(e);
        self
    }

    /// The generator; without one, answers are extractive.
    pub fn generator(mut self, g: Arc<dyn Generator>) -> Self {
        self.generator = Some(g);
        self
    }

    /// A reranker for the fused candidates.
    pub fn reranker(mut self, r: Arc<dyn Reranker>) -> Self {
        self.reranker = Some(r);
        self
    }

    /// Another audit sink (PostgreSQL), in addition to the log file in the data folder.
    pub fn audit_sink(mut self, s: Arc<dyn AuditSink>) -> Self {
        self.sinks.push(s);
        self
    }

    /// Whether to keep the hash-chained `audit.log` in the data folder (default yes).
    pub fn audit_file(mut self, yes: bool) -> Self {
        self.file_audit = yes;
        self
    }

    /// Serve requests even when an audit record cannot be written (default: fail closed).
    pub fn audit_fail_open(mut self, yes: bool) -> Self {
        self.fail_open = yes;
        self
    }

    /// Retrieval and prompt limits.
    pub fn limits(mut self, l: Limits) -> Self {
        self.limits = l;
        self
    }

    /// Chunk sizes.
    pub fn chunking(mut self, c: ChunkConfig) -> Self {
        self.chunking = c;
        self
    }

    /// Opens the data folder (creating it) and returns the assistant.
    pub fn build(self) -> Result<Assistant> {
        let embedder = self.embedder.ok_or(Error::Invalid {
            field: "embedder",
            reason: "an assistant needs an embedder".into(),
        })?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(&self.data).map_err(io(&self.data))?;
        // The stored vectors must come from the same model.
        let marker = self.data.join("model.json");
        let model = json!({"model": embedder.model(), "dim": embedder.dim()});
        match std::fs::read(&marker) {
            Ok(bytes) => {
                let stored: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if stored != model {
                    return Err(Error::Invalid {
                        field: "embedder",
                        reason: format!(
                            "{} holds vectors from {stored}, not {model}: use the same model, or \
                             a new data folder and re-ingest",
                            self.data.display()
                        ),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::write(&marker, model.to_string()).map_err(io(&marker))?;
            }
            Err(e) => return Err(io(&marker)(e)),
        }
        let db = Database::open(self.data.join("vectors"))?;
        let store = ChunkStore::open(&db, "chunks", embedder.dim())?;
        let keyword = KeywordIndex::open(&self.data.join("keyword"))?;
        let mut sinks = self.sinks;
        if self.file_audit {
            sinks.insert(0, Arc::new(FileSink::open(&self.data.join("audit.log"))?));
        }
        Ok(Assistant {
            _db: db,
            store,
            keyword,
            embedder,
            generator: self.generator,
            reranker: self.reranker,
            sinks,
            fail_open: self.fail_open,
            limits: self.limits,
            chunking: self.chunking,
            ingest_lock: Mutex::new(()),
        })
    }
}

/// The RAG assistant. `Send + Sync`: share it behind an `Arc`; asks run concurrently, ingests
/// one at a time.
#[derive(Debug)]
pub struct Assistant {
    _db: Database,
    store: ChunkStore,
    keyword: KeywordIndex,
    embedder: Arc<dyn Embedder>,
    generator: Option<Arc<dyn Generator>>,
    reranker: Option<Arc<dyn Reranker>>,
    sinks: Vec<Arc<dyn AuditSink>>,
    fail_open: bool,
    limits: Limits,
    chunking: ChunkConfig,
    ingest_lock: Mutex<()>,
}

fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "roles": user.roles,
        "clearance": user.clearance,
        "compartments": user.compartments,
        "groups": user.groups,
    })
}

fn chunk_ref(r: &Retrieved) -> Value {
    json!({"chunk": r.chunk, "document": r.document, "version": r.version, "label": r.label})
}

/// The version of a document: its text, title and label (a relabelled document is re-stored
/// so its chunks carry the new label).
fn version_of(doc: &Document) -> String {
    crate::store::content_hash(&format!(
        "{}\u{0}{}\u{0}{}",
        doc.text,
        doc.meta.title,
        serde_json::to_string(&doc.meta.label).expect("labels serialize")
    ))
}

/// Roles allowed to ingest and delete documents.
pub const WRITER_ROLES: [&str; 2] = ["admin", "ingest"];

impl Assistant {
    /// A builder for an assistant keeping its data in `data`.
    pub fn builder(data: impl Into<PathBuf>) -> AssistantBuilder {
        AssistantBuilder {
            data: data.into(),
            embedder: None,
            generator: None,
            reranker: None,
            sinks: Vec::new(),
            file_audit: true,
            fail_open: false,
            limits: Limits::default(),
            chunking: ChunkConfig::default(),
        }
    }

    /// Writes an audit record to every sink; an error fails the request unless configured to
    /// fail open.
    fn audit(&self, mut event: Value) -> Result<()> {
        event["time"] = json!(rfc3339(SystemTime::now()));
        for sink in &self.sinks {
            if let Err(e) = sink.append(&event) {
                if self.fail_open {
                    tracing::error!(sink = %sink.name(), "audit record lost: {e}");
                } else {
                    return Err(Error::Audit(format!("{}: {e}", sink.name())));
                }
            }
        }
        Ok(())
    }

    /// Records a denial that happened outside the assistant (an unauthenticated request): the
    /// user is unknown when `user` is `None`.
    pub fn audit_denial(&self, user: Option<&User>, action: &str, reason: &str) -> Result<()> {
        self.audit(json!({
            "action": action,
            "outcome": "denied",
            "user": user.map(user_json),
            "reason": reason,
        }))
    }

    /// Records a denial and returns the error for it.
    fn deny(&self, user: &User, action: &str, reason: String, detail: Value) -> Error {
        let audited = self.audit(json!({
            "action": action,
            "outcome": "denied",
            "user": user_json(user),
            "reason": reason,
            "detail": detail,
        }));
        match audited {
            Ok(()) => Error::Denied(reason),
            Err(e) => e,
        }
    }

    /// Denies (and audits) `action` on document `id` by a user without a writer role.
    fn require_writer(&self, user: &User, action: &str, id: &str) -> Result<()> {
        if user
            .roles
            .iter()
            .any(|r| WRITER_ROLES.contains(&r.as_str()))
        {
            return Ok(());
        }
        Err(self.deny(
            user,
            action,
            format!(
                "user {} has no writer role ({})",
                user.id,
                WRITER_ROLES.join(", ")
            ),
            json!({"document": id}),
        ))
    }

    /// Denies (and audits) writing over stored document `id` (to `verb` it) when the user may
    /// not read the stored version. Call with the ingest lock held.
    fn require_readable_stored(
        &self,
        user: &User,
        action: &str,
        verb: &str,
        id: &str,
    ) -> Result<()> {
        match self.store.label_of(id)? {
            Some(stored) if !access::can_read(user, &stored) => Err(self.deny(
                user,
                action,
                format!("user {} may not {verb} document {id}", user.id),
                json!({"document": id}),
            )),
            _ => Ok(()),
        }
    }

    /// Ingests a document as the system (an operator's batch job).
    pub fn ingest(&self, doc: &Document) -> Result<Ingested> {
        self.ingest_checked(&system_user(&doc.meta.label), doc, false)
            .map(|(outcome, _)| outcome)
    }

    /// Ingests a document for `user`, who needs a writer role ([`WRITER_ROLES`]) and must be
    /// able to read the label given to the document. Returns the outcome and the chunk count.
    pub fn ingest_as(&self, user: &User, doc: &Document) -> Result<(Ingested, usize)> {
        self.ingest_checked(user, doc, true)
    }

    /// `ingest_as`; `check_stored` also requires that the user can read the version being
    /// replaced (off for the system's own ingests).
    fn ingest_checked(
        &self,
        user: &User,
        doc: &Document,
        check_stored: bool,
    ) -> Result<(Ingested, usize)> {
        let started = Instant::now();
        self.require_writer(user, "ingest", &doc.meta.id)?;
        if !access::can_read(user, &doc.meta.label) {
            return Err(self.deny(
                user,
                "ingest",
                format!(
                    "user {} may not write a document labelled above their clearance",
                    user.id
                ),
                json!({"document": doc.meta.id, "label": doc.meta.label}),
            ));
        }
        if doc.meta.id.is_empty() {
            return Err(Error::Invalid {
                field: "document id",
                reason: "must not be empty".into(),
            });
        }
        let _one_at_a_time = self.ingest_lock.lock();
        // Replacing a stored document is writing over it: the writer must be able to read it.
        if check_stored {
            self.require_readable_stored(user, "ingest", "replace", &doc.meta.id)?;
        }
        let version = version_of(doc);
        let result = self.ingest_locked(doc, &version);
        let (outcome, chunks) = match &result {
            Ok((o, n)) => (json!(o), *n),
            Err(e) => (json!(format!("error: {e}")), 0),
        };
        self.audit(json!({
            "action": "ingest",
            "outcome": outcome,
            "user": user_json(user),
            "document": doc.meta.id,
            "title": doc.meta.title,
            "source": doc.meta.source,
            "version": version,
            "label": doc.meta.label,
            "chunks": chunks,
            "model": {"embedder": self.embedder.model(), "endpoint": self.embedder.endpoint()},
            "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
        }))?;
        result
    }

    fn ingest_locked(&self, doc: &Document, version: &str) -> Result<(Ingested, usize)> {
        let meta = &doc.meta;
        if self.store.is_current(&meta.id, version)?
            && self.keyword.is_current(&meta.id, version)?
        {
            return Ok((Ingested::Unchanged, 0));
        }
        let chunks = chunk(&doc.text, doc.format, &self.chunking, &WordCounter);
        let chunks: Vec<_> = chunks
            .into_iter()
            .filter(|c| !c.text.trim().is_empty())
            .collect();
        if chunks.is_empty() {
            return Err(Error::Invalid {
                field: "document",
                reason: format!("{}: no text to index", meta.id),
            });
        }
        let texts: Vec<String> = chunks.iter().map(|c| embed_text(meta, c)).collect();
        let stored = if self.store.is_current(&meta.id, version)? {
            None
        } else {
            let vectors = embed_all(self.embedder.as_ref(), &texts, InputKind::Document)?;
            self.store.put(meta, version, &chunks, vectors)?
        };
        // The keyword index follows the vector store (rewritten if a crash left it behind).
        let ids: Vec<String> = (0..chunks.len())
            .map(|i| crate::store::chunk_id(&meta.id, version, chunks[i].index).to_string())
            .collect();
        let kw: Vec<KeywordChunk<'_>> = ids
            .iter()
            .zip(&texts)
            .map(|(id, text)| KeywordChunk {
                id: id.clone(),
                text,
            })
            .collect();
        self.keyword.put(&meta.id, version, &meta.label, &kw)?;
        Ok((
            match stored {
                Some(Stored::Replaced) => Ingested::Replaced,
                _ => Ingested::Added,
            },
            chunks.len(),
        ))
    }

    /// Ingests every supported file under `dir` (see [`ingest::load`]) with `label`, reporting
    /// progress after each file. A file that fails is reported and skipped.
    pub fn ingest_dir(
        &self,
        dir: &Path,
        label: &Label,
        mut progress: impl FnMut(Progress<'_>),
    ) -> Result<IngestReport> {
        let files = ingest::walk(dir)?;
        let mut report = IngestReport::default();
        for (done, (path, id)) in files.iter().enumerate() {
            let outcome = ingest::load(path, id, label.clone())
                .and_then(|doc| self.ingest_checked(&system_user(label), &doc, false));
            match &outcome {
                Ok((o, n)) => {
                    report.chunks += n;
                    match o {
                        Ingested::Added => report.added += 1,
                        Ingested::Replaced => report.replaced += 1,
                        Ingested::Unchanged => report.unchanged += 1,
                    }
                }
                // A failing audit stops everything (fail closed).
                Err(Error::Audit(_)) if !self.fail_open => return outcome.map(|_| report),
                Err(e) => report.failed.push((id.clone(), e.to_string())),
            }
            progress(Progress {
                done: done + 1,
                total: files.len(),
                id,
                outcome: outcome.as_ref().map(|(o, _)| *o),
            });
        }
        Ok(report)
    }

    /// Deletes a document as the system; returns whether it was stored.
    pub fn delete_document(&self, id: &str) -> Result<bool> {
        self.delete_checked(&system_user(&Label::new(Level::TopSecret)), id, false)
    }

    /// Deletes a document for `user` (a writer role is required); returns whether it was
    /// stored.
    pub fn delete_document_as(&self, user: &User, id: &str) -> Result<bool> {
        self.delete_checked(user, id, true)
    }

    fn delete_checked(&self, user: &User, id: &str, check_stored: bool) -> Result<bool> {
        self.require_writer(user, "delete", id)?;
        let _one_at_a_time = self.ingest_lock.lock();
        if check_stored {
            self.require_readable_stored(user, "delete", "delete", id)?;
        }
        let present = self.store.delete_document(id)?;
        self.keyword.delete_document(id)?;
        self.audit(json!({
            "action": "delete",
            "outcome": if present { "deleted" } else { "absent" },
            "user": user_json(user),
            "document": id,
        }))?;
        Ok(present)
    }

    /// Retrieves the chunks `user` may read for `question`, fused, reranked when a reranker is
    /// configured. Also returns the time spent embedding, searching and reranking.
    pub fn retrieve(
        &self,
        user: &User,
        question: &str,
        mode: Retrieval,
        k: usize,
    ) -> Result<(Vec<Retrieved>, [Duration; 3])> {
        let t = Instant::now();
        // Each retriever contributes a wider pool than asked for: fusion needs the items one
        // list ranks low and the other high.
        let pool = k.max(self.limits.candidates);
        let (dense, embed_time) = if mode == Retrieval::Keyword {
            (Vec::new(), Duration::ZERO)
        } else {
            let q = embed_all(
                self.embedder.as_ref(),
                &[question.to_owned()],
                InputKind::Query,
            )?
            .pop()
            .expect("one vector for one text");
            let embed_time = t.elapsed();
            (self.store.search(user, q, pool)?, embed_time)
        };
        self.fuse(user, question, mode, pool, k, dense, embed_time, t)
    }

    #[allow(clippy::too_many_arguments)]
    fn fuse(
        &self,
        user: &User,
        question: &str,
        mode: Retrieval,
        pool: usize,
        k: usize,
        dense: Vec<crate::store::Hit>,
        embed_time: Duration,
        t: Instant,
    ) -> Result<(Vec<Retrieved>, [Duration; 3])> {
        let keyword = if mode == Retrieval::Dense {
            Vec::new()
        } else {
            self.keyword.search(user, question, pool)?
        };
        let mut payloads: HashMap<String, (Value, Option<f32>)> = dense
            .iter()
            .map(|h| (h.id.to_string(), (h.payload.clone(), Some(h.score))))
            .collect();
        let missing: Vec<PointId> = keyword
            .iter()
            .filter(|(id, _)| !payloads.contains_key(id))
            .filter_map(|(id, _)| id.parse().ok())
            .collect();
        if !missing.is_empty() {
            for r in self.store.collection().get(&missing, true, false)? {
                payloads.insert(
                    r.id.to_string(),
                    (r.payload.map(Value::Object).unwrap_or_default(), None),
                );
            }
        }
        let dense_ids: Vec<String> = dense.iter().map(|h| h.id.to_string()).collect();
        let keyword: Vec<(String, f32)> = keyword
            .into_iter()
            .filter(|(id, _)| payloads.contains_key(id))
            .collect();
        let keyword_ids: Vec<String> = keyword.iter().map(|(id, _)| id.clone()).collect();
        let fused = match self.limits.fusion {
            Fusion::Rrf => rrf(&[dense_ids.clone(), keyword_ids.clone()]),
            Fusion::Weighted { dense: w } => {
                let d: Vec<(String, f32)> =
                    dense.iter().map(|h| (h.id.to_string(), h.score)).collect();
                weighted(&d, &keyword, w)
            }
        };
        let mut out = Vec::with_capacity(fused.len());
        for (id, score) in fused.into_iter().take(k) {
            let (p, dense_score) = &payloads[&id];
            let text = |k: &str| {
                p.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            // A chunk without a readable label is never shown.
            let Some(label) = p.get("acl").and_then(Label::from_payload) else {
                continue;
            };
            out.push(Retrieved {
                document: text("doc_id"),
                version: text("doc_hash"),
                title: text("title"),
                location: text("location"),
                text: text("text"),
                score,
                dense_score: *dense_score,
                dense_rank: dense_ids.iter().position(|d| *d == id).map(|r| r + 1),
                keyword_rank: keyword_ids.iter().position(|d| *d == id).map(|r| r + 1),
                label,
                chunk: id,
            });
        }
        let retrieve_time = t.elapsed() - embed_time;
        // Checked again before anything leaves retrieval (for a reranker or a prompt): both
        // searches filter inside, so this never drops anything unless an index is
        // inconsistent — which is then audited.
        let (mut readable, leaked): (Vec<_>, Vec<_>) = out
            .into_iter()
            .partition(|r| access::can_read(user, &r.label));
        if !leaked.is_empty() {
            let ids: Vec<Value> = leaked.iter().map(chunk_ref).collect();
            self.audit(json!({
                "action": "ask",
                "outcome": "denied",
                "user": user_json(user),
                "reason": "retrieval returned chunks above the user's clearance; withheld",
                "detail": {"chunks": ids},
            }))?;
        }
        let t = Instant::now();
        if let Some(reranker) = &self.reranker
            && !readable.is_empty()
        {
            let docs: Vec<String> = readable.iter().map(|r| r.text.clone()).collect();
            let order = reranker.rerank(question, &docs, readable.len())?;
            let mut reranked = Vec::with_capacity(order.len());
            for (i, score) in order {
                let mut r = readable[i].clone();
                r.score = score;
                reranked.push(r);
            }
            readable = reranked;
        }
        Ok((readable, [embed_time, retrieve_time, t.elapsed()]))
    }

    /// Answers `question` for `user`.
    pub fn ask(&self, user: &User, question: &str) -> Result<Answer> {
        self.answer(user, question, None)
    }

    /// Answers `question` for `user`, passing the text to `on_text` as it is generated.
    /// The audit record of the retrieval is written before any text is produced, so a failing
    /// audit sink stops the answer before the user sees it.
    pub fn ask_stream(
        &self,
        user: &User,
        question: &str,
        mut on_text: impl FnMut(&str),
    ) -> Result<Answer> {
        self.answer(user, question, Some(&mut on_text))
    }

    fn answer(&self, user: &User, question: &str, on_text: Option<OnText<'_>>) -> Result<Answer> {
        let started = Instant::now();
        let question = question.trim();
        if question.is_empty() || question.len() > self.limits.max_question_bytes {
            return Err(Error::Invalid {
                field: "question",
                reason: format!(
                    "must be 1 to {} bytes, got {}",
                    self.limits.max_question_bytes,
                    question.len()
                ),
            });
        }
        let generator: Arc<dyn Generator> = self
            .generator
            .clone()
            .unwrap_or_else(|| Arc::new(Extractive::default()));
        let models = json!({
            "embedder": {"model": self.embedder.model(), "endpoint": self.embedder.endpoint()},
            "generator": {"model": generator.model(), "endpoint": generator.endpoint()},
            "reranker": self.reranker.as_ref().map(|r| json!({"model": r.model(), "endpoint": r.endpoint()})),
        });
        let filter = access::filter(user).to_json();
        let record = |outcome: &str,
                      retrieved: &[Retrieved],
                      cited: &[Value],
                      timings: &Timings,
                      label: Option<&Label>| {
            json!({
                "action": "ask",
                "outcome": outcome,
                "user": user_json(user),
                "query": question,
                "filter": filter,
                "retrieved": retrieved.iter().map(chunk_ref).collect::<Vec<_>>(),
                "cited": cited,
                "classification": label,
                "models": models,
                "latency_ms": timings,
            })
        };
        let result = self.retrieve(user, question, Retrieval::Hybrid, self.limits.candidates);
        let (retrieved, [embed, retrieve, rerank]) = match result {
            Ok(r) => r,
            Err(e) => {
                let t = Timings {
                    total: started.elapsed(),
                    ..Timings::default()
                };
                self.audit(record(&format!("error: {e}"), &[], &[], &t, None))?;
                return Err(e);
            }
        };
        let mut timings = Timings {
            embed,
            retrieve,
            rerank,
            ..Timings::default()
        };
        let relevant = match &self.reranker {
            Some(_) => retrieved
                .first()
                .is_some_and(|r| r.score >= self.limits.min_rerank_score),
            None => retrieved
                .iter()
                .filter_map(|r| r.dense_score)
                .any(|s| s >= self.limits.min_similarity),
        };
        // The prompt: best chunks first, within the chunk and token budgets.
        let mut context: Vec<&Retrieved> = Vec::new();
        let mut tokens = 0;
        if relevant {
            for r in &retrieved {
                let n = WordCounter.count(&r.text);
                if context.len() >= self.limits.context_chunks
                    || (tokens + n > self.limits.context_tokens && !context.is_empty())
                {
                    break;
                }
                tokens += n;
                context.push(r);
            }
        }
        if on_text.is_some() {
            // Fail closed before the user sees any text.
            self.audit(record("streaming", &retrieved, &[], &timings, None))?;
        }
        let mut on_text = on_text;
        let t = Instant::now();
        let generated = if context.is_empty() {
            None
        } else {
            let passages: Vec<Passage> = context
                .iter()
                .map(|r| Passage {
                    title: r.title.clone(),
                    location: r.location.clone(),
                    text: r.text.clone(),
                })
                .collect();
            match generator.generate(question, &passages, reborrow(&mut on_text)) {
                Ok(g) if !g.text.trim().is_empty() => Some(g),
                Ok(_) => None,
                Err(e) => {
                    timings.generate = t.elapsed();
                    timings.total = started.elapsed();
                    self.audit(record(
                        &format!("error: {e}"),
                        &retrieved,
                        &[],
                        &timings,
                        None,
                    ))?;
                    return Err(e);
                }
            }
        };
        timings.generate = t.elapsed();
        let (text, citations, found) = match generated {
            Some(g) => {
                let mut citations = Vec::new();
                for c in &g.citations {
                    let claim = g.text.get(c.start..c.end).unwrap_or_default();
                    for &p in &c.passages {
                        let r = context[p];
                        citations.push(Citation {
                            chunk: r.chunk.clone(),
                            document: r.document.clone(),
                            title: r.title.clone(),
                            location: r.location.clone(),
                            quote: best_quote(&r.text, claim),
                            number: p + 1,
                            span: (c.start, c.end),
                            score: r.score,
                            label: r.label.clone(),
                        });
                    }
                }
                (g.text, citations, true)
            }
            None => {
                if let Some(on_text) = reborrow(&mut on_text) {
                    on_text(NOTHING_RELEVANT);
                }
                (NOTHING_RELEVANT.to_owned(), Vec::new(), false)
            }
        };
        let classification = if !citations.is_empty() {
            Label::lub(citations.iter().map(|c| &c.label))
        } else if found {
            Label::lub(context.iter().map(|r| &r.label))
        } else {
            None
        }
        .unwrap_or_else(|| Label::new(Level::Unclassified));
        timings.total = started.elapsed();
        let cited: Vec<Value> = citations
            .iter()
            .map(|c| {
                let r = retrieved
                    .iter()
                    .find(|r| r.chunk == c.chunk)
                    .expect("cited from retrieved");
                chunk_ref(r)
            })
            .collect();
        self.audit(record(
            if found {
                "answered"
            } else {
                "nothing_relevant"
            },
            &retrieved,
            &cited,
            &timings,
            Some(&classification),
        ))?;
        Ok(Answer {
            text,
            citations,
            retrieved,
            found,
            timings,
            classification,
            model: generator.model(),
        })
    }

    /// The embedder in use.
    pub fn embedder(&self) -> &dyn Embedder {
        self.embedder.as_ref()
    }

    /// Chunks stored for one section (`location`) of a document.
    pub fn section_chunks(&self, document: &str, location: &str) -> Result<usize> {
        let filter = deftech_vec::Filter::must([
            deftech_vec::Condition::matches("doc_id", document),
            deftech_vec::Condition::matches("location", location),
        ]);
        Ok(self.store.collection().count(Some(&filter))? as usize)
    }

    /// Chunks stored.
    pub fn chunk_count(&self) -> Result<u64> {
        Ok(self.store.collection().count(None)?)
    }
}

/// A shorter-lived handle on the streaming callback.
fn reborrow<'a>(f: &'a mut Option<OnText<'_>>) -> Option<OnText<'a>> {
    match f {
        Some(f) => Some(&mut **f),
        None => None,
    }
}

/// The text indexed for a chunk (embedded, and searched by BM25): the document title and the
/// section path, then the chunk. Every chunk of a section carries its headings, so a chunk in
/// the middle of a long section is still found by what the section is about.
fn embed_text(meta: &DocumentMeta, chunk: &crate::chunk::Chunk) -> String {
    let location = chunk.location();
    if location.is_empty() || location == meta.title {
        format!("{}\n{}", meta.title, chunk.text)
    } else {
        format!("{} › {location}\n{}", meta.title, chunk.text)
    }
}

/// The system identity ingesting a folder with `label`.
fn system_user(label: &Label) -> User {
    User {
        id: "system".into(),
        roles: vec!["admin".into()],
        clearance: Level::TopSecret,
        compartments: label.compartments.clone(),
        groups: label.groups.clone(),
    }
}
