//! The YAML file as serde sees it: field for field, defaults in one place, unknown keys refused.
//! Nothing here is trusted yet; [`super::validate`] turns it into checked, compiled types.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub tasks: Vec<RawTask>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Address the ingest and admin endpoints listen on.
    pub listen: String,
    /// Largest compressed request body accepted (413 above).
    pub max_body_bytes: u64,
    /// Largest decoded body, checked from the snappy header before allocating (413 above).
    pub max_decoded_bytes: u64,
    /// HTTP status answered when a target queue is full: 503 (default) or 429.
    pub backpressure_status: u16,
    /// `Retry-After` sent with the backpressure answer.
    pub retry_after: String,
    /// How long shutdown waits for queues to drain.
    pub shutdown_timeout: String,
    /// Pipeline shards (runtime worker threads); 0 means one per CPU core.
    pub shards: u64,
    /// Input limits: a request over any of them is refused with 400 naming the setting.
    pub max_series_per_request: u64,
    pub max_labels_per_series: u64,
    pub max_label_name_bytes: u64,
    pub max_label_value_bytes: u64,
    /// Longest an `ack: spooled | delivered` request waits before it is answered 503.
    pub ack_timeout: String,
    /// Serve `/metrics` and the health endpoints here instead of on `listen`.
    pub admin_listen: Option<String>,
    /// Serve HTTPS on `listen` (and `admin_listen`).
    pub tls: Option<RawServerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    pub cert_file: String,
    pub key_file: String,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca_file: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:9201".into(),
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 256 << 20,
            backpressure_status: 503,
            retry_after: "1s".into(),
            shutdown_timeout: "30s".into(),
            shards: 0,
            max_series_per_request: 1_000_000,
            max_labels_per_series: 256,
            max_label_name_bytes: 1024,
            max_label_value_bytes: 64 << 10,
            ack_timeout: "25s".into(),
            admin_listen: None,
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: String,
    /// Credentials senders must present (at most one kind).
    pub basic_auth: Option<RawBasicAuth>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub bearer_token_env: Option<String>,
}

/// Text with one item per line, or a YAML list of items.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Lines {
    Text(String),
    List(Vec<String>),
}

/// `key=value` lines, or a YAML map.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum LabelsSpec {
    Text(String),
    Map(BTreeMap<String, String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_source")]
    pub source: String,
    pub filter: Option<Lines>,
    pub labels: Option<LabelsSpec>,
    /// When ingest answers 2xx: once queued, spooled (on disk) or delivered.
    pub ack: Option<Ack>,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ack {
    /// In the memory queues (or written to the spool file, not yet synced).
    Queued,
    /// Synced to disk in every spooled target of the task.
    Spooled,
    /// Taken by every target of the task.
    Delivered,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    #[default]
    Block,
    DropOldest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    pub dir: String,
    #[serde(default = "default_spool_bytes")]
    pub max_bytes: u64,
    #[serde(default)]
    pub on_full: OnFull,
    #[serde(default = "default_fsync_interval")]
    pub fsync_interval: String,
}

fn default_spool_bytes() -> u64 {
    1 << 30
}

fn default_fsync_interval() -> String {
    "1s".into()
}

fn yes() -> bool {
    true
}

fn default_source() -> String {
    "default".into()
}

// Read once at start; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RawTarget {
    RemoteWrite(RawRemoteWrite),
    File(RawFile),
    Kafka(RawKafka),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteWrite {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    pub basic_auth: Option<RawBasicAuth>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub bearer_token_env: Option<String>,
    pub access_key: Option<RawAccessKey>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    pub timeout: String,
    #[serde(default)]
    pub queue: RawQueue,
    pub spool: Option<RawSpool>,
}

fn default_timeout() -> String {
    "30s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessKey {
    pub id: String,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQueue {
    /// Samples the target may hold (queued, batching and in flight) before ingest is pushed back.
    pub capacity: u64,
    pub max_samples_per_send: u64,
    /// Parallel senders; series are spread over them by hash, so each series stays in order.
    pub shards: u64,
    pub min_backoff: String,
    pub max_backoff: String,
    pub batch_send_deadline: String,
}

impl Default for RawQueue {
    fn default() -> Self {
        RawQueue {
            capacity: 100_000,
            max_samples_per_send: 2_000,
            shards: 4,
            min_backoff: "30ms".into(),
            max_backoff: "5s".into(),
            batch_send_deadline: "5s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    #[serde(default = "file_queue")]
    pub queue: RawQueue,
    pub spool: Option<RawSpool>,
}

fn file_queue() -> RawQueue {
    RawQueue {
        shards: 1,
        batch_send_deadline: "1s".into(),
        ..RawQueue::default()
    }
}

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
    #[serde(default)]
    pub compression: KafkaCompression,
    #[serde(default = "default_max_message_bytes")]
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
