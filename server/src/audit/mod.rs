//! The audit log: every request — accepted, refused or failed, including failed
//! authentication — leaves a record before any result leaves the server, and an auditor with
//! only the public key can prove offline that nothing was removed, reordered or edited.
//!
//! How that is achieved, one concept per module:
//!
//! - `record`: what a record holds ([`Entry`], [`Record`]) and its explicit, versioned byte
//!   encoding, which is what gets hashed and signed;
//! - [`merkle`]: the RFC 6962 Merkle tree over record hashes, with inclusion and consistency
//!   proofs;
//! - `segment`: the files — framed (length, CRC32, payload) append-only segments and the
//!   checkpoints file — and the rule that tells a crash's torn tail from corruption;
//! - `checkpoint`: Ed25519-signed statements of the tree root at a size;
//! - `writer`: [`AuditLog`], open/recover and the single writer thread with group commit;
//! - `read`: filtered listing, checkpoints and proofs from an open log;
//! - `verify`: [`verify_log`], the offline check, which `open` also runs;
//! - `table`: the log as an Arrow table for auditors' SQL.
//!
//! Each record carries the hash of the previous one (a chain: editing, removing or
//! reordering a record breaks it), and signed checkpoints fix the Merkle root of the first
//! `n` records (so truncating signed records, or rewriting the chain wholesale, is caught by
//! anyone with the public key).

mod checkpoint;
mod error;
pub mod merkle;
mod read;
mod record;
mod segment;
mod table;
mod verify;
mod writer;

pub use checkpoint::{CHECKPOINT_DOMAIN, Checkpoint};
pub use error::AuditError;
pub use merkle::{ConsistencyProof, InclusionProof};
pub use read::RecordFilter;
pub use record::{DecodeError, Entry, Kind, Outcome, OutcomeKind, RECORD_VERSION, Record, iso8601};
pub use segment::{CHECKPOINTS_FILE, FrameFault, MAX_FRAME, segment_name};
pub use table::{records_batch, records_schema};
pub use verify::{Problem, Truncation, VerifyError, VerifySummary, verify_log};
pub use writer::{AuditLog, AuditOptions, Recovery};
