//! A target's send latency for status (the p99 on the status page and in `/api/v1/status`):
//! a fixed log-linear histogram of atomic counters, one `fetch_add` per send attempt, no lock.
//!
//! Buckets are in microseconds: exact below 4 µs, then every power of two is split in four
//! (at most 25 % wide, so a quantile read from them is within ~12 % of the truth), up to
//! 2^26 µs (~67 s); slower sends land in the last bucket. The counters only grow; a reader
//! gets a recent window by subtracting an older [`LatencySnapshot`] (see
//! [`crate::admin`]'s rates, which keep a minute of them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets: 4 exact ones, then 4 per power of two from 2^2 to 2^26 µs.
pub const BUCKETS: usize = 104;

/// Counts of send attempts by latency bucket since the target started.
pub struct SendLatency {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for SendLatency {
    fn default() -> Self {
        SendLatency {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The counters of a [`SendLatency`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencySnapshot(pub Box<[u64; BUCKETS]>);

impl Default for LatencySnapshot {
    fn default() -> Self {
        LatencySnapshot(Box::new([0; BUCKETS]))
    }
}

/// The bucket of a latency of `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let log = u64::from(63 - us.leading_zeros()); // ≥ 2
    let sub = (us >> (log - 2)) & 3;
    (((log - 1) * 4 + sub) as usize).min(BUCKETS - 1)
}

/// The bucket's range in microseconds, `[low, high)`.
fn bounds(i: usize) -> (f64, f64) {
    if i < 4 {
        return (i as f64, (i + 1) as f64);
    }
    let log = i / 4 + 1;
    let sub = (i % 4) as u64;
    let step = 1u64 << (log - 2);
    (((4 + sub) * step) as f64, ((5 + sub) * step) as f64)
}

impl SendLatency {
    /// Count one send attempt that took `took`.
    #[inline]
    pub fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot(Box::new(std::array::from_fn(|i| {
            self.buckets[i].load(Ordering::Relaxed)
        })))
    }
}

impl LatencySnapshot {
    /// The `q` quantile (0 < q ≤ 1) of the sends counted after `earlier` and up to `self`,
    /// in seconds, interpolated linearly inside its bucket; `None` when there were none.
    pub fn quantile_since(&self, earlier: &LatencySnapshot, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .0
            .iter()
            .zip(earlier.0.iter())
            .map(|(now, then)| now.saturating_sub(*then))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the quantile among the sends, 1-based.
        // (less a hair, so 0.99 × 1000 is rank 990 whatever the float rounding)
        let rank = ((q * total as f64 - 1e-9).ceil() as u64).clamp(1, total);
        let mut below = 0u64;
        for (i, &n) in counts.iter().enumerate() {
            if n > 0 && below + n >= rank {
                let (low, high) = bounds(i);
                let within = (rank - below) as f64 / n as f64;
                return Some((low + within * (high - low)) / 1e6);
            }
            below += n;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_hold_their_values() {
        for us in [0u64, 1, 3, 4, 5, 7, 8, 9, 15, 16, 1000, 123_456, 60_000_000] {
            let (low, high) = bounds(bucket(us));
            assert!(
                low <= us as f64 && (us as f64) < high,
                "{us} in [{low}, {high})"
            );
        }
        for i in 0..BUCKETS - 1 {
            assert_eq!(bounds(i).1, bounds(i + 1).0, "bucket {i} meets the next");
        }
        assert_eq!(
            bucket(u64::MAX),
            BUCKETS - 1,
            "slower sends land in the last"
        );
    }

    #[test]
    fn the_p99_of_a_window_ignores_sends_before_it() {
        let l = SendLatency::default();
        for _ in 0..1000 {
            l.observe(Duration::from_secs(5));
        }
        let before = l.snapshot();
        for _ in 0..990 {
            l.observe(Duration::from_millis(2));
        }
        for _ in 0..10 {
            l.observe(Duration::from_millis(100));
        }
        let now = l.snapshot();
        let p99 = now.quantile_since(&before, 0.99).unwrap();
        assert!((0.0016..=0.0025).contains(&p99), "{p99}");
        let p100 = now.quantile_since(&before, 1.0).unwrap();
        assert!((0.08..=0.12).contains(&p100), "{p100}");
        let all = now
            .quantile_since(&LatencySnapshot::default(), 0.99)
            .unwrap();
        assert!(
            all > 4.0,
            "{all}: the slow sends before the window count here"
        );
        assert_eq!(now.quantile_since(&now, 0.99), None, "no sends, no p99");
    }
}
