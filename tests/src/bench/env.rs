//! The benchmark environment: a keys directory, the project register of the demo (its daily
//! query budgets raised so that a load run is not cut short; output control, opt-outs and
//! every other approval exactly as shipped), principals with fresh tokens, and a server
//! started in this process on a free loopback port over the benchmark store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fivesafes_engine::keys;
use fivesafes_policies::{Project, Register, Role};
use fivesafes_server::auth::{self, new_token};
use fivesafes_server::client::Connection;
use fivesafes_server::config::{Limits, ServerConfig};
use fivesafes_server::demo::EXAMPLE_REGISTER;
use fivesafes_server::serve::{self, Running};
use fivesafes_server::state::{Caller, system_clock};

/// The analysts' project the benchmark queries run in.
pub const ANALYST_PROJECT: &str = "diabetes-research";
/// The analyst of [`ANALYST_PROJECT`].
pub const ANALYST: &str = "analyst";
/// The commissioners' project the canned reports run in.
pub const REPORTS_PROJECT: &str = "service-design";

/// Daily query budget of the benchmark's projects: a 32-client load run sends tens of
/// thousands of queries, more than the example register's budgets allow in a day.
pub const BENCH_QUERIES_PER_DAY: u32 = 100_000_000;

/// The register the benchmark serves: the shipped example with every daily query budget
/// raised to [`BENCH_QUERIES_PER_DAY`]. Nothing else differs (a test checks that).
pub fn register_text() -> String {
    EXAMPLE_REGISTER
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("queries_per_day =") {
                format!("queries_per_day = {BENCH_QUERIES_PER_DAY}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Creates the keys directory under `data` once (fresh random keys) and returns its path.
pub fn ensure_keys(data: &Path) -> Result<PathBuf> {
    let dir = data.join("keys");
    if !dir.join(keys::AUDIT_PUB).exists() {
        keys::init(&dir).with_context(|| format!("creating keys in {}", dir.display()))?;
    }
    Ok(dir)
}

/// Everything a benchmark run needs to talk to its server.
pub struct Env {
    /// The running server (its shared state gives the in-process paths).
    pub running: Running,
    /// The configuration it was started with.
    pub config: ServerConfig,
    /// The register it serves.
    pub register: Register,
    /// Principal → token.
    pub tokens: BTreeMap<String, String>,
}

impl Env {
    /// Writes the register next to `store`, starts a server on `127.0.0.1:0` with the
    /// default limits (and `memory_mib` when given), with a fresh audit log in `data/audit`.
    pub async fn start(
        data: &Path,
        store: &Path,
        keys_dir: &Path,
        memory_mib: Option<usize>,
    ) -> Result<Env> {
        let data = std::path::absolute(data)?;
        let register_path = data.join("projects.toml");
        std::fs::write(&register_path, register_text())?;
        let register = Register::load(&register_path)?;
        let audit = data.join("audit");
        if audit.exists() {
            std::fs::remove_dir_all(&audit).with_context(|| audit.display().to_string())?;
        }
        let principals = register.principals();
        let tokens: BTreeMap<String, String> =
            principals.into_iter().map(|p| (p, new_token())).collect();
        let mut limits = Limits::default();
        if let Some(m) = memory_mib {
            limits.memory_mib = m;
        }
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            http_listen: None,
            store: std::path::absolute(store)?,
            keys: std::path::absolute(keys_dir)?,
            register: register_path,
            audit,
            limits,
            tls: None,
            principals: auth::principals(&tokens),
        };
        let running = serve::start(config.clone(), system_clock()).await?;
        Ok(Env {
            running,
            config,
            register,
            tokens,
        })
    }

    /// A project of the register.
    pub fn project(&self, id: &str) -> Result<&Project> {
        match self.register.project(id) {
            Some(p) => Ok(p),
            None => bail!("the benchmark register has no project {id}"),
        }
    }

    /// The analyst as the server resolves them in [`ANALYST_PROJECT`] (for the server's
    /// in-process run path).
    pub fn analyst(&self) -> Result<Caller> {
        Ok(Caller {
            principal: ANALYST.into(),
            project: self.project(ANALYST_PROJECT)?.clone(),
            role: Role::Analyst,
            roles: vec![Role::Analyst],
        })
    }

    /// How a Flight SQL client reaches the server as the analyst.
    pub fn analyst_connection(&self) -> Connection {
        Connection {
            server: format!("http://{}", self.running.addr),
            token: self.tokens.get(ANALYST).cloned().unwrap_or_default(),
            project: Some(ANALYST_PROJECT.into()),
            ca_cert: None,
            client_identity: None,
        }
    }

    /// Stops the server gracefully (final audit checkpoint).
    pub async fn stop(self) -> Result<()> {
        self.running.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_register_differs_from_the_example_only_in_budgets() {
        let example = Register::from_toml(EXAMPLE_REGISTER, "example").expect("example");
        let bench = Register::from_toml(&register_text(), "bench").expect("bench register");
        assert_eq!(example.projects().len(), bench.projects().len());
        for (e, b) in example.projects().iter().zip(bench.projects()) {
            assert_eq!(b.queries_per_day, BENCH_QUERIES_PER_DAY, "{}", b.id);
            let mut b = b.clone();
            b.queries_per_day = e.queries_per_day;
            assert_eq!(e, &b, "{}", e.id);
        }
        assert!(bench.project(ANALYST_PROJECT).is_some());
        assert!(bench.project(REPORTS_PROJECT).is_some());
    }
}
