//! Integration tests of the policy layer (one test binary, one module per concern).

mod gate;
mod register;
