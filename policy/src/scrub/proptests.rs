//! Property tests: the scrubber against a direct (quadratic) transcription of the rules in the
//! module docs, and streaming against whole-buffer scrubbing over random chunkings.

use proptest::prelude::*;

use super::tests::streamed;
use super::{prefix, Scrubber, MIN_FRAGMENT, REDACTED};

const ELLIPSIS: &[u8] = "…".as_bytes();

/// Which bytes of `t` the module docs say are masked.
fn reference_mask(secrets: &[Vec<u8>], t: &[u8]) -> Vec<bool> {
    let mut masked = vec![false; t.len()];
    let mut mark = |from: usize, to: usize| masked[from..to].iter_mut().for_each(|m| *m = true);
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let n = s.len();
        let p = prefix::public_len(s);
        if n - p < MIN_FRAGMENT {
            for a in 0..t.len() {
                if t[a..].starts_with(s) {
                    mark(a, a + n);
                }
            }
            continue;
        }
        // Fragments: aligned runs s[o..o + l] with MIN_FRAGMENT bytes past the public prefix.
        for a in 0..t.len() {
            for o in 0..n {
                let l = t[a..]
                    .iter()
                    .zip(&s[o..])
                    .take_while(|(x, y)| x == y)
                    .count();
                if o + l >= o.max(p) + MIN_FRAGMENT {
                    mark(a, a + l);
                }
            }
        }
        // Masked echoes: s[..k], 1+ of `*` `.` `…` (at most n bytes), s[n - 4..].
        let tail = &s[n - 4..];
        for a in 0..t.len() {
            for k in 6..=n - 4 {
                if !t[a..].starts_with(&s[..k]) {
                    break;
                }
                let mut q = a + k;
                loop {
                    let rest = &t[q..];
                    q += if rest.starts_with(b"*") || rest.starts_with(b".") {
                        1
                    } else if rest.starts_with(ELLIPSIS) {
                        ELLIPSIS.len()
                    } else {
                        break;
                    };
                    if q - (a + k) > n {
                        break;
                    }
                    if t[q..].starts_with(tail) {
                        mark(a, q + 4);
                    }
                }
            }
        }
    }
    masked
}

fn reference_scrub(secrets: &[Vec<u8>], t: &[u8]) -> Vec<u8> {
    let masked = reference_mask(secrets, t);
    let mut out = Vec::new();
    for (i, &b) in t.iter().enumerate() {
        if !masked[i] {
            out.push(b);
        } else if i == 0 || !masked[i - 1] {
            out.extend_from_slice(REDACTED);
        }
    }
    out
}

/// A small alphabet (with the mask characters and the bytes of `…`) so that fragments,
/// overlaps, self-similar secrets and unfinished mask characters are common.
const ALPHABET: &[u8] = &[b'a', b'b', b'c', b'*', b'.', b'-', b'U', 0xE2, 0x80, 0xA6];

fn bytes(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(ALPHABET), len)
}

fn secret() -> impl Strategy<Value = Vec<u8>> {
    let prefixes = vec!["", "", "sk-proj-", "sk-", "ghp_"];
    (prop::sample::select(prefixes), bytes(1..=24)).prop_map(|(p, b)| [p.as_bytes(), &b].concat())
}

/// A text piece: (kind, x, y, filler), resolved against the secrets by [`build_text`].
type Piece = (u8, usize, usize, Vec<u8>);

fn build_text(secrets: &[Vec<u8>], pieces: &[Piece]) -> Vec<u8> {
    let mut t = Vec::new();
    for (kind, x, y, filler) in pieces {
        let Some(s) = (!secrets.is_empty()).then(|| &secrets[x % secrets.len()]) else {
            t.extend_from_slice(filler);
            continue;
        };
        let n = s.len();
        match kind {
            1 => t.extend_from_slice(s),
            2 => {
                let a = y % n;
                let l = 1 + (x / 7) % (n - a);
                t.extend_from_slice(&s[a..a + l]);
            }
            3 if n >= 10 => {
                let k = 6 + y % (n - 9);
                t.extend_from_slice(&s[..k]);
                for b in filler.iter().take(1 + y % 5) {
                    t.extend_from_slice(match b % 3 {
                        0 => b"*",
                        1 => b".",
                        _ => ELLIPSIS,
                    });
                }
                t.extend_from_slice(&s[n - 4..]);
            }
            4 => t.extend_from_slice(&s[..1 + y % n]),
            _ => t.extend_from_slice(filler),
        }
    }
    t
}

fn cuts_within(raw: &[usize], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.iter().map(|c| c % (len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 768,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn matches_the_reference_and_streams_identically(
        secrets in prop::collection::vec(secret(), 0..=3),
        pieces in prop::collection::vec((0u8..6, any::<usize>(), any::<usize>(), bytes(0..=6)), 0..=10),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..=8),
    ) {
        let sc = Scrubber::new(&secrets).expect("short secrets");
        let t = build_text(&secrets, &pieces);
        let whole = sc.scrub(&t).into_owned();
        let reference = reference_scrub(&secrets, &t);
        prop_assert_eq!(&whole, &reference);
        prop_assert_eq!(sc.contains_any(&t), reference_mask(&secrets, &t).contains(&true));

        let cuts = cuts_within(&raw_cuts, t.len());
        prop_assert_eq!(&streamed(&sc, &t, &cuts), &whole);
        let every_byte: Vec<usize> = (1..t.len()).collect();
        prop_assert_eq!(&streamed(&sc, &t, &every_byte), &whole);
    }

}

proptest! {
    // Fewer cases: the texts are longer and the string strategies slower in debug builds.
    #![proptest_config(ProptestConfig {
        cases: 160,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn realistic_keys_never_survive_any_chunking(
        bodies in prop::collection::vec("[A-Za-z0-9_-]{24,64}", 1..=2),
        filler in prop::collection::vec("[ -~]{0,40}", 1..=4),
        fragment in (0usize..64, 10usize..64),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..=12),
    ) {
        let secrets: Vec<String> = bodies.iter().map(|b| format!("sk-proj-{b}")).collect();
        let sc = Scrubber::new(&secrets).expect("short secrets");
        let key = &secrets[0];
        let body = &bodies[0];
        let start = fragment.0 % (body.len() - 9);
        let end = (start + fragment.1).min(body.len());
        let text = format!(
            "{}{{\"error\":{{\"message\":\"Incorrect API key provided: {key}\"}}}}{}{}{}",
            filler[0],
            filler.last().map_or("", String::as_str),
            &body[start..end],
            filler[filler.len() / 2],
        );
        let t = text.as_bytes();
        let whole = sc.scrub(t).into_owned();
        prop_assert_eq!(&whole, &reference_scrub(&[key.as_bytes().to_vec(), secrets[secrets.len() - 1].as_bytes().to_vec()], t));
        let out = streamed(&sc, t, &cuts_within(&raw_cuts, t.len()));
        prop_assert_eq!(&out, &whole);
        let out = String::from_utf8_lossy(&out);
        for s in &secrets {
            prop_assert!(!out.contains(s.as_str()));
        }
        prop_assert!(!out.contains(&body[start..end]));
    }
}
