//! Join keys written in `WHERE`: `FROM patients p, lsoas s WHERE s.lsoa = p.lsoa` plans as
//! a filter over a cross join. Everything after the gate reads join keys from joins (the
//! join-amplification rule, rule 7's conditions, per-person values looked up in public
//! tables), so an equality of a column of each input of an inner join, where it is a key
//! (the privacy unit on both sides, or a side that reads only public tables), is moved into that
//! join's `ON`, where the SQL planner puts the same key written with `JOIN … ON`. The rows
//! are the same; a key left in `WHERE` would be measured by rule 7 as a condition, and a
//! key it neutralised would count every row of the cross join.

use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::expr::InSubquery;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Filter, Join, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
    Projection, TableScan,
};
use fivesafes_engine::catalog::{PRIVACY_UNIT, TABLES, TableClass, TableDef};
use std::sync::Arc;

/// `plan` (subqueries included) with every equality of two plain columns in a filter
/// directly over an inner join, one column from each side of that join or of an inner join
/// directly below it, moved into the `ON` of the lowest such join where it is a key
/// ([`place`]).
pub(crate) fn equalities_into_joins(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::Filter(f) = &node else {
            return Ok(Transformed::no(node));
        };
        let LogicalPlan::Join(j) = f.input.as_ref() else {
            return Ok(Transformed::no(node));
        };
        if j.join_type != JoinType::Inner {
            return Ok(Transformed::no(node));
        }
        let reordered = persons_first(&f.input)?;
        let mut join = reordered
            .clone()
            .unwrap_or_else(|| LogicalPlan::Join(j.clone()));
        let mut kept = Vec::new();
        let mut moved = false;
        for c in split_conjunction_owned(f.predicate.clone()) {
            match columns_equal(&c) {
                Some((a, b)) => match place(&join, &a, &b, &c)? {
                    Some(placed) => {
                        join = placed;
                        moved = true;
                    }
                    None => kept.push(c),
                },
                None => kept.push(c),
            }
        }
        if !moved {
            return Ok(Transformed::no(node));
        }
        let filtered = match conjunction(kept) {
            Some(p) => LogicalPlan::Filter(Filter::try_new(p, Arc::new(join))?),
            None => join,
        };
        if reordered.is_none() {
            return Ok(Transformed::yes(filtered));
        }
        // The inputs in their written order again.
        with_columns_of(&f.input, filtered).map(Transformed::yes)
    })
    .map(|t| t.data)
}

/// `plan` under a projection to the columns of `like`, in its order (`plan` has them all).
fn with_columns_of(like: &LogicalPlan, plan: LogicalPlan) -> Result<LogicalPlan> {
    let columns = crate::low_effect::columns_of(like.schema());
    Ok(LogicalPlan::Projection(Projection::try_new(
        columns,
        Arc::new(plan),
    )?))
}

/// The inputs of a comma list (a tree of inner joins with no key and no filter), in order.
fn comma_list(plan: &LogicalPlan, out: &mut Vec<LogicalPlan>) {
    match plan {
        LogicalPlan::Join(j)
            if j.join_type == JoinType::Inner && j.on.is_empty() && j.filter.is_none() =>
        {
            comma_list(&j.left, out);
            comma_list(&j.right, out);
        }
        other => out.push(other.clone()),
    }
}

/// `plan`, a comma list that names a public table before rows about persons (`FROM
/// practices pr, lsoas s, patients p`), with the rows about persons first (their written
/// order kept, then the public tables in theirs), so that each public table's key joins it
/// to them on its own ([`place`]) rather than the public tables being joined to each other
/// first, a side rule 7 refuses (`public_table`); `None` when no public table comes before
/// rows about persons.
fn persons_first(plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    let mut inputs = Vec::new();
    comma_list(plan, &mut inputs);
    let public: Vec<bool> = inputs.iter().map(reads_only_public).collect();
    let Some(first) = public.iter().position(|p| *p) else {
        return Ok(None);
    };
    if public[first..].iter().all(|p| *p) {
        return Ok(None);
    }
    let (persons, tables): (Vec<_>, Vec<_>) = inputs
        .into_iter()
        .zip(public)
        .partition(|(_, public)| !*public);
    let mut ordered = persons.into_iter().chain(tables).map(|(p, _)| p);
    let mut builder = LogicalPlanBuilder::from(ordered.next().expect("an input"));
    for input in ordered {
        builder = builder.cross_join(input)?;
    }
    builder.build().map(Some)
}

/// `plan` (subqueries included) with every `x IN (SELECT key FROM <public table> …)` that is
/// a conjunct of a filter, where `x` is a column of the filter's input and the subquery is a
/// [`public_table`] selecting that table's key as it is, made an inner join of the input to
/// the table on `x = key`, with the subquery's filters in the filter above (all under a
/// projection back to the input's columns). The rows are the same (the key is unique:
/// ingest rejects duplicates), and rule 7 then measures the filters like the same filters
/// written with `JOIN … ON` and `WHERE`, snapping the edges of a value looked up on the key
/// (`imd_decile`), and measures the rows the join leaves out. As a subquery the filter was
/// one condition on `x`: `p.lsoa IN (SELECT lsoa FROM lsoas WHERE imd_decile < 5)` and
/// `<= 5` answered 30 and 35 in a practice where `p.imd_decile` answers 35 both times.
pub(crate) fn public_memberships_into_joins(plan: LogicalPlan) -> Result<LogicalPlan> {
    let mut made = 0usize;
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::Filter(f) = &node else {
            return Ok(Transformed::no(node));
        };
        let mut input = f.input.as_ref().clone();
        let mut kept = Vec::new();
        let mut joined = false;
        for c in split_conjunction_owned(f.predicate.clone()) {
            let Some(m) = public_membership(&c, &input) else {
                kept.push(c);
                continue;
            };
            made += 1;
            let alias = format!("fs_public_in_{made}");
            let requalified = |e: Expr| {
                e.transform(|e| {
                    Ok(match e {
                        Expr::Column(c) => Transformed::yes(Expr::Column(Column::new(
                            Some(alias.as_str()),
                            c.name,
                        ))),
                        other => Transformed::no(other),
                    })
                })
                .map(|t| t.data)
            };
            let filters = m
                .filters
                .into_iter()
                .map(requalified)
                .collect::<Result<Vec<_>>>()?;
            let key = Column::new(Some(alias.as_str()), m.key);
            let built = LogicalPlanBuilder::from(m.table)
                .alias(alias.as_str())
                .and_then(|right| {
                    LogicalPlanBuilder::from(input.clone())
                        .join(
                            right.build()?,
                            JoinType::Inner,
                            (vec![m.value], vec![key]),
                            None,
                        )?
                        .build()
                });
            // Names that clash with the table's (an unqualified `lsoa` of a derived table
            // without an alias): left as the subquery it was, measured as one condition.
            let Ok(built) = built else {
                kept.push(c);
                continue;
            };
            input = built;
            kept.extend(filters);
            joined = true;
        }
        if !joined {
            return Ok(Transformed::no(node));
        }
        let filtered = match conjunction(kept) {
            Some(p) => LogicalPlan::Filter(Filter::try_new(p, Arc::new(input))?),
            None => input,
        };
        with_columns_of(&f.input, filtered).map(Transformed::yes)
    })
    .map(|t| t.data)
}

/// `x IN (SELECT key FROM <public table> WHERE …)` taken apart by [`public_membership`].
struct PublicMembership {
    /// The column `x` of the filter's input.
    value: Column,
    /// The public table below the subquery's projections, sorts and filters (a scan, or an
    /// alias of one and what is below it).
    table: LogicalPlan,
    /// The name of the table's key column in `table`.
    key: String,
    /// The subquery's filters above `table`, over its columns.
    filters: Vec<Expr>,
}

/// `c` taken apart when it is `x IN (SELECT key FROM <public table> …)`: not negated,
/// uncorrelated, `x` a column of `input` that is a plain value there, the subquery a [`public_table`] whose one column
/// is its table's key as it is, and made of projections of plain columns, sorts and filters
/// over the table (an alias or a scan).
fn public_membership(c: &Expr, input: &LogicalPlan) -> Option<PublicMembership> {
    let Expr::InSubquery(InSubquery {
        expr,
        subquery,
        negated: false,
    }) = c
    else {
        return None;
    };
    let Expr::Column(value) = expr.as_ref() else {
        return None;
    };
    let plan = subquery.subquery.as_ref();
    let schema = plan.schema();
    // A value computed with more than a cast or a constant shift would be a join key that
    // drops the rows it makes NULL (refused there): left as the subquery it is.
    if !subquery.outer_ref_columns.is_empty()
        || !input.schema().has_column(value)
        || !crate::values::plain(input, expr)
        || !public_table(plan)
        || schema.fields().len() != 1
    {
        return None;
    }
    let selected = Column::from(schema.qualified_field(0));
    crate::low_effect::public_key(plan, &selected)?;
    let mut filters = Vec::new();
    let mut table = plan;
    loop {
        match table {
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                table = p.input.as_ref();
            }
            LogicalPlan::Sort(s) => table = s.input.as_ref(),
            LogicalPlan::Filter(f) => {
                filters.extend(split_conjunction_owned(f.predicate.clone()));
                table = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(_) | LogicalPlan::TableScan(_) => break,
            _ => return None,
        }
    }
    // The key as a column of the table (the subquery's one column, followed down).
    let key = table
        .schema()
        .columns()
        .into_iter()
        .find(|c| crate::low_effect::public_key(table, c).is_some())?;
    Some(PublicMembership {
        value: value.clone(),
        table: table.clone(),
        key: key.name,
        filters,
    })
}

/// The catalog entry of the public table `t` scans, if it scans one.
pub(crate) fn public_def(t: &TableScan) -> Option<&'static TableDef> {
    TABLES
        .iter()
        .find(|d| d.name == t.table_name.table() && d.class == TableClass::Public)
}

/// Whether every table `plan` scans is a public one.
pub(crate) fn reads_only_public(plan: &LogicalPlan) -> bool {
    let mut public = true;
    let _ = plan.apply(|p| {
        if let LogicalPlan::TableScan(t) = p {
            public &= public_def(t).is_some();
        }
        Ok(if public {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    public
}

/// Whether `plan` is one public table as it is: a scan of a public table with only
/// aliases, projections, filters and sorts above, and no subquery or volatile function in
/// those filters. Where its side of a join is lifted, rule 7 lifts and measures the filters
/// like any condition ([`unfiltered_public_table`] where it is not). A join of two public
/// tables is not one: a value of the one is not looked up on the other's key, and their
/// `ON` could restrict unmeasured (`s.imd_decile = t.imd_decile + 4`).
pub(crate) fn public_table(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(t) => public_def(t).is_some(),
        LogicalPlan::Filter(f) => {
            let mut plain = true;
            let _ = f.predicate.apply(|e| {
                if matches!(
                    e,
                    Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
                ) || e.is_volatile_node()
                {
                    plain = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            });
            plain && public_table(&f.input)
        }
        LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) | LogicalPlan::Sort(_) => {
            plan.inputs().into_iter().all(public_table)
        }
        _ => false,
    }
}

/// [`public_table`] without any filter: a side of a join that rule 7 does not lift (the
/// filtered side of a semi or anti join, a join below `DISTINCT` or `UNION`) keeps its
/// filters where nothing measures them.
pub(crate) fn unfiltered_public_table(plan: &LogicalPlan) -> bool {
    public_table(plan) && {
        let mut filtered = false;
        let _ = plan.apply(|p| {
            filtered |= matches!(p, LogicalPlan::Filter(_));
            Ok(TreeNodeRecursion::Continue)
        });
        !filtered
    }
}

/// The two columns of `c` when it is `column = column`.
fn columns_equal(c: &Expr) -> Option<(Column, Column)> {
    match c {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(a), Expr::Column(b)) => Some((a.clone(), b.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// `plan` (an inner join) with `eq` (`a = b`) added to the `ON` of the lowest inner join
/// whose two sides hold `a` and `b`, following inner joins directly below, where it joins
/// the privacy unit to the privacy unit or one side reads only public tables (rule 7 then
/// checks that side as a join's: [`public_table`]); `None` where there is none.
fn place(plan: &LogicalPlan, a: &Column, b: &Column, eq: &Expr) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::Join(j) = plan else {
        return Ok(None);
    };
    if j.join_type != JoinType::Inner {
        return Ok(None);
    }
    let (l, r) = (j.left.schema(), j.right.schema());
    let across = (l.has_column(a) && r.has_column(b)) || (l.has_column(b) && r.has_column(a));
    // Only keys that join, not conditions on a person's rows: the privacy unit of each
    // side, or any key of a public table. `e.event_date = p.birth_month` between two
    // personal tables keeps some of one person's rows; it stays in `WHERE`, where rule 7
    // measures it (and the join is refused without a key on the privacy unit).
    let key = (a.name == PRIVACY_UNIT && b.name == PRIVACY_UNIT)
        || reads_only_public(&j.left)
        || reads_only_public(&j.right);
    if across && key {
        let filter = match &j.filter {
            Some(f) => f.clone().and(eq.clone()),
            None => eq.clone(),
        };
        return rejoined(j, Arc::clone(&j.left), Arc::clone(&j.right), Some(filter)).map(Some);
    }
    for (side, left) in [(&j.left, true), (&j.right, false)] {
        let s = side.schema();
        if s.has_column(a)
            && s.has_column(b)
            && let Some(placed) = place(side, a, b, eq)?
        {
            let (nl, nr) = if left {
                (Arc::new(placed), Arc::clone(&j.right))
            } else {
                (Arc::clone(&j.left), Arc::new(placed))
            };
            return rejoined(j, nl, nr, j.filter.clone()).map(Some);
        }
    }
    Ok(None)
}

/// `j` over `left` and `right` with `filter`, everything else as it was.
fn rejoined(
    j: &Join,
    left: Arc<LogicalPlan>,
    right: Arc<LogicalPlan>,
    filter: Option<Expr>,
) -> Result<LogicalPlan> {
    Ok(LogicalPlan::Join(Join::try_new(
        left,
        right,
        j.on.clone(),
        filter,
        j.join_type,
        j.join_constraint,
        j.null_equality,
        j.null_aware,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{LogicalPlanBuilder, col, table_scan};
    use datafusion::prelude::lit;

    /// A scan of `table` with columns `columns` (all `Utf8`).
    fn scan(table: &str, columns: &[&str]) -> LogicalPlanBuilder {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect();
        table_scan(Some(table), &Schema::new(fields), None).expect("scan")
    }

    fn events() -> LogicalPlanBuilder {
        scan("clinical_events", &["patient_id", "code"])
    }

    fn patients() -> LogicalPlan {
        scan("patients", &["patient_id", "lsoa", "sex"])
            .build()
            .expect("patients")
    }

    fn lsoas() -> LogicalPlan {
        scan("lsoas", &["lsoa", "imd"]).build().expect("lsoas")
    }

    #[test]
    fn a_key_in_where_moves_into_the_join_it_joins() -> Result<()> {
        // clinical_events, patients, lsoas WHERE (the two keys, a condition, a condition
        // between two personal tables)
        let plan = events()
            .cross_join(patients())?
            .cross_join(lsoas())?
            .filter(
                col("clinical_events.patient_id")
                    .eq(col("patients.patient_id"))
                    .and(col("lsoas.lsoa").eq(col("patients.lsoa")))
                    .and(col("lsoas.imd").gt(lit("3")))
                    .and(col("clinical_events.code").eq(col("patients.sex"))),
            )?
            .build()?;
        let shown = equalities_into_joins(plan)?.display_indent().to_string();
        assert_eq!(
            shown,
            "Filter: lsoas.imd > Utf8(\"3\") AND clinical_events.code = patients.sex\
             \n  Inner Join:  Filter: lsoas.lsoa = patients.lsoa\
             \n    Inner Join:  Filter: clinical_events.patient_id = patients.patient_id\
             \n      TableScan: clinical_events\
             \n      TableScan: patients\
             \n    TableScan: lsoas",
            "{shown}"
        );
        Ok(())
    }

    #[test]
    fn public_tables_named_first_join_the_rows_about_persons_each_on_its_key() -> Result<()> {
        // practices, lsoas, patients WHERE (the two keys, a condition)
        let plan = scan("practices", &["practice_code", "region"])
            .cross_join(lsoas())?
            .cross_join(
                scan("patients", &["patient_id", "lsoa", "practice_code"])
                    .build()
                    .expect("patients"),
            )?
            .filter(
                col("practices.practice_code")
                    .eq(col("patients.practice_code"))
                    .and(col("lsoas.lsoa").eq(col("patients.lsoa")))
                    .and(col("lsoas.imd").gt(lit("3"))),
            )?
            .build()?;
        let shown = equalities_into_joins(plan)?.display_indent().to_string();
        assert_eq!(
            shown,
            "Projection: practices.practice_code, practices.region, lsoas.lsoa, lsoas.imd, \
             patients.patient_id, patients.lsoa, patients.practice_code\
             \n  Filter: lsoas.imd > Utf8(\"3\")\
             \n    Inner Join:  Filter: lsoas.lsoa = patients.lsoa\
             \n      Inner Join:  Filter: practices.practice_code = patients.practice_code\
             \n        TableScan: patients\
             \n        TableScan: practices\
             \n      TableScan: lsoas",
            "{shown}"
        );
        Ok(())
    }

    /// `x IN (SELECT key FROM lsoas WHERE …)` in `plan`'s filter, negated or not, selecting
    /// the key or `selected`.
    fn member(negated: bool, selected: Expr) -> Result<LogicalPlan> {
        let subquery = LogicalPlanBuilder::from(lsoas())
            .filter(col("lsoas.imd").gt(lit("3")))?
            .project(vec![selected])?
            .build()?;
        let c = Expr::InSubquery(InSubquery::new(
            Box::new(col("patients.lsoa")),
            datafusion::logical_expr::Subquery {
                subquery: Arc::new(subquery),
                outer_ref_columns: vec![],
                spans: Default::default(),
            },
            negated,
        ));
        LogicalPlanBuilder::from(patients())
            .filter(c.and(col("patients.sex").eq(lit("F"))))?
            .build()
    }

    #[test]
    fn a_membership_of_a_public_tables_key_becomes_the_join_it_stands_for() -> Result<()> {
        let shown = public_memberships_into_joins(member(false, col("lsoas.lsoa"))?)?
            .display_indent()
            .to_string();
        assert_eq!(
            shown,
            "Projection: patients.patient_id, patients.lsoa, patients.sex\
             \n  Filter: fs_public_in_1.imd > Utf8(\"3\") AND patients.sex = Utf8(\"F\")\
             \n    Inner Join: patients.lsoa = fs_public_in_1.lsoa\
             \n      TableScan: patients\
             \n      SubqueryAlias: fs_public_in_1\
             \n        TableScan: lsoas",
            "{shown}"
        );
        // NOT IN, and a value computed from the key, stay as written.
        for plan in [
            member(true, col("lsoas.lsoa"))?,
            member(
                false,
                datafusion::functions::string::expr_fn::lower(col("lsoas.lsoa")),
            )?,
        ] {
            let before = plan.display_indent().to_string();
            let after = public_memberships_into_joins(plan)?
                .display_indent()
                .to_string();
            assert_eq!(after, before);
        }
        Ok(())
    }

    #[test]
    fn an_outer_join_and_other_comparisons_stay_as_written() -> Result<()> {
        let plan = scan("patients", &["patient_id", "lsoa"])
            .join_on(
                lsoas(),
                JoinType::Left,
                vec![col("patients.lsoa").eq(col("lsoas.lsoa"))],
            )?
            .filter(col("lsoas.imd").eq(col("patients.lsoa")))?
            .build()?;
        let before = plan.display_indent().to_string();
        assert_eq!(
            equalities_into_joins(plan)?.display_indent().to_string(),
            before
        );
        // Two personal tables on anything but the privacy unit: a condition, not a key.
        let plan = events()
            .cross_join(patients())?
            .filter(col("clinical_events.code").eq(col("patients.sex")))?
            .build()?;
        let before = plan.display_indent().to_string();
        assert_eq!(
            equalities_into_joins(plan)?.display_indent().to_string(),
            before
        );
        Ok(())
    }
}
