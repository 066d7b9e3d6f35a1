//! Fault injection: providers that fail with 500s, hang, break streams and refuse connections.
//! The circuit opens and half-opens as configured, failover serves from the next target,
//! retries never repeat a non-idempotent request, a broken stream surfaces as an error, and
//! `/metrics` parses as Prometheus text.

mod common;

use common::{free_port, Mock, Server, ServerOpts};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "sk-live-resilience-0001";
const BACKUP_SECRET: &str = "sk-live-backup-0002";

/// A server with fast circuits (4 requests, 1 s cooldown) from a config file.
async fn setup() -> (Mock, Server, String) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("latchkey.toml");
    std::fs::write(
        &conf,
        "[circuits]\nmin_requests = 4\ncooldown_ms = 1000\nwindow_ms = 10000\n\n[retry]\nmax_attempts = 3\nbase_ms = 10\n",
    )
    .unwrap();
    let mock = Mock::start().await;
    let s = Server::start_with(ServerOpts {
        args: vec!["--config".into(), conf.to_str().unwrap().into()],
        ..Default::default()
    })
    .await;
    // The config file must outlive the process's start only.
    drop(dir);
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (_, k) = s
        .key(json!({"name": "agent", "providers": ["openai"]}))
        .await;
    (mock, s, k)
}

async fn call(
    s: &Server,
    key: &str,
    method: Method,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = s
        .http
        .request(method.clone(), format!("{}/proxy/openai{path}", s.gateway))
        .bearer_auth(key);
    if method == Method::POST {
        r = r.json(&json!({"model": "gpt-4o-mini"}));
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn circuit_opens_fails_fast_and_half_opens_after_the_cooldown() {
    let (mock, s, k) = setup().await;
    for _ in 0..4 {
        let (st, _, _) = call(&s, &k, Method::GET, "/v1/status/500").await;
        assert_eq!(st, 500, "provider errors pass through");
    }
    // Open: refused without contacting the provider, with a retry-after.
    let (st, h, v) = call(&s, &k, Method::GET, "/v1/models").await;
    assert_eq!((st, code(&v)), (503, "upstream_unavailable"), "{v}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(mock.count(), 4);

    let (_, circuits) = s.admin(Method::GET, "circuits", None).await;
    let c = &circuits["circuits"][0];
    assert_eq!(
        (c["target"].as_str(), c["state"].as_str()),
        (Some("openai"), Some("open")),
        "{circuits}"
    );
    let (_, status) = s.admin(Method::GET, "status", None).await;
    assert_eq!(status["circuits"][0]["state"], json!("open"));

    // After the cooldown one probe goes through; its success closes the circuit.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, h, _) = call(&s, &k, Method::GET, "/v1/models").await;
    assert_eq!(st, 200);
    assert_eq!(h["x-latchkey-target"], "openai");
    let (_, circuits) = s.admin(Method::GET, "circuits", None).await;
    assert_eq!(
        circuits["circuits"][0]["state"],
        json!("closed"),
        "{circuits}"
    );
    assert_eq!(call(&s, &k, Method::GET, "/v1/models").await.0, 200);

    // An operator can close a circuit by hand.
    for _ in 0..4 {
        call(&s, &k, Method::GET, "/v1/status/503").await;
    }
    assert_eq!(call(&s, &k, Method::GET, "/v1/models").await.0, 503);
    let (st, _) = s.admin(Method::POST, "circuits/openai/reset", None).await;
    assert_eq!(st, 200);
    assert_eq!(call(&s, &k, Method::GET, "/v1/models").await.0, 200);

    // Metrics parse as Prometheus text and show the circuit and the attempts.
    let text = s
        .http
        .get(format!("{}/metrics", s.admin_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let sample = |name: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        sample("latchkey_circuit_state", ("target", "openai")),
        Some(0.0)
    );
    let server_errors = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "latchkey_upstream_attempts_total"
                && s.labels.get("outcome") == Some("server_error")
        })
        .count();
    assert_eq!(server_errors, 1, "{text}");
    assert!(sample(
        "latchkey_requests_total",
        ("outcome", "upstream_unavailable")
    )
    .is_some());
    assert!(sample("latchkey_cache_lookups_total", ("cache", "keys")).is_some_and(|v| v > 0.0));
    assert!(sample("latchkey_bytes_total", ("direction", "response")).is_some_and(|v| v > 0.0));
    for family in [
        "latchkey_gateway_overhead_seconds",
        "latchkey_upstream_ttfb_seconds",
        "latchkey_upstream_duration_seconds",
        "latchkey_store_duration_seconds",
    ] {
        assert!(
            scrape
                .samples
                .iter()
                .any(|s| s.metric == family
                    && matches!(s.value, prometheus_parse::Value::Histogram(_))),
            "{family} missing: {text}"
        );
    }
    assert!(text.contains("latchkey_audit_queue_depth "), "{text}");
    assert!(text.contains("latchkey_audit_lag_seconds "), "{text}");
}

#[tokio::test]
async fn json_access_log_has_the_request_id_and_no_secret() {
    let mock = Mock::start().await;
    let mut s = Server::start_with(ServerOpts {
        env: vec![
            ("LATCHKEY_LOG_FORMAT".into(), "json".into()),
            ("RUST_LOG".into(), "info,latchkey::access=info".into()),
        ],
        ..Default::default()
    })
    .await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (_, k) = s
        .key(json!({"name": "agent", "providers": ["openai"]}))
        .await;
    let (st, h, _) = call(&s, &k, Method::GET, "/v1/models").await;
    assert_eq!(st, 200);
    let request_id = h["x-request-id"].to_str().unwrap().to_string();
    assert!(s.stop().success());
    let all = String::from_utf8_lossy(&s.logs()).into_owned();
    assert!(
        !all.contains(SECRET) && !all.contains(&k),
        "a secret in the logs"
    );
    // The tracing output is on stderr (stdout has the bootstrap banner).
    let mut logs = String::new();
    for e in std::fs::read_dir(s.dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("stderr-"))
        {
            logs.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    let access: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == json!("latchkey::access"))
        .collect();
    assert_eq!(access.len(), 1, "{logs}");
    assert_eq!(access[0]["fields"]["request_id"], json!(request_id));
    assert_eq!(access[0]["fields"]["status"], json!(200));
    // Every line of the log is JSON.
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "{line}");
    }
}

#[tokio::test]
async fn refused_connections_fail_over_to_the_next_target() {
    let (_mock, s, k) = setup().await;
    let backup = Mock::start().await;
    // A custom provider with its own base URL and credential…
    let (st, v) = s
        .admin(
            Method::POST,
            "providers",
            Some(json!({"id": "backup", "base_url": backup.url(), "auth": "bearer", "body_format": "openai-chat"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    s.connect("backup", BACKUP_SECRET, &[]).await;
    // …is openai's failover target; openai itself refuses connections.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (st, v) = s
        .admin(
            Method::PATCH,
            "providers/openai",
            Some(json!({"base_url": closed, "failover": [{"provider": "backup", "model": "backup-model"}]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    let (st, h, _) = call(&s, &k, Method::POST, "/v1/chat/completions").await;
    assert_eq!(st, 200);
    assert_eq!(h["x-latchkey-target"], "backup");
    let seen = backup.last();
    assert_eq!(
        seen.headers["authorization"].to_str().unwrap(),
        format!("Bearer {BACKUP_SECRET}")
    );
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body["model"],
        json!("backup-model"),
        "the target's equivalent model"
    );
    assert!(!seen.all_text().contains(SECRET));

    // A failover target that does not exist is refused.
    let (st, _) = s
        .admin(
            Method::PATCH,
            "providers/openai",
            Some(json!({"failover": [{"provider": "nope"}]})),
        )
        .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn timeouts_retry_idempotent_requests_only() {
    let (mock, s, k) = setup().await;
    let (st, v) = s
        .admin(
            Method::PATCH,
            "providers/openai",
            Some(json!({"timeouts": {"read_ms": 300}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // POST may have reached the provider: never sent twice.
    let started = Instant::now();
    let (st, _, v) = call(&s, &k, Method::POST, "/v1/hang").await;
    assert_eq!((st, code(&v)), (504, "upstream_timeout"), "{v}");
    assert_eq!(mock.count(), 1, "a non-idempotent request was repeated");
    assert!(started.elapsed() < Duration::from_secs(5));
    // GET is idempotent: up to three attempts in all.
    let (st, _, _) = call(&s, &k, Method::GET, "/v1/hang").await;
    assert_eq!(st, 504);
    assert_eq!(mock.count(), 1 + 3);
}

#[tokio::test]
async fn a_broken_stream_is_an_error_never_a_clean_end() {
    let (_mock, s, k) = setup().await;
    let resp = s
        .http
        .get(format!("{}/proxy/openai/v1/broken-stream", s.gateway))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await;
    assert!(
        body.is_err(),
        "the client must see the break, got a clean end: {body:?}"
    );
}
