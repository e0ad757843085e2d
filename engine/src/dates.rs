//! Calendar arithmetic on Arrow `Date32` values (days since 1970-01-01) without a date crate:
//! strict ISO `YYYY-MM-DD` parsing for ingest, formatting, and UTC timestamps for manifests.

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub const fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number.
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Whether `year` is a leap year.
pub fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in a month of a year.
pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

/// Parses a strict `YYYY-MM-DD` date in years 1850..=2199 into a day number; `None` for
/// anything else (wrong shape, impossible day, implausible year).
pub fn parse_ymd(s: &[u8]) -> Option<i32> {
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let num = |r: &[u8]| -> Option<u32> {
        r.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let y = num(&s[0..4])? as i32;
    let m = num(&s[5..7])?;
    let d = num(&s[8..10])?;
    if !(FIRST_YEAR..=LAST_YEAR).contains(&y)
        || !(1..=12).contains(&m)
        || d == 0
        || d > days_in_month(y, m)
    {
        return None;
    }
    // Table lookups: this runs for every date of every extract.
    Some(MONTH_STARTS[(y - FIRST_YEAR) as usize][m as usize - 1] + d as i32 - 1)
}

/// Years `parse_ymd` accepts.
const FIRST_YEAR: i32 = 1850;
const LAST_YEAR: i32 = 2199;

/// Day number of the first of each month of each accepted year.
static MONTH_STARTS: [[i32; 12]; (LAST_YEAR - FIRST_YEAR + 1) as usize] = {
    let mut t = [[0; 12]; (LAST_YEAR - FIRST_YEAR + 1) as usize];
    let mut y = 0;
    while y < t.len() {
        let mut m = 0;
        while m < 12 {
            t[y][m] = days_from_civil(FIRST_YEAR + y as i32, m as u32 + 1, 1);
            m += 1;
        }
        y += 1;
    }
    t
};

/// The first day of the month of a day number.
pub fn first_of_month(days: i32) -> i32 {
    let (y, m, _) = civil_from_days(days);
    days_from_civil(y, m, 1)
}

/// Formats a day number as `YYYY-MM-DD`.
pub fn format_ymd(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Formats a time as an RFC 3339 UTC timestamp with second precision.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400) as i32;
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        format_ymd(days),
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_values() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(parse_ymd(b"2024-02-29"), Some(19_782));
        for d in [-50_000, -1, 0, 1, 11_016, 19_782, 60_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(format_ymd(19_782), "2024-02-29");
        assert_eq!(first_of_month(19_782), days_from_civil(2024, 2, 1));
        assert_eq!(
            rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(86_400 + 3_723)),
            "1970-01-02T01:02:03Z"
        );
    }

    #[test]
    fn parse_agrees_with_the_calendar_on_every_accepted_day() {
        for days in days_from_civil(FIRST_YEAR, 1, 1)..=days_from_civil(LAST_YEAR, 12, 31) {
            assert_eq!(parse_ymd(format_ymd(days).as_bytes()), Some(days));
        }
        assert_eq!(parse_ymd(b"1849-12-31"), None);
        assert_eq!(parse_ymd(b"2200-01-01"), None);
    }

    #[test]
    fn rejects_bad_dates() {
        for bad in [
            &b"2023-02-29"[..],
            b"2021-13-45",
            b"31/02/2020",
            b"2021-1-01",
            b"",
            b"2021-04-00",
            b"1700-01-01",
            b"2021-04-0a",
        ] {
            assert_eq!(parse_ymd(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
