//! Storage-engine integration tests: API behaviour, bad input, model-based testing against a
//! brute-force reference, crash recovery with a killed process, concurrency, and failures.

mod api;
mod common;
mod concurrency;
mod crash;
mod failures;
mod hnsw;
mod indexes;
mod model;
mod quantization;
mod snapshot;
