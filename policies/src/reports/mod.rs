//! Canned service-design reports for commissioners: indicator definitions (emergency
//! admissions, ambulatory-care-sensitive admissions, readmissions, antibiotic prescribing,
//! A&E attendances, outpatient non-attendance) run through the same policy layer as analyst
//! SQL, released as protected rates with their numerators, denominators and totals, and
//! rendered as CSV, text, HTML and charts.
//!
//! - [`definition`]: a report definition (TOML: SQL templates plus metadata) and its checks.
//! - [`template`]: the placeholders of a definition's SQL.
//! - [`params`]: parameter validation and binding (`by`, `period`, `from`, `to`, …) into
//!   SQL built from validated values only.
//! - [`registry`]: the built-in definitions (`policies/reports/*.toml`, embedded) or a
//!   directory of them; [`ReportRegistry::validate`] checks a request.
//! - [`run`]: [`run_report`]: the queries through [`crate::query::ProjectContext`], rates
//!   from released counts, totals of released cells, the audit facts.
//! - [`render`]: CSV, plain-text table, self-contained HTML page, SVG chart and PNG.
//! - [`error`]: the reports' error type.
//!
//! ```text
//! registry.validate("emergency-admissions", {"by": "practice"})  → BoundReport
//! run_report(&project_context, &bound)                            → ReportResult
//! render::to_html(&result, bound.def())                           → String
//! ```

pub mod definition;
pub mod error;
pub mod params;
pub mod registry;
pub mod render;
pub mod run;
pub mod template;

pub use definition::{
    ColumnDef, Indicator, Measure, OUTPUT_COLUMNS, ParamDef, ParamKind, ReportDef,
};
pub use error::ReportError;
pub use params::{AreaLevel, BoundReport, ParamValue, Period, PeriodKind};
pub use registry::ReportRegistry;
pub use render::{PngOptions, to_csv, to_html, to_png, to_png_with, to_svg, to_table_text};
pub use run::{QueryRecord, ReportResult, ReportRow, TOTAL_AREA, run_report};
