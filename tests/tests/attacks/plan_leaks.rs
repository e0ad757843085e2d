//! Plan and row-count leaks: `EXPLAIN` (estimated and actual row counts), `EXPLAIN ANALYZE`
//! (rows per operator, after filters), and `LIMIT`/`OFFSET` over rows about persons (which
//! rows survive, and how many, depends on individuals). DESIGN.md rule 6.

use fivesafes_policies::decision::Rule;

use crate::common::*;

#[tokio::test]
async fn explain_in_any_form_is_refused() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let q = "SELECT COUNT(*) FROM patients WHERE practice_code = 'Y10003'";
    for sql in [
        format!("EXPLAIN {q}"),
        format!("EXPLAIN ANALYZE {q}"),
        format!("EXPLAIN VERBOSE {q}"),
        format!("EXPLAIN ANALYZE VERBOSE {q}"),
        format!("EXPLAIN FORMAT INDENT {q}"),
        "EXPLAIN SELECT * FROM patients".to_string(),
        format!("explain   analyze\n{q}"),
    ] {
        assert_eq!(refused(&cx, &sql).await, Rule::OnlyQueries, "{sql}");
    }
}

#[tokio::test]
async fn limit_and_offset_never_select_rows_about_persons() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    for sql in [
        "SELECT COUNT(*) FROM (SELECT * FROM patients LIMIT 1) t",
        "SELECT COUNT(*) FROM (SELECT sex FROM patients ORDER BY birth_month DESC LIMIT 10) t",
        "SELECT COUNT(*) FROM (SELECT * FROM patients OFFSET 5) t",
        "SELECT COUNT(*) FROM (SELECT * FROM patients WHERE practice_code = 'X20001' \
         ORDER BY birth_month LIMIT 1 OFFSET 3) t",
        "SELECT SUM(numeric_value) FROM (SELECT numeric_value FROM clinical_events \
         ORDER BY numeric_value DESC LIMIT 1) t",
        "SELECT COUNT(*) FROM patients WHERE patient_id IN \
         (SELECT patient_id FROM clinical_events ORDER BY numeric_value DESC LIMIT 1)",
        "WITH top AS (SELECT * FROM hes_apc ORDER BY admidate LIMIT 8) \
         SELECT COUNT(*) FROM top",
    ] {
        assert_eq!(refused(&cx, sql).await, Rule::SideChannel, "{sql}");
    }
}

#[tokio::test]
async fn limits_over_released_cells_reveal_no_suppressed_cell() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let q = "SELECT practice_code, COUNT(*) AS n FROM patients WHERE practice_code LIKE 'Y1%' \
             GROUP BY practice_code ORDER BY practice_code";
    let all = rows(&cx, q).await;
    assert!(all.len() >= 4, "{all:?}");
    // LIMIT and OFFSET apply to released cells only: paging through them gives the released
    // rows and nothing in between (no gap where a suppressed cell would be).
    for limit in 1..=all.len() + 2 {
        let got = rows(&cx, &format!("{q} LIMIT {limit}")).await;
        assert_eq!(got, all[..limit.min(all.len())].to_vec(), "LIMIT {limit}");
    }
    for offset in 0..=all.len() {
        let got = rows(&cx, &format!("{q} OFFSET {offset}")).await;
        assert_eq!(got, all[offset..].to_vec(), "OFFSET {offset}");
    }
    // Ordering by the (protected) count and cutting off: still only released cells.
    let smallest = rows(
        &cx,
        "SELECT practice_code, COUNT(*) AS n FROM patients WHERE practice_code LIKE 'Y1%' \
         GROUP BY practice_code ORDER BY n, practice_code LIMIT 1",
    )
    .await;
    assert_eq!(smallest.len(), 1);
    assert!(all.contains(&smallest[0]), "{smallest:?}");
}

#[tokio::test]
async fn a_small_group_and_an_empty_group_give_the_same_result() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    for (small, _) in THRESHOLD_GROUPS.iter().filter(|(_, n)| *n <= 7) {
        for template in [
            "SELECT COUNT(*) FROM patients WHERE practice_code = '{p}'",
            "SELECT sex, COUNT(*) FROM patients WHERE practice_code = '{p}' GROUP BY sex",
            "SELECT SUM(imd_decile), AVG(imd_decile) FROM patients WHERE practice_code = '{p}'",
        ] {
            let got = run(&cx, &template.replace("{p}", small))
                .await
                .expect("runs");
            let empty = run(&cx, &template.replace("{p}", "Q99999"))
                .await
                .expect("runs");
            // Same released rows (none) and the same schema.
            assert_eq!(render(&got.0), render(&empty.0), "{template} {small}");
            assert!(render(&got.0).is_empty(), "{template} {small}");
            let schema =
                |b: &Vec<datafusion::arrow::array::RecordBatch>| b.first().map(|b| b.schema());
            if let (Some(a), Some(b)) = (schema(&got.0), schema(&empty.0)) {
                assert_eq!(a, b);
            }
        }
    }
}
