//! `fs_distinct_upto(x)`: the number of distinct non-NULL `Int64` values of `x`, counted up to
//! a cap (`min(distinct, cap)`).
//!
//! Low-effect detection ([`crate::low_effect`]) only needs to know, per cell and condition
//! mask, whether fewer persons than the threshold are behind it, and how many when they are.
//! `COUNT(DISTINCT patient_id)` keeps every person of every group in its state (and ships
//! them between the partial and final aggregation); this keeps at most `cap` of them, so the
//! state of a group is a few integers whatever its size. Exact below the cap.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, Volatility,
};

/// `fs_distinct_upto(x)` with the cap `cap`, called on `x`.
pub(crate) fn distinct_upto(x: Expr, cap: i64) -> Expr {
    AggregateUDF::from(DistinctUpto::new(cap)).call(vec![x])
}

/// The aggregate function; its cap is part of its identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DistinctUpto {
    cap: usize,
    signature: Signature,
}

impl DistinctUpto {
    fn new(cap: i64) -> DistinctUpto {
        DistinctUpto {
            cap: usize::try_from(cap.max(1)).unwrap_or(1),
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for DistinctUpto {
    fn name(&self) -> &str {
        "fs_distinct_upto"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new_list(
            format!("{}_values", args.name),
            Field::new_list_field(DataType::Int64, true),
            true,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(UptoAccumulator {
            cap: self.cap,
            seen: Vec::with_capacity(self.cap),
        }))
    }
}

/// Up to `cap` distinct values.
#[derive(Debug)]
struct UptoAccumulator {
    cap: usize,
    seen: Vec<i64>,
}

impl UptoAccumulator {
    fn add(&mut self, values: &ArrayRef) {
        let values = values.as_primitive::<Int64Type>();
        for v in values.iter().flatten() {
            if self.seen.len() >= self.cap {
                return;
            }
            if !self.seen.contains(&v) {
                self.seen.push(v);
            }
        }
    }
}

impl Accumulator for UptoAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0]);
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for list in lists.iter().flatten() {
            self.add(&list);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self
            .seen
            .iter()
            .map(|v| ScalarValue::Int64(Some(*v)))
            .collect();
        Ok(vec![ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &DataType::Int64,
        ))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.seen.len() as i64)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.seen.capacity() * std::mem::size_of::<i64>()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::prelude::{SessionContext, col};

    use super::*;

    /// Distinct values are counted exactly below the cap and as the cap above it, per group
    /// and through the partial and final aggregation (two partitions).
    #[tokio::test]
    async fn counts_distinct_values_up_to_the_cap() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, false),
            Field::new("x", DataType::Int64, true),
        ]));
        let batch = |g: Vec<i64>, x: Vec<Option<i64>>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(g)) as ArrayRef,
                    Arc::new(Int64Array::from(x)),
                ],
            )
            .expect("batch")
        };
        // Group 1: values 1, 2, 2, NULL, 1 → 2. Group 2: 1..=20 → capped at 10.
        let a = batch(vec![1, 1, 1, 2], vec![Some(1), Some(2), Some(2), Some(5)]);
        let b = batch(vec![1, 1], vec![None, Some(1)]);
        let c = batch(vec![2; 20], (1..=20).map(Some).collect::<Vec<_>>());
        let ctx = SessionContext::new();
        let table = datafusion::datasource::MemTable::try_new(
            Arc::clone(&schema),
            vec![vec![a], vec![b, c]],
        )
        .expect("table");
        let df = ctx
            .read_table(Arc::new(table))
            .expect("read")
            .aggregate(vec![col("g")], vec![distinct_upto(col("x"), 10).alias("n")])
            .expect("aggregate")
            .sort(vec![col("g").sort(true, true)])
            .expect("sort");
        let out = df.collect().await.expect("collect");
        let g: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        let n: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(g, vec![1, 2]);
        assert_eq!(n, vec![2, 10]);
    }
}
