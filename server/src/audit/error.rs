//! The audit log's error type. Offline verification has its own, [`VerifyError`], which names
//! the file, offset and sequence of a problem; `open` runs the same checks and wraps it.

use std::path::PathBuf;

use super::verify::VerifyError;

/// Everything that can go wrong opening, appending to or reading the audit log.
///
/// Whenever `append` returns an error the record may or may not be on disk, but it was not
/// acknowledged: the server must release nothing for that request.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An I/O failure outside the append path (creating the directory, truncating a torn
    /// tail, reading).
    #[error("audit log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The log on disk does not verify (corruption or tampering); `open` never repairs this.
    #[error("audit log does not verify: {0}")]
    Corrupt(#[from] VerifyError),
    /// Another process (or another `AuditLog` in this one) has the log open for appending.
    #[error("audit log {path} is locked by another writer")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An entry too large to frame.
    #[error("audit entry encodes to {bytes} bytes, above the {limit}-byte frame limit")]
    TooLarge {
        /// Its encoded size.
        bytes: usize,
        /// The limit.
        limit: u32,
    },
    /// Writing or syncing this batch of records (or a checkpoint) failed.
    #[error("audit write failed: {reason}")]
    Write {
        /// The I/O error, as text (one failure is reported to every waiting appender).
        reason: String,
    },
    /// An earlier write failed; the log accepts nothing more until it is reopened (which
    /// drops any torn tail the failure left).
    #[error("audit log stopped after a failed write ({reason}); reopen it")]
    Poisoned {
        /// The first failure.
        reason: String,
    },
    /// The writer thread has stopped (the log was closed, or the thread died).
    #[error("audit log writer has stopped")]
    Closed,
    /// A proof or read asked for records the log does not have.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// Building the Arrow table failed.
    #[error("audit table: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}
