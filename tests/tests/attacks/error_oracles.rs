//! Error oracles: an expression that fails at run time only for one person's values
//! (division by zero, a failed cast) turns "did the query fail?" into "is the person there?".
//! DESIGN.md rule 6: a query either fails for reasons visible in its text, or runs. So the
//! same query about a person who is in the cohort and about one who is not must have the same
//! outcome (both run, or both are refused with the same rule), and never fail while running.

use fivesafes_policies::decision::Rule;

use crate::common::*;

/// Birth month of a person of the differencing cohort (present), and one nobody has.
const PRESENT: &str = "1940-03-01";
const ABSENT: &str = "1840-03-01";

/// Attacks over a target birth month `{m}`: each fails at run time iff someone in practice
/// X20001 has that birth month, unless rule 6 neutralises it.
const ORACLES: &[&str] = &[
    // Integer division by zero.
    "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001' \
     AND 1 / (CASE WHEN birth_month = DATE '{m}' THEN 0 ELSE 1 END) = 1",
    // Integer remainder by zero.
    "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001' \
     AND 7 % (CASE WHEN birth_month = DATE '{m}' THEN 0 ELSE 2 END) = 1",
    // Division by zero inside an aggregate's argument.
    "SELECT SUM(10 / CASE WHEN birth_month = DATE '{m}' THEN 0 ELSE 1 END) FROM patients \
     WHERE practice_code = 'X20001'",
    // A cast that fails on the person's value only.
    "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001' \
     AND CASE WHEN birth_month = DATE '{m}' THEN CAST(sex AS INT) ELSE 0 END = 0",
    // A failed cast in a grouping key.
    "SELECT CASE WHEN birth_month = DATE '{m}' THEN CAST(ethnicity AS BIGINT) ELSE 1 END AS k, \
     COUNT(*) FROM patients WHERE practice_code = 'X20001' GROUP BY 1",
    // A failed date parse.
    "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001' \
     AND to_date(CASE WHEN birth_month = DATE '{m}' THEN 'not a date' ELSE '2020-01-01' END) \
     IS NOT NULL",
    // An overflowing cast.
    "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001' \
     AND CAST(CASE WHEN birth_month = DATE '{m}' THEN 1e300 ELSE 1 END AS BIGINT) > 0",
    // Date arithmetic that overflows on the person's value only (session 40).
    "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001' \
     AND CASE WHEN birth_month = DATE '{m}' THEN birth_month + INTERVAL '262000' YEAR \
     ELSE birth_month END > DATE '1800-01-01'",
    // ... past the end of a nanosecond timestamp (2262).
    "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001' \
     AND CASE WHEN birth_month = DATE '{m}' \
     THEN CAST(birth_month AS TIMESTAMP) + INTERVAL '400' YEAR \
     ELSE CAST(birth_month AS TIMESTAMP) END > TIMESTAMP '1800-01-01 00:00:00'",
];

/// The kind of an outcome: `rows`, the refusing rule with its message, `invalid: …`, or
/// `execution error`.
fn kind(outcome: &str) -> &str {
    if outcome.starts_with("rows: ") {
        "rows"
    } else {
        outcome
    }
}

#[tokio::test]
async fn run_time_errors_do_not_reveal_whether_a_person_is_there() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let mut leaks = Vec::new();
    for template in ORACLES {
        let present = outcome(&cx, &template.replace("{m}", PRESENT)).await;
        let absent = outcome(&cx, &template.replace("{m}", ABSENT)).await;
        if kind(&present) != kind(&absent) || present == "execution error" {
            leaks.push(format!(
                "{template}\n    person present: {present}\n    person absent:  {absent}"
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} of {} error oracles tell whether the person is in the cohort:\n{}",
        leaks.len(),
        ORACLES.len(),
        leaks.join("\n")
    );
}

#[tokio::test]
async fn errors_visible_in_the_text_do_not_depend_on_the_data() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // These fail whatever the data, for reasons visible in their text: the outcome (run,
    // refusal, or failure) must be the same for a practice of 30 persons and for one that
    // does not exist.
    for template in [
        "SELECT COUNT(*) FROM patients WHERE practice_code = '{p}' AND 1 / 0 = 1",
        "SELECT COUNT(*) FROM patients WHERE practice_code = '{p}' AND CAST('x' AS INT) = 1",
        "SELECT SUM(1 / 0) FROM patients WHERE practice_code = '{p}'",
    ] {
        let full = outcome(&cx, &template.replace("{p}", DIFF_PRACTICE)).await;
        let empty = outcome(&cx, &template.replace("{p}", "Q99999")).await;
        assert_eq!(kind(&full), kind(&empty), "{template}");
    }
}

#[tokio::test]
async fn date_arithmetic_is_answered_only_where_it_cannot_overflow() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // Stored dates are in 1850–2199: a literal interval of up to 50 years in all cannot
    // take one past even a nanosecond timestamp's range, so such a query runs.
    for within in [
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'F81002' \
         AND birth_month + INTERVAL '30' DAY > DATE '1900-01-01'",
        // A chain of literal intervals is a date plus literals, not a computed interval.
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'F81002' \
         AND birth_month + INTERVAL '1' YEAR - INTERVAL '30' DAY > DATE '1900-01-01'",
    ] {
        assert!(outcome(&cx, within).await.starts_with("rows: "), "{within}");
    }
    // More in all, or an interval computed from the data, is refused whatever the data.
    for sql in [
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'F81002' \
         AND birth_month + INTERVAL '30' YEAR + INTERVAL '30' YEAR > DATE '1900-01-01'",
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'F81002' \
         AND birth_month - INTERVAL '262000' YEAR < DATE '1900-01-01'",
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'F81002' \
         AND birth_month + CAST(imd_decile || ' years' AS INTERVAL) > DATE '1900-01-01'",
    ] {
        assert_eq!(refused(&cx, sql).await, Rule::SideChannel, "{sql}");
    }
}
