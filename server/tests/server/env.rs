//! A test environment: one small prepared demo directory (keys, store, register, tokens)
//! shared by the whole test binary, and a fresh server per test on port 0 with its own audit
//! log.

use std::path::PathBuf;
use std::sync::OnceLock;

use fivesafes_server::client::Connection;
use fivesafes_server::config::ServerConfig;
use fivesafes_server::demo::{self, DemoDir, Tokens};
use fivesafes_server::serve::{self, Running};
use fivesafes_server::state::system_clock;

/// Synthetic patients in the shared store.
pub const PATIENTS: u64 = 2_000;

struct Prepared {
    _dir: tempfile::TempDir,
    demo: DemoDir,
    tokens: Tokens,
}

fn prepared() -> &'static Prepared {
    static P: OnceLock<Prepared> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = demo::prepare(&dir.path().join("demo"), PATIENTS, Some("127.0.0.1:0"))
            .expect("prepare demo");
        let tokens = demo::read_tokens(&d).expect("tokens");
        Prepared {
            _dir: dir,
            demo: d,
            tokens,
        }
    })
}

/// A running server and what clients need.
pub struct Env {
    /// Holds the audit log and any files of this test.
    pub dir: tempfile::TempDir,
    /// The server.
    pub running: Running,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

/// The shared demo directory.
pub fn demo_dir() -> DemoDir {
    prepared().demo.clone()
}

/// The token of a demo principal.
pub fn token(principal: &str) -> String {
    prepared()
        .tokens
        .tokens
        .get(principal)
        .cloned()
        .unwrap_or_else(|| panic!("no token for {principal}"))
}

/// The demo config with a fresh audit directory and port 0.
pub fn config(dir: &std::path::Path) -> ServerConfig {
    let mut config = ServerConfig::load(&prepared().demo.config()).expect("config");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.audit = dir.join("audit");
    config
}

/// Starts a server with `edit` applied to the config.
pub async fn start_with(edit: impl FnOnce(&mut ServerConfig, &std::path::Path)) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    edit(&mut c, dir.path());
    let running = serve::start(c, system_clock())
        .await
        .expect("server starts");
    let url = format!("http://{}", running.addr);
    Env { dir, running, url }
}

/// Starts a server on the demo config.
pub async fn start() -> Env {
    start_with(|_, _| {}).await
}

impl Env {
    /// A connection as `principal`, in `project`.
    pub fn conn(&self, principal: &str, project: Option<&str>) -> Connection {
        Connection {
            server: self.url.clone(),
            token: token(principal),
            project: project.map(String::from),
            ca_cert: None,
            client_identity: None,
        }
    }

    /// The audit log directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }
}
