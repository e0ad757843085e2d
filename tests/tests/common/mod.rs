//! The store every policy test of this crate runs against, built once per test binary, and
//! the helpers to query it through the one protected path (`ProjectContext::prepare`,
//! `Prepared::physical_plan`, `query::execute`).
//!
//! The store holds ~2,000 seeded synthetic patients (realistic shapes for the correctness and
//! rephrasing tests) plus *planted* persons: hand-built extract rows appended to the synthetic
//! extracts, in practices of their own (`X…`/`Y…` codes the generator never uses) and with
//! SNOMED codes of their own (`999…`), so that every planted cohort is exactly known. Tests
//! compute the exact released value of a planted cell from the same pseudonymisation keys the
//! store was ingested with (cell key = sum of the persons' record keys mod 256) and
//! `fivesafes_policies::output`.
//!
//! Shared by the `attacks` and `slt` test binaries (`#[path]`-included), so not every helper
//! is used by both: hence `dead_code` is allowed for this module.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::common::collect;
use fivesafes_engine::ingest::{IngestOptions, ingest};
use fivesafes_engine::keys::Keys;
use fivesafes_engine::session::{SessionOptions, runtime};
use fivesafes_engine::store::{Store, StoreVersion};
use fivesafes_engine::synth::{SynthOptions, generate, nhs_check_digit};
use fivesafes_policies::decision::Rule;
use fivesafes_policies::output::{self, Released};
use fivesafes_policies::query::{self, ProjectContext, QueryError};
use fivesafes_policies::{OutputControl, Register};

/// Synthetic patients generated besides the planted ones.
pub const SYNTH_PATIENTS: u64 = 2_000;
/// Seed of the synthetic extracts.
pub const SYNTH_SEED: u64 = 20_250_101;
/// Pseudonymisation and record-key secrets of the test environment.
pub const PSEUDONYM_KEY: [u8; 32] = [7; 32];
/// See [`PSEUDONYM_KEY`].
pub const RECORD_KEY: [u8; 32] = [9; 32];

/// The default project: every approved table, national opt-out applies, default output
/// control.
pub const RESEARCH: &str = "research";
/// The same tables, exempt from the national data opt-out.
pub const EXEMPT: &str = "exempt-research";
/// A narrow project: `patients` and `hes_ae` only.
pub const AE_AUDIT: &str = "ae-audit";
/// Every table, restricted to the date window 2018-01-01 … 2020-12-31.
pub const WINDOWED: &str = "windowed";
/// Patients, clinical events, HES APC and practices with stricter output control (10
/// persons, rounding to 10, extra 0..=3, 2 significant figures).
pub const STRICT: &str = "strict";

const REGISTER: &str = r#"
[[project]]
id = "research"
purpose = "Attack regression suite: every table, national opt-out applies"
expires = 2099-12-31
queries_per_day = 1000000

[project.tables]
patients = "*"
practice_registrations = "*"
clinical_events = "*"
medications = "*"
hes_apc = "*"
hes_op = "*"
hes_ae = "*"
practices = "*"
lsoas = "*"

[[project.members]]
principal = "analyst"
role = "analyst"

[[project]]
id = "exempt-research"
purpose = "Attack regression suite: every table, exempt from the national opt-out"
national_opt_out = "exempt"
opt_out_exemption_basis = "s251 support, test reference"
expires = 2099-12-31
queries_per_day = 1000000

[project.tables]
patients = "*"
practice_registrations = "*"
clinical_events = "*"
medications = "*"
hes_apc = "*"
hes_op = "*"
hes_ae = "*"
practices = "*"
lsoas = "*"

[[project.members]]
principal = "analyst"
role = "analyst"

[[project]]
id = "ae-audit"
purpose = "Attack regression suite: A&E attendances only"
expires = 2099-12-31
queries_per_day = 1000000

[project.tables]
patients = "*"
hes_ae = "*"

[[project.members]]
principal = "analyst"
role = "analyst"

[[project]]
id = "windowed"
purpose = "Attack regression suite: every table, events of 2018-2020 only"
expires = 2099-12-31
date_window = { from = 2018-01-01, to = 2020-12-31 }
queries_per_day = 1000000

[project.tables]
patients = "*"
practice_registrations = "*"
clinical_events = "*"
medications = "*"
hes_apc = "*"
hes_op = "*"
hes_ae = "*"
practices = "*"

[[project.members]]
principal = "analyst"
role = "analyst"

[[project]]
id = "strict"
purpose = "Attack regression suite: stricter output control"
expires = 2099-12-31
queries_per_day = 1000000

[project.tables]
patients = "*"
clinical_events = "*"
hes_apc = "*"
practices = "*"

[project.output]
min_persons = 10
rounding_base = 10
noise_extra_threshold = 3
significant_figures = 2

[[project.members]]
principal = "analyst"
role = "analyst"
"#;

// ---------------------------------------------------------------------------------------------
// Planted persons.
// ---------------------------------------------------------------------------------------------

/// National data opt-out status of a planted person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ndoo {
    /// Recorded as not opted out.
    In,
    /// Recorded as opted out.
    Out,
    /// Absent from the opt-out list: unknown status.
    Unknown,
    /// Opted out in 2020, opt-out withdrawn in 2023: latest status is "not opted out".
    Withdrawn,
    /// Not opted out in 2020, opted out in 2023: latest status is "opted out".
    Later,
}

impl Ndoo {
    /// Whether an applying project may see the person (fail closed on unknown).
    pub fn visible_when_applied(self) -> bool {
        matches!(self, Ndoo::In | Ndoo::Withdrawn)
    }
}

/// One planted person and what was written about them.
#[derive(Debug, Clone)]
pub struct Planted {
    /// Raw NHS number (only in the extracts).
    pub nhs: u64,
    /// The stored pseudonym.
    pub patient_id: i64,
    /// The secret record key behind cell keys.
    pub record_key: u8,
    /// Practice code (one planted cohort per practice).
    pub practice: String,
    /// Date of birth, `YYYY-MM-DD`.
    pub dob: String,
    /// Sex as recorded.
    pub sex: char,
    /// National opt-out status.
    pub ndoo: Ndoo,
    /// Clinical events: (date, SNOMED code, value).
    pub events: Vec<(String, String, Option<f64>)>,
    /// HES APC provider codes of this person's episodes (one episode each).
    pub hes_apc: Vec<String>,
    /// The age at the start of each of those episodes (`startage`).
    pub hes_age: u8,
    /// Their primary diagnosis (`diag_4_01`).
    pub hes_diag: &'static str,
    /// The practice their episodes are recorded at (`gpprac`), where it is not `practice`.
    pub hes_gpprac: Option<&'static str>,
    /// Whether the person's postcode is one of the lookup's (so that they have an LSOA);
    /// otherwise they have none.
    pub postcode: bool,
    /// With `postcode`, the IMD decile of the lookup postcode they get (the first of the
    /// lookup when `None`, or when the lookup has no postcode of that decile).
    pub decile: Option<u8>,
}

/// Threshold-probing cohorts: (practice, persons). Every size 1..=13 appears; 7, 8 and 9
/// several times so that both outcomes of the noisy threshold show.
pub const THRESHOLD_GROUPS: &[(&str, usize)] = &[
    ("Y10001", 1),
    ("Y10002", 2),
    ("Y10003", 3),
    ("Y10004", 4),
    ("Y10005", 5),
    ("Y10006", 6),
    ("Y10007", 7),
    ("Y10017", 7),
    ("Y10027", 7),
    ("Y10037", 7),
    ("Y10008", 8),
    ("Y10018", 8),
    ("Y10028", 8),
    ("Y10038", 8),
    ("Y10048", 8),
    ("Y10058", 8),
    ("Y10009", 9),
    ("Y10019", 9),
    ("Y10029", 9),
    ("Y10039", 9),
    ("Y10049", 9),
    ("Y10059", 9),
    ("Y10010", 10),
    ("Y10011", 11),
    ("Y10012", 12),
    ("Y10013", 13),
];

/// Differencing cohort: 30 persons born in consecutive months from January 1940, so each is
/// singled out by its birth month; sexes 26 F, 3 M (indexes 3, 13, 23) and one I (index 7).
/// Each has one event of [`DIFF_CODE`] with value `40 + index`, on 2021-06-(1 + index)
/// (see [`diff_date`]): since readings are snapped (session 50), an event's date is the one
/// value of rows that singles a person out and is measured as written.
pub const DIFF_PRACTICE: &str = "X20001";
/// See [`DIFF_PRACTICE`].
pub const DIFF_CODE: &str = "999000001";
/// The date of the [`DIFF_CODE`] event of person `i` of the differencing cohort, as a SQL
/// literal.
pub fn diff_date(i: usize) -> String {
    format!("DATE '2021-06-{:02}'", 1 + i)
}
/// Persons in the differencing cohort.
pub const DIFF_SIZE: usize = 30;

/// Reconstruction cohort: 24 persons, one event each of [`RECON_CODE`] on 2020-01-(i+1) with
/// an integer value in 100..=199.
pub const RECON_PRACTICE: &str = "X50001";
/// See [`RECON_PRACTICE`].
pub const RECON_CODE: &str = "999000002";
/// Persons in the reconstruction cohort.
pub const RECON_SIZE: usize = 24;

/// Heavy-contributor cohort: 24 persons with one event of [`HEAVY_CODE`] of value
/// `50 + index`, one person with a single event of value [`HEAVY_VALUE`], and one with
/// [`HEAVY_ROWS`] events of value 60.
pub const HEAVY_PRACTICE: &str = "X30001";
/// See [`HEAVY_PRACTICE`].
pub const HEAVY_CODE: &str = "999000003";
/// The heavy contributor's single value.
pub const HEAVY_VALUE: f64 = 1_000_000.0;
/// Rows of the many-rows contributor.
pub const HEAVY_ROWS: usize = 400;

/// Opt-out cohorts: X40001 mixes every status (12 in, 12 out, 12 unknown, 1 withdrawn, 1
/// later opted out); X40002 only opted-out persons (12); X40003 only unknown status (12).
/// Every person has one HES APC episode at provider `ZZ1`, `ZZ2` or `ZZ3` respectively.
pub const OPT_MIXED: &str = "X40001";
/// See [`OPT_MIXED`].
pub const OPT_ALL_OUT: &str = "X40002";
/// See [`OPT_MIXED`].
pub const OPT_ALL_UNKNOWN: &str = "X40003";

/// Rephrasing cohort: 23 F born in 1950, [`REPHRASE_MEN`] M born in 1950, 13 F born in
/// December 1949, January 1951 or 1960 (the edges of a year range). Each condition of the
/// question "women born in 1950 at this practice" leaves out at least ten persons, so none
/// is low-effect (DESIGN.md rule 7) and the answer is the 23 women's.
pub const REPHRASE_PRACTICE: &str = "X60001";

/// Men born in 1950 at [`REPHRASE_PRACTICE`].
pub const REPHRASE_MEN: usize = 14;

/// Twelve women born in 1950 at another practice.
pub const REPHRASE_NEIGHBOUR: &str = "X60002";

/// Amplification: one person with [`AMP_ROWS`] events of [`AMP_CODE`] and 3 HES APC
/// episodes at `ZZ7`, the only person with either.
pub const AMP_PRACTICE: &str = "X70001";
/// See [`AMP_PRACTICE`].
pub const AMP_CODE: &str = "999000004";
/// See [`AMP_PRACTICE`].
pub const AMP_ROWS: usize = 100;

/// Area cohort: [`AREA_SIZE`] women born in 1985, each with a postcode of the lookup (an
/// LSOA) and one event coded [`AREA_CODE`], but for the one at [`AREA_TARGET`], who has
/// neither.
pub const AREA_PRACTICE: &str = "X80001";
/// See [`AREA_PRACTICE`].
pub const AREA_CODE: &str = "999000005";
/// See [`AREA_PRACTICE`].
pub const AREA_SIZE: usize = 40;
/// See [`AREA_PRACTICE`].
pub const AREA_TARGET: usize = 8;

/// Decile cohorts, planted only in [`fixture_with_deciles`]: in each practice,
/// [`DECILE_SIZE`] women, each with a postcode of the lookup of decile `1 + index % 10`
/// (where the lookup has one), but for one person who is no edge anchor and has no
/// postcode, so no decile: the practice's one NULL `imd_decile`. Every person with a
/// postcode has one admission (an episode at age `30 + index % 40` with provider
/// [`DECILE_PROVIDER`]), the one without none: the practice's one NULL `startage` under
/// `patients LEFT JOIN hes_apc`.
pub const DECILE_PRACTICES: &[&str] = &["X90001", "X90002", "X90003", "X90004", "X90005", "X90006"];
/// A decile cohort like those of [`DECILE_PRACTICES`] whose one person without a postcode
/// is an edge anchor.
pub const DECILE_ANCHORED: &str = "X90007";
/// See [`DECILE_PRACTICES`].
pub const DECILE_SIZE: usize = 40;
/// See [`DECILE_PRACTICES`].
pub const DECILE_PROVIDER: &str = "ZZ9";
/// The primary diagnosis of every other decile person's admission (the others' is `I10X`),
/// but for one person who is no anchor in each practice, whose is
/// [`DECILE_RARE_DIAGNOSIS`]: a code under `Z` that is not under `Z3`.
pub const DECILE_DIAGNOSIS: &str = "Z30X";
/// See [`DECILE_DIAGNOSIS`].
pub const DECILE_RARE_DIAGNOSIS: &str = "Z99X";
/// The practice of one admission in each of [`DECILE_PRACTICES`]: that of the third person
/// who is no anchor, recorded at this practice rather than their own. It is the one
/// practice of sub-ICB [`ELSEWHERE_SUB_ICB`], in the region of the planted practices
/// (`Test Region`, sub-ICB `99Z`), and the registered practice of one person only: the
/// third who is no anchor of [`DECILE_ANCHORED`]'s cohort (whose admission is here too).
pub const ELSEWHERE_PRACTICE: &str = "Y98001";
/// See [`ELSEWHERE_PRACTICE`].
pub const ELSEWHERE_SUB_ICB: &str = "98Z";

/// The planted persons, in NHS-number order (with the decile cohort where `deciles`).
fn plan_persons(deciles: bool) -> Vec<Planted> {
    let mut out: Vec<Planted> = Vec::new();
    let mut next_prefix = 900_000_000u64;
    let mut person = |practice: &str, dob: String, sex: char, ndoo: Ndoo| -> Planted {
        let nhs = loop {
            let prefix = next_prefix;
            next_prefix += 1;
            let mut digits = [0u8; 9];
            let mut p = prefix;
            for d in digits.iter_mut().rev() {
                *d = (p % 10) as u8;
                p /= 10;
            }
            if let Some(check) = nhs_check_digit(&digits) {
                break prefix * 10 + u64::from(check);
            }
        };
        Planted {
            nhs,
            patient_id: 0,
            record_key: 0,
            practice: practice.to_string(),
            dob,
            sex,
            ndoo,
            events: Vec::new(),
            hes_apc: Vec::new(),
            hes_age: 60,
            hes_diag: "I10X",
            hes_gpprac: None,
            postcode: false,
            decile: None,
        }
    };
    let dob = |year: i32, month: u32, day: u32| format!("{year:04}-{month:02}-{day:02}");

    for (practice, n) in THRESHOLD_GROUPS {
        for i in 0..*n {
            let i = u32::try_from(i).unwrap_or(0);
            out.push(person(
                practice,
                dob(1970, 1 + i % 12, 1 + i),
                'F',
                Ndoo::In,
            ));
        }
    }
    for i in 0..DIFF_SIZE {
        let month = u32::try_from(i).unwrap_or(0);
        let sex = match i {
            3 | 13 | 23 => 'M',
            7 => 'I',
            _ => 'F',
        };
        let mut p = person(
            DIFF_PRACTICE,
            dob(1940 + (month / 12) as i32, 1 + month % 12, 15),
            sex,
            Ndoo::In,
        );
        p.events.push((
            format!("2021-06-{:02}", 1 + month),
            DIFF_CODE.into(),
            Some(40.0 + f64::from(month)),
        ));
        out.push(p);
    }
    for i in 0..24u32 {
        let mut p = person(HEAVY_PRACTICE, dob(1960, 1 + i % 12, 2), 'M', Ndoo::In);
        p.events.push((
            "2022-03-01".into(),
            HEAVY_CODE.into(),
            Some(50.0 + f64::from(i)),
        ));
        out.push(p);
    }
    let mut heavy = person(HEAVY_PRACTICE, dob(1961, 6, 2), 'M', Ndoo::In);
    heavy
        .events
        .push(("2022-03-01".into(), HEAVY_CODE.into(), Some(HEAVY_VALUE)));
    out.push(heavy);
    let mut many = person(HEAVY_PRACTICE, dob(1961, 7, 2), 'M', Ndoo::In);
    for d in 0..HEAVY_ROWS {
        let date = format!("2022-{:02}-{:02}", 1 + d % 12, 1 + d % 28);
        many.events.push((date, HEAVY_CODE.into(), Some(60.0)));
    }
    out.push(many);
    let statuses = [
        (OPT_MIXED, Ndoo::In, 12, "ZZ1"),
        (OPT_MIXED, Ndoo::Out, 12, "ZZ1"),
        (OPT_MIXED, Ndoo::Unknown, 12, "ZZ1"),
        (OPT_MIXED, Ndoo::Withdrawn, 1, "ZZ1"),
        (OPT_MIXED, Ndoo::Later, 1, "ZZ1"),
        (OPT_ALL_OUT, Ndoo::Out, 12, "ZZ2"),
        (OPT_ALL_UNKNOWN, Ndoo::Unknown, 12, "ZZ3"),
    ];
    for (practice, status, n, provider) in statuses {
        for i in 0..n {
            let mut p = person(practice, dob(1955, 1 + i % 12, 3), 'F', status);
            p.hes_apc.push(provider.to_string());
            out.push(p);
        }
    }
    for i in 0..RECON_SIZE {
        let day = u32::try_from(i).unwrap_or(0) + 1;
        let mut p = person(RECON_PRACTICE, dob(1975, 1 + day % 12, 4), 'F', Ndoo::In);
        let value = 100 + (i * 37 + 11) % 100;
        p.events.push((
            format!("2020-01-{day:02}"),
            RECON_CODE.into(),
            Some(value as f64),
        ));
        out.push(p);
    }
    for i in 0..23u32 {
        out.push(person(
            REPHRASE_PRACTICE,
            dob(1950, 1 + i % 12, 10),
            'F',
            Ndoo::In,
        ));
    }
    for i in 0..REPHRASE_MEN as u32 {
        out.push(person(
            REPHRASE_PRACTICE,
            dob(1950, 1 + (2 + i) % 12, 10),
            'M',
            Ndoo::In,
        ));
    }
    // Women born in 1950 elsewhere, so that the practice condition has a large effect too.
    for i in 0..12u32 {
        out.push(person(
            REPHRASE_NEIGHBOUR,
            dob(1950, 1 + i, 10),
            'F',
            Ndoo::In,
        ));
    }
    for (y, m) in [
        (1949, 12),
        (1949, 12),
        (1949, 12),
        (1949, 12),
        (1951, 1),
        (1951, 1),
        (1951, 1),
        (1951, 1),
        (1960, 5),
        (1960, 6),
        (1960, 7),
        (1960, 8),
        (1960, 9),
    ] {
        out.push(person(REPHRASE_PRACTICE, dob(y, m, 10), 'F', Ndoo::In));
    }
    let mut amp = person(AMP_PRACTICE, dob(1980, 1, 5), 'F', Ndoo::In);
    for d in 0..AMP_ROWS {
        let date = format!("2023-{:02}-{:02}", 1 + d % 12, 1 + d % 28);
        amp.events.push((date, AMP_CODE.into(), Some(1.0)));
    }
    for _ in 0..3 {
        amp.hes_apc.push("ZZ7".into());
    }
    out.push(amp);
    for i in 0..11u32 {
        out.push(person(
            AMP_PRACTICE,
            dob(1980, 2 + i % 11, 5),
            'F',
            Ndoo::In,
        ));
    }
    for i in 0..AREA_SIZE {
        let month = u32::try_from(i % 12).unwrap_or(0) + 1;
        let mut p = person(AREA_PRACTICE, dob(1985, month, 6), 'F', Ndoo::In);
        p.postcode = i != AREA_TARGET;
        if i != AREA_TARGET {
            p.events
                .push(("2023-05-01".into(), AREA_CODE.into(), Some(1.0)));
        }
        out.push(p);
    }
    if deciles {
        let practices = DECILE_PRACTICES.iter().chain([&DECILE_ANCHORED]);
        for (k, practice) in practices.enumerate() {
            for i in 0..DECILE_SIZE {
                let month = u32::try_from(i % 12).unwrap_or(0) + 1;
                let year = 1960 + i32::try_from(k).unwrap_or(0);
                let mut p = person(practice, dob(year, month, 9), 'F', Ndoo::In);
                p.postcode = true;
                p.decile = u8::try_from(1 + (i + k) % 10).ok();
                p.hes_apc.push(DECILE_PROVIDER.to_string());
                p.hes_age = 30 + u8::try_from(i % 40).unwrap_or(0);
                if i % 2 == 1 {
                    p.hes_diag = DECILE_DIAGNOSIS;
                }
                out.push(p);
            }
        }
    }
    out
}

/// Appends the planted persons' rows to the synthetic extracts in `dir`.
fn append_planted(dir: &Path, persons: &[Planted]) {
    let mut files: BTreeMap<&str, String> = BTreeMap::new();
    let mut practices: Vec<&str> = persons.iter().map(|p| p.practice.as_str()).collect();
    practices.sort_unstable();
    practices.dedup();
    for code in &practices {
        let sub_icb = if *code == ELSEWHERE_PRACTICE {
            ELSEWHERE_SUB_ICB
        } else {
            "99Z"
        };
        let line = format!("{code},Planted Practice {code},{sub_icb},Test Region\n");
        files.entry("practices.csv").or_default().push_str(&line);
    }
    if !practices.contains(&ELSEWHERE_PRACTICE)
        && persons
            .iter()
            .any(|p| p.hes_gpprac == Some(ELSEWHERE_PRACTICE))
    {
        let line = format!(
            "{ELSEWHERE_PRACTICE},Planted Practice {ELSEWHERE_PRACTICE},{ELSEWHERE_SUB_ICB},\
             Test Region\n"
        );
        files.entry("practices.csv").or_default().push_str(&line);
    }
    // The first postcode of the lookup, for the persons who have one.
    let lookup = std::fs::read_to_string(dir.join("postcode_lsoa.csv")).expect("postcodes");
    let known = lookup
        .lines()
        .nth(1)
        .and_then(|l| l.split(',').next())
        .expect("a postcode in the lookup")
        .to_string();
    // The first postcode of each decile (`postcode,lsoa,imd_decile`).
    let mut of_decile: BTreeMap<u8, String> = BTreeMap::new();
    for line in lookup.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if let (Some(postcode), Some(Ok(decile))) =
            (fields.first(), fields.get(2).map(|d| d.parse()))
        {
            of_decile
                .entry(decile)
                .or_insert_with(|| postcode.to_string());
        }
    }
    let mut epikey = 880_000_000_000i64;
    for p in persons {
        let nhs = p.nhs;
        let postcode = match (p.postcode, p.decile.and_then(|d| of_decile.get(&d))) {
            (false, _) => "",
            (true, Some(postcode)) => postcode.as_str(),
            (true, None) => known.as_str(),
        };
        let mut line = String::new();
        let _ = writeln!(
            line,
            "{nhs},{},{},A,{postcode},{},2015-01-01,,",
            p.dob, p.sex, p.practice
        );
        files.entry("gp_patients.csv").or_default().push_str(&line);
        let ndoo = files.entry("ndoo.csv").or_default();
        match p.ndoo {
            Ndoo::In => {
                let _ = writeln!(ndoo, "{nhs},false,2024-03-01");
            }
            Ndoo::Out => {
                let _ = writeln!(ndoo, "{nhs},true,2024-03-01");
            }
            Ndoo::Unknown => {}
            Ndoo::Withdrawn => {
                let _ = writeln!(ndoo, "{nhs},true,2020-01-01");
                let _ = writeln!(ndoo, "{nhs},false,2023-01-01");
            }
            Ndoo::Later => {
                let _ = writeln!(ndoo, "{nhs},false,2020-01-01");
                let _ = writeln!(ndoo, "{nhs},true,2023-01-01");
            }
        }
        let events = files.entry("gp_events.csv").or_default();
        for (date, code, value) in &p.events {
            let value = value.map(|v| v.to_string()).unwrap_or_default();
            let _ = writeln!(events, "{nhs},{date},{code},{value}");
        }
        let apc = files.entry("hes_apc.csv").or_default();
        for provider in &p.hes_apc {
            epikey += 1;
            let _ = writeln!(
                apc,
                "{nhs},{epikey},{epikey},1,2022-05-01,2022-05-01,2022-05-03,2022-05-03,21,19,1,\
                 {provider},{},{},{},,{},{},,",
                p.hes_gpprac.unwrap_or(&p.practice),
                p.hes_age,
                p.sex,
                p.hes_diag,
                p.hes_diag
            );
        }
    }
    for (name, text) in files {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture.
// ---------------------------------------------------------------------------------------------

/// The store, the register and what was planted in it.
pub struct Fixture {
    /// Keeps the store on disk for the life of the test binary.
    _dir: tempfile::TempDir,
    /// The published store version.
    pub version: StoreVersion,
    /// The test projects.
    pub register: Register,
    /// The keys the store was ingested with (to compute expected cell keys).
    pub keys: Keys,
    /// The planted persons, with their pseudonyms and record keys.
    pub planted: Vec<Planted>,
    /// One runtime (memory pool) for every project context, as the server shares one.
    runtime: Arc<RuntimeEnv>,
}

/// The fixture of this test binary, built on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| build(false))
}

/// The fixture with the decile cohorts ([`DECILE_PRACTICES`], [`DECILE_ANCHORED`]) planted
/// too: a second store, so that the answers over the whole of [`fixture`] stay as the
/// `.slt` files expect them.
pub fn fixture_with_deciles() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| build(true))
}

fn build(deciles: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let extracts = dir.path().join("extracts");
    generate(&SynthOptions {
        patients: SYNTH_PATIENTS,
        seed: SYNTH_SEED,
        out: extracts.clone(),
        progress: false,
    })
    .expect("synthetic extracts");
    let keys = Keys::from_bytes(PSEUDONYM_KEY, RECORD_KEY);
    let pseudo = keys.pseudonymiser();
    let mut planted = plan_persons(deciles);
    for p in &mut planted {
        p.patient_id = pseudo.patient_id(p.nhs);
        p.record_key = pseudo.record_key(p.patient_id);
    }
    // Each decile cohort's one person without a postcode: the first who is no edge anchor
    // (an anchor in [`DECILE_ANCHORED`]).
    let anchors = output::edge_anchor_keys();
    let practices = DECILE_PRACTICES.iter().map(|p| (p, false));
    for (practice, anchor) in practices.chain([(&DECILE_ANCHORED, true)]) {
        if let Some(p) = planted
            .iter_mut()
            .find(|p| p.practice == *practice && anchors.contains(&p.record_key) == anchor)
        {
            p.postcode = false;
            p.hes_apc.clear();
        }
        // (The second person who is no anchor, with an admission.)
        if let Some(p) = planted
            .iter_mut()
            .filter(|p| p.practice == *practice && !anchors.contains(&p.record_key))
            .nth(1)
        {
            p.hes_diag = DECILE_RARE_DIAGNOSIS;
        }
        // (The third, with their admission at [`ELSEWHERE_PRACTICE`].)
        if !anchor
            && let Some(p) = planted
                .iter_mut()
                .filter(|p| p.practice == *practice && !anchors.contains(&p.record_key))
                .nth(2)
        {
            p.hes_gpprac = Some(ELSEWHERE_PRACTICE);
        }
        // (In [`DECILE_ANCHORED`], the third is registered at [`ELSEWHERE_PRACTICE`].)
        if anchor
            && let Some(p) = planted
                .iter_mut()
                .filter(|p| p.practice == *practice && !anchors.contains(&p.record_key))
                .nth(2)
        {
            p.practice = ELSEWHERE_PRACTICE.to_string();
        }
    }
    append_planted(&extracts, &planted);
    let store = dir.path().join("store");
    ingest(&IngestOptions::new(&extracts, &store), &keys).expect("ingest");
    let version = Store::new(&store).open_current().expect("open store");
    let register = Register::from_toml(REGISTER, "test-register.toml").expect("register");
    let runtime = runtime(&SessionOptions::default()).expect("runtime");
    Fixture {
        _dir: dir,
        version,
        register,
        keys,
        planted,
        runtime,
    }
}

impl Fixture {
    /// A fresh context of project `id` over the store.
    pub async fn project(&self, id: &str) -> ProjectContext {
        let project = self
            .register
            .project(id)
            .unwrap_or_else(|| panic!("no project {id}"));
        ProjectContext::open(
            &self.version,
            project,
            Arc::clone(&self.runtime),
            &SessionOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("open {id}: {e}"))
    }

    /// The planted persons of `practice`.
    pub fn cohort(&self, practice: &str) -> Vec<&Planted> {
        self.planted
            .iter()
            .filter(|p| p.practice == practice)
            .collect()
    }

    /// The record key of any stored person.
    pub fn record_key(&self, patient_id: i64) -> u8 {
        self.keys.pseudonymiser().record_key(patient_id)
    }

    /// The cell key of a set of persons.
    pub fn cell_key<'a>(&self, persons: impl IntoIterator<Item = &'a Planted>) -> u8 {
        cell_key_of(persons.into_iter().map(|p| p.record_key))
    }
}

/// Days since 1970-01-01 of a date `YYYY-MM-DD` (proleptic Gregorian).
pub fn days(date: &str) -> i64 {
    let parts: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().expect("a date"))
        .collect();
    let (y, m, d) = (parts[0], parts[1], parts[2]);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Each of `values` (one per person) read as the policy layer reads a condition on a
/// per-person value (DESIGN.md rule 7, range edges): snapped to the nearest value of an edge
/// anchor among them (`anchor[i]`: whether person `i` is one), the lower when both are as
/// near. `None` when there is no anchor (the condition is then not applied).
pub fn snapped_to_anchors(values: &[i64], anchor: &[bool]) -> Option<Vec<i64>> {
    let anchors: Vec<i64> = values
        .iter()
        .zip(anchor)
        .filter(|(_, a)| **a)
        .map(|(v, _)| *v)
        .collect();
    if anchors.is_empty() {
        return None;
    }
    Some(
        values
            .iter()
            .map(|&v| {
                let below = anchors.iter().copied().filter(|&a| a <= v).max();
                let above = anchors.iter().copied().filter(|&a| a >= v).min();
                match (below, above) {
                    (Some(b), Some(a)) if v - b <= a - v => b,
                    (_, Some(a)) => a,
                    (Some(b), None) => b,
                    (None, None) => unreachable!("there is an anchor"),
                }
            })
            .collect(),
    )
}

/// What output control releases for a count of the persons of `all` (one row each) that a
/// condition keeps (`kept[i]`): the condition is ignored when the persons it leaves out are
/// fewer than their drawn low-effect threshold and those it keeps would be released on
/// their own (DESIGN.md rule 7).
pub fn count_under_condition(all: &[&Planted], kept: &[bool], p: &OutputControl) -> Option<String> {
    let keys: Vec<u8> = all.iter().map(|q| q.record_key).collect();
    count_kept(&keys, kept, p)
}

/// The cell key of the persons with record keys `keys`.
pub fn cell_key_of(keys: impl IntoIterator<Item = u8>) -> u8 {
    (keys.into_iter().map(u64::from).sum::<u64>() % 256) as u8
}

/// [`count_under_condition`] for any persons, given by their record keys.
pub fn count_kept(keys: &[u8], kept: &[bool], p: &OutputControl) -> Option<String> {
    let cell_key = |who: &[u8]| cell_key_of(who.iter().copied());
    let count = |who: &[u8]| {
        let n = who.len() as u64;
        expected_count(n, n, cell_key(who), p)
    };
    let pick = |want: bool| -> Vec<u8> {
        keys.iter()
            .zip(kept)
            .filter(|(_, k)| **k == want)
            .map(|(q, _)| *q)
            .collect()
    };
    let (keep, out) = (pick(true), pick(false));
    let released = count(&keep);
    if !out.is_empty()
        && output::is_low_effect(out.len() as u64, cell_key(&out), p)
        && released.is_some()
    {
        count(keys)
    } else {
        released
    }
}

/// What the released count of `count` things of `persons` distinct persons with cell key
/// `key` is, rendered like [`rows`] renders it (`None`: the cell is suppressed).
pub fn expected_count(count: u64, persons: u64, key: u8, p: &OutputControl) -> Option<String> {
    match output::protect_count(count, persons, key, p) {
        Released::Value(v) => Some(v.to_string()),
        Released::Suppressed => None,
    }
}

/// What the released count of rows is for a cell whose persons have `per_person` rows each
/// (in any order), with cell key `key`, rendered like [`rows`] renders it.
pub fn expected_rows(per_person: &[u64], key: u8, p: &OutputControl) -> Option<String> {
    let count = per_person.iter().sum();
    match output::protect_rows(count, per_person.len() as u64, per_person, key, p) {
        Released::Value(v) => Some(v.to_string()),
        Released::Suppressed => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Running queries.
// ---------------------------------------------------------------------------------------------

/// Runs `sql` through the protected path: prepare, physical plan, execute, collect. Returns
/// the batches and the number of cells suppressed.
pub async fn run(cx: &ProjectContext, sql: &str) -> Result<(Vec<RecordBatch>, u64), QueryError> {
    let prepared = cx.prepare(sql).await?;
    let physical = prepared.physical_plan(cx).await?;
    let stream = query::execute(&physical, cx)?;
    let batches = collect(stream).await?;
    Ok((batches, prepared.rows_suppressed()))
}

/// Renders batches as rows of text: `NULL` for nulls, Arrow's display otherwise.
pub fn render(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<ArrayFormatter<'_>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for r in 0..b.num_rows() {
            out.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

/// The released rows of `sql` (panics when it does not run).
pub async fn rows(cx: &ProjectContext, sql: &str) -> Vec<Vec<String>> {
    match run(cx, sql).await {
        Ok((b, _)) => render(&b),
        Err(e) => panic!("{sql}\n  should run, got: {e}"),
    }
}

/// The released rows of `sql`, sorted.
pub async fn sorted_rows(cx: &ProjectContext, sql: &str) -> Vec<Vec<String>> {
    let mut r = rows(cx, sql).await;
    r.sort();
    r
}

/// The single released value of a one-column query, `None` when no row was released.
pub async fn single(cx: &ProjectContext, sql: &str) -> Option<String> {
    let r = rows(cx, sql).await;
    assert!(r.len() <= 1, "{sql}: more than one row: {r:?}");
    r.into_iter().next().map(|row| {
        assert_eq!(row.len(), 1, "{sql}: one column expected: {row:?}");
        row.into_iter().next().unwrap_or_default()
    })
}

/// The rule `sql` is refused under (panics when it is not refused).
pub async fn refused(cx: &ProjectContext, sql: &str) -> Rule {
    match cx.prepare(sql).await {
        Err(QueryError::Refused(r)) => r.rule,
        Err(other) => panic!("{sql}\n  should be refused, got error: {other}"),
        Ok(_) => panic!("{sql}\n  should be refused, but was accepted"),
    }
}

/// The message of `sql` being invalid in the project (panics otherwise).
pub async fn invalid(cx: &ProjectContext, sql: &str) -> String {
    match cx.prepare(sql).await {
        Err(QueryError::Invalid(m)) => m,
        Err(other) => panic!("{sql}\n  should be invalid, got: {other}"),
        Ok(_) => panic!("{sql}\n  should be invalid, but was accepted"),
    }
}

/// The unprotected rows of `sql` (gate only, no output control): ground truth for tests.
pub async fn unprotected(cx: &ProjectContext, sql: &str) -> Vec<Vec<String>> {
    let plan = cx
        .plan_unprotected(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let df = cx
        .session()
        .execute_logical_plan(plan)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    render(&df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}")))
}

/// A query's outcome in one line: `rows: …`, `FS-x: message`, `invalid: …` or
/// `execution error`. Execution errors are not described (their text may hold data).
pub async fn outcome(cx: &ProjectContext, sql: &str) -> String {
    match run(cx, sql).await {
        Ok((b, _)) => format!("rows: {:?}", render(&b)),
        Err(QueryError::Refused(r)) => format!("{}: {}", r.rule.id(), r.message),
        Err(QueryError::Invalid(m)) => format!("invalid: {m}"),
        Err(QueryError::Execution(_)) => "execution error".to_string(),
    }
}

/// Parses a released number.
pub fn num(s: &str) -> f64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}"))
}
