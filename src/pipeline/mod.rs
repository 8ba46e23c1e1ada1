//! The data path of one request: decode → per task: match → relabel → encode → queue.
//!
//! All per-request state lives in a [`Scratch`] owned by the thread that runs the request (one
//! per runtime worker: the pipeline shards), so a steady stream of requests reuses the same
//! buffers: the decode buffer, the batch vectors and
//! one encode buffer per target lane. The per-series loop does no allocation, logging or metric
//! updates; counts are kept in locals and published once per request.
//!
//! Admission is all or nothing: every task's output is encoded into scratch first, then room is
//! reserved in every target's queue, and only if all reservations succeed is anything appended.
//! Otherwise the request is refused (503/429 + `Retry-After`) and the sender retries it whole,
//! so no target gets a duplicate and none is skipped.

use crate::batch::SeriesBatch;
use crate::config::{Ack, Config};
use crate::decode::{DecodeError, DecodeLimits};
use crate::filter::Filter;
use crate::relabel::{LabelSet, merge};
use crate::targets::queue::Span;
use crate::targets::{Output, SinkError, Target};
use crate::telemetry::{Metrics, SourceMetrics, TaskMetrics};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Decode buffer a shard keeps between requests; a larger request's buffer is freed after it.
/// (16 MiB covers Prometheus' default 2,000-sample batches many times over.)
const RETAIN_DECODE_BYTES: usize = 16 << 20;

static NEXT_PIPELINE_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's per-request state, tagged with the pipeline it was sized for.
    static SCRATCH: RefCell<(u64, Scratch)> = RefCell::new((u64::MAX, Scratch::default()));
}

/// A task as the data path runs it.
struct TaskRuntime {
    filter: Filter,
    labels: LabelSet,
    /// Indices into [`Pipeline::targets`].
    targets: Vec<usize>,
    metrics: TaskMetrics,
}

struct SourceRoute {
    tasks: Vec<TaskRuntime>,
    metrics: SourceMetrics,
}

/// Per-target scratch of one request.
#[derive(Default)]
struct TargetScratch {
    out: Output,
    /// What the chunks cost against the queue's limit (samples, or spool bytes).
    cost: usize,
    touched: bool,
}

/// Reused per-request state. See the module docs.
#[derive(Default)]
pub struct Scratch {
    batch: SeriesBatch,
    targets: Vec<TargetScratch>,
    touched: Vec<usize>,
}

/// What a successful request did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    pub series: usize,
    pub samples: usize,
    /// Samples queued, summed over targets.
    pub queued: usize,
}

/// Why a request was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// `samples`: what the refused request carried.
    #[error("queue of target {target:?} (task {task:?}) is full; retry later")]
    QueueFull {
        task: String,
        target: String,
        samples: usize,
    },
    #[error("spool of target {target:?} (task {task:?}) cannot be written; retry later")]
    Spool {
        task: String,
        target: String,
        samples: usize,
    },
}

/// Something an answered request still has to wait for, under its task's `ack` policy.
#[derive(Debug, Clone, Copy)]
pub struct AckWait {
    target: usize,
    lane: usize,
    span: Span,
    /// Wait for delivery (`ack: delivered`); otherwise for the spool's fsync.
    delivered: bool,
}

/// Why an acknowledged wait failed.
#[derive(Debug, thiserror::Error)]
#[error("target {target:?} (task {task:?}) refused the data for good; see the relay's log")]
pub struct NotDelivered {
    pub task: String,
    pub target: String,
}

/// The compiled routing table: sources → tasks → targets.
pub struct Pipeline {
    sources: Vec<SourceRoute>,
    source_index: HashMap<String, usize>,
    targets: Vec<Arc<Target>>,
    limits: DecodeLimits,
    /// Distinguishes pipelines in the per-thread scratch.
    id: u64,
}

impl Pipeline {
    /// Build the routing table from a checked config. Disabled tasks are left out: they
    /// receive nothing. Targets are numbered in config order (enabled tasks only), which is the
    /// order of [`Pipeline::targets`].
    ///
    /// # Errors
    /// A target's spool cannot be opened.
    pub fn new(config: Config, metrics: &Metrics) -> Result<Pipeline, SinkError> {
        let mut sources: Vec<SourceRoute> = config
            .sources
            .iter()
            .map(|s| SourceRoute {
                tasks: Vec::new(),
                metrics: metrics.source(s),
            })
            .collect();
        let source_index: HashMap<String, usize> = config
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        let mut targets = Vec::new();
        for task in config.tasks.into_iter().filter(|t| t.enabled) {
            let mut idx = Vec::new();
            for t in &task.targets {
                idx.push(targets.len());
                targets.push(Arc::new(Target::new(
                    &task.name,
                    t,
                    metrics.target(&task.name, &t.name),
                    task.ack,
                )?));
            }
            sources[source_index[&task.source]].tasks.push(TaskRuntime {
                filter: task.filter,
                labels: task.labels,
                targets: idx,
                metrics: metrics.task(&task.name),
            });
        }
        Ok(Pipeline {
            sources,
            source_index,
            targets,
            limits: DecodeLimits {
                max_decoded_bytes: config.server.max_decoded_bytes,
                max_series_per_request: config.server.max_series_per_request,
                max_labels_per_series: config.server.max_labels_per_series,
                max_label_name_bytes: config.server.max_label_name_bytes,
                max_label_value_bytes: config.server.max_label_value_bytes,
            },
            id: NEXT_PIPELINE_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The index of a named source, for [`Pipeline::process`].
    pub fn source(&self, name: &str) -> Option<usize> {
        self.source_index.get(name).copied()
    }

    pub fn targets(&self) -> &[Arc<Target>] {
        &self.targets
    }

    fn new_scratch(&self) -> Scratch {
        Scratch {
            targets: self
                .targets
                .iter()
                .map(|t| TargetScratch {
                    out: t.output(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn reset(s: &mut Scratch) {
        s.batch.trim(RETAIN_DECODE_BYTES);
        for &t in &s.touched {
            let ts = &mut s.targets[t];
            ts.out.clear();
            ts.cost = 0;
            ts.touched = false;
        }
        s.touched.clear();
    }

    /// Run one snappy-compressed remote-write body from `source` through every task.
    ///
    /// Runs on the calling thread with that thread's own scratch: each runtime worker thread is
    /// one pipeline shard, and no lock is taken on the way.
    ///
    /// # Errors
    /// [`IngestError::Decode`] for a body that does not decode (nothing is delivered);
    /// [`IngestError::QueueFull`] when a target has no room (nothing is delivered).
    pub fn process(&self, source: usize, body: &[u8]) -> Result<IngestStats, IngestError> {
        self.process_acked(source, body, &mut Vec::new())
    }

    /// [`Pipeline::process`], also collecting what the answer must wait for under each task's
    /// `ack` policy (nothing is pushed, and nothing allocated, for `ack: queued`).
    ///
    /// # Errors
    /// As [`Pipeline::process`]; [`IngestError::Spool`] when a spool write failed (the other
    /// targets have the data; a retry may duplicate it there).
    pub fn process_acked(
        &self,
        source: usize,
        body: &[u8],
        waits: &mut Vec<AckWait>,
    ) -> Result<IngestStats, IngestError> {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let (owner, scratch) = &mut *slot;
                if *owner != self.id {
                    // Sized for another pipeline (tests and benchmarks build several).
                    *scratch = self.new_scratch();
                    *owner = self.id;
                }
                let result = self.process_in(scratch, source, body, waits);
                Self::reset(scratch);
                result
            }
            // Not reachable (process never calls itself), but never worth a panic.
            Err(_) => self.process_in(&mut self.new_scratch(), source, body, waits),
        })
    }

    fn process_in(
        &self,
        scratch: &mut Scratch,
        source: usize,
        body: &[u8],
        waits: &mut Vec<AckWait>,
    ) -> Result<IngestStats, IngestError> {
        let Scratch {
            batch,
            targets: outs,
            touched,
        } = scratch;
        batch.decode_snappy(body, self.limits)?;
        let route = &self.sources[source];
        let received = batch.sample_count() + batch.histogram_count();
        route.metrics.series.inc_by(batch.len() as u64);
        route.metrics.samples.inc_by(batch.sample_count() as u64);
        route
            .metrics
            .histograms
            .inc_by(batch.histogram_count() as u64);
        route.metrics.metadata.inc_by(batch.metadata_count() as u64);

        for task in &route.tasks {
            let mut matched = 0usize;
            for series in batch.iter() {
                if !task.filter.matches(&series) {
                    continue;
                }
                matched += series.samples().len() + series.histogram_count() as usize;
                let newest = series.newest_timestamp_ms();
                for &ti in &task.targets {
                    let target = &self.targets[ti];
                    let ts = &mut outs[ti];
                    if !ts.touched {
                        ts.touched = true;
                        touched.push(ti);
                    }
                    let labels = merge(
                        series.buf(),
                        series.label_refs(),
                        &task.labels,
                        &target.external_labels,
                    );
                    target.encoder.write_series(&mut ts.out, &series, labels);
                    ts.out.newest_timestamp_ms = ts.out.newest_timestamp_ms.max(newest);
                }
            }
            task.metrics.matched.inc_by(matched as u64);
            task.metrics.filtered.inc_by((received - matched) as u64);
        }

        // All or nothing: reserve everywhere first.
        for (k, &ti) in touched.iter().enumerate() {
            let queue = &self.targets[ti].queue;
            let ts = &mut outs[ti];
            ts.cost = queue.cost(ts.out.samples, &ts.out.lanes);
            if !queue.try_reserve(ts.cost) {
                for &undo in &touched[..k] {
                    self.targets[undo].queue.release(outs[undo].cost);
                }
                let t = &self.targets[ti];
                return Err(IngestError::QueueFull {
                    task: t.task.clone(),
                    target: t.name.clone(),
                    samples: received,
                });
            }
        }
        let mut queued = 0;
        let mut failed = None;
        for &ti in touched.iter() {
            let target = &self.targets[ti];
            let out = &outs[ti].out;
            let mut lost = 0;
            for (lane, chunk) in out.lanes.iter().enumerate() {
                if chunk.is_empty() {
                    continue;
                }
                match target.queue.append(lane, chunk) {
                    Ok(span) => {
                        target.clock.queued(lane, span.end, out.newest_timestamp_ms);
                        let delivered = match target.ack {
                            Ack::Queued => continue,
                            Ack::Spooled if target.queue.spool().is_none() => continue,
                            Ack::Spooled => false,
                            Ack::Delivered => {
                                target.queue.flush(lane);
                                true
                            }
                        };
                        waits.push(AckWait {
                            target: ti,
                            lane,
                            span,
                            delivered,
                        });
                    }
                    Err(e) => {
                        let samples: u32 = chunk.series.iter().map(|&(_, n)| n).sum();
                        lost += samples as usize;
                        tracing::error!(task = %target.task, target = %target.name, samples, "spool write failed, samples dropped: {e}");
                        failed = Some(ti);
                    }
                }
            }
            queued += out.samples - lost;
            target.metrics.queued.inc_by((out.samples - lost) as u64);
            target.metrics.dropped_spool_error.inc_by(lost as u64);
            target
                .metrics
                .dropped_unsupported
                .inc_by(out.unsupported as u64);
            target.update_gauges();
        }
        if let Some(ti) = failed {
            let t = &self.targets[ti];
            return Err(IngestError::Spool {
                task: t.task.clone(),
                target: t.name.clone(),
                samples: received,
            });
        }
        Ok(IngestStats {
            series: batch.len(),
            samples: received,
            queued,
        })
    }
}

impl Pipeline {
    /// Wait for everything `waits` names: spool syncs, then deliveries.
    ///
    /// # Errors
    /// A target refused (or dropped) part of the data it was waited for.
    pub async fn wait_acks(&self, waits: &[AckWait]) -> Result<(), NotDelivered> {
        for w in waits.iter().filter(|w| !w.delivered) {
            self.targets[w.target]
                .queue
                .wait_synced(w.lane, w.span)
                .await;
        }
        for w in waits.iter().filter(|w| w.delivered) {
            let t = &self.targets[w.target];
            if !t.queue.wait_delivered(w.lane, w.span).await {
                return Err(NotDelivered {
                    task: t.task.clone(),
                    target: t.name.clone(),
                });
            }
        }
        Ok(())
    }
}
