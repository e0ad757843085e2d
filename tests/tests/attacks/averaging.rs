//! Averaging: asking the same question many times, or in many phrasings, to average the
//! noise away. DESIGN.md rule 4: the noise of a cell is a function of the set of persons
//! behind it (its cell key), so every repeat and every rephrasing that selects the same
//! persons gets exactly the same answer, and averaging gains nothing.

use fivesafes_policies::output::edge_anchor_keys;

use crate::common::*;

/// The question: women born in 1950 registered at the rephrasing practice (23 persons; the
/// cohort also has 14 men born in 1950 and 13 women born just outside 1950 or in 1960, and
/// another practice has 12 women born in 1950, so no condition is low-effect).
const WOMEN_1950: usize = 23;

/// Ways of saying "born in 1950".
const YEAR: &[&str] = &[
    "date_part('year', birth_month) = 1950",
    "EXTRACT(YEAR FROM birth_month) = 1950",
    "date_part('year', birth_month) + 0 = 1950",
    "date_part('year', birth_month) - 1950 = 0",
    "date_part('year', birth_month) * 2 = 3900",
    "1950 = date_part('year', birth_month)",
    "date_part('year', birth_month) BETWEEN 1950 AND 1950",
    "date_part('year', birth_month) IN (1950)",
    "date_part('year', birth_month) IN (1950, 1850)",
    "birth_month >= DATE '1950-01-01' AND birth_month < DATE '1951-01-01'",
    "birth_month BETWEEN DATE '1950-01-01' AND DATE '1950-12-01'",
    "birth_month BETWEEN DATE '1950-01-01' AND DATE '1950-12-31'",
    "birth_month > DATE '1949-12-31' AND birth_month <= DATE '1950-12-31'",
    "to_char(birth_month, '%Y') = '1950'",
    "CAST(birth_month AS VARCHAR) LIKE '1950-%'",
    "substr(CAST(birth_month AS VARCHAR), 1, 4) = '1950'",
    "2000 - date_part('year', birth_month) = 50",
    "date_part('year', DATE '2000-06-30') - date_part('year', birth_month) = 50",
    "NOT (date_part('year', birth_month) <> 1950)",
    "date_part('year', birth_month) >= 1950 AND date_part('year', birth_month) <= 1950",
    "(date_part('year', birth_month) = 1950) IS TRUE",
    "CAST(date_part('year', birth_month) AS BIGINT) = 1950",
    "CAST(date_part('year', birth_month) AS DOUBLE) = 1950.0",
    "abs(date_part('year', birth_month) - 1950) < 1",
    "birth_month IN (DATE '1950-01-01', DATE '1950-02-01', DATE '1950-03-01', \
     DATE '1950-04-01', DATE '1950-05-01', DATE '1950-06-01', DATE '1950-07-01', \
     DATE '1950-08-01', DATE '1950-09-01', DATE '1950-10-01', DATE '1950-11-01', \
     DATE '1950-12-01')",
    "date_part('year', birth_month) = 1950 AND date_part('month', birth_month) BETWEEN 1 AND 12",
    "date_part('year', birth_month) = 1950 AND 1 = 1",
    "date_part('year', birth_month) = 1950 AND TRUE",
    "date_part('year', birth_month) = 1950 AND birth_month IS NOT NULL",
    "date_part('year', birth_month) = 1950 AND (ethnicity = 'A' OR ethnicity <> 'A')",
];

/// Ways of saying "women" (the cohort has only F and M).
const SEX: &[&str] = &[
    "sex = 'F'",
    "sex IN ('F')",
    "sex <> 'M'",
    "lower(sex) = 'f'",
    "sex LIKE 'F'",
    "NOT sex = 'M'",
    "sex NOT IN ('M', 'I', 'U')",
    "(sex = 'F' OR sex = 'F')",
    "upper(sex) = 'F'",
    "sex = 'F' AND sex IS NOT NULL",
];

/// Query shapes around a condition `{c}`: each returns one row with one count.
const SHAPES: &[&str] = &[
    "SELECT COUNT(*) FROM patients WHERE practice_code = 'X60001' AND {c}",
    "SELECT COUNT(*) AS n FROM patients p WHERE p.practice_code = 'X60001' AND {c}",
    "SELECT COUNT(1) FROM patients WHERE {c} AND practice_code = 'X60001'",
    "SELECT COUNT(sex) FROM patients WHERE practice_code = 'X60001' AND ({c})",
    "SELECT COUNT(DISTINCT patient_id) FROM patients WHERE practice_code = 'X60001' AND {c}",
    "SELECT COUNT(*) FROM (SELECT * FROM patients WHERE practice_code = 'X60001') t WHERE {c}",
    "WITH c AS (SELECT patient_id, sex, ethnicity, birth_month FROM patients \
     WHERE practice_code = 'X60001') SELECT COUNT(*) FROM c WHERE {c}",
    "WITH c AS (SELECT sex, ethnicity, birth_month FROM patients \
     WHERE practice_code IN ('X60001')) SELECT COUNT(*) AS women FROM c WHERE {c}",
    "SELECT COUNT(*) FROM patients JOIN practices USING (practice_code) \
     WHERE practice_name = 'Planted Practice X60001' AND {c}",
    "SELECT COUNT(*) FROM patients WHERE practice_code = 'X60001' AND {c} ORDER BY 1 LIMIT 5",
];

/// Shapes that return the count with a grouping key.
const GROUPED: &[&str] = &[
    "SELECT practice_code, COUNT(*) FROM patients WHERE practice_code = 'X60001' AND {c} \
     GROUP BY practice_code",
    "SELECT sex, COUNT(*) FROM patients WHERE practice_code = 'X60001' AND {c} GROUP BY sex",
];

/// Fifty-odd rephrasings of "how many women born in 1950 at practice X60001".
fn rephrasings() -> Vec<String> {
    let mut out = Vec::new();
    for (i, year) in YEAR.iter().enumerate() {
        let sex = SEX[i % SEX.len()];
        let shape = SHAPES[i % SHAPES.len()];
        out.push(shape.replace("{c}", &format!("{year} AND {sex}")));
        // The same condition with the other order of conjuncts, in the next shape.
        let shape = SHAPES[(i + 3) % SHAPES.len()];
        out.push(shape.replace("{c}", &format!("{sex} AND ({year})")));
    }
    out.push(
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'X60001' \
         AND date_part('year', birth_month) = 1950 GROUP BY sex HAVING sex = 'F'"
            .into(),
    );
    out.push(
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'X60001' AND patient_id IN \
         (SELECT patient_id FROM patients WHERE sex = 'F' AND date_part('year', birth_month) = 1950)"
            .into(),
    );
    out
}

#[tokio::test]
async fn fifty_rephrasings_of_one_question_give_one_answer() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let women: Vec<&Planted> = f
        .cohort(REPHRASE_PRACTICE)
        .into_iter()
        .filter(|p| p.sex == 'F')
        .collect();
    assert_eq!(
        women.iter().filter(|p| p.dob.starts_with("1950-")).count(),
        WOMEN_1950
    );
    // The year is read at the women's birth months snapped to the nearest edge anchor's
    // (DESIGN.md rule 7, range edges; see `differencing`), so the persons kept are those
    // whose snapped month is in 1950 — every phrasing keeps the same persons.
    let months: Vec<String> = women
        .iter()
        .map(|p| format!("{}-01", &p.dob[..7]))
        .collect();
    let at: Vec<i64> = months.iter().map(|m| days(m)).collect();
    let anchors = edge_anchor_keys();
    let anchor: Vec<bool> = women
        .iter()
        .map(|p| anchors.contains(&p.record_key))
        .collect();
    let kept: Vec<bool> = snapped_to_anchors(&at, &anchor)
        .expect("anchors among the women")
        .iter()
        .map(|d| months[at.iter().position(|x| x == d).expect("a month")].starts_with("1950-"))
        .collect();
    let want = count_under_condition(&women, &kept, cx.output_control());
    assert!(want.is_some(), "the women are released");
    let queries = rephrasings();
    assert!(queries.len() >= 50, "{} rephrasings", queries.len());
    let mut answers = Vec::new();
    for sql in &queries {
        answers.push((sql.clone(), outcome(&cx, sql).await));
    }
    for shape in GROUPED {
        for (year, sex) in YEAR.iter().zip(SEX.iter().cycle()).take(6) {
            let sql = shape.replace("{c}", &format!("{year} AND {sex}"));
            let got = rows(&cx, &sql).await;
            let count = got.first().map(|r| r[1].clone());
            answers.push((
                sql,
                format!(
                    "rows: {:?}",
                    count.map(|c| vec![vec![c]]).unwrap_or_default()
                ),
            ));
        }
    }
    let expected = format!("rows: {:?}", vec![vec![want.clone().unwrap_or_default()]]);
    let wrong: Vec<String> = answers
        .iter()
        .filter(|(_, got)| *got != expected)
        .map(|(sql, got)| format!("{sql}\n    -> {got}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} rephrasings did not give the one answer {expected}:\n{}",
        wrong.len(),
        answers.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn repeating_a_query_gives_the_same_answer() {
    let f = fixture();
    let sql = "SELECT sex, COUNT(*), SUM(numeric_value), AVG(numeric_value) \
               FROM patients p JOIN clinical_events e ON p.patient_id = e.patient_id \
               WHERE e.snomedct_code IN ('999000001', '999000002', '999000003') GROUP BY sex";
    let cx = f.project(RESEARCH).await;
    let first = sorted_rows(&cx, sql).await;
    assert!(!first.is_empty());
    for _ in 0..10 {
        assert_eq!(sorted_rows(&cx, sql).await, first);
    }
    // A new session (another connection, another day) gives the same answer too.
    let other = f.project(RESEARCH).await;
    for _ in 0..5 {
        assert_eq!(sorted_rows(&other, sql).await, first);
    }
}

#[tokio::test]
async fn rephrased_sums_and_means_give_one_answer() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let sums = [
        "SELECT SUM(numeric_value) FROM clinical_events WHERE snomedct_code = '999000001'",
        "SELECT SUM(e.numeric_value) AS total FROM clinical_events e \
         WHERE e.snomedct_code = '999000001'",
        "SELECT SUM(numeric_value + 0) FROM clinical_events WHERE snomedct_code = '999000001'",
        "SELECT SUM(numeric_value * 1) FROM clinical_events WHERE snomedct_code = '999000001'",
        "SELECT SUM(numeric_value) FROM clinical_events \
         WHERE snomedct_code = '999000001' AND numeric_value IS NOT NULL",
        "SELECT SUM(numeric_value) FROM clinical_events \
         WHERE snomedct_code LIKE '999000001' AND 2 > 1",
        "WITH e AS (SELECT * FROM clinical_events WHERE snomedct_code = '999000001') \
         SELECT SUM(numeric_value) FROM e",
        "SELECT SUM(v) FROM (SELECT numeric_value AS v FROM clinical_events \
         WHERE snomedct_code = '999000001') t",
        "SELECT SUM(numeric_value) FROM clinical_events WHERE snomedct_code = '999000001' \
         AND patient_id IN (SELECT patient_id FROM patients WHERE practice_code = 'X20001')",
        "SELECT SUM(e.numeric_value) FROM clinical_events e JOIN patients p \
         ON e.patient_id = p.patient_id WHERE e.snomedct_code = '999000001'",
    ];
    let first = rows(&cx, sums[0]).await;
    assert_eq!(first.len(), 1);
    assert_ne!(first[0][0], "NULL");
    for sql in sums {
        assert_eq!(rows(&cx, sql).await, first, "{sql}");
    }
    let means = [
        "SELECT AVG(numeric_value) FROM clinical_events WHERE snomedct_code = '999000001'",
        "SELECT AVG(numeric_value + 0) FROM clinical_events WHERE snomedct_code = '999000001'",
        "WITH e AS (SELECT patient_id, numeric_value FROM clinical_events \
         WHERE snomedct_code IN ('999000001')) SELECT AVG(numeric_value) AS m FROM e",
        "SELECT AVG(e.numeric_value) FROM clinical_events e JOIN patients p \
         ON e.patient_id = p.patient_id WHERE e.snomedct_code = '999000001' \
         AND p.practice_code = 'X20001'",
    ];
    let first = rows(&cx, means[0]).await;
    assert_eq!(first.len(), 1);
    assert_ne!(first[0][0], "NULL");
    for sql in means {
        assert_eq!(rows(&cx, sql).await, first, "{sql}");
    }
}

#[tokio::test]
async fn rephrasings_of_a_low_effect_condition_give_one_answer() {
    // "Women at X20001": the practice's 30 persons are 26 women, 3 men and one of
    // indeterminate sex, so the condition on sex leaves out 4 persons, fewer than the
    // low-effect threshold (DESIGN.md rule 7). Whether it is a filter, a grouping key or a
    // HAVING clause, and however it is written, the answer is the whole practice's.
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let total = single(
        &cx,
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001'",
    )
    .await;
    assert!(total.is_some());
    let mut wrong = Vec::new();
    for sex in SEX {
        let filtered =
            format!("SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001' AND {sex}");
        let got = single(&cx, &filtered).await;
        if got != total {
            wrong.push(format!("{filtered} -> {got:?}"));
        }
        let grouped = format!(
            "SELECT sex, COUNT(*) FROM patients WHERE practice_code = 'X20001' AND {sex} \
             GROUP BY sex"
        );
        let got = rows(&cx, &grouped).await;
        if got != vec![vec!["F".to_string(), total.clone().unwrap_or_default()]] {
            wrong.push(format!("{grouped} -> {got:?}"));
        }
    }
    for sql in [
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001' GROUP BY sex \
         HAVING sex = 'F'",
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001' AND patient_id IN \
         (SELECT patient_id FROM patients WHERE sex = 'F')",
    ] {
        let got = single(&cx, sql).await;
        if got != total {
            wrong.push(format!("{sql} -> {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "expected the practice's answer {total:?}:\n{}",
        wrong.join("\n")
    );
}
