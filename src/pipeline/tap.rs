//! The data path's side of a tap (`GET /api/v1/tasks/{name}/tap`): per task, who listens and
//! a bounded channel to each listener.
//!
//! Costs: with nobody listening, a request pays one relaxed atomic load per task
//! ([`TaskTap::active`]). With listeners, the matching samples are written as JSON lines into
//! a buffer of that request and offered to each listener's channel with `try_send`: a slow
//! listener never slows the request; what does not fit is counted as skipped for it. While
//! no listener has room, the JSON is not written at all, only counted as skipped.
//!
//! A task's [`TaskTap`] lives in the [`TapHub`] by task name, so it survives a reload that
//! keeps the task (the new pipeline picks up the same one).

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Listeners per task at once.
pub const MAX_TAPS: usize = 4;
/// Chunks (one per request and target, up to a request's samples as JSON: about 0.6 MB for
/// 2,000 series) a listener's channel holds: bounds a slow listener to ~10 MB.
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

struct Listener {
    id: u64,
    target: String,
    tx: mpsc::Sender<Bytes>,
    skipped: Arc<AtomicU64>,
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

    /// Whether some listener's channel has room: when none has, the data path skips writing
    /// the JSON at all and counts the samples skipped ([`TaskTap::skip_all`]).
    pub fn has_room(&self) -> bool {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.iter().any(|l| l.tx.capacity() > 0)
    }

    /// Count `samples` skipped for every listener (none had room for them).
    pub fn skip_all(&self, samples: u64) {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        for l in listeners.iter() {
            l.skipped.fetch_add(samples, Ordering::Relaxed);
        }
    }

    /// Offer `lines` (JSON sample objects, one per line, `samples` of them) that `target`
    /// received to its listeners; a listener whose channel is full skips them.
    pub fn publish(&self, target: &str, lines: Bytes, samples: u64) {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        for l in listeners.iter().filter(|l| l.target == target) {
            if l.tx.try_send(lines.clone()).is_err() {
                l.skipped.fetch_add(samples, Ordering::Relaxed);
            }
        }
    }

    /// Listen to what `target` receives; `None` when [`MAX_TAPS`] already listen.
    pub fn subscribe(self: &Arc<Self>, target: &str) -> Option<Subscription> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if listeners.len() >= MAX_TAPS {
            return None;
        }
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let skipped = Arc::new(AtomicU64::new(0));
        listeners.push(Listener {
            id,
            target: target.to_owned(),
            tx,
            skipped: skipped.clone(),
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
    pub rx: mpsc::Receiver<Bytes>,
    skipped: Arc<AtomicU64>,
}

impl Subscription {
    /// Samples that did not fit this listener's channel so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut listeners = self.tap.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.retain(|l| l.id != self.id);
        self.tap.count.store(listeners.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_four_listen_and_a_full_channel_counts_skipped_samples() {
        let tap = Arc::new(TaskTap::default());
        assert!(!tap.active());
        let mut subs: Vec<Subscription> =
            (0..MAX_TAPS).map(|_| tap.subscribe("t").unwrap()).collect();
        assert!(tap.active());
        assert!(tap.subscribe("t").is_none(), "a fifth is refused");
        for _ in 0..CHANNEL_CHUNKS + 3 {
            tap.publish("t", Bytes::from_static(b"{}\n{}\n"), 2);
        }
        tap.publish("other", Bytes::from_static(b"{}\n"), 1);
        assert_eq!(subs[0].skipped(), 6);
        assert!(!tap.has_room(), "every channel is full");
        tap.skip_all(5);
        assert_eq!(subs[1].skipped(), 11);
        assert_eq!(
            subs[0].rx.try_recv().unwrap(),
            Bytes::from_static(b"{}\n{}\n")
        );
        subs.clear();
        assert!(
            !tap.active(),
            "dropping every subscription makes it idle again"
        );
        assert!(tap.subscribe("t").is_some());
    }
}
