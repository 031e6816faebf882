//! # deftech-rag
//!
//! The in-process RAG orchestrator over `deftech-vec`: ingest documents, answer questions with
//! citations under the asker's clearance, and keep an audit trail an assessor accepts.
//!
//! - [`Assistant`] (built with [`Assistant::builder`]): `ingest`, `ingest_dir`,
//!   `delete_document`, `ask`, `ask_stream`;
//! - [`access`]: labels, clearances, and the rule as a search filter (enforced inside both
//!   searches, checked again before the prompt);
//! - [`chunk`] and [`ingest`]: structure-aware chunking of text, Markdown, reStructuredText,
//!   HTML and PDF;
//! - [`embed`], [`rerank`], [`generate`], [`sagemaker`]: model backends (Cohere, SageMaker,
//!   OpenAI-compatible, local candle, extractive);
//! - [`store`] (dense, deftech-vec) and [`keyword`] (BM25, tantivy), fused by [`rrf`];
//! - [`audit`] and [`sink`]: the hash-chained log and the PostgreSQL table;
//! - [`api`]: the HTTP API (`POST /v1/ask`, `POST /v1/documents`).

pub mod access;
pub mod answer;
pub mod api;
pub mod assistant;
pub mod audit;
pub mod chunk;
pub mod client;
pub mod embed;
pub mod error;
pub mod fusion;
pub mod generate;
pub mod ingest;
pub mod keyword;
pub mod rerank;
pub mod sagemaker;
pub mod sink;
pub mod store;

pub use access::{Label, Level, User};
pub use assistant::{
    Answer, Assistant, AssistantBuilder, Citation, Fusion, IngestReport, Ingested, Limits,
    Retrieval, Retrieved, Timings, rrf, weighted,
};
pub use error::{Error, Result};
pub use ingest::Document;
