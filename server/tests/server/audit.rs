//! Audit log: golden vectors, tamper, crash and recovery tests.
