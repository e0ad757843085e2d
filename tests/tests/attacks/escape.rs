//! Escape from the project view: other projects' tables, governance tables, secret columns,
//! files on disk, `information_schema`, table functions, DDL/DML and `COPY`. Hidden things do
//! not exist in a project's session, so naming one fails exactly like a typo (the error says
//! nothing about what exists); statements other than single read-only queries are refused by
//! the statement gate (FS-G1) before anything is planned.

use std::collections::BTreeSet;

use fivesafes_policies::decision::Rule;

use crate::common::*;

/// Every table of every catalog and schema of the project's session, as `catalog.schema.table`.
fn table_names(cx: &fivesafes_policies::query::ProjectContext) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for catalog in cx.session().catalog_names() {
        let Some(c) = cx.session().catalog(&catalog) else {
            continue;
        };
        for schema in c.schema_names() {
            let Some(s) = c.schema(&schema) else { continue };
            for table in s.table_names() {
                out.insert(format!("{catalog}.{schema}.{table}"));
            }
        }
    }
    out
}

#[tokio::test]
async fn other_projects_and_governance_tables_fail_like_typos() {
    let f = fixture();
    // The A&E project sees patients and hes_ae only.
    let cx = f.project(AE_AUDIT).await;
    let typo = invalid(&cx, "SELECT COUNT(*) FROM no_such_table").await;
    for hidden in [
        "clinical_events",
        "medications",
        "hes_apc",
        "practices",
        "national_opt_out",
        "person_keys",
    ] {
        let msg = invalid(&cx, &format!("SELECT COUNT(*) FROM {hidden}")).await;
        assert_eq!(
            msg.replace(hidden, "T"),
            typo.replace("no_such_table", "T"),
            "{hidden}"
        );
        let qualified = invalid(
            &cx,
            &format!("SELECT COUNT(*) FROM datafusion.public.{hidden}"),
        )
        .await;
        assert!(qualified.contains(hidden), "{qualified}");
    }
    // The full project does not see governance tables either.
    let research = f.project(RESEARCH).await;
    let typo = invalid(&research, "SELECT COUNT(*) FROM no_such_table").await;
    for hidden in ["national_opt_out", "person_keys"] {
        let msg = invalid(&research, &format!("SELECT COUNT(*) FROM {hidden}")).await;
        assert_eq!(msg.replace(hidden, "T"), typo.replace("no_such_table", "T"));
    }
    // The secret record key is not a column of any view.
    let typo = invalid(&research, "SELECT COUNT(no_such_column) FROM patients").await;
    for table in ["patients", "clinical_events", "hes_apc"] {
        let msg = invalid(
            &research,
            &format!("SELECT COUNT(no_such_column) FROM {table}"),
        )
        .await;
        let secret = invalid(&research, &format!("SELECT COUNT(record_key) FROM {table}")).await;
        assert_eq!(
            secret.replace("record_key", "C"),
            msg.replace("no_such_column", "C")
        );
    }
    assert!(typo.contains("no_such_column"), "{typo}");
}

#[tokio::test]
async fn files_on_disk_information_schema_and_table_functions_do_not_exist() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let parquet = f
        .version
        .table_files("patients")
        .and_then(|v| v.into_iter().next())
        .expect("patients file");
    let opt_out_file = f
        .version
        .table_files("national_opt_out")
        .and_then(|v| v.into_iter().next())
        .expect("opt-out file");
    let sqls = vec![
        "SELECT * FROM '/etc/passwd'".to_string(),
        "SELECT COUNT(*) FROM '/etc/passwd'".to_string(),
        "SELECT COUNT(*) FROM 'file:///etc/passwd'".to_string(),
        format!("SELECT COUNT(*) FROM '{}'", parquet.display()),
        format!("SELECT * FROM '{}'", opt_out_file.display()),
        format!("SELECT COUNT(*) FROM '{}'", f.version.dir.display()),
        "SELECT COUNT(*) FROM information_schema.tables".to_string(),
        "SELECT * FROM information_schema.columns".to_string(),
        "SELECT * FROM information_schema.df_settings".to_string(),
        "SELECT COUNT(*) FROM generate_series(1, 10)".to_string(),
        "SELECT COUNT(*) FROM range(10)".to_string(),
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
        format!("SELECT * FROM read_parquet('{}')", parquet.display()),
    ];
    for sql in &sqls {
        invalid(&cx, sql).await;
    }
}

#[tokio::test]
async fn ddl_dml_copy_and_settings_are_refused_and_change_nothing() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let tables_before = table_names(&cx);
    assert!(
        tables_before.iter().any(|t| t.ends_with(".patients")),
        "{tables_before:?}"
    );
    let out = tempfile::tempdir().expect("tempdir");
    let target = out.path().join("leak.csv");
    let parquet = f
        .version
        .table_files("national_opt_out")
        .and_then(|v| v.into_iter().next())
        .expect("opt-out file");
    let sqls = vec![
        "CREATE TABLE t AS SELECT * FROM patients".to_string(),
        "CREATE VIEW v AS SELECT * FROM patients".to_string(),
        "CREATE TEMPORARY VIEW v AS SELECT 1".to_string(),
        "DROP TABLE patients".to_string(),
        "DROP VIEW patients".to_string(),
        "ALTER TABLE patients RENAME TO p2".to_string(),
        "INSERT INTO practices VALUES ('A00000', 'x', 'y', 'z')".to_string(),
        "UPDATE patients SET sex = 'F'".to_string(),
        "DELETE FROM patients".to_string(),
        "TRUNCATE TABLE patients".to_string(),
        format!(
            "CREATE EXTERNAL TABLE ndoo STORED AS PARQUET LOCATION '{}'",
            parquet.display()
        ),
        "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'".to_string(),
        format!("COPY patients TO '{}'", target.display()),
        format!(
            "COPY (SELECT * FROM patients) TO '{}' STORED AS CSV",
            target.display()
        ),
        "SELECT * INTO p2 FROM patients".to_string(),
        "SET datafusion.catalog.information_schema = true".to_string(),
        "SET datafusion.execution.target_partitions = 1".to_string(),
        "SHOW TABLES".to_string(),
        "SHOW ALL".to_string(),
        "DESCRIBE patients".to_string(),
        "PREPARE q AS SELECT COUNT(*) FROM patients".to_string(),
        "SELECT 1; DROP TABLE patients".to_string(),
        "SELECT COUNT(*) FROM patients; SELECT COUNT(*) FROM patients".to_string(),
    ];
    for sql in &sqls {
        assert_eq!(refused(&cx, sql).await, Rule::OnlyQueries, "{sql}");
    }
    // Nothing was created, dropped, written or switched on.
    assert_eq!(table_names(&cx), tables_before);
    assert!(!target.exists());
    invalid(&cx, "SELECT COUNT(*) FROM information_schema.tables").await;
    assert!(!cx.session().state().config().information_schema());
}

#[tokio::test]
async fn recursive_queries_are_refused_as_unsupported() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
               SELECT COUNT(*) FROM r";
    assert_eq!(refused(&cx, sql).await, Rule::Unsupported);
}

#[tokio::test]
async fn rows_outside_the_project_date_window_are_not_in_the_view() {
    let f = fixture();
    let all = f.project(RESEARCH).await;
    let windowed = f.project(WINDOWED).await;
    // (table, date column): every dated personal table.
    let tables = [
        ("clinical_events", "event_date"),
        ("medications", "issue_date"),
        ("hes_apc", "admidate"),
        ("hes_op", "apptdate"),
        ("hes_ae", "arrivaldate"),
    ];
    for (table, date) in tables {
        let outside = format!(
            "SELECT COUNT(*) FROM {table} WHERE {date} < DATE '2018-01-01' \
             OR {date} > DATE '2020-12-31'"
        );
        let inside = format!(
            "SELECT COUNT(*) FROM {table} WHERE {date} BETWEEN DATE '2018-01-01' \
             AND DATE '2020-12-31'"
        );
        // Unprotected counts (never released) show what each view holds.
        let n = |rows: Vec<Vec<String>>| rows[0][0].parse::<u64>().expect("a count");
        assert!(
            n(unprotected(&all, &outside).await) > 0,
            "{table}: no rows outside"
        );
        assert_eq!(n(unprotected(&windowed, &outside).await), 0, "{table}");
        assert_eq!(
            n(unprotected(&windowed, &inside).await),
            n(unprotected(&all, &inside).await),
            "{table}: the window keeps every row inside it"
        );
    }
    // Registrations overlapping the window stay; those ended before it or started after
    // it do not.
    let reg = "SELECT COUNT(*) FROM practice_registrations WHERE end_date < DATE '2018-01-01' \
               OR start_date > DATE '2020-12-31'";
    let n = |rows: Vec<Vec<String>>| rows[0][0].parse::<u64>().expect("a count");
    assert_eq!(n(unprotected(&windowed, reg).await), 0);
}

/// An analyst's statement must not take the server down or hold it. A chain of 400
/// conditions joined by `AND` (nested 400 deep by the parser) overflowed a 2 MiB thread
/// stack in the low-effect rewrite, which aborts the whole process, every user's queries
/// with it; 1,000 overflowed DataFusion's SQL planner; and a column used twice in every
/// layer of a chain of derived tables doubled the condition written out at each layer
/// (depth 7 overflowed the stack, depth 20 is a million terms). Now the gate refuses
/// statements with more than `MAX_OPERATORS` operators before planning (FS-G2), chains up
/// to that are answered (the rewrite grows its stack as needed and takes a chain of one
/// operator as one node), and a condition that grows past a bound when written out is
/// refused as unsupported.
#[tokio::test]
async fn long_and_doubling_conditions_are_answered_or_refused_without_crashing() {
    let f = fixture();
    let cx = f.project(RESEARCH).await;
    let base = "SELECT COUNT(*) FROM patients WHERE practice_code = 'X20001'";
    let want = single(&cx, base).await;
    assert!(want.is_some());
    let max = fivesafes_policies::gate::MAX_OPERATORS;
    // Chains as long as the gate accepts (a function call has no operator): a condition
    // true for everyone in the cell, 496 times, with `AND` and with `OR`.
    let n = max - 4;
    let and = vec!["starts_with(practice_code, 'X')"; n].join(" AND ");
    assert_eq!(single(&cx, &format!("{base} AND {and}")).await, want, "AND");
    let or = vec!["starts_with(practice_code, 'Z')"; n].join(" OR ");
    assert_eq!(
        single(&cx, &format!("{base} AND NOT ({or})")).await,
        want,
        "OR"
    );
    // A list of 20,000 constants is one condition (as 1,000 atoms it overflowed the stack).
    let items: Vec<String> = (0..20_000).map(|i| format!("'Z{i}'")).collect();
    let sql = format!(
        "{base} AND coalesce(ethnicity, '') NOT IN ({})",
        items.join(", ")
    );
    assert_eq!(single(&cx, &sql).await, want, "NOT IN of 20,000");
    // The longest chain of operators the gate accepts is planned (here on a 2 MiB stack),
    // and a longer one is refused before planning, however deep.
    let plus = |n: usize| {
        format!(
            "{base} AND date_part('year', birth_month){} > 0",
            " + 0".repeat(n)
        )
    };
    // (`COUNT(*)`'s `*` counts too.)
    assert_eq!(single(&cx, &plus(max - 4)).await, want);
    for n in [max - 3, 50_000] {
        assert_eq!(
            refused(&cx, &plus(n)).await,
            Rule::TooComplex,
            "{n} additions"
        );
    }
    let chain = |depth: usize| {
        let mut sql = String::from(
            "WITH t0 AS (SELECT patient_id, (practice_code = 'X20001' AND sex = 'F') AS k \
             FROM patients)",
        );
        for i in 1..=depth {
            sql.push_str(&format!(
                ", t{i} AS (SELECT patient_id, (k AND k) AS k FROM t{})",
                i - 1
            ));
        }
        sql + &format!(" SELECT COUNT(*) FROM t{depth} WHERE k")
    };
    // A few layers are written out and measured as the condition itself.
    let women = single(&cx, &format!("{base} AND sex = 'F'")).await;
    assert!(women.is_some());
    assert_eq!(single(&cx, &chain(3)).await, women);
    for depth in [16, 40] {
        assert_eq!(
            refused(&cx, &chain(depth)).await,
            Rule::Unsupported,
            "depth {depth}"
        );
    }
    // A `WITH` query that reads the one before it twice doubles the plan at every step
    // (2⁴⁰ tables), and a chain of joins is as long as it is written: both refused before
    // planning.
    let mut doubling = String::from("WITH c0 AS (SELECT patient_id FROM patients)");
    for i in 1..=40 {
        doubling.push_str(&format!(
            ", c{i} AS (SELECT a.patient_id FROM c{p} a JOIN c{p} b USING (patient_id))",
            p = i - 1
        ));
    }
    doubling.push_str(" SELECT COUNT(*) FROM c40");
    assert_eq!(refused(&cx, &doubling).await, Rule::TooComplex);
    let joins: String = (0..2000)
        .map(|i| format!(" JOIN patients p{i} USING (patient_id)"))
        .collect();
    let sql = format!("SELECT COUNT(*) FROM patients{joins}");
    assert_eq!(refused(&cx, &sql).await, Rule::TooComplex);
}
