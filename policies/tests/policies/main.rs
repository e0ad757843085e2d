//! Integration tests of the policy layer (one test binary, one module per concern).

mod analysis;
mod gate;
mod register;
mod reports;
mod rewrite;
mod sampled;
