//! Wiring: config → targets and their senders → pipeline → HTTP server, and the orderly
//! shutdown in reverse: stop accepting, finish in-flight requests, drain queues (bounded), exit.

use crate::config::Config;
use crate::ingest::{IngestState, handle};
use crate::pipeline::Pipeline;
use crate::sink::{Service, run_lane};
use crate::telemetry::Metrics;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A relay that is listening.
pub struct Relay {
    state: Arc<IngestState>,
    listener: TcpListener,
    senders: JoinSet<()>,
}

impl Relay {
    /// Build everything and bind the listen address; nothing is served until [`Relay::serve`].
    ///
    /// # Errors
    /// A target that cannot be built (TLS files, an unwritable file path), or a listen address
    /// that cannot be bound.
    pub async fn start(config: Config) -> Result<Relay, StartError> {
        let metrics = Arc::new(Metrics::new());
        // Services first: they are the part that can fail, and targets are numbered in the same
        // order by the pipeline (enabled tasks, config order).
        let mut services = Vec::new();
        for task in config.tasks.iter().filter(|t| t.enabled) {
            for t in &task.targets {
                services.push(Service::for_lanes(t)?);
            }
        }
        let server = config.server.clone();
        let source_auth = config
            .source_auth
            .iter()
            .map(|a| a.header_value())
            .collect();
        let listener =
            TcpListener::bind(server.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: server.listen,
                    source,
                })?;
        let pipeline = Pipeline::new(config, &metrics);
        let mut senders = JoinSet::new();
        for (target, lanes) in pipeline.targets().iter().zip(services) {
            for (lane, service) in lanes.into_iter().enumerate() {
                senders.spawn(run_lane(target.clone(), lane, service));
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
            senders,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.server.listen)
    }

    /// Serve until `shutdown` resolves, then shut down in order (see the module docs).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Relay {
            state,
            listener,
            mut senders,
        } = self;
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let st = state.clone();
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                () = &mut shutdown => break,
            }
        }
        let timeout = state.server.shutdown_timeout;
        tracing::info!("shutting down: no new connections, draining queues for up to {timeout:?}");
        state.ready.store(false, Ordering::Release);
        drop(listener);
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
                if left > 0 {
                    t.metrics.dropped_shutdown.inc_by(left as u64);
                    tracing::error!(task = %t.task, target = %t.name, samples = left, "shutdown timeout: samples not delivered");
                }
            }
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
