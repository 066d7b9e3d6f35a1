//! Server-sent events (`text/event-stream`), split into events as the WHATWG HTML spec's
//! "event stream interpretation" does, from chunks cut anywhere (inside a line, a `\r\n` pair or a
//! UTF-8 character).
//!
//! Lines end in `\n`, `\r\n` or `\r`; a blank line ends an event; `data:` lines of one event are
//! joined with `\n`; comments (`:` lines) and other fields (`event`, `id`, `retry`) are skipped,
//! since every provider repeats the event type inside the JSON data. Work is done on bytes: the
//! terminators are ASCII and never occur inside a multi-byte UTF-8 sequence, so a character cut
//! by a chunk boundary is simply completed by the next chunk; the JSON parser validates UTF-8.
//!
//! One deliberate departure from the spec: at end of stream a last event that was not followed by
//! a blank line is still delivered, because the provider billed for it either way.

/// Longest line kept (1 MiB). A longer line is dropped whole (its bytes are skipped up to the next
/// line break) together with the event it belongs to, and the meter reports
/// [`incomplete`](super::UsageMeter::incomplete).
pub const SSE_LINE_CAP: usize = 1 << 20;

/// Most `data` bytes one event may gather across its lines (1 MiB); beyond it the event is
/// dropped like an over-long line.
pub const SSE_EVENT_CAP: usize = 1 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Splits a byte stream into SSE events, handing each event's data to a callback. Holds at most
/// one line and one event's data: [`SSE_LINE_CAP`] + [`SSE_EVENT_CAP`] bytes.
#[derive(Debug)]
pub(crate) struct SseDecoder {
    /// The current, unterminated line.
    line: Vec<u8>,
    /// The current event's data so far (lines joined with `\n`).
    data: Vec<u8>,
    /// Whether the current event had a `data` field (its data may be empty).
    has_data: bool,
    /// The current line went over the cap: ignore bytes until the next terminator.
    skipping: bool,
    /// Part of the current event was dropped: discard it at dispatch.
    poisoned: bool,
    /// The last byte seen was a `\r` ending a line: a `\n` right after it belongs to it.
    after_cr: bool,
    /// No line has ended yet (the BOM may only appear at the very start).
    first_line: bool,
    /// Lines or events dropped for size.
    dropped: u64,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            skipping: false,
            poisoned: false,
            after_cr: false,
            first_line: true,
            dropped: 0,
        }
    }
}

impl SseDecoder {
    /// Consumes one chunk, calling `on_event` with the data of every event it completes.
    pub(crate) fn feed(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(&[u8])) {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.push(&rest[..i]);
            self.end_line(on_event);
            let was_cr = rest[i] == b'\r';
            rest = &rest[i + 1..];
            if was_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.push(rest);
    }

    /// End of stream: delivers a last line and event that were never terminated.
    pub(crate) fn finish(&mut self, on_event: &mut dyn FnMut(&[u8])) {
        if !self.line.is_empty() || self.skipping {
            self.end_line(on_event);
        }
        self.dispatch(on_event);
        self.after_cr = false;
    }

    /// Lines or events dropped for exceeding [`SSE_LINE_CAP`] / [`SSE_EVENT_CAP`].
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes held right now.
    pub(crate) fn buffered(&self) -> usize {
        self.line.len() + self.data.len()
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.skipping || bytes.is_empty() {
            return;
        }
        if self.line.len() + bytes.len() > SSE_LINE_CAP {
            self.skipping = true;
            self.line.clear();
            self.dropped += 1;
            self.poisoned = true;
            return;
        }
        extend_capped(&mut self.line, bytes, SSE_LINE_CAP);
    }

    fn end_line(&mut self, on_event: &mut dyn FnMut(&[u8])) {
        if self.skipping {
            // The dropped line is not a blank line: it must not end the event.
            self.skipping = false;
            return;
        }
        let line = std::mem::take(&mut self.line);
        self.process_line(&line, on_event);
        self.line = line;
        self.line.clear();
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut dyn FnMut(&[u8])) {
        let mut line = line;
        if self.first_line {
            self.first_line = false;
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // comment, e.g. OpenRouter's ": OPENROUTER PROCESSING" keep-alives
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            self.append_data(value);
        }
    }

    fn append_data(&mut self, value: &[u8]) {
        if self.poisoned {
            return;
        }
        let separator = usize::from(self.has_data);
        if self.data.len() + separator + value.len() > SSE_EVENT_CAP {
            self.poisoned = true;
            self.dropped += 1;
            self.data.clear();
            return;
        }
        if self.has_data {
            self.data.push(b'\n');
        }
        extend_capped(&mut self.data, value, SSE_EVENT_CAP);
        self.has_data = true;
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(&[u8])) {
        if self.has_data && !self.poisoned {
            on_event(&self.data);
        }
        self.data.clear();
        self.has_data = false;
        self.poisoned = false;
    }
}

/// Appends `bytes`, growing the allocation geometrically but never past `cap` (the caller has
/// checked that the result fits), so a buffer's capacity is bounded by its cap, not twice it.
pub(crate) fn extend_capped(buf: &mut Vec<u8>, bytes: &[u8], cap: usize) {
    let needed = buf.len() + bytes.len();
    if needed > buf.capacity() {
        let target = needed
            .max(buf.capacity().saturating_mul(2))
            .min(cap.max(needed));
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::{SseDecoder, SSE_EVENT_CAP, SSE_LINE_CAP};

    fn events(chunks: &[&[u8]]) -> (Vec<String>, u64) {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        let mut sink = |data: &[u8]| out.push(String::from_utf8_lossy(data).into_owned());
        for c in chunks {
            d.feed(c, &mut sink);
        }
        d.finish(&mut sink);
        let dropped = d.dropped();
        (out, dropped)
    }

    #[test]
    fn line_endings_comments_and_fields() {
        let (ev, _) =
            events(&[b"data: a\n\ndata:b\r\n\r\n: comment\rdata:  c\r\revent: x\nid: 1\n\n"]);
        // One leading space is stripped, not two; an event with no data is not delivered.
        assert_eq!(ev, ["a", "b", " c"]);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let (ev, _) = events(&[b"data: {\"a\":\ndata: 1}\n\ndata\ndata:\n\n"]);
        assert_eq!(ev, ["{\"a\":\n1}", "\n"]);
    }

    #[test]
    fn crlf_split_between_chunks_is_one_terminator() {
        // "\r" ends a chunk and "\n" starts the next: still one line break, not a blank line.
        let (ev, _) = events(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(ev, ["a\nb"]);
    }

    #[test]
    fn bom_only_at_start() {
        let (ev, _) = events(&[b"\xEF\xBB", b"\xBFdata: a\n\n"]);
        assert_eq!(ev, ["a"]);
        let (ev, _) = events(&[b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"]);
        assert_eq!(ev, ["a"]); // a BOM later is part of a field name
    }

    #[test]
    fn unterminated_last_event_is_delivered() {
        assert_eq!(events(&[b"data: a\n\ndata: b"]).0, ["a", "b"]);
        assert_eq!(events(&[b"data: a\n"]).0, ["a"]);
    }

    #[test]
    fn over_long_line_is_dropped_with_its_event() {
        let mut big = b"data: ".to_vec();
        big.resize(SSE_LINE_CAP + 10, b'x');
        let chunks: Vec<&[u8]> = vec![
            b"data: keep\n\ndata: partial\n",
            &big,
            b"\ndata: tail\n\ndata: next\n\n",
        ];
        let (ev, dropped) = events(&chunks);
        assert_eq!(ev, ["keep", "next"]);
        assert_eq!(dropped, 1);
    }

    #[test]
    fn over_large_event_is_dropped() {
        let line = format!("data: {}\n", "y".repeat(SSE_EVENT_CAP / 2));
        let text = format!("{line}{line}{line}\ndata: after\n\n");
        let (ev, dropped) = events(&[text.as_bytes()]);
        assert_eq!(ev, ["after"]);
        assert_eq!(dropped, 1);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut d = SseDecoder::default();
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..40 {
            d.feed(&chunk, &mut |_| {});
            assert!(d.buffered() <= SSE_LINE_CAP);
            assert!(d.line.capacity() <= SSE_LINE_CAP);
        }
        assert_eq!(d.dropped(), 1);
    }
}
