//! The RAG orchestrator over `deftech-vec` (filled in by the RAG issue).
