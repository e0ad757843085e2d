//! Heavy contributors: one person whose value (or number of rows) dwarfs everyone else's,
//! so that a sum or mean over a cell is mostly that person's value. DESIGN.md rule 4: the top
//! one or two per-person contributions of a cell are flattened to the mean of the next few
//! before noise is added, so the released answer does not depend on how large the top
//! contributions are, and cannot be read back.

use fivesafes_policies::output::{protect_mean, protect_sum};

use crate::common::*;

const SUM: &str =
    "SELECT SUM(numeric_value) FROM clinical_events WHERE snomedct_code = '999000003'";
const AVG: &str =
    "SELECT AVG(numeric_value) FROM clinical_events WHERE snomedct_code = '999000003'";

/// Per-person contributions of the heavy cohort (sum of each person's values).
fn contributions(f: &Fixture) -> Vec<f64> {
    f.cohort(HEAVY_PRACTICE)
        .iter()
        .map(|p| p.events.iter().filter_map(|e| e.2).sum())
        .collect()
}

#[tokio::test]
async fn one_huge_contribution_is_flattened() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    let cohort = f.cohort(HEAVY_PRACTICE);
    let key = f.cell_key(cohort.iter().copied());
    let c = contributions(f);
    assert_eq!(c.len(), 26);
    assert!(c.contains(&HEAVY_VALUE) && c.contains(&(60.0 * HEAVY_ROWS as f64)));
    let others: f64 = c.iter().filter(|v| **v < 100.0).sum();
    assert_eq!(others, (50..74).sum::<i32>() as f64);

    let released = single(&cx, SUM).await.expect("26 persons are released");
    let released = num(&released);
    // Exactly the documented protection of these contributions...
    assert_eq!(protect_sum(&c, key, &p).value(), Some(released));
    // ...which is the answer the cell would get if the two heavy persons had ordinary
    // values: the answer does not depend on the heavy values at all.
    let mut ordinary = c.clone();
    for v in ordinary.iter_mut().filter(|v| **v >= 100.0) {
        *v = 80.0;
    }
    assert_eq!(protect_sum(&ordinary, key, &p).value(), Some(released));
    // And it is close to the sum of everyone else, nowhere near 1,000,000 or 24,000 more.
    let largest_other = 73.0;
    assert!(
        (released - others).abs() <= 3.0 * largest_other,
        "released {released}, others {others}"
    );
}

#[tokio::test]
async fn a_mean_does_not_reveal_a_heavy_contributor() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    let key = f.cell_key(f.cohort(HEAVY_PRACTICE));
    let c = contributions(f);
    let rows_averaged = 24 + 1 + HEAVY_ROWS as u64;
    let released = num(&single(&cx, AVG).await.expect("released"));
    assert_eq!(
        protect_mean(&c, rows_averaged, key, &p).value(),
        Some(released)
    );
    let mut ordinary = c.clone();
    for v in ordinary.iter_mut().filter(|v| **v >= 100.0) {
        *v = 80.0;
    }
    assert_eq!(
        protect_mean(&ordinary, rows_averaged, key, &p).value(),
        Some(released)
    );
    // The true mean is over 2,000 (1,000,000 / 425 rows); the released one is not.
    assert!(released < 100.0, "{released}");
}

#[tokio::test]
async fn a_heavy_contributor_inside_a_larger_grouped_sum_is_flattened_too() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let sql = "SELECT p.practice_code, SUM(e.numeric_value) FROM patients p \
               JOIN clinical_events e ON p.patient_id = e.patient_id \
               WHERE p.practice_code IN ('X20001', 'X30001', 'X50001') \
               GROUP BY p.practice_code ORDER BY 1";
    let got = rows(&cx, sql).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let heavy = got
        .iter()
        .find(|r| r[0] == HEAVY_PRACTICE)
        .map(|r| num(&r[1]))
        .expect("heavy practice released");
    assert_eq!(heavy, num(&single(&cx, SUM).await.expect("released")));
}
