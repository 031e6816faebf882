//! # deftech-rag
//!
//! The in-process RAG orchestrator over `deftech-vec`. Built so far: access control by
//! classification label ([`access`]: the rule and the search filter that enforces it inside the
//! engine), the tamper-evident audit log ([`audit`]), structure-aware chunking ([`chunk`]) and
//! the chunk store over deftech-vec with idempotent re-ingest ([`store`]). Embedders, keyword
//! retrieval and fusion, generation and the assistant API come next.

pub mod access;
pub mod audit;
pub mod chunk;
pub mod store;
