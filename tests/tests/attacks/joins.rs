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

/// A join key written in `WHERE` (`FROM a, b WHERE a.k = b.k`) joins as it does in `ON`:
/// the same answers, and the same refusal where two personal tables are joined on anything
/// but the privacy unit. Left in `WHERE`, the key was a condition that rule 7 could drop,
/// and the cross join then counted every pair of rows (340 for a practice of 307).
#[tokio::test]
async fn a_join_key_written_in_where_joins_as_it_does_in_on() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let practices = unprotected(
        &cx,
        "SELECT practice_code, COUNT(*) FROM patients WHERE lsoa IS NOT NULL \
         GROUP BY 1 HAVING COUNT(*) > 100 ORDER BY 1 LIMIT 3",
    )
    .await;
    assert!(practices.len() >= 2, "{practices:?}");
    let mut differing = Vec::new();
    let mut compare = async |on: String, comma: String| {
        let (a, b) = (rows(&cx, &on).await, rows(&cx, &comma).await);
        if a.is_empty() || a != b {
            differing.push(format!("{comma} -> {b:?}\n  {on} -> {a:?}"));
        }
    };
    for row in &practices {
        let pr = &row[0];
        for d in [6, 7] {
            compare(
                format!(
                    "SELECT COUNT(*) FROM patients p JOIN lsoas s ON s.lsoa = p.lsoa \
                     WHERE p.practice_code = '{pr}' AND s.imd_decile < {d}"
                ),
                format!(
                    "SELECT COUNT(*) FROM patients p, lsoas s WHERE s.lsoa = p.lsoa \
                     AND p.practice_code = '{pr}' AND s.imd_decile < {d}"
                ),
            )
            .await;
        }
        compare(
            format!(
                "SELECT COUNT(*), SUM(e.numeric_value) FROM clinical_events e \
                 JOIN patients p ON e.patient_id = p.patient_id \
                 WHERE p.practice_code = '{pr}' AND e.numeric_value > 0"
            ),
            format!(
                "SELECT COUNT(*), SUM(e.numeric_value) FROM clinical_events e, patients p \
                 WHERE e.patient_id = p.patient_id AND p.practice_code = '{pr}' \
                 AND e.numeric_value > 0"
            ),
        )
        .await;
        compare(
            format!(
                "SELECT pr.region, COUNT(*) FROM patients p \
                 JOIN practices pr ON pr.practice_code = p.practice_code \
                 JOIN lsoas s ON s.lsoa = p.lsoa WHERE p.practice_code = '{pr}' GROUP BY 1"
            ),
            format!(
                "SELECT pr.region, COUNT(*) FROM patients p, practices pr, lsoas s \
                 WHERE p.practice_code = '{pr}' AND pr.practice_code = p.practice_code \
                 AND s.lsoa = p.lsoa GROUP BY 1"
            ),
        )
        .await;
        // The public tables named first (they were joined to each other first: refused).
        compare(
            format!(
                "SELECT pr.region, COUNT(*) FROM patients p \
                 JOIN practices pr ON pr.practice_code = p.practice_code \
                 JOIN lsoas s ON s.lsoa = p.lsoa \
                 WHERE p.practice_code = '{pr}' AND s.imd_decile < 7 GROUP BY 1"
            ),
            format!(
                "SELECT pr.region, COUNT(*) FROM practices pr, lsoas s, patients p \
                 WHERE p.practice_code = '{pr}' AND pr.practice_code = p.practice_code \
                 AND s.lsoa = p.lsoa AND s.imd_decile < 7 GROUP BY 1"
            ),
        )
        .await;
    }
    assert!(
        differing.is_empty(),
        "a key in WHERE answered differently from the same key in ON:\n{}",
        differing.join("\n")
    );
    for sql in [
        "SELECT COUNT(*) FROM clinical_events e, patients p WHERE p.practice_code = 'X20001'",
        "SELECT COUNT(*) FROM patients a, patients b WHERE a.lsoa = b.lsoa",
    ] {
        assert_eq!(refused(&cx, sql).await, Rule::JoinAmplification, "{sql}");
    }
}

/// A relation joined on a key restricts the persons as a condition does. A public table's
/// own filters are lifted and measured by rule 7; a list of values, or a public table
/// reshaped by `DISTINCT`, `UNION`, `EXCEPT` or `GROUP BY`, kept its restriction out of
/// reach, so leaving out the few persons of one LSOA changed the answer (340 against 335
/// in one practice, where `p.lsoa <> …` gives 340 both times). Those joins are refused
/// (FS-7); the same restriction written as a condition is measured.
#[tokio::test]
async fn a_restriction_by_a_joined_list_or_reshaped_public_table_is_refused_or_measured() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let groups = unprotected(
        &cx,
        "SELECT practice_code, lsoa, COUNT(*) FROM patients WHERE lsoa IS NOT NULL \
         GROUP BY 1, 2 ORDER BY 3, 1, 2 LIMIT 2",
    )
    .await;
    assert!(
        groups.iter().all(|g| num(&g[2]) <= 5.0),
        "no small LSOA group: {groups:?}"
    );
    let mut wrong = Vec::new();
    for g in &groups {
        let (pr, l) = (&g[0], &g[1]);
        let base = format!("SELECT COUNT(*) FROM patients p WHERE p.practice_code = '{pr}'");
        let want = rows(&cx, &format!("{base} AND p.lsoa <> '{l}'")).await;
        assert!(!want.is_empty());
        let joined = |side: &str| {
            format!(
                "SELECT COUNT(*) FROM patients p JOIN {side} AS s(lsoa) ON s.lsoa = p.lsoa \
                 WHERE p.practice_code = '{pr}'"
            )
        };
        for side in [
            format!("(VALUES ('{l}'), ('E01010011'))"),
            format!("(SELECT DISTINCT lsoa FROM lsoas WHERE lsoa <> '{l}')"),
            format!("(SELECT lsoa FROM lsoas EXCEPT SELECT '{l}')"),
            format!(
                "(SELECT lsoa FROM lsoas WHERE lsoa < '{l}' \
                 UNION ALL SELECT lsoa FROM lsoas WHERE lsoa > '{l}')"
            ),
            format!("(SELECT lsoa FROM lsoas WHERE lsoa <> '{l}' GROUP BY lsoa)"),
            format!("(SELECT CASE WHEN lsoa = '{l}' THEN '-' ELSE lsoa END FROM lsoas)"),
            format!(
                "(SELECT s.lsoa FROM lsoas s JOIN lsoas t ON s.lsoa = t.lsoa \
                 WHERE t.lsoa <> '{l}')"
            ),
            format!("(SELECT lsoa FROM lsoas l WHERE l.lsoa <> (SELECT '{l}'))"),
        ] {
            let sql = joined(&side);
            let got = outcome(&cx, &sql).await;
            if !got.starts_with("FS-7") {
                wrong.push(format!("{sql} -> {got} (want FS-7)"));
            }
        }
        // Filtered, on the side a semi join filters by: the filter is not lifted.
        let semi = format!(
            "SELECT COUNT(*) FROM patients p LEFT SEMI JOIN \
             (SELECT lsoa FROM lsoas WHERE lsoa <> '{l}') s ON s.lsoa = p.lsoa \
             WHERE p.practice_code = '{pr}'"
        );
        let got = outcome(&cx, &semi).await;
        if !got.starts_with("FS-7") {
            wrong.push(format!("{semi} -> {got} (want FS-7)"));
        }
        for sql in [
            joined(&format!("(SELECT lsoa FROM lsoas WHERE lsoa <> '{l}')")),
            format!("{base} AND p.lsoa IN (SELECT lsoa FROM lsoas EXCEPT SELECT '{l}')"),
            format!("{base} AND p.lsoa IN (SELECT DISTINCT lsoa FROM lsoas WHERE lsoa <> '{l}')"),
        ] {
            let got = rows(&cx, &sql).await;
            if got != want {
                wrong.push(format!("{sql} -> {got:?} (as a condition: {want:?})"));
            }
        }
    }
    // The planted practice's one person of sex I, through a list of values; a decile band
    // through a shifted key to a public table (a condition, with no key left to join on).
    for sql in [
        "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
         JOIN lsoas s ON p.imd_decile = s.imd_decile + 4 WHERE p.practice_code = 'F81002'",
        "SELECT COUNT(*) FROM patients p JOIN (VALUES ('F'), ('I')) v(c) ON p.sex = v.c \
         WHERE p.practice_code = 'X20001'",
        "SELECT COUNT(*) FROM patients p JOIN (SELECT 'F' AS c UNION ALL SELECT 'I') v \
         ON p.sex = v.c WHERE p.practice_code = 'X20001'",
    ] {
        assert_eq!(refused(&cx, sql).await, Rule::LowEffect, "{sql}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Between two tables about persons only the privacy unit is a join key: another equality
/// in `ON` or `USING` (`h.lsoa = p.lsoa`: the episodes recorded at the person's current
/// LSOA) keeps some of a person's rows and leaves out the persons who have none, a
/// condition rule 7 measures as it does in `WHERE`. As a key it was not measured: in one
/// practice it left out 5 of 135 persons and the answer fell from 135 to 130.
#[tokio::test]
async fn an_equality_of_two_personal_tables_beside_the_key_is_measured_as_a_condition() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let practices = unprotected(
        &cx,
        "SELECT p.practice_code, COUNT(DISTINCT p.patient_id) \
         FILTER (WHERE h.lsoa <> p.lsoa OR h.sex <> p.sex) \
         FROM hes_apc h JOIN patients p ON h.patient_id = p.patient_id \
         GROUP BY 1 HAVING COUNT(DISTINCT p.patient_id) > 100 ORDER BY 1",
    )
    .await;
    assert!(
        practices.iter().any(|r| (1.0..=8.0).contains(&num(&r[1]))),
        "no practice where the equality leaves out a few persons: {practices:?}"
    );
    let mut differing = Vec::new();
    for row in &practices {
        let pr = &row[0];
        let count = "SELECT COUNT(DISTINCT p.patient_id) FROM hes_apc h";
        let want = rows(
            &cx,
            &format!(
                "{count} JOIN patients p ON h.patient_id = p.patient_id \
                 WHERE p.practice_code = '{pr}' AND h.lsoa = p.lsoa AND h.sex = p.sex"
            ),
        )
        .await;
        for sql in [
            format!(
                "{count} JOIN patients p ON h.patient_id = p.patient_id AND h.lsoa = p.lsoa \
                 AND h.sex = p.sex WHERE p.practice_code = '{pr}'"
            ),
            format!(
                "{count} JOIN patients p USING (patient_id, lsoa, sex) \
                 WHERE p.practice_code = '{pr}'"
            ),
        ] {
            let got = rows(&cx, &sql).await;
            if got != want || got.is_empty() {
                differing.push(format!("{sql} -> {got:?} (in WHERE: {want:?})"));
            }
        }
    }
    assert!(differing.is_empty(), "{}", differing.join("\n"));
    // In an outer join's ON it decides which rows get NULLs: refused like any condition.
    let outer = "SELECT COUNT(*) FROM patients p LEFT JOIN hes_apc h \
                 ON h.patient_id = p.patient_id AND h.lsoa = p.lsoa \
                 WHERE p.practice_code = 'X20001'";
    assert_eq!(refused(&cx, outer).await, Rule::LowEffect, "{outer}");
}

/// An inner join to a public table keeps only the rows about persons that match a row of
/// it: `JOIN lsoas s ON s.lsoa = p.lsoa` leaves out the persons with no LSOA, a condition
/// (`p.lsoa IS NOT NULL`) the analyst never wrote. Left unmeasured, in a practice where the
/// target alone has no LSOA the count with the join against the count without it singled
/// the target out. Rule 7 measures it like the same condition in `WHERE`: here it leaves out
/// one person, so the answer is the whole practice's, in every form of the join; where it
/// leaves out everyone, it applies.
#[tokio::test]
async fn a_join_to_a_public_table_measures_the_persons_it_leaves_out() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = cx.output_control();
    let cohort = f.cohort(AREA_PRACTICE);
    assert_eq!(cohort.len(), AREA_SIZE);
    let all = expected_count(40, 40, f.cell_key(cohort.iter().copied()), p);
    let others: Vec<&Planted> = (0..AREA_SIZE)
        .filter(|i| *i != AREA_TARGET)
        .map(|i| cohort[i])
        .collect();
    let without_target = expected_count(39, 39, f.cell_key(others), p);
    // The attack would see the target: the two answers differ.
    assert!(all.is_some());
    assert_ne!(all, without_target);
    let kept: Vec<bool> = (0..AREA_SIZE).map(|i| i != AREA_TARGET).collect();
    assert_eq!(count_under_condition(&cohort, &kept, p), all);
    let count = "SELECT COUNT(DISTINCT p.patient_id)";
    let at = format!("p.practice_code = '{AREA_PRACTICE}'");
    let mut differing = Vec::new();
    for sql in [
        format!("{count} FROM patients p WHERE {at}"),
        format!("{count} FROM patients p WHERE {at} AND p.lsoa IS NOT NULL"),
        format!("{count} FROM patients p JOIN lsoas s ON s.lsoa = p.lsoa WHERE {at}"),
        format!("{count} FROM lsoas s JOIN patients p ON p.lsoa = s.lsoa WHERE {at}"),
        format!("{count} FROM patients p JOIN lsoas s USING (lsoa) WHERE {at}"),
        format!("{count} FROM patients p, lsoas s WHERE s.lsoa = p.lsoa AND {at}"),
        format!("{count} FROM patients p WHERE {at} AND p.lsoa IN (SELECT lsoa FROM lsoas)"),
        format!("{count} FROM lsoas s LEFT JOIN patients p ON p.lsoa = s.lsoa WHERE {at}"),
        format!("{count} FROM patients p RIGHT JOIN lsoas s ON p.lsoa = s.lsoa WHERE {at}"),
        format!(
            "{count} FROM patients p JOIN lsoas s ON s.lsoa = p.lsoa \
             WHERE {at} AND s.imd_decile BETWEEN 1 AND 10"
        ),
        format!(
            "{count} FROM patients p \
             JOIN practices pr ON pr.practice_code = p.practice_code \
             JOIN lsoas s ON s.lsoa = p.lsoa WHERE {at}"
        ),
    ] {
        let got = single(&cx, &sql).await;
        if got != all {
            differing.push(format!("{sql} -> {got:?}, want {all:?}"));
        }
    }
    assert!(differing.is_empty(), "{}", differing.join("\n"));
    // By the decile looked up in `lsoas`, as by the person's own: the practice's decile
    // leaves out only the target, so it is released with the whole practice's answer; the
    // target's cell (no decile) is suppressed.
    let by_own = rows(
        &cx,
        &format!(
            "SELECT p.imd_decile, {count_} FROM patients p WHERE {at} GROUP BY 1 ORDER BY 1",
            count_ = &count[7..]
        ),
    )
    .await;
    assert_eq!(by_own.len(), 1, "{by_own:?}");
    assert_eq!(Some(&by_own[0][1]), all.as_ref());
    let by_looked_up = rows(
        &cx,
        &format!(
            "SELECT s.imd_decile, {count_} FROM patients p JOIN lsoas s ON s.lsoa = p.lsoa \
             WHERE {at} GROUP BY 1 ORDER BY 1",
            count_ = &count[7..]
        ),
    )
    .await;
    assert_eq!(by_looked_up, by_own);
    // A semi or anti join has none of the table's columns to measure the rows it leaves
    // out by: refused, where `IN (SELECT lsoa FROM lsoas)` above is measured.
    for join in ["LEFT SEMI", "LEFT ANTI"] {
        let sql =
            format!("{count} FROM patients p {join} JOIN lsoas s ON s.lsoa = p.lsoa WHERE {at}");
        assert_eq!(refused(&cx, &sql).await, Rule::LowEffect, "{sql}");
    }
    // Where no one has an LSOA the join leaves out the whole practice: applied.
    let nobody = format!(
        "{count} FROM patients p JOIN lsoas s ON s.lsoa = p.lsoa \
         WHERE p.practice_code = '{DIFF_PRACTICE}'"
    );
    assert_eq!(single(&cx, &nobody).await, None);
}

/// An inner join of two tables about persons on the privacy unit keeps only the persons
/// both have: `patients p JOIN clinical_events e` leaves out the persons without events, the
/// same restriction as `p.patient_id IN (SELECT patient_id FROM clinical_events)`, which
/// rule 7 measures. Left unmeasured, in a practice where the target alone has no events the
/// count with the join against the count without it singled the target out (30 against 35
/// on two synthetic practices). It is measured in every form of the join: here it leaves
/// out one person, so each answers for the whole practice; where it leaves out everyone, it
/// applies.
#[tokio::test]
async fn a_join_of_two_personal_tables_measures_the_persons_it_leaves_out() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let p = cx.output_control();
    let cohort = f.cohort(AREA_PRACTICE);
    let all = expected_count(40, 40, f.cell_key(cohort.iter().copied()), p);
    let others = (0..AREA_SIZE)
        .filter(|i| *i != AREA_TARGET)
        .map(|i| cohort[i]);
    let without_target = expected_count(39, 39, f.cell_key(others), p);
    // The attack would see the target: the two answers differ, and the join leaves the
    // target out.
    assert!(all.is_some());
    assert_ne!(all, without_target);
    let at = format!("p.practice_code = '{AREA_PRACTICE}'");
    let joined = format!(
        "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
         JOIN clinical_events e ON e.patient_id = p.patient_id WHERE {at}"
    );
    assert_eq!(
        unprotected(&cx, &joined).await,
        vec![vec!["39".to_string()]]
    );
    let per_person = "(SELECT patient_id, COUNT(*) AS n FROM clinical_events GROUP BY patient_id)";
    let mut differing = Vec::new();
    for sql in [
        format!("SELECT COUNT(*) FROM patients p WHERE {at}"),
        format!(
            "SELECT COUNT(*) FROM patients p WHERE {at} \
             AND p.patient_id IN (SELECT patient_id FROM clinical_events)"
        ),
        joined.clone(),
        format!(
            "SELECT COUNT(DISTINCT e.patient_id) FROM clinical_events e \
             JOIN patients p ON e.patient_id = p.patient_id WHERE {at}"
        ),
        format!(
            "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
             JOIN clinical_events e USING (patient_id) WHERE {at}"
        ),
        format!(
            "SELECT COUNT(DISTINCT p.patient_id) FROM patients p, clinical_events e \
             WHERE e.patient_id = p.patient_id AND {at}"
        ),
        format!(
            "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
             JOIN clinical_events e ON e.patient_id = p.patient_id \
             WHERE {at} AND e.snomedct_code = '{AREA_CODE}'"
        ),
        format!(
            "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
             JOIN practice_registrations r ON r.patient_id = p.patient_id \
             JOIN clinical_events e ON e.patient_id = r.patient_id WHERE {at}"
        ),
        format!(
            "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
             LEFT SEMI JOIN clinical_events e ON e.patient_id = p.patient_id WHERE {at}"
        ),
        format!(
            "SELECT COUNT(*) FROM patients p \
             JOIN {per_person} t ON t.patient_id = p.patient_id WHERE {at}"
        ),
        format!(
            "SELECT COUNT(DISTINCT t.patient_id) FROM {per_person} t \
             JOIN patients p ON p.patient_id = t.patient_id WHERE {at} AND t.n > 0"
        ),
        // The unit renamed is still the unit.
        format!(
            "SELECT COUNT(*) FROM patients p \
             JOIN (SELECT patient_id AS pid FROM clinical_events) e ON e.pid = p.patient_id \
             WHERE {at}"
        ),
        format!(
            "SELECT COUNT(*) FROM patients p \
             JOIN (SELECT patient_id AS pid, COUNT(*) AS n FROM clinical_events \
             GROUP BY patient_id) t ON t.pid = p.patient_id WHERE {at} AND t.n > 0"
        ),
        // The persons without events are the persons of the optional side's NULLs: each
        // counted as the person they are (not as one person with no unit).
        format!(
            "SELECT COUNT(DISTINCT p.patient_id) FROM clinical_events e \
             RIGHT JOIN patients p ON e.patient_id = p.patient_id WHERE {at}"
        ),
    ] {
        let got = single(&cx, &sql).await;
        if got != all {
            differing.push(format!("{sql} -> {got:?}, want {all:?}"));
        }
    }
    assert!(differing.is_empty(), "{}", differing.join("\n"));
    let by_sex = format!(
        "SELECT p.sex, COUNT(DISTINCT p.patient_id) FROM patients p \
         JOIN clinical_events e ON e.patient_id = p.patient_id WHERE {at} GROUP BY 1"
    );
    assert_eq!(
        rows(&cx, &by_sex).await,
        vec![vec!["F".to_string(), all.clone().unwrap_or_default()]]
    );
    // Below DISTINCT nothing can be measured: refused.
    let below = format!(
        "SELECT COUNT(*) FROM (SELECT DISTINCT p.patient_id, p.sex FROM patients p \
         JOIN clinical_events e ON e.patient_id = p.patient_id) x \
         JOIN patients q ON q.patient_id = x.patient_id \
         WHERE q.practice_code = '{AREA_PRACTICE}'"
    );
    assert_eq!(refused(&cx, &below).await, Rule::LowEffect, "{below}");
    // Where no one has events the join leaves out the whole practice: applied.
    let whole = format!(
        "SELECT COUNT(DISTINCT p.patient_id) FROM patients p \
         JOIN clinical_events e ON e.patient_id = p.patient_id \
         WHERE p.practice_code = '{REPHRASE_PRACTICE}'"
    );
    assert_eq!(single(&cx, &whole).await, None, "{whole}");
    let plain =
        format!("SELECT COUNT(*) FROM patients p WHERE p.practice_code = '{REPHRASE_PRACTICE}'");
    assert!(single(&cx, &plain).await.is_some(), "{plain}");
}
