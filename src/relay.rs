//! Wiring: config → targets and their senders → pipeline → HTTP server(s), and the orderly
//! shutdown in reverse: stop accepting, finish in-flight requests, drain memory queues
//! (bounded), stop spool senders after their batch in flight, sync spools, exit.

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::sources::http::{IngestState, Listener, accept_opt, serve_connection, server_tls};
use crate::targets::{SinkError, run_lane};
use crate::telemetry::Metrics;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })
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
        crate::telemetry::logging::log_config(&config);
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
                tracing::info!(task = %task.name, source = %task.source, target = %t.name, r#type = t.kind.type_name(), ack = %task.ack, lanes = t.queue.shards, spool = spool.as_deref(), "target");
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
            if target.queue.spool().is_some() {
                let (target, mut stop) = (target.clone(), stop_rx.clone());
                syncers.spawn(async move {
                    if let Some(s) = target.queue.spool() {
                        s.run_sync(async move {
                            let _ = stop.wait_for(|&v| v).await;
                        })
                        .await;
                    }
                });
            }
        }
        let state = Arc::new(IngestState {
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
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(addr = %addr(&listener), tls = tls.is_some(), "listening");
        if let Some(a) = &admin {
            tracing::info!(addr = %addr(a), "admin endpoints (/metrics, /-/healthy, /-/ready) listening");
        }
        let main_role = if admin.is_some() {
            Listener::Ingest
        } else {
            Listener::Both
        };
        loop {
            let (accepted, role) = tokio::select! {
                a = listener.accept() => (a, main_role),
                a = accept_opt(admin.as_ref()) => (a, Listener::Admin),
                () = &mut shutdown => break,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            serve_connection(&builder, &graceful, &state, tls.clone(), stream, role);
        }
        let timeout = state.server.shutdown_timeout;
        let pending: u64 = state
            .pipeline
            .targets()
            .iter()
            .map(|t| t.queue.held() as u64)
            .sum();
        tracing::info!(timeout = %crate::telemetry::logging::Seconds(timeout), pending, "shutting down: no new connections, draining queues");
        let drains: Vec<_> = state
            .pipeline
            .targets()
            .iter()
            .map(|t| t.drain_start())
            .collect();
        state.ready.store(false, Ordering::Release);
        drop(listener);
        drop(admin);
        let deadline = tokio::time::Instant::now() + timeout;
        if tokio::time::timeout_at(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some connections were still open at the shutdown timeout");
        }
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
                let left = t.queue.held();
                if left == 0 {
                    continue;
                }
                if t.queue.spool().is_some() {
                    tracing::info!(task = %t.task, target = %t.name, samples = left, "shutdown timeout: samples stay in the spool for the next start");
                } else {
                    t.metrics.dropped_shutdown.inc_by(left as u64);
                    tracing::error!(task = %t.task, target = %t.name, samples = left, "shutdown timeout: samples not delivered");
                }
            }
        }
        // Last: every spool syncs what it wrote and how far it got.
        let _ = stop_sync.send(true);
        while syncers.join_next().await.is_some() {}
        for (t, start) in state.pipeline.targets().iter().zip(&drains) {
            t.log_drained(start);
        }
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
