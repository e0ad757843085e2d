//! Threshold probing: asking about groups of N and N+1 persons to find where suppression
//! starts, and so learn the size of small groups. DESIGN.md rule 3: a cell of 7 or fewer
//! persons is always suppressed; above that the threshold is `8 + t`, `t` in 0..=2 drawn from
//! the cell key, so a group of 8 or 9 is released under some keys only and the edge does not
//! tell the group's size.

use std::collections::BTreeMap;

use fivesafes_policies::output::{is_suppressed, threshold_extra};

use crate::common::*;

/// The threshold groups with their cell keys and whether they must be released.
fn groups(f: &Fixture) -> Vec<(&'static str, usize, u8)> {
    THRESHOLD_GROUPS
        .iter()
        .map(|(practice, n)| {
            let cohort = f.cohort(practice);
            assert_eq!(cohort.len(), *n, "{practice}");
            (*practice, *n, f.cell_key(cohort))
        })
        .collect()
}

#[tokio::test]
async fn a_group_of_seven_or_fewer_never_appears() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    let released: BTreeMap<String, String> = rows(
        &cx,
        "SELECT practice_code, COUNT(*) FROM patients WHERE practice_code LIKE 'Y1%' \
         GROUP BY practice_code",
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone(), r[1].clone()))
    .collect();
    let mut noisy_edge = BTreeMap::new();
    for (practice, n, key) in groups(f) {
        let got = released.get(practice).cloned();
        let want = expected_count(n as u64, n as u64, key, &p);
        assert_eq!(got, want, "{practice} ({n} persons, key {key})");
        match n {
            0..=7 => assert_eq!(got, None, "{practice}: {n} persons released"),
            8 | 9 => {
                assert_eq!(got.is_none(), is_suppressed(n as u64, key, &p));
                noisy_edge
                    .entry((n, got.is_some()))
                    .or_insert_with(Vec::new)
                    .push(practice);
            }
            _ => assert!(got.is_some(), "{practice}: {n} persons suppressed"),
        }
    }
    // The threshold really is noisy: groups of 8 and of 9 persons are each released under
    // some cell keys and suppressed under others, so where the edge falls reveals no size.
    for n in [8, 9] {
        assert!(
            noisy_edge.contains_key(&(n, true)) && noisy_edge.contains_key(&(n, false)),
            "{n} persons: {noisy_edge:?}"
        );
    }
    for (_, n, key) in groups(f) {
        assert!(threshold_extra(key, &p) <= 2, "{n}");
    }
}

#[tokio::test]
async fn asking_for_n_and_n_plus_one_persons_one_group_at_a_time() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = *cx.output_control();
    for (practice, n, key) in groups(f) {
        let sql = format!("SELECT COUNT(*) FROM patients WHERE practice_code = '{practice}'");
        let got = single(&cx, &sql).await;
        assert_eq!(
            got,
            expected_count(n as u64, n as u64, key, &p),
            "{practice} ({n} persons)"
        );
        if n <= 7 {
            assert_eq!(got, None, "{sql}");
        }
        // The same group through a grouped query: the same answer, or no row.
        let grouped = format!(
            "SELECT sex, COUNT(*) FROM patients WHERE practice_code = '{practice}' GROUP BY sex"
        );
        let got_grouped: Vec<String> = rows(&cx, &grouped)
            .await
            .into_iter()
            .map(|r| r[1].clone())
            .collect();
        assert_eq!(
            got_grouped,
            got.into_iter().collect::<Vec<_>>(),
            "{grouped}"
        );
    }
}

#[tokio::test]
async fn having_clauses_cannot_find_small_groups() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let small: Vec<&str> = THRESHOLD_GROUPS
        .iter()
        .filter(|(_, n)| *n <= 7)
        .map(|(p, _)| *p)
        .collect();
    for having in [
        "COUNT(*) = 7",
        "COUNT(*) < 8",
        "COUNT(*) BETWEEN 1 AND 7",
        "COUNT(*) <= 7",
        "COUNT(*) IS NULL",
        "COUNT(*) IS NOT NULL",
        "COUNT(DISTINCT patient_id) = 7",
        "COUNT(*) > 0",
    ] {
        let sql = format!(
            "SELECT practice_code FROM patients WHERE practice_code LIKE 'Y1%' \
             GROUP BY practice_code HAVING {having}"
        );
        for row in rows(&cx, &sql).await {
            assert!(
                !small.contains(&row[0].as_str()),
                "{sql}: found {} (7 or fewer persons)",
                row[0]
            );
        }
    }
    // A group of exactly seven, by any phrasing, is never part of an answer.
    for (practice, _) in THRESHOLD_GROUPS.iter().filter(|(_, n)| *n == 7) {
        for sql in [
            format!("SELECT COUNT(*) FROM patients WHERE practice_code = '{practice}'"),
            format!(
                "SELECT practice_code, COUNT(*) FROM patients \
                 WHERE practice_code = '{practice}' GROUP BY practice_code"
            ),
            format!(
                "SELECT COUNT(*), SUM(imd_decile), AVG(date_part('year', birth_month)) \
                 FROM patients WHERE practice_code = '{practice}'"
            ),
        ] {
            assert_eq!(rows(&cx, &sql).await, Vec::<Vec<String>>::new(), "{sql}");
        }
    }
}
