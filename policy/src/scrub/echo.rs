//! Masked echoes: `s[..k]`, a run of `*` / `.` / `…`, then `s[n-4..]` (providers' own masking).

use std::ops::Range;

use super::ranges;

/// Fewest leading secret bytes a masked echo must show (its anchor pattern's length).
pub(super) const HEAD: usize = 6;
/// Trailing secret bytes a masked echo ends with.
pub(super) const TAIL: usize = 4;

/// `…` (U+2026) in UTF-8.
const ELLIPSIS: &[u8] = "…".as_bytes();

/// The next mask character of a run.
enum Unit {
    /// A whole mask character of this many bytes.
    Full(usize),
    /// The start of `…` cut off by the end of the data: more may come.
    Partial,
    /// Not a mask character.
    No,
}

fn unit(rest: &[u8], eof: bool) -> Unit {
    match rest.first() {
        Some(b'*' | b'.') => Unit::Full(1),
        Some(_) if rest.starts_with(ELLIPSIS) => Unit::Full(ELLIPSIS.len()),
        Some(_) if !eof && rest.len() < ELLIPSIS.len() && ELLIPSIS.starts_with(rest) => {
            Unit::Partial
        }
        _ => Unit::No,
    }
}

/// Finds the masked echoes of `secret` that start at `at` in `hay` (where `secret[..HEAD]`
/// occurs) and adds them to `ranges`. Unless `eof`, lowers `open` to `at` when the data ends
/// while an echo starting there could still be completed.
pub(super) fn find(
    secret: &[u8],
    hay: &[u8],
    at: usize,
    eof: bool,
    found: &mut Vec<Range<usize>>,
    open: &mut usize,
) {
    let n = secret.len();
    let Some(head_max) = n.checked_sub(TAIL) else {
        return;
    };
    let (head, tail) = secret.split_at(head_max);
    let rest = hay.get(at..).unwrap_or_default();
    let shown = rest.iter().zip(head).take_while(|(a, b)| a == b).count();
    if shown == rest.len() && !eof {
        // The data ends inside the shown prefix: the echo may go on in the next chunk.
        *open = (*open).min(at);
        return;
    }
    for k in HEAD..=shown {
        let run_start = at + k;
        let mut q = run_start;
        loop {
            match unit(&hay[q..], eof) {
                Unit::Full(len) => q += len,
                Unit::Partial => {
                    *open = (*open).min(at);
                    break;
                }
                Unit::No => break,
            }
            if q - run_start > n {
                break;
            }
            let after = &hay[q..];
            if after.len() >= TAIL {
                if after[..TAIL] == *tail {
                    ranges::add(found, at..q + TAIL);
                }
            } else if !eof && tail.starts_with(after) {
                *open = (*open).min(at);
            }
        }
    }
}
