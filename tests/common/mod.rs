//! Test harness: the real `latchkey` binary on ephemeral loopback ports, and a mock provider
//! that records exactly what it receives.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

/// A free loopback port (bound and released; good enough on loopback for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `prefix` (e.g. a PROXY protocol header) then `request` on a fresh TCP connection and
/// returns everything the server answered until it closed (empty on connection errors).
pub async fn raw_http(addr: &str, prefix: &[u8], request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut c) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    if c.write_all(prefix).await.is_err() || c.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The Python with the official SDKs (`openai`, `anthropic`, `boto3`) that `.ci/run` prepares
/// in `.venv`. `None` outside CI when `LATCHKEY_TEST_PYTHON` is unset (the SDK tests then skip);
/// in CI a missing Python fails the run.
pub fn python() -> Option<String> {
    match std::env::var("LATCHKEY_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var("CI").is_ok() => {
            panic!("LATCHKEY_TEST_PYTHON must point at the Python with the SDKs in CI")
        }
        _ => None,
    }
}

/// Runs `tests/sdk/{script}` with `args` (no proxy for loopback, no provider key in the
/// environment) and parses the one JSON line it prints; panics with its stderr on failure.
pub async fn run_python(py: &str, script: &str, args: Vec<String>) -> Value {
    let mut cmd = Command::new(py);
    cmd.arg(format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("AWS_PROFILE");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A running `latchkey serve`.
pub struct Server {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub gateway: String,
    pub admin_url: String,
    pub token: String,
    pub http: reqwest::Client,
    pub env: Vec<(String, String)>,
}

pub struct ServerOpts {
    pub allow_private: bool,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            allow_private: true,
            env: vec![],
            args: vec![],
        }
    }
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(ServerOpts::default()).await
    }

    pub async fn start_with(opts: ServerOpts) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut s = Server {
            child: None,
            data_dir,
            dir,
            gateway: String::new(),
            admin_url: String::new(),
            token: String::new(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            env: vec![("LATCHKEY_SHUTDOWN_GRACE_SECONDS".into(), "1".into())],
        };
        if opts.allow_private {
            s.env
                .push(("LATCHKEY_ALLOW_PRIVATE_UPSTREAMS".into(), "1".into()));
        }
        // Later entries win, so a test's own env overrides the defaults above.
        s.env.extend(opts.env.clone());
        s.spawn(&opts.args).await;
        s.token = std::fs::read_to_string(s.data_dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_string();
        s
    }

    /// Starts the process (again) on fresh ports with the same data dir.
    pub async fn spawn(&mut self, extra: &[String]) {
        let child = self.try_spawn(extra);
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let proxy_protocol = self
            .env
            .iter()
            .any(|(k, v)| k == "LATCHKEY_PROXY_PROTOCOL" && v == "1");
        loop {
            if proxy_protocol {
                let addr = self.gateway.trim_start_matches("http://").to_string();
                let resp = raw_http(
                    &addr,
                    b"PROXY UNKNOWN\r\n",
                    "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                )
                .await;
                if resp.starts_with("HTTP/1.1 200") {
                    break;
                }
            } else if let Ok(r) = self
                .http
                .get(format!("{}/healthz", self.gateway))
                .send()
                .await
            {
                if r.status() == 200 {
                    break;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("latchkey exited early ({status}): {}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "latchkey did not start: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The admin API starts alongside; wait for it too.
        for _ in 0..100 {
            if self
                .http
                .get(format!("{}/api/v1/openapi.json", self.admin_url))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Spawns without waiting (for tests that expect startup to fail).
    pub fn try_spawn(&mut self, extra: &[String]) -> Child {
        let gp = free_port();
        let ap = free_port();
        self.gateway = format!("http://127.0.0.1:{gp}");
        self.admin_url = format!("http://127.0.0.1:{ap}");
        self.command(extra).spawn().unwrap()
    }

    /// `latchkey serve` on this server's current ports and data dir, with its environment,
    /// logging to new files in the test dir (e.g. a second process started with `--upgrade`).
    pub fn command(&self, extra: &[String]) -> Command {
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let out = std::fs::File::create(self.dir.path().join(format!("stdout-{n}.log"))).unwrap();
        let err = std::fs::File::create(self.dir.path().join(format!("stderr-{n}.log"))).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.gateway.trim_start_matches("http://"))
            .arg("--admin-listen")
            .arg(self.admin_url.trim_start_matches("http://"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(extra)
            .env_remove("LATCHKEY_ROOT_KEY")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Everything the server wrote to stdout and stderr so far.
    pub fn logs(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "log") {
                all.extend(std::fs::read(&p).unwrap());
            }
        }
        all
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.logs()).into_owned()
    }

    /// SIGTERM and wait for exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1/{}", self.admin_url, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// Points a provider at a mock.
    pub async fn point(&self, provider: &str, base_url: &str) {
        let (st, v) = self
            .admin(
                Method::PATCH,
                &format!("providers/{provider}"),
                Some(serde_json::json!({"base_url": base_url})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }

    pub async fn connect(&self, provider: &str, secret: &str, workloads: &[&str]) -> String {
        let (st, v) = self
            .admin(
                Method::POST,
                "credentials",
                Some(serde_json::json!({"provider": provider, "value": secret, "label": "test", "workloads": workloads})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Creates a key; returns (id, key).
    pub async fn key(&self, body: Value) -> (String, String) {
        let (st, v) = self.admin(Method::POST, "keys", Some(body)).await;
        assert_eq!(st, 201, "{v}");
        (
            v["id"].as_str().unwrap().into(),
            v["key"].as_str().unwrap().into(),
        )
    }

    /// Runs the CLI against this server with an isolated CLI config.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(args)
            .env("LATCHKEY_CLI_CONFIG", self.dir.path().join("cli.json"))
            .env_remove("LATCHKEY_ADMIN_URL")
            .env_remove("LATCHKEY_ADMIN_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("latchkey.db")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every file under `dir`, recursively, as bytes.
pub fn all_file_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// One request as the mock provider saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// Everything a provider could see, as text, for "the proxy key never arrives" checks.
    pub fn all_text(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.uri);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        s.push_str(&String::from_utf8_lossy(&self.body));
        s
    }
}

/// A mock provider.
#[derive(Clone)]
pub struct Mock {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Released by the test to let `/stream` send its remaining events.
    pub release: Arc<Notify>,
}

impl Mock {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("mock saw a request")
    }

    /// Routes: `/stream` (SSE: one event, then waits for `release`, then two more),
    /// `/slow` (answers after 1.5 s), `/hang` (answers after 30 s), `/status/NNN` (answers
    /// NNN), `/broken-stream` (one SSE event, then the connection breaks), `/echo` (returns the
    /// request body), anything else: JSON describing the request.
    pub async fn start() -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = Mock {
            addr: listener.local_addr().unwrap(),
            seen: Arc::new(Mutex::new(Vec::new())),
            release: Arc::new(Notify::new()),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(mock.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        mock
    }
}

async fn handle(State(mock): State<Mock>, req: Request<Body>) -> Response {
    let (mut parts, body) = req.into_parts();
    if parts.uri.path().ends_with("/ws-echo") {
        return ws_echo(mock, &mut parts).await;
    }
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap();
    mock.seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let path = parts.uri.path().to_string();
    if path.ends_with("/stream") {
        let release = mock.release.clone();
        let stream = async_stream(release);
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    if let Some(code) = path
        .rsplit_once("/status/")
        .and_then(|(_, c)| c.parse::<u16>().ok())
    {
        return Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"error":{"message":"mock failure"}}"#))
            .unwrap();
    }
    if let Some((_, dialect)) = path.rsplit_once("/ratelimit-headers/") {
        // Canned rate-limit headers in each provider's own dialect.
        let reset = (chrono::Utc::now() + chrono::Duration::seconds(30))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let headers: Vec<(&str, String)> = match dialect {
            "openai" => vec![
                ("x-ratelimit-limit-requests", "500".into()),
                ("x-ratelimit-remaining-requests", "499".into()),
                ("x-ratelimit-reset-requests", "120ms".into()),
                ("x-ratelimit-limit-tokens", "30000".into()),
                ("x-ratelimit-remaining-tokens", "29000".into()),
                ("x-ratelimit-reset-tokens", "2s".into()),
            ],
            "anthropic" => vec![
                ("anthropic-ratelimit-requests-limit", "50".into()),
                ("anthropic-ratelimit-requests-remaining", "49".into()),
                ("anthropic-ratelimit-requests-reset", reset.clone()),
                ("anthropic-ratelimit-tokens-limit", "40000".into()),
                ("anthropic-ratelimit-tokens-remaining", "39000".into()),
                ("anthropic-ratelimit-tokens-reset", reset),
            ],
            "github" => vec![
                ("x-ratelimit-limit", "5000".into()),
                ("x-ratelimit-remaining", "4999".into()),
                ("x-ratelimit-used", "1".into()),
                (
                    "x-ratelimit-reset",
                    (chrono::Utc::now().timestamp() + 60).to_string(),
                ),
                ("x-ratelimit-resource", "core".into()),
            ],
            _ => vec![],
        };
        let mut r = Response::builder().header("content-type", "application/json");
        for (k, v) in headers {
            r = r.header(k, v);
        }
        return r.body(Body::from("{}")).unwrap();
    }
    if path.ends_with("/leak") || path.ends_with("/leak-stream") {
        // A provider that echoes the key it was given, like a real one's error messages.
        let auth = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_start_matches("Bearer ")
            .to_string();
        let masked = format!(
            "{}{}{}",
            &auth[..auth.len().min(8)],
            "*".repeat(20),
            &auth[auth.len().saturating_sub(4)..]
        );
        let text = format!(
            "{{\"error\":{{\"message\":\"Incorrect API key provided: {auth}. Yours: {masked}\",\"type\":\"invalid_request_error\"}}}}"
        );
        if path.ends_with("/leak-stream") {
            let sse = format!("data: {text}\n\ndata: [DONE]\n\n");
            let pieces: Vec<Result<Bytes, std::io::Error>> = sse
                .into_bytes()
                .chunks(7)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let stream = futures::StreamExt::then(futures::stream::iter(pieces), |p| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                p
            });
            return Response::builder()
                .header("content-type", "text/event-stream")
                .header("x-debug-key", auth)
                .body(Body::from_stream(stream))
                .unwrap();
        }
        return Response::builder()
            .status(401)
            .header("content-type", "application/json")
            .header("x-debug-key", auth)
            .body(Body::from(text))
            .unwrap();
    }
    if path.ends_with("/hang") {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    if path.ends_with("/broken-stream") {
        // One event, then the connection breaks before the stream's end.
        let stream = futures::stream::unfold(0u8, |state| async move {
            match state {
                0 => Some((Ok(Bytes::from_static(b"data: {\"partial\":true}\n\n")), 1)),
                1 => {
                    // Long enough for the first event to reach the client.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Some((Err(std::io::Error::other("upstream died")), 2))
                }
                _ => None,
            }
        });
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    if path.ends_with("/echo") {
        return Response::builder()
            .header("content-type", "application/octet-stream")
            .body(Body::from(body))
            .unwrap();
    }
    if path.ends_with("/v1/messages") {
        // Anthropic's Messages API, plain and streamed.
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if v["stream"] == serde_json::json!(true) {
            let events = [
                (
                    "message_start",
                    serde_json::json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":v["model"],"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}),
                ),
                (
                    "content_block_start",
                    serde_json::json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                ),
                (
                    "content_block_delta",
                    serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}),
                ),
                (
                    "content_block_delta",
                    serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" from mock"}}),
                ),
                (
                    "content_block_stop",
                    serde_json::json!({"type":"content_block_stop","index":0}),
                ),
                (
                    "message_delta",
                    serde_json::json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":4}}),
                ),
                ("message_stop", serde_json::json!({"type":"message_stop"})),
            ];
            let mut out = String::new();
            for (name, data) in events {
                out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
            }
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(out))
                .unwrap();
        }
        let resp = serde_json::json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": v["model"],
            "content": [{"type": "text", "text": "Hello from mock"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 9, "output_tokens": 4}
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(resp.to_string()))
            .unwrap();
    }
    if path.ends_with("/chat/completions") {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        // Test knobs: `x-mock-usage: IN,OUT` (reported usage, default 3,3), `x-mock-delay-ms`
        // (answer late), `x-mock-fragment: N` (stream in N-byte pieces, splitting lines and
        // JSON anywhere).
        let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
        let (inp, outp) = header("x-mock-usage")
            .and_then(|u| u.split_once(','))
            .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
            .unwrap_or((3, 3));
        let usage = serde_json::json!({"prompt_tokens": inp, "completion_tokens": outp, "total_tokens": inp + outp});
        if let Some(ms) = header("x-mock-delay-ms").and_then(|d| d.parse::<u64>().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if v["stream"] == serde_json::json!(true) {
            let mut out = String::new();
            for word in ["Hello", " from", " mock"] {
                let chunk = serde_json::json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":word},"finish_reason":null}],"usage":null});
                out.push_str(&format!("data: {chunk}\n\n"));
            }
            if v["stream_options"]["include_usage"] == serde_json::json!(true) {
                let chunk = serde_json::json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage": usage});
                out.push_str(&format!("data: {chunk}\n\n"));
            }
            out.push_str("data: [DONE]\n\n");
            let body = match header("x-mock-fragment").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n > 0 => {
                    let pieces: Vec<Result<Bytes, std::io::Error>> = out
                        .into_bytes()
                        .chunks(n)
                        .map(|c| Ok(Bytes::copy_from_slice(c)))
                        .collect();
                    let stream =
                        futures::StreamExt::then(futures::stream::iter(pieces), |p| async move {
                            // A pause per piece so the gateway really sees them one by one.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            p
                        });
                    Body::from_stream(stream)
                }
                _ => Body::from(out),
            };
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap();
        }
        let resp = serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": v["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from mock"}, "finish_reason": "stop"}],
            "usage": usage
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(resp.to_string()))
            .unwrap();
    }
    let v = serde_json::json!({"path": path, "query": parts.uri.query(), "len": body.len()});
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

/// `/ws-echo`: a WebSocket that echoes text and binary frames, and answers a close with the
/// same code. The upgrade request is recorded like any other.
async fn ws_echo(mock: Mock, parts: &mut axum::http::request::Parts) -> Response {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::extract::FromRequestParts;
    mock.seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
        body: Bytes::new(),
    });
    let ws = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => return axum::response::IntoResponse::into_response(rejection),
    };
    ws.on_upgrade(|mut socket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                // The WebSocket library answers a close with the same code by itself; keep
                // reading so that answer is flushed before the connection ends.
                Message::Close(_) => continue,
                Message::Ping(_) | Message::Pong(_) => continue,
                other => other,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

fn async_stream(
    release: Arc<Notify>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(0u8, move |state| {
        let release = release.clone();
        async move {
            match state {
                0 => Some((Ok(Bytes::from_static(b"data: first\n\n")), 1)),
                1 => {
                    release.notified().await;
                    Some((Ok(Bytes::from_static(b"data: second\n\n")), 2))
                }
                2 => Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), 3)),
                _ => None,
            }
        }
    })
}
