//! Header-normalization tests, per provider format.

mod anthropic;
mod github;
mod openai;
mod props;

pub(super) use super::*;

const NOW: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

fn added(dialect: &str, headers: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let out = normalize(dialect, headers, NOW);
    assert_no_duplicates(headers, &out);
    out.headers
}

/// Nothing the provider sent is added again, and nothing is added twice.
fn assert_no_duplicates(headers: &[(&str, &str)], out: &Normalized) {
    for (i, (name, _)) in out.headers.iter().enumerate() {
        assert!(HEADER_NAMES.contains(name), "unexpected {name}");
        assert!(
            !headers
                .iter()
                .any(|(n, _)| n.trim().eq_ignore_ascii_case(name)),
            "{name} was already sent by the provider"
        );
        assert!(
            !out.headers[..i].iter().any(|(n, _)| n == name),
            "{name} added twice"
        );
    }
}

fn pairs(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    list.iter().map(|(n, v)| (*n, v.to_string())).collect()
}

#[test]
fn none_and_unknown_dialects_derive_only_retry_after() {
    let upstream = [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "0"),
        ("anthropic-ratelimit-requests-limit", "50"),
        ("retry-after-ms", "250"),
    ];
    for dialect in ["none", "NONE", "bedrock", "", "openai-ish"] {
        assert_eq!(
            added(dialect, &upstream),
            pairs(&[("retry-after", "1")]),
            "{dialect:?}"
        );
    }
    let with_retry_after = [
        ("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"),
        upstream[3],
    ];
    assert!(added("none", &with_retry_after).is_empty());
    assert!(added("none", &[("retry-after-ms", "-1")]).is_empty());
    assert!(added("none", &[]).is_empty());
}

#[test]
fn dialect_list_is_what_normalize_understands() {
    let openai_like = [("x-ratelimit-remaining-requests", "1")];
    let anthropic_like = [("anthropic-ratelimit-requests-remaining", "1")];
    let github_like = [("x-ratelimit-remaining", "1")];
    for d in DIALECTS {
        let any = [&openai_like[..], &anthropic_like[..], &github_like[..]]
            .iter()
            .any(|h| !normalize(d, h, NOW).is_empty());
        assert_eq!(any, d != "none", "{d}");
    }
}
