//! The analyst queries of the benchmark and the ways each is timed.
//!
//! Every query runs in the project [`ANALYST_PROJECT`](super::env::ANALYST_PROJECT) (every
//! table approved, national opt-out applied) over the server's own project session, so all
//! four timings read the same store through the same memory pool:
//!
//! - **protected**: [`ProjectContext::prepare`] (statement gate, privacy-unit analysis,
//!   output-control rewrite), physical planning, execution, collection: what the server does
//!   for a query, without the audit log, encoding or network;
//! - **unprotected**: the same SQL planned through the statement gate only
//!   ([`ProjectContext::plan_unprotected`]), physically planned and collected in the same
//!   session: plain DataFusion over the project view (opt-out filter included), whose result
//!   is never released;
//! - **server**: the server's run path ([`fivesafes_server::run::run_sql`]): the protected
//!   query plus budget, the two durable audit records and the Flight encoding and hash;
//! - **flight**: end to end from a Flight SQL client over loopback (`GetFlightInfo`, then
//!   `DoGet` of the ticket), measured by the client.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::physical_plan::execute_stream;
use fivesafes_policies::query::{self, ProjectContext, QueryError};
use futures::TryStreamExt;
use serde::Serialize;

/// One benchmark query.
#[derive(Debug, Clone, Copy)]
pub struct BenchQuery {
    /// Short name (table row, JSON key).
    pub name: &'static str,
    /// What an analyst asks with it.
    pub question: &'static str,
    /// The SQL.
    pub sql: &'static str,
    /// Less than rule 7 (low-effect conditions and grouping keys, DESIGN.md) obliges any
    /// exact implementation to compute for `sql`, written as one plain query: the rows the
    /// query's date range (and, for HbA1c, its value range) leaves out as well as those it
    /// keeps, grouped by every cell and every cell with one grouping key dropped (a grouping
    /// key's effect on a cell is measured against that coarser cell), with the range's truth
    /// value as an extra key, and only the query's aggregates that are not distinct counts.
    /// Rule 7 needs more: distinct persons (at least up to the threshold) where this counts
    /// rows, the other conditions' measurement, cell keys, noise and suppression. So it is a
    /// lower bound: its time over the unprotected time is a floor under the
    /// protected/unprotected ratio.
    pub floor: &'static str,
}

/// The realistic analyst queries (issue 6): GP activity by practice and month, prevalence by
/// age band and sex, poorly controlled diabetes, admissions joined to GP diagnoses, 30-day
/// readmissions, prescribing by BNF chapter, A&E by arrival mode, and two levels of
/// aggregation in a CTE; plus outpatient non-attendance and regional A&E use through a
/// public reference table. All over the last synthetic financial year where dated.
pub const QUERIES: &[BenchQuery] = &[
    BenchQuery {
        name: "practice-month",
        question: "GP-recorded events and persons by practice and month",
        sql: "SELECT p.practice_code, to_char(e.event_date, '%Y-%m') AS month, \
              COUNT(*) AS events, COUNT(DISTINCT e.patient_id) AS persons \
              FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
              WHERE e.event_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31' \
              GROUP BY p.practice_code, to_char(e.event_date, '%Y-%m')",
        floor: "SELECT p.practice_code, to_char(e.event_date, '%Y-%m') AS month, \
                COUNT(*) AS events \
              FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
              GROUP BY GROUPING SETS ( \
                (p.practice_code, to_char(e.event_date, '%Y-%m'), \
                 e.event_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (p.practice_code, e.event_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (to_char(e.event_date, '%Y-%m'), \
                 e.event_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'))",
    },
    BenchQuery {
        name: "prevalence-age-sex",
        question: "Type 2 diabetes prevalence (patients and diagnosed) by age band and sex",
        sql: "WITH t2dm AS (SELECT patient_id, COUNT(*) AS codes FROM clinical_events \
                WHERE snomedct_code = '44054006' GROUP BY patient_id) \
              SELECT p.sex, \
                CASE WHEN p.birth_month > DATE '2006-03-31' THEN '0-17' \
                     WHEN p.birth_month > DATE '1984-03-31' THEN '18-39' \
                     WHEN p.birth_month > DATE '1964-03-31' THEN '40-59' \
                     WHEN p.birth_month > DATE '1944-03-31' THEN '60-79' \
                     ELSE '80+' END AS age_band, \
                COUNT(*) AS patients, COUNT(t.codes) AS with_t2dm \
              FROM patients p LEFT JOIN t2dm t ON t.patient_id = p.patient_id \
              WHERE p.death_month IS NULL \
              GROUP BY 1, 2",
        floor: "WITH t2dm AS (SELECT patient_id, COUNT(*) AS codes FROM clinical_events \
                WHERE snomedct_code = '44054006' GROUP BY patient_id), \
              banded AS (SELECT p.patient_id, p.sex, p.death_month, \
                CASE WHEN p.birth_month > DATE '2006-03-31' THEN '0-17' \
                     WHEN p.birth_month > DATE '1984-03-31' THEN '18-39' \
                     WHEN p.birth_month > DATE '1964-03-31' THEN '40-59' \
                     WHEN p.birth_month > DATE '1944-03-31' THEN '60-79' \
                     ELSE '80+' END AS age_band FROM patients p) \
              SELECT b.sex, b.age_band, COUNT(*) AS patients, COUNT(t.codes) AS with_t2dm \
              FROM banded b LEFT JOIN t2dm t ON t.patient_id = b.patient_id \
              WHERE b.death_month IS NULL \
              GROUP BY GROUPING SETS ((b.sex, b.age_band), (b.sex), (b.age_band))",
    },
    BenchQuery {
        name: "hba1c-over-58",
        question: "Patients with type 2 diabetes and an HbA1c over 58 mmol/mol in the year, by deprivation decile",
        sql: "SELECT p.imd_decile, COUNT(DISTINCT e.patient_id) AS persons, \
                AVG(e.numeric_value) AS mean_hba1c \
              FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
              WHERE e.snomedct_code = '1049301000000100' AND e.numeric_value > 58 \
                AND e.event_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31' \
                AND e.patient_id IN (SELECT patient_id FROM clinical_events \
                                     WHERE snomedct_code = '44054006') \
              GROUP BY p.imd_decile",
        floor: "SELECT p.imd_decile, \
                AVG(e.numeric_value) AS mean_hba1c \
              FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
              WHERE e.snomedct_code = '1049301000000100' \
                AND e.patient_id IN (SELECT patient_id FROM clinical_events \
                                     WHERE snomedct_code = '44054006') \
              GROUP BY GROUPING SETS ( \
                (p.imd_decile, e.numeric_value > 58, \
                 e.event_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (e.numeric_value > 58, \
                 e.event_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'))",
    },
    BenchQuery {
        name: "admissions-gp-diagnoses",
        question: "Emergency admissions by ICD-10 chapter among patients with a GP-recorded chronic condition",
        sql: "WITH gp AS (SELECT patient_id, snomedct_code, COUNT(*) AS codes \
                FROM clinical_events \
                WHERE snomedct_code IN ('44054006', '195967001', '38341003', '13645005', '84114007') \
                GROUP BY patient_id, snomedct_code) \
              SELECT gp.snomedct_code AS gp_condition, substr(a.diag_4_01, 1, 1) AS icd10_chapter, \
                COUNT(DISTINCT a.spell_id) AS spells, COUNT(DISTINCT a.patient_id) AS persons \
              FROM hes_apc a JOIN gp ON a.patient_id = gp.patient_id \
              WHERE a.epiorder = 1 AND a.admimeth LIKE '2%' \
                AND a.admidate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31' \
              GROUP BY 1, 2",
        floor: "WITH gp AS (SELECT patient_id, snomedct_code, COUNT(*) AS codes \
                FROM clinical_events \
                WHERE snomedct_code IN ('44054006', '195967001', '38341003', '13645005', '84114007') \
                GROUP BY patient_id, snomedct_code) \
              SELECT gp.snomedct_code AS gp_condition, substr(a.diag_4_01, 1, 1) AS icd10_chapter, \
                COUNT(*) AS episodes \
              FROM hes_apc a JOIN gp ON a.patient_id = gp.patient_id \
              WHERE a.epiorder = 1 AND a.admimeth LIKE '2%' \
              GROUP BY GROUPING SETS ( \
                (gp.snomedct_code, substr(a.diag_4_01, 1, 1), \
                 a.admidate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (gp.snomedct_code, a.admidate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (substr(a.diag_4_01, 1, 1), \
                 a.admidate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'))",
    },
    BenchQuery {
        name: "readmissions-30d",
        question: "Discharges followed by an emergency readmission within 30 days, by month",
        sql: "SELECT to_char(i.disdate, '%Y-%m') AS month, \
                COUNT(DISTINCT i.spell_id) AS readmitted_discharges \
              FROM hes_apc i JOIN hes_apc r ON r.patient_id = i.patient_id \
                AND r.admidate >= i.disdate \
                AND r.admidate < i.disdate + INTERVAL '30 days' \
                AND r.admidate > i.admidate \
              WHERE i.dismeth IN ('1', '2', '3') \
                AND i.disdate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31' \
                AND r.epiorder = 1 \
                AND r.admimeth IN ('21', '22', '23', '24', '25', '28', '2A', '2D') \
              GROUP BY 1",
        floor: "SELECT to_char(i.disdate, '%Y-%m') AS month, \
                COUNT(*) AS pairs \
              FROM hes_apc i JOIN hes_apc r ON r.patient_id = i.patient_id \
                AND r.admidate >= i.disdate \
                AND r.admidate < i.disdate + INTERVAL '30 days' \
                AND r.admidate > i.admidate \
              WHERE i.dismeth IN ('1', '2', '3') \
                AND r.epiorder = 1 \
                AND r.admimeth IN ('21', '22', '23', '24', '25', '28', '2A', '2D') \
              GROUP BY GROUPING SETS ( \
                (to_char(i.disdate, '%Y-%m'), \
                 i.disdate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (i.disdate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'))",
    },
    BenchQuery {
        name: "prescribing-bnf-chapter",
        question: "Prescription items and persons by BNF chapter and month",
        sql: "SELECT substr(bnf_code, 1, 2) AS bnf_chapter, to_char(issue_date, '%Y-%m') AS month, \
                COUNT(*) AS items, COUNT(DISTINCT patient_id) AS persons \
              FROM medications \
              WHERE issue_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31' \
              GROUP BY 1, 2",
        floor: "SELECT substr(bnf_code, 1, 2) AS bnf_chapter, to_char(issue_date, '%Y-%m') AS month, \
                COUNT(*) AS items \
              FROM medications \
              GROUP BY GROUPING SETS ( \
                (substr(bnf_code, 1, 2), to_char(issue_date, '%Y-%m'), \
                 issue_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (substr(bnf_code, 1, 2), \
                 issue_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (to_char(issue_date, '%Y-%m'), \
                 issue_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'))",
    },
    BenchQuery {
        name: "ae-arrival-mode",
        question: "A&E attendances by arrival mode and disposal",
        sql: "SELECT aearrivalmode, aeattenddisp, COUNT(*) AS attendances, \
                COUNT(DISTINCT patient_id) AS persons \
              FROM hes_ae \
              WHERE arrivaldate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31' \
              GROUP BY 1, 2",
        floor: "SELECT aearrivalmode, aeattenddisp, COUNT(*) AS attendances \
              FROM hes_ae \
              GROUP BY GROUPING SETS ( \
                (aearrivalmode, aeattenddisp, \
                 arrivaldate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (aearrivalmode, arrivaldate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (aeattenddisp, arrivaldate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'))",
    },
    BenchQuery {
        name: "cte-two-levels",
        question: "Distribution of emergency admissions per patient, by sex (per-person counts, then counted)",
        sql: "WITH per_person AS (SELECT patient_id, COUNT(DISTINCT spell_id) AS spells \
                FROM hes_apc WHERE admimeth LIKE '2%' GROUP BY patient_id) \
              SELECT p.sex, CASE WHEN pp.spells >= 5 THEN '5+' \
                ELSE CAST(pp.spells AS VARCHAR) END AS emergency_spells, \
                COUNT(*) AS persons \
              FROM per_person pp JOIN patients p ON p.patient_id = pp.patient_id \
              GROUP BY 1, 2",
        floor: "WITH per_person AS (SELECT patient_id, COUNT(DISTINCT spell_id) AS spells \
                FROM hes_apc WHERE admimeth LIKE '2%' GROUP BY patient_id), \
              banded AS (SELECT pp.patient_id, p.sex, CASE WHEN pp.spells >= 5 THEN '5+' \
                ELSE CAST(pp.spells AS VARCHAR) END AS emergency_spells \
                FROM per_person pp JOIN patients p ON p.patient_id = pp.patient_id) \
              SELECT sex, emergency_spells, COUNT(*) AS persons \
              FROM banded \
              GROUP BY GROUPING SETS ((sex, emergency_spells), (sex), (emergency_spells))",
    },
    BenchQuery {
        name: "outpatient-dna",
        question: "Outpatient appointments and non-attendance by treatment specialty",
        sql: "SELECT tretspef, attended, COUNT(*) AS appointments, \
                COUNT(DISTINCT patient_id) AS persons \
              FROM hes_op \
              WHERE apptdate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31' \
              GROUP BY 1, 2",
        floor: "SELECT tretspef, attended, COUNT(*) AS appointments \
              FROM hes_op \
              GROUP BY GROUPING SETS ( \
                (tretspef, attended, apptdate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (tretspef, apptdate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'), \
                (attended, apptdate BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'))",
    },
    BenchQuery {
        name: "ae-by-region",
        question: "A&E attendances per region (practice reference data joined)",
        sql: "SELECT pr.region, COUNT(*) AS attendances, COUNT(DISTINCT a.patient_id) AS persons \
              FROM hes_ae a JOIN practices pr ON pr.practice_code = a.gpprac \
              GROUP BY pr.region",
        floor: "SELECT pr.region, COUNT(*) AS attendances \
              FROM hes_ae a JOIN practices pr ON pr.practice_code = a.gpprac \
              GROUP BY GROUPING SETS ((pr.region), ())",
    },
];

/// The cheap dashboard-style queries of the concurrency and audit measurements (one table,
/// one grouping each): many of them per second show the fixed cost per query.
pub const LOAD_MIX: [&str; 4] = [
    "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex",
    "SELECT imd_decile, COUNT(DISTINCT patient_id) AS persons FROM patients GROUP BY imd_decile",
    "SELECT admimeth, COUNT(*) AS spells FROM hes_apc GROUP BY admimeth",
    "SELECT aearrivalmode, COUNT(*) AS n FROM hes_ae GROUP BY aearrivalmode",
];

/// A query over public reference data only (no output control, a few hundred rows): its
/// Flight SQL latency is the fixed cost of the protocol, the server and the audit log.
pub const TRIVIAL: &str = "SELECT region, COUNT(*) AS practices FROM practices GROUP BY region";

/// Per-query figures (milliseconds; medians of the runs).
#[derive(Debug, Clone, Serialize)]
pub struct QueryTiming {
    /// The query's name.
    pub name: String,
    /// Through the policy layer, in process.
    pub protected_ms: f64,
    /// Plain DataFusion over the project view, in process.
    pub unprotected_ms: f64,
    /// protected / unprotected.
    pub ratio: f64,
    /// Plain DataFusion over the project view for [`BenchQuery::floor`], in process.
    pub floor_ms: f64,
    /// floor / unprotected: the least protected/unprotected ratio rule 7 allows.
    pub floor_ratio: f64,
    /// Through the server's run path in process (audit records, encoding, hash).
    pub server_ms: f64,
    /// End to end through Flight SQL, client-measured.
    pub flight_ms: f64,
    /// flight − protected.
    pub flight_overhead_ms: f64,
    /// Rows (cells) released.
    pub rows_released: usize,
    /// Rows of the unprotected result (cells before suppression).
    pub rows_unprotected: usize,
}

/// Runs `sql` through the policy layer and returns the number of released rows.
pub async fn protected(cx: &ProjectContext, sql: &str) -> Result<usize, QueryError> {
    let prepared = cx.prepare(sql).await?;
    let physical = prepared.physical_plan(cx).await?;
    let batches: Vec<RecordBatch> = query::execute(&physical, cx)?.try_collect().await?;
    Ok(batches.iter().map(RecordBatch::num_rows).sum())
}

/// Runs `sql` with no output control (statement gate only, same session) and returns the
/// number of rows. For measurement only: nothing of its result leaves this function.
pub async fn unprotected(cx: &ProjectContext, sql: &str) -> Result<usize, QueryError> {
    let plan = cx.plan_unprotected(sql).await?;
    let state = cx.session().state();
    let physical = state.create_physical_plan(&plan).await?;
    let batches: Vec<RecordBatch> = execute_stream(Arc::clone(&physical), cx.session().task_ctx())?
        .try_collect()
        .await?;
    Ok(batches.iter().map(RecordBatch::num_rows).sum())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fivesafes_engine::ingest::{IngestOptions, ingest};
    use fivesafes_engine::keys::Keys;
    use fivesafes_engine::session::{SessionOptions, runtime};
    use fivesafes_engine::store::Store;
    use fivesafes_engine::synth::{SynthOptions, generate};
    use fivesafes_policies::Register;
    use fivesafes_policies::analysis::Kind;

    use super::*;
    use crate::bench::env::{ANALYST_PROJECT, register_text};

    /// Every benchmark query is accepted by the policy layer in the benchmark's analyst
    /// project and released as protected cells, output control only ever removes cells, and
    /// every floor query runs.
    #[tokio::test(flavor = "multi_thread")]
    async fn every_benchmark_query_is_protected_and_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let extracts = dir.path().join("extracts");
        generate(&SynthOptions {
            patients: 3_000,
            seed: 11,
            out: extracts.clone(),
            progress: false,
        })
        .expect("synth");
        let mut opts = IngestOptions::new(&extracts, dir.path().join("store"));
        opts.progress = false;
        ingest(&opts, &Keys::from_bytes([3; 32], [4; 32])).expect("ingest");
        let version = Store::new(dir.path().join("store"))
            .open_current()
            .expect("store");
        let register = Register::from_toml(&register_text(), "bench").expect("register");
        let project = register.project(ANALYST_PROJECT).expect("project");
        let session = SessionOptions::default();
        let cx = ProjectContext::open(
            &version,
            project,
            Arc::clone(&runtime(&session).expect("runtime")),
            &session,
        )
        .await
        .expect("project context");

        let all_queries = QUERIES.iter().map(|q| (q.name, q.sql));
        for (name, sql) in all_queries.chain(LOAD_MIX.map(|s| ("load mix", s))) {
            let prepared = cx
                .prepare(sql)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(prepared.kind, Kind::Cells, "{name}");
            assert_eq!(prepared.rules_applied, cell_rules(), "{name}");
            let released = protected(&cx, sql).await.expect(name);
            let all = unprotected(&cx, sql).await.expect(name);
            assert!(
                released <= all,
                "{name}: {released} released of {all} cells"
            );
        }
        // Each floor runs as plain SQL and holds every cell of its query and more (the coarser
        // cells of its grouping sets, and the rows its lifted range would have left out).
        for q in QUERIES {
            let cells = unprotected(&cx, q.sql).await.expect(q.name);
            let floor = unprotected(&cx, q.floor)
                .await
                .unwrap_or_else(|e| panic!("{} floor: {e}", q.name));
            assert!(
                floor > cells,
                "{}: floor {floor} rows, {cells} cells",
                q.name
            );
        }
        let public = cx.prepare(TRIVIAL).await.expect("public query");
        assert_eq!(public.kind, Kind::Public);
        assert!(protected(&cx, TRIVIAL).await.expect("public query") > 0);
    }

    fn cell_rules() -> Vec<String> {
        fivesafes_policies::query::CELL_RULES
            .map(String::from)
            .to_vec()
    }
}
