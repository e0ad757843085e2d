//! The audit log (being written): see the module plan in the helper's brief.

use std::path::Path;

/// Placeholder until the audit log lands.
#[derive(Debug)]
pub struct VerifySummary;

impl std::fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not implemented")
    }
}

/// Placeholder until the audit log lands.
#[derive(Debug, thiserror::Error)]
#[error("the audit log is not implemented yet")]
pub struct VerifyError;

/// Verifies the log in `dir` offline against `key`.
pub fn verify_log(
    dir: &Path,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<VerifySummary, VerifyError> {
    let _ = (dir, key);
    Err(VerifyError)
}
