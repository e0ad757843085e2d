//! The engine's error type: one enum for the crate, each variant carrying what a user needs to
//! act on it (which file, which line, which key) and never a data value from a record.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store, ingest, synthetic generator and sessions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O failure, with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An input file is structurally unusable (bad header, broken quoting, truncated).
    /// Ingest refuses the whole run: nothing is published.
    #[error("{path}:{line}: {message}")]
    BadFile {
        /// The extract file.
        path: PathBuf,
        /// 1-based line number in the file (0 when the problem is the file as a whole).
        line: u64,
        /// What is wrong, without any field value.
        message: String,
    },
    /// A required input is absent.
    #[error("{0}")]
    Missing(String),
    /// A key file is missing, malformed or readable by others.
    #[error("key file {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The store is inconsistent: a checksum mismatch, a missing file, an unreadable manifest.
    #[error("store {path}: {message}")]
    Store {
        /// The store directory or file concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Ingest found more rejected rows than the configured limit and published nothing.
    #[error("{0}")]
    RejectLimit(String),
    /// A caller passed an invalid option.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Arrow failed (building or converting batches).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet failed (encoding or decoding a file).
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// DataFusion failed (registering tables, planning or executing).
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl Error {
    /// Wraps an I/O error with the path it concerned.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A structural problem in an input file at a given line.
    pub fn bad_file(path: impl Into<PathBuf>, line: u64, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// A problem with the store at a given path.
    pub fn store(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Store {
            path: path.into(),
            message: message.into(),
        }
    }
}
