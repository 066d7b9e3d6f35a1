//! `latchkey serve`: wires the store, the vault, the gateway, the admin API and the audit
//! writer together, and runs them until SIGTERM (graceful) or SIGINT (fast).
//!
//! Pingora owns the data-plane threads and the signal handling. The control plane (admin API,
//! audit writer) runs on a small tokio runtime of its own, which outlives Pingora's so the audit
//! batch is flushed after the last proxied request has been logged.

use crate::config::Config;
use anyhow::Context;
use latchkey_gateway::{Gateway, GatewayState};
use latchkey_ops::admin::{self, Control};
use latchkey_ops::audit::{AuditWriter, MAIN_CHAIN};
use latchkey_ops::bootstrap;
use latchkey_ops::cli::ServeArgs;
use latchkey_vault::rootkey::RootKey;
use latchkey_vault::store::{SqliteStore, Store};
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, RunArgs, Server};
use std::sync::Arc;
use std::time::Instant;

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn prepare_data_dir(cfg: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set permissions on {}", cfg.data_dir.display()))?;
    }
    Ok(())
}

/// Delivers alerts to the configured webhook on the control runtime, off the request path.
struct WebhookNotifier {
    hook: latchkey_ops::alerts::Webhook,
    rt: tokio::runtime::Handle,
}

impl latchkey_gateway::velocity::Notifier for WebhookNotifier {
    fn notify(&self, payload: serde_json::Value) {
        let hook = self.hook.clone();
        self.rt.spawn(async move { hook.notify(&payload).await });
    }
}

/// The gateway's circuit breakers as the admin API sees them.
struct CircuitsOf(Arc<GatewayState>);

impl admin::CircuitDesk for CircuitsOf {
    fn list(&self, tenant: &str) -> Vec<serde_json::Value> {
        self.0
            .circuits
            .snapshot(Some(tenant))
            .into_iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect()
    }

    fn reset(&self, tenant: &str, target: &str) -> bool {
        self.0.circuits.reset(tenant, target)
    }
}

/// Runs the server until it is told to stop.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = Config::resolve(&args)?;
    init_logging(cfg.log_json);
    prepare_data_dir(&cfg)?;

    let (root, created) = RootKey::load_or_create(&cfg.data_dir.join("root.key"))?;
    if created {
        tracing::info!(path = %cfg.data_dir.join("root.key").display(), "created a new root key (mode 0600); back it up: without it stored credentials cannot be decrypted");
    }
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&cfg.data_dir.join("latchkey.db")).context("cannot open the database")?,
    );

    let ctl_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("latchkey-ctl")
        .enable_all()
        .build()
        .context("cannot start the control runtime")?;

    let token_file = cfg.data_dir.join("admin-token");
    let (audit, admin_listener) = ctl_rt.block_on(async {
        bootstrap::check_root_key(store.as_ref(), &root).await?;
        if let Some(token) = bootstrap::bootstrap_admin(store.as_ref(), &root, &token_file).await? {
            println!(
                "Bootstrap admin token (shown once; also saved to {}):\n{}",
                token_file.display(),
                token.expose()
            );
        }
        let audit = AuditWriter::start(store.clone(), MAIN_CHAIN).await?;
        let listener = tokio::net::TcpListener::bind(cfg.admin_listen)
            .await
            .with_context(|| format!("cannot listen on admin_listen {}", cfg.admin_listen))?;
        anyhow::Ok((audit, listener))
    })?;
    // Fail with a clear message rather than a Pingora panic when the port is taken. With the
    // PROXY protocol on, the relay keeps this listener and Pingora listens on loopback behind it.
    let public = std::net::TcpListener::bind(cfg.listen)
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let pingora_listen = if cfg.gateway.proxy_protocol {
        let internal = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context(
                "cannot pick a loopback port for the gateway behind the PROXY protocol relay",
            )?;
        public
            .set_nonblocking(true)
            .context("cannot configure the gateway listener")?;
        Some((public, internal))
    } else {
        drop(public);
        None
    };

    let geo = match &cfg.geoip_database {
        Some(path) => {
            let db = Arc::new(
                latchkey_gateway::geo::GeoDb::open(path)
                    .with_context(|| "geoip_database cannot be used")?,
            );
            // The reloader polls the file on the control runtime for the life of the process.
            let _in_ctl = ctl_rt.enter();
            drop(db.spawn_reloader(latchkey_gateway::geo::DEFAULT_RELOAD_INTERVAL));
            tracing::info!(path = %path.display(), "geo database loaded (reloaded when the file changes)");
            Some(db)
        }
        None => None,
    };
    let alerts = match &cfg.alert_webhook {
        Some(url) => Some(
            latchkey_ops::alerts::Webhook::parse(url)
                .map_err(|e| anyhow::anyhow!("alerts.webhook_url: {e}"))?,
        ),
        None => None,
    };
    let notifier: Arc<dyn latchkey_gateway::velocity::Notifier> = match &alerts {
        Some(hook) => Arc::new(WebhookNotifier {
            hook: hook.clone(),
            rt: ctl_rt.handle().clone(),
        }),
        None => Arc::new(latchkey_gateway::velocity::NoNotifier),
    };
    let state = GatewayState::with_extras(
        store.clone(),
        root.clone(),
        Arc::new(audit.clone()),
        cfg.gateway.clone(),
        geo,
        notifier,
    );
    ctl_rt
        .block_on(state.lockdown.reload(store.as_ref()))
        .context("cannot read the lockdown switches")?;
    let control = Arc::new(Control {
        store: store.clone(),
        root,
        audit: Arc::new(audit.clone()),
        listener: state.clone(),
        allow_private_upstreams: cfg.allow_private_upstreams,
        gateway_url: cfg.public_url.clone(),
        store_kind: "sqlite".into(),
        started: Instant::now(),
        alerts,
        holds: state.holds.clone(),
        circuits: Arc::new(CircuitsOf(state.clone())),
    });

    let conf = ServerConf {
        threads: cfg.threads,
        grace_period_seconds: Some(cfg.shutdown_grace_seconds),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let state_for_metrics = state.clone();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(state),
        "latchkey gateway",
    );
    match pingora_listen {
        Some((public, internal)) => {
            proxy.add_tcp(&internal.to_string());
            let peers = state_for_metrics.proxied.clone();
            let trusted = Arc::new(cfg.gateway.trusted_proxies.clone());
            ctl_rt.spawn(async move {
                match tokio::net::TcpListener::from_std(public) {
                    Ok(l) => {
                        latchkey_gateway::proxy_protocol::serve(l, internal, peers, trusted).await
                    }
                    Err(e) => tracing::error!(error = %e, "PROXY protocol listener failed"),
                }
            });
            tracing::info!(public = %cfg.listen, "PROXY protocol on: every connection must start with a PROXY header");
        }
        None => proxy.add_tcp(&cfg.listen.to_string()),
    }
    server.add_service(proxy);

    // Stop the admin API when Pingora starts shutting down.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut phases = server.watch_execution_phase();
    ctl_rt.spawn(async move {
        while let Ok(phase) = phases.recv().await {
            if matches!(
                phase,
                ExecutionPhase::GracefulTerminate | ExecutionPhase::ShutdownStarted
            ) {
                let _ = stop_tx.send(true);
                break;
            }
        }
    });
    let metrics_state = state_for_metrics.clone();
    let app = admin::router(control).route(
        "/metrics",
        axum::routing::get(move || {
            let s = metrics_state.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    s.render_metrics(),
                )
            }
        }),
    );
    let admin_task = ctl_rt.spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(admin_listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin API stopped");
        }
    });

    tracing::info!(gateway = %cfg.listen, admin = %cfg.admin_listen, data_dir = %cfg.data_dir.display(), threads = cfg.threads, "latchkey is serving");
    server.bootstrap();
    server.run(RunArgs::default());

    // Pingora has drained; flush what the last requests logged.
    ctl_rt.block_on(async {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), admin_task).await;
        audit.flush().await;
    });
    tracing::info!("audit flushed; bye");
    Ok(())
}
