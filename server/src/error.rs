//! The server's error type, and the one mapping from errors to `tonic::Status`
//! ([`status_of_query_error`] and friends). Statuses never carry internal details or data
//! values: engine errors are logged with the request id and answered with a generic message.

use fivesafes_policies::decision::Refusal;
use fivesafes_policies::query::QueryError;
use tonic::Status;

/// Why the server could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
    /// The project register is invalid.
    #[error(transparent)]
    Register(#[from] fivesafes_policies::RegisterError),
    /// The store or keys could not be opened.
    #[error(transparent)]
    Engine(#[from] fivesafes_engine::Error),
    /// A project view could not be built.
    #[error(transparent)]
    View(#[from] fivesafes_policies::view::ViewError),
    /// The audit log could not be opened or written.
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// Binding or serving failed.
    #[error("transport: {0}")]
    Transport(String),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A policy refusal: `INVALID_ARGUMENT` whose message starts with the rule id.
pub fn refused(r: &Refusal) -> Status {
    Status::invalid_argument(format!("{}: {}", r.rule.id(), r.message))
}

/// The message of `RESOURCE_EXHAUSTED` when a query needs more memory than the pool allows.
pub const OUT_OF_MEMORY: &str =
    "the query needs more memory than the server's limit allows; narrow it or try again later";

/// The status of a failed query. Execution errors are classified without their text:
/// memory exhaustion is `RESOURCE_EXHAUSTED`, everything else `INTERNAL` with a generic
/// message (the detail is logged under `request_id`, never sent).
pub fn status_of_query_error(e: &QueryError, request_id: u64) -> Status {
    match e {
        QueryError::Refused(r) => refused(r),
        QueryError::Invalid(m) => Status::invalid_argument(m.clone()),
        QueryError::Execution(err) => {
            let category = error_category(e);
            tracing::warn!(request_id, category, error = %err, "query failed");
            match category {
                "resources" => Status::resource_exhausted(OUT_OF_MEMORY),
                _ => Status::internal(format!(
                    "the query failed inside the server (request {request_id})"
                )),
            }
        }
    }
}

/// A short, data-free category of a query error, for the audit log.
pub fn error_category(e: &QueryError) -> &'static str {
    match e {
        QueryError::Refused(_) => "refused",
        QueryError::Invalid(_) => "invalid",
        QueryError::Execution(err) => {
            let root = err.find_root();
            if matches!(
                root,
                datafusion::error::DataFusionError::ResourcesExhausted(_)
            ) {
                "resources"
            } else {
                "execution"
            }
        }
    }
}
