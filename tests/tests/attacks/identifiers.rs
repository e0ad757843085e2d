//! Direct selection of identifiers and of single persons' values: rows about persons
//! (FS-1), identifying columns outside joins and `COUNT(DISTINCT …)` (FS-1a), and aggregates
//! that return one person's value (FS-2). Each refusal comes with a positive control that
//! the same data is available in its allowed form.

use fivesafes_policies::decision::Rule;

use crate::common::*;

async fn assert_refused(cx: &fivesafes_policies::query::ProjectContext, rule: Rule, sqls: &[&str]) {
    for sql in sqls {
        assert_eq!(refused(cx, sql).await, rule, "{sql}");
    }
}

#[tokio::test]
async fn rows_about_persons_are_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    assert_refused(
        &cx,
        Rule::OnlyAggregates,
        &[
            "SELECT * FROM patients",
            "SELECT patient_id FROM patients",
            "SELECT patient_id, birth_month FROM patients WHERE practice_code = 'X20001'",
            "SELECT sex, birth_month FROM patients",
            "SELECT DISTINCT birth_month FROM patients",
            "SELECT * FROM clinical_events WHERE snomedct_code = '999000003'",
            "SELECT numeric_value FROM clinical_events WHERE numeric_value > 100000",
            "SELECT patient_id, COUNT(*) FROM clinical_events GROUP BY patient_id",
            "SELECT COUNT(*) FROM patients GROUP BY patient_id",
            "SELECT e.* FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id",
            "SELECT admidate FROM hes_apc UNION SELECT arrivaldate FROM hes_ae",
            "SELECT epikey FROM hes_apc",
        ],
    )
    .await;
}

#[tokio::test]
async fn identifying_columns_outside_joins_and_distinct_counts_are_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let victim = f.cohort(DIFF_PRACTICE)[0].patient_id;
    let by_id = format!("SELECT COUNT(*) FROM patients WHERE patient_id = {victim}");
    let in_list =
        format!("SELECT COUNT(*) FROM clinical_events WHERE patient_id IN ({victim}, 1, 2)");
    let sum_by_id = format!(
        "SELECT SUM(numeric_value) FROM clinical_events WHERE patient_id = {victim} \
         OR snomedct_code = '999000001'"
    );
    assert_refused(
        &cx,
        Rule::IdentifyingColumn,
        &[
            &by_id,
            &in_list,
            &sum_by_id,
            "SELECT COUNT(*) FROM patients WHERE patient_id > 4611686018427387904",
            "SELECT COUNT(*) FROM patients WHERE CAST(patient_id AS VARCHAR) LIKE '1%'",
            "SELECT patient_id % 2 AS half, COUNT(*) FROM patients GROUP BY 1",
            "SELECT SUM(epikey) FROM hes_apc",
            "SELECT AVG(spell_id) FROM hes_apc",
            "SELECT COUNT(*) FROM hes_apc WHERE epikey + 1 = 5",
            "SELECT epikey % 10 AS d, COUNT(*) FROM hes_apc GROUP BY 1",
            "SELECT COUNT(DISTINCT epikey % 7) FROM hes_apc",
            "SELECT COUNT(*) FROM hes_apc WHERE spell_id BETWEEN 1 AND 1000000000000",
            "SELECT COUNT(*) FROM patients p JOIN clinical_events e \
             ON p.patient_id = e.patient_id WHERE p.patient_id < e.patient_id + 1",
        ],
    )
    .await;
    // Positive controls: identifiers in join conditions, COUNT(DISTINCT …), per-person
    // grouping aggregated again, and cohort selection.
    for sql in [
        "SELECT COUNT(DISTINCT patient_id) FROM clinical_events WHERE snomedct_code = '999000001'",
        "SELECT COUNT(DISTINCT epikey) FROM hes_apc",
        "SELECT n, COUNT(*) FROM (SELECT patient_id, COUNT(*) AS n FROM clinical_events \
         WHERE snomedct_code = '999000001' GROUP BY patient_id) t GROUP BY n",
        "SELECT COUNT(*) FROM patients WHERE patient_id IN \
         (SELECT patient_id FROM clinical_events WHERE snomedct_code = '999000001')",
        "SELECT COUNT(*) FROM patients p JOIN clinical_events e ON p.patient_id = e.patient_id \
         WHERE e.snomedct_code = '999000001'",
    ] {
        let got = rows(&cx, sql).await;
        assert!(!got.is_empty(), "{sql}");
    }
}

#[tokio::test]
async fn aggregates_that_return_one_persons_value_are_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    assert_refused(
        &cx,
        Rule::Aggregate,
        &[
            "SELECT MAX(numeric_value) FROM clinical_events",
            "SELECT MIN(numeric_value) FROM clinical_events WHERE snomedct_code = '999000003'",
            "SELECT MIN(birth_month) FROM patients",
            "SELECT MAX(admidate) FROM hes_apc",
            "SELECT MEDIAN(numeric_value) FROM clinical_events",
            "SELECT approx_percentile_cont(numeric_value, 0.99) FROM clinical_events",
            "SELECT array_agg(sex) FROM patients",
            "SELECT string_agg(ethnicity, ',') FROM patients",
            "SELECT first_value(numeric_value) FROM clinical_events",
            "SELECT last_value(birth_month) FROM patients",
            "SELECT stddev(numeric_value) FROM clinical_events",
            "SELECT var_pop(numeric_value) FROM clinical_events",
            "SELECT bit_or(imd_decile) FROM patients",
            "SELECT practice_code, MAX(numeric_value) FROM clinical_events e JOIN patients p \
             ON e.patient_id = p.patient_id GROUP BY practice_code",
            "SELECT MAX(n) FROM (SELECT patient_id, COUNT(*) AS n FROM clinical_events \
             GROUP BY patient_id) t",
        ],
    )
    .await;
    // Positive control: the allowed aggregates over the same data.
    let got = rows(
        &cx,
        "SELECT COUNT(numeric_value), SUM(numeric_value), AVG(numeric_value) \
         FROM clinical_events WHERE snomedct_code = '999000003'",
    )
    .await;
    assert_eq!(got.len(), 1);
    assert!(got[0].iter().all(|v| v != "NULL"), "{got:?}");
}
