//! Whole requests on a target with several lanes: a request that reaches the target unchanged
//! is sent as one batch, as its sender compressed it, on lane 0, while every other lane keeps
//! its place around it.
//!
//! Lanes exist so that a slow target gets several requests at once; a series always takes
//! the lane of its hash, so its samples stay in order. A whole request holds series of every
//! lane, so sending it on lane 0 could overtake a series' earlier samples still waiting on
//! another lane, and a later request's samples on another lane could overtake it. So a whole
//! request is a *barrier*:
//! - lane 0 sends it only once every other lane has finished (delivered or dropped) all it
//!   held when the request was queued ([`Lane::reached`]);
//! - every other lane sends nothing it took after the request (memory or disk) until the
//!   request is finished ([`LaneState::holds`], [`Whole::released`]).
//!
//! Order matters only between a request that was answered and one that came after it (a
//! sender does not send the next samples of a series before the answer), so the barrier is
//! placed lane by lane, without holding every lane's lock at once: what a concurrent request
//! appends in between has no order to keep against this one.
//!
//! A barrier makes the lanes take turns, which costs throughput against a slow target. A
//! target that keeps up with one lane saves recompressing what it forwards (a third of a
//! forwarding relay's CPU); a slow one needs its lanes in parallel. So requests go whole only
//! while the senders are mostly idle ([`Whole::allowed`]):
//! - they stop when the senders were busy more than [`BUSY_STOP`] of one sender's time over a
//!   window ([`WINDOW`]), and at once when the whole requests already waiting would take
//!   [`MAX_BACKLOG`] to send, number more than [`MAX_WAITING`], or the queue's memory is past
//!   half full: what waits behind them fills memory first at high rates;
//! - they resume after a window busy less than [`BUSY_START`], once the stop's cooldown has
//!   passed ([`Policy`]).
//!
//! Nothing goes whole while a lane is spilling to disk: a lane's disk part cannot hold a
//! barrier's place, and its older samples on disk must not be overtaken.
//!
//! [`Lane::reached`]: super::Lane
//! [`LaneState::holds`]: super::LaneState

use super::{Chunk, LaneState, SinkQueue, Span};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the senders' busy share is looked at: often enough that a slow target does not
/// fall far behind first (a second was tried: at 20 ms a request, 150 requests offered in a
/// second are 50 sent whole, and the rest filled memory and spilled to disk).
const WINDOW: Duration = Duration::from_millis(100);
/// Past this busy share (of one sender's time), requests stop going whole...
pub(super) const BUSY_STOP: f64 = 0.75;
/// ...and below this one they go whole again. Spread over the lanes, the same requests
/// measure busier than whole (more sends at once on the same cores: 0.29–0.39 against 0.23
/// forwarding 1.2 M samples/s to a local receiver on 2 cores), so the gap is not wide.
pub(super) const BUSY_START: f64 = 0.5;
/// Whole requests queued and not finished past which requests stop going whole (until the
/// busy share allows them again), whatever the sends take: 32 of 2,000 samples are under two
/// thirds of the default `capacity`.
pub(super) const MAX_WAITING: usize = 32;
/// How long the whole requests waiting may take to send (their number times the average send)
/// before requests stop going whole. A target that keeps up has one in flight and a few
/// queued while its sender waits for a core (8 to 25 were seen in a moment's stall, at a busy
/// share of about 0.2, each sent in under a millisecond). What is held behind them counts
/// too: against a slow target, 16 of them at 20 ms each held the requests of 320 ms behind,
/// which went past the default `capacity` and spilled to disk; flat out (3 M samples/s), 50
/// ms of them did the same.
pub(super) const MAX_BACKLOG: Duration = Duration::from_millis(10);

/// A queue's whole-request state. See the module docs.
pub(super) struct Whole {
    /// Taken by a whole request while it places its barrier: barriers are placed one at a
    /// time, so every lane holds them in the order lane 0 sends them.
    placing: Mutex<()>,
    /// The last barrier id given out (ids start at 1; 0 means none).
    last: AtomicU64,
    /// Every barrier up to this id is finished: lanes may send past it.
    pub(super) released: AtomicU64,
    /// The policy's answer: requests may go whole now.
    allowed: AtomicBool,
    /// Nanoseconds the senders spent with a batch, summed over lanes.
    busy: AtomicU64,
    /// A send attempt's nanoseconds, averaged over the recent ones (not retry waits).
    send_ns: AtomicU64,
    /// The window and the stops (see [`Policy`]).
    policy: Mutex<Policy>,
}

/// When requests stopped going whole, and for how long they stay stopped at least.
struct Policy {
    /// When the current window began, and `Whole::busy` then.
    window: (Instant, u64),
    /// The last stop, and the stop's least length: it doubles (up to [`MAX_COOLDOWN`]) when
    /// whole requests stop again within [`SHORT`] of resuming, so a target that cannot keep
    /// up with them (a relay flat out, whose one sender falls behind) is not switched back
    /// every window, each switch making the lanes wait for the whole requests before it. A
    /// stop after a longer run (a moment's stall of a target that keeps up) waits the least.
    stopped: Option<Instant>,
    resumed: Option<Instant>,
    cooldown: Duration,
}

/// A run of whole requests shorter than this did not pay for its switches.
const SHORT: Duration = Duration::from_secs(1);
/// The least length of a first stop...
const MIN_COOLDOWN: Duration = Duration::from_millis(200);
/// ...and of repeated ones.
const MAX_COOLDOWN: Duration = Duration::from_secs(30);

impl Default for Whole {
    fn default() -> Self {
        Whole {
            placing: Mutex::new(()),
            last: AtomicU64::new(0),
            released: AtomicU64::new(0),
            allowed: AtomicBool::new(true),
            busy: AtomicU64::new(0),
            send_ns: AtomicU64::new(0),
            policy: Mutex::new(Policy {
                window: (Instant::now(), 0),
                stopped: None,
                resumed: None,
                cooldown: MIN_COOLDOWN,
            }),
        }
    }
}

impl Whole {
    pub(super) fn allowed(&self) -> bool {
        self.allowed.load(Ordering::Relaxed)
    }

    /// Serialise barrier placement (see [`Whole::placing`]).
    pub(super) fn placing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.placing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn policy(&self) -> std::sync::MutexGuard<'_, Policy> {
        self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether another request may go whole now: not past [`MAX_WAITING`] nor
    /// [`MAX_BACKLOG`], and not with the queue's memory `filling` (past half its capacity,
    /// which is where a backlog behind whole requests shows first at high rates). Each also
    /// stops the next ones (see [`Policy`]).
    pub(super) fn room(&self, filling: bool) -> bool {
        // Lane 0 finishes whole requests in the order of their ids: those not yet finished
        // are the ids given out past the last released.
        let released = self.released.load(Ordering::Acquire);
        let waiting = self.last.load(Ordering::Acquire).saturating_sub(released) as usize;
        // Before the first send has finished, a send counts as a quarter of the bound: the
        // first requests of a relay that starts under load come at once.
        let per = match self.send_ns.load(Ordering::Relaxed) {
            0 => MAX_BACKLOG.as_nanos() as u64 / 4,
            ns => ns,
        };
        let backlog = waiting as u64 * per;
        if !filling && waiting < MAX_WAITING && backlog < MAX_BACKLOG.as_nanos() as u64 {
            return true;
        }
        self.stop(&mut self.policy(), Instant::now());
        false
    }

    /// The next barrier id; called with [`Whole::placing`] held.
    pub(super) fn next_id(&self) -> u64 {
        self.last.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Every barrier given out so far counts as finished (the queue was emptied without
    /// sending).
    pub(super) fn release_all(&self) {
        let last = self.last.load(Ordering::Acquire);
        self.released.fetch_max(last, Ordering::AcqRel);
    }

    /// A whole request's batch was finished: the other lanes may go past its barrier.
    pub(super) fn release(&self, id: u64) {
        self.released.fetch_max(id, Ordering::AcqRel);
    }

    /// A send attempt took `took`: it counts in the average send and as busy time.
    pub(super) fn sent_for(&self, took: Duration, now: Instant) {
        let ns = took.as_nanos() as u64;
        // An average over about the last eight (a racing update loses one; it only steers).
        let avg = self.send_ns.load(Ordering::Relaxed);
        let avg = if avg == 0 { ns } else { avg - avg / 8 + ns / 8 };
        self.send_ns.store(avg, Ordering::Relaxed);
        self.busy_for(took, now);
    }

    /// A sender was busy for `took` (sending, or waiting to retry) up to `now`; once a window
    /// has passed, decide whether requests go whole (with some hysteresis, so a target near
    /// the line does not flip each window).
    pub(super) fn busy_for(&self, took: Duration, now: Instant) {
        let ns = took.as_nanos() as u64;
        let busy = self.busy.fetch_add(ns, Ordering::Relaxed) + ns;
        let Ok(mut p) = self.policy.try_lock() else {
            return;
        };
        let elapsed = now.saturating_duration_since(p.window.0);
        if elapsed < WINDOW {
            return;
        }
        let share = busy.saturating_sub(p.window.1) as f64 / elapsed.as_nanos() as f64;
        p.window = (now, busy);
        self.decide(&mut p, share, now);
    }

    /// Apply the policy to one window's busy share.
    fn decide(&self, p: &mut Policy, share: f64, now: Instant) {
        if self.allowed() {
            if share > BUSY_STOP {
                self.stop(p, now);
            }
        } else if share < BUSY_START && p.stopped.is_none_or(|at| now >= at + p.cooldown) {
            self.allowed.store(true, Ordering::Relaxed);
            p.resumed = Some(now);
        }
    }

    /// Stop whole requests (see [`Policy`]).
    fn stop(&self, p: &mut Policy, now: Instant) {
        if !self.allowed.swap(false, Ordering::Relaxed) {
            return;
        }
        p.cooldown = match p.resumed {
            Some(at) if now.saturating_duration_since(at) < SHORT => {
                (p.cooldown * 2).min(MAX_COOLDOWN)
            }
            _ => MIN_COOLDOWN,
        };
        p.stopped = Some(now);
    }

    /// As a window with this busy share at `now` would (for tests).
    #[cfg(test)]
    pub(super) fn decide_at(&self, share: f64, now: Instant) {
        self.decide(&mut self.policy(), share, now);
    }
}

impl LaneState {
    /// The position from which this lane's data waits for a whole request, if any (barriers
    /// already finished are forgotten first).
    pub(super) fn held_from(&mut self, released: u64) -> Option<u64> {
        while self.holds.front().is_some_and(|&(_, id)| id <= released) {
            self.holds.pop_front();
        }
        self.holds.front().map(|&(pos, _)| pos)
    }

    /// The newest barrier whose earlier data this lane has finished.
    pub(super) fn reached(&self) -> Option<u64> {
        self.holds
            .iter()
            .take_while(|&&(pos, _)| pos <= self.finished)
            .last()
            .map(|&(_, id)| id)
    }
}

impl SinkQueue {
    /// Whether requests may go whole now (see `whole.rs`): always with one lane; with
    /// several, while the senders are mostly idle.
    pub fn whole_allowed(&self) -> bool {
        self.lanes.len() == 1 || self.whole.allowed()
    }

    /// A sender spent `took` on a send attempt, up to `now`: what decides whether requests
    /// go whole (see `whole.rs`), and how long one takes.
    pub fn sending_for(&self, took: Duration, now: Instant) {
        if self.lanes.len() > 1 {
            self.whole.sent_for(took, now);
        }
    }

    /// A sender waited `took` to retry, up to `now`: as busy as sending, but no send's length
    /// (a `Retry-After` of minutes would otherwise stand for one send in the backlog bound).
    pub fn retry_waited(&self, took: Duration, now: Instant) {
        if self.lanes.len() > 1 {
            self.whole.busy_for(took, now);
        }
    }

    /// Queue a whole request on a target with several lanes (see `whole.rs`): `chunks` are
    /// the request's series spread over the lanes, every one of them unchanged, and
    /// `compressed` is the request as its sender compressed it. It becomes one batch on lane
    /// 0, sent once every other lane has finished what it held, and each other lane's later
    /// data waits for it. Returns lane 0's positions, or `None` when it cannot go whole (one
    /// lane, a spool, room on disk, metadata, a lane spilling, or the policy's stops: too
    /// many whole requests waiting, too long to send them, memory past half full): the
    /// caller appends the chunks as usual.
    pub fn append_whole(&self, chunks: &[Chunk], compressed: &[u8]) -> Option<Span> {
        if self.lanes.len() < 2
            || self.spool.is_some()
            || chunks.iter().any(|c| c.disk || c.metadata)
            || self.spilling()
        {
            return None;
        }
        let samples: usize = chunks.iter().map(|c| c.samples).sum();
        let _placing = self.whole.placing();
        // Memory past half full before this request (whose room is reserved already).
        let filling = 2 * self.memory_held().saturating_sub(samples) > self.capacity;
        if !self.whole.room(filling) {
            return None;
        }
        let (id, span) = {
            let mut st = self.lanes[0].lock();
            if self.overflow.as_ref().is_some_and(|o| o.is_spilling(0)) {
                return None;
            }
            let id = self.whole.next_id();
            (id, st.push_compressed(compressed, samples, id))
        };
        for lane in &self.lanes[1..] {
            let mut st = lane.lock();
            // What the lane was batching goes before the barrier, now: its sender may be
            // waiting for the batch's deadline, and nothing after the barrier would wake it.
            let sealed = !st.building.is_empty();
            st.seal();
            let pos = st.appended;
            // Forget finished barriers first: a lane that gets no data never looks itself.
            st.held_from(self.whole.released.load(Ordering::Acquire));
            st.holds.push_back((pos, id));
            if st.finished >= pos {
                lane.reached.fetch_max(id, Ordering::AcqRel);
            }
            drop(st);
            if sealed {
                lane.notify.notify_one();
            }
        }
        self.lanes[0].notify.notify_one();
        Some(span)
    }

    /// Whether the lane may send a memory batch starting at `start` (with barrier `barrier`)
    /// now: lanes 1.. not past a whole request still waiting; lane 0 not a whole request
    /// before every other lane reached it.
    pub(super) fn may_send(&self, st: &mut LaneState, start: u64, barrier: u64) -> bool {
        let released = self.whole.released.load(Ordering::Acquire);
        if st.held_from(released).is_some_and(|pos| start >= pos) {
            return false;
        }
        barrier == 0
            || self.lanes[1..]
                .iter()
                .all(|l| l.reached.load(Ordering::Acquire) >= barrier)
    }
}
