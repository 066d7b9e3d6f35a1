//! A small blocking client for the admin API.

use super::state::CliState;
use anyhow::{anyhow, bail, Context};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// An authenticated admin API client.
pub struct Admin {
    url: String,
    token: String,
    http: Client,
}

impl Admin {
    /// Uses `LATCHKEY_ADMIN_URL`/`LATCHKEY_ADMIN_TOKEN`, else the stored login.
    pub fn from_env_or_login(state: &CliState) -> anyhow::Result<Self> {
        let url = std::env::var("LATCHKEY_ADMIN_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| state.url.clone());
        let token = std::env::var("LATCHKEY_ADMIN_TOKEN")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| state.token.clone());
        match (url, token) {
            (Some(url), Some(token)) => Self::new(&url, &token),
            _ => bail!("not logged in: run `latchkey login --url http://127.0.0.1:8081 --token-file latchkey-data/admin-token`"),
        }
    }

    /// A client for `url` with `token`.
    pub fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build HTTP client")?;
        Ok(Admin {
            url: url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            http,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1/{}", self.url, path))
            .bearer_auth(&self.token)
    }

    /// Sends a request and returns the JSON body, turning API errors into readable errors.
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().map_err(|e| {
            anyhow!(
                "cannot reach the admin API at {}: {}",
                self.url,
                e.without_url()
            )
        })?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let code = json["error"]["code"].as_str().unwrap_or("error");
        let message = json["error"]["message"].as_str().unwrap_or(text.as_str());
        bail!("{message} ({code}, HTTP {})", status.as_u16())
    }

    /// GET.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None)
    }

    /// POST.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body))
    }

    /// PATCH.
    pub fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::PATCH, path, Some(body))
    }

    /// PUT.
    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::PUT, path, Some(body))
    }

    /// DELETE.
    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::DELETE, path, None)
    }
}
