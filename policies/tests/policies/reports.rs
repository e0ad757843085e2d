//! Canned reports over a small hand-built store: for every report, the unprotected numbers
//! (the report's SQL run without output control) against values computed by hand from the
//! indicator definition, and the protected result against the output rules; parameter
//! validation; the renderers, including the HTML page in headless Chromium.
//!
//! The store (see [`extracts`]) has three practices:
//!
//! | practice | sub-ICB | region | registered |
//! |---|---|---|---|
//! | A81001 Alpha Surgery | 15N | North East and Yorkshire | p0–p39 since 2010; p69 until 2022-06-30; p70 (opted out) |
//! | A81002 Beta Practice | 16C | North East and Yorkshire | p40–p59 since 2010; p60–p63 from 2022-10-15; p69 from 2022-07-01 |
//! | B82001 Gamma Health Centre | 02X | North West | p64–p68 since 2010 |
//!
//! Registered on the financial years' middle days (2022-09-30 and 2023-09-30; p70 is
//! removed by the national opt-out): A81001 40 and 40; A81002 20 + p69 = 21, then
//! 20 + 4 + 1 = 25; B82001 5 and 5. Hospital, A&E, outpatient and prescribing rows are listed
//! with each report's test.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use fivesafes_engine::ingest::validate::nhs_number;
use fivesafes_engine::ingest::{EXTRACTS, IngestOptions, columns_of, ingest};
use fivesafes_engine::keys::Keys;
use fivesafes_engine::session::{SessionOptions, runtime};
use fivesafes_engine::store::{Store, StoreVersion};
use fivesafes_policies::Register;
use fivesafes_policies::output::{Released, count_error_bound, protect_rate};
use fivesafes_policies::query::ProjectContext;
use fivesafes_policies::reports::{
    BoundReport, OUTPUT_COLUMNS, PngOptions, ReportDef, ReportError, ReportRegistry, ReportResult,
    TOTAL_AREA, run_report, to_csv, to_html, to_png, to_png_with, to_svg, to_table_text,
};

// ---------------------------------------------------------------------------------------------
// The hand-built store.
// ---------------------------------------------------------------------------------------------

/// A valid NHS number for person `i` (the first valid one from a prefix 10 apart per person).
fn nhs(i: u32) -> String {
    let prefix = 400_000_000 + 10 * u64::from(i);
    (prefix..)
        .flat_map(|p| (0..10).map(move |d| format!("{p:09}{d}")))
        .find(|s| nhs_number(s.as_bytes()).is_some())
        .expect("a valid number")
}

/// The practice person `i` is registered with on `date` (ISO text compares as dates).
fn practice_of(i: u32, date: &str) -> &'static str {
    match i {
        0..=39 | 70 => "A81001",
        40..=63 => "A81002",
        64..=68 => "B82001",
        69 if date <= "2022-06-30" => "A81001",
        69 => "A81002",
        _ => unreachable!("no person {i}"),
    }
}

/// Builds the extract rows.
#[derive(Default)]
struct Extracts {
    rows: HashMap<&'static str, Vec<String>>,
    next_key: u64,
}

impl Extracts {
    fn add(&mut self, file: &'static str, line: String) {
        self.rows.entry(file).or_default().push(line);
    }

    fn key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    /// One hospital spell of person `p`: `episodes` episodes with the same dates and
    /// diagnosis; the last episode carries `dismeth`, earlier ones `8` (not finished).
    #[allow(clippy::too_many_arguments)]
    fn spell(
        &mut self,
        p: u32,
        admidate: &str,
        disdate: &str,
        admimeth: &str,
        dismeth: &str,
        diag: &str,
        concat: &str,
        episodes: u32,
    ) {
        let spell = self.key();
        for e in 1..=episodes {
            let epikey = self.key();
            let dm = if e == episodes { dismeth } else { "8" };
            self.add(
                "hes_apc.csv",
                format!(
                    "{},{epikey},{spell},{e},{admidate},{admidate},{disdate},{disdate},{admimeth},19,{dm},RR8,{},60,F,LS1 4AP,{diag},\"{concat}\",,",
                    nhs(p),
                    practice_of(p, admidate)
                ),
            );
        }
    }

    fn ae(&mut self, p: u32, date: &str) {
        let k = self.key();
        self.add(
            "hes_ae.csv",
            format!("{},{k},{date},1,02,RR8,{},60", nhs(p), practice_of(p, date)),
        );
    }

    fn op(&mut self, p: u32, date: &str, attended: &str) {
        let k = self.key();
        self.add(
            "hes_op.csv",
            format!(
                "{},{k},{date},{attended},1,300,RR8,{},60",
                nhs(p),
                practice_of(p, date)
            ),
        );
    }

    fn med(&mut self, p: u32, date: &str, bnf: &str) {
        self.add(
            "gp_medications.csv",
            format!("{},{date},323509004,{bnf}", nhs(p)),
        );
    }
}

/// Primary diagnoses of the chronic ACSC spells of p0–p11 (NHS OF 2.3.i list).
const CHRONIC: [&str; 12] = [
    "J45X", "J441", "I500", "I10X", "E110", "D509", "G409", "F03X", "I209", "I48X", "J20X", "E105",
];
/// Primary diagnoses of the acute spells of p12–p23 (NHS OF 3a list).
const ACUTE: [&str; 12] = [
    "L039", "N390", "J069", "K529", "N10X", "K021", "H669", "J181", "R02X", "N739", "E86X", "K250",
];
/// Primary diagnoses of p24–p29's emergency spells: in neither list (E119: diabetes without
/// complications; J20X without COPD recorded).
const OTHER: [&str; 6] = ["S720", "I219", "K359", "E119", "J20X", "C349"];

fn extracts() -> Extracts {
    let mut x = Extracts::default();
    for (code, name, sub_icb, region) in [
        ("A81001", "Alpha Surgery", "15N", "North East and Yorkshire"),
        ("A81002", "Beta Practice", "16C", "North East and Yorkshire"),
        ("B82001", "Gamma Health Centre", "02X", "North West"),
    ] {
        x.add("practices.csv", format!("{code},{name},{sub_icb},{region}"));
    }
    x.add("postcode_lsoa.csv", "LS1 4AP,E01000001,3".into());

    // Registrations and opt-out status (p70 opted out).
    let reg = |x: &mut Extracts, p: u32, practice: &str, start: &str, end: &str| {
        x.add(
            "gp_patients.csv",
            format!(
                "{},1960-05-05,F,A,LS1 4AP,{practice},{start},{end},",
                nhs(p)
            ),
        );
    };
    for p in 0..=70 {
        match p {
            60..=63 => reg(&mut x, p, "A81002", "2022-10-15", ""),
            69 => {
                reg(&mut x, p, "A81001", "2010-01-01", "2022-06-30");
                reg(&mut x, p, "A81002", "2022-07-01", "");
            }
            _ => reg(&mut x, p, practice_of(p, "2020-01-01"), "2010-01-01", ""),
        }
        x.add(
            "ndoo.csv",
            format!(
                "{},{},2024-01-01",
                nhs(p),
                if p == 70 { "true" } else { "false" }
            ),
        );
    }

    // Admitted patient care (see the emergency-admission and readmission tests).
    for (i, diag) in CHRONIC.iter().enumerate() {
        let p = i as u32;
        let concat = if *diag == "J20X" { "J20X,J449" } else { diag };
        let episodes = if p <= 2 { 2 } else { 1 };
        x.spell(
            p,
            "2022-06-01",
            "2022-06-03",
            "21",
            "1",
            diag,
            concat,
            episodes,
        );
        x.spell(p, "2022-06-20", "2022-06-22", "21", "1", "R53X", "R53X", 1);
    }
    for (i, diag) in ACUTE.iter().enumerate() {
        x.spell(
            12 + i as u32,
            "2022-08-01",
            "2022-08-02",
            "22",
            "1",
            diag,
            diag,
            1,
        );
    }
    x.spell(12, "2022-09-01", "2022-09-02", "21", "1", "R53X", "R53X", 1); // day 30: too late
    x.spell(13, "2022-08-31", "2022-09-01", "21", "1", "R53X", "R53X", 1); // day 29
    x.spell(14, "2022-08-10", "2022-08-11", "11", "1", "R53X", "R53X", 1); // elective
    x.spell(15, "2022-08-02", "2022-08-03", "2A", "1", "R53X", "R53X", 1); // day 0
    for (i, diag) in OTHER.iter().enumerate() {
        let p = 24 + i as u32;
        let concat = if *diag == "J20X" { "J20X,R05X" } else { diag };
        let dismeth = if p == 29 { "4" } else { "1" }; // p29 died in hospital
        x.spell(
            p,
            "2022-10-10",
            "2022-10-12",
            "23",
            dismeth,
            diag,
            concat,
            1,
        );
    }
    x.spell(30, "2022-11-01", "2022-11-03", "2B", "1", "J45X", "J45X", 1); // transfer
    x.spell(31, "2022-11-05", "2022-11-06", "82", "1", "Z380", "Z380", 1); // birth
    x.spell(32, "2022-11-10", "2022-11-11", "11", "1", "J45X", "J45X", 1); // elective
    x.spell(33, "2022-11-12", "2022-11-13", "2C", "1", "Z381", "Z381", 1); // baby
    x.spell(70, "2022-06-01", "2022-06-02", "21", "1", "J45X", "J45X", 1); // opted out
    for p in 0..=4 {
        x.spell(p, "2023-05-01", "2023-05-02", "21", "1", "J45X", "J45X", 1);
    }
    for p in 40..=42 {
        x.spell(p, "2022-07-01", "2022-07-02", "24", "1", "L039", "L039", 1);
    }

    // A&E.
    for p in 0..=19 {
        x.ae(p, "2022-07-15");
    }
    for p in 0..=4 {
        x.ae(p, "2022-12-01");
    }
    for p in 0..=11 {
        x.ae(p, "2023-06-01");
    }
    for p in 40..=44 {
        x.ae(p, "2022-07-15");
    }
    x.ae(70, "2022-07-15");

    // Outpatients.
    for p in 0..=19 {
        let attended = match p {
            0..=9 => "5",
            10..=13 => "6",
            14..=16 => "3",
            17 => "7",
            18 => "2",
            _ => "4",
        };
        x.op(p, "2022-09-10", attended);
    }
    for p in 0..=11 {
        x.op(p, "2022-10-10", "3");
    }
    for p in 40..=49 {
        x.op(p, "2022-09-10", "5");
    }
    x.op(40, "2022-10-10", "3");

    // Prescribing.
    for p in 0..=19 {
        x.med(p, "2022-09-01", "0501013B0"); // amoxicillin
    }
    for p in 0..=9 {
        x.med(p, "2022-09-01", "0501013K0"); // co-amoxiclav
    }
    for p in 10..=14 {
        x.med(p, "2022-09-01", "0501021L0"); // cefalexin (cephalosporin)
    }
    for p in 15..=16 {
        x.med(p, "2022-09-01", "0501120L0"); // ciprofloxacin (quinolone)
    }
    x.med(20, "2022-09-01", "0501090K0"); // isoniazid: BNF 5.1.9, excluded
    x.med(21, "2022-09-01", "0501100D0"); // dapsone: BNF 5.1.10, excluded
    x.med(22, "2022-09-01", "0301011R0"); // salbutamol: not an antibiotic
    x.med(69, "2022-05-01", "0501013B0"); // registered with A81001 that day
    x.med(69, "2022-08-01", "0501013B0"); // registered with A81002 that day
    x.med(70, "2022-09-01", "0501013B0"); // opted out
    for p in 40..=48 {
        x.med(p, "2022-09-01", "0501130R0"); // nitrofurantoin
    }
    for p in 0..=11 {
        x.med(p, "2023-10-01", "0501013B0");
    }
    x
}

/// A temporary store holding [`extracts`].
struct Fixture {
    _dir: tempfile::TempDir,
    version: StoreVersion,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("extracts");
    std::fs::create_dir_all(&raw).expect("mkdir");
    let x = extracts();
    for name in EXTRACTS {
        let mut text = columns_of(name).join(",");
        text.push('\n');
        for line in x.rows.get(name).map(Vec::as_slice).unwrap_or_default() {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(raw.join(name), text).expect("write extract");
    }
    let keys = Keys::from_bytes([7; 32], [8; 32]);
    let mut opts = IngestOptions::new(&raw, dir.path().join("store"));
    opts.max_reject_rate = 0.0;
    ingest(&opts, &keys).expect("ingest");
    let version = Store::new(dir.path().join("store"))
        .open_current()
        .expect("open store");
    Fixture { _dir: dir, version }
}

/// The commissioners' project of the example register.
async fn context(f: &Fixture) -> ProjectContext {
    let register = Register::from_toml(
        include_str!("../../projects.example.toml"),
        "projects.example.toml",
    )
    .expect("example register");
    let project = register.project("service-design").expect("service-design");
    let opts = SessionOptions::default();
    ProjectContext::open(&f.version, project, runtime(&opts).expect("runtime"), &opts)
        .await
        .expect("project context")
}

fn registry() -> ReportRegistry {
    ReportRegistry::builtin().expect("built-in reports load")
}

fn bind(name: &str, params: &[(&str, &str)]) -> BoundReport {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    registry()
        .validate(name, &params)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Financial years 2022-23 and 2023-24 by practice.
const FY_BY_PRACTICE: [(&str, &str); 4] = [
    ("by", "practice"),
    ("period", "financial_year"),
    ("from", "2022-04-01"),
    ("to", "2024-03-31"),
];

type Cells = BTreeMap<(String, String), i64>;

/// Runs `sql` without output control; `area, period → value`.
async fn unprotected(cx: &ProjectContext, sql: &str) -> Cells {
    let plan = cx
        .plan_unprotected(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let batches: Vec<RecordBatch> = cx
        .session()
        .execute_logical_plan(plan)
        .await
        .expect("dataframe")
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let mut out = Cells::new();
    for b in &batches {
        let text = |n: &str| cast(b.column_by_name(n).expect(n), &DataType::Utf8).expect("utf8");
        let (area, period) = (text("area"), text("period"));
        let value =
            cast(b.column_by_name("value").expect("value"), &DataType::Int64).expect("int64");
        let (area, period) = (area.as_string::<i32>(), period.as_string::<i32>());
        let value = value.as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert!(!period.is_null(i), "a NULL period in\n{sql}");
            let key = (area.value(i).to_string(), period.value(i).to_string());
            assert!(out.insert(key, value.value(i)).is_none(), "duplicate cell");
        }
    }
    out
}

fn cells(expected: &[(&str, &str, i64)]) -> Cells {
    expected
        .iter()
        .map(|(a, p, v)| ((a.to_string(), p.to_string()), *v))
        .collect()
}

/// Registered patients by practice and financial year (see the module documentation).
fn registered_by_practice() -> Cells {
    cells(&[
        ("A81001", "2022-23", 40),
        ("A81001", "2023-24", 40),
        ("A81002", "2022-23", 21),
        ("A81002", "2023-24", 25),
        ("B82001", "2022-23", 5),
        ("B82001", "2023-24", 5),
    ])
}

async fn check_unprotected(
    cx: &ProjectContext,
    report: &BoundReport,
    numerator: Cells,
    denominator: Cells,
) {
    let name = &report.def().name;
    assert_eq!(
        unprotected(cx, &report.numerator_sql()).await,
        numerator,
        "{name}: numerator"
    );
    assert_eq!(
        unprotected(cx, &report.denominator_sql()).await,
        denominator,
        "{name}: denominator"
    );
}

// ---------------------------------------------------------------------------------------------
// The output rules, checked on a protected result against the unprotected counts.
// ---------------------------------------------------------------------------------------------

/// Runs `report` protected and checks every rule of the released table; returns the result
/// and the time the run took.
async fn check_protected(cx: &ProjectContext, report: &BoundReport) -> (ReportResult, Duration) {
    let def = report.def();
    let started = Instant::now();
    let result = run_report(cx, report)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", def.name));
    let took = started.elapsed();
    let num = unprotected(cx, &report.numerator_sql()).await;
    let den = unprotected(cx, &report.denominator_sql()).await;
    let oc = *cx.output_control();
    let bound = count_error_bound(&oc);
    let base = u64::from(oc.rounding_base);
    let sig = oc.significant_figures;

    let check_count = |what: &str, released: Option<u64>, truth: i64| {
        match released {
            Some(v) => {
                // Released: a multiple of the base, close to the truth, and only for cells of
                // more than 7 (a count is never above its cell's persons' floor otherwise).
                assert_eq!(v % base, 0, "{what}: {v} is not a multiple of {base}");
                assert!(
                    truth > 7,
                    "{what}: {v} released for a true count of {truth}"
                );
                assert!(
                    v.abs_diff(truth as u64) <= bound,
                    "{what}: {v} too far from {truth}"
                );
            }
            // Suppression is by persons; every cell of this store with 10 or more records
            // also has 10 or more persons, so only counts below 10 may be withheld.
            None => assert!(
                truth < i64::from(oc.min_persons + oc.noise_extra_threshold),
                "{what}: a count of {truth} suppressed"
            ),
        }
        if truth <= 7 {
            assert_eq!(
                released, None,
                "{what}: a count of {truth} must be suppressed"
            );
        }
    };
    let (mut released_rates, mut suppressed_rates) = (0, 0);
    for r in result.cells() {
        let key = (r.area.clone(), r.period.clone());
        let what = |part: &str| format!("{} {} {}/{}", def.name, part, r.area, r.period);
        check_count(
            &what("numerator"),
            r.numerator,
            num.get(&key).copied().unwrap_or(0),
        );
        check_count(
            &what("denominator"),
            r.denominator,
            den.get(&key).copied().unwrap_or(0),
        );
        match (r.numerator, r.denominator) {
            (Some(n), Some(d)) => {
                let want =
                    protect_rate(Released::Value(n), Released::Value(d), def.multiplier, sig);
                assert_eq!(r.rate, want.value(), "{}", what("rate"));
                assert_eq!(r.suppressed, want.is_suppressed());
            }
            _ => {
                assert_eq!(r.rate, None, "{}: rate of a suppressed cell", what("rate"));
                assert!(r.suppressed);
            }
        }
        if r.suppressed {
            suppressed_rates += 1;
        } else {
            released_rates += 1;
        }
    }
    assert!(
        released_rates > 0,
        "{}: no released rate to check",
        def.name
    );
    assert!(
        suppressed_rates > 0,
        "{}: no suppressed rate to check",
        def.name
    );
    assert_eq!(result.rows_suppressed, suppressed_rates);

    // Totals: released cells only.
    for p in &result.periods {
        let total = result
            .totals()
            .find(|t| t.period == p.label)
            .expect("a total per period");
        assert_eq!(total.area, TOTAL_AREA);
        let included: Vec<_> = result
            .cells()
            .filter(|r| r.period == p.label && !r.suppressed)
            .collect();
        let n: u64 = included.iter().filter_map(|r| r.numerator).sum();
        let d: u64 = included.iter().filter_map(|r| r.denominator).sum();
        if included.is_empty() {
            assert_eq!(
                (total.numerator, total.denominator, total.rate),
                (None, None, None)
            );
        } else {
            assert_eq!((total.numerator, total.denominator), (Some(n), Some(d)));
            let want = protect_rate(Released::Value(n), Released::Value(d), def.multiplier, sig);
            assert_eq!(total.rate, want.value());
        }
    }

    // Every area of the practices table appears once per period, then the total.
    let areas = result
        .cells()
        .filter(|r| r.period == result.periods[0].label)
        .count();
    assert_eq!(result.rows.len(), (areas + 1) * result.periods.len());
    let batch_rows: usize = result.batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(batch_rows, result.rows.len());
    let schema = result.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, OUTPUT_COLUMNS);
    let b = &result.batches[0];
    let rate = b.column_by_name("rate").expect("rate");
    let suppressed = b.column_by_name("suppressed").expect("flag").as_boolean();
    for i in 0..b.num_rows() {
        assert_eq!(rate.is_null(i), suppressed.value(i));
    }

    // Audit facts.
    assert_eq!(result.queries.len(), 3);
    assert!(result.rules_applied.iter().any(|r| r == "FS-3"));
    assert_eq!(result.plan_hash().len(), 64);
    assert!(result.tables_read().iter().any(|t| t == "practices"));
    assert!(
        !result.opt_out_filters().is_empty(),
        "national opt-out applies"
    );
    assert!(result.statement.starts_with(&def.name));
    eprintln!(
        "{}: {} rows ({} suppressed, {} cells suppressed by the policy layer) in {:?}",
        def.name,
        result.rows.len(),
        result.rows_suppressed,
        result.cells_suppressed,
        took
    );
    (result, took)
}

// ---------------------------------------------------------------------------------------------
// One pair of tests per report.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn emergency_admissions_match_hand_counts() {
    let f = fixture();
    let cx = context(&f).await;
    // Emergency spells (epiorder 1, methods 21-25, 28, 2A, 2D) by admission date:
    // A81001 2022-23: 12 chronic (06-01) + 12 readmissions (06-20) + 12 acute (08-01)
    //   + p12 (09-01) + p13 (08-31) + p15 (08-02, method 2A) + 6 others (10-10, p29 died) = 45;
    //   not counted: the second episodes of p0-p2, p14 elective (11), p30 transfer (2B),
    //   p31 birth (82), p32 elective (11), p33 baby (2C), p70 opted out.
    // A81001 2023-24: p0-p4 = 5. A81002 2022-23: p40-p42 = 3. B82001: none.
    let r = bind("emergency-admissions", &FY_BY_PRACTICE);
    check_unprotected(
        &cx,
        &r,
        cells(&[
            ("A81001", "2022-23", 45),
            ("A81001", "2023-24", 5),
            ("A81002", "2022-23", 3),
        ]),
        registered_by_practice(),
    )
    .await;

    // By month, A81001: June 12 + 12 = 24, August 12 + p13 + p15 = 14, September p12 = 1,
    // October 6; A81002 July 3. Registered on 2022-06-15: A81001 40 + p69 = 41, A81002 20,
    // B82001 5; 2022-07-16: A81001 40, A81002 21; later months as in the year.
    let r = bind(
        "emergency-admissions",
        &[
            ("by", "practice"),
            ("period", "month"),
            ("from", "2022-06-01"),
            ("to", "2022-10-31"),
        ],
    );
    let mut den = Cells::new();
    for (month, a, b) in [
        ("2022-06", 41, 20),
        ("2022-07", 40, 21),
        ("2022-08", 40, 21),
        ("2022-09", 40, 21),
        ("2022-10", 40, 25),
    ] {
        den.insert(("A81001".into(), month.into()), a);
        den.insert(("A81002".into(), month.into()), b);
        den.insert(("B82001".into(), month.into()), 5);
    }
    check_unprotected(
        &cx,
        &r,
        cells(&[
            ("A81001", "2022-06", 24),
            ("A81001", "2022-08", 14),
            ("A81001", "2022-09", 1),
            ("A81001", "2022-10", 6),
            ("A81002", "2022-07", 3),
        ]),
        den,
    )
    .await;

    // By region: North East and Yorkshire = A81001 + A81002 (45 + 3; 40 + 21 registered,
    // then 40 + 25), North West = B82001. By sub-ICB: 15N = A81001, 16C = A81002, 02X = B82001.
    let r = bind(
        "emergency-admissions",
        &[
            ("by", "region"),
            ("from", "2022-04-01"),
            ("to", "2024-03-31"),
        ],
    );
    check_unprotected(
        &cx,
        &r,
        cells(&[
            ("North East and Yorkshire", "2022-23", 48),
            ("North East and Yorkshire", "2023-24", 5),
        ]),
        cells(&[
            ("North East and Yorkshire", "2022-23", 61),
            ("North East and Yorkshire", "2023-24", 65),
            ("North West", "2022-23", 5),
            ("North West", "2023-24", 5),
        ]),
    )
    .await;
    let r = bind(
        "emergency-admissions",
        &[
            ("by", "sub_icb"),
            ("from", "2022-04-01"),
            ("to", "2023-03-31"),
        ],
    );
    check_unprotected(
        &cx,
        &r,
        cells(&[("15N", "2022-23", 45), ("16C", "2022-23", 3)]),
        cells(&[
            ("15N", "2022-23", 40),
            ("16C", "2022-23", 21),
            ("02X", "2022-23", 5),
        ]),
    )
    .await;
}

#[tokio::test]
async fn emergency_admissions_obey_output_rules() {
    let f = fixture();
    let cx = context(&f).await;
    // Released: A81001 2022-23 (45 spells of 30 persons over 40 registered). Suppressed:
    // A81001 2023-24 (5 spells), A81002 2022-23 (3), B82001 (5 registered).
    let (result, _) = check_protected(&cx, &bind("emergency-admissions", &FY_BY_PRACTICE)).await;
    let a = result
        .cells()
        .find(|r| r.area == "A81001" && r.period == "2022-23")
        .expect("row");
    assert!(!a.suppressed);
    assert_eq!(a.area_name.as_deref(), Some("Alpha Surgery"));
    let b = result
        .cells()
        .find(|r| r.area == "B82001" && r.period == "2022-23")
        .expect("row");
    assert_eq!((b.numerator, b.denominator, b.rate), (None, None, None));
    // Region level too: two regions, one with five registered patients.
    check_protected(
        &cx,
        &bind(
            "emergency-admissions",
            &[
                ("by", "region"),
                ("from", "2022-04-01"),
                ("to", "2024-03-31"),
            ],
        ),
    )
    .await;
}

#[tokio::test]
async fn chronic_acsc_admissions_match_hand_counts() {
    let f = fixture();
    let cx = context(&f).await;
    // Emergency spells with a 2.3.i primary diagnosis:
    // A81001 2022-23: the 12 spells of p0-p11 (J45X asthma, J441 COPD, I500 heart failure,
    //   I10X hypertension, E110 and E105 diabetes with complications, D509 iron deficiency,
    //   G409 epilepsy, F03X dementia, I209 angina, I48X atrial fibrillation, J20X with J449
    //   recorded) = 12; not counted: their readmissions (R53X), E119 (no complication), J20X
    //   without COPD, the elective and transfer J45X spells, p70 (opted out).
    // A81001 2023-24: p0-p4 J45X = 5. A81002: L039 is acute, none.
    let r = bind("chronic-acsc-admissions", &FY_BY_PRACTICE);
    check_unprotected(
        &cx,
        &r,
        cells(&[("A81001", "2022-23", 12), ("A81001", "2023-24", 5)]),
        registered_by_practice(),
    )
    .await;
}

#[tokio::test]
async fn chronic_acsc_admissions_obey_output_rules() {
    let f = fixture();
    let cx = context(&f).await;
    let (result, _) = check_protected(&cx, &bind("chronic-acsc-admissions", &FY_BY_PRACTICE)).await;
    assert_eq!(result.output_control.rounding_base, 5);
}

#[tokio::test]
async fn acute_avoidable_admissions_match_hand_counts() {
    let f = fixture();
    let cx = context(&f).await;
    // Emergency spells with a 3a primary diagnosis: A81001 2022-23 the 12 acute spells of
    // p12-p23 (L039, N390, J069, K529, N10X, K021, H669, J181, R02X, N739, E86X, K250) = 12;
    // A81002 2022-23 p40-p42 L039 = 3. Nothing else (R53X, S720 … are in neither list).
    let r = bind("acute-avoidable-admissions", &FY_BY_PRACTICE);
    check_unprotected(
        &cx,
        &r,
        cells(&[("A81001", "2022-23", 12), ("A81002", "2022-23", 3)]),
        registered_by_practice(),
    )
    .await;
}

#[tokio::test]
async fn acute_avoidable_admissions_obey_output_rules() {
    let f = fixture();
    let cx = context(&f).await;
    check_protected(&cx, &bind("acute-avoidable-admissions", &FY_BY_PRACTICE)).await;
}

#[tokio::test]
async fn emergency_readmissions_match_hand_counts() {
    let f = fixture();
    let cx = context(&f).await;
    // Index discharges (final episode dismeth 1-3, births and maternity excluded), A81001
    // 2022-23: 12 chronic + 12 readmission spells + 12 acute + p12, p13, p15's later spells
    // (3) + p14 elective (1) + p24-p28 (5; p29 died) + p30 transfer + p32 elective = 47.
    // Readmitted within 0-29 days by an emergency admission: the 12 chronic spells (day 17)
    // + p13 (day 29) + p15 (day 0) = 14; not p12 (day 30) nor p14 (elective).
    // A81001 2023-24: 5 discharges, none readmitted. A81002 2022-23: 3, none.
    let r = bind("emergency-readmissions", &FY_BY_PRACTICE);
    check_unprotected(
        &cx,
        &r,
        cells(&[("A81001", "2022-23", 14)]),
        cells(&[
            ("A81001", "2022-23", 47),
            ("A81001", "2023-24", 5),
            ("A81002", "2022-23", 3),
        ]),
    )
    .await;
    // A 31-day window also counts p12 (day 30): 15.
    let mut wide = FY_BY_PRACTICE.to_vec();
    wide.push(("window_days", "31"));
    let r = bind("emergency-readmissions", &wide);
    assert_eq!(
        unprotected(&cx, &r.numerator_sql()).await,
        cells(&[("A81001", "2022-23", 15)])
    );
}

#[tokio::test]
async fn emergency_readmissions_obey_output_rules() {
    let f = fixture();
    let cx = context(&f).await;
    check_protected(&cx, &bind("emergency-readmissions", &FY_BY_PRACTICE)).await;
}

#[tokio::test]
async fn antibiotic_items_match_hand_counts() {
    let f = fixture();
    let cx = context(&f).await;
    // BNF 0501 items except 050109/050110, by registration on the issue date:
    // A81001 2022-23: amoxicillin p0-p19 (20) + co-amoxiclav p0-p9 (10) + cefalexin p10-p14
    //   (5) + ciprofloxacin p15-p16 (2) + p69's May item (1) = 38; not isoniazid (5.1.9),
    //   dapsone (5.1.10), salbutamol, p70 (opted out).
    // A81002 2022-23: p69's August item + nitrofurantoin p40-p48 (9) = 10.
    // A81001 2023-24: amoxicillin p0-p11 = 12.
    let r = bind("antibiotic-items", &FY_BY_PRACTICE);
    check_unprotected(
        &cx,
        &r,
        cells(&[
            ("A81001", "2022-23", 38),
            ("A81001", "2023-24", 12),
            ("A81002", "2022-23", 10),
        ]),
        registered_by_practice(),
    )
    .await;
}

#[tokio::test]
async fn antibiotic_items_obey_output_rules() {
    let f = fixture();
    let cx = context(&f).await;
    check_protected(&cx, &bind("antibiotic-items", &FY_BY_PRACTICE)).await;
}

#[tokio::test]
async fn broad_spectrum_antibiotics_match_hand_counts() {
    let f = fixture();
    let cx = context(&f).await;
    // Co-amoxiclav (10) + cefalexin (5) + ciprofloxacin (2) = 17 of A81001's 38 items in
    // 2022-23 (44.7 %); no broad-spectrum items elsewhere. Denominators as in the
    // antibiotic-items report.
    let r = bind("broad-spectrum-antibiotics", &FY_BY_PRACTICE);
    check_unprotected(
        &cx,
        &r,
        cells(&[("A81001", "2022-23", 17)]),
        cells(&[
            ("A81001", "2022-23", 38),
            ("A81001", "2023-24", 12),
            ("A81002", "2022-23", 10),
        ]),
    )
    .await;
}

#[tokio::test]
async fn broad_spectrum_antibiotics_obey_output_rules() {
    let f = fixture();
    let cx = context(&f).await;
    check_protected(&cx, &bind("broad-spectrum-antibiotics", &FY_BY_PRACTICE)).await;
}

#[tokio::test]
async fn ae_attendances_match_hand_counts() {
    let f = fixture();
    let cx = context(&f).await;
    // A81001 2022-23: p0-p19 in July + p0-p4 in December = 25; 2023-24: p0-p11 = 12.
    // A81002 2022-23: p40-p44 = 5. p70's attendance is removed by the opt-out.
    let r = bind("ae-attendances", &FY_BY_PRACTICE);
    check_unprotected(
        &cx,
        &r,
        cells(&[
            ("A81001", "2022-23", 25),
            ("A81001", "2023-24", 12),
            ("A81002", "2022-23", 5),
        ]),
        registered_by_practice(),
    )
    .await;
}

#[tokio::test]
async fn ae_attendances_obey_output_rules() {
    let f = fixture();
    let cx = context(&f).await;
    check_protected(&cx, &bind("ae-attendances", &FY_BY_PRACTICE)).await;
}

#[tokio::test]
async fn outpatient_dna_match_hand_counts() {
    let f = fixture();
    let cx = context(&f).await;
    // A81001 2022-23: missed = p14-p16 (3) + p17 arrived late, not seen (7) + p0-p11's
    // October appointments (3) = 3 + 1 + 12 = 16; attended or missed = 10 (5) + 4 (6) + 16
    // = 30 (p18 and p19's cancellations excluded): 53.3 %.
    // A81002 2022-23: 1 missed of 10 + 1 = 11.
    let r = bind("outpatient-dna", &FY_BY_PRACTICE);
    check_unprotected(
        &cx,
        &r,
        cells(&[("A81001", "2022-23", 16), ("A81002", "2022-23", 1)]),
        cells(&[("A81001", "2022-23", 30), ("A81002", "2022-23", 11)]),
    )
    .await;
}

#[tokio::test]
async fn outpatient_dna_obey_output_rules() {
    let f = fixture();
    let cx = context(&f).await;
    let (result, _) = check_protected(&cx, &bind("outpatient-dna", &FY_BY_PRACTICE)).await;
    // A81002: the denominator (11 appointments of 10 persons) is released, the single DNA
    // is not, so the rate is withheld.
    let b = result
        .cells()
        .find(|r| r.area == "A81002" && r.period == "2022-23")
        .expect("row");
    assert_eq!((b.numerator, b.rate, b.suppressed), (None, None, true));
    assert!(b.denominator.is_some());
}

#[tokio::test]
async fn every_report_is_tested_here() {
    // A new definition needs its two tests above.
    let names: Vec<String> = registry().list().iter().map(|r| r.name.clone()).collect();
    assert_eq!(
        names,
        [
            "emergency-admissions",
            "chronic-acsc-admissions",
            "acute-avoidable-admissions",
            "emergency-readmissions",
            "antibiotic-items",
            "broad-spectrum-antibiotics",
            "ae-attendances",
            "outpatient-dna",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Definitions and parameters.
// ---------------------------------------------------------------------------------------------

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn error(name: &str, pairs: &[(&str, &str)]) -> String {
    match registry().validate(name, &params(pairs)) {
        Ok(b) => panic!("{name} {pairs:?} should fail, got {}", b.statement()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn built_in_reports_match_the_definition_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports");
    let loaded = ReportRegistry::load(&dir).expect("load the directory");
    let builtin = registry();
    let mut a: Vec<&ReportDef> = loaded.list().iter().collect();
    let mut b: Vec<&ReportDef> = builtin.list().iter().collect();
    a.sort_by(|x, y| x.name.cmp(&y.name));
    b.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(
        a, b,
        "every file of policies/reports is built in, and only those"
    );
    for def in builtin.list() {
        for p in ["by", "period", "from", "to"] {
            assert!(def.parameter(p).is_some(), "{}: {p}", def.name);
        }
        assert!(def.definition_text().contains(&def.indicator.reference));
        assert!(def.multiplier > 0.0);
    }
}

#[test]
fn defaults_fill_in_missing_parameters() {
    let b = bind("emergency-readmissions", &[]);
    assert_eq!(
        b.statement(),
        "emergency-readmissions by=sub_icb from=2021-04-01 period=financial_year \
         to=2024-03-31 window_days=30"
    );
    assert_eq!(b.periods().len(), 3);
    assert!(b.numerator_sql().contains("INTERVAL '30 days'"));
    assert!(b.numerator_sql().contains("p.sub_icb_code"));
    assert!(!b.numerator_sql().contains("{{"));
}

#[test]
fn unknown_reports_and_parameters_list_what_is_allowed() {
    let e = error("emergency-admission", &[]);
    assert!(
        e.contains("unknown report") && e.contains("emergency-admissions"),
        "{e}"
    );
    assert!(e.contains("outpatient-dna"), "{e}");
    let e = error("ae-attendances", &[("group", "practice")]);
    assert!(e.contains("unknown parameter \"group\""), "{e}");
    assert!(e.contains("by, period, from, to"), "{e}");
    assert!(matches!(
        registry().validate("ae-attendances", &params(&[("window_days", "3")])),
        Err(ReportError::UnknownParameter { .. })
    ));
}

#[test]
fn bad_values_are_refused_with_the_allowed_ones() {
    let e = error("ae-attendances", &[("by", "ward")]);
    assert!(
        e.contains("\"ward\" is not allowed") && e.contains("practice, sub_icb, region"),
        "{e}"
    );
    let e = error("ae-attendances", &[("period", "week")]);
    assert!(e.contains("month, financial_year"), "{e}");
    let e = error("ae-attendances", &[("from", "01/04/2022")]);
    assert!(e.contains("not a date") && e.contains("YYYY-MM-DD"), "{e}");
    let e = error("ae-attendances", &[("from", "2022-02-30")]);
    assert!(e.contains("not a date"), "{e}");
    let e = error("ae-attendances", &[("from", "1999-04-01")]);
    assert!(
        e.contains("out of range") && e.contains("2000-01-01"),
        "{e}"
    );
    let e = error("emergency-readmissions", &[("window_days", "0")]);
    assert!(
        e.contains("out of range") && e.contains("from 1 to 90"),
        "{e}"
    );
    let e = error("emergency-readmissions", &[("window_days", "91")]);
    assert!(e.contains("from 1 to 90"), "{e}");
    let e = error("emergency-readmissions", &[("window_days", "30 days")]);
    assert!(e.contains("not an integer"), "{e}");
    let e = error("emergency-readmissions", &[("window_days", "+3")]);
    assert!(e.contains("not an integer"), "{e}");
}

#[test]
fn ranges_must_be_whole_periods() {
    let e = error(
        "ae-attendances",
        &[("from", "2022-04-02"), ("to", "2023-03-31")],
    );
    assert!(e.contains("1 April") && e.contains("2022-04-01"), "{e}");
    let e = error(
        "ae-attendances",
        &[("from", "2022-04-01"), ("to", "2023-04-30")],
    );
    assert!(e.contains("31 March"), "{e}");
    let e = error(
        "ae-attendances",
        &[
            ("period", "month"),
            ("from", "2022-04-15"),
            ("to", "2022-05-31"),
        ],
    );
    assert!(e.contains("first day of a month"), "{e}");
    let e = error(
        "ae-attendances",
        &[("from", "2023-04-01"), ("to", "2022-03-31")],
    );
    assert!(e.contains("after"), "{e}");
    let e = error(
        "ae-attendances",
        &[
            ("period", "month"),
            ("from", "2000-01-01"),
            ("to", "2015-12-31"),
        ],
    );
    assert!(e.contains("more than 120 periods"), "{e}");
}

#[test]
fn caller_text_never_reaches_sql() {
    for (k, v) in [
        ("by", "practice_code FROM practices; --"),
        ("by", "practice'"),
        ("period", "month') OR 1=1 --"),
        ("from", "2022-04-01' OR '1'='1"),
        ("window_days", "30; DROP TABLE hes_apc"),
    ] {
        let e = error("emergency-readmissions", &[(k, v)]);
        assert!(e.contains(k), "{e}");
        assert!(e.chars().count() < 300, "long message: {e}");
    }
    // Valid values become literals the binder generated, never the caller's text.
    let b = bind(
        "emergency-readmissions",
        &[
            ("from", "2022-04-01"),
            ("to", "2023-03-31"),
            ("window_days", "7"),
        ],
    );
    let sql = b.numerator_sql();
    assert!(sql.contains("DATE '2022-04-01'") && sql.contains("DATE '2023-03-31'"));
    assert!(sql.contains("INTERVAL '7 days'"));
}

#[test]
fn broken_definitions_fail_with_the_file_and_reason() {
    let good = include_str!("../../reports/ae-attendances.toml");
    let cases = [
        (good.replacen("rate_unit", "rate_units", 1), "unknown field"),
        (good.replacen("{{area(p)}}", "{{area(p.x)}}", 1), "argument"),
        (
            good.replacen("{{from}}", "{{since}}", 1),
            "unknown parameter \"since\"",
        ),
        (good.replacen("{{from}}", "{{from", 1), "closing"),
        (
            good.replacen("name = \"suppressed\"", "name = \"hidden\"", 1),
            "columns must be",
        ),
        (good.replacen("\"region\"]", "\"ward\"]", 1), "\"ward\""),
        (
            good.replacen("default = 2021-04-01", "default = 2021-04-31", 1),
            "default",
        ),
        (
            good.replacen("multiplier = 1000", "multiplier = -1", 1),
            "multiplier",
        ),
    ];
    for (text, want) in cases {
        assert_ne!(text, good, "the case must change the file ({want})");
        let e = ReportDef::from_toml(&text, "custom.toml")
            .expect_err(want)
            .to_string();
        assert!(e.starts_with("custom.toml"), "{e}");
        assert!(e.contains(want), "{want}: {e}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("wrong-name.toml"), good).expect("write");
    let e = ReportRegistry::load(dir.path())
        .expect_err("file name")
        .to_string();
    assert!(e.contains("ae-attendances.toml"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Rendering.
// ---------------------------------------------------------------------------------------------

/// A run of the emergency-admissions report by month (several periods, some suppressed).
async fn rendered_result(f: &Fixture) -> (ReportResult, Arc<ReportDef>) {
    let cx = context(f).await;
    let b = bind(
        "emergency-admissions",
        &[
            ("by", "practice"),
            ("period", "financial_year"),
            ("from", "2021-04-01"),
            ("to", "2024-03-31"),
        ],
    );
    let r = run_report(&cx, &b).await.expect("runs");
    (r, b.def_arc())
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

#[tokio::test]
async fn csv_text_svg_and_png_renderings() {
    let f = fixture();
    let (result, def) = rendered_result(&f).await;
    let csv = to_csv(&result);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], OUTPUT_COLUMNS.join(","));
    assert_eq!(lines.len(), result.rows.len() + 1);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("B82001,Gamma Health Centre,2022-23,,,,true,false"))
    );
    assert!(lines.iter().any(|l| l.starts_with("ALL,Total over ")));

    let text = to_table_text(&result, &def);
    assert!(text.starts_with(&def.title));
    assert!(text.contains("GP practice") && text.contains("Emergency admissions"));
    assert!(text.contains("* = suppressed"));

    std::fs::write(artifacts().join("report.csv"), &csv).expect("write csv");
    std::fs::write(artifacts().join("report.txt"), &text).expect("write text");

    let svg = to_svg(&result, &def);
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    assert!(svg.contains("class=\"bar\"") || svg.contains("class=\"suppressed-marker\""));
    assert!(svg.contains("class=\"trend\"") || svg.contains("class=\"point\""));

    for (options, name) in [
        (PngOptions::default(), "report-chart.png"),
        (
            PngOptions {
                system_fonts: false,
                scale: 2.0,
            },
            "report-chart-nofonts.png",
        ),
    ] {
        let png = to_png_with(&result, &def, &options).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR width, big-endian, at bytes 16..20.
        let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
        assert_eq!(f64::from(width), 960.0 * f64::from(options.scale));
        std::fs::write(artifacts().join(name), &png).expect("write png");
    }
    assert_eq!(
        to_png(&result, &def).expect("png"),
        to_png(&result, &def).expect("png again"),
        "deterministic"
    );
}

/// `chromium` with the flags of a throwaway headless profile; fails the test with a clear
/// message when no Chromium can be found.
fn chromium(profile: &Path) -> Command {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is required for this test and was not found at \
                 /usr/bin/chromium: install it with `apt-get install -y chromium`"
            )
        });
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(Stdio::null());
    c
}

/// Runs `cmd` for at most two minutes; returns its stdout.
fn run_bounded(mut cmd: Command) -> String {
    let out = tempfile::NamedTempFile::new().expect("tempfile");
    let mut child = cmd
        .stdout(out.reopen().expect("reopen"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait().expect("wait") {
            Some(status) => {
                assert!(status.success(), "chromium failed: {status}");
                break;
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within two minutes");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    std::fs::read_to_string(out.path()).expect("read chromium output")
}

#[tokio::test]
async fn html_page_renders_in_headless_chromium() {
    let f = fixture();
    let (result, def) = rendered_result(&f).await;
    let html = to_html(&result, &def);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "self-contained"
    );
    let dir = artifacts();
    let page = dir.join("report.html");
    std::fs::write(&page, &html).expect("write page");
    let url = format!(
        "file://{}",
        page.canonicalize().expect("absolute").display()
    );

    let profile = tempfile::tempdir().expect("profile");
    let mut dump = chromium(profile.path());
    dump.arg("--dump-dom").arg(&url);
    let dom = run_bounded(dump);
    assert!(
        dom.contains("data-rendered=\"table,chart\""),
        "the page's check did not find the table and the chart:\n{}",
        &dom[..dom.len().min(2000)]
    );
    assert!(dom.contains("<svg") && dom.contains("class=\"report\""));

    let shot = dir.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let mut screenshot = chromium(profile.path());
    screenshot
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,900")
        .arg(&url);
    run_bounded(screenshot);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

// ---------------------------------------------------------------------------------------------
// Latency on a synthetic store (not part of the suite: run it by name with `--ignored
// --nocapture`; FIVESAFES_REPORT_PATIENTS sets the size, default 20,000).
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn latency_on_a_synthetic_store() {
    use fivesafes_engine::synth::{SynthOptions, generate};
    let patients: u64 = std::env::var("FIVESAFES_REPORT_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("extracts");
    generate(&SynthOptions {
        patients,
        seed: 11,
        out: raw.clone(),
        progress: false,
    })
    .expect("synthetic extracts");
    let keys = Keys::from_bytes([7; 32], [8; 32]);
    ingest(&IngestOptions::new(&raw, dir.path().join("store")), &keys).expect("ingest");
    let f = Fixture {
        version: Store::new(dir.path().join("store"))
            .open_current()
            .expect("open"),
        _dir: dir,
    };
    let cx = context(&f).await;
    for def in registry().list() {
        for (label, params) in [
            ("3 years by sub-ICB", vec![]),
            (
                "36 months by practice",
                vec![("by", "practice"), ("period", "month")],
            ),
        ] {
            let b = bind(&def.name, &params);
            let started = Instant::now();
            let r = run_report(&cx, &b).await.expect("runs");
            eprintln!(
                "{patients} patients, {:<28} {label:<22} {:>5} rows, {:>4} suppressed: {:?}",
                def.name,
                r.rows.len(),
                r.rows_suppressed,
                started.elapsed()
            );
        }
    }
}
