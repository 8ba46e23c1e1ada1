//! The send-and-retry loop every kind shares: one task per queue lane takes a batch, has the
//! kind's service prepare it once, sends it, and retries 5xx/429/network errors with capped
//! exponential backoff (honouring `Retry-After`); what retrying cannot fix is dropped and
//! counted. A lane sends one batch at a time, which keeps each series in order.

use super::Service;
use super::kafka::KafkaMessage;
use super::receivers::Receiver;
use super::target::Target;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// As `Reject`, for a refusal the service has already reported once and that would
    /// otherwise repeat for every batch (a remote-write 2.0 target answering 415: a
    /// configuration error). Counted the same; logged at debug level only.
    RejectQuietly {
        why: String,
    },
}

/// A batch prepared for sending, kept across retries.
pub enum Payload {
    Bytes(Bytes),
    /// Kafka messages still to deliver (delivered ones are removed as they are acknowledged).
    Messages(Vec<KafkaMessage>),
    /// A remote-write batch holding metadata: its series and its metadata, each sent as a
    /// request of its own (a part is set to `None` once delivered). `entries` metadata
    /// entries took one sample's room each in the queue.
    Split {
        series: Option<Bytes>,
        metadata: Option<Bytes>,
        entries: usize,
    },
}

impl Payload {
    /// Requests or messages the payload is sent as.
    fn messages(&self) -> usize {
        match self {
            Payload::Bytes(_) => 1,
            Payload::Messages(m) => m.len(),
            Payload::Split {
                series, metadata, ..
            } => usize::from(series.is_some()) + usize::from(metadata.is_some()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Payload::Bytes(b) => b.len(),
            Payload::Messages(m) => m.iter().map(|m| m.payload.len()).sum(),
            Payload::Split {
                series, metadata, ..
            } => series.as_ref().map_or(0, Bytes::len) + metadata.as_ref().map_or(0, Bytes::len),
        }
    }

    /// Metadata entries in the batch (counted apart from samples).
    fn metadata_entries(&self) -> usize {
        match self {
            Payload::Split { entries, .. } => *entries,
            _ => 0,
        }
    }
}

/// The longest `Retry-After` honoured; a longer one is shortened so a misconfigured target
/// cannot park a lane for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A receiver (of a target with several) refused a batch of `samples` for good.
fn refused_by(receiver: Option<&Receiver>, why: &str, samples: usize) {
    if let Some(r) = receiver {
        r.health.refused(why);
        r.metrics.refused.inc_by(samples as u64);
        r.metrics.up.set(0);
    }
}

/// Send every batch of one lane until the queue is closed and the lane is empty.
pub async fn run_lane(target: Arc<Target>, lane: usize, mut service: Service) {
    let cfg = &target.queue_config;
    let m = &target.metrics;
    // With several receivers, the one this lane sends to (its own health and metrics).
    let receiver = target.receivers.of_lane(lane);
    let mut backoff = cfg.min_backoff;
    while let Some(batch) = target.queue.next_batch(lane).await {
        let mut payload = service.prepare(&batch);
        let bytes = payload.len();
        let messages = payload.messages();
        // Metadata entries took one sample's room each; they are counted apart.
        let metadata = payload.metadata_entries().min(batch.samples);
        let samples = batch.samples - metadata;
        let mut dropped = 0usize;
        let mut failures = 0u32;
        let mut delivered = false;
        // The target took the batch, maybe refusing part of it: its timestamps count as sent.
        let mut taken = false;
        loop {
            let started = Instant::now();
            let result = service.send(&mut payload, &mut dropped).await;
            let now = Instant::now();
            let took = now - started;
            m.send_seconds.observe(took.as_secs_f64());
            target.latency.observe(took);
            target.queue.sending_for(took, now);
            match result {
                SendResult::Delivered => {
                    m.delivered.inc_by((samples - dropped.min(samples)) as u64);
                    m.metadata_forwarded.inc_by(metadata as u64);
                    m.dropped_refused.inc_by(dropped as u64);
                    m.batches.inc();
                    m.bytes.inc_by(bytes as u64);
                    m.messages.inc_by(messages as u64);
                    backoff = cfg.min_backoff;
                    delivered = dropped == 0;
                    target.health.delivered();
                    if let Some(r) = receiver {
                        r.health.delivered();
                        r.metrics
                            .delivered
                            .inc_by((samples - dropped.min(samples)) as u64);
                        r.metrics.refused.inc_by(dropped as u64);
                        r.metrics.up.set(1);
                    }
                    taken = dropped < samples;
                    if failures > 0 {
                        tracing::info!(task = %target.task, target = %target.name, failures, "target recovered");
                    }
                    break;
                }
                SendResult::Retry { .. }
                    if target.queue.is_closed()
                        && batch.from_disk
                        && target.queue.memory_empty(lane) =>
                {
                    // Shutting down: the batch is still on disk (not finished), so it is sent
                    // again at the next start; no reason to hold the exit for it. Not when
                    // the lane went back to memory behind it: that memory can only be sent
                    // after it, so the batch is retried like any other for up to the
                    // shutdown timeout, as a memory queue drains.
                    tracing::info!(task = %target.task, target = %target.name, samples = batch.samples, "shutdown: batch left on disk for the next start");
                    return;
                }
                SendResult::Retry { after, why } => {
                    target.health.failed(&why);
                    m.retries.inc();
                    if let Some(r) = receiver {
                        r.health.failed(&why);
                        r.metrics.retries.inc();
                        r.metrics.up.set(0);
                    }
                    failures += 1;
                    // One line per failure would flood the log during a long outage.
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(task = %target.task, target = %target.name, failures, "send failed, retrying: {why}");
                    }
                    let wait = after.map_or(backoff, |a| a.min(MAX_RETRY_AFTER));
                    tokio::time::sleep(wait).await;
                    // Waiting to retry keeps the lane as busy as sending.
                    target.queue.retry_waited(wait, Instant::now());
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
                SendResult::Reject { why } => {
                    target.health.refused(&why);
                    refused_by(receiver, &why, samples);
                    m.dropped_refused.inc_by(samples as u64);
                    m.metadata_dropped_refused.inc_by(metadata as u64);
                    tracing::error!(
                        task = %target.task, target = %target.name, samples = batch.samples,
                        "target refused a batch, dropping it (not retried): {why}"
                    );
                    break;
                }
                SendResult::RejectQuietly { why } => {
                    target.health.refused(&why);
                    refused_by(receiver, &why, samples);
                    m.dropped_refused.inc_by(samples as u64);
                    m.metadata_dropped_refused.inc_by(metadata as u64);
                    tracing::debug!(
                        task = %target.task, target = %target.name, samples = batch.samples,
                        "target refused a batch, dropping it (not retried): {why}"
                    );
                    break;
                }
            }
        }
        target.clock.finished(lane, batch.end, taken);
        target.queue.finish(lane, batch, delivered);
        target.update_gauges();
    }
}
