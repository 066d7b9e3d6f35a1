//! The compiled matcher. One Aho–Corasick pass over the data finds every candidate:
//!
//! - each `MIN_FRAGMENT`-byte window of a long secret's non-public part: a hit is masked as
//!   is (every fragment is covered by the windows it contains, all of which occur in the
//!   data), and a hit of the first such window is extended to the left over the public prefix
//!   for as long as the bytes keep matching;
//! - each long secret's first [`echo::HEAD`] bytes: the anchor of a masked echo;
//! - each short secret, whole.
//!
//! With overlapping search and equal-length windows there is at most one window hit per byte,
//! so a scan is linear in the data.

use std::collections::HashMap;
use std::ops::Range;

use aho_corasick::{AhoCorasick, MatchKind};

use super::{echo, prefix, ranges, ScrubError, MAX_SECRET_LEN, MIN_FRAGMENT};

/// One secret, with what is matched of it.
struct Secret {
    bytes: Box<[u8]>,
    /// Length of its public prefix (`sk-proj-`, …).
    public: usize,
    /// Fragments and masked echoes are matched; otherwise the secret is matched only whole.
    long: bool,
}

/// What a hit of one (deduplicated) pattern means.
#[derive(Default)]
struct Role {
    /// The hit itself is masked (a window of a long secret or a whole short secret).
    mask: bool,
    /// Long secrets whose first non-public window this is: extend the hit over their prefix.
    extend_left: Vec<usize>,
    /// Long secrets whose masked echoes start with this pattern.
    echo: Vec<usize>,
}

/// Compiled secrets; shared by every [`Scrubber`](super::Scrubber) clone and stream.
pub(super) struct Engine {
    secrets: Vec<Secret>,
    matcher: Option<AhoCorasick>,
    roles: Vec<Role>,
    /// Longest possible match, in bytes.
    max_match: usize,
}

/// Collects deduplicated patterns and their roles.
#[derive(Default)]
struct Patterns<'a> {
    ids: HashMap<&'a [u8], usize>,
    list: Vec<&'a [u8]>,
    roles: Vec<Role>,
}

impl<'a> Patterns<'a> {
    fn role(&mut self, pattern: &'a [u8]) -> &mut Role {
        let id = match self.ids.get(pattern) {
            Some(&id) => id,
            None => {
                self.list.push(pattern);
                self.roles.push(Role::default());
                self.ids.insert(pattern, self.roles.len() - 1);
                self.roles.len() - 1
            }
        };
        &mut self.roles[id]
    }
}

impl Engine {
    pub(super) fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Result<Self, ScrubError> {
        let mut list: Vec<Secret> = Vec::new();
        for (index, secret) in secrets.iter().enumerate() {
            let bytes = secret.as_ref();
            if bytes.len() > MAX_SECRET_LEN {
                return Err(ScrubError::SecretTooLong {
                    index,
                    len: bytes.len(),
                    max: MAX_SECRET_LEN,
                });
            }
            if bytes.is_empty() || list.iter().any(|s| *s.bytes == *bytes) {
                continue;
            }
            let public = prefix::public_len(bytes);
            list.push(Secret {
                bytes: bytes.into(),
                public,
                long: bytes.len() - public >= MIN_FRAGMENT,
            });
        }
        let max_match = list
            .iter()
            .map(|s| {
                if s.long {
                    2 * s.bytes.len()
                } else {
                    s.bytes.len()
                }
            })
            .max()
            .unwrap_or(0);

        let mut patterns = Patterns::default();
        for (j, s) in list.iter().enumerate() {
            let b = &s.bytes[..];
            if !s.long {
                patterns.role(b).mask = true;
                continue;
            }
            for o in s.public..=b.len() - MIN_FRAGMENT {
                let role = patterns.role(&b[o..o + MIN_FRAGMENT]);
                role.mask = true;
                if o == s.public && s.public > 0 {
                    role.extend_left.push(j);
                }
            }
            patterns.role(&b[..echo::HEAD]).echo.push(j);
        }
        let matcher = if patterns.list.is_empty() {
            None
        } else {
            let built = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&patterns.list)
                .map_err(|e| ScrubError::Build(e.to_string()))?;
            Some(built)
        };
        let roles = patterns.roles;
        Ok(Self {
            secrets: list,
            matcher,
            roles,
            max_match,
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub(super) fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    pub(super) fn max_match(&self) -> usize {
        self.max_match
    }

    /// Adds every masked range of `hay` to `found` (unsorted, possibly overlapping).
    ///
    /// With `eof` false, more data may follow `hay`: returns the earliest position from which
    /// the rest of `hay` could still begin a match that continues past its end (`hay.len()`
    /// when there is none). Bytes before it are decided; ranges found at or after it are
    /// found again once more data arrives.
    pub(super) fn scan(&self, hay: &[u8], eof: bool, found: &mut Vec<Range<usize>>) -> usize {
        let mut open = hay.len();
        let Some(matcher) = &self.matcher else {
            return open;
        };
        for hit in matcher.find_overlapping_iter(hay) {
            let Some(role) = self.roles.get(hit.pattern().as_usize()) else {
                continue;
            };
            if role.mask {
                ranges::add(found, hit.range());
            }
            for s in role.extend_left.iter().filter_map(|&j| self.secrets.get(j)) {
                let left = common_suffix(&hay[..hit.start()], &s.bytes[..s.public]);
                ranges::add(found, hit.start() - left..hit.end());
            }
            for s in role.echo.iter().filter_map(|&j| self.secrets.get(j)) {
                echo::find(&s.bytes, hay, hit.start(), eof, found, &mut open);
            }
        }
        if !eof {
            for s in &self.secrets {
                if let Some(start) = open_tail(s, hay) {
                    open = open.min(start);
                }
            }
        }
        open
    }
}

/// Where the longest suffix of `hay` that could begin a fragment or whole match of `s`
/// starts: for a long secret, an aligned run `s[o..e]` with `e < n` (the secret goes on) and
/// `o <= n - MIN_FRAGMENT` (finished, it would hold `MIN_FRAGMENT` non-public bytes); for a
/// short one, a proper prefix of it. Masked echoes are handled by [`echo::find`].
fn open_tail(s: &Secret, hay: &[u8]) -> Option<usize> {
    let b = &s.bytes[..];
    let n = b.len();
    let last = *hay.last()?;
    if !s.long {
        return (1..n)
            .rev()
            .find(|&l| hay.ends_with(&b[..l]))
            .map(|l| hay.len() - l);
    }
    (1..n)
        .filter(|&e| b[e - 1] == last)
        .filter_map(|e| {
            let l = common_suffix(hay, &b[..e]);
            (e - l + MIN_FRAGMENT <= n).then(|| hay.len() - l)
        })
        .min()
}

fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}
