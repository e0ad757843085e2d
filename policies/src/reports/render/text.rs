//! CSV and plain-text renderings.

use std::fmt::Write as _;

use super::super::definition::{OUTPUT_COLUMNS, ReportDef};
use super::super::run::{ReportResult, ReportRow};
use super::{count_text, legend, parameters_text, rate_text};

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The result as CSV (RFC 4180, `\n` line ends): a header of the column names of
/// [`OUTPUT_COLUMNS`], then one line per row; suppressed values are empty fields, flags
/// `true`/`false`.
pub fn to_csv(result: &ReportResult) -> String {
    let mut out = OUTPUT_COLUMNS.join(",");
    out.push('\n');
    for r in &result.rows {
        let fields = [
            csv_field(&r.area),
            csv_field(r.area_name.as_deref().unwrap_or_default()),
            csv_field(&r.period),
            r.numerator.map(|v| v.to_string()).unwrap_or_default(),
            r.denominator.map(|v| v.to_string()).unwrap_or_default(),
            r.rate.map(|v| format!("{v}")).unwrap_or_default(),
            r.suppressed.to_string(),
            r.total.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// The cells of one row as displayed: area, name, period, numerator, denominator, rate.
fn display_cells(r: &ReportRow) -> [String; 6] {
    [
        r.area.clone(),
        r.area_name.clone().unwrap_or_default(),
        r.period.clone(),
        count_text(r.numerator),
        count_text(r.denominator),
        rate_text(r.rate),
    ]
}

/// The result as an aligned text table for terminals: title, parameters, the table (numbers
/// right-aligned, `*` for suppressed), and the legend.
pub fn to_table_text(result: &ReportResult, def: &ReportDef) -> String {
    let headers = [
        result.area_level.label().to_string(),
        def.label("area_name").to_string(),
        def.label("period").to_string(),
        def.label("numerator").to_string(),
        def.label("denominator").to_string(),
        def.label("rate").to_string(),
    ];
    let rows: Vec<[String; 6]> = result.rows.iter().map(display_cells).collect();
    let mut widths = headers.each_ref().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String; 6]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if i >= 3 {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", def.title);
    let _ = writeln!(out, "{} ({})", parameters_text(result), def.rate_unit);
    out.push('\n');
    let _ = writeln!(out, "{}", line(&headers));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "{}", rule.join("  "));
    for (r, cells) in result.rows.iter().zip(&rows) {
        let _ = writeln!(out, "{}", line(cells));
        if r.total {
            out.push('\n');
        }
    }
    for l in legend(result) {
        let _ = writeln!(out, "{l}");
    }
    out
}
