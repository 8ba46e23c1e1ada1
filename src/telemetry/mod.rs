//! Self-metrics (`GET /metrics`) and log setup.
//!
//! Handles for every task, target and source are created once at start, so the data path only
//! bumps atomics, once per request, never per sample, and never looks anything up by name.
//!
//! - `exposition.rs`: the format a scraper asked for (OpenMetrics or text 0.0.4);
//! - `process.rs`: the standard `process_*` metrics, read from `/proc` at each scrape;
//! - `kafka_source.rs`: the Kafka sources' messages, refusals, commits and partition lag;
//! - `lag.rs`: the highest received and delivered timestamp of each target;
//! - `receivers.rs`: each receiver of a sharded remote_write target;
//! - `logging.rs`: `--log.level`, `--log.format`, colour only on a terminal.
//!
//! What each metric means and which alerts use it: `docs/operations.md`.

pub mod exposition;
pub mod kafka_source;
pub mod lag;
pub mod logging;
pub mod process;
pub mod receivers;

pub use exposition::Format;
pub use kafka_source::{KafkaSourceHandles, KafkaSourceMetrics};
pub use lag::{TargetClock, TimestampGauge};
pub use logging::{LogFormat, LogLevel, init_logging};
pub use receivers::{ReceiverHandles, ReceiverMetrics};

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
    /// Still in memory when a target removed or changed by a reload had drained for
    /// `shutdown_timeout`.
    pub const REMOVED: &str = "removed";
    /// Metadata that came without series (remote-write 1.0 metadata requests), toward a
    /// remote-write 2.0 target, which carries metadata only inside series, for a new family
    /// once the target keeps as many families as it may.
    pub const WITHOUT_SERIES: &str = "without_series";
}

/// All metric families, registered under the `promrelay_` prefix.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    received_samples: Family<Labels, Counter>,
    received_series: Family<Labels, Counter>,
    received_histograms: Family<Labels, Counter>,
    received_metadata: Family<Labels, Counter>,
    target_metadata_forwarded: Family<Labels, Counter>,
    target_metadata_dropped: Family<Labels, Counter>,
    target_start_timestamps_dropped: Family<Labels, Counter>,
    task_matched: Family<Labels, Counter>,
    task_filtered: Family<Labels, Counter>,
    target_queued: Family<Labels, Counter>,
    target_delivered: Family<Labels, Counter>,
    target_batches: Family<Labels, Counter>,
    target_passed_through: Family<Labels, Counter>,
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
    /// The Kafka sources' messages, refusals, commits and partition lag.
    pub kafka_source: KafkaSourceMetrics,
    /// Per-receiver metrics of sharded remote_write targets.
    pub receivers: ReceiverMetrics,
    request_seconds: Family<Labels, Histogram>,
    refused_samples: Family<Labels, Counter>,
    target_pending: Family<Labels, Gauge>,
    target_spool_max_bytes: Family<Labels, Gauge>,
    target_received_ts: Family<Labels, TimestampGauge>,
    target_sent_ts: Family<Labels, TimestampGauge>,
    config: ConfigMetrics,
    /// Per source, what the status page shows beside the rates.
    sources: std::sync::Mutex<std::collections::HashMap<String, SourceStatus>>,
}

/// A source's requests so far, for the status page: answered, the time of the last one, and
/// refused by reason.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    pub requests: u64,
    pub last_request: Option<std::time::SystemTime>,
    pub refused: std::collections::BTreeMap<String, u64>,
}

/// How the config was last loaded, named like Prometheus' own `prometheus_config_*`.
#[derive(Clone, Default)]
pub struct ConfigMetrics {
    pub last_reload_successful: Gauge,
    pub last_reload_success_timestamp_seconds: Gauge<f64, AtomicU64>,
    pub reloads: Family<Labels, Counter>,
    pub hash: Gauge<f64, AtomicU64>,
}

/// What `promrelay --version` and `promrelay_build_info` report.
pub mod build {
    /// The crate version (Cargo.toml).
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
    /// The git commit it was built from (`unknown` outside git; see build.rs).
    pub const REVISION: &str = env!("PROMRELAY_REVISION");
    /// The compiler, as `rustc --version` said it without the leading `rustc `.
    pub const RUSTC: &str = env!("PROMRELAY_RUSTC");
    /// `VERSION (revision: REVISION, rustc: RUSTC)`: the `--version` text.
    pub const VERSION_LINE: &str = concat!(
        env!("CARGO_PKG_VERSION"),
        " (revision: ",
        env!("PROMRELAY_REVISION"),
        ", rustc: ",
        env!("PROMRELAY_RUSTC"),
        ")"
    );
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
        // The root holds what has standard names (`process_*`); everything of ours is under
        // the `promrelay_` prefix.
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("promrelay");
        let build_info = Family::<Labels, Gauge>::default();
        build_info
            .get_or_create(&labels(&[
                ("version", build::VERSION),
                ("revision", build::REVISION),
                ("rustc", build::RUSTC),
            ]))
            .set(1);
        registry.register(
            "build_info",
            "A metric with a constant '1' value labelled by version, revision and rustc from which promrelay was built",
            build_info,
        );
        let request_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time from a write request's headers to its answer, by source (includes ack waits)",
            request_seconds.clone(),
        );
        let refused_samples = Family::default();
        registry.register(
            "ingest_refused_samples",
            "Samples in requests refused after they decoded, by reason (the sender retries 5xx and 429)",
            refused_samples.clone(),
        );
        let target_pending = Family::default();
        registry.register(
            "target_pending_samples",
            "Samples the target holds and has not delivered yet (in memory or in its spool)",
            target_pending.clone(),
        );
        let target_spool_max_bytes = Family::default();
        registry.register(
            "target_spool_max_bytes",
            "The spool's max_bytes (0 without a spool)",
            target_spool_max_bytes.clone(),
        );
        let target_received_ts = Family::default();
        registry.register(
            "target_highest_received_timestamp_seconds",
            "Newest sample timestamp queued for the target, in seconds since the epoch",
            target_received_ts.clone(),
        );
        let target_sent_ts = Family::default();
        registry.register(
            "target_highest_sent_timestamp_seconds",
            "Newest sample timestamp the target acknowledged, in seconds since the epoch",
            target_sent_ts.clone(),
        );
        let requests = Family::default();
        let refused = Family::default();
        let received_samples = Family::default();
        let received_series = Family::default();
        let received_histograms = Family::default();
        let received_metadata = Family::default();
        let target_metadata_forwarded = Family::default();
        let target_metadata_dropped = Family::default();
        let target_start_timestamps_dropped = Family::default();
        let task_matched = Family::default();
        let task_filtered = Family::default();
        let target_queued = Family::default();
        let target_delivered = Family::default();
        let target_batches = Family::default();
        let target_passed_through = Family::default();
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
            "received_metadata",
            "Metadata entries received (1.0: MetricMetadata messages; 2.0: series with metadata)",
            received_metadata.clone(),
        );
        registry.register(
            "target_metadata_forwarded",
            "Metadata entries the target acknowledged",
            target_metadata_forwarded.clone(),
        );
        registry.register(
            "target_metadata_dropped",
            "Metadata entries not delivered to the target, by reason",
            target_metadata_dropped.clone(),
        );
        registry.register(
            "target_start_timestamps_dropped",
            "Remote-write 2.0 start timestamps the target's format cannot carry, by reason",
            target_start_timestamps_dropped.clone(),
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
            "target_passed_through_requests",
            "Requests queued as their sender compressed them (taken unchanged by a one-lane \
             remote-write 1.0 target), not encoded and compressed again",
            target_passed_through.clone(),
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
        let config = ConfigMetrics::default();
        registry.register(
            "config_last_reload_successful",
            "1 when the last config (re)load succeeded, 0 when it failed (the old config still runs)",
            config.last_reload_successful.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully",
            config.last_reload_success_timestamp_seconds.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads, by result (success, failure)",
            config.reloads.clone(),
        );
        registry.register(
            "config_hash",
            "A hash of the running config's files (changes when the config does)",
            config.hash.clone(),
        );
        registry.register(
            "target_send_duration_seconds",
            "Time of one send attempt",
            target_send_seconds.clone(),
        );
        let http = HttpMetrics::register(registry);
        let kafka_source = KafkaSourceMetrics::register(registry);
        let receivers = ReceiverMetrics::register(registry);
        Metrics {
            kafka_source,
            receivers,
            registry: root,
            request_seconds,
            refused_samples,
            target_pending,
            target_spool_max_bytes,
            target_received_ts,
            target_sent_ts,
            http,
            requests,
            refused,
            received_samples,
            received_series,
            received_histograms,
            received_metadata,
            target_metadata_forwarded,
            target_metadata_dropped,
            target_start_timestamps_dropped,
            task_matched,
            task_filtered,
            target_queued,
            target_delivered,
            target_batches,
            target_passed_through,
            target_messages,
            target_retries,
            target_dropped,
            target_queue_depth,
            target_spool_bytes,
            target_send_seconds,
            target_sent_bytes,
            target_spilling,
            target_oldest_pending,
            config,
            sources: Default::default(),
        }
    }

    /// Count one refused request by reason (`snappy`, `protobuf`, `bad_series`,
    /// `max_labels_per_series`, `body_too_large`, …).
    pub fn refused(&self, source: &str, reason: &str) {
        self.refused
            .get_or_create(&labels(&[("source", source), ("reason", reason)]))
            .inc();
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        *s.entry(source.to_owned())
            .or_default()
            .refused
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Count the samples of a request refused for `reason` after it decoded.
    pub fn refused_samples(&self, source: &str, reason: &str, samples: usize) {
        self.refused_samples
            .get_or_create(&labels(&[("source", source), ("reason", reason)]))
            .inc_by(samples as u64);
    }

    /// Count one ingest answer and how long it took.
    pub fn request(&self, source: &str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&labels(&[("source", source), ("code", &code.to_string())]))
            .inc();
        self.request_seconds
            .get_or_create(&labels(&[("source", source)]))
            .observe(seconds);
        // Once per request (never per sample); the lock is held for a map lookup.
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let entry = match s.get_mut(source) {
            Some(e) => e,
            None => s.entry(source.to_owned()).or_default(),
        };
        entry.requests += 1;
        entry.last_request = Some(std::time::SystemTime::now());
    }

    /// A source's requests so far (see [`SourceStatus`]).
    pub fn source_status(&self, source: &str) -> SourceStatus {
        let s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        s.get(source).cloned().unwrap_or_default()
    }

    pub fn source(&self, source: &str) -> SourceMetrics {
        let l = labels(&[("source", source)]);
        SourceMetrics {
            samples: self.received_samples.get_or_create(&l).clone(),
            series: self.received_series.get_or_create(&l).clone(),
            histograms: self.received_histograms.get_or_create(&l).clone(),
            metadata: self.received_metadata.get_or_create(&l).clone(),
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
        let metadata_dropped = |r: &str| {
            self.target_metadata_dropped
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
            passed_through: self.target_passed_through.get_or_create(&l).clone(),
            messages: self.target_messages.get_or_create(&l).clone(),
            bytes: self.target_sent_bytes.get_or_create(&l).clone(),
            retries: self.target_retries.get_or_create(&l).clone(),
            queue_depth: self.target_queue_depth.get_or_create(&l).clone(),
            spool_bytes: self.target_spool_bytes.get_or_create(&l).clone(),
            spool_max_bytes: self.target_spool_max_bytes.get_or_create(&l).clone(),
            pending: self.target_pending.get_or_create(&l).clone(),
            received_timestamp: self.target_received_ts.get_or_create(&l).clone(),
            sent_timestamp: self.target_sent_ts.get_or_create(&l).clone(),
            send_seconds: self.target_send_seconds.get_or_create(&l).clone(),
            spilling: self.target_spilling.get_or_create(&l).clone(),
            oldest_pending_seconds: self.target_oldest_pending.get_or_create(&l).clone(),
            dropped_refused: dropped(reason::REFUSED),
            dropped_unsupported: dropped(reason::UNSUPPORTED),
            dropped_shutdown: dropped(reason::SHUTDOWN),
            dropped_spool_full: dropped(reason::SPOOL_FULL),
            dropped_spool_corrupt: dropped(reason::SPOOL_CORRUPT),
            dropped_spool_error: dropped(reason::SPOOL_ERROR),
            dropped_removed: dropped(reason::REMOVED),
            metadata_forwarded: self.target_metadata_forwarded.get_or_create(&l).clone(),
            metadata_dropped_unsupported: metadata_dropped(reason::UNSUPPORTED),
            metadata_dropped_without_series: metadata_dropped(reason::WITHOUT_SERIES),
            metadata_dropped_refused: metadata_dropped(reason::REFUSED),
            start_timestamps_dropped: self
                .target_start_timestamps_dropped
                .get_or_create(&labels(&[
                    ("task", task),
                    ("target", target),
                    ("reason", reason::UNSUPPORTED),
                ]))
                .clone(),
            receivers: self.receivers.clone(),
        }
    }

    /// How the config was last loaded.
    pub fn config(&self) -> &ConfigMetrics {
        &self.config
    }

    /// Record a config (re)load: `hash` of the config that runs now.
    pub fn config_loaded(&self, ok: bool, hash: u64) {
        let c = &self.config;
        c.last_reload_successful.set(i64::from(ok));
        let result = if ok { "success" } else { "failure" };
        c.reloads
            .get_or_create(&labels(&[("result", result)]))
            .inc();
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            c.last_reload_success_timestamp_seconds.set(now);
            // 2^53 keeps every value exact in a float.
            c.hash.set((hash & ((1 << 53) - 1)) as f64);
        }
    }

    /// Forget a target's series (removed by a reload).
    pub fn remove_target(&self, task: &str, target: &str) {
        let l = labels(&[("task", task), ("target", target)]);
        for f in [
            &self.target_queued,
            &self.target_delivered,
            &self.target_batches,
            &self.target_passed_through,
            &self.target_messages,
            &self.target_retries,
            &self.target_sent_bytes,
            &self.target_metadata_forwarded,
        ] {
            f.remove(&l);
        }
        self.target_start_timestamps_dropped.remove(&labels(&[
            ("task", task),
            ("target", target),
            ("reason", reason::UNSUPPORTED),
        ]));
        for r in [reason::UNSUPPORTED, reason::WITHOUT_SERIES, reason::REFUSED] {
            self.target_metadata_dropped.remove(&labels(&[
                ("task", task),
                ("target", target),
                ("reason", r),
            ]));
        }
        self.target_queue_depth.remove(&l);
        self.target_spool_bytes.remove(&l);
        self.target_spilling.remove(&l);
        self.target_oldest_pending.remove(&l);
        self.target_send_seconds.remove(&l);
        for r in [
            reason::REFUSED,
            reason::UNSUPPORTED,
            reason::SHUTDOWN,
            reason::SPOOL_FULL,
            reason::SPOOL_CORRUPT,
            reason::SPOOL_ERROR,
            reason::REMOVED,
        ] {
            self.target_dropped.remove(&labels(&[
                ("task", task),
                ("target", target),
                ("reason", r),
            ]));
        }
    }

    /// Forget a task's series (removed or disabled by a reload).
    pub fn remove_task(&self, task: &str) {
        let l = labels(&[("task", task)]);
        self.task_matched.remove(&l);
        self.task_filtered.remove(&l);
    }

    /// The text exposition of every metric.
    /// Every metric in the text format 0.0.4 (what a plain `GET /metrics` gets).
    pub fn render(&self) -> String {
        self.render_as(Format::Text)
    }

    /// Every metric in `format`.
    pub fn render_as(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        match format {
            Format::OpenMetrics => out,
            Format::Text => exposition::openmetrics_to_text(&out),
        }
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
    /// Requests queued as their sender compressed them ([`crate::targets::Target::pass_through`]).
    pub passed_through: Counter,
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
    /// The spool's budget (0 without one).
    pub spool_max_bytes: Gauge,
    /// Samples held and not delivered (the same count as `queue_depth`, under the name
    /// Prometheus' remote storage uses).
    pub pending: Gauge,
    pub received_timestamp: TimestampGauge,
    pub sent_timestamp: TimestampGauge,
    pub send_seconds: Histogram,
    pub dropped_refused: Counter,
    pub dropped_unsupported: Counter,
    pub dropped_shutdown: Counter,
    pub dropped_spool_full: Counter,
    pub dropped_spool_corrupt: Counter,
    pub dropped_spool_error: Counter,
    pub dropped_removed: Counter,
    pub metadata_forwarded: Counter,
    pub metadata_dropped_unsupported: Counter,
    pub metadata_dropped_without_series: Counter,
    pub metadata_dropped_refused: Counter,
    pub start_timestamps_dropped: Counter,
    /// Where a target with several receivers makes each one's handles.
    pub receivers: ReceiverMetrics,
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
