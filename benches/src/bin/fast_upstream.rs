//! A minimal, fast HTTP/1.1 keep-alive server used as the upstream in the
//! load harness. Hand-written on plain tokio so that it costs as little CPU
//! per request as possible and never becomes the bottleneck.
//!
//! * reads request heads up to `\r\n\r\n`, skips `Content-Length` and
//!   `Transfer-Encoding: chunked` request bodies (so POSTs work), handles
//!   pipelined requests and answers every request with `200 OK` and a small
//!   fixed JSON body;
//! * `--require-auth VALUE` makes it answer `401` unless the request carries
//!   exactly `Authorization: VALUE`. The harness uses this to prove that the
//!   credential really is injected by the gateway (wrk counts non-2xx).
//! * a request whose (Content-Length) body contains `"stream":true` (or
//!   `"stream": true`), e.g. an OpenAI chat completion with `"stream": true`, is
//!   answered with `text/event-stream` (chunked): `--sse-events N` events
//!   `data: {"choices":[{"delta":{"content":"tok i"}}]}` (default 20), the
//!   first one written together with the response head, the next ones
//!   `--sse-gap-us` apart (default 1000 µs; 0 = all in one write), then
//!   `data: [DONE]`. Used by `sse_ttfb` (time to first byte through a proxy).
//! * `--fail-permille N` answers `500` to N of every 1000 authorized requests,
//!   chosen by a deterministic pseudo-random sequence (a splitmix64 hash of a
//!   global request counter), for the soak run (`benches/soak.sh`).
//!
//! ```text
//! fast_upstream --port 8080 [--addr 127.0.0.1] [--threads 1] [--require-auth 'Bearer sk-…']
//!               [--fail-permille 50] [--sse-events 20] [--sse-gap-us 1000]
//! ```

use std::net::SocketAddr;
use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const OK_BODY: &[u8] =
    br#"{"object":"list","data":[{"id":"bench-model","object":"model","owned_by":"latchkey-bench"}]}"#;
const DENIED_BODY: &[u8] = br#"{"error":{"message":"fast_upstream: wrong or missing Authorization","type":"invalid_request_error"}}"#;
const BAD_REQUEST_BODY: &[u8] = br#"{"error":"bad request"}"#;
const FAIL_BODY: &[u8] =
    br#"{"error":{"message":"fast_upstream: injected failure","type":"server_error"}}"#;

/// Largest request head we accept.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body we buffer before giving up on the connection.
const MAX_BODY: usize = 64 * 1024 * 1024;

struct Responses {
    ok: Vec<u8>,
    ok_close: Vec<u8>,
    denied: Vec<u8>,
    denied_close: Vec<u8>,
    bad_request: Vec<u8>,
    fail: Vec<u8>,
    fail_close: Vec<u8>,
}

/// Behaviour knobs shared by every connection.
struct Config {
    required_auth: Option<Vec<u8>>,
    /// Answer 500 to this many of every 1000 authorized requests.
    fail_permille: u64,
    sse_events: usize,
    sse_gap: Duration,
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// splitmix64: a well-mixed deterministic hash of the request counter.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn inject_failure(permille: u64) -> bool {
    permille > 0 && splitmix64(REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed)) % 1000 < permille
}

fn sse_head(close: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nServer: fast_upstream\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

/// One SSE event as one HTTP chunk.
fn sse_chunk(out: &mut Vec<u8>, data: &str) {
    let event = format!("data: {data}\n\n");
    out.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn sse_event(out: &mut Vec<u8>, i: usize) {
    sse_chunk(
        out,
        &format!(
            r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","model":"bench-model","choices":[{{"index":0,"delta":{{"content":"tok {i}"}},"finish_reason":null}}]}}"#
        ),
    );
}

/// Writes a whole SSE response: head + first event at once, then the rest `gap` apart.
async fn write_sse(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    cfg: &Config,
    close: bool,
) -> std::io::Result<()> {
    out.extend_from_slice(&sse_head(close));
    for i in 0..cfg.sse_events {
        sse_event(out, i);
        if !cfg.sse_gap.is_zero() {
            stream.write_all(out).await?;
            out.clear();
            tokio::time::sleep(cfg.sse_gap).await;
        }
    }
    sse_chunk(out, "[DONE]");
    out.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(out).await?;
    out.clear();
    Ok(())
}

fn response(status: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: fast_upstream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl Responses {
    fn new() -> Self {
        Responses {
            ok: response("200 OK", OK_BODY, false),
            ok_close: response("200 OK", OK_BODY, true),
            denied: response("401 Unauthorized", DENIED_BODY, false),
            denied_close: response("401 Unauthorized", DENIED_BODY, true),
            bad_request: response("400 Bad Request", BAD_REQUEST_BODY, true),
            fail: response("500 Internal Server Error", FAIL_BODY, false),
            fail_close: response("500 Internal Server Error", FAIL_BODY, true),
        }
    }
}

/// Outcome of trying to parse one request from the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Need more bytes.
    Incomplete,
    /// A full request (head and body) of `len` bytes.
    Request {
        len: usize,
        keep_alive: bool,
        authorized: bool,
        /// The body asks for a streamed (SSE) answer.
        stream: bool,
    },
    /// Malformed or oversized; answer 400 and close.
    Bad,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_usize(s: &[u8], radix: u32) -> Option<usize> {
    let s = std::str::from_utf8(trim(s)).ok()?;
    if s.is_empty() {
        return None;
    }
    usize::from_str_radix(s, radix).ok()
}

/// Length of a chunked body starting at `buf[0]`, or `None` if incomplete,
/// `Some(Err)` if malformed.
fn chunked_len(buf: &[u8]) -> Option<Result<usize, ()>> {
    let mut pos = 0;
    loop {
        let line_end = pos + find(&buf[pos..], b"\r\n")?;
        let line = &buf[pos..line_end];
        // Ignore chunk extensions.
        let size_str = line.split(|&b| b == b';').next().unwrap_or(line);
        let Some(size) = parse_usize(size_str, 16) else {
            return Some(Err(()));
        };
        pos = line_end + 2;
        if size == 0 {
            // Trailer section: header lines until an empty line.
            loop {
                let end = pos + find(&buf[pos..], b"\r\n")?;
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Some(Ok(pos));
                }
            }
        }
        if size > MAX_BODY || pos + size > MAX_BODY {
            return Some(Err(()));
        }
        if buf.len() < pos + size + 2 {
            return None;
        }
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Some(Err(()));
        }
        pos += size + 2;
    }
}

fn parse_request(buf: &[u8], required_auth: Option<&[u8]>) -> Parsed {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Parsed::Bad
        } else {
            Parsed::Incomplete
        };
    };
    let head = &buf[..head_end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let http10 = request_line.ends_with(b"HTTP/1.0");

    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut keep_alive = !http10;
    let mut authorized = required_auth.is_none();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parsed::Bad;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            match parse_usize(value, 10) {
                Some(n) if n <= MAX_BODY => content_length = Some(n),
                _ => return Parsed::Bad,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value
                .split(|&b| b == b',')
                .any(|v| trim(v).eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if let Some(required) = required_auth {
            if name.eq_ignore_ascii_case(b"authorization") && value == required {
                authorized = true;
            }
        }
    }

    let body_start = head_end + 4;
    let mut stream = false;
    let len = if chunked {
        match chunked_len(&buf[body_start..]) {
            None => return Parsed::Incomplete,
            Some(Err(())) => return Parsed::Bad,
            Some(Ok(n)) => body_start + n,
        }
    } else {
        let total = body_start + content_length.unwrap_or(0);
        if buf.len() < total {
            return Parsed::Incomplete;
        }
        let body = &buf[body_start..total];
        stream =
            find(body, br#""stream":true"#).is_some() || find(body, br#""stream": true"#).is_some();
        total
    };
    Parsed::Request {
        len,
        keep_alive,
        authorized,
        stream,
    }
}

async fn serve(
    mut stream: TcpStream,
    responses: Arc<Responses>,
    cfg: Arc<Config>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(4 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);

        // Answer every complete (possibly pipelined) request in the buffer.
        let mut consumed = 0;
        let mut close = false;
        loop {
            match parse_request(&buf[consumed..], cfg.required_auth.as_deref()) {
                Parsed::Incomplete => break,
                Parsed::Bad => {
                    out.extend_from_slice(&responses.bad_request);
                    close = true;
                    break;
                }
                Parsed::Request {
                    len,
                    keep_alive,
                    authorized,
                    stream: sse,
                } => {
                    consumed += len;
                    let fail = authorized && inject_failure(cfg.fail_permille);
                    if authorized && !fail && sse {
                        write_sse(&mut stream, &mut out, &cfg, !keep_alive).await?;
                    } else {
                        let resp = match (authorized, fail, keep_alive) {
                            (true, false, true) => &responses.ok,
                            (true, false, false) => &responses.ok_close,
                            (true, true, true) => &responses.fail,
                            (true, true, false) => &responses.fail_close,
                            (false, _, true) => &responses.denied,
                            (false, _, false) => &responses.denied_close,
                        };
                        out.extend_from_slice(resp);
                    }
                    if !keep_alive {
                        close = true;
                        break;
                    }
                }
            }
        }
        buf.drain(..consumed);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}

struct Args {
    addr: SocketAddr,
    threads: usize,
    require_auth: Option<String>,
    fail_permille: u64,
    sse_events: usize,
    sse_gap_us: u64,
}

const USAGE: &str =
    "usage: fast_upstream --port PORT [--addr IP|IP:PORT] [--threads N] [--require-auth VALUE]\n\
    [--fail-permille N] [--sse-events N] [--sse-gap-us US]\n\
    \n  --port          TCP port (default 8080; overrides the port of --addr)\
    \n  --addr          listen IP or IP:PORT (default 127.0.0.1)\
    \n  --threads       tokio worker threads; 1 = current-thread runtime (default 1)\
    \n  --require-auth  answer 401 unless `Authorization: VALUE` is present\
    \n  --fail-permille answer 500 to N of 1000 authorized requests (deterministic; default 0)\
    \n  --sse-events    events in a streamed answer to a body with \"stream\": true (default 20)\
    \n  --sse-gap-us    pause between streamed events, microseconds (default 1000)";

fn die(msg: &str) -> ! {
    eprintln!("fast_upstream: {msg}\n\n{USAGE}");
    exit(2)
}

fn parse_args() -> Args {
    let mut addr: SocketAddr = "127.0.0.1:8080".parse().expect("static address");
    let mut port: Option<u16> = None;
    let mut threads = 1usize;
    let mut require_auth = None;
    let mut fail_permille = 0u64;
    let mut sse_events = 20usize;
    let mut sse_gap_us = 1000u64;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .unwrap_or_else(|| die(&format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--port" => {
                let v = value("--port");
                port = Some(
                    v.parse()
                        .unwrap_or_else(|e| die(&format!("bad --port {v:?}: {e}"))),
                );
            }
            "--addr" => {
                let v = value("--addr");
                addr = match v.parse::<SocketAddr>() {
                    Ok(a) => a,
                    Err(_) => match v.parse::<std::net::IpAddr>() {
                        Ok(ip) => SocketAddr::new(ip, addr.port()),
                        Err(e) => die(&format!("bad --addr {v:?}: {e}")),
                    },
                };
            }
            "--threads" => {
                let v = value("--threads");
                threads = match v.parse() {
                    Ok(n) if n > 0 => n,
                    _ => die(&format!("bad --threads {v:?}")),
                };
            }
            "--require-auth" => require_auth = Some(value("--require-auth")),
            "--fail-permille" => {
                let v = value("--fail-permille");
                fail_permille = match v.parse() {
                    Ok(n) if n <= 1000 => n,
                    _ => die(&format!("bad --fail-permille {v:?} (0..=1000)")),
                };
            }
            "--sse-events" => {
                let v = value("--sse-events");
                sse_events = v
                    .parse()
                    .unwrap_or_else(|_| die(&format!("bad --sse-events {v:?}")));
            }
            "--sse-gap-us" => {
                let v = value("--sse-gap-us");
                sse_gap_us = v
                    .parse()
                    .unwrap_or_else(|_| die(&format!("bad --sse-gap-us {v:?}")));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            other => die(&format!("unknown argument {other:?}")),
        }
    }
    if let Some(p) = port {
        addr.set_port(p);
    }
    Args {
        addr,
        threads,
        require_auth,
        fail_permille,
        sse_events,
        sse_gap_us,
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.addr).await?;
    eprintln!(
        "fast_upstream: listening on http://{} ({} thread{}{}, {} permille injected 500s, SSE {} events {} us apart)",
        listener.local_addr()?,
        args.threads,
        if args.threads == 1 { "" } else { "s" },
        if args.require_auth.is_some() {
            ", Authorization required"
        } else {
            ""
        },
        args.fail_permille,
        args.sse_events,
        args.sse_gap_us,
    );
    let responses = Arc::new(Responses::new());
    let cfg = Arc::new(Config {
        required_auth: args.require_auth.map(String::into_bytes),
        fail_permille: args.fail_permille,
        sse_events: args.sse_events,
        sse_gap: Duration::from_micros(args.sse_gap_us),
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                eprintln!("fast_upstream: accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let responses = responses.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let _ = serve(stream, responses, cfg).await;
        });
    }
}

fn main() {
    let args = parse_args();
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = runtime.unwrap_or_else(|e| die(&format!("cannot start tokio runtime: {e}")));
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("fast_upstream: {e}");
        exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(len: usize, keep_alive: bool, authorized: bool) -> Parsed {
        Parsed::Request {
            len,
            keep_alive,
            authorized,
            stream: false,
        }
    }

    #[test]
    fn detects_stream_requests() {
        let r =
            b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 15\r\n\r\n{\"stream\":true}";
        assert_eq!(
            parse_request(r, None),
            Parsed::Request {
                len: r.len(),
                keep_alive: true,
                authorized: true,
                stream: true
            }
        );
    }

    #[test]
    fn failure_injection_rate() {
        let n = 100_000;
        let fails = (0..n).filter(|_| inject_failure(50)).count();
        assert!((4_500..5_500).contains(&fails), "{fails}");
    }

    #[test]
    fn parses_get_and_pipelining() {
        let one = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse_request(one, None), req(one.len(), true, true));
        let mut two = one.to_vec();
        two.extend_from_slice(one);
        assert_eq!(parse_request(&two, None), req(one.len(), true, true));
        assert_eq!(parse_request(&one[..10], None), Parsed::Incomplete);
    }

    #[test]
    fn parses_content_length_body() {
        let r = b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_request(r, None), req(r.len(), true, true));
        assert_eq!(parse_request(&r[..r.len() - 1], None), Parsed::Incomplete);
    }

    #[test]
    fn parses_chunked_body() {
        let r = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(parse_request(r, None), req(r.len(), true, true));
        assert_eq!(parse_request(&r[..r.len() - 2], None), Parsed::Incomplete);
    }

    #[test]
    fn connection_close_and_http10() {
        let r = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert_eq!(parse_request(r, None), req(r.len(), false, true));
        let r = b"GET / HTTP/1.0\r\n\r\n";
        assert_eq!(parse_request(r, None), req(r.len(), false, true));
    }

    #[test]
    fn checks_authorization() {
        let want: &[u8] = b"Bearer sk-bench-secret";
        let good = b"GET / HTTP/1.1\r\nauthorization: Bearer sk-bench-secret\r\n\r\n";
        assert_eq!(parse_request(good, Some(want)), req(good.len(), true, true));
        let bad = b"GET / HTTP/1.1\r\nAuthorization: Bearer lk_proxy\r\n\r\n";
        assert_eq!(parse_request(bad, Some(want)), req(bad.len(), true, false));
        let none = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(
            parse_request(none, Some(want)),
            req(none.len(), true, false)
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nno colon\r\n\r\n", None),
            Parsed::Bad
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", None),
            Parsed::Bad
        );
    }
}
