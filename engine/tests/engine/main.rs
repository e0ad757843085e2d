//! Integration tests of the engine crate: synthetic extracts → ingest → store → session.

mod fixtures;
mod ingest_bad_input;
mod ingest_end_to_end;
mod ingest_objections;
mod publish_failures;
