//! The output-control rewrite (docs/policy-rewrite-design.md): every cell aggregate of a
//! `Cells` query is replaced by a two-level aggregation that yields, per output row, the
//! number of distinct persons behind it and its cell key, and protection is applied inside
//! the plan, before anything above the aggregate (projections, `HAVING`, `ORDER BY`,
//! `LIMIT`) sees a value.
//!
//! One cell aggregate `Aggregate(input, group = [g1..gk], aggr = [a1..am])` over rows about
//! persons becomes
//!
//! ```text
//! Projection: g1..gk, fs_count / fs_sum / fs_mean (…) AS <original names and types>
//!   Filter: NOT fs_suppressed(persons, key_sum)
//!     Aggregate(group = [g1..gk], persons = count(*), key_sum = sum(record_key), totals…)
//!       Filter: record_key IS NOT NULL
//!         Projection: …, fs_person_key(unit) AS record_key
//!           Aggregate(input, group = [g1..gk, unit], per-person partials…)
//! ```
//!
//! (`fs_person_key` looks each person's record key up in memory, [`PersonKeys`].)
//!
//! The cell key is `key_sum mod 256`. Supported aggregates: `COUNT(*)`, `COUNT(x)`,
//! `COUNT(DISTINCT id)` with `id` the privacy unit or an identifying column, `SUM(x)` and
//! `AVG(x)` (per-person sums collected with `array_agg`, protected with
//! [`output::protect_sum`] and [`output::protect_mean`]); `FILTER (WHERE …)` is kept in the
//! per-person partials. Everything else fails closed with [`RewriteError::Unsupported`]:
//! other `DISTINCT` arguments, ordered aggregates, a unit column that is not in the
//! aggregate's input, cell aggregates inside subqueries of expressions.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, DataFusionError};
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::expr_fn::{array_agg, count, max, sum};
use datafusion::functions_aggregate::first_last::first_value_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, Alias, GroupingSet};
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionDefinition};
use datafusion::logical_expr::expr_rewriter::normalize_col;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, Filter, LogicalPlan, LogicalPlanBuilder, Operator, Projection,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Sort, SubqueryAlias, Volatility,
    binary_expr, cast, col, lit, when,
};
use datafusion::logical_expr::{ExprFunctionExt, ExprSchemable};
use datafusion::prelude::SessionContext;
use fivesafes_engine::catalog::PRIVACY_UNIT;

use crate::analysis::{self, Kind, TableFacts};
use crate::decision::Refusal;
use crate::low_effect::LowEffect as Detection;
use crate::output;
use crate::per_date::per_distinct_date;
use crate::person_keys::PersonKeys;
use crate::register::OutputControl;
use crate::top::top_counts;

/// Why a plan could not be rewritten. Either way nothing is released.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The query uses something the rewrite does not protect yet (fails closed).
    #[error("output control: {0}")]
    Unsupported(String),
    /// The analysis refuses the plan.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// DataFusion failed while building the rewritten plan.
    #[error("output control: {0}")]
    DataFusion(#[from] DataFusionError),
}

fn unsupported(what: impl Into<String>) -> RewriteError {
    RewriteError::Unsupported(what.into())
}

/// Column names introduced by the rewrite (unqualified, not visible above the projection).
const PK_KEY: &str = "__fs_record_key";
const PERSONS: &str = "__fs_persons";
const KEY_SUM: &str = "__fs_key_sum";
/// The grouping set of a cell of the outer aggregate (see [`coarser_sets`]).
const SET_ID: &str = "__fs_set";
/// A coarsened cell's own persons and key sum (for its suppression).
const OWN_PERSONS: &str = "__fs_own_persons";
const OWN_KEY: &str = "__fs_own_key";

/// Rewrites every cell aggregate of `plan` (planned by [`crate::gate::plan_query`]) so that
/// the result carries protected values only (see the module documentation). `person_keys` are
/// the store's persons' record keys ([`PersonKeys::load`]) and `params` the
/// project's output-control parameters. `ctx` is the project session (unused for now: the
/// UDFs travel inside the plan).
pub async fn protect(
    ctx: &SessionContext,
    plan: LogicalPlan,
    person_keys: Arc<PersonKeys>,
    params: &OutputControl,
) -> Result<LogicalPlan, RewriteError> {
    Ok(
        protect_counted(ctx, plan, person_keys, params, LowEffect::Detect)
            .await?
            .0,
    )
}

/// Whether the rewrite applies DESIGN.md rule 7 (low-effect conditions and grouping keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowEffect {
    /// Analyst SQL: low-effect conditions and grouping keys do not change an answer.
    Detect,
    /// Canned reports: their conditions and groupings are fixed by a reviewed definition and
    /// whole periods, so the caller cannot vary them by one person; answers stay exact for
    /// small areas.
    Fixed,
}

/// [`protect`], also returning a counter of the cells the plan suppresses as it runs (for
/// the result metadata and the audit log): every evaluation of the suppression filter that
/// removes a cell adds one.
pub async fn protect_counted(
    ctx: &SessionContext,
    plan: LogicalPlan,
    person_keys: Arc<PersonKeys>,
    params: &OutputControl,
    low_effect: LowEffect,
) -> Result<(LogicalPlan, Arc<AtomicU64>), RewriteError> {
    let _ = ctx;
    let facts = TableFacts::from_catalog();
    let analysis = analysis::analyse(&plan, &facts)?;
    if analysis.kind != Kind::Cells {
        return Err(unsupported(
            "only queries whose result is aggregated over several persons are rewritten",
        ));
    }
    // Cell aggregates inside subqueries of expressions are not rewritten: refuse them.
    let mut everywhere = 0usize;
    plan.apply_with_subqueries(|n| {
        if is_cell_aggregate(n, &facts)? {
            everywhere += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut top_level = 0usize;
    plan.apply(|n| {
        if is_cell_aggregate(n, &facts)? {
            top_level += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if everywhere != top_level {
        return Err(unsupported(
            "aggregates over persons inside a subquery expression (use a WITH clause and a join)",
        ));
    }
    if top_level == 0 {
        return Err(unsupported(
            "a query over persons without a recognised cell aggregate",
        ));
    }

    if low_effect == LowEffect::Detect {
        crate::low_effect::category_lists(&plan)?;
    }
    let counter = Arc::new(AtomicU64::new(0));
    let udfs = Udfs::new(params, &counter, &person_keys);
    let mut detection = Detection::new(
        &facts,
        params,
        [&udfs.person_key, &udfs.low_effect, &udfs.released],
    );
    detection.note_references(&plan);
    let mut low_effect = (low_effect == LowEffect::Detect).then_some(&mut detection);
    let mut failure: Option<RewriteError> = None;
    let rewritten = plan
        .transform_down(|node| {
            if !is_cell_aggregate(&node, &facts)? {
                return Ok(Transformed::no(node));
            }
            let LogicalPlan::Aggregate(agg) = &node else {
                return Ok(Transformed::no(node));
            };
            match rewrite_aggregate(agg, &facts, &udfs, low_effect.as_deref_mut()) {
                // Below a cell aggregate there is nothing left to rewrite.
                Ok(new) => Ok(Transformed::new(new, true, TreeNodeRecursion::Jump)),
                Err(e) => {
                    failure = Some(e);
                    Ok(Transformed::new(node, false, TreeNodeRecursion::Stop))
                }
            }
        })?
        .data;
    if let Some(e) = failure {
        return Err(e);
    }
    // Nodes above a rewritten aggregate keep their schemas' names and types; recompute them
    // (nullability may differ: suppressed values are NULL).
    let rewritten = rewritten
        .transform_up(|n| n.recompute_schema().map(Transformed::yes))?
        .data;
    Ok((rewritten, counter))
}

/// Name of the privacy-unit column added to subqueries that did not select it.
const THREADED_UNIT: &str = "__fs_unit";

/// The privacy-unit column that stands for the person of each row: the first one that is
/// never NULL, or else the first. Of `clinical_events e RIGHT JOIN patients p` it is
/// `p.patient_id`: `e.patient_id`, NULL for the persons without events, made them one
/// person (their count, suppression and noise those of one person).
pub(crate) fn unit_index(info: &analysis::Columns, schema: &DFSchemaRef) -> Option<usize> {
    let mut units = info
        .unit
        .iter()
        .enumerate()
        .filter(|(_, u)| **u)
        .map(|(i, _)| i);
    let first = units.clone().next();
    units.find(|i| !schema.field(*i).is_nullable()).or(first)
}

/// Returns `plan` with a privacy-unit column in its output: unchanged when it already has
/// one; otherwise the unit is carried up through projections (appended as `__fs_unit`),
/// aliases, filters and sorts from the nearest input that has it. Anything else (DISTINCT,
/// LIMIT, unions, joins that dropped it) would change the rows and is refused.
fn thread_unit(plan: LogicalPlan, facts: &TableFacts) -> Result<LogicalPlan, RewriteError> {
    if analysis::columns(&plan, facts)?.unit.iter().any(|u| *u) {
        return Ok(plan);
    }
    let cannot = || {
        unsupported(format!(
            "aggregating rows whose {PRIVACY_UNIT} is not carried up to the aggregate \
             (select {PRIVACY_UNIT} in every subquery the aggregate reads)"
        ))
    };
    match plan {
        LogicalPlan::Projection(p) => {
            let input = thread_unit(p.input.as_ref().clone(), facts)?;
            let info = analysis::columns(&input, facts)?;
            let idx = unit_index(&info, input.schema()).ok_or_else(cannot)?;
            let unit = Expr::Column(Column::from(input.schema().qualified_field(idx)));
            let mut exprs = p.expr.clone();
            exprs.push(unit.alias(THREADED_UNIT));
            Ok(LogicalPlan::Projection(Projection::try_new(
                exprs,
                Arc::new(input),
            )?))
        }
        LogicalPlan::SubqueryAlias(a) => {
            let input = thread_unit(a.input.as_ref().clone(), facts)?;
            Ok(LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
                Arc::new(input),
                a.alias.clone(),
            )?))
        }
        LogicalPlan::Filter(f) => {
            let input = thread_unit(f.input.as_ref().clone(), facts)?;
            Ok(LogicalPlan::Filter(Filter::try_new(
                f.predicate.clone(),
                Arc::new(input),
            )?))
        }
        LogicalPlan::Sort(s) if s.fetch.is_none() => {
            let input = thread_unit(s.input.as_ref().clone(), facts)?;
            Ok(LogicalPlan::Sort(Sort {
                expr: s.expr.clone(),
                input: Arc::new(input),
                fetch: None,
            }))
        }
        _ => Err(cannot()),
    }
}

/// Whether `node` is an aggregate over rows about persons that yields cells.
fn is_cell_aggregate(node: &LogicalPlan, facts: &TableFacts) -> datafusion::common::Result<bool> {
    let LogicalPlan::Aggregate(a) = node else {
        return Ok(false);
    };
    let input =
        analysis::columns(&a.input, facts).map_err(|r| DataFusionError::Plan(r.to_string()))?;
    if input.kind != Kind::Persons {
        return Ok(false);
    }
    let out = analysis::columns(node, facts).map_err(|r| DataFusionError::Plan(r.to_string()))?;
    Ok(out.kind == Kind::Cells)
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(Alias { expr, .. }) => strip_alias(expr),
        other => other,
    }
}

/// How one original aggregate is computed and protected.
enum Part {
    /// `COUNT(…)`: inner partial at `inner`, outer total `sum`.
    Count { inner: String },
    /// `SUM(x)`: per-person sums at `inner`, outer `array_agg`.
    Sum { inner: String },
    /// `AVG(x)`: per-person sums at `sums` and row counts at `rows`.
    Mean { sums: String, rows: String },
}

fn rewrite_aggregate(
    agg: &Aggregate,
    facts: &TableFacts,
    udfs: &Udfs,
    low_effect: Option<&mut Detection<'_>>,
) -> Result<LogicalPlan, RewriteError> {
    // The aggregate's input must carry the privacy unit; subqueries that dropped it get it
    // back as an extra trailing column (the aggregate's own expressions are unaffected).
    let threaded = thread_unit(agg.input.as_ref().clone(), facts)?;
    let info = analysis::columns(&threaded, facts)?;
    let unit_idx = unit_index(&info, threaded.schema()).ok_or_else(|| {
        unsupported(format!(
            "aggregating rows whose {PRIVACY_UNIT} is not carried up to the aggregate \
                 (select {PRIVACY_UNIT} in every subquery the aggregate reads)"
        ))
    })?;
    let unit = Expr::Column(Column::from(threaded.schema().qualified_field(unit_idx)));
    if agg
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Err(unsupported("GROUPING SETS, ROLLUP and CUBE"));
    }
    // DESIGN.md rule 7 for grouping keys: a cell that holds all but a few of the persons of
    // a cell with fewer keys (`GROUP BY birth_month <> …` is a filter in disguise) gets that
    // coarser cell's answer. Each row is counted once per grouping set (the cells themselves
    // and the coarser ones, [`coarser_sets`]), with the keys a set leaves out as NULL, so
    // that each coarser cell is computed, low-effect conditions included, exactly as the
    // query with fewer keys would compute it.
    let k = agg.group_expr.len();
    let sets = coarser_sets(k);
    let unit_schema = Arc::clone(threaded.schema());
    let Some(low_effect) = low_effect else {
        let cells = agg
            .group_expr
            .iter()
            .map(|g| per_distinct_date(g.clone(), threaded.schema()))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let input = CellInput {
            input: threaded,
            cells,
            unit,
            unit_schema,
            info,
            coarse: None,
            partials: None,
        };
        return finish_aggregate(agg, input, udfs);
    };
    // DESIGN.md rule 7 for values: the aggregates read plain values only.
    crate::values::check(agg)?;
    // DESIGN.md rule 7: the filters' conditions are lifted out, to be measured per cell.
    let (lifted, conds) = low_effect.lift_conditions(threaded, &agg.group_expr)?;
    // The grouping keys, computed once per row.
    let mut exprs = all_columns(&lifted);
    let mut key_exprs = Vec::with_capacity(agg.group_expr.len());
    for (i, g) in agg.group_expr.iter().enumerate() {
        let g = per_distinct_date(g.clone().unalias(), lifted.schema())?;
        key_exprs.push(g.clone());
        exprs.push(g.alias(grouping_key(i)));
    }
    // The atoms, by name: a cohort rewrite below (`as_membership`) may have dropped
    // columns the query does not read, so they are not at a fixed position.
    let atoms = crate::low_effect::lifted_atoms(lifted.schema(), &conds);
    let keyed = LogicalPlanBuilder::from(lifted).project(exprs)?.build()?;
    let key_cols: Vec<Expr> = (0..k).map(|i| col(grouping_key(i))).collect();
    // Range edges on per-person values (in conditions and keys) are read at snapped values.
    let (keyed, per_set) =
        low_effect.snap_edges(keyed, &conds, &key_cols, &key_exprs, &unit, true)?;
    let expand = |plan: LogicalPlan| copy_per_set(plan, k, &sets);
    // One row per person in the rows (then one per person and grouping set in a cell of
    // their copies).
    let one_row = crate::low_effect::one_per_person(&keyed);
    let (input, cells, partials, conds, one_row) = match per_set {
        // A condition on a per-person category that another key splits is read by class in
        // each grouping set's cells: on the rows copied per set, as they are.
        Some(per_set) => {
            let (plan, cells) = expand(keyed)?;
            let plan = low_effect.snap_per_set(plan, per_set, &cells, &unit, one_row)?;
            (plan, cells, None, conds, one_row)
        }
        None => {
            // One conjunction of conditions (the usual case) is measured per set without
            // copying the rows ([`Detection::apply_sets`]).
            let (keyed, conds) =
                match low_effect.apply_sets(keyed, conds, &key_cols, &sets, &unit, &expand)? {
                    Ok((input, cells)) => {
                        let input = CellInput {
                            input,
                            cells,
                            unit,
                            unit_schema,
                            info,
                            coarse: Some(sets),
                            partials: None,
                        };
                        return finish_aggregate(agg, input, udfs);
                    }
                    Err(back) => back,
                };
            // Otherwise the rows are pre-aggregated per grouping set, person, keys and
            // condition values (with the aggregates' partials) in one pass: every later step
            // depends on a row only through those, so the answers are exactly those of the
            // rows themselves, from fewer rows (a person's many events in a month that pass
            // or fail the same conditions are one row, and a coarser set has one row per
            // person and condition values).
            match pre_aggregate(agg, keyed, &unit, atoms, &sets)? {
                Pre::Done { plan, partials } => {
                    let mut cells = key_cols;
                    if k > 0 {
                        cells.push(col(SET_ID));
                    }
                    // (Rows per person, keys and condition values: not one per person.)
                    (plan, cells, Some(partials), conds, false)
                }
                Pre::NotPossible(keyed) => {
                    let (plan, cells) = expand(keyed)?;
                    (plan, cells, None, conds, one_row)
                }
            }
        }
    };
    // Conditions with a low effect on a cell do not change its answer.
    let input = CellInput {
        input: low_effect.apply_lifted(input, conds, &cells, &unit, one_row)?,
        cells,
        unit,
        unit_schema,
        info,
        coarse: Some(sets),
        partials,
    };
    finish_aggregate(agg, input, udfs)
}

/// `plan` (with the [`grouping_key`] columns) with each row copied once per grouping set
/// of `sets` (a cross join with the set ids), and the copies' cells: the keys, NULL where the
/// set leaves them out, and the set id. With no keys, `plan` itself and no cells.
fn copy_per_set(
    plan: LogicalPlan,
    k: usize,
    sets: &[u64],
) -> Result<(LogicalPlan, Vec<Expr>), RewriteError> {
    if k == 0 {
        return Ok((plan, Vec::new()));
    }
    let ids = LogicalPlanBuilder::values(sets.iter().map(|s| vec![lit(*s as i64)]).collect())?
        .project(vec![col("column1").alias(SET_ID)])?
        .build()?;
    let expanded = LogicalPlanBuilder::from(ids).cross_join(plan)?.build()?;
    let mut exprs = all_columns(&expanded);
    let mut cells = Vec::with_capacity(k + 1);
    for i in 0..k {
        let kept =
            binary_expr(col(SET_ID), Operator::BitwiseAnd, lit(set_bit(k, i) as i64)).eq(lit(0i64));
        let name = format!("__fs_g{i}");
        exprs.push(when(kept, col(grouping_key(i))).end()?.alias(&name));
        cells.push(col(name.as_str()));
    }
    cells.push(col(SET_ID));
    let plan = LogicalPlanBuilder::from(expanded).project(exprs)?.build()?;
    Ok((plan, cells))
}

/// The column of grouping key `i` computed before the rows are copied per grouping set.
fn grouping_key(i: usize) -> String {
    format!("__fs_key{i}")
}

/// Grouping expressions of a grouping-sets aggregation at most (its grouping id has a bit
/// for each, in 64 bits).
const MAX_GROUPING_COLUMNS: usize = 60;

/// What [`pre_aggregate`] did.
enum Pre {
    /// The rows pre-aggregated: `[keys…, unit, counted identifiers…, atoms…, partials…, set id]`.
    Done {
        plan: LogicalPlan,
        partials: Vec<Partial>,
    },
    /// An aggregate that cannot be computed from partials; the plan is unchanged.
    NotPossible(LogicalPlan),
}

/// `SUM` of the argument of `af` (a `SUM` or `AVG`) over rows of `schema`, in floating
/// point: a per-person total of integers or decimals in their own type could wrap (or fail)
/// for a person with many large values, a condition on their values (`values.rs`).
fn float_sum(af: &AggregateFunction, schema: &datafusion::common::DFSchema) -> Expr {
    let mut a = af.clone();
    a.func = sum_udaf();
    a.params.args = a
        .params
        .args
        .into_iter()
        .map(|x| match x.get_type(schema) {
            Ok(DataType::Float64) => x,
            _ => cast(x, DataType::Float64),
        })
        .collect();
    Expr::AggregateFunction(a)
}

/// The per-group partial column(s) of one aggregate expression of a pre-aggregated input.
#[derive(Debug, Clone)]
enum Partial {
    /// `COUNT(x)`: the count per group, summed again.
    Count(String),
    /// `COUNT(DISTINCT id)`: the identifier is a grouping column, counted again as it was.
    Distinct,
    /// `SUM(x)`: the sum per group, summed again.
    Sum(String),
    /// `AVG(x)`: the sum and the count per group.
    Mean { sums: String, rows: String },
}

/// Pre-aggregates `input` (the aggregate's input with the unit, the lifted atoms and the
/// [`grouping_key`] columns) by each grouping set of `sets` (the keys it keeps, with the
/// others NULL and the set id in [`SET_ID`]; no set id when there are no keys), the unit,
/// the identifiers counted with `COUNT(DISTINCT …)` and the atoms, computing each
/// aggregate's partials. Aggregates with `FILTER`, `ORDER BY` or other forms are left to
/// [`finish_aggregate`] (which refuses what it does not support): the input is then
/// returned unchanged.
fn pre_aggregate(
    agg: &Aggregate,
    input: LogicalPlan,
    unit: &Expr,
    atoms: Vec<Expr>,
    sets: &[u64],
) -> Result<Pre, RewriteError> {
    let k = agg.group_expr.len();
    let mut group: Vec<Expr> = vec![unit.clone()];
    let mut aggr = Vec::new();
    let mut partials = Vec::new();
    for (j, e) in agg.aggr_expr.iter().enumerate() {
        let Expr::AggregateFunction(af) = strip_alias(e) else {
            return Ok(Pre::NotPossible(input));
        };
        let params = &af.params;
        if params.filter.is_some() || !params.order_by.is_empty() {
            return Ok(Pre::NotPossible(input));
        }
        let with = |f| {
            let mut a = af.clone();
            a.func = f;
            Expr::AggregateFunction(a)
        };
        match af.func.name().to_lowercase().as_str() {
            "count" if params.distinct => match params.args.as_slice() {
                [Expr::Column(c)] => {
                    let c = Expr::Column(c.clone());
                    if !group.contains(&c) {
                        group.push(c);
                    }
                    partials.push(Partial::Distinct);
                }
                _ => return Ok(Pre::NotPossible(input)),
            },
            "count" => {
                let name = format!("__fs_pre_c{j}");
                aggr.push(Expr::AggregateFunction(af.clone()).alias(&name));
                partials.push(Partial::Count(name));
            }
            "sum" if !params.distinct => {
                let name = format!("__fs_pre_s{j}");
                aggr.push(float_sum(af, input.schema()).alias(&name));
                partials.push(Partial::Sum(name));
            }
            "avg" if !params.distinct => {
                let (sums, rows) = (format!("__fs_pre_s{j}"), format!("__fs_pre_n{j}"));
                aggr.push(float_sum(af, input.schema()).alias(&sums));
                aggr.push(with(count_udaf()).alias(&rows));
                partials.push(Partial::Mean { sums, rows });
            }
            _ => return Ok(Pre::NotPossible(input)),
        }
    }
    // The atoms (true, false or NULL each) are grouped by as one packed integer when they
    // fit: a group key of many boolean columns made the grouping most of a query's time
    // (readmissions' 19 atoms: 10 s of CPU over 4 M joined rows).
    // (Lifted cohort selections may add columns of other types: those stay as they are.)
    let (atoms, others): (Vec<Expr>, Vec<Expr>) = atoms.into_iter().partition(|a| {
        a.get_type(input.schema())
            .is_ok_and(|t| t == DataType::Boolean)
    });
    group.extend(others);
    let packed = (2..=MAX_PACKED_ATOMS).contains(&atoms.len());
    let (input, n_ids) = (input, group.len());
    let input = if packed {
        let mut exprs = all_columns(&input);
        exprs.push(pack_atoms(&atoms).alias(ATOM_BITS));
        group.push(col(ATOM_BITS));
        LogicalPlanBuilder::from(input).project(exprs)?.build()?
    } else {
        group.extend(atoms.iter().cloned());
        input
    };
    if k + group.len() > MAX_GROUPING_COLUMNS {
        return Ok(Pre::NotPossible(input));
    }
    let plan = if k == 0 {
        LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(input), group, aggr)?)
    } else {
        let keys: Vec<Expr> = (0..k).map(|i| col(grouping_key(i))).collect();
        aggregate_per_set(input, &keys, sets, &group, aggr, SET_ID)?
    };
    if !packed {
        return Ok(Pre::Done { plan, partials });
    }
    // [keys…, unit, identifiers…, other columns…, atoms…, partials…, set id], the atoms
    // unpacked.
    let columns = all_columns(&plan);
    let mut exprs: Vec<Expr> = columns[..k + n_ids].to_vec();
    exprs.extend(unpack_atoms(&atoms)?);
    exprs.extend(columns[k + n_ids + 1..].iter().cloned());
    let plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
    Ok(Pre::Done { plan, partials })
}

/// The packed atoms' column (see [`pre_aggregate`]).
const ATOM_BITS: &str = "__fs_atom_bits";

/// Atoms packed into one Int64 at most (two bits each).
const MAX_PACKED_ATOMS: usize = 31;

/// The boolean columns `atoms` as one Int64: two bits each, 0 false, 1 true, 2 NULL.
fn pack_atoms(atoms: &[Expr]) -> Expr {
    atoms
        .iter()
        .enumerate()
        .map(|(i, a)| {
            coalesce(vec![cast(a.clone(), DataType::Int64), lit(2i64)]) * lit(1i64 << (2 * i))
        })
        .reduce(|a, b| a + b)
        .unwrap_or(lit(0i64))
}

/// The atoms of [`pack_atoms`] back from [`ATOM_BITS`], each under its own name.
fn unpack_atoms(atoms: &[Expr]) -> Result<Vec<Expr>, RewriteError> {
    atoms
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let Expr::Column(c) = a else {
                return Err(unsupported("a condition that is not a column"));
            };
            let bits = binary_expr(
                binary_expr(
                    col(ATOM_BITS),
                    Operator::BitwiseShiftRight,
                    lit((2 * i) as i64),
                ),
                Operator::BitwiseAnd,
                lit(3i64),
            );
            Ok(when(bits.clone().eq(lit(1i64)), lit(true))
                .when(bits.eq(lit(0i64)), lit(false))
                .end()?
                .alias_qualified(c.relation.clone(), &c.name))
        })
        .collect()
}

/// One aggregation of `input` over every grouping set of `sets` (the keys of `keys` a set
/// keeps, NULL where it leaves them out, each followed by `group`), with `aggr`. Its output:
/// the keys, `group`, `aggr`, and the set id (in [`set_bit`] bits) as `set_name`.
pub(crate) fn aggregate_per_set(
    input: LogicalPlan,
    keys: &[Expr],
    sets: &[u64],
    group: &[Expr],
    aggr: Vec<Expr>,
    set_name: &str,
) -> Result<LogicalPlan, RewriteError> {
    let (input, aggr) = pre_aggregate_finest(input, keys, sets, group, aggr)?;
    aggregate_sets(input, keys, sets, group, aggr, set_name)
}

/// [`aggregate_per_set`] without [`pre_aggregate_finest`].
fn aggregate_sets(
    input: LogicalPlan,
    keys: &[Expr],
    sets: &[u64],
    group: &[Expr],
    aggr: Vec<Expr>,
    set_name: &str,
) -> Result<LogicalPlan, RewriteError> {
    let k = keys.len();
    let grouping_sets: Vec<Vec<Expr>> = sets
        .iter()
        .map(|set| {
            (0..k)
                .filter(|i| set & set_bit(k, *i) == 0)
                .map(|i| keys[i].clone())
                .chain(group.iter().cloned())
                .collect()
        })
        .collect();
    let plan = LogicalPlanBuilder::from(input)
        .aggregate(
            vec![Expr::GroupingSet(GroupingSet::GroupingSets(grouping_sets))],
            aggr,
        )?
        .build()?;
    // The grouping id has a bit per distinct grouping expression, the first one highest, set
    // where the expression is left out: the keys come first, so the set id is the id without
    // the other expressions' bits.
    let mut exprs: Vec<Expr> = all_columns(&plan)
        .into_iter()
        .filter(|e| !matches!(e, Expr::Column(c) if c.name == Aggregate::INTERNAL_GROUPING_ID))
        .collect();
    exprs.push(
        binary_expr(
            cast(col(Aggregate::INTERNAL_GROUPING_ID), DataType::Int64),
            Operator::BitwiseShiftRight,
            lit(group.len() as i64),
        )
        .alias(set_name),
    );
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

/// Aggregates whose value over a group is the same aggregate of their values over any
/// partition of it into smaller groups, by the function's name.
const REAGGREGATED: [&str; 6] = ["bool_or", "bool_and", "bit_or", "bit_and", "min", "max"];

/// `input` aggregated once by every key of `sets` and `group` (finer than every set), and
/// `aggr` over that; or both as they are, unless there are several sets, every key and
/// `group` is a column and every aggregate is a plain one of [`REAGGREGATED`].
///
/// A grouping-sets aggregation looks every row up once per set: rule 7's measurement of
/// practice-month at 200,000 patients spent 308 ms of its 368 ms finding the groups of
/// 2.09 M rows in 4 sets, where the rows have about 200,000 distinct keys.
fn pre_aggregate_finest(
    input: LogicalPlan,
    keys: &[Expr],
    sets: &[u64],
    group: &[Expr],
    aggr: Vec<Expr>,
) -> Result<(LogicalPlan, Vec<Expr>), RewriteError> {
    // Each aggregate's alias (kept whole: qualifier and metadata) and function.
    let plain = |e: &Expr| -> Option<(Alias, Arc<datafusion::logical_expr::AggregateUDF>)> {
        let Expr::Alias(alias) = e else {
            return None;
        };
        let Expr::AggregateFunction(f) = alias.expr.as_ref() else {
            return None;
        };
        let p = &f.params;
        (REAGGREGATED.contains(&f.func.name())
            && !p.distinct
            && p.filter.is_none()
            && p.order_by.is_empty()
            && p.args.len() == 1)
            .then(|| (alias.clone(), Arc::clone(&f.func)))
    };
    let again: Option<Vec<_>> = aggr.iter().map(plain).collect();
    let Some(again) = again.filter(|_| sets.len() > 1) else {
        return Ok((input, aggr));
    };
    // The keys and `group` once each, as the columns of `input` they name (`x` and `t.x`
    // are one column, which the grouping sets would take once).
    let mut by: Vec<Expr> = Vec::with_capacity(keys.len() + group.len());
    let mut seen: Vec<usize> = Vec::with_capacity(keys.len() + group.len());
    for e in keys.iter().chain(group) {
        let Expr::Column(c) = e else {
            return Ok((input, aggr));
        };
        let Some(at) = input.schema().maybe_index_of_column(c) else {
            return Ok((input, aggr));
        };
        if !seen.contains(&at) {
            seen.push(at);
            by.push(e.clone());
        }
    }
    let pre = LogicalPlanBuilder::from(input)
        .aggregate(by, aggr)?
        .build()?;
    let aggr = again
        .into_iter()
        .map(|(alias, func)| {
            let again = Expr::AggregateFunction(AggregateFunction::new_udf(
                func,
                vec![Expr::Column(Column::new(
                    alias.relation.clone(),
                    &alias.name,
                ))],
                false,
                None,
                vec![],
                None,
            ));
            Expr::Alias(Alias {
                expr: Box::new(again),
                ..alias
            })
        })
        .collect();
    Ok((pre, aggr))
}

/// The input of a cell aggregate's rewrite, prepared by [`rewrite_aggregate`].
struct CellInput {
    /// Rows about persons, with the unit (and, for rule 7, one copy per grouping set).
    input: LogicalPlan,
    /// The cells' keys in `input` (the grouping keys, and the set id when `coarse`).
    cells: Vec<Expr>,
    /// The privacy unit in `input`.
    unit: Expr,
    /// The schema `info` describes (the aggregate's input with the unit threaded).
    unit_schema: DFSchemaRef,
    info: analysis::Columns,
    /// The grouping sets computed, when grouping keys are checked for low effect (rule 7).
    coarse: Option<Vec<u64>>,
    /// The partials of each aggregate when `input` is pre-aggregated ([`pre_aggregate`]).
    partials: Option<Vec<Partial>>,
}

/// The rewrite of one cell aggregate over its prepared input: per-person partials, person
/// keys, per-cell totals, coarsening (rule 7), suppression and protection.
fn finish_aggregate(
    agg: &Aggregate,
    cell_input: CellInput,
    udfs: &Udfs,
) -> Result<LogicalPlan, RewriteError> {
    let CellInput {
        input,
        cells,
        unit,
        unit_schema,
        info,
        coarse,
        partials,
    } = cell_input;
    let input = &Arc::new(input);
    let k = agg.group_expr.len();
    let n_cells = cells.len();

    // Inner aggregate: per person and group (from the partials when pre-aggregated).
    let again = |partial: &str| sum(col(partial));
    let mut inner_aggr: Vec<Expr> = Vec::new();
    let mut parts: Vec<Part> = Vec::new();
    for (j, e) in agg.aggr_expr.iter().enumerate() {
        let Expr::AggregateFunction(af) = strip_alias(e) else {
            return Err(unsupported("an aggregate expression of this form"));
        };
        let AggregateFunction { func, params } = af;
        if !params.order_by.is_empty() {
            return Err(unsupported("ORDER BY inside an aggregate"));
        }
        let name = func.name().to_lowercase();
        match name.as_str() {
            "count" => {
                if params.distinct {
                    let ok = params.args.len() == 1
                        && match strip_alias(&params.args[0]) {
                            Expr::Column(c) => unit_schema
                                .index_of_column(c)
                                .ok()
                                .is_some_and(|i| info.unit[i] || info.identifying[i]),
                            _ => false,
                        };
                    if !ok {
                        return Err(unsupported(
                            "COUNT(DISTINCT …) of anything but patient_id or a record \
                             identifier",
                        ));
                    }
                }
                let alias = format!("__fs_c{j}");
                // Per person, `COUNT(DISTINCT unit)` is 1 (0 for a NULL unit), counted
                // without the distinct accumulator's set per group (with a million groups,
                // most of a simple query's time).
                let of_unit = params.distinct
                    && params.filter.is_none()
                    && params.args.len() == 1
                    && strip_alias(&params.args[0]) == &unit;
                let partial = match partials.as_ref().map(|p| &p[j]) {
                    Some(Partial::Count(c)) => again(c),
                    _ if of_unit => {
                        max(when(unit.clone().is_not_null(), lit(1i64)).otherwise(lit(0i64))?)
                    }
                    _ => Expr::AggregateFunction(af.clone()),
                };
                inner_aggr.push(partial.alias(&alias));
                parts.push(Part::Count { inner: alias });
            }
            "sum" | "avg" => {
                if params.distinct {
                    return Err(unsupported("SUM(DISTINCT …) and AVG(DISTINCT …)"));
                }
                let with = |f| {
                    let mut a = af.clone();
                    a.func = f;
                    Expr::AggregateFunction(a)
                };
                let sums = format!("__fs_s{j}");
                let rows = format!("__fs_n{j}");
                match partials.as_ref().map(|p| &p[j]) {
                    Some(Partial::Sum(s)) => inner_aggr.push(again(s).alias(&sums)),
                    Some(Partial::Mean { sums: s, rows: n }) => {
                        inner_aggr.push(again(s).alias(&sums));
                        inner_aggr.push(again(n).alias(&rows));
                    }
                    _ => {
                        inner_aggr.push(float_sum(af, input.schema()).alias(&sums));
                        if name == "avg" {
                            inner_aggr.push(with(count_udaf()).alias(&rows));
                        }
                    }
                }
                if name == "sum" {
                    parts.push(Part::Sum { inner: sums });
                } else {
                    parts.push(Part::Mean { sums, rows });
                }
            }
            other => {
                return Err(unsupported(format!(
                    "the aggregate {} over several persons",
                    other.to_uppercase()
                )));
            }
        }
    }
    let mut inner_group = cells;
    inner_group.push(unit);
    let inner = LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::clone(input),
        inner_group,
        inner_aggr,
    )?);
    // [keys…, set id when coarsened], unit, partials.
    let inner_unit = Column::from(inner.schema().qualified_field(n_cells));
    let group_cols: Vec<Expr> = (0..n_cells)
        .map(|i| Expr::Column(Column::from(inner.schema().qualified_field(i))))
        .collect();

    let unit_type = inner.schema().field(k).data_type().clone();
    if unit_type != DataType::Int64 {
        return Err(unsupported(format!(
            "a privacy unit of type {unit_type} (expected Int64)"
        )));
    }

    // Outer aggregate: per cell (and per coarser cell, keyed by the grouping set), over the
    // persons that have a record key (all of them: every person of the store has one).
    let mut outer_aggr = vec![
        count(lit(1i64)).alias(PERSONS),
        sum(col(PK_KEY)).alias(KEY_SUM),
    ];
    let float_list = |c: &str| array_agg(cast(col(c), DataType::Float64));
    // A count of rows adds up per-person counts: their largest few are flattened as a sum's
    // top contributions are (rule 4, [`output::protect_rows`]).
    let top = |c: &str| top_counts(cast(col(c), DataType::Int64)).alias(format!("{c}_top"));
    for part in &parts {
        match part {
            Part::Count { inner } => {
                outer_aggr.push(sum(cast(col(inner.as_str()), DataType::Int64)).alias(inner));
                outer_aggr.push(top(inner));
                // Only persons who add to a count stand behind it: `COUNT(x)` of a
                // practice's 12 persons where one has 100 readings is that one's count.
                let adds =
                    when(col(inner.as_str()).gt(lit(0i64)), lit(1i64)).otherwise(lit(0i64))?;
                outer_aggr.push(sum(adds).alias(format!("{inner}_persons")));
            }
            Part::Sum { inner } => outer_aggr.push(float_list(inner).alias(inner)),
            Part::Mean { sums, rows } => {
                outer_aggr.push(float_list(sums).alias(sums));
                outer_aggr.push(sum(cast(col(rows.as_str()), DataType::Int64)).alias(rows));
                outer_aggr.push(top(rows));
            }
        }
    }
    let mut with_key = all_columns(&inner);
    with_key.push(
        udfs.person_key
            .call(vec![Expr::Column(inner_unit)])
            .alias(PK_KEY),
    );
    let outer = LogicalPlanBuilder::from(inner)
        .project(with_key)?
        .filter(col(PK_KEY).is_not_null())?
        .aggregate(group_cols, outer_aggr)?
        .build()?;
    // Coarsened cells are suppressed by their own persons, released with the coarser
    // cell's values.
    let (outer, own_persons, own_key) = match &coarse {
        Some(sets) if k > 0 => (
            coarsen(outer, k, sets, &udfs.low_effect)?,
            col(OWN_PERSONS),
            col(OWN_KEY),
        ),
        _ => (outer, col(PERSONS), col(KEY_SUM)),
    };
    let outer_schema = Arc::clone(outer.schema());

    // Protection: drop suppressed cells, then rebuild the original output schema.
    let key_sum = col(KEY_SUM);
    let filtered = LogicalPlan::Filter(Filter::try_new(
        Expr::Not(Box::new(udfs.suppressed.call(vec![own_persons, own_key]))),
        Arc::new(outer),
    )?);
    let mut exprs: Vec<Expr> = Vec::with_capacity(agg.schema.fields().len());
    for (i, (q, field)) in agg.schema.iter().enumerate() {
        let value = if i < k {
            Expr::Column(Column::from(outer_schema.qualified_field(i)))
        } else {
            match &parts[i - k] {
                Part::Count { inner } => udfs.count.call(vec![
                    col(inner.as_str()),
                    col(format!("{inner}_persons")),
                    key_sum.clone(),
                    col(format!("{inner}_top")),
                ]),
                Part::Sum { inner } => udfs.sum.call(vec![col(inner.as_str()), key_sum.clone()]),
                Part::Mean { sums, rows } => udfs.mean.call(vec![
                    col(sums.as_str()),
                    col(rows.as_str()),
                    key_sum.clone(),
                    col(format!("{rows}_top")),
                ]),
            }
        };
        let value = if i < k {
            value
        } else {
            Expr::TryCast(datafusion::logical_expr::TryCast::new(
                Box::new(value),
                field.data_type().clone(),
            ))
        };
        exprs.push(value.alias_qualified(q.cloned(), field.name()));
    }
    let projected = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(filtered))?);
    // The rebuilt schema must match the original one (names and types).
    let (got, want) = (projected.schema(), &agg.schema);
    let same = got.fields().len() == want.fields().len()
        && got.iter().zip(want.iter()).all(|((qa, fa), (qb, fb))| {
            qa == qb && fa.name() == fb.name() && fa.data_type() == fb.data_type()
        });
    if !same {
        return Err(unsupported(format!(
            "an aggregate whose protected schema differs from the original ({got} vs {want})"
        )));
    }
    Ok(projected)
}

/// More grouping keys than this: only the coarser cells with one key left out and the total
/// are computed (a cell with several low-effect keys then gets the total's answer).
const MAX_SUBSET_KEYS: usize = 4;

/// The bit of grouping key `i` of `k` in a grouping-set id (a set bit: the key is left out).
pub(crate) fn set_bit(k: usize, i: usize) -> u64 {
    1 << (k - 1 - i)
}

/// Every column of `plan`, qualified.
fn all_columns(plan: &LogicalPlan) -> Vec<Expr> {
    plan.schema()
        .iter()
        .map(|(q, f)| Expr::Column(Column::from((q, f))))
        .collect()
}

/// The grouping sets of a cell aggregate with `k` keys, as the sets of keys left out (in
/// [`set_bit`] bits): first the cells themselves, then every coarser set (with at most
/// [`MAX_SUBSET_KEYS`] keys; else the sets with one key left out, and the total).
fn coarser_sets(k: usize) -> Vec<u64> {
    if k == 0 {
        return vec![0];
    }
    let all: u64 = (0..k).map(|i| set_bit(k, i)).sum();
    if k <= MAX_SUBSET_KEYS {
        // Every subset of the keys' bits, the cells themselves first.
        let mut out = vec![0];
        let mut sub = all;
        while sub != 0 {
            out.push(sub);
            sub = (sub - 1) & all;
        }
        out.sort_unstable();
        out
    } else {
        let mut out = vec![0];
        out.extend((0..k).map(|i| set_bit(k, i)));
        out.push(all);
        out
    }
}

/// `plan` with the window expressions `windows` added as columns of the given names.
pub(crate) fn with_windows(
    plan: LogicalPlan,
    windows: Vec<(Expr, String)>,
) -> Result<LogicalPlan, RewriteError> {
    let mut exprs = all_columns(&plan);
    // Named after their columns as the window node resolves them (`t.__fs_a2`, not
    // `__fs_a2`): an unqualified column of a derived table in a window's argument named
    // it otherwise, and the projection did not find it (a schema error, session 48).
    let windows = windows
        .into_iter()
        .map(|(w, name)| Ok((normalize_col(w, &plan)?, name)))
        .collect::<Result<Vec<_>, DataFusionError>>()?;
    exprs.extend(
        windows.iter().map(|(w, name)| {
            Expr::Column(Column::from_name(w.schema_name().to_string())).alias(name)
        }),
    );
    let windowed = LogicalPlanBuilder::window_plan(
        plan,
        windows.into_iter().map(|(w, _)| w).collect::<Vec<_>>(),
    )?;
    Ok(LogicalPlanBuilder::from(windowed).project(exprs)?.build()?)
}

/// Given the outer aggregate over every set of [`coarser_sets`] (`[keys…, set id, persons,
/// key sum, parts…]`), returns the cells of the full grouping (`[keys…, persons, key sum,
/// parts…]`), each with the values of the coarsest cell it is low-effect in: every key whose
/// cell one key coarser has more persons, but few enough for `low` (`fs_low_effect` over the
/// extra persons and their key sum: the threshold is drawn from who they are), is left out. The
/// coarser cells' values are fetched with window functions over the one aggregate, so the
/// input is read once.
fn coarsen(
    outer: LogicalPlan,
    k: usize,
    sets: &[u64],
    low: &ScalarUDF,
) -> Result<LogicalPlan, RewriteError> {
    let schema = Arc::clone(outer.schema());
    let key = |i: usize| Expr::Column(Column::from(schema.qualified_field(i)));
    let values: Vec<Expr> = schema
        .iter()
        .skip(k + 1)
        .map(|(q, f)| Expr::Column(Column::from((q, f))))
        .collect();
    let set = || col(SET_ID);
    // The value `x` of the cell of set `d` that has this row's keys outside `d`, on the rows
    // of the cells themselves (set 0).
    let of_set = |x: Expr, d: u64| -> Result<Expr, RewriteError> {
        let partition: Vec<Expr> = (0..k)
            .filter(|j| d & set_bit(k, *j) == 0)
            .map(key)
            .chain([set().in_list(vec![lit(0i64), lit(d as i64)], false)])
            .collect();
        Ok(Expr::from(WindowFunction::new(
            WindowFunctionDefinition::AggregateUDF(first_value_udaf()),
            vec![x],
        ))
        .partition_by(partition)
        .order_by(vec![set().sort(false, true)])
        .build()?)
    };
    // 1. The persons and key sum of each cell one key coarser.
    let wider = |i: usize| format!("__fs_wider{i}");
    let wider_key = |i: usize| format!("__fs_wider_key{i}");
    let mut windows = Vec::new();
    for i in 0..k {
        windows.push((of_set(col(PERSONS), set_bit(k, i))?, wider(i)));
        windows.push((of_set(col(KEY_SUM), set_bit(k, i))?, wider_key(i)));
    }
    let plan = with_windows(outer, windows)?;
    // 2. The keys left out: those with a low effect, as a computed set (else the total).
    let mut dropped: Option<Expr> = None;
    for i in 0..k {
        let extra = col(wider(i)) - col(PERSONS);
        let extra_key = col(wider_key(i)) - col(KEY_SUM);
        let term = when(
            extra
                .clone()
                .gt_eq(lit(1i64))
                .and(low.call(vec![extra, extra_key])),
            lit(set_bit(k, i) as i64),
        )
        .otherwise(lit(0i64))?;
        dropped = Some(match dropped {
            None => term,
            Some(d) => d + term,
        });
    }
    let dropped = dropped.expect("at least one key");
    let all: i64 = (0..k).map(|i| set_bit(k, i) as i64).sum();
    let chosen = when(
        dropped
            .clone()
            .in_list(sets.iter().map(|s| lit(*s as i64)).collect(), false),
        dropped,
    )
    .otherwise(lit(all))?;
    let mut exprs = all_columns(&plan);
    exprs.push(chosen.alias("__fs_chosen"));
    let plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
    // 3. Each coarser set's values, for the rows that may choose it.
    let mut fetched: Vec<Vec<(u64, String)>> = vec![Vec::new(); values.len()];
    let mut windows = Vec::new();
    for d in sets.iter().copied().filter(|d| *d != 0) {
        for (v, x) in values.iter().enumerate() {
            let name = format!("__fs_v{d}_{v}");
            windows.push((of_set(x.clone(), d)?, name.clone()));
            fetched[v].push((d, name));
        }
    }
    let plan = LogicalPlanBuilder::from(with_windows(plan, windows)?)
        .filter(set().eq(lit(0i64)))?
        .build()?;
    // 4. [keys…, persons, key sum, parts…] of the chosen cell.
    let mut out: Vec<Expr> = (0..k).map(key).collect();
    for (v, x) in values.iter().enumerate() {
        let Expr::Column(c) = x else {
            unreachable!("values are columns")
        };
        let mut builder: Option<datafusion::logical_expr::conditional_expressions::CaseBuilder> =
            None;
        for (d, name) in &fetched[v] {
            let cond = col("__fs_chosen").eq(lit(*d as i64));
            builder = Some(match builder {
                None => when(cond, col(name.as_str())),
                Some(mut b) => b.when(cond, col(name.as_str())),
            });
        }
        let value = match builder {
            Some(mut b) => b.otherwise(x.clone())?,
            None => x.clone(),
        };
        out.push(value.alias_qualified(c.relation.clone(), &c.name));
    }
    out.push(col(PERSONS).alias(OWN_PERSONS));
    out.push(col(KEY_SUM).alias(OWN_KEY));
    Ok(LogicalPlanBuilder::from(plan).project(out)?.build()?)
}

// ---------------------------------------------------------------------------------------------
// Protection UDFs.
// ---------------------------------------------------------------------------------------------

/// What a protection UDF computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    /// `fs_suppressed(persons, key_sum) -> Boolean`.
    Suppressed,
    /// `fs_count(count, persons, key_sum, top: List<Int64>) -> Int64` (NULL when
    /// suppressed; `top` the largest per-person counts, [`top_counts`]).
    Count,
    /// `fs_sum(per_person_sums: List<Float64>, key_sum) -> Float64`.
    Sum,
    /// `fs_mean(per_person_sums: List<Float64>, rows, key_sum, top: List<Int64>) -> Float64`
    /// (`top` the largest per-person row counts).
    Mean,
    /// `fs_low_effect(persons, key_sum) -> Boolean`: whether a condition that decides these
    /// persons of a cell has a low effect there ([`output::is_low_effect`], rule 7).
    LowEffect,
    /// `fs_released(persons, key_sum) -> Boolean`: whether a cell of these persons would be
    /// released (not suppressed), without counting it as suppressed: for the low-effect
    /// detection, which neutralises conditions only in cells whose passing persons would be.
    Released,
}

/// One protection UDF, carrying the project's [`OutputControl`] parameters.
#[derive(Debug, Clone)]
struct ProtectUdf {
    op: Op,
    params: OutputControl,
    signature: Signature,
    /// Cells suppressed so far by this query (only `fs_suppressed` adds to it).
    suppressed: Arc<AtomicU64>,
}

impl PartialEq for ProtectUdf {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op
            && self.params == other.params
            && Arc::ptr_eq(&self.suppressed, &other.suppressed)
    }
}

impl Eq for ProtectUdf {}

impl Hash for ProtectUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.op.hash(state);
        self.params.hash(state);
    }
}

impl ProtectUdf {
    fn new(op: Op, p: &OutputControl, suppressed: &Arc<AtomicU64>) -> ProtectUdf {
        let arity = match op {
            Op::Suppressed | Op::Sum | Op::LowEffect | Op::Released => 2,
            Op::Count | Op::Mean => 4,
        };
        ProtectUdf {
            op,
            params: *p,
            signature: Signature::any(arity, Volatility::Immutable),
            suppressed: Arc::clone(suppressed),
        }
    }
}

struct Udfs {
    /// `fs_person_key(unit)`: a person's record key ([`PersonKeys::udf`]).
    person_key: ScalarUDF,
    suppressed: ScalarUDF,
    count: ScalarUDF,
    sum: ScalarUDF,
    mean: ScalarUDF,
    /// `fs_low_effect(persons, key_sum)`, for the low-effect detection ([`Op::LowEffect`]).
    low_effect: ScalarUDF,
    /// `fs_released(persons, key_sum)`, for the low-effect detection ([`Op::Released`]).
    released: ScalarUDF,
}

impl Udfs {
    fn new(p: &OutputControl, counter: &Arc<AtomicU64>, keys: &Arc<PersonKeys>) -> Udfs {
        Udfs {
            person_key: keys.udf(),
            suppressed: ScalarUDF::new_from_impl(ProtectUdf::new(Op::Suppressed, p, counter)),
            count: ScalarUDF::new_from_impl(ProtectUdf::new(Op::Count, p, counter)),
            sum: ScalarUDF::new_from_impl(ProtectUdf::new(Op::Sum, p, counter)),
            mean: ScalarUDF::new_from_impl(ProtectUdf::new(Op::Mean, p, counter)),
            low_effect: ScalarUDF::new_from_impl(ProtectUdf::new(Op::LowEffect, p, counter)),
            released: ScalarUDF::new_from_impl(ProtectUdf::new(Op::Released, p, counter)),
        }
    }
}

fn int64(a: &ArrayRef) -> datafusion::common::Result<&Int64Array> {
    a.as_primitive_opt::<Int64Type>().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "output control: expected Int64, got {}",
            a.data_type()
        ))
    })
}

/// The cell key of a key sum (NULL: no persons, the cell is suppressed).
fn cell_key(key_sum: &Int64Array, i: usize) -> Option<u8> {
    (!key_sum.is_null(i)).then(|| u8::try_from(key_sum.value(i).rem_euclid(256)).unwrap_or(0))
}

/// Persons as u64 (NULL or negative: none).
fn persons_at(persons: &Int64Array, i: usize) -> u64 {
    if persons.is_null(i) {
        0
    } else {
        u64::try_from(persons.value(i)).unwrap_or(0)
    }
}

/// The non-null per-person contributions of row `i` of a `List<Float64>` column.
fn contributions(list: &ArrayRef, i: usize) -> datafusion::common::Result<Option<Vec<f64>>> {
    let list = list.as_list_opt::<i32>().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "output control: expected List<Float64>, got {}",
            list.data_type()
        ))
    })?;
    if list.is_null(i) {
        return Ok(None);
    }
    let values = list.value(i);
    let values = values.as_primitive_opt::<Float64Type>().ok_or_else(|| {
        DataFusionError::Internal("output control: expected Float64 contributions".into())
    })?;
    Ok(Some(values.iter().flatten().collect()))
}

/// The per-person counts of row `i` of a `List<Int64>` column ([`top_counts`]); negative
/// values (impossible for counts) as 0.
fn top_at(list: &ArrayRef, i: usize) -> datafusion::common::Result<Vec<u64>> {
    let list = list.as_list_opt::<i32>().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "output control: expected List<Int64>, got {}",
            list.data_type()
        ))
    })?;
    if list.is_null(i) {
        return Ok(Vec::new());
    }
    let values = list.value(i);
    let values = values
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| DataFusionError::Internal("output control: expected Int64 counts".into()))?;
    Ok(values
        .iter()
        .flatten()
        .map(|v| u64::try_from(v).unwrap_or(0))
        .collect())
}

impl ScalarUDFImpl for ProtectUdf {
    fn name(&self) -> &str {
        match self.op {
            Op::Suppressed => "fs_suppressed",
            Op::Count => "fs_count",
            Op::Sum => "fs_sum",
            Op::Mean => "fs_mean",
            Op::LowEffect => "fs_low_effect",
            Op::Released => "fs_released",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(match self.op {
            Op::Suppressed | Op::LowEffect | Op::Released => DataType::Boolean,
            Op::Count => DataType::Int64,
            Op::Sum | Op::Mean => DataType::Float64,
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let p = self.params;
        let out: ArrayRef = match self.op {
            Op::Suppressed => {
                let (persons, keys) = (int64(&arrays[0])?, int64(&arrays[1])?);
                let out = (0..n)
                    .map(|i| {
                        Some(match cell_key(keys, i) {
                            Some(key) => output::is_suppressed(persons_at(persons, i), key, &p),
                            None => true,
                        })
                    })
                    .collect::<BooleanArray>();
                self.suppressed
                    .fetch_add(out.true_count() as u64, Ordering::Relaxed);
                Arc::new(out)
            }
            Op::LowEffect => {
                let (persons, keys) = (int64(&arrays[0])?, int64(&arrays[1])?);
                Arc::new(
                    (0..n)
                        .map(|i| {
                            let key = cell_key(keys, i).unwrap_or(0);
                            Some(output::is_low_effect(persons_at(persons, i), key, &p))
                        })
                        .collect::<BooleanArray>(),
                )
            }
            Op::Released => {
                let (persons, keys) = (int64(&arrays[0])?, int64(&arrays[1])?);
                Arc::new(
                    (0..n)
                        .map(|i| {
                            Some(match cell_key(keys, i) {
                                Some(key) => {
                                    !output::is_suppressed(persons_at(persons, i), key, &p)
                                }
                                None => false,
                            })
                        })
                        .collect::<BooleanArray>(),
                )
            }
            Op::Count => {
                let (counts, persons, keys) =
                    (int64(&arrays[0])?, int64(&arrays[1])?, int64(&arrays[2])?);
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    let top = top_at(&arrays[3], i)?;
                    v.push(cell_key(keys, i).and_then(|key| {
                        let c = if counts.is_null(i) {
                            0
                        } else {
                            u64::try_from(counts.value(i)).ok()?
                        };
                        output::protect_rows(c, persons_at(persons, i), &top, key, &p)
                            .value()
                            .and_then(|v| i64::try_from(v).ok())
                    }));
                }
                Arc::new(v.into_iter().collect::<Int64Array>())
            }
            Op::Sum => {
                let keys = int64(&arrays[1])?;
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(match (cell_key(keys, i), contributions(&arrays[0], i)?) {
                        (Some(key), Some(c)) if !c.is_empty() => {
                            output::protect_sum(&c, key, &p).value()
                        }
                        _ => None,
                    });
                }
                Arc::new(v.into_iter().collect::<Float64Array>())
            }
            Op::Mean => {
                let (rows, keys) = (int64(&arrays[1])?, int64(&arrays[2])?);
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    let r = if rows.is_null(i) {
                        0
                    } else {
                        u64::try_from(rows.value(i)).unwrap_or(0)
                    };
                    let top = top_at(&arrays[3], i)?;
                    v.push(match (cell_key(keys, i), contributions(&arrays[0], i)?) {
                        (Some(key), Some(c)) if !c.is_empty() && r > 0 => {
                            output::protect_mean(&c, r, &top, key, &p).value()
                        }
                        _ => None,
                    });
                }
                Arc::new(v.into_iter().collect::<Float64Array>())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::functions_aggregate::expr_fn::{bit_or, bool_or, min};

    use super::*;

    /// The rows of `plan`, sorted.
    async fn rows(ctx: &SessionContext, plan: LogicalPlan) -> String {
        let batches = ctx
            .execute_logical_plan(plan)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        let text = pretty_format_batches(&batches).expect("prints").to_string();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    }

    #[tokio::test]
    async fn pre_aggregating_the_finest_groups_gives_every_set_the_same_values() {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE t AS SELECT * FROM (VALUES \
               ('a', 'x', 1, 0), ('a', 'x', 1, 3), ('a', 'y', 1, 1), ('a', NULL, 2, 2), \
               ('b', 'x', 2, 5), ('b', 'x', 3, 0), (NULL, 'y', 3, 4), (NULL, NULL, 4, 6), \
               ('b', 'y', 4, 0), ('b', 'y', 4, 7)) AS t(k0, k1, u, m)",
        )
        .await
        .expect("table");
        let input = ctx.table("t").await.expect("t").into_unoptimized_plan();
        let keys = [col("k0"), col("k1")];
        let sets = [
            0,
            set_bit(2, 0),
            set_bit(2, 1),
            set_bit(2, 0) | set_bit(2, 1),
        ];
        let aggr = || {
            vec![
                bool_or(col("m").eq(lit(0i64))).alias("hp"),
                bit_or(binary_expr(lit(1i64), Operator::BitwiseShiftLeft, col("m"))).alias("ms"),
                min(col("m")).alias("lo"),
            ]
        };
        let group = [col("u")];
        let (pre, again) =
            pre_aggregate_finest(input.clone(), &keys, &sets, &group, aggr()).expect("pre");
        assert!(matches!(pre, LogicalPlan::Aggregate(_)), "{pre}");
        let with = aggregate_sets(pre, &keys, &sets, &group, again, "set").expect("sets");
        let without =
            aggregate_sets(input.clone(), &keys, &sets, &group, aggr(), "set").expect("sets");
        let (with, without) = (rows(&ctx, with).await, rows(&ctx, without).await);
        assert_eq!(with, without);
        // The coarsest set (id 3, both keys left out) has one group per person.
        assert_eq!(
            with.lines().filter(|l| l.contains("| 3   |")).count(),
            4,
            "{with}"
        );
        // Not for one set, nor for an aggregate that cannot be aggregated again.
        let (same, _) =
            pre_aggregate_finest(input.clone(), &keys, &[0], &group, aggr()).expect("one set");
        assert!(!matches!(same, LogicalPlan::Aggregate(_)));
        let counted = vec![count(col("m")).alias("n")];
        let (same, _) = pre_aggregate_finest(input, &keys, &sets, &group, counted).expect("count");
        assert!(!matches!(same, LogicalPlan::Aggregate(_)));
    }
}
