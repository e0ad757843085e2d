//! The fivesafes server library: the audit log, the tonic server (Arrow Flight SQL and the
//! fivesafes.v1 services), authentication, configuration and the commands of the `fivesafes`
//! binary, which is a thin front end over this crate.
//!
//! - [`audit`]: the append-only, hash-chained, checkpointed audit log and its offline
//!   verification.

pub mod audit;
