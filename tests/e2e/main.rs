//! Cross-crate end-to-end tests (server, replicas, object store) land here.
