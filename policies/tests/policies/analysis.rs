//! Privacy-unit tracking over real project views: which queries are accepted as public or as
//! aggregated cells, and which are refused under which rule.

use fivesafes_engine::session::SessionOptions;
use fivesafes_policies::analysis::{Kind, TableFacts, analyse};
use fivesafes_policies::decision::Rule;
use fivesafes_policies::gate::plan_query;
use fivesafes_policies::view::project_session;

use crate::gate::{spec, store};

#[tokio::test]
async fn classifies_and_refuses_by_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = store(dir.path());
    let ctx = project_session(&v, &spec(true), &SessionOptions::default())
        .await
        .expect("session");
    let facts = TableFacts::from_manifest(&v.manifest);
    let verdict = |sql: &'static str| {
        let ctx = ctx.clone();
        let facts = facts.clone();
        async move {
            let plan = plan_query(&ctx, sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            analyse(&plan, &facts).map(|a| a.kind).map_err(|r| r.rule)
        }
    };

    for (sql, kind) in [
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY sex",
            Kind::Cells,
        ),
        (
            "SELECT COUNT(DISTINCT patient_id) AS n FROM clinical_events WHERE snomedct_code = '44054006'",
            Kind::Cells,
        ),
        (
            "SELECT p.practice_code, COUNT(DISTINCT e.patient_id) FROM clinical_events e \
             JOIN patients p ON e.patient_id = p.patient_id \
             WHERE e.snomedct_code = '44054006' GROUP BY p.practice_code",
            Kind::Cells,
        ),
        (
            "SELECT pr.region, COUNT(*) FROM patients p JOIN practices pr \
             ON p.practice_code = pr.practice_code GROUP BY pr.region",
            Kind::Cells,
        ),
        (
            "SELECT AVG(numeric_value), SUM(numeric_value) FROM clinical_events WHERE snomedct_code = '1049301000000100'",
            Kind::Cells,
        ),
        (
            "WITH per AS (SELECT patient_id, COUNT(*) AS n FROM hes_apc GROUP BY patient_id) \
             SELECT n, COUNT(*) FROM per GROUP BY n",
            Kind::Cells,
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE patient_id IN \
             (SELECT patient_id FROM clinical_events WHERE snomedct_code = '44054006')",
            Kind::Cells,
        ),
        (
            "SELECT COUNT(*) FROM hes_apc a JOIN hes_apc b ON a.patient_id = b.patient_id \
             AND b.admidate > a.disdate AND b.admidate <= a.disdate + INTERVAL '30 days'",
            Kind::Cells,
        ),
        (
            "SELECT COUNT(*) FROM patients JOIN hes_apc USING (patient_id)",
            Kind::Cells,
        ),
        ("SELECT COUNT(DISTINCT spell_id) FROM hes_apc", Kind::Cells),
        (
            "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex ORDER BY n DESC LIMIT 1",
            Kind::Cells,
        ),
        (
            "SELECT COUNT(*) * 1000.0 / 7 FROM hes_apc WHERE admimeth LIKE '2%'",
            Kind::Cells,
        ),
        ("SELECT * FROM practices", Kind::Public),
        ("SELECT * FROM practices LIMIT 5", Kind::Public),
        ("SELECT MAX(practice_name) FROM practices", Kind::Public),
    ] {
        assert_eq!(verdict(sql).await, Ok(kind), "{sql}");
    }

    for (sql, rule) in [
        ("SELECT * FROM patients", Rule::OnlyAggregates),
        ("SELECT patient_id FROM patients", Rule::OnlyAggregates),
        ("SELECT sex FROM patients", Rule::OnlyAggregates),
        ("SELECT DISTINCT sex FROM patients", Rule::OnlyAggregates),
        (
            "SELECT patient_id, COUNT(*) FROM clinical_events GROUP BY patient_id",
            Rule::OnlyAggregates,
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE patient_id = 5",
            Rule::IdentifyingColumn,
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE patient_id > 0",
            Rule::IdentifyingColumn,
        ),
        ("SELECT SUM(epikey) FROM hes_apc", Rule::IdentifyingColumn),
        (
            "SELECT COUNT(*) FROM hes_apc WHERE epikey + 1 > 0",
            Rule::IdentifyingColumn,
        ),
        (
            "SELECT COUNT(*) FROM patients GROUP BY patient_id % 10",
            Rule::IdentifyingColumn,
        ),
        (
            "SELECT COUNT(patient_id + 0) FROM patients",
            Rule::IdentifyingColumn,
        ),
        (
            "SELECT MAX(numeric_value) FROM clinical_events",
            Rule::Aggregate,
        ),
        ("SELECT MIN(birth_month) FROM patients", Rule::Aggregate),
        (
            "SELECT MEDIAN(numeric_value) FROM clinical_events",
            Rule::Aggregate,
        ),
        (
            "SELECT ARRAY_AGG(snomedct_code) FROM clinical_events",
            Rule::Aggregate,
        ),
        ("SELECT STRING_AGG(sex, ',') FROM patients", Rule::Aggregate),
        (
            "SELECT FIRST_VALUE(numeric_value) FROM clinical_events",
            Rule::Aggregate,
        ),
        (
            "SELECT COUNT(*) FROM hes_apc a JOIN clinical_events e ON a.admidate = e.event_date",
            Rule::JoinAmplification,
        ),
        (
            "SELECT COUNT(*) FROM hes_apc a JOIN hes_apc b ON a.spell_id = b.spell_id",
            Rule::JoinAmplification,
        ),
        ("SELECT * FROM patients LIMIT 1", Rule::SideChannel),
        (
            "SELECT COUNT(*) FROM (SELECT * FROM patients LIMIT 10)",
            Rule::SideChannel,
        ),
        (
            "SELECT COUNT(*) FROM (SELECT * FROM patients ORDER BY birth_month LIMIT 10)",
            Rule::SideChannel,
        ),
        (
            "SELECT COUNT(*) FROM patients WHERE practice_code IN \
             (SELECT practice_code FROM practices LIMIT 5)",
            Rule::SideChannel,
        ),
        (
            "SELECT COUNT(*) FROM patients p JOIN (SELECT practice_code FROM practices \
             ORDER BY practice_code LIMIT 3) pr ON pr.practice_code = p.practice_code",
            Rule::SideChannel,
        ),
        (
            "SELECT sex, COUNT(*) FROM patients GROUP BY ROLLUP(sex)",
            Rule::Unsupported,
        ),
        (
            "SELECT COUNT(*) FROM (SELECT sex, COUNT(*) AS c FROM patients GROUP BY sex)",
            Rule::Unsupported,
        ),
        (
            "SELECT sex, ROW_NUMBER() OVER () FROM patients",
            Rule::Unsupported,
        ),
        (
            "SELECT COUNT(*) FROM clinical_events WHERE numeric_value > \
             (SELECT AVG(numeric_value) FROM clinical_events)",
            Rule::Unsupported,
        ),
    ] {
        assert_eq!(verdict(sql).await, Err(rule), "{sql}");
    }
}
