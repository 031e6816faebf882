//! The crate's error type: every variant names what failed (the backend and its endpoint, the
//! file, the field), so an operator can act on the message alone.

use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model backend (embedder, reranker, generator) failed or answered something unusable.
    #[error("{backend} ({endpoint}): {reason}")]
    Backend {
        /// Which backend ("cohere embed", "openai chat", …).
        backend: String,
        /// The URL or endpoint name called.
        endpoint: String,
        /// What went wrong, with the HTTP status and the start of the body when there was one.
        reason: String,
    },
    /// An embedder returned vectors of the wrong dimension (a misconfigured model or endpoint).
    #[error("{backend}: returned {got}-dimensional embeddings, the collection holds {expected}")]
    Dimension {
        /// Which backend.
        backend: String,
        /// The collection's dimension.
        expected: usize,
        /// What came back.
        got: usize,
    },
    /// Bad input from the caller.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field or argument.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The user may not do this (the denial is audited).
    #[error("access denied: {0}")]
    Denied(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A document could not be parsed (HTML, PDF).
    #[error("{path}: cannot extract text: {reason}")]
    Extract {
        /// The document.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The vector store failed.
    #[error(transparent)]
    Store(#[from] deftech_vec::Error),
    /// The keyword index failed.
    #[error("keyword index: {0}")]
    Keyword(String),
    /// Writing the audit trail failed (the request fails with it: fail closed).
    #[error("audit: {0}")]
    Audit(String),
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Error {
        Error::Keyword(e.to_string())
    }
}

impl From<crate::audit::AuditError> for Error {
    fn from(e: crate::audit::AuditError) -> Error {
        Error::Audit(e.to_string())
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
