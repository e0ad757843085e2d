//! The statement gate and project views over a real (synthetic) store: what may be planned,
//! what is refused and why, what a project can see, and the national opt-out.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use fivesafes_engine::ingest::{IngestOptions, ingest};
use fivesafes_engine::keys::Keys;
use fivesafes_engine::session::{SessionOptions, open_session, table_provider};
use fivesafes_engine::store::{Store, StoreVersion};
use fivesafes_engine::synth::{SynthOptions, generate};
use fivesafes_policies::decision::Rule;
use fivesafes_policies::gate::{GateError, plan_query};
use fivesafes_policies::view::{ViewSpec, project_session};

pub(crate) fn store(dir: &Path) -> StoreVersion {
    let x = dir.join("x");
    generate(&SynthOptions {
        patients: 1_500,
        seed: 5,
        out: x.clone(),
        progress: false,
    })
    .expect("synth");
    let keys = Keys::from_bytes([1; 32], [2; 32]);
    ingest(&IngestOptions::new(&x, dir.join("store")), &keys).expect("ingest");
    Store::new(dir.join("store")).open_current().expect("open")
}

pub(crate) fn spec(opt_out_applies: bool) -> ViewSpec {
    let all = |t: &str| -> (String, Vec<String>) {
        let def = fivesafes_engine::catalog::table(t).expect("table");
        let cols = def
            .columns
            .iter()
            .map(|c| c.name.to_string())
            .filter(|c| !def.secret.contains(&c.as_str()))
            .collect();
        (t.to_string(), cols)
    };
    ViewSpec {
        tables: vec![
            all("patients"),
            all("clinical_events"),
            all("hes_apc"),
            all("practices"),
        ],
        opt_out_applies,
        date_window: None,
    }
}

async fn count(ctx: &SessionContext, sql: &str) -> i64 {
    let plan = plan_query(ctx, sql).await.expect("plans");
    let batches = ctx
        .execute_logical_plan(plan)
        .await
        .expect("df")
        .collect()
        .await
        .expect("runs");
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

async fn refused(ctx: &SessionContext, sql: &str) -> Rule {
    match plan_query(ctx, sql).await {
        Err(GateError::Refused(r)) => r.rule,
        other => panic!("{sql:?} should be refused, got {other:?}"),
    }
}

async fn invalid(ctx: &SessionContext, sql: &str) -> String {
    match plan_query(ctx, sql).await {
        Err(GateError::Invalid(m)) => m,
        other => panic!("{sql:?} should be invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn only_single_read_only_queries_pass_the_gate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = store(dir.path());
    let ctx = project_session(&v, &spec(true), &SessionOptions::default())
        .await
        .expect("session");
    for (sql, rule) in [
        ("DROP TABLE patients", Rule::OnlyQueries),
        ("DELETE FROM patients", Rule::OnlyQueries),
        (
            "INSERT INTO practices VALUES ('A', 'B', 'C', 'D')",
            Rule::OnlyQueries,
        ),
        ("UPDATE practices SET region = 'x'", Rule::OnlyQueries),
        ("CREATE TABLE t AS SELECT 1", Rule::OnlyQueries),
        ("CREATE VIEW v AS SELECT 1", Rule::OnlyQueries),
        (
            "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/passwd'",
            Rule::OnlyQueries,
        ),
        ("COPY patients TO '/tmp/out.csv'", Rule::OnlyQueries),
        ("COPY (SELECT 1) TO '/tmp/out.csv'", Rule::OnlyQueries),
        (
            "SET datafusion.catalog.information_schema = true",
            Rule::OnlyQueries,
        ),
        ("PREPARE p AS SELECT 1", Rule::OnlyQueries),
        ("SHOW TABLES", Rule::OnlyQueries),
        ("DESCRIBE patients", Rule::OnlyQueries),
        ("EXPLAIN SELECT COUNT(*) FROM patients", Rule::OnlyQueries),
        (
            "EXPLAIN ANALYZE SELECT COUNT(*) FROM patients",
            Rule::OnlyQueries,
        ),
        ("SELECT 1; SELECT 2", Rule::OnlyQueries),
        ("SELECT sex INTO t2 FROM patients", Rule::OnlyQueries),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT COUNT(*) FROM r",
            Rule::Unsupported,
        ),
    ] {
        assert_eq!(refused(&ctx, sql).await, rule, "{sql}");
    }
    // Nothing was created: the project still has exactly its four tables.
    let default_catalog = ctx.state().config_options().catalog.default_catalog.clone();
    let names = ctx
        .catalog(&default_catalog)
        .and_then(|c| c.schema("public"))
        .expect("schema")
        .table_names();
    assert_eq!(names.len(), 4, "{names:?}");
    // Size and nesting limits are refusals, not crashes.
    let huge = format!("SELECT {} 1", "1 + ".repeat(3_000_000));
    assert_eq!(refused(&ctx, &huge).await, Rule::TooComplex);
    let deep = format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500));
    assert_eq!(refused(&ctx, &deep).await, Rule::TooComplex);
    // A plain aggregate plans.
    assert!(count(&ctx, "SELECT COUNT(*) FROM patients").await > 0);
}

#[tokio::test]
async fn hidden_things_fail_exactly_like_typos() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = store(dir.path());
    let ctx = project_session(&v, &spec(true), &SessionOptions::default())
        .await
        .expect("session");
    let typo = invalid(&ctx, "SELECT COUNT(*) FROM no_such_table").await;
    for hidden in ["hes_ae", "national_opt_out", "medications"] {
        let msg = invalid(&ctx, &format!("SELECT COUNT(*) FROM {hidden}")).await;
        assert_eq!(msg.replace(hidden, "X"), typo.replace("no_such_table", "X"));
    }
    for sql in [
        "SELECT COUNT(*) FROM information_schema.tables",
        "SELECT COUNT(*) FROM generate_series(1, 10)",
        "SELECT COUNT(*) FROM range(10)",
        "SELECT COUNT(*) FROM '/etc/passwd'",
        "SELECT COUNT(*) FROM 'store/versions/v000001/tables/patients/part-00000.parquet'",
    ] {
        invalid(&ctx, sql).await;
    }
    // Secret and unapproved columns do not exist in the view.
    let typo = invalid(&ctx, "SELECT COUNT(no_such_column) FROM patients").await;
    let secret = invalid(&ctx, "SELECT COUNT(record_key) FROM patients").await;
    assert_eq!(
        secret.replace("record_key", "X"),
        typo.replace("no_such_column", "X")
    );
}

#[tokio::test]
async fn national_opt_out_applies_fail_closed_unless_exempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = store(dir.path());
    // Ground truth from the unrestricted engine session with the governance table.
    let engine = open_session(&v, &SessionOptions::default())
        .await
        .expect("engine");
    let ndoo = table_provider(&engine.state(), &v, "national_opt_out")
        .await
        .expect("ndoo");
    engine
        .register_table("national_opt_out", Arc::clone(&ndoo) as _)
        .expect("register");
    let q = |sql: &'static str| {
        let engine = engine.clone();
        async move {
            let b = engine
                .sql(sql)
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
            b[0].column(0).as_primitive::<Int64Type>().value(0)
        }
    };
    let all = q("SELECT COUNT(*) FROM patients").await;
    let not_opted = q("SELECT COUNT(*) FROM patients p JOIN national_opt_out n \
                       ON p.patient_id = n.patient_id WHERE NOT n.opted_out")
    .await;
    let opted = q("SELECT COUNT(*) FROM patients p JOIN national_opt_out n \
                   ON p.patient_id = n.patient_id WHERE n.opted_out")
    .await;
    assert!(
        opted > 0 && not_opted + opted < all,
        "some opted out and some unknown"
    );
    let hes_all = q("SELECT COUNT(*) FROM hes_apc").await;
    let hes_allowed = q("SELECT COUNT(*) FROM hes_apc h JOIN national_opt_out n \
                         ON h.patient_id = n.patient_id WHERE NOT n.opted_out")
    .await;

    let applying = project_session(&v, &spec(true), &SessionOptions::default())
        .await
        .expect("session");
    assert_eq!(
        count(&applying, "SELECT COUNT(*) FROM patients").await,
        not_opted
    );
    assert_eq!(
        count(&applying, "SELECT COUNT(*) FROM hes_apc").await,
        hes_allowed
    );
    assert!(hes_allowed < hes_all, "hospital data is filtered too");
    let exempt = project_session(&v, &spec(false), &SessionOptions::default())
        .await
        .expect("session");
    assert_eq!(count(&exempt, "SELECT COUNT(*) FROM patients").await, all);
    assert_eq!(
        count(&exempt, "SELECT COUNT(*) FROM hes_apc").await,
        hes_all
    );
}

/// Every query's computed strings are bounded before anything is evaluated (analysts'
/// and reports' queries in `prepare`, the audit project's in the server): a string grown
/// past memory ends the process for everyone (session 41).
#[tokio::test]
async fn no_query_may_grow_a_string_past_memory() {
    let ctx = SessionContext::new();
    let growth = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let plan = plan_query(&ctx, sql).await.expect("planned");
            fivesafes_policies::growth::check(&plan).map_err(|r| r.rule)
        }
    };
    for sql in [
        "SELECT lpad('x', 2147483647)",
        "SELECT repeat('x', 2000000000)",
        "SELECT length(concat(a, a, a, a, a, a, a, a, a)) FROM (SELECT lpad('x', 16000) AS a) t",
        "SELECT DISTINCT ON (a) a, concat(a, a, a, a, a, a, a, a, a) AS b \
         FROM (SELECT lpad('x', 16000) AS a) t",
    ] {
        assert_eq!(growth(sql).await, Err(Rule::SideChannel), "{sql}");
    }
    for sql in [
        "SELECT lpad('x', 16000)",
        "SELECT length(concat(a, a, a, a)) FROM (SELECT lpad('x', 4000) AS a) t",
    ] {
        assert_eq!(growth(sql).await, Ok(()), "{sql}");
    }
    // A column computed under DISTINCT ON carries its bound to the query above it.
    let over = "SELECT concat(b, b, b, b, b, b, b, b) FROM (SELECT DISTINCT ON (a) a, \
                concat(a, a) AS b FROM (SELECT lpad('x', 4000) AS a) t) u";
    assert_eq!(growth(over).await, Err(Rule::SideChannel), "{over}");
}
