//! WebSockets through the gateway (OpenAI Realtime and any `wss` API): the upgrade carries the
//! injected credential, frames pass untouched both ways, close codes arrive, and a key revoked
//! mid-session is cut off.

mod common;

use common::{Mock, Server};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "sk-live-realtime-secret-0006";

#[tokio::test]
async fn frames_pass_both_ways_with_the_credential_injected() {
    let mock = Mock::start().await;
    let s = Server::start().await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (id, k) = s
        .key(json!({"name": "realtime", "providers": ["openai"]}))
        .await;
    let url = format!(
        "{}/proxy/openai/v1/realtime/ws-echo?model=gpt-4o-realtime-preview",
        s.gateway.replace("http://", "ws://")
    );
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {k}").parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    let binary = vec![0u8, 1, 2, 255, 254];
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(binary));
    let seen = mock.last();
    assert_eq!(
        seen.headers["authorization"].to_str().unwrap(),
        format!("Bearer {SECRET}")
    );
    assert!(!seen.all_text().contains(&k));

    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Library(4001),
        reason: "done".into(),
    })))
    .await
    .unwrap();
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Library(4001))
        }
        other => panic!("expected the close frame back, got {other:?}"),
    }

    // A key revoked while its session is open is cut off at its next frame.
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {k}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));
    let (st, _) = s
        .admin(reqwest::Method::POST, &format!("keys/{id}/revoke"), None)
        .await;
    assert_eq!(st, 200);
    let _ = ws.send(Message::text("after")).await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("the session ends");
    assert!(
        !matches!(next, Some(Ok(Message::Text(ref t))) if t.as_str() == "after"),
        "a revoked key's frame reached the provider: {next:?}"
    );
}
