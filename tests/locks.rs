//! End-to-end tests of proxy-key locks: the real binary, a mock provider that records what it
//! receives, and each lock with both outcomes. A refused request must never reach the mock.

mod common;

use common::{Mock, Server, ServerOpts};
use latchkey_gateway::geo::writer::MmdbWriter;
use latchkey_policy::locks::signature;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "sk-live-locks-secret-000111";

async fn setup(opts: ServerOpts) -> (Mock, Server) {
    let mock = Mock::start().await;
    let s = Server::start_with(opts).await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    (mock, s)
}

fn trusting_loopback(extra: Vec<(String, String)>) -> ServerOpts {
    let mut env = vec![(
        "LATCHKEY_TRUSTED_PROXIES".to_string(),
        "127.0.0.1".to_string(),
    )];
    env.extend(extra);
    ServerOpts {
        env,
        ..Default::default()
    }
}

/// Sends `GET /proxy/openai/v1/models` as if from `xff` (only believed from trusted peers).
async fn get_as(s: &Server, key: &str, xff: Option<&str>, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut r = s
        .http
        .get(format!("{}/proxy/openai/v1/models", s.gateway))
        .bearer_auth(key);
    if let Some(ip) = xff {
        r = r.header("x-forwarded-for", ip);
    }
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Audit rows are written in batches off the request path: polls (up to 5 s) until the newest
/// rows mention `needle`.
async fn assert_audit_mentions(s: &Server, needle: &str) {
    let mut audit = Value::Null;
    for _ in 0..100 {
        audit = s.admin(Method::GET, "audit?limit=100", None).await.1;
        if audit.to_string().contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no audit row mentions {needle:?}: {audit}");
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn cidr_lock_ignores_spoofed_forwarded_for_from_untrusted_peers() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (_, office) = s
        .key(json!({"name": "office", "providers": ["openai"], "ip": "10.0.0.0/8, 2001:db8::/32"}))
        .await;
    // The peer is 127.0.0.1 and untrusted: a forged X-Forwarded-For from the office range must
    // not help.
    let (st, v) = get_as(&s, &office, None, &[]).await;
    assert_eq!((st, code(&v)), (403, "ip_locked"), "{v}");
    let (st, v) = get_as(
        &s,
        &office,
        Some("10.1.2.3"),
        &[("forwarded", "for=10.1.2.3")],
    )
    .await;
    assert_eq!((st, code(&v)), (403, "ip_locked"), "{v}");
    assert_eq!(mock.count(), 0, "a refused request reached the provider");

    let (_, local) = s
        .key(json!({"name": "local", "providers": ["openai"], "ip": "127.0.0.0/8"}))
        .await;
    let (st, v) = get_as(&s, &local, Some("10.1.2.3"), &[]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(mock.count(), 1);

    // The refusal is audited with the lock that fired (written in batches: poll briefly).
    assert_audit_mentions(&s, "deny:ip_locked").await;

    // …and counted in the metrics (no auth on /metrics; loopback by default).
    let text = s
        .http
        .get(format!("{}/metrics", s.admin_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |outcome: &str, status: &str| -> Option<f64> {
        let want = format!(
            r#"latchkey_requests_total{{outcome="{outcome}",provider="openai",status="{status}"}}"#
        );
        text.lines()
            .find_map(|l| l.strip_prefix(want.as_str()))
            .and_then(|v| v.trim().parse().ok())
    };
    assert_eq!(sample("ip_locked", "4xx"), Some(2.0), "{text}");
    assert_eq!(sample("allow", "2xx"), Some(1.0), "{text}");
}

#[tokio::test]
async fn trusted_proxy_forwarded_for_drives_the_ip_lock_ipv4_and_ipv6() {
    let (mock, s) = setup(trusting_loopback(vec![])).await;
    let (_, k) = s
        .key(json!({"name": "k", "providers": ["openai"], "ip": "10.0.0.0/8,2001:db8::/32"}))
        .await;
    assert_eq!(get_as(&s, &k, Some("10.9.8.7"), &[]).await.0, 200);
    assert_eq!(get_as(&s, &k, Some("2001:db8::42"), &[]).await.0, 200);
    let (st, v) = get_as(&s, &k, Some("[2001:db9::1]:443"), &[]).await;
    assert_eq!((st, code(&v)), (403, "ip_locked"), "{v}");
    let (st, v) = get_as(&s, &k, Some("192.168.1.1"), &[]).await;
    assert_eq!((st, code(&v)), (403, "ip_locked"), "{v}");
    // RFC 7239 Forwarded with a quoted IPv6 address and port.
    let (st, _) = get_as(&s, &k, None, &[("forwarded", "for=\"[2001:db8::7]:4711\"")]).await;
    assert_eq!(st, 200);
    assert_eq!(mock.count(), 3);
}

#[tokio::test]
async fn auto_bind_race_binds_exactly_one_address() {
    let (mock, s) = setup(trusting_loopback(vec![])).await;
    let (id, k) = s
        .key(json!({"name": "auto", "providers": ["openai"], "ip": "auto"}))
        .await;
    // 20 concurrent first requests from two addresses: exactly one address wins the bind.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let ip = if i % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" };
        let (http, url, k) = (
            s.http.clone(),
            format!("{}/proxy/openai/v1/models", s.gateway),
            k.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = http
                .get(url)
                .bearer_auth(k)
                .header("x-forwarded-for", ip)
                .send()
                .await
                .unwrap();
            (ip, r.status().as_u16())
        }));
    }
    let mut ok = std::collections::HashSet::new();
    for t in tasks {
        let (ip, st) = t.await.unwrap();
        assert!(st == 200 || st == 403, "unexpected status {st}");
        if st == 200 {
            ok.insert(ip);
        }
    }
    assert_eq!(ok.len(), 1, "two addresses were admitted: {ok:?}");
    let winner = *ok.iter().next().unwrap();
    let (_, key) = s.admin(Method::GET, &format!("keys/{id}"), None).await;
    assert_eq!(key["bound_ip"], json!(winner), "{key}");
    let loser = if winner == "10.0.0.1" {
        "10.0.0.2"
    } else {
        "10.0.0.1"
    };
    let (st, v) = get_as(&s, &k, Some(loser), &[]).await;
    assert_eq!((st, code(&v)), (403, "ip_locked"));
    assert_eq!(get_as(&s, &k, Some(winner), &[]).await.0, 200);
    let before = mock.count();

    // Unbind: the next request binds again, to its own address.
    let (st, _) = s
        .admin(Method::POST, &format!("keys/{id}/unbind"), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(get_as(&s, &k, Some(loser), &[]).await.0, 200);
    let (st, _) = get_as(&s, &k, Some(winner), &[]).await;
    assert_eq!(st, 403);
    assert_eq!(mock.count(), before + 1);
}

fn write_geo_db(path: &std::path::Path) {
    let mut w = MmdbWriter::new("Latchkey-Test-City");
    w.insert("10.0.0.0/8".parse().unwrap(), "US", Some("San Francisco"))
        .unwrap();
    w.insert("10.9.0.0/16".parse().unwrap(), "US", Some("Boston"))
        .unwrap();
    w.insert("11.0.0.0/8".parse().unwrap(), "DE", Some("Berlin"))
        .unwrap();
    w.insert(
        "2001:db8::/32".parse().unwrap(),
        "US",
        Some("San Francisco"),
    )
    .unwrap();
    w.write_to(path).unwrap();
}

#[tokio::test]
async fn geo_lock_by_country_and_city_from_a_generated_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    write_geo_db(&db);
    let (mock, s) = setup(trusting_loopback(vec![(
        "LATCHKEY_GEOIP_DATABASE".into(),
        db.display().to_string(),
    )]))
    .await;
    let (_, us) = s
        .key(json!({"name": "us", "providers": ["openai"], "countries": ["us"]}))
        .await;
    let (_, sf) = s
        .key(json!({"name": "sf", "providers": ["openai"], "countries": ["US"], "cities": ["San Francisco"]}))
        .await;
    assert_eq!(get_as(&s, &us, Some("10.1.1.1"), &[]).await.0, 200);
    assert_eq!(get_as(&s, &us, Some("10.9.1.1"), &[]).await.0, 200);
    assert_eq!(get_as(&s, &sf, Some("10.1.1.1"), &[]).await.0, 200);
    assert_eq!(get_as(&s, &sf, Some("2001:db8::1"), &[]).await.0, 200);
    let n = mock.count();
    for (key, ip) in [
        (&us, "11.1.1.1"),   // Germany
        (&sf, "10.9.1.1"),   // Boston
        (&us, "172.16.0.1"), // not in the database: fail closed
    ] {
        let (st, v) = get_as(&s, key, Some(ip), &[]).await;
        assert_eq!((st, code(&v)), (403, "geo_blocked"), "{ip}: {v}");
    }
    assert_eq!(mock.count(), n);
}

#[tokio::test]
async fn geo_locked_key_without_a_database_fails_closed() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (_, k) = s
        .key(json!({"name": "de", "providers": ["openai"], "countries": ["DE"]}))
        .await;
    let (st, v) = get_as(&s, &k, None, &[]).await;
    assert_eq!((st, code(&v)), (403, "geo_blocked"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("geo database"),
        "{v}"
    );
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn device_lock_requires_the_bound_fingerprint() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (id, k) = s.key(json!({"name": "dev", "providers": ["openai"]})).await;
    let (st, v) = s
        .admin(
            Method::POST,
            &format!("keys/{id}/bind-device"),
            Some(json!({"fingerprint": "laptop-fp-123"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(
        !v.to_string().contains("laptop-fp-123"),
        "raw fingerprint stored/echoed: {v}"
    );
    let (st, v) = get_as(&s, &k, None, &[]).await;
    assert_eq!((st, code(&v)), (403, "device_mismatch"), "{v}");
    let (st, v) = get_as(&s, &k, None, &[("x-device-fingerprint", "other-laptop")]).await;
    assert_eq!((st, code(&v)), (403, "device_mismatch"), "{v}");
    assert_eq!(mock.count(), 0);
    let (st, _) = get_as(&s, &k, None, &[("x-device-fingerprint", "laptop-fp-123")]).await;
    assert_eq!(st, 200);
    assert_eq!(mock.count(), 1);
    assert!(
        !mock.last().headers.contains_key("x-device-fingerprint"),
        "the device fingerprint reached the provider"
    );
}

struct Signed {
    ts: i64,
    nonce: String,
    sig: String,
}

fn sign(secret: &str, ts: i64, nonce: &str, method: &str, path: &str, body: &[u8]) -> Signed {
    let digest = signature::body_sha256_hex(body);
    Signed {
        ts,
        nonce: nonce.into(),
        sig: signature::sign(secret.as_bytes(), ts, nonce, method, path, &digest),
    }
}

async fn post_signed(
    s: &Server,
    key: &str,
    path: &str,
    body: &[u8],
    sig: Option<&Signed>,
) -> (u16, Value) {
    let mut r = s
        .http
        .post(format!("{}{path}", s.gateway))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(sg) = sig {
        r = r
            .header(signature::TIMESTAMP_HEADER, sg.ts.to_string())
            .header(signature::NONCE_HEADER, &sg.nonce)
            .header(signature::SIGNATURE_HEADER, &sg.sig);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status().as_u16();
    (st, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn signed_requests_pass_and_replays_stale_or_tampered_ones_do_not() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (st, created) = s
        .admin(
            Method::POST,
            "keys",
            Some(json!({"name": "signed", "providers": ["openai"], "signed": true})),
        )
        .await;
    assert_eq!(st, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let secret = created["signing_secret"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    let (_, listed) = s.admin(Method::GET, &format!("keys/{id}"), None).await;
    assert!(!listed.to_string().contains(&secret), "secret shown again");

    let path = "/proxy/openai/v1/chat/completions?trace=1";
    let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let now = chrono::Utc::now().timestamp();

    let good = sign(&secret, now, "nonce-0001", "POST", path, body);
    let (st, v) = post_signed(&s, &key, path, body, Some(&good)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(mock.count(), 1);
    assert_eq!(&mock.last().body[..], &body[..], "body must arrive intact");
    assert_eq!(mock.last().uri.query(), Some("trace=1"));
    let seen = mock.last();
    let auth = seen.headers.get("authorization").unwrap().to_str().unwrap();
    assert!(!auth.contains("lk_"), "the proxy key reached the provider");
    for h in [
        signature::SIGNATURE_HEADER,
        signature::NONCE_HEADER,
        signature::TIMESTAMP_HEADER,
    ] {
        assert!(!seen.headers.contains_key(h), "{h} reached the provider");
    }

    let cases: Vec<(&str, Option<Signed>, &[u8])> = vec![
        (
            "replayed",
            Some(sign(&secret, now, "nonce-0001", "POST", path, body)),
            body,
        ),
        (
            "stale",
            Some(sign(&secret, now - 3600, "nonce-0002", "POST", path, body)),
            body,
        ),
        (
            "future",
            Some(sign(&secret, now + 3600, "nonce-0003", "POST", path, body)),
            body,
        ),
        (
            "tampered body",
            Some(sign(&secret, now, "nonce-0004", "POST", path, body)),
            br#"{"model":"gpt-4o"}"#,
        ),
        (
            "other path",
            Some(sign(
                &secret,
                now,
                "nonce-0005",
                "POST",
                "/proxy/openai/v1/embeddings",
                body,
            )),
            body,
        ),
        (
            "wrong secret",
            Some(sign(
                "not-the-secret",
                now,
                "nonce-0006",
                "POST",
                path,
                body,
            )),
            body,
        ),
        ("unsigned", None, body),
    ];
    for (what, sg, b) in cases {
        let (st, v) = post_signed(&s, &key, path, b, sg.as_ref()).await;
        assert_eq!((st, code(&v)), (401, "bad_signature"), "{what}: {v}");
    }
    assert_eq!(
        mock.count(),
        1,
        "a refused signed request reached the provider"
    );

    // A fresh nonce passes again; the secret never reaches the provider or the data dir.
    let again = sign(&secret, now, "nonce-0007", "POST", path, body);
    assert_eq!(post_signed(&s, &key, path, body, Some(&again)).await.0, 200);
    assert!(!mock.last().all_text().contains(&secret));
    for (p, bytes) in common::all_file_bytes(&s.data_dir) {
        assert!(
            !common::contains(&bytes, secret.as_bytes()),
            "signing secret in {p:?}"
        );
    }
}

#[tokio::test]
async fn model_allow_list_is_enforced_before_the_provider_is_contacted() {
    let (mock, s) = setup(ServerOpts::default()).await;
    let (_, k) = s
        .key(json!({"name": "m", "providers": ["openai", "gemini"], "models": ["gpt-4o-mini", "text-embedding-*"]}))
        .await;
    let path = "/proxy/openai/v1/chat/completions";
    let ok = br#"{"model":"gpt-4o-mini","messages":[]}"#;
    let (st, v) = post_signed(&s, &k, path, ok, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(&mock.last().body[..], &ok[..]);
    let (st, _) = post_signed(
        &s,
        &k,
        "/proxy/openai/v1/embeddings",
        br#"{"model":"text-embedding-3-small","input":"x"}"#,
        None,
    )
    .await;
    assert_eq!(st, 200);
    // Listing models names no model: allowed.
    let (st, _) = get_as(&s, &k, None, &[]).await;
    assert_eq!(st, 200);
    let n = mock.count();
    for body in [
        &br#"{"model":"gpt-4o","messages":[]}"#[..],
        &br#"{"messages":[]}"#[..], // no model: fail closed
        &b"not json"[..],
    ] {
        let (st, v) = post_signed(&s, &k, path, body, None).await;
        assert_eq!((st, code(&v)), (403, "model_not_allowed"), "{v}");
    }
    // Gemini puts the model in the path.
    s.point("gemini", &mock.url()).await;
    s.connect("gemini", "gm-secret", &[]).await;
    let (st, v) = post_signed(
        &s,
        &k,
        "/proxy/gemini/v1beta/models/gemini-1.5-pro:generateContent",
        b"{}",
        None,
    )
    .await;
    assert_eq!((st, code(&v)), (403, "model_not_allowed"), "{v}");
    assert_eq!(mock.count(), n);
    // Bodies the gateway must inspect are bounded (Pingora replays at most 64 KiB).
    let big = format!(
        r#"{{"model":"gpt-4o-mini","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let (st, v) = post_signed(&s, &k, path, big.as_bytes(), None).await;
    assert_eq!((st, code(&v)), (413, "payload_too_large"), "{v}");
    assert_eq!(mock.count(), n);
}

#[tokio::test]
async fn velocity_spike_suspends_the_key_records_an_incident_and_notifies() {
    let hook = Mock::start().await;
    let (mock, s) = setup(ServerOpts {
        env: vec![(
            "LATCHKEY_ALERT_WEBHOOK".into(),
            format!("{}/hooks/latchkey", hook.url()),
        )],
        ..Default::default()
    })
    .await;
    let (id, k) = s
        .key(json!({"name": "burst", "providers": ["openai"], "velocity": {"window_secs": 60, "max_requests": 3}}))
        .await;
    for _ in 0..3 {
        assert_eq!(get_as(&s, &k, None, &[]).await.0, 200);
    }
    let (st, v) = get_as(&s, &k, None, &[]).await;
    assert_eq!((st, code(&v)), (403, "key_suspended"), "{v}");
    let (st, v) = get_as(&s, &k, None, &[]).await;
    assert_eq!((st, code(&v)), (403, "key_suspended"), "{v}");
    assert_eq!(mock.count(), 3);

    // Suspension, incident, audit and webhook land off the request path: poll briefly.
    let mut incident = Value::Null;
    for _ in 0..100 {
        let (_, inc) = s.admin(Method::GET, "incidents", None).await;
        let found = inc
            .as_array()
            .or_else(|| inc["incidents"].as_array())
            .and_then(|a| a.iter().find(|i| i["key_id"] == json!(id)).cloned());
        if let (Some(i), true) = (found, hook.count() > 0) {
            incident = i;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        incident["kind"],
        json!("velocity"),
        "no incident: {incident}"
    );
    let (_, key) = s.admin(Method::GET, &format!("keys/{id}"), None).await;
    assert_eq!(key["status"], json!("suspended"), "{key}");
    let alert: Value = serde_json::from_slice(&hook.last().body).unwrap();
    assert_eq!(alert["key_id"], json!(id));
    assert!(
        alert["text"].as_str().unwrap().contains("suspended"),
        "{alert}"
    );
    assert!(!hook.last().all_text().contains(SECRET));
    assert_audit_mentions(&s, "key.suspend").await;

    // An admin reinstates it; it works again.
    let (st, v) = s
        .admin(Method::POST, &format!("keys/{id}/reinstate"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(get_as(&s, &k, None, &[]).await.0, 200);
}

#[tokio::test]
async fn lockdown_takes_effect_on_the_next_request_and_lifts_cleanly() {
    let hook = Mock::start().await;
    let (mock, s) = setup(ServerOpts {
        env: vec![(
            "LATCHKEY_ALERT_WEBHOOK".into(),
            format!("{}/hook", hook.url()),
        )],
        ..Default::default()
    })
    .await;
    s.point("anthropic", &mock.url()).await;
    s.connect("anthropic", "sk-ant-x", &[]).await;
    let (_, k) = s.key(json!({"name": "all", "providers": ["*"]})).await;
    let anthropic = |s: &Server, k: &str| {
        s.http
            .get(format!("{}/proxy/anthropic/v1/models", s.gateway))
            .header("x-api-key", k)
            .send()
    };
    assert_eq!(get_as(&s, &k, None, &[]).await.0, 200);

    let (st, v) = s
        .admin(
            Method::POST,
            "lockdown",
            Some(json!({"scope": "provider", "provider": "openai", "reason": "leak drill"})),
        )
        .await;
    assert!(st == 200 || st == 201, "{v}");
    let (st, v) = get_as(&s, &k, None, &[]).await;
    assert_eq!((st, code(&v)), (503, "lockdown"), "{v}");
    assert_eq!(anthropic(&s, &k).await.unwrap().status(), 200);

    let (st, v) = s
        .admin(Method::POST, "lockdown", Some(json!({"scope": "global"})))
        .await;
    assert!(st == 200 || st == 201, "{v}");
    assert_eq!(anthropic(&s, &k).await.unwrap().status(), 503);
    let n = mock.count();

    for body in [
        json!({"scope": "global"}),
        json!({"scope": "provider", "provider": "openai"}),
    ] {
        let (st, v) = s.admin(Method::POST, "lockdown/lift", Some(body)).await;
        assert_eq!(st, 200, "{v}");
    }
    assert_eq!(get_as(&s, &k, None, &[]).await.0, 200);
    assert_eq!(anthropic(&s, &k).await.unwrap().status(), 200);
    assert_eq!(mock.count(), n + 2);

    // Lockdowns are announced on the alert webhook (two on, two off).
    for _ in 0..100 {
        if hook.count() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events: Vec<String> = hook
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["event"].to_string())
        .collect();
    assert_eq!(
        events.iter().filter(|e| e.contains("lockdown.on")).count(),
        2,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| e.contains("lockdown.off")).count(),
        2,
        "{events:?}"
    );
}

/// `GET /proxy/openai/v1/models` through the PROXY protocol listener, announcing `header`.
async fn via_proxy_protocol(s: &Server, header: &[u8], key: &str) -> String {
    let addr = s.gateway.trim_start_matches("http://").to_string();
    common::raw_http(
        &addr,
        header,
        &format!("GET /proxy/openai/v1/models HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn proxy_protocol_announces_the_client_only_from_trusted_peers() {
    let (mock, s) = setup(ServerOpts {
        env: vec![
            ("LATCHKEY_PROXY_PROTOCOL".into(), "1".into()),
            ("LATCHKEY_TRUSTED_PROXIES".into(), "127.0.0.1".into()),
        ],
        ..Default::default()
    })
    .await;
    let (_, office) = s
        .key(json!({"name": "office", "providers": ["openai"], "ip": "203.0.113.0/24, 2001:db8::/32"}))
        .await;
    // v1 text header from the trusted load balancer (127.0.0.1): the announced client counts.
    let ok = via_proxy_protocol(
        &s,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 8080\r\n",
        &office,
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let refused = via_proxy_protocol(
        &s,
        b"PROXY TCP4 198.51.100.1 127.0.0.1 5555 8080\r\n",
        &office,
    )
    .await;
    assert!(
        refused.starts_with("HTTP/1.1 403") && refused.contains("ip_locked"),
        "{refused}"
    );
    // v2 binary header, IPv6.
    let addrs: ppp::v2::Addresses = (
        "[2001:db8::42]:4000"
            .parse::<std::net::SocketAddr>()
            .unwrap(),
        "[2001:db8::1]:8080"
            .parse::<std::net::SocketAddr>()
            .unwrap(),
    )
        .into();
    let v2 = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addrs,
    )
    .build()
    .unwrap();
    let ok = via_proxy_protocol(&s, &v2, &office).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // No header at all: the connection is closed, nothing is guessed.
    let none = via_proxy_protocol(&s, b"", &office).await;
    assert!(!none.contains("200 OK"), "{none}");
    assert_eq!(mock.count(), 2);
    assert!(!mock.last().all_text().contains(&office));
}

#[tokio::test]
async fn proxy_protocol_header_from_an_untrusted_peer_is_ignored() {
    let (mock, s) = setup(ServerOpts {
        env: vec![
            ("LATCHKEY_PROXY_PROTOCOL".into(), "1".into()),
            ("LATCHKEY_TRUSTED_PROXIES".into(), "10.0.0.0/8".into()),
        ],
        ..Default::default()
    })
    .await;
    let (_, office) = s
        .key(json!({"name": "office", "providers": ["openai"], "ip": "203.0.113.0/24"}))
        .await;
    let refused = via_proxy_protocol(
        &s,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 8080\r\n",
        &office,
    )
    .await;
    assert!(refused.contains("ip_locked"), "{refused}");
    assert_eq!(mock.count(), 0);
}
