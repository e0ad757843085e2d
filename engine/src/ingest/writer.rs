//! Building Arrow batches row by row and writing them as sorted, compressed Parquet into a
//! staging version.

use arrow::array::{
    ArrayBuilder, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float64Builder, Int16Builder,
    Int64Builder, RecordBatch, StringBuilder, UInt8Builder, UInt32Array,
};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::datatypes::{Date32Type, Int16Type, Int64Type};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::Result;
use crate::catalog::TableDef;
use crate::store::{FileEntry, Staging};

/// Rows per Parquet row group: small enough that min/max statistics prune well on the sort
/// key, large enough for efficient scans.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Rows per in-memory batch while reading.
pub const BATCH_ROWS: usize = 64 * 1024;

/// Parquet writer settings of the store (also used by the plain-conversion benchmark, so that
/// the two are compared on equal terms).
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("level 1 is valid"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("fivesafes {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One typed column builder.
enum Col {
    I64(Int64Builder),
    I16(Int16Builder),
    U8(UInt8Builder),
    F64(Float64Builder),
    Date(Date32Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
}

/// Accumulates rows of one table into batches of [`BATCH_ROWS`].
pub struct Rows {
    /// Schema of the table.
    schema: SchemaRef,
    /// One builder per column.
    cols: Vec<Col>,
    /// Finished batches.
    batches: Vec<RecordBatch>,
    /// Rows in the current builders.
    pending: usize,
}

macro_rules! push_fn {
    ($name:ident, $opt:ident, $variant:ident, $t:ty) => {
        /// Appends a value to column `i`.
        #[inline]
        pub fn $name(&mut self, i: usize, v: $t) {
            match &mut self.cols[i] {
                Col::$variant(b) => b.append_value(v),
                _ => panic!("column {i} has another type"),
            }
        }
        /// Appends an optional value to column `i`.
        #[inline]
        pub fn $opt(&mut self, i: usize, v: Option<$t>) {
            match &mut self.cols[i] {
                Col::$variant(b) => b.append_option(v),
                _ => panic!("column {i} has another type"),
            }
        }
    };
}

impl Rows {
    /// Empty rows for a table.
    pub fn new(def: &TableDef) -> Rows {
        let schema = def.schema();
        let cols = make_cols(&schema);
        Rows {
            schema,
            cols,
            batches: Vec::new(),
            pending: 0,
        }
    }

    push_fn!(i64, opt_i64, I64, i64);
    push_fn!(i16, opt_i16, I16, i16);
    push_fn!(u8, opt_u8, U8, u8);
    push_fn!(f64, opt_f64, F64, f64);
    push_fn!(date, opt_date, Date, i32);
    push_fn!(boolean, opt_boolean, Bool, bool);

    /// Appends a UTF-8 value (validated ASCII or checked UTF-8) to column `i`.
    #[inline]
    pub fn str(&mut self, i: usize, v: &str) {
        match &mut self.cols[i] {
            Col::Str(b) => b.append_value(v),
            _ => panic!("column {i} has another type"),
        }
    }

    /// Appends an optional UTF-8 value to column `i`.
    #[inline]
    pub fn opt_str(&mut self, i: usize, v: Option<&str>) {
        match &mut self.cols[i] {
            Col::Str(b) => b.append_option(v),
            _ => panic!("column {i} has another type"),
        }
    }

    /// Marks the end of a row; every column must have had exactly one value appended.
    #[inline]
    pub fn end_row(&mut self) -> Result<()> {
        self.pending += 1;
        if self.pending == BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| match c {
                Col::I64(b) => b.finish_arc(),
                Col::I16(b) => b.finish_arc(),
                Col::U8(b) => b.finish_arc(),
                Col::F64(b) => b.finish_arc(),
                Col::Date(b) => b.finish_arc(),
                Col::Str(b) => b.finish_arc(),
                Col::Bool(b) => b.finish_arc(),
            })
            .collect();
        self.batches
            .push(RecordBatch::try_new(self.schema.clone(), arrays)?);
        self.pending = 0;
        Ok(())
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>()
            + self.pending
    }

    /// Whether no rows were appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All rows as batches.
    pub fn finish(mut self) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.flush()?;
        Ok((self.schema, self.batches))
    }
}

trait FinishArc {
    fn finish_arc(&mut self) -> ArrayRef;
}

impl<T: ArrayBuilder> FinishArc for T {
    fn finish_arc(&mut self) -> ArrayRef {
        ArrayBuilder::finish(self)
    }
}

fn make_cols(schema: &SchemaRef) -> Vec<Col> {
    let cap = BATCH_ROWS;
    schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int64 => Col::I64(Int64Builder::with_capacity(cap)),
            DataType::Int16 => Col::I16(Int16Builder::with_capacity(cap)),
            DataType::UInt8 => Col::U8(UInt8Builder::with_capacity(cap)),
            DataType::Float64 => Col::F64(Float64Builder::with_capacity(cap)),
            DataType::Date32 => Col::Date(Date32Builder::with_capacity(cap)),
            DataType::Utf8 => Col::Str(StringBuilder::with_capacity(cap, cap * 8)),
            DataType::Boolean => Col::Bool(BooleanBuilder::with_capacity(cap)),
            other => unreachable!("catalogue uses no {other} columns"),
        })
        .collect()
}

/// Sorts a table's rows by its sort key and writes them as one Parquet file into staging.
pub fn write_table(
    staging: &Staging,
    def: &TableDef,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<FileEntry> {
    let started = std::time::Instant::now();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let sorted = if rows == 0 || def.sort_by.is_empty() {
        batches
    } else {
        let all = concat_batches(&schema, &batches)?;
        drop(batches);
        let columns = def
            .sort_by
            .iter()
            .map(|name| Ok(all.column(schema.index_of(name)?).clone()))
            .collect::<Result<Vec<_>>>()?;
        let idx = match packed_sort_indices(&columns) {
            Some(idx) => idx,
            None => {
                let keys: Vec<SortColumn> = columns
                    .into_iter()
                    .map(|values| SortColumn {
                        values,
                        options: None,
                    })
                    .collect();
                lexsort_to_indices(&keys, None)?
            }
        };
        let sorted = take_record_batch(&all, &idx)?;
        drop(all);
        (0..rows)
            .step_by(BATCH_ROWS)
            .map(|off| sorted.slice(off, BATCH_ROWS.min(rows - off)))
            .collect()
    };
    let sort_ms = started.elapsed().as_millis() as u64;
    let (rel, file) = staging.create_table_file(def.name, 0)?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(writer_properties()))?;
    for b in &sorted {
        writer.write(b)?;
    }
    let file = writer.into_inner()?;
    let (bytes, sha256) = file.finish()?;
    tracing::info!(
        table = def.name,
        rows,
        bytes,
        sort_ms,
        write_ms = started.elapsed().as_millis() as u64 - sort_ms,
        "table written"
    );
    Ok(FileEntry {
        path: rel,
        rows: rows as u64,
        bytes,
        sha256,
    })
}

/// Dense ranks of a column's values (0 = null, then 1.. in ascending order) and the largest
/// rank. Strings are ranked through their distinct values, so sorting never compares strings
/// row by row; `None` for types not used in sort keys.
fn ranks(a: &ArrayRef) -> Option<(Vec<u32>, u32)> {
    match a.data_type() {
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            let mut ids: foldhash::HashMap<&str, u32> = foldhash::HashMap::default();
            let mut distinct: Vec<&str> = Vec::new();
            let row_ids: Vec<u32> = s
                .iter()
                .map(|v| match v {
                    None => u32::MAX,
                    Some(v) => *ids.entry(v).or_insert_with(|| {
                        distinct.push(v);
                        distinct.len() as u32 - 1
                    }),
                })
                .collect();
            let mut order: Vec<u32> = (0..distinct.len() as u32).collect();
            order.sort_unstable_by_key(|&i| distinct[i as usize]);
            let mut rank_of = vec![0u32; distinct.len()];
            for (rank, &id) in order.iter().enumerate() {
                rank_of[id as usize] = rank as u32 + 1;
            }
            let ranks = row_ids
                .into_iter()
                .map(|id| {
                    if id == u32::MAX {
                        0
                    } else {
                        rank_of[id as usize]
                    }
                })
                .collect();
            Some((ranks, distinct.len() as u32))
        }
        DataType::Date32 => int_ranks(
            a.as_primitive::<Date32Type>()
                .iter()
                .map(|v| v.map(i64::from)),
        ),
        DataType::Int16 => int_ranks(
            a.as_primitive::<Int16Type>()
                .iter()
                .map(|v| v.map(i64::from)),
        ),
        DataType::Int64 => int_ranks(a.as_primitive::<Int64Type>().iter()),
        _ => None,
    }
}

/// Dense ranks of integers: offsets from the minimum when the range is small, else ranks
/// among the sorted distinct values.
fn int_ranks(values: impl Iterator<Item = Option<i64>> + Clone) -> Option<(Vec<u32>, u32)> {
    let (min, max) = values
        .clone()
        .flatten()
        .fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if min > max {
        // All null.
        let n = values.count();
        return Some((vec![0; n], 0));
    }
    if let Some(span) = max.checked_sub(min).filter(|&s| s < (1 << 24)) {
        let ranks = values
            .map(|v| v.map_or(0, |v| (v - min) as u32 + 1))
            .collect();
        return Some((ranks, span as u32 + 1));
    }
    let mut distinct: Vec<i64> = values.clone().flatten().collect();
    distinct.sort_unstable();
    distinct.dedup();
    let ranks = values
        .map(|v| v.map_or(0, |v| distinct.partition_point(|&d| d < v) as u32 + 1))
        .collect();
    Some((ranks, distinct.len() as u32))
}

/// The sorting permutation by several columns, computed by packing each row's column ranks
/// and its row number into one `u64` and sorting those: much faster than comparing rows
/// column by column. `None` when the key does not fit in 64 bits.
fn packed_sort_indices(columns: &[ArrayRef]) -> Option<UInt32Array> {
    let rows = columns.first()?.len();
    if rows > u32::MAX as usize {
        return None;
    }
    let row_bits = bits(rows as u32);
    let mut keys = vec![0u64; rows];
    let mut used = row_bits;
    for c in columns {
        let (r, max) = ranks(c)?;
        let b = bits(max);
        used += b;
        if used > 64 {
            return None;
        }
        for (k, r) in keys.iter_mut().zip(r) {
            *k = (*k << b) | u64::from(r);
        }
    }
    for (i, k) in keys.iter_mut().enumerate() {
        *k = (*k << row_bits) | i as u64;
    }
    keys.sort_unstable();
    let mask = (1u64 << row_bits) - 1;
    Some(keys.into_iter().map(|k| (k & mask) as u32).collect())
}

/// Bits needed to represent `v`.
fn bits(v: u32) -> u32 {
    32 - v.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn packed_sort_matches_lexsort() {
        let codes: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            None,
            Some("a"),
            Some("b"),
            Some("a"),
            Some("c"),
            Some("a"),
        ]));
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![
            Some(5),
            Some(1),
            Some(9),
            Some(2),
            None,
            Some(0),
            Some(-3),
        ]));
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, 3, -7, 1 << 40, 0, 12, 5]));
        for cols in [
            vec![codes.clone(), dates.clone()],
            vec![codes.clone(), ids.clone()],
            vec![dates.clone()],
            vec![ids.clone(), codes.clone()],
        ] {
            let packed = packed_sort_indices(&cols).expect("fits");
            let keys: Vec<SortColumn> = cols
                .iter()
                .map(|c| SortColumn {
                    values: c.clone(),
                    options: None,
                })
                .collect();
            let lex = lexsort_to_indices(&keys, None).expect("lexsort");
            // Equal keys may come in any order; compare the sorted key tuples.
            let take = |idx: &UInt32Array| -> Vec<String> {
                idx.values()
                    .iter()
                    .map(|&i| {
                        cols.iter()
                            .map(|c| {
                                arrow::util::display::array_value_to_string(c, i as usize)
                                    .expect("display")
                            })
                            .collect::<Vec<_>>()
                            .join("|")
                    })
                    .collect()
            };
            assert_eq!(take(&packed), take(&lex));
        }
    }
}
