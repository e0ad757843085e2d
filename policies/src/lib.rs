//! The policy layer: project register, statement gate, privacy-unit tracking and output
//! control over DataFusion logical plans and Arrow batches. Pure logic, no network.
//!
//! Built next (see the policy-layer issue); the store already records the privacy metadata it
//! needs in each manifest (personal tables, privacy unit, identifying and secret columns).
