//! Synthetic extracts through ingest into a store and a session: counts add up, no direct
//! identifier reaches the store, pseudonyms are stable and keyed.

use std::collections::HashSet;

use aho_corasick::AhoCorasick;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Date32Type, Int64Type};
use fivesafes_engine::dates::civil_from_days;
use fivesafes_engine::session::{SessionOptions, open_session, table_provider};
use fivesafes_engine::store::Store;

use crate::fixtures::*;

async fn count(ctx: &datafusion::prelude::SessionContext, sql: &str) -> i64 {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn synthetic_extracts_ingest_into_a_consistent_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (extracts, store) = (dir.path().join("extracts"), dir.path().join("store"));
    synth(&extracts, 3_000, 7);
    let report = run_ingest(&extracts, &store, &keys()).expect("ingest");

    // Every record is accounted for, and the synthetic bad rows were rejected.
    assert_eq!(
        report.counts.len(),
        fivesafes_engine::ingest::EXTRACTS.len()
    );
    for c in &report.counts {
        assert_eq!(
            c.read,
            c.accepted + c.rejected + c.removed_by_objection,
            "{c:?}"
        );
    }
    let rejected: u64 = report.counts.iter().map(|c| c.rejected).sum();
    assert!(rejected > 0, "the generator's bad rows must be rejected");
    let objection_removed: u64 = report.counts.iter().map(|c| c.removed_by_objection).sum();
    assert!(objection_removed > 0);

    let version = Store::new(&store).open_current().expect("open");
    assert_eq!(version.manifest.version, 1);
    let ctx = open_session(&version, &SessionOptions::default())
        .await
        .expect("session");
    let patients = version.manifest.table("patients").expect("patients").rows as i64;
    assert_eq!(count(&ctx, "SELECT COUNT(*) FROM patients").await, patients);
    assert_eq!(
        count(&ctx, "SELECT COUNT(DISTINCT patient_id) FROM patients").await,
        patients
    );
    // Governance data is not in the analyst session.
    assert!(ctx.sql("SELECT * FROM national_opt_out").await.is_err());
    assert!(ctx.sql("SELECT * FROM person_keys").await.is_err());
    // person_keys holds every person of every personal table with the same record key.
    let keys = table_provider(&ctx.state(), &version, "person_keys")
        .await
        .expect("keys");
    ctx.register_table("person_keys", keys).expect("register");
    assert_eq!(
        count(
            &ctx,
            "SELECT COUNT(*) - COUNT(DISTINCT patient_id) FROM person_keys"
        )
        .await,
        0
    );
    for t in [
        "patients",
        "practice_registrations",
        "clinical_events",
        "medications",
        "hes_apc",
        "hes_op",
        "hes_ae",
    ] {
        let missing = count(&ctx, &format!(
            "SELECT COUNT(*) FROM {t} x LEFT JOIN person_keys k \
             ON x.patient_id = k.patient_id AND x.record_key = k.record_key WHERE k.patient_id IS NULL"
        )).await;
        assert_eq!(missing, 0, "{t}");
    }
    // GP-sourced rows all belong to a stored patient; hospital rows may not (HES-only people).
    for t in ["clinical_events", "medications", "practice_registrations"] {
        let orphans = count(&ctx, &format!(
            "SELECT COUNT(*) FROM {t} x LEFT JOIN patients p ON x.patient_id = p.patient_id WHERE p.patient_id IS NULL"
        )).await;
        assert_eq!(orphans, 0, "{t}");
    }
    let hes_only = count(&ctx,
        "SELECT COUNT(*) FROM hes_apc h LEFT JOIN patients p ON h.patient_id = p.patient_id WHERE p.patient_id IS NULL",
    ).await;
    assert!(
        hes_only > 0,
        "some hospital rows belong to people outside the GP list or objectors"
    );
    // A person's record key is the same in every table.
    for t in [
        "clinical_events",
        "hes_apc",
        "hes_op",
        "hes_ae",
        "medications",
    ] {
        let mismatched = count(&ctx, &format!(
            "SELECT COUNT(*) FROM {t} x JOIN patients p ON x.patient_id = p.patient_id WHERE x.record_key <> p.record_key"
        )).await;
        assert_eq!(mismatched, 0, "{t}");
    }
    // Birth and death months are generalised to the first of the month.
    for b in read_table(&version, "patients") {
        for col in ["birth_month", "death_month"] {
            let a = b
                .column_by_name(col)
                .expect("col")
                .as_primitive::<Date32Type>();
            for i in 0..a.len() {
                if a.is_valid(i) {
                    assert_eq!(civil_from_days(a.value(i)).2, 1, "{col}");
                }
            }
        }
    }
}

#[test]
fn no_direct_identifier_reaches_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (extracts, store) = (dir.path().join("extracts"), dir.path().join("store"));
    synth(&extracts, 1_500, 11);
    run_ingest(&extracts, &store, &keys()).expect("ingest");
    let version = Store::new(&store).open_current().expect("open");

    // Collect every NHS number, full date of birth and postcode from the raw extracts.
    let mut nhs_numbers = HashSet::new();
    let mut dobs = HashSet::new();
    let mut postcodes = HashSet::new();
    for name in fivesafes_engine::ingest::EXTRACTS {
        let (header, rows) = read_csv(&extracts.join(name));
        for (i, col) in header.iter().enumerate() {
            for r in &rows {
                let v = &r[i];
                match col.as_str() {
                    "nhs_number" if v.len() == 10 => {
                        nhs_numbers.insert(v.clone());
                    }
                    "date_of_birth" if v.len() == 10 => {
                        dobs.insert(v.clone());
                    }
                    "postcode" if v.len() >= 5 => {
                        postcodes.insert(v.clone());
                        postcodes.insert(v.replace(' ', ""));
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(nhs_numbers.len() > 1_500 && dobs.len() > 100 && postcodes.len() > 20);

    // 1. Raw bytes of every file in the store (Parquet footers and statistics are not
    //    compressed, and manifest and rejects report are plain text).
    let patterns: Vec<&String> = nhs_numbers.iter().chain(&dobs).chain(&postcodes).collect();
    let ac = AhoCorasick::new(&patterns).expect("automaton");
    let files = all_files(&store);
    assert!(files.len() > 10);
    for f in &files {
        let bytes = std::fs::read(f).expect("read");
        if let Some(m) = ac.find(&bytes) {
            panic!(
                "{} contains a direct identifier (pattern {})",
                f.display(),
                m.pattern().as_usize()
            );
        }
        // NHS numbers as little- or big-endian integers.
        for n in nhs_numbers.iter().take(300) {
            let v: i64 = n.parse().expect("digits");
            for needle in [v.to_le_bytes(), v.to_be_bytes()] {
                assert!(
                    !bytes.windows(8).any(|w| w == needle),
                    "{} holds an NHS number as an integer",
                    f.display()
                );
            }
        }
    }

    // 2. Decoded column values of every table.
    let nhs_values: HashSet<i64> = nhs_numbers.iter().filter_map(|n| n.parse().ok()).collect();
    for t in &version.manifest.tables {
        for b in read_table(&version, &t.name) {
            for (field, col) in b.schema().fields().iter().zip(b.columns()) {
                match field.data_type() {
                    DataType::Utf8 => {
                        for v in col.as_string::<i32>().iter().flatten() {
                            assert!(
                                !nhs_numbers.contains(v)
                                    && !dobs.contains(v)
                                    && !postcodes.contains(v),
                                "{}.{} holds an identifier",
                                t.name,
                                field.name()
                            );
                        }
                    }
                    DataType::Int64 => {
                        for v in col.as_primitive::<Int64Type>().values() {
                            assert!(
                                !nhs_values.contains(v),
                                "{}.{} holds an NHS number",
                                t.name,
                                field.name()
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        for c in &t.columns {
            assert!(!["nhs_number", "date_of_birth", "postcode"].contains(&c.name.as_str()));
        }
    }
}

#[test]
fn patient_ids_are_stable_across_tables_and_ingests_and_keyed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extracts = dir.path().join("extracts");
    synth(&extracts, 1_000, 3);
    let a = run_ingest(&extracts, &dir.path().join("a"), &keys())
        .expect("a")
        .version;
    let b = run_ingest(&extracts, &dir.path().join("b"), &keys())
        .expect("b")
        .version;
    let c = run_ingest(&extracts, &dir.path().join("c"), &other_keys())
        .expect("c")
        .version;

    let sorted = |v: &fivesafes_engine::store::StoreVersion, t: &str| {
        let mut ids = i64_column(v, t, "patient_id");
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let pa = sorted(&a, "patients");
    assert_eq!(pa, sorted(&b, "patients"), "same key, same pseudonyms");
    let pc: HashSet<i64> = sorted(&c, "patients").into_iter().collect();
    assert!(
        pa.iter().all(|id| !pc.contains(id)),
        "another key gives other pseudonyms"
    );
    assert_eq!(pa.len(), pc.len());

    // Across tables: each GP table's ids are patients' ids, and a patient with events has the
    // same id in events, registrations and the opt-out list.
    let pset: HashSet<i64> = pa.iter().copied().collect();
    for t in ["clinical_events", "medications", "practice_registrations"] {
        assert!(sorted(&a, t).iter().all(|id| pset.contains(id)), "{t}");
    }
    let ndoo: HashSet<i64> = sorted(&a, "national_opt_out").into_iter().collect();
    let shared = pa.iter().filter(|id| ndoo.contains(id)).count();
    assert!(
        shared as f64 > 0.9 * pa.len() as f64,
        "opt-out list links to patients"
    );
    // The manifest records which key was used.
    assert_eq!(
        a.manifest.pseudonym_key_fingerprint,
        b.manifest.pseudonym_key_fingerprint
    );
    assert_ne!(
        a.manifest.pseudonym_key_fingerprint,
        c.manifest.pseudonym_key_fingerprint
    );
}
