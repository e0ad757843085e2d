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
//! Both readers plan the same logical subplan; whichever runs first computes it (in a task
//! of its own, so that it finishes whichever reader is polled), and the other reads its
//! batches. The plan's shape and cost do not depend on the data.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::common::runtime::SpawnedTask;
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
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use crate::side_channel;

/// Readers of one shared result.
const READERS: usize = 2;

/// Two plans that each yield `plan`'s rows, with `plan` computed once per execution. The
/// columns keep their names (unqualified).
///
/// `plan` is hidden inside a table from every later pass over the outer plan, so rule 6's
/// neutralisation of run-time errors ([`side_channel::neutralise`]) is applied to it here:
/// it computes the analyst's conditions, and an error there would be an oracle.
pub(crate) fn twice(plan: LogicalPlan, name: &str) -> Result<(LogicalPlan, LogicalPlan)> {
    let plan = side_channel::neutralise(plan)?;
    let schema = Arc::new(plan.schema().as_arrow().clone());
    let source = provider_as_source(Arc::new(SharedTable {
        plan,
        schema: Arc::clone(&schema),
        slot: Mutex::new(None),
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
    Ok((reader()?, reader()?))
}

/// The result of one execution: computed by the first reader that runs.
#[derive(Default)]
struct Slot {
    batches: OnceCell<Arc<(Vec<RecordBatch>, MemoryReservation)>>,
}

/// The shared subplan as a table; every pair of scans (one physical planning) shares a
/// [`Slot`].
struct SharedTable {
    plan: LogicalPlan,
    schema: SchemaRef,
    /// The slot being handed out, and to how many readers so far.
    slot: Mutex<Option<(Arc<Slot>, usize)>>,
}

impl fmt::Debug for SharedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTable").finish_non_exhaustive()
    }
}

impl SharedTable {
    fn next_slot(&self) -> Arc<Slot> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some((s, n)) if *n < READERS => {
                *n += 1;
                Arc::clone(s)
            }
            _ => {
                let s = Arc::new(Slot::default());
                *slot = Some((Arc::clone(&s), 1));
                s
            }
        }
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
        let child = state.create_physical_plan(&self.plan).await?;
        Ok(Arc::new(SharedExec::new(
            child,
            self.next_slot(),
            projection.cloned(),
        )?))
    }
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
    fn new(
        child: Arc<dyn ExecutionPlan>,
        slot: Arc<Slot>,
        projection: Option<Vec<usize>>,
    ) -> Result<SharedExec> {
        let schema = match &projection {
            Some(p) => Arc::new(child.schema().project(p)?),
            None => child.schema(),
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

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.child]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(SharedExec::new(
            only_child(children, "SharedExec")?,
            Arc::clone(&self.slot),
            self.projection.clone(),
        )?))
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
        let batches = async move {
            let shared = slot
                .batches
                .get_or_try_init(|| async {
                    let pool = Arc::clone(context.memory_pool());
                    let task = SpawnedTask::spawn(collect(child, context));
                    let batches = task
                        .join()
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))??;
                    let reservation =
                        MemoryConsumer::new("fivesafes shared result").register(&pool);
                    reservation
                        .try_grow(batches.iter().map(RecordBatch::get_array_memory_size).sum())?;
                    Ok::<_, DataFusionError>(Arc::new((batches, reservation)))
                })
                .await?;
            let out: Vec<Result<RecordBatch>> = shared
                .0
                .iter()
                .map(|b| match &projection {
                    Some(p) => Ok(b.project(p)?),
                    None => Ok(b.clone()),
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
    use datafusion::prelude::{SessionContext, col};

    use super::*;

    /// The plan's shared-result readers, and how many of them ran their subplan.
    fn readers(plan: &Arc<dyn ExecutionPlan>) -> (usize, usize) {
        let (mut readers, mut ran) = (0, 0);
        let _ = datafusion::common::tree_node::TreeNode::apply(plan, |p| {
            if p.name() == "SharedExec" {
                readers += 1;
                let rows = p.children()[0]
                    .metrics()
                    .and_then(|m| m.output_rows())
                    .unwrap_or(0);
                ran += usize::from(rows > 0);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        (readers, ran)
    }

    /// Both readers see the whole subplan's rows (here joined to each other), the subplan
    /// runs once per execution, and a second execution computes it again.
    #[tokio::test(flavor = "multi_thread")]
    async fn both_readers_get_every_row_computed_once() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from((0..1000).collect::<Vec<i64>>()))],
        )
        .expect("batch");
        let ctx = SessionContext::new();
        let sub = ctx
            .read_batch(batch)
            .expect("read")
            .aggregate(vec![col("x")], vec![])
            .expect("aggregate")
            .into_unoptimized_plan();
        let (a, b) = twice(sub, "__fs_shared").expect("twice");
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
            let physical = ctx
                .state()
                .create_physical_plan(&joined)
                .await
                .expect("physical");
            let out = collect(Arc::clone(&physical), ctx.task_ctx())
                .await
                .expect("collect");
            let mut xs: Vec<i64> = out
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            xs.sort_unstable();
            assert_eq!(xs, (0..1000).collect::<Vec<i64>>());
            // Two readers, and only one of them ran the subplan.
            assert_eq!(readers(&physical), (2, 1));
        }
    }
}
