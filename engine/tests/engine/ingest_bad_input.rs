//! Structurally bad extracts stop ingest with an error naming the file and line, and publish
//! nothing; too many bad records stop it too.

use std::collections::HashMap;
use std::path::Path;

use fivesafes_engine::Error;
use fivesafes_engine::ingest::LAST_REJECTS;
use fivesafes_engine::store::Store;

use crate::fixtures::*;

fn valid_extracts(dir: &Path) -> Vec<String> {
    let people: Vec<String> = (0..20).map(|i| nhs(450_000_000 + i * 10)).collect();
    let mut m: HashMap<&str, Vec<String>> = reference_rows();
    m.insert(
        "gp_patients.csv",
        people
            .iter()
            .map(|n| patient_row(n, "1970-03-09"))
            .collect(),
    );
    m.insert(
        "gp_events.csv",
        people
            .iter()
            .map(|n| format!("{n},2020-01-01,44054006,"))
            .collect(),
    );
    m.insert(
        "hes_apc.csv",
        people
            .iter()
            .enumerate()
            .map(|(i, n)| format!(
                "{n},{},{},1,2022-03-01,2022-03-01,2022-03-04,2022-03-04,21,19,1,RR8,A81001,61,F,LS1 4AP,E119,\"E119,I10X\",,",
                1000 + i, 2000 + i
            ))
            .collect(),
    );
    write_extracts(dir, &m);
    people
}

/// Runs ingest on a store that already has a good version, expects an error containing every
/// `needle`, and checks the good version is still the one published.
fn expect_refused(extracts: &Path, store: &Path, needles: &[&str]) -> Error {
    let err = run_ingest(extracts, store, &keys()).expect_err("must be refused");
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} should mention {n:?}");
    }
    let v = Store::new(store)
        .open_current()
        .expect("previous version still opens");
    assert_eq!(v.manifest.version, 1, "nothing new published");
    err
}

fn setup() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Vec<String>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (x, store) = (dir.path().join("x"), dir.path().join("store"));
    let people = valid_extracts(&x);
    run_ingest(&x, &store, &keys()).expect("valid extracts ingest");
    (dir, x, store, people)
}

fn edit(path: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).expect("read");
    std::fs::write(path, f(text)).expect("write");
}

#[test]
fn missing_column() {
    let (_d, x, store, _) = setup();
    edit(&x.join("gp_events.csv"), |t| {
        t.lines()
            .map(|l| l.rsplit_once(',').map_or(l, |x| x.0).to_string() + "\n")
            .collect()
    });
    expect_refused(
        &x,
        &store,
        &["gp_events.csv:1", "missing column(s) numeric_value"],
    );
}

#[test]
fn wrong_header() {
    let (_d, x, store, _) = setup();
    edit(&x.join("gp_events.csv"), |t| {
        t.replacen("snomedct_code", "snomed_code", 1)
    });
    expect_refused(
        &x,
        &store,
        &[
            "gp_events.csv:1",
            "unexpected column(s) snomed_code",
            "missing column(s) snomedct_code",
        ],
    );
}

#[test]
fn truncated_file() {
    let (_d, x, store, _) = setup();
    edit(&x.join("hes_apc.csv"), |t| t[..t.len() - 60].to_string());
    // Header is line 1, so the last of 20 data rows is line 21.
    expect_refused(&x, &store, &["hes_apc.csv:21", "truncated"]);
}

#[test]
fn empty_file() {
    let (_d, x, store, _) = setup();
    std::fs::write(x.join("gp_medications.csv"), "").expect("write");
    expect_refused(&x, &store, &["gp_medications.csv", "empty file"]);
}

#[test]
fn broken_quoting() {
    let (_d, x, store, _) = setup();
    edit(&x.join("hes_apc.csv"), |t| {
        t.replacen("\"E119,I10X\"", "\"E119,I10X", 1)
    });
    expect_refused(&x, &store, &["hes_apc.csv:2", "quoting"]);
}

#[test]
fn missing_file() {
    let (_d, x, store, _) = setup();
    std::fs::remove_file(x.join("hes_ae.csv")).expect("rm");
    expect_refused(&x, &store, &["hes_ae.csv", "not found"]);
}

#[test]
fn too_many_bad_records_publish_nothing_and_report_without_values() {
    let (_d, x, store, people) = setup();
    // Break the check digit of 3 of the 20 event rows: 15% rejected, above the 1% default.
    edit(&x.join("gp_events.csv"), |t| {
        let mut lines: Vec<String> = t.lines().map(String::from).collect();
        for l in lines.iter_mut().skip(1).take(3) {
            let last = l.as_bytes()[9] - b'0';
            l.replace_range(9..10, &(((last + 1) % 10).to_string()));
        }
        lines.join("\n") + "\n"
    });
    let err = expect_refused(
        &x,
        &store,
        &[
            "gp_events.csv: 3 of 20 records rejected",
            "nothing published",
        ],
    );
    assert!(matches!(err, Error::RejectLimit(_)));
    let report = std::fs::read_to_string(store.join(LAST_REJECTS)).expect("rejects report");
    assert_eq!(
        report
            .lines()
            .filter(|l| l.starts_with("gp_events.csv,"))
            .count(),
        3
    );
    assert!(
        report.contains("gp_events.csv,2,nhs_number,invalid NHS number"),
        "{report}"
    );
    for n in &people {
        assert!(
            !report.contains(&n[..9]),
            "the report must not carry identifiers"
        );
    }
    // A higher limit accepts the same extracts.
    let mut opts = fivesafes_engine::ingest::IngestOptions::new(&x, &store);
    opts.max_reject_rate = 0.2;
    let ok = fivesafes_engine::ingest::ingest(&opts, &keys()).expect("within limit");
    assert_eq!(ok.version.manifest.version, 2);
}

#[test]
fn keys_inside_the_store_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (x, store) = (dir.path().join("x"), dir.path().join("store"));
    valid_extracts(&x);
    let keys_dir = store.join("keys");
    fivesafes_engine::keys::init(&keys_dir).expect("keys");
    let keys = fivesafes_engine::keys::Keys::load(&keys_dir).expect("load");
    let err = run_ingest(&x, &store, &keys).expect_err("refused");
    assert!(
        err.to_string().contains("keys must live outside the store"),
        "{err}"
    );
    assert!(
        Store::new(&store)
            .current_version_number()
            .expect("read")
            .is_none()
    );
}
