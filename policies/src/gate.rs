//! The statement gate: turns SQL text into a logical plan without executing anything, and
//! refuses every statement that is not a single read-only query before any table is read.
//!
//! Checks, in order: size; exactly one statement; the statement is a query (no DDL, DML,
//! `COPY`, `SET`, `PREPARE`, `EXPLAIN` in any form, `SHOW`, `DESCRIBE`); planning inside the
//! project's session (hidden tables do not exist there, so they fail exactly like typos);
//! then the plan is checked again node by node, subqueries included, because some statements
//! that parse as queries plan as something else (`SELECT … INTO` creates a table).

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::decision::{Refusal, Rule};

/// Largest SQL text accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 256 * 1024;

/// Deepest expression or query nesting the parser accepts.
pub const MAX_NESTING: usize = 64;

/// Most operators (`AND`, `OR`, `IS`, `IN`, `LIKE`, `BETWEEN`, comparisons, arithmetic,
/// casts with `::`, every other symbol) in one statement. The parser builds a chain of them
/// (`a AND b AND c …`) as a left-deep tree without counting it against [`MAX_NESTING`], and planning copies such trees recursively: a chain of 1,000
/// conditions overflowed a 2 MiB thread stack in DataFusion's SQL planner, and a stack
/// overflow aborts the whole server. A chain as long as this is planned within 2 MiB in a
/// debug build (the attack suite's threads); the server's workers have 16 MiB.
pub const MAX_OPERATORS: usize = 500;

/// Most tables a statement may read once every reference to a `WITH` query is replaced by
/// its body. A query that reads the one before it twice doubles at every step, and
/// DataFusion's planner walks the expanded tree: forty such `WITH` queries in 3 KB of SQL
/// would keep a worker busy for ever (session 26 review).
pub const MAX_RELATIONS: usize = 256;

/// Why a statement did not become a plan.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The policy refused it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The SQL is not valid or names something that does not exist in the project
    /// (a syntax error, an unknown table or column). Depends only on the text and the
    /// project's schema, never on data.
    #[error("{0}")]
    Invalid(String),
}

/// Plans `sql` in the project's session `ctx` after the statement checks.
pub async fn plan_query(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan, GateError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Refusal::new(
            Rule::TooComplex,
            format!(
                "the statement is {} bytes long; the limit is {MAX_SQL_BYTES}",
                sql.len()
            ),
        )
        .into());
    }
    let dialect = GenericDialect {};
    check_operators(sql, &dialect)?;
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .with_recursion_limit(MAX_NESTING)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| parse_error(&e))?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(s), true) => s,
        (None, _) => return Err(GateError::Invalid("empty statement".into())),
        (Some(_), false) => {
            return Err(Refusal::new(Rule::OnlyQueries, "send one statement at a time").into());
        }
    };
    match &statement {
        DfStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Query(_)) => {
            if let SqlStatement::Query(q) = s.as_ref() {
                check_set_depth(q)?;
                check_relations(s)?;
            }
        }
        other => {
            return Err(Refusal::new(
                Rule::OnlyQueries,
                format!(
                    "only read-only queries (SELECT, WITH … SELECT) are accepted, not {}",
                    statement_kind(other)
                ),
            )
            .into());
        }
    }
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(|e| plan_error(&e))?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|_| {
            Refusal::new(
                Rule::OnlyQueries,
                "the statement would create or change something (e.g. SELECT … INTO); only \
                 read-only queries are accepted",
            )
        })?;
    check_nodes(&plan)?;
    crate::joins::public_memberships_into_joins(plan)
        .and_then(crate::joins::equalities_into_joins)
        .map_err(|e| plan_error(&e))
}

/// The prefix of the names of the policy layer's own columns.
const RESERVED: &str = "__fs";

/// Refuses statements with more than [`MAX_OPERATORS`] binary operators, counted on the
/// tokens (no tree is built, so the count itself cannot overflow), and names with the
/// [`RESERVED`] prefix. Text that does not tokenize is left to the parser, which reports
/// it.
fn check_operators(sql: &str, dialect: &GenericDialect) -> Result<(), Refusal> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else {
        return Ok(());
    };
    // Names the policy layer gives its own columns (`__fs_…`): an analyst's column so
    // named would be taken for one of them.
    if tokens
        .iter()
        .any(|t| matches!(t, Token::Word(w) if w.value.to_ascii_lowercase().starts_with(RESERVED)))
    {
        return Err(Refusal::new(
            Rule::Unsupported,
            format!("names beginning with {RESERVED} are reserved; choose another name"),
        ));
    }
    let operators = tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) => matches!(
                w.keyword,
                Keyword::AND
                    | Keyword::OR
                    | Keyword::XOR
                    | Keyword::IS
                    | Keyword::IN
                    | Keyword::LIKE
                    | Keyword::ILIKE
                    | Keyword::SIMILAR
                    | Keyword::BETWEEN
                    | Keyword::AT
                    | Keyword::COLLATE
                    | Keyword::DIV
                    | Keyword::REGEXP
                    | Keyword::RLIKE
            ),
            Token::Whitespace(_)
            | Token::Comma
            | Token::LParen
            | Token::RParen
            | Token::Period
            | Token::SemiColon
            | Token::EOF
            | Token::Number(..) => false,
            // Every other symbol (`+`, `//`, `::`, `->`, `~`, `[` …); not quoted text.
            other => {
                let text = other.to_string();
                !text.is_empty()
                    && !text.starts_with(['\'', '"', '`'])
                    && text.chars().all(|c| c.is_ascii_punctuation())
            }
        })
        .count();
    if operators > MAX_OPERATORS {
        return Err(Refusal::new(
            Rule::TooComplex,
            format!(
                "the statement has {operators} operators (AND, OR, IS, comparisons, \
                 arithmetic …); the limit is {MAX_OPERATORS}: write long lists of values as \
                 IN (…), or split the query"
            ),
        ));
    }
    Ok(())
}

/// Refuses statements that read more than [`MAX_RELATIONS`] tables once `WITH` queries are
/// expanded (see there). Each `WITH` query's size is the sum of the sizes of what its body
/// reads, a `WITH` query named before it counting as its own size (names are matched
/// without regard to scope, which can only count more); the statement's is the same sum
/// over all of it.
fn check_relations(statement: &SqlStatement) -> Result<(), Refusal> {
    use std::collections::HashMap;
    use std::ops::ControlFlow;

    use datafusion::sql::sqlparser::ast::{ObjectName, Query, Visit, Visitor, visit_relations};

    fn name(n: &ObjectName) -> String {
        n.0.last()
            .map(|p| p.to_string().to_lowercase())
            .unwrap_or_default()
    }
    fn expanded<V: Visit>(v: &V, sizes: &HashMap<String, usize>) -> usize {
        let mut total = 0usize;
        let _ = visit_relations(v, |n: &ObjectName| {
            total = total.saturating_add(sizes.get(&name(n)).copied().unwrap_or(1));
            ControlFlow::<()>::Continue(())
        });
        total
    }
    struct Sizes(HashMap<String, usize>);
    impl Visitor for Sizes {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    let size = expanded(cte.query.as_ref(), &self.0);
                    self.0
                        .insert(cte.alias.name.value.to_lowercase(), size.max(1));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut sizes = Sizes(HashMap::new());
    let _ = statement.visit(&mut sizes);
    let total = expanded(statement, &sizes.0);
    if total > MAX_RELATIONS {
        return Err(Refusal::new(
            Rule::TooComplex,
            format!(
                "the statement reads {total} tables once its WITH queries are written out; \
                 the limit is {MAX_RELATIONS}: read each WITH query fewer times, or split the \
                 query"
            ),
        ));
    }
    Ok(())
}

/// Refuses chains of set operations (`UNION`, `INTERSECT`, `EXCEPT`) and nested query bodies
/// deeper than [`MAX_NESTING`]: the parser builds them as a left-deep tree without counting
/// them against its recursion limit, and planning a tree of a thousand levels would exhaust
/// the stack. Walks with an explicit stack, so the check itself cannot overflow.
fn check_set_depth(q: &datafusion::sql::sqlparser::ast::Query) -> Result<(), Refusal> {
    use datafusion::sql::sqlparser::ast::SetExpr;
    let mut stack: Vec<(&SetExpr, usize)> = vec![(q.body.as_ref(), 1)];
    if let Some(with) = &q.with {
        stack.extend(with.cte_tables.iter().map(|c| (c.query.body.as_ref(), 2)));
    }
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_NESTING {
            return Err(Refusal::new(
                Rule::TooComplex,
                format!(
                    "the statement nests more than {MAX_NESTING} set operations or query \
                     bodies; split it into several queries"
                ),
            ));
        }
        match e {
            SetExpr::SetOperation { left, right, .. } => {
                stack.push((left.as_ref(), depth + 1));
                stack.push((right.as_ref(), depth + 1));
            }
            SetExpr::Query(inner) => {
                stack.push((inner.body.as_ref(), depth + 1));
                if let Some(with) = &inner.with {
                    stack.extend(
                        with.cte_tables
                            .iter()
                            .map(|c| (c.query.body.as_ref(), depth + 2)),
                    );
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses plan nodes that no analyst query may contain, anywhere, subqueries included.
pub fn check_nodes(plan: &LogicalPlan) -> Result<(), Refusal> {
    let mut refusal = None;
    plan.apply_with_subqueries(|node| {
        let found = match node {
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => Some(Refusal::new(
                Rule::SideChannel,
                "EXPLAIN is not available: plans and row counts can reveal individuals",
            )),
            LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::DescribeTable(_) => Some(Refusal::new(
                Rule::OnlyQueries,
                "only read-only queries are accepted",
            )),
            LogicalPlan::RecursiveQuery(_) => Some(Refusal::new(
                Rule::Unsupported,
                "recursive queries (WITH RECURSIVE) are not supported",
            )),
            LogicalPlan::Extension(_) => Some(Refusal::new(
                Rule::Unsupported,
                "this construct is not supported",
            )),
            _ => None,
        };
        Ok(match found {
            Some(r) => {
                refusal = Some(r);
                TreeNodeRecursion::Stop
            }
            None => TreeNodeRecursion::Continue,
        })
    })
    .map_err(|_| Refusal::new(Rule::Unsupported, "the query could not be analysed"))?;
    refusal.map_or(Ok(()), Err)
}

fn statement_kind(s: &DfStatement) -> String {
    match s {
        DfStatement::Statement(inner) => {
            // The first keyword(s) of the statement, e.g. "INSERT", "CREATE TABLE", "SET".
            let text = inner.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            match words.as_slice() {
                [a, b] if matches!(*a, "CREATE" | "DROP" | "ALTER" | "SHOW") => {
                    format!("{a} {b}")
                }
                [a, ..] => (*a).to_string(),
                [] => "an empty statement".into(),
            }
        }
        DfStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".into(),
        DfStatement::CopyTo(_) => "COPY".into(),
        DfStatement::Explain(_) => "EXPLAIN".into(),
        DfStatement::Reset(_) => "RESET".into(),
    }
}

fn parse_error(e: &DataFusionError) -> GateError {
    let text = e.to_string();
    if text.contains("RecursionLimitExceeded") || text.to_lowercase().contains("recursion limit") {
        return Refusal::new(
            Rule::TooComplex,
            format!("the statement is nested more than {MAX_NESTING} levels deep"),
        )
        .into();
    }
    GateError::Invalid(clean(&text))
}

fn plan_error(e: &DataFusionError) -> GateError {
    GateError::Invalid(clean(&e.to_string()))
}

/// DataFusion's planning messages name tables, columns and SQL fragments of the query itself;
/// strip its internal prefixes and any backtrace.
fn clean(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    first
        .trim_start_matches("SQL error: ")
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("Schema error: ")
        .trim_start_matches("ParserError(\"")
        .trim_end_matches("\")")
        .to_string()
}
