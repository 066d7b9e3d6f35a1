//! End-to-end: the real binary between a client and a mock provider.

mod common;

use common::{all_file_bytes, contains, Mock, Server, ServerOpts};
use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

const SECRET: &str = "sk-test-Zq8u2MockProviderSecret0001";

async fn error_code(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status().as_u16(), status);
    assert!(
        resp.headers().get("x-request-id").is_some(),
        "x-request-id missing"
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "latchkey_error");
    assert!(v["error"]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_"));
    v["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn injects_each_auth_scheme_and_never_forwards_the_proxy_key() {
    let mock = Mock::start().await;
    let s = Server::start().await;
    // bearer
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    // header:x-api-key, key presented in x-api-key like the Anthropic SDK does
    s.point("anthropic", &mock.url()).await;
    s.connect("anthropic", "sk-ant-secret-2", &[]).await;
    // basic
    s.point("twilio", &mock.url()).await;
    s.connect("twilio", "ACsid:authtoken", &[]).await;
    // query:key on a custom provider with a path prefix
    let (st, v) = s
        .admin(
            Method::POST,
            "providers",
            Some(json!({"id": "maps", "base_url": format!("{}/base/", mock.url()), "auth": "query:key"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    s.connect("maps", "query-secret&=", &[]).await;
    let (_, key) = s.key(json!({"name": "all", "providers": ["*"]})).await;

    let r = s
        .http
        .get(format!(
            "{}/proxy/openai/v1/models?limit=2&order=asc",
            s.gateway
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-request-id").is_some());
    let seen = mock.last();
    assert_eq!(seen.uri.path(), "/v1/models");
    assert_eq!(seen.uri.query(), Some("limit=2&order=asc"));
    assert_eq!(seen.headers["authorization"], format!("Bearer {SECRET}"));
    assert_eq!(seen.headers["host"], mock.addr.to_string());

    let r = s
        .http
        .post(format!("{}/proxy/anthropic/v1/messages", s.gateway))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = mock.last();
    assert_eq!(seen.headers["x-api-key"], "sk-ant-secret-2");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(seen.headers.get("authorization").is_none());

    s.http
        .get(format!(
            "{}/proxy/twilio/2010-04-01/Accounts.json",
            s.gateway
        ))
        .header("api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        mock.last().headers["authorization"],
        "Basic QUNzaWQ6YXV0aHRva2Vu"
    );

    s.http
        .get(format!("{}/proxy/maps/geo?key=client-value&q=x", s.gateway))
        .header("x-goog-api-key", &key)
        .send()
        .await
        .unwrap();
    let seen = mock.last();
    assert_eq!(seen.uri.path(), "/base/geo");
    assert_eq!(seen.uri.query(), Some("q=x&key=query-secret%26%3D"));
    assert!(seen.headers.get("x-goog-api-key").is_none());

    for seen in mock.seen.lock().unwrap().iter() {
        assert!(
            !seen.all_text().contains(&key),
            "proxy key reached the provider: {seen:?}"
        );
        assert!(
            !seen.all_text().contains("lk_"),
            "a Latchkey key reached the provider"
        );
    }
}

#[tokio::test]
async fn refused_requests_get_the_right_code_and_never_reach_the_provider() {
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (id, key) = s.key(json!({"name": "a", "providers": ["openai"]})).await;
    let url = format!("{}/proxy/openai/v1/models", s.gateway);
    let get = |k: Option<String>| {
        let mut r = s.http.get(&url);
        if let Some(k) = k {
            r = r.bearer_auth(k);
        }
        r.send()
    };

    assert_eq!(
        error_code(get(None).await.unwrap(), 401).await,
        "missing_key"
    );
    assert_eq!(
        error_code(get(Some("lk_typo".into())).await.unwrap(), 401).await,
        "invalid_key"
    );
    assert_eq!(
        error_code(get(Some(SECRET.into())).await.unwrap(), 401).await,
        "invalid_key"
    );
    // Well-formed (valid checksum) but never issued.
    let forged = latchkey_vault::keyfmt::generate(latchkey_vault::keyfmt::KeyKind::Proxy);
    for _ in 0..3 {
        assert_eq!(
            error_code(get(Some(forged.expose().into())).await.unwrap(), 401).await,
            "invalid_key"
        );
    }
    // Admin tokens are not proxy keys.
    assert_eq!(
        error_code(get(Some(s.token.clone())).await.unwrap(), 401).await,
        "invalid_key"
    );
    // Scope.
    let r = s
        .http
        .get(format!("{}/proxy/stripe/v1/charges", s.gateway))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "provider_not_allowed");
    let (_, any) = s.key(json!({"name": "any", "providers": ["*"]})).await;
    let r = s
        .http
        .get(format!("{}/proxy/nope/x", s.gateway))
        .bearer_auth(&any)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "unknown_provider");
    let r = s
        .http
        .get(format!("{}/v2/other", s.gateway))
        .bearer_auth(&any)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
    assert_eq!(mock.count(), 0, "a refused request reached the provider");

    // The key works; then revocation applies to the very next request.
    assert_eq!(get(Some(key.clone())).await.unwrap().status(), 200);
    assert_eq!(mock.count(), 1);
    let (st, _) = s
        .admin(Method::POST, &format!("keys/{id}/revoke"), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        error_code(get(Some(key.clone())).await.unwrap(), 401).await,
        "key_revoked"
    );

    // Expiry.
    let (id2, key2) = s.key(json!({"name": "b", "providers": ["openai"]})).await;
    assert_eq!(get(Some(key2.clone())).await.unwrap().status(), 200);
    let (st, v) = s
        .admin(
            Method::PATCH,
            &format!("keys/{id2}"),
            Some(json!({"expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        error_code(get(Some(key2)).await.unwrap(), 401).await,
        "key_expired"
    );
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn workload_selects_the_credential_and_missing_one_is_explained() {
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("openai", &mock.url()).await;
    let (_, ci_key) = s
        .key(json!({"name": "ci", "providers": ["openai"], "workload": "ci"}))
        .await;
    let r = s
        .http
        .get(format!("{}/proxy/openai/v1/models", s.gateway))
        .bearer_auth(&ci_key)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 503).await, "no_credential");
    s.connect("openai", "sk-prod-credential", &["production"])
        .await;
    s.connect("openai", "sk-ci-credential", &["ci"]).await;
    let (_, prod_key) = s
        .key(json!({"name": "p", "providers": ["openai"], "workload": "production"}))
        .await;
    s.http
        .get(format!("{}/proxy/openai/x", s.gateway))
        .bearer_auth(&ci_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        mock.last().headers["authorization"],
        "Bearer sk-ci-credential"
    );
    s.http
        .get(format!("{}/proxy/openai/x", s.gateway))
        .bearer_auth(&prod_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        mock.last().headers["authorization"],
        "Bearer sk-prod-credential"
    );
}

#[tokio::test]
async fn sse_stream_reaches_the_client_before_the_upstream_finishes() {
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (_, key) = s.key(json!({"name": "a", "providers": ["openai"]})).await;
    let resp = s
        .http
        .post(format!("{}/proxy/openai/v1/stream", s.gateway))
        .bearer_auth(&key)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    // The mock holds the rest of the stream until we release it, so this chunk can only arrive
    // if the gateway forwards chunks as they come.
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("first SSE chunk did not arrive while the upstream was still open")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    mock.release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
    {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"data: second\n\ndata: [DONE]\n\n");
}

#[tokio::test]
async fn ten_megabyte_binary_upload_and_download_are_byte_identical() {
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (_, key) = s.key(json!({"name": "a", "providers": ["openai"]})).await;
    let payload: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let resp = s
        .http
        .post(format!("{}/proxy/openai/v1/audio/echo", s.gateway))
        .bearer_auth(&key)
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let back = resp.bytes().await.unwrap();
    let seen = mock.last();
    assert_eq!(
        seen.headers["content-type"],
        "multipart/form-data; boundary=xyz"
    );
    assert!(seen.body == payload[..], "upload changed in transit");
    assert!(back == payload[..], "download changed in transit");
}

#[tokio::test]
async fn provider_secret_never_reaches_files_logs_or_responses() {
    let mock = Mock::start().await;
    let mut s = Server::start().await;
    s.point("openai", &mock.url()).await;
    let cred = s.connect("openai", SECRET, &["production"]).await;
    let (_, key) = s.key(json!({"name": "a", "providers": ["openai"]})).await;
    for _ in 0..3 {
        s.http
            .get(format!("{}/proxy/openai/v1/models", s.gateway))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
    }
    // A failing upstream path too (errors are where secrets leak).
    s.point("anthropic", "http://127.0.0.1:1").await;
    s.connect("anthropic", SECRET, &[]).await;
    let (_, any) = s.key(json!({"name": "b", "providers": ["*"]})).await;
    let r = s
        .http
        .get(format!("{}/proxy/anthropic/v1/x", s.gateway))
        .header("x-api-key", &any)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 503).await, "upstream_unavailable");

    for path in [
        "credentials",
        &format!("credentials/{cred}"),
        "providers",
        "keys",
        "audit",
        "status",
    ] {
        let (st, v) = s.admin(Method::GET, path, None).await;
        assert_eq!(st, 200);
        assert!(
            !v.to_string().contains(SECRET),
            "{path} returned the secret"
        );
        assert!(!v.to_string().contains(&key), "{path} returned a proxy key");
    }
    let status = s.stop();
    assert!(status.success(), "graceful stop failed: {status}");
    for (path, bytes) in all_file_bytes(&s.data_dir) {
        assert!(
            !contains(&bytes, SECRET.as_bytes()),
            "secret in plaintext in {}",
            path.display()
        );
        assert!(
            !contains(&bytes, key.as_bytes()),
            "proxy key in plaintext in {}",
            path.display()
        );
    }
    let logs = s.logs();
    assert!(!logs.is_empty());
    assert!(
        !contains(&logs, SECRET.as_bytes()),
        "secret in the server logs"
    );
}

#[tokio::test]
async fn upstream_failures_are_contract_errors() {
    let s = Server::start().await;
    s.point(
        "openai",
        &format!("http://127.0.0.1:{}", common::free_port()),
    )
    .await;
    s.connect("openai", SECRET, &[]).await;
    let (_, key) = s.key(json!({"name": "a", "providers": ["openai"]})).await;
    let r = s
        .http
        .get(format!("{}/proxy/openai/v1/models", s.gateway))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 503).await, "upstream_unavailable");
    // Azure needs its own base URL before use.
    s.connect("azure-openai", SECRET, &[]).await;
    let (_, any) = s.key(json!({"name": "b", "providers": ["*"]})).await;
    let r = s
        .http
        .get(format!("{}/proxy/azure-openai/x", s.gateway))
        .header("api-key", &any)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 503).await, "provider_not_configured");
}

#[tokio::test]
async fn ssrf_guard_refuses_private_upstreams_unless_allowed() {
    let s = Server::start_with(ServerOpts {
        allow_private: false,
        ..Default::default()
    })
    .await;
    for url in [
        "http://127.0.0.1:9",
        "http://169.254.169.254/latest",
        "http://10.0.0.1",
        "http://localhost:80",
    ] {
        let (st, v) = s
            .admin(
                Method::PATCH,
                "providers/openai",
                Some(json!({"base_url": url})),
            )
            .await;
        assert_eq!(st, 400, "{url}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_private_upstreams"));
    }
    let (st, _) = s
        .admin(
            Method::POST,
            "providers",
            Some(json!({"id": "internal", "base_url": "http://192.168.1.1", "auth": "bearer"})),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .admin(
            Method::PATCH,
            "providers/openai",
            Some(json!({"base_url": "https://api.openai.example"})),
        )
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn health_and_readiness() {
    let s = Server::start().await;
    let r = s
        .http
        .get(format!("{}/healthz", s.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .get(format!("{}/readyz", s.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_flushes_audit() {
    let mock = Mock::start().await;
    // The grace period (3 s) outlasts the slow request (1.5 s).
    let mut s = Server::start_with(ServerOpts {
        env: vec![("LATCHKEY_SHUTDOWN_GRACE_SECONDS".into(), "3".into())],
        ..Default::default()
    })
    .await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (key_id, key) = s.key(json!({"name": "a", "providers": ["openai"]})).await;
    let req = s
        .http
        .get(format!("{}/proxy/openai/v1/slow", s.gateway))
        .bearer_auth(&key)
        .send();
    let inflight = tokio::spawn(req);
    // Let the request reach the mock, then ask the server to stop.
    for _ in 0..100 {
        if mock.count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = s.child.as_ref().unwrap().id();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let resp = inflight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "in-flight request was cut off");
    let status = tokio::task::spawn_blocking(move || {
        let st = s.stop_after_signal();
        (st, s)
    })
    .await
    .unwrap();
    let (st, s) = status;
    assert!(st.success());
    // The last proxied request is in the audit log after shutdown.
    let db = rusqlite::Connection::open(s.db_path()).unwrap();
    let n: i64 = db
        .query_row(
            "SELECT count(*) FROM audit WHERE event LIKE ?1 AND event LIKE '%/v1/slow%'",
            [format!("%key:{key_id}%")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1, "audit event of the drained request was not flushed");
}

trait StopAfterSignal {
    fn stop_after_signal(&mut self) -> std::process::ExitStatus;
}

impl StopAfterSignal for Server {
    fn stop_after_signal(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}
