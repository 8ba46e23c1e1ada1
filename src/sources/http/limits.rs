//! What bounds one request's body: the budget every body in flight shares
//! (`server.max_inflight_body_bytes`), and reading a body under its deadline
//! (`server.body_read_timeout`).
//!
//! A request reserves room for its body *before* a byte of it is read: its `Content-Length`,
//! or `max_body_bytes` when it declares none (the body can never be larger). So the sum of the
//! bodies being read or decoded never exceeds the budget, over all connections and HTTP/2
//! streams alike.
//!
//! An HTTP/1.1 request without room waits up to `server.inflight_body_wait` with its body
//! unread (TCP flow control holds the sender back), then is answered 503/429 + `Retry-After`
//! and the sender retries. A waiting request takes room as soon as enough is free, smaller
//! ones first if they fit (a large body cannot hold up every small one behind it). Waiting
//! rather than refusing at once was measured (docs/reliability.md): of 200 bodies of 32 MiB
//! sent at once, no wait took 16 and refused the rest (some seeing a reset rather than the
//! 503), a 5 s wait took 36 to 200 (as fast as the relay decoded); memory is bounded by the
//! budget either way, and a body taken is a body the sender does not send twice.
//!
//! An HTTP/2 request without room is refused at once: its stream's unread data holds the
//! connection's flow-control window, which the streams being read need to finish, so a
//! waiting stream only stalls the others until it gives up (measured: 200 streams of 8 MiB on
//! one connection took 20.8 s with a 5 s wait, 1.7 s without, the same 64 taken).
//!
//! A refused body small enough ([`DRAIN_BYTES`]) is read and thrown away before the answer, so
//! the connection stays usable and the sender reads the answer rather than a reset (a server
//! that closes a socket with unread data makes the kernel send RST).
//!
//! The reservation is released when the request's decoded batch is queued or refused, not
//! when the answer is written: the body is no longer held by then.

use super::offload::DecodePool;
use crate::config::ServerConfig;
use crate::telemetry::Metrics;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What the request handlers share to stay within bounds: the body budget, the decode pool for
/// large bodies, and the signal that shutdown has begun.
pub struct IngestGuards {
    pub budget: Arc<BodyBudget>,
    pub pool: DecodePool,
    /// Set once at shutdown: body reads stop, connections with nothing to answer are dropped.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// `promrelay_http_connections_closed_total{listener="listen", reason="body_timeout"}`.
    pub body_timeouts: Counter,
    pub offloaded: Counter,
}

impl IngestGuards {
    pub fn new(server: &ServerConfig, metrics: &Metrics) -> IngestGuards {
        let m = &metrics.http;
        m.inflight_body_limit
            .set(i64::try_from(server.max_inflight_body_bytes).unwrap_or(i64::MAX));
        IngestGuards {
            budget: BodyBudget::new(
                server.max_inflight_body_bytes,
                m.inflight_body_bytes.clone(),
            ),
            pool: DecodePool::new(server.shards),
            stopping: tokio::sync::watch::Sender::new(false),
            body_timeouts: m.closed("listen", "body_timeout"),
            offloaded: m.offloaded.clone(),
        }
    }
}

/// Bytes of request bodies the relay holds at once, shared by every connection and stream.
pub struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
    /// Woken whenever room is given back.
    freed: Notify,
    gauge: Gauge,
}

/// Room reserved in a [`BodyBudget`]; given back on drop.
pub struct Room {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyBudget {
    /// A budget of `limit` bytes; `gauge` follows what is in use.
    pub fn new(limit: usize, gauge: Gauge) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            limit,
            used: AtomicUsize::new(0),
            freed: Notify::new(),
            gauge,
        })
    }

    /// Reserve `bytes` at once, if they fit.
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Room> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let after = used.checked_add(bytes).filter(|&n| n <= self.limit)?;
            match self
                .used
                .compare_exchange_weak(used, after, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.gauge.inc_by(bytes as i64);
                    return Some(Room {
                        budget: self.clone(),
                        bytes,
                    });
                }
                Err(now) => used = now,
            }
        }
    }

    /// Reserve `bytes`, waiting up to `wait` for room; `None` when there was none in time
    /// (or never can be: more than the whole budget).
    pub async fn reserve(self: &Arc<Self>, bytes: usize, wait: Duration) -> Option<Room> {
        if bytes > self.limit {
            return None;
        }
        let deadline = Instant::now() + wait;
        loop {
            // Registered before the check, so room given back in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(room) = self.try_reserve(bytes) {
                return Some(room);
            }
            tokio::select! {
                () = freed => {}
                () = tokio::time::sleep_until(deadline) => return self.try_reserve(bytes),
            }
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.gauge.dec_by(self.bytes as i64);
        self.budget.freed.notify_waiters();
    }
}

/// A refused request's body up to this size is read and discarded before the answer (as Go's
/// server does, at the same size); a larger one is left unread and the connection closed.
pub const DRAIN_BYTES: usize = 256 << 10;

/// Read and discard a body, until `deadline` or until `stop` resolves. What went wrong does
/// not matter: the request is answered either way.
pub async fn drain_body(
    mut body: Incoming,
    deadline: Instant,
    stop: impl std::future::Future<Output = ()>,
) {
    let drain = tokio::time::timeout_at(deadline, async {
        while let Some(Ok(_)) = body.frame().await {}
    });
    tokio::select! {
        _ = drain => {}
        () = stop => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_budget_never_lends_more_than_its_limit_and_wakes_a_waiter_when_room_frees() {
        let budget = BodyBudget::new(100, Gauge::default());
        let a = budget.try_reserve(60).unwrap();
        assert!(budget.try_reserve(50).is_none(), "60 + 50 > 100");
        let b = budget.try_reserve(40).unwrap();
        assert_eq!(budget.used(), 100);
        // More than the whole budget never fits, so it is not waited for.
        assert!(budget.reserve(101, Duration::from_secs(60)).await.is_none());
        // Nothing frees: the wait ends empty.
        assert!(
            budget
                .reserve(10, Duration::from_millis(20))
                .await
                .is_none()
        );
        // Room freed while waiting is taken.
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(50, Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        let c = waiter
            .await
            .unwrap()
            .expect("room after 60 were given back");
        assert_eq!(budget.used(), 90);
        drop((b, c));
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.gauge.get(), 0);
    }
}
