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
//! Canned reports are exempt, as from the rest of rule 7.

use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{Aggregate, Distinct, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::scalar::ScalarValue;

use crate::decision::{Refusal, Rule};

/// Refuses (FS-7) a cell aggregate over persons whose aggregates filter rows (`FILTER`) or
/// read a value that is not plain (see the module documentation).
pub(crate) fn check(agg: &Aggregate) -> Result<(), Refusal> {
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
                 NULL past its range such as TRY_CAST(x AS TINYINT))"
            )));
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

/// Whether output column `i` of `plan` is a plain value (see [`plain`]).
fn plain_at(plan: &LogicalPlan, i: usize) -> bool {
    match plan {
        LogicalPlan::TableScan(_) | LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => true,
        LogicalPlan::Projection(p) => p.expr.get(i).is_some_and(|e| plain(&p.input, e)),
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(Distinct::All(_)) => {
            plan.inputs().first().is_some_and(|p| plain_at(p, i))
        }
        LogicalPlan::Join(j) => {
            let n = j.left.schema().fields().len();
            match j.join_type {
                datafusion::logical_expr::JoinType::LeftSemi
                | datafusion::logical_expr::JoinType::LeftAnti
                | datafusion::logical_expr::JoinType::LeftMark => i < n && plain_at(&j.left, i),
                datafusion::logical_expr::JoinType::RightSemi
                | datafusion::logical_expr::JoinType::RightAnti => plain_at(&j.right, i),
                _ if i < n => plain_at(&j.left, i),
                _ => plain_at(&j.right, i - n),
            }
        }
        LogicalPlan::Union(u) => u.inputs.iter().all(|p| plain_at(p, i)),
        // A window's input columns come first, as they are.
        LogicalPlan::Window(w) => i < w.input.schema().fields().len() && plain_at(&w.input, i),
        LogicalPlan::Aggregate(a) => {
            let n = a.group_expr.len();
            if i < n {
                plain(&a.input, &a.group_expr[i])
            } else if let Some(e) = a.aggr_expr.get(i - n) {
                match unalias(e) {
                    Expr::AggregateFunction(af) => {
                        af.params.filter.is_none()
                            && af.params.args.iter().all(|x| plain(&a.input, x))
                    }
                    _ => false,
                }
            } else {
                false
            }
        }
        _ => false,
    }
}
