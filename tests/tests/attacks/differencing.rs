//! Differencing: two queries whose cells differ by exactly one person. If the two released
//! answers differ exactly when the person is in the cell, the attacker learns that the person
//! is there (and, for sums, roughly their value). DESIGN.md rules 3 and 7: a condition that
//! changes a cell by fewer persons than the suppression threshold must not change the
//! released answer, and a cell left with 7 or fewer persons is suppressed.

use fivesafes_policies::decision::Rule;
use fivesafes_policies::output::{edge_anchor_keys, is_low_effect, low_effect_floor};
use fivesafes_policies::query::ProjectContext;

use crate::common::*;

/// Birth month (first of month) of person `i` of the differencing cohort.
fn birth_month(i: usize) -> String {
    format!("{}-{:02}-01", 1940 + i / 12, 1 + i % 12)
}

/// A condition on `patients` (under `alias`) that leaves out person `i` of the differencing
/// practice and every person of the other practices: one person of that practice's cells,
/// many persons elsewhere (an `OR` with a branch true for no one). Until session 38 a `CASE
/// WHEN practice_code = … THEN … ELSE sex <> 'M' END`: its `ELSE` is a negation of the
/// practice, which as written keeps the small practices that the same condition read by
/// class leaves out, and is now refused beside an edge.
fn one_here_many_elsewhere(alias: &str, i: usize) -> String {
    format!(
        "(({alias}.practice_code = 'X20001' AND {alias}.birth_month <> DATE '{}') \
         OR {alias}.sex = 'Q')",
        birth_month(i)
    )
}

/// A per-person aggregation `t` (events with a value, counted per person, `patients` joined
/// inside as `p`) with `inner` added to its `WHERE`.
fn per_person_events(inner: &str) -> String {
    format!(
        "(SELECT e.patient_id, COUNT(*) AS n FROM clinical_events e \
         JOIN patients p ON e.patient_id = p.patient_id \
         WHERE e.numeric_value IS NOT NULL{inner} GROUP BY e.patient_id) t"
    )
}

/// Pushes to `differing` every target `i` whose answer to `sql(Some(i))` is not the answer
/// to `sql(None)` (the base, which must be released).
async fn compare_targets(
    cx: &ProjectContext,
    sql: impl Fn(Option<usize>) -> String,
    differing: &mut Vec<String>,
) {
    let base_sql = sql(None);
    let base = rows(cx, &base_sql).await;
    assert!(!base.is_empty(), "{base_sql}");
    for i in TARGETS {
        let variant = sql(Some(i));
        let got = rows(cx, &variant).await;
        if got != base {
            differing.push(format!("{variant} -> {got:?} (all: {base:?})"));
        }
    }
}

/// Targets spread over the cohort (first, last and in between).
const TARGETS: [usize; 8] = [0, 1, 4, 9, 14, 20, 26, 29];

const BASE: &str = "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001'";

#[tokio::test]
async fn excluding_one_person_by_a_condition_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let cohort = f.cohort(DIFF_PRACTICE);
    assert_eq!(cohort.len(), DIFF_SIZE);
    let base = single(&cx, BASE).await;
    // The whole cohort is released, and exactly as output control says.
    let want = expected_count(
        30,
        30,
        f.cell_key(cohort.iter().copied()),
        cx.output_control(),
    );
    assert_eq!(base, want);
    assert!(base.is_some());
    let mut differing = Vec::new();
    for i in TARGETS {
        let m = birth_month(i);
        let mut attacks = vec![
            format!("{BASE} AND birth_month <> DATE '{m}'"),
            format!("{BASE} AND NOT (birth_month = DATE '{m}')"),
            format!("{BASE} AND birth_month NOT IN (DATE '{m}')"),
        ];
        // Range edges: the first and last persons are cut off by moving an edge.
        if i == 0 {
            attacks.push(format!("{BASE} AND birth_month > DATE '{m}'"));
        }
        if i == DIFF_SIZE - 1 {
            attacks.push(format!("{BASE} AND birth_month < DATE '{m}'"));
        }
        for sql in attacks {
            let got = single(&cx, &sql).await;
            if got != base {
                differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "excluding one person changed the released count, revealing that the person is in \
         the cell:\n{}",
        differing.join("\n")
    );
}

#[tokio::test]
async fn adding_one_person_through_an_or_branch_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let base = single(&cx, BASE).await;
    assert!(base.is_some());
    let mut differing = Vec::new();
    let mut branches: Vec<String> = Vec::new();
    // Each branch adds exactly one person: of the rephrasing cohort (born 1960, one a
    // month), or of the threshold groups of 12 and 13 persons (born in 1970, one a month
    // except two in January in the group of 13).
    for month in 5..=9 {
        branches.push(format!(
            "(practice_code = 'X60001' AND birth_month = DATE '1960-{month:02}-01')"
        ));
    }
    for (practice, months) in [("Y10012", 1..=12), ("Y10013", 2..=12)] {
        for month in months {
            branches.push(format!(
                "(practice_code = '{practice}' AND birth_month = DATE '1970-{month:02}-01')"
            ));
        }
    }
    for branch in branches {
        let sql = format!("{BASE} OR {branch}");
        let got = single(&cx, &sql).await;
        if got != base {
            differing.push(format!("{sql} -> {got:?} (without: {base:?})"));
        }
    }
    assert!(
        differing.is_empty(),
        "adding one person changed the released count:\n{}",
        differing.join("\n")
    );
}

#[tokio::test]
async fn excluding_one_person_does_not_change_a_sum_or_a_mean() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let base_sql = "SELECT SUM(numeric_value), AVG(numeric_value) FROM clinical_events \
                    WHERE snomedct_code = '999000001'";
    let base = rows(&cx, base_sql).await;
    assert_eq!(base.len(), 1);
    assert!(base[0].iter().all(|v| v != "NULL"), "{base:?}");
    let mut differing = Vec::new();
    for i in TARGETS {
        let value = 40 + i;
        for cond in [
            format!("numeric_value <> {value}"),
            format!("NOT numeric_value = {value}.0"),
            format!("(numeric_value < {value} OR numeric_value > {value})"),
        ] {
            let sql = format!("{base_sql} AND {cond}");
            let got = rows(&cx, &sql).await;
            if got != base {
                differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "excluding one person changed a released sum or mean (its difference estimates the \
         person's value):\n{}",
        differing.join("\n")
    );
}

#[tokio::test]
async fn a_cell_differing_by_one_person_at_the_threshold_is_suppressed_or_unchanged() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    for (practice, n) in THRESHOLD_GROUPS.iter().filter(|(_, n)| *n == 8) {
        let cohort = f.cohort(practice);
        assert_eq!(cohort.len(), *n);
        let all = format!("SELECT COUNT(*) FROM patients WHERE practice_code = '{practice}'");
        let released = single(&cx, &all).await;
        // The person born in 1970-03 is one of the 8 (birth months 1970-01 … 1970-08).
        let minus_one = single(&cx, &format!("{all} AND birth_month <> DATE '1970-03-01'")).await;
        assert!(
            minus_one.is_none() || minus_one == released,
            "{practice}: 8 persons -> {released:?}, 7 persons -> {minus_one:?}"
        );
        // The seven alone, asked directly, are never released.
        let seven = format!(
            "SELECT COUNT(*) FROM patients WHERE practice_code = '{practice}' \
             AND birth_month IN (DATE '1970-01-01', DATE '1970-02-01', DATE '1970-04-01', \
             DATE '1970-05-01', DATE '1970-06-01', DATE '1970-07-01', DATE '1970-08-01')"
        );
        let seven = single(&cx, &seven).await;
        assert!(
            seven.is_none() || seven == released,
            "{practice}: seven persons released as {seven:?}"
        );
    }
}

#[tokio::test]
async fn excluding_one_person_through_chains_subqueries_and_groups_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let base = single(&cx, BASE).await;
    assert!(base.is_some());
    let grouped = "SELECT practice_code, COUNT(*) FROM patients \
                   WHERE practice_code IN ('X20001', 'X60001') {cond} GROUP BY practice_code \
                   ORDER BY practice_code";
    let base_grouped = rows(&cx, &grouped.replace("{cond}", "")).await;
    assert_eq!(base_grouped.len(), 2, "{base_grouped:?}");
    let mut differing = Vec::new();
    for i in TARGETS {
        let m = birth_month(i);
        let attacks = [
            // Two conditions that each exclude the same person (a chain).
            format!(
                "{BASE} AND birth_month <> DATE '{m}' \
                 AND birth_month NOT IN (DATE '{m}', DATE '1800-01-01')"
            ),
            // The condition inside a derived table.
            format!(
                "SELECT COUNT(*) FROM (SELECT * FROM patients WHERE practice_code = 'X20001' \
                 AND birth_month <> DATE '{m}') t"
            ),
            // The condition inside a per-person subquery.
            format!(
                "SELECT COUNT(*) FROM (SELECT patient_id, COUNT(*) AS n FROM patients \
                 WHERE practice_code = 'X20001' AND birth_month <> DATE '{m}' \
                 GROUP BY patient_id) t"
            ),
            // The condition inside a per-person subquery that also groups by the column the
            // condition reads (each birth month its own group there, none in the answer).
            format!(
                "SELECT COUNT(*) FROM (SELECT patient_id, birth_month, COUNT(*) AS n \
                 FROM patients WHERE practice_code = 'X20001' AND birth_month <> DATE '{m}' \
                 GROUP BY patient_id, birth_month) t"
            ),
            // The same, as a CTE, with the condition on the outer query.
            format!(
                "WITH p AS (SELECT patient_id, birth_month FROM patients \
                 WHERE practice_code = 'X20001') \
                 SELECT COUNT(*) FROM p WHERE NOT (birth_month = DATE '{m}')"
            ),
        ];
        for sql in attacks {
            let got = single(&cx, &sql).await;
            if got != base {
                differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
            }
        }
        let sql = grouped.replace("{cond}", &format!("AND birth_month <> DATE '{m}'"));
        let got = rows(&cx, &sql).await;
        if got != base_grouped {
            differing.push(format!("{sql} -> {got:?} (all: {base_grouped:?})"));
        }
    }
    assert!(
        differing.is_empty(),
        "excluding one person changed the released count:\n{}",
        differing.join("\n")
    );
}

#[tokio::test]
async fn excluding_one_person_through_a_cohort_subquery_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // AMP_CODE is recorded for one person only; '999999999' for nobody.
    let all = single(&cx, "SELECT COUNT(*) FROM patients").await;
    assert!(all.is_some());
    for code in [AMP_CODE, "999999999"] {
        for sql in [
            format!(
                "SELECT COUNT(*) FROM patients WHERE patient_id NOT IN \
                 (SELECT patient_id FROM clinical_events WHERE snomedct_code = '{code}')"
            ),
            format!(
                "SELECT COUNT(*) FROM patients WHERE NOT patient_id IN \
                 (SELECT patient_id FROM clinical_events WHERE snomedct_code = '{code}')"
            ),
        ] {
            // Refused (the analysis allows only positive cohort selections) or unchanged.
            let got = outcome(&cx, &sql).await;
            assert!(
                !got.starts_with("rows: ")
                    || got == format!("rows: [[{:?}]]", all.clone().unwrap_or_default()),
                "{sql} -> {got} (all: {all:?})"
            );
        }
        // Adding one person through a cohort selection in an OR branch.
        let base = single(&cx, BASE).await;
        let sql = format!(
            "{BASE} OR patient_id IN \
             (SELECT patient_id FROM clinical_events WHERE snomedct_code = '{code}')"
        );
        let got = outcome(&cx, &sql).await;
        assert!(
            !got.starts_with("rows: ")
                || got == format!("rows: [[{:?}]]", base.clone().unwrap_or_default()),
            "{sql} -> {got} (without: {base:?})"
        );
    }
}

#[tokio::test]
async fn excluding_one_person_by_a_grouping_key_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let base = single(&cx, BASE).await;
    assert!(base.is_some());
    let mut differing = Vec::new();
    for i in TARGETS {
        let m = birth_month(i);
        // The cell of everyone but one person, made by a grouping key instead of a filter.
        let sql = format!(
            "SELECT birth_month <> DATE '{m}' AS rest, COUNT(*) FROM patients \
             WHERE practice_code = 'X20001' GROUP BY 1"
        );
        let got = rows(&cx, &sql).await;
        let rest = got.iter().find(|r| r[0] == "true").map(|r| r[1].clone());
        if rest != base {
            differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
        }
    }
    assert!(
        differing.is_empty(),
        "excluding one person by a grouping key changed the released count:\n{}",
        differing.join("\n")
    );
}

#[tokio::test]
async fn excluding_or_adding_one_person_inside_a_large_cohort_subquery_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // The cohort: persons 0..15 of the differencing practice (events on 1 to 15 June 2021;
    // their readings, 40..54, are snapped since session 50 and refused in a cohort), so the
    // selection leaves out half the cell: a condition with a large effect. A second
    // condition inside the subquery leaves out (or adds) one more person, on a column of
    // another table. Measured over the subquery's own persons, a condition that leaves out
    // the one person in the cell and many elsewhere (the `CASE` below: every man of the other
    // practices) had a large effect there and changed the answer.
    let rows = "SELECT e.patient_id FROM clinical_events e \
                JOIN patients p ON e.patient_id = p.patient_id \
                WHERE e.snomedct_code = '{DIFF_CODE}'";
    let rows = rows.replace("{DIFF_CODE}", DIFF_CODE);
    let within = |sub: &str| format!("{BASE} AND patient_id IN ({sub})");
    // (The practice selected by the cohort's code: the `NOT IN` is an `OR` beside
    // `practice_code = 'X20001'`, a category read with the anchors that `OR` never drops,
    // which a cohort of 30 does not have: no answer, since session 37.)
    let outside = |sub: &str| {
        format!(
            "SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM \
             clinical_events WHERE snomedct_code = '{DIFF_CODE}') AND patient_id NOT IN ({sub})"
        )
    };
    let base_in = single(
        &cx,
        &within(&format!("{rows} AND e.event_date < DATE '2021-06-16'")),
    )
    .await;
    let base_out = single(
        &cx,
        &outside(&format!("{rows} AND e.event_date >= DATE '2021-06-16'")),
    )
    .await;
    assert!(base_in.is_some(), "the cohort of 15 is released");
    assert!(
        base_out.is_some(),
        "the cell without the other 15 is released"
    );
    let mut differing = Vec::new();
    for i in TARGETS {
        let m = birth_month(i);
        let attacks = if i < 15 {
            vec![
                within(&format!(
                    "{rows} AND e.event_date < DATE '2021-06-16' AND p.birth_month <> DATE '{m}'"
                )),
                within(&format!(
                    "{rows} AND e.event_date < DATE '2021-06-16' AND NOT (p.birth_month = DATE '{m}')"
                )),
                within(&format!(
                    "{rows} AND e.event_date < DATE '2021-06-16' AND {}",
                    one_here_many_elsewhere("p", i)
                )),
                within(&format!(
                    "SELECT DISTINCT e.patient_id FROM clinical_events e \
                     JOIN patients p ON e.patient_id = p.patient_id \
                     WHERE e.snomedct_code = '{DIFF_CODE}' AND e.event_date < DATE '2021-06-16' \
                     AND p.birth_month <> DATE '{m}'"
                )),
                within(&format!(
                    "{rows} AND e.event_date < DATE '2021-06-16' AND p.birth_month <> DATE '{m}' \
                     GROUP BY e.patient_id"
                )),
                // Adding the person to the cohort that NOT IN leaves out.
                outside(&format!(
                    "{rows} AND (e.event_date >= DATE '2021-06-16' OR p.birth_month = DATE '{m}')"
                )),
            ]
        } else {
            vec![
                // Adding the person through an OR branch inside the subquery.
                within(&format!(
                    "{rows} AND (e.event_date < DATE '2021-06-16' OR p.birth_month = DATE '{m}')"
                )),
                // Taking the person out of the cohort that NOT IN leaves out.
                outside(&format!(
                    "{rows} AND e.event_date >= DATE '2021-06-16' AND p.birth_month <> DATE '{m}'"
                )),
            ]
        };
        for sql in attacks {
            if sql.contains("NOT IN") && sql.contains("birth_month") {
                // Negated, the cohort's membership and its condition on the birth month are
                // two snapped parts of one `OR`, whose anchors could pin the person for
                // each other (session 28): refused.
                assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
                continue;
            }
            let base = if sql.contains("NOT IN") {
                &base_out
            } else {
                &base_in
            };
            let got = single(&cx, &sql).await;
            if got != *base {
                differing.push(format!("{sql} -> {got:?} (cohort: {base:?})"));
            }
        }
    }
    let by_reading = within(&format!("{rows} AND e.numeric_value < 55"));
    assert_eq!(
        refused(&cx, &by_reading).await,
        Rule::LowEffect,
        "{by_reading}"
    );
    assert!(
        differing.is_empty(),
        "one person inside a cohort subquery changed the released count:\n{}",
        differing.join("\n")
    );
}

#[tokio::test]
async fn a_condition_that_leaves_out_no_one_of_the_cell_does_not_change_it() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // Everyone of the differencing practice, through a cohort selection: every person of
    // the other practices fails both the practice and the cohort condition, never one alone.
    let base_sql = format!(
        "{BASE} AND patient_id IN (SELECT patient_id FROM clinical_events \
         WHERE snomedct_code = '{DIFF_CODE}')"
    );
    let base = single(&cx, &base_sql).await;
    assert!(base.is_some());
    // Birth months of one to three persons of other practices and of no one of the cell.
    // Those persons fail the practice, the cohort and the birth month: a mask of a few
    // persons none of whose conditions fails alone. Neutralised as a low-effect mask, it let
    // them into the answer, which then changed with a condition that leaves out no one of
    // the cell.
    let mut differing = Vec::new();
    for m in [
        "1924-06-01",
        "1924-11-01",
        "1925-04-01",
        "1926-11-01",
        "1928-06-01",
        "1932-11-01",
        "1935-12-01",
        "1938-06-01",
    ] {
        let outside = unprotected(
            &cx,
            &format!("SELECT COUNT(*) FROM patients WHERE birth_month = DATE '{m}'"),
        )
        .await;
        let outside: u64 = outside[0][0].parse().unwrap_or(0);
        assert!((1..=3).contains(&outside), "{m}: {outside} persons");
        let sql = format!("{base_sql} AND birth_month <> DATE '{m}'");
        let got = single(&cx, &sql).await;
        if got != base {
            differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
        }
    }
    assert!(
        differing.is_empty(),
        "a condition that leaves out no one of the cell changed its count:\n{}",
        differing.join("\n")
    );
}

#[tokio::test]
async fn excluding_one_person_inside_a_per_person_aggregation_restricted_from_outside() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // A per-person aggregation over every person with a measured event, restricted to the
    // differencing practice by a join to `patients` around it. The condition inside leaves
    // out the one person of the practice born in a month and every man of the other
    // practices: measured inside the aggregation alone, a large effect.
    let q = |inner: &str, outer: &str| {
        format!(
            "SELECT {outer}COUNT(*) FROM (SELECT e.patient_id, COUNT(*) AS n \
             FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
             WHERE e.numeric_value IS NOT NULL{inner} GROUP BY e.patient_id) t \
             JOIN patients p2 ON t.patient_id = p2.patient_id \
             WHERE p2.practice_code = 'X20001'{{group}}"
        )
    };
    // The same answer by sex, a key of the table around the aggregation (the 26 women).
    let group = " GROUP BY p2.sex ORDER BY p2.sex";
    let women = |rows: Vec<Vec<String>>| rows.into_iter().find(|r| r[0] == "F");
    let base_by_sex = women(rows(&cx, &q("", "p2.sex, ").replace("{group}", group)).await);
    assert!(base_by_sex.is_some());
    let base = single(&cx, &q("", "").replace("{group}", "")).await;
    assert!(base.is_some());
    let mut differing = Vec::new();
    for i in TARGETS {
        let m = birth_month(i);
        for inner in [
            format!(" AND {}", one_here_many_elsewhere("p", i)),
            format!(" AND p.birth_month <> DATE '{m}'"),
        ] {
            let sql = q(&inner, "").replace("{group}", "");
            let got = single(&cx, &sql).await;
            if got != base {
                differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
            }
            let sql = q(&inner, "p2.sex, ").replace("{group}", group);
            let got = women(rows(&cx, &sql).await);
            if got != base_by_sex {
                differing.push(format!("{sql} -> {got:?} (all: {base_by_sex:?})"));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "a condition inside a per-person aggregation changed the released count:\n{}",
        differing.join("\n")
    );
}

/// The restriction of [`excluding_one_person_inside_a_per_person_aggregation_restricted_from_outside`]
/// through a derived table (a projection between the filter and the join): it gave 25
/// against 30 for target 14 before the conditions were followed down through it.
#[tokio::test]
async fn excluding_one_person_inside_a_per_person_aggregation_restricted_through_a_derived_table() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let q = |inner: &str| {
        format!(
            "SELECT COUNT(*) FROM (SELECT p2.practice_code AS pc, t.n FROM \
             (SELECT e.patient_id, COUNT(*) AS n FROM patients e \
              WHERE e.sex IS NOT NULL{inner} GROUP BY e.patient_id) t \
             JOIN patients p2 ON t.patient_id = p2.patient_id) u WHERE u.pc = 'X20001'"
        )
    };
    let base = single(&cx, &q("")).await;
    assert!(base.is_some());
    let mut differing = Vec::new();
    for i in TARGETS {
        let inner = format!(" AND {}", one_here_many_elsewhere("e", i));
        let sql = q(&inner);
        let got = single(&cx, &sql).await;
        if got != base {
            differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
        }
    }
    assert!(
        differing.is_empty(),
        "a condition inside a per-person aggregation changed the released count:\n{}",
        differing.join("\n")
    );
}

/// The same, restricted by another personal table rather than `patients`: the rows of the
/// differencing code's events (one for each person of the differencing practice), joined on
/// `patient_id` to a per-person aggregation, on either side of the join. A per-person
/// aggregation whose values nothing reads is a cohort, and its conditions are measured in
/// the answer's cells. (Before, target 14 gave 25 against 30.) Two such aggregations joined
/// to each other are refused: the conditions of the one left as rows would be measured
/// inside it.
#[tokio::test]
async fn excluding_one_person_inside_a_per_person_aggregation_joined_to_a_cohort() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let code = format!("c.snomedct_code = '{DIFF_CODE}'");
    let shapes = [
        format!(
            "SELECT COUNT(*) FROM {{t}} JOIN clinical_events c ON t.patient_id = c.patient_id WHERE {code}"
        ),
        format!(
            "SELECT COUNT(*) FROM clinical_events c JOIN {{t}} ON c.patient_id = t.patient_id WHERE {code}"
        ),
    ];
    let condition = |i: usize| format!(" AND {}", one_here_many_elsewhere("p", i));
    let mut differing = Vec::new();
    for shape in &shapes {
        let base = single(&cx, &shape.replace("{t}", &per_person_events(""))).await;
        assert!(base.is_some());
        for i in TARGETS {
            let sql = shape.replace("{t}", &per_person_events(&condition(i)));
            let got = single(&cx, &sql).await;
            if got != base {
                differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "a condition inside a per-person aggregation changed the released count:\n{}",
        differing.join("\n")
    );
    let cohort = format!(
        "(SELECT patient_id, COUNT(*) AS k FROM clinical_events \
         WHERE snomedct_code = '{DIFF_CODE}' GROUP BY patient_id) d"
    );
    let sql = format!(
        "SELECT COUNT(*) FROM {} JOIN {cohort} ON t.patient_id = d.patient_id",
        per_person_events(&condition(14))
    );
    assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
}

/// A per-person aggregation restricted from outside by the persons of a cohort
/// (`t.patient_id IN (SELECT …)`) or kept by `patients` around it in an outer join (the usual
/// prevalence query): the condition inside is measured with that restriction, and the
/// answers do not change. Measured inside alone, over every person with an event, it had a
/// large effect: target 14 gave 25 against 30 through the cohort, and `SUM(t.n)` gave 28
/// against 29 for several targets through the cohort and for every target through the outer
/// join. Joined to rows of another personal table, such a condition is refused, and selecting
/// the same persons inside the aggregation is measured.
#[tokio::test]
async fn excluding_one_person_inside_a_per_person_aggregation_selected_from_outside() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let cohort =
        format!("(SELECT patient_id FROM clinical_events WHERE snomedct_code = '{DIFF_CODE}')");
    let shapes = [
        format!("SELECT COUNT(*) FROM {{t}} WHERE t.patient_id IN {cohort}"),
        format!("SELECT SUM(t.n) FROM {{t}} WHERE t.patient_id IN {cohort}"),
        format!(
            "SELECT SUM(t.n) FROM {{t}} JOIN patients p2 ON t.patient_id = p2.patient_id \
             WHERE t.patient_id IN {cohort}"
        ),
        format!(
            "SELECT COUNT(*) FROM {{t}} JOIN patients p2 ON t.patient_id = p2.patient_id \
             WHERE p2.patient_id IN {cohort}"
        ),
        "SELECT COUNT(t.n) FROM patients p2 LEFT JOIN {t} ON t.patient_id = p2.patient_id \
         WHERE p2.practice_code = 'X20001'"
            .to_string(),
        "SELECT SUM(t.n) FROM patients p2 LEFT JOIN {t} ON t.patient_id = p2.patient_id \
         WHERE p2.practice_code = 'X20001'"
            .to_string(),
        // The advice of the refusal below: the persons selected inside.
        "SELECT SUM(t.n) FROM {t}".to_string(),
    ];
    let condition = |i: usize| format!(" AND {}", one_here_many_elsewhere("p", i));
    let inside = format!(" AND e.patient_id IN {cohort}");
    let mut differing = Vec::new();
    for (k, shape) in shapes.iter().enumerate() {
        let extra = if k == shapes.len() - 1 {
            inside.as_str()
        } else {
            ""
        };
        let sql = |i: Option<usize>| {
            let inner = format!("{extra}{}", i.map(condition).unwrap_or_default());
            shape.replace("{t}", &per_person_events(&inner))
        };
        compare_targets(&cx, sql, &mut differing).await;
    }
    assert!(
        differing.is_empty(),
        "a condition inside a per-person aggregation changed the released answer:\n{}",
        differing.join("\n")
    );
    let code = format!("c.snomedct_code = '{DIFF_CODE}'");
    let by_code = "(SELECT e.patient_id, e.snomedct_code, COUNT(*) AS n FROM clinical_events e \
                   JOIN patients p ON e.patient_id = p.patient_id \
                   WHERE e.numeric_value IS NOT NULL AND {c} \
                   GROUP BY e.patient_id, e.snomedct_code) t";
    for sql in [
        format!(
            "SELECT SUM(t.n) FROM {} JOIN clinical_events c ON t.patient_id = c.patient_id WHERE {code}",
            per_person_events(&condition(14))
        ),
        format!(
            "SELECT COUNT(*) FROM clinical_events c JOIN {} ON c.patient_id = t.patient_id \
             WHERE {code} AND t.n >= 1",
            per_person_events(&condition(14))
        ),
        format!(
            "SELECT COUNT(*) FROM {} JOIN clinical_events c ON t.patient_id = c.patient_id WHERE {code}",
            by_code.replace("{c}", &one_here_many_elsewhere("p", 14))
        ),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
}

/// More ways of selecting a per-person aggregation's persons from outside (found in review,
/// session 24): a condition on another of its group keys (`t.practice_code = …`), a cohort
/// selection above a `HAVING`, and a cohort selection on a column that may be NULL (the
/// optional side of an outer join), which was applied without being measured at all, and
/// the same group key as `MAX` of a `patients` column, filtered on or grouped by. Each
/// is now measured with the aggregation's own conditions (or, for the last, as a cohort);
/// a condition that reads both `patients` and the aggregation's values cannot move into it
/// and is refused.
#[tokio::test]
async fn excluding_one_person_behind_a_group_key_having_or_nullable_cohort() {
    /// Writes the derived table `t` around the extra condition it is given.
    type Wrap = fn(&str) -> String;
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let by_practice = |inner: &str| {
        format!(
            "(SELECT e.patient_id, p.practice_code, COUNT(*) AS n FROM clinical_events e \
             JOIN patients p ON e.patient_id = p.patient_id \
             WHERE e.numeric_value IS NOT NULL{inner} \
             GROUP BY e.patient_id, p.practice_code) t"
        )
    };
    let having = |inner: &str| {
        format!(
            "(SELECT e.patient_id, COUNT(*) AS n FROM clinical_events e \
             JOIN patients p ON e.patient_id = p.patient_id \
             WHERE e.numeric_value IS NOT NULL{inner} GROUP BY e.patient_id \
             HAVING COUNT(*) >= 1) t"
        )
    };
    let by_max = |inner: &str| {
        format!(
            "(SELECT e.patient_id, MAX(p.practice_code) AS practice_code, COUNT(*) AS n \
             FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
             WHERE e.numeric_value IS NOT NULL{inner} GROUP BY e.patient_id) t"
        )
    };
    let by_computed = |inner: &str| {
        format!(
            "(SELECT e.patient_id, lower(p.practice_code) AS pc, COUNT(*) AS n \
             FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
             WHERE e.numeric_value IS NOT NULL{inner} \
             GROUP BY e.patient_id, lower(p.practice_code)) t"
        )
    };
    let cohort =
        format!("(SELECT patient_id FROM clinical_events WHERE snomedct_code = '{DIFF_CODE}')");
    let condition = |i: usize| format!(" AND {}", one_here_many_elsewhere("p", i));
    let shapes: Vec<(String, Wrap)> = vec![
        (
            "SELECT COUNT(*) FROM {t} WHERE t.practice_code = 'X20001'".into(),
            by_practice,
        ),
        (
            "SELECT SUM(t.n) FROM {t} WHERE t.practice_code = 'X20001'".into(),
            by_practice,
        ),
        (
            format!("SELECT SUM(t.n) FROM {{t}} WHERE t.patient_id IN {cohort}"),
            having,
        ),
        // `MAX` of a `patients` column is the person's value, a group key in disguise.
        (
            "SELECT SUM(t.n) FROM {t} WHERE t.practice_code = 'X20001'".into(),
            by_max,
        ),
        (
            // (`LIKE 'X2%'` until session 38: a list of practices, refused here now.)
            "SELECT SUM(t.n) FROM {t} WHERE t.practice_code = 'X20001' \
             GROUP BY t.practice_code"
                .into(),
            by_max,
        ),
        // With `patients` joined around it, and with a filter between.
        (
            "SELECT SUM(t.n) FROM {t} JOIN patients p2 ON t.patient_id = p2.patient_id \
             WHERE t.practice_code = 'X20001'"
                .into(),
            by_practice,
        ),
        (
            "SELECT SUM(t.n) FROM patients p2 LEFT JOIN {t} ON t.patient_id = p2.patient_id \
             WHERE t.practice_code = 'X20001'"
                .into(),
            by_practice,
        ),
        (
            "SELECT SUM(u.n) FROM (SELECT * FROM {t} WHERE t.practice_code = 'X20001') u \
             WHERE u.practice_code IS NOT NULL"
                .into(),
            by_practice,
        ),
    ];
    let mut differing = Vec::new();
    for (shape, t) in &shapes {
        let sql =
            |i: Option<usize>| shape.replace("{t}", &t(&i.map(condition).unwrap_or_default()));
        compare_targets(&cx, sql, &mut differing).await;
    }
    // Grouped by it alone: the differencing practice's cell.
    let cell = |inner: &str| {
        format!(
            "SELECT t.practice_code, SUM(t.n) FROM {} GROUP BY t.practice_code",
            by_max(inner)
        )
    };
    let practice = |rows: Vec<Vec<String>>| rows.into_iter().find(|r| r[0] == "X20001");
    let base = practice(rows(&cx, &cell("")).await);
    assert!(base.is_some());
    for i in TARGETS {
        let sql = cell(&condition(i));
        let got = practice(rows(&cx, &sql).await);
        if got != base {
            differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
        }
    }
    // A cohort selection on the optional side of an outer join (a column that may be NULL).
    let nullable = |extra: &str| {
        format!(
            "SELECT COUNT(*) FROM patients p LEFT JOIN patients q ON q.patient_id = p.patient_id \
             WHERE q.patient_id IN (SELECT patient_id FROM patients \
             WHERE practice_code = 'X20001'{extra})"
        )
    };
    let sql = |i: Option<usize>| {
        nullable(&i.map_or(String::new(), |i| {
            format!(" AND birth_month <> DATE '{}'", birth_month(i))
        }))
    };
    compare_targets(&cx, sql, &mut differing).await;
    assert!(
        differing.is_empty(),
        "a condition inside a per-person aggregation or cohort changed the released answer:\n{}",
        differing.join("\n")
    );
    // Restrictions that cannot move into the aggregation: refused.
    for sql in [
        format!(
            "SELECT SUM(t.n) FROM {} JOIN patients p2 ON t.patient_id = p2.patient_id \
             WHERE p2.practice_code = 'X20001' OR t.n < 0",
            per_person_events(&condition(14))
        ),
        format!(
            "SELECT SUM(t.n) FROM {} WHERE t.practice_code = 'X20001' OR t.n < 0",
            by_practice(&condition(14))
        ),
        format!(
            "SELECT SUM(t.n) FROM {} JOIN practices pr ON pr.practice_code = t.practice_code \
             WHERE pr.practice_code = 'X20001'",
            by_practice(&condition(14))
        ),
        format!(
            "SELECT SUM(d.n) FROM (SELECT DISTINCT * FROM {}) d \
             WHERE d.practice_code = 'X20001'",
            by_practice(&condition(14))
        ),
        // Keyless joins (third review).
        format!(
            "SELECT SUM(t.n) FROM {} CROSS JOIN (SELECT 1 AS one) c \
             WHERE t.practice_code = 'X20001'",
            by_practice(&condition(14))
        ),
        format!(
            "SELECT SUM(t.n) FROM {}, practices pr \
             WHERE pr.practice_code = t.practice_code AND pr.practice_code = 'X20001'",
            by_practice(&condition(14))
        ),
        // `MAX` of a `patients` column that cannot be read as the key (an aggregation in the
        // input), filtered on and grouped by.
        format!(
            "SELECT SUM(t.n) FROM (SELECT e.patient_id, MAX(p.practice_code) AS pc, \
             COUNT(*) AS n FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
             JOIN (SELECT patient_id FROM clinical_events GROUP BY patient_id) k \
             ON k.patient_id = e.patient_id WHERE e.numeric_value IS NOT NULL{} \
             GROUP BY e.patient_id) t WHERE t.pc = 'X20001'",
            condition(14)
        ),
        format!(
            "SELECT t.pc, SUM(t.n) FROM (SELECT e.patient_id, MAX(p.practice_code) AS pc, \
             COUNT(*) AS n FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
             JOIN (SELECT patient_id FROM clinical_events GROUP BY patient_id) k \
             ON k.patient_id = e.patient_id WHERE e.numeric_value IS NOT NULL{} \
             GROUP BY e.patient_id) t GROUP BY t.pc",
            condition(14)
        ),
        // A computed group key filtered on: moved inside, `lower(practice_code) = …` is a
        // condition on a value computed from a category, whose classes (the practices
        // `lower` sends to one value) are not read (session 38).
        format!(
            "SELECT SUM(t.n) FROM {} WHERE t.pc = 'x20001'",
            by_computed(&condition(14))
        ),
        // A condition on the optional side of an outer join that NULLs pass cannot move in
        // (it would empty that side and change the answer), so it restricts.
        format!(
            "SELECT COUNT(*) FROM patients p2 LEFT JOIN {} ON t.patient_id = p2.patient_id \
             WHERE p2.practice_code = 'X20001' AND t.practice_code IS NULL",
            by_practice(&condition(14))
        ),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
}

/// `patients` around a per-person aggregation through a CTE (computed age bands, a filter)
/// or joined to `practices`:
/// still one row per person, so its conditions and cells are measured inside the
/// aggregation as for a plain scan, and the prevalence shapes analysts write run (they
/// were refused after the restriction above was closed, and leaked before it).
#[tokio::test]
async fn a_per_person_aggregation_kept_by_a_derived_patients_table() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let shapes = [
        // (A band of birth months computed here is refused: see
        // `a_range_edge_inside_a_cohort_subquery_is_snapped_in_the_answers_cells`.)
        "WITH banded AS (SELECT patient_id, practice_code, CASE WHEN sex = 'F' \
         THEN 'women' ELSE 'others' END AS band FROM patients) \
         SELECT b.band, SUM(t.n) FROM banded b LEFT JOIN {t} ON t.patient_id = b.patient_id \
         WHERE b.practice_code = 'X20001' GROUP BY b.band ORDER BY b.band",
        "WITH here AS (SELECT * FROM patients WHERE practice_code = 'X20001') \
         SELECT SUM(t.n) FROM here h LEFT JOIN {t} ON t.patient_id = h.patient_id",
        // Joined to `practices` first, for the region.
        "SELECT pr.region, SUM(t.n) FROM patients p2 \
         JOIN practices pr ON pr.practice_code = p2.practice_code \
         LEFT JOIN {t} ON t.patient_id = p2.patient_id \
         WHERE p2.practice_code = 'X20001' GROUP BY pr.region",
        "WITH here AS (SELECT * FROM patients WHERE practice_code = 'X20001') \
         SELECT COUNT(*) FROM {t} JOIN here h ON t.patient_id = h.patient_id",
    ];
    let mut differing = Vec::new();
    for shape in shapes {
        let sql = |i: Option<usize>| {
            let inner = i.map_or(String::new(), |i| {
                format!(" AND {}", one_here_many_elsewhere("p", i))
            });
            shape.replace("{t}", &per_person_events(&inner))
        };
        compare_targets(&cx, sql, &mut differing).await;
    }
    assert!(
        differing.is_empty(),
        "a condition inside a per-person aggregation changed the released answer:\n{}",
        differing.join("\n")
    );
}

/// A condition in an inner join's `ON` clause is the same filter as in `WHERE`, and is
/// measured like one: the person it leaves out does not change the count. (Before, it was
/// not measured there: target 14 gave 25 against 30.)
#[tokio::test]
async fn excluding_one_person_in_a_join_on_clause_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let shapes = [
        // A public table joined.
        "SELECT COUNT(*) FROM patients p JOIN practices pr \
         ON pr.practice_code = p.practice_code {c} WHERE p.practice_code = 'X20001'",
        // A personal table joined on the unit.
        "SELECT COUNT(DISTINCT p.patient_id) FROM patients p JOIN patients q \
         ON q.patient_id = p.patient_id {c} WHERE p.practice_code = 'X20001'",
    ];
    let mut differing = Vec::new();
    for shape in shapes {
        let base = single(&cx, &shape.replace("{c}", "")).await;
        assert!(base.is_some(), "{shape}");
        for i in TARGETS {
            let c = format!("AND p.birth_month <> DATE '{}'", birth_month(i));
            let sql = shape.replace("{c}", &c);
            let got = single(&cx, &sql).await;
            if got != base {
                differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "a condition in a join's ON clause changed the released count:\n{}",
        differing.join("\n")
    );
}

/// Where rule 7 cannot measure a condition (below a `UNION` or `DISTINCT`, on the optional
/// side of an outer join, in an outer join's `ON` clause), the query is refused: measured
/// nowhere, `birth_month <> x` changed the count there (target 14: 25 against 30).
#[tokio::test]
async fn a_condition_that_cannot_be_measured_is_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let c = format!("birth_month <> DATE '{}'", birth_month(14));
    let attacks = [
        format!(
            "SELECT COUNT(*) FROM (SELECT patient_id FROM patients \
             WHERE practice_code = 'X20001' AND {c} \
             UNION ALL SELECT patient_id FROM patients WHERE sex = 'Z') t"
        ),
        format!(
            "SELECT COUNT(*) FROM (SELECT patient_id FROM patients \
             WHERE practice_code = 'X20001' AND {c} \
             UNION SELECT patient_id FROM patients WHERE sex = 'Z') t"
        ),
        format!(
            "SELECT COUNT(*) FROM (SELECT DISTINCT patient_id FROM patients \
             WHERE practice_code = 'X20001' AND {c}) t"
        ),
        format!(
            "SELECT COUNT(q.sex) FROM patients p LEFT JOIN \
             (SELECT patient_id, sex FROM patients WHERE {c}) q \
             ON q.patient_id = p.patient_id WHERE p.practice_code = 'X20001'"
        ),
        format!(
            "SELECT COUNT(q.sex) FROM patients p LEFT JOIN patients q \
             ON q.patient_id = p.patient_id AND q.{c} WHERE p.practice_code = 'X20001'"
        ),
        format!(
            "SELECT COUNT(q.sex) FROM patients p LEFT JOIN patients q \
             ON q.patient_id = p.patient_id AND p.{c} WHERE p.practice_code = 'X20001'"
        ),
        format!(
            "SELECT COUNT(t.n) FROM patients p LEFT JOIN \
             (SELECT patient_id, COUNT(*) AS n FROM patients GROUP BY patient_id \
              HAVING MAX(birth_month) <> DATE '{}') t \
             ON t.patient_id = p.patient_id WHERE p.practice_code = 'X20001'",
            birth_month(14)
        ),
    ];
    for sql in &attacks {
        assert_eq!(refused(&cx, sql).await, Rule::LowEffect, "{sql}");
    }
    // The same questions without the condition are answered.
    for sql in [
        "SELECT COUNT(*) FROM (SELECT patient_id FROM patients \
         UNION ALL SELECT patient_id FROM patients) t",
        "SELECT COUNT(q.sex) FROM patients p LEFT JOIN patients q \
         ON q.patient_id = p.patient_id WHERE p.practice_code = 'X20001'",
    ] {
        assert!(single(&cx, sql).await.is_some(), "{sql}");
    }
}

/// A join key computed with a condition: `q.bm` NULL for the target drops the target's row
/// from the join (25 against 30 for target 14 before session 19). Such an equality is a
/// condition, measured above the join when a plain key (`patient_id`) stays in it, and
/// refused when it is the only key (it would be measured over a cross join). On birth
/// month it compares two per-person values, which cannot be snapped as one (session 27):
/// refused too; on sex it was measured until session 38, and is refused since: `CASE WHEN
/// sex <> 'I' THEN sex END` is a value computed from a category with a list of the
/// analyst's (a negation), which as written keeps what reading by class would leave out.
#[tokio::test]
async fn excluding_one_person_by_a_computed_join_key_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let base = single(&cx, BASE).await;
    assert!(base.is_some());
    for i in TARGETS {
        let m = birth_month(i);
        for bm in [
            format!("CASE WHEN birth_month <> DATE '{m}' THEN birth_month END"),
            format!("NULLIF(birth_month, DATE '{m}')"),
        ] {
            let sql = format!(
                "SELECT COUNT(*) FROM patients p JOIN \
                 (SELECT patient_id, {bm} AS bm FROM patients) q \
                 ON p.patient_id = q.patient_id AND p.birth_month = q.bm \
                 WHERE p.practice_code = 'X20001'"
            );
            assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
        }
    }
    // The one person of the cohort with sex `I` (index 7), left out by the key alone.
    for sex in ["CASE WHEN sex <> 'I' THEN sex END", "NULLIF(sex, 'I')"] {
        let sql = format!(
            "SELECT COUNT(*) FROM patients p JOIN \
             (SELECT patient_id, {sex} AS s FROM patients) q \
             ON p.patient_id = q.patient_id AND p.sex = q.s \
             WHERE p.practice_code = 'X20001'"
        );
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
    let m = birth_month(14);
    for sql in [
        format!(
            "SELECT COUNT(*) FROM patients p JOIN practices pr ON pr.practice_code = \
             CASE WHEN p.birth_month <> DATE '{m}' THEN p.practice_code END \
             WHERE p.practice_code = 'X20001'"
        ),
        format!(
            "SELECT COUNT(*) FROM (SELECT patient_id, CASE WHEN birth_month <> DATE '{m}' \
             THEN practice_code END AS pc FROM patients) p \
             JOIN practices pr ON pr.practice_code = p.pc WHERE pr.practice_code = 'X20001'"
        ),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
    // Plain keys are still keys: the same join on the column itself is answered.
    let plain = "SELECT COUNT(*) FROM patients p JOIN practices pr \
                 ON pr.practice_code = p.practice_code WHERE p.practice_code = 'X20001'";
    assert_eq!(single(&cx, plain).await, base);
}

/// A condition inside the value an aggregate reads (rule 7 for values, `values.rs`):
/// `SUM(CASE WHEN birth_month <> x THEN 1 ELSE 0 END)` released 28 against `SUM(1)`'s 29
/// for every target in the cell (a sum of ones has noise of about one). Such values are
/// refused, through derived tables and per-person aggregations too; plain values are not.
#[tokio::test]
async fn a_condition_inside_an_aggregated_value_is_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let m = birth_month(14);
    let cell = "FROM patients WHERE practice_code = 'X20001'";
    let attacks = [
        format!("SELECT SUM(CASE WHEN birth_month <> DATE '{m}' THEN 1 ELSE 0 END) {cell}"),
        format!("SELECT AVG(CASE WHEN birth_month <> DATE '{m}' THEN 100 ELSE 0 END) {cell}"),
        format!("SELECT COUNT(CASE WHEN birth_month <> DATE '{m}' THEN 1 END) {cell}"),
        format!("SELECT COUNT(*) FILTER (WHERE birth_month <> DATE '{m}') {cell}"),
        format!("SELECT COUNT(NULLIF(birth_month, DATE '{m}')) {cell}"),
        format!("SELECT SUM(CAST(birth_month <> DATE '{m}' AS INT)) {cell}"),
        // A division by zero gives NULL (rule 6): a condition too.
        format!(
            "SELECT COUNT(1 / (date_part('month', birth_month) - {})) {cell}",
            1 + 14 % 12
        ),
        // Through a derived table.
        format!(
            "SELECT SUM(flag) FROM (SELECT CASE WHEN birth_month <> DATE '{m}' THEN 1 \
             ELSE 0 END AS flag FROM patients WHERE practice_code = 'X20001') t"
        ),
        // Through a per-person aggregation.
        format!(
            "SELECT SUM(t.n) FROM (SELECT patient_id, \
             SUM(CASE WHEN birth_month <> DATE '{m}' THEN 1 ELSE 0 END) AS n \
             FROM patients WHERE practice_code = 'X20001' GROUP BY patient_id) t"
        ),
        format!(
            "SELECT SUM(t.n) FROM (SELECT patient_id, \
             COUNT(*) FILTER (WHERE birth_month <> DATE '{m}') AS n \
             FROM patients WHERE practice_code = 'X20001' GROUP BY patient_id) t"
        ),
    ];
    for sql in &attacks {
        assert_eq!(refused(&cx, sql).await, Rule::LowEffect, "{sql}");
    }
    // Plain values are answered; the condition in WHERE is measured there.
    for sql in [
        format!("SELECT AVG(date_part('year', birth_month) - 1900) {cell}"),
        format!(
            "SELECT SUM(date_part('month', birth_month) * 2 + 1) {cell} AND birth_month <> DATE '{m}'"
        ),
        "SELECT SUM(t.n) FROM (SELECT patient_id, COUNT(*) AS n FROM clinical_events \
         GROUP BY patient_id) t"
            .to_string(),
    ] {
        assert!(single(&cx, &sql).await.is_some(), "{sql}");
    }
}

/// Arithmetic inside a sum that treats some values unlike others (`values::linear`, session
/// 51): integer division rounds, so `SUM((startage + 1000 - a) / 1000)` counts the episodes
/// of age `a` and over, an edge on ages that `WHERE` would have snapped (920 against 896
/// over all episodes at 50 and 51, before); integer arithmetic wraps; floating point
/// overflows, underflows, or rounds under two constant shifts. Each is refused, through
/// derived tables and per-person aggregations too; arithmetic that treats every value alike
/// is answered.
#[tokio::test]
async fn arithmetic_that_rounds_wraps_or_overflows_inside_a_sum_is_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // A practice where exactly one person was admitted at some age: the two step sums
    // around that age single that person out.
    let found = unprotected(
        &cx,
        "SELECT gpprac, startage FROM (SELECT gpprac, startage, \
         COUNT(DISTINCT patient_id) AS n FROM hes_apc GROUP BY gpprac, startage) t \
         WHERE n = 1 ORDER BY gpprac, startage LIMIT 1",
    )
    .await;
    assert!(!found.is_empty(), "the fixture has no such age");
    let (pc, a) = (&found[0][0], num(&found[0][1]) as i64);
    let step = |a: i64| {
        format!(
            "SELECT SUM((startage + {}) / 1000) FROM hes_apc WHERE gpprac = '{pc}'",
            1000 - a
        )
    };
    let episodes = unprotected(
        &cx,
        &format!("SELECT COUNT(*) FROM hes_apc WHERE gpprac = '{pc}' AND startage = {a}"),
    )
    .await;
    let (at, above) = (
        num(&unprotected(&cx, &step(a)).await[0][0]),
        num(&unprotected(&cx, &step(a + 1)).await[0][0]),
    );
    assert_eq!(
        at - above,
        num(&episodes[0][0]),
        "the steps differ by the one person"
    );
    assert!(at > above);
    let two_62 = "4611686018427387904.0";
    let attacks = [
        step(a),
        step(a + 1),
        format!("SELECT AVG((startage + {}) / 1000) FROM hes_apc", 1000 - a),
        "SELECT SUM((date_part('year', birth_month) - 1941 + 1000) / 1000) FROM patients \
         WHERE practice_code = 'X20001'"
            .to_string(),
        // Wraps.
        "SELECT SUM((startage - 50) * 288230376151711744) FROM hes_apc".to_string(),
        "SELECT SUM(startage + 9223372036854775000) FROM hes_apc".to_string(),
        // Overflows to infinity, underflows to zero, rounds under two shifts.
        "SELECT SUM((numeric_value - 50) * 1e308 * 1e-300) FROM clinical_events".to_string(),
        "SELECT SUM((numeric_value - 50) * 1e-300 * 1e-300) FROM clinical_events".to_string(),
        format!("SELECT SUM((numeric_value + {two_62}) - {two_62}) FROM clinical_events"),
        // Through a derived table and a per-person aggregation.
        "SELECT SUM(b) FROM (SELECT (startage + 950) / 1000 AS b FROM hes_apc) t".to_string(),
        format!(
            "SELECT SUM(t.s - {two_62}) FROM (SELECT patient_id, \
             SUM(numeric_value + {two_62}) AS s FROM clinical_events GROUP BY patient_id) t"
        ),
        "SELECT SUM(t.s) FROM (SELECT patient_id, SUM(startage * 1000000000000000) AS s \
         FROM hes_apc GROUP BY patient_id) t"
            .to_string(),
        // From the review: an integer shifted, then shifted back in floating point (it is
        // rounded to a multiple of 1,024 on the way: released 896 and 920 at 51 and 50);
        // two inputs of a union that cancel; a part of a date scaled to wrap.
        format!(
            "SELECT SUM(((startage + {}) - 4611686018427387904.0) * 0.0009765625) FROM hes_apc",
            4_611_686_018_427_387_904i64 + 512 - a
        ),
        format!(
            "SELECT SUM(y) FROM (SELECT patient_id, MAX(startage) * 10.14 + {two_62} AS y \
             FROM hes_apc GROUP BY patient_id UNION ALL \
             SELECT patient_id, -{two_62} FROM hes_apc GROUP BY patient_id) u"
        ),
        "SELECT SUM(date_part('year', admidate) * 562949953421312 * 5.421010862427522e-20) \
         FROM hes_apc"
            .to_string(),
        // From the second review: a median of a person's value beside the rows 0 and 1
        // of a union (a step at the month the shift picks); a union's shift hidden in a
        // `VALUES` list; rows of a union made distinct (1 row for the persons born in the
        // month, 2 for the others).
        "SELECT SUM(t.m) FROM (SELECT patient_id, MEDIAN(v) AS m FROM (SELECT patient_id, \
         (date_part('epoch', birth_month) - 320716800.0) / 2332800.0 AS v FROM patients \
         UNION ALL SELECT patient_id, 0.0 FROM patients \
         UNION ALL SELECT patient_id, 1.0 FROM patients) u GROUP BY patient_id) t \
         JOIN patients p ON p.patient_id = t.patient_id WHERE p.practice_code = 'X20001'"
            .to_string(),
        format!(
            "SELECT SUM((t.y - {two_62}) * 0.0009765625) FROM (SELECT patient_id, SUM(v) AS y \
             FROM (SELECT patient_id, MAX(startage) * 10.1386 AS v FROM hes_apc \
             GROUP BY patient_id UNION ALL SELECT p.patient_id, k.c FROM patients p \
             CROSS JOIN (VALUES ({two_62})) k(c)) u GROUP BY patient_id) t"
        ),
        "SELECT SUM(t.n - 1) FROM (SELECT patient_id, COUNT(*) AS n FROM (SELECT patient_id, \
         birth_month AS d FROM patients UNION SELECT patient_id, DATE '1941-03-01' \
         FROM patients) u GROUP BY patient_id) t"
            .to_string(),
        "SELECT SUM(t.n - 1) FROM (SELECT patient_id, COUNT(*) AS n FROM (SELECT DISTINCT \
         patient_id, d FROM (SELECT patient_id, birth_month AS d FROM patients UNION ALL \
         SELECT patient_id, DATE '1941-03-01' FROM patients) v) u GROUP BY patient_id) t"
            .to_string(),
        // From the third review (session 52): an age scaled down beside a constant row of a
        // union, added up per person, is rounded to a step (checked below); a part of a
        // date of a union hides the union from `MEDIAN`; a distinct count per person over
        // a union (1 where the oldest age is 50, else 2: 1,430 against 1,440 with 51); `nth_value`
        // is NULL below `n` rows (an edge on a count); a part of a date moved by an
        // interval moves the calendar's edges (25 against 23 unmoved).
        tiny_union_step(50),
        "SELECT SUM((t.m + 912470400.0) / 2419200.0) FROM (SELECT patient_id, \
         MEDIAN(date_part('epoch', u.d)) AS m FROM (SELECT patient_id, birth_month AS d \
         FROM patients UNION ALL SELECT patient_id, DATE '1941-02-01' FROM patients \
         UNION ALL SELECT patient_id, DATE '1941-03-01' FROM patients) u GROUP BY patient_id) t \
         JOIN patients p ON p.patient_id = t.patient_id WHERE p.practice_code = 'X20001'"
            .to_string(),
        "SELECT SUM(t.n) FROM (SELECT patient_id, COUNT(DISTINCT a) AS n FROM \
         (SELECT patient_id, MAX(startage) AS a FROM hes_apc GROUP BY patient_id UNION ALL \
         SELECT patient_id, 50 FROM hes_apc GROUP BY patient_id) u GROUP BY patient_id) t"
            .to_string(),
        "SELECT COUNT(t.v) FROM (SELECT patient_id, nth_value(numeric_value, 400) AS v \
         FROM clinical_events GROUP BY patient_id) t"
            .to_string(),
        "SELECT SUM(date_part('year', birth_month + INTERVAL '31' DAY) - 1940) FROM patients \
         WHERE practice_code = 'X20001'"
            .to_string(),
        // From its second review: the constant hidden in a part of a `VALUES` date (its
        // epoch times 8192 absorbs an age scaled by 2^-11 up to 50); the union made
        // distinct above a join.
        "SELECT SUM((t.y - 7755241881600.0) * 1024.0) FROM (SELECT patient_id, SUM(v) AS y \
         FROM (SELECT patient_id, MAX(startage) * 9.668935643564357e-06 AS v FROM hes_apc \
         GROUP BY patient_id UNION ALL SELECT h.patient_id, \
         MAX(date_part('epoch', k.d)) * 8192.0 FROM hes_apc h \
         CROSS JOIN (VALUES (DATE '2000-01-01')) k(d) GROUP BY h.patient_id) u \
         GROUP BY patient_id) t"
            .to_string(),
        "SELECT SUM(t.n) FROM (SELECT u.patient_id, COUNT(DISTINCT u.a) AS n FROM \
         (SELECT patient_id, MAX(startage) AS a FROM hes_apc GROUP BY patient_id UNION ALL \
         SELECT patient_id, 50 FROM hes_apc GROUP BY patient_id) u \
         CROSS JOIN (VALUES (1)) k(c) GROUP BY u.patient_id) t"
            .to_string(),
    ];
    // The first of those is a step in truth: each person adds 1 where their oldest age is
    // above 50 (and below 151), else 0.
    let older = unprotected(
        &cx,
        "SELECT COUNT(*), MAX(m) FROM (SELECT patient_id, MAX(startage) AS m FROM hes_apc \
         GROUP BY patient_id) t WHERE m > 50",
    )
    .await;
    assert!(num(&older[0][1]) < 151.0);
    assert_eq!(
        num(&unprotected(&cx, &tiny_union_step(50)).await[0][0]),
        num(&older[0][0]),
        "the scaled union is a step at 50"
    );
    for sql in &attacks {
        assert_eq!(refused(&cx, sql).await, Rule::LowEffect, "{sql}");
    }
    // Arithmetic that treats every value alike is answered.
    for sql in [
        "SELECT SUM((startage + 950) / 1000.0) FROM hes_apc",
        "SELECT SUM(CAST(startage AS DOUBLE) / 1000), AVG(startage * 2 + 1) FROM hes_apc",
        "SELECT SUM(numeric_value - 40), AVG(numeric_value * 3) FROM clinical_events",
        "SELECT SUM(date_part('year', birth_month) - 1900) FROM patients",
        "SELECT SUM(t.s), AVG(t.n) FROM (SELECT patient_id, SUM(n) AS s, MAX(n) AS n FROM \
         (SELECT patient_id, snomedct_code, COUNT(*) AS n FROM clinical_events \
         GROUP BY patient_id, snomedct_code) u GROUP BY patient_id) t",
        "SELECT SUM(-startage), AVG(startage - 18) FROM hes_apc",
        "SELECT AVG(t.s / 60.0) FROM (SELECT patient_id, SUM(startage) AS s FROM hes_apc \
         GROUP BY patient_id) t",
        "SELECT SUM(y) FROM (SELECT patient_id, 1 AS y FROM hes_op \
         UNION ALL SELECT patient_id, 1 FROM hes_ae) u",
        "SELECT SUM(y), AVG(y) FROM (SELECT patient_id, numeric_value AS y \
         FROM clinical_events UNION ALL SELECT patient_id, 1.0 FROM hes_ae) u",
        "SELECT AVG(date_part('month', admidate)), SUM(date_part('year', admidate) - 2000) \
         FROM hes_apc",
        // The persons of two tables: a union of the privacy unit alone.
        "SELECT COUNT(*) FROM (SELECT patient_id FROM hes_apc UNION SELECT patient_id \
         FROM hes_ae) u",
    ] {
        let r = rows(&cx, sql).await;
        assert!(
            r.len() == 1 && r[0].iter().all(|v| v != "NULL"),
            "{sql}: {r:?}"
        );
    }
}

/// A per-person `SUM` of a union of an age scaled by `2^-33 / (a + 0.5)` and the constant
/// 2^20: the age is below half the last digit of 2^20 exactly up to `a`, so it rounds away
/// there, and each person adds 1 above `a` (up to `3a + 1`) and 0 up to it (session-52
/// review).
fn tiny_union_step(a: i64) -> String {
    let factor = 2f64.powi(-33) / (a as f64 + 0.5);
    format!(
        "SELECT SUM((t.y - 1048576.0) * 4294967296.0) FROM (SELECT patient_id, SUM(v) AS y \
         FROM (SELECT patient_id, MAX(startage) * {factor:e} AS v FROM hes_apc \
         GROUP BY patient_id UNION ALL SELECT patient_id, 1048576.0 FROM hes_apc \
         GROUP BY patient_id) u GROUP BY patient_id) t"
    )
}

/// Conditions on a table with many rows per person (DESIGN.md rule 7 counts persons, not
/// rows). `numeric_value <> v` over one code's readings in a practice touches the rows of
/// every person with a reading of `v`, but leaves out only those all of whose readings
/// are `v`. Measured by the persons with such a row it was large, and when it left out one
/// person the released count changed with that person (220 against 215 on this fixture,
/// 215 being exactly the count of the others). Readings are snapped since session 50 (a
/// test of NULL beside their hole is refused), so the condition is now on the month of the
/// events, a value of rows measured as written: `to_char(event_date, '%Y-%m') <> m`. The
/// pairs are found in the background data: at least 12 persons with an event in `m`,
/// exactly one of whom has no other.
#[tokio::test]
async fn excluding_one_person_by_a_condition_on_one_of_their_rows_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let found = unprotected(
        &cx,
        "SELECT pc, code, v FROM (
           SELECT pc, snomedct_code AS code, m AS v, COUNT(*) AS having_v,
                  SUM(CASE WHEN n_all = n_v THEN 1 ELSE 0 END) AS only_v
           FROM (SELECT p.practice_code AS pc, e.patient_id, e.snomedct_code,
                        to_char(e.event_date, '%Y-%m') AS m, COUNT(*) AS n_v,
                        MAX(t.n_all) AS n_all
                 FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id
                 JOIN (SELECT patient_id, snomedct_code, COUNT(*) AS n_all
                       FROM clinical_events GROUP BY patient_id, snomedct_code) t
                   ON e.patient_id = t.patient_id AND e.snomedct_code = t.snomedct_code
                 GROUP BY p.practice_code, e.patient_id, e.snomedct_code,
                          to_char(e.event_date, '%Y-%m')) x
           GROUP BY pc, snomedct_code, m) y
         WHERE only_v = 1 AND having_v >= 12 ORDER BY pc, code, v LIMIT 12",
    )
    .await;
    assert!(!found.is_empty(), "the fixture has no such reading");
    let (mut differing, mut visible) = (Vec::new(), 0);
    for r in &found {
        let (pc, code, v) = (&r[0], &r[1], &r[2]);
        let all = format!(
            "SELECT COUNT(DISTINCT patient_id) FROM clinical_events \
             WHERE snomedct_code = '{code}' AND patient_id IN \
             (SELECT patient_id FROM patients WHERE practice_code = '{pc}')"
        );
        let attack = format!("{all} AND to_char(event_date, '%Y-%m') <> '{v}'");
        // Whether output control alone would tell the two sets apart: the pairs where the
        // leak was visible.
        let mut expected = Vec::new();
        for sql in [&all, &attack] {
            let ids = unprotected(
                &cx,
                &sql.replace("COUNT(DISTINCT patient_id)", "DISTINCT patient_id"),
            )
            .await;
            let key = ids
                .iter()
                .map(|r| u32::from(f.record_key(r[0].parse().expect("an id"))))
                .sum::<u32>()
                % 256;
            let n = ids.len() as u64;
            expected.push(expected_count(n, n, key as u8, cx.output_control()));
        }
        if expected[0] != expected[1] {
            visible += 1;
        }
        // The same through a join that starts from `patients` (one row per person on the
        // left, many on the right).
        let joined = format!(
            "SELECT COUNT(DISTINCT e.patient_id) FROM patients p JOIN clinical_events e \
             ON p.patient_id = e.patient_id \
             WHERE p.practice_code = '{pc}' AND e.snomedct_code = '{code}'"
        );
        let joined_attack = format!("{joined} AND to_char(e.event_date, '%Y-%m') <> '{v}'");
        for (all, attack) in [(&all, &attack), (&joined, &joined_attack)] {
            let (got_all, got) = (single(&cx, all).await, single(&cx, attack).await);
            if got != got_all {
                differing.push(format!("{attack} -> {got:?} (all: {got_all:?})"));
            }
        }
    }
    assert!(visible > 0, "no pair where the person's absence would show");
    // The hole on readings with the test of NULL that keeps the rows without one: a part
    // that lets a NULL pass beside a snapped value of rows is refused.
    let pc = &found[0][0];
    let by_reading = format!(
        "SELECT COUNT(DISTINCT patient_id) FROM clinical_events WHERE patient_id IN \
         (SELECT patient_id FROM patients WHERE practice_code = '{pc}') \
         AND (numeric_value <> 131.0 OR numeric_value IS NULL)"
    );
    assert_eq!(
        refused(&cx, &by_reading).await,
        Rule::LowEffect,
        "{by_reading}"
    );
    assert!(
        differing.is_empty(),
        "a condition that leaves out one person changed the released count:\n{}",
        differing.join("\n")
    );
}

/// A fixed low-effect threshold tipped: a condition that leaves out the target and exactly
/// `floor − 1` persons known to be in the cell was ignored when the target was absent (too
/// few persons) and applied when present, and the count then fell by `floor` persons: the
/// answer told whether the target was there, every time. The threshold is now drawn, from
/// `floor` to `floor + low_effect_spread`, from the keys of the persons the condition leaves
/// out, so such a probe tips only for the keys whose threshold is the floor itself.
#[tokio::test]
async fn a_condition_aimed_at_the_low_effect_threshold_tips_only_by_chance() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    let cohort = f.cohort(DIFF_PRACTICE);
    // The cohort's one event each, on 2021-06-(1 + index): a condition on a date of rows is
    // not snapped (birth month is: see
    // `moving_a_range_edge_or_a_hole_past_one_person_changes_an_answer_only_at_an_anchor`;
    // and readings are, since session 50).
    let events = "SELECT COUNT(DISTINCT e.patient_id) FROM clinical_events e \
                  JOIN patients p ON e.patient_id = p.patient_id \
                  WHERE p.practice_code = 'X20001' AND e.snomedct_code = '999000001'";
    let base = single(&cx, events).await;
    assert!(base.is_some());
    let floor = usize::try_from(low_effect_floor(&p)).expect("a small threshold");
    let values = |who: &[usize]| {
        who.iter()
            .map(|&j| diff_date(j))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (mut probes, mut tipped) = (0, 0);
    let mut wrong = Vec::new();
    for t in TARGETS {
        // The others in the cell after the target, three sets of `floor − 1` of them.
        let others: Vec<usize> = (1..DIFF_SIZE).map(|j| (t + j) % DIFF_SIZE).collect();
        for start in [0, floor - 1, others.len() - (floor - 1)] {
            let known = &others[start..start + floor - 1];
            // Without the target (a date nobody in the cell has): too few persons, always
            // ignored.
            let absent = format!(
                "{events} AND e.event_date NOT IN (DATE '1999-01-01', {})",
                values(known)
            );
            let got = single(&cx, &absent).await;
            if got != base {
                wrong.push(format!("{absent} -> {got:?} (all: {base:?})"));
            }
            // With the target: `floor` persons left out, ignored below a threshold drawn
            // from their keys.
            let mut left_out = known.to_vec();
            left_out.push(t);
            let present = format!("{events} AND e.event_date NOT IN ({})", values(&left_out));
            let key = f.cell_key(left_out.iter().map(|&j| cohort[j]));
            let kept: Vec<_> = (0..DIFF_SIZE)
                .filter(|j| !left_out.contains(j))
                .map(|j| cohort[j])
                .collect();
            let want = if is_low_effect(floor as u64, key, &p) {
                base.clone()
            } else {
                tipped += 1;
                let n = kept.len() as u64;
                expected_count(n, n, f.cell_key(kept.iter().copied()), &p)
            };
            let got = single(&cx, &present).await;
            if got != want {
                wrong.push(format!("{present} -> {got:?} (want {want:?})"));
            }
            // The same condition as a grouping key: the cell of the persons it keeps is
            // released as the whole practice when the key's effect is low.
            let grouped = format!(
                "SELECT e.event_date NOT IN ({}) AS kept, COUNT(DISTINCT e.patient_id) \
                 FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
                 WHERE p.practice_code = 'X20001' AND e.snomedct_code = '999000001' \
                 GROUP BY 1",
                values(&left_out)
            );
            let got = rows(&cx, &grouped)
                .await
                .into_iter()
                .find(|r| r[0] == "true")
                .map(|r| r[1].clone());
            if got != want {
                wrong.push(format!("{grouped} -> {got:?} (want {want:?})"));
            }
            probes += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "a probe at the low-effect threshold was not decided by the threshold drawn from \
         the persons it leaves out:\n{}",
        wrong.join("\n")
    );
    // About one probe in `low_effect_spread + 1` tips; a fixed threshold tipped them all.
    assert!(tipped > 0, "no probe tipped: the threshold is not drawn");
    assert!(
        tipped * 2 < probes,
        "{tipped} of {probes} probes at the threshold revealed the target"
    );
}

/// A cell of the target, who passes a condition, and persons known to fail it, few enough for
/// the condition's effect to be low. Low-effect conditions were neutralised only in cells
/// that someone passed, so the cell appeared (with every person of it, 10) when the target
/// was there and not at all when not: the target's presence decided whether the cell
/// existed. Conditions are now neutralised only where the persons who pass would be released
/// on their own, so the cell appears exactly when it would without the detection.
#[tokio::test]
async fn one_person_passing_does_not_make_a_cell_appear() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let cohort = f.cohort(DIFF_PRACTICE);
    let range = |lo: usize, hi: usize| {
        format!(
            "{BASE} AND birth_month BETWEEN DATE '{}' AND DATE '{}'",
            birth_month(lo),
            birth_month(hi)
        )
    };
    let mut differing = Vec::new();
    // Ten persons of the cohort each: the men are persons 3, 13 and 23, so each range
    // holds one man (the target) or none.
    for (lo, hi) in [(0, 9), (10, 19), (20, 29), (14, 22), (24, 29)] {
        let men = (lo..=hi).filter(|&i| cohort[i].sex == 'M').count();
        assert!(men <= 1, "{lo}..{hi}");
        let sql = format!("{} AND sex = 'M'", range(lo, hi));
        let got = single(&cx, &sql).await;
        if got.is_some() {
            differing.push(format!("{sql} -> {got:?} ({men} man in the range)"));
        }
    }
    assert!(
        differing.is_empty(),
        "a cell that one person passes appeared:\n{}",
        differing.join("\n")
    );
}

/// A `CASE` that excludes one person in one branch and everyone in the others is one
/// condition on several columns unless it is taken apart: measured as a whole it left out
/// everyone outside the practice, so it was applied, and the target's exclusion with it
/// (25 against 30 for 5 of the 30 targets, session 25). Its branches' conditions are now
/// measured as the same conditions written with `AND`/`OR` are, so every form gives the
/// answer of `practice_code = … AND birth_month <> …`, which ignores the one person.
#[tokio::test]
async fn excluding_one_person_inside_a_case_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let shapes = [
        "SELECT COUNT(*) FROM patients p WHERE CASE WHEN p.practice_code = 'X20001' \
         THEN {x} ELSE FALSE END",
        "SELECT COUNT(*) FROM patients p WHERE CASE WHEN p.practice_code <> 'X20001' \
         THEN FALSE ELSE {x} END",
        "SELECT COUNT(*) FROM patients p WHERE CASE p.practice_code WHEN 'X20001' THEN {x} END",
        "SELECT COUNT(*) FROM patients p WHERE (CASE WHEN p.practice_code = 'X20001' \
         THEN {x} ELSE FALSE END) IS TRUE",
        "SELECT COUNT(*) FROM patients p WHERE (CASE WHEN p.practice_code <> 'X20001' \
         THEN TRUE ELSE NOT ({x}) END) IS NOT TRUE",
        "SELECT COUNT(*) FROM patients p WHERE NOT CASE WHEN p.practice_code = 'X20001' \
         THEN NOT ({x}) ELSE TRUE END",
        // Computed in a derived table and filtered on.
        "WITH t AS (SELECT (p.practice_code = 'X20001' AND {x}) AS k FROM patients p) \
         SELECT COUNT(*) FROM t WHERE k",
        "WITH t AS (SELECT p.patient_id, CASE WHEN p.practice_code = 'X20001' THEN {x} \
         ELSE FALSE END AS k FROM patients p) SELECT COUNT(*) FROM t WHERE t.k",
        "WITH t AS (SELECT p.patient_id, (p.practice_code = 'X20001' AND {x}) AS k \
         FROM patients p), u AS (SELECT patient_id, k FROM t) SELECT COUNT(*) FROM u WHERE k",
        "SELECT COUNT(*) FROM patients p WHERE (CASE WHEN p.practice_code = 'X20001' \
         AND {x} THEN TRUE END) IS NOT UNKNOWN",
        // A comparison of a `CASE` is a `CASE` of comparisons.
        "SELECT COUNT(*) FROM patients p \
         WHERE CASE WHEN p.practice_code = 'X20001' THEN p.birth_month END <> {m}",
        "SELECT COUNT(*) FROM patients p WHERE CASE WHEN p.practice_code = 'X20001' \
         AND p.birth_month <> {m} THEN 1 END IS NOT NULL",
        // The same as an `OR`, inside a per-person aggregation joined as a cohort: ran into
        // a schema error before (its conditions' columns were looked up by position). (The
        // practice selected by the cohort's code: `practice_code = 'X20001'` beside the `OR`
        // is a category read with the anchors the `OR` never drops, which a cohort of 30
        // does not have: no answer, since session 37.)
        "SELECT COUNT(*) FROM (SELECT e.patient_id, COUNT(*) AS n FROM clinical_events e \
         JOIN patients p ON e.patient_id = p.patient_id \
         WHERE e.numeric_value IS NOT NULL AND ({x} OR p.sex = 'F') \
         GROUP BY e.patient_id) t \
         JOIN patients p2 ON t.patient_id = p2.patient_id WHERE p2.patient_id IN \
         (SELECT patient_id FROM clinical_events WHERE snomedct_code = '999000001')",
        // Inside a per-person aggregation whose value selects the practice's persons.
        "SELECT COUNT(*) FROM (SELECT e.patient_id, \
         SUM(CASE WHEN e.snomedct_code = '999000001' THEN 1 ELSE 0 END) AS k \
         FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
         WHERE e.numeric_value IS NOT NULL \
         AND ((p.practice_code = 'X20001' AND {x}) OR p.sex = 'Q') \
         GROUP BY e.patient_id) t WHERE t.k >= 1",
    ];
    let base = single(&cx, BASE).await;
    assert!(base.is_some());
    let mut differing = Vec::new();
    for shape in shapes {
        let sql = |i: Option<usize>| {
            let (x, m) = match i {
                Some(i) => (
                    format!("p.birth_month <> DATE '{}'", birth_month(i)),
                    format!("DATE '{}'", birth_month(i)),
                ),
                None => ("TRUE".to_string(), "DATE '1900-01-01'".to_string()),
            };
            shape.replace("{x}", &x).replace("{m}", &m)
        };
        // The same answer as the query without the person's exclusion …
        compare_targets(&cx, sql, &mut differing).await;
        // … which is the practice's count.
        let all = single(&cx, &sql(None)).await;
        if all != base {
            differing.push(format!("{} -> {all:?} (practice: {base:?})", sql(None)));
        }
    }
    assert!(
        differing.is_empty(),
        "a condition inside a CASE changed the released count:\n{}",
        differing.join("\n")
    );
}

/// An `OR` that leaves out few persons of the cell is ignored, and so are its branches: it
/// used to drop the persons only one branch let in. `… AND (birth_month <> x OR sex <> 'M')`
/// then released 25 (the practice's men dropped) when nobody was born in `x`, and 30 when a
/// man was (he failed both branches, and the whole `OR` was ignored for him): one query told
/// whether the practice has a man born in `x` (3 of 30 months; 6 targets with the other
/// forms; session 25). Now every form gives the practice's count for every month.
#[tokio::test]
async fn an_or_that_leaves_out_few_persons_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let base = single(&cx, BASE).await;
    assert!(base.is_some());
    let mut differing = Vec::new();
    for i in 0..DIFF_SIZE {
        let m = birth_month(i);
        // (`birth_month <> … OR sex <> 'M'`, the form of session 25, is refused since
        // session 38: a negation of a category beside an edge in one `OR`.)
        for or in [
            format!("birth_month <> DATE '{m}' OR sex = 'F'"),
            format!("sex = 'F' OR (sex = 'M' AND birth_month <> DATE '{m}')"),
        ] {
            let sql = format!("{BASE} AND ({or})");
            let got = single(&cx, &sql).await;
            if got != base {
                differing.push(format!("{sql} -> {got:?} (all: {base:?})"));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "an OR that leaves out few persons changed the released count:\n{}",
        differing.join("\n")
    );
}

/// The same `OR`, with enough never-true branches on other columns (one each, 50 in all)
/// that it is measured in chunks of 48 (`MAX_CHILDREN`): the chunk holding the two real
/// branches must be gated by the whole `OR`'s effect, as the `OR` itself is (found in
/// review, session 25: a chunk had no gate, and the practice's men were dropped only when
/// nobody was born in the month).
#[tokio::test]
async fn an_or_of_many_branches_that_leaves_out_few_persons_does_not_change_a_count() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // Never-true conditions on distinct sets of columns, which are measured as one branch
    // each. In the order the branches are chunked in (by their sets of columns), 40 come
    // between `birth_month` and `sex` (so that both real branches are in the first chunk)
    // and 14 after `sex` (so that there is a second).
    // (On `birth_month`, `death_month` and `imd_decile` as tests of NULL, which are not
    // snapped: an `OR` with another snapped condition besides `birth_month <> …` is
    // refused, session 28.)
    let impossible = [
        "(p.death_month IS NULL AND p.death_month IS NOT NULL)",
        "p.ethnicity = '-'",
        "(p.imd_decile IS NULL AND p.imd_decile IS NOT NULL)",
        "p.lsoa = '-'",
        "p.practice_code = '-'",
    ];
    let public = ["pr.practice_name", "pr.sub_icb_code", "pr.region"];
    let subsets =
        |n: usize| (1u32..(1 << n)).map(move |bits| (0..n).filter(move |k| bits & (1 << k) != 0));
    let mut dummies = Vec::new();
    for set in subsets(impossible.len()) {
        let parts: Vec<String> = set.map(|k| impossible[k].to_string()).collect();
        dummies.push(format!("({})", parts.join(" AND ")));
    }
    for set in subsets(impossible.len()).take(9) {
        let parts: Vec<String> = set.map(|k| impossible[k].to_string()).collect();
        dummies.push(format!(
            "(p.birth_month IS NULL AND p.birth_month IS NOT NULL AND {})",
            parts.join(" AND ")
        ));
    }
    // (Tests of NULL there: an equality on a column of `practices` looked up by the
    // person's practice is a list of practices since session 48, refused in an `OR`.)
    for set in subsets(public.len()) {
        let parts: Vec<String> = set
            .map(|k| format!("({0} IS NULL AND {0} IS NOT NULL)", public[k]))
            .collect();
        dummies.push(format!("({})", parts.join(" AND ")));
        dummies.push(format!("(p.sex = '-' AND {})", parts.join(" AND ")));
    }
    assert_eq!(dummies.len(), 54);
    let base = single(&cx, BASE).await;
    assert!(base.is_some());
    let mut differing = Vec::new();
    // Two women (each left the others out before the fix) and a man (all kept): a query
    // with this many branches takes seconds in a debug build.
    for i in [0, 13, 14] {
        let sql = format!(
            "SELECT COUNT(*) FROM patients p JOIN practices pr ON pr.practice_code = p.practice_code \
             WHERE p.practice_code = 'X20001' AND (p.birth_month <> DATE '{}' OR p.sex = 'F' OR {})",
            birth_month(i),
            dummies.join(" OR ")
        );
        let got = single(&cx, &sql).await;
        if got != base {
            differing.push(format!(
                "month {} -> {got:?} (all: {base:?})",
                birth_month(i)
            ));
        }
    }
    assert!(
        differing.is_empty(),
        "an OR of many branches that leaves out few persons changed the released count:\n{}",
        differing.join("\n")
    );
}

/// A `CASE` taken apart grows with the square of its branches (each repeats the earlier
/// `WHEN`s as "not true"), and nested `CASE`s double: past a fixed number of atomic
/// conditions the statement is refused, quickly, instead of being planned at any size.
#[tokio::test]
async fn a_case_too_large_to_take_apart_is_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // (On dates of rows: a `CASE` over a person's category, `WHEN lsoa = …`, is a list of
    // categories and refused beside an edge since session 38; over readings, `WHEN
    // e.numeric_value = k`, a list of readings, since session 50.)
    let whens: Vec<String> = (0..120)
        .map(|k| {
            format!(
                "WHEN e.event_date = DATE '{}-01-01' THEN e.event_date <> DATE '2021-06-01'",
                1900 + k
            )
        })
        .collect();
    let case = |whens: &[String]| {
        format!(
            "SELECT COUNT(*) FROM clinical_events e WHERE e.snomedct_code = '{DIFF_CODE}' \
             AND CASE {} ELSE e.snomedct_code <> '-' END",
            whens.join(" ")
        )
    };
    let sql = case(&whens);
    assert_eq!(refused(&cx, &sql).await, Rule::Unsupported, "{sql}");
    // A CASE of a few branches is taken apart and runs.
    let small = case(&whens[..5]);
    assert!(single(&cx, &small).await.is_some(), "{small}");
}

/// A condition on a table with many rows per person that leaves out few persons must not
/// change a count of *rows* by the other persons' rows either. A fail mask was counted by
/// the persons it decides (those with no passing row): one that decided nobody was applied,
/// one that decided one person was ignored for every row. So `COUNT(*)` of one code's
/// readings at a practice with `numeric_value <> v` released the readings without `v`
/// (1,255–1,265 on this fixture) when nobody had only readings of `v`, and all readings
/// (1,295) when one person had: one query told whether someone in the cell has only
/// readings of `v`. Now a mask that touches many persons but decides few lets in the rows
/// of the persons it decides only, so the answer is the readings without `v` plus those
/// persons' readings: it moves with them by their own rows, as the query without the
/// condition does. Readings are snapped since session 50, so the condition is now on the
/// month of the events (`to_char(event_date, '%Y-%m') <> m`, a value of rows measured as
/// written). The months are found in the background data (held by at least 20 persons at
/// the practice, at most 7 of whom have no other event of the code in another), and the
/// released count must be output control's for exactly those rows, through the plain
/// aggregation, a grouped one (the sampled measurement) and an `OR` (the general one).
#[tokio::test]
async fn a_condition_that_decides_few_persons_does_not_change_a_count_of_rows_by_others() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let mut found = Vec::new();
    for which in ["only_v = 0", "only_v BETWEEN 1 AND 7"] {
        let some = unprotected(
            &cx,
            &format!(
                "SELECT pc, code, v, only_v FROM (
                   SELECT pc, code, v, COUNT(*) AS having_v,
                          SUM(CASE WHEN n_other = 0 THEN 1 ELSE 0 END) AS only_v
                   FROM (SELECT p.practice_code AS pc, e.patient_id, e.snomedct_code AS code,
                                to_char(e.event_date, '%Y-%m') AS v,
                                MAX(t.n_all) - COUNT(*) AS n_other
                         FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id
                         JOIN (SELECT patient_id, snomedct_code, COUNT(*) AS n_all
                               FROM clinical_events GROUP BY patient_id, snomedct_code) t
                           ON e.patient_id = t.patient_id
                          AND e.snomedct_code = t.snomedct_code
                         GROUP BY p.practice_code, e.patient_id, e.snomedct_code,
                                  to_char(e.event_date, '%Y-%m')) x
                   GROUP BY pc, code, v) y
                 WHERE having_v >= 20 AND {which} ORDER BY pc, code, v LIMIT 4"
            ),
        )
        .await;
        assert!(!some.is_empty(), "the fixture has no value with {which}");
        found.extend(some);
    }
    let mut wrong = Vec::new();
    for r in &found {
        let (pc, code, v) = (&r[0], &r[1], &r[2]);
        let cell = format!(
            "FROM clinical_events WHERE snomedct_code = '{code}' AND patient_id IN \
             (SELECT patient_id FROM patients WHERE practice_code = '{pc}')"
        );
        // The rows the answer must count: every event outside the month `v`, and every
        // event of the persons with none outside it.
        let kept = unprotected(
            &cx,
            &format!(
                "SELECT patient_id, COUNT(*) AS n, \
                 COUNT(*) FILTER (WHERE to_char(event_date, '%Y-%m') <> '{v}') AS other {cell} \
                 GROUP BY patient_id"
            ),
        )
        .await;
        let (mut per_person, mut key) = (Vec::new(), 0u32);
        for p in &kept {
            let (n, other): (u64, u64) = (p[1].parse().expect("n"), p[2].parse().expect("n"));
            per_person.push(if other == 0 { n } else { other });
            key += u32::from(f.record_key(p[0].parse().expect("an id")));
        }
        let want = expected_rows(&per_person, (key % 256) as u8, cx.output_control());
        assert!(want.is_some(), "{cell}");
        for sql in [
            format!("SELECT COUNT(*) {cell} AND to_char(event_date, '%Y-%m') <> '{v}'"),
            format!(
                "SELECT p.practice_code, COUNT(*) FROM clinical_events e \
                 JOIN patients p ON e.patient_id = p.patient_id \
                 WHERE e.snomedct_code = '{code}' AND p.practice_code = '{pc}' \
                 AND to_char(e.event_date, '%Y-%m') <> '{v}' GROUP BY p.practice_code"
            ),
            format!(
                "SELECT COUNT(*) {cell} AND (to_char(event_date, '%Y-%m') <> '{v}' \
                 OR event_date < DATE '1900-01-01')"
            ),
        ] {
            let got = rows(&cx, &sql).await;
            let released = got.first().and_then(|row| row.last().cloned());
            if released.as_deref() != want.as_deref() {
                wrong.push(format!("{sql} -> {got:?}, want {want:?} ({} alone)", r[3]));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "a condition that decides few persons changed a count of rows:\n{}",
        wrong.join("\n")
    );
}

/// A condition computed in a derived table and filtered on above a join (`t JOIN patients q
/// … WHERE t.k`) was one condition, measured as a whole: leaving out the person born in
/// `x` inside it gave 25 against 30 (session 26; without the join it was closed in session
/// 25). It is now moved onto the join's side and taken apart there. Filtered above a
/// `SELECT DISTINCT` that computes it, it is refused as a condition that cannot be measured
/// (it was one condition there too, 25 against 30).
#[tokio::test]
async fn a_condition_computed_in_a_derived_table_is_measured_across_a_join() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let k = |i: Option<usize>| match i {
        Some(i) => format!(
            "(practice_code = 'X20001' AND birth_month <> DATE '{}')",
            birth_month(i)
        ),
        None => "(practice_code = 'X20001')".to_string(),
    };
    let mut differing = Vec::new();
    compare_targets(
        &cx,
        |i| {
            format!(
                "WITH t AS (SELECT patient_id, {} AS k FROM patients) SELECT COUNT(*) \
                 FROM t JOIN patients q ON t.patient_id = q.patient_id WHERE t.k",
                k(i)
            )
        },
        &mut differing,
    )
    .await;
    compare_targets(
        &cx,
        |i| {
            format!(
                "WITH t AS (SELECT patient_id, practice_code AS pc, {} AS k FROM patients) \
                 SELECT pr.practice_code, COUNT(*) FROM t \
                 LEFT JOIN practices pr ON t.pc = pr.practice_code \
                 WHERE t.k GROUP BY pr.practice_code",
                k(i)
            )
        },
        &mut differing,
    )
    .await;
    assert!(
        differing.is_empty(),
        "a condition computed in a derived table changed a count across a join:\n{}",
        differing.join("\n")
    );
    let distinct = format!(
        "WITH t AS (SELECT DISTINCT patient_id, {} AS k FROM patients) \
         SELECT COUNT(*) FROM t WHERE k",
        k(Some(14))
    );
    assert_eq!(refused(&cx, &distinct).await, Rule::LowEffect);
}

/// Which snapped birth-month indexes a condition keeps.
type Keeps = Box<dyn Fn(usize) -> bool>;

/// Range edges, holes and islands on birth month (DESIGN.md rule 7). With exact conditions,
/// `birth_month < x` against `birth_month <= x`, `birth_month <> x AND birth_month < y`
/// against `birth_month < y`, or `birth_month < y OR birth_month = x` against `birth_month <
/// y`, differ by exactly the person born in `x` when they are in the cell, and their answers
/// then differ whenever noise and rounding do (session 19 confirmed 15 against 10 for the
/// hole). A condition on a per-person value is now read at the value *snapped* in its cell:
/// the birth month of the nearest edge anchor (one person in four, by record key). The
/// answers are
/// checked against that model exactly, and for every target who is not an anchor, the two
/// queries of each pair give the same answer: moving an edge past them changes nothing.
#[tokio::test]
async fn moving_a_range_edge_or_a_hole_past_one_person_changes_an_answer_only_at_an_anchor() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    let cohort = f.cohort(DIFF_PRACTICE);
    let anchors = edge_anchor_keys();
    let anchor: Vec<bool> = cohort
        .iter()
        .map(|q| anchors.contains(&q.record_key))
        .collect();
    // Each person's birth month index, snapped to the nearest anchor's.
    let at: Vec<i64> = (0..DIFF_SIZE).map(|j| days(&birth_month(j))).collect();
    let snapped: Vec<usize> = snapped_to_anchors(&at, &anchor)
        .expect("an anchor among 30")
        .iter()
        .map(|d| at.iter().position(|x| x == d).expect("an anchor's month"))
        .collect();
    let model = |keeps: &dyn Fn(usize) -> bool| {
        let kept: Vec<bool> = snapped.iter().map(|&b| keeps(b)).collect();
        count_under_condition(&cohort, &kept, &p)
    };
    let m = |i: usize| format!("DATE '{}'", birth_month(i));
    let joined = "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
                  JOIN clinical_events e ON e.patient_id = p.patient_id \
                  WHERE p.practice_code = 'X20001' AND e.snomedct_code = '999000001'";
    let (mut wrong, mut moved, mut checked) = (Vec::new(), Vec::new(), 0);
    for (i, &is_anchor) in anchor.iter().enumerate().skip(1) {
        let pairs: Vec<(String, String, Keeps, Keeps)> = vec![
            (
                format!("{BASE} AND birth_month < {}", m(i)),
                format!("{BASE} AND birth_month <= {}", m(i)),
                Box::new(move |b| b < i),
                Box::new(move |b| b <= i),
            ),
            (
                format!("{BASE} AND birth_month >= {}", m(i)),
                format!("{BASE} AND birth_month > {}", m(i)),
                Box::new(move |b| b >= i),
                Box::new(move |b| b > i),
            ),
            (
                format!("{BASE} AND birth_month < {}", m(24)),
                format!(
                    "{BASE} AND birth_month <> {} AND birth_month < {}",
                    m(i),
                    m(24)
                ),
                Box::new(|b| b < 24),
                Box::new(move |b| b != i && b < 24),
            ),
            (
                format!("{BASE} AND birth_month > {}", m(3)),
                format!(
                    "{BASE} AND (birth_month > {} OR birth_month = {})",
                    m(3),
                    m(i)
                ),
                Box::new(|b| b > 3),
                Box::new(move |b| b > 3 || b == i),
            ),
        ];
        for (a, b, keeps_a, keeps_b) in pairs {
            let (got_a, got_b) = (single(&cx, &a).await, single(&cx, &b).await);
            for (sql, got, keeps) in [(&a, &got_a, &keeps_a), (&b, &got_b, &keeps_b)] {
                let want = model(keeps.as_ref());
                if *got != want {
                    wrong.push(format!("{sql} -> {got:?} (want {want:?})"));
                }
            }
            if !is_anchor {
                checked += 1;
                if got_a != got_b {
                    moved.push(format!("{a} -> {got_a:?}\n  {b} -> {got_b:?}"));
                }
            }
        }
        // The same edge as a grouping key, plain and as a band.
        if !is_anchor {
            for key in [
                "birth_month {op} {m} AS k",
                "CASE WHEN birth_month {op} {m} THEN 'before' ELSE 'after' END AS band",
            ] {
                let grouped = |op: &str| {
                    format!(
                        "SELECT {}, COUNT(*) FROM patients WHERE practice_code = 'X20001' \
                         GROUP BY 1",
                        key.replace("{op}", op).replace("{m}", &m(i))
                    )
                };
                let (a, b) = (grouped("<"), grouped("<="));
                let (got_a, got_b) = (sorted_rows(&cx, &a).await, sorted_rows(&cx, &b).await);
                checked += 1;
                if got_a != got_b || got_a.is_empty() {
                    moved.push(format!("{a} -> {got_a:?}\n  {b} -> {got_b:?}"));
                }
            }
        }
        // The same edge wrapped in an `OR` branch nobody passes, and over rows joined to
        // events: the same answer as written plainly.
        for (plain, wrapped) in [
            (
                format!("{BASE} AND birth_month <= {}", m(i)),
                format!("{BASE} AND (birth_month <= {} OR sex = 'Z')", m(i)),
            ),
            (
                format!("{BASE} AND birth_month <= {}", m(i)),
                format!("{joined} AND p.birth_month <= {}", m(i)),
            ),
        ] {
            let (got_p, got_w) = (single(&cx, &plain).await, single(&cx, &wrapped).await);
            if got_p != got_w {
                wrong.push(format!(
                    "{wrapped} -> {got_w:?} (as written plainly: {got_p:?})"
                ));
            }
        }
    }
    assert!(
        checked > 40,
        "only {checked} pairs at a person who is not an anchor"
    );
    assert!(
        moved.is_empty(),
        "moving an edge past one person who is not an anchor changed the answer:\n{}",
        moved.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "answers not those of the snapped birth months:\n{}",
        wrong.join("\n")
    );
}

/// A value looked up in a public table on the person's own value (`JOIN lsoas s ON s.lsoa =
/// p.lsoa` makes `s.imd_decile` the person's decile) is a per-person value too: its edges
/// are snapped as the person's own `imd_decile`'s are, so the two give the same answers.
/// Read through the public table, the edge was not snapped: in one practice `s.imd_decile
/// < 5` and `<= 5` gave 30 and 35 where `p.imd_decile` gave 35 both times. So did the same
/// edge in a membership of the table's key (`p.lsoa IN (SELECT lsoa FROM lsoas WHERE
/// imd_decile < 5)`), until session 33 made it the join it stands for.
#[tokio::test]
async fn a_range_edge_on_a_value_looked_up_in_a_public_table_is_snapped_like_the_persons_own() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // Practices and deciles, the smallest groups first (where an edge isolates few).
    let groups = unprotected(
        &cx,
        "SELECT practice_code, imd_decile, COUNT(*) FROM patients \
         WHERE imd_decile IS NOT NULL GROUP BY 1, 2 ORDER BY 3, 1, 2 LIMIT 6",
    )
    .await;
    assert!(groups.len() == 6, "{groups:?}");
    assert!(num(&groups[0][2]) <= 5.0, "no small group: {groups:?}");
    let mut differing = Vec::new();
    for row in &groups {
        let (pr, d) = (&row[0], &row[1]);
        for op in ["<", "<=", "<>"] {
            let on = |t: &str| {
                format!(
                    "SELECT COUNT(*) FROM patients p JOIN lsoas s ON s.lsoa = p.lsoa \
                     WHERE p.practice_code = '{pr}' AND {t}.imd_decile {op} {d}"
                )
            };
            let own = rows(&cx, &on("p")).await;
            let comma = format!(
                "SELECT COUNT(*) FROM lsoas s, patients p WHERE p.lsoa = s.lsoa \
                 AND p.practice_code = '{pr}' AND s.imd_decile {op} {d}"
            );
            let key = |t: &str| {
                format!(
                    "SELECT {t}.imd_decile {op} {d} AS k, COUNT(*) FROM patients p \
                     JOIN lsoas s ON p.lsoa = s.lsoa WHERE p.practice_code = '{pr}' GROUP BY 1"
                )
            };
            // The same lookup as a membership of the public table's key.
            let member = format!(
                "SELECT COUNT(*) FROM patients p WHERE p.practice_code = '{pr}' \
                 AND p.lsoa IN (SELECT l.lsoa FROM lsoas l WHERE l.imd_decile {op} {d})"
            );
            for looked_up in [on("s"), comma, member] {
                let got = rows(&cx, &looked_up).await;
                if got != own {
                    differing.push(format!("{looked_up} -> {got:?} (own value: {own:?})"));
                }
            }
            let (got, own) = (
                sorted_rows(&cx, &key("s")).await,
                sorted_rows(&cx, &key("p")).await,
            );
            if got != own || got.is_empty() {
                differing.push(format!("{} -> {got:?} (own value: {own:?})", key("s")));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "an edge on the looked-up decile answered differently from one on the person's own:\n{}",
        differing.join("\n")
    );
}

/// A condition on birth month inside a cohort subquery is measured in the answer's cells as
/// a per-person value: snapped there like the same condition written in the outer query,
/// so it gives the same answers. One inside an aggregation inside the subquery has no
/// cells to be snapped in: refused.
#[tokio::test]
async fn a_range_edge_inside_a_cohort_subquery_is_snapped_in_the_answers_cells() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let m = |i: usize| format!("DATE '{}'", birth_month(i));
    let cohort = |cond: &str| {
        format!("{BASE} AND patient_id IN (SELECT patient_id FROM patients WHERE {cond})")
    };
    let mut differing = Vec::new();
    for i in 1..DIFF_SIZE {
        let pairs = [
            (
                format!("{BASE} AND birth_month <= {}", m(i)),
                cohort(&format!("birth_month <= {}", m(i))),
            ),
            (
                format!("{BASE} AND birth_month <= {}", m(i)),
                format!(
                    "{BASE} AND patient_id NOT IN (SELECT patient_id FROM patients \
                     WHERE birth_month > {})",
                    m(i)
                ),
            ),
            (
                format!(
                    "{BASE} AND birth_month >= {} AND birth_month <> {}",
                    m(2),
                    m(i)
                ),
                cohort(&format!(
                    "birth_month >= {} AND birth_month <> {}",
                    m(2),
                    m(i)
                )),
            ),
            (
                format!(
                    "{BASE} AND (birth_month < {} OR birth_month = {})",
                    m(5),
                    m(i)
                ),
                cohort(&format!(
                    "(birth_month < {} OR birth_month = {}) AND sex <> 'Z'",
                    m(5),
                    m(i)
                )),
            ),
        ];
        for (plain, inside) in pairs {
            let (a, b) = (single(&cx, &plain).await, single(&cx, &inside).await);
            if a != b {
                differing.push(format!("{plain} -> {a:?}\n  {inside} -> {b:?}"));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "a condition inside a cohort subquery was not measured as in the outer query:\n{}",
        differing.join("\n")
    );
    // No single value to snap: an aggregation inside the cohort, a band computed in a
    // derived table and grouped on above, two values of the person in one comparison, one
    // with another of their columns.
    for sql in [
        format!(
            "{BASE} AND patient_id IN (SELECT patient_id FROM patients GROUP BY patient_id \
             HAVING MIN(birth_month) < {})",
            m(20)
        ),
        format!(
            "WITH banded AS (SELECT patient_id, practice_code, CASE WHEN birth_month < {} \
             THEN 'before' ELSE 'after' END AS band FROM patients) \
             SELECT band, COUNT(*) FROM banded WHERE practice_code = 'X20001' GROUP BY band",
            m(20)
        ),
        format!(
            "{BASE} AND date_part('year', coalesce(death_month, DATE '2030-01-01')) \
             - date_part('year', birth_month) < 80 AND birth_month < {}",
            m(20)
        ),
        format!(
            "{BASE} AND coalesce(nullif(practice_code, 'X20001') = '', birth_month <> {})",
            m(20)
        ),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
}

/// A person let in only by a branch of an `OR` that is then dropped as low-effect (DESIGN.md
/// rule 7) is not in the answer, and must not be an edge anchor: `practice AND birth_month
/// <= x AND (sex = 'F' OR lsoa IN (…))` let the one man of `lsoa` born in `x`, when an
/// anchor, snap the woman born in `x` to `x` and then leave, so `<= x` and `< x` differed
/// by her alone (session 27 review). Anchors now come only from pass masks of the `OR` that
/// enough anchors share (or with a branch that enough anchors pass alone), which are never
/// dropped.
#[tokio::test]
async fn a_person_let_in_by_a_dropped_or_branch_is_not_an_edge_anchor() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let m = |i: usize| format!("DATE '{}'", birth_month(i));
    // The differencing cohort kept by event dates (rows, not snapped), with its men let in
    // by a second branch: too few anchors share any mask of the `OR`, so no edge on birth
    // month has an anchor, and each keeps no one, wherever it is (until session 40 none was
    // applied, which released the whole cohort for an edge below all of it). (Its code is the cohort's alone. With
    // `practice_code = 'X20001'` beside the `OR`, the practice is a category read with the
    // anchors the `OR` cannot drop, and it has none: no answer, since session 37.)
    let kept: Vec<String> = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 18, 20, 22]
        .iter()
        .map(|&i| diff_date(i))
        .collect();
    let events = format!(
        "SELECT COUNT(DISTINCT e.patient_id) FROM clinical_events e \
         JOIN patients p ON e.patient_id = p.patient_id \
         WHERE e.snomedct_code = '999000001' \
         AND (e.event_date IN ({}) OR p.sex = 'M')",
        kept.join(", ")
    );
    let without = single(&cx, &events).await;
    assert!(without.is_some(), "{events}");
    let mut differing = Vec::new();
    for i in 0..DIFF_SIZE {
        for op in ["<", "<="] {
            let sql = format!("{events} AND p.birth_month {op} {}", m(i));
            let got = single(&cx, &sql).await;
            if got.is_some() {
                differing.push(format!(
                    "{sql} -> {got:?} (an edge without an anchor keeps no one; without it: \
                     {without:?})"
                ));
            }
        }
    }
    // Over the whole population, the women are many and their mask is kept: an `OR` that
    // also lets in the few men (one to four) of one LSOA and ethnicity gives the women's answer at every edge near
    // those men, as the men are dropped (and were anchors among them before).
    let men = unprotected(
        &cx,
        "SELECT lsoa, ethnicity, MIN(birth_month), MAX(birth_month) FROM patients \
         WHERE sex = 'M' AND lsoa IS NOT NULL GROUP BY lsoa, ethnicity \
         HAVING COUNT(*) BETWEEN 1 AND 4 ORDER BY COUNT(*) DESC, lsoa, ethnicity LIMIT 3",
    )
    .await;
    assert!(
        !men.is_empty(),
        "no LSOA and ethnicity with one to four men"
    );
    for row in &men {
        let few = format!("(lsoa = '{}' AND ethnicity = '{}')", row[0], row[1]);
        for month in [&row[2], &row[3]] {
            for shift in ["- INTERVAL '1' MONTH", "", "+ INTERVAL '1' MONTH"] {
                let edge = format!("birth_month <= DATE '{month}' {shift}");
                let women = format!("SELECT COUNT(*) FROM patients WHERE {edge} AND sex = 'F'");
                let or =
                    format!("SELECT COUNT(*) FROM patients WHERE {edge} AND (sex = 'F' OR {few})");
                let (a, b) = (single(&cx, &women).await, single(&cx, &or).await);
                if a.is_none() || a != b {
                    differing.push(format!("{or} -> {b:?} (the women alone: {a:?})"));
                }
            }
        }
    }
    // The same over rows of events (many per person): a person's share of a mask is
    // counted over the rows the `OR` decides, so the women's mask keeps its anchors and
    // the edge applies as it does without the `OR`.
    let events = "SELECT COUNT(DISTINCT e.patient_id) FROM clinical_events e \
                  JOIN patients p ON e.patient_id = p.patient_id \
                  WHERE e.numeric_value IS NOT NULL";
    for row in &men {
        let few = format!("(p.lsoa = '{}' AND p.ethnicity = '{}')", row[0], row[1]);
        let edge = format!("p.birth_month <= DATE '{}'", row[2]);
        let women = format!("{events} AND {edge} AND p.sex = 'F'");
        let or = format!("{events} AND {edge} AND (p.sex = 'F' OR {few})");
        let all = format!("{events} AND (p.sex = 'F' OR {few})");
        let (a, b, c) = (
            single(&cx, &women).await,
            single(&cx, &or).await,
            single(&cx, &all).await,
        );
        if a.is_none() || a != b || b == c {
            differing.push(format!(
                "{or} -> {b:?} (the women alone: {a:?}; without the edge: {c:?})"
            ));
        }
    }
    assert!(
        differing.is_empty(),
        "a person dropped from the answer pinned a range edge:\n{}",
        differing.join("\n")
    );
    // Refused (FS-7): two snapped values as alternatives in one `OR` (an anchor decided by
    // one and not the other is snapped by the other's anchors, and its mask can then be
    // dropped); two parts on one value in one `OR` (both move with `v`, and an anchor in one
    // part's rows in one query is in the other's in the next); an edge beside an `OR` with
    // an edge on another value (the one inside is snapped first, with anchors whose place
    // in the answer the other then moves), also as a key; two `OR`s beside an edge.
    let band = |m: &str, or: &str| {
        format!(
            "SELECT CASE WHEN birth_month < {m} THEN 'before' ELSE 'after' END AS band, \
             COUNT(*) FROM patients WHERE practice_code = 'X20001' AND {or} GROUP BY 1"
        )
    };
    for sql in [
        format!(
            "{BASE} AND (birth_month <= {} OR death_month >= DATE '2020-01-01')",
            m(14)
        ),
        format!(
            "{BASE} AND (birth_month <= {m} OR (birth_month > {m} AND sex = 'M'))",
            m = m(14)
        ),
        format!(
            "{BASE} AND birth_month <= {} AND (sex = 'F' OR death_month >= DATE '2020-01-01')",
            m(14)
        ),
        band(&m(14), "(sex = 'F' OR death_month >= DATE '2020-01-01')"),
        format!(
            "{BASE} AND birth_month <= {} AND (sex = 'F' OR ethnicity = 'A') \
             AND (lsoa = 'E01000001' OR sex = 'M')",
            m(14)
        ),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
    // One `OR` of other conditions beside a band is measured, and runs.
    let runs = band(&m(14), "(sex = 'F' OR ethnicity = 'ZZ')");
    assert!(!sorted_rows(&cx, &runs).await.is_empty(), "{runs}");
}

/// A condition inside a branch of an `OR` that leaves out few persons is ignored there
/// (DESIGN.md rule 7), and the persons it then lets in are dropped like any few persons only
/// some branches let in: `(a OR (b AND c))` answers as `(a OR b)` does. The `OR`'s masks
/// were measured on the branches as written, where nobody passes `b AND c`; so
/// `(e.numeric_value BETWEEN 48 AND 65 OR (p.sex = 'I' AND p.ethnicity = 'ZZ'))` let in the
/// one person of sex `I`, whom `(… OR p.sex = 'I')` drops, and the answer (20) differed from
/// the range's alone (15) by exactly that person: a presence oracle.
#[tokio::test]
async fn a_condition_ignored_inside_an_or_branch_lets_in_no_one_the_branch_would_not() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // A sum of the values shows a person more or less where a rounded count may not. (The
    // code is the differencing cohort's alone; with `practice_code = 'X20001'` beside the
    // `OR`, the practice is a category read with the anchors the `OR` never drops, which
    // a cohort of 30 does not have: no answer, since session 37.)
    let q = "SELECT SUM(e.numeric_value) FROM clinical_events e \
             JOIN patients p ON e.patient_id = p.patient_id \
             WHERE e.snomedct_code = '999000001'";
    let mut differing = Vec::new();
    let mut released = 0;
    // Ranges of indexes (the events' dates, 2021-06-(1 + index)) that keep 14 or 15 persons (at least the highest
    // low-effect threshold, 14), none of sex `I` (index 7), and leave out at least 14 with
    // them: whether the `OR` has a large effect does not then depend on that person (a
    // count near the threshold tips with one person, the drawn-threshold edge, a separate
    // matter).
    let ranges: Vec<(usize, usize)> = (8..=15)
        .flat_map(|lo| [(lo, lo + 13), (lo, lo + 14)])
        .collect();
    for &(lo, hi) in &ranges {
        for sex in ["I"] {
            let range = format!(
                "e.event_date BETWEEN {} AND {}",
                diff_date(lo),
                diff_date(hi)
            );
            let plain = format!("{q} AND ({range} OR p.sex = '{sex}')");
            let want = single(&cx, &plain).await;
            released += usize::from(want.is_some());
            for branch in [
                format!("(p.sex = '{sex}' AND p.ethnicity = 'ZZ')"),
                format!("(p.ethnicity = 'ZZ' AND p.sex = '{sex}')"),
                format!("(p.sex = '{sex}' AND e.event_date < DATE '1900-01-01')"),
            ] {
                let sql = format!("{q} AND ({range} OR {branch})");
                let got = single(&cx, &sql).await;
                if got != want {
                    differing.push(format!(
                        "{sql} -> {got:?} (without the condition: {want:?})"
                    ));
                }
            }
        }
    }
    assert_eq!(released, ranges.len(), "an answer was suppressed");
    // The same on the readings (`40 + index`), snapped since session 50: each branch that
    // lets in no one answers as the `OR` with the branch alone does.
    for (lo, hi) in [(48, 61), (55, 69)] {
        let range = format!("e.numeric_value BETWEEN {lo} AND {hi}");
        let want = single(&cx, &format!("{q} AND ({range} OR p.sex = 'I')")).await;
        for branch in [
            "(p.sex = 'I' AND p.ethnicity = 'ZZ')",
            "(p.ethnicity = 'ZZ' AND p.sex = 'I')",
        ] {
            let sql = format!("{q} AND ({range} OR {branch})");
            let got = single(&cx, &sql).await;
            if got != want {
                differing.push(format!(
                    "{sql} -> {got:?} (without the condition: {want:?})"
                ));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "a condition ignored inside an OR branch let in persons the branch alone would drop:\n{}",
        differing.join("\n")
    );
}

/// A query with a condition `c` written into it.
type Shape = Box<dyn Fn(&str) -> String>;

#[tokio::test]
async fn an_or_beside_a_condition_it_repeats_lets_in_no_one_through_its_other_branches() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // `practice_code = 'X20001' AND (practice_code = 'X20001' OR c)` is the practice
    // whatever `c` says. Outside the practice, the `AND`'s first condition alone leaves out
    // the persons `c` lets in; when they were few it was ignored for them, and they were let
    // in through `c`, which lets in no one else (session 38's finding: 35 against 30). With
    // `c` a threshold cohort of another practice, the answer said whether its persons exist.
    let persons = |p: &str| format!("(p.sex IS NOT NULL AND p.practice_code = '{p}')");
    let shapes: Vec<Shape> = vec![
        Box::new(|c: &str| {
            format!(
                "SELECT COUNT(*) FROM patients p WHERE p.practice_code = 'X20001' \
                 AND (p.practice_code = 'X20001' OR {c})"
            )
        }),
        Box::new(|c: &str| {
            format!(
                "SELECT COUNT(*) FROM patients p WHERE p.practice_code = 'X20001' \
                 AND ((p.practice_code = 'X20001' AND p.birth_month IS NOT NULL) OR {c})"
            )
        }),
        Box::new(|c: &str| {
            format!(
                "SELECT p.sex, COUNT(*) FROM patients p WHERE p.practice_code = 'X20001' \
                 AND (p.practice_code = 'X20001' OR {c}) GROUP BY p.sex"
            )
        }),
        Box::new(|c: &str| {
            format!(
                "SELECT COUNT(*) FROM {}",
                per_person_events(&format!(
                    " AND p.practice_code = 'X20001' AND (p.practice_code = 'X20001' OR {c})"
                ))
            )
        }),
    ];
    let mut differing = Vec::new();
    for shape in &shapes {
        // Against the same question with a branch that lets in no one.
        let want = rows(&cx, &shape(&persons("Y99999"))).await;
        assert!(!want.is_empty(), "{}", shape(&persons("Y99999")));
        let branches = THRESHOLD_GROUPS
            .iter()
            .filter(|(_, n)| *n < 7)
            .map(|(p, _)| persons(p))
            .chain(["p.sex = 'I'".to_string()]);
        for c in branches {
            let sql = shape(&c);
            let got = rows(&cx, &sql).await;
            if got != want {
                differing.push(format!("{sql} -> {got:?} (letting in no one: {want:?})"));
            }
        }
    }
    // The other way round: a person left out by a condition that leaves out only them is
    // let in though the `OR` beside it passes them only through a branch that lets in no
    // one else, where that `OR` itself leaves out few persons of the cell (the practice's
    // men and the person of sex `I`, indexes 3, 7, 13, 23, each singled out by the date of
    // their event: readings are snapped since session 50). Judged
    // as if the `OR` failed them they are let in all the same; a first fix that kept them
    // out answered differently for each of them (1,630, 1,560, 1,530 against 1,610).
    let q = "SELECT SUM(e.numeric_value) FROM clinical_events e \
             JOIN patients p ON e.patient_id = p.patient_id \
             WHERE e.snomedct_code = '999000001'";
    let never = "DATE '1999-01-01'";
    let branch = |d: &str| format!("{q} AND (p.sex = 'F' OR e.event_date = {d})");
    let want = single(
        &cx,
        &format!("{} AND e.event_date <> {never}", branch(never)),
    )
    .await;
    assert!(want.is_some(), "the sum is released");
    // And where every person the `OR` passes passes two of its branches at once (no branch
    // has a large effect alone; the review's case for judging an `OR` by its pass mask).
    let both = |d: &str| {
        format!(
            "SELECT SUM(e.numeric_value) FROM clinical_events e \
             JOIN patients p ON e.patient_id = p.patient_id \
             WHERE (p.practice_code = 'X20001' OR e.snomedct_code = '999000001') \
             AND e.event_date <> {d}"
        )
    };
    assert_eq!(single(&cx, &both(never)).await, want, "{}", both(never));
    for i in [3, 7, 13, 23] {
        let d = diff_date(i);
        for sql in [
            format!("{} AND e.event_date <> {d}", branch(&d)),
            branch(&d),
            both(&d),
        ] {
            let got = single(&cx, &sql).await;
            if got != want {
                differing.push(format!("{sql} -> {got:?} (of no one: {want:?})"));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "an OR beside a condition it repeats let in the persons of its other branch, or \
         one it passes through such a branch kept out a person:\n{}",
        differing.join("\n")
    );
}

#[tokio::test]
async fn an_or_with_an_and_branch_beside_another_or_is_refused_whatever_its_branches() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // `(practice_code = 'X20001' OR c) AND (sex = 'Q' OR (practice_code = 'X20001' AND
    // death_month IS NULL))` is the practice whatever `c` says. The inner `AND` decides the
    // persons of other practices only where the first `OR` passes them, through `c`: its
    // mask (the practice condition) was then few persons, ignored, and let them in (35
    // against 30 with `c` letting in no one: session 40). Refused, whatever `c` is, so the
    // refusal says nothing either.
    let persons = |p: &str| format!("(p.sex IS NOT NULL AND p.practice_code = '{p}')");
    let inner = "(p.sex = 'Q' OR (p.practice_code = 'X20001' AND p.death_month IS NULL))";
    let shapes: Vec<Shape> = vec![
        Box::new(move |c: &str| {
            format!(
                "SELECT COUNT(*) FROM patients p \
                 WHERE (p.practice_code = 'X20001' OR {c}) AND {inner}"
            )
        }),
        Box::new(move |c: &str| {
            format!(
                "SELECT p.sex, COUNT(*) FROM patients p \
                 WHERE (p.practice_code = 'X20001' OR {c}) AND {inner} GROUP BY p.sex"
            )
        }),
        Box::new(move |c: &str| {
            format!(
                "SELECT SUM(e.numeric_value) FROM clinical_events e \
                 JOIN patients p ON e.patient_id = p.patient_id \
                 WHERE e.snomedct_code = '999000001' \
                 AND (p.practice_code = 'X20001' OR {c}) AND {inner}"
            )
        }),
        // One level further down, and with the `OR`s the other way round.
        Box::new(move |c: &str| {
            format!(
                "SELECT COUNT(*) FROM patients p WHERE p.sex = 'Q' OR \
                 (p.birth_month IS NOT NULL AND (p.practice_code = 'X20001' OR {c}) AND {inner})"
            )
        }),
        Box::new(move |c: &str| {
            format!(
                "SELECT COUNT(*) FROM patients p \
                 WHERE {inner} AND (p.practice_code = 'X20001' OR {c})"
            )
        }),
    ];
    let branches = THRESHOLD_GROUPS
        .iter()
        .filter(|(_, n)| *n < 7)
        .map(|(p, _)| persons(p))
        .chain(["p.sex = 'I'".to_string(), persons("Y99999")]);
    // The form the refusal suggests, distributed into `OR`s of single conditions, in a
    // practice with anchors enough to read the practice by class: the same answer whatever
    // the first `OR`'s branch.
    let distributed = |c: &str| {
        format!(
            "SELECT COUNT(*) FROM patients p WHERE (p.practice_code = 'F81002' OR {c}) \
             AND (p.sex = 'Q' OR p.practice_code = 'F81002') \
             AND (p.sex = 'Q' OR p.death_month IS NULL)"
        )
    };
    refused_and_answered_alike(
        &cx,
        &shapes,
        branches,
        "FS-G3: an OR with an AND branch beside another OR",
        &distributed,
        &persons("Y99999"),
    )
    .await;
    // One `OR` with an `AND` branch, with no other `OR` beside it, is answered.
    let alone =
        format!("SELECT COUNT(*) FROM patients p WHERE p.practice_code = 'X20001' AND {inner}");
    assert!(single(&cx, &alone).await.is_some(), "{alone}");
}

#[tokio::test]
async fn an_or_in_a_cohort_of_patients_is_refused_whatever_its_branches() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // `practice_code = 'F81002' AND patient_id IN (SELECT patient_id FROM patients WHERE
    // practice_code = 'F81002' OR c)` is the practice whatever `c` says; with `c` = `sex =
    // 'I'` it answered 345 against 340 (35 against 30 in X20001): the `OR` was measured as
    // one group with membership, and its branch let in the persons of sex `I` of other
    // practices (session 40). Refused, whatever `c` is.
    let persons = |q: &str, p: &str| format!("({q}.sex IS NOT NULL AND {q}.practice_code = '{p}')");
    let shapes: Vec<Shape> = vec![
        Box::new(|c: &str| {
            format!(
                "SELECT COUNT(*) FROM patients WHERE practice_code = 'F81002' AND patient_id IN \
                 (SELECT q.patient_id FROM patients q WHERE q.practice_code = 'F81002' OR {c})"
            )
        }),
        Box::new(|c: &str| {
            format!(
                "SELECT COUNT(*) FROM patients WHERE practice_code = 'F81002' AND patient_id IN \
                 (SELECT q.patient_id FROM patients q WHERE q.practice_code = 'F81002' OR {c} \
                 GROUP BY q.patient_id)"
            )
        }),
        Box::new(|c: &str| {
            format!(
                "SELECT COUNT(*) FROM patients p2 JOIN (SELECT q.patient_id, COUNT(*) AS n \
                 FROM patients q WHERE q.practice_code = 'F81002' OR {c} GROUP BY q.patient_id) \
                 t ON t.patient_id = p2.patient_id WHERE p2.practice_code = 'F81002'"
            )
        }),
    ];
    // A cohort of rows of events is a person's through their rows, and is answered: the
    // same whatever the branch.
    let events = |c: &str| {
        format!(
            "SELECT COUNT(*) FROM patients p WHERE p.practice_code = 'F81002' AND p.patient_id \
             IN (SELECT e.patient_id FROM clinical_events e JOIN patients q \
             ON q.patient_id = e.patient_id WHERE q.practice_code = 'F81002' OR {c})"
        )
    };
    let branches = THRESHOLD_GROUPS
        .iter()
        .filter(|(_, n)| *n < 7)
        .map(|(p, _)| persons("q", p))
        .chain(["q.sex = 'I'".to_string(), persons("q", "Y99999")]);
    refused_and_answered_alike(
        &cx,
        &shapes,
        branches,
        "FS-G3: an OR of conditions on different columns of patients",
        &events,
        &persons("q", "Y99999"),
    )
    .await;
}

/// For each branch `c` of `branches`: every shape of `shapes` is refused with a message
/// that starts with `refusal`, and `answered(c)` is released, as for `none` (a branch that
/// lets in no one).
async fn refused_and_answered_alike(
    cx: &ProjectContext,
    shapes: &[Shape],
    branches: impl IntoIterator<Item = String>,
    refusal: &str,
    answered: &dyn Fn(&str) -> String,
    none: &str,
) {
    let want = single(cx, &answered(none)).await;
    assert!(want.is_some(), "{}", answered(none));
    let mut differing = Vec::new();
    for c in branches {
        for shape in shapes {
            let sql = shape(&c);
            let got = outcome(cx, &sql).await;
            assert!(got.starts_with(refusal), "{sql}\n  {got}");
        }
        let sql = answered(&c);
        let got = single(cx, &sql).await;
        if got != want {
            differing.push(format!("{sql} -> {got:?} (letting in no one: {want:?})"));
        }
    }
    assert!(differing.is_empty(), "{}", differing.join("\n"));
}

/// The practice of the sets-of-categories tests: its ethnicities `D` … are each held by
/// one person.
const PRACTICE: &str = "F81002";
/// The list those tests add a category to, and the list they negate.
const LISTED: [&str; 3] = ["A", "B", "C"];
/// See [`LISTED`].
const NOT_LISTED: [&str; 4] = ["E", "F", "G", "H"];

/// The persons of [`PRACTICE`]: record key, ethnicity and sex.
async fn categories_of(f: &Fixture, cx: &ProjectContext) -> Vec<(u8, String, String)> {
    unprotected(
        cx,
        &format!(
            "SELECT patient_id, ethnicity, sex FROM patients WHERE practice_code = '{PRACTICE}'"
        ),
    )
    .await
    .into_iter()
    .map(|r| {
        let key = f.record_key(r[0].parse().expect("a patient id"));
        (key, r[1].clone(), r[2].clone())
    })
    .collect()
}

/// The ethnicities of `persons` held by one person who is not an edge anchor, outside
/// [`LISTED`] and [`NOT_LISTED`]: each the target of one attack.
fn single_person_categories(persons: &[(u8, String, String)]) -> Vec<String> {
    let anchors = edge_anchor_keys();
    let mut out: Vec<String> = persons
        .iter()
        .filter(|(k, c, _)| {
            !anchors.contains(k) && persons.iter().filter(|(_, x, _)| x == c).count() == 1
        })
        .map(|(_, c, _)| c.clone())
        .filter(|c| !LISTED.contains(&c.as_str()) && !NOT_LISTED.contains(&c.as_str()))
        .collect();
    out.sort_unstable();
    out
}

/// `l` as the items of an SQL list of strings.
fn quoted(l: &[&str]) -> String {
    l.iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets of categories (DESIGN.md rule 7, "Sets of categories" in the rewrite design): two
/// lists of one category that differ by a value only the target holds in the cell
/// (`ethnicity IN ('A', 'B', 'C')` and `… 'D')`) are two large conditions whose answers
/// differed by the target (235 and 240 in F81002). A condition on a per-person category now
/// reads a person's value only where their class (the persons of the cell with that value,
/// among those the condition decides) holds an edge anchor; elsewhere it is false, whatever
/// the list says. So a list changes an answer only by a class with an anchor, never by a
/// person who is not one. The same in a cohort subquery (`patient_id IN (SELECT patient_id
/// FROM patients WHERE ethnicity IN (…))`, 235 and 240 too before session 36), whose
/// persons' values are read in the answer's cells, alone or beside a condition of the
/// answer's on the same category.
#[tokio::test]
async fn a_list_of_categories_that_adds_one_person_changes_an_answer_only_at_an_anchor() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    let anchors = edge_anchor_keys();
    let persons = categories_of(f, &cx).await;
    let keys: Vec<u8> = persons.iter().map(|(k, _, _)| *k).collect();
    let class: Vec<&str> = persons.iter().map(|(_, c, _)| c.as_str()).collect();
    let anchored = |c: &str| {
        class
            .iter()
            .zip(&keys)
            .any(|(x, k)| *x == c && anchors.contains(k))
    };
    // What the policy layer answers for a condition that keeps a class when `listed` says so:
    // only the classes with an anchor are read.
    let model = |listed: &dyn Fn(&str) -> bool| {
        let kept: Vec<bool> = class.iter().map(|c| anchored(c) && listed(c)).collect();
        count_kept(&keys, &kept, &p)
    };
    let (base, negated) = (LISTED, NOT_LISTED);
    let cohort = |not: &str, l: &[&str], and: &str| {
        format!(
            "patient_id {not}IN (SELECT patient_id FROM patients \
             WHERE ethnicity IN ({}){and})",
            quoted(l)
        )
    };
    let count = format!("SELECT COUNT(*) FROM patients WHERE practice_code = '{PRACTICE}' AND ");
    let (mut moved, mut wrong, mut exposed) = (Vec::new(), Vec::new(), 0);
    let single_persons = single_person_categories(&persons);
    for x in &single_persons {
        let x = x.as_str();
        let with_x: Vec<&str> = base.iter().copied().chain([x]).collect();
        let negated_x: Vec<&str> = negated.iter().copied().chain([x]).collect();
        let pairs: Vec<(String, String, Vec<&str>, bool)> = vec![
            (
                format!("{count}ethnicity IN ({})", quoted(&base)),
                format!("{count}ethnicity IN ({})", quoted(&with_x)),
                base.to_vec(),
                false,
            ),
            (
                format!(
                    "{count}({})",
                    with_x
                        .iter()
                        .map(|c| format!("ethnicity = '{c}'"))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                ),
                format!("{count}ethnicity IN ({})", quoted(&base)),
                base.to_vec(),
                false,
            ),
            (
                format!("{count}ethnicity NOT IN ({})", quoted(&negated)),
                format!("{count}ethnicity NOT IN ({})", quoted(&negated_x)),
                negated.to_vec(),
                true,
            ),
            // The same lists in a cohort subquery: read in the answer's cells.
            (
                format!("{count}{}", cohort("", &base, "")),
                format!("{count}{}", cohort("", &with_x, "")),
                base.to_vec(),
                false,
            ),
            (
                format!("{count}{}", cohort("NOT ", &negated, "")),
                format!("{count}{}", cohort("NOT ", &negated_x, "")),
                negated.to_vec(),
                true,
            ),
            (
                format!(
                    "{count}{}",
                    cohort("", &base, " AND birth_month IS NOT NULL")
                ),
                format!(
                    "{count}{}",
                    cohort("", &with_x, " AND birth_month IS NOT NULL")
                ),
                base.to_vec(),
                false,
            ),
            // Beside a condition of the answer's on the same category.
            (
                format!("{count}ethnicity <> 'ZZ' AND {}", cohort("", &base, "")),
                format!("{count}ethnicity <> 'ZZ' AND {}", cohort("", &with_x, "")),
                base.to_vec(),
                false,
            ),
        ];
        for (a, b, list, not) in pairs {
            let (got_a, got_b) = (single(&cx, &a).await, single(&cx, &b).await);
            let (raw_a, raw_b) = (unprotected(&cx, &a).await, unprotected(&cx, &b).await);
            if raw_a != raw_b {
                exposed += 1;
            }
            if got_a != got_b {
                moved.push(format!("{a} -> {got_a:?}\n  {b} -> {got_b:?}"));
            }
            let want = model(&|c| list.contains(&c) != not);
            if got_a != want {
                wrong.push(format!("{a} -> {got_a:?} (want {want:?})"));
            }
        }
        // Grouped by a key that is a list of the category (`ethnicity IN ('A', 'B')`).
        let grouped = |l: &[&str]| {
            format!(
                "SELECT ethnicity IN ('A', 'B') AS ab, COUNT(*) FROM patients \
                 WHERE practice_code = '{PRACTICE}' AND ethnicity IN ({}) GROUP BY 1",
                quoted(l)
            )
        };
        // A key that is a list of categories moves a person between two cells as a
        // condition moves them in or out: refused since session 38.
        for sql in [grouped(&base), grouped(&with_x)] {
            assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
        }
    }
    assert!(
        single_persons.len() >= 2,
        "the fixture's practice has too few categories held by one person who is not an \
         anchor: {single_persons:?}"
    );
    assert_eq!(
        exposed,
        7 * single_persons.len(),
        "the unprotected answers do not show the target in every pair"
    );
    // A cohort nested in another carries no values to the answer's cells: a list on a
    // category there is refused rather than left as written.
    let nested = format!(
        "{count}patient_id IN (SELECT patient_id FROM patients WHERE {})",
        cohort("", &base, "")
    );
    assert_eq!(refused(&cx, &nested).await, Rule::LowEffect, "{nested}");
    assert!(
        moved.is_empty(),
        "listing the category of one person who is not an anchor changed the answer:\n{}",
        moved.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "answers not those of the classes with an anchor:\n{}",
        wrong.join("\n")
    );
}

/// Sets of categories beside another grouping key. Grouped by sex, the pair of lists that
/// differ by the target's category answered 110 and 115 for the women of F81002: the lists
/// were left as written wherever a key split the classes. A class is now read in each
/// grouping set's cells: in the target's cell his class has no anchor, so listing it
/// changes nothing, and each cell is the answer of the classes with an anchor in it (the
/// model: the practice, itself a class, has an anchor in each sex's cell, and neither sex
/// is all but a few of the practice, where the key's own measurement would give the
/// practice's answer). With two keys (four grouping sets), the same pairs.
#[tokio::test]
async fn a_list_of_categories_beside_another_grouping_key_changes_a_cell_only_at_an_anchor() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    let anchors = edge_anchor_keys();
    let persons = categories_of(f, &cx).await;
    let mut sexes: Vec<&str> = persons.iter().map(|(_, _, s)| s.as_str()).collect();
    sexes.sort_unstable();
    sexes.dedup();
    // Per sex, the released count of the persons whose class holds an anchor of that sex
    // and that `listed` keeps.
    let model = |listed: &dyn Fn(&str) -> bool| -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for sex in &sexes {
            let cell: Vec<&(u8, String, String)> =
                persons.iter().filter(|(_, _, s)| s == sex).collect();
            let anchored = |c: &str| cell.iter().any(|(k, x, _)| x == c && anchors.contains(k));
            let keys: Vec<u8> = cell.iter().map(|(k, _, _)| *k).collect();
            let kept: Vec<bool> = cell
                .iter()
                .map(|(_, c, _)| anchored(c) && listed(c))
                .collect();
            if let Some(v) = count_kept(&keys, &kept, &p) {
                out.push(vec![sex.to_string(), v]);
            }
        }
        out.sort();
        out
    };
    let grouped = |keys: &str, not: &str, l: &[&str]| {
        let list = format!("ethnicity {not}IN ({})", quoted(l));
        // The list in a cohort subquery, read in the answer's cells as its own.
        let list = match keys.strip_prefix("cohort: ") {
            Some(_) => format!(
                "patient_id {not}IN (SELECT patient_id FROM patients WHERE ethnicity IN ({}))",
                quoted(l)
            ),
            None => list,
        };
        let keys = keys.trim_start_matches("cohort: ");
        format!(
            "SELECT {keys}, COUNT(*) FROM patients WHERE practice_code = '{PRACTICE}' \
             AND {list} GROUP BY {keys}"
        )
    };
    let (mut moved, mut wrong, mut exposed) = (Vec::new(), Vec::new(), 0);
    let single_persons = single_person_categories(&persons);
    for x in &single_persons {
        for (list, not) in [(&LISTED[..], ""), (&NOT_LISTED[..], "NOT ")] {
            let with_x: Vec<&str> = list.iter().copied().chain([x.as_str()]).collect();
            for keys in ["sex", "sex, imd_decile", "cohort: sex"] {
                let (a, b) = (grouped(keys, not, list), grouped(keys, not, &with_x));
                let (got_a, got_b) = (sorted_rows(&cx, &a).await, sorted_rows(&cx, &b).await);
                let (mut raw_a, mut raw_b) =
                    (unprotected(&cx, &a).await, unprotected(&cx, &b).await);
                raw_a.sort();
                raw_b.sort();
                if raw_a != raw_b {
                    exposed += 1;
                }
                if got_a != got_b || got_a.is_empty() {
                    moved.push(format!("{a} -> {got_a:?}\n  {b} -> {got_b:?}"));
                }
                if keys.ends_with("sex") {
                    let want = model(&|c| list.contains(&c) == not.is_empty());
                    if got_a != want {
                        wrong.push(format!("{a} -> {got_a:?} (want {want:?})"));
                    }
                }
            }
        }
    }
    assert!(
        single_persons.len() >= 2,
        "too few categories held by one person who is not an anchor: {single_persons:?}"
    );
    assert_eq!(
        exposed,
        6 * single_persons.len(),
        "the unprotected answers do not show the target in every pair"
    );
    assert!(
        moved.is_empty(),
        "beside another key, listing the category of one person who is not an anchor \
         changed a cell:\n{}",
        moved.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "cells not those of the classes with an anchor in them:\n{}",
        wrong.join("\n")
    );
}

/// Sets of categories beside an `OR`. An `OR` of other conditions that leaves out no one
/// (`AND (sex <> 'Q' OR birth_month IS NULL)`) brought the lists back as written (F81002's
/// pair: 235 / 240): a class was read only where no `OR` could drop its anchors, and
/// beside an `OR` the anchor of the target's class can be let in only by a branch the
/// measurement drops while the target passes another. The parts are now read, beside one
/// `OR`, with the anchors whose mask of that `OR` enough anchors share that it is never
/// dropped (`LowEffect::or_anchors`' robust anchors), per grouping set where a key splits the
/// classes. The model: a person is kept when listed and their ethnicity has an anchor in
/// the cell (every person of the practice passes the `OR` through its first branch alone,
/// a mask shared by far more anchors than the highest threshold).
#[tokio::test]
async fn a_list_of_categories_beside_an_or_changes_an_answer_only_at_an_anchor() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    let anchors = edge_anchor_keys();
    let persons = categories_of(f, &cx).await;
    // (The `OR`s' second branches hold for no one of the practice: one mask for all.)
    let second = unprotected(
        &cx,
        &format!(
            "SELECT COUNT(*) FROM patients WHERE practice_code = '{PRACTICE}' \
             AND (birth_month IS NULL OR lsoa IS NULL OR sex = 'Q')"
        ),
    )
    .await;
    assert_eq!(
        second,
        vec![vec!["0".to_string()]],
        "a second branch lets someone in"
    );
    let kept_in = |cell: &[&(u8, String, String)], listed: &dyn Fn(&str) -> bool| {
        let anchored = |c: &str| cell.iter().any(|(k, x, _)| x == c && anchors.contains(k));
        let keys: Vec<u8> = cell.iter().map(|(k, _, _)| *k).collect();
        let kept: Vec<bool> = cell
            .iter()
            .map(|(_, c, _)| listed(c) && anchored(c))
            .collect();
        count_kept(&keys, &kept, &p)
    };
    let everyone: Vec<&(u8, String, String)> = persons.iter().collect();
    let by_sex = |listed: &dyn Fn(&str) -> bool| -> Vec<Vec<String>> {
        let mut sexes: Vec<&str> = persons.iter().map(|(_, _, s)| s.as_str()).collect();
        sexes.sort_unstable();
        sexes.dedup();
        let mut out = Vec::new();
        for sex in sexes {
            let cell: Vec<&(u8, String, String)> =
                persons.iter().filter(|(_, _, s)| s == sex).collect();
            if let Some(v) = kept_in(&cell, listed) {
                out.push(vec![sex.to_string(), v]);
            }
        }
        out.sort();
        out
    };
    let count = format!("SELECT COUNT(*) FROM patients WHERE practice_code = '{PRACTICE}' AND ");
    let (mut moved, mut wrong, mut exposed) = (Vec::new(), Vec::new(), 0);
    let single_persons = single_person_categories(&persons);
    for x in &single_persons {
        for (list, not) in [(&LISTED[..], ""), (&NOT_LISTED[..], "NOT ")] {
            let with_x: Vec<&str> = list.iter().copied().chain([x.as_str()]).collect();
            let listed = |c: &str| list.contains(&c) == not.is_empty();
            let forms = |l: &[&str]| {
                let list = format!("ethnicity {not}IN ({})", quoted(l));
                let or = "(sex <> 'Q' OR birth_month IS NULL)";
                [
                    format!("{count}{list} AND {or}"),
                    format!("{count}{or} AND {list}"),
                    format!("{count}{list} AND (sex = 'F' OR lsoa IS NULL)"),
                    format!(
                        "SELECT sex, COUNT(*) FROM patients WHERE practice_code = \
                         '{PRACTICE}' AND {list} AND {or} GROUP BY sex"
                    ),
                ]
            };
            for (a, b) in forms(list).into_iter().zip(forms(&with_x)) {
                let (got_a, got_b) = (sorted_rows(&cx, &a).await, sorted_rows(&cx, &b).await);
                let (mut raw_a, mut raw_b) =
                    (unprotected(&cx, &a).await, unprotected(&cx, &b).await);
                raw_a.sort();
                raw_b.sort();
                if raw_a != raw_b {
                    exposed += 1;
                }
                if got_a != got_b || got_a.is_empty() {
                    moved.push(format!("{a} -> {got_a:?}\n  {b} -> {got_b:?}"));
                }
                let want = if a.starts_with("SELECT sex") {
                    by_sex(&listed)
                } else if a.contains("sex = 'F'") {
                    let women: Vec<&(u8, String, String)> =
                        persons.iter().filter(|(_, _, s)| s == "F").collect();
                    // (The women's cell: the men fail the `OR`, a large effect.)
                    let anchored =
                        |c: &str| women.iter().any(|(k, x, _)| x == c && anchors.contains(k));
                    let keys: Vec<u8> = everyone.iter().map(|(k, _, _)| *k).collect();
                    let kept: Vec<bool> = everyone
                        .iter()
                        .map(|(_, c, s)| s == "F" && listed(c) && anchored(c))
                        .collect();
                    count_kept(&keys, &kept, &p)
                        .map(|v| vec![vec![v]])
                        .unwrap_or_default()
                } else {
                    kept_in(&everyone, &listed)
                        .map(|v| vec![vec![v]])
                        .unwrap_or_default()
                };
                if got_a != want {
                    wrong.push(format!("{a} -> {got_a:?} (want {want:?})"));
                }
            }
        }
    }
    assert!(
        single_persons.len() >= 2,
        "too few categories held by one person who is not an anchor: {single_persons:?}"
    );
    assert_eq!(
        exposed,
        8 * single_persons.len(),
        "the unprotected answers do not show the target in every pair"
    );
    assert!(
        moved.is_empty(),
        "beside an OR, listing the category of one person who is not an anchor changed \
         the answer:\n{}",
        moved.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "answers not those of the classes with an anchor:\n{}",
        wrong.join("\n")
    );
}

/// Sets of categories where they cannot be read by class (session 38). Until then a list
/// of categories was left as written wherever its class reading was not built, and each of
/// these shapes answered the F81002 pair (`ethnicity IN ('A', 'B', 'C')` against `… 'D')`,
/// `D` one person) 235 and 240, or moved the target between two cells: beside two `OR`s,
/// beside an `OR` with an `AND` branch, in an `OR` with a range edge, beside an `OR` next to
/// one, in an `OR` inside a cohort subquery, a cohort's `NOT IN` over two categories, inside
/// a per-person aggregation grouped by another key, through a `CASE` (taken apart, its
/// condition is read twice), a `CASE` computed in a derived table and filtered on, and as a
/// grouping key (`CASE WHEN ethnicity IN (…)`, also in a derived table or an inner
/// aggregation's keys). Each is now refused (FS-7), with both lists. One equality to one
/// value is no list (it has no twin that differs by one person) and is still answered as
/// written there; so are keys computed from a category with no values of the analyst's
/// (`lower(practice_code)`) and one equality as a key.
#[tokio::test]
async fn a_list_of_categories_where_it_cannot_be_read_by_class_is_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let persons = categories_of(f, &cx).await;
    let targets = single_person_categories(&persons);
    assert!(
        !targets.is_empty(),
        "no category held by one person who is not an anchor"
    );
    let count = format!("SELECT COUNT(*) FROM patients WHERE practice_code = '{PRACTICE}' AND ");
    let events = format!(
        "SELECT COUNT(*) FROM (SELECT p.patient_id, p.sex, COUNT(*) AS n FROM patients p \
         JOIN clinical_events e ON e.patient_id = p.patient_id \
         WHERE p.practice_code = '{PRACTICE}' AND "
    );
    let case = "CASE WHEN ethnicity IN (L) THEN 'in' ELSE 'out' END";
    let shapes = [
        format!(
            "{count}ethnicity IN (L) AND (sex <> 'Q' OR birth_month IS NULL) \
             AND (lsoa IS NOT NULL OR imd_decile IS NULL)"
        ),
        format!(
            "{count}ethnicity IN (L) AND (sex <> 'Q' OR (birth_month IS NULL AND lsoa IS NULL))"
        ),
        format!("{count}(ethnicity IN (L) OR birth_month < DATE '1900-01-01')"),
        format!(
            "{count}ethnicity IN (L) AND (sex <> 'Q' OR lsoa IS NULL) \
             AND birth_month > DATE '1900-01-01'"
        ),
        format!(
            "{count}patient_id IN (SELECT patient_id FROM patients \
             WHERE ethnicity IN (L) OR sex = 'Q')"
        ),
        format!(
            "{count}patient_id NOT IN (SELECT patient_id FROM patients \
             WHERE ethnicity NOT IN (L) AND sex <> 'Q')"
        ),
        format!("{events}p.ethnicity IN (L) GROUP BY p.patient_id, p.sex) t GROUP BY t.sex")
            .replace("SELECT COUNT(*) FROM (", "SELECT t.sex, COUNT(*) FROM ("),
        format!("{count}{case} = 'in'"),
        format!(
            "WITH t AS (SELECT practice_code, {case} AS g FROM patients) \
             SELECT COUNT(*) FROM t WHERE practice_code = '{PRACTICE}' AND g = 'in'"
        ),
        format!(
            "SELECT {case} AS g, COUNT(*) FROM patients \
             WHERE practice_code = '{PRACTICE}' GROUP BY 1"
        ),
        format!(
            "WITH t AS (SELECT practice_code, {case} AS g FROM patients) \
             SELECT g, COUNT(*) FROM t WHERE practice_code = '{PRACTICE}' GROUP BY g"
        ),
        format!(
            "SELECT g, COUNT(*) FROM (SELECT e.patient_id, {} AS g, COUNT(*) AS n \
             FROM clinical_events e JOIN patients p ON p.patient_id = e.patient_id \
             WHERE p.practice_code = '{PRACTICE}' GROUP BY e.patient_id, g) t GROUP BY g",
            case.replace("ethnicity", "p.ethnicity")
        ),
        // Found by the review before landing: a category read with another column in one
        // condition, a list inside a per-person aggregate's value, a list as a value
        // computed in a derived table that is not a string, a list of the query's own
        // in a subquery, a cohort's `OR` of equalities, values hidden in constant columns.
        format!("{count}COALESCE(ethnicity, sex) IN (L)"),
        format!("{count}(COALESCE(ethnicity, lsoa) IN (L) OR birth_month < DATE '1900-01-01')"),
        format!(
            "SELECT COUNT(*) FROM (SELECT patient_id, MAX({case}) AS g FROM patients \
             WHERE practice_code = '{PRACTICE}' GROUP BY patient_id) t WHERE t.g = 'in'"
        ),
        format!(
            "SELECT t.g, COUNT(*) FROM (SELECT patient_id, MAX({case}) AS g FROM patients \
             WHERE practice_code = '{PRACTICE}' GROUP BY patient_id) t GROUP BY t.g"
        ),
        format!(
            "WITH t AS (SELECT patient_id, ethnicity IN (L) AS b FROM patients) \
             SELECT COUNT(*) FROM t JOIN patients p ON p.patient_id = t.patient_id \
             WHERE p.practice_code = '{PRACTICE}' AND (t.b OR p.sex = 'Q')"
        ),
        format!(
            "SELECT COUNT(*) FROM patients p WHERE p.practice_code = '{PRACTICE}' \
             AND p.ethnicity IN (SELECT column1 FROM (VALUES (L)))"
        ),
        format!(
            "{count}patient_id IN (SELECT patient_id FROM patients \
             WHERE ethnicity = (O) OR sex = 'Q')"
        ),
        // … and by the second review: a list of the query's own beside a public table
        // in a subquery (any subquery but a public table's key as it is).
        format!(
            "SELECT COUNT(*) FROM patients p WHERE p.practice_code = '{PRACTICE}' \
             AND p.ethnicity IN (SELECT v.column1 FROM (VALUES (L)) v \
             CROSS JOIN practices k WHERE k.practice_code = '{PRACTICE}')"
        ),
        format!(
            "SELECT p.ethnicity IN (SELECT 1) AS g, COUNT(*) FROM patients p \
             CROSS JOIN (SELECT (K)) k WHERE p.practice_code = '{PRACTICE}' GROUP BY 1"
        )
        .replace("IN (SELECT 1)", "IN (k.c0, k.c1, k.c2, k.c3)"),
    ];
    let mut exposed = vec![false; shapes.len()];
    for x in &targets {
        let with_x: Vec<&str> = LISTED.iter().copied().chain([x.as_str()]).collect();
        for (k, shape) in shapes.iter().enumerate() {
            // `(L)` the list; `(V)` as rows of `VALUES`; `(O)` as an `OR` of equalities;
            // `(K)` as four constant columns (the last item repeated in the shorter list).
            let fill = |l: &[&str]| {
                let four: Vec<&str> = (0..4).map(|i| l[i.min(l.len() - 1)]).collect();
                shape
                    .replace(
                        "(VALUES (L))",
                        &format!(
                            "(VALUES {})",
                            l.iter()
                                .map(|c| format!("('{c}')"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .replace("(L)", &format!("({})", quoted(l)))
                    .replace(
                        "(O)",
                        &l.iter()
                            .map(|c| format!("'{c}'"))
                            .collect::<Vec<_>>()
                            .join(" OR ethnicity = "),
                    )
                    .replace(
                        "(K)",
                        &four
                            .iter()
                            .enumerate()
                            .map(|(i, c)| format!("'{c}' AS c{i}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
            };
            let (a, b) = (fill(&LISTED), fill(&with_x));
            let (mut raw_a, mut raw_b) = (unprotected(&cx, &a).await, unprotected(&cx, &b).await);
            raw_a.sort();
            raw_b.sort();
            exposed[k] |= raw_a != raw_b;
            for sql in [a, b] {
                assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
            }
        }
    }
    // Each shape, unprotected, shows the target.
    for (shape, seen) in shapes.iter().zip(exposed) {
        assert!(seen, "the unprotected answers never differ: {shape}");
    }
    // A join to a public subquery that filters on a column it does not return: its list
    // was never measured (the second review: 20 / 25 for a practice of one person).
    let filtered = "SELECT COUNT(*) FROM patients p JOIN (SELECT practice_code FROM practices \
         WHERE practice_name IN ('Planted Practice Y10019', 'Planted Practice Y10013')) s \
         ON s.practice_code = p.practice_code";
    assert_eq!(refused(&cx, filtered).await, Rule::LowEffect, "{filtered}");
    // A negation of one category beside an edge in one `OR` keeps, as written, the small
    // classes that the same condition read by class leaves out: refused too.
    let x0 = &targets[0];
    let negation = format!("{count}(birth_month < DATE '1900-01-01' OR sex <> 'M')");
    assert_eq!(refused(&cx, &negation).await, Rule::LowEffect, "{negation}");
    // A test of NULL of an expression is no test of NULL: read by class (`D` has no
    // anchor), not measured as one.
    let strpos = |l: &str| format!("{count}nullif(strpos('{l}', ethnicity), 0) IS NOT NULL");
    let (a, b) = (
        strpos(&LISTED.concat()),
        strpos(&format!("{}{x0}", LISTED.concat())),
    );
    assert_ne!(
        unprotected(&cx, &a).await,
        unprotected(&cx, &b).await,
        "{a}\n{b}"
    );
    assert_eq!(single(&cx, &a).await, single(&cx, &b).await, "{a}\n{b}");
    // Still answered: a list in an `OR` with a condition on rows (read by class), one
    // equality where a list is refused, and keys with no list of the analyst's.
    let x = &targets[0];
    let pair = |l: &str| {
        format!(
            "SELECT COUNT(DISTINCT e.patient_id) FROM clinical_events e \
             JOIN patients p ON e.patient_id = p.patient_id \
             WHERE p.practice_code = '{PRACTICE}' \
             AND (p.ethnicity IN ({l}) OR e.snomedct_code = '-')"
        )
    };
    let with_x: Vec<&str> = LISTED.iter().copied().chain([x.as_str()]).collect();
    let (a, b) = (pair(&quoted(&LISTED)), pair(&quoted(&with_x)));
    let got = single(&cx, &a).await;
    assert!(got.is_some(), "{a}");
    assert_eq!(got, single(&cx, &b).await, "{a}\n{b}");
    // Through a `SELECT DISTINCT` derived table (the second review: its columns were not
    // followed to `patients`, so the list was measured as any condition, 235 / 240).
    let distinct = |l: &str| {
        format!(
            "SELECT COUNT(*) FROM (SELECT DISTINCT patient_id, ethnicity, practice_code \
             FROM patients) t WHERE t.practice_code = '{PRACTICE}' AND t.ethnicity IN ({l})"
        )
    };
    let (a, b) = (distinct(&quoted(&LISTED)), distinct(&quoted(&with_x)));
    assert_ne!(
        unprotected(&cx, &a).await,
        unprotected(&cx, &b).await,
        "{a}\n{b}"
    );
    let got = single(&cx, &a).await;
    assert!(got.is_some(), "{a}");
    assert_eq!(got, single(&cx, &b).await, "{a}\n{b}");
    for sql in [
        format!(
            "{count}(death_month IS NULL OR birth_month IS NULL) \
             AND (lsoa IS NOT NULL OR imd_decile IS NULL)"
        ),
        format!("{count}(birth_month > DATE '1900-01-01' OR sex = 'F')"),
        format!(
            "SELECT lower(practice_code) AS pc, COUNT(*) FROM patients \
             WHERE practice_code = '{PRACTICE}' GROUP BY 1"
        ),
        format!(
            "SELECT CASE WHEN sex = 'F' THEN 'women' ELSE 'others' END AS g, COUNT(*) \
             FROM patients WHERE practice_code = '{PRACTICE}' GROUP BY 1"
        ),
        format!(
            "SELECT CASE WHEN ethnicity IS NULL THEN 'unknown' ELSE 'known' END AS g, \
             COUNT(*) FROM patients WHERE practice_code = '{PRACTICE}' GROUP BY 1"
        ),
    ] {
        assert!(!rows(&cx, &sql).await.is_empty(), "{sql}");
    }
}

/// A code list that adds a code only one person has (`999000004`: one person, 100 events)
/// differs from the list without it by that person, when they have none of the list's
/// other codes. Conditions on one column were measured as one group, so the two lists were
/// two large conditions and their answers differed by the person: 970 against 965 with
/// `60621009`, 535 against 530 with `266919005` (session 41). Lists of several values of a
/// category of rows are now read by class as per-person categories are (a code whose rows
/// in the cell hold no anchor that the list decides is read as not listed), however the
/// list is written (`IN`, equalities joined by `OR`, `NOT IN`, `<>` joined by `AND`).
#[tokio::test]
async fn a_code_list_that_adds_one_persons_code_does_not_change_an_answer() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let rare = "'999000004'";
    let persons =
        |list: &str| format!("SELECT COUNT(DISTINCT patient_id) FROM clinical_events WHERE {list}");
    let mut pairs = Vec::new();
    for common in ["'60621009'", "'266919005'"] {
        pairs.push((
            persons(&format!("snomedct_code IN ({common}, '84114007')")),
            persons(&format!("snomedct_code IN ({common}, '84114007', {rare})")),
        ));
        pairs.push((
            persons(&format!("snomedct_code = {common}")),
            persons(&format!(
                "snomedct_code = {common} OR snomedct_code = {rare}"
            )),
        ));
        pairs.push((
            persons(&format!("snomedct_code NOT IN ({common}, '54150009')")),
            persons(&format!(
                "snomedct_code NOT IN ({common}, '54150009', {rare})"
            )),
        ));
        // Other spellings of a list (found by the session-41 review): read by class too, as
        // any condition on the code alone but one equality or a test of NULL.
        pairs.push((
            persons(&format!(
                "regexp_like(snomedct_code, '^({}|84114007)$')",
                common.trim_matches('\'')
            )),
            persons(&format!(
                "regexp_like(snomedct_code, '^({}|84114007|999000004)$')",
                common.trim_matches('\'')
            )),
        ));
        pairs.push((
            persons(&format!(
                "(snomedct_code IN ({common}, '84114007')) IS NOT FALSE"
            )),
            persons(&format!(
                "(snomedct_code IN ({common}, '84114007', {rare})) IS NOT FALSE"
            )),
        ));
        pairs.push((
            format!(
                "SELECT p.sex, COUNT(DISTINCT e.patient_id) FROM clinical_events e \
                 JOIN patients p ON p.patient_id = e.patient_id \
                 WHERE e.snomedct_code IN ({common}, '84114007') GROUP BY 1"
            ),
            format!(
                "SELECT p.sex, COUNT(DISTINCT e.patient_id) FROM clinical_events e \
                 JOIN patients p ON p.patient_id = e.patient_id \
                 WHERE e.snomedct_code IN ({common}, '84114007', {rare}) GROUP BY 1"
            ),
        ));
    }
    // Integer values of rows likewise (session 42: `startage IN (40, 41)` against the same
    // with 98, an age only one person was admitted at, answered 20 and 25).
    let admitted =
        |list: &str| format!("SELECT COUNT(DISTINCT patient_id) FROM hes_apc WHERE {list}");
    pairs.push((
        admitted("startage IN (40, 41)"),
        admitted("startage IN (40, 41, 98)"),
    ));
    pairs.push((
        admitted("startage = 40 OR startage = 41"),
        admitted("startage = 40 OR startage = 41 OR startage = 98"),
    ));
    // Other spellings the session-42 review found: a function of the column compared with
    // a value, equalities through casts or functions, a comparison of a list, a pattern
    // that is a list.
    pairs.push((
        admitted("(startage - 40) * (startage - 41) = 0"),
        admitted("(startage - 40) * (startage - 41) * (startage - 98) = 0"),
    ));
    pairs.push((
        admitted("CAST(startage AS BIGINT) = 40 OR CAST(startage AS BIGINT) = 41"),
        admitted(
            "CAST(startage AS BIGINT) = 40 OR CAST(startage AS BIGINT) = 41 \
             OR CAST(startage AS BIGINT) = 98",
        ),
    ));
    pairs.push((
        admitted("(startage IN (40, 41)) >= true"),
        admitted("(startage IN (40, 41, 98)) >= true"),
    ));
    pairs.push((
        persons("lower(snomedct_code) = '60621009' OR lower(snomedct_code) = '84114007'"),
        persons(&format!(
            "lower(snomedct_code) = '60621009' OR lower(snomedct_code) = '84114007' \
             OR lower(snomedct_code) = {rare}"
        )),
    ));
    pairs.push((
        persons("snomedct_code SIMILAR TO '(60621009|84114007)'"),
        persons("snomedct_code SIMILAR TO '(60621009|84114007|999000004)'"),
    ));
    // … and by the second review: two names of one stored column.
    let named = |list: &str| {
        format!(
            "SELECT COUNT(DISTINCT patient_id) FROM (SELECT patient_id, startage AS s1, \
             startage AS s2 FROM hes_apc) t WHERE {list}"
        )
    };
    // (Of a code; of an age, refused since session 43: snapped one name at a time, two
    // names could be two rows of a self-join.)
    let coded = |list: &str| {
        format!(
            "SELECT COUNT(DISTINCT patient_id) FROM (SELECT patient_id, snomedct_code AS c1, \
             snomedct_code AS c2 FROM clinical_events) t WHERE {list}"
        )
    };
    pairs.push((
        coded("c1 = '60621009' OR c2 = '84114007'"),
        coded("c1 = '60621009' OR c2 = '84114007' OR c2 = '999000004'"),
    ));
    let aged = named("s1 = 40 OR s2 = 41 OR s2 = 98");
    assert_eq!(refused(&cx, &aged).await, Rule::LowEffect, "{aged}");
    let mut differs = 0;
    for (without, with) in &pairs {
        // The pair differs by the person in truth (or the test could not fail).
        let truth = |sql: &str| {
            let sql = sql.to_string();
            let cx = &cx;
            async move {
                let mut r = unprotected(cx, &sql).await;
                r.sort();
                r
            }
        };
        if truth(without).await != truth(with).await {
            differs += 1;
        }
        assert_eq!(
            sorted_rows(&cx, without).await,
            sorted_rows(&cx, with).await,
            "{without}\n{with}"
        );
    }
    assert_eq!(
        differs,
        pairs.len(),
        "each pair differs by the person in truth"
    );
    // Inside a cohort subquery the list is not read by class (a person's rows hold many
    // codes, so no one class can be carried to the answer's cells): refused.
    let cohort = format!(
        "SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM \
         clinical_events WHERE snomedct_code IN ('266919005', {rare}))"
    );
    assert_eq!(refused(&cx, &cohort).await, Rule::LowEffect, "{cohort}");
    // Nor is a list written as a subquery of constants (session 42: 965 and 970 with and
    // without the rare code, read as one condition): refused, with or without the code.
    let values = |codes: &str| {
        codes
            .split(", ")
            .map(|c| format!("({c})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for codes in [
        "'60621009', '84114007'",
        &format!("'60621009', '84114007', {rare}"),
    ] {
        for sql in [
            persons(&format!(
                "snomedct_code IN (SELECT column1 FROM (VALUES {}))",
                values(codes)
            )),
            persons(&format!(
                "snomedct_code NOT IN (SELECT column1 FROM (VALUES {}))",
                values(codes)
            )),
            format!(
                "WITH v AS (SELECT column1 AS c FROM (VALUES {})) SELECT COUNT(*) FROM \
                 patients WHERE patient_id IN (SELECT patient_id FROM clinical_events \
                 WHERE snomedct_code IN (SELECT c FROM v))",
                values(codes)
            ),
            persons(&format!(
                "snomedct_code = ANY (SELECT column1 FROM (VALUES {}))",
                values(codes)
            )),
        ] {
            assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
        }
    }
    // As a grouping key, or a per-person flag filtered on, a list is not read by class: the
    // key moved the person between two cells (965 and 970), so it is refused with both
    // lists; one equality as a key and a key with no list are answered.
    for list in [
        "'60621009', '84114007'",
        &format!("'60621009', '84114007', {rare}"),
    ] {
        for sql in [
            format!(
                "SELECT CASE WHEN snomedct_code IN ({list}) THEN 'y' ELSE 'n' END AS k, \
                 COUNT(DISTINCT patient_id) FROM clinical_events GROUP BY 1"
            ),
            format!(
                "SELECT COUNT(*) FROM (SELECT patient_id, MAX(CASE WHEN snomedct_code IN \
                 ({list}) THEN 1 ELSE 0 END) AS f FROM clinical_events GROUP BY patient_id) t \
                 WHERE f = 1"
            ),
        ] {
            assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
        }
    }
    // A list of rows' values read with another column in one condition is no class:
    // refused (session-42 review).
    for sql in [
        admitted("COALESCE(startage, epiorder) IN (40, 41)"),
        admitted("COALESCE(startage, epiorder) IN (40, 41, 98)"),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
    // Two names of one column mapped with a list in a key: refused (second review).
    let key = "SELECT k, COUNT(DISTINCT patient_id) FROM (SELECT patient_id, CASE WHEN c1 = \
               '60621009' THEN 1 WHEN c2 = '999000004' THEN 1 ELSE 0 END AS k FROM (SELECT \
               patient_id, snomedct_code AS c1, snomedct_code AS c2 FROM clinical_events) t) \
               u GROUP BY k";
    assert_eq!(refused(&cx, key).await, Rule::LowEffect, "{key}");
    // A range of codes in a cohort is the codes between its edges, as a prefix is (`BETWEEN
    // 'Z' AND 'Z~'` is `LIKE 'Z%'`): refused there since session 49
    // (`a_prefix_or_a_mapped_code_in_a_cohort_is_refused`); answered by session 41.
    let range = "SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM \
                 hes_apc WHERE diag_4_01 BETWEEN 'I20' AND 'I259')";
    assert_eq!(refused(&cx, range).await, Rule::LowEffect, "{range}");
    for sql in [
        // Two rows related by a value (consecutive episodes) are no list (second review:
        // refused by a first version).
        "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a JOIN hes_apc b \
         ON b.patient_id = a.patient_id AND b.spell_id = a.spell_id \
         AND b.epiorder = a.epiorder + 1",
        // One value of each of two columns is no list.
        "SELECT CASE WHEN admimeth = '21' AND epiorder = 1 THEN 'a' ELSE 'b' END AS k, \
         COUNT(DISTINCT patient_id) FROM hes_apc GROUP BY 1",
        "SELECT CASE WHEN snomedct_code = '60621009' THEN 'y' ELSE 'n' END AS k, \
         COUNT(DISTINCT patient_id) FROM clinical_events GROUP BY 1",
        "SELECT substr(bnf_code, 1, 2) AS chapter, COUNT(DISTINCT patient_id) FROM medications \
         GROUP BY 1",
    ] {
        assert!(outcome(&cx, sql).await.starts_with("rows: "), "{sql}");
    }
}

/// A code held by the target and by a few others who are in the answer anyway through other
/// listed codes: read by rows, the others' rows of the code made its class hold an anchor
/// whenever one of them was an anchor, so the code was read as written and moved the target
/// alone (found by the session-41 review). An anchor now counts for a code only where the
/// code is the one value of its rows that the list decides in the cell. Each attack lists
/// every code the target lacks, with and without one code the target shares with others
/// (at least one an anchor), the target being no anchor.
#[tokio::test]
async fn a_code_shared_with_persons_in_the_answer_anyway_does_not_move_the_target() {
    use std::collections::{BTreeMap, BTreeSet};
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    let anchor = |id: i64| anchors.contains(&f.record_key(id));
    let mut codes_of: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut holders: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for r in unprotected(
        &cx,
        "SELECT patient_id, snomedct_code FROM clinical_events GROUP BY 1, 2",
    )
    .await
    {
        let id: i64 = r[0].parse().expect("patient_id");
        codes_of.entry(id).or_default().insert(r[1].clone());
        holders.entry(r[1].clone()).or_default().insert(id);
    }
    let all: BTreeSet<&String> = holders.keys().collect();
    let quoted = |codes: &[&String]| {
        codes
            .iter()
            .map(|c| format!("'{c}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut attacks = 0;
    'codes: for (code, persons) in &holders {
        if !(2..=20).contains(&persons.len()) || !persons.iter().any(|p| anchor(*p)) {
            continue;
        }
        for &target in persons.iter().filter(|p| !anchor(**p)) {
            let lacks: Vec<&String> = all
                .iter()
                .filter(|c| !codes_of[&target].contains(**c))
                .copied()
                .collect();
            // The others are in the answer through a listed code the target lacks.
            let others_in = persons
                .iter()
                .filter(|p| **p != target)
                .all(|p| codes_of[p].iter().any(|c| !codes_of[&target].contains(c)));
            if lacks.len() < 2 || !others_in {
                continue;
            }
            let without = format!(
                "SELECT COUNT(DISTINCT patient_id) FROM clinical_events \
                 WHERE snomedct_code IN ({})",
                quoted(&lacks)
            );
            let mut with_code = lacks.clone();
            with_code.push(code);
            let with = format!(
                "SELECT COUNT(DISTINCT patient_id) FROM clinical_events \
                 WHERE snomedct_code IN ({})",
                quoted(&with_code)
            );
            let truth = |sql: String| {
                let cx = &cx;
                async move { num(&unprotected(cx, &sql).await[0][0]) }
            };
            assert_eq!(
                truth(with.clone()).await - truth(without.clone()).await,
                1.0,
                "the pair differs by the target alone"
            );
            let released = single(&cx, &without).await;
            assert!(released.is_some(), "released: {without}");
            assert_eq!(
                released,
                single(&cx, &with).await,
                "code {code}, target {target}"
            );
            attacks += 1;
            if attacks == 4 {
                break 'codes;
            }
            continue 'codes;
        }
    }
    assert!(
        attacks > 0,
        "no code shared by a non-anchor target and an anchor"
    );
}

/// A range edge on an integer of rows (`startage`) that lets in one person alone. Until
/// session 43 such ranges were one measured condition: a list spelt with a range
/// (`startage BETWEEN 40 AND 41 OR startage >= 98`, 98 an age one person was admitted at)
/// answered 25 against 20 without it, and an edge moved past one person's only age in the
/// range moved the answer by them. They are now snapped: each row's age is read at the
/// nearest age of an anchor of the cell whose rows there all hold that one age. Each attack
/// is a pair of ranges in one practice whose raw answers differ by one person who is no
/// anchor; both answers must be equal.
#[tokio::test]
async fn a_range_edge_on_ages_of_rows_that_moves_one_person_does_not_change_an_answer() {
    use std::collections::BTreeMap;
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    let anchor = |id: i64| anchors.contains(&f.record_key(id));
    let admitted = |c: &str| format!("SELECT COUNT(DISTINCT patient_id) FROM hes_apc WHERE {c}");
    let (list, with_range) = (
        admitted("startage BETWEEN 40 AND 41"),
        admitted("startage BETWEEN 40 AND 41 OR startage >= 98"),
    );
    let truth = |sql: String| {
        let cx = &cx;
        async move { num(&unprotected(cx, &sql).await[0][0]) }
    };
    assert_eq!(
        truth(with_range.clone()).await - truth(list.clone()).await,
        1.0
    );
    assert_eq!(single(&cx, &list).await, single(&cx, &with_range).await);
    let (mut attacks, mut released) = (0, 0);
    for practice in ["N81012", "N81003", "F81002"] {
        // Each person's ages of admission in the practice from 50 on.
        let mut ages: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for r in unprotected(
            &cx,
            &format!(
                "SELECT patient_id, startage FROM hes_apc WHERE gpprac = '{practice}' \
                 AND startage >= 50 GROUP BY 1, 2"
            ),
        )
        .await
        {
            let id: i64 = r[0].parse().expect("patient_id");
            ages.entry(id)
                .or_default()
                .push(r[1].parse().expect("startage"));
        }
        for v in 51..=98 {
            // `BETWEEN 50 AND v` against `… v - 1`: the persons whose youngest age here is
            // v; `BETWEEN v AND 98` against `v + 1 …`: those whose oldest is v.
            for upper in [true, false] {
                let moved: Vec<i64> = ages
                    .iter()
                    .filter(|(_, a)| {
                        let edge = if upper {
                            a.iter().min()
                        } else {
                            a.iter().max()
                        };
                        edge == Some(&v)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                if moved.len() != 1 || anchor(moved[0]) {
                    continue;
                }
                let (without, with) = if upper {
                    ((50, v - 1), (50, v))
                } else {
                    ((v + 1, 98), (v, 98))
                };
                let sql = |(lo, hi): (i64, i64)| {
                    admitted(&format!(
                        "gpprac = '{practice}' AND startage BETWEEN {lo} AND {hi}"
                    ))
                };
                let (without, with) = (sql(without), sql(with));
                assert_eq!(
                    truth(with.clone()).await - truth(without.clone()).await,
                    1.0,
                    "the pair differs by the target alone: {with}"
                );
                let answer = single(&cx, &without).await;
                assert_eq!(answer, single(&cx, &with).await, "{with}");
                attacks += 1;
                released += usize::from(answer.is_some());
            }
        }
    }
    // (On the fixture 39 edges, 5 of which moved the answer by 5 before session 43.)
    assert!(
        attacks >= 20,
        "only {attacks} edges move one person who is no anchor"
    );
    assert!(
        released >= 10,
        "only {released} of {attacks} pairs released"
    );
    // One age read through both sides of a self-join in one condition: snapped one side at
    // a time, a target's pair of ages that no anchor holds would move alone (review).
    let both = "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a JOIN hes_apc b \
                ON b.patient_id = a.patient_id \
                WHERE a.gpprac = 'N81012' AND a.startage >= 60 AND b.startage <= 54";
    assert_eq!(refused(&cx, both).await, Rule::LowEffect, "{both}");
}

/// A range edge, a list or a band on readings (`numeric_value`, a floating-point value of
/// rows) moved past one person's only reading. Until session 50 readings were neither read
/// by class nor snapped: over the differencing cohort (one reading each, `40 + index`),
/// `numeric_value < v` against `<= v` answered `SUM`s differing by exactly the reading `v`
/// for every `v` from 49 to 56 (404 against 413, 413 against 527, …), and counts moved
/// with the one person too (10 against 15 at 51). Readings are now snapped as ages of rows
/// are: each row's reading is read at the nearest reading of an anchor of the cell whose
/// readings there are all one value. Each pair below differs by one person who is no anchor
/// (checked on the raw rows), and both answers must be equal; a range in a cohort
/// subquery or beside a test of NULL that lets the NULLs pass is refused.
#[tokio::test]
async fn a_range_or_a_list_on_readings_moves_no_one_alone() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    let cohort = f.cohort(DIFF_PRACTICE);
    let readings = format!(
        "FROM clinical_events e JOIN patients p ON e.patient_id = p.patient_id \
         WHERE e.snomedct_code = '{DIFF_CODE}'"
    );
    let persons = |sql: String| {
        let cx = &cx;
        async move {
            unprotected(
                cx,
                &sql.replacen("SELECT SUM(e.numeric_value)", "SELECT e.patient_id", 1),
            )
            .await
            .into_iter()
            .map(|r| r[0].parse::<i64>().expect("an id"))
            .collect::<std::collections::BTreeSet<i64>>()
        }
    };
    let (mut attacks, mut released) = (0, 0);
    let mut differing = Vec::new();
    for i in (1..DIFF_SIZE - 1).step_by(2) {
        let target = &cohort[i];
        if anchors.contains(&target.record_key) {
            continue;
        }
        let v = 40 + i;
        let below: Vec<String> = (40..v).map(|x| x.to_string()).collect();
        let pairs = [
            (
                format!("e.numeric_value < {v}"),
                format!("e.numeric_value <= {v}"),
            ),
            (
                format!("e.numeric_value > {v}"),
                format!("e.numeric_value >= {v}"),
            ),
            (
                format!("e.numeric_value + 0 < {v}"),
                format!("e.numeric_value + 0 < {v}.5"),
            ),
            (
                format!("e.numeric_value IN ({})", below.join(", ")),
                format!("e.numeric_value IN ({}, {v})", below.join(", ")),
            ),
            (
                format!("e.numeric_value BETWEEN {} AND 90", v + 1),
                format!("e.numeric_value BETWEEN {v} AND 90"),
            ),
        ];
        for (without, with) in pairs {
            let (without, with) = (
                format!("SELECT SUM(e.numeric_value) {readings} AND {without}"),
                format!("SELECT SUM(e.numeric_value) {readings} AND {with}"),
            );
            let moved: Vec<i64> = persons(with.clone())
                .await
                .symmetric_difference(&persons(without.clone()).await)
                .copied()
                .collect();
            assert_eq!(
                moved,
                vec![target.patient_id],
                "the pair differs by the target alone: {with}"
            );
            for agg in [
                "SUM(e.numeric_value)",
                "COUNT(DISTINCT e.patient_id)",
                "COUNT(*)",
            ] {
                let (a, b) = (
                    without.replacen("SUM(e.numeric_value)", agg, 1),
                    with.replacen("SUM(e.numeric_value)", agg, 1),
                );
                let (got_a, got_b) = (single(&cx, &a).await, single(&cx, &b).await);
                if got_a != got_b {
                    differing.push(format!("{a} -> {got_a:?}\n{b} -> {got_b:?}"));
                }
                attacks += 1;
                released += usize::from(got_a.is_some());
            }
        }
        // A band of readings as a grouping key: every cell the same.
        let band = |hi: usize| {
            format!(
                "SELECT CASE WHEN e.numeric_value <= {hi} THEN 'low' ELSE 'high' END AS k, \
                 SUM(e.numeric_value) {readings} GROUP BY 1"
            )
        };
        let (a, b) = (band(v - 1), band(v));
        let (got_a, got_b) = (sorted_rows(&cx, &a).await, sorted_rows(&cx, &b).await);
        if got_a != got_b {
            differing.push(format!("{a} -> {got_a:?}\n{b} -> {got_b:?}"));
        }
        attacks += 1;
    }
    assert!(
        differing.is_empty(),
        "a condition on readings moved one person who is no anchor:\n{}",
        differing.join("\n")
    );
    eprintln!("{attacks} pairs, {released} released");
    assert!(attacks >= 100, "only {attacks} pairs");
    assert!(
        released >= attacks / 4,
        "only {released} of {attacks} answers released"
    );
    for sql in [
        format!(
            "SELECT COUNT(*) FROM patients WHERE patient_id IN \
             (SELECT e.patient_id {readings} AND e.numeric_value < 55)"
        ),
        format!(
            "SELECT COUNT(*) {readings} AND (e.numeric_value >= 55 OR e.numeric_value IS NULL)"
        ),
        // One atom that lets a missing reading pass: the persons without a reading would be
        // told apart from `numeric_value < 55` (review).
        format!("SELECT COUNT(*) {readings} AND (e.numeric_value >= 55) IS NOT TRUE"),
        format!("SELECT COUNT(*) {readings} AND COALESCE(e.numeric_value, 0) < 55"),
        // A rounding cast is a band of readings: in a derived table beside a subquery, where
        // the condition is not followed down, one equality on it (review).
        format!(
            "SELECT COUNT(DISTINCT t.patient_id) FROM (SELECT patient_id, \
             CAST(numeric_value AS DECIMAL(5, 1)) AS r FROM clinical_events \
             WHERE snomedct_code = '{DIFF_CODE}') t WHERE t.r = 50.9 AND t.patient_id IN \
             (SELECT patient_id FROM patients WHERE practice_code = '{DIFF_PRACTICE}')"
        ),
        format!(
            "SELECT t.r, COUNT(DISTINCT t.patient_id) FROM (SELECT patient_id, \
             CAST(numeric_value AS INT) AS r FROM clinical_events \
             WHERE snomedct_code = '{DIFF_CODE}') t WHERE t.patient_id IN \
             (SELECT patient_id FROM patients WHERE practice_code = '{DIFF_PRACTICE}') \
             GROUP BY 1"
        ),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
}

/// A grouping key that bands an age of rows (`CASE WHEN startage BETWEEN 50 AND v THEN 'a'
/// ELSE 'b' END`) against the same band one year narrower, where the one person whose
/// youngest age from 50 on is `v` is no anchor: the key moves that person alone between
/// the cells, so every cell must answer the same. Until session 46 such keys were read as
/// written (a range on the age is snapped in a condition, not in a key): 6 of 20 such edges
/// in three practices differed (`a` 40 against 45). The key is snapped as the condition
/// is. Where the age cannot be snapped it is refused: read with another column in one key,
/// banded in a derived table or inside a per-person aggregation and grouped on or filtered
/// above, beside another snapped part, or passed up through an aggregation or a cast; and
/// so is a range key on `epiorder`. A key that gives the NULL of an outer join's missing
/// rows a value reads it as written only where an anchor is NULL there (the decile
/// practices' one person without an admission, against the whole store).
#[tokio::test]
async fn a_band_of_ages_of_rows_as_a_key_moves_no_one_alone() {
    use std::collections::BTreeMap;
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    let anchor = |id: i64| anchors.contains(&f.record_key(id));
    let band = |practice: &str, hi: i64| {
        format!(
            "SELECT CASE WHEN startage BETWEEN 50 AND {hi} THEN 'a' ELSE 'b' END AS k, \
             COUNT(DISTINCT patient_id) FROM hes_apc WHERE gpprac = '{practice}' GROUP BY 1"
        )
    };
    let (mut attacks, mut released) = (0, 0);
    for practice in ["N81012", "N81003", "F81002"] {
        // Each person's youngest age of admission in the practice from 50 on.
        let mut youngest: BTreeMap<i64, i64> = BTreeMap::new();
        for r in unprotected(
            &cx,
            &format!(
                "SELECT patient_id, MIN(startage) FROM hes_apc WHERE gpprac = '{practice}' \
                 AND startage >= 50 GROUP BY 1"
            ),
        )
        .await
        {
            youngest.insert(
                r[0].parse().expect("patient_id"),
                r[1].parse().expect("startage"),
            );
        }
        for v in 51..=98 {
            let moved: Vec<i64> = youngest
                .iter()
                .filter(|(_, a)| **a == v)
                .map(|(id, _)| *id)
                .collect();
            if moved.len() != 1 || anchor(moved[0]) {
                continue;
            }
            let (without, with) = (band(practice, v - 1), band(practice, v));
            let a_cell = |rows: Vec<Vec<String>>| {
                rows.into_iter()
                    .find(|r| r[0] == "a")
                    .map_or(0.0, |r| num(&r[1]))
            };
            assert_eq!(
                a_cell(unprotected(&cx, &with).await) - a_cell(unprotected(&cx, &without).await),
                1.0,
                "the pair differs by the target alone: {with}"
            );
            let answer = sorted_rows(&cx, &without).await;
            assert_eq!(answer, sorted_rows(&cx, &with).await, "{with}");
            attacks += 1;
            released += usize::from(answer.iter().any(|r| r[0] == "a"));
        }
    }
    // (On the fixture 20 edges, 6 of which differed before session 46.)
    assert!(
        attacks >= 15,
        "only {attacks} edges move one person who is no anchor"
    );
    assert!(
        released >= 10,
        "only {released} of {attacks} pairs released"
    );
    // Bands as keys are answered, a cell per band.
    let bands = "SELECT CASE WHEN startage < 18 THEN '0-17' WHEN startage < 65 THEN '18-64' \
                 ELSE '65+' END AS k, COUNT(*) FROM hes_apc GROUP BY 1";
    assert_eq!(sorted_rows(&cx, bands).await.len(), 3, "{bands}");
    // Where the age is not snapped: refused.
    let banded = "banded in a derived table";
    for (sql, says) in [
        (
            // Beside another snapped part (a range on a person's value, a second band), the
            // parts are read in the cells as written, not as snapped (review).
            "SELECT CASE WHEN a.startage >= 60 THEN 'a' ELSE 'b' END AS k, \
             COUNT(DISTINCT a.patient_id) FROM hes_apc a JOIN patients p \
             ON p.patient_id = a.patient_id WHERE p.birth_month <= DATE '1950-01-01' \
             GROUP BY 1",
            "beside another band",
        ),
        (
            "SELECT CASE WHEN startage >= 60 THEN 'a' ELSE 'b' END AS k, startage / 10 AS d, \
             COUNT(DISTINCT patient_id) FROM hes_apc GROUP BY 1, 2",
            "beside another band",
        ),
        (
            // Passed up through an aggregation's key (with a condition below it, which the
            // rewrite reads there: 245 against 240 for 86 and 87 in N81012 before), a
            // cast, or a maximum per person and sex (no per-person value), and banded
            // above.
            "SELECT CASE WHEN startage BETWEEN 50 AND 87 THEN 'a' ELSE 'b' END AS k, \
             COUNT(DISTINCT patient_id) FROM (SELECT patient_id, startage FROM hes_apc \
             WHERE gpprac = 'N81012' GROUP BY patient_id, startage) t GROUP BY 1",
            banded,
        ),
        (
            "SELECT CASE WHEN s BETWEEN 50 AND 70 THEN 'a' ELSE 'b' END AS k, \
             COUNT(DISTINCT patient_id) FROM (SELECT patient_id, CAST(startage AS INT) AS s \
             FROM hes_apc) t GROUP BY 1",
            banded,
        ),
        (
            "SELECT COUNT(*) FROM (SELECT patient_id, sex, MAX(startage) AS oldest \
             FROM hes_apc GROUP BY patient_id, sex) t WHERE oldest >= 70",
            banded,
        ),
        (
            // Through the analyst's own `UNION`, as a key and as a condition (second review).
            "SELECT u.k, COUNT(DISTINCT u.patient_id) FROM (SELECT patient_id, gpprac, CASE \
             WHEN startage BETWEEN 50 AND 72 THEN 'a' ELSE 'b' END AS k FROM hes_apc UNION \
             ALL SELECT patient_id, gpprac, 'b' FROM hes_ae) u WHERE u.gpprac = 'N81003' \
             GROUP BY u.k",
            banded,
        ),
        (
            "SELECT COUNT(DISTINCT u.patient_id) FROM (SELECT patient_id, gpprac, CASE WHEN \
             startage BETWEEN 50 AND 72 THEN 'a' ELSE 'b' END AS k FROM hes_apc UNION ALL \
             SELECT patient_id, gpprac, 'b' FROM hes_ae) u WHERE u.gpprac = 'N81003' \
             AND u.k = 'a'",
            banded,
        ),
        (
            // A plain maximum of a band computed below a condition of the aggregation's own.
            "SELECT COUNT(*) FROM (SELECT patient_id, MAX(band) AS old FROM (SELECT \
             patient_id, gpprac, CASE WHEN startage >= 65 THEN 1 ELSE 0 END AS band FROM \
             hes_apc) t WHERE gpprac = 'N81012' GROUP BY patient_id) pp WHERE pp.old = 1",
            banded,
        ),
        (
            // A range on an ordinal as a key: the `true` cells of `>= 3` and `>= 4` differ
            // by the persons whose last episode is the third; so banded below, or the
            // last episode per spell banded.
            "SELECT epiorder >= 3 AS k, COUNT(DISTINCT patient_id) FROM hes_apc GROUP BY 1",
            "epiorder",
        ),
        (
            "SELECT k, COUNT(DISTINCT patient_id) FROM (SELECT patient_id, CASE WHEN \
             epiorder >= 3 THEN 'late' ELSE 'early' END AS k FROM hes_apc) t GROUP BY k",
            banded,
        ),
        (
            "SELECT CASE WHEN s.n >= 3 THEN 'long' ELSE 'short' END AS k, \
             COUNT(DISTINCT s.patient_id) FROM (SELECT patient_id, spell_id, MAX(epiorder) \
             AS n FROM hes_apc GROUP BY 1, 2) s GROUP BY 1",
            banded,
        ),
        (
            // A bound computed with another column (a per-person value snapped on its own):
            // the session-43 pair, 240 against 235.
            "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a JOIN patients p \
             ON p.patient_id = a.patient_id WHERE a.gpprac = 'N81012' \
             AND a.startage BETWEEN 50 AND 88 + 0 * COALESCE(p.imd_decile, 0)",
            "FS-7",
        ),
        (
            // Bounds that are columns of the query's own.
            "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a \
             CROSS JOIN (VALUES (50, 72)) b(lo, hi) WHERE a.startage BETWEEN b.lo AND b.hi",
            "FS-7",
        ),
        (
            // Arithmetic bands a column of a `UNION` as a range does.
            "SELECT u.age / 65 AS k, COUNT(DISTINCT patient_id) FROM (SELECT patient_id, \
             startage AS age FROM hes_apc UNION ALL SELECT patient_id, arrivalage FROM hes_ae) \
             u GROUP BY 1",
            "FS-7",
        ),
        (
            "SELECT CASE WHEN admimeth = '21' AND startage >= 65 THEN 'y' ELSE 'n' END AS k, \
             COUNT(DISTINCT patient_id) FROM hes_apc GROUP BY 1",
            "with another column",
        ),
        (
            "SELECT k, COUNT(DISTINCT patient_id) FROM (SELECT patient_id, CASE WHEN startage \
             BETWEEN 50 AND 72 THEN 'a' ELSE 'b' END AS k FROM hes_apc) t GROUP BY 1",
            "banded in a derived table",
        ),
        (
            "SELECT k, COUNT(*) FROM (SELECT patient_id, MAX(CASE WHEN startage BETWEEN 50 AND \
             72 THEN 1 ELSE 0 END) AS k FROM hes_apc GROUP BY patient_id) t GROUP BY 1",
            "banded in a derived table",
        ),
        (
            "SELECT COUNT(*) FROM (SELECT patient_id, COUNT(*) FILTER (WHERE startage >= 65) \
             AS n FROM hes_apc GROUP BY patient_id) t WHERE n >= 1",
            "banded in a derived table",
        ),
        (
            // One equality on the band, not followed down beside a subquery: 35 against 40
            // for 72 and 73 in N81003 before session 46 (truth 37 and 38).
            "SELECT COUNT(DISTINCT patient_id) FROM (SELECT patient_id, CASE WHEN startage \
             BETWEEN 50 AND 73 THEN 'a' ELSE 'b' END AS k FROM hes_apc WHERE gpprac = \
             'N81003') t WHERE k = 'a' AND patient_id IN (SELECT patient_id FROM patients \
             WHERE sex IN ('F', 'M'))",
            "banded in a derived table",
        ),
    ] {
        let out = outcome(&cx, sql).await;
        assert!(
            out.starts_with("FS-7") && out.contains(says),
            "{sql}\n  {out}"
        );
    }
    // Answered: the age itself per person banded above (a per-person value, snapped), the
    // age passed up as a key of its own, one equality on `epiorder`, a band filtered above
    // the query that counts, and one age in a cohort beside another condition.
    for sql in [
        "SELECT n >= 70 AS k, COUNT(*) FROM (SELECT patient_id, MAX(startage) AS n \
         FROM hes_apc GROUP BY patient_id) t GROUP BY 1",
        "SELECT t.startage AS k, COUNT(DISTINCT t.patient_id) FROM (SELECT patient_id, \
         startage FROM hes_apc GROUP BY patient_id, startage) t GROUP BY 1",
        "SELECT epiorder = 1 AS k, COUNT(DISTINCT patient_id) FROM hes_apc GROUP BY 1",
        "SELECT * FROM (SELECT CASE WHEN startage >= 65 THEN '65+' ELSE 'u' END AS band, \
         COUNT(DISTINCT patient_id) AS n FROM hes_apc GROUP BY 1) t WHERE band = '65+'",
        "SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM hes_apc \
         WHERE startage IS NOT NULL AND admimeth = '21')",
        // A band beside a list of one column's values, or beside a range on the age itself
        // (read by class or snapped in the snapped cells).
        "SELECT gpprac, CASE WHEN startage < 18 THEN 'c' ELSE 'a' END AS k, \
         COUNT(DISTINCT patient_id) FROM hes_apc WHERE admimeth IN ('21', '22', '23') \
         GROUP BY 1, 2",
        "SELECT CASE WHEN startage < 65 THEN 'u' ELSE 'o' END AS k, COUNT(DISTINCT patient_id) \
         FROM hes_apc WHERE startage >= 18 GROUP BY 1",
        // The last episode of each spell (an equality of two rows' values); the oldest
        // age of emergency admission per person, banded; a passed-up age tested for NULL.
        "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a JOIN (SELECT patient_id, \
         spell_id, COUNT(*) AS n FROM hes_apc GROUP BY 1, 2) s ON s.patient_id = a.patient_id \
         AND s.spell_id = a.spell_id WHERE a.epiorder = s.n",
        "SELECT n >= 70 AS k, COUNT(*) FROM (SELECT patient_id, MAX(startage) FILTER (WHERE \
         admimeth = '21') AS n FROM hes_apc GROUP BY patient_id) t GROUP BY 1",
        "SELECT s IS NULL AS k, COUNT(DISTINCT patient_id) FROM (SELECT patient_id, \
         CAST(startage AS INT) AS s FROM hes_apc) t GROUP BY 1",
    ] {
        assert!(!sorted_rows(&cx, sql).await.is_empty(), "{sql}");
    }

    // A NULL age of an outer join's missing rows: `ELSE` gives it a value, and the two
    // spellings put the practice's one person without an admission in different cells.
    let f = fixture_with_deciles();
    let cx = f.project(RESEARCH).await;
    let spelt = |practice: &str, first: bool| {
        let key = if first {
            "CASE WHEN a.startage < 50 THEN 'a' ELSE 'b' END"
        } else {
            "CASE WHEN a.startage >= 50 THEN 'b' ELSE 'a' END"
        };
        format!(
            "SELECT {key} AS k, COUNT(DISTINCT p.patient_id) FROM patients p LEFT JOIN hes_apc a \
             ON a.patient_id = p.patient_id WHERE p.practice_code = '{practice}' GROUP BY 1"
        )
    };
    let b_cell =
        |rows: Vec<Vec<String>>| rows.into_iter().find(|r| r[0] == "b").map(|r| r[1].clone());
    for practice in DECILE_PRACTICES {
        let (one, two) = (spelt(practice, true), spelt(practice, false));
        let truth = |rows: Vec<Vec<String>>| b_cell(rows).map_or(0.0, |n| num(&n));
        assert_eq!(
            truth(unprotected(&cx, &one).await) - truth(unprotected(&cx, &two).await),
            1.0,
            "{one}"
        );
        assert_eq!(
            b_cell(sorted_rows(&cx, &one).await),
            b_cell(sorted_rows(&cx, &two).await),
            "{one}"
        );
    }
    // Where anchors are among them (the whole store, whose persons without an admission
    // are many), the NULLs are read as written: the spellings' `b` cells differ by them.
    let whole = |first: bool| spelt("", first).replace(" WHERE p.practice_code = ''", "");
    let (one, two) = (
        b_cell(sorted_rows(&cx, &whole(true)).await).map(|n| num(&n)),
        b_cell(sorted_rows(&cx, &whole(false)).await).map(|n| num(&n)),
    );
    assert!(
        one.zip(two).is_some_and(|(one, two)| one - two >= 100.0),
        "{one:?} against {two:?}"
    );
}

/// A `LIKE` pattern with a wildcard is a list of every code it matches: `diag_4_01 LIKE
/// 'Z%'` against `LIKE 'Z3%'` differ by the persons whose `Z` codes are all outside `Z3`.
/// On [`fixture_with_deciles`] that is one person who is no anchor in each decile practice
/// (code [`DECILE_RARE_DIAGNOSIS`], the others [`DECILE_DIAGNOSIS`]). Until session 46 a
/// pattern was one measured condition, not read by class as a list is; now it is, and the
/// pairs are equal. In a per-person aggregation whose answer is grouped by another key it
/// is still one measured condition (open: read by class there it would be refused, and
/// that is the benchmark's cte-two-levels).
#[tokio::test]
async fn a_prefix_that_adds_one_persons_code_does_not_change_an_answer() {
    let f = fixture_with_deciles();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    let (mut differed, mut released) = (0, 0);
    for practice in DECILE_PRACTICES {
        assert_rare_person_is_no_anchor(f, &cx, practice, &anchors).await;
        let q = |pattern: &str| {
            // (The mean age shows the one person where a count rounds them away.)
            format!(
                "SELECT COUNT(DISTINCT patient_id), AVG(startage) FROM hes_apc \
                 WHERE gpprac = '{practice}' AND diag_4_01 LIKE '{pattern}'"
            )
        };
        let (wide, narrow) = (q("Z%"), q("Z3%"));
        let truth = |sql: String| {
            let cx = &cx;
            async move { num(&unprotected(cx, &sql).await[0][0]) }
        };
        assert_eq!(
            truth(wide.clone()).await - truth(narrow.clone()).await,
            1.0,
            "{wide}"
        );
        let answer = sorted_rows(&cx, &wide).await;
        differed += usize::from(answer != sorted_rows(&cx, &narrow).await);
        released += usize::from(!answer.is_empty());
    }
    assert_eq!(differed, 0, "{differed} of six pairs differed");
    assert!(released >= 4, "only {released} of six answered");
    // Where no class can be read (a per-person aggregation grouped above by another key),
    // one prefix on a code of rows is left as written (open), but a prefix on a person's
    // category and two prefixes on one column are refused as lists there are (review).
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    for inner in [
        "p.practice_code = 'F81002' AND p.lsoa LIKE 'E0100001%'",
        "(e.snomedct_code LIKE '6%' OR e.snomedct_code LIKE '7%')",
    ] {
        let sql = format!(
            "SELECT t.sex, COUNT(*) FROM (SELECT p.patient_id, p.sex, COUNT(*) AS n \
             FROM patients p JOIN clinical_events e ON e.patient_id = p.patient_id \
             WHERE {inner} GROUP BY p.patient_id, p.sex) t GROUP BY t.sex"
        );
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
}

/// A grouping key that maps codes (or ages) of rows through a spelling with no list of
/// constants (`regexp_like(code, '^(A|B)$')`, `strpos('|A|B|', code) > 0`, a product of
/// differences, `SIMILAR TO`), or a per-person flag so computed and filtered on: each
/// spelling decides which codes share a cell as a list does, and a code only the target
/// has moves the target alone between two cells. Refused as a list is (FS-7), with and
/// without the code; keys that are the value itself, one equality, a pattern, a range
/// (age bands) or a function that takes no list (`substr(bnf_code, 1, 2)`) are answered.
#[tokio::test]
async fn a_key_that_maps_codes_of_rows_without_a_list_is_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let keyed = |k: &str| {
        format!("SELECT {k} AS k, COUNT(DISTINCT patient_id) FROM clinical_events GROUP BY 1")
    };
    let flagged = |k: &str| {
        format!(
            "SELECT COUNT(*) FROM (SELECT patient_id, MAX(CASE WHEN {k} THEN 1 ELSE 0 END) \
             AS f FROM clinical_events GROUP BY patient_id) t WHERE f = 1"
        )
    };
    let aged =
        |k: &str| format!("SELECT {k} AS k, COUNT(DISTINCT patient_id) FROM hes_apc GROUP BY 1");
    let mut pairs = Vec::new();
    for codes in ["60621009|84114007", "60621009|84114007|999000004"] {
        let piped = format!("|{codes}|");
        pairs.push(keyed(&format!("regexp_like(snomedct_code, '^({codes})$')")));
        pairs.push(keyed(&format!(
            "CASE WHEN regexp_like(snomedct_code, '^({codes})$') THEN 'y' ELSE 'n' END"
        )));
        pairs.push(keyed(&format!("strpos('{piped}', snomedct_code) > 0")));
        pairs.push(keyed(&format!("snomedct_code SIMILAR TO '({codes})'")));
        pairs.push(flagged(&format!(
            "regexp_like(snomedct_code, '^({codes})$')"
        )));
        // … and, from the review, spellings whose value is no condition, or a list of
        // patterns or of ranges on the code.
        pairs.push(keyed(&format!("sign(strpos('{piped}', snomedct_code))")));
        pairs.push(keyed(&format!(
            "regexp_replace(snomedct_code, '^({codes})$', 'X')"
        )));
        let likes = codes
            .split('|')
            .map(|c| format!("snomedct_code LIKE '{c}'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        pairs.push(keyed(&format!("CASE WHEN {likes} THEN 'y' ELSE 'n' END")));
        let ranges = codes
            .split('|')
            .map(|c| format!("snomedct_code BETWEEN '{c}' AND '{c}'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        pairs.push(keyed(&format!("CASE WHEN {ranges} THEN 'y' ELSE 'n' END")));
        pairs.push(format!(
            "SELECT COUNT(*) FROM (SELECT patient_id, MAX(sign(strpos('{piped}', \
             snomedct_code))) AS f FROM clinical_events GROUP BY patient_id) t WHERE f = 1"
        ));
    }
    pairs.push(aged("(startage - 40) * (startage - 41) = 0"));
    pairs.push(aged(
        "(startage - 40) * (startage - 41) * (startage - 98) = 0",
    ));
    pairs.push(aged("(startage - 40) * (startage - 41) * (startage - 98)"));
    // A value computed from the age in a derived table, then listed in the key.
    pairs.push(
        "SELECT CASE WHEN a IN (40, 41, 98) THEN 'y' ELSE 'n' END AS k, \
         COUNT(DISTINCT patient_id) FROM (SELECT patient_id, startage + 0 AS a FROM hes_apc) t \
         GROUP BY 1"
            .to_string(),
    );
    let mut accepted = Vec::new();
    for sql in &pairs {
        let got = outcome(&cx, sql).await;
        if got.starts_with("rows: ") {
            let truth = {
                let mut r = unprotected(&cx, sql).await;
                r.sort();
                r
            };
            accepted.push(format!("{sql}\n  -> {got} (unprotected {truth:?})"));
        }
    }
    assert!(
        accepted.is_empty(),
        "a key mapping codes of rows without a list was answered:\n{}",
        accepted.join("\n")
    );
    for sql in [
        keyed("snomedct_code"),
        keyed("snomedct_code = '60621009'"),
        keyed("snomedct_code LIKE '6062%'"),
        keyed("snomedct_code IS NULL"),
        aged("CASE WHEN startage >= 65 THEN '65+' ELSE 'under 65' END"),
        aged("startage / 10"),
        aged("CASE WHEN admimeth <> '21' THEN 'a' ELSE 'b' END"),
        aged("CASE WHEN admimeth NOT LIKE '2%' THEN 'a' ELSE 'b' END"),
        aged("CASE WHEN left(diag_4_01, 1) = 'C' THEN 'a' ELSE 'b' END"),
        // A per-person flag of one code (review: refused by a first version).
        "SELECT COUNT(*) FROM (SELECT patient_id, bool_or(snomedct_code = '60621009') AS f \
         FROM clinical_events GROUP BY patient_id) t WHERE f"
            .to_string(),
        "SELECT substr(bnf_code, 1, 2) AS chapter, COUNT(DISTINCT patient_id) FROM medications \
         GROUP BY 1"
            .to_string(),
        "SELECT to_char(admidate, '%Y-%m') AS month, COUNT(DISTINCT patient_id) FROM hes_apc \
         GROUP BY 1"
            .to_string(),
    ] {
        let got = outcome(&cx, &sql).await;
        assert!(got.starts_with("rows: "), "{sql}\n  -> {got}");
    }
}

/// A column of a `UNION ALL` of two personal tables' ages (`startage` of `hes_apc` and
/// `arrivalage` of `hes_ae` as one `age`) is no table's column: it was neither a category of
/// rows read by class nor snapped, so a list was one measured condition and `age IN (50,
/// 51)` against the same with 98, an age one person has, answered 40 and 45 (truth 41 and
/// 42; four pairs of eight differed, session 45). Ranges and lists on it, however spelt,
/// are refused (FS-7), in a `WHERE` and in a key; one equality is answered.
#[tokio::test]
async fn a_list_or_a_range_on_a_column_of_a_union_of_rows_is_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let union = "(SELECT patient_id, startage AS age FROM hes_apc \
                 UNION ALL SELECT patient_id, arrivalage FROM hes_ae) u";
    let persons = |c: &str| format!("SELECT COUNT(DISTINCT patient_id) FROM {union} WHERE {c}");
    let keyed =
        |k: &str| format!("SELECT {k} AS k, COUNT(DISTINCT patient_id) FROM {union} GROUP BY 1");
    // The pair differs by one person in truth (or the test could not fail).
    let truth = |sql: String| {
        let cx = &cx;
        async move { num(&unprotected(cx, &sql).await[0][0]) }
    };
    assert_eq!(
        truth(persons("age IN (50, 51, 98)")).await - truth(persons("age IN (50, 51)")).await,
        1.0
    );
    for list in ["50, 51", "50, 51, 98"] {
        let ors = list
            .split(", ")
            .map(|a| format!("age = {a}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        for sql in [
            persons(&format!("age IN ({list})")),
            persons(&format!("age NOT IN ({list})")),
            persons(&ors),
            persons(&format!(
                "strpos('|{}|', CAST(age AS VARCHAR)) > 0",
                list.replace(", ", "|")
            )),
            keyed(&format!("CASE WHEN age IN ({list}) THEN 'y' ELSE 'n' END")),
            keyed(&format!(
                "strpos('|{}|', CAST(age AS VARCHAR)) > 0",
                list.replace(", ", "|")
            )),
            // (Review:) a subquery of the values, two names of the column, a value computed
            // from it in a derived table.
            persons(&format!(
                "age IN (SELECT column1 FROM (VALUES {}))",
                list.split(", ")
                    .map(|a| format!("({a})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            format!(
                "SELECT COUNT(DISTINCT patient_id) FROM (SELECT patient_id, age AS a1, age AS a2 \
                 FROM {union}) t WHERE {}",
                list.split(", ")
                    .enumerate()
                    .map(|(i, a)| format!("a{} = {a}", 1 + i % 2))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            format!(
                "SELECT COUNT(DISTINCT patient_id) FROM (SELECT patient_id, age + 0 AS a \
                 FROM {union}) t WHERE a IN ({list})"
            ),
        ] {
            assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
        }
    }
    for sql in [
        persons("age >= 50"),
        persons("age BETWEEN 50 AND 60"),
        // A person's own value so renamed is no longer snapped: refused too.
        "SELECT COUNT(DISTINCT patient_id) FROM (SELECT patient_id, birth_month AS b FROM \
         patients UNION ALL SELECT patient_id, birth_month FROM patients) u \
         WHERE b < DATE '1950-01-01'"
            .to_string(),
        // A range as a key on such a column is not snapped either (review).
        "SELECT b < DATE '1950-03-01' AS k, COUNT(DISTINCT patient_id) FROM (SELECT \
         patient_id, birth_month AS b FROM patients UNION ALL SELECT patient_id, birth_month \
         FROM patients) u GROUP BY 1"
            .to_string(),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
    for sql in [persons("age = 40"), keyed("age"), keyed("age = 40")] {
        let got = outcome(&cx, &sql).await;
        assert!(got.starts_with("rows: "), "{sql}\n  -> {got}");
    }
    // A value computed from an age of rows in a derived table, where a subquery beside it
    // keeps the condition from being followed into the table (review: `a IN (40, 41)` 20
    // and 25 with 98 added, truth 20 and 21): refused the same way. Without the subquery
    // the condition is followed to `startage` and answered as it is.
    let derived = |c: &str, beside: &str| {
        format!(
            "SELECT COUNT(DISTINCT patient_id) FROM (SELECT patient_id, startage + 0 AS a \
             FROM hes_apc) t WHERE {c}{beside}"
        )
    };
    let subquery = " AND patient_id IN (SELECT patient_id FROM patients)";
    for c in ["a IN (40, 41)", "a IN (40, 41, 98)", "a >= 50"] {
        let sql = derived(c, subquery);
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
        let sql = derived(c, "");
        let got = outcome(&cx, &sql).await;
        assert!(got.starts_with("rows: "), "{sql}\n  -> {got}");
    }
}

/// A test of NULL beside a range on a per-person number (`imd_decile IS NULL OR imd_decile
/// >= 5`), or a spelling that lets a NULL pass (`COALESCE(imd_decile, 11) >= 5`), against
/// the same without it: the pair differs by the persons of the cell whose value is NULL.
/// Snapping reads every other value at an anchor's, but a NULL was read as NULL, so where
/// the cell's NULLs are one person who is no anchor the two answers differed by that person
/// alone. A NULL that the part lets pass is now read as written only where an anchor of the
/// cell that the part decides is NULL too; elsewhere the part is what it says far from
/// every value (session 45). On [`fixture_with_deciles`]: practices of 40 persons of every
/// decile and one without.
#[tokio::test]
async fn a_test_of_null_beside_a_range_on_a_persons_number_moves_no_one_alone() {
    let f = fixture_with_deciles();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    let truth = |sql: String| {
        let cx = &cx;
        async move { num(&unprotected(cx, &sql).await[0][0]) }
    };
    let mut differing = Vec::new();
    let mut pairs = 0;
    for practice in DECILE_PRACTICES {
        let nulls: Vec<&Planted> = f
            .cohort(practice)
            .into_iter()
            .filter(|p| !p.postcode)
            .collect();
        assert_eq!(nulls.len(), 1, "one person without a decile");
        assert!(!anchors.contains(&nulls[0].record_key), "who is no anchor");
        let count = |c: &str| {
            format!("SELECT COUNT(*) FROM patients WHERE practice_code = '{practice}' AND ({c})")
        };
        let deciles: Vec<Option<i64>> = unprotected(
            &cx,
            &format!("SELECT imd_decile FROM patients WHERE practice_code = '{practice}'"),
        )
        .await
        .into_iter()
        .map(|r| r[0].parse().ok())
        .collect();
        // Edges with many persons on either side.
        let edges = (2..=10).filter(|d| {
            let above = deciles
                .iter()
                .filter(|x| x.is_some_and(|x| x >= *d))
                .count();
            let below = deciles.iter().filter(|x| x.is_some_and(|x| x < *d)).count();
            above >= 15 && below >= 15
        });
        for d in edges {
            for (without, with) in [
                (
                    "imd_decile >= {d}",
                    "imd_decile IS NULL OR imd_decile >= {d}",
                ),
                ("imd_decile < {d}", "imd_decile < {d} OR imd_decile IS NULL"),
                ("imd_decile >= {d}", "COALESCE(imd_decile, 11) >= {d}"),
                (
                    "imd_decile < {d}",
                    "NOT (imd_decile IS NOT NULL AND imd_decile >= {d})",
                ),
                // A hole beside the test of NULL (read far from every value, a hole lets
                // a NULL in: review), and `IS DISTINCT FROM`.
                (
                    "imd_decile NOT IN (1, {d})",
                    "imd_decile IS NULL OR imd_decile NOT IN (1, {d})",
                ),
                ("imd_decile <> {d}", "imd_decile IS DISTINCT FROM {d}"),
            ] {
                let at = |c: &str| count(&c.replace("{d}", &d.to_string()));
                let (without, with) = (at(without), at(with));
                assert_eq!(
                    truth(with.clone()).await - truth(without.clone()).await,
                    1.0,
                    "the pair differs by the person alone: {with}"
                );
                let released = single(&cx, &without).await;
                assert!(released.is_some(), "released: {without}");
                let got = single(&cx, &with).await;
                if got != released {
                    differing.push(format!("{without} -> {released:?}\n{with} -> {got:?}"));
                }
                pairs += 1;
            }
        }
    }
    // As grouping keys: a key that gives a NULL a value (the test of NULL, or `ELSE`)
    // against one that leaves it NULL put the one NULL person in another cell (the `true`
    // cells answered 10 and 15 before the key was read at NULL where no anchor is).
    for practice in DECILE_PRACTICES {
        for d in 3..=6 {
            for (without, with) in [
                (
                    format!("imd_decile >= {d}"),
                    format!("imd_decile IS NULL OR imd_decile >= {d}"),
                ),
                (
                    format!(
                        "CASE WHEN imd_decile < {d} THEN 'a' WHEN imd_decile >= {d} THEN 'b' END"
                    ),
                    format!("CASE WHEN imd_decile < {d} THEN 'a' ELSE 'b' END"),
                ),
            ] {
                let keyed = |k: &str| {
                    format!(
                        "SELECT {k} AS k, COUNT(*) FROM patients \
                         WHERE practice_code = '{practice}' GROUP BY 1"
                    )
                };
                let (without, with) = (keyed(&without), keyed(&with));
                let truth = |sql: String| {
                    let cx = &cx;
                    async move {
                        let mut r = unprotected(cx, &sql).await;
                        r.sort();
                        r
                    }
                };
                assert_ne!(truth(without.clone()).await, truth(with.clone()).await);
                let (a, b) = (
                    sorted_rows(&cx, &without).await,
                    sorted_rows(&cx, &with).await,
                );
                if a != b {
                    differing.push(format!("{without} -> {a:?}\n{with} -> {b:?}"));
                }
                pairs += 1;
            }
        }
    }
    // Over ages of rows (NULL in `patients LEFT JOIN hes_apc` for a person without an
    // episode) the test of NULL beside a range is refused as a list of the column's values.
    let sql = format!(
        "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
         LEFT JOIN hes_apc a ON a.patient_id = p.patient_id \
         WHERE p.practice_code = '{}' AND (a.startage IS NULL OR a.startage >= 48)",
        DECILE_PRACTICES[0]
    );
    assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    assert!(pairs >= 84, "{pairs} pairs");
    // Where the one NULL person is an anchor, a NULL is read as written: with the test of
    // NULL the cell has them, without it not, and the answers show it (not every NULL is
    // simply left out).
    let anchored = f.cohort(DECILE_ANCHORED);
    let null = anchored
        .iter()
        .find(|p| !p.postcode)
        .expect("a person without a decile");
    assert!(anchors.contains(&null.record_key));
    let count = |c: &str| {
        format!("SELECT COUNT(*) FROM patients WHERE practice_code = '{DECILE_ANCHORED}' AND ({c})")
    };
    let mut told = 0;
    for d in 2..=10 {
        for (without, with) in [
            (
                format!("imd_decile >= {d}"),
                format!("imd_decile IS NULL OR imd_decile >= {d}"),
            ),
            (
                format!("imd_decile < {d}"),
                format!("imd_decile < {d} OR imd_decile IS NULL"),
            ),
        ] {
            let (without, with) = (count(&without), count(&with));
            let (a, b) = (single(&cx, &without).await, single(&cx, &with).await);
            told += usize::from(a.is_some() && b.is_some() && a != b);
        }
    }
    // … and as keys: with a NULL anchor the key gives the NULL its value.
    let mut keys_told = 0;
    for d in 2..=10 {
        let keyed = |k: &str| {
            format!(
                "SELECT {k} AS k, COUNT(*) FROM patients \
                 WHERE practice_code = '{DECILE_ANCHORED}' GROUP BY 1"
            )
        };
        let without = keyed(&format!("imd_decile >= {d}"));
        let with = keyed(&format!("imd_decile IS NULL OR imd_decile >= {d}"));
        keys_told += usize::from(sorted_rows(&cx, &without).await != sorted_rows(&cx, &with).await);
    }
    assert!(keys_told > 0, "no key where the anchor's NULL shows");
    assert!(told > 0, "no edge where the anchor's presence shows");
    assert!(
        differing.is_empty(),
        "{} of {pairs} pairs moved the one NULL person alone:\n{}",
        differing.len(),
        differing.join("\n")
    );
}

/// A range on an age of rows inside a cohort subquery is not snapped there: `patient_id IN
/// (SELECT patient_id FROM hes_apc WHERE startage BETWEEN 50 AND h)` against `h - 1`, one
/// person apart in truth, answered differently for 4 of 16 such edges in three practices
/// (55 against 50, session 45). Refused (FS-7), as lists of rows there are; the same
/// question asked where the range is snapped (in the query that counts, or on a
/// per-person aggregate of the age) is answered.
#[tokio::test]
async fn a_range_on_ages_of_rows_inside_a_cohort_is_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let mut edges = 0;
    for practice in ["N81012", "F81002", "N81003"] {
        for hi in 80..=95 {
            let cohort = |h: i32| {
                format!(
                    "SELECT COUNT(*) FROM patients WHERE practice_code = '{practice}' AND \
                     patient_id IN (SELECT patient_id FROM hes_apc \
                     WHERE startage BETWEEN 50 AND {h})"
                )
            };
            let (a, b) = (cohort(hi), cohort(hi - 1));
            let truth = |sql: String| {
                let cx = &cx;
                async move { num(&unprotected(cx, &sql).await[0][0]) }
            };
            if truth(a.clone()).await - truth(b.clone()).await != 1.0 {
                continue;
            }
            edges += 1;
            for sql in [a, b] {
                assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
            }
        }
    }
    assert!(edges > 0, "no edge one person apart");
    for sql in [
        "SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM hes_apc \
         WHERE startage >= 65)",
        "SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM hes_apc \
         WHERE epiorder > 1)",
        "SELECT COUNT(*) FROM patients p JOIN (SELECT patient_id, COUNT(*) AS n FROM hes_apc \
         WHERE startage <> 40 GROUP BY patient_id) t ON t.patient_id = p.patient_id",
    ] {
        assert_eq!(refused(&cx, sql).await, Rule::LowEffect, "{sql}");
    }
    for sql in [
        "SELECT p.practice_code, COUNT(DISTINCT a.patient_id) FROM hes_apc a \
         JOIN patients p ON p.patient_id = a.patient_id WHERE a.startage >= 65 GROUP BY 1",
        "SELECT COUNT(*) FROM patients p JOIN (SELECT patient_id, MAX(startage) AS oldest \
         FROM hes_apc GROUP BY patient_id) t ON t.patient_id = p.patient_id \
         WHERE t.oldest >= 65",
        "SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM hes_apc \
         WHERE epiorder = 1)",
    ] {
        let got = outcome(&cx, sql).await;
        assert!(got.starts_with("rows: "), "{sql}\n  -> {got}");
    }
}

/// Two levels of a code hierarchy as grouping keys: `substr(diag_4_01, 1, 1)`'s `Z` cell
/// against `substr(diag_4_01, 1, 2)`'s `Z3` cell differ by the persons whose `Z` codes all
/// lie outside `Z3`; on the planted store, by one person who is no anchor per practice.
/// Such keys are read by class (the key as written where the row's code holds an anchor
/// whose rows in the cell all hold it, else NULL), so the two cells are equal, as are the
/// `true` cells of the `LIKE` and `left(…) =` spellings. The same mapping done below (a
/// derived table's key, an inner aggregation's key, a per-person flag) and grouped on or
/// filtered above is refused; a flag of one code, a per-person count of distinct codes and a
/// code passed up as it is stay answered.
#[tokio::test]
async fn levels_of_a_code_hierarchy_as_keys_move_no_one_alone() {
    let f = fixture_with_deciles();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    let mut tally = Tally::default();
    for practice in DECILE_PRACTICES {
        assert_rare_person_is_no_anchor(f, &cx, practice, &anchors).await;
        let keyed = |k: &str| {
            // (The mean age shows the one person where a count rounds them away.)
            format!(
                "SELECT {k} AS k, COUNT(DISTINCT patient_id), AVG(startage) FROM hes_apc \
                 WHERE gpprac = '{practice}' GROUP BY 1"
            )
        };
        for (wide, wide_cell, narrow, narrow_cell) in [
            (
                "substr(diag_4_01, 1, 1)",
                "Z",
                "substr(diag_4_01, 1, 2)",
                "Z3",
            ),
            (
                "diag_4_01 LIKE 'Z%'",
                "true",
                "diag_4_01 LIKE 'Z3%'",
                "true",
            ),
            (
                "left(diag_4_01, 1) = 'Z'",
                "true",
                "left(diag_4_01, 2) = 'Z3'",
                "true",
            ),
            // (A test of NULL of a mapping is a key that maps, review.)
            (
                "(CASE WHEN diag_4_01 LIKE 'Z%' THEN 1 END) IS NOT NULL",
                "true",
                "(CASE WHEN diag_4_01 LIKE 'Z3%' THEN 1 END) IS NOT NULL",
                "true",
            ),
        ] {
            let (wide, narrow) = (keyed(wide), keyed(narrow));
            tally
                .pair(&cx, (&wide, wide_cell), (&narrow, narrow_cell))
                .await;
        }
    }
    assert_eq!(tally.differed, 0, "{tally:?}");
    assert!(tally.released >= 16, "{tally:?}");
    // Beside another key (the practice), read in each grouping set's cells.
    let practices = DECILE_PRACTICES
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let by_practice = |k: &str| {
        format!(
            "SELECT gpprac, {k} AS k, COUNT(DISTINCT patient_id), AVG(startage) FROM hes_apc \
             WHERE gpprac IN ({practices}) GROUP BY 1, 2"
        )
    };
    let cells = |rows: Vec<Vec<String>>, key: &str| -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = rows
            .into_iter()
            .filter(|r| r[1] == key)
            .map(|r| [&r[..1], &r[2..]].concat())
            .collect();
        out.sort();
        out
    };
    let (wide, narrow) = (
        by_practice("substr(diag_4_01, 1, 1)"),
        by_practice("substr(diag_4_01, 1, 2)"),
    );
    let (truth_wide, truth_narrow) = (
        cells(unprotected(&cx, &wide).await, "Z"),
        cells(unprotected(&cx, &narrow).await, "Z3"),
    );
    assert_eq!(truth_wide.len(), 6, "{wide}");
    for (w, n) in truth_wide.iter().zip(&truth_narrow) {
        assert_eq!(num(&w[1]) - num(&n[1]), 1.0, "{wide}");
    }
    let answer = cells(rows(&cx, &wide).await, "Z");
    assert!(answer.len() >= 4, "{answer:?}");
    assert_eq!(answer, cells(rows(&cx, &narrow).await, "Z3"));
    // The same mapping below, grouped on or filtered above: refused.
    let p = DECILE_PRACTICES[0];
    for sql in [
        format!(
            "SELECT k, COUNT(DISTINCT patient_id), AVG(a) FROM (SELECT patient_id, \
             startage AS a, substr(diag_4_01, 1, 1) AS k FROM hes_apc WHERE gpprac = '{p}') t \
             GROUP BY k"
        ),
        format!(
            "SELECT k, COUNT(*) FROM (SELECT patient_id, substr(diag_4_01, 1, 1) AS k \
             FROM hes_apc WHERE gpprac = '{p}' GROUP BY 1, 2) t GROUP BY k"
        ),
        format!(
            "SELECT COUNT(*) FROM (SELECT patient_id, MAX(CASE WHEN diag_4_01 LIKE 'Z%' \
             THEN 1 ELSE 0 END) AS f FROM hes_apc WHERE gpprac = '{p}' GROUP BY patient_id) t \
             WHERE f = 1"
        ),
        format!(
            "SELECT COUNT(*) FROM (SELECT patient_id, COUNT(*) FILTER (WHERE \
             substr(diag_4_01, 1, 2) = 'Z3') AS n FROM hes_apc WHERE gpprac = '{p}' \
             GROUP BY patient_id) t WHERE n > 0"
        ),
        format!(
            "SELECT substr(c, 1, 1), COUNT(*) FROM (SELECT patient_id, diag_4_01 AS c \
             FROM hes_apc WHERE gpprac = '{p}' GROUP BY 1, 2) t GROUP BY 1"
        ),
        // … a flag in a join's own condition (review) …
        format!(
            "SELECT COUNT(*), AVG(p.imd_decile) FROM patients p JOIN (SELECT patient_id, \
             MAX(CASE WHEN diag_4_01 LIKE 'Z%' THEN 1 ELSE 0 END) AS f FROM hes_apc \
             WHERE gpprac = '{p}' GROUP BY 1) t ON t.patient_id = p.patient_id AND t.f = 1"
        ),
        // … a key read by class beside another key and a range on a person's value, which
        // would be snapped in the key's cells as written (review) …
        format!(
            "SELECT p.sex, substr(a.diag_4_01, 1, 1), COUNT(DISTINCT a.patient_id) FROM \
             hes_apc a JOIN patients p ON p.patient_id = a.patient_id WHERE a.gpprac = '{p}' \
             AND p.birth_month >= DATE '1960-01-01' GROUP BY 1, 2"
        ),
        // … and a key read by class beside an `OR`, whose anchors the `OR` may drop.
        format!(
            "SELECT substr(a.diag_4_01, 1, 1), COUNT(DISTINCT a.patient_id) FROM hes_apc a \
             JOIN patients p ON p.patient_id = a.patient_id WHERE a.gpprac = '{p}' \
             AND (p.sex = 'F' OR p.imd_decile = 3) GROUP BY 1"
        ),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
    // Still answered: a flag of one code, distinct codes per person, a code passed up as
    // it is, and one such key beside a range on a person's value (read after the key).
    for sql in [
        format!(
            "SELECT substr(a.diag_4_01, 1, 1), COUNT(DISTINCT a.patient_id) FROM hes_apc a \
             JOIN patients p ON p.patient_id = a.patient_id WHERE a.gpprac = '{p}' \
             AND p.birth_month >= DATE '1960-01-01' GROUP BY 1"
        ),
        format!(
            "SELECT COUNT(*) FROM (SELECT patient_id, MAX(CASE WHEN diag_4_01 = \
             '{DECILE_DIAGNOSIS}' THEN 1 ELSE 0 END) AS f FROM hes_apc GROUP BY patient_id) t \
             WHERE f = 1"
        ),
        "SELECT n, COUNT(*) FROM (SELECT patient_id, COUNT(DISTINCT diag_4_01) AS n \
         FROM hes_apc GROUP BY patient_id) t GROUP BY n"
            .to_string(),
        "SELECT c, COUNT(*) FROM (SELECT patient_id, diag_4_01 AS c FROM hes_apc \
         GROUP BY 1, 2) t GROUP BY c"
            .to_string(),
        // (A count of codes is a number, banded above as one; review.)
        "SELECT CASE WHEN n >= 3 THEN '3+' ELSE CAST(n AS VARCHAR) END, COUNT(*) FROM \
         (SELECT patient_id, COUNT(DISTINCT diag_4_01) AS n FROM hes_apc GROUP BY patient_id) t \
         GROUP BY 1"
            .to_string(),
    ] {
        assert!(outcome(&cx, &sql).await.starts_with("rows"), "{sql}");
    }
}

/// Two levels of a public hierarchy over a code of rows as grouping keys: `practices`
/// looked up by an admission's practice (`gpprac`) gives its sub-ICB and region. On the
/// planted store one person of each practice who is no anchor has their one admission at
/// [`ELSEWHERE_PRACTICE`], the only practice of sub-ICB [`ELSEWHERE_SUB_ICB`], in the region
/// of the others (sub-ICB `99Z`): the region's cell and the `99Z` cell differ by them alone
/// (beside a practice of another region, so that neither key is a condition of low effect).
/// Such keys are read by class by the code they are looked up by (the key as written where
/// the row's `gpprac` holds an anchor whose rows in the cell all hold it, else NULL), as
/// keys that map the code itself are. The same lookup passed up from below without the code
/// is refused.
#[tokio::test]
async fn levels_of_a_public_hierarchy_over_a_code_of_rows_move_no_one_alone() {
    let f = fixture_with_deciles();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    // The practice with most admitted persons, of another region.
    let other = unprotected(
        &cx,
        "SELECT a.gpprac FROM hes_apc a JOIN practices pr ON pr.practice_code = a.gpprac \
         WHERE pr.region <> 'Test Region' GROUP BY 1 ORDER BY COUNT(DISTINCT a.patient_id) \
         DESC, 1 LIMIT 1",
    )
    .await[0][0]
        .clone();
    let mut tally = Tally::default();
    for practice in DECILE_PRACTICES {
        // The person admitted elsewhere is no anchor.
        let elsewhere = unprotected(
            &cx,
            &format!(
                "SELECT a.patient_id FROM hes_apc a JOIN patients p ON p.patient_id = \
                 a.patient_id WHERE p.practice_code = '{practice}' AND a.gpprac = \
                 '{ELSEWHERE_PRACTICE}' GROUP BY 1"
            ),
        )
        .await;
        assert_eq!(elsewhere.len(), 1, "{practice}");
        let id: i64 = elsewhere[0][0].parse().expect("patient_id");
        assert!(!anchors.contains(&f.record_key(id)), "{practice}");
        let keyed = |k: &str| {
            // (The mean decile shows the one person where a count rounds them away.)
            format!(
                "SELECT {k} AS k, COUNT(DISTINCT a.patient_id), AVG(p.imd_decile) FROM \
                 hes_apc a JOIN practices pr ON pr.practice_code = a.gpprac JOIN patients p \
                 ON p.patient_id = a.patient_id WHERE p.practice_code IN ('{practice}', \
                 '{other}') GROUP BY 1"
            )
        };
        // As a condition (`k` is 1).
        let of = |c: &str| {
            format!(
                "SELECT 1 AS k, COUNT(DISTINCT a.patient_id), AVG(p.imd_decile) FROM hes_apc a \
                 JOIN practices pr ON pr.practice_code = a.gpprac JOIN patients p ON \
                 p.patient_id = a.patient_id WHERE p.practice_code IN ('{practice}', \
                 '{other}') AND {c} GROUP BY 1"
            )
        };
        for (wide, wide_cell, narrow, narrow_cell) in [
            (
                keyed("pr.region"),
                "Test Region",
                keyed("pr.sub_icb_code"),
                "99Z",
            ),
            (
                keyed("pr.region = 'Test Region'"),
                "true",
                keyed("pr.sub_icb_code = '99Z'"),
                "true",
            ),
            (
                keyed("CASE WHEN pr.region = 'Test Region' THEN 'a' ELSE 'b' END"),
                "a",
                keyed("CASE WHEN pr.sub_icb_code = '99Z' THEN 'a' ELSE 'b' END"),
                "a",
            ),
            // (The public side computed in a derived table is a function of its key too,
            // review.)
            (
                keyed("pr.region").replace(
                    "practices pr",
                    "(SELECT practice_code, region || '' AS region FROM practices) pr",
                ),
                "Test Region",
                keyed("pr.sub_icb_code"),
                "99Z",
            ),
            (
                of("pr.region = 'Test Region'"),
                "1",
                of("pr.sub_icb_code = '99Z'"),
                "1",
            ),
        ] {
            tally
                .pair(&cx, (&wide, wide_cell), (&narrow, narrow_cell))
                .await;
        }
    }
    assert_eq!(tally.differed, 0, "{tally:?}");
    assert!(tally.released >= 20, "{tally:?}");
    // The lookup passed up from below without the code, grouped on or filtered above:
    // refused.
    let p = DECILE_PRACTICES[0];
    let joined = "hes_apc a JOIN practices pr ON pr.practice_code = a.gpprac";
    for sql in [
        format!(
            "SELECT r, COUNT(DISTINCT patient_id) FROM (SELECT a.patient_id, pr.region AS r \
             FROM {joined}) t GROUP BY r"
        ),
        format!(
            "SELECT r, COUNT(*) FROM (SELECT a.patient_id, pr.region AS r FROM {joined} \
             GROUP BY 1, 2) t GROUP BY r"
        ),
        format!(
            "SELECT COUNT(*) FROM (SELECT a.patient_id, MAX(CASE WHEN pr.sub_icb_code = \
             '99Z' THEN 1 ELSE 0 END) AS f FROM {joined} GROUP BY 1) t WHERE f = 1"
        ),
        // (A list on the key through the join: measured as one condition, adding the
        // practice of one person moved the answer, 12 of 12 pairs; it shares a part with
        // the join's own test of a match, so it cannot be read by class. `a.gpprac IN
        // (…)` is.)
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM {joined} JOIN patients p ON \
             p.patient_id = a.patient_id WHERE p.practice_code IN ('{p}', '{other}') AND \
             pr.practice_code IN ('{p}', '{other}', '{ELSEWHERE_PRACTICE}')"
        ),
        format!(
            "SELECT COUNT(DISTINCT patient_id) FROM hes_apc WHERE gpprac IN (SELECT \
             practice_code FROM practices WHERE practice_code IN ('{p}', '{other}'))"
        ),
        // (Another table's `gpprac` of the same alias is not the code, review.)
        format!(
            "SELECT t.region, COUNT(DISTINCT a.patient_id) FROM hes_op a JOIN (SELECT \
             a.patient_id, pr.region FROM {joined}) t ON t.patient_id = a.patient_id \
             GROUP BY 1"
        ),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
    // Joined on no plain code (a computed key over a cross join): refused, by one rule or
    // another (review).
    for sql in [
        "SELECT pr.region, COUNT(DISTINCT a.patient_id) FROM hes_apc a, practices pr WHERE \
         pr.practice_code = upper(a.gpprac) GROUP BY 1",
        "WITH x AS (SELECT a.patient_id, a.gpprac, pr.practice_code, pr.region FROM hes_apc \
         a CROSS JOIN practices pr) SELECT region, COUNT(DISTINCT patient_id) FROM x WHERE \
         gpprac = practice_code GROUP BY 1",
    ] {
        assert!(outcome(&cx, sql).await.starts_with("FS-"), "{sql}");
    }
    // Answered: the key itself (one cell per code), the lookup beside another key (read
    // per grouping set), practices looked up by a person's registered practice, and the
    // lookup in a derived table whose list of codes carries the code up (read by it; a
    // schema error until session 48, in naming the windows over the derived table).
    for sql in [
        format!(
            "SELECT r, COUNT(DISTINCT patient_id) FROM (SELECT a.patient_id, pr.region AS r \
             FROM {joined} WHERE a.gpprac IN ('{p}', '{other}')) t GROUP BY r"
        ),
        format!(
            "SELECT pr.practice_code, COUNT(DISTINCT a.patient_id) FROM {joined} \
             WHERE a.gpprac IN ('{p}', '{other}') GROUP BY 1"
        ),
        format!(
            "SELECT date_trunc('year', a.admidate), pr.region, COUNT(DISTINCT a.patient_id) \
             FROM {joined} GROUP BY 1, 2"
        ),
        "SELECT pr.region, COUNT(*) FROM patients p JOIN practices pr ON pr.practice_code = \
         p.practice_code GROUP BY 1"
            .to_string(),
    ] {
        assert!(!rows(&cx, &sql).await.is_empty(), "{sql}");
    }
}

/// The same two levels over a person's registered practice: one person who is no anchor is
/// registered at [`ELSEWHERE_PRACTICE`] (sub-ICB [`ELSEWHERE_SUB_ICB`]), so the region's cell
/// and the `99Z` cell differ by them alone, as grouping keys and as conditions. A person's
/// category looked up in a public table is read by class by the category it is looked up by
/// (`p.practice_code`): as a key, as written where the person's practice holds an anchor in
/// the cell (else NULL); as a condition, as the session-35 classes are.
#[tokio::test]
async fn levels_of_a_public_hierarchy_over_a_persons_practice_move_no_one_alone() {
    let f = fixture_with_deciles();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    let elsewhere = f.cohort(ELSEWHERE_PRACTICE);
    assert_eq!(elsewhere.len(), 1);
    assert!(!anchors.contains(&elsewhere[0].record_key));
    let joined = "patients p JOIN practices pr ON pr.practice_code = p.practice_code";
    let mut tally = Tally::default();
    for filter in [
        "TRUE",
        "p.sex = 'F'",
        "p.birth_month >= DATE '1950-01-01'",
        "p.imd_decile <= 5",
    ] {
        let query = |k: &str, c: &str| {
            // (The mean decile shows the one person where a count rounds them away.)
            format!(
                "SELECT {k} AS k, COUNT(*), AVG(p.imd_decile) FROM {joined} WHERE {filter} \
                 AND {c} GROUP BY 1"
            )
        };
        // (Through a derived table that passes the practice up too, review.)
        let derived = |c: &str| {
            format!(
                "SELECT 1 AS k, COUNT(*), AVG(imd_decile) FROM (SELECT p.patient_id, \
                 p.practice_code, p.sex, p.birth_month, p.imd_decile, pr.region, \
                 pr.sub_icb_code FROM {joined}) p WHERE {filter} AND {c} GROUP BY 1"
            )
        };
        for (wide, wide_cell, narrow, narrow_cell) in [
            (
                derived("region = 'Test Region'"),
                "1",
                derived("sub_icb_code = '99Z'"),
                "1",
            ),
            (
                query("pr.region", "TRUE"),
                "Test Region",
                query("pr.sub_icb_code", "TRUE"),
                "99Z",
            ),
            (
                query("pr.region = 'Test Region'", "TRUE"),
                "true",
                query("pr.sub_icb_code = '99Z'", "TRUE"),
                "true",
            ),
            (
                query("1", "pr.region = 'Test Region'"),
                "1",
                query("1", "pr.sub_icb_code = '99Z'"),
                "1",
            ),
        ] {
            tally
                .pair(&cx, (&wide, wide_cell), (&narrow, narrow_cell))
                .await;
        }
    }
    assert_eq!(tally.differed, 0, "{tally:?}");
    assert_eq!(tally.released, tally.pairs, "{tally:?}");
    // Passed up in a derived table without the practice it is looked up by: refused as a
    // key and as a condition. An equality on it in an `OR` with another column's is a
    // list of practices there, which cannot be read by class: refused (review).
    for sql in [
        format!(
            "SELECT r, COUNT(*) FROM (SELECT p.patient_id, pr.region AS r FROM {joined}) t \
             GROUP BY r"
        ),
        format!(
            "SELECT COUNT(*) FROM (SELECT p.patient_id, pr.region AS r FROM {joined}) t \
             WHERE r = 'Test Region'"
        ),
        format!("SELECT COUNT(*) FROM {joined} WHERE pr.region = 'Test Region' OR p.sex = 'Q'"),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
}

/// Two levels of a code compared with values of the query's own (session 49): the
/// session-47 pair (`substr(diag_4_01, 1, 1)`'s `Z` against `(…, 1, 2)`'s `Z3`) with its
/// values moved into a cross-joined `VALUES`, so that the condition reads two relations and
/// was neither read by class nor snapped: one measured condition, whose cells differed by
/// the one person of each planted practice with only a `Z99X` code (12 of 12 answered
/// pairs). Refused now (FS-7), as are the same through a public table's column and two
/// rows' codes mapped and compared (a self-join's `substr(a.…) = substr(b.…)`, two looked-up
/// regions). The codes compared as they are, the lookup join spelt in `WHERE` and
/// consecutive episodes are answered.
#[tokio::test]
async fn a_code_compared_with_values_of_the_querys_own_is_refused() {
    let f = fixture_with_deciles();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    let values = "(VALUES ('Z30X', 'Z', 'Z3')) v(c, d, e)";
    for practice in DECILE_PRACTICES {
        assert_rare_person_is_no_anchor(f, &cx, practice, &anchors).await;
        let of = |c: &str| {
            format!(
                "SELECT 1 AS k, COUNT(DISTINCT a.patient_id), AVG(p.imd_decile) FROM hes_apc a \
                 JOIN patients p ON p.patient_id = a.patient_id CROSS JOIN {values} WHERE \
                 p.practice_code = '{practice}' AND {c} GROUP BY 1"
            )
        };
        for (wide, narrow) in [
            (
                "substr(a.diag_4_01, 1, 1) = v.d",
                "substr(a.diag_4_01, 1, 2) = v.e",
            ),
            (
                "substr(a.diag_4_01, 1, 1) = substr(v.c, 1, 1)",
                "substr(a.diag_4_01, 1, 2) = substr(v.c, 1, 2)",
            ),
        ] {
            // One person apart in truth: the one with only a `Z99X` code.
            assert_apart_and_refused(&cx, &of(wide), &of(narrow), 1).await;
        }
    }
    let self_join = "hes_apc a JOIN hes_apc b ON a.patient_id = b.patient_id AND a.admidate < \
                     b.admidate";
    let regions = "hes_apc a JOIN practices pr ON pr.practice_code = a.gpprac JOIN hes_apc b \
                   ON b.patient_id = a.patient_id JOIN practices q ON q.practice_code = \
                   b.gpprac";
    for sql in [
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM {self_join} AND substr(a.diag_4_01, 1, \
             1) = substr(b.diag_4_01, 1, 1)"
        ),
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM {self_join} WHERE substr(a.diag_4_01, 1, \
             2) = substr(b.diag_4_01, 1, 2)"
        ),
        format!("SELECT COUNT(DISTINCT a.patient_id) FROM {regions} WHERE pr.region = q.region"),
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a CROSS JOIN (SELECT sub_icb_code \
             FROM practices WHERE practice_code = '{ELSEWHERE_PRACTICE}') s WHERE \
             substr(a.diag_4_01, 1, 1) = substr(s.sub_icb_code, 3, 1)"
        ),
        format!(
            "SELECT COUNT(DISTINCT patient_id) FROM patients WHERE patient_id IN (SELECT \
             a.patient_id FROM hes_apc a CROSS JOIN {values} WHERE substr(a.diag_4_01, 1, 1) \
             = v.d)"
        ),
        "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a CROSS JOIN (VALUES (40, 49)) \
         v(lo, hi) WHERE a.startage / 10 = v.lo / 10"
            .to_string(),
        // (Found by the review: a relation of literals, a truth test that keeps the
        // equality out of the join; a person's category against a grouped public table; a
        // list of ordinals in arithmetic beside another relation; a list in one atom
        // compared with another relation's column.)
        "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a CROSS JOIN (SELECT 'Z30X' AS c \
         UNION ALL SELECT 'Z99X' AS c) v WHERE (a.diag_4_01 = v.c) IS TRUE"
            .to_string(),
        "SELECT COUNT(DISTINCT p.patient_id) FROM patients p CROSS JOIN (SELECT practice_code \
         AS pc FROM practices WHERE sub_icb_code = '98Z' GROUP BY 1) m WHERE (p.practice_code \
         = m.pc) IS TRUE"
            .to_string(),
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM {self_join} WHERE (a.epiorder - 2) * \
             (a.epiorder - 3) = 0 * b.epiorder"
        ),
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM {self_join} WHERE (a.diag_4_01 = 'Z30X' \
             OR a.diag_4_01 = 'Z99X') = (b.admidate IS NOT NULL)"
        ),
        // (Second review: a code passed up as it is through an aggregation, against a
        // relation of literals; an episode number shifted by more than one, a range of
        // spell lengths.)
        "SELECT COUNT(DISTINCT t.patient_id) FROM (SELECT patient_id, diag_4_01 AS c FROM \
         hes_apc GROUP BY patient_id, diag_4_01) t CROSS JOIN (SELECT 'Z30X' AS c UNION ALL \
         SELECT 'Z99X' AS c) v WHERE (t.c = v.c) IS TRUE"
            .to_string(),
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM {self_join} WHERE b.epiorder = a.epiorder + 3"
        ),
        // A lossy cast of a code: the codes past nine digits or with a letter.
        "SELECT COUNT(DISTINCT patient_id) FROM clinical_events WHERE \
         TRY_CAST(snomedct_code AS DECIMAL(9, 0)) IS NULL"
            .to_string(),
        "SELECT COUNT(DISTINCT patient_id) FROM hes_apc WHERE CAST(admimeth AS INT) = 21"
            .to_string(),
        // (A number against a string code: cast to the number after the rewrite, `= 1`
        // holds for `'1'` and `'01'` alike.)
        "SELECT COUNT(DISTINCT patient_id) FROM hes_apc WHERE admimeth = 21".to_string(),
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM {self_join} WHERE a.admimeth = b.epiorder"
        ),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
    for sql in [
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM {self_join} WHERE a.diag_4_01 = b.diag_4_01"
        ),
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM {self_join} WHERE a.admimeth <> \
             b.admimeth"
        ),
        "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a JOIN patients p ON p.patient_id = \
         a.patient_id WHERE a.gpprac <> p.practice_code"
            .to_string(),
        "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a JOIN hes_apc b ON a.patient_id = \
         b.patient_id AND b.epiorder = a.epiorder + 1"
            .to_string(),
        "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a, practices pr WHERE \
         pr.practice_code = a.gpprac AND pr.region = 'Test Region'"
            .to_string(),
    ] {
        assert!(!rows(&cx, &sql).await.is_empty(), "{sql}");
    }
}

/// A lossy cast of a code (session 49): `TRY_CAST(snomedct_code AS DECIMAL(p, 0)) IS NOT
/// NULL` holds for the numeric codes of at most `p` digits, a set whose edge the precision
/// picks. As a condition it was one measured condition: the practice whose persons with
/// such a code differ by one between two precisions answered 290 and 290 with mean deciles
/// 3.47 and 3.5. Refused now (FS-7). As a grouping key it is read by class, as a function
/// of the code is, and the two `true` cells are equal. (They were equal before too, the
/// key left as written: this pair's key is neutralised as of low effect. The store shows no
/// pair of `NULL` cells of the cast itself one person apart; the class reading follows
/// the session-47 argument for functions of a code.)
#[tokio::test]
async fn a_lossy_cast_of_a_code_moves_no_one_alone() {
    let f = fixture_with_deciles();
    let cx = f.project(RESEARCH).await;
    let of = |p: usize, filter: &str| {
        format!(
            "SELECT p.practice_code AS k, COUNT(DISTINCT e.patient_id), AVG(p.imd_decile) FROM \
             clinical_events e JOIN patients p ON p.patient_id = e.patient_id WHERE {filter} \
             TRY_CAST(e.snomedct_code AS DECIMAL({p}, 0)) IS NOT NULL GROUP BY 1"
        )
    };
    let keyed = |p: usize, practice: &str| {
        format!(
            "SELECT TRY_CAST(e.snomedct_code AS DECIMAL({p}, 0)) IS NOT NULL AS k, \
             COUNT(DISTINCT e.patient_id), AVG(p.imd_decile) FROM clinical_events e JOIN \
             patients p ON p.patient_id = e.patient_id WHERE p.practice_code = '{practice}' \
             GROUP BY 1"
        )
    };
    let mut tally = Tally::default();
    for p in 6..18 {
        let narrow = unprotected(&cx, &of(p, "")).await;
        for wide in unprotected(&cx, &of(p + 1, "")).await {
            let persons = num(&wide[1]);
            let fewer = narrow
                .iter()
                .find(|r| r[0] == wide[0])
                .map_or(0.0, |r| num(&r[1]));
            if persons - fewer != 1.0 || persons < 10.0 {
                continue;
            }
            let filter = format!("p.practice_code = '{}' AND", wide[0]);
            for sql in [of(p + 1, &filter), of(p, &filter)] {
                assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
            }
            tally
                .pair(
                    &cx,
                    (&keyed(p + 1, &wide[0]), "true"),
                    (&keyed(p, &wide[0]), "true"),
                )
                .await;
        }
    }
    assert!(tally.pairs >= 1, "{tally:?}");
    assert_eq!(tally.differed, 0, "{tally:?}");
    assert_eq!(tally.released, tally.pairs, "{tally:?}");
    // Inside an aggregated value a lossy cast is a condition (`imd_decile + 118` fits a
    // `TINYINT` for the deciles up to 9), and a code passed up as it is and cast above is
    // a mapping below (second review): refused.
    for sql in [
        "SELECT COUNT(TRY_CAST(p.imd_decile + 118 AS TINYINT)) FROM patients p",
        "SELECT COUNT(t.c) FROM (SELECT patient_id, MAX(TRY_CAST(snomedct_code AS DECIMAL(9, \
         0))) AS c FROM clinical_events GROUP BY patient_id) t",
        "SELECT TRY_CAST(t.c AS DECIMAL(9, 0)) IS NOT NULL AS k, COUNT(DISTINCT t.patient_id) \
         FROM (SELECT patient_id, snomedct_code AS c FROM clinical_events GROUP BY patient_id, \
         snomedct_code) t GROUP BY 1",
    ] {
        assert_eq!(refused(&cx, sql).await, Rule::LowEffect, "{sql}");
    }
    // A cast that keeps every value, and one read by class with the code (the ICD-10 range
    // idiom), are answered.
    for sql in [
        "SELECT COUNT(DISTINCT patient_id) FROM hes_apc WHERE CAST(substr(diag_4_01, 2, 2) AS \
         INT) BETWEEN 20 AND 25",
        "SELECT COUNT(DISTINCT patient_id) FROM hes_apc WHERE CAST(startage AS BIGINT) >= 40",
        "SELECT SUM(CAST(startage AS DOUBLE)) FROM hes_apc",
    ] {
        assert!(!rows(&cx, sql).await.is_empty(), "{sql}");
    }
}

/// A prefix or a mapping of a code in a cohort subquery (open since session 46): `patient_id
/// IN (SELECT patient_id FROM hes_apc WHERE diag_4_01 LIKE 'Z%')` against `'Z3%'` was one
/// measured condition, and the two cohorts differ by the one person of each planted practice
/// whose only `Z` code is `Z99X`: answered 20 and 20 with different mean deciles (3.03
/// against 3.27 in X90001) in 6 of 6 practices and for each of three spellings (a prefix,
/// `substr`, a range of codes; session 49).
/// Refused now (FS-7), as a list there is; one equality stays answered, and the prefix in
/// the query that counts is read by class.
#[tokio::test]
async fn a_prefix_or_a_mapped_code_in_a_cohort_is_refused() {
    let f = fixture_with_deciles();
    let cx = f.project(RESEARCH).await;
    let anchors = edge_anchor_keys();
    let cohort = |practice: &str, c: &str| {
        format!(
            "SELECT COUNT(DISTINCT p.patient_id), AVG(p.imd_decile) FROM patients p WHERE \
             p.practice_code = '{practice}' AND p.patient_id IN (SELECT patient_id FROM \
             hes_apc WHERE {c})"
        )
    };
    for practice in DECILE_PRACTICES {
        assert_rare_person_is_no_anchor(f, &cx, practice, &anchors).await;
        for (wide, narrow) in [
            ("diag_4_01 LIKE 'Z%'", "diag_4_01 LIKE 'Z3%'"),
            (
                "substr(diag_4_01, 1, 1) = 'Z'",
                "substr(diag_4_01, 1, 2) = 'Z3'",
            ),
            (
                "diag_4_01 BETWEEN 'Z' AND 'Z~'",
                "diag_4_01 BETWEEN 'Z3' AND 'Z3~'",
            ),
        ] {
            let (wide, narrow) = (cohort(practice, wide), cohort(practice, narrow));
            assert_apart_and_refused(&cx, &wide, &narrow, 0).await;
        }
    }
    let p = DECILE_PRACTICES[0];
    for sql in [
        cohort(p, &format!("diag_4_01 = '{DECILE_DIAGNOSIS}'")),
        format!(
            "SELECT COUNT(DISTINCT a.patient_id) FROM hes_apc a JOIN patients p ON \
             p.patient_id = a.patient_id WHERE p.practice_code = '{p}' AND a.diag_4_01 LIKE \
             'Z%'"
        ),
    ] {
        assert!(!rows(&cx, &sql).await.is_empty(), "{sql}");
    }
}

/// Asserts that one-row queries `wide` and `narrow` count one person apart in truth (column
/// `at`, unprotected) and that both are refused by rule 7.
async fn assert_apart_and_refused(cx: &ProjectContext, wide: &str, narrow: &str, at: usize) {
    let persons = |rows: Vec<Vec<String>>| num(&rows[0][at]);
    assert_eq!(
        persons(unprotected(cx, wide).await) - persons(unprotected(cx, narrow).await),
        1.0,
        "{wide}"
    );
    for sql in [wide, narrow] {
        assert_eq!(refused(cx, sql).await, Rule::LowEffect, "{sql}");
    }
}

/// Pairs of cells one person apart in truth, and how their released answers compare.
#[derive(Debug, Default)]
struct Tally {
    pairs: usize,
    /// Pairs whose released cells differ (one released and not the other included).
    differed: usize,
    /// Pairs whose wider cell is released.
    released: usize,
}

impl Tally {
    /// Asserts that cell `wide.1` (the first column's value) of query `wide.0` holds one
    /// person more than cell `narrow.1` of `narrow.0` (the second column, unprotected),
    /// and counts the pair.
    async fn pair(&mut self, cx: &ProjectContext, wide: (&str, &str), narrow: (&str, &str)) {
        let cell = |rows: Vec<Vec<String>>, key: &str| -> Option<Vec<String>> {
            rows.into_iter()
                .find(|r| r[0] == key)
                .map(|r| r[1..].to_vec())
        };
        let persons =
            |rows: Vec<Vec<String>>, key: &str| cell(rows, key).map_or(0.0, |r| num(&r[0]));
        assert_eq!(
            persons(unprotected(cx, wide.0).await, wide.1)
                - persons(unprotected(cx, narrow.0).await, narrow.1),
            1.0,
            "{}",
            wide.0
        );
        let answer = cell(rows(cx, wide.0).await, wide.1);
        self.differed += usize::from(answer != cell(rows(cx, narrow.0).await, narrow.1));
        self.released += usize::from(answer.is_some());
        self.pairs += 1;
    }
}

/// Asserts that one person of planted `practice` has an admission coded
/// [`DECILE_RARE_DIAGNOSIS`] and that they are no anchor.
async fn assert_rare_person_is_no_anchor(
    f: &Fixture,
    cx: &ProjectContext,
    practice: &str,
    anchors: &[u8],
) {
    let rare = unprotected(
        cx,
        &format!(
            "SELECT patient_id FROM hes_apc WHERE gpprac = '{practice}' \
             AND diag_4_01 = '{DECILE_RARE_DIAGNOSIS}' GROUP BY 1"
        ),
    )
    .await;
    assert_eq!(rare.len(), 1, "{practice}");
    let id: i64 = rare[0][0].parse().expect("patient_id");
    assert!(!anchors.contains(&f.record_key(id)), "{practice}");
}
