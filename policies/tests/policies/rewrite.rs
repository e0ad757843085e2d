//! The output-control rewrite over a real (synthetic) store: protected results keep the
//! original schema, counts are rounded, perturbed within bounds, small cells are suppressed,
//! and the same cells give the same answer however the query is phrased.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use fivesafes_engine::session::{SessionOptions, table_provider};
use fivesafes_policies::OutputControl;
use fivesafes_policies::decision::Rule;
use fivesafes_policies::gate::plan_query;
use fivesafes_policies::output::{count_error_bound, rows_error_bound};
use fivesafes_policies::person_keys::PersonKeys;
use fivesafes_policies::rewrite::{RewriteError, protect};
use fivesafes_policies::view::project_session;

use crate::gate::{spec, store};

struct Env {
    _dir: tempfile::TempDir,
    ctx: SessionContext,
    keys: Arc<PersonKeys>,
    params: OutputControl,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = store(dir.path());
    let ctx = project_session(&v, &spec(true), &SessionOptions::default())
        .await
        .expect("session");
    let table = table_provider(&ctx.state(), &v, "person_keys")
        .await
        .expect("person_keys");
    let keys = PersonKeys::load(&ctx, table).await.expect("person keys");
    Env {
        _dir: dir,
        ctx,
        keys,
        params: OutputControl::default(),
    }
}

async fn run(ctx: &SessionContext, plan: LogicalPlan) -> Vec<RecordBatch> {
    ctx.execute_logical_plan(plan)
        .await
        .expect("df")
        .collect()
        .await
        .expect("runs")
}

impl Env {
    async fn plan(&self, sql: &str) -> LogicalPlan {
        plan_query(&self.ctx, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn protected_plan(&self, sql: &str) -> Result<LogicalPlan, RewriteError> {
        let plan = self.plan(sql).await;
        protect(&self.ctx, plan, Arc::clone(&self.keys), &self.params).await
    }

    async fn unprotected(&self, sql: &str) -> Vec<RecordBatch> {
        run(&self.ctx, self.plan(sql).await).await
    }

    async fn protected(&self, sql: &str) -> Vec<RecordBatch> {
        let plan = self
            .protected_plan(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        run(&self.ctx, plan).await
    }
}

/// Rows keyed by their first `k` columns (rendered as text), with the remaining columns as
/// optional i64 (counts) or f64 (others, in `floats`).
fn rows(batches: &[RecordBatch], k: usize) -> BTreeMap<String, Vec<Option<f64>>> {
    let mut out = BTreeMap::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let key = (0..k)
                .map(|c| array_value_to_string(b.column(c), r).expect("render"))
                .collect::<Vec<_>>()
                .join("|");
            let vals = (k..b.num_columns())
                .map(|c| {
                    let a = b.column(c);
                    if a.is_null(r) {
                        return None;
                    }
                    Some(match a.data_type() {
                        DataType::Int64 => a.as_primitive::<Int64Type>().value(r) as f64,
                        DataType::Float64 => a.as_primitive::<Float64Type>().value(r),
                        other => panic!("unexpected value type {other}"),
                    })
                })
                .collect();
            assert!(out.insert(key, vals).is_none(), "duplicate group");
        }
    }
    out
}

fn names_and_types(batches: &[RecordBatch]) -> Vec<(String, DataType)> {
    batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

/// Checks the count query `sql` (first `k` columns the group keys, the rest counts of
/// persons) against its unprotected result and the true distinct persons per group from
/// `persons_sql` (same group keys, then one distinct-person count). Returns (released rows,
/// true rows).
async fn check_counts(e: &Env, sql: &str, k: usize, persons_sql: &str) -> (usize, usize) {
    check_counts_of(e, sql, k, persons_sql, None).await
}

/// [`check_counts`] for counts of rows, whose bound depends on the largest per-person
/// counts of each group: `per_person_sql` gives the group keys, the person and their count.
async fn check_counts_of(
    e: &Env,
    sql: &str,
    k: usize,
    persons_sql: &str,
    per_person_sql: Option<&str>,
) -> (usize, usize) {
    let mut tops: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    if let Some(per_person) = per_person_sql {
        for b in e.unprotected(per_person).await {
            let (keys, counts) = (b.column(0), b.column(k + 1).as_primitive::<Int64Type>());
            for r in 0..b.num_rows() {
                let key = array_value_to_string(keys, r).expect("key");
                tops.entry(key)
                    .or_default()
                    .push(u64::try_from(counts.value(r)).expect("a count"));
            }
        }
    }
    let truth = e.unprotected(sql).await;
    let released = e.protected(sql).await;
    if !released.is_empty() {
        assert_eq!(
            names_and_types(&released),
            names_and_types(&truth),
            "{sql}: schema"
        );
    }
    assert_eq!(
        e.protected_plan(sql)
            .await
            .expect("rewrites")
            .schema()
            .fields()
            .len(),
        e.plan(sql).await.schema().fields().len()
    );
    let truth = rows(&truth, k);
    let released = rows(&released, k);
    let persons = rows(&e.unprotected(persons_sql).await, k);
    for (key, vals) in &released {
        let bound = match tops.get(key) {
            Some(counts) => rows_error_bound(counts.len() as u64, counts, &e.params),
            None => count_error_bound(&e.params) as f64,
        };
        let p = persons[key][0].expect("persons");
        assert!(p > 7.0, "{sql}: released {key} with {p} persons");
        for (v, t) in vals.iter().zip(&truth[key]) {
            let (Some(v), Some(t)) = (v, t) else {
                assert!(v.is_none(), "{sql}: {key}");
                continue;
            };
            assert_eq!(v % 5.0, 0.0, "{sql}: {key}: {v} not a multiple of 5");
            assert!((v - t).abs() <= bound, "{sql}: {key}: {v} vs true {t}");
        }
    }
    (released.len(), truth.len())
}

fn render(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).expect("pretty").to_string()
}

#[tokio::test]
async fn counts_are_protected_and_small_cells_suppressed() {
    let e = env().await;
    let (r, t) = check_counts(
        &e,
        "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex ORDER BY sex",
        1,
        "SELECT sex, COUNT(DISTINCT patient_id) FROM patients GROUP BY sex",
    )
    .await;
    assert!(r > 0 && r <= t, "{r} of {t}");
    let (r, _) = check_counts_of(
        &e,
        "SELECT p.practice_code, COUNT(*) FROM clinical_events e \
         JOIN patients p ON e.patient_id = p.patient_id GROUP BY p.practice_code",
        1,
        "SELECT p.practice_code, COUNT(DISTINCT e.patient_id) FROM clinical_events e \
         JOIN patients p ON e.patient_id = p.patient_id GROUP BY p.practice_code",
        Some(
            "SELECT p.practice_code, e.patient_id, COUNT(*) FROM clinical_events e \
             JOIN patients p ON e.patient_id = p.patient_id GROUP BY 1, 2",
        ),
    )
    .await;
    assert!(r > 0);
    let (r, _) = check_counts(
        &e,
        "SELECT COUNT(DISTINCT patient_id) FROM clinical_events WHERE snomedct_code = '44054006'",
        0,
        "SELECT COUNT(DISTINCT patient_id) FROM clinical_events WHERE snomedct_code = '44054006'",
    )
    .await;
    assert!(r <= 1);
    let (r, t) = check_counts(
        &e,
        "SELECT birth_month, sex, COUNT(*) FROM patients GROUP BY birth_month, sex",
        2,
        "SELECT birth_month, sex, COUNT(DISTINCT patient_id) FROM patients \
         GROUP BY birth_month, sex",
    )
    .await;
    assert!(
        r < t,
        "many small groups: {r} released of {t}, some must be suppressed"
    );
    // A cohort selection and COUNT(x) in the same query.
    let (r, _) = check_counts(
        &e,
        "SELECT sex, COUNT(lsoa), COUNT(*) FROM patients WHERE patient_id IN \
         (SELECT patient_id FROM clinical_events WHERE snomedct_code = '44054006') GROUP BY sex",
        1,
        "SELECT sex, COUNT(DISTINCT patient_id) FROM patients WHERE patient_id IN \
         (SELECT patient_id FROM clinical_events WHERE snomedct_code = '44054006') GROUP BY sex",
    )
    .await;
    let _ = r;
}

#[tokio::test]
async fn protection_is_deterministic_and_ignores_phrasing() {
    let e = env().await;
    let sql = "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex ORDER BY sex";
    let first = render(&e.protected(sql).await);
    assert_eq!(first, render(&e.protected(sql).await));
    for other in [
        "SELECT sex, COUNT(1) AS n FROM patients WHERE 1=1 GROUP BY sex ORDER BY sex",
        "SELECT sex, COUNT(sex) AS n FROM patients GROUP BY sex ORDER BY sex",
        "SELECT sex, COUNT(DISTINCT patient_id) AS n FROM patients GROUP BY sex ORDER BY sex",
        // Subqueries that do not select patient_id: the rewrite carries it up itself.
        "SELECT sex, COUNT(*) AS n FROM (SELECT sex FROM patients) t GROUP BY sex ORDER BY sex",
        "SELECT s AS sex, COUNT(*) AS n FROM (SELECT sex AS s, birth_month FROM patients \
         WHERE birth_month IS NOT NULL) t GROUP BY s ORDER BY s",
    ] {
        assert_eq!(first, render(&e.protected(other).await), "{other}");
    }
    let small = "SELECT birth_month, sex, COUNT(*) AS n FROM patients GROUP BY birth_month, sex \
                 ORDER BY birth_month, sex";
    assert_eq!(
        render(&e.protected(small).await),
        render(
            &e.protected(
                "SELECT birth_month, sex, COUNT(1) AS n FROM patients WHERE 1=1 \
                 GROUP BY birth_month, sex ORDER BY birth_month, sex"
            )
            .await
        )
    );
}

#[tokio::test]
async fn sums_and_means_are_protected() {
    let e = env().await;
    let sql = "SELECT p.sex, SUM(e.numeric_value) AS s, AVG(e.numeric_value) AS m, COUNT(*) AS n \
               FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
               WHERE e.numeric_value IS NOT NULL GROUP BY p.sex";
    let truth = e.unprotected(sql).await;
    let released = e.protected(sql).await;
    assert_eq!(names_and_types(&released), names_and_types(&truth));
    let truth = rows(&truth, 1);
    let released = rows(&released, 1);
    assert!(!released.is_empty());
    for (key, vals) in &released {
        let t = &truth[key];
        let (s, m) = (vals[0].expect("sum"), vals[1].expect("mean"));
        let (ts, tm) = (t[0].expect("sum"), t[1].expect("mean"));
        // Loose sanity bounds (flattening and noise are bounded by the largest contributions).
        assert!(
            (s - ts).abs() <= 0.2 * ts.abs() + 1.0,
            "{key}: sum {s} vs {ts}"
        );
        assert!(
            (m - tm).abs() <= 0.2 * tm.abs() + 1.0,
            "{key}: mean {m} vs {tm}"
        );
    }
}

#[tokio::test]
async fn unsupported_forms_fail_closed() {
    let e = env().await;
    for sql in [
        // DISTINCT over a non-identifier: per-person distinct counts do not add up.
        "SELECT COUNT(DISTINCT sex) FROM patients",
        // DISTINCT below the aggregate: carrying the unit through it would change the rows.
        "SELECT s, COUNT(*) FROM (SELECT DISTINCT sex AS s FROM patients) t GROUP BY s",
    ] {
        match e.protected_plan(sql).await {
            Err(RewriteError::Unsupported(_)) => {}
            other => panic!("{sql}: expected Unsupported, got {other:?}"),
        }
    }
    // Refused by the analysis (a subquery over personal data in HAVING).
    let sql =
        "SELECT sex FROM patients GROUP BY sex HAVING COUNT(*) > (SELECT COUNT(*) FROM patients)";
    match e.protected_plan(sql).await {
        Err(RewriteError::Refused(_)) => {}
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    }
    // Not a cells query: nothing to protect, refused rather than passed through.
    match e
        .protected_plan("SELECT region, COUNT(*) FROM practices GROUP BY region")
        .await
    {
        Err(RewriteError::Unsupported(_)) => {}
        other => panic!("public query: expected Unsupported, got {other:?}"),
    }
    // COUNT(DISTINCT) of a record identifier is supported (per-person counts add up).
    let sql = "SELECT admimeth, COUNT(DISTINCT epikey) FROM hes_apc GROUP BY admimeth";
    let plan = e.protected_plan(sql).await.expect("rewrites");
    assert!(run(&e.ctx, plan).await.iter().all(|b| {
        let n = b.column(1).as_primitive::<Int64Type>();
        n.iter().flatten().all(|v| v % 5 == 0)
    }));
}

/// Rule 7 inside a per-person aggregation is measured in the answer's cells, as far as they
/// follow from its groups: a code list under `GROUP BY patient_id, snomedct_code` is one
/// value per cell when the answer is by code (it stays a plain filter, pushed into the
/// scan), and a condition to measure when the answer is a total (the groups are finer than
/// the answer's cells, so a condition could remove one person's whole group).
#[tokio::test]
async fn a_per_person_aggregation_measures_its_conditions_in_the_answers_cells() {
    let e = env().await;
    let per_person = "WITH gp AS (SELECT patient_id, snomedct_code, COUNT(*) AS codes \
                      FROM clinical_events WHERE snomedct_code IN ('44054006', '38341003') \
                      GROUP BY patient_id, snomedct_code)";
    // The measured conditions are lifted into boolean columns `__fs_a…` over the code (the
    // list of constants as one).
    let measured = |plan: &LogicalPlan| {
        plan.display_indent().to_string().lines().any(|l| {
            l.contains("snomedct_code IN ([Utf8(\"44054006\"), Utf8(\"38341003\")]) AS __fs_a")
        })
    };
    let by_code = format!("{per_person} SELECT snomedct_code, COUNT(*) FROM gp GROUP BY 1");
    let plan = e.protected_plan(&by_code).await.expect("rewrites");
    assert!(!measured(&plan), "{}", plan.display_indent());
    // The same answers as the plain per-code counts, protected.
    let direct = "SELECT snomedct_code, COUNT(DISTINCT patient_id) FROM clinical_events \
                  WHERE snomedct_code IN ('44054006', '38341003') GROUP BY 1";
    let released = rows(&e.protected(&by_code).await, 1);
    assert_eq!(released.len(), 2, "{released:?}");
    assert_eq!(released, rows(&e.protected(direct).await, 1));

    let total = format!("{per_person} SELECT COUNT(*) FROM gp");
    let plan = e.protected_plan(&total).await.expect("rewrites");
    assert!(measured(&plan), "{}", plan.display_indent());
    // Grouped by another key, the list (read by class since session 41: a list that adds a
    // code only one person has must not change an answer) is refused, as a per-person
    // category's list is there; one code is measured.
    let by_sex = format!(
        "{per_person} SELECT p.sex, COUNT(*) FROM gp \
         JOIN patients p ON p.patient_id = gp.patient_id GROUP BY p.sex"
    );
    match e.protected_plan(&by_sex).await {
        Err(RewriteError::Refused(r)) => assert_eq!(r.rule, Rule::LowEffect, "{r:?}"),
        other => panic!("{by_sex}: expected a refusal, got {other:?}"),
    }
    let one = "WITH gp AS (SELECT patient_id, snomedct_code, COUNT(*) AS codes \
               FROM clinical_events WHERE snomedct_code = '44054006' \
               GROUP BY patient_id, snomedct_code) SELECT p.sex, COUNT(*) FROM gp \
               JOIN patients p ON p.patient_id = gp.patient_id GROUP BY p.sex";
    let plan = e.protected_plan(one).await.expect("rewrites");
    assert!(
        plan.display_indent()
            .to_string()
            .contains("snomedct_code = Utf8(\"44054006\") AS __fs_a"),
        "{}",
        plan.display_indent()
    );
}
