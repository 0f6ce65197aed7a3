//! Composition root: config -> write-ahead queue -> circles -> HTTP server
//! -> control loop (signals). Nothing else imports this module.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use actix_web::{web, App, HttpServer};
use tracing::{error, info, warn};

use crate::api::{self, AppState};
use crate::circle::BackendHandle;
use crate::cluster::{self, Cluster, ClusterDiff, Queues};
use crate::config::Config;
use crate::runtime;
use crate::runtime::signals::{Control, Signals};
use crate::udp;
use crate::wal::{self, Wal};

/// How long a client may take to send its request headers: a stalled or
/// slow client cannot hold a connection slot for longer.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection may linger.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent connections per worker thread (one worker per core); beyond
/// it new connections wait in the listen backlog instead of exhausting
/// file descriptors.
const MAX_CONNECTIONS_PER_WORKER: usize = 4096;

/// Why the proxy could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory could not be created.
    #[error("cannot create data_dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The write-ahead queue could not be opened.
    #[error("cannot open the write-ahead queue: {0}")]
    Wal(#[from] wal::Error),
    /// Starting the circles failed.
    #[error(transparent)]
    Cluster(#[from] cluster::Error),
    /// The listen address is invalid or cannot be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// The cause.
        reason: String,
    },
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Server(std::io::Error),
    /// A UDP listener cannot be bound.
    #[error(transparent)]
    Udp(#[from] udp::Error),
}

/// Runs the proxy until a shutdown signal; returns once everything is
/// flushed and closed.
pub fn run(config: Config, config_path: PathBuf) -> Result<(), Error> {
    warn_ignored(&config);
    let config = Arc::new(config);
    // Before the queue is opened: recovering it may take longer than the
    // watchdog's timeout, and the event loop that pings later is not running yet.
    let watchdog = runtime::watchdog::Watchdog::from_env();
    let startup_pings = watchdog.map(|w| w.ping_during_startup());
    std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let budget = config.memory_budget();
    crate::memory::apply(&budget);
    let wal = Arc::new(Wal::open_within(
        &config.data_dir.join("wal"),
        crate::wal::Durability::from_wal_sync(config.wal_sync),
        &budget.storage(),
    )?);
    if let Err(e) = crate::wal::spawn_maintainer(&wal) {
        error!(error = %e, "Starting the queue's maintenance thread failed; lines of late records stay shared and failed storage is not recovered.");
    }
    let system = actix::System::new();
    let result = system.block_on(serve(
        config,
        config_path,
        wal.clone(),
        watchdog,
        startup_pings,
    ));
    // Its tasks (the control loop, the supervisors) hold the queue too;
    // closing does not wait for them to let go, only for what is running.
    drop(system);
    close_wal(&wal);
    info!("Stopped.");
    result
}

/// Longest wait at exit for the queue operations in progress (a backend
/// actor on its stopping arbiter acknowledging a batch) to finish.
const WAL_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Closes the queue on this thread ([`Wal::close`]): flushed, and RocksDB
/// closed before `main` returns, whichever threads still hold a handle.
fn close_wal(wal: &Wal) {
    let started = std::time::Instant::now();
    match wal.close(WAL_CLOSE_WAIT) {
        Ok(()) => tracing::debug!(
            waited_ms = started.elapsed().as_millis() as u64,
            "Queue closed."
        ),
        Err(e @ wal::Error::StillInUse(_)) => {
            warn!(error = %e, "The write-ahead queue is still in use at exit; leaving it to the process exit.")
        }
        Err(e) => error!(error = %e, "Closing the write-ahead queue at exit failed."),
    }
}

/// Starts the circles and the HTTP server and runs until a shutdown signal.
/// `startup_pings` keep systemd's watchdog fed until `READY=1`; from then on
/// this event loop pings it itself.
async fn serve(
    config: Arc<Config>,
    config_path: PathBuf,
    wal: Arc<Wal>,
    watchdog: Option<runtime::watchdog::Watchdog>,
    startup_pings: Option<runtime::watchdog::StartupPings>,
) -> Result<(), Error> {
    let cluster = Arc::new(Cluster::start(&config, wal.clone())?);
    log_startup(&config);
    warn_about_orphan_queues(&wal, &config);
    let migration = Arc::new(crate::migrate::Jobs::default());
    let migrator = crate::migrate::Migrator::new(migration.clone()).start();
    let state = web::Data::new(AppState::new(config.clone(), cluster, migration, migrator));
    state.process().set_config_path(&config_path);
    let state_for_reload = state.clone();
    let cluster_at_exit = state.clone();
    let mut listeners = udp::Listeners::default();
    // Bound before the HTTP server starts, and started after it: a port that cannot be bound
    // fails the start as `listen_addr` does.
    let started = listeners
        .bind(&config)
        .map_err(Error::from)
        .and_then(|bound| start_http(&config, state).map(|server| (server, bound)));
    let server = match started {
        Ok((server, bound)) => {
            listeners.apply(bound, &udp_ingest(&state_for_reload));
            server
        }
        Err(e) => {
            // The actors started above have not been polled yet; dropped with the runtime, an
            // actor's first poll would set up its timers with no reactor left and panic. Let
            // them start and stop while the runtime still runs.
            cluster_at_exit.cluster().stop();
            actix_web::rt::time::sleep(ACTORS_SETTLE).await;
            return Err(e);
        }
    };
    info!(addr = %config.listen_addr, https = config.https_enabled, "HTTP service started.");
    let anti_entropy = actix_web::rt::spawn(crate::api::anti_entropy_background(
        state_for_reload.clone(),
    ));
    let pacer = {
        let state = state_for_reload.clone();
        let jobs = state.clone();
        actix_web::rt::spawn(crate::pace::watch(
            state.pace().clone(),
            move || state.cluster(),
            move || jobs.migration().appending(),
        ))
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    // Pinged from this loop from now on (also while a graceful stop drains:
    // systemd keeps watching until the process exits).
    let pinger = watchdog.map(|w| actix_web::rt::spawn(w.ping_from_event_loop()));
    drop(startup_pings);
    let handle = server.handle();
    let reloader = Reloader {
        path: config_path,
        udp_ingest: udp_ingest(&state_for_reload),
        state: state_for_reload,
        wal,
        retired: Vec::new(),
        udp: listeners,
    };
    let control = actix_web::rt::spawn(control_loop(handle, reloader));
    let result = server.await.map_err(Error::Server);
    control.abort();
    anti_entropy.abort();
    pacer.abort();
    if let Some(pinger) = pinger {
        pinger.abort();
    }
    cluster_at_exit.cluster().stop();
    result
}

/// What the UDP listeners write through: the running config and cluster, the memory budget.
impl udp::Ingest for AppState {
    fn config(&self) -> Arc<Config> {
        AppState::config(self)
    }

    fn cluster(&self) -> Arc<Cluster> {
        AppState::cluster(self)
    }

    fn admission(&self) -> &crate::memory::Admission {
        AppState::admission(self)
    }
}

fn udp_ingest(state: &web::Data<AppState>) -> Arc<dyn udp::Ingest> {
    state.clone().into_inner()
}

/// How long a failed start lets the actors it spawned run before returning.
const ACTORS_SETTLE: Duration = Duration::from_millis(50);

/// Turns Nagle's algorithm off on a client connection. actix writes an answer's head and body
/// in two sends; with Nagle on, the body of a small answer waited for the client's delayed ACK
/// on a keep-alive connection, which added ~20-40 ms to every relayed query (bench (f)).
fn no_delay(conn: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    use actix_web::rt::net::TcpStream;
    let tcp = conn.downcast_ref::<TcpStream>().or_else(|| {
        conn.downcast_ref::<TlsStream<TcpStream>>()
            .map(|s| s.get_ref().0)
    });
    if let Some(tcp) = tcp {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "Setting TCP_NODELAY on a client connection failed.");
        }
    }
}

/// Binds the HTTP (or HTTPS) listener and starts the server on it.
fn start_http(
    config: &Config,
    state: web::Data<AppState>,
) -> Result<actix_web::dev::Server, Error> {
    let addr = config.socket_addr().map_err(|reason| Error::Listen {
        addr: config.listen_addr.clone(),
        reason,
    })?;
    let listen_error = |reason: String| Error::Listen {
        addr: config.listen_addr.clone(),
        reason,
    };
    let builder = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(api::default_headers())
            .wrap(api::RequestMetrics)
            .wrap(actix_web::middleware::from_fn(api::http10_framing))
            .configure(api::configure)
    })
    .on_connect(no_delay)
    .disable_signals()
    .keep_alive(config.idle_timeout)
    .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
    .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
    .max_connections(MAX_CONNECTIONS_PER_WORKER)
    .shutdown_timeout(config.shutdown_timeout.as_secs().max(1));
    let builder = if config.https_enabled {
        let tls13_only = config
            .tls
            .as_ref()
            .and_then(|t| t.min_version)
            .is_some_and(|v| v >= crate::config::TlsVersion::Tls13);
        let tls = crate::tls::server_config(
            std::path::Path::new(&config.https_cert),
            std::path::Path::new(&config.https_key),
            tls13_only,
        )
        .map_err(listen_error)?;
        builder
            .bind_rustls_0_23(addr, tls)
            .map_err(|e| listen_error(e.to_string()))?
    } else {
        builder
            .bind(addr)
            .map_err(|e| listen_error(e.to_string()))?
    };
    Ok(builder.run())
}

/// Waits for signals: the first shutdown signal stops gracefully, a second
/// one exits at once; SIGHUP reloads the config. Also retires removed
/// backends once their queues are drained.
async fn control_loop(server: actix_web::dev::ServerHandle, mut reloader: Reloader) {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "Cannot install signal handlers.");
            return;
        }
    };
    let mut tick = tokio::time::interval(RETIRE_CHECK_INTERVAL);
    loop {
        let control = tokio::select! {
            c = signals.next() => c,
            _ = tick.tick() => {
                reloader.retire_drained();
                continue;
            }
        };
        match control {
            Control::Shutdown(signal) => {
                info!(
                    signal,
                    "Shutting down: no new connections, finishing in-flight requests."
                );
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                // UDP first: what its batches hold is written while the cluster still runs.
                let stop = async {
                    reloader.stop_udp().await;
                    server.stop(true).await;
                };
                tokio::select! {
                    _ = stop => {}
                    Control::Shutdown(signal) = next_shutdown(&mut signals) => {
                        warn!(signal, "Second signal: exiting now.");
                        std::process::exit(130);
                    }
                }
                return;
            }
            Control::Reload => {
                let mut states = vec![sd_notify::NotifyState::Reloading];
                if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
                    states.push(now);
                }
                let _ = sd_notify::notify(&states);
                let reloaded = reloader.reload();
                reloader.state.process().note_reload(&reloaded);
                if let Ok(d) = &reloaded {
                    if d.placement || d.pins {
                        warn!(
                            signal = "SIGHUP",
                            ring = d.placement,
                            pins = d.pins,
                            "The reload changed where measurements live: writes and reads follow the new placement now; POST /rebalance moves the data already stored."
                        );
                    }
                }
                match reloaded {
                    Ok(d) => info!(
                        signal = "SIGHUP",
                        changes = %d,
                        added = ?d.added,
                        removed = ?d.removed,
                        replaced = ?d.replaced.iter().map(|r| &r.name).collect::<Vec<_>>(),
                        rebound = ?d.rebound,
                        placement = d.placement,
                        pins = d.pins,
                        lines = ?d.lines,
                        request = ?d.request,
                        log_level = d.log_level,
                        udp = ?d.udp,
                        "Config reloaded."
                    ),
                    Err(e) => {
                        error!(signal = "SIGHUP", error = %e, "Config reload refused; the running config is unchanged.")
                    }
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }
}

/// One warning per setting of the file that has no effect here (accepted for Go proxy files).
fn warn_ignored(config: &Config) {
    for (setting, why) in config.ignored_settings() {
        warn!(
            setting,
            reason = why,
            "Config setting has no effect in influx-proxy; ignored."
        );
    }
}

/// How often removed backends are checked for a drained queue.
const RETIRE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Applies config reloads as a diff against the running state.
struct Reloader {
    path: PathBuf,
    state: web::Data<AppState>,
    wal: Arc<Wal>,
    /// Backends removed from the config that still drain their queue.
    retired: Vec<Arc<BackendHandle>>,
    /// The UDP listeners, and what they write through.
    udp: udp::Listeners,
    udp_ingest: Arc<dyn udp::Ingest>,
}

impl Reloader {
    /// Applies the config file as it is now: everything the diff names, or nothing.
    fn reload(&mut self) -> Result<ClusterDiff, String> {
        let new = Config::load(&self.path).map_err(|e| e.to_string())?;
        warn_ignored(&new);
        let old = self.state.config();
        let diff = ClusterDiff::between(Some(&old), &new);
        if !diff.restart.is_empty() {
            return Err(format!(
                "{} cannot change without a restart; nothing was applied",
                diff.restart.join(", ")
            ));
        }
        if diff.is_empty() {
            return Ok(diff);
        }
        // The steps that can fail come first: a failed reload changes nothing. New UDP sockets
        // are bound (and closed again if a later step fails).
        let udp = if diff.udp.is_empty() {
            None
        } else {
            Some(self.udp.bind(&new).map_err(|e| e.to_string())?)
        };
        let queues = if diff.changes_cluster() {
            Some(Queues::open(&new, &self.wal).map_err(|e| e.to_string())?)
        } else {
            None
        };
        if diff.log_level {
            runtime::logging::set_level(&new.log_level)?;
        }
        let new = Arc::new(new);
        let Some(queues) = queues else {
            self.state.replace(new, self.state.cluster());
            self.apply_udp(udp);
            return Ok(diff);
        };
        // A removed backend that comes back must stop draining before a new actor takes over
        // its queue.
        // (A retired backend is not in the running config: if it is back, the diff adds it.)
        self.retired.retain(|h| {
            let back = diff.added.contains(&h.backend.info.name);
            if back {
                h.stop();
            }
            !back
        });
        let old_cluster = self.state.cluster();
        let (cluster, unused) =
            Cluster::build(&new, self.wal.clone(), Some(&old_cluster), &diff, queues);
        old_cluster.stop_supervisors();
        self.state.replace(new, Arc::new(cluster));
        for h in unused {
            self.retire(h);
        }
        self.apply_udp(udp);
        Ok(diff)
    }

    /// Starts, updates and stops UDP listeners as the reloaded config asks.
    fn apply_udp(&mut self, bound: Option<udp::Bindings>) {
        if let Some(bound) = bound {
            self.udp.apply(bound, &self.udp_ingest);
        }
    }

    /// Stops the UDP listeners, waiting (at most `shutdown_timeout`) until their batches are
    /// written.
    async fn stop_udp(&mut self) {
        let timeout = self.state.config().shutdown_timeout;
        self.udp.shutdown(timeout).await;
    }

    /// A backend removed from the config: stopped at once if its queue is empty, otherwise
    /// kept delivering until [`Reloader::retire_drained`] finds it drained.
    fn retire(&mut self, h: Arc<BackendHandle>) {
        let points = h.backend.queue.stats.points();
        if h.backend.queue.is_empty() {
            info!(backend = %h.backend.info.name, "Backend removed.");
            h.stop();
        } else {
            warn!(backend = %h.backend.info.name, points, "Backend removed; it keeps delivering its queued points before it stops.");
            self.retired.push(h);
        }
    }

    fn retire_drained(&mut self) {
        self.retired.retain(|h| {
            if h.backend.queue.is_empty() {
                info!(backend = %h.backend.info.name, "Removed backend drained its queue; stopped.");
                h.stop();
                false
            } else {
                true
            }
        });
    }
}

/// Queues of backends no longer in the config are kept, never dropped; say
/// so, since nothing delivers them until the backend is configured again.
fn warn_about_orphan_queues(wal: &Wal, config: &Config) {
    let configured: Vec<&str> = config
        .circles
        .iter()
        .flat_map(|c| c.backends.iter().map(|b| b.name.as_str()))
        .collect();
    let Ok(names) = wal.registered() else {
        return;
    };
    for name in names.iter().filter(|n| !configured.contains(&n.as_str())) {
        if let Ok(q) = wal.queue(name, u64::MAX) {
            if !q.is_empty() {
                warn!(backend = %name, points = q.stats.points(),
                    "Queue of a backend that is no longer configured is kept; add the backend back to deliver it.");
            }
        }
    }
}

async fn next_shutdown(signals: &mut Signals) -> Control {
    loop {
        if let c @ Control::Shutdown(_) = signals.next().await {
            return c;
        }
    }
}

fn log_startup(config: &Config) {
    let backends: usize = config.circles.iter().map(|c| c.backends.len()).sum();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = env!("INFLUX_PROXY_GIT_COMMIT"),
        circles = config.circles.len(),
        backends,
        hash_key = ?config.hash_key,
        db_list = ?config.db_list,
        auth = config.auth_enabled(),
        wal_sync = config.wal_sync,
        "Starting influx-proxy."
    );
}
