//! `latchkey serve`: wires the store, the vault, the gateway, the admin API and the audit
//! writer together, and runs them until SIGTERM (graceful), SIGQUIT (hand over to a new process,
//! then graceful) or SIGINT (fast); see [`crate::lifecycle`].
//!
//! Pingora owns the data-plane threads and the listening sockets. The control plane (admin API,
//! audit writer) runs on a small tokio runtime of its own, which outlives Pingora's so the audit
//! batch is flushed after the last proxied request has been logged.

use crate::config::Config;
use crate::lifecycle::{self, ControlSockets, Lifecycle};
use anyhow::Context;
use latchkey_gateway::{Gateway, GatewayState};
use latchkey_ops::admin::{self, Control};
use latchkey_ops::audit::{AuditWriter, MAIN_CHAIN};
use latchkey_ops::bootstrap;
use latchkey_ops::cli::ServeArgs;
use latchkey_vault::rootkey::RootKey;
use latchkey_vault::store::{SqliteStore, Store};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{ExecutionPhase, RunArgs, Server};
use std::sync::Arc;
use std::time::Instant;

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,latchkey::access=off"));
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
    // `--upgrade`: the running process keeps serving until this one is ready to take over.
    let predecessor = if args.upgrade {
        Some(lifecycle::running_server(&cfg.data_dir)?)
    } else {
        None
    };

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
    // Both processes serve for a moment during an upgrade, and a chain has one writer: the new
    // process starts a chain of its own (`audit verify` checks every chain).
    let chain = match predecessor {
        Some(_) => format!(
            "{MAIN_CHAIN}-{}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            std::process::id()
        ),
        None => MAIN_CHAIN.to_string(),
    };
    let (audit, admin_listener) = ctl_rt.block_on(async {
        bootstrap::check_root_key(store.as_ref(), &root).await?;
        if let Some(token) = bootstrap::bootstrap_admin(store.as_ref(), &root, &token_file).await? {
            println!(
                "Bootstrap admin token (shown once; also saved to {}):\n{}",
                token_file.display(),
                token.expose()
            );
        }
        let audit = AuditWriter::start(store.clone(), &chain).await?;
        // An upgrade inherits the listeners from the running process instead.
        let listener = match predecessor {
            Some(_) => None,
            None => {
                let bound = lifecycle::bind_listener(cfg.admin_listen);
                let what = || format!("cannot listen on admin_listen {}", cfg.admin_listen);
                Some(bound.with_context(what)?)
            }
        };
        anyhow::Ok((audit, listener))
    })?;
    // The gateway's listener is bound here, so a taken port fails with a clear message rather
    // than a Pingora panic, and handed to Pingora; when upgrading, the running process hands it
    // over instead. With the PROXY protocol on, the relay keeps this listener and Pingora
    // listens on loopback behind it.
    let public = match predecessor {
        Some(_) => None,
        None => {
            let _in_rt = ctl_rt.enter();
            Some(
                lifecycle::bind_listener(cfg.listen)
                    .with_context(|| format!("cannot listen on {}", cfg.listen))?,
            )
        }
    };
    let behind_relay = if cfg.gateway.proxy_protocol {
        // Non-blocking, as tokio requires of a listener it is handed.
        let internal = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .context("cannot listen on loopback for the gateway behind the PROXY protocol relay")?;
        Some(internal)
    } else {
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
        upgrade_sock: cfg.upgrade_socket.to_string_lossy().into_owned(),
        ..Default::default()
    };
    let opt = Opt {
        upgrade: predecessor.is_some(),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    let state_for_metrics = state.clone();
    let life = Lifecycle::new(
        state.clone(),
        std::time::Duration::from_secs(cfg.shutdown_delay_seconds),
    );
    let mut proxy = pingora::services::listening::Service::new(
        "latchkey gateway".to_string(),
        lifecycle::Lingering::new(
            pingora::proxy::http_proxy(&server.configuration, Gateway::new(state)),
            std::time::Duration::from_millis(500)
                .min(std::time::Duration::from_secs(cfg.shutdown_grace_seconds)),
        ),
    );
    // The admin API's and the relay's listeners travel with Pingora's on upgrades.
    let mut sockets = ControlSockets::new();
    let admin_rx = sockets.want("admin", cfg.admin_listen, admin_listener);
    match behind_relay {
        Some(internal) => {
            let internal_addr = internal
                .local_addr()
                .context("cannot read the loopback gateway address")?;
            proxy.add_tcp(&internal_addr.to_string());
            sockets.pingora_listener(internal_addr.to_string(), internal);
            let relay_rx = sockets.want("relay", cfg.listen, public);
            let peers = state_for_metrics.proxied.clone();
            let trusted = Arc::new(cfg.gateway.trusted_proxies.clone());
            let stopped = life.stopped();
            ctl_rt.spawn(async move {
                let listener = match relay_rx.await {
                    Ok(Ok(l)) => tokio::net::TcpListener::from_std(l),
                    Ok(Err(e)) => Err(e),
                    Err(_) => return,
                };
                match listener {
                    Ok(l) => tokio::select! {
                        // Connections already relayed keep going; new ones go to the next
                        // process (upgrade) or nowhere (shutdown).
                        _ = latchkey_gateway::proxy_protocol::serve(l, internal_addr, peers, trusted) => {}
                        _ = stopped => {}
                    },
                    Err(e) => tracing::error!(error = %e, "PROXY protocol listener failed"),
                }
            });
            tracing::info!(public = %cfg.listen, "PROXY protocol on: every connection must start with a PROXY header");
        }
        None => {
            proxy.add_tcp(&cfg.listen.to_string());
            if let Some(public) = public {
                sockets.pingora_listener(cfg.listen.to_string(), public);
            }
        }
    }
    let sockets = server.add_service(sockets);
    let proxy = server.add_service(proxy);
    proxy.add_dependency(&sockets);

    // Drain when Pingora starts shutting down; stop the admin API and the relay once the
    // sockets are handed over (upgrade) or the listeners close (shutdown).
    let mut phases = server.watch_execution_phase();
    let life_phases = life.clone();
    ctl_rt.spawn(async move {
        while let Ok(phase) = phases.recv().await {
            match phase {
                ExecutionPhase::GracefulUpgradeTransferringFds => life_phases.drain(),
                ExecutionPhase::GracefulUpgradeCloseTimeout
                | ExecutionPhase::GracefulTerminate
                | ExecutionPhase::ShutdownStarted => {
                    life_phases.stop_control();
                    break;
                }
                _ => {}
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
    let stopped = life.stopped();
    let life_admin = life.clone();
    let admin_task = ctl_rt.spawn(async move {
        let listener = match admin_rx.await {
            Ok(Ok(l)) => tokio::net::TcpListener::from_std(l),
            Ok(Err(e)) => Err(e),
            Err(_) => return,
        };
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin API cannot listen");
                return;
            }
        };
        // Stop accepting first; close idle connections a moment later, so a connection
        // accepted just before still gets its answer.
        let listener = lifecycle::UntilStopped::new(listener, life_admin.stopped());
        let shutdown = async move {
            stopped.await;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin API stopped");
        }
    });

    let signals = life
        .signals(&ctl_rt)
        .context("cannot install signal handlers")?;
    if let Some(pid) = predecessor {
        lifecycle::signal_when_listening(pid, &cfg.upgrade_socket);
        tracing::info!(pid, socket = %cfg.upgrade_socket.display(), "taking over from the running process");
    }
    // Upgrading: returns once the running process has handed over its listening sockets. If none
    // arrive within about 6 s, Pingora exits this process (docs/operations.md, limits).
    server.bootstrap();
    if let Err(e) = lifecycle::write_pid_file(&cfg.data_dir) {
        tracing::warn!(error = %e, "cannot write the pid file; `serve --upgrade` will not find this process");
    }
    lifecycle::sd_notify(&format!("MAINPID={}\nREADY=1", std::process::id()));
    tracing::info!(gateway = %cfg.listen, admin = %cfg.admin_listen, data_dir = %cfg.data_dir.display(), threads = cfg.threads, audit_chain = %chain, "latchkey is serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });

    // Pingora has drained; flush what the last requests logged.
    ctl_rt.block_on(async {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), admin_task).await;
        audit.flush().await;
    });
    lifecycle::remove_pid_file(&cfg.data_dir);
    tracing::info!("audit flushed; bye");
    Ok(())
}
