//! Report definitions: what a canned report computes, read from TOML files (see
//! `policies/reports/README.md` for the format) and checked when loaded, so that a broken
//! file fails at start-up with its name and the reason rather than when a commissioner runs
//! it.
//!
//! Every report releases the same shape of table (see [`OUTPUT_COLUMNS`]): a numerator and a
//! denominator per area and period, each a separately protected count, and the rate between
//! them. The parameters `by`, `period`, `from` and `to` are required in every definition
//! because the report engine itself interprets them (areas, periods and their registered
//! populations); a definition may add integer, date or enumeration parameters of its own
//! for its SQL.

use fivesafes_engine::dates::{format_ymd, parse_ymd};
use serde::Deserialize;

use super::error::ReportError;
use super::params::{AreaLevel, PeriodKind};
use super::template::{Segment, Template};

/// The columns of every report's result, in order: group keys, the two released counts,
/// the rate, and flags.
pub const OUTPUT_COLUMNS: [&str; 8] = [
    "area",
    "area_name",
    "period",
    "numerator",
    "denominator",
    "rate",
    "suppressed",
    "total",
];

/// Earliest date a date parameter may take unless the definition says otherwise.
pub const DEFAULT_MIN_DATE: &str = "1990-01-01";
/// Latest date a date parameter may take unless the definition says otherwise.
pub const DEFAULT_MAX_DATE: &str = "2099-12-31";

/// One canned report, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportDef {
    /// Stable name used to run it, e.g. `emergency-admissions` (`[a-z0-9-]{3,64}`).
    pub name: String,
    /// One-line title, e.g. "Emergency admissions per 1,000 registered patients".
    pub title: String,
    /// What the report shows and how to read it.
    pub description: String,
    /// The rate is `numerator / denominator × multiplier` (1,000, 100,000, 100 for a
    /// percentage).
    pub multiplier: f64,
    /// The rate's unit as shown to readers, e.g. "per 1,000 registered patients".
    pub rate_unit: String,
    /// The published indicator the report follows.
    pub indicator: Indicator,
    /// The parameters, in the order they are documented.
    pub parameters: Vec<ParamDef>,
    /// Labels and descriptions of the output columns, in [`OUTPUT_COLUMNS`] order.
    pub columns: Vec<ColumnDef>,
    /// What is counted above the line.
    pub numerator: Measure,
    /// What is counted below the line.
    pub denominator: Measure,
}

/// The published indicator definition a report follows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Indicator {
    /// The indicator's name and code, e.g. "NHS Outcomes Framework 2.3.i".
    pub name: String,
    /// Who publishes it.
    pub source: String,
    /// Where its specification is (a citation or an address).
    pub reference: String,
    /// How this report implements it, including where it departs from it.
    pub method: String,
}

/// Label and description of one output column.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    /// The column name (one of [`OUTPUT_COLUMNS`]).
    pub name: String,
    /// Its heading in rendered reports.
    pub label: String,
    /// What it holds.
    pub description: String,
}

/// A numerator or denominator: a label and the SQL that counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measure {
    /// Short label, e.g. "Emergency admissions".
    pub label: String,
    /// What is counted, precisely.
    pub description: String,
    /// The SQL template as written (see [`super::template`] for the placeholders). It must
    /// return the columns `area`, `period` and `value` (a count).
    pub sql: String,
    /// The parsed template.
    pub(crate) template: Template,
}

/// A report parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDef {
    /// Its name (`[a-z_][a-z0-9_]*`).
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its type and the values it may take.
    pub kind: ParamKind,
    /// The value used when the caller gives none (`None`: required). Always valid.
    pub default: Option<String>,
}

/// The type of a parameter and its allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamKind {
    /// One of a fixed list of values.
    Choice {
        /// The allowed values (`[A-Za-z0-9_-]+`).
        allowed: Vec<String>,
    },
    /// An ISO date `YYYY-MM-DD` in `min..=max` (Date32 day numbers).
    Date {
        /// Earliest allowed.
        min: i32,
        /// Latest allowed.
        max: i32,
    },
    /// An integer in `min..=max`.
    Integer {
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
}

impl ParamDef {
    /// The type as the reports API names it: `string` (an enumeration), `date` or
    /// `integer`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ParamKind::Choice { .. } => "string",
            ParamKind::Date { .. } => "date",
            ParamKind::Integer { .. } => "integer",
        }
    }

    /// The allowed values of an enumeration (empty for other types).
    pub fn allowed(&self) -> &[String] {
        match &self.kind {
            ParamKind::Choice { allowed } => allowed,
            _ => &[],
        }
    }

    /// What a valid value looks like, for error messages and help: "one of a, b",
    /// "a date YYYY-MM-DD from … to …", "an integer from … to …".
    pub fn expected(&self) -> String {
        match &self.kind {
            ParamKind::Choice { allowed } => format!("one of {}", allowed.join(", ")),
            ParamKind::Date { min, max } => format!(
                "a date YYYY-MM-DD from {} to {}",
                format_ymd(*min),
                format_ymd(*max)
            ),
            ParamKind::Integer { min, max } => format!("an integer from {min} to {max}"),
        }
    }
}

impl ReportDef {
    /// Parses and checks a definition. `source_name` names the file in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<ReportDef, ReportError> {
        let err = |message: String| ReportError::Definition {
            source_name: source_name.to_string(),
            message,
        };
        let raw: RawReport = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let def = raw.check().map_err(err)?;
        Ok(def)
    }

    /// The parameter called `name`.
    pub fn parameter(&self, name: &str) -> Option<&ParamDef> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// The label of output column `name` (the name itself if unknown).
    pub fn label<'a>(&'a self, name: &'a str) -> &'a str {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map_or(name, |c| c.label.as_str())
    }

    /// The indicator definition as one paragraph (for listings: the `definition` field of
    /// the reports API).
    pub fn definition_text(&self) -> String {
        format!(
            "{} ({}). {} Reference: {}",
            self.indicator.name,
            self.indicator.source,
            self.indicator.method.trim(),
            self.indicator.reference
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The file format, as read, and its checks.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    name: String,
    title: String,
    description: String,
    multiplier: f64,
    rate_unit: String,
    indicator: Indicator,
    parameters: Vec<RawParam>,
    columns: Vec<ColumnDef>,
    numerator: RawMeasure,
    denominator: RawMeasure,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeasure {
    label: String,
    description: String,
    sql: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    name: String,
    description: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    allowed: Vec<String>,
    default: Option<toml::Value>,
    min: Option<toml::Value>,
    max: Option<toml::Value>,
}

/// A TOML scalar as text (strings as they are, dates and integers formatted).
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => Some(d.to_string()),
        _ => None,
    }
}

fn date_bound(v: Option<&toml::Value>, fallback: &str, what: &str) -> Result<i32, String> {
    let text = match v {
        Some(v) => scalar(v).ok_or_else(|| format!("{what} must be a date"))?,
        None => fallback.to_string(),
    };
    parse_ymd(text.as_bytes()).ok_or_else(|| format!("{what}: {text:?} is not a date YYYY-MM-DD"))
}

fn int_bound(v: Option<&toml::Value>, fallback: i64, what: &str) -> Result<i64, String> {
    match v {
        None => Ok(fallback),
        Some(toml::Value::Integer(i)) => Ok(*i),
        Some(_) => Err(format!("{what} must be an integer")),
    }
}

/// Whether `s` may be an enumeration value (it becomes a quoted SQL literal).
fn plain_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn plain_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl RawParam {
    fn check(self) -> Result<ParamDef, String> {
        let name = self.name;
        if !plain_name(&name) {
            return Err(format!(
                "parameter name {name:?} must be lower case letters, digits and _"
            ));
        }
        let what = |field: &str| format!("parameter {name}: {field}");
        if (!self.allowed.is_empty()) && self.kind != "string" {
            return Err(what("`allowed` is only for type = \"string\""));
        }
        let kind = match self.kind.as_str() {
            "string" => {
                if self.min.is_some() || self.max.is_some() {
                    return Err(what("`min`/`max` are not for type = \"string\""));
                }
                if self.allowed.is_empty() {
                    return Err(what(
                        "type = \"string\" needs `allowed` (free text never reaches SQL)",
                    ));
                }
                if let Some(bad) = self.allowed.iter().find(|v| !plain_value(v)) {
                    return Err(what(&format!(
                        "allowed value {bad:?} must be letters, digits, _ and -"
                    )));
                }
                let mut seen = self.allowed.clone();
                seen.sort();
                seen.dedup();
                if seen.len() != self.allowed.len() {
                    return Err(what("`allowed` lists a value twice"));
                }
                ParamKind::Choice {
                    allowed: self.allowed,
                }
            }
            "date" => {
                let min = date_bound(self.min.as_ref(), DEFAULT_MIN_DATE, &what("min"))?;
                let max = date_bound(self.max.as_ref(), DEFAULT_MAX_DATE, &what("max"))?;
                if min > max {
                    return Err(what("min is after max"));
                }
                ParamKind::Date { min, max }
            }
            "integer" => {
                let min = int_bound(self.min.as_ref(), 0, &what("min"))?;
                let max = int_bound(self.max.as_ref(), i64::from(i32::MAX), &what("max"))?;
                if min > max {
                    return Err(what("min is greater than max"));
                }
                ParamKind::Integer { min, max }
            }
            other => {
                return Err(what(&format!(
                    "type {other:?} is not one of \"string\", \"date\", \"integer\""
                )));
            }
        };
        let default = match &self.default {
            None => None,
            Some(v) => Some(
                scalar(v).ok_or_else(|| what("default must be a string, a date or an integer"))?,
            ),
        };
        let def = ParamDef {
            name: name.clone(),
            description: self.description,
            kind,
            default,
        };
        if let Some(d) = &def.default {
            super::params::parse_value(&def, d)
                .map_err(|m| what(&format!("default {d:?}: {m}")))?;
        }
        Ok(def)
    }
}

impl RawMeasure {
    fn check(self, which: &str) -> Result<Measure, String> {
        let template = Template::parse(&self.sql).map_err(|m| format!("{which}.sql: {m}"))?;
        Ok(Measure {
            label: self.label,
            description: self.description,
            sql: self.sql,
            template,
        })
    }
}

impl RawReport {
    fn check(self) -> Result<ReportDef, String> {
        let name = self.name;
        let name_ok = (3..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(format!(
                "name {name:?} must be 3 to 64 characters from a-z, 0-9 and -"
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier > 0.0) {
            return Err("multiplier must be a positive number".into());
        }
        for (field, value) in [
            ("title", &self.title),
            ("description", &self.description),
            ("rate_unit", &self.rate_unit),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{field} must not be empty"));
            }
        }
        let parameters = self
            .parameters
            .into_iter()
            .map(RawParam::check)
            .collect::<Result<Vec<_>, _>>()?;
        for (i, p) in parameters.iter().enumerate() {
            if parameters[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("parameter {} is defined twice", p.name));
            }
        }
        // The parameters the report engine interprets itself.
        let find = |n: &str| parameters.iter().find(|p| p.name == n);
        let choice_within = |n: &str, known: &[&str]| -> Result<(), String> {
            match find(n).map(|p| &p.kind) {
                Some(ParamKind::Choice { allowed }) => {
                    match allowed.iter().find(|v| !known.contains(&v.as_str())) {
                        Some(v) => Err(format!(
                            "parameter {n}: value {v:?} is not one of {}",
                            known.join(", ")
                        )),
                        None => Ok(()),
                    }
                }
                _ => Err(format!(
                    "parameter {n} (type = \"string\") is required in every report"
                )),
            }
        };
        choice_within("by", &AreaLevel::NAMES)?;
        choice_within("period", &PeriodKind::NAMES)?;
        for n in ["from", "to"] {
            if !matches!(find(n).map(|p| &p.kind), Some(ParamKind::Date { .. })) {
                return Err(format!(
                    "parameter {n} (type = \"date\") is required in every report"
                ));
            }
        }
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        if names != OUTPUT_COLUMNS {
            return Err(format!(
                "columns must be, in this order: {} (found {})",
                OUTPUT_COLUMNS.join(", "),
                names.join(", ")
            ));
        }
        let numerator = self.numerator.check("numerator")?;
        let denominator = self.denominator.check("denominator")?;
        for (which, m) in [("numerator", &numerator), ("denominator", &denominator)] {
            if let Some(p) = m.template.params().find(|p| find(p).is_none()) {
                return Err(format!("{which}.sql refers to unknown parameter {p:?}"));
            }
            let has = |f: fn(&Segment) -> bool| m.template.segments.iter().any(f);
            if !has(|s| matches!(s, Segment::Area(_))) {
                return Err(format!("{which}.sql must group by {{{{area(…)}}}}"));
            }
            if !has(|s| matches!(s, Segment::Period(_) | Segment::Periods)) {
                return Err(format!(
                    "{which}.sql must group by {{{{period(…)}}}} or the {{{{periods}}}} table"
                ));
            }
        }
        Ok(ReportDef {
            name,
            title: self.title,
            description: self.description,
            multiplier: self.multiplier,
            rate_unit: self.rate_unit,
            indicator: self.indicator,
            parameters,
            columns: self.columns,
            numerator,
            denominator,
        })
    }
}
