//! Composition root: config -> write-ahead queue -> circles -> HTTP server
//! -> control loop (signals). Nothing else imports this module.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use tracing::{error, info, warn};

use crate::api::{self, AppState};
use crate::cluster::{self, Cluster};
use crate::config::Config;
use crate::runtime::signals::{Control, Signals};
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
}

/// Runs the proxy until a shutdown signal; returns once everything is
/// flushed and closed.
pub fn run(config: Config) -> Result<(), Error> {
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let wal = Arc::new(Wal::open(&config.data_dir.join("wal"), config.wal_sync)?);
    let system = actix::System::new();
    let result = system.block_on(serve(config, wal.clone()));
    if let Err(e) = wal.flush() {
        error!(error = %e, "Flushing the write-ahead queue at exit failed.");
    }
    drop(wal);
    info!("Stopped.");
    result
}

async fn serve(config: Arc<Config>, wal: Arc<Wal>) -> Result<(), Error> {
    let cluster = Arc::new(Cluster::start(&config, wal)?);
    log_startup(&config);
    let state = web::Data::new(AppState {
        config: config.clone(),
        cluster: cluster.clone(),
    });
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
            .configure(api::configure)
    })
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
    let server = builder.run();
    info!(addr = %addr, https = config.https_enabled, "HTTP service started.");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let handle = server.handle();
    let control = actix_web::rt::spawn(control_loop(handle));
    let result = server.await.map_err(Error::Server);
    control.abort();
    cluster.stop();
    result
}

/// Waits for signals: the first shutdown signal stops gracefully, a second
/// one exits at once.
async fn control_loop(server: actix_web::dev::ServerHandle) {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "Cannot install signal handlers.");
            return;
        }
    };
    loop {
        match signals.next().await {
            Control::Shutdown(signal) => {
                info!(
                    signal,
                    "Shutting down: no new connections, finishing in-flight requests."
                );
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                let stop = server.stop(true);
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
                warn!(
                    signal = "SIGHUP",
                    "Config reload is not supported yet; restart to apply changes."
                );
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
