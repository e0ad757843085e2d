//! Binding a report's parameters: caller text → validated values → SQL.
//!
//! Every parameter is parsed into a typed [`ParamValue`] (an allowed enumeration value, an
//! ISO date in range, an integer in range) before anything is built from it, and the SQL
//! placeholders (see [`super::template`]) are filled only from those values and from fixed
//! fragments chosen by enumerations: caller text never reaches SQL.
//!
//! Periods: `period = month` runs over calendar months, `period = financial_year` over NHS
//! financial years (1 April to 31 March, labelled `2023-24`). The range `from..=to` must
//! consist of whole periods (`from` the first day of one, `to` the last day of one), so that
//! every released number covers the period its label names; at most [`MAX_PERIODS`] periods.
//! Each period has a *midpoint*, `start + ⌊(end − start) / 2⌋` (the 15th or 16th of a month,
//! 30 September of a financial year), at which registered populations are counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use fivesafes_engine::dates::{
    civil_from_days, days_from_civil, days_in_month, format_ymd, parse_ymd,
};

use super::definition::{ParamDef, ParamKind, ReportDef};
use super::error::{ReportError, shorten};
use super::template::{Segment, Template};

/// Most periods one report run may cover (ten years of months).
pub const MAX_PERIODS: usize = 120;

/// A validated parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// One of the parameter's allowed values.
    Choice(String),
    /// A date (Date32 day number).
    Date(i32),
    /// An integer.
    Integer(i64),
}

impl ParamValue {
    /// The value as a SQL literal: `'value'`, `DATE 'YYYY-MM-DD'` or an integer. Safe by
    /// construction: enumeration values are `[A-Za-z0-9_-]+`, checked when the definition
    /// is loaded.
    pub fn sql_literal(&self) -> String {
        match self {
            ParamValue::Choice(v) => format!("'{v}'"),
            ParamValue::Date(d) => format!("DATE '{}'", format_ymd(*d)),
            ParamValue::Integer(i) => i.to_string(),
        }
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Choice(v) => f.write_str(v),
            ParamValue::Date(d) => f.write_str(&format_ymd(*d)),
            ParamValue::Integer(i) => write!(f, "{i}"),
        }
    }
}

/// Parses `text` as a value of parameter `def`; the error says what is allowed.
pub(crate) fn parse_value(def: &ParamDef, text: &str) -> Result<ParamValue, String> {
    let got = shorten(text);
    match &def.kind {
        ParamKind::Choice { allowed } => allowed
            .iter()
            .find(|a| a.as_str() == text)
            .map(|a| ParamValue::Choice(a.clone()))
            .ok_or_else(|| format!("{got:?} is not allowed; expected {}", def.expected())),
        ParamKind::Date { min, max } => {
            let d = parse_ymd(text.as_bytes())
                .ok_or_else(|| format!("{got:?} is not a date; expected {}", def.expected()))?;
            if d < *min || d > *max {
                return Err(format!(
                    "{got} is out of range; expected {}",
                    def.expected()
                ));
            }
            Ok(ParamValue::Date(d))
        }
        ParamKind::Integer { min, max } => {
            let digits = text.strip_prefix('-').unwrap_or(text);
            let shaped = !digits.is_empty()
                && digits.len() <= 18
                && digits.chars().all(|c| c.is_ascii_digit());
            let i = shaped
                .then(|| text.parse::<i64>().ok())
                .flatten()
                .ok_or_else(|| format!("{got:?} is not an integer; expected {}", def.expected()))?;
            if i < *min || i > *max {
                return Err(format!("{i} is out of range; expected {}", def.expected()));
            }
            Ok(ParamValue::Integer(i))
        }
    }
}

/// The geography a report is broken down by (parameter `by`), from the `practices` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AreaLevel {
    /// GP practice (`practices.practice_code`).
    Practice,
    /// Sub-ICB location (`practices.sub_icb_code`).
    SubIcb,
    /// NHS England region (`practices.region`).
    Region,
}

impl AreaLevel {
    /// The values of parameter `by`, in this order.
    pub const NAMES: [&'static str; 3] = ["practice", "sub_icb", "region"];

    /// From a value of parameter `by`.
    pub fn from_name(name: &str) -> Option<AreaLevel> {
        match name {
            "practice" => Some(AreaLevel::Practice),
            "sub_icb" => Some(AreaLevel::SubIcb),
            "region" => Some(AreaLevel::Region),
            _ => None,
        }
    }

    /// The value of parameter `by`.
    pub fn name(self) -> &'static str {
        match self {
            AreaLevel::Practice => "practice",
            AreaLevel::SubIcb => "sub_icb",
            AreaLevel::Region => "region",
        }
    }

    /// The column of `practices` holding the area.
    pub fn column(self) -> &'static str {
        match self {
            AreaLevel::Practice => "practice_code",
            AreaLevel::SubIcb => "sub_icb_code",
            AreaLevel::Region => "region",
        }
    }

    /// A heading for the area column.
    pub fn label(self) -> &'static str {
        match self {
            AreaLevel::Practice => "GP practice",
            AreaLevel::SubIcb => "Sub-ICB location",
            AreaLevel::Region => "Region",
        }
    }
}

/// The time grain of a report (parameter `period`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    /// Calendar months, labelled `2023-04`.
    Month,
    /// NHS financial years (April to March), labelled `2023-24`.
    FinancialYear,
}

impl PeriodKind {
    /// The values of parameter `period`, in this order.
    pub const NAMES: [&'static str; 2] = ["month", "financial_year"];

    /// From a value of parameter `period`.
    pub fn from_name(name: &str) -> Option<PeriodKind> {
        match name {
            "month" => Some(PeriodKind::Month),
            "financial_year" => Some(PeriodKind::FinancialYear),
            _ => None,
        }
    }

    /// The value of parameter `period`.
    pub fn name(self) -> &'static str {
        match self {
            PeriodKind::Month => "month",
            PeriodKind::FinancialYear => "financial_year",
        }
    }
}

/// One period of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Its label: `2023-04` or `2023-24`.
    pub label: String,
    /// First day (Date32).
    pub start: i32,
    /// Last day, inclusive (Date32).
    pub end: i32,
    /// The day registered populations are counted on: `start + ⌊(end − start) / 2⌋`.
    pub midpoint: i32,
}

impl Period {
    fn new(label: String, start: i32, end: i32) -> Period {
        Period {
            label,
            start,
            end,
            midpoint: start + (end - start) / 2,
        }
    }
}

/// The periods covering `from..=to` exactly, or why there are none.
pub fn periods(kind: PeriodKind, from: i32, to: i32) -> Result<Vec<Period>, String> {
    if from > to {
        return Err(format!(
            "from ({}) is after to ({})",
            format_ymd(from),
            format_ymd(to)
        ));
    }
    let (fy, fm, fd) = civil_from_days(from);
    let (ty, tm, td) = civil_from_days(to);
    let mut out = Vec::new();
    match kind {
        PeriodKind::Month => {
            if fd != 1 {
                return Err(format!(
                    "from must be the first day of a month when period = month (e.g. {})",
                    format_ymd(days_from_civil(fy, fm, 1))
                ));
            }
            if td != days_in_month(ty, tm) {
                return Err(format!(
                    "to must be the last day of a month when period = month (e.g. {})",
                    format_ymd(days_from_civil(ty, tm, days_in_month(ty, tm)))
                ));
            }
            let (mut y, mut m) = (fy, fm);
            loop {
                let start = days_from_civil(y, m, 1);
                if start > to || out.len() > MAX_PERIODS {
                    break;
                }
                let end = days_from_civil(y, m, days_in_month(y, m));
                out.push(Period::new(format!("{y:04}-{m:02}"), start, end));
                (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            }
        }
        PeriodKind::FinancialYear => {
            if (fm, fd) != (4, 1) {
                return Err(format!(
                    "from must be 1 April when period = financial_year (e.g. {})",
                    format_ymd(days_from_civil(if fm >= 4 { fy } else { fy - 1 }, 4, 1))
                ));
            }
            if (tm, td) != (3, 31) {
                return Err(format!(
                    "to must be 31 March when period = financial_year (e.g. {})",
                    format_ymd(days_from_civil(if tm > 3 { ty + 1 } else { ty }, 3, 31))
                ));
            }
            for y in fy..ty {
                if out.len() > MAX_PERIODS {
                    break;
                }
                let start = days_from_civil(y, 4, 1);
                let end = days_from_civil(y + 1, 3, 31);
                let label = format!("{y:04}-{:02}", (y + 1).rem_euclid(100));
                out.push(Period::new(label, start, end));
            }
        }
    }
    if out.len() > MAX_PERIODS {
        return Err(format!(
            "the range covers more than {MAX_PERIODS} periods; shorten it or use a coarser period"
        ));
    }
    Ok(out)
}

/// A report with validated parameters, ready to run.
#[derive(Debug, Clone)]
pub struct BoundReport {
    /// The definition.
    def: Arc<ReportDef>,
    /// Every parameter's value (given or default), by name.
    values: BTreeMap<String, ParamValue>,
    /// The area level (`by`).
    area: AreaLevel,
    /// The period kind (`period`).
    period: PeriodKind,
    /// The periods of `from..=to`.
    periods: Vec<Period>,
}

/// Validates `given` against `def`: unknown parameters, missing required ones, bad or
/// out-of-range values and ranges that are not whole periods are errors listing what is
/// allowed.
pub fn bind(
    def: Arc<ReportDef>,
    given: &BTreeMap<String, String>,
) -> Result<BoundReport, ReportError> {
    let report = def.name.clone();
    if let Some(unknown) = given.keys().find(|k| def.parameter(k).is_none()) {
        return Err(ReportError::UnknownParameter {
            report,
            name: shorten(unknown),
            allowed: def.parameters.iter().map(|p| p.name.clone()).collect(),
        });
    }
    let mut values = BTreeMap::new();
    for p in &def.parameters {
        let text = match (given.get(&p.name), &p.default) {
            (Some(v), _) => v.as_str(),
            (None, Some(d)) => d.as_str(),
            (None, None) => {
                return Err(ReportError::MissingParameter {
                    report,
                    name: p.name.clone(),
                    expected: p.expected(),
                });
            }
        };
        let value = parse_value(p, text).map_err(|message| ReportError::InvalidParameter {
            report: report.clone(),
            name: p.name.clone(),
            message,
        })?;
        values.insert(p.name.clone(), value);
    }
    let choice = |n: &str| match values.get(n) {
        Some(ParamValue::Choice(v)) => Some(v.as_str()),
        _ => None,
    };
    let date = |n: &str| match values.get(n) {
        Some(ParamValue::Date(d)) => Some(*d),
        _ => None,
    };
    // The definition's checks guarantee these four parameters and their types.
    let invalid = |name: &str, message: String| ReportError::InvalidParameter {
        report: report.clone(),
        name: name.to_string(),
        message,
    };
    let area = choice("by")
        .and_then(AreaLevel::from_name)
        .ok_or_else(|| invalid("by", "missing".into()))?;
    let period = choice("period")
        .and_then(PeriodKind::from_name)
        .ok_or_else(|| invalid("period", "missing".into()))?;
    let (from, to) = date("from")
        .zip(date("to"))
        .ok_or_else(|| invalid("from/to", "missing".into()))?;
    let periods = periods(period, from, to).map_err(|m| invalid("from/to", m))?;
    Ok(BoundReport {
        def,
        values,
        area,
        period,
        periods,
    })
}

impl BoundReport {
    /// The report's definition.
    pub fn def(&self) -> &ReportDef {
        &self.def
    }

    /// The definition, shared.
    pub fn def_arc(&self) -> Arc<ReportDef> {
        Arc::clone(&self.def)
    }

    /// Every parameter's value (given or default), by name.
    pub fn values(&self) -> &BTreeMap<String, ParamValue> {
        &self.values
    }

    /// One parameter's value.
    pub fn value(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name)
    }

    /// The area level (parameter `by`).
    pub fn area_level(&self) -> AreaLevel {
        self.area
    }

    /// The period kind (parameter `period`).
    pub fn period_kind(&self) -> PeriodKind {
        self.period
    }

    /// The periods covered, in order.
    pub fn periods(&self) -> &[Period] {
        &self.periods
    }

    /// The report and its parameter values as one line, `name k=v k=v` in name order: what
    /// the audit log records as the statement.
    pub fn statement(&self) -> String {
        let mut s = self.def.name.clone();
        for (k, v) in &self.values {
            let _ = write!(s, " {k}={v}");
        }
        s
    }

    /// The numerator's SQL with every placeholder filled.
    pub fn numerator_sql(&self) -> String {
        self.render(&self.def.numerator.template)
    }

    /// The denominator's SQL with every placeholder filled.
    pub fn denominator_sql(&self) -> String {
        self.render(&self.def.denominator.template)
    }

    /// The SQL listing the report's areas (public reference data): `area` and, by
    /// practice, the practice name as `area_name`.
    pub fn areas_sql(&self) -> String {
        match self.area {
            AreaLevel::Practice => "SELECT p.practice_code AS area, MAX(p.practice_name) AS \
                                    area_name FROM practices p GROUP BY p.practice_code"
                .to_string(),
            level => format!(
                "SELECT p.{c} AS area, CAST(NULL AS VARCHAR) AS area_name FROM practices p \
                 GROUP BY p.{c}",
                c = level.column()
            ),
        }
    }

    /// Fills a template's placeholders.
    fn render(&self, t: &Template) -> String {
        let mut sql = String::new();
        for seg in &t.segments {
            match seg {
                Segment::Text(s) => sql.push_str(s),
                Segment::Area(alias) => {
                    let _ = write!(sql, "{alias}.{}", self.area.column());
                }
                Segment::Period(column) => sql.push_str(&self.period_expr(column)),
                Segment::Periods => sql.push_str(&self.periods_table()),
                Segment::Param(name) => {
                    // The definition's checks guarantee every referenced parameter exists;
                    // NULL keeps a broken definition from planning rather than guessing.
                    let lit = self
                        .values
                        .get(name)
                        .map_or_else(|| "NULL".to_string(), ParamValue::sql_literal);
                    sql.push_str(&lit);
                }
            }
        }
        sql
    }

    /// The period label of date column `column`: `to_char` for months; for financial years
    /// a `CASE` over the report's periods (dates outside them give NULL).
    fn period_expr(&self, column: &str) -> String {
        match self.period {
            PeriodKind::Month => format!("to_char({column}, '%Y-%m')"),
            PeriodKind::FinancialYear => {
                let mut s = String::from("CASE");
                for p in &self.periods {
                    let _ = write!(
                        s,
                        " WHEN {column} BETWEEN DATE '{}' AND DATE '{}' THEN '{}'",
                        format_ymd(p.start),
                        format_ymd(p.end),
                        p.label
                    );
                }
                s.push_str(" END");
                s
            }
        }
    }

    /// `(VALUES ('label', DATE 'start', DATE 'end', DATE 'midpoint'), …)`.
    fn periods_table(&self) -> String {
        let rows: Vec<String> = self
            .periods
            .iter()
            .map(|p| {
                format!(
                    "('{}', DATE '{}', DATE '{}', DATE '{}')",
                    p.label,
                    format_ymd(p.start),
                    format_ymd(p.end),
                    format_ymd(p.midpoint)
                )
            })
            .collect();
        format!("(VALUES {})", rows.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> i32 {
        parse_ymd(s.as_bytes()).expect("date")
    }

    #[test]
    fn financial_years_and_midpoints() {
        let p =
            periods(PeriodKind::FinancialYear, d("2022-04-01"), d("2024-03-31")).expect("periods");
        let got: Vec<(String, String, String, String)> = p
            .iter()
            .map(|p| {
                (
                    p.label.clone(),
                    format_ymd(p.start),
                    format_ymd(p.end),
                    format_ymd(p.midpoint),
                )
            })
            .collect();
        let want = [
            ("2022-23", "2022-04-01", "2023-03-31", "2022-09-30"),
            ("2023-24", "2023-04-01", "2024-03-31", "2023-09-30"),
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1.as_str(), g.2.as_str(), g.3.as_str()), w);
        }
        let p =
            periods(PeriodKind::FinancialYear, d("1999-04-01"), d("2000-03-31")).expect("periods");
        assert_eq!(p[0].label, "1999-00");
    }

    #[test]
    fn months_and_midpoints() {
        let p = periods(PeriodKind::Month, d("2023-11-01"), d("2024-02-29")).expect("periods");
        let labels: Vec<&str> = p.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["2023-11", "2023-12", "2024-01", "2024-02"]);
        // 30 days: the 15th; 31 days: the 16th; 29 days: the 15th.
        assert_eq!(format_ymd(p[0].midpoint), "2023-11-15");
        assert_eq!(format_ymd(p[1].midpoint), "2023-12-16");
        assert_eq!(format_ymd(p[3].midpoint), "2024-02-15");
    }

    #[test]
    fn ranges_must_be_whole_periods() {
        let e = periods(PeriodKind::Month, d("2023-11-02"), d("2024-02-29"));
        assert!(e.expect_err("mid-month").contains("2023-11-01"));
        let e = periods(PeriodKind::Month, d("2023-11-01"), d("2024-02-28"));
        assert!(e.expect_err("not month end").contains("2024-02-29"));
        let e = periods(PeriodKind::FinancialYear, d("2023-01-01"), d("2024-03-31"));
        assert!(e.expect_err("not April").contains("2022-04-01"));
        let e = periods(PeriodKind::FinancialYear, d("2023-04-01"), d("2024-04-30"));
        assert!(e.expect_err("not March").contains("2025-03-31"));
        let e = periods(PeriodKind::Month, d("2024-04-01"), d("2024-03-31"));
        assert!(e.expect_err("reversed").contains("after"));
        let e = periods(PeriodKind::Month, d("2000-01-01"), d("2010-01-31"));
        assert!(e.expect_err("too long").contains("more than 120"));
        assert_eq!(
            periods(PeriodKind::Month, d("2000-01-01"), d("2009-12-31"))
                .expect("exactly 120")
                .len(),
            120
        );
    }
}
