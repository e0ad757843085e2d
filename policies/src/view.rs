//! Project views: the DataFusion session a project's queries are planned and run in.
//!
//! It contains only the project's approved tables, each as a view that exposes only the
//! approved columns (never a secret column) and, when the national data opt-out applies, only
//! the rows of persons recorded as *not* opted out — a person absent from the opt-out list has
//! unknown status and is excluded (fail closed). The opt-out filter sits inside the scan of
//! each personal table ([`crate::opt_out`]), under everything the analyst writes, so no query
//! can see an opted-out person's rows. The session has no
//! `information_schema`, no table functions (`generate_series`, `range`), no URL tables and no
//! table factories (`CREATE EXTERNAL TABLE`); hidden tables are simply not there, so naming
//! one fails exactly like a typo.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::ScalarValue;
use datafusion::datasource::provider_as_source;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col, lit};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::SessionContext;
use fivesafes_engine::catalog::{PRIVACY_UNIT, TableClass};
use fivesafes_engine::session::{SessionOptions, config, runtime, table_provider};
use fivesafes_engine::store::StoreVersion;

use crate::opt_out::{Allowed, OptOutTable};
use crate::whole_partition::WholePartitionWindows;

/// The governance table holding national opt-out status.
const OPT_OUT_TABLE: &str = "national_opt_out";

/// What a project may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSpec {
    /// Approved tables and, for each, the approved columns in the order to expose them.
    pub tables: Vec<(String, Vec<String>)>,
    /// Whether the national data opt-out applies (it does unless the project is exempt).
    pub opt_out_applies: bool,
    /// The inclusive (from, to) range of event dates (Date32 days) the project may see, if
    /// restricted: rows of personal tables dated outside it are not in the view.
    pub date_window: Option<(i32, i32)>,
}

/// The condition that keeps a personal table's rows dated inside `(from, to)`: events,
/// prescriptions, admissions, appointments and attendances by their date; registrations
/// that overlap the window. Demographics (`patients`) have no event date and are kept.
fn date_condition(table: &str, (from, to): (i32, i32)) -> Option<Expr> {
    let day = |d: i32| lit(ScalarValue::Date32(Some(d)));
    let within = |c: &str| col(c).between(day(from), day(to));
    Some(match table {
        "clinical_events" => within("event_date"),
        "medications" => within("issue_date"),
        "hes_apc" => within("admidate"),
        "hes_op" => within("apptdate"),
        "hes_ae" => within("arrivaldate"),
        "practice_registrations" => col("start_date").lt_eq(day(to)).and(
            col("end_date")
                .is_null()
                .or(col("end_date").gt_eq(day(from))),
        ),
        _ => return None,
    })
}

/// A project view could not be built: the project register and the store disagree.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The register approves something the store does not have, or must never be approved.
    #[error("project view: {0}")]
    Config(String),
    /// Opening the store's tables failed.
    #[error("project view: {0}")]
    Engine(#[from] fivesafes_engine::Error),
    /// DataFusion failed while building the views.
    #[error("project view: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// A session with the engine's resource limits and none of the ways to reach data outside
/// the registered tables.
pub fn restricted_context(opts: &SessionOptions) -> Result<SessionContext, ViewError> {
    Ok(restricted_context_in(runtime(opts)?, opts))
}

/// [`restricted_context`] over a shared runtime (one memory pool for many sessions).
pub fn restricted_context_in(runtime: Arc<RuntimeEnv>, opts: &SessionOptions) -> SessionContext {
    let state = SessionStateBuilder::new()
        .with_config(config(opts))
        .with_runtime_env(runtime)
        .with_default_features()
        // Replaces the defaults: no generate_series/range, no CREATE EXTERNAL TABLE formats.
        .with_table_functions(HashMap::new())
        .with_table_factories(HashMap::new())
        .with_physical_optimizer_rules(physical_rules())
        .build();
    SessionContext::new_with_state(state)
}

/// DataFusion's physical optimizer rules, after [`WholePartitionWindows`] (first, so that
/// the sorts a replaced window no longer needs are never added).
pub(crate) fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> =
        vec![Arc::new(WholePartitionWindows)];
    rules.extend(PhysicalOptimizer::new().rules);
    rules
}

/// Builds the session of a project over a verified store version.
pub async fn project_session(
    version: &StoreVersion,
    spec: &ViewSpec,
    opts: &SessionOptions,
) -> Result<SessionContext, ViewError> {
    project_session_in(version, spec, runtime(opts)?, opts).await
}

/// [`project_session`] over a shared runtime (one memory pool for many sessions).
pub async fn project_session_in(
    version: &StoreVersion,
    spec: &ViewSpec,
    runtime: Arc<RuntimeEnv>,
    opts: &SessionOptions,
) -> Result<SessionContext, ViewError> {
    let ctx = restricted_context_in(runtime, opts);
    let state = ctx.state();
    // The persons recorded as not opted out, read once for every personal table of the view.
    let allowed = if spec.opt_out_applies {
        let ndoo = table_provider(&state, version, OPT_OUT_TABLE).await?;
        let plan = LogicalPlanBuilder::scan(OPT_OUT_TABLE, provider_as_source(ndoo), None)?
            .filter(col("opted_out").eq(lit(false)))?
            .project(vec![col(PRIVACY_UNIT)])?
            .build()?;
        let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
        Some(Arc::new(Allowed::from_batches(&batches)?))
    } else {
        None
    };
    for (name, columns) in &spec.tables {
        let entry = version
            .manifest
            .table(name)
            .ok_or_else(|| ViewError::Config(format!("the store has no table {name}")))?;
        if entry.class == TableClass::Governance {
            return Err(ViewError::Config(format!(
                "{name} is governance data and cannot be part of a project"
            )));
        }
        for c in columns {
            if entry.secret_columns.contains(c) {
                return Err(ViewError::Config(format!("{name}.{c} is secret")));
            }
            if !entry.columns.iter().any(|e| &e.name == c) {
                return Err(ViewError::Config(format!("{name} has no column {c}")));
            }
        }
        let personal = entry.class == TableClass::Personal;
        if personal && !columns.iter().any(|c| c == PRIVACY_UNIT) {
            return Err(ViewError::Config(format!(
                "{name} is personal: its view must include {PRIVACY_UNIT}"
            )));
        }
        let mut base: Arc<dyn TableProvider> = table_provider(&state, version, name).await?;
        if let (true, Some(allowed)) = (personal, &allowed) {
            let unit = base
                .schema()
                .index_of(PRIVACY_UNIT)
                .map_err(datafusion::error::DataFusionError::from)?;
            base = Arc::new(OptOutTable::new(base, Arc::clone(allowed), unit));
        }
        let mut plan = LogicalPlanBuilder::scan(name.as_str(), provider_as_source(base), None)?;
        if let (true, Some(window)) = (personal, spec.date_window)
            && let Some(cond) = date_condition(name, window)
        {
            plan = plan.filter(cond)?;
        }
        let plan: LogicalPlan = plan
            .project(columns.iter().map(|c| col(format!("{name}.{c}"))))?
            .build()?;
        ctx.register_table(name.as_str(), Arc::new(ViewTable::new(plan, None)))?;
    }
    Ok(ctx)
}
