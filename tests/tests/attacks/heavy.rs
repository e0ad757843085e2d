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
    // Per person: 24 with one reading, the heavy value's one, the many readings' 400.
    let per_person_rows: Vec<u64> = f
        .cohort(HEAVY_PRACTICE)
        .iter()
        .map(|q| q.events.iter().filter(|e| e.2.is_some()).count() as u64)
        .collect();
    let rows_averaged = 24 + 1 + HEAVY_ROWS as u64;
    assert_eq!(per_person_rows.iter().sum::<u64>(), rows_averaged);
    let released = num(&single(&cx, AVG).await.expect("released"));
    assert_eq!(
        protect_mean(&c, rows_averaged, &per_person_rows, key, &p).value(),
        Some(released)
    );
    let mut ordinary = c.clone();
    for v in ordinary.iter_mut().filter(|v| **v >= 100.0) {
        *v = 80.0;
    }
    assert_eq!(
        protect_mean(&ordinary, rows_averaged, &per_person_rows, key, &p).value(),
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

/// A count of rows is a sum of per-person row counts: one person with a hundred events in a
/// cell of thirty with one each made `COUNT(*)` 130 against 30 without their code, which
/// told that someone has about a hundred. Their count is flattened like a heavy sum.
#[tokio::test]
async fn a_person_with_many_rows_does_not_stand_out_of_a_count_of_rows() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    let rows_of = |practice: &str, code: &str| -> Vec<u64> {
        f.cohort(practice)
            .iter()
            .map(|q| q.events.iter().filter(|e| e.1 == code).count() as u64)
            .filter(|n| *n > 0)
            .collect()
    };
    // The differencing cohort (one event each) and the one person with 100 events of his code.
    let mut per_person = rows_of(DIFF_PRACTICE, DIFF_CODE);
    per_person.extend(rows_of(AMP_PRACTICE, AMP_CODE));
    assert_eq!(per_person.len(), DIFF_SIZE + 1);
    assert_eq!(per_person.iter().max(), Some(&(AMP_ROWS as u64)));
    let persons: Vec<_> = f
        .cohort(DIFF_PRACTICE)
        .into_iter()
        .chain(
            f.cohort(AMP_PRACTICE)
                .into_iter()
                .filter(|q| !q.events.is_empty()),
        )
        .collect();
    let key = f.cell_key(persons);
    let want = expected_rows(&per_person, key, &p);
    // Had he one event, the answer would be the same: it does not depend on his hundred.
    assert_eq!(want, expected_rows(&vec![1; DIFF_SIZE + 1], key, &p));
    let released = want.clone().expect("31 persons are released");
    assert!(num(&released) <= 40.0, "{released}");
    for sql in [
        format!(
            "SELECT COUNT(*) FROM clinical_events WHERE snomedct_code IN ('{DIFF_CODE}', '{AMP_CODE}')"
        ),
        format!(
            "SELECT COUNT(numeric_value) FROM clinical_events \
             WHERE snomedct_code = '{DIFF_CODE}' OR snomedct_code = '{AMP_CODE}'"
        ),
    ] {
        assert_eq!(single(&cx, &sql).await, want, "{sql}");
    }

    // The heavy practice: 24 persons with one reading, one with one huge reading and one
    // with 400 readings. Flattened, the count is that of 26 persons with one reading each.
    let heavy = rows_of(HEAVY_PRACTICE, HEAVY_CODE);
    assert_eq!(heavy.iter().sum::<u64>(), 24 + 1 + HEAVY_ROWS as u64);
    let key = f.cell_key(f.cohort(HEAVY_PRACTICE));
    let want = expected_rows(&heavy, key, &p);
    assert_eq!(want, expected_rows(&[1; 26], key, &p));
    let sql = format!("SELECT COUNT(*) FROM clinical_events WHERE snomedct_code = '{HEAVY_CODE}'");
    assert_eq!(single(&cx, &sql).await, want, "{sql}");
    assert!(num(&want.expect("released")) <= 35.0);

    // A count of a column stands on the persons who have a value, not on the cell's: in his
    // 12-person practice only he has events, so this is his count alone and is withheld
    // (NULL in a cell whose 12 persons are released; it released about 100 before, and
    // would be 5 flattened over persons who add nothing).
    for sql in [
        "SELECT COUNT(e.numeric_value) FROM patients p \
         LEFT JOIN clinical_events e ON p.patient_id = e.patient_id \
         WHERE p.practice_code = 'X70001'",
        "SELECT p.sex, COUNT(e.event_date) FROM patients p \
         LEFT JOIN clinical_events e ON p.patient_id = e.patient_id \
         WHERE p.practice_code = 'X70001' GROUP BY p.sex",
    ] {
        let got = rows(&cx, sql).await;
        assert!(!got.is_empty(), "{sql}");
        for r in &got {
            assert_eq!(r.last().map(String::as_str), Some("NULL"), "{sql}: {got:?}");
        }
    }
    // The practice's persons themselves are released.
    let sql = "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
               LEFT JOIN clinical_events e ON p.patient_id = e.patient_id \
               WHERE p.practice_code = 'X70001'";
    assert!(single(&cx, sql).await.is_some(), "{sql}");
}
