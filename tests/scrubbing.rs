//! Providers echo keys in error messages; the client must never see the real credential, nor a
//! recognizable fragment of it, in headers or bodies, streamed or not.

mod common;

use common::{Mock, Server};
use serde_json::{json, Value};

const SECRET: &str = "sk-proj-Zq8vN3kLx2Rb7TfW9mYc4HdJ6sPa1EgU";

#[tokio::test]
async fn echoed_secrets_are_masked_in_headers_json_and_split_streams() {
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (_, k) = s
        .key(json!({"name": "agent", "providers": ["openai"]}))
        .await;

    let resp = s
        .http
        .get(format!("{}/proxy/openai/v1/leak", s.gateway))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "provider errors pass through");
    // Still framed (chunked), so the connection stays reusable: never close-delimited.
    assert_eq!(
        resp.headers()
            .get("transfer-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("chunked"),
        "{:?}",
        resp.headers()
    );
    assert_ne!(
        resp.headers()
            .get("connection")
            .map(|v| v.to_str().unwrap()),
        Some("close")
    );
    let header = resp.headers()["x-debug-key"].to_str().unwrap().to_string();
    let text = resp.text().await.unwrap();
    assert!(!header.contains(&SECRET[8..]), "{header}");
    assert!(!text.contains(&SECRET[8..]), "{text}");
    assert!(!text.contains("Zq8vN3kLx2"), "a fragment leaked: {text}");
    assert!(
        !text.contains("****1EgU"),
        "the provider-masked echo is masked too: {text}"
    );
    let v: Value = serde_json::from_str(&text).expect("still valid JSON");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("[REDACTED]"));
    assert!(
        !text.contains(&k),
        "the proxy key never reaches the provider in the first place"
    );

    // The same, streamed in 7-byte pieces: the key is split across chunks.
    let resp = s
        .http
        .get(format!("{}/proxy/openai/v1/leak-stream", s.gateway))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("[DONE]"), "the stream is complete: {text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    for window in SECRET.as_bytes().windows(10) {
        let frag = std::str::from_utf8(window).unwrap();
        assert!(!text.contains(frag), "fragment {frag:?} leaked: {text}");
    }
}
