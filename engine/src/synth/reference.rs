//! Reference data: practices, LSOAs with postcodes, hospital trusts and the NHS-number
//! bijection. Drawn from a stream keyed by the seed alone, so every chunk sees the same world.

use std::collections::BTreeSet;

use rand::Rng;

use super::nhs::NhsNumbers;
use super::rows::Csv;
use super::util::{between, frailty, index, stream, unif};

/// The seven NHS England regions.
pub const REGIONS: [&str; 7] = [
    "North East and Yorkshire",
    "North West",
    "Midlands",
    "East of England",
    "London",
    "South East",
    "South West",
];

/// Postcode areas by region (region index into [`REGIONS`]), in geographic order.
const AREAS: &[(&str, u8)] = &[
    ("NE", 0),
    ("SR", 0),
    ("DH", 0),
    ("TS", 0),
    ("DL", 0),
    ("HG", 0),
    ("YO", 0),
    ("LS", 0),
    ("BD", 0),
    ("HX", 0),
    ("HD", 0),
    ("WF", 0),
    ("HU", 0),
    ("DN", 0),
    ("S", 0),
    ("CA", 1),
    ("LA", 1),
    ("FY", 1),
    ("PR", 1),
    ("BB", 1),
    ("BL", 1),
    ("OL", 1),
    ("WN", 1),
    ("M", 1),
    ("SK", 1),
    ("WA", 1),
    ("L", 1),
    ("CH", 1),
    ("CW", 1),
    ("LN", 2),
    ("NG", 2),
    ("DE", 2),
    ("ST", 2),
    ("LE", 2),
    ("NN", 2),
    ("TF", 2),
    ("WS", 2),
    ("WV", 2),
    ("DY", 2),
    ("B", 2),
    ("CV", 2),
    ("WR", 2),
    ("HR", 2),
    ("PE", 3),
    ("NR", 3),
    ("IP", 3),
    ("CB", 3),
    ("CO", 3),
    ("CM", 3),
    ("SS", 3),
    ("SG", 3),
    ("LU", 3),
    ("AL", 3),
    ("EN", 4),
    ("N", 4),
    ("NW", 4),
    ("HA", 4),
    ("UB", 4),
    ("W", 4),
    ("TW", 4),
    ("SW", 4),
    ("KT", 4),
    ("SM", 4),
    ("CR", 4),
    ("SE", 4),
    ("BR", 4),
    ("DA", 4),
    ("E", 4),
    ("IG", 4),
    ("RM", 4),
    ("MK", 5),
    ("HP", 5),
    ("OX", 5),
    ("SL", 5),
    ("RG", 5),
    ("GU", 5),
    ("RH", 5),
    ("ME", 5),
    ("CT", 5),
    ("TN", 5),
    ("BN", 5),
    ("PO", 5),
    ("SO", 5),
    ("SN", 6),
    ("GL", 6),
    ("BS", 6),
    ("BA", 6),
    ("SP", 6),
    ("BH", 6),
    ("DT", 6),
    ("TA", 6),
    ("EX", 6),
    ("TQ", 6),
    ("PL", 6),
    ("TR", 6),
];

/// Districts per postcode area (outward codes `LS1`..`LS20`).
const DISTRICTS_PER_AREA: usize = 20;

/// Practice-code letters by region.
const PRACTICE_LETTERS: [&[u8]; 7] = [b"AB", b"NP", b"CM", b"D", b"EF", b"GHK", b"JL"];

/// Acute hospital trusts (ODS 3-character codes) by region.
const TRUSTS: [&[&str]; 7] = [
    &[
        "RR8", "RAE", "RWY", "RXF", "RCB", "RHQ", "RTD", "RTR", "RWA",
    ],
    &["R0A", "RM3", "RBN", "RXN", "RVY", "RWW", "RMC"],
    &["RRK", "RX1", "RWE", "RJE", "RKB", "RL4", "RTG"],
    &["RGT", "RM1", "RDE", "RQ8", "RWG", "RC9"],
    &["RJ1", "RRV", "R1H", "RYJ", "RJZ", "RAL", "RJ7"],
    &["RTH", "RXQ", "RHM", "RHU", "RYR", "RA2", "RN5"],
    &["RA7", "RK9", "RH8", "REF", "RTE", "RD1", "RDZ"],
];

const NAME_STEMS: &[&str] = &[
    "Riverside",
    "Park Lane",
    "Oakwood",
    "Church Street",
    "Station Road",
    "Highfield",
    "Beechwood",
    "Market Square",
    "Grange",
    "Westgate",
    "Kingsway",
    "Meadowbank",
    "Elm Tree",
    "Castle Hill",
    "Victoria",
    "Brookside",
    "Ashfield",
    "Fairfield",
    "Hillside",
    "Millbrook",
    "St John's",
    "Queens Road",
    "Northgate",
    "Southfield",
    "Willow Bank",
    "Abbey",
    "Bridge Street",
    "Moorlands",
    "Orchard",
    "Priory",
];
const NAME_KINDS: &[&str] = &[
    "Surgery",
    "Medical Centre",
    "Health Centre",
    "Medical Practice",
    "Family Practice",
    "Group Practice",
];
const SURNAMES: &[&str] = &[
    "Patel",
    "Khan",
    "Smith",
    "Jones",
    "Ahmed",
    "Williams",
    "Brown",
    "Taylor",
    "Singh",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Roberts",
    "Ali",
    "Shah",
    "Murphy",
    "Chowdhury",
    "Okafor",
    "Hughes",
];

/// Letters used in the inward part of real postcodes (no C, I, K, M, O, V).
const INWARD_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

/// A GP practice.
pub struct Practice {
    /// ODS code, e.g. `A81001`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Sub-ICB location code, e.g. `15N`.
    pub sub_icb: String,
    /// Region index into [`REGIONS`].
    pub region: u8,
    /// The LSOA the practice sits in, and its catchment `lo..=hi` (LSOA indices).
    pub home: u32,
    /// First LSOA of the catchment.
    pub lo: u32,
    /// Last LSOA of the catchment.
    pub hi: u32,
    /// Its local acute trust (index into [`Reference::trusts`]).
    pub trust: u16,
}

/// A lower-layer super output area.
pub struct Lsoa {
    /// `E01000001`-style code.
    pub code: String,
    /// Index of Multiple Deprivation decile (1 = most deprived).
    pub imd: u8,
    /// Its postcodes: `postcodes[pc_lo..pc_hi]`.
    pub pc_lo: u32,
    /// End (exclusive) of its postcodes.
    pub pc_hi: u32,
}

/// Everything shared by all chunks.
pub struct Reference {
    /// Practices in geographic order.
    pub practices: Vec<Practice>,
    /// Cumulative list-size weights of `practices` (last = total).
    pub practice_cum: Vec<f64>,
    /// LSOAs in geographic order.
    pub lsoas: Vec<Lsoa>,
    /// All postcodes, grouped by LSOA.
    pub postcodes: Vec<String>,
    /// (trust code, region) of every trust that serves a practice.
    pub trusts: Vec<(&'static str, u8)>,
    /// Trust indices by region.
    pub region_trusts: [Vec<u16>; 7],
    /// The person-index → NHS-number bijection.
    pub nhs: NhsNumbers,
}

impl Reference {
    /// Builds the reference world for a seed and patient count.
    pub fn build(seed: u64, patients: u64) -> Self {
        let mut rng = stream(seed, "reference", 0);
        let n_lsoa = (patients / 1500).max(10) as usize;
        let n_practice = ((patients + 4000) / 8000).max(3) as usize;

        // Districts: a geographic-ordered sample of outward codes.
        let all_districts = AREAS.len() * DISTRICTS_PER_AREA;
        let per_district = n_lsoa.div_ceil(all_districts).max(4);
        let n_district = n_lsoa.div_ceil(per_district).min(all_districts);
        let mut districts =
            rand::seq::index::sample(&mut rng, all_districts, n_district).into_vec();
        districts.sort_unstable();

        let mut lsoas = Vec::with_capacity(n_lsoa);
        let mut lsoa_region = Vec::with_capacity(n_lsoa);
        let mut lsoa_district = Vec::with_capacity(n_lsoa);
        let mut postcodes = Vec::with_capacity(n_lsoa * 15);
        let step_max = (900_000 / n_lsoa as i32).clamp(2, 40);
        let mut lsoa_number = between(&mut rng, 1, 30_000);
        for (d_pos, &d) in districts.iter().enumerate() {
            let (area, region) = AREAS[d / DISTRICTS_PER_AREA];
            let outward = format!("{area}{}", d % DISTRICTS_PER_AREA + 1);
            let base_imd = between(&mut rng, 1, 10);
            let first = d_pos * per_district;
            let last = ((d_pos + 1) * per_district).min(n_lsoa);
            let mut used = BTreeSet::new();
            for _ in first..last {
                let sector = between(&mut rng, 0, 9);
                let n_pc = between(&mut rng, 10, 20);
                let pc_lo = postcodes.len() as u32;
                let mut made = 0;
                while made < n_pc {
                    let s = if unif(&mut rng) < 0.8 {
                        sector
                    } else {
                        between(&mut rng, 0, 9)
                    };
                    let a = index(&mut rng, INWARD_LETTERS.len());
                    let b = index(&mut rng, INWARD_LETTERS.len());
                    if !used.insert((s, a, b)) {
                        continue;
                    }
                    postcodes.push(format!(
                        "{outward} {s}{}{}",
                        INWARD_LETTERS[a] as char, INWARD_LETTERS[b] as char
                    ));
                    made += 1;
                }
                lsoas.push(Lsoa {
                    code: format!("E01{lsoa_number:06}"),
                    imd: (base_imd + between(&mut rng, -2, 2)).clamp(1, 10) as u8,
                    pc_lo,
                    pc_hi: postcodes.len() as u32,
                });
                lsoa_region.push(region);
                lsoa_district.push(d_pos);
                lsoa_number += between(&mut rng, 1, step_max);
            }
        }
        let n_lsoa = lsoas.len();

        // Trusts: those of the regions present.
        let mut trusts = Vec::new();
        let mut region_trusts: [Vec<u16>; 7] = Default::default();
        for (r, codes) in TRUSTS.iter().enumerate() {
            if lsoa_region.contains(&(r as u8)) {
                for code in *codes {
                    region_trusts[r].push(trusts.len() as u16);
                    trusts.push((*code, r as u8));
                }
            }
        }

        // Practices spread evenly over the LSOAs, each serving a window of nearby LSOAs.
        let width = n_lsoa.div_ceil(n_practice).max(2);
        let mut letter_next = [0u32; 26];
        let mut practices = Vec::with_capacity(n_practice);
        let mut practice_cum = Vec::with_capacity(n_practice);
        let mut total = 0.0;
        for j in 0..n_practice {
            let home =
                (((j as f64 + 0.5) * n_lsoa as f64 / n_practice as f64) as usize).min(n_lsoa - 1);
            let region = lsoa_region[home];
            let letters = PRACTICE_LETTERS[region as usize];
            let letter = letters[index(&mut rng, letters.len())];
            let slot = &mut letter_next[usize::from(letter - b'A')];
            if *slot == 0 {
                *slot = 81_000;
            }
            *slot += between(&mut rng, 1, 9) as u32;
            let code = format!("{}{:05}", letter as char, (*slot).min(99_999));
            let name = if unif(&mut rng) < 0.15 {
                format!(
                    "Dr {} and Partners",
                    SURNAMES[index(&mut rng, SURNAMES.len())]
                )
            } else {
                let stem = NAME_STEMS[index(&mut rng, NAME_STEMS.len())];
                let kind = NAME_KINDS[index(&mut rng, NAME_KINDS.len())];
                if unif(&mut rng) < 0.4 {
                    format!("The {stem} {kind}")
                } else {
                    format!("{stem} {kind}")
                }
            };
            let local = &region_trusts[region as usize];
            let trust = local[lsoa_district[home] % local.len().max(1)];
            let list_size =
                (7_500.0 * frailty(&mut rng, 0.6) * (0.18f64).exp()).clamp(2_000.0, 20_000.0);
            total += list_size;
            practice_cum.push(total);
            practices.push(Practice {
                code,
                name,
                sub_icb: String::new(),
                region,
                home: home as u32,
                lo: home.saturating_sub(width) as u32,
                hi: (home + width).min(n_lsoa - 1) as u32,
                trust,
            });
        }

        // Sub-ICB locations: blocks of about ten neighbouring practices within a region.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (j, p) in practices.iter().enumerate() {
            match runs.last_mut() {
                Some((start, end)) if practices[*start].region == p.region => *end = j + 1,
                _ => runs.push((j, j + 1)),
            }
        }
        let mut blocks: Vec<(usize, usize)> = Vec::new();
        for &(start, end) in &runs {
            let n = end - start;
            let k = ((n + 5) / 10).max(1);
            for b in 0..k {
                blocks.push((start + b * n / k, start + (b + 1) * n / k));
            }
        }
        if blocks.len() < 2 {
            let (start, end) = blocks[0];
            let mid = start + (end - start) / 2;
            blocks = vec![(start, mid), (mid, end)];
        }
        let mut codes = rand::seq::index::sample(&mut rng, 2600, blocks.len().min(2600)).into_vec();
        codes.sort_unstable();
        for (b, &(start, end)) in blocks.iter().enumerate() {
            let c = codes[b % codes.len()];
            let code = format!("{:02}{}", c / 26, (b'A' + (c % 26) as u8) as char);
            for p in &mut practices[start..end] {
                p.sub_icb.clone_from(&code);
            }
        }

        Reference {
            practices,
            practice_cum,
            lsoas,
            postcodes,
            trusts,
            region_trusts,
            nhs: NhsNumbers::new(seed),
        }
    }

    /// A practice drawn by list size.
    pub fn pick_practice(&self, rng: &mut impl Rng) -> u32 {
        let total = self.practice_cum.last().copied().unwrap_or(0.0);
        let x = unif(rng) * total;
        let i = self.practice_cum.partition_point(|&c| c <= x);
        i.min(self.practices.len() - 1) as u32
    }

    /// A postcode in a practice's catchment (nearer LSOAs more likely).
    pub fn pick_postcode(&self, rng: &mut impl Rng, practice: u32) -> u32 {
        let p = &self.practices[practice as usize];
        let half = f64::from(p.hi - p.lo) / 2.0 + 0.5;
        let off = (unif(rng) + unif(rng) - 1.0) * half;
        let l = (f64::from(p.home) + off)
            .round()
            .clamp(f64::from(p.lo), f64::from(p.hi)) as usize;
        let lsoa = &self.lsoas[l];
        lsoa.pc_lo + index(rng, (lsoa.pc_hi - lsoa.pc_lo) as usize) as u32
    }

    /// The trust a practice's patient attends: usually the local one.
    pub fn pick_trust(&self, rng: &mut impl Rng, practice: u32) -> u16 {
        let p = &self.practices[practice as usize];
        let local = &self.region_trusts[p.region as usize];
        if unif(rng) < 0.85 || local.len() < 2 {
            p.trust
        } else {
            local[index(rng, local.len())]
        }
    }

    /// `practices.csv` and `postcode_lsoa.csv` rows (without headers) and their row counts.
    #[allow(clippy::type_complexity)]
    pub fn format(&self) -> Result<((Vec<u8>, u64), (Vec<u8>, u64)), csv::Error> {
        let mut pr = Csv::new(self.practices.len() * 48);
        for p in &self.practices {
            pr.field(p.code.as_bytes())?;
            pr.field(p.name.as_bytes())?;
            pr.field(p.sub_icb.as_bytes())?;
            pr.field(REGIONS[p.region as usize].as_bytes())?;
            pr.end()?;
        }
        let mut pc = Csv::new(self.postcodes.len() * 24);
        for l in &self.lsoas {
            for i in l.pc_lo..l.pc_hi {
                pc.field(self.postcodes[i as usize].as_bytes())?;
                pc.field(l.code.as_bytes())?;
                pc.num(u64::from(l.imd))?;
                pc.end()?;
            }
        }
        Ok((pr.finish()?, pc.finish()?))
    }
}
