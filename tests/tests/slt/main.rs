//! SQL-level policy behaviour pinned in `.slt` files (`tests/slt/*.slt`), run with the
//! `sqllogictest` crate against the shared test store (see `common`).
//!
//! Each file runs in one project: `research` unless its first line is
//! `# project: <id>`. Every statement goes through the one protected path
//! (`ProjectContext::prepare`, `Prepared::physical_plan`, `query::execute`). Results are
//! rendered as text (`NULL` for nulls); errors as one line starting with what stopped the
//! query, so files can match them exactly:
//!
//! - `FS-1a: <message>` — refused by a policy rule (the rule id, then its message);
//! - `invalid: <message>` — not valid SQL in the project (syntax, unknown table or column);
//! - `execution error` — failed while running (never described: its text may hold data).
//!
//! Noise is deterministic from the store's keys and seed, so every expected value is exact.
//! To rewrite the expected results after a deliberate change, run with
//! `FIVESAFES_SLT_COMPLETE=1` and review the diff.

#[path = "../common/mod.rs"]
mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use datafusion::arrow::datatypes::DataType;
use datafusion::physical_plan::common::collect;
use fivesafes_policies::query::{self, ProjectContext, QueryError};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

use common::{RESEARCH, fixture, render};

/// An error as the `.slt` files see it: one line.
#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

impl From<QueryError> for SltError {
    fn from(e: QueryError) -> Self {
        SltError(match e {
            QueryError::Refused(r) => format!("{}: {}", r.rule.id(), r.message),
            QueryError::Invalid(m) => format!("invalid: {m}"),
            QueryError::Execution(_) => "execution error".to_string(),
        })
    }
}

/// One project's connection.
struct Db {
    cx: ProjectContext,
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

impl Db {
    async fn query(&self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let prepared = self.cx.prepare(sql).await?;
        let physical = prepared.physical_plan(&self.cx).await?;
        let types = physical
            .schema()
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let stream = query::execute(&physical, &self.cx)?;
        let batches = collect(stream).await.map_err(QueryError::from)?;
        Ok(DBOutput::Rows {
            types,
            rows: render(&batches),
        })
    }
}

// `AsyncDB` is declared with `#[async_trait]`; this is the signature that macro expands to,
// written out so that the crate needs no `async-trait` dependency of its own.
impl AsyncDB for Db {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    fn run<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        sql: &'life1 str,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<DBOutput<Self::ColumnType>, Self::Error>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { self.query(sql).await })
    }

    fn shutdown<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async {})
    }

    fn engine_name(&self) -> &str {
        "fivesafes"
    }
}

/// The project a file runs in: `# project: <id>` on its first line, else `research`.
fn project_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# project:"))
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|| RESEARCH.to_string())
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn slt_files_pass() {
    let complete = std::env::var_os("FIVESAFES_SLT_COMPLETE").is_some();
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files");
    let mut failures = Vec::new();
    for path in &files {
        let project = project_of(path);
        let mut runner = sqllogictest::Runner::new(|| {
            let project = project.clone();
            async move {
                Ok::<_, SltError>(Db {
                    cx: fixture().project(&project).await,
                })
            }
        });
        runner.with_column_validator(sqllogictest::strict_column_validator);
        if complete {
            if let Err(e) = runner
                .update_test_file(
                    path,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::strict_column_validator,
                )
                .await
            {
                failures.push(format!("{}: {e}", path.display()));
            }
        } else if let Err(e) = runner.run_file_async(path).await {
            failures.push(format!("{}:\n{}", path.display(), e.display(false)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} .slt files failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
