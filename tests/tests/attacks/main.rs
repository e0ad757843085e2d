//! The attack-regression suite: one module per attack class of the DESIGN.md threat model.
//! Each test plays an approved analyst who tries to learn about one person (or to
//! reconstruct a column) through the one protected path from SQL to released batches, and
//! asserts the concrete outcome: the rule that refuses the attack, or the exact equality of
//! the answers the attack compares. `correctness` and `opt_out` check that protection costs
//! no more accuracy than documented and that the national data opt-out holds.
//!
//! The store (seeded synthetic patients plus planted cohorts) is built once per run of this
//! binary; see `common`.

#[path = "../common/mod.rs"]
mod common;

mod averaging;
mod chaff;
mod complementary;
mod correctness;
mod differencing;
mod error_oracles;
mod escape;
mod heavy;
mod identifiers;
mod joins;
mod opt_out;
mod plan_leaks;
mod reconstruction;
mod threshold;
