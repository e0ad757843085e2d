//! Building Arrow batches row by row and writing them as sorted, compressed Parquet into a
//! staging version.

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int16Builder,
    Int64Builder, RecordBatch, StringBuilder, UInt8Builder,
};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
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
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let sorted = if rows == 0 || def.sort_by.is_empty() {
        batches
    } else {
        let all = concat_batches(&schema, &batches)?;
        drop(batches);
        let keys = def
            .sort_by
            .iter()
            .map(|name| {
                Ok(SortColumn {
                    values: all.column(schema.index_of(name)?).clone(),
                    options: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let idx = lexsort_to_indices(&keys, None)?;
        let sorted = take_record_batch(&all, &idx)?;
        drop(all);
        (0..rows)
            .step_by(BATCH_ROWS)
            .map(|off| sorted.slice(off, BATCH_ROWS.min(rows - off)))
            .collect()
    };
    let (rel, file) = staging.create_table_file(def.name, 0)?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(writer_properties()))?;
    for b in &sorted {
        writer.write(b)?;
    }
    let file = writer.into_inner()?;
    let (bytes, sha256) = file.finish()?;
    Ok(FileEntry {
        path: rel,
        rows: rows as u64,
        bytes,
        sha256,
    })
}
