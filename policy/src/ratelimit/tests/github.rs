//! `github` dialect.

use super::*;

#[test]
fn github_core_quota() {
    let upstream = [
        ("x-github-request-id", "C0DE:1234"),
        ("x-ratelimit-limit", "5000"),
        ("x-ratelimit-remaining", "4987"),
        ("x-ratelimit-reset", "1700003600"),
        ("x-ratelimit-used", "13"),
        ("x-ratelimit-resource", "core"),
    ];
    assert_eq!(
        added("github", &upstream),
        pairs(&[
            ("x-ratelimit-limit-requests", "5000"),
            ("x-ratelimit-remaining-requests", "4987"),
            ("x-ratelimit-reset-requests", "3600s"),
            ("ratelimit-policy", r#""core";q=5000"#),
            ("ratelimit", r#""core";r=4987;t=3600"#),
        ])
    );
}

#[test]
fn github_remaining_from_used_and_odd_values() {
    let upstream = [
        ("X-RateLimit-Limit", "30"),
        ("X-RateLimit-Used", "31"),
        ("X-RateLimit-Reset", "1699999000"), // past
        ("X-RateLimit-Resource", "Search Weird\""),
    ];
    assert_eq!(
        added("github", &upstream),
        pairs(&[
            ("x-ratelimit-limit-requests", "30"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "0s"),
            ("ratelimit-policy", r#""requests";q=30"#),
            ("ratelimit", r#""requests";r=0;t=0"#),
        ])
    );
    let upstream = [
        ("x-ratelimit-limit", "5000"),
        ("x-ratelimit-remaining", "4999"),
        ("x-ratelimit-reset", "Tue, 14 Nov 2023 23:13:20 GMT"),
        ("x-ratelimit-resource", "graphql"),
    ];
    assert_eq!(
        added("github", &upstream),
        pairs(&[
            ("x-ratelimit-limit-requests", "5000"),
            ("x-ratelimit-remaining-requests", "4999"),
            ("ratelimit-policy", r#""graphql";q=5000"#),
            ("ratelimit", r#""graphql";r=4999"#),
        ])
    );
}

#[test]
fn github_secondary_limit_has_only_retry_after() {
    let upstream = [("retry-after", "60"), ("x-github-request-id", "AB:CD")];
    assert!(added("github", &upstream).is_empty());
}
