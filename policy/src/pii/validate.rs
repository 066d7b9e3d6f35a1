//! Checks applied to regex candidates before they are redacted, so that random digit runs,
//! version numbers and code are left alone. Each returns the span to redact (possibly trimmed)
//! or `None`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// The character just before `at`, if any.
fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|s| s.chars().next_back())
}

/// The character at `at`, if any.
fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|s| s.chars().next())
}

/// True when the span is glued to a longer number by `sep` (`1.2.3.4.5`, `123-45-6789-1`):
/// the span is then a piece of something else, not the thing we look for.
fn part_of_longer_number(text: &str, span: &Range<usize>, sep: char) -> bool {
    let before = char_before(text, span.start) == Some(sep)
        && text
            .get(..span.start.saturating_sub(sep.len_utf8()))
            .and_then(|s| s.chars().next_back())
            .is_some_and(|c| c.is_ascii_digit());
    let after = char_at(text, span.end) == Some(sep)
        && char_at(text, span.end + sep.len_utf8()).is_some_and(|c| c.is_ascii_digit());
    before || after
}

/// The Luhn (mod-10) checksum over ASCII digits.
pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// Whether the leading digits and the length belong to a major card network (Visa,
/// Mastercard, American Express, Discover, JCB, Diners Club, UnionPay).
fn known_card_prefix(d: &[u8]) -> bool {
    let num = |n: usize| -> u32 {
        d.iter()
            .take(n)
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
    };
    let len = d.len();
    let (p2, p3, p4, p6) = (num(2), num(3), num(4), num(6));
    match d.first() {
        Some(b'4') => matches!(len, 13 | 16 | 19),
        Some(b'5') => (51..=55).contains(&p2) && len == 16,
        Some(b'2') => (2221..=2720).contains(&p4) && len == 16,
        Some(b'3') => {
            ((p2 == 34 || p2 == 37) && len == 15)
                || ((3528..=3589).contains(&p4) && (16..=19).contains(&len))
                || ((p2 == 36 || p2 == 38 || p2 == 39 || (300..=305).contains(&p3) || p3 == 309)
                    && (14..=19).contains(&len))
        }
        Some(b'6') => {
            (p4 == 6011
                || p2 == 65
                || (644..=649).contains(&p3)
                || p2 == 62
                || (622_126..=622_925).contains(&p6))
                && (16..=19).contains(&len)
        }
        _ => false,
    }
}

/// Card numbers: 13–19 digits, separators (if any) all the same, a known network prefix and
/// a valid Luhn checksum.
pub(crate) fn credit_card(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let s = text.get(span.clone())?;
    let mut digits = Vec::with_capacity(19);
    let mut sep = None;
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => digits.push(b),
            b' ' | b'-' => match sep {
                None => sep = Some(b),
                Some(x) if x == b => {}
                Some(_) => return None,
            },
            _ => return None,
        }
    }
    let ok = (13..=19).contains(&digits.len())
        && known_card_prefix(&digits)
        && luhn_valid(&digits)
        && !part_of_longer_number(text, &span, '-');
    ok.then_some(span)
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// The mod-97 check of ISO 7064 over an IBAN's characters (country, check digits, BBAN).
pub(crate) fn iban_mod97_valid(chars: &[u8]) -> bool {
    if chars.len() < 5 {
        return false;
    }
    let mut rem = 0u32;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        let c = c.to_ascii_uppercase();
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// IBANs: a known country code, exactly that country's length (separating spaces allowed),
/// a valid mod-97 check, and not glued to further letters or digits. The regex candidate may
/// run on into the next words; it is trimmed to the country's length.
pub(crate) fn iban(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let s = text.get(span.clone())?;
    let country = s.get(..2)?.to_ascii_uppercase();
    let want = IBAN_LENGTHS
        .iter()
        .find(|(c, _)| *c == country)
        .map(|&(_, n)| n)?;
    let mut chars = Vec::with_capacity(want);
    let mut end = span.start;
    for (i, b) in s.bytes().enumerate() {
        if chars.len() == want {
            break;
        }
        if b.is_ascii_alphanumeric() {
            chars.push(b);
            end = span.start + i + 1;
        }
    }
    if chars.len() != want || char_at(text, end).is_some_and(|c| c.is_alphanumeric()) {
        return None;
    }
    iban_mod97_valid(&chars).then_some(span.start..end)
}

/// US SSNs written `AAA-GG-SSSS` or `AAA GG SSSS` (the same separator twice). Area 000, 666
/// and 900–999, group 00 and serial 0000 are never issued.
pub(crate) fn us_ssn(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let s = text.get(span.clone())?.as_bytes();
    if s.len() != 11 || s[3] != s[6] {
        return None;
    }
    let area = &s[0..3];
    let ok = area != b"000"
        && area != b"666"
        && area[0] != b'9'
        && &s[4..6] != b"00"
        && &s[7..11] != b"0000"
        && !part_of_longer_number(text, &span, char::from(s[3]));
    ok.then_some(span)
}

/// Phone numbers. International (`+` then 8–15 digits, with spaces, dots, dashes or
/// parentheses) or North American with separators (`(212) 555-1234`, `212-555-1234`,
/// `1 212 555 1234`): area code and exchange start with 2–9.
pub(crate) fn phone(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let s = text.get(span.clone())?;
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    if s.starts_with('+') {
        if char_before(text, span.start).is_some_and(|c| c.is_alphanumeric()) {
            return None;
        }
        let mut run = 0;
        for b in s.bytes() {
            run = if b.is_ascii_digit() { 0 } else { run + 1 };
            if run > 2 {
                return None;
            }
        }
        return (8..=15).contains(&digits.len()).then_some(span);
    }
    let national = match digits.len() {
        10 => &digits[..],
        11 if digits[0] == b'1' => &digits[1..],
        _ => return None,
    };
    let ok = (b'2'..=b'9').contains(&national[0])
        && (b'2'..=b'9').contains(&national[3])
        && !part_of_longer_number(text, &span, '-')
        && !part_of_longer_number(text, &span, '.');
    ok.then_some(span)
}

/// IPv4 dotted quads that parse strictly (no leading zeros, octets ≤ 255) and are not part of
/// a longer dotted number such as a version `1.2.3.4.5`.
pub(crate) fn ipv4(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let s = text.get(span.clone())?;
    let ok = s.parse::<Ipv4Addr>().is_ok() && !part_of_longer_number(text, &span, '.');
    ok.then_some(span)
}

/// IPv6 addresses that parse strictly, stand alone (not inside a word, `a::b` paths or longer
/// colon runs) and have at least two non-empty groups and four hex digits, so `::`, `::1` and
/// Rust paths such as `std::io` stay untouched.
pub(crate) fn ipv6(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let s = text.get(span.clone())?;
    let glued_before = char_before(text, span.start)
        .is_some_and(|c| c.is_alphanumeric() || c == ':' || c == '.' || c == '_');
    let glued_after = match char_at(text, span.end) {
        Some(c) if c.is_alphanumeric() || c == ':' || c == '_' => true,
        Some('.') => char_at(text, span.end + 1).is_some_and(|c| c.is_ascii_alphanumeric()),
        _ => false,
    };
    if glued_before || glued_after {
        return None;
    }
    let groups = s.split([':', '.']).filter(|g| !g.is_empty()).count();
    let hex = s.bytes().filter(u8::is_ascii_hexdigit).count();
    let ok = groups >= 2 && hex >= 4 && s.parse::<Ipv6Addr>().is_ok();
    ok.then_some(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(!luhn_valid(b""));
    }

    #[test]
    fn mod97() {
        assert!(iban_mod97_valid(b"GB82WEST12345698765432"));
        assert!(!iban_mod97_valid(b"GB82WEST12345698765433"));
        assert!(iban_mod97_valid(b"de89370400440532013000"));
        assert!(!iban_mod97_valid(b"GB8"));
    }

    #[test]
    fn card_prefixes() {
        assert!(known_card_prefix(b"4111111111111111"));
        assert!(known_card_prefix(b"5555555555554444"));
        assert!(known_card_prefix(b"2223003122003222"));
        assert!(known_card_prefix(b"378282246310005"));
        assert!(known_card_prefix(b"6011111111111117"));
        assert!(known_card_prefix(b"3530111333300000"));
        assert!(known_card_prefix(b"30569309025904"));
        assert!(!known_card_prefix(b"1234567812345670"));
        assert!(!known_card_prefix(b"37828224631000"));
    }
}
