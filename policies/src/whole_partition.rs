//! Window aggregates over whole partitions, computed by hashing instead of sorting.
//!
//! Rule 7's measurement ([`crate::low_effect`]) attaches facts about a row's person or cell
//! to every row with aggregates over a whole window partition (`min(v) OVER (PARTITION BY
//! cell, person)`). DataFusion's `WindowAggExec` sorts its input by the partition keys and
//! then evaluates every window once per partition, on a slice of the whole batch, and
//! concatenates the slices' results: with one partition per person, that per-partition work
//! is most of the query (readmissions-30d at 200,000 patients: four such windows over
//! 1.6 M rows took 1.2 to 1.6 s each, and their sorts 0.4 to 0.5 s).
//!
//! [`WholePartitionWindows`] replaces every `WindowAggExec` whose windows are all
//! order-insensitive aggregates over the whole partition, without `FILTER` or `DISTINCT`, by
//! [`HashWindowExec`]: it groups the rows of each input partition by the partition keys as a
//! hash aggregation does (NULL keys are one group, as in a window partition), feeds every
//! row to each aggregate's groups accumulator once, and appends to each row its group's
//! value. The rows and their values are the ones the window gives; the sort is gone unless
//! an operator above needs it (the rule runs before DataFusion's, which add sorts where
//! something requires an order). Any other window (running frames, ranks, order-sensitive
//! aggregates) is left as DataFusion plans it.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::GroupsAccumulator;
use datafusion::logical_expr::{EmitTo, WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::window::{PlainAggregateWindowExpr, WindowExpr};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::execution_plan::apply_expression_roots;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::WindowAggExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use crate::shared::{held_bytes, only_child};

/// The physical optimizer rule that puts [`HashWindowExec`] in place of every
/// `WindowAggExec` it can compute. Runs before DataFusion's own rules.
#[derive(Debug, Default)]
pub(crate) struct WholePartitionWindows;

impl PhysicalOptimizerRule for WholePartitionWindows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(window) = node.downcast_ref::<WindowAggExec>() else {
                return Ok(Transformed::no(node));
            };
            Ok(match HashWindowExec::of_window(window) {
                Some(hashed) => Transformed::yes(Arc::new(hashed) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "fivesafes_whole_partition_windows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The aggregate of a window whose value is the same for every row of its partition and
/// does not depend on the order rows reach it, or `None`.
fn whole_partition_aggregate(window: &dyn WindowExpr) -> Option<&AggregateFunctionExpr> {
    let plain = window.as_any().downcast_ref::<PlainAggregateWindowExpr>()?;
    // `PlainAggregateWindowExpr` keeps its `FILTER` private; its derived `Debug` ends with
    // that field. Anything else (a filter, or another layout in a later DataFusion) keeps
    // the window as planned.
    if !format!("{plain:?}").ends_with("filter: None }") {
        return None;
    }
    let frame = window.get_window_frame();
    let whole = |bound: &WindowFrameBound| match bound {
        WindowFrameBound::CurrentRow => {
            frame.units == WindowFrameUnits::Range && window.order_by().is_empty()
        }
        _ => bound.is_unbounded(),
    };
    if !(whole(&frame.start_bound) && whole(&frame.end_bound)) {
        return None;
    }
    let aggregate = plain.get_aggregate_expr();
    // Aggregates whose value is the same whatever order the rows reach them in (a window's
    // ORDER BY is no part of the aggregate's own ordering, so `first_value` over a whole
    // ordered partition would look order-insensitive here).
    let insensitive = ORDER_FREE.contains(&aggregate.fun().name());
    (insensitive && !aggregate.is_distinct() && aggregate.groups_accumulator_supported())
        .then_some(aggregate)
}

/// The aggregates [`HashWindowExec`] computes.
const ORDER_FREE: [&str; 6] = ["min", "max", "sum", "count", "bool_or", "bool_and"];

/// Whole-partition window aggregates by hash grouping (see the module documentation).
pub(crate) struct HashWindowExec {
    input: Arc<dyn ExecutionPlan>,
    windows: Vec<Arc<dyn WindowExpr>>,
    /// Each window's aggregate ([`whole_partition_aggregate`]).
    aggregates: Vec<AggregateFunctionExpr>,
    /// The windows' one list of partition keys.
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// As the replaced window's: its input partitioned on the keys, or in one partition.
    distribution: InputDistributionRequirements,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for HashWindowExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashWindowExec")
            .field("windows", &self.windows.len())
            .finish_non_exhaustive()
    }
}

impl HashWindowExec {
    /// The replacement of `window`, where every window of it can be computed this way.
    fn of_window(window: &WindowAggExec) -> Option<HashWindowExec> {
        let windows = window.window_expr().to_vec();
        let partition_by = windows.first()?.partition_by().to_vec();
        let aggregates = windows
            .iter()
            .map(|w| {
                let same_keys = w.partition_by().len() == partition_by.len()
                    && w.partition_by()
                        .iter()
                        .zip(&partition_by)
                        .all(|(a, b)| a.as_ref() == b.as_ref());
                same_keys
                    .then(|| whole_partition_aggregate(w.as_ref()).cloned())
                    .flatten()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(HashWindowExec::new(
            Arc::clone(window.input()),
            windows,
            aggregates,
            partition_by,
            window.input_distribution_requirements(),
            window.schema(),
        ))
    }

    fn new(
        input: Arc<dyn ExecutionPlan>,
        windows: Vec<Arc<dyn WindowExpr>>,
        aggregates: Vec<AggregateFunctionExpr>,
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        distribution: InputDistributionRequirements,
        schema: SchemaRef,
    ) -> HashWindowExec {
        // Rows leave in the order they came, but no order is promised: what needs one gets a
        // sort from DataFusion's rules.
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            input.properties().output_partitioning().clone(),
            datafusion::physical_plan::execution_plan::EmissionType::Final,
            input.properties().boundedness,
        ));
        HashWindowExec {
            input,
            windows,
            aggregates,
            partition_by,
            distribution,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for HashWindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.windows.iter().map(|w| w.name()).collect();
        write!(f, "HashWindowExec: wdw=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for HashWindowExec {
    fn name(&self) -> &str {
        "HashWindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.distribution.clone()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let expressions = self.windows.iter().flat_map(|w| {
            let e = w.all_expressions();
            e.args.into_iter().chain(e.partition_by_exprs)
        });
        apply_expression_roots(expressions, f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(HashWindowExec::new(
            only_child(children, "HashWindowExec")?,
            self.windows.clone(),
            self.aggregates.clone(),
            self.partition_by.clone(),
            self.distribution.clone(),
            self.schema(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let windows = self.windows.clone();
        let aggregates = self.aggregates.clone();
        let partition_by = self.partition_by.clone();
        let schema = self.schema();
        let out_schema = Arc::clone(&schema);
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let reservation = MemoryConsumer::new(format!("HashWindowExec[{partition}]"))
            .register(context.memory_pool());
        let batches = async move {
            // Counted as they arrive: the whole partition is held, as the sort it replaces
            // held it.
            let mut input = input;
            let mut batches: Vec<RecordBatch> = Vec::new();
            while let Some(batch) = input.next().await {
                let batch = batch?;
                reservation.try_grow(held_bytes(std::slice::from_ref(&batch))?)?;
                batches.push(batch);
            }
            drop(input);
            let _timer = metrics.elapsed_compute().timer();
            let computed = compute(
                &batches,
                &windows,
                &aggregates,
                &partition_by,
                &out_schema,
                &reservation,
            )?;
            drop(_timer);
            drop(batches);
            metrics.record_output(computed.iter().map(RecordBatch::num_rows).sum());
            // Counted until handed on: the operator above counts what it keeps. Held to
            // the end, a stack of these counted the same input columns once per window
            // (readmissions-30d at 1M ran out of a 2 GiB pool).
            let sizes = computed
                .iter()
                .map(|b| held_bytes(std::slice::from_ref(b)))
                .collect::<Result<Vec<usize>>>()?;
            reservation.resize(sizes.iter().sum());
            let out =
                futures::stream::iter(computed.into_iter().zip(sizes)).map(move |(batch, size)| {
                    reservation.shrink(size.min(reservation.size()));
                    Ok(batch)
                });
            Ok::<_, DataFusionError>(out)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(batches).try_flatten().boxed(),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// `batches` with every window's value appended to each row; what it holds besides the
/// batches is counted in `reservation`.
fn compute(
    batches: &[RecordBatch],
    windows: &[Arc<dyn WindowExpr>],
    aggregates: &[AggregateFunctionExpr],
    partition_by: &[Arc<dyn PhysicalExpr>],
    schema: &SchemaRef,
    reservation: &MemoryReservation,
) -> Result<Vec<RecordBatch>> {
    // 1. Each row's group: its partition keys' values (one group without keys); and, per
    //    batch, how many groups the batches up to it hold. An accumulator is told that
    //    count with each batch: told the final count with an early batch, it took groups
    //    first seen later for seen, and a partition whose values are all NULL got the
    //    accumulator's initial value instead of NULL (review).
    let mut group_values = None;
    let mut groups_of: Vec<Vec<usize>> = Vec::with_capacity(batches.len());
    let mut totals: Vec<usize> = Vec::with_capacity(batches.len());
    let mut any_rows = false;
    for batch in batches {
        reservation.try_grow(batch.num_rows() * std::mem::size_of::<usize>())?;
        let mut groups = Vec::with_capacity(batch.num_rows());
        if partition_by.is_empty() {
            groups.resize(batch.num_rows(), 0);
            any_rows |= batch.num_rows() > 0;
            groups_of.push(groups);
            totals.push(usize::from(any_rows));
            continue;
        }
        let keys = partition_by
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let values = match &mut group_values {
            Some(v) => v,
            None => {
                let fields: Vec<Field> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| Field::new(format!("k{i}"), k.data_type().clone(), true))
                    .collect();
                let keys_schema = Arc::new(Schema::new(fields));
                group_values.insert(new_group_values(keys_schema, &GroupOrdering::None)?)
            }
        };
        values.intern(&keys, &mut groups)?;
        groups_of.push(groups);
        totals.push(values.len());
    }
    if let Some(v) = &group_values {
        reservation.try_grow(v.size())?;
    }
    let total_groups = totals.last().copied().unwrap_or(0);
    if u32::try_from(total_groups).is_err() {
        return Err(DataFusionError::ResourcesExhausted(format!(
            "HashWindowExec: {total_groups} window partitions"
        )));
    }
    // 2. Each window's value per group.
    let mut per_group: Vec<ArrayRef> = Vec::with_capacity(windows.len());
    for (window, aggregate) in windows.iter().zip(aggregates) {
        let mut accumulator: Box<dyn GroupsAccumulator> = aggregate.create_groups_accumulator()?;
        for ((batch, groups), total) in batches.iter().zip(&groups_of).zip(&totals) {
            let args = window.evaluate_args(batch)?;
            accumulator.update_batch(&args, groups, None::<&BooleanArray>, *total)?;
        }
        reservation.try_grow(accumulator.size())?;
        let values = accumulator.evaluate(EmitTo::All)?;
        let wanted = window.field()?.data_type().clone();
        per_group.push(if values.data_type() == &wanted {
            values
        } else {
            cast(&values, &wanted)?
        });
    }
    // 3. The rows with their groups' values.
    let mut out = Vec::with_capacity(batches.len());
    for (batch, groups) in batches.iter().zip(&groups_of) {
        if batch.num_rows() == 0 {
            continue;
        }
        // Checked above: every group id fits.
        let at = UInt32Array::from_iter_values(groups.iter().map(|&g| g as u32));
        let mut columns = batch.columns().to_vec();
        for values in &per_group {
            let column = take(values.as_ref(), &at, None)?;
            reservation.try_grow(column.get_array_memory_size())?;
            columns.push(column);
        }
        out.push(RecordBatch::try_new(Arc::clone(schema), columns)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// A session with the product's physical rules, or DataFusion's alone.
    async fn session(hashed: bool) -> SessionContext {
        let mut builder = SessionStateBuilder::new()
            .with_config(
                SessionConfig::new()
                    .with_target_partitions(3)
                    .with_batch_size(4),
            )
            .with_default_features();
        if hashed {
            builder = builder.with_physical_optimizer_rules(crate::view::physical_rules());
        }
        let ctx = SessionContext::new_with_state(builder.build());
        ctx.sql(
            "CREATE TABLE t AS SELECT * FROM (VALUES \
               (1, 'a', 10, 1.5), (1, 'a', 20, NULL), (1, 'b', 5, 2.0), (2, 'a', 7, 1.0), \
               (2, NULL, 3, 4.0), (2, NULL, NULL, 0.5), (NULL, NULL, 9, 1.0), \
               (NULL, 'c', 11, 2.5), (3, 'c', 1, 3.0), (3, 'c', 2, 3.0), (3, 'c', 4, NULL)) \
             AS t(p, s, v, f)",
        )
        .await
        .expect("table");
        ctx
    }

    /// The query's rows, sorted, and its physical plan.
    async fn run(hashed: bool, sql: &str) -> (String, String) {
        let ctx = session(hashed).await;
        let df = ctx.sql(sql).await.expect("plans");
        let plan = df.create_physical_plan().await.expect("physical plan");
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        let batches = collect(plan, ctx.task_ctx()).await.expect("runs");
        let text = pretty_format_batches(&batches).expect("prints").to_string();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        (lines.join("\n"), shown)
    }

    #[tokio::test]
    async fn whole_partition_aggregates_match_the_window_they_replace() {
        let sql = "SELECT p, s, v, \
              min(v) OVER (PARTITION BY p, s) AS lo, \
              max(s) OVER (PARTITION BY p, s) AS hi, \
              sum(v) OVER (PARTITION BY p, s) AS total, \
              count(f) OVER (PARTITION BY p, s) AS n, \
              bool_or(v > 8) OVER (PARTITION BY p, s) AS big, \
              sum(f) OVER (PARTITION BY p ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING \
                AND UNBOUNDED FOLLOWING) AS pf \
            FROM t";
        let (hashed, plan) = run(true, sql).await;
        let (windowed, before) = run(false, sql).await;
        assert_eq!(hashed, windowed);
        assert!(plan.contains("HashWindowExec"), "{plan}");
        assert!(!plan.contains("WindowAggExec"), "{plan}");
        assert!(before.contains("WindowAggExec"), "{before}");
        // NULL keys are one partition: (NULL, NULL) holds v 9 only.
        assert!(hashed.contains("|   |   | 9  | 9  |"), "{hashed}");
    }

    #[tokio::test]
    async fn running_ordered_and_filtered_windows_are_left_to_datafusion() {
        for sql in [
            // A running frame.
            "SELECT p, v, sum(v) OVER (PARTITION BY p ORDER BY v) AS run FROM t",
            // Order-sensitive over the whole partition.
            "SELECT p, v, first_value(v) OVER (PARTITION BY p ORDER BY v DESC NULLS LAST \
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS top FROM t",
            // A FILTER.
            "SELECT p, v, count(v) FILTER (WHERE v > 4) OVER (PARTITION BY p) AS n FROM t",
            // DISTINCT.
            "SELECT p, v, count(DISTINCT s) OVER (PARTITION BY p) AS n FROM t",
        ] {
            let (hashed, plan) = run(true, sql).await;
            let (windowed, _) = run(false, sql).await;
            assert_eq!(hashed, windowed, "{sql}");
            assert!(!plan.contains("HashWindowExec"), "{sql}\n{plan}");
        }
    }

    #[tokio::test]
    async fn a_partition_of_nulls_first_seen_in_a_later_batch_gets_null() {
        // The window as DataFusion plans it, computed over batches made here: the first
        // without NULLs, the second with a partition of NULLs only (review: told every
        // group at the first batch, an accumulator took the later ones for seen).
        let ctx = session(false).await;
        let df = ctx
            .sql(
                "SELECT p, v, max(v) OVER (PARTITION BY p) AS hi, \
                   sum(v) OVER (PARTITION BY p) AS total, \
                   bool_or(v > 4) OVER (PARTITION BY p) AS big FROM t",
            )
            .await
            .expect("plans");
        let plan = df.create_physical_plan().await.expect("physical plan");
        let mut found = None;
        plan.apply(|node| {
            if let Some(w) = node.downcast_ref::<WindowAggExec>() {
                found = Some((w.window_expr().to_vec(), Arc::clone(w.input()), w.schema()));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("walks");
        let (windows, input, schema) = found.expect("a window");
        let input_schema = input.schema();
        let p_at = input_schema.index_of("p").expect("p");
        let v_at = input_schema.index_of("v").expect("v");
        let batch = |p: Vec<Option<i64>>, v: Vec<Option<i64>>| {
            let mut columns: Vec<ArrayRef> = input_schema
                .fields()
                .iter()
                .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), p.len()))
                .collect();
            columns[p_at] = Arc::new(Int64Array::from(p));
            columns[v_at] = Arc::new(Int64Array::from(v));
            RecordBatch::try_new(Arc::clone(&input_schema), columns).expect("batch")
        };
        let batches = [
            batch(vec![Some(1), Some(1)], vec![Some(5), Some(3)]),
            batch(vec![Some(2), Some(1), Some(2)], vec![None, Some(9), None]),
            batch(vec![None], vec![None]),
        ];
        let pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool> =
            Arc::new(datafusion::execution::memory_pool::UnboundedMemoryPool::default());
        let reservation = MemoryConsumer::new("test").register(&pool);
        let partition_by = windows[0].partition_by().to_vec();
        let aggregates: Vec<AggregateFunctionExpr> = windows
            .iter()
            .map(|w| {
                whole_partition_aggregate(w.as_ref())
                    .cloned()
                    .expect("whole")
            })
            .collect();
        let out = compute(
            &batches,
            &windows,
            &aggregates,
            &partition_by,
            &schema,
            &reservation,
        )
        .expect("computes");
        let all = datafusion::arrow::compute::concat_batches(&schema, &out).expect("one batch");
        let n = all.num_columns();
        let (hi, total, big) = (all.column(n - 3), all.column(n - 2), all.column(n - 1));
        // Rows in their order: p = 1, 1, 2, 1, 2, NULL. Partition 1: max 9, sum 17, some
        // v > 4; partitions 2 and NULL hold NULLs only, and get NULL.
        let hi: Vec<Option<i64>> = hi.as_primitive::<Int64Type>().iter().collect();
        let total: Vec<Option<i64>> = total.as_primitive::<Int64Type>().iter().collect();
        let big: Vec<Option<bool>> = big.as_boolean().iter().collect();
        let (n9, n17, t) = (Some(9), Some(17), Some(true));
        assert_eq!(hi, [n9, n9, None, n9, None, None]);
        assert_eq!(total, [n17, n17, None, n17, None, None]);
        assert_eq!(big, [t, t, None, t, None, None]);
        assert!(reservation.size() > 0);
    }

    #[tokio::test]
    async fn a_stack_of_windows_counts_the_rows_once() {
        // Two windows on different keys: two operators, the second holding the first's
        // rows. 200,000 rows of three Int64 columns are 4.8 MB, and each window adds
        // 1.6 MB. Held to the end, the first's count stayed beside the second's, which
        // counts the same columns again: it needed a pool of 12 MB (10 MB failed). Handed
        // on, released as the second counts the same rows, it fits 8 MB.
        let pool_bytes = 9 * 1024 * 1024;
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(pool_bytes, 1.0)
            .build_arc()
            .expect("runtime");
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(1))
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rules(crate::view::physical_rules())
            .build();
        let ctx = SessionContext::new_with_state(state);
        let n = 200_000i64;
        let schema = Arc::new(Schema::new(vec![
            Field::new("p", datafusion::arrow::datatypes::DataType::Int64, false),
            Field::new("q", datafusion::arrow::datatypes::DataType::Int64, false),
            Field::new("v", datafusion::arrow::datatypes::DataType::Int64, false),
        ]));
        let batches: Vec<RecordBatch> = (0..n)
            .step_by(8192)
            .map(|start| {
                let rows = start..(start + 8192).min(n);
                let column = |f: fn(i64) -> i64| -> ArrayRef {
                    Arc::new(Int64Array::from_iter_values(rows.clone().map(f)))
                };
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![column(|i| i % 1000), column(|i| i % 7), column(|i| i)],
                )
                .expect("batch")
            })
            .collect();
        let table =
            datafusion::datasource::MemTable::try_new(schema, vec![batches]).expect("table");
        ctx.register_table("big", Arc::new(table))
            .expect("registers");
        let df = ctx
            .sql(
                "SELECT SUM(hi) AS a, SUM(lo) AS b FROM (SELECT \
                   max(v) OVER (PARTITION BY p) AS hi, \
                   min(v) OVER (PARTITION BY q) AS lo FROM big)",
            )
            .await
            .expect("plans");
        let plan = df.create_physical_plan().await.expect("physical plan");
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        assert_eq!(shown.matches("HashWindowExec").count(), 2, "{shown}");
        let out = collect(plan, ctx.task_ctx()).await.expect("fits the pool");
        // Per p (0..1000): max is the last i with i % 1000 = p, 199,000 + p, for 200 rows;
        // per q (0..7): min is q, for the rows with i % 7 = q.
        let hi: i64 = (0..1000).map(|p| 200 * (199_000 + p)).sum();
        let lo: i64 = (0..7).map(|q| q * ((n - q + 6) / 7)).sum();
        let a = out[0].column(0).as_primitive::<Int64Type>().value(0);
        let b = out[0].column(1).as_primitive::<Int64Type>().value(0);
        assert_eq!((a, b), (hi, lo));
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    }

    #[tokio::test]
    async fn a_window_without_partition_keys_is_one_group() {
        let sql = "SELECT v, max(v) OVER () AS top, sum(v) OVER () AS total FROM t";
        let (hashed, plan) = run(true, sql).await;
        let (windowed, _) = run(false, sql).await;
        assert_eq!(hashed, windowed);
        assert!(plan.contains("HashWindowExec"), "{plan}");
        // Every one of the 11 rows sees the whole table.
        assert_eq!(hashed.matches("| 20  | 72    |").count(), 11, "{hashed}");
    }
}
