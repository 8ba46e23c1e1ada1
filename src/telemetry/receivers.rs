//! Per-receiver metrics of a sharded remote_write target (`urls:` with several receivers):
//! each receiver's delivered and refused samples, retries, and whether its last send worked.
//! The target's own metrics stay the sums over its receivers.

use super::{Labels, labels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Families, registered once; [`ReceiverMetrics::receiver`] makes one receiver's handles.
#[derive(Clone, Default)]
pub struct ReceiverMetrics {
    delivered: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    up: Family<Labels, Gauge>,
}

/// One receiver's handles (bumped once per batch by the lane that sends to it).
#[derive(Clone, Debug, Default)]
pub struct ReceiverHandles {
    pub delivered: Counter,
    pub refused: Counter,
    pub retries: Counter,
    /// 1 after a delivered batch, 0 after a failed or refused one.
    pub up: Gauge,
}

impl ReceiverMetrics {
    pub(super) fn register(registry: &mut Registry) -> ReceiverMetrics {
        let m = ReceiverMetrics::default();
        registry.register(
            "target_receiver_delivered_samples",
            "Samples one receiver of a sharded remote_write target acknowledged",
            m.delivered.clone(),
        );
        registry.register(
            "target_receiver_refused_samples",
            "Samples one receiver of a sharded remote_write target refused for good",
            m.refused.clone(),
        );
        registry.register(
            "target_receiver_retries",
            "Send attempts to one receiver of a sharded remote_write target that failed and were retried",
            m.retries.clone(),
        );
        registry.register(
            "target_receiver_up",
            "1 when the last send to this receiver of a sharded remote_write target was delivered, 0 when it failed or was refused",
            m.up.clone(),
        );
        m
    }

    fn labels(task: &str, target: &str, receiver: &str) -> Labels {
        labels(&[("task", task), ("target", target), ("receiver", receiver)])
    }

    /// The handles of `receiver` (its URL without credentials) of `task`'s `target`.
    pub fn receiver(&self, task: &str, target: &str, receiver: &str) -> ReceiverHandles {
        let l = Self::labels(task, target, receiver);
        ReceiverHandles {
            delivered: self.delivered.get_or_create(&l).clone(),
            refused: self.refused.get_or_create(&l).clone(),
            retries: self.retries.get_or_create(&l).clone(),
            up: self.up.get_or_create(&l).clone(),
        }
    }

    /// Forget a receiver's series (its target was removed or changed by a reload).
    pub fn remove(&self, task: &str, target: &str, receiver: &str) {
        let l = Self::labels(task, target, receiver);
        self.delivered.remove(&l);
        self.refused.remove(&l);
        self.retries.remove(&l);
        self.up.remove(&l);
    }
}
