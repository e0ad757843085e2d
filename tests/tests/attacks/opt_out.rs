//! The national data opt-out: in a project where it applies, a person recorded as opted out,
//! or whose status is unknown (absent from the opt-out list), contributes to no answer — GP
//! and hospital data alike; in an exempt project they count like everyone else. The planted
//! cohorts: X40001 mixes 12 persons recorded as not opted out, 12 opted out, 12 unknown, one
//! whose opt-out was later withdrawn and one who opted out later; X40002 has only opted-out
//! persons and X40003 only unknown ones. Each has one HES APC episode at ZZ1, ZZ2 or ZZ3.

use std::collections::BTreeSet;

use crate::common::*;

/// The persons of `practice` an applying project may see.
fn visible<'a>(f: &'a Fixture, practice: &str) -> Vec<&'a Planted> {
    f.cohort(practice)
        .into_iter()
        .filter(|p| p.ndoo.visible_when_applied())
        .collect()
}

fn count(
    f: &Fixture,
    persons: &[&Planted],
    p: &fivesafes_policies::OutputControl,
) -> Option<String> {
    let n = persons.len() as u64;
    expected_count(n, n, f.cell_key(persons.iter().copied()), p)
}

#[tokio::test]
async fn opted_out_persons_contribute_to_no_answer_where_the_opt_out_applies() {
    let f = fixture();
    let applying = f.project(RESEARCH).await;
    let exempt = f.project(EXEMPT).await;
    let p = *applying.output_control();
    let mixed_all = f.cohort(OPT_MIXED);
    let mixed_visible = visible(f, OPT_MIXED);
    assert_eq!((mixed_all.len(), mixed_visible.len()), (38, 13));

    // Ground truth inside the applying project: exactly the visible persons exist, in GP
    // and in hospital data.
    let ids = |rows: Vec<Vec<String>>| -> BTreeSet<i64> {
        rows.into_iter()
            .map(|r| r[0].parse().expect("id"))
            .collect()
    };
    let want: BTreeSet<i64> = mixed_visible.iter().map(|p| p.patient_id).collect();
    let planted_opt: Vec<i64> = f
        .planted
        .iter()
        .filter(|p| p.practice.starts_with("X4"))
        .map(|p| p.patient_id)
        .collect();
    let in_list = planted_opt
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    for sql in [
        "SELECT patient_id FROM patients WHERE practice_code LIKE 'X4%'".to_string(),
        "SELECT patient_id FROM hes_apc WHERE procode3 LIKE 'ZZ%' AND procode3 <> 'ZZ7'"
            .to_string(),
        format!("SELECT patient_id FROM practice_registrations WHERE patient_id IN ({in_list})"),
        format!("SELECT patient_id FROM hes_apc WHERE patient_id IN ({in_list})"),
    ] {
        assert_eq!(ids(unprotected(&applying, &sql).await), want, "{sql}");
    }

    // Released answers: the visible persons only where the opt-out applies, everyone where
    // the project is exempt; exactly as output control computes them for those persons.
    let all_ref: Vec<&Planted> = mixed_all.clone();
    for (sql, applying_want, exempt_want) in [
        (
            "SELECT COUNT(*) FROM patients WHERE practice_code = 'X40001'",
            count(f, &mixed_visible, &p),
            count(f, &all_ref, &p),
        ),
        (
            "SELECT COUNT(*) FROM hes_apc WHERE procode3 = 'ZZ1'",
            count(f, &mixed_visible, &p),
            count(f, &all_ref, &p),
        ),
        (
            "SELECT COUNT(DISTINCT h.patient_id) FROM hes_apc h JOIN patients p \
             ON h.patient_id = p.patient_id WHERE p.practice_code = 'X40001'",
            count(f, &mixed_visible, &p),
            count(f, &all_ref, &p),
        ),
    ] {
        assert!(applying_want.is_some() && exempt_want.is_some());
        assert_ne!(
            applying_want, exempt_want,
            "the fixture must tell them apart"
        );
        assert_eq!(
            single(&applying, sql).await,
            applying_want,
            "applying: {sql}"
        );
        assert_eq!(single(&exempt, sql).await, exempt_want, "exempt: {sql}");
    }
}

#[tokio::test]
async fn unknown_status_is_treated_as_opted_out() {
    let f = fixture();
    let applying = f.project(RESEARCH).await;
    let exempt = f.project(EXEMPT).await;
    let p = *applying.output_control();
    for (practice, provider) in [(OPT_ALL_UNKNOWN, "ZZ3"), (OPT_ALL_OUT, "ZZ2")] {
        let cohort = f.cohort(practice);
        assert_eq!(cohort.len(), 12);
        let exempt_want = count(f, &cohort, &p);
        assert!(exempt_want.is_some());
        for sql in [
            format!("SELECT COUNT(*) FROM patients WHERE practice_code = '{practice}'"),
            format!("SELECT COUNT(*) FROM hes_apc WHERE procode3 = '{provider}'"),
        ] {
            assert_eq!(single(&applying, &sql).await, None, "applying: {sql}");
            assert_eq!(single(&exempt, &sql).await, exempt_want, "exempt: {sql}");
        }
        // Not even a suppressed trace: the grouped query has no such group at all.
        let grouped = format!(
            "SELECT practice_code, COUNT(*) FROM patients WHERE practice_code = '{practice}' \
             GROUP BY practice_code"
        );
        let (batches, suppressed) = run(&applying, &grouped).await.expect("runs");
        assert!(render(&batches).is_empty());
        assert_eq!(
            suppressed, 0,
            "{grouped}: the group exists for the applying project"
        );
        assert!(
            unprotected(
                &applying,
                &format!("SELECT patient_id FROM patients WHERE practice_code = '{practice}'")
            )
            .await
            .is_empty()
        );
    }
}

#[tokio::test]
async fn the_latest_opt_out_status_wins() {
    let f = fixture();
    let applying = f.project(RESEARCH).await;
    let mixed = f.cohort(OPT_MIXED);
    let seen: BTreeSet<i64> = unprotected(
        &applying,
        "SELECT patient_id FROM patients WHERE practice_code = 'X40001'",
    )
    .await
    .into_iter()
    .map(|r| r[0].parse().expect("id"))
    .collect();
    for person in mixed {
        let want = matches!(person.ndoo, Ndoo::In | Ndoo::Withdrawn);
        assert_eq!(
            seen.contains(&person.patient_id),
            want,
            "{:?} person seen: {}",
            person.ndoo,
            !want
        );
    }
}
