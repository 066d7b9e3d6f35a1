//! Masked byte ranges: collecting, merging, and writing the masked output.

use std::ops::Range;

use super::REDACTED;

/// Records a masked range, folding it into the last one when they overlap or touch (the
/// common case: window hits arrive in order), so a long match costs one entry.
pub(super) fn add(ranges: &mut Vec<Range<usize>>, r: Range<usize>) {
    if let Some(last) = ranges.last_mut() {
        if r.start >= last.start && r.start <= last.end {
            last.end = last.end.max(r.end);
            return;
        }
    }
    ranges.push(r);
}

/// Sorts `ranges` and merges the ones that overlap or touch, so each entry is one maximal run
/// of masked bytes.
pub(super) fn merge(ranges: &mut Vec<Range<usize>>) {
    ranges.sort_unstable_by_key(|r| r.start);
    let mut kept: usize = 0;
    for i in 0..ranges.len() {
        let r = ranges[i].clone();
        match kept.checked_sub(1).and_then(|k| ranges.get_mut(k)) {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => {
                ranges[kept] = r;
                kept += 1;
            }
        }
    }
    ranges.truncate(kept);
}

/// Writes `hay[..cut]` to `out` with every masked run (from merged `ranges`) replaced by
/// [`REDACTED`]. `in_mask` says whether the byte just before `hay` was masked: a run that
/// continues it gets no second marker. It is updated to describe `hay[cut - 1]`.
pub(super) fn encode(
    hay: &[u8],
    cut: usize,
    ranges: &[Range<usize>],
    in_mask: &mut bool,
    out: &mut Vec<u8>,
) {
    let mut pos = 0;
    for r in ranges {
        if r.start >= cut {
            break;
        }
        if r.start > pos {
            out.extend_from_slice(&hay[pos..r.start]);
            *in_mask = false;
        }
        if !*in_mask {
            out.extend_from_slice(REDACTED);
            *in_mask = true;
        }
        pos = r.end.min(cut);
    }
    if pos < cut {
        out.extend_from_slice(&hay[pos..cut]);
        *in_mask = false;
    }
}

/// How many bytes from `cut` on are known to be masked: the part from `cut` of the merged
/// range covering it. A range that straddles `cut` could not be found again from `cut` on,
/// so this must be carried; one starting at `cut` (such as a carried part not yet released
/// when `cut` is 0) may be.
pub(super) fn masked_after(ranges: &[Range<usize>], cut: usize) -> usize {
    ranges
        .iter()
        .find(|r| r.start <= cut && r.end > cut)
        .map_or(0, |r| r.end - cut)
}
