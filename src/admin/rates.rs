//! Rates over the last minute, computed in the relay from its own counters: a sampler reads
//! them every few seconds and keeps a minute of readings per series, so the API and status
//! page show per-second rates without anyone having to run PromQL. The same sampler keeps a
//! minute of each target's send-latency counters, so the p99 shown is that of the last minute.

use super::Live;
use crate::targets::LatencySnapshot;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often counters are read.
pub const EVERY: Duration = Duration::from_secs(5);
/// How far back a rate looks.
const WINDOW: Duration = Duration::from_secs(60);

/// What a series is: a task's matched or filtered samples, a target's delivered ones, a
/// source's received ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Series {
    Matched(String),
    Filtered(String),
    Delivered(String, String),
    /// A source's received samples.
    Received(String),
    /// A source's answered requests.
    Requests(String),
}

/// A target by (task, target) name.
type TargetKey = (String, String);

#[derive(Default)]
pub struct Rates {
    readings: Mutex<HashMap<Series, VecDeque<(Instant, u64)>>>,
    /// Each target's send-latency counters, read with the others.
    latency: Mutex<HashMap<TargetKey, VecDeque<(Instant, LatencySnapshot)>>>,
}

impl Rates {
    /// Record one reading of every series (and forget series no longer read).
    pub fn record(&self, now: Instant, values: impl IntoIterator<Item = (Series, u64)>) {
        let mut r = self.readings.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = std::collections::HashSet::new();
        for (series, v) in values {
            let q = r.entry(series.clone()).or_default();
            q.push_back((now, v));
            while q.len() > 2
                && q.front()
                    .is_some_and(|&(t, _)| now.duration_since(t) > WINDOW)
            {
                q.pop_front();
            }
            seen.insert(series);
        }
        r.retain(|k, _| seen.contains(k));
    }

    /// Record one reading of every target's send-latency counters (and forget the others).
    pub fn record_latency(
        &self,
        now: Instant,
        values: impl IntoIterator<Item = (TargetKey, LatencySnapshot)>,
    ) {
        let mut r = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = std::collections::HashSet::new();
        for (key, v) in values {
            let q = r.entry(key.clone()).or_default();
            q.push_back((now, v));
            while q.len() > 2
                && q.front()
                    .is_some_and(|&(t, _)| now.duration_since(t) > WINDOW)
            {
                q.pop_front();
            }
            seen.insert(key);
        }
        r.retain(|k, _| seen.contains(k));
    }

    /// The p99 send latency in seconds of the target's sends from the oldest reading of the
    /// last minute up to `now` (its counters read now); from the start before any reading.
    /// `None` when it sent nothing in that time.
    pub fn p99_send_seconds(&self, task: &str, target: &str, now: &LatencySnapshot) -> Option<f64> {
        let r = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let key = (task.to_owned(), target.to_owned());
        let zero = LatencySnapshot::default();
        let base = match r.get(&key).and_then(VecDeque::front) {
            // A target rebuilt by a reload starts its counters again: then count from zero.
            Some((_, then)) if then.0.iter().zip(now.0.iter()).all(|(a, b)| a <= b) => then,
            _ => &zero,
        };
        now.quantile_since(base, 0.99)
    }

    /// Per second over the readings of the last minute; `None` before two readings.
    pub fn per_second(&self, series: &Series) -> Option<f64> {
        let r = self.readings.lock().unwrap_or_else(|p| p.into_inner());
        let q = r.get(series)?;
        let (&(t0, v0), &(t1, v1)) = (q.front()?, q.back()?);
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt > 0.0).then(|| v1.saturating_sub(v0) as f64 / dt)
    }
}

/// Read the running pipeline's counters every [`EVERY`], for ever.
pub async fn sample(live: std::sync::Arc<Live>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pipeline = live.pipeline();
        let mut values = Vec::new();
        for (task, matched, filtered) in pipeline.task_counters() {
            values.push((Series::Matched(task.to_owned()), matched));
            values.push((Series::Filtered(task.to_owned()), filtered));
        }
        for (source, received) in pipeline.source_counters() {
            values.push((Series::Received(source.to_owned()), received));
            let requests = live.metrics().source_status(source).requests;
            values.push((Series::Requests(source.to_owned()), requests));
        }
        let mut latency = Vec::new();
        for t in pipeline.targets() {
            values.push((
                Series::Delivered(t.task.clone(), t.name.clone()),
                t.metrics.delivered.get(),
            ));
            latency.push(((t.task.clone(), t.name.clone()), t.latency.snapshot()));
        }
        let now = Instant::now();
        live.rates().record(now, values);
        live.rates().record_latency(now, latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_the_slope_over_the_last_minute() {
        let r = Rates::default();
        let s = Series::Matched("t".into());
        let t0 = Instant::now();
        r.record(t0, [(s.clone(), 100)]);
        assert_eq!(r.per_second(&s), None, "one reading is no rate");
        r.record(t0 + Duration::from_secs(10), [(s.clone(), 600)]);
        assert_eq!(r.per_second(&s), Some(50.0));
        // Readings older than a minute fall out of the window.
        r.record(t0 + Duration::from_secs(100), [(s.clone(), 700)]);
        r.record(t0 + Duration::from_secs(110), [(s.clone(), 800)]);
        assert_eq!(r.per_second(&s), Some(10.0));
        // A series not read any more is forgotten.
        r.record(t0 + Duration::from_secs(115), []);
        assert_eq!(r.per_second(&s), None);
    }

    #[test]
    fn the_p99_counts_the_sends_of_the_last_minute() {
        use crate::targets::SendLatency;
        let r = Rates::default();
        let l = SendLatency::default();
        assert_eq!(r.p99_send_seconds("t", "a", &l.snapshot()), None);
        l.observe(Duration::from_secs(2));
        // Before any reading: every send so far.
        let p = r.p99_send_seconds("t", "a", &l.snapshot()).unwrap();
        assert!((1.5..2.5).contains(&p), "{p}");
        let t0 = Instant::now();
        r.record_latency(t0, [(("t".into(), "a".into()), l.snapshot())]);
        assert_eq!(
            r.p99_send_seconds("t", "a", &l.snapshot()),
            None,
            "none since"
        );
        l.observe(Duration::from_millis(10));
        let p = r.p99_send_seconds("t", "a", &l.snapshot()).unwrap();
        assert!((0.008..0.012).contains(&p), "{p}");
        // Rebuilt by a reload: fresh counters are read from zero.
        let fresh = SendLatency::default();
        fresh.observe(Duration::from_millis(1));
        let p = r.p99_send_seconds("t", "a", &fresh.snapshot()).unwrap();
        assert!((0.0008..0.0012).contains(&p), "{p}");
    }
}
