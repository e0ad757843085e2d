//! Starting and stopping the server: [`start`] builds everything from a configuration, binds
//! the listener (port 0 picks a free port, for tests) and returns the address and a handle
//! that shuts it down gracefully: in-flight requests finish, a `server-stopped` record and a
//! final signed checkpoint are written.

use std::net::SocketAddr;
use std::sync::Arc;

use fivesafes_engine::keys;
use fivesafes_engine::session::{self, SessionOptions};
use fivesafes_engine::store::{self, Store};
use fivesafes_policies::Register;
use fivesafes_policies::reports::ReportRegistry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::audit::{self, AuditLog, AuditOptions, Entry, Kind};
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::state::{Clock, State};
use crate::{flight, services};

/// A running server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The address of the HTTP report pages, when configured.
    pub http_addr: Option<SocketAddr>,
    /// Shared state (tests inspect the audit log through it).
    pub state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Stops accepting requests, lets in-flight ones finish, records the stop and closes the
    /// audit log with a final checkpoint.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Waits until the server stops (after [`Running::shutdown`] or a transport failure).
    pub async fn wait(&mut self) -> Result<(), ServerError> {
        (&mut self.task)
            .await
            .map_err(|e| ServerError::Transport(e.to_string()))?
    }

    /// A sender that stops the server when sent to (or dropped).
    pub fn take_shutdown(&mut self) -> Option<oneshot::Sender<()>> {
        self.shutdown.take()
    }
}

/// Builds the server from `config` and starts serving.
pub async fn start(config: ServerConfig, clock: Clock) -> Result<Running, ServerError> {
    config.check()?;
    let register = Register::load(&config.register)?;
    let version = Store::new(&config.store).open_current()?;
    let signing = keys::load_audit_signing_key(&config.keys)?;
    let opts = SessionOptions {
        memory_limit: config.limits.memory_mib << 20,
        ..SessionOptions::default()
    };
    let runtime = session::runtime(&opts)?;
    let audit_opts = AuditOptions {
        clock: Arc::clone(&clock),
        ..AuditOptions::default()
    };
    let (log, recovery) = AuditLog::open(&config.audit, signing, audit_opts)?;
    if let Some(r) = &recovery {
        tracing::warn!(?r, "audit log recovered a torn tail");
    }
    let log = Arc::new(log);
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let tls = match &config.tls {
        None => None,
        Some(t) => {
            let cert = std::fs::read(&t.cert)?;
            let key = std::fs::read(&t.key)?;
            let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
            if let Some(ca) = &t.client_ca {
                tls = tls.client_ca_root(Certificate::from_pem(std::fs::read(ca)?));
            }
            Some(tls)
        }
    };
    let state = Arc::new(State::new(
        config.clone(),
        register,
        version,
        runtime,
        opts,
        Arc::clone(&log),
        clock,
    ));
    restore_budgets(&state);
    state
        .audit
        .append(Entry {
            kind: Kind::ServerStarted,
            detail: vec![
                ("config_hash".into(), config.hash()),
                ("policy_hash".into(), state.register.policy_hash()),
                (
                    "store_version".into(),
                    store::version_name(state.version.manifest.version),
                ),
                ("listen".into(), addr.to_string()),
                ("version".into(), env!("CARGO_PKG_VERSION").into()),
            ],
            ..Entry::default()
        })
        .await?;
    tracing::info!(%addr, "serving");

    let registry = Arc::new(
        ReportRegistry::builtin()
            .map_err(|e| ServerError::Config(format!("built-in report definitions: {e}")))?,
    );
    let (tx, rx) = oneshot::channel::<()>();
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| ServerError::Transport(e.to_string()))?;
    }
    let router = builder
        .add_service(flight::service(Arc::clone(&state)))
        .add_service(services::projects::service(Arc::clone(&state)))
        .add_service(services::audit::service(Arc::clone(&state)))
        .add_service(services::reports::service(
            Arc::clone(&state),
            Arc::clone(&registry),
        ));
    // HTTP report pages share the shutdown signal.
    let (http_tx, http_rx) = tokio::sync::watch::channel(false);
    let (http_addr, http_task) = match config.http_listen {
        None => (None, None),
        Some(a) => {
            let l = TcpListener::bind(a).await?;
            let http_addr = l.local_addr()?;
            let app = crate::http::router(Arc::clone(&state), Arc::clone(&registry));
            let mut rx = http_rx.clone();
            let t = tokio::spawn(async move {
                axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    })
                    .await
            });
            tracing::info!(%http_addr, "report pages");
            (Some(http_addr), Some(t))
        }
    };
    // TCP_NODELAY on every accepted connection: without it, Nagle's algorithm holds back the
    // small last frames of a response until the client's delayed ACK (40 ms on Linux), twice
    // per Flight SQL query (GetFlightInfo, then DoGet).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let task_state = Arc::clone(&state);
    let task = tokio::spawn(async move {
        let served = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
                let _ = http_tx.send(true);
            })
            .await
            .map_err(|e| ServerError::Transport(e.to_string()));
        if let Some(t) = http_task {
            let _ = t.await;
        }
        let stopped = task_state
            .audit
            .append(Entry {
                kind: Kind::ServerStopped,
                ..Entry::default()
            })
            .await;
        let closed = task_state.audit.checkpoint();
        served?;
        stopped?;
        closed?;
        Ok(())
    });
    Ok(Running {
        addr,
        http_addr,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// Counts today's executed queries per project from the audit log, so a restart does not
/// reset budgets.
fn restore_budgets(state: &State) {
    let today = state.today();
    let from = today * 86_400_000;
    let filter = audit::RecordFilter {
        from_unix_ms: Some(from),
        ..audit::RecordFilter::default()
    };
    let Ok(records) = state.audit.records(&filter) else {
        tracing::warn!("could not read the audit log to restore budgets");
        return;
    };
    let mut counts = std::collections::HashMap::<String, u32>::new();
    for r in records {
        if r.entry.kind == Kind::QueryStarted {
            *counts.entry(r.entry.project.clone()).or_default() += 1;
        }
    }
    for (project, n) in counts {
        state.budgets.restore(today, &project, n);
    }
}

/// Serves until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run_until_signal(config: ServerConfig, clock: Clock) -> Result<(), ServerError> {
    let running = start(config, clock).await?;
    eprintln!("fivesafes serving on {}", running.addr);
    if let Some(h) = running.http_addr {
        eprintln!("report pages on http://{h}/");
    }
    wait_for_signal().await;
    eprintln!("shutting down: finishing in-flight requests");
    running.shutdown().await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
