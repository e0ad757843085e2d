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
//! - [`decision`]: typed policy decisions with stable rule ids.
//! - [`error`]: the crate's error type.
//!
//! Plan analysis and output control come next; the store already records the privacy
//! metadata they need in each manifest (personal tables, privacy unit, identifying and secret
//! columns).

pub mod decision;
pub mod error;
pub mod gate;
pub mod register;
pub mod view;

pub use error::RegisterError;
pub use register::{ApprovedTable, Member, OptOut, OutputControl, Project, Register, Role};
