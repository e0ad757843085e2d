//! Small helpers: calendar days, seeded streams and random draws.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

pub use crate::dates::{civil_from_days as civil, days_from_civil as ymd};

/// `YYYY-MM-DD` of a day number.
pub fn fmt_date(days: i32) -> [u8; 10] {
    let (y, m, d) = civil(days);
    let y = y.clamp(0, 9999) as u32;
    [
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
        b'0' + (m / 10) as u8,
        b'0' + (m % 10) as u8,
        b'-',
        b'0' + (d / 10) as u8,
        b'0' + (d % 10) as u8,
    ]
}

/// Completed years between a date of birth and a date.
pub fn age_years(dob: i32, at: i32) -> i32 {
    let (y0, m0, d0) = civil(dob);
    let (y1, m1, d1) = civil(at);
    let mut age = y1 - y0;
    if (m1, d1) < (m0, d0) {
        age -= 1;
    }
    age.max(0)
}

/// Age as HES records it: years, or 7001..7007 for infants under one year.
pub fn hes_age(dob: i32, at: i32) -> u16 {
    let years = age_years(dob, at);
    if years > 0 {
        return years.min(120) as u16;
    }
    match at - dob {
        i32::MIN..=0 => 7001,
        1..=6 => 7002,
        7..=28 => 7003,
        29..=90 => 7004,
        91..=181 => 7005,
        182..=272 => 7006,
        _ => 7007,
    }
}

/// Decimal digits of `n` into `buf`, returning the used tail.
pub fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// An independent ChaCha8 stream for (seed, label, index).
pub fn stream(seed: u64, label: &str, index: u64) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(b"fivesafes-synth-v1\0");
    h.update(seed.to_le_bytes());
    h.update(label.as_bytes());
    h.update([0]);
    h.update(index.to_le_bytes());
    ChaCha8Rng::from_seed(h.finalize().into())
}

/// Uniform in [0, 1).
pub fn unif(rng: &mut impl Rng) -> f64 {
    rng.random::<f64>()
}

/// True with probability `p` (any `p`; values outside [0, 1] saturate).
pub fn chance(rng: &mut impl Rng, p: f64) -> bool {
    unif(rng) < p
}

/// Standard normal (Box–Muller).
pub fn normal(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - unif(rng);
    let u2 = unif(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Exponential with the given mean.
pub fn exponential(rng: &mut impl Rng, mean: f64) -> f64 {
    -mean * (1.0 - unif(rng)).ln()
}

/// Log-normal with mean 1 and log-scale `sigma` (a heavy-tailed frailty).
pub fn frailty(rng: &mut impl Rng, sigma: f64) -> f64 {
    (sigma * normal(rng) - sigma * sigma / 2.0).exp()
}

/// Uniform integer in `lo..=hi` (returns `lo` when the range is empty).
pub fn between(rng: &mut impl Rng, lo: i32, hi: i32) -> i32 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

/// Uniform index below `n` (0 when `n` is 0).
pub fn index(rng: &mut impl Rng, n: usize) -> usize {
    if n <= 1 { 0 } else { rng.random_range(0..n) }
}

/// Picks an item by weight (the last item when weights are all zero).
pub fn weighted<T: Copy>(rng: &mut impl Rng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w.max(0.0)).sum();
    let mut x = unif(rng) * total;
    for (item, w) in items {
        let w = w.max(0.0);
        if x < w {
            return *item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

/// Event days of a Poisson process of `per_year` events over `from..=to`, appended to `out`.
pub fn poisson_days(rng: &mut impl Rng, from: i32, to: i32, per_year: f64, out: &mut Vec<i32>) {
    if per_year <= 0.0 || to < from {
        return;
    }
    let mean_gap = 365.25 / per_year;
    let mut t = f64::from(from) + exponential(rng, mean_gap);
    while t <= f64::from(to) + 0.999 {
        out.push((t.floor() as i32).min(to));
        t += exponential(rng, mean_gap);
    }
}

/// Splitmix64 finaliser: a cheap, well-mixed hash of a 64-bit value.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
