//! Linear reconstruction (Dinur–Nissim): sums over many pseudo-random subsets of a cohort,
//! then a least-squares solve for every person's value. Here the subsets are cells of
//! `GROUP BY` expressions over event dates, so no subset is selected by a low-effect
//! condition. What stops the attack: subsets of 7 or fewer persons are suppressed; every
//! released sum carries noise in proportion to the cohort's largest values, drawn from its
//! cell key (the same subset always gets the same answer, so asking again or rephrasing adds
//! no equation), and is rounded to 3 significant figures.

use std::collections::BTreeMap;

use fivesafes_policies::output::{is_low_effect, protect_sum, round_sig};

use crate::common::*;

/// A `GROUP BY` expression and the function that computes locally which cell a day falls in.
type Partition = (String, Box<dyn Fn(i64) -> i64>);

/// Partition expressions over the cohort's event dates (day `d` = 1..=24).
fn partitions() -> Vec<Partition> {
    let day = "CAST(date_part('day', event_date) AS BIGINT)";
    let mut out: Vec<Partition> = Vec::new();
    for a in 1..=40i64 {
        out.push((
            format!("({day} * {a} % 47) % 2"),
            Box::new(move |d| (d * a % 47) % 2),
        ));
    }
    for a in [3i64, 5, 11] {
        // The same partitions again, phrased differently (and with the labels swapped).
        out.push((
            format!("CASE WHEN ({day} * {a}) % 47 % 2 = 0 THEN 'even' ELSE 'odd' END"),
            Box::new(move |d| (d * a % 47) % 2),
        ));
        out.push((
            format!("1 - ({day} * {a} % 47) % 2"),
            Box::new(move |d| 1 - (d * a % 47) % 2),
        ));
    }
    out
}

/// Least squares: solves `(AᵀA) x = Aᵀb` by Gaussian elimination with partial pivoting.
fn least_squares(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = a.first()?.len();
    let mut m = vec![vec![0.0; n + 1]; n];
    for (row, &rhs) in a.iter().zip(b) {
        for i in 0..n {
            for j in 0..n {
                m[i][j] += row[i] * row[j];
            }
            m[i][n] += row[i] * rhs;
        }
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| m[x][col].abs().total_cmp(&m[y][col].abs()))?;
        if m[pivot][col].abs() < 1e-9 {
            return None;
        }
        m.swap(col, pivot);
        let pivot_row = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let factor = row[col] / pivot_row[col];
                for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *x -= factor * p;
                }
            }
        }
    }
    Some((0..n).map(|i| m[i][n] / m[i][i]).collect())
}

#[tokio::test]
async fn subset_sums_cannot_be_solved_for_individual_values() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    let cohort = f.cohort(RECON_PRACTICE);
    assert_eq!(cohort.len(), RECON_SIZE);
    // Person i has the event on day i + 1.
    let values: Vec<f64> = cohort
        .iter()
        .map(|c| c.events[0].2.expect("value"))
        .collect();

    let mut protected_rows: Vec<Vec<f64>> = Vec::new();
    let mut protected_b: Vec<f64> = Vec::new();
    let mut true_rows: Vec<Vec<f64>> = Vec::new();
    let mut true_b: Vec<f64> = Vec::new();
    // Subset (as a bit mask) -> released answer: the same subset must always get the same one.
    let mut answers: BTreeMap<u32, String> = BTreeMap::new();
    let mut released = 0;
    for (expr, cell_of) in partitions() {
        let sql = format!(
            "SELECT {expr} AS g, SUM(numeric_value) AS s FROM clinical_events \
             WHERE snomedct_code = '{RECON_CODE}' GROUP BY 1"
        );
        let got = rows(&cx, &sql).await;
        let truth = unprotected(&cx, &sql).await;
        // Cells of the partition, computed locally, keyed by the label's text.
        let mut members: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for i in 0..RECON_SIZE {
            let label = cell_of(i as i64 + 1);
            members.entry(label.to_string()).or_default().push(i);
        }
        let members: BTreeMap<String, Vec<usize>> = members
            .into_iter()
            .map(|(k, v)| match expr.starts_with("CASE") {
                true => (if k == "0" { "even" } else { "odd" }.to_string(), v),
                false => (k, v),
            })
            .collect();
        for row in &truth {
            let m = &members[&row[0]];
            let mut eq = vec![0.0; RECON_SIZE];
            for &i in m {
                eq[i] = 1.0;
            }
            true_rows.push(eq);
            true_b.push(num(&row[1]));
        }
        // A cell with all but a few of the cohort's persons (its grouping key has a low
        // effect, DESIGN.md rule 7, below a threshold drawn from the persons it leaves out)
        // is released with the whole cohort's answer.
        let everyone: Vec<usize> = (0..RECON_SIZE).collect();
        for row in &got {
            let mut m = &members[&row[0]];
            assert!(
                m.len() >= 8,
                "{sql}: a cell of {} persons was released",
                m.len()
            );
            let left_out = everyone.iter().filter(|i| !m.contains(i));
            let left_out_key = f.cell_key(left_out.map(|&i| cohort[i]));
            let extra = (RECON_SIZE - m.len()) as u64;
            if extra > 0 && is_low_effect(extra, left_out_key, &p) {
                m = &everyone;
            }
            let s = num(&row[1]);
            // Exactly what output control releases for these persons.
            let contributions: Vec<f64> = m.iter().map(|&i| values[i]).collect();
            let key = f.cell_key(m.iter().map(|&i| cohort[i]));
            assert_eq!(
                protect_sum(&contributions, key, &p).value(),
                Some(s),
                "{sql}: cell {m:?}"
            );
            assert_eq!(round_sig(s, 3), s, "{sql}: not 3 significant figures");
            let mask = m.iter().fold(0u32, |acc, &i| acc | (1 << i));
            let previous = answers.entry(mask).or_insert_with(|| row[1].clone());
            assert_eq!(*previous, row[1], "{sql}: same subset, another answer");
            let mut eq = vec![0.0; RECON_SIZE];
            for &i in m {
                eq[i] = 1.0;
            }
            protected_rows.push(eq);
            protected_b.push(s);
            released += 1;
        }
    }
    assert!(released >= 60, "only {released} subset sums released");
    assert!(
        answers.len() < released,
        "the rephrased partitions must have hit already-answered subsets"
    );

    // Sanity: with true sums the same queries reveal every value exactly.
    let exact = least_squares(&true_rows, &true_b).expect("full rank");
    for (x, v) in exact.iter().zip(&values) {
        assert!(
            (x - v).abs() < 1e-6,
            "unprotected reconstruction {x} vs {v}"
        );
    }
    // With released sums they do not: the values are integers, yet hardly any estimate
    // rounds to the right one, and on average the estimates are further from the true values
    // than the cohort mean is (the attack learns less about a person than the mean says).
    // Cells of all but a few persons are released with the whole cohort's answer (rule 7),
    // which can leave too few distinct subsets to solve for anyone at all.
    let Some(estimate) = least_squares(&protected_rows, &protected_b) else {
        return;
    };
    let recovered = estimate
        .iter()
        .zip(&values)
        .filter(|(x, v)| x.round() == **v)
        .count();
    let error = |guess: &dyn Fn(usize) -> f64| {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (guess(i) - v).abs())
            .sum::<f64>()
            / RECON_SIZE as f64
    };
    let mean = values.iter().sum::<f64>() / RECON_SIZE as f64;
    let reconstruction_error = error(&|i| estimate[i]);
    let mean_guess_error = error(&|_| mean);
    assert!(
        recovered <= RECON_SIZE / 6,
        "{recovered} of {RECON_SIZE} values recovered: {estimate:?} vs {values:?}"
    );
    assert!(
        reconstruction_error > mean_guess_error,
        "reconstruction error {reconstruction_error} vs {mean_guess_error} for guessing the mean"
    );
}

#[tokio::test]
async fn subsets_of_seven_or_fewer_persons_are_suppressed() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let day = "CAST(date_part('day', event_date) AS BIGINT)";
    // 24 persons in 3, 4, 6, 8, 12 and 24 cells of 8, 6, 4, 3, 2 and 1 persons.
    for (cells, persons) in [(3, 8), (4, 6), (6, 4), (8, 3), (12, 2), (24, 1)] {
        let sql = format!(
            "SELECT {day} % {cells} AS g, SUM(numeric_value), COUNT(*), AVG(numeric_value) \
             FROM clinical_events WHERE snomedct_code = '{RECON_CODE}' GROUP BY 1"
        );
        let got = rows(&cx, &sql).await;
        if persons <= 7 {
            assert!(got.is_empty(), "{sql}: {got:?}");
        } else {
            // Eight persons: released only under cell keys whose noisy threshold is 8.
            assert!(got.len() <= cells, "{sql}: {got:?}");
        }
    }
}
