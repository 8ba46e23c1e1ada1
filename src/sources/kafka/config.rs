//! `sources[*].kafka`: which topics a Kafka source reads, in which consumer group, in which
//! format, and the client settings (brokers, SASL, TLS, librdkafka `options`, checked by the
//! same code as the Kafka target's: [`ClientKeys`]).

use crate::config::values::parse_duration;
use crate::config::{ConfigError, invalid};
use crate::targets::kafka::{ClientKeys, RawSasl, parse_topic};
use crate::targets::tls::RawTls;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafkaSource {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    /// Topics to read (literal names).
    pub topics: Vec<String>,
    /// The consumer group: relays with the same `group_id` share the topics' partitions.
    pub group_id: String,
    /// What a message holds: `json` (the seed's sample arrays) or `remote_write`.
    #[serde(default)]
    pub format: SourceFormat,
    /// Where messages that cannot be read go, unchanged (default: skipped, counted, logged).
    pub dead_letter_topic: Option<String>,
    pub sasl: Option<RawSasl>,
    pub tls: Option<RawTls>,
    /// librdkafka consumer settings, passed through as they are.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// How often offsets that are safe are committed.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: String,
    /// Messages read but not yet safe (waiting for their tasks' `ack`), at most.
    #[serde(default = "default_max_pending")]
    pub max_pending_messages: u64,
}

fn default_commit_interval() -> String {
    "1s".into()
}

fn default_max_pending() -> u64 {
    65_536
}

/// The message format of a Kafka source.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// A JSON array of flat sample objects, raw-snappy compressed or not (the seed's format).
    #[default]
    Json,
    /// A remote-write 1.0 `WriteRequest`, raw-snappy compressed or not (what the Kafka target
    /// writes with `format: remote_write`).
    RemoteWrite,
}

/// A checked Kafka source.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    /// The source's name (what tasks name in `source:`).
    pub name: String,
    pub topics: Vec<String>,
    pub group_id: String,
    pub format: SourceFormat,
    pub dead_letter_topic: Option<String>,
    pub commit_interval: Duration,
    pub max_pending_messages: usize,
    /// Every librdkafka consumer setting: the defaults, then sasl/tls, then `options`.
    pub consumer: Vec<(String, String)>,
    /// The dead-letter producer's settings (the same connection).
    pub producer: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaSourceConfig {
    // The client settings may hold the SASL password: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSourceConfig")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .field("group_id", &self.group_id)
            .field("format", &self.format)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .finish_non_exhaustive()
    }
}

impl RawKafkaSource {
    /// Check the source named `name` at `at` (`sources[i].kafka`).
    ///
    /// # Errors
    /// The first bad key, named under `at`.
    pub fn validate(
        &self,
        name: &str,
        at: &str,
        base: &Path,
    ) -> Result<KafkaSourceConfig, ConfigError> {
        if self.topics.is_empty() {
            return Err(invalid(
                format!("{at}.topics"),
                "must list at least one topic",
            ));
        }
        for (i, t) in self.topics.iter().enumerate() {
            literal_topic(t).map_err(|m| invalid(format!("{at}.topics[{i}]"), m))?;
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid(format!("{at}.group_id"), "must not be empty"));
        }
        if let Some(d) = &self.dead_letter_topic {
            literal_topic(d).map_err(|m| invalid(format!("{at}.dead_letter_topic"), m))?;
            if self.topics.contains(d) {
                return Err(invalid(
                    format!("{at}.dead_letter_topic"),
                    format!("{d:?} is also read by this source: it would read its own rejects"),
                ));
            }
        }
        let commit_interval = parse_duration(&self.commit_interval)
            .and_then(|d| {
                if d.is_zero() {
                    Err("must be more than 0s".to_owned())
                } else {
                    Ok(d)
                }
            })
            .map_err(|m| invalid(format!("{at}.commit_interval"), m))?;
        if self.max_pending_messages == 0 {
            return Err(invalid(
                format!("{at}.max_pending_messages"),
                "must be at least 1",
            ));
        }
        for key in ["group.id", "enable.auto.commit", "enable.auto.offset.store"] {
            if self.options.contains_key(key) {
                return Err(invalid(
                    format!("{at}.options"),
                    format!(
                        "{key} is the source's own (offsets are committed only when the data is safe)"
                    ),
                ));
            }
        }
        let keys = ClientKeys {
            brokers: &self.brokers,
            sasl: self.sasl.as_ref(),
            tls: self.tls.as_ref(),
            options: &self.options,
        };
        // Offsets are committed by the source, never by librdkafka on its own (see
        // service.rs); a new group starts at the oldest message still kept.
        let consumer = keys.settings(
            &[
                ("group.id", self.group_id.clone()),
                ("enable.auto.commit", "false".into()),
                ("enable.auto.offset.store", "false".into()),
                ("auto.offset.reset", "earliest".into()),
                ("enable.partition.eof", "false".into()),
            ],
            at,
            base,
        )?;
        let producer = ClientKeys {
            options: &BTreeMap::new(),
            ..keys
        }
        .settings(
            &[
                ("acks", "all".into()),
                ("enable.idempotence", "true".into()),
                ("compression.type", "none".into()),
            ],
            at,
            base,
        )?;
        Ok(KafkaSourceConfig {
            name: name.to_owned(),
            topics: self.topics.clone(),
            group_id: self.group_id.clone(),
            format: self.format,
            dead_letter_topic: self.dead_letter_topic.clone(),
            commit_interval,
            max_pending_messages: self.max_pending_messages.min(1 << 24) as usize,
            consumer,
            producer,
        })
    }
}

/// A topic name without `{label}` placeholders (a source reads named topics).
fn literal_topic(t: &str) -> Result<(), String> {
    if t.contains('{') {
        return Err(format!(
            "{t:?}: a source reads literal topic names, not templates"
        ));
    }
    parse_topic(t).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawKafkaSource {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn names_the_field_of_each_bad_key() {
        for (yaml, field) in [
            ("{brokers: '', topics: [m], group_id: g}", "s.kafka.brokers"),
            (
                "{brokers: 'h', topics: [m], group_id: g}",
                "s.kafka.brokers",
            ),
            (
                "{brokers: 'h:1', topics: [], group_id: g}",
                "s.kafka.topics",
            ),
            (
                "{brokers: 'h:1', topics: [m, 'a b'], group_id: g}",
                "s.kafka.topics[1]",
            ),
            (
                "{brokers: 'h:1', topics: ['m.{job}'], group_id: g}",
                "s.kafka.topics[0]",
            ),
            (
                "{brokers: 'h:1', topics: [m], group_id: ' '}",
                "s.kafka.group_id",
            ),
            (
                "{brokers: 'h:1', topics: [m], group_id: g, dead_letter_topic: m}",
                "s.kafka.dead_letter_topic",
            ),
            (
                "{brokers: 'h:1', topics: [m], group_id: g, commit_interval: 0s}",
                "s.kafka.commit_interval",
            ),
            (
                "{brokers: 'h:1', topics: [m], group_id: g, max_pending_messages: 0}",
                "s.kafka.max_pending_messages",
            ),
            (
                "{brokers: 'h:1', topics: [m], group_id: g, options: {enable.auto.commit: 'true'}}",
                "s.kafka.options",
            ),
            (
                "{brokers: 'h:1', topics: [m], group_id: g, sasl: {mechanism: GSSAPI, username: u, password: p}}",
                "s.kafka.sasl.mechanism",
            ),
        ] {
            match raw(yaml).validate("s", "s.kafka", Path::new(".")) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{yaml}"),
                other => panic!("{yaml}: {other:?}"),
            }
        }
    }

    #[test]
    fn commits_itself_and_shares_the_targets_client_keys() {
        let c = raw(
            "{brokers: 'h:1, h:2', topics: [m], group_id: g, sasl: {mechanism: plain, username: u, password: p}, options: {fetch.max.bytes: '1000'}}",
        )
        .validate("s", "s.kafka", Path::new("."))
        .unwrap();
        let get = |k: &str| {
            c.consumer
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("bootstrap.servers"), Some("h:1,h:2"));
        assert_eq!(get("group.id"), Some("g"));
        assert_eq!(get("enable.auto.commit"), Some("false"));
        assert_eq!(get("enable.auto.offset.store"), Some("false"));
        assert_eq!(get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(get("fetch.max.bytes"), Some("1000"));
        assert!(!format!("{c:?}").contains("\"p\""), "{c:?}");
        // The dead-letter producer: same connection, no consumer options.
        assert!(
            c.producer
                .iter()
                .any(|(k, v)| k == "sasl.password" && v == "p")
        );
        assert!(!c.producer.iter().any(|(k, _)| k == "fetch.max.bytes"));
    }
}
