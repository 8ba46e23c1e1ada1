//! Hostile senders against the real binary on loopback: connections that send a header one
//! byte at a time, send nothing, stop mid-body or stay idle; more connections than the relay
//! has file descriptors; near-limit bodies by the hundred, over many connections or as
//! streams of one HTTP/2 connection; decompression bombs; SIGTERM while connections stall.
//!
//! Every wait is bounded and no test asserts a speed: a timeout the relay is configured with
//! is checked with a generous margin, as a functional bound.
//!
//! The `measure_*` tests are ignored: they are the probes behind the table of attacks in
//! docs/reliability.md, run with default settings against any build:
//!
//! ```sh
//! cargo build --release
//! PROMRELAY_BIN=$PWD/target/release/promrelay cargo test --release --test hostile_senders \
//!     -- --ignored --nocapture --test-threads 1 measure_
//! ```

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use promrelay::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use promrelay::tools::workload::WorkloadSpec;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// Bodies

/// A small valid request, as a Prometheus sender sends every few seconds.
fn small_body(n: u64) -> Bytes {
    Bytes::from(proto::encode_snappy(
        &WorkloadSpec {
            series: 100,
            ..Default::default()
        }
        .request(n),
    ))
}

/// A valid request of just under `limit` bytes once snappy-compressed: series with a label
/// of 60,000 pseudo-random letters each (snappy finds nothing to compress, so the decoded
/// size is about the body's). `metric` names every series.
fn near_limit_body(limit: usize, metric: &str, seed: u64) -> Bytes {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut letters = |n: usize| -> String {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (b'a' + (rng % 26) as u8) as char
            })
            .collect()
    };
    let series = |i: usize, pad: String| TimeSeries {
        labels: vec![
            Label::new("__name__", metric),
            Label::new("id", &i.to_string()),
            Label::new("pad", &pad),
        ],
        samples: vec![Sample {
            value: i as f64,
            timestamp: now_ms(),
        }],
        ..Default::default()
    };
    let mut req = WriteRequest {
        timeseries: (0..limit / 60_100)
            .map(|i| series(i, letters(60_000)))
            .collect(),
        ..Default::default()
    };
    loop {
        let body = proto::encode_snappy(&req);
        if body.len() <= limit {
            return Bytes::from(body);
        }
        req.timeseries.pop();
    }
}

/// Snappy of `decoded` zero bytes: a small body that decompresses to `decoded` bytes (up to
/// about 21 times its size) and then fails to decode as protobuf (400).
fn bomb_body(decoded: usize) -> Bytes {
    Bytes::from(
        snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; decoded])
            .unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// Well-behaved clients

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// An HTTP status, and whether `Retry-After` came with it.
    Status(u16, bool),
    /// The connection or stream ended without an answer (a sender retries these).
    NoAnswer(String),
}

impl Answer {
    /// 204, or told to retry: 429/503 with `Retry-After`, or no answer at all.
    fn taken_or_retry(&self) -> bool {
        matches!(
            self,
            Answer::Status(204, _) | Answer::Status(429 | 503, true)
        ) || matches!(self, Answer::NoAnswer(_))
    }
}

fn write_request(uri: &str, body: Bytes) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("Content-Length", body.len())
        .body(Full::new(body))
        .unwrap()
}

/// POST a remote-write body on a fresh HTTP/1.1 connection (the body is shared, not copied).
async fn post_h1(addr: SocketAddr, body: Bytes, limit: Duration) -> Answer {
    let run = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let resp = sender
            .send_request(write_request(&format!("http://{addr}/api/v1/write"), body))
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let retry = resp.headers().contains_key("retry-after");
        let _ = resp.into_body().collect().await;
        Ok::<_, String>(Answer::Status(status, retry))
    };
    match tokio::time::timeout(limit, run).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => Answer::NoAnswer(e),
        Err(_) => Answer::NoAnswer(format!("no answer within {limit:?}")),
    }
}

/// `streams` remote-write requests of `body` at once, as streams of one h2c connection.
async fn post_h2_streams(
    addr: SocketAddr,
    body: Bytes,
    streams: usize,
    limit: Duration,
) -> Vec<Answer> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let mut sender = sender.clone();
        let body = body.clone();
        tasks.spawn(async move {
            let run = async {
                sender.ready().await.map_err(|e| e.to_string())?;
                let resp = sender
                    .send_request(write_request(&format!("http://{addr}/api/v1/write"), body))
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let retry = resp.headers().contains_key("retry-after");
                let _ = resp.into_body().collect().await;
                Ok::<_, String>(Answer::Status(status, retry))
            };
            match tokio::time::timeout(limit, run).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => Answer::NoAnswer(e),
                Err(_) => Answer::NoAnswer(format!("no answer within {limit:?}")),
            }
        });
    }
    let answers = tasks.join_all().await;
    driver.abort();
    answers
}

/// Small requests, one every `every`, until `stop`: each answer and how long it took.
async fn steady_sender(
    addr: SocketAddr,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<(Answer, Duration)> {
    let mut out = Vec::new();
    let mut n = 0;
    // Bounded: at most 2,000 requests.
    while !stop.load(Ordering::Relaxed) && n < 2_000 {
        let t = Instant::now();
        let a = post_h1(addr, small_body(n), Duration::from_secs(30)).await;
        out.push((a, t.elapsed()));
        n += 1;
        tokio::time::sleep(every).await;
    }
    out
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Tally answers: `204 ×3, 503+RA ×2, no answer ×1`.
fn tally(answers: &[Answer]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for a in answers {
        let k = match a {
            Answer::Status(s, true) => format!("{s}+Retry-After"),
            Answer::Status(s, false) => s.to_string(),
            Answer::NoAnswer(_) => "no answer".to_string(),
        };
        *counts.entry(k).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Hostile connections

/// When and how the relay ended a stalled connection.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Closed {
    /// Since the connection was opened.
    after: Duration,
    /// Whether anything was sent first (an answer); a dropped request gets nothing.
    answered: bool,
}

/// Wait (bounded by `until`) for the relay to close `s`. Bytes it sends first (an answer) are
/// read and noted.
async fn closed_by_peer(s: &mut TcpStream, since: Instant, until: Instant) -> Option<Closed> {
    let mut buf = [0u8; 4096];
    let mut answered = false;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some(Closed {
                    after: since.elapsed(),
                    answered,
                });
            }
            Ok(Ok(_)) => answered = true,
        }
    }
}

/// Kinds of stalled connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// Connects and sends nothing.
    Silent,
    /// Sends a request header one byte every `SLOW_BYTE`, never finishing it.
    SlowHeader,
    /// Sends a complete header announcing 1,000 body bytes, then 10 of them.
    MidBody,
    /// As `MidBody`, announcing 1 MiB: holds that much of the in-flight body budget.
    HoldsBudget,
    /// Sends one complete request (`/-/healthy` or a small write), reads the answer, then
    /// stays connected without a word.
    KeptAlive,
}

const SLOW_BYTE: Duration = Duration::from_millis(1000);

/// Open one stalled connection of `kind` to `addr` (on the admin listener when `admin`), and
/// report when the relay closed it (None: still open at `until`). The kept-alive one's own
/// answer is read before it stalls; `answered` is about what came after.
async fn stall(
    addr: SocketAddr,
    kind: Stall,
    admin: bool,
    until: Instant,
) -> Result<Option<Closed>, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    match kind {
        Stall::Silent => {}
        Stall::SlowHeader => {
            let header = b"POST /api/v1/write HTTP/1.1\r\nHost: relay\r\nX-Slow: ";
            let mut i = 0;
            loop {
                let byte = header.get(i).copied().unwrap_or(b'a');
                i += 1;
                if s.write_all(&[byte]).await.is_err() {
                    return Ok(Some(Closed {
                        after: start.elapsed(),
                        answered: false,
                    }));
                }
                let next = (Instant::now() + SLOW_BYTE).min(until);
                if let Some(t) = closed_by_peer(&mut s, start, next).await {
                    return Ok(Some(t));
                }
                if Instant::now() >= until {
                    return Ok(None);
                }
            }
        }
        Stall::MidBody | Stall::HoldsBudget => {
            let length = if kind == Stall::MidBody {
                1000
            } else {
                1 << 20
            };
            let head = format!(
                "POST /api/v1/write HTTP/1.1\r\nHost: relay\r\nContent-Encoding: snappy\r\n\
                 Content-Type: application/x-protobuf\r\nContent-Length: {length}\r\n\r\n{}",
                "x".repeat(10)
            );
            s.write_all(head.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
        }
        Stall::KeptAlive => {
            let req = if admin {
                "GET /-/healthy HTTP/1.1\r\nHost: relay\r\n\r\n".to_string()
            } else {
                "GET /-/nothing-here HTTP/1.1\r\nHost: relay\r\n\r\n".to_string()
            };
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            // Read the answer (headers and a short body), then idle.
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .map_err(|_| "no answer to the kept-alive request".to_string())?
                .map_err(|e| e.to_string())?;
            if !buf[..n].starts_with(b"HTTP/1.1 ") {
                return Err(format!(
                    "unexpected answer {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ));
            }
        }
    }
    Ok(closed_by_peer(&mut s, start, until).await)
}

/// The relay's admin address from a config that sets `admin_listen`.
fn admin_config(port: u16) -> String {
    format!("  admin_listen: \"127.0.0.1:{port}\"\n")
}

/// Config for the probes: a task whose filter keeps nothing, so a request is decoded and
/// filtered but nothing is queued (what is measured is ingest alone).
const DECODE_ONLY: &str = r#"
tasks:
  - name: decode-only
    filter: "__name__=kept_by_no_probe"
    targets:
      - {name: nowhere, type: file, path: /dev/null}
"#;

/// Extra `server:` keys for a probe, from `PROBE_SERVER` (e.g. `inflight_body_wait: 0s`), to
/// compare settings with the same probe; none by default.
fn probe_server_keys() -> String {
    std::env::var("PROBE_SERVER")
        .map(|v| {
            v.split(';')
                .map(|kv| format!("  {}\n", kv.trim()))
                .collect()
        })
        .unwrap_or_default()
}

/// A latency summary: median, p90, max, and how many took over 100 ms.
fn latencies(v: &[(Answer, Duration)]) -> String {
    let d: Vec<Duration> = v.iter().map(|(_, d)| *d).collect();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "median {:.1} ms, p90 {:.1} ms, max {:.1} ms, {} over 100 ms",
        ms(percentile(d.clone(), 0.5)),
        ms(percentile(d.clone(), 0.9)),
        ms(percentile(d.clone(), 1.0)),
        d.iter()
            .filter(|d| **d > Duration::from_millis(100))
            .count()
    )
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

// ---------------------------------------------------------------------------------------------
// Tests

/// A stream that can be frozen: once frozen it neither reads nor writes, as a peer that hangs
/// with its socket open.
struct Freezable {
    inner: TcpStream,
    frozen: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for Freezable {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.frozen.load(Ordering::Relaxed) {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Freezable {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.frozen.load(Ordering::Relaxed) {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request body sent piece by piece, as the test decides.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// `promrelay_http_connections_closed_total` for a listener and reason (0 when absent).
async fn closed_count(relay: &Relay, listener: &str, reason: &str) -> f64 {
    relay
        .metric(&format!(
            "promrelay_http_connections_closed_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
        ))
        .await
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_by_their_timeout_while_normal_requests_answer() {
    let admin = free_port();
    let relay = Relay::start(&format!(
        r#"{}  header_read_timeout: 2s
  body_read_timeout: 3s
  idle_timeout: 3s
tasks:
  - name: all
    targets:
      - {{name: file, type: file, path: "{{dir}}/out.jsonl"}}
"#,
        admin_config(admin)
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let steady = tokio::spawn(steady_sender(
        addr(relay.port),
        Duration::from_millis(100),
        stop.clone(),
    ));
    let until = Instant::now() + Duration::from_secs(20);
    let mut attackers = tokio::task::JoinSet::new();
    let plan = [
        (relay.port, false, Stall::SlowHeader, 20),
        (relay.port, false, Stall::Silent, 20),
        (relay.port, false, Stall::MidBody, 20),
        (relay.port, false, Stall::KeptAlive, 20),
        (admin, true, Stall::SlowHeader, 10),
        (admin, true, Stall::Silent, 10),
        (admin, true, Stall::KeptAlive, 10),
    ];
    for (port, is_admin, kind, n) in plan {
        for _ in 0..n {
            attackers.spawn(async move {
                (
                    is_admin,
                    kind,
                    stall(addr(port), kind, is_admin, until).await,
                )
            });
        }
    }
    let results = attackers.join_all().await;
    stop.store(true, Ordering::Relaxed);
    let steady = steady.await.unwrap();

    for (is_admin, kind, r) in results {
        let closed = r.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let Some(closed) = closed else {
            panic!("{kind:?} (admin: {is_admin}) still open after 20 s");
        };
        // The relay's bound for this kind, with a margin either side.
        let bound = match kind {
            Stall::Silent | Stall::SlowHeader => 2.0,
            Stall::MidBody | Stall::HoldsBudget => 3.0,
            Stall::KeptAlive => 3.0,
        };
        let t = closed.after.as_secs_f64();
        assert!(
            t >= bound * 0.75 && t <= bound + 5.0,
            "{kind:?} (admin: {is_admin}) closed after {t:.1} s; its timeout is {bound} s"
        );
        assert!(
            !closed.answered,
            "{kind:?} (admin: {is_admin}) was answered before being closed"
        );
    }
    assert!(!steady.is_empty());
    for (answer, _) in &steady {
        assert_eq!(
            *answer,
            Answer::Status(204, false),
            "a normal write meanwhile"
        );
    }
    for (listener, reason, at_least) in [
        ("listen", "header_timeout", 40.0),
        ("listen", "body_timeout", 20.0),
        ("listen", "idle_timeout", 20.0),
        ("admin_listen", "header_timeout", 20.0),
        ("admin_listen", "idle_timeout", 10.0),
    ] {
        let n = closed_count(&relay, listener, reason).await;
        assert!(
            n >= at_least,
            "{listener} {reason}: {n} closed, want at least {at_least}"
        );
    }
    // Counted, not logged once per connection.
    let log = relay.proc.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("timeout") || l.contains("WARN"))
        .count();
    assert!(lines <= 2, "{lines} log lines about timeouts:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_are_closed_when_idle_or_when_pings_go_unanswered() {
    let relay = Relay::start(
        r#"  idle_timeout: 2s
  header_read_timeout: 60s
  body_read_timeout: 60s
  http2_keepalive_interval: 1s
  http2_keepalive_timeout: 1s
tasks:
  - name: all
    targets:
      - {name: file, type: file, path: "{dir}/out.jsonl"}
"#,
    )
    .await;

    // Idle: one request answered, then nothing; the relay ends the connection (the client's
    // connection future completes).
    let stream = TcpStream::connect(addr(relay.port)).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let resp = sender
        .send_request(write_request(
            &format!("http://127.0.0.1:{}/api/v1/write", relay.port),
            small_body(0),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let t = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(15), driver).await;
    assert!(
        ended.is_ok(),
        "an idle HTTP/2 connection was still open after 15 s"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "closed after {:?}, before its idle timeout",
        t.elapsed()
    );
    relay
        .wait_metric(
            "promrelay_http_connections_closed_total{listener=\"listen\",reason=\"idle_timeout\"}",
            "the idle HTTP/2 connection counted",
            |v| v >= 1.0,
        )
        .await;

    // Unanswered pings: a stream whose body is half sent (so the connection is not idle and
    // its body deadline is a minute away), then the peer hangs with its socket open.
    let frozen = Arc::new(AtomicBool::new(false));
    let stream = Freezable {
        inner: TcpStream::connect(addr(relay.port)).await.unwrap(),
        frozen: frozen.clone(),
    };
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let (body_tx, body) = tokio::sync::mpsc::channel(1);
    let body = ChannelBody(body);
    let req = Request::post(format!("http://127.0.0.1:{}/api/v1/write", relay.port))
        .header("Content-Encoding", "snappy")
        .header("Content-Length", "1000")
        .body(body)
        .unwrap();
    let pending = tokio::spawn(async move { sender.send_request(req).await.map(|r| r.status()) });
    body_tx
        .send(Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    frozen.store(true, Ordering::Relaxed);
    relay
        .wait_metric(
            "promrelay_http_connections_closed_total{listener=\"listen\",reason=\"keepalive_timeout\"}",
            "the hung HTTP/2 peer cut off by its unanswered ping",
            |v| v >= 1.0,
        )
        .await;
    assert_eq!(
        closed_count(&relay, "listen", "body_timeout").await,
        0.0,
        "the ping, not the body deadline, ended it"
    );
    pending.abort();
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_more_connections_than_descriptors_answers_without_the_attacker_letting_go() {
    let (soft, hard) = nofile_of_this_process();
    assert!(
        soft >= 2_000,
        "this test opens 1,100 connections and needs `ulimit -n` of at least 2000 (soft {soft}, hard {hard})"
    );
    let admin = free_port();
    let relay = Relay::start_under(
        &["prlimit", "--nofile=1024:1024"],
        &format!(
            "{}  header_read_timeout: 2s\n{DECODE_ONLY}",
            admin_config(admin)
        ),
    )
    .await;
    // 1,100 connections that send nothing, held to the end of the test.
    let mut held = Vec::new();
    for _ in 0..1_100 {
        let s = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect(addr(relay.port)),
        )
        .await
        .unwrap_or_else(|_| panic!("connect within 10 s ({} held)", held.len()))
        .expect("connect");
        held.push(s);
    }
    // The admin listener answers at once: its descriptors were kept in reserve.
    let healthy = tokio::time::timeout(
        Duration::from_secs(10),
        get(&format!("http://127.0.0.1:{admin}/-/healthy")),
    )
    .await
    .expect("/-/healthy within 10 s")
    .expect("/-/healthy");
    assert_eq!(healthy.status, 200);
    // Ingest answers again once the silent connections ahead of it in the backlog have been
    // cut off by the header timeout, a slot at a time.
    let w = post_h1(addr(relay.port), small_body(0), Duration::from_secs(60)).await;
    assert_eq!(
        w,
        Answer::Status(204, false),
        "a normal write behind 1,100 silent connections"
    );
    let open = relay
        .metric("promrelay_http_connections{listener=\"listen\"}")
        .await
        .expect("connections gauge");
    assert!(
        open <= 512.0,
        "{open} connections open, above max_connections"
    );
    let cut = closed_count(&relay, "listen", "header_timeout").await;
    assert!(
        cut >= 512.0,
        "only {cut} silent connections cut off by the relay"
    );
    let log = relay.proc.log_text();
    let accept_lines = log.lines().filter(|l| l.contains("accept failed")).count();
    assert!(
        accept_lines <= 1,
        "{accept_lines} accept errors logged:\n{log}"
    );
    assert_eq!(held.len(), 1_100, "the attacker held on throughout");
}

/// A relay started under a distribution's default soft limit of 1,024 open files raises it to
/// the hard limit. With 40 remote_write targets (160 lanes, 8 descriptors kept in reserve for
/// each), a soft limit of 1,024 leaves room for one connection: the write below would wait
/// behind four idle connections for their 60 s header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_raises_its_soft_open_files_limit_so_many_targets_leave_room_for_connections() {
    let (_, hard) = nofile_of_this_process();
    assert!(
        hard >= 4_096,
        "this test starts the relay with `prlimit --nofile=1024:4096` and needs a hard limit of at least 4096 (hard {hard})"
    );
    let targets: String = (0..40)
        .map(|i| {
            format!(
                "      - {{name: t{i}, type: remote_write, url: \"http://127.0.0.1:9/w{i}\"}}\n"
            )
        })
        .collect();
    let relay = Relay::start_under(
        &["prlimit", "--nofile=1024:4096"],
        &format!(
            "  header_read_timeout: 60s\ntasks:\n  - name: many\n    filter: \"__name__=kept_by_no_probe\"\n    targets:\n{targets}"
        ),
    )
    .await;
    let (soft, _) = nofile_of(&relay.proc.child.id().to_string());
    assert_eq!(soft, 4096, "the relay's soft limit");
    let log = relay.proc.log_text();
    assert!(
        log.contains("raised the open-files limit (ulimit -n) from 1024 to 4096"),
        "{log}"
    );
    assert!(!log.contains("max_connections lowered"), "{log}");
    // Four connections that send nothing, held to the end; then a write on a fifth.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr(relay.port)).await.expect("connect"));
    }
    let w = post_h1(addr(relay.port), small_body(0), Duration::from_secs(30)).await;
    assert_eq!(
        w,
        Answer::Status(204, false),
        "a write beside four idle connections"
    );
    assert_eq!(held.len(), 4);
}

/// This process's open-files limit (soft, hard), from /proc.
fn nofile_of_this_process() -> (u64, u64) {
    nofile_of("self")
}

/// The open-files limit (soft, hard) of process `pid` (or `self`), from /proc.
fn nofile_of(pid: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut n = line["Max open files".len()..]
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
    (n.next().unwrap(), n.next().unwrap())
}

/// Budget and margin of the memory test: bodies of 4 MiB, 32 MiB of them in flight at once.
const BODY_LIMIT: usize = 4 << 20;
const BUDGET: u64 = 32 << 20;
/// What the relay holds besides the bodies it is reading: two decode threads and two shards,
/// each with a decode buffer of one body and its batch (4 × 2 × 4 MiB), hyper's buffers for
/// 200 connections (~64 KiB each), and the allocator's slack. A relay without a budget holds
/// 200 × 4 MiB = 800 MiB here.
const MARGIN: u64 = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_limit_bodies_by_the_hundred_stay_within_the_inflight_budget() {
    let relay = Relay::start(&format!(
        "  shards: 2\n  max_body_bytes: {BODY_LIMIT}\n  max_inflight_body_bytes: {BUDGET}\n{DECODE_ONLY}"
    ))
    .await;
    let body = near_limit_body(BODY_LIMIT - 1024, "hostile", 3);
    // Warm: a few bodies one at a time, so the baseline includes the relay's working buffers.
    for _ in 0..4 {
        let a = post_h1(addr(relay.port), body.clone(), Duration::from_secs(30)).await;
        assert_eq!(a, Answer::Status(204, false));
    }
    let base = relay.peak_rss_bytes();

    // 200 connections, each a near-limit body, at once; a normal sender meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let steady = tokio::spawn(steady_sender(
        addr(relay.port),
        Duration::from_millis(100),
        stop.clone(),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let body = body.clone();
        let port = relay.port;
        tasks.spawn(async move { post_h1(addr(port), body, Duration::from_secs(60)).await });
    }
    let h1 = tasks.join_all().await;
    // One HTTP/2 connection, 200 such streams.
    let h2 = post_h2_streams(addr(relay.port), body.clone(), 200, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    let steady = steady.await.unwrap();

    let peak = relay.peak_rss_bytes();
    eprintln!(
        "HTTP/1.1: {}; HTTP/2: {}; normal writes: {}; peak RSS {} MiB (baseline {} MiB)",
        tally(&h1),
        tally(&h2),
        tally(&steady.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>()),
        peak >> 20,
        base >> 20
    );
    for a in h1.iter().chain(&h2) {
        assert!(
            a.taken_or_retry(),
            "answered {a:?}: neither taken nor told to retry"
        );
    }
    assert!(h1.contains(&Answer::Status(204, false)));
    assert!(h2.contains(&Answer::Status(204, false)));
    for (a, _) in &steady {
        assert!(a.taken_or_retry(), "a normal write answered {a:?}");
    }
    assert!(
        peak <= base + BUDGET + MARGIN,
        "peak RSS {} MiB above baseline {} MiB + budget {} MiB + margin {} MiB",
        peak >> 20,
        base >> 20,
        BUDGET >> 20,
        MARGIN >> 20
    );
    // Every reservation was given back, and the large bodies were decoded off the workers.
    assert_eq!(
        relay.metric("promrelay_inflight_body_bytes").await,
        Some(0.0)
    );
    let offloaded = relay
        .metric("promrelay_decode_offloaded_requests_total")
        .await
        .unwrap_or(0.0);
    assert!(offloaded >= 4.0, "{offloaded} requests decoded on the pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_stalled_connections_exits_at_once_and_loses_nothing_answered() {
    // Default timeouts and shutdown_timeout (30 s): only shutdown itself can end the stalls.
    // The body budget is 1 MiB and a request waits up to a minute for room, so one stalled
    // body holds it all and the mid-body requests after it wait for room, their bodies unread:
    // shutdown must end the waits as well as the reads.
    let mut relay = Relay::start(
        r#"  max_body_bytes: 1048576
  max_inflight_body_bytes: 1048576
  inflight_body_wait: 60s
tasks:
  - name: all
    targets:
      - {name: file, type: file, path: "{dir}/out.jsonl"}
"#,
    )
    .await;
    let port = relay.port;
    let mut samples = 0;
    for n in 0..20 {
        let a = post_h1(addr(port), small_body(n), Duration::from_secs(30)).await;
        assert_eq!(a, Answer::Status(204, false));
        samples += 100; // small_body: 100 series of one sample
    }
    let until = Instant::now() + Duration::from_secs(60);
    let mut stalled = tokio::task::JoinSet::new();
    stalled.spawn(async move {
        let kind = Stall::HoldsBudget;
        (kind, stall(addr(port), kind, false, until).await)
    });
    relay
        .wait_metric(
            "promrelay_inflight_body_bytes",
            "the budget held by the stalled body",
            |v| v == 1048576.0,
        )
        .await;
    // The mid-body ones now wait for room rather than read.
    for kind in [
        Stall::SlowHeader,
        Stall::MidBody,
        Stall::KeptAlive,
        Stall::Silent,
    ] {
        for _ in 0..2 {
            stalled.spawn(async move { (kind, stall(addr(port), kind, false, until).await) });
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = std::time::Instant::now();
    let (status, relay) = tokio::task::spawn_blocking(move || {
        let status = relay.proc.terminate(Duration::from_secs(40));
        (status, relay)
    })
    .await
    .unwrap();
    let took = t.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}:\n{}",
        relay.proc.log_text()
    );
    // Waiting for the stalls would take the whole shutdown_timeout (30 s).
    assert!(
        took < Duration::from_secs(15),
        "SIGTERM took {took:?} with stalled connections:\n{}",
        relay.proc.log_text()
    );
    for (kind, r) in stalled.join_all().await {
        let closed = r.unwrap().unwrap_or_else(|| panic!("{kind:?} still open"));
        assert!(
            !closed.answered,
            "{kind:?} was answered: it should be dropped unanswered"
        );
    }
    let out = std::fs::read_to_string(relay.dir.path().join("out.jsonl")).unwrap_or_default();
    assert_eq!(
        out.lines().count(),
        samples,
        "every sample answered 204 is in the file target"
    );
}

// ---------------------------------------------------------------------------------------------
// Measurements (ignored; default settings; see the module docs)

/// Slow-header, silent, mid-body and kept-alive connections on both listeners, with default
/// settings: when (if at all) the relay closes each, watched for `PROBE_SECS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement probe for docs/reliability.md"]
async fn measure_stalled_connections() {
    let watch: u64 = std::env::var("PROBE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(130);
    let admin = free_port();
    let relay = Relay::start(&format!("{}{DECODE_ONLY}", admin_config(admin))).await;
    let until = Instant::now() + Duration::from_secs(watch);
    let mut tasks = tokio::task::JoinSet::new();
    // 500 slow headers on ingest, plus 5 of each kind on each listener.
    let port = relay.port;
    for i in 0..500 {
        tasks.spawn(async move {
            (
                ("ingest", Stall::SlowHeader, i),
                stall(addr(port), Stall::SlowHeader, false, until).await,
            )
        });
    }
    for (listener, port, is_admin) in [("ingest", relay.port, false), ("admin", admin, true)] {
        for kind in [
            Stall::Silent,
            Stall::SlowHeader,
            Stall::MidBody,
            Stall::KeptAlive,
        ] {
            for i in 0..5 {
                tasks.spawn(async move {
                    (
                        (listener, kind, 1000 + i),
                        stall(addr(port), kind, is_admin, until).await,
                    )
                });
            }
        }
    }
    let results = tasks.join_all().await;
    let mut summary = std::collections::BTreeMap::<(String, String), Vec<Option<Closed>>>::new();
    for ((listener, kind, i), r) in results {
        let kind = if kind == Stall::SlowHeader && i < 1000 {
            "SlowHeader x500".to_string()
        } else {
            format!("{kind:?}")
        };
        summary
            .entry((listener.to_string(), kind))
            .or_default()
            .push(r.unwrap_or_else(|e| panic!("{e}")));
    }
    for ((listener, kind), v) in summary {
        let closed: Vec<Duration> = v.iter().flatten().map(|c| c.after).collect();
        println!(
            "{listener:6} {kind:16}: {} of {} closed by the relay within {watch} s{}",
            closed.len(),
            v.len(),
            if closed.is_empty() {
                String::new()
            } else {
                format!(
                    " (after {:.1}–{:.1} s)",
                    closed.iter().min().unwrap().as_secs_f64(),
                    closed.iter().max().unwrap().as_secs_f64()
                )
            }
        );
    }
    let log = relay.proc.log_text();
    println!("relay log: {} lines", log.lines().count());
}

/// 1,100 silent connections against a relay limited to 1,024 file descriptors: whether
/// `/-/healthy` (admin) and a small write (ingest) are answered while the attacker holds on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement probe for docs/reliability.md"]
async fn measure_descriptor_exhaustion() {
    let admin = free_port();
    let relay = Relay::start_under(
        &["prlimit", "--nofile=1024:1024"],
        &format!("{}{DECODE_ONLY}", admin_config(admin)),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..1_100 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr(relay.port))).await
        {
            held.push(s);
        }
    }
    println!("attacker holds {} connections", held.len());
    let t = Instant::now();
    let healthy = tokio::time::timeout(
        Duration::from_secs(10),
        get(&format!("http://127.0.0.1:{admin}/-/healthy")),
    )
    .await;
    println!(
        "/-/healthy on admin: {:?} after {:.1} s",
        healthy
            .as_ref()
            .map(|r| r.as_ref().map(|r| r.status.as_u16())),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let w = post_h1(addr(relay.port), small_body(0), Duration::from_secs(60)).await;
    println!(
        "small write on ingest: {w:?} after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let log = relay.proc.log_text();
    println!(
        "log lines with \"accept\": {}; the attacker's connections still open on its side: {}",
        log.lines().filter(|l| l.contains("accept")).count(),
        held.len()
    );
}

/// 200 connections each sending a body just under `max_body_bytes` (32 MiB) at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement probe for docs/reliability.md"]
async fn measure_near_limit_bodies() {
    let conns: usize = std::env::var("PROBE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let relay = Relay::start(&format!("{}{DECODE_ONLY}", probe_server_keys())).await;
    let body = near_limit_body((32 << 20) - 4096, "probe", 1);
    let base = relay.peak_rss_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let small = tokio::spawn(steady_sender(
        addr(relay.port),
        Duration::from_millis(50),
        stop.clone(),
    ));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let body = body.clone();
        let port = relay.port;
        tasks.spawn(async move { post_h1(addr(port), body, Duration::from_secs(300)).await });
    }
    let answers = tasks.join_all().await;
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let small = small.await.unwrap();
    println!(
        "{conns} bodies of {} bytes: {} in {:.1} s; peak RSS {} MiB (before: {} MiB); \
         small writes meanwhile: {}, {}",
        body.len(),
        tally(&answers),
        took.as_secs_f64(),
        relay.peak_rss_bytes() >> 20,
        base >> 20,
        tally(&small.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>()),
        latencies(&small),
    );
}

/// One h2c connection with 200 streams of 8 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement probe for docs/reliability.md"]
async fn measure_h2_streams() {
    let relay = Relay::start(&format!("{}{DECODE_ONLY}", probe_server_keys())).await;
    let body = near_limit_body(8 << 20, "probe", 2);
    let base = relay.peak_rss_bytes();
    let t = Instant::now();
    let answers = post_h2_streams(
        addr(relay.port),
        body.clone(),
        200,
        Duration::from_secs(300),
    )
    .await;
    println!(
        "200 h2 streams of {} bytes: {} in {:.1} s; peak RSS {} MiB (before: {} MiB)",
        body.len(),
        tally(&answers),
        t.elapsed().as_secs_f64(),
        relay.peak_rss_bytes() >> 20,
        base >> 20
    );
}

/// 40 decompression bombs at once (each 255 MiB decoded, refused with 400), and a small
/// write every 20 ms meanwhile: how long the small writes take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement probe for docs/reliability.md"]
async fn measure_bombs() {
    let relay = Relay::start(&format!("{}{DECODE_ONLY}", probe_server_keys())).await;
    let bomb = bomb_body(255 << 20);
    let stop = Arc::new(AtomicBool::new(false));
    // Warm up, then measure the small request alone.
    let alone = steady_sender(addr(relay.port), Duration::from_millis(20), stop.clone());
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let alone = alone.await;
    stopper.await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let small = tokio::spawn(steady_sender(
        addr(relay.port),
        Duration::from_millis(20),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let bomb = bomb.clone();
        let port = relay.port;
        tasks.spawn(async move { post_h1(addr(port), bomb, Duration::from_secs(120)).await });
    }
    let answers = tasks.join_all().await;
    let bombs_took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let small = small.await.unwrap();
    println!(
        "40 bombs of {} bytes ({}) in {:.2} s; small writes alone: {}; during the bombs ({}): {}; \
         peak RSS {} MiB",
        bomb.len(),
        tally(&answers),
        bombs_took.as_secs_f64(),
        latencies(&alone),
        tally(&small.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>()),
        latencies(&small),
        relay.peak_rss_bytes() >> 20,
    );
}

/// SIGTERM with two stalled connections (a slow header, a body stopped half-way): how long
/// the relay takes to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement probe for docs/reliability.md"]
async fn measure_sigterm_with_stalled_connections() {
    let mut relay = Relay::start(DECODE_ONLY).await;
    let until = Instant::now() + Duration::from_secs(120);
    let port = relay.port;
    let a = tokio::spawn(stall(addr(port), Stall::SlowHeader, false, until));
    let b = tokio::spawn(stall(addr(port), Stall::MidBody, false, until));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = relay.proc.terminate(Duration::from_secs(120));
        (s, relay)
    })
    .await
    .unwrap();
    println!(
        "SIGTERM with 2 stalled connections: exited {:?} after {:.1} s",
        status.0,
        t.elapsed().as_secs_f64()
    );
    a.abort();
    b.abort();
}
