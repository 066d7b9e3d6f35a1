use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn all() -> &'static Detectors {
    static ALL: OnceLock<Detectors> = OnceLock::new();
    ALL.get_or_init(|| match Detectors::new(&PiiKind::BUILTIN, &[]) {
        Ok(d) => d,
        Err(e) => panic!("built-in detectors compile: {e}"),
    })
}

/// One detector alone, compiled once per test binary.
fn only(kind: PiiKind) -> &'static Detectors {
    static ONE: OnceLock<Vec<Detectors>> = OnceLock::new();
    let all = ONE.get_or_init(|| {
        PiiKind::BUILTIN
            .iter()
            .map(|&k| match Detectors::new(&[k], &[]) {
                Ok(d) => d,
                Err(e) => panic!("{e}"),
            })
            .collect()
    });
    &all[PiiKind::BUILTIN
        .iter()
        .position(|&k| k == kind)
        .unwrap_or(0)]
}

/// Redacts with one detector and with all of them; both must agree on `expected`.
fn check(kind: PiiKind, input: &str, expected: &str) {
    let (out, found) = redact_text(input, only(kind));
    assert_eq!(out, expected, "{kind} alone on {input:?}");
    let changed = out != input;
    assert_eq!(
        found.iter().any(|f| f.kind == kind),
        changed,
        "findings for {input:?}: {found:?}"
    );
    let (out_all, _) = redact_text(input, all());
    assert_eq!(out_all, expected, "all detectors on {input:?}");
}

fn redacted(kind: PiiKind, input: &str) {
    let label = kind.replacement();
    check(kind, input, label);
    check(kind, &format!("x {input} y"), &format!("x {label} y"));
}

fn untouched(kind: PiiKind, input: &str) {
    check(kind, input, input);
}

#[test]
fn email() {
    redacted(PiiKind::Email, "jane.doe+tag@mail.example.co.uk");
    redacted(PiiKind::Email, "A_B%c@EXAMPLE.ORG");
    check(PiiKind::Email, "(bob@ex.io).", "([REDACTED:EMAIL]).");
    untouched(PiiKind::Email, "not@an-address");
    untouched(PiiKind::Email, "user@localhost");
    untouched(PiiKind::Email, "@example.com");
    untouched(PiiKind::Email, "a@b.c");
}

#[test]
fn phone() {
    redacted(PiiKind::Phone, "+44 20 7946 0958");
    redacted(PiiKind::Phone, "+14155550100");
    redacted(PiiKind::Phone, "+33 (0)1 42 68 53 00");
    redacted(PiiKind::Phone, "(212) 555-1234");
    redacted(PiiKind::Phone, "212-555-1234");
    redacted(PiiKind::Phone, "212.555.1234");
    redacted(PiiKind::Phone, "1 212 555 1234");
    untouched(PiiKind::Phone, "2125551234");
    untouched(PiiKind::Phone, "123-555-1234");
    untouched(PiiKind::Phone, "212-055-1234");
    untouched(PiiKind::Phone, "+1 234");
    untouched(PiiKind::Phone, "+1234567890123456789");
    untouched(PiiKind::Phone, "x+12345678901");
    untouched(PiiKind::Phone, "v212-555-1234-1");
}

#[test]
fn credit_card() {
    redacted(PiiKind::CreditCard, "4111 1111 1111 1111");
    redacted(PiiKind::CreditCard, "4111-1111-1111-1111");
    redacted(PiiKind::CreditCard, "4111111111111111");
    redacted(PiiKind::CreditCard, "5555555555554444");
    redacted(PiiKind::CreditCard, "3782 822463 10005");
    redacted(PiiKind::CreditCard, "6011111111111117");
    // Invalid Luhn checksum.
    untouched(PiiKind::CreditCard, "4111 1111 1111 1112");
    untouched(PiiKind::CreditCard, "5555555555554445");
    // Valid Luhn but no card network starts with 1.
    untouched(PiiKind::CreditCard, "1234567812345670");
    // Mixed separators, too short, glued to a longer number.
    untouched(PiiKind::CreditCard, "4111 1111-1111 1111");
    untouched(PiiKind::CreditCard, "411111111111");
    untouched(PiiKind::CreditCard, "41111111111111110000000");
}

#[test]
fn iban() {
    redacted(PiiKind::Iban, "GB82 WEST 1234 5698 7654 32");
    redacted(PiiKind::Iban, "GB82WEST12345698765432");
    redacted(PiiKind::Iban, "DE89370400440532013000");
    redacted(PiiKind::Iban, "de89 3704 0044 0532 0130 00");
    redacted(PiiKind::Iban, "NO9386011117947");
    check(
        PiiKind::Iban,
        "pay DE89 3704 0044 0532 0130 00 AB today",
        "pay [REDACTED:IBAN] AB today",
    );
    check(
        PiiKind::Iban,
        "DE89370400440532013000 GB82WEST12345698765432",
        "[REDACTED:IBAN] [REDACTED:IBAN]",
    );
    // Bad check digits, wrong length for the country, unknown country, glued.
    untouched(PiiKind::Iban, "GB83 WEST 1234 5698 7654 32");
    untouched(PiiKind::Iban, "DE8937040044053201300");
    untouched(PiiKind::Iban, "ZZ82WEST12345698765432");
    untouched(PiiKind::Iban, "DE89370400440532013000X");
}

#[test]
fn us_ssn() {
    redacted(PiiKind::UsSsn, "123-45-6789");
    redacted(PiiKind::UsSsn, "123 45 6789");
    untouched(PiiKind::UsSsn, "000-12-3456");
    untouched(PiiKind::UsSsn, "666-12-3456");
    untouched(PiiKind::UsSsn, "912-12-3456");
    untouched(PiiKind::UsSsn, "123-00-4567");
    untouched(PiiKind::UsSsn, "123-45-0000");
    untouched(PiiKind::UsSsn, "123-45 6789");
    untouched(PiiKind::UsSsn, "123456789");
    untouched(PiiKind::UsSsn, "1-123-45-6789");
}

#[test]
fn ipv4() {
    redacted(PiiKind::Ipv4, "192.168.1.10");
    redacted(PiiKind::Ipv4, "8.8.8.8");
    check(PiiKind::Ipv4, "host 10.0.0.1.", "host [REDACTED:IPV4].");
    untouched(PiiKind::Ipv4, "256.1.1.1");
    untouched(PiiKind::Ipv4, "01.2.3.4");
    untouched(PiiKind::Ipv4, "1.2.3.4.5");
    untouched(PiiKind::Ipv4, "1.2.3");
}

#[test]
fn ipv6() {
    redacted(PiiKind::Ipv6, "2001:db8::1");
    redacted(PiiKind::Ipv6, "fe80::1ff:fe23:4567:890a");
    redacted(PiiKind::Ipv6, "2001:0DB8:85A3:0000:0000:8A2E:0370:7334");
    redacted(PiiKind::Ipv6, "::ffff:192.0.2.1");
    check(PiiKind::Ipv6, "[2001:db8::2]:443", "[[REDACTED:IPV6]]:443");
    untouched(PiiKind::Ipv6, "std::io::Result");
    untouched(PiiKind::Ipv6, "a::b");
    untouched(PiiKind::Ipv6, "::1");
    untouched(PiiKind::Ipv6, "12:30:45");
    untouched(PiiKind::Ipv6, "00:1a:2b:3c:4d:5e");
    untouched(PiiKind::Ipv6, "1:2:3:4:5:6:7:8:9");
}

#[test]
fn api_keys() {
    redacted(PiiKind::ApiKey, "sk-proj-abcdefghijklmnopqrstuvwxyz0123");
    redacted(PiiKind::ApiKey, "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv_wx-yz");
    redacted(PiiKind::ApiKey, "AKIAIOSFODNN7EXAMPLE");
    redacted(PiiKind::ApiKey, "ghp_abcdefghijklmnopqrstuvwxyz0123456789");
    redacted(PiiKind::ApiKey, "github_pat_11ABCDEFG0123456789abcdefghij");
    redacted(PiiKind::ApiKey, "xoxb-1234567890-abcdefghij");
    redacted(PiiKind::ApiKey, "lk_4fZ9qP2mX7vL1nR8tW3yK6bH0cD5sJ2aQe9Gx1");
    redacted(PiiKind::ApiKey, "lk_mcp_4fZ9qP2mX7vL1nR8tW3yK6bH0cD5");
    redacted(PiiKind::ApiKey, "AIzaSyA1234567890abcdefghijklmnopqrstuv");
    redacted(PiiKind::ApiKey, "sk_live_abcdefghijklmnop1234");
    check(
        PiiKind::ApiKey,
        "Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz\n",
        "Authorization: Bearer [REDACTED:API_KEY]\n",
    );
    untouched(PiiKind::ApiKey, "sk-short");
    untouched(PiiKind::ApiKey, "task-abcdefghijklmnopqrstuvwxyz");
    untouched(PiiKind::ApiKey, "AKIAIOSFODNN7EXAMPLEX");
    untouched(PiiKind::ApiKey, "ghp_tooShort");
    untouched(PiiKind::ApiKey, "lk_short");
}

#[test]
fn custom_patterns() {
    let d = Detectors::new(&[], &[r"ACME-\d{6}".into(), "(?i)project\\s+falcon".into()])
        .expect("compiles");
    let (out, found) = redact_text("ACME-123456 and Project  Falcon, ACME-12", &d);
    assert_eq!(out, "[REDACTED:CUSTOM] and [REDACTED:CUSTOM], ACME-12");
    assert_eq!(
        found,
        vec![Finding {
            kind: PiiKind::Custom,
            count: 2
        }]
    );
    assert_eq!(d.custom_patterns().len(), 2);
    assert!(d.kinds().is_empty());
    // Patterns that can match the empty string only redact non-empty matches.
    let d = Detectors::new(&[], &["x*".into()]).expect("compiles");
    assert_eq!(redact_text("abxxc", &d).0, "ab[REDACTED:CUSTOM]c");

    assert!(matches!(
        Detectors::new(&[], &["(".into()]),
        Err(PiiError::InvalidPattern { pattern, .. }) if pattern == "("
    ));
    assert_eq!(
        Detectors::new(&[], &[String::new()]).unwrap_err(),
        PiiError::EmptyPattern
    );
    // `Custom` among the kinds is ignored; duplicates collapse.
    let d =
        Detectors::new(&[PiiKind::Custom, PiiKind::Email, PiiKind::Email], &[]).expect("compiles");
    assert_eq!(d.kinds(), [PiiKind::Email]);
    assert!(Detectors::new(&[], &[]).expect("empty is fine").is_empty());
}

#[test]
fn findings_and_overlaps() {
    let text = "a@b.io, c@d.io, 4111 1111 1111 1111, 10.1.2.3";
    let (out, found) = redact_text(text, all());
    assert_eq!(
        out,
        "[REDACTED:EMAIL], [REDACTED:EMAIL], [REDACTED:CREDIT_CARD], [REDACTED:IPV4]"
    );
    assert_eq!(
        found,
        vec![
            Finding {
                kind: PiiKind::Email,
                count: 2
            },
            Finding {
                kind: PiiKind::CreditCard,
                count: 1
            },
            Finding {
                kind: PiiKind::Ipv4,
                count: 1
            },
        ]
    );
    // An API key inside an e-mail-shaped string: one merged redaction, nothing leaks.
    let (out, _) = redact_text("sk-abcdefghijklmnopqrstuvwxyz@evil.com", all());
    assert_eq!(out, "[REDACTED:API_KEY]");
    // A custom pattern overlapping a built-in match.
    let d = Detectors::new(&[PiiKind::Email], &["id=\\S+".into()]).expect("compiles");
    assert_eq!(redact_text("id=me@x.org ok", &d).0, "[REDACTED:CUSTOM] ok");
    // Non-ASCII text around matches.
    let (out, _) = redact_text(
        "écrire à zoë@exemple.fr — merci 😀 4111111111111111ü",
        all(),
    );
    assert_eq!(
        out,
        "écrire à [REDACTED:EMAIL] — merci 😀 [REDACTED:CREDIT_CARD]ü"
    );
    let (out, _) = redact_text("écrire à zoe@exemple.fr — 😀 +33 1 42 68 53 00", all());
    assert_eq!(out, "écrire à [REDACTED:EMAIL] — 😀 [REDACTED:PHONE]");
    // Nothing found: same text, no findings.
    assert_eq!(redact_text("plain", all()), ("plain".to_owned(), vec![]));
    assert_eq!(redact_text("", all()), (String::new(), vec![]));
}

#[test]
fn kind_names() {
    for k in PiiKind::BUILTIN {
        let name = serde_json::to_value(k).expect("serializable");
        assert_eq!(name, k.as_str());
        let back: PiiKind = serde_json::from_value(name).expect("round trip");
        assert_eq!(back, k);
        assert!(k.replacement().starts_with("[REDACTED:"));
    }
    let ssn: PiiKind = serde_json::from_str("\"ssn\"").expect("alias");
    assert_eq!(ssn, PiiKind::UsSsn);
    assert!(serde_json::from_str::<PiiKind>("\"custom\"").is_err());
}

// ---------------------------------------------------------------- JSON bodies

fn redact(mut body: Value) -> (Value, Vec<Finding>) {
    let found = redact_json(&mut body, all(), RedactScope::PromptFields);
    (body, found)
}

const EMAIL: &str = "jane@example.com";
const CARD: &str = "4111 1111 1111 1111";

#[test]
fn json_openai_chat() {
    let args =
        serde_json::to_string(&json!({"to": EMAIL, "n": 3, "note": "say \"hi\"\n"})).expect("json");
    let (body, found) = redact(json!({
        "model": "gpt-4o",
        "temperature": 0.7,
        "user": EMAIL,
        "metadata": {"owner": EMAIL},
        "messages": [
            {"role": "system", "content": format!("contact {EMAIL}")},
            {"role": "user", "content": [
                {"type": "text", "text": format!("card {CARD}")},
                {"type": "image_url", "image_url": {"url": format!("https://x/{EMAIL}.png")}}
            ]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "send_mail", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "c1", "content": format!("sent to {EMAIL}")}
        ],
        "tools": [{"type": "function", "function": {"name": "send_mail",
            "description": format!("mails {EMAIL}")}}]
    }));
    let m = &body["messages"];
    assert_eq!(m[0]["content"], "contact [REDACTED:EMAIL]");
    assert_eq!(m[1]["content"][0]["text"], "card [REDACTED:CREDIT_CARD]");
    assert_eq!(m[3]["content"], "sent to [REDACTED:EMAIL]");
    let args = m[2]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .expect("arguments stay a string");
    let args: Value = serde_json::from_str(args).expect("arguments stay valid JSON");
    assert_eq!(
        args,
        json!({"to": "[REDACTED:EMAIL]", "n": 3, "note": "say \"hi\"\n"})
    );
    // Not prompt fields: untouched.
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["temperature"], 0.7);
    assert_eq!(body["user"], EMAIL);
    assert_eq!(body["metadata"]["owner"], EMAIL);
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        format!("https://x/{EMAIL}.png")
    );
    assert_eq!(
        body["tools"][0]["function"]["description"],
        format!("mails {EMAIL}")
    );
    assert_eq!(
        found,
        vec![
            Finding {
                kind: PiiKind::Email,
                count: 3
            },
            Finding {
                kind: PiiKind::CreditCard,
                count: 1
            }
        ]
    );
}

#[test]
fn json_other_shapes() {
    let (body, _) = redact(json!({
        "system": [{"type": "text", "text": EMAIL}],
        "messages": [{"role": "assistant", "content": [
            {"type": "tool_use", "id": "t", "name": "n", "input": {"deep": [{"x": EMAIL}]}},
            {"type": "tool_result", "tool_use_id": "t", "content": EMAIL},
            {"type": "image", "source": {"type": "base64", "data": EMAIL}}
        ]}]
    }));
    assert_eq!(body["system"][0]["text"], "[REDACTED:EMAIL]");
    let c = &body["messages"][0]["content"];
    assert_eq!(c[0]["input"]["deep"][0]["x"], "[REDACTED:EMAIL]");
    assert_eq!(c[0]["id"], "t");
    assert_eq!(c[1]["content"], "[REDACTED:EMAIL]");
    assert_eq!(c[2]["source"]["data"], EMAIL, "media is not prompt text");

    let (body, _) = redact(json!({
        "systemInstruction": {"parts": [{"text": EMAIL}]},
        "contents": [{"role": "user", "parts": [
            {"text": CARD},
            {"functionCall": {"name": "f", "args": {"to": EMAIL}}},
            {"functionResponse": {"name": "f", "response": {"ok": EMAIL}}}
        ]}],
        "generationConfig": {"stopSequences": [EMAIL]}
    }));
    assert_eq!(
        body["systemInstruction"]["parts"][0]["text"],
        "[REDACTED:EMAIL]"
    );
    let parts = &body["contents"][0]["parts"];
    assert_eq!(parts[0]["text"], "[REDACTED:CREDIT_CARD]");
    assert_eq!(parts[1]["functionCall"]["args"]["to"], "[REDACTED:EMAIL]");
    assert_eq!(
        parts[2]["functionResponse"]["response"]["ok"],
        "[REDACTED:EMAIL]"
    );
    assert_eq!(body["generationConfig"]["stopSequences"][0], EMAIL);

    let (body, _) = redact(json!({
        "system": [{"text": EMAIL}],
        "messages": [{"role": "user", "content": [
            {"text": EMAIL},
            {"toolUse": {"toolUseId": "t", "name": "n", "input": {"q": EMAIL}}},
            {"toolResult": {"toolUseId": "t", "content": [{"text": EMAIL}, {"json": {"a": EMAIL}}]}}
        ]}],
        "toolConfig": {"tools": [{"toolSpec": {"name": "n", "description": EMAIL}}]}
    }));
    assert_eq!(body["system"][0]["text"], "[REDACTED:EMAIL]");
    let c = &body["messages"][0]["content"];
    assert_eq!(c[0]["text"], "[REDACTED:EMAIL]");
    assert_eq!(c[1]["toolUse"]["input"]["q"], "[REDACTED:EMAIL]");
    assert_eq!(c[2]["toolResult"]["content"][0]["text"], "[REDACTED:EMAIL]");
    assert_eq!(
        c[2]["toolResult"]["content"][1]["json"]["a"],
        "[REDACTED:EMAIL]"
    );
    assert_eq!(
        body["toolConfig"]["tools"][0]["toolSpec"]["description"],
        EMAIL
    );

    let (body, _) = redact(json!({"instructions": EMAIL, "input": [
        {"type": "function_call", "name": "f", "call_id": "c", "arguments": format!("not json {EMAIL}")},
        {"type": "function_call_output", "call_id": "c", "output": EMAIL}
    ]}));
    assert_eq!(body["instructions"], "[REDACTED:EMAIL]");
    assert_eq!(body["input"][0]["arguments"], "not json [REDACTED:EMAIL]");
    assert_eq!(body["input"][1]["output"], "[REDACTED:EMAIL]");
}

#[test]
fn json_keys_are_never_touched() {
    let mut body =
        json!({"anything": {EMAIL: EMAIL}, "messages": [{"content": {"text": EMAIL, EMAIL: 1}}]});
    let found = redact_json(&mut body, all(), RedactScope::AllStrings);
    assert_eq!(found[0].count, 2);
    assert_eq!(
        body,
        json!({"anything": {EMAIL: "[REDACTED:EMAIL]"}, "messages": [{"content": {"text": "[REDACTED:EMAIL]", EMAIL: 1}}]})
    );
    // No detectors: nothing changes.
    let empty = Detectors::new(&[], &[]).expect("empty");
    let mut body = json!({"messages": [{"content": EMAIL}]});
    assert!(redact_json(&mut body, &empty, RedactScope::PromptFields).is_empty());
    assert_eq!(body["messages"][0]["content"], EMAIL);
}

// ---------------------------------------------------------------- properties

/// A Visa number with a valid Luhn digit, formatted with `sep` between groups of four.
fn visa(body: &[u8], sep: &str) -> String {
    let mut digits: Vec<u8> = std::iter::once(4)
        .chain(body.iter().map(|d| d % 10))
        .collect();
    digits.truncate(15);
    let check = (0..10u8)
        .find(|c| {
            let mut all: Vec<u8> = digits.iter().map(|d| d + b'0').collect();
            all.push(c + b'0');
            validate::luhn_valid(&all)
        })
        .unwrap_or(0);
    digits.push(check);
    digits
        .chunks(4)
        .map(|c| c.iter().map(|d| char::from(d + b'0')).collect::<String>())
        .collect::<Vec<_>>()
        .join(sep)
}

fn arb_email() -> impl Strategy<Value = String> {
    (
        "[a-z0-9][a-z0-9._+-]{0,10}",
        "[a-z0-9]{1,10}",
        "(com|org|io|example)",
    )
        .prop_map(|(l, d, t)| format!("{l}@{d}.{t}"))
}

fn arb_card() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(0u8..10, 14),
        prop_oneof![Just(""), Just(" "), Just("-")],
    )
        .prop_map(|(b, sep)| visa(&b, sep))
}

/// Prose fragments with no digits or `@`, so inserted items keep their boundaries.
fn arb_words() -> impl Strategy<Value = String> {
    "[a-zA-Zé ,.!?\"\\\\\n{}:]{0,24}"
}

fn arb_text() -> impl Strategy<Value = (String, Vec<String>)> {
    prop::collection::vec((arb_words(), prop_oneof![arb_email(), arb_card()]), 0..5).prop_map(
        |parts| {
            let mut text = String::new();
            let mut secrets = Vec::new();
            for (words, secret) in parts {
                text.push_str(&words);
                text.push(' ');
                text.push_str(&secret);
                text.push(' ');
                secrets.push(secret);
            }
            (text, secrets)
        },
    )
}

/// Any JSON, to check structure and keys survive.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![arb_email(), arb_card(), ".{0,16}"].prop_map(Value::String),
    ];
    let key = prop_oneof![
        Just("messages".to_owned()),
        Just("content".to_owned()),
        Just("text".to_owned()),
        Just("system".to_owned()),
        Just("input".to_owned()),
        Just("arguments".to_owned()),
        Just("type".to_owned()),
        arb_email(),
    ];
    leaf.prop_recursive(5, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// The value with every string replaced by the same placeholder: structure and keys only.
fn skeleton(v: &Value) -> Value {
    match v {
        Value::String(_) => Value::String(String::new()),
        Value::Array(a) => Value::Array(a.iter().map(skeleton).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), skeleton(v))).collect())
        }
        other => other.clone(),
    }
}

proptest! {
    #[test]
    fn redacted_json_is_valid_and_leaks_nothing((text, secrets) in arb_text(), (args, arg_secrets) in arb_text()) {
        let args_json = serde_json::to_string(&json!({"q": args})).expect("json");
        let mut body = json!({
            "model": "m",
            "system": text.clone(),
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": text.clone()}]},
                {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": args_json}}]}
            ],
            "contents": [{"parts": [{"text": text.clone()}]}]
        });
        let before = skeleton(&body);
        redact_json(&mut body, all(), RedactScope::PromptFields);
        let out = serde_json::to_string(&body).expect("serializes");
        let reparsed: Value = serde_json::from_str(&out).expect("valid JSON");
        prop_assert_eq!(skeleton(&reparsed), before);
        let args_out = reparsed["messages"][1]["tool_calls"][0]["function"]["arguments"]
            .as_str().expect("string");
        let args_value: Value = serde_json::from_str(args_out).expect("arguments stay JSON");
        for s in secrets.iter().chain(&arg_secrets) {
            prop_assert!(!out.contains(s.as_str()), "{} leaked in {}", s, out);
            prop_assert!(!args_value.to_string().contains(s.as_str()));
        }
        // Idempotent: nothing left to find.
        prop_assert!(redact_json(&mut body, all(), RedactScope::PromptFields).is_empty());
    }

    #[test]
    fn any_json_keeps_structure(v in arb_json(), all_strings in any::<bool>()) {
        let mut body = v.clone();
        let scope = if all_strings { RedactScope::AllStrings } else { RedactScope::PromptFields };
        redact_json(&mut body, all(), scope);
        prop_assert_eq!(skeleton(&body), skeleton(&v));
        let out = serde_json::to_string(&body).expect("serializes");
        prop_assert!(serde_json::from_str::<Value>(&out).is_ok());
    }

    #[test]
    fn redact_text_never_panics(s in "\\PC{0,64}") {
        let (out, found) = redact_text(&s, all());
        prop_assert_eq!(found.is_empty(), out == s);
    }
}
