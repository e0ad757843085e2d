//! Chaff conditions: conditions that exclude nobody (`birth_month <> DATE '1801-01-01'`),
//! added only to make the query text different and, the attacker hopes, draw fresh noise.
//! The noise follows the persons behind a cell, not the text (DESIGN.md rule 4), so every
//! chaffed query gets exactly the unchaffed answer.

use crate::common::*;

/// Forty conditions that are true for every planted person.
fn chaff() -> Vec<String> {
    let mut out = Vec::new();
    for k in 1..=25 {
        out.push(format!("birth_month <> DATE '{}-01-01'", 1800 + k));
    }
    for letter in "BCDEFGHIJKLMNOP".chars() {
        out.push(format!("ethnicity <> '{letter}'"));
    }
    out
}

#[tokio::test]
async fn chaff_conditions_do_not_draw_fresh_noise_on_counts() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let base = "SELECT COUNT(*) FROM patients WHERE practice_code = 'X60001' AND sex = 'F'";
    let women: Vec<&Planted> = f
        .cohort(REPHRASE_PRACTICE)
        .into_iter()
        .filter(|p| p.sex == 'F')
        .collect();
    let want = expected_count(36, 36, f.cell_key(women), cx.output_control());
    assert_eq!(single(&cx, base).await, want);
    assert!(want.is_some());
    let mut differing = Vec::new();
    let conditions = chaff();
    for (i, c) in conditions.iter().enumerate() {
        // One chaff condition, then an accumulating pile of them.
        let one = format!("{base} AND {c}");
        let pile = format!("{base} AND {}", conditions[..=i].join(" AND "));
        for sql in [one, pile] {
            let got = single(&cx, &sql).await;
            if got != want {
                differing.push(format!("{sql} -> {got:?}"));
            }
        }
    }
    assert!(
        differing.is_empty(),
        "chaff changed the released count (expected {want:?}):\n{}",
        differing.join("\n")
    );
}

#[tokio::test]
async fn chaff_conditions_do_not_draw_fresh_noise_on_sums_and_groups() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let sum = "SELECT SUM(numeric_value), AVG(numeric_value) FROM clinical_events \
               WHERE snomedct_code = '999000002'";
    let grouped = "SELECT sex, COUNT(*) FROM patients WHERE practice_code = 'X60001'";
    let sum_base = rows(&cx, sum).await;
    let grouped_base = sorted_rows(&cx, &format!("{grouped} GROUP BY sex")).await;
    assert_eq!(sum_base.len(), 1);
    assert_eq!(
        grouped_base.len(),
        2,
        "the 36 women and the 14 men are released: {grouped_base:?}"
    );
    for k in 0..30 {
        let sql = format!("{sum} AND numeric_value <> {}.5", 1000 + k);
        assert_eq!(rows(&cx, &sql).await, sum_base, "{sql}");
        let sql = format!("{sum} AND event_date <> DATE '1999-01-{:02}'", 1 + k % 28);
        assert_eq!(rows(&cx, &sql).await, sum_base, "{sql}");
        let sql = format!(
            "{grouped} AND birth_month <> DATE '{}-06-01' GROUP BY sex",
            1800 + k
        );
        assert_eq!(sorted_rows(&cx, &sql).await, grouped_base, "{sql}");
    }
    // Chaff in a join condition to a public table.
    for k in 0..10 {
        let sql = format!(
            "SELECT p.sex, COUNT(*) FROM patients p JOIN practices r \
             ON p.practice_code = r.practice_code AND r.region <> 'Nowhere {k}' \
             WHERE p.practice_code = 'X60001' GROUP BY p.sex"
        );
        assert_eq!(sorted_rows(&cx, &sql).await, grouped_base, "{sql}");
    }
}
