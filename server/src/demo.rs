//! `fivesafes demo`: a whole environment on one machine, on defaults.
//!
//! `--prepare DIR` writes `DIR/keys`, synthetic extracts in `DIR/extracts`, the ingested
//! store in `DIR/store`, the audit log directory `DIR/audit`, the project register
//! `DIR/projects.toml` (the documented example), a server config `DIR/fivesafes.toml`
//! (loopback, fixed port) and `DIR/tokens.toml` (principal → token, mode 0600), so that
//! external clients can script against it. Plain `fivesafes demo` prepares a default
//! directory if needed, starts the server, walks through an analyst query, a refused query,
//! a commissioner report and an audit verification, prints how to connect with other
//! clients, and keeps serving until interrupted.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fivesafes_engine::ingest::{self, IngestOptions};
use fivesafes_engine::keys::{self, Keys};
use fivesafes_engine::synth::{self, SynthOptions};
use fivesafes_policies::Register;
use serde::{Deserialize, Serialize};

use crate::auth::{self, new_token};
use crate::client::{Connection, Format, render};
use crate::config::{DEFAULT_HTTP_LISTEN, DEFAULT_LISTEN, Limits, ServerConfig};
use crate::serve;
use crate::state::system_clock;

/// The example register shipped with the product (and used by the demo).
pub const EXAMPLE_REGISTER: &str = include_str!("../../policies/projects.example.toml");

/// Default demo directory (relative to the working directory).
pub const DEFAULT_DIR: &str = "fivesafes-demo";

/// Default size of the demo's synthetic population.
pub const DEFAULT_PATIENTS: u64 = 20_000;

/// `DIR/tokens.toml`: principal → token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// Principal name → API token.
    pub tokens: BTreeMap<String, String>,
}

/// Paths of a prepared demo directory.
#[derive(Debug, Clone)]
pub struct DemoDir {
    /// The directory.
    pub dir: PathBuf,
}

impl DemoDir {
    /// The server config.
    pub fn config(&self) -> PathBuf {
        self.dir.join("fivesafes.toml")
    }
    /// The tokens file.
    pub fn tokens(&self) -> PathBuf {
        self.dir.join("tokens.toml")
    }
    /// The keys directory.
    pub fn keys(&self) -> PathBuf {
        self.dir.join("keys")
    }
    /// The audit log directory.
    pub fn audit(&self) -> PathBuf {
        self.dir.join("audit")
    }
}

/// Prepares `dir` (see the module documentation). An already prepared directory is reused
/// as it is; a half-prepared one (no config) is refused with what to do.
pub fn prepare(dir: &Path, patients: u64, listen: Option<&str>) -> anyhow::Result<DemoDir> {
    use anyhow::Context as _;
    let d = DemoDir {
        dir: dir.to_path_buf(),
    };
    if d.config().exists() && d.tokens().exists() {
        eprintln!("reusing the prepared demo in {}", dir.display());
        return Ok(d);
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!(
            "{} exists but is not a prepared demo (no fivesafes.toml); remove it or choose \
             another directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("[1/4] creating keys in {}", d.keys().display());
    keys::init(&d.keys())?;
    let extracts = dir.join("extracts");
    eprintln!("[2/4] writing synthetic extracts for {patients} patients");
    synth::generate(&SynthOptions {
        patients,
        seed: 7,
        out: extracts.clone(),
        progress: false,
    })?;
    eprintln!("[3/4] ingesting into {}", dir.join("store").display());
    let k = Keys::load(&d.keys())?;
    let mut opts = IngestOptions::new(&extracts, dir.join("store"));
    opts.progress = false;
    let report = ingest::ingest(&opts, &k)?;
    eprintln!(
        "      published {}",
        fivesafes_engine::store::version_name(report.version.manifest.version)
    );
    eprintln!("[4/4] writing the register, tokens and server config");
    std::fs::write(dir.join("projects.toml"), EXAMPLE_REGISTER)?;
    let register = Register::from_toml(EXAMPLE_REGISTER, "projects.toml")?;
    let principals = register.principals();
    let tokens: BTreeMap<String, String> = principals
        .iter()
        .map(|p| (p.clone(), new_token()))
        .collect();
    let config = ServerConfig {
        listen: listen.unwrap_or(DEFAULT_LISTEN).parse()?,
        http_listen: Some(if listen.is_some() {
            "127.0.0.1:0".parse()?
        } else {
            DEFAULT_HTTP_LISTEN.parse()?
        }),
        store: "store".into(),
        keys: "keys".into(),
        register: "projects.toml".into(),
        audit: "audit".into(),
        limits: Limits::default(),
        tls: None,
        principals: auth::principals(&tokens),
    };
    let text = format!(
        "# fivesafes server configuration written by `fivesafes demo --prepare`.\n\
         # Paths are relative to this file. Only token hashes are stored here; the demo's\n\
         # tokens are in tokens.toml.\n{}",
        toml::to_string(&config)?
    );
    std::fs::write(d.config(), text)?;
    write_private(
        &d.tokens(),
        &format!(
            "# API tokens of the demo principals (keep private).\n{}",
            toml::to_string(&Tokens {
                tokens: tokens.clone()
            })?
        ),
    )?;
    eprintln!("prepared {}", dir.display());
    Ok(d)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Reads `DIR/tokens.toml`.
pub fn read_tokens(d: &DemoDir) -> anyhow::Result<Tokens> {
    Ok(toml::from_str(&std::fs::read_to_string(d.tokens())?)?)
}

/// The analyst query of the walk-through.
pub const DEMO_QUERY: &str = "SELECT sex, COUNT(*) AS patients, \
    COUNT(DISTINCT patient_id) AS persons FROM patients GROUP BY sex ORDER BY sex";

/// The refused query of the walk-through.
pub const DEMO_REFUSED: &str = "SELECT patient_id, birth_month FROM patients";

/// Prepares (if needed) and runs the demo walk-through, then serves until interrupted.
pub async fn run(dir: &Path, patients: u64) -> anyhow::Result<()> {
    let d = prepare(dir, patients, None)?;
    let config = ServerConfig::load(&d.config())?;
    let tokens = read_tokens(&d)?;
    let mut running = serve::start(config, system_clock()).await.map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(if the port is taken by another demo, stop it or edit listen in {})",
            d.config().display()
        )
    })?;
    let url = format!("http://{}", running.addr);
    println!("\nfivesafes is serving on {url}\n");
    if let Some(h) = running.http_addr {
        println!(
            "report pages for commissioners: http://{h}/ (user commissioner, password: its \
             token)\n"
        );
    }

    let token = |p: &str| tokens.tokens.get(p).cloned().unwrap_or_default();
    let analyst = Connection {
        server: url.clone(),
        token: token("analyst"),
        project: Some("diabetes-research".into()),
        ca_cert: None,
        client_identity: None,
    };
    println!("── 1. an analyst's query (project diabetes-research) ──\n{DEMO_QUERY}\n");
    match analyst.query(DEMO_QUERY).await {
        Ok(b) => println!("{}", render(&b, Format::Table)?),
        Err(e) => println!("unexpected error: {e}"),
    }
    println!(
        "counts are distinct-person protected: suppressed at 7 or fewer persons, perturbed \
         with cell-key noise and rounded to 5.\n"
    );
    println!("── 2. a query that would release rows about persons ──\n{DEMO_REFUSED}\n");
    match analyst.query(DEMO_REFUSED).await {
        Ok(_) => println!("unexpectedly accepted"),
        Err(e) => println!("refused: {e}\n"),
    }
    crate::reports::demo_walkthrough(&url, &token("commissioner")).await;
    println!("── 4. the auditor verifies the audit log offline ──");
    running.state.audit.checkpoint()?;
    let key = keys::load_audit_public_key(&d.keys().join(keys::AUDIT_PUB))?;
    match crate::audit::verify_log(&d.audit(), &key) {
        Ok(s) => println!(
            "fivesafes audit verify --log {} --public-key {}\n{s}\n",
            d.audit().display(),
            d.keys().join(keys::AUDIT_PUB).display()
        ),
        Err(e) => println!("verification failed: {e}\n"),
    }
    print_connect_help(&url, &d, &tokens);
    println!("\nserving until interrupted (Ctrl-C)…");
    let stop = running.take_shutdown();
    serve::wait_for_signal().await;
    eprintln!("shutting down: finishing in-flight requests");
    drop(stop);
    running.wait().await?;
    let _ = Arc::clone(&running.state);
    Ok(())
}

fn print_connect_help(url: &str, d: &DemoDir, tokens: &Tokens) {
    let t = |p: &str| tokens.tokens.get(p).cloned().unwrap_or_default();
    let grpc = url.replace("http://", "grpc://");
    println!("── connect with other clients ──");
    println!("tokens: {}", d.tokens().display());
    println!(
        "CLI:     fivesafes query --server {url} --token {} --project diabetes-research \
         \"SELECT imd_decile, COUNT(*) AS n FROM patients GROUP BY imd_decile\"",
        t("analyst")
    );
    println!(
        "         fivesafes tables --server {url} --token {} --project ae-audit",
        t("analyst2")
    );
    println!("Python (pip install adbc-driver-flightsql pyarrow):");
    println!(
        "  import adbc_driver_flightsql.dbapi as f\n  \
         conn = f.connect(\"{grpc}\", db_kwargs={{\"adbc.flight.sql.authorization_header\": \
         \"Bearer {}\", \"adbc.flight.sql.rpc.call_header.x-fivesafes-project\": \
         \"diabetes-research\"}})\n  \
         cur = conn.cursor(); cur.execute(\"SELECT sex, COUNT(*) AS n FROM patients GROUP BY \
         sex\"); print(cur.fetch_arrow_table())",
        t("analyst")
    );
    println!(
        "JDBC / DBeaver: jdbc:arrow-flight-sql://{}?useEncryption=false&token={}",
        url.trim_start_matches("http://"),
        t("analyst")
    );
}
