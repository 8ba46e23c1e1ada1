//! A target's overflow: the spool its lanes spill to once the memory queue is full.
//!
//! The spool is opened on the first spill (a target that never falls behind never touches
//! the disk), or when the target starts if its directory already holds data from an earlier
//! run; then that data is delivered first (its lanes start out spilling), which keeps every
//! series in order, as receivers without an out-of-order window need.

use crate::targets::spool::{Spool, SpoolConfig, SpoolCounters};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often a spool that failed to open is tried again (each try is a few syscalls on the
/// request path; failures are logged once per try).
const RETRY_OPEN: Duration = Duration::from_secs(1);

pub struct Overflow {
    cfg: SpoolConfig,
    lanes: usize,
    counters: SpoolCounters,
    spool: OnceLock<Spool>,
    /// When opening last failed.
    failed_at: Mutex<Option<Instant>>,
    /// Per lane: it has a disk part (records unread, or a batch of them in flight). Written
    /// under the lane's lock.
    spilling: Box<[AtomicBool]>,
    spilling_lanes: AtomicUsize,
    /// Per lane: its new data goes to disk, behind its disk part. Set with `spilling`, and
    /// cleared as soon as the sender has read the last record ([`Overflow::back_to_memory`]):
    /// under a steady load a batch is always in flight, so a lane that waited for its disk
    /// part to drain would spill for as long as the load lasts. Written under the lane's
    /// lock; read without it when a request decides where to reserve room.
    to_disk: Box<[AtomicBool]>,
}

impl Overflow {
    /// An overflow for `lanes` lanes in `cfg.dir`; opened now if the directory exists (an
    /// earlier run left it), else on the first spill.
    ///
    /// # Errors
    /// An existing directory that cannot be opened (in use by another relay, unreadable).
    pub fn new(cfg: SpoolConfig, lanes: usize, counters: SpoolCounters) -> std::io::Result<Self> {
        let o = Overflow {
            lanes,
            counters,
            spool: OnceLock::new(),
            failed_at: Mutex::new(None),
            spilling: (0..lanes).map(|_| AtomicBool::new(false)).collect(),
            spilling_lanes: AtomicUsize::new(0),
            to_disk: (0..lanes).map(|_| AtomicBool::new(false)).collect(),
            cfg,
        };
        if o.cfg.dir.exists() {
            let (spool, recovered) = Spool::open(o.cfg.clone(), lanes, o.counters.clone())?;
            if recovered.records > 0 || recovered.cut_bytes > 0 {
                tracing::info!(
                    dir = %o.cfg.dir.display(), samples = recovered.samples,
                    bytes = recovered.bytes, torn_bytes_cut = recovered.cut_bytes,
                    "overflow: delivering what an earlier run left on disk first"
                );
            }
            for lane in 0..lanes {
                if spool.lane_pending(lane) {
                    o.set_spilling(lane, true);
                }
            }
            let _ = o.spool.set(spool);
        }
        Ok(o)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.cfg.dir
    }

    /// The spool if it is open.
    pub fn opened(&self) -> Option<&Spool> {
        self.spool.get()
    }

    /// The spool, opening it on first use. `None` when it cannot be opened (logged, and
    /// tried again at most once a second).
    pub fn spool(&self) -> Option<&Spool> {
        if let Some(s) = self.spool.get() {
            return Some(s);
        }
        let mut failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = self.spool.get() {
            return Some(s); // opened by another request while this one waited
        }
        if failed.is_some_and(|t| t.elapsed() < RETRY_OPEN) {
            return None;
        }
        match Spool::open(self.cfg.clone(), self.lanes, self.counters.clone()) {
            Ok((s, _)) => {
                tracing::warn!(dir = %self.cfg.dir.display(), "target fell behind: spilling to its overflow on disk");
                *failed = None;
                Some(self.spool.get_or_init(|| s))
            }
            Err(e) => {
                tracing::error!(dir = %self.cfg.dir.display(), "overflow cannot be opened, pushing back instead: {e}");
                *failed = Some(Instant::now());
                None
            }
        }
    }

    #[inline]
    pub fn is_spilling(&self, lane: usize) -> bool {
        self.spilling[lane].load(Ordering::Acquire)
    }

    /// Whether any lane is spilling.
    pub fn any_spilling(&self) -> bool {
        self.spilling_lanes.load(Ordering::Acquire) > 0
    }

    /// Whether the lane's new data goes to disk.
    #[inline]
    pub fn goes_to_disk(&self, lane: usize) -> bool {
        self.to_disk[lane].load(Ordering::Acquire)
    }

    /// The sender has read the last record of the lane's disk part (a batch of it is in
    /// flight): new data goes to memory again, to be sent after that batch. The lane still
    /// spills until the batch is finished. Call with the lane's lock held.
    pub fn back_to_memory(&self, lane: usize) {
        self.to_disk[lane].store(false, Ordering::Release);
    }

    /// Call with the lane's lock held.
    pub fn set_spilling(&self, lane: usize, on: bool) {
        self.to_disk[lane].store(on, Ordering::Release);
        if self.spilling[lane].swap(on, Ordering::AcqRel) != on {
            if on {
                self.spilling_lanes.fetch_add(1, Ordering::AcqRel);
            } else {
                self.spilling_lanes.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}
