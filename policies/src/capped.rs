//! `fs_distinct_upto(x)`: the number of distinct non-NULL `Int64` values of `x`, counted up to
//! a cap (`min(distinct, cap)`); `fs_ids_upto(x)`: those values themselves, as a list, when
//! there are at most `cap` of them (NULL when there are more).
//!
//! Low-effect detection ([`crate::low_effect`]) only needs to know, per cell and condition
//! mask, whether fewer persons than the threshold are behind it, and how many when they are.
//! `COUNT(DISTINCT patient_id)` keeps every person of every group in its state (and ships
//! them between the partial and final aggregation); this keeps at most `cap` of them, so the
//! state of a group is a few integers whatever its size. Exact below the cap.
//!
//! With `GROUP BY` it runs as a [`GroupsAccumulator`]: the values of every group sit in one
//! flat vector (`cap` slots per group), so a row costs an index and a scan of at most `cap`
//! integers, with no per-group allocation (DataFusion's adapter for per-group
//! [`Accumulator`]s slices and dispatches per group and batch).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature,
    Volatility,
};

/// `fs_distinct_upto(x)` with the cap `cap`, called on `x`.
pub(crate) fn distinct_upto(x: Expr, cap: i64) -> Expr {
    AggregateUDF::from(DistinctUpto::new(cap, Output::Count)).call(vec![x])
}

/// `fs_ids_upto(x)` with the cap `cap`, called on `x`: the distinct non-NULL values of `x`
/// (in no particular order) when there are at most `cap` of them, else NULL.
pub(crate) fn ids_upto(x: Expr, cap: i64) -> Expr {
    AggregateUDF::from(DistinctUpto::new(cap, Output::Values)).call(vec![x])
}

/// The type of [`ids_upto`]'s lists.
pub(crate) fn ids_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true)))
}

/// What the aggregate gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    /// How many distinct values, up to the cap.
    Count,
    /// The distinct values when at most the cap, else NULL (one more value is kept, to
    /// know that there are more).
    Values,
}

/// The aggregate function; its cap and output are part of its identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DistinctUpto {
    /// Values kept per group (for [`Output::Values`], one more than the cap).
    cap: usize,
    output: Output,
    signature: Signature,
}

impl DistinctUpto {
    fn new(cap: i64, output: Output) -> DistinctUpto {
        let cap = usize::try_from(cap.max(1)).unwrap_or(1);
        DistinctUpto {
            cap: if output == Output::Values {
                cap + 1
            } else {
                cap
            },
            output,
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for DistinctUpto {
    fn name(&self) -> &str {
        match self.output {
            Output::Count => "fs_distinct_upto",
            Output::Values => "fs_ids_upto",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            Output::Count => DataType::Int64,
            Output::Values => ids_type(),
        })
    }

    fn is_nullable(&self) -> bool {
        self.output == Output::Values
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
            output: self.output,
            seen: Vec::with_capacity(self.cap),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(UptoGroups::new(self.cap, self.output)))
    }
}

/// Up to `cap` distinct values per group, for every group: group `g`'s values are
/// `values[g * cap..][..lens[g]]`.
#[derive(Debug)]
struct UptoGroups {
    cap: usize,
    output: Output,
    lens: Vec<u32>,
    values: Vec<i64>,
}

impl UptoGroups {
    fn new(cap: usize, output: Output) -> UptoGroups {
        UptoGroups {
            cap,
            output,
            lens: Vec::new(),
            values: Vec::new(),
        }
    }

    fn resize(&mut self, groups: usize) {
        self.lens.resize(groups, 0);
        self.values.resize(groups * self.cap, 0);
    }

    /// Adds `v` to group `g`'s values unless it is there or the group is full.
    #[inline]
    fn add(&mut self, g: usize, v: i64) {
        let len = self.lens[g] as usize;
        if len >= self.cap {
            return;
        }
        let start = g * self.cap;
        if !self.values[start..start + len].contains(&v) {
            self.values[start + len] = v;
            self.lens[g] += 1;
        }
    }

    /// The lengths and values of the groups `emit_to` takes; the rest move to the front.
    fn take(&mut self, emit_to: EmitTo) -> (Vec<u32>, Vec<i64>) {
        let lens = emit_to.take_needed(&mut self.lens);
        let values = match emit_to {
            EmitTo::All => std::mem::take(&mut self.values),
            EmitTo::First(n) => {
                let rest = self.values.split_off(n * self.cap);
                std::mem::replace(&mut self.values, rest)
            }
        };
        (lens, values)
    }
}

/// Whether row `i` is counted: its filter (if any) is true.
#[inline]
pub(crate) fn selected(filter: Option<&BooleanArray>, i: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(i) && f.value(i))
}

impl GroupsAccumulator for UptoGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let values = values[0].as_primitive::<Int64Type>();
        for (i, g) in group_indices.iter().enumerate() {
            if values.is_valid(i) && selected(opt_filter, i) {
                self.add(*g, values.value(i));
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        each_listed(&values[0], group_indices, |g, v| self.add(g, v));
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (lens, values) = self.take(emit_to);
        match self.output {
            Output::Count => Ok(Arc::new(Int64Array::from_iter_values(
                lens.into_iter().map(i64::from),
            ))),
            Output::Values => Ok(Arc::new(values_or_null(&lens, &values, self.cap)?)),
        }
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (lens, values) = self.take(emit_to);
        let cap = self.cap;
        let flat: Vec<i64> = lens
            .iter()
            .enumerate()
            .flat_map(|(g, len)| values[g * cap..g * cap + *len as usize].iter().copied())
            .collect();
        let lens = lens.iter().map(|l| *l as usize);
        Ok(vec![Arc::new(int64_lists(lens, flat, None)?)])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row as its own group: a list of its value, or an empty list.
        one_per_row(values, opt_filter, "fs_distinct_upto")
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.lens.capacity() * std::mem::size_of::<u32>()
            + self.values.capacity() * std::mem::size_of::<i64>()
    }
}

/// The groups' values as lists (group `g`'s are `values[g * cap..][..lens[g]]`), NULL for
/// a full group: [`Output::Values`] keeps one value more than its cap.
fn values_or_null(lens: &[u32], values: &[i64], cap: usize) -> Result<ListArray> {
    let full = |len: u32| len as usize >= cap;
    let flat: Vec<i64> = lens
        .iter()
        .enumerate()
        .filter(|(_, len)| !full(**len))
        .flat_map(|(g, len)| values[g * cap..g * cap + *len as usize].iter().copied())
        .collect();
    let nulls = NullBuffer::from(lens.iter().map(|l| !full(*l)).collect::<Vec<_>>());
    let lens = lens.iter().map(|l| if full(*l) { 0 } else { *l as usize });
    int64_lists(lens, flat, Some(nulls))
}

/// Up to `cap` distinct values.
#[derive(Debug)]
struct UptoAccumulator {
    cap: usize,
    output: Output,
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
        match self.output {
            Output::Count => Ok(ScalarValue::Int64(Some(self.seen.len() as i64))),
            Output::Values => {
                let lens = [self.seen.len() as u32];
                let list = values_or_null(&lens, &self.seen, self.cap)?;
                Ok(ScalarValue::List(Arc::new(list)))
            }
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.seen.capacity() * std::mem::size_of::<i64>()
    }
}

/// Calls `add(group, value)` for every non-NULL item of every non-NULL list of `lists` (an
/// `Int64` list state), whose row `i` belongs to group `group_indices[i]`.
pub(crate) fn each_listed(
    lists: &ArrayRef,
    group_indices: &[usize],
    mut add: impl FnMut(usize, i64),
) {
    let lists = lists.as_list::<i32>();
    let items = lists.values().as_primitive::<Int64Type>();
    let offsets = lists.value_offsets();
    for (i, g) in group_indices.iter().enumerate() {
        if lists.is_null(i) {
            continue;
        }
        for j in offsets[i] as usize..offsets[i + 1] as usize {
            if items.is_valid(j) {
                add(*g, items.value(j));
            }
        }
    }
}

/// `Int64` lists of lengths `lens` over the items `flat`, NULL where `nulls` says.
pub(crate) fn int64_lists(
    lens: impl Iterator<Item = usize>,
    flat: Vec<i64>,
    nulls: Option<NullBuffer>,
) -> Result<ListArray> {
    Ok(ListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Int64, true)),
        OffsetBuffer::from_lengths(lens),
        Arc::new(Int64Array::from(flat)),
        nulls,
    )?)
}

/// Each row's state for `convert_to_state`: a list of its value where it is non-NULL and
/// selected by the filter, else an empty list.
pub(crate) fn one_per_row(
    values: &[ArrayRef],
    opt_filter: Option<&BooleanArray>,
    name: &str,
) -> Result<Vec<ArrayRef>> {
    let Some(values) = values[0].as_primitive_opt::<Int64Type>() else {
        return internal_err!("{name} expects Int64 values");
    };
    let keep = |i: usize| values.is_valid(i) && selected(opt_filter, i);
    let flat: Vec<i64> = (0..values.len())
        .filter(|i| keep(*i))
        .map(|i| values.value(i))
        .collect();
    let lens = (0..values.len()).map(|i| usize::from(keep(i)));
    Ok(vec![Arc::new(int64_lists(lens, flat, None)?)])
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::logical_expr::ExprFunctionExt;
    use datafusion::prelude::{SessionContext, col};

    use super::*;

    /// A batch's `(g, x)` columns.
    type Columns = (Vec<i64>, Vec<Option<i64>>);

    /// A table `(g, x)` of two partitions, each a list of batches.
    fn table(partitions: [Vec<Columns>; 2]) -> Arc<datafusion::datasource::MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, false),
            Field::new("x", DataType::Int64, true),
        ]));
        let batch = |(g, x): Columns| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(g)) as ArrayRef,
                    Arc::new(Int64Array::from(x)),
                ],
            )
            .expect("batch")
        };
        let partitions = partitions
            .into_iter()
            .map(|p| p.into_iter().map(batch).collect())
            .collect();
        Arc::new(
            datafusion::datasource::MemTable::try_new(Arc::clone(&schema), partitions)
                .expect("table"),
        )
    }

    /// Distinct values are counted exactly below the cap and as the cap above it, per group
    /// and through the partial and final aggregation (two partitions).
    #[tokio::test]
    async fn counts_distinct_values_up_to_the_cap() {
        // Group 1: values 1, 2, 2, NULL, 1 → 2. Group 2: 1..=20 → capped at 10.
        let table = table([
            vec![(vec![1, 1, 1, 2], vec![Some(1), Some(2), Some(2), Some(5)])],
            vec![
                (vec![1, 1], vec![None, Some(1)]),
                (vec![2; 20], (1..=20).map(Some).collect::<Vec<_>>()),
            ],
        ]);
        let df = SessionContext::new()
            .read_table(table)
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

    /// `fs_ids_upto` gives a group's distinct values while there are at most the cap of
    /// them, and NULL once there are more, through the partial and final aggregation, and
    /// with a filter.
    #[tokio::test]
    async fn lists_distinct_values_up_to_the_cap() {
        // Group 1: 3, 1, 3, NULL, 2 → [1, 2, 3]. Group 2: 1..=4 → over the cap of 3.
        // Group 3: 7, and 8 filtered out (x > 7) → [7].
        let table = table([
            vec![(vec![1, 1, 2, 2], vec![Some(3), Some(1), Some(1), Some(2)])],
            vec![(
                vec![1, 1, 1, 2, 2, 3, 3],
                vec![Some(3), None, Some(2), Some(3), Some(4), Some(7), Some(8)],
            )],
        ]);
        let ids = ids_upto(col("x"), 3)
            .filter(col("x").lt_eq(datafusion::prelude::lit(7i64)))
            .build()
            .expect("filter");
        let out = SessionContext::new()
            .read_table(table)
            .expect("read")
            .aggregate(vec![col("g")], vec![ids.alias("ids")])
            .expect("aggregate")
            .sort(vec![col("g").sort(true, true)])
            .expect("sort")
            .collect()
            .await
            .expect("collect");
        let mut lists: Vec<Option<Vec<i64>>> = Vec::new();
        for b in &out {
            for list in b.column(1).as_list::<i32>().iter() {
                lists.push(list.map(|l| {
                    let mut v = l.as_primitive::<Int64Type>().values().to_vec();
                    v.sort_unstable();
                    v
                }));
            }
        }
        assert_eq!(lists, vec![Some(vec![1, 2, 3]), None, Some(vec![7])]);
    }

    fn counts(acc: &mut UptoGroups, emit: EmitTo) -> Vec<i64> {
        let out = acc.evaluate(emit).expect("evaluate");
        out.as_primitive::<Int64Type>().values().to_vec()
    }

    /// The per-group accumulator: filters and NULLs are not counted, values are distinct
    /// and capped per group, `EmitTo::First` emits the first groups and keeps the rest, and
    /// a state (and each row's state from `convert_to_state`) merged into another
    /// accumulator counts the same values.
    #[test]
    fn groups_accumulator_counts_per_group_and_merges() {
        let values: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            Some(1),
            Some(2),
            None,
            Some(3),
            Some(4),
            Some(5),
            Some(6),
            Some(7),
        ]));
        let groups = [0, 0, 0, 0, 1, 2, 2, 2, 2];
        // Row 2 (group 0's value 2) is filtered out.
        let filter =
            BooleanArray::from(vec![true, true, false, true, true, true, true, true, true]);
        let mut acc = UptoGroups::new(3, Output::Count);
        acc.update_batch(&[Arc::clone(&values)], &groups, Some(&filter), 4)
            .expect("update");
        // Group 0: {1}; group 1: {3}; group 2: {4, 5, 6, 7} capped at 3; group 3: none.
        let state = acc.state(EmitTo::All).expect("state");
        let mut merged = UptoGroups::new(3, Output::Count);
        merged.merge_batch(&state, &[0, 1, 2, 3], 4).expect("merge");
        // The same values again change nothing; a new value for group 0 counts.
        merged
            .update_batch(&[Arc::new(Int64Array::from(vec![1, 9]))], &[0, 0], None, 4)
            .expect("update");
        assert_eq!(counts(&mut merged, EmitTo::First(2)), vec![2, 1]);
        assert_eq!(counts(&mut merged, EmitTo::All), vec![3, 0]);

        // Each row as its own state, merged per group, is the same as the rows themselves.
        let rows = UptoGroups::new(3, Output::Count)
            .convert_to_state(&[Arc::clone(&values)], Some(&filter))
            .expect("convert");
        let mut from_rows = UptoGroups::new(3, Output::Count);
        from_rows.merge_batch(&rows, &groups, 4).expect("merge");
        assert_eq!(counts(&mut from_rows, EmitTo::All), vec![1, 1, 3, 0]);
    }
}
