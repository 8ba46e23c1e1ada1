//! Wiring: config → targets and their senders → pipeline → HTTP server(s), and the orderly
//! shutdown in reverse: stop accepting, drop connections with nothing to answer, answer the
//! requests already read, drain memory queues (on a deadline of their own), stop spool senders
//! after their batch in flight, sync spools, exit.

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::sources::http::{self, HttpServer, IngestGuards, IngestState, server_tls};
use crate::targets::{SinkError, run_lane};
use crate::telemetry::Metrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
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
}

/// How often an overflow is synced to disk.
const OVERFLOW_SYNC: Duration = Duration::from_secs(1);

/// A relay that is listening.
pub struct Relay {
    state: Arc<IngestState>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    tls: Option<TlsAcceptor>,
    senders: JoinSet<()>,
    syncers: JoinSet<()>,
    stop_sync: tokio::sync::watch::Sender<bool>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    http::bind(addr).map_err(|source| StartError::Listen { addr, source })
}

impl Relay {
    /// Build everything and bind the listen addresses; nothing is served until
    /// [`Relay::serve`].
    ///
    /// # Errors
    /// A target that cannot be built (TLS files, an unwritable file path, a spool directory
    /// that cannot be opened or is in use), server TLS files that do not load, or a listen
    /// address that cannot be bound.
    pub async fn start(config: Config) -> Result<Relay, StartError> {
        let metrics = Arc::new(Metrics::new());
        // Services first: they are the part that can fail, and targets are numbered in the same
        // order by the pipeline (enabled tasks, config order).
        let mut services = Vec::new();
        for task in config.tasks.iter().filter(|t| t.enabled) {
            for t in &task.targets {
                services.push(
                    t.kind
                        .services(t.queue.shards)
                        .map_err(|message| SinkError {
                            target: t.name.clone(),
                            message,
                        })?,
                );
                let spool = t.spool.as_ref().map(|s| s.dir.display().to_string());
                tracing::info!(task = %task.name, target = %t.name, ack = ?task.ack, spool = spool.as_deref().unwrap_or("none"), "target");
            }
        }
        let server = config.server.clone();
        let tls = server.tls.as_ref().map(server_tls).transpose()?;
        let source_auth = config
            .source_auth
            .iter()
            .map(|a| a.header_value())
            .collect();
        let listener = bind(server.listen).await?;
        let admin = match server.admin_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let pipeline = Pipeline::new(config, &metrics)?;
        let mut senders = JoinSet::new();
        let mut syncers = JoinSet::new();
        let (stop_sync, stop_rx) = tokio::sync::watch::channel(false);
        for (target, lanes) in pipeline.targets().iter().zip(services) {
            for (lane, service) in lanes.into_iter().enumerate() {
                senders.spawn(run_lane(target.clone(), lane, service));
            }
            if target.queue.disk().is_some() || target.queue.overflow().is_some() {
                let (target, mut stop) = (target.clone(), stop_rx.clone());
                syncers.spawn(async move {
                    let stop = async move {
                        let _ = stop.wait_for(|&v| v).await;
                    };
                    target.queue.run_sync(OVERFLOW_SYNC, stop).await;
                });
            }
        }
        let state = Arc::new(IngestState {
            guards: IngestGuards::new(&server, &metrics),
            pipeline,
            metrics,
            server,
            ready: true.into(),
            source_auth,
        });
        Ok(Relay {
            state,
            listener,
            admin,
            tls,
            senders,
            syncers,
            stop_sync,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.server.listen)
    }

    /// The admin address actually bound, when `server.admin_listen` is set.
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
            mut senders,
            mut syncers,
            stop_sync,
        } = self;
        HttpServer::new(state.clone(), tls, listener, admin)
            .run(shutdown)
            .await;
        // The queues' own deadline, whatever the connections took.
        let timeout = state.server.shutdown_timeout;
        tracing::info!("draining queues for up to {timeout:?}");
        let deadline = tokio::time::Instant::now() + timeout;
        for t in state.pipeline.targets() {
            t.queue.close();
        }
        let drained = tokio::time::timeout_at(deadline, async {
            while senders.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            senders.abort_all();
            for t in state.pipeline.targets() {
                let left = t.queue.memory_held();
                if left > 0 {
                    t.metrics.dropped_shutdown.inc_by(left as u64);
                    tracing::error!(task = %t.task, target = %t.name, samples = left, "shutdown timeout: samples held in memory not delivered");
                }
            }
        }
        for t in state.pipeline.targets() {
            let on_disk = t.queue.disk_samples();
            if on_disk > 0 {
                let dir = t.queue.disk_dir().map(|d| d.display().to_string());
                tracing::info!(task = %t.task, target = %t.name, samples = on_disk, dir = dir.as_deref().unwrap_or_default(), "shutdown: samples stay on disk for the next start");
            }
        }
        // Last: every spool syncs what it wrote and how far it got.
        let _ = stop_sync.send(true);
        while syncers.join_next().await.is_some() {}
        tracing::info!("stopped");
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
