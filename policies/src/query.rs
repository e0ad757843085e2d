//! The one path from an analyst's SQL to released batches, inside a project.
//!
//! [`ProjectContext`] is a project's view of one store version (its session, the
//! `person_keys` governance table for cell keys, its output-control parameters), built once
//! and shared by every query of the project. [`ProjectContext::prepare`] runs the statement
//! gate, the privacy-unit analysis and the output-control rewrite, and describes what the
//! query reads for the audit log; nothing is executed until [`Prepared::physical_plan`] and
//! [`execute`]. Every released result goes through here: a query over personal data that
//! cannot be protected is refused, never run as written.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionContext;
use fivesafes_engine::catalog::TableClass;
use fivesafes_engine::session::{SessionOptions, table_provider};
use fivesafes_engine::store::StoreVersion;
use sha2::{Digest, Sha256};

use crate::analysis::{self, Kind, TableFacts};
use crate::decision::{Refusal, Rule};
use crate::gate::{GateError, plan_query};
use crate::person_keys::PersonKeys;
use crate::register::{OptOut, OutputControl, Project};
use crate::rewrite::{LowEffect, RewriteError, protect_counted};
use crate::view::{ViewError, ViewSpec, project_session_in};
use crate::{growth, side_channel};

/// Ids of the output-control rules applied to every released cell (DESIGN.md 3–7): small
/// cells suppressed, consistent noise, rounding, no run-time error oracles, low-effect
/// conditions neutralised.
pub const CELL_RULES: [&str; 5] = ["FS-3", "FS-4", "FS-5", "FS-6", "FS-7"];

/// Ids of the rules applied to every cell of a canned report (see
/// [`ProjectContext::prepare_report`]).
pub const REPORT_RULES: [&str; 4] = ["FS-3", "FS-4", "FS-5", "FS-6"];

/// Why a query produced no result. Every variant's message depends only on the SQL text and
/// the project's schema, never on data, except [`QueryError::Execution`], whose message is
/// for logs and must not reach an analyst.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The policy refused the query.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The SQL is not valid in the project (syntax, unknown table or column, types).
    #[error("{0}")]
    Invalid(String),
    /// Planning or running failed inside the engine.
    #[error("query failed: {0}")]
    Execution(#[from] DataFusionError),
}

impl From<GateError> for QueryError {
    fn from(e: GateError) -> Self {
        match e {
            GateError::Refused(r) => QueryError::Refused(r),
            GateError::Invalid(m) => QueryError::Invalid(m),
        }
    }
}

impl From<RewriteError> for QueryError {
    fn from(e: RewriteError) -> Self {
        match e {
            RewriteError::Refused(r) => QueryError::Refused(r),
            // Fail closed: what cannot be protected is refused with the reason.
            RewriteError::Unsupported(m) => QueryError::Refused(Refusal::new(Rule::Unsupported, m)),
            RewriteError::DataFusion(e) => QueryError::Execution(e),
        }
    }
}

/// The view of `project` (its approved tables and columns, and whether the national data
/// opt-out applies).
pub fn view_spec(project: &Project) -> ViewSpec {
    ViewSpec {
        tables: project
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.columns.clone()))
            .collect(),
        opt_out_applies: matches!(project.opt_out, OptOut::Applies),
        date_window: project.date_window,
    }
}

/// A project's session over one store version, shared by all of the project's queries.
pub struct ProjectContext {
    /// The register entry (output-control parameters, opt-out, purpose).
    project: Project,
    /// The project view: approved tables and columns, opt-out applied.
    ctx: SessionContext,
    /// Every person's record key, for cell keys (never exposed).
    person_keys: Arc<PersonKeys>,
    /// Table classes of the store version, for the analysis.
    facts: TableFacts,
}

impl std::fmt::Debug for ProjectContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectContext")
            .field("project", &self.project.id)
            .finish_non_exhaustive()
    }
}

impl ProjectContext {
    /// Builds the project's view of `version` over a shared `runtime` (whose memory pool
    /// bounds every query of every project together).
    pub async fn open(
        version: &StoreVersion,
        project: &Project,
        runtime: Arc<RuntimeEnv>,
        opts: &SessionOptions,
    ) -> Result<ProjectContext, ViewError> {
        let ctx = project_session_in(version, &view_spec(project), runtime, opts).await?;
        let keys_table = table_provider(&ctx.state(), version, "person_keys").await?;
        let person_keys = PersonKeys::load(&ctx, keys_table).await?;
        Ok(ProjectContext {
            project: project.clone(),
            ctx,
            person_keys,
            facts: TableFacts::from_manifest(&version.manifest),
        })
    }

    /// The project this context serves.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The project's output-control parameters.
    pub fn output_control(&self) -> &OutputControl {
        &self.project.output
    }

    /// The project session (for listing tables and schemas; never run analyst SQL on it
    /// directly: use [`ProjectContext::prepare`]).
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plans, checks and protects an analyst's `sql` without executing anything.
    pub async fn prepare(&self, sql: &str) -> Result<Prepared, QueryError> {
        self.prepare_as(sql, LowEffect::Detect).await
    }

    /// [`ProjectContext::prepare`] for the SQL of a canned report, whose conditions and
    /// groupings come from a reviewed definition and whole periods: every rule applies
    /// except the low-effect neutralisation of rule 7, which would otherwise make small
    /// areas' figures inexact.
    pub async fn prepare_report(&self, sql: &str) -> Result<Prepared, QueryError> {
        self.prepare_as(sql, LowEffect::Fixed).await
    }

    async fn prepare_as(&self, sql: &str, low_effect: LowEffect) -> Result<Prepared, QueryError> {
        let plan = plan_query(&self.ctx, sql).await?;
        let plan_hash = hex::encode(Sha256::digest(plan.display_indent_schema().to_string()));
        let kind = analysis::analyse(&plan, &self.facts)?.kind;
        // Every query, public ones too: a string grown past memory ends the process.
        growth::check(&plan)?;
        if kind == Kind::Cells {
            side_channel::check(&plan)?;
        }
        let reads = self.reads(&plan)?;
        let (plan, suppressed, rules) = match kind {
            Kind::Public => (plan, Arc::new(AtomicU64::new(0)), Vec::new()),
            Kind::Cells => {
                let (plan, counter) = protect_counted(
                    &self.ctx,
                    plan,
                    Arc::clone(&self.person_keys),
                    &self.project.output,
                    low_effect,
                )
                .await?;
                let plan = side_channel::neutralise(plan)?;
                let rules = match low_effect {
                    LowEffect::Detect => CELL_RULES.as_slice(),
                    LowEffect::Fixed => REPORT_RULES.as_slice(),
                };
                (plan, counter, rules.iter().map(|r| r.to_string()).collect())
            }
            // `analyse` refuses these already; kept so that a change there fails closed.
            Kind::Persons => {
                return Err(Refusal::new(
                    Rule::OnlyAggregates,
                    "the result would contain rows about individual persons",
                )
                .into());
            }
        };
        Ok(Prepared {
            plan,
            kind,
            plan_hash,
            tables_read: reads.tables,
            columns_read: reads.columns,
            opt_out_filters: reads.opt_out,
            rules_applied: rules,
            suppressed,
        })
    }

    /// Plans `sql` through the statement gate only, with no output control: for benchmarks
    /// and tests that compare the cost or the accuracy of protection. Never release its
    /// results.
    pub async fn plan_unprotected(&self, sql: &str) -> Result<LogicalPlan, QueryError> {
        Ok(plan_query(&self.ctx, sql).await?)
    }

    /// Which tables and columns `plan` reads once optimised (view definitions inlined,
    /// projections pushed into the scans), and which opt-out filters apply.
    fn reads(&self, plan: &LogicalPlan) -> Result<Reads, QueryError> {
        let optimized = self.ctx.state().optimize(plan)?;
        let mut tables = BTreeSet::new();
        let mut columns = BTreeSet::new();
        let mut personal = false;
        optimized.apply_with_subqueries(|n| {
            if let LogicalPlan::TableScan(scan) = n {
                let name = scan.table_name.table().to_string();
                let class = fivesafes_engine::catalog::table(&name).map(|t| t.class);
                if class == Some(TableClass::Governance) {
                    return Ok(TreeNodeRecursion::Continue);
                }
                personal |= class == Some(TableClass::Personal);
                for f in scan.projected_schema.fields() {
                    columns.insert(format!("{name}.{}", f.name()));
                }
                tables.insert(name);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let opt_out = if personal && matches!(self.project.opt_out, OptOut::Applies) {
            vec!["national_opt_out: only persons recorded as not opted out".to_string()]
        } else {
            Vec::new()
        };
        Ok(Reads {
            tables: tables.into_iter().collect(),
            columns: columns.into_iter().collect(),
            opt_out,
        })
    }
}

/// What a query reads.
struct Reads {
    tables: Vec<String>,
    columns: Vec<String>,
    opt_out: Vec<String>,
}

/// A checked and protected query, ready to run.
#[derive(Debug)]
pub struct Prepared {
    /// The plan to execute (protected when the result is about persons).
    pub plan: LogicalPlan,
    /// What the result's rows are: public rows or protected cells.
    pub kind: Kind,
    /// SHA-256 (hex) of the analyst's plan before protection, for the audit log.
    pub plan_hash: String,
    /// Tables read (without governance tables), sorted.
    pub tables_read: Vec<String>,
    /// Columns read as `table.column`, sorted.
    pub columns_read: Vec<String>,
    /// The opt-out filters applied under the query.
    pub opt_out_filters: Vec<String>,
    /// Ids of the output-control rules applied to the result.
    pub rules_applied: Vec<String>,
    /// Cells suppressed so far while running.
    suppressed: Arc<AtomicU64>,
}

impl Prepared {
    /// The physical plan to run; its schema is exactly the schema of every batch it yields.
    pub async fn physical_plan(
        &self,
        cx: &ProjectContext,
    ) -> Result<Arc<dyn ExecutionPlan>, QueryError> {
        Ok(cx.ctx.state().create_physical_plan(&self.plan).await?)
    }

    /// Output rows (cells) suppressed by output control so far; complete once the stream of
    /// [`execute`] has ended.
    pub fn rows_suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// Runs a physical plan from [`Prepared::physical_plan`] in the project's session.
pub fn execute(
    physical: &Arc<dyn ExecutionPlan>,
    cx: &ProjectContext,
) -> Result<SendableRecordBatchStream, QueryError> {
    Ok(execute_stream(Arc::clone(physical), cx.ctx.task_ctx())?)
}

/// Rows read from storage by a physical plan that has run (the output rows of its leaves).
/// A shared result's subplan ([`crate::shared`]) is walked once, however many readers it has.
pub fn rows_scanned(physical: &Arc<dyn ExecutionPlan>) -> u64 {
    fn leaves(p: &Arc<dyn ExecutionPlan>, total: &mut u64) {
        let children = p.children();
        if children.is_empty()
            && crate::shared::shared_child(p.as_ref()).is_none()
            && let Some(rows) = p.metrics().and_then(|m| m.output_rows())
        {
            *total += rows as u64;
        }
        for c in children {
            leaves(c, total);
        }
    }
    let mut total = 0;
    for plan in std::iter::once(Arc::clone(physical)).chain(shared_subplans(physical)) {
        leaves(&plan, &mut total);
    }
    total
}

/// The subplans of the shared results a physical plan reads ([`crate::shared`]: computed
/// once for all their readers, which are leaves of the plan), each once, including those read
/// inside other shared subplans, outermost first. For profiles: a plan's display does not
/// show them.
pub fn shared_subplans(physical: &Arc<dyn ExecutionPlan>) -> Vec<Arc<dyn ExecutionPlan>> {
    fn walk(p: &Arc<dyn ExecutionPlan>, seen: &mut Vec<Arc<dyn ExecutionPlan>>) {
        if let Some(child) = crate::shared::shared_child(p.as_ref()) {
            if !seen.iter().any(|s| Arc::ptr_eq(s, child)) {
                seen.push(Arc::clone(child));
                walk(child, seen);
            }
            return;
        }
        for c in p.children() {
            walk(c, seen);
        }
    }
    let mut seen = Vec::new();
    walk(physical, &mut seen);
    seen
}

/// The schema of a physical plan's output.
pub fn schema_of(physical: &Arc<dyn ExecutionPlan>) -> SchemaRef {
    physical.schema()
}
