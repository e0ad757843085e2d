//! The reports' error type: every way a report request can fail, with a message a
//! commissioner (or the operator, for a broken definition file) can act on.

use crate::query::QueryError;

/// Why a report could not be loaded, bound or run.
///
/// Messages of the parameter variants list what is allowed; they quote the offending value
/// (shortened) because it is the caller's own input, never data. [`ReportError::Query`] wraps
/// the policy layer's error, whose [`QueryError::Execution`] variant is for logs only.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No report of that name.
    #[error("unknown report {name:?}; available reports: {}", available.join(", "))]
    UnknownReport {
        /// The name asked for (shortened).
        name: String,
        /// The reports that exist.
        available: Vec<String>,
    },
    /// A parameter the report does not take.
    #[error("report {report}: unknown parameter {name:?}; allowed parameters: {}", allowed.join(", "))]
    UnknownParameter {
        /// The report.
        report: String,
        /// The parameter name given (shortened).
        name: String,
        /// The parameters the report takes.
        allowed: Vec<String>,
    },
    /// A required parameter (one without a default) was not given.
    #[error("report {report}: parameter {name} is required ({expected})")]
    MissingParameter {
        /// The report.
        report: String,
        /// The parameter.
        name: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// A parameter value that is malformed, not allowed or out of range, or a combination of
    /// values that does not fit together (a range that ends before it starts).
    #[error("report {report}: parameter {name}: {message}")]
    InvalidParameter {
        /// The report.
        report: String,
        /// The parameter (or parameters, for a combination).
        name: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A report definition file is invalid (found when the registry is loaded).
    #[error("{source_name}: {message}")]
    Definition {
        /// The file (or built-in name) the definition came from.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// The policy layer refused or failed one of the report's queries.
    #[error("report {report}, {part}: {error}")]
    Query {
        /// The report.
        report: String,
        /// Which query: `areas`, `numerator` or `denominator`.
        part: &'static str,
        /// The policy layer's error.
        #[source]
        error: QueryError,
    },
    /// A query's result did not have the shape the report expects (a definition error that
    /// only shows once the SQL is planned).
    #[error("report {report}, {part}: {message}")]
    Shape {
        /// The report.
        report: String,
        /// Which query.
        part: &'static str,
        /// What was expected.
        message: String,
    },
    /// Rendering failed (building Arrow batches, rasterising the chart).
    #[error("rendering the report: {0}")]
    Render(String),
}

/// `s` cut to at most 40 characters, for quoting caller input in messages.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}
