//! Providers' rate-limit headers, normalized: whatever dialect a provider speaks, the client
//! also gets `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` and the IETF
//! `ratelimit-policy` / `ratelimit` fields; the provider's own headers stay.

mod common;

use common::{Mock, Server};
use reqwest::header::HeaderMap;
use serde_json::json;

async fn get(s: &Server, provider: &str, key: &str, path: &str) -> HeaderMap {
    let resp = s
        .http
        .get(format!("{}/proxy/{provider}{path}", s.gateway))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers().clone()
}

fn h<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("missing {name}: {headers:?}"))
}

#[tokio::test]
async fn each_dialect_is_mapped_onto_one_set_and_the_originals_stay() {
    let mock = Mock::start().await;
    let s = Server::start().await;
    for p in ["openai", "anthropic", "github"] {
        s.point(p, &mock.url()).await;
        s.connect(p, &format!("sk-ratelimit-{p}-secret"), &[]).await;
    }
    let (_, k) = s
        .key(json!({"name": "rl", "providers": ["openai", "anthropic", "github"]}))
        .await;

    // OpenAI already sends the trio: kept as sent, reset normalized only in the IETF fields.
    let o = get(&s, "openai", &k, "/v1/ratelimit-headers/openai").await;
    assert_eq!(h(&o, "x-ratelimit-reset-requests"), "120ms");
    assert_eq!(o.get_all("x-ratelimit-limit-requests").iter().count(), 1);
    assert!(h(&o, "ratelimit-policy").contains("\"requests\";q=500"));
    assert!(h(&o, "ratelimit").contains("\"requests\";r=499"));

    // Anthropic: its own headers stay, the normalized set is added.
    let a = get(&s, "anthropic", &k, "/v1/ratelimit-headers/anthropic").await;
    assert_eq!(h(&a, "anthropic-ratelimit-requests-remaining"), "49");
    assert_eq!(h(&a, "x-ratelimit-limit-requests"), "50");
    assert_eq!(h(&a, "x-ratelimit-remaining-requests"), "49");
    assert_eq!(h(&a, "x-ratelimit-remaining-tokens"), "39000");
    let reset: u64 = h(&a, "x-ratelimit-reset-requests")
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!((1..=31).contains(&reset), "{reset}");

    // GitHub: the bare trio becomes the requests trio.
    let g = get(&s, "github", &k, "/ratelimit-headers/github").await;
    assert_eq!(h(&g, "x-ratelimit-limit"), "5000");
    assert_eq!(h(&g, "x-ratelimit-limit-requests"), "5000");
    assert_eq!(h(&g, "x-ratelimit-remaining-requests"), "4999");
    assert!(h(&g, "ratelimit-policy").contains("q=5000"));
}
