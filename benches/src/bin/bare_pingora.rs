//! Bare Pingora passthrough proxy: the baseline Latchkey is compared against.
//!
//! Every request is forwarded, unchanged, over plain HTTP to a single fixed
//! upstream socket address. No filters, no header rewriting, no logging: this
//! is the cheapest thing a `ProxyHttp` implementation can do, so the gap
//! between this and Latchkey is the cost of Latchkey's own work.
//!
//! ```text
//! bare_pingora --listen 127.0.0.1:6190 --upstream 127.0.0.1:8080 --threads 1
//! ```

use std::net::SocketAddr;
use std::process::exit;

use async_trait::async_trait;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;

struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

struct Args {
    listen: String,
    upstream: SocketAddr,
    threads: usize,
}

const USAGE: &str = "usage: bare_pingora --upstream HOST:PORT [--listen HOST:PORT] [--threads N]\n\
    \n  --upstream  plain-HTTP upstream socket address (required)\
    \n  --listen    address to listen on (default 127.0.0.1:6190)\
    \n  --threads   Pingora worker threads for the proxy service (default 1)";

fn die(msg: &str) -> ! {
    eprintln!("bare_pingora: {msg}\n\n{USAGE}");
    exit(2)
}

fn parse_args() -> Args {
    let mut listen = "127.0.0.1:6190".to_string();
    let mut upstream: Option<SocketAddr> = None;
    let mut threads = 1usize;
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
            "--listen" => listen = value("--listen"),
            "--upstream" => {
                let v = value("--upstream");
                upstream = Some(
                    v.parse()
                        .unwrap_or_else(|e| die(&format!("bad --upstream {v:?}: {e}"))),
                );
            }
            "--threads" => {
                let v = value("--threads");
                threads = match v.parse() {
                    Ok(n) if n > 0 => n,
                    _ => die(&format!("bad --threads {v:?}")),
                };
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            other => die(&format!("unknown argument {other:?}")),
        }
    }
    let upstream = upstream.unwrap_or_else(|| die("--upstream is required"));
    if let Err(e) = listen.parse::<SocketAddr>() {
        die(&format!("bad --listen {listen:?}: {e}"));
    }
    Args {
        listen,
        upstream,
        threads,
    }
}

fn main() {
    let args = parse_args();

    let port = args.listen.rsplit(':').next().unwrap_or("0").to_string();
    let conf = ServerConf {
        threads: args.threads,
        // Keep these per-instance so a bare proxy never collides with
        // another Pingora process (e.g. Latchkey) on the same machine.
        pid_file: format!("/tmp/bare_pingora.{port}.pid"),
        upgrade_sock: format!("/tmp/bare_pingora.{port}.upgrade.sock"),
        // Exit promptly on SIGTERM: nothing here needs draining.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };

    let mut server = Server::new_with_opt_and_conf(None::<Opt>, conf);
    server.bootstrap();

    let mut proxy = http_proxy_service(
        &server.configuration,
        Passthrough {
            upstream: args.upstream,
        },
    );
    proxy.add_tcp(&args.listen);
    server.add_service(proxy);

    eprintln!(
        "bare_pingora: listening on {} -> http://{} ({} thread{})",
        args.listen,
        args.upstream,
        args.threads,
        if args.threads == 1 { "" } else { "s" }
    );
    server.run_forever();
}
