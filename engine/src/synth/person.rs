//! One chunk of people: registrations, GP events and medications, objections, opt-outs and
//! hospital activity, all drawn from the chunk's own stream.

use rand_chacha::ChaCha8Rng;

use super::reference::Reference;
use super::rows::{
    AeRow, ApcRow, EventRow, MedRow, NdooRow, Num, ObjRow, OpRow, PatRow, Tables, drug,
};
use super::util::{
    age_years, between, chance, exponential, frailty, hes_age, index, normal, poisson_days, stream,
    unif, weighted, ymd,
};
use super::{CHUNK, TYPE1_DISSENT, TYPE1_WITHDRAWN};

/// Last day of every extract.
const END: i32 = ymd(2024, 3, 31);
/// First day of GP events and medications (diagnoses may be older).
const GP_START: i32 = ymd(2015, 1, 1);
/// Oldest recorded diagnosis.
const DIAG_MIN: i32 = ymd(1990, 1, 1);
/// First day of HES.
const HES_START: i32 = ymd(2021, 4, 1);
/// First Type 1 objection date.
const TYPE1_START: i32 = ymd(2014, 1, 1);
const YEAR: f64 = 365.25;

/// HES-only people per GP patient (people in HES but not in the GP list).
const HES_ONLY_RATE: f64 = 0.008;
/// Room per chunk for HES-only person indices.
pub const HES_ONLY_STRIDE: u64 = 64;
/// Room per chunk for each kind of HES record id.
const ID_STRIDE: u64 = 1_000_000;

// SNOMED CT concepts.
const T2DM: &str = "44054006";
const ASTHMA: &str = "195967001";
const HYPERTENSION: &str = "38341003";
const COPD: &str = "13645005";
const HEART_FAILURE: &str = "84114007";
const HBA1C: &str = "1049301000000100";
const BMI: &str = "60621009";
const SMOKER: &str = "77176002";
const EX_SMOKER: &str = "8517006";
const NEVER_SMOKED: &str = "266919005";
const SYSTOLIC_BP: &str = "271649006";
const ASTHMA_REVIEW: &str = "270442000";
const URTI: &str = "54150009";
const UTI: &str = "68566005";
const OTITIS_MEDIA: &str = "65363002";
const BACK_PAIN: &str = "279039007";
const DEPRESSION: &str = "35489007";
const ANXIETY: &str = "197480006";
const ECZEMA: &str = "43116000";

/// Shared inputs of every chunk.
pub struct Ctx<'a> {
    /// The reference world.
    pub reference: &'a Reference,
    /// The run's seed.
    pub seed: u64,
    /// Number of GP patients.
    pub patients: u64,
}

/// A chunk's formatted tables: (bytes, rows) for gp_patients … ndoo.
pub struct ChunkOut {
    /// In [`super::EXTRACT_FILES`] order from `gp_patients.csv`.
    pub tables: [(Vec<u8>, u64); 8],
}

/// Generates and formats chunk `c`.
pub fn chunk(ctx: &Ctx<'_>, c: u64) -> Result<ChunkOut, csv::Error> {
    let lo = c * CHUNK;
    let hi = (lo + CHUNK).min(ctx.patients);
    let mut g = Gen {
        r: ctx.reference,
        rng: stream(ctx.seed, "chunk", c),
        t: Tables::default(),
        ids: [
            300_000_000_000 + c * ID_STRIDE,
            500_000_000_000 + c * ID_STRIDE,
            700_000_000_000 + c * ID_STRIDE,
            900_000_000_000 + c * ID_STRIDE,
        ],
        days: Vec::new(),
        events: Vec::new(),
        meds: Vec::new(),
        cands: Vec::new(),
        op: Vec::new(),
        ae: Vec::new(),
    };
    for p in lo..hi {
        g.gp_person(p);
    }
    let expected = (hi - lo) as f64 * HES_ONLY_RATE;
    let n_hes_only = (expected.floor() as u64 + u64::from(chance(&mut g.rng, expected.fract())))
        .min(HES_ONLY_STRIDE);
    for j in 0..n_hes_only {
        g.hes_only_person(ctx.patients + c * HES_ONLY_STRIDE + j);
    }
    let mut bad_rng = stream(ctx.seed, "bad-rows", c);
    let tables = super::rows::format(&g.t, g.r, &mut bad_rng)?;
    Ok(ChunkOut { tables })
}

/// A registration period.
#[derive(Clone, Copy)]
struct Reg {
    practice: u32,
    postcode: u32,
    start: i32,
    end: Option<i32>,
}

/// Chronic conditions: recorded diagnosis dates.
#[derive(Default, Clone, Copy)]
struct Conds {
    dm: Option<i32>,
    asthma: Option<i32>,
    ht: Option<i32>,
    copd: Option<i32>,
    hf: Option<i32>,
}

impl Conds {
    fn count(&self) -> i32 {
        [self.dm, self.asthma, self.ht, self.copd, self.hf]
            .iter()
            .filter(|c| c.is_some())
            .count() as i32
    }

    /// Forgets conditions diagnosed after `day`.
    fn until(&mut self, day: i32) {
        for c in [
            &mut self.dm,
            &mut self.asthma,
            &mut self.ht,
            &mut self.copd,
            &mut self.hf,
        ] {
            if c.is_some_and(|d| d > day) {
                *c = None;
            }
        }
    }
}

/// Smoking history of an adult.
#[derive(Clone, Copy)]
struct Smoking {
    /// 0 never, 1 ex, 2 current.
    status: u8,
    quit: Option<i32>,
}

impl Smoking {
    fn code_at(&self, day: i32) -> &'static str {
        match (self.status, self.quit) {
            (2, Some(q)) if day >= q => EX_SMOKER,
            (2, _) => SMOKER,
            (1, _) => EX_SMOKER,
            _ => NEVER_SMOKED,
        }
    }
}

/// A person as the generator sees them.
struct Person {
    nhs: u64,
    dob: i32,
    sex: u8,
    death: Option<i32>,
    regs: Vec<Reg>,
    frail: f64,
    conds: Conds,
    smoking: Smoking,
}

impl Person {
    fn obs_end(&self) -> i32 {
        self.death.unwrap_or(END).min(END)
    }

    /// The registration in force on `day` (the first one before any registration).
    fn reg_at(&self, day: i32) -> Reg {
        let mut reg = self.regs[0];
        for r in &self.regs {
            if r.start <= day {
                reg = *r;
            }
        }
        reg
    }

    fn age_at(&self, day: i32) -> i32 {
        age_years(self.dob, day)
    }

    fn female(&self) -> bool {
        self.sex == b'F'
    }
}

/// Kinds of admission.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    General,
    Readmission,
    Birth,
    Maternity,
    DayCase,
    Terminal,
}

/// A hospital spell before it is cut into episodes.
struct Spell {
    adm: i32,
    dis: i32,
    admimeth: &'static str,
    admisorc: &'static str,
    dismeth: &'static str,
    diag: &'static str,
    extra: &'static str,
    op: Option<&'static str>,
    emergency: bool,
}

/// The chunk generator.
struct Gen<'a> {
    r: &'a Reference,
    rng: ChaCha8Rng,
    t: Tables,
    /// Next epikey, spell_id, attendkey, aekey.
    ids: [u64; 4],
    // Reused scratch buffers.
    days: Vec<i32>,
    events: Vec<(i32, &'static str, Num)>,
    meds: Vec<(i32, u8)>,
    cands: Vec<(i32, Kind)>,
    op: Vec<OpRow>,
    ae: Vec<AeRow>,
}

/// England age pyramid: (first age, last age, share %).
const AGE_BANDS: &[((i32, i32), f64)] = &[
    ((0, 4), 5.4),
    ((5, 9), 5.9),
    ((10, 14), 6.0),
    ((15, 19), 5.6),
    ((20, 24), 6.0),
    ((25, 29), 6.7),
    ((30, 34), 6.9),
    ((35, 39), 6.7),
    ((40, 44), 6.3),
    ((45, 49), 6.3),
    ((50, 54), 6.8),
    ((55, 59), 6.7),
    ((60, 64), 5.9),
    ((65, 69), 5.0),
    ((70, 74), 5.0),
    ((75, 79), 3.6),
    ((80, 84), 2.5),
    ((85, 89), 1.5),
    ((90, 94), 0.7),
    ((95, 99), 0.2),
    ((100, 100), 0.03),
];

/// NHS ethnic categories (A..S without I, O, Q; Z not stated) with England-like shares.
const ETHNICITY: &[(u8, f64)] = &[
    (b'A', 66.0),
    (b'B', 0.8),
    (b'C', 6.0),
    (b'D', 0.5),
    (b'E', 0.3),
    (b'F', 0.5),
    (b'G', 0.7),
    (b'H', 2.8),
    (b'J', 2.0),
    (b'K', 1.0),
    (b'L', 1.3),
    (b'M', 0.5),
    (b'N', 2.0),
    (b'P', 0.5),
    (b'R', 0.7),
    (b'S', 2.0),
    (b'Z', 10.0),
];

const SEXES: &[(u8, f64)] = &[(b'F', 0.4975), (b'M', 0.4975), (b'I', 0.002), (b'U', 0.003)];

impl Gen<'_> {
    fn next_id(&mut self, kind: usize) -> u64 {
        self.ids[kind] += 1;
        self.ids[kind]
    }

    fn draw_dob(&mut self) -> i32 {
        let band = weighted(&mut self.rng, AGE_BANDS);
        let age = between(&mut self.rng, band.0, band.1);
        END - (f64::from(age) * YEAR + unif(&mut self.rng) * 365.0) as i32
    }

    fn draw_smoking(&mut self, age: i32, dob: i32) -> Smoking {
        let rng = &mut self.rng;
        if age < 16 {
            return Smoking {
                status: 0,
                quit: None,
            };
        }
        let (cur, ex) = match age {
            16..=24 => (0.10, 0.05),
            25..=44 => (0.16, 0.15),
            45..=64 => (0.14, 0.28),
            _ => (0.08, 0.40),
        };
        let x = unif(rng);
        let status = if x < cur {
            2
        } else if x < cur + ex {
            1
        } else {
            0
        };
        let quit = (status == 2 && chance(rng, 0.2))
            .then(|| between(rng, GP_START.max(dob + (16.0 * YEAR) as i32), END));
        Smoking { status, quit }
    }

    /// A recorded diagnosis date for onset at an age between `min_age` and `age`.
    fn onset(&mut self, dob: i32, min_age: i32, age: i32) -> i32 {
        let rng = &mut self.rng;
        let a = between(rng, min_age.min(age), age);
        let day = (dob + (f64::from(a) * YEAR + unif(rng) * 365.0) as i32).min(END);
        if day < DIAG_MIN {
            (DIAG_MIN + between(rng, 0, 730)).clamp(dob, END)
        } else {
            day
        }
    }

    fn draw_conditions(&mut self, dob: i32, age: i32, smoking: Smoking) -> Conds {
        let mut c = Conds::default();
        let p_dm = match age {
            0..=17 => 0.0,
            18..=39 => 0.015,
            40..=59 => 0.07,
            60..=79 => 0.15,
            _ => 0.17,
        };
        if chance(&mut self.rng, p_dm) {
            c.dm = Some(self.onset(dob, 25.min(age), age));
        }
        let p_ht = match age {
            0..=17 => 0.0,
            18..=39 => 0.02,
            40..=59 => 0.15,
            60..=79 => 0.30,
            _ => 0.45,
        } * if c.dm.is_some() { 1.5 } else { 1.0 };
        if chance(&mut self.rng, p_ht) {
            c.ht = Some(self.onset(dob, 25.min(age), age));
        }
        let p_asthma = match age {
            0..=4 => 0.03,
            5..=17 => 0.10,
            _ => 0.08,
        };
        if chance(&mut self.rng, p_asthma) {
            let childhood = chance(&mut self.rng, 0.7);
            c.asthma = Some(if childhood {
                self.onset(dob, 2.min(age), age.min(17))
            } else {
                self.onset(dob, 0, age)
            });
        }
        let p_copd = match age {
            0..=39 => 0.0,
            40..=59 => 0.008,
            60..=79 => 0.035,
            _ => 0.05,
        } * match smoking.status {
            0 => 0.3,
            1 => 1.6,
            _ => 2.0,
        };
        if chance(&mut self.rng, p_copd) {
            c.copd = Some(self.onset(dob, 40, age));
        }
        let p_hf = match age {
            0..=49 => 0.0005,
            50..=64 => 0.005,
            65..=79 => 0.025,
            _ => 0.08,
        };
        if chance(&mut self.rng, p_hf) {
            c.hf = Some(self.onset(dob, 45.min(age), age));
        }
        c
    }

    fn gp_person(&mut self, index_: u64) {
        let nhs = self.r.nhs.number(index_);
        let dob = self.draw_dob();
        let sex = weighted(&mut self.rng, SEXES);
        let eth = weighted(&mut self.rng, ETHNICITY);
        let age = age_years(dob, END);
        let frail = frailty(&mut self.rng, 0.9);
        let smoking = self.draw_smoking(age, dob);
        let mut conds = self.draw_conditions(dob, age, smoking);

        let p_death = match age {
            0 => 0.003,
            1..=49 => 0.0012,
            50..=64 => 0.006,
            65..=74 => 0.017,
            75..=84 => 0.05,
            _ => 0.15,
        } * (1.0
            + 2.0 * f64::from(u8::from(conds.hf.is_some()))
            + 0.7 * f64::from(u8::from(conds.copd.is_some()))
            + 0.3 * f64::from(u8::from(conds.dm.is_some())));
        let death =
            chance(&mut self.rng, p_death).then(|| between(&mut self.rng, GP_START.max(dob), END));
        if let Some(d) = death {
            conds.until(d);
        }
        let last = death.unwrap_or(END);

        // Registrations: one, or (about 8 %) an ended one followed by the current one.
        let mut regs = Vec::with_capacity(2);
        if last - dob > 400 && chance(&mut self.rng, 0.085) {
            let s1 = (END - exponential(&mut self.rng, 16.0 * YEAR) as i32)
                .max(dob + between(&mut self.rng, 7, 42))
                .min(last - 200)
                .max(dob);
            let (move_lo, move_hi) = (s1 + 180, last - 7);
            if move_hi > move_lo {
                let moved = between(&mut self.rng, move_lo, move_hi);
                let end1 = (moved - between(&mut self.rng, 0, 10)).max(s1);
                let p1 = self.r.pick_practice(&mut self.rng);
                let mut p2 = p1;
                for _ in 0..8 {
                    if p2 != p1 {
                        break;
                    }
                    p2 = self.r.pick_practice(&mut self.rng);
                }
                if p2 == p1 {
                    p2 = (p1 + 1) % self.r.practices.len() as u32;
                }
                let pc1 = self.r.pick_postcode(&mut self.rng, p1);
                let pc2 = self.r.pick_postcode(&mut self.rng, p2);
                regs.push(Reg {
                    practice: p1,
                    postcode: pc1,
                    start: s1,
                    end: Some(end1),
                });
                regs.push(Reg {
                    practice: p2,
                    postcode: pc2,
                    start: moved,
                    end: death,
                });
            }
        }
        if regs.is_empty() {
            let start = (END - exponential(&mut self.rng, 12.0 * YEAR) as i32)
                .max(dob + between(&mut self.rng, 7, 42))
                .min(last)
                .max(dob);
            let practice = self.r.pick_practice(&mut self.rng);
            let postcode = self.r.pick_postcode(&mut self.rng, practice);
            regs.push(Reg {
                practice,
                postcode,
                start,
                end: death,
            });
        }
        let multi = regs.len() > 1;
        for reg in &regs {
            self.t.pats.push(PatRow {
                nhs,
                dob,
                sex,
                eth,
                postcode: reg.postcode,
                practice: reg.practice,
                start: reg.start,
                end: reg.end,
                death,
                multi,
            });
        }

        let person = Person {
            nhs,
            dob,
            sex,
            death,
            regs,
            frail,
            conds,
            smoking,
        };
        self.events.clear();
        self.gp_medications(&person);
        self.gp_events(&person);
        self.objections(&person);

        // National data opt-out: about 1 % unknown; Type 1 objectors opt out more often.
        if !chance(&mut self.rng, 0.01) {
            let dissenter = self.t.objs.last().is_some_and(|o| o.nhs == nhs);
            let p = if dissenter { 0.3 } else { 0.045 };
            let opted = chance(&mut self.rng, p);
            self.t.ndoo.push(NdooRow { nhs, opted });
        }

        self.hospital(&person);
    }

    fn hes_only_person(&mut self, index_: u64) {
        let nhs = self.r.nhs.number(index_);
        let dob = self.draw_dob();
        let sex = weighted(&mut self.rng, SEXES);
        let age = age_years(dob, END);
        let smoking = self.draw_smoking(age, dob);
        let conds = self.draw_conditions(dob, age, smoking);
        let practice = self.r.pick_practice(&mut self.rng);
        let postcode = self.r.pick_postcode(&mut self.rng, practice);
        let person = Person {
            nhs,
            dob,
            sex,
            death: None,
            regs: vec![Reg {
                practice,
                postcode,
                start: dob,
                end: None,
            }],
            frail: frailty(&mut self.rng, 0.9),
            conds,
            smoking,
        };
        let before = self.t.apc.len() + self.t.op.len() + self.t.ae.len();
        self.hospital(&person);
        if self.t.apc.len() + self.t.op.len() + self.t.ae.len() == before {
            // Everyone in this group was seen in hospital at least once: an A&E visit.
            let day = between(&mut self.rng, HES_START.max(dob), END);
            let reg = person.reg_at(day);
            let row = AeRow {
                nhs,
                key: self.next_id(3),
                date: day,
                mode: b'2',
                disp: "03",
                trust: self.r.pick_trust(&mut self.rng, reg.practice),
                practice: reg.practice,
                age: hes_age(dob, day),
            };
            self.t.ae.push(row);
        }
        if chance(&mut self.rng, 0.1) {
            let opted = chance(&mut self.rng, 0.05);
            self.t.ndoo.push(NdooRow { nhs, opted });
        }
    }

    // ----- GP events -------------------------------------------------------------------------

    fn gp_events(&mut self, p: &Person) {
        // `self.events` already holds the infections coded with antibiotic courses.
        let mut ev = std::mem::take(&mut self.events);
        let gs = GP_START.max(p.dob);
        let ge = p.obs_end();
        let adult_from = gs.max(p.dob + (18.0 * YEAR) as i32);
        let c = p.conds;
        let n_conds = c.count();

        // Person-level baselines for measurements.
        let age_end = p.age_at(ge);
        let bmi_base =
            (27.5 + 5.0 * normal(&mut self.rng) + if c.dm.is_some() { 3.0 } else { 0.0 })
                .clamp(16.0, 48.0);
        let sbp_base = 112.0
            + 0.45 * f64::from((age_end - 20).max(0))
            + 10.0 * normal(&mut self.rng)
            + if c.ht.is_some() { 12.0 } else { 0.0 };
        let a1c_base = if c.dm.is_some() {
            58.0 + 10.0 * normal(&mut self.rng)
        } else {
            36.0 + 3.0 * normal(&mut self.rng)
        };

        for (diag, code) in [
            (c.dm, T2DM),
            (c.asthma, ASTHMA),
            (c.ht, HYPERTENSION),
            (c.copd, COPD),
            (c.hf, HEART_FAILURE),
        ] {
            if let Some(d) = diag {
                ev.push((d, code, Num::None));
            }
        }

        // Routine measurements of adults.
        let routine = 1.0 + 0.6 * f64::from(n_conds.min(2));
        let mut days = std::mem::take(&mut self.days);
        days.clear();
        poisson_days(&mut self.rng, adult_from, ge, 0.22 * routine, &mut days);
        for &d in &days {
            let v = self.sbp(sbp_base);
            ev.push((d, SYSTOLIC_BP, v));
        }
        days.clear();
        poisson_days(&mut self.rng, adult_from, ge, 0.11 * routine, &mut days);
        for &d in &days {
            let v = self.bmi(bmi_base);
            ev.push((d, BMI, v));
        }
        days.clear();
        poisson_days(&mut self.rng, adult_from, ge, 0.09, &mut days);
        for &d in &days {
            ev.push((d, p.smoking.code_at(d), Num::None));
        }
        days.clear();
        let a1c_from = gs.max(p.dob + (40.0 * YEAR) as i32);
        poisson_days(&mut self.rng, a1c_from, ge, 0.07, &mut days);
        for &d in &days {
            if c.dm.is_none_or(|dm| d < dm) {
                let v = self.a1c(if c.dm.is_some() { 44.0 } else { a1c_base }, 3.0);
                ev.push((d, HBA1C, v));
            }
        }

        // Yearly reviews of chronic conditions.
        let reviews: [(Option<i32>, u8); 5] =
            [(c.dm, 0), (c.ht, 1), (c.asthma, 2), (c.copd, 3), (c.hf, 4)];
        for (diag, which) in reviews {
            let Some(d) = diag else { continue };
            days.clear();
            let mut t =
                (d + between(&mut self.rng, 60, 365)).max(gs + between(&mut self.rng, 0, 365));
            while t <= ge {
                days.push(t);
                t += between(&mut self.rng, 300, 430);
            }
            for &t in &days {
                match which {
                    0 => {
                        let v = self.a1c(a1c_base, 6.0);
                        ev.push((t, HBA1C, v));
                        let v = self.bmi(bmi_base);
                        ev.push((t, BMI, v));
                        let v = self.sbp(sbp_base);
                        ev.push((t, SYSTOLIC_BP, v));
                        let again = t + between(&mut self.rng, 150, 200);
                        if again <= ge && chance(&mut self.rng, 0.5) {
                            let v = self.a1c(a1c_base, 6.0);
                            ev.push((again, HBA1C, v));
                        }
                    }
                    1 => {
                        let v = self.sbp(sbp_base);
                        ev.push((t, SYSTOLIC_BP, v));
                        if chance(&mut self.rng, 0.4) {
                            let v = self.sbp(sbp_base);
                            ev.push((t, SYSTOLIC_BP, v));
                        }
                    }
                    2 => {
                        ev.push((t, ASTHMA_REVIEW, Num::None));
                        if p.age_at(t) >= 12 {
                            ev.push((t, p.smoking.code_at(t), Num::None));
                        }
                    }
                    3 => {
                        ev.push((t, p.smoking.code_at(t), Num::None));
                        let v = self.bmi(bmi_base);
                        ev.push((t, BMI, v));
                    }
                    _ => {
                        let v = self.sbp(sbp_base);
                        ev.push((t, SYSTOLIC_BP, v));
                        let v = self.bmi(bmi_base);
                        ev.push((t, BMI, v));
                    }
                }
            }
        }

        // Other presentations (infections are coded with antibiotic courses, see medications).
        days.clear();
        poisson_days(&mut self.rng, gs, ge, 0.16 * p.frail.powf(0.6), &mut days);
        for &d in &days {
            let age = p.age_at(d);
            let code = if age < 16 {
                weighted(
                    &mut self.rng,
                    &[(ECZEMA, 2.0), (OTITIS_MEDIA, 3.0), (URTI, 4.0)],
                )
            } else {
                weighted(
                    &mut self.rng,
                    &[
                        (BACK_PAIN, 3.0),
                        (DEPRESSION, 2.0),
                        (ANXIETY, 2.0),
                        (URTI, 2.0),
                        (UTI, if p.female() { 1.5 } else { 0.3 }),
                    ],
                )
            };
            ev.push((d, code, Num::None));
        }
        self.days = days;

        ev.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
        for &(date, code, value) in &ev {
            self.t.events.push(EventRow {
                nhs: p.nhs,
                date,
                code,
                value,
            });
        }
        ev.clear();
        self.events = ev;
    }

    fn sbp(&mut self, base: f64) -> Num {
        Num::Int(
            (base + 8.0 * normal(&mut self.rng))
                .clamp(85.0, 220.0)
                .round() as u32,
        )
    }

    fn bmi(&mut self, base: f64) -> Num {
        let v = (base + 0.8 * normal(&mut self.rng)).clamp(15.0, 50.0);
        Num::Tenth((v * 10.0).round() as u32)
    }

    fn a1c(&mut self, base: f64, sd: f64) -> Num {
        let (lo, hi) = if base >= 42.0 {
            (40.0, 110.0)
        } else {
            (28.0, 47.0)
        };
        Num::Int((base + sd * normal(&mut self.rng)).clamp(lo, hi).round() as u32)
    }

    // ----- GP medications --------------------------------------------------------------------

    fn gp_medications(&mut self, p: &Person) {
        let mut meds = std::mem::take(&mut self.meds);
        meds.clear();
        let gs = GP_START.max(p.dob);
        let ge = p.obs_end();
        let c = p.conds;
        let mut statin = false;

        if let Some(d) = c.dm {
            if chance(&mut self.rng, 0.6) {
                self.repeats(&mut meds, drug::METFORMIN, d, gs, ge);
            }
            if chance(&mut self.rng, 0.35) {
                statin = true;
                self.repeats(&mut meds, drug::ATORVASTATIN, d, gs, ge);
            }
        }
        let mut acei = false;
        if let Some(d) = c.ht {
            if chance(&mut self.rng, 0.22) {
                acei = true;
                self.repeats(&mut meds, drug::RAMIPRIL, d, gs, ge);
            }
            if chance(&mut self.rng, 0.18) {
                self.repeats(&mut meds, drug::AMLODIPINE, d, gs, ge);
            }
            if !statin && chance(&mut self.rng, 0.15) {
                self.repeats(&mut meds, drug::ATORVASTATIN, d, gs, ge);
            }
        }
        if let Some(d) = c.hf
            && !acei
            && chance(&mut self.rng, 0.7)
        {
            self.repeats(&mut meds, drug::RAMIPRIL, d, gs, ge);
        }
        let mut salbutamol = false;
        if let Some(d) = c.copd
            && chance(&mut self.rng, 0.85)
        {
            salbutamol = true;
            self.repeats(&mut meds, drug::SALBUTAMOL, d, gs, ge);
        }
        if let Some(d) = c.asthma
            && !salbutamol
            && chance(&mut self.rng, 0.65)
        {
            // Reliever issued in bursts: some years have an active period.
            let mut y = gs.max(d);
            while y <= ge {
                if chance(&mut self.rng, 0.45) {
                    let from = y + between(&mut self.rng, 0, 200);
                    let to = (from + between(&mut self.rng, 60, 240)).min(ge);
                    self.issue_run(&mut meds, drug::SALBUTAMOL, from, to);
                }
                y += 365;
            }
        }

        // Acute antibiotic courses, each with the infection coded the same day half the time.
        let age_end = p.age_at(ge);
        let age_factor = match age_end {
            0..=4 => 1.6,
            5..=15 => 0.9,
            16..=64 => 0.9,
            _ => 1.4,
        } * if p.female() { 1.2 } else { 0.85 };
        let mut days = std::mem::take(&mut self.days);
        days.clear();
        poisson_days(
            &mut self.rng,
            gs,
            ge,
            0.42 * age_factor * p.frail.powf(0.6),
            &mut days,
        );
        for &d in &days {
            let age = p.age_at(d);
            let uti = age >= 16 && chance(&mut self.rng, if p.female() { 0.3 } else { 0.08 });
            let drug = if uti {
                weighted(
                    &mut self.rng,
                    &[
                        (drug::NITROFURANTOIN, 0.55),
                        (drug::TRIMETHOPRIM, 0.35),
                        (drug::CO_AMOXICLAV, 0.05),
                        (drug::AMOXICILLIN, 0.05),
                    ],
                )
            } else if age < 12 {
                weighted(
                    &mut self.rng,
                    &[
                        (drug::AMOXICILLIN, 0.8),
                        (drug::CLARITHROMYCIN, 0.1),
                        (drug::CO_AMOXICLAV, 0.1),
                    ],
                )
            } else if chance(&mut self.rng, 0.012) {
                weighted(
                    &mut self.rng,
                    &[(drug::ISONIAZID, 0.6), (drug::DAPSONE, 0.4)],
                )
            } else {
                weighted(
                    &mut self.rng,
                    &[
                        (drug::AMOXICILLIN, 0.55),
                        (drug::DOXYCYCLINE, 0.17),
                        (drug::CLARITHROMYCIN, 0.12),
                        (drug::CO_AMOXICLAV, 0.13),
                    ],
                )
            };
            meds.push((d, drug));
            if chance(&mut self.rng, 0.5) {
                let code = if uti {
                    UTI
                } else if age < 12 && chance(&mut self.rng, 0.4) {
                    OTITIS_MEDIA
                } else {
                    URTI
                };
                self.events.push((d, code, Num::None));
            }
        }
        self.days = days;

        meds.sort_unstable();
        for &(date, drug) in &meds {
            self.t.meds.push(MedRow {
                nhs: p.nhs,
                date,
                drug,
            });
        }
        self.meds = meds;
    }

    /// Repeat issues of `drug` from shortly after diagnosis `d` (within `gs..=ge`), sometimes
    /// stopped early.
    fn repeats(&mut self, meds: &mut Vec<(i32, u8)>, drug: u8, d: i32, gs: i32, ge: i32) {
        let start = (d + between(&mut self.rng, 0, 120)).max(gs);
        let stop = if chance(&mut self.rng, 0.25) {
            between(&mut self.rng, start, ge)
        } else {
            ge
        };
        self.issue_run(meds, drug, start, stop);
    }

    /// Issues every 28–56 days over `from..=to`.
    fn issue_run(&mut self, meds: &mut Vec<(i32, u8)>, drug: u8, from: i32, to: i32) {
        let mut t = from;
        while t <= to {
            meds.push((t, drug));
            let x = unif(&mut self.rng);
            t += if x < 0.1 {
                28
            } else if x < 0.8 {
                56
            } else {
                between(&mut self.rng, 29, 55)
            };
        }
    }

    // ----- Type 1 objections -----------------------------------------------------------------

    fn objections(&mut self, p: &Person) {
        if !chance(&mut self.rng, 0.031) {
            return;
        }
        let from = TYPE1_START.max(p.regs[0].start).max(p.dob);
        let to = p.obs_end();
        if to < from {
            return;
        }
        let d1 = between(&mut self.rng, from, to);
        self.t.objs.push(ObjRow {
            nhs: p.nhs,
            date: d1,
            code: TYPE1_DISSENT,
        });
        if d1 + 30 > to || !chance(&mut self.rng, 0.2) {
            return;
        }
        let d2 = between(&mut self.rng, d1 + 30, to);
        self.t.objs.push(ObjRow {
            nhs: p.nhs,
            date: d2,
            code: TYPE1_WITHDRAWN,
        });
        if d2 + 30 > to || !chance(&mut self.rng, 0.25) {
            return;
        }
        let d3 = between(&mut self.rng, d2 + 30, to);
        self.t.objs.push(ObjRow {
            nhs: p.nhs,
            date: d3,
            code: TYPE1_DISSENT,
        });
    }

    // ----- Hospital activity -----------------------------------------------------------------

    fn hospital(&mut self, p: &Person) {
        let hs = HES_START.max(p.dob);
        let he = p.obs_end();
        if he < hs {
            return;
        }
        let age = p.age_at(he);
        let n_conds = p.conds.count();
        let mut op = std::mem::take(&mut self.op);
        let mut ae = std::mem::take(&mut self.ae);
        op.clear();
        ae.clear();

        // --- admitted patient care ---
        let mut cands = std::mem::take(&mut self.cands);
        cands.clear();
        let mut regular_end = he;
        let mut terminal = None;
        if let Some(d) = p.death
            && d >= hs
            && chance(&mut self.rng, 0.5)
        {
            let short = between(&mut self.rng, 1, 5);
            let long = between(&mut self.rng, 6, 30);
            let los = weighted(&mut self.rng, &[(0, 0.1), (short, 0.5), (long, 0.4)]);
            let adm = (d - los).max(hs);
            terminal = Some(adm);
            regular_end = adm - 1;
        }
        if p.dob >= HES_START && chance(&mut self.rng, 0.95) {
            cands.push((p.dob, Kind::Birth));
        }
        if p.female() && (18..=45).contains(&p.age_at(hs)) {
            let mut days = std::mem::take(&mut self.days);
            days.clear();
            poisson_days(&mut self.rng, hs, regular_end, 0.05, &mut days);
            cands.extend(days.iter().map(|&d| (d, Kind::Maternity)));
            self.days = days;
        }
        if age >= 40 && chance(&mut self.rng, if age >= 60 { 0.009 } else { 0.004 }) {
            // A course of regular day-case treatment (chemotherapy).
            let mut t = between(&mut self.rng, hs, regular_end);
            for _ in 0..between(&mut self.rng, 4, 14) {
                if t > regular_end {
                    break;
                }
                cands.push((t, Kind::DayCase));
                t += between(&mut self.rng, 14, 28);
            }
        }
        let base = match age {
            0 => 0.35,
            1..=4 => 0.14,
            5..=17 => 0.06,
            18..=44 => 0.1,
            45..=64 => 0.2,
            65..=74 => 0.38,
            75..=84 => 0.63,
            _ => 0.92,
        };
        let rate = base * p.frail * 1.3f64.powi(n_conds);
        let mut days = std::mem::take(&mut self.days);
        days.clear();
        poisson_days(&mut self.rng, hs, regular_end, rate, &mut days);
        cands.extend(days.iter().map(|&d| (d, Kind::General)));
        self.days = days;
        cands.sort_unstable_by_key(|c| (c.0, c.1 as u8));

        let mut i = 0;
        let mut last_dis = i32::MIN;
        let mut pending: Option<i32> = None;
        loop {
            let next = cands.get(i).copied();
            let (day, kind) = match (pending, next) {
                (Some(r), Some((c, _))) if r <= c => {
                    pending = None;
                    (r, Kind::Readmission)
                }
                (Some(r), None) => {
                    pending = None;
                    (r, Kind::Readmission)
                }
                (_, Some(c)) => {
                    i += 1;
                    c
                }
                (None, None) => break,
            };
            if day <= last_dis || day > regular_end {
                continue;
            }
            let spell = self.spell(p, kind, day, regular_end);
            last_dis = spell.dis;
            if spell.emergency && chance(&mut self.rng, 0.055) {
                let r = spell.dis + between(&mut self.rng, 1, 30);
                if r <= regular_end {
                    pending = Some(r);
                }
            }
            self.emit_spell(p, &spell, &mut ae);
        }
        self.cands = cands;
        if let Some(adm) = terminal {
            let spell = self.spell(p, Kind::Terminal, adm, he);
            self.emit_spell(p, &spell, &mut ae);
        }

        // --- outpatients: referrals, each a first appointment and follow-ups ---
        let op_base = match age {
            0..=17 => 0.24,
            18..=44 => 0.32,
            45..=64 => 0.48,
            65..=74 => 0.68,
            _ => 0.8,
        };
        let op_rate = op_base * p.frail.powf(0.7) * (1.0 + 0.35 * f64::from(n_conds));
        let mut days = std::mem::take(&mut self.days);
        days.clear();
        poisson_days(&mut self.rng, hs, he, op_rate, &mut days);
        for &d in &days {
            let spec = self.specialty(p, d);
            let follow_ups = (exponential(&mut self.rng, 3.0) as i32).min(12);
            let reg = p.reg_at(d);
            let trust = self.r.pick_trust(&mut self.rng, reg.practice);
            let mut t = d;
            for k in 0..=follow_ups {
                if t > he {
                    break;
                }
                let attended = weighted(
                    &mut self.rng,
                    &[
                        (b'5', 0.80),
                        (b'6', 0.08),
                        (b'3', 0.07),
                        (b'2', 0.025),
                        (b'4', 0.02),
                        (b'7', 0.005),
                    ],
                );
                let reg = p.reg_at(t);
                op.push(OpRow {
                    nhs: p.nhs,
                    key: 0,
                    date: t,
                    attended,
                    firstatt: if k == 0 { b'1' } else { b'2' },
                    tretspef: spec,
                    trust,
                    practice: reg.practice,
                    age: hes_age(p.dob, t),
                });
                t += between(&mut self.rng, 28, 120);
            }
        }

        // --- A&E attendances not leading to admission ---
        let ae_base = match age {
            0..=4 => 0.55,
            5..=15 => 0.24,
            16..=24 => 0.35,
            25..=64 => 0.24,
            65..=79 => 0.3,
            _ => 0.6,
        };
        days.clear();
        poisson_days(
            &mut self.rng,
            hs,
            he,
            ae_base * p.frail.powf(0.7),
            &mut days,
        );
        for &d in &days {
            let a = p.age_at(d);
            let disp = weighted(
                &mut self.rng,
                &[
                    ("03", 0.45),
                    ("02", 0.25),
                    ("12", 0.06),
                    ("11", 0.05),
                    ("06", 0.04),
                    ("05", if (16..65).contains(&a) { 0.03 } else { 0.05 }),
                    ("04", 0.02),
                    ("07", 0.015),
                    ("13", 0.015),
                    ("14", 0.03),
                ],
            );
            let ambulance = (0.1 + 0.006 * f64::from(a)).min(0.65);
            let mode = if chance(&mut self.rng, ambulance) {
                b'1'
            } else {
                b'2'
            };
            let reg = p.reg_at(d);
            ae.push(AeRow {
                nhs: p.nhs,
                key: 0,
                date: d,
                mode,
                disp,
                trust: self.r.pick_trust(&mut self.rng, reg.practice),
                practice: reg.practice,
                age: hes_age(p.dob, d),
            });
        }
        self.days = days;

        op.sort_by_key(|o| o.date);
        for mut o in op.drain(..) {
            o.key = self.next_id(2);
            self.t.op.push(o);
        }
        ae.sort_by_key(|a| a.date);
        for mut a in ae.drain(..) {
            a.key = self.next_id(3);
            self.t.ae.push(a);
        }
        self.op = op;
        self.ae = ae;
    }

    /// Treatment specialty of an outpatient referral.
    fn specialty(&mut self, p: &Person, day: i32) -> &'static str {
        let age = p.age_at(day);
        if age < 16 {
            return weighted(
                &mut self.rng,
                &[("420", 0.7), ("110", 0.1), ("120", 0.1), ("330", 0.1)],
            );
        }
        let c = p.conds;
        let f = p.female();
        weighted(
            &mut self.rng,
            &[
                ("100", 1.0),
                ("101", if f { 0.3 } else { 0.9 }),
                ("110", 1.4),
                ("120", 0.6),
                ("130", if age >= 60 { 1.5 } else { 0.5 }),
                ("300", 0.8),
                ("301", 0.7),
                ("307", if c.dm.is_some() { 3.0 } else { 0.05 }),
                ("320", if c.hf.is_some() { 3.0 } else { 0.6 }),
                ("330", 0.8),
                (
                    "340",
                    if c.copd.is_some() || c.asthma.is_some() {
                        2.0
                    } else {
                        0.3
                    },
                ),
                ("370", if age >= 50 { 0.4 } else { 0.1 }),
                ("410", 0.4),
                ("501", if f && age <= 45 { 1.5 } else { 0.0 }),
                ("502", if f { 1.0 } else { 0.0 }),
            ],
        )
    }

    /// Draws a spell of `kind` admitted on `adm`, discharged no later than `limit`.
    fn spell(&mut self, p: &Person, kind: Kind, adm: i32, limit: i32) -> Spell {
        let age = p.age_at(adm);
        let mut s = Spell {
            adm,
            dis: adm,
            admimeth: "21",
            admisorc: "19",
            dismeth: "1",
            diag: "R69X",
            extra: "",
            op: None,
            emergency: false,
        };
        match kind {
            Kind::Birth => {
                s.admimeth = weighted(&mut self.rng, &[("82", 0.92), ("83", 0.05), ("2C", 0.03)]);
                s.admisorc = if s.admimeth == "82" { "79" } else { "19" };
                s.diag = if s.admimeth == "82" { "Z380" } else { "Z381" };
                let long = between(&mut self.rng, 3, 10);
                s.dis = adm
                    + weighted(
                        &mut self.rng,
                        &[(0, 0.3), (1, 0.45), (2, 0.15), (long, 0.1)],
                    );
            }
            Kind::Maternity => {
                s.admimeth = weighted(&mut self.rng, &[("31", 0.8), ("32", 0.05), ("13", 0.15)]);
                let (diag, op) = weighted(
                    &mut self.rng,
                    &[
                        (("O800", Some("R249")), 0.45),
                        (("O342", Some("R179")), 0.15),
                        (("O702", Some("R249")), 0.1),
                        (("O321", Some("R182")), 0.1),
                        (("O471", None), 0.2),
                    ],
                );
                s.diag = diag;
                s.op = op;
                s.dis = adm + between(&mut self.rng, 0, 3);
            }
            Kind::DayCase => {
                s.admimeth = if chance(&mut self.rng, 0.7) {
                    "13"
                } else {
                    "12"
                };
                s.diag = "Z511";
                s.extra = weighted(
                    &mut self.rng,
                    &[
                        ("C509", if p.female() { 3.0 } else { 0.05 }),
                        ("C189", 1.0),
                        ("C349", 1.0),
                        ("C61X", if p.female() { 0.0 } else { 1.5 }),
                        ("C859", 0.6),
                    ],
                );
                s.op = Some("X352");
            }
            Kind::General | Kind::Readmission | Kind::Terminal => {
                let p_emergency = if age >= 75 { 0.55 } else { 0.38 };
                let emergency = kind != Kind::General || chance(&mut self.rng, p_emergency);
                if emergency {
                    s.emergency = true;
                    if kind != Kind::Terminal && chance(&mut self.rng, 0.035) {
                        s.admimeth = "2B";
                        s.admisorc = "51";
                    } else {
                        s.admimeth = weighted(
                            &mut self.rng,
                            &[
                                ("21", 0.70),
                                ("22", 0.10),
                                ("23", 0.02),
                                ("24", 0.05),
                                ("25", 0.02),
                                ("28", 0.05),
                                ("2A", 0.03),
                                ("2D", 0.03),
                            ],
                        );
                        s.admisorc = if age >= 80 && chance(&mut self.rng, 0.1) {
                            "85"
                        } else if chance(&mut self.rng, 0.02) {
                            "29"
                        } else {
                            "19"
                        };
                    }
                    s.diag = self.emergency_diag(p, age);
                    s.op = self.emergency_op(s.diag);
                    let los = if chance(&mut self.rng, 0.25) {
                        0
                    } else {
                        1 + exponential(&mut self.rng, 3.0 + f64::from(age) / 15.0) as i32
                    };
                    s.dis = adm + los.min(120);
                    if chance(&mut self.rng, 0.02) {
                        s.dismeth = "2";
                    }
                } else {
                    s.admimeth =
                        weighted(&mut self.rng, &[("11", 0.5), ("12", 0.25), ("13", 0.25)]);
                    let (diag, op) = self.elective(p, age);
                    s.diag = diag;
                    s.op = if chance(&mut self.rng, 0.78) {
                        op
                    } else {
                        None
                    };
                    s.dis = adm
                        + if chance(&mut self.rng, 0.65) {
                            0
                        } else {
                            1 + exponential(&mut self.rng, 2.5) as i32
                        };
                }
            }
        }
        if kind == Kind::Terminal {
            s.dis = limit;
            s.dismeth = "4";
        }
        s.dis = s.dis.min(limit).max(adm);
        s
    }

    fn emergency_diag(&mut self, p: &Person, age: i32) -> &'static str {
        let c = p.conds;
        let f = p.female();
        let child = age < 16;
        let old = age >= 75;
        let w = |cond: bool, yes: f64| if cond { yes } else { 0.0 };
        weighted(
            &mut self.rng,
            &[
                ("R073", w(!child, 6.0)),
                ("R104", 5.0),
                ("J189", 3.0 + w(old, 6.0)),
                ("N390", 2.0 + w(f, 2.0) + w(old, 3.0)),
                ("L039", 3.0),
                ("J22X", 2.5),
                ("A099", 3.0),
                ("S720", w(old, 4.0)),
                ("F03X", w(age >= 80, 2.0)),
                ("I209", w(age >= 45, 2.0)),
                ("I219", w(age >= 45, 1.5)),
                ("I639", w(age >= 60, 1.5)),
                ("I489", w(age >= 60, 2.0)),
                ("D509", 1.0),
                ("G409", 1.0),
                ("K359", w((5..=40).contains(&age), 3.0)),
                ("R55X", 2.0),
                ("S525", 1.5),
                ("J069", w(child, 5.0)),
                ("B349", w(child, 4.0)),
                ("R509", w(child, 2.5)),
                ("E119", w(c.dm.is_some(), 4.0)),
                ("J45X", w(c.asthma.is_some(), if child { 8.0 } else { 4.0 })),
                ("J441", w(c.copd.is_some(), 9.0)),
                ("I500", w(c.hf.is_some(), 9.0)),
                ("I10X", w(c.ht.is_some(), 1.0)),
            ],
        )
    }

    fn emergency_op(&mut self, diag: &str) -> Option<&'static str> {
        let (code, p) = match diag {
            "K359" => ("H011", 0.9),
            "S720" => ("W461", 0.8),
            "S525" => ("W191", 0.4),
            "I219" => ("K751", 0.5),
            "I209" => ("K634", 0.35),
            "A099" | "R104" => ("G451", 0.12),
            "I639" => ("U051", 0.6),
            _ => ("U071", 0.15),
        };
        chance(&mut self.rng, p).then_some(code)
    }

    fn elective(&mut self, p: &Person, age: i32) -> (&'static str, Option<&'static str>) {
        let f = p.female();
        let w = |cond: bool, yes: f64| if cond { yes } else { 0.0 };
        weighted(
            &mut self.rng,
            &[
                (("H251", Some("C751")), w(age >= 55, 4.0)),
                (("M170", Some("W401")), w(age >= 50, 2.0)),
                (("M161", Some("W371")), w(age >= 50, 1.5)),
                (("K409", Some("T202")), if f { 0.3 } else { 1.5 }),
                (("K802", Some("J183")), w(age >= 25, 1.2)),
                (("N40X", Some("M651")), w(!f && age >= 55, 1.5)),
                (("D125", Some("H221")), w(age >= 45, 2.0)),
                (("K297", Some("G451")), w(age >= 25, 2.0)),
                (
                    ("N920", Some("Q073")),
                    w(f && (30..=55).contains(&age), 1.5),
                ),
                (("J350", Some("F341")), w(age <= 30, 1.5)),
                (("G560", Some("A651")), w(age >= 25, 1.0)),
                (("I839", Some("L852")), w(age >= 25, 0.6)),
                (("L723", Some("S062")), 0.8),
                (("R31X", Some("M459")), w(age >= 45, 1.0)),
                (("N201", Some("M142")), w(age >= 20, 0.6)),
                (("I849", Some("H511")), w(age >= 20, 0.6)),
                (("Q539", Some("N081")), w(age < 16, 1.0)),
                (("H669", Some("D151")), w(age < 16, 1.0)),
            ],
        )
    }

    /// Cuts a spell into episodes and writes them (and the A&E attendance of an A&E admission).
    fn emit_spell(&mut self, p: &Person, s: &Spell, ae: &mut Vec<AeRow>) {
        let los = s.dis - s.adm;
        let n_ep = if los >= 2 {
            weighted(&mut self.rng, &[(1, 0.82), (2, 0.12), (3, 0.05), (4, 0.01)])
        } else {
            weighted(&mut self.rng, &[(1, 0.95), (2, 0.05)])
        };
        let mut cuts = [s.adm; 5];
        for cut in cuts.iter_mut().take(n_ep).skip(1) {
            *cut = between(&mut self.rng, s.adm, s.dis);
        }
        cuts[1..n_ep].sort_unstable();
        cuts[n_ep] = s.dis;

        // Comorbidities recorded as secondary diagnoses.
        let c = p.conds;
        let mut secondary: [&'static str; 8] = [""; 8];
        let mut n2 = 0;
        for (has, code) in [
            (!s.extra.is_empty(), s.extra),
            (c.ht.is_some_and(|d| d <= s.adm), "I10X"),
            (c.dm.is_some_and(|d| d <= s.adm), "E119"),
            (c.asthma.is_some_and(|d| d <= s.adm), "J45X"),
            (c.copd.is_some_and(|d| d <= s.adm), "J449"),
            (c.hf.is_some_and(|d| d <= s.adm), "I500"),
            (p.smoking.status == 2, "F171"),
        ] {
            if has && code != s.diag && n2 < secondary.len() {
                secondary[n2] = code;
                n2 += 1;
            }
        }
        let extras = [
            "E785", "Z864", "F329", "N183", "Z867", "E039", "K219", "M199", "Z921",
        ];
        for _ in 0..weighted(&mut self.rng, &[(0, 0.5), (1, 0.3), (2, 0.2)]) {
            let code = extras[index(&mut self.rng, extras.len())];
            if n2 < secondary.len() && !secondary[..n2].contains(&code) {
                secondary[n2] = code;
                n2 += 1;
            }
        }

        let spell_id = self.next_id(1);
        let trust = self.r.pick_trust(&mut self.rng, p.reg_at(s.adm).practice);
        let op_episode = if chance(&mut self.rng, 0.7) {
            0
        } else {
            n_ep - 1
        };
        for e in 0..n_ep {
            let start = cuts[e];
            let end = cuts[e + 1];
            let mut diags = [""; 5];
            diags[0] = if e == 0 || !s.emergency || chance(&mut self.rng, 0.6) {
                s.diag
            } else {
                self.emergency_diag(p, p.age_at(start))
            };
            let mut nd = 1;
            for &code in &secondary[..n2] {
                if nd < 5 && !diags[..nd].contains(&code) {
                    diags[nd] = code;
                    nd += 1;
                }
            }
            let mut ops = [""; 3];
            let mut no = 0;
            if e == op_episode
                && let Some(op) = s.op
            {
                ops[0] = op;
                no = 1;
                if chance(&mut self.rng, 0.3) {
                    ops[1] = weighted(
                        &mut self.rng,
                        &[("Y532", 0.4), ("Z942", 0.3), ("Y981", 0.3)],
                    );
                    no = 2;
                }
            }
            let reg = p.reg_at(start);
            let epikey = self.next_id(0);
            self.t.apc.push(ApcRow {
                nhs: p.nhs,
                epikey,
                spell: spell_id,
                epiorder: (e + 1) as u8,
                admidate: s.adm,
                epistart: start,
                epiend: end,
                disdate: s.dis,
                admimeth: s.admimeth,
                admisorc: s.admisorc,
                dismeth: if e + 1 == n_ep { s.dismeth } else { "8" },
                trust,
                practice: reg.practice,
                age: hes_age(p.dob, start),
                sex: p.sex,
                postcode: reg.postcode,
                diags,
                ndiag: nd as u8,
                ops,
                nops: no as u8,
            });
        }
        if s.admimeth == "21" {
            let a = p.age_at(s.adm);
            let ambulance = (0.3 + 0.006 * f64::from(a)).min(0.8);
            let mode = if chance(&mut self.rng, ambulance) {
                b'1'
            } else {
                b'2'
            };
            ae.push(AeRow {
                nhs: p.nhs,
                key: 0,
                date: s.adm,
                mode,
                disp: "01",
                trust,
                practice: p.reg_at(s.adm).practice,
                age: hes_age(p.dob, s.adm),
            });
        }
    }
}
