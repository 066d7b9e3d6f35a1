//! Idempotency keys for providers that honour them: a retried POST carries the same key, a
//! different request another one, and a client's own key is never replaced.

mod common;

use common::{Mock, Server};
use serde_json::json;

async fn charge(s: &Server, key: &str, body: &str, own: Option<&str>) -> u16 {
    let mut r = s
        .http
        .post(format!("{}/proxy/stripe/v1/charges", s.gateway))
        .bearer_auth(key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    if let Some(k) = own {
        r = r.header("idempotency-key", k);
    }
    r.send().await.unwrap().status().as_u16()
}

fn key_seen(mock: &Mock, i: usize) -> Option<String> {
    mock.seen.lock().unwrap()[i]
        .headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn a_retried_post_carries_the_same_idempotency_key() {
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("stripe", &mock.url()).await;
    s.connect("stripe", "sk_live_stripe_secret_0004", &[]).await;
    let (_, k) = s
        .key(json!({"name": "billing", "providers": ["stripe"]}))
        .await;
    assert_eq!(charge(&s, &k, "amount=1000&currency=usd", None).await, 200);
    assert_eq!(charge(&s, &k, "amount=1000&currency=usd", None).await, 200);
    assert_eq!(charge(&s, &k, "amount=2000&currency=usd", None).await, 200);
    assert_eq!(
        charge(&s, &k, "amount=1000&currency=usd", Some("client-key-1")).await,
        200
    );
    let first = key_seen(&mock, 0).expect("a key was added");
    assert!(first.starts_with("lk-"), "{first}");
    assert_eq!(
        key_seen(&mock, 1),
        Some(first.clone()),
        "the retry reuses it"
    );
    assert_ne!(
        key_seen(&mock, 2),
        Some(first),
        "another request, another key"
    );
    assert_eq!(key_seen(&mock, 3).as_deref(), Some("client-key-1"));
    // The body reached the provider intact.
    assert_eq!(&mock.last().body[..], b"amount=1000&currency=usd");

    // Providers that do not honour idempotency keys get none added.
    s.point("openai", &mock.url()).await;
    s.connect("openai", "sk-openai-secret-0005", &[]).await;
    let (_, ko) = s.key(json!({"name": "llm", "providers": ["openai"]})).await;
    let st = s
        .http
        .post(format!("{}/proxy/openai/v1/chat/completions", s.gateway))
        .bearer_auth(&ko)
        .json(&json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, 200);
    assert!(mock.last().headers.get("idempotency-key").is_none());
}
