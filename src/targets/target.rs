//! What every target has, whatever its kind: the keys every kind's config shares, and the
//! running target the data path hands data to (its encoder, queue, metrics and ack policy).

use super::queue::{Chunk, QueueConfig, RawQueue, SinkQueue};
use super::spool::{self, RawSpool, SpoolConfig};
use super::{Encoder, TargetKind};
use crate::config::{Ack, ConfigError, invalid};
use crate::relabel::{LabelSet, is_valid_label_name};
use crate::telemetry::{TargetClock, TargetMetrics};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A checked target: the shared keys, and the kind's own config.
#[derive(Debug)]
pub struct TargetConfig {
    pub name: String,
    pub external_labels: LabelSet,
    pub queue: QueueConfig,
    pub spool: Option<SpoolConfig>,
    pub kind: TargetKind,
}

/// The keys every kind of target has, as written.
pub struct CommonKeys<'a> {
    pub name: String,
    pub external_labels: &'a BTreeMap<String, String>,
    pub queue: &'a RawQueue,
    pub spool: Option<&'a RawSpool>,
}

impl TargetConfig {
    /// Check the shared keys of the target at `at` and put them together with its kind.
    ///
    /// # Errors
    /// The first bad key, named under `at`.
    pub fn new(
        common: CommonKeys<'_>,
        at: &str,
        base: &Path,
        kind: TargetKind,
    ) -> Result<TargetConfig, ConfigError> {
        Ok(TargetConfig {
            external_labels: external_labels(
                common.external_labels,
                &format!("{at}.external_labels"),
            )?,
            queue: common.queue.validate(at)?,
            spool: common.spool.map(|s| s.validate(at, base)).transpose()?,
            name: common.name,
            kind,
        })
    }
}

fn external_labels(map: &BTreeMap<String, String>, field: &str) -> Result<LabelSet, ConfigError> {
    if let Some(bad) = map.keys().find(|k| !is_valid_label_name(k)) {
        return Err(invalid(
            field,
            format!("label name {bad:?} is not valid: use [a-zA-Z_][a-zA-Z0-9_]*"),
        ));
    }
    LabelSet::new(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| invalid(field, e.to_string()))
}

/// Why a target could not be built.
#[derive(Debug, thiserror::Error)]
#[error("target {target:?}: {message}")]
pub struct SinkError {
    pub target: String,
    pub message: String,
}

/// What one request wrote for one target: a chunk per lane, and what it carries.
#[derive(Default)]
pub struct Output {
    pub lanes: Vec<Chunk>,
    /// Samples (and histogram samples) written.
    pub samples: usize,
    /// Samples the target's format cannot carry, dropped and counted.
    pub unsupported: usize,
    /// The newest float sample timestamp written (ms since the epoch; `i64::MIN` for none).
    pub newest_timestamp_ms: i64,
}

impl Output {
    pub fn clear(&mut self) {
        self.lanes.iter_mut().for_each(Chunk::clear);
        self.samples = 0;
        self.unsupported = 0;
        self.newest_timestamp_ms = i64::MIN;
    }
}

/// Counters of a target when shutdown began ([`Target::drain_start`]).
#[derive(Debug, Clone, Copy)]
pub struct DrainStart {
    delivered: u64,
    dropped: u64,
}

/// A running target: what the data path needs to hand it data.
pub struct Target {
    pub task: String,
    pub name: String,
    pub external_labels: LabelSet,
    pub encoder: Encoder,
    pub queue: Arc<SinkQueue>,
    pub metrics: TargetMetrics,
    pub queue_config: QueueConfig,
    /// The task's acknowledgement policy.
    pub ack: Ack,
    /// The newest timestamps received and delivered (see [`crate::telemetry::lag`]).
    pub clock: TargetClock,
    /// The spool's directory, for log lines.
    pub spool_dir: Option<std::path::PathBuf>,
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
                metrics
                    .spool_max_bytes
                    .set(i64::try_from(sc.max_bytes).unwrap_or(i64::MAX));
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
        metrics.pending.set(queue.held() as i64);
        let clock = TargetClock::new(
            queue.lanes(),
            metrics.received_timestamp.clone(),
            metrics.sent_timestamp.clone(),
        );
        Ok(Target {
            clock,
            spool_dir: cfg.spool.as_ref().map(|s| s.dir.clone()),
            task: task.to_owned(),
            name: cfg.name.clone(),
            external_labels: cfg.external_labels.clone(),
            encoder: cfg.kind.encoder(),
            queue: Arc::new(queue),
            metrics,
            queue_config: q.clone(),
            ack,
        })
    }

    /// A fresh per-request output for this target: one chunk per lane.
    pub fn output(&self) -> Output {
        Output {
            lanes: (0..self.queue.lanes()).map(|_| Chunk::default()).collect(),
            newest_timestamp_ms: i64::MIN,
            ..Output::default()
        }
    }

    /// What the target holds as shutdown begins, to report what the drain did.
    pub fn drain_start(&self) -> DrainStart {
        DrainStart {
            delivered: self.metrics.delivered.get(),
            dropped: self.dropped_total(),
        }
    }

    fn dropped_total(&self) -> u64 {
        let m = &self.metrics;
        [
            &m.dropped_refused,
            &m.dropped_unsupported,
            &m.dropped_shutdown,
            &m.dropped_spool_full,
            &m.dropped_spool_corrupt,
            &m.dropped_spool_error,
        ]
        .iter()
        .map(|c| c.get())
        .sum()
    }

    /// The shutdown line of this target: delivered while draining, dropped, and what is left
    /// (in the spool for the next start, or lost from memory).
    pub fn log_drained(&self, start: &DrainStart) {
        let delivered = self.metrics.delivered.get().saturating_sub(start.delivered);
        let dropped = self.dropped_total().saturating_sub(start.dropped);
        let left = self.queue.held();
        match (&self.spool_dir, left) {
            (Some(dir), left) if left > 0 => tracing::info!(
                task = %self.task, target = %self.name, delivered, dropped, left_in_spool = left,
                spool = %dir.display(), "drained; the rest stays in the spool for the next start"
            ),
            (None, left) if left > 0 => tracing::warn!(
                task = %self.task, target = %self.name, delivered, dropped, lost = left,
                "drained, but samples were still in memory at the shutdown timeout"
            ),
            _ => {
                tracing::info!(task = %self.task, target = %self.name, delivered, dropped, "drained")
            }
        }
    }

    /// Publish the queue gauges.
    pub fn update_gauges(&self) {
        let held = self.queue.held() as i64;
        self.metrics.queue_depth.set(held);
        self.metrics.pending.set(held);
        if let Some(s) = self.queue.spool() {
            self.metrics.spool_bytes.set(s.held_bytes() as i64);
        }
    }
}
