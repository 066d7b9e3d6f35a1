//! The process around Pingora: signals (drain, upgrade, re-exec), the listeners Pingora does not
//! own (admin API, PROXY protocol relay) carried across upgrades, the pid file and systemd
//! notifications.
//!
//! Signals:
//! - `SIGTERM`: `/readyz` answers 503 and responses carry `Connection: close`; after
//!   `shutdown_delay_seconds` the listeners close and in-flight requests get
//!   `shutdown_grace_seconds` to finish.
//! - `SIGQUIT`: hand the listening sockets to a new process waiting on the upgrade socket (Pingora's
//!   zero-downtime upgrade), then drain like `SIGTERM`. `serve --upgrade` sends it itself.
//! - `SIGUSR2`: start the binary found at this process's `argv[0]` as `serve … --upgrade`, which
//!   takes over. This is what `systemctl reload` sends.
//! - `SIGINT`: stop at once.
//!
//! Upgrades hand over every listening socket through Pingora's fd table: the gateway's own, and the
//! admin API's and PROXY protocol relay's, which [`ControlSockets`] registers there under names of
//! their own. The new process accepts from the very same sockets, so no connection is refused or
//! reset during the handover.

use async_trait::async_trait;
use latchkey_gateway::GatewayState;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::{ListenFds, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Binds a listening TCP socket with a deep backlog (connections wait there while a new process
/// takes over). Must be called inside a tokio runtime; returns a non-blocking std listener.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)?.into_std()
}

/// One listener that is not Pingora's but must survive upgrades.
struct Wanted {
    /// Its name in Pingora's fd table.
    key: String,
    addr: SocketAddr,
    /// Bound before start (a fresh start fails early and clearly when the port is taken).
    prebound: Option<TcpListener>,
    tx: Option<oneshot::Sender<std::io::Result<TcpListener>>>,
}

/// A Pingora service that owns no traffic: it puts the admin and relay listeners into Pingora's
/// fd table (or takes them from it after an upgrade) so they travel with the gateway's own
/// sockets, and hands the gateway's listener (the public one, or the one behind the PROXY
/// protocol relay) to Pingora already bound. The gateway service depends on it.
pub struct ControlSockets {
    wanted: Vec<Wanted>,
    pingora: Option<(String, TcpListener)>,
}

/// Receives a listener once Pingora has started [`ControlSockets`].
pub type ListenerRx = oneshot::Receiver<std::io::Result<TcpListener>>;

impl ControlSockets {
    pub fn new() -> Self {
        ControlSockets {
            wanted: Vec::new(),
            pingora: None,
        }
    }

    /// Asks for a listener on `addr`, named `name` in the fd table.
    pub fn want(
        &mut self,
        name: &str,
        addr: SocketAddr,
        prebound: Option<TcpListener>,
    ) -> ListenerRx {
        let (tx, rx) = oneshot::channel();
        self.wanted.push(Wanted {
            key: format!("latchkey-{name}@{addr}"),
            addr,
            prebound,
            tx: Some(tx),
        });
        rx
    }

    /// Gives Pingora `listener` (non-blocking, as tokio requires) for its address `key` (the
    /// string passed to `add_tcp`).
    pub fn pingora_listener(&mut self, key: String, listener: TcpListener) {
        self.pingora = Some((key, listener));
    }

    fn take_or_bind(table: Option<&ListenFds>, w: &mut Wanted) -> std::io::Result<TcpListener> {
        let inherited = table.and_then(|t| t.lock().get(&w.key).copied());
        let listener = match inherited {
            Some(fd) => {
                // SAFETY: the table keeps the descriptors it received open for the life of the
                // process (they are only closed by `close_own` below, after this clone).
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                let l = TcpListener::from(fd.try_clone_to_owned()?);
                tracing::info!(addr = %w.addr, listener = %w.key, "took over the listening socket from the previous process");
                l
            }
            None => {
                let l = match w.prebound.take() {
                    Some(l) => l,
                    None => bind_listener(w.addr)?,
                };
                // The table holds its own descriptor (close-on-exec), sent on the next upgrade.
                if let Some(t) = table {
                    let copy = l.try_clone()?;
                    t.lock().add(w.key.clone(), copy.into_raw_fd());
                }
                l
            }
        };
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    /// Closes the table's copies of our listeners: once the server shuts down they have been
    /// handed over (upgrade) or must stop queueing connections nobody will accept (terminate).
    fn close_own(&self, table: &ListenFds) {
        let ours: HashSet<&str> = self.wanted.iter().map(|w| w.key.as_str()).collect();
        let mut t = table.lock();
        let (keys, _) = t.serialize();
        let keep: HashSet<String> = keys
            .into_iter()
            .filter(|k| !ours.contains(k.as_str()))
            .collect();
        t.close_unclaimed(&keep);
    }
}

#[async_trait]
impl ServiceWithDependents for ControlSockets {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        for w in &mut self.wanted {
            let got = Self::take_or_bind(fds.as_ref(), w);
            if let Err(e) = &got {
                tracing::error!(addr = %w.addr, error = %e, "cannot listen");
            }
            if let Some(tx) = w.tx.take() {
                let _ = tx.send(got);
            }
        }
        if let (Some((key, listener)), Some(table)) = (self.pingora.take(), fds.as_ref()) {
            // Pingora takes this descriptor over (it finds its address in the table).
            table.lock().add(key, listener.into_raw_fd());
        }
        ready.notify_ready();
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        if let Some(table) = &fds {
            self.close_own(table);
        }
    }

    fn name(&self) -> &str {
        "latchkey sockets"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.wanted.iter().map(|w| w.key.clone()).collect())
    }
}

/// The gateway's Pingora app with its shutdown cleanup deferred by `linger`.
///
/// When Pingora stops accepting it runs the app's cleanup at once, which closes every connection
/// still waiting for a request, including one accepted an instant before whose request is
/// still on its way: that client would see its connection closed without an answer. Waiting a
/// moment lets such requests arrive and be answered (with `Connection: close`).
pub struct Lingering<A> {
    inner: Arc<A>,
    linger: Duration,
}

impl<A> Lingering<A> {
    pub fn new(inner: A, linger: Duration) -> Self {
        Lingering {
            inner: Arc::new(inner),
            linger,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Lingering<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(self.linger).await;
        self.inner.cleanup().await
    }
}

/// The admin API's listener: stops handing out connections once `stopped` resolves (the socket
/// itself stays open for the process taking over).
pub struct UntilStopped {
    inner: tokio::net::TcpListener,
    stopped: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    done: bool,
}

impl UntilStopped {
    pub fn new(
        inner: tokio::net::TcpListener,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        UntilStopped {
            inner,
            stopped: Box::pin(stopped),
            done: false,
        }
    }
}

impl axum::serve::Listener for UntilStopped {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        if !self.done {
            tokio::select! {
                biased;
                _ = &mut self.stopped => self.done = true,
                conn = axum::serve::Listener::accept(&mut self.inner) => return conn,
            }
        }
        std::future::pending().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// What the process is doing about its own end.
pub struct Lifecycle {
    state: Arc<GatewayState>,
    /// Becomes true when the admin API and the relay stop accepting.
    stop: watch::Sender<bool>,
    shutdown_delay: Duration,
    /// The process started by SIGUSR2, while it has not taken over.
    upgrading: Mutex<Option<u32>>,
}

impl Lifecycle {
    pub fn new(state: Arc<GatewayState>, shutdown_delay: Duration) -> Arc<Self> {
        Arc::new(Lifecycle {
            state,
            stop: watch::channel(false).0,
            shutdown_delay,
            upgrading: Mutex::new(None),
        })
    }

    /// Resolves when the admin API and the relay must stop accepting.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// `/readyz` fails and responses close their connections from now on.
    pub fn drain(&self) {
        if !self.state.draining.swap(true, Ordering::Relaxed) {
            tracing::info!("draining: /readyz answers 503, responses close their connections");
        }
    }

    /// Stops the admin API and the relay (their sockets stay open for a new process).
    pub fn stop_control(&self) {
        self.drain();
        self.stop.send_replace(true);
    }

    fn draining(&self) -> bool {
        self.state.draining.load(Ordering::Relaxed)
    }

    /// Installs the signal handlers on the control runtime (so a signal during startup is not
    /// lost) and returns what Pingora's main loop waits on.
    pub fn signals(self: &Arc<Self>, rt: &tokio::runtime::Runtime) -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_rt = rt.enter();
        let mut quit = signal(SignalKind::quit())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let (tx, rx) = mpsc::unbounded_channel();
        let life = self.clone();
        rt.spawn(async move {
            loop {
                let what = tokio::select! {
                    _ = quit.recv() => {
                        tracing::info!("SIGQUIT: handing the listening sockets to the new process, then draining");
                        life.drain();
                        ShutdownSignal::GracefulUpgrade
                    }
                    _ = term.recv() => {
                        life.drain();
                        sd_notify("STOPPING=1");
                        if life.shutdown_delay.is_zero() {
                            ShutdownSignal::GracefulTerminate
                        } else {
                            tracing::info!(seconds = life.shutdown_delay.as_secs(), "SIGTERM: still serving while load balancers see /readyz fail");
                            tokio::select! {
                                _ = tokio::time::sleep(life.shutdown_delay) => ShutdownSignal::GracefulTerminate,
                                _ = int.recv() => ShutdownSignal::FastShutdown,
                            }
                        }
                    }
                    _ = int.recv() => ShutdownSignal::FastShutdown,
                    _ = usr2.recv() => {
                        life.reexec();
                        continue;
                    }
                };
                if matches!(what, ShutdownSignal::GracefulTerminate) {
                    tracing::info!("SIGTERM: closing the listeners; in-flight requests finish");
                    life.stop_control();
                }
                let _ = tx.send(what);
                // Pingora acts on the first signal only. Later ones stay handled (tokio never
                // restores the default action), so they are ignored rather than fatal.
                break;
            }
        });
        Ok(Signals {
            rx: tokio::sync::Mutex::new(rx),
        })
    }

    /// SIGUSR2: starts `argv[0] argv[1..] --upgrade`, which takes over from this process.
    fn reexec(self: &Arc<Self>) {
        if self.draining() {
            tracing::warn!("SIGUSR2 ignored: this process is already draining");
            return;
        }
        let mut slot = self.upgrading.lock().unwrap();
        if let Some(pid) = *slot {
            tracing::warn!(pid, "SIGUSR2 ignored: an upgrade is already under way");
            return;
        }
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if args.is_empty() {
            tracing::error!("SIGUSR2: cannot tell how this process was started");
            return;
        }
        let program = args.remove(0);
        if !args.iter().any(|a| a == "--upgrade") {
            args.push("--upgrade".into());
        }
        let mut child = match std::process::Command::new(&program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(program = %Path::new(&program).display(), error = %e, "SIGUSR2: cannot start the new process; still serving");
                return;
            }
        };
        let pid = child.id();
        *slot = Some(pid);
        drop(slot);
        tracing::info!(pid, program = %Path::new(&program).display(), "SIGUSR2: started a new process to take over");
        let life = self.clone();
        std::thread::spawn(move || {
            // Returns only if the new process ends while this one still runs: it failed.
            let status = child.wait();
            *life.upgrading.lock().unwrap() = None;
            if !life.draining() {
                tracing::error!(pid, status = ?status, "the new process exited before taking over; still serving");
            }
        });
    }
}

/// Pingora's shutdown signal, fed by the handlers of [`Lifecycle::signals`].
pub struct Signals {
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<ShutdownSignal>>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        self.rx
            .lock()
            .await
            .recv()
            .await
            .unwrap_or(ShutdownSignal::FastShutdown)
    }
}

/// The pid file: `latchkey.pid` in the data dir, naming the process that serves it.
pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("latchkey.pid")
}

/// Records this process as the one serving the data dir.
pub fn write_pid_file(data_dir: &Path) -> std::io::Result<()> {
    let path = pid_file(data_dir);
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, &path)
}

/// Removes the pid file if it still names this process (after an upgrade it names the new one).
pub fn remove_pid_file(data_dir: &Path) {
    let path = pid_file(data_dir);
    if read_pid(&path) == Some(std::process::id()) {
        let _ = std::fs::remove_file(&path);
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The `latchkey serve` process named by the pid file, checked to be alive and to be one.
pub fn running_server(data_dir: &Path) -> anyhow::Result<u32> {
    let path = pid_file(data_dir);
    let Some(pid) = read_pid(&path) else {
        anyhow::bail!(
            "--upgrade: no running latchkey found ({} is missing); start without --upgrade",
            path.display()
        );
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let serves = cmdline.split(|b| *b == 0).any(|arg| arg == b"serve");
    if pid == std::process::id() || !serves {
        anyhow::bail!(
            "--upgrade: process {pid} named by {} is not a running `latchkey serve`; start without --upgrade",
            path.display()
        );
    }
    Ok(pid)
}

/// Sends SIGQUIT to the running process once Pingora listens on the upgrade socket (the old
/// process sends its sockets there). Called just before `Server::bootstrap`, which binds it.
pub fn signal_when_listening(pid: u32, socket: &Path) {
    // A socket left by an earlier attempt would make the old process try too early.
    let _ = std::fs::remove_file(socket);
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if std::time::Instant::now() > deadline {
                tracing::error!(socket = %socket.display(), "the upgrade socket did not appear; the running process was not signalled");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // bind() made the file; listen() follows immediately.
        std::thread::sleep(Duration::from_millis(20));
        tracing::info!(
            pid,
            "asking the running process for its listening sockets (SIGQUIT)"
        );
        // SAFETY: kill(2) has no memory-safety preconditions.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGQUIT) } != 0 {
            tracing::error!(pid, error = %std::io::Error::last_os_error(), "cannot signal the running process");
        }
    });
}

/// Tells systemd (`Type=notify`) about the service, when started by it.
pub fn sd_notify(msg: &str) {
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| sock.send_to_addr(msg.as_bytes(), &addr))
        }
        _ => sock.send_to(msg.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
