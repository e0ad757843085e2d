//! `fs_nullable(x)`: `x` itself, declared nullable in the logical and the physical plan alike.
//!
//! DataFusion 55 plans `x IS TRUE` (and the other boolean tests) as `x IS NOT DISTINCT FROM
//! true`, a physical expression that is nullable wherever `x` is, while the logical schema
//! calls `x IS TRUE` non-nullable. An aggregation whose input carries such a column (directly,
//! or through any number of column references) then fails DataFusion's physical schema check
//! ("Physical input schema should be the same as the one converted from logical input
//! schema"). Output control groups rows by the analyst's grouping keys in places of its own
//! (rule 7's key anchors, `LowEffect::anchors_by_value`), and a key may be any boolean test.
//! Reading the key through this function makes its field nullable on both sides, which the
//! check accepts, and leaves every value as it was. The optimizer does not see through it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// `e`, read through `fs_nullable`.
pub(crate) fn nullable(e: Expr) -> Expr {
    ScalarUDF::new_from_impl(Nullable::new()).call(vec![e])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Nullable {
    signature: Signature,
}

impl Nullable {
    fn new() -> Self {
        Nullable {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Nullable {
    fn name(&self) -> &str {
        "fs_nullable"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            self.name(),
            args.arg_fields[0].data_type().clone(),
            true,
        )))
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(args.args.swap_remove(0))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, BooleanArray, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{Int64Type, Schema};
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::prelude::{SessionContext, col, lit};

    use super::*;

    /// An aggregation grouped by `x IS TRUE` over a nullable `x` fails DataFusion's physical
    /// schema check; read through `fs_nullable`, it runs and gives the same groups.
    #[tokio::test]
    async fn an_is_true_column_can_be_grouped_on_through_it() {
        let schema = Arc::new(Schema::new(vec![Field::new("b", DataType::Boolean, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
                Some(true),
            ]))],
        )
        .expect("batch");
        let ctx = SessionContext::new();
        let tested = ctx
            .read_batch(batch)
            .expect("read")
            .select(vec![Expr::IsTrue(Box::new(col("b"))).alias("t")])
            .expect("select");
        let plain = tested
            .clone()
            .aggregate(vec![col("t")], vec![count(lit(1)).alias("n")])
            .expect("aggregate")
            .collect()
            .await;
        assert!(
            plain.is_err_and(|e| e.to_string().contains("Physical input schema")),
            "DataFusion still rejects the plain form; if it no longer does, fs_nullable can go"
        );
        let through = tested
            .select(vec![nullable(col("t")).alias("t")])
            .expect("select")
            .aggregate(vec![col("t")], vec![count(lit(1)).alias("n")])
            .expect("aggregate")
            .sort(vec![col("t").sort(true, false)])
            .expect("sort")
            .collect()
            .await
            .expect("runs");
        let b = &through[0];
        let t: Vec<Option<bool>> = b.column(0).as_boolean().iter().collect();
        let n: &Int64Array = b.column(1).as_primitive::<Int64Type>();
        assert_eq!(t, vec![Some(false), Some(true)]);
        assert_eq!(n.values().to_vec(), vec![2, 2]);
    }
}
