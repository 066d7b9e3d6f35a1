//! Value parsers: counts, durations, timestamps. Every one returns `None` on anything it does
//! not fully understand (the caller then skips that value); none of them can panic.
//!
//! Resets come out as whole seconds from `now`, rounded up and never negative.

/// The largest Integer a structured field may carry (RFC 9651, 15 digits).
pub(crate) const SF_INT_MAX: u64 = 999_999_999_999_999;

const NS_PER_SEC: u128 = 1_000_000_000;

/// A non-negative integer count: ASCII digits only (no sign, no fraction, no separators).
pub(crate) fn count(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// A wait, in whole seconds rounded up: a Go/OpenAI duration (`1s`, `6m0s`, `20ms`,
/// `1h2m3.5s`, `2m59.56s`) or a bare decimal number of seconds (`7.66`, Cerebras).
pub(crate) fn duration_secs(v: &str) -> Option<u64> {
    let ns = match go_duration_ns(v) {
        Some(ns) => ns,
        None => {
            let (n, rest) = decimal(v.as_bytes())?;
            if !rest.is_empty() {
                return None;
            }
            n.scaled(NS_PER_SEC)?
        }
    };
    u64::try_from(ns.div_ceil(NS_PER_SEC)).ok()
}

/// A bare decimal number of milliseconds (`retry-after-ms: 1500`), in whole seconds rounded up.
pub(crate) fn millis_secs(v: &str) -> Option<u64> {
    let (n, rest) = decimal(v.as_bytes())?;
    if !rest.is_empty() {
        return None;
    }
    let ms = u64::try_from(n.scaled(1)?).ok()?;
    Some(ms.div_ceil(1000))
}

/// Seconds from `now` until an RFC 3339 timestamp (`2024-05-01T12:00:30Z`,
/// `2024-05-01T14:00:30.250+02:00`); 0 when it is already past.
pub(crate) fn rfc3339_until(v: &str, now: i64) -> Option<u64> {
    Some(until_ms(rfc3339_unix_ms(v)?, now))
}

/// Seconds from `now` until a Unix epoch in integer seconds (GitHub); 0 when it is past.
pub(crate) fn epoch_until(v: &str, now: i64) -> Option<u64> {
    Some(until_ms(i128::from(count(v)?) * 1000, now))
}

/// A reset whose format is not pinned down (bare `x-ratelimit-reset`): an integer of 13+
/// digits (≥ 10^12) is epoch milliseconds, one ≥ 10^9 is epoch seconds, anything smaller, or
/// any duration, is seconds from now.
pub(crate) fn reset_guess(v: &str, now: i64) -> Option<u64> {
    match count(v) {
        Some(n) if n >= 1_000_000_000_000 => Some(until_ms(i128::from(n), now)),
        Some(n) if n >= 1_000_000_000 => Some(until_ms(i128::from(n) * 1000, now)),
        Some(n) => Some(n),
        None => duration_secs(v),
    }
}

/// Whole seconds from `now` (Unix seconds) to `at_ms` (Unix milliseconds), rounded up, ≥ 0.
fn until_ms(at_ms: i128, now: i64) -> u64 {
    let delta = at_ms - i128::from(now) * 1000;
    if delta <= 0 {
        return 0;
    }
    u64::try_from((delta + 999) / 1000).unwrap_or(u64::MAX)
}

/// A decimal number `digits[.digits]` (at least one digit on either side).
struct Decimal {
    int: u128,
    frac: u128,
    frac_len: u32,
}

impl Decimal {
    /// The number times `unit`, with the fractional part rounded up; `None` on overflow.
    fn scaled(&self, unit: u128) -> Option<u128> {
        let whole = self.int.checked_mul(unit)?;
        let frac = self
            .frac
            .checked_mul(unit)?
            .div_ceil(10u128.checked_pow(self.frac_len)?);
        whole.checked_add(frac)
    }
}

/// Reads a decimal at the start of `s`; returns it and the rest.
fn decimal(s: &[u8]) -> Option<(Decimal, &[u8])> {
    // Digits past 18 after the point are below a nanosecond of anything: ignored.
    const MAX_FRAC: u32 = 18;
    let mut n = Decimal {
        int: 0,
        frac: 0,
        frac_len: 0,
    };
    let mut i = 0;
    let mut digits = 0;
    while let Some(d) = s.get(i).filter(|b| b.is_ascii_digit()) {
        n.int = n.int.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
        i += 1;
        digits += 1;
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        while let Some(d) = s.get(i).filter(|b| b.is_ascii_digit()) {
            if n.frac_len < MAX_FRAC {
                n.frac = n.frac * 10 + u128::from(d - b'0');
                n.frac_len += 1;
            }
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    Some((n, s.get(i..)?))
}

/// A Go `time.Duration` string (what OpenAI and Groq send), in nanoseconds. A sign other than
/// `+` is refused: a negative reset is malformed.
fn go_duration_ns(v: &str) -> Option<u128> {
    const UNITS: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("μs", 1_000),
        ("ms", 1_000_000),
        ("s", NS_PER_SEC),
        ("m", 60 * NS_PER_SEC),
        ("h", 3_600 * NS_PER_SEC),
    ];
    let v = v.strip_prefix('+').unwrap_or(v);
    if v == "0" {
        return Some(0);
    }
    let mut rest = v.as_bytes();
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (n, after) = decimal(rest)?;
        // Longest unit first: "ms" before "m", "µs" before nothing else.
        let (unit, ns) = UNITS
            .iter()
            .filter(|(u, _)| after.starts_with(u.as_bytes()))
            .max_by_key(|(u, _)| u.len())?;
        total = total.checked_add(n.scaled(*ns)?)?;
        rest = after.get(unit.len()..)?;
    }
    Some(total)
}

/// An RFC 3339 date-time as Unix milliseconds (fraction rounded up to the millisecond).
fn rfc3339_unix_ms(v: &str) -> Option<i128> {
    let b = v.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis: i128 = 0;
    if b.get(i) == Some(&b'.') {
        let (frac, rest) = decimal(b.get(i..)?)?;
        if frac.frac_len == 0 {
            return None;
        }
        millis = i128::try_from(frac.scaled(1000)?).ok()?;
        i = b.len() - rest.len();
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') if b.len() == i + 1 => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && at(i + 3, b":") => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = oh * 3600 + om * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    Some(i128::from(secs) * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    #[test]
    fn counts_are_plain_digits() {
        assert_eq!(count("0"), Some(0));
        assert_eq!(count("149984"), Some(149_984));
        for bad in [
            "",
            "-1",
            "+1",
            "1.0",
            "1,000",
            "1e3",
            " 1",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(count(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn go_durations_round_up_to_seconds() {
        for (v, secs) in [
            ("0", 0),
            ("0s", 0),
            ("1s", 1),
            ("6m0s", 360),
            ("20ms", 1),
            ("1h2m3.5s", 3_724),
            ("2m59.56s", 180),
            ("7.66s", 8),
            ("1.5µs", 1),
            ("1.5μs", 1),
            ("300us", 1),
            ("999999ns", 1),
            ("1000ms", 1),
            ("1001ms", 2),
            (".5s", 1),
            ("+3s", 3),
            ("1h", 3_600),
            ("33011.382867097855", 33_012),
            ("11.382867097854614", 12),
            ("12", 12),
        ] {
            assert_eq!(duration_secs(v), Some(secs), "{v:?}");
        }
        for bad in [
            "",
            "-1s",
            "s",
            "1x",
            "1s2",
            "1 s",
            "1.s.",
            ".",
            "1e3s",
            "abc",
            "1m-2s",
            "∞s",
            "99999999999999999999999999999999999999999h",
        ] {
            assert_eq!(duration_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_relative_to_now() {
        assert_eq!(rfc3339_until("2023-11-14T22:13:32Z", NOW), Some(12));
        assert_eq!(rfc3339_until("2023-11-14T22:13:20Z", NOW), Some(0));
        assert_eq!(rfc3339_until("2023-11-14T22:13:20.001Z", NOW), Some(1));
        assert_eq!(rfc3339_until("2023-11-14t22:13:21.5z", NOW), Some(2));
        assert_eq!(rfc3339_until("2023-11-15T00:14:20+02:00", NOW), Some(60));
        assert_eq!(rfc3339_until("2023-11-14T21:13:50-01:00", NOW), Some(30));
        assert_eq!(rfc3339_until("2023-11-14 22:14:20Z", NOW), Some(60));
        assert_eq!(rfc3339_until("2020-01-01T00:00:00Z", NOW), Some(0)); // past
        assert_eq!(rfc3339_until("2024-02-29T00:00:00Z", NOW), Some(9_164_800));
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:32",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-31T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:60:00Z",
            "2023-11-14T22:13:32.Z",
            "2023-11-14T22:13:32+0200",
            "2023-11-14T22:13:32Zjunk",
            "2023-11-14T22:13:32+25:00",
            "1700000012",
            "2023-1ä-14T22:13:32Z",
        ] {
            assert_eq!(rfc3339_until(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2023, 11, 14), 19_675);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn epochs_and_guesses() {
        assert_eq!(epoch_until("1700000042", NOW), Some(42));
        assert_eq!(epoch_until("1600000000", NOW), Some(0));
        assert_eq!(epoch_until("1700000042.5", NOW), None);
        assert_eq!(reset_guess("1700000042", NOW), Some(42)); // epoch seconds
        assert_eq!(reset_guess("1700000042001", NOW), Some(43)); // epoch milliseconds
        assert_eq!(reset_guess("42", NOW), Some(42)); // seconds from now
        assert_eq!(reset_guess("1m", NOW), Some(60));
        assert_eq!(reset_guess("soon", NOW), None);
        assert_eq!(millis_secs("1500"), Some(2));
        assert_eq!(millis_secs("0"), Some(0));
        assert_eq!(millis_secs("999.5"), Some(1));
        assert_eq!(millis_secs("-5"), None);
        assert_eq!(millis_secs("5ms"), None);
    }
}
