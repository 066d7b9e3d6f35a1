//! Scrubbing one body as it streams.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::engine::Engine;
use super::ranges;

/// Scrubs one response body chunk by chunk; made by [`Scrubber::stream`](super::Scrubber::stream).
///
/// Call [`push`](Self::push) for every chunk, then [`finish`](Self::finish) once at the end
/// of the body. Together they output exactly what [`Scrubber::scrub`](super::Scrubber::scrub)
/// gives for the whole body, however it was chunked, while holding back at most
/// [`Scrubber::max_held`](super::Scrubber::max_held) bytes between calls. Dropping the stream
/// without `finish` discards the held tail (it may be the start of a secret).
pub struct ScrubStream {
    engine: Arc<Engine>,
    /// Input not yet released: its tail could still begin a match.
    held: Vec<u8>,
    /// `held[..forced]` is known to be masked (the rest of a match released in part).
    forced: usize,
    /// The last released byte was masked: a masked run continuing it gets no second marker.
    in_mask: bool,
    /// Scratch list of masked ranges, reused between chunks.
    found: Vec<Range<usize>>,
}

impl ScrubStream {
    pub(super) fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            held: Vec::new(),
            forced: 0,
            in_mask: false,
            found: Vec::new(),
        }
    }

    /// Takes the next chunk of the body and returns what can be released now.
    ///
    /// When nothing was held back from the previous chunk and nothing in this one is masked,
    /// the result borrows a prefix of `chunk` (zero-copy: the gateway can `slice_ref` the
    /// original `Bytes`). The result may be empty while a possible match is pending.
    pub fn push<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]> {
        if chunk.is_empty() {
            return Cow::Borrowed(chunk);
        }
        if self.held.is_empty() {
            let cut = self.decide(chunk, false);
            if self.found.first().is_none_or(|r| r.start >= cut) {
                // Nothing masked in the released part, so nothing straddles the cut either.
                let (release, keep) = chunk.split_at(cut);
                if cut > 0 {
                    self.in_mask = false;
                }
                self.held.extend_from_slice(keep);
                return Cow::Borrowed(release);
            }
            return Cow::Owned(self.release(chunk, cut));
        }
        let mut hay = std::mem::take(&mut self.held);
        hay.extend_from_slice(chunk);
        let cut = self.decide(&hay, false);
        Cow::Owned(self.release(&hay, cut))
    }

    /// Ends the body: returns the held-back tail, masked. The stream is then empty and could
    /// take another body.
    pub fn finish(&mut self) -> Vec<u8> {
        let hay = std::mem::take(&mut self.held);
        let mut out = Vec::new();
        if !hay.is_empty() {
            let cut = self.decide(&hay, true);
            ranges::encode(&hay, cut, &self.found, &mut self.in_mask, &mut out);
        }
        self.forced = 0;
        self.in_mask = false;
        self.found.clear();
        out
    }

    /// Bytes currently held back (never more than
    /// [`Scrubber::max_held`](super::Scrubber::max_held)).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Finds the masked ranges of `hay` (the held bytes followed by the new chunk) into
    /// `self.found`, merged, and returns how much of `hay` can be released.
    fn decide(&mut self, hay: &[u8], eof: bool) -> usize {
        self.found.clear();
        if self.forced > 0 {
            self.found.push(0..self.forced);
        }
        let open = self.engine.scan(hay, eof, &mut self.found);
        ranges::merge(&mut self.found);
        if eof {
            hay.len()
        } else {
            open
        }
    }

    /// Masks and returns `hay[..cut]`, keeping `hay[cut..]` held.
    fn release(&mut self, hay: &[u8], cut: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(cut + super::REDACTED.len());
        ranges::encode(hay, cut, &self.found, &mut self.in_mask, &mut out);
        self.forced = ranges::masked_after(&self.found, cut);
        self.held = hay[cut..].to_vec();
        out
    }
}

impl fmt::Debug for ScrubStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The held bytes may be part of a secret: show their count only.
        f.debug_struct("ScrubStream")
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}
