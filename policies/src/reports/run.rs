//! Running a bound report through the policy layer and assembling its released table.
//!
//! A report is three queries, each prepared by [`ProjectContext::prepare`] like any analyst
//! query, so everything released passes the same gate, analysis and output control:
//!
//! 1. the areas (`practices`, public reference data: no protection needed), so that every
//!    area and period gets a row whether or not its counts are released;
//! 2. the numerator per area and period — protected cells: a cell backed by too few persons
//!    is removed, the others are perturbed and rounded;
//! 3. the denominator per area and period, likewise.
//!
//! The rate of a row is [`output::protect_rate`] of the two *released* counts: suppressed
//! when either is missing (suppressed, or no such records at all — the two are not told
//! apart, which is what makes a missing cell safe), otherwise `numerator / denominator ×
//! multiplier` to the project's significant figures, so anyone can recompute it from the
//! published counts.
//!
//! **Totals.** Each period ends with a total row (`area = ALL`, `total = true`) that adds up
//! the released numerators and denominators of the rows whose rate is released, and divides
//! them. It is a function of published numbers only: it cannot be differenced against the
//! cells to recover a suppressed one (a separately protected total could: total minus the
//! released cells ≈ the suppressed cell). Its `area_name` says how many areas it covers. When
//! no row of a period has a released rate the total is suppressed too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use super::error::ReportError;
use super::params::{AreaLevel, BoundReport, Period};
use crate::analysis::Kind;
use crate::output::{self, Released};
use crate::query::{self, ProjectContext, QueryError};
use crate::register::OutputControl;

/// The area value of total rows.
pub const TOTAL_AREA: &str = "ALL";

/// One row of a report: an area and period, or a period's total.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// The area (practice code, sub-ICB code or region); [`TOTAL_AREA`] on total rows.
    pub area: String,
    /// The practice name (by practice); on total rows, what the total covers.
    pub area_name: Option<String>,
    /// The period label.
    pub period: String,
    /// The released numerator; `None` when suppressed (or zero: not told apart).
    pub numerator: Option<u64>,
    /// The released denominator; `None` when suppressed.
    pub denominator: Option<u64>,
    /// The rate from the released counts; `None` when either is suppressed.
    pub rate: Option<f64>,
    /// Whether the rate is withheld.
    pub suppressed: bool,
    /// Whether this is a period's total row.
    pub total: bool,
}

/// What one of the report's queries did, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRecord {
    /// Which query: `areas`, `numerator` or `denominator`.
    pub part: &'static str,
    /// The SQL that ran (the definition's template filled with validated values).
    pub sql: String,
    /// SHA-256 (hex) of the plan before protection.
    pub plan_hash: String,
    /// Tables read.
    pub tables_read: Vec<String>,
    /// Columns read, `table.column`.
    pub columns_read: Vec<String>,
    /// Opt-out filters applied.
    pub opt_out_filters: Vec<String>,
    /// Output-control rules applied.
    pub rules_applied: Vec<String>,
    /// Rows read from storage.
    pub rows_scanned: u64,
    /// Cells released by the policy layer.
    pub rows_returned: u64,
    /// Cells the policy layer suppressed.
    pub cells_suppressed: u64,
}

/// A report's released result.
#[derive(Debug, Clone)]
pub struct ReportResult {
    /// The report's name.
    pub report: String,
    /// The report and its parameters as one line (the audit log's statement).
    pub statement: String,
    /// Every parameter's value as text, by name.
    pub parameters: BTreeMap<String, String>,
    /// The area level of the rows.
    pub area_level: AreaLevel,
    /// The periods, in order.
    pub periods: Vec<Period>,
    /// The rows: for each period its areas in order, then its total row.
    pub rows: Vec<ReportRow>,
    /// The same rows as Arrow batches (columns as in
    /// [`super::definition::OUTPUT_COLUMNS`]).
    pub batches: Vec<RecordBatch>,
    /// Rows (area and period, totals not counted) whose rate is withheld.
    pub rows_suppressed: u64,
    /// Cells the policy layer suppressed in the numerator and denominator queries.
    pub cells_suppressed: u64,
    /// Output-control rules applied, sorted and unique.
    pub rules_applied: Vec<String>,
    /// The queries that ran, in order: areas, numerator, denominator.
    pub queries: Vec<QueryRecord>,
    /// The project's output-control parameters (for the legend of rendered reports).
    pub output_control: OutputControl,
}

impl ReportResult {
    /// The schema of [`ReportResult::batches`].
    pub fn schema(&self) -> SchemaRef {
        self.batches
            .first()
            .map_or_else(|| output_schema(&BTreeMap::new()), RecordBatch::schema)
    }

    /// The area and period rows (no totals).
    pub fn cells(&self) -> impl Iterator<Item = &ReportRow> {
        self.rows.iter().filter(|r| !r.total)
    }

    /// The total rows, one per period.
    pub fn totals(&self) -> impl Iterator<Item = &ReportRow> {
        self.rows.iter().filter(|r| r.total)
    }

    /// One hash for the audit log: SHA-256 (hex) of `part:plan_hash` lines of the queries.
    pub fn plan_hash(&self) -> String {
        let mut h = Sha256::new();
        for q in &self.queries {
            h.update(q.part.as_bytes());
            h.update(b":");
            h.update(q.plan_hash.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// Tables read by any of the queries, sorted.
    pub fn tables_read(&self) -> Vec<String> {
        self.union(|q| &q.tables_read)
    }

    /// Columns read by any of the queries, sorted.
    pub fn columns_read(&self) -> Vec<String> {
        self.union(|q| &q.columns_read)
    }

    /// Opt-out filters applied under any of the queries.
    pub fn opt_out_filters(&self) -> Vec<String> {
        self.union(|q| &q.opt_out_filters)
    }

    /// Rows read from storage by all the queries.
    pub fn rows_scanned(&self) -> u64 {
        self.queries.iter().map(|q| q.rows_scanned).sum()
    }

    /// Rows of the result (area rows and totals).
    pub fn rows_returned(&self) -> u64 {
        self.rows.len() as u64
    }

    fn union(&self, f: impl Fn(&QueryRecord) -> &Vec<String>) -> Vec<String> {
        let set: BTreeSet<&String> = self.queries.iter().flat_map(f).collect();
        set.into_iter().cloned().collect()
    }
}

/// The Arrow schema of every report result; `metadata` is attached to it.
pub fn output_schema(metadata: &BTreeMap<String, String>) -> SchemaRef {
    let fields = vec![
        Field::new("area", DataType::Utf8, false),
        Field::new("area_name", DataType::Utf8, true),
        Field::new("period", DataType::Utf8, false),
        Field::new("numerator", DataType::Int64, true),
        Field::new("denominator", DataType::Int64, true),
        Field::new("rate", DataType::Float64, true),
        Field::new("suppressed", DataType::Boolean, false),
        Field::new("total", DataType::Boolean, false),
    ];
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// Which kind of result a query must have.
#[derive(Clone, Copy)]
enum Expect {
    /// Public rows (the areas).
    Public,
    /// Protected cells (numerator, denominator).
    Cells,
}

/// Runs `report` in the project `cx`: its three queries through the policy layer, then the
/// rates and totals from the released counts (see the module documentation).
pub async fn run_report(
    cx: &ProjectContext,
    report: &BoundReport,
) -> Result<ReportResult, ReportError> {
    let def = report.def();
    let (areas, num, den) = futures::try_join!(
        run_query(cx, report, "areas", report.areas_sql(), Expect::Public),
        run_query(
            cx,
            report,
            "numerator",
            report.numerator_sql(),
            Expect::Cells
        ),
        run_query(
            cx,
            report,
            "denominator",
            report.denominator_sql(),
            Expect::Cells
        ),
    )?;
    let area_names = area_list(report, &areas.1)?;
    let numerators = counts(report, "numerator", &num.1)?;
    let denominators = counts(report, "denominator", &den.1)?;
    let oc = *cx.output_control();
    let rows = assemble(
        report,
        &area_names,
        &numerators,
        &denominators,
        def.multiplier,
        oc.significant_figures,
    );

    let queries = vec![areas.0, num.0, den.0];
    let rules_applied: BTreeSet<String> = queries
        .iter()
        .flat_map(|q| q.rules_applied.iter().cloned())
        .collect();
    let parameters: BTreeMap<String, String> = report
        .values()
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    let mut metadata = BTreeMap::new();
    metadata.insert("fivesafes.report".to_string(), def.name.clone());
    metadata.insert("fivesafes.statement".to_string(), report.statement());
    metadata.insert("fivesafes.rate_unit".to_string(), def.rate_unit.clone());
    metadata.insert(
        "fivesafes.multiplier".to_string(),
        def.multiplier.to_string(),
    );
    let batch = to_batch(&rows, output_schema(&metadata))?;
    Ok(ReportResult {
        report: def.name.clone(),
        statement: report.statement(),
        parameters,
        area_level: report.area_level(),
        periods: report.periods().to_vec(),
        rows_suppressed: rows.iter().filter(|r| !r.total && r.suppressed).count() as u64,
        cells_suppressed: queries.iter().map(|q| q.cells_suppressed).sum(),
        rows,
        batches: vec![batch],
        rules_applied: rules_applied.into_iter().collect(),
        queries,
        output_control: oc,
    })
}

/// Prepares, runs and collects one query.
async fn run_query(
    cx: &ProjectContext,
    report: &BoundReport,
    part: &'static str,
    sql: String,
    expect: Expect,
) -> Result<(QueryRecord, Vec<RecordBatch>), ReportError> {
    let name = &report.def().name;
    let fail = |error: QueryError| ReportError::Query {
        report: name.clone(),
        part,
        error,
    };
    let prepared = cx.prepare_report(&sql).await.map_err(fail)?;
    let kind_ok = match expect {
        Expect::Public => prepared.kind == Kind::Public,
        Expect::Cells => prepared.kind == Kind::Cells,
    };
    if !kind_ok {
        return Err(ReportError::Shape {
            report: name.clone(),
            part,
            message: match expect {
                Expect::Public => "the area list must read public reference data only".into(),
                Expect::Cells => {
                    "must count records about persons (an aggregate over personal data)".into()
                }
            },
        });
    }
    let physical = prepared.physical_plan(cx).await.map_err(fail)?;
    let batches: Vec<RecordBatch> = query::execute(&physical, cx)
        .map_err(fail)?
        .try_collect()
        .await
        .map_err(|e| fail(QueryError::Execution(e)))?;
    let record = QueryRecord {
        part,
        plan_hash: prepared.plan_hash.clone(),
        tables_read: prepared.tables_read.clone(),
        columns_read: prepared.columns_read.clone(),
        opt_out_filters: prepared.opt_out_filters.clone(),
        rules_applied: prepared.rules_applied.clone(),
        rows_scanned: query::rows_scanned(&physical),
        rows_returned: batches.iter().map(|b| b.num_rows() as u64).sum(),
        cells_suppressed: prepared.rows_suppressed(),
        sql,
    };
    Ok((record, batches))
}

/// Column `name` of `batch` cast to `to`, or a shape error.
fn column(
    report: &BoundReport,
    part: &'static str,
    batch: &RecordBatch,
    name: &str,
    to: &DataType,
) -> Result<ArrayRef, ReportError> {
    let shape = |message: String| ReportError::Shape {
        report: report.def().name.clone(),
        part,
        message,
    };
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| shape(format!("the result has no column {name:?}")))?;
    cast(col, to).map_err(|e| shape(format!("column {name:?}: {e}")))
}

/// The areas and their names, sorted by area.
fn area_list(
    report: &BoundReport,
    batches: &[RecordBatch],
) -> Result<BTreeMap<String, Option<String>>, ReportError> {
    let mut out = BTreeMap::new();
    for b in batches {
        let area = column(report, "areas", b, "area", &DataType::Utf8)?;
        let name = column(report, "areas", b, "area_name", &DataType::Utf8)?;
        let (area, name) = (area.as_string::<i32>(), name.as_string::<i32>());
        for i in 0..b.num_rows() {
            if area.is_null(i) {
                continue;
            }
            let n = (!name.is_null(i)).then(|| name.value(i).to_string());
            out.insert(area.value(i).to_string(), n);
        }
    }
    Ok(out)
}

/// The released counts by (area, period); a NULL count (withheld by output control) is
/// `None`. Rows with a NULL area or period are left out.
fn counts(
    report: &BoundReport,
    part: &'static str,
    batches: &[RecordBatch],
) -> Result<HashMap<(String, String), Option<u64>>, ReportError> {
    let mut out = HashMap::new();
    for b in batches {
        let area = column(report, part, b, "area", &DataType::Utf8)?;
        let period = column(report, part, b, "period", &DataType::Utf8)?;
        let value = column(report, part, b, "value", &DataType::Int64)?;
        let (area, period) = (area.as_string::<i32>(), period.as_string::<i32>());
        let value = value.as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            if area.is_null(i) || period.is_null(i) {
                continue;
            }
            let v = (!value.is_null(i))
                .then(|| u64::try_from(value.value(i)).ok())
                .flatten();
            out.insert((area.value(i).to_string(), period.value(i).to_string()), v);
        }
    }
    Ok(out)
}

fn released(v: Option<&Option<u64>>) -> Released<u64> {
    match v {
        Some(Some(n)) => Released::Value(*n),
        _ => Released::Suppressed,
    }
}

/// The rows: per period, every area, then the period's total.
fn assemble(
    report: &BoundReport,
    areas: &BTreeMap<String, Option<String>>,
    numerators: &HashMap<(String, String), Option<u64>>,
    denominators: &HashMap<(String, String), Option<u64>>,
    multiplier: f64,
    sig: u32,
) -> Vec<ReportRow> {
    let mut rows = Vec::with_capacity((areas.len() + 1) * report.periods().len());
    for period in report.periods() {
        let (mut sum_n, mut sum_d, mut included) = (0u64, 0u64, 0usize);
        for (area, name) in areas {
            let key = (area.clone(), period.label.clone());
            let n = released(numerators.get(&key));
            let d = released(denominators.get(&key));
            let rate = output::protect_rate(n, d, multiplier, sig);
            if let (Released::Value(nv), Released::Value(dv), Released::Value(_)) = (n, d, rate) {
                sum_n = sum_n.saturating_add(nv);
                sum_d = sum_d.saturating_add(dv);
                included += 1;
            }
            rows.push(ReportRow {
                area: area.clone(),
                area_name: name.clone(),
                period: period.label.clone(),
                numerator: n.value(),
                denominator: d.value(),
                rate: rate.value(),
                suppressed: rate.is_suppressed(),
                total: false,
            });
        }
        let (n, d) = if included > 0 {
            (Released::Value(sum_n), Released::Value(sum_d))
        } else {
            (Released::Suppressed, Released::Suppressed)
        };
        let rate = output::protect_rate(n, d, multiplier, sig);
        rows.push(ReportRow {
            area: TOTAL_AREA.to_string(),
            area_name: Some(format!(
                "Total over {included} of {} areas (those with a released rate)",
                areas.len()
            )),
            period: period.label.clone(),
            numerator: n.value(),
            denominator: d.value(),
            rate: rate.value(),
            suppressed: rate.is_suppressed(),
            total: true,
        });
    }
    rows
}

/// The rows as one Arrow batch.
fn to_batch(rows: &[ReportRow], schema: SchemaRef) -> Result<RecordBatch, ReportError> {
    let int = |f: fn(&ReportRow) -> Option<u64>| -> Int64Array {
        rows.iter()
            .map(|r| f(r).and_then(|v| i64::try_from(v).ok()))
            .collect()
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.area.as_str()),
        )),
        Arc::new(
            rows.iter()
                .map(|r| r.area_name.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.period.as_str()),
        )),
        Arc::new(int(|r| r.numerator)),
        Arc::new(int(|r| r.denominator)),
        Arc::new(rows.iter().map(|r| r.rate).collect::<Float64Array>()),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.suppressed))
                .collect::<BooleanArray>(),
        ),
        Arc::new(rows.iter().map(|r| Some(r.total)).collect::<BooleanArray>()),
    ];
    RecordBatch::try_new(schema, columns).map_err(|e| ReportError::Render(e.to_string()))
}
