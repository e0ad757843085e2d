//! A small intermediate result read by two parts of one plan, computed once.
//!
//! DataFusion runs a subplan once for every place it appears in a plan. Rule 7's
//! measurement ([`crate::low_effect`]) is read twice: for the list of low-effect masks that
//! selects the rows, and for each cell's masks that the rows are joined to. Each reading
//! would recompute the scan, the joins and the grouping-sets aggregation of every row. The
//! measurement is small (one row per cell, grouping set and mask), so [`twice`] computes it
//! once per execution and hands both readers the same batches, held under the query's
//! memory pool.
//!
//! The subplan is planned once for both readers (so a share read inside another share's
//! subplan is scanned once, not once per reader of the outer one); whichever reader runs
//! first computes it (in a task of its own, so that it finishes whichever reader is polled),
//! and the other reads its batches. The plan's shape and cost do not depend on the data.

use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, collect,
};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt, TryStreamExt};

use crate::side_channel;

/// Two plans that each yield `plan`'s rows, with `plan` computed once per execution. The
/// columns keep their names (unqualified).
///
/// `plan` is hidden inside a table from every later pass over the outer plan, so rule 6's
/// neutralisation of run-time errors ([`side_channel::neutralise`]) is applied to it here:
/// it computes the analyst's conditions, and an error there would be an oracle.
pub(crate) fn twice(plan: LogicalPlan, name: &str) -> Result<(LogicalPlan, LogicalPlan)> {
    let [a, b] = <[LogicalPlan; 2]>::try_from(times(plan, name, 2)?)
        .map_err(|_| DataFusionError::Internal("two readers".into()))?;
    Ok((a, b))
}

/// `readers` plans that each yield `plan`'s rows, computed once per execution (as
/// [`twice`]). Every reader must be in the one plan that is executed.
pub(crate) fn times(plan: LogicalPlan, name: &str, readers: usize) -> Result<Vec<LogicalPlan>> {
    let plan = side_channel::neutralise(plan)?;
    let schema = Arc::new(plan.schema().as_arrow().clone());
    let source = provider_as_source(Arc::new(SharedTable {
        plan,
        schema: Arc::clone(&schema),
        readers,
        slot: tokio::sync::Mutex::new(None),
    }));
    let reader = || -> Result<LogicalPlan> {
        let names: Vec<Expr> = schema
            .fields()
            .iter()
            .map(|f| {
                Expr::Column(datafusion::common::Column::new(Some(name), f.name())).alias(f.name())
            })
            .collect();
        LogicalPlanBuilder::scan(name, Arc::clone(&source), None)?
            .project(names)?
            .build()
    };
    (0..readers).map(|_| reader()).collect()
}

/// The result of one execution: computed by a task that the first reader to run starts.
///
/// Every reader awaits that one task, which no reader can cancel: a reader dropped before
/// the end (a join that ends early) used to abort the computation it had started, and the
/// next reader ran the same physical child a second time, which DataFusion's operators do
/// not support (repartitioning panics, "partition not used yet", or waits forever). The
/// task is aborted when the slot is dropped, with the plan.
#[derive(Default)]
struct Slot {
    /// The computation (its batches, or the error computing them gave: every reader gets
    /// it), and the handle that aborts its task when the slot is dropped.
    task: OnceLock<(
        Shared<BoxFuture<'static, Outcome>>,
        tokio::task::AbortHandle,
    )>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((_, abort)) = self.task.get() {
            abort.abort();
        }
    }
}

/// A shared result's batches and the pool's reservation for them.
type Computed = Arc<(Vec<RecordBatch>, MemoryReservation)>;

/// What every reader of a slot gets.
type Outcome = std::result::Result<Computed, Arc<DataFusionError>>;

/// The shared subplan as a table; every `readers` scans (one physical planning) shares a
/// [`Slot`].
struct SharedTable {
    plan: LogicalPlan,
    schema: SchemaRef,
    /// How many readers share one computation.
    readers: usize,
    /// The slot being handed out, to how many readers so far, and its child's physical
    /// plan. The child is planned once per slot, not once per reader: a share read inside
    /// another share's plan (rule 7's gate counts the measurement's masks) would otherwise
    /// be scanned once more for every planning of the outer one, and a third scan gets a
    /// slot of its own and computes everything again. An async lock, held while the child is
    /// planned, so that concurrent planning of two readers cannot plan it twice.
    slot: tokio::sync::Mutex<Option<Pending>>,
}

/// A slot with fewer readers than the table's `readers` so far.
struct Pending {
    slot: Arc<Slot>,
    readers: usize,
    child: Arc<dyn ExecutionPlan>,
}

impl fmt::Debug for SharedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTable").finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for SharedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut pending = self.slot.lock().await;
        let (slot, child) = match pending.as_mut() {
            Some(p) if p.readers < self.readers => {
                p.readers += 1;
                (Arc::clone(&p.slot), Arc::clone(&p.child))
            }
            _ => {
                let child = state.create_physical_plan(&self.plan).await?;
                let slot = Arc::new(Slot::default());
                *pending = Some(Pending {
                    slot: Arc::clone(&slot),
                    readers: 1,
                    child: Arc::clone(&child),
                });
                (slot, child)
            }
        };
        drop(pending);
        Ok(Arc::new(SharedExec::new(
            child,
            slot,
            projection.cloned(),
            Arc::clone(&self.schema),
        )?))
    }
}

/// The bytes `batches` hold: each batch's columns as sliced. An aggregation emits its
/// output as slices of one array, and [`RecordBatch::get_array_memory_size`] counts the whole
/// array for every slice: 32.5 GB were asked of the pool for rule 7's per-person counts of
/// readmissions at 1M patients, a result of about a hundred megabytes.
pub(crate) fn held_bytes(batches: &[RecordBatch]) -> Result<usize> {
    let mut total = 0;
    for b in batches {
        for c in b.columns() {
            total += c.to_data().get_slice_memory_size()?;
        }
    }
    Ok(total)
}

/// The one child given to `with_new_children` of the plan node `node`.
pub(crate) fn only_child(
    children: Vec<Arc<dyn ExecutionPlan>>,
    node: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    let [child] = <[_; 1]>::try_from(children)
        .map_err(|_| DataFusionError::Internal(format!("{node} has one child")))?;
    Ok(child)
}

/// The subplan a shared-result reader runs (when `plan` is one): it is not among the
/// reader's children, so walks over a physical plan that must see every operator (rows read
/// from storage) descend through this.
pub fn shared_child(plan: &dyn ExecutionPlan) -> Option<&Arc<dyn ExecutionPlan>> {
    plan.downcast_ref::<SharedExec>()
        .map(|shared| &shared.child)
}

/// Reads a [`Slot`], computing it from its child if no other reader has.
struct SharedExec {
    child: Arc<dyn ExecutionPlan>,
    slot: Arc<Slot>,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for SharedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedExec").finish_non_exhaustive()
    }
}

impl SharedExec {
    /// `declared` is the table's schema (the shared plan's logical schema), which the
    /// batches are given: a physical plan may call a column nullable that its logical plan
    /// knows is not (a grouping-sets aggregation's set id), and the plan above was planned
    /// with the latter.
    fn new(
        child: Arc<dyn ExecutionPlan>,
        slot: Arc<Slot>,
        projection: Option<Vec<usize>>,
        declared: SchemaRef,
    ) -> Result<SharedExec> {
        let schema = match &projection {
            Some(p) => Arc::new(declared.project(p)?),
            None => Arc::clone(&declared),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(SharedExec {
            child,
            slot,
            projection,
            properties,
        })
    }
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedExec: computed once for its readers")
    }
}

impl ExecutionPlan for SharedExec {
    fn name(&self) -> &str {
        "SharedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    /// None: the subplan is planned and optimized once, when its table is scanned
    /// ([`SharedTable`]), and run inside [`ExecutionPlan::execute`]. Shown as a child, it
    /// was walked and rewritten by the physical optimizer once per reader, and a share inside
    /// a share once per reader of each: planning rule 7's measurement took seconds (1.4 s at
    /// 20,000 patients for practice-month). [`shared_child`] reaches it.
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "SharedExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "SharedExec has one partition, not {partition}"
            )));
        }
        let slot = Arc::clone(&self.slot);
        let child = Arc::clone(&self.child);
        let projection = self.projection.clone();
        let schema = self.schema();
        let batches = async move {
            let task = slot.task.get_or_init(|| {
                let pool = Arc::clone(context.memory_pool());
                let handle = tokio::spawn(async move {
                    let batches = collect(child, context).await?;
                    let reservation =
                        MemoryConsumer::new("fivesafes shared result").register(&pool);
                    reservation.try_grow(held_bytes(&batches)?)?;
                    Ok::<_, DataFusionError>(Arc::new((batches, reservation)))
                });
                let abort = handle.abort_handle();
                let computed = async move {
                    handle
                        .await
                        .map_err(|e| Arc::new(DataFusionError::External(Box::new(e))))?
                        .map_err(Arc::new)
                }
                .boxed()
                .shared();
                (computed, abort)
            });
            let shared = task.0.clone().await.map_err(DataFusionError::Shared)?;
            let out: Vec<Result<RecordBatch>> = shared
                .0
                .iter()
                .map(|b| {
                    let b = match &projection {
                        Some(p) => b.project(p)?,
                        None => b.clone(),
                    };
                    let rows = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
                    Ok(RecordBatch::try_new_with_options(
                        Arc::clone(&schema),
                        b.columns().to_vec(),
                        &rows,
                    )?)
                })
                .collect();
            Ok::<_, DataFusionError>(futures::stream::iter(out))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(batches).try_flatten().boxed(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::logical_expr::JoinType;
    use datafusion::physical_plan::execute_stream;
    use datafusion::prelude::{SessionContext, col};

    use super::*;

    #[test]
    fn slices_of_one_array_are_counted_once() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let whole = Int64Array::from_iter_values(0..10_000);
        let batches: Vec<RecordBatch> = (0..10)
            .map(|i| {
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(whole.slice(i * 1000, 1000))],
                )
                .expect("batch")
            })
            .collect();
        let held = held_bytes(&batches).expect("sizes");
        assert_eq!(held, 10_000 * 8);
        // What the pool was asked for before: the whole array for every slice.
        let counted: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        assert!(counted >= 10 * held, "{counted}");
    }

    /// The plan's shared-result readers whose output has a column `column`, and how many
    /// times their subplan ran (readers of one slot may hold the same child).
    fn readers(plan: &Arc<dyn ExecutionPlan>, column: &str) -> (usize, usize) {
        fn walk(
            p: &Arc<dyn ExecutionPlan>,
            column: &str,
            readers: &mut usize,
            ran: &mut Vec<Arc<dyn ExecutionPlan>>,
        ) {
            if let Some(child) = shared_child(p.as_ref()) {
                if p.schema().index_of(column).is_ok() {
                    *readers += 1;
                    let rows = child.metrics().and_then(|m| m.output_rows()).unwrap_or(0);
                    if rows > 0 && !ran.iter().any(|c| Arc::ptr_eq(c, child)) {
                        ran.push(Arc::clone(child));
                    }
                }
                walk(child, column, readers, ran);
            }
            for c in p.children() {
                walk(c, column, readers, ran);
            }
        }
        let (mut readers, mut ran) = (0, Vec::new());
        walk(plan, column, &mut readers, &mut ran);
        (readers, ran.len())
    }

    /// `plan` planned and run: the physical plan (with its metrics) and the batches.
    async fn run(
        ctx: &SessionContext,
        plan: &LogicalPlan,
    ) -> (Arc<dyn ExecutionPlan>, Vec<RecordBatch>) {
        let physical = ctx
            .state()
            .create_physical_plan(plan)
            .await
            .expect("physical");
        let out = collect(Arc::clone(&physical), ctx.task_ctx())
            .await
            .expect("collect");
        (physical, out)
    }

    /// The numbers 0..1000 in column `x`, as an aggregation (so the plan does work).
    fn numbers(ctx: &SessionContext) -> LogicalPlan {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from((0..1000).collect::<Vec<i64>>()))],
        )
        .expect("batch");
        ctx.read_batch(batch)
            .expect("read")
            .aggregate(vec![col("x")], vec![])
            .expect("aggregate")
            .into_unoptimized_plan()
    }

    /// A share read inside another share's plan (as rule 7's gates count the measurement)
    /// is still computed once: its two scans are the outer plan's and the inner plan's, which
    /// is planned once for both of its readers.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_share_inside_a_share_is_computed_once() {
        let ctx = SessionContext::new();
        let (inner_a, inner_b) = twice(numbers(&ctx), "__fs_inner").expect("twice");
        let count = LogicalPlanBuilder::from(inner_b)
            .aggregate(
                Vec::<Expr>::new(),
                vec![datafusion::functions_aggregate::expr_fn::count(col("x")).alias("n")],
            )
            .expect("count")
            .build()
            .expect("plan");
        let (gate_a, gate_b) = twice(count, "__fs_outer").expect("twice");
        let gated = |gate: LogicalPlan, rows: LogicalPlan| {
            LogicalPlanBuilder::from(rows)
                .cross_join(gate)
                .expect("join")
                .build()
                .expect("plan")
        };
        let plan = LogicalPlanBuilder::from(gated(gate_a, inner_a))
            .cross_join(
                LogicalPlanBuilder::from(gate_b)
                    .project(vec![col("n").alias("m")])
                    .expect("project")
                    .build()
                    .expect("plan"),
            )
            .expect("join")
            .build()
            .expect("plan");
        let (physical, out) = run(&ctx, &plan).await;
        assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 1000);
        let n = out[0]
            .column_by_name("n")
            .expect("n")
            .as_primitive::<Int64Type>()
            .value(0);
        assert_eq!(n, 1000);
        assert_eq!(readers(&physical, "n").1, 1, "the count ran once");
        assert_eq!(readers(&physical, "x").1, 1, "the numbers ran once");
    }

    /// A reader dropped while the computation it started runs (a join that ends early) does
    /// not take it away from the other reader, which gets every row: before, the computation
    /// was aborted with the reader, and the other reader ran the same physical child a
    /// second time, which DataFusion's repartitioning does not allow.
    #[tokio::test]
    async fn a_reader_dropped_early_leaves_the_computation_to_the_other() {
        let ctx = SessionContext::new();
        let (a, b) = twice(numbers(&ctx), "__fs_shared").expect("twice");
        let state = ctx.state();
        let a = state.create_physical_plan(&a).await.expect("physical");
        let b = state.create_physical_plan(&b).await.expect("physical");
        let mut early = execute_stream(a, ctx.task_ctx()).expect("stream");
        // One poll starts the computation; on this one-thread runtime it runs while the
        // test yields.
        assert!(futures::poll!(early.next()).is_pending());
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        drop(early);
        let out = collect(b, ctx.task_ctx()).await.expect("the other reader");
        assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 1000);
    }

    /// Both readers see the whole subplan's rows (here joined to each other), the subplan
    /// runs once per execution, and a second execution computes it again.
    #[tokio::test(flavor = "multi_thread")]
    async fn both_readers_get_every_row_computed_once() {
        let ctx = SessionContext::new();
        let (a, b) = twice(numbers(&ctx), "__fs_shared").expect("twice");
        let b = LogicalPlanBuilder::from(b)
            .project(vec![col("x").alias("y")])
            .expect("project")
            .build()
            .expect("plan");
        let joined = LogicalPlanBuilder::from(a)
            .join(b, JoinType::Inner, (vec!["x"], vec!["y"]), None)
            .expect("join")
            .build()
            .expect("plan");
        for _ in 0..2 {
            let (physical, out) = run(&ctx, &joined).await;
            let mut xs: Vec<i64> = out
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            xs.sort_unstable();
            assert_eq!(xs, (0..1000).collect::<Vec<i64>>());
            // Two readers, and only one of them ran the subplan.
            assert_eq!(readers(&physical, "x"), (2, 1));
        }
    }
}
