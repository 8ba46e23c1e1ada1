//! The bounded per-target queue between the data path and the senders.
//!
//! Capacity is counted in samples and covers everything the target holds in memory: reserved
//! by an ingest request, batching, sealed, and in flight. Ingest *reserves* first for every
//! target a request touches and only then appends, so a request is either taken whole or
//! refused whole (answered 503/429, and the sender retries it): no target ever sees half a
//! request, and memory never grows past capacity plus one request.
//!
//! Each queue has `shards` independent lanes. A series always goes to the same lane (by label
//! hash), and each lane sends one batch at a time, so a series' samples reach the target in the
//! order they arrived. A lane's buffer is protobuf `timeseries` fields (or JSON lines) appended
//! back to back: that is already the request body.
//!
//! Where the bytes live, per target:
//! - **memory, then disk** (the default): the memory lanes are the fast path; once memory is
//!   full, a request's chunks go to the target's [`Overflow`] spool instead, and a lane that
//!   spilled keeps sending its later chunks to disk until its sender has read the last of its
//!   disk part, so each series stays in order (memory part first, then disk, then memory
//!   again, sent after the disk part's last batch). A target that falls behind therefore
//!   never pushes back on the source, and so never stalls the other targets of the source,
//!   until its disk budget is used up too.
//! - **memory only** (`overflow: {enabled: false}`, or `ack: delivered`): a full queue pushes
//!   back.
//! - **disk first** (an explicit `spool:`): everything goes through the spool.

mod arrivals;
mod config;
mod overflow;
mod progress;
mod whole;

pub use config::{QueueConfig, RawQueue};
pub use overflow::Overflow;

use arrivals::Arrivals;
use progress::Progress;
use whole::Whole;

use super::spool::{self, Spool};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Encoded series for one lane, produced by one request, with the series boundaries so the
/// queue can cut batches between series.
#[derive(Debug, Default)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    /// `(end offset in bytes, samples)` per series, in order.
    pub series: Vec<(u32, u32)>,
    /// Samples in all the series.
    pub samples: usize,
    /// Set by [`SinkQueue::admit`]: room was reserved on disk (the overflow), not in memory.
    pub disk: bool,
    /// The encoder wrote a top-level metadata entry into the chunk (see [`Batch::metadata`]).
    pub metadata: bool,
}

impl Chunk {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.series.clear();
        self.samples = 0;
        self.disk = false;
        self.metadata = false;
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Record that the bytes appended since the last call form one series of `samples` samples.
    #[inline]
    pub fn end_series(&mut self, samples: usize) {
        self.series.push((self.bytes.len() as u32, samples as u32));
        self.samples += samples;
    }

    /// What the chunk costs on disk: its bytes and a record header.
    fn disk_bytes(&self) -> u64 {
        (self.bytes.len() + spool::HEADER) as u64
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
    /// Read back from a spool or overflow (left there, not lost, if the relay stops first).
    pub from_disk: bool,
    /// The body may hold top-level metadata entries besides series: set when a chunk that had
    /// some was appended (and for every batch read back from disk, which does not record it).
    /// A remote_write sender walks a batch's top-level fields only when this is set: the walk
    /// touches every series' first cache line, up to 16 % of a forwarding relay's CPU when it
    /// ran on every batch.
    pub metadata: bool,
    /// `body` is already snappy-compressed: a request passed through whole, as its sender
    /// compressed it ([`SinkQueue::append_compressed`]). Only ever set in the memory lanes of
    /// a target whose sender sends remote-write 1.0 bodies.
    pub snappy: bool,
    /// A whole request on lane 0 of a target with several lanes: the id of its barrier
    /// (see `whole.rs`), 0 for any other batch.
    pub barrier: u64,
}
/// Which part of one request went to one lane: positions as in [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

#[derive(Default)]
struct LaneState {
    building: Vec<u8>,
    building_samples: usize,
    building_metadata: bool,
    since: Option<Instant>,
    ready: VecDeque<Batch>,
    spare: Vec<Vec<u8>>,
    /// Samples ever appended / sealed into batches: the lane's positions.
    appended: u64,
    sealed: u64,
    /// A batch is with the sender.
    in_flight: bool,
    arrivals: Arrivals,
    /// Lanes 1..: the whole requests queued on lane 0 that this lane's later data waits for,
    /// oldest first: (the lane position the later data starts at, the barrier id).
    holds: VecDeque<(u64, u64)>,
    /// Memory positions finished (delivered or dropped) up to here.
    finished: u64,
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
            from_disk: false,
            metadata: self.building_metadata,
            snappy: false,
            barrier: 0,
        });
        self.building_samples = 0;
        self.building_metadata = false;
        self.since = None;
    }

    /// Queue `compressed` (a request's bytes as its sender compressed them, `samples`) as a
    /// batch of its own after what the lane was batching; `barrier` as in [`Batch`].
    fn push_compressed(&mut self, compressed: &[u8], samples: usize, barrier: u64) -> Span {
        self.seal();
        self.arrivals.add(samples, Instant::now());
        // Sealed, the lane's positions are level: the batch takes the next `samples`.
        let start = self.appended;
        let end = start + samples as u64;
        self.appended = end;
        self.sealed = end;
        let mut body = self.spare.pop().unwrap_or_default();
        body.extend_from_slice(compressed);
        self.ready.push_back(Batch {
            body,
            samples,
            start,
            end,
            bytes: 0,
            from_disk: false,
            metadata: false,
            snappy: true,
            barrier,
        });
        Span { start, end }
    }

    fn memory_empty(&self) -> bool {
        self.ready.is_empty() && self.building.is_empty() && !self.in_flight
    }
}

struct Lane {
    state: Mutex<LaneState>,
    notify: Notify,
    /// The newest barrier (whole request) this lane has finished everything before: lane 0
    /// sends the request once every other lane has reached it.
    reached: AtomicU64,
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// See the module docs.
pub struct SinkQueue {
    lanes: Box<[Lane]>,
    progress: Box<[Progress]>,
    /// When set, data goes through this spool instead of the memory lanes (disk first).
    spool: Option<Spool>,
    /// When set, data goes here once memory is full (memory, then disk).
    overflow: Option<Overflow>,
    capacity: usize,
    max_per_send: usize,
    send_deadline: Duration,
    held: AtomicUsize,
    closed: AtomicBool,
    whole: Whole,
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

/// What a request's chunks cost on disk, record headers included.
fn disk_cost(chunks: &[Chunk]) -> u64 {
    chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(Chunk::disk_bytes)
        .sum()
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
                    reached: AtomicU64::new(0),
                })
                .collect(),
            progress: (0..lanes).map(|_| Progress::new(0)).collect(),
            spool,
            overflow: None,
            capacity,
            max_per_send: max_per_send.max(1),
            send_deadline,
            held: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            whole: Whole::default(),
        }
    }

    /// Spill to `overflow` (made for as many lanes) once memory is full. Not with a spool.
    pub fn with_overflow(mut self, overflow: Overflow) -> SinkQueue {
        if self.spool.is_none() {
            self.overflow = Some(overflow);
        }
        self
    }

    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_ref()
    }

    pub fn overflow(&self) -> Option<&Overflow> {
        self.overflow.as_ref()
    }

    /// The spool data is on disk in, if any: the explicit spool, or the overflow once opened.
    pub fn disk(&self) -> Option<&Spool> {
        self.spool
            .as_ref()
            .or_else(|| self.overflow.as_ref().and_then(Overflow::opened))
    }

    /// Samples held now (reserved, batching, queued, in flight; or written to disk and not
    /// yet finished).
    pub fn held(&self) -> usize {
        match &self.spool {
            Some(s) => s.held_samples() as usize,
            None => self.memory_held() + self.disk_samples(),
        }
    }

    /// The directory of what is on disk: the spool's or the overflow's.
    pub fn disk_dir(&self) -> Option<&std::path::Path> {
        match (&self.spool, &self.overflow) {
            (Some(s), _) => Some(s.dir()),
            (None, Some(o)) => Some(o.dir()),
            (None, None) => None,
        }
    }

    /// Samples held in memory (lost if the process dies).
    pub fn memory_held(&self) -> usize {
        match &self.spool {
            Some(_) => 0,
            None => self.held.load(Ordering::Acquire),
        }
    }

    /// Whether a lane holds nothing in memory (sealed or batching).
    pub fn memory_empty(&self, lane: usize) -> bool {
        self.lanes[lane].lock().memory_empty()
    }

    /// Samples held on disk (delivered after a restart).
    pub fn disk_samples(&self) -> usize {
        self.disk().map_or(0, |s| s.held_samples() as usize)
    }

    /// Bytes held on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk().map_or(0, Spool::held_bytes)
    }

    /// Whether some lane's data is going to the overflow.
    pub fn spilling(&self) -> bool {
        self.overflow.as_ref().is_some_and(Overflow::any_spilling)
    }

    /// How long the oldest data still held has been waiting (to about a second); zero when
    /// nothing is held.
    pub fn oldest_pending(&self) -> Duration {
        let now = Instant::now();
        let mut oldest: Option<Instant> = None;
        for (i, lane) in self.lanes.iter().enumerate() {
            let mut st = lane.lock();
            let on_disk = self.disk().is_some_and(|s| s.lane_pending(i));
            if st.memory_empty() && !on_disk {
                st.arrivals.clear();
                continue;
            }
            if let Some(&(_, t)) = st.arrivals.marks.front() {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
        oldest.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// A range of a lane was dropped from its spool (`drop_oldest`): no longer held.
    fn dropped_from_disk(&self, lane: usize, start: u64, end: u64, samples: u64) {
        self.lanes[lane].lock().arrivals.finish(samples as usize);
        if self.spool.is_some() {
            self.progress[lane].finish(start, end, false);
        }
    }

    /// Reserve room for data costing `n` samples in memory, or `n` bytes in a spool. Fails
    /// when it does not fit, except into an empty queue, so that a request larger than the
    /// whole capacity is still taken (alone) rather than refused forever.
    pub fn try_reserve(&self, n: usize) -> bool {
        if let Some(s) = &self.spool {
            return s.try_reserve(n as u64, |lane, start, end, samples| {
                self.dropped_from_disk(lane, start, end, samples);
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

    /// Reserve room for one request's chunks (one per lane), all or nothing: in memory, or on
    /// disk for lanes that are spilling and for everything once memory is full (each chunk's
    /// `disk` says which). False when there is no room anywhere: the request is refused.
    pub fn admit(&self, chunks: &mut [Chunk]) -> bool {
        if self.is_closed() {
            // Retired by a reload (or shutting down): a request still on the old pipeline is
            // refused, and its sender retries it against the new one.
            return false;
        }
        if self.spool.is_some() {
            return self.try_reserve(disk_cost(chunks) as usize);
        }
        let Some(ov) = &self.overflow else {
            let samples = chunks.iter().map(|c| c.samples).sum();
            return self.try_reserve(samples);
        };
        let mut memory = 0;
        for (lane, c) in chunks.iter_mut().enumerate() {
            c.disk = !c.is_empty() && ov.goes_to_disk(lane);
            if !c.disk {
                memory += c.samples;
            }
        }
        if memory > 0 && !self.try_reserve(memory) {
            // Memory is full: the whole request goes to disk.
            for c in chunks.iter_mut() {
                c.disk = !c.is_empty();
            }
            memory = 0;
        }
        let disk: u64 = chunks
            .iter()
            .filter(|c| c.disk)
            .map(Chunk::disk_bytes)
            .sum();
        if disk == 0 {
            return true;
        }
        let reserved = ov.spool().is_some_and(|s| {
            s.try_reserve(disk, |lane, start, end, samples| {
                self.dropped_from_disk(lane, start, end, samples);
            })
        });
        if !reserved && memory > 0 {
            self.release(memory);
        }
        reserved
    }

    /// Give back what [`SinkQueue::admit`] reserved (another target refused the request).
    pub fn unadmit(&self, chunks: &[Chunk]) {
        if self.spool.is_some() {
            return self.release(disk_cost(chunks) as usize);
        }
        let memory: usize = chunks.iter().filter(|c| !c.disk).map(|c| c.samples).sum();
        self.release(memory);
        let disk: u64 = chunks
            .iter()
            .filter(|c| c.disk)
            .map(Chunk::disk_bytes)
            .sum();
        if disk > 0
            && let Some(s) = self.overflow.as_ref().and_then(Overflow::opened)
        {
            s.release(disk);
        }
    }

    /// Append a chunk (already admitted) to a lane, cutting batches between series at
    /// `max_samples_per_send`. Returns the lane positions it took.
    ///
    /// # Errors
    /// Only on disk: the write failed (nothing of the chunk is kept; its room is released).
    pub fn append(&self, lane: usize, chunk: &Chunk) -> std::io::Result<Span> {
        let now = Instant::now();
        if let Some(s) = &self.spool {
            let max = self.max_per_send as u64;
            return match s.append_series(lane, &chunk.bytes, &chunk.series, max) {
                Ok((start, end)) => {
                    self.lanes[lane].lock().arrivals.add(chunk.samples, now);
                    Ok(Span { start, end })
                }
                Err(e) => {
                    s.release(chunk.disk_bytes());
                    Err(e)
                }
            };
        }
        let l = &self.lanes[lane];
        let mut st = l.lock();
        if let Some(ov) = &self.overflow
            && (chunk.disk || ov.goes_to_disk(lane))
        {
            return self.spill(ov, lane, &mut st, chunk, now);
        }
        if st.since.is_none() {
            st.since = Some(now);
        }
        st.arrivals.add(chunk.samples, now);
        let start = st.appended;
        // The sender of an idle lane waits without a deadline: wake it so it starts the
        // batch_send_deadline clock for the batch that begins now.
        let mut wake = st.building.is_empty();
        // Conservative when the chunk is cut: both batches are marked.
        st.building_metadata |= chunk.metadata;
        let mut run_start = 0usize;
        let mut prev_end = 0usize;
        for &(end, n) in &chunk.series {
            let n = n as usize;
            if st.building_samples > 0 && st.building_samples + n > self.max_per_send {
                st.building
                    .extend_from_slice(&chunk.bytes[run_start..prev_end]);
                run_start = prev_end;
                st.seal();
                st.building_metadata = chunk.metadata;
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
            l.notify.notify_one();
        }
        Ok(Span { start, end })
    }

    /// Append a chunk that is, byte for byte, the decompressed form of `compressed` (a whole
    /// request that reaches this one-lane target unchanged): it becomes a batch of its own
    /// that carries `compressed`, so the sender neither copies the series into a batch nor
    /// compresses them again. What was batching in the lane is sealed first, so order holds.
    /// A chunk bound for disk (overflow spilling, a spool) is appended as [`SinkQueue::append`]
    /// does, uncompressed. Returns the positions taken, and whether the compressed bytes were
    /// queued.
    ///
    /// # Errors
    /// As [`SinkQueue::append`].
    pub fn append_compressed(
        &self,
        lane: usize,
        chunk: &Chunk,
        compressed: &[u8],
    ) -> std::io::Result<(Span, bool)> {
        if self.spool.is_some() || chunk.metadata {
            return self.append(lane, chunk).map(|s| (s, false));
        }
        let l = &self.lanes[lane];
        let mut st = l.lock();
        if let Some(ov) = &self.overflow
            && (chunk.disk || ov.goes_to_disk(lane))
        {
            return self
                .spill(ov, lane, &mut st, chunk, Instant::now())
                .map(|s| (s, false));
        }
        let span = st.push_compressed(compressed, chunk.samples, 0);
        drop(st);
        l.notify.notify_one();
        Ok((span, true))
    }

    /// Write a chunk to the overflow, under the lane's lock (so the sender sees the lane's
    /// disk part and its spilling flag change together).
    fn spill(
        &self,
        ov: &Overflow,
        lane: usize,
        st: &mut LaneState,
        chunk: &Chunk,
        now: Instant,
    ) -> std::io::Result<Span> {
        let Some(spool) = ov.opened() else {
            // Unreachable: a lane spills only once its spool is open, and a chunk is marked
            // `disk` only after room was reserved in it.
            return Err(std::io::Error::other("overflow is not open"));
        };
        if !chunk.disk {
            // Room was reserved in memory, but the lane started spilling since: move it.
            self.held.fetch_sub(chunk.samples, Ordering::AcqRel);
            spool.force_reserve(chunk.disk_bytes());
        }
        if !ov.goes_to_disk(lane) {
            // What is in memory goes out before what goes to disk now.
            st.seal();
            ov.set_spilling(lane, true);
        }
        let max = self.max_per_send as u64;
        match spool.append_series(lane, &chunk.bytes, &chunk.series, max) {
            Ok((start, end)) => {
                st.arrivals.add(chunk.samples, now);
                self.lanes[lane].notify.notify_one();
                Ok(Span { start, end })
            }
            Err(e) => {
                spool.release(chunk.disk_bytes());
                Err(e)
            }
        }
    }

    /// Seal a lane's batching data now, for a request that waits for delivery.
    pub fn flush(&self, lane: usize) {
        if let Some(s) = &self.spool {
            s.flush(lane);
            return;
        }
        let lane = &self.lanes[lane];
        lane.lock().seal();
        lane.notify.notify_one();
    }

    /// Stop taking data. Memory lanes flush what is batching and finish when empty; disk
    /// parts (spool, overflow) stop after the batch in flight: the rest stays on disk for the
    /// next start. A lane that went back to memory behind its disk part's last batch keeps
    /// retrying that batch, since its memory can only follow it (`lane.rs`).
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

    /// Give up the directory of what is on disk (see [`Spool::unlock`]); once the senders
    /// have stopped.
    pub fn release_disk(&self) {
        if let Some(s) = self.disk() {
            s.unlock();
        }
    }

    /// The next batch of a lane: a sealed one, or the batching one once `batch_send_deadline`
    /// has passed since its first series (immediately after [`SinkQueue::close`]); for a
    /// spilling lane, once its sealed batches are sent, its disk part. `None` once the queue is closed
    /// and the lane's memory is empty.
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
                let mut st = l.lock();
                if let Some(b) = st.ready.front() {
                    let (start, barrier) = (b.start, b.barrier);
                    if self.may_send(&mut st, start, barrier) {
                        let b = st.ready.pop_front();
                        st.in_flight = true;
                        return b;
                    }
                    None // held by a whole request: woken when it moves
                } else if let Some(ov) = &self.overflow
                    && ov.is_spilling(lane)
                {
                    if self.is_closed() {
                        return None; // the disk part waits for the next start
                    }
                    let released = self.whole.released.load(Ordering::Acquire);
                    if st.held_from(released).is_some() {
                        // Written after (or beside) a whole request still waiting: after it.
                        None
                    } else {
                        match ov.opened() {
                            Some(spool) => {
                                if let Some((b, more)) = spool.try_batch(lane, self.max_per_send) {
                                    if !more {
                                        ov.back_to_memory(lane);
                                    }
                                    st.in_flight = true;
                                    return Some(b);
                                }
                                if spool.lane_pending(lane) {
                                    None // a batch of it is in flight: wait for its finish
                                } else {
                                    // Drained: the lane is back in memory.
                                    ov.set_spilling(lane, false);
                                    continue;
                                }
                            }
                            None => {
                                ov.set_spilling(lane, false);
                                continue;
                            }
                        }
                    }
                } else if !st.building.is_empty() {
                    let deadline = st.since.unwrap_or_else(Instant::now) + self.send_deadline;
                    if self.is_closed() || Instant::now() >= deadline {
                        st.seal();
                        continue; // sent as a sealed batch, unless held
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
            let mut st = lane.lock();
            st.seal();
            let mut here = 0;
            while let Some(b) = st.ready.pop_front() {
                here += b.samples;
                if st.spare.len() < SPARES {
                    let mut body = b.body;
                    body.clear();
                    st.spare.push(body);
                }
            }
            st.arrivals.finish(here);
            st.finished = st.sealed;
            st.holds.clear();
            discarded += here;
        }
        self.whole.release_all();
        self.held.fetch_sub(discarded, Ordering::AcqRel);
        discarded
    }

    /// A batch was delivered (or dropped, `delivered == false`): release its room, keep its
    /// buffer for reuse, and let waiting requests know.
    pub fn finish(&self, lane: usize, mut batch: Batch, delivered: bool) {
        let (start, end, barrier) = (batch.start, batch.end, batch.barrier);
        let mut reached = false;
        {
            let l = &self.lanes[lane];
            let mut st = l.lock();
            st.in_flight = false;
            st.arrivals.finish(batch.samples);
            if !batch.from_disk {
                self.held.fetch_sub(batch.samples, Ordering::AcqRel);
                batch.body.clear();
                if st.spare.len() < SPARES {
                    st.spare.push(std::mem::take(&mut batch.body));
                }
                if self.spool.is_none() {
                    st.finished = end;
                    if let Some(id) = st.reached() {
                        reached = l.reached.fetch_max(id, Ordering::AcqRel) < id;
                    }
                }
            }
        }
        if reached {
            self.lanes[0].notify.notify_one();
        }
        if barrier != 0 {
            self.whole.release(barrier);
            for l in &self.lanes[1..] {
                l.notify.notify_one();
            }
        }
        if let Some(s) = &self.spool {
            s.finish(lane, batch);
        } else if batch.from_disk {
            if let Some(ov) = &self.overflow
                && let Some(s) = ov.opened()
            {
                s.finish(lane, batch);
                let _st = self.lanes[lane].lock();
                if !ov.goes_to_disk(lane) && !s.lane_pending(lane) {
                    // The disk part's last batch: the lane is back in memory (later batches
                    // may already wait there, and the sender takes those before looking).
                    ov.set_spilling(lane, false);
                }
            }
            // Overflow positions are byte offsets, not the memory lane's: no waiter uses
            // them (`ack: delivered` targets have no overflow).
            self.lanes[lane].notify.notify_one();
            return;
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

    /// Sync what is on disk every `every` (the spool's own `fsync_interval` for a spool) until
    /// `stop`, then once more. Returns at once for a memory-only queue.
    pub async fn run_sync(&self, every: Duration, stop: impl std::future::Future<Output = ()>) {
        if let Some(s) = &self.spool {
            return s.run_sync(stop).await;
        }
        let Some(ov) = &self.overflow else { return };
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(s) = ov.opened() {
                        s.sync(true).await;
                    }
                }
                () = &mut stop => break,
            }
        }
        if let Some(s) = ov.opened() {
            s.sync(true).await;
        }
    }
}

#[cfg(test)]
mod overflow_tests;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod whole_tests;
