//! The thin HTTP server over `deftech-vec` (filled in by the server issue).
