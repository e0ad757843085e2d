//! Integration tests of the `fivesafes-server` crate: one test binary that mounts a module
//! per area.

mod adbc;
mod audit;
mod cli;
mod env;
mod flight;
mod services;
mod tls;
