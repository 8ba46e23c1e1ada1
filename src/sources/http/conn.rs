//! Connections of the HTTP source: accepted under a cap, watched so that a client that stalls
//! is cut off, and dropped at once at shutdown unless a request on them is being answered.
//!
//! Every connection, on both listeners, is in one phase at a time, each with its bound:
//!
//! | phase | bound | counted as `reason` |
//! |---|---|---|
//! | TLS handshake, then the first request's header, from accepting | `header_read_timeout` | `handshake_timeout`, `header_timeout` |
//! | a kept-alive HTTP/1.1 connection's next header, from its first byte | `header_read_timeout` | `header_timeout` |
//! | waiting for the next request (HTTP/1.1 kept alive; HTTP/2 without open streams) | `idle_timeout` | `idle_timeout` |
//! | a request's body, once its header is in | `body_read_timeout` (in the handler) | `body_timeout` |
//! | an HTTP/2 ping unanswered | `http2_keepalive_timeout` | `keepalive_timeout` |
//! | a request being decoded, queued, or waiting for its `ack` | `ack_timeout` (in the handler) | — |
//!
//! A connection past its bound is dropped (no answer: the sender retries) and counted in
//! `promrelay_http_connections_closed_total{listener, reason}`; nothing is logged per
//! connection. The watch is ours rather than hyper's `header_read_timeout` because hyper's
//! runs from the end of one response to the next header (idle time and header time would be
//! one setting), does nothing for HTTP/2, and does not say which phase stalled.
//!
//! **Connection cap.** Each listener accepts only while it has a free slot
//! (`server.max_connections` on `listen`, [`ADMIN_MAX_CONNECTIONS`] on `admin_listen`);
//! beyond it, accepting waits and new connections queue in the kernel's backlog. The cap is
//! lowered at start to fit the process's file descriptor limit, keeping a reserve for targets,
//! spools and the admin listener (see [`connection_caps`]), so running out of descriptors
//! cannot stop `/-/healthy` or a target's sends. An accept that fails anyway (EMFILE, ENFILE)
//! is counted, logged at most once per [`ACCEPT_ERROR_LOG_EVERY`], and retried after a pause.
//!
//! **Shutdown.** Listeners close; a connection with no request being answered (idle, or a
//! header or body still arriving) is dropped at once, unanswered, so its sender retries; a
//! request already read is answered, bounded by `shutdown_timeout`.

use super::{IngestState, Listener};
use crate::config::ServerConfig;
use crate::telemetry::HttpMetrics;
use hyper::Version;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// Connections served at once on `admin_listen` (a scrape and a health check need few).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// A failed accept is logged at most this often (every one is counted).
pub const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Pause after an accept failed for lack of descriptors or memory, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At shutdown, an answer just produced gets this long to be written before its connection
/// is dropped.
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(1);

/// EMFILE and ENFILE (the same numbers on Linux, the BSDs and macOS).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Why the relay closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    HandshakeTimeout,
    HeaderTimeout,
    BodyTimeout,
    IdleTimeout,
    KeepaliveTimeout,
    Shutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 6] = [
        CloseReason::HandshakeTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::BodyTimeout,
        CloseReason::IdleTimeout,
        CloseReason::KeepaliveTimeout,
        CloseReason::Shutdown,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::KeepaliveTimeout => "keepalive_timeout",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// The `listener` label of a listener role.
pub fn listener_label(role: Listener) -> &'static str {
    match role {
        Listener::Both | Listener::Ingest => "listen",
        Listener::Admin => "admin_listen",
    }
}

/// One listener's counters, made once at start.
#[derive(Clone)]
pub struct ListenerMetrics {
    open: Gauge,
    closed: [Counter; CloseReason::ALL.len()],
    accept_fd: Counter,
    accept_other: Counter,
}

impl ListenerMetrics {
    pub fn new(m: &HttpMetrics, listener: &str) -> ListenerMetrics {
        ListenerMetrics {
            open: m.connections(listener),
            closed: CloseReason::ALL.map(|r| m.closed(listener, r.as_str())),
            accept_fd: m.accept_errors(listener, "too_many_open_files"),
            accept_other: m.accept_errors(listener, "other"),
        }
    }

    pub fn closed(&self, reason: CloseReason) {
        self.closed[reason as usize].inc();
    }
}

// ---------------------------------------------------------------------------------------------
// One connection's phase

/// What a connection is doing, shared by its reader ([`WatchedIo`]), its requests and its
/// watch. Times are milliseconds since the connection was accepted.
pub struct ConnActivity {
    origin: Instant,
    /// Requests handed to the handler and not yet answered.
    in_flight: AtomicU32,
    /// When the current wait began: the last answer (idle), or the first byte of a header.
    since_ms: AtomicU64,
    /// A header is arriving: bytes came while no request was in flight (and the connection
    /// is new, or HTTP/1.1). Starts true: a new connection owes its first header.
    header: AtomicBool,
    /// HTTP/2: bytes between requests are pings and settings, not a header.
    h2: AtomicBool,
    /// Woken when a wait begins (the watch's deadline moves earlier).
    changed: Notify,
}

/// A request in flight on its connection; ends its count on drop.
pub struct InFlight(Arc<ConnActivity>);

impl ConnActivity {
    pub fn new() -> Arc<ConnActivity> {
        Arc::new(ConnActivity {
            origin: Instant::now(),
            in_flight: AtomicU32::new(0),
            since_ms: AtomicU64::new(0),
            header: AtomicBool::new(true),
            h2: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Bytes arrived. Between requests of an HTTP/1.1 connection, a header has begun.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && !self.header.load(Ordering::Acquire)
            && !self.h2.load(Ordering::Relaxed)
        {
            self.since_ms.store(self.now_ms(), Ordering::Release);
            self.header.store(true, Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// A request's header is in and the handler starts on it.
    pub fn request_started(self: &Arc<Self>, h2: bool) -> InFlight {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.header.store(false, Ordering::Release);
        InFlight(self.clone())
    }

    /// The current phase's deadline and what passing it means; `None` while a request is in
    /// flight (its handler bounds it). A consistent read: retried if a request started or
    /// ended in between.
    fn deadline(&self, t: &Timeouts, stopping: bool) -> Option<(Instant, CloseReason)> {
        loop {
            let in_flight = self.in_flight.load(Ordering::Acquire);
            let header = self.header.load(Ordering::Acquire);
            let since = self.since_ms.load(Ordering::Acquire);
            if in_flight != self.in_flight.load(Ordering::Acquire)
                || header != self.header.load(Ordering::Acquire)
            {
                continue;
            }
            if in_flight > 0 {
                return None;
            }
            let since = self.origin + Duration::from_millis(since);
            return Some(match (stopping, header) {
                (true, true) => (Instant::now(), CloseReason::Shutdown),
                (true, false) => (since + SHUTDOWN_WRITE_GRACE, CloseReason::Shutdown),
                (false, true) => (since + t.header, CloseReason::HeaderTimeout),
                (false, false) => (since + t.idle, CloseReason::IdleTimeout),
            });
        }
    }

    /// Resolves when the connection has outstayed its current phase.
    async fn expired(&self, t: &Timeouts, stopping: bool) -> CloseReason {
        loop {
            // Made before the check, so a change in between is not missed.
            let changed = self.changed.notified();
            match self.deadline(t, stopping) {
                None => changed.await,
                Some((at, reason)) => {
                    if Instant::now() >= at {
                        return reason;
                    }
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        // Stored before the count drops, so a watch that sees zero sees this time.
        a.since_ms.store(a.now_ms(), Ordering::Release);
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.changed.notify_one();
        }
    }
}

/// The connection's stream, telling its [`ConnActivity`] when bytes arrive.
pub struct WatchedIo<T> {
    inner: T,
    activity: Arc<ConnActivity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

// ---------------------------------------------------------------------------------------------
// Caps

/// How many connections each listener serves at once: `max_connections` on `listen` and
/// [`ADMIN_MAX_CONNECTIONS`] on `admin_listen`, the first lowered to fit `nofile` (the
/// process's descriptor limit, when known) less a reserve for everything else the relay
/// opens: a quarter of the limit, and at least 64 plus 8 per target lane (a lane holds a
/// connection to its target, and its spool or overflow files).
pub fn connection_caps(
    max_connections: usize,
    nofile: Option<u64>,
    lanes: usize,
    admin: bool,
) -> (usize, usize) {
    let admin_cap = if admin { ADMIN_MAX_CONNECTIONS } else { 0 };
    let Some(nofile) = nofile else {
        return (max_connections, admin_cap);
    };
    let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
    let reserve = (64 + 8 * lanes).max(nofile / 4);
    let fits = nofile.saturating_sub(reserve + admin_cap).max(1);
    (max_connections.min(fits), admin_cap)
}

/// Connections that may wait in the kernel for a free slot, per listener. A larger backlog
/// than tokio's default (128) lets connections beyond the cap wait to be accepted, rather
/// than have their SYNs dropped and retried seconds later; the kernel caps it at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 1024;

/// Bind a listener for the HTTP source.
///
/// # Errors
/// The address cannot be bound.
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted relay can bind again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Lets a message through at most once per interval, counting what it held back.
pub struct LogEvery {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl LogEvery {
    pub fn new(every: Duration) -> LogEvery {
        LogEvery {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(messages held back since the last one)` when this one may be logged.
    pub fn ready(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server

/// What every connection task of one server shares.
struct Shared {
    state: Arc<IngestState>,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
}

struct Slot {
    listener: TcpListener,
    role: Listener,
    cap: usize,
    permits: Arc<Semaphore>,
    metrics: ListenerMetrics,
}

/// The HTTP listeners of the relay: accept loops under their caps, and the connections.
pub struct HttpServer {
    shared: Arc<Shared>,
    slots: Vec<Slot>,
}

/// hyper's connection settings from `server:`. hyper's own HTTP/1.1 header timeout is off:
/// [`ConnActivity`] keeps that time (see the module docs).
fn builder(s: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1().timer(TokioTimer::new()).header_read_timeout(None);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.http2_max_concurrent_streams)
        .keep_alive_interval(s.http2_keepalive_interval)
        .keep_alive_timeout(s.http2_keepalive_timeout);
    b
}

impl HttpServer {
    /// The server for `listener` (ingest, and admin unless `admin` is given) with its caps.
    pub fn new(
        state: Arc<IngestState>,
        tls: Option<TlsAcceptor>,
        listener: TcpListener,
        admin: Option<TcpListener>,
    ) -> HttpServer {
        let s = &state.server;
        let lanes = state
            .live
            .pipeline()
            .targets()
            .iter()
            .map(|t| t.queue.lanes())
            .sum();
        let nofile = super::nofile::open_files_limit();
        let (cap, admin_cap) = connection_caps(s.max_connections, nofile, lanes, admin.is_some());
        if cap < s.max_connections {
            tracing::warn!(
                "server.max_connections lowered from {} to {cap}: the process may open {} files \
                 (ulimit -n) and keeps the rest for targets, spools and the admin listener; \
                 raise the limit to serve more",
                s.max_connections,
                nofile.unwrap_or_default()
            );
        }
        let main_role = if admin.is_some() {
            Listener::Ingest
        } else {
            Listener::Both
        };
        let slot = |listener, role, cap: usize| Slot {
            listener,
            role,
            cap,
            permits: Arc::new(Semaphore::new(cap)),
            metrics: ListenerMetrics::new(&state.metrics.http, listener_label(role)),
        };
        let mut slots = vec![slot(listener, main_role, cap)];
        if let Some(a) = admin {
            slots.push(slot(a, Listener::Admin, admin_cap));
        }
        let shared = Arc::new(Shared {
            builder: builder(s),
            tls,
            timeouts: Timeouts {
                header: s.header_read_timeout,
                idle: s.idle_timeout,
            },
            state,
        });
        HttpServer { shared, slots }
    }

    /// Serve until `shutdown` resolves; then stop accepting, drop the connections that have
    /// nothing to answer, and wait (up to `shutdown_timeout`) for the requests being answered.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let HttpServer { shared, slots } = self;
        let state = shared.state.clone();
        let mut caps = Vec::new();
        let mut accepting = JoinSet::new();
        for slot in slots {
            let addr = slot
                .listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            match slot.role {
                Listener::Admin => tracing::info!(
                    addr,
                    max_connections = slot.cap,
                    "admin endpoints (/metrics, /-/healthy, /-/ready) listening"
                ),
                _ => tracing::info!(
                    addr,
                    tls = shared.tls.is_some(),
                    max_connections = slot.cap,
                    "listening"
                ),
            }
            caps.push((slot.permits.clone(), slot.cap));
            accepting.spawn(accept_loop(slot, shared.clone()));
        }
        shutdown.await;
        let timeout = state.server.shutdown_timeout;
        tracing::info!(
            "shutting down: no new connections; requests already read get up to {timeout:?} to be answered"
        );
        state.ready.store(false, Ordering::Release);
        state.guards.stopping.send_replace(true);
        while accepting.join_next().await.is_some() {}
        let closed = async {
            for (permits, cap) in &caps {
                let _ = permits.acquire_many(*cap as u32).await;
            }
        };
        if tokio::time::timeout(timeout, closed).await.is_err() {
            let open: usize = caps
                .iter()
                .map(|(p, cap)| cap - p.available_permits())
                .sum();
            tracing::warn!(
                connections = open,
                "shutdown timeout: requests still being answered are dropped"
            );
        }
    }
}

/// Accept on one listener while it has a free slot, until shutdown.
async fn accept_loop(slot: Slot, shared: Arc<Shared>) {
    let mut stop = shared.state.guards.stopping.subscribe();
    let mut log = LogEvery::new(ACCEPT_ERROR_LOG_EVERY);
    let label = listener_label(slot.role);
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|&s| s) => return,
            p = slot.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|&s| s) => return,
            a = slot.listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve(
                    shared.clone(),
                    slot.role,
                    slot.metrics.clone(),
                    stream,
                    permit,
                ));
            }
            Err(e) => {
                drop(permit);
                let out_of_fds = matches!(e.raw_os_error(), Some(EMFILE | ENFILE));
                if out_of_fds {
                    slot.metrics.accept_fd.inc();
                } else {
                    slot.metrics.accept_other.inc();
                }
                if let Some(held_back) = log.ready(Instant::now()) {
                    tracing::warn!(
                        listener = label,
                        "accept failed: {e} ({held_back} more since the last such message; \
                         all counted in promrelay_http_accept_errors_total)"
                    );
                }
                if out_of_fds || e.kind() == io::ErrorKind::OutOfMemory {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// Decrements a gauge on drop.
struct Counted(Gauge);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One connection, start to end: the TLS handshake when configured, then HTTP.
async fn serve(
    shared: Arc<Shared>,
    role: Listener,
    metrics: ListenerMetrics,
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
) {
    metrics.open.inc();
    let _open = Counted(metrics.open.clone());
    let _ = stream.set_nodelay(true);
    let mut stop = shared.state.guards.stopping.subscribe();
    let activity = ConnActivity::new();
    let Some(acceptor) = shared.tls.clone() else {
        let io = WatchedIo {
            inner: stream,
            activity: activity.clone(),
        };
        return drive(&shared, role, &metrics, io, activity, &mut stop).await;
    };
    let handshake = tokio::select! {
        h = tokio::time::timeout(shared.timeouts.header, acceptor.accept(stream)) => h,
        _ = stop.wait_for(|&s| s) => return metrics.closed(CloseReason::Shutdown),
    };
    match handshake {
        Ok(Ok(tls)) => {
            let io = WatchedIo {
                inner: tls,
                activity: activity.clone(),
            };
            drive(&shared, role, &metrics, io, activity, &mut stop).await;
        }
        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
        Err(_) => metrics.closed(CloseReason::HandshakeTimeout),
    }
}

/// Serve HTTP on an established stream until it ends, outstays its phase, or shutdown drops
/// it.
async fn drive<I>(
    shared: &Shared,
    role: Listener,
    metrics: &ListenerMetrics,
    io: WatchedIo<I>,
    activity: Arc<ConnActivity>,
    stop: &mut watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = shared.state.clone();
    let act = activity.clone();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = act.request_started(req.version() == Version::HTTP_2);
        let state = state.clone();
        async move {
            let _in_flight = in_flight;
            super::serve(state, role, req).await
        }
    });
    let conn = shared.builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow_and_update();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended
                    && e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout)
                {
                    // hyper's only timer left on: the HTTP/2 ping went unanswered.
                    metrics.closed(CloseReason::KeepaliveTimeout);
                }
                return;
            }
            reason = activity.expired(&shared.timeouts, stopping) => {
                metrics.closed(reason);
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                // HTTP/1.1: close after the answer in progress; HTTP/2: GOAWAY. What has
                // nothing to answer is dropped by the watch, now in its shutdown mode.
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_descriptors_for_the_rest_of_the_relay() {
        // (max_connections, nofile, lanes, admin) → (listen cap, admin cap)
        for (max, nofile, lanes, admin, want) in [
            (512, None, 4, true, (512, 64)),
            (512, Some(1_048_576), 4, true, (512, 64)),
            // ulimit -n 1024: a quarter kept, and the admin listener's 64.
            (512, Some(1024), 4, true, (512, 64)),
            (2000, Some(1024), 4, true, (704, 64)),
            (2000, Some(1024), 4, false, (768, 0)),
            // Many lanes: 64 + 8 each.
            (2000, Some(1024), 100, false, (160, 0)),
            // Hardly any descriptors: one connection at a time rather than none.
            (512, Some(64), 4, true, (1, 64)),
        ] {
            assert_eq!(
                connection_caps(max, nofile, lanes, admin),
                want,
                "{max} {nofile:?} {lanes} {admin}"
            );
        }
    }

    #[test]
    fn accept_errors_are_logged_at_most_once_per_interval() {
        let mut log = LogEvery::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.ready(t0), Some(0));
        for ms in [1, 50, 9_000] {
            assert_eq!(log.ready(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.ready(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(log.ready(t0 + Duration::from_secs(11)), None);
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(120),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_moves_between_header_request_and_idle_phases() {
        let a = ConnActivity::new();
        let t = timeouts();
        // New: the first header is owed from accepting.
        assert_eq!(
            a.deadline(&t, false).map(|d| d.1),
            Some(CloseReason::HeaderTimeout)
        );
        // A request in flight: its handler keeps time.
        let req = a.request_started(false);
        assert_eq!(a.deadline(&t, false), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(req);
        // Answered: idle from now.
        let (at, why) = a.deadline(&t, false).unwrap();
        assert_eq!(why, CloseReason::IdleTimeout);
        assert_eq!(at, Instant::now() + t.idle);
        // A byte of the next header: header time from that byte.
        tokio::time::advance(Duration::from_secs(60)).await;
        a.on_read();
        let (at, why) = a.deadline(&t, false).unwrap();
        assert_eq!(why, CloseReason::HeaderTimeout);
        assert_eq!(at, Instant::now() + t.header);
        // At shutdown a header in progress is dropped at once.
        let (at, why) = a.deadline(&t, true).unwrap();
        assert_eq!((at <= Instant::now(), why), (true, CloseReason::Shutdown));
        // The watch fires at the deadline, not before.
        let expired = tokio::time::timeout(Duration::from_secs(9), a.expired(&t, false)).await;
        assert!(expired.is_err(), "fired before the header timeout");
        let expired = tokio::time::timeout(Duration::from_secs(2), a.expired(&t, false)).await;
        assert_eq!(expired.ok(), Some(CloseReason::HeaderTimeout));
    }

    #[tokio::test(start_paused = true)]
    async fn on_http2_pings_between_requests_are_not_a_header() {
        let a = ConnActivity::new();
        let t = timeouts();
        drop(a.request_started(true));
        a.on_read();
        assert_eq!(
            a.deadline(&t, false).map(|d| d.1),
            Some(CloseReason::IdleTimeout)
        );
        // Two streams: idle only once both are answered.
        let (s1, s2) = (a.request_started(true), a.request_started(true));
        drop(s1);
        assert_eq!(a.deadline(&t, false), None);
        drop(s2);
        assert_eq!(
            a.deadline(&t, false).map(|d| d.1),
            Some(CloseReason::IdleTimeout)
        );
    }
}
