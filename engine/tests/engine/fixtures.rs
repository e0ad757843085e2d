//! Shared test fixtures: keys, synthetic extracts, hand-built extracts, and store readers.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use fivesafes_engine::ingest::{IngestOptions, IngestReport, columns_of, ingest};
use fivesafes_engine::keys::Keys;
use fivesafes_engine::store::StoreVersion;
use fivesafes_engine::synth::{SynthOptions, generate};
use fivesafes_engine::{Result, ingest::validate::nhs_number};

/// Fixed test keys (noise and pseudonyms are deterministic from them).
pub fn keys() -> Keys {
    Keys::from_bytes([11u8; 32], [22u8; 32])
}

/// Other keys, to show pseudonyms depend on the key.
pub fn other_keys() -> Keys {
    Keys::from_bytes([33u8; 32], [22u8; 32])
}

/// Writes synthetic extracts for `patients` people into `dir`.
pub fn synth(dir: &Path, patients: u64, seed: u64) {
    generate(&SynthOptions {
        patients,
        seed,
        out: dir.to_path_buf(),
        progress: false,
    })
    .expect("synthetic extracts");
}

/// Ingests `extracts` into `store` with default options.
pub fn run_ingest(extracts: &Path, store: &Path, keys: &Keys) -> Result<IngestReport> {
    ingest(&IngestOptions::new(extracts, store), keys)
}

/// A valid NHS number built from a nine-digit prefix (searching upwards for a prefix whose
/// check digit is valid).
pub fn nhs(prefix: u64) -> String {
    (prefix..)
        .flat_map(|p| (0..10).map(move |d| format!("{p:09}{d}")))
        .find(|s| nhs_number(s.as_bytes()).is_some())
        .expect("some valid number")
}

/// A minimal, valid set of hand-built extracts. Tables not given get only their header.
/// `rows` maps an extract file name to its data lines (without header).
pub fn write_extracts(dir: &Path, rows: &HashMap<&str, Vec<String>>) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for name in fivesafes_engine::ingest::EXTRACTS {
        let mut text = columns_of(name).join(",");
        text.push('\n');
        for line in rows.get(name).map(Vec::as_slice).unwrap_or_default() {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(dir.join(name), text).expect("write extract");
    }
}

/// Reference rows shared by hand-built extracts: one practice, one postcode.
pub fn reference_rows() -> HashMap<&'static str, Vec<String>> {
    let mut m = HashMap::new();
    m.insert(
        "practices.csv",
        vec!["A81001,The Test Surgery,15N,North East and Yorkshire".to_string()],
    );
    m.insert("postcode_lsoa.csv", vec!["LS1 4AP,E01000001,3".to_string()]);
    m
}

/// A gp_patients row for a registered patient at A81001 in LS1 4AP.
pub fn patient_row(nhs: &str, dob: &str) -> String {
    format!("{nhs},{dob},F,A,LS1 4AP,A81001,2010-01-01,,")
}

/// Reads every batch of a table of a version.
pub fn read_table(version: &StoreVersion, name: &str) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for path in version.table_files(name).expect("table exists") {
        let file = std::fs::File::open(path).expect("open parquet");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for b in reader {
            out.push(b.expect("batch"));
        }
    }
    out
}

/// All values of an Int64 column of a table.
pub fn i64_column(version: &StoreVersion, table: &str, column: &str) -> Vec<i64> {
    read_table(version, table)
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(column).expect("column");
            a.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

/// Row count of a table.
pub fn rows(version: &StoreVersion, table: &str) -> usize {
    read_table(version, table)
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

/// Every file under a directory, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Reads a CSV extract as (header, rows of fields).
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).expect("csv");
    let header = r
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("record").iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Whether a column array has a null at `i`.
pub fn is_null(a: &dyn Array, i: usize) -> bool {
    a.is_null(i)
}
