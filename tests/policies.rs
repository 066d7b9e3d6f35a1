//! End-to-end tests of the policy engine, holds, rate limits and budgets: the real binary, a mock
//! provider that records what reaches it, policies applied through the admin API and the CLI.

mod common;

use common::{Mock, Server, ServerOpts};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const SECRET: &str = "sk-live-policy-secret-424242";

async fn setup(opts: ServerOpts) -> (Mock, Server) {
    let mock = Mock::start().await;
    let s = Server::start_with(opts).await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    (mock, s)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// `POST /proxy/openai/v1/chat/completions` with one user message.
async fn chat(
    s: &Server,
    key: &str,
    prompt: &str,
    extra: Value,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, Value) {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let mut r = s
        .http
        .post(format!("{}/proxy/openai/v1/chat/completions", s.gateway))
        .bearer_auth(key)
        .json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let hs = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        hs,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn apply(s: &Server, document: &str, key: Option<&str>) -> Value {
    let mut body = json!({ "document": document });
    if let Some(k) = key {
        body["key"] = json!(k);
    }
    let (st, v) = s.admin(Method::POST, "policies", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    v
}

/// Audit rows land in batches: polls until `pred` holds for the newest rows.
async fn audit_until(s: &Server, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut rows = Vec::new();
    for _ in 0..100 {
        let (_, v) = s.admin(Method::GET, "audit?limit=1000", None).await;
        rows = v["events"]
            .as_array()
            .or_else(|| v.as_array())
            .cloned()
            .unwrap_or_default();
        if pred(&rows) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("audit never showed {what}: {rows:?}");
}

/// The `detail` object of an audit row.
fn detail(row: &Value) -> Value {
    match &row["detail"] {
        Value::String(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

fn proxy_rows(rows: &[Value]) -> Vec<&Value> {
    rows.iter()
        .filter(|r| r["action"] == json!("proxy.request"))
        .collect()
}

const GUARD: &str = r#"
name = "guard"
default = "allow"

[[rule]]
id = "no-destruction"
action = "block"
message = "destructive shell commands are not allowed"
[rule.match]
prompt_contains = ["rm -rf"]

[[rule]]
id = "flag-secrets"
action = "warn"
[rule.match]
prompt_regex = ["(?i)password"]
"#;

#[tokio::test]
async fn block_and_warn_rules_apply_and_are_audited() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (id, k) = s
        .key(json!({"name": "agent", "providers": ["openai"]}))
        .await;
    // Applied through the CLI, as an operator would.
    let file = s.dir.path().join("guard.toml");
    std::fs::write(&file, GUARD).unwrap();
    let login = s.cli(&["login", "--url", &s.admin_url, "--token", &s.token], None);
    assert!(login.status.success(), "{login:?}");
    let out = s.cli(
        &["policy", "apply", file.to_str().unwrap(), "--key", &id],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("guard"));

    let (st, _, v) = chat(&s, &k, "please run rm -rf / now", json!({}), &[]).await;
    assert_eq!((st, code(&v)), (403, "policy_blocked"), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("destructive"));
    assert_eq!(
        mock.count(),
        0,
        "a blocked request must not reach the provider"
    );

    let (st, h, _) = chat(&s, &k, "my password is hunter2", json!({}), &[]).await;
    assert_eq!(st, 200);
    assert_eq!(
        h.get("x-latchkey-policy-warning").map(String::as_str),
        Some("guard/flag-secrets")
    );
    let (st, h, _) = chat(&s, &k, "hello there", json!({}), &[]).await;
    assert_eq!(st, 200);
    assert!(!h.contains_key("x-latchkey-policy-warning"));
    assert_eq!(mock.count(), 2);

    let rows = audit_until(&s, "three policy decisions", |rows| {
        proxy_rows(rows)
            .iter()
            .filter(|r| detail(r)["policy"].is_object())
            .count()
            >= 3
    })
    .await;
    let decisions: Vec<(String, Value, Value)> = proxy_rows(&rows)
        .iter()
        .map(|r| {
            let d = detail(r);
            (
                r["decision"].as_str().unwrap_or("").to_string(),
                d["policy"]["rule"].clone(),
                d["policy"]["shadow"].clone(),
            )
        })
        .collect();
    assert!(decisions.contains(&(
        "deny:policy_blocked".into(),
        json!("no-destruction"),
        json!(false)
    )));
    assert!(decisions.contains(&("warn".into(), json!("flag-secrets"), json!(false))));
    assert!(decisions.contains(&("allow".into(), Value::Null, json!(false))));

    // `policy get --key` shows the policy that decides for the key.
    let out = s.cli(&["policy", "get", "--key", &id], None);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no-destruction"));

    // Deleting a policy in use is refused; detaching then deleting works.
    let (st, _) = s.admin(Method::DELETE, "policies/guard", None).await;
    assert_eq!(st, 409);
    let out = s.cli(&["policy", "detach", "--key", &id], None);
    assert!(out.status.success(), "{out:?}");
    let (st, _, _) = chat(&s, &k, "please run rm -rf / now", json!({}), &[]).await;
    assert_eq!(st, 200, "a detached policy no longer applies");
    let (st, _) = s.admin(Method::DELETE, "policies/guard", None).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn invalid_policies_are_refused_with_the_reason() {
    let (_mock, s) = setup(ServerOpts::default()).await;
    let (st, v) = s
        .admin(
            Method::POST,
            "policies",
            Some(json!({"document": "name = \"x\"\ndefault = \"allow\"\n[[rule]]\nid = \"r\"\naction = \"block\"\n[rule.match]\nprompt_regex = [\"(unclosed\"]\n"})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("prompt_regex") && msg.contains("(unclosed"),
        "{msg}"
    );
    // A key cannot name a policy that does not exist.
    let (st, v) = s
        .admin(
            Method::POST,
            "keys",
            Some(json!({"name": "a", "providers": ["openai"], "policy": "nope"})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
}

#[tokio::test]
async fn shadow_mode_forwards_but_records_the_decision() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (_id, k) = s
        .key(json!({"name": "agent", "providers": ["openai"]}))
        .await;
    let shadow = GUARD.replace(
        "default = \"allow\"",
        "default = \"allow\"\nmode = \"shadow\"",
    );
    // As the tenant default: applies to keys without a policy of their own.
    let (st, v) = s
        .admin(
            Method::POST,
            "policies",
            Some(json!({"document": shadow, "tenant_default": true})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _, _) = chat(&s, &k, "rm -rf /tmp/x", json!({}), &[]).await;
    assert_eq!(st, 200, "shadow mode must not enforce");
    assert_eq!(mock.count(), 1);
    let rows = audit_until(&s, "a shadow decision", |rows| {
        proxy_rows(rows)
            .iter()
            .any(|r| detail(r)["policy"]["shadow"] == json!(true))
    })
    .await;
    let row = proxy_rows(&rows)
        .into_iter()
        .find(|r| detail(r)["policy"]["shadow"] == json!(true))
        .unwrap();
    assert_eq!(detail(row)["policy"]["action"], json!("block"));
    assert_eq!(detail(row)["policy"]["rule"], json!("no-destruction"));
    assert_eq!(row["decision"], json!("allow"));
}

#[tokio::test]
async fn redaction_rewrites_pii_keeps_json_valid_and_fixes_the_length() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (id, k) = s
        .key(json!({"name": "agent", "providers": ["openai"]}))
        .await;
    apply(
        &s,
        r#"
name = "pii"
default = "allow"
[[rule]]
id = "scrub"
action = "redact"
[rule.redact]
detectors = ["email", "credit_card"]
"#,
        Some(&id),
    )
    .await;
    let prompt = "mail jane.doe@example.com, card 4111 1111 1111 1111, \"quoted\" ünïcode";
    let (st, _, _) = chat(&s, &k, prompt, json!({}), &[]).await;
    assert_eq!(st, 200);
    let seen = mock.last();
    let body: Value = serde_json::from_slice(&seen.body).expect("forwarded body is valid JSON");
    let text = body["messages"][0]["content"].as_str().unwrap();
    assert!(!text.contains("jane.doe@example.com"), "{text}");
    assert!(!text.contains("4111 1111 1111 1111"), "{text}");
    assert!(text.contains("[REDACTED:EMAIL]") && text.contains("[REDACTED:CREDIT_CARD]"));
    assert!(text.contains("\"quoted\" ünïcode"), "{text}");
    assert_eq!(body["model"], json!("gpt-4o-mini"));
    let len: usize = seen.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, seen.body.len());
}

#[tokio::test]
async fn route_rule_rewrites_the_model() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (id, k) = s.key(json!({"name": "ci", "providers": ["openai"]})).await;
    apply(
        &s,
        r#"
name = "cheap"
default = "allow"
[[rule]]
id = "ci-gets-mini"
action = "route"
[rule.match]
models = ["gpt-4o"]
[rule.route]
model = "gpt-4o-mini-2024-07-18"
"#,
        Some(&id),
    )
    .await;
    let (st, _, _) = chat(&s, &k, "hi", json!({"model": "gpt-4o"}), &[]).await;
    assert_eq!(st, 200);
    let body: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(body["model"], json!("gpt-4o-mini-2024-07-18"));
}

#[tokio::test]
async fn a_policy_update_applies_to_the_next_request_and_never_half_way() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (id, k) = s
        .key(json!({"name": "agent", "providers": ["openai"]}))
        .await;
    // Two versions that decide every request differently; every decision must be exactly
    // what the version recorded with it says.
    let v1 = "name = \"flip\"\ndefault = \"allow\"\n[[rule]]\nid = \"v1-block-alpha\"\naction = \"block\"\n[rule.match]\nprompt_contains = [\"alpha\"]\n";
    let v2 = "name = \"flip\"\ndefault = \"block\"\n[[rule]]\nid = \"v2-allow-alpha\"\naction = \"allow\"\n[rule.match]\nprompt_contains = [\"alpha\"]\n";
    let fp1 = apply(&s, v1, Some(&id)).await["fingerprint"]
        .as_str()
        .unwrap()[..12]
        .to_string();
    // Version 1 decides the next request.
    assert_eq!(chat(&s, &k, "alpha", json!({}), &[]).await.0, 403);
    let fp2 = apply(&s, v2, None).await["fingerprint"].as_str().unwrap()[..12].to_string();
    // Version 2 decides the very next one.
    assert_eq!(chat(&s, &k, "alpha", json!({}), &[]).await.0, 200);

    // Under traffic: flip versions while requests run.
    let traffic = {
        let (gw, http, k) = (s.gateway.clone(), s.http.clone(), k.clone());
        tokio::spawn(async move {
            let mut n = 0;
            for i in 0..120 {
                let prompt = if i % 2 == 0 { "alpha" } else { "beta" };
                let _ = http
                    .post(format!("{gw}/proxy/openai/v1/chat/completions"))
                    .bearer_auth(&k)
                    .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}))
                    .send()
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    for i in 0..20 {
        apply(&s, if i % 2 == 0 { v1 } else { v2 }, None).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(traffic.await.unwrap(), 120);
    let rows = audit_until(&s, "all decisions", |rows| {
        proxy_rows(rows)
            .iter()
            .filter(|r| detail(r)["policy"].is_object())
            .count()
            >= 122
    })
    .await;
    for r in proxy_rows(&rows) {
        let d = detail(r);
        let version = d["policy"]["version"].as_str().unwrap_or("").to_string();
        let rule = d["policy"]["rule"].clone();
        let action = d["policy"]["action"].as_str().unwrap_or("").to_string();
        let ok = (version == fp1
            && ((rule == json!("v1-block-alpha") && action == "block")
                || (rule.is_null() && action == "allow")))
            || (version == fp2
                && ((rule == json!("v2-allow-alpha") && action == "allow")
                    || (rule.is_null() && action == "block")));
        assert!(ok, "a decision matches neither version: {d}");
    }
    assert!(mock.count() > 0);
}

async fn hold_setup() -> (Mock, Mock, Server, String, String) {
    let hook = Mock::start().await;
    let (mock, s) = setup(ServerOpts {
        env: vec![
            (
                "LATCHKEY_ALERT_WEBHOOK".into(),
                format!("{}/hooks/slack", hook.url()),
            ),
            ("LATCHKEY_HOLD_TIMEOUT_SECONDS".into(), "3".into()),
        ],
        ..Default::default()
    })
    .await;
    let (id, k) = s
        .key(json!({"name": "agent", "providers": ["openai"]}))
        .await;
    apply(
        &s,
        r#"
name = "review"
default = "allow"
[[rule]]
id = "needs-human"
action = "hold"
message = "wire transfers need a human"
[rule.match]
prompt_contains = ["wire transfer"]
"#,
        Some(&id),
    )
    .await;
    (hook, mock, s, id, k)
}

/// Sends a chat request in the background (it may be held); yields its status and JSON body.
fn spawn_chat(s: &Server, key: &str, prompt: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let (gw, http, k) = (s.gateway.clone(), s.http.clone(), key.to_string());
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]});
    tokio::spawn(async move {
        let resp = http
            .post(format!("{gw}/proxy/openai/v1/chat/completions"))
            .bearer_auth(&k)
            .json(&body)
            .send()
            .await
            .unwrap();
        let st = resp.status().as_u16();
        (st, resp.json::<Value>().await.unwrap_or(Value::Null))
    })
}

/// Waits for the webhook to announce a hold; returns its id.
async fn announced_hold(hook: &Mock) -> String {
    for _ in 0..100 {
        if hook.count() > 0 {
            let alert: Value = serde_json::from_slice(&hook.last().body).unwrap();
            assert!(alert["text"]
                .as_str()
                .unwrap()
                .contains("latchkey holds approve"));
            return alert["hold"]["id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("no hold was announced");
}

#[tokio::test]
async fn held_request_approved_through_the_cli_goes_through_exactly_once() {
    let (hook, mock, s, _id, k) = hold_setup().await;
    let login = s.cli(&["login", "--url", &s.admin_url, "--token", &s.token], None);
    assert!(login.status.success());
    let held = spawn_chat(&s, &k, "make a wire transfer");
    let hold = announced_hold(&hook).await;
    assert!(!hook.last().all_text().contains(SECRET));
    assert_eq!(mock.count(), 0, "nothing reaches the provider while held");
    let out = s.cli(&["holds", "list"], None);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&hold),
        "{out:?}"
    );
    let out = s.cli(&["holds", "approve", &hold], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(held.await.unwrap().0, 200);
    assert_eq!(mock.count(), 1);
    // A second approval finds nothing; the request is not sent again.
    let out = s.cli(&["holds", "approve", &hold], None);
    assert!(!out.status.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.count(), 1);
    assert_eq!(
        mock.last().headers["authorization"].to_str().unwrap(),
        format!("Bearer {SECRET}")
    );

    // The secret appears in no stored byte, no log line, no alert.
    let mut s = s;
    assert!(s.stop().success());
    for (path, bytes) in common::all_file_bytes(&s.data_dir) {
        assert!(
            !common::contains(&bytes, SECRET.as_bytes()),
            "secret in {}",
            path.display()
        );
    }
    assert!(!common::contains(&s.logs(), SECRET.as_bytes()));
    assert!(!common::contains(&hook.last().body, SECRET.as_bytes()));
}

#[tokio::test]
async fn held_request_rejected_or_timed_out_never_reaches_the_provider() {
    let (hook, mock, s, _id, k) = hold_setup().await;
    let held = spawn_chat(&s, &k, "wire transfer now");
    let hold = announced_hold(&hook).await;
    let (st, v) = s
        .admin(
            Method::POST,
            &format!("holds/{hold}/reject"),
            Some(json!({"reason": "not today"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = held.await.unwrap();
    assert_eq!((st, code(&v)), (403, "policy_blocked"), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not today"));

    // Nobody decides: the hold times out (3 s here) with a clear error.
    let started = std::time::Instant::now();
    let (st, _, v) = chat(&s, &k, "another wire transfer", json!({}), &[]).await;
    assert_eq!((st, code(&v)), (403, "hold_timeout"), "{v}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    let (_, holds) = s.admin(Method::GET, "holds", None).await;
    assert_eq!(holds["holds"], json!([]));
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn rpm_limit_refuses_with_retry_after_and_normalized_headers() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let login = s.cli(&["login", "--url", &s.admin_url, "--token", &s.token], None);
    assert!(login.status.success());
    let (id, k) = s
        .key(json!({"name": "agent", "providers": ["openai"]}))
        .await;
    let out = s.cli(&["keys", "update", &id, "--rpm", "3"], None);
    assert!(out.status.success(), "{out:?}");
    for _ in 0..3 {
        assert_eq!(chat(&s, &k, "hi", json!({}), &[]).await.0, 200);
    }
    let (st, h, v) = chat(&s, &k, "hi", json!({}), &[]).await;
    assert_eq!((st, code(&v)), (429, "rate_limited"), "{v}");
    let retry: u64 = h["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(h["x-ratelimit-limit-requests"], "3");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    assert_eq!(mock.count(), 3);
    // Other limits are kept when one is changed through the CLI.
    let out = s.cli(&["keys", "update", &id, "--budget-daily", "5"], None);
    assert!(out.status.success(), "{out:?}");
    let (_, key) = s.admin(Method::GET, &format!("keys/{id}"), None).await;
    assert_eq!(key["limits"], json!({"rpm": 3, "budget_daily_usd": 5.0}));
}

/// A price table where `test-model` costs $1000 / $2000 per million tokens.
const PRICES: &str = r#"
[default]
input = 1000.0
output = 2000.0
[[model]]
model = "test-model"
input = 1000.0
output = 2000.0
"#;

#[tokio::test]
async fn concurrent_requests_never_overshoot_a_spend_cap_and_settle_to_real_usage() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.toml");
    std::fs::write(&prices, PRICES).unwrap();
    let (mock, s) = setup(ServerOpts {
        env: vec![(
            "LATCHKEY_PRICES_FILE".into(),
            prices.to_str().unwrap().into(),
        )],
        ..Default::default()
    })
    .await;
    // Worst case of each request: body of B bytes → B/2 input tokens, plus max_tokens = 10
    // output tokens. The cap is set to allow exactly 10 such reservations at once.
    let body = json!({"model": "test-model", "max_tokens": 10, "messages": [{"role": "user", "content": "count to three"}]});
    let b = serde_json::to_vec(&body).unwrap().len() as f64;
    let worst = ((b / 2.0).ceil() * 1000.0 + 10.0 * 2000.0) / 1e6;
    let cap = worst * 10.5;
    let (_id, k) = s
        .key(json!({"name": "spender", "providers": ["openai"], "limits": {"budget_daily_usd": cap}}))
        .await;

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (gw, http, k, body) = (s.gateway.clone(), s.http.clone(), k.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(format!("{gw}/proxy/openai/v1/chat/completions"))
                .bearer_auth(&k)
                // The mock answers late, so every reservation is held at once.
                .header("x-mock-delay-ms", "1500")
                .header("x-mock-usage", "7,11")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            (status, code(&v).to_string())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (429, c) => assert_eq!(c, "budget_exceeded"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 10, "exactly the cap's worth of worst cases is admitted");
    assert_eq!(mock.count(), 10);

    // Settled spend is what the mock reported: 7 input and 11 output tokens each.
    let actual = (7.0 * 1000.0 + 11.0 * 2000.0) / 1e6;
    let rows = audit_until(&s, "ten settled usages", |rows| {
        proxy_rows(rows)
            .iter()
            .filter(|r| detail(r)["usage"].is_object())
            .count()
            >= 10
    })
    .await;
    let mut spent = 0.0;
    for r in proxy_rows(&rows) {
        let d = detail(r);
        if d["usage"].is_object() && r["status"] == json!(200) {
            assert_eq!(d["usage"]["input_tokens"], json!(7), "{d}");
            assert_eq!(d["usage"]["output_tokens"], json!(11), "{d}");
            assert_eq!(d["usage"]["estimated"], json!(false), "{d}");
            spent += d["usage"]["cost_usd"].as_f64().unwrap();
        }
    }
    assert!((spent - 10.0 * actual).abs() < 1e-9, "{spent}");
    // The rest of each reservation was released: more requests fit again now.
    let (st, _, v) = chat(
        &s,
        &k,
        "count to three",
        json!({"model": "test-model", "max_tokens": 10}),
        &[],
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn streamed_usage_is_metered_across_chunk_boundaries() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (_id, k) = s
        .key(json!({"name": "streamer", "providers": ["openai"], "limits": {"tpm": 100000}}))
        .await;
    let (st, _, body) = chat(
        &s,
        &k,
        "stream please",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
        &[("x-mock-fragment", "5"), ("x-mock-usage", "13,17")],
    )
    .await;
    assert_eq!(st, 200);
    let text = body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("[DONE]") && text.contains("\"completion_tokens\":17"),
        "{text}"
    );
    assert_eq!(mock.count(), 1);
    let rows = audit_until(&s, "metered stream usage", |rows| {
        proxy_rows(rows)
            .iter()
            .any(|r| detail(r)["usage"]["output_tokens"].is_number())
    })
    .await;
    let row = proxy_rows(&rows)
        .into_iter()
        .find(|r| detail(r)["usage"]["output_tokens"].is_number())
        .unwrap();
    let d = detail(row);
    assert_eq!(d["usage"]["input_tokens"], json!(13), "{d}");
    assert_eq!(d["usage"]["output_tokens"], json!(17), "{d}");
    assert_eq!(d["usage"]["charged_tokens"], json!(30), "{d}");
}

#[tokio::test]
async fn tenant_and_workload_limits_apply_beside_the_keys_own() {
    let (_mock, s) = setup(ServerOpts::default()).await;
    s.connect("openai", "sk-live-ci-credential-0001", &["ci"])
        .await;
    let login = s.cli(&["login", "--url", &s.admin_url, "--token", &s.token], None);
    assert!(login.status.success());
    let out = s.cli(&["limits", "set", "--workload", "ci", "--rpm", "2"], None);
    assert!(out.status.success(), "{out:?}");
    let (_a, ka) = s
        .key(json!({"name": "ci-a", "providers": ["openai"], "workload": "ci"}))
        .await;
    let (_b, kb) = s
        .key(json!({"name": "ci-b", "providers": ["openai"], "workload": "ci"}))
        .await;
    let (_c, kc) = s
        .key(json!({"name": "other", "providers": ["openai"]}))
        .await;
    assert_eq!(chat(&s, &ka, "hi", json!({}), &[]).await.0, 200);
    assert_eq!(chat(&s, &kb, "hi", json!({}), &[]).await.0, 200);
    // The workload's third request in the minute is refused, whichever key sends it.
    let (st, _, v) = chat(&s, &ka, "hi", json!({}), &[]).await;
    assert_eq!((st, code(&v)), (429, "rate_limited"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("workload"),
        "{v}"
    );
    assert_eq!(chat(&s, &kc, "hi", json!({}), &[]).await.0, 200);
    let out = s.cli(&["limits", "list"], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("workload:ci"));
    let out = s.cli(&["limits", "clear", "--workload", "ci"], None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(chat(&s, &kb, "hi", json!({}), &[]).await.0, 200);

    // Metrics count the refusal by scope and limit.
    let metrics = s
        .http
        .get(format!("{}/metrics", s.admin_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"latchkey_limit_refusals_total{limit="requests",scope="workload"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn openai_streams_are_asked_for_usage_and_token_velocity_suspends_the_key() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (id, k) = s
        .key(json!({"name": "tokens", "providers": ["openai"], "velocity": {"window_secs": 60, "max_tokens": 40}}))
        .await;
    // The client did not ask for usage; the gateway does, so the stream can be metered.
    let (st, _, body) = chat(
        &s,
        &k,
        "stream please",
        json!({"stream": true}),
        &[("x-mock-usage", "13,17")],
    )
    .await;
    assert_eq!(st, 200);
    assert!(body.as_str().unwrap_or_default().contains("[DONE]"));
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], json!(true));
    let rows = audit_until(&s, "metered stream usage", |rows| {
        proxy_rows(rows)
            .iter()
            .any(|r| detail(r)["usage"]["output_tokens"] == json!(17))
    })
    .await;
    assert!(!proxy_rows(&rows).is_empty());

    // 30 tokens so far; 30 more cross the key's 40-token velocity threshold: the key is
    // suspended for its next requests.
    let (st, _, _) = chat(&s, &k, "again", json!({}), &[("x-mock-usage", "13,17")]).await;
    assert_eq!(st, 200);
    let mut status = Value::Null;
    for _ in 0..100 {
        status = s.admin(Method::GET, &format!("keys/{id}"), None).await.1["status"].clone();
        if status == json!("suspended") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(status, json!("suspended"));
    let (st, _, v) = chat(&s, &k, "more", json!({}), &[]).await;
    assert_eq!((st, code(&v)), (403, "key_suspended"), "{v}");
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn a_held_request_whose_client_leaves_is_withdrawn() {
    let (hook, mock, s, _id, k) = hold_setup().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let gone = client
        .post(format!("{}/proxy/openai/v1/chat/completions", s.gateway))
        .bearer_auth(&k)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "wire transfer, quick"}]}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up waiting");
    let hold = announced_hold(&hook).await;
    let mut pending = json!(null);
    for _ in 0..50 {
        pending = s.admin(Method::GET, "holds", None).await.1;
        if pending["holds"] == json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pending["holds"],
        json!([]),
        "the abandoned hold is withdrawn"
    );
    let (st, _) = s
        .admin(Method::POST, &format!("holds/{hold}/approve"), None)
        .await;
    assert_eq!(st, 404);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        mock.count(),
        0,
        "an abandoned request never reaches the provider"
    );
}

#[tokio::test]
async fn requests_without_a_json_body_cost_nothing_against_a_budget() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (st, v) = s
        .admin(
            Method::PUT,
            "limits/tenant",
            Some(json!({"budget_daily_usd": 0.01})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_id, k) = s
        .key(json!({"name": "lister", "providers": ["openai"]}))
        .await;
    for _ in 0..5 {
        let resp = s
            .http
            .get(format!("{}/proxy/openai/v1/models", s.gateway))
            .bearer_auth(&k)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "a listing reserves no tokens");
    }
    assert_eq!(mock.count(), 5);
    // A chat call's worst case ($0.30 at the default price of an unpriced model) does not fit.
    let (st, h, v) = chat(&s, &k, "hi", json!({"model": "unpriced-model"}), &[]).await;
    assert_eq!((st, code(&v)), (429, "budget_exceeded"), "{v}");
    assert!(
        !h.contains_key("retry-after"),
        "a request larger than the whole budget is not invited to retry"
    );
    assert_eq!(mock.count(), 5);
}
