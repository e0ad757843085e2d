//! Row records of one chunk and their CSV formatting, including the deliberately bad rows.

use rand::Rng;

use super::nhs::wrong_check;
use super::reference::Reference;
use super::util::{fmt_date, fmt_u64, index, unif};

/// Share of data rows deliberately malformed in the person-level tables.
const BAD_SHARE: f64 = 0.0005;

/// A CSV writer into memory that counts records.
pub struct Csv {
    w: csv::Writer<Vec<u8>>,
    rows: u64,
}

impl Csv {
    /// An empty buffer with a capacity hint in bytes.
    pub fn new(capacity: usize) -> Self {
        let w = csv::WriterBuilder::new()
            .has_headers(false)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::with_capacity(capacity));
        Csv { w, rows: 0 }
    }

    /// A text field (quoted by the writer only when it contains a comma or quote).
    pub fn field(&mut self, f: &[u8]) -> csv::Result<()> {
        self.w.write_field(f)
    }

    /// An unsigned integer field.
    pub fn num(&mut self, n: u64) -> csv::Result<()> {
        let mut buf = [0u8; 20];
        self.w.write_field(fmt_u64(n, &mut buf))
    }

    /// A `YYYY-MM-DD` field.
    pub fn date(&mut self, d: i32) -> csv::Result<()> {
        self.w.write_field(fmt_date(d))
    }

    /// A date or an empty field.
    pub fn opt_date(&mut self, d: Option<i32>) -> csv::Result<()> {
        match d {
            Some(d) => self.date(d),
            None => self.w.write_field(b""),
        }
    }

    /// Ends the current record.
    pub fn end(&mut self) -> csv::Result<()> {
        self.w.write_record(std::iter::empty::<&[u8]>())?;
        self.rows += 1;
        Ok(())
    }

    /// The bytes written and the number of records.
    pub fn finish(self) -> csv::Result<(Vec<u8>, u64)> {
        let rows = self.rows;
        let bytes = self
            .w
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        Ok((bytes, rows))
    }
}

/// A GP registration row.
pub struct PatRow {
    pub nhs: u64,
    pub dob: i32,
    pub sex: u8,
    pub eth: u8,
    pub postcode: u32,
    pub practice: u32,
    pub start: i32,
    pub end: Option<i32>,
    pub death: Option<i32>,
    /// The person has another registration row (a bad copy of this one leaves them listed).
    pub multi: bool,
}

/// An optional numeric value.
#[derive(Clone, Copy)]
pub enum Num {
    None,
    Int(u32),
    /// Tenths: 273 → `27.3`.
    Tenth(u32),
}

/// A GP coded event.
pub struct EventRow {
    pub nhs: u64,
    pub date: i32,
    pub code: &'static str,
    pub value: Num,
}

/// A GP prescription issue (`drug` indexes [`DRUGS`]).
pub struct MedRow {
    pub nhs: u64,
    pub date: i32,
    pub drug: u8,
}

/// A Type 1 objection code.
pub struct ObjRow {
    pub nhs: u64,
    pub date: i32,
    pub code: &'static str,
}

/// A HES admitted-patient-care episode.
pub struct ApcRow {
    pub nhs: u64,
    pub epikey: u64,
    pub spell: u64,
    pub epiorder: u8,
    pub admidate: i32,
    pub epistart: i32,
    pub epiend: i32,
    pub disdate: i32,
    pub admimeth: &'static str,
    pub admisorc: &'static str,
    pub dismeth: &'static str,
    pub trust: u16,
    pub practice: u32,
    pub age: u16,
    pub sex: u8,
    pub postcode: u32,
    pub diags: [&'static str; 5],
    pub ndiag: u8,
    pub ops: [&'static str; 3],
    pub nops: u8,
}

/// A HES outpatient appointment.
pub struct OpRow {
    pub nhs: u64,
    pub key: u64,
    pub date: i32,
    pub attended: u8,
    pub firstatt: u8,
    pub tretspef: &'static str,
    pub trust: u16,
    pub practice: u32,
    pub age: u16,
}

/// A HES A&E attendance.
pub struct AeRow {
    pub nhs: u64,
    pub key: u64,
    pub date: i32,
    pub mode: u8,
    pub disp: &'static str,
    pub trust: u16,
    pub practice: u32,
    pub age: u16,
}

/// A national data opt-out status.
pub struct NdooRow {
    pub nhs: u64,
    pub opted: bool,
}

/// All rows of one chunk, in output order.
#[derive(Default)]
pub struct Tables {
    pub pats: Vec<PatRow>,
    pub events: Vec<EventRow>,
    pub meds: Vec<MedRow>,
    pub objs: Vec<ObjRow>,
    pub apc: Vec<ApcRow>,
    pub op: Vec<OpRow>,
    pub ae: Vec<AeRow>,
    pub ndoo: Vec<NdooRow>,
}

/// Medicines: (BNF chemical-substance code, dm+d code of the product issued).
pub const DRUGS: &[(&str, &str)] = &[
    ("0601022B0", "325278007"), // metformin 500mg tablets
    ("0301011R0", "320151006"), // salbutamol 100micrograms/dose inhaler
    ("0205051R0", "318900003"), // ramipril 5mg capsules
    ("0206020A0", "319283006"), // amlodipine 5mg tablets
    ("0212000B0", "320000009"), // atorvastatin 20mg tablets
    ("0501013B0", "323509004"), // amoxicillin 500mg capsules
    ("0501013K0", "323539009"), // co-amoxiclav 500mg/125mg tablets
    ("0501030I0", "324357007"), // doxycycline 100mg capsules
    ("0501050B0", "324153009"), // clarithromycin 500mg tablets
    ("0501130R0", "324457006"), // nitrofurantoin 100mg modified-release capsules
    ("0501080W0", "324430000"), // trimethoprim 200mg tablets
    ("0501090K0", "324659001"), // isoniazid 100mg tablets (BNF 5.1.9)
    ("0501100D0", "324701008"), // dapsone 50mg tablets (BNF 5.1.10)
];

/// Indices into [`DRUGS`].
pub mod drug {
    pub const METFORMIN: u8 = 0;
    pub const SALBUTAMOL: u8 = 1;
    pub const RAMIPRIL: u8 = 2;
    pub const AMLODIPINE: u8 = 3;
    pub const ATORVASTATIN: u8 = 4;
    pub const AMOXICILLIN: u8 = 5;
    pub const CO_AMOXICLAV: u8 = 6;
    pub const DOXYCYCLINE: u8 = 7;
    pub const CLARITHROMYCIN: u8 = 8;
    pub const NITROFURANTOIN: u8 = 9;
    pub const TRIMETHOPRIM: u8 = 10;
    pub const ISONIAZID: u8 = 11;
    pub const DAPSONE: u8 = 12;
}

/// Positions (ascending) of the rows to corrupt among a chunk's `n`: none below 1,000 rows
/// (so small extracts stay well under 1 % rejects), otherwise about [`BAD_SHARE`] of them and
/// at least one, drawn from `candidates` when given and non-empty.
fn bad_positions(rng: &mut impl Rng, n: usize, candidates: Option<&[usize]>) -> Vec<usize> {
    if n < 1000 {
        return Vec::new();
    }
    let expected = n as f64 * BAD_SHARE;
    let k = (expected.floor() as usize + usize::from(unif(rng) < expected.fract())).max(1);
    let pool: Vec<usize> = match candidates {
        Some(c) if !c.is_empty() => c.to_vec(),
        _ => (0..n).collect(),
    };
    let k = k.min(pool.len());
    let mut out: Vec<usize> = rand::seq::index::sample(rng, pool.len(), k)
        .into_iter()
        .map(|i| pool[i])
        .collect();
    out.sort_unstable();
    out
}

/// Walks the bad positions of one table in row order.
struct Bad {
    positions: Vec<usize>,
    next: usize,
}

impl Bad {
    fn new(positions: Vec<usize>) -> Self {
        Bad { positions, next: 0 }
    }

    /// Whether row `i` (visited in ascending order) is to be corrupted.
    fn hit(&mut self, i: usize) -> bool {
        if self.positions.get(self.next) == Some(&i) {
            self.next += 1;
            true
        } else {
            false
        }
    }
}

const BAD_DATES: [&[u8]; 2] = [b"2021-13-45", b"31/02/2020"];

/// Writes an NHS number, or one with a wrong check digit.
fn nhs_field(w: &mut Csv, nhs: u64, wrong: bool, salt: u64) -> csv::Result<()> {
    w.num(if wrong { wrong_check(nhs, salt) } else { nhs })
}

/// Writes a date, or an unparsable one.
fn date_field(w: &mut Csv, d: i32, bad: bool) -> csv::Result<()> {
    if bad {
        w.field(BAD_DATES[(d & 1) as usize])
    } else {
        w.date(d)
    }
}

/// Formats a chunk's tables: (bytes, rows) for gp_patients … ndoo, in file order.
pub fn format(t: &Tables, r: &Reference, rng: &mut impl Rng) -> csv::Result<[(Vec<u8>, u64); 8]> {
    let mut scratch = Vec::with_capacity(64);

    // gp_patients: corrupt only people who have another, intact registration row.
    let multi: Vec<usize> = (0..t.pats.len()).filter(|&i| t.pats[i].multi).collect();
    let mut bad = Bad::new(bad_positions(rng, t.pats.len(), Some(&multi)));
    let mut w = Csv::new(t.pats.len() * 90);
    for (i, p) in t.pats.iter().enumerate() {
        let kind = if bad.hit(i) { 1 + index(rng, 3) } else { 0 };
        nhs_field(&mut w, p.nhs, kind == 1, p.dob as u64)?;
        date_field(&mut w, p.dob, kind == 2)?;
        if kind == 3 {
            w.field(b"Q")?;
        } else {
            w.field(&[p.sex])?;
        }
        w.field(&[p.eth])?;
        w.field(r.postcodes[p.postcode as usize].as_bytes())?;
        w.field(r.practices[p.practice as usize].code.as_bytes())?;
        w.date(p.start)?;
        w.opt_date(p.end)?;
        w.opt_date(p.death)?;
        w.end()?;
    }
    let pats = w.finish()?;

    let mut bad = Bad::new(bad_positions(rng, t.events.len(), None));
    let mut w = Csv::new(t.events.len() * 42);
    for (i, e) in t.events.iter().enumerate() {
        let kind = if bad.hit(i) { 1 + index(rng, 3) } else { 0 };
        nhs_field(&mut w, e.nhs, kind == 1, e.date as u64)?;
        date_field(&mut w, e.date, kind == 2)?;
        if kind == 3 {
            scratch.clear();
            scratch.extend_from_slice(e.code.as_bytes());
            let mid = scratch.len() / 2;
            scratch[mid] = b'O';
            w.field(&scratch)?;
        } else {
            w.field(e.code.as_bytes())?;
        }
        match e.value {
            Num::None => w.field(b"")?,
            Num::Int(v) => w.num(u64::from(v))?,
            Num::Tenth(v) => {
                scratch.clear();
                let mut buf = [0u8; 20];
                scratch.extend_from_slice(fmt_u64(u64::from(v / 10), &mut buf));
                scratch.push(b'.');
                scratch.push(b'0' + (v % 10) as u8);
                w.field(&scratch)?;
            }
        }
        w.end()?;
    }
    let events = w.finish()?;

    let mut bad = Bad::new(bad_positions(rng, t.meds.len(), None));
    let mut w = Csv::new(t.meds.len() * 42);
    for (i, m) in t.meds.iter().enumerate() {
        let kind = if bad.hit(i) { 1 + index(rng, 3) } else { 0 };
        let (bnf, dmd) = DRUGS[m.drug as usize];
        nhs_field(&mut w, m.nhs, kind == 1, m.date as u64)?;
        date_field(&mut w, m.date, kind == 2)?;
        w.field(dmd.as_bytes())?;
        w.field(if kind == 3 { b"XYZ" } else { bnf.as_bytes() })?;
        w.end()?;
    }
    let meds = w.finish()?;

    let mut w = Csv::new(t.objs.len() * 44);
    for o in &t.objs {
        w.num(o.nhs)?;
        w.date(o.date)?;
        w.field(o.code.as_bytes())?;
        w.end()?;
    }
    let objs = w.finish()?;

    let mut bad = Bad::new(bad_positions(rng, t.apc.len(), None));
    let mut w = Csv::new(t.apc.len() * 150);
    for (i, a) in t.apc.iter().enumerate() {
        let kind = if bad.hit(i) { 1 + index(rng, 3) } else { 0 };
        nhs_field(&mut w, a.nhs, kind == 1, a.epikey)?;
        w.num(a.epikey)?;
        w.num(a.spell)?;
        w.num(u64::from(a.epiorder))?;
        date_field(&mut w, a.admidate, kind == 2)?;
        w.date(a.epistart)?;
        w.date(a.epiend)?;
        w.date(a.disdate)?;
        w.field(a.admimeth.as_bytes())?;
        w.field(a.admisorc.as_bytes())?;
        w.field(a.dismeth.as_bytes())?;
        w.field(r.trusts[a.trust as usize].0.as_bytes())?;
        w.field(r.practices[a.practice as usize].code.as_bytes())?;
        w.num(u64::from(a.age))?;
        w.field(&[a.sex])?;
        w.field(r.postcodes[a.postcode as usize].as_bytes())?;
        let diags = &a.diags[..a.ndiag as usize];
        if kind == 3 {
            scratch.clear();
            scratch.extend_from_slice(&diags[0].as_bytes()[..3]);
            scratch.push(b'.');
            scratch.push(diags[0].as_bytes()[3]);
            w.field(&scratch)?;
        } else {
            w.field(diags[0].as_bytes())?;
        }
        join(&mut scratch, diags);
        w.field(&scratch)?;
        let ops = &a.ops[..a.nops as usize];
        w.field(ops.first().map_or(&b""[..], |o| o.as_bytes()))?;
        join(&mut scratch, ops);
        w.field(&scratch)?;
        w.end()?;
    }
    let apc = w.finish()?;

    let mut bad = Bad::new(bad_positions(rng, t.op.len(), None));
    let mut w = Csv::new(t.op.len() * 60);
    for (i, o) in t.op.iter().enumerate() {
        let kind = if bad.hit(i) { 1 + index(rng, 2) } else { 0 };
        nhs_field(&mut w, o.nhs, kind == 1, o.key)?;
        w.num(o.key)?;
        date_field(&mut w, o.date, kind == 2)?;
        w.field(&[o.attended])?;
        w.field(&[o.firstatt])?;
        w.field(o.tretspef.as_bytes())?;
        w.field(r.trusts[o.trust as usize].0.as_bytes())?;
        w.field(r.practices[o.practice as usize].code.as_bytes())?;
        w.num(u64::from(o.age))?;
        w.end()?;
    }
    let op = w.finish()?;

    let mut bad = Bad::new(bad_positions(rng, t.ae.len(), None));
    let mut w = Csv::new(t.ae.len() * 56);
    for (i, e) in t.ae.iter().enumerate() {
        let kind = if bad.hit(i) { 1 + index(rng, 2) } else { 0 };
        nhs_field(&mut w, e.nhs, kind == 1, e.key)?;
        w.num(e.key)?;
        date_field(&mut w, e.date, kind == 2)?;
        w.field(&[e.mode])?;
        w.field(e.disp.as_bytes())?;
        w.field(r.trusts[e.trust as usize].0.as_bytes())?;
        w.field(r.practices[e.practice as usize].code.as_bytes())?;
        w.num(u64::from(e.age))?;
        w.end()?;
    }
    let ae = w.finish()?;

    let mut w = Csv::new(t.ndoo.len() * 28);
    for n in &t.ndoo {
        w.num(n.nhs)?;
        w.field(if n.opted { b"true" } else { b"false" })?;
        w.field(b"2024-03-01")?;
        w.end()?;
    }
    let ndoo = w.finish()?;

    Ok([pats, events, meds, objs, apc, op, ae, ndoo])
}

/// Comma-joins codes into `out`.
fn join(out: &mut Vec<u8>, codes: &[&str]) {
    out.clear();
    for (i, c) in codes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(c.as_bytes());
    }
}
