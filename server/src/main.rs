//! The `fivesafes` binary: a thin command-line front end over the library crates.
//!
//! Subcommands: `keys init`, `synth`, `ingest`, `store info`, `serve`, `token new`, `query`,
//! `tables`, `demo`, `audit verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fivesafes_engine::ingest::{self, IngestOptions};
use fivesafes_engine::keys::{self, Keys};
use fivesafes_engine::store::{self, Store};
use fivesafes_engine::synth::{self, SynthOptions};
use fivesafes_server::client::{Connection, Format, render};
use fivesafes_server::config::ServerConfig;
use fivesafes_server::state::system_clock;
use fivesafes_server::{auth, demo, serve};

/// fivesafes: a secure data environment for linked, pseudonymised NHS records.
#[derive(Debug, Parser)]
#[command(name = "fivesafes", version, about, long_about = None)]
struct Cli {
    /// The command to run.
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the environment's secret keys.
    Keys {
        /// What to do with the keys.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Write seeded synthetic raw extracts (with synthetic NHS numbers) for testing and demos.
    Synth {
        /// Number of synthetic patients.
        #[arg(long, default_value_t = 20_000)]
        patients: u64,
        /// Random seed: the same seed and size give byte-identical files.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Output directory (created if needed).
        #[arg(long, default_value = "extracts")]
        out: PathBuf,
        /// Do not show a progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Validate, pseudonymise and publish raw extracts as a new secure-store version.
    Ingest {
        /// Directory holding the raw extracts.
        #[arg(long)]
        extracts: PathBuf,
        /// Store directory (created if needed).
        #[arg(long)]
        store: PathBuf,
        /// Keys directory created by `fivesafes keys init`.
        #[arg(long)]
        keys: PathBuf,
        /// Largest share of rejected records in any extract before nothing is published.
        #[arg(long, default_value_t = ingest::DEFAULT_MAX_REJECT_RATE)]
        max_reject_rate: f64,
        /// Published versions to keep (older ones are deleted after publishing).
        #[arg(long, default_value_t = ingest::DEFAULT_KEEP_VERSIONS)]
        keep_versions: usize,
        /// Do not show progress bars.
        #[arg(long)]
        no_progress: bool,
    },
    /// Run the server (Arrow Flight SQL and the fivesafes.v1 services).
    Serve(ServeArgs),
    /// Mint an API token for a principal (prints the token and the config entry holding its
    /// hash; the token itself is never stored by the server).
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run one SQL query against a server and print the protected result.
    Query {
        /// Connection settings.
        #[command(flatten)]
        conn: ConnArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// The SQL text.
        sql: String,
    },
    /// List the tables the project can see.
    Tables {
        /// Connection settings.
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List or run canned reports (commissioners).
    Report {
        /// What to do.
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Prepare a demo environment and walk through it (synthetic data, ingest, server,
    /// protected query and report, audit verification); then keep serving.
    Demo {
        /// Only prepare this directory (keys, extracts, store, audit, config, tokens) and exit.
        #[arg(long, value_name = "DIR")]
        prepare: Option<PathBuf>,
        /// Directory of the walk-through (prepared if needed).
        #[arg(long, default_value = fivesafes_server::demo::DEFAULT_DIR)]
        dir: PathBuf,
        /// Synthetic patients when preparing.
        #[arg(long, default_value_t = fivesafes_server::demo::DEFAULT_PATIENTS)]
        patients: u64,
        /// Listen address written into a prepared config (default 127.0.0.1:50051).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Read and verify the audit log.
    Audit {
        /// What to do with the audit log.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Inspect the secure store.
    Store {
        /// What to do with the store.
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a new keys directory (pseudonymisation key, record-key secret, audit key pair).
    Init {
        /// Directory to create; it must not already hold keys.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The server configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Override `listen`.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Override `store`.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Override `keys`.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Override `register`.
    #[arg(long)]
    register: Option<PathBuf>,
    /// Override `audit`.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Override `limits.memory_mib`.
    #[arg(long)]
    memory_mib: Option<usize>,
    /// Override `limits.query_timeout_secs`.
    #[arg(long)]
    query_timeout_secs: Option<u64>,
    /// Override `limits.max_concurrent_queries`.
    #[arg(long)]
    max_concurrent_queries: Option<usize>,
}

#[derive(Debug, clap::Args)]
struct ConnArgs {
    /// Server URL.
    #[arg(
        long,
        env = "FIVESAFES_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// API token (or FIVESAFES_TOKEN).
    #[arg(long, env = "FIVESAFES_TOKEN", hide_env_values = true)]
    token: String,
    /// Project, when the principal works in several.
    #[arg(long, env = "FIVESAFES_PROJECT")]
    project: Option<String>,
    /// PEM CA certificate to trust for https.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate (mutual TLS); needs --client-key.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM client key (mutual TLS).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl ConnArgs {
    fn connection(self) -> Connection {
        Connection {
            server: self.server,
            token: self.token,
            project: self.project,
            ca_cert: self.ca_cert,
            client_identity: self.client_cert.zip(self.client_key),
        }
    }
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// List the reports and their parameters.
    List {
        /// Connection settings.
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Run a report.
    Run {
        /// Connection settings.
        #[command(flatten)]
        conn: ConnArgs,
        /// The report's name (see `fivesafes report list`).
        name: String,
        /// A parameter as KEY=VALUE (repeatable), e.g. --param by=practice.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Output: table, csv, html (a self-contained page), svg or png (the chart alone).
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "html", "svg", "png"])]
        format: String,
        /// Write the output to this file instead of standard output (needed for png).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Mint a token for PRINCIPAL.
    New {
        /// The principal's name as used in the project register.
        principal: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify a copy of the audit log offline: frames, sequence, hash chain, every
    /// checkpoint's signature and root, and consistency between checkpoints. Needs no server
    /// and no network; exits non-zero at the first problem found.
    Verify {
        /// The audit log directory.
        #[arg(long)]
        log: PathBuf,
        /// The audit public key (`audit.pub` from `fivesafes keys init`).
        #[arg(long)]
        public_key: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Verify the current version (manifest hash, every file's checksum) and list its tables.
    Info {
        /// Store directory.
        #[arg(long)]
        store: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Planning recurses over the plan tree: give workers room beyond the 2 MiB default.
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 << 20)
        .build()?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let mut config = ServerConfig::load(&args.config)?;
            if let Some(v) = args.listen {
                config.listen = v;
            }
            if let Some(v) = args.store {
                config.store = v;
            }
            if let Some(v) = args.keys {
                config.keys = v;
            }
            if let Some(v) = args.register {
                config.register = v;
            }
            if let Some(v) = args.audit {
                config.audit = v;
            }
            if let Some(v) = args.memory_mib {
                config.limits.memory_mib = v;
            }
            if let Some(v) = args.query_timeout_secs {
                config.limits.query_timeout_secs = v;
            }
            if let Some(v) = args.max_concurrent_queries {
                config.limits.max_concurrent_queries = v;
            }
            runtime()?.block_on(serve::run_until_signal(config, system_clock()))?;
        }
        Command::Token {
            command: TokenCommand::New { principal },
        } => {
            let token = auth::new_token();
            println!("token for {principal} (give it to them; it is not stored anywhere):");
            println!("{token}");
            println!("\nadd to the server config:\n[[principal]]");
            println!("name = {principal:?}");
            println!("token_sha256 = \"{}\"", auth::token_hash(&token));
        }
        Command::Query { conn, format, sql } => {
            let batches = runtime()?.block_on(conn.connection().query(&sql))?;
            print!("{}", render(&batches, format)?);
            if format == Format::Table {
                println!();
            }
        }
        Command::Tables { conn } => {
            let batches = runtime()?.block_on(conn.connection().tables())?;
            println!("{}", render(&batches, Format::Table)?);
        }
        Command::Report {
            command: ReportCommand::List { conn },
        } => {
            let reports = runtime()?.block_on(conn.connection().list_reports())?;
            for r in reports {
                println!("{}\n  {}", r.name, r.title);
                for p in r.parameters {
                    let allowed = if p.allowed.is_empty() {
                        p.r#type.clone()
                    } else {
                        p.allowed.join("|")
                    };
                    let default = if p.default.is_empty() {
                        String::new()
                    } else {
                        format!(" (default {})", p.default)
                    };
                    println!("  --param {}={allowed}{default}  {}", p.name, p.description);
                }
                println!();
            }
        }
        Command::Report {
            command:
                ReportCommand::Run {
                    conn,
                    name,
                    params,
                    format,
                    out,
                },
        } => {
            let mut map = std::collections::HashMap::new();
            for p in params {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--param {p:?} is not KEY=VALUE"))?;
                map.insert(k.trim().to_string(), v.trim().to_string());
            }
            if format == "png" && out.is_none() {
                anyhow::bail!("--format png writes binary data: give --out FILE");
            }
            let r = runtime()?.block_on(conn.connection().run_report(&name, map, &format))?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &r.rendered)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {} ({})", path.display(), r.media_type);
                }
                None => {
                    use std::io::Write as _;
                    std::io::stdout().write_all(&r.rendered)?;
                }
            }
        }
        Command::Demo {
            prepare,
            dir,
            patients,
            listen,
        } => match prepare {
            Some(p) => {
                demo::prepare(&p, patients, listen.as_deref())?;
            }
            None => runtime()?.block_on(demo::run(&dir, patients))?,
        },
        Command::Keys {
            command: KeysCommand::Init { dir },
        } => {
            let report = keys::init(&dir)?;
            for f in &report.files {
                println!("wrote {}", f.display());
            }
            println!(
                "keep {} private and backed up: losing pseudonym.key breaks linkage with every \
                 earlier store version; give auditors only {}",
                dir.display(),
                dir.join(keys::AUDIT_PUB).display()
            );
        }
        Command::Synth {
            patients,
            seed,
            out,
            no_progress,
        } => {
            let started = std::time::Instant::now();
            let summary = synth::generate(&SynthOptions {
                patients,
                seed,
                out: out.clone(),
                progress: !no_progress,
            })?;
            for (name, rows) in &summary.files {
                println!("{name:<20} {rows:>12} rows");
            }
            println!(
                "wrote {} in {:.1}s ({:.1} MiB)",
                out.display(),
                started.elapsed().as_secs_f64(),
                summary.bytes as f64 / (1 << 20) as f64
            );
        }
        Command::Ingest {
            extracts,
            store,
            keys,
            max_reject_rate,
            keep_versions,
            no_progress,
        } => {
            let keys = Keys::load(&keys)?;
            let mut opts = IngestOptions::new(extracts, store);
            opts.max_reject_rate = max_reject_rate;
            opts.keep_versions = keep_versions;
            opts.progress = !no_progress;
            let report = ingest::ingest(&opts, &keys)?;
            print!("{}", report.summary());
        }
        Command::Audit {
            command: AuditCommand::Verify { log, public_key },
        } => {
            let key = keys::load_audit_public_key(&public_key)?;
            let summary = fivesafes_server::audit::verify_log(&log, &key)
                .with_context(|| format!("audit log {} does not verify", log.display()))?;
            println!("{summary}");
        }
        Command::Store {
            command: StoreCommand::Info { store },
        } => {
            let version = Store::new(&store)
                .open_current()
                .with_context(|| format!("opening store {}", store.display()))?;
            let m = &version.manifest;
            println!(
                "{} created {} by {} (all {} files verified)",
                store::version_name(m.version),
                m.created_at,
                m.generator,
                m.tables.iter().map(|t| t.files.len()).sum::<usize>()
            );
            println!(
                "{:<24} {:<10} {:>12} {:>12}",
                "table", "class", "rows", "bytes"
            );
            for t in &m.tables {
                println!(
                    "{:<24} {:<10} {:>12} {:>12}",
                    t.name,
                    format!("{:?}", t.class).to_lowercase(),
                    t.rows,
                    t.files.iter().map(|f| f.bytes).sum::<u64>()
                );
            }
        }
    }
    Ok(())
}
