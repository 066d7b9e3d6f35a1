//! `openai` dialect: OpenAI, Groq, Azure OpenAI, Cerebras, Mistral-style and bare triples.

use super::*;

#[test]
fn openai_full_set_adds_only_the_ietf_fields() {
    let upstream = [
        ("content-type", "application/json"),
        ("openai-organization", "user-abc"),
        ("openai-processing-ms", "412"),
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-limit-tokens", "150000"),
        ("x-ratelimit-remaining-requests", "59"),
        ("x-ratelimit-remaining-tokens", "149984"),
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-reset-tokens", "6m0s"),
        ("x-request-id", "req_123"),
    ];
    assert_eq!(
        added("openai", &upstream),
        pairs(&[
            (
                "ratelimit-policy",
                r#""requests";q=60, "tokens";q=150000;qu="tokens""#
            ),
            (
                "ratelimit",
                r#""requests";r=59;t=1, "tokens";r=149984;t=360"#
            ),
        ])
    );
}

#[test]
fn groq_429_keeps_retry_after_and_rounds_fractional_resets_up() {
    let upstream = [
        ("retry-after", "7"),
        ("x-ratelimit-limit-requests", "14400"),
        ("x-ratelimit-limit-tokens", "18000"),
        ("x-ratelimit-remaining-requests", "14370"),
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-requests", "2m59.56s"),
        ("x-ratelimit-reset-tokens", "7.66s"),
        ("x-groq-region", "us-east-1"),
    ];
    assert_eq!(
        added("openai", &upstream),
        pairs(&[
            (
                "ratelimit-policy",
                r#""requests";q=14400, "tokens";q=18000;qu="tokens""#
            ),
            ("ratelimit", r#""requests";r=14370;t=180, "tokens";r=0;t=8"#),
        ])
    );
}

#[test]
fn azure_remaining_only_and_retry_after_ms() {
    let upstream = [
        ("x-ratelimit-remaining-requests", "119"),
        ("x-ratelimit-remaining-tokens", "119000"),
        ("retry-after-ms", "1500"),
        ("apim-request-id", "6f0c"),
    ];
    // No token quota, so no token policy declaring the unit, so no token service limit.
    assert_eq!(
        added("openai", &upstream),
        pairs(&[("ratelimit", r#""requests";r=119"#), ("retry-after", "2")])
    );
}

#[test]
fn openai_partial_set_fills_in_only_what_is_missing() {
    let upstream = [
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-remaining-requests", "499"),
        ("x-ratelimit-reset-requests", "120ms"),
        ("x-ratelimit-limit-tokens", "30000"),
    ];
    assert_eq!(
        added("openai", &upstream),
        pairs(&[
            (
                "ratelimit-policy",
                r#""requests";q=500, "tokens";q=30000;qu="tokens""#
            ),
            ("ratelimit", r#""requests";r=499;t=1"#),
        ])
    );
}

#[test]
fn openai_malformed_values_are_skipped_and_never_replaced() {
    let upstream = [
        ("X-RateLimit-Limit-Requests", " 5000 "),
        ("x-ratelimit-remaining-requests", "-3"),
        ("X-RATELIMIT-RESET-REQUESTS", "1h2m3.5s"),
        ("x-ratelimit-limit-tokens", "1e6"),
        ("x-ratelimit-remaining-tokens", "799,000"),
        ("x-ratelimit-reset-tokens", "soon"),
        // A windowed pool must not stand in for a plain one the provider sent, malformed.
        ("x-ratelimit-remaining-requests-day", "10"),
    ];
    assert_eq!(
        added("openai", &upstream),
        pairs(&[
            ("ratelimit-policy", r#""requests";q=5000"#),
            ("ratelimit", r#""requests-day";r=10"#),
        ])
    );
}

#[test]
fn openai_header_names_match_without_case_and_values_are_trimmed() {
    let upstream = [
        ("X-RateLimit-Limit-Tokens", "\t90000 "),
        ("X-RateLimit-Remaining-Tokens", "89000"),
        ("X-RateLimit-Reset-Tokens", " 5s"),
    ];
    let out = normalize(" OpenAI ", &upstream, NOW);
    assert_eq!(
        out.get("RateLimit-Policy"),
        Some(r#""tokens";q=90000;qu="tokens""#)
    );
    assert_eq!(out.get("ratelimit"), Some(r#""tokens";r=89000;t=5"#));
    assert_eq!(out.get("x-ratelimit-limit-tokens"), None);
}

#[test]
fn openai_duplicate_header_lines_use_the_first_valid_value() {
    let upstream = [
        ("x-ratelimit-remaining-requests", "n/a"),
        ("x-ratelimit-remaining-requests", "41"),
        ("x-ratelimit-remaining-requests", "40"),
    ];
    assert_eq!(
        normalize("openai", &upstream, NOW).get("ratelimit"),
        Some(r#""requests";r=41"#)
    );
}

#[test]
fn cerebras_windowed_pools_fill_the_trios() {
    let upstream = [
        ("x-ratelimit-limit-requests-day", "14400"),
        ("x-ratelimit-limit-tokens-minute", "60000"),
        ("x-ratelimit-remaining-requests-day", "14387"),
        ("x-ratelimit-remaining-tokens-minute", "59412"),
        ("x-ratelimit-reset-requests-day", "33011.382867097855"),
        ("x-ratelimit-reset-tokens-minute", "11.382867097854614"),
    ];
    assert_eq!(
        added("openai", &upstream),
        pairs(&[
            ("x-ratelimit-limit-requests", "14400"),
            ("x-ratelimit-remaining-requests", "14387"),
            ("x-ratelimit-reset-requests", "33012s"),
            ("x-ratelimit-limit-tokens", "60000"),
            ("x-ratelimit-remaining-tokens", "59412"),
            ("x-ratelimit-reset-tokens", "12s"),
            (
                "ratelimit-policy",
                r#""requests-day";q=14400;w=86400, "tokens-minute";q=60000;qu="tokens";w=60"#
            ),
            (
                "ratelimit",
                r#""requests-day";r=14387;t=33012, "tokens-minute";r=59412;t=12"#
            ),
        ])
    );
}

#[test]
fn several_windows_report_the_one_closest_to_running_out() {
    let upstream = [
        ("x-ratelimit-limit-requests-minute", "30"),
        ("x-ratelimit-remaining-requests-minute", "2"),
        ("x-ratelimit-reset-requests-minute", "40"),
        ("x-ratelimit-limit-requests-day", "14400"),
        ("x-ratelimit-remaining-requests-day", "14000"),
        ("x-ratelimit-reset-requests-day", "3600"),
        // Mistral-style token windows without resets.
        ("x-ratelimit-limit-tokens-minute", "500000"),
        ("x-ratelimit-remaining-tokens-minute", "499000"),
        ("x-ratelimit-limit-tokens-month", "1000000000"),
        ("x-ratelimit-remaining-tokens-month", "3000"),
    ];
    let out = normalize("openai", &upstream, NOW);
    assert_no_duplicates(&upstream, &out);
    assert_eq!(out.get("x-ratelimit-limit-requests"), Some("30"));
    assert_eq!(out.get("x-ratelimit-remaining-requests"), Some("2"));
    assert_eq!(out.get("x-ratelimit-reset-requests"), Some("40s"));
    assert_eq!(out.get("x-ratelimit-limit-tokens"), Some("1000000000"));
    assert_eq!(out.get("x-ratelimit-remaining-tokens"), Some("3000"));
    assert_eq!(out.get("x-ratelimit-reset-tokens"), None);
    assert_eq!(
        out.get("ratelimit-policy"),
        Some(concat!(
            r#""requests-minute";q=30;w=60, "requests-day";q=14400;w=86400, "#,
            r#""tokens-minute";q=500000;qu="tokens";w=60, "tokens-month";q=1000000000;qu="tokens""#
        ))
    );
    assert_eq!(
        out.get("ratelimit"),
        Some(concat!(
            r#""requests-minute";r=2;t=40, "requests-day";r=14000;t=3600, "#,
            r#""tokens-minute";r=499000, "tokens-month";r=3000"#
        ))
    );
}

#[test]
fn bare_triple_counts_requests_with_any_reset_format() {
    for (reset, secs) in [
        ("1700000002", "2s"),     // epoch seconds
        ("1700000060000", "60s"), // epoch milliseconds (OpenRouter)
        ("12", "12s"),            // seconds from now
        ("1m30s", "90s"),
        ("1600000000", "0s"), // already past
    ] {
        let upstream = [
            ("x-ratelimit-limit", "600"),
            ("x-ratelimit-remaining", "599"),
            ("x-ratelimit-reset", reset),
        ];
        let out = added("openai", &upstream);
        assert_eq!(out[2], ("x-ratelimit-reset-requests", secs.to_string()));
        assert_eq!(out[0], ("x-ratelimit-limit-requests", "600".to_string()));
    }
    // The named trio wins over the bare one.
    let upstream = [
        ("x-ratelimit-limit", "1"),
        ("x-ratelimit-remaining-requests", "7"),
    ];
    assert_eq!(
        normalize("openai", &upstream, NOW).get("ratelimit"),
        Some(r#""requests";r=7"#)
    );
}

#[test]
fn provider_ietf_fields_are_left_alone() {
    let upstream = [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "59"),
        ("RateLimit", r#""default";r=59;t=1"#),
    ];
    assert!(added("openai", &upstream).is_empty());
    let upstream = [
        ("x-ratelimit-remaining-requests", "59"),
        ("RateLimit-Policy", r#""default";q=60;w=60"#),
    ];
    assert!(added("openai", &upstream).is_empty());
}

#[test]
fn numbers_beyond_a_structured_integer_stay_out_of_the_ietf_fields() {
    let upstream = [
        ("x-ratelimit-limit-requests-day", "10000000000000000"),
        ("x-ratelimit-remaining-requests-day", "9999999999999999"),
        ("x-ratelimit-reset-requests-day", "99999999999999999s"),
    ];
    assert_eq!(
        added("openai", &upstream),
        pairs(&[
            ("x-ratelimit-limit-requests", "10000000000000000"),
            ("x-ratelimit-remaining-requests", "9999999999999999"),
            ("x-ratelimit-reset-requests", "99999999999999999s"),
        ])
    );
}
