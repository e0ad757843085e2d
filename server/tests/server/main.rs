//! Integration tests of the `fivesafes-server` crate: one test binary that mounts a module
//! per area.

mod audit;
mod cli;
