//! Secret scrubbing: mask the real provider credential in upstream responses before the client
//! sees them, on headers and on bodies as they stream, without buffering whole streams.
//!
//! Providers echo keys back, typically in error messages (`"Incorrect API key provided:
//! sk-proj-…"`). Clients of the gateway hold proxy keys only, so any echo of the credential the
//! gateway injected server-side is a leak. A [`Scrubber`] is compiled once per credential (the
//! gateway caches it beside the decrypted credential); [`Scrubber::scrub`] rewrites a whole
//! buffer or a header value, and [`Scrubber::stream`] gives a [`ScrubStream`] that rewrites a body
//! chunk by chunk.
//!
//! # What is masked
//!
//! Matching is byte-exact and case-sensitive. For a secret `s` of `n` bytes whose **public
//! prefix** is `s[..p]` (see below), a byte of the response is masked when it lies inside any of:
//!
//! 1. **Fragments** (when `n - p >= MIN_FRAGMENT`, a "long" secret): any run of consecutive
//!    bytes `s[o..o + l]` of the secret that contains at least [`MIN_FRAGMENT`] bytes outside
//!    the public prefix, i.e. `(o + l) - max(o, p) >= MIN_FRAGMENT`. The whole secret is such a
//!    run, and so are truncated echoes (`sk-proj-abc1234567…`), partially masked echoes where
//!    [`MIN_FRAGMENT`] consecutive bytes survive, and middle or tail pieces. The run is masked
//!    in full, including the part of the public prefix it covers.
//! 2. **Masked echoes** (long secrets only): `s[..k]`, then a run of mask characters, then
//!    `s[n-4..]`, where `6 <= k <= n - 4` and the run is one or more of `*`, `.` and `…`
//!    (U+2026, as UTF-8) totalling at most `n` bytes. This is the form providers print when
//!    they mask a key themselves: OpenAI's `sk-proj-****…****wxyz`, Stripe's
//!    `sk_test_****4242`, `sk-pro...wxyz`.
//! 3. **Whole occurrences** of a "short" secret (`n - p < MIN_FRAGMENT`): these are matched
//!    only whole, because a piece of them is too short to tell from ordinary text.
//!
//! Overlapping and adjacent matches merge: every maximal run of masked bytes is replaced by one
//! [`REDACTED`] marker, so no part of any match survives and the output says nothing about how
//! many matches there were. The length changes; the gateway drops `content-length` from a
//! response whose body it scrubs.
//!
//! The **public prefix** is the vendor's fixed key prefix (`sk-proj-`, `sk-ant-api03-`,
//! `github_pat_`, `sk_live_`, `xoxb-`, …, listed in `prefix.rs`), the part every key of that
//! kind shares. It is not secret, so a run made only of it (the text `sk-ant-api03-` in a
//! model's answer about Anthropic keys) is left alone. For a JWT (`eyJ….eyJ….sig`) it is the
//! header and the claims, up to the last dot: they are largely the same across an issuer's
//! tokens (so other tokens in a response are not mangled) and useless without the signature,
//! which is what fragments are matched in. A secret with an unknown format has no public
//! prefix, which errs towards masking.
//!
//! # Why `MIN_FRAGMENT` is 10
//!
//! It trades false positives against leaks. The random part of provider keys is base62 or
//! base64url (≈ 6 bits per byte), so 10 bytes are ≈ 60 bits: the chance that some 10-byte
//! window of unrelated text equals one of a 200-byte key's ≈ 190 windows is ≈ 2⁻⁵² per byte
//! of text. Hex secrets are the weak case (4 bits per byte): at 10 bytes, a megabyte of
//! hex-heavy output (hashes, ids) collides with probability ≈ 2 × 10⁻⁴; at 8 bytes it would be
//! ≈ 5 %, which is why the value is not lower. On the leak side, providers echo a key whole,
//! truncated, or masked but for a few bytes at each end. A truncation that keeps fewer than 10
//! of the random bytes of a 40–200-byte key leaves ≥ 30 of them (≥ 120 bits) unknown: it
//! neither reveals nor confirms the key. The masked-but-for-the-ends form is rule 2.
//!
//! # Streaming and the hold-back bound
//!
//! [`ScrubStream::push`] releases every byte that can no longer be part of a match and holds
//! back only the tail of the input that could still begin one (an aligned run of secret bytes,
//! a secret prefix, or an unfinished masked echo running to the end of the chunk). So a match
//! split across any number of chunks, even 1-byte chunks, is masked exactly as in the whole
//! text: the output of `push`… then [`ScrubStream::finish`] equals [`Scrubber::scrub`] of the
//! concatenated input, for every chunking (property-tested). The held tail is never longer
//! than [`Scrubber::max_held`] bytes: `n_max - 1` from fragments and whole matches, and
//! `2 · n_max - 1` when a masked echo (whose mask run may be as long as the secret) is
//! unfinished. In practice it is empty or a few bytes: an SSE chunk ends with `\n`, which is in
//! no key, so events are never delayed. A chunk that needs no change is released zero-copy
//! (`Cow::Borrowed`).
//!
//! # Limits
//!
//! Only contiguous bytes are matched: a secret JSON-escaped (`\/`, `\u002b`), URL-encoded,
//! compressed, or split across SSE events by the wire format is not recognized (fragments of it
//! of at least [`MIN_FRAGMENT`] bytes still are). The gateway must therefore scrub an
//! uncompressed body (send `accept-encoding: identity` upstream or decode first).
//!
//! # Example
//!
//! ```
//! use latchkey_policy::scrub::Scrubber;
//!
//! let key = "sk-proj-Zq4dLm9XbT2vRw7NcE5hKp8sJf3aGy6U";
//! let scrubber = Scrubber::new(&[key])?;
//!
//! // A whole error body, or a header value.
//! let body = format!(r#"{{"error":{{"message":"Incorrect API key provided: {key}"}}}}"#);
//! let clean = scrubber.scrub(body.as_bytes());
//! assert_eq!(&clean[..], br#"{"error":{"message":"Incorrect API key provided: [REDACTED]"}}"#);
//!
//! // A streamed body, with the key split across chunks.
//! let mut stream = scrubber.stream();
//! let mut out = Vec::new();
//! for chunk in ["data: key=sk-proj-Zq4dLm9X", "bT2vRw7NcE5hKp8sJ", "f3aGy6U\n\n"] {
//!     out.extend_from_slice(&stream.push(chunk.as_bytes()));
//! }
//! out.extend_from_slice(&stream.finish());
//! assert_eq!(out, b"data: key=[REDACTED]\n\n");
//!
//! // The provider's own masked echo, and a truncated echo.
//! let echo = format!("sk-proj-{}Gy6U and sk-proj-Zq4dLm9XbT2v…", "*".repeat(28));
//! assert_eq!(&scrubber.scrub(echo.as_bytes())[..], "[REDACTED] and [REDACTED]…".as_bytes());
//!
//! // Ordinary text, and the public prefix alone, pass through untouched (and uncopied).
//! let text = b"OpenAI project keys start with sk-proj-";
//! assert!(matches!(scrubber.scrub(text), std::borrow::Cow::Borrowed(_)));
//! # Ok::<(), latchkey_policy::scrub::ScrubError>(())
//! ```

// Every public item here is part of the gateway's contract; keep it documented.
#![deny(missing_docs)]

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

mod echo;
mod engine;
mod prefix;
mod ranges;
mod stream;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use stream::ScrubStream;

/// Fewest consecutive bytes of a secret, outside its public prefix, that count as a
/// recognizable fragment. See the [module docs](self) for why it is 10.
pub const MIN_FRAGMENT: usize = 10;

/// Longest secret accepted, in bytes (8 KiB): longer than any API key, bearer token or JWT
/// seen in practice, and it keeps the per-stream hold-back bound small.
pub const MAX_SECRET_LEN: usize = 8 * 1024;

/// What every maximal run of masked bytes is replaced with.
pub const REDACTED: &[u8] = b"[REDACTED]";

/// Why a [`Scrubber`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrubError {
    /// A secret is longer than [`MAX_SECRET_LEN`].
    #[error("secret #{index} is {len} bytes; the scrubber accepts at most {max}")]
    SecretTooLong {
        /// Position of the secret in the list given to [`Scrubber::new`].
        index: usize,
        /// Its length in bytes.
        len: usize,
        /// [`MAX_SECRET_LEN`].
        max: usize,
    },
    /// The matcher could not be compiled (the automaton library refused the pattern set).
    #[error("cannot compile the secret matcher: {0}")]
    Build(String),
}

/// Masks one credential's secrets (and recognizable fragments of them) in response bytes.
///
/// Compiled once per credential; cloning is a reference-count increment, and it is
/// `Send + Sync`, so the gateway can cache it beside the decrypted credential and share it
/// between requests. Its [`Debug`](fmt::Debug) output never shows the secrets.
#[derive(Clone)]
pub struct Scrubber {
    engine: Arc<engine::Engine>,
}

impl Scrubber {
    /// Compiles a scrubber for `secrets` (the raw credential values: the API key itself, not
    /// `Bearer …`). Empty and duplicate secrets are ignored; an empty list gives a scrubber
    /// that changes nothing.
    ///
    /// # Errors
    ///
    /// [`ScrubError::SecretTooLong`] when a secret exceeds [`MAX_SECRET_LEN`].
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Result<Self, ScrubError> {
        Ok(Self {
            engine: Arc::new(engine::Engine::new(secrets)?),
        })
    }

    /// True when there is nothing to mask (no non-empty secret was given).
    pub fn is_empty(&self) -> bool {
        self.engine.is_empty()
    }

    /// Masks a whole buffer: a non-streamed body or one header value. Returns
    /// `Cow::Borrowed(input)` when nothing matched, so the common path allocates nothing.
    pub fn scrub<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        let mut found = Vec::new();
        self.engine.scan(input, true, &mut found);
        if found.is_empty() {
            return Cow::Borrowed(input);
        }
        ranges::merge(&mut found);
        let mut out = Vec::with_capacity(input.len());
        ranges::encode(input, input.len(), &found, &mut false, &mut out);
        Cow::Owned(out)
    }

    /// True when `input` contains anything [`scrub`](Self::scrub) would mask.
    pub fn contains_any(&self, input: &[u8]) -> bool {
        let mut found = Vec::new();
        self.engine.scan(input, true, &mut found);
        !found.is_empty()
    }

    /// Starts scrubbing one response body. The stream owns a handle to this scrubber, so it
    /// can live in per-request state.
    pub fn stream(&self) -> ScrubStream {
        ScrubStream::new(Arc::clone(&self.engine))
    }

    /// Most bytes a [`ScrubStream`] ever holds back between calls: `2 · n - 1` for the
    /// longest secret of `n` bytes when it is long enough for masked echoes, `n - 1`
    /// otherwise, 0 with no secrets.
    pub fn max_held(&self) -> usize {
        self.engine.max_match().saturating_sub(1)
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("secrets", &self.engine.secret_count())
            .field("max_held", &self.max_held())
            .finish_non_exhaustive()
    }
}
