//! Every person's record key (DESIGN.md rule 4), read once per project view.
//!
//! A released cell's key is the sum of its persons' record keys. The rewrite used to join
//! each cell's persons to the `person_keys` table in every query, which hashed all of it
//! (1M rows at 1M patients) each time: a fifth of a simple protected query's time. The keys
//! are now read once into memory when a project view opens, and the rewrite looks each
//! person up with [`PersonKeys::udf`], a scalar function over the privacy unit.
//!
//! The keys never leave the plan: the function's only caller is the rewrite, which sums its
//! values into cell keys, and the function is not registered in any session, so analyst SQL
//! cannot call it.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Int64Type, UInt8Type};
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{
    ColumnarValue, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, col,
};
use datafusion::prelude::SessionContext;
use fivesafes_engine::catalog::{PRIVACY_UNIT, RECORD_KEY};

/// Persons' record keys by privacy unit.
pub struct PersonKeys(foldhash::HashMap<i64, u8>);

impl PersonKeys {
    /// Reads `person_keys(patient_id, record_key)` through `ctx`.
    pub async fn load(
        ctx: &SessionContext,
        table: Arc<dyn TableProvider>,
    ) -> Result<Arc<PersonKeys>> {
        let plan = LogicalPlanBuilder::scan("person_keys", provider_as_source(table), None)?
            .project(vec![col(PRIVACY_UNIT), col(RECORD_KEY)])?
            .build()?;
        let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        let mut map = foldhash::HashMap::with_capacity_and_hasher(rows, Default::default());
        for b in &batches {
            let (Some(ids), Some(keys)) = (
                b.column(0).as_primitive_opt::<Int64Type>(),
                b.column(1).as_primitive_opt::<UInt8Type>(),
            ) else {
                return Err(DataFusionError::Internal(
                    "person_keys: expected (Int64, UInt8) columns".into(),
                ));
            };
            for i in 0..b.num_rows() {
                if ids.is_valid(i) && keys.is_valid(i) {
                    map.insert(ids.value(i), keys.value(i));
                }
            }
        }
        Ok(Arc::new(PersonKeys(map)))
    }

    /// `fs_person_key(unit Int64) -> Int64`: the person's record key, NULL for a NULL unit
    /// or a person without a key (whom the rewrite leaves out of every cell, as the join
    /// to `person_keys` did).
    pub(crate) fn udf(self: &Arc<Self>) -> ScalarUDF {
        ScalarUDF::new_from_impl(KeyUdf {
            keys: Arc::clone(self),
            // Volatile only so that the optimizer never moves `fs_person_key(…) IS NOT NULL`
            // from the per-person rows down into the scans: there it would look each row up,
            // and its guessed selectivity would shrink the join estimates until a join of
            // millions of rows was planned with them as its in-memory side.
            signature: Signature::exact(vec![DataType::Int64], Volatility::Volatile),
        })
    }
}

impl fmt::Debug for PersonKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No count and no keys: neither belongs in a log.
        f.write_str("PersonKeys")
    }
}

/// The scalar function of [`PersonKeys::udf`].
#[derive(Debug)]
struct KeyUdf {
    keys: Arc<PersonKeys>,
    signature: Signature,
}

impl PartialEq for KeyUdf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.keys, &other.keys)
    }
}

impl Eq for KeyUdf {}

impl Hash for KeyUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.keys).hash(state);
    }
}

impl ScalarUDFImpl for KeyUdf {
    fn name(&self) -> &str {
        "fs_person_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let units = args.args[0].to_array(args.number_rows)?;
        let units = units.as_primitive_opt::<Int64Type>().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "fs_person_key: expected Int64, got {}",
                units.data_type()
            ))
        })?;
        let keys: Int64Array = units
            .iter()
            .map(|u| u.and_then(|u| self.keys.0.get(&u)).map(|k| i64::from(*k)))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(keys)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt8Array};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::logical_expr::lit;

    async fn keys() -> (SessionContext, Arc<PersonKeys>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new(PRIVACY_UNIT, DataType::Int64, false),
            Field::new(RECORD_KEY, DataType::UInt8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![10, 20, 30])) as ArrayRef,
                Arc::new(UInt8Array::from(vec![7, 255, 0])) as ArrayRef,
            ],
        )
        .expect("batch");
        let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
        let ctx = SessionContext::new();
        let keys = PersonKeys::load(&ctx, Arc::new(table)).await.expect("load");
        (ctx, keys)
    }

    #[tokio::test]
    async fn each_unit_gets_its_own_key_and_unknown_units_get_null() {
        let (ctx, keys) = keys().await;
        let units = Int64Array::from(vec![Some(20), None, Some(99), Some(10), Some(30)]);
        let schema = Arc::new(Schema::new(vec![Field::new("u", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(units) as ArrayRef])
            .expect("batch");
        let df = ctx
            .read_batch(batch)
            .expect("read")
            .select(vec![
                keys.udf().call(vec![col("u")]).alias("k"),
                lit(1).alias("one"),
            ])
            .expect("select");
        let out = df.collect().await.expect("collect");
        let got: Vec<Option<i64>> = out[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .iter()
            .collect();
        assert_eq!(got, vec![Some(255), None, None, Some(7), Some(0)]);
    }

    #[test]
    fn debug_shows_no_keys() {
        let keys = PersonKeys(foldhash::HashMap::from_iter([(1, 2)]));
        assert_eq!(format!("{keys:?}"), "PersonKeys");
    }
}
