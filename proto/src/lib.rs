//! The `fivesafes.v1` gRPC API: the protobuf definitions under `proto/fivesafes/v1/` (they
//! are the documented API) and the code tonic and prost generate from them at build time.
//! Arrow Flight SQL itself comes from the `arrow-flight` crate.
//!
//! Services: `Projects` (who am I, my projects, remaining budget), `Reports` (list and run
//! canned reports), `Audit` (records, checkpoints and inclusion proofs for auditors).

/// Generated code of package `fivesafes.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("fivesafes.v1");
}
