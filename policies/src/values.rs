//! DESIGN.md rule 7 for the values an analyst's aggregate adds up.
//!
//! Rule 7 measures conditions where they select rows (`WHERE`, `HAVING`, join conditions,
//! cohort subqueries) and grouping keys. A condition can also hide inside the value an
//! aggregate reads: `SUM(CASE WHEN birth_month <> x THEN 1 ELSE 0 END)` counts the persons of
//! the cell but one, and a sum of ones is released almost exactly (its noise follows the
//! largest contribution, 1), so comparing it with `SUM(1)` showed whether the person born in
//! `x` is in the cell (29 against 28 on the attack fixture). `COUNT(x)` counts the rows where
//! `x` is not NULL, so `NULLIF`, a division by a column (a division by zero gives NULL, rule
//! 6) or a `FILTER` clause do the same.
//!
//! Such conditions cannot be measured per row without measuring each aggregate separately,
//! so an analyst's cell aggregate over persons may only read *plain* values (FS-7 otherwise):
//! a column, a constant, a cast that keeps every value (to a string, an integer widened:
//! one past its range is NULL there, a condition, session 49), `date_part` of a plain
//! value, or a plain value shifted,
//! scaled or divided by a constant, traced through projections, joins and per-person
//! aggregations (whose own aggregates must read plain values, without `FILTER`) down to the
//! tables. These change a value the same way for every person, so no person can be singled
//! out by them. A condition goes in `WHERE`, where it is measured, or in `GROUP BY`.
//!
//! A `SUM` or `AVG` reads more than whether a value is NULL: it adds the values up, so the
//! arithmetic on them must also treat every value alike ([`linear`], session 51). Three
//! kinds of arithmetic do not, and each made a condition inside a sum:
//!
//! - **division that rounds**: integers and decimals divide with a rounded result, so
//!   `SUM((startage + 950) / 1000)` counted the episodes of age 50 and over (920 on the
//!   attack fixture) and `(startage + 949) / 1000` those of 51 and over (896): an edge on
//!   ages that `WHERE` would have snapped;
//! - **integer arithmetic that wraps** past its type's range (DataFusion does not fail on
//!   it): `(x - v) * 2^58` is 0 exactly where `x` is `v` or `v ± 64`;
//! - **floating point pushed past its range or precision**: a factor that overflows some
//!   values to infinity (`(x - v) * 1e308 * 1e-300`: a sum with an infinite contribution is
//!   suppressed, so whether it was released said whether every value lay within 1.8 of `v`),
//!   one that underflows them to zero, or two constant shifts that cancel (`(x + 2^62) -
//!   2^62` rounds `x` to a multiple of 1,024: a band).
//!
//! [`linear`] proves these away from bounds: stored integers by their type, readings by
//! [`MAX_READING`] (enforced by ingest), parts of dates by the range of `Date32`, and a
//! per-group `COUNT` or `SUM` by [`GROUP_ROWS`] rows; a constant shifted into a value at
//! most once before it is shifted in floating point. The per-person totals output control
//! adds up are computed in floating point (`rewrite.rs`), so they cannot wrap.
//!
//! Rows of several inputs of a `UNION` added up together could cancel each other's large
//! constants, so each input carries at most a factor and a constant of 2^20; their
//! smallest, largest or middle value clamps (a median of a value beside the rows 0 and 1 is
//! a step); and made distinct they merge exactly where their values are equal (refused
//! before the rest, [`dedups_union`]). Two reviews found these (session 51).
//!
//! Canned reports are exempt, as from the rest of rule 7.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{Aggregate, Distinct, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::scalar::ScalarValue;
use fivesafes_engine::catalog::MAX_READING;

use crate::decision::{Refusal, Rule};

/// Refuses (FS-7) a cell aggregate over persons whose aggregates filter rows (`FILTER`) or
/// read a value that is not plain (see the module documentation).
pub(crate) fn check(agg: &Aggregate) -> Result<(), Refusal> {
    if dedups_union(&agg.input) {
        return Err(Refusal::new(
            Rule::LowEffect,
            "rows of a UNION are made distinct (UNION without ALL, DISTINCT, GROUP BY \
             more than one value over it, or a distinct aggregate such as COUNT(DISTINCT …) \
             of it): whether rows of two inputs are one depends on \
             their values, a condition that cannot be checked for low effect; use UNION ALL",
        ));
    }
    for e in &agg.aggr_expr {
        let e = unalias(e);
        let Expr::AggregateFunction(af) = e else {
            continue;
        };
        let name = af.func.name().to_uppercase();
        if af.params.filter.is_some() {
            return Err(refusal(format!(
                "{name}(…) FILTER (WHERE …) over persons: a condition inside an aggregate"
            )));
        }
        if !af.params.args.iter().all(|a| plain(&agg.input, a)) {
            return Err(refusal(format!(
                "the argument of {name} over persons may only be a column, a constant, a \
                 cast that keeps every value (to a string or a wider number), date_part of a \
                 column, or a column shifted or scaled by a constant: a condition inside an \
                 aggregate (CASE, NULLIF, a comparison, a division by a column, a cast that is \
                 NULL past its range such as TRY_CAST(x AS TINYINT)); per person, one of COUNT, \
                 SUM, AVG, MIN, MAX, MEDIAN, FIRST_VALUE, LAST_VALUE, BOOL_AND, BOOL_OR or \
                 ARRAY_AGG of such a value (NTH_VALUE or STDDEV is NULL below a number of rows)"
            )));
        }
        if matches!(name.as_str(), "SUM" | "AVG" | "MEAN") {
            for a in &af.params.args {
                if let Err(why) = linear(&agg.input, a) {
                    return Err(Refusal::new(
                        Rule::LowEffect,
                        format!(
                            "the argument of {name} over persons {why}. Arithmetic that \
                             treats some values unlike others is a condition inside an \
                             aggregate, which cannot be checked for low effect"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn refusal(what: String) -> Refusal {
    Refusal::new(
        Rule::LowEffect,
        format!(
            "{what} cannot be checked for low effect; put the condition in WHERE, or group \
             by it"
        ),
    )
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// Whether `e`, over the rows of `input`, is a plain value.
pub(crate) fn plain(input: &LogicalPlan, e: &Expr) -> bool {
    let constant = |x: &Expr| matches!(unalias(x), Expr::Literal(..));
    let nonzero = |x: &Expr| match unalias(x) {
        Expr::Literal(v, _) => {
            !v.is_null() && v != &ScalarValue::new_zero(&v.data_type()).unwrap_or(ScalarValue::Null)
        }
        _ => false,
    };
    match e {
        Expr::Alias(a) => plain(input, &a.expr),
        Expr::Literal(..) => true,
        Expr::Column(c) => input
            .schema()
            .index_of_column(c)
            .is_ok_and(|i| plain_at(input, i)),
        // A cast that cannot hold each value is NULL past its range (rule 6 makes every
        // cast a `TRY_CAST`): `COUNT(TRY_CAST(imd_decile + 118 AS TINYINT))` counts the
        // persons of decile 9 or less, a condition (session-49 review).
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            plain(input, expr)
                && expr
                    .get_type(input.schema().as_ref())
                    .is_ok_and(|from| crate::low_effect::lossless(&from, field.data_type()))
        }
        Expr::Negative(x) => plain(input, x),
        Expr::BinaryExpr(b) => {
            let (l, r) = (b.left.as_ref(), b.right.as_ref());
            match b.op {
                Operator::Plus | Operator::Minus | Operator::Multiply => {
                    (constant(l) && plain(input, r)) || (constant(r) && plain(input, l))
                }
                Operator::Divide => nonzero(r) && plain(input, l),
                _ => false,
            }
        }
        Expr::ScalarFunction(f) => {
            matches!(f.func.name(), "date_part" | "datepart")
                && matches!(f.args.as_slice(), [part, x] if constant(part) && plain(input, x))
        }
        _ => false,
    }
}

/// Whether `e`, over the rows of `input`, is a value stored in a table: a column traced
/// through aliases, projections, filters, joins, unions and per-person `MIN`, `MAX`,
/// `FIRST_VALUE`, `LAST_VALUE` or `MEDIAN` to a table scan, a cast of one, or one moved by
/// a literal; not a literal or a `VALUES` list's (rule 6 bounds a stored date by the dates ingest accepts).
pub(crate) fn stored(input: &LogicalPlan, e: &Expr) -> bool {
    match e {
        Expr::Alias(a) => stored(input, &a.expr),
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => stored(input, expr),
        Expr::Column(c) => input
            .schema()
            .index_of_column(c)
            .is_ok_and(|i| stored_at(input, i)),
        // Moved by a literal (rule 6 counts each literal interval or number of days where
        // it is written, in whichever query of the plan).
        Expr::BinaryExpr(b) if matches!(b.op, Operator::Plus | Operator::Minus) => {
            let literal = |x: &Expr| match x {
                Expr::Literal(..) => true,
                Expr::Negative(n) => matches!(n.as_ref(), Expr::Literal(..)),
                _ => false,
            };
            (stored(input, &b.left) && literal(&b.right))
                || (literal(&b.left) && stored(input, &b.right))
        }
        _ => false,
    }
}

/// Whether output column `i` of `plan` is a stored value (see [`stored`]).
fn stored_at(plan: &LogicalPlan, i: usize) -> bool {
    match plan {
        LogicalPlan::TableScan(_) => true,
        LogicalPlan::Projection(p) => p.expr.get(i).is_some_and(|e| stored(&p.input, e)),
        LogicalPlan::Aggregate(a) => {
            let n = a.group_expr.len();
            if i < n {
                return stored(&a.input, &a.group_expr[i]);
            }
            match a.aggr_expr.get(i - n).map(unalias) {
                Some(Expr::AggregateFunction(af)) => {
                    af.params.filter.is_none()
                        && matches!(
                            af.func.name().to_lowercase().as_str(),
                            "min" | "max" | "first_value" | "last_value" | "median"
                        )
                        && matches!(af.params.args.as_slice(), [x] if stored(&a.input, x))
                }
                _ => false,
            }
        }
        _ => passed_through(plan, i, stored_at),
    }
}

/// For a node that passes its inputs' columns through as they are (filters, sorts, limits,
/// aliases, joins, unions, a window's input columns), whether `at` holds of output column
/// `i` where it comes from (every input, for a union); false for any other node.
fn passed_through(plan: &LogicalPlan, i: usize, at: fn(&LogicalPlan, usize) -> bool) -> bool {
    match plan {
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(Distinct::All(_)) => {
            plan.inputs().first().is_some_and(|p| at(p, i))
        }
        LogicalPlan::Join(j) => {
            use datafusion::logical_expr::JoinType::*;
            let n = j.left.schema().fields().len();
            match j.join_type {
                LeftSemi | LeftAnti | LeftMark => i < n && at(&j.left, i),
                RightSemi | RightAnti => at(&j.right, i),
                _ if i < n => at(&j.left, i),
                _ => at(&j.right, i - n),
            }
        }
        LogicalPlan::Union(u) => u.inputs.iter().all(|p| at(p, i)),
        LogicalPlan::Window(w) => i < w.input.schema().fields().len() && at(&w.input, i),
        _ => false,
    }
}

/// Aggregates whose value per group is NULL only where the group has no value that is not
/// NULL (or never): whether it is NULL says no more than the values do. Not `nth_value`
/// (NULL below `n` rows: `COUNT` of a per-person `nth_value(x, 400)` counted the persons
/// with 400 rows or more, an edge on a count that `WHERE` would snap, session-52 review),
/// nor `stddev` or `var_samp` (NULL below two).
const NULL_ONLY_WITHOUT_VALUES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "mean",
    "min",
    "max",
    "median",
    "first_value",
    "last_value",
    "bool_and",
    "bool_or",
    "array_agg",
];

/// Whether output column `i` of `plan` is a plain value (see [`plain`]).
fn plain_at(plan: &LogicalPlan, i: usize) -> bool {
    match plan {
        LogicalPlan::TableScan(_) | LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => true,
        LogicalPlan::Projection(p) => p.expr.get(i).is_some_and(|e| plain(&p.input, e)),
        LogicalPlan::Aggregate(a) => {
            let n = a.group_expr.len();
            if i < n {
                plain(&a.input, &a.group_expr[i])
            } else if let Some(e) = a.aggr_expr.get(i - n) {
                match unalias(e) {
                    Expr::AggregateFunction(af) => {
                        af.params.filter.is_none()
                            && NULL_ONLY_WITHOUT_VALUES
                                .contains(&af.func.name().to_lowercase().as_str())
                            && af.params.args.iter().all(|x| plain(&a.input, x))
                    }
                    _ => false,
                }
            } else {
                false
            }
        }
        _ => passed_through(plan, i, plain_at),
    }
}

/// The largest magnitude a floating-point value added up may reach: summed over every row
/// of the store it stays far from overflow.
const FLOAT_LIMIT: f64 = 1e200;

/// The smallest factor a floating-point value added up may be scaled by: a reading scaled
/// by it stays far from underflow (a value rounded to zero, or to a coarse subnormal step).
const SCALE_LIMIT: f64 = 1e-100;

/// The most rows one group of a table can have (2^40, over a trillion): bounds a `COUNT`
/// and a `SUM` per group.
pub(crate) const GROUP_ROWS: f64 = 1_099_511_627_776.0;

/// The largest factor and constant a value from one input of a union may carry.
const UNION_LIMIT: f64 = 1_048_576.0;

/// What arithmetic did to a value that is added up ([`linear`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Shape {
    /// The largest magnitude it can have.
    bound: f64,
    /// The product of the magnitudes of the constant factors and divisors it was scaled by
    /// (1 for a value as stored).
    scale: f64,
    /// Whether a constant was added to it (in floating point that rounds it; an integer so
    /// shifted rounds when it is made floating point: `(startage + 2^62 + 462) - 2^62.0`
    /// counted the episodes from age 51 on, review).
    shifted: bool,
    /// The largest magnitude of the constants added to it, as scaled since.
    offset: f64,
    /// Whether it comes from several inputs of a union (rows of different expressions).
    mixed: bool,
    /// Whether it counts rows (a `COUNT`, or a `SUM`, `MAX` … of counts of disjoint
    /// groups): at most [`GROUP_ROWS`] summed over any group too.
    rows: bool,
}

impl Shape {
    fn at_most(bound: f64) -> Shape {
        Shape {
            bound,
            scale: 1.0,
            shifted: false,
            offset: 0.0,
            mixed: false,
            rows: false,
        }
    }

    /// A constant of magnitude `m`: all offset.
    fn constant(m: f64) -> Shape {
        Shape {
            offset: m,
            ..Shape::at_most(m)
        }
    }

    /// A count of rows.
    fn rows() -> Shape {
        Shape {
            rows: true,
            ..Shape::at_most(GROUP_ROWS)
        }
    }

    /// A stored value of type `t`: integers and decimals by their type's range, floating
    /// point by [`MAX_READING`] (the one stored floating-point column is a reading); other
    /// types are not numbers (unbounded: they cannot be added up).
    fn stored(t: &DataType) -> Shape {
        Shape::at_most(type_bound(t).unwrap_or(match t {
            DataType::Float16 | DataType::Float32 | DataType::Float64 => MAX_READING,
            _ => f64::INFINITY,
        }))
    }

    /// Either of two values (a union's inputs). Added up per person, a constant on one side
    /// shifts the other: `y - 2^20` over a per-person `SUM` of a union of an age scaled by
    /// 2^-39 with the constant 2^20 rounded the age to a step (session-52 review).
    fn either(self, other: Shape) -> Shape {
        Shape {
            bound: self.bound.max(other.bound),
            scale: self.scale.min(other.scale),
            shifted: self.shifted || other.shifted || self.offset > 0.0 || other.offset > 0.0,
            offset: self.offset.max(other.offset),
            mixed: true,
            rows: false,
        }
    }

    /// Whether rows of this shape may be added to rows of another expression (a union's
    /// other inputs) without one absorbing the other's low digits: scaled up or down and
    /// shifted by at most [`UNION_LIMIT`]. A union of `MAX(startage) * 10.14 + 2^62` with
    /// `-2^62` made each person's total the first rounded to a multiple of 1,024 (review);
    /// an age scaled by 2^-39 beside the constant 2^20 was rounded so too (session-52
    /// review). (A constant has scale 1.)
    fn mixes(self) -> bool {
        self.scale <= UNION_LIMIT
            && (self.scale == 0.0 || self.scale >= 1.0 / UNION_LIMIT)
            && self.offset <= UNION_LIMIT
    }
}

/// The largest value of an integer or decimal type (`None` for other types). A value of
/// magnitude up to it is held with either sign; a signed type's minimum (one further) is
/// never stored (ingest keeps ages, deciles and episode numbers small and identifiers
/// non-negative), so negating a stored value does not wrap.
fn type_bound(t: &DataType) -> Option<f64> {
    use DataType::*;
    Some(match t {
        Int8 => 127.0,
        Int16 => 32_767.0,
        Int32 => 2_147_483_647.0,
        Int64 => 9_223_372_036_854_775_807.0,
        UInt8 => 255.0,
        UInt16 => 65_535.0,
        UInt32 => 4_294_967_295.0,
        UInt64 => 18_446_744_073_709_551_615.0,
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => {
            10f64.powi(i32::from(*p) - i32::from(*s))
        }
        _ => return None,
    })
}

/// The magnitude of a constant (infinite when it is not a number; 0 for NULL).
fn magnitude(v: &ScalarValue) -> f64 {
    if v.is_null() {
        return 0.0;
    }
    match v.cast_to(&DataType::Float64) {
        Ok(ScalarValue::Float64(Some(x))) => x.abs(),
        _ => f64::INFINITY,
    }
}

/// Whether the result of arithmetic of type `t` can hold a value of shape `s`: an integer
/// within its type (integer arithmetic wraps), floating point within [`FLOAT_LIMIT`] and
/// scaled by no less than [`SCALE_LIMIT`].
fn fits(t: &DataType, s: Shape) -> Result<Shape, &'static str> {
    if t.is_floating() {
        if s.bound.is_nan() || s.bound > FLOAT_LIMIT {
            return Err(
                "could overflow to infinity for some values (a constant too large for \
                 the values it scales or shifts)",
            );
        }
        if s.scale < SCALE_LIMIT && s.scale != 0.0 {
            return Err("is scaled by so small a factor that some values would round to zero");
        }
    } else if let Some(max) = type_bound(t)
        && !matches!(
            t,
            DataType::Decimal32(..)
                | DataType::Decimal64(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        )
        && (s.bound.is_nan() || s.bound > max)
    {
        return Err(
            "could pass the range of its integer type for some values, where integer \
             arithmetic wraps round; compute in floating point (x * 1.0, x / 1000.0)",
        );
    }
    Ok(s)
}

/// The bound of `date_part(part, d)` for any date a `Date32` holds (about 5.9 million
/// years either side of 1970), not only those ingest accepts: date arithmetic in a query
/// may move a date far (review).
fn date_part_bound(part: &str) -> f64 {
    match part.to_lowercase().as_str() {
        "year" | "years" | "y" | "isoyear" => 6e6,
        "decade" | "decades" => 6e5,
        "century" | "centuries" => 6e4,
        "millennium" | "millennia" | "millenium" => 6e3,
        "second" | "seconds" | "s" | "sec" | "secs" => 60.0,
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => 60_000.0,
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => 60_000_000.0,
        "nanosecond" | "nanoseconds" | "ns" | "nsec" | "nsecs" => 60_000_000_000.0,
        "month" | "months" | "week" | "weeks" | "day" | "days" | "dow" | "doy" | "isodow"
        | "quarter" | "hour" | "hours" | "minute" | "minutes" | "m" | "h" | "d" | "w" | "mon"
        | "mons" | "min" | "mins" => 1_000.0,
        // `epoch` (seconds since 1970) and anything else.
        _ => 2e14,
    }
}

/// The shape of `e` over the rows of `input`, a plain value ([`plain`]) that is added up by
/// `SUM` or `AVG`: an error, saying why, when its arithmetic could treat some values
/// differently from others (see the module documentation).
fn linear(input: &LogicalPlan, e: &Expr) -> Result<Shape, &'static str> {
    let constant = |x: &Expr| match unalias(x) {
        Expr::Literal(v, _) => Some(magnitude(v)),
        _ => None,
    };
    let schema = input.schema();
    match e {
        Expr::Alias(a) => linear(input, &a.expr),
        Expr::Literal(v, _) => Ok(Shape::constant(magnitude(v))),
        Expr::Column(c) => match schema.index_of_column(c) {
            Ok(i) => linear_at(input, i),
            Err(_) => Err("reads a column it cannot follow"),
        },
        // A cast that keeps every value ([`plain`]) keeps its shape.
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => linear(input, expr),
        Expr::Negative(x) => {
            let s = Shape {
                rows: false,
                ..linear(input, x)?
            };
            fits(&e.get_type(schema.as_ref()).map_err(|_| UNTYPED)?, s)
        }
        Expr::BinaryExpr(b) => {
            let t = e.get_type(schema.as_ref()).map_err(|_| UNTYPED)?;
            let (l, r) = (b.left.as_ref(), b.right.as_ref());
            let (x, c) = match (constant(l), constant(r)) {
                (_, Some(c)) => (l, c),
                (Some(c), None) => (r, c),
                (None, None) => return Err("combines two values"),
            };
            let s = linear(input, x)?;
            let shape = match b.op {
                Operator::Plus | Operator::Minus => {
                    let shifts = c != 0.0;
                    if shifts && t.is_floating() && s.shifted {
                        return Err(
                            "adds constants to a value more than once in floating point, which \
                            can round it to a coarse step; add one constant",
                        );
                    }
                    Shape {
                        bound: s.bound + c,
                        scale: s.scale,
                        shifted: s.shifted || shifts,
                        offset: s.offset + c,
                        mixed: s.mixed,
                        rows: false,
                    }
                }
                Operator::Multiply if c == 0.0 => Shape::at_most(0.0),
                Operator::Multiply => Shape {
                    bound: s.bound * c,
                    scale: s.scale * c,
                    shifted: s.shifted,
                    offset: s.offset * c,
                    mixed: s.mixed,
                    rows: false,
                },
                Operator::Divide if t.is_floating() => Shape {
                    bound: s.bound / c,
                    scale: s.scale / c,
                    shifted: s.shifted,
                    offset: s.offset / c,
                    mixed: s.mixed,
                    rows: false,
                },
                Operator::Divide => {
                    return Err(
                        "divides integers or decimals, which rounds the result to a step (a \
                         band of values); divide by a floating-point constant (x / 1000.0), \
                         or group by the band",
                    );
                }
                _ => return Err("uses an operator other than +, -, * and /"),
            };
            fits(&t, shape)
        }
        Expr::ScalarFunction(f) => match f.args.as_slice() {
            [part, _] if matches!(f.func.name(), "date_part" | "datepart") => match unalias(part) {
                Expr::Literal(
                    ScalarValue::Utf8(Some(p))
                    | ScalarValue::Utf8View(Some(p))
                    | ScalarValue::LargeUtf8(Some(p)),
                    _,
                ) if !f.args[1].column_refs().is_empty() => {
                    // The part of a date as it is: a fixed calendar grid. Of a date moved
                    // by a constant, the grid's edges move with it, a band of dates
                    // (`date_part('year', birth_month + INTERVAL '31' DAY)` counted the
                    // persons born in December apart); of a column of a union, a clamp
                    // hidden from `MEDIAN` (session-52 review). Both are read from the
                    // date's own shape.
                    let date = linear(input, &f.args[1])?;
                    if date.shifted {
                        return Err(
                            "takes a part of a date moved by an interval or a number of \
                             days, whose calendar edges move with it (a band of dates); take \
                             the part of the date as stored",
                        );
                    }
                    // Of a constant date (a `VALUES` list's, through a join), a constant:
                    // beside a value in a union it shifts it (session-52 review: a VALUES
                    // date's epoch times 8192 absorbed an age scaled by 2^-11).
                    let constant = !date.shifted && date.offset > 0.0 && date.bound <= date.offset;
                    Ok(if constant {
                        Shape::constant(date_part_bound(p))
                    } else {
                        Shape {
                            mixed: date.mixed,
                            ..Shape::at_most(date_part_bound(p))
                        }
                    })
                }
                // Of a constant: a constant (`date_part('epoch', DATE '…')`, review).
                _ if f.args[1].column_refs().is_empty() => Ok(Shape::constant(2e14)),
                _ => Ok(Shape::at_most(2e14)),
            },
            _ => Err("calls a function"),
        },
        _ => Err("is not a column, a constant or arithmetic on them"),
    }
}

const UNTYPED: &str = "has a type that cannot be found";

/// The shape of output column `i` of `plan` (see [`linear`]).
fn linear_at(plan: &LogicalPlan, i: usize) -> Result<Shape, &'static str> {
    let field = |p: &LogicalPlan| p.schema().field(i).data_type().clone();
    match plan {
        LogicalPlan::TableScan(_) => Ok(Shape::stored(&field(plan))),
        LogicalPlan::EmptyRelation(_) => Ok(Shape::at_most(0.0)),
        // The query's own constants (a large one hidden in a `VALUES` list made a union's
        // shift, review).
        LogicalPlan::Values(v) => Ok(Shape::constant(v.values.iter().fold(0.0, |m, row| {
            m.max(match row.get(i).map(unalias) {
                Some(Expr::Literal(x, _)) => magnitude(x),
                _ => Shape::stored(&field(plan)).bound,
            })
        }))),
        LogicalPlan::Projection(p) => match p.expr.get(i) {
            Some(e) => linear(&p.input, e),
            None => Err(UNFOLLOWED),
        },
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(Distinct::All(_)) => match plan.inputs().first() {
            Some(p) => linear_at(p, i),
            None => Err(UNFOLLOWED),
        },
        LogicalPlan::Join(j) => {
            use datafusion::logical_expr::JoinType::*;
            let n = j.left.schema().fields().len();
            let shape = match j.join_type {
                LeftSemi | LeftAnti | LeftMark if i < n => linear_at(&j.left, i),
                LeftSemi | LeftAnti | LeftMark => Err(UNFOLLOWED),
                RightSemi | RightAnti => linear_at(&j.right, i),
                _ if i < n => linear_at(&j.left, i),
                _ => linear_at(&j.right, i - n),
            }?;
            // A join repeats a count on each of the rows it matches: summed again, no
            // longer a count of the rows below (a per-person count joined back to the
            // person's events and summed is its square, review).
            Ok(Shape {
                rows: false,
                ..shape
            })
        }
        LogicalPlan::Union(u) => {
            let shapes = u
                .inputs
                .iter()
                .map(|p| linear_at(p, i))
                .collect::<Result<Vec<_>, _>>()?;
            if shapes.len() > 1 && !shapes.iter().all(|s| s.mixes()) {
                return Err(
                    "adds up rows of a UNION scaled by more than 2^20 or less than 2^-20, \
                            or shifted by more than 2^20 (a large value added to a small one \
                            in floating point rounds it away); scale or shift the sum instead",
                );
            }
            // Added up, each input's constant shifts the others: in floating point, two
            // shifts (a shifted value beside a constant, or two shifted values) round as
            // `(x + c) - c` does.
            // (Constants alone are added exactly enough: a union of `1.0` rows counts.)
            let constant = |s: &Shape| !s.shifted && s.offset > 0.0 && s.bound <= s.offset;
            let shifts = shapes.iter().filter(|s| s.shifted).count()
                + usize::from(shapes.iter().any(constant));
            let values = shapes.iter().any(|s| !constant(s));
            if shapes.len() > 1 && values && shifts > 1 && field(plan).is_floating() {
                return Err(
                    "adds up rows of a UNION of which more than one is shifted by a constant \
                     (or is one), which in floating point can round a value to a coarse \
                     step; add one constant",
                );
            }
            shapes.into_iter().reduce(Shape::either).ok_or(UNFOLLOWED)
        }
        LogicalPlan::Window(w) if i < w.input.schema().fields().len() => linear_at(&w.input, i),
        LogicalPlan::Aggregate(a) => {
            let n = a.group_expr.len();
            if i < n {
                return linear(&a.input, &a.group_expr[i]);
            }
            let Some(Expr::AggregateFunction(af)) = a.aggr_expr.get(i - n).map(unalias) else {
                return Err(UNFOLLOWED);
            };
            let arg = || match af.params.args.as_slice() {
                [x] => linear(&a.input, x),
                _ => Err("is computed by an aggregate of several arguments"),
            };
            let shape = match af.func.name().to_lowercase().as_str() {
                "count" => Shape::rows(),
                "sum" => match arg()? {
                    s if s.rows => s,
                    s => Shape {
                        bound: s.bound * GROUP_ROWS,
                        offset: s.offset * GROUP_ROWS,
                        ..s
                    },
                },
                // A median of an even number of integers and a mean of decimals round
                // (the median halves the middle pair's sum in integers: a parity).
                "avg" | "mean" | "median" if !field(plan).is_floating() => {
                    return Err("is a per-group mean or median that rounds (of integers or \
                                decimals); take it of a DOUBLE (x * 1.0)");
                }
                // The smallest, largest or middle of rows of a union clamps: with the rows
                // 0 and 1 beside a person's value, a median is a step on the value (review).
                "median" | "min" | "max" | "first_value" | "last_value" if arg()?.mixed => {
                    return Err(
                        "takes the smallest, largest or middle of rows from several \
                                inputs of a UNION, which clamps values to a step",
                    );
                }
                "avg" | "mean" | "median" | "min" | "max" | "first_value" | "last_value" => arg()?,
                _ => {
                    return Err("is computed by an aggregate whose range cannot be bounded");
                }
            };
            fits(&field(plan), shape)
        }
        _ => Err(UNFOLLOWED),
    }
}

const UNFOLLOWED: &str = "reads a value whose range cannot be bounded";

/// Whether `plan` makes the rows of a union of several inputs distinct by more than one
/// value (a `DISTINCT` over it, `UNION` without `ALL`, an aggregation grouped by two values
/// or more, or one with a distinct aggregate): two rows from different inputs are merged exactly where their values are
/// equal, a condition on them (review, session 51). A union of the privacy unit alone
/// (the persons of two tables) is a union of persons.
fn dedups_union(plan: &LogicalPlan) -> bool {
    fn union_below(p: &LogicalPlan) -> bool {
        match p {
            LogicalPlan::Union(u) => u.inputs.len() > 1 && u.schema.fields().len() > 1,
            // (Through joins and windows too: a `CROSS JOIN (VALUES (1))` above the union
            // hid it from a `COUNT(DISTINCT …)`, session-52 review.)
            LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Window(_) => p.inputs().iter().any(|i| union_below(i)),
            _ => false,
        }
    }
    let mut found = false;
    let _ = plan.apply(|node| {
        let dedups = match node {
            LogicalPlan::Distinct(_) => true,
            // (A distinct count per person is a grouping by the value too: `COUNT(DISTINCT
            // d) - 1` over a person's `birth_month` beside a constant month was 0 exactly
            // for the persons born in it, session-52 review.)
            LogicalPlan::Aggregate(a) => {
                a.group_expr.len() > 1
                    || a.aggr_expr.iter().any(|e| {
                        matches!(unalias(e), Expr::AggregateFunction(af)
                            if af.params.distinct
                                || af.func.name().eq_ignore_ascii_case("approx_distinct"))
                    })
            }
            _ => false,
        };
        if dedups && node.inputs().iter().any(|i| union_below(i)) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}
