//! End-to-end: zero-downtime upgrades under steady load (`serve --upgrade`, then SIGUSR2 as
//! `systemctl reload` sends it), and SIGTERM draining in-flight requests.

mod common;

use common::{Mock, Server, ServerOpts};
use serde_json::json;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "sk-test-UpgradeMockSecret0001";

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Waits for a child of this test to exit.
async fn wait_exit(mut child: Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {within:?}", child.id());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Gone, or a zombie nobody reaps (a process started by SIGUSR2 is not this test's child).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

fn pid_in_file(s: &Server) -> u32 {
    std::fs::read_to_string(s.data_dir.join("latchkey.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Kills a process that is not this test's child if the test ends early.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Steady load: loops sending requests through the gateway, half on keep-alive connections
/// (one shared pool) and half on a fresh connection per request.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    closes: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(gateway: &str, key: &str, loops: usize) -> Load {
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicU64::new(0)),
            closes: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(Mutex::new(Vec::new())),
            tasks: Vec::new(),
        };
        let keep_alive = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..loops {
            let client = if i.is_multiple_of(2) {
                keep_alive.clone()
            } else {
                // No idle connections kept: every request opens a new one.
                reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(0)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap()
            };
            let (stop, ok, closes, failures) = (
                load.stop.clone(),
                load.ok.clone(),
                load.closes.clone(),
                load.failures.clone(),
            );
            let (gateway, key) = (gateway.to_string(), key.to_string());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let req = if n.is_multiple_of(2) {
                        client
                            .post(format!("{gateway}/proxy/openai/v1/chat/completions"))
                            .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
                    } else {
                        client.get(format!("{gateway}/proxy/openai/v1/models"))
                    };
                    match req.bearer_auth(&key).send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            if r.headers().get("connection").is_some_and(|v| v == "close") {
                                closes.fetch_add(1, Ordering::Relaxed);
                            }
                            match r.bytes().await {
                                Ok(_) if status == 200 => {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(body) => failures.lock().unwrap().push(format!(
                                    "status {status}: {}",
                                    String::from_utf8_lossy(&body)
                                )),
                                Err(e) => failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("body: {e:?}")),
                            }
                        }
                        Err(e) => failures.lock().unwrap().push(format!(
                            "send ({}, at {:?}): {e:?}",
                            if i.is_multiple_of(2) { "keep-alive" } else { "fresh" },
                            std::time::SystemTime::now()
                        )),
                    }
                    // Steady, not saturating: leave CPU for the processes being swapped.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
        Load { tasks, ..load }
    }

    async fn stop(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.closes.load(Ordering::Relaxed),
            failures,
        )
    }
}

/// Polls `/readyz` on fresh connections until stopped; returns (ready, draining, other answers).
fn watch_readyz(
    gateway: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u32, u32, Vec<String>)> {
    let url = format!("{gateway}/readyz");
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let (mut ready, mut draining, mut other) = (0, 0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match client.get(&url).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap_or_default();
                    match status {
                        200 => ready += 1,
                        503 if body.contains("draining") => draining += 1,
                        _ => other.push(format!("{status} {body}")),
                    }
                }
                Err(e) => other.push(format!("{e:?}")),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (ready, draining, other)
    })
}

/// Calls the admin API on fresh connections until stopped; returns (answered, failures).
fn watch_admin(s: &Server, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u32, Vec<String>)> {
    let (url, token) = (format!("{}/api/v1/status", s.admin_url), s.token.clone());
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let (mut ok, mut failed) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match client.get(&url).bearer_auth(&token).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) => failed.push(format!("status {}", r.status())),
                Err(e) => failed.push(format!("{e:?}")),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ok, failed)
    })
}

fn proxied_requests_audited(s: &Server) -> (u64, Vec<String>) {
    let db = rusqlite::Connection::open(s.db_path()).unwrap();
    let n: u64 = db
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE json_extract(event, '$.action') = 'proxy.request'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut st = db
        .prepare("SELECT DISTINCT chain FROM audit ORDER BY chain")
        .unwrap();
    let chains = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (n, chains)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_downtime_upgrades_under_steady_load() {
    let mock = Mock::start().await;
    // Stands in for systemd's notification socket (Type=notify).
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let mut s = Server::start_with(ServerOpts {
        env: vec![
            // Request-level debug logs would dominate the run.
            ("RUST_LOG".into(), "info".into()),
            ("NOTIFY_SOCKET".into(), notify_path.to_str().unwrap().into()),
        ],
        ..Default::default()
    })
    .await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (_, key) = s
        .key(json!({"name": "load", "providers": ["openai"]}))
        .await;
    let first = s.child.as_ref().unwrap().id();
    assert_eq!(pid_in_file(&s), first);

    let load = Load::start(&s.gateway, &key, 8);
    let readyz_stop = Arc::new(AtomicBool::new(false));
    let readyz = watch_readyz(&s.gateway, readyz_stop.clone());
    let admin = watch_admin(&s, readyz_stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. An operator starts the new binary with --upgrade; it takes the sockets over and the
    //    running process drains and exits.
    let before = load.ok.load(Ordering::Relaxed);
    let old = s.child.take().unwrap();
    let upgraded = s.command(&["--upgrade".into()]).spawn().unwrap();
    let second = upgraded.id();
    s.child = Some(upgraded);
    let t = Instant::now();
    let st = wait_exit(old, Duration::from_secs(20)).await;
    assert!(st.success(), "old process: {st}\n{}", s.stderr());
    let first_handover = t.elapsed();
    assert_eq!(pid_in_file(&s), second);
    let during_first = load.ok.load(Ordering::Relaxed) - before;

    // 2. SIGUSR2 (systemd's ExecReload): the running process starts its successor itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = load.ok.load(Ordering::Relaxed);
    let old = s.child.take().unwrap();
    signal(second, "USR2");
    let t = Instant::now();
    let st = wait_exit(old, Duration::from_secs(20)).await;
    assert!(st.success(), "second process: {st}\n{}", s.stderr());
    let second_handover = t.elapsed();
    let third = pid_in_file(&s);
    let _guard = KillOnDrop(Some(third));
    assert!(
        third != second && !exited(third),
        "no successor after SIGUSR2"
    );
    let during_second = load.ok.load(Ordering::Relaxed) - before;

    tokio::time::sleep(Duration::from_millis(500)).await;
    readyz_stop.store(true, Ordering::Relaxed);
    let (ok, closes, failures) = load.stop().await;
    let (ready, draining, odd) = readyz.await.unwrap();
    let (admin_ok, admin_failed) = admin.await.unwrap();
    eprintln!(
        "requests: {ok} ok ({during_first} during the first handover of {first_handover:?}, \
         {during_second} during the second of {second_handover:?}), {} failed, {closes} answered \
         with Connection: close; /readyz: {ready} ready, {draining} draining, {} other; \
         admin API: {admin_ok} answered, {} failed",
        failures.len(),
        odd.len(),
        admin_failed.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}\n{}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(5)],
        s.stderr()
    );
    assert!(odd.is_empty(), "/readyz: {odd:?}");
    assert!(admin_failed.is_empty(), "admin API: {admin_failed:?}");
    assert!(during_first > 100 && during_second > 100, "too little load");

    // The newest process serves the admin API on the same address; the audit log verifies.
    let (st, v) = s.admin(reqwest::Method::GET, "status", None).await;
    assert_eq!(st, 200, "{v}");
    let token = s.data_dir.join("admin-token");
    let login = s.cli(
        &[
            "login",
            "--url",
            &s.admin_url,
            "--token-file",
            token.to_str().unwrap(),
        ],
        None,
    );
    assert!(login.status.success(), "{login:?}");
    let out = s.cli(&["audit", "verify"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches(": OK").count(), 3, "{text}");

    // Every proxied request was audited exactly once, across the three processes.
    signal(third, "TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !exited(third) {
        assert!(Instant::now() < deadline, "last process did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (audited, chains) = proxied_requests_audited(&s);
    assert_eq!(audited, ok, "chains: {chains:?}");
    assert_eq!(chains.len(), 3, "{chains:?}");
    assert!(chains.contains(&"main".to_string()), "{chains:?}");

    // What systemd was told: each process became the main one once it held the sockets, and
    // only the last one (stopped for good) announced that it was stopping.
    let mut told = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = notify.recv(&mut buf) {
        told.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let expected: Vec<String> = [first, second, third]
        .iter()
        .map(|pid| format!("MAINPID={pid}\nREADY=1"))
        .chain(["STOPPING=1".to_string()])
        .collect();
    assert_eq!(told, expected);
}

#[tokio::test]
async fn a_failed_upgrade_leaves_the_running_process_serving() {
    let mut s = Server::start().await;
    let running = s.child.as_ref().unwrap().id();
    // The new binary cannot start (here: a bad setting); the running process is never asked to
    // hand over.
    let out = s
        .command(&["--upgrade".into()])
        .env("LATCHKEY_TRUSTED_PROXIES", "not-an-ip")
        .status()
        .unwrap();
    assert!(!out.success());
    assert!(s.stderr().contains("trusted_proxies"), "{}", s.stderr());
    let r = s
        .http
        .get(format!("{}/readyz", s.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the running process must not drain");
    assert_eq!(pid_in_file(&s), running);

    // Nothing to take over from: refused with a clear message.
    assert!(s.stop().success());
    assert!(
        !s.data_dir.join("latchkey.pid").exists(),
        "pid file left behind"
    );
    let st = s.command(&["--upgrade".into()]).status().unwrap();
    assert!(!st.success());
    assert!(s.stderr().contains("no running latchkey"), "{}", s.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readyz_then_drains_in_flight_requests() {
    let mock = Mock::start().await;
    let mut s = Server::start_with(ServerOpts {
        env: vec![
            ("LATCHKEY_SHUTDOWN_DELAY_SECONDS".into(), "2".into()),
            ("LATCHKEY_SHUTDOWN_GRACE_SECONDS".into(), "3".into()),
        ],
        ..Default::default()
    })
    .await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (_, key) = s
        .key(json!({"name": "slow", "providers": ["openai"]}))
        .await;
    let r = s
        .http
        .get(format!("{}/readyz", s.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A slow request (3 s at the provider) is in flight when SIGTERM arrives: it outlives the
    // 2 s delay, so it finishes after the listener closed, within the 3 s grace period.
    let slow = {
        let (http, url, key) = (
            s.http.clone(),
            format!("{}/proxy/openai/v1/chat/completions", s.gateway),
            key.clone(),
        );
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("x-mock-delay-ms", "3000")
                .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        })
    };
    while mock.count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut child = s.child.take().unwrap();
    signal(child.id(), "TERM");
    let t = Instant::now();

    // During shutdown_delay_seconds the gateway still serves, but says it is draining.
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut draining = false;
    while !draining && t.elapsed() < Duration::from_millis(1500) {
        let r = fresh
            .get(format!("{}/readyz", s.gateway))
            .send()
            .await
            .unwrap();
        draining = r.status() == 503 && r.text().await.unwrap().contains("\"draining\"");
    }
    assert!(draining, "/readyz did not report draining");
    let r = fresh
        .get(format!("{}/healthz", s.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "still alive while draining");
    let r = s
        .http
        .get(format!("{}/proxy/openai/v1/models", s.gateway))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "still serving during the delay");
    assert_eq!(
        r.headers().get("connection").map(|v| v.to_str().unwrap()),
        Some("close"),
        "a draining process must not keep connections alive"
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the checks took too long"
    );

    // Then the listener closes, while the slow request still runs.
    let mut refused = false;
    while !refused && t.elapsed() < Duration::from_secs(4) {
        refused = fresh
            .get(format!("{}/healthz", s.gateway))
            .send()
            .await
            .is_err();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the listener did not close after the delay");
    assert!(!slow.is_finished(), "the slow request ended early");

    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from mock"), "{body}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before the request completed"
    );
    let st = wait_exit(child, Duration::from_secs(10)).await;
    assert!(st.success(), "{st}\n{}", s.stderr());
    // Both requests were audited before the process exited.
    let (audited, _) = proxied_requests_audited(&s);
    assert_eq!(audited, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_hands_over_the_proxy_protocol_relay() {
    let mock = Mock::start().await;
    let mut s = Server::start_with(ServerOpts {
        env: vec![
            ("LATCHKEY_PROXY_PROTOCOL".into(), "1".into()),
            ("RUST_LOG".into(), "info".into()),
        ],
        ..Default::default()
    })
    .await;
    s.point("openai", &mock.url()).await;
    s.connect("openai", SECRET, &[]).await;
    let (_, key) = s
        .key(json!({"name": "relayed", "providers": ["openai"]}))
        .await;
    let addr = s.gateway.trim_start_matches("http://").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..3)
        .map(|_| {
            let (addr, key, stop) = (addr.clone(), key.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, Vec::new());
                let request = format!(
                    "GET /proxy/openai/v1/models HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
                );
                while !stop.load(Ordering::Relaxed) {
                    let resp = common::raw_http(&addr, b"PROXY UNKNOWN\r\n", &request).await;
                    if resp.starts_with("HTTP/1.1 200") {
                        ok += 1;
                    } else {
                        failed.push(resp.lines().next().unwrap_or("(nothing)").to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let old = s.child.take().unwrap();
    s.child = Some(s.command(&["--upgrade".into()]).spawn().unwrap());
    let st = wait_exit(old, Duration::from_secs(20)).await;
    assert!(st.success(), "old process: {st}\n{}", s.stderr());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for l in loops {
        let (o, f) = l.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    eprintln!("relayed requests: {ok} ok, {} failed", failed.len());
    assert!(failed.is_empty(), "{failed:?}\n{}", s.stderr());
    assert!(ok > 100, "too little load");
    let stderr = s.stderr();
    assert!(
        stderr.contains("took over the listening socket from the previous process")
            && stderr.contains("latchkey-relay@"),
        "the relay listener was not handed over"
    );
}
