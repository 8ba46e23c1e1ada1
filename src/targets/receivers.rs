//! The receivers of a target that sends to several (a sharded remote_write target's `urls`):
//! which lanes send to which receiver, and each receiver's own health and metrics, so one
//! receiver that is down shows as down while its siblings deliver.

use crate::telemetry::{ReceiverHandles, ReceiverMetrics};

use super::health::Health;

/// One receiver: its URL (without credentials), how its last sends went, its metrics.
pub struct Receiver {
    pub url: String,
    pub health: Health,
    pub metrics: ReceiverHandles,
}

/// A target's receivers, each owning an equal run of the target's lanes (as the encoder and
/// the services split them: lane `l` belongs to receiver `l / (lanes / receivers)`).
#[derive(Default)]
pub struct Receivers {
    list: Vec<Receiver>,
    lanes_each: usize,
}

impl Receivers {
    /// The receivers at `urls` of a target with `lanes` lanes; none for fewer than two URLs
    /// (the target's own health and metrics then say everything).
    pub fn new(
        urls: Vec<String>,
        lanes: usize,
        metrics: &ReceiverMetrics,
        task: &str,
        target: &str,
    ) -> Receivers {
        if urls.len() < 2 {
            return Receivers::default();
        }
        let lanes_each = (lanes / urls.len()).max(1);
        let list = urls
            .into_iter()
            .map(|url| Receiver {
                metrics: metrics.receiver(task, target, &url),
                health: Health::default(),
                url,
            })
            .collect();
        Receivers { list, lanes_each }
    }

    /// The receiver lane `lane` sends to, if the target has several.
    #[inline]
    pub fn of_lane(&self, lane: usize) -> Option<&Receiver> {
        self.list.get(lane / self.lanes_each.max(1))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Receiver> {
        self.list.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_split_between_receivers_as_the_encoder_splits_them() {
        let m = ReceiverMetrics::default();
        let urls = |n: usize| (0..n).map(|i| format!("http://r{i}/")).collect::<Vec<_>>();
        let r = Receivers::new(urls(2), 8, &m, "t", "x");
        let owner = |l| r.of_lane(l).map(|x| x.url.clone());
        assert_eq!(owner(0).as_deref(), Some("http://r0/"));
        assert_eq!(owner(3).as_deref(), Some("http://r0/"));
        assert_eq!(owner(4).as_deref(), Some("http://r1/"));
        assert_eq!(owner(7).as_deref(), Some("http://r1/"));
        // 4 lanes over 3 receivers: one lane each, the fourth unused (the encoder never
        // writes to it).
        let r = Receivers::new(urls(3), 4, &m, "t", "x");
        assert_eq!(r.of_lane(2).map(|x| x.url.as_str()), Some("http://r2/"));
        assert!(r.of_lane(3).is_none());
        assert!(Receivers::new(urls(1), 4, &m, "t", "x").is_empty());
    }
}
