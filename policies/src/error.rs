//! The policy crate's error type. For now it covers loading the project register: every
//! variant says where the problem is (file and 1-based line) and what the operator should
//! change, and never quotes a data value from the store.

use std::path::PathBuf;

/// Why the project register could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The register file is not valid TOML, has the wrong shape, or breaks a rule of the
    /// register (unknown table, looser output control than the floor, duplicate id, ...).
    #[error("{source_name}:{line}: {message}")]
    Invalid {
        /// Where the text came from, as given to [`crate::Register::from_toml`] (usually the
        /// path), so the operator knows which file to edit.
        source_name: String,
        /// 1-based line of the offending key or value; 1 when the problem is the file as a
        /// whole (for example, no project at all).
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The register file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The register file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl RegisterError {
    /// The 1-based line of an [`RegisterError::Invalid`] error; `None` for I/O errors.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => Some(*line),
            Self::Io { .. } => None,
        }
    }

    /// The reason of an [`RegisterError::Invalid`] error, without the file and line prefix;
    /// `None` for I/O errors.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Invalid { message, .. } => Some(message),
            Self::Io { .. } => None,
        }
    }
}
