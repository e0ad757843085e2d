//! Synthetic NHS numbers: a seeded bijection from person index to a valid, distinct number.
//!
//! The first eight digits are `4` followed by a seven-digit block: a 4-round Feistel permutation
//! of `person mod 10^7` on 24 bits, cycle-walked into `0..10^7`. The ninth digit is the
//! `person / 10^7`-th digit (in a seeded rotation of 0..9) that gives a valid check digit; every
//! eight-digit block has at least nine such digits, so indices below 9·10^7 map to distinct
//! valid numbers in 4000000000..4999999999.

use super::util::{mix64, stream};
use rand::Rng;

/// The mod-11 check digit for the first nine digits of an NHS number; `None` when the check
/// value would be 10 (no valid number has that prefix).
///
/// Digits may be given as values (`[9, 4, 3, ...]`) or as ASCII (`*b"943476591"`).
pub fn nhs_check_digit(first9: &[u8; 9]) -> Option<u8> {
    let sum: u32 = first9
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let d = if d >= b'0' { d - b'0' } else { d };
            u32::from(d) * (10 - i as u32)
        })
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        c => Some(c as u8),
    }
}

/// Check digit of a nine-digit prefix given as a number.
fn check_of(prefix: u64) -> Option<u8> {
    let mut digits = [0u8; 9];
    let mut p = prefix;
    for d in digits.iter_mut().rev() {
        *d = (p % 10) as u8;
        p /= 10;
    }
    nhs_check_digit(&digits)
}

const BLOCKS: u32 = 10_000_000;

/// The seeded person-index → NHS-number bijection.
pub struct NhsNumbers {
    keys: [u64; 4],
    rotation: u64,
}

impl NhsNumbers {
    /// The bijection for a seed.
    pub fn new(seed: u64) -> Self {
        let mut rng = stream(seed, "nhs-numbers", 0);
        NhsNumbers {
            keys: [rng.random(), rng.random(), rng.random(), rng.random()],
            rotation: rng.random(),
        }
    }

    fn feistel(&self, x: u32) -> u32 {
        let (mut l, mut r) = (x >> 12, x & 0xFFF);
        for k in self.keys {
            let f = (mix64(u64::from(r) ^ k) & 0xFFF) as u32;
            (l, r) = (r, l ^ f);
        }
        (l << 12) | r
    }

    fn block(&self, q: u32) -> u32 {
        let mut x = q;
        loop {
            x = self.feistel(x);
            if x < BLOCKS {
                return x;
            }
        }
    }

    /// The NHS number (10 digits, valid check digit) of a person index below 9·10^7.
    pub fn number(&self, person: u64) -> u64 {
        let q = (person % u64::from(BLOCKS)) as u32;
        let k = person / u64::from(BLOCKS);
        let first8 = 40_000_000 + u64::from(self.block(q));
        let rot = mix64(first8 ^ self.rotation) % 10;
        let mut seen = 0;
        let mut last_valid = 0;
        for i in 0..10 {
            let prefix = first8 * 10 + (rot + i) % 10;
            if let Some(c) = check_of(prefix) {
                last_valid = prefix * 10 + u64::from(c);
                if seen == k {
                    return last_valid;
                }
                seen += 1;
            }
        }
        // Unreachable for person < 9·10^7 (every block has at least nine valid ninth digits).
        last_valid
    }
}

/// The same number with a wrong check digit (`salt` picks which wrong digit).
pub fn wrong_check(nhs: u64, salt: u64) -> u64 {
    let c = nhs % 10;
    nhs - c + (c + 1 + salt % 9) % 10
}

/// Whether a 10-digit number has a valid check digit.
#[cfg(test)]
pub fn is_valid(nhs: u64) -> bool {
    (1_000_000_000..10_000_000_000).contains(&nhs) && check_of(nhs / 10) == Some((nhs % 10) as u8)
}
