//! AWS event-stream framing (`application/vnd.amazon.eventstream`), as used by Bedrock's
//! `converse-stream` and `invoke-with-response-stream`.
//!
//! A message is `total_len u32 BE | headers_len u32 BE | prelude_crc u32 BE | headers | payload |
//! message_crc u32 BE`; a header is `name_len u8 | name | type u8 | value`, the value's size fixed
//! by its type except for byte arrays and strings (u16 BE length first).
//!
//! Both CRC-32s (IEEE, as in zip) are checked, for different reasons:
//! - the prelude CRC guards the lengths. A bad one means the framing is lost for good (there is
//!   no resynchronization marker), so the decoder gives up on the whole stream rather than buffer
//!   up to 16 MiB of garbage or read counts out of the middle of a payload;
//! - the message CRC guards headers and payload. A bad one skips that message only: its length
//!   was sound, so the next message is still found.

/// Largest message accepted (16 MiB, the format's own limit). A longer one makes the decoder
/// give up on the stream; see [`UsageMeter::gave_up`](super::UsageMeter::gave_up).
pub const FRAME_CAP: usize = 16 << 20;

const PRELUDE_LEN: usize = 12;
/// Prelude plus the trailing message CRC: an empty message.
const MIN_FRAME: usize = PRELUDE_LEN + 4;

/// One decoded message, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    /// `:message-type`: `event`, `exception` or `error`.
    pub(crate) message_type: Option<&'a str>,
    /// `:event-type`, e.g. `chunk` or `metadata`.
    pub(crate) event_type: Option<&'a str>,
    pub(crate) payload: &'a [u8],
}

/// Reassembles messages from chunks cut anywhere. Holds at most the current message: up to
/// [`FRAME_CAP`] bytes, and only when a message arrives in pieces (whole messages are decoded
/// straight from the chunk).
#[derive(Debug, Default)]
pub(crate) struct FrameDecoder {
    /// The current partial message.
    buf: Vec<u8>,
    /// Its total length, once the prelude is in (0 before).
    expected: usize,
    gave_up: bool,
    /// Messages skipped: bad message CRC, malformed headers, or cut off at end of stream.
    skipped: u64,
}

impl FrameDecoder {
    /// Consumes one chunk, calling `on_message` for every intact message it completes.
    pub(crate) fn feed(&mut self, mut input: &[u8], on_message: &mut dyn FnMut(Message<'_>)) {
        while !input.is_empty() && !self.gave_up {
            if self.buf.is_empty() {
                // Fast path: decode whole messages in place, buffer only a trailing piece.
                let Some(prelude) = input.get(..PRELUDE_LEN) else {
                    self.buf.extend_from_slice(input);
                    return;
                };
                let Some(total) = frame_len(prelude) else {
                    self.give_up();
                    return;
                };
                if let Some(frame) = input.get(..total) {
                    self.deliver(frame, on_message);
                    input = &input[total..];
                } else {
                    self.expected = total;
                    self.buf.reserve_exact(total);
                    self.buf.extend_from_slice(input);
                    return;
                }
            } else {
                input = self.fill(input);
                if self.expected == 0 {
                    if self.buf.len() < PRELUDE_LEN {
                        continue; // input is exhausted
                    }
                    let Some(total) = frame_len(&self.buf[..PRELUDE_LEN]) else {
                        self.give_up();
                        return;
                    };
                    self.expected = total;
                    self.buf.reserve_exact(total - self.buf.len());
                    input = self.fill(input);
                }
                if self.buf.len() == self.expected {
                    let frame = std::mem::take(&mut self.buf);
                    self.deliver(&frame, on_message);
                    self.expected = 0;
                    // Keep a small allocation for the next split message; return a big one.
                    if frame.capacity() <= 64 * 1024 {
                        self.buf = frame;
                        self.buf.clear();
                    }
                }
            }
        }
    }

    /// End of stream: a message cut off by the end counts as skipped.
    pub(crate) fn finish(&mut self) {
        if !self.buf.is_empty() && !self.gave_up {
            self.skipped += 1;
        }
        self.buf = Vec::new();
        self.expected = 0;
    }

    /// Whether the framing was lost (bad prelude CRC, impossible lengths, a message over
    /// [`FRAME_CAP`]): nothing after that point was decoded.
    pub(crate) fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// Messages skipped without losing the framing.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Bytes held right now.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Moves bytes from `input` into the buffer up to the prelude (length unknown) or the end of
    /// the message; returns the rest.
    fn fill<'a>(&mut self, input: &'a [u8]) -> &'a [u8] {
        let want = if self.expected == 0 {
            PRELUDE_LEN
        } else {
            self.expected
        };
        let take = want.saturating_sub(self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..take]);
        &input[take..]
    }

    fn give_up(&mut self) {
        self.gave_up = true;
        self.buf = Vec::new();
        self.expected = 0;
    }

    fn deliver(&mut self, frame: &[u8], on_message: &mut dyn FnMut(Message<'_>)) {
        match parse_frame(frame) {
            Some(message) => on_message(message),
            None => self.skipped += 1,
        }
    }
}

/// The total length a prelude announces, if the prelude is intact and the length possible.
fn frame_len(prelude: &[u8]) -> Option<usize> {
    let total = be32(&prelude[0..4]) as usize;
    let headers = be32(&prelude[4..8]) as usize;
    let sound = crc32(&prelude[..8]) == be32(&prelude[8..12])
        && total >= MIN_FRAME
        && headers <= total - MIN_FRAME
        && total <= FRAME_CAP;
    sound.then_some(total)
}

/// Decodes one complete frame whose prelude was already validated; `None` if the message CRC
/// does not match or the headers are malformed.
fn parse_frame(frame: &[u8]) -> Option<Message<'_>> {
    let crc_at = frame.len().checked_sub(4)?;
    if crc32(&frame[..crc_at]) != be32(&frame[crc_at..]) {
        return None;
    }
    let headers_end = PRELUDE_LEN.checked_add(be32(frame.get(4..8)?) as usize)?;
    let headers = frame.get(PRELUDE_LEN..headers_end)?;
    let payload = frame.get(headers_end..crc_at)?;
    let mut message = Message {
        message_type: None,
        event_type: None,
        payload,
    };
    let well_formed = for_each_header(headers, |name, kind, value| {
        if kind != STRING {
            return;
        }
        let slot = match name {
            b":message-type" => &mut message.message_type,
            b":event-type" => &mut message.event_type,
            _ => return,
        };
        *slot = std::str::from_utf8(value).ok();
    });
    well_formed.then_some(message)
}

const STRING: u8 = 7;

/// Calls `f(name, type, value)` for each header; `false` if the block is malformed (truncated,
/// or a type the format does not define).
fn for_each_header<'a>(block: &'a [u8], mut f: impl FnMut(&'a [u8], u8, &'a [u8])) -> bool {
    let mut rest = block;
    while let Some((&name_len, after)) = rest.split_first() {
        let Some((name, after)) = split(after, usize::from(name_len)) else {
            return false;
        };
        let Some((&kind, after)) = after.split_first() else {
            return false;
        };
        let fixed = match kind {
            0 | 1 => Some(0), // bool true / false: the type is the value
            2 => Some(1),     // byte
            3 => Some(2),     // i16
            4 => Some(4),     // i32
            5 | 8 => Some(8), // i64, timestamp (ms since epoch)
            9 => Some(16),    // uuid
            6 | STRING => None,
            _ => return false,
        };
        let value_and_rest = match fixed {
            Some(n) => split(after, n),
            None => split(after, 2).and_then(|(len, after)| {
                split(after, usize::from(u16::from_be_bytes([len[0], len[1]])))
            }),
        };
        let Some((value, after)) = value_and_rest else {
            return false;
        };
        f(name, kind, value);
        rest = after;
    }
    true
}

fn split(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (b.len() >= n).then(|| b.split_at(n))
}

/// A big-endian u32 from the first four bytes (callers pass slices of at least four).
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table built at compile time.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::{crc32, for_each_header, parse_frame, FrameDecoder, Message, FRAME_CAP};

    /// Published AWS event-stream test vectors (the `encoded` byte arrays of the SDKs'
    /// `TestVectors` fixtures), written in hex.
    const EMPTY: &str = "000000100000000005c248eb7d98c8ff";
    const INT32_HEADER: &str =
        "0000002b0000000e348bec7b086576656e742d69640400 00a00c7b27666f6f273a27626172277dd3890285";
    const PAYLOAD_NO_HEADERS: &str = "0000001d00000000fd528c5a7b27666f6f273a27626172277dc3653936";
    const ONE_STR_HEADER: &str = "0000003d0000002007fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e7b27666f6f273a27626172277d8d9c08b1";
    const CORRUPTED_HEADERS: &str = "0000003d0000002007fd83960c636f6e74656e742b747970650700106170706c69636174696f6e2f6a736f6e7b27666f6f273a27626172277d8d9c08b1";
    const CORRUPTED_HEADER_LEN: &str = "0000003d0000012007fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e7b27666f6f273a27626172277d8d9c08b1";
    const CORRUPTED_LENGTH: &str = "0100001d00000000fd528c5a7b27666f6f273a27626172277dc3653936";
    const CORRUPTED_PAYLOAD: &str = "0000001d00000000fd528c5a7b27666f6f273a27626172278dc3653936";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn decode(bytes: &[u8]) -> (Vec<Vec<u8>>, bool, u64) {
        let mut d = FrameDecoder::default();
        let mut payloads = Vec::new();
        d.feed(bytes, &mut |m: Message<'_>| {
            payloads.push(m.payload.to_vec())
        });
        d.finish();
        (payloads, d.gave_up(), d.skipped())
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn aws_vectors_decode() {
        assert_eq!(decode(&hex(EMPTY)), (vec![vec![]], false, 0));
        for v in [INT32_HEADER, PAYLOAD_NO_HEADERS, ONE_STR_HEADER] {
            assert_eq!(
                decode(&hex(v)),
                (vec![b"{'foo':'bar'}".to_vec()], false, 0),
                "{v}"
            );
        }
        let frame = hex(ONE_STR_HEADER);
        let mut seen = Vec::new();
        let block = &frame[12..12 + 32];
        assert!(for_each_header(block, |n, k, v| seen.push((
            n.to_vec(),
            k,
            v.to_vec()
        ))));
        assert_eq!(
            seen,
            [(b"content-type".to_vec(), 7, b"application/json".to_vec())]
        );
        let frame = hex(INT32_HEADER);
        let mut seen = Vec::new();
        assert!(for_each_header(&frame[12..26], |n, k, v| seen.push((
            n.to_vec(),
            k,
            v.to_vec()
        ))));
        assert_eq!(seen, [(b"event-id".to_vec(), 4, vec![0, 0, 0xa0, 0x0c])]);
    }

    #[test]
    fn aws_failure_vectors() {
        // A bad message CRC skips that message; a bad prelude loses the framing.
        assert_eq!(decode(&hex(CORRUPTED_HEADERS)), (vec![], false, 1));
        assert_eq!(decode(&hex(CORRUPTED_PAYLOAD)), (vec![], false, 1));
        assert_eq!(decode(&hex(CORRUPTED_HEADER_LEN)), (vec![], true, 0));
        assert_eq!(decode(&hex(CORRUPTED_LENGTH)), (vec![], true, 0));
        // After a skipped message the next one is still found.
        let mut two = hex(CORRUPTED_PAYLOAD);
        two.extend(hex(PAYLOAD_NO_HEADERS));
        assert_eq!(decode(&two), (vec![b"{'foo':'bar'}".to_vec()], false, 1));
    }

    #[test]
    fn vectors_split_at_every_point() {
        let mut stream = hex(EMPTY);
        stream.extend(hex(ONE_STR_HEADER));
        stream.extend(hex(INT32_HEADER));
        for cut in 0..=stream.len() {
            let mut d = FrameDecoder::default();
            let mut n = 0;
            d.feed(&stream[..cut], &mut |_| n += 1);
            d.feed(&stream[cut..], &mut |_| n += 1);
            d.finish();
            assert_eq!((n, d.gave_up(), d.skipped()), (3, false, 0), "cut at {cut}");
        }
    }

    #[test]
    fn truncated_stream_counts_as_skipped() {
        let v = hex(ONE_STR_HEADER);
        assert_eq!(decode(&v[..v.len() - 1]), (vec![], false, 1));
        assert_eq!(decode(&v[..5]), (vec![], false, 1));
    }

    #[test]
    fn oversized_frame_gives_up_without_buffering() {
        let mut prelude = ((FRAME_CAP + 1) as u32).to_be_bytes().to_vec();
        prelude.extend(0u32.to_be_bytes());
        prelude.extend(crc32(&prelude).to_be_bytes());
        let mut d = FrameDecoder::default();
        d.feed(&prelude[..7], &mut |_| {});
        d.feed(&prelude[7..], &mut |_| {});
        d.feed(&[0; 1000], &mut |_| {});
        assert!(d.gave_up());
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn malformed_headers_are_rejected() {
        assert!(for_each_header(b"", |_, _, _| {}));
        assert!(!for_each_header(b"\x03ab", |_, _, _| {})); // name cut short
        assert!(!for_each_header(b"\x01a", |_, _, _| {})); // no type
        assert!(!for_each_header(b"\x01a\x0a", |_, _, _| {})); // type 10 does not exist
        assert!(!for_each_header(b"\x01a\x07\x00\x05abc", |_, _, _| {})); // string cut short
        assert!(!for_each_header(b"\x01a\x09\x00", |_, _, _| {})); // uuid cut short
        assert_eq!(parse_frame(&[0; 3]), None);
    }
}
