//! The fivesafes server library: the audit log, the tonic server (Arrow Flight SQL and the
//! fivesafes.v1 services), authentication, configuration and the commands of the `fivesafes`
//! binary, which is a thin front end over this crate.
//!
//! - [`config`]: the TOML configuration, overridable by flags.
//! - [`auth`]: API tokens (only hashes stored), Bearer and Basic credentials.
//! - [`state`]: what handlers share, and the resolution of a request's caller.
//! - [`run`]: running one SQL statement: policy, budget, audit records, limits, encoding.
//! - [`flight`]: the Arrow Flight SQL service.
//! - [`services`]: the fivesafes.v1 services.
//! - [`serve`]: start, serve, shut down.
//! - [`client`]: the command-line client (`fivesafes query`, `fivesafes tables`).
//! - [`demo`]: `fivesafes demo`, a whole environment on one machine.
//! - [`reports`]: canned reports from the command line.
//! - [`http`]: report pages over HTTP for commissioners.
//! - [`audit`]: the append-only, hash-chained, checkpointed audit log and its offline
//!   verification.
//! - [`error`]: the server's error type and the one mapping to gRPC statuses.

pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod demo;
pub mod error;
pub mod flight;
pub mod http;
pub mod reports;
pub mod run;
pub mod serve;
pub mod services;
pub mod state;
