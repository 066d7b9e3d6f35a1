//! The OpenAI-compatible `/v1` endpoint and its model registry: aliases rewrite the model and
//! pick the provider, unknown models are refused before any provider is contacted, `GET
//! /v1/models` lists what the key may use, and the official SDK works unchanged.

mod common;

use common::{Mock, Server};
use reqwest::Method;
use serde_json::{json, Value};

const SECRET: &str = "sk-live-v1-secret-0003";

async fn setup() -> (Mock, Server) {
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    (mock, s)
}

async fn post(s: &Server, key: &str, body: Value) -> (u16, Value) {
    let resp = s
        .http
        .post(format!("{}/v1/chat/completions", s.gateway))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = resp.status().as_u16();
    (st, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn aliases_pick_the_provider_and_rewrite_the_model() {
    let (mock, s) = setup().await;
    let (_, k) = s
        .key(json!({"name": "agent", "providers": ["openai"]}))
        .await;
    // Without a registry, /v1 goes to the key's first provider with the model unchanged.
    let (st, _) = post(&s, &k, json!({"model": "gpt-4o-mini", "messages": []})).await;
    assert_eq!(st, 200);
    assert_eq!(mock.last().uri.path(), "/v1/chat/completions");

    let login = s.cli(&["login", "--url", &s.admin_url, "--token", &s.token], None);
    assert!(login.status.success());
    let out = s.cli(
        &[
            "models",
            "set",
            "fast",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-mini-2024-07-18",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let (st, v) = s
        .admin(
            Method::PUT,
            "models/claude-sonnet",
            Some(json!({"provider": "anthropic", "model": "claude-sonnet-4-5"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // A provider without an OpenAI-compatible API cannot be registered.
    let (st, _) = s
        .admin(
            Method::PUT,
            "models/pay",
            Some(json!({"provider": "stripe", "model": "x"})),
        )
        .await;
    assert_eq!(st, 400);

    let (st, _) = post(
        &s,
        &k,
        json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(st, 200);
    let seen = mock.last();
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["model"], json!("gpt-4o-mini-2024-07-18"));
    assert_eq!(
        seen.headers["content-length"].to_str().unwrap(),
        seen.body.len().to_string()
    );
    assert_eq!(
        seen.headers["authorization"].to_str().unwrap(),
        format!("Bearer {SECRET}")
    );
    // The exact id of a registered model is accepted as is.
    let (st, _) = post(
        &s,
        &k,
        json!({"model": "gpt-4o-mini-2024-07-18", "messages": []}),
    )
    .await;
    assert_eq!(st, 200);

    // Outside the registry: refused before any provider is contacted.
    let before = mock.count();
    let (st, v) = post(&s, &k, json!({"model": "gpt-5-pro", "messages": []})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{v}"
    );
    // An alias on a provider the key may not use.
    let (st, v) = post(&s, &k, json!({"model": "claude-sonnet", "messages": []})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("provider_not_allowed")),
        "{v}"
    );
    assert_eq!(mock.count(), before);

    // The listing shows only what this key may use.
    let resp = s
        .http
        .get(format!("{}/v1/models", s.gateway))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.unwrap();
    assert_eq!(list["object"], json!("list"));
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fast"]);
    assert_eq!(
        mock.count(),
        before,
        "the listing is answered by the gateway"
    );

    // A key whose allow-list excludes the exact model does not see the alias.
    let (_, narrow) = s
        .key(json!({"name": "narrow", "providers": ["openai"], "models": ["gpt-4o"]}))
        .await;
    let list: Value = s
        .http
        .get(format!("{}/v1/models", s.gateway))
        .bearer_auth(&narrow)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn the_official_openai_sdk_works_through_v1_with_an_alias() {
    let Some(py) = common::python() else {
        eprintln!("skipping: set LATCHKEY_TEST_PYTHON to a python with the openai package");
        return;
    };

    let (mock, s) = setup().await;
    let (_, k) = s.key(json!({"name": "sdk", "providers": ["openai"]})).await;
    let (st, v) = s
        .admin(
            Method::PUT,
            "models/fast",
            Some(json!({"provider": "openai", "model": "gpt-4o-mini-2024-07-18"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let base = format!("{}/v1", s.gateway);
    let v = common::run_python(&py, "openai_v1.py", vec![base, k]).await;
    assert_eq!(v["chat"], "Hello from mock");
    assert_eq!(v["stream"], "Hello from mock");
    assert_eq!(v["models"], json!(["fast"]));
    assert_eq!(v["refused_status"], 403);
    let seen = mock.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["model"], json!("gpt-4o-mini-2024-07-18"));
        assert!(!r.all_text().contains("lk_"));
    }
}
