//! One function per raw extract: validate each record, apply objections and pseudonymise,
//! and append the stored row. A record that fails a check becomes a reject (line, column,
//! reason) and is not written; structural problems stop the run (see `source`).

// Hash maps with a fast (non-SipHash) hasher: keys are NHS numbers and codes from trusted
// extracts, looked up once or more per record.
use foldhash::{HashMap, HashSet};

use crate::catalog;
use crate::dates::first_of_month;
use crate::ingest::source::{Extract, Record};
use crate::ingest::validate as v;
use crate::ingest::writer::Rows;
use crate::keys::Pseudonymiser;
use crate::store::ExtractCounts;
use crate::{Error, Result};

/// Type 1 dissent (the patient's GP data must not leave the practice).
pub const TYPE1_DISSENT: &[u8] = b"827241000000103";
/// Type 1 dissent withdrawn.
pub const TYPE1_WITHDRAWN: &[u8] = b"827261000000102";

/// At most this many reject details are kept per extract (all are counted).
const MAX_REJECT_DETAILS: usize = 100_000;

/// Rejected records of one extract.
#[derive(Debug, Default)]
pub struct Rejects {
    /// (line, column, reason) of the first rejects.
    pub details: Vec<(u64, &'static str, &'static str)>,
    /// How many records were rejected.
    pub count: u64,
}

impl Rejects {
    fn add(&mut self, line: u64, column: &'static str, reason: &'static str) {
        self.count += 1;
        if self.details.len() < MAX_REJECT_DETAILS {
            self.details.push((line, column, reason));
        }
    }

    /// Adds the rejects of a later pass over the same extract, keeping the details in line
    /// order (each list is in line order; together they keep the first rejects by line).
    fn merge(&mut self, later: Rejects) {
        self.count += later.count;
        if later.details.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.details.len() + later.details.len());
        let (mut a, mut b) = (
            std::mem::take(&mut self.details).into_iter().peekable(),
            later.details.into_iter().peekable(),
        );
        while merged.len() < MAX_REJECT_DETAILS {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.0 <= y.0,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            merged.extend(if take_a { a.next() } else { b.next() });
        }
        self.details = merged;
    }
}

/// Everything one extract produced.
pub struct Processed {
    /// Counts for the summary and manifest.
    pub counts: ExtractCounts,
    /// Rejected records.
    pub rejects: Rejects,
    /// Stored rows, by table (an extract may feed two tables).
    pub tables: Vec<(&'static catalog::TableDef, Rows)>,
    /// People of hospital records who are not registered with a GP in this extract, by NHS
    /// number (pseudonymised once each; merged into `person_keys`).
    pub others: HashMap<u64, Person>,
}

impl Processed {
    fn new(extract: &str) -> Processed {
        Processed {
            counts: ExtractCounts {
                extract: extract.into(),
                ..ExtractCounts::default()
            },
            rejects: Rejects::default(),
            tables: Vec::new(),
            others: HashMap::default(),
        }
    }
}

/// A person's pseudonym and record key.
#[derive(Debug, Clone, Copy)]
pub struct Person {
    /// The `patient_id`.
    pub id: i64,
    /// The secret record key.
    pub key: u8,
}

/// Waits for the shared [`Context`] (built by another worker from the reference extracts and
/// the registrations): the large extracts are read and validated before their people are
/// resolved, so reading them need not wait for the registrations.
pub type Await<'a> = &'a (dyn Fn() -> Result<&'a Context> + Sync);

/// Reference data and person lookups shared by the per-extract functions.
pub struct Context {
    /// Keyed functions.
    pub pseudo: Pseudonymiser,
    /// Practice codes in `practices.csv`.
    pub practices: HashSet<[u8; 6]>,
    /// Postcode → index into `lsoas`.
    pub postcodes: HashMap<[u8; 7], u32>,
    /// (lsoa, imd_decile) by index.
    pub lsoas: Vec<(String, i16)>,
    /// NHS numbers whose latest Type 1 code is a dissent.
    pub objectors: HashSet<u64>,
    /// Pseudonyms of everyone with an accepted GP registration (objectors included), computed
    /// once; also the referential check for GP-sourced extracts.
    pub gp_people: HashMap<u64, Person>,
    /// Every `patient_id` handed out, to detect the (astronomically unlikely) collision of two
    /// NHS numbers on one 63-bit pseudonym instead of silently merging two people.
    pub ids: HashSet<i64>,
}

impl Context {
    /// The pseudonym of a person who need not be registered with a GP (hospital data).
    fn person(&self, nhs: u64) -> Result<Person> {
        if let Some(p) = self.gp_people.get(&nhs) {
            return Ok(*p);
        }
        let id = self.pseudo.patient_id(nhs);
        if self.ids.contains(&id) {
            return Err(collision());
        }
        Ok(Person {
            id,
            key: self.pseudo.record_key(id),
        })
    }
}

fn collision() -> Error {
    Error::InvalidOption(
        "two NHS numbers map to the same patient_id under this key; generate a new \
         pseudonymisation key (this is a one-in-10^8 event at national scale)"
            .into(),
    )
}

/// Decodes a validated ASCII field. Validators only accept ASCII, so this cannot fail for
/// them; for free text it is the UTF-8 check.
fn text(s: &[u8]) -> Option<&str> {
    std::str::from_utf8(s).ok()
}

macro_rules! check {
    ($rej:expr, $rec:expr, $col:expr, $reason:expr, $e:expr) => {
        match $e {
            Some(x) => x,
            None => {
                $rej.add($rec.line, $col, $reason);
                return Ok(());
            }
        }
    };
}

/// `practices.csv` → the public `practices` table and the set of known codes.
pub fn practices(
    ex: &mut Extract,
    progress: impl FnMut(u64),
) -> Result<(Processed, HashSet<[u8; 6]>)> {
    let cols = catalog::raw_columns("practices.csv");
    let mut out = Processed::new("practices.csv");
    let mut rows = Rows::new(&catalog::PRACTICES);
    let mut codes = HashSet::default();
    let rej = &mut out.rejects;
    let read = ex.for_each(progress, |r| {
        let code = check!(rej, r, cols[0], "malformed practice code", {
            let c = r.get(0);
            v::practice_code(c)
                .then(|| <[u8; 6]>::try_from(c).ok())
                .flatten()
        });
        let name = check!(
            rej,
            r,
            cols[1],
            "empty or not UTF-8",
            text(r.get(1)).filter(|s| !s.is_empty())
        );
        let sub_icb = check!(
            rej,
            r,
            cols[2],
            "malformed sub-ICB code",
            v::alnum(r.get(2), 3, 5).then(|| text(r.get(2))).flatten()
        );
        let region = check!(
            rej,
            r,
            cols[3],
            "empty or not UTF-8",
            text(r.get(3)).filter(|s| !s.is_empty())
        );
        if !codes.insert(code) {
            rej.add(r.line, cols[0], "duplicate practice code");
            return Ok(());
        }
        rows.str(0, text(&code).unwrap_or_default());
        rows.str(1, name);
        rows.str(2, sub_icb);
        rows.str(3, region);
        rows.end_row()
    })?;
    out.counts.read = read;
    out.counts.rejected = out.rejects.count;
    out.counts.accepted = rows.len() as u64;
    out.tables.push((&catalog::PRACTICES, rows));
    Ok((out, codes))
}

/// A postcode lookup: normalised postcode → index into the list of (LSOA, IMD decile).
pub type PostcodeLookup = (HashMap<[u8; 7], u32>, Vec<(String, i16)>);

/// `postcode_lsoa.csv` → the public `lsoas` table and the postcode lookup.
pub fn postcodes(
    ex: &mut Extract,
    progress: impl FnMut(u64),
) -> Result<(Processed, PostcodeLookup)> {
    let cols = catalog::raw_columns("postcode_lsoa.csv");
    let mut out = Processed::new("postcode_lsoa.csv");
    let mut map = HashMap::default();
    let mut lsoas: Vec<(String, i16)> = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::default();
    let rej = &mut out.rejects;
    let read = ex.for_each(progress, |r| {
        let key = check!(
            rej,
            r,
            cols[0],
            "malformed postcode",
            v::postcode_key(r.get(0))
        );
        let lsoa = check!(
            rej,
            r,
            cols[1],
            "malformed LSOA code",
            v::lsoa(r.get(1)).then(|| text(r.get(1))).flatten()
        );
        let imd = check!(
            rej,
            r,
            cols[2],
            "IMD decile not 1-10",
            v::small_order(r.get(2)).filter(|d| (1..=10).contains(d))
        );
        let i = match index.get(lsoa) {
            Some(&i) => {
                if lsoas[i as usize].1 != imd {
                    rej.add(r.line, cols[2], "LSOA listed with two IMD deciles");
                    return Ok(());
                }
                i
            }
            None => {
                let i = lsoas.len() as u32;
                lsoas.push((lsoa.to_string(), imd));
                index.insert(lsoa.to_string(), i);
                i
            }
        };
        if map.insert(key, i).is_some() {
            rej.add(r.line, cols[0], "duplicate postcode");
        }
        Ok(())
    })?;
    let mut rows = Rows::new(&catalog::LSOAS);
    for (l, d) in &lsoas {
        rows.str(0, l);
        rows.i16(1, *d);
        rows.end_row()?;
    }
    out.counts.read = read;
    out.counts.rejected = out.rejects.count;
    out.counts.accepted = read - out.rejects.count;
    out.tables.push((&catalog::LSOAS, rows));
    Ok((out, (map, lsoas)))
}

/// `gp_objections.csv` → the set of people whose latest Type 1 code is a dissent. On the same
/// date, dissent wins (fail safe). Nothing from this extract is stored.
pub fn objections(
    ex: &mut Extract,
    progress: impl FnMut(u64),
) -> Result<(Processed, HashSet<u64>)> {
    let cols = catalog::raw_columns("gp_objections.csv");
    let mut out = Processed::new("gp_objections.csv");
    let mut latest: HashMap<u64, (i32, bool)> = HashMap::default();
    let rej = &mut out.rejects;
    let read = ex.for_each(progress, |r| {
        let nhs = check!(
            rej,
            r,
            cols[0],
            "invalid NHS number",
            v::nhs_number(r.get(0))
        );
        let date = check!(rej, r, cols[1], "unparsable date", v::date(r.get(1)));
        let dissent = check!(
            rej,
            r,
            cols[2],
            "not a Type 1 dissent or withdrawal code",
            match r.get(2) {
                TYPE1_DISSENT => Some(true),
                TYPE1_WITHDRAWN => Some(false),
                _ => None,
            }
        );
        let e = latest.entry(nhs).or_insert((date, dissent));
        if date > e.0 || (date == e.0 && dissent) {
            *e = (date, dissent);
        }
        Ok(())
    })?;
    out.counts.read = read;
    out.counts.rejected = out.rejects.count;
    out.counts.accepted = read - out.rejects.count;
    let objectors = latest
        .into_iter()
        .filter_map(|(nhs, (_, dissent))| dissent.then_some(nhs))
        .collect();
    Ok((out, objectors))
}

/// Latest demographics of a registered person.
struct Demographics {
    /// Registration start of the row these came from (latest wins).
    start: i32,
    birth_month: i32,
    sex: u8,
    ethnicity: u8,
    lsoa: Option<u32>,
    practice: [u8; 6],
    death_month: Option<i32>,
}

/// `gp_patients.csv` → `patients` (latest registration's demographics) and
/// `practice_registrations`, without objectors; fills `ctx.gp_people`.
pub fn patients(
    ctx: &mut Context,
    ex: &mut Extract,
    progress: impl FnMut(u64),
) -> Result<Processed> {
    let cols = catalog::raw_columns("gp_patients.csv");
    let mut out = Processed::new("gp_patients.csv");
    let mut people: HashMap<u64, Demographics> = HashMap::default();
    let mut regs: Vec<(u64, [u8; 6], i32, Option<i32>)> = Vec::new();
    let rej = &mut out.rejects;
    let read = {
        let ctx = &*ctx;
        ex.for_each(progress, |r| {
            let nhs = check!(
                rej,
                r,
                cols[0],
                "invalid NHS number",
                v::nhs_number(r.get(0))
            );
            let dob = check!(rej, r, cols[1], "unparsable date", v::date(r.get(1)));
            let sex = check!(
                rej,
                r,
                cols[2],
                "not one of F, M, I, U",
                v::sex(r.get(2)).then(|| r.get(2)[0])
            );
            let eth = check!(
                rej,
                r,
                cols[3],
                "not an ethnic category letter",
                v::ethnicity(r.get(3)).then(|| r.get(3)[0])
            );
            // An unknown or malformed postcode leaves the area unknown; it is no reason to drop
            // the person (real extracts have many).
            let lsoa = v::postcode_key(r.get(4)).and_then(|k| ctx.postcodes.get(&k).copied());
            let practice = check!(rej, r, cols[5], "malformed practice code", {
                let c = r.get(5);
                v::practice_code(c)
                    .then(|| <[u8; 6]>::try_from(c).ok())
                    .flatten()
            });
            if !ctx.practices.contains(&practice) {
                rej.add(r.line, cols[5], "practice not in practices.csv");
                return Ok(());
            }
            let start = check!(rej, r, cols[6], "unparsable date", v::date(r.get(6)));
            let end = check!(
                rej,
                r,
                cols[7],
                "unparsable date",
                v::opt_date(r.get(7)).ok()
            );
            let death = check!(
                rej,
                r,
                cols[8],
                "unparsable date",
                v::opt_date(r.get(8)).ok()
            );
            if end.is_some_and(|e| e < start) {
                rej.add(r.line, cols[7], "registration ends before it starts");
                return Ok(());
            }
            if start < dob || death.is_some_and(|d| d < dob) {
                rej.add(r.line, cols[1], "date of birth after registration or death");
                return Ok(());
            }
            regs.push((nhs, practice, start, end));
            let d = Demographics {
                start,
                birth_month: first_of_month(dob),
                sex,
                ethnicity: eth,
                lsoa,
                practice,
                death_month: death.map(first_of_month),
            };
            match people.get_mut(&nhs) {
                Some(old) if old.start > start => {}
                Some(old) => *old = d,
                None => {
                    people.insert(nhs, d);
                }
            }
            Ok(())
        })?
    };
    out.counts.read = read;
    out.counts.rejected = out.rejects.count;

    // Pseudonymise every registered person once (objectors too: their events are counted as
    // removed by objection, not rejected as unknown).
    let mut nhs_numbers: Vec<u64> = people.keys().copied().collect();
    nhs_numbers.sort_unstable();
    let pseudo = ctx.pseudo.clone();
    let computed: Vec<(u64, Person)> = {
        use rayon::prelude::*;
        nhs_numbers
            .par_iter()
            .map(|&n| {
                let id = pseudo.patient_id(n);
                (
                    n,
                    Person {
                        id,
                        key: pseudo.record_key(id),
                    },
                )
            })
            .collect()
    };
    for (n, p) in computed {
        if !ctx.ids.insert(p.id) {
            return Err(collision());
        }
        ctx.gp_people.insert(n, p);
    }

    let mut pat = Rows::new(&catalog::PATIENTS);
    for n in &nhs_numbers {
        if ctx.objectors.contains(n) {
            continue;
        }
        let d = &people[n];
        let p = ctx.gp_people[n];
        let (lsoa, imd) = match d.lsoa {
            Some(i) => {
                let (l, m) = &ctx.lsoas[i as usize];
                (Some(l.as_str()), Some(*m))
            }
            None => (None, None),
        };
        pat.i64(0, p.id);
        pat.date(1, d.birth_month);
        pat.str(2, text(std::slice::from_ref(&d.sex)).unwrap_or("U"));
        pat.str(3, text(std::slice::from_ref(&d.ethnicity)).unwrap_or("Z"));
        pat.opt_str(4, lsoa);
        pat.opt_i16(5, imd);
        pat.str(6, text(&d.practice).unwrap_or_default());
        pat.opt_date(7, d.death_month);
        pat.u8(8, p.key);
        pat.end_row()?;
    }
    let mut reg = Rows::new(&catalog::PRACTICE_REGISTRATIONS);
    for (n, practice, start, end) in regs {
        if ctx.objectors.contains(&n) {
            out.counts.removed_by_objection += 1;
            continue;
        }
        let p = ctx.gp_people[&n];
        reg.i64(0, p.id);
        reg.str(1, text(&practice).unwrap_or_default());
        reg.date(2, start);
        reg.opt_date(3, end);
        reg.u8(4, p.key);
        reg.end_row()?;
    }
    out.counts.accepted = reg.len() as u64;
    out.tables.push((&catalog::PATIENTS, pat));
    out.tables.push((&catalog::PRACTICE_REGISTRATIONS, reg));
    Ok(out)
}

/// The NHS numbers of an extract's records, in order. Extracts list a person's records
/// together, so a record with the same NHS number as the one before it reuses its checked
/// value instead of computing the check digit again.
#[derive(Default)]
struct NhsNumbers {
    /// The last valid NHS number: its digits and its value.
    last: Option<([u8; 10], u64)>,
}

impl NhsNumbers {
    /// The NHS number of a record, or a reject when it is invalid.
    #[inline]
    fn of(&mut self, r: &Record<'_>, rej: &mut Rejects) -> Option<u64> {
        let s = r.get(0);
        if let Some((digits, n)) = &self.last
            && s == digits
        {
            return Some(*n);
        }
        let nhs = v::nhs_number(s);
        match (nhs, <[u8; 10]>::try_from(s)) {
            (Some(n), Ok(digits)) => self.last = Some((digits, n)),
            _ => rej.add(r.line, "nhs_number", "invalid NHS number"),
        }
        nhs
    }
}

/// Who a GP-sourced record is about, once the registrations are known.
#[derive(Clone, Copy)]
enum GpPerson {
    /// A registered person without a Type 1 objection: the record is kept.
    Keep(Person),
    /// A Type 1 objector: the record is removed (counted).
    Objector,
    /// Not registered with a GP in this extract: the record is rejected.
    Unregistered,
}

/// The extract line of each row kept so far, stored as the rows where the lines stop being
/// consecutive (after a rejected row or a record that spans lines): a line per row would
/// take 8 bytes for each of the largest extracts' ten million rows.
#[derive(Debug, Default)]
struct Lines {
    /// (row, its line) where a run of rows on consecutive lines starts, rows ascending.
    runs: Vec<(usize, u64)>,
    /// Rows pushed.
    rows: usize,
    /// The line that continues the current run.
    next: u64,
}

impl Lines {
    /// Records the line of the next row.
    #[inline]
    fn push(&mut self, line: u64) {
        if self.runs.is_empty() || line != self.next {
            self.runs.push((self.rows, line));
        }
        self.rows += 1;
        self.next = line + 1;
    }

    /// The line of row `row` (one that was pushed).
    fn of(&self, row: usize) -> u64 {
        let i = self
            .runs
            .partition_point(|&(r, _)| r <= row)
            .saturating_sub(1);
        self.runs
            .get(i)
            .map_or(0, |&(first, line)| line + (row - first) as u64)
    }
}

/// Resolves the people of a GP-sourced table whose rows hold NHS numbers in `patient_id`
/// (and a placeholder record key): rows of registered people get their pseudonym and record
/// key, rows of objectors are removed (counted), rows of unregistered people are rejected.
/// `lines` holds each row's line in the extract.
fn resolve_gp(ctx: &Context, out: &mut Processed, rows: &mut Rows, lines: &Lines) -> Result<()> {
    let mut late = Rejects::default();
    let removed = &mut out.counts.removed_by_objection;
    // Extracts list a person's records together: look each run of one person up once.
    let mut last: Option<(i64, GpPerson)> = None;
    rows.resolve_people(|row, nhs| {
        let who = match last {
            Some((n, who)) if n == nhs => who,
            _ => {
                let n = nhs as u64;
                let who = if ctx.objectors.contains(&n) {
                    GpPerson::Objector
                } else {
                    match ctx.gp_people.get(&n) {
                        Some(p) => GpPerson::Keep(*p),
                        None => GpPerson::Unregistered,
                    }
                };
                last = Some((nhs, who));
                who
            }
        };
        Ok(match who {
            GpPerson::Keep(p) => Some((p.id, p.key)),
            GpPerson::Objector => {
                *removed += 1;
                None
            }
            GpPerson::Unregistered => {
                late.add(
                    lines.of(row),
                    "nhs_number",
                    "not a registered patient in gp_patients.csv",
                );
                None
            }
        })
    })?;
    out.rejects.merge(late);
    Ok(())
}

/// Resolves the people of a hospital table whose rows hold NHS numbers in `patient_id`: any
/// valid NHS number (hospital data is kept for Type 1 objectors and for people not registered
/// with a GP in this extract); people not registered are pseudonymised once each and kept in
/// `out.others`.
fn resolve_hes(ctx: &Context, out: &mut Processed, rows: &mut Rows) -> Result<()> {
    let others = &mut out.others;
    let mut last: Option<(i64, Person)> = None;
    rows.resolve_people(|_, nhs| {
        if let Some((n, p)) = last
            && n == nhs
        {
            return Ok(Some((p.id, p.key)));
        }
        let n = nhs as u64;
        let p = match ctx.gp_people.get(&n) {
            Some(p) => *p,
            None => match others.get(&n) {
                Some(p) => *p,
                None => {
                    let p = ctx.person(n)?;
                    others.insert(n, p);
                    p
                }
            },
        };
        last = Some((nhs, p));
        Ok(Some((p.id, p.key)))
    })
}

/// `gp_events.csv` → `clinical_events`.
pub fn events(ctx: Await<'_>, ex: &mut Extract, progress: impl FnMut(u64)) -> Result<Processed> {
    let cols = catalog::raw_columns("gp_events.csv");
    let mut out = Processed::new("gp_events.csv");
    let mut rows = Rows::new(&catalog::CLINICAL_EVENTS);
    let records = ex.estimated_records();
    rows.reserve(records);
    let mut lines = Lines::default();
    let rej = &mut out.rejects;
    let mut nhs_numbers = NhsNumbers::default();
    let read = ex.for_each(progress, |r| {
        let date = check!(rej, r, cols[1], "unparsable date", v::date(r.get(1)));
        let code = check!(
            rej,
            r,
            cols[2],
            "malformed SNOMED CT code",
            v::snomed(r.get(2)).then(|| r.get(2))
        );
        let value = check!(
            rej,
            r,
            cols[3],
            "not a number of magnitude at most 1e15",
            v::opt_number(r.get(3)).ok()
        );
        let Some(nhs) = nhs_numbers.of(r, rej) else {
            return Ok(());
        };
        lines.push(r.line);
        // The NHS number and a placeholder key until `resolve_gp` replaces them.
        rows.i64(0, nhs as i64);
        rows.date(1, date);
        rows.code(2, code);
        rows.opt_f64(3, value);
        rows.u8(4, 0);
        rows.end_row()
    })?;
    resolve_gp(ctx()?, &mut out, &mut rows, &lines)?;
    finish(&mut out, read, rows, &catalog::CLINICAL_EVENTS);
    Ok(out)
}

/// `gp_medications.csv` → `medications`.
pub fn medications(
    ctx: Await<'_>,
    ex: &mut Extract,
    progress: impl FnMut(u64),
) -> Result<Processed> {
    let cols = catalog::raw_columns("gp_medications.csv");
    let mut out = Processed::new("gp_medications.csv");
    let mut rows = Rows::new(&catalog::MEDICATIONS);
    let records = ex.estimated_records();
    rows.reserve(records);
    let mut lines = Lines::default();
    let rej = &mut out.rejects;
    let mut nhs_numbers = NhsNumbers::default();
    let read = ex.for_each(progress, |r| {
        let date = check!(rej, r, cols[1], "unparsable date", v::date(r.get(1)));
        let dmd = check!(
            rej,
            r,
            cols[2],
            "malformed dm+d code",
            v::dmd(r.get(2)).then(|| r.get(2))
        );
        let bnf = check!(
            rej,
            r,
            cols[3],
            "malformed BNF code",
            v::bnf(r.get(3)).then(|| r.get(3))
        );
        let Some(nhs) = nhs_numbers.of(r, rej) else {
            return Ok(());
        };
        lines.push(r.line);
        // The NHS number and a placeholder key until `resolve_gp` replaces them.
        rows.i64(0, nhs as i64);
        rows.date(1, date);
        rows.code(2, dmd);
        rows.code(3, bnf);
        rows.u8(4, 0);
        rows.end_row()
    })?;
    resolve_gp(ctx()?, &mut out, &mut rows, &lines)?;
    finish(&mut out, read, rows, &catalog::MEDICATIONS);
    Ok(out)
}

/// `hes_apc.csv` → `hes_apc`.
pub fn hes_apc(ctx: Await<'_>, ex: &mut Extract, progress: impl FnMut(u64)) -> Result<Processed> {
    let cols = catalog::raw_columns("hes_apc.csv");
    // Postcodes become LSOAs while reading.
    let ctx = ctx()?;
    let mut out = Processed::new("hes_apc.csv");
    let mut rows = Rows::new(&catalog::HES_APC);
    rows.reserve(ex.estimated_records());
    let rej = &mut out.rejects;
    let mut nhs_numbers = NhsNumbers::default();
    let read = ex.for_each(progress, |r| {
        let epikey = check!(
            rej,
            r,
            cols[1],
            "not a positive integer",
            v::record_id(r.get(1))
        );
        let spell = check!(
            rej,
            r,
            cols[2],
            "not a positive integer",
            v::record_id(r.get(2))
        );
        let order = check!(rej, r, cols[3], "not 1-99", v::small_order(r.get(3)));
        let admidate = check!(rej, r, cols[4], "unparsable date", v::date(r.get(4)));
        let epistart = check!(rej, r, cols[5], "unparsable date", v::date(r.get(5)));
        let epiend = check!(
            rej,
            r,
            cols[6],
            "unparsable date",
            v::opt_date(r.get(6)).ok()
        );
        let disdate = check!(
            rej,
            r,
            cols[7],
            "unparsable date",
            v::opt_date(r.get(7)).ok()
        );
        if disdate.is_some_and(|d| d < admidate) || epiend.is_some_and(|e| e < epistart) {
            rej.add(r.line, cols[7], "ends before it starts");
            return Ok(());
        }
        let admimeth = check!(
            rej,
            r,
            cols[8],
            "unknown admission method",
            v::admimeth(r.get(8)).then(|| r.get(8))
        );
        let admisorc = check!(
            rej,
            r,
            cols[9],
            "malformed code",
            v::alnum(r.get(9), 1, 2).then(|| r.get(9))
        );
        let dismeth = check!(
            rej,
            r,
            cols[10],
            "malformed code",
            v::alnum(r.get(10), 1, 2).then(|| r.get(10))
        );
        let procode = check!(
            rej,
            r,
            cols[11],
            "malformed provider code",
            v::alnum(r.get(11), 3, 3).then(|| r.get(11))
        );
        let gpprac = check!(
            rej,
            r,
            cols[12],
            "malformed practice code",
            v::practice_code(r.get(12)).then(|| r.get(12))
        );
        let age = check!(rej, r, cols[13], "not an age", v::age(r.get(13)));
        let sex = check!(
            rej,
            r,
            cols[14],
            "not one of F, M, I, U",
            v::sex(r.get(14)).then(|| r.get(14))
        );
        let lsoa = v::postcode_key(r.get(15))
            .and_then(|k| ctx.postcodes.get(&k))
            .map(|&i| ctx.lsoas[i as usize].0.as_str());
        let diag = check!(
            rej,
            r,
            cols[16],
            "malformed ICD-10 code",
            v::icd10(r.get(16)).then(|| r.get(16))
        );
        let diags = check!(
            rej,
            r,
            cols[17],
            "malformed ICD-10 list",
            v::icd10_list(r.get(17)).then(|| r.get(17))
        );
        let op = r.get(18);
        let op = check!(
            rej,
            r,
            cols[18],
            "malformed OPCS-4 code",
            if op.is_empty() {
                Some(None)
            } else {
                v::opcs4(op).then_some(Some(op))
            }
        );
        let ops = r.get(19);
        let ops = check!(
            rej,
            r,
            cols[19],
            "malformed OPCS-4 list",
            if ops.is_empty() {
                Some(None)
            } else {
                v::opcs4_list(ops).then_some(Some(ops))
            }
        );
        let Some(nhs) = nhs_numbers.of(r, rej) else {
            return Ok(());
        };
        // The NHS number and a placeholder key until `resolve_hes` replaces them.
        rows.i64(0, nhs as i64);
        rows.i64(1, ctx.pseudo.record_id("epikey", epikey));
        rows.i64(2, ctx.pseudo.record_id("spell_id", spell));
        rows.i16(3, order);
        rows.date(4, admidate);
        rows.date(5, epistart);
        rows.opt_date(6, epiend);
        rows.opt_date(7, disdate);
        rows.code(8, admimeth);
        rows.code(9, admisorc);
        rows.code(10, dismeth);
        rows.code(11, procode);
        rows.code(12, gpprac);
        rows.i16(13, age);
        rows.code(14, sex);
        rows.opt_str(15, lsoa);
        rows.code(16, diag);
        rows.code(17, diags);
        rows.opt_code(18, op);
        rows.opt_code(19, ops);
        rows.u8(20, 0);
        rows.end_row()
    })?;
    resolve_hes(ctx, &mut out, &mut rows)?;
    finish(&mut out, read, rows, &catalog::HES_APC);
    Ok(out)
}

/// `hes_op.csv` → `hes_op`.
pub fn hes_op(
    ctx: Await<'_>,
    pseudo: &Pseudonymiser,
    ex: &mut Extract,
    progress: impl FnMut(u64),
) -> Result<Processed> {
    let cols = catalog::raw_columns("hes_op.csv");
    let mut out = Processed::new("hes_op.csv");
    let mut rows = Rows::new(&catalog::HES_OP);
    rows.reserve(ex.estimated_records());
    let rej = &mut out.rejects;
    let mut nhs_numbers = NhsNumbers::default();
    let read = ex.for_each(progress, |r| {
        let key = check!(
            rej,
            r,
            cols[1],
            "not a positive integer",
            v::record_id(r.get(1))
        );
        let date = check!(rej, r, cols[2], "unparsable date", v::date(r.get(2)));
        let attended = check!(
            rej,
            r,
            cols[3],
            "unknown attendance code",
            matches!(r.get(3), b"0" | b"2" | b"3" | b"4" | b"5" | b"6" | b"7").then(|| r.get(3))
        );
        let firstatt = check!(
            rej,
            r,
            cols[4],
            "unknown first-attendance code",
            v::alnum(r.get(4), 1, 1).then(|| r.get(4))
        );
        let tretspef = check!(
            rej,
            r,
            cols[5],
            "malformed specialty code",
            v::alnum(r.get(5), 3, 3).then(|| r.get(5))
        );
        let procode = check!(
            rej,
            r,
            cols[6],
            "malformed provider code",
            v::alnum(r.get(6), 3, 3).then(|| r.get(6))
        );
        let gpprac = check!(
            rej,
            r,
            cols[7],
            "malformed practice code",
            v::practice_code(r.get(7)).then(|| r.get(7))
        );
        let age = check!(rej, r, cols[8], "not an age", v::age(r.get(8)));
        let Some(nhs) = nhs_numbers.of(r, rej) else {
            return Ok(());
        };
        // The NHS number and a placeholder key until `resolve_hes` replaces them.
        rows.i64(0, nhs as i64);
        rows.i64(1, pseudo.record_id("attendkey", key));
        rows.date(2, date);
        rows.code(3, attended);
        rows.code(4, firstatt);
        rows.code(5, tretspef);
        rows.code(6, procode);
        rows.code(7, gpprac);
        rows.i16(8, age);
        rows.u8(9, 0);
        rows.end_row()
    })?;
    resolve_hes(ctx()?, &mut out, &mut rows)?;
    finish(&mut out, read, rows, &catalog::HES_OP);
    Ok(out)
}

/// `hes_ae.csv` → `hes_ae`.
pub fn hes_ae(
    ctx: Await<'_>,
    pseudo: &Pseudonymiser,
    ex: &mut Extract,
    progress: impl FnMut(u64),
) -> Result<Processed> {
    let cols = catalog::raw_columns("hes_ae.csv");
    let mut out = Processed::new("hes_ae.csv");
    let mut rows = Rows::new(&catalog::HES_AE);
    rows.reserve(ex.estimated_records());
    let rej = &mut out.rejects;
    let mut nhs_numbers = NhsNumbers::default();
    let read = ex.for_each(progress, |r| {
        let key = check!(
            rej,
            r,
            cols[1],
            "not a positive integer",
            v::record_id(r.get(1))
        );
        let date = check!(rej, r, cols[2], "unparsable date", v::date(r.get(2)));
        let mode = check!(
            rej,
            r,
            cols[3],
            "malformed arrival mode",
            v::alnum(r.get(3), 1, 2).then(|| r.get(3))
        );
        let disp = check!(
            rej,
            r,
            cols[4],
            "malformed disposal code",
            v::alnum(r.get(4), 2, 2).then(|| r.get(4))
        );
        let procode = check!(
            rej,
            r,
            cols[5],
            "malformed provider code",
            v::alnum(r.get(5), 3, 3).then(|| r.get(5))
        );
        let gpprac = check!(
            rej,
            r,
            cols[6],
            "malformed practice code",
            v::practice_code(r.get(6)).then(|| r.get(6))
        );
        let age = check!(rej, r, cols[7], "not an age", v::age(r.get(7)));
        let Some(nhs) = nhs_numbers.of(r, rej) else {
            return Ok(());
        };
        // The NHS number and a placeholder key until `resolve_hes` replaces them.
        rows.i64(0, nhs as i64);
        rows.i64(1, pseudo.record_id("aekey", key));
        rows.date(2, date);
        rows.code(3, mode);
        rows.code(4, disp);
        rows.code(5, procode);
        rows.code(6, gpprac);
        rows.i16(7, age);
        rows.u8(8, 0);
        rows.end_row()
    })?;
    resolve_hes(ctx()?, &mut out, &mut rows)?;
    finish(&mut out, read, rows, &catalog::HES_AE);
    Ok(out)
}

/// `ndoo.csv` → the governance table `national_opt_out` (latest `as_of` per person wins).
pub fn ndoo(ctx: Await<'_>, ex: &mut Extract, progress: impl FnMut(u64)) -> Result<Processed> {
    let cols = catalog::raw_columns("ndoo.csv");
    let mut out = Processed::new("ndoo.csv");
    let mut latest: HashMap<u64, (i32, bool)> = HashMap::default();
    let rej = &mut out.rejects;
    let read = ex.for_each(progress, |r| {
        let nhs = check!(
            rej,
            r,
            cols[0],
            "invalid NHS number",
            v::nhs_number(r.get(0))
        );
        let opted = check!(rej, r, cols[1], "not true or false", v::boolean(r.get(1)));
        let as_of = check!(rej, r, cols[2], "unparsable date", v::date(r.get(2)));
        let e = latest.entry(nhs).or_insert((as_of, opted));
        // Latest status wins; on the same date an opt-out wins (fail closed).
        if as_of > e.0 || (as_of == e.0 && opted) {
            *e = (as_of, opted);
        }
        Ok(())
    })?;
    let mut people: Vec<(u64, (i32, bool))> = latest.into_iter().collect();
    people.sort_unstable_by_key(|(n, _)| *n);
    let ctx = ctx()?;
    let mut rows = Rows::new(&catalog::NATIONAL_OPT_OUT);
    for (nhs, (as_of, opted)) in people {
        rows.i64(0, ctx.person(nhs)?.id);
        rows.boolean(1, opted);
        rows.date(2, as_of);
        rows.end_row()?;
    }
    out.counts.read = read;
    out.counts.rejected = out.rejects.count;
    out.counts.accepted = read - out.rejects.count;
    out.tables.push((&catalog::NATIONAL_OPT_OUT, rows));
    Ok(out)
}

fn finish(out: &mut Processed, read: u64, rows: Rows, def: &'static catalog::TableDef) {
    out.counts.read = read;
    out.counts.rejected = out.rejects.count;
    out.counts.accepted = rows.len() as u64;
    out.tables.push((def, rows));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_of_rows_survive_gaps_and_multi_line_records() {
        // Lines 2, 3, 4, then a rejected line 5, 6, a record on lines 7-8, then 9, 10.
        let pushed = [2u64, 3, 4, 6, 7, 9, 10];
        let mut lines = Lines::default();
        for &l in &pushed {
            lines.push(l);
        }
        assert_eq!(
            lines.runs.len(),
            3,
            "one run per stretch of consecutive lines"
        );
        for (row, &l) in pushed.iter().enumerate() {
            assert_eq!(lines.of(row), l, "row {row}");
        }
    }

    #[test]
    fn nhs_numbers_are_checked_per_run_of_records() {
        // Valid (9434765919), the same again, an invalid check digit, the valid one again,
        // another valid one (4010232137), and a number too short.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.csv");
        let mut f = std::fs::File::create(&path).expect("create");
        writeln!(
            f,
            "nhs_number\n9434765919\n9434765919\n9434765918\n9434765919\n4010232137\n943476591"
        )
        .expect("write");
        drop(f);
        let mut ex = Extract::open(&path, &["nhs_number"]).expect("open");
        let mut rej = Rejects::default();
        let mut nhs = NhsNumbers::default();
        let mut got = Vec::new();
        ex.for_each(
            |_| {},
            |r| {
                got.push(nhs.of(r, &mut rej));
                Ok(())
            },
        )
        .expect("read");
        assert_eq!(
            got,
            [
                Some(9434765919),
                Some(9434765919),
                None,
                Some(9434765919),
                Some(4010232137),
                None
            ]
        );
        assert_eq!(rej.count, 2);
        assert_eq!(rej.details.iter().map(|d| d.0).collect::<Vec<_>>(), [4, 7]);
    }
}
