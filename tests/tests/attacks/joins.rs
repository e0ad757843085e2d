//! Join amplification and wide/narrow joins: joining personal tables to multiply one
//! person's rows (so that one person looks like many, or a small cell looks large), or
//! joining different persons' rows to each other. Two personal inputs may only be joined on
//! the privacy unit (FS-2a), and a cell's size is its number of distinct persons however many
//! rows a join makes of them.

use fivesafes_policies::decision::Rule;

use crate::common::*;

#[tokio::test]
async fn joining_different_persons_rows_is_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    for sql in [
        "SELECT COUNT(*) FROM patients a JOIN patients b ON a.practice_code = b.practice_code",
        "SELECT COUNT(*) FROM patients a CROSS JOIN clinical_events e",
        "SELECT COUNT(*) FROM hes_apc a JOIN hes_apc b ON a.spell_id = b.spell_id",
        "SELECT COUNT(*) FROM clinical_events e JOIN medications m ON e.event_date = m.issue_date",
        "SELECT COUNT(*) FROM patients a JOIN clinical_events e ON a.patient_id <> e.patient_id",
        "SELECT COUNT(*) FROM patients a JOIN patients b ON a.patient_id = b.patient_id + 1",
        "SELECT COUNT(*) FROM patients a JOIN hes_apc h ON a.birth_month = h.admidate",
        "SELECT COUNT(DISTINCT a.patient_id) FROM patients a LEFT JOIN patients b \
         ON a.lsoa = b.lsoa",
    ] {
        assert_eq!(refused(&cx, sql).await, Rule::JoinAmplification, "{sql}");
    }
}

#[tokio::test]
async fn one_persons_rows_multiplied_by_joins_are_still_one_person() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // One person has all 100 events of this code and all 3 episodes at ZZ7.
    for sql in [
        "SELECT COUNT(*) FROM clinical_events WHERE snomedct_code = '999000004'",
        "SELECT COUNT(*) FROM clinical_events e JOIN clinical_events g \
         ON e.patient_id = g.patient_id WHERE e.snomedct_code = '999000004'",
        "SELECT COUNT(*), SUM(e.numeric_value) FROM clinical_events e \
         JOIN hes_apc h ON e.patient_id = h.patient_id \
         JOIN clinical_events g ON g.patient_id = e.patient_id \
         WHERE h.procode3 = 'ZZ7'",
        // His 12-person practice: only he has events, so the join has one person.
        "SELECT COUNT(*) FROM patients p JOIN clinical_events e ON p.patient_id = e.patient_id \
         WHERE p.practice_code = 'X70001'",
        "SELECT p.sex, COUNT(e.numeric_value) FROM patients p \
         JOIN clinical_events e ON p.patient_id = e.patient_id \
         JOIN clinical_events g ON g.patient_id = p.patient_id \
         WHERE p.practice_code = 'X70001' GROUP BY p.sex",
    ] {
        assert_eq!(rows(&cx, sql).await, Vec::<Vec<String>>::new(), "{sql}");
    }
    // The practice itself (12 persons) is released, through a widening join too.
    let p = *cx.output_control();
    let want = expected_count(12, 12, f.cell_key(f.cohort(AMP_PRACTICE)), &p);
    assert!(want.is_some());
    for sql in [
        "SELECT COUNT(*) FROM patients WHERE practice_code = 'X70001'",
        "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
         LEFT JOIN clinical_events e ON p.patient_id = e.patient_id \
         WHERE p.practice_code = 'X70001'",
    ] {
        assert_eq!(single(&cx, sql).await, want, "{sql}");
    }
}

#[tokio::test]
async fn wide_and_narrow_joins_count_the_same_persons_the_same() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    // Synthetic diagnoses with a hundred-odd persons each.
    for code in ["195967001", "44054006", "38341003"] {
        let narrow = format!(
            "SELECT COUNT(DISTINCT patient_id) FROM clinical_events WHERE snomedct_code = '{code}'"
        );
        let want = single(&cx, &narrow).await;
        assert!(want.is_some(), "{narrow}");
        for wide in [
            format!(
                "SELECT COUNT(DISTINCT e.patient_id) FROM clinical_events e \
                 JOIN clinical_events g ON e.patient_id = g.patient_id \
                 WHERE e.snomedct_code = '{code}'"
            ),
            format!(
                "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
                 JOIN clinical_events e ON p.patient_id = e.patient_id \
                 WHERE e.snomedct_code = '{code}'"
            ),
            format!(
                "SELECT COUNT(*) FROM patients WHERE patient_id IN \
                 (SELECT patient_id FROM clinical_events WHERE snomedct_code = '{code}')"
            ),
            format!(
                "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
                 JOIN clinical_events e ON p.patient_id = e.patient_id \
                 JOIN practice_registrations r ON r.patient_id = p.patient_id \
                 WHERE e.snomedct_code = '{code}'"
            ),
        ] {
            // The premise: the wide query is about exactly the same persons.
            assert_eq!(
                unprotected(&cx, &wide).await,
                unprotected(&cx, &narrow).await,
                "{wide}"
            );
            assert_eq!(single(&cx, &wide).await, want, "{wide}");
        }
    }
}
