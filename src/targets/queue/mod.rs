//! The bounded per-target queue between the data path and the senders.
//!
//! Capacity is counted in samples and covers everything the target holds: reserved by an
//! ingest request, batching, sealed, and in flight. Ingest *reserves* first for every target a
//! request touches and only then appends, so a request is either taken whole or refused whole
//! (answered 503/429, and the sender retries it): no target ever sees half a request, and memory
//! never grows past capacity plus one request.
//!
//! Each queue has `shards` independent lanes. A series always goes to the same lane (by label
//! hash), and each lane sends one batch at a time, so a series' samples reach the target in the
//! order they arrived. A lane's buffer is protobuf `timeseries` fields (or JSON lines) appended
//! back to back: that is already the request body.

mod config;

pub use config::{QueueConfig, RawQueue};

use super::spool::{self, Spool};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Encoded series for one lane, produced by one request, with the series boundaries so the
/// queue can cut batches between series.
#[derive(Debug, Default)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    /// `(end offset in bytes, samples)` per series, in order.
    pub series: Vec<(u32, u32)>,
}

impl Chunk {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.series.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Record that the bytes appended since the last call form one series of `samples` samples.
    #[inline]
    pub fn end_series(&mut self, samples: usize) {
        self.series.push((self.bytes.len() as u32, samples as u32));
    }
}

/// A sealed batch: a request body and how many samples it carries.
#[derive(Debug)]
pub struct Batch {
    pub body: Vec<u8>,
    pub samples: usize,
    /// The lane positions the batch covers (samples in memory, byte offsets in a spool), for
    /// `ack: delivered` waiters.
    pub start: u64,
    pub end: u64,
    /// Spool bytes the batch holds (0 in memory).
    pub bytes: usize,
}

/// Which part of one request went to one lane: positions as in [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

/// How far a lane's sender has got, for requests that wait for delivery.
struct Progress {
    /// Everything before this position is finished (delivered or dropped).
    done: watch::Sender<u64>,
    /// Recent finished ranges that were not delivered (refused, dropped).
    failed: Mutex<VecDeque<(u64, u64)>>,
}

/// Failed ranges remembered per lane; a waiter checks right after its range finishes, so only
/// the recent ones matter.
const FAILED_KEPT: usize = 1024;

impl Progress {
    fn new(at: u64) -> Progress {
        Progress {
            done: watch::Sender::new(at),
            failed: Mutex::new(VecDeque::new()),
        }
    }

    fn finish(&self, start: u64, end: u64, delivered: bool) {
        if !delivered {
            let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            if f.len() == FAILED_KEPT {
                f.pop_front();
            }
            f.push_back((start, end));
        }
        self.done.send_if_modified(|v| {
            let newer = end > *v;
            *v = (*v).max(end);
            newer
        });
    }

    /// Wait until `span` is finished; true when all of it was delivered.
    async fn wait(&self, span: Span) -> bool {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|&v| v >= span.end).await;
        let f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        !f.iter().any(|&(s, e)| s < span.end && e > span.start)
    }
}

#[derive(Default)]
struct LaneState {
    building: Vec<u8>,
    building_samples: usize,
    since: Option<Instant>,
    ready: VecDeque<Batch>,
    spare: Vec<Vec<u8>>,
    /// Samples ever appended / sealed into batches: the lane's positions.
    appended: u64,
    sealed: u64,
}

impl LaneState {
    fn seal(&mut self) {
        if self.building.is_empty() {
            return;
        }
        let fresh = self.spare.pop().unwrap_or_default();
        let body = std::mem::replace(&mut self.building, fresh);
        let start = self.sealed;
        self.sealed += self.building_samples as u64;
        self.ready.push_back(Batch {
            body,
            samples: self.building_samples,
            start,
            end: self.sealed,
            bytes: 0,
        });
        self.building_samples = 0;
        self.since = None;
    }
}

struct Lane {
    state: Mutex<LaneState>,
    notify: Notify,
}

/// See the module docs.
pub struct SinkQueue {
    lanes: Box<[Lane]>,
    progress: Box<[Progress]>,
    /// When set, data goes through this spool instead of the memory lanes.
    spool: Option<Spool>,
    capacity: usize,
    max_per_send: usize,
    send_deadline: Duration,
    held: AtomicUsize,
    closed: AtomicBool,
}

/// Wait until `notify` wakes the caller, or until `until` when given (a batch falls due).
pub(super) async fn wait_for_wake(notify: &Notify, until: Option<Instant>) {
    match until {
        Some(t) => {
            let _ = tokio::time::timeout_at(t.into(), notify.notified()).await;
        }
        None => notify.notified().await,
    }
}

/// Spare buffers kept per lane for reuse; more would only hold memory.
const SPARES: usize = 4;

impl SinkQueue {
    /// A queue in memory, or through `spool` when given (it must have `lanes` lanes).
    pub fn new(
        lanes: usize,
        capacity: usize,
        max_per_send: usize,
        send_deadline: Duration,
        spool: Option<Spool>,
    ) -> SinkQueue {
        let lanes = spool.as_ref().map_or(lanes.max(1), Spool::lanes);
        SinkQueue {
            lanes: (0..lanes)
                .map(|_| Lane {
                    state: Mutex::new(LaneState::default()),
                    notify: Notify::new(),
                })
                .collect(),
            progress: (0..lanes).map(|_| Progress::new(0)).collect(),
            spool,
            capacity,
            max_per_send: max_per_send.max(1),
            send_deadline,
            held: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_ref()
    }

    /// Samples held now (reserved, batching, queued, in flight; or written to the spool and not
    /// yet finished).
    pub fn held(&self) -> usize {
        match &self.spool {
            Some(s) => s.held_samples() as usize,
            None => self.held.load(Ordering::Acquire),
        }
    }

    /// What appending a request's `chunks` (carrying `samples` in all) costs against the
    /// limit: its samples in memory; its bytes, record headers included, in a spool.
    pub fn cost(&self, samples: usize, chunks: &[Chunk]) -> usize {
        match &self.spool {
            None => samples,
            Some(_) => chunks
                .iter()
                .filter(|c| !c.is_empty())
                .map(|c| c.bytes.len() + spool::HEADER)
                .sum(),
        }
    }

    /// Reserve room for data costing `n` (see [`SinkQueue::cost`]). Fails when it does not fit,
    /// except into an empty queue, so that a request larger than the whole capacity is still
    /// taken (alone) rather than refused forever.
    pub fn try_reserve(&self, n: usize) -> bool {
        if let Some(s) = &self.spool {
            return s.try_reserve(n as u64, |lane, start, end| {
                self.progress[lane].finish(start, end, false);
            });
        }
        let mut cur = self.held.load(Ordering::Acquire);
        loop {
            if cur != 0 && cur + n > self.capacity {
                return false;
            }
            match self
                .held
                .compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Give back room reserved with [`SinkQueue::try_reserve`].
    pub fn release(&self, n: usize) {
        match &self.spool {
            Some(s) => s.release(n as u64),
            None => {
                self.held.fetch_sub(n, Ordering::AcqRel);
            }
        }
    }

    /// Append a chunk (already reserved) to a lane, cutting batches between series at
    /// `max_samples_per_send`. Returns the lane positions it took.
    ///
    /// # Errors
    /// Only with a spool: the write failed (nothing of the chunk is kept; its reservation is
    /// released).
    pub fn append(&self, lane: usize, chunk: &Chunk) -> std::io::Result<Span> {
        if let Some(s) = &self.spool {
            let samples: u32 = chunk.series.iter().map(|&(_, n)| n).sum();
            return match s.append(lane, &chunk.bytes, samples) {
                Ok((start, end)) => Ok(Span { start, end }),
                Err(e) => {
                    s.release((chunk.bytes.len() + spool::HEADER) as u64);
                    Err(e)
                }
            };
        }
        let lane = &self.lanes[lane];
        let mut st = lane.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.since.is_none() {
            st.since = Some(Instant::now());
        }
        let start = st.appended;
        // The sender of an idle lane waits without a deadline: wake it so it starts the
        // batch_send_deadline clock for the batch that begins now.
        let mut wake = st.building.is_empty();
        let mut run_start = 0usize;
        let mut prev_end = 0usize;
        for &(end, n) in &chunk.series {
            let n = n as usize;
            if st.building_samples > 0 && st.building_samples + n > self.max_per_send {
                st.building
                    .extend_from_slice(&chunk.bytes[run_start..prev_end]);
                run_start = prev_end;
                st.seal();
                st.since = Some(Instant::now());
                wake = true;
            }
            st.building_samples += n;
            st.appended += n as u64;
            prev_end = end as usize;
        }
        st.building.extend_from_slice(&chunk.bytes[run_start..]);
        if st.building_samples >= self.max_per_send {
            st.seal();
            wake = true;
        }
        let end = st.appended;
        drop(st);
        if wake {
            lane.notify.notify_one();
        }
        Ok(Span { start, end })
    }

    /// Seal a lane's batching data now, for a request that waits for delivery.
    pub fn flush(&self, lane: usize) {
        if let Some(s) = &self.spool {
            s.flush(lane);
            return;
        }
        let lane = &self.lanes[lane];
        let mut st = lane.state.lock().unwrap_or_else(|p| p.into_inner());
        st.seal();
        drop(st);
        lane.notify.notify_one();
    }

    /// Stop taking data. Memory lanes flush what is batching and finish when empty; spool lanes
    /// stop after the batch in flight (the rest stays on disk for the next start).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for lane in self.lanes.iter() {
            lane.notify.notify_one();
        }
        if let Some(s) = &self.spool {
            s.wake_all();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The next batch of a lane: a sealed one, or the batching one once `batch_send_deadline`
    /// has passed since its first series (immediately after [`SinkQueue::close`]). `None` once
    /// the queue is closed and the lane is empty.
    pub async fn next_batch(&self, lane: usize) -> Option<Batch> {
        if let Some(s) = &self.spool {
            return s
                .next_batch(lane, self.max_per_send, self.send_deadline, || {
                    self.is_closed()
                })
                .await;
        }
        let l = &self.lanes[lane];
        loop {
            let wait_until = {
                let mut st = l.state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(b) = st.ready.pop_front() {
                    return Some(b);
                }
                if !st.building.is_empty() {
                    let deadline = st.since.unwrap_or_else(Instant::now) + self.send_deadline;
                    if self.is_closed() || Instant::now() >= deadline {
                        st.seal();
                        return st.ready.pop_front();
                    }
                    Some(deadline)
                } else if self.is_closed() {
                    return None;
                } else {
                    None
                }
            };
            wait_for_wake(&l.notify, wait_until).await;
        }
    }

    /// Discard everything queued in memory (sealed and batching) and release its room; returns
    /// the samples discarded. For in-process benchmarks that measure the data path without a
    /// sender; a running relay never calls it.
    pub fn discard_all(&self) -> usize {
        let mut discarded = 0;
        for lane in self.lanes.iter() {
            let mut st = lane.state.lock().unwrap_or_else(|p| p.into_inner());
            st.seal();
            while let Some(b) = st.ready.pop_front() {
                discarded += b.samples;
                if st.spare.len() < SPARES {
                    let mut body = b.body;
                    body.clear();
                    st.spare.push(body);
                }
            }
        }
        self.held.fetch_sub(discarded, Ordering::AcqRel);
        discarded
    }

    /// A batch was delivered (or dropped, `delivered == false`): release its room, keep its
    /// buffer for reuse, and let waiting requests know.
    pub fn finish(&self, lane: usize, mut batch: Batch, delivered: bool) {
        let (start, end) = (batch.start, batch.end);
        if let Some(s) = &self.spool {
            s.finish(lane, batch);
        } else {
            self.held.fetch_sub(batch.samples, Ordering::AcqRel);
            batch.body.clear();
            let mut st = self.lanes[lane]
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if st.spare.len() < SPARES {
                st.spare.push(batch.body);
            }
        }
        self.progress[lane].finish(start, end, delivered);
    }

    /// Wait until `span` of a lane is finished; true when it was all delivered.
    pub async fn wait_delivered(&self, lane: usize, span: Span) -> bool {
        self.progress[lane].wait(span).await
    }

    /// Wait until `span` of a lane is on disk (at once without a spool).
    pub async fn wait_synced(&self, lane: usize, span: Span) {
        if let Some(s) = &self.spool {
            s.wait_synced(lane, span.end).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(series: &[(u8, u32)]) -> Chunk {
        let mut c = Chunk::default();
        for &(byte, n) in series {
            c.bytes.push(byte);
            c.end_series(n as usize);
        }
        c
    }

    #[test]
    fn reserve_respects_capacity_but_always_admits_into_an_empty_queue() {
        let q = SinkQueue::new(1, 10, 5, Duration::from_secs(1), None);
        assert!(
            q.try_reserve(25),
            "an empty queue takes an oversized request"
        );
        assert!(!q.try_reserve(1));
        q.release(25);
        assert!(q.try_reserve(6));
        assert!(q.try_reserve(4));
        assert!(!q.try_reserve(1));
        assert_eq!(q.held(), 10);
    }

    #[tokio::test]
    async fn batches_are_cut_between_series_at_max_samples_per_send() {
        let q = SinkQueue::new(1, 100, 5, Duration::from_secs(3600), None);
        q.append(0, &chunk(&[(1, 2), (2, 2), (3, 2), (4, 3), (5, 1)]))
            .unwrap();
        let b = q.next_batch(0).await.unwrap();
        assert_eq!((b.body.as_slice(), b.samples), (&[1u8, 2][..], 4));
        let b = q.next_batch(0).await.unwrap();
        assert_eq!((b.body.as_slice(), b.samples), (&[3u8, 4][..], 5));
        // A series that would overflow the batching one seals it; a series larger than
        // max_samples_per_send is sent alone, never split.
        q.append(0, &chunk(&[(6, 9)])).unwrap();
        let b = q.next_batch(0).await.unwrap();
        assert_eq!((b.body.as_slice(), b.samples), (&[5u8][..], 1));
        let b = q.next_batch(0).await.unwrap();
        assert_eq!((b.body.as_slice(), b.samples), (&[6u8][..], 9));
    }

    #[tokio::test]
    async fn a_partial_batch_goes_out_at_the_deadline_or_on_close() {
        let q = SinkQueue::new(1, 100, 50, Duration::from_millis(20), None);
        q.append(0, &chunk(&[(7, 1)])).unwrap();
        let b = q.next_batch(0).await.unwrap();
        assert_eq!(b.body, [7]);
        let q = SinkQueue::new(1, 100, 50, Duration::from_secs(3600), None);
        q.append(0, &chunk(&[(8, 1)])).unwrap();
        q.close();
        assert_eq!(q.next_batch(0).await.unwrap().body, [8]);
        assert!(q.next_batch(0).await.is_none());
    }

    #[tokio::test]
    async fn an_idle_sender_wakes_for_a_partial_batch() {
        let q = std::sync::Arc::new(SinkQueue::new(1, 100, 50, Duration::from_millis(20), None));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next_batch(0).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await; // the sender is parked, lane empty
        q.append(0, &chunk(&[(9, 1)])).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), waiter).await;
        assert_eq!(got.expect("sender never woke").unwrap().unwrap().body, [9]);
    }

    #[tokio::test]
    async fn delivery_waiters_hear_of_delivery_and_of_refusal() {
        let q = std::sync::Arc::new(SinkQueue::new(1, 100, 3, Duration::from_secs(3600), None));
        assert!(q.try_reserve(5));
        let a = q.append(0, &chunk(&[(1, 2)])).unwrap();
        let b = q.append(0, &chunk(&[(2, 2), (3, 1)])).unwrap();
        assert_eq!(
            (a, b),
            (Span { start: 0, end: 2 }, Span { start: 2, end: 5 })
        );
        q.flush(0);
        // Batches: [1] (2 samples; 2 more would pass 3), then [2, 3].
        let first = q.next_batch(0).await.unwrap();
        let second = q.next_batch(0).await.unwrap();
        assert_eq!((first.start, first.end), (0, 2));
        assert_eq!((second.start, second.end), (2, 5));
        let waiter = |span| {
            let q = q.clone();
            tokio::spawn(async move { q.wait_delivered(0, span).await })
        };
        let (wait_a, wait_b) = (waiter(a), waiter(b));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!wait_a.is_finished() && !wait_b.is_finished());
        q.finish(0, first, true);
        assert!(wait_a.await.unwrap(), "a was delivered");
        assert!(!wait_b.is_finished(), "b is still in flight");
        q.finish(0, second, false);
        assert!(!wait_b.await.unwrap(), "b was refused");
        assert_eq!(q.held(), 0);
    }
}
