//! `fs_top_counts(x)`: the [`TOP`] largest non-NULL `Int64` values of `x` in a group, with
//! repeats, as a list in no particular order (all of them when there are fewer).
//!
//! A count of rows is a sum of per-person row counts, and one person with a hundred events
//! dominates it as one large value dominates a sum (DESIGN.md rule 4). Flattening the top
//! contributions ([`crate::output::protect_rows`]) needs only the largest few per-person
//! counts of a cell, not all of them (`array_agg` would keep every person of every cell):
//! this keeps [`TOP`] integers per group, in one flat vector for all groups.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature,
    Volatility,
};

use crate::capped::{each_listed, int64_lists, one_per_row, selected};
use crate::output::{FLATTEN_NEXT, MAX_FLATTEN_TOP};

/// Values kept per group: the most that are flattened ([`crate::output::flatten_top`]) and
/// the [`FLATTEN_NEXT`] that set their level.
pub(crate) const TOP: usize = MAX_FLATTEN_TOP + FLATTEN_NEXT;

/// `fs_top_counts(x)` called on `x`.
pub(crate) fn top_counts(x: Expr) -> Expr {
    AggregateUDF::from(TopCounts::new()).call(vec![x])
}

fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true)))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TopCounts {
    signature: Signature,
}

impl TopCounts {
    fn new() -> TopCounts {
        TopCounts {
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for TopCounts {
    fn name(&self) -> &str {
        "fs_top_counts"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(list_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new_list(
            format!("{}_top", args.name),
            Field::new_list_field(DataType::Int64, true),
            true,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(TopAccumulator(TopGroups::default())))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::<TopGroups>::default())
    }
}

/// The top values of every group: group `g`'s are `values[g * TOP..][..lens[g]]`.
#[derive(Debug, Default)]
struct TopGroups {
    lens: Vec<u8>,
    values: Vec<i64>,
}

impl TopGroups {
    fn resize(&mut self, groups: usize) {
        self.lens.resize(groups, 0);
        self.values.resize(groups * TOP, 0);
    }

    /// Adds `v` to group `g`: kept while the group has fewer than [`TOP`] values, else in
    /// place of its smallest if larger.
    #[inline]
    fn add(&mut self, g: usize, v: i64) {
        let len = usize::from(self.lens[g]);
        let slots = &mut self.values[g * TOP..g * TOP + TOP];
        if len < TOP {
            slots[len] = v;
            self.lens[g] += 1;
            return;
        }
        let (at, smallest) = slots
            .iter()
            .enumerate()
            .min_by_key(|(_, x)| **x)
            .map(|(i, x)| (i, *x))
            .unwrap_or((0, i64::MAX));
        if v > smallest {
            slots[at] = v;
        }
    }

    fn add_lists(&mut self, lists: &ArrayRef, group_indices: &[usize]) {
        each_listed(lists, group_indices, |g, v| self.add(g, v));
    }

    /// The groups `emit_to` takes as lists; the rest move to the front.
    fn emit(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let lens = emit_to.take_needed(&mut self.lens);
        let values = match emit_to {
            EmitTo::All => std::mem::take(&mut self.values),
            EmitTo::First(n) => {
                let rest = self.values.split_off(n * TOP);
                std::mem::replace(&mut self.values, rest)
            }
        };
        let flat: Vec<i64> = lens
            .iter()
            .enumerate()
            .flat_map(|(g, len)| values[g * TOP..g * TOP + usize::from(*len)].iter().copied())
            .collect();
        let lens = lens.iter().map(|l| usize::from(*l));
        Ok(Arc::new(int64_lists(lens, flat, None)?))
    }
}

impl GroupsAccumulator for TopGroups {
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
        self.add_lists(&values[0], group_indices);
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.emit(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.emit(emit_to)?])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        one_per_row(values, opt_filter, "fs_top_counts")
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.lens.capacity() + self.values.capacity() * 8
    }
}

/// One group's top values (DataFusion uses it without `GROUP BY`).
#[derive(Debug)]
struct TopAccumulator(TopGroups);

impl TopAccumulator {
    fn one(&mut self) {
        self.0.resize(1);
    }
}

impl Accumulator for TopAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let groups = vec![0; values[0].len()];
        GroupsAccumulator::update_batch(&mut self.0, values, &groups, None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.one();
        let groups = vec![0; states[0].len()];
        self.0.add_lists(&states[0], &groups);
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.one();
        let len = usize::from(self.0.lens[0]);
        let values: Vec<ScalarValue> = self.0.values[..len]
            .iter()
            .map(|v| ScalarValue::Int64(Some(*v)))
            .collect();
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &DataType::Int64,
        )))
    }

    fn size(&self) -> usize {
        self.0.size()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use super::*;

    fn sorted(list: &ArrayRef) -> Vec<Vec<i64>> {
        list.as_list::<i32>()
            .iter()
            .map(|l| {
                let mut v = l
                    .map(|l| l.as_primitive::<Int64Type>().values().to_vec())
                    .unwrap_or_default();
                v.sort_unstable_by(|a, b| b.cmp(a));
                v
            })
            .collect()
    }

    /// The largest values are kept with their repeats, filters and NULLs are skipped, and a
    /// state merged into another accumulator (also each row's own state) keeps the same.
    #[test]
    fn keeps_the_largest_values_of_each_group_with_repeats() {
        let values: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            Some(100),
            Some(3),
            None,
            Some(3),
            Some(7),
            Some(2),
            Some(3),
            Some(3),
            Some(9),
            Some(50),
        ]));
        let groups = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        // Row 9 (the 9) is filtered out.
        let mut filter = vec![true; 11];
        filter[9] = false;
        let filter = BooleanArray::from(filter);
        let mut acc = TopGroups::default();
        acc.update_batch(&[Arc::clone(&values)], &groups, Some(&filter), 3)
            .expect("update");
        let state = acc.state(EmitTo::All).expect("state");
        let mut merged = TopGroups::default();
        merged.merge_batch(&state, &[0, 1, 2], 3).expect("merge");
        merged
            .update_batch(&[Arc::new(Int64Array::from(vec![8, 1]))], &[0, 2], None, 3)
            .expect("update");
        let want = vec![vec![100, 8, 7, 3, 3, 3], vec![50], vec![1]];
        assert_eq!(
            sorted(&merged.evaluate(EmitTo::All).expect("evaluate")),
            want
        );

        let rows = TopGroups::default()
            .convert_to_state(&[Arc::clone(&values)], Some(&filter))
            .expect("convert");
        let mut from_rows = TopGroups::default();
        from_rows.merge_batch(&rows, &groups, 2).expect("merge");
        assert_eq!(
            sorted(&from_rows.evaluate(EmitTo::First(1)).expect("first")),
            vec![vec![100, 7, 3, 3, 3, 3]]
        );
        assert_eq!(
            sorted(&from_rows.evaluate(EmitTo::All).expect("rest")),
            vec![vec![50]]
        );

        let mut one = TopAccumulator(TopGroups::default());
        one.update_batch(&[Arc::clone(&values)]).expect("update");
        let ScalarValue::List(list) = one.evaluate().expect("evaluate") else {
            panic!("a list");
        };
        let list: ArrayRef = list;
        assert_eq!(sorted(&list), vec![vec![100, 50, 9, 7, 3, 3]]);

        // Without GROUP BY: nothing gives an empty list, and a state merged before any
        // update is kept.
        let mut fresh = TopAccumulator(TopGroups::default());
        let ScalarValue::List(empty) = fresh.evaluate().expect("evaluate") else {
            panic!("a list");
        };
        assert_eq!(empty.value(0).len(), 0);
        fresh.merge_batch(&[list]).expect("merge");
        fresh
            .update_batch(&[Arc::new(Int64Array::from(vec![60, 1]))])
            .expect("update");
        let ScalarValue::List(merged) = fresh.evaluate().expect("evaluate") else {
            panic!("a list");
        };
        let merged: ArrayRef = merged;
        assert_eq!(sorted(&merged), vec![vec![100, 60, 50, 9, 7, 3]]);
    }
}
