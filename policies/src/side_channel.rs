//! DESIGN.md rule 6: no data-dependent side channels through run-time errors. A query over
//! persons either fails for reasons visible in its text, or runs; whether it fails never
//! depends on which persons are in the data.
//!
//! Two measures:
//! - [`check`] refuses (FS-6) scalar functions that can fail on some values, unless the
//!   arguments that could make them fail are constants (written in the query, so a failure
//!   is visible in its text): parsing functions (`to_date`, `to_timestamp`, …), regular
//!   expressions with a computed pattern, `chr`, `power`, and every function not on the
//!   allow-list (fail closed);
//! - [`neutralise`] makes the remaining value-dependent failures impossible: every cast
//!   (written or implied by type coercion) becomes `TRY_CAST` (NULL where it would fail),
//!   and every division or remainder by something other than a non-zero constant divides
//!   by `NULLIF(divisor, 0)` (NULL instead of a division-by-zero error), and `abs(x)`
//!   becomes `CASE WHEN x < 0 THEN -x ELSE x END` (no overflow error). These are documented
//!   differences from standard SQL for analysts.
//! - [`check`] also refuses date arithmetic that could overflow (session 40: `birth_month +
//!   INTERVAL '260120' YEAR` failed only for persons born after 2022): an interval added
//!   to or taken from a value must be a literal, and the literal intervals of a query add
//!   up to at most 50 years, which takes no stored date (1850–2199, as ingest accepts)
//!   past even a nanosecond timestamp's range (1677–2262).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::functions::expr_fn::nullif;
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, LogicalPlan, Operator, TryCast, lit, when};
use datafusion::optimizer::AnalyzerRule;
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;

use crate::decision::{Refusal, Rule};

/// Which arguments of an allowed function must be constants.
#[derive(Debug, Clone, Copy)]
enum Constant {
    /// None: the function cannot fail on any value of its argument types.
    None,
    /// The first argument (a unit or field name, an interval).
    First,
    /// Every argument after the first (patterns, formats, lengths, positions).
    Rest,
    /// All arguments (the function fails on malformed values).
    All,
}

/// Scalar functions allowed in queries over persons, and which arguments must be
/// constants. Names as DataFusion plans them (`EXTRACT` is `date_part`, `SUBSTRING` is
/// `substr`, `TRIM` is `btrim`, `POSITION` is `strpos`).
const ALLOWED: &[(&str, Constant)] = &[
    // Dates and times.
    ("date_part", Constant::First),
    ("datepart", Constant::First),
    ("date_trunc", Constant::First),
    ("datetrunc", Constant::First),
    ("date_bin", Constant::First),
    ("to_char", Constant::Rest),
    ("date_format", Constant::Rest),
    ("to_date", Constant::All),
    ("to_timestamp", Constant::All),
    ("to_timestamp_seconds", Constant::All),
    ("to_timestamp_millis", Constant::All),
    ("to_timestamp_micros", Constant::All),
    ("to_timestamp_nanos", Constant::All),
    ("make_date", Constant::All),
    ("now", Constant::None),
    ("current_date", Constant::None),
    ("current_time", Constant::None),
    ("today", Constant::None),
    // Strings.
    ("upper", Constant::None),
    ("lower", Constant::None),
    ("btrim", Constant::Rest),
    ("ltrim", Constant::Rest),
    ("rtrim", Constant::Rest),
    ("trim", Constant::Rest),
    ("length", Constant::None),
    ("char_length", Constant::None),
    ("character_length", Constant::None),
    ("octet_length", Constant::None),
    ("bit_length", Constant::None),
    ("concat", Constant::None),
    ("concat_ws", Constant::First),
    ("starts_with", Constant::None),
    ("ends_with", Constant::None),
    ("strpos", Constant::None),
    ("instr", Constant::None),
    ("replace", Constant::Rest),
    ("reverse", Constant::None),
    ("initcap", Constant::None),
    ("left", Constant::Rest),
    ("right", Constant::Rest),
    ("substr", Constant::Rest),
    ("substring", Constant::Rest),
    ("split_part", Constant::Rest),
    ("lpad", Constant::Rest),
    ("rpad", Constant::Rest),
    ("translate", Constant::Rest),
    ("ascii", Constant::None),
    ("regexp_like", Constant::Rest),
    ("regexp_match", Constant::Rest),
    ("regexp_replace", Constant::Rest),
    ("regexp_count", Constant::Rest),
    // Conditionals.
    ("coalesce", Constant::None),
    ("nullif", Constant::None),
    ("nvl", Constant::None),
    ("ifnull", Constant::None),
    ("nvl2", Constant::None),
    ("greatest", Constant::None),
    ("least", Constant::None),
    // Numbers (floating point: no overflow errors; integer arguments are widened).
    // `abs` is rewritten by `neutralise` (its integer overflow is an error).
    ("abs", Constant::None),
    ("floor", Constant::None),
    ("ceil", Constant::None),
    ("round", Constant::Rest),
    ("trunc", Constant::Rest),
    ("signum", Constant::None),
    ("sqrt", Constant::None),
    ("cbrt", Constant::None),
    ("exp", Constant::None),
    ("ln", Constant::None),
    ("log", Constant::None),
    ("log2", Constant::None),
    ("log10", Constant::None),
    ("isnan", Constant::None),
    ("iszero", Constant::None),
    ("pi", Constant::None),
];

/// Whether `e` is a constant: written in the query, the same whatever the data.
fn constant(e: &Expr) -> bool {
    !e.is_volatile()
        && !e
            .exists(|x| {
                Ok(matches!(
                    x,
                    Expr::Column(_)
                        | Expr::OuterReferenceColumn(..)
                        | Expr::ScalarSubquery(_)
                        | Expr::InSubquery(_)
                        | Expr::Exists(_)
                        | Expr::Placeholder(_)
                ))
            })
            .unwrap_or(true)
}

/// Date arithmetic in a query over persons adds up to at most this many days of intervals
/// (50 years). Stored dates are in 1850–2199 (ingest refuses others), so no date moved by
/// that much leaves even the range of a nanosecond timestamp (1677–2262), and date ±
/// interval, which fails on overflow, cannot fail on any stored value.
const MAX_INTERVAL_DAYS: f64 = 50.0 * 366.0;

/// The length in days of an interval literal `v` (a month as 31 days), if it is one.
fn interval_days(v: &ScalarValue) -> Option<f64> {
    const NANOS_A_DAY: f64 = 86_400e9;
    Some(match v {
        ScalarValue::IntervalYearMonth(m) => f64::from(m.unwrap_or(0)).abs() * 31.0,
        ScalarValue::IntervalDayTime(d) => d.map_or(0.0, |d| {
            f64::from(d.days).abs() + f64::from(d.milliseconds).abs() / 86_400e3
        }),
        ScalarValue::IntervalMonthDayNano(i) => i.map_or(0.0, |i| {
            f64::from(i.months).abs() * 31.0
                + f64::from(i.days).abs()
                + (i.nanoseconds as f64).abs() / NANOS_A_DAY
        }),
        ScalarValue::DurationSecond(x) => x.map_or(0.0, |x| (x as f64).abs() / 86_400.0),
        ScalarValue::DurationMillisecond(x) => x.map_or(0.0, |x| (x as f64).abs() / 86_400e3),
        ScalarValue::DurationMicrosecond(x) => x.map_or(0.0, |x| (x as f64).abs() / 86_400e6),
        ScalarValue::DurationNanosecond(x) => x.map_or(0.0, |x| (x as f64).abs() / NANOS_A_DAY),
        _ => return None,
    })
}

/// Whether `e` is an interval: an interval literal, a cast to an interval or duration
/// type, or arithmetic that gives one (`INTERVAL '1' DAY * n`, the sum of two intervals).
/// `birth_month + INTERVAL '1' DAY` is a date, not an interval.
fn interval_valued(e: &Expr) -> bool {
    match e {
        Expr::Literal(v, _) => interval_days(v).is_some(),
        Expr::Negative(x) => interval_valued(x),
        Expr::Cast(Cast { field, .. }) | Expr::TryCast(TryCast { field, .. }) => matches!(
            field.data_type(),
            DataType::Interval(_) | DataType::Duration(_)
        ),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Plus | Operator::Minus => interval_valued(left) && interval_valued(right),
            Operator::Multiply | Operator::Divide => {
                interval_valued(left) || interval_valued(right)
            }
            _ => false,
        },
        _ => false,
    }
}

/// The length in days of `e` if it is an interval written as a literal (possibly negated).
fn literal_interval(e: &Expr) -> Option<f64> {
    match e {
        Expr::Literal(v, _) => interval_days(v),
        Expr::Negative(x) => literal_interval(x),
        _ => None,
    }
}

/// Refuses (FS-6) scalar functions that could fail on some data values, and date
/// arithmetic that could overflow on some (an interval computed from the data, or
/// intervals adding up to more than [`MAX_INTERVAL_DAYS`]: `birth_month + INTERVAL
/// '260120' YEAR` failed exactly for persons born after 2022, session 40).
pub fn check(plan: &LogicalPlan) -> Result<(), Refusal> {
    let mut refusal: Option<Refusal> = None;
    let mut interval_total = 0.0f64;
    let walk = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|x| {
                if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = x
                    && matches!(op, Operator::Plus | Operator::Minus)
                {
                    for side in [left, right] {
                        if !interval_valued(side) {
                            continue;
                        }
                        match literal_interval(side) {
                            Some(days) => interval_total += days,
                            None => {
                                refusal = Some(Refusal::new(
                                    Rule::SideChannel,
                                    "an interval added to or taken from a date must be \
                                     written as a literal (INTERVAL '30' DAY): a computed one \
                                     could overflow on some values only, and whether a query \
                                     fails must not depend on the data",
                                ));
                                return Ok(TreeNodeRecursion::Stop);
                            }
                        }
                    }
                }
                if let Expr::ScalarFunction(f) = x {
                    let name = f.name().to_ascii_lowercase();
                    let why = match ALLOWED.iter().find(|(n, _)| *n == name) {
                        None => Some(format!(
                            "the function {name} is not allowed over personal data: it could \
                             fail on some values, and whether a query fails must not depend \
                             on the data"
                        )),
                        Some((_, rule)) => {
                            let must: Vec<&Expr> = match rule {
                                Constant::None => Vec::new(),
                                Constant::First => f.args.iter().take(1).collect(),
                                Constant::Rest => f.args.iter().skip(1).collect(),
                                Constant::All => f.args.iter().collect(),
                            };
                            (!must.into_iter().all(constant)).then(|| {
                                format!(
                                    "{name} over personal data needs constant {} (a computed \
                                     one could fail on some values only); use CAST or \
                                     TRY_CAST to convert values",
                                    match rule {
                                        Constant::First => "first argument",
                                        Constant::Rest => "arguments after the first",
                                        _ => "arguments",
                                    }
                                )
                            })
                        }
                    };
                    if let Some(why) = why {
                        refusal = Some(Refusal::new(Rule::SideChannel, why));
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    if let Err(e) = walk {
        return Err(Refusal::new(Rule::Unsupported, e.to_string()));
    }
    if refusal.is_none() && interval_total > MAX_INTERVAL_DAYS {
        refusal = Some(Refusal::new(
            Rule::SideChannel,
            "the intervals added to or taken from dates add up to more than 50 years: date \
             arithmetic that far could overflow on some values only, and whether a query \
             fails must not depend on the data",
        ));
    }
    refusal.map_or(Ok(()), Err)
}

/// Whether `e` is a non-zero numeric literal.
fn nonzero_literal(e: &Expr) -> bool {
    match e {
        Expr::Literal(v, _) => !v.is_null() && !is_zero(v),
        _ => false,
    }
}

fn is_zero(v: &ScalarValue) -> bool {
    ScalarValue::new_zero(&v.data_type()).is_ok_and(|z| &z == v)
        || matches!(v, ScalarValue::Float64(Some(f)) if *f == 0.0)
        || matches!(v, ScalarValue::Float32(Some(f)) if *f == 0.0)
}

/// Makes run-time failures that depend on values impossible: casts become `TRY_CAST`
/// (after type coercion has made implied casts explicit), divisors become
/// `NULLIF(divisor, 0)` unless they are non-zero constants.
pub fn neutralise(plan: LogicalPlan) -> Result<LogicalPlan, DataFusionError> {
    let plan = TypeCoercion::new().analyze(plan, &ConfigOptions::default())?;
    let plan = plan
        .transform_up_with_subqueries(|node| {
            node.map_expressions(|e| {
                e.transform_up(|x| {
                    Ok(match x {
                        Expr::Cast(c) => Transformed::yes(Expr::TryCast(TryCast::new_from_field(
                            c.expr, c.field,
                        ))),
                        Expr::BinaryExpr(BinaryExpr { left, op, right })
                            if matches!(op, Operator::Divide | Operator::Modulo)
                                && !nonzero_literal(&right) =>
                        {
                            let zero = match &*right {
                                Expr::Literal(v, _) => ScalarValue::new_zero(&v.data_type())
                                    .map(lit)
                                    .unwrap_or(lit(0i64)),
                                _ => lit(0i64),
                            };
                            Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                                left,
                                op,
                                right: Box::new(nullif(*right, zero)),
                            }))
                        }
                        // abs(x) fails on the smallest integer; CASE with (wrapping)
                        // negation gives the same values and type and never fails.
                        Expr::ScalarFunction(f)
                            if f.name().eq_ignore_ascii_case("abs") && f.args.len() == 1 =>
                        {
                            let x = f.args[0].clone();
                            Transformed::yes(
                                when(x.clone().lt(lit(0i64)), Expr::Negative(Box::new(x.clone())))
                                    .otherwise(x)?,
                            )
                        }
                        other => Transformed::no(other),
                    })
                })
            })
        })?
        .data;
    Ok(plan)
}
