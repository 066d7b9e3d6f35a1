//! Properties over random header sets.

use super::*;

use proptest::prelude::*;

fn header_name() -> impl Strategy<Value = String> {
    let known: Vec<&'static str> = vec![
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        "x-ratelimit-limit-requests-day",
        "x-ratelimit-remaining-tokens-minute",
        "x-ratelimit-reset-tokens-minute",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-used",
        "x-ratelimit-resource",
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-ratelimit-input-tokens-limit",
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
        "ratelimit",
        "ratelimit-policy",
        "retry-after",
        "retry-after-ms",
        "content-type",
    ];
    (proptest::sample::select(known), any::<u32>()).prop_map(|(name, mask)| {
        // Random ASCII case.
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 32) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0u32..100_000).prop_map(|n| n.to_string()),
        (0u32..10_000, 0u32..100).prop_map(|(s, f)| format!("{s}.{f}s")),
        (0u32..100, 0u32..60).prop_map(|(m, s)| format!("{m}m{s}s")),
        (1_699_990_000i64..1_700_100_000).prop_map(|n| n.to_string()),
        (0u32..60, 0u32..60).prop_map(|(m, s)| format!("2023-11-14T22:{m:02}:{s:02}Z")),
        "[0-9a-zA-Z:.+\\- ]{0,24}",
        ".{0,12}",
    ]
}

proptest! {
    #[test]
    fn never_duplicates_never_panics(
        dialect in proptest::sample::select(vec!["openai", "anthropic", "github", "none", "x"]),
        headers in proptest::collection::vec((header_name(), header_value()), 0..16),
        now in any::<i64>(),
    ) {
        let list: Vec<(&str, &str)> =
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let out = normalize(dialect, &list, now);
        assert_no_duplicates(&list, &out);
        for (_, value) in &out.headers {
            // Every value is a valid, non-empty header value.
            prop_assert!(!value.is_empty());
            prop_assert!(value.bytes().all(|b| (b' '..=b'~').contains(&b)), "{value:?}");
        }
    }

    #[test]
    fn openai_ietf_fields_agree_with_the_provider_trio(
        limit in 0u64..10_000_000,
        remaining in 0u64..10_000_000,
        ms in 0u64..10_000_000,
    ) {
        let (limit_s, remaining_s, reset_s) =
            (limit.to_string(), remaining.to_string(), format!("{ms}ms"));
        let upstream = [
            ("x-ratelimit-limit-tokens", limit_s.as_str()),
            ("x-ratelimit-remaining-tokens", remaining_s.as_str()),
            ("x-ratelimit-reset-tokens", reset_s.as_str()),
        ];
        let out = normalize("openai", &upstream, NOW);
        let policy = format!(r#""tokens";q={limit};qu="tokens""#);
        prop_assert_eq!(out.get("ratelimit-policy"), Some(policy.as_str()));
        let limit_item = format!(r#""tokens";r={remaining};t={}"#, ms.div_ceil(1000));
        prop_assert_eq!(out.get("ratelimit"), Some(limit_item.as_str()));
        prop_assert_eq!(out.headers.len(), 2);
    }
}
