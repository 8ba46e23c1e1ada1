//! When the data a lane holds arrived, for `promrelay_target_oldest_pending_seconds`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// When the data a lane holds arrived, to about a second: marks of (lane sequence number just
/// past the data, when its first part arrived), over every sample appended (memory or disk).
#[derive(Default)]
pub(super) struct Arrivals {
    pub(super) marks: VecDeque<(u64, Instant)>,
    appended: u64,
    finished: u64,
}

/// A new mark at most this often; data within one mark counts from the mark's time.
const MARK_EVERY: Duration = Duration::from_secs(1);
/// Marks kept per lane; past it the two oldest merge (the oldest time stays, so the age shown
/// never understates).
pub(super) const MAX_MARKS: usize = 1024;

impl Arrivals {
    pub(super) fn add(&mut self, samples: usize, now: Instant) {
        self.appended += samples as u64;
        let appended = self.appended;
        match self.marks.back_mut() {
            Some((end, t)) if now.saturating_duration_since(*t) < MARK_EVERY => *end = appended,
            _ => {
                if self.marks.len() >= MAX_MARKS
                    && let Some((second_end, _)) = self.marks.remove(1)
                {
                    self.marks[0].0 = second_end;
                }
                self.marks.push_back((appended, now));
            }
        }
    }

    pub(super) fn finish(&mut self, samples: usize) {
        self.finished = (self.finished + samples as u64).min(self.appended);
        while self
            .marks
            .front()
            .is_some_and(|&(end, _)| end <= self.finished)
        {
            self.marks.pop_front();
        }
    }

    /// Forget everything: the lane is empty (data lost to corruption never finishes).
    pub(super) fn clear(&mut self) {
        self.marks.clear();
        self.finished = self.appended;
    }
}
