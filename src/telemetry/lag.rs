//! How far behind a target is: the newest sample timestamp it was given and the newest it has
//! delivered, as `promrelay_target_highest_received_timestamp_seconds` and
//! `promrelay_target_highest_sent_timestamp_seconds`. Their difference is the lag, read the
//! same way as Prometheus' own `prometheus_remote_storage_highest_timestamp_in_seconds -
//! prometheus_remote_storage_queue_highest_sent_timestamp_seconds`.
//!
//! Received is a running maximum, updated once per request and target. Delivered needs to
//! know which timestamps a delivered batch carried, without reading the batch back: each lane
//! keeps a short ledger of `(end position, newest timestamp)` per appended request, in the
//! lane's own positions (samples in memory, bytes in a spool, as [`crate::targets::queue::Span`]),
//! and a finished batch pops every entry it covers. Like Prometheus' per-shard maximum, the
//! delivered value is the maximum over lanes: a lane that lags behind the others shows only
//! once the others stop moving.
//!
//! The ledger is bounded: past [`KEPT`] entries the newest entry absorbs the next one, which
//! can only make the delivered timestamp arrive later, never claim data not yet delivered.
//! It is preallocated, so the data path allocates nothing for it. Data replayed from a spool
//! after a restart has no ledger entries; the delivered timestamp moves again with new data.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// Ledger entries kept per lane.
pub const KEPT: usize = 1024;

/// A gauge that only moves forward: the newest timestamp seen, exposed in seconds (0 before
/// the first). A plain gauge cannot take a maximum from several threads without a race.
#[derive(Debug, Clone, Default)]
pub struct TimestampGauge {
    ms: Arc<AtomicI64>,
}

impl TimestampGauge {
    /// Raise the gauge to `ms` (milliseconds since the epoch) if it is newer.
    pub fn observe(&self, ms: i64) {
        self.ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The value in seconds.
    pub fn seconds(&self) -> f64 {
        self.ms.load(Ordering::Relaxed).max(0) as f64 / 1000.0
    }
}

impl TypedMetric for TimestampGauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for TimestampGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.seconds())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A lane's ledger: `(end position, newest timestamp in ms)` per appended request, in order.
type Ledger = Mutex<VecDeque<(u64, i64)>>;

/// One target's received and delivered timestamps, and the per-lane ledger between them.
#[derive(Debug)]
pub struct TargetClock {
    received: TimestampGauge,
    sent: TimestampGauge,
    lanes: Box<[Ledger]>,
}

impl TargetClock {
    pub fn new(lanes: usize, received: TimestampGauge, sent: TimestampGauge) -> TargetClock {
        TargetClock {
            received,
            sent,
            lanes: (0..lanes.max(1))
                .map(|_| Mutex::new(VecDeque::with_capacity(KEPT)))
                .collect(),
        }
    }

    /// A request's samples up to lane position `end` were appended to `lane`; the newest of
    /// them has timestamp `newest_ms` (`i64::MIN` for none).
    pub fn queued(&self, lane: usize, end: u64, newest_ms: i64) {
        if newest_ms == i64::MIN {
            return;
        }
        self.received.observe(newest_ms);
        let Some(ledger) = self.lanes.get(lane) else {
            return;
        };
        let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() >= KEPT {
            if let Some(last) = l.back_mut() {
                last.0 = last.0.max(end);
                last.1 = last.1.max(newest_ms);
            }
            return;
        }
        // Requests on other shards may append to the lane in between; keep the ledger in
        // position order (almost always this is a push at the back).
        let at = l.iter().rposition(|&(e, _)| e <= end).map_or(0, |i| i + 1);
        l.insert(at, (end, newest_ms));
    }

    /// A batch covering `lane` positions up to `end` finished; `delivered` when the target
    /// took it.
    pub fn finished(&self, lane: usize, end: u64, delivered: bool) {
        let Some(ledger) = self.lanes.get(lane) else {
            return;
        };
        let mut newest = i64::MIN;
        {
            let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
            while let Some(&(e, ts)) = l.front() {
                if e > end {
                    break;
                }
                newest = newest.max(ts);
                l.pop_front();
            }
        }
        if delivered && newest != i64::MIN {
            self.sent.observe(newest);
        }
    }

    pub fn received(&self) -> &TimestampGauge {
        &self.received
    }

    pub fn sent(&self) -> &TimestampGauge {
        &self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(lanes: usize) -> TargetClock {
        TargetClock::new(lanes, TimestampGauge::default(), TimestampGauge::default())
    }

    #[test]
    fn delivered_follows_the_batches_that_cover_each_request() {
        let c = clock(2);
        c.queued(0, 10, 1_000);
        c.queued(0, 20, 2_000);
        c.queued(1, 5, 3_000);
        assert_eq!(c.received().seconds(), 3.0);
        assert_eq!(c.sent().seconds(), 0.0);
        c.finished(0, 12, true); // covers the first request only
        assert_eq!(c.sent().seconds(), 1.0);
        c.finished(1, 5, false); // refused: not delivered
        assert_eq!(c.sent().seconds(), 1.0);
        c.finished(0, 20, true);
        assert_eq!(c.sent().seconds(), 2.0);
        // Never backwards.
        c.queued(0, 30, 500);
        c.finished(0, 30, true);
        assert_eq!(c.sent().seconds(), 2.0);
    }

    #[test]
    fn out_of_order_appends_and_a_full_ledger_stay_conservative() {
        let c = clock(1);
        c.queued(0, 20, 2_000);
        c.queued(0, 10, 1_000); // another shard's earlier span, noted second
        c.finished(0, 10, true);
        assert_eq!(c.sent().seconds(), 1.0);
        let c = clock(1);
        for i in 0..KEPT as u64 + 10 {
            c.queued(0, i + 1, (i as i64 + 1) * 1000);
        }
        // The last entries merged into one: delivering up to KEPT - 1 does not claim them.
        c.finished(0, KEPT as u64 - 1, true);
        assert_eq!(c.sent().seconds(), (KEPT - 1) as f64);
        c.finished(0, KEPT as u64 + 10, true);
        assert_eq!(c.sent().seconds(), (KEPT + 10) as f64);
    }
}
