//! The HTTP source: remote-write ingest per named source path, plus the self-metrics and health
//! endpoints served beside it. `config.rs` holds the source's keys, `conn.rs` the listener side
//! (accepting under a cap, one task per connection, its timeouts, shutdown), `tls.rs` HTTPS,
//! `limits.rs` what bounds a body (the in-flight budget, the read deadline), `offload.rs` the
//! decode threads for large bodies; this file routes and answers requests.
//!
//! Answers follow the remote-write 1.0 spec, so senders retry exactly what is worth retrying:
//!
//! | answer | when |
//! |---|---|
//! | 204 | the request was taken by every task's targets |
//! | 400 | the body does not decode (bad snappy or protobuf, a series without labels, an empty or duplicate label name, invalid UTF-8; for 2.0 also a non-empty `symbols[0]`, a ref out of range or unpaired, a series with samples and histograms, an exemplar without timestamp), or exceeds an input limit (`max_series_per_request`, `max_labels_per_series`, `max_label_name_bytes`, `max_label_value_bytes`; the answer names it) |
//! | 401 + `WWW-Authenticate` | the source requires credentials and the request lacks the right ones |
//! | 404 | unknown path or source |
//! | 405 | wrong method (`Allow` says which) |
//! | 413 | body over `max_body_bytes`, or a plausible snappy header declaring more than `max_decoded_bytes` (a header claiming more than its body could hold at all is junk: 400) |
//! | 415 | `Content-Encoding` other than snappy, or a `Content-Type`/`proto=` that is neither remote-write 1.0 (`application/x-protobuf`, optionally `;proto=prometheus.WriteRequest`) nor 2.0 (`;proto=io.prometheus.write.v2.Request`) |
//!
//! Every answer to a write carries `X-Prometheus-Remote-Write-Samples-Written`,
//! `-Histograms-Written` and `-Exemplars-Written` (the 2.0 spec requires them; 1.0 senders
//! ignore them): what the request delivered on a 2xx, 0 on any other answer.
//! | 400 | `ack: delivered` only: a target refused the data for good (its 4xx) or dropped it |
//! | 503 (or 429) + `Retry-After` | a target queue or spool is full |
//! | 503 + `Retry-After` | a spool write failed, or an `ack: spooled`/`delivered` wait passed `server.ack_timeout` |
//!
//! 503 is the default backpressure answer because Prometheus 2.42 retries every 5xx but drops a
//! batch answered 429 unless `retry_on_http_429` is set in its `queue_config`.

mod config;
mod conn;
mod limits;
mod nofile;
mod offload;
mod tls;

pub use config::RawSource;
pub use conn::{HttpServer, bind};
pub use limits::IngestGuards;
pub use nofile::{OpenFilesLimit, raise_open_files_limit};
pub use tls::{TlsError, server_tls};

use crate::admin::Live;
use crate::config::ServerConfig;
use crate::decode::Protocol;
use crate::pipeline::{IngestError, Pipeline};
use crate::telemetry::{Format, Metrics};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Ingest and admin (no `admin_listen` configured).
    Both,
    /// Ingest only (`/metrics` and health live on `admin_listen`).
    Ingest,
    /// `/metrics`, `/-/healthy`, `/-/ready` only.
    Admin,
}

/// What every request handler shares.
pub struct IngestState {
    /// The tasks and targets that run now; each request loads the pipeline once.
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// False once shutdown has begun: `/-/ready` answers 503.
    pub ready: AtomicBool,
    /// The admin endpoints are bound to a loopback address (changes are allowed there
    /// without `server.admin` credentials).
    pub admin_loopback: bool,
    /// The body budget, the decode pool, the shutdown signal.
    pub guards: IngestGuards,
    /// The server settings the listeners were started with (addresses, connection caps and
    /// timeouts, the body budget: what a reload cannot change). Per-request settings come from
    /// the pipeline the request runs on.
    pub server: ServerConfig,
}

/// A request dropped without an answer: hyper closes its HTTP/1.1 connection or resets its
/// HTTP/2 stream, and the sender retries.
#[derive(Debug, thiserror::Error)]
#[error("request dropped unanswered: {0}")]
pub struct Unanswered(&'static str);

/// Whether `path` is one of the admin endpoints (served on `server.admin.listen` when set).
pub fn is_admin_path(path: &str) -> bool {
    matches!(
        path,
        "/" | "/metrics" | "/-/healthy" | "/-/ready" | "/-/reload" | "/api/v1/status"
    ) || path == "/api/v1/tasks"
        || path.starts_with("/api/v1/tasks/")
        || path.starts_with("/tasks/")
}

/// Compare without an early exit, so the time taken does not reveal how much of a secret
/// matched (the length may show; the secret's content does not).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an `Authorization` header value carries `expected` (`Scheme credentials`): the
/// scheme compared without regard to case, as RFC 7235 says (`bearer`, `BASIC`), then one or
/// more spaces, then the credentials, compared exactly and in constant time.
pub fn authorized(given: &[u8], expected: &str) -> bool {
    let Some((scheme, credentials)) = expected.split_once(' ') else {
        return false;
    };
    let Some(space) = given.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (given_scheme, rest) = given.split_at(space);
    let given_credentials = rest.trim_ascii_start();
    given_scheme.eq_ignore_ascii_case(scheme.as_bytes())
        & constant_time_eq(given_credentials, credentials.as_bytes())
}

/// An answer: small bodies, built whole.
pub(crate) type Resp = Response<Full<Bytes>>;

/// A plain-text answer (a line, newline-terminated).
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut body = body.into();
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// 405 with the `Allow` header.
pub(crate) fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// What a listener answers: a tap's stream (see [`crate::admin::tap`]), or any other answer
/// from [`handle`]. Never fails: every problem is an HTTP answer.
pub async fn serve(
    state: Arc<IngestState>,
    role: Listener,
    req: Request<Incoming>,
) -> Result<Response<crate::admin::tap::AnyBody>, Unanswered> {
    let tap_task = req
        .uri()
        .path()
        .strip_prefix("/api/v1/tasks/")
        .and_then(|rest| rest.strip_suffix("/tap"))
        .filter(|name| !name.contains('/'))
        .and_then(crate::admin::page::decode_segment);
    if let Some(name) = tap_task
        && role != Listener::Ingest
        && req.method() == Method::GET
    {
        if let Some(refused) = crate::admin::api::authorize(&state.live, &req) {
            return Ok(refused.map(BodyExt::boxed_unsync));
        }
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        return Ok(crate::admin::tap::tap(
            &state.live,
            &name,
            req.uri().query(),
            accept,
        ));
    }
    Ok(handle(state, role, req).await?.map(BodyExt::boxed_unsync))
}

/// Route and answer one request. Every problem is an HTTP answer, but for a body that stalls
/// or a shutdown that begins while it arrives ([`Unanswered`]).
///
/// # Errors
/// [`Unanswered`]: hyper drops the request without answering it.
pub async fn handle(
    state: Arc<IngestState>,
    role: Listener,
    req: Request<Incoming>,
) -> Result<Resp, Unanswered> {
    let path = req.uri().path();
    let admin_path = is_admin_path(path);
    if role == Listener::Admin && !admin_path {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "not found; this is the admin address: / (status page), /metrics, /-/healthy, /-/ready, /-/reload, /api/v1/tasks, /api/v1/status",
        ));
    }
    if role == Listener::Ingest && admin_path {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "not found; /metrics and the admin endpoints are served on server.admin.listen",
        ));
    }
    let source = if path == "/api/v1/write" {
        Some("default")
    } else {
        path.strip_prefix("/sources/")
            .and_then(|rest| rest.strip_suffix("/api/v1/write"))
            .filter(|name| !name.is_empty() && !name.contains('/'))
    };
    if let Some(name) = source {
        if req.method() != Method::POST {
            return Ok(method_not_allowed("POST"));
        }
        let pipeline = state.live.pipeline();
        let Some(index) = pipeline.source(name) else {
            return Ok(text(
                StatusCode::NOT_FOUND,
                format!("unknown source {name:?}"),
            ));
        };
        if pipeline.source_reads_kafka(index) {
            return Ok(text(
                StatusCode::NOT_FOUND,
                format!("source {name:?} reads Kafka; it takes no HTTP writes"),
            ));
        }
        let name = name.to_owned();
        let started = std::time::Instant::now();
        if let Some(expected) = pipeline.source_auth(index) {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !authorized(given, expected) {
                state.metrics.refused(&name, "unauthorized");
                state
                    .metrics
                    .request(&name, 401, started.elapsed().as_secs_f64());
                let mut r = text(
                    StatusCode::UNAUTHORIZED,
                    format!("source {name:?} requires credentials"),
                );
                let scheme = if expected.starts_with("Bearer ") {
                    "Bearer"
                } else {
                    "Basic realm=\"promrelay\""
                };
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
                return Ok(r);
            }
        }
        let resp = write(&state, &pipeline, index, &name, req).await?;
        state.metrics.request(
            &name,
            resp.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        return Ok(resp);
    }
    if admin_path && !matches!(path, "/-/healthy" | "/-/ready") {
        if let Some(refused) = crate::admin::api::authorize(&state.live, &req) {
            return Ok(refused);
        }
        if path != "/metrics" {
            return Ok(crate::admin::api::handle(&state.live, state.admin_loopback, req).await);
        }
    }
    let resp = match path {
        "/metrics" | "/-/healthy" | "/-/ready"
            if req.method() != Method::GET && req.method() != Method::HEAD =>
        {
            method_not_allowed("GET")
        }
        "/metrics" => {
            for t in state.live.pipeline().targets() {
                t.update_scrape_gauges();
            }
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            // The body as rendered: `text()` would add a newline after OpenMetrics' `# EOF`,
            // which Prometheus refuses ("unexpected data after # EOF").
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.render_as(format))));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            r
        }
        "/-/healthy" => text(StatusCode::OK, "promrelay is healthy"),
        "/-/ready" if state.ready.load(Ordering::Acquire) => {
            text(StatusCode::OK, "promrelay is ready")
        }
        "/-/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "promrelay is shutting down",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; remote-write goes to /api/v1/write or /sources/{name}/api/v1/write",
        ),
    };
    Ok(resp)
}

/// Check the headers a remote-write request must carry and pick its version from
/// `Content-Type`; `Err(answer)` when it is refused.
fn check_headers(req: &Request<Incoming>) -> Result<Protocol, Box<Resp>> {
    let h = req.headers();
    let encoding = h
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    if encoding.as_deref() != Some("snappy") {
        return Err(Box::new(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Encoding {:?}: remote-write bodies must be snappy-compressed",
                encoding.unwrap_or_default()
            ),
        )));
    }
    let mut protocol = Protocol::V1;
    if let Some(ct) = h.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mut parts = ct.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        if media != "application/x-protobuf" {
            return Err(Box::new(text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Type {ct:?}: expected application/x-protobuf"),
            )));
        }
        for p in parts {
            if let Some(proto) = p.strip_prefix("proto=") {
                protocol = match proto.trim_matches('"') {
                    "prometheus.WriteRequest" => Protocol::V1,
                    "io.prometheus.write.v2.Request" => Protocol::V2,
                    _ => {
                        return Err(Box::new(text(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            format!(
                                "unsupported proto={proto}: this relay takes prometheus.WriteRequest \
                                 (remote-write 1.0) and io.prometheus.write.v2.Request (2.0)"
                            ),
                        )));
                    }
                };
            }
        }
    }
    Ok(protocol)
}

/// What a write answer reports in the `X-Prometheus-Remote-Write-*-Written` headers.
#[derive(Default, Clone, Copy)]
struct Written {
    samples: usize,
    histograms: usize,
    exemplars: usize,
}

async fn write(
    state: &IngestState,
    pipeline: &Arc<Pipeline>,
    source: usize,
    name: &str,
    req: Request<Incoming>,
) -> Result<Resp, Unanswered> {
    let mut written = Written::default();
    let mut resp = write_counted(state, pipeline, source, name, req, &mut written).await?;
    if !resp.status().is_success() {
        // Nothing is reported written unless the request was taken: the sender retries a
        // 5xx whole, and a 4xx wrote nothing.
        written = Written::default();
    }
    let h = resp.headers_mut();
    for (key, n) in [
        ("x-prometheus-remote-write-samples-written", written.samples),
        (
            "x-prometheus-remote-write-histograms-written",
            written.histograms,
        ),
        (
            "x-prometheus-remote-write-exemplars-written",
            written.exemplars,
        ),
    ] {
        h.insert(key, HeaderValue::from(n));
    }
    Ok(resp)
}

async fn write_counted(
    state: &IngestState,
    pipeline: &Arc<Pipeline>,
    source: usize,
    name: &str,
    req: Request<Incoming>,
    written: &mut Written,
) -> Result<Resp, Unanswered> {
    let server = pipeline.server();
    let refused = |reason: &str| state.metrics.refused(name, reason);
    let protocol = match check_headers(&req) {
        Ok(p) => p,
        Err(answer) => {
            refused("unsupported_media_type");
            return Ok(*answer);
        }
    };
    let max = server.max_body_bytes;
    let too_large = || {
        refused("body_too_large");
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds max_body_bytes ({max} bytes)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Ok(too_large());
    }
    let declared = declared.map(|n| n as usize);
    let retry_later = |status: StatusCode, message: String| {
        let mut r = text(status, message);
        let secs = server.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        r
    };
    let backpressure =
        StatusCode::from_u16(server.backpressure_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    // Room for the body before a byte of it is read (limits.rs): what it declared, or the
    // most it may be. HTTP/2 does not wait: its unread stream would hold the connection's
    // flow-control window, which the streams being read need.
    let listen = &state.server;
    let wait = if req.version() == hyper::Version::HTTP_2 {
        std::time::Duration::ZERO
    } else {
        listen.inflight_body_wait
    };
    let body_deadline = || tokio::time::Instant::now() + listen.body_read_timeout;
    // Resolves once shutdown begins: a request still waiting for room or for its body is
    // dropped unanswered then, and its sender retries.
    let mut stop = state.guards.stopping.subscribe();
    let mut stopping = std::pin::pin!(async move {
        if stop.wait_for(|&s| s).await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    let reserved = tokio::select! {
        room = state.guards.budget.reserve(declared.unwrap_or(max), wait) => room,
        () = stopping.as_mut() => return Err(Unanswered("the relay is shutting down")),
    };
    let Some(room) = reserved else {
        refused("inflight_body_bytes");
        if declared.is_some_and(|n| n <= limits::DRAIN_BYTES) {
            limits::drain_body(req.into_body(), body_deadline(), stopping.as_mut()).await;
        }
        return Ok(retry_later(
            backpressure,
            format!(
                "the relay is reading as many request bodies as server.max_inflight_body_bytes \
                 ({} bytes) allows; retry later",
                listen.max_inflight_body_bytes
            ),
        ));
    };
    let body =
        match limits::read_body(req.into_body(), max, declared, body_deadline(), stopping).await {
            Ok(b) => b,
            Err(limits::BodyError::TooLarge) => return Ok(too_large()),
            Err(limits::BodyError::Read(e)) => {
                refused("body_read");
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}"),
                ));
            }
            Err(limits::BodyError::Timeout) => {
                state.guards.body_timeouts.inc();
                return Err(Unanswered(
                    "the body did not arrive within server.body_read_timeout",
                ));
            }
            Err(limits::BodyError::Shutdown) => {
                return Err(Unanswered("the relay is shutting down"));
            }
        };
    let no_content = || {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    };
    // A large body is decoded on the decode pool (offload.rs), so the async workers keep
    // answering small ones; the snappy header says how large, before anything is allocated.
    let large = snap::raw::decompress_len(&body).is_ok_and(|n| n >= offload::OFFLOAD_DECODED_BYTES);
    let (result, waits) = if large {
        state.guards.offloaded.inc();
        let p = pipeline.clone();
        let job = move || {
            let mut waits = Vec::new();
            let result = p.process_acked(source, &body, protocol, &mut waits);
            (result, waits)
        };
        match state.guards.pool.run(job).await {
            Ok(done) => done,
            Err(_) => return Err(Unanswered("decoding failed (see the log)")),
        }
    } else {
        let mut waits = Vec::new();
        let result = pipeline.process_acked(source, &body, protocol, &mut waits);
        (result, waits)
    };
    // The body is decoded and gone: its room is free for the next.
    drop(room);
    if let Ok(stats) = &result {
        *written = Written {
            samples: stats.samples - stats.histograms,
            histograms: stats.histograms,
            exemplars: stats.exemplars,
        };
    }
    Ok(match result {
        Ok(_) if waits.is_empty() => no_content(),
        Ok(stats) => {
            let refused = |reason: &str| {
                refused(reason);
                state.metrics.refused_samples(name, reason, stats.samples);
            };
            let timeout = server.ack_timeout;
            match tokio::time::timeout(timeout, pipeline.wait_acks(&waits)).await {
                Ok(Ok(())) => no_content(),
                Ok(Err(e)) => {
                    refused("target_refused");
                    text(StatusCode::BAD_REQUEST, e.to_string())
                }
                Err(_) => {
                    refused("ack_timeout");
                    retry_later(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "taken, but not acknowledged within server.ack_timeout ({timeout:?}); \
                             a retry may deliver it twice"
                        ),
                    )
                }
            }
        }
        Err(IngestError::Decode(e)) => {
            refused(e.reason());
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            text(status, format!("cannot decode remote-write request: {e}"))
        }
        Err(full @ IngestError::QueueFull { samples, .. }) => {
            refused("queue_full");
            state.metrics.refused_samples(name, "queue_full", samples);
            retry_later(backpressure, full.to_string())
        }
        Err(e @ IngestError::Spool { samples, .. }) => {
            refused("spool_error");
            state.metrics.refused_samples(name, "spool_error", samples);
            retry_later(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{authorized, constant_time_eq};

    #[test]
    fn the_auth_scheme_is_case_insensitive_and_the_credentials_are_not() {
        for (given, expected, ok) in [
            ("Bearer t0ken", "Bearer t0ken", true),
            ("bearer t0ken", "Bearer t0ken", true),
            ("BEARER t0ken", "Bearer t0ken", true),
            ("Bearer   t0ken", "Bearer t0ken", true),
            ("Bearer T0KEN", "Bearer t0ken", false),
            ("Bearer t0ken2", "Bearer t0ken", false),
            ("Bearert0ken", "Bearer t0ken", false),
            ("Basic t0ken", "Bearer t0ken", false),
            ("t0ken", "Bearer t0ken", false),
            ("", "Bearer t0ken", false),
            ("basic dTpw", "Basic dTpw", true),
            ("Basic dTpW", "Basic dTpw", false),
        ] {
            assert_eq!(
                authorized(given.as_bytes(), expected),
                ok,
                "{given:?} against {expected:?}"
            );
        }
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        for (a, b, eq) in [
            ("", "", true),
            ("Bearer x", "Bearer x", true),
            ("Bearer x", "Bearer y", false),
            ("a", "ab", false),
            ("ab", "a", false),
        ] {
            assert_eq!(
                constant_time_eq(a.as_bytes(), b.as_bytes()),
                eq,
                "{a:?} vs {b:?}"
            );
        }
    }
}
