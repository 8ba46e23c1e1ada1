//! The data path's side of a tap (`GET /api/v1/tasks/{name}/tap`): per task, who listens, a
//! bounded channel to each listener, and each listener's rate.
//!
//! Costs: with nobody listening, a request pays one relaxed atomic load per task
//! ([`TaskTap::active`]). With listeners, what a tap costs is bounded by the listeners' rates,
//! not by the relay's throughput: each listener has a token bucket (`rate` samples per second,
//! [`DEFAULT_RATE`] unless asked, at most [`MAX_RATE`], a second's worth of burst). Per request
//! and task, `TapBatch` asks once (one lock on the task's listener list) how many samples the
//! listeners of each target may take now (their tokens, 0 for a full channel), writes the JSON
//! of only that many (rounded up to a whole series), and counts the rest. The chunk is then
//! offered with `try_send`: a listener takes the prefix its tokens allow, and whatever it did
//! not get is counted as skipped for it (the stream's trailer). A slow listener never slows
//! the request, and a fast one costs at most its rate in JSON encoding.
//!
//! A task's [`TaskTap`] lives in the [`TapHub`] by task name, so it survives a reload that
//! keeps the task (the new pipeline picks up the same one).

use super::TaskRuntime;
use crate::batch::SeriesView;
use crate::relabel::merge;
use crate::targets::Target;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

/// Listeners per task at once.
pub const MAX_TAPS: usize = 4;
/// Samples per second a listener gets unless it asks for another rate: plenty to read, and
/// about 0.3 % of what one core encodes for the targets (docs/performance.md).
pub const DEFAULT_RATE: u64 = 10_000;
/// The most a listener may ask for.
pub const MAX_RATE: u64 = 100_000;
/// Chunks (one per request and target, at most a second of the listener's rate) a listener's
/// channel holds.
const CHANNEL_CHUNKS: usize = 16;

/// The taps of every task, by name.
#[derive(Default)]
pub struct TapHub {
    tasks: Mutex<HashMap<String, Arc<TaskTap>>>,
}

impl TapHub {
    /// The tap point of `task` (made on first use).
    pub fn task(&self, task: &str) -> Arc<TaskTap> {
        let mut t = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        t.entry(task.to_owned()).or_default().clone()
    }
}

/// JSON sample objects, one per line; a listener reads the first `count` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapChunk {
    pub lines: Bytes,
    pub count: u64,
}

struct Listener {
    id: u64,
    target: String,
    tx: mpsc::Sender<TapChunk>,
    skipped: Arc<AtomicU64>,
    /// Samples per second.
    rate: f64,
    /// Samples it may take now (at most `rate`), as of `refilled`.
    tokens: f64,
    refilled: Instant,
}

impl Listener {
    /// Samples it may take at `now` (a whole number; 0 when its channel is full).
    fn allowance(&self, now: Instant) -> u64 {
        if self.tx.capacity() == 0 {
            return 0;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        (self.tokens + elapsed * self.rate).min(self.rate) as u64
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.refilled = now;
    }
}

/// One task's listeners.
#[derive(Default)]
pub struct TaskTap {
    count: AtomicUsize,
    next_id: AtomicU64,
    listeners: Mutex<Vec<Listener>>,
}

impl TaskTap {
    /// Whether anyone listens: the one check the data path makes per request and task.
    #[inline]
    pub fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Listener>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Per target of `targets`: the most samples one of its listeners may take at `now`.
    fn budgets<'a>(&self, targets: impl Iterator<Item = &'a str>, now: Instant) -> Vec<u64> {
        let listeners = self.lock();
        targets
            .map(|t| {
                listeners
                    .iter()
                    .filter(|l| l.target == t)
                    .map(|l| l.allowance(now))
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Offer what `target` received: `chunk` holds the first `chunk.count` of the `received`
    /// samples as JSON. Each listener takes the prefix its tokens allow (if its channel has
    /// room); what it did not get counts as skipped for it.
    fn publish_at(&self, target: &str, chunk: TapChunk, received: u64, now: Instant) {
        let mut listeners = self.lock();
        for l in listeners.iter_mut().filter(|l| l.target == target) {
            l.refill(now);
            let take = chunk.count.min(l.tokens as u64);
            let sent = take > 0
                && l.tx
                    .try_send(TapChunk {
                        lines: chunk.lines.clone(),
                        count: take,
                    })
                    .is_ok();
            let got = if sent { take } else { 0 };
            l.tokens -= got as f64;
            l.skipped.fetch_add(received - got, Ordering::Relaxed);
        }
    }

    /// Listen to what `target` receives, at most `rate` samples per second (clamped to
    /// 1..=[`MAX_RATE`]); `None` when [`MAX_TAPS`] already listen.
    pub fn subscribe(self: &Arc<Self>, target: &str, rate: u64) -> Option<Subscription> {
        let mut listeners = self.lock();
        if listeners.len() >= MAX_TAPS {
            return None;
        }
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let skipped = Arc::new(AtomicU64::new(0));
        let rate = rate.clamp(1, MAX_RATE) as f64;
        listeners.push(Listener {
            id,
            target: target.to_owned(),
            tx,
            skipped: skipped.clone(),
            rate,
            tokens: rate,
            refilled: Instant::now(),
        });
        self.count.store(listeners.len(), Ordering::Relaxed);
        Some(Subscription {
            tap: self.clone(),
            id,
            rx,
            skipped,
        })
    }
}

/// A listener's end; dropping it stops the listening.
pub struct Subscription {
    tap: Arc<TaskTap>,
    id: u64,
    /// Chunks of JSON lines, in the order the target received them.
    pub rx: mpsc::Receiver<TapChunk>,
    skipped: Arc<AtomicU64>,
}

impl Subscription {
    /// Samples this listener did not get so far (its rate, or its channel, was full).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut listeners = self.tap.lock();
        listeners.retain(|l| l.id != self.id);
        self.tap.count.store(listeners.len(), Ordering::Relaxed);
    }
}

/// What one request delivered for a tapped task, per target: the JSON lines its listeners may
/// take (see the module docs), and the samples it received.
pub(super) struct TapBatch {
    /// Per task target: JSON lines, how many, and how many its listeners may take.
    lines: Vec<(Vec<u8>, u64, u64)>,
    /// Float samples each target received in this request.
    received: u64,
}

impl TapBatch {
    pub(super) fn new(task: &TaskRuntime, targets: &[Arc<Target>]) -> TapBatch {
        let names = task
            .targets
            .iter()
            .map(|tt| targets[tt.index].name.as_str());
        let lines = task
            .tap
            .budgets(names, Instant::now())
            .into_iter()
            .map(|budget| (Vec::new(), 0, budget))
            .collect();
        TapBatch { lines, received: 0 }
    }

    /// A series the task delivered: as JSON for each target whose listeners still may take
    /// some, each sample as the seed's object with the labels that target received.
    #[inline]
    pub(super) fn add(&mut self, task: &TaskRuntime, series: &SeriesView<'_>) {
        let n = series.samples().len() as u64;
        self.received += n;
        for (tt, (buf, written, budget)) in task.targets.iter().zip(self.lines.iter_mut()) {
            if *written >= *budget || n == 0 {
                continue;
            }
            let labels = merge(
                series.buf(),
                series.label_refs(),
                &task.labels,
                &tt.external_labels,
            );
            for sample in series.samples() {
                crate::encode::json_sample::write_sample(buf, labels.clone(), sample);
                buf.push(b'\n');
            }
            *written += n;
        }
    }

    /// Offer the lines to the listeners of each target (not to those of `failed`, which did
    /// not take the request).
    pub(super) fn publish(
        self,
        task: &TaskRuntime,
        targets: &[Arc<Target>],
        failed: Option<usize>,
    ) {
        if self.received == 0 {
            return;
        }
        let now = Instant::now();
        for (tt, (buf, count, _)) in task.targets.iter().zip(self.lines) {
            if failed != Some(tt.index) {
                let chunk = TapChunk {
                    lines: Bytes::from(buf),
                    count,
                };
                task.tap
                    .publish_at(&targets[tt.index].name, chunk, self.received, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn chunk(lines: &'static [u8]) -> TapChunk {
        TapChunk {
            lines: Bytes::from_static(lines),
            count: lines.iter().filter(|&&b| b == b'\n').count() as u64,
        }
    }

    #[test]
    fn at_most_four_listen_and_a_full_channel_counts_skipped_samples() {
        let tap = Arc::new(TaskTap::default());
        assert!(!tap.active());
        let mut subs: Vec<Subscription> = (0..MAX_TAPS)
            .map(|_| tap.subscribe("t", MAX_RATE).unwrap())
            .collect();
        assert!(tap.active());
        assert!(tap.subscribe("t", MAX_RATE).is_none(), "a fifth is refused");
        let now = Instant::now();
        for _ in 0..CHANNEL_CHUNKS + 3 {
            tap.publish_at("t", chunk(b"{}\n{}\n"), 2, now);
        }
        tap.publish_at("other", chunk(b"{}\n"), 1, now);
        assert_eq!(subs[0].skipped(), 6);
        assert_eq!(
            tap.budgets(["t", "other"].into_iter(), now),
            [0, 0],
            "every channel is full; nobody taps `other`"
        );
        // Nothing written (no budget): all of it skipped.
        tap.publish_at(
            "t",
            TapChunk {
                lines: Bytes::new(),
                count: 0,
            },
            5,
            now,
        );
        assert_eq!(subs[1].skipped(), 11);
        assert_eq!(subs[0].rx.try_recv().unwrap(), chunk(b"{}\n{}\n"));
        subs.clear();
        assert!(
            !tap.active(),
            "dropping every subscription makes it idle again"
        );
        assert!(tap.subscribe("t", 1).is_some());
    }

    #[test]
    fn a_listener_takes_no_more_than_its_rate_and_the_rest_is_skipped() {
        let tap = Arc::new(TaskTap::default());
        let mut slow = tap.subscribe("t", 3).unwrap();
        let mut fast = tap.subscribe("t", 100).unwrap();
        let t0 = Instant::now();
        assert_eq!(tap.budgets(["t"].into_iter(), t0), [100]);
        // Five samples written of eight received: the slow one takes 3, the fast one 5.
        tap.publish_at("t", chunk(b"1\n2\n3\n4\n5\n"), 8, t0);
        assert_eq!(slow.rx.try_recv().unwrap().count, 3);
        assert_eq!(slow.skipped(), 5);
        assert_eq!(fast.rx.try_recv().unwrap().count, 5);
        assert_eq!(fast.skipped(), 3);
        // The slow one has no tokens left until time passes: one per third of a second.
        tap.publish_at("t", chunk(b"6\n"), 1, t0);
        assert!(slow.rx.try_recv().is_err());
        assert_eq!(slow.skipped(), 6);
        tap.publish_at("t", chunk(b"7\n8\n"), 2, t0 + Duration::from_millis(700));
        assert_eq!(slow.rx.try_recv().unwrap().count, 2);
        // Tokens never exceed a second's worth.
        assert_eq!(
            tap.budgets(["t"].into_iter(), t0 + Duration::from_secs(60)),
            [100]
        );
        assert_eq!(slow.skipped(), 6);
        drop(fast);
        assert_eq!(
            tap.budgets(["t"].into_iter(), t0 + Duration::from_secs(60)),
            [3]
        );
    }
}
