use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::nhs::{NhsNumbers, is_valid};
use super::util::{fmt_date, ymd};
use super::*;

type Rows = Vec<Vec<String>>;

fn opts(dir: &Path, patients: u64, seed: u64) -> SynthOptions {
    SynthOptions {
        patients,
        seed,
        out: dir.to_path_buf(),
        progress: false,
    }
}

/// Reads a CSV written by the generator: (header, rows).
fn read(dir: &Path, name: &str) -> (Vec<String>, Rows) {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(dir.join(name))
        .expect("open csv");
    let header = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("record").iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn files_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

// ----- field validators, mirroring the ingest contract --------------------------------------

fn digits(s: &str, lo: usize, hi: usize) -> bool {
    (lo..=hi).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit())
}
fn alnum(s: &str, lo: usize, hi: usize) -> bool {
    (lo..=hi).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
}
fn nhs(s: &str) -> Option<u64> {
    digits(s, 10, 10)
        .then(|| s.parse().ok())
        .flatten()
        .filter(|&n| is_valid(n))
}
fn date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = s[0..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    let day = ymd(y, m, d);
    (fmt_date(day) == *b).then_some(day)
}
fn opt_date(s: &str) -> Option<Option<i32>> {
    if s.is_empty() {
        Some(None)
    } else {
        date(s).map(Some)
    }
}
fn practice(s: &str) -> bool {
    s.len() == 6 && s.as_bytes()[0].is_ascii_uppercase() && digits(&s[1..], 5, 5)
}
fn icd10(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 4
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && (b[3].is_ascii_digit() || b[3] == b'X')
}
fn opcs4(s: &str) -> bool {
    s.len() == 4 && s.as_bytes()[0].is_ascii_uppercase() && digits(&s[1..], 3, 3)
}
fn bnf(s: &str) -> bool {
    (9..=15).contains(&s.len()) && digits(&s[..4], 4, 4) && alnum(&s[4..], 5, 11)
}
fn postcode(s: &str) -> bool {
    let Some((out, inw)) = s.split_once(' ') else {
        return false;
    };
    let i = inw.as_bytes();
    (2..=4).contains(&out.len())
        && out.as_bytes()[0].is_ascii_uppercase()
        && alnum(out, 2, 4)
        && i.len() == 3
        && i[0].is_ascii_digit()
        && i[1].is_ascii_uppercase()
        && i[2].is_ascii_uppercase()
}
fn age(s: &str) -> bool {
    s.parse::<u16>()
        .is_ok_and(|a| a <= 120 || (7001..=7007).contains(&a))
        && digits(s, 1, 4)
}
fn record_id(s: &str) -> bool {
    digits(s, 1, 18) && s.parse::<u64>().is_ok_and(|v| v > 0)
}

const END: i32 = ymd(2024, 3, 31);
const HES_START: i32 = ymd(2021, 4, 1);
const GP_START: i32 = ymd(2015, 1, 1);

/// Whether a data row of `name` passes the contract (given the patients' dates).
fn row_ok(name: &str, r: &[String], people: &BTreeMap<u64, (i32, Option<i32>)>) -> bool {
    let life = |n: u64| people.get(&n).copied();
    let within = |n: Option<u64>, d: Option<i32>, from: i32| -> bool {
        let (Some(n), Some(d)) = (n, d) else {
            return false;
        };
        if !(from..=END).contains(&d) {
            return false;
        }
        match life(n) {
            Some((dob, death)) => d >= dob && death.is_none_or(|x| d <= x),
            None => true,
        }
    };
    match name {
        "gp_patients.csv" => {
            let (dob, start, end, death) =
                (date(&r[1]), date(&r[6]), opt_date(&r[7]), opt_date(&r[8]));
            let (Some(dob), Some(start), Some(end), Some(death)) = (dob, start, end, death) else {
                return false;
            };
            nhs(&r[0]).is_some()
                && matches!(r[2].as_str(), "F" | "M" | "I" | "U")
                && alnum(&r[3], 1, 1)
                && r[3].as_bytes()[0].is_ascii_uppercase()
                && postcode(&r[4])
                && practice(&r[5])
                && dob <= END
                && start >= dob
                && start <= END
                && end.is_none_or(|e| e >= start && e <= END)
                && death.is_none_or(|d| d >= dob && d <= END && end.is_some_and(|e| e <= d))
        }
        "gp_events.csv" => {
            let n = nhs(&r[0]);
            within(n, date(&r[1]), ymd(1990, 1, 1))
                && digits(&r[2], 6, 18)
                && (r[3].is_empty() || r[3].parse::<f64>().is_ok())
                && (date(&r[1]) >= Some(GP_START)
                    || ["44054006", "195967001", "38341003", "13645005", "84114007"]
                        .contains(&r[2].as_str()))
        }
        "gp_medications.csv" => {
            within(nhs(&r[0]), date(&r[1]), GP_START) && digits(&r[2], 6, 18) && bnf(&r[3])
        }
        "gp_objections.csv" => {
            within(nhs(&r[0]), date(&r[1]), ymd(2014, 1, 1))
                && (r[2] == TYPE1_DISSENT || r[2] == TYPE1_WITHDRAWN)
        }
        "hes_apc.csv" => {
            let n = nhs(&r[0]);
            let (adm, st, en, dis) = (date(&r[4]), date(&r[5]), date(&r[6]), date(&r[7]));
            record_id(&r[1])
                && record_id(&r[2])
                && r[3].parse::<u8>().is_ok_and(|o| (1..=99).contains(&o))
                && within(n, adm, HES_START)
                && within(n, dis, HES_START)
                && adm <= st
                && st <= en
                && en <= dis
                && [
                    "11", "12", "13", "21", "22", "23", "24", "25", "28", "2A", "2B", "2C", "2D",
                    "31", "32", "81", "82", "83", "84", "89", "98", "99",
                ]
                .contains(&r[8].as_str())
                && alnum(&r[9], 1, 2)
                && alnum(&r[10], 1, 2)
                && alnum(&r[11], 3, 3)
                && practice(&r[12])
                && age(&r[13])
                && matches!(r[14].as_str(), "F" | "M" | "I" | "U")
                && postcode(&r[15])
                && icd10(&r[16])
                && r[17].split(',').all(icd10)
                && r[17].split(',').next() == Some(r[16].as_str())
                && r[17].split(',').count() <= 5
                && (r[18].is_empty() || opcs4(&r[18]))
                && (r[19].is_empty() || r[19].split(',').all(opcs4))
                && r[19].split(',').next() == Some(r[18].as_str())
        }
        "hes_op.csv" => {
            within(nhs(&r[0]), date(&r[2]), HES_START)
                && record_id(&r[1])
                && ["0", "2", "3", "4", "5", "6", "7"].contains(&r[3].as_str())
                && alnum(&r[4], 1, 1)
                && alnum(&r[5], 3, 3)
                && alnum(&r[6], 3, 3)
                && practice(&r[7])
                && age(&r[8])
        }
        "hes_ae.csv" => {
            within(nhs(&r[0]), date(&r[2]), HES_START)
                && record_id(&r[1])
                && alnum(&r[3], 1, 2)
                && alnum(&r[4], 2, 2)
                && alnum(&r[5], 3, 3)
                && practice(&r[6])
                && age(&r[7])
        }
        "ndoo.csv" => {
            nhs(&r[0]).is_some() && (r[1] == "true" || r[1] == "false") && r[2] == "2024-03-01"
        }
        _ => true,
    }
}

// ----- tests ------------------------------------------------------------------------------

#[test]
fn check_digit() {
    assert_eq!(nhs_check_digit(&[9, 4, 3, 4, 7, 6, 5, 9, 1]), Some(9));
    assert_eq!(nhs_check_digit(b"943476591"), Some(9));
    assert_eq!(nhs_check_digit(&[1, 0, 0, 0, 0, 0, 0, 0, 1]), None);
    assert_eq!(nhs_check_digit(b"100000001"), None);
    assert!(is_valid(9_434_765_919));
    assert!(!is_valid(9_434_765_918));
}

#[test]
fn nhs_numbers_are_distinct_valid_and_in_range() {
    let numbers = NhsNumbers::new(42);
    let mut seen = BTreeSet::new();
    let indices = (0..60_000u64)
        .chain(9_999_000..10_001_000)
        .chain(89_999_000..90_000_000);
    for i in indices {
        let n = numbers.number(i);
        assert!(is_valid(n), "{n}");
        assert!((4_000_000_000..5_000_000_000).contains(&n), "{n}");
        assert!(seen.insert(n), "duplicate {n} at {i}");
    }
    assert_ne!(NhsNumbers::new(43).number(0), numbers.number(0));
    let wrong = super::nhs::wrong_check(numbers.number(5), 3);
    assert!(!is_valid(wrong));
}

#[test]
fn zero_patients_is_an_invalid_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = generate(&opts(dir.path(), 0, 1)).expect_err("0 patients");
    assert!(matches!(err, crate::Error::InvalidOption(_)), "{err}");
}

#[test]
fn tiny_run_writes_every_file_with_its_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("nested").join("x");
    let summary = generate(&opts(&out, 50, 3)).expect("generate");
    let names: Vec<&str> = summary.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, EXTRACT_FILES);
    let on_disk = files_bytes(&out);
    assert_eq!(
        on_disk.len(),
        10,
        "no temporary files left: {:?}",
        on_disk.keys()
    );
    let total: u64 = on_disk.values().map(|b| b.len() as u64).sum();
    assert_eq!(total, summary.bytes);
    for (name, rows) in &summary.files {
        let text = &on_disk[name];
        assert!(text.ends_with(b"\n") && !text.contains(&b'\r'), "{name}");
        let (_, data) = read(&out, name);
        assert_eq!(data.len() as u64, *rows, "{name}");
    }
    let (_, pats) = read(&out, "gp_patients.csv");
    let people: BTreeSet<&str> = pats.iter().map(|r| r[0].as_str()).collect();
    assert!((50..=50).contains(&people.len()), "{}", people.len());
    assert!(summary.files[0].1 >= 3 && summary.files[1].1 >= 100);
}

#[test]
fn headers_match_the_data_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    generate(&opts(dir.path(), 60, 9)).expect("generate");
    let expected: [(&str, &str); 10] = [
        (
            "practices.csv",
            "practice_code,practice_name,sub_icb_code,region",
        ),
        ("postcode_lsoa.csv", "postcode,lsoa,imd_decile"),
        (
            "gp_patients.csv",
            "nhs_number,date_of_birth,sex,ethnicity,postcode,practice_code,registration_start,registration_end,date_of_death",
        ),
        (
            "gp_events.csv",
            "nhs_number,event_date,snomedct_code,numeric_value",
        ),
        (
            "gp_medications.csv",
            "nhs_number,issue_date,dmd_code,bnf_code",
        ),
        ("gp_objections.csv", "nhs_number,code_date,snomedct_code"),
        (
            "hes_apc.csv",
            "nhs_number,epikey,spell_id,epiorder,admidate,epistart,epiend,disdate,admimeth,admisorc,dismeth,procode3,gpprac,startage,sex,postcode,diag_4_01,diag_4_concat,opertn_4_01,opertn_4_concat",
        ),
        (
            "hes_op.csv",
            "nhs_number,attendkey,apptdate,attended,firstatt,tretspef,procode3,gpprac,apptage",
        ),
        (
            "hes_ae.csv",
            "nhs_number,aekey,arrivaldate,aearrivalmode,aeattenddisp,procode3,gpprac,arrivalage",
        ),
        ("ndoo.csv", "nhs_number,opted_out,as_of"),
    ];
    for (name, header) in expected {
        let text = std::fs::read_to_string(dir.path().join(name)).expect("read");
        assert_eq!(text.lines().next(), Some(header), "{name}");
    }
}

#[test]
fn same_seed_is_byte_identical_whatever_the_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, c, d) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
        dir.path().join("d"),
    );
    // 5,000 patients: two chunks, so chunk order matters.
    generate(&opts(&a, 5_000, 7)).expect("a");
    generate(&opts(&b, 5_000, 7)).expect("b");
    generate(&opts(&c, 5_000, 8)).expect("c");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    pool.install(|| generate(&opts(&d, 5_000, 7))).expect("d");
    let (fa, fb, fc, fd) = (
        files_bytes(&a),
        files_bytes(&b),
        files_bytes(&c),
        files_bytes(&d),
    );
    assert_eq!(fa.len(), 10);
    assert!(fa == fb, "same seed and size must give identical files");
    assert!(fa == fd, "one thread gives the same files");
    for name in EXTRACT_FILES {
        assert_ne!(fa[*name], fc[*name], "{name} differs for another seed");
    }
}

#[test]
fn twenty_thousand_patients_have_realistic_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let summary = generate(&opts(dir.path(), 20_000, 2024)).expect("generate");
    eprintln!("20,000 patients in {:.2?}", started.elapsed());
    for (name, rows) in &summary.files {
        eprintln!("{name:<20} {rows:>9}");
    }
    let t: BTreeMap<&str, Rows> = EXTRACT_FILES
        .iter()
        .map(|&n| (n, read(dir.path(), n).1))
        .collect();

    // Reference tables.
    let practices: BTreeSet<&str> = t["practices.csv"].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        practices.len(),
        t["practices.csv"].len(),
        "distinct practice codes"
    );
    assert!(t["practices.csv"].iter().all(|r| practice(&r[0])
        && alnum(&r[2], 3, 5)
        && super::reference::REGIONS.contains(&r[3].as_str())));
    let sub_icbs: BTreeSet<&str> = t["practices.csv"].iter().map(|r| r[2].as_str()).collect();
    assert!(sub_icbs.len() >= 2);
    let postcodes: BTreeSet<&str> = t["postcode_lsoa.csv"]
        .iter()
        .map(|r| r[0].as_str())
        .collect();
    assert_eq!(
        postcodes.len(),
        t["postcode_lsoa.csv"].len(),
        "distinct postcodes"
    );
    assert!(t["postcode_lsoa.csv"].iter().all(|r| postcode(&r[0])
        && r[1].len() == 9
        && r[1].starts_with("E01")
        && digits(&r[1][3..], 6, 6)
        && r[2].parse::<u8>().is_ok_and(|d| (1..=10).contains(&d))));

    // Patients: valid apart from the deliberately bad rows; foreign keys hold.
    let pats = &t["gp_patients.csv"];
    let mut people: BTreeMap<u64, (i32, Option<i32>)> = BTreeMap::new();
    let mut regs: BTreeMap<u64, usize> = BTreeMap::new();
    for r in pats {
        if let (Some(n), Some(dob)) = (nhs(&r[0]), date(&r[1])) {
            people.insert(n, (dob, opt_date(&r[8]).flatten()));
            *regs.entry(n).or_default() += 1;
        }
        assert!(practices.contains(r[5].as_str()), "practice exists");
        assert!(postcodes.contains(r[4].as_str()), "postcode exists");
    }
    let bad_nhs = pats.iter().filter(|r| nhs(&r[0]).is_none()).count();
    assert!(bad_nhs <= 10, "{bad_nhs} bad NHS numbers");
    let n_people = people.len() as f64;
    assert!(
        (19_990..=20_000).contains(&people.len()),
        "{}",
        people.len()
    );
    let two_regs = regs.values().filter(|&&n| n == 2).count();
    assert!(
        (0.05..0.12).contains(&(two_regs as f64 / n_people)),
        "{two_regs}"
    );
    let dead = pats
        .iter()
        .filter(|r| !r[8].is_empty())
        .map(|r| &r[0])
        .collect::<BTreeSet<_>>()
        .len();
    assert!(
        (0.004..0.03).contains(&(dead as f64 / n_people)),
        "{dead} deaths"
    );

    // Every data row passes the contract except a few deliberately bad ones.
    for name in &EXTRACT_FILES[2..] {
        let rows = &t[name];
        let bad = rows.iter().filter(|r| !row_ok(name, r, &people)).count();
        eprintln!("{name:<20} {bad:>5} bad of {}", rows.len());
        match *name {
            "gp_objections.csv" | "ndoo.csv" => assert_eq!(bad, 0, "{name}"),
            _ => {
                assert!(bad >= 1, "{name} has deliberately bad rows");
                assert!((bad as f64) < rows.len() as f64 * 0.003, "{name}: {bad}");
            }
        }
    }
    // GP rows belong to listed people.
    for name in ["gp_events.csv", "gp_medications.csv", "gp_objections.csv"] {
        let orphans = t[name]
            .iter()
            .filter(|r| nhs(&r[0]).is_some_and(|n| !people.contains_key(&n)))
            .count();
        assert_eq!(orphans, 0, "{name}");
    }
    // Volumes.
    let per = |name: &str| t[name].len() as f64 / n_people;
    assert!(
        (7.0..20.0).contains(&per("gp_events.csv")),
        "{}",
        per("gp_events.csv")
    );
    assert!(
        (6.0..16.0).contains(&per("gp_medications.csv")),
        "{}",
        per("gp_medications.csv")
    );
    assert!(
        (0.6..1.3).contains(&per("hes_apc.csv")),
        "{}",
        per("hes_apc.csv")
    );
    assert!(
        (2.5..6.0).contains(&per("hes_op.csv")),
        "{}",
        per("hes_op.csv")
    );
    assert!(
        (0.6..1.5).contains(&per("hes_ae.csv")),
        "{}",
        per("hes_ae.csv")
    );

    // Objections: 2–4 % dissent, some withdraw.
    let objs = &t["gp_objections.csv"];
    let objectors: BTreeSet<&str> = objs.iter().map(|r| r[0].as_str()).collect();
    let share = objectors.len() as f64 / n_people;
    assert!((0.02..=0.04).contains(&share), "objection share {share}");
    assert!(objs.iter().any(|r| r[2] == TYPE1_WITHDRAWN));

    // National data opt-out: 3–7 % of GP patients, some absent, HES-only people mostly absent.
    let ndoo: BTreeMap<u64, bool> = t["ndoo.csv"]
        .iter()
        .filter_map(|r| Some((nhs(&r[0])?, r[1] == "true")))
        .collect();
    assert_eq!(ndoo.len(), t["ndoo.csv"].len(), "one row per person");
    let opted = people.keys().filter(|n| ndoo.get(n) == Some(&true)).count() as f64 / n_people;
    assert!((0.03..=0.07).contains(&opted), "opted out {opted}");
    let absent = people.keys().filter(|n| !ndoo.contains_key(n)).count();
    assert!(absent > 0 && (absent as f64) < n_people * 0.03, "{absent}");

    // HES: some rows of people outside the GP list (about 1 %), distinct ids.
    let mut hes_only = BTreeSet::new();
    let mut hes_rows = 0;
    for name in ["hes_apc.csv", "hes_op.csv", "hes_ae.csv"] {
        for r in &t[name] {
            hes_rows += 1;
            if let Some(n) = nhs(&r[0])
                && !people.contains_key(&n)
            {
                hes_only.insert(n);
            }
        }
        let keys: BTreeSet<&str> = t[name].iter().map(|r| r[1].as_str()).collect();
        assert_eq!(keys.len(), t[name].len(), "{name} keys distinct");
    }
    assert!(!hes_only.is_empty());
    let hes_only_rows = ["hes_apc.csv", "hes_op.csv", "hes_ae.csv"]
        .iter()
        .flat_map(|n| t[n].iter())
        .filter(|r| nhs(&r[0]).is_some_and(|n| hes_only.contains(&n)))
        .count();
    let share = hes_only_rows as f64 / f64::from(hes_rows);
    assert!((0.003..0.03).contains(&share), "HES-only share {share}");

    // APC: spells of chained episodes, ~40 % emergency, 30-day emergency readmissions.
    let apc = &t["hes_apc.csv"];
    let emergency = |m: &str| ["21", "22", "23", "24", "25", "28", "2A", "2D", "2B"].contains(&m);
    let mut spells: BTreeMap<u64, (String, i32, i32, String, usize)> = BTreeMap::new();
    for r in apc {
        let (Some(_), Some(adm), Some(dis), Ok(id)) =
            (nhs(&r[0]), date(&r[4]), date(&r[7]), r[2].parse::<u64>())
        else {
            continue;
        };
        let e = spells
            .entry(id)
            .or_insert((r[0].clone(), adm, dis, r[8].clone(), 0));
        assert_eq!(
            (&e.0, e.1, e.2),
            (&r[0], adm, dis),
            "one spell, one person and dates"
        );
        e.4 += 1;
    }
    let multi = spells.values().filter(|s| s.4 > 1).count() as f64 / spells.len() as f64;
    assert!((0.03..0.2).contains(&multi), "multi-episode spells {multi}");
    let em = spells.values().filter(|s| emergency(&s.3)).count() as f64 / spells.len() as f64;
    assert!((0.3..0.55).contains(&em), "emergency share {em}");
    let mut by_person: BTreeMap<&str, Vec<(i32, i32, bool)>> = BTreeMap::new();
    for s in spells.values() {
        by_person
            .entry(s.0.as_str())
            .or_default()
            .push((s.1, s.2, emergency(&s.3)));
    }
    let mut readmissions = 0;
    let mut emergency_discharges = 0;
    for list in by_person.values_mut() {
        list.sort_unstable();
        for w in list.windows(2) {
            assert!(w[1].0 > w[0].1, "spells of a person do not overlap");
        }
        for (i, s) in list.iter().enumerate() {
            if s.2 {
                emergency_discharges += 1;
                if list[i + 1..].iter().any(|n| n.2 && n.0 - s.1 <= 30) {
                    readmissions += 1;
                }
            }
        }
    }
    let rate = f64::from(readmissions) / f64::from(emergency_discharges);
    eprintln!("30-day emergency readmission rate {rate:.3}");
    assert!((0.03..0.25).contains(&rate), "{rate}");
    // Heavy tail: some people with many episodes.
    let mut per_person: BTreeMap<&str, usize> = BTreeMap::new();
    for r in apc {
        *per_person.entry(r[0].as_str()).or_default() += 1;
    }
    assert!(per_person.values().any(|&n| n >= 10));

    // OP attendance codes.
    let op = &t["hes_op.csv"];
    let seen = op.iter().filter(|r| r[3] == "5" || r[3] == "6").count() as f64 / op.len() as f64;
    assert!((0.8..0.95).contains(&seen), "{seen}");
}
