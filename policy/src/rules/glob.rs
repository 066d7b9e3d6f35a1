//! Minimal globs for names and paths: `*` matches any run of characters (including none and
//! including `/`); every other character matches itself, ignoring ASCII case. There is no
//! escaping and no other metacharacter, so a pattern can never fail to compile.

/// A compiled glob.
#[derive(Debug, Clone)]
pub(crate) enum Glob {
    /// No `*`: the whole value must equal the pattern.
    Exact(String),
    /// `*` alone: matches everything.
    Any,
    /// `lit*`.
    Prefix(String),
    /// `*lit`.
    Suffix(String),
    /// General form: literal pieces separated by stars. `anchored_start` / `anchored_end`
    /// say whether the pattern does not begin / end with `*`.
    Pieces {
        pieces: Vec<String>,
        anchored_start: bool,
        anchored_end: bool,
    },
}

impl Glob {
    /// Compiles a pattern.
    pub(crate) fn new(pattern: &str) -> Self {
        if !pattern.contains('*') {
            return Glob::Exact(pattern.to_owned());
        }
        let pieces: Vec<String> = pattern
            .split('*')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let anchored_start = !pattern.starts_with('*');
        let anchored_end = !pattern.ends_with('*');
        match (pieces.len(), anchored_start, anchored_end) {
            (0, _, _) => Glob::Any,
            (1, true, false) => Glob::Prefix(pieces.into_iter().next().unwrap_or_default()),
            (1, false, true) => Glob::Suffix(pieces.into_iter().next().unwrap_or_default()),
            _ => Glob::Pieces {
                pieces,
                anchored_start,
                anchored_end,
            },
        }
    }

    /// Whether `text` matches, ignoring ASCII case.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        match self {
            Glob::Exact(p) => text.eq_ignore_ascii_case(p),
            Glob::Any => true,
            Glob::Prefix(p) => starts_with_ci(text.as_bytes(), p.as_bytes()),
            Glob::Suffix(p) => ends_with_ci(text.as_bytes(), p.as_bytes()),
            Glob::Pieces {
                pieces,
                anchored_start,
                anchored_end,
            } => pieces_match(text.as_bytes(), pieces, *anchored_start, *anchored_end),
        }
    }
}

fn starts_with_ci(text: &[u8], lit: &[u8]) -> bool {
    text.len() >= lit.len() && text[..lit.len()].eq_ignore_ascii_case(lit)
}

fn ends_with_ci(text: &[u8], lit: &[u8]) -> bool {
    text.len() >= lit.len() && text[text.len() - lit.len()..].eq_ignore_ascii_case(lit)
}

/// First position at or after `from` where `lit` occurs (ASCII case-insensitive).
fn find_ci(text: &[u8], lit: &[u8], from: usize) -> Option<usize> {
    if lit.len() > text.len() {
        return None;
    }
    (from..=text.len() - lit.len()).find(|&i| text[i..i + lit.len()].eq_ignore_ascii_case(lit))
}

/// Stars between literal pieces: placing each middle piece at its leftmost occurrence is
/// optimal (any later placement leaves less room for the rest), so no backtracking is needed.
/// Working on bytes is sound for UTF-8: pieces are valid UTF-8 and ASCII folding never maps a
/// byte of a multi-byte sequence.
fn pieces_match(text: &[u8], pieces: &[String], anchored_start: bool, anchored_end: bool) -> bool {
    let mut lo = 0;
    let mut hi = text.len();
    let mut middle = pieces;
    if anchored_start {
        let Some((first, rest)) = middle.split_first() else {
            return true;
        };
        if !starts_with_ci(text, first.as_bytes()) {
            return false;
        }
        lo = first.len();
        middle = rest;
    }
    if anchored_end {
        let Some((last, rest)) = middle.split_last() else {
            return lo <= hi;
        };
        if hi < lo + last.len() || !ends_with_ci(&text[lo..], last.as_bytes()) {
            return false;
        }
        hi -= last.len();
        middle = rest;
    }
    let window = &text[..hi];
    for piece in middle {
        match find_ci(window, piece.as_bytes(), lo) {
            Some(at) => lo = at + piece.len(),
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).is_match(t)
    }

    #[test]
    fn exact_and_case() {
        assert!(m("openai", "openai"));
        assert!(m("openai", "OpenAI"));
        assert!(!m("openai", "openai2"));
        assert!(m("", ""));
        assert!(!m("", "x"));
    }

    #[test]
    fn stars() {
        assert!(m("*", ""));
        assert!(m("**", "abc"));
        assert!(m("gpt-4o*", "gpt-4o-mini"));
        assert!(m("gpt-4o*", "gpt-4o"));
        assert!(!m("gpt-4o*", "gpt-4"));
        assert!(m("*-mini", "gpt-4o-MINI"));
        assert!(!m("*-mini", "mini"));
        assert!(m("/v1/chat/*", "/v1/chat/completions"));
        assert!(m("/v1/*/completions", "/v1/chat/completions"));
        assert!(m("/v1/*/completions", "/v1/a/b/completions"));
        assert!(!m("/v1/*/completions", "/v1/completions"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("*b*", "abc"));
        assert!(!m("*b*", "ac"));
        // The anchored start and end must not overlap.
        assert!(!m("ab*ba", "aba"));
        assert!(m("ab*ba", "abba"));
        assert!(m("claude-*-haiku*", "claude-3-5-haiku-latest"));
        // Non-ASCII matches itself; only ASCII case is folded.
        assert!(m("é*ß", "é…ß"));
        assert!(!m("é*ß", "É…ß"));
    }
}
