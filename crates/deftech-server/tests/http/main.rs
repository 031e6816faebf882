//! The server over real HTTP on loopback: every endpoint, auth, bad input, metrics, graceful
//! shutdown of a real process, and the official Python qdrant-client against the binary.

mod auth;
mod client;
mod common;
mod endpoints;
mod errors;
mod qdrant_client;
mod shutdown;
mod snapshots;
mod tls;
