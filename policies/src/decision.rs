//! Typed policy decisions: every refusal carries a stable rule id (quoted in errors, the audit
//! log and the documentation) and a message an analyst can act on. Messages describe the
//! query's text or plan, never data.

use std::fmt;

/// The rules a statement can be refused under. Ids are stable: they appear in client errors
/// and audit records. `FS-<n>` ids follow the numbered output-control rules of DESIGN.md;
/// `FS-G<n>` ids are statement-gate rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// FS-G1: only a single read-only query (`SELECT`/`WITH … SELECT`/`VALUES`) is accepted.
    OnlyQueries,
    /// FS-G2: the SQL text is larger, more deeply nested or has more operators than the
    /// limits ([`crate::gate`]).
    TooComplex,
    /// FS-G3: a construct the policy layer cannot classify yet (fail closed).
    Unsupported,
    /// FS-1: only aggregates over personal rows leave.
    OnlyAggregates,
    /// FS-1a: identifying columns only in joins, `COUNT(DISTINCT …)` and per-person grouping.
    IdentifyingColumn,
    /// FS-2: aggregate outside the allow-list on personal data.
    Aggregate,
    /// FS-2a: a join of two personal inputs that is not on the privacy unit.
    JoinAmplification,
    /// FS-6: a construct whose behaviour at run time would depend on data values.
    SideChannel,
    /// FS-7: a condition on personal rows where its effect on the answer's cells cannot be
    /// measured (DESIGN.md rule 7: a condition that leaves out a few persons of a cell must
    /// not change its answer).
    LowEffect,
}

impl Rule {
    /// The stable id.
    pub fn id(self) -> &'static str {
        match self {
            Rule::OnlyQueries => "FS-G1",
            Rule::TooComplex => "FS-G2",
            Rule::Unsupported => "FS-G3",
            Rule::OnlyAggregates => "FS-1",
            Rule::IdentifyingColumn => "FS-1a",
            Rule::Aggregate => "FS-2",
            Rule::JoinAmplification => "FS-2a",
            Rule::SideChannel => "FS-6",
            Rule::LowEffect => "FS-7",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A refused statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that refused it.
    pub rule: Rule,
    /// What to change, in the analyst's terms.
    pub message: String,
}

impl Refusal {
    /// A refusal under `rule`.
    pub fn new(rule: Rule, message: impl Into<String>) -> Refusal {
        Refusal {
            rule,
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused by rule {}: {}", self.rule, self.message)
    }
}

impl std::error::Error for Refusal {}
