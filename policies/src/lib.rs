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
//!   distinct-person count and cell key (joined from `person_keys`), suppressed cells are
//!   removed and every released value is protected by [`output`], inside the plan.
//! - [`error`]: the crate's error type.
//!
//! Still to come: the plan rewrite that yields each cell's distinct-person count and cell key
//! and applies [`output`] to every released cell, and low-effect detection (DESIGN.md rule 7).
//! Until then no query path is exposed to analysts.

pub mod analysis;
pub mod decision;
pub mod error;
pub mod gate;
pub mod output;
pub mod register;
pub mod rewrite;
pub mod view;

pub use error::RegisterError;
pub use register::{ApprovedTable, Member, OptOut, OutputControl, Project, Register, Role};
