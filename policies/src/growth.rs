//! DESIGN.md rule 6, the memory side of it (session 41): no string a query computes may
//! grow without bound. `lpad(sex, 2147483647)` asked for 2 GiB per row, and for a batch of
//! rows 380 GB; an allocation that large is not an error but the end of the server
//! process. Behind `CASE WHEN value > v THEN … END` it happens only if some row reaches it:
//! an oracle that takes the service down as it answers. Functions that make strings longer
//! than their inputs (`concat`, `||`, `replace`, `regexp_replace`, `lpad`, `rpad`,
//! `translate`, `upper`, `to_char` …) multiply, and derived tables chain them
//! (`concat(s, s)` twice per level doubles a value per level).
//!
//! [`check`] bounds the length in bytes of every string the plan computes, from the bottom
//! up: a stored value counts [`STORED_BYTES`] (the data model's strings are codes; ingest
//! does not bound them, which only scales the figures), a literal its own length, each
//! function by how much it can grow its inputs, and a derived column the largest bound of
//! any expression the plan names so (names are read without their qualifier, so the bound
//! is the largest over every column of that name: coarse, never too small). A bound above
//! [`MAX_VALUE_BYTES`] is refused (FS-6); `lpad` and `rpad` need a literal length.

use std::collections::HashMap;

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};

use crate::decision::{Refusal, Rule};

/// The length assumed for a stored string value, in bytes.
pub const STORED_BYTES: u64 = 1024;

/// The longest string a query over persons may compute, in bytes: 64 KiB, so that a batch
/// of 8,192 rows of one computed column holds at most 512 MiB.
pub const MAX_VALUE_BYTES: u64 = 64 * 1024;

/// The bound of a value that is not a string (a number or date formatted as text).
const SCALAR_BYTES: u64 = 64;

/// Functions whose result is no longer than their largest argument or a formatted scalar.
const NOT_GROWING: &[&str] = &[
    "substr",
    "substring",
    "left",
    "right",
    "btrim",
    "ltrim",
    "rtrim",
    "trim",
    "split_part",
    "reverse",
    "coalesce",
    "nullif",
    "nvl",
    "ifnull",
    "nvl2",
    "greatest",
    "least",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "strpos",
    "instr",
    "starts_with",
    "ends_with",
    "ascii",
    "regexp_like",
    "regexp_count",
    "date_part",
    "datepart",
    "date_trunc",
    "datetrunc",
    "date_bin",
    "to_date",
    "to_timestamp",
    "to_timestamp_seconds",
    "to_timestamp_millis",
    "to_timestamp_micros",
    "to_timestamp_nanos",
    "make_date",
    "now",
    "current_date",
    "current_time",
    "today",
    "abs",
    "floor",
    "ceil",
    "round",
    "trunc",
    "signum",
    "sqrt",
    "cbrt",
    "exp",
    "ln",
    "log",
    "log2",
    "log10",
    "isnan",
    "iszero",
    "pi",
    "power",
    "pow",
    "random",
    "arrow_typeof",
];

/// Aggregates whose value holds every row's (a list or a joined string).
const GROWING_AGGREGATES: &[&str] = &[
    "array_agg",
    "string_agg",
    "listagg",
    "group_concat",
    "nth_value_agg",
];

/// Bounds, by column name, of the columns the plan has computed so far.
type Bounds = HashMap<String, u64>;

/// Refuses (FS-6) a plan that could compute a string longer than [`MAX_VALUE_BYTES`].
pub fn check(plan: &LogicalPlan) -> Result<(), Refusal> {
    let mut bounds = Bounds::new();
    walk(plan, &mut bounds).map_err(|what| {
        Refusal::new(
            Rule::SideChannel,
            format!(
                "{what} could compute a string longer than {} KiB for one row (a stored \
                 value counts {} KiB): growing strings that far could exhaust the server's \
                 memory for some values only; lpad and rpad need a literal length of at \
                 most {} characters",
                MAX_VALUE_BYTES / 1024,
                STORED_BYTES / 1024,
                MAX_VALUE_BYTES / 4,
            ),
        )
    })
}

/// Bounds `plan`'s inputs and subqueries, then its own expressions, and records the bounds
/// of the columns it computes. `Err` names what grows too far.
fn walk(plan: &LogicalPlan, bounds: &mut Bounds) -> Result<(), String> {
    for input in plan.inputs() {
        walk(input, bounds)?;
    }
    let mut failed = None;
    let _ = plan.apply_subqueries(|sub| {
        if let Err(e) = walk(sub, bounds) {
            failed = Some(e);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let exprs = plan.expressions();
    let mut of_exprs = Vec::with_capacity(exprs.len());
    for e in &exprs {
        of_exprs.push(bound(e, bounds)?);
    }
    let mut computed: Vec<(String, u64)> = Vec::new();
    let mut record = |name: &str, b: u64| computed.push((name.to_string(), b));
    let fields = plan.schema().fields();
    match plan {
        // Expressions and output columns in the same order.
        LogicalPlan::Projection(_) => {
            for (field, b) in fields.iter().zip(&of_exprs) {
                record(field.name(), *b);
            }
        }
        // An aggregate's aggregates are its last columns; before them its grouping
        // expressions (grouping sets list each once and add an id), each given the largest
        // bound of any grouping expression.
        LogicalPlan::Aggregate(a) => {
            let aggregates = a.aggr_expr.len();
            let (groups, of_aggregates) = of_exprs.split_at(of_exprs.len() - aggregates);
            let group = groups.iter().copied().max().unwrap_or(0);
            let first = fields.len().saturating_sub(aggregates);
            for field in fields.iter().take(first) {
                record(field.name(), group);
            }
            for (field, b) in fields.iter().skip(first).zip(of_aggregates) {
                record(field.name(), *b);
            }
        }
        LogicalPlan::Window(w) => {
            let first = w.input.schema().fields().len();
            for (field, b) in fields.iter().skip(first).zip(&of_exprs) {
                record(field.name(), *b);
            }
        }
        LogicalPlan::Values(v) => {
            for row in &v.values {
                for (field, e) in fields.iter().zip(row) {
                    let b = bound(e, bounds)?;
                    record(field.name(), b);
                }
            }
        }
        // A union's columns are named by its first input, and matched by position.
        LogicalPlan::Union(u) => {
            for (i, field) in fields.iter().enumerate() {
                let b = u
                    .inputs
                    .iter()
                    .filter_map(|input| input.schema().fields().get(i))
                    .map(|f| column(f.name(), bounds))
                    .max()
                    .unwrap_or(STORED_BYTES);
                record(field.name(), b);
            }
        }
        // Nodes that pass their input's columns on under the same names.
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Join(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_))
        | LogicalPlan::TableScan(_)
        | LogicalPlan::EmptyRelation(_)
        | LogicalPlan::Subquery(_) => {}
        // Anything else (DISTINCT ON, unnesting, …): each column may be anything the node
        // computes or reads.
        _ => {
            let read = plan
                .inputs()
                .iter()
                .flat_map(|input| input.schema().fields().iter())
                .map(|f| column(f.name(), bounds))
                .max()
                .unwrap_or(0);
            let largest = of_exprs.iter().copied().max().unwrap_or(0).max(read);
            for field in fields.iter() {
                record(field.name(), largest);
            }
        }
    }
    for (name, b) in computed {
        let entry = bounds.entry(name).or_insert(0);
        *entry = (*entry).max(b);
    }
    Ok(())
}

/// The bound recorded for a column, or a stored value's.
fn column(name: &str, bounds: &Bounds) -> u64 {
    bounds.get(name).copied().unwrap_or(STORED_BYTES)
}

/// The length in bytes of a literal string, or a scalar's formatted bound.
fn literal(v: &ScalarValue) -> u64 {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.len() as u64,
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b)) => b.len() as u64,
        _ => SCALAR_BYTES,
    }
}

/// An upper bound of the length in bytes of the values `e` computes. `Err` names a part
/// that could grow past [`MAX_VALUE_BYTES`].
fn bound(e: &Expr, bounds: &Bounds) -> Result<u64, String> {
    let b = match e {
        Expr::Column(c) => column(&c.name, bounds),
        Expr::OuterReferenceColumn(_, c) => column(&c.name, bounds),
        Expr::Literal(v, _) => literal(v),
        Expr::Alias(a) => bound(&a.expr, bounds)?,
        Expr::ScalarSubquery(sub) => sub
            .subquery
            .schema()
            .fields()
            .iter()
            .map(|f| column(f.name(), bounds))
            .max()
            .unwrap_or(STORED_BYTES),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (l, r) = (bound(left, bounds)?, bound(right, bounds)?);
            match op {
                Operator::StringConcat => l.saturating_add(r),
                _ => l.max(r).max(SCALAR_BYTES),
            }
        }
        Expr::ScalarFunction(f) => {
            let args = f
                .args
                .iter()
                .map(|a| bound(a, bounds))
                .collect::<Result<Vec<u64>, String>>()?;
            let arg = |i: usize| args.get(i).copied().unwrap_or(0);
            let name = f.name().to_ascii_lowercase();
            match name.as_str() {
                "concat" => args.iter().fold(0u64, |s, a| s.saturating_add(*a)),
                "concat_ws" => args
                    .iter()
                    .skip(1)
                    .fold(0u64, |s, a| s.saturating_add(*a).saturating_add(arg(0))),
                // The result has exactly the given number of characters (up to 4 bytes each).
                "lpad" | "rpad" => match f.args.get(1) {
                    Some(Expr::Literal(n, _)) => match n {
                        ScalarValue::Int64(Some(n)) => (*n).max(0) as u64,
                        ScalarValue::Int32(Some(n)) => (*n).max(0) as u64,
                        _ => u64::MAX,
                    }
                    .saturating_mul(4)
                    .max(arg(0)),
                    _ => u64::MAX,
                },
                // Every match, empty ones too (one per position at most), becomes the
                // replacement; a literal search string of f bytes matches at most n / f
                // times. A regular expression's replacement may repeat the match.
                "replace" => match f.args.get(1) {
                    Some(Expr::Literal(v, _)) if literal(v) > 0 && v.data_type().is_string() => {
                        let times = arg(2).div_ceil(literal(v)).max(1);
                        arg(0).saturating_mul(times).saturating_add(arg(2))
                    }
                    _ => arg(0)
                        .saturating_add(1)
                        .saturating_mul(arg(2).saturating_add(1)),
                },
                "regexp_replace" => arg(0)
                    .saturating_add(1)
                    .saturating_mul(arg(2).saturating_add(3)),
                // A list of the match and each group (each at most the input), which a cast
                // to text joins with separators.
                "regexp_match" => match f.args.get(1) {
                    Some(Expr::Literal(ScalarValue::Utf8(Some(p)), _)) => {
                        let groups = p.matches('(').count() as u64 + 1;
                        arg(0).saturating_add(4).saturating_mul(groups)
                    }
                    _ => u64::MAX,
                },
                // A character may become one of up to 4 bytes; a case change up to 3 chars.
                "translate" => arg(0).saturating_mul(4),
                "upper" | "lower" | "initcap" => arg(0).saturating_mul(3),
                // Each format specifier prints a bounded field.
                "to_char" | "date_format" => arg(1).saturating_mul(16).saturating_add(SCALAR_BYTES),
                known if NOT_GROWING.contains(&known) => {
                    args.iter().copied().max().unwrap_or(0).max(SCALAR_BYTES)
                }
                // Not known to keep its result small (`repeat`, `range`, `overlay` …).
                _ => u64::MAX,
            }
        }
        // Aggregates of many rows into one value grow with the rows.
        Expr::AggregateFunction(f)
            if GROWING_AGGREGATES.contains(&f.func.name().to_ascii_lowercase().as_str()) =>
        {
            u64::MAX
        }
        Expr::WindowFunction(w)
            if GROWING_AGGREGATES.contains(&w.fun.name().to_ascii_lowercase().as_str()) =>
        {
            u64::MAX
        }
        // Anything else computes no longer string than its largest part.
        _ => {
            let mut largest = SCALAR_BYTES;
            let mut failed = None;
            let _ = e.apply_children(|child| {
                match bound(child, bounds) {
                    Ok(b) => largest = largest.max(b),
                    Err(what) => {
                        failed = Some(what);
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
            if let Some(what) = failed {
                return Err(what);
            }
            largest
        }
    };
    if b > MAX_VALUE_BYTES {
        return Err(match e {
            Expr::ScalarFunction(f) => format!("the call of {}", f.name()),
            Expr::BinaryExpr(_) => "the || concatenation".to_string(),
            _ => "an expression".to_string(),
        });
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::functions::expr_fn::{concat, lpad, replace, upper};
    use datafusion::logical_expr::{col, lit};

    fn within(e: &Expr) -> bool {
        bound(e, &Bounds::new()).is_ok()
    }

    #[test]
    fn strings_may_grow_only_so_far() {
        // A stored value padded, replaced or joined a few times stays well within.
        assert!(within(&lpad(vec![col("sex"), lit(20i64), lit("0")])));
        assert!(within(&concat(vec![
            col("sex"),
            lit("-"),
            col("ethnicity")
        ])));
        assert!(within(&upper(replace(
            col("lsoa"),
            lit("E"),
            lit("England ")
        ))));
        // Padding to 2^31 characters, or to a computed length, is refused.
        assert!(!within(&lpad(vec![col("sex"), lit(2_147_483_647i64)])));
        assert!(!within(&lpad(vec![col("sex"), col("imd_decile")])));
        // A replacement inserted at every position multiplies the length.
        assert!(!within(&replace(
            replace(col("sex"), lit(""), lit("x".repeat(40))),
            lit(""),
            lit("y".repeat(40))
        )));
        // Doubling per level is refused after a few levels.
        let mut doubled = col("sex");
        let mut levels = 0;
        while within(&doubled) {
            doubled = concat(vec![doubled.clone(), doubled]);
            levels += 1;
        }
        assert_eq!(
            levels, 7,
            "1 KiB doubled 6 times is 64 KiB, the 7th is over"
        );
    }

    #[test]
    fn a_derived_column_carries_its_bound() {
        let mut bounds = Bounds::new();
        bounds.insert("s".into(), MAX_VALUE_BYTES / 2);
        assert!(bound(&col("s"), &bounds).is_ok());
        assert!(bound(&concat(vec![col("s"), col("s"), lit("!")]), &bounds).is_err());
        // A stored column of another name is unaffected.
        assert!(bound(&concat(vec![col("t"), col("t")]), &bounds).is_ok());
    }
}
