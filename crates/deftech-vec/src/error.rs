//! The one error type of the crate.

use std::io;
use std::path::{Path, PathBuf};

use crate::types::PointId;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `deftech-vec`.
///
/// Messages name the thing at fault: the file and offset, the field, the limit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error on a named file or folder.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The database folder is owned by another `Database` (in this or another process).
    #[error(
        "database folder {path} is in use by another process or handle (lock file {path}/LOCK)"
    )]
    InUse {
        /// The database folder.
        path: PathBuf,
    },
    /// No collection of that name exists.
    #[error("collection `{0}` not found")]
    CollectionNotFound(String),
    /// A collection of that name already exists.
    #[error("collection `{0}` already exists")]
    CollectionExists(String),
    /// The collection was dropped while this handle was held.
    #[error("collection `{0}` was dropped")]
    CollectionDropped(String),
    /// A collection name that is not a plain identifier.
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A vector whose length is not the collection's dimension.
    #[error("wrong vector dimension{}: expected {expected}, got {got}", point_suffix(.point))]
    DimensionMismatch {
        /// The point whose vector is wrong, when there is one (not for query vectors).
        point: Option<PointId>,
        /// The collection's dimension.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A vector with NaN or an infinity.
    #[error("vector{} has a non-finite value ({value}) at index {index}", point_suffix(.point))]
    NonFiniteVector {
        /// The point whose vector is wrong, when there is one (not for query vectors).
        point: Option<PointId>,
        /// Index of the first bad component.
        index: usize,
        /// The bad value.
        value: f32,
    },
    /// A payload that is not a JSON object, or over the size limit.
    #[error("invalid payload for point {point}: {reason}")]
    InvalidPayload {
        /// The point.
        point: PointId,
        /// What is wrong with it.
        reason: String,
    },
    /// A write names a point that does not exist.
    #[error("no point with id {0} found")]
    PointNotFound(PointId),
    /// A malformed or ill-typed filter.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// An argument outside its allowed range or otherwise malformed.
    #[error("invalid argument `{field}`: {reason}")]
    InvalidArgument {
        /// The argument's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Stored data that fails its checks (checksum, magic, bounds).
    #[error("corrupted data in {path} at offset {offset}: {reason}")]
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage within the file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A file written by an incompatible version of this crate.
    #[error("unsupported format version {found} in {path} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in its header.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Writes are refused until the database is reopened: the WAL could not be repaired after a
    /// failed write, so appending more could interleave with a damaged record.
    #[error("collection `{collection}` refuses writes until reopened: {reason}")]
    ReadOnly {
        /// The collection.
        collection: String,
        /// The failure that caused it.
        reason: String,
    },
}

fn point_suffix(point: &Option<PointId>) -> String {
    match point {
        Some(id) => format!(" for point {id}"),
        None => String::new(),
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupted(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupted {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_argument(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// True when the error means the storage device is full.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }
}

/// Attaches a path to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
