//! # deftech-rag
//!
//! The in-process RAG orchestrator over `deftech-vec`. Built so far: access control by
//! classification label ([`access`]: the rule and the search filter that enforces it inside the
//! engine), the tamper-evident audit log ([`audit`]) and structure-aware chunking ([`chunk`]).
//! Ingest, embedders, hybrid retrieval, generation and the assistant API come next.

pub mod access;
pub mod audit;
pub mod chunk;
