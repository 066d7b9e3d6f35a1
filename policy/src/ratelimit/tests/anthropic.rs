//! `anthropic` dialect.

use super::*;

fn anthropic_full() -> Vec<(&'static str, &'static str)> {
    vec![
        ("request-id", "req_018EeWyXxfu5pfWkrYcMdjWG"),
        ("anthropic-organization-id", "0b5b4e4b-0000"),
        ("anthropic-ratelimit-requests-limit", "4000"),
        ("anthropic-ratelimit-requests-remaining", "3999"),
        ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:21Z"),
        ("anthropic-ratelimit-tokens-limit", "480000"),
        ("anthropic-ratelimit-tokens-remaining", "479000"),
        ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:13:21Z"),
        ("anthropic-ratelimit-input-tokens-limit", "400000"),
        ("anthropic-ratelimit-input-tokens-remaining", "400000"),
        (
            "anthropic-ratelimit-input-tokens-reset",
            "2023-11-14T22:13:20Z",
        ),
        ("anthropic-ratelimit-output-tokens-limit", "80000"),
        ("anthropic-ratelimit-output-tokens-remaining", "79000"),
        (
            "anthropic-ratelimit-output-tokens-reset",
            "2023-11-14T22:13:21Z",
        ),
    ]
}

#[test]
fn anthropic_full_set() {
    assert_eq!(
        added("anthropic", &anthropic_full()),
        pairs(&[
            ("x-ratelimit-limit-requests", "4000"),
            ("x-ratelimit-remaining-requests", "3999"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-limit-tokens", "480000"),
            ("x-ratelimit-remaining-tokens", "479000"),
            ("x-ratelimit-reset-tokens", "1s"),
            (
                "ratelimit-policy",
                concat!(
                    r#""requests";q=4000, "tokens";q=480000;qu="tokens", "#,
                    r#""input-tokens";q=400000;qu="tokens", "output-tokens";q=80000;qu="tokens""#
                )
            ),
            (
                "ratelimit",
                concat!(
                    r#""requests";r=3999;t=1, "tokens";r=479000;t=1, "#,
                    r#""input-tokens";r=400000;t=0, "output-tokens";r=79000;t=1"#
                )
            ),
        ])
    );
}

#[test]
fn anthropic_without_combined_tokens_reports_the_tighter_pool_whole() {
    let upstream = [
        ("anthropic-ratelimit-input-tokens-limit", "400000"),
        ("anthropic-ratelimit-input-tokens-remaining", "12000"),
        (
            "anthropic-ratelimit-input-tokens-reset",
            "2023-11-14T22:13:50Z",
        ),
        ("anthropic-ratelimit-output-tokens-limit", "80000"),
        ("anthropic-ratelimit-output-tokens-remaining", "79000"),
        (
            "anthropic-ratelimit-output-tokens-reset",
            "2023-11-14T22:13:21Z",
        ),
    ];
    let out = normalize("anthropic", &upstream, NOW);
    assert_no_duplicates(&upstream, &out);
    assert_eq!(out.get("x-ratelimit-limit-tokens"), Some("400000"));
    assert_eq!(out.get("x-ratelimit-remaining-tokens"), Some("12000"));
    assert_eq!(out.get("x-ratelimit-reset-tokens"), Some("30s"));
    assert_eq!(out.get("x-ratelimit-limit-requests"), None);
    assert_eq!(
        out.get("ratelimit"),
        Some(r#""input-tokens";r=12000;t=30, "output-tokens";r=79000;t=1"#)
    );

    // Equal remaining: the later reset is the tighter one.
    let upstream = [
        ("anthropic-ratelimit-input-tokens-remaining", "5000"),
        (
            "anthropic-ratelimit-input-tokens-reset",
            "2023-11-14T22:13:25Z",
        ),
        ("anthropic-ratelimit-output-tokens-remaining", "5000"),
        (
            "anthropic-ratelimit-output-tokens-reset",
            "2023-11-14T22:14:20Z",
        ),
    ];
    let out = normalize("anthropic", &upstream, NOW);
    assert_eq!(out.get("x-ratelimit-reset-tokens"), Some("60s"));
}

#[test]
fn anthropic_429_keeps_retry_after() {
    let upstream = [
        ("retry-after", "23"),
        ("x-should-retry", "true"),
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:43Z"),
        ("retry-after-ms", "23000"),
    ];
    assert_eq!(
        added("anthropic", &upstream),
        pairs(&[
            ("x-ratelimit-limit-requests", "50"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "23s"),
            ("ratelimit-policy", r#""requests";q=50"#),
            ("ratelimit", r#""requests";r=0;t=23"#),
        ])
    );
}

#[test]
fn anthropic_odd_timestamps() {
    for (reset, expected) in [
        ("2023-11-14T22:13:32.5+00:00", Some("13s")),
        ("2023-11-15T00:13:30+02:00", Some("10s")),
        ("2023-11-14T22:13:20.000Z", Some("0s")),
        ("2023-11-14T20:00:00Z", Some("0s")), // in the past
        ("2023-02-30T00:00:00Z", None),
        ("tomorrow", None),
        ("1700000012", None),
        ("", None),
    ] {
        let upstream = [
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-reset", reset),
        ];
        let out = normalize("anthropic", &upstream, NOW);
        assert_eq!(out.get("x-ratelimit-reset-requests"), expected, "{reset:?}");
        let t = expected.map(|s| format!(";t={}", s.trim_end_matches('s')));
        assert_eq!(
            out.get("ratelimit"),
            Some(format!(r#""requests";r=49{}"#, t.unwrap_or_default()).as_str())
        );
    }
}

#[test]
fn anthropic_headers_already_normalized_upstream_are_not_duplicated() {
    let mut upstream = anthropic_full();
    upstream.push(("X-RateLimit-Remaining-Tokens", "1"));
    upstream.push(("ratelimit-policy", r#""x";q=1"#));
    let out = added("anthropic", &upstream);
    assert_eq!(out.len(), 5, "{out:?}");
    assert!(out.iter().all(|(n, _)| n.starts_with("x-ratelimit-")));
}
