//! Field validators for raw extracts. Each returns the parsed value or `None`; callers turn a
//! `None` into a reject with a fixed reason (never the value itself).

use crate::dates::parse_ymd;

/// Parses a 10-digit NHS number with a valid mod-11 check digit.
pub fn nhs_number(s: &[u8]) -> Option<u64> {
    if s.len() != 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = s[..9]
        .iter()
        .enumerate()
        .map(|(i, &c)| u32::from(c - b'0') * (10 - i as u32))
        .sum();
    let check = match 11 - (sum % 11) {
        11 => 0,
        10 => return None,
        c => c,
    };
    (u32::from(s[9] - b'0') == check).then(|| {
        s.iter()
            .fold(0u64, |acc, &c| acc * 10 + u64::from(c - b'0'))
    })
}

/// A required ISO date.
pub fn date(s: &[u8]) -> Option<i32> {
    parse_ymd(s)
}

/// An optional ISO date: `Ok(None)` when empty, `Err(())` when present but invalid.
#[allow(clippy::result_unit_err)]
pub fn opt_date(s: &[u8]) -> Result<Option<i32>, ()> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse_ymd(s).map(Some).ok_or(())
    }
}

/// A string of `min..=max` ASCII digits.
pub fn digits(s: &[u8], min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.iter().all(u8::is_ascii_digit)
}

/// A string of `min..=max` upper-case letters or digits.
pub fn alnum(s: &[u8], min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
}

/// An ODS GP practice code: a letter and five digits (`A81001`; HES uses `V81999` for unknown).
pub fn practice_code(s: &[u8]) -> bool {
    s.len() == 6 && s[0].is_ascii_uppercase() && s[1..].iter().all(u8::is_ascii_digit)
}

/// A SNOMED CT concept id: 6 to 18 digits.
pub fn snomed(s: &[u8]) -> bool {
    digits(s, 6, 18)
}

/// A dm+d code: 6 to 18 digits.
pub fn dmd(s: &[u8]) -> bool {
    digits(s, 6, 18)
}

/// A BNF code: four digits of chapter and section, then 5 to 11 letters or digits
/// (`0501013B0` chemical substance, up to 15-character presentation codes).
pub fn bnf(s: &[u8]) -> bool {
    s.len() >= 9 && s.len() <= 15 && digits(&s[..4], 4, 4) && alnum(&s[4..], 5, 11)
}

/// An ICD-10 4-character code with `X` filler: `I10X`, `E119`.
pub fn icd10(s: &[u8]) -> bool {
    s.len() == 4
        && s[0].is_ascii_uppercase()
        && s[1].is_ascii_digit()
        && s[2].is_ascii_digit()
        && (s[3].is_ascii_digit() || s[3] == b'X')
}

/// A comma-separated list of ICD-10 codes (at least one).
pub fn icd10_list(s: &[u8]) -> bool {
    !s.is_empty() && s.split(|&c| c == b',').all(icd10)
}

/// An OPCS-4 4-character code: `H011`.
pub fn opcs4(s: &[u8]) -> bool {
    s.len() == 4 && s[0].is_ascii_uppercase() && s[1..].iter().all(u8::is_ascii_digit)
}

/// A comma-separated list of OPCS-4 codes.
pub fn opcs4_list(s: &[u8]) -> bool {
    !s.is_empty() && s.split(|&c| c == b',').all(opcs4)
}

/// Sex as recorded: `F`, `M`, `I` (indeterminate), `U` (unknown).
pub fn sex(s: &[u8]) -> bool {
    matches!(s, b"F" | b"M" | b"I" | b"U")
}

/// NHS ethnic category: one letter `A`..`Z`.
pub fn ethnicity(s: &[u8]) -> bool {
    s.len() == 1 && s[0].is_ascii_uppercase()
}

/// HES admission method codes (elective, emergency, transfer, maternity and births).
pub fn admimeth(s: &[u8]) -> bool {
    matches!(
        s,
        b"11"
            | b"12"
            | b"13"
            | b"21"
            | b"22"
            | b"23"
            | b"24"
            | b"25"
            | b"28"
            | b"2A"
            | b"2B"
            | b"2C"
            | b"2D"
            | b"31"
            | b"32"
            | b"81"
            | b"82"
            | b"83"
            | b"84"
            | b"89"
            | b"98"
            | b"99"
    )
}

/// An age in years: 0..=120, or the HES infant codes 7001..=7007 (mapped to 0).
pub fn age(s: &[u8]) -> Option<i16> {
    if !digits(s, 1, 4) {
        return None;
    }
    let v: i16 = std::str::from_utf8(s).ok()?.parse().ok()?;
    match v {
        0..=120 => Some(v),
        7001..=7007 => Some(0),
        _ => None,
    }
}

/// A positive integer record id of up to 18 digits.
pub fn record_id(s: &[u8]) -> Option<i64> {
    if !digits(s, 1, 18) {
        return None;
    }
    let v = s
        .iter()
        .fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0'));
    (v > 0).then_some(v)
}

/// A small positive integer (episode order): 1..=99.
pub fn small_order(s: &[u8]) -> Option<i16> {
    if !digits(s, 1, 2) {
        return None;
    }
    let v = s
        .iter()
        .fold(0i16, |acc, &c| acc * 10 + i16::from(c - b'0'));
    (v > 0).then_some(v)
}

/// An optional decimal number of magnitude at most [`MAX_READING`](crate::catalog::MAX_READING)
/// (so never infinite or NaN).
#[allow(clippy::result_unit_err)]
pub fn opt_number(s: &[u8]) -> Result<Option<f64>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    let ok_chars = s
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !ok_chars {
        return Err(());
    }
    let v: f64 = std::str::from_utf8(s)
        .map_err(|_| ())?
        .parse()
        .map_err(|_| ())?;
    if v.abs() <= crate::catalog::MAX_READING {
        Ok(Some(v))
    } else {
        Err(())
    }
}

/// A boolean `true`/`false`.
pub fn boolean(s: &[u8]) -> Option<bool> {
    match s {
        b"true" => Some(true),
        b"false" => Some(false),
        _ => None,
    }
}

/// A UK postcode normalised for lookup: upper case, spaces removed, into a fixed key.
/// `None` when it does not have a postcode's shape (outward code of 2–4 characters starting
/// with a letter, inward code of a digit and two letters).
pub fn postcode_key(s: &[u8]) -> Option<[u8; 7]> {
    let mut key = [b' '; 7];
    let mut n = 0;
    for &c in s {
        if c == b' ' {
            continue;
        }
        if n == 7 || !c.is_ascii_alphanumeric() {
            return None;
        }
        key[n] = c.to_ascii_uppercase();
        n += 1;
    }
    if !(5..=7).contains(&n) {
        return None;
    }
    let inward = &key[n - 3..n];
    let outward = &key[..n - 3];
    let shape = outward[0].is_ascii_uppercase()
        && inward[0].is_ascii_digit()
        && inward[1].is_ascii_uppercase()
        && inward[2].is_ascii_uppercase();
    shape.then_some(key)
}

/// An LSOA code: `E01` or `W01` and six digits.
pub fn lsoa(s: &[u8]) -> bool {
    s.len() == 9 && (s.starts_with(b"E01") || s.starts_with(b"W01")) && digits(&s[3..], 6, 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers() {
        assert_eq!(nhs_number(b"9434765919"), Some(9_434_765_919));
        assert_eq!(nhs_number(b"9434765918"), None, "wrong check digit");
        assert_eq!(nhs_number(b"943476591"), None, "too short");
        assert_eq!(nhs_number(b"94347659l9"), None, "letter");
        // Remainder 1 gives check value 10, which no valid number has.
        assert_eq!(nhs_number(b"1000000010"), None);
        assert_eq!(nhs_number(b"4010232137"), Some(4_010_232_137));
    }

    #[test]
    fn codes() {
        assert!(icd10(b"I10X") && icd10(b"E119") && !icd10(b"E11.9") && !icd10(b"e119"));
        assert!(icd10_list(b"I10X,E119") && !icd10_list(b"I10X,") && !icd10_list(b""));
        assert!(bnf(b"0501013B0") && bnf(b"0501013K0AAABAB") && !bnf(b"XYZ") && !bnf(b"05010"));
        assert!(snomed(b"44054006") && !snomed(b"4405A006") && !snomed(b"123"));
        assert!(practice_code(b"A81001") && !practice_code(b"A8100") && !practice_code(b"181001"));
        assert!(opcs4(b"H011") && !opcs4(b"H01"));
        assert!(sex(b"F") && !sex(b"Q") && ethnicity(b"Z") && !ethnicity(b"ZZ"));
        assert!(admimeth(b"2A") && !admimeth(b"2E"));
        assert!(lsoa(b"E01000001") && !lsoa(b"E0100001"));
    }

    #[test]
    fn numbers_and_postcodes() {
        assert_eq!(age(b"45"), Some(45));
        assert_eq!(age(b"7003"), Some(0));
        assert_eq!(age(b"121"), None);
        assert_eq!(age(b"-1"), None);
        assert_eq!(record_id(b"123456789012"), Some(123_456_789_012));
        assert_eq!(record_id(b"0"), None);
        assert_eq!(opt_number(b"27.3"), Ok(Some(27.3)));
        assert_eq!(opt_number(b""), Ok(None));
        assert_eq!(opt_number(b"NaN"), Err(()));
        assert_eq!(opt_number(b"inf"), Err(()));
        assert_eq!(opt_number(b"-1e15"), Ok(Some(-1e15)));
        assert_eq!(opt_number(b"1.5e15"), Err(()));
        assert_eq!(opt_number(b"1e308"), Err(()));
        assert_eq!(postcode_key(b"ls1 4ap"), postcode_key(b"LS14AP"));
        assert!(postcode_key(b"LS1 4AP").is_some());
        assert!(postcode_key(b"SW1A 1AA").is_some());
        assert!(postcode_key(b"LS1").is_none());
        assert!(postcode_key(b"12345").is_none());
        assert_eq!(boolean(b"true"), Some(true));
        assert_eq!(boolean(b"yes"), None);
    }
}
