use std::borrow::Cow;

use super::*;

/// An OpenAI-style project key: public prefix `sk-proj-` (8 bytes) and 32 random bytes.
const KEY: &str = "sk-proj-Zq4dLm9XbT2vRw7NcE5hKp8sJf3aGy6U";
/// An Anthropic-style key: public prefix `sk-ant-api03-` (13 bytes).
const ANT: &str = "sk-ant-api03-Pq7Rz2Lk9Vn4Hs6Td1Wm8Xc3Jb5Yf0Ge-QuAA";

fn scrubber(secrets: &[&str]) -> Scrubber {
    Scrubber::new(secrets).expect("test secrets are valid")
}

fn scrubbed(sc: &Scrubber, text: &str) -> String {
    String::from_utf8_lossy(&sc.scrub(text.as_bytes())).into_owned()
}

/// Streams `input` cut at `cuts` (sorted positions) and returns the whole output.
pub(super) fn streamed(sc: &Scrubber, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut stream = sc.stream();
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&input.len())) {
        out.extend_from_slice(&stream.push(&input[from..to]));
        assert!(
            stream.held() <= sc.max_held(),
            "held {} > bound",
            stream.held()
        );
        from = to;
    }
    out.extend_from_slice(&stream.finish());
    out
}

#[test]
fn whole_secret_is_masked() {
    let sc = scrubber(&[KEY]);
    assert_eq!(
        scrubbed(&sc, &format!("Authorization failed for {KEY}.")),
        "Authorization failed for [REDACTED]."
    );
    assert_eq!(scrubbed(&sc, KEY), "[REDACTED]");
    assert_eq!(scrubbed(&sc, &format!("Bearer {KEY}")), "Bearer [REDACTED]");
    assert!(sc.contains_any(KEY.as_bytes()));
}

#[test]
fn prefix_fragment_needs_min_fragment_non_public_bytes() {
    let sc = scrubber(&[KEY]);
    // `sk-proj-` + 10 key bytes: masked, prefix included.
    let ten = &KEY[..8 + MIN_FRAGMENT];
    assert_eq!(scrubbed(&sc, &format!("key {ten}...")), "key [REDACTED]...");
    // `sk-proj-` + 9 key bytes: too little to recognize.
    let nine = &KEY[..8 + MIN_FRAGMENT - 1];
    assert_eq!(
        scrubbed(&sc, &format!("key {nine}...")),
        format!("key {nine}...")
    );
    assert!(!sc.contains_any(nine.as_bytes()));
}

#[test]
fn suffix_and_middle_fragments() {
    let sc = scrubber(&[KEY]);
    let n = KEY.len();
    let tail = &KEY[n - MIN_FRAGMENT..];
    assert_eq!(scrubbed(&sc, &format!("…{tail}\"")), "…[REDACTED]\"");
    let short_tail = &KEY[n - MIN_FRAGMENT + 1..];
    assert_eq!(scrubbed(&sc, short_tail), short_tail);
    let middle = &KEY[14..14 + MIN_FRAGMENT];
    assert_eq!(scrubbed(&sc, &format!("x{middle}x")), "x[REDACTED]x");
    let middle_short = &KEY[14..14 + MIN_FRAGMENT - 1];
    assert_eq!(scrubbed(&sc, middle_short), middle_short);
    // A partially masked echo where 12 bytes survive in the middle.
    let partial = format!("sk-proj-****{}****", &KEY[12..24]);
    assert_eq!(scrubbed(&sc, &partial), "sk-proj-****[REDACTED]****");
}

#[test]
fn secret_without_known_prefix_is_fragment_matched_everywhere() {
    let secret = "Zq4dLm9XbT2vRw7NcE5hKp8s";
    let sc = scrubber(&[secret]);
    for start in 0..=secret.len() - MIN_FRAGMENT {
        let piece = &secret[start..start + MIN_FRAGMENT];
        assert_eq!(
            scrubbed(&sc, &format!("<{piece}>")),
            "<[REDACTED]>",
            "{piece}"
        );
    }
}

#[test]
fn provider_masked_echoes() {
    let sc = scrubber(&[KEY]);
    let stars = "*".repeat(KEY.len() - 12);
    for echo in [
        format!("sk-proj-{stars}Gy6U"),
        "sk-pro***Gy6U".to_string(),
        "sk-proj-Zq4d...Gy6U".to_string(),
        "sk-proj-…Gy6U".to_string(),
        "sk-proj-*.…*Gy6U".to_string(),
        format!("sk-proj-{}Gy6U", "*".repeat(KEY.len())),
    ] {
        let text = format!("Incorrect API key provided: {echo}. You can find…");
        assert_eq!(
            scrubbed(&sc, &text),
            "Incorrect API key provided: [REDACTED]. You can find…",
            "{echo}"
        );
    }
    for not_echo in [
        format!("sk-proj-{stars}Gy6X"), // other key's last 4
        "sk-pr****Gy6U".to_string(),    // fewer than 6 leading bytes
        "sk-proj-Gy6U".to_string(),     // no mask run
        format!("sk-proj-{}Gy6U", "*".repeat(KEY.len() + 1)), // run longer than the key
        "sk-proj-** Gy6U".to_string(),  // interrupted
    ] {
        assert_eq!(scrubbed(&sc, &not_echo), not_echo);
    }
}

#[test]
fn openai_json_error_body() {
    let sc = scrubber(&[KEY]);
    let body = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}}}"#
    );
    let out = sc.scrub(body.as_bytes());
    let json: serde_json::Value = serde_json::from_slice(&out).expect("still valid JSON");
    assert_eq!(
        json["error"]["message"],
        "Incorrect API key provided: [REDACTED]. You can find your API key at https://platform.openai.com/account/api-keys."
    );
    assert_eq!(json["error"]["code"], "invalid_api_key");

    let masked = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: sk-proj-{}Gy6U.","type":"invalid_request_error"}}}}"#,
        "*".repeat(28)
    );
    assert_eq!(
        &sc.scrub(masked.as_bytes())[..],
        br#"{"error":{"message":"Incorrect API key provided: [REDACTED].","type":"invalid_request_error"}}"#
    );
    for chunk in 1..8 {
        let cuts: Vec<usize> = (chunk..masked.len()).step_by(chunk).collect();
        assert_eq!(
            streamed(&sc, masked.as_bytes(), &cuts),
            sc.scrub(masked.as_bytes()).to_vec()
        );
    }
}

#[test]
fn two_secrets() {
    let sc = scrubber(&[KEY, ANT]);
    let text = format!("a={KEY} b={ANT} c={}", &ANT[20..40]);
    assert_eq!(
        scrubbed(&sc, &text),
        "a=[REDACTED] b=[REDACTED] c=[REDACTED]"
    );
    assert!(format!("{sc:?}").contains("secrets: 2"));
}

#[test]
fn overlapping_and_adjacent_matches_merge() {
    let sc = scrubber(&[KEY, ANT]);
    assert_eq!(scrubbed(&sc, &format!("{KEY}{KEY}")), "[REDACTED]");
    assert_eq!(scrubbed(&sc, &format!("{KEY}{ANT}")), "[REDACTED]");
    assert_eq!(
        scrubbed(&sc, &format!("{KEY} {KEY}")),
        "[REDACTED] [REDACTED]"
    );
    // Two fragments sharing bytes: the key's end runs into its start.
    let text = format!("{}{}", &KEY[20..], &KEY[..20]);
    assert_eq!(scrubbed(&sc, &text), "[REDACTED]");
    // A self-overlapping secret.
    let sc = scrubber(&["abcabcabcabcabc"]);
    assert_eq!(scrubbed(&sc, "xabcabcabcabcabcabcabcx"), "x[REDACTED]x");
}

#[test]
fn secret_split_at_every_point_into_two_and_three_chunks() {
    let sc = scrubber(&[KEY, ANT]);
    let text = format!("{{\"message\":\"bad key {KEY} and {ANT}\"}}\n");
    let input = text.as_bytes();
    let expected = sc.scrub(input).to_vec();
    assert_eq!(
        expected,
        b"{\"message\":\"bad key [REDACTED] and [REDACTED]\"}\n".to_vec()
    );
    for i in 0..=input.len() {
        assert_eq!(streamed(&sc, input, &[i]), expected, "cut at {i}");
    }
    for i in 0..=input.len() {
        for j in i..=input.len() {
            assert_eq!(streamed(&sc, input, &[i, j]), expected, "cuts at {i}, {j}");
        }
    }
}

#[test]
fn secret_split_into_n_chunks() {
    let sc = scrubber(&[KEY]);
    let text = format!("data: {{\"x\":\"{KEY}\"}}\n\ndata: {}\n\n", &KEY[..20]);
    let input = text.as_bytes();
    let expected = sc.scrub(input).to_vec();
    for size in 1..=input.len() {
        let cuts: Vec<usize> = (size..input.len()).step_by(size).collect();
        assert_eq!(streamed(&sc, input, &cuts), expected, "chunks of {size}");
    }
}

#[test]
fn one_byte_chunks_never_release_a_secret_byte_early() {
    let sc = scrubber(&[KEY]);
    let input = format!("x{KEY}y");
    let mut stream = sc.stream();
    let mut out = Vec::new();
    for (i, b) in input.as_bytes().iter().enumerate() {
        out.extend_from_slice(&stream.push(std::slice::from_ref(b)));
        if i < KEY.len() {
            // No byte of the key comes out before the key is complete.
            assert_eq!(out, b"x", "after byte {i}");
        }
    }
    out.extend_from_slice(&stream.finish());
    assert_eq!(out, b"x[REDACTED]y");
}

#[test]
fn unmatched_chunks_are_released_zero_copy() {
    let sc = scrubber(&[KEY]);
    let mut stream = sc.stream();
    let chunk = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n";
    let out = stream.push(chunk);
    assert!(
        matches!(out, Cow::Borrowed(b) if b.as_ptr() == chunk.as_ptr() && b.len() == chunk.len())
    );
    assert_eq!(stream.held(), 0);
    // A chunk ending in bytes that could start the key holds back only those.
    let out = stream.push(b"token sk-pr");
    assert_eq!(&out[..], b"token ");
    assert_eq!(stream.held(), 5);
    assert_eq!(&stream.push(b"ice")[..], b"sk-price");
    assert_eq!(stream.finish(), b"");
}

#[test]
fn no_false_positives_on_ordinary_text() {
    let sc = scrubber(&[KEY, ANT]);
    for text in [
        "The quick brown fox jumps over the lazy dog.",
        r#"{"id":"chatcmpl-9x","object":"chat.completion","choices":[{"index":0}]}"#,
        "OpenAI keys start with sk-proj- and Anthropic keys with sk-ant-api03- followed by",
        "sk-proj-Zq4dLm9X", // prefix and 8 key bytes
        "sk-proj-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGy6U",
        "",
    ] {
        assert!(
            matches!(sc.scrub(text.as_bytes()), Cow::Borrowed(_)),
            "{text}"
        );
        assert!(!sc.contains_any(text.as_bytes()));
    }
}

#[test]
fn empty_secret_list_is_a_no_op() {
    let none: [&str; 0] = [];
    for sc in [scrubber(&none), scrubber(&[""])] {
        assert!(sc.is_empty());
        assert_eq!(sc.max_held(), 0);
        assert!(matches!(sc.scrub(b"anything"), Cow::Borrowed(b"anything")));
        assert!(!sc.contains_any(b"anything"));
        let mut stream = sc.stream();
        assert!(matches!(stream.push(b"abc"), Cow::Borrowed(b"abc")));
        assert!(stream.finish().is_empty());
    }
}

#[test]
fn very_short_secret_is_matched_only_whole() {
    let sc = scrubber(&["abc123"]);
    assert_eq!(
        scrubbed(&sc, "xabc123y abc12 bc123"),
        "x[REDACTED]y abc12 bc123"
    );
    assert_eq!(sc.max_held(), 5);
    let input = b"pin abc123 pin abc1";
    let expected = sc.scrub(input).to_vec();
    assert_eq!(expected, b"pin [REDACTED] pin abc1");
    for i in 0..=input.len() {
        assert_eq!(streamed(&sc, input, &[i]), expected);
    }
    // A vendor key whose random part is shorter than MIN_FRAGMENT is short too.
    let sc = scrubber(&["sk-proj-Zq4dLm9X"]);
    assert_eq!(
        scrubbed(&sc, "k=sk-proj-Zq4dLm9X sk-proj-Zq4dLm9"),
        "k=[REDACTED] sk-proj-Zq4dLm9"
    );
}

#[test]
fn public_prefixes_alone_are_left_alone() {
    let sc = scrubber(&[ANT]);
    assert_eq!(
        scrubbed(&sc, "use sk-ant-api03-..."),
        "use sk-ant-api03-..."
    );
    // The prefix plus 10 key bytes is masked whole.
    let echo = &ANT[..13 + MIN_FRAGMENT];
    assert_eq!(scrubbed(&sc, &format!("[{echo}]")), "[[REDACTED]]");
    // A JWT's header and claims are shared with the issuer's other tokens; its signature is not.
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    let sc = scrubber(&[jwt]);
    let other =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl";
    assert_eq!(scrubbed(&sc, other), other);
    assert_eq!(scrubbed(&sc, jwt), "[REDACTED]");
    let truncated = &jwt[..jwt.len() - 20];
    assert_eq!(scrubbed(&sc, &format!("{truncated}…")), "[REDACTED]…");
}

#[test]
fn arbitrary_bytes() {
    let secret: &[u8] = &[
        0xff, 0x00, 0xfe, 0x80, 0x01, 0x02, 0x03, 0xe2, 0x80, 0xa6, 0x7f, 0x00,
    ];
    let sc = Scrubber::new(&[secret]).expect("valid secret");
    let mut input = vec![0xc3, 0x28];
    input.extend_from_slice(secret);
    input.extend_from_slice(&[0xe2, 0x80]);
    let mut expected = vec![0xc3, 0x28];
    expected.extend_from_slice(REDACTED);
    expected.extend_from_slice(&[0xe2, 0x80]);
    assert_eq!(sc.scrub(&input).to_vec(), expected);
    for i in 0..=input.len() {
        assert_eq!(streamed(&sc, &input, &[i]), expected);
    }
}

#[test]
fn too_long_secret_is_rejected() {
    let long = "x".repeat(MAX_SECRET_LEN + 1);
    let err = Scrubber::new(&[KEY, long.as_str()]).expect_err("too long");
    assert_eq!(
        err,
        ScrubError::SecretTooLong {
            index: 1,
            len: MAX_SECRET_LEN + 1,
            max: MAX_SECRET_LEN
        }
    );
    assert!(Scrubber::new(&["y".repeat(MAX_SECRET_LEN)]).is_ok());
}

#[test]
fn debug_never_shows_secrets_and_scrubber_is_shareable() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Scrubber>();
    fn sendable<T: Send + 'static>() {}
    sendable::<ScrubStream>();

    let sc = scrubber(&[KEY]);
    let mut stream = sc.stream();
    let _ = stream.push(&KEY.as_bytes()[..30]);
    assert!(stream.held() > 0);
    for debug in [format!("{sc:?}"), format!("{sc:#?}"), format!("{stream:?}")] {
        assert!(!debug.contains(&KEY[8..18]), "{debug}");
        assert!(!debug.contains("Zq4d"), "{debug}");
    }
}

#[test]
fn stream_is_reusable_after_finish_and_empty_chunks_are_fine() {
    let sc = scrubber(&[KEY]);
    let mut stream = sc.stream();
    assert!(stream.push(b"").is_empty());
    let _ = stream.push(&KEY.as_bytes()[..20]);
    assert_eq!(stream.finish(), REDACTED);
    assert_eq!(&stream.push(b"clean\n")[..], b"clean\n");
    assert!(stream.finish().is_empty());
}

#[test]
fn carried_mask_survives_chunks_that_release_nothing() {
    // Found by the property test: a short secret whose last bytes could also begin a fragment
    // of the long one, so its match is released in part and the rest carried over 1-byte
    // chunks that release nothing.
    let short: &[u8] = &[0xe2, b'a', b'c'];
    let long: &[u8] = b"a**a*aaaaaaacaaaaaaaaaaaa";
    let sc = Scrubber::new(&[short, long]).expect("valid secrets");
    let input = [short, long].concat();
    assert_eq!(&sc.scrub(&input)[..], REDACTED);
    let every_byte: Vec<usize> = (1..input.len()).collect();
    assert_eq!(streamed(&sc, &input, &every_byte), REDACTED);
}
