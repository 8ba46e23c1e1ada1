//! `type: kafka` keys: brokers, topic (with `{label}` placeholders), message key, format,
//! compression, message size, SASL, TLS and librdkafka options, turned into the producer
//! settings with defaults that lose nothing.

use crate::config::secrets::{SecretSources, one_secret};
use crate::config::values::positive;
use crate::config::{ConfigError, invalid};
use crate::encode::histogram_buckets::HistogramMode;
use crate::relabel::is_valid_label_name;
use crate::targets::queue::RawQueue;
use crate::targets::spool::{RawOverflow, RawSpool};
use crate::targets::tls::RawTls;
use crate::targets::{CommonKeys, TargetConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    pub name: String,
    /// Comma-separated `host:port` list.
    pub brokers: String,
    /// Topic, possibly with `{label}` placeholders.
    pub topic: String,
    #[serde(default)]
    pub key: KafkaKey,
    #[serde(default)]
    pub format: KafkaFormat,
    /// `format: json`: `drop` (default; counted `unsupported_by_format`) or `buckets` (each
    /// native histogram as classic `_bucket`/`_sum`/`_count` objects).
    #[serde(default)]
    pub histograms: HistogramMode,
    #[serde(default)]
    pub compression: KafkaCompression,
    #[serde(default = "default_max_message_bytes")]
    #[serde(deserialize_with = "crate::config::de::bytes")]
    pub max_message_bytes: u64,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    pub sasl: Option<RawSasl>,
    pub tls: Option<RawTls>,
    /// librdkafka producer settings, passed through as they are.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default = "kafka_queue")]
    pub queue: RawQueue,
    pub spool: Option<RawSpool>,
    #[serde(default)]
    pub overflow: RawOverflow,
}

fn default_max_message_bytes() -> u64 {
    1_000_000
}

fn kafka_queue() -> RawQueue {
    RawQueue {
        max_samples_per_send: 10_000,
        batch_send_deadline: "1s".into(),
        ..RawQueue::default()
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaKey {
    /// Series are grouped by label hash; each message carries its group's key.
    #[default]
    Series,
    /// Messages hold one metric name each and carry it as the key.
    Metric,
    /// No key: the producer's partitioner spreads messages.
    None,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFormat {
    /// A JSON array of flat sample objects (the seed's format).
    #[default]
    Json,
    /// A remote-write `WriteRequest` protobuf.
    RemoteWrite,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    /// Raw snappy (block format) of the whole payload, what `Snappy.uncompress` reads.
    #[default]
    Snappy,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSasl {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: String,
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
}

/// One piece of a topic template: literal text or a `{label}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPart {
    Text(String),
    Label(String),
}

#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub topic: Vec<TopicPart>,
    pub key: KafkaKey,
    pub format: KafkaFormat,
    pub histograms: HistogramMode,
    pub compression: KafkaCompression,
    pub max_message_bytes: usize,
    /// Every librdkafka producer setting: the defaults, then sasl/tls, then `options`.
    pub client: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaConfig {
    // The client settings may hold the SASL password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client: Vec<(&str, &str)> = self
            .client
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if k.contains("password") {
                        "<secret>"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("format", &self.format)
            .field("histograms", &self.histograms)
            .field("compression", &self.compression)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("client", &client)
            .finish()
    }
}

impl KafkaConfig {
    /// The topic when it has no placeholders.
    pub fn fixed_topic(&self) -> Option<&str> {
        match self.topic.as_slice() {
            [TopicPart::Text(t)] => Some(t),
            _ => None,
        }
    }
}

/// Split `metrics.{__name__}` into text and label parts.
///
/// # Errors
/// An unclosed brace, an empty or invalid label name, or characters Kafka does not allow in a
/// topic name.
pub fn parse_topic(text: &str) -> Result<Vec<TopicPart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let close = rest
                    .find('}')
                    .ok_or_else(|| format!("{text:?}: unclosed {{"))?;
                let name = &rest[1..close];
                if !is_valid_label_name(name) {
                    return Err(format!("{text:?}: {{{name}}} is not a label name"));
                }
                parts.push(TopicPart::Label(name.to_owned()));
                rest = &rest[close + 1..];
            }
            found => {
                let end = found.unwrap_or(rest.len());
                let lit = &rest[..end];
                if let Some(bad) = lit
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
                {
                    return Err(format!(
                        "{text:?}: {bad:?} is not allowed in a Kafka topic name (use A-Z a-z 0-9 . _ -)"
                    ));
                }
                parts.push(TopicPart::Text(lit.to_owned()));
                rest = &rest[end..];
            }
        }
    }
    if parts.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(parts)
}

/// The connection keys every Kafka client of the relay shares (the target's producer, the
/// source's consumer): brokers, SASL, TLS and librdkafka `options`.
pub struct ClientKeys<'a> {
    /// Comma-separated `host:port` list.
    pub brokers: &'a str,
    pub sasl: Option<&'a RawSasl>,
    pub tls: Option<&'a RawTls>,
    pub options: &'a BTreeMap<String, String>,
}

impl ClientKeys<'_> {
    /// The librdkafka settings: `bootstrap.servers`, then the client's own `defaults`, then
    /// TLS and SASL and `security.protocol`, then `options` (which override any of them but
    /// `bootstrap.servers`). Keys are named under `at`.
    ///
    /// # Errors
    /// No broker or one without a port, a SASL mechanism librdkafka does not take, a secret
    /// or TLS file that cannot be read, `bootstrap.servers` in `options`.
    pub fn settings(
        &self,
        defaults: &[(&str, String)],
        at: &str,
        base: &Path,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let brokers: Vec<&str> = self
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        if brokers.is_empty() {
            return Err(invalid(
                format!("{at}.brokers"),
                "must list at least one host:port",
            ));
        }
        if let Some(b) = brokers.iter().find(|b| !b.contains(':')) {
            return Err(invalid(
                format!("{at}.brokers"),
                format!("{b:?} must be host:port"),
            ));
        }
        let mut client: Vec<(String, String)> =
            vec![("bootstrap.servers".into(), brokers.join(","))];
        client.extend(defaults.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        if let Some(t) = self.tls {
            let tls = t.validate(at, base)?;
            let settings = [
                ("ssl.ca.location", &tls.ca_file),
                ("ssl.certificate.location", &tls.cert_file),
                ("ssl.key.location", &tls.key_file),
            ];
            for (key, path) in settings {
                if let Some(p) = path {
                    client.push((key.into(), p.display().to_string()));
                }
            }
            if tls.insecure_skip_verify {
                client.push(("enable.ssl.certificate.verification".into(), "false".into()));
            }
        }
        if let Some(s) = self.sasl {
            let mechanism = s.mechanism.to_ascii_uppercase();
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
                return Err(invalid(
                    format!("{at}.sasl.mechanism"),
                    format!(
                        "{:?}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                        s.mechanism
                    ),
                ));
            }
            let password = one_secret(
                SecretSources {
                    inline: &s.password,
                    file: &s.password_file,
                    env: &s.password_env,
                },
                base,
                &format!("{at}.sasl.password"),
            )?;
            client.push(("sasl.mechanism".into(), mechanism));
            client.push(("sasl.username".into(), s.username.clone()));
            client.push(("sasl.password".into(), password));
        }
        let protocol = match (self.sasl.is_some(), self.tls.is_some()) {
            (false, false) => "plaintext",
            (false, true) => "ssl",
            (true, false) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        client.push(("security.protocol".into(), protocol.into()));
        for (key, value) in self.options {
            if key == "bootstrap.servers" {
                return Err(invalid(
                    format!("{at}.options"),
                    "set brokers with `brokers:`, not bootstrap.servers",
                ));
            }
            client.retain(|(k2, _)| k2 != key);
            client.push((key.clone(), value.clone()));
        }
        Ok(client)
    }
}

impl RawKafka {
    /// Check this target (at `at`) and build its producer settings.
    ///
    /// # Errors
    /// The first bad key, named under `at`.
    pub fn validate(self, at: &str, base: &Path) -> Result<TargetConfig, ConfigError> {
        let topic = parse_topic(&self.topic).map_err(|m| invalid(format!("{at}.topic"), m))?;
        let max_message_bytes =
            positive(self.max_message_bytes, &format!("{at}.max_message_bytes"))?;
        // Defaults that lose nothing; the payload is already compressed, so Kafka's own
        // compression stays off unless the user asks for it in `options`.
        let producer = [
            ("acks", "all".to_owned()),
            ("enable.idempotence", "true".to_owned()),
            ("compression.type", "none".to_owned()),
            ("linger.ms", "5".to_owned()),
            // librdkafka refuses messages over message.max.bytes; leave room above our cap
            // for the framing and for a single oversized series.
            (
                "message.max.bytes",
                (max_message_bytes.max(1_000_000) * 2)
                    .min(1_000_000_000)
                    .to_string(),
            ),
        ];
        let client = ClientKeys {
            brokers: &self.brokers,
            sasl: self.sasl.as_ref(),
            tls: self.tls.as_ref(),
            options: &self.options,
        }
        .settings(&producer, at, base)?;
        if self.histograms == HistogramMode::Buckets && self.format != KafkaFormat::Json {
            return Err(invalid(
                format!("{at}.histograms"),
                "`buckets` is for format: json (format: remote_write carries native histograms as they are)",
            ));
        }
        let kind = KafkaConfig {
            topic,
            key: self.key,
            format: self.format,
            histograms: self.histograms,
            compression: self.compression,
            max_message_bytes,
            client,
        };
        let common = CommonKeys {
            name: self.name,
            external_labels: &self.external_labels,
            queue: &self.queue,
            spool: self.spool.as_ref(),
            overflow: &self.overflow,
        };
        TargetConfig::new(common, at, base, kind.into())
    }
}
