//! The `fivesafes.v1` gRPC API: protobuf definitions under `proto/` and the code tonic and
//! prost generate from them. The services (projects, reports, audit) arrive with the server;
//! Arrow Flight SQL itself comes from the `arrow-flight` crate.
