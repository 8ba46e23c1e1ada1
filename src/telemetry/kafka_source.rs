//! The Kafka sources' metrics: messages read, refused by reason, sent to the dead-letter
//! topic, pauses for backpressure, offsets committed, and the lag of each partition.

use super::{Labels, labels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Lag by (source, topic, partition).
type Lags = std::collections::BTreeMap<(String, String, i32), i64>;

/// Families, registered once; [`KafkaSourceMetrics::source`] makes one source's handles.
#[derive(Clone, Default)]
pub struct KafkaSourceMetrics {
    messages: Family<Labels, Counter>,
    invalid: Family<Labels, Counter>,
    dead_letter: Family<Labels, Counter>,
    pauses: Family<Labels, Counter>,
    commits: Family<Labels, Counter>,
    rebalances: Family<Labels, Counter>,
    lag: Family<Labels, Gauge>,
    /// The same lags by (source, topic, partition), for the admin API's source status.
    lags: std::sync::Arc<std::sync::Mutex<Lags>>,
}

/// One Kafka source's handles (the data path bumps these once per message).
#[derive(Clone)]
pub struct KafkaSourceHandles {
    source: String,
    families: KafkaSourceMetrics,
    /// Messages read (valid or not).
    pub messages: Counter,
    /// Messages written unchanged to `dead_letter_topic`.
    pub dead_letter: Counter,
    /// Times consumption paused because a target queue was full.
    pub pauses: Counter,
    /// Offset commits that succeeded.
    pub commits: Counter,
}

impl KafkaSourceMetrics {
    pub(super) fn register(registry: &mut Registry) -> KafkaSourceMetrics {
        let m = KafkaSourceMetrics::default();
        registry.register(
            "kafka_source_messages",
            "Messages a Kafka source read, valid or not, by source",
            m.messages.clone(),
        );
        registry.register(
            "kafka_source_invalid_messages",
            "Messages a Kafka source could not read, by source and reason (skipped, or written to dead_letter_topic)",
            m.invalid.clone(),
        );
        registry.register(
            "kafka_source_dead_letter_messages",
            "Invalid messages written unchanged to the source's dead_letter_topic",
            m.dead_letter.clone(),
        );
        registry.register(
            "kafka_source_backpressure_pauses",
            "Times a Kafka source paused its partitions because a target queue was full",
            m.pauses.clone(),
        );
        registry.register(
            "kafka_source_commits",
            "Offset commits a Kafka source made (only offsets whose data was safe)",
            m.commits.clone(),
        );
        registry.register(
            "kafka_source_rebalances",
            "Partitions assigned to or revoked from a Kafka source, by event",
            m.rebalances.clone(),
        );
        registry.register(
            "kafka_source_lag",
            "Messages in a partition past the source's committed offset (the broker's high watermark minus the committed offset), per assigned partition",
            m.lag.clone(),
        );
        m
    }

    /// The partitions source `source` owns on this relay, with their lag (when known), for
    /// `GET /api/v1/status`: `[{"topic", "partition", "lag"}]`, empty for an HTTP source.
    pub fn partitions(&self, source: &str) -> Vec<serde_json::Value> {
        let lags = self.lags.lock().unwrap_or_else(|p| p.into_inner());
        lags.iter()
            .filter(|((s, _, _), _)| s == source)
            .map(|((_, topic, partition), lag)| {
                serde_json::json!({"topic": topic, "partition": partition, "lag": lag})
            })
            .collect()
    }

    /// The handles of source `source`.
    pub fn source(&self, source: &str) -> KafkaSourceHandles {
        let l = labels(&[("source", source)]);
        KafkaSourceHandles {
            source: source.to_owned(),
            messages: self.messages.get_or_create(&l).clone(),
            dead_letter: self.dead_letter.get_or_create(&l).clone(),
            pauses: self.pauses.get_or_create(&l).clone(),
            commits: self.commits.get_or_create(&l).clone(),
            families: self.clone(),
        }
    }
}

impl KafkaSourceHandles {
    /// Count a message refused for `reason` (a rare event: looked up by name).
    pub fn invalid(&self, reason: &str) {
        self.families
            .invalid
            .get_or_create(&labels(&[("source", &self.source), ("reason", reason)]))
            .inc();
    }

    /// Count partitions assigned or revoked (`event`).
    pub fn rebalance(&self, event: &str, partitions: u64) {
        self.families
            .rebalances
            .get_or_create(&labels(&[("source", &self.source), ("event", event)]))
            .inc_by(partitions);
    }

    fn lag_labels(&self, topic: &str, partition: i32) -> Labels {
        labels(&[
            ("source", &self.source),
            ("topic", topic),
            ("partition", &partition.to_string()),
        ])
    }

    /// The lags of every partition this source owns now (from one statistics report): sets
    /// them, and forgets any partition not among them (owned by another relay now).
    pub fn replace_lags(&self, now: &[(String, i32, i64)]) {
        let mut lags = self.families.lags.lock().unwrap_or_else(|p| p.into_inner());
        let stale: Vec<(String, i32)> = lags
            .keys()
            .filter(|(s, t, p)| {
                *s == self.source && !now.iter().any(|(t2, p2, _)| t2 == t && p2 == p)
            })
            .map(|(_, t, p)| (t.clone(), *p))
            .collect();
        for (topic, partition) in stale {
            self.families
                .lag
                .remove(&self.lag_labels(&topic, partition));
            lags.remove(&(self.source.clone(), topic, partition));
        }
        for (topic, partition, lag) in now {
            self.families
                .lag
                .get_or_create(&self.lag_labels(topic, *partition))
                .set(*lag);
            lags.insert((self.source.clone(), topic.clone(), *partition), *lag);
        }
    }

    /// A partition is no longer this source's: its lag is someone else's to report.
    pub fn forget_lag(&self, topic: &str, partition: i32) {
        self.families.lag.remove(&self.lag_labels(topic, partition));
    }
}
