//! What bounds one request's body: reading it under its deadline (`server.body_read_timeout`),
//! and stopping at shutdown.

use crate::config::ServerConfig;
use crate::telemetry::Metrics;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

/// What the request handlers share to stay within bounds: the signal that shutdown has begun.
pub struct IngestGuards {
    /// Set once at shutdown: body reads stop, connections with nothing to answer are dropped.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// `promrelay_http_connections_closed_total{listener="listen", reason="body_timeout"}`.
    pub body_timeouts: Counter,
}

impl IngestGuards {
    pub fn new(_server: &ServerConfig, metrics: &Metrics) -> IngestGuards {
        let m = &metrics.http;
        IngestGuards {
            stopping: tokio::sync::watch::Sender::new(false),
            body_timeouts: m.closed("listen", "body_timeout"),
        }
    }
}

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Over `max_body_bytes` (413).
    TooLarge,
    /// The connection or stream failed (400: nothing to retry on our side).
    Read(hyper::Error),
    /// Not all there by `server.body_read_timeout`.
    Timeout,
    /// The relay is shutting down: the request is dropped unanswered, so the sender retries.
    Shutdown,
}

/// Read a whole body of at most `max` bytes (`declared` when the request said), until
/// `deadline` or until `stop` resolves. A body that arrives in one piece is not copied.
///
/// # Errors
/// See [`BodyError`].
pub async fn read_body(
    mut body: Incoming,
    max: usize,
    declared: Option<usize>,
    deadline: Instant,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Bytes, BodyError> {
    let timeout = tokio::time::sleep_until(deadline);
    tokio::pin!(timeout, stop);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut len = 0usize;
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            () = &mut timeout => return Err(BodyError::Timeout),
            () = &mut stop => return Err(BodyError::Shutdown),
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(BodyError::Read(e)),
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue, // trailers
            },
        };
        len += data.len();
        if len > max {
            return Err(BodyError::TooLarge);
        }
        match (&mut joined, first.take()) {
            (Some(buf), _) => buf.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(earlier)) => {
                // One allocation of the declared size, not a doubling series.
                let mut buf = BytesMut::with_capacity(declared.unwrap_or(len).clamp(len, max));
                buf.extend_from_slice(&earlier);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(match joined {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}
