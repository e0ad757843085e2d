//! Date formatting computed once per distinct date of a batch.
//!
//! Output control reads every row of a cell's input, including the rows its filters would
//! have pruned (DESIGN.md rule 7 measures them), so a grouping key such as
//! `to_char(event_date, '%Y-%m')` is computed over all ten years of events, three times.
//! `to_char` formats each value on its own (about 150 ns a row, most of a protected query's
//! time in the benchmark's profile), while a batch of events holds a few hundred distinct
//! dates. [`per_distinct_date`] wraps such a call so that it formats each distinct date of a
//! batch once, through the same function, and spreads the results over the rows: the same
//! values, types and names as the call it replaces.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Date32Array, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Date32Type, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, HashMap, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};

/// Functions whose value depends on a date only through the date itself, formatted per
/// distinct date when their first argument is a `Date32` and the others are literals
/// (`date_format` is planned as `to_char`).
const PER_DATE: &[&str] = &["to_char"];

/// `e` (over `schema`) with every call of a [`PER_DATE`] function on a `Date32` column
/// expression and literal arguments computed once per distinct date of each batch.
pub(crate) fn per_distinct_date(e: Expr, schema: &DFSchema) -> Result<Expr> {
    e.transform_up(|e| {
        let Expr::ScalarFunction(f) = &e else {
            return Ok(Transformed::no(e));
        };
        let wrap = PER_DATE.contains(&f.func.name())
            && !f.args.is_empty()
            && f.args[1..].iter().all(|a| matches!(a, Expr::Literal(..)))
            && f.args[0].get_type(schema)? == DataType::Date32;
        if !wrap {
            return Ok(Transformed::no(e));
        }
        let udf = ScalarUDF::new_from_impl(PerDate {
            inner: Arc::clone(&f.func),
        });
        Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::new(udf), f.args.clone()),
        )))
    })
    .map(|t| t.data)
}

/// A function of a date (and literals), evaluated once per distinct date of a batch.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PerDate {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for PerDate {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ColumnarValue::Array(dates) = &args.args[0] else {
            return self.inner.invoke_with_args(args);
        };
        let Some(dates) = dates.as_primitive_opt::<Date32Type>() else {
            return self.inner.invoke_with_args(args);
        };
        // The distinct dates in order of appearance, and each row's index into them.
        let mut index: HashMap<i32, u32> = HashMap::new();
        let mut distinct: Vec<i32> = Vec::new();
        let rows: UInt32Array = dates
            .iter()
            .map(|d| {
                d.map(|d| {
                    *index.entry(d).or_insert_with(|| {
                        distinct.push(d);
                        (distinct.len() - 1) as u32
                    })
                })
            })
            .collect();
        if distinct.len() * 2 > dates.len() {
            // Mostly distinct: nothing to save.
            return self.inner.invoke_with_args(args);
        }
        let number_rows = distinct.len();
        let mut once = args.args.clone();
        once[0] = ColumnarValue::Array(Arc::new(Date32Array::from(distinct)));
        let formatted = self
            .inner
            .invoke_with_args(ScalarFunctionArgs {
                args: once,
                number_rows,
                ..args
            })?
            .into_array(number_rows)?;
        Ok(ColumnarValue::Array(take(formatted.as_ref(), &rows, None)?))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::functions::expr_fn::to_char;
    use datafusion::prelude::{SessionContext, col, lit};

    use super::*;

    /// The wrapped call gives exactly the values of `to_char` itself, NULLs included, for
    /// batches with few and with mostly distinct dates.
    #[tokio::test]
    async fn same_values_as_the_function_it_wraps() {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        let few: Vec<Option<i32>> = (0..500)
            .map(|i| {
                if i % 7 == 3 {
                    None
                } else {
                    Some(19_000 + i % 40)
                }
            })
            .collect();
        let distinct: Vec<Option<i32>> = (0..50).map(|i| Some(18_000 + i * 31)).collect();
        let ctx = SessionContext::new();
        for dates in [few, distinct] {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Date32Array::from(dates)) as ArrayRef],
            )
            .expect("batch");
            let df = ctx.read_batch(batch).expect("read");
            let plain = to_char(col("d"), lit("%Y-%m"));
            let dfschema = df.schema().clone();
            let wrapped = per_distinct_date(plain.clone(), &dfschema).expect("wrap");
            assert_ne!(plain, wrapped, "the call is wrapped");
            let out = df
                .select(vec![plain.alias("plain"), wrapped.alias("wrapped")])
                .expect("select")
                .collect()
                .await
                .expect("collect");
            for b in out {
                let a: &StringArray = b.column(0).as_string();
                let w: &StringArray = b.column(1).as_string();
                assert_eq!(a, w);
                assert!(a.null_count() > 0 || b.num_rows() == 50);
            }
        }
    }
}
