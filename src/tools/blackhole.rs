//! `promrelay blackhole`: a remote-write receiver that reads each body and answers 204 to
//! everything, the load target of `perf/compare.sh` and of benchmarks through a real relay;
//! with a delay, a slow receiver (a remote one across a network).

use super::bench::BenchError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Serve a remote-write receiver that reads each body and answers 204 `delay` later, until
/// `shutdown`.
///
/// # Errors
/// A listen address that is not loopback or cannot be bound.
pub async fn blackhole(
    listen: std::net::SocketAddr,
    delay: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BenchError> {
    if !listen.ip().is_loopback() {
        return Err(BenchError::NotLoopback(listen.to_string()));
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let requests = Arc::new(AtomicU64::new(0));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let requests = requests.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let requests = requests.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        requests.fetch_add(1, Ordering::Relaxed);
                        let mut r = hyper::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!(
        requests = requests.load(Ordering::Relaxed),
        "blackhole stopped"
    );
    Ok(())
}
