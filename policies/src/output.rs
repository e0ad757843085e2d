//! The arithmetic of output control (DESIGN.md rules 3, 4 and 5): what is released for one
//! cell, decided deterministically from the cell's values, its cell key and the project's
//! [`OutputControl`] parameters. No plans and no Arrow here; the plan and batch layers call
//! these functions once per released cell.
//!
//! A cell is one output row of an aggregate query. It comes with the number of distinct
//! persons behind it and a *cell key* in `0..=255`: the sum, mod 256, of the secret record
//! keys of the persons behind it (computed elsewhere). Everything below is a pure function of
//! (value, cell key, parameters), so the same set of people always gets the same answer,
//! whatever SQL produced it, and repeating or rephrasing a query gains nothing.
//!
//! - **Suppression (rule 3)**: [`is_suppressed`] — below `min_persons + t`, with `t` in
//!   `0..=noise_extra_threshold` from [`threshold_extra`].
//! - **Count perturbation (rule 4, the ABS/ONS cell-key method)**: [`perturbation`] and
//!   [`perturb_count`] read a fixed perturbation table with one column per cell key and one
//!   row per small count ([`PTABLE_ROWS`]); each row holds the zero-mean distribution
//!   [`PERTURBATION`] over the 256 keys, in a key order derived from SHA-256.
//! - **Rounding (rule 5)**: [`round_count`] (to a multiple of the base, half up) and
//!   [`round_sig`] (to significant figures).
//! - **Protected values**: [`protect_count`] (persons), [`protect_rows`] and [`protect_sum`]
//!   (heavy contributors flattened, then noise in proportion to the largest remaining
//!   contribution), [`protect_mean`] and [`protect_rate`] (both computed from released
//!   values only).
//! - **Error bounds** for correctness tests: [`count_error_bound`], [`rows_error_bound`],
//!   [`sum_error_bound`].
//!
//! The cell key is secret (it is derived from secret record keys), so the mixing below can be
//! public: it only has to spread keys evenly and independently over the three uses (threshold,
//! count perturbation, sum noise), which distinct SHA-256 labels do.
//!
//! Rule 7 (low-effect conditions) is not handled here: consistent noise is exactly what makes
//! such conditions visible, and they are detected in the plan layer before cells reach this
//! module.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::register::OutputControl;

/// What leaves for one protected value: the value, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released<T> {
    /// The protected value, safe to release.
    Value(T),
    /// The cell (or this value of it) is withheld.
    Suppressed,
}

impl<T> Released<T> {
    /// The released value, `None` when suppressed.
    pub fn value(self) -> Option<T> {
        match self {
            Self::Value(v) => Some(v),
            Self::Suppressed => None,
        }
    }

    /// Whether the value is withheld.
    pub fn is_suppressed(&self) -> bool {
        matches!(self, Self::Suppressed)
    }
}

// ---------------------------------------------------------------------------------------------
// Key orders: the deterministic mixing of cell keys.
// ---------------------------------------------------------------------------------------------

/// SHA-256 label of the key order behind [`threshold_extra`].
const THRESHOLD_LABEL: &str = "fivesafes/output/threshold/v1";
/// SHA-256 label of the key orders of the perturbation table (one per row).
const PTABLE_LABEL: &str = "fivesafes/output/ptable/v1";
/// SHA-256 label of the key order behind [`sum_noise`].
const SUM_NOISE_LABEL: &str = "fivesafes/output/sum-noise/v1";
/// SHA-256 label of the key order behind [`low_effect_threshold`].
const LOW_EFFECT_LABEL: &str = "fivesafes/output/low-effect/v1";

/// The 256 cell keys in a fixed pseudo-random order: sorted by
/// `SHA-256(label || 0x00 || row as 2 bytes big-endian || key)` (ties, which do not occur,
/// by key). Returns `order`, where `order[j]` is the key at position `j`.
fn key_order(label: &str, row: u16) -> [u8; 256] {
    let mut keyed: Vec<([u8; 32], u8)> = (0..=u8::MAX)
        .map(|key| {
            let mut h = Sha256::new();
            h.update(label.as_bytes());
            h.update([0u8]);
            h.update(row.to_be_bytes());
            h.update([key]);
            (h.finalize().into(), key)
        })
        .collect();
    keyed.sort_unstable();
    let mut order = [0u8; 256];
    for (slot, (_, key)) in order.iter_mut().zip(keyed) {
        *slot = key;
    }
    order
}

/// The inverse of [`key_order`]: `rank[key]` is the key's position in the order.
fn key_rank(label: &str, row: u16) -> [u8; 256] {
    let mut rank = [0u8; 256];
    for (position, key) in (0..=u8::MAX).zip(key_order(label, row)) {
        rank[usize::from(key)] = position;
    }
    rank
}

// ---------------------------------------------------------------------------------------------
// Rule 3: the noisy suppression threshold.
// ---------------------------------------------------------------------------------------------

/// The noisy part `t` of the suppression threshold of a cell, in
/// `0..=p.noise_extra_threshold`.
///
/// The 256 cell keys are put in a fixed order (sorted by SHA-256 of a fixed label and the key);
/// a key at position `j` gets `t = j * (n + 1) / 256` with `n = p.noise_extra_threshold`, so
/// every value of `t` is taken by 256/(n+1) keys, rounded down or up (86, 85 and 85 keys for the
/// default `n = 2`), and neighbouring keys get unrelated values.
pub fn threshold_extra(cell_key: u8, p: &OutputControl) -> u32 {
    static RANK: OnceLock<[u8; 256]> = OnceLock::new();
    let rank = RANK.get_or_init(|| key_rank(THRESHOLD_LABEL, 0));
    let position = u64::from(rank[usize::from(cell_key)]);
    let extra = position * (u64::from(p.noise_extra_threshold) + 1) / 256;
    // `extra <= noise_extra_threshold`, a u32, so the conversion cannot fail.
    u32::try_from(extra).unwrap_or(p.noise_extra_threshold)
}

/// The number of persons a cell needs to be released: `p.min_persons +`
/// [`threshold_extra`]. With the defaults it is 8, 9 or 10.
pub fn suppression_threshold(cell_key: u8, p: &OutputControl) -> u64 {
    u64::from(p.min_persons) + u64::from(threshold_extra(cell_key, p))
}

/// Whether a cell backed by `persons` distinct persons is suppressed (rule 3): when
/// `persons <` [`suppression_threshold`]. With the defaults a cell of 7 or fewer persons is
/// always suppressed, one of 8 or 9 depending on its key, one of 10 or more never.
pub fn is_suppressed(persons: u64, cell_key: u8, p: &OutputControl) -> bool {
    persons < suppression_threshold(cell_key, p)
}

// ---------------------------------------------------------------------------------------------
// Rule 7: the noisy low-effect threshold.
// ---------------------------------------------------------------------------------------------

/// The lowest low-effect threshold: one more than the highest suppression threshold
/// (`min_persons + 1 + noise_extra_threshold`, 11 with the defaults). A condition that
/// changes a cell by fewer persons than this is always neutralised, so by fewer than any
/// suppression threshold the cell could have.
pub fn low_effect_floor(p: &OutputControl) -> u64 {
    u64::from(p.min_persons) + 1 + u64::from(p.noise_extra_threshold)
}

/// The highest low-effect threshold, [`low_effect_floor`] plus the project's
/// `low_effect_spread` (14 with the defaults): a condition that changes a cell by this many
/// persons or more is never neutralised. A wider spread makes a condition aimed at the floor
/// tip less often, and leaves more conditions of moderate effect unapplied.
pub fn low_effect_ceiling(p: &OutputControl) -> u64 {
    low_effect_floor(p) + u64::from(p.low_effect_spread)
}

/// The low-effect threshold of a condition's effect in a cell, drawn from `key`, the sum mod
/// 256 of the record keys of the persons the condition decides in the cell: from
/// [`low_effect_floor`] to [`low_effect_ceiling`], each value taken by about as many keys
/// (the keys in a fixed order, as [`threshold_extra`] does, with its own label).
///
/// A fixed threshold has a tipping point an attacker can aim at: a condition that leaves out
/// the target and exactly `floor − 1` persons known to be in the cell is neutralised when the
/// target is absent and applied when present, and the answer then moves by `floor` persons.
/// Drawn from the persons decided, the threshold differs between the two, and a condition
/// aimed at the edge is applied with the target present only for the keys whose threshold is
/// the floor itself: one in `low_effect_spread + 1` (1 in 4 with the defaults), where a fixed
/// threshold gave it every time. Rephrasings that decide the same persons get the same threshold.
pub fn low_effect_threshold(key: u8, p: &OutputControl) -> u64 {
    static RANK: OnceLock<[u8; 256]> = OnceLock::new();
    let rank = RANK.get_or_init(|| key_rank(LOW_EFFECT_LABEL, 0));
    let position = u64::from(rank[usize::from(key)]);
    let floor = low_effect_floor(p);
    let spread = low_effect_ceiling(p) - floor;
    floor + position * (spread + 1) / 256
}

const EDGE_ANCHOR_LABEL: &str = "fivesafes/output/edge-anchor/v1";

/// Record keys out of 256 that make a person an *edge anchor* (one in four).
pub const EDGE_ANCHOR_KEYS: usize = 64;

/// The record keys of edge anchors ([`EDGE_ANCHOR_KEYS`] of the 256, in a fixed
/// pseudo-random order with their own label). A condition on a per-person value is read,
/// in each cell, at the greatest value of an anchor in the cell at or below the person's
/// own ([`crate::low_effect`], "Range edges"): moving a range edge past a person who is not
/// an anchor changes no answer, so a range edge, a hole or an island aimed at one person
/// reveals them only when they are an anchor themselves. More anchors would follow the
/// edges more closely and expose more persons.
pub fn edge_anchor_keys() -> Vec<u8> {
    let order = key_order(EDGE_ANCHOR_LABEL, 0);
    let mut keys = order[..EDGE_ANCHOR_KEYS].to_vec();
    keys.sort_unstable();
    keys
}

/// Whether a condition that decides `persons` persons of a cell, whose record keys sum to
/// `key` mod 256, has a low effect there (rule 7): `persons <` [`low_effect_threshold`].
pub fn is_low_effect(persons: u64, key: u8, p: &OutputControl) -> bool {
    persons < low_effect_threshold(key, p)
}

// ---------------------------------------------------------------------------------------------
// Rule 4: cell-key perturbation of counts.
// ---------------------------------------------------------------------------------------------

/// Largest perturbation of a count, `D`: a perturbation is in `-D..=D`.
pub const MAX_PERTURBATION: u64 = 2;

/// The designed distribution of perturbations of a count of 2 or more, as
/// (perturbation, number of cell keys out of 256): about 5% each for ±2, 20% each for ±1 and
/// 50% for 0. Symmetric, hence zero-mean; variance 206/256 ≈ 0.80.
pub const PERTURBATION: [(i8, u16); 5] = [(-2, 13), (-1, 51), (0, 128), (1, 51), (2, 13)];

/// The distribution for a count of 1: ±1 a quarter each, so the result is never negative
/// and the mean stays zero.
pub const PERTURBATION_COUNT_1: [(i8, u16); 3] = [(-1, 64), (0, 128), (1, 64)];

/// The distribution for a count of 0: zero stays zero (no non-negative zero-mean noise
/// exists for it).
pub const PERTURBATION_COUNT_0: [(i8, u16); 1] = [(0, 256)];

/// Counts up to this have their own row of the perturbation table; larger counts share the
/// last row.
pub const PTABLE_EXACT_COUNTS: u64 = 20;

/// Rows of the perturbation table: one for each count `0..=`[`PTABLE_EXACT_COUNTS`], then
/// one for every larger count.
pub const PTABLE_ROWS: usize = 22;

/// Checked at compile time: `dist` covers the 256 keys, is symmetric (hence zero-mean), stays
/// within `-D..=D` and never takes `count` below zero.
const fn valid_distribution(dist: &[(i8, u16)], count: i64) -> bool {
    let mut total = 0u32;
    let mut moment = 0i64;
    let mut i = 0;
    while i < dist.len() {
        let (p, n) = dist[i];
        if (p as i64).abs() > MAX_PERTURBATION as i64 || count + (p as i64) < 0 {
            return false;
        }
        // Symmetry: -p is present with the same number of keys.
        let mut mirrored = false;
        let mut j = 0;
        while j < dist.len() {
            if dist[j].0 == -p && dist[j].1 == n {
                mirrored = true;
            }
            j += 1;
        }
        if !mirrored {
            return false;
        }
        total += n as u32;
        moment += (p as i64) * (n as i64);
        i += 1;
    }
    total == 256 && moment == 0
}

const _: () = assert!(valid_distribution(&PERTURBATION, 2));
const _: () = assert!(valid_distribution(&PERTURBATION_COUNT_1, 1));
const _: () = assert!(valid_distribution(&PERTURBATION_COUNT_0, 0));
const _: () = assert!(PTABLE_ROWS as u64 == PTABLE_EXACT_COUNTS + 2);

/// The row of the perturbation table used for `count`.
pub fn ptable_row(count: u64) -> usize {
    match usize::try_from(count) {
        Ok(c) if c < PTABLE_ROWS - 1 => c,
        _ => PTABLE_ROWS - 1,
    }
}

/// The designed distribution of perturbations of `count` over the 256 cell keys.
pub fn perturbation_distribution(count: u64) -> &'static [(i8, u16)] {
    match count {
        0 => &PERTURBATION_COUNT_0,
        1 => &PERTURBATION_COUNT_1,
        _ => &PERTURBATION,
    }
}

/// The perturbation table: `ptable()[row][cell_key]`, rows as in [`ptable_row`].
///
/// Row `r` puts the 256 cell keys in a fixed order (sorted by SHA-256 of a fixed label, `r`
/// and the key) and hands out the perturbations of [`perturbation_distribution`] in that
/// order: the first 13 keys get -2, the next 51 get -1, and so on. Each row therefore follows
/// the designed distribution exactly, and different rows are unrelated. Built on first use.
pub fn ptable() -> &'static [[i8; 256]; PTABLE_ROWS] {
    static TABLE: OnceLock<[[i8; 256]; PTABLE_ROWS]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [[0i8; 256]; PTABLE_ROWS];
        for (row, cells) in (0u16..).zip(table.iter_mut()) {
            let order = key_order(PTABLE_LABEL, row);
            let mut keys = order.iter();
            for &(perturbation, n) in perturbation_distribution(u64::from(row)) {
                for &key in keys.by_ref().take(usize::from(n)) {
                    cells[usize::from(key)] = perturbation;
                }
            }
        }
        table
    })
}

/// The perturbation of `count` in the cell with key `cell_key`, in
/// `-`[`MAX_PERTURBATION`]`..=`[`MAX_PERTURBATION`] and never below `-count`.
pub fn perturbation(count: u64, cell_key: u8) -> i8 {
    ptable()[ptable_row(count)][usize::from(cell_key)]
}

/// `count` plus its [`perturbation`]: never negative, never more than [`MAX_PERTURBATION`]
/// away from `count`.
pub fn perturb_count(count: u64, cell_key: u8) -> u64 {
    let p = perturbation(count, cell_key);
    let magnitude = u64::from(p.unsigned_abs());
    if p < 0 {
        count.saturating_sub(magnitude)
    } else {
        count.saturating_add(magnitude)
    }
}

// ---------------------------------------------------------------------------------------------
// Rule 5: rounding.
// ---------------------------------------------------------------------------------------------

/// `v` rounded to the nearest multiple of `base`, halves up (with base 5: 2 → 0, 3 → 5; with
/// base 10: 5 → 10). At most `base / 2` (integer division) from `v`. A base of 0 or 1 leaves
/// `v` as it is; values within `base` of `u64::MAX` saturate.
pub fn round_count(v: u64, base: u32) -> u64 {
    let base = u64::from(base);
    if base <= 1 {
        return v;
    }
    let rem = v % base;
    let down = v - rem;
    if rem >= base - rem {
        down.saturating_add(base)
    } else {
        down
    }
}

/// `10^k` as the `f64` nearest to it (correctly rounded by the standard library's parser, so
/// identical on every platform, unlike `powi`).
fn pow10(k: i32) -> f64 {
    format!("1e{k}").parse().unwrap_or(f64::NAN)
}

/// `v` rounded to `sig` significant figures, halves away from zero:
/// `round_sig(123456.0, 3) == 123000.0`, `round_sig(0.0012345, 2) == 0.0012`,
/// `round_sig(-987.0, 1) == -1000.0`. `sig == 0` counts as 1. Zero, infinities and NaN are
/// returned as they are, and so are values so small (below about 1e-290) that the scaling
/// would overflow. The error is at most half a unit in the last kept place, which is at most
/// `0.5 * 10^(1 - sig) * |v|`.
pub fn round_sig(v: f64, sig: u32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let sig = i32::try_from(sig.max(1)).unwrap_or(i32::MAX).min(400);
    let a = v.abs();
    // The decimal exponent of `v`: 10^e <= |v| < 10^(e+1). `log10` is only a first guess (its
    // precision is not specified), fixed up against correctly rounded powers of ten.
    let mut e = a.log10().floor() as i32;
    if pow10(e) > a {
        e -= 1;
    } else if pow10(e + 1) <= a {
        e += 1;
    }
    let shift = sig - 1 - e;
    if shift >= 0 {
        let scale = pow10(shift);
        if !scale.is_finite() {
            return v;
        }
        (v * scale).round() / scale
    } else {
        let scale = pow10(-shift);
        (v / scale).round() * scale
    }
}

// ---------------------------------------------------------------------------------------------
// Protected counts.
// ---------------------------------------------------------------------------------------------

/// The released value of a count of persons (rule 3, 4 and 5 together): [`protect_rows`]
/// with every person counted once, so that nothing is flattened.
///
/// `count` is the value being released (`COUNT(DISTINCT patient_id)`, or any count to which
/// no person adds more than one), `persons` the distinct persons behind the cell.
///
/// Error: at most [`count_error_bound`] from `count`.
pub fn protect_count(count: u64, persons: u64, cell_key: u8, p: &OutputControl) -> Released<u64> {
    release_count(count, persons, None, cell_key, p)
}

/// A count of rows after its top per-person contributions are flattened.
struct FlatCount {
    /// The flattened count, rounded to a whole number.
    count: u64,
    /// The noise scale: the mean of the next [`FLATTEN_NEXT`] per-person counts, at least 1.
    scale: f64,
    /// How far flattening moved the count: the rows removed from the top contributions.
    shift: f64,
}

/// Flattens a count of rows (see [`protect_rows`]); `top` are the largest per-person counts
/// of the cell. `None` with fewer than `k + FLATTEN_NEXT` of them (only possible in a cell
/// too small to be released).
fn flatten_count(count: u64, persons: u64, top: &[u64]) -> Option<FlatCount> {
    let k = flatten_top(usize::try_from(persons).unwrap_or(usize::MAX));
    if top.len() < k + FLATTEN_NEXT {
        return None;
    }
    let mut sorted = top.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let next_mean = sorted[k..k + FLATTEN_NEXT]
        .iter()
        .map(|c| *c as f64)
        .sum::<f64>()
        / FLATTEN_NEXT as f64;
    let shift: f64 = sorted[..k].iter().map(|c| *c as f64 - next_mean).sum();
    Some(FlatCount {
        count: (count as f64 - shift).round().max(0.0) as u64,
        scale: next_mean.max(1.0),
        shift,
    })
}

/// The released value of a count (rule 3, 4 and 5 together).
///
/// `count` is the value being released (`COUNT(*)` of events, `COUNT(col)`, `COUNT(DISTINCT
/// …)`), `persons` the distinct persons who add at least one to it (for `COUNT(col)`, those
/// with a non-NULL `col`) and `top` the largest per-person counts of the cell
/// (`fs_top_counts`: at least `k + FLATTEN_NEXT` of them, in any order; with fewer the cell
/// is suppressed, which happens only below the threshold anyway). Steps:
///
/// 1. Suppressed when `min(persons, count)` is below the [`suppression_threshold`]. The
///    threshold is on persons; the `min` adds that a count of fewer things than the
///    threshold is itself a small number — `COUNT(col)` of 3 non-null values in a cell of 100
///    persons can only involve 3 persons — and is withheld like one (the NHS "redact 1–7"
///    rule is about the released number). For `COUNT(*)` of a cell's rows `count >= persons`,
///    so this changes nothing there.
/// 2. A count of rows is a sum of per-person counts, so one person with a hundred events
///    would stand out of it as a heavy contributor stands out of a sum (rule 4): the top `k`
///    per-person counts ([`flatten_top`]) are replaced by `a`, the mean of the next
///    [`FLATTEN_NEXT`], and the result rounded to a whole number `c`. Where every person
///    counts at most once (`a` = 1 and no larger top) nothing changes.
/// 3. `c` is perturbed ([`perturb_count`]: `δ` in `[-D, D]` from `c` and the cell key), with
///    `δ` scaled by `max(a, 1)` (noise in proportion to the largest remaining
///    contributions, as for sums), and rounded to a multiple of `p.rounding_base`
///    ([`round_count`]).
/// 4. A released count is never below `p.rounding_base`. Step 1 guarantees the true count is
///    at least `min_persons`, so a release of 0 would only mislead ("nobody"); the floor binds
///    only when the base is large next to `min_persons` (never with the defaults: 8 − 2 = 6
///    rounds to 5) and reveals nothing, as every count between the threshold and about
///    `base / 2 + D` then reads as the base.
///
/// Error: at most [`rows_error_bound`] from `count` ([`count_error_bound`] for a count of
/// persons).
pub fn protect_rows(
    count: u64,
    persons: u64,
    top: &[u64],
    cell_key: u8,
    p: &OutputControl,
) -> Released<u64> {
    release_count(count, persons, Some(top), cell_key, p)
}

/// [`protect_rows`] (`top` given) or [`protect_count`] (`None`: nothing to flatten).
fn release_count(
    count: u64,
    persons: u64,
    top: Option<&[u64]>,
    cell_key: u8,
    p: &OutputControl,
) -> Released<u64> {
    if is_suppressed(persons.min(count), cell_key, p) {
        return Released::Suppressed;
    }
    let flat = match top {
        None => FlatCount {
            count,
            scale: 1.0,
            shift: 0.0,
        },
        Some(top) => match flatten_count(count, persons, top) {
            Some(flat) => flat,
            None => return Released::Suppressed,
        },
    };
    let delta = perturb_count(flat.count, cell_key) as f64 - flat.count as f64;
    let noisy = (flat.count as f64 + delta * flat.scale).round().max(0.0) as u64;
    let rounded = round_count(noisy, p.rounding_base);
    Released::Value(rounded.max(u64::from(p.rounding_base)))
}

/// The largest difference between a released count of rows ([`protect_rows`] not
/// suppressed) and the true count, for a cell of `persons` persons whose largest per-person
/// counts are `top`: `F + 0.5 + D × max(a, 1) + 0.5 + base / 2` (the rows flattening
/// removed, rounding the flattened count, the largest noise, rounding the noisy count,
/// rounding to the base), or the floor term of [`count_error_bound`] if larger. Equal to
/// [`count_error_bound`] when nothing is flattened.
pub fn rows_error_bound(persons: u64, top: &[u64], p: &OutputControl) -> f64 {
    let Some(flat) = flatten_count(0, persons, top) else {
        return count_error_bound(p) as f64;
    };
    if flat.shift == 0.0 && flat.scale == 1.0 {
        return count_error_bound(p) as f64;
    }
    let base = f64::from(p.rounding_base);
    let spread = flat.shift + 1.0 + MAX_PERTURBATION as f64 * flat.scale + (base / 2.0).floor();
    spread.max(base - f64::from(p.min_persons))
}

/// The largest difference between a released count ([`protect_count`] not suppressed) and
/// the true count: `max(D + base / 2, base - min_persons)`, where `D` is
/// [`MAX_PERTURBATION`] and `base / 2` the worst rounding (integer division). The second term
/// is the floor of step 3 of [`protect_count`] and only matters for a base larger than
/// `min_persons`. With the defaults: 2 + 2 = 4.
pub fn count_error_bound(p: &OutputControl) -> u64 {
    let base = u64::from(p.rounding_base);
    let perturb_and_round = MAX_PERTURBATION + base / 2;
    perturb_and_round.max(base.saturating_sub(u64::from(p.min_persons)))
}

// ---------------------------------------------------------------------------------------------
// Protected sums and means.
// ---------------------------------------------------------------------------------------------

/// How many contributions, after the top ones, set the level the top ones are flattened to:
/// the top contributions of a cell are replaced by the mean magnitude of the next
/// `FLATTEN_NEXT`.
pub const FLATTEN_NEXT: usize = 4;

/// From this many persons on, the top two contributions are flattened instead of one.
pub const FLATTEN_TWO_FROM: usize = 20;

/// The noise of a sum is `u * SUM_NOISE_FACTOR * a`, with `u` = [`sum_noise`] in `[-1, 1]` and
/// `a` the mean magnitude of the flattened top contributions.
pub const SUM_NOISE_FACTOR: f64 = 1.0;

/// How many top contributions are flattened in a cell of `persons` persons: 1 below
/// [`FLATTEN_TWO_FROM`], 2 from there on.
pub fn flatten_top(persons: usize) -> usize {
    if persons < FLATTEN_TWO_FROM {
        1
    } else {
        MAX_FLATTEN_TOP
    }
}

/// The most top contributions [`flatten_top`] flattens (`fs_top_counts` keeps this many
/// plus [`FLATTEN_NEXT`] per cell).
pub const MAX_FLATTEN_TOP: usize = 2;

/// The noise factor of sums in the cell with key `cell_key`, in `[-1, 1]`.
///
/// The 256 keys are put in a fixed order (SHA-256 of a label of its own, unrelated to the
/// threshold and count orders); the key at position `j` gets `(2j - 255) / 255`, so the 256
/// values are evenly spread over `[-1, 1]`, symmetric and zero-mean.
///
/// It depends on the cell key only, not on the value: two sums over the same persons (of a
/// column and of a rescaled or shifted copy of it) get the same `u`, so rephrasing a sum does
/// not give fresh noise to average away.
pub fn sum_noise(cell_key: u8) -> f64 {
    static RANK: OnceLock<[u8; 256]> = OnceLock::new();
    let rank = RANK.get_or_init(|| key_rank(SUM_NOISE_LABEL, 0));
    (2.0 * f64::from(rank[usize::from(cell_key)]) - 255.0) / 255.0
}

/// A cell's contributions after flattening.
struct Flattened {
    /// The sum of the flattened contributions.
    sum: f64,
    /// The noise scale: [`SUM_NOISE_FACTOR`] × the mean magnitude of the next contributions,
    /// which is also the mean magnitude of the top `k + FLATTEN_NEXT` flattened ones.
    scale: f64,
    /// How far flattening moved the sum at most: the total magnitude removed from the top
    /// contributions.
    shift: f64,
}

/// Flattens a cell's per-person contributions (see [`protect_sum`]). `None` when a
/// contribution is not finite or there are fewer than `k + FLATTEN_NEXT` of them.
fn flatten(contributions: &[f64]) -> Option<Flattened> {
    if contributions.iter().any(|c| !c.is_finite()) {
        return None;
    }
    let k = flatten_top(contributions.len());
    if contributions.len() < k + FLATTEN_NEXT {
        return None;
    }
    // Largest magnitude first; equal magnitudes by value, so the order (and hence the
    // floating-point sum) depends on the multiset only, not on the input order.
    let mut sorted = contributions.to_vec();
    sorted.sort_unstable_by(|a, b| b.abs().total_cmp(&a.abs()).then(b.total_cmp(a)));
    let next = &sorted[k..k + FLATTEN_NEXT];
    let next_mean = next.iter().map(|c| c.abs()).sum::<f64>() / FLATTEN_NEXT as f64;
    let mut shift = 0.0;
    for c in &mut sorted[..k] {
        shift += c.abs() - next_mean;
        *c = next_mean.copysign(*c);
    }
    // Smallest magnitude first, for accuracy.
    let sum = sorted.iter().rev().sum::<f64>();
    Some(Flattened {
        sum,
        scale: SUM_NOISE_FACTOR * next_mean,
        shift,
    })
}

/// The released value of a sum (rule 4, second part, and rule 5).
///
/// `contributions` are the per-person totals of the cell, one per person, in any order; the
/// cell's persons are `contributions.len()`. Steps:
///
/// 1. Suppressed when the persons are below the [`suppression_threshold`].
/// 2. Contributions are ordered by magnitude; the top `k` ([`flatten_top`]: 1, or 2 from
///    [`FLATTEN_TWO_FROM`] persons on) are replaced by `a`, the mean magnitude of the next
///    [`FLATTEN_NEXT`], keeping their signs (outlier flattening, as Open Diffix does): one
///    heavy contributor cannot dominate the answer or be read off it.
/// 3. Noise `u × SUM_NOISE_FACTOR × a` is added, `u` = [`sum_noise`] of the cell key — in
///    proportion to the largest contribution that remains after flattening.
/// 4. The result is rounded to `p.significant_figures` ([`round_sig`]).
///
/// Fails closed (suppressed) on a non-finite contribution or result, and when a cell has
/// fewer than `k + FLATTEN_NEXT` persons (only possible with `min_persons` below the floor).
/// Error: at most [`sum_error_bound`] from the true sum.
pub fn protect_sum(contributions: &[f64], cell_key: u8, p: &OutputControl) -> Released<f64> {
    let persons = u64::try_from(contributions.len()).unwrap_or(u64::MAX);
    if is_suppressed(persons, cell_key, p) {
        return Released::Suppressed;
    }
    let Some(flat) = flatten(contributions) else {
        return Released::Suppressed;
    };
    let noisy = flat.sum + sum_noise(cell_key) * flat.scale;
    let released = round_sig(noisy, p.significant_figures);
    if released.is_finite() {
        Released::Value(released)
    } else {
        Released::Suppressed
    }
}

/// The largest difference between a released sum ([`protect_sum`] not suppressed) and the
/// true sum of `contributions`, whatever the cell key:
///
/// `F + N + 0.5 × 10^(1 − sig) × (|S_f| + N)`, where `F` is the magnitude flattening removed
/// (the sum of `|c| − a` over the top `k` contributions), `N = SUM_NOISE_FACTOR × a` the
/// largest noise, `S_f` the flattened sum and the last term the worst rounding to `sig`
/// significant figures of a value at most `|S_f| + N` in magnitude; plus a relative 1e-9 for
/// floating-point arithmetic. `None` for contributions that [`protect_sum`] always suppresses
/// (a non-finite value, or too few to flatten).
pub fn sum_error_bound(contributions: &[f64], p: &OutputControl) -> Option<f64> {
    let flat = flatten(contributions)?;
    let sig = i32::try_from(p.significant_figures.max(1)).unwrap_or(i32::MAX);
    let rounding = 0.5 * pow10(1 - sig) * (flat.sum.abs() + flat.scale);
    Some((flat.shift + flat.scale + rounding) * (1.0 + 1e-9))
}

/// The released value of a mean, `AVG`: the released sum ([`protect_sum`] of the per-person
/// totals `contributions`) divided by the released count of the `rows` averaged over
/// ([`protect_rows`] of `rows` with `contributions.len()` persons and the largest
/// per-person row counts `top_rows`), rounded to `p.significant_figures`.
///
/// Dividing released values, rather than the true or merely perturbed row count, makes the
/// mean a function of what `SUM` and `COUNT` of the same cell release: it reveals nothing
/// they do not. The price is accuracy in small cells (the count is off by at most
/// [`rows_error_bound`]). Suppressed when either part is.
pub fn protect_mean(
    contributions: &[f64],
    rows: u64,
    top_rows: &[u64],
    cell_key: u8,
    p: &OutputControl,
) -> Released<f64> {
    let persons = u64::try_from(contributions.len()).unwrap_or(u64::MAX);
    let sum = protect_sum(contributions, cell_key, p);
    let count = protect_rows(rows, persons, top_rows, cell_key, p);
    match (sum, count) {
        (Released::Value(s), Released::Value(n)) if n > 0 => {
            let mean = round_sig(s / n as f64, p.significant_figures);
            if mean.is_finite() {
                Released::Value(mean)
            } else {
                Released::Suppressed
            }
        }
        _ => Released::Suppressed,
    }
}

/// A rate `numerator / denominator × per` (for example per 1000), computed from *released*
/// counts only (rule 5: rates use the rounded numerator and denominator), rounded to `sig`
/// significant figures. Suppressed when either side is suppressed, the denominator is 0 or
/// `per` is not finite. Adds no information beyond the two released counts.
pub fn protect_rate(
    numerator: Released<u64>,
    denominator: Released<u64>,
    per: f64,
    sig: u32,
) -> Released<f64> {
    match (numerator, denominator) {
        (Released::Value(n), Released::Value(d)) if d > 0 && per.is_finite() => {
            let rate = round_sig(n as f64 / d as f64 * per, sig);
            if rate.is_finite() {
                Released::Value(rate)
            } else {
                Released::Suppressed
            }
        }
        _ => Released::Suppressed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn defaults() -> OutputControl {
        OutputControl::default()
    }

    fn strict() -> OutputControl {
        OutputControl {
            min_persons: 10,
            rounding_base: 10,
            ..OutputControl::default()
        }
    }

    fn keys() -> impl Iterator<Item = u8> {
        0..=u8::MAX
    }

    /// Every key that gives `t` with `p`.
    fn keys_with_extra(t: u32, p: &OutputControl) -> Vec<u8> {
        keys().filter(|&k| threshold_extra(k, p) == t).collect()
    }

    /// 19 ordinary contributions, 10.0 to 19.0 (sum 275.5), and one of a million.
    fn with_outlier() -> Vec<f64> {
        let mut c: Vec<f64> = (0..19).map(|i| 10.0 + f64::from(i) * 0.5).collect();
        c.push(1e6);
        c
    }

    #[test]
    fn golden_perturbations() {
        let cases: [(u64, u8, u64); 16] = [
            (8, 0, 6),
            (8, 4, 7),
            (8, 1, 8),
            (8, 7, 9),
            (8, 23, 10),
            (9, 8, 7),
            (9, 23, 11),
            (12, 19, 10),
            (12, 33, 14),
            (50, 44, 48),
            (50, 6, 52),
            (1000, 44, 998),
            (1000, 1, 999),
            (1000, 0, 1000),
            (1000, 3, 1001),
            (1000, 6, 1002),
        ];
        for (count, key, want) in cases {
            assert_eq!(perturb_count(count, key), want, "count {count} key {key}");
        }
        // Counts above PTABLE_EXACT_COUNTS share one row.
        assert_eq!(perturbation(21, 6), 2);
        assert_eq!(perturbation(u64::MAX, 44), -2);
        assert_eq!(perturb_count(u64::MAX, 6), u64::MAX);
    }

    #[test]
    fn golden_ptable_digest() {
        let bytes: Vec<u8> = ptable()
            .iter()
            .flatten()
            .map(|p| p.to_be_bytes()[0])
            .collect();
        assert_eq!(bytes.len(), PTABLE_ROWS * 256);
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            "7289faa76f3bcb6d839873f3b5f53caf737be8fd70485b1592713c7bbb77bb66"
        );
    }

    #[test]
    fn low_effect_thresholds_spread_evenly_from_the_floor_to_the_ceiling() {
        for p in [defaults(), strict()] {
            let (floor, ceiling) = (low_effect_floor(&p), low_effect_ceiling(&p));
            assert_eq!(
                floor,
                u64::from(p.min_persons) + 1 + u64::from(p.noise_extra_threshold)
            );
            let mut per_value = BTreeMap::new();
            for key in keys() {
                *per_value
                    .entry(low_effect_threshold(key, &p))
                    .or_insert(0u32) += 1;
            }
            let values: Vec<u64> = per_value.keys().copied().collect();
            assert_eq!(values, (floor..=ceiling).collect::<Vec<_>>());
            let spread = ceiling - floor + 1;
            let fewest = u32::try_from(256 / spread).expect("at most 256");
            assert!(
                per_value.values().all(|&n| n == fewest || n == fewest + 1),
                "{per_value:?}"
            );
            for key in keys() {
                assert!(is_low_effect(floor - 1, key, &p));
                assert!(!is_low_effect(ceiling, key, &p));
            }
        }
        // Neighbouring keys get unrelated thresholds, and the order is not the suppression
        // threshold's.
        let p = defaults();
        let thresholds: Vec<u64> = (0..8).map(|k| low_effect_threshold(k, &p)).collect();
        assert_eq!(thresholds, vec![13, 13, 14, 11, 13, 13, 13, 12]);
    }

    #[test]
    fn golden_threshold_extra() {
        let p = defaults();
        let cases: [(u8, u32); 6] = [(0, 2), (1, 0), (2, 1), (3, 0), (128, 1), (255, 2)];
        for (key, want) in cases {
            assert_eq!(threshold_extra(key, &p), want, "key {key}");
            assert_eq!(suppression_threshold(key, &p), 8 + u64::from(want));
        }
    }

    #[test]
    fn golden_sum_noise() {
        assert_eq!(sum_noise(0), 9.0 / 255.0);
        assert_eq!(sum_noise(1), -147.0 / 255.0);
        assert_eq!(sum_noise(255), 205.0 / 255.0);
    }

    #[test]
    fn deterministic_and_key_dependent() {
        for count in [0u64, 1, 8, 9, 15, 20, 21, 500] {
            for key in keys() {
                assert_eq!(perturb_count(count, key), perturb_count(count, key));
                assert_eq!(
                    protect_count(count, count, key, &defaults()),
                    protect_count(count, count, key, &defaults())
                );
            }
        }
        // Different keys give different perturbations of the same count...
        let values: std::collections::BTreeSet<u64> =
            keys().map(|k| perturb_count(100, k)).collect();
        assert_eq!(
            values.into_iter().collect::<Vec<_>>(),
            [98, 99, 100, 101, 102]
        );
        // ...and different rows are unrelated: the same key perturbs counts differently.
        assert_ne!(ptable()[8], ptable()[9]);
        assert_ne!(ptable()[20], ptable()[21]);
    }

    #[test]
    fn every_row_follows_its_designed_distribution_exactly() {
        for (row, cells) in ptable().iter().enumerate() {
            let count = u64::try_from(row).expect("row fits u64");
            let dist = perturbation_distribution(count);
            for &(value, n) in dist {
                let got = cells.iter().filter(|&&p| p == value).count();
                assert_eq!(got, usize::from(n), "row {row} value {value}");
            }
            let covered: usize = dist.iter().map(|&(_, n)| usize::from(n)).sum();
            assert_eq!(covered, 256, "row {row}");
            let total: i64 = cells.iter().map(|&p| i64::from(p)).sum();
            assert_eq!(total, 0, "row {row} mean perturbation");
        }
        let row8: Vec<i64> = [-2, -1, 0, 1, 2]
            .iter()
            .map(|&v| ptable()[8].iter().filter(|&&p| p == v).count() as i64)
            .collect();
        assert_eq!(row8, [13, 51, 128, 51, 13]);
        assert_eq!(ptable_row(0), 0);
        assert_eq!(ptable_row(20), 20);
        assert_eq!(ptable_row(21), 21);
        assert_eq!(ptable_row(u64::MAX), 21);
    }

    #[test]
    fn small_counts_never_go_negative() {
        for key in keys() {
            assert_eq!(perturb_count(0, key), 0);
            assert!(perturb_count(1, key) <= 2);
            for count in 0..=30u64 {
                let p = i64::from(perturbation(count, key));
                assert!(i64::try_from(count).expect("small count") + p >= 0);
                assert!(p.unsigned_abs() <= MAX_PERTURBATION);
            }
        }
    }

    #[test]
    fn threshold_with_defaults() {
        let p = defaults();
        for key in keys() {
            for persons in 0..=7 {
                assert!(
                    is_suppressed(persons, key, &p),
                    "{persons} persons key {key}"
                );
                assert_eq!(
                    protect_count(persons, persons, key, &p),
                    Released::Suppressed
                );
            }
            for persons in 10..=200 {
                assert!(
                    !is_suppressed(persons, key, &p),
                    "{persons} persons key {key}"
                );
            }
            assert!(threshold_extra(key, &p) <= 2);
        }
        // The threshold really is noisy: 8 and 9 persons are released under some keys only.
        assert_eq!(keys_with_extra(0, &p).len(), 86);
        assert_eq!(keys_with_extra(1, &p).len(), 85);
        assert_eq!(keys_with_extra(2, &p).len(), 85);
        assert!(is_suppressed(8, 0, &p));
        assert!(!is_suppressed(8, 1, &p));
        assert!(is_suppressed(9, 0, &p));
        assert!(!is_suppressed(9, 2, &p));
        let released_8 = keys().filter(|&k| !is_suppressed(8, k, &p)).count();
        let released_9 = keys().filter(|&k| !is_suppressed(9, k, &p)).count();
        assert_eq!((released_8, released_9), (86, 171));
    }

    #[test]
    fn threshold_extra_covers_its_range_evenly() {
        for n in 0..=crate::register::MAX_NOISE_EXTRA_THRESHOLD {
            let p = OutputControl {
                noise_extra_threshold: n,
                ..defaults()
            };
            for t in 0..=n {
                let keys = keys_with_extra(t, &p).len();
                assert!(keys == 256 / (n as usize + 1) || keys == 256 / (n as usize + 1) + 1);
            }
            assert!(keys().all(|k| threshold_extra(k, &p) <= n));
        }
    }

    #[test]
    fn stricter_parameters_suppress_and_round_more() {
        let (loose, tight) = (defaults(), strict());
        for key in keys() {
            assert_eq!(protect_count(9, 9, key, &tight), Released::Suppressed);
            assert!(suppression_threshold(key, &tight) > suppression_threshold(key, &loose));
            for count in 12..=300 {
                let Released::Value(v) = protect_count(count, count, key, &tight) else {
                    panic!("{count} persons suppressed under key {key}");
                };
                assert_eq!(v % 10, 0);
            }
        }
        assert!(keys().any(|k| protect_count(9, 9, k, &loose) != Released::Suppressed));
        assert_eq!(protect_count(12, 12, 33, &loose), Released::Value(15));
        assert_eq!(protect_count(12, 12, 33, &tight), Released::Value(10));
    }

    #[test]
    fn round_count_goldens() {
        let cases: [(u64, u32, u64); 14] = [
            (0, 5, 0),
            (2, 5, 0),
            (3, 5, 5),
            (7, 5, 5),
            (8, 5, 10),
            (12, 5, 10),
            (13, 5, 15),
            (1002, 5, 1000),
            (1003, 5, 1005),
            (4, 10, 0),
            (5, 10, 10),
            (14, 10, 10),
            (15, 10, 20),
            (7, 15, 0),
        ];
        for (v, base, want) in cases {
            assert_eq!(round_count(v, base), want, "{v} base {base}");
        }
        assert_eq!(round_count(8, 15), 15);
        assert_eq!(round_count(7, 0), 7);
        assert_eq!(round_count(7, 1), 7);
        assert_eq!(round_count(u64::MAX, 5), u64::MAX);
    }

    #[test]
    fn released_counts_are_multiples_within_the_bound() {
        assert_eq!(count_error_bound(&defaults()), 4);
        assert_eq!(count_error_bound(&strict()), 7);
        let huge_base = OutputControl {
            rounding_base: 30,
            ..defaults()
        };
        assert_eq!(count_error_bound(&huge_base), 22);
        for p in [defaults(), strict(), huge_base] {
            let bound = count_error_bound(&p);
            let base = u64::from(p.rounding_base);
            for count in 8..=2000u64 {
                for key in keys() {
                    match protect_count(count, count, key, &p) {
                        Released::Value(v) => {
                            assert_eq!(v % base, 0, "{count} key {key} {p:?}");
                            assert!(v >= base);
                            assert!(v.abs_diff(count) <= bound, "{count} key {key} -> {v}");
                        }
                        Released::Suppressed => {
                            assert!(count < suppression_threshold(key, &p));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn protect_count_goldens() {
        let p = defaults();
        assert_eq!(protect_count(1000, 1000, 6, &p), Released::Value(1000));
        assert_eq!(protect_count(1000, 1000, 3, &p), Released::Value(1000));
        assert_eq!(protect_count(12, 12, 19, &p), Released::Value(10));
        assert_eq!(protect_count(50, 50, 44, &p), Released::Value(50));
        assert_eq!(protect_count(8, 8, 1, &p), Released::Value(10));
        assert_eq!(protect_count(8, 8, 0, &p), Released::Suppressed);
    }

    #[test]
    fn count_and_persons_differ() {
        let p = defaults();
        for key in keys() {
            // Many events of few persons: suppressed on persons.
            assert_eq!(protect_count(500, 5, key, &p), Released::Suppressed);
            // Few counted things among many persons: a small number, suppressed too.
            for count in 0..=7 {
                assert_eq!(protect_count(count, 100, key, &p), Released::Suppressed);
            }
            // The perturbation follows the count being released, not the persons.
            assert_eq!(
                protect_count(500, 50, key, &p),
                Released::Value(round_count(perturb_count(500, key), 5))
            );
        }
    }

    #[test]
    fn a_released_count_is_never_below_the_base() {
        let p = OutputControl {
            rounding_base: 30,
            ..defaults()
        };
        // 8 persons perturbed to at most 10 round to 0; the floor releases 30 instead.
        assert_eq!(protect_count(8, 8, 1, &p), Released::Value(30));
        for key in keys() {
            for count in 0..=100 {
                if let Released::Value(v) = protect_count(count, count, key, &p) {
                    assert!(v >= 30);
                }
            }
        }
    }

    /// Where every person counts once, a count of rows is released as a count of persons;
    /// a person with many rows is flattened to the level of the next ones, so the answer
    /// does not depend on how many they have; and every release is within its bound.
    #[test]
    fn a_heavy_row_count_is_flattened() {
        let p = defaults();
        for key in keys() {
            for count in 8..60u64 {
                let ones = vec![1; usize::try_from(count).unwrap_or(0)];
                assert_eq!(
                    protect_rows(count, count, &ones[..6], key, &p),
                    protect_count(count, count, key, &p)
                );
                assert_eq!(
                    protect_rows(count, count, &ones, key, &p),
                    protect_count(count, count, key, &p)
                );
            }
            // 30 persons with one row and one with 100 (the top in any order), against
            // the same 31 persons with one row each.
            let mut heavy = vec![1u64; 30];
            heavy.push(100);
            heavy.reverse();
            assert_eq!(
                protect_rows(130, 31, &heavy[..6], key, &p),
                protect_rows(31, 31, &[1; 6], key, &p)
            );
            let tail: Vec<u64> = heavy[..6].iter().rev().copied().collect();
            assert_eq!(
                protect_rows(130, 31, &tail, key, &p),
                protect_rows(31, 31, &[1; 6], key, &p)
            );
            // A heavy row count just below the threshold's persons is still suppressed.
            assert_eq!(
                protect_rows(500, 7, &[400, 50, 20, 10, 10, 10], key, &p),
                Released::Suppressed
            );
        }
        // Persons with many rows each: noise grows with the level the top is flattened to,
        // and the release stays within the documented bound.
        let per_person: Vec<u64> = (0..40).map(|i| 5 + (i * 7) % 23).collect();
        let count: u64 = per_person.iter().sum();
        let mut top = per_person.clone();
        top.sort_unstable_by(|a, b| b.cmp(a));
        let bound = rows_error_bound(40, &top[..6], &p);
        assert!(bound > count_error_bound(&p) as f64);
        let mut seen = std::collections::BTreeSet::new();
        for key in keys() {
            let Released::Value(v) = protect_rows(count, 40, &top[..6], key, &p) else {
                panic!("40 persons are released");
            };
            assert!(
                v.abs_diff(count) as f64 <= bound,
                "{v} vs {count} ({bound})"
            );
            assert_eq!(v % 5, 0);
            seen.insert(v);
        }
        // More spread than ±2 and rounding to 5 alone could give.
        assert!(seen.len() > 3, "{seen:?}");
    }

    #[test]
    fn round_sig_goldens() {
        let cases: [(f64, u32, f64); 14] = [
            (123456.0, 3, 123000.0),
            (0.0012345, 2, 0.0012),
            (-123456.0, 3, -123000.0),
            (-0.0012345, 2, -0.0012),
            (0.0, 3, 0.0),
            (999.6, 3, 1000.0),
            (-987.0, 1, -1000.0),
            (1.0, 3, 1.0),
            (1000.0, 1, 1000.0),
            (0.1 + 0.2, 3, 0.3),
            (14.75, 3, 14.8),
            (123.45, 0, 100.0),
            (2.5, 1, 3.0),
            (6.02214076e23, 3, 6.02e23),
        ];
        for (v, sig, want) in cases {
            assert_eq!(round_sig(v, sig), want, "round_sig({v}, {sig})");
        }
        assert!(round_sig(f64::NAN, 3).is_nan());
        assert_eq!(round_sig(f64::INFINITY, 3), f64::INFINITY);
        assert_eq!(round_sig(5e-324, 3), 5e-324);
    }

    #[test]
    fn a_heavy_contributor_does_not_dominate_a_sum() {
        let p = defaults();
        let c = with_outlier();
        let without: f64 = c[..19].iter().sum();
        assert_eq!(without, 275.5);
        let goldens: [(u8, f64); 4] = [(0, 293.0), (1, 282.0), (7, 295.0), (255, 306.0)];
        for (key, want) in goldens {
            assert_eq!(protect_sum(&c, key, &p), Released::Value(want), "key {key}");
        }
        for key in keys() {
            let Released::Value(v) = protect_sum(&c, key, &p) else {
                panic!("20 persons suppressed under key {key}");
            };
            assert!(v > without * 0.8 && v < without * 1.25, "key {key}: {v}");
        }
        // Two outliers among 25 persons are both flattened.
        let mut two = vec![10.0; 23];
        two.extend([5e5, 7e5]);
        for key in keys() {
            let v = protect_sum(&two, key, &p).value().expect("released");
            assert!((200.0..=280.0).contains(&v), "key {key}: {v}");
        }
    }

    #[test]
    fn sums_are_deterministic_and_independent_of_input_order() {
        let p = defaults();
        let c = with_outlier();
        let mut shuffled = c.clone();
        shuffled.reverse();
        shuffled.swap(3, 11);
        for key in keys() {
            assert_eq!(protect_sum(&c, key, &p), protect_sum(&c, key, &p));
            assert_eq!(protect_sum(&c, key, &p), protect_sum(&shuffled, key, &p));
        }
        let distinct: std::collections::BTreeSet<u64> = keys()
            .map(|k| protect_sum(&c, k, &p).value().expect("released").to_bits())
            .collect();
        assert!(distinct.len() > 10);
    }

    #[test]
    fn sums_under_the_threshold_or_unusable_are_suppressed() {
        let p = defaults();
        for key in keys() {
            assert_eq!(protect_sum(&[10.0; 7], key, &p), Released::Suppressed);
            assert!(protect_sum(&[10.0; 10], key, &p).value().is_some());
            let mut bad = vec![10.0; 12];
            bad[4] = f64::NAN;
            assert_eq!(protect_sum(&bad, key, &p), Released::Suppressed);
            bad[4] = f64::INFINITY;
            assert_eq!(protect_sum(&bad, key, &p), Released::Suppressed);
        }
        // Below the floor there may be too few persons to flatten: fail closed.
        let loose = OutputControl {
            min_persons: 0,
            noise_extra_threshold: 0,
            ..defaults()
        };
        assert_eq!(protect_sum(&[10.0; 4], 0, &loose), Released::Suppressed);
        assert_eq!(sum_error_bound(&[10.0; 4], &loose), None);
        // 50 + 10 × 9/255 = 50.35…, to 3 significant figures.
        assert_eq!(protect_sum(&[10.0; 5], 0, &loose), Released::Value(50.4));
    }

    #[test]
    fn negative_contributions_are_flattened_by_magnitude() {
        let p = defaults();
        let mut c: Vec<f64> = (0..11).map(|i| -10.0 - f64::from(i)).collect();
        c.push(-1e7);
        let without: f64 = c[..11].iter().sum();
        assert_eq!(without, -165.0);
        for key in keys() {
            let v = protect_sum(&c, key, &p).value().expect("released");
            assert!(
                v < 0.0 && v > without * 1.25 && v < without * 0.8,
                "key {key}: {v}"
            );
        }
        // Mixed signs: the negative outlier is flattened to minus the mean magnitude.
        let mixed = [1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0, 9.0, -10.0, -1e9];
        let v = protect_sum(&mixed, 1, &p).value().expect("released");
        assert!(v.abs() < 50.0, "{v}");
    }

    #[test]
    fn sums_stay_within_their_error_bound() {
        let p = defaults();
        let sets: Vec<Vec<f64>> = vec![
            with_outlier(),
            vec![3.5; 8],
            (1..=40).map(f64::from).collect(),
            (0..30).map(|i| f64::from(i % 7) * -12.25 + 1.0).collect(),
            vec![0.0; 9],
            (0..15).map(|i| 1e9 + f64::from(i)).collect(),
        ];
        for c in &sets {
            let truth: f64 = c.iter().sum();
            let bound = sum_error_bound(c, &p).expect("protectable");
            for key in keys() {
                if let Released::Value(v) = protect_sum(c, key, &p) {
                    assert!(
                        (v - truth).abs() <= bound,
                        "{c:?} key {key}: {v} vs {truth}"
                    );
                }
            }
        }
        assert_eq!(sum_error_bound(&[0.0; 9], &p), Some(0.0));
        assert_eq!(protect_sum(&[0.0; 12], 0, &p), Released::Value(0.0));
    }

    #[test]
    fn sum_noise_is_symmetric_in_unit_interval() {
        let values: Vec<f64> = keys().map(sum_noise).collect();
        assert!(values.iter().all(|u| (-1.0..=1.0).contains(u)));
        assert_eq!(values.iter().copied().fold(f64::INFINITY, f64::min), -1.0);
        assert_eq!(
            values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            1.0
        );
        let mut bits: Vec<i64> = values.iter().map(|u| (u * 255.0).round() as i64).collect();
        assert_eq!(bits.iter().sum::<i64>(), 0);
        bits.sort_unstable();
        bits.dedup();
        assert_eq!(bits.len(), 256);
    }

    #[test]
    fn means_divide_released_values() {
        let p = defaults();
        let c = with_outlier();
        // One row per person: the count of persons.
        let ones = [1; 6];
        assert_eq!(protect_mean(&c, 20, &ones, 7, &p), Released::Value(14.8));
        assert_eq!(protect_mean(&c, 20, &ones, 0, &p), Released::Value(14.7));
        // 35 rows: 15 persons with 2, 5 with 1; and 15 with 1, 5 with 4 (flattened).
        for (rows, top) in [(35, [2u64; 6]), (35, [4, 4, 4, 4, 4, 1])] {
            for key in keys() {
                let sum = protect_sum(&c, key, &p).value().expect("released");
                let count = protect_rows(rows, 20, &top, key, &p)
                    .value()
                    .expect("released");
                let want = round_sig(sum / count as f64, 3);
                assert_eq!(protect_mean(&c, rows, &top, key, &p), Released::Value(want));
            }
        }
        for key in keys() {
            // Too few averaged rows, too few persons, or no per-person counts: suppressed.
            assert_eq!(protect_mean(&c, 3, &ones, key, &p), Released::Suppressed);
            assert_eq!(
                protect_mean(&c[..7], 30, &ones, key, &p),
                Released::Suppressed
            );
            assert_eq!(protect_mean(&c, 20, &[], key, &p), Released::Suppressed);
        }
    }

    #[test]
    fn rates_use_released_values_only() {
        use Released::{Suppressed, Value};
        assert_eq!(protect_rate(Value(10), Value(40), 1000.0, 3), Value(250.0));
        assert_eq!(protect_rate(Value(15), Value(35), 100.0, 3), Value(42.9));
        assert_eq!(protect_rate(Value(0), Value(35), 100.0, 3), Value(0.0));
        assert_eq!(protect_rate(Suppressed, Value(40), 1000.0, 3), Suppressed);
        assert_eq!(protect_rate(Value(10), Suppressed, 1000.0, 3), Suppressed);
        assert_eq!(protect_rate(Suppressed, Suppressed, 1000.0, 3), Suppressed);
        assert_eq!(protect_rate(Value(10), Value(0), 1000.0, 3), Suppressed);
        assert_eq!(protect_rate(Value(10), Value(40), f64::NAN, 3), Suppressed);
        // From released counts: a rate reproduces exactly from the two published numbers.
        let p = defaults();
        for key in keys() {
            let num = protect_count(123, 123, key, &p);
            let den = protect_count(4567, 4567, key.wrapping_add(1), &p);
            let (n, d) = (
                num.value().expect("released"),
                den.value().expect("released"),
            );
            assert_eq!(
                protect_rate(num, den, 1000.0, 3),
                Value(round_sig(n as f64 / d as f64 * 1000.0, 3))
            );
        }
    }

    #[test]
    fn released_helpers() {
        assert_eq!(Released::Value(3).value(), Some(3));
        assert_eq!(Released::<u64>::Suppressed.value(), None);
        assert!(Released::<f64>::Suppressed.is_suppressed());
        assert!(!Released::Value(1.0).is_suppressed());
    }
}
