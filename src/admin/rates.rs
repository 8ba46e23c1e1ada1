//! Rates over the last minute, computed in the relay from its own counters: a sampler reads
//! them every few seconds and keeps a minute of readings per series, so the API and status
//! page show per-second rates without anyone having to run PromQL.

use super::Live;
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

#[derive(Default)]
pub struct Rates {
    readings: Mutex<HashMap<Series, VecDeque<(Instant, u64)>>>,
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
        for t in pipeline.targets() {
            values.push((
                Series::Delivered(t.task.clone(), t.name.clone()),
                t.metrics.delivered.get(),
            ));
        }
        live.rates().record(Instant::now(), values);
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
}
