//! Wiring: config → the live tasks and targets ([`Live`]) → HTTP server(s); reload on SIGHUP
//! (and `POST /-/reload`, and a poll of the files when asked); and the orderly shutdown in
//! reverse: stop accepting (and stop reading Kafka sources), drop connections with nothing to answer, answer the requests
//! already read, drain memory queues (on a deadline of their own), stop disk senders after
//! their batch in flight, sync what is on disk, commit the Kafka sources' safe offsets, exit.

use crate::admin::Live;
use crate::config::{Config, ServerConfig};
use crate::sources::http::{self, HttpServer, IngestGuards, IngestState, server_tls};
use crate::sources::kafka::KafkaSources;
use crate::targets::SinkError;
use crate::telemetry::Metrics;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::sources::http::TlsError),
    #[error("{0}")]
    KafkaSource(String),
}

/// A relay that is listening.
pub struct Relay {
    state: Arc<IngestState>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    tls: Option<TlsAcceptor>,
    server: ServerConfig,
    auto_reload: Option<Duration>,
    /// The Kafka sources (`sources[*].kafka`), reading since start.
    kafka: KafkaSources,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    http::bind(addr).map_err(|source| StartError::Listen { addr, source })
}

impl Relay {
    /// [`Relay::start_with_file`] for a config that reloads cannot re-read.
    ///
    /// # Errors
    /// As [`Relay::start_with_file`].
    pub async fn start(config: Config) -> Result<Relay, StartError> {
        Relay::start_with_file(config, None).await
    }

    /// Build everything and bind the listen addresses; nothing is served until
    /// [`Relay::serve`]. `config_file` is what reloads read again.
    ///
    /// # Errors
    /// A target that cannot be built (TLS files, an unwritable file path, a spool directory
    /// that cannot be opened or is in use), server TLS files that do not load, or a listen
    /// address that cannot be bound.
    pub async fn start_with_file(
        config: Config,
        config_file: Option<PathBuf>,
    ) -> Result<Relay, StartError> {
        let metrics = Arc::new(Metrics::new());
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        crate::telemetry::logging::log_config(&config);
        let server = config.server.clone();
        let tls = server.tls.as_ref().map(server_tls).transpose()?;
        let listener = bind(server.listen).await?;
        let admin = match server.admin_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let admin_addr = match &admin {
            Some(l) => l.local_addr().unwrap_or(server.listen),
            None => listener.local_addr().unwrap_or(server.listen),
        };
        let kafka_sources = config.kafka_sources.clone();
        let live = Arc::new(Live::start(config, metrics.clone(), config_file)?);
        let kafka =
            KafkaSources::start(kafka_sources, &live, &metrics).map_err(StartError::KafkaSource)?;
        let state = Arc::new(IngestState {
            live,
            guards: IngestGuards::new(&server, &metrics),
            server: server.clone(),
            metrics,
            ready: true.into(),
            admin_loopback: admin_addr.ip().is_loopback(),
        });
        Ok(Relay {
            state,
            listener,
            admin,
            tls,
            server,
            auto_reload: None,
            kafka,
        })
    }

    /// Also reload when the config files' contents change, checked every `every`.
    pub fn auto_reload(mut self, every: Option<Duration>) -> Relay {
        self.auto_reload = every;
        self
    }

    /// The live tasks and targets.
    pub fn live(&self) -> &Arc<Live> {
        &self.state.live
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.server.listen)
    }

    /// The admin address actually bound, when `server.admin.listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serve until `shutdown` resolves, then shut down in order (see the module docs).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Relay {
            state,
            listener,
            admin,
            tls,
            server,
            auto_reload,
            kafka,
        } = self;
        let reloader = tokio::spawn(reload_on_signal(state.live.clone(), auto_reload));
        let sampler = tokio::spawn(crate::admin::rates::sample(state.live.clone()));
        // Kafka sources stop reading as soon as shutdown begins, like the listeners.
        let shutdown = async {
            shutdown.await;
            kafka.stop();
        };
        HttpServer::new(state.clone(), tls, listener, admin)
            .run(shutdown)
            .await;
        reloader.abort();
        sampler.abort();
        // The queues' own deadline, whatever the connections took.
        let timeout = server.shutdown_timeout;
        let pipeline = state.live.pipeline();
        let pending: u64 = pipeline
            .targets()
            .iter()
            .map(|t| t.queue.held() as u64)
            .sum();
        drop(pipeline);
        tracing::info!(timeout = %crate::telemetry::logging::Seconds(timeout), pending, "draining queues");
        state.live.shutdown(timeout).await;
        // What the drain made safe is committed before the sources leave their groups.
        kafka.finish().await;
        tracing::info!("stopped");
    }
}

/// Reload on SIGHUP, and, with `every`, when the config files' contents change.
async fn reload_on_signal(live: Arc<Live>, every: Option<Duration>) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = every.map(|d| {
        let mut t = tokio::time::interval(d);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut last_tried: Option<u64> = None;
    loop {
        let hup_signal = async {
            #[cfg(unix)]
            if let Some(h) = hup.as_mut() {
                h.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        let polled = async {
            match tick.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let signalled = tokio::select! {
            () = hup_signal => true,
            () = polled => false,
        };
        if signalled {
            tracing::info!("SIGHUP: reloading the config");
            let _ = live.reload().await;
            continue;
        }
        // Polling: reload when the files hash differently from what runs and from what was
        // last tried (a broken file is reported once, not every interval).
        let Some(path) = live.config_path() else {
            continue;
        };
        let Ok(hash) = Config::files_hash(path) else {
            continue;
        };
        let running = live.config_hash();
        if Some(hash) != last_tried && hash != running {
            last_tried = Some(hash);
            tracing::info!("config files changed: reloading");
            let _ = live.reload().await;
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
