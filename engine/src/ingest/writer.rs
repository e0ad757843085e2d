//! Collecting a table's rows as packed fixed-size records, sorting them by the table's sort
//! key, and writing them as sorted, compressed Parquet into a staging version.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int16Array, Int64Array, RecordBatch,
    StringBuilder, UInt8Array, make_array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

use crate::Result;
use crate::catalog::{PRIVACY_UNIT, RECORD_KEY, TableDef};
use crate::store::{FileEntry, Staging};

/// Rows per Parquet row group: small enough that min/max statistics prune well on the sort
/// key, large enough for efficient scans.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Rows per in-memory batch while reading.
pub const BATCH_ROWS: usize = 64 * 1024;

/// The store's general Parquet writer settings: compression, row groups, statistics. The
/// plain-conversion benchmark writes with these, so that the two are compared on equal terms;
/// ingest writes each table with [`table_properties`], these plus per-column choices.
pub fn writer_properties() -> WriterProperties {
    base_properties().build()
}

fn base_properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("level 1 is valid"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("fivesafes {}", env!("CARGO_PKG_VERSION")))
}

/// The store's writer settings for one table: [`writer_properties`], with no dictionary for
/// its identifying columns. Those hold keyed pseudonyms, nearly one distinct value per row
/// of a row group, so a dictionary would only be built to be abandoned at its size limit.
pub fn table_properties(def: &TableDef) -> WriterProperties {
    def.identifying
        .iter()
        .fold(base_properties(), |b, c| {
            b.set_column_dictionary_enabled(ColumnPath::from(*c), false)
        })
        .build()
}

/// How a column's values are held in a packed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    I64,
    I16,
    U8,
    F64,
    Date,
    Str,
    Bool,
}

impl Kind {
    fn of(t: &DataType) -> Kind {
        match t {
            DataType::Int64 => Kind::I64,
            DataType::Int16 => Kind::I16,
            DataType::UInt8 => Kind::U8,
            DataType::Float64 => Kind::F64,
            DataType::Date32 => Kind::Date,
            DataType::Utf8 => Kind::Str,
            DataType::Boolean => Kind::Bool,
            other => unreachable!("catalogue uses no {other} columns"),
        }
    }

    /// Bits a value takes in a packed row (strings are ids into the column's interner).
    fn bits(self) -> u32 {
        match self {
            Kind::I64 | Kind::F64 => 64,
            Kind::Date | Kind::Str => 32,
            Kind::I16 => 16,
            Kind::U8 => 8,
            Kind::Bool => 1,
        }
    }
}

/// Where a field sits in a packed row: word index, bit offset and width.
#[derive(Debug, Clone, Copy)]
struct Slot {
    word: usize,
    shift: u32,
    mask: u64,
}

impl Slot {
    #[inline(always)]
    fn get(self, row: &[u64]) -> u64 {
        (row[self.word] >> self.shift) & self.mask
    }
}

/// One column of a packed row: its kind, its value slot and (if nullable) its null bit.
#[derive(Debug, Clone, Copy)]
struct Layout {
    kind: Kind,
    value: Slot,
    null: Option<Slot>,
}

/// The distinct values of one string column, each stored once; rows hold their index.
///
/// Values are looked up by their bytes: those of up to 16 bytes (every code in the extracts)
/// as a fixed-size key of two words and the length, so a lookup hashes three integers and
/// compares no strings; longer ones as byte strings. A value is checked as UTF-8 once, when
/// it is first seen, not on every row.
#[derive(Debug, Default)]
struct Interner {
    /// Short value ([`short_key`]) → index.
    short: foldhash::HashMap<(u64, u64, u8), u32>,
    /// Longer value → index.
    long: foldhash::HashMap<Box<[u8]>, u32>,
    /// Index → value.
    values: Vec<Box<str>>,
}

impl Interner {
    /// The index of `v`, or `None` when `v` is new and not UTF-8.
    #[inline]
    fn id(&mut self, v: &[u8]) -> Option<u32> {
        match short_key(v) {
            Some(k) => match self.short.get(&k) {
                Some(&id) => Some(id),
                None => {
                    let id = self.push(v)?;
                    self.short.insert(k, id);
                    Some(id)
                }
            },
            None => match self.long.get(v) {
                Some(&id) => Some(id),
                None => {
                    let id = self.push(v)?;
                    self.long.insert(v.into(), id);
                    Some(id)
                }
            },
        }
    }

    fn push(&mut self, v: &[u8]) -> Option<u32> {
        let s = std::str::from_utf8(v).ok()?;
        let id = self.values.len() as u32;
        self.values.push(s.into());
        Some(id)
    }
}

/// A value of at most 16 bytes as (first word, second word, length): its first and last 8
/// bytes (overlapping below 16 bytes), or for shorter values its first and last 4 bytes, or
/// its first, middle and last byte, zero-padded. Together with the length these cover every
/// byte, so equal keys mean equal values.
#[inline]
fn short_key(v: &[u8]) -> Option<(u64, u64, u8)> {
    let n = v.len();
    let w8 = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let w4 = |b: &[u8]| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let (a, b) = match n {
        8..=16 => (w8(&v[..8]), w8(&v[n - 8..])),
        4..=7 => (w4(&v[..4]) | w4(&v[n - 4..]) << 32, 0),
        1..=3 => (
            u64::from(v[0]) | u64::from(v[n / 2]) << 8 | u64::from(v[n - 1]) << 16,
            0,
        ),
        0 => (0, 0),
        _ => return None,
    };
    Some((a, b, n as u8))
}

/// Accumulates the rows of one table, each packed into a few `u64` words (strings interned
/// per column), so that sorting moves one small fixed-size record per row instead of
/// gathering every column separately, and Arrow batches are built only once, already in
/// sorted order, while writing.
pub struct Rows {
    /// Schema of the table.
    schema: SchemaRef,
    /// Per column: kind and position in the packed row.
    layout: Vec<Layout>,
    /// Words per packed row.
    width: usize,
    /// Packed rows, `width` words each, followed by the row being filled.
    words: Vec<u64>,
    /// Finished rows.
    len: usize,
    /// Per column: the interned values (empty for non-string columns).
    strings: Vec<Interner>,
    /// Columns given a value in the row being filled (bit per column).
    set: u64,
    /// The value of `set` once every column has a value.
    all: u64,
    /// A column declared non-nullable was given a null in the row being filled.
    null_in: Option<usize>,
    /// A string column was given bytes that are not UTF-8 in the row being filled.
    not_utf8: Option<usize>,
}

macro_rules! push_fn {
    ($name:ident, $opt:ident, $variant:ident, $t:ty, $enc:expr) => {
        /// Appends a value to column `i`.
        #[inline]
        pub fn $name(&mut self, i: usize, v: $t) {
            self.put(i, Kind::$variant, $enc(v));
        }
        /// Appends an optional value to column `i`.
        #[inline]
        pub fn $opt(&mut self, i: usize, v: Option<$t>) {
            match v {
                Some(v) => self.put(i, Kind::$variant, $enc(v)),
                None => self.put_null(i, Kind::$variant),
            }
        }
    };
}

impl Rows {
    /// Empty rows for a table.
    pub fn new(def: &TableDef) -> Rows {
        let schema = def.schema();
        assert!(schema.fields().len() <= 64, "at most 64 columns per table");
        // First-fit decreasing: wide fields first, then narrower ones (and null bits) into
        // the space left over, so every field is aligned to its own width.
        let mut fields: Vec<(usize, bool, u32)> = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            fields.push((i, false, Kind::of(f.data_type()).bits()));
            if f.is_nullable() {
                fields.push((i, true, 1));
            }
        }
        fields.sort_by_key(|&(i, null, bits)| (std::cmp::Reverse(bits), null, i));
        let mut used: Vec<u32> = Vec::new();
        let mut slots: Vec<(Option<Slot>, Option<Slot>)> =
            vec![(None, None); schema.fields().len()];
        for (i, null, bits) in fields {
            let word = match used.iter().position(|&u| u + bits <= 64) {
                Some(w) => w,
                None => {
                    used.push(0);
                    used.len() - 1
                }
            };
            let slot = Slot {
                word,
                shift: used[word],
                mask: if bits == 64 {
                    u64::MAX
                } else {
                    (1 << bits) - 1
                },
            };
            used[word] += bits;
            if null {
                slots[i].1 = Some(slot);
            } else {
                slots[i].0 = Some(slot);
            }
        }
        let layout = schema
            .fields()
            .iter()
            .zip(slots)
            .map(|(f, (value, null))| Layout {
                kind: Kind::of(f.data_type()),
                value: value.expect("every column has a slot"),
                null,
            })
            .collect::<Vec<_>>();
        let width = used.len().max(1);
        let n = layout.len();
        Rows {
            schema,
            strings: (0..n).map(|_| Interner::default()).collect(),
            layout,
            width,
            words: vec![0; width],
            len: 0,
            set: 0,
            all: if n == 64 { u64::MAX } else { (1 << n) - 1 },
            null_in: None,
            not_utf8: None,
        }
    }

    #[inline]
    fn put(&mut self, i: usize, kind: Kind, v: u64) {
        let l = self.layout[i];
        assert_eq!(l.kind, kind, "column {i} has another type");
        let base = self.len * self.width;
        self.words[base + l.value.word] |= (v & l.value.mask) << l.value.shift;
        self.set |= 1 << i;
    }

    #[inline]
    fn put_null(&mut self, i: usize, kind: Kind) {
        let l = self.layout[i];
        assert_eq!(l.kind, kind, "column {i} has another type");
        match l.null {
            Some(n) => {
                let base = self.len * self.width;
                self.words[base + n.word] |= 1 << n.shift;
            }
            None => self.null_in = Some(i),
        }
        self.set |= 1 << i;
    }

    push_fn!(i64, opt_i64, I64, i64, |v: i64| v as u64);
    push_fn!(i16, opt_i16, I16, i16, |v: i16| u64::from(v as u16));
    push_fn!(u8, opt_u8, U8, u8, u64::from);
    push_fn!(f64, opt_f64, F64, f64, f64::to_bits);
    push_fn!(date, opt_date, Date, i32, |v: i32| u64::from(v as u32));
    push_fn!(boolean, opt_boolean, Bool, bool, u64::from);

    /// Appends a UTF-8 value to column `i`.
    #[inline]
    pub fn str(&mut self, i: usize, v: &str) {
        self.code(i, v.as_bytes());
    }

    /// Appends a value given as bytes to string column `i`, such as a code a validator has
    /// already checked: it is checked as UTF-8 only the first time it is seen, and a value
    /// that is not UTF-8 fails the row at [`Rows::end_row`].
    #[inline]
    pub fn code(&mut self, i: usize, v: &[u8]) {
        match self.strings[i].id(v) {
            Some(id) => self.put(i, Kind::Str, u64::from(id)),
            None => {
                self.not_utf8 = Some(i);
                self.set |= 1 << i;
            }
        }
    }

    /// Appends an optional value given as bytes to string column `i` (see [`Rows::code`]).
    #[inline]
    pub fn opt_code(&mut self, i: usize, v: Option<&[u8]>) {
        match v {
            Some(v) => self.code(i, v),
            None => self.put_null(i, Kind::Str),
        }
    }

    /// Appends an optional UTF-8 value to column `i`.
    #[inline]
    pub fn opt_str(&mut self, i: usize, v: Option<&str>) {
        match v {
            Some(v) => self.str(i, v),
            None => self.put_null(i, Kind::Str),
        }
    }

    /// Reserves room for `rows` more rows, so that a large table's packed rows are allocated
    /// (and their pages touched) once instead of being copied as they grow.
    pub fn reserve(&mut self, rows: usize) {
        self.words.reserve(rows.saturating_mul(self.width));
    }

    /// Marks the end of a row; every column must have had exactly one value appended.
    #[inline]
    pub fn end_row(&mut self) -> Result<()> {
        if self.set != self.all || self.null_in.is_some() || self.not_utf8.is_some() {
            let field = |i: usize| self.schema.field(i).name().clone();
            let msg = match (self.null_in, self.not_utf8) {
                (Some(i), _) => format!("column {} is not nullable but was given a null", field(i)),
                (None, Some(i)) => {
                    format!("column {} was given a value that is not UTF-8", field(i))
                }
                (None, None) => {
                    let missing = (0..self.layout.len())
                        .find(|&i| self.set & (1 << i) == 0)
                        .map(field)
                        .unwrap_or_default();
                    format!("row without a value for column {missing}")
                }
            };
            return Err(ArrowError::InvalidArgumentError(msg).into());
        }
        self.set = 0;
        self.len += 1;
        self.words.resize((self.len + 1) * self.width, 0);
        Ok(())
    }

    /// Rewrites the person columns of every row of a personal table whose `patient_id` holds
    /// a value to be resolved (the NHS number): `f(row, value)` returns the `patient_id` and
    /// record key to keep the row, or `None` to drop it. Rows keep their order.
    pub fn resolve_people(
        &mut self,
        mut f: impl FnMut(usize, i64) -> Result<Option<(i64, u8)>>,
    ) -> Result<()> {
        let id = self.layout[self.schema.index_of(PRIVACY_UNIT)?];
        let key = self.layout[self.schema.index_of(RECORD_KEY)?];
        assert!(id.kind == Kind::I64 && key.kind == Kind::U8 && id.value.mask == u64::MAX);
        let w = self.width;
        let mut kept = 0;
        for r in 0..self.len {
            let base = r * w;
            let value = self.words[base + id.value.word] as i64;
            let Some((pid, k)) = f(r, value)? else {
                continue;
            };
            let to = kept * w;
            if to != base {
                self.words.copy_within(base..base + w, to);
            }
            self.words[to + id.value.word] = pid as u64;
            let kw = &mut self.words[to + key.value.word];
            *kw = (*kw & !(key.value.mask << key.value.shift)) | (u64::from(k) << key.value.shift);
            kept += 1;
        }
        self.len = kept;
        self.words.truncate(kept * w);
        self.words.resize((kept + 1) * w, 0);
        Ok(())
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no rows were appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The schema of the table.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    #[inline]
    fn row(&self, r: usize) -> &[u64] {
        &self.words[r * self.width..(r + 1) * self.width]
    }

    /// Per column: whether any row holds a null in it.
    pub fn columns_with_nulls(&self) -> Vec<bool> {
        self.layout
            .iter()
            .map(|l| {
                l.null
                    .is_some_and(|s| self.rows().any(|row| s.get(row) != 0))
            })
            .collect()
    }

    /// The rows `order` (indices of appended rows) as one Arrow batch. A column listed in
    /// `with_nulls` gets a null buffer even where this batch has no null in it, as a slice of
    /// the whole sorted column would (the Parquet writer's paging depends on it, and the
    /// store's files stay byte-identical to those of earlier versions of ingest).
    pub fn batch(
        &self,
        order: impl ExactSizeIterator<Item = usize>,
        with_nulls: &[bool],
    ) -> Result<RecordBatch> {
        // Gather the packed rows once (one random read per row), then build each column from
        // the contiguous copy.
        let n = order.len();
        let w = self.width;
        let packed = self.gather(order);
        let rows = || packed.chunks_exact(w);
        let arrays: Vec<ArrayRef> = self
            .layout
            .iter()
            .enumerate()
            .map(|(c, l)| {
                let v = l.value;
                let null = |row: &[u64]| l.null.is_some_and(|s| s.get(row) != 0);
                // The batch's validity, when it has a null (a null's value bits are zero).
                let nulls = || {
                    l.null
                        .map(|s| NullBuffer::from_iter(rows().map(|x| s.get(x) == 0)))
                        .filter(|b| b.null_count() > 0)
                };
                // Primitive columns are decoded into a vector in one pass, without a
                // builder's per-value bookkeeping.
                macro_rules! build {
                    ($array:ty, $decode:expr) => {{
                        let values: Vec<_> = rows().map(|x| $decode(v.get(x))).collect();
                        Arc::new(<$array>::new(values.into(), nulls()))
                    }};
                }
                let a: ArrayRef = match l.kind {
                    Kind::I64 => build!(Int64Array, |x: u64| x as i64),
                    Kind::I16 => build!(Int16Array, |x: u64| x as u16 as i16),
                    Kind::U8 => build!(UInt8Array, |x: u64| x as u8),
                    Kind::F64 => build!(Float64Array, f64::from_bits),
                    Kind::Date => build!(Date32Array, |x: u64| x as u32 as i32),
                    Kind::Bool => Arc::new(BooleanArray::new(
                        rows().map(|x| v.get(x) != 0).collect(),
                        nulls(),
                    )),
                    Kind::Str => {
                        let values = &self.strings[c].values;
                        let mut b = StringBuilder::with_capacity(n, n * 8);
                        for x in rows() {
                            if null(x) {
                                b.append_null();
                            } else {
                                b.append_value(&values[v.get(x) as usize]);
                            }
                        }
                        Arc::new(b.finish())
                    }
                };
                if with_nulls.get(c).copied().unwrap_or(false) && a.nulls().is_none() {
                    let data = a
                        .into_data()
                        .into_builder()
                        .nulls(Some(NullBuffer::new_valid(n)))
                        .build()?;
                    return Ok(make_array(data));
                }
                Ok(a)
            })
            .collect::<Result<_>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }

    /// The packed rows `order`, copied one after another. Rows are copied as fixed-size
    /// arrays where the width allows, so that the copies are plain loads and stores whose
    /// cache misses (the order is random) overlap, instead of one `memcpy` call per row.
    fn gather(&self, order: impl ExactSizeIterator<Item = usize>) -> Vec<u64> {
        fn fixed<const W: usize>(
            words: &[u64],
            order: impl ExactSizeIterator<Item = usize>,
        ) -> Vec<u64> {
            let rows: &[[u64; W]] = words.as_chunks::<W>().0;
            let mut packed = Vec::with_capacity(order.len() * W);
            for r in order {
                packed.extend_from_slice(&rows[r]);
            }
            packed
        }
        macro_rules! widths {
            ($($w:literal)*) => {
                match self.width {
                    $($w => return fixed::<$w>(&self.words, order),)*
                    _ => {}
                }
            };
        }
        // Every table of the catalogue is at most 16 words wide (a test checks it).
        widths!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
        let mut packed = Vec::with_capacity(order.len() * self.width);
        for r in order {
            packed.extend_from_slice(self.row(r));
        }
        packed
    }

    /// Column `c` of `row` as an order-preserving `u64` (strings by their interned id's
    /// rank among the column's values, given in `str_rank`), or `None` for null.
    #[inline(always)]
    fn order_value(l: Layout, row: &[u64], str_rank: &[u32]) -> Option<u64> {
        if l.null.is_some_and(|s| s.get(row) != 0) {
            return None;
        }
        let v = l.value.get(row);
        // Signed values are flipped into unsigned order; floats into their total order.
        Some(match l.kind {
            Kind::I64 => v ^ (1 << 63),
            Kind::I16 => u64::from((v as u16 as i16 as i32 as u32) ^ (1 << 31)),
            Kind::Date => u64::from((v as u32) ^ (1 << 31)),
            Kind::U8 | Kind::Bool => v,
            Kind::F64 => {
                if v >> 63 == 1 {
                    !v
                } else {
                    v | (1 << 63)
                }
            }
            Kind::Str => u64::from(str_rank[v as usize]),
        })
    }

    /// The finished packed rows, one slice each.
    fn rows(&self) -> std::slice::ChunksExact<'_, u64> {
        self.words[..self.len * self.width].chunks_exact(self.width)
    }

    /// For a string column, each interned id's rank among the column's distinct values
    /// (empty for other columns), so that sorting never compares strings row by row.
    fn string_ranks(&self, c: usize) -> Vec<u32> {
        if self.layout[c].kind != Kind::Str {
            return Vec::new();
        }
        let values = &self.strings[c].values;
        let mut order: Vec<u32> = (0..values.len() as u32).collect();
        order.sort_unstable_by_key(|&i| &values[i as usize]);
        let mut rank_of = vec![0u32; values.len()];
        for (rank, &id) in order.iter().enumerate() {
            rank_of[id as usize] = rank as u32;
        }
        rank_of
    }

    /// The non-null values of column `c` as (order value, row), sorted: for ranking a column
    /// whose values span too wide a range for offsets (e.g. pseudonyms).
    fn sorted_pairs(&self, c: usize, str_rank: &[u32]) -> Vec<(u64, u32)> {
        let l = self.layout[c];
        let mut pairs: Vec<(u64, u32)> = self
            .rows()
            .enumerate()
            .filter_map(|(r, row)| Self::order_value(l, row, str_rank).map(|v| (v, r as u32)))
            .collect();
        pairs.sort_unstable();
        pairs
    }

    /// How each of the columns `cols` turns into dense ranks (0 = null, then 1.. in
    /// ascending order), found in one pass over the rows: offsets from the column's minimum
    /// when its values span less than 2^24, else ranks among its sorted distinct values.
    fn rankers(&self, cols: &[usize], str_ranks: &[Vec<u32>]) -> Vec<Ranker> {
        let layouts: Vec<Layout> = cols.iter().map(|&c| self.layout[c]).collect();
        let mut bounds = vec![(u64::MAX, u64::MIN); cols.len()];
        for row in self.rows() {
            for ((l, s), (lo, hi)) in layouts.iter().zip(str_ranks).zip(bounds.iter_mut()) {
                if let Some(v) = Self::order_value(*l, row, s) {
                    *lo = (*lo).min(v);
                    *hi = (*hi).max(v);
                }
            }
        }
        cols.iter()
            .zip(str_ranks)
            .zip(bounds)
            .map(|((&c, s), (min, max))| {
                if min > max {
                    // All null.
                    return Ranker::Offset { min: 0, max: 0 };
                }
                if max - min < (1 << 24) {
                    return Ranker::Offset {
                        min,
                        max: (max - min) as u32 + 1,
                    };
                }
                // Number the runs of equal values among the sorted (value, row) pairs.
                let pairs = self.sorted_pairs(c, s);
                let mut ranks = vec![0u32; self.len];
                let mut rank = 0u32;
                let mut last = None;
                for &(v, r) in &pairs {
                    if last != Some(v) {
                        rank += 1;
                        last = Some(v);
                    }
                    ranks[r as usize] = rank;
                }
                Ranker::Dense { ranks, max: rank }
            })
            .collect()
    }

    /// The stable sorting permutation of the rows by the columns `sort_by`: rows with equal
    /// keys keep the order they were appended in.
    pub fn sort_permutation(&self, sort_by: &[&str]) -> Result<Vec<u32>> {
        let rows = self.len;
        if rows > u32::MAX as usize {
            return Err(ArrowError::InvalidArgumentError(format!(
                "{rows} rows in one table: more than a sort can index"
            ))
            .into());
        }
        let cols = sort_by
            .iter()
            .map(|name| Ok(self.schema.index_of(name)?))
            .collect::<Result<Vec<usize>>>()?;
        let str_ranks: Vec<Vec<u32>> = cols.iter().map(|&c| self.string_ranks(c)).collect();
        if let [c] = cols[..] {
            let l = self.layout[c];
            if l.kind == Kind::I64 || l.kind == Kind::F64 {
                // One wide column (e.g. `patient_id`): the sorted (value, row) pairs are the
                // order, after the null rows (in row order).
                let pairs = self.sorted_pairs(c, &str_ranks[0]);
                let nulls = self
                    .rows()
                    .enumerate()
                    .filter(|(_, row)| l.null.is_some_and(|s| s.get(row) != 0))
                    .map(|(r, _)| r as u32);
                return Ok(nulls.chain(pairs.into_iter().map(|(_, r)| r)).collect());
            }
        }
        let rankers = self.rankers(&cols, &str_ranks);
        let keys_of: Vec<SortKey<'_>> = cols
            .iter()
            .zip(&str_ranks)
            .zip(&rankers)
            .map(|((&c, str_rank), ranker)| SortKey {
                layout: self.layout[c],
                str_rank,
                ranker,
            })
            .collect();
        let row_bits = bits(rows as u32);
        let col_bits: Vec<u32> = rankers.iter().map(|r| bits(r.max())).collect();
        let key_bits: u32 = col_bits.iter().sum();
        if row_bits + key_bits <= 64 {
            // Pack each row's ranks and its row number into one u64 (in one pass over the
            // rows) and radix-sort on the rank bits; the sort is stable, so ties stay in row
            // order.
            let mut keys: Vec<u64> = self
                .rows()
                .enumerate()
                .map(|(r, row)| {
                    let mut k = 0u64;
                    for (key, &b) in keys_of.iter().zip(&col_bits) {
                        k = (k << b) | key.rank(r, row);
                    }
                    (k << row_bits) | r as u64
                })
                .collect();
            drop(keys_of);
            drop(rankers);
            radix_sort(&mut keys, row_bits, row_bits + key_bits);
            let mask = (1u64 << row_bits) - 1;
            return Ok(keys.into_iter().map(|k| (k & mask) as u32).collect());
        }
        // Too many bits for one word: sort row numbers by their ranks column by column.
        let ranks: Vec<Vec<u32>> = keys_of
            .iter()
            .map(|key| {
                self.rows()
                    .enumerate()
                    .map(|(r, row)| key.rank(r, row) as u32)
                    .collect()
            })
            .collect();
        let mut perm: Vec<u32> = (0..rows as u32).collect();
        perm.sort_by(|&a, &b| {
            ranks
                .iter()
                .map(|r| r[a as usize].cmp(&r[b as usize]))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        Ok(perm)
    }
}

/// How one sort column's values become dense ranks (0 for null, then 1.. ascending).
enum Ranker {
    /// The value's offset from the column's minimum, plus one; `max` is the largest rank.
    Offset { min: u64, max: u32 },
    /// Ranks looked up by row (values spanning a wide range).
    Dense { ranks: Vec<u32>, max: u32 },
}

/// One column of a sort key: where its values are and how they become ranks.
struct SortKey<'a> {
    layout: Layout,
    /// Ranks of interned strings (string columns only).
    str_rank: &'a [u32],
    ranker: &'a Ranker,
}

impl SortKey<'_> {
    /// The rank of row `r`, whose packed words are `row`.
    #[inline(always)]
    fn rank(&self, r: usize, row: &[u64]) -> u64 {
        match self.ranker {
            Ranker::Offset { min, .. } => {
                Rows::order_value(self.layout, row, self.str_rank).map_or(0, |v| v - min + 1)
            }
            Ranker::Dense { ranks, .. } => u64::from(ranks[r]),
        }
    }
}

impl Ranker {
    /// The largest rank.
    fn max(&self) -> u32 {
        match self {
            Ranker::Offset { max, .. } | Ranker::Dense { max, .. } => *max,
        }
    }
}

/// Stable least-significant-digit radix sort of `v` on bits `lo..hi` (bits outside the range
/// are carried along, not compared).
fn radix_sort(v: &mut Vec<u64>, lo: u32, hi: u32) {
    if hi <= lo || v.len() < 2 {
        return;
    }
    let passes = (hi - lo).div_ceil(12);
    let digit = (hi - lo).div_ceil(passes);
    // (shift, mask) of each pass's digit, and the counts of every digit, in one read of `v`.
    let digits: Vec<(u32, u64)> = (0..passes)
        .map(|p| {
            let shift = lo + p * digit;
            let b = digit.min(hi - shift);
            (shift, (1u64 << b) - 1)
        })
        .collect();
    let mut counts: Vec<Vec<usize>> = digits
        .iter()
        .map(|&(_, m)| vec![0; m as usize + 1])
        .collect();
    for &x in v.iter() {
        for (c, &(shift, mask)) in counts.iter_mut().zip(&digits) {
            c[((x >> shift) & mask) as usize] += 1;
        }
    }
    let mut buf = vec![0u64; v.len()];
    for (mut next, &(shift, mask)) in counts.into_iter().zip(&digits) {
        // A digit that is the same for every element leaves the order unchanged.
        if next.contains(&v.len()) {
            continue;
        }
        let mut sum = 0;
        for c in next.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for &x in v.iter() {
            let d = ((x >> shift) & mask) as usize;
            buf[next[d]] = x;
            next[d] += 1;
        }
        std::mem::swap(v, &mut buf);
    }
}

/// Sorts a table's rows by its sort key and writes them as one Parquet file into staging,
/// one batch at a time (the sorted table is never held in memory as a whole).
pub fn write_table(staging: &Staging, def: &TableDef, rows: Rows) -> Result<FileEntry> {
    let started = std::time::Instant::now();
    let n = rows.len();
    let perm = if n == 0 || def.sort_by.is_empty() {
        None
    } else {
        Some(rows.sort_permutation(def.sort_by)?)
    };
    let sort_ms = started.elapsed().as_millis() as u64;
    let (rel, file) = staging.create_table_file(def.name, 0)?;
    let mut writer =
        ArrowWriter::try_new(file, rows.schema().clone(), Some(table_properties(def)))?;
    let with_nulls = rows.columns_with_nulls();
    for off in (0..n).step_by(BATCH_ROWS) {
        let end = (off + BATCH_ROWS).min(n);
        let batch = match &perm {
            Some(p) => rows.batch(p[off..end].iter().map(|&i| i as usize), &with_nulls)?,
            None => rows.batch(off..end, &with_nulls)?,
        };
        writer.write(&batch)?;
    }
    drop(perm);
    drop(rows);
    let file = writer.into_inner()?;
    let (bytes, sha256) = file.finish()?;
    tracing::info!(
        table = def.name,
        rows = n,
        bytes,
        sort_ms,
        write_ms = started.elapsed().as_millis() as u64 - sort_ms,
        "table written"
    );
    Ok(FileEntry {
        path: rel,
        rows: n as u64,
        bytes,
        sha256,
    })
}

/// Bits needed to represent `v`.
fn bits(v: u32) -> u32 {
    32 - v.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnDef, TableClass};
    use arrow::array::{Array, AsArray};
    use arrow::compute::{SortColumn, lexsort_to_indices};
    use arrow::datatypes::{Date32Type, Float64Type, Int16Type, Int64Type};

    const T: TableDef = TableDef {
        name: "t",
        class: TableClass::Public,
        columns: &[
            ColumnDef {
                name: "code",
                data_type: DataType::Utf8,
                nullable: true,
            },
            ColumnDef {
                name: "day",
                data_type: DataType::Date32,
                nullable: true,
            },
            ColumnDef {
                name: "id",
                data_type: DataType::Int64,
                nullable: false,
            },
            ColumnDef {
                name: "value",
                data_type: DataType::Float64,
                nullable: true,
            },
            ColumnDef {
                name: "small",
                data_type: DataType::Int16,
                nullable: false,
            },
            ColumnDef {
                name: "flag",
                data_type: DataType::Boolean,
                nullable: false,
            },
            ColumnDef {
                name: "key",
                data_type: DataType::UInt8,
                nullable: false,
            },
        ],
        identifying: &[],
        secret: &[],
        sort_by: &["code", "day"],
        key: None,
    };

    type Row = (
        Option<&'static str>,
        Option<i32>,
        i64,
        Option<f64>,
        i16,
        bool,
        u8,
    );

    fn sample() -> (Rows, Vec<Row>) {
        let data: Vec<Row> = vec![
            (Some("b"), Some(5), i64::MAX, Some(1.5), -3, true, 255),
            (None, Some(1), 3, None, 7, false, 0),
            (Some("a"), Some(9), -7, Some(-0.25), i16::MIN, true, 1),
            (
                Some("b"),
                Some(2),
                1 << 40,
                Some(f64::MAX),
                i16::MAX,
                false,
                2,
            ),
            (Some("a"), None, 0, Some(0.0), 0, true, 3),
            (Some("c"), Some(0), 12, None, 5, false, 4),
            (Some("a"), Some(-3), 5, Some(-1e300), -1, true, 5),
            (Some("a"), Some(9), i64::MIN, Some(2.0), 1, false, 6),
            (Some("b"), Some(5), 12, None, -3, true, 7),
        ];
        let mut rows = Rows::new(&T);
        for r in &data {
            rows.opt_str(0, r.0);
            rows.opt_date(1, r.1);
            rows.i64(2, r.2);
            rows.opt_f64(3, r.3);
            rows.i16(4, r.4);
            rows.boolean(5, r.5);
            rows.u8(6, r.6);
            rows.end_row().expect("complete row");
        }
        (rows, data)
    }

    #[test]
    fn packed_rows_round_trip() {
        let (rows, data) = sample();
        assert_eq!(rows.len(), data.len());
        let b = rows.batch(0..rows.len(), &[]).expect("batch");
        for (i, r) in data.iter().enumerate() {
            let code = b.column(0).as_string::<i32>();
            assert_eq!(code.is_valid(i).then(|| code.value(i)), r.0);
            let day = b.column(1).as_primitive::<Date32Type>();
            assert_eq!(day.is_valid(i).then(|| day.value(i)), r.1);
            assert_eq!(b.column(2).as_primitive::<Int64Type>().value(i), r.2);
            let v = b.column(3).as_primitive::<Float64Type>();
            assert_eq!(v.is_valid(i).then(|| v.value(i)), r.3);
            assert_eq!(b.column(4).as_primitive::<Int16Type>().value(i), r.4);
            assert_eq!(b.column(5).as_boolean().value(i), r.5);
            assert_eq!(
                b.column(6)
                    .as_primitive::<arrow::datatypes::UInt8Type>()
                    .value(i),
                r.6
            );
        }
        // A reordered batch holds the same rows in that order.
        let rev = rows.batch((0..rows.len()).rev(), &[]).expect("batch");
        assert_eq!(
            rev.column(2).as_primitive::<Int64Type>().value(0),
            data[data.len() - 1].2
        );
    }

    #[test]
    fn every_table_is_gathered_as_fixed_size_rows() {
        for def in crate::catalog::TABLES {
            let w = Rows::new(def).width;
            assert!((1..=16).contains(&w), "{} is {w} words wide", def.name);
        }
    }

    #[test]
    fn incomplete_or_null_rows_are_refused() {
        let mut rows = Rows::new(&T);
        rows.str(0, "a");
        assert!(rows.end_row().is_err(), "missing columns");
        let mut rows = Rows::new(&T);
        rows.opt_str(0, None);
        rows.opt_date(1, None);
        rows.opt_i64(2, None);
        rows.opt_f64(3, None);
        rows.i16(4, 0);
        rows.boolean(5, false);
        rows.u8(6, 0);
        assert!(rows.end_row().is_err(), "null in a non-nullable column");
    }

    #[test]
    fn interned_values_of_every_length_keep_their_identity() {
        // Every length around the short-key boundaries, each value with one byte changed at
        // every position, and each with a NUL appended (zero padding must not merge them).
        let mut values: Vec<Vec<u8>> = Vec::new();
        for n in 0..=40usize {
            let base: Vec<u8> = (0..n).map(|k| b'a' + (k % 26) as u8).collect();
            for p in 0..n {
                let mut v = base.clone();
                v[p] = b'Z';
                values.push(v);
            }
            let mut nul = base.clone();
            nul.push(0);
            values.push(nul);
            values.push(base);
        }
        let distinct: std::collections::HashSet<&Vec<u8>> = values.iter().collect();
        let mut interner = Interner::default();
        let ids: Vec<u32> = values
            .iter()
            .map(|v| interner.id(v).expect("UTF-8"))
            .collect();
        assert_eq!(interner.values.len(), distinct.len());
        for (v, &id) in values.iter().zip(&ids) {
            assert_eq!(interner.values[id as usize].as_bytes(), v.as_slice());
            assert_eq!(interner.id(v), Some(id), "same value, same id");
        }
        assert_eq!(interner.id(b"\xff\xfe"), None, "not UTF-8");
        assert_eq!(
            interner.values.len(),
            distinct.len(),
            "nothing stored for it"
        );
    }

    #[test]
    fn a_code_that_is_not_utf8_fails_the_row() {
        let mut rows = Rows::new(&T);
        let mut row = |code: &[u8]| {
            rows.code(0, code);
            rows.opt_date(1, None);
            rows.i64(2, 1);
            rows.opt_f64(3, None);
            rows.i16(4, 0);
            rows.boolean(5, false);
            rows.u8(6, 0);
            rows.end_row()
        };
        row(b"ok").expect("a valid row");
        let err = row(b"caf\xe9").expect_err("Latin-1 byte");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    /// Checks that `rows` sorted by `cols` are in the order of Arrow's `lexsort` (nulls
    /// first) and that ties keep row order.
    fn assert_sorted_like_lexsort(rows: &Rows, cols: &[&str]) {
        let all = rows.batch(0..rows.len(), &[]).expect("batch");
        let perm = rows.sort_permutation(cols).expect("sort");
        let keys: Vec<SortColumn> = cols
            .iter()
            .map(|c| SortColumn {
                values: all.column(all.schema().index_of(c).expect("col")).clone(),
                options: None,
            })
            .collect();
        let lex = lexsort_to_indices(&keys, None).expect("lexsort");
        let render = |i: usize| -> String {
            keys.iter()
                .map(|k| {
                    arrow::util::display::array_value_to_string(&k.values, i).expect("display")
                })
                .collect::<Vec<_>>()
                .join("|")
        };
        assert_eq!(perm.len(), rows.len(), "{cols:?}");
        assert_eq!(
            perm.iter().map(|&i| render(i as usize)).collect::<Vec<_>>(),
            lex.values()
                .iter()
                .map(|&i| render(i as usize))
                .collect::<Vec<_>>(),
            "{cols:?}"
        );
        // Ties keep row order.
        for w in perm.windows(2) {
            let same = render(w[0] as usize) == render(w[1] as usize);
            assert!(!same || w[0] < w[1], "{cols:?} not stable");
        }
    }

    #[test]
    fn sort_is_stable_and_matches_lexsort() {
        let (rows, _) = sample();
        for cols in [
            vec!["code", "day"],
            vec!["code", "id"],
            vec!["day"],
            vec!["id", "code"],
            vec!["value"],
            vec!["small", "flag"],
            vec!["key"],
            vec!["id"],
            vec!["small"],
        ] {
            assert_sorted_like_lexsort(&rows, &cols);
        }
    }

    #[test]
    fn sort_of_many_rows_with_ties_and_nulls_matches_lexsort() {
        // Few distinct values per column (many ties), nulls, wide and narrow ranges, and
        // key combinations of every path: offsets, dense ranks, one wide column alone, and
        // more bits than one word holds.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let codes = ["a", "b", "ab", "zz", "a longer code value"];
        let mut rows = Rows::new(&T);
        for _ in 0..3000 {
            let code = (next(6) > 0).then(|| codes[next(codes.len() as u64) as usize]);
            rows.opt_str(0, code);
            rows.opt_date(1, (next(5) > 0).then(|| next(2_000_000) as i32 - 1_000_000));
            // Half from a few values, half nearly all distinct.
            let id = match next(2) {
                0 => [i64::MIN, -1, 0, 7, i64::MAX][next(5) as usize] ^ next(50) as i64,
                _ => next(u64::MAX) as i64,
            };
            rows.i64(2, id);
            rows.opt_f64(3, (next(4) > 0).then(|| next(40) as f64 * 1e250 - 1e251));
            rows.i16(4, next(65_536) as u16 as i16);
            rows.boolean(5, next(2) == 1);
            rows.u8(6, next(3) as u8);
            rows.end_row().expect("complete row");
        }
        for cols in [
            vec!["code", "day"],
            vec!["id"],
            vec!["value"],
            vec!["key", "id"],
            vec!["flag", "value", "code"],
            // 11 + 6 + 21 + 16 rank bits and 12 row bits: more than one word.
            vec!["id", "value", "day", "small"],
            vec!["small", "key", "flag"],
        ] {
            assert_sorted_like_lexsort(&rows, &cols);
        }
    }

    #[test]
    fn radix_sort_matches_std_sort() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut v: Vec<u64> = (0..10_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        let mut expected = v.clone();
        // Sort on bits 8..40 only: stable, low bits keep their original order within ties.
        expected.sort_by_key(|k| (k >> 8) & ((1 << 32) - 1));
        radix_sort(&mut v, 8, 40);
        assert_eq!(v, expected);
    }
}
