//! The policy layer: project register, statement gate, privacy-unit tracking and output
//! control over DataFusion logical plans and Arrow batches. Pure logic, no network.
//!
//! - [`register`]: the project register (the "safe projects" of the Five Safes): which
//!   projects exist, their purpose, approved tables and columns, national opt-out status,
//!   expiry, budgets, output-control parameters (never looser than the DESIGN.md floors) and
//!   who may work in them. Loaded once from TOML at server start-up; an invalid file fails
//!   with its line and the reason.
//! - [`view`]: the DataFusion session of one project (approved tables and columns only,
//!   national opt-out applied).
//! - [`gate`]: the statement gate (single read-only queries only, planned without executing).
//! - [`analysis`]: privacy-unit tracking over the planned query: public rows, rows about
//!   single persons, or cells aggregated over several persons; refusals by rule.
//! - [`decision`]: typed policy decisions with stable rule ids.
//! - [`output`]: the arithmetic of output control for one released cell: the noisy
//!   suppression threshold, cell-key perturbation of counts, rounding, protected sums, means
//!   and rates, deterministic from the cell key.
//! - [`rewrite`]: the output-control rewrite of a `Cells` plan: every cell aggregate yields its
//!   distinct-person count and cell key (from [`person_keys`]), suppressed cells are
//!   removed and every released value is protected by [`output`], inside the plan.
//! - [`person_keys`]: every person's record key, read once per project view.
//! - [`query`]: the one path from SQL text to released batches in a project (gate,
//!   analysis, rewrite, execution, and what the audit log records about it).
//! - [`reports`]: canned service-design reports for commissioners (indicator definitions,
//!   parameter validation, protected rates and totals, CSV/text/HTML/SVG/PNG rendering).
//! - [`error`]: the crate's error type.

pub mod analysis;
mod capped;
pub mod decision;
pub mod error;
pub mod gate;
pub mod growth;
mod joins;
mod low_effect;
mod nullable;
mod opt_out;
pub mod output;
mod per_date;
pub mod person_keys;
pub mod query;
pub mod register;
pub mod reports;
pub mod rewrite;
mod shared;
pub mod side_channel;
mod top;
mod values;
pub mod view;
mod whole_partition;

pub use error::RegisterError;
pub use register::{ApprovedTable, Member, OptOut, OutputControl, Project, Register, Role};
