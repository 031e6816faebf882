//! # deftech-rag
//!
//! The in-process RAG orchestrator over `deftech-vec`. Built so far: the tamper-evident audit
//! log ([`audit`]) and structure-aware chunking ([`chunk`]). Retrieval, generation and the
//! assistant API come next.

pub mod audit;
pub mod chunk;
