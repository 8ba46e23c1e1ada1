//! The data path of one request: decode → match (per task, or through the task index) →
//! per group of matched series: hash → relabel → encode → queue.
//!
//! All per-request state lives in a [`Scratch`] owned by the thread that runs the request (one
//! per runtime worker: the pipeline shards), so a steady stream of requests reuses the same
//! buffers: the decode buffer, the batch vectors and
//! one encode buffer per target lane. The per-series loop does no allocation, logging or metric
//! updates; counts are kept in the scratch and published once per request.
//!
//! Admission is all or nothing: every task's output is encoded into scratch first, then room is
//! reserved in every target's queue, and only if all reservations succeed is anything appended.
//! Otherwise the request is refused (503/429 + `Retry-After`) and the sender retries it whole,
//! so no target gets a duplicate and none is skipped.

use crate::batch::SeriesBatch;
use crate::config::{Ack, Config, ServerConfig};
use crate::decode::{DecodeError, DecodeLimits, Protocol};
use crate::encode::remote_write::SpliceLabels;
use crate::filter::Filter;
use crate::relabel::LabelSet;
use crate::targets::queue::Span;
use crate::targets::{Output, SinkError, Target};
use crate::telemetry::{Metrics, SourceMetrics, TaskMetrics};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

mod deliver;
mod index;
mod metadata;
mod pass_through;
pub mod tap;

use deliver::{GROUP_PAIRS, Group, deliver};
use index::{INDEX_FROM, IndexScratch, TaskIndex};
use pass_through::passes_through;

use tap::{TapBatch, TapHub, TaskTap};

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
    name: String,
    filter: Filter,
    labels: LabelSet,
    targets: Vec<TaskTarget>,
    metrics: TaskMetrics,
    /// Who listens to what this task delivers (see [`tap`]).
    tap: Arc<TaskTap>,
    /// A target of the task picks lanes by the series hash ([`Encoder::uses_series_hash`]).
    ///
    /// [`Encoder::uses_series_hash`]: crate::targets::Encoder::uses_series_hash
    uses_series_hash: bool,
}

/// One of a task's targets: which, and the labels it adds (they belong to the config, not to
/// the running target, so a reload can change them without touching its queue).
struct TaskTarget {
    /// Index into [`Pipeline::targets`].
    index: usize,
    external_labels: LabelSet,
    /// The task's and these external labels, encoded once for remote-write splicing.
    splice: SpliceLabels,
}

struct SourceRoute {
    tasks: Vec<TaskRuntime>,
    /// With many tasks: which tasks a series can match, by its name.
    index: Option<TaskIndex>,
    metrics: SourceMetrics,
    /// The `Authorization` value senders must present, if any.
    auth: Option<String>,
    /// A Kafka source: it reads its topics, HTTP writes to it are refused.
    kafka: bool,
}

/// The targets a pipeline is assembled from, by (task, target) name.
pub type TargetMap = HashMap<(String, String), Arc<Target>>;

/// Per-target scratch of one request.
#[derive(Default)]
struct TargetScratch {
    out: Output,
    touched: bool,
}

impl TargetScratch {
    /// Target `ti`'s output, marked as written to by this request (so admission and the
    /// reset after it visit it).
    #[inline]
    fn touch<'a>(
        outs: &'a mut [TargetScratch],
        touched: &mut Vec<usize>,
        ti: usize,
    ) -> &'a mut Output {
        let ts = &mut outs[ti];
        if !ts.touched {
            ts.touched = true;
            touched.push(ti);
        }
        &mut ts.out
    }
}

/// Reused per-request state. See the module docs.
#[derive(Default)]
pub struct Scratch {
    batch: SeriesBatch,
    targets: Vec<TargetScratch>,
    touched: Vec<usize>,
    /// Matched samples per task of the source.
    matched: Vec<usize>,
    /// Matched (series, task) pairs not yet delivered (see [`Group`]).
    pairs: Vec<(u32, u32)>,
    /// A series' candidate tasks, from the task index.
    index: IndexScratch,
}

/// What a successful request did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    pub series: usize,
    /// Float samples plus native histograms.
    pub samples: usize,
    /// Native histograms (of `samples`).
    pub histograms: usize,
    pub exemplars: usize,
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
    server: ServerConfig,
    /// Distinguishes pipelines in the per-thread scratch.
    id: u64,
}

impl Pipeline {
    /// Build the routing table from a checked config, and its targets. Disabled tasks are
    /// left out: they receive nothing. Targets are numbered in config order (enabled tasks
    /// only), which is the order of [`Pipeline::targets`].
    ///
    /// # Errors
    /// A target's spool cannot be opened.
    pub fn new(config: Config, metrics: &Metrics) -> Result<Pipeline, SinkError> {
        let mut targets = TargetMap::new();
        for task in config.tasks.iter().filter(|t| t.enabled) {
            for t in &task.targets {
                let target = Target::new(
                    &task.name,
                    t,
                    metrics.target(&task.name, &t.name),
                    task.ack,
                    &config.server.data_dir,
                )?;
                targets.insert((task.name.clone(), t.name.clone()), Arc::new(target));
            }
        }
        Ok(Pipeline::assemble(
            &config,
            &targets,
            metrics,
            &TapHub::default(),
        ))
    }

    /// The routing table of `config` over running `targets` (every target of every enabled
    /// task must be in the map; the control plane builds or keeps them).
    ///
    /// # Panics
    /// Never for a map built from the same config; a missing target is left out and logged.
    pub fn assemble(
        config: &Config,
        targets: &TargetMap,
        metrics: &Metrics,
        taps: &TapHub,
    ) -> Pipeline {
        let mut sources: Vec<SourceRoute> = config
            .sources
            .iter()
            .zip(&config.source_auth)
            .map(|(s, auth)| SourceRoute {
                tasks: Vec::new(),
                index: None,
                metrics: metrics.source(s),
                auth: auth.header_value(),
                kafka: config.kafka_sources.iter().any(|k| &k.name == s),
            })
            .collect();
        let source_index: HashMap<String, usize> = config
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        let mut ordered = Vec::new();
        for task in config.tasks.iter().filter(|t| t.enabled) {
            let mut task_targets = Vec::new();
            for t in &task.targets {
                let Some(target) = targets.get(&(task.name.clone(), t.name.clone())) else {
                    tracing::error!(task = %task.name, target = %t.name, "internal error: target not running; left out");
                    continue;
                };
                task_targets.push(TaskTarget {
                    index: ordered.len(),
                    external_labels: t.external_labels.clone(),
                    splice: SpliceLabels::new(&task.labels, &t.external_labels),
                });
                ordered.push(target.clone());
            }
            let uses_series_hash = task_targets.iter().any(|t| {
                let target = &ordered[t.index];
                target.encoder.uses_series_hash(target.queue.lanes())
            });
            if let Some(&si) = source_index.get(&task.source) {
                sources[si].tasks.push(TaskRuntime {
                    name: task.name.clone(),
                    filter: task.filter.clone(),
                    labels: task.labels.clone(),
                    targets: task_targets,
                    metrics: metrics.task(&task.name),
                    tap: taps.task(&task.name),
                    uses_series_hash,
                });
            }
        }
        for route in &mut sources {
            if route.tasks.len() >= INDEX_FROM {
                route.index = Some(TaskIndex::new(&route.tasks));
            }
        }
        let s = &config.server;
        Pipeline {
            sources,
            source_index,
            targets: ordered,
            limits: DecodeLimits {
                max_decoded_bytes: s.max_decoded_bytes,
                max_series_per_request: s.max_series_per_request,
                max_labels_per_series: s.max_labels_per_series,
                max_label_name_bytes: s.max_label_name_bytes,
                max_label_value_bytes: s.max_label_value_bytes,
            },
            server: s.clone(),
            id: NEXT_PIPELINE_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The server settings this pipeline was built with (the reloadable ones apply per
    /// request: limits, answers, timeouts).
    pub fn server(&self) -> &ServerConfig {
        &self.server
    }

    /// Each running task's name and its matched and filtered sample counts so far.
    pub fn task_counters(&self) -> impl Iterator<Item = (&str, u64, u64)> {
        self.sources.iter().flat_map(|s| {
            s.tasks.iter().map(|t| {
                (
                    t.name.as_str(),
                    t.metrics.matched.get(),
                    t.metrics.filtered.get(),
                )
            })
        })
    }

    /// Each source's name and its received sample count so far.
    pub fn source_counters(&self) -> impl Iterator<Item = (&str, u64)> {
        self.source_index.iter().filter_map(|(name, &i)| {
            Some((name.as_str(), self.sources.get(i)?.metrics.samples.get()))
        })
    }

    /// The names of the sources, in config order.
    pub fn source_names(&self) -> Vec<&str> {
        let mut names: Vec<(&str, usize)> = self
            .source_index
            .iter()
            .map(|(n, &i)| (n.as_str(), i))
            .collect();
        names.sort_by_key(|&(_, i)| i);
        names.into_iter().map(|(n, _)| n).collect()
    }

    /// The `Authorization` value a source's senders must present, if any.
    pub fn source_auth(&self, source: usize) -> Option<&str> {
        self.sources.get(source).and_then(|s| s.auth.as_deref())
    }

    /// Whether a source reads Kafka (not HTTP writes).
    pub fn source_reads_kafka(&self, source: usize) -> bool {
        self.sources.get(source).is_some_and(|s| s.kafka)
    }

    /// The index of a named source, for [`Pipeline::process`].
    pub fn source(&self, name: &str) -> Option<usize> {
        self.source_index.get(name).copied()
    }

    pub fn targets(&self) -> &[Arc<Target>] {
        &self.targets
    }

    fn new_scratch(&self) -> Scratch {
        // Sized once for the most tasks a source has, so no request grows them later.
        let tasks = self
            .sources
            .iter()
            .map(|r| r.tasks.len())
            .max()
            .unwrap_or(0);
        let mut index = IndexScratch::default();
        for route in &self.sources {
            if route.index.is_some() {
                index.fit(route.tasks.len());
            }
        }
        Scratch {
            index,
            matched: Vec::with_capacity(tasks),
            pairs: Vec::with_capacity(GROUP_PAIRS + tasks),
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
        self.process_acked(source, body, Protocol::V1, &mut Vec::new())
    }

    /// [`Pipeline::process`] for a body of `protocol` (remote-write 1.0 or 2.0).
    ///
    /// # Errors
    /// As [`Pipeline::process`].
    pub fn process_as(
        &self,
        source: usize,
        body: &[u8],
        protocol: Protocol,
    ) -> Result<IngestStats, IngestError> {
        self.process_acked(source, body, protocol, &mut Vec::new())
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
        protocol: Protocol,
        waits: &mut Vec<AckWait>,
    ) -> Result<IngestStats, IngestError> {
        // A 1.0 body may be passed through as it came (see `pass_through.rs`); a 2.0 body never is.
        let raw = (protocol == Protocol::V1).then_some(body);
        self.process_raw(source, protocol, waits, raw, |batch, limits| {
            batch.decode_snappy_as(body, limits, protocol)
        })
    }

    /// [`Pipeline::process_acked`] for a batch that `fill` builds (a source that does not
    /// read remote-write bodies, e.g. the Kafka source's JSON): `fill` gets the shard's
    /// cleared-or-reused batch and the decode limits, and must leave the batch with the
    /// invariants of [`SeriesBatch`] (labels checked, sorted, hashed) or fail. `protocol` is
    /// the remote-write version the batch stands for (how its metadata is forwarded; a batch
    /// without metadata is 1.0).
    ///
    /// # Errors
    /// `fill`'s error as [`IngestError::Decode`]; otherwise as [`Pipeline::process_acked`].
    pub fn process_with(
        &self,
        source: usize,
        protocol: Protocol,
        waits: &mut Vec<AckWait>,
        fill: impl FnOnce(&mut SeriesBatch, DecodeLimits) -> Result<(), DecodeError>,
    ) -> Result<IngestStats, IngestError> {
        self.process_raw(source, protocol, waits, None, fill)
    }

    /// [`Pipeline::process_with`], with the snappy body `fill` decodes when it is a 1.0
    /// `WriteRequest` (`raw`), for targets that can send it on as it came.
    fn process_raw(
        &self,
        source: usize,
        protocol: Protocol,
        waits: &mut Vec<AckWait>,
        raw: Option<&[u8]>,
        fill: impl FnOnce(&mut SeriesBatch, DecodeLimits) -> Result<(), DecodeError>,
    ) -> Result<IngestStats, IngestError> {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let (owner, scratch) = &mut *slot;
                if *owner != self.id {
                    // Sized for another pipeline (tests and benchmarks build several).
                    *scratch = self.new_scratch();
                    *owner = self.id;
                }
                let result = self.process_in(scratch, source, protocol, raw, fill, waits);
                Self::reset(scratch);
                result
            }
            // Not reachable (process never calls itself), but never worth a panic.
            Err(_) => self.process_in(&mut self.new_scratch(), source, protocol, raw, fill, waits),
        })
    }

    fn process_in(
        &self,
        scratch: &mut Scratch,
        source: usize,
        protocol: Protocol,
        raw: Option<&[u8]>,
        fill: impl FnOnce(&mut SeriesBatch, DecodeLimits) -> Result<(), DecodeError>,
        waits: &mut Vec<AckWait>,
    ) -> Result<IngestStats, IngestError> {
        let Scratch {
            batch,
            targets: outs,
            touched,
            matched,
            pairs,
            index: index_scratch,
        } = scratch;
        fill(batch, self.limits)?;
        let route = &self.sources[source];
        let received = batch.sample_count() + batch.histogram_count();
        route.metrics.series.inc_by(batch.len() as u64);
        route.metrics.samples.inc_by(batch.sample_count() as u64);
        route
            .metrics
            .histograms
            .inc_by(batch.histogram_count() as u64);
        route.metrics.metadata.inc_by(batch.metadata_count() as u64);

        // Tapped tasks' JSON, per target; empty (no allocation) when nobody listens.
        let mut tapped: Vec<(&TaskRuntime, TapBatch)> = Vec::new();
        // The one check a tap costs when idle: a load per task. Someone listening (debugging
        // a task) takes the slower task-by-task loop below, which also writes what it taps,
        // up to the listeners' rates (see [`tap`]).
        if route.tasks.iter().any(|t| t.tap.active()) {
            for task in &route.tasks {
                let mut matched = 0usize;
                let mut tap = task
                    .tap
                    .active()
                    .then(|| TapBatch::new(task, &self.targets));
                for series in batch.iter() {
                    if !task.filter.matches(&series) {
                        continue;
                    }
                    matched += deliver(task, &series, &self.targets, outs, touched);
                    if let Some(tap) = &mut tap {
                        tap.add(task, &series);
                    }
                }
                task.metrics.matched.inc_by(matched as u64);
                task.metrics.filtered.inc_by((received - matched) as u64);
                if let Some(tap) = tap {
                    tapped.push((task, tap));
                }
            }
        } else {
            // Matched (series, task) pairs are delivered a group at a time, so that a group's
            // series can be hashed four at a time first (see `Group::deliver`).
            matched.clear();
            matched.resize(route.tasks.len(), 0);
            pairs.clear();
            let n = batch.len();
            let mut group = Group {
                tasks: &route.tasks,
                targets: &self.targets,
                pairs,
                matched,
            };
            match &route.index {
                // Few tasks: task by task, each filter over the whole batch (cache-friendly).
                None => {
                    for (ti, task) in route.tasks.iter().enumerate() {
                        for i in 0..n {
                            if task.filter.matches(&batch.series(i)) {
                                group.pairs.push((i as u32, ti as u32));
                                if group.pairs.len() == GROUP_PAIRS {
                                    group.deliver(batch, outs, touched);
                                }
                            }
                        }
                    }
                }
                // Many tasks: series by series, each meeting only the tasks its labels can match.
                Some(index) => {
                    for i in 0..n {
                        let series = batch.series(i);
                        let (candidates, verified) = index.candidates(&series, index_scratch);
                        for &ti in candidates {
                            let known = if verified {
                                index.known(ti)
                            } else {
                                usize::MAX
                            };
                            let filter = &route.tasks[ti as usize].filter;
                            if filter.matches_except(&series, known) {
                                group.pairs.push((i as u32, ti));
                            }
                        }
                        if group.pairs.len() >= GROUP_PAIRS {
                            group.deliver(batch, outs, touched);
                        }
                    }
                }
            }
            group.deliver(batch, outs, touched);
            for (task, &m) in route.tasks.iter().zip(matched.iter()) {
                task.metrics.matched.inc_by(m as u64);
                task.metrics.filtered.inc_by((received - m) as u64);
            }
        }

        if !batch.metadata().is_empty() {
            for task in &route.tasks {
                metadata::forward(task, batch, protocol, &self.targets, outs, touched);
            }
        }

        // All or nothing: reserve everywhere first (in memory, or on a target's overflow).
        for (k, &ti) in touched.iter().enumerate() {
            if !self.targets[ti].queue.admit(&mut outs[ti].out.lanes) {
                for &undo in &touched[..k] {
                    self.targets[undo].queue.unadmit(&outs[undo].out.lanes);
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
            let mut whole = raw.filter(|_| passes_through(target, out, batch));
            // Several lanes: the request goes whole on lane 0 as a barrier, or not at all.
            let mut barrier = None;
            if let Some(compressed) = whole
                && out.lanes.len() > 1
            {
                barrier = target.queue.append_whole(&out.lanes, compressed);
                if barrier.is_some() {
                    target.metrics.passed_through.inc();
                }
                whole = None;
            }
            for (lane, chunk) in out.lanes.iter().enumerate() {
                if barrier.is_some() {
                    if lane > 0 {
                        break;
                    }
                } else if chunk.is_empty() {
                    continue;
                }
                let appended = match (barrier, whole) {
                    (Some(span), _) => Ok(span),
                    (None, Some(compressed)) => target
                        .queue
                        .append_compressed(lane, chunk, compressed)
                        .map(|(span, passed)| {
                            if passed {
                                target.metrics.passed_through.inc();
                            }
                            span
                        }),
                    (None, None) => target.queue.append(lane, chunk),
                };
                match appended {
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
                        let samples = chunk.samples;
                        lost += samples;
                        tracing::error!(task = %target.task, target = %target.name, samples, "spool write failed, samples dropped: {e}");
                        failed = Some(ti);
                    }
                }
            }
            // A lost chunk's room may include metadata entries (one each), not samples.
            let lost = lost.min(out.samples);
            queued += out.samples - lost;
            target.metrics.queued.inc_by((out.samples - lost) as u64);
            target.metrics.dropped_spool_error.inc_by(lost as u64);
            target
                .metrics
                .dropped_unsupported
                .inc_by(out.unsupported as u64);
            target.count_metadata(out);
            target.update_gauges();
        }
        // Taken: the tapped targets received these samples.
        for (task, tap) in tapped {
            tap.publish(task, &self.targets, failed);
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
            histograms: batch.histogram_count(),
            exemplars: batch.exemplar_count(),
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

#[cfg(test)]
mod tests;
