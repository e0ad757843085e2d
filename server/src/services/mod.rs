//! The `fivesafes.v1` services (one file per service): `Projects`, `Reports`, `Audit`.

pub mod audit;
pub mod projects;
pub mod reports;
