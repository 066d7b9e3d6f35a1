//! A small HTTP/1.1 keep-alive load generator for what wrk cannot measure:
//!
//! * **time to first byte** of a streamed (SSE, chunked) response: per request it
//!   records the time from writing the request to the first byte of response body
//!   data (not the head: a proxy that sent the head early but held the first event
//!   back would still count), and the time to the end of the response;
//! * **fixed request rate** (`--rate R`, open-ish loop): each connection sends on
//!   its own schedule (R/conns per second, connections staggered), so the offered
//!   load does not drop when the server slows down; a connection that falls behind
//!   sends at once until it is back on schedule (latency is measured from the
//!   actual send, and the achieved rate is reported);
//! * **per-interval reports** (`--interval S`) with error counts and RSS of a
//!   watched process (`--watch-pid PID`, VmRSS from /proc/PID/status), for soaks.
//!
//! All latencies start when the request is written: the TCP connect of a fresh
//! connection (after an error or a close-delimited response) is not included.
//!
//! Without `--rate` it is closed-loop like wrk: every connection sends its next
//! request as soon as the previous response has ended.
//!
//! Output: one `INTERVAL ...` line per interval (if `--interval`) and one final
//! `RESULT ...` line, `key=value` separated by spaces; latencies in microseconds.
//! A response with neither Content-Length nor chunked framing is read until the
//! server closes the connection (HTTP/1.1 close-delimited body), then the
//! connection is re-opened; `connects` counts the TCP connections opened.
//! Status classes: `ok` (2xx), `s5xx`, `sother`; `errors` are connection-level
//! failures (connect, reset, timeout, malformed response), after which the
//! connection is re-opened.
//!
//! ```text
//! http_load --url http://127.0.0.1:8080/v1/chat/completions [--method POST]
//!           [--body-file F] [--header 'K: V']... [--conns 16] [--duration 10]
//!           [--rate 0] [--interval 0] [--watch-pid PID] [--timeout 5]
//! ```

use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Default, Clone)]
struct Stats {
    ok: u64,
    s5xx: u64,
    sother: u64,
    errors: u64,
    connects: u64,
    ttfb_us: Vec<u32>,
    total_us: Vec<u32>,
}

impl Stats {
    fn merge(&mut self, o: &mut Stats) {
        self.ok += o.ok;
        self.s5xx += o.s5xx;
        self.sother += o.sother;
        self.errors += o.errors;
        self.connects += o.connects;
        self.ttfb_us.append(&mut o.ttfb_us);
        self.total_us.append(&mut o.total_us);
        o.ok = 0;
        o.s5xx = 0;
        o.sother = 0;
        o.errors = 0;
        o.connects = 0;
    }
    fn requests(&self) -> u64 {
        self.ok + self.s5xx + self.sother
    }
}

fn pct(v: &mut [u32], p: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let idx = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[idx.clamp(1, v.len()) - 1]
}

fn rss_kb(pid: Option<u32>) -> String {
    let Some(pid) = pid else { return "-".into() };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "gone".into())
}

fn summary(s: &mut Stats, secs: f64) -> String {
    let mut t = std::mem::take(&mut s.ttfb_us);
    let mut a = std::mem::take(&mut s.total_us);
    let req = s.requests();
    format!(
        "requests={} rps={:.0} ok={} s5xx={} sother={} errors={} connects={} err_pct={:.3} s5xx_pct={:.3} ttfb_p50_us={} ttfb_p99_us={} ttfb_p999_us={} total_p50_us={} total_p99_us={} total_p999_us={} total_max_us={}",
        req,
        req as f64 / secs,
        s.ok,
        s.s5xx,
        s.sother,
        s.errors,
        s.connects,
        100.0 * (s.s5xx + s.sother + s.errors) as f64 / (req + s.errors).max(1) as f64,
        100.0 * s.s5xx as f64 / req.max(1) as f64,
        pct(&mut t, 50.0),
        pct(&mut t, 99.0),
        pct(&mut t, 99.9),
        pct(&mut a, 50.0),
        pct(&mut a, 99.0),
        pct(&mut a, 99.9),
        a.last().copied().unwrap_or(0),
    )
}

struct Target {
    host_port: String,
    request: Vec<u8>,
}

/// Incremental response parse over the bytes received so far.
enum Progress {
    Incomplete {
        first_body_byte: bool,
    },
    /// Neither Content-Length nor chunked: the body ends when the server closes.
    UntilClose {
        first_body_byte: bool,
        status: u16,
    },
    Done {
        status: u16,
        close: bool,
        len: usize,
    },
    Bad,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn progress(buf: &[u8]) -> Progress {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Progress::Incomplete {
            first_body_byte: false,
        };
    };
    let head = &buf[..head_end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = match std::str::from_utf8(status_line)
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
    {
        Some(s) => s,
        None => return Progress::Bad,
    };
    let mut cl: Option<usize> = None;
    let mut chunked = false;
    let mut close = status_line.starts_with(b"HTTP/1.0");
    for l in lines {
        let Some(c) = l.iter().position(|&b| b == b':') else {
            continue;
        };
        let (n, v) = (
            &l[..c],
            String::from_utf8_lossy(&l[c + 1..])
                .trim()
                .to_ascii_lowercase(),
        );
        if n.eq_ignore_ascii_case(b"content-length") {
            cl = v.parse().ok();
        } else if n.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = v.contains("chunked");
        } else if n.eq_ignore_ascii_case(b"connection") && v.contains("close") {
            close = true;
        }
    }
    let body = &buf[head_end + 4..];
    if chunked {
        let mut pos = 0;
        let mut first = false;
        loop {
            let Some(le) = find(&body[pos..], b"\r\n") else {
                return Progress::Incomplete {
                    first_body_byte: first,
                };
            };
            let line = &body[pos..pos + le];
            let sz = line.split(|&b| b == b';').next().unwrap_or(line);
            let Some(size) = std::str::from_utf8(sz)
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            else {
                return Progress::Bad;
            };
            pos += le + 2;
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let Some(e) = find(&body[pos..], b"\r\n") else {
                        return Progress::Incomplete {
                            first_body_byte: first,
                        };
                    };
                    pos += e + 2;
                    if e == 0 {
                        return Progress::Done {
                            status,
                            close,
                            len: head_end + 4 + pos,
                        };
                    }
                }
            }
            if body.len() > pos {
                first = true;
            }
            if body.len() < pos + size + 2 {
                return Progress::Incomplete {
                    first_body_byte: first,
                };
            }
            pos += size + 2;
        }
    } else if let Some(n) = cl {
        if body.len() >= n {
            Progress::Done {
                status,
                close,
                len: head_end + 4 + n,
            }
        } else {
            Progress::Incomplete {
                first_body_byte: !body.is_empty(),
            }
        }
    } else if status == 204 || status == 304 {
        Progress::Done {
            status,
            close,
            len: head_end + 4,
        }
    } else {
        Progress::UntilClose {
            first_body_byte: !body.is_empty(),
            status,
        }
    }
}

/// One request on an open connection. Ok((status, close, ttfb, total)).
async fn one(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
    target: &Target,
    timeout: Duration,
) -> Result<(u16, bool, Duration, Duration), ()> {
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::from_std(t0 + timeout);
    stream.write_all(&target.request).await.map_err(|_| ())?;
    buf.clear();
    let mut ttfb: Option<Duration> = None;
    let mut until_close: Option<u16> = None;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(chunk)).await {
            Ok(Ok(0)) => {
                if let Some(status) = until_close {
                    let total = t0.elapsed();
                    return Ok((status, true, ttfb.unwrap_or(total), total));
                }
                return Err(());
            }
            Ok(Err(_)) | Err(_) => return Err(()),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        match progress(buf) {
            Progress::Bad => return Err(()),
            Progress::Incomplete { first_body_byte } => {
                if first_body_byte && ttfb.is_none() {
                    ttfb = Some(t0.elapsed());
                }
            }
            Progress::UntilClose {
                first_body_byte,
                status,
            } => {
                until_close = Some(status);
                if first_body_byte && ttfb.is_none() {
                    ttfb = Some(t0.elapsed());
                }
            }
            Progress::Done { status, close, len } => {
                let total = t0.elapsed();
                if len != buf.len() {
                    return Err(()); // unsolicited bytes
                }
                return Ok((status, close, ttfb.unwrap_or(total), total));
            }
        }
    }
}

async fn conn_loop(
    id: usize,
    args: Arc<Args>,
    target: Arc<Target>,
    stats: Arc<Mutex<Stats>>,
    stop: Arc<AtomicBool>,
    start: Instant,
) {
    let mut local = Stats::default();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut conn: Option<TcpStream> = None;
    let period = if args.rate > 0.0 {
        Some(Duration::from_secs_f64(args.conns as f64 / args.rate))
    } else {
        None
    };
    let mut next = start
        + period
            .map(|p| p.mul_f64(id as f64 / args.conns as f64))
            .unwrap_or_default();
    let mut last_flush = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(p) = period {
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
            next += p;
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        if conn.is_none() {
            match tokio::time::timeout(args.timeout, TcpStream::connect(&target.host_port)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    local.connects += 1;
                    conn = Some(s);
                }
                _ => {
                    local.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = conn.as_mut().expect("connected");
        match one(s, &mut buf, &mut chunk, &target, args.timeout).await {
            Ok((status, close, ttfb, total)) => {
                match status {
                    200..=299 => local.ok += 1,
                    500..=599 => local.s5xx += 1,
                    _ => local.sother += 1,
                }
                local
                    .ttfb_us
                    .push(ttfb.as_micros().min(u32::MAX as u128) as u32);
                local
                    .total_us
                    .push(total.as_micros().min(u32::MAX as u128) as u32);
                if close {
                    conn = None;
                }
            }
            Err(()) => {
                if !stop.load(Ordering::Relaxed) {
                    local.errors += 1;
                    if local.errors == 1 && std::env::var_os("HTTP_LOAD_DEBUG").is_some() {
                        eprintln!(
                            "http_load: connection {id}: first error; received so far: {:?}",
                            String::from_utf8_lossy(&buf)
                        );
                    }
                }
                conn = None;
            }
        }
        if last_flush.elapsed() > Duration::from_millis(200) {
            stats.lock().expect("stats").merge(&mut local);
            last_flush = Instant::now();
        }
    }
    stats.lock().expect("stats").merge(&mut local);
}

struct Args {
    url: String,
    method: String,
    body: Vec<u8>,
    headers: Vec<String>,
    conns: usize,
    duration: f64,
    rate: f64,
    interval: f64,
    watch_pid: Option<u32>,
    timeout: Duration,
}

const USAGE: &str = "usage: http_load --url http://HOST:PORT/PATH [--method GET] [--body-file F]\n\
    [--header 'K: V']... [--conns 16] [--duration 10] [--rate 0] [--interval 0]\n\
    [--watch-pid PID] [--timeout 5]\n\
    \n  --rate      total requests per second, spread over the connections (0 = closed loop)\
    \n  --interval  print an INTERVAL line every S seconds (0 = only the final RESULT)\
    \n  --watch-pid report VmRSS (kB) of PID in every line";

fn die(msg: &str) -> ! {
    eprintln!("http_load: {msg}\n\n{USAGE}");
    exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        method: "GET".into(),
        body: Vec::new(),
        headers: Vec::new(),
        conns: 16,
        duration: 10.0,
        rate: 0.0,
        interval: 0.0,
        watch_pid: None,
        timeout: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut v = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> T {
            v.parse()
                .unwrap_or_else(|_| die(&format!("bad {flag} {v:?}")))
        }
        match flag.as_str() {
            "--url" => a.url = v(),
            "--method" => a.method = v(),
            "--body-file" => {
                let p = v();
                a.body = std::fs::read(&p).unwrap_or_else(|e| die(&format!("{p}: {e}")));
            }
            "--header" => a.headers.push(v()),
            "--conns" => a.conns = num(&flag, v()),
            "--duration" => a.duration = num(&flag, v()),
            "--rate" => a.rate = num(&flag, v()),
            "--interval" => a.interval = num(&flag, v()),
            "--watch-pid" => a.watch_pid = Some(num(&flag, v())),
            "--timeout" => a.timeout = Duration::from_secs_f64(num(&flag, v())),
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            other => die(&format!("unknown argument {other:?}")),
        }
    }
    if a.url.is_empty() {
        die("--url is required");
    }
    if a.conns == 0 {
        die("--conns must be > 0");
    }
    a
}

fn build_target(a: &Args) -> Target {
    let rest = a
        .url
        .strip_prefix("http://")
        .unwrap_or_else(|| die("only http:// URLs are supported"));
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut req = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", a.method, path, host_port);
    for h in &a.headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !a.body.is_empty() || a.method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", a.body.len()));
    }
    req.push_str("\r\n");
    let mut request = req.into_bytes();
    request.extend_from_slice(&a.body);
    Target {
        host_port: host_port.to_string(),
        request,
    }
}

fn main() {
    let args = Arc::new(parse_args());
    let target = Arc::new(build_target(&args));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&format!("tokio: {e}")));
    rt.block_on(async move {
        let stats = Arc::new(Mutex::new(Stats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for id in 0..args.conns {
            tasks.push(tokio::spawn(conn_loop(
                id,
                args.clone(),
                target.clone(),
                stats.clone(),
                stop.clone(),
                start,
            )));
        }
        let end = start + Duration::from_secs_f64(args.duration);
        let mut total = Stats::default();
        if args.interval > 0.0 {
            let mut n = 0u64;
            let mut last = start;
            loop {
                let next =
                    (start + Duration::from_secs_f64(args.interval * (n + 1) as f64)).min(end);
                tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
                n += 1;
                let mut iv = std::mem::take(&mut *stats.lock().expect("stats"));
                let secs = next.duration_since(last).as_secs_f64();
                last = next;
                // Keep the samples for the final RESULT as well.
                let mut copy = iv.clone();
                total.merge(&mut copy);
                println!(
                    "INTERVAL n={} t_s={:.0} rss_kb={} {}",
                    n,
                    next.duration_since(start).as_secs_f64(),
                    rss_kb(args.watch_pid),
                    summary(&mut iv, secs)
                );
                if next >= end {
                    break;
                }
            }
        } else {
            tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
        }
        stop.store(true, Ordering::Relaxed);
        // Give in-flight requests up to the timeout to finish; their samples count.
        let _ = tokio::time::timeout(args.timeout + Duration::from_secs(1), async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
        let mut rest = std::mem::take(&mut *stats.lock().expect("stats"));
        total.merge(&mut rest);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "RESULT conns={} rate={} duration_s={:.1} rss_kb={} {}",
            args.conns,
            args.rate,
            secs,
            rss_kb(args.watch_pid),
            summary(&mut total, secs)
        );
    });
}
