//! What every target has, whatever its kind: the keys every kind's config shares, and the
//! running target the data path hands data to (its encoder, queue, metrics and ack policy).

use super::health::Health;
use super::latency::SendLatency;
use super::queue::{Chunk, Overflow, QueueConfig, RawQueue, SinkQueue};
use super::receivers::Receivers;
use super::spool::{self, OverflowConfig, RawOverflow, RawSpool, SpoolConfig};
use super::{Encoder, TargetKind};
use crate::config::{Ack, ConfigError, invalid};
use crate::relabel::{LabelSet, is_valid_label_name};
use crate::telemetry::{TargetClock, TargetMetrics};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A checked target: the shared keys, and the kind's own config.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    pub name: String,
    pub external_labels: LabelSet,
    pub queue: QueueConfig,
    pub spool: Option<SpoolConfig>,
    /// Disk budget once the memory queue is full; not used with a `spool` (already on disk)
    /// nor under `ack: delivered` (the request waits for delivery anyway).
    pub overflow: Option<OverflowConfig>,
    pub kind: TargetKind,
}

/// The keys every kind of target has, as written.
pub struct CommonKeys<'a> {
    pub name: String,
    pub external_labels: &'a BTreeMap<String, String>,
    pub queue: &'a RawQueue,
    pub spool: Option<&'a RawSpool>,
    pub overflow: &'a RawOverflow,
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
            overflow: common.overflow.validate(at)?,
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
    /// Metadata entries written (each takes one sample's room in the queue, see
    /// [`crate::encode::metadata`]).
    pub metadata: usize,
    /// Metadata entries dropped: the format cannot carry them (JSON).
    pub metadata_unsupported: usize,
    /// Metadata entries dropped: they came without series (remote-write 1.0 metadata
    /// requests) and a remote-write 2.0 target carries metadata only inside series.
    pub metadata_without_series: usize,
    /// 2.0 start timestamps the format cannot carry, dropped (see
    /// [`crate::encode::start_timestamp`]).
    pub start_timestamps_dropped: usize,
    /// Series written as an exact copy of their field in the request (no label added or
    /// changed, nothing rewritten): when every series of a request is, the request can go
    /// as its sender compressed it (`pipeline/pass_through.rs`).
    pub copied: usize,
    /// Scratch for an encoder that writes extra fields of a series (reused).
    pub scratch: Vec<u8>,
    /// Scratch of the JSON targets' `histograms: buckets` conversion (reused).
    pub histogram_scratch: crate::encode::histogram_buckets::Scratch,
}

impl Output {
    pub fn clear(&mut self) {
        self.lanes.iter_mut().for_each(Chunk::clear);
        self.samples = 0;
        self.copied = 0;
        self.unsupported = 0;
        self.newest_timestamp_ms = i64::MIN;
        self.metadata = 0;
        self.metadata_unsupported = 0;
        self.metadata_without_series = 0;
        self.start_timestamps_dropped = 0;
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
    pub encoder: Encoder,
    pub queue: Arc<SinkQueue>,
    pub metrics: TargetMetrics,
    pub queue_config: QueueConfig,
    /// The task's acknowledgement policy.
    pub ack: Ack,
    /// How its last sends went, for status.
    pub health: Health,
    /// How long its send attempts took, for the p99 on status.
    pub latency: SendLatency,
    /// The newest timestamps received and delivered (see [`crate::telemetry::lag`]).
    pub clock: TargetClock,
    /// Each receiver's health and metrics, when the target sends to several.
    pub receivers: Receivers,
    /// A remote-write 1.0 request this target takes unchanged is queued as its sender's
    /// compressed bytes ([`SinkQueue::append_compressed`] with one lane,
    /// [`SinkQueue::append_whole`] with several): a 1.0 sender, one receiver and no spool.
    pub pass_through: bool,
}

impl Target {
    /// Build a target's queue, opening (and replaying) its spool if it has one, and its
    /// overflow under `data_dir` if that holds data from an earlier run.
    ///
    /// # Errors
    /// The spool or overflow directory cannot be created, locked or read.
    pub fn new(
        task: &str,
        cfg: &TargetConfig,
        metrics: TargetMetrics,
        ack: Ack,
        data_dir: &Path,
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
        let mut queue = SinkQueue::new(
            q.shards,
            q.capacity,
            q.max_samples_per_send,
            q.batch_send_deadline,
            spool,
        );
        if let Some(o) = &cfg.overflow
            && queue.spool().is_none()
        {
            let spool_cfg = SpoolConfig {
                dir: overflow_dir(data_dir, task, &cfg.name),
                max_bytes: o.max_bytes,
                on_full: o.on_full,
                fsync_interval: OVERFLOW_FSYNC,
            };
            let counters = spool::SpoolCounters {
                dropped_full: metrics.dropped_spool_full.clone(),
                dropped_corrupt: metrics.dropped_spool_corrupt.clone(),
            };
            metrics
                .spool_max_bytes
                .set(i64::try_from(o.max_bytes).unwrap_or(i64::MAX));
            let overflow =
                Overflow::new(spool_cfg, queue.lanes(), counters).map_err(|e| SinkError {
                    target: cfg.name.clone(),
                    message: format!("overflow: {e}"),
                })?;
            queue = queue.with_overflow(overflow);
        }
        metrics.queue_depth.set(queue.held() as i64);
        metrics.pending.set(queue.held() as i64);
        let queue_lanes = queue.lanes();
        let receiver_metrics = metrics.receivers.clone();
        let clock = TargetClock::new(
            queue.lanes(),
            metrics.received_timestamp.clone(),
            metrics.sent_timestamp.clone(),
        );
        let encoder = cfg.kind.encoder();
        let pass_through = encoder.passes_requests_through() && queue.spool().is_none();
        Ok(Target {
            clock,
            task: task.to_owned(),
            name: cfg.name.clone(),
            encoder,
            pass_through,
            queue: Arc::new(queue),
            metrics,
            queue_config: q.clone(),
            ack,
            health: Health::default(),
            latency: SendLatency::default(),
            receivers: Receivers::new(
                cfg.kind.receivers(),
                queue_lanes,
                &receiver_metrics,
                task,
                &cfg.name,
            ),
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

    /// Publish what one admitted request did with metadata and start timestamps for this
    /// target.
    pub fn count_metadata(&self, out: &Output) {
        let m = &self.metrics;
        m.metadata_dropped_unsupported
            .inc_by(out.metadata_unsupported as u64);
        m.metadata_dropped_without_series
            .inc_by(out.metadata_without_series as u64);
        m.start_timestamps_dropped
            .inc_by(out.start_timestamps_dropped as u64);
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
            &m.dropped_removed,
        ]
        .iter()
        .map(|c| c.get())
        .sum()
    }

    /// The line of this target when it stops (shutdown, or retired by a reload): delivered
    /// while draining, dropped, what stays on disk for the next start (spool or overflow),
    /// and what was lost from memory.
    pub fn log_drained(&self, start: &DrainStart) {
        let delivered = self.metrics.delivered.get().saturating_sub(start.delivered);
        let dropped = self.dropped_total().saturating_sub(start.dropped);
        let on_disk = self.queue.disk_samples();
        let lost = self.queue.memory_held();
        let dir = self.queue.disk_dir().map(|d| d.display().to_string());
        if lost > 0 {
            tracing::warn!(
                task = %self.task, target = %self.name, delivered, dropped, lost, left_on_disk = on_disk,
                "drained, but samples were still in memory at the shutdown timeout"
            );
        } else if on_disk > 0 {
            tracing::info!(
                task = %self.task, target = %self.name, delivered, dropped, left_on_disk = on_disk,
                dir = dir.as_deref().unwrap_or_default(), "drained; the rest stays on disk for the next start"
            );
        } else {
            tracing::info!(task = %self.task, target = %self.name, delivered, dropped, "drained");
        }
    }

    /// Publish the queue gauges (cheap: atomics only; once per request and per batch).
    pub fn update_gauges(&self) {
        let held = self.queue.held() as i64;
        self.metrics.queue_depth.set(held);
        self.metrics.pending.set(held);
        self.metrics.spool_bytes.set(self.queue.disk_bytes() as i64);
        self.metrics.spilling.set(i64::from(self.queue.spilling()));
    }

    /// Publish the gauges worth computing only when someone looks (they take each lane's
    /// lock): the age of the oldest data held.
    pub fn update_scrape_gauges(&self) {
        self.update_gauges();
        self.metrics
            .oldest_pending_seconds
            .set(self.queue.oldest_pending().as_secs_f64());
    }
}

/// How often an overflow's data is synced to disk (it survives a crash of the relay at once,
/// in the page cache; this bounds what a crash of the machine loses).
const OVERFLOW_FSYNC: Duration = Duration::from_secs(1);

/// `{data_dir}/overflow/{task}/{target}`, each name made safe as one path component.
pub fn overflow_dir(data_dir: &Path, task: &str, target: &str) -> PathBuf {
    data_dir
        .join("overflow")
        .join(path_component(task))
        .join(path_component(target))
}

/// A name as one path component: `A-Z a-z 0-9 . _ -` kept, anything else `_`; a name that had
/// to change (or is `.`/`..`) gets a hash of the original, so two names never share a folder.
fn path_component(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe == name && safe != "." && safe != ".." && !safe.is_empty() {
        return safe;
    }
    let hash = crc32fast::hash(name.as_bytes());
    format!("{safe}-{hash:08x}")
}

#[cfg(test)]
mod tests {
    use super::path_component;

    #[test]
    fn names_become_safe_distinct_path_components() {
        let cases = [
            ("central", "central"),
            ("a.b_c-1", "a.b_c-1"),
            ("a/b", "a_b-"),
            ("a b", "a_b-"),
            ("..", "..-"),
            ("ü", "_-"),
        ];
        for (name, prefix) in cases {
            let got = path_component(name);
            assert!(got.starts_with(prefix), "{name:?} -> {got:?}");
            assert!(
                !got.contains('/') && got != ".." && got != ".",
                "{name:?} -> {got:?}"
            );
        }
        assert_ne!(path_component("a/b"), path_component("a b"));
        assert_ne!(path_component("a_b"), path_component("a b"));
    }
}
