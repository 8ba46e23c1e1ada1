//! Self-metrics (Prometheus text at `GET /metrics`) and log setup.
//!
//! Handles for every task, target and source are created once at start, so the data path only
//! bumps atomics, once per request, never per sample, and never looks anything up by name.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;

/// Why samples were dropped: the `reason` label of `promrelay_target_dropped_samples_total`.
pub mod reason {
    /// The target refused the data for good (an HTTP 4xx other than 429; a Kafka error such as
    /// message too large or not authorised): retrying cannot help.
    pub const REFUSED: &str = "refused";
    /// The sample cannot be represented in the target's format (native histograms in JSON).
    pub const UNSUPPORTED: &str = "unsupported_by_format";
    /// Still queued in memory when the shutdown timeout ran out.
    pub const SHUTDOWN: &str = "shutdown";
    /// The spool was full and its `on_full` is `drop_oldest`.
    pub const SPOOL_FULL: &str = "spool_full";
    /// A spool record failed its checksum when read back (disk corruption).
    pub const SPOOL_CORRUPT: &str = "spool_corrupt";
    /// Writing to the spool failed (disk full, I/O error); the request was answered 503.
    pub const SPOOL_ERROR: &str = "spool_error";
}

/// All metric families, registered under the `promrelay_` prefix.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    received_samples: Family<Labels, Counter>,
    received_series: Family<Labels, Counter>,
    received_histograms: Family<Labels, Counter>,
    metadata_ignored: Family<Labels, Counter>,
    task_matched: Family<Labels, Counter>,
    task_filtered: Family<Labels, Counter>,
    target_queued: Family<Labels, Counter>,
    target_delivered: Family<Labels, Counter>,
    target_batches: Family<Labels, Counter>,
    target_messages: Family<Labels, Counter>,
    target_retries: Family<Labels, Counter>,
    target_dropped: Family<Labels, Counter>,
    target_queue_depth: Family<Labels, Gauge>,
    target_spool_bytes: Family<Labels, Gauge>,
    target_send_seconds: Family<Labels, Histogram>,
    target_sent_bytes: Family<Labels, Counter>,
    target_spilling: Family<Labels, Gauge>,
    target_oldest_pending: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Connections, their closures and the body budget of the HTTP listeners.
    pub http: HttpMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("promrelay");
        let requests = Family::default();
        let refused = Family::default();
        let received_samples = Family::default();
        let received_series = Family::default();
        let received_histograms = Family::default();
        let metadata_ignored = Family::default();
        let task_matched = Family::default();
        let task_filtered = Family::default();
        let target_queued = Family::default();
        let target_delivered = Family::default();
        let target_batches = Family::default();
        let target_messages = Family::default();
        let target_retries = Family::default();
        let target_dropped = Family::default();
        let target_queue_depth = Family::default();
        let target_spool_bytes = Family::default();
        let target_sent_bytes = Family::default();
        let target_spilling = Family::default();
        let target_oldest_pending = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let target_send_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "requests",
            "Ingest requests by source and HTTP status code",
            requests.clone(),
        );
        registry.register(
            "ingest_refused",
            "Requests refused before delivery, by reason (each one answered 4xx)",
            refused.clone(),
        );
        registry.register(
            "received_samples",
            "Float samples received (in requests that decoded)",
            received_samples.clone(),
        );
        registry.register(
            "received_series",
            "Series received (in requests that decoded)",
            received_series.clone(),
        );
        registry.register(
            "received_histograms",
            "Native histogram samples received",
            received_histograms.clone(),
        );
        registry.register(
            "metadata_ignored",
            "MetricMetadata entries received and not relayed",
            metadata_ignored.clone(),
        );
        registry.register(
            "task_matched_samples",
            "Samples that passed the task's filter",
            task_matched.clone(),
        );
        registry.register(
            "task_filtered_samples",
            "Samples the task's filter removed",
            task_filtered.clone(),
        );
        registry.register(
            "target_queued_samples",
            "Samples accepted into the target's queue",
            target_queued.clone(),
        );
        registry.register(
            "target_delivered_samples",
            "Samples the target acknowledged",
            target_delivered.clone(),
        );
        registry.register(
            "target_sent_batches",
            "Batches the target acknowledged",
            target_batches.clone(),
        );
        registry.register(
            "target_sent_messages",
            "HTTP requests or Kafka messages the target acknowledged",
            target_messages.clone(),
        );
        registry.register(
            "target_sent_bytes",
            "Payload bytes the target acknowledged (after compression)",
            target_sent_bytes.clone(),
        );
        registry.register(
            "target_retries",
            "Send attempts that failed and were retried",
            target_retries.clone(),
        );
        registry.register(
            "target_dropped_samples",
            "Samples dropped, by reason",
            target_dropped.clone(),
        );
        registry.register(
            "target_queue_samples",
            "Samples held by the target's queue now",
            target_queue_depth.clone(),
        );
        registry.register(
            "target_spool_bytes",
            "Bytes the target holds on disk now, in its spool or overflow (reserved, unread and in flight)",
            target_spool_bytes.clone(),
        );
        registry.register(
            "target_spilling",
            "1 while the target's memory queue is full and its data goes to its overflow on disk",
            target_spilling.clone(),
        );
        registry.register(
            "target_oldest_pending_seconds",
            "Age of the oldest data the target holds (memory or disk), to about a second; 0 when it holds nothing",
            target_oldest_pending.clone(),
        );
        registry.register(
            "target_send_duration_seconds",
            "Time of one send attempt",
            target_send_seconds.clone(),
        );
        let http = HttpMetrics::register(&mut registry);
        Metrics {
            http,
            registry,
            requests,
            refused,
            received_samples,
            received_series,
            received_histograms,
            metadata_ignored,
            task_matched,
            task_filtered,
            target_queued,
            target_delivered,
            target_batches,
            target_messages,
            target_retries,
            target_dropped,
            target_queue_depth,
            target_spool_bytes,
            target_send_seconds,
            target_sent_bytes,
            target_spilling,
            target_oldest_pending,
        }
    }

    /// Count one refused request by reason (`snappy`, `protobuf`, `bad_series`,
    /// `max_labels_per_series`, `body_too_large`, …).
    pub fn refused(&self, source: &str, reason: &str) {
        self.refused
            .get_or_create(&labels(&[("source", source), ("reason", reason)]))
            .inc();
    }

    /// Count one ingest answer.
    pub fn request(&self, source: &str, code: u16) {
        self.requests
            .get_or_create(&labels(&[("source", source), ("code", &code.to_string())]))
            .inc();
    }

    pub fn source(&self, source: &str) -> SourceMetrics {
        let l = labels(&[("source", source)]);
        SourceMetrics {
            samples: self.received_samples.get_or_create(&l).clone(),
            series: self.received_series.get_or_create(&l).clone(),
            histograms: self.received_histograms.get_or_create(&l).clone(),
            metadata: self.metadata_ignored.get_or_create(&l).clone(),
        }
    }

    pub fn task(&self, task: &str) -> TaskMetrics {
        let l = labels(&[("task", task)]);
        TaskMetrics {
            matched: self.task_matched.get_or_create(&l).clone(),
            filtered: self.task_filtered.get_or_create(&l).clone(),
        }
    }

    pub fn target(&self, task: &str, target: &str) -> TargetMetrics {
        let l = labels(&[("task", task), ("target", target)]);
        let dropped = |r: &str| {
            self.target_dropped
                .get_or_create(&labels(&[
                    ("task", task),
                    ("target", target),
                    ("reason", r),
                ]))
                .clone()
        };
        TargetMetrics {
            queued: self.target_queued.get_or_create(&l).clone(),
            delivered: self.target_delivered.get_or_create(&l).clone(),
            batches: self.target_batches.get_or_create(&l).clone(),
            messages: self.target_messages.get_or_create(&l).clone(),
            bytes: self.target_sent_bytes.get_or_create(&l).clone(),
            retries: self.target_retries.get_or_create(&l).clone(),
            queue_depth: self.target_queue_depth.get_or_create(&l).clone(),
            spool_bytes: self.target_spool_bytes.get_or_create(&l).clone(),
            send_seconds: self.target_send_seconds.get_or_create(&l).clone(),
            spilling: self.target_spilling.get_or_create(&l).clone(),
            oldest_pending_seconds: self.target_oldest_pending.get_or_create(&l).clone(),
            dropped_refused: dropped(reason::REFUSED),
            dropped_unsupported: dropped(reason::UNSUPPORTED),
            dropped_shutdown: dropped(reason::SHUTDOWN),
            dropped_spool_full: dropped(reason::SPOOL_FULL),
            dropped_spool_corrupt: dropped(reason::SPOOL_CORRUPT),
            dropped_spool_error: dropped(reason::SPOOL_ERROR),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[derive(Clone)]
pub struct SourceMetrics {
    pub samples: Counter,
    pub series: Counter,
    pub histograms: Counter,
    pub metadata: Counter,
}

#[derive(Clone)]
pub struct TaskMetrics {
    pub matched: Counter,
    pub filtered: Counter,
}

#[derive(Clone)]
pub struct TargetMetrics {
    pub queued: Counter,
    pub delivered: Counter,
    pub batches: Counter,
    pub messages: Counter,
    pub bytes: Counter,
    pub retries: Counter,
    pub queue_depth: Gauge,
    /// Bytes held on disk by the target's spool or overflow.
    pub spool_bytes: Gauge,
    /// 1 while some lane spills to the overflow.
    pub spilling: Gauge,
    /// Age of the oldest data held; set when `/metrics` is scraped.
    pub oldest_pending_seconds: Gauge<f64, AtomicU64>,
    pub send_seconds: Histogram,
    pub dropped_refused: Counter,
    pub dropped_unsupported: Counter,
    pub dropped_shutdown: Counter,
    pub dropped_spool_full: Counter,
    pub dropped_spool_corrupt: Counter,
    pub dropped_spool_error: Counter,
}

/// The HTTP listeners' own metrics: connections open and closed by reason, accept errors,
/// the in-flight body budget, and how many requests were decoded off the async workers.
/// Handles are made once per listener and reason at start, so bumping one is one atomic.
#[derive(Clone)]
pub struct HttpMetrics {
    connections: Family<Labels, Gauge>,
    closed: Family<Labels, Counter>,
    accept_errors: Family<Labels, Counter>,
    /// Bytes of request bodies reserved or held now.
    pub inflight_body_bytes: Gauge,
    /// `server.max_inflight_body_bytes`.
    pub inflight_body_limit: Gauge,
    /// Requests decoded on the decode pool rather than on an async worker.
    pub offloaded: Counter,
}

impl HttpMetrics {
    fn register(registry: &mut Registry) -> HttpMetrics {
        let m = HttpMetrics {
            connections: Family::default(),
            closed: Family::default(),
            accept_errors: Family::default(),
            inflight_body_bytes: Gauge::default(),
            inflight_body_limit: Gauge::default(),
            offloaded: Counter::default(),
        };
        registry.register(
            "http_connections",
            "Connections open now, by listener (listen, admin_listen)",
            m.connections.clone(),
        );
        registry.register(
            "http_connections_closed",
            "Connections the relay closed because the client stalled or the relay stopped, by listener and reason (on HTTP/2 a body timeout resets the stream only)",
            m.closed.clone(),
        );
        registry.register(
            "http_accept_errors",
            "Failed accepts, by listener and error (too_many_open_files or other)",
            m.accept_errors.clone(),
        );
        registry.register(
            "inflight_body_bytes",
            "Request body bytes reserved or held now (server.max_inflight_body_bytes bounds it)",
            m.inflight_body_bytes.clone(),
        );
        registry.register(
            "inflight_body_limit_bytes",
            "server.max_inflight_body_bytes",
            m.inflight_body_limit.clone(),
        );
        registry.register(
            "decode_offloaded_requests",
            "Requests with a large decoded size, decoded on the decode pool instead of an async worker",
            m.offloaded.clone(),
        );
        m
    }

    /// The gauge of connections open on `listener`.
    pub fn connections(&self, listener: &str) -> Gauge {
        self.connections
            .get_or_create(&labels(&[("listener", listener)]))
            .clone()
    }

    /// The counter of connections closed on `listener` for `reason`.
    pub fn closed(&self, listener: &str, reason: &str) -> Counter {
        self.closed
            .get_or_create(&labels(&[("listener", listener), ("reason", reason)]))
            .clone()
    }

    /// The counter of failed accepts on `listener` with `error`.
    pub fn accept_errors(&self, listener: &str, error: &str) -> Counter {
        self.accept_errors
            .get_or_create(&labels(&[("listener", listener), ("error", error)]))
            .clone()
    }
}

/// Log to stderr; `RUST_LOG` overrides the level (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
