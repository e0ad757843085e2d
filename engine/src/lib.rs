//! The fivesafes engine: everything between raw extracts and a DataFusion session.
//!
//! - [`catalog`]: the store's table contract and privacy metadata (DATA_MODEL.md §2).
//! - [`keys`]: the environment's secrets (pseudonymisation key, record-key secret, audit key).
//! - [`synth`]: a seeded generator of realistic raw NHS extracts (DATA_MODEL.md §1).
//! - [`ingest`]: validation, Type 1 objections, pseudonymisation, generalisation, publish.
//! - [`store`]: versioned Parquet datasets with a manifest and atomic publication.
//! - [`session`]: opens the current store version as a DataFusion `SessionContext`.
//! - [`memory`]: the memory pool that bounds every query of a server together.

pub mod catalog;
pub mod dates;
pub mod error;
pub mod ingest;
pub mod keys;
pub mod memory;
pub mod session;
pub mod store;
pub mod synth;

pub use error::{Error, Result};
