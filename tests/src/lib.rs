//! End-to-end tests and benchmarks of fivesafes. The library part holds what the `bench`
//! binary measures with, so that its pieces can be tested.

pub mod bench;
