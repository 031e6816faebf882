//! Shared fixtures for the benches (data generators).
