//! Delivery targets: one folder per kind, each a [`Service`] that sends one batch; the queue and
//! the retry loop around it are shared by all kinds and live here.
//!
//! Layering, from the data path outwards: [`queue::SinkQueue`] (bounded, lanes by series hash)
//! → [`run_lane`] (one task per lane: take a batch, send, retry with capped exponential backoff,
//! count) → the kind's service (HTTP POST, file append).

pub mod file;
pub mod kafka;
pub mod queue;
pub mod remote_write;
pub mod spool;

use crate::config::{Ack, QueueConfig, TargetConfig, TargetKind};
use crate::relabel::LabelSet;
use crate::telemetry::TargetMetrics;
use bytes::Bytes;
use queue::SinkQueue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the data path writes for a target.
#[derive(Clone, Debug)]
pub enum Format {
    /// Remote-write 1.0 `timeseries` fields; the batch is a `WriteRequest`.
    RemoteWrite,
    /// One flat JSON sample object per line.
    JsonLines,
    /// Framed Kafka records (see [`kafka::layout`]).
    Kafka(kafka::layout::KafkaLayout),
}

/// A running target: what the data path needs to hand it data.
pub struct Target {
    pub task: String,
    pub name: String,
    pub external_labels: LabelSet,
    pub format: Format,
    pub queue: Arc<SinkQueue>,
    pub metrics: TargetMetrics,
    pub queue_config: QueueConfig,
    /// The task's acknowledgement policy.
    pub ack: Ack,
}

/// How one send attempt ended.
#[derive(Debug)]
pub enum SendResult {
    Delivered,
    /// Worth another try: 5xx, 429, a network error. `after` is the target's `Retry-After`.
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// Retrying cannot help (a 4xx other than 429): the batch is dropped and counted.
    Reject {
        why: String,
    },
}

/// The kinds of service a lane sends through. One per lane, never moved in a hot loop.
#[allow(clippy::large_enum_variant)]
pub enum Service {
    RemoteWrite(remote_write::RemoteWriteService),
    File(file::FileService),
    Kafka(kafka::KafkaService),
}

/// A batch prepared for sending, kept across retries.
pub enum Payload {
    Bytes(Bytes),
    /// Kafka messages still to deliver (delivered ones are removed as they are acknowledged).
    Messages(Vec<kafka::layout::KafkaMessage>),
}

impl Payload {
    /// Requests or messages the payload is sent as.
    fn messages(&self) -> usize {
        match self {
            Payload::Bytes(_) => 1,
            Payload::Messages(m) => m.len(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Payload::Bytes(b) => b.len(),
            Payload::Messages(m) => m.iter().map(|m| m.payload.len()).sum(),
        }
    }
}

/// Why a target could not be built.
#[derive(Debug, thiserror::Error)]
#[error("target {target:?}: {message}")]
pub struct SinkError {
    pub target: String,
    pub message: String,
}

impl Service {
    /// Build one service per lane of a configured target.
    ///
    /// # Errors
    /// TLS material that does not load, a file that cannot be opened, a Kafka setting
    /// librdkafka refuses.
    pub fn for_lanes(cfg: &TargetConfig) -> Result<Vec<Service>, SinkError> {
        let err = |message: String| SinkError {
            target: cfg.name.clone(),
            message,
        };
        let lanes = cfg.queue.shards;
        match &cfg.kind {
            TargetKind::RemoteWrite(rw) => (0..lanes)
                .map(|_| {
                    remote_write::RemoteWriteService::new(rw)
                        .map(Service::RemoteWrite)
                        .map_err(err)
                })
                .collect(),
            TargetKind::File(f) => Ok(vec![Service::File(
                file::FileService::open(f).map_err(err)?,
            )]),
            TargetKind::Kafka(k) => Ok(kafka::services(k, lanes)
                .map_err(err)?
                .into_iter()
                .map(Service::Kafka)
                .collect()),
        }
    }

    /// Turn a batch into the payload sent (compressed for remote-write, messages for Kafka),
    /// once per batch so retries resend the same bytes.
    fn prepare(&mut self, body: &[u8]) -> Payload {
        match self {
            Service::RemoteWrite(s) => Payload::Bytes(s.prepare(body)),
            Service::File(_) => Payload::Bytes(Bytes::copy_from_slice(body)),
            Service::Kafka(s) => Payload::Messages(s.prepare(body)),
        }
    }

    /// One attempt. `dropped` collects samples refused for good in a partial refusal (Kafka).
    async fn send(&self, payload: &mut Payload, dropped: &mut usize) -> SendResult {
        match (self, payload) {
            (Service::RemoteWrite(s), Payload::Bytes(b)) => s.send(b.clone()).await,
            (Service::File(s), Payload::Bytes(b)) => s.send(b.clone()).await,
            (Service::Kafka(s), Payload::Messages(m)) => s.send(m, dropped).await,
            _ => SendResult::Reject {
                why: "internal error: payload does not match the target kind".into(),
            },
        }
    }
}

impl Target {
    /// Build a target's queue, opening (and replaying) its spool if it has one.
    ///
    /// # Errors
    /// The spool directory cannot be created, locked or read.
    pub fn new(
        task: &str,
        cfg: &TargetConfig,
        metrics: TargetMetrics,
        ack: Ack,
    ) -> Result<Target, SinkError> {
        let q = &cfg.queue;
        let spool = match &cfg.spool {
            None => None,
            Some(sc) => {
                let counters = spool::SpoolCounters {
                    dropped_full: metrics.dropped_spool_full.clone(),
                    dropped_corrupt: metrics.dropped_spool_corrupt.clone(),
                };
                let (s, recovered) =
                    spool::Spool::open(sc.clone(), q.shards, counters).map_err(|e| SinkError {
                        target: cfg.name.clone(),
                        message: format!("spool: {e}"),
                    })?;
                if recovered.records > 0 || recovered.cut_bytes > 0 {
                    tracing::info!(
                        task, target = %cfg.name, samples = recovered.samples,
                        bytes = recovered.bytes, torn_bytes_cut = recovered.cut_bytes,
                        "spool: replaying what an earlier run left"
                    );
                }
                metrics.spool_bytes.set(s.held_bytes() as i64);
                Some(s)
            }
        };
        let queue = SinkQueue::new(
            q.shards,
            q.capacity,
            q.max_samples_per_send,
            q.batch_send_deadline,
            spool,
        );
        metrics.queue_depth.set(queue.held() as i64);
        Ok(Target {
            task: task.to_owned(),
            name: cfg.name.clone(),
            external_labels: cfg.external_labels.clone(),
            format: match &cfg.kind {
                TargetKind::RemoteWrite(_) => Format::RemoteWrite,
                TargetKind::File(_) => Format::JsonLines,
                TargetKind::Kafka(k) => Format::Kafka(kafka::layout::KafkaLayout::new(k)),
            },
            queue: Arc::new(queue),
            metrics,
            queue_config: q.clone(),
            ack,
        })
    }

    /// Publish the queue gauges.
    pub fn update_gauges(&self) {
        self.metrics.queue_depth.set(self.queue.held() as i64);
        if let Some(s) = self.queue.spool() {
            self.metrics.spool_bytes.set(s.held_bytes() as i64);
        }
    }
}

/// The longest `Retry-After` honoured; a longer one is shortened so a misconfigured target
/// cannot park a lane for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Send every batch of one lane until the queue is closed and the lane is empty.
pub async fn run_lane(target: Arc<Target>, lane: usize, mut service: Service) {
    let cfg = &target.queue_config;
    let m = &target.metrics;
    let mut backoff = cfg.min_backoff;
    while let Some(batch) = target.queue.next_batch(lane).await {
        let mut payload = service.prepare(&batch.body);
        let bytes = payload.len();
        let messages = payload.messages();
        let mut dropped = 0usize;
        let mut failures = 0u32;
        let mut delivered = false;
        loop {
            let started = Instant::now();
            let result = service.send(&mut payload, &mut dropped).await;
            m.send_seconds.observe(started.elapsed().as_secs_f64());
            match result {
                SendResult::Delivered => {
                    m.delivered
                        .inc_by((batch.samples - dropped.min(batch.samples)) as u64);
                    m.dropped_refused.inc_by(dropped as u64);
                    m.batches.inc();
                    m.bytes.inc_by(bytes as u64);
                    m.messages.inc_by(messages as u64);
                    backoff = cfg.min_backoff;
                    delivered = dropped == 0;
                    if failures > 0 {
                        tracing::info!(task = %target.task, target = %target.name, failures, "target recovered");
                    }
                    break;
                }
                SendResult::Retry { .. }
                    if target.queue.is_closed() && target.queue.spool().is_some() =>
                {
                    // Shutting down: the batch is still in the spool (not finished), so it is
                    // sent again at the next start; no reason to hold the exit for it.
                    tracing::info!(task = %target.task, target = %target.name, samples = batch.samples, "shutdown: batch left in the spool");
                    return;
                }
                SendResult::Retry { after, why } => {
                    m.retries.inc();
                    failures += 1;
                    // One line per failure would flood the log during a long outage.
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(task = %target.task, target = %target.name, failures, "send failed, retrying: {why}");
                    }
                    let wait = after.map_or(backoff, |a| a.min(MAX_RETRY_AFTER));
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
                SendResult::Reject { why } => {
                    m.dropped_refused.inc_by(batch.samples as u64);
                    tracing::error!(
                        task = %target.task, target = %target.name, samples = batch.samples,
                        "target refused a batch, dropping it (not retried): {why}"
                    );
                    break;
                }
            }
        }
        target.queue.finish(lane, batch, delivered);
        target.update_gauges();
    }
}
