//! Type 1 objections: the latest dated code wins; objectors lose their GP rows but keep their
//! hospital rows; a later extract with a new objection purges the next version.

use std::collections::{HashMap, HashSet};

use fivesafes_engine::store::{Store, StoreVersion};

use crate::fixtures::*;

const DISSENT: &str = "827241000000103";
const WITHDRAWN: &str = "827261000000102";

struct People {
    dissent: String,
    withdrawn: String,
    redissent: String,
    same_day: String,
    plain: String,
}

fn people() -> People {
    People {
        dissent: nhs(400_000_001),
        withdrawn: nhs(400_000_101),
        redissent: nhs(400_000_201),
        same_day: nhs(400_000_301),
        plain: nhs(400_000_401),
    }
}

fn extracts(p: &People, extra_objections: &[String]) -> HashMap<&'static str, Vec<String>> {
    let all = [
        &p.dissent,
        &p.withdrawn,
        &p.redissent,
        &p.same_day,
        &p.plain,
    ];
    let mut m = reference_rows();
    m.insert(
        "gp_patients.csv",
        all.iter().map(|n| patient_row(n, "1960-05-17")).collect(),
    );
    m.insert(
        "gp_events.csv",
        all.iter()
            .flat_map(|n| {
                [
                    format!("{n},2020-01-01,44054006,"),
                    format!("{n},2021-01-01,1049301000000100,52"),
                ]
            })
            .collect(),
    );
    m.insert(
        "gp_medications.csv",
        all.iter()
            .map(|n| format!("{n},2021-02-01,123456789,0601022B0"))
            .collect(),
    );
    m.insert(
        "hes_apc.csv",
        all.iter()
            .enumerate()
            .map(|(i, n)| format!(
                "{n},{},{},1,2022-03-01,2022-03-01,2022-03-04,2022-03-04,21,19,1,RR8,A81001,61,F,LS1 4AP,E119,\"E119,I10X\",,",
                1000 + i, 2000 + i
            ))
            .collect(),
    );
    m.insert(
        "hes_ae.csv",
        all.iter()
            .enumerate()
            .map(|(i, n)| format!("{n},{},2022-02-01,1,01,RR8,A81001,61", 3000 + i))
            .collect(),
    );
    m.insert(
        "hes_op.csv",
        all.iter()
            .enumerate()
            .map(|(i, n)| format!("{n},{},2022-02-01,5,1,100,RR8,A81001,61", 4000 + i))
            .collect(),
    );
    m.insert(
        "ndoo.csv",
        all.iter()
            .map(|n| format!("{n},false,2024-03-01"))
            .collect(),
    );
    let mut obj = vec![
        format!("{},2020-01-01,{DISSENT}", p.dissent),
        format!("{},2019-01-01,{DISSENT}", p.withdrawn),
        format!("{},2021-06-01,{WITHDRAWN}", p.withdrawn),
        // Out of order in the file: the dated sequence is dissent, withdrawal, dissent.
        format!("{},2022-01-01,{DISSENT}", p.redissent),
        format!("{},2019-01-01,{DISSENT}", p.redissent),
        format!("{},2020-01-01,{WITHDRAWN}", p.redissent),
        format!("{},2021-01-01,{WITHDRAWN}", p.same_day),
        format!("{},2021-01-01,{DISSENT}", p.same_day),
    ];
    obj.extend_from_slice(extra_objections);
    m.insert("gp_objections.csv", obj);
    m
}

fn ids_in(v: &StoreVersion, table: &str) -> HashSet<i64> {
    i64_column(v, table, "patient_id").into_iter().collect()
}

fn pid(n: &str) -> i64 {
    keys()
        .pseudonymiser()
        .patient_id(n.parse().expect("digits"))
}

#[test]
fn objectors_lose_gp_rows_but_keep_hospital_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = people();
    write_extracts(&dir.path().join("x"), &extracts(&p, &[]));
    let report =
        run_ingest(&dir.path().join("x"), &dir.path().join("store"), &keys()).expect("ingest");
    let v = &report.version;
    let removed = [&p.dissent, &p.redissent, &p.same_day];
    let kept = [&p.withdrawn, &p.plain];
    for t in [
        "patients",
        "practice_registrations",
        "clinical_events",
        "medications",
    ] {
        let ids = ids_in(v, t);
        for n in removed {
            assert!(!ids.contains(&pid(n)), "objector has rows in {t}");
        }
        for n in kept {
            assert!(ids.contains(&pid(n)), "non-objector missing from {t}");
        }
    }
    for t in ["hes_apc", "hes_ae", "hes_op", "national_opt_out"] {
        let ids = ids_in(v, t);
        for n in removed.iter().chain(&kept) {
            assert!(
                ids.contains(&pid(n)),
                "hospital and governance rows are kept ({t})"
            );
        }
    }
    let counts = |e: &str| {
        report
            .counts
            .iter()
            .find(|c| c.extract == e)
            .expect("counts")
            .clone()
    };
    assert_eq!(counts("gp_events.csv").removed_by_objection, 6);
    assert_eq!(counts("gp_events.csv").accepted, 4);
    assert_eq!(counts("gp_medications.csv").removed_by_objection, 3);
    assert_eq!(counts("gp_patients.csv").removed_by_objection, 3);
    assert_eq!(counts("hes_apc.csv").accepted, 5);
    assert_eq!(rows(v, "patients"), 2);
}

#[test]
fn a_later_objection_purges_the_next_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let p = people();
    write_extracts(&dir.path().join("first"), &extracts(&p, &[]));
    run_ingest(&dir.path().join("first"), &store, &keys()).expect("first");
    let later = [format!("{},2024-02-01,{DISSENT}", p.plain)];
    write_extracts(&dir.path().join("second"), &extracts(&p, &later));
    run_ingest(&dir.path().join("second"), &store, &keys()).expect("second");
    let v = Store::new(&store).open_current().expect("open");
    assert_eq!(v.manifest.version, 2);
    assert!(!ids_in(&v, "clinical_events").contains(&pid(&p.plain)));
    assert!(!ids_in(&v, "patients").contains(&pid(&p.plain)));
    assert!(ids_in(&v, "hes_apc").contains(&pid(&p.plain)));
    assert_eq!(rows(&v, "patients"), 1);
}
