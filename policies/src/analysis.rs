//! Privacy-unit tracking: classifies every relation of a query plan as public rows, rows about
//! single persons, or cells aggregated over several persons, and refuses what may not leave.
//!
//! The analysis runs on the plan as the SQL planner produced it, before DataFusion's analyzer
//! inlines the project views, so every `TableScan` names an approved table. It fails closed:
//! a plan node or expression it does not know is refused (rule FS-G3), never passed through.
//!
//! Rules applied here (DESIGN.md "Output control", DATA_MODEL.md §2):
//! - FS-1: the query's result must be public data or cells aggregated over persons;
//! - FS-1a: identifying columns (`patient_id`, `epikey`, …) appear only in join conditions,
//!   `COUNT(DISTINCT …)`, the grouping key of a per-person aggregation, a cohort selection
//!   `patient_id IN (SELECT patient_id …)`, or passed through unchanged;
//! - FS-2: aggregates over several persons are `COUNT`, `SUM` and `AVG` only;
//! - FS-2a: two inputs with personal rows are joined only on the privacy unit;
//! - FS-6: `LIMIT`/`OFFSET` never select rows about persons.

use std::collections::{HashMap, HashSet};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::expr::{AggregateFunction, Alias, InSubquery};
use datafusion::logical_expr::{Distinct, Expr, JoinType, LogicalPlan, Operator};
use fivesafes_engine::catalog::{PRIVACY_UNIT, TableClass};
use fivesafes_engine::store::Manifest;

use crate::decision::{Refusal, Rule};

/// Aggregates allowed over several persons (DESIGN.md rule 2).
pub const CELL_AGGREGATES: &[&str] = &["count", "sum", "avg"];

/// What the analysis knows about the store's tables.
#[derive(Debug, Clone, Default)]
pub struct TableFacts {
    /// Personal table name → its identifying columns.
    personal: HashMap<String, HashSet<String>>,
}

impl TableFacts {
    /// The facts recorded in a store version's manifest.
    pub fn from_manifest(m: &Manifest) -> TableFacts {
        TableFacts {
            personal: m
                .tables
                .iter()
                .filter(|t| t.class == TableClass::Personal)
                .map(|t| {
                    (
                        t.name.clone(),
                        t.identifying_columns.iter().cloned().collect(),
                    )
                })
                .collect(),
        }
    }
}

impl TableFacts {
    /// The facts of the engine's static catalog (the tables every store version has), for
    /// callers that have no manifest at hand (the plan rewrite).
    pub(crate) fn from_catalog() -> TableFacts {
        TableFacts {
            personal: fivesafes_engine::catalog::TABLES
                .iter()
                .filter(|t| t.class == TableClass::Personal)
                .map(|t| {
                    (
                        t.name.to_string(),
                        t.identifying.iter().map(|c| c.to_string()).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// What the plan rewrite needs to know about a relation: its kind, and for each output
/// column whether it is the privacy unit or an identifying column passed through unchanged.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    pub(crate) kind: Kind,
    pub(crate) unit: Vec<bool>,
    pub(crate) identifying: Vec<bool>,
}

/// The kind and unit/identifying columns of `plan`, as the analysis sees them (refuses what
/// [`analyse`] refuses).
pub(crate) fn columns(plan: &LogicalPlan, facts: &TableFacts) -> Result<Columns, Refusal> {
    let rel = Analyser {
        facts,
        reads_personal: reads_personal(plan, facts),
    }
    .rel(plan)?;
    Ok(Columns {
        kind: rel.kind,
        unit: rel.cols.iter().map(|c| c.unit).collect(),
        identifying: rel.cols.iter().map(|c| c.identifying).collect(),
    })
}

/// How the rows of a relation relate to persons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// No personal data behind the rows.
    Public,
    /// Each row is about exactly one person.
    Persons,
    /// Each row aggregates several persons: output control applies to it.
    Cells,
}

/// What is known about one column of a relation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Col {
    /// Derived from personal data.
    personal: bool,
    /// A record-level identifier, passed through unchanged.
    identifying: bool,
    /// The privacy unit (`patient_id`), passed through unchanged.
    unit: bool,
}

/// A relation: its kind and its columns, in output order.
#[derive(Debug, Clone)]
struct Rel {
    kind: Kind,
    cols: Vec<Col>,
}

/// The result of analysing a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// The kind of the query's result: `Cells` results need output control.
    pub kind: Kind,
}

/// Analyses a planned query (before DataFusion's analyzer runs).
pub fn analyse(plan: &LogicalPlan, facts: &TableFacts) -> Result<Analysis, Refusal> {
    let rel = Analyser {
        facts,
        reads_personal: reads_personal(plan, facts),
    }
    .rel(plan)?;
    if rel.kind == Kind::Persons {
        return Err(Refusal::new(
            Rule::OnlyAggregates,
            "the result would contain rows about individual persons; aggregate them with \
             COUNT, SUM or AVG (and GROUP BY what you want to compare)",
        ));
    }
    Ok(Analysis { kind: rel.kind })
}

struct Analyser<'a> {
    facts: &'a TableFacts,
    /// Whether the statement reads a personal table anywhere (subqueries included).
    reads_personal: bool,
}

/// Whether `plan` scans a personal table anywhere, subqueries in expressions included.
fn reads_personal(plan: &LogicalPlan, facts: &TableFacts) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p
            && facts.personal.contains_key(scan.table_name.table())
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn unsupported(what: &str) -> Refusal {
    Refusal::new(
        Rule::Unsupported,
        format!("{what} is not supported on personal data yet"),
    )
}

fn identifying(name: &str) -> Refusal {
    Refusal::new(
        Rule::IdentifyingColumn,
        format!(
            "the identifying column {name} may only be used in join conditions, in \
             COUNT(DISTINCT {name}), as the key of a per-person GROUP BY that is aggregated \
             again, or to select a cohort with {PRIVACY_UNIT} IN (SELECT {PRIVACY_UNIT} …)"
        ),
    )
}

impl Analyser<'_> {
    fn rel(&self, plan: &LogicalPlan) -> Result<Rel, Refusal> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table();
                let schema = scan.projected_schema.as_ref();
                match self.facts.personal.get(name) {
                    Some(ident) => Ok(Rel {
                        kind: Kind::Persons,
                        cols: schema
                            .fields()
                            .iter()
                            .map(|f| Col {
                                personal: true,
                                identifying: ident.contains(f.name()),
                                unit: f.name() == PRIVACY_UNIT,
                            })
                            .collect(),
                    }),
                    None => Ok(public(schema.fields().len())),
                }
            }
            LogicalPlan::Values(v) => Ok(public(v.schema.fields().len())),
            LogicalPlan::EmptyRelation(e) => Ok(public(e.schema.fields().len())),
            LogicalPlan::SubqueryAlias(a) => self.rel(&a.input),
            LogicalPlan::Subquery(s) => self.rel(&s.subquery),
            LogicalPlan::Repartition(r) => self.rel(&r.input),
            LogicalPlan::Sort(s) => {
                let rel = self.rel(&s.input)?;
                self.check_exprs(&rel, s.input.schema(), s.expr.iter().map(|e| &e.expr))?;
                if s.fetch.is_some() {
                    self.check_limit(&rel)?;
                }
                Ok(rel)
            }
            LogicalPlan::Limit(l) => {
                let rel = self.rel(&l.input)?;
                self.check_limit(&rel)?;
                Ok(rel)
            }
            LogicalPlan::Distinct(Distinct::All(input)) => self.rel(input),
            LogicalPlan::Distinct(Distinct::On(d)) => {
                let rel = self.rel(&d.input)?;
                if rel.kind != Kind::Public {
                    return Err(unsupported("DISTINCT ON"));
                }
                Ok(public(d.schema.fields().len()))
            }
            LogicalPlan::Filter(f) => {
                let rel = self.rel(&f.input)?;
                self.check_predicate(&rel, f.input.schema(), &f.predicate)?;
                Ok(rel)
            }
            LogicalPlan::Projection(p) => {
                let rel = self.rel(&p.input)?;
                let cols = p
                    .expr
                    .iter()
                    .map(|e| self.projected(&rel, p.input.schema(), e))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Rel {
                    kind: rel.kind,
                    cols,
                })
            }
            LogicalPlan::Join(j) => {
                let (l, r) = (self.rel(&j.left)?, self.rel(&j.right)?);
                if (l.kind == Kind::Cells || r.kind == Kind::Cells)
                    && (l.kind == Kind::Persons || r.kind == Kind::Persons)
                {
                    return Err(unsupported(
                        "joining rows about persons to aggregated results",
                    ));
                }
                // The SQL planner leaves ON conditions in the join filter: equalities between
                // a left and a right column are join keys, wherever they stand.
                let both = j
                    .left
                    .schema()
                    .join(j.right.schema())
                    .map_err(|_| unsupported("a join the analysis cannot resolve"))?;
                let joined = Rel {
                    kind: Kind::Persons,
                    cols: l.cols.iter().chain(&r.cols).copied().collect(),
                };
                let mut keys: Vec<(Col, Col)> = Vec::new();
                for (a, b) in &j.on {
                    if let (Some(x), Some(y)) = (
                        col_info(&l, j.left.schema(), a),
                        col_info(&r, j.right.schema(), b),
                    ) {
                        keys.push((x, y));
                    }
                }
                let mut rest: Vec<&Expr> = Vec::new();
                if let Some(filter) = &j.filter {
                    for conj in split_and(filter) {
                        match equi_pair(conj, &l, j.left.schema(), &r, j.right.schema()) {
                            Some(pair) => keys.push(pair),
                            None => rest.push(conj),
                        }
                    }
                }
                if l.kind == Kind::Persons
                    && r.kind == Kind::Persons
                    && !keys.iter().any(|(x, y)| x.unit && y.unit)
                {
                    return Err(Refusal::new(
                        Rule::JoinAmplification,
                        format!(
                            "two tables with rows about persons must be joined on \
                             {PRIVACY_UNIT} = {PRIVACY_UNIT} (add it to the join condition); \
                             joining different persons' rows is refused"
                        ),
                    ));
                }
                for conj in rest {
                    self.check_predicate(&joined, &both, conj)?;
                }
                let kind = if l.kind == Kind::Persons || r.kind == Kind::Persons {
                    Kind::Persons
                } else if l.kind == Kind::Cells || r.kind == Kind::Cells {
                    Kind::Cells
                } else {
                    Kind::Public
                };
                let cols = match j.join_type {
                    JoinType::LeftSemi | JoinType::LeftAnti => l.cols,
                    JoinType::RightSemi | JoinType::RightAnti => r.cols,
                    JoinType::LeftMark => [l.cols, vec![Col::default()]].concat(),
                    JoinType::RightMark => [r.cols, vec![Col::default()]].concat(),
                    _ => [l.cols, r.cols].concat(),
                };
                Ok(Rel { kind, cols })
            }
            LogicalPlan::Aggregate(a) => {
                let rel = self.rel(&a.input)?;
                match rel.kind {
                    Kind::Public => return Ok(public(a.schema.fields().len())),
                    Kind::Cells => {
                        return Err(unsupported(
                            "aggregating results that are already aggregated over several \
                             persons (aggregate per person first, with GROUP BY patient_id)",
                        ));
                    }
                    Kind::Persons => {}
                }
                if a.group_expr
                    .iter()
                    .any(|e| matches!(e, Expr::GroupingSet(_)))
                {
                    return Err(unsupported("GROUPING SETS, ROLLUP and CUBE"));
                }
                let group: Vec<Col> = a
                    .group_expr
                    .iter()
                    .map(|e| self.projected(&rel, a.input.schema(), e))
                    .collect::<Result<_, _>>()?;
                let per_person = group.iter().any(|c| c.unit);
                for e in &a.aggr_expr {
                    self.check_aggregate(&rel, a.input.schema(), e, per_person)?;
                }
                let aggregated = Col {
                    personal: true,
                    ..Col::default()
                };
                let mut cols = group;
                cols.extend(std::iter::repeat_n(aggregated, a.aggr_expr.len()));
                Ok(Rel {
                    kind: if per_person {
                        Kind::Persons
                    } else {
                        // Grouping keys of cells are released values, not identifiers.
                        for c in &mut cols {
                            c.identifying = false;
                            c.unit = false;
                        }
                        Kind::Cells
                    },
                    cols,
                })
            }
            LogicalPlan::Union(u) => {
                let rels = u
                    .inputs
                    .iter()
                    .map(|i| self.rel(i))
                    .collect::<Result<Vec<_>, _>>()?;
                let kinds: HashSet<Kind> = rels.iter().map(|r| r.kind).collect();
                let kind = match kinds.len() {
                    1 => rels[0].kind,
                    _ if kinds.contains(&Kind::Persons) => {
                        return Err(unsupported("a UNION of rows about persons with other rows"));
                    }
                    _ => Kind::Cells,
                };
                let width = u.schema.fields().len();
                let mut cols = vec![Col::default(); width];
                for r in &rels {
                    for (c, rc) in cols.iter_mut().zip(&r.cols) {
                        c.personal |= rc.personal;
                    }
                }
                if kind == Kind::Persons {
                    for (i, c) in cols.iter_mut().enumerate() {
                        c.unit = rels.iter().all(|r| r.cols.get(i).is_some_and(|x| x.unit));
                        c.identifying = rels
                            .iter()
                            .any(|r| r.cols.get(i).is_some_and(|x| x.identifying));
                    }
                }
                Ok(Rel { kind, cols })
            }
            LogicalPlan::Window(w) => {
                let rel = self.rel(&w.input)?;
                if rel.kind != Kind::Public {
                    return Err(unsupported("window functions"));
                }
                Ok(public(w.schema.fields().len()))
            }
            other => Err(unsupported(&format!("the plan node {}", other.display()))),
        }
    }

    /// The column a projected or grouping expression yields; refuses computations on
    /// identifying columns and subqueries over personal data.
    fn projected(&self, rel: &Rel, input: &DFSchema, e: &Expr) -> Result<Col, Refusal> {
        let inner = strip_alias(e);
        if let Expr::Column(_) = inner
            && let Some(c) = col_info(rel, input, inner)
        {
            return Ok(c);
        }
        self.no_personal_subqueries(e)?;
        let mut personal = false;
        for c in e.column_refs() {
            let info = lookup(rel, input, c)?;
            if info.identifying {
                return Err(identifying(&c.name));
            }
            personal |= info.personal;
        }
        Ok(Col {
            personal,
            ..Col::default()
        })
    }

    /// Expressions that only read columns (sort keys): no computation on identifiers.
    fn check_exprs<'e>(
        &self,
        rel: &Rel,
        input: &DFSchema,
        exprs: impl Iterator<Item = &'e Expr>,
    ) -> Result<(), Refusal> {
        for e in exprs {
            self.projected(rel, input, e)?;
        }
        Ok(())
    }

    /// A filter condition: identifying columns only in a cohort selection on the unit.
    fn check_predicate(&self, rel: &Rel, input: &DFSchema, p: &Expr) -> Result<(), Refusal> {
        for conj in split_and(p) {
            if let Expr::InSubquery(InSubquery { expr, subquery, .. }) = conj {
                let outer = col_info(rel, input, strip_alias(expr));
                let sub = self.rel(&subquery.subquery)?;
                let sub_unit = sub.cols.len() == 1 && sub.cols[0].unit;
                if outer.is_some_and(|c| c.unit) && sub_unit {
                    continue; // cohort selection: patient_id IN (SELECT patient_id …)
                }
                if sub.kind != Kind::Public {
                    return Err(unsupported(
                        "IN (SELECT …) over personal data other than a cohort selection on \
                         patient_id",
                    ));
                }
            }
            self.no_personal_subqueries(conj)?;
            for c in conj.column_refs() {
                let info = lookup(rel, input, c)?;
                if info.identifying {
                    return Err(identifying(&c.name));
                }
            }
        }
        Ok(())
    }

    /// Refuses scalar, `EXISTS` and `IN` subqueries that read personal data (outside the
    /// cohort form handled by `check_predicate`).
    fn no_personal_subqueries(&self, e: &Expr) -> Result<(), Refusal> {
        let mut result = Ok(());
        let _ = e.apply(|x| {
            let sub = match x {
                Expr::ScalarSubquery(s) => Some(&s.subquery),
                Expr::Exists(ex) => Some(&ex.subquery.subquery),
                Expr::InSubquery(i) => Some(&i.subquery.subquery),
                Expr::SetComparison(s) => Some(&s.subquery.subquery),
                _ => None,
            };
            if let Some(plan) = sub {
                match self.rel(plan) {
                    Ok(r) if r.kind == Kind::Public => {}
                    Ok(_) => {
                        result = Err(unsupported("a subquery over personal data in this place"));
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Err(r) => {
                        result = Err(r);
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        result
    }

    /// One aggregate expression of an aggregation over persons' rows.
    fn check_aggregate(
        &self,
        rel: &Rel,
        input: &DFSchema,
        e: &Expr,
        per_person: bool,
    ) -> Result<(), Refusal> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = strip_alias(e) else {
            return Err(unsupported("an aggregate expression of this form"));
        };
        let name = func.name().to_lowercase();
        if !per_person && !CELL_AGGREGATES.contains(&name.as_str()) {
            return Err(Refusal::new(
                Rule::Aggregate,
                format!(
                    "{} over several persons reveals individual values; use COUNT, SUM or \
                     AVG (or aggregate per person first with GROUP BY patient_id)",
                    name.to_uppercase()
                ),
            ));
        }
        if !params.order_by.is_empty() {
            return Err(unsupported("ORDER BY inside an aggregate"));
        }
        let mut exprs: Vec<&Expr> = params.args.iter().collect();
        if let Some(f) = &params.filter {
            self.check_predicate(rel, input, f)?;
        }
        for arg in exprs.drain(..) {
            self.no_personal_subqueries(arg)?;
            for c in arg.column_refs() {
                let info = lookup(rel, input, c)?;
                let counted = name == "count"
                    && matches!(strip_alias(arg), Expr::Column(_))
                    && (params.distinct || per_person);
                if info.identifying && !counted {
                    return Err(identifying(&c.name));
                }
            }
        }
        Ok(())
    }
}

fn public(width: usize) -> Rel {
    Rel {
        kind: Kind::Public,
        cols: vec![Col::default(); width],
    }
}

impl Analyser<'_> {
    /// `LIMIT`/`OFFSET` (or a sort that keeps the first rows) over `rel`. Refused over rows
    /// about persons; and over public rows in a statement that reads personal data, because
    /// which rows a `LIMIT` keeps can depend on the order they are read in, and output
    /// control reads its input more than once (rule 7's measurement, a key's edge anchors):
    /// every reading must see the same rows.
    fn check_limit(&self, rel: &Rel) -> Result<(), Refusal> {
        match rel.kind {
            Kind::Persons => Err(limit_refusal()),
            Kind::Public if self.reads_personal => Err(Refusal::new(
                Rule::SideChannel,
                "LIMIT and OFFSET over a public table are not allowed in a query over \
                 personal data (the rows they keep can change from one reading to the next); \
                 list the values you want instead (IN ('A81001', 'A81002'))",
            )),
            _ => Ok(()),
        }
    }
}

fn limit_refusal() -> Refusal {
    Refusal::new(
        Rule::SideChannel,
        "LIMIT and OFFSET may only be applied to aggregated results, not to rows about persons",
    )
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(Alias { expr, .. }) => strip_alias(expr),
        other => other,
    }
}

fn col_info(rel: &Rel, input: &DFSchema, e: &Expr) -> Option<Col> {
    match strip_alias(e) {
        Expr::Column(c) => lookup(rel, input, c).ok(),
        _ => None,
    }
}

/// What is known about column `c` of a relation with schema `input`.
fn lookup(rel: &Rel, input: &DFSchema, c: &Column) -> Result<Col, Refusal> {
    input
        .index_of_column(c)
        .ok()
        .and_then(|i| rel.cols.get(i).copied())
        .ok_or_else(|| unsupported("a column the analysis cannot resolve"))
}

/// `left.x = right.y` (either way round) as a pair of (left column, right column).
fn equi_pair(e: &Expr, l: &Rel, ls: &DFSchema, r: &Rel, rs: &DFSchema) -> Option<(Col, Col)> {
    let Expr::BinaryExpr(b) = e else { return None };
    if b.op != Operator::Eq {
        return None;
    }
    let (a, c) = (b.left.as_ref(), b.right.as_ref());
    match (col_info(l, ls, a), col_info(r, rs, c)) {
        (Some(x), Some(y)) => Some((x, y)),
        _ => match (col_info(l, ls, c), col_info(r, rs, a)) {
            (Some(x), Some(y)) => Some((x, y)),
            _ => None,
        },
    }
}

fn split_and(e: &Expr) -> Vec<&Expr> {
    datafusion::logical_expr::utils::split_conjunction(e)
}
