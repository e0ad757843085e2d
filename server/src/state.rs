//! What every request handler shares: configuration, register, store version, project
//! sessions, authentication, the audit log, budgets, the query limiter and result tickets.
//! Also the resolution of a request's caller (principal, project, role) from its metadata.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::execution::runtime_env::RuntimeEnv;
use fivesafes_engine::session::SessionOptions;
use fivesafes_engine::store::StoreVersion;
use fivesafes_policies::query::ProjectContext;
use fivesafes_policies::{Project, Register, Role};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::audit::{self, AuditLog, Entry, Kind};
use crate::auth::{AuthFailure, Authenticator, PROJECT_HEADER};
use crate::config::ServerConfig;

/// The message of `RESOURCE_EXHAUSTED` when no query slot came free within the queue timeout.
pub const BUSY: &str =
    "the server is busy: every query slot stayed taken for the queue timeout; try again later";

/// Milliseconds since the Unix epoch (injected so tests can control time).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}

/// What a call needs the caller to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Run SQL: analysts in data projects, auditors in the audit project.
    Sql,
    /// Run canned reports: commissioners.
    Reports,
    /// Read the audit log: auditors.
    Audit,
    /// Anything: any member of the project.
    Any,
}

/// The authenticated caller of one request, inside one project.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal.
    pub principal: String,
    /// The project the call runs in.
    pub project: Project,
    /// The role the call uses.
    pub role: Role,
    /// Every role the principal holds in the project.
    pub roles: Vec<Role>,
}

impl Caller {
    /// Whether this caller works in the audit project (a project with no data tables whose
    /// members are auditors): its only table is the audit log.
    pub fn in_audit_project(&self) -> bool {
        self.project.tables.is_empty() && self.role == Role::Auditor
    }
}

/// A result waiting to be fetched with `DoGet`: single use, bound to its principal, expiring.
pub struct TicketEntry {
    /// Who may fetch it.
    pub principal: String,
    /// The encoded Flight data (schema and batches), exactly as hashed into the audit log.
    pub messages: Vec<arrow_flight::FlightData>,
    /// When it stops being valid.
    pub expires: Instant,
}

/// A prepared statement (Flight SQL `CreatePreparedStatement`): bound to its principal and
/// project, expiring.
#[derive(Debug, Clone)]
pub struct PreparedEntry {
    /// Who created it.
    pub principal: String,
    /// The project it was prepared in.
    pub project: String,
    /// The SQL text.
    pub sql: String,
    /// When it stops being valid.
    pub expires: Instant,
}

/// Daily query budgets per project (DESIGN.md rule 8), counted per UTC day.
#[derive(Debug, Default)]
pub struct Budgets {
    /// (day, project) → queries charged.
    used: Mutex<HashMap<(i64, String), u32>>,
}

impl Budgets {
    /// Queries already charged to `project` on `day`.
    pub fn used(&self, day: i64, project: &str) -> u32 {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.get(&(day, project.to_string())).copied().unwrap_or(0)
    }

    /// Charges one query; `RESOURCE_EXHAUSTED` when the day's budget is spent. Returns
    /// (spent today, remaining).
    pub fn charge(&self, day: i64, project: &Project) -> Result<(u32, u32), Status> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.retain(|(d, _), _| *d >= day);
        let n = used.entry((day, project.id.clone())).or_insert(0);
        if *n >= project.queries_per_day {
            return Err(Status::resource_exhausted(format!(
                "project {} has used its {} queries for today (UTC); the budget resets at \
                 midnight",
                project.id, project.queries_per_day
            )));
        }
        *n += 1;
        Ok((*n, project.queries_per_day - *n))
    }

    /// Restores counts (from the audit log at start-up).
    pub fn restore(&self, day: i64, project: &str, n: u32) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.insert((day, project.to_string()), n);
    }
}

/// The shared state of a running server.
pub struct State {
    /// The configuration as loaded (paths resolved).
    pub config: ServerConfig,
    /// The project register.
    pub register: Register,
    /// The store version being served (verified at start-up).
    pub version: StoreVersion,
    /// One runtime (and memory pool) for every query.
    pub runtime: Arc<RuntimeEnv>,
    /// Session settings.
    pub session_opts: SessionOptions,
    /// Project sessions, built on first use.
    contexts: Mutex<HashMap<String, Arc<OnceCell<Arc<ProjectContext>>>>>,
    /// Token checks.
    pub auth: Authenticator,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Bounds the queries running at once.
    pub limiter: Arc<Semaphore>,
    /// Results waiting for `DoGet`, by handle.
    pub tickets: Mutex<HashMap<Vec<u8>, TicketEntry>>,
    /// Prepared statements, by handle.
    pub prepared: Mutex<HashMap<Vec<u8>, PreparedEntry>>,
    /// Query budgets.
    pub budgets: Budgets,
    /// Request ids (unique per server run; the audit sequence orders them globally).
    next_request: AtomicU64,
    /// The clock.
    pub clock: Clock,
}

impl State {
    /// Assembles the state.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ServerConfig,
        register: Register,
        version: StoreVersion,
        runtime: Arc<RuntimeEnv>,
        session_opts: SessionOptions,
        audit: Arc<AuditLog>,
        clock: Clock,
    ) -> State {
        let auth = Authenticator::new(&config.principals);
        let limiter = Arc::new(Semaphore::new(config.limits.max_concurrent_queries));
        State {
            config,
            register,
            version,
            runtime,
            session_opts,
            contexts: Mutex::new(HashMap::new()),
            auth,
            audit,
            limiter,
            tickets: Mutex::new(HashMap::new()),
            prepared: Mutex::new(HashMap::new()),
            budgets: Budgets::default(),
            next_request: AtomicU64::new(1),
            clock,
        }
    }

    /// A new request id.
    pub fn request_id(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// Today as days since the Unix epoch (UTC).
    pub fn today(&self) -> i64 {
        (self.clock)().div_euclid(86_400_000)
    }

    /// The session of `project`, built on first use and shared afterwards.
    pub async fn context(&self, project: &Project) -> Result<Arc<ProjectContext>, Status> {
        let cell = {
            let mut map = self.contexts.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(project.id.clone()).or_default())
        };
        cell.get_or_try_init(|| async {
            ProjectContext::open(
                &self.version,
                project,
                Arc::clone(&self.runtime),
                &self.session_opts,
            )
            .await
            .map(Arc::new)
            .map_err(|e| {
                tracing::error!(project = %project.id, error = %e, "project view failed");
                Status::internal("the project's view could not be built; tell the administrator")
            })
        })
        .await
        .cloned()
    }

    /// Waits for a query slot (at most the queue timeout).
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        let wait = Duration::from_secs(self.config.limits.queue_timeout_secs);
        match tokio::time::timeout(wait, Arc::clone(&self.limiter).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(Status::unavailable("the server is shutting down")),
            Err(_) => Err(Status::resource_exhausted(BUSY)),
        }
    }

    /// Authenticates the request and resolves its project and role. Failed authentication
    /// is recorded in the audit log before the caller gets `UNAUTHENTICATED`.
    pub async fn caller(&self, metadata: &MetadataMap, need: Need) -> Result<Caller, Status> {
        let principal = match self.auth.authenticate(metadata) {
            Ok(p) => p,
            Err(failure) => {
                self.record_auth_failure(failure, metadata).await?;
                return Err(Status::unauthenticated(
                    "missing or invalid credentials: send `authorization: Bearer <token>`",
                ));
            }
        };
        let mine: Vec<&Project> = self
            .register
            .projects()
            .iter()
            .filter(|p| !p.role_of(&principal).is_empty())
            .collect();
        let chosen = match metadata.get(PROJECT_HEADER).map(|v| v.to_str()) {
            Some(Ok(id)) => mine
                .iter()
                .find(|p| p.id == id.trim())
                .copied()
                .ok_or_else(|| {
                    Status::permission_denied(format!(
                        "{principal} is not a member of a project named {:?}",
                        id.trim()
                    ))
                })?,
            Some(Err(_)) => {
                return Err(Status::invalid_argument(format!(
                    "{PROJECT_HEADER} is not valid text"
                )));
            }
            None => match mine.as_slice() {
                [only] => *only,
                [] => {
                    return Err(Status::permission_denied(format!(
                        "{principal} is not a member of any project"
                    )));
                }
                many => {
                    return Err(Status::invalid_argument(format!(
                        "{principal} works in several projects; choose one with the {} \
                         header: {}",
                        PROJECT_HEADER,
                        many.iter()
                            .map(|p| p.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            },
        };
        let today = i32::try_from(self.today()).unwrap_or(i32::MAX);
        if chosen.is_expired(today) {
            return Err(Status::permission_denied(format!(
                "project {} has expired",
                chosen.id
            )));
        }
        let roles = chosen.role_of(&principal);
        let wanted: &[Role] = match need {
            Need::Sql => &[Role::Analyst, Role::Auditor],
            Need::Reports => &[Role::Commissioner],
            Need::Audit => &[Role::Auditor],
            Need::Any => &[
                Role::Analyst,
                Role::Commissioner,
                Role::Auditor,
                Role::Admin,
            ],
        };
        let role = wanted
            .iter()
            .copied()
            .find(|r| roles.contains(r))
            .ok_or_else(|| {
                let what = match need {
                    Need::Sql => "run SQL (analysts only; commissioners run reports)",
                    Need::Reports => "run reports (commissioners only)",
                    Need::Audit => "read the audit log (auditors only)",
                    Need::Any => "use this project",
                };
                Status::permission_denied(format!(
                    "{principal} may not {what} in project {}",
                    chosen.id
                ))
            })?;
        let caller = Caller {
            principal,
            project: chosen.clone(),
            role,
            roles,
        };
        // Auditors run SQL only over the audit log, never in a data project.
        if need == Need::Sql && role == Role::Auditor && !caller.in_audit_project() {
            return Err(Status::permission_denied(format!(
                "{} may not run SQL in project {}",
                caller.principal, caller.project.id
            )));
        }
        Ok(caller)
    }

    async fn record_auth_failure(
        &self,
        failure: AuthFailure,
        metadata: &MetadataMap,
    ) -> Result<(), Status> {
        let claimed_project = metadata
            .get(PROJECT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(64).collect::<String>())
            .unwrap_or_default();
        let entry = Entry {
            kind: Kind::AuthFailed,
            project: claimed_project,
            outcome: audit::Outcome::Refused {
                rule: "auth".into(),
            },
            detail: vec![("reason".into(), failure.as_str().into())],
            ..Entry::default()
        };
        self.append(entry).await.map(|_| ())
    }

    /// Appends to the audit log; if that fails, the request fails and nothing is released.
    pub async fn append(&self, entry: Entry) -> Result<u64, Status> {
        self.audit.append(entry).await.map_err(|e| {
            tracing::error!(error = %e, "audit append failed");
            Status::unavailable("the audit log cannot be written; no result is released")
        })
    }

    /// Removes expired tickets and prepared statements.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, t| t.expires > now);
        self.prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, t| t.expires > now);
    }
}
