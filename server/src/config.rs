//! Server configuration: one TOML file (`fivesafes serve --config FILE`), every field
//! overridable by a command-line flag. Unknown keys are errors, so a misspelt setting never
//! silently leaves a default in place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ServerError;

/// Default listen address of the demo and of a config that names none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Default address of the demo's HTTP report pages.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `127.0.0.1:50051` (port 0 picks a free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Address of the HTTP report pages for commissioners (none: not served).
    #[serde(default)]
    pub http_listen: Option<SocketAddr>,
    /// The secure store directory (`fivesafes ingest --store`).
    pub store: PathBuf,
    /// The keys directory (`fivesafes keys init --dir`); the server reads the audit signing
    /// key from it.
    pub keys: PathBuf,
    /// The project register (see `policies/projects.example.toml`).
    pub register: PathBuf,
    /// The audit log directory (created if missing).
    pub audit: PathBuf,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// TLS; plaintext when absent (only sensible on loopback).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Principals and the SHA-256 of their API tokens.
    #[serde(default, rename = "principal")]
    pub principals: Vec<PrincipalConfig>,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .unwrap_or_else(|_| unreachable!("valid literal"))
}

/// Limits on the resources queries may use.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory all running queries may hold together, in MiB (operators that can spill do;
    /// others fail with `RESOURCE_EXHAUSTED`).
    #[serde(default = "default_memory_mib")]
    pub memory_mib: usize,
    /// Longest a query may run, in seconds (then `DEADLINE_EXCEEDED`).
    #[serde(default = "default_query_timeout")]
    pub query_timeout_secs: u64,
    /// Queries that may run at once; more wait in a queue.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_queries: usize,
    /// Longest a query may wait in the queue, in seconds (then `RESOURCE_EXHAUSTED`).
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout_secs: u64,
    /// How long a result ticket stays valid, in seconds.
    #[serde(default = "default_ticket_ttl")]
    pub ticket_ttl_secs: u64,
}

fn default_memory_mib() -> usize {
    2048
}
fn default_query_timeout() -> u64 {
    60
}
fn default_concurrency() -> usize {
    4
}
fn default_queue_timeout() -> u64 {
    30
}
fn default_ticket_ttl() -> u64 {
    300
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: default_memory_mib(),
            query_timeout_secs: default_query_timeout(),
            max_concurrent_queries: default_concurrency(),
            queue_timeout_secs: default_queue_timeout(),
            ticket_ttl_secs: default_ticket_ttl(),
        }
    }
}

/// TLS settings; with `client_ca`, clients must present a certificate it signed (mutual
/// TLS), in addition to their token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA certificate that client certificates must chain to (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// One principal: a name and the SHA-256 (hex) of its API token. The token itself is never
/// stored; `fivesafes token new NAME` mints one and prints both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// The principal's name as used in the project register.
    pub name: String,
    /// Lower-case hex SHA-256 of the token.
    pub token_sha256: String,
}

impl ServerConfig {
    /// Reads and checks a config file. Relative paths in it are resolved against the file's
    /// directory, so a config can travel with the directory it describes.
    pub fn load(path: &Path) -> Result<ServerConfig, ServerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        let mut config: ServerConfig = toml::from_str(&text)
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.store,
            &mut config.keys,
            &mut config.register,
            &mut config.audit,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(tls) = &mut config.tls {
            for p in [&mut tls.cert, &mut tls.key] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
            if let Some(ca) = &mut tls.client_ca
                && ca.is_relative()
            {
                *ca = base.join(&*ca);
            }
        }
        config.check()?;
        Ok(config)
    }

    /// Checks values that TOML types cannot express.
    pub fn check(&self) -> Result<(), ServerError> {
        let l = &self.limits;
        if l.memory_mib < 64 {
            return Err(ServerError::Config(
                "limits.memory_mib must be at least 64".into(),
            ));
        }
        if l.max_concurrent_queries == 0 || l.query_timeout_secs == 0 || l.ticket_ttl_secs == 0 {
            return Err(ServerError::Config(
                "limits.max_concurrent_queries, query_timeout_secs and ticket_ttl_secs must be \
                 at least 1"
                    .into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.principals {
            if !seen.insert(p.name.as_str()) {
                return Err(ServerError::Config(format!(
                    "principal {} is listed twice",
                    p.name
                )));
            }
            if p.token_sha256.len() != 64
                || !p
                    .token_sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(ServerError::Config(format!(
                    "principal {}: token_sha256 must be 64 lower-case hex digits (the output \
                     of `fivesafes token new`), never the token itself",
                    p.name
                )));
            }
        }
        Ok(())
    }

    /// SHA-256 (hex) of the configuration as the server runs it (principals' token hashes
    /// included), recorded in the audit log at start-up.
    pub fn hash(&self) -> String {
        let text = toml::to_string(self).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}
