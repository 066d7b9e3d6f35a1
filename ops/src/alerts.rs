//! Outbound alerts: a webhook that receives security events (a key auto-suspended after a
//! velocity spike, …).
//!
//! The payload is a Slack incoming-webhook compatible JSON object: a human-readable `text` plus
//! the event's own structured fields, so the same URL can point at Slack, Mattermost, a
//! SIEM or a custom receiver. Delivery is best-effort: one attempt with a 5 second timeout;
//! failures are logged and never propagated, so alerting can never break the caller.

use reqwest::Url;
use serde_json::{Map, Value};
use std::time::Duration;

/// Timeout of one delivery attempt.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A webhook receiving alert events.
#[derive(Clone)]
pub struct Webhook {
    /// Where events are POSTed.
    pub url: Url,
    http: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    // Webhook URLs often embed a token (Slack's do): print only scheme and host.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Webhook({}://{}/…)",
            self.url.scheme(),
            self.url.host_str().unwrap_or("")
        )
    }
}

/// A webhook URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("webhook URL must be an absolute http(s) URL")]
pub struct WebhookUrlError;

impl Webhook {
    /// A webhook posting to `url` (http or https).
    pub fn new(url: Url) -> Result<Self, WebhookUrlError> {
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(WebhookUrlError);
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .map_err(|_| WebhookUrlError)?;
        Ok(Webhook { url, http })
    }

    /// Parses `url` and builds a webhook.
    pub fn parse(url: &str) -> Result<Self, WebhookUrlError> {
        Self::new(Url::parse(url.trim()).map_err(|_| WebhookUrlError)?)
    }

    /// Sends `event` (a JSON object; other values are wrapped as `{"event": …}`). Never fails:
    /// errors and non-2xx answers are logged.
    pub async fn notify(&self, event: &Value) {
        let body = payload(event);
        match self.http.post(self.url.clone()).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(status = r.status().as_u16(), webhook = ?self, "alert webhook refused the event")
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), webhook = ?self, "alert webhook delivery failed")
            }
        }
    }
}

/// The delivered body: the event's fields plus `text` (kept if the event has one).
pub fn payload(event: &Value) -> Value {
    let mut obj = match event {
        Value::Object(o) => o.clone(),
        other => {
            let mut m = Map::new();
            m.insert("event".into(), other.clone());
            m
        }
    };
    if !obj.get("text").is_some_and(Value::is_string) {
        let text = summary(&obj);
        obj.insert("text".into(), Value::String(text));
    }
    Value::Object(obj)
}

/// `Latchkey: velocity on key key_… (tenant default): key suspended` from the usual fields.
fn summary(obj: &Map<String, Value>) -> String {
    let field = |k: &str| obj.get(k).and_then(Value::as_str);
    let mut text = String::from("Latchkey alert");
    if let Some(kind) = field("kind").or_else(|| field("action")) {
        text.push_str(": ");
        text.push_str(kind);
    }
    if let Some(key) = field("key_id") {
        text.push_str(&format!(" on key {key}"));
    }
    if let Some(t) = field("tenant") {
        text.push_str(&format!(" (tenant {t})"));
    }
    if let Some(m) = field("message").or_else(|| field("summary")) {
        text.push_str(": ");
        text.push_str(m);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    #[test]
    fn payload_has_text_and_the_structured_fields() {
        let p = payload(&json!({
            "kind": "velocity", "tenant": "default", "key_id": "key_1",
            "message": "key suspended", "observed": 11, "limit": 10
        }));
        assert_eq!(
            p["text"],
            "Latchkey alert: velocity on key key_1 (tenant default): key suspended"
        );
        assert_eq!(p["observed"], 11);
        assert_eq!(payload(&json!({"text": "hi"}))["text"], "hi");
        assert_eq!(payload(&json!(5))["event"], 5);
        assert_eq!(payload(&json!(5))["text"], "Latchkey alert");
    }

    #[test]
    fn only_http_urls_and_debug_hides_the_path() {
        assert!(Webhook::parse("ftp://x/y").is_err());
        assert!(Webhook::parse("not a url").is_err());
        let w = Webhook::parse("https://hooks.example.com/services/T000/SECRET").unwrap();
        assert!(!format!("{w:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn delivers_and_never_fails() {
        let got: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let w = Webhook::parse(&format!("http://{addr}/hook")).unwrap();
        w.notify(&json!({"kind": "velocity", "key_id": "key_9"}))
            .await;
        let seen = got.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["key_id"], "key_9");
        assert!(seen[0]["text"].as_str().unwrap().contains("velocity"));
        // A 404 and a closed port are logged, not returned.
        Webhook::parse(&format!("http://{addr}/missing"))
            .unwrap()
            .notify(&json!({}))
            .await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let started = std::time::Instant::now();
        Webhook::parse(&format!("http://127.0.0.1:{port}/x"))
            .unwrap()
            .notify(&json!({}))
            .await;
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1));
    }
}
